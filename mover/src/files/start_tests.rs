//! Tests of the start decision ([`DestTree::decide_start`]), the journals kept for it
//! ([`super::FileJournals`]) and what commit, reset and abort do with partials and journals.

use super::journal::{self, journal_path_for, FileIdentity, JournalRange};
use super::{partial_name, DestTree, FileJournals, FileStart, FilesError, RelPath, JOURNAL_MIN_BYTES};
use crate::proto::BlockStore;
use crate::testing::TempDir;
use crate::wire::entry::{Entry, EntryKind};
use crate::wire::{Overwrite, TransferOptions};
use std::fs::{self, File, FileTimes};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const BS: u32 = 4096;
const MTIME: (i64, u32) = (1_700_000_000, 123_456_789);

fn entry(p: &str, size: u64) -> Entry {
    Entry {
        rel_path: p.into(),
        kind: EntryKind::File,
        size,
        mode: 0o100644,
        mtime_s: MTIME.0,
        mtime_ns: MTIME.1,
        ..Entry::default()
    }
}

fn opts(overwrite: Overwrite) -> TransferOptions {
    TransferOptions { overwrite, ..TransferOptions::default() }
}

fn set_mtime(p: &Path, s: i64, ns: u32) {
    let t = UNIX_EPOCH + Duration::new(s as u64, ns);
    File::options().write(true).open(p).unwrap().set_times(FileTimes::new().set_modified(t)).unwrap();
}

fn content(size: u64, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8).collect()
}

/// The decision for one file named `f` of `size` bytes under `root`.
fn decide(root: &Path, e: &Entry, o: &TransferOptions, hash: Option<u128>) -> (DestTree, FileStart) {
    let mut tree = DestTree::prepare(root, &RelPath::root(), std::slice::from_ref(e), 0).unwrap();
    let d = tree.decide_start(o, &[hash], BS).unwrap();
    let start = d.files[0].clone();
    (tree, start)
}

#[test]
fn each_overwrite_mode_skips_what_it_should() {
    let t = TempDir::new("start-modes");
    let e = entry("f", 10);
    let dest = t.path().join("f");
    let skip = |o: TransferOptions| decide(t.path(), &e, &o, None).1 == FileStart::Skip;
    // Nothing there: every mode sends it.
    for m in [Overwrite::Never, Overwrite::Always, Overwrite::IfNewer, Overwrite::IfDifferent] {
        assert!(!skip(opts(m)), "{m} skipped a missing file");
    }
    fs::write(&dest, b"0123456789").unwrap();
    set_mtime(&dest, MTIME.0, MTIME.1);
    assert!(skip(opts(Overwrite::IfDifferent)), "same size and mtime");
    assert!(skip(opts(Overwrite::Never)));
    assert!(skip(opts(Overwrite::IfNewer)), "equal mtime counts as not older");
    assert!(!skip(opts(Overwrite::Always)));
    // One nanosecond apart: different, and the destination is older.
    set_mtime(&dest, MTIME.0, MTIME.1 - 1);
    assert!(!skip(opts(Overwrite::IfDifferent)));
    assert!(!skip(opts(Overwrite::IfNewer)));
    assert!(skip(opts(Overwrite::Never)));
    // Newer destination: if-newer keeps it, if-different replaces it.
    set_mtime(&dest, MTIME.0 + 1, 0);
    assert!(skip(opts(Overwrite::IfNewer)));
    assert!(!skip(opts(Overwrite::IfDifferent)));
    // Another size with the same mtime.
    fs::write(&dest, b"012345678").unwrap();
    set_mtime(&dest, MTIME.0, MTIME.1);
    assert!(!skip(opts(Overwrite::IfDifferent)));
    assert!(skip(opts(Overwrite::Never)), "never replaces, whatever it holds");
}

#[test]
fn checksum_compares_content_not_mtime() {
    let t = TempDir::new("start-checksum");
    let e = entry("f", 10);
    let dest = t.path().join("f");
    fs::write(&dest, b"0123456789").unwrap();
    set_mtime(&dest, MTIME.0, MTIME.1);
    let o = TransferOptions { checksum: true, ..TransferOptions::default() };
    let same = xxhash_rust::xxh3::xxh3_128(b"0123456789");
    let other = xxhash_rust::xxh3::xxh3_128(b"0123456780");
    assert_eq!(decide(t.path(), &e, &o, Some(same)).1, FileStart::Skip);
    // Same size, same mtime, other content: caught.
    assert_eq!(decide(t.path(), &e, &o, Some(other)).1, FileStart::Fresh);
    // No hash from the sender: nothing is skipped by content.
    assert_eq!(decide(t.path(), &e, &o, None).1, FileStart::Fresh);
    // Another mtime but the same content: skipped.
    set_mtime(&dest, 5, 0);
    assert_eq!(decide(t.path(), &e, &o, Some(same)).1, FileStart::Skip);
}

