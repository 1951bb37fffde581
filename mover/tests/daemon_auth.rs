//! The authenticated, confined daemon: `mover serve` as a real process over loopback with TLS, tokens and
//! client certificates (made with `openssl`), and clients that are the real `mover push` or, to send what
//! `push` never would (`..`, absolute paths, NUL), a hand-made session through the library's
//! `connect_client`. Every refusal must be clear and leave nothing written.

mod common;

use common::certs::{self, Certs};
use common::{mover, run_with_limit, skip_or_fail, Server, TempDir};
use mover::connect::{connect_client, ClientAuth};
use mover::files::{Entry, EntryKind};
use mover::net::ControlChannel;
use mover::wire::control::{ControlMsg, Hello};
use mover::wire::{Cipher, VERSION};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(10);

struct Setup {
    _dir: TempDir,
    certs: Certs,
    /// The daemon's token file (alice's line).
    tokens: PathBuf,
    /// A file holding alice's token.
    token: PathBuf,
    root: PathBuf,
    /// A directory outside the root that symlinks point to: must stay empty.
    outside: PathBuf,
    /// A source tree: `data/a.bin` (3 MB) and `data/sub/b.txt`.
    src: PathBuf,
}

fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let d = dir.path().to_path_buf();
    let certs_dir = d.join("certs");
    std::fs::create_dir(&certs_dir).unwrap();
    let certs = certs::make(&certs_dir);
    // `mover token` makes the token (stdout) and the daemon's token-file fragment (stderr, appended as is).
    let out = run_with_limit(mover().args(["token", "--user", "alice"]), LIMIT);
    assert!(out.status.success(), "mover token: {}", String::from_utf8_lossy(&out.stderr));
    let token = d.join("alice.token");
    std::fs::write(&token, &out.stdout).unwrap();
    let tokens = d.join("tokens");
    std::fs::write(&tokens, &out.stderr).unwrap();
    let (root, outside, src) = (d.join("root"), d.join("outside"), d.join("src/data"));
    for p in [&root, &outside, &src.join("sub")] {
        std::fs::create_dir_all(p).unwrap();
    }
    common::write_random_file(&src.join("a.bin"), 3_000_000, 7);
    std::fs::write(src.join("sub/b.txt"), b"hello\n").unwrap();
    Setup { _dir: dir, certs, tokens, token, root, outside, src }
}

