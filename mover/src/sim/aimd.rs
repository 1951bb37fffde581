//! A competing TCP flow for the simulator: Reno's or CUBIC's window growth and decrease, ACK-clocked,
//! sharing the forward link's queue with the mover session (the fairness tests of PROTOCOL.md §4.7).
//!
//! It models what matters for sharing a bottleneck and nothing else: slow start to the first loss, then
//! (Reno) one segment more per round trip and half the window at most once per round trip on loss, or
//! (CUBIC, RFC 9438: Linux's default) a window that is a cubic function of the time since the last
//! decrease, cut to 0.7 of itself on loss. CUBIC is what a loss-based flow on a long-fat path is today:
//! Reno's one segment per round trip cannot regrow a 1 Gbit/s x 40 ms window within minutes, so a Reno
//! model says little about how `fair` fares next to real TCP there. Lost segments are not resent
//! (throughput is counted as segments delivered, which is what resending would add up to). ACKs return
//! after the reverse path's propagation delay, unqueued.

use super::link::Link;
use crate::time::Time;
use std::collections::VecDeque;
use std::time::Duration;

/// Segment size on the wire, bytes (1500-byte MTU frames).
pub const SEGMENT_BYTES: u64 = 1500;

/// CUBIC's multiplicative decrease (RFC 9438 §4.6).
const CUBIC_BETA: f64 = 0.7;
/// CUBIC's scaling constant, segments per second cubed (RFC 9438 §4.2).
const CUBIC_C: f64 = 0.4;

/// The competitor's congestion control.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Competitor {
    /// One segment per round trip, halved on loss.
    #[default]
    Reno,
    /// RFC 9438's window curve (with fast convergence and the Reno-friendly region), 0.7x on loss.
    Cubic,
}

/// When the flow runs, and how it grows.
#[derive(Clone, Debug)]
pub struct AimdConfig {
    /// When it starts sending.
    pub start: Duration,
    /// When it stops (for "takes it back when they stop" tests); `None`: never.
    pub stop: Option<Duration>,
    /// Its congestion control.
    pub cc: Competitor,
}

/// A Reno-like flow.
#[derive(Clone, Debug)]
pub struct AimdFlow {
    cfg: AimdConfig,
    cwnd: f64,
    ssthresh: f64,
    in_flight: u64,
    /// Events due: (time, true = ACK, false = loss detected).
    due: VecDeque<(Time, bool)>,
    /// Losses detected before this time belong to the window already halved.
    recovery_until: Time,
    srtt: Duration,
    /// CUBIC: the window before the last decrease, segments.
    w_max: f64,
    /// CUBIC: when the current congestion-avoidance epoch began (the last decrease).
    epoch_start: Time,
    /// CUBIC: the window at the start of the epoch (for the Reno-friendly estimate).
    epoch_cwnd: f64,
    /// Segments delivered so far.
    pub delivered: u64,
    /// Window halvings.
    pub halvings: u64,
}

impl AimdFlow {
    /// A flow that has not started.
    pub fn new(cfg: AimdConfig) -> AimdFlow {
        AimdFlow {
            cfg,
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            in_flight: 0,
            due: VecDeque::new(),
            recovery_until: Time::ZERO,
            srtt: Duration::from_millis(1),
            w_max: 0.0,
            epoch_start: Time::ZERO,
            epoch_cwnd: 0.0,
            delivered: 0,
            halvings: 0,
        }
    }

    /// Bytes delivered so far.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered * SEGMENT_BYTES
    }

    fn running(&self, now: Time) -> bool {
        let at = Duration::from_nanos(now.0);
        at >= self.cfg.start && self.cfg.stop.is_none_or(|s| at < s)
    }

    /// Handles what is due at `now` and sends what the window allows over `link` (whose reverse path
    /// takes `reverse_delay`).
    pub fn step(&mut self, now: Time, link: &mut Link, reverse_delay: Duration) {
        // `due` is kept in time order (see `insert`).
        while let Some(&(t, ack)) = self.due.front() {
            if t > now {
                break;
            }
            self.due.pop_front();
            self.in_flight -= 1;
            if ack {
                self.delivered += 1;
                if self.cwnd < self.ssthresh {
                    self.cwnd += 1.0;
                } else {
                    self.cwnd += self.avoidance_step(now);
                }
            } else if now >= self.recovery_until {
                self.ssthresh = match self.cfg.cc {
                    Competitor::Reno => (self.cwnd / 2.0).max(2.0),
                    Competitor::Cubic => {
                        // Fast convergence: a flow that lost before regaining its last peak releases some.
                        self.w_max =
                            if self.cwnd < self.w_max { self.cwnd * (1.0 + CUBIC_BETA) / 2.0 } else { self.cwnd };
                        self.epoch_start = now;
                        (self.cwnd * CUBIC_BETA).max(2.0)
                    }
                };
                self.cwnd = self.ssthresh;
                self.epoch_cwnd = self.cwnd;
                self.recovery_until = now.plus(self.srtt);
                self.halvings += 1;
            }
        }
        if !self.running(now) {
            return;
        }
        while (self.in_flight as f64) < self.cwnd.floor() {
            let queued = link.queue_delay(now);
            self.in_flight += 1;
            match link.carry(now, SEGMENT_BYTES) {
                Some(arrival) => {
                    let ack_at = arrival.plus(reverse_delay);
                    self.srtt = Duration::from_nanos(ack_at.since_ns(now));
                    self.insert((ack_at, true));
                }
                // Three duplicate ACKs: about when the next segments' ACKs come back.
                None => self.insert((now.plus(queued).plus(link.delay()).plus(reverse_delay), false)),
            }
        }
    }

    /// Window growth per ACK in congestion avoidance.
    fn avoidance_step(&self, now: Time) -> f64 {
        match self.cfg.cc {
            Competitor::Reno => 1.0 / self.cwnd,
            Competitor::Cubic => {
                let t = now.since_ns(self.epoch_start) as f64 / 1e9;
                let rtt = self.srtt.as_secs_f64().max(1e-3);
                let k = (self.w_max * (1.0 - CUBIC_BETA) / CUBIC_C).cbrt();
                // The window one RTT ahead on the curve, approached over that RTT's ACKs.
                let target = CUBIC_C * (t + rtt - k).powi(3) + self.w_max;
                // Where Reno would be by now (RFC 9438 §4.3): CUBIC never grows slower than that.
                let reno = self.epoch_cwnd + 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA) * t / rtt;
                let goal = target.max(reno).min(1.5 * self.cwnd);
                ((goal - self.cwnd) / self.cwnd).max(0.01 / self.cwnd)
            }
        }
    }

    fn insert(&mut self, ev: (Time, bool)) {
        let at = self.due.partition_point(|&(t, _)| t <= ev.0);
        self.due.insert(at, ev);
    }

    /// The next time the flow needs attention, if any.
    pub fn next_event(&self, now: Time) -> Option<Time> {
        let next = self.due.front().map(|&(t, _)| t);
        let start = Time::ZERO.plus(self.cfg.start);
        if now < start {
            return Some(next.map_or(start, |t| t.min(start)));
        }
        next
    }
}
