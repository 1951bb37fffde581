//! A destination tree whose directories are swapped for symlinks to outside the root at each step of a
//! file's life (before its partial is created, between the writes and the commit, before the directory
//! modes are applied): every step either fails or stays in the directory that was checked; nothing is
//! created, renamed, changed or removed outside. Run with both ways of resolving ([`Resolve`]).

use super::beneath::{Beneath, Resolve};
use super::{DestTree, Entry, EntryKind, RelPath};
use crate::proto::BlockStore;
use crate::testing::TempDir;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::sync::Arc;

fn entry(p: &str, kind: EntryKind, size: u64) -> Entry {
    Entry { rel_path: p.into(), kind, size, mode: 0o755, mtime_s: 1_000, ..Entry::default() }
}

/// Everything under `p`: names, sizes, modes and mtimes.
fn snapshot(p: &Path) -> Vec<(String, u64, u32, i64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        out.push((e.file_name().to_string_lossy().into_owned(), m.len(), m.mode(), m.mtime()));
        if m.is_dir() {
            out.extend(
                snapshot(&e.path()).into_iter().map(|(n, s, mo, t)| (format!("{}/{n}", e.path().display()), s, mo, t)),
            );
        }
    }
    out.sort();
    out
}

/// Moves `root/d` aside and puts a symlink to `outside` in its place; `undo` puts it back.
fn swap(root: &Path, d: &str, outside: &Path) {
    fs::rename(root.join(d), root.join(format!("{d}.aside"))).unwrap();
    symlink(outside, root.join(d)).unwrap();
}
fn undo(root: &Path, d: &str) {
    fs::remove_file(root.join(d)).unwrap();
    fs::rename(root.join(format!("{d}.aside")), root.join(d)).unwrap();
}

fn tree(root: &Path, resolve: Resolve) -> DestTree {
    let entries = [entry("d", EntryKind::Dir, 0), entry("d/a", EntryKind::File, 3), entry("d/b", EntryKind::File, 3)];
    let mut t = DestTree::prepare(root, &RelPath::root(), &entries, 1).unwrap();
    t.beneath = Arc::new(Beneath::new(root).unwrap().with_resolve(resolve));
    t
}

#[test]
fn swapped_directories_never_lead_a_write_outside_the_root() {
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let t = TempDir::new("dest-swap");
        let outside = TempDir::new("dest-swap-outside");
        // A decoy named like the destination's files, so a write through the link would have a target.
        fs::write(outside.path().join("a"), b"decoy").unwrap();
        fs::write(outside.path().join(".a.mover.part"), b"decoy").unwrap();
        let before = snapshot(outside.path());
        let root = t.path();
        let mut tree = tree(root, resolve);

        // Swapped before the partial exists: its creation is refused.
        swap(root, "d", outside.path());
        let e = tree.write_block(0, 0, b"abc").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{resolve:?}: {e}");
        undo(root, "d");

        // Swapped between the writes and the commit: the commit is refused (the partial stays where it was
        // written), and succeeds once the directory is back.
        tree.write_block(1, 0, b"xyz").unwrap();
        swap(root, "d", outside.path());
        let e = tree.commit(1).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{resolve:?}: {e}");
        assert!(root.join("d.aside/.b.mover.part").is_file());
        undo(root, "d");
        tree.commit(1).unwrap();
        assert_eq!(fs::read(root.join("d/b")).unwrap(), b"xyz");

        // Swapped before the directory modes are applied: refused, the outside's mode untouched.
        tree.write_block(0, 0, b"abc").unwrap();
        tree.commit(0).unwrap();
        swap(root, "d", outside.path());
        assert!(tree.finish().is_err(), "{resolve:?}: finish through a swapped directory");
        undo(root, "d");

        // Swapped during an abort: nothing outside is removed.
        let mut other = DestTree::prepare(root, &RelPath::root(), &[entry("d/c", EntryKind::File, 3)], 2).unwrap();
        other.beneath = Arc::new(Beneath::new(root).unwrap().with_resolve(resolve));
        other.write_block(0, 0, b"abc").unwrap();
        fs::write(outside.path().join(".c.mover.part"), b"decoy").unwrap();
        swap(root, "d", outside.path());
        drop(other);
        assert!(outside.path().join(".c.mover.part").is_file(), "{resolve:?}: the abort removed a file outside");
        fs::remove_file(outside.path().join(".c.mover.part")).unwrap();
        undo(root, "d");

        assert_eq!(snapshot(outside.path()), before, "{resolve:?}: something changed outside the root");
        assert_eq!(fs::read(root.join("d/a")).unwrap(), b"abc");
    }
}

#[test]
fn a_directory_swapped_while_a_partial_is_open_keeps_the_data_inside() {
    // The descriptor of an open partial follows its directory, wherever inside the root it was moved; the
    // commit then finds no partial under the resolved name and fails rather than reaching outside.
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let t = TempDir::new("dest-swap-open");
        let outside = TempDir::new("dest-swap-open-outside");
        let root = t.path();
        let mut tree = tree(root, resolve);
        tree.write_block(0, 0, b"ab").unwrap();
        swap(root, "d", outside.path());
        tree.write_block(0, 2, b"c").unwrap();
        assert!(tree.commit(0).is_err(), "{resolve:?}");
        assert_eq!(fs::read(root.join("d.aside/.a.mover.part")).unwrap(), b"abc");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "{resolve:?}");
        undo(root, "d");
    }
}
