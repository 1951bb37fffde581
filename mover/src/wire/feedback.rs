//! Feedback packets: cumulative ACK, NAK ranges and timing, receiver to sender (PROTOCOL.md §2.4).
//!
//! ```text
//!  0  common header (20 bytes, type 2)
//! 20  round            u8
//! 21  flags            u8    bit 0: owd_us is valid; other bits reserved (sent as 0, ignored)
//! 22  nak_count        u16   number of NAK ranges that follow
//! 24  echo_tx_time_us  u32   tx_time_us of the newest data packet received (0 if none yet)
//! 28  echo_delay_us    u32   how long the receiver held that timestamp before sending this feedback
//! 32  cum_ack          u64   every block with sequence number below this has been received
//! 40  recv_rate        u64   payload bytes per second received (duplicates too), over >= 10 ms windows
//! 48  received_packets u64   valid data packets received so far this session
//! 56  owd_us           u32   smallest one-way delay of the data packets received since the previous feedback:
//!                            receiver clock minus the packet's tx_time_us, wrapping (the clocks' offset is
//!                            unknown, so only differences between samples mean anything)
//! 60  nak ranges       nak_count x (start u64, count u32): blocks the receiver asks to be resent
//!     tag              16 bytes
//! ```

use super::header::{CommonHeader, PacketType, COMMON_HEADER_LEN};
use super::{be, DropReason, TAG_LEN};

/// Bytes before the NAK ranges.
pub const FEEDBACK_FIXED_LEN: usize = COMMON_HEADER_LEN + 40;
/// Flag: the `owd_us` field holds a sample.
pub const FLAG_OWD: u8 = 0x01;
/// Bytes per NAK range.
pub const NAK_RANGE_LEN: usize = 12;

/// A run of missing blocks: sequence numbers `start .. start + count`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NakRange {
    /// First missing sequence number.
    pub start: u64,
    /// How many consecutive blocks are missing (at least 1).
    pub count: u32,
}

/// The fixed fields of a feedback packet.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedbackHeader {
    /// Session id.
    pub session_id: u64,
    /// Packet number (the receiver's own sequence).
    pub packet_number: u64,
    /// Round the acknowledgements refer to.
    pub round: u8,
    /// Echo of the newest data packet's `tx_time_us`.
    pub echo_tx_time_us: u32,
    /// Microseconds between receiving that packet and sending this feedback.
    pub echo_delay_us: u32,
    /// All blocks below this sequence number are received.
    pub cum_ack: u64,
    /// Receive rate in payload bytes per second.
    pub recv_rate: u64,
    /// Valid data packets received so far.
    pub received_packets: u64,
    /// Smallest raw one-way delay (receiver clock minus sender clock, microseconds, wrapping) since the
    /// previous feedback; `None` when no data arrived in between.
    pub owd_us: Option<u32>,
}

/// The largest number of NAK ranges that fit in a feedback datagram of `max_datagram` bytes.
pub fn max_naks(max_datagram: usize) -> usize {
    max_datagram.saturating_sub(FEEDBACK_FIXED_LEN + TAG_LEN) / NAK_RANGE_LEN
}

/// Length of a feedback datagram with `nak_count` ranges.
pub fn datagram_len(nak_count: usize) -> usize {
    FEEDBACK_FIXED_LEN + nak_count * NAK_RANGE_LEN + TAG_LEN
}

impl FeedbackHeader {
    /// Writes the header and `naks` into `buf` and returns the datagram length; the caller seals
    /// `buf[..len]`. Panics if `buf` is too small (the caller sizes `naks` with [`max_naks`]).
    pub fn emit(&self, naks: &[NakRange], buf: &mut [u8]) -> usize {
        let len = datagram_len(naks.len());
        assert!(buf.len() >= len && naks.len() <= u16::MAX as usize);
        CommonHeader {
            packet_type: PacketType::Feedback,
            session_id: self.session_id,
            packet_number: self.packet_number,
        }
        .emit(buf);
        buf[20] = self.round;
        buf[21] = if self.owd_us.is_some() { FLAG_OWD } else { 0 };
        be::put_u16(buf, 22, naks.len() as u16);
        be::put_u32(buf, 24, self.echo_tx_time_us);
        be::put_u32(buf, 28, self.echo_delay_us);
        be::put_u64(buf, 32, self.cum_ack);
        be::put_u64(buf, 40, self.recv_rate);
        be::put_u64(buf, 48, self.received_packets);
        be::put_u32(buf, 56, self.owd_us.unwrap_or(0));
        for (i, n) in naks.iter().enumerate() {
            let at = FEEDBACK_FIXED_LEN + i * NAK_RANGE_LEN;
            be::put_u64(buf, at, n.start);
            be::put_u32(buf, at + 8, n.count);
        }
        len
    }

