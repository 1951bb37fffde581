//! Whole transfers through the deterministic simulator (virtual time): correctness under impairment, and
//! goodput against the link rate.

use mover::proto::Config;
use mover::sim::{run_transfer, synth_hash, BurstLoss, CheckingStore, MemStore, SimConfig, SimReport, SynthSource};
use std::time::Duration;

const GBIT: u64 = 1_000_000_000;

fn config(rate_bps: u64, max_datagram: usize, rtt: Duration) -> Config {
    let mut c = Config::new(0x5eed_0001, max_datagram, rate_bps);
    c.initial_rtt = rtt;
    c
}

/// Runs a checked transfer of synthetic files and asserts every byte arrived intact and committed.
fn checked(sim: &SimConfig, cfg: Config, sizes: Vec<u64>) -> SimReport {
    let mut src = SynthSource { seed: sim.seed };
    let (report, store) = run_transfer(sim, cfg, sizes.clone(), &mut src, CheckingStore::new(sim.seed, sizes));
    assert!(report.outcome.is_ok(), "transfer failed: {:?}\n{report:#?}", report.outcome);
    assert!(store.all_identical(), "store: {store:?}");
    assert!(store.finished);
    report
}

fn describe(r: &SimReport) -> String {
    format!(
        "goodput {:.3} Gbit/s in {:.3} s virtual (session {:.3} s), sent {} retx {} ({:.3}%), fwd lost {} queue-dropped {}",
        r.goodput_bps / 1e9,
        r.transfer_time.as_secs_f64(),
        r.session_time.as_secs_f64(),
        r.sender.packets_sent,
        r.sender.packets_retransmitted,
        100.0 * r.sender.packets_retransmitted as f64 / r.sender.packets_sent as f64,
        r.forward.lost,
        r.forward.queue_drops
    )
}

#[test]
fn small_tree_clean_path_is_exact() {
    let sizes = vec![0, 1, 1411, 1412, 1413, 100_000, 0, 3 << 20];
    let sim = SimConfig::path(GBIT, Duration::from_millis(20), 0.0);
    let cfg = config(GBIT, 1472, Duration::from_millis(20));
    let mut src = SynthSource { seed: 1 };
    let (r, store) = run_transfer(&sim, cfg, sizes.clone(), &mut src, MemStore::new(&sizes));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    for (id, &size) in sizes.iter().enumerate() {
        let mut want = vec![0u8; size as usize];
        mover::sim::synth_fill(1, id as u32, 0, &mut want);
        assert_eq!(store.committed[id].as_deref(), Some(&want[..]), "file {id}");
    }
    assert_eq!(r.sender.packets_retransmitted, 0);
    let s = r.outcome.unwrap();
    assert_eq!(s.files, sizes.len() as u64);
    assert_eq!(s.bytes, sizes.iter().sum::<u64>());
}

#[test]
fn empty_session_and_only_empty_files_complete() {
    for sizes in [vec![], vec![0, 0, 0]] {
        let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
        let r = checked(&sim, config(GBIT, 1472, Duration::from_millis(10)), sizes);
        assert_eq!(r.sender.packets_sent, 0);
    }
}

/// The headline case: 10 Gbit/s, 100 ms RTT, 1% random loss, 2 GiB, jumbo frames (as 10 GbE transfer
/// nodes run). Goodput is measured at the receiver: first transmission to last commit.
#[test]
fn ten_gbit_100ms_1pct_loss_2gib() {
    let rate = 10 * GBIT;
    let sim = SimConfig::path(rate, Duration::from_millis(100), 0.01);
    let r = checked(&sim, config(rate, 8972, Duration::from_millis(100)), vec![2 << 30]);
    eprintln!("{}", describe(&r));
    let floor = 0.9 * rate as f64 * (1.0 - 0.01);
    assert!(r.goodput_bps >= floor, "goodput {:.3} Gbit/s below {:.3}", r.goodput_bps / 1e9, floor / 1e9);
    let retx = r.sender.packets_retransmitted as f64 / r.sender.packets_sent as f64;
    assert!(retx <= 0.01 + 0.01, "retransmitted {:.3}% of packets", retx * 100.0);
}
