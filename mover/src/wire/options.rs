//! What the client asks of a transfer beyond its data path: sync semantics, resume and what metadata to keep
//! (`--overwrite`, `--checksum`, `--no-resume`, `--preserve owner`, `--xattrs`). It travels in the `Hello`
//! (push) and `Pull` messages as one `u32` of bits (PROTOCOL.md §3.2), so the side that receives decides
//! with the client's choices.

use std::fmt;
use std::str::FromStr;

/// When a file that already exists at the destination is replaced (`--overwrite`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Never: an existing destination file is left as it is.
    Never,
    /// Always: every file is sent again.
    Always,
    /// Only when the source's modification time is newer than the destination's.
    IfNewer,
    /// When size or modification time differ (rsync's quick check), or, with `--checksum`, the content.
    #[default]
    IfDifferent,
}

impl Overwrite {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Overwrite::Never => "never",
            Overwrite::Always => "always",
            Overwrite::IfNewer => "if-newer",
            Overwrite::IfDifferent => "if-different",
        }
    }

    fn code(self) -> u32 {
        match self {
            Overwrite::IfDifferent => 0,
            Overwrite::Never => 1,
            Overwrite::Always => 2,
            Overwrite::IfNewer => 3,
        }
    }

    fn from_code(code: u32) -> Overwrite {
        match code & 3 {
            1 => Overwrite::Never,
            2 => Overwrite::Always,
            3 => Overwrite::IfNewer,
            _ => Overwrite::IfDifferent,
        }
    }
}

impl fmt::Display for Overwrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> Result<Overwrite, String> {
        match s {
            "never" => Ok(Overwrite::Never),
            "always" => Ok(Overwrite::Always),
            "if-newer" => Ok(Overwrite::IfNewer),
            "if-different" => Ok(Overwrite::IfDifferent),
            other => Err(format!("unknown overwrite mode '{other}' (use never, always, if-newer or if-different)")),
        }
    }
}

/// The client's choices for one transfer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TransferOptions {
    /// When existing destination files are replaced.
    pub overwrite: Overwrite,
    /// Compare content hashes instead of size and modification time (`--checksum`).
    pub checksum: bool,
    /// Resume from partial files the receiver holds (the default; `--no-resume` turns it off).
    pub resume: bool,
    /// Keep owners and groups when the receiver runs as root (`--preserve owner`).
    pub preserve_owner: bool,
    /// Send and set extended attributes (`--xattrs`).
    pub xattrs: bool,
    /// How the sender compresses blocks (`--compress`); a receiver takes whatever it is sent.
    pub compress: super::Compression,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            overwrite: Overwrite::IfDifferent,
            checksum: false,
            resume: true,
            preserve_owner: false,
            xattrs: false,
            compress: super::Compression::None,
        }
    }
}

const BIT_CHECKSUM: u32 = 1 << 2;
const BIT_NO_RESUME: u32 = 1 << 3;
const BIT_PRESERVE_OWNER: u32 = 1 << 4;
const BIT_XATTRS: u32 = 1 << 5;
/// Bits 6-12: the compression choice (`Compression::to_bits`, two bits of mode, five of level).
const COMPRESS_SHIFT: u32 = 6;
const COMPRESS_BITS: u32 = 0x7f << COMPRESS_SHIFT;
/// Every bit a peer of this version may set; others are refused (a newer client asking for something this
/// receiver cannot do must hear so, not be ignored). A `Hello` puts its rate policy above them
/// (`control::HELLO_POLICY_SHIFT`).
pub const KNOWN_BITS: u32 = 3 | BIT_CHECKSUM | BIT_NO_RESUME | BIT_PRESERVE_OWNER | BIT_XATTRS | COMPRESS_BITS;

impl TransferOptions {
    /// The options as wire bits: bits 0-1 the overwrite mode, then one bit per flag.
    pub fn to_bits(self) -> u32 {
        let mut bits = self.overwrite.code();
        if self.checksum {
            bits |= BIT_CHECKSUM;
        }
        if !self.resume {
            bits |= BIT_NO_RESUME;
        }
        if self.preserve_owner {
            bits |= BIT_PRESERVE_OWNER;
        }
        if self.xattrs {
            bits |= BIT_XATTRS;
        }
        bits | (self.compress.to_bits() << COMPRESS_SHIFT)
    }

    /// Options from wire bits; `None` if a bit this version does not know is set.
    pub fn from_bits(bits: u32) -> Option<TransferOptions> {
        if bits & !KNOWN_BITS != 0 {
            return None;
        }
        Some(TransferOptions {
            overwrite: Overwrite::from_code(bits),
            checksum: bits & BIT_CHECKSUM != 0,
            resume: bits & BIT_NO_RESUME == 0,
            preserve_owner: bits & BIT_PRESERVE_OWNER != 0,
            xattrs: bits & BIT_XATTRS != 0,
            compress: super::Compression::from_bits((bits & COMPRESS_BITS) >> COMPRESS_SHIFT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Compression;

    #[test]
    fn bits_round_trip_and_unknown_bits_are_refused() {
        for overwrite in [Overwrite::Never, Overwrite::Always, Overwrite::IfNewer, Overwrite::IfDifferent] {
            for flags in 0..16u32 {
                let o = TransferOptions {
                    overwrite,
                    checksum: flags & 1 != 0,
                    resume: flags & 2 != 0,
                    preserve_owner: flags & 4 != 0,
                    xattrs: flags & 8 != 0,
                    compress: [Compression::None, Compression::Zstd(19), Compression::Auto][flags as usize % 3],
                };
                assert_eq!(TransferOptions::from_bits(o.to_bits()), Some(o));
                assert_eq!(o.overwrite.name().parse::<Overwrite>(), Ok(overwrite));
            }
        }
        assert_eq!(TransferOptions::from_bits(0), Some(TransferOptions::default()));
        assert_eq!(TransferOptions::from_bits(1 << 13), None);
        // Compression bits that name nothing (mode 3).
        assert_eq!(TransferOptions::from_bits(3 << 6), None);
        assert!("sometimes".parse::<Overwrite>().is_err());
    }
}
