//! Partitions between two network namespaces (root only; CI runs as root): an nftables drop of everything
//! on the receiver's veth, data and control alike, mid-push. For 5 s and for 30 s the push pauses and
//! completes without a restart, the tree is identical, and what was sent again is at most a small
//! allowance (below): the blocks in flight when the path went silent and the probes, never what had arrived.
//! Longer than `--timeout 5`: exit code 5 within the timeout and a few seconds, with the line saying so, and
//! the same command afterwards completes; a pull (the daemon sends) exits 5 the same way.

mod common;

use common::netns::{skip_unless_root, NetnsPair, VETH};
use common::{hash_file, json_u64, write_random_file, KillOnDrop, TempDir};
use std::io::Read;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

const MOVER: &str = env!("CARGO_BIN_EXE_mover");
const PORT: u16 = 7400;
/// 40 Mbit/s fixed: 5 MB/s, so the data below lasts about 13 s on a clean path.
const RATE: &str = "40M";
const RATE_BYTES_PER_S: u64 = 5_000_000;
const DATA_BYTES: u64 = 64 << 20;
/// When the partition starts, after the push started.
const CUT_AT: Duration = Duration::from_secs(4);
/// What may be sent again: what went out into the partition before the sender paused (it pauses after a
/// quarter second of silence; with what was in flight and queued, at most one second at the rate), each
/// block at most twice (a re-NAK can cross a retransmission in flight, as after any burst of loss), plus
/// 1 MiB of probes (one datagram per 100 ms). Resending what had arrived would be tens of megabytes.
const RESEND_ALLOWANCE_BYTES: u64 = 2 * RATE_BYTES_PER_S + (1 << 20);

struct Setup {
    net: NetnsPair,
    dir: TempDir,
    src: PathBuf,
    root: PathBuf,
    log: PathBuf,
}

fn setup(tag: &str) -> Setup {
    let net = NetnsPair::new(None).expect("namespaces");
    let dir = TempDir::new(tag);
    let src = dir.path().join("data.bin");
    write_random_file(&src, DATA_BYTES, 0x9a47);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.path().join("serve.log");
    Setup { net, dir, src, root, log }
}

impl Setup {
    /// `mover serve` (not `--once`: a rerun needs it too) in the receiver namespace, listening.
    fn server(&self) -> KillOnDrop {
        self.net.start_serve(PORT, &self.root, &self.log, &[])
    }

    /// `mover push --json --net udp --policy fixed --rate RATE [extra]` from the sender namespace.
    fn push(&self, extra: &[&str]) -> KillOnDrop {
        let url = format!("mover://{}:{PORT}/in", self.net.ip_b);
        let mut argv = vec![MOVER, "push", "--insecure-no-auth", "--net", "udp", "--json", "--policy", "fixed"];
        argv.extend(["--rate", RATE]);
        argv.extend(extra);
        argv.extend([self.src.to_str().unwrap(), &url]);
        let child = self.net.command(&self.net.a, &argv).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        KillOnDrop(child)
    }

    /// `mover pull --net udp --policy fixed --rate RATE [extra]` of the pushed file into DEST, from the sender
    /// namespace (the daemon sends).
    fn pull(&self, dest: &std::path::Path, extra: &[&str]) -> KillOnDrop {
        let url = format!("mover://{}:{PORT}/in/data.bin", self.net.ip_b);
        let mut argv = vec![MOVER, "pull", "--insecure-no-auth", "--net", "udp", "--policy", "fixed", "--rate", RATE];
        argv.extend(extra);
        argv.extend([url.as_str(), dest.to_str().unwrap()]);
        let child = self.net.command(&self.net.a, &argv).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        KillOnDrop(child)
    }

    /// Drops every packet in and out of the receiver's veth (UDP data and feedback, the TCP control
    /// connection) until [`Setup::heal`].
    fn cut(&self) {
        let b = &self.net.b;
        self.net.exec(b, &["nft", "add", "table", "inet", "moverpart"]).unwrap();
        for (chain, hook, dir) in [("input", "input", "iifname"), ("output", "output", "oifname")] {
            let spec = format!("{{ type filter hook {hook} priority 0; }}");
            self.net.exec(b, &["nft", "add", "chain", "inet", "moverpart", chain, &spec]).unwrap();
            self.net
                .exec(b, &["nft", "add", "rule", "inet", "moverpart", chain, dir, VETH, "counter", "drop"])
                .unwrap();
        }
    }

    fn heal(&self) {
        self.net.exec(&self.net.b, &["nft", "delete", "table", "inet", "moverpart"]).unwrap();
    }

    fn identical(&self) -> bool {
        let got = self.root.join("in/data.bin");
        got.exists() && hash_file(&self.src) == hash_file(&got)
    }
}

/// Waits for the push; returns its status, stdout and stderr.
fn finish(mut push: KillOnDrop, limit: Duration) -> (Result<ExitStatus, String>, String, String) {
    let status = push.wait_timeout(limit);
    let (mut out, mut err) = (String::new(), String::new());
    let _ = push.0.stdout.take().unwrap().read_to_string(&mut out);
    let _ = push.0.stderr.take().unwrap().read_to_string(&mut err);
    (status, out, err)
}

