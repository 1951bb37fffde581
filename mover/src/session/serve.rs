//! Serving sessions: the daemon (`mover serve`: one thread per session, each with its own UDP socket), one
//! session on the stdin and stdout of `mover serve --stdio`, and what both do with a session's first
//! message (a `Hello` opens a push, a `Pull` a pull).

use super::admission::{Admission, AdmissionLimits};
use super::admit::{admit, Admitted};
use super::client_text::RootScrub;
use super::daemon_log::{self, Level, LogFormat, Value};
use super::dry_run::answer_dry_run;
use super::error::SessionError;
use super::governor::{account_of, Governor, GovernorTicket};
use super::limits::Limits;
use super::memory::MemoryBudget;
use super::metrics::{spawn_metrics, MetricsSource};
use super::paths::PathRule;
use super::pull_source::scan_pull_source;
use super::receive::{receive_files, ReceiveParams, ReceiveTarget};
use super::registry::{RunningSession, SessionRegistry};
use super::relay::{check_pull_path, check_push_dest, check_relay_client, delete_batch, RelaySpool};
use super::report::{Direction, Report};
use super::send::{send_files, SendParams};
use super::stripe_receive::receive_striped;
use super::third_party::{check_delegated, note_delegated, serve_delegate, serve_third_party};
use crate::connect::{accept_stdio, Identity, ServerAuth, INSECURE_WARNING};
use crate::disk::BackendChoice;
use crate::files::{RelPath, ScanOptions};
use crate::net::xdp_path::NetChoice;
use crate::net::ControlChannel;
use crate::pipeline::live::Live;
use crate::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use crate::wire::control::{transfer_state, TransferStatus};
use crate::wire::control::{ControlMsg, Pull};
use crate::wire::VERSION;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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
    /// Daemon-wide admission: sessions, queue, connections authenticating.
    pub admission: AdmissionLimits,
    /// Partial files under the root older than this are removed, at start and hourly
    /// (`--partial-max-age`).
    pub partial_max_age: std::time::Duration,
    /// The daemon-wide memory account (`--max-memory`) every session reserves from; clones share it.
    pub memory: MemoryBudget,
    /// Where to serve Prometheus metrics over HTTP (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How log lines are written (`--log-format`).
    pub log_format: LogFormat,
    /// The daemon's running and ended sessions, for metrics and log lines; clones share it.
    pub registry: Arc<SessionRegistry>,
    /// Log one line per session at its start and its end (the daemon does; the server inside `mover demo`,
    /// whose own summary says it all, does not).
    pub log_sessions: bool,
    /// `mover relay`: the root is a spool of sealed blocks, with the relay's rules (`session::relay`).
    pub relay: Option<RelaySpool>,
    /// `--no-third-party`: refuse `ThirdParty` requests (sending a copy to another daemon for a client).
    pub no_third_party: bool,
    /// The rate caps (`--max-rate`, `--user-max-rate`) and the sessions sharing them; `None`: nothing is
    /// capped. Clones share it.
    pub governor: Option<Arc<Governor>>,
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
            admission: AdmissionLimits::default(),
            partial_max_age: super::partial_sweep::DEFAULT_PARTIAL_MAX_AGE,
            memory: MemoryBudget::new(super::memory::default_max_memory()),
            metrics: None,
            log_format: LogFormat::Text,
            registry: SessionRegistry::new(),
            log_sessions: true,
            relay: None,
            no_third_party: false,
            governor: None,
        }
    }

    /// A session's ticket to the governor, for the client known as `who` (`None` when nothing is capped).
    fn governor_ticket(&self, who: &str) -> Option<GovernorTicket> {
        let governor = self.governor.clone()?;
        Some(GovernorTicket { governor, account: account_of(who).to_string() })
    }
}

