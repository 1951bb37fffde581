//! `mover doctor`: the measurements, each with the engine a transfer uses: the disk writer
//! ([`crate::disk::DiskWriter`]) and reader (`bench disk`'s [`super::bench_disk::measure`]) on a temporary
//! file in `--dir`, the datagram cipher on one core (`bench cipher`), and the UDP socket path over loopback
//! (`bench net`'s self-test). Short runs: the whole set takes a few seconds.
//!
//! All rates are in bits per second (`*_bps`, as everywhere in mover's JSON).

use super::bench_cipher::{self, BenchCipherArgs};
use super::bench_disk::{self, BenchDiskArgs};
use super::bench_net::{self, BenchNetArgs};
use crate::disk::{BackendChoice, BufferPool, DiskWriter, WriteReq};
use crate::wire::Cipher;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bytes per disk request, as the pipeline's chunks.
const BLOCK: usize = 1 << 20;
/// Requests in flight.
const QUEUE_DEPTH: u32 = 8;

/// One disk pass: its rate and how it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskPass {
    /// Bits per second.
    pub bps: f64,
    /// "io_uring" or "pread"/"pwrite".
    pub engine: &'static str,
    /// O_DIRECT was in effect.
    pub direct: bool,
}

/// The disk measurements of one temporary file.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskSpeeds {
    /// Bytes written and read.
    pub bytes: u64,
    /// Writing the file (through to the disk: the time includes `fdatasync`).
    pub write: DiskPass,
    /// Reading it back.
    pub read: DiskPass,
    /// Share (0..=1) of the file that was in the page cache just before the read: near 1 means the read
    /// measured memory, not the disk.
    pub read_cached_fraction: f64,
    /// The directory measured.
    pub dir: PathBuf,
}

/// Removes the temporary file however the measurement ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Writes `bytes` (rounded down to whole blocks, at least one) to a new file in `dir` with the writer
/// engine, then drops it from the page cache and reads it back with the reader engine; the file is removed.
pub fn disk(dir: &Path, bytes: u64) -> Result<DiskSpeeds, String> {
    let blocks = (bytes / BLOCK as u64).max(1);
    let bytes = blocks * BLOCK as u64;
    let path = dir.join(format!(".mover-doctor-{}.tmp", std::process::id()));
    let (file, direct) = create(&path).map_err(|e| format!("creating a test file in '{}': {e}", dir.display()))?;
    let _cleanup = TempFile(path.clone());
    let write = write_blocks(&file, blocks, direct)?;
    // The written pages may sit in the page cache (buffered writes); drop them, so the read meets the disk.
    // Safety: fadvise on our own descriptor; it only affects this file's cached pages.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(file);
    let read_cached_fraction = cached_fraction(&path).unwrap_or(0.0);
    let args =
        BenchDiskArgs { file: path.clone(), direct: true, block: BLOCK as u64, qd: QUEUE_DEPTH * 2, json: false };
    let r = bench_disk::measure(&args, BackendChoice::from_env()?)?;
    let read = DiskPass { bps: r.bytes_per_s() * 8.0, engine: r.disk, direct: r.direct };
    Ok(DiskSpeeds { bytes, write, read, read_cached_fraction, dir: dir.to_path_buf() })
}

/// A new file, with O_DIRECT where the file system takes it (tmpfs does not).
fn create(path: &Path) -> io::Result<(File, bool)> {
    let mut o = OpenOptions::new();
    o.write(true).read(true).create_new(true);
    match o.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => o.open(path).map(|f| (f, false)),
        Err(e) => Err(e),
    }
}

