//! Bad input gets one clear error line and a non-zero exit, and loses nothing: refused and unreachable
//! servers, a missing root, a full disk, hostile destination paths, garbage on the control port.

mod common;

use common::{is_root, list_tree, mover, run_with_limit, skip_or_fail, Server, TempDir};
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The single `mover: error:` line of a failed run.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure, got success: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mover: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected in: {stderr}");
    errors[0].to_string()
}

fn small_source(tmp: &TempDir) -> std::path::PathBuf {
    let p = tmp.path().join("file.bin");
    fs::write(&p, vec![7u8; 100_000]).unwrap();
    p
}

#[test]
fn refused_connection() {
    let tmp = TempDir::new("refused");
    let src = small_source(&tmp);
    let out =
        run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg("mover://127.0.0.1:1/x"), LIMIT);
    let line = error_line(&out);
    assert!(line.contains("cannot connect to 127.0.0.1:1") && line.contains("refused"), "{line}");
}

#[test]
fn unreachable_server() {
    if !is_root() {
        skip_or_fail("unreachable_server", "needs root for a network namespace (CI runs as root)");
        return;
    }
    // A namespace with nothing but loopback: no route anywhere, so connect fails at once and no packet
    // leaves this machine.
    let ns = format!("mover-unreach-{}", std::process::id());
    assert!(std::process::Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let tmp = TempDir::new("unreach");
    let src = small_source(&tmp);
    let out = run_with_limit(
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_mover"), "push", "--insecure-no-auth"])
            .arg(&src)
            .arg("mover://10.77.250.1:7400/x"),
        LIMIT,
    );
    let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
    let line = error_line(&out);
    assert!(line.contains("cannot connect to 10.77.250.1:7400") && line.contains("unreachable"), "{line}");
}

#[test]
fn missing_root_and_missing_source() {
    let out = run_with_limit(
        mover().args(["serve", "--insecure-no-auth", "--listen", "127.0.0.1:0", "--root", "/nonexistent/mover"]),
        LIMIT,
    );
    let line = error_line(&out);
    assert!(line.contains("root '/nonexistent/mover' does not exist"), "{line}");

    let out =
        run_with_limit(mover().args(["push", "--insecure-no-auth", "/nonexistent/src", "mover://127.0.0.1:1/"]), LIMIT);
    let line = error_line(&out);
    assert!(line.contains("/nonexistent/src") && line.contains("No such file"), "{line}");
}

#[test]
fn hostile_destination_paths_are_refused_and_nothing_is_written() {
    let tmp = TempDir::new("hostile");
    let src = small_source(&tmp);
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("ok")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let mut server = Server::start(&root, &[]);
    for (path, why) in [
        ("../outside", "'..'"),
        ("ok/../../outside", "'..'"),
        ("/etc", "absolute"),
        ("escape/sub", "symlink"),
        ("./ok", "'.'"),
    ] {
        let url = format!("mover://{}/{path}", server.addr);
        let out = run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg(&url), LIMIT);
        let line = error_line(&out);
        assert!(line.contains("server refused") && line.contains(why), "{path}: {line}");
    }
    assert!(list_tree(&outside).is_empty(), "wrote outside the root: {:?}", list_tree(&outside));
    assert_eq!(list_tree(&root), vec!["escape".to_string(), "ok".to_string()]);
    assert!(server.child.try_wait().unwrap().is_none(), "the server survives refused sessions");
}

#[test]
fn hostile_pull_paths_are_refused_and_nothing_is_written() {
    let tmp = TempDir::new("hostile-pull");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("ok")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let server = Server::start(&root, &[]);
    let dest = tmp.path().join("dest");
    for (path, why) in [
        ("../outside", "'..'"),
        ("ok/../../outside", "'..'"),
        ("/etc/passwd", "absolute"),
        ("escape", "symlink"),
        ("escape/secret", "symlink"),
        ("missing", "No such file"),
    ] {
        let url = format!("mover://{}/{path}", server.addr);
        let out = run_with_limit(mover().args(["pull", "--insecure-no-auth"]).arg(&url).arg(&dest), LIMIT);
        let line = error_line(&out);
        assert!(line.contains("server refused") && line.contains(why), "{path}: {line}");
        assert!(!dest.exists(), "{path}: the refused pull created the destination");
    }
    drop(server);
}

#[test]
fn garbage_on_the_control_port_does_not_hurt_the_server() {
    let tmp = TempDir::new("garbage");
    let src = small_source(&tmp);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    // An absurd frame length, then random bytes, then a half-open connection.
    for junk in [&[0xffu8, 0xff, 0xff, 0xff, 1, 2, 3][..], b"GET / HTTP/1.1\r\n\r\n", &[0, 0, 0, 5, 1]] {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.write_all(junk).unwrap();
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let url = format!("mover://{}/after", server.addr);
    let out = run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg(&url), LIMIT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(root.join("after/file.bin")).unwrap(), vec![7u8; 100_000]);
}

