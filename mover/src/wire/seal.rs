//! The 16-byte tag at the end of every datagram (PROTOCOL.md §2.2).
//!
//! Today the tag is an integrity check: xxh3-128 over everything before it, seeded with the session id. It
//! catches corruption in flight so that only the damaged block is resent, but it is not authentication: a
//! party who knows the session id can forge it. The slot is sized and placed for an AEAD (a 16-byte tag after
//! the ciphertext, the common header as associated data, the nonce derived from the packet number), so
//! encryption arrives without a format change.

use super::{DropReason, COMMON_HEADER_LEN};
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// Bytes in the tag slot at the end of every datagram.
pub const TAG_LEN: usize = 16;
/// Bytes in a session key (PROTOCOL.md §6).
pub const KEY_LEN: usize = 32;

/// How a session's datagrams are sealed (`--cipher`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256-GCM: the default; hardware AES makes it the fastest on x86-64 and ARMv8.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305: for CPUs without AES instructions.
    ChaCha20Poly1305,
    /// No encryption and no authentication: the xxh3 integrity tag only. Only when asked for by name.
    None,
}

impl Cipher {
    /// Every cipher, in wire-code order.
    pub const ALL: [Cipher; 3] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305, Cipher::None];

    /// The name on the command line, in summaries and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes256gcm",
            Cipher::ChaCha20Poly1305 => "chacha20poly1305",
            Cipher::None => "none",
        }
    }

    /// The byte that names the cipher in control messages (PROTOCOL.md §3.2).
    pub fn code(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
            Cipher::None => 0,
        }
    }

    /// The cipher a control message's byte names.
    pub fn from_code(code: u8) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Whether datagrams are encrypted and authenticated.
    pub fn is_aead(self) -> bool {
        self != Cipher::None
    }
}

impl std::str::FromStr for Cipher {
    type Err = String;
    fn from_str(s: &str) -> Result<Cipher, String> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown cipher '{s}' (expected aes256gcm, chacha20poly1305 or none)"))
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Seals outgoing datagrams and opens incoming ones for one session.
#[derive(Clone, Debug)]
pub struct Sealer {
    seed: u64,
}

impl Sealer {
    /// The integrity-only sealer of the session `session_id` (the `none` cipher).
    pub fn integrity(session_id: u64) -> Sealer {
        Sealer { seed: session_id ^ 0x6d6f_7665_725f_7631 }
    }

    /// Fills the last [`TAG_LEN`] bytes of `datagram` with the tag over the bytes before them.
    pub fn seal(&self, datagram: &mut [u8]) {
        assert!(datagram.len() >= COMMON_HEADER_LEN + TAG_LEN);
        let body_end = datagram.len() - TAG_LEN;
        let tag = xxh3_128_with_seed(&datagram[..body_end], self.seed);
        datagram[body_end..].copy_from_slice(&tag.to_le_bytes());
    }

    /// Checks the tag of `datagram`; on success the body is `datagram[COMMON_HEADER_LEN..len - TAG_LEN]`.
    pub fn open(&self, datagram: &[u8]) -> Result<(), DropReason> {
        if datagram.len() < COMMON_HEADER_LEN + TAG_LEN {
            return Err(DropReason::Truncated);
        }
        let body_end = datagram.len() - TAG_LEN;
        let tag = xxh3_128_with_seed(&datagram[..body_end], self.seed);
        if datagram[body_end..] != tag.to_le_bytes() {
            return Err(DropReason::BadTag);
        }
        Ok(())
    }
}

/// The checks every received datagram goes through before its type-specific parse, in the order of
/// PROTOCOL.md §2.3/§2.4: size, common header, type, session, tag. One place, so that when the tag becomes an
/// AEAD tag every datagram is opened the same way.
pub fn open_datagram(
    datagram: &[u8],
    expected: super::PacketType,
    sealer: &Sealer,
    session_id: u64,
    max_len: usize,
) -> Result<super::CommonHeader, DropReason> {
    if datagram.len() > max_len {
        return Err(DropReason::Oversized);
    }
    let common = super::CommonHeader::parse(datagram)?;
    if common.packet_type != expected {
        return Err(DropReason::BadType);
    }
    if common.session_id != session_id {
        return Err(DropReason::WrongSession);
    }
    sealer.open(datagram)?;
    Ok(common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_flipped_bit_is_caught() {
        let s = Sealer::integrity(42);
        let mut d = vec![7u8; 100];
        s.seal(&mut d);
        assert_eq!(s.open(&d), Ok(()));
        for byte in 0..d.len() {
            let mut c = d.clone();
            c[byte] ^= 0x10;
            assert_eq!(s.open(&c), Err(DropReason::BadTag), "flip in byte {byte}");
        }
        assert_eq!(Sealer::integrity(43).open(&d), Err(DropReason::BadTag));
        assert_eq!(s.open(&d[..30]), Err(DropReason::Truncated));
    }
}
