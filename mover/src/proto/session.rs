//! The receiver's file-side duties around the state machine: write each delivered block, hash files as
//! their bytes become contiguous, verify, commit or reset (PROTOCOL.md §4.6).
//!
//! The whole-file hash is computed over what the store holds, read back, so it checks the write path too.
//! It keeps up with arrival: a file's hash follows the file's contiguous prefix in steps of a few MiB, reading
//! recently written bytes (from the page cache), so verification at the end rarely reads a whole file back.

use super::receiver::{Receiver, ReceiverState};
use super::BlockStore;
use crate::time::Time;
use crate::wire::control::ControlMsg;
use crate::wire::DropReason;
use xxhash_rust::xxh3::Xxh3;

/// Files hashed incrementally at once; others are hashed in one pass when complete.
const MAX_ACTIVE_HASHES: usize = 8;
/// Catch up a file's hash once this many contiguous bytes wait behind its cursor.
const CATCH_UP_BYTES: u64 = 4 << 20;
/// Catch-up stays this far behind the contiguous prefix, so it reads bytes whose writes have finished
/// (a pipelined store has the newest runs still in its writer; reading them would wait for the disk).
const CATCH_UP_LAG_BYTES: u64 = 2 << 20;
/// Most bytes read back for catch-up per call of [`ReceiverSession::process`], to keep the loop responsive.
const CATCH_UP_PER_CALL: u64 = 16 << 20;
/// Read-back buffer size.
const SCRATCH_BYTES: usize = 1 << 20;

struct ActiveHash {
    file_id: u32,
    cursor: u64,
    hasher: Box<Xxh3>,
}

/// A [`Receiver`] with its store: what both the simulator and the daemon run.
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
        let data = &datagram[d.payload];
        if let Err(e) = self.store.write_block(d.file_id, d.offset, data) {
            self.fail(e.to_string());
            return Ok(());
        }
        // Hash what the store holds, not what the network delivered: the whole-file check is end to end
        // and must catch a misplaced or damaged write. Start tracking the file so its hash can follow
        // the contiguous prefix (recently written, so read back from the page cache).
        if d.offset == 0 && self.active.len() < MAX_ACTIVE_HASHES && !self.active.iter().any(|a| a.file_id == d.file_id)
        {
            self.active.push(ActiveHash { file_id: d.file_id, cursor: 0, hasher: Box::new(Xxh3::new()) });
        }
        Ok(())
    }

    /// Handles one control message from the sender.
    pub fn handle_control(&mut self, now: Time, msg: ControlMsg) {
        self.core.handle_control(now, msg);
    }

    /// Catches up incremental hashes and verifies every file that is ready. Call after each batch of input.
    pub fn process(&mut self) {
        let mut budget = CATCH_UP_PER_CALL;
        for i in 0..self.active.len() {
            let prefix = self.core.contiguous_prefix(self.active[i].file_id).saturating_sub(CATCH_UP_LAG_BYTES);
            if prefix >= self.active[i].cursor + CATCH_UP_BYTES && budget > 0 {
                let upto = prefix.min(self.active[i].cursor + budget);
                budget -= upto - self.active[i].cursor;
                if let Err(e) = self.hash_until(i, upto) {
                    self.fail(e);
                    return;
                }
            }
        }
        while let Some(ready) = self.core.poll_ready() {
            let i = match self.active.iter().position(|a| a.file_id == ready.file_id) {
                Some(i) => i,
                None => {
                    self.active.push(ActiveHash { file_id: ready.file_id, cursor: 0, hasher: Box::new(Xxh3::new()) });
                    self.active.len() - 1
                }
            };
            if let Err(e) = self.hash_until(i, ready.size) {
                self.fail(e);
                return;
            }
            let done = self.active.swap_remove(i);
            let ok = done.hasher.digest128() == ready.expected_hash;
            let result = if ok { self.store.commit(ready.file_id) } else { self.store.reset(ready.file_id) };
            if let Err(e) = result {
                self.fail(e.to_string());
                return;
            }
            self.core.handle_verified(ready.file_id, ok);
        }
    }

    fn hash_until(&mut self, i: usize, upto: u64) -> Result<(), String> {
        let a = &mut self.active[i];
        while a.cursor < upto {
            let n = (upto - a.cursor).min(self.scratch.len() as u64) as usize;
            self.store
                .read_at(a.file_id, a.cursor, &mut self.scratch[..n])
                .map_err(|e| format!("reading back file id {} to verify it: {e}", a.file_id))?;
            a.hasher.update(&self.scratch[..n]);
            a.cursor += n as u64;
        }
        Ok(())
    }

    /// The next control message for the sender. Directory metadata is applied before `Complete` goes out,
    /// so the sender's success means the whole tree is in place.
    pub fn poll_control(&mut self) -> Option<ControlMsg> {
        let msg = self.core.poll_control()?;
        if matches!(msg, ControlMsg::Complete(_)) {
            if let Err(e) = self.store.finish() {
                let message = format!("setting directory metadata: {e}");
                self.error.get_or_insert(message.clone());
                return Some(ControlMsg::Error { message });
            }
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
