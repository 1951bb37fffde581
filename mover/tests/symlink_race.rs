//! The push half of issue 16's symlink race: a real `mover serve` receives a tree again and again while
//! another thread swaps the destination directory and its subdirectories for symlinks to a directory
//! outside the root and back (atomically, `renameat2(RENAME_EXCHANGE)`). The outside directory holds a
//! decoy laid out like the destination, so a write that followed a symlink would find its target.
//!
//! What must hold: inotify on every directory of the outside tree records nothing at all (no open, no
//! create, no write, no rename, no attribute change), the outside tree is unchanged (names, sizes, modes,
//! mtimes), and every push that succeeded left an intact copy under the root. Pushes that meet a swap may
//! fail (that is the daemon refusing a symlink); some must succeed. Run under both ways of resolving paths
//! below the root: `openat2` and the walk a kernel without it gets (`MOVER_RESOLVE=walk`, a test hook of
//! `files::beneath::Resolve::configured`).

mod common;

use common::{hash_file, mover, run_with_limit, write_random_file, Server, TempDir};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Wall-clock budget of each mode's push loop (and a cap on iterations).
const BUDGET: Duration = Duration::from_secs(25);
const MAX_ITERATIONS: usize = 40;
const DEST: &str = "dest";

#[test]
fn push_never_writes_outside_the_root_while_directories_are_swapped_openat2() {
    race(&[]);
}

#[test]
fn push_never_writes_outside_the_root_while_directories_are_swapped_walk() {
    race(&[("MOVER_RESOLVE", "walk")]);
}

fn race(env: &[(&str, &str)]) {
    let mode = if env.is_empty() { "openat2" } else { "walk" };
    let tmp = TempDir::new(&format!("symlink-race-{mode}"));
    let (src, root, outside) = (tmp.path().join("src"), tmp.path().join("root"), tmp.path().join("outside"));
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let files = source_tree(&src);
    let server = Server::start_with_env(&root, &["--net", "udp"], env);
    let url = format!("mover://{}/{DEST}", server.addr);
    let push = || {
        run_with_limit(
            mover()
                .args(["push", "--insecure-no-auth", "--net", "udp", "--rate", "2G", "--overwrite", "always"])
                .arg(&src)
                .arg(&url),
            Duration::from_secs(60),
        )
    };

    // One push without swaps lays the destination out; the decoy mirrors it outside.
    let first = push();
    assert!(first.status.success(), "first push: {}", String::from_utf8_lossy(&first.stderr));
    let dest = root.join(DEST);
    assert!(dest.join("src").is_dir(), "the tree lands in {DEST}/src");
    let dirs = dirs_under(&dest);
    assert!(dirs.len() >= 5, "{dirs:?}");
    let decoy = outside.join(DEST);
    for d in &dirs {
        fs::create_dir_all(decoy.join(d)).unwrap();
    }
    for f in &files {
        let rel = Path::new("src").join(f);
        fs::write(decoy.join(&rel), b"decoy: nothing may write here").unwrap();
        let name = rel.file_name().unwrap().to_str().unwrap();
        fs::write(decoy.join(rel.with_file_name(format!(".{name}.mover.part"))), b"decoy partial").unwrap();
    }
    // The watch itself is proven to see a write (a silent watch would pass anything).
    let probe = tmp.path().join("probe");
    fs::create_dir_all(probe.join("sub")).unwrap();
    let probe_watch = Inotify::watch_tree(&probe);
    fs::write(probe.join("sub/x"), b"x").unwrap();
    assert!(!probe_watch.events().is_empty(), "inotify saw no event for a write");
    let before = snapshot(&outside);
    let watch = Inotify::watch_tree(&outside);

    // The swapper: DEST and every directory below it, in turn, exchanged with a symlink to its decoy.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let quiet = Arc::new(Mutex::new(()));
    let swapper = {
        let (stop, swaps, quiet) = (stop.clone(), swaps.clone(), quiet.clone());
        let targets: Vec<PathBuf> = std::iter::once(PathBuf::new()).chain(dirs.iter().cloned()).collect();
        let (dest, decoy) = (dest.clone(), decoy.clone());
        std::thread::spawn(move || {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let rel = &targets[k % targets.len()];
                k += 1;
                let _q = quiet.lock().unwrap();
                if swap_once(&dest, rel, &decoy.join(rel), k) {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
                drop(_q);
                // Bursts of swaps (~20 over a quarter second, irregular gaps) between quiet spells of 2 s:
                // a push (about half a second) that falls in a quiet spell meets no swap and must succeed.
                let gap_ms = if k % 20 == 0 { 2000 } else { 2 + (k * 37 % 13) as u64 };
                std::thread::sleep(Duration::from_millis(gap_ms));
            }
        })
    };
    let start = Instant::now();
    let (mut ok, mut failed, mut iterations) = (0u32, 0u32, 0usize);
    let mut first_failure = None;
    while start.elapsed() < BUDGET && iterations < MAX_ITERATIONS {
        iterations += 1;
        let out = push();
        if out.status.success() {
            ok += 1;
            // Verified with the swapper held still (reading through a swapped name would read the decoy).
            let _q = quiet.lock().unwrap();
            for f in &files {
                assert_eq!(hash_file(&dest.join("src").join(f)), hash_file(&src.join(f)), "{mode}: '{f}' after a push");
            }
        } else {
            failed += 1;
            first_failure.get_or_insert_with(|| String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let events = watch.events();
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "symlink race ({mode}): {iterations} pushes, {ok} succeeded, {failed} failed, {swaps} swaps, {} inotify \
         events outside; first failure: {}",
        events.len(),
        first_failure.as_deref().unwrap_or("none").trim()
    );
    assert!(events.is_empty(), "{mode}: operations outside the root: {events:?}");
    assert_eq!(snapshot(&outside), before, "{mode}: the outside tree changed");
    assert!(swaps > 0, "{mode}: the swapper never swapped");
    assert!(ok > 0, "{mode}: no push succeeded; first failure: {first_failure:?}");
    // With the swapper gone, a push succeeds and the copy is intact. The daemon's side of the race's last
    // failed push may still be ending and hold its claims for a moment ("another transfer is writing ...;
    // wait for it"): as the error says, wait and push again.
    let mut last = push();
    for _ in 0..20 {
        if last.status.success() || !String::from_utf8_lossy(&last.stderr).contains("another transfer is writing") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        last = push();
    }
    assert!(last.status.success(), "{mode}: push after the race: {}", String::from_utf8_lossy(&last.stderr));
    for f in &files {
        assert_eq!(hash_file(&dest.join("src").join(f)), hash_file(&src.join(f)), "{mode}: '{f}'");
    }
}

/// ~200 small files in four directories (two of them nested); returns their paths relative to `src`.
fn source_tree(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for (k, d) in ["a", "b", "a/deep", "c"].iter().enumerate() {
        fs::create_dir_all(src.join(d)).unwrap();
        for i in 0..50u64 {
            let f = format!("{d}/f{i}.bin");
            write_random_file(&src.join(&f), 500 + i * 97, k as u64 * 1000 + i);
            files.push(f);
        }
    }
    files
}

/// Every directory below `dir`, relative to it (deepest last).
fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(dir.join(&rel)).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                let r = rel.join(e.file_name());
                out.push(r.clone());
                stack.push(r);
            }
        }
    }
    out.sort_by_key(|p| p.components().count());
    out
}

