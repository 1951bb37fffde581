//! Scanning what a daemon serves for a pull, by descriptor beneath its root: every directory is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or the strict walk) and its names are examined with
//! no-follow `*at` calls on that descriptor. A symlink is sent as a link (its target text), never followed;
//! a directory swapped for a symlink during the scan is skipped (it cannot be opened), never entered. The
//! files are recorded by their paths relative to the root and later opened the same way
//! ([`super::Opener::Beneath`]), so nothing outside the root is ever read.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::beneath::{Beneath, Dir, Stat};
use super::error::{FileOp, FilesError};
use super::sanitize::{sanitize_relative, RelPath};
use super::scan::{entry, hash_file, not_sent_reason, ScanOptions, Scanned};
use super::source_open::Opener;
use super::xattr::read_xattrs;
use crate::wire::control::MAX_STRING_LEN;
use crate::wire::entry::{Entry, EntryKind};

/// Scans `src` (relative to `root`) the way [`super::scan_sources`] scans one source, sent under `name`:
/// the same manifest order and rules (hard links, sparseness, owners, `xattrs` and `checksum` on request),
/// but every path in the result, [`Scanned::file_paths`] and [`Scanned::skipped`] included, is relative to
/// the root, and [`Scanned::opener`] opens the files beneath it. `files_from` is not supported here (a pull
/// never sends one).
pub fn scan_beneath(
    root: Arc<Beneath>,
    src: &RelPath,
    name: String,
    opts: &ScanOptions,
) -> Result<Scanned, FilesError> {
    assert!(opts.files_from.is_none(), "a pull has no --files-from");
    sanitize_relative(&name).map_err(|e| FilesError::Source { path: src.to_path_buf(), problem: e.to_string() })?;
    let disk = src.to_path_buf();
    let mut scan = BeneathScan { root: &root, out: Scanned::default(), opts, inodes: HashMap::new() };
    let st = root.stat(&disk).map_err(|e| cannot_read(&disk, e))?;
    if st.is_dir() {
        scan.dir(&disk, name, &st, true)?;
    } else {
        let (dir, last) = root.parent(&disk).map_err(|e| cannot_read(&disk, e))?;
        if let Some(e) = scan.one(&dir, last, &disk, name, &st)? {
            scan.push(e, &disk);
        }
    }
    if u32::try_from(scan.out.file_paths.len()).is_err() {
        return Err(FilesError::TooManyFiles { count: scan.out.file_paths.len() });
    }
    scan.out.opener = Opener::Beneath(root.clone());
    Ok(scan.out)
}

struct BeneathScan<'a> {
    root: &'a Beneath,
    out: Scanned,
    opts: &'a ScanOptions,
    /// The first manifest path of every multiply-linked regular file seen, by (device, inode).
    inodes: HashMap<(u64, u64), String>,
}

/// One name of a listed directory, examined while the directory's descriptor was open.
enum Node {
    /// A file, link or hard link's entry, with its path relative to the root.
    Entry(Entry, PathBuf),
    /// A subdirectory, entered after the listing's descriptor is closed (so a deep tree holds one directory
    /// descriptor at a time): its name, manifest path and `lstat`.
    Dir(OsString, String, Stat),
}

