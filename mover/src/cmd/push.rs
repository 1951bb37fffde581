//! `mover push`: send files and directory trees to a `mover serve`.

use super::auth::{start_client, ClientAuth};
use super::json::JsonObject;
use super::url::MoverUrl;
use crate::disk::BackendChoice;
use crate::files::{scan_sources, EntryKind};
use crate::net::xdp_path::{NetChoice, SenderXdp, XdpInfo};
use crate::net::xsk;
use crate::net::{ControlChannel, ControlEvent, DataSocket};
use crate::pipeline::send::{run_send, SendSetup, XdpTx, TX_BATCH, XDP_TX_FRAMES};
use crate::pipeline::stats::{render_table, StageReport};
use crate::pipeline::topology::depth;
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::config::DEFAULT_WINDOW_BYTES;
use crate::proto::policy::Policy;
use crate::proto::{Config, Sender};
use crate::rate::{format_bytes, format_rate_bps};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::{ControlMsg, Hello, ReceiverSummary};
use crate::wire::{Cipher, DropReason, VERSION};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The protocol core's pacer burst when it runs in the packetizer stage, ahead of the pacer stage.
const PACKETIZER_BURST: Duration = Duration::from_millis(2);
/// How long to wait for the server's answer to the manifest.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// What `mover push` was asked to do.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Files and directories to send; each lands under the destination by its basename.
    pub sources: Vec<PathBuf>,
    /// `mover://HOST[:PORT]/DIR`.
    pub url: String,
    /// Sending rate in bits per second of UDP payload: the rate under `fixed`, the ceiling under `fair`
    /// and `low`.
    pub rate_bps: u64,
    /// The rate policy (`--policy`).
    pub policy: Policy,
    /// The adaptive policies' floor (`--min-rate`), bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Path MTU: datagrams are sized to fit it with IP and UDP headers.
    pub mtu: usize,
    /// Receive window in bytes (default 2 GiB).
    pub window_bytes: Option<u64>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Print progress and the summary on stderr.
    pub verbose: bool,
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
    /// How to authenticate to the daemon (TLS with a certificate or a token, or `--insecure-no-auth`).
    pub auth: ClientAuth,
}

impl PushOptions {
    /// Options with the defaults of the command line for `sources` and `url`, except authentication:
    /// [`ClientAuth::Insecure`] (for in-process use against [`super::serve::serve_on`] on loopback).
    pub fn new(sources: Vec<PathBuf>, url: String, rate_bps: u64) -> PushOptions {
        PushOptions {
            sources,
            url,
            rate_bps,
            policy: Policy::Fixed,
            min_rate_bps: 0,
            mtu: 1500,
            window_bytes: None,
            connect_timeout: Duration::from_secs(10),
            verbose: false,
            cores: CorePlan::Auto,
            direct: true,
            queue_depth: crate::pipeline::send::READ_QUEUE_DEPTH,
            net: NetChoice::Auto,
            cipher: Cipher::default(),
            auth: ClientAuth::Insecure,
        }
    }
}

