//! Per-block compression with real processes between two network namespaces (root only), through 2% random
//! UDP loss on the receiver's input (UDP sockets on both ends, so nftables sees every datagram): text, random
//! and mixed files arrive identical under `--compress none`, `zstd:1`, `zstd:3` and `auto`, on a push and on a
//! pull (where the server compresses as the client asked), and `--json` says what the wire carried.

mod common;

use common::netns::{skip_unless_root, NetnsPair, VETH};
use common::{hash_file, json_bool, json_f64, json_raw, json_u64, write_random_file, KillOnDrop, TempDir};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const MOVER: &str = env!("CARGO_BIN_EXE_mover");
const PORT: u16 = 7430;
const LIMIT: Duration = Duration::from_secs(120);

/// FASTQ-like text: headers, reads of random bases, `+`, binned qualities (zstd takes it ~3x per block).
fn write_fastq(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len + 400);
    let mut read = 0;
    while out.len() < len {
        read += 1;
        let header = format!("@A00123:8:H7XYZDSXX:2:1101:{}:{} 1:N:0:ATCACGTT\n", next() % 30000, 1000 + read);
        out.extend_from_slice(header.as_bytes());
        out.extend((0..150).map(|_| b"ACGT"[(next() % 4) as usize]));
        out.extend_from_slice(b"\n+\n");
        out.extend((0..150).map(|_| b"FFFFFFF:,"[(next() % 9) as usize]));
        out.push(b'\n');
    }
    out.truncate(len);
    std::fs::write(path, out).unwrap();
}

/// Runs a mover command in namespace `ns` to success and returns its stdout.
fn run(net: &NetnsPair, ns: &str, argv: &[&str], log: &Path) -> String {
    let child = net.command(ns, argv).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn mover");
    let mut child = KillOnDrop(child);
    let status = child.wait_timeout(LIMIT);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    use std::io::Read;
    let _ = child.0.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.0.stderr.take().unwrap().read_to_string(&mut stderr);
    match status {
        Ok(s) if s.success() => stdout,
        other => panic!(
            "{argv:?} failed: {other:?}\nstdout: {stdout}\nstderr: {stderr}\nserver: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

/// Drops 2% of the UDP datagrams arriving at the receiver namespace (`b`).
fn lose_two_percent(net: &NetnsPair, ns: &str) {
    net.exec(ns, &["nft", "add", "table", "inet", "moverloss"]).unwrap();
    net.exec(ns, &["nft", "add", "chain", "inet", "moverloss", "input", "{ type filter hook input priority 0; }"])
        .unwrap();
    let rule = ["meta", "l4proto", "udp", "iifname", VETH, "numgen", "random", "mod", "100", "lt", "2", "drop"];
    let mut argv = vec!["nft", "add", "rule", "inet", "moverloss", "input"];
    argv.extend(rule);
    net.exec(ns, &argv).unwrap();
}

#[test]
fn every_setting_round_trips_through_loss_on_push_and_pull() {
    if skip_unless_root("every_setting_round_trips_through_loss_on_push_and_pull") {
        return;
    }
    let net = NetnsPair::new(None).expect("namespaces");
    net.offloads_off().expect("ethtool -K (offloads off)");
    lose_two_percent(&net, &net.b);
    lose_two_percent(&net, &net.a);
    let dir = TempDir::new("netns-compress");
    let src = dir.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    write_fastq(&src.join("reads.fastq"), 12 << 20, 1);
    write_random_file(&src.join("random.bin"), 4 << 20, 2);
    // Mixed: text, random, text in one file.
    write_fastq(&src.join("mixed.part"), 3 << 20, 3);
    write_random_file(&src.join("mixed.rand"), 2 << 20, 4);
    let mut mixed = std::fs::read(src.join("mixed.part")).unwrap();
    mixed.extend(std::fs::read(src.join("mixed.rand")).unwrap());
    mixed.extend(std::fs::read(src.join("reads.fastq")).unwrap().iter().take(1 << 20));
    std::fs::remove_file(src.join("mixed.part")).unwrap();
    std::fs::remove_file(src.join("mixed.rand")).unwrap();
    std::fs::File::create(src.join("mixed.dat")).unwrap().write_all(&mixed).unwrap();
    let names = ["reads.fastq", "random.bin", "mixed.dat"];
    let total: u64 = names.iter().map(|n| std::fs::metadata(src.join(n)).unwrap().len()).sum();

    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.path().join("serve.log");
    let _server = net.start_serve(PORT, &root, &log, &[]);
    let src_arg = src.to_str().unwrap();
    for mode in ["none", "zstd:1", "zstd:3", "auto"] {
        let url = format!("mover://{}:{PORT}/push-{mode}", net.ip_b);
        let argv = [MOVER, "push", "--insecure-no-auth", "--net", "udp", "--json", "--rate", "300M"];
        let json = run(&net, &net.a, &[&argv[..], &["--compress", mode, src_arg, &url]].concat(), &log);
        eprintln!("push --compress {mode}: {json}");
        assert_eq!(json_bool(&json, "verified"), Some(true), "{json}");
        assert_eq!(json_raw(&json, "compress"), Some(format!("\"{mode}\"").as_str()), "{json}");
        assert!(json_u64(&json, "packets_retransmitted").unwrap() > 0, "the loss happened: {json}");
        let ratio = json_f64(&json, "compression_ratio").expect("compression_ratio");
        let wire = json_u64(&json, "wire_bytes").expect("wire_bytes");
        let sent = json_u64(&json, "sent_bytes").expect("sent_bytes");
        assert!((ratio - sent as f64 / wire as f64).abs() < 0.01, "ratio is sent over wire bytes: {json}");
        match mode {
            "none" => assert_eq!((ratio, wire), (1.0, sent), "{json}"),
            // 17 of 21 MiB are text at ~3x; the 6 MiB of random bytes go raw.
            "zstd:1" | "zstd:3" => assert!(ratio > 1.7 && wire < total, "{json}"),
            // auto may or may not compress here (a 300 Mbit/s ceiling on a veth): only correctness counts.
            _ => {}
        }
        for n in names {
            assert_eq!(hash_file(&src.join(n)), hash_file(&root.join(format!("push-{mode}/data/{n}"))), "{mode}: {n}");
        }
    }

    // A pull asks the server to compress: the receiving client counts what the wire delivered.
    let back = dir.path().join("back");
    let url = format!("mover://{}:{PORT}/push-none/data", net.ip_b);
    let argv =
        [MOVER, "pull", "--insecure-no-auth", "--net", "udp", "--json", "--rate", "300M", "--compress", "zstd:1"];
    let json = run(&net, &net.a, &[&argv[..], &[&url, back.to_str().unwrap()]].concat(), &log);
    eprintln!("pull --compress zstd:1: {json}");
    assert_eq!(json_bool(&json, "verified"), Some(true), "{json}");
    let ratio = json_f64(&json, "compression_ratio").expect("compression_ratio");
    assert!(ratio > 1.7, "the server compressed what the pull asked for: {json}");
    for n in names {
        assert_eq!(hash_file(&src.join(n)), hash_file(&back.join("data").join(n)), "pull: {n}");
    }
}

#[test]
fn a_bad_compress_value_is_one_clear_error() {
    let out = std::process::Command::new(MOVER)
        .args(["push", "--insecure-no-auth", "--compress", "gzip", "/nonexistent", "mover://127.0.0.1:9/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown compression 'gzip'") && err.contains("zstd:LEVEL"), "{err}");
}
