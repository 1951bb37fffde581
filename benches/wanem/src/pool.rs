//! The frame buffers, allocated once at start, and the fixed-capacity FIFOs of frame descriptors.
//!
//! Ownership rule: every slot has exactly one owner at a time, named by its index: the pool's free stack, a
//! receive batch entry (armed, waiting for the kernel to fill it), a direction's FIFO (a [`FrameDesc`] waiting for
//! its release time) or a transmit batch. Slots move between them by index; the only pointers into the pool are
//! in the iovecs of the batch that owns the slot.
//!
//! Two slot sizes: `small` slots hold one MTU-sized frame; `spill` slots (64 KiB) catch the rest of a frame that
//! should not exist with offloads off (a GSO super-frame), so it is counted and forwarded whole rather than
//! truncated. The spill memory is virtual until such a frame arrives.

use std::io;

/// No slot (an unarmed spill or a frame without a spill part).
pub const NO_SLOT: u32 = u32::MAX;

/// Size of a spill slot: the largest frame a veth passes up without BIG TCP is 64 KiB.
pub const SPILL_BYTES: usize = 65_536;

/// One frame waiting in a FIFO: where its bytes are and when it leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameDesc {
    /// When the frame must be transmitted (monotonic nanoseconds).
    pub release_ns: u64,
    /// The small slot holding the first `slot_bytes` of the frame.
    pub slot: u32,
    /// The spill slot holding the rest, or [`NO_SLOT`].
    pub spill: u32,
    /// The frame's length in bytes.
    pub len: u32,
}

/// The buffers and their free lists. The free lists are stacks so that the most recently freed (cache-warm)
/// slot is reused first.
pub struct FramePool {
    slot_bytes: usize,
    small: Region,
    free_small: Vec<u32>,
    /// Whether each small slot is on `free_small`: an O(1) double-free check, cheap enough to keep on.
    small_is_free: Box<[bool]>,
    spill: Region,
    free_spill: Vec<u32>,
    spill_is_free: Box<[bool]>,
}

impl FramePool {
    /// `small_slots` slots of `slot_bytes` and `spill_slots` of [`SPILL_BYTES`], in fresh anonymous mappings:
    /// untouched slots cost no RAM, and the free stacks reuse the same few slots under light load.
    pub fn new(small_slots: u32, slot_bytes: usize, spill_slots: u32) -> io::Result<FramePool> {
        assert!(small_slots > 0 && small_slots < NO_SLOT && spill_slots < NO_SLOT);
        assert!(slot_bytes >= 64 && slot_bytes % 64 == 0, "slots are cache-line multiples");
        Ok(FramePool {
            slot_bytes,
            small: Region::new(small_slots as usize * slot_bytes)?,
            // Reversed so that slot 0 is handed out first (tidy in a debugger, nothing more).
            free_small: (0..small_slots).rev().collect(),
            small_is_free: vec![true; small_slots as usize].into_boxed_slice(),
            spill: Region::new(spill_slots as usize * SPILL_BYTES)?,
            free_spill: (0..spill_slots).rev().collect(),
            spill_is_free: vec![true; spill_slots as usize].into_boxed_slice(),
        })
    }

    /// Bytes in one small slot.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Small slots in total.
    pub fn small_slots(&self) -> usize {
        self.small.len / self.slot_bytes
    }

    /// Small slots currently free.
    pub fn free_small(&self) -> usize {
        self.free_small.len()
    }

    /// Spill slots currently free.
    pub fn free_spill(&self) -> usize {
        self.free_spill.len()
    }

    /// Takes a free small slot.
    pub fn take_small(&mut self) -> Option<u32> {
        let slot = self.free_small.pop()?;
        self.small_is_free[slot as usize] = false;
        Some(slot)
    }

    /// Takes a free spill slot.
    pub fn take_spill(&mut self) -> Option<u32> {
        let slot = self.free_spill.pop()?;
        self.spill_is_free[slot as usize] = false;
        Some(slot)
    }

    /// Returns a frame's slots to the pool.
    pub fn release(&mut self, desc: &FrameDesc) {
        self.put_small(desc.slot);
        if desc.spill != NO_SLOT {
            self.put_spill(desc.spill);
        }
    }

    /// Returns a small slot.
    pub fn put_small(&mut self, slot: u32) {
        // Each slot is on the stack at most once, so the stack never grows past its initial allocation.
        assert!(!std::mem::replace(&mut self.small_is_free[slot as usize], true), "slot {slot} freed twice");
        self.free_small.push(slot);
    }

    /// Returns a spill slot.
    pub fn put_spill(&mut self, slot: u32) {
        assert!(!std::mem::replace(&mut self.spill_is_free[slot as usize], true), "spill {slot} freed twice");
        self.free_spill.push(slot);
    }

    /// The start of small slot `slot` (`slot_bytes` long), for the kernel to fill or read. Only the slot's
    /// owner may hand it to a system call.
    pub fn small_ptr(&self, slot: u32) -> *mut u8 {
        self.small.at(slot as usize * self.slot_bytes, self.slot_bytes)
    }

