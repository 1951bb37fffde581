//! Reading a journal: which ranges can be trusted, or why none can.

use super::format::{next_record, Next, Record, HEADER_RECORD_LEN, RANGE_RECORD_LEN};
use super::{
    display_name, Corruption, FileIdentity, IdentityField, JournalError, JournalHeader, JournalRange, Resume,
    MAX_RANGES,
};
use crate::files::beneath::Dir;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Longest journal [`load`] reads: a header, [`MAX_RANGES`] ranges, and 1 MiB of torn or zero tail (a file
/// system may show a crashed append as zeros up to a block boundary).
pub const MAX_JOURNAL_BYTES: u64 = HEADER_RECORD_LEN as u64 + MAX_RANGES * RANGE_RECORD_LEN as u64 + (1 << 20);

/// Reads the journal at `path` and returns what it lets the receiver trust for the source `expected`.
///
/// Memory is bounded by [`MAX_JOURNAL_BYTES`]. A missing journal is an [`JournalError::Io`] for which
/// [`JournalError::is_not_found`] holds.
pub fn load(path: &Path, expected: &FileIdentity) -> Result<Resume, JournalError> {
    let journal = display_name(path);
    let file = File::open(path).map_err(|error| JournalError::Io { journal: journal.clone(), op: "open", error })?;
    load_file(file, journal, expected)
}

/// [`load`] of the journal `name` in `dir`, opened by descriptor beneath the receiver's root (never through
/// a symlink, [`crate::files::beneath`]).
pub fn load_at(dir: &Dir, name: &OsStr, expected: &FileIdentity) -> Result<Resume, JournalError> {
    let journal = name.to_string_lossy().into_owned();
    let file = dir.open(name, libc::O_RDONLY | libc::O_NONBLOCK, 0).map_err(|error| JournalError::Io {
        journal: journal.clone(),
        op: "open",
        error,
    })?;
    load_file(file, journal, expected)
}

fn load_file(file: File, journal: String, expected: &FileIdentity) -> Result<Resume, JournalError> {
    let io = |op, error| JournalError::Io { journal: journal.clone(), op, error };
    let bytes = file.metadata().map_err(|e| io("stat", e))?.len();
    if bytes > MAX_JOURNAL_BYTES {
        return Err(JournalError::TooLarge { journal, bytes });
    }
    let mut buf = Vec::with_capacity(bytes as usize);
    // `take` keeps the bound even if the journal grows between the stat and the read.
    file.take(MAX_JOURNAL_BYTES + 1).read_to_end(&mut buf).map_err(|e| io("read", e))?;
    if buf.len() as u64 > MAX_JOURNAL_BYTES {
        return Err(JournalError::TooLarge { journal, bytes: buf.len() as u64 });
    }
    parse(&buf, &journal, expected)
}

/// [`load`] on a journal already in memory; `journal` is the name errors show.
pub fn parse(bytes: &[u8], journal: &str, expected: &FileIdentity) -> Result<Resume, JournalError> {
    let corrupt = |at: usize, why| JournalError::Corrupt { journal: journal.to_owned(), at: at as u64, why };
    let mut header: Option<JournalHeader> = None;
    let capacity = (bytes.len() / RANGE_RECORD_LEN).min(MAX_RANGES as usize);
    let mut ranges: Vec<JournalRange> = Vec::with_capacity(capacity);
    let mut pos = 0usize;
    let mut seq_expected = 0u64;
    let mut torn_tail = false;
    loop {
        let (seq, record, len) = match next_record(&bytes[pos..]) {
            Next::End => break,
            Next::Torn => {
                torn_tail = true;
                break;
            }
            Next::Corrupt(why) => return Err(corrupt(pos, why)),
            Next::Record { seq, record, len } => (seq, record, len),
        };
        if seq != seq_expected {
            return Err(corrupt(pos, Corruption::SequenceGap { expected: seq_expected, found: seq }));
        }
        match (record, &header) {
            (Record::Header(h), None) => {
                check_identity(&h.identity, expected)
                    .map_err(|field| JournalError::Mismatch { journal: journal.to_owned(), field })?;
                header = Some(h);
            }
            (Record::Range(r), Some(h)) => {
                check_range(&r, h).map_err(|why| corrupt(pos, why))?;
                if ranges.len() as u64 == MAX_RANGES {
                    return Err(corrupt(pos, Corruption::TooManyRanges));
                }
                ranges.push(r);
            }
            _ => return Err(corrupt(pos, Corruption::MisplacedRecord)),
        }
        seq_expected += 1;
        pos += len;
    }
    let Some(header) = header else {
        return Err(corrupt(0, Corruption::NoHeader));
    };
    ranges.sort_unstable_by_key(|r| r.offset);
    // Found only once every record is read, so the error points at the end of the whole records.
    if ranges.windows(2).any(|w| w[0].end() > w[1].offset) {
        return Err(corrupt(pos, Corruption::Overlap));
    }
    Ok(Resume { header, ranges, torn_tail, valid_len: pos as u64 })
}

/// The first field of the journal's identity that differs from the source's.
fn check_identity(journal: &FileIdentity, source: &FileIdentity) -> Result<(), IdentityField> {
    if journal.path_hash != source.path_hash {
        return Err(IdentityField::Path);
    }
    if journal.size != source.size {
        return Err(IdentityField::Size);
    }
    if journal.mtime_ns != source.mtime_ns {
        return Err(IdentityField::Mtime);
    }
    if journal.mode != source.mode {
        return Err(IdentityField::Mode);
    }
    Ok(())
}

/// A range is non-empty, inside the file, and on the journal's block grid (its end may be the file's end).
pub(crate) fn check_range(r: &JournalRange, h: &JournalHeader) -> Result<(), Corruption> {
    let size = h.identity.size;
    let end = match r.offset.checked_add(r.len) {
        Some(end) if r.len > 0 && end <= size => end,
        _ => return Err(Corruption::OutOfFile),
    };
    let bs = u64::from(h.block_size);
    if r.offset % bs != 0 || (r.len % bs != 0 && end != size) {
        return Err(Corruption::Misaligned);
    }
    Ok(())
}
