//! The sans-IO protocol core: sender and receiver state machines.
//!
//! Neither touches a socket, a file or a clock. Inputs are datagrams, control messages and `now`; outputs
//! are datagrams, control messages and the next deadline. File bytes come in through [`BlockSource`] (sender)
//! and go out through [`BlockStore`] (receiver), which the simulator implements in memory and the `mover`
//! binary implements over real files. The wire formats are in [`crate::wire`] and `docs/PROTOCOL.md`.

use std::io;

/// Where the sender gets the bytes of a block.
///
/// The sender asks for each block when it is about to send it (first transmission or retransmission), so
/// an implementation needs no buffering of its own; a pipelined reader may prefetch, since first
/// transmissions are requested in (file, offset) order.
pub trait BlockSource {
    /// Fills `buf` with the bytes of file `file_id` at `offset`; `buf.len()` is the block length, and the
    /// whole block lies inside the file as announced in the manifest. A file that shrank or vanished is an
    /// error, reported to the user.
    fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Like [`BlockSource::read_block`], for a block's first transmission, or a block the receiver already
    /// holds (resume: read only into the whole-file hash, never sent). These come strictly in (file id,
    /// offset) order within a round, so an implementation may read ahead in large chunks; retransmissions
    /// come through `read_block` at any offset.
    fn read_first(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_block(file_id, offset, buf)
    }

    /// Whether the `len` bytes of the block at `offset` can be read now without waiting for a disk; `first`
    /// says the read will be a [`BlockSource::read_first`]. A source that reads on another stage (the
    /// pipeline's reader) answers `false` for bytes it does not hold yet, having asked for them: the sender
    /// then changes nothing and builds nothing ([`crate::proto::Sender::poll_transmit`] returns `None`) and
    /// asks again on a later call. A source that reads in place is always ready.
    fn ready(&mut self, file_id: u32, offset: u64, len: usize, first: bool) -> io::Result<bool> {
        let _ = (file_id, offset, len, first);
        Ok(true)
    }
}

/// Where the receiver puts the bytes of a block, and how a verified file becomes visible.
///
/// File ids index the session's regular files in manifest order. A store must never make a file visible
/// under its final name before [`BlockStore::commit`].
pub trait BlockStore {
    /// Writes one block at `offset` of file `file_id` (into a temporary, not-yet-visible file).
    fn write_block(&mut self, file_id: u32, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Advances `job`'s whole-file hash over `[job.cursor, job.upto)` with the bytes the store holds, read
    /// back (so the check covers the write path). The store first makes every earlier write of that range
    /// visible to the read. A store that reads in place (using `scratch`) returns the finished job; one that
    /// reads elsewhere (the pipeline's writer stage) returns `None` and hands the job back through
    /// [`BlockStore::poll_hashed`]. Jobs are independent: each file has at most one out at a time.
    fn hash_back(&mut self, job: HashJob, scratch: &mut [u8]) -> Option<HashDone>;
    /// A job [`BlockStore::hash_back`] took and has finished since, if any (in any order across files).
    fn poll_hashed(&mut self) -> Option<HashDone> {
        None
    }
    /// The file is complete and its whole-file hash matched: move it into place under its final name with
    /// its permissions and modification time.
    fn commit(&mut self, file_id: u32) -> io::Result<()>;
    /// The file failed verification and will be sent again from the start: discard what was written.
    fn reset(&mut self, file_id: u32) -> io::Result<()>;
    /// Every file is committed: apply what must come last (directory modes and modification times).
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// What the store could not keep of the entries' metadata (`wire::entry::dropped` bits), known once
    /// [`BlockStore::finish`] returned; it travels in `Complete`.
    fn dropped(&self) -> u32 {
        0
    }
}

pub mod compress;
pub mod config;
pub mod failure;
pub mod losslist;
pub mod pacer;
pub mod plan;
pub mod pmtu;
pub mod policy;
pub mod readback;
pub mod receiver;
pub mod rtt;
pub mod sender;
pub mod seqbits;
pub mod session;
pub mod start;
pub mod stripe_plan;

pub use config::Config;
pub use failure::FailureKind;
pub use readback::{HashDone, HashJob};
pub use receiver::{Delivery, FileReady, Receiver, ReceiverState, ReceiverStats};
pub use sender::{Sender, SenderState, SenderStats};
pub use session::ReceiverSession;
pub use start::{StartError, StartPlan};
