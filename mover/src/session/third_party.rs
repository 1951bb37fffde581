//! Third-party transfers on the daemons' side (`mover copy`, PROTOCOL.md §9): the receiving daemon mints a
//! one-time delegation for its authenticated controller (`Delegate`) and holds the delegated push to it
//! (`check_delegated`); the sending end (a daemon, or `serve --stdio` over SSH) pushes its source there
//! with the delegation as credentials, reporting progress and the end to the controller (`ThirdParty`).
//! The controller's side is `session::copy`.

use super::error::SessionError;
use super::pull_source::scan_pull_source;
use super::push::{push_with, PushOptions};
use super::report::{Direction, Report};
use super::stripe_status::StripeBook;
use crate::connect::{delegated_transfer, ClientAuth, Delegations, ServerAuth, DELEGATED_IDENTITY_PREFIX};
use crate::files::{RelPath, ScanOptions};
use crate::net::ControlChannel;
use crate::pipeline::live::Live;
use crate::wire::control::{transfer_state, ControlMsg, Secret, ThirdParty, TransferStatus};
use crate::wire::VERSION;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often the sending end tells the controller how far it got.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The receiving daemon's answer to `Delegate`: `dest` checked against the root (`dest_ok`), then a
/// delegation minted for `who` (none needed under `--insecure-no-auth`: the id alone).
pub(super) fn serve_delegate(
    ch: &mut ControlChannel,
    dest: &str,
    who: &str,
    auth: &ServerAuth,
    dest_ok: &dyn Fn(&str) -> Result<RelPath, SessionError>,
) -> Result<Report, SessionError> {
    if who.starts_with(DELEGATED_IDENTITY_PREFIX) {
        return Err(SessionError::NotAllowed("a delegated session cannot delegate again".into()));
    }
    // The same confinement a push into `dest` meets: refused now, not after the sending end has started.
    dest_ok(dest)?;
    let (transfer, user, token) = match auth.delegations() {
        Some(d) => {
            let (transfer, secret) = d.mint(who, dest).map_err(SessionError::NotAllowed)?;
            let user = format!("{}{transfer}", crate::connect::DELEGATE_USER_PREFIX);
            (transfer, user, secret)
        }
        None => {
            let id = crate::random::random_bytes::<16>()
                .map_err(|error| SessionError::Io { what: "getrandom for a transfer id", error })?;
            (crate::wire::stripe::transfer_name(u128::from_be_bytes(id)), String::new(), String::new())
        }
    };
    super::daemon_log::info(
        "delegation",
        &format!("delegated a push into '{dest}' to {who}'s sending end: transfer {transfer}"),
    );
    ch.send(&ControlMsg::Delegation { transfer, user, token: Secret(token) })
        .map_err(|error| SessionError::Io { what: "sending a delegation", error })?;
    let _ = ch.recv_timeout(Duration::from_secs(2));
    Ok(Report::new(Direction::Received, 0, Default::default(), Default::default()))
}

/// What a delegated session (identity `delegated:ID:...`) may do: one push into its grant's destination,
/// nothing else. `Ok(None)` for a session that is not delegated; `Ok(Some(id))` for an allowed push.
pub(super) fn check_delegated(
    who: &str,
    first: &ControlMsg,
    delegations: Option<&Arc<Delegations>>,
) -> Result<Option<String>, SessionError> {
    let Some(transfer) = delegated_transfer(who) else { return Ok(None) };
    let grant = delegations.and_then(|d| d.grant(transfer));
    let Some(grant) = grant else {
        return Err(SessionError::NotAllowed(format!("delegation '{transfer}' is not known here")));
    };
    match first {
        ControlMsg::Hello(h) if h.dest == grant.dest => Ok(Some(transfer.to_string())),
        ControlMsg::Hello(h) => Err(SessionError::NotAllowed(format!(
            "this delegation is for a push into '{}' only, not '{}'",
            grant.dest, h.dest
        ))),
        _ => Err(SessionError::NotAllowed("a delegated session may only push into its destination".into())),
    }
}

/// Records a delegated push's state in the daemon's transfer book, for `mover status ID`.
pub(super) fn note_delegated(book: &StripeBook, transfer: &str, result: &Result<Report, SessionError>) {
    let status = match result {
        Ok(r) => TransferStatus {
            state: transfer_state::DONE,
            files_done: r.files,
            files_total: r.files,
            bytes_done: r.bytes,
            bytes_total: r.bytes,
            message: String::new(),
        },
        Err(e) => TransferStatus { state: transfer_state::FAILED, message: e.to_string(), ..Default::default() },
    };
    book.update(transfer, status);
}

