//! One manifest entry: what the sender announces for each file, directory or link (the manifest message,
//! PROTOCOL.md §3.2). It lives in `wire` because the control messages serialise it; `files` re-exports it.

/// What an entry is. Devices, sockets and FIFOs are never sent (the scan says so in its summary).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its bytes are sent.
    #[default]
    File,
    /// A directory; created (possibly empty) with its mode and mtime.
    Dir,
    /// A symbolic link; `link_target` is what it points to, created as a link and never followed.
    Symlink,
    /// A further name of a regular file already in the manifest; `link_target` is the manifest path of the
    /// inode's first name, which the receiver hard-links once that file is committed.
    HardLink,
}

/// Longest extended-attribute name (the kernel's `XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME_LEN: usize = 255;
/// Largest extended-attribute value sent (the kernel's own limit, `XATTR_SIZE_MAX`, is 64 KiB).
pub const MAX_XATTR_VALUE_LEN: usize = 64 << 10;
/// Name and value bytes of all extended attributes of one entry together: far below the frame limit
/// (PROTOCOL.md §3.1), so an entry with a 4096-byte path and link target always fits one frame.
pub const MAX_XATTR_BYTES_PER_ENTRY: usize = 512 << 10;
/// Most extended attributes on one entry.
pub const MAX_XATTRS_PER_ENTRY: usize = 1024;

/// A file, directory or link in a session's manifest.
///
/// `rel_path` is relative to the destination directory, `/`-separated, and has no `.`, `..` or empty
/// components (the receiver checks this again: see `files::sanitize`). Regular files get file ids in manifest
/// order: the n-th `File` entry is file id n; links and directories have none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the destination directory.
    pub rel_path: String,
    /// File, directory or link.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories and links).
    pub size: u64,
    /// Permission bits (the low 12 bits of `st_mode`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_s: i64,
    /// Modification time, nanoseconds part.
    pub mtime_ns: u32,
    /// Numeric owner; the receiver applies it only with `--preserve owner` when it runs as root.
    pub uid: u32,
    /// Numeric group; as `uid`.
    pub gid: u32,
    /// The symlink's target (`Symlink`) or the first name of the inode (`HardLink`); empty otherwise.
    pub link_target: String,
    /// Extended attributes (name, value), read only with `--xattrs`; bounded by the constants above.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The source file has holes (`st_blocks * 512 < size`): the receiver keeps zero runs as holes.
    pub sparse: bool,
    /// xxh3-128 of the file's content, sent with `--checksum` so the receiver can compare it with what it
    /// holds instead of size and mtime.
    pub content_hash: Option<u128>,
    /// For one range of a file split between shards (`--shard`): where the range lies in the whole file;
    /// `size` is the range's length. `None` for a whole file. Boxed: only sharded sessions have ranges, and
    /// each end holds an entry per file (decision 0025).
    pub piece: Option<Box<super::shard::Piece>>,
}

impl Entry {
    /// Checks the extended attributes against the bounds above; the message names the first one broken.
    pub fn check_xattrs(xattrs: &[(String, Vec<u8>)]) -> Result<(), String> {
        if xattrs.len() > MAX_XATTRS_PER_ENTRY {
            return Err(format!("{} extended attributes (at most {MAX_XATTRS_PER_ENTRY} are sent)", xattrs.len()));
        }
        let mut total = 0usize;
        for (name, value) in xattrs {
            if name.is_empty() || name.len() > MAX_XATTR_NAME_LEN {
                return Err(format!("extended attribute name of {} bytes (1..={MAX_XATTR_NAME_LEN})", name.len()));
            }
            if value.len() > MAX_XATTR_VALUE_LEN {
                return Err(format!(
                    "extended attribute '{name}' holds {} bytes (at most {MAX_XATTR_VALUE_LEN})",
                    value.len()
                ));
            }
            total += name.len() + value.len();
        }
        if total > MAX_XATTR_BYTES_PER_ENTRY {
            return Err(format!("{total} bytes of extended attributes (at most {MAX_XATTR_BYTES_PER_ENTRY})"));
        }
        Ok(())
    }
}

/// What a receiver could not keep of what was sent, as bits in `Complete` (PROTOCOL.md §3.2), so the
/// sending client's summary says it once instead of it being lost silently.
pub mod dropped {
    /// Set-user-ID or set-group-ID bits were cleared (kept only with `--preserve owner` by a root receiver).
    pub const SETID_BITS: u32 = 1;
    /// `--preserve owner` was asked, but the receiver does not run as root.
    pub const OWNERS_NOT_ROOT: u32 = 1 << 1;
    /// Changing an owner or group failed.
    pub const OWNERS_FAILED: u32 = 1 << 2;
    /// Setting an extended attribute failed (the file system refused it).
    pub const XATTRS_FAILED: u32 = 1 << 3;
    /// Extended attributes outside the `user.` namespace were not set: the receiver is not root.
    pub const XATTRS_PRIVILEGED: u32 = 1 << 4;
    /// Every bit this version knows.
    pub const KNOWN: u32 = (1 << 5) - 1;

    /// One phrase per bit set, for a summary line and the `dropped` JSON key.
    pub fn describe(bits: u32) -> Vec<&'static str> {
        [
            (SETID_BITS, "set-user-ID/set-group-ID bits (kept with --preserve owner when the receiver is root)"),
            (OWNERS_NOT_ROOT, "owners and groups (receiver not root)"),
            (OWNERS_FAILED, "owners and groups of some entries (chown failed)"),
            (XATTRS_FAILED, "extended attributes the receiver's file system refused"),
            (XATTRS_PRIVILEGED, "extended attributes outside user.* (receiver not root)"),
        ]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, what)| what)
        .collect()
    }
}