#[test]
fn skipped_files_are_never_created_nor_committed() {
    let t = TempDir::new("start-skip");
    let entries = [entry("same", 3), entry("new", 3)];
    fs::write(t.path().join("same"), b"abc").unwrap();
    set_mtime(&t.path().join("same"), MTIME.0, MTIME.1);
    let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, 0).unwrap();
    let d = tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    assert_eq!(d.files, [FileStart::Skip, FileStart::Fresh]);
    assert_eq!((d.skipped_files, d.skipped_bytes, d.resumed_bytes), (1, 3, 0));
    let e = tree.write_block(0, 0, b"xyz").unwrap_err();
    assert!(e.to_string().contains("skipped"), "{e}");
    tree.commit(0).unwrap();
    tree.write_block(1, 0, b"xyz").unwrap();
    tree.commit(1).unwrap();
    tree.finish().unwrap();
    assert!(!t.path().join(partial_name("same")).exists());
    assert_eq!(fs::read(t.path().join("same")).unwrap(), b"abc");
    assert_eq!(fs::read(t.path().join("new")).unwrap(), b"xyz");
}

/// A first session that writes `ranges` of `data` into the one file `f` through its journal and dies
/// (aborts): what it leaves behind.
fn leave_partial(root: &Path, e: &Entry, data: &[u8], ranges: &[(u64, u64)]) -> Vec<JournalRange> {
    let mut tree = DestTree::prepare(root, &RelPath::root(), std::slice::from_ref(e), 0).unwrap();
    tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    let mut journals = tree.journals();
    for &(off, len) in ranges {
        let bytes = &data[off as usize..(off + len) as usize];
        tree.write_block(0, off, bytes).unwrap();
        let fd = tree.write_handle(0, off, len as usize).unwrap();
        journals.record(0, fd, off, bytes);
    }
    journals.finish();
    assert_eq!(journals.failures, 0, "{:?}", journals.first_error);
    drop(tree);
    let id = identity(e);
    journal::load(&journal_path_for(&root.join(partial_name(&e.rel_path))), &id).unwrap().ranges
}

fn identity(e: &Entry) -> FileIdentity {
    FileIdentity {
        size: e.size,
        mtime_ns: e.mtime_s * 1_000_000_000 + i64::from(e.mtime_ns),
        mode: e.mode,
        path_hash: FileIdentity::path_hash(e.rel_path.as_bytes()),
    }
}

fn partial_paths(root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let p = root.join(partial_name(name));
    let j = journal_path_for(&p);
    (p, j)
}

#[test]
fn an_aborted_session_keeps_a_journaled_partial_and_the_next_resumes_exactly_its_ranges() {
    let t = TempDir::new("start-resume");
    let size = JOURNAL_MIN_BYTES + 12_345;
    let e = entry("big", size);
    let data = content(size, 1);
    let ranges = [(0, 64 * u64::from(BS)), (1 << 20, 256 * u64::from(BS)), (size - 12_345 - 4096, 4096 + 12_345)];
    let kept = leave_partial(t.path(), &e, &data, &ranges);
    assert_eq!(kept.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(), ranges);
    let (partial, journal) = partial_paths(t.path(), "big");
    assert!(partial.exists() && journal.exists(), "abort removed a journaled partial");

    let mut tree = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    let d = tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    assert_eq!(d.files, [FileStart::Resume { have: ranges.to_vec() }]);
    assert_eq!(d.resumed_bytes, ranges.iter().map(|r| r.1).sum::<u64>());
    // The rest arrives, through a journal that starts from the trusted ranges; the file commits whole.
    let mut journals = tree.journals();
    let mut off = 0u64;
    for &(o, l) in &ranges {
        let mut k = off;
        while k < o {
            let n = (o - k).min(1 << 20);
            tree.write_block(0, k, &data[k as usize..(k + n) as usize]).unwrap();
            journals.record(0, tree.write_handle(0, k, n as usize).unwrap(), k, &data[k as usize..(k + n) as usize]);
            k += n;
        }
        off = o + l;
    }
    journals.finish();
    assert_eq!(journals.failures, 0, "{:?}", journals.first_error);
    assert!(journal.exists());
    tree.commit(0).unwrap();
    assert_eq!(fs::read(t.path().join("big")).unwrap(), data);
    assert!(!journal.exists(), "commit left the journal");
    assert!(!partial.exists());
}