    /// The start of spill slot `slot` ([`SPILL_BYTES`] long).
    pub fn spill_ptr(&self, slot: u32) -> *mut u8 {
        self.spill.at(slot as usize * SPILL_BYTES, SPILL_BYTES)
    }

    /// A copy of the first bytes of small slot `slot` (tests and diagnostics).
    pub fn small_bytes(&self, slot: u32, len: usize) -> Vec<u8> {
        let len = len.min(self.slot_bytes);
        // Safety: the range lies inside the mapping (checked by `at`), and no system call writes into the pool
        // while the single-threaded forwarder runs this.
        unsafe { std::slice::from_raw_parts(self.small_ptr(slot), len) }.to_vec()
    }
}

/// An anonymous private mapping that only the kernel and raw pointers touch: no Rust reference to its bytes
/// lives across a system call, so the kernel writing into it aliases nothing.
struct Region {
    base: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        if len == 0 {
            return Ok(Region { base: std::ptr::NonNull::dangling().as_ptr(), len });
        }
        // Safety: a fresh anonymous mapping; nothing else refers to it. NORESERVE: the pool is sized for the
        // worst case, most of it is never touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { base: base.cast(), len })
    }

    /// The address `offset` bytes in, checking that `len` bytes from there are inside.
    fn at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset + len <= self.len, "slot outside the pool");
        // Safety: offset is inside the mapping (asserted above).
        unsafe { self.base.add(offset) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.len != 0 {
            // Safety: base/len are the mapping made in new, unmapped once.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// A FIFO of frame descriptors with a capacity fixed at start. It never grows: the forwarder sizes it to the
/// pool, and every descriptor in it owns a slot, so it cannot overflow unless a slot were owned twice.
pub struct DescRing {
    items: Box<[FrameDesc]>,
    head: usize,
    len: usize,
}

impl DescRing {
    /// A ring holding up to `capacity` descriptors.
    pub fn new(capacity: usize) -> DescRing {
        assert!(capacity > 0);
        DescRing { items: vec![FrameDesc::default(); capacity].into_boxed_slice(), head: 0, len: 0 }
    }

    /// Descriptors waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends at the tail. Panics when full (an ownership bug, see the type's comment).
    pub fn push(&mut self, desc: FrameDesc) {
        assert!(self.len < self.items.len(), "descriptor ring overflow: a slot is owned twice");
        let mut at = self.head + self.len;
        if at >= self.items.len() {
            at -= self.items.len();
        }
        self.items[at] = desc;
        self.len += 1;
    }

    /// The oldest descriptor.
    pub fn front(&self) -> Option<&FrameDesc> {
        if self.len == 0 {
            return None;
        }
        Some(&self.items[self.head])
    }

    /// Removes and returns the oldest descriptor.
    pub fn pop(&mut self) -> Option<FrameDesc> {
        if self.len == 0 {
            return None;
        }
        let desc = self.items[self.head];
        self.head += 1;
        if self.head == self.items.len() {
            self.head = 0;
        }
        self.len -= 1;
        Some(desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn ring_matches_a_vecdeque() {
        let mut ring = DescRing::new(7);
        let mut model = VecDeque::new();
        let mut x = 12345u64;
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let push = (x >> 33) % 3 != 0;
            if push && model.len() < 7 {
                let d = FrameDesc { release_ns: i, slot: i as u32, spill: NO_SLOT, len: 60 };
                ring.push(d);
                model.push_back(d);
            } else {
                assert_eq!(ring.pop(), model.pop_front());
            }
            assert_eq!(ring.len(), model.len());
            assert_eq!(ring.front(), model.front());
        }
    }

    #[test]
    #[should_panic(expected = "owned twice")]
    fn ring_overflow_panics() {
        let mut ring = DescRing::new(2);
        for _ in 0..3 {
            ring.push(FrameDesc::default());
        }
    }

    #[test]
    fn pool_hands_out_each_slot_once_and_takes_them_back() {
        let mut pool = FramePool::new(4, 128, 1).unwrap();
        let slots: Vec<u32> = std::iter::from_fn(|| pool.take_small()).collect();
        assert_eq!(slots, vec![0, 1, 2, 3]);
        assert_eq!(pool.take_small(), None);
        let spill = pool.take_spill().unwrap();
        assert_eq!(pool.take_spill(), None);
        pool.release(&FrameDesc { release_ns: 0, slot: 2, spill, len: 70_000 });
        assert_eq!((pool.free_small(), pool.free_spill()), (1, 1));
        assert_eq!(pool.take_small(), Some(2), "most recently freed first");
        // Slots do not overlap.
        let (a, b) = (pool.small_ptr(0) as usize, pool.small_ptr(1) as usize);
        assert_eq!(b - a, 128);
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn double_free_is_caught() {
        let mut pool = FramePool::new(4, 128, 0).unwrap();
        let s = pool.take_small().unwrap();
        let _ = pool.take_small().unwrap();
        pool.put_small(s);
        pool.put_small(s);
    }
}
