//! Validating relative paths that arrive from the network or the command line.
//!
//! Every path the receiver writes to is built from a [`RelPath`], and the only ways to get one are
//! [`sanitize_relative`], [`sanitize_dest_dir`] and [`RelPath::root`]. A `RelPath` therefore can never name
//! anything above the directory it is joined to by its *text*; symlinks on disk are the other way out, and
//! `files::beneath` deals with those (by descriptor).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Longest accepted single component, in bytes (`NAME_MAX` on Linux file systems).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Longest accepted relative path, in bytes (`PATH_MAX` on Linux).
pub const MAX_PATH_LEN: usize = 4096;

/// A validated relative path: one or more components (none for the root), each non-empty, not `.` or `..`,
/// without `/` or NUL, at most [`MAX_COMPONENT_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath {
    components: Vec<String>,
}

impl RelPath {
    /// The root itself (no components): joined to a directory it names that directory.
    pub fn root() -> RelPath {
        RelPath { components: Vec::new() }
    }

    /// True for [`RelPath::root`].
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The path without its last component, or `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        let (_, init) = self.components.split_last()?;
        Some(RelPath { components: init.to_vec() })
    }

    /// `self` followed by `other`. Both are valid, so the result is too (except that it may exceed
    /// [`MAX_PATH_LEN`], which the OS then reports as `ENAMETOOLONG`).
    pub fn join(&self, other: &RelPath) -> RelPath {
        let mut components = self.components.clone();
        components.extend(other.components.iter().cloned());
        RelPath { components }
    }

    /// The path as a relative `PathBuf` (empty for the root).
    pub fn to_path_buf(&self) -> PathBuf {
        self.components.iter().collect()
    }
}

impl fmt::Display for RelPath {
    /// `/`-separated, as it appears in a manifest (empty for the root).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(c)?;
        }
        Ok(())
    }
}

/// Why a path was refused.
///
/// The text variants carry the offending path as received; the on-disk variants carry the path that was
/// refused (relative to the root from a `DestTree`, the full path of the component from pull's walk).
#[derive(Debug)]
pub enum PathError {
    /// The path is empty.
    Empty,
    /// The path starts with `/`.
    Absolute {
        /// The refused path.
        path: String,
    },
    /// A component is `..`.
    DotDot {
        /// The refused path.
        path: String,
    },
    /// A component is `.`.
    Dot {
        /// The refused path.
        path: String,
    },
    /// Two consecutive slashes, or a trailing slash.
    EmptyComponent {
        /// The refused path.
        path: String,
    },
    /// The path contains a NUL byte.
    Nul {
        /// The refused path.
        path: String,
    },
    /// A component is longer than [`MAX_COMPONENT_LEN`] bytes.
    ComponentTooLong {
        /// The refused path.
        path: String,
        /// Length of the offending component in bytes.
        len: usize,
    },
    /// The path is longer than [`MAX_PATH_LEN`] bytes.
    TooLong {
        /// The refused path.
        path: String,
        /// Its length in bytes.
        len: usize,
    },
    /// An existing component is a symbolic link (following it could lead outside the root).
    SymlinkEscape {
        /// The symlink.
        path: PathBuf,
    },
    /// An existing component that must be a directory is something else.
    NotADirectory {
        /// The offending file.
        path: PathBuf,
    },
    /// The file system said no (lstat or mkdir failed).
    Io {
        /// The path being examined or created.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
}

/// Renders an untrusted path for an error message: control characters escaped (a path may contain a
/// newline or an escape sequence aimed at the terminal), and very long paths shortened.
fn shown(path: &str) -> String {
    const LIMIT: usize = 200;
    let mut out = String::new();
    for (i, c) in path.chars().enumerate() {
        if i == LIMIT {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => write!(f, "refused path '': the path is empty"),
            PathError::Absolute { path } => {
                write!(f, "refused path '{}': absolute paths are not allowed", shown(path))
            }
            PathError::DotDot { path } => {
                write!(f, "refused path '{}': '..' components are not allowed", shown(path))
            }
            PathError::Dot { path } => {
                write!(f, "refused path '{}': '.' components are not allowed", shown(path))
            }
            PathError::EmptyComponent { path } => {
                write!(f, "refused path '{}': empty components ('//' or a trailing '/') are not allowed", shown(path))
            }
            PathError::Nul { path } => {
                write!(f, "refused path '{}': NUL bytes are not allowed", shown(path))
            }
            PathError::ComponentTooLong { path, len } => write!(
                f,
                "refused path '{}': a component is {len} bytes long, the limit is {MAX_COMPONENT_LEN}",
                shown(path)
            ),
            PathError::TooLong { path, len } => {
                write!(f, "refused path '{}': it is {len} bytes long, the limit is {MAX_PATH_LEN}", shown(path))
            }
            PathError::SymlinkEscape { path } => write!(
                f,
                "refused '{}': it is a symbolic link, which could lead outside the destination (symlink escape)",
                shown(&path.to_string_lossy())
            ),
            PathError::NotADirectory { path } => {
                write!(f, "refused '{}': it exists and is not a directory", shown(&path.to_string_lossy()))
            }
            PathError::Io { path, error } => {
                write!(f, "'{}': {error}", shown(&path.to_string_lossy()))
            }
        }
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PathError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Validates a relative path from a manifest or a user: `/`-separated, at least one component.
///
/// Refused: the empty path, absolute paths, `.` and `..` components, empty components (`a//b`, `a/`),
/// NUL bytes, components over [`MAX_COMPONENT_LEN`] bytes and paths over [`MAX_PATH_LEN`] bytes.
/// Backslashes, spaces, newlines and any other bytes are ordinary name bytes on Unix and are kept.
pub fn sanitize_relative(path: &str) -> Result<RelPath, PathError> {
    let owned = || path.to_string();
    // NUL first: everything below would otherwise be judged on a path the OS would silently cut short.
    if path.contains('\0') {
        return Err(PathError::Nul { path: owned() });
    }
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong { path: owned(), len: path.len() });
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute { path: owned() });
    }
    let mut components = Vec::new();
    for c in path.split('/') {
        match c {
            "" => return Err(PathError::EmptyComponent { path: owned() }),
            "." => return Err(PathError::Dot { path: owned() }),
            ".." => return Err(PathError::DotDot { path: owned() }),
            _ if c.len() > MAX_COMPONENT_LEN => {
                return Err(PathError::ComponentTooLong { path: owned(), len: c.len() })
            }
            _ => components.push(c.to_string()),
        }
    }
    Ok(RelPath { components })
}

