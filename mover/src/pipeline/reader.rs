//! The sender's reader stage: every file, front to back, in large blocks ("chunks") read by a
//! [`DiskReader`] into its pool, handed to the packetizer in (file, offset) order through the `chunks` ring.
//!
//! Several reads are in flight at once, across file boundaries, so many small files do not serialise on
//! one read each. Chunks come back through the `chunk_free` ring as [`RegionBuf`] tokens. The ring towards the
//! packetizer blocks this stage when full (disk -> network backpressure, ENGINEERING.md §9).
//!
//! It also serves retransmissions' reads ([`RepairServer`], `repair` -> `repaired`) until the pipeline
//! stops, first on every turn of its loop: a repair is what the receiver waits for.

pub use super::items::{Chunk, ReadOutcome};
use super::repair::RepairServer;
use super::runtime::{Inbox, Outbox, Progress, Stage, StageCx};
use super::shared_reads::{file_key, ChunkKey, ReadSeat, Share};
use super::slots::{BufRegion, RegionBuf};
use super::topology::StageId;
use crate::disk::{Completion, DiskReader, FileId, Full, InOrder, ReadReq};
use crate::files::Opener;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the reader and the packetizer share besides the rings.
#[derive(Clone)]
pub struct ReaderShared {
    /// Set by the reader once every chunk (or a failure) is published.
    pub finished: Arc<AtomicBool>,
    /// The pipeline's stop flag, so that a packetizer waiting for a chunk gives up.
    pub stop: Arc<AtomicBool>,
    /// Why reading failed (set before the failure is published).
    pub error: Arc<Mutex<Option<String>>>,
}

impl ReaderShared {
    /// Shared state for a pipeline stopped by `stop`.
    pub fn new(stop: Arc<AtomicBool>) -> ReaderShared {
        ReaderShared { finished: Arc::default(), stop, error: Arc::default() }
    }
}

/// What [`ReaderStage::share_step`] decided for the next chunk.
enum Step {
    /// Copied from another session's read: delivered like a read.
    Copied,
    /// Another session is reading it: try again shortly.
    Wait,
    /// No buffer is free to copy it into.
    NoBuffer,
    /// Read it from disk (claimed under this key when sharing).
    Read(Option<ChunkKey>),
}

/// Most files open at once (they are read in order, so these are the next few).
const MAX_OPEN: usize = 48;

/// The reader stage's state; see the [module documentation](self).
pub struct ReaderStage {
    reader: DiskReader,
    region: Arc<BufRegion>,
    paths: Vec<PathBuf>,
    /// How error messages name each file (see [`ReaderStage::set_names`]).
    names: Vec<String>,
    /// How `paths` are opened (see [`ReaderStage::set_opener`]).
    opener: Opener,
    sizes: Vec<u64>,
    direct: bool,
    out: Outbox<ReadOutcome>,
    free: Inbox<RegionBuf>,
    shared: ReaderShared,
    order: InOrder,
    /// Per request (req_id % pool size): file id, offset, length, submit time (`None`: copied from a
    /// fan-out's shared reads, no disk read to time). Fixed size: at most one request per buffer is
    /// outstanding.
    meta: Vec<(u32, u64, u32, Option<Instant>)>,
    open: VecDeque<(u32, FileId)>,
    next_file: usize,
    next_off: u64,
    next_req: u64,
    /// Outcomes popped in order but not yet in the ring (full): at most one chunk and one failure report.
    pending: VecDeque<ReadOutcome>,
    failed: bool,
    /// Every chunk (or the failure) is published and `finished` set.
    streamed: bool,
    read_latency: usize,
    repairs: RepairServer,
    repair_latency: usize,
    /// Where each file id's bytes start in its file (a range of a split file, `Scanned::file_bases`); empty:
    /// all at 0.
    bases: Vec<u64>,
    /// A fan-out push's session: its seat at the reads the sessions share, and each file id's
    /// [`file_key`] (see [`ReaderStage::set_shared_reads`]).
    shared_reads: Option<(ReadSeat, Vec<u64>)>,
    /// The next chunk is being read by another session of the fan-out: submit again shortly.
    waiting_for_share: bool,
    /// Chunks copied from the others' reads since the last poll (progress to report).
    copied: bool,
}

