//! `mover relay`: a daemon that holds sealed blocks of striped transfers (the Fast Send Protocol,
//! PROTOCOL.md §8.1) in a bounded spool, and serves each batch once to the receiver, then deletes it.
//!
//! A relay is `mover serve` with its root on the spool and these rules ([`RelaySpool`]):
//! - a push must name a transfer (`DEST` is 32 hex digits) and hold only directories and regular files:
//!   what a striped sender pushes is `b<batch>/<global block index>`, sealed blocks (wire::stripe) the
//!   relay cannot open, for it never learns the key;
//! - a push is refused while the spool cannot take its bytes ([`SPOOL_FULL`]); the sender takes that as
//!   back-pressure (it waits, or puts the batch elsewhere), never as a failed transfer;
//! - a pull must name one batch, `TRANSFER/b<batch>`; once the receiver has verified it (the pull's
//!   `Complete`), the batch is deleted.

use super::error::SessionError;
use crate::files::{Entry, EntryKind};
use crate::wire::stripe::{parse_batch_name, parse_transfer_name};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How a relay's refusal of a push for want of room starts: the sender matches it.
pub const SPOOL_FULL: &str = "the relay's spool is full";

/// The spool of a `mover relay`: its bound and the bytes running pushes have reserved. Clones share it.
#[derive(Clone, Debug)]
pub struct RelaySpool {
    /// `--spool-max`: bytes the spool may hold, stored and being stored.
    pub max_bytes: u64,
    reserved: Arc<Mutex<u64>>,
}

/// Bytes a running push reserved in the spool; given back when it drops (stored bytes are then counted on
/// disk).
#[derive(Debug)]
pub struct SpoolReservation {
    reserved: Arc<Mutex<u64>>,
    bytes: u64,
}

impl Drop for SpoolReservation {
    fn drop(&mut self) {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(self.bytes);
    }
}

impl RelaySpool {
    /// A spool of at most `max_bytes`.
    pub fn new(max_bytes: u64) -> RelaySpool {
        RelaySpool { max_bytes, reserved: Arc::new(Mutex::new(0)) }
    }

    /// Reserves `bytes` for a push into `root`, or refuses with [`SPOOL_FULL`] when what the spool holds
    /// (on disk, partials included) and what running pushes reserved leave no room for them.
    pub fn reserve(&self, root: &Path, bytes: u64) -> Result<SpoolReservation, SessionError> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let held = bytes_below(root);
        let used = held.saturating_add(*reserved);
        if used.saturating_add(bytes) > self.max_bytes {
            return Err(SessionError::NotAllowed(format!(
                "{SPOOL_FULL}: {} held or being stored, {} asked, --spool-max {}",
                crate::rate::format_bytes(used),
                crate::rate::format_bytes(bytes),
                crate::rate::format_bytes(self.max_bytes)
            )));
        }
        *reserved += bytes;
        Ok(SpoolReservation { reserved: self.reserved.clone(), bytes })
    }
}

