//! [`BufferPool`]: one aligned allocation of equal I/O buffers, named by index; its [`Region`] may be shared
//! with the stage on the other side of a ring.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Alignment of every buffer, and the unit of O_DIRECT offsets and lengths (covers 512-byte and 4 KiB
/// logical blocks).
pub const ALIGN_BYTES: usize = 4096;

/// Transparent huge page size (x86-64, arm64 with 4 KiB pages).
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// The name of one buffer of a [`BufferPool`].
///
/// Deliberately neither `Copy` nor `Clone`: holding the `BufIdx` *is* owning the buffer. It is created only by
/// [`BufferPool::alloc`] and consumed by [`BufferPool::free`], so at any moment each buffer has exactly one
/// owner: the free list, an in-flight read or write (which the kernel may be touching), or the code that
/// received it. Between pipeline stages it travels through a ring as its raw index ([`BufIdx::into_raw`],
/// [`BufIdx::from_raw`]): the ring slot is then the one owner.
#[derive(Debug, PartialEq, Eq)]
pub struct BufIdx(u32);

impl BufIdx {
    /// The buffer's position in its pool (also its io_uring registered-buffer index).
    pub fn index(&self) -> u32 {
        self.0
    }

    /// Gives up the token for its raw index, to pass it through a ring to another stage.
    pub fn into_raw(self) -> u32 {
        self.0
    }

    /// Takes ownership back from a raw index.
    ///
    /// # Safety
    /// `raw` must come from [`BufIdx::into_raw`] of a token of the pool it will be used with, and be
    /// turned back into a token exactly once (so that one owner exists at a time).
    pub unsafe fn from_raw(raw: u32) -> BufIdx {
        BufIdx(raw)
    }
}

/// The memory of a [`BufferPool`]: `count` buffers of `buf_bytes`, aligned, shared by reference count so that
/// a stage on another thread can read or fill a buffer it was handed by index.
///
/// It has no free list and no notion of ownership: access goes through the `unsafe` accessors, whose contract
/// is the one-owner rule (only the holder of a buffer's [`BufIdx`], or of its raw index taken from a ring,
/// touches its bytes).
pub struct Region {
    base: NonNull<u8>,
    layout: Layout,
    buf_bytes: usize,
    count: u32,
    /// Set when the memory may still be the target of a kernel operation that could not be waited for.
    leaked: AtomicBool,
}

