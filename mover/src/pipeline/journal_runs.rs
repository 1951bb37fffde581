//! [`JournalRuns`]: the writer stage's half of the resume journals. Each run whose write completed in full
//! is hashed here, from the run's buffer that the kernel just wrote from (issue 18: each byte read and
//! hashed once fewer), into a contiguous range of its file; a closed range goes to the
//! [`super::journal_keeper::JournalKeeper`] already hashed, so the keeper's thread never reads the data
//! back. The keeper still syncs the data file before the journal vouches for a range, and a resume still
//! re-reads every journaled range and keeps only those whose bytes match (`files::journal::verify_ranges`).
//!
//! Why a range's hash equals what the partial holds: a range is made only of writes that completed in full,
//! hashed from the buffers they were written from, before those buffers go back to the store; all of them
//! were submitted in the same generation of the file (the tree bumps it when it commits or resets a file,
//! and a reset happens only once the file's writes have completed), and the keeper records a range only if
//! the file is still in that generation. Runs of the same file that touch are merged into one range (one
//! journal record) up to [`CLOSE_BYTES`], as the journal itself merges ranges recorded in order.

use crate::files::journal::JournalRange;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3Default;

/// Ranges being hashed at once (across files); a run that extends none of them when all are in use closes
/// the least recently extended one.
pub const MAX_OPEN: usize = 16;
/// A range is closed once it holds this many bytes: an eighth of the journal's step
/// (`JournalConfig::step_bytes`, 64 MiB), which merges in-order records itself. Closing at a whole step
/// delayed what a step could vouch for by up to one more step, so a SIGKILLed receiver resumed less
/// (`netns_resume`'s kill-the-server test caught it).
pub const CLOSE_BYTES: u64 = 8 << 20;
/// A range not extended for this long is closed, so a stalled transfer's written bytes still reach the
/// journal (which then flushes them after its own idle time).
pub const IDLE_CLOSE: Duration = Duration::from_millis(200);

/// What the writer tells the journal keeper.
#[derive(Debug)]
pub enum Notice {
    /// A file's first write of a generation completed (no range of it is open): start its journal now, as
    /// when every run was a notice, so that the journal exists (header and trusted ranges durable) from the
    /// first write on, even if the disk fills before the range closes.
    Begin {
        /// File id.
        file_id: u32,
        /// Its generation.
        generation: u32,
        /// A descriptor of the partial (the journal's data file).
        fd: OwnedFd,
    },
    /// A range to record.
    Range(ClosedRange),
}

/// A write that completed in full: `bytes` of file `file_id` at `offset`, through `fd` (a descriptor of the
/// partial), submitted in the file's generation `generation` ([`JournalRuns::generation`]).
pub struct WrittenRun<'a> {
    /// File id.
    pub file_id: u32,
    /// The file's generation when the write was submitted.
    pub generation: u32,
    /// The write's descriptor of the partial.
    pub fd: OwnedFd,
    /// File offset.
    pub offset: u64,
    /// The bytes written (the run's buffer).
    pub bytes: &'a [u8],
}

/// A finished range for the journal keeper: `range` of file `file_id`, written through descriptors of the
/// partial (`fd`, one of them) in generation `generation`, hashing to `range.xxh3`.
#[derive(Debug)]
pub struct ClosedRange {
    /// File id.
    pub file_id: u32,
    /// The file's generation when the range's writes were submitted.
    pub generation: u32,
    /// A descriptor of the partial (the journal's data file if this starts the file's journal).
    pub fd: OwnedFd,
    /// The range and the xxh3-64 of its bytes.
    pub range: JournalRange,
}

struct OpenRange {
    file_id: u32,
    generation: u32,
    fd: OwnedFd,
    offset: u64,
    len: u64,
    hash: Xxh3Default,
    touched: Instant,
}

impl OpenRange {
    fn close(self) -> Notice {
        let range = JournalRange { offset: self.offset, len: self.len, xxh3: self.hash.digest() };
        Notice::Range(ClosedRange { file_id: self.file_id, generation: self.generation, fd: self.fd, range })
    }
}

