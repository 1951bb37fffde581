//! A competing TCP flow for the simulator: Reno's window growth and halving, ACK-clocked, sharing the
//! forward link's queue with the mover session (the fairness tests of PROTOCOL.md §4.7).
//!
//! It models what matters for sharing a bottleneck and nothing else: slow start to the first loss, then one
//! segment more per round trip and half the window at most once per round trip on loss. Lost segments are
//! not resent (throughput is counted as segments delivered, which is what resending would add up to).
//! ACKs return after the reverse path's propagation delay, unqueued.

use super::link::Link;
use crate::time::Time;
use std::collections::VecDeque;
use std::time::Duration;

/// Segment size on the wire, bytes (1500-byte MTU frames).
pub const SEGMENT_BYTES: u64 = 1500;

/// When the flow runs.
#[derive(Clone, Debug)]
pub struct AimdConfig {
    /// When it starts sending.
    pub start: Duration,
    /// When it stops (for "takes it back when they stop" tests); `None`: never.
    pub stop: Option<Duration>,
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
                    self.cwnd += 1.0 / self.cwnd;
                }
            } else if now >= self.recovery_until {
                self.ssthresh = (self.cwnd / 2.0).max(2.0);
                self.cwnd = self.ssthresh;
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
