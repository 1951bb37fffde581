//! The `journal_load` fuzz target's checks and seeds (run by `fuzz/fuzz_targets/journal_load.rs` and, over
//! the seed corpus, by `mover/tests/fuzz_corpus.rs` through [`crate::fuzzing::TARGETS`]).

use super::format::{emit_header, emit_range, HEADER_RECORD_LEN, RANGE_RECORD_LEN};
use super::{missing_ranges, parse, FileIdentity, JournalHeader, JournalRange};

/// The source every fuzzed journal is read for: 100 blocks of 1000 bytes.
pub const FUZZ_HEADER: JournalHeader = JournalHeader {
    identity: FileIdentity { size: 100_000, mtime_ns: 1_700_000_000_123_456_789, mode: 0o100644, path_hash: 0x5eed },
    block_size: 1000,
};

/// Name the fuzzed journal is shown under in errors.
const NAME: &str = "f.journal";

/// Reads arbitrary bytes as a journal of [`FUZZ_HEADER`]'s source. Never panics on its own; panics if what
/// `parse` returns is inconsistent: ranges unsorted, overlapping, empty, outside the file or off the block
/// grid; a length that is not the whole records; a result that does not survive re-encoding; a missing-range
/// plan that does not cover exactly the rest of the file; an error message naming a directory.
///
/// The input is checked twice: as given, and with every record's checksum recomputed ([`reseal`]), so that
/// mutations get past the checksum to the structural checks behind it.
pub fn journal_load(data: &[u8]) {
    check(data);
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    check(&sealed);
}

/// Recomputes the checksum of each whole record from the start, up to the first impossible length.
fn reseal(journal: &mut [u8]) {
    let mut pos = 0;
    while let Some(prefix) = journal.get(pos..pos + 2) {
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if (len != HEADER_RECORD_LEN && len != RANGE_RECORD_LEN) || pos + len > journal.len() {
            return;
        }
        let check = xxhash_rust::xxh3::xxh3_64(&journal[pos..pos + len - 8]);
        journal[pos + len - 8..pos + len].copy_from_slice(&check.to_be_bytes());
        pos += len;
    }
}

fn check(data: &[u8]) {
    let expected = FUZZ_HEADER.identity;
    let resume = match parse(data, NAME, &expected) {
        Ok(resume) => resume,
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(NAME) && !text.contains('/') && text.len() < 300, "{text}");
            return;
        }
    };
    assert_eq!(resume.header.identity, expected);
    let size = expected.size;
    let bs = u64::from(resume.header.block_size);
    for r in &resume.ranges {
        assert!(r.len > 0 && r.end() <= size, "{r:?} outside the file");
        assert!(r.offset % bs == 0 && (r.len % bs == 0 || r.end() == size), "{r:?} off the grid");
    }
    assert!(resume.ranges.windows(2).all(|w| w[0].end() <= w[1].offset), "unsorted or overlapping");
    let valid = resume.valid_len as usize;
    assert_eq!(valid, HEADER_RECORD_LEN + resume.ranges.len() * RANGE_RECORD_LEN);
    assert_eq!(resume.torn_tail, valid < data.len());

    // Re-encoded (sorted, renumbered), the same ranges come back from a journal with no tail.
    let again = parse(&encode(&resume.header, &resume.ranges), NAME, &expected).expect("re-encoded journal");
    assert_eq!((again.ranges.as_slice(), again.torn_tail), (resume.ranges.as_slice(), false));

    // The plan covers exactly the bytes the ranges do not, on the journal's grid and on another one.
    for block_size in [resume.header.block_size, 4096] {
        let plan = missing_ranges(&resume.ranges, size, block_size);
        let missing: u64 = plan.ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(plan.resumed_bytes + missing, size);
        let mut all: Vec<_> = resume.ranges.iter().map(|r| r.offset..r.end()).chain(plan.ranges.clone()).collect();
        all.sort_by_key(|r| r.start);
        let mut to = 0;
        for r in all {
            assert!(r.start <= to, "byte {to} neither trusted nor missing");
            to = to.max(r.end);
        }
        assert_eq!(to, size);
        if block_size == resume.header.block_size {
            assert_eq!(plan.resumed_bytes, resume.journaled_bytes(), "on its own grid nothing is re-sent");
        }
    }
}

/// A journal holding `header` and `ranges` in this order (what a writer makes, in memory).
pub fn encode(header: &JournalHeader, ranges: &[JournalRange]) -> Vec<u8> {
    let mut out = emit_header(header).to_vec();
    for (i, r) in ranges.iter().enumerate() {
        out.extend_from_slice(&emit_range(i as u64 + 1, r));
    }
    out
}

/// The seed corpus of `journal_load`: valid journals (ranges out of order, a short last block), a torn and a
/// zero-filled tail, and journals refused for each kind of defect.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let h = FUZZ_HEADER;
    let r = |offset: u64, len: u64| JournalRange { offset, len, xxh3: offset ^ len.rotate_left(32) };
    let good = encode(&h, &[r(5000, 3000), r(0, 2000), r(99_000, 1000), r(20_000, 1000)]);
    let mut seeds = vec![
        ("empty", Vec::new()),
        ("header_only", encode(&h, &[])),
        ("ranges_out_of_order", good.clone()),
        ("short_last_block", encode(&h, &[r(98_000, 1000), r(99_000, 1000)])),
        ("overlap", encode(&h, &[r(0, 3000), r(2000, 1000)])),
        ("misaligned", encode(&h, &[r(500, 1000)])),
        ("past_the_end", encode(&h, &[r(99_000, 2000)])),
    ];
    seeds.push(("torn_tail", good[..good.len() - 17].to_vec()));
    seeds.push(("zero_tail", [&good[..], &[0u8; 100]].concat()));
    let mut flipped = good.clone();
    flipped[HEADER_RECORD_LEN + 20] ^= 4;
    seeds.push(("bad_checksum", flipped));
    let mut gap = encode(&h, &[r(0, 1000)]);
    gap.extend_from_slice(&emit_range(3, &r(1000, 1000)));
    seeds.push(("sequence_gap", gap));
    let mut other = h;
    other.identity.mtime_ns += 1;
    seeds.push(("source_changed", encode(&other, &[r(0, 1000)])));
    seeds
}
