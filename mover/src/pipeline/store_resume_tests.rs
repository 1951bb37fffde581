//! Resume through the receiver's real write path: [`PipeStore`] on this thread, the [`WriterStage`] with the
//! files' journals on its own. A session stopped midway leaves a partial and a journal whose ranges verify,
//! and the start decision then resumes exactly those ranges; a full disk keeps both and says what to do.

use super::items::{VerifyItem, WriteItem, Written};
use super::ring::ring;
use super::runtime::{run, Outbox, StageCx};
use super::slots::BufRegion;
use super::store::PipeStore;
use super::topology::StageId;
use super::write_stage::{ReadBack, WriterStage};
use crate::disk::{BackendChoice, BufferPool, DiskWriter};
use crate::files::journal::{self, journal_path_for, FileIdentity};
use crate::files::{partial_name, DestTree, FileStart, RelPath, JOURNAL_MIN_BYTES};
use crate::pipeline::bell::Bell;
use crate::proto::{BlockStore, HashDone};
use crate::testing::TempDir;
use crate::wire::entry::{Entry, EntryKind};
use crate::wire::TransferOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const BS: u32 = 8192;
const BUFFERS: u32 = 8;
const BUF_BYTES: usize = 256 << 10;

fn entry(size: u64) -> Entry {
    Entry {
        rel_path: "big.bin".into(),
        kind: EntryKind::File,
        size,
        mode: 0o100644,
        mtime_s: 1_700_000_000,
        mtime_ns: 7,
        ..Entry::default()
    }
}

fn byte(off: u64) -> u8 {
    (off.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn block(off: u64, len: u64) -> Vec<u8> {
    (off..off + len).map(byte).collect()
}

/// A store and its writer stage (with the tree's journals) on a thread.
struct Rig {
    store: PipeStore,
    stop: Arc<AtomicBool>,
    writer_bell: Bell,
    thread: JoinHandle<()>,
}

impl Rig {
    fn new(tree: DestTree) -> Rig {
        let journals = tree.journals();
        let mut pool = BufferPool::new(BUFFERS, BUF_BYTES);
        let writer = DiskWriter::new(pool.region().clone(), BackendChoice::Auto, 4).expect("a disk writer");
        let (out, writes) = ring::<WriteItem>(BUFFERS as usize);
        let (written_tx, back) = ring::<Written>(BUFFERS as usize);
        let (verify_tx, verify_rx) = ring::<VerifyItem>(2);
        let (verified_tx, verified_rx) = ring::<HashDone>(2);
        let (store_bell, writer_bell) = (Bell::new(), Bell::new());
        store_bell.register();
        let stop = Arc::new(AtomicBool::new(false));
        let read_back = ReadBack::new(verify_rx, Outbox::from_ring(verified_tx, store_bell.clone()));
        let written = Outbox::from_ring(written_tx, store_bell.clone());
        let region = BufRegion::new(pool.region().clone());
        let stage = WriterStage::new(writer, BUFFERS as usize, writes, written, read_back)
            .with_journals(journals, region.clone());
        let (wb, st) = (writer_bell.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            run(stage, &wb, StageCx::new(StageId::Writer, None, st));
        });
        let buffers = (0..BUFFERS).map(|_| region.adopt(pool.alloc().unwrap())).collect();
        let writes = (Outbox::from_ring(out, writer_bell.clone()), back);
        let verify = (Outbox::from_ring(verify_tx, writer_bell.clone()), verified_rx);
        let store = PipeStore::new(tree, region, buffers, writes, verify);
        Rig { store, stop, writer_bell, thread }
    }

    /// Ends the session as a failed one does: drain, drop the tree (abort), stop the writer (its journals'
    /// last steps).
    fn stop(mut self) -> std::io::Result<()> {
        let r = self.store.drain();
        drop(self.store);
        self.stop.store(true, Ordering::Relaxed);
        self.writer_bell.ring();
        self.thread.join().unwrap();
        r
    }
}

fn decided_tree(root: &Path, size: u64) -> (DestTree, FileStart) {
    let mut tree = DestTree::prepare(root, &RelPath::root(), &[entry(size)], 0).unwrap();
    let d = tree.decide_start(&TransferOptions::default(), &[], BS).unwrap();
    let start = d.files[0].clone();
    (tree, start)
}

fn identity(size: u64) -> FileIdentity {
    let e = entry(size);
    FileIdentity {
        size,
        mtime_ns: e.mtime_s * 1_000_000_000 + i64::from(e.mtime_ns),
        mode: e.mode,
        path_hash: FileIdentity::path_hash(b"big.bin"),
    }
}

/// Blocks of `[from, to)`, every `skip`-th held back (arrives later, or never).
fn write_span(store: &mut PipeStore, from: u64, to: u64, skip: u64) -> Vec<(u64, u64)> {
    let mut written = Vec::new();
    let mut off = from;
    while off < to {
        let len = (to - off).min(u64::from(BS));
        if (off / u64::from(BS)) % skip != skip - 1 {
            store.write_block(0, off, &block(off, len)).unwrap();
            written.push((off, len));
        }
        off += len;
    }
    written
}

/// Merges sorted adjacent `(offset, len)` ranges.
fn merged(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in r {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == o => last.1 += l,
            _ => out.push((o, l)),
        }
    }
    out
}

