//! Symbolic and hard links on the receiver. Both are created at the very end of a session, after every
//! file is committed, each under a temporary name and renamed into place, all by descriptor beneath the
//! root ([`Beneath`]: the link's directory is resolved without following any symlink, then `symlinkat`,
//! `linkat`, `utimensat(AT_SYMLINK_NOFOLLOW)` and `renameat2` work on names inside it):
//!
//! - A symlink is only a name: it is created as sent, whatever it points to (inside the tree or not), and
//!   since nothing is written after it, nothing this session does goes through it. Later sessions cannot
//!   either: every path below the root is resolved without following symlinks (`files::beneath`).
//! - A hard link names a file of the manifest committed in this session (`linkat` without
//!   `AT_SYMLINK_FOLLOW`, so a symlink is never followed to its target).

use std::io;
use std::path::{Path, PathBuf};

use super::beneath::{Beneath, Dir};
use super::metadata::{EntryMeta, MetaPolicy};
use crate::wire::entry::EntryKind;

/// A link to create at the end of the session.
pub(super) struct LinkSlot {
    /// `Symlink` or `HardLink`.
    pub kind: EntryKind,
    /// The final name relative to the root (resolved beneath it; messages).
    pub shown: PathBuf,
    /// The temporary name relative to the root (in the same directory).
    pub temp: PathBuf,
    /// The symlink's target text, or the hard link's first name relative to the root.
    pub target: PathBuf,
    pub mtime_s: i64,
    pub mtime_ns: u32,
    pub meta: EntryMeta,
}

/// Creates every link, hard links first; returns the first error (with the link's shown name) after trying
/// them all.
pub(super) fn create_links(beneath: &Beneath, links: &[LinkSlot], policy: &mut MetaPolicy) -> io::Result<()> {
    let mut first_err = None;
    let order = links
        .iter()
        .filter(|l| l.kind == EntryKind::HardLink)
        .chain(links.iter().filter(|l| l.kind == EntryKind::Symlink));
    for l in order {
        let r = beneath.parent(&l.shown).and_then(|(dir, name)| {
            let temp = l.temp.file_name().unwrap_or_default();
            let r = match l.kind {
                EntryKind::HardLink => hard_link(beneath, &dir, name, temp, l),
                _ => symlink(&dir, name, temp, l, policy),
            };
            if r.is_err() {
                let _ = dir.unlink(temp, false);
            }
            r
        });
        if let Err(e) = r {
            first_err.get_or_insert(io::Error::new(e.kind(), format!("creating link '{}': {e}", l.shown.display())));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Whether a link may take `rel`'s place: nothing there, a regular file or a symlink (replaced, never
/// followed), not a directory or a special file. `None` if it may, else what is there.
pub(super) fn link_blocker(beneath: &Beneath, rel: &Path) -> io::Result<Option<&'static str>> {
    let (dir, name) = beneath.parent(rel)?;
    blocker_at(&dir, name)
}

fn blocker_at(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<Option<&'static str>> {
    let s = match dir.stat(name) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(if s.is_file() || s.is_symlink() {
        None
    } else if s.is_dir() {
        Some("directory")
    } else {
        Some("special file")
    })
}

fn check_place(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<()> {
    match blocker_at(dir, name)? {
        None => Ok(()),
        Some(what) => Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("it is a {what}"))),
    }
}

/// Creates `temp` in `dir` with `make`, first removing a stale one a crashed session left (a link or an
/// empty name of ours: never a directory).
fn create_fresh(dir: &Dir, temp: &std::ffi::OsStr, make: impl Fn() -> io::Result<()>) -> io::Result<()> {
    match make() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && blocker_at(dir, temp)?.is_none() => {
            dir.unlink(temp, false)?;
            make()
        }
        r => r,
    }
}

fn hard_link(
    beneath: &Beneath,
    dir: &Dir,
    name: &std::ffi::OsStr,
    temp: &std::ffi::OsStr,
    l: &LinkSlot,
) -> io::Result<()> {
    check_place(dir, name)?;
    let (first_dir, first_name) = beneath.parent(&l.target)?;
    let first = first_dir.stat(first_name)?;
    if let Ok(now) = dir.stat(name) {
        if (now.dev, now.ino) == (first.dev, first.ino) {
            // Already this inode (a rerun): rename would do nothing and leave the temporary name behind.
            return Ok(());
        }
    }
    // linkat with flags 0: a symlink at the first name would be linked, not followed.
    create_fresh(dir, temp, || dir.hard_link(&first_dir, first_name, temp))?;
    check_place(dir, name)?;
    dir.rename(temp, dir, name, false)
}

fn symlink(
    dir: &Dir,
    name: &std::ffi::OsStr,
    temp: &std::ffi::OsStr,
    l: &LinkSlot,
    policy: &mut MetaPolicy,
) -> io::Result<()> {
    check_place(dir, name)?;
    create_fresh(dir, temp, || dir.symlink(l.target.as_os_str(), temp))?;
    policy.apply_nofollow(dir, temp, &l.meta);
    // The link's own mtime (`utimensat` with `AT_SYMLINK_NOFOLLOW`), never its target's.
    dir.set_mtime(temp, l.mtime_s, l.mtime_ns)?;
    check_place(dir, name)?;
    dir.rename(temp, dir, name, false)
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
