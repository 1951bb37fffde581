//! [`HashJob`]: one step of a file's whole-file hash over bytes read back from the store (PROTOCOL.md §4.6).
//!
//! The hash state travels with the job, so the reads (and the hashing) can happen wherever the store does its
//! disk work: in place for the simulator's stores and the plain destination tree, on the writer
//! stage for the pipeline's store, whose reassembly stage must not wait on the disk.

use std::io;
use xxhash_rust::xxh3::Xxh3;

/// Advance `hasher`, the hash of file `file_id` over `[0, cursor)`, to `[0, upto)` with the bytes the store
/// holds. Owned by exactly one side at a time: the session, or the store while the job is out.
pub struct HashJob {
    /// File id.
    pub file_id: u32,
    /// Bytes hashed so far (the next byte to read back).
    pub cursor: u64,
    /// Where this job stops.
    pub upto: u64,
    /// The running hash (boxed: it is ~600 bytes and moves through rings).
    pub hasher: Box<Xxh3>,
}

/// A job handed back by the store: advanced to `upto`, or stopped by a read error.
pub struct HashDone {
    /// The job; `cursor` is where it stopped.
    pub job: HashJob,
    /// The read-back error, if one stopped it.
    pub result: io::Result<()>,
}

impl HashJob {
    /// A job over `[0, upto)` with a fresh hash.
    pub fn new(file_id: u32, upto: u64) -> HashJob {
        HashJob { file_id, cursor: 0, upto, hasher: Box::new(Xxh3::new()) }
    }

    /// Whether `cursor` reached `upto`.
    pub fn is_done(&self) -> bool {
        self.cursor >= self.upto
    }

    /// Reads back (through `read`, called with an offset and a buffer to fill exactly) and hashes at most
    /// `scratch.len()` bytes; the caller repeats until [`HashJob::is_done`], so a disk stage can interleave
    /// other work between steps.
    pub fn step(&mut self, scratch: &mut [u8], read: impl FnOnce(u64, &mut [u8]) -> io::Result<()>) -> io::Result<()> {
        assert!(!scratch.is_empty(), "a read-back step needs a buffer");
        let n = (self.upto.saturating_sub(self.cursor)).min(scratch.len() as u64) as usize;
        if n == 0 {
            return Ok(());
        }
        read(self.cursor, &mut scratch[..n])?;
        self.hasher.update(&scratch[..n]);
        self.cursor += n as u64;
        Ok(())
    }

    /// Runs the whole job at once, through `read`: what a store that reads in place does in
    /// [`super::BlockStore::hash_back`].
    pub fn run(mut self, scratch: &mut [u8], mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>) -> HashDone {
        while !self.is_done() {
            if let Err(e) = self.step(scratch, &mut read) {
                return HashDone { job: self, result: Err(e) };
            }
        }
        HashDone { job: self, result: Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps of any size give the hash of the whole range, and an error stops the job where it happened.
    #[test]
    fn steps_hash_the_range_and_errors_stop_the_job() {
        let data: Vec<u8> = (0..10_000u32).map(|k| (k * 7 + 3) as u8).collect();
        let read = |off: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&data[off as usize..off as usize + buf.len()]);
            Ok(())
        };
        let mut job = HashJob::new(3, 4_000);
        job.step(&mut [0u8; 1500], read).unwrap();
        assert_eq!(job.cursor, 1500);
        let mut done = job.run(&mut [0u8; 333], read);
        assert!(done.result.is_ok() && done.job.cursor == 4_000);
        done.job.upto = 10_000;
        let done = done.job.run(&mut [0u8; 4096], read);
        assert_eq!(done.job.hasher.digest128(), xxhash_rust::xxh3::xxh3_128(&data));
        let failing = HashJob::new(1, 100).run(&mut [0u8; 64], |off, buf| {
            if off >= 64 {
                return Err(io::Error::other("gone"));
            }
            read(off, buf)
        });
        assert!(failing.result.is_err() && failing.job.cursor == 64);
    }
}
