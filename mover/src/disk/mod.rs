//! The reader stage's engine: file blocks into pooled, aligned buffers, many reads in flight.
//!
//! One [`DiskReader`] lives on one thread (the reader stage) and allocates nothing per read once built:
//! its [`BufferPool`], its slab of in-flight reads and its table of open files are sized by
//! [`ReaderConfig`] at construction.
//!
//! # Call order
//! 1. [`DiskReader::new`] picks the backend ([`BackendChoice`], `MOVER_DISK`), probes io_uring and
//!    registers the pool's buffers.
//! 2. [`DiskReader::open`] each file (O_DIRECT when asked and the file system accepts it).
//! 3. [`DiskReader::submit`] [`ReadReq`]s in request order until it answers [`Full`] (no free slot or
//!    buffer); submissions are queued and handed to the kernel in one batch by the next poll.
//! 4. [`DiskReader::poll_complete`] (never blocks) or [`DiskReader::wait_complete`] (blocks until one
//!    completes) return [`Completion`]s in *completion* order; feed them to an [`InOrder`] to get them back
//!    in request order. Each completion carries the buffer's [`BufIdx`]: read the bytes with
//!    [`DiskReader::data`], then give the buffer back with [`DiskReader::release`] (or keep it and pass it
//!    on: whoever holds the `BufIdx` owns the buffer).
//! 5. [`DiskReader::close`] a file once no read of it is in flight.
//!
//! A request may ask for more bytes than the file has: the completion then reports the bytes that exist
//! (a short read at end of file is success with a smaller length, and 0 past the end). With O_DIRECT the
//! reader reads the length rounded up to 4096 bytes and reports the valid prefix, so the last, partial
//! block of a file needs no special call; offsets of O_DIRECT reads must be multiples of 4096.

mod pool;
mod pread;
mod uring;
mod writer;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use pool::{BufIdx, BufferPool, Region, ALIGN_BYTES};
pub use pread::PreadReader;
pub use uring::UringReader;

/// Whether this process can set up an io_uring at all; the error is the engines' own, with its hint (kernel
/// version, `kernel.io_uring_disabled`, seccomp, memlock). For `mover doctor`: it checks, it keeps nothing.
pub fn io_uring_available() -> Result<(), String> {
    uring::build_ring(8).map(drop)
}
pub use writer::{DiskWriter, WriteDone, WriteReq};

/// The environment variable that forces a backend: `pread` or `io_uring` (unset or `auto`: try io_uring).
pub const BACKEND_ENV: &str = "MOVER_DISK";

/// How reads reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBackend {
    /// io_uring with registered buffers (`READ_FIXED`), many reads in flight.
    IoUring,
    /// Positional reads (`pread`), one at a time, completing at submission.
    Pread,
}

impl DiskBackend {
    /// The backend's name as `MOVER_DISK` and `--json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            DiskBackend::IoUring => "io_uring",
            DiskBackend::Pread => "pread",
        }
    }
}

/// Which backend [`DiskReader::new`] should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring if it works here, else `pread` with one warning naming the reason.
    Auto,
    /// This backend or an error (no fallback).
    Force(DiskBackend),
}

impl BackendChoice {
    /// The choice `MOVER_DISK` asks for (`auto` when unset).
    pub fn from_env() -> Result<BackendChoice, String> {
        match std::env::var(BACKEND_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(BackendChoice::Auto),
            Err(e) => Err(format!("{BACKEND_ENV}: {e}")),
            Ok(v) => BackendChoice::parse(&v),
        }
    }

    /// Parses `auto`, `io_uring` (or `uring`) or `pread`.
    pub fn parse(text: &str) -> Result<BackendChoice, String> {
        match text.trim() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "io_uring" | "uring" => Ok(BackendChoice::Force(DiskBackend::IoUring)),
            "pread" => Ok(BackendChoice::Force(DiskBackend::Pread)),
            other => Err(format!("{BACKEND_ENV}={other}: expected io_uring, pread or auto")),
        }
    }
}