/// Runs the daemon until killed (or after one session with `once`).
pub fn serve(opts: &ServeOptions) -> Result<(), SessionError> {
    // Before any thread starts, so that no thread gets an arena of its own beyond the bound.
    super::allocator::configure_for_daemon();
    daemon_log::set_format(opts.log_format);
    daemon_log::capture_stderr()
        .map_err(|error| SessionError::Io { what: "sending stderr through the JSON log", error })?;
    check_serve(opts)?;
    let listener = TcpListener::bind(opts.listen)
        .map_err(|e| SessionError::Setup(format!("cannot listen on {}: {e}", opts.listen)))?;
    let local = listener.local_addr().map_err(|error| SessionError::Io { what: "listening socket", error })?;
    let admission = Admission::new(&opts.admission, opts.limits.max_sessions_per_client);
    if let Some(addr) = opts.metrics {
        let source = MetricsSource {
            registry: opts.registry.clone(),
            admission: admission.clone(),
            memory: opts.memory.clone(),
            caps: opts.governor.as_ref().map(|g| g.caps().clone()).unwrap_or_default(),
        };
        let at = spawn_metrics(addr, source)?;
        let url = format!("http://{at}/metrics");
        daemon_log::log_json_fields(Level::Info, "metrics", &format!("metrics on {url}"), &[("url", Value::Str(&url))]);
    }
    if opts.auth.is_insecure() {
        // The warning is also the client-facing constant: it names the daemon itself.
        daemon_log::warn("insecure", INSECURE_WARNING.trim_start_matches("mover serve: "));
    }
    let (listen, root) = (local.to_string(), opts.root.display().to_string());
    daemon_log::log_json_fields(
        Level::Info,
        "listening",
        &format!("listening on {listen}, root {root}"),
        &[("listen", Value::Str(&listen)), ("root", Value::Str(&root)), ("version", Value::Str(VERSION_TEXT))],
    );
    super::partial_sweep::spawn_partial_sweeper(opts.root.clone(), opts.partial_max_age);
    serve_admitting(listener, opts, &admission)
}

/// The program's version, for the listening line.
const VERSION_TEXT: &str = env!("CARGO_PKG_VERSION");

/// What [`serve`] checks before it listens (`serve --check-config` runs it alone): the root is a
/// directory, `--cores` places the receiver's stages, the disk backend can be chosen, `--net xdp` has its
/// capabilities. Authentication (TLS files, tokens) was loaded when the options were built.
pub fn check_serve(opts: &ServeOptions) -> Result<(), SessionError> {
    check_root(&opts.root)?;
    // Checked now, so a bad --cores fails at start-up rather than at the first session.
    Topology::new(Side::Receiver, &opts.cores, &available_cores()).map_err(SessionError::Setup)?;
    BackendChoice::from_env().map_err(SessionError::Setup)?;
    if opts.net == NetChoice::Xdp {
        let missing = crate::net::caps::missing_for_xdp(true);
        if !missing.is_empty() {
            return Err(SessionError::Setup(format!("--net xdp: needs {} (run as root)", missing.join(" and "))));
        }
    }
    Ok(())
}

/// Checks that `root` is an existing directory.
pub fn check_root(root: &Path) -> Result<(), SessionError> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SessionError::Root { path: root.to_path_buf(), error: None }),
        Err(e) => Err(SessionError::Root { path: root.to_path_buf(), error: Some(e) }),
    }
}

/// Serves sessions from an already bound listener with default options: no authentication (in-process use
/// on loopback).
pub fn serve_on(listener: TcpListener, root: &Path, once: bool, fsync: bool) -> Result<(), SessionError> {
    let local = listener.local_addr().map_err(|error| SessionError::Io { what: "listening socket", error })?;
    let mut opts = ServeOptions::new(local, root.to_path_buf());
    opts.once = once;
    opts.fsync = fsync;
    serve_with(listener, &opts)
}

/// Serves sessions from an already bound listener.
pub fn serve_with(listener: TcpListener, opts: &ServeOptions) -> Result<(), SessionError> {
    serve_admitting(listener, opts, &Admission::new(&opts.admission, opts.limits.max_sessions_per_client))
}

/// [`serve_with`] with the caller's [`Admission`] (whose [`Admission::stats`] it may publish).
pub fn serve_admitting(listener: TcpListener, opts: &ServeOptions, caps: &Arc<Admission>) -> Result<(), SessionError> {
    loop {
        let (stream, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                daemon_log::log(Level::Error, "accept_failed", &format!("accept failed: {e}"), &[]);
                continue;
            }
        };
        if opts.once {
            return run_session(stream, opts, caps).map(|r| log_session(&r, opts.stats));
        }
        let opts = opts.clone();
        let caps = caps.clone();
        let spawned = std::thread::Builder::new().name("mover-session".into()).spawn(move || {
            // Dropped last: when the daemon's last session ends, what it freed goes back to the system.
            let _alive = opts.memory.session();
            // Its start and end (or refusal) were logged by run_session.
            if let Ok(r) = run_session(stream, &opts, &caps) {
                log_session(&r, opts.stats);
            }
        });
        if let Err(e) = spawned {
            daemon_log::log(Level::Error, "thread_failed", &format!("cannot start a session thread: {e}"), &[]);
        }
    }
}

