//! Appending to a journal as the data file becomes durable.

use super::format::{emit_header, emit_range, RANGE_RECORD_LEN};
use super::reader::check_range;
use super::{display_name, with_suffix, JournalError, JournalHeader, JournalRange, MAX_RANGES};
use crate::files::beneath::Dir;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3Default;

/// Makes a data file's written bytes durable (`fdatasync`). A trait so that tests can watch the order of
/// data syncs and journal appends.
pub trait SyncData {
    /// Returns once every byte written so far is on stable storage.
    fn sync_data(&self) -> io::Result<()>;
}

impl SyncData for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// How often a [`JournalWriter`] makes a step (sync the data, append the records, sync the journal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// A step after this many bytes were recorded since the last one. A crash loses at most this much
    /// (plus what was not yet recorded): it is sent again.
    pub step_bytes: u64,
    /// Runs (ranges still growing) kept in memory; a range that extends none of them when all are in use
    /// makes a step first. Bounds the writer's memory and the records per step.
    pub max_open_runs: usize,
}

impl Default for JournalConfig {
    /// 64 MiB steps (two `fdatasync`s per 64 MiB: negligible next to writing it), 32 runs (~14 KiB).
    fn default() -> Self {
        JournalConfig { step_bytes: 64 << 20, max_open_runs: 32 }
    }
}

/// A range being journaled: contiguous bytes recorded since the last step, hashed as they came.
struct Run {
    offset: u64,
    len: u64,
    hash: Xxh3Default,
    /// The hash of a range recorded already hashed ([`JournalWriter::record_hashed`]): such a run is closed
    /// (nothing extends it, `hash` is unused).
    digest: Option<u64>,
}

/// Appends the ranges of one data file to its journal, in bounded steps, each range only once its bytes
/// are durable.
///
/// Call order: [`JournalWriter::create`] (or [`JournalWriter::resume`]), then [`JournalWriter::record`] for
/// every range *after* its write to the data file completed (ranges of one journal never overlap), then
/// [`JournalWriter::flush`] before the file is verified. Adjacent ranges recorded in order grow one run (one
/// record); a step writes every run as one record. Memory is fixed at creation: `max_open_runs` runs and a
/// record buffer for them, whatever the file size and however scattered the ranges. After [`MAX_RANGES`]
/// records the writer stops journaling (later ranges are sent again on a rerun). After an I/O error it
/// refuses every call: the journal's tail may be torn, and appending after it would hide that.
pub struct JournalWriter<D: SyncData = File> {
    journal: File,
    name: String,
    data: D,
    header: JournalHeader,
    config: JournalConfig,
    /// Never longer than `config.max_open_runs` (capacity reserved at creation).
    runs: Vec<Run>,
    pending_bytes: u64,
    next_seq: u64,
    ranges_written: u64,
    /// Encoded records of one step (capacity `max_open_runs` records, reserved at creation).
    buf: Vec<u8>,
    full: bool,
    poisoned: bool,
}

impl<D: SyncData> JournalWriter<D> {
    /// Creates (or truncates) the journal at `path` for a data file started from nothing, and makes its
    /// header durable.
    pub fn create(path: &Path, header: JournalHeader, data: D, config: JournalConfig) -> Result<Self, JournalError> {
        Self::resume(path, header, &[], data, config)
    }

    /// Starts a fresh journal at `path` holding `trusted` (what [`super::load`] or [`super::verify_ranges`]
    /// kept, passed through [`ranges_on_grid`] if the block size changed) and continues after it. It is
    /// written beside `path` and renamed over it, so a crash leaves the old journal or the new one, never a
    /// mix, and a torn tail or a range dropped by verification does not stay in the journal to collide with
    /// the bytes that are sent again.
    ///
    /// Panics if `trusted` is unsorted, overlapping, or off `header`'s grid (a caller's bug).
    pub fn resume(
        path: &Path,
        header: JournalHeader,
        trusted: &[JournalRange],
        data: D,
        config: JournalConfig,
    ) -> Result<Self, JournalError> {
        let tmp_path = PathBuf::from(with_suffix(path.as_os_str(), ".new"));
        let place = Place::Path { tmp: &tmp_path, path };
        Self::start(place, display_name(path), header, trusted, data, config)
    }

    /// [`JournalWriter::resume`] of the journal `name` in `dir`: created, written and renamed into place
    /// by descriptor beneath the receiver's root (never through a symlink, [`crate::files::beneath`]).
    pub fn resume_at(
        dir: &Dir,
        name: &OsStr,
        header: JournalHeader,
        trusted: &[JournalRange],
        data: D,
        config: JournalConfig,
    ) -> Result<Self, JournalError> {
        let tmp = with_suffix(name, ".new");
        let place = Place::At { dir, tmp: &tmp, name };
        Self::start(place, name.to_string_lossy().into_owned(), header, trusted, data, config)
    }

