//! One-time delegations for third-party transfers (`mover copy`, PROTOCOL.md §9): a receiving daemon mints
//! one for an authenticated controller and a destination; the sending end presents it as its credentials
//! (user `delegate-ID`, the secret as token) for one push into that destination.
//!
//! A delegation lives in the daemon's memory only (never on disk), holds only the SHA-256 of its secret,
//! expires unused after [`DELEGATION_TTL`], and is consumed by the first authentication that names it,
//! right or wrong: a replay, a second use or a guessed secret meets an unknown delegation.

use ring::digest::{digest, SHA256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How the sending end's user name starts: `delegate-` and the transfer's id.
pub const DELEGATE_USER_PREFIX: &str = "delegate-";
/// How the daemon knows a delegated session: `delegated:ID:` and the controller's identity.
pub const DELEGATED_IDENTITY_PREFIX: &str = "delegated:";
/// How long a delegation may wait for its push: the controller hands it over at once.
pub const DELEGATION_TTL: Duration = Duration::from_secs(120);
/// Most delegations waiting at once (more are refused until some are used or expire).
pub const MAX_PENDING: usize = 1024;
/// Redeemed delegations remembered (for the destination they bind), oldest forgotten first.
pub const MAX_REDEEMED: usize = 4096;

/// What a delegation allows: one push by the sending end, as the controller, into `dest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The transfer's id (32 hex digits).
    pub transfer: String,
    /// The controller's identity on this daemon (`user:NAME`, `cert:HEX`).
    pub controller: String,
    /// The destination directory the push must name.
    pub dest: String,
}

struct Pending {
    secret_sha256: [u8; 32],
    grant: Grant,
    expires: Instant,
}

#[derive(Default)]
struct Book {
    pending: HashMap<String, Pending>,
    redeemed: HashMap<String, Grant>,
    order: VecDeque<String>,
}

/// A daemon's delegations.
pub struct Delegations {
    book: Mutex<Book>,
    ttl: Duration,
}

impl Default for Delegations {
    fn default() -> Self {
        Delegations::with_ttl(DELEGATION_TTL)
    }
}

impl std::fmt::Debug for Delegations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delegations")
    }
}

fn sha256(s: &str) -> [u8; 32] {
    digest(&SHA256, s.as_bytes()).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Delegations {
    /// Delegations that expire unused after `ttl` (the daemon's: [`DELEGATION_TTL`]).
    pub fn with_ttl(ttl: Duration) -> Delegations {
        Delegations { book: Mutex::default(), ttl }
    }

    /// Mints a delegation for `controller` to have a push into `dest` made: the transfer id and the secret.
    pub fn mint(&self, controller: &str, dest: &str) -> Result<(String, String), String> {
        let now = Instant::now();
        let transfer = hex(&crate::random::random_bytes::<16>().map_err(|e| format!("getrandom: {e}"))?);
        let secret = hex(&crate::random::random_bytes::<32>().map_err(|e| format!("getrandom: {e}"))?);
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        b.pending.retain(|_, p| p.expires > now);
        if b.pending.len() >= MAX_PENDING {
            return Err(format!("{MAX_PENDING} delegations are waiting to be used; try again shortly"));
        }
        let grant = Grant { transfer: transfer.clone(), controller: controller.into(), dest: dest.into() };
        b.pending.insert(transfer.clone(), Pending { secret_sha256: sha256(&secret), grant, expires: now + self.ttl });
        Ok((transfer, secret))
    }

    /// Uses up delegation `transfer` with `secret`: the grant if both match and it has not expired. Any
    /// attempt consumes it.
    pub fn redeem(&self, transfer: &str, secret: &str) -> Option<Grant> {
        let mut b = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let p = b.pending.remove(transfer)?;
        // Compared in full, without an early exit.
        let matches = p.secret_sha256.iter().zip(sha256(secret)).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !matches || p.expires <= Instant::now() {
            return None;
        }
        b.redeemed.insert(transfer.to_string(), p.grant.clone());
        b.order.push_back(transfer.to_string());
        while b.order.len() > MAX_REDEEMED {
            if let Some(old) = b.order.pop_front() {
                b.redeemed.remove(&old);
            }
        }
        Some(p.grant)
    }

    /// The grant of a redeemed delegation.
    pub fn grant(&self, transfer: &str) -> Option<Grant> {
        self.book.lock().unwrap_or_else(|e| e.into_inner()).redeemed.get(transfer).cloned()
    }
}

/// The transfer id of a delegated session's identity (`delegated:ID:...`).
pub fn delegated_transfer(identity: &str) -> Option<&str> {
    identity.strip_prefix(DELEGATED_IDENTITY_PREFIX)?.split(':').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delegation_works_once_with_its_secret_only() {
        let d = Delegations::default();
        let (id, secret) = d.mint("user:alice", "in/run7").unwrap();
        assert_eq!(id.len(), 32);
        // A wrong secret consumes it: the right one then fails too.
        let (id2, secret2) = d.mint("user:alice", "in").unwrap();
        assert_eq!(d.redeem(&id2, &format!("{secret2}x")), None);
        assert_eq!(d.redeem(&id2, &secret2), None);
        let g = d.redeem(&id, &secret).expect("first use");
        assert_eq!((g.controller.as_str(), g.dest.as_str()), ("user:alice", "in/run7"));
        assert_eq!(d.redeem(&id, &secret), None, "a second use");
        assert_eq!(d.grant(&id), Some(g));
        assert_eq!(d.redeem("0123", &secret), None, "an unknown id");
        assert_eq!(delegated_transfer(&format!("delegated:{id}:user:alice")), Some(id.as_str()));
        assert_eq!(delegated_transfer("user:alice"), None);
    }

    #[test]
    fn an_unused_delegation_expires() {
        let d = Delegations::with_ttl(Duration::from_millis(20));
        let (id, secret) = d.mint("user:alice", "in").unwrap();
        d.mint("user:alice", "in").unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(d.redeem(&id, &secret), None, "redeemed after its time");
        // The other expired one is swept at the next mint, so it does not count against MAX_PENDING.
        d.mint("user:alice", "in").unwrap();
        assert_eq!(d.book.lock().unwrap().pending.len(), 1);
    }
}
