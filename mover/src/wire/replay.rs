//! The replay window (PROTOCOL.md §6.3): every authenticated packet number is accepted once.
//!
//! A sliding bitmap over the newest [`REPLAY_WINDOW`] packet numbers, as IPsec and WireGuard keep: a number
//! seen before is a replay (or a duplicate made by the network), a number older than the window cannot be
//! told apart from one and is refused as well. Refusing an old but genuine packet costs nothing for
//! correctness: its block is NAKed and resent under a fresh number. Only authenticated numbers may move the
//! window (the caller checks the tag first), so a forger cannot push genuine packets out of it.

use super::DropReason;

/// Packet numbers per bitmap word.
const WORD_BITS: u64 = 64;
/// Words in the bitmap: 8 KiB of packet numbers, 1 KiB of memory.
const WORDS: usize = 128;
/// How far behind the newest packet number a packet may arrive and still be accepted: 8128 numbers, about
/// 9 ms at 10 Gbit/s with 1472-byte datagrams, far beyond any reordering a path makes. One word of the
/// ring is always being reused for the newest numbers, so the window is one word short of the bitmap.
pub const REPLAY_WINDOW: u64 = (WORDS as u64 - 1) * WORD_BITS;

/// Which packet numbers of one direction of one session were accepted.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// One past the highest accepted packet number (0: none yet).
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    /// A window that has accepted nothing.
    pub fn new() -> ReplayWindow {
        ReplayWindow { top: 0, bits: [0; WORDS] }
    }

    /// Accepts `pn` if it was not accepted before and is not too old to tell; marks it accepted.
    pub fn check_and_mark(&mut self, pn: u64) -> Result<(), DropReason> {
        // No sender gets near 2^64 packets; a number that would overflow the window's arithmetic is refused.
        let next = pn.checked_add(1).ok_or(DropReason::Malformed)?;
        if next > self.top {
            self.advance_to(next);
        } else if self.top - pn > REPLAY_WINDOW {
            return Err(DropReason::TooOld);
        }
        let (word, bit) = ((pn / WORD_BITS) as usize % WORDS, 1u64 << (pn % WORD_BITS));
        if self.bits[word] & bit != 0 {
            return Err(DropReason::Replayed);
        }
        self.bits[word] |= bit;
        Ok(())
    }

    /// Moves the top to `next`, clearing the words that now stand for newer numbers.
    fn advance_to(&mut self, next: u64) {
        debug_assert!(next > self.top);
        let first_new_word = if self.top == 0 { 0 } else { (self.top - 1) / WORD_BITS + 1 };
        let last_word = (next - 1) / WORD_BITS;
        // Beyond a whole ring of words every word is cleared once: the loop is bounded by WORDS.
        let start = first_new_word.max(last_word.saturating_sub(WORDS as u64 - 1));
        for w in start..=last_word {
            self.bits[(w % WORDS as u64) as usize] = 0;
        }
        self.top = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_number_once_in_any_order_within_the_window() {
        let mut w = ReplayWindow::new();
        for pn in [0u64, 5, 3, 4, 1, 2, 100, 64, 63, 65] {
            assert_eq!(w.check_and_mark(pn), Ok(()), "{pn}");
        }
        for pn in [0u64, 5, 3, 100, 64, 63] {
            assert_eq!(w.check_and_mark(pn), Err(DropReason::Replayed), "{pn}");
        }
        // Never seen but still inside the window.
        assert_eq!(w.check_and_mark(6), Ok(()));
    }

    #[test]
    fn old_numbers_are_refused_and_jumps_clear_reused_words() {
        let mut w = ReplayWindow::new();
        w.check_and_mark(10).unwrap();
        let far = 10 + REPLAY_WINDOW + 1;
        w.check_and_mark(far).unwrap();
        assert_eq!(w.check_and_mark(10), Err(DropReason::TooOld));
        assert_eq!(w.check_and_mark(9), Err(DropReason::TooOld));
        // The oldest number still inside the window (the top is `far + 1`), never seen: accepted once.
        assert_eq!(w.check_and_mark(far - REPLAY_WINDOW), Err(DropReason::TooOld));
        assert_eq!(w.check_and_mark(far + 1 - REPLAY_WINDOW), Ok(()));
        assert_eq!(w.check_and_mark(far + 1 - REPLAY_WINDOW), Err(DropReason::Replayed));
        // A jump of many windows: the reused words must not carry stale bits into the new numbers.
        let mut w = ReplayWindow::new();
        for pn in 0..WORDS as u64 * WORD_BITS {
            w.check_and_mark(pn).unwrap();
        }
        let jump = 1_000_000;
        w.check_and_mark(jump).unwrap();
        for pn in jump + 1 - REPLAY_WINDOW..jump {
            assert_eq!(w.check_and_mark(pn), Ok(()), "{pn} was never seen");
        }
        assert_eq!(w.check_and_mark(u64::MAX), Err(DropReason::Malformed));
    }

    #[test]
    fn matches_a_set_model_on_a_pseudo_random_stream() {
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::HashSet::new();
        let mut top = 0u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly ascending with reordering, duplicates and the odd stale packet.
            let pn = (i + (x % 64)).saturating_sub(if x % 97 == 0 { 9000 } else { 0 });
            let expected = if top > pn && top - pn > REPLAY_WINDOW {
                Err(DropReason::TooOld)
            } else if seen.contains(&pn) {
                Err(DropReason::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(w.check_and_mark(pn), expected, "packet {i}: {pn}");
            if expected.is_ok() {
                seen.insert(pn);
                top = top.max(pn + 1);
            }
        }
    }
}
