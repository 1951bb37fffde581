//! Which block goes where in a striped transfer (PROTOCOL.md §8.4): the blocks of a manifest
//! ([`BlockPlan`]) and the order legs take them in ([`Scheduler`], `--stripe fcfs|cyclic|partitioned`).
//!
//! Legs take blocks in *batches*, one verified push each. A batch is half of what the leg could still
//! take divided among the legs (guided self-scheduling), between 1 and [`MAX_BATCH_BLOCKS`] blocks: large
//! batches while much is left keep each push's set-up cost small; small ones at the end keep a slow leg
//! from holding the last large batch while faster legs idle.

use crate::wire::stripe::BlockHeader;
use std::collections::VecDeque;
use std::fmt;

/// Most blocks in one batch (128 MiB at the default block size).
pub const MAX_BATCH_BLOCKS: usize = 32;

/// The blocks of a manifest's regular files, numbered across them (the *global* index).
#[derive(Clone, Debug)]
pub struct BlockPlan {
    block_bytes: u64,
    /// Per file: its size and its first global block.
    files: Vec<(u64, u64)>,
    total: u64,
}

impl BlockPlan {
    /// The plan of files of these `sizes` (file id = index) in blocks of `block_bytes`.
    pub fn new(sizes: &[u64], block_bytes: u32) -> BlockPlan {
        assert!(block_bytes > 0);
        let block_bytes = u64::from(block_bytes);
        let mut files = Vec::with_capacity(sizes.len());
        let mut total = 0u64;
        for &size in sizes {
            files.push((size, total));
            total += size.div_ceil(block_bytes);
        }
        BlockPlan { block_bytes, files, total }
    }

    /// Blocks in all.
    pub fn total_blocks(&self) -> u64 {
        self.total
    }

    /// Files in the plan.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The global indexes of file `file_id`'s blocks.
    pub fn blocks_of(&self, file_id: u32) -> std::ops::Range<u64> {
        let (size, first) = self.files[file_id as usize];
        first..first + size.div_ceil(self.block_bytes)
    }

    /// Where block `global` lies (attempt 0); `None` past the last block.
    pub fn header(&self, global: u64) -> Option<BlockHeader> {
        if global >= self.total {
            return None;
        }
        // The last file whose first block is at or before `global`, skipping empty files (which share
        // their first index with the next file).
        let i = self.files.partition_point(|&(_, first)| first <= global) - 1;
        let mut file_id = i;
        while self.files[file_id].0 == 0 {
            file_id -= 1;
        }
        let (size, first) = self.files[file_id];
        let offset = (global - first) * self.block_bytes;
        let len = (size - offset).min(self.block_bytes) as u32;
        Some(BlockHeader { attempt: 0, global, file_id: file_id as u32, offset, len, frame: 0 })
    }
}

/// How blocks are dealt to legs (`--stripe`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum StripeMode {
    /// First come, first served: every leg takes the next blocks from one queue, so faster legs take more.
    #[default]
    Fcfs,
    /// Round robin: block `i` goes to leg `i mod legs`.
    Cyclic,
    /// Each leg an equal contiguous share of each file.
    Partitioned,
}

impl StripeMode {
    /// The `--stripe` name.
    pub fn name(self) -> &'static str {
        match self {
            StripeMode::Fcfs => "fcfs",
            StripeMode::Cyclic => "cyclic",
            StripeMode::Partitioned => "partitioned",
        }
    }
}

impl std::str::FromStr for StripeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<StripeMode, String> {
        match s {
            "fcfs" => Ok(StripeMode::Fcfs),
            "cyclic" => Ok(StripeMode::Cyclic),
            "partitioned" => Ok(StripeMode::Partitioned),
            _ => Err(format!("'{s}' is not a stripe mode: use fcfs, cyclic or partitioned")),
        }
    }
}

impl fmt::Display for StripeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hands legs their batches. Blocks given back (a leg failed, the receiver asked again) go to a shared
/// queue that every live leg serves first, whatever the mode.
#[derive(Debug)]
pub struct Scheduler {
    /// Per leg, the blocks only it takes (cyclic, partitioned); fcfs keeps them all in `shared`.
    own: Vec<VecDeque<u64>>,
    shared: VecDeque<u64>,
    alive: Vec<bool>,
    next_batch: u32,
}

impl Scheduler {
    /// Deals `plan`'s blocks among `legs` legs.
    pub fn new(plan: &BlockPlan, mode: StripeMode, legs: usize) -> Scheduler {
        assert!(legs > 0, "a stripe needs a leg");
        let mut own = vec![VecDeque::new(); legs];
        let mut shared = VecDeque::new();
        match mode {
            StripeMode::Fcfs => shared.extend(0..plan.total_blocks()),
            StripeMode::Cyclic => (0..plan.total_blocks()).for_each(|b| own[(b % legs as u64) as usize].push_back(b)),
            StripeMode::Partitioned => {
                for file in 0..plan.file_count() as u32 {
                    let r = plan.blocks_of(file);
                    let n = r.end - r.start;
                    for (leg, q) in own.iter_mut().enumerate() {
                        let (a, b) = (n * leg as u64 / legs as u64, n * (leg as u64 + 1) / legs as u64);
                        q.extend(r.start + a..r.start + b);
                    }
                }
            }
        }
        Scheduler { own, shared, alive: vec![true; legs], next_batch: 0 }
    }

