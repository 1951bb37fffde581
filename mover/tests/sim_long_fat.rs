//! Issue 18, items 2-3 and the clean path's retransmits, in the deterministic simulator: `fair` with default
//! settings on long-fat lossy paths (start-up within a few round trips, a short tail), next to a loss-driven
//! TCP-like flow, and in front of a receiver slower than the path. Each test prints the time to reach the
//! bottleneck and the tail, so a miss says where the time went.

use mover::proto::policy::Policy;
use mover::proto::Config;
use mover::sim::harness::rates_between;
use mover::sim::{
    run_synth_checked, run_transfer, AimdConfig, CheckingStore, Competitor, SimConfig, SimReport, SynthSource,
};
use std::time::Duration;

const MIB: u64 = 1 << 20;
const DATAGRAM: usize = 1472;
/// File bytes per datagram byte at MTU 1500 (1412 of 1472).
const PAYLOAD_SHARE: f64 = 1412.0 / 1472.0;

fn run(sim: &SimConfig, size: u64) -> SimReport {
    let mut cfg = Config::new(7, DATAGRAM, 10_000_000_000);
    cfg.policy = Policy::Fair;
    let report = run_synth_checked(sim, cfg, size);
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    report
}

/// Where the time of a transfer over a `rate` link went: (first time a 100 ms window delivered 90% of the
/// achievable goodput, tail = time after the last such window).
fn startup_and_tail(r: &SimReport, achievable: f64) -> (Duration, Duration) {
    let mut first = None;
    let mut last = Duration::ZERO;
    for w in r.samples.windows(2) {
        let (m, _) = rates_between(&w[0], &w[1]);
        if m >= 0.9 * achievable {
            first.get_or_insert(w[0].at);
            last = w[1].at;
        }
    }
    (first.unwrap_or(r.transfer_time), r.transfer_time.saturating_sub(last))
}

/// 1 GiB over `rate` x `rtt` x `loss` with a one-BDP drop-tail buffer (the WAN emulator's default): the
/// goodput as a share of what the path can carry in file bytes (link x payload share x (1 - loss)).
fn long_fat(rate: u64, rtt_ms: u64, loss: f64, seed: u64) -> (f64, Duration, Duration, SimReport) {
    let rtt = Duration::from_millis(rtt_ms);
    let mut sim = SimConfig::path(rate, rtt, loss);
    sim.seed = seed;
    sim.forward.queue_bytes = rate / 8 * rtt_ms.max(10) / 1000;
    sim.sample_every = Some(Duration::from_millis(100));
    let r = run(&sim, 1024 * MIB);
    let achievable = rate as f64 * PAYLOAD_SHARE * (1.0 - loss);
    let share = r.goodput_bps / achievable;
    let (startup, tail) = startup_and_tail(&r, achievable);
    let retx = r.sender.packets_retransmitted as f64 / r.sender.packets_sent as f64;
    eprintln!(
        "{} Mbit/s x {rtt_ms} ms x {:.0}%: goodput {:.1} Mbit/s = {:.1}% of achievable, {:.1}% of the link; \
         at 90% after {:.2} s ({:.1} RTTs), tail {:.2} s ({:.1} RTTs), {:.2}% retransmitted, {} queue drops, \
         transfer {:.2} s",
        rate / 1_000_000,
        loss * 100.0,
        r.goodput_bps / 1e6,
        share * 100.0,
        r.goodput_bps / rate as f64 * 100.0,
        startup.as_secs_f64(),
        startup.as_secs_f64() / rtt.as_secs_f64(),
        tail.as_secs_f64(),
        tail.as_secs_f64() / rtt.as_secs_f64(),
        retx * 100.0,
        r.forward.queue_drops,
        r.transfer_time.as_secs_f64(),
    );
    // At the rate within a few round trips of the first data (the doubling per 1.25 RTT + 15 ms round it
    // replaced took 5-6 RTTs at 1 Gbit/s), and a tail of at most a few NAK round trips.
    assert!(startup <= rtt * 9 / 2, "reached 90% after {startup:?}");
    assert!(tail <= rtt * 3, "tail {tail:?}");
    (share, startup, tail, r)
}

#[test]
fn fair_500m_100ms_1pct() {
    let (share, _startup, _tail, _) = long_fat(500_000_000, 100, 0.01, 1);
    assert!(share >= 0.95, "goodput {:.1}% of achievable", share * 100.0);
}

#[test]
fn fair_500m_200ms_3pct() {
    let (share, _startup, _tail, _) = long_fat(500_000_000, 200, 0.03, 2);
    assert!(share >= 0.90, "goodput {:.1}% of achievable", share * 100.0);
}

#[test]
fn fair_1g_100ms_1pct() {
    let (share, _startup, _tail, _) = long_fat(1_000_000_000, 100, 0.01, 3);
    assert!(share >= 0.95, "goodput {:.1}% of achievable", share * 100.0);
}

