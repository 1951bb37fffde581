//! Data packets: one block of one file (PROTOCOL.md §2.3).
//!
//! ```text
//!  0  common header (20 bytes, type 1)
//! 20  file_id     u32   index of the regular file in the manifest
//! 24  offset      u64   byte offset of the block in the file (a multiple of the session's block size)
//! 32  len         u16   payload bytes
//! 34  flags       u8    bit 0: retransmission; other bits reserved (sent as 0, ignored)
//! 35  round       u8    verification round (0, then 1.. for files re-sent after a whole-file mismatch)
//! 36  tx_time_us  u32   sender clock at scheduled departure, microseconds (echoed for RTT; one-way delay)
//! 40  srtt_us     u32   sender's smoothed RTT, so the receiver can time its NAKs (0 = unknown)
//! 44  payload     len bytes
//!     tag         16 bytes
//! ```

use super::header::{CommonHeader, PacketType, COMMON_HEADER_LEN};
use super::{be, DropReason, TAG_LEN};
use std::ops::Range;

/// Bytes from the start of a data datagram to its payload.
pub const DATA_HEADER_LEN: usize = COMMON_HEADER_LEN + 24;
/// Bytes a data datagram adds to its payload: header and tag.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// Flag bit: this block was sent before.
pub const FLAG_RETRANSMIT: u8 = 0x01;
/// Flag: the payload is one zstd frame of the block (PROTOCOL.md §4.8); `len` is the frame's length, and the
/// block's own length is what the plan says for its offset.
pub const FLAG_COMPRESSED: u8 = 0x02;

/// The fields of a data packet's header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DataHeader {
    /// Session id.
    pub session_id: u64,
    /// Packet number (unique per transmission).
    pub packet_number: u64,
    /// The file's id (its index among the manifest's regular files).
    pub file_id: u32,
    /// Offset of the block in the file.
    pub offset: u64,
    /// Payload length.
    pub len: u16,
    /// Flag bits ([`FLAG_RETRANSMIT`]).
    pub flags: u8,
    /// Verification round.
    pub round: u8,
    /// Sender's clock at transmission in microseconds (wrapping).
    pub tx_time_us: u32,
    /// Sender's smoothed RTT in microseconds, 0 if unknown.
    pub srtt_us: u32,
}

impl DataHeader {
    /// Total datagram length for this header's payload.
    pub fn datagram_len(&self) -> usize {
        DATA_OVERHEAD + self.len as usize
    }

    /// Where the payload goes in the datagram.
    pub fn payload_range(&self) -> Range<usize> {
        DATA_HEADER_LEN..DATA_HEADER_LEN + self.len as usize
    }

    /// Writes the header into `buf`, which must hold the whole datagram; the caller then fills the payload and
    /// seals `buf[..datagram_len()]`.
    pub fn emit(&self, buf: &mut [u8]) {
        assert!(buf.len() >= self.datagram_len(), "datagram buffer too small");
        CommonHeader { packet_type: PacketType::Data, session_id: self.session_id, packet_number: self.packet_number }
            .emit(buf);
        be::put_u32(buf, 20, self.file_id);
        be::put_u64(buf, 24, self.offset);
        be::put_u16(buf, 32, self.len);
        buf[34] = self.flags;
        buf[35] = self.round;
        be::put_u32(buf, 36, self.tx_time_us);
        be::put_u32(buf, 40, self.srtt_us);
    }

    /// Parses a whole data datagram (tag not checked here); the payload is `datagram[payload_range()]`.
    pub fn parse(datagram: &[u8]) -> Result<DataHeader, DropReason> {
        let common = CommonHeader::parse(datagram)?;
        if common.packet_type != PacketType::Data {
            return Err(DropReason::BadType);
        }
        if datagram.len() < DATA_OVERHEAD {
            return Err(DropReason::Truncated);
        }
        let len = be::u16_at(datagram, 32);
        if datagram.len() != DATA_OVERHEAD + len as usize {
            return Err(DropReason::Malformed);
        }
        let offset = be::u64_at(datagram, 24);
        if offset.checked_add(len as u64).is_none() {
            return Err(DropReason::Malformed);
        }
        Ok(DataHeader {
            session_id: common.session_id,
            packet_number: common.packet_number,
            file_id: be::u32_at(datagram, 20),
            offset,
            len,
            flags: datagram[34],
            round: datagram[35],
            tx_time_us: be::u32_at(datagram, 36),
            srtt_us: be::u32_at(datagram, 40),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Sealer;

    fn sample() -> DataHeader {
        DataHeader {
            session_id: 7,
            packet_number: 1 << 40,
            file_id: 3,
            offset: 5 << 32,
            len: 5,
            flags: FLAG_RETRANSMIT,
            round: 1,
            tx_time_us: 123,
            srtt_us: 100_000,
        }
    }

    #[test]
    fn round_trip_with_payload_and_tag() {
        let h = sample();
        let mut buf = vec![0u8; h.datagram_len()];
        h.emit(&mut buf);
        buf[h.payload_range()].copy_from_slice(b"hello");
        let mut sealer = Sealer::integrity(7);
        sealer.seal(&mut buf);
        assert_eq!(sealer.open(&mut buf.clone()), Ok(()));
        let p = DataHeader::parse(&buf).unwrap();
        assert_eq!(p, h);
        assert_eq!(&buf[p.payload_range()], b"hello");
    }

    #[test]
    fn inconsistent_lengths_are_malformed() {
        let h = sample();
        let mut buf = vec![0u8; h.datagram_len() + 1];
        h.emit(&mut buf);
        assert_eq!(DataHeader::parse(&buf), Err(DropReason::Malformed));
        assert_eq!(DataHeader::parse(&buf[..DATA_OVERHEAD - 1]), Err(DropReason::Truncated));
        let mut h2 = sample();
        h2.offset = u64::MAX - 1;
        let mut buf = vec![0u8; h2.datagram_len()];
        h2.emit(&mut buf);
        assert_eq!(DataHeader::parse(&buf), Err(DropReason::Malformed));
    }
}
