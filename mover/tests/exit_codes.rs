//! Exit codes (README "Exit codes", `mover --help`): every class, from the real binary. 0 success, 1 a
//! failure a rerun does not fix, 2 usage, 3 source not found, 4 authentication refused, 5 retryable (with
//! `--retries`: dialled again with back-off, one line per retry, also when the daemon dies mid-push), 6
//! partial success (a unit test: `session::error`; no run of the binary produces it yet).

mod common;

use common::{certs, is_root, list_tree, mover, run_with_limit, skip_or_fail, Server, TempDir};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// The exit code and the single `mover: error:` line of a failed run.
fn failure(out: &Output) -> (i32, String) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mover: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected in: {stderr}");
    (out.status.code().expect("exited, not killed"), errors[0].to_string())
}

fn small_source(dir: &Path) -> PathBuf {
    let p = dir.join("file.bin");
    fs::write(&p, vec![7u8; 100_000]).unwrap();
    p
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn help_lists_the_exit_codes() {
    for args in [&["--help"][..], &["push", "--help"], &["pull", "--help"]] {
        let out = run_with_limit(mover().args(args), LIMIT);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for line in ["Exit codes:", "  2  usage error", "  3  source not found", "  4  authentication refused"] {
            assert!(help.contains(line), "{args:?}: '{line}' missing from:\n{help}");
        }
        assert!(help.contains("  5  retryable failure") && help.contains("  6  partial success"), "{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let tmp = TempDir::new("exit-usage");
    let src = small_source(tmp.path());
    let url = format!("mover://127.0.0.1:{}/x", free_port());
    // clap's own (an unknown flag, a value out of range) and ours (values that contradict each other).
    let unknown = run_with_limit(mover().args(["push", "--no-such-flag"]).arg(&src).arg(&url), LIMIT);
    assert_eq!(unknown.status.code(), Some(2), "{}", String::from_utf8_lossy(&unknown.stderr));
    let zero =
        run_with_limit(mover().args(["push", "--insecure-no-auth", "--timeout", "0"]).arg(&src).arg(&url), LIMIT);
    assert_eq!(zero.status.code(), Some(2), "{}", String::from_utf8_lossy(&zero.stderr));
    let rates = ["push", "--insecure-no-auth", "--rate", "100M", "--min-rate", "200M"];
    let (code, line) = failure(&run_with_limit(mover().args(rates).arg(&src).arg(&url), LIMIT));
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("--min-rate") && line.contains("lower --min-rate"), "{line}");
    let timeout = ["pull", "--insecure-no-auth", "--connect-timeout", "0", &url];
    let (code, line) = failure(&run_with_limit(mover().args(timeout).arg(tmp.path()), LIMIT));
    assert_eq!(code, 2, "{line}");
    let local = tmp.path().join("not-remote");
    let (code, line) =
        failure(&run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg(local), LIMIT));
    assert_eq!(code, 2, "{line}");
}

#[test]
fn a_missing_source_exits_3() {
    let tmp = TempDir::new("exit-missing");
    let url = format!("mover://127.0.0.1:{}/x", free_port());
    let missing = tmp.path().join("no-such-file");
    let (code, line) =
        failure(&run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&missing).arg(&url), LIMIT));
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("no-such-file") && line.contains("No such file"), "{line}");
}

#[test]
fn a_wrong_token_exits_4_without_retrying() {
    let tmp = TempDir::new("exit-auth");
    let d = tmp.path();
    fs::create_dir(d.join("certs")).unwrap();
    let c = certs::make(&d.join("certs"));
    let out = run_with_limit(mover().args(["token", "--user", "alice"]), LIMIT);
    assert!(out.status.success());
    fs::write(d.join("tokens"), &out.stderr).unwrap();
    fs::write(d.join("bad.token"), "not-the-token\n").unwrap();
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let tokens = s(&d.join("tokens"));
    let server =
        Server::start(&root, &["--tls-cert", &s(&c.server_cert), "--tls-key", &s(&c.server_key), "--tokens", &tokens]);
    let src = small_source(d);
    let started = Instant::now();
    let out = run_with_limit(
        mover()
            .args([
                "push",
                "--retries",
                "3",
                "--ca",
                &s(&c.ca),
                "--user",
                "alice",
                "--token-file",
                &s(&d.join("bad.token")),
            ])
            .arg(&src)
            .arg(format!("mover://{}/x", server.addr)),
        LIMIT,
    );
    let (code, line) = failure(&out);
    assert_eq!(code, 4, "{line}");
    assert!(line.contains("authentication failed"), "{line}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("retry"), "an authentication refusal was retried");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(list_tree(&root).is_empty(), "a refused client wrote {:?}", list_tree(&root));
}

#[test]
fn a_refused_destination_exits_1() {
    let tmp = TempDir::new("exit-refused");
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    let src = small_source(tmp.path());
    let url = format!("mover://{}/../outside", server.addr);
    let (code, line) =
        failure(&run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg(&url), LIMIT));
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("server refused"), "{line}");
}

