//! A receiver's disk that outlives its sessions, with a model of the resume journal, for killed-and-resumed
//! transfers in the simulator.
//!
//! The store keeps partial files and committed files across sessions, and per file the blocks a journal
//! would claim (decision 0009): writes are journaled in bounded steps (`sync_step_blocks`, one window in the
//! soak), so a kill loses at most the last step's claims. [`DiskStore::crash`] models a kill honestly: a
//! random suffix of the unsynced writes is dropped from the journal and its bytes torn (neither reached the
//! disk), and sometimes a claimed block is damaged while still claimed (a lying disk, which only the
//! whole-file hash can catch). [`DiskStore::start_plan`] is then what a receiver decides from its disk:
//! committed files are skipped, claimed blocks are held.

use super::data::synth_fill;
use super::rng::SimRng;
use crate::proto::{BlockStore, HashDone, HashJob, StartPlan};
use std::collections::BTreeSet;
use std::io;

/// What a [`DiskStore::crash`] did, for the test's accounting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Crash {
    /// Blocks whose journal records were lost (and whose bytes were torn).
    pub dropped_blocks: u64,
    /// Bytes of those blocks.
    pub dropped_bytes: u64,
    /// The file whose claimed block was damaged while still claimed, if the disk lied.
    pub lied_file: Option<u32>,
}

/// A destination disk that survives killed sessions (see the module documentation).
#[derive(Clone, Debug)]
pub struct DiskStore {
    seed: u64,
    sizes: Vec<u64>,
    block: u64,
    sync_step_blocks: usize,
    /// Partial (temporary) files.
    pub temp: Vec<Option<Vec<u8>>>,
    /// Committed files: what a user sees under the final names.
    pub committed: Vec<Option<Vec<u8>>>,
    /// Blocks the journal claims durably, per file.
    claimed: Vec<BTreeSet<u64>>,
    /// Writes since the last journal step, in order.
    unsynced: Vec<(u32, u64)>,
    /// Blocks the current session's start plan holds, per file: the sender must never send them.
    held: Vec<BTreeSet<u64>>,
    /// Writes to a held block (a held block on the wire): must stay 0.
    pub held_block_writes: u64,
    /// Resets (files that failed verification).
    pub resets: u64,
}

impl DiskStore {
    /// An empty disk for files of `sizes` whose source contents come from `seed`, on the session's block
    /// grid, journaling every `sync_step_blocks` writes.
    pub fn new(seed: u64, sizes: &[u64], block: u64, sync_step_blocks: usize) -> DiskStore {
        assert!(block > 0 && sync_step_blocks > 0);
        let n = sizes.len();
        DiskStore {
            seed,
            sizes: sizes.to_vec(),
            block,
            sync_step_blocks,
            temp: vec![None; n],
            committed: vec![None; n],
            claimed: vec![BTreeSet::new(); n],
            unsynced: Vec::new(),
            held: vec![BTreeSet::new(); n],
            held_block_writes: 0,
            resets: 0,
        }
    }

    /// The source's bytes of `file_id`.
    pub fn source(&self, file_id: u32) -> Vec<u8> {
        let mut v = vec![0u8; self.sizes[file_id as usize] as usize];
        synth_fill(self.seed, file_id, 0, &mut v);
        v
    }

    /// Places an identical copy of `file_id` under its final name (a tree synced before).
    pub fn put_identical(&mut self, file_id: u32) {
        self.committed[file_id as usize] = Some(self.source(file_id));
    }

    /// Places a partial copy of `file_id` holding (and journaling) the blocks `blocks` of it.
    pub fn put_partial(&mut self, file_id: u32, blocks: impl IntoIterator<Item = u64>) {
        let src = self.source(file_id);
        let i = file_id as usize;
        let mut temp = self.temp[i].take().unwrap_or_else(|| vec![0; src.len()]);
        for k in blocks {
            let (from, to) = self.block_span(file_id, k);
            temp[from..to].copy_from_slice(&src[from..to]);
            self.claimed[i].insert(k);
        }
        self.temp[i] = Some(temp);
    }

    fn block_span(&self, file_id: u32, k: u64) -> (usize, usize) {
        let size = self.sizes[file_id as usize];
        let from = k * self.block;
        assert!(from < size, "block {k} outside file id {file_id}");
        (from as usize, (from + self.block).min(size) as usize)
    }

