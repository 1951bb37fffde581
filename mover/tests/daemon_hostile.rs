//! The daemon against hostile clients (issue 16): a real `mover serve --insecure-no-auth` on loopback, and
//! clients made with the library's control channel that announce 2,000,000 entries and then send entries
//! with ~4 KB paths as fast as they can, several at once, or without ever reading. The daemon's resident
//! memory (VmRSS from /proc, sampled every few milliseconds) must stay within its `--max-memory` plus what
//! the process holds besides sessions' reservations ([`UNRESERVED_MIB`]), each flood must get its refusal
//! with the flag that refused it, and a real `mover push` must be served meanwhile.

mod common;

use common::{mover, run_with_limit, write_random_file, Server, TempDir};
use mover::files::{Entry, EntryKind};
use mover::net::{ControlChannel, ControlEvent};
use mover::wire::control::{ControlMsg, Hello};
use mover::wire::{Cipher, VERSION};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const LIMIT: Duration = Duration::from_secs(60);
/// What the daemon holds besides the sessions' reservations: its code and static data (~10 MiB of the
/// binary's pages), thread stacks, and per connection the control reader's 64 KiB buffer, one frame
/// buffer and the frames its session has not taken yet (at most
/// [`mover::net::control::EVENT_QUEUE_BYTES`]; a session reading a manifest takes them as they come), and the
/// allocator's per-arena slack.
const UNRESERVED_MIB: u64 = 32;
/// Entries a flood sends at most: 2,000,000 announced, about 8 GB of paths.
const FLOOD_ENTRIES: u64 = 2_000_000;

/// Samples a process's VmRSS until dropped; `peak_mib` is the highest seen.
struct RssWatch {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak_kib.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssWatch { peak_kib, stop, thread: Some(thread) }
    }

    fn peak_mib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed) >> 10
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn start(root: &Path, max_memory: &str, max_manifest: &str) -> Server {
    Server::start(
        root,
        &["--max-memory", max_memory, "--max-manifest-memory", max_manifest, "--max-sessions-per-client", "16"],
    )
}

fn hostile_hello(dest: &str) -> ControlMsg {
    ControlMsg::Hello(Hello {
        version: VERSION as u16,
        block_payload: 1400,
        rate_bps: 1_000_000_000,
        window_blocks: 1 << 16,
        entry_count: FLOOD_ENTRIES,
        total_bytes: 0,
        cipher: Cipher::default(),
        options: Default::default(),
        policy: Default::default(),
        dest: dest.into(),
    })
}

/// Entry `i` of a flood: an empty file under a path of 16 components, about 4 KB in all.
fn long_entry(i: u64) -> ControlMsg {
    let mut rel_path = format!("f{i:09}");
    for _ in 0..15 {
        rel_path.push('/');
        rel_path.push_str(&"x".repeat(250));
    }
    ControlMsg::Entry(Entry { rel_path, kind: EntryKind::File, mode: 0o644, ..Entry::default() })
}

