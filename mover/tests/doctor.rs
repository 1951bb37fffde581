//! `mover doctor`, the real binary: its JSON on this machine, its findings inside network namespaces with
//! small and large socket buffers, that it changes nothing, and `--peer` against a real daemon on loopback.

mod common;

use common::netns::{skip_unless_root, NetnsPair, VETH};
use common::{mover, Server, TempDir};
use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

/// A parsed JSON value: just enough of JSON to check doctor's output structurally (no dependency).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let b = text.trim().as_bytes();
        let mut i = 0;
        let v = Self::value(b, &mut i)?;
        if i != b.len() {
            return Err(format!("trailing text at {i}"));
        }
        Ok(v)
    }

    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }

    fn value(b: &[u8], i: &mut usize) -> Result<Json, String> {
        Self::ws(b, i);
        let v = match b.get(*i) {
            Some(b'{') => {
                *i += 1;
                let mut m = BTreeMap::new();
                Self::ws(b, i);
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    Self::ws(b, i);
                    let Json::Str(k) = Self::value(b, i)? else { return Err(format!("key expected at {i}")) };
                    Self::ws(b, i);
                    if b.get(*i) != Some(&b':') {
                        return Err(format!(": expected at {i}"));
                    }
                    *i += 1;
                    m.insert(k, Self::value(b, i)?);
                    Self::ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            break Json::Obj(m);
                        }
                        _ => return Err(format!(", or }} expected at {i}")),
                    }
                }
            }
            Some(b'[') => {
                *i += 1;
                let mut a = Vec::new();
                Self::ws(b, i);
                if b.get(*i) == Some(&b']') {
                    *i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(Self::value(b, i)?);
                    Self::ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b']') => {
                            *i += 1;
                            break Json::Arr(a);
                        }
                        _ => return Err(format!(", or ] expected at {i}")),
                    }
                }
            }
            Some(b'"') => {
                *i += 1;
                let mut s = String::new();
                loop {
                    match b.get(*i) {
                        None => return Err("unterminated string".into()),
                        Some(b'"') => {
                            *i += 1;
                            break Json::Str(s);
                        }
                        Some(b'\\') => {
                            let c = *b.get(*i + 1).ok_or("bad escape")?;
                            *i += 2;
                            match c {
                                b'n' => s.push('\n'),
                                b't' => s.push('\t'),
                                b'u' => {
                                    let hex = std::str::from_utf8(&b[*i..*i + 4]).map_err(|e| e.to_string())?;
                                    let cp = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                    s.push(char::from_u32(cp).unwrap_or('?'));
                                    *i += 4;
                                }
                                c => s.push(c as char),
                            }
                        }
                        Some(_) => {
                            let start = *i;
                            while *i < b.len() && b[*i] != b'"' && b[*i] != b'\\' {
                                *i += 1;
                            }
                            s.push_str(std::str::from_utf8(&b[start..*i]).map_err(|e| e.to_string())?);
                        }
                    }
                }
            }
            Some(b't') if b[*i..].starts_with(b"true") => {
                *i += 4;
                Json::Bool(true)
            }
            Some(b'f') if b[*i..].starts_with(b"false") => {
                *i += 5;
                Json::Bool(false)
            }
            Some(b'n') if b[*i..].starts_with(b"null") => {
                *i += 4;
                Json::Null
            }
            Some(_) => {
                let start = *i;
                while *i < b.len() && (b[*i].is_ascii_digit() || b"+-.eE".contains(&b[*i])) {
                    *i += 1;
                }
                let t = std::str::from_utf8(&b[start..*i]).unwrap();
                Json::Num(t.parse().map_err(|_| format!("bad value at {start}: '{t}'"))?)
            }
            None => return Err("unexpected end".into()),
        };
        Ok(v)
    }

    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(k),
            _ => None,
        }
    }

    fn num(&self, k: &str) -> Option<f64> {
        match self.get(k)? {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn str(&self, k: &str) -> Option<&str> {
        match self.get(k)? {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Runs doctor with `args` and returns its parsed JSON and the whole output.
fn doctor_json(cmd: &mut std::process::Command) -> (Json, Output) {
    let out = cmd.output().expect("run mover doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "doctor failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json = Json::parse(&stdout).unwrap_or_else(|e| panic!("doctor's JSON does not parse: {e}\n{stdout}"));
    (json, out)
}

/// The finding whose `check` is `check`.
fn finding<'a>(j: &'a Json, check: &str) -> &'a Json {
    let Some(Json::Arr(f)) = j.get("findings") else { panic!("no findings array: {j:?}") };
    f.iter().find(|x| x.str("check") == Some(check)).unwrap_or_else(|| panic!("no finding '{check}' in {f:?}"))
}

/// Values that doctor must not change, read from the calling process's namespace (or `ns`'s).
fn settings(ns: Option<&str>) -> Vec<String> {
    let files = [
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/wmem_max",
        "/proc/sys/net/core/rmem_default",
        "/proc/sys/net/core/optmem_max",
        "/proc/sys/net/core/netdev_max_backlog",
        "/proc/sys/net/ipv4/udp_mem",
        "/proc/sys/kernel/io_uring_disabled",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ];
    // In the host's namespace only `lo`: other programs may add and remove links there meanwhile.
    let links = if ns.is_some() { "ip -o link" } else { "ip -o link show dev lo" };
    let script = format!("for f in \"$@\"; do echo \"$f=$(cat $f 2>/dev/null)\"; done; {links}");
    let mut argv = vec!["sh", "-c", &script, "sh"];
    argv.extend(files);
    let mut c = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).args(&argv);
            c
        }
        None => {
            let mut c = std::process::Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let out = c.output().expect("read settings");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn doctor_json_on_this_host_has_every_key_and_names_a_measured_bottleneck() {
    let dir = TempDir::new("h2-doctor-json");
    let before = settings(None);
    let started = Instant::now();
    let (j, _) = doctor_json(mover().args(["doctor", "--json", "--dir"]).arg(dir.path()));
    let took = started.elapsed();
    // Default sizes: ~2-4 s on an idle 2-core VM; the bound leaves room for a build running alongside.
    assert!(took < Duration::from_secs(60), "doctor took {took:?}");
    assert_eq!(settings(None), before, "doctor changed a setting");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "doctor left a file in --dir");

    let Some(Json::Arr(findings)) = j.get("findings") else { panic!("findings: {j:?}") };
    assert!(findings.len() >= 10, "{findings:?}");
    for f in findings {
        for k in ["check", "severity", "seen", "why", "fix"] {
            assert!(f.str(k).is_some(), "finding without a string '{k}': {f:?}");
        }
        assert!(["ok", "warn", "bad"].contains(&f.str("severity").unwrap()), "{f:?}");
        if f.str("severity") != Some("ok") && f.str("check").is_some_and(|c| c.starts_with("sysctl")) {
            assert!(!f.str("fix").unwrap().is_empty(), "a sysctl finding to act on names its fix: {f:?}");
        }
    }
    assert!(finding(&j, "sysctl net.core.rmem_max")
        .str("why")
        .unwrap()
        .contains("hardware-notes/nic.md#socket-buffers"));
    let m = j.get("measured").expect("measured");
    let stages = ["disk_read", "disk_write", "cipher", "udp"];
    for s in stages {
        let v = m.num(&format!("{s}_bps")).unwrap_or_else(|| panic!("measured.{s}_bps missing: {m:?}"));
        assert!(v > 0.0, "{s}_bps = {v}");
    }
    assert!(matches!(m.get("disk_read_from_page_cache"), Some(Json::Bool(_))), "{m:?}");
    let b = j.get("bottleneck").expect("bottleneck");
    let stage = b.str("stage").expect("bottleneck.stage");
    assert!(stages.contains(&stage), "bottleneck {stage} is not a measured stage");
    let bps = b.num("bps").unwrap();
    assert_eq!(bps, m.num(&format!("{stage}_bps")).unwrap(), "the bottleneck's rate is its stage's");
    for s in stages {
        assert!(m.num(&format!("{s}_bps")).unwrap() >= bps, "{s} is slower than the named bottleneck {stage}");
    }
    assert!(b.str("text").unwrap().contains(" at "), "{b:?}");
}

#[test]
fn doctor_changes_nothing() {
    let dir = TempDir::new("h2-doctor-nochange");
    let before = settings(None);
    let out = mover().args(["doctor", "--disk-size", "8M", "--dir"]).arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("bottleneck: ") && text.contains("nothing was changed"), "{text}");
    assert_eq!(settings(None), before, "doctor changed a setting");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "doctor left a file in --dir");
}

