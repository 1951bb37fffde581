//! What `dist/` ships (issue 17 items 5 and 6): the systemd unit, checked by `systemd-analyze verify` and
//! against what a real daemon does (every system call of a traced push and pull, and every socket family,
//! must be allowed by the unit's filters), the example config, whose keys must be `mover serve` flags and
//! which `serve --check-config` must accept, and the Kubernetes Indexed Job example, whose `mover push` flags
//! must exist (the Slurm example runs for real in slurm_shards.rs).

mod common;

use common::{mover, skip_or_fail, write_random_file, TempDir};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

/// The values of every `KEY=` line of the unit, split on whitespace.
fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(dist().join("mover.service")).expect("read dist/mover.service");
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze", "--version") {
        skip_or_fail(
            "unit_passes_systemd_analyze_verify",
            "systemd-analyze is not installed (apt-get install systemd)",
        );
        return;
    }
    let dir = TempDir::new("h3-unit");
    // verify checks that ExecStart's binary exists and that `man mover-serve` (Documentation=) resolves:
    // point them at the binary under test and at freshly generated pages.
    let man = dir.path().join("man/man1");
    let out = mover().args(["man", "--dir"]).arg(&man).output().expect("mover man");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = std::fs::read_to_string(dist().join("mover.service"))
        .expect("read unit")
        .replace("/usr/bin/mover", env!("CARGO_BIN_EXE_mover"));
    assert!(unit.contains(&format!("ExecStart={} serve --config /etc/mover/serve.toml", env!("CARGO_BIN_EXE_mover"))));
    let path = dir.path().join("mover.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("run systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // verify exits 0 on many warnings (an unparsable value is "ignoring"): any output is a finding.
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    // The settings the unit promises, by name.
    for (key, value) in [
        ("Restart", "on-failure"),
        ("User", "mover"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("LimitMEMLOCK", "infinity"),
    ] {
        assert_eq!(unit_values(key), vec![value.to_string()], "{key}");
    }
    let caps: BTreeSet<String> = unit_values("CapabilityBoundingSet").into_iter().collect();
    let want: BTreeSet<String> =
        ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_IPC_LOCK"].iter().map(|s| s.to_string()).collect();
    assert_eq!(caps, want, "the bounding set is what AF_XDP and SO_RCVBUFFORCE need");
    assert_eq!(unit_values("AmbientCapabilities").into_iter().collect::<BTreeSet<_>>(), want);
    // The one writable path is the example config's receive root.
    let example = std::fs::read_to_string(dist().join("serve.example.toml")).expect("read example config");
    let root = example.lines().find_map(|l| l.strip_prefix("root = ")).expect("the example sets root");
    assert_eq!(unit_values("ReadWritePaths"), vec![root.trim_matches('"').to_string()]);
}

/// The system calls a `@group` or a name of `systemd-analyze syscall-filter` stands for.
fn expand(name: &str, groups: &[(String, Vec<String>)], out: &mut BTreeSet<String>) {
    if name.starts_with('@') {
        let members = &groups.iter().find(|(g, _)| g == name).unwrap_or_else(|| panic!("no group {name}")).1;
        for m in members {
            expand(m, groups, out);
        }
    } else {
        out.insert(name.to_string());
    }
}

/// The unit's `SystemCallFilter=` as a set of system call names.
fn allowed_syscalls() -> BTreeSet<String> {
    let out = Command::new("systemd-analyze").arg("syscall-filter").output().expect("systemd-analyze syscall-filter");
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            groups.push((line.split_whitespace().next().unwrap_or("").to_string(), Vec::new()));
        } else if let (Some(group), word) = (groups.last_mut(), line.trim()) {
            if !word.is_empty() && !word.starts_with('#') {
                group.1.push(word.to_string());
            }
        }
    }
    let mut allowed = BTreeSet::new();
    for name in unit_values("SystemCallFilter") {
        expand(&name, &groups, &mut allowed);
    }
    assert!(allowed.len() > 300 && allowed.contains("openat"), "expanding the filter failed: {allowed:?}");
    allowed
}

