//! The daemon's sessions for its metrics: each running session (its id, peer, user, direction and the
//! [`Live`] counters its pipeline publishes), and the totals of the sessions that ended.
//!
//! A reading ([`SessionRegistry::snapshot`]) adds the running sessions' live counts to the ended ones',
//! under one lock with the hand-over at a session's end, so a total rises while a transfer runs and never
//! goes back when it ends.

use super::report::Direction;
use crate::pipeline::live::{Live, LiveSnapshot};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Counters since the daemon started: ended sessions' final counts plus running sessions' counts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes of files received (pushes).
    pub bytes_received: u64,
    /// Bytes of files sent (served pulls).
    pub bytes_sent: u64,
    /// Files received.
    pub files_received: u64,
    /// Files sent.
    pub files_sent: u64,
    /// Valid data packets received.
    pub packets_received: u64,
    /// Data packets sent, retransmissions included.
    pub packets_sent: u64,
    /// Of those, retransmissions.
    pub packets_retransmitted: u64,
    /// Datagrams dropped as damaged or foreign (authentication failures not included).
    pub dropped_invalid: u64,
    /// Datagrams that failed authentication.
    pub dropped_auth: u64,
    /// Datagrams refused by the replay window.
    pub dropped_replayed: u64,
    /// Duplicate data packets received.
    pub duplicates: u64,
    /// Sessions that ended with every file verified.
    pub sessions_ok: u64,
    /// Sessions that started (their first message was read) and failed.
    pub sessions_failed: u64,
    /// Connections refused before a session started: authentication, admission (a full queue).
    pub sessions_refused: u64,
}

impl Totals {
    /// Adds one session's counts (its direction says which side they were on).
    fn add(&mut self, direction: Direction, s: &LiveSnapshot) {
        match direction {
            Direction::Received => {
                self.bytes_received += s.bytes_done;
                self.files_received += s.files_done;
                self.packets_received += s.packets_received;
                self.duplicates += s.duplicates;
            }
            Direction::Sent => {
                self.bytes_sent += s.bytes_done;
                self.files_sent += s.files_done;
                self.packets_sent += s.packets_sent;
                self.packets_retransmitted += s.packets_retransmitted;
            }
        }
        // Live counts authentication failures among the invalid ones; the metric's causes do not overlap.
        self.dropped_invalid += s.dropped_invalid.saturating_sub(s.dropped_auth);
        self.dropped_auth += s.dropped_auth;
        self.dropped_replayed += s.dropped_replayed;
    }
}

/// A running session as a reading shows it.
#[derive(Clone, Debug)]
pub struct ActiveInfo {
    /// The daemon's number for it (1, 2, ...; the same in its log lines).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Who the client authenticated as.
    pub user: String,
    /// Which side of the data the daemon is on.
    pub direction: Direction,
    /// Its counters now.
    pub live: LiveSnapshot,
    /// Goodput over the last interval between readings (at least [`RATE_INTERVAL`]), bits per second;
    /// before the first such interval, since the session started.
    pub rate_bps: f64,
}

/// The shortest interval a session's rate is measured over.
pub const RATE_INTERVAL: Duration = Duration::from_secs(1);

/// One reading of the registry.
#[derive(Clone, Debug, Default)]
pub struct RegistrySnapshot {
    /// Totals since the daemon started, running sessions included.
    pub totals: Totals,
    /// The running sessions, by id.
    pub active: Vec<ActiveInfo>,
}

struct Active {
    peer: SocketAddr,
    user: String,
    direction: Direction,
    live: Arc<Live>,
    started: Instant,
    /// (when, bytes done, rate then): the last rate measurement.
    sample: (Instant, u64, f64),
}

#[derive(Default)]
struct Inner {
    ended: Totals,
    active: BTreeMap<u64, Active>,
}

