//! Files assembled from ranges that several sessions sent (`--shard`: a large file's ranges go to different
//! nodes, `files::shard`).
//!
//! A range is received like a file of its own, into its own partial (`.<name>~<offset>.piece.mover.part`,
//! with its own journal: resume works per range), and verified by its own hash. Once verified it is renamed
//! to a *done* name that carries the source's version (`.<name>~<offset>.<version>.done.mover.part`), so
//! ranges of another version of the file never mix with it. The session that finds every range of a version
//! done assembles the file: under an exclusive lock on the first range's done file it copies the other
//! ranges into it at their offsets (`copy_file_range`: a reflink on XFS and Btrfs, an in-kernel copy
//! elsewhere), applies the file's metadata and renames it to the final name, then removes the other ranges.
//! Each step can be repeated after a crash (the other ranges are removed only after the rename), and the
//! final name never holds anything but a whole file of verified ranges. Every name ends in `.mover.part`,
//! so the daemon's sweep of old partials removes ranges whose siblings never came.

use super::beneath::Dir;
use super::partial::partial_name;
use crate::wire::shard::{piece_bytes, Piece};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The partial name of the range at `offset` of the file named `name`.
pub fn piece_partial_name(name: &str, offset: u64) -> String {
    partial_name(&format!("{name}~{offset:016x}.piece"))
}

/// The name of the verified range at `offset` of version `version` of the file named `name`.
pub fn piece_done_name(name: &str, offset: u64, version: u64) -> String {
    partial_name(&format!("{name}~{offset:016x}.{version:016x}.done"))
}

/// The source version a range belongs to: its whole size, mtime, mode and manifest path. Ranges with equal
/// versions come from the same file as the sender saw it.
pub fn version_of(piece: Piece, mtime_s: i64, mtime_ns: u32, mode: u32, rel_path: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(&piece.file_size.to_be_bytes());
    h.update(&mtime_s.to_be_bytes());
    h.update(&mtime_ns.to_be_bytes());
    h.update(&mode.to_be_bytes());
    h.update(rel_path.as_bytes());
    h.digest()
}

/// Whether the range at `offset` of `version` is already verified in `dir`.
pub fn is_done(dir: &Dir, name: &str, offset: u64, version: u64) -> io::Result<bool> {
    match dir.stat(OsStr::new(&piece_done_name(name, offset, version))) {
        Ok(s) => Ok(s.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Assembles the file named `name` in `dir` if every range of `version` is done; returns whether it did.
/// `finish` applies the file's metadata (and makes it durable if asked) to the assembled file before it is
/// renamed to `name`; `replaceable` checks that `name` may be replaced. Another session assembling at the
/// same time waits for the lock and then finds nothing to do.
pub fn assemble(
    dir: &Dir,
    name: &str,
    piece: Piece,
    version: u64,
    replaceable: impl FnOnce() -> io::Result<()>,
    finish: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<bool> {
    let step = piece_bytes(piece.file_size);
    let first = piece_done_name(name, 0, version);
    let base = match dir.open(OsStr::new(&first), libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    lock_exclusive(&base)?;
    // Still the file under that name (not assembled and renamed by another session meanwhile)?
    use std::os::unix::fs::MetadataExt;
    let held = base.metadata()?;
    match dir.stat(OsStr::new(&first)) {
        Ok(s) if s.dev == held.dev() && s.ino == held.ino() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let offsets: Vec<u64> = (1..piece.count()).map(|k| k * step).collect();
    for &offset in &offsets {
        if !is_done(dir, name, offset, version)? {
            return Ok(false);
        }
    }
    for &offset in &offsets {
        let from = dir.open_regular(OsStr::new(&piece_done_name(name, offset, version)), 0)?;
        let len = step.min(piece.file_size - offset);
        copy_range(&from, &base, offset, len)?;
    }
    base.set_len(piece.file_size)?;
    finish(&base)?;
    replaceable()?;
    dir.rename(OsStr::new(&first), dir, OsStr::new(name), false)?;
    for &offset in &offsets {
        let _ = dir.unlink(OsStr::new(&piece_done_name(name, offset, version)), false);
    }
    Ok(true)
}

/// `flock(LOCK_EX)`, waiting: assembling takes as long as copying the ranges, and the waiter then finds the
/// work done.
fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // Safety: a valid descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Copies all of `from` (`len` bytes) into `to` at `offset`, in the kernel.
fn copy_range(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    let (mut src, mut dst) = (0i64, offset as i64);
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // Safety: valid descriptors and offsets the kernel advances.
        let n = unsafe { libc::copy_file_range(from.as_raw_fd(), &mut src, to.as_raw_fd(), &mut dst, chunk, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a verified range is shorter than it was"));
        }
        left -= n as u64;
    }
    Ok(())
}