/// Exchanges `dest/rel` with a symlink to `target` for a moment and back, each step one atomic
/// `renameat2(RENAME_EXCHANGE)`, so the name never stands empty (a push would otherwise create it anew).
/// Whether the swap happened (the name may be missing or busy).
fn swap_once(dest: &Path, rel: &Path, target: &Path, k: usize) -> bool {
    // `dest.join("")` would end in a slash, which makes the kernel follow the symlink swapped in.
    let real = if rel.as_os_str().is_empty() { dest.to_path_buf() } else { dest.join(rel) };
    let Some(parent) = real.parent() else { return false };
    let link = parent.join(format!(".swap-{k}"));
    if symlink(target, &link).is_err() {
        return false;
    }
    if exchange(&link, &real).is_err() {
        let _ = fs::remove_file(&link);
        return false;
    }
    std::thread::sleep(Duration::from_millis(2 + (k % 5) as u64));
    exchange(&link, &real).expect("swapping the directory back");
    fs::remove_file(&link).expect("removing the symlink");
    true
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let (a, b) = (CString::new(a.as_os_str().as_bytes()).unwrap(), CString::new(b.as_os_str().as_bytes()).unwrap());
    // Safety: NUL-terminated paths; AT_FDCWD.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every name under `dir` with its size, mode and mtime.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, u32, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            out.push((e.path(), m.len(), m.mode(), m.mtime(), m.mtime_nsec()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// An inotify instance watching every directory of a tree for every event.
struct Inotify {
    fd: i32,
    dirs: Vec<PathBuf>,
}

impl Inotify {
    fn watch_tree(dir: &Path) -> Inotify {
        // Safety: no arguments but flags; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(dirs_under(dir).into_iter().map(|r| dir.join(r)));
        for d in &dirs {
            let c = CString::new(d.as_os_str().as_bytes()).unwrap();
            // Safety: a valid inotify descriptor and a NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_ALL_EVENTS) };
            assert!(wd >= 0, "inotify_add_watch {}: {}", d.display(), std::io::Error::last_os_error());
        }
        Inotify { fd, dirs }
    }

    /// Every event recorded so far, as (directory watched, mask, name).
    fn events(&self) -> Vec<(PathBuf, u32, String)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // Safety: `buf` has `buf.len()` writable bytes.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            let head = std::mem::size_of::<libc::inotify_event>();
            while at + head <= n as usize {
                // Safety: the kernel wrote a whole event header at `at`; read unaligned.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                let name = &buf[at + head..at + head + ev.len as usize];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
                // Watch descriptors are handed out 1, 2, ... in the order the directories were added.
                let dir = self.dirs.get((ev.wd - 1).max(0) as usize).cloned().unwrap_or_default();
                out.push((dir, ev.mask, name));
                at += head + ev.len as usize;
            }
        }
        out
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // Safety: our descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}
