//! Both sides of a session over a control channel that is already up, whatever carries it: a TCP
//! connection to the daemon, the pipes of an SSH session, or (later) TLS. `push` and `serve` run the
//! sending and receiving side here in their usual roles; `pull` and a server answering a `Pull` run them the
//! other way round (PROTOCOL.md §3.3).

use super::limits::Limits;
use super::push::PushReport;
use super::serve::{check_hello, read_manifest, ServeOptions, SessionReport, HANDSHAKE_TIMEOUT, SOCKET_BUFFER_BYTES};
use crate::disk::BackendChoice;
use crate::files::{resolve_under_root, sanitize_dest_dir, scan_sources, DestTree, EntryKind, RelPath, Scanned};
use crate::net::xdp_path::{NetChoice, ReceiverXdp, SenderXdp};
use crate::net::xsk;
use crate::net::{ControlChannel, ControlEvent, DataSocket};
use crate::pipeline::recv::{run_receive, ReceiveSetup};
use crate::pipeline::send::{run_send, SendSetup, XdpTx, TX_BATCH, XDP_TX_FRAMES};
use crate::pipeline::topology::depth;
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::proto::config::DEFAULT_WINDOW_BYTES;
use crate::proto::policy::Policy;
use crate::proto::{Config, Receiver, Sender};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::{ControlMsg, Hello, Pull};
use crate::wire::data::DATA_OVERHEAD;
use crate::wire::{Cipher, DropReason, SessionKey, KEY_LEN, VERSION};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The protocol core's pacer burst when it runs in the packetizer stage, ahead of the pacer stage.
const PACKETIZER_BURST: Duration = Duration::from_millis(2);
/// How long the sender waits for the receiver's answer to the manifest.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the sending side runs: the sender's half of `push`'s options, or what a `Pull` asked for.
#[derive(Clone, Debug)]
pub struct SendParams {
    /// Rate under `fixed`, ceiling under `fair` and `low`, bits per second.
    pub rate_bps: u64,
    /// The rate policy.
    pub policy: Policy,
    /// The adaptive policies' floor, bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Path MTU: datagrams are sized to fit it with IP and UDP headers.
    pub mtu: usize,
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
    report: &mut PushReport,
) -> Result<(), String> {
    let sizes: Vec<u64> = scanned.entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).collect();
    report.files = sizes.len() as u64;
    report.bytes = sizes.iter().sum();
    let topology = Topology::new(Side::Sender, &p.cores, &available_cores())?;
    let disk = BackendChoice::from_env()?;
    let ip_overhead = if data_ip.is_ipv4() { 28 } else { 48 };
    let datagram = p.mtu.checked_sub(ip_overhead).filter(|&d| d >= 256).ok_or(format!("MTU {} is too small", p.mtu))?;
    let datagram = datagram.min(65_507);
    let xdp = SenderXdp::open(data_ip, p.net, XDP_TX_FRAMES)?;
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
    cfg.validate()?;
    report.datagram_bytes = cfg.max_datagram() as u64;

    let hello = Hello {
        version: VERSION as u16,
        block_payload: cfg.block_payload,
        rate_bps: p.rate_bps,
        window_blocks: cfg.window_blocks,
        entry_count: scanned.entries.len() as u64,
        total_bytes: report.bytes,
        cipher: p.cipher,
        dest: p.dest.clone(),
    };
    let who = p.peer_name;
    if let Err(e) = send_manifest(ch, hello, &scanned.entries) {
        // A peer that refuses early closes the connection; its reason is worth more than our broken pipe.
        return Err(match ch.recv_timeout(Duration::from_secs(2)) {
            Some(ControlEvent::Msg(ControlMsg::Error { message })) => format!("{who} refused: {message}"),
            // What broke the connection (a TLS peer met by plain TCP, say) is worth more too.
            Some(ControlEvent::Failed(why)) => format!("sending to {}: {e}; {why}", ch.peer_addr()),
            _ => format!("sending to {}: {e}", ch.peer_addr()),
        });
    }
    let (session_id, udp_port, key) = match ch.expect_msg(ACCEPT_TIMEOUT, "waiting for it to accept the session")? {
        ControlMsg::Accept { session_id, udp_port, key } => (session_id, udp_port, key),
        ControlMsg::Error { message } => return Err(format!("{who} refused: {message}")),
        other => return Err(format!("unexpected answer from the {who}: {other:?}")),
    };
    cfg.session_id = session_id;
    cfg.cipher = p.cipher;
    cfg.key = key;

    let peer = SocketAddr::new(data_ip, udp_port);
    let mut sock =
        DataSocket::bind(SocketAddr::new(unspecified(data_ip), 0)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(peer).map_err(|e| format!("UDP socket: {e}"))?;
    sock.set_buffer_bytes(SOCKET_BUFFER_BYTES);
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
    let setup = SendSetup { topology, disk, direct: p.direct, queue_depth: p.queue_depth };
    let outcome = run_send(&mut sender, scanned.file_paths, sizes, sock, xdp_tx, ch, clock, cfg.max_datagram(), &setup);
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
            "{who} committed {} files / {} bytes of {} / {}",
            summary.files, summary.bytes, report.files, report.bytes
        ));
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
}

