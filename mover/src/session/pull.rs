//! A pull as a client starts it: the source reached (a `mover://` daemon or `[user@]host:PATH` over SSH),
//! the request sent, then the receiving side of the session into a local directory. The remote side sends;
//! this side picks the session id, key and UDP port as every receiver does (PROTOCOL.md §3.3).

use super::error::SessionError;
use super::limits::Limits;
use super::memory::MemoryBudget;
use super::receive::{receive_files, ReceiveParams, ReceiveTarget};
use super::report::{Direction, Report};
use crate::connect::{connect_client, unspecified, ClientAuth, ConnectError, Location, SshLink, SshOptions};
use crate::exit::with_fix;
use crate::files::RelPath;
use crate::net::xdp_path::NetChoice;
use crate::net::{ControlChannel, ControlEvent};
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::policy::Policy;
use crate::wire::control::{ControlMsg, Hello, Pull};
use crate::wire::{Cipher, TransferOptions, VERSION};
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
    /// How long a silent path is tolerated before the pull fails as retryable (`--timeout`).
    pub timeout: Duration,
    /// Sync, resume and metadata choices (the receiver's own; `checksum` and `xattrs` also go to the sender in
    /// the `Pull`).
    pub options: TransferOptions,
    /// Progress and counters while the pull runs, for a progress display on another thread (shared by
    /// every retry).
    pub live: std::sync::Arc<crate::pipeline::live::Live>,
    /// `--shard I/N`: ask the sender for only this shard of the source.
    pub shard: crate::files::Shard,
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
            cores: CorePlan::Auto,
            queue_depth: crate::pipeline::recv::WRITE_QUEUE_DEPTH,
            net: NetChoice::Auto,
            cipher: Cipher::default(),
            fsync: false,
            ssh: SshOptions::default(),
            auth: ClientAuth::Insecure,
            timeout: crate::proto::config::DEFAULT_PEER_TIMEOUT,
            options: TransferOptions::default(),
            live: crate::pipeline::live::Live::new(),
            shard: crate::files::Shard::WHOLE,
        }
    }
}

/// Runs a pull. The report always comes back: on failure `verified` is false and `error` says why.
pub fn pull(opts: &PullOptions) -> Report {
    match run(opts) {
        Ok(mut r) => {
            // The request's rate and policy: the `Hello` carries the rate only.
            r.rate_bps = opts.rate_bps;
            r.policy = opts.policy;
            r.shard = opts.shard;
            r.goodput_bps = r.bytes as f64 * 8.0 / r.seconds.max(1e-9);
            r
        }
        Err(e) => {
            opts.live.set_phase(crate::pipeline::live::Phase::Failed);
            Report {
                error: Some(e.to_string()),
                exit_class: e.exit_class(),
                shard: opts.shard,
                ..Report::new(Direction::Received, opts.rate_bps, opts.policy, opts.cipher)
            }
        }
    }
}

