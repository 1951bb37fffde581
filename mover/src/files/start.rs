//! What the receiver already holds, decided per file before data flows (issue 15, items 1 and 3): skip a
//! file whose destination is current, resume one whose partial and journal can be trusted, or start it
//! fresh. [`crate::files::DestTree::decide_start`] runs it over a manifest and applies the result.

use super::beneath::{Beneath, Dir, ParentCache};
use super::claim_waits::ClaimOwner;
use super::error::FilesError;
use super::journal::{self, with_suffix, FileIdentity, JournalHeader, JournalRange};
use super::partial::{claim_at, Claim};
use crate::wire::verdict::{Verdict, VerdictKind};
use crate::wire::{Overwrite, TransferOptions};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

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

/// One file as the decision sees it: its names relative to the root, every look at them by descriptor
/// beneath it ([`Beneath`]).
pub(crate) struct FileFacts<'a> {
    pub beneath: &'a Beneath,
    /// The final name, relative to the root (what errors show, too).
    pub shown: &'a Path,
    /// The partial's name, relative to the root.
    pub shown_temp: &'a Path,
    /// The identity the journal must match (the sender's view: manifest size, mtime and mode, path hash).
    pub identity: FileIdentity,
    /// The size the destination file must have to be current: the whole file's, for a range of a split
    /// file (`identity.size` is then the range's).
    pub final_size: u64,
    /// For a range of a split file: the final name's text, the range and its version (module `pieces`); a
    /// range already verified is skipped.
    pub piece: Option<(&'a str, crate::wire::shard::Piece, u64)>,
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
    parents: &mut ParentCache,
    opts: &TransferOptions,
    expected_hash: Option<u128>,
    block_size: u32,
    owner: ClaimOwner,
) -> Result<Decided, FilesError> {
    assert!(block_size > 0, "block size 0");
    if destination_is_current(f, parents, opts, expected_hash)? {
        return Ok(Decided::Skip);
    }
    let (dir, name) =
        f.beneath.parent_cached(parents, f.shown_temp).map_err(|error| partial_err(f, "opening", error))?;
    if let Some((final_name, piece, version)) = f.piece {
        let done = super::pieces::is_done(dir, final_name, piece.offset, version);
        if done.map_err(|error| partial_err(f, "checking the verified range of", error))? {
            return Ok(Decided::Skip);
        }
    }
    match dir.stat(name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Decided::Fresh { claim: None, why: None }),
        _ => {}
    }
    let claim = claim_at(dir, name, f.shown_temp, owner)?;
    let why = if opts.resume {
        match trusted_ranges(f, dir, name, claim.file(), block_size) {
            Ok(trusted) => return Ok(Decided::Resume { claim, trusted }),
            Err(why) => why,
        }
    } else {
        Some("--no-resume".to_string())
    };
    start_over(dir, name, &claim, f.shown_temp)?;
    Ok(Decided::Fresh { claim: Some(claim), why })
}

/// What [`decide_file`] would decide for one file, found without changing anything: no claim is taken (a
/// partial another session writes is read all the same), no partial is emptied, no journal removed
/// (`mover job --dry-run`, [`super::dry_run`]). The same rules in the same order, so a push that follows
/// with the same options and block size decides the same unless the destination changed in between.
/// A destination whose directory does not exist yet holds nothing: every file there is new.
pub(crate) fn peek_file(
    f: &FileFacts,
    parents: &mut ParentCache,
    opts: &TransferOptions,
    expected_hash: Option<u128>,
    block_size: u32,
) -> Result<Verdict, FilesError> {
    assert!(block_size > 0, "block size 0");
    let verdict = |kind, held| Ok(Verdict { kind, held });
    let dir_missing = |e: &io::Error| matches!(e.kind(), io::ErrorKind::NotFound);
    if destination_is_current(f, parents, opts, expected_hash)? {
        return verdict(VerdictKind::Unchanged, 0);
    }
    if let Some((final_name, piece, version)) = f.piece {
        // A range verified by an earlier run is skipped by a push, as a current file is.
        let done = match f.beneath.parent_cached(parents, f.shown_temp) {
            Ok((dir, _)) => super::pieces::is_done(dir, final_name, piece.offset, version),
            Err(e) if dir_missing(&e) => Ok(false),
            Err(e) => Err(e),
        };
        if done.map_err(|error| partial_err(f, "checking the verified range of", error))? {
            return verdict(VerdictKind::Unchanged, 0);
        }
    }
    let exists = match f.beneath.parent_cached(parents, f.shown).and_then(|(dir, name)| dir.stat(name)) {
        Ok(m) => m.is_file(),
        Err(e) if dir_missing(&e) => false,
        Err(error) => {
            return Err(FilesError::Partial { path: f.shown.to_path_buf(), op: "checking the destination of", error })
        }
    };
    let otherwise = if exists { VerdictKind::Changed } else { VerdictKind::New };
    if !opts.resume {
        return verdict(otherwise, 0);
    }
    let (dir, name) = match f.beneath.parent_cached(parents, f.shown_temp) {
        Ok(found) => found,
        Err(e) if dir_missing(&e) => return verdict(otherwise, 0),
        Err(error) => return Err(partial_err(f, "opening", error)),
    };
    let partial = match dir.open(name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0) {
        Ok(file) => file,
        Err(e) if dir_missing(&e) => return verdict(otherwise, 0),
        Err(error) => return Err(partial_err(f, "opening", error)),
    };
    match trusted_ranges(f, dir, name, &partial, block_size) {
        Ok(trusted) => verdict(VerdictKind::Changed, trusted.iter().map(|r| r.len).sum()),
        Err(_) => verdict(otherwise, 0),
    }
}

