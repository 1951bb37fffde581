//! The receiver's state machine (PROTOCOL.md §4).
//!
//! Call order, from one thread, with a non-decreasing `now`:
//! 1. every received datagram goes to [`Receiver::handle_datagram`]; a returned [`Delivery`] names the bytes
//!    of the datagram to write to the file before the next call; every control message goes to
//!    [`Receiver::handle_control`];
//! 2. every [`FileReady`] from [`Receiver::poll_ready`] is verified (whole-file hash) by the caller, who
//!    reports the verdict with [`Receiver::handle_verified`];
//! 3. then [`Receiver::poll_transmit`] until `None` (feedback datagrams) and [`Receiver::poll_control`]
//!    until `None` (messages for the sender);
//! 4. sleep until [`Receiver::poll_timeout`] or the next input and call [`Receiver::handle_timeout`].
//!
//! The receiver keeps one bit per block of the window, NAKs each gap once it has been missing for the
//! reorder delay and again every re-NAK interval until filled, and acknowledges cumulatively.

use super::config::Config;
use super::failure::FailureKind;
use super::losslist::LossList;
use super::plan::RoundPlan;
use super::seqbits::SeqBits;
use super::start::StartPlan;
use crate::time::Time;
use crate::wire::compress::BlockUnpacker;
use crate::wire::control::{ControlMsg, ReceiverSummary, MAX_IDS_PER_MESSAGE};
use crate::wire::data::{DataHeader, FLAG_COMPRESSED};
use crate::wire::feedback::{max_naks, FeedbackHeader, NakRange};
use crate::wire::{open_datagram, DropCounters, DropReason, PacketType, ReplayWindow, Role, Sealer};
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

/// A block to write: `datagram[payload]` (or, for a compressed block, [`Receiver::unpacked`]) belongs at
/// `offset` of file `file_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// File id.
    pub file_id: u32,
    /// Offset in the file.
    pub offset: u64,
    /// Where the bytes are in the datagram that was handed in.
    pub payload: Range<usize>,
    /// The block came compressed: its bytes are the first `unpacked` bytes of [`Receiver::unpacked`]
    /// (0 for a raw block).
    pub unpacked: usize,
}

/// A file whose every block has arrived and whose sender-side hash is known: verify it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReady {
    /// File id.
    pub file_id: u32,
    /// Its size.
    pub size: u64,
    /// The sender's xxh3-128 of the file.
    pub expected_hash: u128,
}

/// Where the receiver is in its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverState {
    /// Receiving a round.
    Receiving,
    /// Every file is verified and committed.
    Complete,
    /// The session failed; the message is for the user.
    Failed(String),
}

/// Counters for the summary.
#[derive(Clone, Debug, Default)]
pub struct ReceiverStats {
    /// Valid data packets received (duplicates included).
    pub packets_received: u64,
    /// New payload bytes delivered to files.
    pub bytes_delivered: u64,
    /// Datagrams dropped, by reason.
    pub drops: DropCounters,
    /// Feedback packets sent.
    pub feedback_sent: u64,
    /// NAK ranges sent.
    pub nak_ranges_sent: u64,
    /// Tail probes sent (the idle rule, PROTOCOL.md §4.4).
    pub tail_probes_sent: u64,
    /// Gaps detected (a block arrived beyond the highest seen so far).
    pub gaps_detected: u64,
    /// Files that failed whole-file verification (each then re-sent).
    pub files_failed_verification: u64,
    /// Payload bytes the path delivered for new blocks, as they crossed it (compressed frames at their
    /// length): `bytes_delivered` over this is the compression ratio.
    pub wire_bytes_delivered: u64,
}

