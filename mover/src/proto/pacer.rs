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