impl ReaderStage {
    /// A reader of `paths` (of `sizes` bytes) into `region`, the memory of `reader`'s pool.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reader: DiskReader,
        region: Arc<BufRegion>,
        paths: Vec<PathBuf>,
        sizes: Vec<u64>,
        direct: bool,
        out: Outbox<ReadOutcome>,
        free: Inbox<RegionBuf>,
        shared: ReaderShared,
        repairs: RepairServer,
    ) -> ReaderStage {
        let cap = reader.pool().count() as usize;
        // The repair buffers, reserved before, never travel on `chunks`.
        assert!(out.capacity() >= reader.pool().free_count(), "the chunk ring must hold every buffer of the stream");
        assert!(Arc::ptr_eq(region.region(), reader.pool().region()), "the region must be the reader's pool");
        ReaderStage {
            reader,
            region,
            names: paths.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            paths,
            opener: Opener::Path,
            sizes,
            direct,
            out,
            free,
            shared,
            order: InOrder::new(cap, 0),
            meta: vec![(0, 0, 0, None); cap],
            open: VecDeque::with_capacity(MAX_OPEN),
            next_file: 0,
            next_off: 0,
            next_req: 0,
            pending: VecDeque::with_capacity(4),
            failed: false,
            streamed: false,
            read_latency: 0,
            repairs,
            repair_latency: 0,
            bases: Vec::new(),
            shared_reads: None,
            waiting_for_share: false,
            copied: false,
        }
    }

    /// Shares the stream's reads with the other sessions of a fan-out push (`seat`): a chunk another session
    /// read is copied instead of read again, and what this one reads is offered to them
    /// ([`super::shared_reads`]). Call after [`ReaderStage::set_bases`]: a chunk is named by its path and
    /// base.
    pub fn set_shared_reads(&mut self, seat: ReadSeat) {
        let base = |i: usize| self.bases.get(i).copied().unwrap_or(0);
        let keys = self.paths.iter().enumerate().map(|(i, p)| file_key(p, base(i))).collect();
        self.shared_reads = Some((seat, keys));
    }

    /// The shared-reads name of request `req_id` (whose meta is still recorded).
    fn chunk_key(&self, req_id: u64, keys: &[u64]) -> ChunkKey {
        let (file_id, offset, len, _) = self.meta[(req_id % self.meta.len() as u64) as usize];
        let base = self.bases.get(file_id as usize).copied().unwrap_or(0);
        ChunkKey { file: keys[file_id as usize], offset: base + offset, len }
    }

    /// A read finished: offered to the fan-out's other sessions (or its claim given up if it failed), then
    /// held for its turn.
    fn completed(&mut self, c: Completion) {
        if let Some((seat, keys)) = &self.shared_reads {
            let key = self.chunk_key(c.req_id, keys);
            match c.result {
                Ok(n) if n == key.len as usize => {
                    seat.reads.fill(seat.member, key, &self.reader.pool().buf(&c.buf)[..n]);
                }
                _ => seat.reads.abandon(seat.member, key),
            }
        }
        self.order.insert(c);
    }

    /// Reads file id `i` from `bases[i]` of its file on, here and in the repair reads (the ranges of split
    /// files, `files::keep_shard`); offsets in chunks stay relative to that base, as the plan counts them.
    pub fn set_bases(&mut self, bases: Vec<u64>) {
        assert!(bases.is_empty() || bases.len() == self.paths.len(), "one base per file");
        self.repairs.set_bases(bases.clone());
        self.bases = bases;
    }

    /// Names the files in error messages by `names` (index = file id) instead of their paths, here and in
    /// the repair reads: a daemon serving a pull names them as its client knows them.
    pub fn set_names(&mut self, names: Vec<String>) {
        assert_eq!(names.len(), self.paths.len(), "one name per file");
        self.repairs.set_names(names.clone());
        self.names = names;
    }

    /// Opens the files with `opener`, here and in the repair reads: a daemon serving a pull opens them
    /// beneath its root by descriptor ([`Opener::Beneath`]; `paths` are relative to the root).
    pub fn set_opener(&mut self, opener: Opener) {
        self.repairs.set_opener(opener.clone());
        self.opener = opener;
    }

    fn fail(&mut self, msg: String) {
        self.failed = true;
        self.shared.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(msg);
        self.pending.push_back(ReadOutcome::Failed);
    }

    /// Delivers finished reads in request order; returns how many went into the ring.
    fn deliver(&mut self, cx: &mut StageCx) -> usize {
        let cap = self.meta.len() as u64;
        let mut pushed = 0;
        loop {
            if let Some(o) = self.pending.pop_front() {
                match self.out.push(o) {
                    Ok(()) => pushed += 1,
                    Err(o) => {
                        self.pending.push_front(o);
                        break;
                    }
                }
                continue;
            }
            if self.failed {
                break;
            }
            let Some(c) = self.order.pop() else { break };
            let (file_id, offset, len, submitted) = self.meta[(c.req_id % cap) as usize];
            if let Some(submitted) = submitted {
                cx.meter.record(self.read_latency, submitted.elapsed().as_nanos() as u64);
            }
            match c.result {
                Ok(n) if n == len as usize => {
                    cx.meter.add(1, len as u64);
                    let buf = self.region.adopt(c.buf);
                    self.pending.push_back(ReadOutcome::Chunk(Chunk { buf, file_id, offset, len }));
                }
                Ok(n) => {
                    self.reader.release(c.buf);
                    let name = &self.names[file_id as usize];
                    let msg = format!("'{name}' shrank while being sent (read {n} of {len} bytes at offset {offset})");
                    self.fail(msg);
                    continue;
                }
                Err(e) => {
                    self.reader.release(c.buf);
                    self.fail(e.to_string());
                    continue;
                }
            }
            if offset + len as u64 == self.sizes[file_id as usize] {
                // Its last chunk, delivered in order: no read of this file is left in flight.
                if let Some(pos) = self.open.iter().position(|&(f, _)| f == file_id) {
                    let (_, fid) = self.open.remove(pos).expect("position is valid");
                    let _ = self.reader.close(fid);
                }
            }
        }
        if pushed > 0 {
            self.out.publish();
        }
        pushed
    }

    /// Submits reads while slots, buffers and open-file room last.
    fn submit(&mut self) {
        let block = self.reader.block_bytes() as u64;
        let cap = self.meta.len() as u64;
        while self.next_file < self.sizes.len() && !self.failed {
            let size = self.sizes[self.next_file];
            if size == 0 {
                self.next_file += 1;
                self.next_off = 0;
                continue;
            }
            let len = (size - self.next_off).min(block) as u32;
            let base = self.bases.get(self.next_file).copied().unwrap_or(0);
            let claimed = match self.share_step(len, base) {
                Step::Copied => {
                    self.advance(len, size);
                    continue;
                }
                Step::Wait | Step::NoBuffer => break,
                Step::Read(claimed) => claimed,
            };
            let fid = match self.open.back() {
                Some(&(f, fid)) if f as usize == self.next_file => fid,
                _ if self.open.len() == MAX_OPEN => {
                    self.give_up(claimed);
                    break;
                }
                _ => {
                    let (path, opener) = (&self.paths[self.next_file], &self.opener);
                    let open = |flags: i32| opener.open(path, flags);
                    match self.reader.open_with(&open, &self.names[self.next_file], self.direct) {
                        Ok(fid) => {
                            self.open.push_back((self.next_file as u32, fid));
                            fid
                        }
                        Err(e) => {
                            self.give_up(claimed);
                            self.fail(e.to_string());
                            break;
                        }
                    }
                }
            };
            match self.reader.submit(ReadReq { req_id: self.next_req, file: fid, offset: base + self.next_off, len }) {
                Err(Full) => {
                    self.give_up(claimed);
                    break;
                }
                Ok(()) => {
                    self.meta[(self.next_req % cap) as usize] =
                        (self.next_file as u32, self.next_off, len, Some(Instant::now()));
                    self.advance(len, size);
                }
            }
        }
    }

    /// What the fan-out's shared reads say of the next chunk (`len` bytes of the next file, whose range
    /// starts at `base`): copied here already, another session's read to wait for, or to be read (claimed
    /// for this session if sharing).
    fn share_step(&mut self, len: u32, base: u64) -> Step {
        let Some((seat, keys)) = &self.shared_reads else { return Step::Read(None) };
        let key = ChunkKey { file: keys[self.next_file], offset: base + self.next_off, len };
        let Some(buf) = self.reader.reserve() else { return Step::NoBuffer };
        match seat.reads.take_or_claim(seat.member, key, self.reader.buf_mut(&buf)) {
            Share::Copied => {
                let cap = self.meta.len() as u64;
                self.meta[(self.next_req % cap) as usize] = (self.next_file as u32, self.next_off, len, None);
                self.order.insert(Completion { req_id: self.next_req, buf, result: Ok(len as usize) });
                self.copied = true;
                Step::Copied
            }
            Share::Wait => {
                self.reader.release(buf);
                self.waiting_for_share = true;
                Step::Wait
            }
            Share::ReadIt => {
                self.reader.release(buf);
                Step::Read(Some(key))
            }
        }
    }

    /// Gives up this session's claim on a chunk it will not read now after all.
    fn give_up(&self, claimed: Option<ChunkKey>) {
        if let (Some((seat, _)), Some(key)) = (&self.shared_reads, claimed) {
            seat.reads.abandon(seat.member, key);
        }
    }

    /// The request for `len` bytes at `next_off` of a file of `size` bytes is made (read or copied).
    fn advance(&mut self, len: u32, size: u64) {
        self.next_req += 1;
        self.next_off += len as u64;
        if self.next_off == size {
            self.next_file += 1;
            self.next_off = 0;
        }
    }
}