fn partial_err(f: &FileFacts, op: &'static str, error: io::Error) -> FilesError {
    FilesError::Partial { path: f.shown_temp.to_path_buf(), op, error }
}

/// The partial's trusted ranges on this session's grid, or why there are none (`None`: no journal).
fn trusted_ranges(
    f: &FileFacts,
    dir: &Dir,
    name: &OsStr,
    partial: &File,
    block_size: u32,
) -> Result<Vec<JournalRange>, Option<String>> {
    let resume = match journal::load_at(dir, &with_suffix(name, ".journal"), &f.identity) {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    let on_disk = journal::verify_ranges(partial, &resume.ranges).map_err(|e| Some(e.to_string()))?;
    let header = JournalHeader { identity: f.identity, block_size };
    let trusted = journal::ranges_on_grid(&on_disk, &header);
    if trusted.is_empty() {
        return Err(Some("no journaled range is still on disk".into()));
    }
    Ok(trusted)
}

/// Empties a claimed partial (`name` in `dir`) and removes its journal (and a journal rewrite a crash left).
pub(crate) fn start_over(dir: &Dir, name: &OsStr, claim: &Claim, shown: &Path) -> Result<(), FilesError> {
    let err = |op, error| FilesError::Partial { path: shown.to_path_buf(), op, error };
    claim.file().set_len(0).map_err(|e| err("emptying", e))?;
    let journal = with_suffix(name, ".journal");
    for j in [journal.clone(), with_suffix(&journal, ".new")] {
        match dir.unlink(&j, false) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("removing the journal of", e)),
        }
    }
    Ok(())
}

/// Whether the destination file exists and needs nothing, by the overwrite mode.
fn destination_is_current(
    f: &FileFacts,
    parents: &mut ParentCache,
    opts: &TransferOptions,
    expected: Option<u128>,
) -> Result<bool, FilesError> {
    let shown = || f.shown.to_path_buf();
    let m = match f.beneath.parent_cached(parents, f.shown).and_then(|(dir, name)| dir.stat(name)) {
        Ok(m) if m.is_file() => m,
        // Anything but a regular file was refused when the tree was prepared; a vanished one is sent.
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(FilesError::Partial { path: shown(), op: "checking the destination of", error }),
    };
    let dest_mtime = (m.mtime_s, i64::from(m.mtime_ns));
    let src_mtime = (f.mtime_s, i64::from(f.mtime_ns));
    Ok(match opts.overwrite {
        Overwrite::Always => false,
        Overwrite::Never => true,
        Overwrite::IfNewer => dest_mtime >= src_mtime,
        Overwrite::IfDifferent if m.size != f.final_size => false,
        Overwrite::IfDifferent if opts.checksum => match expected {
            Some(want) => content_hash(f.beneath, f.shown)
                .map_err(|error| FilesError::Partial { path: shown(), op: "hashing the destination of", error })?
                .is_some_and(|h| h == want),
            None => false,
        },
        Overwrite::IfDifferent => dest_mtime == src_mtime,
    })
}

/// xxh3-128 of a regular file's content (`None` if it is no longer a regular file), read by descriptor
/// beneath the root, never through a symlink swapped in.
fn content_hash(beneath: &Beneath, rel: &Path) -> io::Result<Option<u128>> {
    let mut file: File = beneath.open(rel, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
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
