//! File contents for simulated transfers: synthesised by position, so gigabytes need no memory, and stores
//! that check every write.

use super::rng::splitmix;
use crate::proto::{BlockSource, BlockStore, HashDone, HashJob};
use std::io;
use xxhash_rust::xxh3::Xxh3;

/// Fills `buf` with the synthetic bytes of file `file_id` at `offset` for `seed`: a pure function of
/// (seed, file, position), so any block can be produced alone and checked alone.
pub fn synth_fill(seed: u64, file_id: u32, offset: u64, buf: &mut [u8]) {
    let key = seed ^ ((file_id as u64) << 40).wrapping_mul(0x9e37_79b9);
    let word = |w: u64| splitmix(key.wrapping_add(w)).to_le_bytes();
    // The bytes before the first whole word, then whole words, then the bytes after: one 8-byte store per
    // word (the simulator fills gigabytes per test; byte-wise copies were half of a long run's time).
    let start = (offset % 8) as usize;
    let head = if start == 0 { 0 } else { (8 - start).min(buf.len()) };
    let (first, rest) = buf.split_at_mut(head);
    if head > 0 {
        first.copy_from_slice(&word(offset / 8)[start..start + head]);
    }
    let mut w = (offset + head as u64) / 8;
    let mut words = rest.chunks_exact_mut(8);
    for out in &mut words {
        out.copy_from_slice(&word(w));
        w += 1;
    }
    let tail = words.into_remainder();
    let n = tail.len();
    if n > 0 {
        tail.copy_from_slice(&word(w)[..n]);
    }
}

/// xxh3-128 of a whole synthetic file: what the receiver must end up with.
pub fn synth_hash(seed: u64, file_id: u32, size: u64) -> u128 {
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        synth_fill(seed, file_id, off, &mut buf[..n]);
        h.update(&buf[..n]);
        off += n as u64;
    }
    h.digest128()
}

/// A sender's files, synthesised.
#[derive(Clone, Debug)]
pub struct SynthSource {
    /// The seed of the contents.
    pub seed: u64,
}

impl BlockSource for SynthSource {
    fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        synth_fill(self.seed, file_id, offset, buf);
        Ok(())
    }
}

/// A receiver's store for large simulated transfers: checks each written block against the synthetic
/// contents at once and keeps only counts. Reading back regenerates the bytes, which is faithful because
/// every write was checked.
#[derive(Clone, Debug)]
pub struct CheckingStore {
    seed: u64,
    sizes: Vec<u64>,
    /// Bytes written per file in the current attempt (a reset clears it).
    pub written: Vec<u64>,
    /// Writes whose bytes differed from the synthetic contents.
    pub mismatched_writes: u64,
    /// Files committed.
    pub committed: Vec<bool>,
    /// Commits of a file whose bytes were not all written: must stay 0.
    pub premature_commits: u64,
    /// Whether `finish` ran.
    pub finished: bool,
    scratch: Vec<u8>,
}

impl CheckingStore {
    /// A store expecting files of `sizes` with contents from `seed`.
    pub fn new(seed: u64, sizes: Vec<u64>) -> CheckingStore {
        let n = sizes.len();
        CheckingStore {
            seed,
            sizes,
            written: vec![0; n],
            mismatched_writes: 0,
            committed: vec![false; n],
            premature_commits: 0,
            finished: false,
            scratch: Vec::new(),
        }
    }

    /// Whether every file was committed, complete, with every write correct.
    pub fn all_identical(&self) -> bool {
        self.mismatched_writes == 0 && self.premature_commits == 0 && self.committed.iter().all(|&c| c)
    }
}

impl BlockStore for CheckingStore {
    fn write_block(&mut self, file_id: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.scratch.resize(data.len(), 0);
        synth_fill(self.seed, file_id, offset, &mut self.scratch);
        if self.scratch != data {
            self.mismatched_writes += 1;
        }
        self.written[file_id as usize] += data.len() as u64;
        Ok(())
    }

    fn hash_back(&mut self, job: HashJob, scratch: &mut [u8]) -> Option<HashDone> {
        let (seed, file_id) = (self.seed, job.file_id);
        Some(job.run(scratch, |offset, buf| {
            synth_fill(seed, file_id, offset, buf);
            Ok(())
        }))
    }

