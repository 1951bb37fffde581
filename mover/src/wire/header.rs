//! The 20-byte header every mover datagram starts with (PROTOCOL.md §2.1).

use super::{be, DropReason};

/// "MV": identifies a mover datagram (PROTOCOL.md §2.1).
pub const MAGIC: u16 = 0x4D56;
/// The wire protocol version this implementation speaks (PROTOCOL.md §2.1).
pub const VERSION: u8 = 3;
/// Bytes in the common header: magic 2, version 1, type 1, session id 8, packet number 8.
pub const COMMON_HEADER_LEN: usize = 20;

/// The datagram types (PROTOCOL.md §2.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// A block of file data, sender to receiver.
    Data = 1,
    /// Acknowledgements, NAKs and timing, receiver to sender.
    Feedback = 2,
}

/// The fields of the common header.
///
/// The header is authenticated but never encrypted: the receiver needs the session id to find the key and
/// the packet number to form the nonce (PROTOCOL.md §2.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CommonHeader {
    /// Data or feedback.
    pub packet_type: PacketType,
    /// The session, chosen by the receiver at set-up.
    pub session_id: u64,
    /// Unique per direction within a session, never reused (retransmissions get fresh numbers): the AEAD nonce.
    pub packet_number: u64,
}

impl CommonHeader {
    /// Parses the common header; `buf` is a whole datagram.
    pub fn parse(buf: &[u8]) -> Result<CommonHeader, DropReason> {
        if buf.len() < COMMON_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        if be::u16_at(buf, 0) != MAGIC {
            return Err(DropReason::BadMagic);
        }
        if buf[2] != VERSION {
            return Err(DropReason::BadVersion);
        }
        let packet_type = match buf[3] {
            1 => PacketType::Data,
            2 => PacketType::Feedback,
            _ => return Err(DropReason::BadType),
        };
        Ok(CommonHeader { packet_type, session_id: be::u64_at(buf, 4), packet_number: be::u64_at(buf, 12) })
    }

    /// Writes the header into the first [`COMMON_HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        assert!(buf.len() >= COMMON_HEADER_LEN);
        be::put_u16(buf, 0, MAGIC);
        buf[2] = VERSION;
        buf[3] = self.packet_type as u8;
        be::put_u64(buf, 4, self.session_id);
        be::put_u64(buf, 12, self.packet_number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let h =
            CommonHeader { packet_type: PacketType::Feedback, session_id: 0x0102_0304_0506_0708, packet_number: 99 };
        let mut b = [0u8; COMMON_HEADER_LEN];
        h.emit(&mut b);
        assert_eq!(CommonHeader::parse(&b), Ok(h));
        assert_eq!(CommonHeader::parse(&b[..19]), Err(DropReason::Truncated));
        let mut bad = b;
        bad[0] = 0;
        assert_eq!(CommonHeader::parse(&bad), Err(DropReason::BadMagic));
        let mut bad = b;
        bad[2] = 7;
        assert_eq!(CommonHeader::parse(&bad), Err(DropReason::BadVersion));
        let mut bad = b;
        bad[3] = 9;
        assert_eq!(CommonHeader::parse(&bad), Err(DropReason::BadType));
    }
}