#[test]
fn identity_changes_bad_journals_and_no_resume_start_over() {
    let size = JOURNAL_MIN_BYTES;
    let e = entry("f", size);
    let data = content(size, 2);
    let ranges = [(0, 64 * u64::from(BS)), (1 << 20, 64 * u64::from(BS)), (2 << 20, 64 * u64::from(BS))];
    type Spoil = fn(&Path, &mut Entry, &mut TransferOptions);
    let cases: [(&str, Spoil, Option<&str>); 6] = [
        ("source mtime changed", |_, e, _| e.mtime_ns += 1, Some("modification time")),
        ("source size changed", |_, e, _| e.size += 1, Some("size")),
        ("--no-resume", |_, _, o| o.resume = false, Some("--no-resume")),
        (
            "a corrupt middle record",
            |j, _, _| {
                let mut b = fs::read(j).unwrap();
                let k = journal::HEADER_RECORD_LEN + 10;
                b[k] ^= 1;
                fs::write(j, b).unwrap();
            },
            Some("checksum"),
        ),
        (
            "torn inside the header",
            |j, _, _| {
                let b = fs::read(j).unwrap();
                fs::write(j, &b[..20]).unwrap();
            },
            Some("header"),
        ),
        ("no journal", |j, _, _| fs::remove_file(j).unwrap(), None),
    ];
    for (what, spoil, why) in cases {
        let t = TempDir::new("start-over");
        leave_partial(t.path(), &e, &data, &ranges);
        let (partial, journal) = partial_paths(t.path(), "f");
        let mut e2 = e.clone();
        let mut o = TransferOptions::default();
        spoil(&journal, &mut e2, &mut o);
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e2), 0).unwrap();
        let d = tree.decide_start(&o, &[], BS).unwrap();
        assert_eq!(d.files, [FileStart::Fresh], "{what}");
        assert_eq!(d.resumed_bytes, 0, "{what}");
        match why {
            Some(w) => assert!(d.started_over[0].1.contains(w), "{what}: {:?}", d.started_over),
            None => assert!(d.started_over.is_empty(), "{what}: {:?}", d.started_over),
        }
        assert!(!journal.exists(), "{what}: the untrusted journal stayed");
        // The old bytes are gone: the partial was emptied, then sized again.
        let back = fs::read(&partial).unwrap();
        assert_eq!(back.len() as u64, e2.size, "{what}");
        assert!(back.iter().all(|&b| b == 0), "{what}: old bytes survived a fresh start");
    }
}

#[test]
fn a_lost_block_is_dropped_from_the_resumed_ranges() {
    let t = TempDir::new("start-lost");
    let size = JOURNAL_MIN_BYTES;
    let e = entry("f", size);
    let data = content(size, 3);
    let ranges = [(0, 16 * u64::from(BS)), (1 << 20, 16 * u64::from(BS))];
    leave_partial(t.path(), &e, &data, &ranges);
    let (partial, _) = partial_paths(t.path(), "f");
    // A block of the second range did not survive (a power cut, an edit).

    std::os::unix::fs::FileExt::write_all_at(&File::options().write(true).open(&partial).unwrap(), b"X", 1 << 20)
        .unwrap();
    let (_tree, start) = decide(t.path(), &e, &TransferOptions::default(), None);
    assert_eq!(start, FileStart::Resume { have: vec![ranges[0]] });
}

#[test]
fn a_partial_another_session_holds_is_refused_and_left_alone() {
    let t = TempDir::new("start-busy");
    let size = JOURNAL_MIN_BYTES;
    let e = entry("f", size);
    let data = content(size, 4);
    leave_partial(t.path(), &e, &data, &[(0, 4096)]);
    let (partial, journal) = partial_paths(t.path(), "f");
    let (first, start) = decide(t.path(), &e, &TransferOptions::default(), None);
    assert!(matches!(start, FileStart::Resume { .. }));
    let mut second = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    let err = second.decide_start(&TransferOptions { resume: false, ..Default::default() }, &[], BS).unwrap_err();
    assert!(matches!(err, FilesError::PartialBusy { .. }), "{err}");
    assert_eq!(err.to_string(), "another transfer is writing '.f.mover.part'; wait for it or stop it");
    drop(second);
    assert!(journal.exists() && fs::read(&partial).unwrap()[..4096] == data[..4096], "the busy partial was touched");
    // Without a decision, a write claims lazily: refused the same way.
    let mut third = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    let err = third.write_block(0, 0, b"x").unwrap_err();
    assert!(err.to_string().contains("another transfer is writing"), "{err}");
    drop(third);
    drop(first);
    assert!(partial.exists() && journal.exists(), "released, and kept for the next run");
}

