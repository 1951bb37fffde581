//! What a daemon sends for a pull, found and scanned beneath its root by descriptor (PROTOCOL.md §6.4): the
//! requested path is walked one no-follow step at a time from the root's descriptor, the tree is scanned
//! with [`scan_beneath`], and the files are later opened beneath the root too ([`crate::files::Opener`]).
//! A local process swapping a directory for a symlink at any moment can make the pull fail, never read
//! outside the root.

use super::error::SessionError;
use crate::files::{scan_beneath, Beneath, FileOp, FilesError, PathError, RelPath, Resolve, ScanOptions, Scanned};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

/// Scans `rel` under `root` for sending: every component below the root a real directory (a symlink is a
/// symlink escape), the last one a regular file or directory itself. Paths in errors are relative to the
/// root. `MOVER_RESOLVE=walk` forces the strict walk that stands in for `openat2` where it is missing.
pub fn scan_pull_source(root: &Path, rel: &RelPath, opts: &ScanOptions) -> Result<Scanned, SessionError> {
    // Named as the client knows it ('.'): what is sent to a client never shows where the root lies.
    let beneath = Beneath::new(root).map_err(|e| read_error(Path::new("."), e))?.with_resolve(Resolve::configured());
    let name = match rel.file_name() {
        Some(last) => {
            check_source(&beneath, rel)?;
            last.to_string()
        }
        // The root itself: sent under its own name.
        None => root_name(root)?,
    };
    Ok(scan_beneath(Arc::new(beneath), rel, name, opts)?)
}

/// Walks `rel` from the root without following anything, saying which component is a symlink.
fn check_source(beneath: &Beneath, rel: &RelPath) -> Result<(), SessionError> {
    let parts = rel.components();
    let mut dir = beneath.root().try_clone().map_err(|e| read_error(Path::new("."), e))?;
    let mut so_far = std::path::PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        let name = OsStr::new(part.as_str());
        so_far.push(part);
        let st = dir.stat(name).map_err(|e| read_error(&so_far, e))?;
        let last = i + 1 == parts.len();
        if st.is_symlink() {
            if last {
                return Err(SessionError::NotSendable {
                    path: rel.to_string(),
                    why: "is a symbolic link: not sent (symlink escape)",
                });
            }
            return Err(FilesError::from(PathError::SymlinkEscape { path: so_far }).into());
        }
        if last {
            if !st.is_dir() && !st.is_file() {
                return Err(SessionError::NotSendable {
                    path: rel.to_string(),
                    why: "is not a regular file or directory",
                });
            }
            return Ok(());
        }
        if !st.is_dir() {
            return Err(FilesError::from(PathError::NotADirectory { path: so_far }).into());
        }
        dir = dir.sub(name).map_err(|e| match dir.stat(name) {
            // Swapped for a symlink since the stat above.
            Ok(now) if now.is_symlink() => FilesError::from(PathError::SymlinkEscape { path: so_far.clone() }),
            _ => read_error(&so_far, e),
        })?;
    }
    Ok(())
}

fn root_name(root: &Path) -> Result<String, SessionError> {
    let canonical = std::fs::canonicalize(root).map_err(|e| read_error(Path::new("."), e))?;
    let name = canonical.file_name().and_then(|n| n.to_str()).ok_or_else(|| FilesError::Source {
        path: ".".into(),
        problem: "the root has no name to send it under".into(),
    })?;
    Ok(name.to_string())
}

fn read_error(rel: &Path, error: std::io::Error) -> FilesError {
    FilesError::Io { op: FileOp::Read, path: rel.to_path_buf(), error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::EntryKind;
    use crate::testing::TempDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn rel(s: &str) -> RelPath {
        crate::files::sanitize_relative(s).unwrap()
    }

    #[test]
    fn sources_are_regular_files_or_directories_reached_without_symlinks() {
        let t = TempDir::new("pull-sources");
        let root = t.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), b"x").unwrap();
        symlink("/etc", root.join("d/link")).unwrap();
        let opts = ScanOptions::default();
        let err = |s: &str| scan_pull_source(root, &rel(s), &opts).unwrap_err().to_string();
        let f = scan_pull_source(root, &rel("d/f"), &opts).unwrap();
        assert_eq!(f.entries[0].rel_path, "f");
        assert_eq!(f.file_paths, [Path::new("d/f")], "relative to the root");
        let d = scan_pull_source(root, &rel("d"), &opts).unwrap();
        let names: Vec<_> = d.entries.iter().map(|e| (e.rel_path.as_str(), e.kind)).collect();
        assert_eq!(names, [("d", EntryKind::Dir), ("d/f", EntryKind::File), ("d/link", EntryKind::Symlink)]);
        assert!(err("d/link").contains("symlink escape"));
        let e = err("d/link/passwd");
        assert!(e.contains("symlink escape") && e.contains("'d/link'"), "{e}");
        assert!(err("d/missing").contains("No such file"));
        assert!(scan_pull_source(root, &rel("d/f/x"), &opts).is_err());
        let whole = scan_pull_source(root, &RelPath::root(), &opts).unwrap();
        let canonical = fs::canonicalize(root).unwrap();
        assert_eq!(whole.entries[0].rel_path, canonical.file_name().unwrap().to_str().unwrap());
        for e in [err("d/link"), err("d/link/passwd"), err("d/missing")] {
            assert!(!e.contains(&*root.to_string_lossy()), "the root's path shows: {e}");
        }
    }
}
