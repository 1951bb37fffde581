//! Sync semantics over loopback with the real binary (issue 15, item 3): a second push of an unchanged tree
//! sends no file data; `--overwrite never` never replaces a file; `if-newer` replaces only older ones;
//! `--checksum` catches a same-size, same-mtime change that the quick check cannot see; `--no-resume` starts a
//! partial over; a pull resumes into its own partials the same way.

mod common;

use common::{hash_file, json_u64, mover, run_with_limit, write_random_file, Server, TempDir};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Sets a file's mtime (seconds, nanoseconds).
fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let times = [libc::timespec { tv_sec: secs, tv_nsec: nanos }, libc::timespec { tv_sec: secs, tv_nsec: nanos }];
    // Safety: a valid NUL-terminated path and two timespecs.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
}

fn mtime(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// `mover push --json [extra] SRC mover://ADDR/in`; returns the JSON after asserting success.
fn push(server: &Server, src: &Path, extra: &[&str]) -> String {
    let url = format!("mover://{}/in", server.addr);
    let out = run_with_limit(
        mover().args(["push", "--insecure-no-auth", "--json", "--rate", "2G"]).args(extra).arg(src).arg(&url),
        LIMIT,
    );
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "push failed: {}\n{json}", String::from_utf8_lossy(&out.stderr));
    json
}

fn tree(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..20u64 {
        write_random_file(&src.join(format!("a/f{i}.bin")), 10_000 + i * 3001, i);
    }
    write_random_file(&src.join("a/b/big.bin"), 6 << 20, 99);
    std::fs::write(src.join("empty"), b"").unwrap();
    src
}

#[test]
fn second_push_of_an_unchanged_tree_sends_no_file_data() {
    let dir = TempDir::new("sync-second");
    let src = tree(dir.path());
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let first = push(&server, &src, &[]);
    assert_eq!(json_u64(&first, "skipped_files"), Some(0), "{first}");
    let second = push(&server, &src, &[]);
    assert_eq!(json_u64(&second, "sent_bytes"), Some(0), "a second push sent file data: {second}");
    assert_eq!(json_u64(&second, "skipped_files"), Some(22), "{second}");
    let total: u64 = (0..20u64).map(|i| 10_000 + i * 3001).sum::<u64>() + (6 << 20);
    assert_eq!(json_u64(&second, "skipped_bytes"), Some(total), "{second}");
    // One file touched (new mtime, same bytes): the quick check sends it again, and only it.
    let touched = src.join("a/f3.bin");
    set_mtime(&touched, 1_700_000_000, 5);
    let third = push(&server, &src, &[]);
    assert_eq!(json_u64(&third, "skipped_files"), Some(21), "{third}");
    assert_eq!(json_u64(&third, "files"), Some(1), "{third}");
    assert_eq!(mtime(&root.join("in/src/a/f3.bin")), (1_700_000_000, 5), "mtime kept");
}

#[test]
fn overwrite_never_and_if_newer_and_always() {
    let dir = TempDir::new("sync-overwrite");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let root = dir.path().join("root");
    let dst = root.join("in/src");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("x"), b"new contents from the source").unwrap();
    std::fs::write(dst.join("x"), b"the receiver's own copy").unwrap();
    let server = Server::start(&root, &[]);

    // never: the receiver's file stays, whatever the source says.
    set_mtime(&src.join("x"), 2_000_000_000, 0);
    set_mtime(&dst.join("x"), 1_000_000_000, 0);
    let j = push(&server, &src, &["--overwrite", "never"]);
    assert_eq!(std::fs::read(dst.join("x")).unwrap(), b"the receiver's own copy");
    assert_eq!(json_u64(&j, "skipped_files"), Some(1), "{j}");

    // if-newer: an older source does not replace a newer destination file...
    set_mtime(&src.join("x"), 900_000_000, 0);
    push(&server, &src, &["--overwrite", "if-newer"]);
    assert_eq!(std::fs::read(dst.join("x")).unwrap(), b"the receiver's own copy");
    // ...a newer one does.
    set_mtime(&src.join("x"), 2_000_000_000, 0);
    push(&server, &src, &["--overwrite", "if-newer"]);
    assert_eq!(std::fs::read(dst.join("x")).unwrap(), b"new contents from the source");

    // always: sent again although identical.
    let j = push(&server, &src, &["--overwrite", "always"]);
    assert_eq!(json_u64(&j, "skipped_files"), Some(0), "{j}");
    assert_eq!(json_u64(&j, "files"), Some(1), "{j}");
}

