//! `mover serve`: the receiving daemon. One thread per session; each session gets its own UDP socket.

use super::auth::{accept_client, client_view, ServerAuth, SessionCaps, INSECURE_WARNING};
use super::limits::Limits;
use super::push::PushReport;
use super::session::ServedSession;
use crate::disk::BackendChoice;
use crate::files::{Entry, EntryKind};
use crate::net::xdp_path::{NetChoice, XdpInfo};
use crate::net::ControlChannel;
use crate::pipeline::stats::{render_table, StageReport};
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::rate::{format_bytes, format_rate_bps};
use crate::wire::control::{ControlMsg, Hello, ReceiverSummary};
use crate::wire::data::DATA_OVERHEAD;
use crate::wire::VERSION;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Most manifest entries one session may announce: bounds the memory a client can make the server spend.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// How long the server waits for each handshake message.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket buffer size asked for: bursts at 10 Gbit/s must not overflow while the loop writes to disk.
pub const SOCKET_BUFFER_BYTES: usize = 64 << 20;

/// What `mover serve` was asked to do.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to listen for control connections.
    pub listen: SocketAddr,
    /// Every destination lies below this directory.
    pub root: PathBuf,
    /// Exit after one session, with its result.
    pub once: bool,
    /// fsync every file before it is renamed into place.
    pub fsync: bool,
    /// How the pipeline's stages are placed on cores (`--cores`).
    pub cores: CorePlan,
    /// Print each session's per-stage table on stderr.
    pub stats: bool,
    /// Writes in flight in the writer stage.
    pub queue_depth: u32,
    /// The data path (`--net`).
    pub net: NetChoice,
    /// How clients authenticate (TLS with certificates or tokens, or `--insecure-no-auth`).
    pub auth: ServerAuth,
    /// Per-session and per-client limits.
    pub limits: Limits,
}

impl ServeOptions {
    /// Options with the command line's defaults, except authentication: [`ServerAuth::Insecure`] (plain
    /// TCP, for in-process use on loopback: the demo and tests; the command line requires a choice).
    pub fn new(listen: SocketAddr, root: PathBuf) -> ServeOptions {
        ServeOptions {
            listen,
            root,
            once: false,
            fsync: false,
            cores: CorePlan::Auto,
            stats: false,
            queue_depth: crate::pipeline::recv::WRITE_QUEUE_DEPTH,
            net: NetChoice::Auto,
            auth: ServerAuth::Insecure,
            limits: Limits::default(),
        }
    }
}

/// One finished session, as the server saw it.
#[derive(Clone, Debug)]
pub struct SessionReport {
    /// The client.
    pub peer: SocketAddr,
    /// What was committed.
    pub summary: ReceiverSummary,
    /// Seconds from the handshake to the last commit.
    pub seconds: f64,
    /// The disk backend the writer stage used.
    pub disk: &'static str,
    /// What each pipeline stage did.
    pub stages: Vec<StageReport>,
    /// The XDP path's details, or `None` for UDP sockets.
    pub xdp: Option<XdpInfo>,
    /// The XDP program's counters at the end: redirected, matched without a socket, passed.
    pub xdp_counters: [u64; 3],
    /// The client pulled: the server sent, and `summary` is what the client committed.
    pub pulled: bool,
    /// How the session's datagrams were sealed.
    pub cipher: crate::wire::Cipher,
}

/// Runs the daemon until killed (or after one session with `once`).
pub fn serve(opts: &ServeOptions) -> Result<(), String> {
    check_root(&opts.root)?;
    // Checked now, so a bad --cores fails at start-up rather than at the first session.
    Topology::new(Side::Receiver, &opts.cores, &available_cores())?;
    BackendChoice::from_env()?;
    if opts.net == NetChoice::Xdp {
        let missing = crate::net::caps::missing_for_xdp(true);
        if !missing.is_empty() {
            return Err(format!("--net xdp: needs {} (run as root)", missing.join(" and ")));
        }
    }
    let listener = TcpListener::bind(opts.listen).map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if opts.auth.is_insecure() {
        eprintln!("{INSECURE_WARNING}");
    }
    eprintln!("mover serve: listening on {local}, root {}", opts.root.display());
    serve_with(listener, opts)
}

/// Checks that `root` is an existing directory.
pub fn check_root(root: &Path) -> Result<(), String> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("root '{}' is not a directory", root.display())),
        Err(e) => Err(format!("root '{}' does not exist or cannot be read: {e}", root.display())),
    }
}

/// Serves sessions from an already bound listener with default options: no authentication (in-process use
/// on loopback).
pub fn serve_on(listener: TcpListener, root: &Path, once: bool, fsync: bool) -> Result<(), String> {
    let mut opts = ServeOptions::new(listener.local_addr().map_err(|e| e.to_string())?, root.to_path_buf());
    opts.once = once;
    opts.fsync = fsync;
    serve_with(listener, &opts)
}

