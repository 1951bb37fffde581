//! One direction of the emulated path as a pure function of time: given a frame's arrival time and size it says
//! whether the frame is dropped (and why) or when it must leave. No clock, no I/O: the forwarder passes `now`,
//! and the unit tests drive it with made-up times (ENGINEERING.md, "time is an argument").
//!
//! The model, in the order a frame meets it:
//! 1. a drop-tail queue in front of a bottleneck of `rate_bits_per_s` (frames that find the queue full are
//!    dropped; the others get the departure time of their last bit);
//! 2. loss on the wire after the bottleneck, so a lost frame still used its slot of the bottleneck, as on a real
//!    lossy link (Gilbert-Elliott bursts, then independent loss);
//! 3. propagation delay plus uniform jitter, never earlier than the previous frame of the direction, so jitter
//!    does not reorder;
//! 4. optionally, a few frames are held back an extra `reorder_delay_ns`, and later frames overtake them.

use crate::args::BurstLoss;
use crate::rng::{Probability, Rng};

/// The parameters of one direction.
#[derive(Clone, Debug)]
pub struct LinkParams {
    /// Propagation delay added to every frame.
    pub delay_ns: u64,
    /// Upper bound of the extra uniform delay per frame.
    pub jitter_ns: u64,
    /// Bottleneck rate in bits/s of frame bytes; 0 = unlimited (no queue either).
    pub rate_bits_per_s: u64,
    /// Bytes the drop-tail queue holds, counting the frame being transmitted.
    pub queue_bytes: u64,
    /// Independent loss.
    pub loss: Probability,
    /// Gilbert-Elliott loss.
    pub burst_loss: Option<BurstLoss>,
    /// Fraction of frames held back.
    pub reorder: Probability,
    /// How long a held-back frame waits beyond its normal release.
    pub reorder_delay_ns: u64,
}

/// What happens to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The queue in front of the bottleneck was full.
    QueueDrop,
    /// Lost in the Gilbert-Elliott bad state.
    LostBurst,
    /// Lost independently.
    LostRandom,
    /// Leaves at `release_ns`; `reordered` frames go to the held-back FIFO.
    Deliver {
        /// When the frame must be transmitted on the far interface.
        release_ns: u64,
        /// Held back by the reorder delay (later frames may overtake it).
        reordered: bool,
    },
}

/// The state of one direction. Times are nanoseconds on any monotonic clock, the same for every call.
#[derive(Clone, Debug)]
pub struct Link {
    params: LinkParams,
    /// The queue's capacity expressed as transmission time at the rate: the check is then one compare.
    queue_ns: u64,
    /// When the bottleneck finishes sending everything admitted so far.
    busy_until_ns: u64,
    /// The fractional nanosecond left over from the last frame's transmission time, in units of 1/rate ns, so
    /// that rates which do not divide 10^9 evenly still add up exactly over millions of frames.
    carry: u64,
    /// The latest release handed out by the normal (not held-back) path; releases never go below it.
    last_release_ns: u64,
    /// The Gilbert-Elliott state.
    in_bad_state: bool,
    rng: Rng,
}

const NS_PER_S: u64 = 1_000_000_000;

impl Link {
    /// A link at rest: empty queue, Gilbert-Elliott in the good state.
    pub fn new(params: LinkParams, rng: Rng) -> Link {
        let queue_ns = if params.rate_bits_per_s == 0 {
            0
        } else {
            (params.queue_bytes as u128 * 8 * NS_PER_S as u128 / params.rate_bits_per_s as u128) as u64
        };
        Link { params, queue_ns, busy_until_ns: 0, carry: 0, last_release_ns: 0, in_bad_state: false, rng }
    }

