//! What a receiver keeps of an entry beyond its bytes, mode and mtime: owners (`--preserve owner`, as root
//! only), set-user-ID/set-group-ID bits (only together with owners), and extended attributes (`--xattrs`).
//! Whatever it cannot keep is recorded once as a `wire::entry::dropped` bit, never lost silently.
//!
//! Order on a file: owner first (`fchown` clears set-ID bits), then the mode, then the attributes.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use super::beneath::Dir;
use super::xattr::set_xattr_fd;
use crate::wire::entry::{dropped, Entry};
use crate::wire::TransferOptions;

/// Permission bits a received file gets when owners are not kept. Set-user-ID and set-group-ID are
/// dropped: the peer would otherwise choose which programs run with the receiving account's identity.
pub(super) const FILE_MODE_MASK: u32 = 0o1777;

/// The metadata of one entry the receiver may apply, taken from the manifest.
#[derive(Clone, Debug, Default)]
pub(super) struct EntryMeta {
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Keep runs of zeros as holes.
    pub sparse: bool,
}

impl EntryMeta {
    pub fn of(e: &Entry) -> EntryMeta {
        EntryMeta { uid: e.uid, gid: e.gid, xattrs: e.xattrs.clone(), sparse: e.sparse }
    }
}

/// The receiver's choices for a session, and what it had to drop.
#[derive(Clone, Debug, Default)]
pub(super) struct MetaPolicy {
    /// Owners (and with them set-ID bits) are kept: asked for, and the receiver is root.
    keep_owner: bool,
    xattrs: bool,
    root: bool,
    /// `wire::entry::dropped` bits.
    pub dropped: u32,
}

impl MetaPolicy {
    /// The policy for the client's options, on this process's effective user.
    pub fn new(opts: &TransferOptions) -> MetaPolicy {
        // Safety: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        Self::with_root(opts, root)
    }

    fn with_root(opts: &TransferOptions, root: bool) -> MetaPolicy {
        let dropped = if opts.preserve_owner && !root { dropped::OWNERS_NOT_ROOT } else { 0 };
        MetaPolicy { keep_owner: opts.preserve_owner && root, xattrs: opts.xattrs, root, dropped }
    }

    /// The mode a file gets: all 12 bits when owners are kept, else without set-ID bits (recorded).
    pub fn file_mode(&mut self, mode: u32) -> u32 {
        if self.keep_owner {
            return mode & 0o7777;
        }
        if mode & 0o6000 != 0 {
            self.dropped |= dropped::SETID_BITS;
        }
        mode & FILE_MODE_MASK
    }

    /// Owner, then extended attributes, on an open file or directory (before its mode is set).
    pub fn apply_fd(&mut self, file: &File, m: &EntryMeta) {
        if self.keep_owner {
            // Safety: a valid descriptor; fchown has no memory arguments.
            if unsafe { libc::fchown(file.as_raw_fd(), m.uid, m.gid) } != 0 {
                self.dropped |= dropped::OWNERS_FAILED;
            }
        }
        self.apply_xattrs(m, |name, value| set_xattr_fd(file, name, value));
    }

    /// Owner and extended attributes of the symlink `name` in `dir` itself (never its target).
    pub fn apply_nofollow(&mut self, dir: &Dir, name: &OsStr, m: &EntryMeta) {
        if self.keep_owner && dir.set_owner(name, m.uid, m.gid).is_err() {
            self.dropped |= dropped::OWNERS_FAILED;
        }
        self.apply_xattrs(m, |key, value| dir.set_xattr(name, key, value));
    }

    fn apply_xattrs(&mut self, m: &EntryMeta, mut set: impl FnMut(&str, &[u8]) -> io::Result<()>) {
        if !self.xattrs {
            return;
        }
        for (name, value) in &m.xattrs {
            // trusted.*, security.* and system.* are the administrator's: a peer sets them only on a root
            // receiver (and the kernel would refuse most of them anyway).
            if !self.root && !name.starts_with("user.") {
                self.dropped |= dropped::XATTRS_PRIVILEGED;
                continue;
            }
            if set(name, value).is_err() {
                self.dropped |= dropped::XATTRS_FAILED;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_id_bits_go_with_owners_only() {
        let plain = TransferOptions::default();
        let owners = TransferOptions { preserve_owner: true, ..plain };
        let mut p = MetaPolicy::with_root(&plain, true);
        assert_eq!(p.file_mode(0o755), 0o755);
        assert_eq!(p.dropped, 0);
        assert_eq!(p.file_mode(0o4755), 0o755);
        assert_eq!(p.dropped, dropped::SETID_BITS);
        let mut p = MetaPolicy::with_root(&owners, true);
        assert_eq!((p.file_mode(0o6755), p.dropped), (0o6755, 0));
        let mut p = MetaPolicy::with_root(&owners, false);
        assert_eq!(p.file_mode(0o2755), 0o755);
        assert_eq!(p.dropped, dropped::OWNERS_NOT_ROOT | dropped::SETID_BITS);
        assert_eq!(dropped::describe(p.dropped).len(), 2);
    }
}
