//! The receiving side of a session over a control channel that is already up: the server runs it for a
//! push, `pull` runs it as a client (PROTOCOL.md §3.3). The receiver picks the session id, the key and the
//! UDP port, whichever side dialled.

use super::data_socket::{bind_data_socket, udp_socket};
use super::error::SessionError;
use super::governor::GovernorTicket;
use super::handshake::{check_hello, read_manifest};
use super::limits::Limits;
use super::memory::MemoryBudget;
use super::report::{Direction, Report};
use crate::disk::BackendChoice;
use crate::files::{DestTree, EntryKind, FileStart, RelPath, StartDecision};
use crate::net::xdp_path::{NetChoice, ReceiverXdp};
use crate::net::ControlChannel;
use crate::pipeline::live::{Live, Phase};
use crate::pipeline::recv::{run_receive, ReceiveSetup};
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::{Config, Receiver, StartPlan};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::{ControlMsg, Hello, ReceiverSummary};
use crate::wire::data::DATA_OVERHEAD;
use crate::wire::{SessionKey, KEY_LEN};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the receiving side runs: the receiver's half of `serve`'s options.
#[derive(Clone, Debug)]
pub struct ReceiveParams {
    /// Stage placement.
    pub cores: CorePlan,
    /// Writes in flight in the writer stage.
    pub queue_depth: u32,
    /// The data path.
    pub net: NetChoice,
    /// fsync every file before it is renamed into place.
    pub fsync: bool,
    /// What one session may ask for (entries, bytes, name length), judged before anything is created.
    pub limits: Limits,
    /// How long a silent path (no datagram and no control message from the sender) is tolerated before the
    /// session fails as retryable (`--timeout`; a daemon uses the default).
    pub peer_timeout: Duration,
    /// Who the sender is, for errors: "client" (the daemon receiving a push) or "server" (a pull).
    pub peer_name: &'static str,
    /// The memory account the session reserves its manifest and buffers from (a daemon's `--max-memory`).
    pub memory: MemoryBudget,
    /// Progress and counters while the session runs, for other threads (a progress bar, metrics).
    pub live: Arc<Live>,
    /// Take directories and regular files only (a relay's spool holds nothing else).
    pub files_and_dirs_only: bool,
    /// A daemon with rate caps (`--max-rate`, `--user-max-rate`): the session joins its governor when its
    /// data path starts and tells the sender its share (PROTOCOL.md §3.7). `None`: nothing is capped.
    pub governor: Option<GovernorTicket>,
}

/// Where a receiver puts what arrives, and which addresses its data path uses.
pub struct ReceiveTarget<'a> {
    /// Every destination lies below this directory.
    pub root: &'a Path,
    /// The destination directory under `root`, from the `Hello`'s `dest` (a puller ignores it and names its
    /// own).
    pub dest_of: &'a dyn Fn(&str) -> Result<RelPath, SessionError>,
    /// The address to bind the UDP data socket to.
    pub bind_ip: IpAddr,
    /// The sender's address (for the XDP program's match).
    pub peer_ip: IpAddr,
}

