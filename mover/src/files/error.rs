//! What can go wrong on the file system side, typed, with paths that are safe to show a peer.
//!
//! A daemon sends a refusal's text to its client. So every path in a [`FilesError`] is relative to the
//! root the operation was confined to (the daemon's `--root`, a puller's destination), or, where there is
//! no root (a sender's own sources), as the user typed it. The daemon then sends `err.to_string()` as is.

use super::sanitize::PathError;
use crate::exit::{io_fix, ExitClass};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// How [`FilesError::PartialBusy`]'s text begins: a client reads it in a peer's failure message to know the
/// failure passes (retryable, like a full queue) when the other session is done with the file.
pub const PARTIAL_BUSY: &str = "another transfer is writing";

/// The file system operation that failed, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// `stat`/`lstat`, or opening a source to read it.
    Read,
    /// Looking at the destination's root directory.
    Root,
}

/// A file system error, typed; its `Display` never names a directory above the root it was confined to.
#[derive(Debug)]
pub enum FilesError {
    /// A path refused by the rules: as a peer or user wrote it, or a component met on disk (a symlink, a
    /// non-directory), relative to the root.
    Path(PathError),
    /// A manifest that contradicts itself or the rules; `entry` is its index, `problem` says how.
    Manifest {
        /// Index of the offending entry in the manifest.
        entry: usize,
        /// What is wrong with it (the entry's path, as the peer sent it, is part of the text).
        problem: String,
    },
    /// An operation on a path failed.
    Io {
        /// What was being done.
        op: FileOp,
        /// The path, relative to the root (or as typed, without one).
        path: PathBuf,
        /// What the OS said (its text names no path).
        error: io::Error,
    },
    /// A final name exists as something a transfer must not replace (a directory, symlink, device, ...).
    NotReplaceable {
        /// The final name, relative to the root.
        path: PathBuf,
        /// What it is: "directory", "symbolic link", "device file", "FIFO", "socket", "special file".
        what: &'static str,
    },
    /// The destination's root is not a directory.
    RootNotADirectory {
        /// The root as configured (a local path: only its owner sees this).
        path: PathBuf,
    },
    /// A source cannot be sent: it has no usable name, its name is not UTF-8 or would be refused, or two
    /// sources share a name.
    Source {
        /// The source as typed.
        path: PathBuf,
        /// Why it cannot be sent.
        problem: String,
    },
    /// Two sources would be sent under the same name.
    DuplicateName {
        /// The name both would have.
        name: String,
        /// The first source, as typed.
        first: PathBuf,
        /// The second source, as typed.
        second: PathBuf,
    },
    /// More files than file ids (u32).
    TooManyFiles {
        /// How many there were.
        count: usize,
    },
    /// Opening, locking, reading or removing a partial file (or its journal) failed.
    Partial {
        /// The partial, relative to the root.
        path: PathBuf,
        /// What was being done ("opening", "checking", "removing", ...).
        op: &'static str,
        /// What the OS said.
        error: io::Error,
    },
    /// Another session holds the lock of a partial file: it is writing the same file right now.
    PartialBusy {
        /// The final name, relative to the root.
        path: PathBuf,
    },
    /// The disk filled while writing a file. Its partial (and journal) are kept, so the same command
    /// resumes once there is space.
    DiskFull {
        /// The final name of the file being written, relative to the root.
        path: PathBuf,
    },
}

impl FilesError {
    /// The exit code's class (crate::exit): a missing source is [`ExitClass::SourceNotFound`]; the rest
    /// (refused paths, a full disk, permissions) is [`ExitClass::Failure`], which a rerun does not fix.
    pub fn exit_class(&self) -> ExitClass {
        match self {
            FilesError::Io { op: FileOp::Read, error, .. } => ExitClass::of_io(error, true),
            // The other session ends (done, failed, or its own wait for a lock times out): the same command
            // later finds the partial free.
            FilesError::PartialBusy { .. } => ExitClass::Retryable,
            FilesError::Path(PathError::Io { error, .. }) => ExitClass::of_io(error, false),
            _ => ExitClass::Failure,
        }
    }

    /// The same error with every path made relative to `root` (a path equal to `root` becomes `.`): for a
    /// failure met below a root that must not be shown, such as the daemon's.
    pub fn relative_to(self, root: &Path) -> FilesError {
        let rel = |p: PathBuf| relative(&p, root);
        match self {
            FilesError::Path(e) => FilesError::Path(match e {
                PathError::SymlinkEscape { path } => PathError::SymlinkEscape { path: rel(path) },
                PathError::NotADirectory { path } => PathError::NotADirectory { path: rel(path) },
                PathError::Io { path, error } => PathError::Io { path: rel(path), error },
                text => text,
            }),
            FilesError::Io { op, path, error } => FilesError::Io { op, path: rel(path), error },
            FilesError::NotReplaceable { path, what } => FilesError::NotReplaceable { path: rel(path), what },
            FilesError::RootNotADirectory { path } => FilesError::RootNotADirectory { path: rel(path) },
            FilesError::Source { path, problem } => FilesError::Source { path: rel(path), problem },
            FilesError::Partial { path, op, error } => FilesError::Partial { path: rel(path), op, error },
            FilesError::PartialBusy { path } => FilesError::PartialBusy { path: rel(path) },
            FilesError::DiskFull { path } => FilesError::DiskFull { path: rel(path) },
            other => other,
        }
    }
}

