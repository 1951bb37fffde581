//! Buffers shared between stages, owned through move-only tokens (ENGINEERING.md §6).
//!
//! Two kinds of shared memory cross the pipeline's rings:
//! - [`SlotPool`]: a fixed array of stage-owned objects (send batches, receive batches, feedback buffers). The
//!   pool mints one [`Slot`] token per object, once, at start-up.
//! - [`BufRegion`]: the I/O buffers of a disk [`BufferPool`](crate::disk::BufferPool) (read chunks, write
//!   runs), reached through a [`RegionBuf`] token that wraps the pool's own move-only [`BufIdx`].
//!
//! **One-owner rule**, enforced by the compiler: a token is neither `Copy` nor `Clone`, so at any moment it is
//! held by exactly one stage (or sits in exactly one ring slot, or in an in-flight disk operation). Its object
//! is reached only by lending the token mutably (`pool.get(&mut slot)`), so the `&mut` access lives no longer
//! than the holder's borrow of the token, and the token cannot be passed on while the access is alive. This
//! file holds the pipeline's only `unsafe` slot access; stage code has none.

use crate::disk::{BufIdx, Region};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Pool identities, so that a token is only ever redeemed at the pool that minted it.
static NEXT_POOL_ID: AtomicU32 = AtomicU32::new(1);

fn next_pool_id() -> u32 {
    NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed)
}

/// `n` objects shared between the stages of one pipeline, each reached only by the holder of its [`Slot`].
pub struct SlotPool<T> {
    id: u32,
    items: Box<[UnsafeCell<T>]>,
}

// Safety: an object is only reached through `get`, which requires `&mut` the object's unique token (minted
// once by `new`, never copied): two threads can never hold access to the same object at once, and a token
// moves between threads only through a ring, whose Release/Acquire edges order the accesses of the old holder
// before those of the new one. `T: Send` because the objects themselves are used from several threads.
unsafe impl<T: Send> Sync for SlotPool<T> {}
unsafe impl<T: Send> Send for SlotPool<T> {}

/// The token of one object of a [`SlotPool`]: holding it is owning the object.
///
/// Deliberately neither `Copy` nor `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct Slot<T> {
    index: u32,
    pool: u32,
    _of: PhantomData<fn() -> T>,
}

impl<T> Slot<T> {
    /// The object's position in its pool (for messages and tests).
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl<T> SlotPool<T> {
    /// Builds `n` objects with `make(index)`; returns the shared pool and the token of every object (each
    /// exactly once: the only tokens that will ever exist for this pool).
    pub fn new(n: u32, mut make: impl FnMut(u32) -> T) -> (Arc<SlotPool<T>>, Vec<Slot<T>>) {
        assert!(n > 0, "a slot pool needs at least one slot");
        let id = next_pool_id();
        let items = (0..n).map(|i| UnsafeCell::new(make(i))).collect();
        let tokens = (0..n).map(|index| Slot { index, pool: id, _of: PhantomData }).collect();
        (Arc::new(SlotPool { id, items }), tokens)
    }

    /// Number of objects.
    pub fn len(&self) -> u32 {
        self.items.len() as u32
    }

    /// Never true: a pool has at least one object.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The object named by `slot`, for as long as the holder lends the token.
    pub fn get<'a>(&'a self, slot: &'a mut Slot<T>) -> &'a mut T {
        assert_eq!(slot.pool, self.id, "slot {} redeemed at a pool that did not mint it", slot.index);
        // Safety: the token is unique for (pool, index) (see the `Sync` impl) and borrowed mutably for 'a, so no
        // other reference to this object exists for 'a; the index is in bounds (minted by `new` for this pool).
        unsafe { &mut *self.items[slot.index as usize].get() }
    }
}

/// The memory of one disk buffer pool, shared by the stages that hand its buffers to each other.
///
/// Access goes through [`RegionBuf`] tokens, each wrapping the pool's move-only [`BufIdx`]: a buffer is
/// touched by the holder of its token, and by the kernel while an operation that took the token's index is in
/// flight (the operation's owner keeps the token meanwhile, and touches no bytes). Build one `BufRegion` per
/// pool, and adopt only the pool's own `BufIdx`s.
pub struct BufRegion {
    id: u32,
    region: Arc<Region>,
}

/// One buffer of a [`BufRegion`]: holding it is owning the buffer. Neither `Copy` nor `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct RegionBuf {
    buf: BufIdx,
    region: u32,
}

