//! The receiving daemon's side of a striped push (PROTOCOL.md §8.3): the manifest, `Accept` with the
//! session key (from which the transfer's block key is derived), then blocks collected from where the
//! sender says they are: the daemon's own staging (`--direct` batches, pushed there as ordinary
//! sessions) or a relay (pulled from it, one batch per pull, into the staging). Each block is opened
//! (its tag and its place checked), written into the file's partial, read back and digested; a file whose
//! blocks are all in and whose stripe hash matches the sender's is committed under its final name.
//!
//! A block that cannot be collected (the relay is gone, refused, or served a block that fails its tag) is
//! asked for again (`Refetch`) while the sender is there; once it has left (`--detach`), the session fails
//! naming the files that cannot be completed.

use super::error::SessionError;
use super::handshake::read_manifest;
use super::pull::{pull, PullOptions};
use super::receive::{ReceiveParams, ReceiveTarget};
use super::report::{Direction, Report};
use super::stripe_send::RECEIVER_STAGING;
use super::stripe_status::StripeBook;
use crate::connect::ClientAuth;
use crate::files::FileStart;
use crate::files::{DestTree, EntryKind};
use crate::net::control::ControlEvent;
use crate::net::ControlChannel;
use crate::proto::policy::Policy;
use crate::proto::stripe_plan::BlockPlan;
use crate::proto::BlockStore;
use crate::wire::compress::BlockUnpacker;
use crate::wire::control::{
    transfer_state, ControlMsg, ReceiverSummary, StripeHello, TransferStatus, MAX_BLOCKS_PER_MESSAGE,
    MAX_IDS_PER_MESSAGE,
};
use crate::wire::stripe::{batch_name, block_digest, stripe_hash, transfer_name, BlockKey};
use crate::wire::{SessionKey, KEY_LEN, VERSION};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a pull from a relay may stay silent before the blocks are asked for again.
const RELAY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a file's blocks may fail their stripe hash before the session gives up on it.
const MAX_FILE_RETRIES: u32 = 3;

/// A batch to collect from a relay, or what came of it.
struct Fetch {
    leg: u8,
    batch: u32,
    blocks: Vec<u64>,
}

