//! Reads shared by the sessions of one fan-out push (`mover push --to A --to B --to C`): each chunk of the
//! sources is read from disk by the first session that needs it and copied to the others out of a bounded
//! buffer, so the sources are read once however many destinations there are (decision 0039).
//!
//! No session ever waits for another's network. A session that needs a chunk finds it in one of three
//! states:
//! - **ready** (another session read it): it is copied into the session's own pool buffer;
//! - **being read** by another session: the session waits for that read, which is already in the disk
//!   queue (a disk latency, bounded by [`STALE`] in case that session died);
//! - **absent**: the session claims it and reads it itself; once read it becomes ready for the others.
//!
//! A ready chunk leaves the buffer when every session still attached has taken it, or, when the buffer is
//! over its budget, oldest first. So a session that falls more than the budget behind the others (a slow
//! or failed path) finds its chunks gone and reads them itself: it costs the disk a second read, never the
//! others their speed. A session that ends (done, failed or given up after its retries) leaves, and
//! nothing is kept for it any more.
//!
//! A chunk is named by its file (a hash of its path and range base, the same in every session's scan)
//! and its offset and length in that file: sessions whose plans differ (one destination already holds a
//! file, another resumes one) share what they have in common and read the rest alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a chunk claimed by another session is waited for before this one reads it itself: the claim's
/// session may have failed with the read in flight.
pub const STALE: Duration = Duration::from_secs(2);

/// Most sessions one fan-out serves (one bit each in a chunk's taken-by mask).
pub const MAX_MEMBERS: usize = 64;

/// A chunk's name: which file (a hash of its path and base, [`file_key`]), and where and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    /// [`file_key`] of the chunk's file.
    pub file: u64,
    /// Byte offset in the file (with the range's base for a range of a split file).
    pub offset: u64,
    /// Bytes.
    pub len: u32,
}

/// A file's part of a [`ChunkKey`]: its path and the base of the range read (`Scanned::file_bases`), so
/// two ranges of one file are different files here.
pub fn file_key(path: &std::path::Path, base: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(path.as_os_str().as_encoded_bytes(), base)
}

/// What [`SharedReads::take_or_claim`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// The chunk was copied into the buffer given.
    Copied,
    /// Another session is reading it: ask again shortly.
    Wait,
    /// Read it from disk, then [`SharedReads::fill`] (or [`SharedReads::abandon`] if the read is not made).
    ReadIt,
}

enum Slot {
    Reading { owner: u32, since: Instant },
    Ready { data: Box<[u8]>, taken: u64, generation: u64 },
}

struct Inner {
    chunks: HashMap<ChunkKey, Slot>,
    /// Ready chunks in the order they were filled, with their generation (a chunk filled again is a new
    /// generation: the old queue entry must not evict it).
    filled: VecDeque<(ChunkKey, u64)>,
    generation: u64,
    /// Bytes of ready chunks held.
    bytes: usize,
    /// Sessions still attached, one bit each.
    active: u64,
    /// Per member: bytes it read from disk, bytes it copied from the others' reads.
    counts: Vec<(u64, u64)>,
    /// Chunk buffers given back, for the next fills (no allocation per chunk once warm).
    spare: Vec<Box<[u8]>>,
    /// Ready chunks dropped for the budget before every member took them.
    evicted: u64,
}

/// The shared buffer of one fan-out; see the [module documentation](self).
pub struct SharedReads {
    inner: Mutex<Inner>,
    budget: usize,
}

/// A session's place at a [`SharedReads`]: what its reader stage consults.
#[derive(Clone)]
pub struct ReadSeat {
    /// The fan-out's buffer.
    pub reads: Arc<SharedReads>,
    /// This session's member number (0..members).
    pub member: u32,
}

impl std::fmt::Debug for ReadSeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadSeat(member {})", self.member)
    }
}

impl SharedReads {
    /// A buffer for `members` sessions (1..=[`MAX_MEMBERS`]) holding at most `budget` bytes of ready chunks.
    pub fn new(members: usize, budget: usize) -> Arc<SharedReads> {
        assert!((1..=MAX_MEMBERS).contains(&members), "a fan-out serves 1..={MAX_MEMBERS} sessions");
        let active = if members == 64 { u64::MAX } else { (1u64 << members) - 1 };
        Arc::new(SharedReads {
            inner: Mutex::new(Inner {
                chunks: HashMap::new(),
                filled: VecDeque::new(),
                generation: 0,
                bytes: 0,
                active,
                counts: vec![(0, 0); members],
                spare: Vec::new(),
                evicted: 0,
            }),
            budget,
        })
    }

