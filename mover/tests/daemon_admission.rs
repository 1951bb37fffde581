//! Admission under load, against `mover serve` as a real process on loopback: many pushes from one client
//! wait in the daemon's queue instead of failing, idle connections cannot lock a real client out, a client
//! that trickles its handshake is cut at the handshake's deadline, and only a full queue refuses (exit 5,
//! retryable). Hostile clients speak the plain control protocol through the library's frame encoder.

mod common;

use common::certs;
use common::{mover, run_with_limit, Server, TempDir};
use mover::files::{Entry, EntryKind};
use mover::net::{ControlChannel, ControlEvent};
use mover::wire::control::{ControlMsg, Hello};
use mover::wire::{Cipher, VERSION};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// A source tree of `files` files of `size` bytes under `dir/data`.
fn source(dir: &Path, files: u64, size: u64) -> PathBuf {
    let src = dir.join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..files {
        let name = if i % 2 == 0 { format!("f{i}.bin") } else { format!("sub/f{i}.bin") };
        common::write_random_file(&src.join(name), size, 100 + i);
    }
    src
}

/// Each file of `src` has its twin, same bytes, under `dest`.
fn assert_same_tree(src: &Path, dest: &Path) {
    let (a, b) = (common::list_tree(src), common::list_tree(dest));
    assert_eq!(a, b, "trees differ: {} vs {}", src.display(), dest.display());
    for rel in &a {
        let (x, y) = (src.join(rel), dest.join(rel));
        if x.is_file() {
            assert_eq!(common::hash_file(&x), common::hash_file(&y), "{rel} differs");
        }
    }
}

/// The `name:` field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `mover push --rate RATE ARGS SRC URL`, started.
fn spawn_push(rate: &str, args: &[String], src: &Path, url: &str) -> Child {
    mover()
        .args(["push", "--rate", rate])
        .args(args)
        .arg(src)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mover push")
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for mover push")
}

fn daemon_lines(server: &Server) -> Vec<String> {
    server.lines.lock().unwrap().clone()
}

#[test]
fn forty_pushes_from_one_client_all_succeed_by_waiting_their_turn() {
    let dir = TempDir::new("admission-forty");
    let d = dir.path();
    let certs_dir = d.join("certs");
    std::fs::create_dir(&certs_dir).unwrap();
    let certs = certs::make(&certs_dir);
    let out = run_with_limit(mover().args(["token", "--user", "alice"]), LIMIT);
    assert!(out.status.success(), "mover token: {}", stderr(&out));
    std::fs::write(d.join("alice.token"), &out.stdout).unwrap();
    std::fs::write(d.join("tokens"), &out.stderr).unwrap();
    let root = d.join("root");
    std::fs::create_dir(&root).unwrap();
    let src = source(d, 4, 256 << 10);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let server = Server::start(
        &root,
        &[
            "--tls-cert",
            &s(&certs.server_cert),
            "--tls-key",
            &s(&certs.server_key),
            "--tokens",
            &s(&d.join("tokens")),
            "--max-sessions-per-client",
            "8",
            "--max-sessions",
            "16",
        ],
    );
    let pid = server.child.id();
    let client: Vec<String> = vec![
        "--ca".into(),
        s(&certs.ca),
        "--token-file".into(),
        s(&d.join("alice.token")),
        "--user".into(),
        "alice".into(),
    ];
    let started = Instant::now();
    let pushes: Vec<Child> =
        (0..40).map(|i| spawn_push("500M", &client, &src, &format!("mover://{}/p{i}", server.addr))).collect();
    let outs: Vec<Output> = pushes.into_iter().map(finish).collect();
    let took = started.elapsed();
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "push {i} failed ({:?}): {}", out.status, stderr(out));
        assert_same_tree(&src, &root.join(format!("p{i}/data")));
    }
    let shown =
        outs.iter().filter(|o| stderr(o).contains("mover: the server is busy: waiting in its queue, place")).count();
    assert!(shown > 0, "no client printed its queue place");
    let peak = status_kib(pid, "VmHWM:");
    // The daemon idle again: its memory must come back (the allocator returns freed memory when idle).
    let idle_since = Instant::now();
    let mut rss = status_kib(pid, "VmRSS:");
    while rss >= 64 << 10 && idle_since.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(500));
        rss = status_kib(pid, "VmRSS:");
    }
    eprintln!(
        "forty pushes: {:.1} s, {shown} clients printed their queue place, daemon peak RSS {} MiB, idle RSS {} MiB",
        took.as_secs_f64(),
        peak >> 10,
        rss >> 10
    );
    let queued = daemon_lines(&server).iter().filter(|l| l.contains(": queued, place")).count();
    assert!(queued > 0, "the daemon logged no queued session");
    assert!(rss < 64 << 10, "idle daemon RSS {} MiB after the pushes (limit 64 MiB)", rss >> 10);
}

