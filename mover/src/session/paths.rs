//! Paths a client names, confined to the server's root: where a push lands and what a pull asks for
//! (read beneath the root by descriptor: `pull_source`).

use super::error::SessionError;
use crate::files::{sanitize_dest_dir, FilesError, RelPath};
use std::fs;
use std::path::Path;

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
}