    /// Every member's seat, member 0 first.
    pub fn seats(self: &Arc<SharedReads>) -> Vec<ReadSeat> {
        let n = self.lock().counts.len();
        (0..n as u32).map(|member| ReadSeat { reads: self.clone(), member }).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The chunk `key` for `member`: copied into `dst` if another member read it, or whether to wait or
    /// read it (claimed for `member`, so the others wait for this read instead of making their own).
    pub fn take_or_claim(&self, member: u32, key: ChunkKey, dst: &mut [u8]) -> Share {
        let bit = 1u64 << member;
        let mut g = self.lock();
        let inner = &mut *g;
        let alone = inner.active & !bit == 0;
        match inner.chunks.get_mut(&key) {
            Some(Slot::Ready { data, taken, .. }) => {
                let len = key.len as usize;
                debug_assert_eq!(data.len(), len, "a chunk's bytes are its key's length");
                dst[..len].copy_from_slice(&data[..len]);
                *taken |= bit;
                inner.counts[member as usize].1 += len as u64;
                if *taken & inner.active == inner.active {
                    inner.remove(&key);
                }
                Share::Copied
            }
            Some(Slot::Reading { owner, since }) if *owner != member && since.elapsed() < STALE => Share::Wait,
            Some(slot @ Slot::Reading { .. }) => {
                *slot = Slot::Reading { owner: member, since: Instant::now() };
                Share::ReadIt
            }
            None if alone => Share::ReadIt,
            None => {
                inner.chunks.insert(key, Slot::Reading { owner: member, since: Instant::now() });
                Share::ReadIt
            }
        }
    }

    /// `member` read `key` from disk: `data` is ready for the others (dropping the oldest ready chunks over
    /// the budget).
    pub fn fill(&self, member: u32, key: ChunkKey, data: &[u8]) {
        let bit = 1u64 << member;
        let mut g = self.lock();
        let inner = &mut *g;
        inner.counts[member as usize].0 += data.len() as u64;
        debug_assert_eq!(data.len(), key.len as usize, "a chunk's bytes are its key's length");
        if inner.active & !bit == 0 || data.len() > self.budget {
            // Nobody else will ask (or it could never be held): keep nothing.
            if matches!(inner.chunks.get(&key), Some(Slot::Reading { .. })) {
                inner.chunks.remove(&key);
            }
            return;
        }
        if let Some(Slot::Ready { .. }) = inner.chunks.get(&key) {
            // Read twice (a claim that went stale): the copy held is as good.
            return;
        }
        let mut buf = match inner.spare.pop() {
            Some(b) if b.len() == data.len() => b,
            _ => vec![0u8; data.len()].into_boxed_slice(),
        };
        buf.copy_from_slice(data);
        inner.generation += 1;
        let generation = inner.generation;
        inner.chunks.insert(key, Slot::Ready { data: buf, taken: bit, generation });
        inner.filled.push_back((key, generation));
        inner.bytes += data.len();
        while inner.bytes > self.budget {
            let Some((old, g)) = inner.filled.pop_front() else { break };
            if matches!(inner.chunks.get(&old), Some(Slot::Ready { generation, .. }) if *generation == g) {
                inner.remove(&old);
                inner.evicted += 1;
            }
        }
    }

    /// `member` will not read `key` after all (the read could not be submitted, or failed): the others
    /// read it themselves.
    pub fn abandon(&self, member: u32, key: ChunkKey) {
        let mut g = self.lock();
        if matches!(g.chunks.get(&key), Some(Slot::Reading { owner, .. }) if *owner == member) {
            g.chunks.remove(&key);
        }
    }

    /// `member`'s session has ended for good: nothing is kept or waited for on its behalf any more.
    pub fn leave(&self, member: u32) {
        let bit = 1u64 << member;
        let mut g = self.lock();
        let inner = &mut *g;
        inner.active &= !bit;
        let active = inner.active;
        let gone: Vec<ChunkKey> = inner
            .chunks
            .iter()
            .filter(|(_, s)| match s {
                Slot::Reading { owner, .. } => *owner == member,
                Slot::Ready { taken, .. } => *taken & active == active,
            })
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            inner.remove(&k);
        }
    }

    /// Bytes `member` read from disk and bytes it copied from the others' reads.
    pub fn counts(&self, member: u32) -> (u64, u64) {
        self.lock().counts[member as usize]
    }

    /// Bytes of ready chunks held now, and chunks dropped for the budget so far.
    pub fn held(&self) -> (usize, u64) {
        let g = self.lock();
        (g.bytes, g.evicted)
    }
}