/// A push's destination on a relay must be a transfer's directory.
pub fn check_push_dest(dest: &str) -> Result<(), SessionError> {
    if parse_transfer_name(dest).is_none() {
        return Err(SessionError::NotAllowed(format!(
            "this is a relay: it takes only striped transfers' blocks (a destination of 32 hex digits), not '{}'",
            dest.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// What a relay stores is directories and regular files only: no links, whatever the sender says.
pub fn check_entries(entries: &[Entry]) -> Result<(), SessionError> {
    match entries.iter().find(|e| !matches!(e.kind, EntryKind::File | EntryKind::Dir)) {
        None => Ok(()),
        Some(e) => Err(SessionError::NotAllowed(format!(
            "this is a relay: it stores sealed blocks, not links ('{}')",
            e.rel_path.chars().take(64).collect::<String>()
        ))),
    }
}

/// A pull from a relay names one batch of one transfer: `TRANSFER/b<batch>`.
pub fn check_pull_path(path: &str) -> Result<(), SessionError> {
    let ok = match path.split_once('/') {
        Some((t, b)) => parse_transfer_name(t).is_some() && parse_batch_name(b).is_some(),
        None => false,
    };
    if !ok {
        return Err(SessionError::NotAllowed(format!(
            "this is a relay: pull one batch of a transfer (TRANSFER/b<N>), not '{}'",
            path.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Who may do what on a relay: a receiver known by its fetch capability (`fetch:TRANSFER`) only pulls that
/// transfer's batches; with authentication on, only such receivers pull (a sender's token fetches nothing,
/// for a pull deletes what it fetched); without it (`--insecure-no-auth`), anyone may.
pub fn check_relay_client(
    who: &str,
    first: &crate::wire::control::ControlMsg,
    authenticated: bool,
) -> Result<(), SessionError> {
    use crate::wire::control::ControlMsg;
    let fetcher = who.strip_prefix("fetch:");
    match (first, fetcher) {
        (ControlMsg::Pull(p), Some(t)) if p.path.split('/').next() == Some(t) => Ok(()),
        (ControlMsg::Pull(_), Some(_)) => {
            Err(SessionError::NotAllowed("this fetch capability is for another transfer".into()))
        }
        (_, Some(_)) => Err(SessionError::NotAllowed("a fetch capability only fetches".into())),
        (ControlMsg::Pull(_), None) if authenticated => {
            Err(SessionError::NotAllowed("this is a relay: only a transfer's receiver fetches its blocks".into()))
        }
        _ => Ok(()),
    }
}

/// Deletes a batch the receiver has verified (`path` passed [`check_pull_path`]), and its transfer's
/// directory once empty.
pub fn delete_batch(root: &Path, path: &str) -> std::io::Result<()> {
    let batch: PathBuf = root.join(path);
    // The names were checked to be a hex directory and `b<digits>`, which the relay created itself; and
    // remove_dir_all does not follow symbolic links.
    std::fs::remove_dir_all(&batch)?;
    if let Some(transfer) = batch.parent() {
        // The transfer's directory goes once only its fetch capability is left; both fail while other
        // batches are there (or a push is creating one): that is fine, the last delivery removes it.
        let only_fetch = std::fs::read_dir(transfer)
            .map(|rd| rd.flatten().all(|e| e.file_name() == crate::connect::FETCH_FILE))
            .unwrap_or(false);
        if only_fetch {
            let _ = std::fs::remove_file(transfer.join(crate::connect::FETCH_FILE));
        }
        let _ = std::fs::remove_dir(transfer);
    }
    Ok(())
}

/// Bytes of the regular files below `dir` (not following links); what cannot be read counts nothing.
fn bytes_below(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_below(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn the_spool_refuses_what_does_not_fit_and_frees_on_drop() {
        let dir = TempDir::new("relay-spool");
        std::fs::create_dir_all(dir.path().join("t/b1")).unwrap();
        std::fs::write(dir.path().join("t/b1/0"), vec![0u8; 600]).unwrap();
        let spool = RelaySpool::new(1000);
        let a = spool.reserve(dir.path(), 300).expect("600 + 300 fit in 1000");
        let e = spool.reserve(dir.path(), 200).expect_err("600 + 300 + 200 do not");
        assert!(e.to_string().starts_with(SPOOL_FULL), "{e}");
        drop(a);
        spool.reserve(dir.path(), 400).expect("the reservation was given back");
    }

    #[test]
    fn a_fetch_capability_only_fetches_its_own_transfer() {
        use crate::wire::control::{ControlMsg, Pull};
        let t = "0123456789abcdef0123456789abcdef";
        let pull = |path: &str| {
            ControlMsg::Pull(Pull {
                version: 3,
                cipher: Default::default(),
                policy: Default::default(),
                mtu: 1500,
                rate_bps: 1,
                min_rate_bps: 0,
                window_bytes: 0,
                options: Default::default(),
                path: path.into(),
                shard: Default::default(),
            })
        };
        let mine = format!("fetch:{t}");
        check_relay_client(&mine, &pull(&format!("{t}/b1")), true).unwrap();
        assert!(check_relay_client(&mine, &pull("ffffffffffffffffffffffffffffffff/b1"), true).is_err());
        assert!(check_relay_client(&mine, &ControlMsg::StatusQuery { transfer: t.into() }, true).is_err());
        // A sender's token pushes but does not pull; without authentication anyone pulls.
        assert!(check_relay_client("user:alice", &pull(&format!("{t}/b1")), true).is_err());
        check_relay_client("ip:10.0.0.1", &pull(&format!("{t}/b1")), false).unwrap();
    }

    #[test]
    fn only_transfer_names_and_batches_pass() {
        let t = "0123456789abcdef0123456789abcdef";
        check_push_dest(t).unwrap();
        check_pull_path(&format!("{t}/b3")).unwrap();
        for bad in ["", "..", "data", "0123456789ABCDEF0123456789ABCDEF"] {
            assert!(check_push_dest(bad).is_err(), "{bad}");
        }
        for bad in [t.to_string(), format!("{t}/b3/0"), format!("{t}/../x"), format!("{t}/b03"), "x/b1".into()] {
            assert!(check_pull_path(&bad).is_err(), "{bad}");
        }
    }
}
