//! Scanning the sender's sources into a manifest.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::error::{FileOp, FilesError};
use super::sanitize::sanitize_relative;
use crate::wire::entry::{Entry, EntryKind};

/// The result of [`scan_sources`]: the manifest and where to read each file from.
#[derive(Clone, Debug, Default)]
pub struct Scanned {
    /// The manifest, directories before their contents, siblings sorted by name (byte order).
    pub entries: Vec<Entry>,
    /// The openable path of each regular file; index = file id (the n-th `File` entry of `entries`).
    pub file_paths: Vec<PathBuf>,
    /// Things that were not sent, with the reason: symlinks, sockets, devices, FIFOs, names that are not
    /// UTF-8 or would be refused by the receiver, directories that could not be listed, files that vanished
    /// during the scan.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Scans `srcs` the way `cp -r SRC... DIR/` lays them out: each source goes under its own name, so
/// `./dataset` gives `dataset`, `dataset/a.txt`, `dataset/sub`, ... and `big.fastq` gives `big.fastq`.
///
/// - A source's name is the last component as typed (`dataset/` and `dataset/.` are `dataset`); a source
///   with no usable last component (`.`, `..`, `a/..`) is canonicalized to find its real name.
/// - A source that is a symlink is followed (the user named it explicitly, like `cp -H`); symlinks found
///   *inside* a directory are skipped.
/// - A source that does not exist or cannot be read, a top-level directory that cannot be listed, and two
///   sources with the same name are errors. Problems below a source are recorded in
///   [`Scanned::skipped`] instead, so one odd file does not stop a large transfer.
///
/// Sizes, modes and mtimes come from `lstat` at scan time; a file that changes afterwards is caught when it
/// is read (shrunk) or by the receiver's hash.
pub fn scan_sources(srcs: &[PathBuf]) -> Result<Scanned, FilesError> {
    let mut out = Scanned::default();
    let mut names: HashMap<String, &Path> = HashMap::new();
    for src in srcs {
        // Follows a symlink given on the command line (see above).
        let meta = fs::metadata(src).map_err(|e| cannot_read(src, e))?;
        let name = source_name(src)?;
        if let Some(prev) = names.insert(name.clone(), src) {
            return Err(FilesError::DuplicateName { name, first: prev.to_path_buf(), second: src.clone() });
        }
        // Absolute, so that the paths stay valid if the process changes directory later.
        let path = std::path::absolute(src).map_err(|e| cannot_read(src, e))?;
        if meta.is_dir() {
            let children = list_dir(&path).map_err(|e| cannot_read(src, e))?;
            out.entries.push(entry(name.clone(), EntryKind::Dir, &meta));
            walk(&path, &name, children, &mut out);
        } else if meta.is_file() {
            out.entries.push(entry(name, EntryKind::File, &meta));
            out.file_paths.push(path);
        } else {
            out.skipped.push((path, not_sent_reason(&meta.file_type()).to_string()));
        }
    }
    // File ids travel as u32.
    if u32::try_from(out.file_paths.len()).is_err() {
        return Err(FilesError::TooManyFiles { count: out.file_paths.len() });
    }
    Ok(out)
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

/// Appends the (already listed) contents of the directory `dir`, sent as `rel`, depth first.
fn walk(dir: &Path, rel: &str, children: Vec<(OsString, PathBuf)>, out: &mut Scanned) {
    debug_assert!(children.iter().all(|(_, p)| p.starts_with(dir)));
    for (name, path) in children {
        let Some(name) = name.to_str() else {
            out.skipped.push((path, "name is not valid UTF-8".to_string()));
            continue;
        };
        let child_rel = format!("{rel}/{name}");
        if let Err(e) = sanitize_relative(&child_rel) {
            // E.g. a path over 4096 bytes: the receiver would refuse the whole manifest.
            out.skipped.push((path, e.to_string()));
            continue;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                // Typically removed between the listing and now.
                out.skipped.push((path, format!("cannot read: {e}")));
                continue;
            }
        };
        let t = meta.file_type();
        if t.is_file() {
            out.entries.push(entry(child_rel, EntryKind::File, &meta));
            out.file_paths.push(path);
        } else if t.is_dir() {
            match list_dir(&path) {
                Ok(grandchildren) => {
                    out.entries.push(entry(child_rel.clone(), EntryKind::Dir, &meta));
                    walk(&path, &child_rel, grandchildren, out);
                }
                Err(e) => out.skipped.push((path, format!("cannot read directory: {e}"))),
            }
        } else {
            out.skipped.push((path, not_sent_reason(&t).to_string()));
        }
    }
}

fn not_sent_reason(t: &fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symbolic link (not followed)"
    } else if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "not a regular file or directory"
    }
}

fn entry(rel_path: String, kind: EntryKind, meta: &fs::Metadata) -> Entry {
    Entry {
        rel_path,
        kind,
        size: if kind == EntryKind::File { meta.size() } else { 0 },
        mode: meta.mode() & 0o7777,
        mtime_s: meta.mtime(),
        // Always 0..1e9 from the kernel; clamp rather than trust it blindly.
        mtime_ns: u32::try_from(meta.mtime_nsec().clamp(0, 999_999_999)).unwrap_or(0),
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
        assert_eq!(s.entries[4].size, 1000);
        assert_eq!(s.entries[0].size, 0);

        let mut skipped: Vec<_> = s.skipped.iter().map(|(p, r)| (p.clone(), r.as_str())).collect();
        skipped.sort();
        assert_eq!(skipped, [(d.join("link"), "symbolic link (not followed)"), (d.join("sock"), "socket")]);

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
    fn top_level_symlink_is_followed_under_its_own_name() {
        let t = TempDir::new("scan");
        let d = make_tree(&t);
        symlink(d.join("sub"), t.path().join("alias")).unwrap();
        let s = scan_sources(&[t.path().join("alias")]).unwrap();
        assert_eq!(s.entries[0].rel_path, "alias");
        assert_eq!(s.entries[1].rel_path, "alias/b.bin");
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