impl Stage for ReaderStage {
    type Output = ();
    const ID: StageId = StageId::Reader;

    fn on_start(&mut self, cx: &mut StageCx) {
        self.read_latency = cx.meter.add_latency("block_read");
        self.repair_latency = cx.meter.add_latency("repair_read");
    }

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        let repaired = self.repairs.serve(cx, self.repair_latency);
        if self.streamed {
            // Only repairs are left; the `repair` ring's publish rings this stage's bell.
            return if repaired > 0 { Progress::Busy } else { Progress::WaitInput(Duration::from_millis(10)) };
        }
        while let Some(b) = self.free.pop() {
            self.reader.release(b.into_buf_idx());
        }
        self.free.release();
        self.deliver(cx);
        self.waiting_for_share = false;
        self.submit();

        let mut completed = std::mem::take(&mut self.copied);
        loop {
            match self.reader.poll_complete() {
                Ok(Some(c)) => {
                    self.completed(c);
                    completed = true;
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail(format!("the disk reader failed: {e}"));
                    break;
                }
            }
        }
        let all_read = self.next_file >= self.sizes.len() && self.order.next_req_id() == self.next_req;
        if self.pending.is_empty() && (all_read || self.failed) && !completed {
            self.shared.finished.store(true, Ordering::Release);
            // Publishes nothing new; wakes the packetizer to see `finished`.
            self.out.publish();
            self.streamed = true;
            return Progress::Busy;
        }
        if completed || repaired > 0 {
            return Progress::Busy;
        }
        if self.waiting_for_share && self.reader.in_flight() == 0 {
            // Another session's read of the next chunk is in its disk queue: it lands within a disk latency.
            return Progress::WaitOutput(Duration::from_micros(200));
        }
        if !self.pending.is_empty() || self.reader.in_flight() == 0 {
            // The ring is full, or every buffer is downstream: wait for the packetizer to take or give back.
            return Progress::WaitOutput(Duration::from_millis(2));
        }
        match cx.wait_input(|| self.reader.wait_complete()) {
            Ok(Some(c)) => self.completed(c),
            Ok(None) => {}
            Err(e) => self.fail(format!("the disk reader failed: {e}")),
        }
        Progress::Busy
    }

    fn on_stop(self, _cx: &mut StageCx) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{BackendChoice, DiskBackend, ReaderConfig};
    use crate::pipeline::bell::Bell;
    use crate::pipeline::items::{RepairReq, Repaired};
    use crate::pipeline::ring::ring;
    use crate::pipeline::runtime::run;
    use crate::testing::TempDir;

    /// The reader stage on its own thread, consumed by the test through its rings: many files (empty ones and
    /// ones larger than a chunk among them) come out in (file, offset) order with the right bytes, for both
    /// backends, with a pool much smaller than the data (buffers must be recycled).
    #[test]
    fn reads_every_file_in_order_through_a_small_pool() {
        let dir = TempDir::new("reader-stage");
        let mut paths = Vec::new();
        let mut sizes = Vec::new();
        for (i, size) in [0u64, 1, 10_000, 0, 20_000, 3, 70_000, 5_000].into_iter().cycle().take(40).enumerate() {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, (0..size).map(|o| (o as usize * 31 + i) as u8).collect::<Vec<u8>>()).unwrap();
            paths.push(p);
            sizes.push(size);
        }
        for backend in [DiskBackend::Pread, DiskBackend::IoUring] {
            let cfg = ReaderConfig {
                backend: BackendChoice::Force(backend),
                queue_depth: 4,
                block_bytes: 16 << 10,
                buffers: 8,
                max_open_files: 64,
            };
            let Ok(reader) = DiskReader::new(&cfg) else {
                let half = format!("reads_every_file_in_order_through_a_small_pool ({backend:?} half)");
                crate::testing::skip_or_fail(&half, "the backend is unavailable here");
                continue;
            };
            let region = BufRegion::new(reader.pool().region().clone());
            let (out, mut chunks) = ring::<ReadOutcome>(8);
            let (mut free, free_rx) = ring::<RegionBuf>(8);
            let (_repair, repair_rx) = ring::<RepairReq>(2);
            let (repaired_tx, _repaired) = ring::<Repaired>(2);
            let stop = Arc::new(AtomicBool::new(false));
            let shared = ReaderShared::new(stop.clone());
            let reader_bell = Bell::new();
            let stage = ReaderStage::new(
                reader,
                region.clone(),
                paths.clone(),
                sizes.clone(),
                false,
                Outbox::from_ring(out, Bell::new()),
                free_rx,
                shared.clone(),
                RepairServer::new(
                    region.clone(),
                    paths.clone(),
                    repair_rx,
                    Outbox::from_ring(repaired_tx, Bell::new()),
                ),
            );
            let rb = reader_bell.clone();
            let st = stop.clone();
            let t = std::thread::spawn(move || run(stage, &rb, StageCx::new(StageId::Reader, None, st)));
            let mut expect = (0u32, 0u64);
            loop {
                let Some(o) = chunks.pop() else {
                    if shared.finished.load(Ordering::Acquire) && chunks.available() == 0 {
                        break;
                    }
                    std::thread::yield_now();
                    continue;
                };
                chunks.release();
                let ReadOutcome::Chunk(c) = o else { panic!("{:?}", shared.error.lock().unwrap()) };
                while sizes[expect.0 as usize] == 0 {
                    expect = (expect.0 + 1, 0);
                }
                assert_eq!((c.file_id, c.offset), expect, "{backend:?}");
                let bytes = region.bytes(&c.buf);
                for (k, &b) in bytes[..c.len as usize].iter().enumerate() {
                    assert_eq!(b, ((c.offset as usize + k) * 31 + c.file_id as usize) as u8);
                }
                expect.1 += c.len as u64;
                if expect.1 == sizes[expect.0 as usize] {
                    expect = (expect.0 + 1, 0);
                }
                assert!(free.push(c.buf).is_ok());
                free.publish();
                reader_bell.ring();
            }
            // The stream is done; the stage serves repairs until the pipeline stops.
            stop.store(true, Ordering::Relaxed);
            reader_bell.ring();
            let ((), report) = t.join().unwrap();
            assert_eq!(report.bytes, sizes.iter().sum::<u64>(), "{backend:?}");
            while (expect.0 as usize) < sizes.len() && sizes[expect.0 as usize] == 0 {
                expect.0 += 1;
            }
            assert_eq!(expect.0 as usize, sizes.len(), "{backend:?}: not every file was read");
        }
    }
}
