//! Paths a client names, confined to the server's root: where a push lands and what a pull may read.

use super::error::SessionError;
use crate::files::{resolve_under_root, sanitize_dest_dir, FileOp, FilesError, RelPath};
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// A path a client named, relative to `root`: the rules of a destination (`sanitize_dest_dir`), and with
/// `absolute_in_root` an absolute path is accepted when it lies inside `root` (as given or canonical),
/// which is then stripped.
pub fn path_under_root(root: &Path, path: &str, absolute_in_root: bool) -> Result<RelPath, SessionError> {
    if absolute_in_root && path.starts_with('/') {
        let canonical = fs::canonicalize(root).ok();
        let inside = [Some(root), canonical.as_deref()].into_iter().flatten().find_map(|r| {
            let rest = Path::new(path).strip_prefix(r).ok()?;
            rest.to_str().map(str::to_string)
        });
        return match inside {
            Some(rest) => Ok(sanitize_dest_dir(&rest).map_err(FilesError::from)?),
            None => Err(SessionError::OutsideRoot { path: path.to_string() }),
        };
    }
    Ok(sanitize_dest_dir(path).map_err(FilesError::from)?)
}

/// The file or directory `root/rel` for sending: every component below the root walked without following
/// symlinks (as for a destination), and the last one a regular file or directory itself, not a symlink.
pub fn source_under_root(root: &Path, rel: &RelPath) -> Result<PathBuf, SessionError> {
    let Some(parent) = rel.parent() else {
        // The root itself: sent under its own name.
        return fs::canonicalize(root)
            .map_err(|error| FilesError::Io { op: FileOp::Read, path: ".".into(), error }.into());
    };
    let dir = resolve_under_root(root, &parent).map_err(|e| FilesError::from(e).relative_to(root))?;
    let path = dir.join(rel.file_name().expect("a non-root path has a last component"));
    let meta = fs::symlink_metadata(&path).map_err(|error| FilesError::Io {
        op: FileOp::Read,
        path: rel.to_path_buf(),
        error,
    })?;
    let t = meta.file_type();
    if t.is_symlink() {
        return Err(SessionError::NotSendable {
            path: rel.to_string(),
            why: "is a symbolic link: not sent (symlink escape)",
        });
    }
    if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
        return Err(SessionError::NotSendable { path: rel.to_string(), why: "is not a regular file or directory" });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn absolute_paths_are_accepted_only_inside_the_root_and_only_when_allowed() {
        let t = TempDir::new("session-paths");
        let root = t.path().join("home");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&root, t.path().join("alias")).unwrap();
        let alias = t.path().join("alias");
        let ok =
            |r: &Path, p: &str, abs: bool| path_under_root(r, p, abs).map(|r| r.to_string()).map_err(|e| e.to_string());
        assert_eq!(ok(&root, "a/b", false).unwrap(), "a/b");
        assert_eq!(ok(&root, "", true).unwrap(), "");
        let inside = format!("{}/x/y", root.display());
        assert_eq!(ok(&root, &inside, true).unwrap(), "x/y");
        // The root as configured may be a symlink; its canonical path is inside too.
        assert_eq!(ok(&alias, &inside, true).unwrap(), "x/y");
        assert_eq!(ok(&alias, &format!("{}/x", alias.display()), true).unwrap(), "x");
        assert_eq!(ok(&root, &format!("{}/", root.display()), true).unwrap(), "");
        // The daemon refuses absolute paths; nobody gets out with `..` or a sibling with the same prefix.
        assert!(ok(&root, &inside, false).unwrap_err().contains("absolute"));
        assert!(ok(&root, "/etc/passwd", true).unwrap_err().contains("outside"));
        assert!(ok(&root, &format!("{}/../x", root.display()), true).unwrap_err().contains("'..'"));
        assert!(ok(&root, &format!("{}-other/x", root.display()), true).unwrap_err().contains("outside"));
        assert!(ok(&root, "../x", true).is_err());
    }

    #[test]
    fn sources_are_regular_files_or_directories_reached_without_symlinks() {
        let t = TempDir::new("session-sources");
        let root = t.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("d/link")).unwrap();
        let rel = |s: &str| crate::files::sanitize_relative(s).unwrap();
        assert_eq!(source_under_root(root, &rel("d/f")).unwrap(), root.join("d/f"));
        assert_eq!(source_under_root(root, &rel("d")).unwrap(), root.join("d"));
        assert!(source_under_root(root, &rel("d/link")).unwrap_err().to_string().contains("symlink"));
        assert!(source_under_root(root, &rel("d/link/passwd")).unwrap_err().to_string().contains("symlink"));
        assert!(source_under_root(root, &rel("d/missing")).unwrap_err().to_string().contains("No such file"));
        assert!(source_under_root(root, &rel("d/f/x")).is_err());
        assert_eq!(source_under_root(root, &RelPath::root()).unwrap(), fs::canonicalize(root).unwrap());
    }
}