impl Setup {
    /// A daemon with TLS, client certificates and tokens (and `extra` flags).
    fn server(&self, extra: &[&str]) -> Server {
        let mut args = vec![
            "--tls-cert",
            self.certs.server_cert.to_str().unwrap(),
            "--tls-key",
            self.certs.server_key.to_str().unwrap(),
            "--client-ca",
            self.certs.ca.to_str().unwrap(),
            "--tokens",
            self.tokens.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Server::start(&self.root, &args)
    }

    fn token_args(&self) -> Vec<String> {
        let s = |p: &Path| p.to_str().unwrap().to_string();
        vec!["--ca".into(), s(&self.certs.ca), "--token-file".into(), s(&self.token), "--user".into(), "alice".into()]
    }

    fn cert_args(&self) -> Vec<String> {
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let c = &self.certs;
        vec!["--ca".into(), s(&c.ca), "--cert".into(), s(&c.client_cert), "--key".into(), s(&c.client_key)]
    }

    /// The library's credentials for alice's token.
    fn token_auth(&self) -> ClientAuth {
        let token = std::fs::read_to_string(&self.token).unwrap();
        ClientAuth::tls(&self.certs.ca, None, "alice", Some(token.trim())).unwrap()
    }

    /// Everything under the root and outside it, to show that a refusal wrote nothing.
    fn snapshot(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        (listing(&self.root), listing(&self.outside))
    }
}

/// Every path below `dir`, sorted (symlinks not followed).
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// `mover push --rate 500M ARGS SRC URL`.
fn push(args: &[String], src: &Path, url: &str) -> Output {
    run_with_limit(mover().args(["push", "--rate", "500M"]).args(args).arg(src).arg(url), LIMIT)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_refused(out: &Output, want: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "push succeeded, expected a refusal with '{want}': {err}");
    assert!(err.contains(want), "expected '{want}' in: {err}");
}

fn url(server: &Server, dest: &str) -> String {
    format!("mover://{}/{dest}", server.addr)
}

fn file(path: &str, size: u64) -> Entry {
    Entry {
        rel_path: path.into(),
        kind: EntryKind::File,
        size,
        mode: 0o644,
        mtime_s: 0,
        mtime_ns: 0,
        ..Entry::default()
    }
}

fn connect(server: &Server, auth: &ClientAuth) -> ControlChannel {
    let addr: SocketAddr = server.addr.parse().unwrap();
    connect_client("127.0.0.1", addr, auth, T).unwrap()
}

/// A hand-made session asking for `dest` with `entries`: returns the server's refusal.
fn refusal(server: &Server, auth: &ClientAuth, dest: &str, entries: &[Entry]) -> String {
    let mut ch = connect(server, auth);
    let hello = Hello {
        version: VERSION as u16,
        block_payload: 1400,
        rate_bps: 1_000_000_000,
        window_blocks: 1 << 16,
        entry_count: entries.len() as u64,
        total_bytes: entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).sum(),
        cipher: Cipher::default(),
        options: Default::default(),
        policy: Default::default(),
        dest: dest.into(),
    };
    let mut msgs = vec![ControlMsg::Hello(hello)];
    msgs.extend(entries.iter().cloned().map(ControlMsg::Entry));
    msgs.push(ControlMsg::ManifestEnd);
    for m in &msgs {
        if ch.send(m).is_err() {
            break;
        }
    }
    match ch.expect_msg(T, "waiting for the refusal") {
        Ok(ControlMsg::Error { message }) => message,
        other => panic!("dest {dest:?}, entries {entries:?}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn token_and_certificate_pushes_arrive_byte_identical() {
    let s = setup("auth-ok");
    let server = s.server(&[]);
    let started = Instant::now();
    let out = push(&s.token_args(), &s.src, &url(&server, "by-token"));
    assert!(out.status.success(), "token push failed: {}", stderr(&out));
    let out = push(&s.cert_args(), &s.src, &url(&server, "by-cert"));
    assert!(out.status.success(), "certificate push failed: {}", stderr(&out));
    eprintln!("two TLS pushes of 3 MB: {:?}", started.elapsed());
    for dest in ["by-token", "by-cert"] {
        for f in ["a.bin", "sub/b.txt"] {
            let got = std::fs::read(s.root.join(dest).join("data").join(f)).unwrap();
            assert_eq!(got, std::fs::read(s.src.join(f)).unwrap(), "{dest}/data/{f} differs");
        }
    }
    // A pull from the daemon authenticates the same way.
    let back = s.root.parent().unwrap().join("pulled");
    let out = run_with_limit(
        mover().args(["pull", "--rate", "500M"]).args(s.token_args()).arg(url(&server, "by-token/data")).arg(&back),
        LIMIT,
    );
    assert!(out.status.success(), "token pull failed: {}", stderr(&out));
    assert_eq!(std::fs::read(back.join("data/a.bin")).unwrap(), std::fs::read(s.src.join("a.bin")).unwrap());
    let mut wrong = s.token_args();
    wrong[5] = "bob".into();
    let out = run_with_limit(
        mover().args(["pull"]).args(wrong).arg(url(&server, "by-token/data")).arg(back.join("no")),
        LIMIT,
    );
    assert_refused(&out, "authentication failed for user 'bob'");
    assert!(!back.join("no").exists());
    // MOVER_TOKEN works as well as --token-file.
    let token = std::fs::read_to_string(&s.token).unwrap();
    let out = run_with_limit(
        mover()
            .env("MOVER_TOKEN", token.trim())
            .args(["push", "--rate", "500M", "--user", "alice", "--ca"])
            .arg(&s.certs.ca)
            .arg(&s.src)
            .arg(url(&server, "by-env")),
        LIMIT,
    );
    assert!(out.status.success(), "MOVER_TOKEN push failed: {}", stderr(&out));
}

#[test]
fn wrong_tokens_and_foreign_certificates_are_refused_writing_nothing() {
    let s = setup("auth-wrong");
    let server = s.server(&[]);
    let before = s.snapshot();
    let bad_token = s.root.parent().unwrap().join("bad.token");
    std::fs::write(&bad_token, "not-the-token\n").unwrap();
    let ca = s.certs.ca.to_str().unwrap().to_string();
    let wrong = ["--ca", &ca, "--token-file", bad_token.to_str().unwrap(), "--user", "alice"].map(String::from);
    assert_refused(&push(&wrong, &s.src, &url(&server, "x")), "authentication failed for user 'alice'");
    // The right token under another user's name is as wrong.
    let mut other_user = s.token_args();
    other_user[5] = "bob".into();
    assert_refused(&push(&other_user, &s.src, &url(&server, "x")), "authentication failed for user 'bob'");
    // A client certificate from a CA the daemon does not trust.
    let c = &s.certs;
    let foreign =
        ["--ca", &ca, "--cert", c.other_client_cert.to_str().unwrap(), "--key", c.other_client_key.to_str().unwrap()]
            .map(String::from);
    assert_refused(&push(&foreign, &s.src, &url(&server, "x")), "does not accept this client certificate");
    assert_eq!(s.snapshot(), before, "a refused client wrote something");
}

#[test]
fn a_daemon_requiring_certificates_refuses_a_client_without_one() {
    let s = setup("auth-nocert");
    let c = &s.certs;
    let args = [
        "--tls-cert",
        c.server_cert.to_str().unwrap(),
        "--tls-key",
        c.server_key.to_str().unwrap(),
        "--client-ca",
        c.ca.to_str().unwrap(),
    ];
    let server = Server::start(&s.root, &args);
    let before = s.snapshot();
    assert_refused(
        &push(&s.token_args(), &s.src, &url(&server, "x")),
        "requires a client certificate (--cert and --key)",
    );
    assert_eq!(s.snapshot(), before);
    let out = push(&s.cert_args(), &s.src, &url(&server, "ok"));
    assert!(out.status.success(), "certificate push failed: {}", stderr(&out));
}

#[test]
fn a_client_that_does_not_trust_the_daemon_stops_in_the_handshake() {
    let s = setup("auth-untrusted");
    let server = s.server(&[]);
    let mut args = s.token_args();
    args[1] = s.certs.other_ca.to_str().unwrap().into();
    assert_refused(&push(&args, &s.src, &url(&server, "x")), "certificate is not signed by --ca");
    assert!(listing(&s.root).is_empty());
}

#[test]
fn a_self_signed_daemon_certificate_is_pinned_by_the_clients_ca() {
    let s = setup("auth-pinned");
    let c = &s.certs;
    let args = [
        "--tls-cert",
        c.self_signed_cert.to_str().unwrap(),
        "--tls-key",
        c.self_signed_key.to_str().unwrap(),
        "--tokens",
        s.tokens.to_str().unwrap(),
    ];
    let server = Server::start(&s.root, &args);
    let mut pinned = s.token_args();
    pinned[1] = c.self_signed_cert.to_str().unwrap().into();
    let out = push(&pinned, &s.src, &url(&server, "pinned"));
    assert!(out.status.success(), "push to a pinned daemon failed: {}", stderr(&out));
    // Another certificate (the CA-issued one) does not match the pin, and the CA does not vouch for it.
    assert_refused(&push(&s.token_args(), &s.src, &url(&server, "x")), "certificate is not signed by --ca");
    assert!(!s.root.join("x").exists());
}

#[test]
fn tls_and_plain_tcp_mismatches_fail_fast_and_clearly() {
    let s = setup("auth-mismatch");
    let tls = s.server(&[]);
    let plain = Server::start(&s.root, &[]);
    let started = Instant::now();
    let insecure = vec!["--insecure-no-auth".to_string()];
    assert_refused(
        &push(&insecure, &s.src, &url(&tls, "x")),
        "is a TLS daemon, and this client was started with --insecure-no-auth",
    );
    assert_refused(&push(&s.token_args(), &s.src, &url(&plain, "x")), "does not speak TLS");
    assert!(started.elapsed() < Duration::from_secs(10), "mismatches took {:?}", started.elapsed());
    assert!(listing(&s.root).is_empty());
}

#[test]
fn serve_needs_authentication_or_the_loud_insecure_flag() {
    let s = setup("auth-flags");
    let root = s.root.to_str().unwrap();
    let out = run_with_limit(mover().args(["serve", "--listen", "127.0.0.1:0", "--root", root]), LIMIT);
    let err = stderr(&out);
    assert!(!out.status.success());
    for flag in ["--tls-cert", "--tls-key", "--client-ca", "--tokens", "--insecure-no-auth"] {
        assert!(err.contains(flag), "the refusal does not name {flag}: {err}");
    }
    // A certificate without any way to authenticate clients is refused too.
    let c = &s.certs;
    let out = run_with_limit(
        mover()
            .args(["serve", "--listen", "127.0.0.1:0", "--root", root, "--tls-cert"])
            .arg(&c.server_cert)
            .arg("--tls-key")
            .arg(&c.server_key),
        LIMIT,
    );
    assert!(!out.status.success() && stderr(&out).contains("--client-ca"), "{}", stderr(&out));
    // The push side says what to pass as well.
    let out = push(&[], &s.src, "mover://127.0.0.1:1/x");
    assert_refused(&out, "pass --ca FILE");
    // --insecure-no-auth (which `Server::start` passes when there is no --tls-cert) warns on every start.
    for _ in 0..2 {
        let server = Server::start(&s.root, &[]);
        let lines = server.lines.lock().unwrap().clone();
        assert!(lines.iter().any(|l| l.contains("WARNING: --insecure-no-auth")), "no warning: {lines:?}");
    }
}

#[test]
fn every_traversal_form_is_refused_writing_nothing() {
    let s = setup("auth-traversal");
    let server = s.server(&[]);
    let auth = s.token_auth();
    // An existing directory inside the root that is a symlink to one outside, at the destination and
    // below it; a FIFO (and, as root, a device file) at a destination name.
    std::os::unix::fs::symlink(&s.outside, s.root.join("escape")).unwrap();
    std::fs::create_dir(s.root.join("d")).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.root.join("d/sub")).unwrap();
    let fifo = std::ffi::CString::new(s.root.join("d/fifo").to_str().unwrap()).unwrap();
    // Safety: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let dev = std::ffi::CString::new(s.root.join("d/null").to_str().unwrap()).unwrap();
    // Safety: as above; needs root, and the case is skipped (loudly) without it.
    let have_dev = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) } == 0;
    if !have_dev {
        skip_or_fail("every_traversal_form_is_refused_writing_nothing (its device-file case)", "mknod needs root");
    }
    let before = s.snapshot();
    let long = "n".repeat(256);
    let dir = |p: &str| Entry { kind: EntryKind::Dir, size: 0, mode: 0o755, ..file(p, 0) };
    let mut cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        ("../x", vec![file("f", 1)], "'..' components are not allowed"),
        ("a/../../x", vec![file("f", 1)], "'..' components are not allowed"),
        ("/etc", vec![file("f", 1)], "absolute paths are not allowed"),
        ("d\0x", vec![file("f", 1)], "NUL bytes are not allowed"),
        ("", vec![file("../evil", 1)], "'..' components are not allowed"),
        ("", vec![file("a/../../evil", 1)], "'..' components are not allowed"),
        ("", vec![file("/etc/evil", 1)], "absolute paths are not allowed"),
        ("", vec![file("a\0b", 1)], "NUL bytes are not allowed"),
        ("", vec![file(&long, 1)], "256 bytes long"),
        ("escape", vec![file("f", 1)], "symlink escape"),
        ("d", vec![file("sub/f", 1)], "symlink escape"),
        ("d", vec![dir("sub"), file("sub/f", 1)], "symlink escape"),
        ("d", vec![file("fifo", 1)], "it is a FIFO"),
    ];
    if have_dev {
        cases.push(("d", vec![file("null", 1)], "it is a device file"));
    }
    let root_text = s.root.to_str().unwrap();
    for (dest, entries, want) in &cases {
        let why = refusal(&server, &auth, dest, entries);
        assert!(why.contains(want), "dest {dest:?}, {entries:?}: expected '{want}', got: {why}");
        assert!(!why.contains(root_text), "the refusal tells where the root is: {why}");
    }
    assert_eq!(s.snapshot(), before, "a refused session wrote something");
    // The real client shows the daemon's reason for a URL that climbs out.
    let out = push(&s.token_args(), &s.src, &format!("mover://{}/../up", server.addr));
    assert_refused(&out, "'..' components are not allowed");
    let out = push(&s.token_args(), &s.src, &format!("mover://{}//etc", server.addr));
    assert_refused(&out, "absolute paths are not allowed");
    assert_eq!(s.snapshot(), before, "a refused push wrote something");
}

