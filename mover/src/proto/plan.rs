//! A round's plan: which files are sent and how their blocks map to sequence numbers (PROTOCOL.md §4.1).
//!
//! Both ends derive the same plan from the manifest, the block size and round 0's [`StartPlan`], so no
//! per-block numbering travels. The plan numbers only the blocks that are sent: the blocks of plan entry `i`
//! form runs (one run covering the whole file unless the receiver holds parts of it), numbered
//! consecutively from `first_seq[i]`; a block's bytes are at offset `k * block` (the last block of a file
//! may be short). Round 0 sends every file but the skipped ones, minus the held ranges; each later round
//! re-sends only the files that failed whole-file verification, whole, renumbered from 0.

use super::start::StartPlan;

/// A stretch of consecutive blocks of one plan entry that are sent.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Plan entry.
    idx: usize,
    /// Block index in the file of its first block.
    first_block: u64,
    /// Sequence number of its first block.
    first_seq: u64,
    /// Blocks in the run (never 0).
    blocks: u64,
}

/// The files of one round and their sequence-number layout.
#[derive(Clone, Debug)]
pub struct RoundPlan {
    block: u64,
    file_ids: Vec<u32>,
    sizes: Vec<u64>,
    /// `first_seq[i]` is the first sequence number of plan entry `i`; one extra entry holds the total.
    first_seq: Vec<u64>,
    /// The runs of all entries in sequence order; `runs[run_start[i]..run_start[i + 1]]` are entry `i`'s.
    runs: Vec<Run>,
    run_start: Vec<usize>,
    /// Bytes of the plan's files that are not sent (held by the receiver).
    held_bytes: u64,
}

impl RoundPlan {
    /// The plan for `file_ids` (ascending) of a session whose file sizes are `all_sizes`, with blocks of
    /// `block` bytes, every block sent.
    pub fn new(file_ids: Vec<u32>, all_sizes: &[u64], block: u64) -> RoundPlan {
        RoundPlan::build(file_ids, all_sizes, block, |_| &[])
    }

    /// Every file of the session, for round 0 without a start plan.
    pub fn all(all_sizes: &[u64], block: u64) -> RoundPlan {
        RoundPlan::new((0..all_sizes.len() as u32).collect(), all_sizes, block)
    }

    /// Round 0 from a start plan, which must have passed [`StartPlan::validate`]: every file but the
    /// skipped ones, without the blocks inside held ranges.
    pub fn for_start(all_sizes: &[u64], block: u64, start: &StartPlan) -> RoundPlan {
        let ids = (0..all_sizes.len() as u32).filter(|&id| !start.is_skipped(id)).collect();
        RoundPlan::build(ids, all_sizes, block, |id| start.have(id))
    }

