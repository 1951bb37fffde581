//! Scanning the sender's sources into a manifest: files, directories, symbolic links (sent as links, never
//! followed) and hard links (later names of an inode already sent), with owners, sparseness, and on request
//! extended attributes and content hashes.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::beneath::Stat;
use super::error::{FileOp, FilesError};
use super::sanitize::sanitize_relative;
use super::source_open::Opener;
use super::xattr::read_xattrs;
use crate::wire::control::MAX_STRING_LEN;
use crate::wire::entry::{Entry, EntryKind};

/// The result of [`scan_sources`]: the manifest and where to read each file from.
#[derive(Clone, Debug, Default)]
pub struct Scanned {
    /// The manifest, directories before their contents, siblings sorted by name (byte order).
    pub entries: Vec<Entry>,
    /// The openable path of each regular file; index = file id (the n-th `File` entry of `entries`).
    pub file_paths: Vec<PathBuf>,
    /// Where each file id's bytes start in its file: the offset of a range of a split file
    /// ([`crate::wire::entry::Entry::piece`], from `files::keep_shard`); empty when every file is whole.
    pub file_bases: Vec<u64>,
    /// Things that were not sent, with the reason: sockets, devices, FIFOs, names that are not UTF-8 or
    /// would be refused by the receiver, directories that could not be listed, files that vanished during
    /// the scan.
    pub skipped: Vec<(PathBuf, String)>,
    /// How `file_paths` are opened: as the user named them ([`Opener::Path`]), or beneath a daemon's root
    /// by descriptor ([`Opener::Beneath`], from [`super::scan_beneath`]).
    pub opener: Opener,
}

/// What a scan reads beyond names, sizes, modes, mtimes and owners.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Read extended attributes (`--xattrs`).
    pub xattrs: bool,
    /// Hash every file's content (`--checksum`): xxh3-128 into [`Entry::content_hash`].
    pub checksum: bool,
    /// Send exactly these paths, relative to the one source directory, and the directories leading to
    /// them (`--files-from`); `None` sends whole trees.
    pub files_from: Option<Vec<String>>,
}

/// [`scan_sources_with`] with the default options: no extended attributes, no hashes, whole trees.
pub fn scan_sources(srcs: &[PathBuf]) -> Result<Scanned, FilesError> {
    scan_sources_with(srcs, &ScanOptions::default())
}

/// Scans `srcs` the way `cp -r SRC... DIR/` lays them out: each source goes under its own name, so
/// `./dataset` gives `dataset`, `dataset/a.txt`, `dataset/sub`, ... and `big.fastq` gives `big.fastq`.
///
/// - A source's name is the last component as typed (`dataset/` and `dataset/.` are `dataset`); a source
///   with no usable last component (`.`, `..`, `a/..`) is canonicalized to find its real name.
/// - Symbolic links are sent as links with their target text, never followed: inside a tree and as a
///   source named on the command line (`link/`, with a slash, names the directory it points to).
/// - A regular file with several names inside the scan is sent once; its later names are
///   [`EntryKind::HardLink`] entries naming the first.
/// - A source that does not exist or cannot be read, a top-level directory that cannot be listed, two
///   sources with the same name, and extended attributes over the bounds of `wire::entry` are errors.
///   Other problems below a source are recorded in [`Scanned::skipped`] instead, so one odd file does not
///   stop a large transfer.
/// - With [`ScanOptions::files_from`], `srcs` must be one directory, and only the listed paths (and the
///   directories leading to them) are sent; a listed path that leaves the directory, passes through a
///   symlink or does not exist is an error.
///
/// Sizes, modes and mtimes come from `lstat` at scan time; a file that changes afterwards is caught when it
/// is read (shrunk) or by the receiver's hash.
pub fn scan_sources_with(srcs: &[PathBuf], opts: &ScanOptions) -> Result<Scanned, FilesError> {
    let mut scan = Scan { out: Scanned::default(), opts, inodes: HashMap::new() };
    if let Some(list) = &opts.files_from {
        scan.listed(srcs, list)?;
    } else {
        scan.trees(srcs)?;
    }
    // File ids travel as u32.
    if u32::try_from(scan.out.file_paths.len()).is_err() {
        return Err(FilesError::TooManyFiles { count: scan.out.file_paths.len() });
    }
    Ok(scan.out)
}

