//! `mover push --via R1,R2,...`: a striped push (the Fast Send Protocol, PROTOCOL.md §8).
//!
//! The sender opens a striped session with the receiver (`Stripe`, the manifest, `Accept` with the
//! session key), then runs one thread per *leg*: each relay, and with `--direct` the receiver itself.
//! A leg takes a batch of blocks from the [`Scheduler`], seals each block with the transfer's block key
//! (`wire::stripe`) into a staging directory, and pushes the batch as an ordinary verified push (its own
//! rate control, NAK retransmission and datagram AEAD) into the relay's spool, or into the receiver's
//! staging for the direct leg. Once a batch is stored the receiver is told where its blocks are
//! (`BlocksAt`) and collects them, while striping goes on unless `--no-overlap`.
//!
//! `send_seconds` ends when every block is held by a relay or the receiver and every file's stripe hash
//! was sent (`StripeDone`); `seconds` when the receiver has verified and committed everything
//! (`Complete`). With `--detach` the push returns at `StripeDone`. Until then, a block the receiver
//! could not collect (a relay died, altered it or lost it) comes back in a `Refetch` and is sealed again
//! (a new attempt, so a new nonce) and sent through another live leg.

use super::error::SessionError;
use super::push::PushOptions;
use super::relay::SPOOL_FULL;
use super::relay_choice;
use super::report::{Direction, LegReport, Report, StripeReport};
use super::stripe_options::{AutoChoice, StripeOptions};
use crate::connect::{start_client, ClientAuth, ConnectError, Location, MoverUrl};
use crate::files::EntryKind;
use crate::net::control::ControlEvent;
use crate::net::ControlChannel;
use crate::proto::compress::AUTO_MIN_GAIN;
use crate::proto::stripe_plan::{BlockPlan, Scheduler, MAX_BATCH_BLOCKS};
use crate::wire::compress::{BlockCompressor, AUTO_LEVEL};
use crate::wire::control::{ControlMsg, Hello, StripeHello, MAX_BLOCKS_PER_MESSAGE};
use crate::wire::stripe::{
    batch_name, block_digest, stripe_hash, transfer_name, BlockHeader, BlockKey, BLOCK_HEADER_LEN,
};
use crate::wire::{Compression, VERSION};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a leg waits after a relay refused a batch for want of room before it tries again.
const SPOOL_FULL_BACKOFF: Duration = Duration::from_millis(300);
/// The receiver's staging directory below its root, where direct batches land and relays' batches are
/// fetched to (PROTOCOL.md §8.3).
pub const RECEIVER_STAGING: &str = ".mover-stripe";

/// One leg: where its batches go.
#[derive(Clone, Debug)]
struct Leg {
    /// "direct", or the relay's URL as given.
    name: String,
    /// The push URL of its batches: `mover://HOST:PORT/DIR`.
    url: String,
    /// Its number in `RelayOffer` and `BlocksAt`: 0 for the receiver, 1.. for the relays in `--via` order.
    wire: u8,
}

/// What leg threads tell the main thread.
enum Event {
    /// A batch is held by the leg: the receiver may collect it.
    Stored { leg: usize, batch: u32, blocks: Vec<u64>, report: Box<Report> },
    /// A file's every block was sealed: its stripe hash.
    Hashed { file_id: u32, hash: u128 },
    /// The leg failed and takes no more batches.
    Failed { leg: usize, why: String },
    /// The leg's relay refused a batch for want of room (`blocked`), or took one again after that.
    Room { leg: usize, blocked: bool },
    /// Sealing failed (a source could not be read): the push fails.
    Fatal(SessionError),
}

/// What the leg threads share.
struct Shared {
    sched: Scheduler,
    /// Each block's digest once sealed, and how often it was sealed.
    digests: Vec<Option<u128>>,
    attempts: Vec<u16>,
    /// Per file, blocks not yet digested; its stripe hash goes out when it reaches 0.
    undigested: Vec<u64>,
    /// Plaintext bytes sealed, and the bodies' bytes (compressed frames at their length): the report's
    /// `compression_ratio`.
    sealed_bytes: (u64, u64),
}

