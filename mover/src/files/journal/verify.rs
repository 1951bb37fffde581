//! Re-reading journaled ranges from the data file: the fallback that trusts bytes, not records.

use super::JournalRange;
use std::io;
use std::os::unix::fs::FileExt;
use xxhash_rust::xxh3::Xxh3Default;

/// Read size of [`verify_ranges`] (one buffer per call, whatever the number or size of the ranges).
const VERIFY_CHUNK: usize = 1 << 20;

/// The ranges of `ranges` whose bytes in `file` still hash to the journaled xxh3-64, in the same order.
///
/// A range the file is too short for is dropped, as is one whose bytes differ (a block lost in a power cut,
/// a partial file edited by hand): those bytes are sent again. An I/O error other than a short read is
/// returned (the caller then starts the file over).
pub fn verify_ranges<F: FileExt>(file: &F, ranges: &[JournalRange]) -> io::Result<Vec<JournalRange>> {
    let largest = ranges.iter().map(|r| r.len).max().unwrap_or(0);
    let mut buf = vec![0u8; largest.min(VERIFY_CHUNK as u64) as usize];
    let mut kept = Vec::with_capacity(ranges.len());
    for r in ranges {
        if range_matches(file, r, &mut buf)? {
            kept.push(*r);
        }
    }
    Ok(kept)
}

/// Whether the bytes `[r.offset, r.end())` of `file` hash to `r.xxh3`; false if the file ends first.
fn range_matches<F: FileExt>(file: &F, r: &JournalRange, buf: &mut [u8]) -> io::Result<bool> {
    let Some(end) = r.offset.checked_add(r.len) else {
        return Ok(false);
    };
    let mut hash = Xxh3Default::new();
    let mut pos = r.offset;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], pos) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hash.digest() == r.xxh3)
}