    /// The next batch for `leg` (its number and blocks), or `None` when nothing is left for it.
    pub fn next(&mut self, leg: usize) -> Option<(u32, Vec<u64>)> {
        self.next_at_most(leg, MAX_BATCH_BLOCKS)
    }

    /// [`Scheduler::next`] with at most `cap` blocks (a relay whose spool refused a larger batch).
    pub fn next_at_most(&mut self, leg: usize, cap: usize) -> Option<(u32, Vec<u64>)> {
        if !self.alive[leg] {
            return None;
        }
        let live = self.alive.iter().filter(|a| **a).count().max(1);
        let (queue, share) = if !self.shared.is_empty() {
            (&mut self.shared, live)
        } else {
            // A leg's own queue is its alone: half of it per batch.
            (&mut self.own[leg], 1)
        };
        if queue.is_empty() {
            return None;
        }
        let n = queue.len().div_ceil(2 * share).clamp(1, cap.clamp(1, MAX_BATCH_BLOCKS));
        let blocks: Vec<u64> = queue.drain(..n).collect();
        self.next_batch += 1;
        Some((self.next_batch - 1, blocks))
    }

    /// Blocks to send again (a failed push, or a receiver's `Refetch`): any live leg takes them next.
    pub fn give_back(&mut self, blocks: impl IntoIterator<Item = u64>) {
        self.shared.extend(blocks);
    }

    /// `leg` is gone: what only it would have taken goes to the others.
    pub fn leg_failed(&mut self, leg: usize) {
        self.alive[leg] = false;
        let own = std::mem::take(&mut self.own[leg]);
        self.shared.extend(own);
    }

    /// Legs still taking batches.
    pub fn live_legs(&self) -> usize {
        self.alive.iter().filter(|a| **a).count()
    }

    /// Whether `leg` still takes batches.
    pub fn is_alive(&self, leg: usize) -> bool {
        self.alive[leg]
    }

    /// Nothing is left to hand out.
    pub fn is_drained(&self) -> bool {
        self.shared.is_empty() && self.own.iter().all(VecDeque::is_empty)
    }

    /// A failed leg comes back (it served blocks again after a refusal for room).
    pub fn revive(&mut self, leg: usize) {
        self.alive[leg] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_byte_once() {
        let plan = BlockPlan::new(&[10, 0, 25, 5, 0], 10);
        assert_eq!(plan.total_blocks(), 1 + 3 + 1);
        let got: Vec<(u32, u64, u32)> =
            (0..plan.total_blocks()).map(|g| plan.header(g).unwrap()).map(|h| (h.file_id, h.offset, h.len)).collect();
        assert_eq!(got, vec![(0, 0, 10), (2, 0, 10), (2, 10, 10), (2, 20, 5), (3, 0, 5)]);
        assert_eq!(plan.header(5), None);
        assert_eq!(plan.blocks_of(1), 1..1);
        assert_eq!(plan.blocks_of(2), 1..4);
    }

    fn drain(s: &mut Scheduler, legs: usize) -> Vec<Vec<u64>> {
        let mut per_leg = vec![Vec::new(); legs];
        loop {
            let mut any = false;
            for (leg, got) in per_leg.iter_mut().enumerate() {
                if let Some((_, b)) = s.next(leg) {
                    got.extend(b);
                    any = true;
                }
            }
            if !any {
                return per_leg;
            }
        }
    }

    #[test]
    fn each_mode_deals_every_block_once() {
        let plan = BlockPlan::new(&[100, 37], 10);
        for mode in [StripeMode::Fcfs, StripeMode::Cyclic, StripeMode::Partitioned] {
            let mut s = Scheduler::new(&plan, mode, 3);
            let per_leg = drain(&mut s, 3);
            let mut all: Vec<u64> = per_leg.concat();
            all.sort_unstable();
            assert_eq!(all, (0..14).collect::<Vec<_>>(), "{mode}");
            assert!(s.is_drained());
            match mode {
                StripeMode::Cyclic => assert!(per_leg[1].iter().all(|b| b % 3 == 1), "{per_leg:?}"),
                // File 0's blocks 0..10 split 3/3/4, file 1's 10..14 split 1/1/2.
                StripeMode::Partitioned => assert_eq!(per_leg[0], vec![0, 1, 2, 10]),
                StripeMode::Fcfs => {}
            }
        }
    }

    #[test]
    fn batches_shrink_towards_the_end() {
        let plan = BlockPlan::new(&[1000], 1);
        let mut s = Scheduler::new(&plan, StripeMode::Fcfs, 2);
        let sizes: Vec<usize> = std::iter::from_fn(|| s.next(0).map(|(_, b)| b.len())).collect();
        assert_eq!(sizes[0], MAX_BATCH_BLOCKS);
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert_eq!(*sizes.last().unwrap(), 1);
    }

    #[test]
    fn a_failed_legs_blocks_go_to_the_others() {
        let plan = BlockPlan::new(&[60], 10);
        let mut s = Scheduler::new(&plan, StripeMode::Cyclic, 2);
        let (_, first) = s.next(1).unwrap();
        s.leg_failed(1);
        s.give_back(first);
        assert_eq!(s.next(1), None);
        let mut got = drain(&mut s, 2).concat();
        got.sort_unstable();
        assert_eq!(got, (0..6).collect::<Vec<_>>());
    }
}
