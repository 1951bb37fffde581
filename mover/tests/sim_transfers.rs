//! Whole transfers through the deterministic simulator (virtual time): correctness under impairment, and
//! goodput against the link rate.

use mover::proto::Config;
use mover::sim::{run_transfer, synth_hash, BurstLoss, CheckingStore, MemStore, SimConfig, SimReport, SynthSource};
use mover::wire::{Cipher, DropReason};
use std::time::Duration;

const GBIT: u64 = 1_000_000_000;

fn config(rate_bps: u64, max_datagram: usize, rtt: Duration) -> Config {
    let mut c = Config::new(0x5eed_0001, max_datagram, rate_bps);
    c.initial_rtt = rtt;
    c
}

/// Runs a checked transfer of synthetic files and asserts every byte arrived intact and committed.
fn checked(sim: &SimConfig, cfg: Config, sizes: Vec<u64>) -> SimReport {
    let mut src = SynthSource { seed: sim.seed };
    let (report, store) = run_transfer(sim, cfg, sizes.clone(), &mut src, CheckingStore::new(sim.seed, sizes));
    assert!(report.outcome.is_ok(), "transfer failed: {:?}\n{report:#?}", report.outcome);
    assert!(store.all_identical(), "store: {store:?}");
    assert!(store.finished);
    report
}

fn describe(r: &SimReport) -> String {
    format!(
        "goodput {:.3} Gbit/s in {:.3} s virtual (session {:.3} s), sent {} retx {} ({:.3}%), fwd lost {} queue-dropped {}",
        r.goodput_bps / 1e9,
        r.transfer_time.as_secs_f64(),
        r.session_time.as_secs_f64(),
        r.sender.packets_sent,
        r.sender.packets_retransmitted,
        100.0 * r.sender.packets_retransmitted as f64 / r.sender.packets_sent as f64,
        r.forward.lost,
        r.forward.queue_drops
    )
}

#[test]
fn small_tree_clean_path_is_exact() {
    let sizes = vec![0, 1, 1411, 1412, 1413, 100_000, 0, 3 << 20];
    let sim = SimConfig::path(GBIT, Duration::from_millis(20), 0.0);
    let cfg = config(GBIT, 1472, Duration::from_millis(20));
    let mut src = SynthSource { seed: 1 };
    let (r, store) = run_transfer(&sim, cfg, sizes.clone(), &mut src, MemStore::new(&sizes));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    for (id, &size) in sizes.iter().enumerate() {
        let mut want = vec![0u8; size as usize];
        mover::sim::synth_fill(1, id as u32, 0, &mut want);
        assert_eq!(store.committed[id].as_deref(), Some(&want[..]), "file {id}");
    }
    assert_eq!(r.sender.packets_retransmitted, 0);
    let s = r.outcome.unwrap();
    assert_eq!(s.files, sizes.len() as u64);
    assert_eq!(s.bytes, sizes.iter().sum::<u64>());
}

#[test]
fn empty_session_and_only_empty_files_complete() {
    for sizes in [vec![], vec![0, 0, 0]] {
        let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
        let r = checked(&sim, config(GBIT, 1472, Duration::from_millis(10)), sizes);
        assert_eq!(r.sender.packets_sent, 0);
    }
}

/// The headline case: 10 Gbit/s, 100 ms RTT, 1% random loss, 2 GiB, jumbo frames (as 10 GbE transfer
/// nodes run). Goodput is measured at the receiver: first transmission to last commit.
#[test]
fn ten_gbit_100ms_1pct_loss_2gib() {
    let rate = 10 * GBIT;
    let sim = SimConfig::path(rate, Duration::from_millis(100), 0.01);
    let r = checked(&sim, config(rate, 8972, Duration::from_millis(100)), vec![2 << 30]);
    eprintln!("{}", describe(&r));
    let floor = 0.9 * rate as f64 * (1.0 - 0.01);
    assert!(r.goodput_bps >= floor, "goodput {:.3} Gbit/s below {:.3}", r.goodput_bps / 1e9, floor / 1e9);
    let retx = r.sender.packets_retransmitted as f64 / r.sender.packets_sent as f64;
    assert!(retx <= 0.01 + 0.01, "retransmitted {:.3}% of packets", retx * 100.0);
}