/// Runs the receiving side after the sender's `hello`: the manifest, `Accept` with a fresh session id,
/// key and UDP port, then the transfer until every file is committed and `Complete` is sent.
pub fn receive_files(
    ch: &mut ControlChannel,
    hello: Hello,
    target: &ReceiveTarget,
    p: &ReceiveParams,
) -> Result<Report, SessionError> {
    let topology = Topology::new(Side::Receiver, &p.cores, &available_cores()).map_err(SessionError::Setup)?;
    let disk = BackendChoice::from_env().map_err(SessionError::Setup)?;
    let started = Instant::now();
    check_hello(&hello)?;
    p.limits.check_hello(&hello)?;
    // Read the whole manifest before judging the destination, so a refusal reaches a sender that has
    // finished writing (it would otherwise see a broken pipe instead of the reason).
    // Given back when the session ends, whichever way.
    let mut memory = p.memory.reservation(p.limits.max_manifest_memory);
    let entries = read_manifest(ch, &hello, &mut memory)?;
    p.limits.check_entries(&entries)?;
    if p.files_and_dirs_only {
        super::relay::check_entries(&entries)?;
    }
    // The tree keeps about one more copy of every path (its slots, and the sets that judge the manifest).
    memory.grow(memory.manifest_bytes(), "its destination tree")?;
    let dest = (target.dest_of)(&hello.dest)?;
    let session_id = crate::random::random_u64();
    let key = SessionKey(if hello.cipher.is_aead() {
        crate::random::random_bytes::<{ crate::wire::KEY_LEN }>()
            .map_err(|error| SessionError::Io { what: "getrandom for a session key", error })?
    } else {
        [0; KEY_LEN]
    });
    // Paths in its errors lie below the root, which the peer may not know: shown relative to it.
    let mut tree =
        DestTree::prepare(target.root, &dest, &entries, session_id).map_err(|e| e.relative_to(target.root))?;
    tree.set_fsync(p.fsync);
    tree.set_options(&hello.options);
    // Skip what is current, claim and resume (or empty) each partial of an earlier run, and journal from
    // here on; the sender learns the plan before `Accept` (PROTOCOL.md §3.2, Skip and Have).
    let files = || entries.iter().filter(|e| e.kind == EntryKind::File);
    let expected: Vec<Option<u128>> = files().map(|e| e.content_hash).collect();
    let decision = tree
        .decide_start(&hello.options, &expected, u32::from(hello.block_payload))
        .map_err(|e| e.relative_to(target.root))?;
    for (file_id, why) in &decision.started_over {
        eprintln!("mover serve: starting file id {file_id} over: {why}");
    }
    let plan = start_plan(&decision);
    let sizes: Vec<u64> = files().map(|e| e.size).collect();
    p.live.set_totals(sizes.len() as u64, sizes.iter().sum());
    if decision.skipped_files as usize == sizes.len() {
        // Nothing to receive (a second run of an unchanged tree, or only directories): no data path at all.
        let report = finish_without_data(ch, tree, &plan, session_id, key, started, &hello, &decision)?;
        // Everything is current: done, for whoever reads the counters (a pull's progress, the metrics).
        p.live.finish();
        return Ok(report);
    }
    // Before any data flows: a transfer that cannot fit is refused with the numbers (session/room.rs).
    super::room::check_room(target.root, &dest, &entries, &decision, p.peer_name == "client")?;
    // The manifest is judged and laid out: the tree holds what the data path needs. Freed (and its pages
    // given back) before the data-path buffers are allocated, so the two never add up to the peak.
    drop(entries);
    super::allocator::release_freed();
    let datagram = hello.block_payload as usize + DATA_OVERHEAD;
    memory.grow(crate::pipeline::recv::buffer_bytes(&topology, datagram), "its data-path buffers")?;
    let sock = bind_data_socket(SocketAddr::new(target.bind_ip, 0), None)?;
    let udp_port = sock.local_addr().map_err(udp_socket)?.port();
    // Before the accept, so that the first datagram finds the program and sockets in place. Dropped (the
    // program detached) when the session ends.
    let pick = ReceiverXdp::open(target.peer_ip, udp_port, datagram, p.net).map_err(SessionError::Setup)?;
    let (mut xdp, net_reason) = (pick.xdp, pick.reason);
    let mut cfg = Config::new(session_id, hello.block_payload as usize + DATA_OVERHEAD, hello.rate_bps);
    cfg.window_blocks = hello.window_blocks;
    cfg.peer_timeout = p.peer_timeout;
    cfg.cipher = hello.cipher;
    cfg.key = key;
    let clock = MonotonicClock::new();
    let mut core = Receiver::with_start(cfg.clone(), sizes, clock.now(), &plan);
    // The data path starts: the session takes its share of the daemon's caps (the others' shrink) and the
    // sender hears it before `Accept`, so it never starts above it. Given back when this function returns.
    let seat = p.governor.as_ref().map(|t| t.join(hello.policy, hello.rate_bps));
    let rate_share = seat.as_ref().map(|s| s.share.clone());
    if let Some(bps) = rate_share.as_ref().and_then(|cell| cell.get()) {
        core.set_rate_share(bps);
    }
    let told = std::iter::from_fn(|| core.poll_control());
    let accept = ControlMsg::Accept { session_id, udp_port, key };
    let msgs = plan.to_messages().into_iter().chain(told).chain(std::iter::once(accept));
    ch.send_all(msgs).map_err(|error| SessionError::Io { what: "sending the resume plan and accept", error })?;

    let setup = ReceiveSetup { topology, disk, queue_depth: p.queue_depth, live: p.live.clone(), rate_share };
    p.live.set_phase(Phase::Transferring);
    let source = xdp.as_mut().and_then(|x| x.take_source());
    let outcome = run_receive(core, tree, sock, source, ch, clock, cfg.max_datagram(), &setup);
    // The data path is over: its share goes back to the others now, not after the closing linger.
    drop(seat);
    let xdp_counters = xdp.as_ref().map_or([0; 3], |x| x.counters());
    let (failure, timeout) = (outcome.failure, cfg.peer_timeout);
    let summary = outcome.result.map_err(|m| SessionError::from_transfer(m, failure, p.peer_name, timeout))?;
    p.live.finish();
    // Let the sender read `Complete` and close first, so our close cannot reset the connection.
    let _ = ch.recv_timeout(Duration::from_secs(5));
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        peer: Some(ch.peer_addr()),
        files: summary.files,
        bytes: summary.bytes,
        seconds,
        // What crossed the network: resumed bytes were already here.
        goodput_bps: summary.bytes.saturating_sub(decision.resumed_bytes) as f64 * 8.0 / seconds.max(1e-9),
        verified: true,
        net: if xdp.is_some() { "xdp" } else { "udp" },
        net_reason,
        xdp: xdp.as_ref().map(|x| x.info().clone()),
        xdp_counters,
        rate_bps: hello.rate_bps,
        receiver: summary,
        disk: outcome.disk.name(),
        stages: outcome.stages,
        cipher: hello.cipher,
        resumed_bytes: decision.resumed_bytes,
        skipped_files: decision.skipped_files,
        skipped_bytes: decision.skipped_bytes,
        compress: hello.options.compress,
        wire_bytes: outcome.delivered.1,
        raw_wire_bytes: outcome.delivered.0,
        ..Report::new(Direction::Received, hello.rate_bps, Default::default(), hello.cipher)
    })
}