impl BeneathScan<'_> {
    /// The directory `disk` (relative to the root), sent as `sent`: its entry, then its contents depth first.
    /// A directory that cannot be opened or listed (swapped for a symlink, say) is an error at the top and
    /// skipped below.
    fn dir(&mut self, disk: &Path, sent: String, st: &Stat, top: bool) -> Result<(), FilesError> {
        let listed = self.root.dir(disk).and_then(|d| d.names().map(|n| (d, n)));
        let (d, mut names) = match listed {
            Ok(l) => l,
            Err(e) if top => return Err(cannot_read(disk, e)),
            Err(e) => {
                self.out.skipped.push((disk.to_path_buf(), format!("cannot read directory: {e}")));
                return Ok(());
            }
        };
        names.sort();
        let own = self.entry(&d, OsStr::new("."), disk, sent.clone(), EntryKind::Dir, st)?;
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let child_disk = disk.join(&name);
            let Some(text) = name.to_str() else {
                self.out.skipped.push((child_disk, "name is not valid UTF-8".to_string()));
                continue;
            };
            let child_sent = format!("{sent}/{text}");
            if let Err(e) = sanitize_relative(&child_sent) {
                self.out.skipped.push((child_disk, e.to_string()));
                continue;
            }
            let st = match d.stat(&name) {
                Ok(st) => st,
                Err(e) => {
                    self.out.skipped.push((child_disk, format!("cannot read: {e}")));
                    continue;
                }
            };
            if st.is_dir() {
                nodes.push(Node::Dir(name, child_sent, st));
            } else if let Some(e) = self.one(&d, &name, &child_disk, child_sent, &st)? {
                nodes.push(Node::Entry(e, child_disk));
            }
        }
        drop(d);
        self.out.entries.push(own);
        for node in nodes {
            match node {
                Node::Entry(e, child_disk) => self.push(e, &child_disk),
                Node::Dir(name, child_sent, st) => self.dir(&disk.join(name), child_sent, &st, false)?,
            }
        }
        Ok(())
    }

    /// The entry of one non-directory `name` in `dir` (a file, a later name of one, or a symlink), or
    /// `None` when it is not sent (recorded in `skipped`).
    fn one(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        disk: &Path,
        sent: String,
        st: &Stat,
    ) -> Result<Option<Entry>, FilesError> {
        if st.is_file() {
            if st.nlink > 1 {
                let key = (st.dev, st.ino);
                if let Some(first) = self.inodes.get(&key) {
                    let mut e = entry(sent, EntryKind::HardLink, st);
                    e.link_target = first.clone();
                    return Ok(Some(e));
                }
                self.inodes.insert(key, sent.clone());
            }
            return self.entry(dir, name, disk, sent, EntryKind::File, st).map(Some);
        }
        if st.is_symlink() {
            let target = match dir.read_link(name) {
                Ok(t) => t,
                Err(e) => {
                    self.out.skipped.push((disk.to_path_buf(), format!("cannot read symbolic link: {e}")));
                    return Ok(None);
                }
            };
            let Some(target) = target.to_str().filter(|t| !t.is_empty() && t.len() <= MAX_STRING_LEN) else {
                let why = "symbolic link whose target is not UTF-8 or is too long".to_string();
                self.out.skipped.push((disk.to_path_buf(), why));
                return Ok(None);
            };
            let mut e = self.entry(dir, name, disk, sent, EntryKind::Symlink, st)?;
            e.link_target = target.to_string();
            return Ok(Some(e));
        }
        self.out.skipped.push((disk.to_path_buf(), not_sent_reason(st.mode).to_string()));
        Ok(None)
    }

    /// An entry from `st`, with the extended attributes and content hash asked for, read through `dir`'s
    /// descriptor (`name` `.`: the directory itself).
    fn entry(
        &self,
        dir: &Dir,
        name: &OsStr,
        disk: &Path,
        sent: String,
        kind: EntryKind,
        st: &Stat,
    ) -> Result<Entry, FilesError> {
        let mut e = entry(sent, kind, st);
        if self.opts.xattrs {
            let at = dir.proc_path(name).map_err(|err| cannot_read(disk, err))?;
            e.xattrs = read_xattrs(&at).map_err(|err| cannot_read(disk, err))?;
            Entry::check_xattrs(&e.xattrs)
                .map_err(|problem| FilesError::Source { path: disk.to_path_buf(), problem })?;
        }
        if self.opts.checksum && kind == EntryKind::File {
            let hashed = dir.open_regular(name, 0).and_then(|mut f| hash_file(&mut f));
            e.content_hash = Some(hashed.map_err(|err| cannot_read(disk, err))?);
        }
        Ok(e)
    }

    fn push(&mut self, e: Entry, disk: &Path) {
        if e.kind == EntryKind::File {
            self.out.file_paths.push(disk.to_path_buf());
        }
        self.out.entries.push(e);
    }
}

