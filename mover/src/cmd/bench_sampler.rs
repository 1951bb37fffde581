//! Counters of a running benchmark read every [`INTERVAL`] from a thread of its own, turned into
//! per-interval rates: the points of `--plot` and the percentiles of the `--json` keys
//! `interval_goodput_bps` (`bench e2e`) and `interval_rate_bps` (`bench net`).
//!
//! The thread only loads relaxed atomics (the session's [`crate::pipeline::live::Live`], or `bench net`'s
//! own counters), so the measured path does no extra work for it.

use crate::json::JsonObject;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the counters are read: short enough to show a ramp and a stall, long enough that one
/// interval holds many packets at any rate worth measuring.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Largest rate the percentile histogram holds, bits per second (faster intervals count as this).
const MAX_RATE_BPS: u64 = 10_000_000_000_000;

/// One reading of a benchmark's cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The measured bytes so far: acknowledged (e2e) or received (net).
    pub bytes: u64,
    /// A second byte count plotted beside it: bytes put on the wire, retransmissions included (e2e), or
    /// sent (net loopback).
    pub other_bytes: u64,
    /// Events so far plotted per interval in a second panel: retransmitted packets (e2e).
    pub events: u64,
    /// A rate in force now, plotted as it is: the rate the policy chose (e2e); 0 when none.
    pub target_bps: u64,
}

/// A reading and when it was taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    /// The counters then.
    pub reading: Reading,
}

/// What happened between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Its end, seconds since the sampler started.
    pub end: f64,
    /// Its length in seconds.
    pub seconds: f64,
    /// [`Reading::bytes`] per second over it, in bits per second.
    pub bps: f64,
    /// [`Reading::other_bytes`] likewise.
    pub other_bps: f64,
    /// [`Reading::events`] that happened in it.
    pub events: u64,
    /// [`Reading::target_bps`] at its end.
    pub target_bps: u64,
}

/// A thread reading counters every [`INTERVAL`] until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts reading with `read` now (a first sample at t = 0) and every [`INTERVAL`] after.
    pub fn start(mut read: impl FnMut() -> Reading + Send + 'static) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::Builder::new().name("bench-sampler".into()).spawn(move || {
            let start = Instant::now();
            let mut samples = vec![Sample { t: 0.0, reading: read() }];
            let mut tick = 1u32;
            loop {
                // Sleep to the next tick of a fixed grid, so a late wake-up does not shift every later sample.
                let due = start + INTERVAL * tick;
                // Waking every 10 ms at most to see the stop flag keeps `finish` from waiting a whole interval.
                while !stopped.load(Ordering::Relaxed) && Instant::now() < due {
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(10)));
                }
                let reading = read();
                samples.push(Sample { t: start.elapsed().as_secs_f64(), reading });
                if stopped.load(Ordering::Relaxed) {
                    return samples;
                }
                tick += 1;
            }
        })?;
        Ok(Sampler { stop, handle })
    }

    /// Stops the thread after one last reading and returns every sample, oldest first.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        // The thread does nothing that can panic but read atomics; if it did, there is nothing to plot.
        self.handle.join().unwrap_or_default()
    }
}

/// The intervals between consecutive samples.
pub fn intervals(samples: &[Sample]) -> Vec<Interval> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let seconds = b.t - a.t;
            // Two readings at the same instant (a stop right on a tick) say nothing about a rate.
            (seconds > 0.0).then(|| Interval {
                end: b.t,
                seconds,
                bps: b.reading.bytes.saturating_sub(a.reading.bytes) as f64 * 8.0 / seconds,
                other_bps: b.reading.other_bytes.saturating_sub(a.reading.other_bytes) as f64 * 8.0 / seconds,
                events: b.reading.events.saturating_sub(a.reading.events),
                target_bps: b.reading.target_bps,
            })
        })
        .collect()
}

/// The intervals from the first to the last one in which [`Reading::bytes`] grew: the transfer itself,
/// without the set-up before it (connecting, the manifest) and the verification after it. The first and
/// last of them are usually partly idle, and count as they are.
pub fn active(intervals: &[Interval]) -> &[Interval] {
    let first = intervals.iter().position(|i| i.bps > 0.0);
    let last = intervals.iter().rposition(|i| i.bps > 0.0);
    match (first, last) {
        (Some(f), Some(l)) => &intervals[f..=l],
        _ => &[],
    }
}

