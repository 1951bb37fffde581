//! A bounded single-producer, single-consumer ring of small items: move-only buffer tokens
//! ([`super::slots::Slot`], [`super::slots::RegionBuf`]) and the descriptors that travel with them.
//!
//! Each side keeps a private copy of its own position and a cached copy of the other side's, so the shared
//! atomics are touched only when the cache says "full" or "empty" and when a batch is published: a stage
//! pushes a burst with [`Producer::push`] and makes it visible with one [`Producer::publish`]; the other
//! stage pops a burst with [`Consumer::pop`] and frees the slots with one [`Consumer::release`]
//! (ENGINEERING.md §7). Positions are free-running `usize` counters; slot = position & mask.
//!
//! Items move through the ring (a push gives the item up, a pop takes it back), so a token that is neither
//! `Copy` nor `Clone` keeps exactly one owner while it travels. Items still in a ring when both halves are
//! dropped are leaked, not dropped: rings carry tokens and plain descriptors, which own no memory (an owned
//! descriptor left in a ring at the end of a transfer stays open until the process exits).

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use std::mem::MaybeUninit;
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// `std`'s `UnsafeCell` with loom's access API, so that under `--cfg loom` every slot access is checked for
/// races against the atomics' happens-before edges.
#[cfg(not(loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Keeps the two positions on separate cache lines so producer and consumer cores don't false-share.
#[repr(align(64))]
struct Padded(AtomicUsize);

struct Shared<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Published producer position: slots below it hold items the consumer may read.
    tail: Padded,
    /// Released consumer position: slots below it may be overwritten by the producer.
    head: Padded,
}

// Safety: the slots are only accessed under the protocol documented on `Producer`/`Consumer` (one producer
// writes slots in [head, head + capacity) that are not yet published; one consumer reads slots in
// [head, tail) that are published), with Release/Acquire on the positions ordering the accesses.
unsafe impl<T: Send> Sync for Shared<T> {}
unsafe impl<T: Send> Send for Shared<T> {}

/// The writing half. Exactly one thread owns it.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: usize,
    head_cache: usize,
}

/// The reading half. Exactly one thread owns it.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: usize,
    tail_cache: usize,
}

/// A ring of `capacity` slots (a power of two, at least 2), split into its two halves.
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(capacity >= 2 && capacity.is_power_of_two(), "ring capacity {capacity} must be a power of two >= 2");
    let slots = (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let shared = Arc::new(Shared {
        slots,
        mask: capacity - 1,
        tail: Padded(AtomicUsize::new(0)),
        head: Padded(AtomicUsize::new(0)),
    });
    (Producer { shared: shared.clone(), tail: 0, head_cache: 0 }, Consumer { shared, head: 0, tail_cache: 0 })
}

impl<T: Send> Producer<T> {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// Writes `item` into the next slot without publishing it; gives it back if the ring is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.tail - self.head_cache == self.capacity() {
            // Acquire: the consumer's reads of the slots it released happened before we overwrite them.
            self.head_cache = self.shared.head.0.load(Ordering::Acquire);
            if self.tail - self.head_cache == self.capacity() {
                return Err(item);
            }
        }
        let slot = &self.shared.slots[self.tail & self.shared.mask];
        // Safety: tail - head < capacity, so this slot is not in [head, tail) and the consumer does not read
        // it until we publish a tail beyond it; we are the only producer.
        slot.with_mut(|p| unsafe { (*p).write(item) });
        self.tail += 1;
        Ok(())
    }

    /// Makes every pushed item visible to the consumer.
    pub fn publish(&mut self) {
        // Release: the slot writes above happen before the consumer sees the new tail.
        self.shared.tail.0.store(self.tail, Ordering::Release);
    }

    /// Items pushed and not yet published.
    pub fn unpublished(&self) -> usize {
        self.tail - self.shared.tail.0.load(Ordering::Relaxed)
    }

    /// Free slots as far as this side knows (refreshes its cache).
    pub fn free(&mut self) -> usize {
        self.head_cache = self.shared.head.0.load(Ordering::Acquire);
        self.capacity() - (self.tail - self.head_cache)
    }
}

