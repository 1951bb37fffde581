//! [`Slots`]: a fixed array of stage-owned objects (send batches, receive batches) named by index.
//!
//! Pipeline stages hand each other whole batches (a `TxBatch` of datagrams, an `RxBatch` just received) by
//! passing the slot's index through a ring. **One-owner rule:** an index is held by exactly one stage (or sits
//! in exactly one ring slot) at a time; only its holder touches the object. The set of indices is handed out
//! once, by [`Slots::new`], so no index can be duplicated afterwards.

use std::cell::UnsafeCell;
use std::sync::Arc;

/// `n` objects shared between the stages of one pipeline, reached by index under the one-owner rule.
pub struct Slots<T> {
    items: Box<[UnsafeCell<T>]>,
}

// Safety: an object is only reached through `get_mut`, whose callers promise the one-owner rule (one thread
// holds an index at a time; hand-offs go through rings whose Release/Acquire edges order the accesses), so
// sharing the array between threads creates no data race. `T: Send` because objects move between threads.
unsafe impl<T: Send> Sync for Slots<T> {}
unsafe impl<T: Send> Send for Slots<T> {}

impl<T> Slots<T> {
    /// Builds `n` objects with `make(index)`; returns the shared array and every index (each exactly once).
    pub fn new(n: u32, mut make: impl FnMut(u32) -> T) -> (Arc<Slots<T>>, Vec<u32>) {
        assert!(n > 0, "a slot array needs at least one slot");
        let items = (0..n).map(|i| UnsafeCell::new(make(i))).collect();
        (Arc::new(Slots { items }), (0..n).collect())
    }

    /// Number of slots.
    pub fn len(&self) -> u32 {
        self.items.len() as u32
    }

    /// Never true: a slot array has at least one slot.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The object at `index`.
    ///
    /// # Safety
    /// The caller holds `index` (received from [`Slots::new`] or popped from a ring, not yet passed on), and
    /// no other reference to this object from an earlier `get_mut` is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, index: u32) -> &mut T {
        // Safety: in bounds (indexing panics otherwise); exclusivity is the caller's promise.
        unsafe { &mut *self.items[index as usize].get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ring::ring;

    #[test]
    fn objects_move_between_threads_by_index() {
        let (slots, indices) = Slots::new(4, |i| vec![i as u8; 8]);
        let (mut to_worker, mut from_main) = ring::<u32>(4);
        let (mut to_main, mut from_worker) = ring::<u32>(4);
        let s2 = slots.clone();
        let worker = std::thread::spawn(move || {
            let mut seen = 0;
            while seen < 100 {
                if let Some(i) = from_main.pop() {
                    from_main.release();
                    // Safety: popped from the ring: this thread holds `i` until it pushes it back.
                    let v = unsafe { s2.get_mut(i) };
                    v.iter_mut().for_each(|b| *b = b.wrapping_add(1));
                    to_main.push(i).unwrap();
                    to_main.publish();
                    seen += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut free = indices;
        let mut sent = 0;
        let mut back = 0;
        while back < 100 {
            if sent < 100 {
                if let Some(i) = free.pop() {
                    to_worker.push(i).unwrap();
                    to_worker.publish();
                    sent += 1;
                }
            }
            if let Some(i) = from_worker.pop() {
                from_worker.release();
                free.push(i);
                back += 1;
            }
        }
        worker.join().unwrap();
        // 100 trips spread over 4 objects, each trip a whole-object update.
        let mut trips = 0;
        for i in 0..4 {
            // Safety: the worker is gone and every index is back in `free`.
            let v = unsafe { slots.get_mut(i) };
            assert!(v.iter().all(|&b| b == v[0]), "slot {i} torn: {v:?}");
            trips += (v[0] - i as u8) as u32;
        }
        assert_eq!(trips, 100);
    }
}