/// Percentiles of a set of rates, from an HDR histogram (3 significant digits).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RatePercentiles {
    /// Rates counted.
    pub count: u64,
    /// Median, bits per second.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Lowest.
    pub min: u64,
    /// Highest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl RatePercentiles {
    /// The percentiles of the [`Interval::bps`] of `intervals` (all zero when there are none).
    pub fn of(intervals: &[Interval]) -> RatePercentiles {
        let mut h = Histogram::<u64>::new_with_max(MAX_RATE_BPS, 3).expect("histogram bounds are valid");
        for i in intervals {
            h.saturating_record((i.bps.max(0.0) as u64).min(MAX_RATE_BPS));
        }
        if h.is_empty() {
            return RatePercentiles::default();
        }
        RatePercentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
        }
    }

    /// The JSON object `{count, p50, p90, p99, min, max, mean}`.
    pub fn to_json(&self) -> JsonObject {
        JsonObject::new()
            .u64("count", self.count)
            .u64("p50", self.p50)
            .u64("p90", self.p90)
            .u64("p99", self.p99)
            .u64("min", self.min)
            .u64("max", self.max)
            .f64("mean", self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn sample(t: f64, bytes: u64, events: u64) -> Sample {
        Sample { t, reading: Reading { bytes, other_bytes: bytes * 2, events, target_bps: 7 } }
    }

    #[test]
    fn intervals_are_rates_between_samples() {
        let s =
            [sample(0.0, 0, 0), sample(0.1, 0, 0), sample(0.2, 1_000, 3), sample(0.2, 1_000, 3), sample(0.4, 2_000, 4)];
        let iv = intervals(&s);
        assert_eq!(iv.len(), 3, "a zero-length interval is dropped: {iv:?}");
        assert_eq!(iv[0].bps, 0.0);
        assert!((iv[1].bps - 80_000.0).abs() < 1e-6, "{iv:?}");
        assert!((iv[1].other_bps - 160_000.0).abs() < 1e-6, "{iv:?}");
        assert_eq!(iv[1].events, 3);
        assert!((iv[2].bps - 40_000.0).abs() < 1e-6, "{iv:?}");
        assert_eq!(iv[2].events, 1);
        assert_eq!(iv[2].target_bps, 7);
        let a = active(&iv);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].end, 0.2);
        assert!(active(&intervals(&[sample(0.0, 5, 0), sample(0.1, 5, 0)])).is_empty());
    }

    #[test]
    fn percentiles_are_ordered_and_near_the_values() {
        let iv: Vec<Interval> = (1..=100)
            .map(|k| Interval {
                end: k as f64,
                seconds: 0.1,
                bps: k as f64 * 1e7,
                other_bps: 0.0,
                events: 0,
                target_bps: 0,
            })
            .collect();
        let p = RatePercentiles::of(&iv);
        assert_eq!(p.count, 100);
        assert!(p.min <= p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max, "{p:?}");
        let near = |got: u64, want: f64| (got as f64 - want).abs() <= want * 0.002;
        assert!(near(p.p50, 50e7) && near(p.p90, 90e7) && near(p.p99, 99e7), "{p:?}");
        assert!(near(p.min, 1e7) && near(p.max, 100e7), "{p:?}");
        assert_eq!(RatePercentiles::of(&[]), RatePercentiles::default());
        let json = p.to_json().finish();
        for key in ["p50", "p90", "p99", "min", "max"] {
            assert!(json.contains(&format!("\"{key}\":")), "{json}");
        }
    }

    #[test]
    fn sampler_reads_on_a_grid_until_finished() {
        let counter = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&counter);
        let sampler =
            Sampler::start(move || Reading { bytes: c.load(Ordering::Relaxed), ..Reading::default() }).unwrap();
        for _ in 0..5 {
            counter.fetch_add(1000, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(100));
        }
        let samples = sampler.finish();
        // 0.5 s at 100 ms: the first sample, about five ticks and the last reading.
        assert!((5..=8).contains(&samples.len()), "{samples:?}");
        assert_eq!(samples[0].t, 0.0);
        assert!(samples.windows(2).all(|w| w[0].t <= w[1].t && w[0].reading.bytes <= w[1].reading.bytes));
        assert_eq!(samples.last().unwrap().reading.bytes, 5000);
    }
}
