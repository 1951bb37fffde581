//! Per-direction counters and their JSON form (written by hand: one flat object per direction, no dependency).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// What happened to the frames of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Frames read from the input interface.
    pub frames_in: u64,
    /// Their bytes (Ethernet header and payload, no FCS).
    pub bytes_in: u64,
    /// Frames written to the output interface.
    pub frames_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Dropped by independent loss.
    pub lost_random: u64,
    /// Dropped by Gilbert-Elliott loss.
    pub lost_burst: u64,
    /// Dropped because the queue in front of the bottleneck was full.
    pub queue_drops: u64,
    /// Held back by the reorder delay.
    pub reordered: u64,
    /// Dropped because every frame buffer was in use (the pool was sized too small for the traffic).
    pub pool_drops: u64,
    /// Frames longer than the interface MTU + 14 + 4 (offloads left on); they are forwarded if the kernel
    /// accepts them.
    pub oversize: u64,
    /// Frames longer than even a spill slot: dropped, their tail is gone.
    pub truncated: u64,
    /// Frames the kernel dropped before the forwarder read them (its socket receive buffer was full).
    pub socket_drops: u64,
    /// Frames the kernel refused to transmit (EMSGSIZE for an oversize frame, ENETDOWN, ...): dropped.
    pub send_errors: u64,
    /// Frames still waiting in the forwarder when it stopped.
    pub in_flight_at_exit: u64,
    /// How late frames left relative to their computed release, in microseconds (median, 99th percentile,
    /// maximum; early departures count as 0): the forwarder's own timing error. The model itself is exact.
    pub late_us_p50: u64,
    /// See `late_us_p50`.
    pub late_us_p99: u64,
    /// See `late_us_p50`.
    pub late_us_max: u64,
    /// Frames that left more than 1 ms after their release.
    pub late_over_1ms: u64,
}

impl DirectionStats {
    /// The counters as one JSON object, the contract's fields first.
    pub fn to_json(&self) -> String {
        let fields = [
            ("frames_in", self.frames_in),
            ("frames_out", self.frames_out),
            ("bytes_out", self.bytes_out),
            ("lost_random", self.lost_random),
            ("lost_burst", self.lost_burst),
            ("queue_drops", self.queue_drops),
            ("reordered", self.reordered),
            ("bytes_in", self.bytes_in),
            ("pool_drops", self.pool_drops),
            ("oversize", self.oversize),
            ("truncated", self.truncated),
            ("socket_drops", self.socket_drops),
            ("send_errors", self.send_errors),
            ("in_flight_at_exit", self.in_flight_at_exit),
            ("late_us_p50", self.late_us_p50),
            ("late_us_p99", self.late_us_p99),
            ("late_us_max", self.late_us_max),
            ("late_over_1ms", self.late_over_1ms),
        ];
        let mut out = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{value}");
        }
        out.push('}');
        out
    }
}

/// Lateness of departures: 10 us buckets up to 10 ms, then one overflow bucket, and the exact maximum. Fixed
/// size, one increment per frame.
#[derive(Clone, Debug)]
pub struct LatenessHistogram {
    buckets: Box<[u64; LATENESS_BUCKETS + 1]>,
    max_ns: u64,
    over_1ms: u64,
}

const LATENESS_BUCKET_NS: u64 = 10_000;
const LATENESS_BUCKETS: usize = 1_000;

impl Default for LatenessHistogram {
    fn default() -> Self {
        LatenessHistogram { buckets: Box::new([0; LATENESS_BUCKETS + 1]), max_ns: 0, over_1ms: 0 }
    }
}

impl LatenessHistogram {
    /// Records one frame that left `late_ns` after its release (0 when it left early or on time).
    pub fn record(&mut self, late_ns: u64) {
        let bucket = ((late_ns / LATENESS_BUCKET_NS) as usize).min(LATENESS_BUCKETS);
        self.buckets[bucket] += 1;
        self.max_ns = self.max_ns.max(late_ns);
        if late_ns > 1_000_000 {
            self.over_1ms += 1;
        }
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1), in microseconds; the maximum for the overflow
    /// bucket; 0 when nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                if i == LATENESS_BUCKETS {
                    return self.max_ns / 1_000;
                }
                return ((i as u64 + 1) * LATENESS_BUCKET_NS / 1_000).min(self.max_ns.div_ceil(1_000));
            }
        }
        self.max_ns / 1_000
    }

    /// Copies the summary into `stats`.
    pub fn summarize_into(&self, stats: &mut DirectionStats) {
        stats.late_us_p50 = self.quantile_us(0.5);
        stats.late_us_p99 = self.quantile_us(0.99);
        stats.late_us_max = self.max_ns / 1_000;
        stats.late_over_1ms = self.over_1ms;
    }
}

/// The whole stats file: `{"forward":{..},"reverse":{..},"elapsed_s":..}`.
pub fn to_json(forward: &DirectionStats, reverse: &DirectionStats, elapsed_s: f64) -> String {
    format!("{{\"forward\":{},\"reverse\":{},\"elapsed_s\":{elapsed_s:.3}}}\n", forward.to_json(), reverse.to_json())
}

/// Writes the stats file through a temporary name and a rename, so a reader never sees half of it.
pub fn write_json(path: &Path, json: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let f =
            DirectionStats { frames_in: 10, frames_out: 8, bytes_out: 8 * 1514, lost_random: 2, ..Default::default() };
        let json = to_json(&f, &DirectionStats::default(), 1.5);
        assert!(json.starts_with(
            "{\"forward\":{\"frames_in\":10,\"frames_out\":8,\"bytes_out\":12112,\"lost_random\":2,\"lost_burst\":0,\
             \"queue_drops\":0,\"reordered\":0,"
        ));
        assert!(json.contains("},\"reverse\":{\"frames_in\":0,"));
        assert!(json.ends_with(",\"elapsed_s\":1.500}\n"));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }

    #[test]
    fn lateness_quantiles() {
        let mut h = LatenessHistogram::default();
        assert_eq!(h.quantile_us(0.5), 0);
        for _ in 0..98 {
            h.record(3_000);
        }
        h.record(250_000);
        h.record(20_000_000);
        // Bucket upper edges: 3 us is "at most 10 us", 250 us "at most 260 us"; the overflow bucket reports the
        // exact maximum.
        assert_eq!(h.quantile_us(0.5), 10);
        assert_eq!(h.quantile_us(0.99), 260);
        assert_eq!(h.quantile_us(1.0), 20_000);
        let mut stats = DirectionStats::default();
        h.summarize_into(&mut stats);
        assert_eq!(
            (stats.late_us_p50, stats.late_us_p99, stats.late_us_max, stats.late_over_1ms),
            (10, 260, 20_000, 1)
        );
        let mut h = LatenessHistogram::default();
        h.record(2_000);
        assert_eq!(h.quantile_us(0.5), 2, "never above the maximum");
    }
}