impl<T: Send> Consumer<T> {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// Takes the next published item, if any, without releasing its slot.
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_cache {
            // Acquire: pairs with the producer's Release in `publish`, so the slot writes are visible.
            self.tail_cache = self.shared.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let slot = &self.shared.slots[self.head & self.shared.mask];
        // Safety: head < published tail, so the producer wrote this slot and will not overwrite it until we
        // release a head beyond it; we are the only consumer, and the head moves past the slot below, so the
        // item is read (moved out) exactly once.
        let item = slot.with(|p| unsafe { (*p).assume_init_read() });
        self.head += 1;
        Some(item)
    }

    /// Frees the slots of every popped item for the producer.
    pub fn release(&mut self) {
        // Release: our reads of the slots happen before the producer may overwrite them.
        self.shared.head.0.store(self.head, Ordering::Release);
    }

    /// Published items not yet popped, as far as this side knows (refreshes its cache).
    pub fn available(&mut self) -> usize {
        self.tail_cache = self.shared.tail.0.load(Ordering::Acquire);
        self.tail_cache - self.head
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// The ring against a model over long random operation sequences on one thread: published and
    /// unpublished items, popped and unreleased slots, full and empty edges.
    #[test]
    fn matches_a_vecdeque_model() {
        for seed in 1..=20u64 {
            let cap = 1 << (1 + seed % 5);
            let (mut p, mut c) = ring::<u64>(cap);
            let mut published: VecDeque<u64> = VecDeque::new();
            let mut unpublished: VecDeque<u64> = VecDeque::new();
            let mut popped_unreleased = 0usize;
            let mut next = 0u64;
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 4 {
                    0 => {
                        let occupied = published.len() + unpublished.len() + popped_unreleased;
                        let r = p.push(next);
                        if occupied < cap {
                            assert_eq!(r, Ok(()));
                            unpublished.push_back(next);
                            next += 1;
                        } else {
                            assert_eq!(r, Err(next), "full ring must refuse");
                        }
                    }
                    1 => {
                        p.publish();
                        published.extend(unpublished.drain(..));
                    }
                    2 => {
                        let got = c.pop();
                        assert_eq!(got, published.pop_front());
                        popped_unreleased += got.is_some() as usize;
                    }
                    _ => {
                        c.release();
                        popped_unreleased = 0;
                    }
                }
                assert_eq!(c.available(), published.len());
                assert_eq!(p.unpublished(), unpublished.len());
            }
        }
    }

    /// Two threads, batches of varying size: every item arrives once, in order.
    #[test]
    fn two_threads_deliver_everything_in_order() {
        const N: u64 = 2_000_000;
        let (mut p, mut c) = ring::<u64>(256);
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                let burst = 1 + (i % 37);
                let mut pushed = 0;
                while pushed < burst && i < N && p.push(i).is_ok() {
                    i += 1;
                    pushed += 1;
                }
                p.publish();
                if pushed == 0 {
                    std::hint::spin_loop();
                }
            }
        });
        let mut expect = 0;
        while expect < N {
            let mut got_any = false;
            while let Some(v) = c.pop() {
                assert_eq!(v, expect);
                expect += 1;
                got_any = true;
            }
            c.release();
            if !got_any {
                std::hint::spin_loop();
            }
        }
        producer.join().unwrap();
    }
}

/// Model-checks the atomics with loom: `RUSTFLAGS="--cfg loom" cargo test --release --lib pipeline::ring`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn handoff_is_ordered_under_every_interleaving() {
        loom::model(|| {
            let (mut p, mut c) = ring::<u32>(2);
            let t = loom::thread::spawn(move || {
                let mut sent = 0u32;
                while sent < 3 {
                    if p.push(sent).is_ok() {
                        sent += 1;
                        p.publish();
                    } else {
                        loom::thread::yield_now();
                    }
                }
            });
            let mut expect = 0;
            while expect < 3 {
                match c.pop() {
                    Some(v) => {
                        assert_eq!(v, expect);
                        expect += 1;
                        c.release();
                    }
                    None => loom::thread::yield_now(),
                }
            }
            t.join().unwrap();
        });
    }
}
