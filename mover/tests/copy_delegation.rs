//! `mover copy` between two TLS daemons over loopback, and the delegation's rules (PROTOCOL.md §9): the
//! copy arrives identical and `mover status` knows it; a delegation works once, for its destination only,
//! with its own secret only; a destination outside the receiver's root is refused before anything moves.
//! The refusals are driven through the library as a hostile or careless sending end would (the `mover`
//! binary never shows a delegation). Network-namespace tests (the controller carries no data, a controller
//! killed mid-transfer) are in netns_copy.rs.

mod common;

use common::tokens::{token_tls, TokenTls};
use common::{hash_file, json_raw, mover, run_with_limit, write_random_file, Server, TempDir};
use mover::connect::{start_client, ClientAuth};
use mover::session::{push, PushOptions};
use mover::wire::control::ControlMsg;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asks the daemon at `addr` for a delegation into `dest` as alice; the answer (a delegation or an error).
fn delegate(t: &TokenTls, addr: &str, dest: &str) -> ControlMsg {
    let token = std::fs::read_to_string(&t.token).unwrap();
    let auth = ClientAuth::tls(&t.certs.ca, None, "alice", Some(token.trim())).unwrap();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let mut ch = start_client(stream, "127.0.0.1", &auth, LIMIT).unwrap();
    ch.send(&ControlMsg::Delegate { dest: dest.into() }).unwrap();
    loop {
        match ch.expect_msg(LIMIT, "waiting for the delegation").unwrap() {
            ControlMsg::Queued { .. } => continue,
            m => return m,
        }
    }
}

/// A push of `src` to `url` with a delegation's credentials, as the sending end would make it.
fn delegated_push(t: &TokenTls, src: &Path, url: &str, user: &str, token: &str) -> mover::session::Report {
    let mut opts = PushOptions::new(vec![src.to_path_buf()], url.into(), 1_000_000_000);
    opts.auth = ClientAuth::tls(&t.certs.ca, None, user, Some(token)).unwrap();
    opts.net = "udp".parse().unwrap();
    push(&opts)
}

#[test]
fn a_copy_between_two_daemons_arrives_and_status_knows_it() {
    let dir = TempDir::new("copy-daemons");
    let t = token_tls(dir.path());
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let a = t.daemon(&ra);
    let b = t.daemon(&rb);
    std::fs::create_dir_all(ra.join("runs/7/sub")).unwrap();
    write_random_file(&ra.join("runs/7/data.bin"), 2 << 20, 1);
    std::fs::write(ra.join("runs/7/sub/notes.txt"), b"ACGT\n".repeat(600_000)).unwrap();
    let mut cmd = mover();
    cmd.args(["copy", "--json", "--compress", "zstd:1", "--net", "udp"]).args(t.client_args());
    cmd.args([format!("mover://{}/runs/7", a.addr), format!("mover://{}/in", b.addr)]);
    let out = run_with_limit(&mut cmd, LIMIT);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "copy failed: {stderr}");
    assert_eq!(json_raw(&stdout, "verified"), Some("true"), "{stdout}");
    let transfer = json_raw(&stdout, "transfer").expect("transfer").trim_matches('"').to_string();
    assert_eq!(transfer.len(), 32, "{stdout}");
    assert!(stderr.contains(&format!("mover status {transfer} --server mover://{}", b.addr)), "{stderr}");
    // 3 MB of text that shrinks to almost nothing and 2 MiB of random bytes that go raw.
    assert!(json_raw(&stdout, "compression_ratio").unwrap().parse::<f64>().unwrap() > 2.0, "{stdout}");
    for f in ["data.bin", "sub/notes.txt"] {
        assert_eq!(hash_file(&ra.join("runs/7").join(f)), hash_file(&rb.join("in/7").join(f)), "{f}");
    }
    let mut st = mover();
    st.args(["status", &transfer, "--server", &format!("mover://{}", b.addr), "--json"]).args(t.client_args());
    let out = run_with_limit(&mut st, LIMIT);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_raw(&json, "state"), Some("\"done\""), "{json}");
    assert_eq!(json_raw(&json, "files_done"), Some("2"), "{json}");
}

