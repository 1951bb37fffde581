//! One direction of a simulated path: a drop-tail bottleneck queue, then propagation with delay, jitter,
//! loss (random and bursty), reordering, duplication, corruption and partitions.

use super::rng::SimRng;
use crate::time::Time;
use std::time::Duration;

/// Gilbert-Elliott burst loss: a two-state chain evaluated per packet.
#[derive(Clone, Debug)]
pub struct BurstLoss {
    /// Probability of entering the bad state from the good one, per packet.
    pub enter_bad: f64,
    /// Probability of leaving the bad state, per packet (mean burst = 1 / leave_bad packets).
    pub leave_bad: f64,
    /// Loss probability while bad.
    pub loss_in_bad: f64,
}

/// A link direction's parameters.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Bottleneck rate in bits per second of datagram bytes (0: infinite).
    pub rate_bps: u64,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra delay uniformly in `0..jitter`, order preserved.
    pub jitter: Duration,
    /// Independent random loss probability per packet.
    pub loss: f64,
    /// Optional burst loss on top of random loss.
    pub burst: Option<BurstLoss>,
    /// Probability a packet is held back by `reorder_delay` (and so overtaken).
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_delay: Duration,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Probability a packet has one bit flipped.
    pub corrupt: f64,
    /// Drop-tail queue capacity in bytes in front of the bottleneck.
    pub queue_bytes: u64,
    /// Changes of the bottleneck rate: from each `(time, rate_bps)` on, the link runs at that rate (a path
    /// rerouted or shared by traffic the simulation does not model).
    pub rate_schedule: Vec<(Duration, u64)>,
    /// Partitions: from each `(start, length)` on, for `length`, every packet offered is dropped (a cable
    /// pulled, a firewall dropping everything). The harness holds the control channel's messages until the
    /// partition ends, as TCP would.
    pub partitions: Vec<(Duration, Duration)>,
    /// The path's MTU as the largest datagram it carries: from each `(time, bytes)` on, a datagram longer
    /// than `bytes` is dropped (a hop with a smaller MTU and DF set, its ICMP never seen). Empty: no limit.
    /// A later entry with a smaller size is a route change into a black hole.
    pub max_datagram_schedule: Vec<(Duration, usize)>,
    /// `(period, pause)`: the bottleneck serves nothing during the last `pause` of every `period`, and its
    /// queue waits. This is a receiving host rather than a wire: a receive thread descheduled by its CPU
    /// share (a cgroup quota, a busy core, a VM's stolen time) while its socket buffer, the queue, fills.
    /// It serves at `rate_bps` otherwise, so it takes `rate_bps x (1 - pause / period)` on average, in
    /// bursts that a short rate window reads as up to `rate_bps`.
    pub service_pauses: Option<(Duration, Duration)>,
}

impl LinkConfig {
    /// A clean link: `rate_bps`, `delay` one way, a queue of 2 ms at the rate (at least 256 KiB), no impairment.
    pub fn clean(rate_bps: u64, delay: Duration) -> LinkConfig {
        LinkConfig {
            rate_bps,
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            duplicate: 0.0,
            corrupt: 0.0,
            queue_bytes: (rate_bps / 8 / 500).max(256 << 10),
            rate_schedule: Vec::new(),
            partitions: Vec::new(),
            max_datagram_schedule: Vec::new(),
            service_pauses: None,
        }
    }
}

/// What a link did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered.
    pub offered: u64,
    /// Packets delivered (duplicates counted once per copy).
    pub delivered: u64,
    /// Dropped by random or burst loss.
    pub lost: u64,
    /// Dropped by a full queue.
    pub queue_drops: u64,
    /// Delivered with a flipped bit.
    pub corrupted: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Held back and overtaken.
    pub reordered: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Dropped for being longer than the path's MTU allowed at the time.
    pub too_big: u64,
}

