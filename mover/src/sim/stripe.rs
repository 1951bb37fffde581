//! Striping in virtual time (PROTOCOL.md §8.4): legs of given rates take batches from the real
//! [`Scheduler`], each batch costing a session's set-up and then its bytes at the leg's rate, with the faults
//! of §8.8 that concern the sending side: a leg that dies mid-batch and a relay that refuses for room.
//!
//! A leg's data path is one verified session per batch, which [`super::harness`] simulates on its own; this
//! model takes its outcome (a rate and a set-up time) and checks what the dealing does with it: every block
//! stored exactly once whatever fails, faster legs taking more under fcfs, the guided batches keeping the
//! tail short, and how close the send phase comes to the sum of the legs' rates.

use crate::proto::stripe_plan::{BlockPlan, Scheduler, StripeMode, MAX_BATCH_BLOCKS};

/// How long a leg waits after a refusal for room (the sender's back-off).
pub const REFUSAL_BACKOFF_S: f64 = 0.3;
/// How often an idle leg looks for blocks given back by others.
pub const IDLE_POLL_S: f64 = 0.02;

/// One leg as the model sees it.
#[derive(Copy, Clone, Debug)]
pub struct LegModel {
    /// Goodput of the leg's sessions, bits per second.
    pub rate_bps: f64,
    /// A session's set-up and end (handshakes, startup, verification), seconds per batch.
    pub setup_s: f64,
    /// The leg dies at this time: the batch it is pushing is lost to it and given back.
    pub dies_at: Option<f64>,
    /// The relay refuses every batch for room until this time.
    pub full_until: Option<f64>,
}

impl LegModel {
    /// A healthy leg.
    pub fn new(rate_bps: f64, setup_s: f64) -> LegModel {
        LegModel { rate_bps, setup_s, dies_at: None, full_until: None }
    }
}

/// What a simulated striping phase did.
#[derive(Clone, Debug, Default)]
pub struct StripeOutcome {
    /// Until every block was stored once.
    pub send_seconds: f64,
    /// Blocks each leg stored.
    pub blocks_per_leg: Vec<u64>,
    /// How often each block was stored (1 each when nothing is lost twice).
    pub stored: Vec<u32>,
    /// Batches refused for room.
    pub refusals: u64,
}

impl StripeOutcome {
    /// The ideal send time: every byte at the summed rate of the legs, no set-up.
    pub fn ideal_seconds(total_bytes: u64, legs: &[LegModel]) -> f64 {
        total_bytes as f64 * 8.0 / legs.iter().map(|l| l.rate_bps).sum::<f64>()
    }
}

