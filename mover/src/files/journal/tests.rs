//! The journal's tests: round trips through real files, torn tails, corruption (a fault-injecting test),
//! identity checks, merging, the durability order and bounded memory.

use super::format::{HEADER_RECORD_LEN, RANGE_RECORD_LEN};
use super::fuzz::{encode, journal_load, seeds};
use super::*;
use crate::testing::TempDir;
use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use xxhash_rust::xxh3::xxh3_64;

const BLOCK: u32 = 512;

/// splitmix64: a seeded generator, so every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// A data file in memory, read the way `verify_ranges` reads a `File`.
struct Mem(Vec<u8>);

impl FileExt for Mem {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<usize> {
        Err(io::Error::other("read-only"))
    }
}

/// A data file that only counts syncs, and notes how long the journal was at the last one.
#[derive(Clone)]
struct WatchedSync {
    journal: std::path::PathBuf,
    syncs: Rc<Cell<u32>>,
    journal_len_at_sync: Rc<Cell<u64>>,
    fail: Rc<Cell<bool>>,
}

impl SyncData for WatchedSync {
    fn sync_data(&self) -> io::Result<()> {
        if self.fail.get() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.syncs.set(self.syncs.get() + 1);
        // The journal is written as `<name>.new` until `resume` renames it.
        let mut tmp = self.journal.as_os_str().to_owned();
        tmp.push(".new");
        let len = fs::metadata(&self.journal).or_else(|_| fs::metadata(&tmp)).map(|m| m.len()).unwrap_or(0);
        self.journal_len_at_sync.set(len);
        Ok(())
    }
}

fn watched(journal: &std::path::Path) -> WatchedSync {
    WatchedSync {
        journal: journal.to_owned(),
        syncs: Rc::default(),
        journal_len_at_sync: Rc::default(),
        fail: Rc::default(),
    }
}

fn header_for(size: u64) -> JournalHeader {
    let identity = FileIdentity {
        size,
        mtime_ns: 1_764_000_000_000_000_001,
        mode: 0o100640,
        path_hash: FileIdentity::path_hash(b"a/b"),
    };
    JournalHeader { identity, block_size: BLOCK }
}

/// The blocks of a `size`-byte file as (offset, len).
fn blocks(size: u64) -> Vec<(u64, u64)> {
    (0..size.div_ceil(u64::from(BLOCK)))
        .map(|i| (i * u64::from(BLOCK), u64::from(BLOCK).min(size - i * u64::from(BLOCK))))
        .collect()
}

/// Writes `source` block by block in `order` to a data file, journaling each block, and flushes.
fn write_journaled(dir: &TempDir, source: &[u8], order: &[(u64, u64)], config: JournalConfig) -> (Vec<u8>, Vec<u8>) {
    let data_path = dir.path().join("f.part");
    let journal_path = journal_path_for(&data_path);
    let data = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&data_path).unwrap();
    let mut w = JournalWriter::create(&journal_path, header_for(source.len() as u64), data, config).unwrap();
    for &(offset, len) in order {
        let bytes = &source[offset as usize..(offset + len) as usize];
        w.data().write_all_at(bytes, offset).unwrap();
        w.record(offset, bytes).unwrap();
    }
    w.flush().unwrap();
    (fs::read(&journal_path).unwrap(), fs::read(&data_path).unwrap())
}