    fn commit(&mut self, file_id: u32) -> io::Result<()> {
        let i = file_id as usize;
        if self.written[i] != self.sizes[i] {
            self.premature_commits += 1;
        }
        self.committed[i] = true;
        Ok(())
    }

    fn reset(&mut self, file_id: u32) -> io::Result<()> {
        self.written[file_id as usize] = 0;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        Ok(())
    }
}

/// A receiver's store that keeps every byte in memory (small transfers), with an optional fault: one
/// write whose bytes are damaged after the packet was verified, as a failing disk or a bug would.
#[derive(Clone, Debug)]
pub struct MemStore {
    /// Temporary (uncommitted) contents per file.
    pub temp: Vec<Vec<u8>>,
    /// Committed contents per file: what a user would see under the final names.
    pub committed: Vec<Option<Vec<u8>>>,
    /// Damage the next write covering (file id, offset), once.
    pub corrupt_write_at: Option<(u32, u64)>,
    /// Resets performed.
    pub resets: u64,
    /// Fail writes with "No space left on device" once this many bytes were written.
    pub space_bytes: Option<u64>,
    written_bytes: u64,
}

impl MemStore {
    /// A store for files of `sizes`.
    pub fn new(sizes: &[u64]) -> MemStore {
        MemStore {
            temp: sizes.iter().map(|&s| vec![0; s as usize]).collect(),
            committed: vec![None; sizes.len()],
            corrupt_write_at: None,
            resets: 0,
            space_bytes: None,
            written_bytes: 0,
        }
    }
}

impl BlockStore for MemStore {
    fn write_block(&mut self, file_id: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.written_bytes += data.len() as u64;
        if self.space_bytes.is_some_and(|s| self.written_bytes > s) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "writing 'sim': No space left on device"));
        }
        let f = &mut self.temp[file_id as usize];
        let at = offset as usize;
        f[at..at + data.len()].copy_from_slice(data);
        if let Some((id, off)) = self.corrupt_write_at {
            if id == file_id && off >= offset && off < offset + data.len() as u64 {
                f[off as usize] ^= 0x40;
                self.corrupt_write_at = None;
            }
        }
        Ok(())
    }

    fn hash_back(&mut self, job: HashJob, scratch: &mut [u8]) -> Option<HashDone> {
        let file = &self.temp[job.file_id as usize];
        Some(job.run(scratch, |offset, buf| {
            let at = offset as usize;
            buf.copy_from_slice(&file[at..at + buf.len()]);
            Ok(())
        }))
    }

    fn commit(&mut self, file_id: u32) -> io::Result<()> {
        self.committed[file_id as usize] = Some(self.temp[file_id as usize].clone());
        Ok(())
    }

    fn reset(&mut self, file_id: u32) -> io::Result<()> {
        self.temp[file_id as usize].iter_mut().for_each(|b| *b = 0);
        self.resets += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesis_is_positional() {
        let mut whole = vec![0u8; 100];
        synth_fill(7, 3, 1000, &mut whole);
        let mut part = vec![0u8; 37];
        synth_fill(7, 3, 1013, &mut part);
        assert_eq!(&whole[13..50], &part[..]);
        let mut other = vec![0u8; 100];
        synth_fill(7, 4, 1000, &mut other);
        assert_ne!(whole, other);
    }

    /// The word-wise fill gives the bytes the definition gives (byte `p` of file `f` is byte `p % 8` of
    /// word `p / 8`), at every alignment of start and end, including runs inside one word.
    #[test]
    fn synthesis_matches_its_definition_at_every_alignment() {
        let key = 9 ^ ((5u64) << 40).wrapping_mul(0x9e37_79b9);
        let byte = |p: u64| splitmix(key.wrapping_add(p / 8)).to_le_bytes()[(p % 8) as usize];
        for offset in 0..24u64 {
            for len in 0..40usize {
                let mut buf = vec![0u8; len];
                synth_fill(9, 5, offset, &mut buf);
                let want: Vec<u8> = (offset..offset + len as u64).map(byte).collect();
                assert_eq!(buf, want, "offset {offset} len {len}");
            }
        }
    }
}
