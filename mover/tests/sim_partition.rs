//! Partitions in the simulator: a path that drops everything for a while, mid-transfer. The sender pauses
//! (only probes go out), resumes when feedback returns without resending what arrived, the rate policies
//! come back to the path's rate, and a partition longer than the timeout fails as a silent path
//! (`FailureKind::Silent`, which the session layer turns into the retryable exit code).

use mover::proto::policy::Policy;
use mover::proto::{Config, FailureKind};
use mover::sim::{run_transfer, CheckingStore, SimConfig, SimReport, SynthSource};
use std::time::Duration;

const RATE_BPS: u64 = 100_000_000;
const RTT: Duration = Duration::from_millis(20);
/// 40 MB: about 3.3 s at the rate, so a partition at 1 s falls mid-transfer.
const SIZES: [u64; 4] = [10_000_000; 4];

fn run(policy: Policy, partition: Duration, timeout: Duration) -> SimReport {
    let mut sim = SimConfig::path(RATE_BPS, RTT, 0.0);
    let cut = (Duration::from_secs(1), partition);
    sim.forward.partitions = vec![cut];
    sim.reverse.partitions = vec![cut];
    sim.sample_every = Some(Duration::from_millis(100));
    let mut cfg = Config::new(7, 1472, RATE_BPS);
    cfg.initial_rtt = RTT;
    cfg.policy = policy;
    cfg.peer_timeout = timeout;
    let sizes = SIZES.to_vec();
    let mut src = SynthSource { seed: sim.seed };
    let (report, store) = run_transfer(&sim, cfg, sizes.clone(), &mut src, CheckingStore::new(sim.seed, sizes));
    if report.outcome.is_ok() {
        assert!(store.all_identical() && store.finished, "store: {store:?}");
    }
    report
}

/// Payload sent beyond the data itself, in bytes.
fn resent_bytes(r: &SimReport) -> u64 {
    r.sender.payload_bytes_sent - SIZES.iter().sum::<u64>()
}

#[test]
fn a_partition_pauses_the_sender_and_the_transfer_completes_without_resending_what_arrived() {
    for policy in [Policy::Fixed, Policy::Fair] {
        for secs in [5, 30] {
            let r = run(policy, Duration::from_secs(secs), Duration::from_secs(120));
            assert!(r.outcome.is_ok(), "{policy:?} {secs} s: {:?}", r.outcome);
            // What the partition dropped is what went out between the cut and the pause (a quarter second
            // at the rate, 3.1 MB at 100 Mbit/s) plus the probes; what is sent again is that, each block at
            // most twice (a re-NAK can cross a retransmission in flight, as after any burst of loss), and
            // nothing that had arrived: the data itself is 40 MB.
            let dropped = r.forward.partitioned * 1412;
            let resent = resent_bytes(&r);
            eprintln!(
                "{policy:?} {secs} s: resent {resent} B, dropped {dropped} B, {} pauses, {} probes, {:.2} s",
                r.sender.silent_pauses,
                r.sender.silent_probes,
                r.session_time.as_secs_f64()
            );
            assert!(dropped <= RATE_BPS / 8 / 2 + secs * 10 * 1412, "{policy:?} {secs} s: the sender did not pause");
            assert!(
                resent <= 2 * dropped + (1 << 20),
                "{policy:?} {secs} s: resent {resent} B for {dropped} B dropped"
            );
            assert_eq!(r.sender.silent_pauses, 1, "{policy:?} {secs} s: one pause expected");
            // Probes at most one per 100 ms of the partition.
            assert!(r.sender.silent_probes <= secs * 10 + 2, "{policy:?}: {} probes", r.sender.silent_probes);
            // The transfer resumes promptly: the time lost is the partition plus well under a second.
            let clean = SIZES.iter().sum::<u64>() as f64 * 8.0 / RATE_BPS as f64;
            let lost = r.session_time.as_secs_f64() - clean - secs as f64;
            assert!(lost < 1.0, "{policy:?} {secs} s: {lost:.2} s lost beyond the partition");
        }
    }
}

#[test]
fn fair_returns_to_the_path_rate_after_a_partition() {
    let r = run(Policy::Fair, Duration::from_secs(5), Duration::from_secs(120));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    let before = r.samples.iter().filter(|s| s.at <= Duration::from_secs(1)).map(|s| s.rate_bps).max().unwrap();
    // Within half a second of the path's return (at 6 s), fair paces at least at 70% of what it did before.
    let after = r
        .samples
        .iter()
        .filter(|s| s.at > Duration::from_secs(6) && s.at <= Duration::from_millis(6500))
        .map(|s| s.rate_bps)
        .max()
        .unwrap();
    assert!(after * 10 >= before * 7, "fair after the partition: {after} bit/s, before: {before} bit/s");
}

#[test]
fn a_partition_longer_than_the_timeout_fails_as_a_silent_path() {
    let r = run(Policy::Fair, Duration::from_secs(60), Duration::from_secs(5));
    let e = r.outcome.expect_err("the transfer cannot finish through a 60 s partition with a 5 s timeout");
    assert!(e.contains("5 s"), "{e}");
    // It gave up at the timeout, not at the end of the partition.
    assert!(r.session_time < Duration::from_secs(7), "gave up after {:?}", r.session_time);
}

#[test]
fn the_failure_kind_of_a_silent_path_is_silent() {
    use mover::proto::Sender;
    use mover::time::Time;
    let mut cfg = Config::new(7, 1472, RATE_BPS);
    cfg.peer_timeout = Duration::from_secs(5);
    let mut s = Sender::new(cfg, vec![1_000_000], Time::ZERO);
    s.handle_timeout(Time::ZERO.plus(Duration::from_secs(5)));
    assert_eq!(s.failure_kind(), FailureKind::Silent);
    assert!(s.path_silent(Time::ZERO.plus(Duration::from_secs(1))) || s.is_finished());
}