/// Sizes of everything a reader allocates up front.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Backend selection.
    pub backend: BackendChoice,
    /// Reads in flight at most (the slab size; the io_uring submission queue is at least this deep).
    pub queue_depth: u32,
    /// Bytes per buffer: the largest read (a multiple of 4096).
    pub block_bytes: usize,
    /// Buffers in the pool: `queue_depth` plus however many the consumer holds while reads continue.
    pub buffers: u32,
    /// Files open at once.
    pub max_open_files: u32,
}

impl ReaderConfig {
    /// `queue_depth` reads of `block_bytes`, with as many buffers again for the consumer, 64 open files.
    pub fn new(backend: BackendChoice, queue_depth: u32, block_bytes: usize) -> ReaderConfig {
        ReaderConfig { backend, queue_depth, block_bytes, buffers: queue_depth * 2, max_open_files: 64 }
    }
}

/// Names an open file of one reader. A handle, not ownership: it is valid until [`DiskReader::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(u32);

/// One read: `len` bytes of `file` at `offset`, tagged with the caller's `req_id` (consecutive ids let an
/// [`InOrder`] restore request order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadReq {
    /// The caller's name for this read, returned in its [`Completion`].
    pub req_id: u64,
    /// The file, from [`DiskReader::open`].
    pub file: FileId,
    /// Byte offset (a multiple of 4096 for an O_DIRECT file).
    pub offset: u64,
    /// Bytes wanted: 1 ..= the reader's `block_bytes`.
    pub len: u32,
}

/// No slot or no buffer is free: poll completions (and release buffers), then submit again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A finished read. The buffer belongs to the receiver of this value: release it or pass it on.
#[derive(Debug)]
pub struct Completion {
    /// The request's `req_id`.
    pub req_id: u64,
    /// The buffer holding the bytes (valid prefix: `result`'s length).
    pub buf: BufIdx,
    /// Bytes read, fewer than asked only at end of file; or the error, naming the file and offset.
    pub result: io::Result<usize>,
}

/// The reader engine with the backend chosen at start-up; see the [module documentation](self) for the
/// call order.
pub enum DiskReader {
    /// io_uring (boxed: the ring handle makes it much larger than the fallback).
    IoUring(Box<UringReader>),
    /// `pread` fallback.
    Pread(PreadReader),
}

macro_rules! each {
    ($self:expr, $r:ident => $e:expr) => {
        match $self {
            DiskReader::IoUring($r) => $e,
            DiskReader::Pread($r) => $e,
        }
    };
}

