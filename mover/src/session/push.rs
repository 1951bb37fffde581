//! A push as a client starts it: the sources scanned, the destination reached (a `mover://` daemon over
//! TLS or TCP, or `[user@]host:DIR` over SSH), then the sending side of the session.

use super::error::SessionError;
use super::path_mtu::BASE_MTU;
use super::report::{Direction, Report};
use super::send::{send_files, SendParams};
use crate::connect::{start_client, ClientAuth, ConnectError, Location, SshLink, SshOptions};
use crate::files::{scan_sources_with, ScanOptions, Scanned};
use crate::net::xdp_path::NetChoice;
use crate::net::ControlChannel;
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::policy::Policy;
use crate::wire::{Cipher, TransferOptions};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `mover push` was asked to do.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Files and directories to send; each lands under the destination by its basename.
    pub sources: Vec<PathBuf>,
    /// `mover://HOST[:PORT]/DIR` or `[user@]host:DIR` (over SSH).
    pub url: String,
    /// Sending rate in bits per second of UDP payload: the rate under `fixed`, the ceiling under `fair`
    /// and `low`.
    pub rate_bps: u64,
    /// The rate policy (`--policy`).
    pub policy: Policy,
    /// The adaptive policies' floor (`--min-rate`), bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Path MTU: datagrams are sized to fit it with IP and UDP headers (`--mtu`). `None`: the route's MTU,
    /// confirmed by the first data, and the base MTU for a rerun after a black hole (PROTOCOL.md §4.8).
    pub mtu: Option<usize>,
    /// Receive window in bytes (default 2 GiB).
    pub window_bytes: Option<u64>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How the pipeline's stages are placed on cores (`--cores`).
    pub cores: CorePlan,
    /// Read files with O_DIRECT where the file system allows it.
    pub direct: bool,
    /// Reads in flight in the reader stage.
    pub queue_depth: u32,
    /// The data path (`--net`).
    pub net: NetChoice,
    /// How datagrams are sealed (`--cipher`).
    pub cipher: Cipher,
    /// How a `[user@]host:DIR` destination is reached (`--ssh`, `--remote-mover`, `--remote-root`).
    pub ssh: SshOptions,
    /// How to authenticate to a `mover://` daemon (TLS with a certificate or a token, or
    /// `--insecure-no-auth`).
    pub auth: ClientAuth,
    /// Sync, resume and metadata choices, sent to the receiver in the `Hello`.
    pub options: TransferOptions,
    /// `--files-from`: send only these paths, relative to the one source directory.
    pub files_from: Option<Vec<String>>,
    /// How long a silent path is tolerated before the push fails as retryable (`--timeout`).
    pub timeout: Duration,
    /// Progress and counters while the push runs, for a progress display on another thread (shared by
    /// every retry).
    pub live: std::sync::Arc<crate::pipeline::live::Live>,
    /// `--via`: stripe through relays (the Fast Send Protocol, `session::stripe_send`).
    pub stripe: Option<super::stripe_options::StripeOptions>,
    /// `--shard I/N`: send only this shard of the sources (`files::shard`).
    pub shard: crate::files::Shard,
    /// One destination of a fan-out push (`--to` repeated, [`super::fan_out`]): its seat at the reads the
    /// sessions share. `None` for a push to one destination.
    pub shared_reads: Option<crate::pipeline::shared_reads::ReadSeat>,
}

impl PushOptions {
    /// Options with the defaults of the command line for `sources` and `url`.
    pub fn new(sources: Vec<PathBuf>, url: String, rate_bps: u64) -> PushOptions {
        PushOptions {
            sources,
            url,
            rate_bps,
            policy: Policy::Fixed,
            min_rate_bps: 0,
            mtu: None,
            window_bytes: None,
            connect_timeout: Duration::from_secs(10),
            cores: CorePlan::Auto,
            direct: true,
            queue_depth: crate::pipeline::send::READ_QUEUE_DEPTH,
            net: NetChoice::Auto,
            cipher: Cipher::default(),
            ssh: SshOptions::default(),
            auth: ClientAuth::Insecure,
            options: TransferOptions::default(),
            files_from: None,
            timeout: crate::proto::config::DEFAULT_PEER_TIMEOUT,
            live: crate::pipeline::live::Live::new(),
            stripe: None,
            shard: crate::files::Shard::WHOLE,
            shared_reads: None,
        }
    }
}

/// Runs a push (not a striped one: `session::push_striped` runs `opts.stripe`). The report always comes
/// back: on failure `verified` is false and `error` says why.
pub fn push(opts: &PushOptions) -> Report {
    push_with(opts, &|| scan_push_sources(opts))
}

/// [`push`] of what `scan` finds (called again for a rerun): a daemon sending a third-party copy scans its
/// source beneath its root, not `opts.sources`.
pub fn push_with(opts: &PushOptions, scan: &dyn Fn() -> Result<Scanned, SessionError>) -> Report {
    let mut report = Report::new(Direction::Sent, opts.rate_bps, opts.policy, opts.cipher);
    report.shard = opts.shard;
    let mut result = run(opts, scan, &mut report, false);
    if let Err(SessionError::PathMtuBlackHole(why)) = &result {
        if opts.mtu.is_none() {
            // The route's MTU was a black hole: once more at the base (the journals may let it resume what arrived;
            // the netns test did not see that happen: decision 0022).
            eprintln!("mover push: {why}; sending again at MTU {BASE_MTU}");
            report = Report::new(Direction::Sent, opts.rate_bps, opts.policy, opts.cipher);
            report.shard = opts.shard;
            let base = PushOptions { mtu: Some(BASE_MTU), ..opts.clone() };
            result = run(&base, scan, &mut report, true);
        }
    }
    if let Err(e) = result {
        opts.live.set_phase(crate::pipeline::live::Phase::Failed);
        report.verified = false;
        report.error = Some(e.to_string());
        report.exit_class = e.exit_class();
    }
    report
}

