//! Runs a whole transfer between a [`Sender`] and a [`ReceiverSession`] over simulated links, in virtual time.

use super::aimd::{AimdConfig, AimdFlow};
use super::link::{Link, LinkConfig, LinkStats};
use crate::proto::compress::encoder_for;
use crate::proto::{
    BlockSource, BlockStore, Config, Receiver, ReceiverSession, ReceiverStats, Sender, SenderState, SenderStats,
    StartPlan,
};
use crate::time::Time;
use crate::wire::control::{ControlMsg, ReceiverSummary};
use crate::wire::Compression;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// A simulated path: one link per direction; the control channel is reliable and in order, with each
/// direction's propagation delay.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Sender to receiver.
    pub forward: LinkConfig,
    /// Receiver to sender.
    pub reverse: LinkConfig,
    /// Seed of every random choice.
    pub seed: u64,
    /// Virtual time after which the run is declared failed.
    pub time_limit: Duration,
    /// The sender is descheduled for `.1` out of every `.0` (a busy or shared machine): it neither sends nor
    /// reads feedback then.
    pub sender_stalls: Option<(Duration, Duration)>,
    /// A Reno- or CUBIC-like TCP flow sharing the forward link's queue.
    pub competitor: Option<AimdConfig>,
    /// The transfer starts this long after the run (and the competitor, if it starts at zero): a session
    /// that joins a bottleneck another flow already fills, as benches/run-wan.sh's fairness runs do.
    pub start_delay: Duration,
    /// End the run at this virtual time even if the transfer is not finished (for tests that only look at
    /// `samples`); the outcome is then an error saying so.
    pub stop_at: Option<Duration>,
    /// Record a [`SimSample`] this often.
    pub sample_every: Option<Duration>,
    /// The receiver sends no feedback before a data packet reached it, as the real one, whose data socket
    /// learns the sender's address from the first datagram (what a black hole at the start looks like,
    /// PROTOCOL.md §4.8). Off by default, which keeps the older runs and the goodput snapshot as they were.
    pub feedback_after_first_data: bool,
    /// `--compress`: how the sender compresses blocks (`auto` measures with the real clock, so its choices are
    /// not deterministic; the fixed levels are).
    pub compress: Compression,
    /// The daemon's rate shares (PROTOCOL.md §3.7): at each (time, bits per second) the receiver is given
    /// that share, and tells the sender over the control channel. One at time zero reaches the sender before
    /// its first datagram, as the real one comes before `Accept`.
    pub rate_shares: Vec<(Duration, u64)>,
}

impl SimConfig {
    /// A path of `rate_bps` each way with round-trip time `rtt` and random `loss` on the forward direction.
    pub fn path(rate_bps: u64, rtt: Duration, loss: f64) -> SimConfig {
        let mut forward = LinkConfig::clean(rate_bps, rtt / 2);
        forward.loss = loss;
        SimConfig {
            forward,
            reverse: LinkConfig::clean(rate_bps, rtt / 2),
            seed: 1,
            time_limit: Duration::from_secs(600),
            sender_stalls: None,
            competitor: None,
            start_delay: Duration::ZERO,
            stop_at: None,
            sample_every: None,
            feedback_after_first_data: false,
            compress: Compression::None,
            rate_shares: Vec::new(),
        }
    }
}

/// Counters at one moment of a run, for rates over time.
#[derive(Copy, Clone, Debug, Default)]
pub struct SimSample {
    /// Virtual time.
    pub at: Duration,
    /// New payload bytes the mover receiver has taken in.
    pub mover_bytes: u64,
    /// Bytes the competing flow has delivered.
    pub competitor_bytes: u64,
    /// The sender's pacing rate, bits per second.
    pub rate_bps: u64,
    /// Datagram bytes the sender has sent, retransmissions included (the unit of rates and shares).
    pub sent_bytes: u64,
    /// The forward link's queueing delay.
    pub queue: Duration,
}

/// Rate in bits per second between two samples: (mover, competitor).
pub fn rates_between(a: &SimSample, b: &SimSample) -> (f64, f64) {
    let secs = (b.at - a.at).as_secs_f64().max(1e-9);
    ((b.mover_bytes - a.mover_bytes) as f64 * 8.0 / secs, (b.competitor_bytes - a.competitor_bytes) as f64 * 8.0 / secs)
}

