//! `--shard auto` under a real Slurm (issue 21 item 3): a cluster of one controller and one node on this
//! machine (common/slurm.rs) runs an array job of 4 tasks, each `mover push --shard auto` of the same tree to
//! one daemon; together they deliver the tree byte for byte, and no byte is sent twice. The shipped batch
//! script (dist/examples/shard-array.sbatch) does the same over TLS with a token. Before that, the harness on
//! its own: an array's tasks see their index and the count, and a stopped cluster leaves no task running.

mod common;

use common::slurm::Slurm;
use common::tokens::token_tls;
use common::{hash_file, json_bool, json_u64, write_random_file, Server, TempDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tasks of each array: as many shards as the test asks for.
const TASKS: u32 = 4;

/// The sharded tree's large file: three of the sharder's 16 MiB ranges and a short one, and most of the tree
/// (the other files come to about 38 MiB).
const LARGE_BYTES: u64 = (48 << 20) + 4321;

#[test]
fn an_array_runs_every_task_with_its_index_and_the_count() {
    let Some(slurm) = Slurm::start("an_array_runs_every_task_with_its_index_and_the_count") else { return };
    let tmp = TempDir::new("slurm-smoke");
    let out = quote(tmp.path());
    let ran = Instant::now();
    let job = slurm.submit_array(
        TASKS,
        &format!("echo \"$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT\" > {out}/task-\"$SLURM_ARRAY_TASK_ID\""),
    );
    let ends = slurm.wait(&job, Duration::from_secs(60));
    eprintln!("the array of {TASKS} tasks ran in {:?}", ran.elapsed());
    for end in &ends {
        assert!(end.succeeded(), "task {end:?} failed: {}\n{}", end.output_text(), slurm.diagnostics());
    }
    let mut seen = common::list_tree(tmp.path());
    seen.sort();
    let expected: Vec<String> = (0..TASKS).map(|i| format!("task-{i}")).collect();
    assert_eq!(seen, expected, "each task writes its own file");
    for i in 0..TASKS {
        let said = std::fs::read_to_string(tmp.path().join(format!("task-{i}"))).unwrap();
        assert_eq!(said.trim(), format!("{i} {TASKS}"), "task {i}'s SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT");
    }
}

#[test]
fn a_stopped_cluster_leaves_no_task_running() {
    let Some(slurm) = Slurm::start("a_stopped_cluster_leaves_no_task_running") else { return };
    let job = slurm.submit_array(TASKS, "exec sleep 600");
    slurm.wait_running(&job, Duration::from_secs(60));
    // The sleeps are the tasks' own processes, started by slurmstepd, detached from slurmd. A task is
    // RUNNING as soon as its slurmstepd starts, a moment before its script execs the sleep.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeps = loop {
        let sleeps: Vec<(u32, String)> = slurm.processes().into_iter().filter(|(_, cmd)| cmd == "sleep 600").collect();
        if sleeps.len() == TASKS as usize || Instant::now() > deadline {
            break sleeps;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sleeps.len(), TASKS as usize, "every task's process is one of the cluster's: {:?}", slurm.processes());
    slurm.shutdown().expect("nothing of the cluster is left");
    for (pid, _) in sleeps {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z"), "task process {pid} outlived the cluster: {stat}");
    }
}

/// The test: each task of a 4-task array pushes the whole tree with `--shard auto`, so each moves the
/// shard its `SLURM_ARRAY_TASK_ID` names, all at once to one daemon.
#[test]
fn four_shards_of_an_array_move_a_tree_exactly_once() {
    let Some(slurm) = Slurm::start("four_shards_of_an_array_move_a_tree_exactly_once") else { return };
    let tmp = TempDir::new("slurm-shards");
    let src = tmp.path().join("src");
    let tree = src.join("tree");
    let total_bytes = random_tree(&tree, 21, LARGE_BYTES);
    let root = tmp.path().join("root");
    let reports = tmp.path().join("reports");
    for dir in [&root, &reports] {
        std::fs::create_dir(dir).unwrap();
    }
    let server = Server::start(&root, &["--net", "udp"]);

    let push = format!(
        "exec {mover} push --shard auto --json --net udp --insecure-no-auth {tree} mover://{addr}/ \
         > {reports}/report-\"$SLURM_ARRAY_TASK_ID\".json",
        mover = quote(Path::new(env!("CARGO_BIN_EXE_mover"))),
        tree = quote(&tree),
        addr = server.addr,
        reports = quote(&reports),
    );
    let job = slurm.submit_array(TASKS, &push);
    let ends = slurm.wait(&job, Duration::from_secs(300));

    let mut sent_bytes = 0;
    for end in &ends {
        let report = std::fs::read_to_string(reports.join(format!("report-{}.json", end.index))).unwrap_or_default();
        assert!(
            end.succeeded(),
            "shard {} failed ({} {}): {report}\n{}",
            end.index,
            end.state,
            end.exit_code,
            end.output_text()
        );
        let bytes = json_u64(&report, "bytes").unwrap_or_else(|| panic!("shard {}: no bytes in {report:?}", end.index));
        // A file larger than a shard's share must be cut into ranges for every shard to get some of it.
        assert!(
            bytes > 0,
            "shard {} moved nothing (is the {LARGE_BYTES}-byte file cut into ranges?): {report}",
            end.index
        );
        assert_eq!(json_bool(&report, "verified"), Some(true), "shard {}: {report}", end.index);
        sent_bytes += bytes;
    }
    // The destination holds the tree and nothing else (no partial or temporary files).
    assert_same_trees(&src, &root);
    assert_eq!(sent_bytes, total_bytes, "the shards together moved every byte of the tree once");
}

/// The shipped example, dist/examples/shard-array.sbatch, as it is (its `#SBATCH --array=0-7`, TLS and a
/// token), with its settings from the environment: its 8 tasks deliver a tree, each byte once.
#[test]
fn the_example_batch_script_moves_a_tree_over_tls() {
    let Some(slurm) = Slurm::start("the_example_batch_script_moves_a_tree_over_tls") else { return };
    let tmp = TempDir::new("slurm-example");
    let src = tmp.path().join("src");
    let total_bytes = random_tree(&src.join("run42"), 8, 0);
    let credentials = tmp.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let tls = token_tls(&credentials);
    let root = tmp.path().join("root");
    let server = tls.daemon(&root);
    let logs = tmp.path().join("logs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/examples/shard-array.sbatch");

    let text = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    let dest = format!("mover://{}/", server.addr);
    let env = [
        ("MOVER_BIN", env!("CARGO_BIN_EXE_mover").to_string()),
        ("SHARD_SRC", text(&src.join("run42"))),
        ("SHARD_DEST", dest),
        ("SHARD_CA", text(&tls.certs.ca)),
        ("SHARD_TOKEN_FILE", text(&tls.token)),
        ("SHARD_USER", "alice".to_string()),
        ("SHARD_LOGS", text(&logs)),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let job = slurm.submit_script(&script, 8, &env);
    let ends = slurm.wait(&job, Duration::from_secs(300));

    let mut sent_bytes = 0;
    for end in &ends {
        let report = std::fs::read_to_string(logs.join(format!("shard-{}.json", end.index))).unwrap_or_default();
        let log = std::fs::read_to_string(logs.join(format!("shard-{}.log", end.index))).unwrap_or_default();
        assert!(
            end.succeeded(),
            "task {} failed ({} {}): {report}\n{log}\n{}",
            end.index,
            end.state,
            end.exit_code,
            end.output_text()
        );
        assert_eq!(json_bool(&report, "verified"), Some(true), "task {}: {report}", end.index);
        sent_bytes +=
            json_u64(&report, "bytes").unwrap_or_else(|| panic!("task {}: no bytes in {report:?}", end.index));
    }
    assert_same_trees(&src, &root);
    assert_eq!(sent_bytes, total_bytes, "the tasks together moved every byte of the tree once");
}

/// Writes a tree of several dozen files of random sizes (every seventh empty) in nested directories, an
/// empty directory, and a file of `large` bytes (none if 0): over the sharder's 16 MiB range, its ranges go
/// to different shards. Returns the tree's total bytes.
fn random_tree(root: &Path, seed: u64, large: u64) -> u64 {
    const DIRS: [&str; 6] = ["", "a", "a/b", "a/b/c", "d", "d/e"];
    for dir in DIRS {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let mut rng = mover::sim::SimRng::new(seed);
    let mut total = 0;
    for i in 0..48u64 {
        let size = match rng.next_u64() % 8 {
            _ if i % 7 == 0 => 0,
            0..=3 => rng.next_u64() % 4096,
            _ => rng.next_u64() % (3 << 20),
        };
        write_random_file(&root.join(DIRS[i as usize % DIRS.len()]).join(format!("f{i:02}.bin")), size, seed + i);
        total += size;
    }
    if large > 0 {
        write_random_file(&root.join("a/b/large.bin"), large, seed + 1000);
    }
    total + large
}

/// Asserts that the trees under `a` and `b` have the same paths and the same contents.
fn assert_same_trees(a: &Path, b: &Path) {
    let (want, got) = (listing(a), listing(b));
    let missing: Vec<_> = want.keys().filter(|p| !got.contains_key(*p)).collect();
    let extra: Vec<_> = got.keys().filter(|p| !want.contains_key(*p)).collect();
    let differ: Vec<_> = want.iter().filter(|(p, h)| got.get(*p).is_some_and(|g| g != *h)).map(|(p, _)| p).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{} differs from {}: missing {missing:?}, extra {extra:?}, different contents {differ:?}",
        b.display(),
        a.display()
    );
}

/// Every path under `root`, relative, with its contents' hash (`None` for a directory).
fn listing(root: &Path) -> BTreeMap<PathBuf, Option<u128>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if entry.file_type().unwrap().is_dir() {
                found.insert(relative, None);
                dirs.push(path);
            } else {
                found.insert(relative, Some(hash_file(&path)));
            }
        }
    }
    found
}

/// `path` quoted for `/bin/sh`.
fn quote(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    assert!(!text.contains('\''), "a path without single quotes: {text}");
    format!("'{text}'")
}