/// Serves a striped push after its `Stripe` message: see the module's documentation.
pub fn receive_striped(
    ch: &mut ControlChannel,
    sh: StripeHello,
    target: &ReceiveTarget,
    p: &ReceiveParams,
    book: &StripeBook,
) -> Result<Report, SessionError> {
    let started = Instant::now();
    let hello = &sh.hello;
    if hello.version != VERSION as u16 {
        return Err(SessionError::Protocol(format!(
            "protocol version {} is not supported (this server speaks {VERSION})",
            hello.version
        )));
    }
    if !hello.cipher.is_aead() {
        return Err(SessionError::NotAllowed("a striped transfer needs an AEAD cipher".into()));
    }
    p.limits.check_cipher(hello.cipher)?;
    if hello.entry_count > p.limits.max_files || hello.total_bytes > p.limits.max_bytes {
        return Err(SessionError::NotAllowed(format!(
            "{} entries and {} bytes exceed this server's limits (--max-files, --max-bytes)",
            hello.entry_count, hello.total_bytes
        )));
    }
    let mut memory = p.memory.reservation(p.limits.max_manifest_memory);
    let entries = read_manifest(ch, hello, &mut memory)?;
    p.limits.check_entries(&entries)?;
    super::relay::check_entries(&entries)
        .map_err(|_| SessionError::NotAllowed("a striped transfer holds regular files and directories only".into()))?;
    let dest = (target.dest_of)(&hello.dest)?;
    let session_id = crate::random::random_u64();
    let mut tree =
        DestTree::prepare(target.root, &dest, &entries, session_id).map_err(|e| e.relative_to(target.root))?;
    tree.set_fsync(p.fsync);
    tree.set_options(&hello.options);
    let files = || entries.iter().filter(|e| e.kind == EntryKind::File);
    let sizes: Vec<u64> = files().map(|e| e.size).collect();
    // Sync rules as for a push (`--overwrite`, `--checksum`): a file whose destination is current is not
    // sent; both sides then plan its blocks as none (PROTOCOL.md §8.3). Partials are not resumed by range.
    let expected: Vec<Option<u128>> = files().map(|e| e.content_hash).collect();
    let decision =
        tree.decide_start(&hello.options, &expected, sh.block_bytes).map_err(|e| e.relative_to(target.root))?;
    drop(entries);
    let skipped: Vec<bool> = decision.files.iter().map(|f| matches!(f, FileStart::Skip)).collect();
    let planned: Vec<u64> = sizes.iter().zip(&skipped).map(|(&size, &skip)| if skip { 0 } else { size }).collect();
    let plan = BlockPlan::new(&planned, sh.block_bytes);
    let key = SessionKey(
        crate::random::random_bytes::<{ KEY_LEN }>()
            .map_err(|error| SessionError::Io { what: "getrandom for a session key", error })?,
    );
    let block_key = BlockKey::new(hello.cipher, &key.0, sh.transfer_id).expect("an AEAD cipher");
    let hex = transfer_name(sh.transfer_id);
    let totals = TransferStatus {
        state: transfer_state::RUNNING,
        files_total: sizes.len() as u64,
        bytes_total: sizes.iter().sum(),
        ..TransferStatus::default()
    };
    book.update(&hex, totals.clone());
    let staging = target.root.join(RECEIVER_STAGING).join(&hex);
    std::fs::create_dir_all(&staging)
        .map_err(|error| SessionError::Io { what: "creating the stripe staging", error })?;
    p.live.set_totals(sizes.len() as u64, sizes.iter().sum());
    let skip_ids: Vec<u32> = (0..sizes.len() as u32).filter(|&f| skipped[f as usize]).collect();
    let plan_msgs = skip_ids.chunks(MAX_IDS_PER_MESSAGE).map(|c| ControlMsg::Skip { file_ids: c.to_vec() });
    ch.send_all(plan_msgs.chain([ControlMsg::Accept { session_id, udp_port: 0, key }]))
        .map_err(|error| SessionError::Io { what: "sending the sync plan and accept", error })?;
    let mut rx = Collector {
        have: vec![None; plan.total_blocks() as usize],
        plan,
        key: block_key,
        tree,
        staging: staging.clone(),
        expected: vec![None; sizes.len()],
        committed: skipped.clone(),
        file_failures: vec![0; sizes.len()],
        committed_count: skip_ids.len(),
        skipped: skip_ids.len(),
        bytes: 0,
        scratch: Vec::new(),
        unpacker: None,
        unpacked: Vec::new(),
        sizes: sizes.clone(),
    };
    let result = rx.run(ch, &sh, p, &hex, book, &totals);
    let outcome = match &result {
        Ok((summary, _)) => TransferStatus {
            state: transfer_state::DONE,
            files_done: summary.files,
            bytes_done: summary.bytes,
            ..totals.clone()
        },
        Err(e) => TransferStatus {
            state: transfer_state::FAILED,
            files_done: rx.committed_count as u64,
            bytes_done: rx.bytes,
            message: e.to_string(),
            ..totals.clone()
        },
    };
    book.update(&hex, outcome);
    // Before `Complete`: once the sender has it, nothing of the transfer is left here.
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir(target.root.join(RECEIVER_STAGING));
    let (summary, sender_here) = result?;
    if sender_here {
        ch.send(&ControlMsg::Complete(summary))
            .map_err(|error| SessionError::Io { what: "sending complete", error })?;
        // Let the sender read `Complete` and close first, so our close cannot reset the connection.
        let _ = ch.recv_timeout(Duration::from_secs(5));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        peer: Some(ch.peer_addr()),
        files: summary.files,
        bytes: summary.bytes,
        seconds,
        goodput_bps: summary.bytes as f64 * 8.0 / seconds.max(1e-9),
        verified: true,
        receiver: summary,
        ..Report::new(Direction::Received, hello.rate_bps, Policy::default(), hello.cipher)
    })
}

/// The receiving side's state: which blocks are in, which files are verified.
struct Collector {
    plan: BlockPlan,
    /// Each file's size (what a commit adds to the bytes received).
    sizes: Vec<u64>,
    key: BlockKey,
    tree: DestTree,
    staging: PathBuf,
    /// Each block's read-back digest once written.
    have: Vec<Option<u128>>,
    /// Each file's stripe hash from the sender.
    expected: Vec<Option<u128>>,
    committed: Vec<bool>,
    /// Files not sent because the destination is current (counted as committed).
    skipped: usize,
    file_failures: Vec<u32>,
    committed_count: usize,
    bytes: u64,
    scratch: Vec<u8>,
    /// The decompressor of compressed blocks (made at the first), and the block it decompressed.
    unpacker: Option<BlockUnpacker>,
    unpacked: Vec<u8>,
}