/// The receiver's side of a session.
pub struct Receiver {
    cfg: Config,
    sealer: Sealer,
    /// Packet numbers of the peer's datagrams accepted so far (PROTOCOL.md §6.3).
    replay: ReplayWindow,
    sizes: Vec<u64>,
    plan: RoundPlan,
    round: u8,
    state: ReceiverState,
    received: SeqBits,
    cum_ack: u64,
    highest_seen: u64,
    remaining_blocks: Vec<u64>,
    expected_hash: Vec<Option<u128>>,
    ready: VecDeque<usize>,
    verdicts: usize,
    failed_ids: Vec<u32>,
    losses: LossList,
    srtt_ns: u64,
    last_data_at: Time,
    last_control_at: Time,
    last_idle_nak_at: Time,
    /// Why the session failed, once it has: what a rerun can fix.
    failure: FailureKind,
    /// A one-shot NAK for everything from `highest_seen` to the window's end, sent while no data arrives
    /// (the tail rule). Not a stored gap: when data flows again, ordinary gap detection takes over.
    tail_probe: Option<(u64, u64)>,
    echo_tx_time_us: u32,
    echo_rx_at: Time,
    /// Smallest raw one-way delay since the last feedback (the congestion signal of PROTOCOL.md §4.7).
    owd_min_us: Option<u32>,
    next_feedback_at: Time,
    last_feedback_at: Time,
    data_since_feedback: bool,
    feedback_burst: u32,
    feedback_pn: u64,
    rate_window_start: Time,
    rate_window_bytes: u64,
    recv_rate: u64,
    naks: Vec<NakRange>,
    control_out: VecDeque<ControlMsg>,
    stats: ReceiverStats,
    files_committed: u64,
    bytes_committed: u64,
    /// Files and bytes done before any datagram: the skipped files, and the held bytes of round 0.
    done_at_start: (u64, u64),
    /// The decompressor and the block it decompressed last, made at the first compressed block.
    unpacker: Option<(BlockUnpacker, Vec<u8>)>,
    /// The rate share last told to the sender (`RateShare`, PROTOCOL.md §3.7).
    told_share_bps: Option<u64>,
}

/// Feedback datagrams at most per feedback interval, so a burst of NAKs is bounded (PROTOCOL.md §4.4).
const MAX_FEEDBACK_PER_INTERVAL: u32 = 4;
/// Feedback is sent at least this often even when nothing changed, as a keepalive (PROTOCOL.md §4.4).
const KEEPALIVE: Duration = Duration::from_millis(50);

impl Receiver {
    /// A receiver for files of `sizes` (file id = index), starting at `now`.
    pub fn new(cfg: Config, sizes: Vec<u64>, now: Time) -> Receiver {
        Receiver::with_start(cfg, sizes, now, &StartPlan::default())
    }

    /// A receiver whose first round starts from `start`, the plan it sent the sender (PROTOCOL.md §3.2,
    /// §4.1): skipped files are neither expected nor verified nor committed; held blocks count as received
    /// from the start (never NAKed, inside the cumulative ACK and [`Receiver::contiguous_prefix`]), and their
    /// file is ready once the rest arrived. An invalid plan (a bug in the caller) leaves the receiver
    /// [`ReceiverState::Failed`] with the reason.
    pub fn with_start(cfg: Config, sizes: Vec<u64>, now: Time, start: &StartPlan) -> Receiver {
        cfg.validate().expect("invalid session configuration");
        let block = cfg.block_payload as u64;
        let invalid = start.validate(&sizes, block).err();
        let plan =
            if invalid.is_none() { RoundPlan::for_start(&sizes, block, start) } else { RoundPlan::all(&sizes, block) };
        let mut r = Receiver {
            sealer: Sealer::new(cfg.cipher, &cfg.key.0, cfg.session_id, Role::Receiver),
            replay: ReplayWindow::new(),
            received: SeqBits::new(cfg.window_blocks),
            srtt_ns: cfg.initial_rtt.as_nanos() as u64,
            naks: Vec::with_capacity(max_naks(cfg.max_datagram())),
            cfg,
            sizes,
            plan,
            round: 0,
            state: ReceiverState::Receiving,
            cum_ack: 0,
            highest_seen: 0,
            remaining_blocks: Vec::new(),
            expected_hash: Vec::new(),
            ready: VecDeque::new(),
            verdicts: 0,
            failed_ids: Vec::new(),
            losses: LossList::new(),
            last_data_at: now,
            last_control_at: now,
            last_idle_nak_at: now,
            failure: FailureKind::Other,
            tail_probe: None,
            echo_tx_time_us: 0,
            echo_rx_at: now,
            owd_min_us: None,
            next_feedback_at: now,
            last_feedback_at: now,
            data_since_feedback: false,
            feedback_burst: 0,
            feedback_pn: 0,
            rate_window_start: now,
            rate_window_bytes: 0,
            recv_rate: 0,
            control_out: VecDeque::new(),
            stats: ReceiverStats::default(),
            files_committed: 0,
            bytes_committed: 0,
            done_at_start: (0, 0),
            unpacker: None,
            told_share_bps: None,
        };
        if let Some(e) = invalid {
            r.fail(e.to_string());
            return r;
        }
        let planned: u64 = (0..r.plan.len()).map(|i| r.plan.size(i)).sum();
        let skipped_files = (r.sizes.len() - r.plan.len()) as u64;
        r.done_at_start = (skipped_files, r.sizes.iter().sum::<u64>() - planned + r.plan.held_bytes());
        r.reset_round_state();
        r
    }