impl DiskReader {
    /// Allocates the pool and slab and sets up the backend. With [`BackendChoice::Auto`] an unusable
    /// io_uring (old kernel, `kernel.io_uring_disabled`, seccomp, memlock) falls back to `pread` with one
    /// warning on stderr naming the reason and the fix; a forced backend that cannot work is an error.
    pub fn new(config: &ReaderConfig) -> io::Result<DiskReader> {
        let core = Core::new(config);
        let force_uring = match config.backend {
            BackendChoice::Force(DiskBackend::Pread) => return Ok(DiskReader::Pread(PreadReader::new(core))),
            BackendChoice::Force(DiskBackend::IoUring) => true,
            BackendChoice::Auto => false,
        };
        match uring::setup(&core, config.queue_depth) {
            Ok(ring) => Ok(DiskReader::IoUring(Box::new(UringReader::new(ring, core)))),
            Err(why) if force_uring => Err(io::Error::other(format!("io_uring unavailable: {why}"))),
            Err(why) => {
                warn_fallback(&why);
                Ok(DiskReader::Pread(PreadReader::new(core)))
            }
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> DiskBackend {
        match self {
            DiskReader::IoUring(_) => DiskBackend::IoUring,
            DiskReader::Pread(_) => DiskBackend::Pread,
        }
    }

    /// Opens `path` for reading; with `direct`, O_DIRECT if its file system accepts it (else buffered, with
    /// one warning per reader). The error, and those of its reads, name the file by its path.
    pub fn open(&mut self, path: &Path, direct: bool) -> io::Result<FileId> {
        self.open_named(path, &path.to_string_lossy(), direct)
    }

    /// [`open`](Self::open), with the errors of the open and of the file's reads naming it `name`: a daemon
    /// serving a pull names files as its client knows them, not by its own paths.
    pub fn open_named(&mut self, path: &Path, name: &str, direct: bool) -> io::Result<FileId> {
        let open = |flags: i32| OpenOptions::new().read(true).custom_flags(flags).open(path);
        self.open_with(&open, name, direct)
    }

    /// [`open_named`](Self::open_named) with `open` doing the opening (given the extra flags: `O_DIRECT`
    /// or 0), e.g. beneath a served root by descriptor (a daemon serving a pull).
    pub fn open_with(
        &mut self,
        open: &dyn Fn(i32) -> io::Result<File>,
        name: &str,
        direct: bool,
    ) -> io::Result<FileId> {
        each!(self, r => r.core.files.open(open, name, direct))
    }

    /// Whether reads of `file` bypass the page cache.
    pub fn is_direct(&self, file: FileId) -> bool {
        each!(self, r => r.core.files.get(file).direct)
    }

    /// Closes `file`; an error if reads of it are still in flight or undelivered.
    pub fn close(&mut self, file: FileId) -> io::Result<()> {
        each!(self, r => r.core.files.close(file))
    }

    /// Queues a read, or answers [`Full`] when no slot or buffer is free. Panics on a programmer error:
    /// unknown file, `len` 0 or above `block_bytes`, an O_DIRECT offset not a multiple of 4096.
    pub fn submit(&mut self, req: ReadReq) -> Result<(), Full> {
        each!(self, r => r.submit(req))
    }

    /// A finished read if one is ready, without blocking (submits queued reads first). An `Err` is a
    /// failure of the ring itself, not of a read.
    pub fn poll_complete(&mut self) -> io::Result<Option<Completion>> {
        each!(self, r => r.poll_complete())
    }

    /// The next finished read, waiting for one; `None` if nothing is in flight.
    pub fn wait_complete(&mut self) -> io::Result<Option<Completion>> {
        each!(self, r => r.wait_complete())
    }

    /// The valid bytes of a completion (empty for a failed read).
    pub fn data(&self, c: &Completion) -> &[u8] {
        let n = *c.result.as_ref().unwrap_or(&0);
        &self.pool().buf(&c.buf)[..n]
    }

    /// Gives a buffer back to the pool.
    pub fn release(&mut self, buf: BufIdx) {
        each!(self, r => r.core.pool.free(buf))
    }

    /// Takes a free buffer out of the reader's circulation for good (the sender's repair buffers): reads never
    /// use it again. `None` when every buffer is in use.
    pub fn reserve(&mut self) -> Option<BufIdx> {
        each!(self, r => r.core.pool.alloc())
    }

    /// A buffer's bytes to write into: one taken with [`DiskReader::reserve`] and filled by the caller
    /// (a fan-out session copying a chunk another session read).
    pub fn buf_mut(&mut self, buf: &BufIdx) -> &mut [u8] {
        each!(self, r => r.core.pool.buf_mut(buf))
    }

    /// The buffer pool (to read a buffer by its [`BufIdx`]).
    pub fn pool(&self) -> &BufferPool {
        each!(self, r => &r.core.pool)
    }

    /// Reads submitted and not yet returned by a poll.
    pub fn in_flight(&self) -> usize {
        each!(self, r => r.core.outstanding())
    }

    /// The largest read, in bytes.
    pub fn block_bytes(&self) -> usize {
        self.pool().buf_bytes()
    }
}

/// Restores request order: holds completions until every earlier `req_id` has been popped.
///
/// Request ids must be consecutive from `first_req_id`; `capacity` must be at least the number of reads
/// that can be outstanding at once (the reader's buffer count, since each holds a buffer), which keeps
/// every held id inside a window of `capacity` and lets a fixed array replace a map.
pub struct InOrder {
    slots: Vec<Option<Completion>>,
    next_req_id: u64,
}

impl InOrder {
    /// An empty window expecting `first_req_id` next.
    pub fn new(capacity: usize, first_req_id: u64) -> InOrder {
        assert!(capacity > 0, "InOrder needs a capacity");
        InOrder { slots: (0..capacity).map(|_| None).collect(), next_req_id: first_req_id }
    }

    /// Holds a completion until its turn.
    pub fn insert(&mut self, c: Completion) {
        let cap = self.slots.len() as u64;
        assert!(
            c.req_id >= self.next_req_id && c.req_id - self.next_req_id < cap,
            "req_id {} outside the window {}..{}",
            c.req_id,
            self.next_req_id,
            self.next_req_id + cap
        );
        let slot = &mut self.slots[(c.req_id % cap) as usize];
        assert!(slot.is_none(), "req_id {} inserted twice", c.req_id);
        *slot = Some(c);
    }

    /// The next completion in request order, if it has arrived.
    pub fn pop(&mut self) -> Option<Completion> {
        let cap = self.slots.len() as u64;
        let c = self.slots[(self.next_req_id % cap) as usize].take()?;
        self.next_req_id += 1;
        Some(c)
    }

    /// The `req_id` [`InOrder::pop`] returns next.
    pub fn next_req_id(&self) -> u64 {
        self.next_req_id
    }
}

fn warn_fallback(why: &str) {
    warn_fallback_named("reading", why);
}

/// The one warning per process that io_uring is not used, with its reason.
pub(crate) fn warn_fallback_named(activity: &str, why: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        let calls = if activity == "reading" { "pread" } else { "pwrite" };
        eprintln!(
            "mover: warning: io_uring unavailable, {activity} files with {calls} instead: {why} \
             (set {BACKEND_ENV}=pread to choose positional I/O without this warning)"
        );
    }
}

/// Rounds up to a multiple of [`ALIGN_BYTES`].
fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN_BYTES) * ALIGN_BYTES
}