impl Collector {
    fn run(
        &mut self,
        ch: &mut ControlChannel,
        sh: &StripeHello,
        p: &ReceiveParams,
        hex: &str,
        book: &StripeBook,
        totals: &TransferStatus,
    ) -> Result<(ReceiverSummary, bool), SessionError> {
        let (done_tx, done_rx) = mpsc::channel::<(Fetch, Result<PathBuf, String>)>();
        let mut relays: HashMap<u8, mpsc::Sender<Fetch>> = HashMap::new();
        let mut held: Vec<Fetch> = Vec::new();
        let mut stripe_done = false;
        let mut collect_now = sh.overlap;
        let mut sender_here = true;
        let mut refetch: Vec<u64> = Vec::new();
        let mut lost: Vec<(u64, String)> = Vec::new();
        // Empty files have nothing to collect: verified as soon as their hash is in.
        loop {
            let before = self.committed_count;
            self.commit_ready(&mut refetch)?;
            if self.committed_count != before {
                let status = TransferStatus {
                    files_done: self.committed_count as u64,
                    bytes_done: self.bytes,
                    ..totals.clone()
                };
                book.update(hex, status);
            }
            if self.committed_count == self.committed.len() {
                self.tree.finish().map_err(|error| SessionError::Io { what: "finishing the destination", error })?;
                let summary = ReceiverSummary {
                    files: (self.committed.len() - self.skipped) as u64,
                    bytes: self.bytes,
                    dropped: self.tree.dropped(),
                    ..ReceiverSummary::default()
                };
                p.live.finish();
                return Ok((summary, sender_here));
            }
            if !refetch.is_empty() {
                refetch.sort_unstable();
                refetch.dedup();
                if sender_here {
                    for chunk in refetch.chunks(MAX_BLOCKS_PER_MESSAGE) {
                        ch.send(&ControlMsg::Refetch { blocks: chunk.to_vec() })
                            .map_err(|error| SessionError::Io { what: "asking for blocks again", error })?;
                    }
                    refetch.clear();
                } else {
                    lost.extend(refetch.drain(..).map(|b| (b, "the sender has left".to_string())));
                }
            }
            if !lost.is_empty() {
                return Err(self.lost_error(&lost));
            }
            // Batches collected from relays.
            while let Ok((f, r)) = done_rx.try_recv() {
                match r {
                    Ok(dir) => self.absorb(&dir, &f.blocks, &mut refetch),
                    Err(why) => {
                        eprintln!("mover serve: collecting batch {} from leg {}: {why}", f.batch, f.leg);
                        let missing = f.blocks.iter().copied().filter(|&b| self.have[b as usize].is_none());
                        if sender_here {
                            refetch.extend(missing);
                        } else {
                            lost.extend(missing.map(|b| (b, why.clone())));
                        }
                    }
                }
            }
            let event = if sender_here {
                ch.recv_timeout(Duration::from_millis(10))
            } else {
                std::thread::sleep(Duration::from_millis(10));
                None
            };
            match event {
                None => {}
                Some(ControlEvent::Msg(ControlMsg::RelayOffer { leg, url, ca_pem, capability })) => {
                    let auth = relay_auth(&self.staging, leg, &ca_pem, &capability, hex)?;
                    let (tx, rx) = mpsc::channel::<Fetch>();
                    let (done, dir, net) = (done_tx.clone(), self.staging.join(format!("r{leg}")), p.net);
                    let source = format!("{url}/{hex}");
                    std::thread::Builder::new()
                        .name(format!("mover-fetch{leg}"))
                        .spawn(move || fetch_loop(&rx, &done, &source, &dir, &auth, net))
                        .map_err(|error| SessionError::Io { what: "starting a collector", error })?;
                    relays.insert(leg, tx);
                }
                Some(ControlEvent::Msg(ControlMsg::BlocksAt { leg, batch, blocks })) => {
                    if blocks.iter().any(|&b| b >= self.plan.total_blocks()) {
                        return Err(SessionError::Protocol("a block index beyond the manifest's blocks".into()));
                    }
                    if leg == 0 {
                        let dir = self.staging.join(batch_name(batch));
                        self.absorb(&dir, &blocks, &mut refetch);
                        let _ = std::fs::remove_dir_all(&dir);
                    } else if !relays.contains_key(&leg) {
                        return Err(SessionError::Protocol(format!("blocks on leg {leg}, which no relay offer named")));
                    } else if collect_now || stripe_done {
                        let _ = relays[&leg].send(Fetch { leg, batch, blocks });
                    } else {
                        held.push(Fetch { leg, batch, blocks });
                    }
                }
                Some(ControlEvent::Msg(ControlMsg::FileHash { file_id, hash, .. })) => {
                    let slot = self.expected.get_mut(file_id as usize).ok_or_else(|| {
                        SessionError::Protocol(format!("a hash for file id {file_id}, beyond the manifest"))
                    })?;
                    *slot = Some(hash);
                }
                Some(ControlEvent::Msg(ControlMsg::MeasureRtt { urls })) => {
                    // `--via auto`: our RTT to each candidate (TCP handshakes only), for the sender to rank.
                    let micros = super::relay_choice::measure_all(&urls)
                        .into_iter()
                        .map(|ms| ms.map_or(u32::MAX, |ms| (ms * 1e3).min(f64::from(u32::MAX - 1)) as u32))
                        .collect();
                    ch.send(&ControlMsg::Rtts { micros })
                        .map_err(|error| SessionError::Io { what: "sending RTTs", error })?;
                }
                Some(ControlEvent::Msg(ControlMsg::Drain)) => {
                    // The relays are full and striping waits on us: collect from now on.
                    collect_now = true;
                    for f in held.drain(..) {
                        let _ = relays[&f.leg].send(f);
                    }
                }
                Some(ControlEvent::Msg(ControlMsg::StripeDone)) => {
                    stripe_done = true;
                    for f in held.drain(..) {
                        let _ = relays[&f.leg].send(f);
                    }
                }
                Some(ControlEvent::Msg(ControlMsg::Error { message })) => {
                    return Err(SessionError::Refused { who: p.peer_name, message })
                }
                Some(ControlEvent::Msg(other)) => {
                    return Err(SessionError::Protocol(format!("unexpected message in a striped session: {other:?}")))
                }
                Some(ControlEvent::Failed(_) | ControlEvent::Closed) if stripe_done && sh.detach => {
                    // The sender left as it said it would: finish on our own.
                    sender_here = false;
                }
                Some(ControlEvent::Failed(why)) => return Err(SessionError::lost(why)),
                Some(ControlEvent::Closed) => {
                    return Err(SessionError::lost(
                        "the sender closed the connection before the transfer was done".into(),
                    ))
                }
            }
        }
    }

