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

#[cfg(test)]
mod tests {
    use crate::files::{DestTree, Entry, EntryKind, RelPath};
    use crate::proto::BlockStore;
    use crate::testing::TempDir;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn entry(p: &str, kind: EntryKind, size: u64, target: &str) -> Entry {
        Entry { rel_path: p.into(), kind, size, mode: 0o644, link_target: target.into(), ..Entry::default() }
    }

    #[test]
    fn links_are_created_last_and_never_followed() {
        let t = TempDir::new("links");
        let outside = TempDir::new("links-outside");
        let out = outside.path().to_str().unwrap();
        // A stale link at one final name (replaced), and the data first.
        symlink("/nonexistent", t.path().join("out")).unwrap();
        let entries = [
            entry("f", EntryKind::File, 3, ""),
            entry("out", EntryKind::Symlink, 0, out),
            entry("d/in", EntryKind::Symlink, 0, "../f"),
            entry("d/again", EntryKind::HardLink, 0, "f"),
        ];
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, 1).unwrap();
        assert_eq!(tree.file_count(), 1);
        tree.write_block(0, 0, b"abc").unwrap();
        tree.commit(0).unwrap();
        assert!(!t.path().join("d/in").exists(), "a link before finish");
        tree.finish().unwrap();
        assert_eq!(fs::read_link(t.path().join("out")).unwrap().to_str(), Some(out));
        assert_eq!(fs::read(t.path().join("d/in")).unwrap(), b"abc");
        let (f, again) = (fs::metadata(t.path().join("f")).unwrap(), fs::metadata(t.path().join("d/again")).unwrap());
        assert_eq!((f.ino(), f.nlink()), (again.ino(), 2));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!fs::read_dir(t.path().join("d")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".mover-")));
    }

    #[test]
    fn manifests_that_would_write_through_a_link_are_refused() {
        let t = TempDir::new("links-refused");
        let bad: [(&[Entry], &str); 4] = [
            (&[entry("l", EntryKind::Symlink, 0, "/etc"), entry("l/passwd", EntryKind::File, 1, "")], "file or link"),
            (&[entry("h", EntryKind::HardLink, 0, "nope")], "not a file earlier in the manifest"),
            (&[entry("h", EntryKind::HardLink, 0, "d"), entry("d", EntryKind::Dir, 0, "")], "not a file earlier"),
            (&[entry("h", EntryKind::HardLink, 0, "../x")], "'..'"),
        ];
        for (entries, why) in bad {
            let e = DestTree::prepare(t.path(), &RelPath::root(), entries, 1).err().unwrap().to_string();
            assert!(e.contains(why), "{e}");
        }
        // A directory where a link goes is refused before anything is sent.
        fs::create_dir(t.path().join("dir")).unwrap();
        let e = DestTree::prepare(t.path(), &RelPath::root(), &[entry("dir", EntryKind::Symlink, 0, "x")], 1);
        assert!(e.err().unwrap().to_string().contains("it is a directory"));
    }

    #[test]
    fn sparse_files_get_holes_even_over_old_bytes() {
        let t = TempDir::new("links-sparse");
        let e = Entry { sparse: true, ..entry("s", EntryKind::File, 8 << 20, "") };
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &[e], 1).unwrap();
        // Old bytes everywhere first (a resumed partial), then the real content: zeros but for 1 MiB.
        let junk = vec![0x5a; 1 << 20];
        let zeros = vec![0; 1 << 20];
        for i in 0..8u64 {
            tree.write_block(0, i << 20, &junk).unwrap();
        }
        for i in 0..8u64 {
            tree.write_block(0, i << 20, if i == 3 { &junk } else { &zeros }).unwrap();
        }
        tree.commit(0).unwrap();
        let m = fs::metadata(t.path().join("s")).unwrap();
        let bytes = fs::read(t.path().join("s")).unwrap();
        assert!(bytes[..3 << 20].iter().all(|&b| b == 0) && bytes[3 << 20..4 << 20].iter().all(|&b| b == 0x5a));
        assert!(bytes[4 << 20..].iter().all(|&b| b == 0));
        if m.blocks() * 512 >= 4 << 20 {
            crate::testing::skip_or_fail("sparse_files_get_holes_even_over_old_bytes", "this fs does not punch holes");
        }
    }
}