/// Validates a destination directory taken from a URL, after the caller has stripped exactly one leading
/// `/` (so `mover://host/projects/run42` arrives here as `projects/run42`).
///
/// The empty string means the server root itself. A single trailing `/` is accepted (`projects/run42/`),
/// since users type directories that way. Everything else follows [`sanitize_relative`]; in particular a
/// path that is still absolute (`//etc` in the URL) is refused.
pub fn sanitize_dest_dir(path: &str) -> Result<RelPath, PathError> {
    if path.is_empty() {
        return Ok(RelPath::root());
    }
    let trimmed = match path.strip_suffix('/') {
        // "/" alone stays "/" so that it is refused as absolute (it would be "//" in the URL).
        Some(t) if !t.is_empty() => t,
        _ => path,
    };
    sanitize_relative(trimmed).map_err(|e| match e {
        // Report the path as the caller gave it, not the trimmed one.
        PathError::Absolute { .. } => PathError::Absolute { path: path.to_string() },
        PathError::EmptyComponent { .. } => PathError::EmptyComponent { path: path.to_string() },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Vec<String> {
        match sanitize_relative(p) {
            Ok(r) => r.components().to_vec(),
            Err(e) => panic!("{p:?} refused: {e}"),
        }
    }

    #[test]
    fn accepts_ordinary_paths() {
        assert_eq!(ok("a"), ["a"]);
        assert_eq!(ok("dataset/sub/a.txt"), ["dataset", "sub", "a.txt"]);
        assert_eq!(ok(".hidden/..x/x.."), [".hidden", "..x", "x.."]);
        assert_eq!(ok("back\\slash"), ["back\\slash"]);
        assert_eq!(ok("sp ace/new\nline"), ["sp ace", "new\nline"]);
        let r = sanitize_relative("a/b/c").unwrap();
        assert_eq!(r.to_string(), "a/b/c");
        assert_eq!(r.file_name(), Some("c"));
        assert_eq!(r.parent().unwrap().to_string(), "a/b");
        assert_eq!(r.to_path_buf(), PathBuf::from("a/b/c"));
    }

    #[test]
    fn refuses_each_bad_form() {
        assert!(matches!(sanitize_relative(""), Err(PathError::Empty)));
        assert!(matches!(sanitize_relative("/etc/passwd"), Err(PathError::Absolute { .. })));
        assert!(matches!(sanitize_relative("/"), Err(PathError::Absolute { .. })));
        assert!(matches!(sanitize_relative(".."), Err(PathError::DotDot { .. })));
        assert!(matches!(sanitize_relative("a/../b"), Err(PathError::DotDot { .. })));
        assert!(matches!(sanitize_relative("a/.."), Err(PathError::DotDot { .. })));
        assert!(matches!(sanitize_relative("."), Err(PathError::Dot { .. })));
        assert!(matches!(sanitize_relative("./a"), Err(PathError::Dot { .. })));
        assert!(matches!(sanitize_relative("a//b"), Err(PathError::EmptyComponent { .. })));
        assert!(matches!(sanitize_relative("a/"), Err(PathError::EmptyComponent { .. })));
        assert!(matches!(sanitize_relative("a\0b"), Err(PathError::Nul { .. })));
        assert!(matches!(sanitize_relative("\0"), Err(PathError::Nul { .. })));
    }

    #[test]
    fn refuses_too_long() {
        let c255 = "x".repeat(255);
        assert_eq!(ok(&c255).len(), 1);
        let c256 = "x".repeat(256);
        assert!(matches!(sanitize_relative(&format!("a/{c256}")), Err(PathError::ComponentTooLong { len: 256, .. })));
        // 15 components of 255 bytes, one of 254 and one of 1, plus 16 slashes = 4096 bytes: accepted;
        // one more byte is not.
        let at_limit = vec![c255.as_str(); 15].join("/") + "/" + &"x".repeat(254) + "/y";
        assert_eq!(at_limit.len(), 4096);
        assert_eq!(ok(&at_limit).len(), 17);
        let over = at_limit + "z";
        assert!(matches!(sanitize_relative(&over), Err(PathError::TooLong { len: 4097, .. })));
        // The message does not print all 4097 bytes.
        assert!(sanitize_relative(&over).unwrap_err().to_string().len() < 400);
    }

    #[test]
    fn messages_name_the_path_and_reason() {
        let e = sanitize_relative("a/../b").unwrap_err();
        assert_eq!(e.to_string(), "refused path 'a/../b': '..' components are not allowed");
        let e = sanitize_relative("x\n/../\u{1b}[2J").unwrap_err();
        assert!(!e.to_string().contains('\n') && !e.to_string().contains('\u{1b}'), "{e}");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("'..'"));
    }

    #[test]
    fn dest_dir_root_and_strictness() {
        assert!(sanitize_dest_dir("").unwrap().is_root());
        assert_eq!(sanitize_dest_dir("projects/run42").unwrap().to_string(), "projects/run42");
        assert_eq!(sanitize_dest_dir("projects/run42/").unwrap().to_string(), "projects/run42");
        // "//etc" in the URL arrives as "/etc"; "/" in the URL path "//" arrives as "/".
        assert!(matches!(sanitize_dest_dir("/etc"), Err(PathError::Absolute { .. })));
        assert!(matches!(sanitize_dest_dir("/"), Err(PathError::Absolute { .. })));
        assert!(matches!(sanitize_dest_dir("a//"), Err(PathError::EmptyComponent { .. })));
        assert!(matches!(sanitize_dest_dir("a/../b"), Err(PathError::DotDot { .. })));
        assert!(matches!(sanitize_dest_dir("a/./b"), Err(PathError::Dot { .. })));
        assert!(RelPath::root().join(&sanitize_relative("a").unwrap()).to_string() == "a");
        assert!(RelPath::root().parent().is_none());
    }
}
