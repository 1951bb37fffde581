//! What the receiver already holds, decided per file before data flows (issue 15, items 1 and 3): skip a
//! file whose destination is current, resume one whose partial and journal can be trusted, or start it
//! fresh. [`crate::files::DestTree::decide_start`] runs it over a manifest and applies the result.

use super::error::FilesError;
use super::journal::{self, journal_path_for, FileIdentity, JournalHeader, JournalRange};
use super::partial::{claim, Claim};
use crate::wire::{Overwrite, TransferOptions};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What the receiver does with one file of the manifest, as the sender is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStart {
    /// The destination file is current: nothing is sent, nothing is created or committed.
    Skip,
    /// The partial holds these ranges, `(offset, len)` in bytes, sorted, on the session's block grid (a
    /// range ends on a block boundary or at the end of the file): only the rest is sent.
    Resume {
        /// Ranges already on disk and verified against their journaled hashes.
        have: Vec<(u64, u64)>,
    },
    /// Everything is sent (no usable partial).
    Fresh,
}

/// The receiver's decision for a whole manifest, by file id, and what it saves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartDecision {
    /// One entry per file id (the manifest's regular files, in order).
    pub files: Vec<FileStart>,
    /// Bytes of resumed files not sent again (`--json` `resumed_bytes`).
    pub resumed_bytes: u64,
    /// Files skipped because their destination is current (`--json` `skipped_files`).
    pub skipped_files: u64,
    /// The announced sizes of the skipped files (`--json` `skipped_bytes`).
    pub skipped_bytes: u64,
    /// Files whose partial was there but not trusted, and why (a journal's error, by its file name only):
    /// one log line each for the daemon.
    pub started_over: Vec<(u32, String)>,
}

/// One file as the decision sees it.
pub(crate) struct FileFacts<'a> {
    pub final_path: &'a Path,
    pub temp_path: &'a Path,
    /// `temp_path` relative to the root, for errors.
    pub shown_temp: &'a Path,
    /// The identity the journal must match (the sender's view: manifest size, mtime and mode, path hash).
    pub identity: FileIdentity,
    pub mtime_s: i64,
    pub mtime_ns: u32,
}

/// What [`decide_file`] found, with the partial's claim when it took one.
pub(crate) enum Decided {
    Skip,
    Resume {
        claim: Claim,
        trusted: Vec<JournalRange>,
    },
    /// `claim` is the emptied partial of an earlier run (its journal removed), or `None` when there was none.
    Fresh {
        claim: Option<Claim>,
        why: Option<String>,
    },
}

/// Decides one file; see [`FileStart`]. `expected_hash` is the source's xxh3-128 (sent for `--checksum`).
///
/// Skip rules by `--overwrite`: `never` skips any existing destination file; `always` never skips;
/// `if-newer` skips when the destination's mtime is at least the source's; `if-different` skips when size
/// and mtime (seconds and nanoseconds) are equal, or, with `--checksum`, when size and content hash are
/// (without an expected hash nothing is skipped). A partial of a skipped file is left alone.
///
/// Otherwise a partial of an earlier run is claimed (its lock: [`FilesError::PartialBusy`] if another
/// session writes it). With resume on and a journal that loads for this file's identity, the journaled
/// ranges whose bytes still match, on `block_size`'s grid, are resumed; any other case (`--no-resume`, no
/// journal, a corrupt or torn-at-the-header journal, another identity: the source's size, mtime or mode
/// changed) empties the partial and removes its journal.
pub(crate) fn decide_file(
    f: &FileFacts,
    opts: &TransferOptions,
    expected_hash: Option<u128>,
    block_size: u32,
) -> Result<Decided, FilesError> {
    assert!(block_size > 0, "block size 0");
    if destination_is_current(f, opts, expected_hash)? {
        return Ok(Decided::Skip);
    }
    match fs::symlink_metadata(f.temp_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Decided::Fresh { claim: None, why: None }),
        _ => {}
    }
    let claim = claim(f.temp_path, f.shown_temp)?;
    let why = if opts.resume {
        match trusted_ranges(f, &claim, block_size) {
            Ok(trusted) => return Ok(Decided::Resume { claim, trusted }),
            Err(why) => why,
        }
    } else {
        Some("--no-resume".to_string())
    };
    start_over(f.temp_path, &claim, f.shown_temp)?;
    Ok(Decided::Fresh { claim: Some(claim), why })
}

/// The partial's trusted ranges on this session's grid, or why there are none (`None`: no journal).
fn trusted_ranges(f: &FileFacts, claim: &Claim, block_size: u32) -> Result<Vec<JournalRange>, Option<String>> {
    let resume = match journal::load(&journal_path_for(f.temp_path), &f.identity) {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    let on_disk = journal::verify_ranges(claim.file(), &resume.ranges).map_err(|e| Some(e.to_string()))?;
    let header = JournalHeader { identity: f.identity, block_size };
    let trusted = journal::ranges_on_grid(&on_disk, &header);
    if trusted.is_empty() {
        return Err(Some("no journaled range is still on disk".into()));
    }
    Ok(trusted)
}

/// Empties a claimed partial and removes its journal (and a journal rewrite a crash left).
pub(crate) fn start_over(temp_path: &Path, claim: &Claim, shown: &Path) -> Result<(), FilesError> {
    let err = |op, error| FilesError::Partial { path: shown.to_path_buf(), op, error };
    claim.file().set_len(0).map_err(|e| err("emptying", e))?;
    let journal = journal_path_for(temp_path);
    for p in [journal.clone(), with_suffix(&journal, ".new")] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("removing the journal of", e)),
        }
    }
    Ok(())
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether the destination file exists and needs nothing, by the overwrite mode.
fn destination_is_current(f: &FileFacts, opts: &TransferOptions, expected: Option<u128>) -> Result<bool, FilesError> {
    let shown = || f.shown_temp.with_file_name(f.final_path.file_name().unwrap_or_default());
    let m = match fs::symlink_metadata(f.final_path) {
        Ok(m) if m.is_file() => m,
        // Anything but a regular file was refused when the tree was prepared; a vanished one is sent.
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(FilesError::Partial { path: shown(), op: "checking the destination of", error }),
    };
    let dest_mtime = (m.mtime(), m.mtime_nsec());
    let src_mtime = (f.mtime_s, i64::from(f.mtime_ns));
    Ok(match opts.overwrite {
        Overwrite::Always => false,
        Overwrite::Never => true,
        Overwrite::IfNewer => dest_mtime >= src_mtime,
        Overwrite::IfDifferent if m.len() != f.identity.size => false,
        Overwrite::IfDifferent if opts.checksum => match expected {
            Some(want) => content_hash(f.final_path)
                .map_err(|error| FilesError::Partial { path: shown(), op: "hashing the destination of", error })?
                .is_some_and(|h| h == want),
            None => false,
        },
        Overwrite::IfDifferent => dest_mtime == src_mtime,
    })
}

/// xxh3-128 of a regular file's content (`None` if it is no longer a regular file), read without following
/// a symlink swapped in.
fn content_hash(path: &Path) -> io::Result<Option<u128>> {
    let mut file: File = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut hash = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(Some(hash.digest128())),
            Ok(n) => hash.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
