//! `mover bench disk`: one file read end to end through the reader engine alone ([`crate::disk`]), to compare
//! with `fio` on the same file (`benches/run-disk.sh`).
//!
//! The backend follows `MOVER_DISK` (`io_uring`, `pread`, or unset: io_uring with a pread fallback).
//! Blocks are consumed in request order (through [`InOrder`], as the sender pipeline will) and their
//! buffers released at once; the clock runs from the first submission to the last completion.

use std::path::PathBuf;
use std::time::Instant;

use crate::disk::{BackendChoice, DiskReader, InOrder, ReadReq, ReaderConfig};
use crate::json::JsonObject;
use crate::rate::{format_bytes, parse_size_bytes};

/// Arguments of `mover bench disk`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchDiskArgs {
    /// The file to read
    #[arg(long)]
    pub file: PathBuf,
    /// Bypass the page cache (O_DIRECT), if the file system allows it
    #[arg(long)]
    pub direct: bool,
    /// Bytes per read (a multiple of 4 KiB; binary suffixes: 256K, 1M)
    #[arg(long, default_value = "1M", value_parser = parse_size_bytes)]
    pub block: u64,
    /// Reads in flight
    #[arg(long, default_value_t = 16)]
    pub qd: u32,
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskReport {
    /// Bytes read (the file's size).
    pub bytes: u64,
    /// From the first submission to the last completion.
    pub seconds: f64,
    /// Backend used: "io_uring" or "pread".
    pub disk: &'static str,
    /// O_DIRECT was in effect.
    pub direct: bool,
    /// Bytes per read.
    pub block: u64,
    /// Reads in flight at most.
    pub qd: u32,
}

impl DiskReport {
    /// Throughput.
    pub fn bytes_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The `--json` object.
    pub fn to_json(&self) -> String {
        JsonObject::new()
            .u64("bytes", self.bytes)
            .f64("seconds", self.seconds)
            .f64("bytes_per_s", self.bytes_per_s())
            .str("disk", self.disk)
            .bool("direct", self.direct)
            .u64("block", self.block)
            .u64("qd", u64::from(self.qd))
            .finish()
    }
}

/// Runs the benchmark and prints the result.
pub fn run(args: &BenchDiskArgs) -> Result<(), String> {
    let report = measure(args, BackendChoice::from_env()?)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        let bps = report.bytes_per_s();
        println!(
            "read {} in {:.3} s: {:.0} MB/s ({:.2} GiB/s), {}, {}, block {}, qd {}",
            format_bytes(report.bytes),
            report.seconds,
            bps / 1e6,
            bps / (1u64 << 30) as f64,
            report.disk,
            if report.direct { "O_DIRECT" } else { "buffered" },
            format_bytes(report.block),
            report.qd
        );
    }
    Ok(())
}

/// Reads `args.file` once through a reader with `backend`.
pub fn measure(args: &BenchDiskArgs, backend: BackendChoice) -> Result<DiskReport, String> {
    if args.block == 0 || args.block % 4096 != 0 || args.block > 1 << 30 {
        return Err(format!("--block {} must be a multiple of 4 KiB, at most 1 GiB", args.block));
    }
    if !(1..=4096).contains(&args.qd) {
        return Err(format!("--qd {} must be in 1..=4096", args.qd));
    }
    let block = args.block;
    let size = std::fs::metadata(&args.file).map_err(|e| format!("'{}': {e}", args.file.display()))?.len();
    let mut config = ReaderConfig::new(backend, args.qd, block as usize);
    // Twice the queue depth (the default): blocks that complete ahead of an earlier one wait in `InOrder`
    // holding their buffers, and with only `qd` buffers one slow read would drain the queue behind it.
    config.max_open_files = 1;
    let mut reader = DiskReader::new(&config).map_err(|e| e.to_string())?;
    let file = reader.open(&args.file, args.direct).map_err(|e| e.to_string())?;
    let mut order = InOrder::new(config.buffers as usize, 0);
    let (mut next_id, mut next_offset, mut done_bytes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    loop {
        while next_offset < size {
            let len = (size - next_offset).min(block) as u32;
            if reader.submit(ReadReq { req_id: next_id, file, offset: next_offset, len }).is_err() {
                break;
            }
            next_id += 1;
            next_offset += u64::from(len);
        }
        let Some(c) = reader.wait_complete().map_err(|e| e.to_string())? else { break };
        order.insert(c);
        while let Some(c) = order.pop() {
            let want = (size - c.req_id * block).min(block);
            let got = c.result.as_ref().map_err(|e| e.to_string())?;
            if *got as u64 != want {
                return Err(format!(
                    "'{}' shrank while being read ({got} of {want} bytes at offset {})",
                    args.file.display(),
                    c.req_id * block
                ));
            }
            done_bytes += want;
            reader.release(c.buf);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let direct = reader.is_direct(file);
    reader.close(file).map_err(|e| e.to_string())?;
    Ok(DiskReport { bytes: done_bytes, seconds, disk: reader.backend().name(), direct, block, qd: args.qd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::DiskBackend;

    #[test]
    fn bench_disk_reads_the_whole_file_with_both_backends() {
        let dir = std::env::temp_dir().join(format!("mover-bench-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, vec![7u8; (3 << 20) + 5]).unwrap();
        for (backend, direct) in [(DiskBackend::IoUring, true), (DiskBackend::Pread, false)] {
            let args = BenchDiskArgs { file: file.clone(), direct, block: 1 << 20, qd: 4, json: true };
            let r = match measure(&args, BackendChoice::Force(backend)) {
                Ok(r) => r,
                Err(e) if backend == DiskBackend::IoUring => {
                    let half = "bench_disk_reads_the_whole_file_with_both_backends (its io_uring half)";
                    crate::testing::skip_or_fail(half, &format!("io_uring unavailable: {e}"));
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(r.bytes, (3 << 20) + 5);
            assert_eq!((r.disk, r.direct), (backend.name(), direct));
            let json = r.to_json();
            for key in
                ["\"bytes\":", "\"seconds\":", "\"bytes_per_s\":", "\"disk\":", "\"direct\":", "\"block\":", "\"qd\":"]
            {
                assert!(json.contains(key), "{json} lacks {key}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