/// The daemon's running and ended sessions; shared by every session thread and the metrics endpoint.
#[derive(Default)]
pub struct SessionRegistry {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    /// Striped transfers received, for `mover status`.
    pub stripes: super::stripe_status::StripeBook,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry").field("sessions", &self.next_id.load(Ordering::Relaxed)).finish()
    }
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Arc<SessionRegistry> {
        Arc::new(SessionRegistry::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session that starts now; it stays in the registry until [`RunningSession::end`] (or its
    /// drop, which counts as a failure).
    pub fn begin(self: &Arc<Self>, peer: SocketAddr, user: &str, direction: Direction) -> RunningSession {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let live = Live::new();
        let now = Instant::now();
        let entry =
            Active { peer, user: user.to_string(), direction, live: live.clone(), started: now, sample: (now, 0, 0.0) };
        self.lock().active.insert(id, entry);
        RunningSession { registry: self.clone(), id, live, started: now, ended: false }
    }

    /// Counts a connection refused before its session started.
    pub fn note_refused(&self) {
        self.lock().ended.sessions_refused += 1;
    }

    /// Counts a session that failed before its first message said which way it would go.
    pub fn note_failed(&self) {
        self.lock().ended.sessions_failed += 1;
    }

    /// The totals and the running sessions now.
    pub fn snapshot(&self) -> RegistrySnapshot {
        let mut inner = self.lock();
        let mut totals = inner.ended;
        let now = Instant::now();
        let mut active = Vec::with_capacity(inner.active.len());
        for (&id, a) in inner.active.iter_mut() {
            let live = a.live.snapshot();
            totals.add(a.direction, &live);
            let (at, bytes, rate) = a.sample;
            let rate_bps = if now.duration_since(at) >= RATE_INTERVAL {
                let r = live.bytes_done.saturating_sub(bytes) as f64 * 8.0 / now.duration_since(at).as_secs_f64();
                a.sample = (now, live.bytes_done, r);
                r
            } else if at == a.started {
                live.bytes_done as f64 * 8.0 / now.duration_since(a.started).as_secs_f64().max(1e-3)
            } else {
                rate
            };
            active.push(ActiveInfo { id, peer: a.peer, user: a.user.clone(), direction: a.direction, live, rate_bps });
        }
        RegistrySnapshot { totals, active }
    }
}

/// A session in the registry; [`RunningSession::end`] moves its counts to the totals.
pub struct RunningSession {
    registry: Arc<SessionRegistry>,
    /// The daemon's number for the session.
    pub id: u64,
    /// The counters its pipeline publishes into (give it as `ReceiveParams::live` or `SendParams::live`).
    pub live: Arc<Live>,
    /// When it started.
    pub started: Instant,
    ended: bool,
}

impl RunningSession {
    /// Ends the session: `ok` when every file was verified (its done counts are then its totals). Its final
    /// counts join the totals in the same step as it leaves the running set.
    pub fn end(mut self, ok: bool) {
        self.finish(ok);
    }

    fn finish(&mut self, ok: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if ok {
            self.live.finish();
        }
        let mut inner = self.registry.lock();
        if let Some(a) = inner.active.remove(&self.id) {
            inner.ended.add(a.direction, &a.live.snapshot());
        }
        if ok {
            inner.ended.sessions_ok += 1;
        } else {
            inner.ended.sessions_failed += 1;
        }
    }
}

impl Drop for RunningSession {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::live::set;

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn totals_rise_while_sessions_run_and_never_go_back_when_they_end() {
        let reg = SessionRegistry::new();
        let push = reg.begin(peer(), "alice", Direction::Received);
        let pull = reg.begin(peer(), "bob", Direction::Sent);
        assert_eq!((push.id, pull.id), (1, 2));
        push.live.set_totals(2, 1000);
        push.live.set_done(1, 400);
        set(&push.live.packets_received, 10);
        set(&push.live.dropped_invalid, 3);
        set(&push.live.dropped_auth, 1);
        pull.live.set_totals(1, 50);
        set(&pull.live.packets_sent, 7);
        set(&pull.live.packets_retransmitted, 2);
        let s = reg.snapshot();
        assert_eq!(s.active.len(), 2);
        assert_eq!((s.totals.bytes_received, s.totals.files_received, s.totals.packets_received), (400, 1, 10));
        assert_eq!((s.totals.dropped_invalid, s.totals.dropped_auth), (2, 1));
        assert_eq!((s.totals.packets_sent, s.totals.packets_retransmitted), (7, 2));
        push.end(true);
        let after = reg.snapshot().totals;
        assert_eq!((after.bytes_received, after.files_received, after.sessions_ok), (1000, 2, 1));
        drop(pull);
        let t = reg.snapshot();
        assert!(t.active.is_empty());
        assert_eq!((t.totals.sessions_failed, t.totals.packets_sent, t.totals.bytes_sent), (1, 7, 0));
        reg.note_refused();
        assert_eq!(reg.snapshot().totals.sessions_refused, 1);
    }
}