/// 1 Gbit/s, 300 ms RTT, 5% loss in bursts (Gilbert-Elliott), plus reordering and duplication.
#[test]
fn one_gbit_300ms_burst_loss_reordering_duplication() {
    let rate = GBIT;
    let mut sim = SimConfig::path(rate, Duration::from_millis(300), 0.0);
    sim.seed = 7;
    // Bad state entered with p=0.01, left with p=0.2 (bursts of ~5 packets), 100% loss while bad:
    // stationary loss = 0.01 / (0.01 + 0.2) ~ 4.8%.
    sim.forward.burst = Some(BurstLoss { enter_bad: 0.01, leave_bad: 0.2, loss_in_bad: 1.0 });
    sim.forward.reorder = 0.01;
    sim.forward.reorder_delay = Duration::from_micros(500);
    sim.forward.jitter = Duration::from_micros(200);
    sim.forward.duplicate = 0.01;
    sim.reverse.loss = 0.05;
    let r = checked(&sim, config(rate, 1472, Duration::from_millis(300)), vec![256 << 20, 0, 12345, 20 << 20]);
    eprintln!("{}", describe(&r));
    let loss = r.forward.lost as f64 / r.forward.offered as f64;
    assert!(loss > 0.04, "burst loss {loss} lower than configured");
    assert!(r.forward.reordered > 0 && r.forward.duplicated > 0);
    // A copy the network made has its original's packet number: the replay window drops it (unless the
    // original was lost), before the block-level duplicate check that catches spurious retransmissions.
    let drops = &r.receiver.drops;
    assert!(drops.get(DropReason::Duplicate) + drops.get(DropReason::Replayed) >= r.forward.duplicated);
    assert!(drops.get(DropReason::Replayed) > 0);
    // Throughput does not collapse with RTT and loss: well over half the link even at 300 ms and ~5% loss.
    assert!(r.goodput_bps > 0.6 * rate as f64, "{}", describe(&r));
}

/// Every corrupted datagram is caught by its tag and its block resent: nothing corrupt reaches a file.
#[test]
fn corruption_is_detected_and_repaired() {
    let rate = GBIT;
    let mut sim = SimConfig::path(rate, Duration::from_millis(40), 0.0);
    sim.seed = 11;
    sim.forward.corrupt = 0.02;
    sim.reverse.corrupt = 0.02;
    let r = checked(&sim, config(rate, 1472, Duration::from_millis(40)), vec![32 << 20, 777]);
    eprintln!("{}", describe(&r));
    assert!(r.forward.corrupted > 100);
    // A flipped bit lands in the tag-covered body or in a header field (magic, version, type, session):
    // either way the datagram is dropped as invalid, never delivered.
    assert_eq!(r.receiver.drops.invalid(), r.forward.corrupted, "every corrupted data packet detected");
    assert_eq!(r.sender.drops.invalid(), r.reverse.corrupted, "every corrupted feedback detected");
    assert!(r.sender.packets_retransmitted >= r.forward.corrupted);
}

/// The AEAD ciphers under every impairment: each corrupted datagram fails authentication (the header is
/// associated data, the rest ciphertext), each network copy is refused by the replay window, and every
/// byte arrives decrypted and intact.
#[test]
fn aead_sessions_survive_loss_reordering_duplication_and_corruption() {
    for (cipher, seed) in [(Cipher::Aes256Gcm, 21), (Cipher::ChaCha20Poly1305, 22)] {
        let rate = GBIT;
        let mut sim = SimConfig::path(rate, Duration::from_millis(40), 0.01);
        sim.seed = seed;
        sim.forward.corrupt = 0.01;
        sim.reverse.corrupt = 0.01;
        sim.forward.reorder = 0.01;
        sim.forward.reorder_delay = Duration::from_micros(300);
        sim.forward.duplicate = 0.01;
        let mut cfg = config(rate, 1472, Duration::from_millis(40));
        cfg.cipher = cipher;
        cfg.key = mover::wire::SessionKey([seed as u8; mover::wire::KEY_LEN]);
        let r = checked(&sim, cfg, vec![24 << 20, 0, 4321]);
        eprintln!("{cipher}: {}", describe(&r));
        assert!(r.forward.corrupted > 50 && r.forward.duplicated > 50);
        // The link corrupts before it duplicates, so a copy of a corrupted packet is refused too.
        let invalid = r.receiver.drops.invalid();
        assert!(
            invalid >= r.forward.corrupted && invalid <= r.forward.corrupted + r.forward.duplicated,
            "{cipher}: every corrupted packet refused: {invalid} of {}",
            r.forward.corrupted
        );
        assert_eq!(r.sender.drops.invalid(), r.reverse.corrupted, "{cipher}: every corrupted feedback refused");
        assert!(r.receiver.drops.get(DropReason::Replayed) > 0, "{cipher}: network copies refused");
    }
}