/// One direction of a path.
#[derive(Clone, Debug)]
pub struct Link {
    cfg: LinkConfig,
    rng: SimRng,
    busy_until: Time,
    last_arrival: Time,
    in_bad_state: bool,
    /// What happened so far.
    pub stats: LinkStats,
}

impl Link {
    /// A link with its own random stream.
    pub fn new(cfg: LinkConfig, seed: u64) -> Link {
        Link {
            cfg,
            rng: SimRng::new(seed),
            busy_until: Time::ZERO,
            last_arrival: Time::ZERO,
            in_bad_state: false,
            stats: LinkStats::default(),
        }
    }

    /// The one-way propagation delay.
    pub fn delay(&self) -> Duration {
        self.cfg.delay
    }

    /// The bottleneck rate at `now`.
    pub fn rate_at(&self, now: Time) -> u64 {
        let at = Duration::from_nanos(now.0);
        self.cfg.rate_schedule.iter().rev().find(|(t, _)| *t <= at).map_or(self.cfg.rate_bps, |&(_, r)| r)
    }

    /// When the partition `now` falls in ends, if it falls in one.
    pub fn partitioned_until(&self, now: Time) -> Option<Time> {
        let at = Duration::from_nanos(now.0);
        let p = self.cfg.partitions.iter().find(|&&(start, len)| start <= at && at < start + len)?;
        Some(Time::ZERO.plus(p.0 + p.1))
    }

    /// The largest datagram the link carries at `now` (`usize::MAX`: no limit).
    pub fn max_datagram_at(&self, now: Time) -> usize {
        let at = Duration::from_nanos(now.0);
        self.cfg.max_datagram_schedule.iter().rev().find(|(t, _)| *t <= at).map_or(usize::MAX, |&(_, m)| m)
    }

    /// Whether the link is cut at `t` by one of its partitions.
    pub fn partitioned_at(&self, t: Time) -> bool {
        let at = Duration::from_nanos(t.0);
        self.cfg.partitions.iter().any(|&(start, len)| at >= start && at < start + len)
    }

    /// How long a packet offered at `now` would wait in the queue.
    pub fn queue_delay(&self, now: Time) -> Duration {
        Duration::from_nanos(self.busy_until.since_ns(now))
    }

    /// The end of the service pause `t` falls in, if it falls in one (see [`LinkConfig::service_pauses`]).
    fn paused_until(&self, t: Time) -> Option<Time> {
        let (period, pause) = self.cfg.service_pauses?;
        let (period, pause) = (period.as_nanos() as u64, pause.as_nanos() as u64);
        let phase = t.0 % period;
        (phase >= period - pause).then(|| Time(t.0 - phase + period))
    }

    /// Nanoseconds of service pauses between `a` and `b` (the queue's wait that is no backlog of bytes).
    fn paused_ns_between(&self, a: Time, b: Time) -> u64 {
        let Some((period, pause)) = self.cfg.service_pauses else { return 0 };
        let (period, pause) = (period.as_nanos() as u64, pause.as_nanos() as u64);
        // Pauses in [0, t): whole periods, plus the part of the current one past its serving time.
        let upto = |t: u64| (t / period) * pause + (t % period).saturating_sub(period - pause);
        upto(b.0).saturating_sub(upto(a.0))
    }