/// Runs `mover serve --once` under strace, lets `client` run against its address, waits for the daemon to
/// exit, and returns the system calls (by name) and socket families it used.
fn traced_daemon(root: &Path, trace: &Path, client: impl FnOnce(&str)) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut daemon = common::KillOnDrop(
        Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(trace)
            .arg(env!("CARGO_BIN_EXE_mover"))
            .args(["serve", "--insecure-no-auth", "--once", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strace mover serve"),
    );
    let mut lines = BufReader::new(daemon.0.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").expect("read stderr");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(',').next().expect("address").to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    client(&addr);
    let status = daemon.wait_timeout(Duration::from_secs(60)).expect("daemon exits after one session");
    assert!(status.success(), "the traced daemon failed");
    let text = std::fs::read_to_string(trace).expect("read trace");
    let mut calls = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        // "PID name(args) = r", "PID <... name resumed>", "PID +++ exited", "PID --- SIGCHLD"
        let rest = line.split_once(' ').map_or("", |(_, r)| r.trim_start());
        let name = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            calls.insert(name);
        }
        if let Some(args) = rest.strip_prefix("socket(") {
            families.insert(args.split(',').next().unwrap_or("").to_string());
        }
    }
    (calls, families)
}

#[test]
fn unit_allows_every_system_call_of_a_traced_daemon() {
    const TEST: &str = "unit_allows_every_system_call_of_a_traced_daemon";
    if !have("systemd-analyze", "--version") || !have("strace", "-V") {
        skip_or_fail(TEST, "needs systemd-analyze and strace (apt-get install systemd strace)");
        return;
    }
    if !common::is_root() {
        skip_or_fail(TEST, "needs root to trace (CI runs as root)");
        return;
    }
    let allowed = allowed_syscalls();
    let families: BTreeSet<String> = unit_values("RestrictAddressFamilies").into_iter().collect();
    let dir = TempDir::new("h3-strace");
    let (root, src, back) = (dir.path().join("root"), dir.path().join("src"), dir.path().join("back"));
    for d in [&root, &src, &back] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    // Past 8 MiB a file keeps a resume journal: that code path's calls are traced too.
    write_random_file(&src.join("big"), 24 << 20, 17);
    write_random_file(&src.join("small"), 5000, 18);

    let (mut calls, mut used) = traced_daemon(&root, &dir.path().join("push.trace"), |addr| {
        let out = mover()
            .args(["push", "--insecure-no-auth"])
            .arg(&src)
            .arg(format!("mover://{addr}/in"))
            .output()
            .expect("push");
        assert!(out.status.success(), "push: {}", String::from_utf8_lossy(&out.stderr));
    });
    let (pull_calls, pull_used) = traced_daemon(&root, &dir.path().join("pull.trace"), |addr| {
        let out = mover()
            .args(["pull", "--insecure-no-auth"])
            .arg(format!("mover://{addr}/in/src"))
            .arg(&back)
            .output()
            .expect("pull");
        assert!(out.status.success(), "pull: {}", String::from_utf8_lossy(&out.stderr));
    });
    calls.extend(pull_calls);
    used.extend(pull_used);
    assert!(calls.contains("recvmmsg") && calls.contains("accept4"), "the trace is of the daemon: {calls:?}");
    assert!(common::hash_file(&back.join("src/big")) == common::hash_file(&src.join("big")));
    let denied: Vec<&String> = calls.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(denied.is_empty(), "dist/mover.service's SystemCallFilter would deny {denied:?} (all calls: {calls:?})");
    let refused: Vec<&String> = used.iter().filter(|f| !families.contains(*f)).collect();
    assert!(refused.is_empty(), "RestrictAddressFamilies would refuse {refused:?}");
}

