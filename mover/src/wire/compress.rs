//! Per-block compression (`--compress none|zstd[:LEVEL]|auto`, PROTOCOL.md §4.8): the choice as it
//! travels in [`TransferOptions`](super::TransferOptions), and the zstd codec of one block.
//!
//! A block is compressed on its own (one zstd frame per block, no shared dictionary), before it is sealed,
//! so every datagram (or sealed stripe block) can be opened, decompressed and written without any other:
//! losses, repairs and resume keep working on blocks. A block whose frame would not be smaller than the
//! block is sent as it was, flagged raw. Decompression is bounded by the size the receiver expects (the
//! block's length, which it knows from the plan): a frame that claims more, or yields less, is refused.

use std::fmt;

/// The lowest and highest zstd level `--compress zstd:LEVEL` accepts.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;
/// `--compress zstd` without a level: zstd's own default.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// The level `auto` compresses at: the fastest, since it only pays while compression outruns the path.
pub const AUTO_LEVEL: i32 = 1;

/// How blocks are compressed before they are sealed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Never (the default).
    #[default]
    None,
    /// Every block, with zstd at this level (a block that does not shrink is still sent raw).
    Zstd(i32),
    /// While it raises goodput: the sender weighs the measured compression speed and ratio against the
    /// path's rate (`proto::compress::AutoEncoder`).
    Auto,
}

impl Compression {
    /// The two wire bits of the mode and the five of the level (PROTOCOL.md §3.2, options bits 6-12).
    pub(crate) fn to_bits(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Zstd(level) => 1 | ((level.clamp(0, 31) as u32) << 2),
            Compression::Auto => 2,
        }
    }

    /// The choice from its wire bits (already shifted down); `None` if they name no valid choice.
    pub(crate) fn from_bits(bits: u32) -> Option<Compression> {
        let level = (bits >> 2) as i32;
        match bits & 3 {
            0 if level == 0 => Some(Compression::None),
            1 if ZSTD_LEVELS.contains(&level) => Some(Compression::Zstd(level)),
            2 if level == 0 => Some(Compression::Auto),
            _ => None,
        }
    }

    /// Whether any block may be compressed.
    pub fn is_on(self) -> bool {
        self != Compression::None
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
            Compression::Auto => f.write_str("auto"),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Compression, String> {
        let bad = || format!("unknown compression '{s}' (use none, zstd, zstd:LEVEL with LEVEL 1-19, or auto)");
        match s {
            "none" => Ok(Compression::None),
            "auto" => Ok(Compression::Auto),
            "zstd" => Ok(Compression::Zstd(ZSTD_DEFAULT_LEVEL)),
            _ => {
                let level = s.strip_prefix("zstd:").ok_or_else(bad)?;
                match level.parse::<i32>() {
                    Ok(l) if ZSTD_LEVELS.contains(&l) => Ok(Compression::Zstd(l)),
                    _ => Err(bad()),
                }
            }
        }
    }
}

/// Compresses blocks, one zstd frame each, reusing one compression context.
pub struct BlockCompressor {
    cx: zstd::bulk::Compressor<'static>,
}

impl BlockCompressor {
    /// A compressor at `level` (any level zstd knows; [`ZSTD_LEVELS`] are what users may ask for).
    pub fn new(level: i32) -> std::io::Result<BlockCompressor> {
        let mut cx = zstd::bulk::Compressor::new(level)?;
        // The frame's own checksum would repeat what the AEAD tag and the whole-file hash already check;
        // the content size is kept: the decompressor checks it against the block's length first.
        cx.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false))?;
        cx.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
        Ok(BlockCompressor { cx })
    }

    /// Compresses `raw` into `out` and returns the frame's length if it is shorter than `raw` (and fits
    /// `out`); `None` means: send the block raw.
    pub fn compress(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize> {
        // Only strictly smaller frames are useful: at most raw.len() - 1 bytes of `out`.
        let room = out.len().min(raw.len().saturating_sub(1));
        match self.cx.compress_to_buffer(raw, &mut out[..room]) {
            Ok(n) if n < raw.len() => Some(n),
            _ => None,
        }
    }
}

/// Why a compressed block was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpackError {
    /// Not a zstd frame, or a damaged one.
    Corrupt,
    /// The frame holds a different number of bytes than the block's length.
    WrongLength {
        /// Bytes the block must have.
        expected: usize,
        /// Bytes the frame held (or claimed).
        got: usize,
    },
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::Corrupt => f.write_str("a compressed block does not decompress"),
            UnpackError::WrongLength { expected, got } => {
                write!(f, "a compressed block holds {got} bytes where {expected} were expected")
            }
        }
    }
}

