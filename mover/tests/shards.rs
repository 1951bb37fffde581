//! `--shard I/N` with the real binary over loopback (issue 21, item 3): N pushes (or pulls) of one tree, one
//! per shard, move every file exactly once and together leave an identical tree; `--shard auto` reads a
//! Slurm array task's or a Kubernetes Indexed Job's index; bad shards are usage errors.

mod common;

use common::{hash_file, json_raw, json_u64, list_tree, mover, run_with_limit, write_random_file, Server, TempDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// A tree of 60 files from empty to 3 MiB in nested directories, a symlink and an empty directory; returns
/// its root and total bytes.
fn tree(dir: &Path) -> (PathBuf, u64) {
    let src = dir.join("src");
    let mut total = 0;
    for i in 0..60u64 {
        let sub = src.join(format!("d{}/e{}", i % 5, i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        let len = match i % 6 {
            0 => 0,
            1 => 3 << 20,
            _ => (i * 7919) % 200_000,
        };
        write_random_file(&sub.join(format!("f{i}.bin")), len, i);
        total += len;
    }
    std::fs::create_dir_all(src.join("empty/dir")).unwrap();
    std::os::unix::fs::symlink("d0/e0/f0.bin", src.join("link")).unwrap();
    (src, total)
}

/// Every path below `a` is below `b` with the same contents (files) or target (links), and nothing more.
fn assert_same_tree(a: &Path, b: &Path) {
    assert_eq!(list_tree(a), list_tree(b), "the same paths");
    for rel in list_tree(a) {
        let (x, y) = (a.join(&rel), b.join(&rel));
        let m = std::fs::symlink_metadata(&x).unwrap();
        if m.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&x).unwrap(), std::fs::read_link(&y).unwrap(), "{rel}");
        } else if m.is_file() {
            assert_eq!(hash_file(&x), hash_file(&y), "{rel}");
        }
    }
}

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = run_with_limit(cmd, LIMIT);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed: {}\n{json}", String::from_utf8_lossy(&out.stderr));
    json
}

#[test]
fn pushes_of_each_shard_move_every_file_once() {
    let dir = TempDir::new("shards-push");
    let (src, total) = tree(dir.path());
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/in", server.addr);
    let count = 3;
    let (mut bytes, mut files) = (0, 0);
    for i in 0..count {
        let shard = format!("{i}/{count}");
        let json = run_ok(
            mover()
                .args(["push", "--insecure-no-auth", "--json", "--rate", "2G", "--shard", &shard])
                .arg(&src)
                .arg(&url),
        );
        assert_eq!(json_raw(&json, "shard"), Some(format!("\"{shard}\"").as_str()), "{json}");
        let b = json_u64(&json, "bytes").unwrap();
        assert!(b > 0, "shard {shard} moved nothing: {json}");
        assert_eq!(json_u64(&json, "skipped_files"), Some(0), "no shard saw another's files: {json}");
        bytes += b;
        files += json_u64(&json, "files").unwrap();
    }
    assert_eq!(bytes, total, "every byte sent exactly once");
    assert_eq!(files, 60, "every file sent exactly once");
    assert_same_tree(&src, &root.join("in/src"));
    // A whole push afterwards finds everything current.
    let json = run_ok(mover().args(["push", "--insecure-no-auth", "--json"]).arg(&src).arg(&url));
    assert_eq!(json_u64(&json, "skipped_files"), Some(60), "{json}");
}

