//! The receiver's file-side duties around the state machine: write each delivered block, hash files as
//! their bytes become contiguous, verify, commit or reset (PROTOCOL.md §4.6).
//!
//! The whole-file hash is computed over what the store holds, read back, so it checks the write path too.
//! It keeps up with arrival: a file's hash follows the file's contiguous prefix in steps of a few MiB, reading
//! recently written bytes (from the page cache), so verification at the end rarely reads a whole file back.

use super::readback::{HashDone, HashJob};
use super::receiver::{FileReady, Receiver, ReceiverState};
use super::BlockStore;
use crate::time::Time;
use crate::wire::control::ControlMsg;
use crate::wire::DropReason;

/// Files hashed incrementally at once; others are hashed in one pass when complete.
const MAX_ACTIVE_HASHES: usize = 8;
/// Catch up a file's hash once this many contiguous bytes wait behind its cursor.
const CATCH_UP_BYTES: u64 = 4 << 20;
/// Catch-up stays this far behind the contiguous prefix, so it reads bytes whose writes have finished
/// (a pipelined store has the newest runs still in its writer; reading them would wait for the disk).
const CATCH_UP_LAG_BYTES: u64 = 2 << 20;
/// Most bytes asked back for catch-up per call of [`ReceiverSession::process`], to keep the loop responsive
/// (with a store that reads in place, the reads happen inside the call).
const CATCH_UP_PER_CALL: u64 = 16 << 20;
/// Read-back buffer size, for stores that read in place.
const SCRATCH_BYTES: usize = 1 << 20;

/// A file whose hash the session follows.
struct ActiveHash {
    file_id: u32,
    /// The hash so far, while the session holds it; `None` while the store reads back for it.
    job: Option<HashJob>,
    /// Set once the receiver reported the file complete: the hash is finished and checked against it.
    ready: Option<FileReady>,
}

/// A [`Receiver`] with its store: what both the simulator and the daemon run.
///
/// Verification reads go through [`BlockStore::hash_back`]: the session hands out a file's running hash and
/// gets it back advanced, at once from a store that reads in place, later (through
/// [`BlockStore::poll_hashed`], checked on every [`ReceiverSession::process`]) from one that reads on
/// another stage. Nothing else waits for it: blocks keep flowing into the store meanwhile.
pub struct ReceiverSession<S: BlockStore> {
    /// The state machine.
    pub core: Receiver,
    /// Where the files go.
    pub store: S,
    active: Vec<ActiveHash>,
    scratch: Vec<u8>,
    error: Option<String>,
}

impl<S: BlockStore> ReceiverSession<S> {
    /// Wraps a receiver and its store.
    pub fn new(core: Receiver, store: S) -> Self {
        ReceiverSession {
            core,
            store,
            active: Vec::with_capacity(MAX_ACTIVE_HASHES),
            scratch: vec![0; SCRATCH_BYTES],
            error: None,
        }
    }

    /// Whether the session ended, and how: `None` while running, `Some(Ok)` when every file is committed.
    pub fn outcome(&self) -> Option<Result<(), String>> {
        if let Some(e) = &self.error {
            return Some(Err(e.clone()));
        }
        match self.core.state() {
            ReceiverState::Receiving => None,
            ReceiverState::Complete => Some(Ok(())),
            ReceiverState::Failed(m) => Some(Err(m.clone())),
        }
    }

    fn fail(&mut self, message: String) {
        self.core.fail(message.clone());
        self.error.get_or_insert(message);
    }

    /// Handles one datagram: a delivered block is written at once.
    pub fn handle_datagram(&mut self, now: Time, datagram: &mut [u8]) -> Result<(), DropReason> {
        let d = self.core.handle_datagram(now, datagram)?;
        let data = if d.unpacked > 0 { &self.core.unpacked()[..d.unpacked] } else { &datagram[d.payload] };
        if let Err(e) = self.store.write_block(d.file_id, d.offset, data) {
            // One line naming the file (the store's text) and, for a full or read-only disk, the fix.
            self.fail(crate::exit::with_fix(&e));
            return Ok(());
        }
        // Hash what the store holds, not what the network delivered: the whole-file check is end to end
        // and must catch a misplaced or damaged write. Start tracking the file so its hash can follow
        // the contiguous prefix (recently written, so read back from the page cache). Every hash starts
        // at offset 0 whatever block arrives first: with held ranges (resume) the first delivered block
        // may lie anywhere, and the held bytes before it are hashed from the store like the rest; a file
        // held whole delivers nothing and is hashed in one pass when ready.
        if self.active.len() < MAX_ACTIVE_HASHES && !self.active.iter().any(|a| a.file_id == d.file_id) {
            self.active.push(ActiveHash { file_id: d.file_id, job: Some(HashJob::new(d.file_id, 0)), ready: None });
        }
        Ok(())
    }

