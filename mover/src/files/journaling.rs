//! [`FileJournals`]: the resume journals of one session's files, kept by the thread that writes them (the
//! receiver's writer stage), recording each write once it completed.
//!
//! The journal is advisory (the whole-file hash decides), so nothing here fails the transfer: a journal
//! that cannot be written stops being kept for that file (its bytes are sent again by a rerun), and the
//! first such error is kept for the report. Bounded: at most [`MAX_ACTIVE_JOURNALS`] journals are open at
//! once (two descriptors and ~14 KiB each); past that the least recently used one is flushed and closed,
//! and that file is not journaled further in this session.

use super::beneath::Beneath;
use super::journal::{JournalConfig, JournalError, JournalHeader, JournalRange, JournalWriter};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Journals open at once.
pub const MAX_ACTIVE_JOURNALS: usize = 64;
/// A journal with ranges recorded but not yet appended is flushed after this long without a new one, so a
/// stalled transfer (a partition) does not leave them only in memory.
pub const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// What a file's journal is written with.
pub struct PlannedJournal {
    /// The root the journal lies beneath: it is created, renamed and removed by descriptor
    /// ([`Beneath::parent`], resolved when the journal starts).
    pub beneath: Arc<Beneath>,
    /// The journal's path relative to the root ([`super::journal::journal_path_for`] of the partial).
    pub rel: PathBuf,
    /// The source's identity and this session's block size.
    pub header: JournalHeader,
    /// Ranges a resumed partial already holds (sorted, on the grid): the journal starts with them.
    pub trusted: Vec<JournalRange>,
}

struct Planned {
    journal: PlannedJournal,
    trusted_bytes: u64,
    /// The generation in which this file stopped being journaled (finished, evicted or failed).
    stopped: Option<u32>,
}

struct Active {
    file_id: u32,
    generation: u32,
    writer: JournalWriter<File>,
    /// Bytes the journal vouches for or has recorded: the file's whole size means it is done.
    covered: u64,
    last_record: Instant,
}

/// See the [module documentation](self).
pub struct FileJournals {
    /// The journaled files only, by ascending file id: a tree of a million small files (none journaled)
    /// costs nothing here, where a slot per file cost about 200 bytes each at the session's peak.
    plan: Vec<(u32, Planned)>,
    /// Per file id, bumped by the tree when it removes the file's journal (commit, reset).
    generations: Arc<[AtomicU32]>,
    config: JournalConfig,
    active: Vec<Active>,
    /// Ranges recorded.
    pub recorded: u64,
    /// Journal steps made (each: a data sync, an append, a journal sync).
    pub steps: u64,
    /// Time spent in journal creation and steps (the syncs).
    pub busy: Duration,
    /// Files whose journal failed, and the first error.
    pub failures: u64,
    /// The first journal error (its text names the journal by file name only).
    pub first_error: Option<String>,
}

impl FileJournals {
    /// Journals for `plan` (file id and journal, ascending file ids; files not in it are not journaled),
    /// signalled through `generations`.
    pub fn new(
        plan: impl IntoIterator<Item = (u32, PlannedJournal)>,
        generations: Arc<[AtomicU32]>,
        config: JournalConfig,
    ) -> Self {
        let mut plan: Vec<(u32, Planned)> = plan
            .into_iter()
            .map(|(file_id, journal)| {
                let trusted_bytes = journal.trusted.iter().map(|r| r.len).sum();
                (file_id, Planned { trusted_bytes, journal, stopped: None })
            })
            .collect();
        debug_assert!(plan.windows(2).all(|w| w[0].0 < w[1].0), "journal plan in ascending file ids");
        plan.shrink_to_fit();
        FileJournals {
            plan,
            generations,
            config,
            active: Vec::with_capacity(MAX_ACTIVE_JOURNALS),
            recorded: 0,
            steps: 0,
            busy: Duration::ZERO,
            failures: 0,
            first_error: None,
        }
    }

    /// Whether any file is journaled at all.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The plan of `file_id`, if it is journaled.
    fn planned(&self, file_id: u32) -> Option<&Planned> {
        let k = self.plan.binary_search_by_key(&file_id, |(id, _)| *id).ok()?;
        Some(&self.plan[k].1)
    }

    /// [`FileJournals::planned`], to change.
    fn planned_mut(&mut self, file_id: u32) -> Option<&mut Planned> {
        let k = self.plan.binary_search_by_key(&file_id, |(id, _)| *id).ok()?;
        Some(&mut self.plan[k].1)
    }

    /// Records that `bytes` were written to `file_id` at `offset` (the write completed in full). `fd` is a
    /// descriptor of the partial, kept as the journal's data file if this starts the file's journal.
    ///
    /// A range that is off the journal's block grid or overlaps what the partial already held is not
    /// recorded (a rerun sends it again): recording never makes the journal refuse itself.
    pub fn record(&mut self, file_id: u32, fd: OwnedFd, offset: u64, bytes: &[u8]) {
        let generation = self.generation(file_id);
        self.record_with(file_id, generation, fd, offset, bytes.len() as u64, |w| w.record(offset, bytes));
    }