#[test]
fn pulls_of_each_shard_and_auto_from_the_scheduler() {
    let dir = TempDir::new("shards-pull");
    let root = dir.path().join("root");
    let (src, mut total) = tree(&root);
    // Two ranges (16 MiB and the rest), which the daemon may send from different shards.
    let big = (20 << 20) + 7;
    write_random_file(&src.join("d1/big.bin"), big, 77);
    total += big;
    let server = Server::start(&root, &[]);
    let here = dir.path().join("here");
    std::fs::create_dir_all(&here).unwrap();
    let url = format!("mover://{}/src", server.addr);
    // Shard 0 of 2 as a Slurm array task (ids 5 and 6: --array=5-6), shard 1 as a Kubernetes Indexed Job.
    let slurm = [("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_COUNT", "2")];
    let mut pull = mover();
    pull.args(["pull", "--insecure-no-auth", "--json", "--shard", "auto"]).arg(&url).arg(&here).envs(slurm);
    let a = run_ok(&mut pull);
    assert_eq!(json_raw(&a, "shard"), Some("\"0/2\""), "{a}");
    let mut pull = mover();
    pull.args(["pull", "--insecure-no-auth", "--json", "--shard", "auto/2"]).arg(&url).arg(&here);
    pull.env("JOB_COMPLETION_INDEX", "1").env_remove("SLURM_ARRAY_TASK_ID");
    let b = run_ok(&mut pull);
    assert_eq!(json_raw(&b, "shard"), Some("\"1/2\""), "{b}");
    assert_eq!(json_u64(&a, "bytes").unwrap() + json_u64(&b, "bytes").unwrap(), total);
    assert!(json_u64(&a, "bytes").unwrap() > 0 && json_u64(&b, "bytes").unwrap() > 0);
    assert_same_tree(&src, &here.join("src"));
    assert_eq!(json_u64(&a, "files").unwrap() + json_u64(&b, "files").unwrap(), 60 + 2, "the large file as 2 ranges");
}

#[test]
fn bad_shards_are_usage_errors_that_name_the_fix() {
    let dir = TempDir::new("shards-bad");
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    for (shard, says) in [
        ("4/4", "below the count"),
        ("1/0", "count"),
        ("two/4", "not a number"),
        ("auto", "SLURM_ARRAY_TASK_ID"),
        ("auto/3", "JOB_COMPLETION_INDEX"),
    ] {
        let mut cmd = mover();
        cmd.args(["push", "--insecure-no-auth", "--shard", shard])
            .arg(dir.path().join("f"))
            .arg("mover://127.0.0.1:9/x");
        for v in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
            cmd.env_remove(v);
        }
        let out = run_with_limit(&mut cmd, LIMIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--shard {shard}: {err}");
        assert!(err.starts_with("mover: error: --shard") && err.contains(says), "--shard {shard}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn a_large_file_is_split_between_concurrent_shards_and_assembled_once() {
    let dir = TempDir::new("shards-split");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // 40 MiB: ranges of 16, 16 and 8 MiB.
    let big = (40 << 20) + 12_345;
    write_random_file(&src.join("sub/big.bin"), big, 1);
    let mut total = big;
    for i in 0..12u64 {
        write_random_file(&src.join(format!("f{i}")), 50_000 * i, 10 + i);
        total += 50_000 * i;
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/in", server.addr);
    let count = 3;
    let pushes: Vec<_> = (0..count)
        .map(|i| {
            let mut cmd = mover();
            cmd.args(["push", "--insecure-no-auth", "--json", "--net", "udp", "--rate", "1G", "--shard"])
                .arg(format!("{i}/{count}"))
                .arg(&src)
                .arg(&url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let (mut bytes, mut files) = (0, 0);
    for p in pushes {
        let out = p.wait_with_output().unwrap();
        let json = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "failed: {}\n{json}", String::from_utf8_lossy(&out.stderr));
        bytes += json_u64(&json, "bytes").unwrap();
        files += json_u64(&json, "files").unwrap();
    }
    assert_eq!(bytes, total, "every byte sent exactly once");
    assert_eq!(files, 12 + 3, "12 small files and the large one's 3 ranges, each once");
    assert_same_tree(&src, &root.join("in/src"));
    let leftovers: Vec<String> = list_tree(&root).into_iter().filter(|p| p.contains(".mover.")).collect();
    assert!(leftovers.is_empty(), "ranges left behind: {leftovers:?}");
    // A rerun of one shard finds its ranges in the whole file: nothing is sent.
    let json = run_ok(mover().args(["push", "--insecure-no-auth", "--json", "--shard", "1/3"]).arg(&src).arg(&url));
    assert_eq!(json_u64(&json, "sent_bytes"), Some(0), "{json}");
}