#[test]
fn full_disk_fails_with_a_clear_error_and_keeps_only_a_resumable_partial() {
    if !is_root() {
        skip_or_fail(
            "full_disk_fails_with_a_clear_error_and_keeps_only_a_resumable_partial",
            "needs root to mount a small tmpfs (CI runs as root)",
        );
        return;
    }
    let tmp = TempDir::new("full");
    let root = tmp.path().join("small");
    fs::create_dir(&root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "mover-test"])
        .arg(&root)
        .status()
        .unwrap()
        .success();
    assert!(mounted, "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(root.clone());
    let src = tmp.path().join("big.bin");
    // 6 MiB of data and a hole to 8 MiB: the free-space check counts no sparse file (the manifest does not
    // say how much of it is data), so the transfer starts and the disk fills mid-transfer.
    fs::write(&src, vec![1u8; 6 << 20]).unwrap();
    fs::OpenOptions::new().write(true).open(&src).unwrap().set_len(8 << 20).unwrap();
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/", server.addr);
    let out = run_with_limit(mover().args(["push", "--insecure-no-auth", "--rate", "500M"]).arg(&src).arg(&url), LIMIT);
    let line = error_line(&out);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains("free space and run the same command again to resume"), "{line}");
    let status = server.wait(Duration::from_secs(10)).expect("serve --once exits");
    assert!(!status.success());
    assert_only_a_resumable_partial(&root, &src);
}

/// Issue 15: a failed session leaves nothing under the final name, and at most the partial with a journal
/// whose every range still verifies (the next run resumes it); never a partial without one.
fn assert_only_a_resumable_partial(root: &std::path::Path, src: &std::path::Path) {
    use mover::files::journal::{self, journal_path_for, FileIdentity};
    use std::os::unix::fs::MetadataExt;
    let left = list_tree(root);
    let partial = root.join(".big.bin.mover.part");
    let jpath = journal_path_for(&partial);
    if left.is_empty() {
        return;
    }
    assert_eq!(left, [".big.bin.mover.part", ".big.bin.mover.part.journal"], "left behind: {left:?}");
    let meta = fs::metadata(src).unwrap();
    let identity = FileIdentity {
        size: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        mode: meta.mode() & 0o7777,
        path_hash: FileIdentity::path_hash(b"big.bin"),
    };
    let r = journal::load(&jpath, &identity).unwrap();
    let file = fs::File::open(&partial).unwrap();
    assert_eq!(journal::verify_ranges(&file, &r.ranges).unwrap(), r.ranges, "a journaled range does not verify");
}

#[test]
fn a_client_killed_mid_transfer_fails_the_session_and_leaves_only_a_resumable_partial() {
    let tmp = TempDir::new("killed");
    let src = tmp.path().join("big.bin");
    fs::write(&src, vec![3u8; 64 << 20]).unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/", server.addr);
    let mut push = mover()
        .args(["push", "--insecure-no-auth", "--rate", "100M"])
        .arg(&src)
        .arg(&url)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    push.kill().unwrap();
    push.wait().unwrap();
    let status = server.wait(Duration::from_secs(10)).expect("the server notices the closed connection and exits");
    assert!(!status.success());
    assert_only_a_resumable_partial(&root, &src);
    // The same push again completes and leaves nothing but the file.
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/", server.addr);
    let out = run_with_limit(mover().args(["push", "--insecure-no-auth", "--rate", "2G"]).arg(&src).arg(&url), LIMIT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(server.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert_eq!(list_tree(&root), ["big.bin"]);
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), vec![3u8; 64 << 20]);
}

/// Rate options that contradict each other or name no policy are refused before anything connects.
#[test]
fn contradictory_rate_options_are_refused() {
    let tmp = TempDir::new("rate-options");
    let src = small_source(&tmp);
    let out = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--rate", "100M", "--min-rate", "200M"])
            .arg(&src)
            .arg("mover://127.0.0.1:1/x"),
        LIMIT,
    );
    let line = error_line(&out);
    assert!(line.contains("--min-rate") && line.contains("above --rate"), "{line}");
    let out = run_with_limit(
        mover().args(["push", "--insecure-no-auth", "--policy", "fast"]).arg(&src).arg("mover://127.0.0.1:1/x"),
        LIMIT,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("use fixed, fair or low"), "{stderr}");
}
