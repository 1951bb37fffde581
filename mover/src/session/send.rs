//! The sending side of a session over a control channel that is already up, whatever carries it (a TLS or
//! TCP connection to the daemon, the pipes of an SSH session): `push` runs it as a client, the server runs it
//! to answer a `Pull` (PROTOCOL.md §3.3).

use super::data_socket::{bind_data_socket, udp_socket};
use super::error::SessionError;
use super::governor::GovernorTicket;
use super::path_mtu::{choose_mtu, MtuSource};
use super::report::Report;
use crate::connect::unspecified;
use crate::disk::BackendChoice;
use crate::files::{EntryKind, Scanned};
use crate::net::xdp_path::{NetChoice, NetPick, SenderXdp};
use crate::net::xsk;
use crate::net::{ControlChannel, ControlEvent};
use crate::pipeline::live::{Live, Phase};
use crate::pipeline::send::{run_send, SendSetup, XdpTx, TX_BATCH, XDP_TX_FRAMES};
use crate::pipeline::topology::depth;
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::config::DEFAULT_WINDOW_BYTES;
use crate::proto::pmtu::{BASE_DATAGRAM_V4, BASE_DATAGRAM_V6};
use crate::proto::policy::Policy;
use crate::proto::{Config, Sender, StartPlan};
use crate::time::{Clock, MonotonicClock, Time};
use crate::wire::control::{ControlMsg, Hello};
use crate::wire::{Cipher, DropReason, TransferOptions, VERSION};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The protocol core's pacer burst when it runs in the packetizer stage, ahead of the pacer stage.
const PACKETIZER_BURST: Duration = Duration::from_millis(2);
/// How long the sender waits for the receiver's answer to the manifest, plus [`accept_timeout`]'s share
/// per entry.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the receiver may take to answer a manifest of `entries`: it lays out the whole tree (a
/// directory created, a name checked per entry) before it answers, which took over 60 s for a million
/// files on a loaded two-core machine. One second more per [`super::MANIFEST_ENTRIES_PER_SECOND`] entries,
/// the rate the daemon itself allows for receiving the manifest.
fn accept_timeout(entries: usize) -> Duration {
    ACCEPT_TIMEOUT + Duration::from_secs(entries as u64 / super::MANIFEST_ENTRIES_PER_SECOND)
}

/// How the sending side runs: the sender's half of `push`'s options, or what a `Pull` asked for.
#[derive(Clone, Debug)]
pub struct SendParams {
    /// Rate under `fixed`, ceiling under `fair` and `low`, bits per second.
    pub rate_bps: u64,
    /// The rate policy.
    pub policy: Policy,
    /// The adaptive policies' floor, bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Path MTU: datagrams are sized to fit it with IP and UDP headers. `None`: the route's, confirmed by
    /// the first data (PROTOCOL.md §4.8).
    pub mtu: Option<usize>,
    /// The MTU is the base after a black hole at the route's (set by `push` for its rerun).
    pub mtu_after_black_hole: bool,
    /// Receive window in bytes (`None`: the default).
    pub window_bytes: Option<u64>,
    /// Initial RTT estimate (`None`: the protocol default), e.g. the TCP handshake's.
    pub initial_rtt: Option<Duration>,
    /// Stage placement.
    pub cores: CorePlan,
    /// Read files with O_DIRECT where the file system allows it.
    pub direct: bool,
    /// Reads in flight in the reader stage.
    pub queue_depth: u32,
    /// The data path.
    pub net: NetChoice,
    /// How datagrams are sealed.
    pub cipher: Cipher,
    /// The `dest` of the `Hello` (empty when the receiver decides, as in a pull).
    pub dest: String,
    /// Who the receiver is, for errors: "server" or "client".
    pub peer_name: &'static str,
    /// Name files in read errors by their manifest paths instead of their local paths: a daemon serving a
    /// pull, whose errors go to the client as they are and must not show where its root lies.
    pub name_files_by_manifest: bool,
    /// Sync, resume and metadata choices, sent in the `Hello`.
    pub options: TransferOptions,
    /// How long a silent path (no datagram and no control message from the receiver) is tolerated before
    /// the session fails as retryable (`--timeout`); sending pauses long before, and resumes when feedback
    /// returns.
    pub peer_timeout: Duration,
    /// Progress and counters while the session runs, for other threads (a progress bar, metrics).
    pub live: Arc<Live>,
    /// A daemon with rate caps serving a pull: the session joins its governor when its data path starts
    /// and paces within its share itself (PROTOCOL.md §3.7). `None` for a client, whose share (if the
    /// receiving daemon caps) comes as `RateShare` messages.
    pub governor: Option<GovernorTicket>,
    /// A session of a fan-out push (`push --to A --to B`): its seat at the reads the sessions share.
    pub shared_reads: Option<crate::pipeline::shared_reads::ReadSeat>,
}