#[test]
fn reset_removes_the_journal_and_the_next_journal_starts_fresh() {
    let t = TempDir::new("start-reset");
    let size = JOURNAL_MIN_BYTES;
    let e = entry("f", size);
    let data = content(size, 5);
    let mut tree = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    let mut journals: FileJournals = tree.journals();
    tree.write_block(0, 0, &data[..4096]).unwrap();
    journals.record(0, tree.write_handle(0, 0, 4096).unwrap(), 0, &data[..4096]);
    journals.housekeeping();
    let (_, journal) = partial_paths(t.path(), "f");
    assert!(journal.exists());
    tree.reset(0).unwrap();
    assert!(!journal.exists(), "reset kept the journal");
    journals.housekeeping();
    assert_eq!(journals.open_count(), 0, "the writer of the discarded journal is still open");
    // After the reset, a new journal holds only what was written since.
    tree.write_block(0, 8192, &data[8192..12288]).unwrap();
    let fd = tree.write_handle(0, 8192, 4096).unwrap();
    journals.record(0, fd, 8192, &data[8192..12288]);
    journals.finish();
    let r = journal::load(&journal, &identity(&e)).unwrap();
    assert_eq!(r.ranges.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(), [(8192, 4096)]);
    // An abort keeps the journaled partial; one without a journal goes.
    drop(tree);
    assert!(t.path().join(partial_name("f")).exists());
    tree_with_unjournaled_partial(t.path());
}

/// A small file (not journaled) written and aborted: its partial is removed.
fn tree_with_unjournaled_partial(root: &Path) {
    let e = entry("small", 10);
    let mut tree = DestTree::prepare(root, &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    assert!(tree.journals().is_empty());
    tree.write_block(0, 0, b"0123456789").unwrap();
    assert!(root.join(partial_name("small")).exists());
    drop(tree);
    assert!(!root.join(partial_name("small")).exists(), "an unjournaled partial was kept");
}

#[test]
fn a_journal_is_never_fed_a_range_it_would_refuse() {
    let t = TempDir::new("start-grid");
    let size = JOURNAL_MIN_BYTES;
    let e = entry("f", size);
    let data = content(size, 6);
    leave_partial(t.path(), &e, &data, &[(0, 8192)]);
    let mut tree = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    let mut journals = tree.journals();
    let mut fd = || tree.write_handle(0, 0, 1).unwrap();
    // Off the grid, and overlapping the resumed range: neither is recorded.
    journals.record(0, fd(), 100, &data[100..4196]);
    journals.record(0, fd(), 4096, &data[4096..8192]);
    journals.record(0, fd(), 8192, &data[8192..12288]);
    journals.finish();
    let (_, journal) = partial_paths(t.path(), "f");
    let r = journal::load(&journal, &identity(&e)).unwrap();
    assert_eq!(r.ranges.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(), [(0, 8192), (8192, 4096)]);
}

/// Ranges hashed by the writer (`record_hashed`, issue 18): `begin` makes the journal exist before any
/// range; a range of the generation before a reset is never recorded (its bytes may not be what the partial
/// holds now), one of the current generation is, with the caller's hash, and it verifies against the disk.
#[test]
fn hashed_ranges_are_recorded_only_in_their_generation() {
    let t = TempDir::new("start-hashed");
    let size = JOURNAL_MIN_BYTES;
    let e = entry("f", size);
    let data = content(size, 9);
    let mut tree = DestTree::prepare(t.path(), &RelPath::root(), std::slice::from_ref(&e), 0).unwrap();
    tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    let mut journals: FileJournals = tree.journals();
    let range = |offset: usize, len: usize| JournalRange {
        offset: offset as u64,
        len: len as u64,
        xxh3: xxhash_rust::xxh3::xxh3_64(&data[offset..offset + len]),
    };
    let (_, journal) = partial_paths(t.path(), "f");
    tree.write_block(0, 0, &data[..8192]).unwrap();
    let old = journals.generation(0);
    journals.begin(0, old, tree.write_handle(0, 0, 1).unwrap());
    assert!(journal.exists(), "begin did not start the journal");
    tree.reset(0).unwrap();
    // Written before the reset: stale, dropped (and the stale journal is not recreated by it).
    journals.record_hashed(0, old, tree.write_handle(0, 0, 1).unwrap(), range(0, 8192));
    assert!(!journal.exists(), "a range of the old generation restarted the journal");
    let now = journals.generation(0);
    assert_ne!(now, old);
    tree.write_block(0, 8192, &data[8192..16384]).unwrap();
    journals.record_hashed(0, now, tree.write_handle(0, 0, 1).unwrap(), range(8192, 8192));
    journals.finish();
    let r = journal::load(&journal, &identity(&e)).unwrap();
    assert_eq!(r.ranges, [range(8192, 8192)]);
    let partial = t.path().join(partial_name("f"));
    assert_eq!(journal::verify_ranges(&File::open(&partial).unwrap(), &r.ranges).unwrap(), r.ranges);
}
