//! [`BufferPool`]: one aligned allocation of equal read buffers, named by index.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every buffer, and the unit of O_DIRECT offsets and lengths (covers 512-byte and 4 KiB
/// logical blocks).
pub const ALIGN_BYTES: usize = 4096;

/// Transparent huge page size (x86-64, arm64 with 4 KiB pages).
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// The name of one buffer of a [`BufferPool`].
///
/// Deliberately neither `Copy` nor `Clone`: holding the `BufIdx` *is* owning the buffer. It is created only by
/// [`BufferPool::alloc`] and consumed by [`BufferPool::free`], so at any moment each buffer has exactly one
/// owner: the free list, an in-flight read (which the kernel may be writing into), or the code that received
/// it in a completion.
#[derive(Debug, PartialEq, Eq)]
pub struct BufIdx(u32);

impl BufIdx {
    /// The buffer's position in its pool (also its io_uring registered-buffer index).
    pub fn index(&self) -> u32 {
        self.0
    }
}

/// `count` buffers of `buf_bytes` each, in one allocation aligned to [`ALIGN_BYTES`], with a free list.
///
/// **One-owner rule:** a buffer may be read or written only by whoever holds its [`BufIdx`]; the pool hands
/// out slices only in exchange for a borrowed `BufIdx`, and while a read is in flight the reader keeps the
/// `BufIdx` (and with it the only right to touch the bytes) until the kernel's completion arrives. The pool
/// never allocates after [`BufferPool::new`].
pub struct BufferPool {
    base: NonNull<u8>,
    layout: Layout,
    buf_bytes: usize,
    count: u32,
    /// Indices of free buffers (a stack: the most recently freed buffer is reused first, still warm in cache).
    free: Vec<u32>,
    /// Set when the memory may still be the target of a kernel write that could not be waited for.
    leaked: bool,
}

// Safety: the pool owns its allocation exclusively (no aliases outside `BufIdx`-guarded accessors), so moving it
// to another thread moves the only access to that memory with it.
unsafe impl Send for BufferPool {}

impl BufferPool {
    /// Allocates `count` buffers of `buf_bytes` (a non-zero multiple of [`ALIGN_BYTES`]), all free.
    pub fn new(count: u32, buf_bytes: usize) -> BufferPool {
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
        BufferPool { base, layout, buf_bytes, count, free: (0..count).rev().collect(), leaked: false }
    }

    /// Bytes per buffer.
    pub fn buf_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Number of buffers.
    pub fn count(&self) -> u32 {
        self.count
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
        assert!(buf.0 < self.count, "buffer {} is not from this pool", buf.0);
        debug_assert!(!self.free.contains(&buf.0), "buffer {} freed twice", buf.0);
        // Never grows: at most `count` indices exist, and the Vec was built with all of them.
        self.free.push(buf.0);
    }

    /// The bytes of a buffer the caller owns.
    pub fn buf(&self, buf: &BufIdx) -> &[u8] {
        // Safety: `buf_ptr` checks the index; the region lies inside the allocation, and holding `&BufIdx`
        // means no in-flight read targets it (the one-owner rule), so nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.buf_ptr(buf), self.buf_bytes) }
    }

    /// The bytes of a buffer the caller owns, writable.
    pub fn buf_mut(&mut self, buf: &BufIdx) -> &mut [u8] {
        // Safety: as in `buf`; `&mut self` excludes any other slice of the pool for the borrow's duration.
        unsafe { std::slice::from_raw_parts_mut(self.buf_ptr(buf), self.buf_bytes) }
    }

    /// The start of a buffer, for handing to the kernel (io_uring `ReadFixed`).
    pub(crate) fn buf_ptr(&self, buf: &BufIdx) -> *mut u8 {
        assert!(buf.0 < self.count, "buffer {} is not from this pool", buf.0);
        // Safety: index < count, so the offset stays inside the allocation.
        unsafe { self.base.as_ptr().add(buf.0 as usize * self.buf_bytes) }
    }

    /// One `iovec` per buffer, in index order, for `register_buffers`.
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count)
            .map(|i| libc::iovec {
                // Safety: i < count, inside the allocation.
                iov_base: unsafe { self.base.as_ptr().add(i as usize * self.buf_bytes) }.cast(),
                iov_len: self.buf_bytes,
            })
            .collect()
    }

    /// Keeps the memory allocated forever: used when a kernel write into it could not be waited for.
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // Safety: `base` came from `alloc(self.layout)` and is freed once, here.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("count", &self.count)
            .field("buf_bytes", &self.buf_bytes)
            .field("free", &self.free.len())
            .finish()
    }
}