#[test]
fn a_session_stopped_midway_leaves_a_journal_the_next_session_resumes_exactly() {
    let t = TempDir::new("pipe-resume");
    let size = JOURNAL_MIN_BYTES * 3 + 1234;
    let (tree, start) = decided_tree(t.path(), size);
    assert_eq!(start, FileStart::Fresh);
    let mut rig = Rig::new(tree);
    // The first 40% with every 50th block lost, and a stretch near the end.
    let mut written = write_span(&mut rig.store, 0, size * 2 / 5 / u64::from(BS) * u64::from(BS), 50);
    written.extend(write_span(&mut rig.store, size - 1234 - 64 * u64::from(BS), size, 1_000_000));
    rig.stop().unwrap();

    let partial = t.path().join(partial_name("big.bin"));
    let jpath = journal_path_for(&partial);
    assert!(partial.exists() && jpath.exists(), "the stopped session removed its partial or journal");
    let r = journal::load(&jpath, &identity(size)).unwrap();
    let file = std::fs::File::open(&partial).unwrap();
    assert_eq!(journal::verify_ranges(&file, &r.ranges).unwrap(), r.ranges, "a journaled range does not verify");
    let journaled: Vec<(u64, u64)> = r.ranges.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(merged(journaled.clone()), merged(written), "the journal does not hold exactly what was written");

    let (tree, start) = decided_tree(t.path(), size);
    assert_eq!(start, FileStart::Resume { have: journaled.clone() });
    // The rest arrives; the file is whole, its journal gone at commit.
    let mut rig = Rig::new(tree);
    for (o, l) in crate::files::journal::missing_ranges(&r.ranges, size, BS).ranges.iter().map(|r| (r.start, r.end)) {
        write_span(&mut rig.store, o, l, u64::MAX);
    }
    rig.store.drain().unwrap();
    rig.store.commit(0).unwrap();
    rig.stop().unwrap();
    assert_eq!(std::fs::read(t.path().join("big.bin")).unwrap(), block(0, size));
    assert!(!jpath.exists() && !partial.exists(), "commit left the partial or its journal");
}

/// A full disk (a small tmpfs; needs root): the write error names the file and says what to do; the
/// partial and its journal stay, and the journal's ranges verify.
#[test]
fn a_full_disk_keeps_the_partial_and_its_journal_and_says_to_free_space() {
    let t = TempDir::new("pipe-enospc");
    // Safety: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::testing::skip_or_fail("a_full_disk_keeps_the_partial_and_its_journal", "mounting a tmpfs needs root");
        return;
    }
    let mnt = t.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        crate::testing::skip_or_fail("a_full_disk_keeps_the_partial_and_its_journal", "mount -t tmpfs failed");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let size = 32 << 20;
    let (tree, _) = decided_tree(&mnt, size);
    let mut rig = Rig::new(tree);
    let mut err = None;
    let mut off = 0;
    while off < size && err.is_none() {
        if let Err(e) = rig.store.write_block(0, off, &block(off, u64::from(BS))) {
            err = Some(e);
        }
        off += u64::from(BS);
    }
    let err = err.or_else(|| rig.store.drain().err()).expect("32 MiB fit a 12 MiB tmpfs");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    let text = err.to_string();
    assert!(text.contains("'big.bin'") && text.contains("free space and run the same command again"), "{text}");
    let _ = rig.stop();
    let partial = mnt.join(partial_name("big.bin"));
    let jpath = journal_path_for(&partial);
    assert!(partial.exists() && jpath.exists(), "the full disk cost the partial or its journal");
    let r = journal::load(&jpath, &identity(size)).unwrap();
    let file = std::fs::File::open(&partial).unwrap();
    assert_eq!(journal::verify_ranges(&file, &r.ranges).unwrap(), r.ranges);
    assert!(r.journaled_bytes() > 0, "nothing was journaled before the disk filled");
}