    /// Handles one control message from the sender.
    pub fn handle_control(&mut self, now: Time, msg: ControlMsg) {
        self.core.handle_control(now, msg);
    }

    /// Takes back finished read-backs, catches up incremental hashes and verifies every file that is ready.
    /// Call after each batch of input.
    pub fn process(&mut self) {
        if let Err(e) = self.advance_hashes() {
            self.fail(e);
        }
    }

    fn advance_hashes(&mut self) -> Result<(), String> {
        while let Some(done) = self.store.poll_hashed() {
            self.handle_hashed(done)?;
        }
        let mut budget = CATCH_UP_PER_CALL;
        for i in 0..self.active.len() {
            // A file that is ready is finished by the loop below (or when its job comes back), so this one
            // never removes an entry.
            let a = &self.active[i];
            let (Some(job), None) = (&a.job, &a.ready) else { continue };
            let prefix = self.core.contiguous_prefix(a.file_id).saturating_sub(CATCH_UP_LAG_BYTES);
            if prefix >= job.cursor + CATCH_UP_BYTES && budget > 0 {
                let upto = prefix.min(job.cursor + budget);
                budget -= upto - job.cursor;
                self.send(i, upto)?;
            }
        }
        while let Some(ready) = self.core.poll_ready() {
            let i = match self.active.iter().position(|a| a.file_id == ready.file_id) {
                Some(i) => i,
                None => {
                    let job = Some(HashJob::new(ready.file_id, 0));
                    self.active.push(ActiveHash { file_id: ready.file_id, job, ready: None });
                    self.active.len() - 1
                }
            };
            self.active[i].ready = Some(ready);
            if self.active[i].job.is_some() {
                self.finish_or_send(i)?;
            }
        }
        Ok(())
    }

    /// Hands entry `i`'s hash to the store, to be advanced to `upto`.
    fn send(&mut self, i: usize, upto: u64) -> Result<(), String> {
        let mut job = self.active[i].job.take().expect("a file has one read-back out at a time");
        job.upto = upto;
        match self.store.hash_back(job, &mut self.scratch) {
            Some(done) => self.handle_hashed(done),
            None => Ok(()),
        }
    }

    /// A job came back: the hash is the session's again, and a ready file is finished or read on.
    fn handle_hashed(&mut self, done: HashDone) -> Result<(), String> {
        let HashDone { job, result } = done;
        result.map_err(|e| format!("reading back file id {} to verify it: {e}", job.file_id))?;
        let i = self.active.iter().position(|a| a.file_id == job.file_id).expect("a hash job returns to its file");
        self.active[i].job = Some(job);
        if self.active[i].ready.is_some() {
            self.finish_or_send(i)?;
        }
        Ok(())
    }

    /// Entry `i` is ready and holds its hash: read the rest back, or check the hash and commit or reset.
    fn finish_or_send(&mut self, i: usize) -> Result<(), String> {
        let size = self.active[i].ready.as_ref().expect("called for ready files").size;
        let cursor = self.active[i].job.as_ref().expect("called while the session holds the hash").cursor;
        if cursor < size {
            return self.send(i, size);
        }
        let done = self.active.swap_remove(i);
        let (job, ready) = (done.job.expect("held"), done.ready.expect("ready"));
        let ok = job.hasher.digest128() == ready.expected_hash;
        let result = if ok { self.store.commit(ready.file_id) } else { self.store.reset(ready.file_id) };
        result.map_err(|e| crate::exit::with_fix(&e))?;
        self.core.handle_verified(ready.file_id, ok);
        Ok(())
    }

    /// The next control message for the sender. Directory metadata is applied before `Complete` goes out,
    /// so the sender's success means the whole tree is in place.
    pub fn poll_control(&mut self) -> Option<ControlMsg> {
        let msg = self.core.poll_control()?;
        if let ControlMsg::Complete(mut summary) = msg {
            if let Err(e) = self.store.finish() {
                let message = format!("setting directory metadata: {e}");
                self.error.get_or_insert(message.clone());
                return Some(ControlMsg::Error { message });
            }
            summary.dropped = self.store.dropped();
            return Some(ControlMsg::Complete(summary));
        }
        Some(msg)
    }

    /// Writes the next feedback datagram, if one is due.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<usize> {
        self.core.poll_transmit(now, buf)
    }

    /// See [`Receiver::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        self.core.poll_timeout()
    }

    /// See [`Receiver::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        self.core.handle_timeout(now);
    }
}
