//! How much memory sessions may hold: a per-session manifest budget (`--max-manifest-memory`), checked as
//! each entry arrives, and one daemon-wide budget (`--max-memory`) from which every session reserves its
//! manifest and its pipeline buffers before they are allocated.
//!
//! A client decides how large a manifest is; the server decides what it will hold. So the bytes an entry
//! occupies are counted before it is kept ([`entry_bytes`]), and a session that would pass either budget is
//! refused with the numbers and the flag, instead of the daemon growing until the kernel kills it.
//!
//! The counts are plain atomics ([`MemoryStats`]) for the daemon's metrics.

use super::error::SessionError;
use crate::files::Entry;
use crate::rate::format_bytes;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Default `--max-manifest-memory`: what one session's manifest may occupy on the server. 2,000,000
/// entries (the `--max-files` default) with paths of about 100 bytes need about 500 MiB.
pub const DEFAULT_MAX_MANIFEST_MEMORY: u64 = 512 << 20;
/// `--max-memory` where this machine's memory cannot be read: what all sessions together may reserve
/// (manifests and pipeline buffers).
pub const DEFAULT_MAX_MEMORY: u64 = 4 << 30;

/// Default `--max-memory`: half of this machine's physical memory (a receive session's buffers alone are
/// about 64 MiB, so 40 concurrent pushes need about 2.5 GiB), or [`DEFAULT_MAX_MEMORY`] where it cannot
/// be read.
pub fn default_max_memory() -> u64 {
    // Safety: sysconf takes an integer name and reads no memory of ours.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages <= 0 || page <= 0 {
        return DEFAULT_MAX_MEMORY;
    }
    (pages as u64).saturating_mul(page as u64) / 2
}

/// The daemon-wide account: a cheap handle, clones share it.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit_bytes: u64,
    reserved_bytes: AtomicU64,
    peak_reserved_bytes: AtomicU64,
    session_refusals: AtomicU64,
    daemon_refusals: AtomicU64,
    sessions: AtomicUsize,
}

/// A snapshot of a [`MemoryBudget`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// The daemon-wide limit (`--max-memory`).
    pub limit_bytes: u64,
    /// Bytes reserved by live sessions now.
    pub reserved_bytes: u64,
    /// The most ever reserved at once.
    pub peak_reserved_bytes: u64,
    /// Sessions refused at their own manifest budget (`--max-manifest-memory`).
    pub session_refusals: u64,
    /// Sessions refused because the daemon-wide budget was spent.
    pub daemon_refusals: u64,
    /// Sessions alive now (each holds a [`SessionMemory`]).
    pub sessions: usize,
}

impl MemoryBudget {
    /// An account that lets all sessions together reserve at most `limit_bytes`.
    pub fn new(limit_bytes: u64) -> MemoryBudget {
        MemoryBudget {
            shared: Arc::new(Shared {
                limit_bytes,
                reserved_bytes: AtomicU64::new(0),
                peak_reserved_bytes: AtomicU64::new(0),
                session_refusals: AtomicU64::new(0),
                daemon_refusals: AtomicU64::new(0),
                sessions: AtomicUsize::new(0),
            }),
        }
    }

    /// An account without a daemon-wide limit (a client's own session: it spends what it chose to).
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget::new(u64::MAX)
    }

    /// The counts now.
    pub fn stats(&self) -> MemoryStats {
        let s = &self.shared;
        MemoryStats {
            limit_bytes: s.limit_bytes,
            reserved_bytes: s.reserved_bytes.load(Ordering::Relaxed),
            peak_reserved_bytes: s.peak_reserved_bytes.load(Ordering::Relaxed),
            session_refusals: s.session_refusals.load(Ordering::Relaxed),
            daemon_refusals: s.daemon_refusals.load(Ordering::Relaxed),
            sessions: s.sessions.load(Ordering::Relaxed),
        }
    }

    /// Marks one session alive until the guard drops; when the last one ends, freed memory goes back to
    /// the system ([`super::allocator::release_idle`]).
    pub fn session(&self) -> SessionMemory {
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        SessionMemory { budget: self.clone() }
    }

    /// An empty reservation for one session whose manifest may occupy at most `manifest_limit_bytes`.
    pub fn reservation(&self, manifest_limit_bytes: u64) -> Reservation {
        Reservation { budget: self.clone(), bytes: 0, manifest_bytes: 0, manifest_limit_bytes }
    }

    /// Takes `bytes` from the daemon-wide account, or says how much is left.
    fn take(&self, bytes: u64) -> Result<(), u64> {
        let s = &self.shared;
        let mut now = s.reserved_bytes.load(Ordering::Relaxed);
        loop {
            let next = now.saturating_add(bytes);
            if next > s.limit_bytes {
                return Err(now);
            }
            // Relaxed is enough: the count guards no other memory, it only bounds a sum.
            match s.reserved_bytes.compare_exchange_weak(now, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    s.peak_reserved_bytes.fetch_max(next, Ordering::Relaxed);
                    return Ok(());
                }
                Err(actual) => now = actual,
            }
        }
    }

    fn give_back(&self, bytes: u64) {
        self.shared.reserved_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One session's share of the daemon-wide budget; everything it took is given back when it drops.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: u64,
    manifest_bytes: u64,
    manifest_limit_bytes: u64,
}

impl Reservation {
    /// Reserves `bytes` more for the manifest: refused (and nothing taken) past the session's manifest
    /// budget or the daemon's.
    pub fn grow_manifest(&mut self, bytes: u64) -> Result<(), SessionError> {
        let needed = self.manifest_bytes.saturating_add(bytes);
        if needed > self.manifest_limit_bytes {
            self.budget.shared.session_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(SessionError::NotAllowed(format!(
                "the manifest needs more than {} of server memory (--max-manifest-memory): split the transfer",
                format_bytes(self.manifest_limit_bytes)
            )));
        }
        self.grow(bytes, "its manifest")?;
        self.manifest_bytes = needed;
        Ok(())
    }