/// What a simulated transfer achieved.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The receiver's summary, or why the session failed.
    pub outcome: Result<ReceiverSummary, String>,
    /// Virtual time from the first transmission to the receiver committing the last file.
    pub transfer_time: Duration,
    /// Virtual time from start to the sender learning that everything is committed (adds one one-way
    /// delay for the final control message).
    pub session_time: Duration,
    /// Bytes in all files.
    pub payload_bytes: u64,
    /// Payload bits per second over `transfer_time`: what a meter at the receiver shows.
    pub goodput_bps: f64,
    /// The sender's counters.
    pub sender: SenderStats,
    /// The receiver's counters.
    pub receiver: ReceiverStats,
    /// The forward link's counters.
    pub forward: LinkStats,
    /// The reverse link's counters.
    pub reverse: LinkStats,
    /// Loop iterations (a cost measure).
    pub steps: u64,
    /// Samples every `sample_every`.
    pub samples: Vec<SimSample>,
    /// The competing flow's window halvings.
    pub competitor_halvings: u64,
    /// Times `fair` entered its competitive mode (a standing queue that is not its own).
    pub rate_competitions: u64,
}

enum Event {
    ToReceiver(Vec<u8>),
    ToSender(Vec<u8>),
    ControlToReceiver(ControlMsg),
    ControlToSender(ControlMsg),
}

struct EventQueue {
    heap: BinaryHeap<Reverse<(Time, u64, usize)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
}