/// Runs doctor `--json` inside `ns`, with `/proc/sys/net/core/{r,w}mem_max` showing `buffers`.
///
/// On this kernel (6.18) `net.core.rmem_max`, `wmem_max`, `rmem_default` and `wmem_default` are global:
/// a child network namespace shows the host's values read-only (mode 0444, writes fail with EACCES), and
/// `netdev_max_backlog`, `busy_poll` and `busy_read` are absent there; `optmem_max` (and `somaxconn`,
/// `net.ipv4.udp_rmem_min`/`udp_wmem_min`, `tcp_rmem`) are per namespace and writable. So a namespace
/// cannot have small socket buffer ceilings of its own, and changing the host's would disturb every other
/// test. The ceilings are presented instead by bind-mounting a file over the two procfs files in a private
/// mount namespace inside the network namespace: the doctor binary reads the same paths it reads on any host.
/// `optmem_max` and the veth's MTU are the namespace's own, set for real.
fn doctor_in(pair: &NetnsPair, ns: &str, buffers: u64, dir: &std::path::Path, extra: &[&str]) -> Output {
    let value = dir.join(format!("buffers-{ns}"));
    std::fs::write(&value, format!("{buffers}\n")).unwrap();
    let script = format!(
        "mount --bind {v} /proc/sys/net/core/rmem_max && mount --bind {v} /proc/sys/net/core/wmem_max && exec \"$@\"",
        v = value.display()
    );
    let work = dir.join(format!("work-{ns}"));
    std::fs::create_dir_all(&work).unwrap();
    let mut argv = vec!["unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"];
    let bin = env!("CARGO_BIN_EXE_mover");
    let work_s = work.to_str().unwrap();
    argv.extend([bin, "doctor", "--json", "--disk-size", "8M", "--dir", work_s]);
    argv.extend(extra);
    pair.command(ns, &argv).output().expect("run doctor in the namespace")
}

