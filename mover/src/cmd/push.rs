//! `mover push`: send files and directory trees to a `mover serve`.

use super::json::JsonObject;
use super::url::MoverUrl;
use crate::files::{scan_sources, EntryKind, SourceFiles};
use crate::net::{ControlChannel, ControlEvent, DataSocket, RxBatch, TxBatch};
use crate::proto::config::DEFAULT_WINDOW_BYTES;
use crate::proto::{Config, Sender, SenderState};
use crate::rate::{format_bytes, format_rate_bps};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::{ControlMsg, Hello, ReceiverSummary};
use crate::wire::VERSION;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Datagrams per send batch: a few pacer bursts' worth.
const TX_BATCH: usize = 64;
/// The pacing tick: when the pacer says wait, sleep at least this long and then release what the rate allows
/// since. Timers here cannot make gaps shorter than ~25 us reliably (MACHINE-NOTES), and waking per packet
/// costs a syscall and a context switch each; the pacer's burst tolerance (200 us) covers one tick.
const PACING_TICK: Duration = Duration::from_micros(100);
/// How long to wait for the server's answer to the manifest.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// What `mover push` was asked to do.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Files and directories to send; each lands under the destination by its basename.
    pub sources: Vec<PathBuf>,
    /// `mover://HOST[:PORT]/DIR`.
    pub url: String,
    /// Sending rate in bits per second of UDP payload.
    pub rate_bps: u64,
    /// Path MTU: datagrams are sized to fit it with IP and UDP headers.
    pub mtu: usize,
    /// Receive window in bytes (default 512 MiB).
    pub window_bytes: Option<u64>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Print progress and the summary on stderr.
    pub verbose: bool,
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
    /// The data path used.
    pub net: &'static str,
    /// The sending rate asked for.
    pub rate_bps: u64,
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
            .f64("rtt_ms", self.rtt_ms)
            .u64("rounds", self.rounds as u64)
            .u64("datagram_bytes", self.datagram_bytes)
            .bool("gso", self.gso)
            .u64("skipped", self.skipped)
            .obj(
                "receiver",
                JsonObject::new()
                    .u64("files", r.files)
                    .u64("bytes", r.bytes)
                    .u64("packets_received", r.packets_received)
                    .u64("duplicates", r.duplicates)
                    .u64("dropped_invalid", r.dropped_invalid)
                    .u64("repaired_files", r.repaired_files),
            );
        if let Some(e) = &self.error {
            j = j.str("error", e);
        }
        j.finish()
    }
}

