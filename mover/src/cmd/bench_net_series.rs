//! The 100 ms series of `mover bench net`: the counters its send and receive loops keep, the sampler over
//! them, the percentiles of the JSON key `interval_rate_bps` and the `--plot` chart.

use super::bench_plot::{write_svg, PlotSpec};
use super::bench_sampler::{active, intervals, RatePercentiles, Reading, Sampler, INTERVAL};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes sent and received so far, stored by the sending and receiving loops after each batch and read by
/// the [`Sampler`] for the per-interval rates.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Payload bytes the sender handed to the kernel.
    pub sent_bytes: AtomicU64,
    /// Payload bytes the receiver counted.
    pub received_bytes: AtomicU64,
}

/// Which counter a role's per-interval rate follows: what the receiver counted, except on a sender alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Both ends in this process: the received rate, with the sent rate beside it.
    Loopback,
    /// `--to`: the sent rate.
    Sender,
    /// `--listen`: the received rate.
    Receiver,
}

/// The sampler of a run's counters in `role`.
pub(super) fn start_sampler(counters: &Arc<NetCounters>, role: Role) -> Result<Sampler, String> {
    let c = Arc::clone(counters);
    Sampler::start(move || {
        let sent = c.sent_bytes.load(Ordering::Relaxed);
        let received = c.received_bytes.load(Ordering::Relaxed);
        match role {
            Role::Sender => Reading { bytes: sent, ..Reading::default() },
            Role::Receiver => Reading { bytes: received, ..Reading::default() },
            Role::Loopback => Reading { bytes: received, other_bytes: sent, ..Reading::default() },
        }
    })
    .map_err(|e| format!("starting the sampler thread: {e}"))
}

/// The sampled intervals: percentiles for the JSON, and the chart into `plot` (the file and its title),
/// if `--plot` asked for one.
pub(super) fn finish_sampler(sampler: Sampler, role: Role, plot: Option<(&Path, String)>) -> Result<Sampled, String> {
    let all = intervals(&sampler.finish());
    let sampled = Sampled { rate: RatePercentiles::of(active(&all)), intervals: all.len() };
    if let Some((path, title)) = plot {
        let (rate_name, other_name) = match role {
            Role::Loopback => ("received", Some("sent")),
            Role::Sender => ("sent", None),
            Role::Receiver => ("received", None),
        };
        let spec = PlotSpec { title, rate_name, other_name, target_name: None, events_name: None };
        write_svg(path, &spec, &all)?;
        eprintln!("bench net: plot written to {}", path.display());
    }
    Ok(sampled)
}

/// What the sampler saw of a run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sampled {
    /// Percentiles of the rate of the 100 ms intervals with traffic.
    rate: RatePercentiles,
    /// Intervals sampled (the plot's points).
    intervals: usize,
}

/// `json` with the sampler's keys added at the end: `interval_ms`, `intervals`, `interval_rate_bps`.
pub(super) fn with_intervals(json: String, s: &Sampled) -> String {
    let body = json.strip_suffix('}').unwrap_or(&json);
    format!(
        "{body},\"interval_ms\":{},\"intervals\":{},\"interval_rate_bps\":{}}}",
        INTERVAL.as_millis(),
        s.intervals,
        s.rate.to_json().finish()
    )
}