struct Scan<'a> {
    out: Scanned,
    opts: &'a ScanOptions,
    /// The first manifest path of every multiply-linked regular file seen, by (device, inode).
    inodes: HashMap<(u64, u64), String>,
}

impl Scan<'_> {
    fn trees(&mut self, srcs: &[PathBuf]) -> Result<(), FilesError> {
        let mut names: HashMap<String, &Path> = HashMap::new();
        for src in srcs {
            // Not followed: a symlink named on the command line is sent as a link (see above).
            let meta = fs::symlink_metadata(src).map_err(|e| cannot_read(src, e))?;
            let name = source_name(src)?;
            if let Some(prev) = names.insert(name.clone(), src) {
                return Err(FilesError::DuplicateName { name, first: prev.to_path_buf(), second: src.clone() });
            }
            // Absolute, so that the paths stay valid if the process changes directory later.
            let path = std::path::absolute(src).map_err(|e| cannot_read(src, e))?;
            if meta.is_dir() {
                let children = list_dir(&path).map_err(|e| cannot_read(src, e))?;
                self.push(&path, name.clone(), EntryKind::Dir, &meta)?;
                self.walk(&path, &name, children)?;
            } else {
                self.one(&path, name, &meta)?;
            }
        }
        Ok(())
    }

    /// `--files-from`: the listed paths below the one source directory, with their ancestors.
    fn listed(&mut self, srcs: &[PathBuf], list: &[String]) -> Result<(), FilesError> {
        let [src] = srcs else {
            let problem = "--files-from needs exactly one source directory (the list is relative to it)";
            return Err(cannot_send(srcs.first().map_or(Path::new(""), |p| p.as_path()), problem.into()));
        };
        let meta = fs::metadata(src).map_err(|e| cannot_read(src, e))?;
        if !meta.is_dir() {
            return Err(cannot_send(src, "--files-from needs a directory as the source".into()));
        }
        let name = source_name(src)?;
        let root = std::path::absolute(src).map_err(|e| cannot_read(src, e))?;
        // Every listed path and its ancestors, as component lists: sorted, a directory comes before what
        // lies in it and siblings by name, as in a whole-tree scan.
        let mut wanted: BTreeSet<Vec<String>> = BTreeSet::new();
        let mut explicit: BTreeSet<String> = BTreeSet::new();
        for line in list {
            let rel = sanitize_relative(line).map_err(|e| {
                cannot_send(src, format!("'{line}' in --files-from is not a path inside the source: {e}"))
            })?;
            let parts = rel.components();
            for n in 1..=parts.len() {
                wanted.insert(parts[..n].to_vec());
            }
            explicit.insert(rel.to_string());
        }
        self.push(&root, name.clone(), EntryKind::Dir, &meta)?;
        for parts in wanted {
            let rel = parts.join("/");
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(|e| {
                let what = if explicit.contains(rel.as_str()) {
                    "listed in --files-from"
                } else {
                    "a parent of a listed path"
                };
                cannot_send(&path, format!("'{rel}' ({what}) cannot be read under the source: {e}"))
            })?;
            let sent_as = format!("{name}/{rel}");
            sanitize_relative(&sent_as).map_err(|e| cannot_send(&path, e.to_string()))?;
            let is_last = explicit.contains(rel.as_str());
            if meta.file_type().is_symlink() && !is_last {
                // Its children were listed: reading them would follow the link out of the tree.
                return Err(cannot_send(
                    &path,
                    format!("'{rel}' is a symbolic link; paths below it are not sent through it"),
                ));
            }
            if meta.is_dir() {
                self.push(&path, sent_as, EntryKind::Dir, &meta)?;
            } else if !is_last {
                return Err(cannot_send(&path, format!("'{rel}' is not a directory, but paths below it are listed")));
            } else {
                self.one(&path, sent_as, &meta)?;
            }
        }
        Ok(())
    }

    /// Appends the (already listed) contents of the directory `dir`, sent as `rel`, depth first.
    fn walk(&mut self, dir: &Path, rel: &str, children: Vec<(OsString, PathBuf)>) -> Result<(), FilesError> {
        debug_assert!(children.iter().all(|(_, p)| p.starts_with(dir)));
        for (name, path) in children {
            let Some(name) = name.to_str() else {
                self.out.skipped.push((path, "name is not valid UTF-8".to_string()));
                continue;
            };
            let child_rel = format!("{rel}/{name}");
            if let Err(e) = sanitize_relative(&child_rel) {
                // E.g. a path over 4096 bytes: the receiver would refuse the whole manifest.
                self.out.skipped.push((path, e.to_string()));
                continue;
            }
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    // Typically removed between the listing and now.
                    self.out.skipped.push((path, format!("cannot read: {e}")));
                    continue;
                }
            };
            if meta.is_dir() {
                match list_dir(&path) {
                    Ok(grandchildren) => {
                        self.push(&path, child_rel.clone(), EntryKind::Dir, &meta)?;
                        self.walk(&path, &child_rel, grandchildren)?;
                    }
                    Err(e) => self.out.skipped.push((path, format!("cannot read directory: {e}"))),
                }
            } else {
                self.one(&path, child_rel, &meta)?;
            }
        }
        Ok(())
    }

    /// One non-directory: a file (or a later name of one), a symlink, or something that is not sent.
    fn one(&mut self, path: &Path, rel: String, meta: &fs::Metadata) -> Result<(), FilesError> {
        let t = meta.file_type();
        if t.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.inodes.get(&key) {
                    let target = first.clone();
                    let mut e = self.entry_of(path, rel, EntryKind::HardLink, meta)?;
                    e.link_target = target;
                    self.out.entries.push(e);
                    return Ok(());
                }
                self.inodes.insert(key, rel.clone());
            }
            return self.push(path, rel, EntryKind::File, meta);
        }
        if t.is_symlink() {
            let target = match fs::read_link(path) {
                Ok(t) => t,
                Err(e) => {
                    self.out.skipped.push((path.to_path_buf(), format!("cannot read symbolic link: {e}")));
                    return Ok(());
                }
            };
            let Some(target) = target.to_str().filter(|t| !t.is_empty() && t.len() <= MAX_STRING_LEN) else {
                let why = "symbolic link whose target is not UTF-8 or is too long".to_string();
                self.out.skipped.push((path.to_path_buf(), why));
                return Ok(());
            };
            let mut e = self.entry_of(path, rel, EntryKind::Symlink, meta)?;
            e.link_target = target.to_string();
            self.out.entries.push(e);
            return Ok(());
        }
        self.out.skipped.push((path.to_path_buf(), not_sent_reason(meta.mode()).to_string()));
        Ok(())
    }

    fn push(&mut self, path: &Path, rel: String, kind: EntryKind, meta: &fs::Metadata) -> Result<(), FilesError> {
        let e = self.entry_of(path, rel, kind, meta)?;
        if kind == EntryKind::File {
            self.out.file_paths.push(path.to_path_buf());
        }
        self.out.entries.push(e);
        Ok(())
    }

    fn entry_of(&self, path: &Path, rel: String, kind: EntryKind, meta: &fs::Metadata) -> Result<Entry, FilesError> {
        let mut e = entry(rel, kind, &Stat::from(meta));
        // A hard link's attributes are its inode's, sent with the first name.
        if self.opts.xattrs && kind != EntryKind::HardLink {
            e.xattrs = read_xattrs(path).map_err(|err| cannot_read(path, err))?;
            Entry::check_xattrs(&e.xattrs).map_err(|problem| cannot_send(path, problem))?;
        }
        if self.opts.checksum && kind == EntryKind::File {
            e.content_hash = Some(content_hash(path).map_err(|err| cannot_read(path, err))?);
        }
        Ok(e)
    }
}

