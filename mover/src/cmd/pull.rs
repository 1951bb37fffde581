//! `mover pull`: fetch a file or directory tree from a `mover serve` daemon or over SSH, the mirror of
//! `push`. The remote side sends; this side receives, and picks the session id, key and UDP port as every
//! receiver does (PROTOCOL.md §3.3).

use super::auth::{connect_client, ClientAuth};
use super::serve::SessionReport;
use super::session::{receive_files, unspecified, ReceiveParams, ReceiveTarget};
use super::ssh::{Location, SshLink, SshOptions};
use crate::files::RelPath;
use crate::json::JsonObject;
use crate::net::xdp_path::{NetChoice, XdpInfo};
use crate::net::{ControlChannel, ControlEvent};
use crate::pipeline::stats::{render_table, StageReport};
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::policy::Policy;
use crate::rate::{format_bytes, format_rate_bps};
use crate::wire::control::{ControlMsg, Hello, Pull, ReceiverSummary};
use crate::wire::{Cipher, VERSION};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for the sender's manifest after asking (it scans the source first).
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What `mover pull` was asked to do.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// `mover://HOST[:PORT]/PATH` or `[user@]host:PATH`: the file or directory to fetch.
    pub source: String,
    /// Local directory it lands in, under its own name (created if missing; its parent must exist).
    pub dest: PathBuf,
    /// The remote sender's rate under `fixed`, its ceiling under `fair` and `low`, bits per second.
    pub rate_bps: u64,
    /// The remote sender's rate policy.
    pub policy: Policy,
    /// The adaptive policies' floor, bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Path MTU: the sender sizes datagrams to fit it.
    pub mtu: usize,
    /// Receive window in bytes (`None`: the sender's default).
    pub window_bytes: Option<u64>,
    /// TCP connect timeout (daemon).
    pub connect_timeout: Duration,
    /// Print the summary on stderr.
    pub verbose: bool,
    /// How this side's receiving stages are placed on cores.
    pub cores: CorePlan,
    /// Writes in flight in the writer stage.
    pub queue_depth: u32,
    /// The data path.
    pub net: NetChoice,
    /// How datagrams are sealed.
    pub cipher: Cipher,
    /// fsync every file before it is renamed into place.
    pub fsync: bool,
    /// How an `[user@]host:PATH` source is reached.
    pub ssh: SshOptions,
    /// How to authenticate to a `mover://` daemon (TLS with a certificate or a token, or
    /// `--insecure-no-auth`).
    pub auth: ClientAuth,
}

impl PullOptions {
    /// Options with the command line's defaults, except authentication: [`ClientAuth::Insecure`] (for
    /// in-process use against [`super::serve::serve_on`] on loopback).
    pub fn new(source: String, dest: PathBuf, rate_bps: u64) -> PullOptions {
        PullOptions {
            source,
            dest,
            rate_bps,
            policy: Policy::Fixed,
            min_rate_bps: 0,
            mtu: 1500,
            window_bytes: None,
            connect_timeout: Duration::from_secs(10),
            verbose: false,
            cores: CorePlan::Auto,
            queue_depth: crate::pipeline::recv::WRITE_QUEUE_DEPTH,
            net: NetChoice::Auto,
            cipher: Cipher::default(),
            fsync: false,
            ssh: SshOptions::default(),
            auth: ClientAuth::Insecure,
        }
    }
}

/// The outcome of a pull: everything `--json` prints.
#[derive(Clone, Debug, Default)]
pub struct PullReport {
    /// Regular files committed.
    pub files: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Seconds from contacting the remote side to the last commit.
    pub seconds: f64,
    /// Payload bits per second over `seconds`.
    pub goodput_bps: f64,
    /// True only when every file arrived and its whole-file hash matched.
    pub verified: bool,
    /// The data path used: "udp" or "xdp".
    pub net: &'static str,
    /// The XDP path's details when `net` is "xdp".
    pub xdp: Option<XdpInfo>,
    /// The rate asked of the sender.
    pub rate_bps: u64,
    /// The sender's rate policy.
    pub policy: Policy,
    /// How datagrams were sealed (`--cipher`).
    pub cipher: Cipher,
    /// What this receiver counted.
    pub receiver: ReceiverSummary,
    /// The disk backend the writer stage used.
    pub disk: &'static str,
    /// What each receiving stage did.
    pub stages: Vec<StageReport>,
    /// Why the pull failed, if it did.
    pub error: Option<String>,
}

impl PullReport {
    /// The `--json` object.
    pub fn to_json(&self) -> String {
        let r = &self.receiver;
        let mut j = JsonObject::new()
            .u64("files", self.files)
            .u64("bytes", self.bytes)
            .f64("seconds", self.seconds)
            .f64("goodput_bps", self.goodput_bps)
            .bool("verified", self.verified)
            .str("net", self.net)
            .u64("rate_bps", self.rate_bps)
            .str("policy", self.policy.name())
            .u64("packets_received", r.packets_received)
            .u64("duplicates", r.duplicates)
            .u64("dropped_invalid", r.dropped_invalid)
            .u64("dropped_auth", r.dropped_auth)
            .u64("dropped_replayed", r.dropped_replayed)
            .u64("repaired_files", r.repaired_files)
            .str("disk", self.disk)
            .str("cipher", self.cipher.name());
        if let Some(x) = &self.xdp {
            j = j.str("xdp_mode", x.mode).str("xdp_interface", &x.interface);
        }
        j = j.array("stages", self.stages.iter().map(StageReport::to_json));
        if let Some(e) = &self.error {
            j = j.str("error", e);
        }
        j.finish()
    }