/// The session's per-stage table under `--stats` (its end line was logged by [`run_session`]).
fn log_session(r: &Report, stats: bool) {
    if !stats {
        return;
    }
    let table = r.stage_table(if r.direction == Direction::Sent { "serve, pulled" } else { "serve" });
    match daemon_log::format() {
        LogFormat::Text => eprint!("{table}"),
        LogFormat::Json => daemon_log::info("stats", table.trim_end()),
    }
}

/// Runs one session on an accepted control connection: authentication (TLS and credentials, or none under
/// `--insecure-no-auth`) and admission (the daemon's and the client's session caps, waiting in the queue if
/// need be: `admit.rs`), then a push (handshake, receive, verify, commit) or a pull (the server sends). The
/// handshake, from accept to the end of the manifest, has deadlines as a whole, not per message.
///
/// A failure comes back as [`SessionError::Served`], naming the peer and, once authenticated, who it was
/// (for the daemon's log; the client has already been sent `Display` of the inner error).
pub fn run_session(stream: TcpStream, opts: &ServeOptions, caps: &Arc<Admission>) -> Result<Report, SessionError> {
    let peer = stream.peer_addr().map_err(|error| SessionError::Io { what: "accepted connection", error })?;
    let served = |who: Option<&Identity>, error: SessionError| SessionError::Served {
        peer,
        who: who.map(|w| w.to_string()),
        error: Box::new(error),
    };
    let admitted = admit(stream, peer, &opts.auth, caps).map_err(|(who, e)| served(who.as_ref(), e));
    let Admitted { mut ch, who, first, deadline, _slot } = match admitted {
        Ok(a) => a,
        Err(e) => {
            opts.registry.note_refused();
            let p = peer.to_string();
            daemon_log::log(Level::Warn, "session_refused", &e.to_string(), &[("peer", Value::Str(&p))]);
            return Err(e);
        }
    };
    // From here on every `Error` the client is sent passes the scrub of the root (session/client_text.rs).
    let scrub = Arc::new(RootScrub::new(&opts.root));
    scrub.install(&mut ch);
    let mut tracked = Tracked {
        registry: &opts.registry,
        peer,
        user: who.to_string(),
        running: None,
        dest: None,
        log: opts.log_sessions,
    };
    let result = serve_first(&mut ch, first, deadline, opts, &PathRule::Relative, Some(&mut tracked));
    tracked.end(&result);
    result.map_err(|e| {
        if e.to_string().contains(crate::net::DEADLINE_MISSED) {
            caps.note_cut_deadline();
        }
        let _ = ch.send(&scrub.message(&e));
        linger_for_close(&mut ch);
        served(Some(&who), e)
    })
}

/// A daemon session's place in the registry and its log lines: one when it starts (who, which way, where,
/// what was announced) and one when it ends (the result and its numbers). `--stdio` sessions have none:
/// their stderr is the client's terminal.
struct Tracked<'a> {
    registry: &'a Arc<SessionRegistry>,
    peer: SocketAddr,
    user: String,
    running: Option<RunningSession>,
    /// The direction and destination (or source) once the first message was read, until the start line
    /// is written.
    dest: Option<(Direction, String)>,
    /// Whether to write the lines ([`ServeOptions::log_sessions`]); the registry counts either way.
    log: bool,
}

