//! The daemon's rate share in the deterministic simulator (PROTOCOL.md §3.7): a sender told a share never
//! sends faster, whatever its policy, and a share changed mid-transfer is followed within a few round trips.
//! The receiver core tells the share (`RateShare` over the simulated control channel) as the daemon's
//! reassembly stage does; the rates are measured from the bytes the sender put on the wire.

use mover::proto::policy::Policy;
use mover::proto::Config;
use mover::sim::{run_synth_checked, SimConfig, SimReport, SimSample};
use std::time::Duration;

const MB: u64 = 1 << 20;
/// Rates are measured over windows of this many samples (of 10 ms each): long enough that one pacer burst
/// (200 us of the rate) is under 0.5% of a window.
const WINDOW_SAMPLES: usize = 5;
/// What a window may exceed the share by: the burst the pacer lets through after an idle moment.
const BURST_SLACK: f64 = 1.01;

fn run(sim: &SimConfig, policy: Policy, rate_bps: u64, size: u64) -> SimReport {
    let mut cfg = Config::new(7, 1472, rate_bps);
    cfg.policy = policy;
    run_synth_checked(sim, cfg, size)
}

/// A 1 Gbit/s x 20 ms path without loss, sampled every 10 ms, with `shares`.
fn path(shares: Vec<(Duration, u64)>) -> SimConfig {
    let mut sim = SimConfig::path(1_000_000_000, Duration::from_millis(20), 0.0);
    sim.sample_every = Some(Duration::from_millis(10));
    sim.rate_shares = shares;
    sim
}

/// The sender's rate (datagram bits per second) over each window of samples, with the window's end.
fn sent_rates(samples: &[SimSample]) -> Vec<(Duration, f64)> {
    samples
        .windows(WINDOW_SAMPLES + 1)
        .map(|w| {
            let (a, b) = (&w[0], &w[WINDOW_SAMPLES]);
            let secs = (b.at - a.at).as_secs_f64();
            (b.at, (b.sent_bytes - a.sent_bytes) as f64 * 8.0 / secs)
        })
        .collect()
}

/// A share told before the first datagram holds every policy below it from the first window to the last,
/// with the sender's own ceiling or rate far above it; the adaptive policies use it (they grow to it on an
/// idle path) and `fixed` paces at it.
#[test]
fn a_sender_never_exceeds_its_share() {
    let share = 300_000_000u64;
    for (policy, rate) in
        [(Policy::Fixed, 1_000_000_000), (Policy::Fair, 10_000_000_000), (Policy::Low, 10_000_000_000)]
    {
        let mut sim = path(vec![(Duration::ZERO, share)]);
        sim.stop_at = Some(Duration::from_secs(3));
        let r = run(&sim, policy, rate, 4000 * MB);
        assert_eq!(r.sender.rounds, 1, "{policy}");
        let rates = sent_rates(&r.samples);
        let top = rates.iter().map(|&(_, r)| r).fold(0.0, f64::max);
        let late: Vec<f64> = rates.iter().filter(|(at, _)| at.as_secs_f64() >= 1.0).map(|&(_, r)| r).collect();
        let low = late.iter().copied().fold(f64::INFINITY, f64::min);
        eprintln!("{policy}: highest window {:.1} Mbit/s, lowest after 1 s {:.1} Mbit/s", top / 1e6, low / 1e6);
        for &(at, r) in &rates {
            assert!(r <= share as f64 * BURST_SLACK, "{policy}: {:.1} Mbit/s at {at:?}, share 300", r / 1e6);
        }
        assert!(low >= share as f64 * 0.95, "{policy} used its share after 1 s: {:.1} Mbit/s", low / 1e6);
        let last = r.samples.last().expect("samples");
        assert!(last.rate_bps <= share, "{policy} paces at {} above the share", last.rate_bps);
    }
}

/// A `fair` sender with a 600 Mbit/s share has it lowered to 150 at 2 s and raised again at 4 s: from a
/// few round trips after each change (the news takes one one-way delay over the control channel) it keeps
/// to the lower share, and it grows back into the higher one within half a second. The data arrives
/// whole.
#[test]
fn a_share_changed_mid_transfer_is_followed_within_a_few_round_trips() {
    let (high, low) = (600_000_000u64, 150_000_000u64);
    let shares = vec![(Duration::ZERO, high), (Duration::from_secs(2), low), (Duration::from_secs(4), high)];
    let r = run(&path(shares), Policy::Fair, 10_000_000_000, 400 * MB);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    let rates = sent_rates(&r.samples);
    for &(at, rate) in &rates {
        let t = at.as_secs_f64();
        // The window must start after the news arrived (10 ms one way) plus three round trips.
        let settled_low = (2.0 + 0.07 + 0.05..4.0).contains(&t);
        let bound = if settled_low { low } else { high };
        assert!(rate <= bound as f64 * BURST_SLACK, "{:.1} Mbit/s at {t:.2} s above the share", rate / 1e6);
        if (1.0..2.0).contains(&t) || (4.5..5.5).contains(&t) {
            assert!(rate >= high as f64 * 0.9, "{:.1} Mbit/s at {t:.2} s: the 600 share unused", rate / 1e6);
        }
    }
    // The pacing rate itself drops as soon as the message is in: one one-way delay after the change.
    let told = r.samples.iter().find(|s| s.at >= Duration::from_millis(2_011)).expect("a sample after 2 s");
    assert!(told.rate_bps <= low, "pacing {} one one-way delay after the share fell", told.rate_bps);
    let s = |from: f64, to: f64| {
        let a = r.samples.iter().find(|s| s.at.as_secs_f64() >= from).unwrap();
        let b = r.samples.iter().find(|s| s.at.as_secs_f64() >= to).unwrap();
        (b.sent_bytes - a.sent_bytes) as f64 * 8.0 / (b.at - a.at).as_secs_f64() / 1e6
    };
    eprintln!("Mbit/s: 1-2 s {:.1}, 2.2-4 s {:.1}, 4.5-5.5 s {:.1}", s(1.0, 2.0), s(2.2, 4.0), s(4.5, 5.5));
}
