//! The pacer: a token bucket that is a pure function of `now` (generic cell rate algorithm).
//!
//! It keeps a theoretical arrival time (TAT): the time at which the link would be free had every packet
//! been sent exactly at the rate. A packet may go when `TAT <= now + burst`, so after an idle period at most
//! `burst` worth of packets leave back to back; this lets a driver that wakes every 50-100 us (the timer
//! granularity measured on these machines) release a batch per wake-up and still average the rate.

use crate::time::Time;

/// Paces datagrams to a rate in bits per second.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate_bps: u64,
    burst_ns: u64,
    /// Theoretical arrival time in picoseconds, so per-packet rounding never drifts the average rate.
    tat_ps: u128,
}

impl Pacer {
    /// A pacer at `rate_bps`, allowing bursts of `burst_ns` worth of the rate.
    pub fn new(rate_bps: u64, burst_ns: u64) -> Pacer {
        assert!(rate_bps > 0);
        Pacer { rate_bps, burst_ns, tat_ps: 0 }
    }

    /// The rate in bits per second.
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Changes the rate from now on.
    pub fn set_rate_bps(&mut self, rate_bps: u64) {
        assert!(rate_bps > 0);
        self.rate_bps = rate_bps;
    }

    /// The earliest time a datagram may be sent: `now` if it may go now.
    pub fn ready_at(&self, now: Time) -> Time {
        let allowed_ps = (now.0 as u128 + self.burst_ns as u128) * 1000;
        if self.tat_ps <= allowed_ps {
            now
        } else {
            Time(((self.tat_ps / 1000) as u64).saturating_sub(self.burst_ns))
        }
    }

    /// The earliest time the last of a run of datagrams may go when the run is sent back to back and the
    /// datagrams before it hold `bytes_before_last` bytes: `now` if the whole run may go now. A driver that
    /// waits for this time releases the run in one send instead of a few datagrams per wake-up. A run longer
    /// than the burst can never go whole: for it, the time the bucket is full.
    pub fn ready_after(&self, now: Time, bytes_before_last: u64) -> Time {
        let cost_ps = bytes_before_last as u128 * 8 * 1_000_000_000_000 / self.rate_bps as u128;
        let cost_ps = cost_ps.min(self.burst_ns as u128 * 1000);
        // Sending the run moves TAT from max(TAT, now) on; the last datagram may go once that is within a
        // burst of the clock.
        let tat_ps = self.tat_ps.max(now.0 as u128 * 1000) + cost_ps;
        let allowed_ps = (now.0 as u128 + self.burst_ns as u128) * 1000;
        if tat_ps <= allowed_ps {
            now
        } else {
            Time(((tat_ps / 1000) as u64).saturating_sub(self.burst_ns))
        }
    }

    /// When the next datagram leaves at exactly the rate: `now` if the bucket has been idle, else the
    /// bucket's theoretical arrival time. A driver that releases datagrams at the rate downstream (the
    /// pipeline's pacer stage) sends it at about this time even though it is built up to a burst earlier.
    pub fn departure(&self, now: Time) -> Time {
        Time(((self.tat_ps / 1000) as u64).max(now.0))
    }

    /// Whether a datagram may be sent at `now`.
    pub fn can_send(&self, now: Time) -> bool {
        self.ready_at(now) <= now
    }

    /// Accounts for a datagram of `bytes` sent at `now`.
    pub fn on_send(&mut self, now: Time, bytes: usize) {
        let cost_ps = bytes as u128 * 8 * 1_000_000_000_000 / self.rate_bps as u128;
        self.tat_ps = self.tat_ps.max(now.0 as u128 * 1000) + cost_ps;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sending whenever allowed for one virtual second gives the rate to within one burst.
    #[test]
    fn holds_the_rate_and_bounds_bursts() {
        let mut p = Pacer::new(1_000_000_000, 100_000);
        let mut now = Time(0);
        let mut sent_bytes = 0u64;
        let mut max_burst = 0;
        while now.0 < 1_000_000_000 {
            let mut burst = 0;
            while p.can_send(now) {
                p.on_send(now, 1500);
                sent_bytes += 1500;
                burst += 1;
            }
            max_burst = max_burst.max(burst);
            now = p.ready_at(now).max(now.plus_ns(50_000)); // a driver waking every 50 us
        }
        let rate = sent_bytes as f64 * 8.0;
        assert!((rate - 1e9).abs() / 1e9 < 0.002, "rate {rate}");
        // 100 us of burst at 1 Gbit/s is 12.5 kB: at most 9 datagrams of 1500 B back to back.
        assert!(max_burst <= 10, "burst {max_burst}");
    }

    /// Waiting until `ready_after` the bytes of a run lets exactly that run (and no more) go back to back,
    /// whether the bucket was empty, part full or full.
    #[test]
    fn ready_after_a_run_lets_the_whole_run_go() {
        const LEN: usize = 1500;
        for (rate, burst_ns, run) in
            [(1_000_000_000u64, 400_000u64, 32usize), (10_000_000_000, 400_000, 32), (1_000_000_000, 100_000, 5)]
        {
            for sent_before in [0usize, 1, 3, 40, 400] {
                let mut p = Pacer::new(rate, burst_ns);
                let start = Time(1_000_000_000);
                for _ in 0..sent_before {
                    p.on_send(start, LEN);
                }
                assert_eq!(p.ready_after(start, 0), p.ready_at(start), "a run of one is one datagram");
                let at = p.ready_after(start, ((run - 1) * LEN) as u64);
                assert!(at >= start);
                let mut q = p.clone();
                let mut n = 0;
                while q.can_send(at) && n < 10 * run {
                    q.on_send(at, LEN);
                    n += 1;
                }
                assert!(n >= run, "rate {rate} burst {burst_ns} after {sent_before}: {n} of a run of {run} at {at:?}");
                if at > start {
                    // Not a moment earlier: one nanosecond before, the run could not go whole.
                    let mut q = p.clone();
                    let before = Time(at.0 - 1);
                    let mut m = 0;
                    while q.can_send(before) && m < run {
                        q.on_send(before, LEN);
                        m += 1;
                    }
                    assert!(m < run, "the run could go at {before:?}, before {at:?}");
                }
            }
        }
        // A run longer than the burst (20 us at 1 Gbit/s is 2500 B): wait until the bucket is full, no longer.
        let mut p = Pacer::new(1_000_000_000, 20_000);
        p.on_send(Time(0), 1500);
        assert_eq!(p.ready_after(Time(0), 30_000), Time(12_000));
        assert_eq!(p.ready_after(Time(50_000), 30_000), Time(50_000));
    }

    #[test]
    fn departure_is_the_paced_time_not_the_build_time() {
        let mut p = Pacer::new(1_000_000_000, 2_000_000); // 2 ms burst, as in the packetizer stage
        let now = Time(1_000_000_000);
        assert_eq!(p.departure(now), now, "an idle bucket sends now");
        // A burst built at one instant leaves 12 us apart at 1 Gbit/s (1500-byte datagrams).
        let mut departures = vec![];
        while p.can_send(now) {
            departures.push(p.departure(now));
            p.on_send(now, 1500);
        }
        assert!(departures.len() > 100, "a 2 ms burst holds {} datagrams", departures.len());
        for (i, d) in departures.iter().enumerate() {
            assert_eq!(d.0, now.0 + i as u64 * 12_000);
        }
    }
}
