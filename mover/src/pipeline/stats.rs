//! Per-stage counters and latency distributions, reported when a transfer ends (`push --stats`, `--json`
//! `stages`, `serve --stats`).
//!
//! A stage's wall time splits into *busy*, *stalled on input* (nothing to do: parked or blocked waiting for
//! its input ring, socket or disk) and *stalled on output* (its output ring or buffer pool is full). The stage
//! with the least stall time is the bottleneck. Latencies go into [`hdrhistogram`] histograms allocated at
//! start-up; recording never allocates.

use crate::json::JsonObject;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Largest latency a histogram holds (longer values are recorded as this).
const MAX_LATENCY_NS: u64 = 100_000_000_000;

/// One latency distribution of a stage, in nanoseconds.
pub struct Latency {
    name: &'static str,
    hist: Histogram<u64>,
}

impl Latency {
    /// An empty distribution (allocates its buckets now).
    pub fn new(name: &'static str) -> Latency {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("histogram bounds are valid");
        Latency { name, hist }
    }

    /// Records one value.
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
    }

    /// Quantiles of what was recorded.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        LatencySummary {
            name: self.name,
            count: h.len(),
            mean_ns: if h.is_empty() { 0.0 } else { h.mean() },
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

/// Quantiles of one [`Latency`].
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySummary {
    /// What was measured (`pacer_gap_error`, `block_read`, `block_write`, `nak_to_retransmit`).
    pub name: &'static str,
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest value.
    pub max_ns: u64,
}

/// A stage's running counters; lives on the stage's thread and becomes a [`StageReport`] at the end.
pub struct StageMeter {
    name: &'static str,
    core: Option<usize>,
    started: Instant,
    items: u64,
    bytes: u64,
    stalled_input: Duration,
    stalled_output: Duration,
    latencies: Vec<Latency>,
}

impl StageMeter {
    /// A meter for stage `name` pinned to `core` (None: not pinned), started now.
    pub fn new(name: &'static str, core: Option<usize>) -> StageMeter {
        StageMeter {
            name,
            core,
            started: Instant::now(),
            items: 0,
            bytes: 0,
            stalled_input: Duration::ZERO,
            stalled_output: Duration::ZERO,
            latencies: Vec::new(),
        }
    }

    /// Adds a latency distribution (at start-up); returns its index for [`StageMeter::record`].
    pub fn add_latency(&mut self, name: &'static str) -> usize {
        self.latencies.push(Latency::new(name));
        self.latencies.len() - 1
    }

    /// Records a latency into distribution `which`.
    pub fn record(&mut self, which: usize, ns: u64) {
        self.latencies[which].record(ns);
    }

    /// Counts handled items and their bytes.
    pub fn add(&mut self, items: u64, bytes: u64) {
        self.items += items;
        self.bytes += bytes;
    }

    /// Parks the thread for at most `timeout` because its input is empty (a producer unparks it).
    pub fn park_for_input(&mut self, timeout: Duration) {
        let t = Instant::now();
        std::thread::park_timeout(timeout);
        self.stalled_input += t.elapsed();
    }

    /// Parks the thread for at most `timeout` because its output is full (the consumer unparks it).
    pub fn park_for_output(&mut self, timeout: Duration) {
        let t = Instant::now();
        std::thread::park_timeout(timeout);
        self.stalled_output += t.elapsed();
    }

    /// Counts time spent blocked on input elsewhere (a socket wait, a disk completion).
    pub fn stalled_on_input(&mut self, d: Duration) {
        self.stalled_input += d;
    }

    /// Counts time spent blocked on output elsewhere (a full socket buffer, a busy writer).
    pub fn stalled_on_output(&mut self, d: Duration) {
        self.stalled_output += d;
    }

    /// The final report.
    pub fn finish(self) -> StageReport {
        let wall = self.started.elapsed();
        let stalled = self.stalled_input + self.stalled_output;
        StageReport {
            name: self.name,
            core: self.core,
            seconds: wall.as_secs_f64(),
            items: self.items,
            bytes: self.bytes,
            busy_seconds: wall.saturating_sub(stalled).as_secs_f64(),
            stalled_input_seconds: self.stalled_input.as_secs_f64(),
            stalled_output_seconds: self.stalled_output.as_secs_f64(),
            latencies: self.latencies.iter().map(Latency::summary).collect(),
        }
    }
}

/// What one stage did over a transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct StageReport {
    /// Stage name (as in the topology table).
    pub name: &'static str,
    /// The core it was pinned to.
    pub core: Option<usize>,
    /// Wall time the stage ran.
    pub seconds: f64,
    /// Items handled (blocks, datagrams, batches: see the stage).
    pub items: u64,
    /// Bytes handled.
    pub bytes: u64,
    /// Wall time not stalled.
    pub busy_seconds: f64,
    /// Time waiting for input.
    pub stalled_input_seconds: f64,
    /// Time waiting for room downstream.
    pub stalled_output_seconds: f64,
    /// Latency distributions.
    pub latencies: Vec<LatencySummary>,
}

