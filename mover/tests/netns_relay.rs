//! Striped pushes through relays (the Fast Send Protocol, issue 19) with real processes in network
//! namespaces (root only; CI runs as root): a sender, a receiving `mover serve` and three `mover relay`s on
//! one bridge. Every run must arrive identical; the relays' spools and the bridge's traffic must never hold
//! a plaintext marker of the source; a relay that alters stored blocks is caught and its blocks fetched
//! again; a relay killed mid-transfer is survived.

mod common;

use common::netns::skip_unless_root;
use common::netns_star::NetnsStar;
use common::{hash_file, json_f64, json_u64, write_random_file, KillOnDrop, TempDir};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENDER: usize = 0;
const RECEIVER: usize = 1;
const RELAYS: [usize; 3] = [2, 3, 4];
const PORT: u16 = 7470;
/// Plaintext that appears many times in the source and must never appear on a relay or on the wire.
const MARKER: &[u8] = b"FSP-PLAINTEXT-MARKER-7e1f";
/// Blocks of 256 KiB: a 9 MiB source is 40-odd blocks, several batches per leg.
const BLOCK: &str = "256K";

/// The hosts, the daemons and the directories of one test.
struct Rig {
    star: NetnsStar,
    dir: TempDir,
    _receiver: KillOnDrop,
    relays: Vec<Option<KillOnDrop>>,
}

impl Rig {
    fn new(tag: &str) -> Option<Rig> {
        Rig::with_delays(tag, &[None; 5])
    }

    /// A rig whose hosts reach the bridge with these one-way delays (`mover-wanem`).
    fn with_delays(tag: &str, delays: &[Option<&str>]) -> Option<Rig> {
        Rig::build(tag, delays, "1G")
    }

    fn build(tag: &str, delays: &[Option<&str>], spool_max: &str) -> Option<Rig> {
        if skip_unless_root(tag) {
            return None;
        }
        let star = NetnsStar::with_delays(delays).expect("namespaces");
        let dir = TempDir::new(tag);
        make_source(&dir.path().join("src"));
        let root = dir.path().join("recv");
        std::fs::create_dir_all(&root).unwrap();
        let listen = format!("{}:{PORT}", star.ip(RECEIVER));
        let args =
            ["serve", "--insecure-no-auth", "--net", "udp", "--listen", &listen, "--root", root.to_str().unwrap()];
        let receiver = star.start_daemon(RECEIVER, &args, &dir.path().join("recv.log"));
        let mut relays = Vec::new();
        for (i, &host) in RELAYS.iter().enumerate() {
            let spool = dir.path().join(format!("spool{i}"));
            let listen = format!("{}:{PORT}", star.ip(host));
            let args = [
                "relay",
                "--insecure-no-auth",
                "--net",
                "udp",
                "--listen",
                &listen,
                "--spool",
                spool.to_str().unwrap(),
                "--spool-max",
                spool_max,
            ];
            relays.push(Some(star.start_daemon(host, &args, &dir.path().join(format!("relay{i}.log")))));
        }
        Some(Rig { star, dir, _receiver: receiver, relays })
    }

    fn spool(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("spool{i}"))
    }

    fn via(&self) -> String {
        RELAYS.iter().map(|&h| format!("mover://{}:{PORT}", self.star.ip(h))).collect::<Vec<_>>().join(",")
    }

    /// `mover push --via ... [extra] src mover://RECEIVER/dest`: its JSON, after checking it succeeded.
    fn push(&self, dest: &str, extra: &[&str]) -> String {
        let url = format!("mover://{}:{PORT}/{dest}", self.star.ip(RECEIVER));
        let via = self.via();
        let src = self.dir.path().join("src");
        let mut argv = vec![env!("CARGO_BIN_EXE_mover"), "push", "--insecure-no-auth", "--net", "udp", "--json"];
        if !extra.contains(&"--via") {
            argv.extend(["--via", &via]);
        }
        argv.extend(["--block-size", BLOCK]);
        argv.extend(extra);
        argv.extend([src.to_str().unwrap(), &url]);
        let mut cmd = self.star.command(SENDER, &argv);
        let out = common::run_with_limit(cmd.stdin(Stdio::null()), Duration::from_secs(120));
        let json = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "push {extra:?} failed ({}): {json}\n{}\nreceiver: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("recv.log")).unwrap_or_default()
        );
        json
    }

    /// Every relay deleted what it delivered. (A relay deletes a batch once its pull has ended, which may
    /// come just after the push's end: a few seconds of grace.)
    fn assert_spools_empty(&self) {
        for i in 0..3 {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !files_below(&self.spool(i)).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(files_below(&self.spool(i)).is_empty(), "spool {i} kept {:?}", files_below(&self.spool(i)));
        }
    }

    fn assert_identical(&self, dest: &str) {
        let src = self.dir.path().join("src");
        let got = self.dir.path().join("recv").join(dest).join("src");
        for name in ["big.bin", "marker.txt", "sub/small.bin", "empty"] {
            let (a, b) = (src.join(name), got.join(name));
            assert!(b.exists(), "{} missing", b.display());
            assert_eq!(hash_file(&a), hash_file(&b), "{name} differs");
        }
    }
}

