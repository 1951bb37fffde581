//! Resume after `kill -9`, with real processes in two network namespaces (root only; CI runs as root): the
//! client or the server is killed at a random moment of a push, then the same command runs again. Every time
//! the tree must arrive identical, and the rerun must put on the wire at most what the receiver was missing
//! plus one window (issue 15). The seed is printed; `MOVER_SEED=N` replays a run.

mod common;

use common::netns::{skip_unless_root, NetnsPair};
use common::{hash_file, json_u64, write_random_file, KillOnDrop, TempDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MOVER: &str = env!("CARGO_BIN_EXE_mover");
const PORT: u16 = 7460;
/// The receive window every push asks for: the "one window" of the bound.
const WINDOW: u64 = 8 << 20;
/// Kills of each side per test (the issue asks for at least 10).
const KILLS: usize = 10;
/// The push rate: slow enough that a kill lands mid-transfer on a busy 2-core machine.
const RATE: &str = "600M";
/// How long a full push takes at RATE, roughly: kills land in (0.05, 0.9) of it.
const FULL_PUSH_S: f64 = 1.6;

/// Kills at this share of FULL_PUSH_S or later land after the first journal step, so their reruns resume.
const LATE_KILL: f64 = 0.4;
/// A tiny xorshift, so the test needs no dependency and a seed replays it.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed() -> u64 {
    let seed = std::env::var("MOVER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("netns_resume: seed {seed} (MOVER_SEED={seed} replays it)");
    seed
}

/// A source tree: one large file (the one a kill usually cuts), a few middling ones and small ones.
fn make_source(dir: &Path) -> BTreeMap<String, u128> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("large.bin"), 96 << 20, 1);
    for i in 0..4u64 {
        write_random_file(&src.join(format!("sub/mid-{i}.bin")), (3 << 20) + i * 4099, 10 + i);
    }
    for i in 0..16u64 {
        write_random_file(&src.join(format!("sub/small-{i}.bin")), 1000 + i * 7919, 100 + i);
    }
    tree_hashes(&src)
}

/// Relative path -> content hash of every regular file under `root` (hidden partials included, so a leftover
/// shows up as a difference).
fn tree_hashes(root: &Path) -> BTreeMap<String, u128> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, hash_file(&e.path()));
            }
        }
    }
    out
}

/// Bytes of the final (committed) files under `dest` that already equal the source's.
fn committed_bytes(dest: &Path, source: &BTreeMap<String, u128>, src_root: &Path) -> u64 {
    source
        .iter()
        .filter(|(rel, hash)| {
            let p = dest.join(rel);
            p.is_file() && hash_file(&p) == **hash
        })
        .map(|(rel, _)| std::fs::metadata(src_root.join(rel)).unwrap().len())
        .sum()
}

fn start_server(net: &NetnsPair, root: &Path, log: &Path) -> KillOnDrop {
    net.start_serve(PORT, root, log, &[])
}

fn push_command(net: &NetnsPair, src: &Path, extra: &[&str]) -> Command {
    let url = format!("mover://{}:{PORT}/in", net.ip_b);
    let window = WINDOW.to_string();
    let mut argv = vec![MOVER, "push", "--insecure-no-auth", "--net", "udp", "--json", "--rate", RATE];
    argv.extend(["--window", &window]);
    argv.extend(extra);
    argv.push(src.to_str().unwrap());
    argv.push(&url);
    net.command(&net.a, &argv)
}

/// Runs the push to completion; returns its JSON after asserting success.
fn push_to_end(net: &NetnsPair, src: &Path, what: &str, server_log: &Path) -> String {
    let out = common::run_with_limit(push_command(net, src, &[]).stdin(Stdio::null()), Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: push failed ({:?})\nstdout: {stdout}\nstderr: {}\nserver: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(server_log).unwrap_or_default()
    );
    stdout
}