/// The keys set (or shown commented out, `# key = ...`) in dist/serve.example.toml.
fn example_keys() -> Vec<String> {
    let text = std::fs::read_to_string(dist().join("serve.example.toml")).expect("read example config");
    text.lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, _)| k.to_string())
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect()
}

#[test]
fn example_config_is_accepted_by_serve() {
    let help = String::from_utf8(mover().args(["serve", "--help"]).output().expect("serve --help").stdout).unwrap();
    if !help.contains("--check-config") {
        skip_or_fail("example_config_is_accepted_by_serve", "this build's `serve` has no --config/--check-config yet");
        return;
    }
    let keys = example_keys();
    assert!(keys.len() >= 15, "{keys:?}");
    for key in &keys {
        assert!(help.contains(&format!("--{key} ")) || help.contains(&format!("--{key}\n")), "no flag --{key}");
    }
    for key in ["listen", "root", "tls-cert", "max-sessions", "metrics", "log-format"] {
        assert!(keys.iter().any(|k| k == key), "the example shows {key}");
    }
    // The example's paths are the packaged ones; the command line overrides them with files that exist here.
    let dir = TempDir::new("h3-config");
    let certs = common::certs::make(dir.path());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice {}\n", "ab".repeat(32))).expect("write tokens");
    let out = mover()
        .args(["serve", "--config"])
        .arg(dist().join("serve.example.toml"))
        .arg("--check-config")
        .arg("--root")
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&certs.server_cert)
        .arg("--tls-key")
        .arg(&certs.server_key)
        .arg("--tokens")
        .arg(&tokens)
        .output()
        .expect("serve --check-config");
    let settings = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{settings}", String::from_utf8_lossy(&out.stderr));
    for line in
        ["max-sessions = 64", "log-format = \"json\"", "metrics = \"127.0.0.1:9400\"", "require-encryption = true"]
    {
        assert!(settings.lines().any(|l| l.starts_with(line)), "effective settings lack {line}:\n{settings}");
    }
}

/// The arguments of the Kubernetes example's container command (dist/examples/shard-indexed-job.yaml): the
/// block sequence under `command:`, each item without its trailing comment.
fn indexed_job_command(yaml: &str) -> Vec<String> {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "command:").skip(1);
    let mut args = Vec::new();
    while let Some(item) = lines.next().and_then(|l| l.trim().strip_prefix("- ")) {
        args.push(item.split(" #").next().unwrap().trim().to_string());
    }
    args
}

/// The value of the first `KEY: VALUE` line (any indentation) of the Kubernetes example, comment removed.
fn indexed_job_value<'a>(yaml: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}: ");
    yaml.lines().find_map(|l| l.trim().strip_prefix(&prefix)).map(|v| v.split(" #").next().unwrap().trim())
}

#[test]
fn indexed_job_example_runs_a_push_with_flags_it_has_over_its_completions() {
    let yaml = std::fs::read_to_string(dist().join("examples/shard-indexed-job.yaml")).expect("read the example");
    let command = indexed_job_command(&yaml);
    assert_eq!(command.get(..2), Some(&["mover".to_string(), "push".to_string()][..]), "{command:?}");
    let out = mover().args(["push", "--help"]).output().expect("mover push --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let flags: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--"))
        .collect();
    for arg in command.iter().filter(|a| a.starts_with("--")) {
        assert!(flags.contains(arg.as_str()), "mover push has no {arg}: {flags:?}");
    }
    // Each pod takes its index from JOB_COMPLETION_INDEX, and the count only from the flag.
    let shard = command.iter().skip_while(|a| *a != "--shard").nth(1).expect("a --shard value");
    assert_eq!(indexed_job_value(&yaml, "completionMode"), Some("Indexed"));
    let completions = indexed_job_value(&yaml, "completions").expect("completions");
    assert_eq!(shard, &format!("auto/{completions}"), "--shard auto/N, N the Job's completions");
    assert_eq!(indexed_job_value(&yaml, "parallelism"), Some(completions), "every shard runs at once");
}
