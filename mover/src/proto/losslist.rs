//! The receiver's list of gaps still to be NAKed (PROTOCOL.md §4.4).

use super::seqbits::SeqBits;
use crate::time::Time;
use crate::wire::feedback::NakRange;
use std::collections::VecDeque;

/// Most gaps tracked one by one. Beyond this, new gaps are merged into the last one: NAKs get coarser but
/// memory stays bounded, and the bitmap scan still NAKs only blocks that are really missing.
pub const MAX_LOSS_ENTRIES: usize = 16_384;

#[derive(Clone, Debug)]
struct Gap {
    start: u64,
    end: u64,
    due: Time,
}

/// Gaps in ascending sequence order, each with the time its next NAK is due.
#[derive(Clone, Debug, Default)]
pub struct LossList {
    gaps: VecDeque<Gap>,
}

impl LossList {
    /// An empty list.
    pub fn new() -> LossList {
        LossList { gaps: VecDeque::new() }
    }

    /// Forgets every gap (a new round starts).
    pub fn clear(&mut self) {
        self.gaps.clear();
    }

    /// Gaps tracked.
    pub fn len(&self) -> usize {
        self.gaps.len()
    }

    /// Whether no gap is tracked.
    pub fn is_empty(&self) -> bool {
        self.gaps.is_empty()
    }

    /// Records the gap `start .. end` (above every gap recorded so far), first NAKed at `due`.
    pub fn push(&mut self, start: u64, end: u64, due: Time) {
        debug_assert!(start < end);
        let full = self.gaps.len() >= MAX_LOSS_ENTRIES;
        if let Some(last) = self.gaps.back_mut() {
            debug_assert!(last.end <= start, "gaps must ascend");
            if full {
                last.end = end;
                return;
            }
        }
        self.gaps.push_back(Gap { start, end, due });
    }

    /// Appends to `out` (up to its capacity `max`) the missing runs of every gap whose NAK is due at `now`,
    /// according to `received`, and schedules those gaps' next NAK at `now + renak_ns`. Gaps below
    /// `cum_ack` or wholly received are dropped.
    pub fn collect_due(
        &mut self,
        now: Time,
        cum_ack: u64,
        received: &SeqBits,
        renak_ns: u64,
        out: &mut Vec<NakRange>,
        max: usize,
    ) {
        while self.gaps.front().is_some_and(|g| g.end <= cum_ack) {
            self.gaps.pop_front();
        }
        let mut i = 0;
        while i < self.gaps.len() {
            let gap = &mut self.gaps[i];
            gap.start = gap.start.max(cum_ack);
            // Trim received blocks off the front so fully received gaps disappear.
            match received.find(false, gap.start, gap.end) {
                None => {
                    self.gaps.remove(i);
                    continue;
                }
                Some(first_missing) => gap.start = first_missing,
            }
            if gap.due > now {
                i += 1;
                continue;
            }
            let mut seq = gap.start;
            let end = gap.end;
            while let Some(miss) = received.find(false, seq, end) {
                if out.len() >= max {
                    // Out of room: NAK the rest of this gap in the next feedback packet, still due now.
                    let rest = Gap { start: miss, end, due: now };
                    self.gaps[i].end = miss;
                    self.gaps[i].due = now.plus_ns(renak_ns);
                    self.gaps.insert(i + 1, rest);
                    return;
                }
                let run_end = received.find(true, miss, end).unwrap_or(end);
                let count = (run_end - miss).min(u32::MAX as u64);
                out.push(NakRange { start: miss, count: count as u32 });
                seq = miss + count;
            }
            self.gaps[i].due = now.plus_ns(renak_ns);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naks_only_missing_runs_when_due() {
        let mut rx = SeqBits::new(1024);
        for s in [0, 1, 2, 5, 6, 9] {
            rx.set(s);
        }
        let mut l = LossList::new();
        l.push(3, 5, Time(100));
        l.push(7, 9, Time(100));
        l.push(10, 20, Time(500));
        let mut out = Vec::new();
        l.collect_due(Time(50), 3, &rx, 1000, &mut out, 10);
        assert!(out.is_empty(), "nothing due yet");
        l.collect_due(Time(100), 3, &rx, 1000, &mut out, 10);
        assert_eq!(out, vec![NakRange { start: 3, count: 2 }, NakRange { start: 7, count: 2 }]);
        out.clear();
        l.collect_due(Time(200), 3, &rx, 1000, &mut out, 10);
        assert!(out.is_empty(), "re-NAK waits for renak interval");
        rx.set(3);
        rx.set(4);
        rx.set(12);
        l.collect_due(Time(1100), 3, &rx, 1000, &mut out, 2);
        assert_eq!(out, vec![NakRange { start: 7, count: 2 }, NakRange { start: 10, count: 2 }]);
        out.clear();
        // The rest of the split gap is still due.
        l.collect_due(Time(1100), 3, &rx, 1000, &mut out, 10);
        assert_eq!(out, vec![NakRange { start: 13, count: 7 }]);
    }

    #[test]
    fn stays_bounded() {
        let mut l = LossList::new();
        for i in 0..(MAX_LOSS_ENTRIES as u64 + 100) {
            l.push(i * 2, i * 2 + 1, Time(0));
        }
        assert_eq!(l.len(), MAX_LOSS_ENTRIES);
    }
}