// ---------------------------------------------------------------------------------------------------------
// What both backends share: the pool, the open files and the slab of reads.

/// One read between `submit` and its delivery. `user_data` of its io_uring operation is its slab index.
struct Slot {
    req_id: u64,
    file: FileId,
    offset: u64,
    /// Bytes asked for.
    len: u32,
    /// Bytes the kernel is asked for: `len`, rounded up to 4096 for O_DIRECT.
    read_len: u32,
    /// Bytes read so far (a short read is continued from here).
    got: u32,
    /// errno of a failed read, 0 if none.
    errno: i32,
    /// The target buffer, owned by the read until its delivery. `None` only while the slot is free.
    buf: Option<BufIdx>,
}

/// What a read does after the kernel answered.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Finished (complete, end of file, or failed): deliver it.
    Done,
    /// Short or interrupted: read the rest (`Core::span`) again.
    Again,
}

pub(crate) struct Core {
    pool: BufferPool,
    files: FileTable,
    slots: Vec<Slot>,
    /// Free slab indices.
    free_slots: Vec<u32>,
    /// Slab indices of finished reads, in completion order, not yet delivered. Never exceeds the slab size.
    done: VecDeque<u32>,
}

impl Core {
    fn new(c: &ReaderConfig) -> Core {
        assert!(c.queue_depth > 0 && c.queue_depth <= 4096, "queue depth {} not in 1..=4096", c.queue_depth);
        assert!(c.buffers > 0 && c.buffers <= u16::MAX as u32, "buffers {} not in 1..=65535", c.buffers);
        assert!(c.block_bytes <= 1 << 30, "block size {} above 1 GiB", c.block_bytes);
        assert!(c.max_open_files > 0, "max_open_files must be positive");
        let qd = c.queue_depth;
        Core {
            pool: BufferPool::new(c.buffers, c.block_bytes),
            files: FileTable::new(c.max_open_files),
            slots: (0..qd)
                .map(|_| Slot {
                    req_id: 0,
                    file: FileId(0),
                    offset: 0,
                    len: 0,
                    read_len: 0,
                    got: 0,
                    errno: 0,
                    buf: None,
                })
                .collect(),
            free_slots: (0..qd).rev().collect(),
            done: VecDeque::with_capacity(qd as usize),
        }
    }