/// Runs a striped push. The report always comes back: on failure `verified` is false and `error` says why.
pub fn push_striped(opts: &PushOptions, s: &StripeOptions) -> Report {
    let mut report = Report::new(Direction::Sent, opts.rate_bps, opts.policy, opts.cipher);
    if let Err(e) = run(opts, s, &mut report) {
        opts.live.set_phase(crate::pipeline::live::Phase::Failed);
        report.verified = false;
        report.error = Some(e.to_string());
        report.exit_class = e.exit_class();
    }
    report
}

fn run(opts: &PushOptions, s: &StripeOptions, report: &mut Report) -> Result<(), SessionError> {
    let started = Instant::now();
    let url = match Location::parse(&opts.url)? {
        Location::Daemon(url) => url,
        _ => {
            return Err(SessionError::Setup(
                "--via stripes to a mover:// daemon: the destination must be mover://HOST[:PORT]/DIR".into(),
            ))
        }
    };
    if !opts.cipher.is_aead() {
        return Err(SessionError::Setup(
            "--via needs an AEAD cipher (relays are not trusted): drop --cipher none".into(),
        ));
    }
    if s.via.is_empty() && s.auto.is_none() {
        return Err(SessionError::Setup("--via names no relay".into()));
    }
    // Checked before connecting; with --via auto the relays are known once the RTTs are.
    let mut legs = legs_of(&s.via, s.direct)?;
    let scanned = super::push::scan_push_sources(opts)?;
    if let Some(e) = scanned.entries.iter().find(|e| !matches!(e.kind, EntryKind::File | EntryKind::Dir)) {
        return Err(SessionError::Setup(format!(
            "--via stripes regular files and directories; '{}' is a link: push it without --via",
            e.rel_path
        )));
    }
    let sizes: Vec<u64> = scanned.entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).collect();
    report.files = sizes.len() as u64;
    report.bytes = sizes.iter().sum();
    report.skipped = scanned.skipped.len() as u64;
    let transfer_id = u128::from_be_bytes(
        crate::random::random_bytes::<16>()
            .map_err(|error| SessionError::Io { what: "getrandom for a transfer id", error })?,
    );
    let hex = transfer_name(transfer_id);

    // The control session with the receiver.
    let server = url.socket_addr()?;
    let stream = std::net::TcpStream::connect_timeout(&server, opts.connect_timeout)
        .map_err(|error| ConnectError::Connect { target: format!("{}:{}", url.host, url.port), error })?;
    let mut ch = start_client(stream, &url.host, &opts.auth, opts.connect_timeout)?;
    report.peer = Some(ch.peer_addr());
    let hello = Hello {
        version: VERSION as u16,
        block_payload: 0,
        rate_bps: opts.rate_bps,
        window_blocks: 0,
        entry_count: scanned.entries.len() as u64,
        total_bytes: report.bytes,
        cipher: opts.cipher,
        options: opts.options,
        policy: opts.policy,
        dest: url.path.clone(),
    };
    let first = ControlMsg::Stripe(StripeHello {
        hello,
        transfer_id,
        block_bytes: s.block_bytes,
        overlap: s.overlap,
        detach: s.detach,
    });
    let manifest = std::iter::once(first)
        .chain(scanned.entries.iter().cloned().map(ControlMsg::Entry))
        .chain(std::iter::once(ControlMsg::ManifestEnd));
    let who = "server";
    for m in manifest {
        ch.send(&m).map_err(|e| SessionError::lost(format!("sending to {}: {e}", ch.peer_addr())))?;
    }
    let mut place = crate::connect::QueuePlace::default();
    let mut skipped = vec![false; sizes.len()];
    let key = loop {
        match ch
            .expect_msg(Duration::from_secs(300), "waiting for it to accept the session")
            .map_err(SessionError::lost)?
        {
            ControlMsg::Accept { key, .. } => break key,
            // Files the receiver holds current: not sent (PROTOCOL.md §8.3).
            ControlMsg::Skip { file_ids } => {
                for id in file_ids {
                    let slot = skipped.get_mut(id as usize).ok_or_else(|| {
                        SessionError::Protocol(format!("the {who} skips file id {id}, beyond the manifest"))
                    })?;
                    *slot = true;
                }
            }
            ControlMsg::Queued { position, waiting } => place.show(position, waiting),
            ControlMsg::Error { message } => return Err(SessionError::Refused { who, message }),
            other => return Err(SessionError::Protocol(format!("unexpected answer from the {who}: {other:?}"))),
        }
    };
    // Skipped files have no blocks: both sides plan them as empty.
    let sizes: Vec<u64> = sizes.iter().zip(&skipped).map(|(&size, &skip)| if skip { 0 } else { size }).collect();
    let plan = BlockPlan::new(&sizes, s.block_bytes);
    report.skipped_files = skipped.iter().filter(|s| **s).count() as u64;
    report.skipped_bytes = report.bytes - sizes.iter().sum::<u64>();
    report.files -= report.skipped_files;
    report.bytes -= report.skipped_bytes;
    if let Some(auto) = &s.auto {
        let chosen = choose_relays(&mut ch, auto, report)?;
        legs = legs_of(&chosen, s.direct)?;
    }
    let block_key = Arc::new(BlockKey::new(opts.cipher, &key.0, transfer_id).expect("an AEAD cipher"));
    let capability = match opts.auth {
        ClientAuth::Insecure => None,
        ClientAuth::Tls(_) => Some(transfer_name(u128::from_be_bytes(
            crate::random::random_bytes::<16>()
                .map_err(|error| SessionError::Io { what: "getrandom for a fetch capability", error })?,
        ))),
    };
    for leg in legs.iter_mut() {
        if leg.wire == 0 {
            leg.url = format!("mover://{}:{}/{RECEIVER_STAGING}/{hex}", bracket(&url.host), url.port);
        } else {
            let ca_pem = match &opts.auth {
                ClientAuth::Insecure => String::new(),
                ClientAuth::Tls(_) => opts
                    .auth
                    .ca_file()
                    .map(std::fs::read_to_string)
                    .transpose()
                    .map_err(|error| SessionError::Io { what: "reading --ca for the receiver", error })?
                    .unwrap_or_default(),
            };
            let offer = ControlMsg::RelayOffer {
                leg: leg.wire,
                url: leg.url.clone(),
                ca_pem,
                capability: capability.clone().unwrap_or_default(),
            };
            ch.send(&offer).map_err(|e| SessionError::lost(format!("sending to {}: {e}", ch.peer_addr())))?;
            leg.url = format!("{}/{hex}", leg.url);
        }
    }

    let staging = staging_dir(&hex)?;
    // Over TLS, the relays let the receiver fetch with the transfer's capability, whose digest each relay
    // gets with the first batch (PROTOCOL.md §8.5).
    let fetch_file = match &capability {
        Some(c) => {
            let f = staging.join(crate::connect::FETCH_FILE);
            std::fs::write(&f, crate::connect::fetch_capability_digest(c))
                .map_err(|error| SessionError::Io { what: "writing the fetch capability", error })?;
            Some(f)
        }
        None => None,
    };
    let shared = Arc::new(Mutex::new(Shared {
        sched: Scheduler::new(&plan, s.mode, legs.len()),
        digests: vec![None; plan.total_blocks() as usize],
        attempts: vec![0; plan.total_blocks() as usize],
        undigested: (0..sizes.len() as u32).map(|f| plan.blocks_of(f).end - plan.blocks_of(f).start).collect(),
        sealed_bytes: (0, 0),
    }));
    let finished = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    // Empty files have no block to seal: their stripe hash goes now.
    for (file_id, size) in sizes.iter().enumerate() {
        if *size == 0 {
            let _ = tx.send(Event::Hashed { file_id: file_id as u32, hash: stripe_hash(&[]) });
        }
    }
    let mut threads = Vec::new();
    for (i, leg) in legs.iter().enumerate() {
        let ctx = LegCtx {
            leg: i,
            target: leg.clone(),
            opts: opts.clone(),
            plan: plan.clone(),
            files: scanned.file_paths.clone(),
            key: block_key.clone(),
            shared: shared.clone(),
            finished: finished.clone(),
            tx: tx.clone(),
            staging: staging.join(format!("l{i}")),
            fetch_file: fetch_file.clone().filter(|_| leg.wire != 0),
        };
        let t = std::thread::Builder::new()
            .name(format!("mover-leg{i}"))
            .spawn(move || run_leg(ctx))
            .map_err(|error| SessionError::Io { what: "starting a leg's thread", error })?;
        threads.push(t);
    }
    drop(tx);
    report.compress = opts.options.compress;
    let result = drive(&mut ch, &rx, &shared, &legs, &plan, s, &hex, started, report);
    finished.store(true, Ordering::Release);
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// The main thread's loop: tells the receiver what the legs stored, answers its re-fetches, ends at
/// `Complete` (or at `StripeDone` with `--detach`).
#[allow(clippy::too_many_arguments)]
fn drive(
    ch: &mut ControlChannel,
    rx: &mpsc::Receiver<Event>,
    shared: &Arc<Mutex<Shared>>,
    legs: &[Leg],
    plan: &BlockPlan,
    s: &StripeOptions,
    hex: &str,
    started: Instant,
    report: &mut Report,
) -> Result<(), SessionError> {
    let total = plan.total_blocks() as usize;
    let mut stored = vec![false; total];
    let mut stored_count = 0usize;
    let mut hashed = 0usize;
    let files = plan.file_count();
    let mut stripe = StripeReport {
        transfer: hex.to_string(),
        legs: legs.iter().map(|l| LegReport { name: l.name.clone(), ..LegReport::default() }).collect(),
        ..StripeReport::default()
    };
    let mut done_sent = false;
    let mut drain_sent = false;
    let mut blocked = vec![false; legs.len()];
    let send = |ch: &mut ControlChannel, m: &ControlMsg| {
        ch.send(m).map_err(|e| SessionError::lost(format!("sending to the receiver {}: {e}", ch.peer_addr())))
    };
    let outcome = loop {
        // What the legs did.
        loop {
            match rx.try_recv() {
                Ok(Event::Room { leg, blocked: b }) => {
                    blocked[leg] = b;
                    stripe.legs[leg].spool_full += u64::from(b);
                }
                Ok(Event::Stored { leg, batch, blocks, report: r }) => {
                    blocked[leg] = false;
                    let l = &mut stripe.legs[leg];
                    l.bytes += r.bytes;
                    l.blocks += blocks.len() as u64;
                    l.batches += 1;
                    l.retransmitted += r.packets_retransmitted;
                    l.seconds = started.elapsed().as_secs_f64();
                    for chunk in blocks.chunks(MAX_BLOCKS_PER_MESSAGE) {
                        send(ch, &ControlMsg::BlocksAt { leg: legs[leg].wire, batch, blocks: chunk.to_vec() })?;
                    }
                    for b in blocks {
                        if !std::mem::replace(&mut stored[b as usize], true) {
                            stored_count += 1;
                        }
                    }
                }
                Ok(Event::Hashed { file_id, hash }) => {
                    hashed += 1;
                    send(ch, &ControlMsg::FileHash { round: 0, file_id, hash })?;
                }
                Ok(Event::Failed { leg, why }) => {
                    eprintln!("mover push: leg {} failed, its blocks go to the others: {why}", legs[leg].name);
                    stripe.legs[leg].failed = Some(why.clone());
                    if shared.lock().unwrap_or_else(|e| e.into_inner()).sched.live_legs() == 0 {
                        break;
                    }
                }
                Ok(Event::Fatal(e)) => return Err(e),
                Err(_) => break,
            }
        }
        let (live, all_blocked) = {
            let sh = shared.lock().unwrap_or_else(|e| e.into_inner());
            let all_blocked = (0..legs.len()).filter(|&l| sh.sched.is_alive(l)).all(|l| blocked[l]);
            (sh.sched.live_legs(), all_blocked)
        };
        if !s.overlap && !drain_sent && live > 0 && all_blocked {
            // Without overlap nothing leaves the spools before `StripeDone`: with all of them full, the
            // receiver must start collecting or striping never ends.
            eprintln!("mover push: every relay's spool is full: the receiver collects now (overlap from here on)");
            send(ch, &ControlMsg::Drain)?;
            drain_sent = true;
        }
        if live == 0 {
            let why: Vec<String> =
                stripe.legs.iter().filter_map(|l| l.failed.as_ref().map(|w| format!("{}: {w}", l.name))).collect();
            break Err(SessionError::Transfer(format!("every leg failed ({})", why.join("; "))));
        }
        if !done_sent && stored_count == total && hashed == files {
            send(ch, &ControlMsg::StripeDone)?;
            done_sent = true;
            stripe.send_seconds = started.elapsed().as_secs_f64();
            if s.detach {
                break Ok(None);
            }
        }
        match ch.recv_timeout(Duration::from_millis(10)) {
            None => {}
            Some(ControlEvent::Msg(ControlMsg::Refetch { blocks })) => {
                let mut sh = shared.lock().unwrap_or_else(|e| e.into_inner());
                let blocks: Vec<u64> = blocks.into_iter().filter(|&b| b < total as u64).collect();
                stripe.refetched += blocks.len() as u64;
                sh.sched.give_back(blocks);
            }
            Some(ControlEvent::Msg(ControlMsg::Complete(summary))) => break Ok(Some(summary)),
            Some(ControlEvent::Msg(ControlMsg::Error { message })) => {
                break Err(SessionError::Refused { who: "server", message })
            }
            Some(ControlEvent::Msg(other)) => {
                break Err(SessionError::Protocol(format!("unexpected message from the receiver: {other:?}")))
            }
            Some(ControlEvent::Failed(why)) => break Err(SessionError::lost(why)),
            Some(ControlEvent::Closed) => break Err(SessionError::lost("the receiver closed the connection".into())),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    for l in &mut stripe.legs {
        l.goodput_bps = if l.seconds > 0.0 { l.bytes as f64 * 8.0 / l.seconds } else { 0.0 };
    }
    if stripe.send_seconds > 0.0 {
        stripe.send_goodput_bps = report.bytes as f64 * 8.0 / stripe.send_seconds;
    }
    report.packets_retransmitted = stripe.legs.iter().map(|l| l.retransmitted).sum();
    report.stripe = Some(stripe);
    (report.raw_wire_bytes, report.wire_bytes) = shared.lock().unwrap_or_else(|e| e.into_inner()).sealed_bytes;
    let summary = outcome?;
    report.seconds = seconds;
    match summary {
        Some(summary) => {
            report.receiver = summary;
            report.verified = true;
            report.goodput_bps = if seconds > 0.0 { report.bytes as f64 * 8.0 / seconds } else { 0.0 };
        }
        // Detached: the receiver finishes on its own (`mover status`).
        None => report.detached = true,
    }
    Ok(())
}

/// What one leg's thread needs.
struct LegCtx {
    leg: usize,
    target: Leg,
    opts: PushOptions,
    plan: BlockPlan,
    files: Vec<PathBuf>,
    key: Arc<BlockKey>,
    shared: Arc<Mutex<Shared>>,
    finished: Arc<AtomicBool>,
    tx: mpsc::Sender<Event>,
    staging: PathBuf,
    /// The capability's digest, pushed with every batch to a relay (`.fetch` beside the batches).
    fetch_file: Option<PathBuf>,
}

/// A leg's thread: batches from the scheduler, sealed and pushed, until the transfer is over. A leg
/// stays while the transfer runs, for blocks the receiver may ask for again.
fn run_leg(cx: LegCtx) {
    let lock = || cx.shared.lock().unwrap_or_else(|e| e.into_inner());
    // Halved at each refusal for room, so a batch fits a small spool; grows back after each success.
    let mut cap = MAX_BATCH_BLOCKS;
    // The batch sealed while the previous one was pushed: sealing never idles the leg's path.
    let mut ready: Option<Sealed> = None;
    while !cx.finished.load(Ordering::Acquire) {
        let current = match ready.take() {
            Some(s) => s,
            None => {
                let Some((batch, blocks)) = lock().sched.next_at_most(cx.leg, cap) else {
                    if !lock().sched.is_alive(cx.leg) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                match seal_into_staging(&cx, batch, blocks) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = cx.tx.send(Event::Fatal(e));
                        return;
                    }
                }
            }
        };
        let following = lock().sched.next_at_most(cx.leg, cap);
        let mut popts = cx.opts.clone();
        popts.sources = cx.fetch_file.iter().cloned().chain([current.dir.clone()]).collect();
        popts.url = cx.target.url.clone();
        popts.files_from = None;
        popts.stripe = None;
        // Sealed blocks were compressed (or not) before sealing; ciphertext does not compress.
        popts.options.compress = crate::wire::Compression::None;
        popts.live = crate::pipeline::live::Live::new();
        let (r, next) = std::thread::scope(|sc| {
            let cx = &cx;
            let sealing = following.map(|(batch, blocks)| sc.spawn(move || seal_into_staging(cx, batch, blocks)));
            let r = super::push::push(&popts);
            (r, sealing.map(|h| h.join().expect("sealing does not panic")))
        });
        let _ = std::fs::remove_dir_all(&current.dir);
        let next = match next.transpose() {
            Ok(n) => n,
            Err(e) => {
                let _ = cx.tx.send(Event::Fatal(e));
                return;
            }
        };
        if r.verified {
            cap = (cap * 2).min(MAX_BATCH_BLOCKS);
            let _ = cx.tx.send(Event::Stored {
                leg: cx.leg,
                batch: current.batch,
                blocks: current.blocks,
                report: Box::new(r),
            });
            ready = next;
            continue;
        }
        // What this leg holds goes back to every leg: the batch that failed and the one sealed meanwhile.
        let why = r.error.unwrap_or_else(|| "the push was not verified".into());
        let n = current.blocks.len();
        lock().sched.give_back(current.blocks);
        if let Some(next) = next {
            let _ = std::fs::remove_dir_all(&next.dir);
            lock().sched.give_back(next.blocks);
        }
        if why.contains(SPOOL_FULL) {
            // Back-pressure, not a failure: the relay takes more once the receiver has collected some,
            // and a smaller batch may fit now. Meanwhile the other legs take what this one gave back.
            let _ = cx.tx.send(Event::Room { leg: cx.leg, blocked: cap == 1 || n == 1 });
            cap = (n / 2).max(1);
            std::thread::sleep(SPOOL_FULL_BACKOFF);
            continue;
        }
        lock().sched.leg_failed(cx.leg);
        let _ = cx.tx.send(Event::Failed { leg: cx.leg, why });
        return;
    }
    if let Some(r) = ready {
        let _ = std::fs::remove_dir_all(&r.dir);
    }
}

/// A batch sealed into the staging directory, ready to push.
struct Sealed {
    batch: u32,
    blocks: Vec<u64>,
    dir: PathBuf,
}

fn seal_into_staging(cx: &LegCtx, batch: u32, blocks: Vec<u64>) -> Result<Sealed, SessionError> {
    let dir = cx.staging.join(batch_name(batch));
    seal_batch(cx, &dir, &blocks)?;
    Ok(Sealed { batch, blocks, dir })
}

/// Seals `blocks` into `dir`, one file per block named by its global index; each block's digest is kept,
/// and a file whose last block was digested gets its stripe hash sent.
fn seal_batch(cx: &LegCtx, dir: &Path, blocks: &[u64]) -> Result<(), SessionError> {
    std::fs::create_dir_all(dir).map_err(|error| SessionError::Io { what: "creating the staging directory", error })?;
    let mut buf = Vec::new();
    let mut packer = BlockPacker::new(cx.opts.options.compress)?;
    let mut open: Option<(u32, File)> = None;
    for &b in blocks {
        let mut h = cx.plan.header(b).expect("the scheduler deals planned blocks");
        if open.as_ref().is_none_or(|(f, _)| *f != h.file_id) {
            let path = &cx.files[h.file_id as usize];
            let f = File::open(path).map_err(|error| SessionError::Io { what: "opening a source", error })?;
            open = Some((h.file_id, f));
        }
        let file = &open.as_ref().expect("opened above").1;
        buf.resize(h.len as usize, 0);
        file.read_exact_at(&mut buf, h.offset).map_err(|error| SessionError::Io { what: "reading a source", error })?;
        let digest = block_digest(&buf);
        {
            let mut sh = cx.shared.lock().unwrap_or_else(|e| e.into_inner());
            h.attempt = sh.attempts[b as usize];
            sh.attempts[b as usize] = h.attempt.saturating_add(1);
            if sh.digests[b as usize].replace(digest).is_none() {
                let left = &mut sh.undigested[h.file_id as usize];
                *left -= 1;
                if *left == 0 {
                    let r = cx.plan.blocks_of(h.file_id);
                    let ds: Vec<u128> =
                        sh.digests[r.start as usize..r.end as usize].iter().map(|d| d.expect("all digested")).collect();
                    let _ = cx.tx.send(Event::Hashed { file_id: h.file_id, hash: stripe_hash(&ds) });
                }
            }
        }
        let sealed = match packer.pack(&buf) {
            Some(frame) => cx.key.seal(&BlockHeader { frame: frame.len() as u32, ..h }, frame),
            None => cx.key.seal(&h, &buf),
        };
        {
            let mut sh = cx.shared.lock().unwrap_or_else(|e| e.into_inner());
            sh.sealed_bytes.0 += buf.len() as u64;
            sh.sealed_bytes.1 += (sealed.len() - BLOCK_HEADER_LEN - crate::wire::TAG_LEN) as u64;
        }
        std::fs::write(dir.join(b.to_string()), sealed)
            .map_err(|error| SessionError::Io { what: "writing a sealed block to the staging directory", error })?;
    }
    Ok(())
}

/// `--compress` for sealed blocks: each block is compressed before it is sealed, so relays hold (and never
/// open) compressed blocks. `zstd:LEVEL` keeps every frame shorter than its block; `auto` (zstd:1) keeps
/// only frames that save at least `AUTO_MIN_GAIN` and, after 4 blocks in a row that did not, tries only
/// one block in 8: sealing runs ahead of the legs on its own thread, so the ratio is what decides.
struct BlockPacker {
    cx: Option<BlockCompressor>,
    auto: bool,
    misses: u32,
    out: Vec<u8>,
}

impl BlockPacker {
    fn new(choice: Compression) -> Result<BlockPacker, SessionError> {
        let level = match choice {
            Compression::None => None,
            Compression::Zstd(level) => Some(level),
            Compression::Auto => Some(AUTO_LEVEL),
        };
        let cx = level
            .map(BlockCompressor::new)
            .transpose()
            .map_err(|error| SessionError::Io { what: "creating the zstd compressor", error })?;
        Ok(BlockPacker { cx, auto: choice == Compression::Auto, misses: 0, out: Vec::new() })
    }

    /// The block's frame, if it goes compressed.
    fn pack(&mut self, block: &[u8]) -> Option<&[u8]> {
        let cx = self.cx.as_mut()?;
        if self.auto && self.misses >= 4 && self.misses % 8 != 0 {
            self.misses += 1;
            return None;
        }
        self.out.resize(block.len(), 0);
        let n = cx.compress(block, &mut self.out);
        let kept = match n {
            Some(n) if self.auto && (n as f64) * AUTO_MIN_GAIN > block.len() as f64 => None,
            n => n,
        };
        self.misses = if kept.is_some() { 0 } else { self.misses + 1 };
        kept.map(|n| &self.out[..n])
    }
}

/// Where the sender seals batches before pushing them: `$MOVER_STAGING`, else /dev/shm (memory: the
/// blocks are read once more, by the leg's push), else the temporary directory.
fn staging_dir(hex: &str) -> Result<PathBuf, SessionError> {
    let base = match std::env::var_os("MOVER_STAGING") {
        Some(d) => PathBuf::from(d),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    let dir = base.join(format!("mover-stripe-{hex}"));
    std::fs::create_dir_all(&dir)
        .map_err(|error| SessionError::Io { what: "creating the staging directory", error })?;
    Ok(dir)
}

/// The legs of `relays` (and the receiver first, with `direct`).
fn legs_of(relays: &[String], direct: bool) -> Result<Vec<Leg>, SessionError> {
    let mut legs = Vec::new();
    if direct {
        legs.push(Leg { name: "direct".into(), url: String::new(), wire: 0 });
    }
    if relays.len() > 250 {
        return Err(SessionError::Setup("--via names more than 250 relays".into()));
    }
    for (i, r) in relays.iter().enumerate() {
        let relay = MoverUrl::parse(r)?;
        if !relay.path.is_empty() {
            return Err(SessionError::Setup(format!("--via {r}: a relay is mover://HOST[:PORT], without a path")));
        }
        let url = format!("mover://{}:{}", bracket(&relay.host), relay.port);
        legs.push(Leg { name: r.clone(), url, wire: i as u8 + 1 });
    }
    Ok(legs)
}

/// `--via auto`: the receiver measures its RTTs to the candidates while we measure ours; the relays are
/// ranked by their distance to the constraints (`relay_choice`), printed, and the chosen ones returned.
fn choose_relays(ch: &mut ControlChannel, auto: &AutoChoice, report: &mut Report) -> Result<Vec<String>, SessionError> {
    ch.send(&ControlMsg::MeasureRtt { urls: auto.candidates.clone() })
        .map_err(|e| SessionError::lost(format!("sending to {}: {e}", ch.peer_addr())))?;
    let ours = relay_choice::measure_all(&auto.candidates);
    let theirs = match ch.expect_msg(Duration::from_secs(60), "waiting for its RTTs").map_err(SessionError::lost)? {
        ControlMsg::Rtts { micros } if micros.len() == auto.candidates.len() => micros,
        ControlMsg::Error { message } => return Err(SessionError::Refused { who: "server", message }),
        other => return Err(SessionError::Protocol(format!("expected the receiver's RTTs, got {other:?}"))),
    };
    let cands = auto
        .candidates
        .iter()
        .zip(ours)
        .zip(theirs)
        .map(|((url, s), r)| relay_choice::Candidate {
            url: url.clone(),
            rtt_sender_ms: s,
            rtt_receiver_ms: (r != u32::MAX).then(|| f64::from(r) / 1e3),
            score: 0.0,
            chosen: false,
        })
        .collect();
    let ranked = relay_choice::choose(cands, auto.max_rtt_sender_ms, auto.max_rtt_receiver_ms, auto.max_relays);
    let ms = |d: Option<f64>| d.map_or_else(|| "unreachable".to_string(), |d| format!("{d:.2} ms"));
    for c in &ranked {
        eprintln!(
            "mover push: relay {}: RTT sender {}, receiver {}, s = {}{}",
            c.url,
            ms(c.rtt_sender_ms),
            ms(c.rtt_receiver_ms),
            if c.score.is_finite() { format!("{:.1}", c.score) } else { "inf".into() },
            if c.chosen { ", chosen" } else { "" }
        );
    }
    let chosen: Vec<String> = ranked.iter().filter(|c| c.chosen).map(|c| c.url.clone()).collect();
    if chosen.is_empty() {
        return Err(SessionError::Setup("--via auto: no relay of --relays answered".into()));
    }
    if ranked.iter().all(|c| c.score > 0.0) {
        eprintln!("mover push: no relay meets --max-rtt-sender and --max-rtt-receiver: taking the closest one");
    }
    report.relay_choice = ranked;
    Ok(chosen)
}

/// A host for a URL: IPv6 addresses in brackets.
fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
