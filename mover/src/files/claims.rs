//! The receiver's bound on claimed partials: how many files may hold a descriptor at once.
//!
//! A receiver claims a partial when its first block arrives and holds the claim (a descriptor with the
//! partial's lock, module `partial`) until the file is committed. Files in flight are bounded only by the
//! window in blocks, so 100,000 files of 4 KiB under loss held ~19,000 claims at once and met this VM's
//! hard open-files limit of 20,000 (issue 18, item 4). [`ClaimBound`] keeps at most `max` claims: past it
//! the least recently written one is released (its descriptor closed, its identity kept) and taken again
//! by name on its next block, if the name still holds that very file (`partial::reclaim_at`).
//!
//! Eviction is a second-chance clock over the order of claims: a claim written since the clock last passed
//! it goes to the back once, so a large file written all along keeps its claim while thousands of small
//! files pass it. Amortized O(1) per claim, nothing per block but a flag.

use std::collections::VecDeque;

/// Descriptors a receiver leaves for everything but claims: its sockets, io_uring, the journal files and
/// the duplicates its writes and read-backs carry in flight.
const RESERVED_DESCRIPTORS: u64 = 96;
/// Claims are at most this many however high the limit: enough for the files in flight of a fast path
/// with many small files (a release costs a reopen, an fstat and a lock when the file's next block comes).
pub(super) const MAX_CLAIMS: usize = 4096;
/// Claims are at least this many, however low the limit (below it the transfer runs out anyway).
const MIN_CLAIMS: usize = 8;

/// The bound on claims for a soft open-files limit of `limit`: half of what is left after
/// [`RESERVED_DESCRIPTORS`] (a daemon runs several sessions, and each write in flight holds a duplicate),
/// within [`MIN_CLAIMS`]..=[`MAX_CLAIMS`].
pub(super) fn claims_for_limit(limit: u64) -> usize {
    let half = limit.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(half).unwrap_or(usize::MAX).clamp(MIN_CLAIMS, MAX_CLAIMS)
}

/// The bound for this process's soft open-files limit now (read when a tree is prepared: `serve`, `push`
/// and `pull` raise it first).
pub(super) fn claims_for_this_process() -> usize {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // Safety: getrlimit writes only the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return MIN_CLAIMS;
    }
    claims_for_limit(l.rlim_cur)
}

/// See the [module documentation](self). It only counts and orders file ids; the tree owns the claims.
pub(super) struct ClaimBound {
    max: usize,
    held: usize,
    /// File ids in the order of their claims (with stale ids of claims since ended, skipped lazily).
    order: VecDeque<u32>,
    /// Per file id: written since the clock last passed it.
    recent: Vec<bool>,
}

impl ClaimBound {
    /// A bound of `max` claims (at least one) over `files` file ids.
    pub(super) fn new(files: usize, max: usize) -> ClaimBound {
        ClaimBound { max: max.max(1), held: 0, order: VecDeque::new(), recent: vec![false; files] }
    }

    /// The bound.
    #[cfg(test)]
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Claims held now.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// `id` took a claim (unwritten yet: released before those written since, but never as the newest).
    pub(super) fn claimed(&mut self, id: u32) {
        self.held += 1;
        self.order.push_back(id);
        self.recent[id as usize] = false;
    }

    /// `id`'s claim was used.
    pub(super) fn touched(&mut self, id: u32) {
        self.recent[id as usize] = true;
    }

    /// A claim ended (committed, released or aborted).
    pub(super) fn ended(&mut self) {
        debug_assert!(self.held > 0, "a claim ended that was never counted");
        self.held -= 1;
    }

    /// Every claim ended.
    pub(super) fn clear(&mut self) {
        self.held = 0;
        self.order.clear();
    }

    /// The claim to release while more than `max` are held, or `None`; never `newest` (the claim just taken,
    /// for a write about to happen). `holds(id)` says whether `id` still holds a claim (ids whose claim ended
    /// are dropped from the order here). The caller releases it and calls [`ClaimBound::ended`].
    pub(super) fn victim(&mut self, newest: u32, holds: impl Fn(u32) -> bool) -> Option<u32> {
        if self.held <= self.max {
            return None;
        }
        // More than one claim is held: each other id is passed at most twice (its flag is cleared the first
        // time), stale ids once.
        while let Some(id) = self.order.pop_front() {
            if !holds(id) {
                continue;
            }
            if id == newest || std::mem::take(&mut self.recent[id as usize]) {
                self.order.push_back(id);
                continue;
            }
            return Some(id);
        }
        debug_assert!(false, "{} claims held but none in the order", self.held);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id no test claims.
    const NEWEST: u32 = u32::MAX;

    #[test]
    fn the_bound_follows_the_limit_within_its_range() {
        assert_eq!(claims_for_limit(0), MIN_CLAIMS);
        assert_eq!(claims_for_limit(256), 80);
        assert_eq!(claims_for_limit(1024), 464);
        assert_eq!(claims_for_limit(20_000), MAX_CLAIMS);
    }

    #[test]
    fn the_least_recently_written_claim_goes_first_and_stale_ids_are_skipped() {
        let mut b = ClaimBound::new(8, 3);
        let mut holds = [false; 8];
        for id in 0..3 {
            b.claimed(id);
            holds[id as usize] = true;
        }
        assert_eq!(b.victim(NEWEST, |id| holds[id as usize]), None, "at the bound, nothing is released");
        // File 1 commits (its claim ends), file 0 is written again, files 3 and 4 start.
        holds[1] = false;
        b.ended();
        for id in [3, 4] {
            b.claimed(id);
            holds[id as usize] = true;
        }
        // 0 was written again since its claim: the next oldest live one goes (1 ended).
        b.touched(0);
        let v = b.victim(NEWEST, |id| holds[id as usize]).unwrap();
        holds[v as usize] = false;
        b.ended();
        assert_eq!(b.held(), 3);
        assert_eq!(v, 2, "not the oldest claim unwritten since (a committed file's stale id is 1)");
        assert_eq!(b.victim(NEWEST, |id| holds[id as usize]), None);
        // A file written all along outlives many that pass it.
        let mut b = ClaimBound::new(1000, 4);
        let mut holds = vec![false; 1000];
        b.claimed(0);
        holds[0] = true;
        for id in 1..1000u32 {
            b.claimed(id);
            holds[id as usize] = true;
            b.touched(0);
            while let Some(v) = b.victim(id, |i| holds[i as usize]) {
                holds[v as usize] = false;
                b.ended();
            }
            assert!(b.held() <= b.max());
        }
        assert!(holds[0], "the file written all along lost its claim");
        assert!(holds[999], "the newest claim was released");
    }
}
