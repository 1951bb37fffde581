//! The sender's state machine (PROTOCOL.md §4).
//!
//! Call order, from one thread, with a non-decreasing `now`:
//! 1. every received datagram goes to [`Sender::handle_datagram`], every control message to
//!    [`Sender::handle_control`];
//! 2. then [`Sender::poll_transmit`] until it returns `None` (the pacer or the window says wait), and
//!    [`Sender::poll_control`] until it returns `None` (messages for the receiver, in order);
//! 3. then sleep until [`Sender::poll_timeout`] or the next input, whichever comes first, and call
//!    [`Sender::handle_timeout`] when the deadline passes.
//!
//! The sender sends each round's blocks in sequence order at the paced rate, never more than the window
//! beyond the receiver's cumulative ACK, and resends exactly the blocks the receiver NAKs, ahead of new data.
//! It never waits for an acknowledgement per RTT, so its rate does not depend on the RTT.
//!
//! Who paces: by default the core's own [`Pacer`] (the simulator and any driver that sends at once). A driver
//! that releases datagrams at the rate itself (the pipeline's pacer stage) calls
//! [`Sender::set_driver_pacing`]: the core's bucket then no longer holds datagrams back; it supplies the
//! order of departures and the rate ([`Sender::rate_bps`]), builds ahead only while the driver's backlog
//! ([`Sender::set_send_backlog`]) is below one burst of the rate, and keeps its bucket only to stamp each
//! datagram with the departure the driver's own bucket will give it.

use super::compress::{BlockEncoder, SendSignal};
use super::config::Config;
use super::failure::FailureKind;
use super::pacer::Pacer;
use super::plan::RoundPlan;
use super::pmtu::{PmtuEvent, PmtuWatch};
use super::policy::{FeedbackSignal, RateController};
use super::rtt::RttEstimator;
use super::seqbits::SeqBits;
use super::start::StartPlan;
use super::BlockSource;
use crate::time::Time;
use crate::wire::control::{ControlMsg, ReceiverSummary};
use crate::wire::data::{DataHeader, FLAG_COMPRESSED, FLAG_RETRANSMIT};
use crate::wire::feedback::{nak_ranges, FeedbackHeader};
use crate::wire::{open_datagram, DropCounters, DropReason, PacketType, ReplayWindow, Role, Sealer};
use std::collections::VecDeque;
use xxhash_rust::xxh3::Xxh3;

/// Send-time marks kept (PROTOCOL.md §4.2): with one mark per max(1 ms, srtt/256) they span at least
/// 256 ms and at least four RTTs.
const MAX_SEND_MARKS: usize = 1024;

/// When blocks were first sent, coarsely: (time, `next_new` before that time's sends). A NAK that names a
/// block first sent less than half an RTT ago cannot be about a loss (its NAK could not have come back yet):
/// it raced with the block, as when the receiver's tail rule fires while the sender was descheduled. Such
/// NAKs are ignored; a real loss is NAKed again later.
#[derive(Clone, Debug, Default)]
struct SendMarks {
    marks: VecDeque<(Time, u64)>,
    /// The newest first transmission: every sequence number below `.1` was sent at or before `.0`.
    latest: (Time, u64),
}

impl SendMarks {
    /// Called before the first transmission of `next_new` at `now`.
    fn record(&mut self, now: Time, next_new: u64, interval_ns: u64) {
        self.latest = (now, next_new + 1);
        if self.marks.back().is_some_and(|&(t, _)| now.since_ns(t) < interval_ns) {
            return;
        }
        if self.marks.len() == MAX_SEND_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back((now, next_new));
    }

    /// Every sequence number below the returned one was first sent at or before `t` (approximately, when
    /// `t` is older than every mark).
    fn sent_before(&self, t: Time) -> u64 {
        if t >= self.latest.0 {
            return self.latest.1;
        }
        let i = self.marks.partition_point(|&(mt, _)| mt <= t);
        match i {
            0 => self.marks.front().map_or(0, |&(_, s)| s),
            i => self.marks[i - 1].1,
        }
    }
}

/// NAKs for blocks first sent less than this long ago (or half an RTT, if longer) are honoured only if the
/// receiver had seen a later block: half the receiver's smallest tail-probe silence (PROTOCOL.md §4.2).
const NAK_GUARD_MIN_NS: u64 = 4_000_000;

/// Feedback silence after which the path is taken as down (or at least 4 RTTs): the receiver reports every
/// 2 ms while data arrives and NAKs the tail every RTT while it waits, so a quarter second without a word
/// is no jitter. From then on the sender stops sending new data into a dead path and only probes.
const SILENCE_PAUSE_MIN_NS: u64 = 250_000_000;
/// While the path is silent, one datagram this often (or once per RTT, if longer): a probe, so that the
/// receiver notices within about an RTT when packets flow again and answers with feedback.
const SILENT_PROBE_INTERVAL_NS: u64 = 100_000_000;

/// Most tail retransmissions remembered for a second copy (PROTOCOL.md §4.5).
const MAX_TAIL_DUPLICATES: usize = 4096;

/// Most bytes of held blocks (resume, PROTOCOL.md §4.1) read into the whole-file hash per
/// [`Sender::poll_transmit`] call, so a large held file does not stall the loop; the rest follows on the
/// next calls, which [`Sender::poll_timeout`] asks for at once.
const HELD_HASH_PER_CALL: u64 = 16 << 20;

/// Where the sender is in its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderState {
    /// Sending the blocks of a round.
    Sending,
    /// Every block of the round is acknowledged; waiting for the receiver's verdict on the files.
    AwaitingVerdict,
    /// The receiver verified and committed everything.
    Done(ReceiverSummary),
    /// The session failed; the message is for the user.
    Failed(String),
}

/// Counters for the summary.
#[derive(Clone, Debug, Default)]
pub struct SenderStats {
    /// Data packets sent, first transmissions and retransmissions.
    pub packets_sent: u64,
    /// Data packets that were retransmissions.
    pub packets_retransmitted: u64,
    /// Payload bytes sent, including retransmissions.
    pub payload_bytes_sent: u64,
    /// Datagram bytes sent.
    pub datagram_bytes_sent: u64,
    /// Payload bytes as they went on the wire (compressed blocks at their frame's length), including
    /// retransmissions: `payload_bytes_sent` over this is the compression ratio.
    pub wire_payload_bytes_sent: u64,
    /// Data packets whose block went compressed.
    pub blocks_compressed: u64,
    /// Valid feedback packets received.
    pub feedback_received: u64,
    /// Datagrams dropped, by reason.
    pub drops: DropCounters,
    /// Rounds started (1 when nothing needed repair).
    pub rounds: u32,
    /// Most recent receive rate the receiver reported, bytes per second.
    pub peer_recv_rate: u64,
    /// Times the path fell silent and sending paused (see [`Sender::path_silent`]).
    pub silent_pauses: u64,
    /// Datagrams sent as probes while the path was silent.
    pub silent_probes: u64,
    /// Times sending held because feedback was overdue (see [`Sender::feedback_overdue`]).
    pub overdue_holds: u64,
    /// Payload bytes of first transmissions (every round): what the session had to send at least once.
    pub new_payload_bytes_sent: u64,
    /// When the first new block left (its departure time), if one did: how long a resumed session took to
    /// get to new data.
    pub first_new_at: Option<Time>,
    /// Bytes round 0 did not send because the receiver already held them (resume).
    pub resumed_bytes: u64,
    /// Files not sent because the receiver already held them whole (sync).
    pub skipped_files: u64,
    /// The receiver counted a data packet of the session's size: the path carries it (PROTOCOL.md §4.8).
    pub pmtu_confirmed: bool,
    /// Bytes of those files.
    pub skipped_bytes: u64,
}