impl Tracked<'_> {
    /// Registers the session once its first message says which way it goes; returns its counters.
    fn begin(&mut self, direction: Direction, dest: &str) -> Arc<Live> {
        let running = self.registry.begin(self.peer, &self.user, direction);
        let live = running.live.clone();
        self.running = Some(running);
        self.dest = Some((direction, dest.to_string()));
        live
    }

    /// Writes the start line with what the client announced (a push's manifest) or the scan found (a pull).
    fn announce(&mut self, entries: u64, bytes: u64) {
        let (Some(running), Some((direction, dest))) = (&self.running, self.dest.take()) else { return };
        if !self.log {
            return;
        }
        let (peer, way) = (self.peer.to_string(), direction_name(direction));
        daemon_log::log(
            Level::Info,
            "session_start",
            &format!("session {} started", running.id),
            &[
                ("session", Value::U64(running.id)),
                ("peer", Value::Str(&peer)),
                ("user", Value::Str(&self.user)),
                ("direction", Value::Str(way)),
                (if direction == Direction::Received { "dest" } else { "source" }, Value::Str(&dest)),
                ("entries", Value::U64(entries)),
                ("bytes", Value::U64(bytes)),
            ],
        );
    }

    /// Writes the end line and moves the session's counts to the registry's totals.
    fn end(mut self, result: &Result<Report, SessionError>) {
        // A session that failed before it announced anything still gets its start line.
        self.announce(0, 0);
        let peer = self.peer.to_string();
        let Some(running) = self.running.take() else {
            // A status query is no session.
            if result.is_ok() {
                return;
            }
            // It failed before its first message said which way it would go.
            self.registry.note_failed();
            if let (Err(e), true) = (result, self.log) {
                let message = format!("session from {peer} ({}) failed before it started: {e}", self.user);
                let error = e.to_string();
                let fields =
                    [("peer", Value::Str(&peer)), ("result", Value::Str("failed")), ("error", Value::Str(&error))];
                daemon_log::log(Level::Warn, "session_end", &message, &fields);
            }
            return;
        };
        let id = running.id;
        let seconds = running.started.elapsed().as_secs_f64();
        let s = running.live.snapshot();
        running.end(result.is_ok());
        let (level, message, files, bytes, seconds, goodput, retransmitted, error) = match result {
            Ok(r) => (
                Level::Info,
                format!("session {id} ended: {}", r.served_line()),
                r.files,
                r.bytes,
                r.seconds,
                r.goodput_bps,
                r.packets_retransmitted,
                String::new(),
            ),
            Err(e) => (
                Level::Warn,
                format!("session {id} failed: {e}"),
                s.files_done,
                s.bytes_done,
                seconds,
                s.bytes_done as f64 * 8.0 / seconds.max(1e-9),
                s.packets_retransmitted,
                e.to_string(),
            ),
        };
        let mut fields = vec![
            ("session", Value::U64(id)),
            ("peer", Value::Str(&peer)),
            ("result", Value::Str(if result.is_ok() { "ok" } else { "failed" })),
            ("files", Value::U64(files)),
            ("bytes", Value::U64(bytes)),
            ("seconds", Value::F64(seconds)),
            ("goodput_bps", Value::F64(goodput)),
            ("retransmitted", Value::U64(retransmitted)),
        ];
        if !error.is_empty() {
            fields.push(("error", Value::Str(&error)));
        }
        if self.log {
            daemon_log::log(level, "session_end", &message, &fields);
        }
    }
}

/// A direction as the log and the metrics name it, from the daemon's side.
fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Received => "receive",
        Direction::Sent => "send",
    }
}

/// After a refusal, lets the client read it and close first (at most [`REFUSAL_LINGER`] and
/// [`REFUSAL_LINGER_MESSAGES`], so a client that keeps sending is not read on and on): closing while its
/// unread messages sit in our buffers would reset the connection, and a reset can destroy the refusal
/// before the client reads it (seen under load with TLS).
fn linger_for_close(ch: &mut ControlChannel) {
    let until = Instant::now() + REFUSAL_LINGER;
    for _ in 0..REFUSAL_LINGER_MESSAGES {
        let Some(left) = until.checked_duration_since(Instant::now()) else { return };
        match ch.recv_timeout(left) {
            Some(crate::net::ControlEvent::Msg(_)) => continue,
            _ => return,
        }
    }
}

/// Most messages a refused session reads (and drops) while it waits for its client to close.
const REFUSAL_LINGER_MESSAGES: usize = 1024;

/// How long a refused session waits for its client to close ([`linger_for_close`]).
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// How a `--stdio` session ended, when it got as far as greeting the client.
#[derive(Debug, PartialEq, Eq)]
pub enum StdioOutcome {
    /// The session succeeded.
    Done,
    /// It failed and the client was sent the reason (which it prints): the caller only exits non-zero, so the
    /// user does not see the error twice (ssh forwards our stderr).
    FailedAndReported,
}