    fn start(
        place: Place,
        name: String,
        header: JournalHeader,
        trusted: &[JournalRange],
        data: D,
        config: JournalConfig,
    ) -> Result<Self, JournalError> {
        assert!(header.block_size > 0 && config.max_open_runs > 0 && config.step_bytes > 0);
        assert!(trusted.len() as u64 <= MAX_RANGES, "more trusted ranges than a journal holds");
        assert!(trusted.windows(2).all(|w| w[0].end() <= w[1].offset), "trusted ranges unsorted or overlapping");
        assert!(trusted.iter().all(|r| check_range(r, &header).is_ok()), "trusted range off the file's grid");
        let journal =
            place.create().map_err(|error| JournalError::Io { journal: name.clone(), op: "create", error })?;
        let mut w = JournalWriter {
            journal,
            name,
            data,
            header,
            config,
            runs: Vec::with_capacity(config.max_open_runs),
            pending_bytes: 0,
            next_seq: 1,
            ranges_written: 0,
            buf: Vec::with_capacity(config.max_open_runs * RANGE_RECORD_LEN),
            full: false,
            poisoned: false,
        };
        match w.write_start(trusted, &place) {
            Ok(()) => Ok(w),
            Err((op, error)) => {
                place.remove_tmp();
                Err(JournalError::Io { journal: w.name, op, error })
            }
        }
    }

    /// Writes the header and `trusted` to the new journal, makes it durable and renames it into place.
    fn write_start(&mut self, trusted: &[JournalRange], place: &Place) -> Result<(), (&'static str, io::Error)> {
        // The bytes of `trusted` were durable when first journaled; one sync covers a partial file whose
        // last writes a dead process left in the page cache.
        self.data.sync_data().map_err(|e| ("sync data file", e))?;
        self.journal.write_all(&emit_header(&self.header)).map_err(|e| ("write", e))?;
        for chunk in trusted.chunks(self.config.max_open_runs) {
            self.buf.clear();
            for r in chunk {
                self.buf.extend_from_slice(&emit_range(self.next_seq, r));
                self.next_seq += 1;
            }
            self.journal.write_all(&self.buf).map_err(|e| ("write", e))?;
        }
        self.ranges_written = trusted.len() as u64;
        self.journal.sync_data().map_err(|e| ("sync", e))?;
        // The directory is not synced: if the rename is lost, the old journal is still a valid one.
        place.commit().map_err(|e| ("rename", e))
    }

    /// Records that `bytes` were written to the data file at `offset` (the write completed). The range is
    /// journaled at the next step, after the data file is synced.
    ///
    /// Panics if the range is empty, outside the file or off the block grid (a caller's bug).
    pub fn record(&mut self, offset: u64, bytes: &[u8]) -> Result<(), JournalError> {
        self.check_usable()?;
        let len = bytes.len() as u64;
        let range = JournalRange { offset, len, xxh3: 0 };
        assert!(check_range(&range, &self.header).is_ok(), "recorded range {offset}+{len} off the file's grid");
        debug_assert!(self.runs.iter().all(|r| offset >= r.offset + r.len || offset + len <= r.offset), "overlap");
        if self.full {
            return Ok(());
        }
        if let Some(run) = self.runs.iter_mut().find(|r| r.digest.is_none() && r.offset + r.len == offset) {
            run.hash.update(bytes);
            run.len += len;
        } else {
            let mut hash = Xxh3Default::new();
            hash.update(bytes);
            if !self.push_run(Run { offset, len, hash, digest: None })? {
                return Ok(());
            }
        }
        self.after_record(len)
    }

    /// Records `range`, whose bytes were written to the data file (the write completed) and hash to
    /// `range.xxh3`: the caller hashed them as it wrote them, so the journal does not read them back. It is
    /// journaled at the next step, after the data file is synced, as one record (nothing extends it).
    ///
    /// Panics if the range is empty, outside the file or off the block grid (a caller's bug).
    pub fn record_hashed(&mut self, range: JournalRange) -> Result<(), JournalError> {
        self.check_usable()?;
        assert!(check_range(&range, &self.header).is_ok(), "recorded range {range:?} off the file's grid");
        debug_assert!(self.runs.iter().all(|r| range.offset >= r.offset + r.len || range.end() <= r.offset), "overlap");
        if self.full {
            return Ok(());
        }
        let run = Run { offset: range.offset, len: range.len, hash: Xxh3Default::new(), digest: Some(range.xxh3) };
        if !self.push_run(run)? {
            return Ok(());
        }
        self.after_record(range.len)
    }

