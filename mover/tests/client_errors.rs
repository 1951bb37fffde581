//! Issue 16, client-safe errors: whatever a daemon tells a client (refusals before a transfer, failures
//! during one, on stderr and in `--json`) names paths relative to the served root, never the root's own
//! absolute path (as configured or canonical); a transfer that cannot fit is refused before data flows,
//! with the numbers, on push (the daemon's disk) and on pull (the client's); token files edited by hand
//! work. Every case also checks that it provoked the error it is named for, so none passes vacuously.

mod common;

use common::certs;
use common::{is_root, mover, run_with_limit, skip_or_fail, write_random_file, Server, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A tmpfs of `size` mounted at `at` for the test's life (root only: else the test is skipped loudly).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(test: &str, at: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            skip_or_fail(test, "needs root to mount a small tmpfs (CI runs as root)");
            return None;
        }
        let options = format!("size={size}");
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &options, "mover-test"]).arg(at).status().unwrap();
        assert!(ok.success(), "mount tmpfs at {}", at.display());
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Everything the client printed: stderr and stdout (`--json`).
fn seen(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout))
}

/// `out` failed, showing `want` (one of them) and none of `hidden`.
fn assert_refused_hiding(case: &str, out: &Output, want: &[&str], hidden: &[String]) {
    let text = seen(out);
    eprintln!("{case}: {}", text.lines().next().unwrap_or_default());
    assert!(!out.status.success(), "{case}: succeeded, expected a failure: {text}");
    assert!(want.iter().any(|w| text.contains(w)), "{case}: expected one of {want:?} in: {text}");
    for h in hidden {
        assert!(!text.contains(h.as_str()), "{case}: the client was shown the server's root '{h}': {text}");
    }
}

fn push(src: &Path, url: &str) -> Output {
    let args = ["push", "--insecure-no-auth", "--json", "--rate", "200M"];
    run_with_limit(mover().args(args).arg(src).arg(url), LIMIT)
}

