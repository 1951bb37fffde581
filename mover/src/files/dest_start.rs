//! [`DestTree::decide_start`]: the per-file start decision ([`super::start`]) applied to a prepared tree,
//! and the journals the writer stage keeps for it ([`DestTree::journals`]).

use super::dest::{DestTree, State};
use super::error::FilesError;
use super::journal::{journal_path_for, JournalConfig, JournalHeader};
use super::journaling::{FileJournals, PlannedJournal};
use super::start::{decide_file, Decided, FileFacts, FileStart, StartDecision};
use crate::wire::TransferOptions;

/// Files smaller than this are not journaled: a journal costs a file, its header's sync and two syncs per
/// step, which for small files costs more than sending them again (a tree of 10k small files would pay
/// tens of thousands of `fdatasync`s). Their partials are removed on abort and sent whole by a rerun.
pub const JOURNAL_MIN_BYTES: u64 = 8 << 20;

/// How often the writer stage makes a journal step (syncs the data, appends, syncs the journal): what a
/// crash can cost at most per file beyond the ranges not yet written.
pub const JOURNAL_STEP_BYTES: u64 = 16 << 20;

impl DestTree {
    /// Decides, for every file, whether it is skipped, resumed or sent fresh ([`FileStart`]; the rules are
    /// on [`super::start`]'s `decide_file`), and applies it: a skipped file is never created or committed;
    /// a resumed or re-used partial is claimed now (its lock held until commit or abort) and opened later
    /// without truncating; from now on files of at least [`JOURNAL_MIN_BYTES`] are journaled with
    /// `block_size` (the session's block payload), see [`DestTree::journals`].
    ///
    /// `expected_hashes` holds the sources' xxh3-128 by file id for `--checksum` (shorter, or `None`
    /// entries: not known, nothing is skipped by content). Call it once, after [`DestTree::prepare`] and
    /// before any block is written. An error (a partial another session holds, an unreadable destination)
    /// ends the session; partials claimed so far are released as by [`DestTree::abort`].
    pub fn decide_start(
        &mut self,
        opts: &TransferOptions,
        expected_hashes: &[Option<u128>],
        block_size: u32,
    ) -> Result<StartDecision, FilesError> {
        assert!(block_size > 0, "block size 0");
        assert!(self.files.iter().all(|f| f.state == State::NotCreated), "decide_start after writing began");
        self.block_size = Some(block_size);
        let mut d = StartDecision { files: Vec::with_capacity(self.files.len()), ..StartDecision::default() };
        let mut parents = super::beneath::ParentCache::default();
        for id in 0..self.files.len() {
            let f = &self.files[id];
            let final_name = f.shown.file_name().and_then(std::ffi::OsStr::to_str).unwrap_or_default();
            let facts = FileFacts {
                beneath: &self.beneath,
                shown: &f.shown,
                shown_temp: &f.shown_temp,
                identity: f.identity,
                final_size: f.piece.as_deref().map_or(f.size, |(p, _)| p.file_size),
                piece: f.piece.as_deref().map(|&(p, version)| (final_name, p, version)),
                mtime_s: f.mtime_s,
                mtime_ns: f.mtime_ns,
            };
            let expected = expected_hashes.get(id).copied().flatten();
            let decided = decide_file(&facts, &mut parents, opts, expected, block_size, self.owner)
                .map_err(|e| e.relative_to(&self.root))?;
            let f = &mut self.files[id];
            let err = |op, error| FilesError::Partial { path: f.shown_temp.clone(), op, error };
            let start = match decided {
                Decided::Skip => {
                    f.state = State::Skipped;
                    d.skipped_files += 1;
                    d.skipped_bytes += f.size;
                    FileStart::Skip
                }
                Decided::Resume { claim, trusted } => {
                    f.state = State::Created;
                    let sized = claim.file().set_len(f.size).map_err(|e| err("sizing", e));
                    let have: Vec<(u64, u64)> = trusted.iter().map(|r| (r.offset, r.len)).collect();
                    d.resumed_bytes += have.iter().map(|&(_, len)| len).sum::<u64>();
                    f.trusted = trusted;
                    // Held within the bound on claims: a rerun may find more partials than descriptors.
                    self.hold_claim(id as u32, claim);
                    sized?;
                    FileStart::Resume { have }
                }
                Decided::Fresh { claim, why } => {
                    if let Some(c) = claim {
                        f.state = State::Created;
                        let sized = c.file().set_len(f.size).map_err(|e| err("sizing", e));
                        self.hold_claim(id as u32, c);
                        sized?;
                    }
                    if let Some(why) = why {
                        d.started_over.push((id as u32, why));
                    }
                    FileStart::Fresh
                }
            };
            d.files.push(start);
        }
        // Ranges verified by earlier runs (of this node or others): a file whose every range is now done is
        // assembled here, as no commit of this session may come for it.
        for id in 0..self.files.len() {
            if self.files[id].piece.is_some() && self.files[id].state == State::Skipped {
                self.assemble(id as u32).map_err(|error| FilesError::Partial {
                    path: self.files[id].shown.clone(),
                    op: "assembling",
                    error,
                })?;
            }
        }
        Ok(d)
    }

    /// The journals the writer stage keeps for this tree's files: every file of at least
    /// [`JOURNAL_MIN_BYTES`] that is not skipped, its resumed ranges included. Empty (journaling nothing)
    /// until [`DestTree::decide_start`] gave the block size. Take it before the tree moves into the store.
    pub fn journals(&self) -> FileJournals {
        let config = JournalConfig { step_bytes: JOURNAL_STEP_BYTES, ..JournalConfig::default() };
        let Some(block_size) = self.block_size else {
            return FileJournals::new([], self.generations.clone(), config);
        };
        let plan = self.files.iter().enumerate().filter_map(|(file_id, f)| {
            if f.size < JOURNAL_MIN_BYTES || f.state == State::Skipped {
                return None;
            }
            let journal = PlannedJournal {
                beneath: self.beneath.clone(),
                rel: journal_path_for(&f.shown_temp),
                header: JournalHeader { identity: f.identity, block_size },
                trusted: f.trusted.clone(),
            };
            Some((file_id as u32, journal))
        });
        FileJournals::new(plan, self.generations.clone(), config)
    }
}
