//! [`ChunkSource`]: the packetizer's [`BlockSource`]. First transmissions are cut from the reader stage's
//! chunks as they come off the `chunks` ring; everything else (retransmissions, repair rounds) is read with
//! positional reads through [`SourceFiles`].

use super::reader::{Chunk, ReadOutcome, ReaderShared};
use super::runtime::{Inbox, Outbox};
use super::slots::{BufRegion, RegionBuf};
use crate::files::SourceFiles;
use crate::proto::BlockSource;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cuts first transmissions out of the reader's chunks; see the [module documentation](self).
pub struct ChunkSource {
    region: Arc<BufRegion>,
    input: Inbox<ReadOutcome>,
    free: Outbox<RegionBuf>,
    shared: ReaderShared,
    /// The chunk being cut, owned by this stage until it is passed back.
    current: Option<Chunk>,
    fallback: SourceFiles,
    /// Time spent waiting for the reader, for the packetizer's stats.
    pub stalled: Duration,
    /// Blocks served from chunks, and by positional reads.
    pub from_chunks: u64,
    /// Blocks read with positional reads.
    pub from_fallback: u64,
}

impl ChunkSource {
    /// A source over the reader's `region`, its chunk ring and the ring that returns buffers.
    pub fn new(
        region: Arc<BufRegion>,
        input: Inbox<ReadOutcome>,
        free: Outbox<RegionBuf>,
        shared: ReaderShared,
        fallback: SourceFiles,
    ) -> ChunkSource {
        ChunkSource {
            region,
            input,
            free,
            shared,
            current: None,
            fallback,
            stalled: Duration::ZERO,
            from_chunks: 0,
            from_fallback: 0,
        }
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
                    ReadOutcome::Chunk(c) => Ok(Some(c)),
                    ReadOutcome::Failed => Err(self.failure()),
                };
            }
            // Acquire pairs with the reader's Release: a chunk published before `finished` is seen above on
            // the next pop.
            if self.shared.finished.load(Ordering::Acquire) {
                if let Some(o) = self.input.pop() {
                    self.input.release();
                    if let ReadOutcome::Chunk(c) = o {
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

    /// Gives the current chunk back (at the end of a transfer).
    pub fn release_all(&mut self) {
        if let Some(c) = self.current.take() {
            self.give_back(c);
        }
    }
}

impl BlockSource for ChunkSource {
    fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.from_fallback += 1;
        self.fallback.read_block(file_id, offset, buf)
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
                // A chunk after the block (a repair round re-reads a file): not from the stream.
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
        let mut pool = BufferPool::new(4, 4096);
        let region = BufRegion::new(pool.region().clone());
        let (mut to_src, from_test) = ring::<ReadOutcome>(4);
        let (back, mut returned) = ring::<RegionBuf>(4);
        let shared = ReaderShared::new(Arc::default());
        let back = Outbox::from_ring(back, Bell::new());
        let mut src = ChunkSource::new(region.clone(), from_test, back, shared.clone(), SourceFiles::new(vec![]));
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
}