impl ReceiveParams {
    /// The receiving half of a server's options.
    pub fn of(opts: &ServeOptions) -> ReceiveParams {
        ReceiveParams {
            cores: opts.cores.clone(),
            queue_depth: opts.queue_depth,
            net: opts.net,
            fsync: opts.fsync,
            limits: opts.limits.clone(),
        }
    }
}

/// Where a receiver puts what arrives, and which addresses its data path uses.
pub struct ReceiveTarget<'a> {
    /// Every destination lies below this directory.
    pub root: &'a Path,
    /// The destination directory under `root`, from the `Hello`'s `dest` (a puller ignores it and names its
    /// own).
    pub dest_of: &'a dyn Fn(&str) -> Result<RelPath, String>,
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
) -> Result<SessionReport, String> {
    let topology = Topology::new(Side::Receiver, &p.cores, &available_cores())?;
    let disk = BackendChoice::from_env()?;
    let started = Instant::now();
    check_hello(&hello)?;
    p.limits.check_hello(&hello)?;
    // Read the whole manifest before judging the destination, so a refusal reaches a sender that has
    // finished writing (it would otherwise see a broken pipe instead of the reason).
    let entries = read_manifest(ch, &hello)?;
    p.limits.check_entries(&entries)?;
    let dest = (target.dest_of)(&hello.dest)?;
    let session_id = super::random_u64();
    let key = SessionKey(if hello.cipher.is_aead() { super::random_key()? } else { [0; KEY_LEN] });
    let mut tree = DestTree::prepare(target.root, &dest, &entries, session_id)?;
    tree.set_fsync(p.fsync);
    let sizes: Vec<u64> = entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).collect();
    let sock = DataSocket::bind(SocketAddr::new(target.bind_ip, 0)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.set_buffer_bytes(SOCKET_BUFFER_BYTES);
    let udp_port = sock.local_addr().map_err(|e| e.to_string())?.port();
    // Before the accept, so that the first datagram finds the program and sockets in place. Dropped (the
    // program detached) when the session ends.
    let datagram = hello.block_payload as usize + DATA_OVERHEAD;
    let mut xdp = ReceiverXdp::open(target.peer_ip, udp_port, datagram, p.net)?;
    ch.send(&ControlMsg::Accept { session_id, udp_port, key }).map_err(|e| format!("sending accept: {e}"))?;

    let mut cfg = Config::new(session_id, hello.block_payload as usize + DATA_OVERHEAD, hello.rate_bps);
    cfg.window_blocks = hello.window_blocks;
    cfg.cipher = hello.cipher;
    cfg.key = key;
    let clock = MonotonicClock::new();
    let core = Receiver::new(cfg.clone(), sizes, clock.now());
    let setup = ReceiveSetup { topology, disk, queue_depth: p.queue_depth };
    let source = xdp.as_mut().and_then(|x| x.take_source());
    let outcome = run_receive(core, tree, sock, source, ch, clock, cfg.max_datagram(), &setup);
    let xdp_counters = xdp.as_ref().map_or([0; 3], |x| x.counters());
    let summary = outcome.result?;
    // Let the sender read `Complete` and close first, so our close cannot reset the connection.
    let _ = ch.recv_timeout(Duration::from_secs(5));
    Ok(SessionReport {
        peer: ch.peer_addr(),
        summary,
        seconds: started.elapsed().as_secs_f64(),
        disk: outcome.disk.name(),
        stages: outcome.stages,
        xdp: xdp.as_ref().map(|x| x.info().clone()),
        xdp_counters,
        pulled: false,
        cipher: hello.cipher,
    })
}

