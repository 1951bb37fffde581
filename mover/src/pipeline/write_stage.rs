//! The receiver's writer stage: takes runs from the `writes` ring, writes them with a [`DiskWriter`]
//! (io_uring `WRITE_FIXED`, or `pwrite`), and returns each buffer with its result through `written`. It also
//! does the receiver's verification reads: a [`VerifyItem`] from `verify` is read back (`pread`, one
//! [`READ_BACK_STEP`] per loop turn, so writes keep being submitted and reaped in between) into the file's
//! running hash, which goes back on `verified`.
//!
//! Why here: this stage already waits on the disk, and the reassembly stage, which decides on the hash, must
//! not (it drains the receive path). The read-backs are mostly page-cache hits of recently written bytes, so
//! a synchronous `pread` costs about a memcpy; io_uring reads would need buffers of the run pool, which the
//! writes need.
//!
//! A run's [`WriteItem`] (its buffer token and its descriptor) stays in this stage while the write is in
//! flight, so neither can be reused or closed under the kernel.
//!
//! Resume journals ([`FileJournals`], issue 15): each run whose write completed in full is hashed from its
//! buffer, before the buffer goes back, into a range of its file ([`JournalRuns`]; issue 18: the journal
//! no longer reads the data back); closed ranges go to the [`JournalKeeper`], whose own thread records them
//! and makes the journal's steps (`fdatasync` of the data, the append, `fdatasync` of the journal); neither
//! this stage nor the reassembly stage ever waits for them. A commit or reset (on the reassembly stage) removes the file's journal and signals this
//! stage through the tree's generations, so a journal never outlives its partial's meaning.

use super::items::{VerifyItem, WriteItem, Written};
use super::journal_keeper::JournalKeeper;
use super::journal_runs::{JournalRuns, WrittenRun};
use super::runtime::{Inbox, Outbox, Progress, Stage, StageCx};
use super::slots::BufRegion;
use super::topology::StageId;
use crate::disk::{DiskWriter, Full, WriteDone, WriteReq};
use crate::files::FileJournals;
use crate::proto::{HashDone, HashJob};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes read back per loop turn for verification.
pub const READ_BACK_STEP: usize = 1 << 20;

/// The writer's half of verification: the `verify` and `verified` rings and the read-back in progress.
pub struct ReadBack {
    input: Inbox<VerifyItem>,
    back: Outbox<HashDone>,
    /// The read-back in progress, its file, and when it started.
    current: Option<(HashJob, File, Instant)>,
    scratch: Vec<u8>,
}

impl ReadBack {
    /// Read-backs from `input`, answered on `back`.
    pub fn new(input: Inbox<VerifyItem>, back: Outbox<HashDone>) -> ReadBack {
        assert!(back.capacity() >= input.capacity(), "verified ring smaller than verify");
        ReadBack { input, back, current: None, scratch: vec![0; READ_BACK_STEP] }
    }

    /// Reads one step of the current read-back (taking the next if none); returns whether there was one.
    fn step(&mut self, cx: &mut StageCx, latency: usize) -> bool {
        if self.current.is_none() {
            let Some(VerifyItem { job, fd }) = self.input.pop() else { return false };
            self.input.release();
            self.current = Some((job, File::from(fd), Instant::now()));
        }
        let (job, file, _) = self.current.as_mut().expect("just ensured");
        let r = job.step(&mut self.scratch, |offset, buf| file.read_exact_at(buf, offset));
        if r.is_ok() && !job.is_done() {
            return true;
        }
        let (job, _file, at) = self.current.take().expect("just used");
        cx.meter.record(latency, at.elapsed().as_nanos() as u64);
        assert!(self.back.push(HashDone { job, result: r }).is_ok(), "verified ring holds every job");
        self.back.publish();
        true
    }
}

/// The writer stage's state; see the [module documentation](self).
pub struct WriterStage {
    writer: DiskWriter,
    input: Inbox<WriteItem>,
    back: Outbox<Written>,
    /// Per buffer index: the item whose write is in flight, when it was submitted, and its file's
    /// generation then (for the journal).
    owned: Vec<Option<(WriteItem, Instant, u32)>>,
    /// An item the writer had no room for yet.
    held: Option<WriteItem>,
    latency: usize,
    read_back: ReadBack,
    read_back_latency: usize,
    /// The files' resume journals, kept on their own thread, the ranges being hashed for them, and the
    /// region the runs are written from.
    journals: Option<(JournalKeeper, JournalRuns, Arc<BufRegion>)>,
    journal_latency: usize,
}

impl WriterStage {
    /// A writer of the runs of a region of `buffers` buffers, doing the read-backs of `read_back`.
    pub fn new(
        writer: DiskWriter,
        buffers: usize,
        input: Inbox<WriteItem>,
        back: Outbox<Written>,
        read_back: ReadBack,
    ) -> WriterStage {
        assert!(back.capacity() >= buffers, "written ring smaller than the pool");
        let owned = (0..buffers).map(|_| None).collect();
        WriterStage {
            writer,
            input,
            back,
            owned,
            held: None,
            latency: 0,
            read_back,
            read_back_latency: 0,
            journals: None,
            journal_latency: 0,
        }
    }

    /// Keeps `journals` for the runs written from `region` (hashed here, recorded on a [`JournalKeeper`]
    /// thread); without one (the thread could not start) nothing is journaled and a rerun sends everything
    /// again.
    pub fn with_journals(mut self, journals: FileJournals, region: Arc<BufRegion>) -> WriterStage {
        if !journals.is_empty() {
            let runs = JournalRuns::new(journals.generations());
            match JournalKeeper::start(journals) {
                Ok(k) => self.journals = Some((k, runs, region)),
                Err(e) => eprintln!("mover: no resume journals for this session: {e}"),
            }
        }
        self
    }

