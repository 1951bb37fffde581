//! Rate policies (PROTOCOL.md §4.7): how fast the sender paces, from what the receiver's feedback says.
//!
//! - `fixed` holds the configured rate whatever happens.
//! - `fair` finds the bottleneck and stays at it with a small standing queue. Its congestion signals are the
//!   queueing delay (the one-way delay above its minimum, from the receiver's timestamps) and the receive
//!   rate. Random loss without a rising queue does not slow it. Against loss-driven TCP it adds a Reno-like
//!   additive-increase, multiplicative-decrease share, so it neither starves nor is starved.
//! - `low` is a scavenger: it keeps the queue below a lower target than `fair`, backs off harder, and so
//!   yields the link to any flow that builds a queue, taking it back when that flow stops.
//!
//! The controller is a pure function of its inputs and `now`, like the rest of the sans-IO core. The sender
//! calls [`RateController::on_send`] per datagram and [`RateController::on_feedback`] per feedback packet,
//! and paces at [`RateController::rate_bps`].

use crate::time::Time;
use std::collections::VecDeque;

/// The policy names live in `wire` (the hello message carries them); the control laws live here.
pub use crate::wire::policy::Policy;

/// The rate `fair` and `low` start from (capped by the ceiling): high enough that startup reaches 1 Gbit/s
/// in four round trips, low enough not to swamp a slow path before the first feedback.
pub const START_RATE_BPS: f64 = 100e6;
/// The queueing delay `fair` aims to keep at the bottleneck. Above the noise of delay measurement on a
/// loaded host (well under 1 ms once the receiver takes the minimum per feedback interval), and below the
/// buffers of real paths, so that `fair` neither mistakes noise for congestion nor fills buffers.
pub const FAIR_TARGET_NS: u64 = 3_000_000;
/// The queueing delay `low` tolerates: below `fair`'s target, so a `fair` flow (or any flow that queues)
/// always pushes `low` back.
pub const LOW_TARGET_NS: u64 = 1_000_000;
/// Shortest control round: on paths of a few milliseconds or less, a round of one RTT would carry too few
/// feedback packets (one per 2 ms) to see the queue.
pub const MIN_ROUND_NS: u64 = 10_000_000;
/// First growth step per round when the queue is empty (2%), doubled each further round without a queue
/// up to [`MAX_VELOCITY`]: small steps near a known capacity, fast ones when the path got faster.
pub const START_VELOCITY: f64 = 0.02;
/// Largest growth per round in steady state (25%): a rate that doubled is found within six rounds, and a
/// probe overshoots by at most a quarter of one round's data.
pub const MAX_VELOCITY: f64 = 0.25;
/// Base-delay history: the minimum one-way delay is taken over this many buckets...
const BASE_BUCKETS: usize = 6;
/// ...of this length each (so a route change or clock drift ages out within a minute).
const BASE_BUCKET_NS: u64 = 10_000_000_000;
/// Feedback samples in the current-delay filter (the minimum of the last few reports).
const CURRENT_FILTER: usize = 4;
/// The least delay above the base taken as a queue whatever the RTT (see `on_feedback`): on sub-millisecond
/// paths twice the RTT is within host noise.
const MIN_QUEUE_BOUND_NS: u64 = 2_000_000;
/// Length of the windows over which the sending rate is remembered (the receiver measures its rate over
/// windows of at least 10 ms too).
const SEND_WINDOW_NS: u64 = 10_000_000;
/// Sending-rate windows remembered: 2.5 s at 10 ms, longer than any RTT the policies are built for.
const SEND_HISTORY: usize = 256;
/// Startup paces at this multiple of the best delivery rate measured so far (each feedback raises it as
/// what was sent one RTT ago arrives): the rate grows 2.5x per RTT of the path (plus up to 25 ms for the
/// send windows matched to a delivery to be all at the new rate), not 2x per controller round of
/// 1.25 RTT + 15 ms, and an app- or receiver-limited sender does not grow past what gets through.
const STARTUP_GAIN: f64 = 2.5;
/// Startup ends when the receive rate stays below this fraction of what was sent one RTT before.
const STARTUP_DELIVERY_RATIO: f64 = 0.8;
/// In steady state, a receive rate below this fraction of what was sent one RTT before, with a queue, is
/// congestion even when the queue is too shallow to reach the target delay (it overflows instead).
const STEADY_DELIVERY_RATIO: f64 = 0.9;
/// Drains in a row that leave the queue where it was before the delay is taken as the hosts' own.
const INEFFECTIVE_DRAINS: u32 = 2;
/// The most standing delay taken as the hosts' own: what pipelined, batching end hosts on a loaded machine
/// add (measured up to about 5 ms on the 2-core test machine), well below the queues of a loaded path.
pub const HOST_DELAY_ALLOWANCE_NS: u64 = 6_000_000;
/// Added to a startup round: the receiver's rate window (10 ms) and feedback interval (2 ms) delay the news.
const STARTUP_EXTRA_ROUND_NS: u64 = 15_000_000;
/// Assumed datagram size for the additive increase (one datagram per round, as Reno grows one segment).
const AIMD_STEP_BYTES: f64 = 1500.0;
/// A receive rate above the rate sent in the last two rounds by more than this is measurement noise.
const DELIVERY_OVER_SENT_MAX: f64 = 1.02;
/// The loss-driven share grows by at least this fraction of the rate per RTT (scalable TCP's increase):
/// Reno's one datagram per RTT is 160 kbit/s per RTT at 1 Gbit/s x 75 ms, so a Reno share joining an
/// established cubic flow stays near nothing for minutes (measured: 0.1x TCP's rate on the emulated path).
/// On small BDPs (under 100 datagrams) Reno's step is the larger and this changes nothing.
const AIMD_SCALABLE_STEP: f64 = 0.01;