    /// The process died: the journal keeps its synced claims and a random prefix of the unsynced writes;
    /// the rest lose their records and their bytes. With probability `lie_chance` one claimed block of a
    /// partial file is then damaged while still claimed.
    pub fn crash(&mut self, rng: &mut SimRng, lie_chance: f64) -> Crash {
        let mut crash = Crash::default();
        let keep = rng.below(self.unsynced.len() as u64 + 1) as usize;
        let unsynced = std::mem::take(&mut self.unsynced);
        for &(file_id, k) in &unsynced[..keep] {
            self.claimed[file_id as usize].insert(k);
        }
        for &(file_id, k) in &unsynced[keep..] {
            let (from, to) = self.block_span(file_id, k);
            if let Some(t) = self.temp[file_id as usize].as_mut() {
                // Torn: the bytes never reached the disk either (flip one so they surely differ).
                t[from] ^= 0x5a;
            }
            crash.dropped_blocks += 1;
            crash.dropped_bytes += (to - from) as u64;
        }
        if rng.chance(lie_chance) {
            let partial: Vec<u32> =
                (0..self.sizes.len() as u32).filter(|&id| !self.claimed[id as usize].is_empty()).collect();
            if !partial.is_empty() {
                let id = partial[rng.below(partial.len() as u64) as usize];
                let claims = &self.claimed[id as usize];
                let k = *claims.iter().nth(rng.below(claims.len() as u64) as usize).expect("non-empty");
                let (from, to) = self.block_span(id, k);
                let at = from + rng.below((to - from) as u64) as usize;
                self.temp[id as usize].as_mut().expect("claimed blocks are in a partial")[at] ^= 0x01;
                crash.lied_file = Some(id);
            }
        }
        self.held.iter_mut().for_each(|h| h.clear());
        crash
    }

    /// What the receiver decides from this disk before a session: committed files are skipped (the sync
    /// check), claimed blocks of partials are held, as `(offset, len)` runs on the grid.
    pub fn start_plan(&mut self) -> StartPlan {
        let mut plan = StartPlan::default();
        for id in 0..self.sizes.len() as u32 {
            let i = id as usize;
            if self.committed[i].is_some() {
                plan.skip_file(id);
                continue;
            }
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for &k in &self.claimed[i] {
                let (from, to) = self.block_span(id, k);
                let (from, len) = (from as u64, (to - from) as u64);
                match ranges.last_mut() {
                    Some(last) if last.0 + last.1 == from => last.1 += len,
                    _ => ranges.push((from, len)),
                }
            }
            self.held[i] = self.claimed[i].clone();
            plan.add_have(id, ranges);
        }
        plan
    }

    /// Bytes of the files `plan` does not skip that the disk does not hold correctly (the partial's bytes
    /// differ from the source, block by block): what a session from this disk must deliver at least.
    pub fn missing_bytes(&self, plan: &StartPlan) -> u64 {
        let mut missing = 0;
        for id in 0..self.sizes.len() as u32 {
            if plan.is_skipped(id) {
                continue;
            }
            let src = self.source(id);
            let Some(temp) = &self.temp[id as usize] else {
                missing += src.len() as u64;
                continue;
            };
            for (a, b) in src.chunks(self.block as usize).zip(temp.chunks(self.block as usize)) {
                if a != b {
                    missing += a.len() as u64;
                }
            }
        }
        missing
    }

    /// Whether every file is committed with the source's bytes.
    pub fn all_identical(&self) -> bool {
        (0..self.sizes.len() as u32).all(|id| self.committed[id as usize].as_deref() == Some(&self.source(id)[..]))
    }

    fn forget(&mut self, file_id: u32) {
        let i = file_id as usize;
        self.claimed[i].clear();
        self.held[i].clear();
        self.unsynced.retain(|&(f, _)| f != file_id);
    }
}

impl BlockStore for DiskStore {
    fn write_block(&mut self, file_id: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let i = file_id as usize;
        let k = offset / self.block;
        if self.held[i].contains(&k) {
            self.held_block_writes += 1;
        }
        let size = self.sizes[i] as usize;
        let temp = self.temp[i].get_or_insert_with(|| vec![0; size]);
        temp[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        self.unsynced.push((file_id, k));
        if self.unsynced.len() >= self.sync_step_blocks {
            for (f, k) in std::mem::take(&mut self.unsynced) {
                self.claimed[f as usize].insert(k);
            }
        }
        Ok(())
    }

    fn hash_back(&mut self, job: HashJob, scratch: &mut [u8]) -> Option<HashDone> {
        let file = self.temp[job.file_id as usize].as_deref().unwrap_or(&[]);
        Some(job.run(scratch, |offset, buf| {
            let at = offset as usize;
            let bytes = file.get(at..at + buf.len()).ok_or_else(|| io::Error::other("read past the partial"))?;
            buf.copy_from_slice(bytes);
            Ok(())
        }))
    }

    fn commit(&mut self, file_id: u32) -> io::Result<()> {
        let i = file_id as usize;
        let size = self.sizes[i] as usize;
        self.committed[i] = Some(self.temp[i].take().unwrap_or_else(|| vec![0; size]));
        self.forget(file_id);
        Ok(())
    }

    fn reset(&mut self, file_id: u32) -> io::Result<()> {
        let i = file_id as usize;
        if let Some(t) = self.temp[i].as_mut() {
            t.iter_mut().for_each(|b| *b = 0);
        }
        self.forget(file_id);
        self.resets += 1;
        Ok(())
    }
}