#[test]
fn fair_1g_200ms_3pct() {
    let (share, _startup, _tail, _) = long_fat(1_000_000_000, 200, 0.03, 4);
    assert!(share >= 0.90, "goodput {:.1}% of achievable", share * 100.0);
}

/// Issue 18 item 3 in the simulator: `fair` joins an established loss-based flow (`cc`) on 1 Gbit/s x
/// 40 ms with a one-BDP drop-tail buffer (the emulator's default), as benches/run-wan.sh's fairness runs do
/// (TCP alone for 4 s, then both). Returns (fair's rate, TCP's rate) from 2 s after fair joined to the end,
/// and the competitive episodes fair entered.
fn fair_joins_tcp(cc: Competitor, seed: u64, together: Duration) -> (f64, f64, u64) {
    let lead = Duration::from_secs(4);
    let mut sim = SimConfig::path(1_000_000_000, Duration::from_millis(40), 0.0);
    sim.seed = seed;
    sim.forward.queue_bytes = 1_000_000_000 / 8 * 40 / 1000;
    sim.competitor = Some(AimdConfig { start: Duration::ZERO, stop: None, cc });
    sim.start_delay = lead;
    sim.sample_every = Some(Duration::from_millis(100));
    sim.stop_at = Some(lead + together);
    let mut cfg = Config::new(7, DATAGRAM, 10_000_000_000);
    cfg.policy = Policy::Fair;
    cfg.trace_rate = std::env::var_os("MOVER_RATE_TRACE").is_some_and(|v| v == "1");
    let size = 8192 * MIB;
    let mut src = SynthSource { seed: sim.seed };
    let (r, _) = run_transfer(&sim, cfg, vec![size], &mut src, CheckingStore::new(sim.seed, vec![size]));
    for w in r.samples.chunks(10).collect::<Vec<_>>().windows(2) {
        let (m, c) = rates_between(&w[0][0], &w[1][0]);
        eprintln!(
            "  t={:5.1}s fair {:6.1} Mbit/s, {cc:?} {:6.1} Mbit/s, queue {:5.1} ms",
            w[0][0].at.as_secs_f64(),
            m / 1e6,
            c / 1e6,
            w[0][0].queue.as_secs_f64() * 1e3
        );
    }
    let a = r.samples.iter().find(|s| s.at >= lead + Duration::from_secs(2)).expect("sample after joining");
    let b = r.samples.last().expect("samples");
    let (m, c) = rates_between(a, b);
    eprintln!(
        "1 Gbit/s x 40 ms, fair joins {cc:?}: fair {:.1} Mbit/s, TCP {:.1} Mbit/s, ratio {:.2}, TCP decreases {}, \
         competitive episodes {}",
        m / 1e6,
        c / 1e6,
        m / c,
        r.competitor_halvings,
        r.rate_competitions
    );
    (m, c, r.rate_competitions)
}

/// Next to CUBIC (Linux's default TCP), `fair` takes between 0.5x and 2x of its rate, within the 10 s the
/// emulator's fairness run gives it, and the link stays used. (The path has no random loss, so the run
/// is the same for every seed.)
#[test]
fn fair_shares_with_cubic_at_1g_40ms() {
    let (m, c, episodes) = fair_joins_tcp(Competitor::Cubic, 1, Duration::from_secs(10));
    assert!(episodes >= 1, "fair never saw the standing queue as another flow's");
    assert!(m / c >= 0.5 && m / c <= 2.0, "fair {:.1} vs cubic {:.1} Mbit/s", m / 1e6, c / 1e6);
    assert!(m + c > 0.85e9 * PAYLOAD_SHARE, "the link is used: {:.1} Mbit/s", (m + c) / 1e6);
}

/// Over a longer run the share holds (no slow drift to either side as CUBIC's epochs come and go).
#[test]
fn fair_keeps_its_share_with_cubic_over_30s() {
    let (m, c, _) = fair_joins_tcp(Competitor::Cubic, 3, Duration::from_secs(30));
    assert!(m / c >= 0.5 && m / c <= 2.0, "fair {:.1} vs cubic {:.1} Mbit/s", m / 1e6, c / 1e6);
}

/// Next to the Reno model `fair` is not starved either. Only the lower bound is asserted: Reno's queue
/// after its slow start (about 6 ms) is within the hosts' allowance, so `fair` yields for ~6 s before it
/// competes, and once it has, Reno's one segment per round trip never regrows its share (the last 15 s
/// ran at about 3x in `fair`'s favour on 2026-12-03: decision 0028).
#[test]
fn fair_is_not_starved_by_reno_at_1g_40ms() {
    let (m, c, _) = fair_joins_tcp(Competitor::Reno, 1, Duration::from_secs(30));
    assert!(m / c >= 0.5, "fair {:.1} vs reno {:.1} Mbit/s", m / 1e6, c / 1e6);
}
