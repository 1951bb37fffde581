//! `mover serve`: the receiving daemon. One thread per session; each session gets its own UDP socket.

use crate::files::{sanitize_dest_dir, DestTree, Entry, EntryKind, WriteCoalescer, DEFAULT_RUN_BYTES};
use crate::net::{ControlChannel, ControlEvent, DataSocket, RxBatch};
use crate::proto::{Config, Receiver, ReceiverSession};
use crate::rate::{format_bytes, format_rate_bps};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::{ControlMsg, Hello, ReceiverSummary};
use crate::wire::data::DATA_OVERHEAD;
use crate::wire::VERSION;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most manifest entries one session may announce: bounds the memory a client can make the server spend.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// How long the server waits for each handshake message.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams received per batch.
const RX_BATCH: usize = 64;
/// How long the receive loop naps while data flows, to receive in batches.
const RX_NAP: Duration = Duration::from_micros(50);
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
}

/// Runs the daemon until killed (or after one session with `once`).
pub fn serve(opts: &ServeOptions) -> Result<(), String> {
    check_root(&opts.root)?;
    let listener = TcpListener::bind(opts.listen).map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("mover serve: listening on {local}, root {}", opts.root.display());
    serve_on(listener, &opts.root, opts.once, opts.fsync)
}

/// Checks that `root` is an existing directory.
pub fn check_root(root: &Path) -> Result<(), String> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("root '{}' is not a directory", root.display())),
        Err(e) => Err(format!("root '{}' does not exist or cannot be read: {e}", root.display())),
    }
}

/// Serves sessions from an already bound listener.
pub fn serve_on(listener: TcpListener, root: &Path, once: bool, fsync: bool) -> Result<(), String> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mover serve: accept failed: {e}");
                continue;
            }
        };
        if once {
            return run_session(stream, root, fsync)
                .map(|r| log_session(&r))
                .map_err(|e| format!("session from {peer}: {e}"));
        }
        let root = root.to_path_buf();
        let spawned = std::thread::Builder::new().name("mover-session".into()).spawn(move || {
            match run_session(stream, &root, fsync) {
                Ok(r) => log_session(&r),
                Err(e) => eprintln!("mover serve: session from {peer} failed: {e}"),
            }
        });
        if let Err(e) = spawned {
            eprintln!("mover serve: cannot start a session thread: {e}");
        }
    }
}

fn log_session(r: &SessionReport) {
    eprintln!(
        "mover serve: {} files, {} from {} in {:.2} s ({}), verified",
        r.summary.files,
        format_bytes(r.summary.bytes),
        r.peer,
        r.seconds,
        format_rate_bps(r.summary.bytes as f64 * 8.0 / r.seconds.max(1e-9))
    );
}

/// Runs one session on an accepted control connection: handshake, receive, verify, commit.
pub fn run_session(stream: TcpStream, root: &Path, fsync: bool) -> Result<SessionReport, String> {
    let mut ch = ControlChannel::new(stream).map_err(|e| format!("control connection: {e}"))?;
    let result = receive(&mut ch, root, fsync);
    if let Err(e) = &result {
        let _ = ch.send(&ControlMsg::Error { message: e.clone() });
    }
    result
}