    /// Opens, writes and digests the blocks of a collected batch in `dir`; a block that is missing or fails
    /// its tag or place is asked for again.
    fn absorb(&mut self, dir: &Path, blocks: &[u64], refetch: &mut Vec<u64>) {
        for &b in blocks {
            if self.have[b as usize].is_some() {
                continue;
            }
            let expected = self.plan.header(b).expect("checked against the plan");
            if self.committed[expected.file_id as usize] {
                continue;
            }
            let opened = std::fs::read(dir.join(b.to_string())).map_err(|e| e.to_string()).and_then(|mut sealed| {
                let (got, body) = self.key.open(&mut sealed, &expected).map_err(|e| e.to_string())?;
                let plain = if got.frame > 0 {
                    let unpacker = match &mut self.unpacker {
                        Some(u) => u,
                        None => self.unpacker.insert(BlockUnpacker::new().map_err(|e| e.to_string())?),
                    };
                    self.unpacked.resize(got.len as usize, 0);
                    unpacker.unpack(body, &mut self.unpacked).map_err(|e| e.to_string())?;
                    &self.unpacked[..]
                } else {
                    body
                };
                self.tree.write_block(expected.file_id, expected.offset, plain).map_err(|e| e.to_string())?;
                // Read back what was written, so the stripe hash covers the write path.
                self.scratch.resize(plain.len(), 0);
                self.tree.read_at(expected.file_id, expected.offset, &mut self.scratch).map_err(|e| e.to_string())?;
                Ok(block_digest(&self.scratch))
            });
            match opened {
                Ok(d) => self.have[b as usize] = Some(d),
                Err(why) => {
                    eprintln!("mover serve: block {b}: {why}; asking for it again");
                    refetch.push(b);
                }
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Commits every file whose blocks are all in and whose stripe hash matches the sender's; a file that
    /// does not match has all its blocks asked for again.
    fn commit_ready(&mut self, refetch: &mut Vec<u64>) -> Result<(), SessionError> {
        for file_id in 0..self.committed.len() {
            let Some(want) = self.expected[file_id] else { continue };
            if self.committed[file_id] {
                continue;
            }
            let r = self.plan.blocks_of(file_id as u32);
            let digests: Option<Vec<u128>> = self.have[r.start as usize..r.end as usize].iter().copied().collect();
            let Some(digests) = digests else { continue };
            if stripe_hash(&digests) == want {
                self.tree
                    .commit(file_id as u32)
                    .map_err(|error| SessionError::Io { what: "committing a file", error })?;
                self.committed[file_id] = true;
                self.committed_count += 1;
                self.bytes += self.sizes[file_id];
                continue;
            }
            self.file_failures[file_id] += 1;
            let name = self.tree.display_name(file_id as u32);
            if self.file_failures[file_id] >= MAX_FILE_RETRIES {
                return Err(SessionError::Transfer(format!(
                    "'{name}' failed its stripe hash {MAX_FILE_RETRIES} times: did the source change during the push?"
                )));
            }
            eprintln!("mover serve: '{name}' failed its stripe hash; asking for its blocks again");
            for b in r {
                self.have[b as usize] = None;
                refetch.push(b);
            }
        }
        Ok(())
    }

    /// The error of blocks lost after the sender left: the files they belong to, and why.
    fn lost_error(&self, lost: &[(u64, String)]) -> SessionError {
        let mut files: Vec<u32> = lost.iter().filter_map(|(b, _)| self.plan.header(*b)).map(|h| h.file_id).collect();
        files.sort_unstable();
        files.dedup();
        let names: Vec<String> = files.iter().take(5).map(|&f| format!("'{}'", self.tree.display_name(f))).collect();
        let more = if files.len() > 5 { format!(" and {} more", files.len() - 5) } else { String::new() };
        SessionError::Transfer(format!(
            "{} blocks of {}{more} were lost ({}) and the sender has left: run the same push again to complete them",
            lost.len(),
            names.join(", "),
            lost[0].1
        ))
    }
}

/// A relay's collector: pulls each batch it is given into `dir` and reports where it landed.
fn fetch_loop(
    jobs: &mpsc::Receiver<Fetch>,
    done: &mpsc::Sender<(Fetch, Result<PathBuf, String>)>,
    source: &str,
    dir: &Path,
    auth: &ClientAuth,
    net: crate::net::xdp_path::NetChoice,
) {
    while let Ok(f) = jobs.recv() {
        let name = batch_name(f.batch);
        let r = std::fs::create_dir_all(dir).map_err(|e| e.to_string()).and_then(|()| {
            let mut o = PullOptions::new(format!("{source}/{name}"), dir.to_path_buf(), crate::rate::NO_CEILING_BPS);
            o.policy = Policy::Fair;
            o.net = net;
            o.auth = auth.clone();
            o.timeout = RELAY_TIMEOUT;
            let r = pull(&o);
            // The pull's own words name the relay as "the sender" and suggest a rerun: say which relay.
            let relay = source.split('/').take(3).collect::<Vec<_>>().join("/");
            match r.error {
                None if r.verified => Ok(dir.join(&name)),
                None => Err(format!("fetching from {relay}: the pull was not verified")),
                Some(e) => {
                    Err(format!("fetching from {relay}: {}", e.split("; run the same command").next().unwrap_or(&e)))
                }
            }
        });
        if done.send((f, r)).is_err() {
            return;
        }
    }
}

/// How the receiver authenticates to a relay: plain TCP when the sender reached it so, else TLS trusting
/// the CA certificates the sender trusts it by, with the transfer's fetch capability.
fn relay_auth(staging: &Path, leg: u8, ca_pem: &str, capability: &str, hex: &str) -> Result<ClientAuth, SessionError> {
    if ca_pem.is_empty() {
        return Ok(ClientAuth::Insecure);
    }
    let ca = staging.join(format!("relay{leg}-ca.pem"));
    std::fs::write(&ca, ca_pem).map_err(|error| SessionError::Io { what: "writing a relay's CA", error })?;
    ClientAuth::tls(&ca, None, &format!("fetch-{hex}"), Some(capability)).map_err(SessionError::from)
}
