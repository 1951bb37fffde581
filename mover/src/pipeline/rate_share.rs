//! A session's share of the daemon's rate cap, handed from the daemon's governor (any thread, when sessions
//! start and end) to the stage that owns the session's protocol core (PROTOCOL.md §3.7).
//!
//! One relaxed atomic: the governor stores, the stage loads it in its housekeeping step (at most once per
//! millisecond, never per packet) and gives a changed value to the core (`Receiver::set_rate_share`, which
//! tells the sender; `Sender::set_rate_share` on a daemon serving a pull). No ordering with other memory is
//! needed: the share is a number on its own, and the newest one wins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The share, bits per second of datagram bytes; 0 while the session has none (the daemon caps nothing).
#[derive(Debug, Default)]
pub struct RateShareCell(AtomicU64);

impl RateShareCell {
    /// A cell with no share yet, ready to share between the governor and the stage.
    pub fn new() -> Arc<RateShareCell> {
        Arc::new(RateShareCell::default())
    }

    /// Sets the share (`None`: none).
    pub fn set(&self, bps: Option<u64>) {
        debug_assert!(bps != Some(0), "a share of nothing cannot be told");
        self.0.store(bps.unwrap_or(0), Ordering::Relaxed);
    }

    /// The share now, if there is one.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            bps => Some(bps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_holds_the_newest_share_or_none() {
        let cell = RateShareCell::new();
        assert_eq!(cell.get(), None);
        cell.set(Some(200_000_000));
        cell.set(Some(300_000_000));
        assert_eq!(cell.get(), Some(300_000_000));
        cell.set(None);
        assert_eq!(cell.get(), None);
    }
}
