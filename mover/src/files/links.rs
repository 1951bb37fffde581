//! Symbolic and hard links on the receiver. Both are created at the very end of a session, after every
//! file is committed, each under a temporary name and renamed into place:
//!
//! - A symlink is only a name: it is created as sent, whatever it points to (inside the tree or not), and
//!   since nothing is written after it, nothing this session does goes through it. Later sessions cannot
//!   either: every write path is walked without following symlinks (`files::confine`).
//! - A hard link names a file of the manifest committed in this session (`linkat` without
//!   `AT_SYMLINK_FOLLOW`, so a symlink is never followed to its target).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::metadata::{EntryMeta, MetaPolicy};
use crate::wire::entry::EntryKind;

/// A link to create at the end of the session.
pub(super) struct LinkSlot {
    /// `Symlink` or `HardLink`.
    pub kind: EntryKind,
    pub final_path: PathBuf,
    pub temp_path: PathBuf,
    /// `final_path` relative to the root, for messages.
    pub shown: PathBuf,
    /// The symlink's target text, or the final path of the hard link's first name.
    pub target: PathBuf,
    pub mtime_s: i64,
    pub mtime_ns: u32,
    pub meta: EntryMeta,
}

/// Creates every link, hard links first; returns the first error (with the link's shown name) after trying
/// them all.
pub(super) fn create_links(links: &[LinkSlot], policy: &mut MetaPolicy) -> io::Result<()> {
    let mut first_err = None;
    let order = links
        .iter()
        .filter(|l| l.kind == EntryKind::HardLink)
        .chain(links.iter().filter(|l| l.kind == EntryKind::Symlink));
    for l in order {
        let r = match l.kind {
            EntryKind::HardLink => hard_link(l),
            _ => symlink(l, policy),
        };
        if let Err(e) = r {
            let _ = fs::remove_file(&l.temp_path);
            first_err.get_or_insert(io::Error::new(e.kind(), format!("creating link '{}': {e}", l.shown.display())));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Whether a link may take `path`'s place: nothing there, a regular file or a symlink (replaced, never
/// followed), not a directory or a special file. `None` if it may, else what is there.
pub(super) fn link_blocker(path: &Path) -> io::Result<Option<&'static str>> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let t = m.file_type();
    Ok(if t.is_file() || t.is_symlink() {
        None
    } else if t.is_dir() {
        Some("directory")
    } else {
        Some("special file")
    })
}

fn check_place(l: &LinkSlot) -> io::Result<()> {
    match link_blocker(&l.final_path)? {
        None => Ok(()),
        Some(what) => Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("it is a {what}"))),
    }
}

/// Creates `temp` with `make`, first removing a stale one a crashed session left (a link or an empty name
/// of ours: never a directory).
fn create_fresh(temp: &Path, make: impl Fn() -> io::Result<()>) -> io::Result<()> {
    match make() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && link_blocker(temp)?.is_none() => {
            fs::remove_file(temp)?;
            make()
        }
        r => r,
    }
}

fn hard_link(l: &LinkSlot) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    check_place(l)?;
    let first = fs::symlink_metadata(&l.target)?;
    if let Ok(now) = fs::symlink_metadata(&l.final_path) {
        if (now.dev(), now.ino()) == (first.dev(), first.ino()) {
            // Already this inode (a rerun): rename would do nothing and leave the temporary name behind.
            return Ok(());
        }
    }
    // std's hard_link is linkat(2) with flags 0: a symlink at the first name would be linked, not followed.
    create_fresh(&l.temp_path, || fs::hard_link(&l.target, &l.temp_path))?;
    check_place(l)?;
    fs::rename(&l.temp_path, &l.final_path)
}

fn symlink(l: &LinkSlot, policy: &mut MetaPolicy) -> io::Result<()> {
    check_place(l)?;
    create_fresh(&l.temp_path, || std::os::unix::fs::symlink(&l.target, &l.temp_path))?;
    policy.apply_nofollow(&l.temp_path, &l.meta);
    set_link_mtime(&l.temp_path, l.mtime_s, l.mtime_ns)?;
    check_place(l)?;
    fs::rename(&l.temp_path, &l.final_path)
}

/// The link's own mtime (`utimensat` with `AT_SYMLINK_NOFOLLOW`), never its target's.
fn set_link_mtime(path: &Path, s: i64, ns: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let t = libc::timespec { tv_sec: s as libc::time_t, tv_nsec: ns as libc::c_long };
    let times = [t, t];
    // Safety: a NUL-terminated path and two timespecs, as utimensat(2) takes.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