    fn outstanding(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// Takes a slot and a buffer for `req`, or `Full`.
    fn begin(&mut self, req: ReadReq) -> Result<u32, Full> {
        let entry = self.files.get(req.file);
        let direct = entry.direct;
        assert!(
            req.len > 0 && req.len as usize <= self.pool.buf_bytes(),
            "read of {} bytes: the reader's blocks are 1..={} bytes",
            req.len,
            self.pool.buf_bytes()
        );
        assert!(
            !direct || req.offset % ALIGN_BYTES as u64 == 0,
            "O_DIRECT read of '{}' at offset {} (not a multiple of {ALIGN_BYTES})",
            entry.name,
            req.offset
        );
        if self.free_slots.is_empty() || self.pool.free_count() == 0 {
            return Err(Full);
        }
        let s = self.free_slots.pop().expect("checked above");
        let buf = self.pool.alloc().expect("checked above");
        self.files.get_mut(req.file).reads += 1;
        let read_len = if direct { align_up(req.len as usize) as u32 } else { req.len };
        self.slots[s as usize] = Slot {
            req_id: req.req_id,
            file: req.file,
            offset: req.offset,
            len: req.len,
            read_len,
            got: 0,
            errno: 0,
            buf: Some(buf),
        };
        Ok(s)
    }

    /// What is still to read for slot `s`: (fd, file offset, destination, length, buffer index).
    fn span(&self, s: u32) -> (RawFd, u64, *mut u8, u32, u16) {
        let slot = &self.slots[s as usize];
        let buf = slot.buf.as_ref().expect("span of a free slot");
        // Safety: got < read_len <= buf_bytes, so the pointer stays inside this slot's buffer.
        let dst = unsafe { self.pool.buf_ptr(buf).add(slot.got as usize) };
        let fd = self.files.get(slot.file).file.as_raw_fd();
        (fd, slot.offset + slot.got as u64, dst, slot.read_len - slot.got, buf.index() as u16)
    }

    /// Applies the kernel's answer (bytes read, or -errno) to slot `s`.
    fn advance(&mut self, s: u32, res: i32) -> Step {
        let direct = self.files.get(self.slots[s as usize].file).direct;
        let slot = &mut self.slots[s as usize];
        if res == -libc::EINTR || res == -libc::EAGAIN {
            return Step::Again;
        }
        if res < 0 {
            slot.errno = -res;
            return Step::Done;
        }
        if res == 0 {
            return Step::Done; // end of file
        }
        slot.got += res as u32;
        debug_assert!(slot.got <= slot.read_len);
        if slot.got >= slot.len {
            return Step::Done;
        }
        // O_DIRECT reads stop short only at end of file, then at an unaligned length; a buffered short read
        // may be a partial read, and the next read tells (0 at end of file).
        if direct && slot.got as usize % ALIGN_BYTES != 0 {
            return Step::Done;
        }
        Step::Again
    }

    fn finish(&mut self, s: u32) {
        assert!(self.done.len() < self.slots.len());
        // Never reallocates: capacity is the slab size and each slot is queued at most once.
        self.done.push_back(s);
    }

    /// The oldest finished read, its slot freed.
    fn pop_done(&mut self) -> Option<Completion> {
        let s = self.done.pop_front()?;
        let slot = &mut self.slots[s as usize];
        let buf = slot.buf.take().expect("a finished slot holds its buffer");
        let (req_id, file, offset, errno) = (slot.req_id, slot.file, slot.offset, slot.errno);
        let valid = slot.got.min(slot.len) as usize;
        self.free_slots.push(s);
        let entry = self.files.get_mut(file);
        entry.reads -= 1;
        let result = if errno == 0 {
            Ok(valid)
        } else {
            // The only allocation on this path, and only for a failed read.
            let e = io::Error::from_raw_os_error(errno);
            let hint =
                if entry.direct && errno == libc::EINVAL { " (O_DIRECT: the file system may refuse it)" } else { "" };
            Err(io::Error::new(e.kind(), format!("reading '{}' at offset {offset}: {e}{hint}", entry.name)))
        };
        Some(Completion { req_id, buf, result })
    }
}

struct OpenFile {
    file: File,
    direct: bool,
    /// How error messages name the file.
    name: String,
    /// Reads of this file submitted and not yet delivered (closing then would let the fd number be reused
    /// under a queued io_uring operation).
    reads: u32,
}

/// A fixed number of open files with a free list.
struct FileTable {
    entries: Vec<Option<OpenFile>>,
    free: Vec<u32>,
    warned_direct: bool,
}

impl FileTable {
    fn new(max_open: u32) -> FileTable {
        FileTable {
            entries: (0..max_open).map(|_| None).collect(),
            free: (0..max_open).rev().collect(),
            warned_direct: false,
        }
    }

