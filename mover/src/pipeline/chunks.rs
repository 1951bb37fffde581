//! [`ChunkSource`]: the packetizer's [`BlockSource`]. First transmissions are cut from the reader stage's
//! chunks as they come off the `chunks` ring; everything else (retransmissions, repair rounds) comes from
//! repair reads the reader stage does for it (`repair` -> `repaired`), so the packetizer never reads the disk.
//!
//! A retransmission whose bytes are not here makes [`BlockSource::ready`] answer "not yet" after asking the
//! reader for them (a span of [`REPAIR_SPAN_BYTES`] from the block on, since losses come in runs); the core
//! keeps the block pending and asks again once the bytes arrived. The repair buffers (`depth::REPAIRS` of
//! the reader's pool, set aside at start-up) are this source's: spare, out with the reader, or holding read
//! bytes; when all hold bytes, the oldest is read over.

use super::items::{Chunk, ReadOutcome, RepairReq, Repaired};
use super::reader::ReaderShared;
use super::runtime::{Inbox, Outbox};
use super::slots::{BufRegion, RegionBuf};
use crate::proto::BlockSource;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes asked for per repair read (from the block on, up to the end of the file or of the buffer).
pub const REPAIR_SPAN_BYTES: u64 = 256 << 10;

/// The repair side of a [`ChunkSource`]: its rings and buffers.
pub struct Repairs {
    /// Requests to the reader.
    pub out: Outbox<RepairReq>,
    /// Reads done.
    pub back: Inbox<Repaired>,
    /// The repair buffers, all spare at the start.
    pub buffers: Vec<RegionBuf>,
    /// File sizes (index = file id), to keep a span inside its file.
    pub sizes: Vec<u64>,
}

/// Cuts first transmissions out of the reader's chunks; see the [module documentation](self).
pub struct ChunkSource {
    region: Arc<BufRegion>,
    input: Inbox<ReadOutcome>,
    free: Outbox<RegionBuf>,
    shared: ReaderShared,
    /// The chunk being cut, owned by this stage until it is passed back.
    current: Option<Chunk>,
    /// Everything before this (file, offset) came off the `chunks` ring already.
    stream_next: (u32, u64),
    repair_out: Outbox<RepairReq>,
    repair_back: Inbox<Repaired>,
    sizes: Vec<u64>,
    spare: Vec<RegionBuf>,
    /// Repair reads arrived, oldest first.
    held: VecDeque<Chunk>,
    /// Repair reads out with the reader: (file, offset, len).
    asked: Vec<(u32, u64, u32)>,
    /// Time spent waiting for the reader, for the packetizer's stats.
    pub stalled: Duration,
    /// Blocks served from the stream's chunks.
    pub from_chunks: u64,
    /// Blocks served from repair reads (or from the stream's current chunk, out of order).
    pub from_repairs: u64,
    /// Repair reads asked of the reader.
    pub repairs_asked: u64,
}

impl ChunkSource {
    /// A source over the reader's `region`, its chunk ring, the ring that returns buffers, and the repair
    /// rings and buffers.
    pub fn new(
        region: Arc<BufRegion>,
        input: Inbox<ReadOutcome>,
        free: Outbox<RegionBuf>,
        shared: ReaderShared,
        repairs: Repairs,
    ) -> ChunkSource {
        let n = repairs.buffers.len();
        assert!(n > 0 && repairs.out.capacity() >= n, "the repair ring must hold every repair buffer");
        ChunkSource {
            region,
            input,
            free,
            shared,
            current: None,
            stream_next: (0, 0),
            repair_out: repairs.out,
            repair_back: repairs.back,
            sizes: repairs.sizes,
            spare: repairs.buffers,
            held: VecDeque::with_capacity(n),
            asked: Vec::with_capacity(n),
            stalled: Duration::ZERO,
            from_chunks: 0,
            from_repairs: 0,
            repairs_asked: 0,
        }
    }

    /// Whether a retransmission waits for a repair read (the packetizer then waits for the `repaired` ring).
    pub fn awaiting_repair(&self) -> bool {
        !self.asked.is_empty()
    }

    fn give_back(&mut self, c: Chunk) {
        // The ring is as deep as the pool is large, so there is always room.
        assert!(self.free.push(c.buf).is_ok(), "chunk_free ring smaller than the pool");
        self.free.publish();
    }

    fn failure(&self) -> io::Error {
        let msg = self.shared.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        io::Error::other(msg.unwrap_or_else(|| "the reader stage failed".into()))
    }