#[test]
fn idle_connections_do_not_lock_out_a_real_client_of_the_same_address() {
    let dir = TempDir::new("admission-idle");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let src = source(dir.path(), 2, 64 << 10);
    let server = Server::start(&root, &[]);
    let idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(&server.addr).unwrap()).collect();
    // Let the daemon accept all of them (and cut the oldest beyond its per-address cap).
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let out = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--rate", "500M"])
            .arg(&src)
            .arg(format!("mover://{}/real", server.addr)),
        LIMIT,
    );
    let took = started.elapsed();
    assert!(out.status.success(), "the real push failed: {}", stderr(&out));
    assert!(took < Duration::from_secs(10), "the real push took {took:?} behind 100 idle connections");
    assert_same_tree(&src, &root.join("real/data"));
    // The idle ones beyond the per-address cap were cut: they see the end of their connection.
    let mut cut = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            cut += 1;
        }
    }
    assert!(cut >= 100 - mover::session::MAX_HANDSHAKES_PER_ADDRESS, "only {cut} idle connections were cut");
}

fn hello(entries: u64, dest: &str) -> ControlMsg {
    ControlMsg::Hello(Hello {
        version: VERSION as u16,
        block_payload: 1412,
        rate_bps: 100_000_000,
        window_blocks: 1 << 12,
        entry_count: entries,
        total_bytes: 0,
        cipher: Cipher::None,
        options: Default::default(),
        policy: Default::default(),
        dest: dest.into(),
    })
}

fn dir_entry(name: String) -> ControlMsg {
    ControlMsg::Entry(Entry { rel_path: name, kind: EntryKind::Dir, mode: 0o755, ..Entry::default() })
}

/// What a hostile client sees next: a message, the end, or nothing until `limit`.
fn next_event(ch: &mut ControlChannel, limit: Duration) -> Option<ControlEvent> {
    ch.recv_timeout(limit)
}

#[test]
fn a_client_that_trickles_its_handshake_is_cut_at_the_deadline_while_others_are_served() {
    let dir = TempDir::new("admission-slow");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let src = source(dir.path(), 2, 64 << 10);
    // A 3 s handshake deadline (the test knob; 30 s by default) keeps the test short.
    let server = Server::start_with_env(&root, &[], &[(mover::session::HANDSHAKE_DEADLINE_ENV, "3")]);
    let addr = server.addr.parse().unwrap();

    // One says nothing at all; one sends its hello and then one manifest entry a second, each well inside
    // what a per-message timeout would allow.
    let mut silent = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
    let mut slow = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
    slow.send(&hello(20, "slow")).unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        let mut end = None;
        for i in 0..20 {
            if let Some(ev) = next_event(&mut slow, Duration::from_secs(1)) {
                end = Some(ev);
                break;
            }
            if slow.send(&dir_entry(format!("d{i}"))).is_err() {
                end = next_event(&mut slow, Duration::from_secs(1));
                break;
            }
        }
        (end, started.elapsed())
    });
    // A real client is served meanwhile.
    let out = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--rate", "500M"])
            .arg(&src)
            .arg(format!("mover://{}/real", server.addr)),
        LIMIT,
    );
    assert!(out.status.success(), "the real push failed: {}", stderr(&out));
    assert_same_tree(&src, &root.join("real/data"));

    let (end, took) = trickle.join().unwrap();
    match end {
        Some(ControlEvent::Msg(ControlMsg::Error { message })) => {
            assert!(message.contains("missed the handshake's deadline while reading the manifest"), "{message}")
        }
        other => panic!("the trickling client was not cut with an error: {other:?}"),
    }
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "cut after {took:?}");
    // The silent one was cut too (it only ever sees the end).
    match next_event(&mut silent, Duration::from_secs(5)) {
        Some(ControlEvent::Closed) | Some(ControlEvent::Failed(_)) => {}
        other => panic!("the silent client was not cut: {other:?}"),
    }
    // The daemon logs after it told the client: give its line a moment.
    let logged = Instant::now() + Duration::from_secs(5);
    let cut_lines = || daemon_lines(&server).iter().filter(|l| l.contains("missed the handshake's deadline")).count();
    while cut_lines() < 2 && Instant::now() < logged {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cut_lines() >= 2, "the daemon's log does not say why both were cut: {:#?}", daemon_lines(&server));
    assert!(!root.join("slow").exists(), "the cut session created its destination");
}