/// Runs the sending side: `Hello` and the manifest, the receiver's `Accept`, then the data to
/// `data_ip` at the port it names, until `Complete`. Fills `report` as it goes (files, bytes and
/// everything measured); `started` is when the session began, for `seconds`.
pub fn send_files(
    ch: &mut ControlChannel,
    data_ip: IpAddr,
    scanned: Scanned,
    p: &SendParams,
    started: Instant,
    report: &mut Report,
) -> Result<(), SessionError> {
    let sizes: Vec<u64> = scanned.entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).collect();
    report.files = sizes.len() as u64;
    report.bytes = sizes.iter().sum();
    p.live.set_totals(report.files, report.bytes);
    let topology = Topology::new(Side::Sender, &p.cores, &available_cores()).map_err(SessionError::Setup)?;
    let disk = BackendChoice::from_env().map_err(SessionError::Setup)?;
    let (mtu, source, datagram) = datagram_for(data_ip, p.mtu)?;
    let source = if p.mtu_after_black_hole { MtuSource::BlackHole } else { source };
    report.path_mtu = mtu as u64;
    report.pmtu_source = source.name();
    let too_big_for_xdp = source == MtuSource::Route && datagram > xsk::MAX_DATAGRAM && !data_ip.is_loopback();
    let pick = if p.net == NetChoice::Auto && too_big_for_xdp {
        // Larger datagrams through the kernel beat AF_XDP's one-frame limit: per-packet cost is the limit.
        NetPick::udp(format!(
            "the path MTU {mtu} carries datagrams of {datagram} bytes, more than an AF_XDP frame holds ({})",
            xsk::MAX_DATAGRAM
        ))
    } else {
        SenderXdp::open(data_ip, p.net, XDP_TX_FRAMES).map_err(SessionError::Setup)?
    };
    report.net_reason = pick.reason;
    let xdp = pick.xdp;
    // An AF_XDP frame bounds the datagram on the XDP path (jumbo frames need multi-buffer AF_XDP).
    let datagram = if xdp.is_some() { datagram.min(xsk::MAX_DATAGRAM) } else { datagram };
    let mut cfg = Config::new(0, datagram, p.rate_bps);
    cfg.policy = p.policy;
    cfg.min_rate_bps = p.min_rate_bps;
    cfg.trace_rate = std::env::var_os("MOVER_RATE_TRACE").is_some_and(|v| v == "1");
    cfg.window_blocks = p.window_bytes.unwrap_or(DEFAULT_WINDOW_BYTES) / cfg.block_payload as u64;
    if let Some(rtt) = p.initial_rtt {
        cfg.initial_rtt = rtt.max(Duration::from_micros(100));
    }
    // The pacer stage releases datagrams at the rate; the core's own bucket only bounds how far the
    // packetizer runs ahead of it, and the short `tx` ring bounds that anyway. A burst of a few wake-ups lets
    // a late packetizer refill the ring without losing rate (PROTOCOL.md §5).
    cfg.burst = PACKETIZER_BURST;
    cfg.peer_timeout = p.peer_timeout;
    cfg.base_datagram = if data_ip.is_ipv4() { BASE_DATAGRAM_V4 } else { BASE_DATAGRAM_V6 };
    cfg.validate().map_err(SessionError::Setup)?;
    report.datagram_bytes = cfg.max_datagram() as u64;

    let hello = Hello {
        version: VERSION as u16,
        block_payload: cfg.block_payload,
        rate_bps: p.rate_bps,
        window_blocks: cfg.window_blocks,
        entry_count: scanned.entries.len() as u64,
        total_bytes: report.bytes,
        cipher: p.cipher,
        options: p.options,
        policy: p.policy,
        dest: p.dest.clone(),
    };
    let who = p.peer_name;
    if let Err(e) = send_manifest(ch, hello, &scanned.entries) {
        // A peer that refuses early closes the connection; its reason is worth more than our broken pipe.
        return Err(match ch.recv_timeout(Duration::from_secs(2)) {
            Some(ControlEvent::Msg(ControlMsg::Error { message })) => SessionError::Refused { who, message },
            // What broke the connection (a TLS peer met by plain TCP, say) is worth more too.
            Some(ControlEvent::Failed(why)) => SessionError::lost(format!("sending to {}: {e}; {why}", ch.peer_addr())),
            _ => SessionError::lost(format!("sending to {}: {e}", ch.peer_addr())),
        });
    }
    // The receiver's plan (files it holds, ranges of partials it holds), then its `Accept`.
    let mut plan = StartPlan::default();
    // A busy daemon under --insecure-no-auth answers with its queue place until it admits the session.
    let mut place = crate::connect::QueuePlace::default();
    let accept_within = accept_timeout(scanned.entries.len());
    // A receiving daemon that caps rates tells the share before `Accept` (PROTOCOL.md §3.7).
    let mut told_share = None;
    let (session_id, udp_port, key) = loop {
        match ch.expect_msg(accept_within, "waiting for it to accept the session").map_err(SessionError::lost)? {
            ControlMsg::Accept { session_id, udp_port, key } => break (session_id, udp_port, key),
            ControlMsg::Queued { position, waiting } => place.show(position, waiting),
            ControlMsg::RateShare { bps } => told_share = Some(bps),
            ControlMsg::Error { message } => return Err(SessionError::Refused { who, message }),
            msg @ (ControlMsg::Skip { .. } | ControlMsg::Have { .. }) => {
                if let Err(e) = plan.absorb(&msg) {
                    return Err(refuse_plan(ch, who, e.to_string()));
                }
            }
            other => return Err(SessionError::Protocol(format!("unexpected answer from the {who}: {other:?}"))),
        }
    };
    if let Err(e) = plan.validate(&sizes, cfg.block_payload as u64) {
        return Err(refuse_plan(ch, who, e.to_string()));
    }
    report.resumed_bytes = plan.resumed_bytes();
    report.skipped_files = plan.skipped_files();
    report.skipped_bytes = plan.skipped_bytes(&sizes);
    // What this session sends and the receiver commits: every file but the skipped ones.
    report.files -= report.skipped_files;
    report.bytes -= report.skipped_bytes;
    if report.skipped_files as usize == sizes.len() {
        // Nothing to send (the receiver's copy is current, or there are only directories): no data path;
        // the receiver applies what comes last and confirms.
        let summary = match ch.expect_msg(cfg.peer_timeout, "waiting for it to finish").map_err(SessionError::lost)? {
            ControlMsg::Complete(summary) => summary,
            ControlMsg::Error { message } => return Err(SessionError::Refused { who, message }),
            other => return Err(SessionError::Protocol(format!("unexpected answer from the {who}: {other:?}"))),
        };
        report.receiver = summary;
        report.verified = true;
        report.seconds = started.elapsed().as_secs_f64();
        p.live.finish();
        return Ok(());
    }
    cfg.session_id = session_id;
    cfg.cipher = p.cipher;
    cfg.key = key;

    let peer = SocketAddr::new(data_ip, udp_port);
    let mut sock = bind_data_socket(SocketAddr::new(unspecified(data_ip), 0), Some(peer))?;
    // DF on every datagram, and no kernel fragmentation or EMSGSIZE from its PMTU cache: the session's
    // size is confirmed or refuted by what arrives (PROTOCOL.md §4.8).
    sock.set_pmtu_probe().map_err(udp_socket)?;
    let mut _watcher = None;
    let xdp_tx = match xdp {
        Some(x) => {
            report.net = "xdp";
            report.xdp = Some(x.info().clone());
            let local = sock.local_addr().map_err(udp_socket)?;
            let (sink, area, watcher) =
                x.start(local, peer, TX_BATCH, depth::TX_BATCHES).map_err(SessionError::Setup)?;
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
    let clock_start = started.elapsed();
    let mut sender = Sender::with_start(cfg.clone(), sizes.clone(), clock.now(), &plan);
    // A daemon serving a pull takes its own governor's share; a client keeps to what the receiver told. Both
    // before the first datagram.
    let seat = p.governor.as_ref().map(|t| t.join(p.policy, p.rate_bps));
    let rate_share = seat.as_ref().map(|s| s.share.clone());
    if let Some(bps) = rate_share.as_ref().and_then(|cell| cell.get()).or(told_share) {
        sender.set_rate_share(clock.now(), bps);
    }
    let encoder = crate::proto::compress::encoder_for(p.options.compress, crate::time::monotonic_ns)
        .map_err(|error| SessionError::Io { what: "creating the zstd compressor", error })?;
    sender.set_encoder(encoder);
    // The reader streams only the files this session sends (a skipped file is never opened or read).
    let read_sizes: Vec<u64> =
        sizes.iter().enumerate().map(|(i, &s)| if plan.is_skipped(i as u32) { 0 } else { s }).collect();
    let file_names = p.name_files_by_manifest.then(|| {
        let files = scanned.entries.iter().filter(|e| e.kind == crate::files::EntryKind::File);
        files.map(|e| e.rel_path.clone()).collect::<Vec<String>>()
    });
    debug_assert!(file_names.as_ref().is_none_or(|n| n.len() == scanned.file_paths.len()));
    let opener = scanned.opener;
    let live = p.live.clone();
    let bases = scanned.file_bases;
    let setup = SendSetup {
        topology,
        disk,
        direct: p.direct,
        queue_depth: p.queue_depth,
        file_names,
        opener,
        live,
        bases,
        rate_share,
        shared_reads: p.shared_reads.clone(),
    };
    p.live.set_phase(Phase::Transferring);
    let outcome =
        run_send(&mut sender, scanned.file_paths, read_sizes, sock, xdp_tx, ch, clock, cfg.max_datagram(), &setup);
    // The data path is over: its share goes back to the others at once.
    drop(seat);
    report.stages = outcome.stages;
    report.disk = outcome.disk.name();
    let outcome = outcome.result;
    let stats = sender.stats();
    report.packets_sent = stats.packets_sent;
    report.packets_retransmitted = stats.packets_retransmitted;
    report.rounds = stats.rounds;
    report.receiver_stalls = stats.overdue_holds;
    report.pmtu_confirmed = stats.pmtu_confirmed;
    report.feedback_dropped_invalid = stats.drops.invalid();
    report.feedback_dropped_auth = stats.drops.get(DropReason::BadTag);
    report.feedback_dropped_replayed = stats.drops.get(DropReason::Replayed) + stats.drops.get(DropReason::TooOld);
    report.rtt_ms = sender.srtt_ns() as f64 / 1e6;
    report.max_rate_bps = sender.max_rate_bps();
    report.final_rate_bps = sender.rate_bps();
    report.rate_share_bps = sender.rate_share_bps();
    report.sent_bytes = stats.payload_bytes_sent;
    report.raw_wire_bytes = stats.payload_bytes_sent;
    report.wire_bytes = stats.wire_payload_bytes_sent;
    report.compress = p.options.compress;
    report.first_data_seconds =
        stats.first_new_at.map(|t| (clock_start + Duration::from_nanos(t.since_ns(Time::ZERO))).as_secs_f64());
    report.seconds = started.elapsed().as_secs_f64();
    // What crossed the network: resumed bytes were already at the receiver.
    report.goodput_bps = report.bytes.saturating_sub(report.resumed_bytes) as f64 * 8.0 / report.seconds.max(1e-9);
    let failure = sender.failure_kind();
    let summary = outcome.map_err(|m| SessionError::from_transfer(m, failure, who, cfg.peer_timeout))?;
    report.receiver = summary;
    report.verified = summary.files == report.files && summary.bytes == report.bytes;
    if !report.verified && summary.files > 0 {
        return Err(SessionError::Partial {
            who,
            committed_files: summary.files,
            files: report.files,
            committed_bytes: summary.bytes,
            bytes: report.bytes,
        });
    }
    if !report.verified {
        return Err(SessionError::Transfer(format!(
            "{who} committed {} files / {} bytes of {} / {}",
            summary.files, summary.bytes, report.files, report.bytes
        )));
    }
    p.live.finish();
    Ok(())
}

/// The path MTU towards `data_ip` (`mtu`: `--mtu`, else the route's), where it came from, and the UDP
/// payload of a full-size datagram on it (before the AF_XDP frame's bound).
fn datagram_for(data_ip: IpAddr, mtu: Option<usize>) -> Result<(usize, MtuSource, usize), SessionError> {
    let ip_overhead = if data_ip.is_ipv4() { 28 } else { 48 };
    let (mtu, source) = choose_mtu(data_ip, mtu);
    let datagram = mtu
        .checked_sub(ip_overhead)
        .filter(|&d| d >= 256)
        .ok_or_else(|| SessionError::Setup(format!("MTU {mtu} is too small")))?;
    Ok((mtu, source, datagram.min(65_507)))
}

/// The block payload a push to `data_ip` announces in its `Hello` on a UDP-socket path (and under `--net
/// xdp`, whose frames bound it): what the receiver's resume grid is cut by, so a dry run asks with it
/// (`session::dry_run`). Under `--net auto` on a NIC where AF_XDP binds zero-copy the push's may be smaller
/// (decision 0038).
pub(super) fn block_payload(data_ip: IpAddr, mtu: Option<usize>, net: NetChoice) -> Result<u16, SessionError> {
    let (_, _, datagram) = datagram_for(data_ip, mtu)?;
    let datagram = if net == NetChoice::Xdp { datagram.min(xsk::MAX_DATAGRAM) } else { datagram };
    Ok(crate::proto::config::block_payload_for(datagram))
}

fn send_manifest(ch: &mut ControlChannel, hello: Hello, entries: &[crate::files::Entry]) -> std::io::Result<()> {
    let msgs = std::iter::once(ControlMsg::Hello(hello))
        .chain(entries.iter().map(|e| ControlMsg::Entry(e.clone())))
        .chain(std::iter::once(ControlMsg::ManifestEnd));
    ch.send_all(msgs)
}

/// A receiver's plan this sender cannot follow (a bug or a hostile peer): says why to the receiver and
/// fails the session with the same line.
fn refuse_plan(ch: &mut ControlChannel, who: &str, why: String) -> SessionError {
    let message = format!("the {who}'s resume plan is invalid: {why}");
    let _ = ch.send(&ControlMsg::Error { message: message.clone() });
    SessionError::Protocol(message)
}
