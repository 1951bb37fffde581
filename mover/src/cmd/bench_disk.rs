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
    /// Share of the file's pages that were in the page cache before the read (0 to 1; `mincore`).
    pub cached_before: f64,
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
            .f64("page_cache_before", self.cached_before)
            .bool("from_page_cache", self.from_page_cache())
            .finish()
    }

    /// Whether the number measured memory rather than the disk: a buffered read (or an O_DIRECT the file
    /// system refused) of a file that was mostly in the page cache already.
    pub fn from_page_cache(&self) -> bool {
        !self.direct && self.cached_before >= 0.5
    }

    /// What the number means and what to run next, in a sentence, when the page cache was involved.
    pub fn advice(&self, asked_direct: bool) -> Option<String> {
        let pct = self.cached_before * 100.0;
        let drop = "drop it first (as root: sync; echo 1 > /proc/sys/vm/drop_caches)";
        if asked_direct && !self.direct {
            return Some(format!(
                "note: this file system refused O_DIRECT (tmpfs does), so the read went through the page cache \
                 ({pct:.0}% of the file was cached before it): put the file on the disk you mean to measure"
            ));
        }
        if self.direct {
            return None;
        }
        Some(if self.from_page_cache() {
            format!(
                "note: {pct:.0}% of the file was in the page cache before the read: this measured memory, not the \
                 disk; for the disk run with --direct (O_DIRECT, as mover push reads), or {drop}"
            )
        } else {
            format!(
                "note: a buffered read of a file that was not cached ({pct:.0}%): the disk with the kernel's \
                 readahead; a second run reads from the page cache, so use --direct (as mover push reads) or {drop}"
            )
        })
    }
}

/// The share of `path`'s pages resident in the page cache (`mincore` over a read-only mapping); 0 for an
/// empty file or when it cannot be told.
pub fn cached_share(path: &std::path::Path) -> f64 {
    let Ok(file) = std::fs::File::open(path) else { return 0.0 };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0) as usize;
    if len == 0 {
        return 0.0;
    }
    use std::os::fd::AsRawFd;
    // Safety: a read-only mapping of an open file, only passed to mincore and unmapped below.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
    if map == libc::MAP_FAILED {
        return 0.0;
    }
    // Safety: sysconf has no preconditions.
    let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize;
    let mut resident = vec![0u8; len.div_ceil(page)];
    // Safety: `map` is a mapping of `len` bytes and `resident` has one byte per page of it.
    let ok = unsafe { libc::mincore(map, len, resident.as_mut_ptr()) } == 0;
    // Safety: unmapping what was mapped above.
    unsafe { libc::munmap(map, len) };
    if !ok {
        return 0.0;
    }
    resident.iter().filter(|&&b| b & 1 != 0).count() as f64 / resident.len() as f64
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
    // On stderr, so that --json's stdout stays one object.
    if let Some(advice) = report.advice(args.direct) {
        eprintln!("mover bench disk: {advice}");
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
    let cached_before = cached_share(&args.file);
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
    Ok(DiskReport {
        bytes: done_bytes,
        seconds,
        disk: reader.backend().name(),
        direct,
        block,
        qd: args.qd,
        cached_before,
    })
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
            for key in [
                "\"bytes\":",
                "\"seconds\":",
                "\"bytes_per_s\":",
                "\"disk\":",
                "\"direct\":",
                "\"block\":",
                "\"qd\":",
                "\"page_cache_before\":",
                "\"from_page_cache\":",
            ] {
                assert!(json.contains(key), "{json} lacks {key}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cached_file_is_said_to_be_read_from_the_page_cache() {
        let dir = std::env::temp_dir().join(format!("mover-bench-disk-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        // Just written: every page is in the page cache.
        std::fs::write(&file, vec![3u8; 4 << 20]).unwrap();
        assert!(cached_share(&file) > 0.9, "{}", cached_share(&file));
        let args = BenchDiskArgs { file: file.clone(), direct: false, block: 1 << 20, qd: 4, json: true };
        let r = measure(&args, BackendChoice::Force(DiskBackend::Pread)).unwrap();
        assert!(r.from_page_cache() && r.to_json().contains("\"from_page_cache\":true"), "{}", r.to_json());
        let advice = r.advice(false).unwrap();
        assert!(advice.contains("measured memory, not the disk") && advice.contains("--direct"), "{advice}");
        let cold = DiskReport { cached_before: 0.0, ..r.clone() };
        assert!(!cold.from_page_cache() && cold.advice(false).unwrap().contains("second run"));
        let refused = cold.advice(true).unwrap();
        assert!(refused.contains("refused O_DIRECT"), "{refused}");
        assert_eq!(DiskReport { direct: true, ..cold }.advice(true), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