/// `path` below `root` as a relative path, `.` for the root itself, unchanged if it is not below `root`.
pub fn relative(path: &Path, root: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(r) if r.as_os_str().is_empty() => PathBuf::from("."),
        Ok(r) => r.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

impl fmt::Display for FilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilesError::Path(e @ PathError::Io { error, .. }) => match io_fix(error) {
                Some(fix) => write!(f, "{e}; {fix}"),
                None => e.fmt(f),
            },
            FilesError::Path(e) => e.fmt(f),
            FilesError::Manifest { entry, problem } => write!(f, "manifest entry {entry}: {problem}"),
            FilesError::Io { op: FileOp::Read, path, error } => write!(f, "cannot read '{}': {error}", path.display()),
            FilesError::Io { op: FileOp::Root, path, error } => {
                write!(f, "destination root '{}': {error}", path.display())?;
                io_fix(error).map_or(Ok(()), |fix| write!(f, "; {fix}"))
            }
            FilesError::NotReplaceable { path, what } => {
                write!(f, "refusing to replace '{}': it is a {what}", path.display())
            }
            FilesError::RootNotADirectory { path } => {
                write!(f, "destination root '{}' is not a directory", path.display())
            }
            FilesError::Source { path, problem } => write!(f, "cannot send '{}': {problem}", path.display()),
            FilesError::DuplicateName { name, first, second } => write!(
                f,
                "two sources would both be sent as '{name}': '{}' and '{}'",
                first.display(),
                second.display()
            ),
            FilesError::TooManyFiles { count } => write!(f, "too many files: {count} (the limit is {})", u32::MAX),
            FilesError::Partial { path, op, error } => {
                write!(f, "{op} the partial file '{}': {error}{}", path.display(), super::emfile_hint(error))
            }
            FilesError::PartialBusy { path } => {
                write!(f, "{PARTIAL_BUSY} '{}'; wait for it or stop it", path.display())
            }
            FilesError::DiskFull { path } => write!(
                f,
                "writing '{}': No space left on device; free space and run the same command again to resume \
                 (the partial file is kept)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for FilesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FilesError::Path(e) => Some(e),
            FilesError::Io { error, .. } | FilesError::Partial { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl FilesError {
    /// The `io::ErrorKind` that best says what went wrong, for an `io::Error` carrying this error (the
    /// block store's methods return `io::Error`s; the typed error stays inside, `get_ref` finds it).
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            FilesError::Io { error, .. } | FilesError::Partial { error, .. } => error.kind(),
            FilesError::NotReplaceable { .. } => io::ErrorKind::AlreadyExists,
            FilesError::PartialBusy { .. } => io::ErrorKind::WouldBlock,
            FilesError::DiskFull { .. } => io::ErrorKind::StorageFull,
            _ => io::ErrorKind::InvalidInput,
        }
    }

    /// This error as an `io::Error` of [`FilesError::io_kind`], keeping it inside.
    pub fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }
}

impl From<PathError> for FilesError {
    fn from(e: PathError) -> FilesError {
        FilesError::Path(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_the_root_hides_everything_above_it() {
        let root = Path::new("/srv/in");
        let escape = FilesError::Path(PathError::SymlinkEscape { path: "/srv/in/d/sub".into() }).relative_to(root);
        assert!(escape.to_string().starts_with("refused 'd/sub': it is a symbolic link"), "{escape}");
        let io = FilesError::Io { op: FileOp::Root, path: root.into(), error: io::ErrorKind::NotFound.into() };
        assert!(io.relative_to(root).to_string().starts_with("destination root '.': "));
        // A path outside the root is not below it: left as it is (nothing of the root's to hide).
        let other = FilesError::NotReplaceable { path: "/srv/inner/x".into(), what: "FIFO" }.relative_to(root);
        assert_eq!(other.to_string(), "refusing to replace '/srv/inner/x': it is a FIFO");
    }

    #[test]
    fn a_missing_source_has_its_own_exit_class_and_a_full_disk_does_not_retry() {
        let missing = FilesError::Io { op: FileOp::Read, path: "x".into(), error: io::ErrorKind::NotFound.into() };
        assert_eq!(missing.exit_class(), ExitClass::SourceNotFound);
        let full = FilesError::Io { op: FileOp::Root, path: ".".into(), error: io::Error::from_raw_os_error(28) };
        assert_eq!(full.exit_class(), ExitClass::Failure);
    }
}