/// The outcome of a push: everything `--json` prints.
#[derive(Clone, Debug, Default)]
pub struct PushReport {
    /// Regular files sent.
    pub files: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Seconds from connecting to the server's confirmation that everything is committed.
    pub seconds: f64,
    /// Payload bits per second over `seconds`.
    pub goodput_bps: f64,
    /// Data packets sent.
    pub packets_sent: u64,
    /// Data packets that were retransmissions.
    pub packets_retransmitted: u64,
    /// True only when every file arrived and its whole-file hash matched.
    pub verified: bool,
    /// The data path used: "udp" or "xdp".
    pub net: &'static str,
    /// The XDP path's details when `net` is "xdp".
    pub xdp: Option<XdpInfo>,
    /// The sending rate asked for: the rate under `fixed`, the ceiling otherwise.
    pub rate_bps: u64,
    /// The rate policy.
    pub policy: Policy,
    /// The highest rate the policy chose, bits per second.
    pub max_rate_bps: u64,
    /// The rate the policy chose last, bits per second.
    pub final_rate_bps: u64,
    /// Smoothed RTT at the end, milliseconds.
    pub rtt_ms: f64,
    /// Verification rounds (1 when no file needed repair).
    pub rounds: u32,
    /// UDP payload bytes per data datagram.
    pub datagram_bytes: u64,
    /// Whether UDP GSO was used.
    pub gso: bool,
    /// Entries skipped while scanning (symlinks, devices, ...).
    pub skipped: u64,
    /// The receiver's own counts.
    pub receiver: ReceiverSummary,
    /// The disk backend the reader stage used: "io_uring" or "pread".
    pub disk: &'static str,
    /// How datagrams were sealed (`--cipher`).
    pub cipher: Cipher,
    /// Feedback datagrams the sender dropped as damaged or foreign.
    pub feedback_dropped_invalid: u64,
    /// Of those, feedback that failed authentication.
    pub feedback_dropped_auth: u64,
    /// Feedback refused by the replay window.
    pub feedback_dropped_replayed: u64,
    /// What each pipeline stage did.
    pub stages: Vec<StageReport>,
    /// Why the push failed, if it did.
    pub error: Option<String>,
}

impl PushReport {
    /// The `--json` object.
    pub fn to_json(&self) -> String {
        let r = &self.receiver;
        let mut j = JsonObject::new()
            .u64("files", self.files)
            .u64("bytes", self.bytes)
            .f64("seconds", self.seconds)
            .f64("goodput_bps", self.goodput_bps)
            .u64("packets_sent", self.packets_sent)
            .u64("packets_retransmitted", self.packets_retransmitted)
            .bool("verified", self.verified)
            .str("net", self.net)
            .u64("rate_bps", self.rate_bps)
            .str("policy", self.policy.name())
            .u64("max_rate_bps", self.max_rate_bps)
            .u64("final_rate_bps", self.final_rate_bps)
            .f64("rtt_ms", self.rtt_ms)
            .u64("rounds", self.rounds as u64)
            .u64("datagram_bytes", self.datagram_bytes)
            .bool("gso", self.gso)
            .u64("skipped", self.skipped)
            .str("disk", self.disk)
            .str("cipher", self.cipher.name())
            .obj(
                "feedback_dropped",
                JsonObject::new()
                    .u64("invalid", self.feedback_dropped_invalid)
                    .u64("auth", self.feedback_dropped_auth)
                    .u64("replayed", self.feedback_dropped_replayed),
            );
        if let Some(x) = &self.xdp {
            j = j
                .str("xdp_mode", x.mode)
                .str("xdp_attach", x.attach)
                .str("xdp_interface", &x.interface)
                .u64("xdp_queues", x.queues as u64);
        }
        j = j.obj(
            "receiver",
            JsonObject::new()
                .u64("files", r.files)
                .u64("bytes", r.bytes)
                .u64("packets_received", r.packets_received)
                .u64("duplicates", r.duplicates)
                .u64("dropped_invalid", r.dropped_invalid)
                .u64("dropped_auth", r.dropped_auth)
                .u64("dropped_replayed", r.dropped_replayed)
                .u64("repaired_files", r.repaired_files),
        );
        j = j.array("stages", self.stages.iter().map(StageReport::to_json));
        if let Some(e) = &self.error {
            j = j.str("error", e);
        }
        j.finish()
    }

    /// The per-stage table `--stats` prints.
    pub fn stage_table(&self) -> String {
        render_table("sender stages (push):", &self.stages)
    }
}

/// Runs a push. The report always comes back: on failure `verified` is false and `error` says why.
pub fn push(opts: &PushOptions) -> PushReport {
    let mut report = PushReport {
        net: "udp",
        disk: "none",
        rate_bps: opts.rate_bps,
        policy: opts.policy,
        cipher: opts.cipher,
        ..PushReport::default()
    };
    if let Err(e) = run(opts, &mut report) {
        report.verified = false;
        report.error = Some(e);
    }
    report
}

