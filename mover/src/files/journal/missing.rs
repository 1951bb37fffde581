//! What is left to send once the trusted ranges are known.

use super::JournalRange;
use std::ops::Range;

/// The byte ranges the sender will be asked for, and how many bytes the partial file saves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// Sorted, non-overlapping, non-adjacent, each starting on a block boundary of the current transfer and
    /// ending on one or at the end of the file.
    pub ranges: Vec<Range<u64>>,
    /// `size` minus the bytes of `ranges`: what the rerun does not send.
    pub resumed_bytes: u64,
}

/// The ranges of a `size`-byte file not covered by `trusted`, widened to whole blocks of `block_size`
/// bytes (the current transfer's, which may differ from the journal's), and merged.
///
/// `trusted` must be sorted and non-overlapping, as [`super::Resume::ranges`] and
/// [`super::verify_ranges`] return them; ranges past `size` are ignored.
pub fn missing_ranges(trusted: &[JournalRange], size: u64, block_size: u32) -> Missing {
    assert!(block_size > 0, "block size 0");
    debug_assert!(trusted.windows(2).all(|w| w[0].end() <= w[1].offset), "trusted ranges unsorted or overlapping");
    let bs = u64::from(block_size);
    let mut ranges: Vec<Range<u64>> = Vec::new();
    let mut push_gap = |start: u64, end: u64| {
        if start >= end {
            return;
        }
        // A block partly covered is sent whole: the sender sends blocks, not bytes.
        let start = start / bs * bs;
        let end = end.div_ceil(bs).saturating_mul(bs).min(size);
        match ranges.last_mut() {
            Some(last) if last.end >= start => last.end = last.end.max(end),
            _ => ranges.push(start..end),
        }
    };
    let mut covered_to = 0u64;
    for r in trusted {
        let start = r.offset.min(size);
        push_gap(covered_to, start);
        covered_to = covered_to.max(r.end().min(size));
    }
    push_gap(covered_to, size);
    let sent: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    Missing { ranges, resumed_bytes: size - sent }
}
