//! Who the daemon serves, and in what order: a daemon-wide session cap (`--max-sessions`), a per-client
//! cap (`--max-sessions-per-client`), a bounded FIFO queue of sessions waiting for a place (`--max-queue`;
//! only a full queue refuses), and a registry of connections still authenticating, capped daemon-wide
//! (`--max-handshakes`) and per address ([`MAX_HANDSHAKES_PER_ADDRESS`]), where a new connection at a full
//! cap cuts the oldest instead of being refused: idle connections cannot lock real clients out.
//!
//! Pure bookkeeping under one mutex (no I/O but the `shutdown` of a cut connection), so the fairness rules
//! are unit-tested here; `admit.rs` drives it over a control channel.

use crate::connect::Identity;
use crate::wire::control::SERVER_BUSY;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most connections from one IP address that may be authenticating at once; a new one beyond it cuts the
/// oldest of that address.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 32;
/// Default `--max-sessions`: sessions running at once in the whole daemon.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default `--max-queue`: sessions waiting for a place; one more is refused as busy.
pub const DEFAULT_MAX_QUEUE: usize = 256;
/// Default `--max-handshakes`: connections authenticating at once in the whole daemon.
pub const DEFAULT_MAX_HANDSHAKES: usize = 128;
/// The whole handshake's deadline: TLS, credentials and the first message (`Hello` or `Pull`) must all
/// arrive within it of the connection's accept (time spent in the queue not counted).
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(30);
/// A test knob, not a flag: `MOVER_HANDSHAKE_DEADLINE_SECS=N` shortens [`HANDSHAKE_DEADLINE`] so that a
/// slow-client test runs in seconds.
pub const HANDSHAKE_DEADLINE_ENV: &str = "MOVER_HANDSHAKE_DEADLINE_SECS";
/// Manifest entries a client must send per second on top of [`HANDSHAKE_DEADLINE`].
pub const MANIFEST_ENTRIES_PER_SECOND: u64 = 10_000;

/// [`HANDSHAKE_DEADLINE`], or what [`HANDSHAKE_DEADLINE_ENV`] says.
pub fn handshake_deadline() -> Duration {
    std::env::var(HANDSHAKE_DEADLINE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(HANDSHAKE_DEADLINE, Duration::from_secs)
}

/// When a manifest of `entries` announced entries must have arrived, counted from now: the handshake's
/// deadline plus one second per [`MANIFEST_ENTRIES_PER_SECOND`] entries.
pub fn manifest_deadline(entries: u64) -> Instant {
    Instant::now() + handshake_deadline() + Duration::from_secs(entries / MANIFEST_ENTRIES_PER_SECOND)
}

/// The daemon's admission limits (`--max-sessions`, `--max-queue`, `--max-handshakes`; the per-client cap is
/// [`super::Limits::max_sessions_per_client`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Sessions running at once, daemon-wide.
    pub max_sessions: usize,
    /// Sessions waiting for a place; one more is refused as busy.
    pub max_queue: usize,
    /// Connections authenticating at once, daemon-wide; one more cuts the oldest.
    pub max_handshakes: usize,
}

impl Default for AdmissionLimits {
    fn default() -> AdmissionLimits {
        AdmissionLimits {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_queue: DEFAULT_MAX_QUEUE,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }
}

/// What admission is doing, for metrics (issue 17) and logs: gauges now, counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Sessions running (admitted and not ended).
    pub active: usize,
    /// Sessions waiting in the queue.
    pub waiting: usize,
    /// Connections still authenticating.
    pub handshaking: usize,
    /// Sessions admitted since start.
    pub admitted: u64,
    /// Sessions that had to wait in the queue since start.
    pub queued: u64,
    /// Sessions refused because the queue was full.
    pub refused_busy: u64,
    /// Queued sessions whose client went away before their turn.
    pub left_queue: u64,
    /// Authenticating connections cut to make room for a newer one.
    pub cut_idle: u64,
    /// Connections cut because their handshake missed its deadline.
    pub cut_deadline: u64,
}

/// The daemon's admission state; shared by every session thread.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    max_per_client: usize,
    state: Mutex<State>,
    /// Signalled whenever a waiting session was granted a place.
    granted: Condvar,
}

#[derive(Debug, Default)]
struct State {
    active: usize,
    per_client: HashMap<Identity, usize>,
    queue: VecDeque<Waiter>,
    /// Tickets promoted out of the queue whose thread has not yet claimed the place (already counted in
    /// `active` and `per_client`).
    granted: HashSet<u64>,
    /// Oldest first.
    handshakes: VecDeque<Handshake>,
    next_id: u64,
    stats: AdmissionStats,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    who: Identity,
}