/// The sending end of a third-party copy: scans `t.source` beneath `root` (as for a pull: `rel`), pushes
/// it to `t.dest_url` with the delegation, and tells the controller how far it got and how it ended. A
/// controller that goes away changes nothing: the push runs to its end.
pub(super) fn serve_third_party(
    ch: &mut ControlChannel,
    t: ThirdParty,
    root: &Path,
    rel: &RelPath,
    live: Arc<Live>,
) -> Result<Report, SessionError> {
    if t.version != VERSION as u16 {
        return Err(SessionError::NotAllowed(format!(
            "protocol version {} is not supported (this server speaks {VERSION})",
            t.version
        )));
    }
    if t.rate_bps == 0 || t.min_rate_bps > t.rate_bps {
        return Err(SessionError::NotAllowed(format!(
            "rate {} with floor {} is not a valid request",
            t.rate_bps, t.min_rate_bps
        )));
    }
    // The receiving daemon's trust anchor is public; it is kept for the TLS set-up only. The delegation's
    // secret stays in memory.
    let ca_file = (!t.ca_pem.is_empty())
        .then(|| {
            let path = std::env::temp_dir().join(format!("mover-copy-{}.ca.pem", crate::random::random_u64()));
            std::fs::write(&path, &t.ca_pem).map(|_| path)
        })
        .transpose()
        .map_err(|error| SessionError::Io { what: "keeping the receiving daemon's CA", error })?;
    let auth = match &ca_file {
        Some(ca) => ClientAuth::tls(ca, None, &t.user, Some(&t.token.0)),
        None => Ok(ClientAuth::Insecure),
    };
    let mut opts = PushOptions::new(Vec::new(), t.dest_url.clone(), t.rate_bps);
    opts.policy = t.policy;
    opts.min_rate_bps = t.min_rate_bps;
    opts.mtu = (t.mtu != 0).then_some(t.mtu as usize);
    opts.window_bytes = (t.window_bytes != 0).then_some(t.window_bytes);
    opts.cipher = t.cipher;
    opts.options = t.options;
    opts.shard = t.shard;
    opts.live = live;
    let scan = ScanOptions { xattrs: t.options.xattrs, checksum: t.options.checksum, files_from: None };
    let report = match auth {
        Ok(auth) => {
            opts.auth = auth;
            let live = opts.live.clone();
            std::thread::scope(|s| {
                let pushing = s.spawn(|| {
                    push_with(&opts, &|| {
                        Ok(crate::files::keep_shard(scan_pull_source(root, rel, &scan)?, opts.shard, true))
                    })
                });
                // Progress until the push ends; sends that fail (the controller left) are not retried.
                let mut controller_here = true;
                let mut next = std::time::Instant::now();
                while !pushing.is_finished() {
                    std::thread::sleep(Duration::from_millis(20));
                    if controller_here && std::time::Instant::now() >= next {
                        next += PROGRESS_EVERY;
                        let l = live.snapshot();
                        let status = TransferStatus {
                            state: transfer_state::RUNNING,
                            files_done: l.files_done,
                            files_total: l.files_total,
                            bytes_done: l.bytes_done,
                            bytes_total: l.bytes_total,
                            message: String::new(),
                        };
                        controller_here = ch.send(&ControlMsg::StatusReply(status)).is_ok();
                    }
                }
                pushing.join().unwrap_or_else(|_| {
                    let mut r = Report::new(Direction::Sent, t.rate_bps, t.policy, t.cipher);
                    r.error = Some("the sending thread panicked".into());
                    r.exit_class = crate::exit::ExitClass::Failure;
                    r
                })
            })
        }
        Err(e) => {
            let e = SessionError::from(e);
            let mut r = Report::new(Direction::Sent, t.rate_bps, t.policy, t.cipher);
            r.error = Some(e.to_string());
            r.exit_class = e.exit_class();
            r
        }
    };
    if let Some(ca) = ca_file {
        let _ = std::fs::remove_file(ca);
    }
    let summary = match &report.error {
        Some(e) => e.clone(),
        None => report.summary_line(),
    };
    let done = ControlMsg::CopyDone { exit_code: report.exit_class.code(), json: report.to_json(), summary };
    if ch.send(&done).is_ok() {
        let _ = ch.recv_timeout(Duration::from_secs(2));
    }
    match &report.error {
        Some(e) => Err(SessionError::Transfer(format!("third-party push to {}: {e}", t.dest_url))),
        None => Ok(report),
    }
}
