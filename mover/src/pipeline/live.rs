//! Counters of a running session that other threads read while it runs: the progress bar of `push` and
//! `pull`, and the daemon's metrics.
//!
//! The stage that owns the protocol core (the packetizer when sending, the reassembly stage when
//! receiving) publishes into one [`Live`] from its housekeeping step, at most every [`PUBLISH_INTERVAL`]:
//! relaxed stores of plain numbers, no lock and nothing per packet. Readers take a [`LiveSnapshot`].
//! The session layer sets the totals before data flows and the final counts when it ends, so a reader that
//! looks after the end sees the whole transfer done.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// How often the owning stage publishes at most.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(50);

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Scanning sources, connecting, sending or reading the manifest.
    #[default]
    Starting = 0,
    /// Data flows.
    Transferring = 1,
    /// Every file committed and verified.
    Done = 2,
    /// The session failed (it may be retried).
    Failed = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Transferring,
            2 => Phase::Done,
            3 => Phase::Failed,
            _ => Phase::Starting,
        }
    }

    /// Its name in JSON and logs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Transferring => "transferring",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }
}

/// The counters. Share it as `Arc<Live>`; every field is written by one thread at a time.
#[derive(Debug, Default)]
pub struct Live {
    phase: AtomicU8,
    /// Regular files in the transfer (skipped-as-current ones included: they count as done at once).
    pub files_total: AtomicU64,
    /// Bytes in them.
    pub bytes_total: AtomicU64,
    /// Files done: acknowledged in full (sending side) or committed (receiving side), skipped ones included.
    pub files_done: AtomicU64,
    /// Bytes done: acknowledged (sending) or delivered to files (receiving), held and skipped ones included.
    pub bytes_done: AtomicU64,
    /// Data packets sent (sending side).
    pub packets_sent: AtomicU64,
    /// Of those, retransmissions (sending side).
    pub packets_retransmitted: AtomicU64,
    /// Payload bytes sent, retransmissions included (sending side).
    pub payload_bytes_sent: AtomicU64,
    /// The rate the policy chose last, bits per second (sending side).
    pub rate_bps: AtomicU64,
    /// Smoothed round-trip time, microseconds (sending side).
    pub rtt_us: AtomicU64,
    /// The share of a daemon's rate cap the session keeps to, bits per second; 0 for none (PROTOCOL.md §3.7).
    /// Sending side: the last share the receiver told, or a daemon's own on a pull it serves; receiving
    /// side: the last share told to the sender.
    pub rate_share_bps: AtomicU64,
    /// Valid data packets received (receiving side).
    pub packets_received: AtomicU64,
    /// Duplicates received (receiving side).
    pub duplicates: AtomicU64,
    /// Datagrams dropped as damaged or foreign, authentication failures included (either side: feedback
    /// when sending).
    pub dropped_invalid: AtomicU64,
    /// Of those, datagrams that failed authentication.
    pub dropped_auth: AtomicU64,
    /// Datagrams refused by the replay window.
    pub dropped_replayed: AtomicU64,
}

/// One reading of a [`Live`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    /// Where the session is.
    pub phase: Phase,
    /// See [`Live::files_total`].
    pub files_total: u64,
    /// See [`Live::bytes_total`].
    pub bytes_total: u64,
    /// See [`Live::files_done`].
    pub files_done: u64,
    /// See [`Live::bytes_done`].
    pub bytes_done: u64,
    /// See [`Live::packets_sent`].
    pub packets_sent: u64,
    /// See [`Live::packets_retransmitted`].
    pub packets_retransmitted: u64,
    /// See [`Live::payload_bytes_sent`].
    pub payload_bytes_sent: u64,
    /// See [`Live::rate_bps`].
    pub rate_bps: u64,
    /// See [`Live::rtt_us`].
    pub rtt_us: u64,
    /// See [`Live::rate_share_bps`].
    pub rate_share_bps: u64,
    /// See [`Live::packets_received`].
    pub packets_received: u64,
    /// See [`Live::duplicates`].
    pub duplicates: u64,
    /// See [`Live::dropped_invalid`].
    pub dropped_invalid: u64,
    /// See [`Live::dropped_auth`].
    pub dropped_auth: u64,
    /// See [`Live::dropped_replayed`].
    pub dropped_replayed: u64,
}

impl LiveSnapshot {
    /// Retransmitted packets as a percentage of packets sent (0 before any).
    pub fn retransmitted_percent(&self) -> f64 {
        if self.packets_sent == 0 {
            0.0
        } else {
            self.packets_retransmitted as f64 * 100.0 / self.packets_sent as f64
        }
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Stores `v` (relaxed: each counter is a plain number, read on its own).
pub fn set(a: &AtomicU64, v: u64) {
    a.store(v, Ordering::Relaxed)
}

impl Live {
    /// Fresh counters, ready to share.
    pub fn new() -> std::sync::Arc<Live> {
        std::sync::Arc::new(Live::default())
    }

    /// Where the session is.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Moves the session to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed)
    }

    /// Sets the totals before data flows (and at each retry, which starts over from the receiver's plan).
    pub fn set_totals(&self, files: u64, bytes: u64) {
        set(&self.files_total, files);
        set(&self.bytes_total, bytes);
    }

    /// Sets the done counts; they never go back (a later round re-sends files that are already counted).
    pub fn set_done(&self, files: u64, bytes: u64) {
        self.files_done.fetch_max(files.min(get(&self.files_total)), Ordering::Relaxed);
        self.bytes_done.fetch_max(bytes.min(get(&self.bytes_total)), Ordering::Relaxed);
    }

    /// Marks everything done: the session verified every file.
    pub fn finish(&self) {
        set(&self.files_done, get(&self.files_total));
        set(&self.bytes_done, get(&self.bytes_total));
        self.set_phase(Phase::Done);
    }

    /// One reading of every counter.
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            phase: self.phase(),
            files_total: get(&self.files_total),
            bytes_total: get(&self.bytes_total),
            files_done: get(&self.files_done),
            bytes_done: get(&self.bytes_done),
            packets_sent: get(&self.packets_sent),
            packets_retransmitted: get(&self.packets_retransmitted),
            payload_bytes_sent: get(&self.payload_bytes_sent),
            rate_bps: get(&self.rate_bps),
            rtt_us: get(&self.rtt_us),
            rate_share_bps: get(&self.rate_share_bps),
            packets_received: get(&self.packets_received),
            duplicates: get(&self.duplicates),
            dropped_invalid: get(&self.dropped_invalid),
            dropped_auth: get(&self.dropped_auth),
            dropped_replayed: get(&self.dropped_replayed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_counts_never_go_back_and_stay_within_the_totals() {
        let live = Live::new();
        live.set_totals(3, 300);
        live.set_done(2, 250);
        live.set_done(1, 100);
        let s = live.snapshot();
        assert_eq!((s.files_done, s.bytes_done), (2, 250));
        live.set_done(9, 9_000);
        let s = live.snapshot();
        assert_eq!((s.files_done, s.bytes_done), (3, 300));
        assert_eq!(s.phase, Phase::Starting);
        live.finish();
        assert_eq!(live.snapshot().phase, Phase::Done);
    }

    #[test]
    fn retransmitted_share() {
        let s = LiveSnapshot { packets_sent: 200, packets_retransmitted: 3, ..LiveSnapshot::default() };
        assert!((s.retransmitted_percent() - 1.5).abs() < 1e-9);
        assert_eq!(LiveSnapshot::default().retransmitted_percent(), 0.0);
    }
}