    /// The parameters this link runs with.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Decides the fate of a frame of `frame_bytes` that arrived at `now_ns`. Calls must come in arrival order
    /// with `now_ns` not decreasing.
    pub fn handle_frame(&mut self, now_ns: u64, frame_bytes: usize) -> Verdict {
        let departure_ns = match self.bottleneck(now_ns, frame_bytes as u64) {
            Some(t) => t,
            None => return Verdict::QueueDrop,
        };
        if let Some(burst) = self.params.burst_loss {
            // Loss is decided by the state the frame finds, then the channel moves on (the classic Gilbert
            // formulation): mean loss = loss_in_bad x enter / (enter + leave).
            let lost = self.in_bad_state && burst.loss_in_bad.sample(&mut self.rng);
            let flip = if self.in_bad_state { burst.leave } else { burst.enter };
            if flip.sample(&mut self.rng) {
                self.in_bad_state = !self.in_bad_state;
            }
            if lost {
                return Verdict::LostBurst;
            }
        }
        if !self.params.loss.is_never() && self.params.loss.sample(&mut self.rng) {
            return Verdict::LostRandom;
        }
        let jitter_ns = if self.params.jitter_ns == 0 { 0 } else { self.rng.up_to(self.params.jitter_ns) };
        let release_ns = (departure_ns + self.params.delay_ns + jitter_ns).max(self.last_release_ns);
        self.last_release_ns = release_ns;
        if !self.params.reorder.is_never() && self.params.reorder.sample(&mut self.rng) {
            // Held-back releases are normal releases plus a constant, so they too never decrease: the held-back
            // FIFO stays sorted without a heap.
            return Verdict::Deliver { release_ns: release_ns + self.params.reorder_delay_ns, reordered: true };
        }
        Verdict::Deliver { release_ns, reordered: false }
    }