/// What a server does with a session's first message: a `Hello` opens a push (the server receives), a
/// `Pull` a pull (the server sends). `absolute_in_root` lets paths name the root by its absolute path, as
/// `mover serve --stdio` does for scp-style `host:/home/me/x` (PROTOCOL.md §3.3).
pub fn serve_first_message(
    ch: &mut ControlChannel,
    opts: &ServeOptions,
    absolute_in_root: bool,
) -> Result<ServedSession, String> {
    let root = opts.root.clone();
    let dest_of = move |d: &str| path_under_root(&root, d, absolute_in_root);
    match ch.expect_msg(HANDSHAKE_TIMEOUT, "waiting for its hello")? {
        ControlMsg::Hello(hello) => {
            let target = ReceiveTarget {
                root: &opts.root,
                dest_of: &dest_of,
                bind_ip: ch.local_addr().ip(),
                peer_ip: ch.peer_addr().ip(),
            };
            receive_files(ch, hello, &target, &ReceiveParams::of(opts)).map(ServedSession::Received)
        }
        ControlMsg::Pull(pull) => serve_pull(ch, pull, &dest_of, opts).map(ServedSession::Sent),
        other => Err(format!("expected a hello or a pull request, got {other:?}")),
    }
}

/// A finished session, as the server saw it.
pub enum ServedSession {
    /// The client pushed; the server received.
    Received(SessionReport),
    /// The client pulled; the server sent.
    Sent(PushReport),
}

/// Answers a `Pull`: finds the requested file or directory under the root (confined like a destination,
/// and the last component must not be a symlink or a device either), then runs the sending side to the
/// client's address.
fn serve_pull(
    ch: &mut ControlChannel,
    pull: Pull,
    resolve: &dyn Fn(&str) -> Result<RelPath, String>,
    opts: &ServeOptions,
) -> Result<PushReport, String> {
    let started = Instant::now();
    if pull.version != VERSION as u16 {
        return Err(format!("protocol version {} is not supported (this server speaks {VERSION})", pull.version));
    }
    if pull.rate_bps == 0 || pull.min_rate_bps > pull.rate_bps {
        return Err(format!("rate {} with floor {} is not a valid request", pull.rate_bps, pull.min_rate_bps));
    }
    opts.limits.check_cipher(pull.cipher)?;
    let rel = resolve(&pull.path)?;
    let source = source_under_root(&opts.root, &rel)?;
    let scanned = scan_sources(std::slice::from_ref(&source))?;
    for (path, why) in &scanned.skipped {
        eprintln!("mover serve: not sending '{}': {why}", path.display());
    }
    let mut report = PushReport {
        net: "udp",
        disk: "none",
        rate_bps: pull.rate_bps,
        policy: pull.policy,
        cipher: pull.cipher,
        ..PushReport::default()
    };
    report.skipped = scanned.skipped.len() as u64;
    let params = SendParams {
        rate_bps: pull.rate_bps,
        policy: pull.policy,
        min_rate_bps: pull.min_rate_bps,
        mtu: pull.mtu.min(1 << 16) as usize,
        window_bytes: (pull.window_bytes != 0).then_some(pull.window_bytes),
        initial_rtt: None,
        // The server's --cores names receiver stages; its sending side places itself.
        cores: CorePlan::Auto,
        direct: true,
        queue_depth: crate::pipeline::send::READ_QUEUE_DEPTH,
        net: opts.net,
        cipher: pull.cipher,
        dest: String::new(),
        peer_name: "client",
    };
    let data_ip = ch.peer_addr().ip();
    if data_ip.is_unspecified() {
        return Err("the client's address is unknown (no $SSH_CONNECTION): cannot send it data".into());
    }
    send_files(ch, data_ip, scanned, &params, started, &mut report)?;
    Ok(report)
}