/// See the [module documentation](self).
pub struct JournalRuns {
    /// At most [`MAX_OPEN`] (capacity reserved at creation: nothing is allocated per run).
    open: Vec<OpenRange>,
    generations: Arc<[AtomicU32]>,
}

impl JournalRuns {
    /// Ranges of the files whose generations the tree keeps in `generations` (`FileJournals::generations`).
    pub fn new(generations: Arc<[AtomicU32]>) -> JournalRuns {
        JournalRuns { open: Vec::with_capacity(MAX_OPEN), generations }
    }

    /// The generation of `file_id` now: read when a write is submitted, passed back to [`JournalRuns::written`].
    pub fn generation(&self, file_id: u32) -> u32 {
        self.generations.get(file_id as usize).map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// `run.bytes` were written in full (see [`WrittenRun`]): hash them into the range they extend (or a new
    /// one). Ranges this closes go to `emit`.
    pub fn written(&mut self, run: WrittenRun, now: Instant, emit: &mut impl FnMut(Notice)) {
        let WrittenRun { file_id, generation, fd, offset, bytes } = run;
        debug_assert!(!bytes.is_empty(), "an empty write is not journaled");
        if let Some(k) = self.open.iter().position(|r| r.file_id == file_id && r.offset + r.len == offset) {
            if self.open[k].generation == generation {
                let r = &mut self.open[k];
                r.hash.update(bytes);
                r.len += bytes.len() as u64;
                r.touched = now;
                if r.len >= CLOSE_BYTES {
                    emit(self.open.swap_remove(k).close());
                }
                return;
            }
            // The file was reset or committed since: that range is stale (the keeper drops it).
            emit(self.open.swap_remove(k).close());
        }
        if self.open.len() == MAX_OPEN {
            let lru = (0..self.open.len()).min_by_key(|&k| self.open[k].touched).expect("full");
            emit(self.open.swap_remove(lru).close());
        }
        if !self.open.iter().any(|r| r.file_id == file_id && r.generation == generation) {
            // A dup per range, not per run; without one the journal starts with the range instead.
            if let Ok(fd) = fd.try_clone() {
                emit(Notice::Begin { file_id, generation, fd });
            }
        }
        let mut hash = Xxh3Default::new();
        hash.update(bytes);
        let len = bytes.len() as u64;
        self.open.push(OpenRange { file_id, generation, fd, offset, len, hash, touched: now });
        debug_assert!(self.open.len() <= MAX_OPEN);
    }

    /// Closes the ranges not extended since `now - IDLE_CLOSE`.
    pub fn close_idle(&mut self, now: Instant, emit: &mut impl FnMut(Notice)) {
        let mut k = 0;
        while k < self.open.len() {
            if now.duration_since(self.open[k].touched) >= IDLE_CLOSE {
                emit(self.open.swap_remove(k).close());
            } else {
                k += 1;
            }
        }
    }

    /// Closes every range (the end of the session).
    pub fn close_all(&mut self, emit: &mut impl FnMut(Notice)) {
        while let Some(r) = self.open.pop() {
            emit(r.close());
        }
    }

    /// Ranges being hashed now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn gens(n: usize) -> Arc<[AtomicU32]> {
        (0..n).map(|_| AtomicU32::new(0)).collect()
    }