    /// The next chunk from the reader, waiting for it; `Ok(None)` once the reader has published everything.
    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        loop {
            if let Some(o) = self.input.pop() {
                self.input.release();
                return match o {
                    ReadOutcome::Chunk(c) => {
                        self.stream_next = (c.file_id, c.offset + c.len as u64);
                        Ok(Some(c))
                    }
                    ReadOutcome::Failed => Err(self.failure()),
                };
            }
            // Acquire pairs with the reader's Release: a chunk published before `finished` is seen above on
            // the next pop.
            if self.shared.finished.load(Ordering::Acquire) {
                if let Some(o) = self.input.pop() {
                    self.input.release();
                    if let ReadOutcome::Chunk(c) = o {
                        self.stream_next = (c.file_id, c.offset + c.len as u64);
                        return Ok(Some(c));
                    }
                }
                return Ok(None);
            }
            if self.shared.stop.load(Ordering::Relaxed) {
                return Err(io::Error::other("stopped"));
            }
            // The `chunks` ring's publish rings this (the packetizer's) bell.
            let t = Instant::now();
            std::thread::park_timeout(Duration::from_millis(2));
            self.stalled += t.elapsed();
        }
    }

    /// Whether the in-order stream has yet to pass `(file_id, offset)`, so a first transmission of it is
    /// cut from a chunk still to come (or the current one).
    fn stream_will_serve(&mut self, file_id: u32, offset: u64) -> bool {
        let start = self.current.as_ref().map_or(self.stream_next, |c| (c.file_id, c.offset));
        if (file_id, offset) < start {
            return false;
        }
        // Acquire as in `next_chunk`: with the stream finished, nothing is left unless it is in the ring.
        self.current.is_some() || !self.shared.finished.load(Ordering::Acquire) || self.input.available() > 0
    }

    /// Takes in the repair reads that arrived.
    fn take_repaired(&mut self) -> io::Result<()> {
        while let Some(Repaired { chunk, result }) = self.repair_back.pop() {
            self.repair_back.release();
            if let Some(k) = self.asked.iter().position(|&(f, o, _)| f == chunk.file_id && o == chunk.offset) {
                self.asked.swap_remove(k);
            }
            match result {
                Ok(()) => self.held.push_back(chunk),
                Err(e) => {
                    self.spare.push(chunk.buf);
                    return Err(io::Error::other(e));
                }
            }
        }
        Ok(())
    }

    /// The chunk (current or repaired) holding all of `[offset, offset + len)` of `file_id`.
    fn holder(&self, file_id: u32, offset: u64, len: usize) -> Option<&Chunk> {
        let covers =
            |c: &&Chunk| c.file_id == file_id && c.offset <= offset && offset + len as u64 <= c.offset + c.len as u64;
        self.current.iter().find(covers).or_else(|| self.held.iter().rev().find(covers))
    }

    /// Asks the reader for the span from `offset`; does nothing while every repair buffer is out.
    fn ask(&mut self, file_id: u32, offset: u64, len: usize) {
        let Some(buf) = self.spare.pop().or_else(|| self.held.pop_front().map(|c| c.buf)) else { return };
        let size = self.sizes.get(file_id as usize).copied().unwrap_or(0);
        let span =
            REPAIR_SPAN_BYTES.min(self.region.buf_bytes() as u64).min(size.saturating_sub(offset)).max(len as u64);
        let len = span as u32;
        assert!(
            self.repair_out.push(RepairReq { buf, file_id, offset, len }).is_ok(),
            "repair ring holds every buffer"
        );
        self.repair_out.publish();
        self.asked.push((file_id, offset, len));
        self.repairs_asked += 1;
    }

    /// Gives the current chunk back (at the end of a transfer).
    pub fn release_all(&mut self) {
        if let Some(c) = self.current.take() {
            self.give_back(c);
        }
    }
}

impl BlockSource for ChunkSource {
    fn ready(&mut self, file_id: u32, offset: u64, len: usize, first: bool) -> io::Result<bool> {
        self.take_repaired()?;
        if (first && self.stream_will_serve(file_id, offset)) || self.holder(file_id, offset, len).is_some() {
            return Ok(true);
        }
        let end = offset + len as u64;
        if !self.asked.iter().any(|&(f, o, l)| f == file_id && o <= offset && end <= o + l as u64) {
            self.ask(file_id, offset, len);
        }
        Ok(false)
    }

    fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.take_repaired()?;
        let Some(c) = self.holder(file_id, offset, buf.len()) else {
            // `ready` said yes first, so this is a caller that skipped it.
            return Err(io::Error::other(format!("block at {offset} of file id {file_id} not read yet")));
        };
        let at = (offset - c.offset) as usize;
        // The reader wrote the chunk before publishing it (the ring's Acquire orders that), and the chunk
        // holds the whole block.
        buf.copy_from_slice(&self.region.bytes(&c.buf)[at..at + buf.len()]);
        self.from_repairs += 1;
        Ok(())
    }

    fn read_first(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let want = offset + filled as u64;
            match &self.current {
                Some(c) if c.file_id == file_id && c.offset <= want && want < c.offset + c.len as u64 => {
                    let at = (want - c.offset) as usize;
                    let n = (c.len as usize - at).min(buf.len() - filled);
                    // The reader wrote the chunk before publishing it (the ring's Acquire orders that), and
                    // at + n <= len <= buffer size.
                    let bytes = self.region.bytes(&c.buf);
                    buf[filled..filled + n].copy_from_slice(&bytes[at..at + n]);
                    filled += n;
                }
                // A chunk wholly before the block: done with it.
                Some(c) if (c.file_id, c.offset + c.len as u64) <= (file_id, want) => {
                    let c = self.current.take().expect("matched Some");
                    self.give_back(c);
                }
                // A chunk after the block (a repair round re-reads a file): from a repair read.
                Some(_) => return self.read_block(file_id, want, &mut buf[filled..]),
                None => match self.next_chunk()? {
                    Some(c) => self.current = Some(c),
                    None => return self.read_block(file_id, want, &mut buf[filled..]),
                },
            }
        }
        self.from_chunks += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::BufferPool;
    use crate::pipeline::bell::Bell;
    use crate::pipeline::ring::ring;

    /// The packetizer side alone: chunks pushed by the test (no reader thread, no disk for first
    /// transmissions), blocks straddling chunk edges, buffers given back in order, a failure reported.
    #[test]
    fn cuts_blocks_across_chunks_and_gives_buffers_back() {
        let mut pool = BufferPool::new(5, 4096);
        let region = BufRegion::new(pool.region().clone());
        let (mut to_src, from_test) = ring::<ReadOutcome>(4);
        let (back, mut returned) = ring::<RegionBuf>(4);
        let shared = ReaderShared::new(Arc::default());
        let back = Outbox::from_ring(back, Bell::new());
        let (repair_out, _repair_rx) = ring::<RepairReq>(2);
        let (_repaired_tx, repaired_back) = ring::<Repaired>(2);
        // File 0: 6000 bytes as chunks of 4096 + 1904; file 1: 100 bytes.
        let content = |f: u32, off: u64| (off as u32 * 7 + f * 13) as u8;
        let mut push = |file_id: u32, offset: u64, len: u32| {
            let b = pool.alloc().unwrap();
            for (i, x) in pool.buf_mut(&b)[..len as usize].iter_mut().enumerate() {
                *x = content(file_id, offset + i as u64);
            }
            assert!(to_src.push(ReadOutcome::Chunk(Chunk { buf: region.adopt(b), file_id, offset, len })).is_ok());
            to_src.publish();
        };
        push(0, 0, 4096);
        push(0, 4096, 1904);
        push(1, 0, 100);
        // The last buffer is the (unused) repair buffer.
        let repairs = Repairs {
            out: Outbox::from_ring(repair_out, Bell::new()),
            back: repaired_back,
            buffers: vec![region.adopt(pool.alloc().unwrap())],
            sizes: vec![6000, 100],
        };
        let mut src = ChunkSource::new(region.clone(), from_test, back, shared.clone(), repairs);
        let mut buf = [0u8; 1400];
        for off in (0..6000u64).step_by(1400) {
            let n = (6000 - off).min(1400) as usize;
            src.read_first(0, off, &mut buf[..n]).unwrap();
            assert!(buf[..n].iter().enumerate().all(|(i, &b)| b == content(0, off + i as u64)), "at {off}");
        }
        src.read_first(1, 0, &mut buf[..100]).unwrap();
        assert!(buf[..100].iter().enumerate().all(|(i, &b)| b == content(1, i as u64)));
        assert_eq!(src.from_chunks, 6);
        // Both chunks of file 0 came back, in order; file 1's is still held.
        let mut index = || returned.pop().map(|b| b.index());
        assert_eq!((index(), index(), index()), (Some(0), Some(1), None));
        *shared.error.lock().unwrap() = Some("disk on fire".into());
        assert!(to_src.push(ReadOutcome::Failed).is_ok());
        to_src.publish();
        let e = src.read_first(2, 0, &mut buf[..10]).unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }

    /// Retransmissions of many blocks over three files, served through
    /// the repair ring by the reader stage on its own thread with a slow disk (2 ms per read): the source
    /// answers "not yet" and asks, never reads itself, and every block comes back with the file's bytes,
    /// several from each read (spans); the stream's buffers are not used for it.
    #[test]
    fn retransmissions_come_through_the_repair_ring_from_a_slow_reader() {
        use crate::disk::{BackendChoice, DiskBackend, DiskReader, ReaderConfig};
        use crate::pipeline::reader::ReaderStage;
        use crate::pipeline::repair::RepairServer;
        use crate::pipeline::runtime::{run, StageCx};
        use crate::pipeline::topology::StageId;

        let dir = crate::testing::TempDir::new("repair-ring");
        let content = |f: u32, off: u64| (off as u32 * 31 + f * 7) as u8;
        let sizes = vec![300_000u64, 5_000, 700_000];
        let paths: Vec<_> = (0..3u32).map(|f| dir.path().join(format!("f{f}"))).collect();
        for (f, p) in paths.iter().enumerate() {
            std::fs::write(p, (0..sizes[f]).map(|o| content(f as u32, o)).collect::<Vec<u8>>()).unwrap();
        }
        let cfg = ReaderConfig {
            backend: BackendChoice::Force(DiskBackend::Pread),
            queue_depth: 2,
            block_bytes: 64 << 10,
            buffers: 4 + 2,
            max_open_files: 8,
        };
        let mut reader = DiskReader::new(&cfg).unwrap();
        let region = BufRegion::new(reader.pool().region().clone());
        let buffers: Vec<RegionBuf> = (0..2).map(|_| region.adopt(reader.reserve().unwrap())).collect();
        let (chunks_tx, chunks_rx) = ring::<ReadOutcome>(4);
        let (free_tx, free_rx) = ring::<RegionBuf>(4);
        let (repair_tx, repair_rx) = ring::<RepairReq>(2);
        let (repaired_tx, repaired_rx) = ring::<Repaired>(2);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shared = ReaderShared::new(stop.clone());
        let reader_bell = Bell::new();
        let mut server =
            RepairServer::new(region.clone(), paths.clone(), repair_rx, Outbox::from_ring(repaired_tx, Bell::new()));
        server.delay = Duration::from_millis(2);
        let stage = ReaderStage::new(
            reader,
            region.clone(),
            paths,
            sizes.clone(),
            false,
            Outbox::from_ring(chunks_tx, Bell::new()),
            free_rx,
            shared.clone(),
            server,
        );
        let (rb, st) = (reader_bell.clone(), stop.clone());
        let t = std::thread::spawn(move || run(stage, &rb, StageCx::new(StageId::Reader, None, st)));
        let repairs = Repairs {
            out: Outbox::from_ring(repair_tx, reader_bell.clone()),
            back: repaired_rx,
            buffers,
            sizes: sizes.clone(),
        };
        let free = Outbox::from_ring(free_tx, reader_bell.clone());
        let mut src = ChunkSource::new(region.clone(), chunks_rx, free, shared, repairs);
        let block = 1400u64;
        let blocks: Vec<(u32, u64)> =
            (0..3u32).flat_map(|f| (0..sizes[f as usize]).step_by(block as usize).map(move |o| (f, o))).collect();
        let mut buf = vec![0u8; block as usize];
        let check = |f: u32, o: u64, buf: &[u8]| buf.iter().enumerate().all(|(i, &b)| b == content(f, o + i as u64));
        // First transmissions, in order, from the stream.
        for &(f, o) in &blocks {
            let n = block.min(sizes[f as usize] - o) as usize;
            assert!(src.ready(f, o, n, true).unwrap());
            src.read_first(f, o, &mut buf[..n]).unwrap();
            assert!(check(f, o, &buf[..n]), "first transmission of {f}:{o}");
        }
        src.release_all();
        // Every 5th block resent, in order (as the core resends pending blocks).
        let mut waits = 0;
        let resent: Vec<(u32, u64)> = blocks.iter().copied().step_by(5).collect();
        for &(f, o) in &resent {
            let n = block.min(sizes[f as usize] - o) as usize;
            while !src.ready(f, o, n, false).unwrap() {
                waits += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            src.read_block(f, o, &mut buf[..n]).unwrap();
            assert!(check(f, o, &buf[..n]), "retransmission of {f}:{o}");
        }
        assert_eq!(src.from_repairs, resent.len() as u64);
        assert!(waits > 0, "a slow reader must make the source wait");
        let asked = src.repairs_asked;
        // Spans of 64 KiB (the buffer size here) hold about 9 of these blocks each.
        assert!(asked > 0 && asked * 5 < resent.len() as u64, "{asked} reads for {} blocks", resent.len());
        stop.store(true, Ordering::Relaxed);
        reader_bell.ring();
        t.join().unwrap();
    }
}