/// Runs one session over this process's stdin and stdout ([`accept_stdio`]), as started by a client's
/// `ssh host mover serve --stdio` (PROTOCOL.md §3.3), with the paths it names mapped by `rule`
/// ([`PathRule::Account`] without `--root`, as scp; [`PathRule::AbsoluteInRoot`] with one).
///
/// Unlike the daemon it does not sweep partial files: its root may be `/`, and a walk of the whole file
/// system at every ssh session is not what anyone asked for. A partial it leaves is resumed by the next
/// session to the same place, or removed by hand (the daemon's sweep is for trees it owns).
pub fn serve_stdio(opts: &ServeOptions, rule: &PathRule) -> Result<StdioOutcome, SessionError> {
    let mut ch = accept_stdio()?;
    let scrub = Arc::new(RootScrub::new(&opts.root));
    scrub.install(&mut ch);
    match check_root(&opts.root).and_then(|()| serve_channel(&mut ch, opts, rule)) {
        Ok(r) => {
            if opts.stats && r.direction == Direction::Received {
                eprint!("{}", r.stage_table("serve"));
            }
            Ok(StdioOutcome::Done)
        }
        Err(e) => match ch.send(&scrub.message(&e)) {
            Ok(()) => Ok(StdioOutcome::FailedAndReported),
            Err(_) => Err(e),
        },
    }
}

/// Serves one session on a control channel that is up (and, for the daemon, authenticated): its first
/// message decides the direction. A `Hello` opens a push (the server receives), a `Pull` a pull (the
/// server sends); the report says which. `rule` maps the paths the client names onto the root
/// ([`PathRule`]: `mover serve --stdio` takes scp-style `host:/home/me/x`, PROTOCOL.md §3.3).
pub fn serve_channel(ch: &mut ControlChannel, opts: &ServeOptions, rule: &PathRule) -> Result<Report, SessionError> {
    // Whoever calls this, the client is never shown the root (session/client_text.rs).
    Arc::new(RootScrub::new(&opts.root)).install(ch);
    let deadline = Instant::now() + super::admission::handshake_deadline();
    serve_first(ch, None, deadline, opts, rule, None)
}

