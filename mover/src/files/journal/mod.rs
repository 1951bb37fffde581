//! The receiver's resume journal: a crash-safe, append-only record of the byte ranges of one temporary file
//! that were written, made durable and hashed, so that a rerun sends only what is missing (issue 15).
//!
//! The journal lives next to the temporary file ([`journal_path_for`]). It is *advisory*: the whole-file
//! hash still decides whether a file is done. A journal that is torn at its end loses only its last record;
//! a journal that is corrupt anywhere else, or that belongs to another source (size, mtime, mode or path
//! changed), is not trusted at all ([`JournalError`]), and the caller starts the file over. Even a trusted
//! journal can be re-checked against the data file with [`verify_ranges`], which keeps only the ranges whose
//! bytes still hash to what was journaled (a power cut that lost data blocks cannot make a wrong byte pass).
//!
//! # Format (version 1; docs/decisions/0009-resume-journal.md)
//!
//! A sequence of records, every integer big-endian (as on the wire, PROTOCOL.md "Byte order"):
//!
//! ```text
//! record (68 bytes for the header, 44 for a range):
//!   0   u16  record_len   whole record, these two bytes and the checksum included: 68 or 44, nothing else
//!   2   u8   kind         1 = header, 2 = range
//!   3   u8   reserved     0
//!   4   u64  seq          0 for the header, then 1, 2, 3, ... with no gap
//!  12   ...  body         48 bytes (header) or 24 bytes (range)
//! len-8 u64  checksum     xxh3-64 of bytes [0, len-8) of this record
//!
//! header body (the first record, and only the first):
//!   0   [u8; 8] magic     "MOVERJNL"
//!   8   u16  version      1
//!  10   u16  reserved     0
//!  12   u32  block_size   the transfer's block size when the journal was written (> 0)
//!  16   u64  size         the source's size in bytes
//!  24   i64  mtime_ns     the source's mtime, nanoseconds since the Unix epoch
//!  32   u32  mode         the source's st_mode
//!  36   u32  reserved     0
//!  40   u64  path_hash    xxh3-64 of the manifest entry's relative path (FileIdentity::path_hash)
//!
//! range body (every later record):
//!   0   u64  offset       a multiple of block_size
//!   8   u64  len          > 0; a multiple of block_size unless the range ends at `size`
//!  16   u64  xxh3         xxh3-64 of the bytes [offset, offset+len) of the file
//! ```
//!
//! Reading rules ([`load`], [`parse`]), in order, at each record boundary:
//! 1. the rest of the journal is empty: done; the rest is non-empty but all zero bytes (a file system that
//!    extended the file before the data landed): a torn tail, dropped;
//! 2. fewer than 2 bytes, or fewer than `record_len` bytes, remain: a torn tail (a crash mid-append), dropped;
//!    so is a whole last record with a bad checksum whose last byte is zero and that is followed by nothing
//!    but zeros (the append's last bytes never landed): dropping a record never makes a wrong byte pass;
//! 3. otherwise any defect refuses the whole journal: a `record_len` other than 44 or 68, a bad checksum, a
//!    kind that does not match the length, a non-zero reserved field, a sequence number out of order, a
//!    second header, a bad magic or version, an identity that differs from the source's, a range that is
//!    empty, outside the file, not aligned to the block size, or overlapping another range, or more than
//!    [`MAX_RANGES`] ranges.
//!
//! Ranges need not be in offset order (blocks arrive out of order); [`Resume::ranges`] is sorted.
//!
//! # Use (on the receiver, once per file)
//!
//! [`load`] the journal for the source's [`FileIdentity`]; on `Ok`, [`verify_ranges`] against the partial
//! file, [`ranges_on_grid`] for the current block size, [`missing_ranges`] on those (what to ask the sender
//! for) and [`JournalWriter::resume`] with them; on any error, [`JournalWriter::create`] and send the whole
//! file. Then [`JournalWriter::record`] each completed write, [`JournalWriter::flush`] at the end, and
//! remove the journal once the file is committed.
//!
//! # Durability order
//!
//! [`JournalWriter`] journals a range only after `fdatasync` of the data file returned, then appends the
//! records and `fdatasync`s the journal; so a journaled range's bytes were on disk before the record was.
//! The whole-file hash would make a weaker order *safe* (a lost block fails the file), but not *cheap*: one
//! lost block would cost the whole file again, so the order is kept, at two `fdatasync`s per step.

