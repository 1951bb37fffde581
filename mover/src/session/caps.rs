//! How many sessions one client may hold at once (`--max-sessions-per-client`), and how many connections
//! from one address may be authenticating: the daemon's guard against a client that piles up threads.

use super::error::SessionError;
use crate::connect::Identity;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most connections from one IP address that may be in the TLS handshake or before their credentials at
/// once: a host cannot pile up session threads that wait out [`crate::connect::AUTH_TIMEOUT`]. Legitimate clients never
/// come near it; a refused connection is closed at once.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 32;

/// Concurrent sessions per client identity, capped (`--max-sessions-per-client`), and connections still
/// authenticating per address ([`MAX_HANDSHAKES_PER_ADDRESS`]).
#[derive(Debug)]
pub struct SessionCaps {
    max: usize,
    live: Mutex<HashMap<Identity, usize>>,
}

/// One live session; dropping it frees its place.
#[derive(Debug)]
pub struct SessionSlot {
    caps: Arc<SessionCaps>,
    who: Identity,
}

impl SessionCaps {
    /// At most `max` sessions per identity.
    pub fn new(max: usize) -> Arc<SessionCaps> {
        assert!(max > 0, "a cap of 0 sessions refuses everyone");
        Arc::new(SessionCaps { max, live: Mutex::new(HashMap::new()) })
    }

    /// Takes a place for `who`, or says why there is none.
    pub fn enter(self: &Arc<Self>, who: &Identity) -> Result<SessionSlot, SessionError> {
        self.enter_with(who, self.max).map_err(|max| {
            SessionError::NotAllowed(format!(
                "too many concurrent sessions for {who}: the limit is {max} (--max-sessions-per-client)"
            ))
        })
    }

    /// Takes a place for one more connection from `ip` that is still authenticating.
    pub fn enter_handshake(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<SessionSlot, SessionError> {
        let who = Identity(format!("handshake:{ip}"));
        self.enter_with(&who, MAX_HANDSHAKES_PER_ADDRESS).map_err(|max| {
            SessionError::NotAllowed(format!("more than {max} connections from {ip} are authenticating at once"))
        })
    }

    fn enter_with(self: &Arc<Self>, who: &Identity, max: usize) -> Result<SessionSlot, usize> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let n = live.entry(who.clone()).or_insert(0);
        if *n >= max {
            return Err(max);
        }
        *n += 1;
        Ok(SessionSlot { caps: self.clone(), who: who.clone() })
    }

    /// Live sessions of `who`.
    pub fn live(&self, who: &Identity) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).get(who).copied().unwrap_or(0)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut live = self.caps.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = live.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_capped_per_address_apart_from_sessions() {
        let caps = SessionCaps::new(1);
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_HANDSHAKES_PER_ADDRESS).map(|_| caps.enter_handshake(ip).unwrap()).collect();
        let e = caps.enter_handshake(ip).unwrap_err().to_string();
        assert!(e.contains("192.0.2.1 are authenticating"), "{e}");
        assert!(caps.enter_handshake("192.0.2.2".parse().unwrap()).is_ok());
        let _session = caps.enter(&Identity("ip:192.0.2.1".into())).unwrap();
        drop(held);
        assert!(caps.enter_handshake(ip).is_ok());
    }

    #[test]
    fn session_caps_count_per_identity_and_free_on_drop() {
        let caps = SessionCaps::new(2);
        let a = Identity("user:a".into());
        let b = Identity("user:b".into());
        let s1 = caps.enter(&a).unwrap();
        let _s2 = caps.enter(&a).unwrap();
        let e = caps.enter(&a).unwrap_err().to_string();
        assert!(e.contains("too many concurrent sessions for user:a") && e.contains("limit is 2"), "{e}");
        let _s3 = caps.enter(&b).unwrap();
        drop(s1);
        assert_eq!(caps.live(&a), 1);
        let _s4 = caps.enter(&a).unwrap();
    }
}