impl RegionBuf {
    /// The buffer's index in its pool (also its io_uring registered-buffer index).
    pub fn index(&self) -> u32 {
        self.buf.index()
    }

    /// Gives the buffer back to the disk layer (to free it or read into it).
    pub fn into_buf_idx(self) -> BufIdx {
        self.buf
    }
}

impl BufRegion {
    /// Shares `region`, the memory of the pool whose buffers this pipeline will [`adopt`](Self::adopt).
    pub fn new(region: Arc<Region>) -> Arc<BufRegion> {
        Arc::new(BufRegion { id: next_pool_id(), region })
    }

    /// The underlying region.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Bytes per buffer.
    pub fn buf_bytes(&self) -> usize {
        self.region.buf_bytes()
    }

    /// Number of buffers.
    pub fn count(&self) -> u32 {
        self.region.count()
    }

    /// Takes ownership of one of the pool's buffers (handed out by its pool or a completed disk read).
    pub fn adopt(&self, buf: BufIdx) -> RegionBuf {
        assert!(buf.index() < self.region.count(), "buffer {} is not from this pool", buf.index());
        RegionBuf { buf, region: self.id }
    }

    /// The bytes of the buffer named by `b`.
    pub fn bytes<'a>(&'a self, b: &'a RegionBuf) -> &'a [u8] {
        assert_eq!(b.region, self.id, "buffer {} read through another region", b.index());
        // Safety: the holder of the unique token owns the buffer and no operation that writes it is in flight
        // (a read's token is adopted only once the read completed); the shared borrow of the token excludes a
        // `bytes_mut` through it for 'a.
        unsafe { self.region.bytes(b.index()) }
    }

    /// The bytes of the buffer named by `b`, writable.
    pub fn bytes_mut<'a>(&'a self, b: &'a mut RegionBuf) -> &'a mut [u8] {
        assert_eq!(b.region, self.id, "buffer {} written through another region", b.index());
        // Safety: as in `bytes`; the mutable borrow of the unique token excludes every other access for 'a.
        unsafe { self.region.bytes_mut(b.index()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ring::ring;

    #[test]
    fn objects_move_between_threads_by_token() {
        let (slots, tokens) = SlotPool::new(4, |i| vec![i as u8; 8]);
        let (mut to_worker, mut from_main) = ring::<Slot<Vec<u8>>>(4);
        let (mut to_main, mut from_worker) = ring::<Slot<Vec<u8>>>(4);
        let s2 = slots.clone();
        let worker = std::thread::spawn(move || {
            let mut seen = 0;
            while seen < 100 {
                if let Some(mut t) = from_main.pop() {
                    from_main.release();
                    s2.get(&mut t).iter_mut().for_each(|b| *b = b.wrapping_add(1));
                    assert!(to_main.push(t).is_ok());
                    to_main.publish();
                    seen += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut free = tokens;
        let mut sent = 0;
        let mut back = 0;
        while back < 100 {
            if sent < 100 {
                if let Some(t) = free.pop() {
                    assert!(to_worker.push(t).is_ok());
                    to_worker.publish();
                    sent += 1;
                }
            }
            if let Some(t) = from_worker.pop() {
                from_worker.release();
                free.push(t);
                back += 1;
            }
        }
        worker.join().unwrap();
        // 100 trips spread over 4 objects, each trip a whole-object update.
        free.sort_by_key(|t| t.index());
        let mut trips = 0;
        for (i, t) in free.iter_mut().enumerate() {
            let v = slots.get(t);
            assert!(v.iter().all(|&b| b == v[0]), "slot {i} torn: {v:?}");
            trips += (v[0] - i as u8) as u32;
        }
        assert_eq!(trips, 100);
    }

    #[test]
    #[should_panic(expected = "did not mint it")]
    fn a_token_only_opens_its_own_pool() {
        let (_a, mut ta) = SlotPool::new(2, |_| 0u8);
        let (b, _tb) = SlotPool::new(2, |_| 0u8);
        let _ = b.get(&mut ta[0]);
    }
}
