//! `mover copy` between two remote ends, as the controller (PROTOCOL.md §9): it authenticates to the
//! receiving daemon and asks it for a one-time delegation (`Delegate`), then to the sending end (a daemon,
//! or `serve --stdio` over SSH) and hands it the delegation with what to push (`ThirdParty`); it relays the
//! sending end's progress and final report. File data never passes through it: it flows from the sending
//! end to the receiving daemon directly. The daemons' side is `session::third_party`.

use super::error::SessionError;
use super::push::PushOptions;
use crate::connect::{start_client, ClientAuth, ConnectError, Location, MoverUrl, SshLink};
use crate::net::ControlChannel;
use crate::pipeline::live::Phase;
use crate::wire::control::{transfer_state, ControlMsg, ThirdParty};
use crate::wire::VERSION;
use std::time::Duration;

/// The sending end reports at least every half second; this long without a word, it is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(120);

/// What `mover copy SRC DEST` with two remote ends was asked to do.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// The sending end: `mover://HOST[:PORT]/PATH` or `[user@]host:PATH`.
    pub source: String,
    /// The push the sending end is to run: `url` is the receiving daemon (`mover://HOST[:PORT]/DIR`), the
    /// rate, policy, cipher and transfer options are handed over as they are; `auth` is how this controller
    /// authenticates to both daemons, `ssh` how it reaches an SSH source, `live` the progress the sending
    /// end reports. Its `sources` are not used.
    pub push: PushOptions,
}

/// How a third-party copy ended, as the sending end reported it.
#[derive(Clone, Debug)]
pub struct CopyOutcome {
    /// The transfer's id (`mover status ID --server DEST`).
    pub transfer: String,
    /// The exit code the sending end's push had.
    pub exit_code: u8,
    /// Its `--json` report.
    pub json: String,
    /// Its summary line, or the error.
    pub summary: String,
}

fn connect(url: &MoverUrl, auth: &ClientAuth, timeout: Duration) -> Result<ControlChannel, SessionError> {
    let addr = url.socket_addr()?;
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|error| ConnectError::Connect { target: format!("{}:{}", url.host, url.port), error })?;
    Ok(start_client(stream, &url.host, auth, timeout)?)
}

fn send(ch: &mut ControlChannel, m: &ControlMsg) -> Result<(), SessionError> {
    ch.send(m).map_err(|e| SessionError::lost(format!("sending to {}: {e}", ch.peer_addr())))
}

/// Runs a third-party copy; `on_transfer` is told the transfer's id as soon as the delegation is minted
/// (before any data moves), so a controller that is stopped can still be asked about.
pub fn copy_third_party(opts: &CopyOptions, on_transfer: &dyn Fn(&str)) -> Result<CopyOutcome, SessionError> {
    let dest = match Location::parse(&opts.push.url)? {
        Location::Daemon(url) => url,
        _ => {
            return Err(ConnectError::BadAddress(format!(
                "the receiving end of a copy between two remote ends must be a mover daemon (mover://HOST[:PORT]/DIR), \
                 not '{}'",
                opts.push.url
            ))
            .into())
        }
    };
    opts.push.live.set_phase(Phase::Starting);
    // The delegation first: a refused destination fails before the sending end is bothered.
    let mut rx = connect(&dest, &opts.push.auth, opts.push.connect_timeout)?;
    send(&mut rx, &ControlMsg::Delegate { dest: dest.path.clone() })?;
    let (transfer, user, token) = loop {
        match rx.expect_msg(opts.push.connect_timeout.max(Duration::from_secs(30)), "waiting for the delegation") {
            Ok(ControlMsg::Delegation { transfer, user, token }) => break (transfer, user, token),
            Ok(ControlMsg::Queued { .. }) => continue,
            Ok(ControlMsg::Error { message }) => return Err(SessionError::Refused { who: "server", message }),
            Ok(other) => return Err(SessionError::Protocol(format!("unexpected answer to a delegation: {other:?}"))),
            Err(e) => return Err(SessionError::lost(e)),
        }
    };
    drop(rx);
    on_transfer(&transfer);
    let ca_pem = match opts.push.auth.ca_file() {
        Some(ca) => std::fs::read_to_string(ca)
            .map_err(|error| SessionError::Io { what: "reading --ca for the sending end", error })?,
        None => String::new(),
    };
    let request = |source: String| {
        ControlMsg::ThirdParty(ThirdParty {
            version: VERSION as u16,
            source,
            dest_url: opts.push.url.clone(),
            ca_pem: ca_pem.clone(),
            user: user.clone(),
            token: token.clone(),
            transfer: transfer.clone(),
            cipher: opts.push.cipher,
            policy: opts.push.policy,
            rate_bps: opts.push.rate_bps,
            min_rate_bps: opts.push.min_rate_bps,
            mtu: opts.push.mtu.unwrap_or(0) as u32,
            window_bytes: opts.push.window_bytes.unwrap_or(0),
            options: opts.push.options,
            shard: opts.push.shard,
        })
    };
    let mut sender = match Location::parse(&opts.source)? {
        Location::Daemon(url) => {
            let mut ch = connect(&url, &opts.push.auth, opts.push.connect_timeout)?;
            send(&mut ch, &request(url.path.clone()))?;
            SendingEnd::Daemon(ch)
        }
        Location::Ssh(target) => {
            let mut link = SshLink::open(&target, &opts.push.ssh)?;
            send(&mut link.ch, &request(target.path.clone()))?;
            SendingEnd::Ssh(Box::new(link))
        }
        Location::Local(p) => {
            return Err(ConnectError::BadAddress(format!(
                "'{}' is local: a copy between two remote ends needs a remote source",
                p.display()
            ))
            .into())
        }
    };
    opts.push.live.set_phase(Phase::Transferring);
    let ch = match &mut sender {
        SendingEnd::Daemon(ch) => ch,
        SendingEnd::Ssh(link) => &mut link.ch,
    };
    loop {
        match ch.expect_msg(SILENCE_LIMIT, "waiting for the sending end's progress") {
            Ok(ControlMsg::StatusReply(s)) if s.state == transfer_state::RUNNING => {
                opts.push.live.set_totals(s.files_total, s.bytes_total);
                opts.push.live.set_done(s.files_done, s.bytes_done);
            }
            Ok(ControlMsg::CopyDone { exit_code, json, summary }) => {
                if exit_code == 0 {
                    opts.push.live.finish();
                } else {
                    opts.push.live.set_phase(Phase::Failed);
                }
                return Ok(CopyOutcome { transfer, exit_code, json, summary });
            }
            Ok(ControlMsg::Queued { .. }) => {}
            Ok(ControlMsg::Error { message }) => return Err(SessionError::Refused { who: "server", message }),
            Ok(other) => {
                return Err(SessionError::Protocol(format!("unexpected message from the sending end: {other:?}")))
            }
            Err(e) => {
                return Err(SessionError::lost(format!(
                    "{e}; the transfer may still be running: mover status {transfer} --server {}",
                    server_of(&dest)
                )))
            }
        }
    }
}

/// The sending end's channel: to its daemon, or over SSH (whose link must live while the channel does).
enum SendingEnd {
    Daemon(ControlChannel),
    Ssh(Box<SshLink>),
}

/// `mover://HOST:PORT` of a daemon URL, for `mover status --server`.
pub fn server_of(url: &MoverUrl) -> String {
    if url.host.contains(':') {
        format!("mover://[{}]:{}", url.host, url.port)
    } else {
        format!("mover://{}:{}", url.host, url.port)
    }
}