// Safety: the region's bytes are only reached through the unsafe accessors below, whose callers promise the
// one-owner rule (one thread touches one buffer at a time, hand-offs go through rings whose Release/Acquire
// edges order the accesses), so sharing the handle between threads creates no data race.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    fn new(count: u32, buf_bytes: usize) -> Region {
        assert!(count > 0, "a buffer pool needs at least one buffer");
        assert!(
            buf_bytes > 0 && buf_bytes % ALIGN_BYTES == 0,
            "buffer size {buf_bytes} must be a non-zero multiple of {ALIGN_BYTES}"
        );
        let total = buf_bytes.checked_mul(count as usize).expect("buffer pool size overflows");
        // Pools of 2 MiB or more are aligned for transparent huge pages and asked to use them: a registered
        // buffer backed by huge pages reaches the block layer as a few large segments rather than 4 KiB ones.
        let align = if total >= HUGE_PAGE_BYTES { HUGE_PAGE_BYTES } else { ALIGN_BYTES };
        let layout = Layout::from_size_align(total, align).expect("buffer pool layout");
        // Safety: `layout` has a non-zero size (count > 0, buf_bytes > 0).
        let ptr = unsafe { alloc::alloc(layout) };
        let Some(base) = NonNull::new(ptr) else { alloc::handle_alloc_error(layout) };
        if align == HUGE_PAGE_BYTES {
            // Advice only (THP may be off): the pool works either way. Given before the first touch below.
            // Safety: the range is our own fresh allocation; madvise reads no memory.
            let _ = unsafe { libc::madvise(base.as_ptr().cast(), total, libc::MADV_HUGEPAGE) };
        }
        // Safety: `base` points to `total` writable bytes just allocated; zeroing also faults the pages in now
        // rather than on the first read.
        unsafe { std::ptr::write_bytes(base.as_ptr(), 0, total) };
        Region { base, layout, buf_bytes, count, leaked: AtomicBool::new(false) }
    }

    /// Bytes per buffer.
    pub fn buf_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Number of buffers.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The start of buffer `index`, for handing to the kernel.
    pub fn ptr(&self, index: u32) -> *mut u8 {
        assert!(index < self.count, "buffer {index} is not from this pool");
        // Safety: index < count, so the offset stays inside the allocation.
        unsafe { self.base.as_ptr().add(index as usize * self.buf_bytes) }
    }

    /// The bytes of buffer `index`.
    ///
    /// # Safety
    /// The caller owns the buffer (holds its [`BufIdx`] or its raw index taken from a ring) and nothing writes
    /// it for the lifetime of the slice (no kernel read into it is in flight).
    pub unsafe fn bytes(&self, index: u32) -> &[u8] {
        // Safety: `ptr` checks the index; the region lies inside the allocation; the caller excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr(index), self.buf_bytes) }
    }

    /// The bytes of buffer `index`, writable.
    ///
    /// # Safety
    /// As for [`Region::bytes`], and no other slice of this buffer is alive for the lifetime of this one.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, index: u32) -> &mut [u8] {
        // Safety: as in `bytes`; the caller guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(index), self.buf_bytes) }
    }

    /// One `iovec` per buffer, in index order, for `register_buffers`.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count).map(|i| libc::iovec { iov_base: self.ptr(i).cast(), iov_len: self.buf_bytes }).collect()
    }

    /// Keeps the memory allocated forever: used when a kernel operation on it could not be waited for.
    pub(crate) fn leak(&self) {
        self.leaked.store(true, Ordering::Relaxed);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.leaked.load(Ordering::Relaxed) {
            return;
        }
        // Safety: `base` came from `alloc(self.layout)` and is freed once, here.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// `count` buffers of `buf_bytes` each, in one allocation aligned to [`ALIGN_BYTES`], with a free list.
///
/// **One-owner rule:** a buffer may be read or written only by whoever holds its [`BufIdx`]; the pool hands
/// out slices only in exchange for a borrowed `BufIdx`, and while a read is in flight the reader keeps the
/// `BufIdx` (and with it the only right to touch the bytes) until the kernel's completion arrives. The pool
/// never allocates after [`BufferPool::new`]. Its memory ([`BufferPool::region`]) may be shared with stages
/// on other threads, which then follow the same rule by raw index.
pub struct BufferPool {
    region: Arc<Region>,
    /// Indices of free buffers (a stack: the most recently freed buffer is reused first, still warm in cache).
    free: Vec<u32>,
}

impl BufferPool {
    /// Allocates `count` buffers of `buf_bytes` (a non-zero multiple of [`ALIGN_BYTES`]), all free.
    pub fn new(count: u32, buf_bytes: usize) -> BufferPool {
        BufferPool { region: Arc::new(Region::new(count, buf_bytes)), free: (0..count).rev().collect() }
    }

    /// The pool's memory, to share with another stage.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Bytes per buffer.
    pub fn buf_bytes(&self) -> usize {
        self.region.buf_bytes
    }

    /// Number of buffers.
    pub fn count(&self) -> u32 {
        self.region.count
    }

    /// Number of free buffers.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Takes a free buffer, or `None` if all are owned elsewhere.
    pub fn alloc(&mut self) -> Option<BufIdx> {
        self.free.pop().map(BufIdx)
    }

    /// Returns a buffer to the free list.
    pub fn free(&mut self, buf: BufIdx) {
        assert!(buf.0 < self.count(), "buffer {} is not from this pool", buf.0);
        debug_assert!(!self.free.contains(&buf.0), "buffer {} freed twice", buf.0);
        // Never grows: at most `count` indices exist, and the Vec was built with all of them.
        self.free.push(buf.0);
    }

    /// The bytes of a buffer the caller owns.
    pub fn buf(&self, buf: &BufIdx) -> &[u8] {
        // Safety: holding `&BufIdx` means the caller owns the buffer and no in-flight read targets it.
        unsafe { self.region.bytes(buf.0) }
    }

    /// The bytes of a buffer the caller owns, writable.
    pub fn buf_mut(&mut self, buf: &BufIdx) -> &mut [u8] {
        // Safety: as in `buf`; `&mut self` excludes any other slice handed out by this pool meanwhile.
        unsafe { self.region.bytes_mut(buf.0) }
    }

    /// The start of a buffer, for handing to the kernel (io_uring `ReadFixed`).
    pub(crate) fn buf_ptr(&self, buf: &BufIdx) -> *mut u8 {
        self.region.ptr(buf.0)
    }

    /// Keeps the memory allocated forever: used when a kernel write into it could not be waited for.
    pub(crate) fn leak(&mut self) {
        self.region.leak();
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("count", &self.count())
            .field("buf_bytes", &self.buf_bytes())
            .field("free", &self.free.len())
            .finish()
    }
}