fn run(opts: &PushOptions, report: &mut PushReport) -> Result<(), String> {
    let url = MoverUrl::parse(&opts.url)?;
    let scanned = scan_sources(&opts.sources)?;
    for (path, why) in &scanned.skipped {
        eprintln!("mover push: skipping '{}': {why}", path.display());
    }
    report.skipped = scanned.skipped.len() as u64;
    let sizes: Vec<u64> = scanned.entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).collect();
    report.files = sizes.len() as u64;
    report.bytes = sizes.iter().sum();
    let server = url.socket_addr()?;
    let topology = Topology::new(Side::Sender, &opts.cores, &available_cores())?;
    let disk = BackendChoice::from_env()?;

    let started = Instant::now();
    let stream = std::net::TcpStream::connect_timeout(&server, opts.connect_timeout)
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    // The TCP handshake alone: the TLS one adds computation that is no part of the path's RTT.
    let handshake_rtt = started.elapsed();
    let mut ch = start_client(stream, &url.host, &opts.auth, opts.connect_timeout)?;
    let ip_overhead = if server.is_ipv4() { 28 } else { 48 };
    let datagram =
        opts.mtu.checked_sub(ip_overhead).filter(|&d| d >= 256).ok_or(format!("MTU {} is too small", opts.mtu))?;
    let datagram = datagram.min(65_507);
    let xdp = SenderXdp::open(server.ip(), opts.net, XDP_TX_FRAMES)?;
    // An AF_XDP frame bounds the datagram on the XDP path (jumbo frames need multi-buffer AF_XDP).
    let datagram = if xdp.is_some() { datagram.min(xsk::MAX_DATAGRAM) } else { datagram };
    let mut cfg = Config::new(0, datagram, opts.rate_bps);
    cfg.policy = opts.policy;
    cfg.min_rate_bps = opts.min_rate_bps;
    cfg.trace_rate = std::env::var_os("MOVER_RATE_TRACE").is_some_and(|v| v == "1");
    cfg.window_blocks = opts.window_bytes.unwrap_or(DEFAULT_WINDOW_BYTES) / cfg.block_payload as u64;
    cfg.initial_rtt = handshake_rtt.max(Duration::from_micros(100));
    // The pacer stage releases datagrams at the rate; the core's own bucket only bounds how far the
    // packetizer runs ahead of it, and the short `tx` ring bounds that anyway. A burst of a few wake-ups lets
    // a late packetizer refill the ring without losing rate (PROTOCOL.md §5).
    cfg.burst = PACKETIZER_BURST;
    cfg.validate()?;
    report.datagram_bytes = cfg.max_datagram() as u64;

    let hello = Hello {
        version: VERSION as u16,
        block_payload: cfg.block_payload,
        rate_bps: opts.rate_bps,
        window_blocks: cfg.window_blocks,
        entry_count: scanned.entries.len() as u64,
        total_bytes: report.bytes,
        cipher: opts.cipher,
        dest: url.path.clone(),
    };
    if let Err(e) = send_manifest(&mut ch, hello, &scanned.entries) {
        // A server that refuses early closes the connection; its reason is worth more than our broken pipe.
        return Err(match ch.recv_timeout(Duration::from_secs(2)) {
            Some(ControlEvent::Msg(ControlMsg::Error { message })) => format!("server refused: {message}"),
            // What broke the connection (a TLS peer met by plain TCP, say) is worth more too.
            Some(ControlEvent::Failed(why)) => format!("sending to {server}: {e}; {why}"),
            _ => format!("sending to {server}: {e}"),
        });
    }
    let (session_id, udp_port, key) = match ch.expect_msg(ACCEPT_TIMEOUT, "waiting for it to accept the session")? {
        ControlMsg::Accept { session_id, udp_port, key } => (session_id, udp_port, key),
        ControlMsg::Error { message } => return Err(format!("server refused: {message}")),
        other => return Err(format!("unexpected answer from the server: {other:?}")),
    };
    cfg.session_id = session_id;
    cfg.cipher = opts.cipher;
    cfg.key = key;

    let any: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let mut sock = DataSocket::bind(SocketAddr::new(any, 0)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(SocketAddr::new(server.ip(), udp_port)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.set_buffer_bytes(super::serve::SOCKET_BUFFER_BYTES);
    let peer = SocketAddr::new(server.ip(), udp_port);
    let mut _watcher = None;
    let xdp_tx = match xdp {
        Some(x) => {
            report.net = "xdp";
            report.xdp = Some(x.info().clone());
            let local = sock.local_addr().map_err(|e| format!("UDP socket: {e}"))?;
            let (sink, area, watcher) = x.start(local, peer, TX_BATCH, depth::TX_BATCHES)?;
            _watcher = Some(watcher);
            Some(XdpTx { sink, area })
        }
        None => {
            report.net = "udp";
            report.gso = sock.enable_gso(cfg.max_datagram() as u16);
            None
        }
    };

    let clock = MonotonicClock::new();
    let mut sender = Sender::new(cfg.clone(), sizes.clone(), clock.now());
    let setup = SendSetup { topology, disk, direct: opts.direct, queue_depth: opts.queue_depth };
    let outcome =
        run_send(&mut sender, scanned.file_paths, sizes, sock, xdp_tx, &mut ch, clock, cfg.max_datagram(), &setup);
    report.stages = outcome.stages;
    report.disk = outcome.disk.name();
    let outcome = outcome.result;
    let stats = sender.stats();
    report.packets_sent = stats.packets_sent;
    report.packets_retransmitted = stats.packets_retransmitted;
    report.rounds = stats.rounds;
    report.feedback_dropped_invalid = stats.drops.invalid();
    report.feedback_dropped_auth = stats.drops.get(DropReason::BadTag);
    report.feedback_dropped_replayed = stats.drops.get(DropReason::Replayed) + stats.drops.get(DropReason::TooOld);
    report.rtt_ms = sender.srtt_ns() as f64 / 1e6;
    report.max_rate_bps = sender.max_rate_bps();
    report.final_rate_bps = sender.rate_bps();
    report.seconds = started.elapsed().as_secs_f64();
    report.goodput_bps = report.bytes as f64 * 8.0 / report.seconds.max(1e-9);
    let summary = outcome?;
    report.receiver = summary;
    report.verified = summary.files == report.files && summary.bytes == report.bytes;
    if !report.verified {
        return Err(format!(
            "server committed {} files / {} bytes of {} / {}",
            summary.files, summary.bytes, report.files, report.bytes
        ));
    }
    if opts.verbose {
        eprintln!(
            "mover push: {} files, {} in {:.2} s: {} goodput, {} packets ({} retransmitted), verified; {}",
            report.files,
            format_bytes(report.bytes),
            report.seconds,
            format_rate_bps(report.goodput_bps),
            report.packets_sent,
            report.packets_retransmitted,
            cipher_note(report.cipher)
        );
    }
    Ok(())
}

fn send_manifest(ch: &mut ControlChannel, hello: Hello, entries: &[crate::files::Entry]) -> std::io::Result<()> {
    ch.send(&ControlMsg::Hello(hello))?;
    for e in entries {
        ch.send(&ControlMsg::Entry(e.clone()))?;
    }
    ch.send(&ControlMsg::ManifestEnd)
}

/// How a summary names the data channel's protection: `none` is said plainly, never silently.
pub fn cipher_note(cipher: Cipher) -> String {
    if cipher.is_aead() {
        format!("data encrypted and authenticated with {cipher}")
    } else {
        "data NOT encrypted or authenticated (--cipher none)".into()
    }
}
