//! `mover serve` and `mover push` as real processes over loopback: a 1 GiB random file and a directory tree
//! of mixed sizes (empty files and directories included) arrive byte-identical with modes and mtimes; and
//! `mover pull` of a tree from the daemon.

mod common;

use common::{json_raw, mover, run_with_limit, Server, TempDir};
use mover::sim::dataset::{compare_trees, generate_dataset, write_random};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

fn set_mtime(path: &std::path::Path, secs: u64, nanos: u32) {
    let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    let f = fs::File::options().read(true).open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t)).unwrap();
}

#[test]
fn one_gib_file_and_mixed_tree_arrive_identical() {
    let tmp = TempDir::new("e2e");
    let src = tmp.path().join("src");
    let tree = src.join("tree");
    generate_dataset(&tree, 48 << 20).unwrap();
    fs::write(tree.join("raw/run1/tiny"), b"x").unwrap();
    fs::set_permissions(tree.join("raw/run1/tiny"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(tree.join("raw/part-0000.dat"), fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&tree.join("raw/run1/tiny"), 1_500_000_000, 123_456_789);
    set_mtime(&tree.join("meta/empty.txt"), 1_000_000_000, 1);
    let big = src.join("big.bin");
    write_random(&big, 1 << 30, 42).unwrap();
    set_mtime(&big, 1_700_000_000, 999_999_999);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();

    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/incoming/run42", server.addr);
    let out = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--rate", "3G", "--mtu", "9000", "--json"])
            .arg(&big)
            .arg(&tree)
            .arg(&url),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push failed: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "exactly one JSON object on stdout: {stdout}");
    for key in ["files", "bytes", "seconds", "goodput_bps", "packets_sent", "packets_retransmitted", "verified", "net"]
    {
        assert!(json_raw(&stdout, key).is_some(), "missing {key} in {stdout}");
    }
    assert_eq!(json_raw(&stdout, "verified"), Some("true"));
    assert_eq!(json_raw(&stdout, "net"), Some("\"udp\""));
    let status = server.wait(Duration::from_secs(10)).expect("serve --once exits");
    assert!(status.success());

    let dest = root.join("incoming/run42");
    compare_trees(&big, &dest.join("big.bin")).unwrap();
    compare_trees(&tree, &dest.join("tree")).unwrap();
    // No temporary files left behind.
    assert!(
        common::list_tree(&root).iter().all(|p| !p.contains(".mover-") && !p.contains(".mover.part")),
        "{:?}",
        common::list_tree(&root)
    );
}

#[test]
fn pull_from_the_daemon_arrives_identical() {
    let tmp = TempDir::new("e2e-pull");
    let root = tmp.path().join("root");
    let tree = root.join("exports/tree");
    generate_dataset(&tree, 8 << 20).unwrap();
    set_mtime(&tree.join("meta/empty.txt"), 1_000_000_000, 1);
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/exports/tree", server.addr);
    let dest = tmp.path().join("local");
    let out = run_with_limit(
        mover().args(["pull", "--insecure-no-auth", "--json", "--mtu", "9000"]).arg(&url).arg(&dest),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pull failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "exactly one JSON object on stdout: {stdout}");
    assert_eq!(json_raw(&stdout, "verified"), Some("true"));
    let status = server.wait(Duration::from_secs(10)).expect("serve --once exits");
    assert!(status.success());
    compare_trees(&tree, &dest.join("tree")).unwrap();
    assert!(
        common::list_tree(&dest).iter().all(|p| !p.contains(".mover-") && !p.contains(".mover.part")),
        "{:?}",
        common::list_tree(&dest)
    );
}

#[test]
fn demo_runs_and_reports_goodput() {
    let tmp = TempDir::new("demo");
    let out = run_with_limit(
        mover().args(["demo", "--size", "64M", "--json", "--workdir"]).arg(tmp.path()),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_raw(&stdout, "verified"), Some("true"));
    let goodput: f64 = json_raw(&stdout, "goodput_bps").unwrap().parse().unwrap();
    assert!(goodput > 0.0);
    assert!(common::list_tree(tmp.path()).is_empty(), "demo cleans up after itself");
}