impl EventQueue {
    fn push(&mut self, at: Time, ev: Event) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    fn next_time(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    fn pop_due(&mut self, now: Time) -> Option<Event> {
        if self.next_time()? > now {
            return None;
        }
        let Reverse((_, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.slots[slot].take()
    }
}

/// Transfers files of `sizes` from `source` into `store` over the simulated path, and reports.
pub fn run_transfer<Src: BlockSource, St: BlockStore>(
    sim: &SimConfig,
    cfg: Config,
    sizes: Vec<u64>,
    source: &mut Src,
    store: St,
) -> (SimReport, St) {
    run_transfer_from(sim, cfg, sizes, source, store, &StartPlan::default())
}

/// One file of `size` synthesised bytes (the session's `cfg`) over the simulated path, checked as the
/// policy tests need it: no write may differ from the source, and a transfer that finished must leave
/// every byte identical. `MOVER_RATE_TRACE=1` prints the rate controller's rounds (with `--nocapture`), to
/// see why a run missed.
pub fn run_synth_checked(sim: &SimConfig, mut cfg: Config, size: u64) -> SimReport {
    cfg.trace_rate |= std::env::var_os("MOVER_RATE_TRACE").is_some_and(|v| v == "1");
    let sizes = vec![size];
    let mut src = super::SynthSource { seed: sim.seed };
    let store = super::CheckingStore::new(sim.seed, sizes.clone());
    let (report, store) = run_transfer(sim, cfg, sizes, &mut src, store);
    assert_eq!(store.mismatched_writes, 0, "a write differed from the source");
    if report.outcome.is_ok() {
        assert!(store.all_identical(), "store: {store:?}");
    }
    report
}

/// [`run_transfer`] whose round 0 starts from the receiver's `start` plan (resume and sync). The plan
/// reaches the sender as it would over the control channel: as `Skip`/`Have` frames, decoded and absorbed.
pub fn run_transfer_from<Src: BlockSource, St: BlockStore>(
    sim: &SimConfig,
    cfg: Config,
    sizes: Vec<u64>,
    source: &mut Src,
    store: St,
    start: &StartPlan,
) -> (SimReport, St) {
    let mut now = Time::ZERO;
    let mut fwd = Link::new(sim.forward.clone(), sim.seed.wrapping_mul(3) + 1);
    let mut competitor = sim.competitor.clone().map(AimdFlow::new);
    let mut samples = Vec::new();
    let mut next_sample = sim.sample_every.map(|_| Time::ZERO);
    // Before the transfer starts, only the competitor runs (and the samples show it alone).
    let joins_at = Time::ZERO.plus(sim.start_delay);
    while now < joins_at {
        if let (Some(at), Some(every)) = (next_sample, sim.sample_every) {
            if now >= at {
                samples.push(SimSample {
                    at: Duration::from_nanos(now.0),
                    competitor_bytes: competitor.as_ref().map_or(0, |c| c.delivered_bytes()),
                    queue: fwd.queue_delay(now),
                    ..SimSample::default()
                });
                next_sample = Some(at.plus(every));
            }
        }
        if let Some(c) = competitor.as_mut() {
            c.step(now, &mut fwd, sim.reverse.delay);
        }
        let next = [competitor.as_ref().and_then(|c| c.next_event(now)), next_sample, Some(joins_at)];
        now = next.into_iter().flatten().min().unwrap_or(joins_at).max(now.plus_ns(1)).min(joins_at);
    }
    let payload_bytes: u64 = sizes.iter().sum();
    let mut absorbed = StartPlan::default();
    for m in start.to_messages() {
        let mut frame = Vec::new();
        m.encode(&mut frame);
        let m = ControlMsg::decode(&frame[4..]).expect("a plan's messages decode");
        assert_eq!(absorbed.absorb(&m), Ok(true), "a plan's own messages are absorbed");
    }
    let mut sender = Sender::with_start(cfg.clone(), sizes.clone(), now, &absorbed);
    sender.set_encoder(encoder_for(sim.compress, crate::time::monotonic_ns).expect("a zstd context"));
    let mut rx = ReceiverSession::new(Receiver::with_start(cfg.clone(), sizes, now, start), store);
    // Shares in time order; one due now comes with the receiver's `Accept`, before any datagram.
    let mut shares: VecDeque<(Time, u64)> =
        sim.rate_shares.iter().map(|&(at, bps)| (Time::ZERO.plus(at), bps)).collect();
    shares.make_contiguous().sort_by_key(|&(at, _)| at);
    while let Some(&(_, bps)) = shares.front().filter(|&&(at, _)| at <= now) {
        shares.pop_front();
        rx.core.set_rate_share(bps);
        while let Some(m) = rx.poll_control() {
            sender.handle_control(now, m);
        }
    }
    let mut rev = Link::new(sim.reverse.clone(), sim.seed.wrapping_mul(5) + 2);
    let mut q = EventQueue { heap: BinaryHeap::new(), slots: Vec::new(), free: Vec::new(), seq: 0 };
    let mut ctrl_to_rx_at = Time::ZERO;
    let mut ctrl_to_tx_at = Time::ZERO;
    let mut tx_buf = vec![0u8; cfg.max_datagram()];
    let mut fb_buf = vec![0u8; cfg.max_datagram()];
    let limit = Time::ZERO.plus(sim.time_limit);
    let mut steps = 0u64;
    let mut receiver_done_at = None;
    let mut rx_heard_data = false;
    let stalled_until = |now: Time| -> Option<Time> {
        let (period, pause) = sim.sender_stalls?;
        let (period, pause) = (period.as_nanos() as u64, pause.as_nanos() as u64);
        let phase = now.0 % period;
        (phase >= period - pause).then(|| Time(now.0 - phase + period))
    };
    let mut sender_inbox: Vec<Event> = Vec::new();
    let stop_at = sim.stop_at.map(|d| Time::ZERO.plus(d));
    let outcome = loop {
        steps += 1;
        if let (Some(at), Some(every)) = (next_sample, sim.sample_every) {
            if now >= at {
                samples.push(SimSample {
                    at: Duration::from_nanos(now.0),
                    mover_bytes: rx.core.stats().bytes_delivered,
                    competitor_bytes: competitor.as_ref().map_or(0, |c| c.delivered_bytes()),
                    rate_bps: sender.rate_bps(),
                    sent_bytes: sender.stats().datagram_bytes_sent,
                    queue: fwd.queue_delay(now),
                });
                next_sample = Some(at.plus(every));
            }
        }
        if let Some(c) = competitor.as_mut() {
            c.step(now, &mut fwd, sim.reverse.delay);
        }
        while let Some(&(_, bps)) = shares.front().filter(|&&(at, _)| at <= now) {
            shares.pop_front();
            rx.core.set_rate_share(bps);
        }
        let sender_stalled = stalled_until(now);
        while let Some(ev) = q.pop_due(now) {
            if sender_stalled.is_some() && matches!(ev, Event::ToSender(_) | Event::ControlToSender(_)) {
                sender_inbox.push(ev);
                continue;
            }
            match ev {
                Event::ToReceiver(mut p) => {
                    rx_heard_data |= rx.handle_datagram(now, &mut p).is_ok();
                }
                Event::ToSender(mut p) => {
                    let _ = sender.handle_datagram(now, &mut p);
                }
                Event::ControlToReceiver(m) => rx.handle_control(now, m),
                Event::ControlToSender(m) => sender.handle_control(now, m),
            }
        }
        if sender_stalled.is_none() {
            for ev in sender_inbox.drain(..) {
                match ev {
                    Event::ToSender(mut p) => {
                        let _ = sender.handle_datagram(now, &mut p);
                    }
                    Event::ControlToSender(m) => sender.handle_control(now, m),
                    _ => unreachable!("only the sender's events wait"),
                }
            }
        }
        rx.process();
        if receiver_done_at.is_none() && matches!(rx.outcome(), Some(Ok(()))) {
            receiver_done_at = Some(now);
        }
        sender.handle_timeout(now);
        rx.handle_timeout(now);
        while let Some(len) =
            sender_stalled.map_or_else(|| sender.poll_transmit(now, source, &mut tx_buf), |_| Ok(None)).ok().flatten()
        {
            fwd.send(now, tx_buf[..len].to_vec(), |t, p| q.push(t, Event::ToReceiver(p)));
        }
        while let Some(m) = sender.poll_control() {
            // Held through a partition, as TCP retransmits until the path is back.
            let sent = fwd.partitioned_until(now).unwrap_or(now);
            ctrl_to_rx_at = ctrl_to_rx_at.max(sent.plus(sim.forward.delay));
            q.push(ctrl_to_rx_at, Event::ControlToReceiver(m));
        }
        while let Some(len) = rx.poll_transmit(now, &mut fb_buf) {
            if sim.feedback_after_first_data && !rx_heard_data {
                continue;
            }
            rev.send(now, fb_buf[..len].to_vec(), |t, p| q.push(t, Event::ToSender(p)));
        }
        while let Some(m) = rx.poll_control() {
            let sent = rev.partitioned_until(now).unwrap_or(now);
            ctrl_to_tx_at = ctrl_to_tx_at.max(sent.plus(sim.reverse.delay));
            q.push(ctrl_to_tx_at, Event::ControlToSender(m));
        }
        match sender.state() {
            SenderState::Done(summary) => break Ok(*summary),
            SenderState::Failed(m) => break Err(m.clone()),
            _ => {}
        }
        if now > limit {
            break Err(format!("simulation passed its time limit of {:?}", sim.time_limit));
        }
        if stop_at.is_some_and(|s| now >= s) {
            break Err(format!("stopped at {:?} as asked", sim.stop_at.unwrap_or_default()));
        }
        let sender_next = match sender_stalled {
            Some(until) => Some(until),
            None => sender.poll_timeout(now),
        };
        let next = [
            q.next_time(),
            sender_next,
            rx.poll_timeout(),
            competitor.as_ref().and_then(|c| c.next_event(now)),
            next_sample,
            stop_at,
            shares.front().map(|&(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break Err("simulation deadlocked: nothing scheduled".into()) };
        now = next.max(now.plus_ns(1));
    };
    let transfer_time = Duration::from_nanos(receiver_done_at.unwrap_or(now).0);
    let report = SimReport {
        outcome,
        transfer_time,
        session_time: Duration::from_nanos(now.0),
        payload_bytes,
        goodput_bps: payload_bytes as f64 * 8.0 / transfer_time.as_secs_f64().max(1e-9),
        sender: sender.stats().clone(),
        receiver: rx.core.stats().clone(),
        forward: fwd.stats.clone(),
        reverse: rev.stats.clone(),
        steps,
        samples,
        competitor_halvings: competitor.map_or(0, |c| c.halvings),
        rate_competitions: sender.rate_competitions(),
    };
    (report, rx.store)
}
