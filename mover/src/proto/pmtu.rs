//! The sender's watch over the datagram size it chose (PROTOCOL.md §4.8): datagram PLPMTUD in the sense of
//! RFC 8899, where the session's full-size data packets are the probes and the feedback's
//! `received_packets` is their acknowledgement.
//!
//! Blocks are as large as datagrams and fixed for the session by the `Hello`, so the size cannot change
//! under a running session. The session layer therefore picks the candidate size before the `Hello` (the
//! route's MTU, or `--mtu`), and this watch confirms it once data flows: the first data packet the receiver
//! counts confirms the size (every data packet but a file's last block is full-size). What it must catch
//! is a **black hole**: datagrams of this size vanish somewhere on the path (a hop with a smaller MTU whose
//! ICMP never arrives or is ignored), while the small feedback datagrams still come back. Congestion never
//! looks like that for long: some packets get through and `received_packets` grows. A partition silences
//! the feedback too, which [`Sender::path_silent`](super::Sender::path_silent) handles. So: feedback keeps
//! arriving for [`BLACK_HOLE_MIN`] (and at least 4 smoothed RTTs), at least [`BLACK_HOLE_FEEDBACKS`] of
//! them, the sender has kept sending, and the receiver has counted no new data packet: the size is a black
//! hole, and the session ends with [`FailureKind::PathMtu`](super::FailureKind::PathMtu) so that the client
//! runs it again at the base size (the receiver resumes from what arrived). At or below the base size
//! (RFC 8899's BASE_PLPMTU: what every path is assumed to carry) there is nothing lower to fall back to,
//! so the watch never fires there and a stall is left to the silence rules.

use crate::time::Time;
use std::time::Duration;

/// The largest datagram every path is assumed to carry: an IPv4 MTU of 1500 less 28 bytes of headers.
/// RFC 8899 puts BASE_PLPMTU at 1200 for IPv6; 1500-byte Ethernet is where every path mover meets starts,
/// and a path below it is one the user names with `--mtu`.
pub const BASE_DATAGRAM_V4: usize = BASE_MTU - 28;
/// The same for IPv6 (40-byte header).
pub const BASE_DATAGRAM_V6: usize = BASE_MTU - 48;
/// The MTU every path is assumed to carry (RFC 8899's BASE_PLPMTU, taken as Ethernet's 1500): the one a
/// sender falls back to after a black hole, and the one assumed when the route cannot be read.
pub const BASE_MTU: usize = 1500;
/// How long feedback must keep arriving without any new data packet counted before the size is called a
/// black hole: long against a feedback interval and a queue drained, short against a transfer.
pub const BLACK_HOLE_MIN: Duration = Duration::from_millis(500);
/// Feedback datagrams that must arrive over that time: the reverse path demonstrably works.
pub const BLACK_HOLE_FEEDBACKS: u32 = 4;
/// Data packets the sender must have sent since the receiver's count last grew: a sender with nothing to
/// send (waiting on the disk, done) proves nothing.
pub const BLACK_HOLE_PACKETS: u64 = 32;

/// What the watch concluded from one feedback datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmtuEvent {
    /// The receiver counted a full-size data packet for the first time: the size is confirmed.
    Confirmed,
    /// Datagrams of this size no longer arrive while feedback does: a black hole.
    BlackHole,
}

/// The sender's PLPMTUD state for one session (see the module documentation).
#[derive(Clone, Debug)]
pub struct PmtuWatch {
    /// The session's datagram size is at or below the base: nothing to fall back to.
    at_base: bool,
    confirmed: bool,
    /// The receiver's `received_packets` at the last increase, and the sender's `packets_sent` then.
    received: u64,
    sent_at_progress: u64,
    /// Since when feedback arrives without the count growing, and how many feedbacks came meanwhile.
    stalled_since: Option<Time>,
    stalled_feedbacks: u32,
    black_hole: bool,
}

impl PmtuWatch {
    /// A watch for a session sending datagrams of up to `datagram` bytes, on a path whose base is
    /// `base_datagram` bytes.
    pub fn new(datagram: usize, base_datagram: usize) -> PmtuWatch {
        PmtuWatch {
            at_base: datagram <= base_datagram,
            confirmed: false,
            received: 0,
            sent_at_progress: 0,
            stalled_since: None,
            stalled_feedbacks: 0,
            black_hole: false,
        }
    }

    /// Whether a data packet of the session's size has been seen to arrive.
    pub fn confirmed(&self) -> bool {
        self.confirmed
    }

    /// Takes one valid feedback datagram: the receiver's `received_packets`, the sender's own
    /// `packets_sent`, its smoothed RTT. Returns what changed, if anything; [`PmtuEvent::BlackHole`] once.
    pub fn on_feedback(
        &mut self,
        now: Time,
        received_packets: u64,
        packets_sent: u64,
        srtt_ns: u64,
    ) -> Option<PmtuEvent> {
        if self.black_hole {
            return None;
        }
        if received_packets > self.received {
            self.received = received_packets;
            self.sent_at_progress = packets_sent;
            self.stalled_since = None;
            self.stalled_feedbacks = 0;
            if !self.confirmed {
                self.confirmed = true;
                return Some(PmtuEvent::Confirmed);
            }
            return None;
        }
        if self.at_base || packets_sent < self.sent_at_progress + BLACK_HOLE_PACKETS {
            return None;
        }
        let since = *self.stalled_since.get_or_insert(now);
        self.stalled_feedbacks += 1;
        let wait_ns = (BLACK_HOLE_MIN.as_nanos() as u64).max(srtt_ns.saturating_mul(4));
        if now.since_ns(since) >= wait_ns && self.stalled_feedbacks >= BLACK_HOLE_FEEDBACKS {
            self.black_hole = true;
            return Some(PmtuEvent::BlackHole);
        }
        None
    }
}