#[test]
fn a_delegation_is_one_push_into_its_destination_with_its_own_secret() {
    let dir = TempDir::new("copy-refusals");
    let t = token_tls(dir.path());
    let rb = dir.path().join("b");
    let b = t.daemon(&rb);
    let src = dir.path().join("f.bin");
    write_random_file(&src, 200_000, 3);
    let url = format!("mover://{}/in", b.addr);

    // Outside the root: refused at once, nothing minted.
    match delegate(&t, &b.addr, "../escape") {
        ControlMsg::Error { message } => assert!(message.contains("..") || message.contains("root"), "{message}"),
        other => panic!("a delegation outside the root was minted: {other:?}"),
    }

    // Used once, then never again.
    let ControlMsg::Delegation { transfer, user, token } = delegate(&t, &b.addr, "in") else { panic!("no delegation") };
    assert_eq!(user, format!("delegate-{transfer}"));
    let first = delegated_push(&t, &src, &url, &user, &token.0);
    assert!(first.verified, "the delegated push failed: {:?}", first.error);
    assert_eq!(hash_file(&src), hash_file(&rb.join("in/f.bin")));
    let again = delegated_push(&t, &src, &url, &user, &token.0);
    let e = again.error.expect("a reused delegation was accepted");
    assert!(e.contains("unknown, used or expired"), "{e}");

    // A tampered secret is refused, and burns the delegation: the right one fails afterwards.
    let ControlMsg::Delegation { user, token, .. } = delegate(&t, &b.addr, "in") else { panic!("no delegation") };
    let mut bad = token.0.clone().into_bytes();
    bad[0] = if bad[0] == b'a' { b'b' } else { b'a' };
    let e = delegated_push(&t, &src, &url, &user, std::str::from_utf8(&bad).unwrap()).error.expect("tampered");
    assert!(e.contains("unknown, used or expired"), "{e}");
    assert!(delegated_push(&t, &src, &url, &user, &token.0).error.is_some(), "used up by the failed attempt");

    // Another destination than the delegated one is refused.
    let ControlMsg::Delegation { user, token, .. } = delegate(&t, &b.addr, "in") else { panic!("no delegation") };
    let elsewhere = format!("mover://{}/other", b.addr);
    let e = delegated_push(&t, &src, &elsewhere, &user, &token.0).error.expect("another destination");
    assert!(e.contains("for a push into 'in' only"), "{e}");
    assert!(!rb.join("other").exists());
}

#[test]
fn a_daemon_with_no_third_party_refuses_to_send_a_copy() {
    let dir = TempDir::new("copy-no-third-party");
    let t = token_tls(dir.path());
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&ra).unwrap();
    std::fs::write(ra.join("f"), b"data").unwrap();
    let mut flags = t.server_args();
    flags.push("--no-third-party".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Server::start(&ra, &flags);
    let b = t.daemon(&rb);
    let mut cmd = mover();
    cmd.args(["copy"]).args(t.client_args());
    cmd.args([format!("mover://{}/f", a.addr), format!("mover://{}/in", b.addr)]);
    let out = run_with_limit(&mut cmd, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("does not send third-party copies"), "{err}");
    assert!(!rb.join("in/f").exists());
}

#[test]
fn copy_says_what_it_cannot_do() {
    let dir = TempDir::new("copy-usage");
    let local = dir.path().join("x");
    std::fs::write(&local, b"x").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&[s(&local), "/tmp/elsewhere"], "both ends are local"),
        (&["mover://127.0.0.1:9/a", "mover://127.0.0.1:9/b", "mover://127.0.0.1:9/c"], "takes one source"),
        (&[s(&local), "mover://127.0.0.1:9/a", "/tmp/y"], "mix local and remote"),
    ];
    for (args, want) in cases {
        let out = run_with_limit(mover().args(["copy", "--insecure-no-auth"]).args(args), LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("mover: error: ") && err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn sharded_copies_between_two_daemons_move_each_file_once() {
    let dir = TempDir::new("copy-shards");
    let t = token_tls(dir.path());
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let a = t.daemon(&ra);
    let b = t.daemon(&rb);
    std::fs::create_dir_all(ra.join("runs/8")).unwrap();
    let mut total = 0;
    for i in 0..16u64 {
        write_random_file(&ra.join(format!("runs/8/f{i}")), 20_000 * i + 1, i);
        total += 20_000 * i + 1;
    }
    let mut bytes = 0;
    for i in 0..2 {
        let mut cmd = mover();
        cmd.args(["copy", "--json", "--net", "udp", "--shard", &format!("{i}/2")]).args(t.client_args());
        cmd.args([format!("mover://{}/runs/8", a.addr), format!("mover://{}/in", b.addr)]);
        let out = run_with_limit(&mut cmd, LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "copy failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json_raw(&stdout, "shard"), Some(format!("\"{i}/2\"").as_str()), "{stdout}");
        let b = common::json_u64(&stdout, "bytes").unwrap();
        assert!(b > 0 && b < total, "shard {i}/2 moved {b} of {total}: {stdout}");
        bytes += b;
    }
    assert_eq!(bytes, total, "each byte once");
    for i in 0..16 {
        let f = format!("f{i}");
        assert_eq!(hash_file(&ra.join("runs/8").join(&f)), hash_file(&rb.join("in/8").join(&f)), "{f}");
    }
}