fn partition_mid_push(test: &str, partition: Duration) {
    if skip_unless_root(test) {
        return;
    }
    let s = setup(test);
    let _server = s.server();
    let started = Instant::now();
    let push = s.push(&[]);
    std::thread::sleep(CUT_AT);
    s.cut();
    std::thread::sleep(partition);
    s.heal();
    let (status, json, stderr) = finish(push, Duration::from_secs(120));
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(matches!(status, Ok(st) if st.success()), "push: {status:?}\n{stderr}\nserve: {log}");
    assert!(!stderr.contains("retry"), "the push restarted instead of pausing: {stderr}");
    assert!(s.identical(), "the received file differs");
    let retransmitted = json_u64(&json, "packets_retransmitted").expect("packets_retransmitted");
    let datagram = json_u64(&json, "datagram_bytes").expect("datagram_bytes");
    let resent = retransmitted * datagram;
    eprintln!(
        "{test}: {:?} partition, push took {:.1} s, resent {retransmitted} datagrams ({resent} B, allowance \
         {RESEND_ALLOWANCE_BYTES} B)",
        partition,
        started.elapsed().as_secs_f64()
    );
    assert!(resent <= RESEND_ALLOWANCE_BYTES, "resent {resent} bytes: more than what was in flight");
    drop(s.dir);
}

#[test]
fn a_five_second_partition_pauses_the_push_and_it_completes() {
    partition_mid_push("a_five_second_partition_pauses_the_push_and_it_completes", Duration::from_secs(5));
}

#[test]
fn a_thirty_second_partition_pauses_the_push_and_it_completes() {
    partition_mid_push("a_thirty_second_partition_pauses_the_push_and_it_completes", Duration::from_secs(30));
}

#[test]
fn a_partition_longer_than_the_timeout_exits_5_and_the_same_command_completes_afterwards() {
    let test = "a_partition_longer_than_the_timeout_exits_5_and_the_same_command_completes_afterwards";
    if skip_unless_root(test) {
        return;
    }
    let s = setup("netns-timeout");
    let _server = s.server();
    let push = s.push(&["--timeout", "5", "--retries", "0"]);
    std::thread::sleep(CUT_AT);
    s.cut();
    let cut = Instant::now();
    let (status, _, stderr) = finish(push, Duration::from_secs(30));
    let gave_up = cut.elapsed();
    s.heal();
    let code = status.expect("the push exits by itself").code();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(gave_up < Duration::from_secs(5 + 4), "exit 5 only after {gave_up:?}");
    let line = stderr.lines().find(|l| l.starts_with("mover: error:")).unwrap_or_default();
    assert!(line.contains("silent for 5 s") && line.contains("run the same command again"), "{stderr}");
    assert!(!s.root.join("in/data.bin").exists(), "a file under its final name before it was complete");
    // The same command once the path is back.
    let (status, json, stderr) = finish(s.push(&["--timeout", "5", "--retries", "0"]), Duration::from_secs(120));
    assert!(matches!(status, Ok(st) if st.success()), "rerun: {status:?}\n{stderr}");
    assert!(s.identical(), "the received file differs after the rerun");
    // The rerun resumed: about CUT_AT of data had arrived and was journaled (a step at least every 16 MiB,
    // and one after 1 s without writes, which the partition gave), and it was not sent again.
    let resumed = json_u64(&json, "resumed_bytes").expect("resumed_bytes");
    let sent = json_u64(&json, "sent_bytes").expect("sent_bytes");
    let size = std::fs::metadata(&s.src).unwrap().len();
    assert!(resumed >= RATE_BYTES_PER_S, "the rerun resumed only {resumed} bytes: {json}");
    assert!(sent <= size - resumed + (8 << 20), "the rerun sent {sent} of {size} with {resumed} resumed: {json}");
}

#[test]
fn a_pull_through_a_partition_longer_than_the_timeout_exits_5() {
    let test = "a_pull_through_a_partition_longer_than_the_timeout_exits_5";
    if skip_unless_root(test) {
        return;
    }
    let s = setup("netns-pull-timeout");
    // The file to pull, placed where the daemon serves it.
    std::fs::create_dir_all(s.root.join("in")).unwrap();
    std::fs::copy(&s.src, s.root.join("in/data.bin")).unwrap();
    let _server = s.server();
    let dest = s.dir.path().join("pulled");
    let pull = s.pull(&dest, &["--timeout", "5", "--retries", "0"]);
    std::thread::sleep(CUT_AT);
    s.cut();
    let cut = Instant::now();
    let (status, _, stderr) = finish(pull, Duration::from_secs(30));
    let gave_up = cut.elapsed();
    s.heal();
    assert_eq!(status.expect("the pull exits by itself").code(), Some(5), "{stderr}");
    assert!(gave_up < Duration::from_secs(5 + 4), "exit 5 only after {gave_up:?}");
    let line = stderr.lines().find(|l| l.starts_with("mover: error:")).unwrap_or_default();
    assert!(line.contains("silent for 5 s") && line.contains("run the same command again"), "{stderr}");
    assert!(!dest.join("data.bin").exists(), "a file under its final name before it was complete");
}