/// A file above 4 GiB: 64-bit offsets end to end.
#[test]
fn file_above_four_gib() {
    let rate = 10 * GBIT;
    let sim = SimConfig::path(rate, Duration::from_millis(20), 0.001);
    let size = (4u64 << 30) + 123_457;
    let r = checked(&sim, config(rate, 8972, Duration::from_millis(20)), vec![size]);
    eprintln!("{}", describe(&r));
    assert_eq!(r.outcome.unwrap().bytes, size);
}

/// A block damaged after its packet was verified (a disk or a bug) fails the whole-file hash; the file is
/// sent again in a second round and only then committed.
#[test]
fn whole_file_mismatch_is_repaired_not_reported_as_success() {
    let sizes = vec![5 << 20, 1 << 20];
    let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    let mut store = MemStore::new(&sizes);
    store.corrupt_write_at = Some((0, 3_000_000));
    let mut src = SynthSource { seed: 1 };
    let (r, store) = run_transfer(&sim, config(GBIT, 1472, Duration::from_millis(10)), sizes.clone(), &mut src, store);
    let summary = r.outcome.expect("repaired transfer succeeds");
    assert_eq!(summary.repaired_files, 1);
    assert_eq!(r.sender.rounds, 2);
    assert_eq!(store.resets, 1);
    for (id, &size) in sizes.iter().enumerate() {
        let mut want = vec![0u8; size as usize];
        mover::sim::synth_fill(1, id as u32, 0, &mut want);
        assert_eq!(store.committed[id].as_deref(), Some(&want[..]), "file {id}");
    }
    assert_eq!(synth_hash(1, 0, sizes[0]), xxhash_rust::xxh3::xxh3_128(store.committed[0].as_ref().unwrap()));
}

/// A disk that fills fails the session with the error on both sides; nothing is committed.
#[test]
fn full_disk_fails_cleanly() {
    let sizes = vec![4 << 20];
    let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    let mut store = MemStore::new(&sizes);
    store.space_bytes = Some(1 << 20);
    let mut src = SynthSource { seed: 1 };
    let (r, store) = run_transfer(&sim, config(GBIT, 1472, Duration::from_millis(10)), sizes, &mut src, store);
    let err = r.outcome.expect_err("must fail");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(store.committed.iter().all(|c| c.is_none()));
}

/// A receiver that never answers: the sender gives up after its peer timeout instead of hanging.
#[test]
fn silent_receiver_times_out() {
    let mut sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    sim.forward.loss = 1.0;
    sim.reverse.loss = 1.0;
    let mut cfg = config(GBIT, 1472, Duration::from_millis(10));
    cfg.peer_timeout = Duration::from_secs(3);
    let mut src = SynthSource { seed: 1 };
    let (r, _) = run_transfer(&sim, cfg, vec![1 << 20], &mut src, MemStore::new(&[1 << 20]));
    let err = r.outcome.expect_err("must fail");
    assert!(err.contains("no word from the receiver"), "{err}");
}

/// A sender whose receiver stops acknowledging (keepalives only) gives up instead of waiting forever; a
/// receiver whose sender vanishes mid-transfer gives up too.
#[test]
fn stalled_sessions_fail_on_both_sides() {
    let mut sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.0);
    sim.forward.loss = 1.0; // no data arrives, feedback still flows
    let mut cfg = config(GBIT, 1472, Duration::from_millis(10));
    cfg.peer_timeout = Duration::from_secs(2);
    let mut src = SynthSource { seed: 1 };
    let (r, store) = run_transfer(&sim, cfg, vec![1 << 20], &mut src, MemStore::new(&[1 << 20]));
    let err = r.outcome.expect_err("must fail");
    assert!(err.contains("no block acknowledged") || err.contains("no word from the sender"), "{err}");
    assert!(store.committed.iter().all(|c| c.is_none()));
}

