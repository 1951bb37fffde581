//! The reader stage's repair service: retransmissions' reads. The packetizer sends a [`RepairReq`] (a repair
//! buffer and the bytes it wants) on the `repair` ring; the reader reads them with a positional read through
//! its table of buffered descriptors and sends the buffer back on `repaired`. So the packetizer never reads
//! the disk, and the in-order stream and the repairs each have their own buffers.
//!
//! Why `pread` and not the io_uring of the stream: repairs are rare, small and at any offset (O_DIRECT
//! descriptors of the stream cannot serve unaligned reads), and recently sent bytes are in the page cache.

use super::items::{Chunk, RepairReq, Repaired};
use super::runtime::{Inbox, Outbox, StageCx};
use super::slots::BufRegion;
use crate::files::{Opener, SourceFiles};
use crate::proto::BlockSource;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// See the [module documentation](self).
pub struct RepairServer {
    region: Arc<BufRegion>,
    input: Inbox<RepairReq>,
    out: Outbox<Repaired>,
    files: SourceFiles,
    /// A pause before each read, for tests that need a slow disk.
    pub delay: Duration,
}

impl RepairServer {
    /// Serves reads of `paths` into buffers of `region` (the reader's pool).
    pub fn new(region: Arc<BufRegion>, paths: Vec<PathBuf>, input: Inbox<RepairReq>, out: Outbox<Repaired>) -> Self {
        assert!(out.capacity() >= input.capacity(), "repaired ring smaller than repair");
        RepairServer { region, input, out, files: SourceFiles::new(paths), delay: Duration::ZERO }
    }

    /// Names the files in error messages by `names` (index = file id) instead of their paths.
    pub fn set_names(&mut self, names: Vec<String>) {
        self.files.set_names(names);
    }

    /// Opens the files with `opener` (beneath a served root for a daemon's pull).
    pub fn set_opener(&mut self, opener: Opener) {
        self.files.set_opener(opener);
    }

    /// Reads the ranges of split files from their offsets ([`crate::files::SourceFiles::set_bases`]).
    pub fn set_bases(&mut self, bases: Vec<u64>) {
        self.files.set_bases(bases);
    }

    /// Reads every waiting request; returns how many.
    pub fn serve(&mut self, cx: &mut StageCx, latency: usize) -> usize {
        let mut served = 0;
        while let Some(RepairReq { mut buf, file_id, offset, len }) = self.input.pop() {
            let t = Instant::now();
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            let bytes = &mut self.region.bytes_mut(&mut buf)[..len as usize];
            let result = self.files.read_block(file_id, offset, bytes).map_err(|e| e.to_string());
            cx.meter.record(latency, t.elapsed().as_nanos() as u64);
            let done = Repaired { chunk: Chunk { buf, file_id, offset, len }, result };
            assert!(self.out.push(done).is_ok(), "the repaired ring holds every repair buffer");
            served += 1;
        }
        if served > 0 {
            self.input.release();
            self.out.publish();
        }
        served
    }
}