    fn open(&mut self, open: &dyn Fn(i32) -> io::Result<File>, name: &str, direct: bool) -> io::Result<FileId> {
        let Some(&id) = self.free.last() else {
            return Err(io::Error::other(format!(
                "opening '{name}': the reader already has {} files open",
                self.entries.len()
            )));
        };
        let named = |e: io::Error| io::Error::new(e.kind(), format!("opening '{name}': {e}"));
        let (file, direct) = if direct {
            // The probe is the attempt: file systems without O_DIRECT (and some FUSE/network ones) refuse
            // the open with EINVAL.
            match open(libc::O_DIRECT) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    if !self.warned_direct {
                        self.warned_direct = true;
                        eprintln!(
                            "mover: warning: '{}': the file system refuses O_DIRECT ({e}); reading through the \
                             page cache (not repeated for other files)",
                            name
                        );
                    }
                    (open(0).map_err(named)?, false)
                }
                Err(e) => return Err(named(e)),
            }
        } else {
            (open(0).map_err(named)?, false)
        };
        if !direct {
            // Files are read front to back: ask for the larger readahead window (fio does the same by default,
            // `fadvise_hint`, so without it the cold buffered comparison is unfair). Only advice: a failure changes
            // nothing.
            // Safety: `file` is an open descriptor owned by this function; the call reads no memory of ours.
            let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        }
        self.free.pop();
        self.entries[id as usize] = Some(OpenFile { file, direct, name: name.to_string(), reads: 0 });
        Ok(FileId(id))
    }

    fn close(&mut self, f: FileId) -> io::Result<()> {
        let entry = self.get(f);
        if entry.reads > 0 {
            return Err(io::Error::other(format!(
                "closing '{}' with {} reads in flight or undelivered",
                entry.name, entry.reads
            )));
        }
        self.entries[f.0 as usize] = None;
        self.free.push(f.0);
        Ok(())
    }

    fn get(&self, f: FileId) -> &OpenFile {
        self.entries.get(f.0 as usize).and_then(Option::as_ref).unwrap_or_else(|| panic!("file {} is not open", f.0))
    }

    fn get_mut(&mut self, f: FileId) -> &mut OpenFile {
        self.entries
            .get_mut(f.0 as usize)
            .and_then(Option::as_mut)
            .unwrap_or_else(|| panic!("file {} is not open", f.0))
    }
}

#[cfg(test)]
mod tests;
