//! The sender's reader stage: every file, front to back, in large blocks ("chunks") read by a
//! [`DiskReader`] into its pool, handed to the packetizer in (file, offset) order through the `chunks` ring.
//!
//! Several reads are in flight at once, across file boundaries, so many small files do not serialise on
//! one read each. Chunks come back through the `chunk_free` ring as raw buffer indices. The ring towards the
//! packetizer blocks this stage when full (disk -> network backpressure, ENGINEERING.md §9).

use super::bell::Bell;
use super::ring::{Consumer, Producer};
use super::stats::{StageMeter, StageReport};
use crate::disk::{BufIdx, DiskReader, FileId, Full, InOrder, ReadReq};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One block of one file in the reader's pool, owned by whoever holds it (ring slot, then packetizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Raw buffer index in the reader's region, or [`Chunk::FAILED`].
    pub buf: u32,
    /// File id (index in the manifest's regular files).
    pub file_id: u32,
    /// Offset of the chunk's first byte.
    pub offset: u64,
    /// Valid bytes.
    pub len: u32,
}

impl Chunk {
    /// `buf` of a chunk that reports a failed read; the message is in the stage's shared error slot.
    pub const FAILED: u32 = u32::MAX;
}

/// What the reader and the packetizer share besides the rings.
#[derive(Clone, Default)]
pub struct ReaderShared {
    /// Set by the reader once every chunk (or a failure) is published.
    pub finished: Arc<AtomicBool>,
    /// Set by anyone to end the stage early.
    pub stop: Arc<AtomicBool>,
    /// Why reading failed (set before the failed chunk is published).
    pub error: Arc<Mutex<Option<String>>>,
    /// Wakes the reader (rung when buffers come back).
    pub reader_bell: Bell,
    /// Wakes the packetizer (rung when chunks are published).
    pub packetizer_bell: Bell,
}

/// Most files open at once (they are read in order, so these are the next few).
const MAX_OPEN: usize = 48;