/// Writes `blocks` blocks of non-constant bytes through a [`DiskWriter`], then `fdatasync`.
fn write_blocks(file: &File, blocks: u64, direct: bool) -> Result<DiskPass, String> {
    let pool = BufferPool::new(QUEUE_DEPTH, BLOCK);
    let region = pool.region().clone();
    let seed = crate::random::random_bytes::<32>().map_err(|e| e.to_string())?;
    for b in 0..QUEUE_DEPTH {
        // Safety: no write is in flight yet, so nothing else touches the buffers.
        let buf = unsafe { region.bytes_mut(b) };
        for (i, chunk) in buf.chunks_mut(32).enumerate() {
            chunk.copy_from_slice(&seed);
            chunk[0] ^= i as u8 ^ b as u8;
        }
    }
    let mut writer = DiskWriter::new(region, BackendChoice::from_env()?, QUEUE_DEPTH).map_err(|e| e.to_string())?;
    let mut free: Vec<u32> = (0..QUEUE_DEPTH).collect();
    let (mut next, mut done) = (0u64, 0u64);
    let fd = file.as_raw_fd();
    let start = Instant::now();
    while done < blocks {
        while next < blocks {
            let Some(&buf) = free.last() else { break };
            let req = WriteReq { req_id: next, fd, offset: next * BLOCK as u64, buf, len: BLOCK as u32 };
            if writer.submit(req).is_err() {
                break;
            }
            free.pop();
            next += 1;
        }
        let Some(c) = writer.wait_complete().map_err(|e| e.to_string())? else { break };
        if let Err(errno) = c.result {
            return Err(format!("writing the test file: {}", io::Error::from_raw_os_error(errno)));
        }
        free.push(c.buf);
        done += 1;
    }
    file.sync_data().map_err(|e| format!("fdatasync of the test file: {e}"))?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let engine = match writer.backend() {
        crate::disk::DiskBackend::IoUring => "io_uring",
        _ => "pwrite",
    };
    Ok(DiskPass { bps: (blocks * BLOCK as u64) as f64 * 8.0 / seconds, engine, direct })
}

/// The share of `path`'s pages resident in the page cache (`mincore` over a mapping of it).
pub fn cached_fraction(path: &Path) -> io::Result<f64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0.0);
    }
    // Safety: a private read-only mapping of an open file, unmapped below; mincore writes one byte per page
    // into `vec`, which has that many.
    unsafe {
        let map = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0);
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
        let pages = len.div_ceil(page);
        let mut vec = vec![0u8; pages];
        let rc = libc::mincore(map, len, vec.as_mut_ptr());
        let err = io::Error::last_os_error();
        libc::munmap(map, len);
        if rc != 0 {
            return Err(err);
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as f64 / pages as f64)
    }
}

/// The default cipher's speed on one core: (seal, open) in bits per second.
pub fn cipher() -> Result<(Cipher, f64, f64), String> {
    let args = BenchCipherArgs { datagram: 1472, count: 20_000, passes: 3, json: false };
    let speeds = bench_cipher::measure(&args)?;
    let c = Cipher::default();
    let s = speeds.iter().find(|s| s.cipher == c).ok_or("the default cipher was not measured")?;
    Ok((c, s.seal_bytes_per_s * 8.0, s.open_bytes_per_s * 8.0))
}

/// UDP over loopback for `seconds`, 1472-byte datagrams without GSO/GRO (the per-datagram cost a NIC path
/// pays): (received bits per second, loss fraction).
pub fn udp(seconds: f64) -> Result<(f64, f64), String> {
    let args =
        BenchNetArgs { listen: None, to: None, size: 1472, seconds, rate: None, no_gso: true, json: false, plot: None };
    let (_, rx) = bench_net::self_test(&args)?;
    if rx.seconds <= 0.0 || rx.bytes == 0 {
        return Err("no datagram crossed loopback".into());
    }
    Ok((rx.bytes as f64 * 8.0 / rx.seconds, rx.loss()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_pass_writes_reads_and_removes_its_file() {
        let dir = crate::testing::TempDir::new("doctor-disk");
        let d = match disk(dir.path(), 4 << 20) {
            Ok(d) => d,
            Err(e) if e.contains("io_uring") => {
                crate::testing::skip_or_fail("the_disk_pass_writes_reads_and_removes_its_file", &e);
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(d.bytes, 4 << 20);
        assert!(d.write.bps > 0.0 && d.read.bps > 0.0, "{d:?}");
        assert!((0.0..=1.0).contains(&d.read_cached_fraction));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "the test file is removed");
    }

    #[test]
    fn a_file_just_written_through_the_cache_is_seen_as_cached() {
        let dir = crate::testing::TempDir::new("doctor-mincore");
        let f = dir.path().join("f");
        fs::write(&f, vec![1u8; 1 << 20]).unwrap();
        assert!(cached_fraction(&f).unwrap() > 0.9);
    }
}