/// Scans a push's sources with its options (`--xattrs`, `--checksum`, `--files-from`), saying on stderr
/// what is not sent and why; a striped push scans the same way.
pub(super) fn scan_push_sources(opts: &PushOptions) -> Result<Scanned, SessionError> {
    let scan = ScanOptions {
        xattrs: opts.options.xattrs,
        checksum: opts.options.checksum,
        files_from: opts.files_from.clone(),
    };
    let scanned = crate::files::keep_shard(
        scan_sources_with(&opts.sources, &scan)?,
        opts.shard,
        // A striped push keeps files whole: its sealed blocks are cut from whole files.
        opts.stripe.is_none(),
    );
    for (path, why) in &scanned.skipped {
        eprintln!("mover push: skipping '{}': {why}", path.display());
    }
    Ok(scanned)
}

fn run(
    opts: &PushOptions,
    scan: &dyn Fn() -> Result<Scanned, SessionError>,
    report: &mut Report,
    after_black_hole: bool,
) -> Result<(), SessionError> {
    let dest = Location::parse(&opts.url)?;
    let scanned = scan()?;
    report.skipped = scanned.skipped.len() as u64;
    // Checked before connecting, so a bad --cores fails without a session.
    Topology::new(Side::Sender, &opts.cores, &available_cores()).map_err(SessionError::Setup)?;

    let started = Instant::now();
    let mut params = SendParams {
        rate_bps: opts.rate_bps,
        policy: opts.policy,
        min_rate_bps: opts.min_rate_bps,
        mtu: opts.mtu,
        mtu_after_black_hole: after_black_hole,
        window_bytes: opts.window_bytes,
        initial_rtt: None,
        cores: opts.cores.clone(),
        direct: opts.direct,
        queue_depth: opts.queue_depth,
        net: opts.net,
        cipher: opts.cipher,
        dest: String::new(),
        peer_name: "server",
        name_files_by_manifest: false,
        options: opts.options,
        peer_timeout: opts.timeout,
        live: opts.live.clone(),
        governor: None,
        shared_reads: opts.shared_reads.clone(),
    };
    let plain = matches!(opts.auth, ClientAuth::Insecure);
    let mut reached = reach(opts, dest)?;
    params.initial_rtt = reached.tcp_rtt;
    report.peer = Some(reached.ch().peer_addr());
    params.dest = reached.dest.clone();
    let data_ip = reached.data_ip;
    let result = send_files(reached.ch(), data_ip, scanned, &params, started, report);
    match &reached.daemon {
        Some(target) => result.map_err(|e| e.for_plain_client(target, plain))?,
        None => result?,
    }
    Ok(())
}

/// A push's destination reached: an authenticated control channel to a daemon, or an SSH session to
/// `mover serve --stdio`, with what a session over it needs. A dry run (`session::dry_run`) reaches its
/// destination the same way.
pub(super) struct Reached {
    /// The daemon's channel (`None` over SSH, whose channel is `ssh`'s).
    ch: Option<ControlChannel>,
    /// The SSH session, kept open while the channel is in use.
    ssh: Option<SshLink>,
    /// Where data datagrams go: the daemon's address, or the address sshd accepted the connection on.
    pub data_ip: IpAddr,
    /// The destination directory as the URL names it (the `Hello`'s `dest`).
    pub dest: String,
    /// `HOST:PORT` of a daemon, for errors.
    pub daemon: Option<String>,
    /// The TCP handshake's time to a daemon: the path's RTT without TLS's computation.
    pub tcp_rtt: Option<Duration>,
}

impl Reached {
    /// The control channel, whichever way it runs.
    pub fn ch(&mut self) -> &mut ControlChannel {
        match (&mut self.ch, &mut self.ssh) {
            (Some(ch), _) => ch,
            (None, Some(link)) => &mut link.ch,
            (None, None) => unreachable!("a reached destination has a channel"),
        }
    }
}

/// Connects to `dest` with `opts`' credentials, timeout and SSH settings.
pub(super) fn reach(opts: &PushOptions, dest: Location) -> Result<Reached, SessionError> {
    match dest {
        Location::Daemon(url) => {
            let server = url.socket_addr()?;
            let target = format!("{}:{}", url.host, url.port);
            let started = Instant::now();
            let stream = std::net::TcpStream::connect_timeout(&server, opts.connect_timeout)
                .map_err(|error| ConnectError::Connect { target: target.clone(), error })?;
            let tcp_rtt = Some(started.elapsed());
            let ch = start_client(stream, &url.host, &opts.auth, opts.connect_timeout)?;
            Ok(Reached { ch: Some(ch), ssh: None, data_ip: server.ip(), dest: url.path, daemon: Some(target), tcp_rtt })
        }
        Location::Ssh(target) => {
            let link = SshLink::open(&target, &opts.ssh)?;
            let data_ip = link.server_ip();
            Ok(Reached { ch: None, ssh: Some(link), data_ip, dest: target.path.clone(), daemon: None, tcp_rtt: None })
        }
        Location::Local(p) => Err(ConnectError::BadAddress(format!(
            "the destination '{}' is not remote: use mover://HOST[:PORT]/DIR or [user@]host:DIR",
            p.display()
        ))
        .into()),
    }
}
