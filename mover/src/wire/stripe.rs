//! Sealed blocks of a striped transfer (the Fast Send Protocol, PROTOCOL.md §8): what a relay stores and
//! serves, and can neither read nor alter unnoticed.
//!
//! A striped push cuts each file into blocks of `block_bytes` (the last of a file may be shorter) and
//! numbers them across the manifest: the *global block index*. Each block travels as one sealed block
//! file: a 36-byte header, then the block's bytes encrypted with the transfer's key, then a 16-byte tag.
//! The key is derived (HKDF-SHA256, label [`LABEL_BLOCKS`]) from the session key the receiver chose and
//! gave the sender inside their control channel, never to a relay. The header is the associated data: a
//! relay that swaps two blocks, moves one to another offset, truncates one or replays a block of another
//! transfer makes the tag fail. The nonce is the global block index and the attempt number, so a block
//! sealed again (a re-fetch after a loss) never reuses a nonce with different bytes even if its source
//! changed in between.
//!
//! A file's *stripe hash* is xxh3-128 over the concatenated xxh3-128 digests of its blocks, in block
//! order: the sender computes it in whatever order it reads the blocks, the receiver from what it wrote
//! and read back, so the check covers the receiver's write path as the whole-file hash of a plain session
//! does (PROTOCOL.md §8.4).

use super::cipher::Cipher;
use super::keys::KeyDeriver;
use super::seal::{KEY_LEN, TAG_LEN};
use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use std::fmt;
use xxhash_rust::xxh3::xxh3_128;

/// HKDF info label of a transfer's block key (PROTOCOL.md §8.2).
pub const LABEL_BLOCKS: &[u8] = b"mover v3 stripe blocks";
/// The sealed block file's first bytes.
pub const BLOCK_MAGIC: [u8; 4] = *b"MVSB";
/// Version of the sealed block layout.
pub const BLOCK_VERSION: u8 = 1;
/// Header flag: the body is a zstd frame of the block.
pub const FLAG_COMPRESSED: u8 = 1;
/// Bytes of the sealed block header.
pub const BLOCK_HEADER_LEN: usize = 36;
/// Largest block a striped transfer may use (and the smallest), in plaintext bytes.
pub const MAX_BLOCK_BYTES: u32 = 64 << 20;
/// Smallest block size a striped transfer may use.
pub const MIN_BLOCK_BYTES: u32 = 64 << 10;
/// The default block size of `mover push --via`.
pub const DEFAULT_BLOCK_BYTES: u32 = 4 << 20;

/// Where a block belongs: the fields of its header (PROTOCOL.md §8.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// How many times this block was sealed before (0 for the first).
    pub attempt: u16,
    /// Index of the block across the manifest's regular files.
    pub global: u64,
    /// The file it belongs to (manifest order of regular files).
    pub file_id: u32,
    /// Offset in that file.
    pub offset: u64,
    /// Plaintext bytes.
    pub len: u32,
    /// 0 when the body is the plaintext; otherwise the body is one zstd frame of this many bytes (fewer
    /// than `len`) that decompresses to the plaintext (`--compress`, PROTOCOL.md §8.2).
    pub frame: u32,
}

impl BlockHeader {
    /// Bytes of the sealed body: the frame's, or the plaintext's.
    pub fn body_len(&self) -> usize {
        if self.frame > 0 {
            self.frame as usize
        } else {
            self.len as usize
        }
    }
}

/// Why a sealed block was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// Shorter than a header and a tag, or its length disagrees with the header.
    Truncated,
    /// Not a sealed block (magic or version).
    NotABlock,
    /// The tag did not verify: the block was altered, or sealed for another transfer.
    BadTag,
    /// It authenticated, but is not the block that was expected there.
    Misplaced,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockError::Truncated => "the sealed block is truncated",
            BlockError::NotABlock => "not a sealed block",
            BlockError::BadTag => "the sealed block failed authentication (altered, or not of this transfer)",
            BlockError::Misplaced => "the sealed block is not the one expected at its place",
        })
    }
}

impl std::error::Error for BlockError {}