/// [`serve_channel`] with the first message if it was already read, and the deadline for it; a daemon's
/// session is `tracked` (registered and logged) once its first message says which way it goes.
fn serve_first(
    ch: &mut ControlChannel,
    first: Option<ControlMsg>,
    deadline: Instant,
    opts: &ServeOptions,
    rule: &PathRule,
    mut tracked: Option<&mut Tracked>,
) -> Result<Report, SessionError> {
    let root = opts.root.clone();
    // A push's destination directory may be reached through a link (`host:/data -> /mnt/data`); what a
    // pull reads may not be one (the root's rules).
    let dest_of = |d: &str| rule.resolve(&root, d, true);
    let source_of = |d: &str| rule.resolve(&root, d, false);
    let first = match first {
        Some(m) => m,
        None => ch.expect_msg_by(deadline, "waiting for its hello").map_err(SessionError::Protocol)?,
    };
    let who = tracked.as_ref().map(|t| t.user.clone()).unwrap_or_default();
    if opts.relay.is_some() {
        check_relay_client(&who, &first, !opts.auth.is_insecure())?;
    }
    // A third-party copy's sending end, with its delegation: one push into the granted directory.
    let delegated = check_delegated(&who, &first, opts.auth.delegations())?;
    match first {
        ControlMsg::Delegate { dest } => {
            if opts.relay.is_some() {
                return Err(SessionError::NotAllowed("this is a relay: it does not receive third-party copies".into()));
            }
            serve_delegate(ch, &dest, &who, &opts.auth, &dest_of)
        }
        ControlMsg::ThirdParty(t) => {
            if opts.relay.is_some() {
                return Err(SessionError::NotAllowed("this is a relay: it does not send third-party copies".into()));
            }
            if opts.no_third_party {
                return Err(SessionError::NotAllowed(
                    "this daemon does not send third-party copies (serve --no-third-party): pull from it instead"
                        .into(),
                ));
            }
            let rel = source_of(&t.source)?;
            let live = tracked.as_mut().map_or_else(Live::new, |tr| tr.begin(Direction::Sent, &t.source));
            serve_third_party(ch, t, &opts.root, &rel, live)
        }
        ControlMsg::Hello(hello) => {
            // A relay's spool takes a transfer's blocks while it has room for them.
            let _spool = match &opts.relay {
                Some(spool) => {
                    check_push_dest(&hello.dest)?;
                    Some(spool.reserve(&opts.root, hello.total_bytes)?)
                }
                None => None,
            };
            let target = ReceiveTarget {
                root: &opts.root,
                dest_of: &dest_of,
                bind_ip: ch.local_addr().ip(),
                peer_ip: ch.peer_addr().ip(),
            };
            let live = begin_receiving(tracked, &hello);
            if let Some(transfer) = &delegated {
                let total = hello.total_bytes;
                let running =
                    TransferStatus { state: transfer_state::RUNNING, bytes_total: total, ..Default::default() };
                opts.registry.stripes.update(transfer, running);
            }
            let result = receive_files(ch, hello, &target, &receive_params(opts, live, &who));
            if let Some(transfer) = &delegated {
                note_delegated(&opts.registry.stripes, transfer, &result);
            }
            result
        }
        ControlMsg::Pull(pull) => {
            if opts.relay.is_some() {
                check_pull_path(&pull.path)?;
            }
            let live = tracked.as_mut().map_or_else(Live::new, |t| t.begin(Direction::Sent, &pull.path));
            let path = pull.path.clone();
            let governor = opts.governor_ticket(&who);
            let report = serve_pull(ch, pull, &source_of, opts, live, governor, tracked)?;
            if opts.relay.is_some() && report.verified {
                // The receiver holds the batch now: a relay keeps nothing it has delivered.
                if let Err(e) = delete_batch(&opts.root, &path) {
                    daemon_log::warn("relay_delete", &format!("cannot delete the delivered batch '{path}': {e}"));
                }
            }
            Ok(report)
        }
        ControlMsg::Stripe(stripe) => {
            if opts.relay.is_some() {
                return Err(SessionError::NotAllowed("this is a relay: it does not receive striped transfers".into()));
            }
            let target = ReceiveTarget {
                root: &opts.root,
                dest_of: &dest_of,
                bind_ip: ch.local_addr().ip(),
                peer_ip: ch.peer_addr().ip(),
            };
            let live = begin_receiving(tracked, &stripe.hello);
            receive_striped(ch, stripe, &target, &receive_params(opts, live, &who), &opts.registry.stripes)
        }
        ControlMsg::DryRun(hello) => {
            if opts.relay.is_some() {
                return Err(SessionError::NotAllowed("this is a relay: it does not answer dry runs".into()));
            }
            let report = answer_dry_run(ch, hello, &opts.root, &dest_of, &opts.limits, &opts.memory)?;
            if tracked.as_ref().is_some_and(|t| t.log) {
                let peer = ch.peer_addr().to_string();
                daemon_log::info("dry_run", &format!("answered a dry run from {peer} ({who}): nothing changed"));
            }
            Ok(report)
        }
        ControlMsg::StatusQuery { transfer } => {
            let status = opts.registry.stripes.get(&transfer);
            ch.send(&ControlMsg::StatusReply(status))
                .map_err(|error| SessionError::Io { what: "answering a status query", error })?;
            let _ = ch.recv_timeout(std::time::Duration::from_secs(2));
            Ok(Report::new(Direction::Received, 0, Default::default(), Default::default()))
        }
        other => Err(SessionError::Protocol(format!("expected a hello or a pull request, got {other:?}"))),
    }
}

/// Registers a receiving session (a push or a striped push) with what its `Hello` announces; its counters.
fn begin_receiving(tracked: Option<&mut Tracked>, hello: &crate::wire::control::Hello) -> Arc<Live> {
    match tracked {
        Some(t) => {
            let live = t.begin(Direction::Received, &hello.dest);
            t.announce(hello.entry_count, hello.total_bytes);
            live
        }
        None => Live::new(),
    }
}

/// The receiving half of a server's options, with the session's counters, for the client known as `who`.
fn receive_params(opts: &ServeOptions, live: Arc<Live>, who: &str) -> ReceiveParams {
    ReceiveParams {
        cores: opts.cores.clone(),
        queue_depth: opts.queue_depth,
        net: opts.net,
        fsync: opts.fsync,
        limits: opts.limits.clone(),
        peer_timeout: crate::proto::config::DEFAULT_PEER_TIMEOUT,
        peer_name: "client",
        memory: opts.memory.clone(),
        live,
        files_and_dirs_only: opts.relay.is_some(),
        governor: opts.governor_ticket(who),
    }
}