impl Inner {
    fn remove(&mut self, key: &ChunkKey) {
        if let Some(Slot::Ready { data, .. }) = self.chunks.remove(key) {
            self.bytes -= data.len();
            if self.spare.len() < 8 {
                self.spare.push(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: u64) -> ChunkKey {
        ChunkKey { file: 7, offset, len: 4 }
    }

    #[test]
    fn the_first_reads_and_the_others_copy_then_the_chunk_is_gone() {
        let s = SharedReads::new(3, 1 << 20);
        let mut buf = [0u8; 4];
        assert_eq!(s.take_or_claim(0, key(0), &mut buf), Share::ReadIt);
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::Wait, "claimed by 0: wait for its read");
        s.fill(0, key(0), b"abcd");
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::Copied);
        assert_eq!(&buf, b"abcd");
        assert_eq!(s.held().0, 4, "member 2 has not taken it yet");
        assert_eq!(s.take_or_claim(2, key(0), &mut buf), Share::Copied);
        assert_eq!(s.held().0, 0, "every member took it: freed");
        assert_eq!(s.counts(0), (4, 0));
        assert_eq!(s.counts(1), (0, 4));
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::ReadIt, "gone: read it again");
    }

    #[test]
    fn the_budget_drops_the_oldest_so_a_laggard_reads_alone() {
        let s = SharedReads::new(2, 8);
        let mut buf = [0u8; 4];
        for o in 0..4 {
            assert_eq!(s.take_or_claim(0, key(o), &mut buf), Share::ReadIt);
            s.fill(0, key(o), &[o as u8; 4]);
        }
        assert_eq!(s.held(), (8, 2), "two chunks fit; the two oldest were dropped");
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::ReadIt, "the laggard reads the dropped ones");
        s.fill(1, key(0), &[0; 4]);
        assert_eq!(s.take_or_claim(1, key(3), &mut buf), Share::Copied);
        assert_eq!(buf, [3; 4]);
    }

    #[test]
    fn a_member_that_leaves_is_neither_waited_for_nor_kept_for() {
        let s = SharedReads::new(3, 1 << 20);
        let mut buf = [0u8; 4];
        assert_eq!(s.take_or_claim(2, key(0), &mut buf), Share::ReadIt);
        s.leave(2);
        assert_eq!(s.take_or_claim(0, key(0), &mut buf), Share::ReadIt, "its claim went with it");
        s.fill(0, key(0), b"wxyz");
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::Copied);
        assert_eq!(s.held().0, 0, "the two left took it: nothing kept for the one gone");
        s.leave(1);
        assert_eq!(s.take_or_claim(0, key(4), &mut buf), Share::ReadIt);
        s.fill(0, key(4), b"1234");
        assert_eq!(s.held().0, 0, "alone: nothing is kept");
    }

    #[test]
    fn an_abandoned_or_stale_claim_is_taken_over() {
        let s = SharedReads::new(2, 1 << 20);
        let mut buf = [0u8; 4];
        assert_eq!(s.take_or_claim(0, key(0), &mut buf), Share::ReadIt);
        s.abandon(0, key(0));
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::ReadIt);
        // Member 1's claim, aged past STALE: member 0 takes it over.
        if let Some(Slot::Reading { since, .. }) = s.lock().chunks.get_mut(&key(0)) {
            *since = Instant::now() - STALE;
        }
        assert_eq!(s.take_or_claim(0, key(0), &mut buf), Share::ReadIt);
        assert_eq!(s.take_or_claim(1, key(0), &mut buf), Share::Wait, "now member 0's claim");
    }

    /// Sessions on threads, each asking for every chunk in order and reading (here: making) the ones it is
    /// told to: every member gets every chunk's right bytes, and the disk reads add up to the data once
    /// plus at most the races the budget forces.
    #[test]
    fn concurrent_members_get_every_chunk_and_read_it_about_once() {
        let chunks = 2000u64;
        let s = SharedReads::new(3, 64 << 10);
        let bytes_of = |o: u64| -> [u8; 4] { (o as u32).wrapping_mul(2_654_435_761).to_le_bytes() };
        std::thread::scope(|scope| {
            for seat in s.seats() {
                scope.spawn(move || {
                    let mut buf = [0u8; 4];
                    for o in 0..chunks {
                        loop {
                            match seat.reads.take_or_claim(seat.member, key(o * 4), &mut buf) {
                                Share::Copied => break,
                                Share::Wait => std::thread::yield_now(),
                                Share::ReadIt => {
                                    buf = bytes_of(o);
                                    seat.reads.fill(seat.member, key(o * 4), &buf);
                                    break;
                                }
                            }
                        }
                        assert_eq!(buf, bytes_of(o), "member {} chunk {o}", seat.member);
                    }
                    seat.reads.leave(seat.member);
                });
            }
        });
        let disk: u64 = (0..3).map(|m| s.counts(m).0).sum();
        let copied: u64 = (0..3).map(|m| s.counts(m).1).sum();
        assert_eq!(disk + copied, 3 * chunks * 4);
        assert!(disk < 2 * chunks * 4, "read {disk} bytes for {} of data: sharing failed", chunks * 4);
        assert_eq!(s.held().0, 0, "every member left: nothing held");
    }
}
