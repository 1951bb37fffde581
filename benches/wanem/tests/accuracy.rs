//! Does the emulated path deliver what it is configured for? Real traffic (ping, iperf3 UDP and TCP) from a
//! sender namespace through `mover-wanem` in a middle namespace to a receiver namespace (root only; CI runs as
//! root; skipped loudly otherwise):
//! - RTT within 5% of 2 x delay, for 10 ms and 50 ms;
//! - a UDP flood above 1 Gbit/s delivered at the configured 1 Gbit/s (payload share of the frame) within 5%,
//!   and a TCP flow crossing;
//! - 1% random loss measured within 20% (relative) over >= 50k datagrams, agreeing with the forwarder's count;
//! - reordering and Gilbert-Elliott loss acting (their counters move) while traffic still crosses.
//!
//! Addresses are only 10.80.0.1/24 (sender) and 10.80.0.2/24 (receiver), inside namespaces this test creates
//! and deletes; no traffic goes anywhere else. The tests take a lock so that they never share the two cores.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WANEM: &str = env!("CARGO_BIN_EXE_mover-wanem");
const SENDER_IP: &str = "10.80.0.1";
const RECEIVER_IP: &str = "10.80.0.2";
/// The outer veth in the sender's and the receiver's namespace.
const OUTER: &str = "wan0";
/// The middle namespace's ends: toward the sender (`--a`) and toward the receiver (`--b`).
const MID_A: &str = "wsnd";
const MID_B: &str = "wrcv";
const IPERF_PORT: &str = "5201";

/// Bandwidth tests must not overlap: the forwarder, sender and receiver already share two cores.
static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    // Safety: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (CI runs as root)".into());
    }
    for tool in ["ip", "ethtool", "ping", "iperf3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found && tool == "ip" {
            return Some("no `ip` (iproute2)".into());
        }
        // The rest are installed by test.sh when root: missing ones are a set-up error, not a reason to skip.
        assert!(found, "`{tool}` is missing: ./test.sh installs it (apt-get install iperf3 iputils-ping ethtool)");
    }
    None
}

macro_rules! skip_unless_root {
    ($name:expr) => {
        if let Some(why) = skip_reason() {
            eprintln!("\n!!! SKIPPED {}: {why} !!!\n", $name);
            return;
        }
    };
}

/// Three namespaces joined by two veth pairs: sender `wan0` <-> `wsnd` mid `wrcv` <-> `wan0` receiver. Dropping
/// it kills whatever still runs in them and deletes them (which deletes the veths).
struct Path3 {
    snd: String,
    mid: String,
    rcv: String,
}

