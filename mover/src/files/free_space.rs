//! Whether the receiving file system can hold a transfer, judged once, before any data flows: a receiver
//! that will run out of space refuses with the numbers instead of failing gigabytes later.
//!
//! The margin rule: besides the bytes still to write, each file still to write may take one more block
//! than its size (file systems allocate whole blocks), every entry may take one block of its own (a
//! directory, a link, a partial's journal), and [`FREE_SPACE_MARGIN_BYTES`] more is kept for the file
//! system's own metadata. Sparse files count nothing: the manifest announces only their size, not how much
//! of it is data, and refusing a mostly empty disk image would be wrong; a disk that fills anyway still
//! fails cleanly mid-transfer (and the partials resume). Inodes are checked against the entry count when the
//! file system reports a limit (btrfs and some network file systems report none).

use super::start::StartDecision;
use crate::rate::format_bytes;
use crate::wire::entry::{Entry, EntryKind};
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Space kept free beyond the data and per-entry blocks (the margin rule, module documentation).
pub const FREE_SPACE_MARGIN_BYTES: u64 = 1 << 20;

/// What a transfer will still write to the receiving file system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceNeed {
    /// Bytes of regular files still to write: the manifest's total, less skipped and resumed bytes and sparse
    /// files.
    pub data_bytes: u64,
    /// Regular files still to write (each may take a block more than its size).
    pub files: u64,
    /// Entries that may each need an inode and a block: every entry not skipped.
    pub entries: u64,
}

impl SpaceNeed {
    /// The need of a manifest, once the receiver's start decision (what it skips and resumes) is known.
    pub fn of(entries: &[Entry], decision: &StartDecision) -> SpaceNeed {
        let regular = || entries.iter().filter(|e| e.kind == EntryKind::File);
        let dense: u64 = regular().filter(|e| !e.sparse).map(|e| e.size).fold(0, u64::saturating_add);
        // Skipped and resumed bytes of sparse files were never counted: subtract only what dense files had.
        let skipped_or_resumed: u64 = decision
            .files
            .iter()
            .zip(regular())
            .filter(|(_, e)| !e.sparse)
            .map(|(start, e)| match start {
                super::FileStart::Skip => e.size,
                super::FileStart::Resume { have } => {
                    have.iter().map(|&(_, len)| len).fold(0, u64::saturating_add).min(e.size)
                }
                super::FileStart::Fresh => 0,
            })
            .fold(0, u64::saturating_add);
        let files = (regular().count() as u64).saturating_sub(decision.skipped_files);
        SpaceNeed {
            data_bytes: dense.saturating_sub(skipped_or_resumed),
            files,
            entries: (entries.len() as u64).saturating_sub(decision.skipped_files),
        }
    }

    /// The bytes to find free, with the margin rule (module documentation) for blocks of `block_bytes`.
    pub fn bytes_with_margin(&self, block_bytes: u64) -> u64 {
        let blocks = self.files.saturating_add(self.entries);
        self.data_bytes.saturating_add(blocks.saturating_mul(block_bytes)).saturating_add(FREE_SPACE_MARGIN_BYTES)
    }
}

/// What a file system has free for an unprivileged writer (`statvfs`: `f_bavail`, `f_favail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes available.
    pub bytes: u64,
    /// Inodes available (`None`: the file system reports no limit).
    pub inodes: Option<u64>,
    /// The allocation unit (`f_frsize`).
    pub block_bytes: u64,
}

/// Asks the file system holding `dir` (or, if `dir` does not exist yet, its nearest existing ancestor)
/// what it has free.
pub fn free_space(dir: &Path) -> io::Result<FreeSpace> {
    let mut at = dir;
    loop {
        match statvfs(at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => return Err(e),
            },
            other => return other,
        }
    }
}

fn statvfs(path: &Path) -> io::Result<FreeSpace> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // Safety: all-zero is a valid `statvfs` (plain integers), which the call overwrites.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // Safety: `c` is NUL-terminated and outlives the call; `st` is a valid, writable `statvfs`.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block_bytes = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize } as u64;
    Ok(FreeSpace {
        bytes: (st.f_bavail as u64).saturating_mul(block_bytes),
        inodes: (st.f_files > 0).then_some(st.f_favail as u64),
        block_bytes,
    })
}

/// A transfer the receiving file system cannot hold: the numbers, for the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceShortfall {
    /// Where: "on the server" (a daemon receiving a push) or "here" (a client pulling).
    pub where_: &'static str,
    /// The destination as its reader may see it (relative to a daemon's root; a puller's own path).
    pub shown: String,
    /// What the transfer needs.
    pub need: SpaceNeed,
    /// What the file system has.
    pub free: FreeSpace,
}

