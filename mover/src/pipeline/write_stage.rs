//! The receiver's writer stage: takes runs from the `writes` ring, writes them with a [`DiskWriter`]
//! (io_uring `WRITE_FIXED`, or `pwrite`), and returns each buffer with its result through `written`.
//!
//! A run's [`WriteItem`] (its buffer token and its descriptor) stays in this stage while the write is in
//! flight, so neither can be reused or closed under the kernel.

use super::items::{WriteItem, Written};
use super::runtime::{Inbox, Outbox, Progress, Stage, StageCx};
use super::topology::StageId;
use crate::disk::{DiskWriter, Full, WriteDone, WriteReq};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The writer stage's state; see the [module documentation](self).
pub struct WriterStage {
    writer: DiskWriter,
    input: Inbox<WriteItem>,
    back: Outbox<Written>,
    /// Per buffer index: the item whose write is in flight, and when it was submitted.
    owned: Vec<Option<(WriteItem, Instant)>>,
    /// An item the writer had no room for yet.
    held: Option<WriteItem>,
    latency: usize,
}

impl WriterStage {
    /// A writer of the runs of a region of `buffers` buffers.
    pub fn new(writer: DiskWriter, buffers: usize, input: Inbox<WriteItem>, back: Outbox<Written>) -> WriterStage {
        assert!(back.capacity() >= buffers, "written ring smaller than the pool");
        let owned = (0..buffers).map(|_| None).collect();
        WriterStage { writer, input, back, owned, held: None, latency: 0 }
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
                    self.owned[i as usize] = Some((item, Instant::now()));
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
        let (item, at) = self.owned[done.buf as usize].take().expect("a completed write owns its item");
        drop(item.fd);
        cx.meter.record(self.latency, at.elapsed().as_nanos() as u64);
        let result = match done.result {
            Ok(n) => {
                cx.meter.add(1, n as u64);
                n as i64
            }
            Err(errno) => -(errno as i64),
        };
        assert!(self.back.push(Written { buf: item.buf, result }).is_ok(), "written ring smaller than the pool");
    }
}

impl Stage for WriterStage {
    type Output = ();
    const ID: StageId = StageId::Writer;

    fn on_start(&mut self, cx: &mut StageCx) {
        self.latency = cx.meter.add_latency("block_write");
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
        if submitted || finished > 0 {
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

    /// Every accepted write completes first: the store's buffers and the files' descriptors are in them.
    fn may_stop(&mut self) -> bool {
        self.held.is_none() && self.writer.in_flight() == 0 && self.input.available() == 0
    }

    fn on_stop(self, _cx: &mut StageCx) {}
}
