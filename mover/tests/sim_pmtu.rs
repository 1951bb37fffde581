//! Path MTU discovery in the sans-IO core, through the simulator (PROTOCOL.md §4.8): a session sized for the
//! route's MTU is confirmed by its first data, survives random and bursty loss of those full-size packets
//! without a false verdict, and on a path that drops its datagrams (from the start, or after a route change
//! mid-transfer) fails as a black hole soon enough for the client's rerun at the base size to complete.

use mover::proto::pmtu::BASE_DATAGRAM_V4;
use mover::proto::policy::Policy;
use mover::proto::Config;
use mover::sim::{run_transfer, BurstLoss, CheckingStore, SimConfig, SimReport, SynthSource};
use std::time::Duration;

const GBIT: u64 = 1_000_000_000;
/// UDP payload at MTU 9000 over IPv4: what the route offers on a jumbo-frame link.
const JUMBO: usize = 9000 - 28;

fn config(policy: Policy, datagram: usize) -> Config {
    let mut c = Config::new(0x5eed_0018, datagram, GBIT);
    c.policy = policy;
    c.initial_rtt = Duration::from_millis(10);
    c
}

fn transfer(sim: &SimConfig, cfg: Config, sizes: &[u64]) -> (SimReport, bool) {
    // As the real receiver: no feedback until a data packet told it where the sender is.
    let sim = &SimConfig { feedback_after_first_data: true, ..sim.clone() };
    let mut src = SynthSource { seed: sim.seed };
    let (r, store) = run_transfer(sim, cfg, sizes.to_vec(), &mut src, CheckingStore::new(sim.seed, sizes.to_vec()));
    let whole = r.outcome.is_ok() && store.all_identical() && store.finished;
    (r, whole)
}

/// What the client does (`session::push`): a session at the route's size; after a black hole, one more at
/// the base size. Returns the reports of both and the datagram size that completed.
fn session(sim: &SimConfig, policy: Policy, sizes: &[u64]) -> (SimReport, Option<SimReport>, usize) {
    let (first, whole) = transfer(sim, config(policy, JUMBO), sizes);
    if whole {
        return (first, None, JUMBO);
    }
    let why = first.outcome.as_ref().expect_err("an incomplete transfer failed");
    assert!(why.contains("black hole"), "only a black hole fails a session here: {why}");
    let (rerun, whole) = transfer(sim, config(policy, BASE_DATAGRAM_V4), sizes);
    assert!(whole, "the rerun at the base size completes, verified: {:?}", rerun.outcome);
    (first, Some(rerun), BASE_DATAGRAM_V4)
}

#[test]
fn a_path_that_carries_the_route_mtu_confirms_it_and_never_falls_back() {
    let sizes = [50 << 20, 3, 9000 * 7];
    for policy in [Policy::Fixed, Policy::Fair] {
        let mut sim = SimConfig::path(GBIT, Duration::from_millis(20), 0.0);
        sim.forward.max_datagram_schedule = vec![(Duration::ZERO, JUMBO)];
        let (r, rerun, size) = session(&sim, policy, &sizes);
        assert!(rerun.is_none() && size == JUMBO, "{policy:?}: {:?}", r.outcome);
        assert!(r.sender.pmtu_confirmed, "{policy:?}");
        assert_eq!(r.forward.too_big, 0);
    }
}

#[test]
fn a_hop_below_the_route_mtu_is_found_and_the_rerun_completes_at_the_base() {
    let sizes = [20 << 20, 100_000];
    for policy in [Policy::Fixed, Policy::Fair] {
        // A middle hop at MTU 1500 whose ICMP never arrives: every full-size datagram vanishes.
        let mut sim = SimConfig::path(GBIT, Duration::from_millis(20), 0.0);
        sim.forward.max_datagram_schedule = vec![(Duration::ZERO, 1500 - 28)];
        let (first, rerun, size) = session(&sim, policy, &sizes);
        assert_eq!(size, BASE_DATAGRAM_V4, "{policy:?}");
        assert!(!first.sender.pmtu_confirmed);
        // Found within about a second (500 ms and 4 RTTs of feedback without arrivals), not at the timeout.
        assert!(first.session_time < Duration::from_millis(1500), "{policy:?}: {:?}", first.session_time);
        let rerun = rerun.expect("a rerun");
        assert_eq!(rerun.forward.too_big, 0, "the base size fits the hop");
        assert!(first.forward.too_big > 0);
    }
}

#[test]
fn lost_full_size_packets_are_loss_not_a_black_hole() {
    // Random loss of 20% and bursts (mean 10 packets, half lost): full-size packets vanish often, but the
    // receiver's count keeps growing, so the size stands and the transfer completes at it.
    let sizes = [30 << 20];
    for (seed, loss) in [(1, 0.2), (2, 0.05), (3, 0.0)] {
        let mut sim = SimConfig::path(GBIT, Duration::from_millis(40), loss);
        sim.seed = seed;
        sim.forward.burst = Some(BurstLoss { enter_bad: 0.01, leave_bad: 0.1, loss_in_bad: 0.5 });
        sim.forward.max_datagram_schedule = vec![(Duration::ZERO, JUMBO)];
        let (r, rerun, size) = session(&sim, Policy::Fair, &sizes);
        assert!(rerun.is_none() && size == JUMBO, "loss {loss}: {:?}", r.outcome);
        assert!(r.forward.lost > 0, "the loss was exercised");
    }
}

#[test]
fn a_partition_is_silence_not_a_black_hole() {
    // Both ways cut for 2 s: no feedback arrives, so the size is not blamed; the transfer pauses and resumes.
    let sizes = [30 << 20];
    let mut sim = SimConfig::path(GBIT / 10, Duration::from_millis(20), 0.0);
    sim.forward.partitions = vec![(Duration::from_millis(300), Duration::from_secs(2))];
    sim.reverse.partitions = sim.forward.partitions.clone();
    sim.forward.max_datagram_schedule = vec![(Duration::ZERO, JUMBO)];
    let (r, rerun, size) = session(&sim, Policy::Fair, &sizes);
    assert!(rerun.is_none() && size == JUMBO, "{:?}", r.outcome);
    assert!(r.forward.partitioned > 0);
}

#[test]
fn a_route_change_mid_transfer_into_a_black_hole_is_caught() {
    let sizes = [200 << 20];
    let mut sim = SimConfig::path(GBIT / 2, Duration::from_millis(20), 0.01);
    // Jumbo frames until 1 s in, then a hop at 1500.
    sim.forward.max_datagram_schedule = vec![(Duration::ZERO, JUMBO), (Duration::from_secs(1), 1500 - 28)];
    let (first, rerun, size) = session(&sim, Policy::Fair, &sizes);
    assert!(first.sender.pmtu_confirmed, "confirmed before the change");
    assert!(first.receiver.bytes_delivered > 10 << 20, "data flowed at the jumbo size first");
    assert!(
        first.session_time > Duration::from_secs(1) && first.session_time < Duration::from_millis(2600),
        "caught within about a second of the change: {:?}",
        first.session_time
    );
    assert_eq!(size, BASE_DATAGRAM_V4);
    assert!(rerun.is_some());
}
