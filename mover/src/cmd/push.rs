//! `mover push`: send files and directory trees to a `mover serve` daemon, or over SSH to a
//! `mover serve --stdio` that ssh starts.

use super::auth::{start_client, ClientAuth};
use super::session::{send_files, SendParams};
use super::ssh::{Location, SshLink, SshOptions};
use crate::files::scan_sources;
use crate::json::JsonObject;
use crate::net::xdp_path::{NetChoice, XdpInfo};
use crate::pipeline::stats::{render_table, StageReport};
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::policy::Policy;
use crate::rate::{format_bytes, format_rate_bps};
use crate::wire::control::ReceiverSummary;
use crate::wire::Cipher;
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
    /// How a `[user@]host:DIR` destination is reached (`--ssh`, `--remote-mover`, `--remote-root`).
    pub ssh: SshOptions,
    /// How to authenticate to a `mover://` daemon (TLS with a certificate or a token, or
    /// `--insecure-no-auth`).
    pub auth: ClientAuth,
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
            mtu: 1500,
            window_bytes: None,
            connect_timeout: Duration::from_secs(10),
            verbose: false,
            cores: CorePlan::Auto,
            direct: true,
            queue_depth: crate::pipeline::send::READ_QUEUE_DEPTH,
            net: NetChoice::Auto,
            cipher: Cipher::default(),
            ssh: SshOptions::default(),
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
    let dest = Location::parse(&opts.url)?;
    let scanned = scan_sources(&opts.sources)?;
    for (path, why) in &scanned.skipped {
        eprintln!("mover push: skipping '{}': {why}", path.display());
    }
    report.skipped = scanned.skipped.len() as u64;
    // Checked before connecting, so a bad --cores fails without a session.
    Topology::new(Side::Sender, &opts.cores, &available_cores())?;

    let started = Instant::now();
    let mut params = SendParams {
        rate_bps: opts.rate_bps,
        policy: opts.policy,
        min_rate_bps: opts.min_rate_bps,
        mtu: opts.mtu,
        window_bytes: opts.window_bytes,
        initial_rtt: None,
        cores: opts.cores.clone(),
        direct: opts.direct,
        queue_depth: opts.queue_depth,
        net: opts.net,
        cipher: opts.cipher,
        dest: String::new(),
        peer_name: "server",
    };
    match dest {
        Location::Daemon(url) => {
            let server = url.socket_addr()?;
            let stream = std::net::TcpStream::connect_timeout(&server, opts.connect_timeout)
                .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
            // The TCP handshake alone: the TLS one adds computation that is no part of the path's RTT.
            params.initial_rtt = Some(started.elapsed());
            let mut ch = start_client(stream, &url.host, &opts.auth, opts.connect_timeout)?;
            params.dest = url.path;
            send_files(&mut ch, server.ip(), scanned, &params, started, report)?;
        }
        Location::Ssh(target) => {
            let mut link = SshLink::open(&target, &opts.ssh)?;
            params.dest = target.path.clone();
            let server_ip = link.server_ip();
            send_files(&mut link.ch, server_ip, scanned, &params, started, report)?;
        }
        Location::Local(p) => {
            return Err(format!(
                "the destination '{}' is not remote: use mover://HOST[:PORT]/DIR or [user@]host:DIR",
                p.display()
            ))
        }
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

/// How a summary names the data channel's protection: `none` is said plainly, never silently.
pub fn cipher_note(cipher: Cipher) -> String {
    if cipher.is_aead() {
        format!("data encrypted and authenticated with {cipher}")
    } else {
        "data NOT encrypted or authenticated (--cipher none)".into()
    }
}