/// Reserves what a pull's sending side holds (the manifest of our own files, the pipeline's buffers) from
/// the daemon-wide budget; given back when the returned guard drops.
fn reserve_for_pull(
    opts: &ServeOptions,
    scanned: &crate::files::Scanned,
    params: &SendParams,
) -> Result<super::memory::Reservation, SessionError> {
    let topology = Topology::new(Side::Sender, &params.cores, &available_cores()).map_err(SessionError::Setup)?;
    let mut memory = opts.memory.reservation(u64::MAX);
    let per_file = std::mem::size_of::<std::path::PathBuf>() as u64;
    let manifest: u64 =
        scanned.entries.iter().map(|e| super::memory::entry_bytes(e) + per_file + e.rel_path.len() as u64).sum();
    memory.grow(manifest, "its manifest")?;
    memory.grow(
        crate::pipeline::send::buffer_bytes(&topology, params.mtu.unwrap_or(super::path_mtu::MAX_DISCOVERED_MTU)),
        "its data-path buffers",
    )?;
    Ok(memory)
}

/// Answers a `Pull`: finds the requested file or directory under the root (confined like a destination,
/// and the last component must not be a symlink or a device either) and scans it by descriptor beneath the
/// root, then runs the sending side to the client's address, which opens each file beneath the root too.
fn serve_pull(
    ch: &mut ControlChannel,
    pull: Pull,
    resolve: &dyn Fn(&str) -> Result<RelPath, SessionError>,
    opts: &ServeOptions,
    live: Arc<Live>,
    governor: Option<GovernorTicket>,
    tracked: Option<&mut Tracked>,
) -> Result<Report, SessionError> {
    let started = Instant::now();
    if pull.version != VERSION as u16 {
        return Err(SessionError::NotAllowed(format!(
            "protocol version {} is not supported (this server speaks {VERSION})",
            pull.version
        )));
    }
    if pull.rate_bps == 0 || pull.min_rate_bps > pull.rate_bps {
        return Err(SessionError::NotAllowed(format!(
            "rate {} with floor {} is not a valid request",
            pull.rate_bps, pull.min_rate_bps
        )));
    }
    opts.limits.check_cipher(pull.cipher)?;
    let rel = resolve(&pull.path)?;
    let scan = ScanOptions { xattrs: pull.options.xattrs, checksum: pull.options.checksum, files_from: None };
    // Beneath the root by descriptor, the scan and every later read: paths in `scanned` are relative to it.
    let scanned = crate::files::keep_shard(scan_pull_source(&opts.root, &rel, &scan)?, pull.shard, true);
    for (path, why) in &scanned.skipped {
        daemon_log::info("not_sending", &format!("not sending '{}': {why}", path.display()));
    }
    if let Some(t) = tracked {
        let files = scanned.entries.iter().filter(|e| e.kind == crate::files::EntryKind::File);
        t.announce(scanned.entries.len() as u64, files.map(|e| e.size).sum());
    }
    let mut report = Report::new(Direction::Sent, pull.rate_bps, pull.policy, pull.cipher);
    report.shard = pull.shard;
    report.peer = Some(ch.peer_addr());
    report.skipped = scanned.skipped.len() as u64;
    let params = SendParams {
        rate_bps: pull.rate_bps,
        policy: pull.policy,
        min_rate_bps: pull.min_rate_bps,
        mtu: Some(pull.mtu.min(1 << 16) as usize),
        mtu_after_black_hole: false,
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
        // The client sees our errors as they are: name files as it knows them, not by our paths.
        name_files_by_manifest: true,
        options: pull.options,
        // The client's --timeout does not travel (no wire change): the client gives up on its own and
        // closes the control connection, which ends this side at once.
        peer_timeout: crate::proto::config::DEFAULT_PEER_TIMEOUT,
        live,
        governor,
        shared_reads: None,
    };
    let data_ip = ch.peer_addr().ip();
    if data_ip.is_unspecified() {
        return Err(SessionError::Setup(
            "the client's address is unknown (no $SSH_CONNECTION): cannot send it data".into(),
        ));
    }
    let _memory = reserve_for_pull(opts, &scanned, &params)?;
    send_files(ch, data_ip, scanned, &params, started, &mut report)?;
    Ok(report)
}