/// Announces 2,000,000 entries and sends them until the daemon refuses; returns its refusal.
/// `pause_after`: stop after this many entries and hold the connection (its manifest reserved) until
/// `resume` is set.
fn flood(addr: SocketAddr, pause_after: Option<(u64, Arc<AtomicBool>)>) -> String {
    let mut ch = ControlChannel::connect(addr, T).expect("connect");
    ch.send(&hostile_hello("flood")).expect("hello");
    let mut i = 0;
    let failed = loop {
        if let Some((n, resume)) = &pause_after {
            if i >= *n {
                while !resume.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let batch: Vec<ControlMsg> = (i..i + 16).map(long_entry).collect();
        i += 16;
        if let Err(e) = ch.send_all(&batch) {
            break format!("{e}");
        }
        if let Some(ev) = ch.try_recv() {
            return refusal(ev);
        }
        assert!(i < FLOOD_ENTRIES, "the daemon took all {FLOOD_ENTRIES} entries of ~4 KB without refusing");
    };
    match ch.recv_timeout(T) {
        Some(ev) => refusal(ev),
        None => panic!("the daemon broke the connection ({failed}) without a refusal"),
    }
}

fn refusal(ev: ControlEvent) -> String {
    match ev {
        ControlEvent::Msg(ControlMsg::Error { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn addr(server: &Server) -> SocketAddr {
    server.addr.parse().unwrap()
}

fn assert_rss_within(watch: &RssWatch, max_memory_mib: u64) {
    let peak = watch.peak_mib();
    eprintln!("peak VmRSS of the daemon: {peak} MiB (--max-memory {max_memory_mib} MiB)");
    assert!(peak > 0, "no VmRSS sample");
    assert!(
        peak < max_memory_mib + UNRESERVED_MIB,
        "the daemon's VmRSS reached {peak} MiB: more than --max-memory {max_memory_mib} MiB + {UNRESERVED_MIB} MiB"
    );
}

#[test]
fn a_flood_of_long_entries_is_refused_at_the_manifest_budget() {
    let dir = TempDir::new("hostile-one");
    let server = start(dir.path(), "96M", "48M");
    let watch = RssWatch::start(server.child.id());
    let message = flood(addr(&server), None);
    assert!(message.contains("--max-manifest-memory") && message.contains("48.00 MiB"), "{message}");
    assert!(message.contains("split the transfer"), "{message}");
    assert_rss_within(&watch, 96);
    // Nothing was created for a refused manifest.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn the_daemon_budget_refuses_a_second_flood_while_the_first_holds_its_manifest() {
    let dir = TempDir::new("hostile-daemon");
    let server = start(dir.path(), "64M", "40M");
    let watch = RssWatch::start(server.child.id());
    let resume = Arc::new(AtomicBool::new(false));
    // About 30 MiB of manifest, held.
    let holder = {
        let (a, r) = (addr(&server), resume.clone());
        std::thread::spawn(move || flood(a, Some((7_000, r))))
    };
    std::thread::sleep(Duration::from_secs(2));
    let second = flood(addr(&server), None);
    assert!(
        second.contains("out of memory for sessions (--max-memory") && second.contains("try again later"),
        "{second}"
    );
    resume.store(true, Ordering::Relaxed);
    let first = holder.join().unwrap();
    assert!(first.contains("--max-manifest-memory"), "{first}");
    assert_rss_within(&watch, 64);
}

#[test]
fn floods_at_once_are_each_refused_while_a_real_push_is_served() {
    let dir = TempDir::new("hostile-many");
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("a.bin"), 3 << 20, 1);
    write_random_file(&src.join("sub/b.bin"), 100_000, 2);
    // Three floods of at most 32 MiB each leave room for the push's buffers (about 64 MiB).
    let server = start(&root, "192M", "32M");
    let watch = RssWatch::start(server.child.id());
    let floods: Vec<_> = (0..3)
        .map(|_| {
            let a = addr(&server);
            std::thread::spawn(move || flood(a, None))
        })
        .collect();
    let url = format!("mover://{}/real", server.addr);
    let out = run_with_limit(mover().args(["push", "--insecure-no-auth", "--rate", "500M"]).arg(&src).arg(&url), LIMIT);
    assert!(out.status.success(), "the real push failed: {}", String::from_utf8_lossy(&out.stderr));
    for f in floods {
        let message = f.join().unwrap();
        assert!(message.contains("--max-manifest-memory"), "{message}");
    }
    // `push SRC URL` copies the directory itself, as `cp -r` does.
    assert_eq!(common::hash_file(&root.join("real/src/a.bin")), common::hash_file(&src.join("a.bin")));
    assert_eq!(common::hash_file(&root.join("real/src/sub/b.bin")), common::hash_file(&src.join("sub/b.bin")));
    assert_rss_within(&watch, 192);
}

#[test]
fn a_client_that_sends_and_never_reads_is_pushed_back_and_cut_off() {
    let dir = TempDir::new("hostile-deaf");
    let server = start(dir.path(), "64M", "32M");
    let watch = RssWatch::start(server.child.id());
    let mut raw = TcpStream::connect(addr(&server)).unwrap();
    raw.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = Vec::new();
    hostile_hello("deaf").encode(&mut frame);
    raw.write_all(&frame).unwrap();
    // Never read: the daemon's refusal waits in our receive buffer; what we send past the budget must
    // stall or fail, not be buffered by the daemon.
    let mut sent_bytes: u64 = 0;
    let mut i = 0;
    let stopped = loop {
        frame.clear();
        for k in i..i + 16 {
            long_entry(k).encode(&mut frame);
        }
        i += 16;
        if let Err(e) = raw.write_all(&frame) {
            break e;
        }
        sent_bytes += frame.len() as u64;
        assert!(i < FLOOD_ENTRIES, "the daemon read {sent_bytes} bytes without cutting the client off");
    };
    eprintln!("the deaf client got {stopped} after {} MiB", sent_bytes >> 20);
    // The budget (32 MiB of entries), the socket buffers on both sides, and no more.
    assert!(sent_bytes < 128 << 20, "{} MiB went out before the daemon cut the client off", sent_bytes >> 20);
    assert_rss_within(&watch, 64);
}

#[test]
fn an_idle_daemon_gives_back_what_rounds_of_concurrent_sessions_used() {
    const ROUNDS: usize = 3;
    const AT_ONCE: usize = 6;
    const IDLE_MIB: u64 = 64;
    let dir = TempDir::new("hostile-idle");
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    for f in 0..4 {
        write_random_file(&src.join(format!("f{f}.bin")), 8 << 20, f);
    }
    let server = Server::start(&root, &["--max-sessions-per-client", "16"]);
    let pid = server.child.id();
    let idle_before = rss_kib(pid).unwrap() >> 10;
    let watch = RssWatch::start(pid);
    for round in 0..ROUNDS {
        let pushes: Vec<_> = (0..AT_ONCE)
            .map(|k| {
                let url = format!("mover://{}/r{round}-{k}", server.addr);
                let src = src.clone();
                std::thread::spawn(move || {
                    run_with_limit(
                        mover().args(["push", "--insecure-no-auth", "--rate", "2G"]).arg(&src).arg(&url),
                        LIMIT,
                    )
                })
            })
            .collect();
        for p in pushes {
            let out = p.join().unwrap();
            assert!(out.status.success(), "a push failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // The session threads end just after their clients' pushes: give them a moment.
    std::thread::sleep(Duration::from_millis(500));
    let idle_after = rss_kib(pid).unwrap() >> 10;
    eprintln!(
        "daemon VmRSS: {idle_before} MiB idle at start, {} MiB at peak over {ROUNDS} rounds of {AT_ONCE} pushes, \
         {idle_after} MiB idle after",
        watch.peak_mib()
    );
    assert!(idle_after < IDLE_MIB, "the idle daemon holds {idle_after} MiB after rounds of sessions");
}