impl StageReport {
    /// The `--json` object for this stage.
    pub fn to_json(&self) -> JsonObject {
        let mut lat = JsonObject::new();
        for l in &self.latencies {
            lat = lat.obj(
                l.name,
                JsonObject::new()
                    .u64("count", l.count)
                    .f64("mean_ns", l.mean_ns)
                    .u64("p50_ns", l.p50_ns)
                    .u64("p99_ns", l.p99_ns)
                    .u64("p999_ns", l.p999_ns)
                    .u64("max_ns", l.max_ns),
            );
        }
        let mut j = JsonObject::new().str("name", self.name);
        j = match self.core {
            Some(c) => j.u64("core", c as u64),
            None => j.raw("core", "null"),
        };
        j.u64("items", self.items)
            .u64("bytes", self.bytes)
            .f64("seconds", self.seconds)
            .f64("busy_seconds", self.busy_seconds)
            .f64("stalled_input_seconds", self.stalled_input_seconds)
            .f64("stalled_output_seconds", self.stalled_output_seconds)
            .obj("latency", lat)
    }
}

/// The per-stage table `--stats` prints, with the busiest stage marked as the bottleneck.
pub fn render_table(title: &str, stages: &[StageReport]) -> String {
    use std::fmt::Write;
    let pct = |x: f64, of: f64| if of > 0.0 { 100.0 * x / of } else { 0.0 };
    let busiest = stages
        .iter()
        .enumerate()
        .max_by(|a, b| pct(a.1.busy_seconds, a.1.seconds).total_cmp(&pct(b.1.busy_seconds, b.1.seconds)))
        .map(|(i, _)| i);
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "  {:<12} {:>4} {:>12} {:>12} {:>7} {:>10} {:>11}",
        "stage", "core", "items", "MiB", "busy%", "in-stall%", "out-stall%"
    );
    for (i, s) in stages.iter().enumerate() {
        let core = s.core.map_or("-".to_string(), |c| c.to_string());
        let mark = if Some(i) == busiest { "  <- busiest" } else { "" };
        let _ = writeln!(
            out,
            "  {:<12} {:>4} {:>12} {:>12.1} {:>7.1} {:>10.1} {:>11.1}{mark}",
            s.name,
            core,
            s.items,
            s.bytes as f64 / (1 << 20) as f64,
            pct(s.busy_seconds, s.seconds),
            pct(s.stalled_input_seconds, s.seconds),
            pct(s.stalled_output_seconds, s.seconds),
        );
    }
    for s in stages {
        for l in s.latencies.iter().filter(|l| l.count > 0) {
            let _ = writeln!(
                out,
                "  {:<12} {:<18} n={:<9} p50 {:>9.1} us  p99 {:>9.1} us  p99.9 {:>9.1} us  max {:>9.1} us",
                s.name,
                l.name,
                l.count,
                l.p50_ns as f64 / 1e3,
                l.p99_ns as f64 / 1e3,
                l.p999_ns as f64 / 1e3,
                l.max_ns as f64 / 1e3
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_and_meter_accounting() {
        let mut l = Latency::new("x");
        for v in 1..=1000u64 {
            l.record(v * 1000);
        }
        l.record(0); // clamped to 1 ns, not a panic
        l.record(u64::MAX); // clamped to the ceiling
        let s = l.summary();
        assert_eq!(s.count, 1002);
        assert!((499_000..=501_000).contains(&s.p50_ns), "{s:?}");
        assert!((985_000..=995_000).contains(&s.p99_ns), "{s:?}");
        let mut m = StageMeter::new("pacer", Some(1));
        let gap = m.add_latency("pacer_gap_error");
        m.record(gap, 5_000);
        m.add(3, 4500);
        m.stalled_on_input(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        let r = m.finish();
        assert_eq!((r.items, r.bytes, r.core), (3, 4500, Some(1)));
        assert!(r.stalled_input_seconds >= 0.001 && r.busy_seconds + r.stalled_input_seconds <= r.seconds + 1e-9);
        let table = render_table("sender stages", std::slice::from_ref(&r));
        assert!(table.contains("pacer") && table.contains("pacer_gap_error") && table.contains("busiest"), "{table}");
        let json = r.to_json().finish();
        assert!(json.contains("\"name\":\"pacer\"") && json.contains("\"pacer_gap_error\":{\"count\":1"), "{json}");
    }
}