#[test]
fn file_count_size_and_name_limits_are_enforced() {
    let s = setup("auth-limits");
    let server = s.server(&["--max-files", "3", "--max-bytes", "1M", "--max-name-len", "20"]);
    let auth = s.token_auth();
    let before = s.snapshot();
    // src/data holds a directory and 3 files (data, a.bin, sub, sub/b.txt: 4 entries).
    assert_refused(&push(&s.token_args(), &s.src, &url(&server, "x")), "limit of 3 per session (--max-files)");
    let big = s.src.join("a.bin");
    assert_refused(&push(&s.token_args(), &big, &url(&server, "x")), "(--max-bytes)");
    let why = refusal(&server, &auth, "", &[file(&"x".repeat(21), 1)]);
    assert!(why.contains("21 bytes long") && why.contains("--max-name-len"), "{why}");
    let why = refusal(&server, &auth, &"d".repeat(21), &[file("f", 1)]);
    assert!(why.contains("--max-name-len"), "{why}");
    assert_eq!(s.snapshot(), before, "a refused session wrote something");
    // Within the limits, the same daemon accepts.
    let out = push(&s.token_args(), &s.src.join("sub/b.txt"), &url(&server, "ok"));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sessions_beyond_a_clients_cap_wait_their_turn_and_stalled_handshakes_lock_nobody_out() {
    let s = setup("auth-sessions");
    let server = s.server(&["--max-sessions-per-client", "1"]);
    let auth = s.token_auth();
    // An authenticated session that sends nothing yet holds alice's only place (the daemon answers the
    // authentication only once the session has its place).
    let held = connect(&server, &auth);
    // A second session of alice's waits in the daemon's queue (it used to be refused), told its place.
    let second = mover()
        .args(["push", "--rate", "500M"])
        .args(s.token_args())
        .arg(&s.src)
        .arg(url(&server, "second"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = Instant::now() + T;
    while !server.lines.lock().unwrap().iter().any(|l| l.contains("(user:alice): queued, place 1 of 1")) {
        assert!(Instant::now() < waiting, "the second session was not queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!s.root.join("second").exists(), "a queued session wrote before its turn");
    // The cap is per client: a client with a certificate is another client, and runs at once.
    let out = push(&s.cert_args(), &s.src, &url(&server, "other-client"));
    assert!(out.status.success(), "{}", stderr(&out));
    // Connections that never finish their TLS handshake are capped per address, the oldest cut first: a
    // real client of the same address still gets in.
    let addr: SocketAddr = server.addr.parse().unwrap();
    let stalled: Vec<_> = (0..mover::session::MAX_HANDSHAKES_PER_ADDRESS + 8)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = push(&s.cert_args(), &s.src, &url(&server, "stalled"));
    assert!(out.status.success(), "a stalled flood locked a real client out: {}", stderr(&out));
    drop(stalled);
    // Closing the first session frees the place: the queued one runs.
    drop(held);
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "the queued session failed: {}", stderr(&out));
    assert!(stderr(&out).contains("mover: the server is busy: waiting in its queue, place 1 of 1"), "{}", stderr(&out));
    assert!(s.root.join("second/data/a.bin").is_file());
}

#[test]
fn a_daemon_requiring_encryption_refuses_cipher_none_both_ways() {
    let s = setup("auth-require-enc");
    let server = s.server(&["--require-encryption"]);
    std::fs::create_dir_all(s.root.join("pub")).unwrap();
    std::fs::write(s.root.join("pub/f.txt"), b"kept\n").unwrap();
    let before = s.snapshot();
    let mut none = s.token_args();
    none.extend(["--cipher".into(), "none".into()]);
    assert_refused(&push(&none, &s.src, &url(&server, "x")), "requires encrypted data (--require-encryption)");
    let here = s.outside.join("pulled");
    let out = run_with_limit(mover().arg("pull").args(&none).arg(url(&server, "pub")).arg(&here), LIMIT);
    assert_refused(&out, "requires encrypted data");
    assert!(!here.exists(), "a refused pull created its destination");
    assert_eq!(s.snapshot(), before, "a refused session wrote something");
    // The default cipher is welcome.
    let out = push(&s.token_args(), &s.src, &url(&server, "x"));
    assert!(out.status.success(), "{}", stderr(&out));
}
