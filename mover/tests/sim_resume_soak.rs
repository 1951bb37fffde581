//! The resume soak: seeded transfers over impaired simulated paths (random and burst loss up to 10%,
//! reordering, duplication, corruption, partitions), each killed 1-3 times at random virtual times and run
//! again from what its disk holds (a journal that loses its last unsynced step, sometimes a disk that lies),
//! then pushed once more unchanged. Per seed: the final tree equals the source (0 wrong bytes), no session
//! hangs (a virtual-time bound), no held block ever crosses the wire, each rerun's first transmissions are at
//! most the bytes missing at its start plus one window (plus files the disk lied about, sent again whole),
//! and the unchanged second push sends no file data.
//!
//! `MOVER_SOAK_SEEDS` (default 200) and `MOVER_SOAK_FIRST_SEED` (default 1) choose the seeds;
//! `benches/sim-resume-soak.sh` runs 1000. A failure names its seed: rerun it alone with
//! `MOVER_SOAK_FIRST_SEED=<seed> MOVER_SOAK_SEEDS=1`.

use mover::proto::Config;
use mover::sim::{run_transfer_from, BurstLoss, DiskStore, LinkConfig, SimConfig, SimRng, SynthSource};
use mover::wire::DropReason;
use std::collections::BTreeSet;
use std::time::Duration;

const MBIT: u64 = 1_000_000;
const B: u64 = 1412;
/// The window, and the journal's sync step: what a kill may cost at most.
const WINDOW_BLOCKS: u64 = 256;
/// Virtual time after which a session counts as hung.
const TIME_LIMIT: Duration = Duration::from_secs(300);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one seed did, for the summary line.
#[derive(Default)]
struct Tally {
    sessions: u64,
    kills: u64,
    lies: u64,
    resumed_bytes: u64,
    skipped_files: u64,
    partitioned: u64,
}

fn impaired(rng: &mut SimRng, rate_bps: u64, delay: Duration) -> LinkConfig {
    let mut l = LinkConfig::clean(rate_bps, delay);
    if rng.chance(0.6) {
        l.loss = rng.below(11) as f64 / 100.0; // up to 10%
    }
    if rng.chance(0.3) {
        l.burst = Some(BurstLoss { enter_bad: 0.002 + rng.next_f64() * 0.01, leave_bad: 0.1, loss_in_bad: 0.5 });
    }
    if rng.chance(0.3) {
        l.reorder = rng.next_f64() * 0.05;
        l.reorder_delay = Duration::from_micros(200 + rng.below(5_000));
        l.jitter = Duration::from_micros(rng.below(500));
    }
    if rng.chance(0.3) {
        l.duplicate = rng.next_f64() * 0.02;
    }
    if rng.chance(0.3) {
        l.corrupt = rng.next_f64() * 0.01;
    }
    l
}

