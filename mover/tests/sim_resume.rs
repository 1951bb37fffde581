//! Resume and sync in the sans-IO core, through the simulator: round 0 starts from the receiver's plan
//! (`Skip`/`Have`), sends exactly what is missing, and the whole-file hash still decides.

use mover::proto::{Config, StartPlan};
use mover::sim::{run_transfer_from, DiskStore, SimConfig, SimReport, SynthSource};
use mover::wire::DropReason;
use std::time::Duration;

const GBIT: u64 = 1_000_000_000;
const B: u64 = 1412; // block payload at a 1472-byte datagram

fn cfg() -> Config {
    cfg_at(GBIT)
}

fn cfg_at(rate_bps: u64) -> Config {
    let mut c = Config::new(0x5eed_0015, 1472, rate_bps);
    c.initial_rtt = Duration::from_millis(10);
    c.window_blocks = 256;
    c
}

fn run(sim: &SimConfig, sizes: &[u64], disk: DiskStore) -> (SimReport, DiskStore, StartPlan) {
    let mut disk = disk;
    let plan = disk.start_plan();
    let mut src = SynthSource { seed: sim.seed };
    let (r, disk) = run_transfer_from(sim, cfg_at(sim.forward.rate_bps), sizes.to_vec(), &mut src, disk, &plan);
    (r, disk, plan)
}

/// A partial file held in scattered blocks (and a short tail): round 0 sends exactly the other blocks,
/// never a held one, and the file is verified whole.
#[test]
fn resume_sends_exactly_the_missing_blocks() {
    for loss in [0.0, 0.05] {
        let sizes = [20 * B + 100, 3 * B, 0];
        let sim = SimConfig::path(GBIT, Duration::from_millis(10), loss);
        let mut disk = DiskStore::new(sim.seed, &sizes, B, 64);
        disk.put_partial(0, [0, 1, 2, 7, 8, 15, 20]);
        disk.put_partial(1, [1]);
        let plan = disk.clone().start_plan();
        let missing = disk.missing_bytes(&plan);
        assert_eq!(missing, sizes[0] + sizes[1] - (6 * B + 100) - B);
        let (r, disk, plan) = run(&sim, &sizes, disk);
        assert!(r.outcome.is_ok(), "{:?}", r.outcome);
        assert!(disk.all_identical());
        assert_eq!(disk.held_block_writes, 0, "a held block went on the wire");
        assert_eq!(r.receiver.drops.get(DropReason::Malformed), 0);
        assert_eq!(r.sender.new_payload_bytes_sent, missing, "first transmissions are exactly the missing bytes");
        assert_eq!(r.sender.packets_sent - r.sender.packets_retransmitted, 14 + 2);
        assert_eq!(r.sender.resumed_bytes, plan.resumed_bytes());
        assert_eq!(r.sender.resumed_bytes, 6 * B + 100 + B);
        assert_eq!(r.sender.rounds, 1);
        if loss == 0.0 {
            assert_eq!(r.sender.packets_retransmitted, 0);
        }
    }
}

/// Files the receiver holds whole are skipped: no data at all, and the session completes.
#[test]
fn skipped_files_send_no_data() {
    let sizes = [5 * B, 0, 100_000];
    let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    let mut disk = DiskStore::new(sim.seed, &sizes, B, 64);
    (0..3).for_each(|id| disk.put_identical(id));
    let (r, disk, _) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(r.sender.packets_sent, 0);
    assert_eq!((r.sender.skipped_files, r.sender.skipped_bytes), (3, 5 * B + 100_000));
    assert_eq!(r.outcome.unwrap().files, 0, "skipped files are not committed again");
    assert!(disk.all_identical());
    // One skipped, the others sent.
    let mut disk = DiskStore::new(sim.seed, &sizes, B, 64);
    disk.put_identical(2);
    let (r, disk, _) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok() && disk.all_identical());
    assert_eq!(r.sender.new_payload_bytes_sent, 5 * B);
}

/// A file held whole sends nothing but is still verified and committed; when the disk lied about one of
/// its blocks, the hash catches it and round 1 sends the file again whole.
#[test]
fn a_fully_held_file_is_verified_and_committed() {
    let sizes = [10 * B + 7];
    let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    let mut disk = DiskStore::new(sim.seed, &sizes, B, 64);
    disk.put_partial(0, 0..11);
    let (r, disk, _) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(r.sender.packets_sent, 0);
    assert_eq!(r.outcome.unwrap().files, 1);
    assert!(disk.all_identical());

    let mut disk = DiskStore::new(sim.seed, &sizes, B, 64);
    disk.put_partial(0, 0..11);
    disk.temp[0].as_mut().unwrap()[3 * B as usize + 5] ^= 1; // claimed, but wrong
    let (r, disk, _) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!((r.sender.rounds, disk.resets), (2, 1));
    assert_eq!(r.sender.new_payload_bytes_sent, sizes[0], "round 1 sends the whole file");
    assert!(disk.all_identical());
}