#[derive(Debug)]
struct Handshake {
    id: u64,
    ip: IpAddr,
    /// A clone of the connection, shut down to cut it.
    stream: Option<TcpStream>,
    cut: Arc<AtomicBool>,
}

/// A connection in the handshake registry; dropping it (authenticated or failed) leaves the registry.
#[derive(Debug)]
pub struct Handshaking {
    admission: Arc<Admission>,
    id: u64,
    cut: Arc<AtomicBool>,
}

/// A session's request for a place: queued, or already granted; dropping it unclaimed leaves the queue (or
/// gives the place back).
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    who: Identity,
    claimed: bool,
}

/// A running session's place; dropping it frees the place for the next waiting session that may run.
#[derive(Debug)]
pub struct SessionSlot {
    admission: Arc<Admission>,
    who: Identity,
}

/// Where a ticket stands.
#[derive(Debug)]
pub enum Progress {
    /// The session may run.
    Admitted(SessionSlot),
    /// Still waiting: 1-based `position` among `waiting`.
    Waiting {
        /// 1 runs next (once a place frees that its client's cap allows).
        position: usize,
        /// Sessions waiting in all.
        waiting: usize,
    },
}

impl Admission {
    /// Admission with `limits` and at most `max_per_client` sessions per client identity.
    pub fn new(limits: &AdmissionLimits, max_per_client: usize) -> Arc<Admission> {
        assert!(limits.max_sessions > 0 && max_per_client > 0, "a cap of 0 sessions refuses everyone");
        assert!(limits.max_handshakes > 0, "a cap of 0 handshakes refuses everyone");
        Arc::new(Admission {
            limits: limits.clone(),
            max_per_client,
            state: Mutex::new(State::default()),
            granted: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The numbers now.
    pub fn stats(&self) -> AdmissionStats {
        let s = self.lock();
        AdmissionStats { active: s.active, waiting: s.queue.len(), handshaking: s.handshakes.len(), ..s.stats }
    }

    /// Counts a connection cut at its handshake's deadline.
    pub fn note_cut_deadline(&self) {
        self.lock().stats.cut_deadline += 1;
    }

    /// Registers a connection from `ip` that starts authenticating; `stream` (a clone) is shut down if it
    /// is cut. At a full cap (per address, then daemon-wide) the oldest such connection is cut, never the
    /// new one: a flood of idle connections then only cuts itself, and a real client gets its turn.
    pub fn enter_handshake(self: &Arc<Self>, ip: IpAddr, stream: Option<TcpStream>) -> Handshaking {
        let mut s = self.lock();
        if s.handshakes.iter().filter(|h| h.ip == ip).count() >= MAX_HANDSHAKES_PER_ADDRESS {
            let oldest = s.handshakes.iter().position(|h| h.ip == ip).expect("counted above");
            cut(&mut s, oldest);
        }
        if s.handshakes.len() >= self.limits.max_handshakes {
            cut(&mut s, 0);
        }
        s.next_id += 1;
        let id = s.next_id;
        let flag = Arc::new(AtomicBool::new(false));
        s.handshakes.push_back(Handshake { id, ip, stream, cut: flag.clone() });
        Handshaking { admission: self.clone(), id, cut: flag }
    }

    /// Asks for a place for a session of `who`: granted at once if the caps allow (no waiting session may
    /// run, or it would have been granted already), else queued; refused only when the queue is full, with
    /// the line for the client.
    pub fn request(self: &Arc<Self>, who: &Identity) -> Result<Ticket, String> {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        if self.may_run(&s, who) {
            grant(&mut s, id, who);
        } else if s.queue.len() >= self.limits.max_queue {
            s.stats.refused_busy += 1;
            return Err(format!(
                "{SERVER_BUSY}: {} sessions running, {} waiting (--max-queue); try again later",
                s.active,
                s.queue.len()
            ));
        } else {
            s.queue.push_back(Waiter { id, who: who.clone() });
            s.stats.queued += 1;
        }
        Ok(Ticket { admission: self.clone(), id, who: who.clone(), claimed: false })
    }

    fn may_run(&self, s: &State, who: &Identity) -> bool {
        s.active < self.limits.max_sessions && s.per_client.get(who).copied().unwrap_or(0) < self.max_per_client
    }

    /// Grants places to waiting sessions, first come first served among those whose client's cap allows.
    fn promote(&self, s: &mut State) {
        let mut i = 0;
        while i < s.queue.len() && s.active < self.limits.max_sessions {
            if self.may_run(s, &s.queue[i].who) {
                let w = s.queue.remove(i).expect("index in range");
                grant(s, w.id, &w.who);
            } else {
                i += 1;
            }
        }
        self.granted.notify_all();
    }

    fn release(&self, s: &mut State, who: &Identity) {
        s.active -= 1;
        if let Some(n) = s.per_client.get_mut(who) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(who);
            }
        }
        self.promote(s);
    }
}

fn grant(s: &mut State, id: u64, who: &Identity) {
    s.active += 1;
    *s.per_client.entry(who.clone()).or_insert(0) += 1;
    s.granted.insert(id);
    s.stats.admitted += 1;
}

fn cut(s: &mut State, index: usize) {
    if let Some(h) = s.handshakes.remove(index) {
        h.cut.store(true, Ordering::Relaxed);
        if let Some(stream) = h.stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
        s.stats.cut_idle += 1;
    }
}

impl Handshaking {
    /// True if this connection was cut to make room for a newer one.
    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        if let Some(i) = s.handshakes.iter().position(|h| h.id == self.id) {
            s.handshakes.remove(i);
        }
    }
}

