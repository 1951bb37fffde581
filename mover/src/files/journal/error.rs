//! Why a journal is not trusted.

use std::fmt;
use std::io;

/// Why a journal cannot be used. Every variant names the journal by its file name only, never a directory.
#[derive(Debug)]
pub enum JournalError {
    /// Reading, writing or syncing the journal (or syncing the data file) failed; `op` says which.
    Io {
        /// The journal's file name.
        journal: String,
        /// What was being done ("open", "read", "write", "sync data file", ...).
        op: &'static str,
        /// The error (an OS error: it carries no path).
        error: io::Error,
    },
    /// A record other than a torn final one is malformed.
    Corrupt {
        /// The journal's file name.
        journal: String,
        /// Byte offset of the record in the journal.
        at: u64,
        /// What is wrong with it.
        why: Corruption,
    },
    /// The journal was written for another source, or the source changed since.
    Mismatch {
        /// The journal's file name.
        journal: String,
        /// The first field that differs.
        field: IdentityField,
    },
    /// The journal is longer than a writer ever makes one ([`super::MAX_JOURNAL_BYTES`]).
    TooLarge {
        /// The journal's file name.
        journal: String,
        /// Its length in bytes.
        bytes: u64,
    },
}

/// What is wrong with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The journal holds no complete header record (empty, or torn during creation).
    NoHeader,
    /// `record_len` is neither 44 nor 68.
    BadLength(u16),
    /// The record's checksum does not match its bytes.
    BadChecksum,
    /// The kind is unknown or does not match the length, or a reserved field is not zero.
    BadKind(u8),
    /// The sequence number is not the next one.
    SequenceGap {
        /// The number the record should carry.
        expected: u64,
        /// The number it carries.
        found: u64,
    },
    /// A header record after the first record, or a range record first.
    MisplacedRecord,
    /// The header's magic is not `MOVERJNL`.
    BadMagic,
    /// The header's version is not one this build reads.
    UnsupportedVersion(u16),
    /// The header's block size is 0.
    ZeroBlockSize,
    /// A range is empty or ends past the source's size.
    OutOfFile,
    /// A range does not start, or end, on a block boundary (other than the end of the file).
    Misaligned,
    /// Two ranges share bytes.
    Overlap,
    /// More than [`super::MAX_RANGES`] ranges.
    TooManyRanges,
}

/// A field of [`super::FileIdentity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityField {
    /// The relative path (its hash).
    Path,
    /// The size.
    Size,
    /// The modification time.
    Mtime,
    /// The mode.
    Mode,
}

impl JournalError {
    /// The journal does not exist (nothing to resume; not a fault).
    pub fn is_not_found(&self) -> bool {
        matches!(self, JournalError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }

    /// The journal's file name.
    pub fn journal(&self) -> &str {
        match self {
            JournalError::Io { journal, .. }
            | JournalError::Corrupt { journal, .. }
            | JournalError::Mismatch { journal, .. }
            | JournalError::TooLarge { journal, .. } => journal,
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resume journal \"{}\": ", self.journal().escape_debug())?;
        match self {
            JournalError::Io { op, error, .. } => write!(f, "{op}: {error}"),
            JournalError::Corrupt { at, why, .. } => write!(f, "not trusted: record at byte {at}: {why}"),
            JournalError::Mismatch { field: IdentityField::Path, .. } => {
                write!(f, "not applied: written for another file")
            }
            JournalError::Mismatch { field, .. } => {
                write!(f, "not applied: the source's {field} changed since the partial file was written")
            }
            JournalError::TooLarge { bytes, .. } => {
                write!(f, "not trusted: {bytes} bytes, more than any journal this version writes")
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::NoHeader => write!(f, "no complete header"),
            Corruption::BadLength(len) => write!(f, "impossible record length {len}"),
            Corruption::BadChecksum => write!(f, "checksum mismatch"),
            Corruption::BadKind(kind) => write!(f, "bad kind {kind} or reserved bits set"),
            Corruption::SequenceGap { expected, found } => {
                write!(f, "sequence number {found}, expected {expected}")
            }
            Corruption::MisplacedRecord => write!(f, "header and range records out of place"),
            Corruption::BadMagic => write!(f, "bad magic"),
            Corruption::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            Corruption::ZeroBlockSize => write!(f, "block size 0"),
            Corruption::OutOfFile => write!(f, "range empty or past the end of the file"),
            Corruption::Misaligned => write!(f, "range not aligned to the block size"),
            Corruption::Overlap => write!(f, "overlapping ranges"),
            Corruption::TooManyRanges => write!(f, "too many ranges"),
        }
    }
}

impl fmt::Display for IdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentityField::Path => "path",
            IdentityField::Size => "size",
            IdentityField::Mtime => "modification time",
            IdentityField::Mode => "mode",
        })
    }
}
