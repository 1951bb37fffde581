//! Pulls from a real `mover serve --insecure-no-auth` on loopback while a thread swaps the served directory
//! and its subdirectories for symlinks to OUTSIDE (a tree with the same names and layout, filled with a
//! secret) and back (issue 16, item 2). The daemon scans and reads beneath its root by descriptor, so:
//! - no pulled file ever holds the secret bytes;
//! - an inotify watch on OUTSIDE and its subdirectories sees no event at all while the pulls run (the test
//!   itself never touches OUTSIDE meanwhile: swapping renames and creates symlinks inside the root only, and
//!   the pulled trees are examined without following links);
//! - pulls may fail during a swap, but some succeed with a tree identical to the source.
//!
//! Run against the daemon as it resolves by default (`openat2`) and with `MOVER_RESOLVE=walk` (the strict
//! fallback of kernels without `openat2`).

mod common;

use common::{mover, run_with_limit, write_random_file, Server, TempDir};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every file of OUTSIDE is filled with; never in a served file (those are random bytes).
const SECRET: &[u8] = b"OUTSIDE-SECRET-c0ffee-";
/// The served tree's files (OUTSIDE has the same names, sizes and layout).
const FILES: [&str; 6] = ["a.bin", "b.bin", "sub/c.bin", "sub/e.bin", "sub/deep/d.bin", "sub/deep/f.bin"];
const FILE_BYTES: u64 = 768 << 10;
/// Per resolve mode: at most this many pulls, or this long.
const PULLS: usize = 50;
const RUN_FOR: Duration = Duration::from_secs(30);

#[test]
fn pulls_racing_symlink_swaps_never_read_outside_the_root() {
    for env in [&[][..], &[("MOVER_RESOLVE", "walk")][..]] {
        race(env);
    }
}

fn race(env: &[(&str, &str)]) {
    let mode = if env.is_empty() { "openat2" } else { "walk" };
    let t = TempDir::new(&format!("race-pull-{mode}"));
    let root = t.path().join("root");
    let served = root.join("served");
    let outside = t.path().join("outside");
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, f) in FILES.iter().enumerate() {
        let p = served.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random_file(&p, FILE_BYTES, 7 + i as u64);
        let content = std::fs::read(&p).unwrap();
        assert!(!contains(&content, SECRET));
        expected.insert(format!("served/{f}"), content);
        let o = outside.join(f);
        std::fs::create_dir_all(o.parent().unwrap()).unwrap();
        std::fs::write(&o, SECRET.iter().copied().cycle().take(FILE_BYTES as usize).collect::<Vec<u8>>()).unwrap();
    }
    let watch = Inotify::watch(&[&outside, &outside.join("sub"), &outside.join("sub/deep")]);

    let server = Server::start_with_env(&root, &["--net", "udp"], env);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (root, outside, stop, swaps) = (root.clone(), outside.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || swap_until(&root, &outside, &stop, &swaps))
    };

    let url = format!("mover://{}/served", server.addr);
    let started = Instant::now();
    let (mut identical, mut other_success, mut failed) = (0, 0, 0);
    let mut pulls = 0;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    while pulls < PULLS && started.elapsed() < RUN_FOR {
        let dest = t.path().join(format!("pulled-{pulls}"));
        let out = run_with_limit(
            mover()
                .args(["pull", "--insecure-no-auth", "--net", "udp", "--rate", "2G", "--retries", "0"])
                .arg(&url)
                .arg(&dest),
            Duration::from_secs(60),
        );
        let got = pulled_files(&dest);
        for (name, content) in &got {
            assert!(!contains(content, SECRET), "{mode}: pull {pulls} brought OUTSIDE's secret in '{name}'");
        }
        if !out.status.success() {
            failed += 1;
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or_default().to_string();
            *reasons.entry(last).or_default() += 1;
        } else if got == expected {
            identical += 1;
        } else {
            // A subdirectory swapped at scan time is sent as the symlink it then was (or as its moved-aside
            // name): a faithful copy of that moment, nothing read through the link.
            other_success += 1;
        }
        pulls += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let events = watch.events();
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "{mode}: {pulls} pulls in {:.1} s with {swaps} swaps: {identical} identical, {other_success} other \
         successes (a swapped subdirectory sent as a link), {failed} failed",
        started.elapsed().as_secs_f64()
    );
    for (why, n) in &reasons {
        eprintln!("{mode}:   {n} x {why}");
    }
    assert!(events.is_empty(), "{mode}: OUTSIDE was touched: {events:?}");
    assert!(swaps >= pulls as u64, "{mode}: the swapper barely ran ({swaps} swaps for {pulls} pulls)");
    assert!(identical > 0, "{mode}: no pull came through whole ({failed} failed, {other_success} other)");
    // The watch is live: the first read of OUTSIDE shows, so the zero above could have failed.
    std::fs::read(outside.join("a.bin")).unwrap();
    assert!(!watch.events().is_empty(), "{mode}: the inotify watch sees nothing");
    drop(server);
}

/// Swaps `root/served`, `root/served/sub` and `root/served/sub/deep` in turn for symlinks to the same places
/// under `outside` and back, one at a time, with irregular pauses, until `stop`. Only names inside the root
/// change: a symlink's target is text, nothing under `outside` is opened or even looked up.
fn swap_until(root: &Path, outside: &Path, stop: &AtomicBool, swaps: &AtomicU64) {
    let levels: [(PathBuf, PathBuf); 3] = [
        (root.join("served"), outside.to_path_buf()),
        (root.join("served/sub"), outside.join("sub")),
        (root.join("served/sub/deep"), outside.join("sub/deep")),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    while !stop.load(Ordering::Relaxed) {
        let (dir, target) = &levels[(next() % 3) as usize];
        let aside = dir.with_extension("real");
        std::fs::rename(dir, &aside).unwrap();
        symlink(target, dir).unwrap();
        std::thread::sleep(Duration::from_micros(500 + next() % 4_000));
        std::fs::remove_file(dir).unwrap();
        std::fs::rename(&aside, dir).unwrap();
        swaps.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(2_000 + next() % 12_000));
    }
}

/// Every regular file under `dest` (relative path -> content), without following any symlink.
fn pulled_files(dest: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let name = p.strip_prefix(dest).unwrap().to_string_lossy().into_owned();
                // Leftover partials of a failed pull are judged too: no secret byte may arrive at all.
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An inotify instance watching directories for every event (opens, reads, metadata, names).
struct Inotify {
    fd: i32,
}

impl Inotify {
    fn watch(dirs: &[&Path]) -> Inotify {
        // Safety: no pointers; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        for d in dirs {
            let c = CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
            let mask = libc::IN_ALL_EVENTS | libc::IN_OPEN | libc::IN_ACCESS;
            // Safety: a valid inotify descriptor and a NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
            assert!(wd >= 0, "inotify_add_watch {}: {}", d.display(), std::io::Error::last_os_error());
        }
        Inotify { fd }
    }

    /// The events queued since the last call: (mask, name), empty if none.
    fn events(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // Safety: `buf` has `buf.len()` writable bytes.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut at = 0usize;
            while at + std::mem::size_of::<libc::inotify_event>() <= n as usize {
                // Safety: the kernel wrote whole events; read_unaligned copes with the byte buffer.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                let head = std::mem::size_of::<libc::inotify_event>();
                let name = &buf[at + head..at + head + ev.len as usize];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
                out.push((ev.mask, name));
                at += head + ev.len as usize;
            }
        }
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // Safety: our descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}
