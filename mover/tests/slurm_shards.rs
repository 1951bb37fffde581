//! `--shard auto` under a real Slurm (issue 21 item 3), on a cluster of one controller and one node on this
//! machine (common/slurm.rs). First the harness on its own: an array's tasks see their index and the count,
//! and a stopped cluster leaves no task running.

mod common;

use common::slurm::Slurm;
use common::TempDir;
use std::path::Path;
use std::time::{Duration, Instant};

/// The tasks of each array: as many shards as the test asks for.
const TASKS: u32 = 4;

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

/// `path` quoted for `/bin/sh`.
fn quote(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    assert!(!text.contains('\''), "a path without single quotes: {text}");
    format!("'{text}'")
}