/// Runs the send phase of a striped transfer of `sizes` (one file each) in blocks of `block_bytes`.
pub fn simulate(sizes: &[u64], block_bytes: u32, mode: StripeMode, legs: &[LegModel]) -> StripeOutcome {
    let plan = BlockPlan::new(sizes, block_bytes);
    let mut sched = Scheduler::new(&plan, mode, legs.len());
    let total = plan.total_blocks() as usize;
    let mut out = StripeOutcome { blocks_per_leg: vec![0; legs.len()], stored: vec![0; total], ..Default::default() };
    let mut free_at = vec![0.0f64; legs.len()];
    let mut cap = vec![MAX_BATCH_BLOCKS; legs.len()];
    let mut stored_once = 0usize;
    // The batch a leg was pushing when it died: given back at the time of death, not before.
    let mut dying: Vec<Option<Vec<u64>>> = vec![None; legs.len()];
    // Each step advances the leg that is free first; ties go to the lower index (deterministic).
    while stored_once < total {
        let live: Vec<usize> = (0..legs.len()).filter(|&l| sched.is_alive(l)).collect();
        assert!(!live.is_empty(), "every leg died with {} blocks unstored", total - stored_once);
        let leg = *live.iter().min_by(|&&a, &&b| free_at[a].total_cmp(&free_at[b])).expect("a live leg");
        let (now, m) = (free_at[leg], legs[leg]);
        assert!(now.is_finite(), "blocks left but every leg is idle for good");
        if let Some(blocks) = dying[leg].take() {
            sched.give_back(blocks);
            sched.leg_failed(leg);
            continue;
        }
        if m.dies_at.is_some_and(|d| d <= now) {
            sched.leg_failed(leg);
            continue;
        }
        let Some((_, blocks)) = sched.next_at_most(leg, cap[leg]) else {
            // Idle until another leg gives something back, or for good once nothing can come back.
            let others = live.iter().any(|&l| l != leg && free_at[l].is_finite());
            free_at[leg] = if others || !sched.is_drained() { now + IDLE_POLL_S } else { f64::INFINITY };
            continue;
        };
        let bytes: u64 = blocks.iter().map(|&b| u64::from(plan.header(b).expect("planned").len)).sum();
        if m.full_until.is_some_and(|f| now < f) {
            out.refusals += 1;
            cap[leg] = (blocks.len() / 2).max(1);
            sched.give_back(blocks);
            free_at[leg] = now + m.setup_s + REFUSAL_BACKOFF_S;
            continue;
        }
        let done = now + m.setup_s + bytes as f64 * 8.0 / m.rate_bps;
        if let Some(d) = m.dies_at.filter(|&d| d < done) {
            dying[leg] = Some(blocks);
            free_at[leg] = d;
            continue;
        }
        cap[leg] = (cap[leg] * 2).min(MAX_BATCH_BLOCKS);
        for b in &blocks {
            out.stored[*b as usize] += 1;
            if out.stored[*b as usize] == 1 {
                stored_once += 1;
            }
        }
        out.blocks_per_leg[leg] += blocks.len() as u64;
        out.send_seconds = out.send_seconds.max(done);
        free_at[leg] = done;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const BLOCK: u32 = 4 << 20;
    const M: f64 = 1e6;

    #[test]
    fn every_block_is_stored_exactly_once_in_every_mode_whatever_fails() {
        let mut legs = vec![LegModel::new(93.0 * M, 0.1); 4];
        legs[1].dies_at = Some(20.0);
        legs[2].full_until = Some(10.0);
        for mode in [StripeMode::Fcfs, StripeMode::Cyclic, StripeMode::Partitioned] {
            let out = simulate(&[GIB, 3 << 20, 0, 700 << 20], BLOCK, mode, &legs);
            assert!(out.stored.iter().all(|&n| n == 1), "{mode}: {:?}", out.stored);
            assert!(out.blocks_per_leg[1] < out.blocks_per_leg[0], "{mode}: the dead leg stored as much: {out:?}");
            assert!(out.refusals > 0, "{mode}");
        }
    }

    #[test]
    fn fcfs_comes_near_the_sum_of_the_legs_and_cyclic_waits_for_the_slowest() {
        // The paper's test bed, roughly: two full relays and one halved by cross traffic; a session's set-up
        // of 0.2 s per batch, assumed: benches/RESULTS.md does not separate a leg's set-up from its rate.
        let legs = [LegModel::new(88.0 * M, 0.2), LegModel::new(88.0 * M, 0.2), LegModel::new(44.0 * M, 0.2)];
        let ideal = StripeOutcome::ideal_seconds(GIB, &legs);
        let fcfs = simulate(&[GIB], BLOCK, StripeMode::Fcfs, &legs);
        let cyclic = simulate(&[GIB], BLOCK, StripeMode::Cyclic, &legs);
        let eff = |o: &StripeOutcome| ideal / o.send_seconds;
        // The set-up per batch is what fcfs loses: 94% of the legs' sum at 0.2 s a batch, 99% at 0.02 s.
        assert!(eff(&fcfs) > 0.92, "fcfs reaches {:.1}% of the legs' sum", 100.0 * eff(&fcfs));
        let quick: Vec<LegModel> = legs.iter().map(|l| LegModel { setup_s: 0.02, ..*l }).collect();
        let fcfs_quick = simulate(&[GIB], BLOCK, StripeMode::Fcfs, &quick);
        assert!(eff(&fcfs_quick) > 0.98, "fcfs with quick set-ups reaches {:.1}%", 100.0 * eff(&fcfs_quick));
        assert!(fcfs.blocks_per_leg[0] > fcfs.blocks_per_leg[2] * 3 / 2, "{:?}", fcfs.blocks_per_leg);
        // Cyclic gives the slow leg a third: it takes 1/3 GiB at 44 Mbit/s, about 0.8 of the others' time.
        assert!(eff(&cyclic) < 0.85, "cyclic reaches {:.1}%", 100.0 * eff(&cyclic));
    }

    #[test]
    fn the_tail_is_short_because_batches_shrink() {
        let legs = [LegModel::new(90.0 * M, 0.05), LegModel::new(30.0 * M, 0.05)];
        let out = simulate(&[GIB], BLOCK, StripeMode::Fcfs, &legs);
        // With a fixed batch of 32 blocks the slow leg could hold 128 MiB at the end: 36 s at 30 Mbit/s.
        let ideal = StripeOutcome::ideal_seconds(GIB, &legs);
        assert!(out.send_seconds < ideal + 3.0, "{} s against {ideal} s ideal", out.send_seconds);
    }

    #[test]
    fn a_dead_legs_share_is_taken_by_the_others_in_time() {
        let mut legs = vec![LegModel::new(90.0 * M, 0.1); 3];
        legs[0].dies_at = Some(5.0);
        let out = simulate(&[GIB], BLOCK, StripeMode::Partitioned, &legs);
        assert!(out.stored.iter().all(|&n| n == 1));
        // What two legs take alone, plus one lost batch at most (32 blocks at 90 Mbit/s ~ 12 s, the batch
        // in flight when the leg died), plus the set-ups.
        let two = StripeOutcome::ideal_seconds(GIB, &legs[1..]);
        assert!(out.send_seconds < two + 3.0, "{} s, two legs alone {two} s", out.send_seconds);
    }
}
