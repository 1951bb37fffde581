//! Round-trip time estimation (RFC 6298's smoothing; PROTOCOL.md §4.3).

use std::time::Duration;

/// Smoothed RTT, variation and minimum, from samples in nanoseconds.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt_ns: u64,
    rttvar_ns: u64,
    min_ns: u64,
    samples: u64,
}

impl RttEstimator {
    /// An estimator that reports `initial` until the first sample.
    pub fn new(initial: Duration) -> RttEstimator {
        let i = initial.as_nanos() as u64;
        RttEstimator { srtt_ns: i, rttvar_ns: i / 2, min_ns: u64::MAX, samples: 0 }
    }

    /// Adds a sample.
    pub fn update(&mut self, sample_ns: u64) {
        self.min_ns = self.min_ns.min(sample_ns);
        if self.samples == 0 {
            self.srtt_ns = sample_ns;
            self.rttvar_ns = sample_ns / 2;
        } else {
            let diff = self.srtt_ns.abs_diff(sample_ns);
            self.rttvar_ns = (3 * self.rttvar_ns + diff) / 4;
            self.srtt_ns = (7 * self.srtt_ns + sample_ns) / 8;
        }
        self.samples += 1;
    }

    /// Smoothed RTT in nanoseconds.
    pub fn srtt_ns(&self) -> u64 {
        self.srtt_ns
    }

    /// RTT variation in nanoseconds.
    pub fn rttvar_ns(&self) -> u64 {
        self.rttvar_ns
    }

    /// Smallest sample seen, or the smoothed RTT before any sample.
    pub fn min_ns(&self) -> u64 {
        if self.samples == 0 {
            self.srtt_ns
        } else {
            self.min_ns
        }
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_tracks_minimum() {
        let mut r = RttEstimator::new(Duration::from_millis(100));
        assert_eq!(r.srtt_ns(), 100_000_000);
        for _ in 0..50 {
            r.update(20_000_000);
        }
        r.update(19_000_000);
        assert!(r.srtt_ns().abs_diff(20_000_000) < 200_000);
        assert_eq!(r.min_ns(), 19_000_000);
    }
}