/// Serves sessions from an already bound listener.
pub fn serve_with(listener: TcpListener, opts: &ServeOptions) -> Result<(), String> {
    let caps = SessionCaps::new(opts.limits.max_sessions_per_client);
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mover serve: accept failed: {e}");
                continue;
            }
        };
        if opts.once {
            return run_session(stream, opts, &caps)
                .map(|r| log_session(&r, opts.stats))
                .map_err(|e| format!("session from {peer}: {e}"));
        }
        let opts = opts.clone();
        let caps = caps.clone();
        let spawned = std::thread::Builder::new().name("mover-session".into()).spawn(move || {
            match run_session(stream, &opts, &caps) {
                Ok(r) => log_session(&r, opts.stats),
                Err(e) => eprintln!("mover serve: session from {peer} failed: {e}"),
            }
        });
        if let Err(e) = spawned {
            eprintln!("mover serve: cannot start a session thread: {e}");
        }
    }
}

fn log_session(r: &SessionReport, stats: bool) {
    eprintln!(
        "mover serve: {} files, {} {} {} in {:.2} s ({}), verified; {}; disk {}; net {}",
        r.summary.files,
        format_bytes(r.summary.bytes),
        if r.pulled { "to" } else { "from" },
        r.peer,
        r.seconds,
        format_rate_bps(r.summary.bytes as f64 * 8.0 / r.seconds.max(1e-9)),
        super::push::cipher_note(r.cipher),
        r.disk,
        match &r.xdp {
            Some(x) => format!(
                "xdp ({}, {}, {}, {} queue(s); program: {} redirected, {} passed)",
                x.interface, x.mode, x.attach, x.queues, r.xdp_counters[0], r.xdp_counters[2]
            ),
            None => "udp".into(),
        }
    );
    if stats {
        eprint!(
            "{}",
            render_table(
                if r.pulled { "sender stages (serve, pulled):" } else { "receiver stages (serve):" },
                &r.stages
            )
        );
    }
}

/// Runs one session on an accepted control connection: authentication (TLS and credentials, or none under
/// `--insecure-no-auth`) and the per-client session cap, then a push (handshake, receive, verify, commit) or a
/// pull (the server sends).
pub fn run_session(stream: TcpStream, opts: &ServeOptions, caps: &Arc<SessionCaps>) -> Result<SessionReport, String> {
    let ip = stream.peer_addr().map_err(|e| e.to_string())?.ip();
    let authenticating = caps.enter_handshake(ip)?;
    let (mut ch, who) = accept_client(stream, &opts.auth)?;
    drop(authenticating);
    let _slot = match caps.enter(&who) {
        Ok(slot) => slot,
        Err(e) => {
            let _ = ch.send(&ControlMsg::Error { message: e.clone() });
            return Err(e);
        }
    };
    let result = super::session::serve_first_message(&mut ch, opts, false);
    if let Err(e) = &result {
        let _ = ch.send(&ControlMsg::Error { message: client_view(e, &opts.root) });
    }
    // The daemon's log names who it was (the client already has the message).
    result.map_err(|e| format!("{e} ({who})")).map(|served| match served {
        ServedSession::Received(r) => r,
        ServedSession::Sent(r) => SessionReport::of_pull(ch.peer_addr(), &r),
    })
}

impl SessionReport {
    /// A served pull, in the terms of the receiver's report (what the client committed).
    pub fn of_pull(peer: SocketAddr, r: &PushReport) -> SessionReport {
        SessionReport {
            peer,
            summary: r.receiver,
            seconds: r.seconds,
            disk: r.disk,
            stages: r.stages.clone(),
            xdp: r.xdp.clone(),
            xdp_counters: [0; 3],
            pulled: true,
            cipher: r.cipher,
        }
    }
}

pub(crate) fn check_hello(h: &Hello) -> Result<(), String> {
    if h.version != VERSION as u16 {
        return Err(format!("protocol version {} is not supported (this server speaks {VERSION})", h.version));
    }
    if h.block_payload < 64 || h.block_payload as usize + DATA_OVERHEAD > 65_507 {
        return Err(format!("block size {} is outside 64..={}", h.block_payload, 65_507 - DATA_OVERHEAD));
    }
    if !(64..=1 << 32).contains(&h.window_blocks) {
        return Err(format!("window of {} blocks is outside 64..=2^32", h.window_blocks));
    }
    if h.entry_count > MAX_ENTRIES {
        return Err(format!("{} entries exceed this server's limit of {MAX_ENTRIES}", h.entry_count));
    }
    if h.rate_bps == 0 {
        return Err("rate must be positive".into());
    }
    Ok(())
}

pub(crate) fn read_manifest(ch: &mut ControlChannel, hello: &Hello) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::with_capacity(hello.entry_count.min(65_536) as usize);
    let mut total: u64 = 0;
    loop {
        match ch.expect_msg(HANDSHAKE_TIMEOUT, "reading the manifest")? {
            ControlMsg::Entry(e) => {
                if entries.len() as u64 >= hello.entry_count {
                    return Err(format!("manifest has more entries than the {} announced", hello.entry_count));
                }
                total = total.checked_add(e.size).ok_or("manifest sizes overflow")?;
                entries.push(e);
            }
            ControlMsg::ManifestEnd => break,
            other => return Err(format!("expected a manifest entry, got {other:?}")),
        }
    }
    if entries.len() as u64 != hello.entry_count || total != hello.total_bytes {
        return Err(format!(
            "manifest has {} entries and {total} bytes, but {} and {} were announced",
            entries.len(),
            hello.entry_count,
            hello.total_bytes
        ));
    }
    if entries.iter().filter(|e| e.kind == EntryKind::File).count() > u32::MAX as usize {
        return Err("too many files".into());
    }
    Ok(entries)
}