mod error;
mod format;
#[doc(hidden)]
pub mod fuzz;
mod missing;
mod reader;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{Corruption, IdentityField, JournalError};
pub use format::{HEADER_RECORD_LEN, MAGIC, RANGE_RECORD_LEN, VERSION};
pub use missing::{missing_ranges, Missing};
pub use reader::{load, load_at, parse, MAX_JOURNAL_BYTES};
pub use verify::verify_ranges;
pub use writer::{ranges_on_grid, JournalConfig, JournalWriter, SyncData};

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most ranges one journal may hold. The writer stops journaling there (later ranges are simply sent again
/// on a rerun), and the reader refuses a longer journal, so loading one costs at most [`MAX_JOURNAL_BYTES`].
pub const MAX_RANGES: u64 = 1 << 18;

/// What identifies the source file a journal was written for. A journal whose identity differs from the
/// source's current one is never applied: the source changed (or it is another file) since the partial
/// was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// The source's size in bytes.
    pub size: u64,
    /// The source's modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// The source's `st_mode` (a `cp` over the source that keeps size and mtime may still change it).
    pub mode: u32,
    /// [`FileIdentity::path_hash`] of the manifest entry's relative path, so that a journal left next to
    /// another file's temporary file is refused.
    pub path_hash: u64,
}

impl FileIdentity {
    /// The identity of a source from its metadata (as the sender reports it) and its relative path.
    pub fn of(meta: &std::fs::Metadata, rel_path: &[u8]) -> FileIdentity {
        let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let mtime_ns = ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        FileIdentity { size: meta.len(), mtime_ns, mode: meta.mode(), path_hash: FileIdentity::path_hash(rel_path) }
    }

    /// xxh3-64 of a relative path's bytes.
    pub fn path_hash(rel_path: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(rel_path)
    }
}

/// The journal's first record: the source's identity and the block size the ranges are aligned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalHeader {
    /// The source the journal belongs to.
    pub identity: FileIdentity,
    /// Block size of the transfer that wrote the journal (> 0); every range is aligned to it.
    pub block_size: u32,
}

/// One journaled range of the data file and the xxh3-64 of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalRange {
    /// First byte.
    pub offset: u64,
    /// Length in bytes (> 0).
    pub len: u64,
    /// xxh3-64 of the bytes `[offset, offset + len)`.
    pub xxh3: u64,
}

impl JournalRange {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// What a journal says can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The header (its identity equals the expected one).
    pub header: JournalHeader,
    /// The journaled ranges, sorted by offset, non-overlapping, inside the file, aligned to the block size.
    pub ranges: Vec<JournalRange>,
    /// Whether a torn final record (a crash mid-append) was dropped.
    pub torn_tail: bool,
    /// Bytes of the journal up to the end of its last whole record.
    pub valid_len: u64,
}

impl Resume {
    /// Bytes covered by the ranges.
    pub fn journaled_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.len).sum()
    }
}

/// Where the journal of the temporary file `data_path` lives: next to it, its name plus `.journal`.
pub fn journal_path_for(data_path: &Path) -> PathBuf {
    PathBuf::from(with_suffix(data_path.as_os_str(), ".journal"))
}

/// `name` with `suffix` appended (a journal's name from its partial's, a rewrite's from its journal's).
pub fn with_suffix(name: &std::ffi::OsStr, suffix: &str) -> std::ffi::OsString {
    let mut s = name.to_owned();
    s.push(suffix);
    s
}

/// A journal's name as errors show it: its file name only (a daemon shows errors to clients, so no
/// directory is named).
fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
