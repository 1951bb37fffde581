//! `tuning/mover-tune` (issue 17 item 3): check, apply, apply again and revert, inside a network namespace of
//! the test's own, so the host is never touched.
//!
//! What a namespace lets us write, on the kernels seen here (6.x): `net.ipv4.tcp_rmem`/`tcp_wmem`,
//! `net.core.optmem_max` and `somaxconn` are per namespace and writable; `net.core.[rw]mem_max` and
//! `[rw]mem_default` are global, shown read-only inside a namespace; `net.core.netdev_max_backlog` and
//! `net.ipv4.udp_mem` are global and not shown at all. The test sets the writable ones small, and the script
//! must say which ones it cannot set here. The NIC part runs on a veth pair inside the namespace: veth
//! supports `ethtool -L` (rx/tx channels) and `-K` (GRO), not `-G` (rings) and has no IRQs, which the
//! script must say and carry on. Every host value the profile names is read before and after and must be
//! unchanged.

mod common;

use common::{skip_or_fail, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The per-namespace settings the test makes small, with the small values.
const SMALL: &[(&str, &str)] = &[
    ("net.ipv4.tcp_rmem", "4096 16384 1048576"),
    ("net.ipv4.tcp_wmem", "4096 8192 1048576"),
    ("net.core.optmem_max", "20480"),
];

/// A network namespace with a veth pair inside it, deleted on drop (which deletes the pair too).
struct Namespace {
    name: String,
    veth: String,
}

impl Namespace {
    fn new() -> Result<Namespace, String> {
        let pid = std::process::id();
        let ns = Namespace { name: format!("h3tune-{pid}"), veth: format!("h3t{pid}a") };
        run(Command::new("ip").args(["netns", "add", &ns.name]))?;
        let peer = format!("h3t{pid}b");
        run(Command::new("ip").args(["-n", &ns.name, "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer]))?;
        for dev in [&ns.veth, &peer] {
            run(Command::new("ip").args(["-n", &ns.name, "link", "set", dev, "up"]))?;
        }
        Ok(ns)
    }

    /// `argv` run inside the namespace.
    fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {argv:?}: {e}"))
    }

    /// A sysctl's value inside the namespace, whitespace collapsed.
    fn sysctl(&self, key: &str) -> String {
        let out = self.exec(&["sysctl", "-n", key]);
        assert!(out.status.success(), "sysctl -n {key}: {}", String::from_utf8_lossy(&out.stderr));
        squash(&String::from_utf8_lossy(&out.stdout))
    }

    /// The current value of one line of `ethtool -l` ("RX:") or `ethtool -k` ("generic-receive-offload:").
    fn ethtool(&self, flag: &str, key: &str) -> String {
        let out = self.exec(&["ethtool", flag, &self.veth]);
        assert!(out.status.success(), "ethtool {flag}: {}", String::from_utf8_lossy(&out.stderr));
        // `ethtool -l` lists the maximums first and the current settings second: the last match is current.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(key))
            .next_back()
            .unwrap_or_else(|| panic!("ethtool {flag} has no {key}"))
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// `tuning/mover-tune ARGS --state STATE` inside the namespace.
    fn tune(&self, args: &[&str], state: &Path) -> Output {
        let script = tuning_dir().join("mover-tune");
        let mut argv = vec![script.to_str().expect("utf-8 path")];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--state", state.to_str().expect("utf-8 path")]);
        self.exec(&argv)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn tuning_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning")
}

/// The profile's `key = value` lines, comments dropped.
fn profile(name: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(tuning_dir().join(format!("sysctl/{name}.conf"))).expect("read profile");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), squash(v)))
        .collect()
}

/// The host's (this process's namespace) value of every sysctl a profile names, for the "untouched" check.
fn host_values(keys: &[String]) -> Vec<(String, Option<String>)> {
    keys.iter()
        .map(|k| {
            (k.clone(), std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/"))).ok().map(|v| squash(&v)))
        })
        .collect()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The status column of a setting's line in `--check` output.
fn check_line<'a>(report: &'a str, setting: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{setting} ")))
        .unwrap_or_else(|| panic!("--check does not list {setting}:\n{report}"))
}

#[test]
fn check_apply_again_and_revert_in_a_namespace() {
    const TEST: &str = "check_apply_again_and_revert_in_a_namespace";
    if !common::is_root() {
        skip_or_fail(TEST, "needs root for ip netns (CI runs as root)");
        return;
    }
    for tool in ["ip", "ethtool", "sysctl"] {
        if Command::new(tool).arg("--version").output().is_err() && Command::new(tool).arg("-V").output().is_err() {
            skip_or_fail(TEST, &format!("{tool} is not installed (./test.sh installs it)"));
            return;
        }
    }
    let profile_10g = profile("10g");
    let keys: Vec<String> = profile_10g.iter().map(|(k, _)| k.clone()).collect();
    for (key, _) in SMALL {
        assert!(keys.iter().any(|k| k == key), "the 10g profile sets {key}");
    }
    let host_before = host_values(&keys);

    let ns = Namespace::new().expect("create the namespace");
    let dir = TempDir::new("h3-tuning");
    let state = dir.path().join("saved.conf");
    for (key, value) in SMALL {
        let out = ns.exec(&["sysctl", "-w", &format!("{key}={value}")]);
        assert!(out.status.success(), "sysctl -w {key}: {}", text(&out));
    }
    let channels_before = (ns.ethtool("-l", "RX:"), ns.ethtool("-l", "TX:"));
    let gro_before = ns.ethtool("-k", "generic-receive-offload:");
    assert_eq!(gro_before, "off", "veth starts with GRO off");

    // --check: reports, changes nothing, exits 3 because settings differ.
    let check = ns.tune(&["--check", "10g", "--iface", &ns.veth], &state);
    let report = text(&check);
    assert_eq!(check.status.code(), Some(3), "{report}");
    for (key, value) in SMALL {
        let line = check_line(&report, key);
        assert!(line.contains(value) && line.ends_with("differs"), "{line}");
        assert_eq!(&ns.sysctl(key), value, "--check changed {key}");
    }
    assert!(check_line(&report, "net.core.rmem_max").contains("read-only here"), "{report}");
    assert!(report.contains("rings (ethtool -G): not supported by this driver"), "{report}");
    assert!(report.contains("net.core.netdev_max_backlog: not present here"), "{report}");
    assert!(check_line(&report, &format!("{} generic-receive-offload", ns.veth)).ends_with("differs"), "{report}");
    assert!(!state.exists(), "--check wrote a state file");

    // --apply 10g: the namespace's values are now the profile's; originals saved.
    let apply = ns.tune(&["--apply", "10g", "--iface", &ns.veth], &state);
    let applied = text(&apply);
    assert!(apply.status.success(), "{applied}");
    for (key, _) in SMALL {
        let wanted = &profile_10g.iter().find(|(k, _)| k == key).expect("in profile").1;
        assert_eq!(&ns.sysctl(key), wanted, "after --apply:\n{applied}");
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let max_rx: usize = {
        let out = String::from_utf8_lossy(&ns.exec(&["ethtool", "-l", &ns.veth]).stdout).into_owned();
        out.lines().find_map(|l| l.strip_prefix("RX:")).expect("max RX").trim().parse().expect("number")
    };
    assert_eq!(ns.ethtool("-l", "RX:"), max_rx.min(cores).to_string(), "{applied}");
    assert_eq!(ns.ethtool("-l", "TX:"), max_rx.min(cores).to_string(), "{applied}");
    assert_eq!(ns.ethtool("-k", "generic-receive-offload:"), "on", "{applied}");
    assert_eq!(ns.ethtool("-k", "rx-udp-gro-forwarding:"), "on", "{applied}");
    assert!(applied.contains("net.core.rmem_max: ") && applied.contains("read-only here"), "{applied}");
    let saved = std::fs::read_to_string(&state).expect("the state file exists after --apply");
    for (key, value) in SMALL {
        assert!(saved.contains(&format!("sysctl\t{key}\t{value}\n")), "{key} saved:\n{saved}");
    }

    // --apply 10g again: nothing changes, and it says so; the saved originals are kept as they were.
    let again = ns.tune(&["--apply", "10g", "--iface", &ns.veth], &state);
    let again_text = text(&again);
    assert!(again.status.success(), "{again_text}");
    assert!(again_text.contains("nothing to change"), "{again_text}");
    assert!(!again_text.contains(" -> "), "a second apply changed something:\n{again_text}");
    assert_eq!(std::fs::read_to_string(&state).expect("state"), saved, "a second apply rewrote the saved state");
    // A larger profile on top: it raises further, and the first originals still stand.
    let bigger = ns.tune(&["--apply", "100g"], &state);
    assert!(bigger.status.success(), "{}", text(&bigger));
    assert_eq!(
        ns.sysctl("net.ipv4.tcp_rmem"),
        profile("100g").iter().find(|(k, _)| k == "net.ipv4.tcp_rmem").unwrap().1
    );
    assert_eq!(std::fs::read_to_string(&state).expect("state"), saved, "originals must not be overwritten");

    // --revert: exactly the values from before, and the state file is gone.
    let revert = ns.tune(&["--revert"], &state);
    assert!(revert.status.success(), "{}", text(&revert));
    for (key, value) in SMALL {
        assert_eq!(&ns.sysctl(key), value, "after --revert:\n{}", text(&revert));
    }
    assert_eq!((ns.ethtool("-l", "RX:"), ns.ethtool("-l", "TX:")), channels_before);
    assert_eq!(ns.ethtool("-k", "generic-receive-offload:"), gro_before);
    assert!(!state.exists(), "--revert leaves the state file");
    let nothing = ns.tune(&["--revert"], &state);
    assert!(nothing.status.success() && text(&nothing).contains("nothing to revert"), "{}", text(&nothing));

    drop(ns);
    assert_eq!(host_values(&keys), host_before, "the host's own settings changed");
}

#[test]
fn bad_arguments_are_one_clear_error() {
    let script = tuning_dir().join("mover-tune");
    for (args, says) in [
        (&["--apply"][..], "--apply needs a PROFILE"),
        (&["--check", "40g"][..], "no profile '40g'"),
        (&["--frobnicate"][..], "unknown argument"),
        (&[][..], "say what to do"),
    ] {
        let out = Command::new(&script).args(args).output().expect("run mover-tune");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("mover-tune: error: ") && err.contains(says), "{args:?}: {err}");
    }
    // --check needs no root and changes nothing; on any host it prints the table.
    let out = Command::new(&script).args(["--check", "25g", "--state", "/nonexistent/x"]).output().expect("run");
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("net.core.rmem_max"), "{}", text(&out));
}