fn run(opts: &PullOptions) -> Result<Report, SessionError> {
    let source = Location::parse(&opts.source)?;
    check_dest(&opts.dest)?;
    Topology::new(Side::Receiver, &opts.cores, &available_cores()).map_err(SessionError::Setup)?;
    let started = Instant::now();
    let mut request = Pull {
        version: VERSION as u16,
        cipher: opts.cipher,
        policy: opts.policy,
        mtu: u32::try_from(opts.mtu).map_err(|_| SessionError::Setup(format!("MTU {} is too large", opts.mtu)))?,
        rate_bps: opts.rate_bps,
        min_rate_bps: opts.min_rate_bps,
        window_bytes: opts.window_bytes.unwrap_or(0),
        options: opts.options,
        path: String::new(),
        shard: opts.shard,
    };
    let mut report = match source {
        Location::Daemon(url) => {
            let server = url.socket_addr()?;
            let mut ch = connect_client(&url.host, server, &opts.auth, opts.connect_timeout)?;
            request.path = url.path;
            let (bind_ip, peer_ip) = (ch.local_addr().ip(), server.ip());
            let plain = matches!(opts.auth, ClientAuth::Insecure);
            receive_pulled(&mut ch, request, opts, bind_ip, peer_ip)
                .map_err(|e| e.for_plain_client(&format!("{}:{}", url.host, url.port), plain))?
        }
        Location::Ssh(target) => {
            let mut link = SshLink::open(&target, &opts.ssh)?;
            request.path = target.path.clone();
            // Any local address: a NAT may stand between us and what sshd saw (PROTOCOL.md §3.3).
            let peer_ip = link.server_ip();
            receive_pulled(&mut link.ch, request, opts, unspecified(peer_ip), peer_ip)?
        }
        Location::Local(p) => {
            return Err(ConnectError::BadAddress(format!(
                "the source '{}' is not remote: use mover://HOST[:PORT]/PATH or [user@]host:PATH",
                p.display()
            ))
            .into())
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
) -> Result<Report, SessionError> {
    let refused = |message| SessionError::Refused { who: "server", message };
    if let Err(e) = ch.send(&ControlMsg::Pull(request)) {
        // A server that refuses at once (a bad root) may have closed before reading; its reason is worth
        // more than our broken pipe.
        if let Some(ControlEvent::Msg(ControlMsg::Error { message })) = ch.recv_timeout(Duration::from_secs(2)) {
            return Err(refused(message));
        }
        return Err(SessionError::lost(format!("sending the request to {}: {e}", ch.peer_addr())));
    }
    // A busy daemon under --insecure-no-auth answers with its queue place until it admits the pull.
    let mut place = crate::connect::QueuePlace::default();
    let first = loop {
        match ch.expect_msg(MANIFEST_TIMEOUT, "waiting for the manifest").map_err(SessionError::lost)? {
            ControlMsg::Queued { position, waiting } => place.show(position, waiting),
            other => break other,
        }
    };
    let hello: Hello = match first {
        ControlMsg::Hello(h) => h,
        ControlMsg::Error { message } => return Err(refused(message)),
        other => return Err(SessionError::Protocol(format!("unexpected answer from the server: {other:?}"))),
    };
    // Created only now, so that a refused pull leaves nothing behind.
    if !opts.dest.exists() {
        fs::create_dir(&opts.dest)
            .map_err(|e| SessionError::Setup(format!("cannot create '{}': {}", opts.dest.display(), with_fix(&e))))?;
    }
    crate::files::beneath::check_writable_path(&opts.dest)
        .map_err(|e| SessionError::Setup(format!("cannot write into '{}': {}", opts.dest.display(), with_fix(&e))))?;
    let dest_of = |_: &str| Ok(RelPath::root());
    let target = ReceiveTarget { root: &opts.dest, dest_of: &dest_of, bind_ip, peer_ip };
    let params = ReceiveParams {
        cores: opts.cores.clone(),
        queue_depth: opts.queue_depth,
        net: opts.net,
        fsync: opts.fsync,
        // A puller receives what it asked for; the server's limits guard servers against clients.
        limits: Limits { max_manifest_memory: u64::MAX, ..Limits::default() },
        peer_timeout: opts.timeout,
        peer_name: "server",
        memory: MemoryBudget::unlimited(),
        live: opts.live.clone(),
        files_and_dirs_only: false,
        governor: None,
    };
    let result = receive_files(ch, hello, &target, &params);
    if let Err(e) = &result {
        let _ = ch.send(&ControlMsg::Error { message: e.to_string() });
    }
    result
}

/// DEST must be a directory, or not exist with an existing parent directory.
fn check_dest(dest: &Path) -> Result<(), SessionError> {
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SessionError::Setup(format!("'{}' is not a directory", dest.display()))),
        Err(_) => {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if parent.is_dir() {
                Ok(())
            } else {
                Err(SessionError::Setup(format!(
                    "'{}' does not exist and neither does its parent directory",
                    dest.display()
                )))
            }
        }
    }
}
