//! Per-block compression (`--compress`, PROTOCOL.md §4.9) in the simulator, with loss: text, random and
//! mixed files arrive identical under every setting; text goes compressed, random blocks (which would grow)
//! go raw; the compression ratio is what the wire carried.

use mover::proto::{BlockSource, Config};
use mover::sim::data::MemStore;
use mover::sim::harness::{run_transfer, SimConfig};
use mover::wire::Compression;
use std::time::Duration;

/// Files held in memory: what the sender reads and the receiver must end with.
struct Files(Vec<Vec<u8>>);

impl BlockSource for Files {
    fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let at = offset as usize;
        buf.copy_from_slice(&self.0[file_id as usize][at..at + buf.len()]);
        Ok(())
    }
}

/// FASTQ-like text: a header, a read, `+`, a quality string, with position-derived variety.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 400);
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut read = 0u64;
    while out.len() < len {
        read += 1;
        out.extend_from_slice(format!("@A00123:8:H7XYZ:2:1101:{}:{} 1:N:0\n", 1000 + read, next() % 30000).as_bytes());
        out.extend((0..150).map(|_| b"ACGT"[(next() % 4) as usize]));
        out.extend_from_slice(b"\n+\n");
        out.extend((0..150).map(|_| if next() % 8 == 0 { b':' } else { b'F' }));
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// One text file, one random, one mixed (text then random then text), and a tiny one.
fn files() -> Vec<Vec<u8>> {
    let mut mixed = text(300_000, 3);
    mixed.extend(random(200_000, 4));
    mixed.extend(text(250_001, 5));
    vec![text(2_000_000, 1), random(1_000_000, 2), mixed, b"@r\nACGT\n+\nFFFF\n".to_vec()]
}

/// Runs the files over a 200 Mbit/s, 20 ms path with `loss` under `compress`; returns (ratio, compressed
/// blocks, packets sent), having checked that every file arrived identical.
fn transfer(compress: Compression, loss: f64) -> (f64, u64, u64) {
    let data = files();
    let sizes: Vec<u64> = data.iter().map(|f| f.len() as u64).collect();
    let mut sim = SimConfig::path(200_000_000, Duration::from_millis(20), loss);
    sim.seed = 7;
    sim.compress = compress;
    let cfg = Config::new(0x51, 1472, 200_000_000);
    let mut src = Files(data.clone());
    let (r, store) = run_transfer(&sim, cfg, sizes.clone(), &mut src, MemStore::new(&sizes));
    let summary = r.outcome.unwrap_or_else(|e| panic!("{compress}: {e}"));
    assert_eq!(summary.files, data.len() as u64, "{compress}");
    for (i, f) in data.iter().enumerate() {
        assert_eq!(store.committed[i].as_deref(), Some(&f[..]), "{compress}: file {i} differs");
    }
    if loss > 0.0 {
        assert!(r.sender.packets_retransmitted > 0, "{compress}: the loss was repaired");
    }
    let s = &r.sender;
    // The receiver counts what the path delivered for new blocks, the sender everything it sent.
    assert!(r.receiver.wire_bytes_delivered <= s.wire_payload_bytes_sent);
    assert_eq!(r.receiver.bytes_delivered, sizes.iter().sum::<u64>(), "{compress}");
    (s.payload_bytes_sent as f64 / s.wire_payload_bytes_sent as f64, s.blocks_compressed, s.packets_sent)
}

#[test]
fn every_setting_round_trips_text_random_and_mixed_files_through_loss() {
    let (ratio, compressed, _) = transfer(Compression::None, 0.02);
    assert_eq!((ratio, compressed), (1.0, 0));
    for level in [1, 3, 19] {
        let (ratio, compressed, sent) = transfer(Compression::Zstd(level), 0.02);
        // Text is 2/3 of the bytes and compresses several times over; random blocks go raw.
        assert!(ratio > 1.8, "zstd:{level}: ratio {ratio:.2}");
        assert!(compressed > 0 && compressed < sent, "zstd:{level}: {compressed} of {sent} blocks compressed");
    }
    // auto's choices depend on the real clock; its results must not.
    transfer(Compression::Auto, 0.02);
}

#[test]
fn blocks_that_would_grow_go_raw() {
    let data = [random(500_000, 9)];
    let sizes = vec![data[0].len() as u64];
    let mut sim = SimConfig::path(1_000_000_000, Duration::from_millis(2), 0.0);
    sim.compress = Compression::Zstd(19);
    let mut src = Files(data.to_vec());
    let (r, store) =
        run_transfer(&sim, Config::new(0x52, 1472, 1_000_000_000), sizes.clone(), &mut src, MemStore::new(&sizes));
    r.outcome.expect("transfer");
    assert_eq!(store.committed[0].as_deref(), Some(&data[0][..]));
    assert_eq!(r.sender.blocks_compressed, 0, "no random block shrinks");
    assert_eq!(r.sender.wire_payload_bytes_sent, r.sender.payload_bytes_sent);
}

/// Resume under compression: the receiver holds the first part of a text file (as a killed session left
/// it); the compressed session sends only the rest, hashes the held bytes from the store as they are, and
/// the file is committed identical.
#[test]
fn a_compressed_session_resumes_from_held_blocks() {
    let data = [text(3_000_000, 11)];
    let sizes = vec![data[0].len() as u64];
    let cfg = Config::new(0x53, 1472, 200_000_000);
    let held = 1000 * cfg.block_payload as u64;
    let mut store = MemStore::new(&sizes);
    store.temp[0][..held as usize].copy_from_slice(&data[0][..held as usize]);
    let mut plan = mover::proto::StartPlan::default();
    plan.add_have(0, vec![(0, held)]);
    let mut sim = SimConfig::path(200_000_000, Duration::from_millis(20), 0.01);
    sim.compress = Compression::Zstd(1);
    let mut src = Files(data.to_vec());
    let (r, store) = mover::sim::harness::run_transfer_from(&sim, cfg, sizes.clone(), &mut src, store, &plan);
    r.outcome.expect("transfer");
    assert_eq!(store.committed[0].as_deref(), Some(&data[0][..]));
    assert_eq!(r.sender.resumed_bytes, held);
    assert_eq!(r.sender.new_payload_bytes_sent, sizes[0] - held, "only the rest is sent");
    assert!(r.sender.blocks_compressed > 0);
    assert!(r.sender.wire_payload_bytes_sent * 2 < sizes[0] - held, "the rest went compressed");
}