#[test]
fn doctor_in_a_namespace_reports_small_socket_buffers_with_the_fix_and_not_large_ones() {
    if skip_unless_root("doctor_in_a_namespace_reports_small_socket_buffers_with_the_fix_and_not_large_ones") {
        return;
    }
    let pair = NetnsPair::new(Some(1280)).expect("namespaces");
    let dir = TempDir::new("h2-doctor-ns");
    // Namespace a: small everything. Namespace b: large ceilings, a normal MTU.
    pair.exec(&pair.a, &["sysctl", "-q", "-w", "net.core.optmem_max=4096"]).unwrap();
    pair.exec(&pair.b, &["ip", "link", "set", VETH, "mtu", "1500"]).unwrap();
    let (before_a, before_b) = (settings(Some(&pair.a)), settings(Some(&pair.b)));

    let out = doctor_in(&pair, &pair.a, 212_992, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let small = Json::parse(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for name in ["rmem_max", "wmem_max"] {
        let f = finding(&small, &format!("sysctl net.core.{name}"));
        assert_eq!(f.str("severity"), Some("bad"), "{f:?}");
        assert!(f.str("seen").unwrap().starts_with("212992"), "{f:?}");
        assert!(f.str("fix").unwrap().starts_with(&format!("sysctl -w net.core.{name}=268435456")), "{f:?}");
    }
    let f = finding(&small, "sysctl net.core.optmem_max");
    assert_eq!((f.str("severity"), f.str("fix")), (Some("warn"), Some("sysctl -w net.core.optmem_max=131072")));
    let f = finding(&small, &format!("{VETH} mtu"));
    assert_eq!(f.str("severity"), Some("warn"), "{f:?}");
    assert_eq!(f.str("fix"), Some(format!("ip link set dev {VETH} mtu 1500").as_str()));
    let f = finding(&small, "sysctl net.core.netdev_max_backlog");
    assert!(f.str("seen").unwrap().contains("not in this network namespace"), "{f:?}");
    // The veth is probed for AF_XDP: root can open it in copy mode (veth has no zero-copy).
    let xdp = finding(&small, &format!("{VETH} af_xdp")).str("seen").unwrap().to_string();
    assert!(xdp.contains("copy") && xdp.contains("xdp-features"), "{xdp}");
    let Some(Json::Arr(probed)) = small.get("measured").and_then(|m| m.get("xdp")) else { panic!("{small:?}") };
    assert!(probed.iter().any(|x| x.str("interface") == Some(VETH)), "{probed:?}");

    let out = doctor_in(&pair, &pair.b, 268_435_456, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let large = Json::parse(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for check in ["sysctl net.core.rmem_max", "sysctl net.core.wmem_max", "sysctl net.core.optmem_max"] {
        let f = finding(&large, check);
        assert_eq!((f.str("severity"), f.str("fix")), (Some("ok"), Some("")), "{f:?}");
    }
    assert_eq!(finding(&large, &format!("{VETH} mtu")).str("severity"), Some("ok"));

    // --strict turns the bad finding into exit code 1 (and the one error line).
    let out = doctor_in(&pair, &pair.a, 212_992, dir.path(), &["--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("finding(s) are bad (--strict)"));

    assert_eq!(settings(Some(&pair.a)), before_a, "doctor changed a setting in namespace a");
    assert_eq!(settings(Some(&pair.b)), before_b, "doctor changed a setting in namespace b");
}

#[test]
fn doctor_peer_measures_rtt_and_goodput_against_a_real_daemon() {
    let root = TempDir::new("h2-doctor-peer-root");
    let dir = TempDir::new("h2-doctor-peer-work");
    let server = Server::start(root.path(), &[]);
    let url = format!("mover://{}/in", server.addr);
    let child = mover()
        .args(["doctor", "--json", "--disk-size", "8M", "--peer-seconds", "1", "--insecure-no-auth", "--peer", &url])
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let j = Json::parse(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let m = j.get("measured").unwrap();
    let rtt = m.num("peer_rtt_ms").unwrap_or_else(|| panic!("no peer_rtt_ms: {stdout}"));
    let goodput = m.num("peer_goodput_bps").unwrap();
    assert!(rtt > 0.0 && rtt < 100.0, "loopback RTT {rtt} ms");
    assert!(goodput > 1e6, "goodput {goodput} bit/s");
    // The pushed file really landed on the daemon, whole.
    let landed = root.path().join("in").join(format!("mover-doctor-{pid}")).join("doctor.bin");
    let len = std::fs::metadata(&landed).unwrap_or_else(|e| panic!("{}: {e}", landed.display())).len();
    assert_eq!(len, m.num("peer_bytes").unwrap() as u64);
    let stages = ["disk_read", "disk_write", "cipher", "udp", "peer"];
    assert!(stages.contains(&j.get("bottleneck").unwrap().str("stage").unwrap()));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "doctor left its generated data behind");
}

#[test]
fn doctor_refuses_bad_arguments_with_one_line_and_exit_code_2() {
    let out = mover().args(["doctor", "--peer", "http://host/x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mover: error: --peer takes a daemon's URL, mover://HOST[:PORT]"), "{err}");
    let out = mover().args(["doctor", "--dir", "/nonexistent/h2-doctor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mover: error: --dir '/nonexistent/h2-doctor' is not a directory"), "{err}");
    let out = mover().args(["doctor", "--peer-seconds", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