impl Path3 {
    fn new() -> Path3 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let path = Path3 {
            snd: format!("wnm-{pid}-{n}-snd"),
            mid: format!("wnm-{pid}-{n}-mid"),
            rcv: format!("wnm-{pid}-{n}-rcv"),
        };
        // From here on, Drop cleans up whatever part was made.
        for ns in [&path.snd, &path.mid, &path.rcv] {
            run(&["ip", "netns", "add", ns]);
            // No IPv6: the kernels would send router solicitations and the like on their own; the middle one
            // must stay silent, and the outer ones only send what the test sends.
            let _ = path.exec_status(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            let _ = path.exec_status(ns, &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
            path.exec(ns, &["ip", "link", "set", "lo", "up"]);
        }
        run(&[
            "ip", "link", "add", OUTER, "netns", &path.snd, "type", "veth", "peer", "name", MID_A, "netns", &path.mid,
        ]);
        run(&[
            "ip", "link", "add", OUTER, "netns", &path.rcv, "type", "veth", "peer", "name", MID_B, "netns", &path.mid,
        ]);
        for (ns, ip) in [(&path.snd, SENDER_IP), (&path.rcv, RECEIVER_IP)] {
            path.exec(ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", OUTER]);
            // One frame per packet, checksums filled in by the sender: the forwarder sees what a wire carries.
            path.exec(ns, &["ethtool", "-K", OUTER, "tso", "off", "gso", "off", "gro", "off", "tx", "off"]);
            path.exec(ns, &["ip", "link", "set", OUTER, "up"]);
        }
        // The middle kernel gets no address: it must not answer or route, only the forwarder moves frames.
        for dev in [MID_A, MID_B] {
            path.exec(&path.mid, &["ip", "link", "set", dev, "up"]);
        }
        path
    }

    fn command(&self, ns: &str, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        c
    }

    fn exec_status(&self, ns: &str, argv: &[&str]) -> Output {
        self.command(ns, argv).output().unwrap_or_else(|e| panic!("{argv:?} in {ns}: {e}"))
    }

    fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        let out = self.exec_status(ns, argv);
        assert!(out.status.success(), "{argv:?} in {ns}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
        out
    }

    /// UDP datagrams the receiver's kernel dropped because a socket buffer was full: losses that are not the
    /// forwarder's.
    fn receiver_rcvbuf_errors(&self) -> u64 {
        let snmp = String::from_utf8_lossy(&self.exec(&self.rcv, &["cat", "/proc/net/snmp"]).stdout).into_owned();
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (udp.next().expect("Udp header"), udp.next().expect("Udp values"));
        let column = names.split_whitespace().position(|n| n == "RcvbufErrors").expect("RcvbufErrors column");
        values.split_whitespace().nth(column).and_then(|v| v.parse().ok()).expect("RcvbufErrors value")
    }
}

impl Drop for Path3 {
    fn drop(&mut self) {
        for ns in [&self.snd, &self.mid, &self.rcv] {
            // Only processes inside our own namespaces: what the test started and may have lost track of.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // Safety: kill has no memory-safety preconditions; the pid was listed in our namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "delete", ns]).stderr(Stdio::null()).status();
        }
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// A running forwarder; killed on drop, stopped with SIGTERM by `stop`.
struct Wanem {
    child: Child,
    stats: PathBuf,
    log: PathBuf,
}

impl Wanem {
    fn start(path: &Path3, args: &[&str]) -> Wanem {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir();
        let stats = dir.join(format!("wanem-accuracy-{}-{n}.json", std::process::id()));
        let log = dir.join(format!("wanem-accuracy-{}-{n}.log", std::process::id()));
        let _ = std::fs::remove_file(&stats);
        let mut argv = vec![WANEM, "--a", MID_A, "--b", MID_B, "--stats-json", stats.to_str().unwrap()];
        argv.extend_from_slice(args);
        let child = path
            .command(&path.mid, &argv)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn mover-wanem");
        let mut wanem = Wanem { child, stats, log };
        // Wait for `ready` on stdout, from a thread so that a silent forwarder cannot hang the test.
        let stdout = wanem.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line == "ready\n" => wanem,
            other => panic!("mover-wanem {args:?} did not print `ready`: {other:?}; log: {}", wanem.log_text()),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, exit 0, and the stats file it wrote.
    fn stop(mut self) -> Json {
        // Safety: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "mover-wanem ignored SIGTERM; log: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "mover-wanem exited {status}; log: {}", self.log_text());
        let text = std::fs::read_to_string(&self.stats).expect("stats json written on SIGTERM");
        let _ = std::fs::remove_file(&self.stats);
        eprintln!("  wanem stats: {}", text.trim());
        Json::parse(&text).unwrap_or_else(|e| panic!("stats json: {e}: {text}"))
    }
}

impl Drop for Wanem {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Every reply's RTT in ms from ping's output (ping prints only 3 significant digits from 100 ms up: 100.4 ms
/// shows as 100, 1% resolution).
fn reply_rtts_ms(ping_output: &str) -> Vec<f64> {
    ping_output
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

/// ping's own summary, `rtt min/avg/max/mdev = a/b/c/d ms[, pipe N]`, which keeps three decimals at any RTT.
fn ping_summary_ms(ping_output: &str) -> [f64; 4] {
    let numbers = ping_output.lines().find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "));
    let numbers: Vec<f64> = numbers
        .unwrap_or_else(|| panic!("no summary in ping output: {ping_output}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .split('/')
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers.try_into().unwrap_or_else(|n| panic!("ping summary {n:?}"))
}

fn ping(path: &Path3, count: u32, interval: &str) -> String {
    let out =
        path.exec_status(&path.snd, &["ping", "-n", "-c", &count.to_string(), "-i", interval, "-W", "2", RECEIVER_IP]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs an iperf3 server (one test, JSON) in the receiver namespace and a client with `client_args` in the
/// sender's; returns (server JSON, client JSON).
fn iperf3(path: &Path3, client_args: &[&str]) -> (Json, Json) {
    let (server, client, ()) = iperf3_with(path, client_args, || ());
    (server, client)
}

/// `iperf3`, running `during` while the client runs.
fn iperf3_with<T>(path: &Path3, client_args: &[&str], during: impl FnOnce() -> T) -> (Json, Json, T) {
    let server = path
        .command(&path.rcv, &["iperf3", "-s", "-1", "-B", RECEIVER_IP, "-p", IPERF_PORT, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iperf3 -s");
    let mut server = KillOnDrop(server);
    // Wait until it listens (a client started earlier is refused).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ss = path.exec_status(&path.rcv, &["ss", "-Hltn", &format!("sport = :{IPERF_PORT}")]);
        if !ss.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "iperf3 server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut argv = vec!["timeout", "60", "iperf3", "-c", RECEIVER_IP, "-p", IPERF_PORT, "--json"];
    argv.extend_from_slice(client_args);
    let client = path.command(&path.snd, &argv).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut client = KillOnDrop(client.expect("spawn iperf3 -c"));
    let during = during();
    let client = client.wait_output(Duration::from_secs(60));
    let client_text = String::from_utf8_lossy(&client.stdout).into_owned();
    let server_out = server.wait_output(Duration::from_secs(15));
    let server_text = String::from_utf8_lossy(&server_out.stdout).into_owned();
    let client_json = Json::parse(&client_text).unwrap_or_else(|e| panic!("iperf3 client json: {e}: {client_text}"));
    if let Some(err) = client_json.get("error").and_then(Json::as_str) {
        panic!("iperf3 client failed: {err}");
    }
    let server_json = Json::parse(&server_text).unwrap_or_else(|e| panic!("iperf3 server json: {e}: {server_text}"));
    (server_json, client_json, during)
}

/// The receiver interface's received-bytes counter (Ethernet frame bytes, as the forwarder counts them) and
/// when it was read (the middle of the read's span).
fn receiver_rx_bytes(path: &Path3) -> (Instant, u64) {
    let before = Instant::now();
    let out = path.exec(&path.rcv, &["cat", &format!("/sys/class/net/{OUTER}/statistics/rx_bytes")]);
    let after = Instant::now();
    let bytes = String::from_utf8_lossy(&out.stdout).trim().parse().expect("rx_bytes");
    (before + (after - before) / 2, bytes)
}

struct KillOnDrop(Child);

impl KillOnDrop {
    /// Waits for the child's exit (killing it after `limit`) and collects its output.
    fn wait_output(&mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        while self.0.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        use std::io::Read;
        if let Some(mut s) = self.0.stdout.take() {
            let _ = s.read_to_end(&mut stdout);
        }
        if let Some(mut s) = self.0.stderr.take() {
            let _ = s.read_to_end(&mut stderr);
        }
        Output { status: self.0.wait().unwrap(), stdout, stderr }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[test]
fn rtt_is_twice_the_delay() {
    skip_unless_root!("rtt_is_twice_the_delay");
    let _serial = serial();
    let path = Path3::new();
    for (delay, delay_ms) in [("10ms", 10.0), ("50ms", 50.0)] {
        let wanem = Wanem::start(&path, &["--delay", delay]);
        // The first ping resolves ARP across the path (two crossings more): keep it out of the measurement.
        ping(&path, 1, "0.05");
        let text = ping(&path, 20, "0.05");
        let stats = wanem.stop();
        let mut rtts = reply_rtts_ms(&text);
        let [min, avg, max, mdev] = ping_summary_ms(&text);
        assert!(rtts.len() >= 18, "{} of 20 pings answered: {text}", rtts.len());
        rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = rtts[rtts.len() / 2];
        let expected = 2.0 * delay_ms;
        eprintln!(
            "--delay {delay}: ping RTT median {median:.3} ms, avg {avg:.3} ms (min {min:.3}, max {max:.3}, mdev \
             {mdev:.3}), expected {expected} ms"
        );
        // The median: one reply delayed by a stall of this shared machine does not move it.
        assert!((median / expected - 1.0).abs() < 0.05, "median RTT {median} ms for --delay {delay}");
        assert!(min >= expected * 0.99, "a ping crossed faster than the delay: {min} ms");
        assert!(stats.u64(&["forward", "frames_out"]) >= 20);
        assert_eq!(stats.u64(&["forward", "oversize"]), 0, "offloads are off: no frame above MTU + 14");
    }
}

#[test]
fn bottleneck_rate_holds_and_tcp_crosses() {
    skip_unless_root!("bottleneck_rate_holds_and_tcp_crosses");
    let _serial = serial();
    let path = Path3::new();
    // Two measures of what crossed: the receiver interface's byte counter over two seconds in the middle of the
    // flood (frame bytes, at the rate itself: the forwarder's accuracy), and iperf3's per-second intervals
    // (UDP payload, 1472 of every 1514 frame bytes: also depends on the receiving process keeping up).
    let expected_wire = 1e9;
    let expected_payload = 1e9 * 1472.0 / (1472.0 + 42.0);
    // On a shared 2-core machine the sender may not get to offer more than the rate, or the forwarder may be
    // starved past its socket buffer; neither measures the forwarder's model, so such an attempt is reported and
    // repeated.
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let rcvbuf_errors_before = path.receiver_rcvbuf_errors();
        // A 100 ms queue rides out the sender's scheduling gaps, so the bottleneck stays busy.
        let wanem = Wanem::start(&path, &["--delay", "10ms", "--rate", "1G", "--queue", "100ms"]);
        let (server, _, (t0, b0, t1, b1)) =
            iperf3_with(&path, &["-u", "-b", "1.25G", "-l", "1472", "-t", "4", "-w", "4M"], || {
                std::thread::sleep(Duration::from_millis(1500));
                let (t0, b0) = receiver_rx_bytes(&path);
                std::thread::sleep(Duration::from_millis(2000));
                let (t1, b1) = receiver_rx_bytes(&path);
                (t0, b0, t1, b1)
            });
        let stats = wanem.stop();
        let wire = (b1 - b0) as f64 * 8.0 / (t1 - t0).as_secs_f64();
        let intervals: Vec<f64> = server
            .get("intervals")
            .and_then(Json::as_array)
            .expect("intervals")
            .iter()
            .filter_map(|i| i.get("sum")?.get("bits_per_second")?.as_f64())
            .collect();
        // The first second includes the start (queue filling), the last may be partial. A mean rather than a
        // median: a stall moves bytes from one second into the next.
        let steady: Vec<f64> = intervals.iter().copied().skip(1).take(3).collect();
        assert!(steady.len() == 3, "intervals: {intervals:?}");
        let payload = steady.iter().sum::<f64>() / steady.len() as f64;
        let frames_in = stats.u64(&["forward", "frames_in"]);
        let queue_drops = stats.u64(&["forward", "queue_drops"]);
        let socket_drops = stats.u64(&["forward", "socket_drops"]);
        let receiver_drops = path.receiver_rcvbuf_errors() - rcvbuf_errors_before;
        eprintln!(
            "--rate 1G, UDP 1472 B offered at 1.25G (attempt {attempt}): receiver interface {:.1} Mbit/s of frames \
             (expected 1000.0); iperf3 {:.1} Mbit/s of payload (mean of seconds 1-4 of {:?}, expected {:.1}); \
             {frames_in} frames in, {queue_drops} dropped at the queue, {socket_drops} by the forwarder's socket, \
             {receiver_drops} by the receiving process's socket",
            wire / 1e6,
            payload / 1e6,
            intervals.iter().map(|b| (b / 1e5).round() / 10.0).collect::<Vec<_>>(),
            expected_payload / 1e6,
        );
        let disturbed = queue_drops == 0 || socket_drops > 0;
        if disturbed && attempt < ATTEMPTS {
            eprintln!("  disturbed by the machine's load (see the counts above): again");
            continue;
        }
        assert!(queue_drops > 0, "the sender never offered more than the rate: the rate was not tested");
        assert_eq!(socket_drops, 0, "the forwarder fell behind its socket");
        assert!((wire / expected_wire - 1.0).abs() < 0.05, "delivered {wire} bit/s of frames, expected 1e9");
        // iperf3 loses what its starved receiving process dropped: only check it when that did not happen.
        if receiver_drops == 0 {
            let error = payload / expected_payload - 1.0;
            assert!(error.abs() < 0.05, "iperf3 received {payload} bit/s of payload, expected {expected_payload}");
        }
        break;
    }

    // TCP through the same path (default queue, as the benchmark runs it).
    let wanem = Wanem::start(&path, &["--delay", "10ms", "--rate", "1G"]);
    let (_, client) = iperf3(&path, &["-t", "3", "-C", "cubic"]);
    let tcp = client.get("end").and_then(|e| e.get("sum_received")).and_then(|s| s.get("bits_per_second"));
    let tcp = tcp.and_then(Json::as_f64).expect("end.sum_received.bits_per_second");
    let stats = wanem.stop();
    eprintln!("--rate 1G --delay 10ms: TCP (cubic) {:.1} Mbit/s", tcp / 1e6);
    // TCP payload is at most 1448 of 1514 frame bytes (with timestamps): 956 Mbit/s.
    assert!(tcp > 100e6, "TCP barely crossed: {tcp} bit/s");
    assert!(tcp < 1e9 * 1448.0 / 1514.0 * 1.05, "TCP beat the bottleneck: {tcp} bit/s");
    assert!(stats.u64(&["reverse", "frames_out"]) > 1000, "acknowledgements crossed back");
}

#[test]
fn random_loss_matches() {
    skip_unless_root!("random_loss_matches");
    let _serial = serial();
    let path = Path3::new();
    let rcvbuf_errors_before = path.receiver_rcvbuf_errors();
    let wanem = Wanem::start(&path, &["--loss", "1%", "--seed", "7"]);
    // 400 Mbit/s of 1472-byte datagrams for 2 s: ~68k datagrams, well inside what the receiver keeps up with.
    let (server, _) = iperf3(&path, &["-u", "-b", "400M", "-l", "1472", "-t", "2", "-w", "4M"]);
    let stats = wanem.stop();
    let sum = server.get("end").and_then(|e| e.get("sum")).expect("end.sum");
    let packets = sum.get("packets").and_then(Json::as_f64).expect("packets");
    let lost = sum.get("lost_packets").and_then(Json::as_f64).expect("lost_packets");
    let frames_in = stats.u64(&["forward", "frames_in"]) as f64;
    let lost_random = stats.u64(&["forward", "lost_random"]) as f64;
    let measured = lost / packets;
    let counted = lost_random / frames_in;
    eprintln!(
        "--loss 1%: iperf3 lost {lost} of {packets} datagrams ({:.3}%), the forwarder dropped {lost_random} of \
         {frames_in} frames ({:.3}%); the receiver's socket dropped {}",
        100.0 * measured,
        100.0 * counted,
        path.receiver_rcvbuf_errors() - rcvbuf_errors_before
    );
    assert!(packets >= 50_000.0, "too few datagrams for the statistics: {packets}");
    assert!((measured / 0.01 - 1.0).abs() < 0.2, "measured loss {measured}");
    assert!((counted / 0.01 - 1.0).abs() < 0.2, "forwarder's loss {counted}");
    // What iperf3 missed is what the forwarder dropped (plus, at most, a few frames of its TCP control channel
    // and the datagrams of the last instant that iperf3 cannot tell from lost).
    assert!((lost - lost_random).abs() <= 0.05 * lost_random + 20.0, "iperf3 lost {lost}, forwarder {lost_random}");
    assert_eq!(stats.u64(&["reverse", "lost_random"]), 0, "no reverse loss configured");
}

#[test]
fn reordering_and_burst_loss_act() {
    skip_unless_root!("reordering_and_burst_loss_act");
    let _serial = serial();
    let path = Path3::new();
    let args = ["--delay", "2ms", "--reorder", "5%", "--reorder-delay", "3ms", "--burst-loss", "0.5%,20%,50%"];
    let wanem = Wanem::start(&path, &args);
    let (server, _) = iperf3(&path, &["-u", "-b", "100M", "-l", "1000", "-t", "1"]);
    let rtts = reply_rtts_ms(&ping(&path, 20, "0.02"));
    let stats = wanem.stop();
    let stream = server.get("end").and_then(|e| e.get("streams")).and_then(Json::as_array).and_then(|s| s.first());
    let udp = stream.and_then(|s| s.get("udp")).expect("end.streams[0].udp");
    let out_of_order = udp.get("out_of_order").and_then(Json::as_f64).expect("out_of_order");
    let lost = udp.get("lost_packets").and_then(Json::as_f64).expect("lost_packets");
    let reordered = stats.u64(&["forward", "reordered"]);
    let lost_burst = stats.u64(&["forward", "lost_burst"]);
    eprintln!(
        "--reorder 5% --burst-loss 0.5%,20%,50%: iperf3 saw {out_of_order} out of order and {lost} lost; the \
         forwarder held back {reordered} and burst-dropped {lost_burst}; {} of 20 pings answered",
        rtts.len()
    );
    assert!(reordered > 0 && lost_burst > 0, "counters did not move");
    assert!(out_of_order > 0.0, "no reordering seen by the receiver");
    assert!(lost > 0.0, "no loss seen by the receiver");
    assert!(rtts.len() >= 10, "ping mostly failed: {} of 20", rtts.len());
}

/// Just enough JSON for iperf3's and the forwarder's output (no dependency).
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(#[allow(dead_code)] bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    /// A counter of the forwarder's stats file, by path.
    fn u64(&self, path: &[&str]) -> u64 {
        let mut v = self;
        for key in path {
            v = v.get(key).unwrap_or_else(|| panic!("no {path:?} in {self:?}"));
        }
        v.as_f64().unwrap_or_else(|| panic!("{path:?} is not a number")) as u64
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) != Some(&c) {
            return Err(format!("expected '{}' at {}", c as char, self.i));
        }
        self.i += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    fields.push((key, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                text.parse().map(Json::Num).map_err(|_| format!("bad value at {start}"))
            }
            None => Err("unexpected end".into()),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let esc = *self.s.get(self.i).ok_or("unexpected end")?;
                    self.i += 1;
                    match esc {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'u' => {
                            // Only ASCII escapes appear in iperf3's output; others become '?'.
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4).ok_or("short \\u")?)
                                .map_err(|e| e.to_string())?;
                            let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            out.push(if code < 0x80 { code as u8 } else { b'?' });
                            self.i += 4;
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
}