/// xxh3-128 of a file's bytes, read in 1 MiB steps.
pub fn content_hash(path: &Path) -> io::Result<u128> {
    hash_file(&mut fs::File::open(path)?)
}

/// xxh3-128 of an open file's bytes from where it stands, read in 1 MiB steps.
pub(super) fn hash_file(f: &mut fs::File) -> io::Result<u128> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.digest128());
        }
        h.update(&buf[..n]);
    }
}

fn cannot_read(path: &Path, error: io::Error) -> FilesError {
    FilesError::Io { op: FileOp::Read, path: path.to_path_buf(), error }
}

fn cannot_send(src: &Path, problem: String) -> FilesError {
    FilesError::Source { path: src.to_path_buf(), problem }
}

/// The name a source is sent under (see [`scan_sources`]).
fn source_name(src: &Path) -> Result<String, FilesError> {
    let name: OsString = match src.components().next_back() {
        Some(Component::Normal(n)) => n.to_owned(),
        // `.`, `..`, `a/..`: only the file system knows the real name.
        _ => {
            let canon = fs::canonicalize(src).map_err(|e| cannot_read(src, e))?;
            canon.file_name().ok_or_else(|| cannot_send(src, "it has no name to send it under".into()))?.to_owned()
        }
    };
    let name = name.into_string().map_err(|n| cannot_send(src, format!("its name {n:?} is not valid UTF-8")))?;
    // Checked here so the sender never announces something the receiver will refuse.
    sanitize_relative(&name).map_err(|e| cannot_send(src, e.to_string()))?;
    Ok(name)
}