fn receive(ch: &mut ControlChannel, root: &Path, fsync: bool) -> Result<SessionReport, String> {
    let started = Instant::now();
    let hello = match ch.expect_msg(HANDSHAKE_TIMEOUT, "waiting for its hello")? {
        ControlMsg::Hello(h) => h,
        other => return Err(format!("expected a hello, got {other:?}")),
    };
    check_hello(&hello)?;
    // Read the whole manifest before judging the destination, so a refusal reaches a client that has
    // finished writing (it would otherwise see a broken pipe instead of the reason).
    let entries = read_manifest(ch, &hello)?;
    let dest = sanitize_dest_dir(&hello.dest).map_err(|e| e.to_string())?;
    let session_id = super::random_u64();
    let mut tree = DestTree::prepare(root, &dest, &entries, session_id)?;
    tree.set_fsync(fsync);
    let sizes: Vec<u64> = entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).collect();
    let local_ip = ch.local_addr().ip();
    let mut sock = DataSocket::bind(SocketAddr::new(local_ip, 0)).map_err(|e| format!("UDP socket: {e}"))?;
    sock.set_buffer_bytes(SOCKET_BUFFER_BYTES);
    let udp_port = sock.local_addr().map_err(|e| e.to_string())?.port();
    ch.send(&ControlMsg::Accept { session_id, udp_port }).map_err(|e| format!("sending accept: {e}"))?;

    let mut cfg = Config::new(session_id, hello.block_payload as usize + DATA_OVERHEAD, hello.rate_bps);
    cfg.window_blocks = hello.window_blocks;
    let clock = MonotonicClock::new();
    let store = WriteCoalescer::new(tree, DEFAULT_RUN_BYTES);
    let mut session = ReceiverSession::new(Receiver::new(cfg.clone(), sizes, clock.now()), store);
    let gro = sock.enable_gro();
    let mut batch =
        if gro { RxBatch::new(16, RxBatch::GRO_DATAGRAM) } else { RxBatch::new(RX_BATCH, cfg.max_datagram()) };
    let mut fb_buf = vec![0u8; cfg.max_datagram()];
    let mut peer: Option<SocketAddr> = None;
    loop {
        let now = clock.now();
        let mut received = 0;
        for _ in 0..8 {
            let n = sock.recv_batch(&mut batch).map_err(|e| format!("receiving data: {e}"))?;
            received += n;
            for i in 0..n {
                let (datagram, src) = batch.get_mut(i);
                // The first datagram that passes the tag check with this session's id names the sender's
                // data address; feedback goes there.
                if session.handle_datagram(now, datagram).is_ok() && peer.is_none() {
                    peer = Some(src);
                }
            }
            if n == 0 {
                break;
            }
        }
        session.process();
        while let Some(ev) = ch.try_recv() {
            match ev {
                ControlEvent::Msg(m) => session.handle_control(now, m),
                ControlEvent::Closed => session.core.fail("the sender closed the control connection".into()),
                ControlEvent::Failed(e) => session.core.fail(format!("control connection failed: {e}")),
            }
        }
        session.handle_timeout(now);
        if let Some(p) = peer {
            while let Some(len) = session.poll_transmit(now, &mut fb_buf) {
                // A refused or dropped feedback datagram is just lost feedback: the next one repeats it.
                let _ = sock.send_to(&fb_buf[..len], p);
            }
        }
        while let Some(m) = session.poll_control() {
            ch.send(&m).map_err(|e| format!("sending to the sender: {e}"))?;
        }
        if let Some(outcome) = session.outcome() {
            if std::env::var_os("MOVER_DEBUG_STATS").is_some() {
                eprintln!("receiver stats: {:?}", session.core.stats());
            }
            outcome?;
            // Let the sender read `Complete` and close first, so our close cannot reset the connection.
            let _ = ch.recv_timeout(Duration::from_secs(5));
            return Ok(SessionReport {
                peer: ch.peer_addr(),
                summary: session.core.summary(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let wait = session.poll_timeout().map_or(Duration::from_millis(10), |d| d.since(clock.now()));
        if received > 0 {
            // Data is flowing: nap so that the next recvmmsg returns a batch rather than one datagram per
            // wake-up. The socket buffer (64 MiB) holds far more than one nap's worth at 10 Gbit/s.
            std::thread::sleep(RX_NAP.min(wait));
        } else if !wait.is_zero() {
            sock.wait_readable(wait.min(Duration::from_millis(10))).map_err(|e| e.to_string())?;
        }
    }
}

fn check_hello(h: &Hello) -> Result<(), String> {
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

fn read_manifest(ch: &mut ControlChannel, hello: &Hello) -> Result<Vec<Entry>, String> {
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
