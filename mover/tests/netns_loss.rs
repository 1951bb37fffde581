//! Real packets between two network namespaces (root only; CI runs as root) on the UDP-socket path: a push
//! over a clean veth, and a push through 2% random UDP loss on the receiver's input, which must be repaired
//! by retransmission.

mod common;

use common::netns::{skip_unless_root, NetnsPair, VETH};
use common::{hash_file, json_bool, json_u64, write_random_file, KillOnDrop, TempDir};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const MOVER: &str = env!("CARGO_BIN_EXE_mover");
const PORT: u16 = 7400;
/// Bound on one push; a healthy one takes a few seconds.
const PUSH_LIMIT: Duration = Duration::from_secs(120);

/// Starts `mover serve --once` in the receiver namespace and waits until it listens.
fn start_server(net: &NetnsPair, root: &Path, log: &Path) -> KillOnDrop {
    net.start_serve(PORT, root, log, &["--once"])
}

/// Runs `mover push --json` from the sender namespace; returns its stdout after asserting it exited 0.
fn push(net: &NetnsPair, sources: &[&Path], rate: &str, server_log: &Path) -> String {
    let url = format!("mover://{}:{PORT}/in", net.ip_b);
    // The UDP-socket path (netns_xdp.rs covers AF_XDP): nftables sees its packets.
    let mut argv = vec![MOVER, "push", "--insecure-no-auth", "--net", "udp", "--json", "--rate", rate];
    argv.extend(sources.iter().map(|p| p.to_str().unwrap()));
    argv.push(&url);
    let child = net.command(&net.a, &argv).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn push");
    let mut push = KillOnDrop(child);
    let status = push.wait_timeout(PUSH_LIMIT);
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    let _ = push.0.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = push.0.stderr.take().unwrap().read_to_string(&mut stderr);
    let server = std::fs::read_to_string(server_log).unwrap_or_default();
    match status {
        Ok(s) if s.success() => stdout,
        other => panic!("push failed: {other:?}\nstdout: {stdout}\nstderr: {stderr}\nserver: {server}"),
    }
}

#[test]
fn push_over_clean_veth() {
    if skip_unless_root("push_over_clean_veth") {
        return;
    }
    let net = NetnsPair::new(None).expect("namespaces");
    let dir = TempDir::new("netns-clean");
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let files = [("a", 0u64), ("b", 1), ("sub/c", 100_000), ("sub/d", 3 << 20)];
    for (i, (name, len)) in files.iter().enumerate() {
        write_random_file(&src.join(name), *len, i as u64);
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.path().join("serve.log");
    let mut server = start_server(&net, &root, &log);

    let json = push(&net, &[&src], "500M", &log);
    assert_eq!(json_bool(&json, "verified"), Some(true), "{json}");
    assert_eq!(json_u64(&json, "files"), Some(files.len() as u64), "{json}");
    let status = server.wait_timeout(Duration::from_secs(10)).expect("serve --once exits");
    assert!(status.success(), "serve: {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    for (name, _) in files {
        assert_eq!(hash_file(&src.join(name)), hash_file(&root.join("in/tree").join(name)), "{name}");
    }
}

#[test]
fn push_repairs_two_percent_udp_loss() {
    if skip_unless_root("push_repairs_two_percent_udp_loss") {
        return;
    }
    let net = NetnsPair::new(None).expect("namespaces");
    net.offloads_off().expect("ethtool -K (offloads off)");
    // Drop 2% of UDP arriving at the receiver; TCP (the control channel) is left alone.
    net.exec(&net.b, &["nft", "add", "table", "inet", "moverloss"]).unwrap();
    net.exec(&net.b, &["nft", "add", "chain", "inet", "moverloss", "input", "{ type filter hook input priority 0; }"])
        .unwrap();
    let rule =
        ["meta", "l4proto", "udp", "iifname", VETH, "numgen", "random", "mod", "100", "lt", "2", "counter", "drop"];
    let mut argv = vec!["nft", "add", "rule", "inet", "moverloss", "input"];
    argv.extend(rule);
    net.exec(&net.b, &argv).unwrap();

    let dir = TempDir::new("netns-loss");
    let src = dir.path().join("random.bin");
    let len = 256u64 << 20;
    write_random_file(&src, len, 0x10_55);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.path().join("serve.log");
    let mut server = start_server(&net, &root, &log);

    let json = push(&net, &[&src], "1G", &log);
    eprintln!("push through 2% loss: {json}");
    assert_eq!(json_bool(&json, "verified"), Some(true), "{json}");
    assert_eq!(json_u64(&json, "bytes"), Some(len), "{json}");
    let retransmitted = json_u64(&json, "packets_retransmitted").expect("packets_retransmitted");
    assert!(retransmitted > 0, "no retransmissions: did the loss happen? {json}");
    let status = server.wait_timeout(Duration::from_secs(10)).expect("serve --once exits");
    assert!(status.success(), "serve: {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());

    let listing = net.exec(&net.b, &["nft", "list", "chain", "inet", "moverloss", "input"]).unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let dropped = nft_counter_packets(&listing).unwrap_or_else(|| panic!("no counter in: {listing}"));
    eprintln!("nft dropped {dropped} datagrams, sender retransmitted {retransmitted}");
    assert!(dropped > 0, "the nft rule dropped nothing: {listing}");
    assert!(retransmitted >= dropped / 2, "fewer retransmissions ({retransmitted}) than plausible for {dropped} drops");
    assert_eq!(hash_file(&src), hash_file(&root.join("in/random.bin")), "received file differs");
}

/// The packet count of the first `counter packets N bytes M` in an `nft list` output.
fn nft_counter_packets(listing: &str) -> Option<u64> {
    let after = &listing[listing.find("counter packets ")? + "counter packets ".len()..];
    after.split_whitespace().next()?.parse().ok()
}
