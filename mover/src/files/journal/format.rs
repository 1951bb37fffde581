//! Encoding and decoding of single journal records (the layout is documented on the module, `journal/mod.rs`).

use super::{Corruption, FileIdentity, JournalHeader, JournalRange};
use xxhash_rust::xxh3::xxh3_64;

/// The header's magic bytes.
pub const MAGIC: [u8; 8] = *b"MOVERJNL";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Length of the header record.
pub const HEADER_RECORD_LEN: usize = PREFIX_LEN + HEADER_BODY_LEN + CHECK_LEN;
/// Length of a range record.
pub const RANGE_RECORD_LEN: usize = PREFIX_LEN + RANGE_BODY_LEN + CHECK_LEN;

/// `record_len`, kind, reserved, seq.
const PREFIX_LEN: usize = 12;
const HEADER_BODY_LEN: usize = 48;
const RANGE_BODY_LEN: usize = 24;
const CHECK_LEN: usize = 8;
const KIND_HEADER: u8 = 1;
const KIND_RANGE: u8 = 2;

// The reader tells records apart by length first: the two lengths must differ, and fit the u16 field.
const _: () = assert!(HEADER_RECORD_LEN == 68 && RANGE_RECORD_LEN == 44);
const _: () = assert!(HEADER_RECORD_LEN != RANGE_RECORD_LEN && HEADER_RECORD_LEN <= u16::MAX as usize);

/// A decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Header(JournalHeader),
    Range(JournalRange),
}

/// What lies at a record boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing: the journal ends here.
    End,
    /// A record cut short by the end of the journal, or a tail of zero bytes: a crash mid-append.
    Torn,
    /// A whole, checksummed record of `len` bytes.
    Record { seq: u64, record: Record, len: usize },
    /// A whole record that is malformed.
    Corrupt(Corruption),
}

/// Encodes the header record (sequence number 0).
pub(crate) fn emit_header(h: &JournalHeader) -> [u8; HEADER_RECORD_LEN] {
    let mut rec = [0u8; HEADER_RECORD_LEN];
    let body = &mut rec[PREFIX_LEN..PREFIX_LEN + HEADER_BODY_LEN];
    body[0..8].copy_from_slice(&MAGIC);
    body[8..10].copy_from_slice(&VERSION.to_be_bytes());
    body[12..16].copy_from_slice(&h.block_size.to_be_bytes());
    body[16..24].copy_from_slice(&h.identity.size.to_be_bytes());
    body[24..32].copy_from_slice(&h.identity.mtime_ns.to_be_bytes());
    body[32..36].copy_from_slice(&h.identity.mode.to_be_bytes());
    body[40..48].copy_from_slice(&h.identity.path_hash.to_be_bytes());
    seal(&mut rec, KIND_HEADER, 0);
    rec
}

/// Encodes a range record.
pub(crate) fn emit_range(seq: u64, r: &JournalRange) -> [u8; RANGE_RECORD_LEN] {
    let mut rec = [0u8; RANGE_RECORD_LEN];
    let body = &mut rec[PREFIX_LEN..PREFIX_LEN + RANGE_BODY_LEN];
    body[0..8].copy_from_slice(&r.offset.to_be_bytes());
    body[8..16].copy_from_slice(&r.len.to_be_bytes());
    body[16..24].copy_from_slice(&r.xxh3.to_be_bytes());
    seal(&mut rec, KIND_RANGE, seq);
    rec
}

/// Reads the record at the start of `rest` (the journal from a record boundary to its end).
pub(crate) fn next_record(rest: &[u8]) -> Next {
    if rest.is_empty() {
        return Next::End;
    }
    if rest.len() < 2 {
        return Next::Torn;
    }
    let record_len = u16::from_be_bytes([rest[0], rest[1]]);
    // Scanned only here, where the journal stops being read either way: reading stays linear.
    if record_len == 0 && rest.iter().all(|&b| b == 0) {
        return Next::Torn;
    }
    let len = usize::from(record_len);
    if len != HEADER_RECORD_LEN && len != RANGE_RECORD_LEN {
        return Next::Corrupt(Corruption::BadLength(record_len));
    }
    let Some(rec) = rest.get(..len) else {
        return Next::Torn;
    };
    let (covered, check) = rec.split_at(len - CHECK_LEN);
    if xxh3_64(covered) != be_u64(check) {
        // A file system may extend the journal before the appended bytes land, leaving zeros: a last record
        // that ends in zeros (its last byte, and all after it) is torn, not corrupt. Dropping it is safe either
        // way: only trusting a record could let a wrong byte pass.
        if check[CHECK_LEN - 1] == 0 && rest[len..].iter().all(|&b| b == 0) {
            return Next::Torn;
        }
        return Next::Corrupt(Corruption::BadChecksum);
    }
    let kind = rec[2];
    let expected_kind = if len == HEADER_RECORD_LEN { KIND_HEADER } else { KIND_RANGE };
    if kind != expected_kind || rec[3] != 0 {
        return Next::Corrupt(Corruption::BadKind(kind));
    }
    let seq = be_u64(&rec[4..12]);
    let body = &rec[PREFIX_LEN..len - CHECK_LEN];
    let record = if kind == KIND_HEADER {
        match decode_header(body) {
            Ok(h) => Record::Header(h),
            Err(why) => return Next::Corrupt(why),
        }
    } else {
        Record::Range(JournalRange {
            offset: be_u64(&body[0..8]),
            len: be_u64(&body[8..16]),
            xxh3: be_u64(&body[16..24]),
        })
    };
    Next::Record { seq, record, len }
}

