//! Checking a path below a root without following symlinks, by an `lstat` walk: what pull's source
//! resolution (`session::paths::source_under_root`) still uses until it moves onto descriptors too.
//!
//! The receiver no longer uses this: every write below its root goes by descriptor ([`super::beneath`]),
//! which has no window between the check and the use. A walk by path does have one (a directory swapped
//! for a symlink after its `lstat`), so new code uses [`super::Beneath`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::sanitize::{PathError, RelPath};

/// Walks `root/rel` one component at a time with `lstat` and creates nothing: every component that exists
/// must be a real directory (not a symlink); components that do not exist are fine, so the returned
/// `root/rel` may not exist yet. `root` itself is trusted (it is the server's configuration, and may be a
/// symlink such as /data -> /mnt/data).
pub fn resolve_under_root(root: &Path, rel: &RelPath) -> Result<PathBuf, PathError> {
    let mut path = root.to_path_buf();
    let mut absent = false;
    for c in rel.components() {
        path.push(c);
        if absent {
            // An ancestor is missing: nothing below it can exist.
            continue;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(PathError::SymlinkEscape { path }),
            Ok(meta) if !meta.is_dir() => return Err(PathError::NotADirectory { path }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => absent = true,
            Err(error) => return Err(PathError::Io { path, error }),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::sanitize::sanitize_relative;
    use crate::testing::TempDir;
    use std::os::unix::fs::symlink;

    fn rel(s: &str) -> RelPath {
        sanitize_relative(s).unwrap()
    }

    #[test]
    fn resolves_real_directories_and_creates_nothing() {
        let t = TempDir::new("confine");
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        assert_eq!(resolve_under_root(t.path(), &rel("a/b")).unwrap(), t.path().join("a/b"));
        assert_eq!(resolve_under_root(t.path(), &RelPath::root()).unwrap(), t.path());
        assert_eq!(resolve_under_root(t.path(), &rel("x/y")).unwrap(), t.path().join("x/y"));
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn refuses_symlinks_and_files_on_the_way() {
        let t = TempDir::new("confine-root");
        let outside = TempDir::new("confine-outside");
        symlink(outside.path(), t.path().join("link")).unwrap();
        let e = resolve_under_root(t.path(), &rel("link/x")).unwrap_err();
        assert!(matches!(e, PathError::SymlinkEscape { ref path } if path == &t.path().join("link")), "{e}");
        assert!(e.to_string().contains("symlink escape"), "{e}");
        fs::write(t.path().join("f"), b"x").unwrap();
        assert!(matches!(resolve_under_root(t.path(), &rel("f/sub")), Err(PathError::NotADirectory { .. })));
    }
}
