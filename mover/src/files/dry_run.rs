//! A receiver's answer to a dry run (`mover job --dry-run`, PROTOCOL.md §3.6): per file of a manifest,
//! what a push with the same options and block size would do ([`Verdict`]), decided by the same rules as
//! [`DestTree::decide_start`](super::DestTree::decide_start) and read only: no directory is created, no
//! partial claimed, emptied or created, no journal touched. Everything is looked at by descriptor beneath
//! the root ([`Beneath`]), as a push's tree would be.

use super::beneath::{Beneath, ParentCache, Resolve};
use super::dest::{check_replaceable_at, identity_of, judge_manifest};
use super::error::{FileOp, FilesError};
use super::sanitize::{sanitize_relative, RelPath};
use super::start::{peek_file, FileFacts};
use crate::wire::entry::{Entry, EntryKind};
use crate::wire::verdict::Verdict;
use crate::wire::TransferOptions;
use std::fs;
use std::io;
use std::path::Path;

/// The verdict of every regular file of `entries` (in manifest order: by file id) for a push into
/// `dest_dir` below `root` with `opts` and `block_size` (the push's block payload, which decides which
/// journaled ranges of a partial count). Refuses what a push's `DestTree::prepare` refuses before it
/// creates anything (a bad manifest, a final name that is a directory or a link); errors name paths
/// relative to `root`.
pub fn dry_run_verdicts(
    root: &Path,
    dest_dir: &RelPath,
    entries: &[Entry],
    opts: &TransferOptions,
    block_size: u32,
) -> Result<Vec<Verdict>, FilesError> {
    assert!(block_size > 0, "block size 0");
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(FilesError::RootNotADirectory { path: root.to_path_buf() }),
        Err(error) => return Err(FilesError::Io { op: FileOp::Root, path: root.to_path_buf(), error }),
    }
    judge_manifest(entries)?;
    let beneath = Beneath::new(root)
        .map_err(|error| FilesError::Io { op: FileOp::Root, path: root.to_path_buf(), error })?
        .with_resolve(Resolve::configured());
    let dest = dest_dir.to_path_buf();
    let mut parents = ParentCache::default();
    let mut verdicts = Vec::new();
    for (i, e) in entries.iter().enumerate().filter(|(_, e)| e.kind == EntryKind::File) {
        let rel = sanitize_relative(&e.rel_path)
            .map_err(|err| FilesError::Manifest { entry: i, problem: err.to_string() })?;
        let dir = dest.join(rel.parent().unwrap_or_else(RelPath::root).to_path_buf());
        let name = rel.file_name().unwrap_or_default();
        let (shown, shown_temp) = (dir.join(name), dir.join(super::dest::partial_name_of(e, name)));
        // A final name a push would refuse (a directory, a link) is refused here too; a directory that is
        // not there yet holds nothing.
        match beneath.parent_cached(&mut parents, &shown) {
            Ok((d, n)) => check_replaceable_at(d, n, &shown).map_err(|e| e.relative_to(root))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(FilesError::Io { op: FileOp::Read, path: dir, error }),
        }
        let facts = FileFacts {
            beneath: &beneath,
            shown: &shown,
            shown_temp: &shown_temp,
            identity: identity_of(e),
            final_size: e.piece.as_deref().map_or(e.size, |p| p.file_size),
            piece: e
                .piece
                .as_deref()
                .copied()
                .map(|p| (name, p, super::pieces::version_of(p, e.mtime_s, e.mtime_ns, e.mode, &e.rel_path))),
            mtime_s: e.mtime_s,
            mtime_ns: e.mtime_ns,
        };
        let verdict =
            peek_file(&facts, &mut parents, opts, e.content_hash, block_size).map_err(|e| e.relative_to(root))?;
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::journal::{JournalConfig, JournalHeader, JournalWriter};
    use crate::files::sanitize_dest_dir;
    use crate::testing::TempDir;
    use crate::wire::verdict::VerdictKind;
    use crate::wire::Overwrite;
    use std::os::unix::fs::MetadataExt;

    fn file(path: &str, size: u64, mtime_s: i64) -> Entry {
        Entry { rel_path: path.into(), kind: EntryKind::File, size, mode: 0o644, mtime_s, ..Entry::default() }
    }

    /// Everything below `dir`, with sizes and mtimes: what "changed nothing" compares.
    fn listing(dir: &Path) -> Vec<(String, u64, i64)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let m = fs::symlink_metadata(e.path()).unwrap();
                out.push((e.path().display().to_string(), m.len(), m.mtime()));
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn verdicts_follow_the_push_rules_and_change_nothing() {
        let dir = TempDir::new("dry-run-verdicts");
        let root = dir.path();
        let dest = root.join("in/d");
        fs::create_dir_all(&dest).unwrap();
        let set_mtime = |p: &Path, s: i64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64);
            fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
        };
        // same: current; other: same size, older mtime; part: a partial with a journaled first MiB.
        fs::write(dest.join("same"), vec![1; 100]).unwrap();
        set_mtime(&dest.join("same"), 1000);
        fs::write(dest.join("other"), vec![2; 100]).unwrap();
        set_mtime(&dest.join("other"), 900);
        let part = file("d/part", 4 << 20, 1000);
        let block = 1 << 16;
        let data = vec![7u8; 1 << 20];
        fs::write(dest.join(".part.mover.part"), &data).unwrap();
        let header = JournalHeader { identity: identity_of(&part), block_size: block };
        let data_file = fs::File::options().write(true).open(dest.join(".part.mover.part")).unwrap();
        let journal = dest.join(".part.mover.part.journal");
        let mut w = JournalWriter::create(&journal, header, data_file, JournalConfig::default()).unwrap();
        w.record(0, &data).unwrap();
        w.flush().unwrap();
        drop(w);
        let entries = vec![
            Entry { rel_path: "d".into(), kind: EntryKind::Dir, mode: 0o755, ..Entry::default() },
            file("d/same", 100, 1000),
            file("d/other", 100, 1000),
            part,
            file("d/new", 5, 1000),
            Entry { rel_path: "d/sub".into(), kind: EntryKind::Dir, mode: 0o755, ..Entry::default() },
            file("d/sub/deep", 9, 1000),
        ];
        let before = listing(root);
        let in_dir = sanitize_dest_dir("in").unwrap();
        let opts = TransferOptions::default();
        let v = dry_run_verdicts(root, &in_dir, &entries, &opts, block).unwrap();
        let kinds: Vec<(VerdictKind, u64)> = v.iter().map(|v| (v.kind, v.held)).collect();
        use VerdictKind::*;
        assert_eq!(kinds, [(Unchanged, 0), (Changed, 0), (Changed, 1 << 20), (New, 0), (New, 0)]);
        assert_eq!(listing(root), before, "a dry run changes nothing");
        // --overwrite never keeps what exists; always sends it again; --no-resume forgets the partial.
        let never = TransferOptions { overwrite: Overwrite::Never, ..opts };
        let v = dry_run_verdicts(root, &in_dir, &entries, &never, block).unwrap();
        assert_eq!(v[1].kind, Unchanged);
        let fresh = TransferOptions { overwrite: Overwrite::Always, resume: false, ..opts };
        let v = dry_run_verdicts(root, &in_dir, &entries, &fresh, block).unwrap();
        let kinds: Vec<(VerdictKind, u64)> = v.iter().map(|v| (v.kind, v.held)).collect();
        assert_eq!(kinds, [(Changed, 0), (Changed, 0), (New, 0), (New, 0), (New, 0)]);
        // A destination that does not exist: everything is new, and it is still not created.
        let v = dry_run_verdicts(root, &sanitize_dest_dir("elsewhere").unwrap(), &entries, &opts, block).unwrap();
        assert!(v.iter().all(|v| v.kind == New), "{v:?}");
        assert_eq!(listing(root), before);
        // A final name that is a directory is refused, as a push refuses it.
        fs::create_dir(dest.join("new")).unwrap();
        let e = dry_run_verdicts(root, &in_dir, &entries, &opts, block).unwrap_err().to_string();
        assert!(e.contains("in/d/new"), "{e}");
    }
}