impl BlockHeader {
    /// The 36 header bytes: magic, version, flags (bit 0: compressed), attempt, global index, file id,
    /// offset, length, frame length (0 when raw).
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut h = [0u8; BLOCK_HEADER_LEN];
        h[..4].copy_from_slice(&BLOCK_MAGIC);
        h[4] = BLOCK_VERSION;
        h[6..8].copy_from_slice(&self.attempt.to_be_bytes());
        h[8..16].copy_from_slice(&self.global.to_be_bytes());
        h[16..20].copy_from_slice(&self.file_id.to_be_bytes());
        h[20..28].copy_from_slice(&self.offset.to_be_bytes());
        h[28..32].copy_from_slice(&self.len.to_be_bytes());
        if self.frame > 0 {
            h[5] = FLAG_COMPRESSED;
            h[32..36].copy_from_slice(&self.frame.to_be_bytes());
        }
        h
    }

    /// Parses a sealed block's header (not yet authenticated: believe nothing before [`BlockKey::open`]).
    pub fn decode(b: &[u8]) -> Result<BlockHeader, BlockError> {
        if b.len() < BLOCK_HEADER_LEN + TAG_LEN {
            return Err(BlockError::Truncated);
        }
        if b[..4] != BLOCK_MAGIC || b[4] != BLOCK_VERSION || b[5] & !FLAG_COMPRESSED != 0 {
            return Err(BlockError::NotABlock);
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let h = BlockHeader {
            attempt: u16::from_be_bytes([b[6], b[7]]),
            global: u64_at(8),
            file_id: u32_at(16),
            offset: u64_at(20),
            len: u32_at(28),
            frame: u32_at(32),
        };
        // A compressed block's frame is shorter than its plaintext, and not empty; a raw one has none.
        let frame_ok = if b[5] & FLAG_COMPRESSED != 0 { h.frame > 0 && h.frame < h.len } else { h.frame == 0 };
        if !frame_ok {
            return Err(BlockError::NotABlock);
        }
        if h.len > MAX_BLOCK_BYTES || b.len() != BLOCK_HEADER_LEN + h.body_len() + TAG_LEN {
            return Err(BlockError::Truncated);
        }
        Ok(h)
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..8].copy_from_slice(&self.global.to_be_bytes());
        n[8..10].copy_from_slice(&self.attempt.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// The key a striped transfer's blocks are sealed with, known to its sender and receiver only.
pub struct BlockKey {
    key: LessSafeKey,
}

impl fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockKey(<redacted>)")
    }
}

impl BlockKey {
    /// The block key of transfer `transfer_id` from the session key `key`; `None` for the `none` cipher,
    /// which a striped transfer refuses (relays are not trusted).
    pub fn new(cipher: Cipher, key: &[u8; KEY_LEN], transfer_id: u128) -> Option<BlockKey> {
        // The transfer id's two halves both go into the derivation: the low one as the deriver's session
        // id, the high one as the epoch.
        let mut d = KeyDeriver::new(cipher, key, transfer_id as u64, LABEL_BLOCKS)?;
        Some(BlockKey { key: d.derive((transfer_id >> 64) as u64) })
    }

