//! The goodput-vs-(RTT, loss) table, kept as a snapshot: a change in the protocol's behaviour shows up as a
//! diff of `tests/snapshots/goodput.txt` in review. Regenerate with `UPDATE_SNAPSHOTS=1 cargo test --release
//! --test sim_goodput_table` and commit the new table with the change that caused it.

use mover::proto::Config;
use mover::sim::{run_transfer, CheckingStore, SimConfig, SynthSource};
use std::fmt::Write;
use std::time::Duration;

const RATE: u64 = 1_000_000_000;
const SIZE: u64 = 256 << 20;
const RTTS_MS: [u64; 5] = [1, 20, 100, 200, 300];
const LOSSES: [f64; 4] = [0.0, 0.001, 0.01, 0.03];

fn table() -> String {
    let mut out = String::new();
    writeln!(
        out,
        "# mover goodput in the deterministic simulator: {} MiB over a {} Gbit/s link, MTU 1500,",
        SIZE >> 20,
        RATE / 1_000_000_000
    )
    .unwrap();
    writeln!(out, "# sender at the link rate (fixed policy). Cell: goodput as % of link rate x (1 - loss) / retransmitted % of packets sent.").unwrap();
    writeln!(
        out,
        "# Goodput counts file bytes only (headers cost 4.1% at MTU 1500), first transmission to last commit."
    )
    .unwrap();
    write!(out, "{:>8}", "rtt\\loss").unwrap();
    for l in LOSSES {
        write!(out, " | {:>13}", format!("{:.1}%", l * 100.0)).unwrap();
    }
    out.push('\n');
    for rtt in RTTS_MS {
        write!(out, "{:>6}ms", rtt).unwrap();
        for loss in LOSSES {
            let rtt_d = Duration::from_millis(rtt);
            let mut sim = SimConfig::path(RATE, rtt_d, loss);
            sim.seed = 1000 + rtt;
            let mut cfg = Config::new(77, 1472, RATE);
            cfg.initial_rtt = rtt_d;
            let mut src = SynthSource { seed: sim.seed };
            let (r, store) = run_transfer(&sim, cfg, vec![SIZE], &mut src, CheckingStore::new(sim.seed, vec![SIZE]));
            assert!(r.outcome.is_ok() && store.all_identical(), "rtt {rtt} loss {loss}: {:?}", r.outcome);
            let pct = 100.0 * r.goodput_bps / (RATE as f64 * (1.0 - loss));
            let retx = 100.0 * r.sender.packets_retransmitted as f64 / r.sender.packets_sent as f64;
            write!(out, " | {:>6.1} / {:>4.2}", pct, retx).unwrap();
        }
        out.push('\n');
    }
    out
}

#[test]
fn goodput_table_matches_snapshot() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/goodput.txt");
    let now = table();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &now).unwrap();
        return;
    }
    let old = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        old == now,
        "goodput table changed (rerun with UPDATE_SNAPSHOTS=1 and review the diff).\n--- snapshot\n{old}\n--- now\n{now}"
    );
}