/// The block [`Sender::poll_transmit`] is about to send, chosen before it is taken.
#[derive(Clone, Copy)]
enum Pick {
    /// The lowest pending retransmission.
    Pending(u64),
    /// The next first transmission.
    New,
    /// The oldest tail duplicate not yet acknowledged.
    TailDuplicate(u64),
}

/// The sender's side of a session.
pub struct Sender {
    cfg: Config,
    sealer: Sealer,
    /// Packet numbers of the peer's datagrams accepted so far (PROTOCOL.md §6.3).
    replay: ReplayWindow,
    sizes: Vec<u64>,
    plan: RoundPlan,
    round: u8,
    state: SenderState,
    /// Next sequence number never sent in this round, and where its bytes are.
    next_new: u64,
    new_idx: usize,
    new_offset: u64,
    /// Hash of the file being read for the first time this round (files are first read in order), held
    /// blocks included.
    hasher: Box<Xxh3>,
    /// Where the bytes of held blocks are read to be hashed (empty until the first one).
    held_buf: Vec<u8>,
    /// Everything below this is acknowledged.
    cum_ack: u64,
    /// Blocks NAKed and not yet resent, over the window starting at `cum_ack`.
    pending: SeqBits,
    pending_count: u64,
    /// No pending retransmission lies below this sequence number.
    pending_scan: u64,
    /// Retransmissions to send once more at the tail of a round, after the pending ones: the link is
    /// otherwise idle then, and a second copy, spaced from the first so one loss burst does not take both,
    /// saves a whole re-NAK round trip when the first copy is lost too (PROTOCOL.md §4.5).
    tail_duplicates: VecDeque<u64>,
    send_marks: SendMarks,
    failed_ids: Vec<u32>,
    packet_number: u64,
    pacer: Pacer,
    /// Bytes the driver holds built but not yet on the wire (set by [`Sender::set_send_backlog`]).
    send_backlog_bytes: u64,
    /// The driver releases datagrams at the rate; `pacer` only holds the rate (see the module documentation).
    driver_paces: bool,
    rate: RateController,
    rtt: RttEstimator,
    last_heard: Time,
    /// The first datagram sent since the receiver was last heard from (see [`Sender::feedback_overdue`]).
    sent_unheard_since: Option<Time>,
    /// This overdue hold is counted in the stats.
    overdue_counted: bool,
    /// The last datagram sent while the path was silent (a probe).
    last_probe: Time,
    /// Why the session failed, once it has: what a rerun can fix.
    failure: FailureKind,
    /// When the cumulative ACK last advanced (or the round started): keepalives alone are not progress.
    last_progress: Time,
    /// The sender's only control messages, `FileHash`, queued compactly: a round of a million empty files
    /// queues a million at once (24 bytes each here, 144 as a `ControlMsg`).
    control_out: VecDeque<QueuedHash>,
    /// Confirms the datagram size and catches a black hole (PROTOCOL.md §4.8).
    pmtu: PmtuWatch,
    /// `--compress`: the encoder that compresses blocks, and the raw block it compresses from.
    encoder: Option<Box<dyn BlockEncoder>>,
    raw: Vec<u8>,
    stats: SenderStats,
}

/// A `ControlMsg::FileHash` waiting in [`Sender::poll_control`]'s queue (the hash as bytes, so the record
/// has no 16-byte alignment).
struct QueuedHash {
    hash: [u8; 16],
    file_id: u32,
    round: u8,
}

impl Sender {
    /// A sender for files of `sizes` (file id = index), starting its first round at `now`.
    pub fn new(cfg: Config, sizes: Vec<u64>, now: Time) -> Sender {
        Sender::with_start(cfg, sizes, now, &StartPlan::default())
    }

    /// A sender whose first round starts from the receiver's `start` plan (PROTOCOL.md §3.2, §4.1): skipped
    /// files are not sent, held blocks are not sent but still hashed. The plan came from the peer: if it
    /// fails [`StartPlan::validate`], the sender is created [`SenderState::Failed`] with the reason.
    pub fn with_start(cfg: Config, sizes: Vec<u64>, now: Time, start: &StartPlan) -> Sender {
        cfg.validate().expect("invalid session configuration");
        let block = cfg.block_payload as u64;
        let invalid = start.validate(&sizes, block).err();
        let plan =
            if invalid.is_none() { RoundPlan::for_start(&sizes, block, start) } else { RoundPlan::all(&sizes, block) };
        let (cfg_datagram, cfg_base) = (cfg.max_datagram(), cfg.base_datagram);
        let mut s = Sender {
            sealer: Sealer::new(cfg.cipher, &cfg.key.0, cfg.session_id, Role::Sender),
            replay: ReplayWindow::new(),
            pending: SeqBits::new(cfg.window_blocks),
            rate: RateController::new(
                cfg.policy,
                cfg.rate_bps,
                cfg.min_rate_bps,
                cfg.max_datagram(),
                cfg.block_payload as usize,
                now,
            ),
            pacer: Pacer::new(cfg.rate_bps, cfg.burst.as_nanos() as u64),
            send_backlog_bytes: 0,
            driver_paces: false,
            rtt: RttEstimator::new(cfg.initial_rtt),
            cfg,
            sizes,
            plan,
            round: 0,
            state: SenderState::Sending,
            next_new: 0,
            new_idx: 0,
            new_offset: 0,
            hasher: Box::new(Xxh3::new()),
            held_buf: Vec::new(),
            cum_ack: 0,
            pending_count: 0,
            pending_scan: 0,
            tail_duplicates: VecDeque::with_capacity(MAX_TAIL_DUPLICATES),
            send_marks: SendMarks { marks: VecDeque::with_capacity(MAX_SEND_MARKS), latest: (Time::ZERO, 0) },
            failed_ids: Vec::new(),
            packet_number: 0,
            last_heard: now,
            sent_unheard_since: None,
            overdue_counted: false,
            last_probe: Time::ZERO,
            failure: FailureKind::Other,
            last_progress: now,
            control_out: VecDeque::new(),
            pmtu: PmtuWatch::new(cfg_datagram, cfg_base),
            encoder: None,
            raw: Vec::new(),
            stats: SenderStats { rounds: 1, ..SenderStats::default() },
        };
        s.rate.trace = s.cfg.trace_rate;
        s.pacer.set_rate_bps(s.rate.rate_bps());
        if let Some(e) = invalid {
            s.fail(e.to_string());
            return s;
        }
        s.stats.resumed_bytes = s.plan.held_bytes();
        s.stats.skipped_files = start.skipped_files();
        s.stats.skipped_bytes = start.skipped_bytes(&s.sizes);
        s.skip_finished_files();
        s
    }

    /// The session's state.
    pub fn state(&self) -> &SenderState {
        &self.state
    }

