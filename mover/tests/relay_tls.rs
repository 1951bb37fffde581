//! Relays with the daemon's authentication (issue 19): a striped push whose receiver and relays all run TLS
//! with tokens arrives identical, the receiver fetching from the relays with the transfer's fetch
//! capability (it holds no relay account); a sender's own token fetches nothing from a relay, and a wrong
//! capability is refused. Real processes over loopback.

mod common;

use common::tokens::{token_tls, TokenTls};
use common::{hash_file, json_u64, mover, run_with_limit, write_random_file, TempDir};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A TLS relay with alice's token, on a free loopback port: its address.
fn relay(t: &TokenTls, spool: &Path) -> (common::KillOnDrop, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = mover();
    cmd.args(["relay", "--listen", &listen, "--spool", s(spool), "--spool-max", "256M", "--net", "udp"]);
    cmd.args(["--tls-cert", s(&t.certs.server_cert), "--tls-key", s(&t.certs.server_key), "--tokens", s(&t.tokens)]);
    let log = spool.with_extension("log");
    let child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let guard = common::KillOnDrop(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening on") {
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not start: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, listen)
}

#[test]
fn a_striped_push_over_tls_is_fetched_with_the_transfer_capability() {
    let dir = TempDir::new("relay_tls");
    let t = token_tls(dir.path());
    let root = dir.path().join("recv");
    let server = t.daemon(&root);
    let (_r1, a1) = relay(&t, &dir.path().join("spool1"));
    let (_r2, a2) = relay(&t, &dir.path().join("spool2"));
    let src = dir.path().join("data.bin");
    write_random_file(&src, 3 << 20, 7);
    let via = format!("mover://{a1},mover://{a2}");
    let url = format!("mover://{}/in", server.addr);
    let mut cmd = mover();
    cmd.args(["push", "--json", "--net", "udp", "--via", &via, "--block-size", "256K"]).args(t.client_args());
    cmd.args([s(&src), &url]);
    let out = run_with_limit(&mut cmd, LIMIT);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push: {json}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hash_file(&src), hash_file(&root.join("in/data.bin")));
    assert_eq!(json_u64(&json, "refetched_blocks"), Some(0), "{json}");
    // Both relays carried blocks, and kept nothing (the capability's digest included).
    assert_eq!(json.matches("\"batches\":0").count(), 0, "a relay took no batch: {json}");
    for spool in ["spool1", "spool2"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(spool)).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "{spool} kept {left:?}");
    }

    // A sender's token does not fetch from a relay, and a capability must be the transfer's.
    let hex = "0123456789abcdef0123456789abcdef";
    let got = dir.path().join("got");
    std::fs::create_dir_all(&got).unwrap();
    let mut pull = mover();
    pull.args(["pull", "--net", "udp"]).args(t.client_args()).args([&format!("mover://{a1}/{hex}/b0"), s(&got)]);
    let out = run_with_limit(&mut pull, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("only a transfer's receiver fetches"), "{err}");
    let bad_token = dir.path().join("bad.token");
    std::fs::write(&bad_token, "not-the-capability").unwrap();
    let mut pull = mover();
    pull.args(["pull", "--net", "udp", "--ca", s(&t.certs.ca), "--token-file", s(&bad_token)]);
    pull.args(["--user", &format!("fetch-{hex}"), &format!("mover://{a1}/{hex}/b0"), s(&got)]);
    let out = run_with_limit(&mut pull, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no fetch capability"), "{err}");

    // The receiving daemon reports the transfer as done; an id it never saw is an error (exit 1).
    let id = common::json_raw(&json, "transfer").unwrap().trim_matches('"').to_string();
    let server_url = format!("mover://{}", server.addr);
    let mut st = mover();
    st.args(["status", &id, "--server", &server_url, "--json"]).args(t.client_args());
    let out = run_with_limit(&mut st, LIMIT);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"state\":\"done\""), "{out:?}");
    let mut st = mover();
    st.args(["status", hex, "--server", &server_url]).args(t.client_args());
    let out = run_with_limit(&mut st, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("knows no transfer") && out.stdout.is_empty(), "{err}");
}

/// `--compress` on a striped push: blocks are compressed before they are sealed, so the relays store and
/// serve fewer bytes (which they cannot open), and the files arrive identical.
#[test]
fn a_compressed_striped_push_stores_smaller_sealed_blocks() {
    let dir = TempDir::new("relay_compress");
    let t = token_tls(dir.path());
    let root = dir.path().join("recv");
    let server = t.daemon(&root);
    let (_r1, a1) = relay(&t, &dir.path().join("spool1"));
    let src = dir.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("reads.txt"), b"@r 1:N:0\nACGTTGCAACGT\n+\nFFFF:FFF,FFF\n".repeat(60_000)).unwrap();
    write_random_file(&src.join("random.bin"), 1 << 20, 8);
    let text_len = std::fs::metadata(src.join("reads.txt")).unwrap().len();
    let mut cmd = mover();
    cmd.args(["push", "--json", "--net", "udp", "--via", &format!("mover://{a1}"), "--block-size", "256K"]);
    cmd.args(["--compress", "zstd:1"]).args(t.client_args()).args([s(&src), &format!("mover://{}/in", server.addr)]);
    let out = run_with_limit(&mut cmd, LIMIT);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push: {json}\n{}", String::from_utf8_lossy(&out.stderr));
    for f in ["reads.txt", "random.bin"] {
        assert_eq!(hash_file(&src.join(f)), hash_file(&root.join("in/data").join(f)), "{f}");
    }
    let ratio: f64 = common::json_raw(&json, "compression_ratio").unwrap().parse().unwrap();
    let wire = json_u64(&json, "wire_bytes").unwrap();
    assert!(ratio > 2.0, "{json}");
    // The relay's leg stored the sealed bodies: the random MiB raw, the text much smaller than it was.
    let leg_bytes = json_u64(&json[json.find("\"legs\"").unwrap()..], "bytes").unwrap();
    assert!(leg_bytes < (1 << 20) + text_len / 2, "the relay stored {leg_bytes} bytes: {json}");
    assert!(wire < (1 << 20) + text_len / 2, "{json}");
}