    /// Submits what arrived; returns whether anything was.
    fn submit(&mut self) -> bool {
        let mut submitted = false;
        loop {
            let item = match self.held.take().or_else(|| self.input.pop()) {
                Some(i) => i,
                None => break,
            };
            let i = item.buf.index();
            let req =
                WriteReq { req_id: i as u64, fd: item.fd.as_raw_fd(), offset: item.offset, buf: i, len: item.len };
            match self.writer.submit(req) {
                Ok(()) => {
                    debug_assert!(self.owned[i as usize].is_none(), "buffer {i} written twice at once");
                    let generation = self.journals.as_ref().map_or(0, |(_, runs, _)| runs.generation(item.file_id));
                    self.owned[i as usize] = Some((item, Instant::now(), generation));
                    submitted = true;
                }
                Err(Full) => {
                    self.held = Some(item);
                    break;
                }
            }
        }
        self.input.release();
        submitted
    }

    /// Closes a finished write's descriptor, records its latency and hands its buffer back (unpublished).
    fn complete(&mut self, done: WriteDone, cx: &mut StageCx) {
        let (item, at, generation) = self.owned[done.buf as usize].take().expect("a completed write owns its item");
        let now = Instant::now();
        cx.meter.record(self.latency, now.duration_since(at).as_nanos() as u64);
        let result = match done.result {
            Ok(n) => {
                cx.meter.add(1, n as u64);
                n as i64
            }
            Err(errno) => -(errno as i64),
        };
        // Only a write that completed in full is journaled, hashed from the buffer it was written from
        // (still this stage's: it goes back below); the journal syncs the data before vouching.
        let WriteItem { buf, file_id, fd, offset, len } = item;
        if let Some((keeper, runs, region)) = self.journals.as_mut().filter(|_| result == i64::from(len)) {
            let bytes = &region.bytes(&buf)[..len as usize];
            let run = WrittenRun { file_id, generation, fd, offset, bytes };
            runs.written(run, now, &mut |c| keeper.notice(c));
            cx.meter.record(self.journal_latency, now.elapsed().as_nanos() as u64);
        } else {
            drop(fd);
        }
        assert!(self.back.push(Written { buf, result }).is_ok(), "written ring smaller than the pool");
    }
}

impl Stage for WriterStage {
    type Output = ();
    const ID: StageId = StageId::Writer;

    fn on_start(&mut self, cx: &mut StageCx) {
        self.latency = cx.meter.add_latency("block_write");
        self.read_back_latency = cx.meter.add_latency("read_back");
        self.journal_latency = cx.meter.add_latency("journal");
    }

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        let submitted = self.submit();
        let mut finished = 0;
        loop {
            match self.writer.poll_complete() {
                Ok(Some(d)) => self.complete(d, cx),
                Ok(None) => break,
                Err(e) => panic!("the io_uring of the writer stage failed: {e}"),
            }
            finished += 1;
        }
        if finished > 0 {
            self.back.publish();
        }
        let read = self.read_back.step(cx, self.read_back_latency);
        if submitted || finished > 0 || read {
            return Progress::Busy;
        }
        if self.writer.in_flight() > 0 {
            // Waiting on the disk: counted as output stall (the disk is this stage's output).
            let writer = &mut self.writer;
            match cx.wait_output(|| writer.wait_complete()) {
                Ok(Some(d)) => {
                    self.complete(d, cx);
                    self.back.publish();
                }
                Ok(None) => {}
                Err(e) => panic!("the io_uring of the writer stage failed: {e}"),
            }
            return Progress::Busy;
        }
        Progress::WaitInput(Duration::from_millis(5))
    }

    /// Ranges not extended for a while go to the journal, so a stalled transfer's bytes are journaled.
    fn housekeeping(&mut self, _cx: &mut StageCx) {
        if let Some((keeper, runs, _)) = self.journals.as_mut() {
            runs.close_idle(Instant::now(), &mut |c| keeper.notice(c));
        }
    }

    /// Every accepted write completes first: the store's buffers and the files' descriptors are in them.
    /// Read-backs are dropped: the session that asked for them has ended.
    fn may_stop(&mut self) -> bool {
        self.held.is_none() && self.writer.in_flight() == 0 && self.input.available() == 0
    }

    /// Every journal gets its last step: an aborted session's partials keep what reached the disk.
    fn on_stop(mut self, _cx: &mut StageCx) {
        if let Some((mut keeper, mut runs, _)) = self.journals.take() {
            runs.close_all(&mut |c| keeper.notice(c));
            let dropped = keeper.dropped;
            let Some(journals) = keeper.finish() else {
                eprintln!("mover: the resume journal thread failed; a rerun sends this session's files again");
                return;
            };
            if std::env::var_os("MOVER_DEBUG_STATS").is_some() {
                let (n, steps, busy) = (journals.recorded, journals.steps, journals.busy.as_secs_f64());
                eprintln!(
                    "receiver journals: {n} ranges recorded, {steps} steps, {busy:.3} s on the journal thread, \
                     {dropped} notices dropped (queue full)"
                );
            }
            if let Some(e) = &journals.first_error {
                eprintln!("mover: resume journals of {} files stopped early: {e}", journals.failures);
            }
        }
    }
}