impl SpaceShortfall {
    /// `None` if `free` holds `need` with the margin rule, else the shortfall.
    pub fn judge(need: SpaceNeed, free: FreeSpace, where_: &'static str, shown: String) -> Option<SpaceShortfall> {
        let bytes_ok = need.bytes_with_margin(free.block_bytes) <= free.bytes;
        let inodes_ok = free.inodes.is_none_or(|n| need.entries <= n);
        (!bytes_ok || !inodes_ok).then_some(SpaceShortfall { where_, shown, need, free })
    }
}

impl fmt::Display for SpaceShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (need, free, shown, where_) = (&self.need, &self.free, &self.shown, self.where_);
        let with_margin = need.bytes_with_margin(free.block_bytes);
        if with_margin > free.bytes {
            write!(
                f,
                "not enough space {where_} for this transfer: needs {} ({} of data and {} for blocks and \
                 metadata), {} free under '{shown}'; free space there or send less",
                format_bytes(with_margin),
                format_bytes(need.data_bytes),
                format_bytes(with_margin - need.data_bytes),
                format_bytes(free.bytes),
            )
        } else {
            let inodes = free.inodes.unwrap_or_default();
            write!(
                f,
                "not enough inodes {where_} for this transfer: needs {} files and directories, {inodes} free \
                 under '{shown}'; free some or send fewer files",
                need.entries
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::FileStart;

    fn file(size: u64, sparse: bool) -> Entry {
        Entry { rel_path: "f".into(), kind: EntryKind::File, size, sparse, ..Entry::default() }
    }

    #[test]
    fn skipped_resumed_and_sparse_bytes_are_not_needed() {
        let dir = Entry { rel_path: "d".into(), kind: EntryKind::Dir, ..Entry::default() };
        let entries = [dir, file(100, false), file(1000, false), file(5000, true), file(70, false)];
        let decision = StartDecision {
            files: vec![
                FileStart::Skip,
                FileStart::Resume { have: vec![(0, 400), (500, 100)] },
                FileStart::Fresh,
                FileStart::Fresh,
            ],
            skipped_files: 1,
            ..StartDecision::default()
        };
        let need = SpaceNeed::of(&entries, &decision);
        assert_eq!(need, SpaceNeed { data_bytes: 1000 - 500 + 70, files: 3, entries: 4 });
        assert_eq!(need.bytes_with_margin(4096), 570 + 7 * 4096 + FREE_SPACE_MARGIN_BYTES);
    }

    #[test]
    fn a_shortfall_says_where_with_the_numbers() {
        let need = SpaceNeed { data_bytes: 12 << 30, files: 1, entries: 2 };
        let free = FreeSpace { bytes: 3 << 30, inodes: Some(100), block_bytes: 4096 };
        let short = SpaceShortfall::judge(need, free, "on the server", "backups/x".into()).expect("short");
        let text = short.to_string();
        assert!(text.starts_with("not enough space on the server for this transfer: needs 12.00 GiB"), "{text}");
        assert!(text.contains("3.00 GiB free under 'backups/x'"), "{text}");
        let roomy = FreeSpace { bytes: 13 << 30, ..free };
        assert_eq!(SpaceShortfall::judge(need, roomy, "here", "/d".into()), None);
        // Exactly the need with its margin fits; a byte less does not.
        let exact = FreeSpace { bytes: need.bytes_with_margin(4096), ..free };
        assert!(SpaceShortfall::judge(need, exact, "here", "/d".into()).is_none());
        let under = FreeSpace { bytes: exact.bytes - 1, ..free };
        assert!(SpaceShortfall::judge(need, under, "here", "/d".into()).is_some());
        let few_inodes = FreeSpace { inodes: Some(1), ..roomy };
        let text = SpaceShortfall::judge(need, few_inodes, "here", "/d".into()).expect("short").to_string();
        assert!(text.contains("not enough inodes here") && text.contains("needs 2 files"), "{text}");
        let no_limit = FreeSpace { inodes: None, ..roomy };
        assert!(SpaceShortfall::judge(need, no_limit, "here", "/d".into()).is_none());
    }

    #[test]
    fn a_missing_directory_is_judged_by_its_nearest_ancestor() {
        let dir = crate::testing::TempDir::new("free-space");
        let there = free_space(dir.path()).unwrap();
        let below = free_space(&dir.path().join("not/yet/made")).unwrap();
        assert_eq!(there.block_bytes, below.block_bytes);
        assert!(below.bytes > 0);
    }
}