/// 8 MiB of random bytes, 1 MiB of the marker, a small file and an empty one.
fn make_source(src: &Path) {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("big.bin"), 8 << 20, 19);
    let marker: Vec<u8> = MARKER.iter().chain(b"\n").copied().cycle().take(1 << 20).collect();
    std::fs::write(src.join("marker.txt"), marker).unwrap();
    write_random_file(&src.join("sub/small.bin"), 5000, 20);
    std::fs::write(src.join("empty"), b"").unwrap();
}

/// Files below `dir` (recursively).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads every file that appears in the spools while it runs and counts those it read; fails the test if
/// any holds the marker.
fn watch_spools(spools: Vec<PathBuf>, stop: Arc<AtomicBool>, seen: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for f in spools.iter().flat_map(|s| files_below(s)) {
                if let Ok(bytes) = std::fs::read(&f) {
                    assert!(!contains(&bytes, MARKER), "the spool file {} holds plaintext", f.display());
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn striped_pushes_in_every_mode_arrive_identical_and_relays_see_no_plaintext() {
    let Some(rig) = Rig::new("netns_relay_modes") else { return };
    // The bridge's traffic, captured in the hub during the first runs.
    let pcap = rig.dir.path().join("bridge.pcap");
    let capture = rig
        .star
        .exec_in(&rig.star.hub, &["true"])
        .map(|_| {
            let child = std::process::Command::new("ip")
                .args(["netns", "exec", &rig.star.hub, "tcpdump", "-i", "br0", "-U", "-s", "0", "-w"])
                .arg(&pcap)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tcpdump (test.sh installs it)");
            KillOnDrop(child)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let watcher = watch_spools((0..3).map(|i| rig.spool(i)).collect(), stop.clone(), seen.clone());
    let mut capture = Some(capture);
    let mut run = 0;
    for mode in ["fcfs", "cyclic", "partitioned"] {
        for direct in [false, true] {
            for overlap in [true, false] {
                let dest = format!("d{run}");
                let mut extra = vec!["--stripe", mode];
                if direct {
                    extra.push("--direct");
                }
                if !overlap {
                    extra.push("--no-overlap");
                }
                let json = rig.push(&dest, &extra);
                rig.assert_identical(&dest);
                let (send, total) = (json_f64(&json, "send_seconds").unwrap(), json_f64(&json, "seconds").unwrap());
                assert!(send > 0.0 && send <= total, "send_seconds {send}, seconds {total}: {json}");
                let legs = json.matches("\"retransmitted\":").count();
                assert_eq!(legs, 3 + usize::from(direct), "{json}");
                assert!(json.contains("\"name\":\"direct\"") == direct, "{json}");
                // Every block was stored on some leg: at least 32 + 4 + 1 of them.
                let blocks: u64 = json
                    .split("\"blocks\":")
                    .skip(1)
                    .map(|s| s.split(',').next().unwrap().parse::<u64>().unwrap())
                    .sum();
                assert!(blocks >= 37, "{blocks} blocks stored: {json}");
                assert_eq!(json_u64(&json, "refetched_blocks"), Some(0), "{json}");
                // Delivered batches are deleted: the spools and the receiver's staging are empty.
                rig.assert_spools_empty();
                assert!(!rig.dir.path().join("recv/.mover-stripe").exists(), "the receiver's staging was left");
                run += 1;
                if run == 2 {
                    drop(capture.take());
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("a spool held plaintext");
    assert!(seen.load(Ordering::Relaxed) > 10, "the watcher read no spool file: it proves nothing");
    let captured = std::fs::read(&pcap).expect("the capture");
    assert!(captured.len() > 2 * (9 << 20), "captured only {} bytes: the capture saw no transfer", captured.len());
    assert!(!contains(&captured, MARKER), "the bridge carried the marker in plaintext");
}

/// Flips a byte in every block file of the first batch `spool` receives, before it is collected.
fn tamper_first_batch(spool: PathBuf, stop: Arc<AtomicBool>, flipped: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut batch: Option<PathBuf> = None;
        let mut done = std::collections::HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            for f in files_below(&spool) {
                let name = f.file_name().unwrap().to_string_lossy().to_string();
                // Committed blocks only (partials have other names), of the first batch seen.
                if !name.bytes().all(|b| b.is_ascii_digit()) || done.contains(&f) {
                    continue;
                }
                let dir = f.parent().unwrap().to_path_buf();
                if batch.get_or_insert_with(|| dir.clone()) != &dir {
                    continue;
                }
                use std::os::unix::fs::FileExt;
                if let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&f) {
                    let mut b = [0u8; 1];
                    if file.read_exact_at(&mut b, 100).is_ok() && file.write_all_at(&[b[0] ^ 0x40], 100).is_ok() {
                        flipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.insert(f);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

#[test]
fn a_relay_that_alters_blocks_is_caught_and_the_blocks_come_again() {
    let Some(rig) = Rig::new("netns_relay_tamper") else { return };
    let (stop, flipped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let t = tamper_first_batch(rig.spool(0), stop.clone(), flipped.clone());
    // Without overlap the batches wait in the spools until striping is done: time for the tampering.
    let json = rig.push("tampered", &["--no-overlap", "--stripe", "cyclic"]);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    rig.assert_identical("tampered");
    let flipped = flipped.load(Ordering::Relaxed);
    assert!(flipped > 0, "nothing was altered: the test proves nothing");
    let refetched = json_u64(&json, "refetched_blocks").unwrap();
    assert!(refetched >= flipped, "{flipped} blocks altered, {refetched} fetched again: {json}");
    let log = std::fs::read_to_string(rig.dir.path().join("recv.log")).unwrap();
    assert!(log.contains("failed authentication"), "the receiver did not say why: {log}");
}

#[test]
fn a_relay_killed_mid_transfer_is_survived() {
    let Some(mut rig) = Rig::new("netns_relay_kill") else { return };
    let log = rig.dir.path().join("relay1.log");
    let mut victim = rig.relays[1].take().unwrap();
    // Kill relay 2 once it has stored a whole batch (its log says a received session ended): those blocks
    // are stuck in it, for without overlap nobody collects them before striping is done.
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().any(|l| l.contains(" ended: ") && l.contains(" from ")) {
                let _ = victim.0.kill();
                let _ = victim.0.wait();
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    });
    let json = rig.push("survived", &["--no-overlap"]);
    assert!(killer.join().unwrap(), "relay 2 never held a block");
    rig.assert_identical("survived");
    let refetched = json_u64(&json, "refetched_blocks").unwrap();
    assert!(refetched > 0, "relay 2's stored blocks were not fetched again from elsewhere: {json}");
}

#[test]
fn a_detached_push_ends_at_the_receiver_and_a_lost_block_is_named_then_resumed_from_the_sender() {
    let Some(mut rig) = Rig::new("netns_relay_detach") else { return };
    let server = format!("mover://{}:{PORT}", rig.star.ip(RECEIVER));
    let status = |rig: &Rig, id: &str| {
        let argv =
            [env!("CARGO_BIN_EXE_mover"), "status", id, "--server", &server, "--insecure-no-auth", "--wait", "--json"];
        common::run_with_limit(rig.star.command(SENDER, &argv).stdin(Stdio::null()), Duration::from_secs(120))
    };
    // 1. Detached: the push returns once striping is done; the receiver finishes and says so.
    let json = rig.push("detached", &["--detach"]);
    assert!(json.contains("\"detached\":true"), "{json}");
    let id = common::json_raw(&json, "transfer").unwrap().trim_matches('"').to_string();
    let out = status(&rig, &id);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"state\":\"done\""),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_u64(&text, "files_done"), Some(4), "{text}");
    rig.assert_identical("detached");

    // 2. Detached, and relay 1 dies with blocks nobody else holds: the receiver names what is lost.
    let json = rig.push("lost", &["--detach", "--no-overlap", "--stripe", "cyclic"]);
    drop(rig.relays[0].take());
    let batches: u64 = json.split("\"batches\":").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(batches >= 2, "relay 1 held {batches} batch: the kill may come after its collection: {json}");
    let id = common::json_raw(&json, "transfer").unwrap().trim_matches('"').to_string();
    let out = status(&rig, &id);
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("\"state\":\"failed\""), "{text}{err}");
    assert!(
        err.contains("were lost") && err.contains("the sender has left") && err.contains("run the same push again"),
        "{err}"
    );
    assert!(err.contains("src/big.bin'"), "the lost file is not named: {err}");
    // 3. The same push again, from the sender, completes it (relay 1 is gone: the others take its share).
    let json = rig.push("lost", &["--stripe", "cyclic"]);
    assert!(json.contains("\"failed\":"), "relay 1's leg should have failed: {json}");
    rig.assert_identical("lost");
}

/// The `relay_choice` entry of `url` in a push's JSON: (RTT sender, RTT receiver, chosen).
fn choice_of(json: &str, url: &str) -> (f64, f64, bool) {
    let at = json.find(&format!("\"url\":\"{url}\"")).unwrap_or_else(|| panic!("{url} not in {json}"));
    let entry = &json[at..json[at..].find('}').map_or(json.len(), |e| at + e)];
    let num = |k: &str| json_f64(entry, k).unwrap_or(f64::NAN);
    (num("rtt_sender_ms"), num("rtt_receiver_ms"), entry.contains("\"chosen\":true"))
}

#[test]
fn via_auto_chooses_the_relays_within_both_round_trip_times() {
    // Relay 1 is next door, relay 2 is 5 ms away each way (RTT ~10 ms), relay 3 is 25 ms (RTT ~50 ms).
    let Some(rig) = Rig::with_delays("netns_relay_auto", &[None, None, None, Some("5ms"), Some("25ms")]) else {
        return;
    };
    let relays = rig.dir.path().join("relays");
    std::fs::write(&relays, format!("# the site's relays\n{}\n", rig.via().replace(',', "\n"))).unwrap();
    let url = |i: usize| format!("mover://{}:{PORT}", rig.star.ip(RELAYS[i]));
    let relays = relays.to_str().unwrap();
    let json =
        rig.push("auto", &["--via", "auto", "--relays", relays, "--max-rtt-sender", "25", "--max-rtt-receiver", "25"]);
    rig.assert_identical("auto");
    let (near, mid, far) = (choice_of(&json, &url(0)), choice_of(&json, &url(1)), choice_of(&json, &url(2)));
    assert!(near.0 < 5.0 && near.1 < 5.0 && near.2, "relay 1: {near:?}: {json}");
    assert!((8.0..25.0).contains(&mid.0) && (8.0..25.0).contains(&mid.1) && mid.2, "relay 2: {mid:?}: {json}");
    assert!(far.0 > 45.0 && far.1 > 45.0 && !far.2, "relay 3: {far:?}: {json}");
    assert!(!json.contains(&format!("\"name\":\"{}\"", url(2))), "relay 3 carried blocks: {json}");
    // A tighter constraint at the sender leaves only the next-door relay.
    let json = rig.push("auto2", &["--via", "auto", "--relays", relays, "--max-rtt-sender", "4"]);
    rig.assert_identical("auto2");
    assert!(choice_of(&json, &url(0)).2 && !choice_of(&json, &url(1)).2 && !choice_of(&json, &url(2)).2, "{json}");
}

#[test]
fn full_spools_push_back_without_failing_the_transfer() {
    // Spools of 1 MiB (four sealed blocks) for 9 MiB, without overlap: the relays refuse, batches shrink,
    // and once every spool is full the receiver is told to collect before striping is done.
    let Some(rig) = Rig::build("netns_relay_full", &[None; 5], "1M") else { return };
    let json = rig.push("full", &["--no-overlap"]);
    rig.assert_identical("full");
    let refusals: u64 = json
        .split("\"spool_full\":")
        .skip(1)
        .map(|s| s.split(['}', ',']).next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(refusals > 0, "no relay refused for room: {json}");
    assert_eq!(json_u64(&json, "refetched_blocks"), Some(0), "{json}");
    rig.assert_spools_empty();
}

#[test]
fn a_second_striped_push_sends_only_what_changed() {
    let Some(rig) = Rig::new("netns_relay_sync") else { return };
    rig.push("twice", &[]);
    // Unchanged: every file is current at the receiver, and no block is sent.
    let json = rig.push("twice", &[]);
    assert_eq!((json_u64(&json, "skipped_files"), json_u64(&json, "files")), (Some(4), Some(0)), "{json}");
    let blocks: u64 =
        json.split("\"blocks\":").skip(1).map(|s| s.split(',').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(blocks, 0, "{json}");
    // One file changed: only its blocks go.
    write_random_file(&rig.dir.path().join("src/sub/small.bin"), 7000, 21);
    let json = rig.push("twice", &[]);
    assert_eq!((json_u64(&json, "skipped_files"), json_u64(&json, "files")), (Some(3), Some(1)), "{json}");
    let blocks: u64 =
        json.split("\"blocks\":").skip(1).map(|s| s.split(',').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(blocks, 1, "{json}");
    rig.assert_identical("twice");
}