    /// Parses a whole feedback datagram (tag not checked here). NAK ranges are read with [`nak_ranges`].
    pub fn parse(datagram: &[u8]) -> Result<FeedbackHeader, DropReason> {
        let common = CommonHeader::parse(datagram)?;
        if common.packet_type != PacketType::Feedback {
            return Err(DropReason::BadType);
        }
        if datagram.len() < FEEDBACK_FIXED_LEN + TAG_LEN {
            return Err(DropReason::Truncated);
        }
        let nak_count = be::u16_at(datagram, 22) as usize;
        if datagram.len() != datagram_len(nak_count) {
            return Err(DropReason::Malformed);
        }
        for n in nak_ranges(datagram) {
            if n.count == 0 || n.start.checked_add(n.count as u64).is_none() {
                return Err(DropReason::Malformed);
            }
        }
        Ok(FeedbackHeader {
            session_id: common.session_id,
            packet_number: common.packet_number,
            round: datagram[20],
            echo_tx_time_us: be::u32_at(datagram, 24),
            echo_delay_us: be::u32_at(datagram, 28),
            cum_ack: be::u64_at(datagram, 32),
            recv_rate: be::u64_at(datagram, 40),
            received_packets: be::u64_at(datagram, 48),
            owd_us: (datagram[21] & FLAG_OWD != 0).then(|| be::u32_at(datagram, 56)),
        })
    }
}

/// The NAK ranges of a feedback datagram that [`FeedbackHeader::parse`] accepted (empty otherwise).
pub fn nak_ranges(datagram: &[u8]) -> impl Iterator<Item = NakRange> + '_ {
    let count = if datagram.len() >= FEEDBACK_FIXED_LEN + TAG_LEN { be::u16_at(datagram, 22) as usize } else { 0 };
    let count = if datagram.len() == datagram_len(count) { count } else { 0 };
    (0..count).map(move |i| {
        let at = FEEDBACK_FIXED_LEN + i * NAK_RANGE_LEN;
        NakRange { start: be::u64_at(datagram, at), count: be::u32_at(datagram, at + 8) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = FeedbackHeader {
            session_id: 1,
            packet_number: 2,
            round: 0,
            echo_tx_time_us: 3,
            echo_delay_us: 4,
            cum_ack: 5,
            recv_rate: 6,
            received_packets: 7,
            owd_us: Some(8),
        };
        let naks = [NakRange { start: 10, count: 2 }, NakRange { start: 20, count: 1 }];
        let mut buf = vec![0u8; 1500];
        let len = h.emit(&naks, &mut buf);
        assert_eq!(FeedbackHeader::parse(&buf[..len]), Ok(h));
        assert_eq!(nak_ranges(&buf[..len]).collect::<Vec<_>>(), naks);
        assert_eq!(FeedbackHeader::parse(&buf[..len - 1]), Err(DropReason::Malformed));
        assert_eq!(max_naks(1472), (1472 - 60 - 16) / 12);
        let none = FeedbackHeader { owd_us: None, ..h };
        let len = none.emit(&[], &mut buf);
        assert_eq!(FeedbackHeader::parse(&buf[..len]), Ok(none));
    }

    #[test]
    fn empty_or_overflowing_ranges_are_malformed() {
        let h = FeedbackHeader::default();
        let mut buf = vec![0u8; 200];
        let len = h.emit(&[NakRange { start: 1, count: 0 }], &mut buf);
        assert_eq!(FeedbackHeader::parse(&buf[..len]), Err(DropReason::Malformed));
        let len = h.emit(&[NakRange { start: u64::MAX, count: 2 }], &mut buf);
        assert_eq!(FeedbackHeader::parse(&buf[..len]), Err(DropReason::Malformed));
    }
}
