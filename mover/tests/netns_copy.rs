//! `mover copy` between two daemons in their own network namespaces, directed from a third (root only):
//! the controller's interface carries under 1% of the data's bytes, the copy arrives identical, and a
//! controller killed mid-transfer leaves the transfer to finish, which `mover status` then reports.

mod common;

use common::netns::skip_unless_root;
use common::netns_star::NetnsStar;
use common::tokens::token_tls;
use common::{hash_file, json_raw, write_random_file, KillOnDrop, TempDir};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MOVER: &str = env!("CARGO_BIN_EXE_mover");
const PORT: &str = "7440";
const LIMIT: Duration = Duration::from_secs(120);
/// The hosts of the star.
const CONTROLLER: usize = 0;
const SENDER: usize = 1;
const RECEIVER: usize = 2;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Setup {
    star: NetnsStar,
    dir: TempDir,
    _daemons: Vec<KillOnDrop>,
    client: Vec<String>,
    root_a: PathBuf,
    root_b: PathBuf,
}

/// Three hosts; TLS daemons with alice's token on the sender and the receiver (the self-signed certificate,
/// pinned by the clients' `--ca`).
fn setup(tag: &str) -> Setup {
    let star = NetnsStar::new(3).expect("namespaces");
    let dir = TempDir::new(tag);
    let t = token_tls(dir.path());
    let (c, tokens) = (&t.certs, &t.tokens);
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let mut daemons = Vec::new();
    for (i, root) in [(SENDER, &root_a), (RECEIVER, &root_b)] {
        std::fs::create_dir_all(root).unwrap();
        let listen = format!("{}:{PORT}", star.ip(i));
        let args = [
            "serve",
            "--listen",
            &listen,
            "--root",
            s(root),
            "--net",
            "udp",
            "--tls-cert",
            s(&c.self_signed_cert),
            "--tls-key",
            s(&c.self_signed_key),
            "--tokens",
            s(tokens),
        ];
        daemons.push(star.start_daemon(i, &args, &dir.path().join(format!("serve{i}.log"))));
    }
    let client = t.client_args_with(&c.self_signed_cert);
    Setup { star, dir, _daemons: daemons, client, root_a, root_b }
}

/// Bytes received plus sent on the controller's interface.
fn controller_bytes(star: &NetnsStar) -> u64 {
    ["rx_bytes", "tx_bytes"]
        .iter()
        .map(|f| {
            let out = star.exec_in(&star.hosts[CONTROLLER].0, &["cat", &format!("/sys/class/net/mv0/statistics/{f}")]);
            String::from_utf8_lossy(&out.expect("read a counter").stdout).trim().parse::<u64>().expect("a number")
        })
        .sum()
}

fn copy_argv<'a>(t: &'a Setup, extra: &[&'a str], src: &'a str, dst: &'a str) -> Vec<&'a str> {
    let mut argv = vec![MOVER, "copy", "--net", "udp"];
    argv.extend(t.client.iter().map(String::as_str));
    argv.extend(extra);
    argv.extend([src, dst]);
    argv
}

#[test]
fn the_controller_carries_no_data() {
    if skip_unless_root("the_controller_carries_no_data") {
        return;
    }
    let t = setup("netns-copy");
    let data = t.root_a.join("run");
    std::fs::create_dir_all(&data).unwrap();
    let names = ["one.bin", "two.bin", "three.bin"];
    for (i, n) in names.iter().enumerate() {
        write_random_file(&data.join(n), 24 << 20, i as u64 + 1);
    }
    let total = 3 * (24u64 << 20);
    let src = format!("mover://{}:{PORT}/run", t.star.ip(SENDER));
    let dst = format!("mover://{}:{PORT}/in", t.star.ip(RECEIVER));
    let before = controller_bytes(&t.star);
    let argv = copy_argv(&t, &["--json"], &src, &dst);
    let out = t.star.command(CONTROLLER, &argv).output().unwrap();
    let after = controller_bytes(&t.star);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "copy failed: {stderr}");
    assert_eq!(json_raw(&stdout, "verified"), Some("true"), "{stdout}");
    assert_eq!(json_raw(&stdout, "bytes"), Some(total.to_string().as_str()), "{stdout}");
    for n in names {
        assert_eq!(hash_file(&data.join(n)), hash_file(&t.root_b.join("in/run").join(n)), "{n}");
    }
    let carried = after - before;
    eprintln!("the controller's interface carried {carried} bytes for {total} bytes copied");
    assert!(carried * 100 < total, "the controller carried {carried} bytes of {total}: over 1%");
}

#[test]
fn a_controller_killed_mid_transfer_leaves_it_to_finish() {
    if skip_unless_root("a_controller_killed_mid_transfer_leaves_it_to_finish") {
        return;
    }
    let t = setup("netns-copy-kill");
    let src_file = t.root_a.join("big.bin");
    let len = 96u64 << 20;
    write_random_file(&src_file, len, 9);
    let src = format!("mover://{}:{PORT}/big.bin", t.star.ip(SENDER));
    let dst = format!("mover://{}:{PORT}/in", t.star.ip(RECEIVER));
    // 200 Mbit/s: about 4 s of data, so the controller dies early in it.
    let argv = copy_argv(&t, &["--policy", "fixed", "--rate", "200M", "--progress", "none"], &src, &dst);
    let child = t.star.command(CONTROLLER, &argv).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut controller = KillOnDrop(child);
    let mut lines = BufReader::new(controller.0.stderr.take().unwrap()).lines();
    let transfer = loop {
        let line = lines.next().expect("the controller said nothing").unwrap();
        if let Some(rest) = line.strip_prefix("mover copy: transfer ") {
            break rest.split(':').next().unwrap().to_string();
        }
    };
    std::thread::sleep(Duration::from_millis(800));
    controller.0.kill().unwrap();
    let _ = controller.0.wait();
    assert!(!t.root_b.join("in/big.bin").exists(), "the transfer had finished before the controller was killed");
    // `mover status --wait` from the controller's host follows it to the end.
    let server = format!("mover://{}:{PORT}", t.star.ip(RECEIVER));
    let mut argv = vec![MOVER, "status", &transfer, "--server", &server, "--wait", "--json"];
    argv.extend(t.client.iter().map(String::as_str));
    let started = Instant::now();
    let out = t.star.command(CONTROLLER, &argv).output().unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status: {}{json}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_raw(&json, "state"), Some("\"done\""), "{json}");
    assert!(started.elapsed() < LIMIT);
    assert_eq!(hash_file(&src_file), hash_file(&t.root_b.join("in/big.bin")));
    let _ = &t.dir;
}