    fn build<'a>(
        file_ids: Vec<u32>,
        all_sizes: &[u64],
        block: u64,
        held: impl Fn(u32) -> &'a [(u64, u64)],
    ) -> RoundPlan {
        assert!(block > 0);
        assert!(file_ids.windows(2).all(|w| w[0] < w[1]), "file ids must ascend");
        let sizes: Vec<u64> = file_ids.iter().map(|&id| all_sizes[id as usize]).collect();
        let mut first_seq = Vec::with_capacity(sizes.len() + 1);
        let mut runs = Vec::with_capacity(sizes.len());
        let mut run_start = Vec::with_capacity(sizes.len() + 1);
        let mut next = 0u64;
        let mut held_bytes = 0u64;
        for (idx, (&id, &size)) in file_ids.iter().zip(&sizes).enumerate() {
            first_seq.push(next);
            run_start.push(runs.len());
            let total_blocks = size.div_ceil(block);
            // The gaps between held ranges (validated: on the grid, ascending, disjoint) are the runs.
            let mut cursor = 0u64;
            let mut push_run = |from: u64, to: u64, next: &mut u64| {
                if from < to {
                    runs.push(Run { idx, first_block: from, first_seq: *next, blocks: to - from });
                    *next += to - from;
                }
            };
            for &(offset, len) in held(id) {
                debug_assert!(offset % block == 0 && offset + len <= size, "unvalidated held range");
                push_run(cursor, offset / block, &mut next);
                cursor = (offset + len).div_ceil(block);
                held_bytes += len;
            }
            push_run(cursor, total_blocks, &mut next);
        }
        first_seq.push(next);
        run_start.push(runs.len());
        RoundPlan { block, file_ids, sizes, first_seq, runs, run_start, held_bytes }
    }

    /// Block payload size in bytes.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// Number of files in the plan.
    pub fn len(&self) -> usize {
        self.file_ids.len()
    }

    /// Whether the plan has no files.
    pub fn is_empty(&self) -> bool {
        self.file_ids.is_empty()
    }

    /// Sequence numbers in the round (blocks of all its files).
    pub fn total_seqs(&self) -> u64 {
        self.first_seq[self.file_ids.len()]
    }

    /// File id of plan entry `idx`.
    pub fn file_id(&self, idx: usize) -> u32 {
        self.file_ids[idx]
    }

    /// Size of plan entry `idx`.
    pub fn size(&self, idx: usize) -> u64 {
        self.sizes[idx]
    }

    /// Number of blocks of plan entry `idx` the round sends (held blocks excluded).
    pub fn blocks(&self, idx: usize) -> u64 {
        self.first_seq[idx + 1] - self.first_seq[idx]
    }

    /// First sequence number of plan entry `idx`.
    pub fn first_seq(&self, idx: usize) -> u64 {
        self.first_seq[idx]
    }

    /// The plan entry of `file_id`, if the file is in this round.
    pub fn index_of(&self, file_id: u32) -> Option<usize> {
        self.file_ids.binary_search(&file_id).ok()
    }

    /// Length of the block at `offset` of plan entry `idx`.
    pub fn block_len(&self, idx: usize, offset: u64) -> u64 {
        debug_assert!(offset < self.sizes[idx]);
        (self.sizes[idx] - offset).min(self.block)
    }

    /// Plan entries fully acknowledged and the share of the round's sent bytes acknowledged when every
    /// sequence number below `cum_ack` is (the bytes are pro rata by block count: exact at both ends, within
    /// one short last block per file in between).
    pub fn acknowledged(&self, cum_ack: u64) -> (u64, u64) {
        let total = self.total_seqs();
        let cum_ack = cum_ack.min(total);
        let entries = self.first_seq[1..].partition_point(|&end| end <= cum_ack) as u64;
        let sent: u64 = self.sizes.iter().sum::<u64>() - self.held_bytes;
        let bytes = if total == 0 { sent } else { (sent as u128 * cum_ack as u128 / total as u128) as u64 };
        (entries, bytes)
    }

    /// Bytes of the plan's files that the receiver holds and the round does not send.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// The run of entry `idx` holding block index `k`, if that block is sent.
    fn run_of(&self, idx: usize, k: u64) -> Option<&Run> {
        let runs = &self.runs[self.run_start[idx]..self.run_start[idx + 1]];
        let r = runs.partition_point(|r| r.first_block <= k).checked_sub(1)?;
        let run = &runs[r];
        (k < run.first_block + run.blocks).then_some(run)
    }

    /// Whether the block at `offset` (on the grid, inside the file) of entry `idx` is sent in this round,
    /// rather than held by the receiver.
    pub fn is_sent(&self, idx: usize, offset: u64) -> bool {
        self.run_of(idx, offset / self.block).is_some()
    }

    /// The sequence number of the block at `offset` of plan entry `idx`, if `offset` and `len` describe one
    /// of its blocks exactly and the round sends it (anything else is a malformed packet).
    pub fn seq_of(&self, idx: usize, offset: u64, len: u64) -> Option<u64> {
        if offset % self.block != 0 || offset >= self.sizes[idx] || self.block_len(idx, offset) != len {
            return None;
        }
        let k = offset / self.block;
        let run = self.run_of(idx, k)?;
        Some(run.first_seq + (k - run.first_block))
    }

    /// The plan entry, offset and length of sequence number `seq < total_seqs()`.
    pub fn locate(&self, seq: u64) -> (usize, u64, u64) {
        debug_assert!(seq < self.total_seqs());
        // Runs are never empty, so their first sequence numbers strictly ascend.
        let run = &self.runs[self.runs.partition_point(|r| r.first_seq <= seq) - 1];
        let offset = (run.first_block + (seq - run.first_seq)) * self.block;
        (run.idx, offset, self.block_len(run.idx, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_counts_whole_entries_and_ends_exact() {
        let sizes = [0, 25, 0, 10, 30];
        let p = RoundPlan::all(&sizes, 10);
        assert_eq!(p.acknowledged(0), (1, 0), "the empty first file needs no block");
        assert_eq!(p.acknowledged(3), (3, 65 * 3 / 7), "file 1 (3 blocks) and the empty file 2 after it");
        assert_eq!(p.acknowledged(4), (4, 65 * 4 / 7));
        assert_eq!(p.acknowledged(7), (5, 65));
        assert_eq!(p.acknowledged(99), (5, 65));
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn maps_both_ways_with_empty_files() {
        let sizes = [0, 25, 0, 0, 10, 30];
        let p = RoundPlan::all(&sizes, 10);
        assert_eq!(p.total_seqs(), 3 + 1 + 3);
        let mut seq = 0;
        for idx in 0..p.len() {
            let mut off = 0;
            while off < sizes[idx] {
                let len = p.block_len(idx, off);
                assert_eq!(p.seq_of(idx, off, len), Some(seq));
                assert_eq!(p.locate(seq), (idx, off, len));
                seq += 1;
                off += 10;
            }
        }
        assert_eq!(seq, p.total_seqs());
        assert_eq!(p.seq_of(1, 5, 10), None, "unaligned");
        assert_eq!(p.seq_of(1, 20, 10), None, "wrong tail length");
        assert_eq!(p.seq_of(1, 30, 5), None, "past the end");
        let r1 = RoundPlan::new(vec![1, 5], &sizes, 10);
        assert_eq!(r1.total_seqs(), 6);
        assert_eq!(r1.index_of(5), Some(1));
        assert_eq!(r1.index_of(4), None);
        assert_eq!(r1.locate(3), (1, 0, 10));
    }

    #[test]
    fn offsets_beyond_four_gib() {
        let sizes = [5u64 << 30];
        let p = RoundPlan::all(&sizes, 8912);
        let last = p.total_seqs() - 1;
        let (idx, off, len) = p.locate(last);
        assert_eq!(idx, 0);
        assert!(off > u32::MAX as u64);
        assert_eq!(off + len, 5 << 30);
    }

    /// Held ranges leave holes in the numbering: only sent blocks have sequence numbers, and a wholly held
    /// file has none.
    #[test]
    fn held_ranges_are_not_numbered() {
        let sizes = [55, 30, 20, 10];
        let mut start = StartPlan::default();
        start.add_have(0, vec![(10, 20), (50, 5)]); // blocks 1, 2 and the short tail 5
        start.skip_file(1);
        start.add_have(2, vec![(0, 20)]); // all of it
        start.validate(&sizes, 10).unwrap();
        let p = RoundPlan::for_start(&sizes, 10, &start);
        assert_eq!(p.len(), 3, "file 1 is skipped");
        assert_eq!((p.file_id(1), p.file_id(2)), (2, 3));
        assert_eq!(p.held_bytes(), 45);
        // File 0 sends blocks 0, 3, 4 as seqs 0, 1, 2; file 2 nothing; file 3 seq 3.
        assert_eq!(p.total_seqs(), 4);
        assert_eq!((p.blocks(0), p.blocks(1), p.blocks(2)), (3, 0, 1));
        let sent = [(0, 0, 0), (1, 0, 30), (2, 0, 40), (3, 2, 0)];
        for (seq, idx, off) in sent {
            let len = p.block_len(idx, off);
            assert_eq!(p.locate(seq), (idx, off, len));
            assert_eq!(p.seq_of(idx, off, len), Some(seq));
            assert!(p.is_sent(idx, off));
        }
        for (idx, off, len) in [(0, 10, 10), (0, 20, 10), (0, 50, 5), (1, 0, 10), (1, 10, 10)] {
            assert_eq!(p.seq_of(idx, off, len), None, "held block ({idx}, {off}) is malformed on the wire");
            assert!(!p.is_sent(idx, off));
        }
        assert_eq!(p.index_of(1), None);
    }
}