/// Runs a push. The report always comes back: on failure `verified` is false and `error` says why.
pub fn push(opts: &PushOptions) -> PushReport {
    let mut report = PushReport { net: "udp", rate_bps: opts.rate_bps, ..PushReport::default() };
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

    let started = Instant::now();
    let mut ch = ControlChannel::connect(server, opts.connect_timeout)
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    let handshake_rtt = started.elapsed();
    let ip_overhead = if server.is_ipv4() { 28 } else { 48 };
    let datagram =
        opts.mtu.checked_sub(ip_overhead).filter(|&d| d >= 256).ok_or(format!("MTU {} is too small", opts.mtu))?;
    let datagram = datagram.min(65_507);
    let mut cfg = Config::new(0, datagram, opts.rate_bps);
    cfg.window_blocks = opts.window_bytes.unwrap_or(DEFAULT_WINDOW_BYTES) / cfg.block_payload as u64;
    cfg.initial_rtt = handshake_rtt.max(Duration::from_micros(100));
    cfg.validate()?;
    report.datagram_bytes = cfg.max_datagram() as u64;

    let hello = Hello {
        version: VERSION as u16,
        block_payload: cfg.block_payload,
        rate_bps: opts.rate_bps,
        window_blocks: cfg.window_blocks,
        entry_count: scanned.entries.len() as u64,
        total_bytes: report.bytes,
        dest: url.path.clone(),
    };
    if let Err(e) = send_manifest(&mut ch, hello, &scanned.entries) {
        // A server that refuses early closes the connection; its reason is worth more than our broken pipe.
        if let Some(ControlEvent::Msg(ControlMsg::Error { message })) = ch.recv_timeout(Duration::from_secs(2)) {
            return Err(format!("server refused: {message}"));
        }
        return Err(format!("sending to {server}: {e}"));
    }
    let (session_id, udp_port) = match ch.expect_msg(ACCEPT_TIMEOUT, "waiting for it to accept the session")? {
        ControlMsg::Accept { session_id, udp_port } => (session_id, udp_port),
        ControlMsg::Error { message } => return Err(format!("server refused: {message}")),
        other => return Err(format!("unexpected answer from the server: {other:?}")),
    };
    cfg.session_id = session_id;

    let any: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let mut sock = DataSocket::bind(SocketAddr::new(any, 0)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(SocketAddr::new(server.ip(), udp_port)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.set_buffer_bytes(super::serve::SOCKET_BUFFER_BYTES);
    report.gso = sock.enable_gso(cfg.max_datagram() as u16);

    let clock = MonotonicClock::new();
    let mut sender = Sender::new(cfg.clone(), sizes, clock.now());
    let mut source = SourceFiles::new(scanned.file_paths);
    let outcome = transfer(&mut sender, &mut source, &mut sock, &mut ch, &clock, cfg.max_datagram());
    let stats = sender.stats();
    report.packets_sent = stats.packets_sent;
    report.packets_retransmitted = stats.packets_retransmitted;
    report.rounds = stats.rounds;
    report.rtt_ms = sender.srtt_ns() as f64 / 1e6;
    report.seconds = started.elapsed().as_secs_f64();
    report.goodput_bps = report.bytes as f64 * 8.0 / report.seconds.max(1e-9);
    report.gso = sock.gso_enabled();
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
            "mover push: {} files, {} in {:.2} s: {} goodput, {} packets ({} retransmitted), verified",
            report.files,
            format_bytes(report.bytes),
            report.seconds,
            format_rate_bps(report.goodput_bps),
            report.packets_sent,
            report.packets_retransmitted
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

/// The sending loop: feedback in, control in, paced datagrams out, until the receiver confirms or fails.
fn transfer(
    sender: &mut Sender,
    source: &mut SourceFiles,
    sock: &mut DataSocket,
    ch: &mut ControlChannel,
    clock: &MonotonicClock,
    max_datagram: usize,
) -> Result<ReceiverSummary, String> {
    let mut tx = TxBatch::new(TX_BATCH, max_datagram);
    let mut rx = RxBatch::new(16, max_datagram);
    loop {
        let now = clock.now();
        loop {
            let n = match sock.recv_batch(&mut rx) {
                Ok(n) => n,
                // ICMP port unreachable for an earlier datagram: the server's socket is gone. The control
                // channel carries the reason (an Error, or the close), so this is not the error to report.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => 0,
                Err(e) => return Err(format!("receiving feedback: {e}")),
            };
            for i in 0..n {
                let _ = sender.handle_datagram(now, rx.get(i).0);
            }
            if n < 16 {
                break;
            }
        }
        while let Some(ev) = ch.try_recv() {
            match ev {
                ControlEvent::Msg(m) => sender.handle_control(now, m),
                ControlEvent::Closed if !sender.is_finished() => {
                    sender.fail("the server closed the control connection".into())
                }
                ControlEvent::Failed(e) => sender.fail(format!("control connection failed: {e}")),
                ControlEvent::Closed => {}
            }
        }
        sender.handle_timeout(now);
        if tx.is_empty() {
            while let Some(slot) = tx.slot() {
                match sender.poll_transmit(now, source, slot)? {
                    Some(len) => tx.commit(len),
                    None => break,
                }
            }
        }
        if !tx.is_empty() {
            match sock.send_batch(&mut tx) {
                Ok(_) => {}
                // ICMP port unreachable from an earlier datagram: the receiver's socket is gone or not
                // yet there. Count it as loss; the control channel says whether the session is over.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {}
                Err(e) => return Err(format!("sending data: {e}")),
            }
        }
        while let Some(m) = sender.poll_control() {
            ch.send(&m).map_err(|e| format!("sending to the server: {e}"))?;
        }
        match sender.state() {
            SenderState::Done(summary) => return Ok(*summary),
            SenderState::Failed(m) => {
                let _ = ch.send(&ControlMsg::Error { message: m.clone() });
                return Err(m.clone());
            }
            _ => {}
        }
        if !tx.is_empty() {
            sock.wait_writable(Duration::from_millis(1)).map_err(|e| e.to_string())?;
            continue;
        }
        let wait = sender.poll_timeout(now).map_or(Duration::from_millis(10), |d| d.since(clock.now()));
        if !wait.is_zero() {
            // Feedback wakes us early; otherwise sleep a whole tick so each wake-up sends a batch.
            let wait = wait.max(PACING_TICK).min(Duration::from_millis(10));
            sock.wait_readable(wait).map_err(|e| e.to_string())?;
        }
    }
}