    fn reset_round_state(&mut self) {
        self.received = SeqBits::new(self.cfg.window_blocks);
        self.cum_ack = 0;
        self.highest_seen = 0;
        self.remaining_blocks = (0..self.plan.len()).map(|i| self.plan.blocks(i)).collect();
        self.expected_hash = vec![None; self.plan.len()];
        self.ready.clear();
        self.verdicts = 0;
        self.failed_ids.clear();
        self.losses.clear();
        self.tail_probe = None;
        self.echo_tx_time_us = 0;
        if self.plan.is_empty() {
            self.finish_round();
        }
    }

    /// The session's state.
    pub fn state(&self) -> &ReceiverState {
        &self.state
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Largest datagram of the session (the feedback buffer size).
    pub fn max_datagram(&self) -> usize {
        self.cfg.max_datagram()
    }

    /// The current round.
    pub fn round(&self) -> u8 {
        self.round
    }

    /// Files and bytes of the session done so far, for a progress display: skipped files and held bytes,
    /// plus the files committed and the new bytes delivered to files.
    pub fn progress(&self) -> (u64, u64) {
        let (files, bytes) = self.done_at_start;
        (files + self.files_committed, bytes + self.stats.bytes_delivered)
    }

    /// The summary sent to the sender at the end.
    pub fn summary(&self) -> ReceiverSummary {
        ReceiverSummary {
            files: self.files_committed,
            bytes: self.bytes_committed,
            packets_received: self.stats.packets_received,
            duplicates: self.stats.drops.get(DropReason::Duplicate),
            dropped_invalid: self.stats.drops.invalid(),
            repaired_files: self.stats.files_failed_verification,
            dropped_auth: self.stats.drops.get(DropReason::BadTag),
            dropped_replayed: self.stats.drops.get(DropReason::Replayed) + self.stats.drops.get(DropReason::TooOld),
            // The store's to say (`BlockStore::dropped`), filled in by the session.
            dropped: 0,
        }
    }

    /// Fails the session (a write error, a full disk): the sender is told why.
    pub fn fail(&mut self, message: String) {
        self.fail_as(FailureKind::Other, message);
    }

    /// Fails the session, saying what kind of failure it is (a lost control connection is
    /// [`FailureKind::ControlLost`]).
    pub fn fail_as(&mut self, kind: FailureKind, message: String) {
        if matches!(self.state, ReceiverState::Receiving) {
            self.failure = kind;
            self.control_out.push_back(ControlMsg::Error { message: message.clone() });
            self.state = ReceiverState::Failed(message);
        }
    }

    /// What kind of failure ended the session ([`FailureKind::Other`] while it has not failed).
    pub fn failure_kind(&self) -> FailureKind {
        self.failure
    }

    /// Bytes at the start of `file_id` that the store holds for this round: arrived, or held from the
    /// start (for incremental hashing).
    pub fn contiguous_prefix(&self, file_id: u32) -> u64 {
        let Some(idx) = self.plan.index_of(file_id) else { return 0 };
        if self.remaining_blocks[idx] == 0 {
            return self.plan.size(idx);
        }
        // Blocks are missing, so the first unacknowledged sequence number of the file lies inside it: its
        // block's offset ends the prefix (held blocks before it have no sequence numbers).
        let seq = self.cum_ack.max(self.plan.first_seq(idx));
        debug_assert!(seq < self.plan.first_seq(idx + 1));
        self.plan.locate(seq).1
    }

    /// Handles one datagram from the sender. `Ok` means: write the delivery's bytes now.
    pub fn handle_datagram(&mut self, now: Time, datagram: &mut [u8]) -> Result<Delivery, DropReason> {
        let r = self.handle_datagram_inner(now, datagram);
        if let Err(reason) = r {
            self.stats.drops.count(reason);
        }
        r
    }

    fn handle_datagram_inner(&mut self, now: Time, datagram: &mut [u8]) -> Result<Delivery, DropReason> {
        open_datagram(
            datagram,
            PacketType::Data,
            &mut self.sealer,
            self.cfg.session_id,
            self.cfg.max_datagram(),
            &mut self.replay,
        )?;
        let h = DataHeader::parse(datagram)?;
        if h.round != self.round || self.state != ReceiverState::Receiving {
            return Err(DropReason::StaleRound);
        }
        let idx = self.plan.index_of(h.file_id).ok_or(DropReason::Malformed)?;
        let compressed = h.flags & FLAG_COMPRESSED != 0;
        // A compressed block's length is the plan's for its offset (`seq_of` checks the offset is on the
        // grid); its frame must be shorter.
        let block_len = match compressed {
            false => h.len as u64,
            true if h.offset < self.plan.size(idx) => self.plan.block_len(idx, h.offset),
            true => return Err(DropReason::Malformed),
        };
        if compressed && h.len as u64 >= block_len {
            return Err(DropReason::Malformed);
        }
        let seq = self.plan.seq_of(idx, h.offset, block_len).ok_or(DropReason::Malformed)?;
        self.stats.packets_received += 1;
        // The receive rate is what the path delivered, duplicates included: it measures the bottleneck for
        // the rate policies. Counting only new blocks read a busy link as a slow one whenever repairs of
        // repairs crossed it (a congestion collapse after a loss burst took the capacity down with it).
        self.rate_window_bytes += h.len as u64;
        self.last_data_at = now;
        self.data_since_feedback = true;
        self.echo_tx_time_us = h.tx_time_us;
        self.echo_rx_at = now;
        // The minimum over the interval filters out the scheduling noise of single packets: the least
        // delayed packet of a few hundred is the best estimate of the queue it crossed.
        let owd = now.wire_us().wrapping_sub(h.tx_time_us);
        if self.owd_min_us.is_none_or(|m| (owd.wrapping_sub(m) as i32) < 0) {
            self.owd_min_us = Some(owd);
        }
        if h.srtt_us != 0 {
            self.srtt_ns = h.srtt_us as u64 * 1000;
        }
        if seq < self.cum_ack {
            return Err(DropReason::Duplicate);
        }
        if seq - self.cum_ack >= self.cfg.window_blocks {
            return Err(DropReason::OutOfWindow);
        }
        if self.received.get(seq) {
            return Err(DropReason::Duplicate);
        }
        // Decompressed before the block counts as received: one that does not decompress is dropped and
        // NAKed like a lost one.
        let unpacked = if compressed {
            let (unpacker, out) = match &mut self.unpacker {
                Some(u) => u,
                None => {
                    let u = BlockUnpacker::new().map_err(|_| DropReason::BadCompression)?;
                    self.unpacker.insert((u, vec![0; self.cfg.block_payload as usize]))
                }
            };
            let out = &mut out[..block_len as usize];
            unpacker.unpack(&datagram[h.payload_range()], out).map_err(|_| DropReason::BadCompression)?;
            block_len as usize
        } else {
            0
        };
        self.received.set(seq);
        if seq > self.highest_seen {
            self.stats.gaps_detected += 1;
            self.losses.push(self.highest_seen, seq, now.plus_ns(self.nak_delay_ns()));
        }
        self.highest_seen = self.highest_seen.max(seq + 1);
        if seq == self.cum_ack {
            let new_ack = self.received.find(false, seq, self.highest_seen).unwrap_or(self.highest_seen);
            self.received.advance_to(new_ack);
            self.cum_ack = new_ack;
        }
        self.stats.bytes_delivered += block_len;
        self.stats.wire_bytes_delivered += h.len as u64;
        self.remaining_blocks[idx] -= 1;
        self.maybe_ready(idx);
        Ok(Delivery { file_id: h.file_id, offset: h.offset, payload: h.payload_range(), unpacked })
    }

    /// The bytes of the last compressed block delivered ([`Delivery::unpacked`]).
    pub fn unpacked(&self) -> &[u8] {
        self.unpacker.as_ref().map_or(&[], |(_, out)| out.as_slice())
    }

    fn maybe_ready(&mut self, idx: usize) {
        if self.remaining_blocks[idx] == 0 && self.expected_hash[idx].is_some() {
            self.ready.push_back(idx);
        }
    }

    /// Handles one control message from the sender.
    pub fn handle_control(&mut self, now: Time, msg: ControlMsg) {
        self.last_control_at = now;
        match msg {
            ControlMsg::FileHash { round, file_id, hash }
                if round == self.round && self.state == ReceiverState::Receiving =>
            {
                let Some(idx) = self.plan.index_of(file_id) else { return };
                if self.expected_hash[idx].is_none() {
                    self.expected_hash[idx] = Some(hash);
                    self.maybe_ready(idx);
                }
            }
            ControlMsg::Error { message } if self.state == ReceiverState::Receiving => {
                self.state = ReceiverState::Failed(format!("sender: {message}"));
            }
            _ => {}
        }
    }

    /// The next file to verify, if any.
    pub fn poll_ready(&mut self) -> Option<FileReady> {
        if self.state != ReceiverState::Receiving {
            return None;
        }
        let idx = self.ready.pop_front()?;
        Some(FileReady {
            file_id: self.plan.file_id(idx),
            size: self.plan.size(idx),
            expected_hash: self.expected_hash[idx].expect("ready files have a hash"),
        })
    }

    /// The caller's verdict on a [`FileReady`]: `true` if its hash matched and it was committed.
    pub fn handle_verified(&mut self, file_id: u32, ok: bool) {
        if self.state != ReceiverState::Receiving || self.plan.index_of(file_id).is_none() {
            return;
        }
        if ok {
            self.files_committed += 1;
            self.bytes_committed += self.sizes[file_id as usize];
        } else {
            self.failed_ids.push(file_id);
            self.stats.files_failed_verification += 1;
        }
        self.verdicts += 1;
        if self.verdicts == self.plan.len() {
            self.finish_round();
        }
    }

    fn finish_round(&mut self) {
        let failed = std::mem::take(&mut self.failed_ids);
        for chunk in failed.chunks(MAX_IDS_PER_MESSAGE) {
            self.control_out.push_back(ControlMsg::RoundFailed { round: self.round, file_ids: chunk.to_vec() });
        }
        self.control_out.push_back(ControlMsg::RoundDone { round: self.round, failed: failed.len() as u32 });
        if failed.is_empty() {
            self.state = ReceiverState::Complete;
            self.control_out.push_back(ControlMsg::Complete(self.summary()));
            return;
        }
        if self.round + 1 >= self.cfg.max_rounds {
            self.fail(format!(
                "{} file(s) failed whole-file verification in {} rounds",
                failed.len(),
                self.cfg.max_rounds
            ));
            return;
        }
        self.round += 1;
        let mut ids = failed;
        ids.sort_unstable();
        self.plan = RoundPlan::new(ids, &self.sizes, self.cfg.block_payload as u64);
        self.reset_round_state();
    }

    /// Gives the sender a share of the daemon's rate cap, `bps` bits per second (PROTOCOL.md §3.7): a
    /// `RateShare` for it comes out of [`Receiver::poll_control`] when the share differs from the last one
    /// told, so a driver may call this as often as it likes (the daemon's reassembly stage does from its
    /// housekeeping). Nothing is told once the session has ended.
    pub fn set_rate_share(&mut self, bps: u64) {
        debug_assert!(bps > 0, "a share of nothing cannot be told (the wire refuses it)");
        if self.told_share_bps == Some(bps) || bps == 0 || self.state != ReceiverState::Receiving {
            return;
        }
        self.told_share_bps = Some(bps);
        self.control_out.push_back(ControlMsg::RateShare { bps });
    }

    /// The rate share last told to the sender, if any.
    pub fn rate_share_bps(&self) -> Option<u64> {
        self.told_share_bps
    }

    /// The next control message for the sender, if any.
    pub fn poll_control(&mut self) -> Option<ControlMsg> {
        self.control_out.pop_front()
    }

    fn nak_delay_ns(&self) -> u64 {
        // Reordering tolerance: a gap younger than this may still fill by itself.
        (self.srtt_ns / 16).clamp(1_000_000, 20_000_000)
    }

    fn renak_ns(&self) -> u64 {
        // A NAK and its retransmission take an RTT; leave room for the sender's queue and our own tick.
        (self.srtt_ns + self.srtt_ns / 8 + 2 * self.cfg.feedback_interval.as_nanos() as u64).max(10_000_000)
    }

    fn idle_after_ns(&self) -> u64 {
        (self.srtt_ns / 2).max(4 * self.cfg.feedback_interval.as_nanos() as u64)
    }

    /// Handles the passing of the deadline from [`Receiver::poll_timeout`]: the tail rule. When data stops
    /// arriving and blocks are still missing, the sender is blocked by the window or finished, so every
    /// unreceived block it may have sent is NAKed (PROTOCOL.md §4.4).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.state != ReceiverState::Receiving {
            return;
        }
        // Only while blocks are missing: afterwards the sender is rightly silent while files are verified,
        // and a sender that dies then is noticed by its control connection closing.
        if self.cum_ack < self.plan.total_seqs() && now.since(self.last_heard()) >= self.cfg.peer_timeout {
            self.fail_as(
                FailureKind::Silent,
                format!("no word from the sender for {} s", self.cfg.peer_timeout.as_secs()),
            );
            return;
        }
        let idle = now.since_ns(self.last_data_at) >= self.idle_after_ns();
        let total = self.plan.total_seqs();
        if idle && self.cum_ack < total && now.since_ns(self.last_idle_nak_at) >= self.renak_ns() {
            let end = total.min(self.cum_ack + self.cfg.window_blocks);
            if self.highest_seen < end {
                self.tail_probe = Some((self.highest_seen, end));
                self.next_feedback_at = self.next_feedback_at.min(now);
            }
            self.last_idle_nak_at = now;
        }
    }

    fn last_heard(&self) -> Time {
        self.last_data_at.max(self.last_control_at)
    }

    /// The next time the receiver needs attention without input.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            ReceiverState::Receiving => Some(self.next_feedback_at),
            _ => None,
        }
    }

    /// Writes the next feedback datagram into `buf` and returns its length, or `None` if none is due.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<usize> {
        if self.state != ReceiverState::Receiving || now < self.next_feedback_at {
            return None;
        }
        let max = max_naks(buf.len().min(self.cfg.max_datagram()));
        self.naks.clear();
        let renak = self.renak_ns();
        self.losses.collect_due(now, self.cum_ack, &self.received, renak, &mut self.naks, max);
        if self.naks.len() < max {
            if let Some((start, end)) = self.tail_probe.take() {
                let start = start.max(self.cum_ack);
                if start < end {
                    self.stats.tail_probes_sent += 1;
                    self.naks.push(NakRange { start, count: (end - start).min(u32::MAX as u64) as u32 });
                }
            }
        }
        let keepalive_due = now.since(self.last_feedback_at) >= KEEPALIVE;
        if self.naks.is_empty() && !self.data_since_feedback && !keepalive_due {
            self.end_feedback_tick(now);
            return None;
        }
        let window_ns = now.since_ns(self.rate_window_start);
        if window_ns >= 10_000_000 {
            self.recv_rate = (self.rate_window_bytes as u128 * 1_000_000_000 / window_ns as u128) as u64;
            self.rate_window_start = now;
            self.rate_window_bytes = 0;
        }
        let fb = FeedbackHeader {
            session_id: self.cfg.session_id,
            packet_number: self.feedback_pn,
            round: self.round,
            echo_tx_time_us: self.echo_tx_time_us,
            echo_delay_us: (now.since_ns(self.echo_rx_at) / 1000).min(u32::MAX as u64) as u32,
            cum_ack: self.cum_ack,
            recv_rate: self.recv_rate,
            received_packets: self.stats.packets_received,
            owd_us: self.owd_min_us.take(),
        };
        let len = fb.emit(&self.naks, buf);
        self.sealer.seal(&mut buf[..len]);
        self.feedback_pn += 1;
        self.stats.feedback_sent += 1;
        self.stats.nak_ranges_sent += self.naks.len() as u64;
        self.last_feedback_at = now;
        self.data_since_feedback = false;
        self.feedback_burst += 1;
        // A full packet of NAKs may leave more due: allow a few more feedback packets in this tick.
        if self.naks.len() < max || self.feedback_burst >= MAX_FEEDBACK_PER_INTERVAL {
            self.end_feedback_tick(now);
        }
        Some(len)
    }

    fn end_feedback_tick(&mut self, now: Time) {
        self.feedback_burst = 0;
        self.next_feedback_at = now.plus(self.cfg.feedback_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::data::DataHeader;

    thread_local! {
        static NEXT_PN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A sealed data packet with a fresh packet number (as the sender numbers every transmission).
    fn data(r: &Receiver, file_id: u32, offset: u64, len: u16) -> Vec<u8> {
        let h = DataHeader {
            session_id: 9,
            packet_number: NEXT_PN.with(|n| n.replace(n.get() + 1)),
            file_id,
            offset,
            len,
            flags: 0,
            round: 0,
            tx_time_us: 1,
            srtt_us: 0,
        };
        let mut buf = vec![0u8; h.datagram_len()];
        h.emit(&mut buf);
        r.sealer.clone().seal(&mut buf);
        buf
    }

    /// A share is told once per change, and never after the session ended.
    #[test]
    fn a_rate_share_is_told_once_per_change() {
        let mut r = Receiver::new(Config::new(9, 1472, 1_000_000_000), vec![5000], Time::ZERO);
        assert_eq!(r.rate_share_bps(), None);
        r.set_rate_share(300_000_000);
        r.set_rate_share(300_000_000);
        r.set_rate_share(200_000_000);
        let told: Vec<ControlMsg> = std::iter::from_fn(|| r.poll_control()).collect();
        let want = [ControlMsg::RateShare { bps: 300_000_000 }, ControlMsg::RateShare { bps: 200_000_000 }];
        assert_eq!(told, want);
        assert_eq!(r.rate_share_bps(), Some(200_000_000));
        r.fail("gone".into());
        let _ = std::iter::from_fn(|| r.poll_control()).count();
        r.set_rate_share(100_000_000);
        assert_eq!(r.poll_control(), None, "an ended session is told nothing");
    }

    #[test]
    fn malformed_blocks_are_dropped_and_not_counted_as_received() {
        let mut r = Receiver::new(Config::new(9, 1472, 1_000_000_000), vec![5000], Time::ZERO);
        assert_eq!(r.handle_datagram(Time::ZERO, &mut data(&r, 1, 0, 100)), Err(DropReason::Malformed), "no such file");
        assert_eq!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 7, 100)), Err(DropReason::Malformed), "unaligned");
        assert_eq!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, 100)), Err(DropReason::Malformed), "wrong length");
        assert_eq!(r.stats().packets_received, 0);
        assert!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, 1412)).is_ok());
        assert_eq!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, 1412)), Err(DropReason::Duplicate));
        assert_eq!(r.stats().packets_received, 2);
        let mut garbage = data(&r, 0, 1412, 1412);
        garbage[100] ^= 1;
        assert_eq!(r.handle_datagram(Time::ZERO, &mut garbage), Err(DropReason::BadTag));
        assert_eq!(r.stats().drops.invalid(), 4);
    }

    #[test]
    fn receive_rate_counts_duplicates_as_delivered_by_the_path() {
        let mut r = Receiver::new(Config::new(9, 1472, 1_000_000_000), vec![1412 * 4], Time::ZERO);
        assert!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, 1412)).is_ok());
        // Spurious retransmissions: the same block under fresh packet numbers.
        for _ in 0..3 {
            assert_eq!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, 1412)), Err(DropReason::Duplicate));
        }
        // A copy of an earlier datagram (same packet number): refused by the replay window, before it
        // counts as received.
        let mut copy = data(&r, 0, 1412, 1412);
        assert!(r.handle_datagram(Time::ZERO, &mut copy.clone()).is_ok());
        assert_eq!(r.handle_datagram(Time::ZERO, &mut copy), Err(DropReason::Replayed));
        let now = Time(20_000_000);
        let mut buf = vec![0u8; 2048];
        let len = r.poll_transmit(now, &mut buf).expect("feedback after data");
        let fb = FeedbackHeader::parse(&buf[..len]).unwrap();
        // Five datagrams of 1412 payload bytes in 20 ms crossed the bottleneck; two were new.
        assert_eq!(fb.recv_rate, 5 * 1412 * 50);
        assert_eq!(r.stats().bytes_delivered, 2 * 1412);
    }

    #[test]
    fn nothing_becomes_ready_after_a_failure() {
        let mut r = Receiver::new(Config::new(9, 1472, 1_000_000_000), vec![100], Time::ZERO);
        r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, 100)).unwrap();
        r.fail("disk full".into());
        r.handle_control(Time::ZERO, ControlMsg::FileHash { round: 0, file_id: 0, hash: 1 });
        assert_eq!(r.poll_ready(), None);
        assert!(matches!(r.poll_control(), Some(ControlMsg::Error { .. })));
    }

    /// Held blocks count as received from the start: inside the contiguous prefix, never NAKed, and a file
    /// held whole is ready as soon as its hash arrives.
    #[test]
    fn held_blocks_are_received_from_the_start() {
        const B: u64 = 1412;
        let mut start = StartPlan::default();
        start.add_have(0, vec![(0, 2 * B), (4 * B, B)]); // file 0: blocks 0, 1, 4 held; 2, 3 sent
        start.add_have(1, vec![(0, 100)]); // file 1: all of it
        let sizes = vec![5 * B, 100];
        let mut r = Receiver::with_start(Config::new(9, 1472, 1_000_000_000), sizes, Time::ZERO, &start);
        assert_eq!(r.contiguous_prefix(0), 2 * B);
        assert_eq!(r.contiguous_prefix(1), 100);
        assert_eq!(r.handle_datagram(Time::ZERO, &mut data(&r, 0, 0, B as u16)), Err(DropReason::Malformed));
        r.handle_control(Time::ZERO, ControlMsg::FileHash { round: 0, file_id: 1, hash: 7 });
        assert_eq!(r.poll_ready().map(|f| f.file_id), Some(1), "held whole: ready on its hash");
        // Block 3 arrives first: a gap at block 2 only, never at the held blocks.
        r.handle_datagram(Time::ZERO, &mut data(&r, 0, 3 * B, B as u16)).unwrap();
        assert_eq!(r.contiguous_prefix(0), 2 * B);
        let mut buf = vec![0u8; 2048];
        let now = Time(100_000_000);
        let len = r.poll_transmit(now, &mut buf).expect("feedback");
        let naks: Vec<NakRange> = crate::wire::feedback::nak_ranges(&buf[..len]).collect();
        assert_eq!(naks, vec![NakRange { start: 0, count: 1 }], "only block 2 (seq 0) is missing");
        r.handle_datagram(now, &mut data(&r, 0, 2 * B, B as u16)).unwrap();
        assert_eq!(r.contiguous_prefix(0), 5 * B);
        r.handle_control(now, ControlMsg::FileHash { round: 0, file_id: 0, hash: 9 });
        assert_eq!(r.poll_ready().map(|f| (f.file_id, f.size)), Some((0, 5 * B)));
    }

    #[test]
    fn an_invalid_plan_fails_the_receiver() {
        let mut start = StartPlan::default();
        start.skip_file(3);
        let r = Receiver::with_start(Config::new(9, 1472, 1_000_000_000), vec![10], Time::ZERO, &start);
        assert!(matches!(r.state(), ReceiverState::Failed(m) if m.contains("file id 3")), "{:?}", r.state());
    }
}
