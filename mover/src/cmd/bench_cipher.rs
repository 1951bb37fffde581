//! `mover bench cipher`: how fast one core seals and opens datagrams with each `--cipher`, the cost the
//! packetizer (sealing) and the reassembly stage (opening) pay per byte (docs/decisions/0007-datagram-aead.md).
//!
//! Each cipher seals and then opens the same set of datagrams (distinct packet numbers, as on the wire); the
//! clock runs over the whole set, several passes, the best pass reported (the others saw other processes).

use crate::json::JsonObject;
use crate::wire::{Cipher, CommonHeader, PacketType, ReplayWindow, Role, Sealer};
use std::time::Instant;

/// Arguments of `mover bench cipher`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchCipherArgs {
    /// UDP payload bytes per datagram (1472 fits MTU 1500, 8972 a 9000 jumbo frame)
    #[arg(long, default_value_t = 1472)]
    pub datagram: usize,
    /// Datagrams per pass
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Passes per cipher (the best is reported)
    #[arg(long, default_value_t = 5)]
    pub passes: u32,
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// One cipher's best pass.
#[derive(Debug, Clone, PartialEq)]
pub struct CipherSpeed {
    /// The cipher.
    pub cipher: Cipher,
    /// Datagram bytes sealed per second on one core.
    pub seal_bytes_per_s: f64,
    /// Datagram bytes opened (tag checked, body decrypted, replay window) per second on one core.
    pub open_bytes_per_s: f64,
}

/// Runs the benchmark and prints its table (or JSON).
pub fn run(args: &BenchCipherArgs) -> Result<(), String> {
    let speeds = measure(args)?;
    if args.json {
        let j = JsonObject::new().u64("datagram_bytes", args.datagram as u64).array(
            "ciphers",
            speeds.iter().map(|s| {
                JsonObject::new()
                    .str("cipher", s.cipher.name())
                    .f64("seal_bytes_per_s", s.seal_bytes_per_s)
                    .f64("open_bytes_per_s", s.open_bytes_per_s)
            }),
        );
        println!("{}", j.finish());
    } else {
        println!("one core, {}-byte datagrams (best of {} passes of {}):", args.datagram, args.passes, args.count);
        for s in &speeds {
            println!(
                "  {:<17} seal {:>6.2} GB/s ({:>6.1} Gbit/s)   open {:>6.2} GB/s ({:>6.1} Gbit/s)",
                s.cipher.name(),
                s.seal_bytes_per_s / 1e9,
                s.seal_bytes_per_s * 8.0 / 1e9,
                s.open_bytes_per_s / 1e9,
                s.open_bytes_per_s * 8.0 / 1e9
            );
        }
    }
    Ok(())
}

/// Measures every cipher.
pub fn measure(args: &BenchCipherArgs) -> Result<Vec<CipherSpeed>, String> {
    if !(64..=65_507).contains(&args.datagram) || args.count == 0 || args.passes == 0 {
        return Err("--datagram must be 64..=65507, --count and --passes at least 1".into());
    }
    let key = crate::random::random_bytes::<{ crate::wire::KEY_LEN }>()
        .map_err(|e| format!("getrandom for a session key failed: {e}"))?;
    let mut speeds = Vec::new();
    for cipher in Cipher::ALL {
        let mut tx = Sealer::new(cipher, &key, 1, Role::Sender);
        let mut rx = Sealer::new(cipher, &key, 1, Role::Receiver);
        let mut bufs: Vec<Vec<u8>> = vec![vec![0x5a; args.datagram]; args.count];
        let (mut best_seal, mut best_open) = (f64::INFINITY, f64::INFINITY);
        let mut pn = 0u64;
        for _ in 0..args.passes {
            let started = Instant::now();
            for b in bufs.iter_mut() {
                CommonHeader { packet_type: PacketType::Data, session_id: 1, packet_number: pn }.emit(b);
                pn += 1;
                tx.seal(b);
            }
            best_seal = best_seal.min(started.elapsed().as_secs_f64());
            let mut window = ReplayWindow::new();
            let started = Instant::now();
            for b in bufs.iter_mut() {
                rx.open(b).map_err(|e| format!("{cipher}: a sealed datagram did not open: {e:?}"))?;
                let h = CommonHeader::parse(b).map_err(|e| format!("{e:?}"))?;
                window.check_and_mark(h.packet_number).map_err(|e| format!("{e:?}"))?;
            }
            best_open = best_open.min(started.elapsed().as_secs_f64());
        }
        let bytes = (args.datagram * args.count) as f64;
        speeds.push(CipherSpeed {
            cipher,
            seal_bytes_per_s: bytes / best_seal.max(1e-9),
            open_bytes_per_s: bytes / best_open.max(1e-9),
        });
    }
    Ok(speeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cipher_is_measured_and_bad_arguments_are_refused() {
        let args = BenchCipherArgs { datagram: 1472, count: 50, passes: 1, json: false };
        let speeds = measure(&args).unwrap();
        assert_eq!(speeds.iter().map(|s| s.cipher).collect::<Vec<_>>(), Cipher::ALL);
        assert!(speeds.iter().all(|s| s.seal_bytes_per_s > 0.0 && s.open_bytes_per_s > 0.0));
        assert!(measure(&BenchCipherArgs { datagram: 10, ..args.clone() }).is_err());
        assert!(measure(&BenchCipherArgs { count: 0, ..args }).is_err());
    }
}
