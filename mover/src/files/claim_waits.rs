//! Who holds which partial in this process, and who waits for whom: so that sessions of one daemon that
//! claim the same files in different orders cannot wait for each other in a cycle.
//!
//! A receiver claims a file's partial when the file's first block arrives and holds the claim until the
//! commit (module `partial`). With several small files in flight, arrival order is not manifest order, so
//! two pushes of one tree into one daemon (a retry overlapping its predecessor, two nodes given the same
//! job) can take their claims in different orders. A claim that meets a held lock waits up to
//! [`super::partial::CLAIM_WAIT`] for it while its session keeps every other claim: three sessions once
//! waited for each other in a ring for all of those 15 s, and all three failed (CI, 2026-12-03).
//!
//! The lock itself is the kernel's (`flock`), and it is what excludes other processes. This table only
//! says which of this process's trees ([`ClaimOwner`]) holds a partial, by its `(dev, ino)`, and what
//! each waiting tree waits for. A claim about to wait for a holder that (through the holders it waits for)
//! waits for the claimant itself closes a cycle: it fails at once as busy instead, its session fails as a
//! retryable failure and lets go of its claims, and the others go on. A holder in another process is not
//! in the table: the claim waits for it as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// One destination tree's claims (a session's): see the [module documentation](self).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimOwner(u64);

impl ClaimOwner {
    /// A new owner, distinct from every other in this process.
    pub fn new() -> ClaimOwner {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ClaimOwner(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A partial's identity: its device and inode.
pub(super) type PartialKey = (u64, u64);

#[derive(Default)]
struct Table {
    /// Which owner holds each partial claimed in this process.
    held: HashMap<PartialKey, ClaimOwner>,
    /// What each waiting owner waits for.
    waits: HashMap<ClaimOwner, PartialKey>,
}

fn table() -> MutexGuard<'static, Table> {
    static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);
    // A panic while holding it leaves the maps consistent (each change is one insert or remove).
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `owner` now holds the lock of `key`.
pub(super) fn hold(owner: ClaimOwner, key: PartialKey) {
    table().held.insert(key, owner);
}

/// `owner` let go of `key` (only its own entry is removed: another owner may hold it by now).
pub(super) fn release(owner: ClaimOwner, key: PartialKey) {
    let mut t = table();
    if t.held.get(&key) == Some(&owner) {
        t.held.remove(&key);
    }
}

/// `owner` found `key` locked and is about to wait for it: recorded, unless waiting would close a cycle
/// of waits among this process's owners, in which case nothing is recorded and `false` is returned (the
/// claimant must not wait). Called again on every poll of the wait, since holders and waits change.
pub(super) fn may_wait(owner: ClaimOwner, key: PartialKey) -> bool {
    let mut t = table();
    let mut next = key;
    // Each step follows a holder to what it waits for; more steps than waiters means a cycle elsewhere,
    // which its own members break.
    for _ in 0..=t.waits.len() {
        match t.held.get(&next) {
            Some(&holder) if holder == owner => {
                // Our own lock (a released claim's writes still in flight hold it for a moment): waiting
                // ends by itself.
                if next == key {
                    break;
                }
                t.waits.remove(&owner);
                return false;
            }
            Some(holder) => match t.waits.get(holder) {
                Some(&k) => next = k,
                None => break,
            },
            None => break,
        }
    }
    t.waits.insert(owner, key);
    true
}

/// `owner` no longer waits (it got the lock, or gave up).
pub(super) fn stop_waiting(owner: ClaimOwner) {
    table().waits.remove(&owner);
}

#[cfg(test)]
pub(super) fn is_waiting(owner: ClaimOwner) -> bool {
    table().waits.contains_key(&owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_would_close_a_ring_is_refused_and_a_chain_is_not() {
        let (a, b, c) = (ClaimOwner::new(), ClaimOwner::new(), ClaimOwner::new());
        // Keys no real file has (device 0 is never a mounted file system's), distinct per test.
        let (p, q, r) = ((0, 1001), (0, 1002), (0, 1003));
        hold(a, p);
        hold(b, q);
        hold(c, r);
        // a waits for q (b's), b for r (c's): a chain, both may wait.
        assert!(may_wait(a, q));
        assert!(may_wait(b, r));
        // c waiting for p (a's) would close a -> b -> c -> a.
        assert!(!may_wait(c, p));
        assert!(!is_waiting(c));
        // Once b gives up, c may wait for a: a's wait leads to b, which waits for nothing.
        stop_waiting(b);
        assert!(may_wait(c, p));
        // Waiting for one's own lock (a released claim's writes still hold it) is no cycle.
        assert!(may_wait(b, q));
        for (o, k) in [(a, p), (b, q), (c, r)] {
            stop_waiting(o);
            release(o, k);
        }
        // A release by an owner that no longer holds the key leaves the new holder's entry.
        hold(a, p);
        release(b, p);
        assert_eq!(table().held.get(&p), Some(&a));
        release(a, p);
        assert_eq!(table().held.get(&p), None);
    }
}