    /// Touching runs make one range whose hash is the hash of all their bytes; a gap, another file or
    /// another generation starts a new range; every range closes in the end, with the right hash.
    #[test]
    fn ranges_merge_touching_runs_and_hash_exactly_their_bytes() {
        let data: Vec<u8> = (0..40_000u32).map(|k| (k * 31 + 7) as u8).collect();
        let mut runs = JournalRuns::new(gens(2));
        let mut out = Vec::new();
        let now = Instant::now();
        let mut begun = Vec::new();
        let mut emit = |n: Notice| match n {
            Notice::Range(c) => out.push((c.file_id, c.generation, c.range)),
            Notice::Begin { file_id, generation, .. } => begun.push((file_id, generation)),
        };
        runs.written(
            WrittenRun { file_id: 0, generation: 0, fd: fd(), offset: 0, bytes: &data[..10_000] },
            now,
            &mut emit,
        );
        runs.written(
            WrittenRun { file_id: 0, generation: 0, fd: fd(), offset: 10_000, bytes: &data[10_000..20_000] },
            now,
            &mut emit,
        );
        runs.written(
            WrittenRun { file_id: 1, generation: 0, fd: fd(), offset: 20_000, bytes: &data[20_000..30_000] },
            now,
            &mut emit,
        ); // another file
        runs.written(
            WrittenRun { file_id: 0, generation: 0, fd: fd(), offset: 30_000, bytes: &data[30_000..40_000] },
            now,
            &mut emit,
        ); // a gap
        runs.written(
            WrittenRun { file_id: 0, generation: 1, fd: fd(), offset: 40_000, bytes: &data[..1] },
            now,
            &mut emit,
        ); // extends 30_000.. but a new generation
        assert_eq!(runs.open_count(), 3, "the stale range was closed when the new generation touched it");
        runs.close_all(&mut emit);
        // A Begin for each file's first range of a generation, and for the range after the gap only if
        // the file had no range open: it had one (0..20_000), so none.
        assert_eq!(begun, [(0, 0), (1, 0), (0, 1)]);
        out.sort_by_key(|(f, g, r)| (*f, *g, r.offset));
        let want = |offset: usize, end: usize| JournalRange {
            offset: offset as u64,
            len: (end - offset) as u64,
            xxh3: xxh3_64(&data[offset..end]),
        };
        assert_eq!(out[0], (0, 0, want(0, 20_000)));
        assert_eq!(out[1], (0, 0, want(30_000, 40_000)));
        assert_eq!(out[2].2.offset, 40_000);
        assert_eq!(out[3], (1, 0, want(20_000, 30_000)));
        assert_eq!(out.len(), 4);
    }

    /// A range closes at CLOSE_BYTES, when idle, and when all are in use (the least recently extended).
    #[test]
    fn ranges_close_when_full_idle_or_evicted() {
        let chunk = vec![5u8; 1 << 20];
        let mut runs = JournalRuns::new(gens(MAX_OPEN + 2));
        let closed = std::cell::RefCell::new(Vec::new());
        let t0 = Instant::now();
        let mut emit = |n: Notice| {
            if let Notice::Range(c) = n {
                closed.borrow_mut().push((c.file_id, c.range))
            }
        };
        for k in 0..(CLOSE_BYTES >> 20) {
            runs.written(
                WrittenRun { file_id: 0, generation: 0, fd: fd(), offset: k << 20, bytes: &chunk },
                t0,
                &mut emit,
            );
        }
        assert_eq!(closed.borrow().len(), 1, "a range closes at CLOSE_BYTES");
        assert_eq!((closed.borrow()[0].1.offset, closed.borrow()[0].1.len), (0, CLOSE_BYTES));
        for f in 1..=MAX_OPEN as u32 {
            runs.written(
                WrittenRun { file_id: f, generation: 0, fd: fd(), offset: 0, bytes: &chunk },
                t0 + Duration::from_millis(u64::from(f)),
                &mut emit,
            );
        }
        assert_eq!(runs.open_count(), MAX_OPEN);
        runs.written(
            WrittenRun { file_id: MAX_OPEN as u32 + 1, generation: 0, fd: fd(), offset: 0, bytes: &chunk },
            t0 + Duration::from_secs(1),
            &mut emit,
        );
        assert_eq!(closed.borrow().last().unwrap().0, 1, "the least recently extended range was evicted");
        let before = closed.borrow().len();
        runs.close_idle(t0 + Duration::from_millis(50), &mut emit);
        assert_eq!(closed.borrow().len(), before, "nothing is idle yet");
        runs.close_idle(t0 + Duration::from_secs(1) + IDLE_CLOSE, &mut emit);
        assert_eq!(runs.open_count(), 0);
        assert_eq!(closed.borrow().len(), MAX_OPEN + 2);
    }
}