/// Checks what a rerun sent against what the receiver was missing, and that the tree is whole.
fn check_rerun(
    json: &str,
    what: &str,
    total: u64,
    committed_before: u64,
    dest: &Path,
    source: &BTreeMap<String, u128>,
) {
    let resumed = json_u64(json, "resumed_bytes").unwrap_or_else(|| panic!("{what}: no resumed_bytes in {json}"));
    let skipped = json_u64(json, "skipped_bytes").unwrap_or_else(|| panic!("{what}: no skipped_bytes in {json}"));
    let sent = json_u64(json, "sent_bytes").unwrap_or_else(|| panic!("{what}: no sent_bytes in {json}"));
    // Every committed file is current, so the receiver skips it: skipped bytes are exactly those.
    assert_eq!(skipped, committed_before, "{what}: committed files must be skipped, and only those ({json})");
    let missing = total - committed_before - resumed;
    assert!(
        sent <= missing + WINDOW,
        "{what}: the rerun sent {sent} bytes; missing were {missing} (+ window {WINDOW}) ({json})"
    );
    let got: BTreeMap<String, u128> = tree_hashes(&dest.join("in/src"));
    assert_eq!(&got, source, "{what}: the tree differs from the source (or partials were left behind)");
    let leftovers: Vec<PathBuf> =
        walk_names(dest).into_iter().filter(|p| p.to_string_lossy().contains(".mover")).collect();
    assert!(leftovers.is_empty(), "{what}: partials or journals left after success: {leftovers:?}");
}

fn walk_names(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

/// Kills one side (`client` or `server`) at random moments, then reruns the same command.
fn kill_and_rerun(kill_server: bool) {
    let name = if kill_server { "kill_server_then_rerun_resumes" } else { "kill_client_then_rerun_resumes" };
    if skip_unless_root(name) {
        return;
    }
    let mut rng = Rng(seed());
    let dir = TempDir::new(name);
    let source = make_source(dir.path());
    let src = dir.path().join("src");
    let total: u64 = source.keys().map(|rel| std::fs::metadata(src.join(rel)).unwrap().len()).sum();
    let net = NetnsPair::new(None).expect("netns pair");
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let log = dir.path().join("serve.log");
    let mut server = start_server(&net, &dest, &log);
    let (mut late_kills, mut resumed_late) = (0, 0);
    for round in 0..KILLS {
        let _ = std::fs::remove_dir_all(dest.join("in"));
        let at = Duration::from_secs_f64(FULL_PUSH_S * (0.05 + 0.85 * rng.unit()));
        let late = at.as_secs_f64() >= LATE_KILL * FULL_PUSH_S;
        late_kills += late as usize;
        let what = format!("{name} round {round} (kill after {at:?})");
        let mut client = KillOnDrop(
            push_command(&net, &src, &["--retries", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn push"),
        );
        std::thread::sleep(at);
        if kill_server {
            let _ = server.0.kill(); // SIGKILL
            let _ = server.0.wait();
            // The client must give up with the retryable exit code (5) when its server vanished.
            let status = client.wait_timeout(Duration::from_secs(60)).expect("client exits after the server died");
            if !status.success() {
                assert_eq!(status.code(), Some(5), "{what}: a vanished server is a retryable failure");
            }
            server = start_server(&net, &dest, &log);
        } else {
            let _ = client.0.kill();
            let _ = client.0.wait();
            // Let the server's session see the closed control channel and let go of its partials.
            std::thread::sleep(Duration::from_millis(500));
        }
        let committed_before = committed_bytes(&dest.join("in/src"), &source, &src);
        let json = push_to_end(&net, &src, &what, &log);
        println!(
            "{what}: committed before {committed_before}, resumed {:?}, skipped {:?}, rerun sent {:?} of {total}",
            json_u64(&json, "resumed_bytes"),
            json_u64(&json, "skipped_bytes"),
            json_u64(&json, "sent_bytes")
        );
        if json_u64(&json, "resumed_bytes").unwrap_or(0) > 0 {
            resumed_late += late as usize;
        }
        check_rerun(&json, &what, total, committed_before, &dest, &source);
    }
    // Kills land anywhere, and one before the first journal step (about 0.5 s in: session set-up, then a
    // journal step of 18 MiB) leaves nothing to resume; but most reruns after a late kill must have resumed
    // a partial. Counting every kill made the test depend on its seed: CI's drew 6 of 10 kills before
    // 0.54 s, and 4 of 10 resumed, the 3 late ones among them.
    assert!(
        resumed_late * 2 >= late_kills,
        "{name}: only {resumed_late} of {late_kills} reruns after a kill at {LATE_KILL} of the push or later resumed a \
         partial file"
    );
}

#[test]
fn kill_client_then_rerun_resumes() {
    kill_and_rerun(false);
}

#[test]
fn kill_server_then_rerun_resumes() {
    kill_and_rerun(true);
}
