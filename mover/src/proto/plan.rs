//! A round's plan: which files are sent and how their blocks map to sequence numbers (PROTOCOL.md §4.1).
//!
//! Both ends derive the same plan from the manifest and the block size, so no per-block numbering travels:
//! block `k` of the plan's `i`-th file has sequence number `first_seq[i] + k`, and its bytes are at offset
//! `k * block` (the last block of a file may be short). Round 0 sends every file; each later round re-sends
//! only the files that failed whole-file verification, renumbered from 0.

/// The files of one round and their sequence-number layout.
#[derive(Clone, Debug)]
pub struct RoundPlan {
    block: u64,
    file_ids: Vec<u32>,
    sizes: Vec<u64>,
    /// `first_seq[i]` is the first sequence number of plan entry `i`; one extra entry holds the total.
    first_seq: Vec<u64>,
}

impl RoundPlan {
    /// The plan for `file_ids` (ascending) of a session whose file sizes are `all_sizes`, with blocks of
    /// `block` bytes.
    pub fn new(file_ids: Vec<u32>, all_sizes: &[u64], block: u64) -> RoundPlan {
        assert!(block > 0);
        assert!(file_ids.windows(2).all(|w| w[0] < w[1]), "file ids must ascend");
        let sizes: Vec<u64> = file_ids.iter().map(|&id| all_sizes[id as usize]).collect();
        let mut first_seq = Vec::with_capacity(sizes.len() + 1);
        let mut next = 0u64;
        for &s in &sizes {
            first_seq.push(next);
            next += s.div_ceil(block);
        }
        first_seq.push(next);
        RoundPlan { block, file_ids, sizes, first_seq }
    }

    /// Every file of the session, for round 0.
    pub fn all(all_sizes: &[u64], block: u64) -> RoundPlan {
        RoundPlan::new((0..all_sizes.len() as u32).collect(), all_sizes, block)
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

    /// Number of blocks of plan entry `idx`.
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

    /// The sequence number of the block at `offset` of plan entry `idx`, if `offset` and `len` describe one
    /// of its blocks exactly (anything else is a malformed packet).
    pub fn seq_of(&self, idx: usize, offset: u64, len: u64) -> Option<u64> {
        if offset % self.block != 0 || offset >= self.sizes[idx] || self.block_len(idx, offset) != len {
            return None;
        }
        Some(self.first_seq[idx] + offset / self.block)
    }

    /// The plan entry, offset and length of sequence number `seq < total_seqs()`.
    pub fn locate(&self, seq: u64) -> (usize, u64, u64) {
        debug_assert!(seq < self.total_seqs());
        // The last entry starting at or before `seq`: empty files share their successor's first_seq and are
        // skipped because partition_point goes past all equal starts.
        let idx = self.first_seq[..self.file_ids.len()].partition_point(|&s| s <= seq) - 1;
        let offset = (seq - self.first_seq[idx]) * self.block;
        (idx, offset, self.block_len(idx, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