/// A receiver's plan that does not fit the manifest fails the session with one clear line on both ends.
#[test]
fn an_invalid_plan_fails_the_session_clearly() {
    let sizes = [10 * B];
    let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    let mut plan = StartPlan::default();
    plan.add_have(0, vec![(5, B)]);
    let mut src = SynthSource { seed: 1 };
    let disk = DiskStore::new(sim.seed, &sizes, B, 64);
    let (r, _) = run_transfer_from(&sim, cfg(), sizes.to_vec(), &mut src, disk, &plan);
    let e = r.outcome.unwrap_err();
    assert!(e.contains("resume plan") && e.contains("--no-resume"), "{e}");
    assert_eq!(r.sender.packets_sent, 0);
}

/// Killed mid-transfer, then run again from what the disk holds: the rerun completes the tree and sends
/// at most what was missing plus one journal step.
#[test]
fn a_killed_session_resumes() {
    let sizes = [400 * B, 3, 150 * B + 9];
    let mut sim = SimConfig::path(GBIT / 10, Duration::from_millis(20), 0.02);
    sim.stop_at = Some(Duration::from_millis(30));
    let disk = DiskStore::new(sim.seed, &sizes, B, 64);
    let (r, mut disk, _) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_err(), "killed before the end");
    let delivered = r.receiver.bytes_delivered;
    assert!(delivered > 0);
    let crash = disk.crash(&mut mover::sim::SimRng::new(3), 0.0);
    sim.stop_at = None;
    let plan = disk.clone().start_plan();
    let missing = disk.missing_bytes(&plan);
    assert!(missing < sizes.iter().sum::<u64>() - delivered + crash.dropped_bytes + 1, "{missing}");
    let (r, disk, plan) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert!(disk.all_identical());
    assert!(plan.resumed_bytes() > 0);
    assert!(r.sender.new_payload_bytes_sent <= missing + 64 * B);
    assert_eq!(disk.held_block_writes, 0);
}

/// A partition both ways pauses the transfer; it continues when packets flow again and resends only what
/// the partition cut. One longer than the peer timeout fails the session, and a rerun from the disk
/// resumes: it sends at most what was missing plus one journal step.
#[test]
fn partitions_pause_and_a_long_one_is_resumed() {
    let sizes = [3000 * B];
    let mut sim = SimConfig::path(GBIT / 10, Duration::from_millis(20), 0.0);
    let cut = (Duration::from_millis(100), Duration::from_secs(5));
    sim.forward.partitions = vec![cut];
    sim.reverse.partitions = vec![cut];
    let disk = DiskStore::new(sim.seed, &sizes, B, 64);
    let (r, disk, _) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert!(disk.all_identical());
    assert!(r.session_time > Duration::from_secs(5));
    assert!(r.forward.partitioned > 0);
    assert_eq!(r.sender.new_payload_bytes_sent, sizes[0], "nothing sent twice as new");
    // Retransmissions: what the partition cut (and at most a second copy of each at the tail).
    assert!(r.sender.packets_retransmitted <= 2 * r.forward.partitioned, "{r:#?}");

    // Longer than the default peer timeout (120 s).
    let long = (Duration::from_millis(100), Duration::from_secs(130));
    sim.forward.partitions = vec![long];
    sim.reverse.partitions = vec![long];
    let disk = DiskStore::new(sim.seed, &sizes, B, 64);
    let (r, mut disk, _) = run(&sim, &sizes, disk);
    let e = r.outcome.unwrap_err();
    assert!(e.contains("for 120 s"), "{e}");
    assert!(disk.committed[0].is_none(), "nothing under the final name");
    disk.crash(&mut mover::sim::SimRng::new(5), 0.0);
    sim.forward.partitions.clear();
    sim.reverse.partitions.clear();
    let missing = disk.missing_bytes(&disk.clone().start_plan());
    assert!(missing < sizes[0]);
    let (r, disk, plan) = run(&sim, &sizes, disk);
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert!(disk.all_identical() && plan.resumed_bytes() > 0);
    assert!(r.sender.new_payload_bytes_sent <= missing + 64 * B);
}
