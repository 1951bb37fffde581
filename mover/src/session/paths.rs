//! Paths a client names, confined to the server's root: where a push lands and what a pull asks for
//! (read beneath the root by descriptor: `pull_source`), by the rule of the server ([`PathRule`]).

use super::error::SessionError;
use crate::files::{sanitize_dest_dir, FilesError, RelPath};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// How a server maps the paths its clients name onto its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRule {
    /// Relative paths only, beneath the root: the daemon (`mover serve --root DIR`).
    Relative,
    /// Relative to the root, or absolute and inside it: `serve --stdio --root DIR` (the client's
    /// `--remote-root`), so that `host:/home/me/x` works as scp users write it.
    AbsoluteInRoot,
    /// `serve --stdio` without `--root`, as scp and rsync do it: the user's own account is the confinement.
    /// The root is `/`, an absolute path is taken as it is and a relative one is relative to `home`. What
    /// already exists on the way is resolved (symbolic links followed, as scp follows them) before the
    /// session starts; what the session creates below is then handled beneath by descriptor like any
    /// root's.
    Account {
        /// The remote user's home directory (`$HOME`).
        home: PathBuf,
    },
}

impl PathRule {
    /// The root a server with this rule serves: `/` for [`PathRule::Account`], else `configured`.
    pub fn root(&self, configured: &Path) -> PathBuf {
        match self {
            PathRule::Account { .. } => PathBuf::from("/"),
            _ => configured.to_path_buf(),
        }
    }

    /// `path` as the client named it, relative to the root. `follow_last`: whether a symbolic link as the
    /// last component is followed under [`PathRule::Account`] (yes for a push's destination directory,
    /// no for what a pull reads, which must not be a link, as with a daemon).
    pub fn resolve(&self, root: &Path, path: &str, follow_last: bool) -> Result<RelPath, SessionError> {
        match self {
            PathRule::Relative => path_under_root(root, path, false),
            PathRule::AbsoluteInRoot => path_under_root(root, path, true),
            PathRule::Account { home } => account_path(home, path, follow_last),
        }
    }
}

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

/// [`PathRule::Account`]: `path` (absolute, or relative to `home`) relative to `/`, with the part that
/// exists resolved to its canonical form (the descriptor-based operations beneath the root refuse every
/// symbolic link, and `/home` or `/tmp` may well be one). What does not exist yet must be plain names:
/// `..` there is refused, as anywhere.
fn account_path(home: &Path, path: &str, follow_last: bool) -> Result<RelPath, SessionError> {
    let full = if path.starts_with('/') { PathBuf::from(path) } else { home.join(path) };
    // The last component is kept as it is when it must not be followed (and is an ordinary name).
    let (resolve, last) = match (follow_last, full.components().next_back()) {
        (false, Some(Component::Normal(name))) => (full.parent().unwrap_or(Path::new("/")), Some(name)),
        _ => (full.as_path(), None),
    };
    let mut resolved = canonical_prefix(resolve);
    if let Some(name) = last {
        resolved.push(name);
    }
    let rel = resolved.strip_prefix("/").unwrap_or(&resolved);
    let rel = rel.to_str().ok_or_else(|| SessionError::NotAllowed(format!("'{path}' is not valid UTF-8")))?;
    Ok(sanitize_dest_dir(rel).map_err(FilesError::from)?)
}

/// `path` with its longest existing prefix canonical (symbolic links, `.` and `..` resolved) and the rest
/// appended as written.
fn canonical_prefix(path: &Path) -> PathBuf {
    for prefix in path.ancestors() {
        if let Ok(canonical) = fs::canonicalize(prefix) {
            let rest = path.strip_prefix(prefix).unwrap_or(Path::new(""));
            return if rest.as_os_str().is_empty() { canonical } else { canonical.join(rest) };
        }
    }
    path.to_path_buf()
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
    fn the_account_rule_takes_absolute_paths_and_relative_ones_from_home() {
        let t = TempDir::new("session-paths-account");
        let home = t.path().join("home");
        let real = t.path().join("real");
        fs::create_dir_all(home.join("projects")).unwrap();
        fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(&real, home.join("link")).unwrap();
        let canon = |p: &Path| fs::canonicalize(p).unwrap().to_str().unwrap().trim_start_matches('/').to_string();
        let rule = PathRule::Account { home: home.clone() };
        let ok = |p: &str, follow: bool| rule.resolve(Path::new("/"), p, follow).map(|r| r.to_string());
        assert_eq!(rule.root(Path::new("/ignored")), Path::new("/"));
        // Relative: under home; missing components are kept as named.
        assert_eq!(ok("projects/new/dir", true).unwrap(), format!("{}/projects/new/dir", canon(&home)));
        assert_eq!(ok("", true).unwrap(), canon(&home));
        // Absolute: as it is, anywhere the account may write.
        assert_eq!(ok(real.to_str().unwrap(), true).unwrap(), canon(&real));
        // A link on the way is followed; as the last component only when asked (a push's destination).
        assert_eq!(ok("link/x", false).unwrap(), format!("{}/x", canon(&real)));
        assert_eq!(ok("link", true).unwrap(), canon(&real));
        assert_eq!(ok("link", false).unwrap(), format!("{}/link", canon(&home)));
        // `..` that exists resolves; `..` below what does not exist is refused.
        assert_eq!(ok("../real", true).unwrap(), canon(&real));
        assert!(ok("missing/../x", true).unwrap_err().to_string().contains("'..'"));
        // The other rules are unchanged.
        assert!(PathRule::Relative.resolve(&home, "/etc", true).is_err());
        assert_eq!(
            PathRule::AbsoluteInRoot.resolve(&home, home.join("a").to_str().unwrap(), true).unwrap().to_string(),
            "a"
        );
    }
}