    /// The queue and the loss processes: when a packet of `len` bytes offered at `now` leaves the
    /// bottleneck, or `None` if it is dropped.
    fn pass(&mut self, now: Time, len: u64) -> Option<Time> {
        self.stats.offered += 1;
        if self.partitioned_until(now).is_some() {
            self.stats.partitioned += 1;
            return None;
        }
        let mut depart = now;
        let rate = self.rate_at(now);
        if rate > 0 {
            let mut start = self.busy_until.max(now);
            if let Some(resume) = self.paused_until(start) {
                start = resume;
            }
            let serving_ns = start.since_ns(now) - self.paused_ns_between(now, start);
            let backlog_bytes = (serving_ns as u128 * rate as u128 / 8_000_000_000) as u64;
            if backlog_bytes + len > self.cfg.queue_bytes {
                self.stats.queue_drops += 1;
                return None;
            }
            let tx_ns = (len as u128 * 8_000_000_000 / rate as u128) as u64;
            self.busy_until = start.plus_ns(tx_ns);
            depart = self.busy_until;
        }
        if self.partitioned_at(depart) {
            self.stats.partitioned += 1;
            return None;
        }
        if let Some(b) = &self.cfg.burst {
            self.in_bad_state =
                if self.in_bad_state { !self.rng.chance(b.leave_bad) } else { self.rng.chance(b.enter_bad) };
            if self.in_bad_state && self.rng.chance(b.loss_in_bad) {
                self.stats.lost += 1;
                return None;
            }
        }
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return None;
        }
        Some(depart)
    }

    /// Offers a packet of another flow (a competing TCP model) that shares the queue and the loss: returns
    /// its arrival time at the far end, or `None` if it was dropped. No jitter, reordering or corruption.
    pub fn carry(&mut self, now: Time, len: u64) -> Option<Time> {
        let depart = self.pass(now, len)?;
        self.stats.delivered += 1;
        Some(depart.plus(self.cfg.delay))
    }

    /// Offers `packet` at `now`; calls `deliver(arrival_time, packet)` for each copy that arrives.
    pub fn send(&mut self, now: Time, mut packet: Vec<u8>, mut deliver: impl FnMut(Time, Vec<u8>)) {
        let len = packet.len() as u64;
        if packet.len() > self.max_datagram_at(now) {
            self.stats.offered += 1;
            self.stats.too_big += 1;
            return;
        }
        let Some(depart) = self.pass(now, len) else { return };
        if self.rng.chance(self.cfg.corrupt) && !packet.is_empty() {
            let bit = self.rng.below(len * 8);
            packet[(bit / 8) as usize] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }
        let jitter_ns = self.cfg.jitter.as_nanos() as u64;
        let jitter = if jitter_ns > 0 { self.rng.below(jitter_ns) } else { 0 };
        let mut arrival = depart.plus(self.cfg.delay).plus_ns(jitter).max(self.last_arrival);
        if self.rng.chance(self.cfg.reorder) {
            arrival = arrival.plus(self.cfg.reorder_delay);
            self.stats.reordered += 1;
        } else {
            self.last_arrival = arrival;
        }
        if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            self.stats.delivered += 1;
            deliver(arrival.plus_ns(1_000), packet.clone());
        }
        self.stats.delivered += 1;
        deliver(arrival, packet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_delay_and_loss_are_what_was_asked() {
        let mut cfg = LinkConfig::clean(1_000_000_000, Duration::from_millis(10));
        cfg.loss = 0.05;
        cfg.queue_bytes = u64::MAX;
        let mut link = Link::new(cfg, 1);
        let mut arrivals = Vec::new();
        for _ in 0..100_000 {
            link.send(Time::ZERO, vec![0; 1250], |t, _| arrivals.push(t));
        }
        let loss = link.stats.lost as f64 / 100_000.0;
        assert!((loss - 0.05).abs() < 0.005, "loss {loss}");
        // 100k x 1250 B at 1 Gbit/s = 1 s of serialisation, plus 10 ms.
        let last = arrivals.iter().max().unwrap().0;
        assert!((last as f64 / 1e9 - 1.01).abs() < 0.001, "last arrival {last}");
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]), "FIFO without reordering");
    }

    #[test]
    fn a_partition_drops_everything_offered_during_it_and_nothing_else() {
        let mut cfg = LinkConfig::clean(0, Duration::from_millis(1));
        cfg.partitions = vec![(Duration::from_secs(1), Duration::from_secs(2))];
        let mut link = Link::new(cfg, 1);
        let mut got = 0;
        for ms in (0..4000).step_by(100) {
            link.send(Time::ZERO.plus(Duration::from_millis(ms)), vec![0; 100], |_, _| got += 1);
        }
        assert_eq!((got, link.stats.partitioned), (20, 20));
        assert_eq!(
            link.partitioned_until(Time::ZERO.plus(Duration::from_millis(2500))),
            Some(Time::ZERO.plus(Duration::from_secs(3)))
        );
        assert_eq!(link.partitioned_until(Time::ZERO.plus(Duration::from_secs(3))), None);
    }

    #[test]
    fn queue_drops_when_full() {
        let mut cfg = LinkConfig::clean(1_000_000, Duration::ZERO);
        cfg.queue_bytes = 10_000;
        let mut link = Link::new(cfg, 1);
        for _ in 0..100 {
            link.send(Time::ZERO, vec![0; 1000], |_, _| {});
        }
        assert_eq!(link.stats.delivered, 10);
        assert_eq!(link.stats.queue_drops, 90);
    }

    #[test]
    fn a_partition_drops_everything_inside_it_and_nothing_outside() {
        let mut cfg = LinkConfig::clean(0, Duration::from_millis(5));
        cfg.partitions = vec![(Duration::from_secs(1), Duration::from_secs(2))];
        let mut link = Link::new(cfg, 1);
        let mut arrived = Vec::new();
        for ms in (0..5000).step_by(10) {
            link.send(Time(ms * 1_000_000), vec![0; 100], |t, _| arrived.push(t.0 / 1_000_000 - 5));
        }
        assert_eq!(link.stats.partitioned, 200);
        assert!(arrived.iter().all(|&ms| !(1000..3000).contains(&ms)) && arrived.len() == 300);
    }

    #[test]
    fn service_pauses_hold_the_queue_and_keep_the_average_rate() {
        // 1 Gbit/s serving, paused the last 4 ms of every 10 ms: 0.6 Gbit/s on average, nothing departs
        // inside a pause, and the queue limit counts bytes, not the pause's wait.
        let mut cfg = LinkConfig::clean(1_000_000_000, Duration::ZERO);
        cfg.queue_bytes = 1_000_000;
        cfg.service_pauses = Some((Duration::from_millis(10), Duration::from_millis(4)));
        let mut link = Link::new(cfg, 1);
        let mut departures = Vec::new();
        // Offered at 1 Gbit/s for 1 s: 1250 B every 10 us.
        for k in 0..100_000u64 {
            link.send(Time(k * 10_000), vec![0; 1250], |t, _| departures.push(t.0));
        }
        assert!(departures.iter().all(|&t| t % 10_000_000 <= 6_000_000), "a departure inside a pause");
        let last = *departures.last().unwrap() as f64 / 1e9;
        let rate = departures.len() as f64 * 1250.0 * 8.0 / last;
        assert!((rate / 0.6e9 - 1.0).abs() < 0.02, "average {rate} bit/s");
        // 40% more offered than served: the queue overflowed, but not before holding a pause's worth.
        assert!(link.stats.queue_drops > 30_000, "{:?}", link.stats);
    }

    #[test]
    fn the_rate_follows_its_schedule() {
        let mut cfg = LinkConfig::clean(1_000_000_000, Duration::ZERO);
        cfg.queue_bytes = u64::MAX;
        cfg.rate_schedule = vec![(Duration::from_secs(1), 500_000_000)];
        let mut link = Link::new(cfg, 1);
        let mut last = Time::ZERO;
        // 1250 B at 1 Gbit/s is 10 us before t = 1 s, 20 us after.
        link.send(Time::ZERO, vec![0; 1250], |t, _| last = t);
        assert_eq!(last, Time(10_000));
        link.send(Time(1_000_000_000), vec![0; 1250], |t, _| last = t);
        assert_eq!(last, Time(1_000_020_000));
        assert_eq!(link.carry(Time(1_000_000_000), 1250), Some(Time(1_000_040_000)));
    }
}