fn pull(url: &str, dest: &Path) -> Output {
    let args = ["pull", "--insecure-no-auth", "--json", "--rate", "200M"];
    run_with_limit(mover().args(args).arg(url).arg(dest), LIMIT)
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // Safety: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// A read-only bind mount of `dir` over itself, undone on drop (as root, permissions do not stop writes).
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn bind(dir: &Path) -> ReadOnly {
        let run =
            |args: &[&str]| assert!(Command::new("mount").args(args).arg(dir).arg(dir).status().unwrap().success());
        run(&["--bind"]);
        let ok = Command::new("mount").args(["-o", "remount,bind,ro"]).arg(dir).status().unwrap();
        assert!(ok.success(), "remount read-only");
        ReadOnly(dir.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn no_client_visible_error_names_the_servers_root() {
    let test = "no_client_visible_error_names_the_servers_root";
    let tmp = TempDir::new("client-errors");
    let real = tmp.path().join("srv-secret-root-4f2e");
    fs::create_dir(&real).unwrap();
    // Served through a symlink: both spellings must stay hidden.
    let link = tmp.path().join("served-via-link-9c1d");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // As root the root is a small tmpfs, so the disk-full cases run too.
    let tmpfs = if is_root() { Tmpfs::mount(test, &real, "4m") } else { None };
    if tmpfs.is_none() {
        skip_or_fail(&format!("{test} (its full-disk cases)"), "needs root to mount a small tmpfs");
    }
    let hidden = [real.display().to_string(), link.display().to_string(), tmp.path().display().to_string()];
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, real.join("escape")).unwrap();
    fs::write(real.join("afile"), b"x").unwrap();
    fs::create_dir_all(real.join("taken/small.txt")).unwrap();
    fs::create_dir(real.join("d")).unwrap();
    mkfifo(&real.join("d/small.txt"));
    fs::create_dir(real.join("ro")).unwrap();
    let _read_only = if is_root() {
        Some(ReadOnly::bind(&real.join("ro")))
    } else {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(real.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        None
    };

    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("many")).unwrap();
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    for i in 0..6 {
        fs::write(src.join(format!("many/f{i}")), b"f").unwrap();
    }
    let long = src.join("n".repeat(41));
    fs::write(&long, b"long").unwrap();

    let server = Server::start(&link, &["--max-files", "5", "--max-name-len", "40"]);
    let url = |dest: &str| format!("mover://{}/{dest}", server.addr);
    let small = src.join("small.txt");
    let cases: Vec<(&str, Output, &[&str])> = vec![
        ("a destination that climbs out", push(&small, &url("../up")), &["'..' components are not allowed"]),
        ("an absolute destination", push(&small, &format!("mover://{}//etc", server.addr)), &["absolute paths"]),
        ("a symlink escape", push(&small, &url("escape")), &["symlink escape"]),
        ("a file where a directory must be", push(&small, &url("afile/x")), &["not a directory", "afile"]),
        ("a directory at the final name", push(&small, &url("taken")), &["directory"]),
        ("a FIFO at the final name", push(&small, &url("d")), &["FIFO"]),
        ("an unwritable directory", push(&small, &url("ro/in")), &["not writable", "Read-only", "ermission denied"]),
        ("a refused name", push(&long, &url("names")), &["--max-name-len"]),
        ("too many entries", push(&src.join("many"), &url("many")), &["--max-files"]),
        ("a pull of a missing path", pull(&url("nope"), &tmp.path().join("p1")), &["nope"]),
        ("a pull through a symlink", pull(&url("escape"), &tmp.path().join("p2")), &["symbolic link", "symlink"]),
    ];
    for (case, out, want) in &cases {
        assert_refused_hiding(case, out, want, &hidden);
    }
    if tmpfs.is_some() {
        // More than the tmpfs holds: refused before data flows.
        let big = tmp.path().join("big.bin");
        write_random_file(&big, 8 << 20, 3);
        let out = push(&big, &url("big"));
        assert_refused_hiding("the free-space check", &out, &["not enough space on the server"], &hidden);
        // Sparse (not counted by the check), so it starts and fills the tmpfs mid-transfer.
        let sparse = tmp.path().join("sparse.bin");
        write_random_file(&sparse, 6 << 20, 4);
        fs::OpenOptions::new().write(true).open(&sparse).unwrap().set_len(8 << 20).unwrap();
        let out = push(&sparse, &url("mid"));
        assert_refused_hiding("a disk that fills mid-transfer", &out, &["No space left on device"], &hidden);
    }
    // The daemon's own log may name its root; the point is only what crossed to the client.
    drop(server);
}

#[test]
fn a_push_that_cannot_fit_is_refused_before_data_flows_with_the_numbers() {
    let test = "a_push_that_cannot_fit_is_refused_before_data_flows_with_the_numbers";
    let tmp = TempDir::new("room-push");
    let root = tmp.path().join("small");
    fs::create_dir(&root).unwrap();
    let Some(_mount) = Tmpfs::mount(test, &root, "4m") else { return };
    let big = tmp.path().join("big.bin");
    write_random_file(&big, 8 << 20, 5);
    let server = Server::start(&root, &[]);
    let out = push(&big, &format!("mover://{}/sub", server.addr));
    let text = seen(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not enough space on the server for this transfer: needs 9.01 MiB (8.00 MiB of data"),
        "{text}"
    );
    assert!(text.contains("free under 'sub'"), "{text}");
    assert!(!text.contains(root.to_str().unwrap()), "{text}");
    assert!(!root.join("sub/big.bin").exists(), "a refused file is under its final name");
    // What fits still goes.
    let fits = tmp.path().join("fits.bin");
    write_random_file(&fits, 1 << 20, 6);
    let out = push(&fits, &format!("mover://{}/sub", server.addr));
    assert!(out.status.success(), "{}", seen(&out));
}

#[test]
fn a_pull_that_cannot_fit_is_refused_here_before_data_flows() {
    let test = "a_pull_that_cannot_fit_is_refused_here_before_data_flows";
    let tmp = TempDir::new("room-pull");
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    write_random_file(&root.join("big.bin"), 8 << 20, 7);
    let here = tmp.path().join("here");
    fs::create_dir(&here).unwrap();
    let Some(_mount) = Tmpfs::mount(test, &here, "4m") else { return };
    let server = Server::start(&root, &[]);
    let dest = here.join("pulled");
    let out = pull(&format!("mover://{}/big.bin", server.addr), &dest);
    let text = seen(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not enough space here for this transfer: needs 9.01 MiB (8.00 MiB of data"), "{text}");
    assert!(text.contains(&format!("free under '{}'", dest.display())), "{text}");
    assert!(!dest.join("big.bin").exists(), "a refused file is under its final name");
}

#[test]
fn token_files_with_blank_lines_comments_and_crlf_work() {
    let tmp = TempDir::new("token-files");
    let d = tmp.path();
    let certs_dir = d.join("certs");
    fs::create_dir(&certs_dir).unwrap();
    let c = certs::make(&certs_dir);
    let out = run_with_limit(mover().args(["token", "--user", "alice"]), LIMIT);
    assert!(out.status.success(), "mover token: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let line = String::from_utf8(out.stderr).unwrap().trim().to_string();
    // The daemon's file, as edited on another system: a blank first line, a comment, CRLF, trailing spaces.
    let tokens = d.join("tokens");
    fs::write(&tokens, format!("\r\n# mover users\r\n{line}   \r\n\r\n")).unwrap();
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    let tls = ["--tls-cert", c.server_cert.to_str().unwrap(), "--tls-key", c.server_key.to_str().unwrap()];
    let server = Server::start(&root, &[&tls[..], &["--tokens", tokens.to_str().unwrap()]].concat());
    let src = d.join("f.txt");
    fs::write(&src, b"hello\n").unwrap();
    let push_with = |token_file: &Path, dest: &str| {
        let ca = c.ca.to_str().unwrap();
        let args = ["push", "--ca", ca, "--user", "alice", "--token-file", token_file.to_str().unwrap()];
        run_with_limit(mover().args(args).arg(&src).arg(format!("mover://{}/{dest}", server.addr)), LIMIT)
    };
    // The client's file: a blank first line, a comment, CRLF and trailing spaces.
    let edited = d.join("edited.token");
    fs::write(&edited, format!("\n# alice on files.example\r\n  {token}  \r\n")).unwrap();
    let out = push_with(&edited, "ok");
    assert!(out.status.success(), "{}", seen(&out));
    assert_eq!(fs::read(root.join("ok/f.txt")).unwrap(), b"hello\n");
    // A file with no token says so, naming the file and the format; an authentication failure (exit 4).
    let empty = d.join("empty.token");
    fs::write(&empty, "\n  \r\n# no token yet\n").unwrap();
    let out = push_with(&empty, "no");
    let text = seen(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("empty.token' holds no token") && text.contains("on a line of its own"), "{text}");
    assert!(!text.contains("no credentials"), "{text}");
    // A daemon token file without a valid line is refused at start-up, naming the format.
    let none = d.join("none");
    fs::write(&none, "\r\n# nobody yet\r\n").unwrap();
    let args =
        ["serve", "--listen", "127.0.0.1:0", "--root", root.to_str().unwrap(), "--tokens", none.to_str().unwrap()];
    let out = run_with_limit(mover().args(args).args(tls), LIMIT);
    let text = seen(&out);
    assert!(!out.status.success() && text.contains("'USER SHA256-HEX' per line") && text.contains("none'"), "{text}");
}