impl Ticket {
    /// Waits up to `timeout` for the place; `Admitted` once granted (then the ticket is spent).
    pub fn wait(&mut self, timeout: Duration) -> Progress {
        let until = Instant::now() + timeout;
        let mut s = self.admission.lock();
        loop {
            if !self.claimed && s.granted.remove(&self.id) {
                self.claimed = true;
                return Progress::Admitted(SessionSlot { admission: self.admission.clone(), who: self.who.clone() });
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let place = s.queue.iter().position(|w| w.id == self.id);
                return Progress::Waiting { position: place.map_or(0, |p| p + 1), waiting: s.queue.len() };
            }
            s = self.admission.granted.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.claimed {
            return;
        }
        let mut s = self.admission.lock();
        if s.granted.remove(&self.id) {
            // Granted but never claimed (the client went away meanwhile): the place goes to the next.
            self.admission.release(&mut s, &self.who);
        } else if let Some(i) = s.queue.iter().position(|w| w.id == self.id) {
            s.queue.remove(i);
            s.stats.left_queue += 1;
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        self.admission.release(&mut s, &self.who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    fn admission(max_sessions: usize, max_queue: usize, per_client: usize) -> Arc<Admission> {
        Admission::new(&AdmissionLimits { max_sessions, max_queue, max_handshakes: 4 }, per_client)
    }

    fn id(s: &str) -> Identity {
        Identity(s.into())
    }

    fn admitted(t: &mut Ticket) -> SessionSlot {
        match t.wait(NOW) {
            Progress::Admitted(slot) => slot,
            other => panic!("expected a place, got {other:?}"),
        }
    }

    fn place(t: &mut Ticket) -> (usize, usize) {
        match t.wait(NOW) {
            Progress::Waiting { position, waiting } => (position, waiting),
            Progress::Admitted(_) => panic!("admitted too early"),
        }
    }

    #[test]
    fn first_come_first_served_beyond_the_daemon_cap() {
        let adm = admission(2, 8, 8);
        let (a, b, c) = (id("user:a"), id("user:b"), id("user:c"));
        let s1 = admitted(&mut adm.request(&a).unwrap());
        let _s2 = admitted(&mut adm.request(&b).unwrap());
        let mut t3 = adm.request(&c).unwrap();
        let mut t4 = adm.request(&a).unwrap();
        assert_eq!((place(&mut t3), place(&mut t4)), ((1, 2), (2, 2)));
        let st = adm.stats();
        assert_eq!((st.active, st.waiting, st.queued, st.admitted), (2, 2, 2, 2));
        drop(s1);
        let _s3 = admitted(&mut t3);
        assert_eq!(place(&mut t4), (1, 1), "the second waiter moves up, still waiting");
    }

    #[test]
    fn a_client_at_its_cap_does_not_block_others_behind_it() {
        let adm = admission(3, 8, 1);
        let (a, b) = (id("ip:192.0.2.1"), id("ip:192.0.2.2"));
        let a1 = admitted(&mut adm.request(&a).unwrap());
        let mut a2 = adm.request(&a).unwrap();
        assert_eq!(place(&mut a2), (1, 1));
        // b is behind a2 in time but may run: a's cap holds a2, not the daemon's.
        let _b1 = admitted(&mut adm.request(&b).unwrap());
        let mut b2 = adm.request(&b).unwrap();
        assert_eq!((place(&mut a2), place(&mut b2)), ((1, 2), (2, 2)));
        drop(a1);
        let _a2 = admitted(&mut a2);
        assert_eq!(place(&mut b2), (1, 1));
    }

    #[test]
    fn a_full_queue_refuses_with_the_numbers_and_the_flag() {
        let adm = admission(1, 1, 8);
        let _s1 = admitted(&mut adm.request(&id("a")).unwrap());
        let _t2 = adm.request(&id("b")).unwrap();
        let e = adm.request(&id("c")).unwrap_err();
        assert_eq!(e, "the server is busy: 1 sessions running, 1 waiting (--max-queue); try again later");
        assert_eq!(adm.stats().refused_busy, 1);
    }

    #[test]
    fn a_waiter_that_leaves_frees_its_place_in_the_queue() {
        let adm = admission(1, 2, 8);
        let s1 = admitted(&mut adm.request(&id("a")).unwrap());
        let t2 = adm.request(&id("b")).unwrap();
        let mut t3 = adm.request(&id("c")).unwrap();
        assert_eq!(place(&mut t3), (2, 2));
        drop(t2);
        assert_eq!(place(&mut t3), (1, 1));
        assert_eq!(adm.stats().left_queue, 1);
        // A queue place freed: a new session queues instead of being refused.
        let _t4 = adm.request(&id("d")).unwrap();
        drop(s1);
        let _s3 = admitted(&mut t3);
    }

    #[test]
    fn a_place_granted_but_never_claimed_goes_to_the_next() {
        let adm = admission(1, 4, 8);
        let s1 = admitted(&mut adm.request(&id("a")).unwrap());
        let t2 = adm.request(&id("b")).unwrap();
        let mut t3 = adm.request(&id("c")).unwrap();
        drop(s1); // t2 is granted ...
        drop(t2); // ... but its client left before it looked.
        let _s3 = admitted(&mut t3);
        assert_eq!(adm.stats().active, 1);
    }

    #[test]
    fn a_waiting_thread_wakes_when_its_place_is_granted() {
        let adm = admission(1, 4, 8);
        let s1 = admitted(&mut adm.request(&id("a")).unwrap());
        let mut t2 = adm.request(&id("b")).unwrap();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let got = matches!(t2.wait(Duration::from_secs(10)), Progress::Admitted(_));
            (got, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(s1);
        let (got, took) = waiter.join().unwrap();
        assert!(got && took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn the_oldest_handshake_is_cut_per_address_and_daemon_wide() {
        let adm = admission(1, 1, 1);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let same: Vec<_> = (0..MAX_HANDSHAKES_PER_ADDRESS).map(|_| adm.enter_handshake(ip(1), None)).collect();
        assert_eq!(adm.stats().handshaking, 4, "the daemon-wide cap of 4 cut the older ones");
        let cut = same.iter().filter(|h| h.was_cut()).count();
        assert_eq!(cut, MAX_HANDSHAKES_PER_ADDRESS - 4);
        assert!(!same.last().unwrap().was_cut(), "the newest is never cut");
        let other = adm.enter_handshake(ip(2), None);
        assert!(!other.was_cut());
        assert!(same[MAX_HANDSHAKES_PER_ADDRESS - 4].was_cut(), "the oldest live one went");
        assert_eq!(adm.stats().cut_idle as usize, MAX_HANDSHAKES_PER_ADDRESS - 3);
        drop(same);
        assert_eq!(adm.stats().handshaking, 1);
    }

    #[test]
    fn a_full_address_cuts_its_own_oldest_not_another_address() {
        let adm = Admission::new(&AdmissionLimits { max_handshakes: 1000, ..AdmissionLimits::default() }, 8);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let other = adm.enter_handshake(ip(9), None);
        let flood: Vec<_> = (0..MAX_HANDSHAKES_PER_ADDRESS + 5).map(|_| adm.enter_handshake(ip(1), None)).collect();
        assert!(!other.was_cut());
        assert_eq!(flood.iter().filter(|h| h.was_cut()).count(), 5);
        assert!(flood[..5].iter().all(Handshaking::was_cut), "the oldest five");
    }

    #[test]
    fn cutting_shuts_the_connection_down() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let adm = Admission::new(&AdmissionLimits { max_handshakes: 1, ..AdmissionLimits::default() }, 8);
        let old = adm.enter_handshake(IpAddr::from([127, 0, 0, 1]), Some(server.try_clone().unwrap()));
        let _new = adm.enter_handshake(IpAddr::from([127, 0, 0, 2]), None);
        assert!(old.was_cut());
        let mut buf = [0u8; 1];
        use std::io::Read;
        assert_eq!((&client).read(&mut buf).unwrap(), 0, "the client sees the end of the connection");
    }

    #[test]
    fn the_deadline_knob_and_the_manifest_allowance() {
        assert_eq!(HANDSHAKE_DEADLINE, Duration::from_secs(30));
        let d = manifest_deadline(2_000_000).saturating_duration_since(Instant::now());
        assert!(d > Duration::from_secs(200), "{d:?}");
    }
}
