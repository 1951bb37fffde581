//! Session parameters shared by sender and receiver, with the defaults and their reasons (PROTOCOL.md §5).

use super::policy::Policy;
use crate::wire::data::DATA_OVERHEAD;
use crate::wire::{Cipher, SessionKey};
use std::time::Duration;

/// Default receive window in bytes (PROTOCOL.md §5). It must cover rate x (RTT + NAK delay + a re-NAK or
/// two) for the sender never to stall on it: a block lost twice on a 200 ms path is repaired after about
/// 650 ms, and 2 GiB holds 10 Gbit/s for 1.7 s. Its memory cost is one bit per block on each side (190 KiB
/// per side at 1412-byte blocks), not the bytes themselves.
pub const DEFAULT_WINDOW_BYTES: u64 = 2 << 30;
/// Default pacer burst (PROTOCOL.md §5): the timer granularity measured on these machines is 50-100 us, so a
/// driver that wakes that often must be allowed to release about that much at once.
pub const DEFAULT_BURST: Duration = Duration::from_micros(200);
/// Default feedback interval (PROTOCOL.md §5): often enough that the window advances smoothly, rare enough
/// to cost under 0.1% of the reverse path at 1 Gbit/s.
pub const DEFAULT_FEEDBACK_INTERVAL: Duration = Duration::from_millis(2);
/// RTT assumed before the first sample (PROTOCOL.md §5); the control channel's handshake usually gives a
/// better one.
pub const DEFAULT_INITIAL_RTT: Duration = Duration::from_millis(100);
/// Rounds before a file that keeps failing whole-file verification fails the session (PROTOCOL.md §4.6).
pub const DEFAULT_MAX_ROUNDS: u8 = 4;
/// Silence from the peer after which a session fails (PROTOCOL.md §5; `--timeout`): long enough to ride
/// out a partition or a peer's restart, after which the sender resumes without resending what arrived.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything both ends of a session must agree on, and each end's timing knobs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Session id, chosen by the receiver.
    pub session_id: u64,
    /// How datagrams are sealed (PROTOCOL.md §2.2, §6).
    pub cipher: Cipher,
    /// The session key, chosen by the receiver (unused with [`Cipher::None`]).
    pub key: SessionKey,
    /// Payload bytes per data packet.
    pub block_payload: u16,
    /// Sending rate, bits per second of UDP payload: the rate itself under [`Policy::Fixed`], the ceiling
    /// under the adaptive policies.
    pub rate_bps: u64,
    /// How the sending rate is chosen (PROTOCOL.md §4.7).
    pub policy: Policy,
    /// The adaptive policies never go below this rate (`--min-rate`); 0 for no floor.
    pub min_rate_bps: u64,
    /// Print each rate-control round's signals and decision on stderr (`MOVER_RATE_TRACE=1`).
    pub trace_rate: bool,
    /// Receive window in blocks.
    pub window_blocks: u64,
    /// Pacer burst.
    pub burst: Duration,
    /// Receiver's feedback interval.
    pub feedback_interval: Duration,
    /// RTT assumed before the first sample.
    pub initial_rtt: Duration,
    /// Verification rounds before giving up on a file.
    pub max_rounds: u8,
    /// Silence after which the session fails.
    pub peer_timeout: Duration,
    /// The largest datagram every path is assumed to carry (RFC 8899's BASE_PLPMTU less headers): above
    /// it, a black hole fails the session for a rerun at this size (PROTOCOL.md §4.8).
    pub base_datagram: usize,
}

impl Config {
    /// A configuration with the defaults for a path whose largest UDP payload is `max_datagram`.
    pub fn new(session_id: u64, max_datagram: usize, rate_bps: u64) -> Config {
        let block_payload = block_payload_for(max_datagram);
        Config {
            session_id,
            cipher: Cipher::None,
            key: SessionKey::default(),
            block_payload,
            rate_bps,
            policy: Policy::Fixed,
            min_rate_bps: 0,
            trace_rate: false,
            window_blocks: DEFAULT_WINDOW_BYTES / block_payload as u64,
            burst: DEFAULT_BURST,
            feedback_interval: DEFAULT_FEEDBACK_INTERVAL,
            initial_rtt: DEFAULT_INITIAL_RTT,
            max_rounds: DEFAULT_MAX_ROUNDS,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            base_datagram: super::pmtu::BASE_DATAGRAM_V4,
        }
    }

    /// Largest datagram this session sends (a full data packet).
    pub fn max_datagram(&self) -> usize {
        self.block_payload as usize + DATA_OVERHEAD
    }

    /// Checks the relations the state machines rely on.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_payload < 64 {
            return Err(format!("block payload {} is too small (at least 64 bytes)", self.block_payload));
        }
        if self.window_blocks < 64 || self.window_blocks > 1 << 32 {
            return Err(format!("window of {} blocks is outside 64..=2^32", self.window_blocks));
        }
        if self.rate_bps == 0 {
            return Err("rate must be positive".into());
        }
        if self.min_rate_bps > self.rate_bps {
            return Err(format!(
                "the minimum rate ({} bit/s) is above the rate ceiling ({} bit/s)",
                self.min_rate_bps, self.rate_bps
            ));
        }
        if self.max_rounds == 0 {
            return Err("at least one round is needed".into());
        }
        Ok(())
    }
}

/// The block payload for a path whose largest UDP payload is `max_datagram` (e.g. 1472 for MTU 1500).
pub fn block_payload_for(max_datagram: usize) -> u16 {
    assert!(max_datagram > DATA_OVERHEAD + 64, "datagram size {max_datagram} too small");
    (max_datagram - DATA_OVERHEAD).min(u16::MAX as usize) as u16
}