fn decode_header(body: &[u8]) -> Result<JournalHeader, Corruption> {
    if body[0..8] != MAGIC {
        return Err(Corruption::BadMagic);
    }
    let version = u16::from_be_bytes([body[8], body[9]]);
    if version != VERSION {
        return Err(Corruption::UnsupportedVersion(version));
    }
    if body[10..12] != [0, 0] || body[36..40] != [0; 4] {
        return Err(Corruption::BadKind(KIND_HEADER));
    }
    let block_size = u32::from_be_bytes([body[12], body[13], body[14], body[15]]);
    if block_size == 0 {
        return Err(Corruption::ZeroBlockSize);
    }
    let identity = FileIdentity {
        size: be_u64(&body[16..24]),
        mtime_ns: be_u64(&body[24..32]) as i64,
        mode: u32::from_be_bytes([body[32], body[33], body[34], body[35]]),
        path_hash: be_u64(&body[40..48]),
    };
    Ok(JournalHeader { identity, block_size })
}

/// Writes the prefix and the checksum around an encoded body.
fn seal(rec: &mut [u8], kind: u8, seq: u64) {
    let len = rec.len();
    rec[0..2].copy_from_slice(&(len as u16).to_be_bytes());
    rec[2] = kind;
    rec[4..12].copy_from_slice(&seq.to_be_bytes());
    let check = xxh3_64(&rec[..len - CHECK_LEN]);
    rec[len - CHECK_LEN..].copy_from_slice(&check.to_be_bytes());
}

/// A big-endian u64 from exactly 8 bytes (callers slice fixed offsets of a record whose length was checked).
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> JournalHeader {
        let identity = FileIdentity { size: 1 << 40, mtime_ns: -5, mode: 0o100644, path_hash: 0xdead_beef };
        JournalHeader { identity, block_size: 1412 }
    }

    #[test]
    fn records_decode_to_what_was_encoded() {
        let h = header();
        let rec = emit_header(&h);
        assert_eq!(next_record(&rec), Next::Record { seq: 0, record: Record::Header(h), len: HEADER_RECORD_LEN });
        let r = JournalRange { offset: 1412 * 3, len: 1412, xxh3: 42 };
        let rec = emit_range(7, &r);
        assert_eq!(next_record(&rec), Next::Record { seq: 7, record: Record::Range(r), len: RANGE_RECORD_LEN });
    }

    #[test]
    fn a_cut_record_is_torn_and_a_flipped_bit_is_corrupt() {
        let rec = emit_range(1, &JournalRange { offset: 0, len: 10, xxh3: 1 });
        for cut in 1..rec.len() {
            assert_eq!(next_record(&rec[..cut]), Next::Torn, "cut at {cut}");
        }
        for bit in 0..rec.len() * 8 {
            let mut bad = rec;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(next_record(&bad), Next::Corrupt(_)), "bit {bit}: {:?}", next_record(&bad));
        }
    }

    #[test]
    fn zeros_are_a_torn_tail_not_a_record() {
        assert_eq!(next_record(&[]), Next::End);
        assert_eq!(next_record(&[0; 200]), Next::Torn);
        assert_eq!(next_record(&[0, 44, 0]), Next::Torn);
        assert_eq!(next_record(&[0, 45, 0]), Next::Corrupt(Corruption::BadLength(45)));
        let rec = emit_range(1, &JournalRange { offset: 0, len: 10, xxh3: 1 });
        for cut in 2..rec.len() {
            let mut zeroed = rec;
            zeroed[cut..].fill(0);
            let mut longer = zeroed.to_vec();
            longer.extend([0; 9]);
            assert_eq!(next_record(&zeroed), Next::Torn, "zeroed from {cut}");
            assert_eq!(next_record(&longer), Next::Torn, "zeroed from {cut}, zeros after");
            longer.push(1);
            assert_eq!(next_record(&longer), Next::Corrupt(Corruption::BadChecksum), "not the last record");
        }
    }
}