#[test]
fn only_a_full_queue_refuses_and_the_refusal_is_retryable() {
    let dir = TempDir::new("admission-full");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let big = source(&big, 1, 8 << 20);
    let small = source(dir.path(), 2, 64 << 10);
    let server = Server::start(&root, &["--max-sessions", "1", "--max-queue", "1"]);
    let url = |d: &str| format!("mover://{}/{d}", server.addr);
    let insecure = ["--insecure-no-auth".to_string()];
    // The first runs slowly (8 MB at 20 Mbit/s: over 3 s), the second waits, the third finds the queue full.
    let first = spawn_push("20M", &insecure, &big, &url("one"));
    std::thread::sleep(Duration::from_millis(1000));
    let second = spawn_push("500M", &insecure, &small, &url("two"));
    std::thread::sleep(Duration::from_millis(700));
    // --retries 0: by default a client retries a busy daemon (retryable), which would hide the refusal.
    let third = run_with_limit(
        mover().args(["push", "--insecure-no-auth", "--retries", "0", "--rate", "500M"]).arg(&small).arg(url("three")),
        LIMIT,
    );
    let (first, second) = (finish(first), finish(second));
    assert!(first.status.success(), "the running push failed: {}", stderr(&first));
    assert!(second.status.success(), "the queued push failed: {}", stderr(&second));
    assert!(
        stderr(&second).contains("mover: the server is busy: waiting in its queue, place 1 of 1"),
        "the queued client did not show its place: {}",
        stderr(&second)
    );
    let e = stderr(&third);
    assert_eq!(third.status.code(), Some(5), "a full queue is retryable (exit 5): {e}");
    assert!(e.contains("the server is busy: 1 sessions running, 1 waiting (--max-queue); try again later"), "{e}");
    assert!(!root.join("three").exists(), "the refused session wrote something");
    assert_same_tree(&big, &root.join("one/data"));
    assert_same_tree(&small, &root.join("two/data"));
    let lines = daemon_lines(&server);
    assert!(lines.iter().any(|l| l.contains(": the server is busy: 1 sessions running")), "{lines:#?}");
}

/// A queued client that goes away leaves the queue at once: the next one behind it moves up.
#[test]
fn a_queued_client_that_leaves_frees_its_place() {
    let dir = TempDir::new("admission-leave");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &["--max-sessions", "1", "--max-queue", "2"]);
    let addr = server.addr.parse().unwrap();
    // The running session: a hello announcing entries that never come (it holds the one place).
    let mut running = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
    running.send(&hello(5, "running")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut leaver = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
    leaver.send(&hello(1, "leaver")).unwrap();
    match next_event(&mut leaver, Duration::from_secs(5)) {
        Some(ControlEvent::Msg(ControlMsg::Queued { position: 1, waiting: 1 })) => {}
        other => panic!("expected place 1 of 1, got {other:?}"),
    }
    let mut stayer = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
    stayer.send(&hello(1, "stayer")).unwrap();
    match next_event(&mut stayer, Duration::from_secs(5)) {
        Some(ControlEvent::Msg(ControlMsg::Queued { position: 2, waiting: 2 })) => {}
        other => panic!("expected place 2 of 2, got {other:?}"),
    }
    drop(leaver);
    match next_event(&mut stayer, Duration::from_secs(3)) {
        Some(ControlEvent::Msg(ControlMsg::Queued { position: 1, waiting: 1 })) => {}
        other => panic!("expected to move up to place 1 of 1 at once, got {other:?}"),
    }
    drop(running);
}

/// A pull waits its turn too: without authentication its place comes where it waits for the manifest.
#[test]
fn a_pull_beyond_the_cap_waits_and_is_served() {
    let dir = TempDir::new("admission-pull");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let src = source(&root, 2, 64 << 10);
    let server = Server::start(&root, &["--max-sessions", "1"]);
    let addr = server.addr.parse().unwrap();
    // The running session holds the only place: a hello whose entries never come.
    let mut running = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
    running.send(&hello(5, "running")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let back = dir.path().join("back");
    let pull = mover()
        .args(["pull", "--insecure-no-auth", "--rate", "500M"])
        .arg(format!("mover://{}/data", server.addr))
        .arg(&back)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let queued = Instant::now() + Duration::from_secs(10);
    while !daemon_lines(&server).iter().any(|l| l.contains(": queued, place 1 of 1")) {
        assert!(Instant::now() < queued, "the pull was not queued: {:#?}", daemon_lines(&server));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(running);
    let out = finish(pull);
    assert!(out.status.success(), "the queued pull failed: {}", stderr(&out));
    assert!(stderr(&out).contains("mover: the server is busy: waiting in its queue, place 1 of 1"), "{}", stderr(&out));
    assert_same_tree(&src, &back.join("data"));
}