    /// Reserves `bytes` for buffers of the session's data path (`what` names them in a refusal): checked
    /// against the daemon-wide budget only.
    pub fn grow(&mut self, bytes: u64, what: &str) -> Result<(), SessionError> {
        if let Err(reserved) = self.budget.take(bytes) {
            self.budget.shared.daemon_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(SessionError::NotAllowed(format!(
                "{}: out of memory for sessions (--max-memory {}, {} reserved; this session needs {} more \
                 for {what}): try again later",
                crate::wire::control::SERVER_BUSY,
                format_bytes(self.budget.shared.limit_bytes),
                format_bytes(reserved),
                format_bytes(bytes)
            )));
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Bytes this session holds reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of that for the manifest.
    pub fn manifest_bytes(&self) -> u64 {
        self.manifest_bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A live session (see [`MemoryBudget::session`]).
#[derive(Debug)]
pub struct SessionMemory {
    budget: MemoryBudget,
}

impl Drop for SessionMemory {
    fn drop(&mut self) {
        if self.budget.shared.sessions.fetch_sub(1, Ordering::AcqRel) == 1 {
            super::allocator::release_idle();
        }
    }
}

/// The heap bytes one manifest entry occupies besides its place in the entries' vector: its path, link
/// target and extended attributes (their capacities: what the allocator really holds).
pub fn entry_heap_bytes(e: &Entry) -> u64 {
    let xattrs: usize = e.xattrs.iter().map(|(n, v)| n.capacity() + v.capacity()).sum();
    let xattr_slots = e.xattrs.capacity() * std::mem::size_of::<(String, Vec<u8>)>();
    (e.rel_path.capacity() + e.link_target.capacity() + xattr_slots + xattrs) as u64
}

/// Everything one entry costs in a manifest: its slot in the vector and its heap bytes.
pub fn entry_bytes(e: &Entry) -> u64 {
    std::mem::size_of::<Entry>() as u64 + entry_heap_bytes(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_are_given_back_on_drop() {
        let budget = MemoryBudget::new(1000);
        let mut a = budget.reservation(600);
        a.grow_manifest(500).unwrap();
        let mut b = budget.reservation(600);
        b.grow(400, "buffers").unwrap();
        assert_eq!(budget.stats().reserved_bytes, 900);
        // The daemon-wide budget refuses what would pass it, and takes nothing.
        let err = b.grow(200, "buffers").unwrap_err().to_string();
        assert!(err.contains("--max-memory") && err.contains("try again later"), "{err}");
        assert_eq!(b.bytes(), 400);
        drop(a);
        assert_eq!(budget.stats().reserved_bytes, 400);
        b.grow(200, "buffers").unwrap();
        drop(b);
        let s = budget.stats();
        assert_eq!((s.reserved_bytes, s.peak_reserved_bytes, s.daemon_refusals), (0, 900, 1));
    }

    #[test]
    fn the_manifest_budget_is_per_session_and_names_its_flag() {
        let budget = MemoryBudget::new(10_000);
        let mut a = budget.reservation(600);
        a.grow_manifest(600).unwrap();
        let err = a.grow_manifest(1).unwrap_err().to_string();
        assert!(err.contains("--max-manifest-memory") && err.contains("split the transfer"), "{err}");
        assert_eq!(a.manifest_bytes(), 600);
        // Another session has a budget of its own, and buffers do not count against the manifest's.
        let mut b = budget.reservation(600);
        b.grow_manifest(600).unwrap();
        b.grow(5000, "buffers").unwrap();
        let s = budget.stats();
        assert_eq!((s.reserved_bytes, s.session_refusals, s.daemon_refusals), (6200, 1, 0));
    }

    #[test]
    fn the_daemon_budget_refuses_a_manifest_within_its_own_budget() {
        let budget = MemoryBudget::new(1000);
        let mut a = budget.reservation(800);
        a.grow_manifest(800).unwrap();
        let mut b = budget.reservation(800);
        let err = b.grow_manifest(300).unwrap_err().to_string();
        assert!(err.contains("out of memory for sessions"), "{err}");
        // The client classes a busy server as retryable (exit 5), as for a full queue.
        let seen = SessionError::Refused { who: "server", message: err };
        assert_eq!(seen.exit_class(), crate::exit::ExitClass::Retryable);
        assert_eq!((b.manifest_bytes(), budget.stats().daemon_refusals), (0, 1));
    }

    #[test]
    fn the_default_daemon_budget_is_half_of_this_machine() {
        let half = default_max_memory();
        assert!((64 << 20..1 << 50).contains(&half), "{half}");
    }

    #[test]
    fn sessions_are_counted_while_alive() {
        let budget = MemoryBudget::unlimited();
        let a = budget.session();
        let b = budget.session();
        assert_eq!(budget.stats().sessions, 2);
        drop(a);
        drop(b);
        assert_eq!(budget.stats().sessions, 0);
    }

    #[test]
    fn an_entry_costs_its_slot_and_its_heap() {
        let e = Entry {
            rel_path: "a".repeat(4000),
            link_target: "b".repeat(100),
            xattrs: vec![("user.x".into(), vec![0; 50])],
            ..Entry::default()
        };
        let n = entry_bytes(&e);
        assert!(n >= (std::mem::size_of::<Entry>() + 4000 + 100 + 6 + 50) as u64, "{n}");
    }
}