#[test]
fn checksum_catches_a_same_size_same_mtime_change() {
    let dir = TempDir::new("sync-checksum");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    write_random_file(&src.join("data.bin"), 1 << 20, 7);
    set_mtime(&src.join("data.bin"), 1_600_000_000, 123);
    let server = Server::start(&root, &[]);
    push(&server, &src, &[]);
    let dst = root.join("in/src/data.bin");
    // Change one byte on the receiver's side, keeping size and mtime: the quick check cannot see it.
    let mut bytes = std::fs::read(&dst).unwrap();
    bytes[4242] ^= 0x55;
    std::fs::write(&dst, &bytes).unwrap();
    set_mtime(&dst, 1_600_000_000, 123);
    let quick = push(&server, &src, &[]);
    assert_eq!(json_u64(&quick, "skipped_files"), Some(1), "the quick check skips it (as rsync's does): {quick}");
    assert_ne!(hash_file(&dst), hash_file(&src.join("data.bin")));
    let sum = push(&server, &src, &["--checksum"]);
    assert_eq!(json_u64(&sum, "skipped_files"), Some(0), "--checksum must see the change: {sum}");
    assert_eq!(hash_file(&dst), hash_file(&src.join("data.bin")));
    // And with --checksum an identical file is skipped.
    let again = push(&server, &src, &["--checksum"]);
    assert_eq!(json_u64(&again, "skipped_files"), Some(1), "{again}");
    assert_eq!(json_u64(&again, "sent_bytes"), Some(0), "{again}");
}

/// A pull killed midway leaves its partial and journal in the local destination; the same command again
/// resumes into them (sending less than the whole file) and leaves only the verified file.
#[test]
fn an_interrupted_pull_resumes_into_its_own_partial() {
    let dir = TempDir::new("sync-pull-resume");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let size = 96u64 << 20;
    write_random_file(&root.join("big.bin"), size, 42);
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/big.bin", server.addr);
    let local = dir.path().join("local");
    let args = |json: bool| {
        let mut c = mover();
        c.args(["pull", "--insecure-no-auth", "--rate", "300M", "--retries", "0"]);
        if json {
            c.arg("--json");
        }
        c.arg(&url).arg(&local);
        c
    };
    let mut child =
        args(false).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // At 300 Mbit/s the file takes ~2.7 s: stop it after ~1.4 s, past a few journal steps of 16 MiB.
    std::thread::sleep(Duration::from_millis(1400));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let names = common::list_tree(&local);
    assert!(names.iter().any(|n| n.ends_with(".big.bin.mover.part")), "no partial kept: {names:?}");
    assert!(!local.join("big.bin").exists(), "nothing under the final name before it is verified");
    let out = run_with_limit(&mut args(true), LIMIT);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rerun failed: {}\n{json}", String::from_utf8_lossy(&out.stderr));
    let resumed = json_u64(&json, "resumed_bytes").unwrap();
    assert!(resumed >= 16 << 20 && resumed < size, "resumed {resumed} of {size}: {json}");
    assert_eq!(hash_file(&local.join("big.bin")), hash_file(&root.join("big.bin")));
    let names = common::list_tree(&local);
    assert_eq!(names, ["big.bin"], "only the verified file is left");
}