fn soak_seed(seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut rng = SimRng::new(seed);
    let n = 1 + rng.below(6) as u32;
    let sizes: Vec<u64> = (0..n)
        .map(|_| match rng.below(5) {
            0 => rng.below(B),
            1 => rng.below(20 * B),
            _ => B + rng.below(1500 * B),
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let rate = [50, 100, 200, 500][rng.below(4) as usize] * MBIT;
    let rtt = Duration::from_millis(2 + rng.below(80));
    let mut sim = SimConfig::path(rate, rtt, 0.0);
    sim.seed = seed;
    sim.time_limit = TIME_LIMIT;
    sim.forward = impaired(&mut rng, rate, rtt / 2);
    sim.reverse = impaired(&mut rng, rate, rtt / 2);
    // The time a clean transfer would take, to place kills and partitions inside it.
    let estimate_ns = total * 8 * 1_000_000_000 / rate + 4 * rtt.as_nanos() as u64 + 1_000_000;
    if rng.chance(0.4) {
        let cut = (Duration::from_nanos(rng.below(estimate_ns)), Duration::from_millis(200 + rng.below(2_800)));
        sim.forward.partitions = vec![cut];
        sim.reverse.partitions = vec![cut];
    }
    let mut cfg = Config::new(0x5eed_0000 + seed, 1472, rate);
    cfg.initial_rtt = rtt;
    cfg.window_blocks = WINDOW_BLOCKS;
    let window_bytes = WINDOW_BLOCKS * B;

    let mut disk = DiskStore::new(seed, &sizes, B, WINDOW_BLOCKS as usize);
    for id in 0..n {
        if rng.chance(0.2) {
            disk.put_identical(id); // synced before: skipped
        }
    }
    let mut lied: BTreeSet<u32> = BTreeSet::new();
    let kills = 1 + rng.below(3);
    let mut session = 0;
    loop {
        session += 1;
        let plan = disk.start_plan();
        // Kill somewhere inside the session's own length, measured by running it to the end first.
        let kill_at = if session <= kills {
            let mut src = SynthSource { seed };
            let (dry, _) = run_transfer_from(&sim, cfg.clone(), sizes.clone(), &mut src, disk.clone(), &plan);
            Some(Duration::from_nanos(1 + rng.below(dry.session_time.as_nanos() as u64)))
        } else {
            None
        };
        let missing = disk.missing_bytes(&plan);
        let lied_bytes: u64 = lied.iter().map(|&id| sizes[id as usize]).sum();
        let mut run_sim = sim.clone();
        run_sim.stop_at = kill_at;
        let mut src = SynthSource { seed };
        let (r, d) = run_transfer_from(&run_sim, cfg.clone(), sizes.clone(), &mut src, disk, &plan);
        disk = d;
        tally.sessions += 1;
        tally.resumed_bytes += r.sender.resumed_bytes;
        tally.skipped_files += r.sender.skipped_files;
        tally.partitioned += r.forward.partitioned + r.reverse.partitioned;
        let what = format!("session {session} (kill at {kill_at:?})");
        if r.sender.new_payload_bytes_sent > missing + window_bytes + lied_bytes {
            return Err(format!(
                "{what}: sent {} new bytes, missing {missing} + window {window_bytes} + lied {lied_bytes}",
                r.sender.new_payload_bytes_sent
            ));
        }
        if r.receiver.drops.get(DropReason::Malformed) != 0 {
            return Err(format!("{what}: {} malformed data packets", r.receiver.drops.get(DropReason::Malformed)));
        }
        match (&r.outcome, kill_at) {
            (Ok(_), _) => break,
            (Err(e), None) => return Err(format!("{what}: failed: {e}")),
            (Err(e), Some(_)) if !e.starts_with("stopped at") => return Err(format!("{what}: failed: {e}")),
            (Err(_), Some(_)) => {}
        }
        tally.kills += 1;
        let crash = disk.crash(&mut rng, 0.2);
        if crash.dropped_bytes > window_bytes {
            return Err(format!("{what}: the journal lost {} bytes, more than one step", crash.dropped_bytes));
        }
        if let Some(id) = crash.lied_file {
            tally.lies += 1;
            lied.insert(id);
        }
    }
    if disk.held_block_writes != 0 {
        return Err(format!("{} held blocks crossed the wire", disk.held_block_writes));
    }
    if !disk.all_identical() {
        return Err("the final tree differs from the source".into());
    }
    // The same push again: everything is skipped, no file data is sent.
    let plan = disk.start_plan();
    let mut src = SynthSource { seed };
    let (r, _) = run_transfer_from(&sim, cfg, sizes.clone(), &mut src, disk, &plan);
    if r.outcome.is_err() || r.sender.packets_sent != 0 || r.sender.skipped_files != n as u64 {
        return Err(format!(
            "second push: {:?}, {} packets, {} skipped",
            r.outcome, r.sender.packets_sent, r.sender.skipped_files
        ));
    }
    Ok(())
}

#[test]
fn killed_and_resumed_sessions_converge_on_the_source() {
    let count = env_u64("MOVER_SOAK_SEEDS", 200);
    let first = env_u64("MOVER_SOAK_FIRST_SEED", 1);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for seed in first..first + count {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| soak_seed(seed, &mut tally)));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("seed {seed}: {e}")),
            Err(_) => failures.push(format!("seed {seed}: panicked (see above)")),
        }
    }
    eprintln!(
        "{count} seeds from {first} in {:.1} s: {} sessions, {} kills, {} lying disks, {} MB resumed, {} files \
         skipped, {} packets cut by partitions, {} failed",
        started.elapsed().as_secs_f64(),
        tally.sessions,
        tally.kills,
        tally.lies,
        tally.resumed_bytes >> 20,
        tally.skipped_files,
        tally.partitioned,
        failures.len()
    );
    assert!(tally.kills >= count && tally.resumed_bytes > 0 && tally.lies > 0, "the soak exercised nothing");
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
}
