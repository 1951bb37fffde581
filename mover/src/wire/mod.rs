//! Wire formats: every byte mover puts on a network, specified in `docs/PROTOCOL.md`.
//!
//! Datagrams (UDP) share a 20-byte [common header](header), end in a 16-byte tag slot (see [`seal`]), and are
//! either [data](data) (sender to receiver) or [feedback](feedback) (receiver to sender). Control messages
//! (TCP) are length-prefixed frames (see [`control`]). Parsers check lengths once and never panic on any
//! input; the fuzz targets in `fuzz/` and the seed-corpus tests hold them to that.

pub mod cipher;
pub mod compress;
pub mod control;
pub mod data;
pub mod entry;
pub mod feedback;
pub mod header;
pub mod keys;
pub mod options;
pub mod policy;
pub mod replay;
pub mod seal;
pub mod shard;
pub mod stripe;
pub mod verdict;

pub use cipher::Cipher;
pub use compress::Compression;
pub use entry::{Entry, EntryKind};
pub use header::{CommonHeader, PacketType, COMMON_HEADER_LEN, MAGIC, VERSION};
pub use options::{Overwrite, TransferOptions};
pub use policy::Policy;
pub use replay::{ReplayWindow, REPLAY_WINDOW};
pub use seal::{open_datagram, Role, Sealer, SessionKey, KEY_LEN, TAG_LEN};

/// Why a datagram was dropped. Every drop is counted by reason; none panics.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the smallest valid datagram of its type.
    Truncated,
    /// Longer than the largest datagram this session accepts.
    Oversized,
    /// Wrong magic: not a mover datagram.
    BadMagic,
    /// A protocol version this implementation does not speak.
    BadVersion,
    /// A packet type this endpoint does not accept.
    BadType,
    /// The tag did not verify: corrupted in flight (or forged).
    BadTag,
    /// A different session's datagram.
    WrongSession,
    /// A header field is inconsistent (length, offset, range).
    Malformed,
    /// Refers to an earlier round of the session.
    StaleRound,
    /// Refers to a block outside the receive window.
    OutOfWindow,
    /// A block already received.
    Duplicate,
    /// An authenticated packet number that was accepted before: a replay, or a copy the network made.
    Replayed,
    /// A packet number too far behind the newest to tell whether it was seen (beyond the replay window).
    TooOld,
    /// A block flagged compressed that does not decompress to the block's length (a damaged or hostile
    /// sender: the tag verified).
    BadCompression,
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 14] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::BadType,
        DropReason::BadTag,
        DropReason::WrongSession,
        DropReason::Malformed,
        DropReason::StaleRound,
        DropReason::OutOfWindow,
        DropReason::Duplicate,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::BadCompression,
    ];

    /// A stable, short name for summaries and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::BadMagic => "bad_magic",
            DropReason::BadVersion => "bad_version",
            DropReason::BadType => "bad_type",
            DropReason::BadTag => "bad_tag",
            DropReason::WrongSession => "wrong_session",
            DropReason::Malformed => "malformed",
            DropReason::StaleRound => "stale_round",
            DropReason::OutOfWindow => "out_of_window",
            DropReason::Duplicate => "duplicate",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::BadCompression => "bad_compression",
        }
    }
}

/// Drop counters, one per [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    /// Counts one drop.
    pub fn count(&mut self, reason: DropReason) {
        self.counts[reason as usize] += 1;
    }

    /// Drops for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Drops that mean a damaged or foreign datagram (everything but duplicates, stale rounds, the receive
    /// window and the replay window, which a path's duplication and reordering also cause).
    pub fn invalid(&self) -> u64 {
        self.total() - self.benign()
    }

    /// Drops a working path causes too: duplicates, stale rounds, out of the receive window, replayed or
    /// older than the replay window.
    pub fn benign(&self) -> u64 {
        [
            DropReason::Duplicate,
            DropReason::StaleRound,
            DropReason::OutOfWindow,
            DropReason::Replayed,
            DropReason::TooOld,
        ]
        .iter()
        .map(|r| self.get(*r))
        .sum()
    }

    /// (name, count) for every non-zero reason.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().filter(|r| self.get(**r) > 0).map(|r| (r.name(), self.get(*r)))
    }
}

/// Big-endian field readers over a slice whose length the caller has already checked.
///
/// Every parser checks the total length once, up front; these then index within it. A wrong offset is a
/// programmer error and panics in tests, never on peer input that passed the length check.
pub(crate) mod be {
    pub fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }
    pub fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    }
    pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }
}
