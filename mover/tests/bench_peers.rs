//! The plumbing of benches/run-peers.sh (issue 18's one script for every peer), cheaply: both shell files
//! parse, and the table script turns a canned run (benches/lib/testdata/peers-canned.csv) into the right
//! ratios and verdicts: medians of the runs that succeeded, a failed run left out, a missing side "n/a"
//! (never "met"), each aim's bound on the right side. The real run needs root, sshd and minutes: the lead
//! runs it (benches/RESULTS.md says how).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

#[test]
fn the_peer_scripts_parse() {
    for script in ["benches/run-peers.sh", "benches/lib/peers.sh", "benches/lib/netns.sh", "benches/run-wan.sh"] {
        let out = Command::new("bash").arg("-n").arg(repo().join(script)).output().expect("bash runs");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn table() -> String {
    let out = Command::new("python3")
        .arg(repo().join("benches/lib/peers-table.py"))
        .arg("table")
        .arg(repo().join("benches/lib/testdata/peers-canned.csv"))
        .output()
        .expect("python3 runs (the bench scripts need it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn the_table_gives_each_aim_its_ratio_and_verdict() {
    let t = table();
    for line in [
        // Medians: mover 7, 8, 9 Gbit/s -> 8; the rsync daemon's failed 99 Gbit/s run is left out.
        "| one-file | defaults | 1500 | mover / rsync daemon | 1.09 | >= 1 | met |",
        "| one-file | defaults | 1500 | mover / scp | 2.66 | >= 2 | met |",
        "| one-file | defaults | 1500 | mover / bench net | 0.80 | >= 0.7 | met |",
        "| one-file | defaults | 1500 | mover retransmitted / sent | 0.20% | <= 0.5% | met |",
        "| one-file | off | 9000 | mover / rsync daemon | 0.50 | >= 1 | missed |",
        // Exactly on the bound is met.
        "| one-file | off | 9000 | mover / scp | 2.00 | >= 2 | met |",
        // No bench net row on that path: no verdict.
        "| one-file | off | 9000 | mover / bench net | n/a | >= 0.7 | n/a |",
        "| one-file | off | 9000 | mover retransmitted / sent | 1.00% | <= 0.5% | missed |",
        "| 100ms-1pct | off | 1500 | mover / bottleneck | 0.96 | >= 0.95 | met |",
        "| 200ms-3pct | off | 1500 | mover / bottleneck | 0.80 | >= 0.9 | missed |",
        "| fair + cubic | 0.95 | 0.50 | 0.40 | mover / TCP | 0.80 | 0.5-2 | met |",
        "| low + cubic | 0.95 | 0.70 | 0.20 | TCP next to low / TCP alone | 0.74 | >= 0.85 | missed |",
        // No TCP-alone sample before mover joined: the phase after it left stands in (0.81 / 0.90).
        "| fair + bbr | 0.90 | 0.40 | 0.50 | mover / TCP | 1.25 | 0.5-2 | met |",
        "| low + bbr | 0.90 | 0.81 | n/a | TCP next to low / TCP alone | 0.90 | >= 0.85 | met |",
        "| 4k-x-100000 | defaults | 1500 | mover / rsync over ssh | 4.00 | >= 5 | missed |",
        "| 4k-x-100000 | defaults | 1500 | mover / tar over ssh | 2.00 | >= 2 | met |",
        "| 4k-x-100000 | defaults | 1500 | mover / rsync daemon | 0.80 | >= 1 | missed |",
    ] {
        assert!(t.contains(line), "missing {line}\n{t}");
    }
    // The per-tool rows: runs that succeeded out of all, the median goodput, CPU per GiB of each end.
    assert!(t.contains("| one-file | defaults | 1500 | rsync-daemon | 1/2 | 7.33 |"), "{t}");
    assert!(
        t.contains("| one-file | defaults | 1500 | mover-push | 3/3 | 8.00 | 2.00 | 0.20% | 0.50 | 0.60 | 50 | 51 |"),
        "{t}"
    );
    assert!(!t.contains("99.00"), "a failed run counted: {t}");
}