    /// The generation of `file_id` now (see [`FileJournals::generations`]).
    pub fn generation(&self, file_id: u32) -> u32 {
        self.generations.get(file_id as usize).map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// The per-file generations the tree bumps when it removes a file's journal (commit, reset): a thread
    /// that hashes written ranges for [`FileJournals::record_hashed`] tags each range with the generation in
    /// which its first byte was written, and never extends a range across a change.
    pub fn generations(&self) -> Arc<[AtomicU32]> {
        self.generations.clone()
    }

    /// [`FileJournals::record`] of a range hashed by the caller as it was written: `range.xxh3` is the
    /// xxh3-64 of the bytes a write that completed in full put at `[range.offset, range.end())`, all of them
    /// written in generation `generation` of the file. A range of an older generation (the tree reset or
    /// committed the file since) is not recorded: its bytes may not be what the partial holds now.
    pub fn record_hashed(&mut self, file_id: u32, generation: u32, fd: OwnedFd, range: JournalRange) {
        self.record_with(file_id, generation, fd, range.offset, range.len, |w| w.record_hashed(range));
    }

    /// Starts `file_id`'s journal (in `generation`, with `fd` as its data file) if it has none open yet,
    /// so that it exists from the file's first completed write on; ranges come later
    /// ([`FileJournals::record_hashed`]).
    pub fn begin(&mut self, file_id: u32, generation: u32, fd: OwnedFd) {
        self.forget_stale();
        let Some(planned) = self.planned(file_id) else { return };
        if generation != self.generation(file_id)
            || generation == super::dest::JOURNAL_DONE
            || planned.stopped == Some(generation)
            || self.active.iter().any(|a| a.file_id == file_id)
        {
            return;
        }
        let _ = self.start(file_id, generation, fd, Instant::now());
    }

    fn record_with(
        &mut self,
        file_id: u32,
        generation: u32,
        fd: OwnedFd,
        offset: u64,
        len: u64,
        record: impl FnOnce(&mut JournalWriter<File>) -> Result<(), JournalError>,
    ) {
        let now = Instant::now();
        self.forget_stale();
        let Some(planned) = self.planned(file_id) else { return };
        if generation != self.generation(file_id)
            || generation == super::dest::JOURNAL_DONE
            || planned.stopped == Some(generation)
        {
            return;
        }
        let size = planned.journal.header.identity.size;
        let trusted: &[JournalRange] = if generation == 0 { &planned.journal.trusted } else { &[] };
        if !on_grid(offset, len, &planned.journal.header) || overlaps(trusted, offset, len) {
            return;
        }
        let k = match self.active.iter().position(|a| a.file_id == file_id) {
            Some(k) => k,
            None => match self.start(file_id, generation, fd, now) {
                Some(k) => k,
                None => return,
            },
        };
        let a = &mut self.active[k];
        let t = Instant::now();
        let steps_before = a.writer.ranges_written();
        let r = record(&mut a.writer);
        a.covered += len;
        a.last_record = now;
        let done = a.covered >= size;
        let r = r.and_then(|()| if done { a.writer.flush() } else { Ok(()) });
        if a.writer.ranges_written() != steps_before {
            self.steps += 1;
        }
        self.busy += t.elapsed();
        self.recorded += 1;
        match r {
            Err(e) => self.stop(k, Some(e.to_string())),
            // Every byte is journaled: close it (the commit removes it).
            Ok(()) if done => self.stop(k, None),
            Ok(()) => {}
        }
    }

    /// Drops the writers of files whose journal the tree removed, and flushes journals idle for
    /// [`IDLE_FLUSH`]. Call it now and then (the writer stage's housekeeping).
    pub fn housekeeping(&mut self) {
        self.forget_stale();
        let now = Instant::now();
        let mut k = 0;
        while k < self.active.len() {
            let a = &mut self.active[k];
            if a.writer.pending_runs() > 0 && now.duration_since(a.last_record) >= IDLE_FLUSH {
                let t = Instant::now();
                let r = a.writer.flush();
                self.busy += t.elapsed();
                self.steps += 1;
                if let Err(e) = r {
                    self.stop(k, Some(e.to_string()));
                    continue;
                }
            }
            k += 1;
        }
    }

    /// Flushes every open journal and closes it: the end of the session (its partials are kept or
    /// committed by the tree).
    pub fn finish(&mut self) {
        self.forget_stale();
        while !self.active.is_empty() {
            let k = self.active.len() - 1;
            let t = Instant::now();
            let r = self.active[k].writer.flush();
            self.busy += t.elapsed();
            self.stop(k, r.err().map(|e| e.to_string()));
        }
    }

    /// Journals open now.
    pub fn open_count(&self) -> usize {
        self.active.len()
    }

    /// Opens `file_id`'s journal (evicting the least recently used one if all are in use).
    fn start(&mut self, file_id: u32, generation: u32, fd: OwnedFd, now: Instant) -> Option<usize> {
        if self.active.len() == MAX_ACTIVE_JOURNALS {
            let lru = (0..self.active.len()).min_by_key(|&k| self.active[k].last_record).expect("full");
            let t = Instant::now();
            let r = self.active[lru].writer.flush();
            self.busy += t.elapsed();
            self.stop(lru, r.err().map(|e| e.to_string()));
        }
        let config = self.config;
        let k = self.plan.binary_search_by_key(&file_id, |(id, _)| *id).expect("checked by the caller");
        let planned = &mut self.plan[k].1;
        // A file started over (generation > 0) has nothing trusted any more.
        let (trusted, covered) =
            if generation == 0 { (&planned.journal.trusted[..], planned.trusted_bytes) } else { (&[][..], 0) };
        let t = Instant::now();
        let j = &planned.journal;
        let dir = j.beneath.parent(&j.rel).map_err(|error| JournalError::Io {
            journal: display_name(&j.rel),
            op: "open the directory of",
            error,
        });
        let r = dir.and_then(|(dir, name)| {
            let w = JournalWriter::resume_at(&dir, name, j.header, trusted, File::from(fd), config);
            Ok((w?, dir, name))
        });
        self.busy += t.elapsed();
        // The tree may have committed or reset the file while the journal was being written (this runs on
        // the journal thread, behind the writes): it changes the generation before it removes a journal, so
        // seeing the same generation now means a removal to come will find this journal; seeing another
        // means ours is stale, and is removed here.
        if let Ok((_, dir, name)) = &r {
            if self.generations[file_id as usize].load(Ordering::Acquire) != generation {
                let _ = dir.unlink(name, false);
                planned.stopped = Some(generation);
                return None;
            }
        }
        match r {
            Ok((writer, _, _)) => {
                self.active.push(Active { file_id, generation, writer, covered, last_record: now });
                Some(self.active.len() - 1)
            }
            Err(e) => {
                planned.stopped = Some(generation);
                self.note_failure(e.to_string());
                None
            }
        }
    }

    /// Closes the journal at `k`; the file is not journaled again in its generation.
    fn stop(&mut self, k: usize, error: Option<String>) {
        let a = self.active.swap_remove(k);
        if let Some(p) = self.planned_mut(a.file_id) {
            p.stopped = Some(a.generation);
        }
        if let Some(e) = error {
            self.note_failure(e);
        }
    }

    fn note_failure(&mut self, e: String) {
        self.failures += 1;
        self.first_error.get_or_insert(e);
    }

    /// Drops (without a step) the writers whose file's journal the tree removed since they started.
    fn forget_stale(&mut self) {
        let gens = &self.generations;
        self.active.retain(|a| gens[a.file_id as usize].load(Ordering::Acquire) == a.generation);
    }
}

/// Whether `[offset, offset + len)` is a range a journal with `h` may hold (the rule of
/// `journal::reader::check_range`): non-empty, inside the file, aligned, whole blocks unless it ends the file.
fn on_grid(offset: u64, len: u64, h: &JournalHeader) -> bool {
    let bs = u64::from(h.block_size);
    match offset.checked_add(len) {
        Some(end) if len > 0 && end <= h.identity.size => offset % bs == 0 && (len % bs == 0 || end == h.identity.size),
        _ => false,
    }
}

/// Whether `[offset, offset + len)` shares a byte with the sorted, disjoint `ranges`.
fn overlaps(ranges: &[JournalRange], offset: u64, len: u64) -> bool {
    let end = offset + len;
    // The first range ending after `offset` is the only candidate.
    let k = ranges.partition_point(|r| r.end() <= offset);
    ranges.get(k).is_some_and(|r| r.offset < end)
}

/// A journal's file name for errors (never a directory: a daemon shows errors to clients).
fn display_name(rel: &std::path::Path) -> String {
    rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::journal::FileIdentity;
    use std::path::Path;

    /// The plan holds the journaled files only, found by file id: a tree of many small files costs nothing.
    #[test]
    fn only_journaled_files_take_a_place_in_the_plan() {
        let beneath = Arc::new(Beneath::new(&std::env::temp_dir()).unwrap());
        let generations: Arc<[AtomicU32]> = (0..100_000).map(|_| AtomicU32::new(0)).collect();
        let identity = FileIdentity { size: 64 << 20, mtime_ns: 1, mode: 0o100644, path_hash: 7 };
        let planned = |rel: &str| PlannedJournal {
            beneath: beneath.clone(),
            rel: PathBuf::from(rel),
            header: JournalHeader { identity, block_size: 1024 },
            trusted: vec![JournalRange { offset: 0, len: 2048, xxh3: 0 }],
        };
        let journals = FileJournals::new(
            [(3, planned("a")), (70_000, planned("b"))],
            generations.clone(),
            JournalConfig::default(),
        );
        assert!(!journals.is_empty());
        assert_eq!(journals.plan.capacity(), 2, "one place per journaled file, not per file");
        assert_eq!(
            journals.planned(70_000).map(|p| (p.journal.rel.as_path(), p.trusted_bytes)),
            Some((Path::new("b"), 2048))
        );
        assert!(journals.planned(4).is_none() && journals.planned(99_999).is_none());
        assert!(FileJournals::new([], generations, JournalConfig::default()).is_empty());
    }
}