    /// The per-stage table `--stats` prints.
    pub fn stage_table(&self) -> String {
        render_table("receiver stages (pull):", &self.stages)
    }
}

/// Runs a pull. The report always comes back: on failure `verified` is false and `error` says why.
pub fn pull(opts: &PullOptions) -> PullReport {
    let mut report = PullReport {
        net: "udp",
        disk: "none",
        rate_bps: opts.rate_bps,
        policy: opts.policy,
        cipher: opts.cipher,
        ..Default::default()
    };
    match run(opts) {
        Ok(s) => {
            report.files = s.summary.files;
            report.bytes = s.summary.bytes;
            report.seconds = s.seconds;
            report.goodput_bps = s.summary.bytes as f64 * 8.0 / s.seconds.max(1e-9);
            report.verified = true;
            report.net = if s.xdp.is_some() { "xdp" } else { "udp" };
            report.xdp = s.xdp;
            report.receiver = s.summary;
            report.disk = s.disk;
            report.stages = s.stages;
        }
        Err(e) => report.error = Some(e),
    }
    if opts.verbose && report.verified {
        eprintln!(
            "mover pull: {} files, {} in {:.2} s: {} goodput, {} packets ({} duplicates), verified; {}",
            report.files,
            format_bytes(report.bytes),
            report.seconds,
            format_rate_bps(report.goodput_bps),
            report.receiver.packets_received,
            report.receiver.duplicates,
            super::push::cipher_note(report.cipher)
        );
    }
    report
}

fn run(opts: &PullOptions) -> Result<SessionReport, String> {
    let source = Location::parse(&opts.source)?;
    check_dest(&opts.dest)?;
    Topology::new(Side::Receiver, &opts.cores, &available_cores())?;
    let started = Instant::now();
    let mut request = Pull {
        version: VERSION as u16,
        cipher: opts.cipher,
        policy: opts.policy,
        mtu: u32::try_from(opts.mtu).map_err(|_| format!("MTU {} is too large", opts.mtu))?,
        rate_bps: opts.rate_bps,
        min_rate_bps: opts.min_rate_bps,
        window_bytes: opts.window_bytes.unwrap_or(0),
        path: String::new(),
    };
    let mut report = match source {
        Location::Daemon(url) => {
            let server = url.socket_addr()?;
            let mut ch = connect_client(&url.host, server, &opts.auth, opts.connect_timeout)?;
            request.path = url.path;
            let (bind_ip, peer_ip) = (ch.local_addr().ip(), server.ip());
            receive_pulled(&mut ch, request, opts, bind_ip, peer_ip)?
        }
        Location::Ssh(target) => {
            let mut link = SshLink::open(&target, &opts.ssh)?;
            request.path = target.path.clone();
            // Any local address: a NAT may stand between us and what sshd saw (PROTOCOL.md §3.3).
            let peer_ip = link.server_ip();
            receive_pulled(&mut link.ch, request, opts, unspecified(peer_ip), peer_ip)?
        }
        Location::Local(p) => {
            return Err(format!(
                "the source '{}' is not remote: use mover://HOST[:PORT]/PATH or [user@]host:PATH",
                p.display()
            ))
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Sends the request and runs the receiving side into `opts.dest` once the sender's `Hello` arrives.
fn receive_pulled(
    ch: &mut ControlChannel,
    request: Pull,
    opts: &PullOptions,
    bind_ip: IpAddr,
    peer_ip: IpAddr,
) -> Result<SessionReport, String> {
    if let Err(e) = ch.send(&ControlMsg::Pull(request)) {
        // A server that refuses at once (a bad root) may have closed before reading; its reason is worth
        // more than our broken pipe.
        if let Some(ControlEvent::Msg(ControlMsg::Error { message })) = ch.recv_timeout(Duration::from_secs(2)) {
            return Err(format!("server refused: {message}"));
        }
        return Err(format!("sending the request to {}: {e}", ch.peer_addr()));
    }
    let hello: Hello = match ch.expect_msg(MANIFEST_TIMEOUT, "waiting for the manifest")? {
        ControlMsg::Hello(h) => h,
        ControlMsg::Error { message } => return Err(format!("server refused: {message}")),
        other => return Err(format!("unexpected answer from the server: {other:?}")),
    };
    // Created only now, so that a refused pull leaves nothing behind.
    if !opts.dest.exists() {
        fs::create_dir(&opts.dest).map_err(|e| format!("cannot create '{}': {e}", opts.dest.display()))?;
    }
    let dest_of = |_: &str| Ok(RelPath::root());
    let target = ReceiveTarget { root: &opts.dest, dest_of: &dest_of, bind_ip, peer_ip };
    let params = ReceiveParams {
        cores: opts.cores.clone(),
        queue_depth: opts.queue_depth,
        net: opts.net,
        fsync: opts.fsync,
        // A puller receives what it asked for; the server's limits guard servers against clients.
        limits: super::limits::Limits::default(),
    };
    let result = receive_files(ch, hello, &target, &params);
    if let Err(e) = &result {
        let _ = ch.send(&ControlMsg::Error { message: e.clone() });
    }
    result
}

/// DEST must be a directory, or not exist with an existing parent directory.
fn check_dest(dest: &Path) -> Result<(), String> {
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("'{}' is not a directory", dest.display())),
        Err(_) => {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if parent.is_dir() {
                Ok(())
            } else {
                Err(format!("'{}' does not exist and neither does its parent directory", dest.display()))
            }
        }
    }
}