/// What one feedback packet tells the controller.
#[derive(Copy, Clone, Debug, Default)]
pub struct FeedbackSignal {
    /// Raw one-way delay (receiver clock minus sender clock, wrapping microseconds), if sampled.
    pub owd_us: Option<u32>,
    /// The receiver's receive rate in payload bytes per second.
    pub recv_rate: u64,
    /// Blocks newly reported lost by this feedback.
    pub lost: u64,
    /// The sender's smoothed RTT, nanoseconds.
    pub srtt_ns: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Doubling each round until the queue or the receive rate says the bottleneck is reached.
    Startup,
    /// Holding the bottleneck's rate.
    Steady,
}

/// The base one-way delay: a windowed minimum over [`BASE_BUCKETS`] buckets, compared with wrapping
/// arithmetic (raw samples carry an arbitrary clock offset).
#[derive(Clone, Debug)]
struct BaseDelay {
    buckets: [Option<u32>; BASE_BUCKETS],
    current: usize,
    bucket_start: Time,
}

/// Whether raw delay `a` is smaller than `b` (both within ±35 minutes of each other).
fn owd_less(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl BaseDelay {
    fn new(now: Time) -> BaseDelay {
        BaseDelay { buckets: [None; BASE_BUCKETS], current: 0, bucket_start: now }
    }

    fn add(&mut self, now: Time, owd: u32) {
        if now.since_ns(self.bucket_start) >= BASE_BUCKET_NS {
            self.current = (self.current + 1) % BASE_BUCKETS;
            self.buckets[self.current] = None;
            self.bucket_start = now;
        }
        let slot = &mut self.buckets[self.current];
        if slot.is_none_or(|m| owd_less(owd, m)) {
            *slot = Some(owd);
        }
    }

    fn get(&self) -> Option<u32> {
        self.buckets.iter().flatten().copied().reduce(|a, b| if owd_less(a, b) { a } else { b })
    }
}

/// The rate controller of one sending session.
#[derive(Clone, Debug)]
pub struct RateController {
    policy: Policy,
    ceiling: f64,
    floor: f64,
    /// Datagram bytes per payload byte, to compare the receiver's payload rate with the pacing rate.
    overhead: f64,
    phase: Phase,
    /// Pacing rate in bits per second of datagram bytes.
    rate: f64,
    /// `fair`'s loss-driven (Reno-like) share of `rate`; the rest is the delay-driven share.
    aimd: f64,
    /// The receive rate last measured while a queue stood: the bottleneck's rate, or this flow's share.
    capacity: Option<f64>,
    velocity: f64,
    base: BaseDelay,
    recent: [Option<u32>; CURRENT_FILTER],
    recent_next: usize,
    /// Current queueing delay (filtered), if known.
    queue_ns: Option<u64>,
    round_start: Time,
    round_sent_bytes: u64,
    round_min_queue: Option<u64>,
    round_max_delivery: f64,
    prev_round_max_delivery: f64,
    round_lost: u64,
    /// The previous round drained a queue: its effect shows only now, so this round holds.
    drained: bool,
    /// The queue when the last drain was decided, to judge whether it worked (None: judged).
    drained_from: Option<u64>,
    /// Drains in a row after which the queue did not shrink.
    ineffective_drains: u32,
    /// Delay above the base that did not respond to draining: the hosts' own (their pipelines and
    /// schedulers on a busy machine), not a queue this flow builds. Subtracted from the samples.
    offset_ns: u64,
    /// Rate at the end of the previous round (what the receiver sees this round).
    prev_rate: f64,
    /// The rate of the round before `prev_rate`'s: with it, what this flow sent over the last two rounds,
    /// which bounds what the receiver can have seen of it.
    rate_before: f64,
    /// Sending rate per [`SEND_WINDOW_NS`] window: (window end, bits per second), oldest first.
    sent_history: VecDeque<(Time, f64)>,
    window_start: Time,
    window_bytes: u64,
    /// Consecutive feedback in startup whose receive rate fell short of what was sent.
    short_deliveries: u32,
    /// Smallest ratio of receive rate to the rate sent one RTT before, over the round.
    round_min_delivery_ratio: f64,
    srtt_ns: u64,
    /// The largest rate set so far.
    max_rate: f64,
    /// Print each round on stderr.
    pub trace: bool,
}

impl RateController {
    /// A controller for `policy` with the user's `ceiling_bps` (the rate itself for `fixed`) and
    /// `floor_bps` (`--min-rate`), for datagrams of `datagram` bytes carrying `payload` bytes each.
    pub fn new(
        policy: Policy,
        ceiling_bps: u64,
        floor_bps: u64,
        datagram: usize,
        payload: usize,
        now: Time,
    ) -> RateController {
        assert!(ceiling_bps > 0 && floor_bps <= ceiling_bps && payload > 0 && datagram >= payload);
        let ceiling = ceiling_bps as f64;
        let floor = (floor_bps as f64).max(1.0);
        let rate = match policy {
            Policy::Fixed => ceiling,
            Policy::Fair | Policy::Low => START_RATE_BPS.clamp(floor, ceiling),
        };
        RateController {
            policy,
            ceiling,
            floor,
            overhead: datagram as f64 / payload as f64,
            phase: if policy == Policy::Fixed { Phase::Steady } else { Phase::Startup },
            rate,
            aimd: 0.0,
            capacity: None,
            velocity: START_VELOCITY,
            base: BaseDelay::new(now),
            recent: [None; CURRENT_FILTER],
            recent_next: 0,
            queue_ns: None,
            round_start: now,
            round_sent_bytes: 0,
            round_min_queue: None,
            round_max_delivery: 0.0,
            prev_round_max_delivery: 0.0,
            round_lost: 0,
            drained: false,
            drained_from: None,
            ineffective_drains: 0,
            offset_ns: 0,
            prev_rate: rate,
            rate_before: rate,
            sent_history: VecDeque::with_capacity(SEND_HISTORY),
            window_start: now,
            window_bytes: 0,
            short_deliveries: 0,
            round_min_delivery_ratio: f64::INFINITY,
            srtt_ns: 0,
            max_rate: rate,
            trace: false,
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The rate to pace at, bits per second of datagram bytes.
    pub fn rate_bps(&self) -> u64 {
        self.rate as u64
    }

    /// The largest rate chosen so far, bits per second.
    pub fn max_rate_bps(&self) -> u64 {
        self.max_rate as u64
    }

    /// Whether startup is still running.
    pub fn in_startup(&self) -> bool {
        self.phase == Phase::Startup
    }

    /// Accounts for a datagram of `bytes` handed to the network at `now`.
    pub fn on_send(&mut self, now: Time, bytes: usize) {
        if self.policy == Policy::Fixed {
            return; // nothing reads the history
        }
        self.round_sent_bytes += bytes as u64;
        self.window_bytes += bytes as u64;
        let elapsed = now.since_ns(self.window_start);
        if elapsed >= SEND_WINDOW_NS {
            if self.sent_history.len() == SEND_HISTORY {
                self.sent_history.pop_front();
            }
            self.sent_history.push_back((now, self.window_bytes as f64 * 8.0 * 1e9 / elapsed as f64));
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    /// The smallest sending rate over the windows that ended within 15 ms of `at` (what a receive rate
    /// reported now reflects, for `at` one RTT ago), or `None` if not remembered.
    fn sent_around(&self, at: Time) -> Option<f64> {
        let lo = at.0.saturating_sub(15_000_000);
        let hi = at.0 + 15_000_000;
        if self.sent_history.front().is_none_or(|&(t, _)| t.0 > lo) {
            return None;
        }
        self.sent_history.iter().filter(|(t, _)| (lo..=hi).contains(&t.0)).map(|&(_, r)| r).reduce(f64::min)
    }

    fn target_ns(&self) -> u64 {
        match self.policy {
            Policy::Low => LOW_TARGET_NS,
            _ => FAIR_TARGET_NS,
        }
    }

    /// Takes in one feedback packet's signals at `now`.
    pub fn on_feedback(&mut self, now: Time, fb: FeedbackSignal) {
        if self.policy == Policy::Fixed {
            return;
        }
        self.srtt_ns = fb.srtt_ns;
        if let Some(owd) = fb.owd_us {
            self.base.add(now, owd);
            self.recent[self.recent_next] = Some(owd);
            self.recent_next = (self.recent_next + 1) % CURRENT_FILTER;
            let current = self.recent.iter().flatten().copied().reduce(|a, b| if owd_less(a, b) { a } else { b });
            if let (Some(cur), Some(base)) = (current, self.base.get()) {
                let raw = cur.wrapping_sub(base) as u64 * 1000;
                // A standing delay taken as the hosts' own (see `steady_round`) shrinks as soon as less
                // is seen.
                self.offset_ns = self.offset_ns.min(raw);
                // A queue on the forward path is part of the round trip, so delay above the base beyond
                // twice the RTT is not a queue: it is the hosts' own (a receiver that stamps arrivals late
                // behind a backlog of its own, which the echo's hold time removes from the RTT but not from
                // the one-way delay). Left in, it reads as a standing queue that no drain can move, and the
                // rate spirals down on an idle path.
                if self.srtt_ns > 0 {
                    let bound = (2 * self.srtt_ns).max(MIN_QUEUE_BOUND_NS);
                    self.offset_ns = self.offset_ns.max(raw.saturating_sub(bound));
                }
                let q = raw - self.offset_ns;
                self.queue_ns = Some(q);
                self.round_min_queue = Some(self.round_min_queue.map_or(q, |m| m.min(q)));
            }
        }
        let delivered = fb.recv_rate as f64 * 8.0 * self.overhead;
        self.round_max_delivery = self.round_max_delivery.max(delivered);
        self.round_lost += fb.lost;
        let ratio = self.sent_around(Time(now.0.saturating_sub(fb.srtt_ns))).map(|sent| delivered / sent.max(1.0));
        if let Some(r) = ratio {
            self.round_min_delivery_ratio = self.round_min_delivery_ratio.min(r);
        }
        if self.phase == Phase::Startup {
            // Startup ends as soon as a queue shows or the receive rate stops following what was sent, not
            // at the round's end: that would let it double once more.
            if ratio.is_some_and(|r| r < STARTUP_DELIVERY_RATIO) {
                self.short_deliveries += 1;
            } else {
                self.short_deliveries = 0;
            }
            // Six reports in a row, 12 ms: the receiver measures over >= 10 ms windows, and one short window
            // can be noise.
            if self.queue_ns.is_some_and(|q| q > self.target_ns() / 2) || self.short_deliveries >= 6 {
                self.end_startup(now);
                return;
            }
            // Delivery-rate probing (as BBR's startup): what the path carried of what was sent one RTT ago
            // is a measured lower bound of the bottleneck, and the pace is a multiple of it, raised on every
            // feedback rather than once per round. The bound is capped by what was sent (a receive window
            // that caught a backlog reads more than the path carries).
            if let Some(r) = ratio.filter(|&r| r >= STARTUP_DELIVERY_RATIO) {
                let measured = delivered.min(delivered / r * DELIVERY_OVER_SENT_MAX);
                if measured * STARTUP_GAIN > self.rate {
                    self.set_rate(measured * STARTUP_GAIN);
                }
            }
        }
        // A startup round outlasts the RTT by the feedback delay, so each doubling is judged before the next.
        let round_ns = match self.phase {
            Phase::Startup => fb.srtt_ns + fb.srtt_ns / 4 + STARTUP_EXTRA_ROUND_NS,
            Phase::Steady => fb.srtt_ns,
        }
        .max(MIN_ROUND_NS);
        if now.since_ns(self.round_start) >= round_ns {
            self.end_round(now, round_ns);
        }
    }

    /// The path was silent (no feedback for much longer than a round) and feedback is back at `now`: the
    /// silence is no round to judge. What was sent into it, and the delay and receive-rate readings from
    /// before it, are forgotten, so the rate carries on from where it was instead of reading the pause as a
    /// collapse of the path (which would leave `fair` at its floor for many rounds).
    pub fn on_path_resumed(&mut self, now: Time) {
        self.sent_history.clear();
        self.window_start = now;
        self.window_bytes = 0;
        self.recent = [None; CURRENT_FILTER];
        self.start_round(now);
    }

    fn end_startup(&mut self, now: Time) {
        self.phase = Phase::Steady;
        // What got through is the bottleneck's rate; the queue built while the news travelled drains by
        // sending a little below it for a round.
        let delivered = self.round_max_delivery.max(self.prev_round_max_delivery);
        let delivered = if delivered > 0.0 { delivered } else { self.prev_rate.min(self.rate) * 0.5 };
        self.capacity = Some(delivered.min(self.rate));
        self.set_rate(delivered.min(self.rate) * 0.9);
        self.start_round(now);
    }

    fn start_round(&mut self, now: Time) {
        self.rate_before = self.prev_rate;
        self.prev_rate = self.rate;
        self.prev_round_max_delivery = self.round_max_delivery;
        self.round_start = now;
        self.round_sent_bytes = 0;
        self.round_min_queue = None;
        self.round_max_delivery = 0.0;
        self.round_lost = 0;
        self.round_min_delivery_ratio = f64::INFINITY;
    }

    fn end_round(&mut self, now: Time, round_ns: u64) {
        let elapsed = now.since_ns(self.round_start).max(1) as f64;
        let sent_rate = self.round_sent_bytes as f64 * 8.0 * 1e9 / elapsed;
        // The sender had less to send than the rate allowed (the disk, the CPU, the window or the end of
        // the data): growth would be unfounded.
        let app_limited = sent_rate < 0.7 * self.rate;
        let target = self.target_ns();
        let queue = self.queue_ns.unwrap_or(0);
        let min_queue = self.round_min_queue.unwrap_or(queue);
        // The receiver cannot get more of this flow than it sent: a 10 ms window that caught a backlog (the
        // receiving thread descheduled, then draining its socket) reads up to 2.7x a 1 Gbit/s link on the
        // emulated path, and a hold at such a "capacity" overflowed the buffer. Only probes raise the rate.
        let sent_recently = self.rate.max(self.prev_rate).max(self.rate_before);
        let delivered = self.round_max_delivery.min(sent_recently * DELIVERY_OVER_SENT_MAX);
        if self.trace {
            eprintln!(
                "rate: t={:.3}s {:?} rate={:.1}M sent={:.1}M delivered={:.1}M queue={:.2}ms min_queue={:.2}ms \
                 min_ratio={:.2} lost={} srtt={:.2}ms",
                now.0 as f64 / 1e9,
                self.phase,
                self.rate / 1e6,
                sent_rate / 1e6,
                delivered / 1e6,
                queue as f64 / 1e6,
                min_queue as f64 / 1e6,
                self.round_min_delivery_ratio,
                self.round_lost,
                self.srtt_ns as f64 / 1e6
            );
        }
        match self.phase {
            // Growth in startup follows the delivery rate (see `on_feedback`); a round only keeps the
            // trace and the round-trip bookkeeping.
            Phase::Startup => {}
            Phase::Steady => self.steady_round(queue, min_queue, delivered, app_limited, target, round_ns),
        }
        self.start_round(now);
    }

    fn steady_round(
        &mut self,
        queue: u64,
        min_queue: u64,
        delivered: f64,
        app_limited: bool,
        target: u64,
        round_ns: u64,
    ) {
        let srtt = self.srtt_ns.max(1) as f64;
        if self.policy == Policy::Fair {
            // Reno's share: one datagram per RTT per RTT, halved at most once per round on loss. With random
            // loss alone it stays small and the delay-driven share carries the rate; against a TCP flow that
            // keeps the queue full, it is what keeps this flow's share.
            if self.round_lost > 0 {
                self.aimd *= 0.5;
            } else {
                let reno = AIMD_STEP_BYTES * 8.0 * 1e9 / srtt;
                let step = reno.max(self.rate * AIMD_SCALABLE_STEP);
                self.aimd += step * (round_ns as f64 / srtt).min(1.0);
            }
        }
        // While a queue stands, what gets through is the bottleneck's rate (or this flow's share of it). It
        // must have stood all round: a queue that emptied midway (after a drain; the filtered reading lags)
        // let through less, and taking that as the capacity would strand the rate far below it.
        if min_queue > target / 2 && delivered > 0.0 {
            self.capacity = Some(delivered);
        }
        let capacity = self.capacity.unwrap_or(0.0);
        let mut queue = queue;
        if !self.drained {
            if let Some(from) = self.drained_from.take() {
                if queue * 5 >= from * 4 {
                    self.ineffective_drains += 1;
                } else {
                    self.ineffective_drains = 0;
                }
            }
        }
        if self.ineffective_drains >= INEFFECTIVE_DRAINS {
            // Two drains in a row left the delay where it was: it is not a queue this flow controls. Take up
            // to HOST_DELAY_ALLOWANCE of it as the hosts' own, so that latency in the end hosts does not
            // spiral the rate down; a queue built by other flows beyond that still pushes back.
            let absorb = queue.saturating_sub(target / 2).min(HOST_DELAY_ALLOWANCE_NS.saturating_sub(self.offset_ns));
            self.offset_ns += absorb;
            queue -= absorb;
            self.ineffective_drains = 0;
        }
        // Probe when the queue emptied at some point of the round. `low`'s target (1 ms) is within the
        // scheduling noise of loaded end hosts, so half of it is rarely seen even on an idle path: it probes
        // below the target itself.
        let probe_below = match self.policy {
            Policy::Low => target,
            _ => target / 2,
        };
        let mut total;
        // A shallow buffer overflows before the queue reaches the target: the receive rate falling short of
        // what was sent while a queue shows says the same.
        let overflowing = self.round_min_delivery_ratio < STEADY_DELIVERY_RATIO && queue > target / 4;
        if self.drained {
            // The drain's effect shows only now: hold at the bottleneck's rate for this round.
            self.drained = false;
            total = capacity.max(self.floor);
        } else if queue > target || overflowing {
            // Drain the excess over about one round, below what is actually getting through.
            let excess = queue.saturating_sub(target) as f64;
            let mut cut = (excess / round_ns as f64).clamp(0.02, 0.5);
            if self.policy == Policy::Low {
                cut = (cut * 2.0).clamp(0.25, 0.5);
            }
            let base = if delivered > 0.0 { self.rate.min(delivered) } else { self.rate };
            total = base * (1.0 - cut);
            self.drained = true;
            self.drained_from = Some(queue);
            self.velocity = START_VELOCITY;
        } else if min_queue < probe_below && !app_limited {
            // Back to the bottleneck's rate after a drain, then probe above it, faster each round the queue
            // stays empty.
            total = self.rate.max(capacity) * (1.0 + self.velocity);
            self.velocity = (self.velocity * 2.0).min(MAX_VELOCITY);
        } else {
            total = self.rate.max(capacity);
            self.velocity = START_VELOCITY;
        }
        if self.policy == Policy::Fair {
            // The loss-driven share is a floor under the total: the delay-driven share shrinks to zero first.
            self.aimd = self.aimd.min(self.ceiling);
            total = total.max(self.aimd);
        }
        self.set_rate(total);
    }

    fn set_rate(&mut self, rate: f64) {
        self.rate = rate.clamp(self.floor, self.ceiling);
        self.max_rate = self.max_rate.max(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print() {
        for p in [Policy::Fixed, Policy::Fair, Policy::Low] {
            assert_eq!(p.name().parse::<Policy>(), Ok(p));
        }
        assert!("fast".parse::<Policy>().unwrap_err().contains("fixed, fair or low"));
    }

    #[test]
    fn wrapping_delays_compare_across_the_wrap() {
        assert!(owd_less(u32::MAX - 5, 3));
        assert!(!owd_less(3, u32::MAX - 5));
        let mut b = BaseDelay::new(Time::ZERO);
        b.add(Time::ZERO, u32::MAX - 10);
        b.add(Time::ZERO, 20);
        assert_eq!(b.get(), Some(u32::MAX - 10));
        // The old minimum ages out after the whole history has passed.
        for i in 1..=BASE_BUCKETS as u64 {
            b.add(Time(i * BASE_BUCKET_NS), 500);
        }
        assert_eq!(b.get(), Some(500));
    }

    fn feed(c: &mut RateController, now: Time, owd_us: u32, recv_bps: f64, lost: u64) {
        let sig =
            FeedbackSignal { owd_us: Some(owd_us), recv_rate: (recv_bps / 8.0) as u64, lost, srtt_ns: 50_000_000 };
        c.on_feedback(now, sig);
    }

    /// A fixed rate ignores everything; fair starts low, grows with what the path delivers (2.5x per RTT,
    /// never faster), despite random loss, and stops at a queue.
    #[test]
    fn fixed_holds_and_fair_grows_with_delivery_until_a_queue_shows() {
        let mut f = RateController::new(Policy::Fixed, 2_000_000_000, 0, 1000, 1000, Time::ZERO);
        feed(&mut f, Time(1_000_000_000), 90_000, 1e6, 1000);
        assert_eq!(f.rate_bps(), 2_000_000_000);

        let mut c = RateController::new(Policy::Fair, 10_000_000_000, 0, 1000, 1000, Time::ZERO);
        assert_eq!(c.rate_bps(), START_RATE_BPS as u64);
        // Feedback every 2 ms; the receiver sees what was sent one RTT (50 ms, 25 steps) before, all of it,
        // no queue, random loss.
        let mut sent = Vec::new();
        let mut now = Time::ZERO;
        for step in 0..150 {
            now = now.plus_ns(2_000_000);
            let rate = c.rate_bps() as f64;
            c.on_send(now, (rate / 8.0 / 500.0) as usize);
            sent.push(rate);
            let seen = if step >= 25 { sent[step - 25] } else { 0.0 };
            feed(&mut c, now, 10_000, seen, 1);
            if step >= 50 {
                assert!(
                    c.rate_bps() as f64 <= sent[step - 25] * 2.5 * 1.03,
                    "step {step}: {} grew faster than 2.5x what was sent one RTT before",
                    c.rate_bps()
                );
            }
        }
        assert!(c.in_startup());
        // 300 ms: 100 -> 250 -> 625 -> 1560 Mbit/s, a step each time a whole RTT-old send window (matched
        // within 15 ms) was at the previous rate and its delivery came back: every 75 ms here.
        assert!(c.rate_bps() >= 1_500_000_000, "after 6 RTTs: {}", c.rate_bps());
        // A queue of 5 ms ends startup at once, 10% below the best receive rate of the last two rounds (the
        // queue the last step built then drains).
        let best = c.round_max_delivery.max(c.prev_round_max_delivery).max(600e6);
        now = now.plus_ns(2_000_000);
        for _ in 0..CURRENT_FILTER {
            feed(&mut c, now, 15_000, 600e6, 0);
        }
        assert!(!c.in_startup());
        assert_eq!(c.rate_bps(), (best.min(c.max_rate) * 0.9) as u64);
    }

    #[test]
    fn delivery_above_what_was_sent_is_noise_not_capacity() {
        let mut c = RateController::new(Policy::Fair, 100_000_000_000, 0, 1000, 1000, Time::ZERO);
        let mut now = Time::ZERO;
        let step = |c: &mut RateController, now: &mut Time, owd: u32, recv: Option<f64>| {
            *now = now.plus_ns(2_000_000);
            let rate = c.rate_bps() as f64;
            c.on_send(*now, (rate * 0.002 / 8.0) as usize);
            feed(c, *now, owd, recv.unwrap_or(rate), 0);
        };
        while now.0 < 300_000_000 {
            step(&mut c, &mut now, 1000, None);
        }
        let before = c.rate_bps() as f64;
        // A standing 5 ms queue, and receive windows that read 5 Gbit/s (a backlog drained at once).
        while now.0 < 1_000_000_000 {
            step(&mut c, &mut now, 6000, Some(5e9));
            assert!(
                c.rate_bps() as f64 <= before * 1.03,
                "rate {} after {before}: held at a noisy reading",
                c.rate_bps()
            );
        }
    }

    #[test]
    fn low_probes_when_the_queue_stays_within_its_target() {
        let mut c = RateController::new(Policy::Low, 100_000_000_000, 0, 1000, 1000, Time::ZERO);
        let mut now = Time::ZERO;
        feed(&mut c, now, 1000, 100e6, 0);
        let mut exit_rate = None;
        while now.0 < 1_000_000_000 {
            now = now.plus_ns(2_000_000);
            let rate = c.rate_bps() as f64;
            c.on_send(now, (rate * 0.002 / 8.0) as usize);
            // 0.8 ms over the base: host noise, within low's 1 ms target but above half of it.
            feed(&mut c, now, 1800, rate, 0);
            if !c.in_startup() && exit_rate.is_none() {
                exit_rate = Some(c.rate_bps());
            }
        }
        let exit_rate = exit_rate.expect("startup ends at a queue above half the target");
        assert!(c.rate_bps() > 2 * exit_rate, "low held {} from {exit_rate} on an uncontended path", c.rate_bps());
    }

    #[test]
    fn the_floor_and_ceiling_hold() {
        let mut c = RateController::new(Policy::Low, 300_000_000, 50_000_000, 1000, 1000, Time::ZERO);
        let mut now = Time::ZERO;
        for _ in 0..2000 {
            now = now.plus_ns(2_000_000);
            c.on_send(now, 100_000);
            feed(&mut c, now, if now.0 < 1_000_000_000 { 1000 } else { 1000 + 80_000 }, 1e6, 0);
            assert!((50_000_000..=300_000_000).contains(&c.rate_bps()), "rate {}", c.rate_bps());
        }
        assert_eq!(c.rate_bps(), 50_000_000, "a standing 80 ms queue pushes low down to its floor");
        assert_eq!(c.max_rate_bps(), 300_000_000);
    }

    /// A receiver that stamps arrivals late (a backlog of its own) adds delay to the one-way samples but not
    /// to the round trip, whose echo hold time removes it: 15 ms over the base on a 1 ms path is no queue of
    /// this path, and must not make `fair` drain an idle link (the spiral seen at 0 ms RTT, issue 6).
    #[test]
    fn one_way_delay_beyond_the_round_trip_is_not_a_queue() {
        let mut c = RateController::new(Policy::Fair, 950_000_000, 0, 1000, 1000, Time::ZERO);
        let mut now = Time::ZERO;
        let step = |c: &mut RateController, now: &mut Time, owd: u32| {
            *now = now.plus_ns(2_000_000);
            let rate = c.rate_bps() as f64;
            c.on_send(*now, (rate * 0.002 / 8.0) as usize);
            // Random loss on the path (1 block per feedback, about 1%) keeps the loss-driven share small.
            let sig = FeedbackSignal { owd_us: Some(owd), recv_rate: (rate / 8.0) as u64, lost: 1, srtt_ns: 1_000_000 };
            c.on_feedback(*now, sig);
        };
        while now.0 < 1_000_000_000 {
            step(&mut c, &mut now, 1000);
        }
        let before = c.rate_bps();
        assert!(before > 800_000_000, "reached the ceiling first: {before}");
        while now.0 < 4_000_000_000 {
            step(&mut c, &mut now, 16_000);
        }
        assert!(c.rate_bps() > before * 8 / 10, "fair drained to {} from {before} on late stamps", c.rate_bps());
        // A real queue (it shows in the round trip too) still counts.
        let mut q = RateController::new(Policy::Fair, 950_000_000, 0, 1000, 1000, Time::ZERO);
        let mut now = Time::ZERO;
        while now.0 < 1_000_000_000 {
            step(&mut q, &mut now, 1000);
        }
        let before = q.rate_bps();
        for _ in 0..1500 {
            now = now.plus_ns(2_000_000);
            let rate = q.rate_bps() as f64;
            q.on_send(now, (rate * 0.002 / 8.0) as usize);
            let sig =
                FeedbackSignal { owd_us: Some(16_000), recv_rate: (rate / 8.0) as u64, lost: 1, srtt_ns: 16_000_000 };
            q.on_feedback(now, sig);
        }
        assert!(q.rate_bps() < before * 8 / 10, "a 15 ms queue seen in the RTT too must slow fair: {}", q.rate_bps());
    }
}