    /// Seals `body` (the block `h` describes: its plaintext, or with `h.frame` its zstd frame) into a sealed
    /// block file's bytes.
    pub fn seal(&self, h: &BlockHeader, body: &[u8]) -> Vec<u8> {
        let plain = body;
        assert_eq!(plain.len(), h.body_len(), "the header's length is the body's");
        let header = h.encode();
        let mut out = Vec::with_capacity(BLOCK_HEADER_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(h.nonce(), Aad::from(&header), &mut out[BLOCK_HEADER_LEN..])
            .expect("a block is far below the AEAD's length limit");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens a sealed block in place: checks its tag and that it is `expected` (the block the plan puts at
    /// that index; `attempt` and `frame` are not compared), and returns the header and the body (the
    /// plaintext, or with `frame` the zstd frame to decompress into `len` bytes).
    pub fn open<'a>(
        &self,
        sealed: &'a mut [u8],
        expected: &BlockHeader,
    ) -> Result<(BlockHeader, &'a [u8]), BlockError> {
        let h = BlockHeader::decode(sealed)?;
        let header: [u8; BLOCK_HEADER_LEN] = sealed[..BLOCK_HEADER_LEN].try_into().expect("header bytes");
        let body = &mut sealed[BLOCK_HEADER_LEN..];
        let plain = self.key.open_in_place(h.nonce(), Aad::from(&header), body).map_err(|_| BlockError::BadTag)?;
        if (h.global, h.file_id, h.offset, h.len) != (expected.global, expected.file_id, expected.offset, expected.len)
        {
            return Err(BlockError::Misplaced);
        }
        Ok((h, plain))
    }
}

/// A block's digest, the stripe hash's input.
pub fn block_digest(plain: &[u8]) -> u128 {
    xxh3_128(plain)
}

/// A file's stripe hash from its blocks' digests in block order (an empty file has none).
pub fn stripe_hash(digests: &[u128]) -> u128 {
    let mut bytes = Vec::with_capacity(digests.len() * 16);
    for d in digests {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    xxh3_128(&bytes)
}

/// A transfer id as the relays and the receiver's staging name it: 32 lowercase hex digits.
pub fn transfer_name(id: u128) -> String {
    format!("{id:032x}")
}

/// Parses [`transfer_name`]'s form, refusing anything else (relays name directories by it).
pub fn parse_transfer_name(s: &str) -> Option<u128> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// A batch's directory name on a relay: `b` and its number.
pub fn batch_name(batch: u32) -> String {
    format!("b{batch}")
}

/// Parses [`batch_name`]'s form.
pub fn parse_batch_name(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('b')?;
    if digits.is_empty()
        || digits.len() > 10
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0') && digits.len() > 1
    {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u128) -> BlockKey {
        BlockKey::new(Cipher::Aes256Gcm, &[7; KEY_LEN], id).unwrap()
    }

    fn header(global: u64, len: u32) -> BlockHeader {
        BlockHeader { attempt: 0, global, file_id: 2, offset: global * 4096, len, frame: 0 }
    }

    #[test]
    fn a_block_round_trips_and_hides_its_bytes() {
        let plain = b"PLAINTEXT-MARKER ".repeat(100);
        let h = header(5, plain.len() as u32);
        let mut sealed = key(1).seal(&h, &plain);
        assert_eq!(sealed.len(), BLOCK_HEADER_LEN + plain.len() + TAG_LEN);
        assert!(!sealed.windows(16).any(|w| w == b"PLAINTEXT-MARKER"), "ciphertext holds the plaintext");
        let (got, opened) = key(1).open(&mut sealed, &h).unwrap();
        assert_eq!(got, h);
        assert_eq!(opened, &plain[..]);
    }

    #[test]
    fn a_compressed_block_round_trips_and_its_header_is_checked() {
        use crate::wire::compress::{BlockCompressor, BlockUnpacker};
        let plain = b"ACGTTGCA+FFFF:FFF\n".repeat(500);
        let mut frame = vec![0u8; plain.len()];
        let n = BlockCompressor::new(1).unwrap().compress(&plain, &mut frame).unwrap();
        let h = BlockHeader { frame: n as u32, ..header(6, plain.len() as u32) };
        let sealed = key(1).seal(&h, &frame[..n]);
        assert_eq!(sealed.len(), BLOCK_HEADER_LEN + n + TAG_LEN);
        // The plan's header has no frame: the frame length is not part of the place check.
        let mut opened = sealed.clone();
        let (got, body) = key(1).open(&mut opened, &header(6, plain.len() as u32)).unwrap();
        assert_eq!(got, h);
        let mut back = vec![0u8; got.len as usize];
        BlockUnpacker::new().unwrap().unpack(body, &mut back).unwrap();
        assert_eq!(back, plain);
        // The flag without a frame length, a frame length without the flag, a frame as long as the block.
        let mut no_len = sealed.clone();
        no_len[32..36].copy_from_slice(&[0; 4]);
        assert_eq!(BlockHeader::decode(&no_len), Err(BlockError::NotABlock));
        let mut no_flag = sealed.clone();
        no_flag[5] = 0;
        assert_eq!(BlockHeader::decode(&no_flag), Err(BlockError::NotABlock));
        let mut long = sealed.clone();
        long[32..36].copy_from_slice(&(plain.len() as u32).to_be_bytes());
        assert_eq!(BlockHeader::decode(&long), Err(BlockError::NotABlock));
    }

    #[test]
    fn every_alteration_is_caught() {
        let plain = vec![9u8; 1000];
        let h = header(3, 1000);
        let sealed = key(1).seal(&h, &plain);
        for i in [0, 4, 7, 9, 17, 25, 31, 40, 500, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert!(key(1).open(&mut bad, &h).is_err(), "a flip at byte {i} went unnoticed");
        }
        // Another transfer's key, a truncation, a block put at another index.
        assert_eq!(key(2).open(&mut sealed.clone(), &h), Err(BlockError::BadTag));
        assert_eq!(key(1).open(&mut sealed[..sealed.len() - 1].to_vec(), &h), Err(BlockError::Truncated));
        let elsewhere = BlockHeader { global: 4, ..h };
        assert_eq!(key(1).open(&mut sealed.clone(), &elsewhere), Err(BlockError::Misplaced));
    }

    #[test]
    fn a_second_attempt_uses_another_nonce() {
        let h = header(1, 64);
        let again = BlockHeader { attempt: 1, ..h };
        let (a, b) = (key(1).seal(&h, &[0; 64]), key(1).seal(&again, &[0; 64]));
        assert_ne!(a[BLOCK_HEADER_LEN..], b[BLOCK_HEADER_LEN..]);
        assert!(key(1).open(&mut b.clone(), &h).is_ok(), "the attempt is not part of the place");
    }

    #[test]
    fn names_parse_only_their_own_form() {
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128;
        assert_eq!(parse_transfer_name(&transfer_name(id)), Some(id));
        for bad in ["", "0123", "../etc", &"A".repeat(32), &"0".repeat(33)] {
            assert_eq!(parse_transfer_name(bad), None, "{bad}");
        }
        assert_eq!(parse_batch_name(&batch_name(17)), Some(17));
        for bad in ["b", "b01", "17", "b1/..", "b99999999999", "b-1"] {
            assert_eq!(parse_batch_name(bad), None, "{bad}");
        }
        assert_ne!(stripe_hash(&[1, 2]), stripe_hash(&[2, 1]));
    }
}