    /// Opens `run` (making a step first if every run is in use); false if the journal just became full.
    fn push_run(&mut self, run: Run) -> Result<bool, JournalError> {
        if self.runs.len() == self.config.max_open_runs {
            self.flush()?;
        }
        if self.ranges_written + self.runs.len() as u64 == MAX_RANGES {
            self.full = true;
            return Ok(false);
        }
        self.runs.push(run);
        Ok(true)
    }

    /// Counts `len` recorded bytes and makes a step once a step's worth is pending.
    fn after_record(&mut self, len: u64) -> Result<(), JournalError> {
        self.pending_bytes += len;
        if self.pending_bytes >= self.config.step_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes a step now: syncs the data file, appends one record per run, syncs the journal. A no-op when
    /// nothing was recorded since the last step.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        if self.runs.is_empty() {
            return Ok(());
        }
        // The order is the point: the records go out only after the data they vouch for is durable.
        let r = self.data.sync_data().map_err(|e| ("sync data file", e));
        let r = r.and_then(|()| self.encode_runs().map_err(|e| ("write", e)));
        let r = r.and_then(|()| self.journal.sync_data().map_err(|e| ("sync", e)));
        if let Err((op, error)) = r {
            // After a failed fsync the kernel may have dropped the dirty pages; never retry, never append.
            self.poisoned = true;
            return Err(JournalError::Io { journal: self.name.clone(), op, error });
        }
        self.ranges_written += self.runs.len() as u64;
        self.runs.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Range records in the journal (not counting runs still in memory).
    pub fn ranges_written(&self) -> u64 {
        self.ranges_written
    }

    /// Runs recorded but not yet journaled (at most `max_open_runs`).
    pub fn pending_runs(&self) -> usize {
        self.runs.len()
    }

    /// Whether the journal reached [`MAX_RANGES`] and ignores further ranges.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The data file's handle.
    pub fn data(&self) -> &D {
        &self.data
    }

    fn encode_runs(&mut self) -> io::Result<()> {
        self.buf.clear();
        for run in &self.runs {
            let xxh3 = run.digest.unwrap_or_else(|| run.hash.digest());
            let range = JournalRange { offset: run.offset, len: run.len, xxh3 };
            self.buf.extend_from_slice(&emit_range(self.next_seq, &range));
            self.next_seq += 1;
        }
        self.journal.write_all(&self.buf)
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        if !self.poisoned {
            return Ok(());
        }
        let error = io::Error::other("an earlier write or sync failed");
        Err(JournalError::Io { journal: self.name.clone(), op: "append", error })
    }
}

/// The ranges of `ranges` a journal with `header` can hold: those on its block grid. A rerun whose block
/// size differs from the journal's (another MTU or cipher) keeps the ranges that still fit and sends the
/// others again; [`super::missing_ranges`] on the result then asks for exactly those.
pub fn ranges_on_grid(ranges: &[JournalRange], header: &JournalHeader) -> Vec<JournalRange> {
    ranges.iter().filter(|r| check_range(r, header).is_ok()).copied().collect()
}

#[cfg(test)]
impl<D: SyncData> JournalWriter<D> {
    /// Bytes reserved by the writer's buffers (they never grow after creation).
    pub(crate) fn reserved_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>() + self.buf.capacity()
    }
}

/// Where a journal is written: by path (tools and tests), or by name in a directory resolved beneath the
/// receiver's root (a session: nothing goes through a symlink swapped in meanwhile).
enum Place<'a> {
    Path { tmp: &'a Path, path: &'a Path },
    At { dir: &'a Dir, tmp: &'a OsStr, name: &'a OsStr },
}

impl Place<'_> {
    fn create(&self) -> io::Result<File> {
        match self {
            Place::Path { tmp, .. } => OpenOptions::new().write(true).create(true).truncate(true).open(tmp),
            Place::At { dir, tmp, .. } => dir.open(tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o600),
        }
    }

    fn commit(&self) -> io::Result<()> {
        match self {
            Place::Path { tmp, path } => std::fs::rename(tmp, path),
            Place::At { dir, tmp, name } => dir.rename(tmp, dir, name, false),
        }
    }

    fn remove_tmp(&self) {
        let _ = match self {
            Place::Path { tmp, .. } => std::fs::remove_file(tmp),
            Place::At { dir, tmp, .. } => dir.unlink(tmp, false),
        };
    }
}