/// Runs the reader stage until every file is read, a read fails, or `stop`.
#[allow(clippy::too_many_arguments)]
pub fn run_reader(
    mut reader: DiskReader,
    paths: Vec<PathBuf>,
    sizes: Vec<u64>,
    direct: bool,
    mut out: Producer<Chunk>,
    mut free: Consumer<u32>,
    shared: ReaderShared,
    mut meter: StageMeter,
) -> StageReport {
    shared.reader_bell.register();
    let read_latency = meter.add_latency("block_read");
    let cap = reader.pool().count() as usize;
    assert!(out.capacity() >= cap, "the chunk ring must hold every buffer of the pool");
    let block = reader.block_bytes() as u64;
    let mut order = InOrder::new(cap, 0);
    // Per request (req_id % cap): file id, offset, length, submit time. Fixed size: at most `cap` requests are
    // outstanding because each holds a buffer.
    let mut meta: Vec<(u32, u64, u32, Instant)> = vec![(0, 0, 0, Instant::now()); cap];
    let mut open: VecDeque<(u32, FileId)> = VecDeque::with_capacity(MAX_OPEN);
    let (mut next_file, mut next_off, mut next_req) = (0usize, 0u64, 0u64);
    // Chunks popped in order but not yet in the ring (full): at most one chunk and one failure report.
    let mut outbox: VecDeque<Chunk> = VecDeque::with_capacity(4);
    let mut failed = false;
    let fail = |msg: String| {
        shared.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(msg);
        Chunk { buf: Chunk::FAILED, file_id: 0, offset: 0, len: 0 }
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        while let Some(raw) = free.pop() {
            // Safety: the packetizer passed this index back through the ring; it no longer touches the buffer.
            reader.release(unsafe { BufIdx::from_raw(raw) });
        }
        free.release();

        // Deliver finished reads in request order.
        let mut pushed = 0;
        loop {
            if let Some(&c) = outbox.front() {
                if out.push(c).is_err() {
                    break;
                }
                outbox.pop_front();
                pushed += 1;
                continue;
            }
            if failed {
                break;
            }
            let Some(c) = order.pop() else { break };
            let (file_id, offset, len, submitted) = meta[(c.req_id % cap as u64) as usize];
            meter.record(read_latency, submitted.elapsed().as_nanos() as u64);
            let chunk = match c.result {
                Ok(n) if n == len as usize => {
                    meter.add(1, len as u64);
                    Chunk { buf: c.buf.into_raw(), file_id, offset, len }
                }
                Ok(n) => {
                    reader.release(c.buf);
                    failed = true;
                    fail(format!(
                        "'{}' shrank while being sent (read {n} of {len} bytes at offset {offset})",
                        paths[file_id as usize].display()
                    ))
                }
                Err(e) => {
                    reader.release(c.buf);
                    failed = true;
                    fail(e.to_string())
                }
            };
            if !failed && offset + len as u64 == sizes[file_id as usize] {
                // Its last chunk, delivered in order: no read of this file is left in flight.
                if let Some(pos) = open.iter().position(|&(f, _)| f == file_id) {
                    let (_, fid) = open.remove(pos).expect("position is valid");
                    let _ = reader.close(fid);
                }
            }
            outbox.push_back(chunk);
        }
        if pushed > 0 {
            out.publish();
            shared.packetizer_bell.ring();
        }

        // Submit reads while slots, buffers and open-file room last.
        while next_file < sizes.len() && !failed {
            let size = sizes[next_file];
            if size == 0 {
                next_file += 1;
                next_off = 0;
                continue;
            }
            let fid = match open.back() {
                Some(&(f, fid)) if f as usize == next_file => fid,
                _ if open.len() == MAX_OPEN => break,
                _ => match reader.open(&paths[next_file], direct) {
                    Ok(fid) => {
                        open.push_back((next_file as u32, fid));
                        fid
                    }
                    Err(e) => {
                        failed = true;
                        outbox.push_back(fail(e.to_string()));
                        break;
                    }
                },
            };
            let len = (size - next_off).min(block) as u32;
            match reader.submit(ReadReq { req_id: next_req, file: fid, offset: next_off, len }) {
                Err(Full) => break,
                Ok(()) => {
                    meta[(next_req % cap as u64) as usize] = (next_file as u32, next_off, len, Instant::now());
                    next_req += 1;
                    next_off += len as u64;
                    if next_off == size {
                        next_file += 1;
                        next_off = 0;
                    }
                }
            }
        }

        let mut completed = false;
        loop {
            match reader.poll_complete() {
                Ok(Some(c)) => {
                    order.insert(c);
                    completed = true;
                }
                Ok(None) => break,
                Err(e) => {
                    failed = true;
                    outbox.push_back(fail(format!("the disk reader failed: {e}")));
                    break;
                }
            }
        }
        let all_read = next_file >= sizes.len() && order.next_req_id() == next_req;
        if outbox.is_empty() && (all_read || failed) && !completed {
            shared.finished.store(true, Ordering::Release);
            shared.packetizer_bell.ring();
            break;
        }
        if completed {
            continue;
        }
        if !outbox.is_empty() {
            meter.park_for_output(Duration::from_millis(2));
        } else if reader.in_flight() > 0 {
            let t = Instant::now();
            match reader.wait_complete() {
                Ok(Some(c)) => order.insert(c),
                Ok(None) => {}
                Err(e) => {
                    failed = true;
                    outbox.push_back(fail(format!("the disk reader failed: {e}")));
                }
            }
            meter.stalled_on_input(t.elapsed());
        } else {
            // Every buffer is downstream: wait for the packetizer to give one back.
            meter.park_for_output(Duration::from_millis(2));
        }
    }
    meter.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{BackendChoice, DiskBackend, ReaderConfig};
    use crate::pipeline::ring::ring;
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
            let region = reader.pool().region().clone();
            let (out, mut chunks) = ring::<Chunk>(8);
            let (mut free, free_rx) = ring::<u32>(8);
            let shared = ReaderShared::default();
            let (p, s, sh) = (paths.clone(), sizes.clone(), shared.clone());
            let t = std::thread::spawn(move || {
                run_reader(reader, p, s, false, out, free_rx, sh, StageMeter::new("reader", None))
            });
            let mut expect = (0u32, 0u64);
            loop {
                let Some(c) = chunks.pop() else {
                    if shared.finished.load(Ordering::Acquire) && chunks.available() == 0 {
                        break;
                    }
                    std::thread::yield_now();
                    continue;
                };
                chunks.release();
                assert_ne!(c.buf, Chunk::FAILED, "{:?}", shared.error.lock().unwrap());
                while sizes[expect.0 as usize] == 0 {
                    expect = (expect.0 + 1, 0);
                }
                assert_eq!((c.file_id, c.offset), expect, "{backend:?}");
                // Safety: this test holds the chunk until it pushes it back below.
                let bytes = unsafe { region.bytes(c.buf) };
                for (k, &b) in bytes[..c.len as usize].iter().enumerate() {
                    assert_eq!(b, ((c.offset as usize + k) * 31 + c.file_id as usize) as u8);
                }
                expect.1 += c.len as u64;
                if expect.1 == sizes[expect.0 as usize] {
                    expect = (expect.0 + 1, 0);
                }
                free.push(c.buf).unwrap();
                free.publish();
                shared.reader_bell.ring();
            }
            let report = t.join().unwrap();
            assert_eq!(report.bytes, sizes.iter().sum::<u64>(), "{backend:?}");
            while (expect.0 as usize) < sizes.len() && sizes[expect.0 as usize] == 0 {
                expect.0 += 1;
            }
            assert_eq!(expect.0 as usize, sizes.len(), "{backend:?}: not every file was read");
        }
    }
}