fn parse_ok(bytes: &[u8], size: u64) -> Resume {
    parse(bytes, "f.part.journal", &header_for(size).identity).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn round_trip_through_files_merges_runs_and_plans_the_holes() {
    let dir = TempDir::new("journal-rt");
    let mut rng = Rng(1);
    let size = 40 * u64::from(BLOCK) + 100;
    let source = rng.bytes(size as usize);
    let all = blocks(size);
    // Blocks 0..10 in order, then 30..41 in order, then 20 and 12: blocks 10..12, 13..20 and 21..30 never arrive.
    let order: Vec<_> = all[0..10].iter().chain(&all[30..41]).chain([&all[20], &all[12]]).copied().collect();
    let (journal, data) = write_journaled(&dir, &source, &order, JournalConfig::default());
    assert_eq!(journal.len(), HEADER_RECORD_LEN + 4 * RANGE_RECORD_LEN, "four runs, four records");

    let data_path = dir.path().join("f.part");
    let resume = load(&journal_path_for(&data_path), &header_for(size).identity).unwrap();
    let spans: Vec<_> = resume.ranges.iter().map(|r| (r.offset, r.len)).collect();
    let b = u64::from(BLOCK);
    assert_eq!(spans, [(0, 10 * b), (12 * b, b), (20 * b, b), (30 * b, 10 * b + 100)]);
    assert!(!resume.torn_tail);
    assert_eq!(resume.valid_len, journal.len() as u64);
    for r in &resume.ranges {
        assert_eq!(r.xxh3, xxh3_64(&source[r.offset as usize..r.end() as usize]));
    }
    let file = File::open(&data_path).unwrap();
    assert_eq!(verify_ranges(&file, &resume.ranges).unwrap(), resume.ranges);
    assert_eq!(data.len() as u64, size);

    let plan = missing_ranges(&resume.ranges, size, BLOCK);
    assert_eq!(plan.ranges, [10 * b..12 * b, 13 * b..20 * b, 21 * b..30 * b]);
    assert_eq!(plan.resumed_bytes, resume.journaled_bytes());
}

#[test]
fn a_journal_torn_at_any_byte_of_its_last_record_keeps_the_others() {
    let dir = TempDir::new("journal-torn");
    let size = 10 * u64::from(BLOCK);
    let source = Rng(2).bytes(size as usize);
    let all = blocks(size);
    let order = [all[4], all[0], all[8]];
    let (journal, _) = write_journaled(&dir, &source, &order, JournalConfig::default());
    let whole = parse_ok(&journal, size);
    assert_eq!(whole.ranges.len(), 3);
    let last_start = journal.len() - RANGE_RECORD_LEN;
    for cut in last_start..journal.len() {
        let r = parse_ok(&journal[..cut], size);
        assert_eq!(r.ranges.len(), 2, "cut at {cut}");
        assert!(r.ranges.iter().all(|x| x.offset != 8 * u64::from(BLOCK)), "the last record (block 8) is dropped");
        assert_eq!(r.torn_tail, cut > last_start);
        assert_eq!(r.valid_len, last_start as u64);
        // A crash that extended the file with zeros instead of the record is the same torn tail.
        let mut zeroed = journal.clone();
        zeroed[cut..].fill(0);
        assert_eq!(parse_ok(&zeroed, size).ranges, r.ranges, "zeroed from {cut}");
    }
    for cut in 0..HEADER_RECORD_LEN {
        let e = parse(&journal[..cut], "j", &header_for(size).identity).unwrap_err();
        assert!(matches!(e, JournalError::Corrupt { why: Corruption::NoHeader, at: 0, .. }), "{cut}: {e}");
    }
}

#[test]
fn a_flipped_bit_anywhere_is_refused_or_drops_only_the_torn_record() {
    let dir = TempDir::new("journal-flip");
    let size = 10 * u64::from(BLOCK);
    let source = Rng(3).bytes(size as usize);
    let all = blocks(size);
    let (journal, data) = write_journaled(&dir, &source, &[all[4], all[0], all[9]], JournalConfig::default());
    let whole = parse_ok(&journal, size);
    let (mut refused, mut kept) = (0, 0);
    for bit in 0..journal.len() * 8 {
        let mut bad = journal.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match parse(&bad, "j", &header_for(size).identity) {
            Err(_) => refused += 1,
            Ok(r) => {
                // Only a flip in the last record can pass, as a torn tail (its last byte being zero).
                kept += 1;
                assert!(bit / 8 >= journal.len() - RANGE_RECORD_LEN && r.torn_tail, "bit {bit} accepted");
                assert!(r.ranges.iter().all(|x| whole.ranges.contains(x)), "bit {bit} invented a range");
                assert_eq!(verify_ranges(&Mem(data.clone()), &r.ranges).unwrap(), r.ranges);
            }
        }
    }
    // Every record is checksummed and its length is one of two values: a single flip is refused unless the
    // last record looks torn, which only drops that record.
    let last_ends_in_zero = journal[journal.len() - 1] == 0;
    assert!(kept == 0 || last_ends_in_zero, "{kept} flips accepted, {refused} refused");
    assert!(refused >= (journal.len() - RANGE_RECORD_LEN) * 8);
}

#[test]
fn a_journal_of_another_source_is_never_applied() {
    let size = 4 * u64::from(BLOCK);
    let h = header_for(size);
    let journal = encode(&h, &[JournalRange { offset: 0, len: u64::from(BLOCK), xxh3: 1 }]);
    type Change = fn(&mut FileIdentity);
    let cases: [(Change, IdentityField); 4] = [
        (|i| i.size += 1, IdentityField::Size),
        (|i| i.mtime_ns -= 1, IdentityField::Mtime),
        (|i| i.mode ^= 0o111, IdentityField::Mode),
        (|i| i.path_hash = FileIdentity::path_hash(b"a/c"), IdentityField::Path),
    ];
    for (change, field) in cases {
        let mut source = h.identity;
        change(&mut source);
        match parse(&journal, "x.journal", &source) {
            Err(e @ JournalError::Mismatch { field: f, .. }) => {
                assert_eq!(f, field);
                let text = e.to_string();
                assert!(text.starts_with("resume journal \"x.journal\": not applied: "), "{text}");
            }
            other => panic!("{field:?}: {other:?}"),
        }
    }
    assert!(parse(&journal, "x.journal", &h.identity).is_ok());
}

#[test]
fn identity_comes_from_metadata_in_nanoseconds() {
    let dir = TempDir::new("journal-id");
    let path = dir.path().join("src");
    fs::write(&path, b"hello").unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
    let id = FileIdentity::of(&fs::metadata(&path).unwrap(), b"d/src");
    assert_eq!((id.size, id.mtime_ns, id.path_hash), (5, 1_700_000_000_123_456_789, FileIdentity::path_hash(b"d/src")));
    assert_eq!(id.mode & 0o170000, 0o100000, "a regular file");
}

#[test]
fn structural_defects_are_named() {
    let size = 10 * u64::from(BLOCK);
    let h = header_for(size);
    let b = u64::from(BLOCK);
    let r = |offset, len| JournalRange { offset, len, xxh3: 7 };
    let why = |bytes: &[u8]| match parse(bytes, "j", &h.identity) {
        Err(JournalError::Corrupt { why, .. }) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(why(&encode(&h, &[r(0, 2 * b), r(b, b)])), Corruption::Overlap);
    assert_eq!(why(&encode(&h, &[r(9 * b, 2 * b)])), Corruption::OutOfFile);
    assert_eq!(why(&encode(&h, &[r(0, 0)])), Corruption::OutOfFile);
    assert_eq!(why(&encode(&h, &[r(u64::MAX - 10, 100)])), Corruption::OutOfFile);
    assert_eq!(why(&encode(&h, &[r(1, b)])), Corruption::Misaligned);
    assert_eq!(why(&encode(&h, &[r(0, b + 1)])), Corruption::Misaligned);
    let mut two_headers = encode(&h, &[]);
    two_headers.extend(encode(&h, &[]));
    assert_eq!(why(&two_headers), Corruption::SequenceGap { expected: 1, found: 0 });
    let mut gap = encode(&h, &[r(0, b)]);
    gap.extend_from_slice(&format::emit_range(3, &r(b, b)));
    assert_eq!(why(&gap), Corruption::SequenceGap { expected: 2, found: 3 });
    assert_eq!(why(&format::emit_range(0, &r(0, b))), Corruption::MisplacedRecord);
    // A last block shorter than the block size is fine where the file ends.
    assert_eq!(
        parse(&encode(&header_for(size - 5), &[r(9 * b, b - 5)]), "j", &header_for(size - 5).identity)
            .unwrap()
            .ranges
            .len(),
        1
    );
}

#[test]
fn errors_name_the_journal_file_only() {
    let dir = TempDir::new("journal-err");
    let path = dir.path().join("deep").join("x.part.journal");
    let e = load(&path, &header_for(1).identity).unwrap_err();
    assert!(e.is_not_found());
    let text = e.to_string();
    assert!(text.contains("\"x.part.journal\"") && !text.contains(dir.path().to_str().unwrap()), "{text}");
    let corrupt = parse(&[1, 2, 3], "y.journal", &header_for(1).identity).unwrap_err();
    assert_eq!(
        corrupt.to_string(),
        "resume journal \"y.journal\": not trusted: record at byte 0: impossible record length 258"
    );
}

#[test]
#[allow(clippy::single_range_in_vec_init)] // plans of one range, meant
fn missing_ranges_widen_to_the_current_grid() {
    let r = |offset, len| JournalRange { offset, len, xxh3: 0 };
    let plan = missing_ranges(&[], 1000, 300);
    assert_eq!((plan.ranges, plan.resumed_bytes), (vec![0..1000], 0));
    let plan = missing_ranges(&[r(0, 1000)], 1000, 300);
    assert_eq!((plan.ranges, plan.resumed_bytes), (vec![], 1000));
    // Journal grid 200, transfer grid 300: [200, 400) and [600, 800) are missing; blocks [0,300), [300,600),
    // [600,900) hold missing bytes; [900, 1000) is covered.
    let plan = missing_ranges(&[r(0, 200), r(400, 200), r(800, 200)], 1000, 300);
    assert_eq!((plan.ranges, plan.resumed_bytes), (vec![0..900], 100));
    let plan = missing_ranges(&[r(0, 200), r(400, 200)], 2000, 200);
    assert_eq!((plan.ranges, plan.resumed_bytes), (vec![200..400, 600..2000], 400));
    assert_eq!(missing_ranges(&[], 0, 1).ranges, vec![]);
}

#[test]
fn a_range_is_journaled_only_after_the_data_is_synced() {
    let dir = TempDir::new("journal-order");
    let path = dir.path().join("o.journal");
    let sync = watched(&path);
    let size = 100 * u64::from(BLOCK);
    let config = JournalConfig { step_bytes: 4 * u64::from(BLOCK), max_open_runs: 4 };
    let mut w = JournalWriter::create(&path, header_for(size), sync.clone(), config).unwrap();
    let header_only = HEADER_RECORD_LEN as u64;
    assert_eq!(fs::metadata(&path).unwrap().len(), header_only);
    let block = vec![9u8; BLOCK as usize];
    for i in 0..3 {
        w.record(i * u64::from(BLOCK), &block).unwrap();
    }
    assert_eq!(fs::metadata(&path).unwrap().len(), header_only, "below the step: nothing journaled yet");
    let syncs = sync.syncs.get();
    w.record(3 * u64::from(BLOCK), &block).unwrap(); // the fourth block reaches the step
    assert_eq!(sync.syncs.get(), syncs + 1);
    assert_eq!(sync.journal_len_at_sync.get(), header_only, "the data was synced before the record was written");
    assert_eq!(fs::metadata(&path).unwrap().len(), header_only + RANGE_RECORD_LEN as u64, "one merged run");
    w.flush().unwrap();
    assert_eq!(sync.syncs.get(), syncs + 1, "an empty flush syncs nothing");
}

#[test]
fn a_failed_data_sync_journals_nothing_and_stops_the_writer() {
    let dir = TempDir::new("journal-poison");
    let path = dir.path().join("p.journal");
    let sync = watched(&path);
    let mut w = JournalWriter::create(&path, header_for(10 * u64::from(BLOCK)), sync.clone(), JournalConfig::default())
        .unwrap();
    sync.fail.set(true);
    w.record(0, &vec![1; BLOCK as usize]).unwrap();
    let e = w.flush().unwrap_err();
    assert!(e.to_string().contains("sync data file"), "{e}");
    assert_eq!(fs::metadata(&path).unwrap().len(), HEADER_RECORD_LEN as u64);
    assert!(w.record(u64::from(BLOCK), &vec![1; BLOCK as usize]).is_err());
    assert!(w.flush().is_err());
}

#[test]
#[allow(clippy::single_range_in_vec_init)] // a plan of one range, meant
fn resume_rewrites_the_journal_without_its_torn_tail_or_dropped_ranges() {
    let dir = TempDir::new("journal-resume");
    let size = 20 * u64::from(BLOCK);
    let source = Rng(5).bytes(size as usize);
    let all = blocks(size);
    let order = [all[0], all[1], all[5], all[9]];
    let config = JournalConfig { step_bytes: 1, max_open_runs: 4 };
    let (journal, _) = write_journaled(&dir, &source, &order, config);
    let data_path = dir.path().join("f.part");
    let journal_path = journal_path_for(&data_path);
    // A crash mid-append, and block 5 lost from the data file.
    fs::write(&journal_path, &journal[..journal.len() - 10]).unwrap();
    let data = OpenOptions::new().read(true).write(true).open(&data_path).unwrap();
    data.write_all_at(&[0; 8], 5 * u64::from(BLOCK) + 100).unwrap();
    let identity = header_for(size).identity;
    let resume = load(&journal_path, &identity).unwrap();
    assert!(resume.torn_tail);
    let trusted = verify_ranges(&data, &resume.ranges).unwrap();
    let b = u64::from(BLOCK);
    // A step per block (step_bytes 1): one record each; block 9's record was torn, block 5's bytes were lost.
    assert_eq!(trusted.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(), [(0, b), (b, b)]);
    let plan = missing_ranges(&trusted, size, BLOCK);
    assert_eq!(plan.ranges, [2 * b..size]);

    let mut w = JournalWriter::resume(&journal_path, header_for(size), &trusted, data, config).unwrap();
    for &(offset, len) in &all[2..] {
        let bytes = &source[offset as usize..(offset + len) as usize];
        w.data().write_all_at(bytes, offset).unwrap();
        w.record(offset, bytes).unwrap();
    }
    w.flush().unwrap();
    let after = load(&journal_path, &identity).unwrap();
    assert!(!after.torn_tail);
    assert_eq!(after.journaled_bytes(), size);
    assert_eq!(verify_ranges(&File::open(&data_path).unwrap(), &after.ranges).unwrap(), after.ranges);
    assert_eq!(missing_ranges(&after.ranges, size, BLOCK).resumed_bytes, size);
    assert!(!dir.path().join("f.part.journal.new").exists());
}

#[test]
fn writer_memory_is_bounded_however_scattered_the_ranges() {
    let dir = TempDir::new("journal-mem");
    let path = dir.path().join("m.journal");
    let blocks_n = 20_000u64;
    let size = blocks_n * u64::from(BLOCK);
    let config = JournalConfig { step_bytes: 1 << 30, max_open_runs: 8 };
    let mut w = JournalWriter::create(&path, header_for(size), watched(&path), config).unwrap();
    let reserved = w.reserved_bytes();
    let mut order: Vec<u64> = (0..blocks_n).collect();
    Rng(6).shuffle(&mut order);
    let block = vec![3u8; BLOCK as usize];
    for &i in &order {
        w.record(i * u64::from(BLOCK), &block).unwrap();
        assert!(w.pending_runs() <= 8);
    }
    w.flush().unwrap();
    assert_eq!(w.reserved_bytes(), reserved, "no buffer grew");
    assert!(reserved < 32 << 10, "{reserved} bytes");
    let resume = load(&path, &header_for(size).identity).unwrap();
    assert_eq!(resume.ranges.len() as u64, w.ranges_written());
    assert_eq!(resume.journaled_bytes(), size);
    // In order, the same file is one record per step.
    let path2 = dir.path().join("m2.journal");
    let mut w = JournalWriter::create(&path2, header_for(size), watched(&path2), config).unwrap();
    for i in 0..blocks_n {
        w.record(i * u64::from(BLOCK), &block).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(w.ranges_written(), 1);
}

/// A journal and data file after random faults: torn and zero-filled journal tails, flipped bits and
/// overwritten spans in the journal, records duplicated or swapped, and data blocks lost, overwritten or
/// cut off. Whatever `parse` accepts, `verify_ranges` must leave only ranges whose bytes are the source's.
#[test]
fn fault_injection_never_lets_a_wrong_byte_pass() {
    let dir = TempDir::new("journal-faults");
    let mut rng = Rng(0x15);
    let size = 64 * u64::from(BLOCK) + 77;
    let source = rng.bytes(size as usize);
    let identity = header_for(size).identity;
    // A few journals written by the writer: blocks arriving in random order, some never.
    let mut bases = Vec::new();
    for _ in 0..8 {
        let mut order = blocks(size);
        rng.shuffle(&mut order);
        order.truncate(order.len() - rng.below(20) as usize);
        let config =
            JournalConfig { step_bytes: rng.below(8 * u64::from(BLOCK)) + 1, max_open_runs: 1 + rng.below(6) as usize };
        bases.push(write_journaled(&dir, &source, &order, config));
    }
    let (mut refused, mut all_kept, mut some_dropped) = (0, 0, 0);
    const ITERATIONS: u32 = 12_000;
    for it in 0..ITERATIONS {
        let (journal, data) = &bases[rng.below(bases.len() as u64) as usize];
        let (mut journal, mut data) = (journal.clone(), data.clone());
        for _ in 0..1 + rng.below(3) {
            corrupt_one(&mut rng, &mut journal, &mut data);
        }
        let resume = if it % 200 == 0 {
            // Now and then through real files, as the receiver will.
            let jp = dir.path().join("fault.journal");
            fs::write(&jp, &journal).unwrap();
            load(&jp, &identity)
        } else {
            parse(&journal, "fault.journal", &identity)
        };
        let Ok(resume) = resume else {
            refused += 1;
            continue;
        };
        let trusted = verify_ranges(&Mem(data.clone()), &resume.ranges).unwrap();
        for r in &trusted {
            let (a, b) = (r.offset as usize, r.end() as usize);
            assert!(data[a..b] == source[a..b], "iteration {it}: wrong bytes in [{a}, {b}) passed");
        }
        if trusted.len() == resume.ranges.len() {
            all_kept += 1;
        } else {
            some_dropped += 1;
        }
        let plan = missing_ranges(&trusted, size, BLOCK);
        let missing: u64 = plan.ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(missing + plan.resumed_bytes, size);
    }
    // Each outcome happens often, so the assertion above was exercised on all three paths.
    assert!(refused > 1000 && all_kept > 1000 && some_dropped > 1000, "{refused} {all_kept} {some_dropped}");
}

fn corrupt_one(rng: &mut Rng, journal: &mut Vec<u8>, data: &mut Vec<u8>) {
    let jlen = journal.len() as u64;
    let dlen = data.len() as u64;
    match rng.below(9) {
        0 => {
            let bit = rng.below(jlen * 8);
            journal[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        1 => journal.truncate(rng.below(jlen + 1) as usize),
        2 => {
            let at = rng.below(jlen + 1) as usize;
            journal.truncate(at);
            journal.resize(at + rng.below(200) as usize, 0);
        }
        3 => {
            let at = rng.below(jlen) as usize;
            let n = (1 + rng.below(16) as usize).min(journal.len() - at);
            let junk = rng.bytes(n);
            journal[at..at + n].copy_from_slice(&junk);
        }
        4 => {
            // Duplicate or swap whole range records (each still checksums correctly).
            let n = (journal.len().saturating_sub(HEADER_RECORD_LEN)) / RANGE_RECORD_LEN;
            if n < 2 {
                return;
            }
            let rec = |i: u64| HEADER_RECORD_LEN + i as usize * RANGE_RECORD_LEN;
            let (i, j) = (rec(rng.below(n as u64)), rec(rng.below(n as u64)));
            let a: Vec<u8> = journal[i..i + RANGE_RECORD_LEN].to_vec();
            if rng.below(2) == 0 {
                journal[j..j + RANGE_RECORD_LEN].copy_from_slice(&a);
            } else {
                let b: Vec<u8> = journal[j..j + RANGE_RECORD_LEN].to_vec();
                journal[i..i + RANGE_RECORD_LEN].copy_from_slice(&b);
                journal[j..j + RANGE_RECORD_LEN].copy_from_slice(&a);
            }
        }
        5 | 6 => {
            // A block lost in a power cut: zeros, or stale bytes.
            let at = rng.below(dlen) as usize;
            let n = (1 + rng.below(2 * u64::from(BLOCK)) as usize).min(data.len() - at);
            if rng.below(2) == 0 {
                data[at..at + n].fill(0);
            } else {
                let junk = rng.bytes(n);
                data[at..at + n].copy_from_slice(&junk);
            }
        }
        7 => {
            let bit = rng.below(dlen * 8);
            data[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        _ => data.truncate(rng.below(dlen + 1) as usize),
    }
}

#[test]
fn every_seed_passes_the_fuzz_checks() {
    let seeds = seeds();
    assert!(seeds.len() >= 10);
    for (name, bytes) in &seeds {
        let r = std::panic::catch_unwind(|| journal_load(bytes));
        assert!(r.is_ok(), "seed {name}");
    }
    let accepted = seeds.iter().filter(|(_, b)| parse(b, "s", &fuzz::FUZZ_HEADER.identity).is_ok()).count();
    assert!((3..seeds.len()).contains(&accepted), "{accepted} of {} seeds accepted", seeds.len());
}

#[test]
fn the_writer_stops_at_max_ranges_and_the_reader_refuses_more() {
    let dir = TempDir::new("journal-max");
    let path = dir.path().join("x.journal");
    let b = u64::from(BLOCK);
    let size = (2 * MAX_RANGES + 40) * b;
    let h = header_for(size);
    let config = JournalConfig { step_bytes: u64::MAX, max_open_runs: 512 };
    let mut w = JournalWriter::create(&path, h, watched(&path), config).unwrap();
    let block = vec![5u8; BLOCK as usize];
    // Every other block: no two ranges merge.
    for i in 0..MAX_RANGES + 20 {
        w.record(2 * i * b, &block).unwrap();
    }
    w.flush().unwrap();
    assert!(w.is_full());
    assert_eq!(w.ranges_written(), MAX_RANGES);
    let started = std::time::Instant::now();
    let resume = load(&path, &h.identity).unwrap();
    eprintln!("loaded {} ranges ({} bytes) in {:?}", resume.ranges.len(), resume.valid_len, started.elapsed());
    assert_eq!(resume.ranges.len() as u64, MAX_RANGES);
    assert!(resume.valid_len <= MAX_JOURNAL_BYTES);

    let mut journal = fs::read(&path).unwrap();
    journal.extend_from_slice(&format::emit_range(MAX_RANGES + 1, &JournalRange { offset: b, len: b, xxh3: 0 }));
    match parse(&journal, "x.journal", &h.identity) {
        Err(JournalError::Corrupt { why: Corruption::TooManyRanges, .. }) => {}
        other => panic!("{other:?}"),
    }
    journal.resize(MAX_JOURNAL_BYTES as usize + 1, 0);
    fs::write(&path, &journal).unwrap();
    assert!(matches!(load(&path, &h.identity), Err(JournalError::TooLarge { .. })));
}

#[test]
fn a_rerun_with_another_block_size_keeps_the_ranges_on_its_grid() {
    let dir = TempDir::new("journal-grid");
    let b = u64::from(BLOCK);
    let size = 8 * b + 10;
    let source = Rng(7).bytes(size as usize);
    let all = blocks(size);
    // Runs [0, 3b), [4b, 6b) and the last block [8b, size) on the 512 grid.
    let order = [all[0], all[1], all[2], all[4], all[5], all[8]];
    let (journal, data) =
        write_journaled(&dir, &source, &order, JournalConfig { step_bytes: 1 << 20, max_open_runs: 8 });
    let resume = parse_ok(&journal, size);
    let trusted = verify_ranges(&Mem(data), &resume.ranges).unwrap();
    let doubled = JournalHeader { block_size: 2 * BLOCK, ..header_for(size) };
    let kept = ranges_on_grid(&trusted, &doubled);
    assert_eq!(kept.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(), [(4 * b, 2 * b), (8 * b, 10)]);
    let plan = missing_ranges(&kept, size, doubled.block_size);
    assert_eq!(plan.ranges, [0..4 * b, 6 * b..8 * b]);
    let path = dir.path().join("g.journal");
    let mut w = JournalWriter::resume(&path, doubled, &kept, watched(&path), JournalConfig::default()).unwrap();
    w.record(0, &source[..2 * b as usize]).unwrap();
    w.flush().unwrap();
    assert_eq!(load(&path, &doubled.identity).unwrap().journaled_bytes(), 4 * b + 10);
}
