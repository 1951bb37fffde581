//! One daemon connection's way to a running session (PROTOCOL.md §3.5): authentication by the handshake's
//! deadline while registered as authenticating (a newer connection at a full cap cuts the oldest), then a
//! place ([`Admission::request`]), waiting in the queue if need be while the client is sent its place, then
//! `Auth::Accepted`. Only then is the `Hello` or `Pull` read (TLS), so a queued session holds no manifest
//! and no data path.
//!
//! Under `--insecure-no-auth` there is no authentication exchange: the client sends its `Hello` or `Pull`
//! at once, so that first message is what "authenticating" waits for (idle connections are then cut like
//! unauthenticated ones), and it is read before queueing; the rest of the manifest stays unread until the
//! session runs. A queued client that goes away is seen on its socket (a peer's FIN or reset, polled
//! without reading), since reading the channel would consume its manifest.

use super::admission::{handshake_deadline, Admission, Progress, SessionSlot, MAX_HANDSHAKES_PER_ADDRESS};
use super::error::SessionError;
use crate::connect::{authenticate_client, send_accepted, Identity, ServerAuth};
use crate::net::{ControlChannel, DEADLINE_MISSED};
use crate::wire::control::ControlMsg;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a queued client hears its place even when it did not change (a keep-alive: the client's wait
/// for an answer restarts with each).
pub const QUEUED_KEEPALIVE: Duration = Duration::from_secs(5);
/// How often a queued session looks at its client's socket and its place.
const QUEUE_POLL: Duration = Duration::from_millis(200);

/// A session the daemon admitted: its channel, who it is, the first message if it was read before
/// admission, the deadline for the rest of the handshake, and its place (held until it ends).
pub(super) struct Admitted {
    pub ch: ControlChannel,
    pub who: Identity,
    pub first: Option<ControlMsg>,
    pub deadline: Instant,
    pub _slot: SessionSlot,
}

/// Authenticates and admits the session on an accepted connection; on failure, who it was if known.
pub(super) fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    auth: &ServerAuth,
    adm: &Arc<Admission>,
) -> Result<Admitted, (Option<Identity>, SessionError)> {
    let started = Instant::now();
    let mut deadline = started + handshake_deadline();
    let probe = stream.try_clone().map_err(|error| (None, SessionError::Io { what: "accepted connection", error }))?;
    let authenticating = adm.enter_handshake(peer.ip(), probe.try_clone().ok());
    let why = |e: String| {
        if authenticating.was_cut() {
            SessionError::NotAllowed(format!(
                "cut: the oldest connection still authenticating, to make room for a newer one (--max-handshakes, \
                     or {MAX_HANDSHAKES_PER_ADDRESS} from one address)"
            ))
        } else {
            if e.contains(DEADLINE_MISSED) || e.contains("TLS handshake: no answer within") {
                adm.note_cut_deadline();
            }
            SessionError::Protocol(e)
        }
    };
    let (mut ch, who) = authenticate_client(stream, auth, deadline).map_err(|e| (None, why(e.to_string())))?;
    let first = if auth.is_insecure() {
        Some(ch.expect_msg_by(deadline, "waiting for its hello").map_err(|e| (None, why(e)))?)
    } else {
        None
    };
    drop(authenticating);
    let mut ticket = match adm.request(&who) {
        Ok(t) => t,
        Err(busy) => {
            // The daemon's log gets the one line of run_session's error.
            let _ = ch.send(&ControlMsg::Error { message: busy.clone() });
            return Err((Some(who), SessionError::NotAllowed(busy)));
        }
    };
    let queued_at = Instant::now();
    let mut told: Option<((usize, usize), Instant)> = None;
    let slot = loop {
        let (position, waiting) = match ticket.wait(QUEUE_POLL) {
            Progress::Admitted(slot) => break slot,
            Progress::Waiting { position, waiting } => (position, waiting),
        };
        if told.is_none() {
            super::daemon_log::info("queued", &format!("{peer} ({who}): queued, place {position} of {waiting}"));
        }
        let due = told.is_none_or(|(place, at)| place != (position, waiting) || at.elapsed() >= QUEUED_KEEPALIVE);
        // Place 0 (out of the queue, not yet granted) cannot happen: both change under one lock. Never send a
        // place the client would reject.
        if due && position > 0 {
            let msg = ControlMsg::Queued { position: clamp(position), waiting: clamp(waiting) };
            if let Err(e) = ch.send(&msg) {
                return Err((Some(who), SessionError::ConnectionLost(format!("left the queue: {e}"))));
            }
            told = Some(((position, waiting), Instant::now()));
        }
        if peer_hung_up(&probe) {
            return Err((Some(who), SessionError::ConnectionLost("left the queue: the client closed".into())));
        }
    };
    if told.is_some() {
        // The wait was the daemon's doing: it does not count against the client's deadline.
        deadline += queued_at.elapsed();
        let waited = queued_at.elapsed().as_secs_f64();
        super::daemon_log::info("admitted", &format!("{peer} ({who}): admitted after {waited:.1} s in the queue"));
    }
    send_accepted(&mut ch, &who, auth).map_err(|e| (Some(who.clone()), e.into()))?;
    Ok(Admitted { ch, who, first, deadline, _slot: slot })
}

/// A queue place as the wire carries it (the queue is far smaller than `u32::MAX`).
fn clamp(n: usize) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

/// True once the peer has closed its side or reset the connection, seen without reading from it.
fn peer_hung_up(stream: &TcpStream) -> bool {
    let mut p = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // Safety: one valid pollfd, for a descriptor `stream` keeps open; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_closed_peer_is_seen_without_reading_what_it_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"unread bytes").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!peer_hung_up(&server), "data alone is not a hang-up");
        drop(client);
        let t = Instant::now();
        while !peer_hung_up(&server) {
            assert!(t.elapsed() < Duration::from_secs(5), "the close was never seen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
