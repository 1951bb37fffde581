//! One manifest entry: what the sender announces for each file or directory (the manifest message,
//! PROTOCOL.md §3). It lives in `wire` because the control messages serialise it; `files` re-exports it.

/// Whether an entry is a regular file or a directory (symlinks, devices and sockets are never sent).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its bytes are sent.
    File,
    /// A directory; created (possibly empty) with its mode and mtime.
    Dir,
}

/// A file or directory in a session's manifest.
///
/// `rel_path` is relative to the destination directory, `/`-separated, and has no `.`, `..` or empty
/// components (the receiver checks this again: see `files::sanitize`). Regular files get file ids in manifest
/// order: the n-th `File` entry is file id n.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the destination directory.
    pub rel_path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Permission bits (the low 12 bits of `st_mode`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_s: i64,
    /// Modification time, nanoseconds part.
    pub mtime_ns: u32,
}