#[test]
fn a_dead_server_port_exits_5_after_the_retries_with_one_line_each() {
    let tmp = TempDir::new("exit-dead");
    let src = small_source(tmp.path());
    let url = format!("mover://127.0.0.1:{}/x", free_port());
    let started = Instant::now();
    let out = run_with_limit(mover().args(["push", "--insecure-no-auth", "--retries", "2"]).arg(&src).arg(&url), LIMIT);
    let (code, line) = failure(&out);
    assert_eq!(code, 5, "{line}");
    assert!(line.contains("cannot connect") && line.contains("refused"), "{line}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let retries: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mover push:") && l.contains("retry")).collect();
    assert_eq!(retries.len(), 2, "one line per retry expected: {stderr}");
    assert!(retries[0].ends_with("retry 1 of 2 in 1 s") && retries[1].ends_with("retry 2 of 2 in 2 s"), "{retries:?}");
    // Back-off 1 s then 2 s.
    assert!(started.elapsed() >= Duration::from_secs(3), "no back-off: {:?}", started.elapsed());
    // --retries 0: at once.
    let started = Instant::now();
    let out = run_with_limit(
        mover().args(["pull", "--insecure-no-auth", "--retries", "0", &url]).arg(tmp.path().join("d")),
        LIMIT,
    );
    assert_eq!(failure(&out).0, 5);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn a_daemon_that_comes_up_late_is_reached_by_retrying() {
    let tmp = TempDir::new("exit-late");
    let src = small_source(tmp.path());
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let port = free_port();
    let push = mover()
        .args(["push", "--insecure-no-auth", "--retries", "4"])
        .arg(&src)
        .arg(format!("mover://127.0.0.1:{port}/late"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut server = Command::new(env!("CARGO_BIN_EXE_mover"))
        .args(["serve", "--insecure-no-auth", "--once", "--listen", &format!("127.0.0.1:{port}"), "--root"])
        .arg(&root)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = wait_output(push, LIMIT);
    let _ = server.kill();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.lines().any(|l| l.contains("retry 1 of 4")), "the first attempt should have failed: {stderr}");
    assert_eq!(fs::read(root.join("late/file.bin")).unwrap(), vec![7u8; 100_000]);
}

/// `mover serve --insecure-no-auth --listen 127.0.0.1:PORT --root ROOT`, not waiting for it to listen.
fn serve_on_port(port: u16, root: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mover"))
        .args(["serve", "--insecure-no-auth", "--listen", &format!("127.0.0.1:{port}"), "--root"])
        .arg(root)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_daemon_killed_mid_push_is_dialled_again_and_the_push_completes() {
    let tmp = TempDir::new("exit-killed-daemon");
    let src = tmp.path().join("big.bin");
    common::write_random_file(&src, 48 << 20, 0x51);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let port = free_port();
    let mut first = serve_on_port(port, &root);
    std::thread::sleep(Duration::from_millis(300));
    // 48 MiB at 100 Mbit/s: about 4 s, so the kill at 1.5 s falls mid-transfer.
    let push = mover()
        .args(["push", "--insecure-no-auth", "--rate", "100M", "--policy", "fixed", "--retries", "5"])
        .arg(&src)
        .arg(format!("mover://127.0.0.1:{port}/in"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut second = serve_on_port(port, &root);
    let out = wait_output(push, LIMIT);
    let _ = second.kill();
    let _ = second.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("mover push:") && l.contains("retry 1 of 5")), "{stderr}");
    assert_eq!(common::hash_file(&src), common::hash_file(&root.join("in/big.bin")), "the file differs");
}

#[test]
fn a_full_disk_exits_1_with_the_fix_and_nothing_under_the_final_name() {
    let test = "a_full_disk_exits_1_with_the_fix_and_nothing_under_the_final_name";
    let tmp = TempDir::new("exit-full");
    let root = tmp.path().join("small");
    fs::create_dir(&root).unwrap();
    let Some(_mount) = Tmpfs::mount(test, &root, "size=2m") else { return };
    let src = tmp.path().join("big.bin");
    // 6 MiB of data and a hole to 8 MiB: the free-space check counts no sparse file (the manifest does not
    // say how much of it is data), so the transfer starts and the disk fills mid-transfer.
    fs::write(&src, vec![1u8; 6 << 20]).unwrap();
    fs::OpenOptions::new().write(true).open(&src).unwrap().set_len(8 << 20).unwrap();
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/", server.addr);
    let started = Instant::now();
    let out = run_with_limit(
        mover().args(["push", "--insecure-no-auth", "--retries", "3", "--rate", "500M"]).arg(&src).arg(&url),
        LIMIT,
    );
    let (code, line) = failure(&out);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("'big.bin'") && line.contains("No space left on device"), "{line}");
    assert!(line.contains("free space on the destination, then run the same command again: it resumes"), "{line}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("retry"), "a full disk was retried");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!root.join("big.bin").exists(), "a file under its final name: {:?}", list_tree(&root));
}

#[test]
fn a_read_only_destination_exits_1_naming_the_fix() {
    let test = "a_read_only_destination_exits_1_naming_the_fix";
    let tmp = TempDir::new("exit-ro");
    let root = tmp.path().join("ro");
    fs::create_dir(&root).unwrap();
    let Some(_mount) = Tmpfs::mount(test, &root, "size=1m,ro") else { return };
    let server = Server::start(&root, &[]);
    let src = small_source(tmp.path());
    let url = format!("mover://{}/in", server.addr);
    let (code, line) =
        failure(&run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg(&url), LIMIT));
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("'in'") && line.contains("not writable"), "{line}");
}

/// A tmpfs mounted for the test's life (root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(test: &str, at: &Path, options: &str) -> Option<Tmpfs> {
        if !is_root() {
            skip_or_fail(test, "needs root to mount a small tmpfs (CI runs as root)");
            return None;
        }
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", options, "mover-test"]).arg(at).status().unwrap();
        assert!(ok.success(), "mount tmpfs");
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn wait_output(mut child: std::process::Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("overran {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