    /// Admits a frame to the bottleneck and returns when its last bit leaves, or `None` when the queue is full.
    fn bottleneck(&mut self, now_ns: u64, frame_bytes: u64) -> Option<u64> {
        let rate = self.params.rate_bits_per_s;
        if rate == 0 {
            return Some(now_ns);
        }
        let (start_ns, carry) =
            if self.busy_until_ns > now_ns { (self.busy_until_ns, self.carry) } else { (now_ns, 0) };
        let numerator = frame_bytes * 8 * NS_PER_S + carry;
        let tx_ns = numerator / rate;
        let backlog_ns = start_ns - now_ns;
        // An idle bottleneck takes any frame, so a queue smaller than one frame still passes traffic.
        if backlog_ns > 0 && backlog_ns + tx_ns > self.queue_ns {
            return None;
        }
        self.carry = numerator % rate;
        self.busy_until_ns = start_ns + tx_ns;
        Some(self.busy_until_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GBIT: u64 = 1_000_000_000;

    fn params() -> LinkParams {
        LinkParams {
            delay_ns: 0,
            jitter_ns: 0,
            rate_bits_per_s: 0,
            queue_bytes: 0,
            loss: Probability::NEVER,
            burst_loss: None,
            reorder: Probability::NEVER,
            reorder_delay_ns: 1_000_000,
        }
    }

    fn link(p: LinkParams) -> Link {
        Link::new(p, Rng::new(1, 0))
    }

    fn release(v: Verdict) -> u64 {
        match v {
            Verdict::Deliver { release_ns, reordered: false } => release_ns,
            other => panic!("expected an in-order delivery, got {other:?}"),
        }
    }

    #[test]
    fn unlimited_rate_adds_only_the_delay() {
        let mut l = link(LinkParams { delay_ns: 50_000_000, ..params() });
        assert_eq!(release(l.handle_frame(1_000, 1514)), 50_001_000);
        assert_eq!(release(l.handle_frame(1_000, 1514)), 50_001_000, "no serialisation without a rate");
        assert_eq!(release(l.handle_frame(7_000, 64)), 50_007_000);
    }

    #[test]
    fn departure_is_serialised_at_the_rate() {
        // 1514 B at 1 Gbit/s = 12112 ns on the wire.
        let mut l = link(LinkParams { delay_ns: 10_000, rate_bits_per_s: GBIT, queue_bytes: 1 << 20, ..params() });
        assert_eq!(release(l.handle_frame(0, 1514)), 12_112 + 10_000);
        assert_eq!(release(l.handle_frame(0, 1514)), 2 * 12_112 + 10_000, "waits behind the first");
        assert_eq!(release(l.handle_frame(100, 64)), 2 * 12_112 + 512 + 10_000);
        // After the bottleneck drained, a frame starts when it arrives.
        assert_eq!(release(l.handle_frame(1_000_000, 1514)), 1_000_000 + 12_112 + 10_000);
    }

    #[test]
    fn fractional_transmission_times_add_up() {
        // 1514 B at 3 Gbit/s = 4037.33 ns: a million back-to-back frames must take exactly 1514e6*8/3 ns.
        let mut l = link(LinkParams { rate_bits_per_s: 3 * GBIT, queue_bytes: u64::MAX / 1_000_000_000, ..params() });
        let mut last = 0;
        for _ in 0..1_000_000 {
            last = release(l.handle_frame(0, 1514));
        }
        assert_eq!(last, 1514 * 8 * 1_000_000 / 3);
    }

    #[test]
    fn full_queue_drops_the_tail() {
        // Room for 4 full frames (counting the one on the wire).
        let mut l = link(LinkParams { rate_bits_per_s: GBIT, queue_bytes: 4 * 1514, ..params() });
        let verdicts: Vec<_> = (0..6).map(|_| l.handle_frame(0, 1514)).collect();
        assert!(verdicts[..4].iter().all(|v| matches!(v, Verdict::Deliver { .. })), "{verdicts:?}");
        assert_eq!(&verdicts[4..], &[Verdict::QueueDrop, Verdict::QueueDrop]);
        // A dropped frame costs the bottleneck nothing: once one frame has left, the next fits.
        assert_eq!(release(l.handle_frame(12_112, 1514)), 5 * 12_112);
        assert_eq!(l.handle_frame(12_112, 1514), Verdict::QueueDrop);
        // A small frame fits where a big one did not.
        let mut l = link(LinkParams { rate_bits_per_s: GBIT, queue_bytes: 3 * 1514 + 100, ..params() });
        for _ in 0..3 {
            release(l.handle_frame(0, 1514));
        }
        assert_eq!(l.handle_frame(0, 1514), Verdict::QueueDrop);
        release(l.handle_frame(0, 64));
    }

    #[test]
    fn an_idle_bottleneck_takes_a_frame_bigger_than_the_queue() {
        let mut l = link(LinkParams { rate_bits_per_s: GBIT, queue_bytes: 100, ..params() });
        assert_eq!(release(l.handle_frame(0, 1514)), 12_112);
        assert_eq!(l.handle_frame(0, 1514), Verdict::QueueDrop);
        assert_eq!(release(l.handle_frame(12_112, 1514)), 2 * 12_112);
    }

    #[test]
    fn long_run_rate_and_drops_match_an_overload() {
        // Offer 1.5 Gbit/s of 1514 B frames to a 1 Gbit/s link for one simulated second.
        let rate = GBIT;
        let mut l = link(LinkParams { rate_bits_per_s: rate, queue_bytes: 1_250_000, ..params() });
        let gap_ns = 1514 * 8 * NS_PER_S / (rate * 3 / 2);
        let (mut delivered, mut dropped, mut last_release) = (0u64, 0u64, 0);
        for i in 0..(NS_PER_S / gap_ns) {
            match l.handle_frame(i * gap_ns, 1514) {
                Verdict::Deliver { release_ns, .. } => {
                    assert!(release_ns >= last_release);
                    last_release = release_ns;
                    delivered += 1;
                }
                Verdict::QueueDrop => dropped += 1,
                other => panic!("{other:?}"),
            }
        }
        // Delivered bits over the time they took: the rate, within the queue's drain at the end.
        let bits = delivered * 1514 * 8;
        let achieved = bits as f64 / (last_release as f64 / 1e9);
        assert!((achieved / rate as f64 - 1.0).abs() < 0.001, "{achieved}");
        assert!((dropped as f64 / (delivered + dropped) as f64 - 1.0 / 3.0).abs() < 0.02);
        // The queue never held more than its capacity: the last release is at most 10 ms after the offer ended.
        assert!(last_release <= NS_PER_S + 10_000_000 + 12_112);
    }

    #[test]
    fn jitter_stays_in_bounds_and_keeps_order() {
        let mut l = link(LinkParams { delay_ns: 1_000_000, jitter_ns: 500_000, ..params() });
        let mut last = 0;
        let mut max_extra = 0;
        for i in 0..100_000u64 {
            let now = i * 1_000;
            let r = release(l.handle_frame(now, 1514));
            assert!(r >= last, "jitter reordered frame {i}");
            assert!(r >= now + 1_000_000);
            max_extra = max_extra.max(r - now - 1_000_000);
            last = r;
        }
        // Order is kept by pushing a frame behind its predecessor, so the extra can exceed the jitter only
        // through that push, never by more than one jitter span beyond the predecessor's release.
        assert!(max_extra <= 500_000 + 1_000, "{max_extra}");
        assert!(max_extra >= 400_000, "jitter never used: {max_extra}");
    }

    #[test]
    fn random_loss_frequency() {
        let mut l = link(LinkParams { loss: Probability::new(0.01).unwrap(), ..params() });
        let n = 200_000;
        let lost = (0..n).filter(|&i| l.handle_frame(i, 1514) == Verdict::LostRandom).count();
        // sigma ~ 44.5 frames; 5 sigma.
        assert!((lost as f64 - 2_000.0).abs() < 225.0, "{lost}");
    }

    #[test]
    fn gilbert_elliott_mean_and_burstiness() {
        let burst = BurstLoss {
            enter: Probability::new(0.01).unwrap(),
            leave: Probability::new(0.25).unwrap(),
            loss_in_bad: Probability::new(0.5).unwrap(),
        };
        let mut l = link(LinkParams { burst_loss: Some(burst), ..params() });
        let n = 2_000_000u64;
        let (mut lost, mut runs, mut prev_lost) = (0u64, 0u64, false);
        let mut lost_after_lost = 0u64;
        for i in 0..n {
            let is_lost = match l.handle_frame(i, 1514) {
                Verdict::LostBurst => true,
                Verdict::Deliver { .. } => false,
                other => panic!("{other:?}"),
            };
            if is_lost {
                lost += 1;
                if prev_lost {
                    lost_after_lost += 1;
                } else {
                    runs += 1;
                }
            }
            prev_lost = is_lost;
        }
        // Stationary bad share = enter/(enter+leave) = 0.01/0.26; loss = 0.5 of that = 1.923%.
        let expected = 0.5 * 0.01 / 0.26;
        let rate = lost as f64 / n as f64;
        assert!((rate / expected - 1.0).abs() < 0.05, "{rate} vs {expected}");
        // Bursty: after a loss the next frame is lost far more often than the mean (here 0.75 x 0.5 = 37.5%).
        let conditional = lost_after_lost as f64 / lost as f64;
        assert!(conditional > 0.3, "{conditional}");
        assert!(runs < lost, "losses came in bursts");
    }

    #[test]
    fn reordered_frames_are_overtaken() {
        let mut l = link(LinkParams {
            delay_ns: 1_000_000,
            reorder: Probability::new(0.1).unwrap(),
            reorder_delay_ns: 200_000,
            ..params()
        });
        let (mut held, mut last_normal, mut last_held) = (0, 0, 0);
        for i in 0..10_000u64 {
            match l.handle_frame(i * 10_000, 1514) {
                Verdict::Deliver { release_ns, reordered: true } => {
                    assert_eq!(release_ns, i * 10_000 + 1_200_000);
                    assert!(release_ns >= last_held, "the held-back FIFO stays sorted");
                    last_held = release_ns;
                    held += 1;
                }
                Verdict::Deliver { release_ns, reordered: false } => {
                    assert_eq!(release_ns, i * 10_000 + 1_000_000);
                    last_normal = release_ns;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!((800..1_200).contains(&held), "{held}");
        assert!(last_normal > 0);
    }

    #[test]
    fn the_same_seed_repeats_the_same_decisions() {
        let p = LinkParams {
            jitter_ns: 1_000,
            loss: Probability::new(0.05).unwrap(),
            reorder: Probability::new(0.05).unwrap(),
            ..params()
        };
        let run = |seed| {
            let mut l = Link::new(p.clone(), Rng::new(seed, 0));
            (0..1_000u64).map(|i| l.handle_frame(i * 1_000, 1514)).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