impl PmtuWatch {
    /// The check without feedback, from the sender's timer: a receiver learns where to send feedback from
    /// the first data packet it gets, so when none arrives there is no feedback to judge by. Data of the
    /// session's size sent since `first_sent_at`, at least [`BLACK_HOLE_PACKETS`] packets, and for
    /// [`BLACK_HOLE_MIN`] (and 4 RTTs) not one feedback (`heard_feedback` false): a black hole at the start.
    /// A path that drops all UDP looks the same; the rerun at the base size then meets the same silence and
    /// fails by the silence rules, one short session later.
    pub fn on_tick(
        &mut self,
        now: Time,
        heard_feedback: bool,
        packets_sent: u64,
        first_sent_at: Option<Time>,
        srtt_ns: u64,
    ) -> Option<PmtuEvent> {
        if self.black_hole || self.confirmed || self.at_base || heard_feedback || packets_sent < BLACK_HOLE_PACKETS {
            return None;
        }
        let since = first_sent_at?;
        let wait_ns = (BLACK_HOLE_MIN.as_nanos() as u64).max(srtt_ns.saturating_mul(4));
        if now.0 >= since.0 && now.since_ns(since) >= wait_ns {
            self.black_hole = true;
            return Some(PmtuEvent::BlackHole);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_first_counted_packet_confirms_and_progress_resets_the_stall() {
        let mut w = PmtuWatch::new(8972, BASE_DATAGRAM_V4);
        assert_eq!(w.on_feedback(Time(0), 0, 10, MS), None);
        assert_eq!(w.on_feedback(Time(MS), 3, 20, MS), Some(PmtuEvent::Confirmed));
        assert!(w.confirmed());
        // Stalled, but the count grows again before the time is up: no verdict.
        for i in 0..40 {
            assert_eq!(w.on_feedback(Time(2 * MS + i * 10 * MS), 3, 100 + i, MS), None);
        }
        assert_eq!(w.on_feedback(Time(500 * MS), 4, 200, MS), None);
    }

    #[test]
    fn feedback_without_arrivals_while_sending_is_a_black_hole_once() {
        let mut w = PmtuWatch::new(8972, BASE_DATAGRAM_V4);
        let mut t = 0;
        let mut verdict = None;
        for i in 0..100u64 {
            t = i * 50 * MS;
            if let Some(e) = w.on_feedback(Time(t), 0, 1000 + i * 100, MS) {
                verdict = Some((e, t));
                break;
            }
        }
        let (e, at) = verdict.expect("a black hole is found");
        assert_eq!(e, PmtuEvent::BlackHole);
        assert!((500 * MS..=700 * MS).contains(&at), "{at}");
        assert_eq!(w.on_feedback(Time(t + MS), 0, 99_999, MS), None, "reported once");
    }

    #[test]
    fn no_verdict_at_the_base_size_or_for_a_sender_that_sends_nothing() {
        let mut base = PmtuWatch::new(BASE_DATAGRAM_V4, BASE_DATAGRAM_V4);
        let mut idle = PmtuWatch::new(8972, BASE_DATAGRAM_V4);
        for i in 0..200u64 {
            assert_eq!(base.on_feedback(Time(i * 50 * MS), 0, 1000 + i * 100, MS), None);
            assert_eq!(idle.on_feedback(Time(i * 50 * MS), 0, 10, MS), None);
        }
    }

    #[test]
    fn no_feedback_at_all_after_the_first_data_is_a_black_hole_at_the_start() {
        let mut w = PmtuWatch::new(8972, BASE_DATAGRAM_V4);
        let first = Some(Time(10 * MS));
        assert_eq!(w.on_tick(Time(100 * MS), false, 500, first, MS), None);
        assert_eq!(w.on_tick(Time(600 * MS), false, 10, first, MS), None, "too few packets sent");
        assert_eq!(w.on_tick(Time(600 * MS), true, 500, first, MS), None, "feedback came");
        assert_eq!(w.on_tick(Time(600 * MS), false, 500, None, MS), None, "nothing sent yet");
        assert_eq!(w.on_tick(Time(600 * MS), false, 500, first, 200 * MS), None, "4 RTTs not over");
        assert_eq!(w.on_tick(Time(510 * MS), false, 500, first, MS), Some(PmtuEvent::BlackHole));
        assert_eq!(w.on_tick(Time(900 * MS), false, 500, first, MS), None, "reported once");
        let mut base = PmtuWatch::new(BASE_DATAGRAM_V4, BASE_DATAGRAM_V4);
        assert_eq!(base.on_tick(Time(900 * MS), false, 500, first, MS), None, "nothing below the base");
        let mut confirmed = PmtuWatch::new(8972, BASE_DATAGRAM_V4);
        confirmed.on_feedback(Time(20 * MS), 1, 40, MS);
        assert_eq!(confirmed.on_tick(Time(900 * MS), false, 500, first, MS), None);
    }

    #[test]
    fn a_long_rtt_waits_four_round_trips() {
        let mut w = PmtuWatch::new(8972, BASE_DATAGRAM_V4);
        let srtt = 300 * MS;
        for i in 0..24u64 {
            assert_eq!(w.on_feedback(Time(i * 50 * MS), 0, 1000 + i * 100, srtt), None, "{i}");
        }
        assert_eq!(w.on_feedback(Time(1250 * MS), 0, 9000, srtt), Some(PmtuEvent::BlackHole));
    }
}