    /// Whether the session ended, either way.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, SenderState::Done(_) | SenderState::Failed(_))
    }

    /// Counters so far.
    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// Files and bytes of the session done so far, for a progress display: the skipped files and the held
    /// bytes, plus what the cumulative ACK covers in the first round. Later rounds only re-send files that
    /// were already counted, so from the second round on everything counts as done.
    pub fn progress(&self) -> (u64, u64) {
        if self.round > 0 || matches!(self.state, SenderState::Done(_)) {
            return (self.sizes.len() as u64, self.sizes.iter().sum());
        }
        let (files, bytes) = self.plan.acknowledged(self.cum_ack);
        (self.stats.skipped_files + files, self.stats.skipped_bytes + self.stats.resumed_bytes + bytes)
    }

    /// NAKed blocks waiting to be sent again.
    pub fn pending_retransmits(&self) -> u64 {
        self.pending_count
    }

    /// Tells the core how many bytes of datagrams it built are still queued in the driver ahead of the
    /// wire (a pacing stage downstream). The next datagram's `tx_time` is then no earlier than `now` plus
    /// their time at the rate: when the pacing stage falls behind (a late thread on a loaded core), its
    /// backlog is delay in this host, and stamped as such it is not read as a queue on the path. A driver
    /// that sends at once leaves it at 0.
    pub fn set_send_backlog(&mut self, bytes: u64) {
        self.send_backlog_bytes = bytes;
    }

    /// Hands pacing to the driver, which releases datagrams at [`Sender::rate_bps`] and reports what it still
    /// holds through [`Sender::set_send_backlog`]. From then on a datagram may be built while that backlog is
    /// below the configured burst's worth of the rate (at least one datagram), and its `tx_time` is when the
    /// driver will release it: `now` plus the backlog's time at the rate, or later while the rate's bucket
    /// is still paying for the datagrams before it (at a low rate one datagram is many milliseconds).
    pub fn set_driver_pacing(&mut self) {
        self.driver_paces = true;
    }

    /// Whether a datagram may be built at `now`: the core's bucket allows it, or under driver pacing the
    /// driver's backlog is short of one burst.
    fn may_build(&self, now: Time) -> bool {
        if !self.driver_paces {
            return self.pacer.can_send(now);
        }
        self.send_backlog_bytes < self.lead_bytes()
    }

    /// Under driver pacing: the most bytes the driver may hold ahead of the wire (the burst's worth of the rate,
    /// at least one datagram).
    fn lead_bytes(&self) -> u64 {
        let burst = (self.pacer.rate_bps() as u128 * self.cfg.burst.as_nanos() / 8_000_000_000) as u64;
        burst.max(self.cfg.max_datagram() as u64)
    }

    /// The time `bytes` take at the rate.
    fn time_at_rate_ns(&self, bytes: u64) -> u64 {
        // u64 is enough: a backlog is a ring of datagrams, far below the 2.3 GB where the product saturates.
        match bytes {
            0 => 0,
            b => b.saturating_mul(8_000_000_000) / self.pacer.rate_bps(),
        }
    }

    /// The rate the sender paces at now, bits per second of datagram bytes (the policy's choice).
    pub fn rate_bps(&self) -> u64 {
        self.pacer.rate_bps()
    }

    /// Caps the rate at `bps` from now on: the receiving daemon's share of its rate cap (`RateShare`,
    /// PROTOCOL.md §3.7), told before `Accept` and whenever it changes; a daemon that sends (a pull) applies
    /// its share here itself. The pacer takes the capped rate at once, so nothing built after this call
    /// leaves faster.
    pub fn set_rate_share(&mut self, now: Time, bps: u64) {
        self.rate.set_share(now, bps);
        self.pacer.set_rate_bps(self.rate.rate_bps());
        debug_assert!(self.pacer.rate_bps() <= bps.max(1), "paced {} above the share {bps}", self.pacer.rate_bps());
    }

    /// The share of the receiving daemon's rate cap this session was last told, bits per second, if any.
    pub fn rate_share_bps(&self) -> Option<u64> {
        self.rate.share_bps()
    }

    /// Compresses blocks with `encoder` from now on (`--compress`, PROTOCOL.md §4.9); `None` sends raw.
    pub fn set_encoder(&mut self, encoder: Option<Box<dyn BlockEncoder>>) {
        self.raw = if encoder.is_some() { vec![0; self.cfg.block_payload as usize] } else { Vec::new() };
        self.encoder = encoder;
    }

    /// Times the policy (`fair`) entered its competitive mode: a standing queue it does not own.
    pub fn rate_competitions(&self) -> u64 {
        self.rate.competitions()
    }

    /// The largest rate the policy chose so far, bits per second.
    pub fn max_rate_bps(&self) -> u64 {
        self.rate.max_rate_bps()
    }

    /// Smoothed RTT in nanoseconds.
    pub fn srtt_ns(&self) -> u64 {
        self.rtt.srtt_ns()
    }

    /// The current round.
    pub fn round(&self) -> u8 {
        self.round
    }

    /// Fails the session (an I/O error outside the state machine, or the user gave up).
    pub fn fail(&mut self, message: String) {
        self.fail_as(FailureKind::Other, message);
    }

    /// Fails the session, saying what kind of failure it is (a lost control connection is
    /// [`FailureKind::ControlLost`]).
    pub fn fail_as(&mut self, kind: FailureKind, message: String) {
        if !self.is_finished() {
            self.failure = kind;
            self.state = SenderState::Failed(message);
        }
    }

    /// What kind of failure ended the session ([`FailureKind::Other`] while it has not failed).
    pub fn failure_kind(&self) -> FailureKind {
        self.failure
    }

    /// Whether the path is silent at `now`: sending, and no feedback or control message for
    /// [`SILENCE_PAUSE_MIN_NS`] (or four RTTs). Then only probes go out, one per
    /// [`SILENT_PROBE_INTERVAL_NS`] (or RTT), until feedback returns; blocks lost meanwhile are NAKed and
    /// resent as usual, and nothing that arrived is sent again.
    pub fn path_silent(&self, now: Time) -> bool {
        self.state == SenderState::Sending && now.since_ns(self.last_heard) >= self.silence_after_ns()
    }

    /// Whether feedback is overdue at `now`: datagrams went out more than twice the least RTT plus
    /// [`crate::proto::policy::FEEDBACK_STALL_NS`] (and two datagrams' time at the rate) ago and nothing
    /// was heard since, though the receiver reports every 2 ms while data arrives. Its receiving threads are stalled (descheduled, throttled,
    /// behind on a disk) and its socket buffer is filling: sending holds until it answers, as a TCP
    /// sender with no acks does. Without it, a sender paced on at 8.4 Gbit/s into a receiver silent for
    /// 120 ms and overflowed its buffer (13,271 datagrams resent). Only after the first feedback (the
    /// first answer takes an RTT); the silence rule (probes) takes over once the path looks dead.
    pub fn feedback_overdue(&self, now: Time) -> bool {
        // Twice the least RTT: feedback flows every 2 ms while data arrives, behind a standing queue too, so
        // only a gap counts, and a stall's backlog (which inflates the smoothed RTT) must not delay the
        // hold. Plus two datagrams' time at the rate: at a low rate the receiver has nothing to report on
        // between them.
        let datagram_ns = (self.cfg.max_datagram() as f64 * 8e9 / self.rate.rate_bps().max(1) as f64) as u64;
        let least = self.rtt.min_ns().min(self.rtt.srtt_ns());
        let due = 2 * least + crate::proto::policy::FEEDBACK_STALL_NS + 2 * datagram_ns;
        self.state == SenderState::Sending
            && self.stats.feedback_received > 0
            && self.sent_unheard_since.is_some_and(|t| now.since_ns(t) >= due)
            && !self.path_silent(now)
    }

    fn silence_after_ns(&self) -> u64 {
        (4 * self.rtt.srtt_ns()).max(SILENCE_PAUSE_MIN_NS)
    }

    fn probe_interval_ns(&self) -> u64 {
        self.rtt.srtt_ns().max(SILENT_PROBE_INTERVAL_NS)
    }

    /// Notes any word from the receiver at `now`; the first after a silence restarts the rate policy's round.
    fn heard(&mut self, now: Time) {
        if self.path_silent(now) {
            self.rate.on_path_resumed(now);
        }
        self.last_heard = now;
        self.sent_unheard_since = None;
        self.overdue_counted = false;
    }

    /// Handles one datagram from the receiver.
    pub fn handle_datagram(&mut self, now: Time, datagram: &mut [u8]) -> Result<(), DropReason> {
        let r = self.handle_datagram_inner(now, datagram);
        if let Err(reason) = r {
            self.stats.drops.count(reason);
        }
        r
    }

    fn handle_datagram_inner(&mut self, now: Time, datagram: &mut [u8]) -> Result<(), DropReason> {
        open_datagram(
            datagram,
            PacketType::Feedback,
            &mut self.sealer,
            self.cfg.session_id,
            self.cfg.max_datagram(),
            &mut self.replay,
        )?;
        let fb = FeedbackHeader::parse(datagram)?;
        self.heard(now);
        if fb.round != self.round {
            return Err(DropReason::StaleRound);
        }
        self.stats.feedback_received += 1;
        self.stats.peer_recv_rate = fb.recv_rate;
        let mut rtt_sample_ns = None;
        if fb.echo_tx_time_us != 0 {
            let sample_us = now.wire_us().wrapping_sub(fb.echo_tx_time_us).wrapping_sub(fb.echo_delay_us);
            // A wrapped (negative) or absurd sample comes from a stale or forged echo: ignore it.
            if sample_us > 0 && sample_us < 60_000_000 {
                self.rtt.update(sample_us as u64 * 1000);
                rtt_sample_ns = Some(sample_us as u64 * 1000);
            }
        }
        let ack = fb.cum_ack.min(self.next_new);
        if ack > self.cum_ack {
            self.last_progress = now;
            self.pending_count -= self.pending.advance_to(ack);
            self.cum_ack = ack;
            self.pending_scan = self.pending_scan.max(ack);
        }
        // Honour NAKs only for blocks the receiver could have known about: sent before the newest packet
        // it had received when it wrote this feedback (the echo). While new data still streams, a real loss
        // beyond that shows up as a gap once later blocks arrive. Only a sender that is done or blocked by
        // the window depends on the receiver's tail probe, so only then are blocks sent long enough ago
        // honoured too (the probe comes after >= 8 ms of silence).
        let mut honoured_end = 0;
        if fb.echo_tx_time_us != 0 {
            // A departure scheduled after `now` (a short path, the packetizer ahead) is an age of zero.
            let echo_age_ns = (now.wire_us().wrapping_sub(fb.echo_tx_time_us) as i32).max(0) as u64 * 1000;
            honoured_end = self.send_marks.sent_before(Time(now.0.saturating_sub(echo_age_ns)));
        }
        if !self.can_send_new() {
            let guard_ns = (self.rtt.srtt_ns() / 2).max(NAK_GUARD_MIN_NS);
            honoured_end = honoured_end.max(self.send_marks.sent_before(Time(now.0.saturating_sub(guard_ns))));
        }
        let mut newly_lost = 0;
        for nak in nak_ranges(datagram) {
            let start = nak.start.max(self.cum_ack);
            let end = (nak.start + nak.count as u64).min(self.next_new).min(honoured_end);
            if start < end {
                // Word at a time: a forged packet full of window-sized ranges costs window/64 per range.
                let added = self.pending.set_range(start, end);
                self.pending_count += added;
                newly_lost += added;
                self.pending_scan = self.pending_scan.min(start);
            }
        }
        let signal = FeedbackSignal {
            owd_us: fb.owd_us,
            recv_rate: fb.recv_rate,
            lost: newly_lost,
            srtt_ns: self.rtt.srtt_ns(),
            rtt_sample_ns,
            received_packets: fb.received_packets,
        };
        self.rate.on_feedback(now, signal);
        self.pacer.set_rate_bps(self.rate.rate_bps());
        let srtt = self.rtt.srtt_ns();
        match self.pmtu.on_feedback(now, fb.received_packets, self.stats.packets_sent, srtt) {
            Some(PmtuEvent::BlackHole) => self.fail_black_hole(),
            Some(PmtuEvent::Confirmed) => self.stats.pmtu_confirmed = true,
            _ => {}
        }
        self.check_round_acknowledged();
        Ok(())
    }

    /// Handles one control message from the receiver.
    pub fn handle_control(&mut self, now: Time, msg: ControlMsg) {
        self.heard(now);
        if self.is_finished() {
            return;
        }
        match msg {
            ControlMsg::RoundFailed { round, file_ids } if round == self.round => {
                for id in file_ids {
                    if self.plan.index_of(id).is_some() && self.failed_ids.len() < self.plan.len() {
                        self.failed_ids.push(id);
                    }
                }
            }
            ControlMsg::RoundDone { round, failed } if round == self.round => {
                if failed == 0 {
                    return; // Complete follows once the receiver has set directory metadata.
                }
                let mut ids = std::mem::take(&mut self.failed_ids);
                ids.sort_unstable();
                ids.dedup();
                if ids.len() != failed as usize {
                    self.fail(format!("receiver reported {failed} failed files but named {}", ids.len()));
                } else if self.round + 1 >= self.cfg.max_rounds {
                    self.fail(format!(
                        "{failed} file(s) failed whole-file verification in {} rounds (first: file id {})",
                        self.cfg.max_rounds, ids[0]
                    ));
                } else {
                    self.start_round(ids);
                }
            }
            ControlMsg::Complete(summary) => self.state = SenderState::Done(summary),
            ControlMsg::Error { message } => self.fail(format!("receiver: {message}")),
            ControlMsg::RateShare { bps } => self.set_rate_share(now, bps),
            _ => {}
        }
    }

    fn start_round(&mut self, file_ids: Vec<u32>) {
        self.round += 1;
        self.stats.rounds += 1;
        self.plan = RoundPlan::new(file_ids, &self.sizes, self.cfg.block_payload as u64);
        self.next_new = 0;
        self.new_idx = 0;
        self.new_offset = 0;
        self.cum_ack = 0;
        self.pending = SeqBits::new(self.cfg.window_blocks);
        self.pending_count = 0;
        self.pending_scan = 0;
        self.tail_duplicates.clear();
        self.send_marks = SendMarks { marks: VecDeque::with_capacity(MAX_SEND_MARKS), latest: (Time::ZERO, 0) };
        self.hasher.reset();
        self.last_progress = self.last_heard;
        self.state = SenderState::Sending;
        self.skip_finished_files();
    }

    /// Ends the session on a path MTU black hole (PROTOCOL.md §4.8), for a rerun at the base size.
    fn fail_black_hole(&mut self) {
        if self.is_finished() {
            return;
        }
        let size = self.cfg.max_datagram();
        self.fail_as(
            FailureKind::PathMtu,
            format!(
                "datagrams of {size} bytes do not reach the receiver though smaller packets do: a hop on the path \
                 carries less (a path MTU black hole)"
            ),
        );
    }

    /// Handles the passing of the deadline from [`Sender::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        let heard = self.stats.feedback_received > 0;
        let (sent, first) = (self.stats.packets_sent, self.stats.first_new_at);
        if self.pmtu.on_tick(now, heard, sent, first, self.rtt.srtt_ns()) == Some(PmtuEvent::BlackHole) {
            self.fail_black_hole();
        }
        let secs = self.cfg.peer_timeout.as_secs();
        if !self.is_finished() && now.since(self.last_heard) >= self.cfg.peer_timeout {
            self.fail_as(FailureKind::Silent, format!("no word from the receiver for {secs} s"));
        }
        if self.state == SenderState::Sending && now.since(self.last_progress) >= self.cfg.peer_timeout {
            self.fail_as(FailureKind::Silent, format!("no block acknowledged for {secs} s"));
        }
    }

    /// The next time the sender needs attention without input, if any.
    pub fn poll_timeout(&self, now: Time) -> Option<Time> {
        if self.is_finished() {
            return None;
        }
        let mut silence = self.last_heard.plus(self.cfg.peer_timeout);
        if self.state == SenderState::Sending {
            silence = silence.min(self.last_progress.plus(self.cfg.peer_timeout));
        }
        if self.state == SenderState::Sending && self.cursor_on_held() {
            return Some(now); // held blocks are hashed without pacing
        }
        if self.state == SenderState::Sending && self.has_block_to_send() {
            if self.path_silent(now) {
                return Some(self.last_probe.plus_ns(self.probe_interval_ns()).min(silence));
            }
            if self.feedback_overdue(now) {
                // Feedback wakes the driver; otherwise the silence rule's start.
                return Some(self.last_heard.plus_ns(self.silence_after_ns()).min(silence));
            }
            let ready = if self.driver_paces {
                // When the driver will have released enough of its backlog (it also wakes the driver's loop
                // when it hands buffers back).
                let excess = (self.send_backlog_bytes + 1).saturating_sub(self.lead_bytes());
                now.plus_ns(self.time_at_rate_ns(excess))
            } else {
                self.pacer.ready_at(now)
            };
            return Some(ready.min(silence));
        }
        Some(silence)
    }

    /// The next control message for the receiver, if any.
    pub fn poll_control(&mut self) -> Option<ControlMsg> {
        let q = self.control_out.pop_front()?;
        Some(ControlMsg::FileHash { round: q.round, file_id: q.file_id, hash: u128::from_ne_bytes(q.hash) })
    }

    fn has_block_to_send(&self) -> bool {
        self.pending_count > 0 || !self.tail_duplicates.is_empty() || self.can_send_new()
    }

    fn can_send_new(&self) -> bool {
        self.next_new < self.plan.total_seqs()
            && self.next_new < self.cum_ack + self.cfg.window_blocks
            && !self.cursor_on_held()
    }

    /// Whether the first-pass cursor is on a block the receiver holds: it is hashed, not sent.
    fn cursor_on_held(&self) -> bool {
        self.new_idx < self.plan.len()
            && self.new_offset < self.plan.size(self.new_idx)
            && !self.plan.is_sent(self.new_idx, self.new_offset)
    }

    /// Reads held blocks at the cursor into the whole-file hash, in order, as first transmissions are read
    /// (through [`BlockSource::ready`] and [`BlockSource::read_first`]), but with no packet number, pacing
    /// or window: they never go on the wire. Stops at a sent block, a source that is not ready, or after
    /// [`HELD_HASH_PER_CALL`] bytes.
    fn hash_held_blocks(&mut self, source: &mut impl BlockSource) -> Result<(), String> {
        let mut budget = HELD_HASH_PER_CALL;
        while budget > 0 && self.cursor_on_held() {
            let (idx, offset) = (self.new_idx, self.new_offset);
            let len = self.plan.block_len(idx, offset);
            let file_id = self.plan.file_id(idx);
            self.held_buf.resize(len as usize, 0);
            let read = match source.ready(file_id, offset, len as usize, true) {
                Ok(false) => return Ok(()),
                Ok(true) => source.read_first(file_id, offset, &mut self.held_buf),
                Err(e) => Err(e),
            };
            if let Err(e) = read {
                let msg = format!("reading file id {file_id} at offset {offset}: {e}");
                self.fail(msg.clone());
                return Err(msg);
            }
            self.hasher.update(&self.held_buf);
            self.new_offset += len;
            budget = budget.saturating_sub(len);
            self.skip_finished_files();
        }
        Ok(())
    }

    /// Writes the next data datagram into `buf` (at least [`Config::max_datagram`] bytes) and returns its
    /// length, or `None` when the pacer, the window or the round says wait. Block bytes come from `source`;
    /// a read error fails the session and is returned.
    pub fn poll_transmit(
        &mut self,
        now: Time,
        source: &mut impl BlockSource,
        buf: &mut [u8],
    ) -> Result<Option<usize>, String> {
        if self.state != SenderState::Sending {
            return Ok(None);
        }
        self.hash_held_blocks(source)?;
        if self.state != SenderState::Sending || !self.may_build(now) {
            return Ok(None);
        }
        let silent = self.path_silent(now);
        if silent && now.since_ns(self.last_probe) < self.probe_interval_ns() {
            return Ok(None);
        }
        if self.feedback_overdue(now) {
            if !self.overdue_counted {
                self.overdue_counted = true;
                self.stats.overdue_holds += 1;
            }
            return Ok(None);
        }
        // Which block, without taking it yet: if its bytes are not in memory, nothing may change (the block
        // stays pending, the tail duplicate queued) until a later call finds them there.
        let pick = if self.pending_count > 0 {
            let seq = self
                .pending
                .find(true, self.pending_scan, self.next_new)
                .expect("pending_count > 0 implies a pending bit at or above pending_scan");
            Pick::Pending(seq)
        } else if self.can_send_new() {
            Pick::New
        } else {
            loop {
                match self.tail_duplicates.front() {
                    Some(&seq) if seq >= self.cum_ack => break Pick::TailDuplicate(seq),
                    // Acknowledged since it was queued: drop it.
                    Some(_) => {
                        self.tail_duplicates.pop_front();
                    }
                    None => return Ok(None),
                }
            }
        };
        let (seq, retransmit) = match pick {
            Pick::Pending(seq) | Pick::TailDuplicate(seq) => (seq, true),
            Pick::New => (self.next_new, false),
        };
        // First transmissions follow the cursor; only retransmissions need the search over the plan.
        let (idx, offset, len) = if retransmit {
            self.plan.locate(seq)
        } else {
            (self.new_idx, self.new_offset, self.plan.block_len(self.new_idx, self.new_offset))
        };
        debug_assert_eq!(self.plan.locate(seq), (idx, offset, len));
        let file_id = self.plan.file_id(idx);
        match source.ready(file_id, offset, len as usize, !retransmit) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                let msg = format!("reading file id {file_id} at offset {offset}: {e}");
                self.fail(msg.clone());
                return Err(msg);
            }
        }
        match pick {
            Pick::Pending(seq) => {
                self.pending.clear(seq);
                self.pending_count -= 1;
                self.pending_scan = seq + 1;
                if self.next_new == self.plan.total_seqs() && self.tail_duplicates.len() < MAX_TAIL_DUPLICATES {
                    self.tail_duplicates.push_back(seq);
                }
            }
            Pick::TailDuplicate(_) => {
                self.tail_duplicates.pop_front();
            }
            Pick::New => {}
        }
        // The scheduled departure, not the build time: the packetizer runs up to a burst ahead of the pacer
        // stage, and that lead (longer at low rates) would read as queueing delay at the receiver. Under
        // driver pacing too the bucket's time counts, not only the backlog: a datagram built the moment the
        // driver released the one before leaves a datagram's time at the rate later (12 ms for 8972 bytes at
        // 6 Mbit/s), and stamped at once it read as that much queue, which `low` drained into a spiral down
        // to 0.1 Mbit/s, and from which neither policy climbs back quickly.
        let backlog_departure = now.plus_ns(self.time_at_rate_ns(self.send_backlog_bytes));
        let departure = self.pacer.departure(now).max(backlog_departure);
        let mut header = DataHeader {
            session_id: self.cfg.session_id,
            packet_number: self.packet_number,
            file_id,
            offset,
            len: len as u16,
            flags: if retransmit { FLAG_RETRANSMIT } else { 0 },
            round: self.round,
            tx_time_us: departure.wire_us().max(1),
            srtt_us: (self.rtt.srtt_ns() / 1000).min(u32::MAX as u64) as u32,
        };
        let raw_total = header.datagram_len();
        assert!(buf.len() >= raw_total, "transmit buffer of {} bytes, need {raw_total}", buf.len());
        let rate_bps = self.pacer.rate_bps();
        // A block to compress is read into `raw` and compressed into the datagram; any other is read in place.
        let encode = self.encoder.as_mut().is_some_and(|e| e.wants());
        let raw_range = header.payload_range();
        let block = if encode { &mut self.raw[..len as usize] } else { &mut buf[raw_range.clone()] };
        let read = if retransmit {
            source.read_block(file_id, offset, block)
        } else {
            source.read_first(file_id, offset, block)
        };
        if let Err(e) = read {
            let msg = format!("reading file id {file_id} at offset {offset}: {e}");
            self.fail(msg.clone());
            return Err(msg);
        }
        if encode {
            let raw = &self.raw[..len as usize];
            let encoder = self.encoder.as_mut().expect("encode implies an encoder");
            match encoder.encode(raw, &mut buf[raw_range.clone()]) {
                Some(n) => {
                    debug_assert!(n < raw.len(), "a frame is sent only if it is shorter than its block");
                    header.len = n as u16;
                    header.flags |= FLAG_COMPRESSED;
                    self.stats.blocks_compressed += 1;
                }
                None => buf[raw_range].copy_from_slice(raw),
            }
        }
        if let Some(encoder) = self.encoder.as_mut() {
            let signal = SendSignal { rate_bps, startup: self.rate.in_startup() };
            encoder.sent(len as usize, header.len as usize, signal);
        }
        let total = header.datagram_len();
        header.emit(buf);
        if !retransmit {
            let interval_ns = (self.rtt.srtt_ns() / 256).max(1_000_000);
            // Marked at the same clock as tx_time, which the receiver's echo returns.
            self.send_marks.record(departure, self.next_new, interval_ns);
            // The whole-file hash is over the file's bytes, not what the wire carried.
            self.hasher.update(if encode { &self.raw[..len as usize] } else { &buf[header.payload_range()] });
            self.stats.new_payload_bytes_sent += len;
            self.stats.first_new_at.get_or_insert(departure);
            self.next_new += 1;
            self.new_offset += len;
            self.skip_finished_files();
        }
        self.sealer.seal(&mut buf[..total]);
        self.packet_number += 1;
        // Under driver pacing the bucket only stamps departures (`may_build` does not ask it).
        self.pacer.on_send(now, total);
        self.rate.on_send(now, total);
        self.stats.packets_sent += 1;
        self.sent_unheard_since.get_or_insert(now);
        self.stats.packets_retransmitted += retransmit as u64;
        if silent {
            // The first probe of a silence marks a pause: the last datagram sent before it is older.
            self.stats.silent_pauses += (now.since_ns(self.last_probe) > now.since_ns(self.last_heard)) as u64;
            self.stats.silent_probes += 1;
            self.last_probe = now;
        }
        self.stats.payload_bytes_sent += len;
        self.stats.wire_payload_bytes_sent += header.len as u64;
        self.stats.datagram_bytes_sent += total as u64;
        Ok(Some(total))
    }

    /// Emits the whole-file hash of every file whose first pass is complete (empty files at once) and
    /// moves the new-data cursor to the next file with bytes left.
    fn skip_finished_files(&mut self) {
        while self.new_idx < self.plan.len() && self.new_offset >= self.plan.size(self.new_idx) {
            let hash = self.hasher.digest128();
            self.control_out.push_back(QueuedHash {
                hash: hash.to_ne_bytes(),
                file_id: self.plan.file_id(self.new_idx),
                round: self.round,
            });
            self.hasher.reset();
            self.new_idx += 1;
            self.new_offset = 0;
        }
        self.check_round_acknowledged();
    }

    fn check_round_acknowledged(&mut self) {
        if self.state == SenderState::Sending
            && self.cum_ack == self.plan.total_seqs()
            && self.new_idx == self.plan.len()
        {
            self.state = SenderState::AwaitingVerdict;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::feedback::{FeedbackHeader, NakRange};

    /// Block contents for tests that only count packets (the simulator's sources live a floor above proto).
    struct PatternSource;

    impl crate::proto::BlockSource for PatternSource {
        fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (file_id as u64 ^ (offset + i as u64)) as u8;
            }
            Ok(())
        }
    }

    fn sender() -> Sender {
        Sender::new(Config::new(9, 1472, 1_000_000_000), vec![10_000, 20_000], Time::ZERO)
    }

    /// Empty files are hashed at once, a queued hash per file: each costs 24 bytes until it is sent, and
    /// comes out as the `FileHash` it stands for, in file order.
    #[test]
    fn hashes_of_empty_files_queue_compactly_and_in_order() {
        assert!(std::mem::size_of::<QueuedHash>() <= 24, "{}", std::mem::size_of::<QueuedHash>());
        let mut s = Sender::new(Config::new(9, 1472, 1_000_000_000), vec![0; 1000], Time::ZERO);
        assert_eq!(s.control_out.len(), 1000);
        let empty = xxhash_rust::xxh3::xxh3_128(b"");
        for id in 0..1000 {
            match s.poll_control() {
                Some(ControlMsg::FileHash { round: 0, file_id, hash }) => assert_eq!((file_id, hash), (id, empty)),
                other => panic!("expected the hash of file {id}, got {other:?}"),
            }
        }
        assert!(s.poll_control().is_none());
    }

    fn feedback(s: &Sender, cum_ack: u64, naks: &[NakRange]) -> Vec<u8> {
        feedback_echo(s, cum_ack, naks, 0)
    }

    thread_local! {
        static NEXT_PN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A sealed feedback packet with a fresh packet number (as the receiver numbers each one).
    fn feedback_echo(s: &Sender, cum_ack: u64, naks: &[NakRange], echo_tx_time_us: u32) -> Vec<u8> {
        let packet_number = NEXT_PN.with(|n| n.replace(n.get() + 1));
        let h = FeedbackHeader { session_id: 9, cum_ack, echo_tx_time_us, packet_number, ..FeedbackHeader::default() };
        let mut buf = vec![0u8; 64 + naks.len() * 12 + 16];
        let len = h.emit(naks, &mut buf);
        buf.truncate(len);
        s.sealer.clone().seal(&mut buf);
        buf
    }

    #[test]
    fn a_failed_sender_stays_failed() {
        let mut s = sender();
        s.fail("user gave up".into());
        s.handle_control(Time::ZERO, ControlMsg::RoundFailed { round: 0, file_ids: vec![1] });
        s.handle_control(Time::ZERO, ControlMsg::RoundDone { round: 0, failed: 1 });
        assert_eq!(s.state(), &SenderState::Failed("user gave up".into()));
    }

    #[test]
    fn naks_resend_exactly_what_was_asked_and_forged_feedback_is_bounded() {
        let mut s = sender();
        let mut src = PatternSource;
        let mut buf = vec![0u8; 1500];
        let mut now = Time::ZERO;
        let total = s.plan.total_seqs();
        while s.next_new < total {
            if s.poll_transmit(now, &mut src, &mut buf).unwrap().is_none() {
                now = now.plus_ns(1_000_000);
            }
        }
        // Ranges beyond what was sent, overlapping and repeated, count once each.
        let naks =
            [NakRange { start: 3, count: 2 }, NakRange { start: 4, count: 1 << 30 }, NakRange { start: 3, count: 1 }];
        let now = now.plus_ns(100_000_000); // long after the last send: the whole tail may be NAKed
        s.handle_datagram(now, &mut feedback(&s, 2, &naks)).unwrap();
        assert_eq!(s.pending_count, total - 3);
        let mut oversized = vec![0u8; s.cfg.max_datagram() + 1];
        assert_eq!(s.handle_datagram(now, &mut oversized), Err(DropReason::Oversized));
        let before = s.stats.packets_retransmitted;
        while s.poll_transmit(now, &mut src, &mut buf).unwrap().is_some() {}
        assert!(s.stats.packets_retransmitted > before);
    }

    /// A source whose retransmissions' bytes arrive a few calls after they were asked for, as from the
    /// pipeline's reader stage.
    struct SlowRepairs {
        /// (file, offset, calls left before its bytes are here).
        asked: Vec<(u32, u64, u32)>,
        asks: u64,
    }

    impl crate::proto::BlockSource for SlowRepairs {
        fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            PatternSource.read_block(file_id, offset, buf)
        }

        fn ready(&mut self, file_id: u32, offset: u64, _len: usize, first: bool) -> std::io::Result<bool> {
            if first {
                return Ok(true);
            }
            let Some(k) = self.asked.iter().position(|&(f, o, _)| (f, o) == (file_id, offset)) else {
                self.asked.push((file_id, offset, 3));
                self.asks += 1;
                return Ok(false);
            };
            if self.asked[k].2 > 0 {
                self.asked[k].2 -= 1;
                return Ok(false);
            }
            self.asked.swap_remove(k);
            Ok(true)
        }
    }

    /// A source that does not hold a retransmission's bytes yet changes nothing: the block stays pending,
    /// nothing is numbered or sealed; once the bytes are there the same datagrams go out as from a source
    /// that reads in place.
    #[test]
    fn a_block_whose_bytes_are_not_there_yet_stays_pending() {
        let naks = [NakRange { start: 1, count: 4 }, NakRange { start: 9, count: 2 }, NakRange { start: 15, count: 5 }];
        let mut runs: Vec<Vec<(u32, u64, u64)>> = Vec::new();
        for slow in [false, true] {
            let mut s = sender();
            let mut buf = vec![0u8; 1500];
            let mut now = Time::ZERO;
            while s.next_new < s.plan.total_seqs() {
                if s.poll_transmit(now, &mut PatternSource, &mut buf).unwrap().is_none() {
                    now = now.plus_ns(1_000_000);
                }
            }
            let now = now.plus_ns(100_000_000);
            s.handle_datagram(now, &mut feedback(&s, 0, &naks)).unwrap();
            let mut src = SlowRepairs { asked: Vec::new(), asks: 0 };
            let mut sent = Vec::new();
            let mut idle = 0;
            while idle < 10 {
                let (pending, packet_number) = (s.pending_count, s.packet_number);
                let r = if slow {
                    s.poll_transmit(now, &mut src, &mut buf)
                } else {
                    s.poll_transmit(now, &mut PatternSource, &mut buf)
                };
                let Some(len) = r.unwrap() else {
                    assert_eq!((s.pending_count, s.packet_number), (pending, packet_number), "changed while waiting");
                    idle += 1;
                    continue;
                };
                idle = 0;
                let h = DataHeader::parse(&buf[..len]).unwrap();
                assert!(h.flags & FLAG_RETRANSMIT != 0);
                sent.push((h.file_id, h.offset, h.packet_number));
            }
            assert_eq!(s.pending_count, 0);
            if slow {
                assert!(src.asks >= 11 && src.asked.is_empty(), "every retransmission was asked for: {}", src.asks);
            }
            runs.push(sent);
        }
        // The 11 NAKed blocks in order, then the tail duplicates of some of them.
        let resent: Vec<u64> = runs[0][..11].iter().map(|&(f, o, _)| f as u64 * 1_000_000 + o).collect();
        assert!(resent.windows(2).all(|w| w[0] < w[1]) && runs[0].len() > 11, "{:?}", runs[0]);
        assert_eq!(runs[0], runs[1], "the same datagrams, in the same order");
    }

    /// tx_time is the departure the driver will make: the pacer's schedule, or later when the driver still
    /// holds a backlog ahead of the wire.
    #[test]
    fn tx_time_is_the_scheduled_departure_including_the_drivers_backlog() {
        let mut s = sender(); // 1 Gbit/s
        let mut src = PatternSource;
        let mut buf = vec![0u8; 1500];
        let now = Time(5_000_000);
        let first = s.poll_transmit(now, &mut src, &mut buf).unwrap().unwrap();
        assert_eq!(DataHeader::parse(&buf[..first]).unwrap().tx_time_us, 5_000, "idle: leaves now");
        let len = s.poll_transmit(now, &mut src, &mut buf).unwrap().unwrap();
        let h = DataHeader::parse(&buf[..len]).unwrap();
        assert_eq!(h.tx_time_us, 5_000 + 1472 * 8 / 1000, "built at once, leaves one datagram time later");
        // 125 kB waiting in the driver is 1 ms at 1 Gbit/s.
        s.set_send_backlog(125_000);
        let len = s.poll_transmit(now, &mut src, &mut buf).unwrap().unwrap();
        assert_eq!(DataHeader::parse(&buf[..len]).unwrap().tx_time_us, 6_000);
    }

    /// Under driver pacing the core keeps no bucket: it builds while the driver's backlog is short of one
    /// burst of the rate, however fast it is polled, and stamps the departure the backlog implies.
    #[test]
    fn driver_pacing_builds_up_to_one_burst_of_backlog() {
        let mut s = sender(); // 1 Gbit/s, default burst
        s.set_driver_pacing();
        let mut src = PatternSource;
        let mut buf = vec![0u8; 1500];
        let now = Time(5_000_000);
        let lead = s.lead_bytes();
        assert_eq!(lead, (1_000_000_000u128 * s.cfg.burst.as_nanos() / 8_000_000_000) as u64);
        let mut backlog = 0u64;
        while let Some(len) = s.poll_transmit(now, &mut src, &mut buf).unwrap() {
            let h = DataHeader::parse(&buf[..len]).unwrap();
            assert_eq!(h.tx_time_us as u64, (now.0 + backlog * 8) / 1000, "leaves after the backlog");
            backlog += len as u64;
            s.set_send_backlog(backlog);
        }
        assert!(backlog >= lead && backlog < lead + 1500, "built {backlog} for a lead of {lead}");
        // Woken when the backlog will be short of the lead again, not before.
        let wake = s.poll_timeout(now).unwrap();
        assert_eq!(wake.0 - now.0, (backlog + 1 - lead) * 8);
        // The driver released half of it: the core builds again, at the same instant.
        s.set_send_backlog(backlog / 2);
        assert!(s.poll_transmit(now, &mut src, &mut buf).unwrap().is_some());
    }

    /// At a low rate one datagram is many milliseconds: one built the moment the driver released the one
    /// before (its backlog back to 0) is stamped with the departure the driver's bucket gives it, a
    /// datagram's time at the rate later, not with the build time (which read as a queue of that much).
    #[test]
    fn driver_pacing_stamps_the_departure_the_rate_gives_at_low_rates() {
        let mut s = Sender::new(Config::new(9, 8972, 6_000_000), vec![8912 * 100], Time::ZERO);
        s.set_driver_pacing();
        let mut buf = vec![0u8; 9000];
        let now = Time(5_000_000);
        let datagram_ns = 8972 * 8 * 1_000_000_000 / 6_000_000;
        let mut expect_us = now.0 / 1000;
        for k in 0..4u64 {
            // The driver took the last one: nothing is queued ahead of this datagram but the rate's bucket.
            s.set_send_backlog(0);
            let at = now.plus_ns(k * 1000);
            let len = s.poll_transmit(at, &mut PatternSource, &mut buf).unwrap().expect("a datagram");
            let h = DataHeader::parse(&buf[..len]).unwrap();
            assert_eq!(h.tx_time_us as u64, expect_us, "datagram {k}");
            expect_us = (now.0 + (k + 1) * datagram_ns) / 1000;
        }
    }

    /// The sender was descheduled after its core produced blocks 10.. but before they reached the network;
    /// the receiver's tail probe names them. While new data still streams they are not resent; once the
    /// sender has nothing new to send, old enough blocks named by a probe are (tail-loss recovery).
    #[test]
    fn tail_probes_resend_only_what_the_receiver_could_have_missed() {
        let mut s = Sender::new(Config::new(9, 1472, 1_000_000_000), vec![1412 * 1000], Time::ZERO);
        let mut src = PatternSource;
        let mut buf = vec![0u8; 1500];
        let mut now = Time(1_000_000);
        let mut echo = 0;
        while s.next_new < 20 {
            if s.next_new == 9 {
                echo = now.wire_us(); // the newest block the receiver will have seen
            }
            if s.poll_transmit(now, &mut src, &mut buf).unwrap().is_none() {
                now = now.plus_ns(100_000);
            }
        }
        let later = now.plus_ns(10_000_000);
        let probe = [NakRange { start: 10, count: 1000 }];
        s.handle_datagram(later, &mut feedback_echo(&s, 10, &probe, echo)).unwrap();
        assert_eq!(s.pending_count, 0, "a streaming sender ignores a probe for blocks sent after the echo");
        // Send everything (the receiver reporting as it does every 2 ms, so the sender never holds for
        // overdue feedback), then probe again much later: now the tail is resent.
        while s.next_new < s.plan.total_seqs() {
            if s.poll_transmit(now, &mut src, &mut buf).unwrap().is_none() {
                now = now.plus_ns(1_000_000);
                s.handle_datagram(now, &mut feedback_echo(&s, 10, &[], echo)).unwrap();
            }
        }
        let much_later = now.plus_ns(50_000_000);
        s.handle_datagram(much_later, &mut feedback_echo(&s, 10, &probe, echo)).unwrap();
        assert_eq!(s.pending_count, s.plan.total_seqs() - 10, "a finished sender honours the tail probe");
    }

    /// A hostile receiver's plan fails the session with the reason, before anything is sent.
    #[test]
    fn an_invalid_start_plan_fails_the_sender() {
        let mut start = StartPlan::default();
        start.add_have(1, vec![(100, 1412)]);
        let mut s = Sender::with_start(Config::new(9, 1472, 1_000_000_000), vec![10_000, 20_000], Time::ZERO, &start);
        assert!(matches!(s.state(), SenderState::Failed(m) if m.contains("block grid")), "{:?}", s.state());
        assert_eq!(s.poll_transmit(Time::ZERO, &mut PatternSource, &mut [0u8; 1500]), Ok(None));
    }

    /// Held blocks are hashed in order with the sent ones, so the FileHash covers the whole file, and none of
    /// them is sent.
    #[test]
    fn held_blocks_are_hashed_not_sent() {
        let sizes = vec![10 * 1412 + 5, 3000];
        let mut start = StartPlan::default();
        start.add_have(0, vec![(0, 3 * 1412), (9 * 1412, 1412 + 5)]);
        start.add_have(1, vec![(0, 3000)]);
        let mut s = Sender::with_start(Config::new(9, 1472, 1_000_000_000), sizes.clone(), Time::ZERO, &start);
        let mut buf = vec![0u8; 1500];
        let mut now = Time::ZERO;
        let mut sent = Vec::new();
        while !matches!(s.state(), SenderState::AwaitingVerdict) && now < Time(1_000_000_000) {
            match s.poll_transmit(now, &mut PatternSource, &mut buf).unwrap() {
                Some(len) => sent.push(DataHeader::parse(&buf[..len]).unwrap().offset / 1412),
                None => now = now.plus_ns(1_000_000),
            }
            if sent.len() == 6 {
                let mut fb = feedback(&s, 6, &[]);
                s.handle_datagram(now, &mut fb).unwrap();
            }
        }
        assert_eq!(sent, vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(s.stats().resumed_bytes, 4 * 1412 + 5 + 3000);
        for (id, &size) in sizes.iter().enumerate() {
            let mut whole = vec![0u8; size as usize];
            PatternSource.read_block(id as u32, 0, &mut whole).unwrap();
            let want = xxhash_rust::xxh3::xxh3_128(&whole);
            let got = std::iter::from_fn(|| s.poll_control())
                .find_map(|m| match m {
                    ControlMsg::FileHash { file_id, hash, .. } if file_id == id as u32 => Some(hash),
                    _ => None,
                })
                .expect("a FileHash per file");
            assert_eq!(got, want, "file {id}");
        }
    }
}
