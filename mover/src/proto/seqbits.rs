//! A fixed-size ring of bits indexed by block sequence number: the window's memory.
//!
//! The window is the only per-block state either side keeps, so memory is `window / 8` bytes whatever the
//! file size (a 2 GiB window of 1412-byte blocks, rounded up to 2^21 bits, is 256 KiB).

/// Bits for sequence numbers `base .. base + capacity`, stored in a ring so the window slides without moving
/// memory. Bits below `base` are always clear: [`SeqBits::advance_to`] clears what it slides past.
#[derive(Clone, Debug)]
pub struct SeqBits {
    words: Vec<u64>,
    mask: u64,
    base: u64,
}

impl SeqBits {
    /// A ring of at least `min_capacity` bits (rounded up to a power of two, at least 64), starting at 0.
    pub fn new(min_capacity: u64) -> SeqBits {
        let capacity = min_capacity.max(64).next_power_of_two();
        assert!(capacity <= 1 << 40, "window of {capacity} blocks is absurd");
        SeqBits { words: vec![0; (capacity / 64) as usize], mask: capacity - 1, base: 0 }
    }

    /// Bits the ring holds.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The lowest sequence number the ring can hold.
    pub fn base(&self) -> u64 {
        self.base
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        debug_assert!(seq >= self.base && seq - self.base <= self.mask, "seq {seq} outside ring at {}", self.base);
        let i = seq & self.mask;
        ((i >> 6) as usize, 1u64 << (i & 63))
    }

    /// Whether `seq` is inside the ring's span.
    pub fn contains(&self, seq: u64) -> bool {
        seq >= self.base && seq - self.base <= self.mask
    }

    /// The bit of `seq` (which must be inside the span).
    pub fn get(&self, seq: u64) -> bool {
        let (w, b) = self.slot(seq);
        self.words[w] & b != 0
    }

    /// Sets the bit of `seq`; returns whether it was already set.
    pub fn set(&mut self, seq: u64) -> bool {
        let (w, b) = self.slot(seq);
        let was = self.words[w] & b != 0;
        self.words[w] |= b;
        was
    }

    /// Clears the bit of `seq`; returns whether it was set.
    pub fn clear(&mut self, seq: u64) -> bool {
        let (w, b) = self.slot(seq);
        let was = self.words[w] & b != 0;
        self.words[w] &= !b;
        was
    }

    /// Sets the bits of `from .. to` (inside the span); returns how many were newly set.
    pub fn set_range(&mut self, from: u64, to: u64) -> u64 {
        debug_assert!(from >= self.base && to <= self.base + self.mask + 1);
        let mut newly = 0;
        let mut seq = from;
        while seq < to {
            let i = seq & self.mask;
            let bit = i & 63;
            let n = (64 - bit).min(to - seq);
            let m = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
            let w = &mut self.words[(i >> 6) as usize];
            newly += (m & !*w).count_ones() as u64;
            *w |= m;
            seq += n;
        }
        newly
    }

    /// Slides the base up to `new_base`, clearing the bits it passes; returns how many of them were set.
    pub fn advance_to(&mut self, new_base: u64) -> u64 {
        if new_base <= self.base {
            return 0;
        }
        let mut cleared = 0;
        if new_base - self.base > self.mask {
            cleared = self.words.iter().map(|w| w.count_ones() as u64).sum();
            self.words.iter_mut().for_each(|w| *w = 0);
        } else {
            let mut seq = self.base;
            while seq < new_base {
                let i = seq & self.mask;
                let bit = i & 63;
                let n = (64 - bit).min(new_base - seq);
                let m = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
                let w = &mut self.words[(i >> 6) as usize];
                cleared += (*w & m).count_ones() as u64;
                *w &= !m;
                seq += n;
            }
        }
        self.base = new_base;
        cleared
    }

    /// The first sequence number in `from .. to` whose bit equals `value`, if any.
    pub fn find(&self, value: bool, from: u64, to: u64) -> Option<u64> {
        let from = from.max(self.base);
        let to = to.min(self.base + self.mask + 1);
        let mut seq = from;
        while seq < to {
            let i = seq & self.mask;
            let bit = i & 63;
            let word = self.words[(i >> 6) as usize];
            let word = if value { word } else { !word };
            let hits = word >> bit;
            if hits != 0 {
                let found = seq + hits.trailing_zeros() as u64;
                return (found < to).then_some(found);
            }
            seq += 64 - bit;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring against a plain model over many pseudo-random operations, including wrap-around.
    #[test]
    fn matches_a_model() {
        let mut ring = SeqBits::new(200);
        assert_eq!(ring.capacity(), 256);
        let mut model = std::collections::BTreeSet::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = ring.base();
            let seq = base + x % ring.capacity();
            match x >> 60 {
                0..=7 => assert_eq!(ring.set(seq), !model.insert(seq)),
                8..=11 => assert_eq!(ring.clear(seq), model.remove(&seq)),
                12 => {
                    let to = (seq + (x >> 30) % 150).min(base + ring.capacity());
                    let fresh = (seq..to).filter(|s| !model.contains(s)).count() as u64;
                    assert_eq!(ring.set_range(seq, to), fresh);
                    model.extend(seq..to);
                }
                13 => {
                    let nb = base + (x >> 20) % 300;
                    let gone = model.iter().filter(|&&s| s < nb).count() as u64;
                    assert_eq!(ring.advance_to(nb), gone, "step {step}");
                    model.retain(|&s| s >= nb);
                }
                _ => {
                    let to = base + (x >> 24) % 256;
                    let want_set = model.range(seq..to.max(seq)).next().copied();
                    assert_eq!(ring.find(true, seq, to), want_set);
                    let want_clear = (seq..to).find(|s| !model.contains(s));
                    assert_eq!(ring.find(false, seq, to), want_clear);
                }
            }
        }
    }
}