/// Lists a directory completely before anything is done with its children, so a deep tree holds one
/// directory fd at a time, and sorts by name so two scans of the same tree give the same manifest.
fn list_dir(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut children = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        children.push((e.file_name(), e.path()));
    }
    children.sort();
    Ok(children)
}

/// Why a name of type `mode` (`st_mode`) is not sent.
pub(super) fn not_sent_reason(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFSOCK => "socket",
        libc::S_IFIFO => "FIFO",
        libc::S_IFBLK | libc::S_IFCHR => "device",
        _ => "not a regular file, directory or symbolic link",
    }
}

/// The manifest entry of what `st` describes: both scans (by path here, by descriptor in `scan_beneath`)
/// build entries with this one function.
pub(super) fn entry(rel_path: String, kind: EntryKind, st: &Stat) -> Entry {
    let file = kind == EntryKind::File;
    Entry {
        rel_path,
        kind,
        size: if file { st.size } else { 0 },
        mode: st.mode & 0o7777,
        mtime_s: st.mtime_s,
        // Always 0..1e9 from the kernel; clamp rather than trust it blindly.
        mtime_ns: st.mtime_ns.min(999_999_999),
        uid: st.uid,
        gid: st.gid,
        // Fewer allocated bytes than the size: the file has holes (a file system that compresses shows
        // the same; keeping zero runs as holes is right for it too).
        sparse: file && st.blocks.saturating_mul(512) < st.size,
        ..Entry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, UNIX_EPOCH};

    /// dataset/{a.txt, empty, link -> a.txt, sock, sub/{b.bin, deeper/c}, z_empty_dir/}
    fn make_tree(t: &TempDir) -> PathBuf {
        let d = t.path().join("dataset");
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::create_dir(d.join("z_empty_dir")).unwrap();
        fs::write(d.join("a.txt"), b"hello").unwrap();
        fs::write(d.join("empty"), b"").unwrap();
        fs::write(d.join("sub/b.bin"), vec![7u8; 1000]).unwrap();
        fs::write(d.join("sub/deeper/c"), b"c").unwrap();
        symlink("a.txt", d.join("link")).unwrap();
        std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        d
    }

    fn rels(s: &Scanned) -> Vec<(&str, EntryKind)> {
        s.entries.iter().map(|e| (e.rel_path.as_str(), e.kind)).collect()
    }

    #[test]
    fn scans_tree_in_order() {
        use EntryKind::*;
        let t = TempDir::new("scan");
        let d = make_tree(&t);
        let f = fs::File::options().write(true).open(d.join("a.txt")).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789)).unwrap();
        f.set_permissions(fs::Permissions::from_mode(0o640)).unwrap();

        let s = scan_sources(std::slice::from_ref(&d)).unwrap();
        assert_eq!(
            rels(&s),
            [
                ("dataset", Dir),
                ("dataset/a.txt", File),
                ("dataset/empty", File),
                ("dataset/link", Symlink),
                ("dataset/sub", Dir),
                ("dataset/sub/b.bin", File),
                ("dataset/sub/deeper", Dir),
                ("dataset/sub/deeper/c", File),
                ("dataset/z_empty_dir", Dir),
            ]
        );
        assert_eq!(s.file_paths, [d.join("a.txt"), d.join("empty"), d.join("sub/b.bin"), d.join("sub/deeper/c")]);
        let a = &s.entries[1];
        assert_eq!((a.size, a.mode, a.mtime_s, a.mtime_ns), (5, 0o640, 1_600_000_000, 123_456_789));
        assert_eq!(s.entries[2].size, 0);
        assert_eq!((s.entries[3].link_target.as_str(), s.entries[3].size), ("a.txt", 0));
        assert_eq!(s.entries[5].size, 1000);
        assert_eq!(s.entries[0].size, 0);

        let mut skipped: Vec<_> = s.skipped.iter().map(|(p, r)| (p.clone(), r.as_str())).collect();
        skipped.sort();
        assert_eq!(skipped, [(d.join("sock"), "socket")]);

        // Deterministic, and the same with a trailing slash or a `..` that needs canonicalizing.
        let again = scan_sources(std::slice::from_ref(&d)).unwrap();
        assert_eq!(again.entries, s.entries);
        let slash = scan_sources(&[PathBuf::from(format!("{}/", d.display()))]).unwrap();
        assert_eq!(slash.entries, s.entries);
        let dotdot = scan_sources(&[d.join("sub/..")]).unwrap();
        assert_eq!(dotdot.entries, s.entries);
    }

    #[test]
    fn single_files_and_several_sources() {
        let t = TempDir::new("scan");
        let d = make_tree(&t);
        fs::write(t.path().join("big.fastq"), b"ACGT").unwrap();
        let s = scan_sources(&[t.path().join("big.fastq"), d.join("sub")]).unwrap();
        let names: Vec<_> = s.entries.iter().map(|e| e.rel_path.as_str()).collect();
        assert_eq!(names, ["big.fastq", "sub", "sub/b.bin", "sub/deeper", "sub/deeper/c"]);
        assert_eq!(s.file_paths.len(), 3);
        assert_eq!(s.file_paths[0], t.path().join("big.fastq"));
    }

    #[test]
    fn top_level_symlink_is_sent_as_a_link_and_followed_with_a_slash() {
        let t = TempDir::new("scan");
        let d = make_tree(&t);
        symlink(d.join("sub"), t.path().join("alias")).unwrap();
        let s = scan_sources(&[t.path().join("alias")]).unwrap();
        assert_eq!(rels(&s), [("alias", EntryKind::Symlink)]);
        assert_eq!(s.entries[0].link_target, d.join("sub").to_str().unwrap());
        assert!(s.file_paths.is_empty());
        // `alias/` names the directory the link points to, as in cp and rsync.
        let s = scan_sources(&[PathBuf::from(format!("{}/", t.path().join("alias").display()))]).unwrap();
        assert_eq!(s.entries[0].rel_path, "alias");
        assert_eq!(s.entries[1].rel_path, "alias/b.bin");
    }

    #[test]
    fn hard_links_owners_sparseness_and_content_hashes() {
        let t = TempDir::new("scan-meta");
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("a"), b"same inode").unwrap();
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        fs::hard_link(d.join("a"), d.join("sub/c")).unwrap();
        let f = fs::File::create(d.join("holes")).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"x", 4 << 20).unwrap();
        let s = scan_sources(std::slice::from_ref(&d)).unwrap();
        use EntryKind::*;
        assert_eq!(
            rels(&s),
            [("d", Dir), ("d/a", File), ("d/b", HardLink), ("d/holes", File), ("d/sub", Dir), ("d/sub/c", HardLink)]
        );
        assert_eq!((s.entries[2].link_target.as_str(), s.entries[2].size), ("d/a", 0));
        assert_eq!(s.entries[5].link_target, "d/a");
        assert_eq!(s.file_paths, [d.join("a"), d.join("holes")], "the inode's bytes are sent once");
        let meta = fs::metadata(d.join("a")).unwrap();
        assert_eq!((s.entries[1].uid, s.entries[1].gid), (meta.uid(), meta.gid()));
        assert!(s.entries[3].sparse && !s.entries[1].sparse);
        assert!(s.entries.iter().all(|e| e.content_hash.is_none() && e.xattrs.is_empty()), "asked for neither");

        let opts = ScanOptions { checksum: true, ..ScanOptions::default() };
        let s = scan_sources_with(std::slice::from_ref(&d), &opts).unwrap();
        assert_eq!(s.entries[1].content_hash, Some(xxhash_rust::xxh3::xxh3_128(b"same inode")));
        let mut holes = vec![0u8; 8 << 20];
        holes[4 << 20] = b'x';
        assert_eq!(s.entries[3].content_hash, Some(xxhash_rust::xxh3::xxh3_128(&holes)));
        assert!(s.entries.iter().filter(|e| e.kind != File).all(|e| e.content_hash.is_none()));
    }

    #[test]
    fn files_from_sends_the_list_and_the_directories_leading_to_it() {
        use EntryKind::*;
        let t = TempDir::new("scan-list");
        let d = make_tree(&t);
        let list = |l: &[&str]| ScanOptions {
            files_from: Some(l.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let s = scan_sources_with(std::slice::from_ref(&d), &list(&["sub/deeper/c", "link", "a.txt", "sub/deeper/c"]))
            .unwrap();
        assert_eq!(
            rels(&s),
            [
                ("dataset", Dir),
                ("dataset/a.txt", File),
                ("dataset/link", Symlink),
                ("dataset/sub", Dir),
                ("dataset/sub/deeper", Dir),
                ("dataset/sub/deeper/c", File),
            ]
        );
        assert_eq!(s.file_paths, [d.join("a.txt"), d.join("sub/deeper/c")]);
        // A listed directory is sent as a directory, not with everything in it.
        let s = scan_sources_with(std::slice::from_ref(&d), &list(&["sub"])).unwrap();
        assert_eq!(rels(&s), [("dataset", Dir), ("dataset/sub", Dir)]);

        let err = |l: &[&str]| scan_sources_with(std::slice::from_ref(&d), &list(l)).unwrap_err().to_string();
        let e = err(&["../etc/passwd"]);
        assert!(e.contains("'../etc/passwd' in --files-from is not a path inside the source"), "{e}");
        assert!(err(&["/etc/passwd"]).contains("absolute"));
        let e = err(&["missing/file"]);
        assert!(e.contains("'missing' (a parent of a listed path) cannot be read"), "{e}");
        let e = err(&["sub/nope"]);
        assert!(e.contains("'sub/nope' (listed in --files-from) cannot be read"), "{e}");
        // Through a symlink to a directory: refused, never followed.
        symlink(d.join("sub"), d.join("via")).unwrap();
        assert!(err(&["via/b.bin"]).contains("'via' is a symbolic link"));
        assert!(err(&["a.txt/x"]).contains("not a directory"));
        let two = scan_sources_with(&[d.clone(), d.join("sub")], &list(&["a.txt"])).unwrap_err().to_string();
        assert!(two.contains("exactly one source directory"), "{two}");
    }

    #[test]
    fn errors() {
        let t = TempDir::new("scan");
        let d = make_tree(&t);
        let missing = t.path().join("x");
        let e = scan_sources(std::slice::from_ref(&missing)).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read '{}': No such file or directory", missing.display())), "{e}");

        fs::create_dir(t.path().join("other")).unwrap();
        fs::write(t.path().join("other/a.txt"), b"").unwrap();
        let e = scan_sources(&[d.join("a.txt"), t.path().join("other/a.txt")]).unwrap_err().to_string();
        assert!(e.contains("both be sent as 'a.txt'"), "{e}");
        let e = scan_sources(&[d.clone(), d.clone()]).unwrap_err().to_string();
        assert!(e.contains("'dataset'"), "{e}");
    }
}