/// A path a client named, relative to `root`: the rules of a destination (`sanitize_dest_dir`), and with
/// `absolute_in_root` an absolute path is accepted when it lies inside `root` (as given or canonical),
/// which is then stripped.
pub fn path_under_root(root: &Path, path: &str, absolute_in_root: bool) -> Result<RelPath, String> {
    if absolute_in_root && path.starts_with('/') {
        let canonical = fs::canonicalize(root).ok();
        let inside = [Some(root), canonical.as_deref()].into_iter().flatten().find_map(|r| {
            let rest = Path::new(path).strip_prefix(r).ok()?;
            rest.to_str().map(str::to_string)
        });
        return match inside {
            Some(rest) => sanitize_dest_dir(&rest).map_err(|e| e.to_string()),
            None => Err(format!("'{path}' lies outside this server's root '{}'", root.display())),
        };
    }
    sanitize_dest_dir(path).map_err(|e| e.to_string())
}

/// The file or directory `root/rel` for sending: every component below the root walked without following
/// symlinks (as for a destination), and the last one a regular file or directory itself, not a symlink.
fn source_under_root(root: &Path, rel: &RelPath) -> Result<std::path::PathBuf, String> {
    let Some(parent) = rel.parent() else {
        // The root itself: sent under its own name.
        return fs::canonicalize(root).map_err(|e| format!("root '{}': {e}", root.display()));
    };
    let dir = resolve_under_root(root, &parent).map_err(|e| e.to_string())?;
    let path = dir.join(rel.file_name().expect("a non-root path has a last component"));
    let meta =
        fs::symlink_metadata(&path).map_err(|e| format!("cannot read '{}': {e}", rel.to_path_buf().display()))?;
    let t = meta.file_type();
    if t.is_symlink() {
        return Err(format!("'{}' is a symbolic link: not sent (symlink escape)", rel.to_path_buf().display()));
    }
    if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
        return Err(format!("'{}' is not a regular file or directory", rel.to_path_buf().display()));
    }
    Ok(path)
}

/// The unspecified address of `ip`'s family.
pub fn unspecified(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn absolute_paths_are_accepted_only_inside_the_root_and_only_when_allowed() {
        let t = TempDir::new("session-paths");
        let root = t.path().join("home");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&root, t.path().join("alias")).unwrap();
        let alias = t.path().join("alias");
        let ok = |r: &Path, p: &str, abs: bool| path_under_root(r, p, abs).map(|r| r.to_string());
        assert_eq!(ok(&root, "a/b", false).unwrap(), "a/b");
        assert_eq!(ok(&root, "", true).unwrap(), "");
        let inside = format!("{}/x/y", root.display());
        assert_eq!(ok(&root, &inside, true).unwrap(), "x/y");
        // The root as configured may be a symlink; its canonical path is inside too.
        assert_eq!(ok(&alias, &inside, true).unwrap(), "x/y");
        assert_eq!(ok(&alias, &format!("{}/x", alias.display()), true).unwrap(), "x");
        assert_eq!(ok(&root, &format!("{}/", root.display()), true).unwrap(), "");
        // The daemon refuses absolute paths; nobody gets out with `..` or a sibling with the same prefix.
        assert!(ok(&root, &inside, false).unwrap_err().contains("absolute"));
        assert!(ok(&root, "/etc/passwd", true).unwrap_err().contains("outside"));
        assert!(ok(&root, &format!("{}/../x", root.display()), true).unwrap_err().contains("'..'"));
        assert!(ok(&root, &format!("{}-other/x", root.display()), true).unwrap_err().contains("outside"));
        assert!(ok(&root, "../x", true).is_err());
    }

    #[test]
    fn sources_are_regular_files_or_directories_reached_without_symlinks() {
        let t = TempDir::new("session-sources");
        let root = t.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("d/link")).unwrap();
        let rel = |s: &str| crate::files::sanitize_relative(s).unwrap();
        assert_eq!(source_under_root(root, &rel("d/f")).unwrap(), root.join("d/f"));
        assert_eq!(source_under_root(root, &rel("d")).unwrap(), root.join("d"));
        assert!(source_under_root(root, &rel("d/link")).unwrap_err().contains("symlink"));
        assert!(source_under_root(root, &rel("d/link/passwd")).unwrap_err().contains("symlink"));
        assert!(source_under_root(root, &rel("d/missing")).unwrap_err().contains("No such file"));
        assert!(source_under_root(root, &rel("d/f/x")).is_err());
        assert_eq!(source_under_root(root, &RelPath::root()).unwrap(), fs::canonicalize(root).unwrap());
    }
}