fn cannot_read(path: &Path, error: io::Error) -> FilesError {
    FilesError::Io { op: FileOp::Read, path: path.to_path_buf(), error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{scan_sources_with, Resolve};
    use crate::testing::TempDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
        let (c, n) =
            (std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap(), std::ffi::CString::new(name).unwrap());
        // Safety: NUL-terminated path and name, `value.len()` readable bytes.
        unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) == 0 }
    }

    /// The same manifest as the by-path scan of the same tree (order, kinds, sizes, modes, times, owners,
    /// hard links, symlink targets, sparseness, xattrs, hashes), with paths relative to the root.
    #[test]
    fn scans_what_the_path_scan_scans_relative_to_the_root() {
        let t = TempDir::new("scan-beneath");
        let d = t.path().join("data");
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::write(d.join("a.txt"), b"hello").unwrap();
        fs::hard_link(d.join("a.txt"), d.join("sub/again")).unwrap();
        fs::write(d.join("sub/deeper/c"), b"c").unwrap();
        let holes = fs::File::create(d.join("holes")).unwrap();
        holes.set_len(4 << 20).unwrap();
        symlink("../a.txt", d.join("sub/link")).unwrap();
        symlink("/etc", d.join("escape")).unwrap();
        std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        let xattrs = set_xattr(&d.join("a.txt"), "user.k", b"v") && set_xattr(&d.join("sub"), "user.d", b"w");
        let opts = ScanOptions { xattrs: true, checksum: true, files_from: None };
        let by_path = scan_sources_with(std::slice::from_ref(&d), &opts).unwrap();
        for resolve in [Resolve::Auto, Resolve::Walk] {
            let root = Arc::new(Beneath::new(t.path()).unwrap().with_resolve(resolve));
            let s = scan_beneath(root, &sanitize_relative("data").unwrap(), "data".into(), &opts).unwrap();
            assert_eq!(s.entries, by_path.entries, "{resolve:?}");
            let files: Vec<_> = ["data/a.txt", "data/holes", "data/sub/deeper/c"].map(PathBuf::from).into();
            assert_eq!(s.file_paths, files);
            assert_eq!(s.skipped, [(PathBuf::from("data/sock"), "socket".to_string())]);
            assert!(matches!(s.opener, Opener::Beneath(_)));
            if xattrs {
                assert_eq!(s.entries[1].xattrs, [("user.k".to_string(), b"v".to_vec())]);
            }
        }
        // A single file is sent under its own name.
        let root = Arc::new(Beneath::new(t.path()).unwrap());
        let one = scan_beneath(root, &sanitize_relative("data/a.txt").unwrap(), "a.txt".into(), &opts).unwrap();
        assert_eq!(one.entries.len(), 1);
        assert_eq!((one.entries[0].rel_path.as_str(), one.entries[0].size), ("a.txt", 5));
    }

    /// A subdirectory that is a symlink is sent as a link, and the scan never enters it.
    #[test]
    fn a_directory_symlink_is_a_link_and_a_symlinked_top_is_refused() {
        let t = TempDir::new("scan-beneath-links");
        let outside = TempDir::new("scan-beneath-outside");
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        symlink(outside.path(), t.path().join("d/sub")).unwrap();
        symlink(outside.path(), t.path().join("top")).unwrap();
        let root = Arc::new(Beneath::new(t.path()).unwrap());
        let opts = ScanOptions::default();
        let s = scan_beneath(root.clone(), &sanitize_relative("d").unwrap(), "d".into(), &opts).unwrap();
        let kinds: Vec<_> = s.entries.iter().map(|e| (e.rel_path.as_str(), e.kind)).collect();
        assert_eq!(kinds, [("d", EntryKind::Dir), ("d/sub", EntryKind::Symlink)]);
        // Refused (openat2 says ENOTDIR for a symlink where a directory must be, the walk names the link).
        assert!(scan_beneath(root, &sanitize_relative("top/secret").unwrap(), "secret".into(), &opts).is_err());
    }
}