/// The sender's view of a start decision: which files to skip, which ranges the receiver holds.
fn start_plan(decision: &StartDecision) -> StartPlan {
    let mut plan = StartPlan::default();
    for (file_id, start) in decision.files.iter().enumerate() {
        match start {
            FileStart::Skip => plan.skip_file(file_id as u32),
            FileStart::Resume { have } if !have.is_empty() => plan.add_have(file_id as u32, have.clone()),
            FileStart::Resume { .. } | FileStart::Fresh => {}
        }
    }
    plan
}

/// A session with nothing to send: the plan and `Accept` (no UDP port), then what comes last (directory
/// metadata, links) and `Complete`, without a data path.
#[allow(clippy::too_many_arguments)]
fn finish_without_data(
    ch: &mut ControlChannel,
    mut tree: DestTree,
    plan: &StartPlan,
    session_id: u64,
    key: SessionKey,
    started: Instant,
    hello: &Hello,
    decision: &StartDecision,
) -> Result<Report, SessionError> {
    let accept = ControlMsg::Accept { session_id, udp_port: 0, key };
    let msgs = plan.to_messages().into_iter().chain(std::iter::once(accept));
    ch.send_all(msgs).map_err(|error| SessionError::Io { what: "sending the resume plan and accept", error })?;
    if let Err(e) = tree.finish() {
        let message = format!("setting directory metadata: {e}");
        let _ = ch.send(&ControlMsg::Error { message: message.clone() });
        return Err(SessionError::Transfer(message));
    }
    let summary = ReceiverSummary { dropped: tree.dropped(), ..ReceiverSummary::default() };
    ch.send(&ControlMsg::Complete(summary)).map_err(|error| SessionError::Io { what: "sending complete", error })?;
    // Let the sender read `Complete` and close first, so our close cannot reset the connection.
    let _ = ch.recv_timeout(Duration::from_secs(5));
    Ok(Report {
        peer: Some(ch.peer_addr()),
        seconds: started.elapsed().as_secs_f64(),
        verified: true,
        rate_bps: hello.rate_bps,
        receiver: summary,
        resumed_bytes: decision.resumed_bytes,
        skipped_files: decision.skipped_files,
        skipped_bytes: decision.skipped_bytes,
        ..Report::new(Direction::Received, hello.rate_bps, Default::default(), hello.cipher)
    })
}