/// A sender that is descheduled now and then (a busy 2-core machine) on a clean path: the receiver's tail
/// rule NAKs what it has not seen during the pause, but nothing was lost, so nothing may be resent.
#[test]
fn sender_pauses_cause_no_spurious_retransmissions() {
    let rate = GBIT;
    let mut sim = SimConfig::path(rate, Duration::from_micros(400), 0.0);
    sim.sender_stalls = Some((Duration::from_millis(100), Duration::from_millis(15)));
    let r = checked(&sim, config(rate, 1472, Duration::from_micros(400)), vec![256 << 20]);
    eprintln!("{}", describe(&r));
    assert_eq!(r.sender.packets_retransmitted, 0, "{}", describe(&r));
}

/// A source whose retransmissions' bytes come a few polls after they were asked for (as the pipeline's
/// reader stage serves them), and a store whose verification read-backs finish a few `process` calls after
/// they were handed over (as the pipeline's writer stage does them): with loss and a damaged write, the
/// transfer still ends with every file identical and the damaged one repaired. The simulator's own source
/// and stores answer at once; this runs the waiting paths of the core and the session.
#[test]
fn deferred_repairs_and_read_backs_still_deliver_and_repair() {
    use mover::proto::{BlockSource, BlockStore, HashDone, HashJob};
    use std::collections::VecDeque;

    struct SlowRepairs {
        inner: SynthSource,
        /// (file, offset, polls left).
        asked: Vec<(u32, u64, u32)>,
        waits: u64,
    }
    impl BlockSource for SlowRepairs {
        fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.inner.read_block(file_id, offset, buf)
        }
        fn ready(&mut self, file_id: u32, offset: u64, _len: usize, first: bool) -> std::io::Result<bool> {
            if first {
                return Ok(true);
            }
            let Some(k) = self.asked.iter().position(|&(f, o, _)| (f, o) == (file_id, offset)) else {
                self.asked.push((file_id, offset, 2));
                self.waits += 1;
                return Ok(false);
            };
            if self.asked[k].2 > 0 {
                self.asked[k].2 -= 1;
                self.waits += 1;
                return Ok(false);
            }
            self.asked.swap_remove(k);
            Ok(true)
        }
    }

    struct DeferredStore {
        inner: MemStore,
        /// Jobs handed over, and the polls left before each finishes.
        out: VecDeque<(HashJob, u32)>,
        scratch: Vec<u8>,
        deferred: u64,
    }
    impl BlockStore for DeferredStore {
        fn write_block(&mut self, file_id: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.inner.write_block(file_id, offset, data)
        }
        fn hash_back(&mut self, job: HashJob, _scratch: &mut [u8]) -> Option<HashDone> {
            self.deferred += 1;
            self.out.push_back((job, 3));
            None
        }
        fn poll_hashed(&mut self) -> Option<HashDone> {
            let (_, left) = self.out.front_mut()?;
            if *left > 0 {
                *left -= 1;
                return None;
            }
            let (job, _) = self.out.pop_front().expect("front exists");
            Some(self.inner.hash_back(job, &mut self.scratch).expect("MemStore reads in place"))
        }
        fn commit(&mut self, file_id: u32) -> std::io::Result<()> {
            self.inner.commit(file_id)
        }
        fn reset(&mut self, file_id: u32) -> std::io::Result<()> {
            self.inner.reset(file_id)
        }
    }

    let sizes = vec![5 << 20, 1 << 20, 0, 3 << 20];
    let sim = SimConfig::path(GBIT, Duration::from_millis(10), 0.01);
    let mut inner = MemStore::new(&sizes);
    inner.corrupt_write_at = Some((0, 3_000_000));
    let store = DeferredStore { inner, out: VecDeque::new(), scratch: vec![0; 1 << 20], deferred: 0 };
    let mut src = SlowRepairs { inner: SynthSource { seed: 1 }, asked: Vec::new(), waits: 0 };
    let (r, store) = run_transfer(&sim, config(GBIT, 1472, Duration::from_millis(10)), sizes.clone(), &mut src, store);
    let summary = r.outcome.expect("the transfer succeeds");
    assert_eq!(summary.repaired_files, 1);
    assert_eq!(store.inner.resets, 1);
    assert!(src.waits > 0 && r.sender.packets_retransmitted > 0, "no retransmission waited for its bytes");
    assert!(store.deferred >= sizes.len() as u64, "every file's hash went out: {}", store.deferred);
    for (id, &size) in sizes.iter().enumerate() {
        let mut want = vec![0u8; size as usize];
        mover::sim::synth_fill(1, id as u32, 0, &mut want);
        assert_eq!(store.inner.committed[id].as_deref(), Some(&want[..]), "file {id}");
    }
}