/// Decompresses blocks, reusing one decompression context.
pub struct BlockUnpacker {
    cx: zstd::bulk::Decompressor<'static>,
}

impl BlockUnpacker {
    /// A decompressor.
    pub fn new() -> std::io::Result<BlockUnpacker> {
        Ok(BlockUnpacker { cx: zstd::bulk::Decompressor::new()? })
    }

    /// Decompresses one frame into `out`, which must come out exactly full: the frame's declared size is
    /// checked first, so no frame can make it write past `out` or allocate.
    pub fn unpack(&mut self, frame: &[u8], out: &mut [u8]) -> Result<(), UnpackError> {
        match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n == out.len() as u64 => {}
            Ok(Some(n)) => {
                return Err(UnpackError::WrongLength { expected: out.len(), got: n.min(usize::MAX as u64) as usize })
            }
            // A frame must declare its size (ours always do).
            _ => return Err(UnpackError::Corrupt),
        }
        match self.cx.decompress_to_buffer(frame, out) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(n) => Err(UnpackError::WrongLength { expected: out.len(), got: n }),
            Err(_) => Err(UnpackError::Corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        b"@read:1:N:0\nACGTTGCAACGTAGCT\n+\nFFFF:FFF,FFFFFFF\n".iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn choices_parse_print_and_round_trip_their_bits() {
        for (s, c) in [
            ("none", Compression::None),
            ("auto", Compression::Auto),
            ("zstd", Compression::Zstd(3)),
            ("zstd:1", Compression::Zstd(1)),
            ("zstd:19", Compression::Zstd(19)),
        ] {
            assert_eq!(s.parse::<Compression>(), Ok(c));
            assert_eq!(Compression::from_bits(c.to_bits()), Some(c));
        }
        assert_eq!(Compression::Zstd(7).to_string(), "zstd:7");
        for bad in ["zstd:0", "zstd:20", "zstd:", "gzip", "zstd:x", "ZSTD"] {
            let e = bad.parse::<Compression>().unwrap_err();
            assert!(e.contains("use none, zstd"), "{e}");
        }
        // Bits that name nothing: mode 3, a level on none or auto, a zstd level out of range.
        for bits in [3, 1 << 2, 2 | (1 << 2), 1, 1 | (20 << 2)] {
            assert_eq!(Compression::from_bits(bits), None, "bits {bits:#x}");
        }
    }

    #[test]
    fn text_shrinks_and_comes_back_identical() {
        let raw = text(8948);
        let mut out = vec![0u8; raw.len()];
        let n = BlockCompressor::new(1).unwrap().compress(&raw, &mut out).expect("text shrinks");
        assert!(n * 3 < raw.len(), "{n} bytes");
        let mut back = vec![0u8; raw.len()];
        BlockUnpacker::new().unwrap().unpack(&out[..n], &mut back).unwrap();
        assert_eq!(back, raw);
    }

    #[test]
    fn a_block_that_would_grow_is_left_raw() {
        // xorshift bytes: incompressible to zstd.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let raw: Vec<u8> = (0..1412)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut out = vec![0u8; raw.len()];
        assert_eq!(BlockCompressor::new(19).unwrap().compress(&raw, &mut out), None);
        // An output buffer too small for the frame is the same answer, not an error.
        assert_eq!(BlockCompressor::new(1).unwrap().compress(&text(4000), &mut [0u8; 8]), None);
    }

    #[test]
    fn damaged_or_mislabelled_frames_are_refused() {
        let raw = text(4096);
        let mut frame = vec![0u8; raw.len()];
        let n = BlockCompressor::new(3).unwrap().compress(&raw, &mut frame).unwrap();
        let frame = &frame[..n];
        let mut un = BlockUnpacker::new().unwrap();
        // Expecting another length: refused before decompressing.
        assert_eq!(un.unpack(frame, &mut [0u8; 4095]), Err(UnpackError::WrongLength { expected: 4095, got: 4096 }));
        // Truncated, garbage, empty.
        let mut out = vec![0u8; 4096];
        assert!(un.unpack(&frame[..n - 3], &mut out).is_err());
        assert_eq!(un.unpack(b"not a frame at all", &mut out), Err(UnpackError::Corrupt));
        assert_eq!(un.unpack(&[], &mut out), Err(UnpackError::Corrupt));
        // Every single-byte flip either is refused or (in a literal) yields other bytes of the same length.
        for i in 0..n {
            let mut bad = frame.to_vec();
            bad[i] ^= 0x5a;
            if un.unpack(&bad, &mut out).is_ok() {
                assert_eq!(out.len(), 4096);
            }
        }
        // The unpacker still works after all that.
        un.unpack(frame, &mut out).unwrap();
        assert_eq!(out, raw);
    }
}
