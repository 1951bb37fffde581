//! What travels on the pipeline's rings: the item types named by the topology table's typed ring handles
//! ([`super::topology::rings`]). They live here, below both the table and the stages, so that the table can
//! name them without importing the stages that produce them (and the stages the table without a cycle).

use std::os::fd::OwnedFd;

use crate::net::TxBatch;
use crate::pipeline::slots::RegionBuf;
use crate::proto::HashJob;
use crate::time::Time;

/// A send batch and what the pacer measures about it.
pub struct TxSlot {
    /// The datagrams.
    pub batch: TxBatch,
    /// The rate to release them at, bits per second: the protocol core's choice when the batch was built
    /// (PROTOCOL.md §4.7).
    pub rate_bps: u64,
    /// Arrival of the earliest NAK whose retransmission this batch carries.
    pub nak_at: Option<Time>,
}

/// One block of one file in the reader's pool, owned by whoever holds it (ring slot, then packetizer).
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The buffer holding the bytes.
    pub buf: RegionBuf,
    /// File id (index in the manifest's regular files).
    pub file_id: u32,
    /// Offset of the chunk's first byte.
    pub offset: u64,
    /// Valid bytes.
    pub len: u32,
}

/// What the reader publishes on the `chunks` ring.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The next chunk in (file, offset) order.
    Chunk(Chunk),
    /// Reading failed; the message is in the reader's shared state (`ReaderShared::error`). Nothing follows it.
    Failed,
}

/// A retransmission's read for the reader stage: `len` bytes of file `file_id` at `offset`, into `buf`, one of
/// the repair buffers (set aside from the reader's pool at start-up, so the in-order stream cannot take them,
/// nor repairs the stream's). The buffer travels with the request and comes back in a [`Repaired`].
#[derive(Debug, PartialEq, Eq)]
pub struct RepairReq {
    /// The repair buffer to read into.
    pub buf: RegionBuf,
    /// File id.
    pub file_id: u32,
    /// Offset of the first byte.
    pub offset: u64,
    /// Bytes (at most the buffer size).
    pub len: u32,
}

/// A repair read done: the chunk (its buffer back to the packetizer), or why reading failed.
#[derive(Debug, PartialEq, Eq)]
pub struct Repaired {
    /// The bytes read, in the request's buffer.
    pub chunk: Chunk,
    /// The read's error, if it failed (the chunk's bytes are then meaningless).
    pub result: Result<(), String>,
}

/// One feedback datagram handed from the NAK stage to the packetizer.
pub struct FeedbackBuf {
    /// The datagram's buffer (the largest datagram the session takes).
    pub bytes: Vec<u8>,
    /// Valid bytes.
    pub len: usize,
    /// When it was received.
    pub at: Time,
}

/// A run for the writer: `len` bytes of buffer `buf` to `fd` at `offset`. The item owns both until the
/// writer hands the buffer back (and closes the descriptor).
#[derive(Debug)]
pub struct WriteItem {
    /// The buffer holding the run.
    pub buf: RegionBuf,
    /// File id, for messages.
    pub file_id: u32,
    /// A descriptor of the file, duplicated for this write.
    pub fd: OwnedFd,
    /// File offset.
    pub offset: u64,
    /// Bytes.
    pub len: u32,
}

/// A finished write: the buffer is the store's again.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    /// The buffer.
    pub buf: RegionBuf,
    /// Bytes written, or -errno.
    pub result: i64,
}

/// A verification read-back for the writer stage: advance `job`'s hash over `[job.cursor, job.upto)` of the
/// file behind `fd`. The store sends it only once no write of that range is in flight, so the read sees
/// exactly what was written; the finished job comes back as a [`crate::proto::HashDone`] on `verified`.
pub struct VerifyItem {
    /// The running hash and the range to read back.
    pub job: HashJob,
    /// A descriptor of the file, duplicated for this read.
    pub fd: OwnedFd,
}
