//! The writer stage's engine: pooled buffers written at file offsets, many writes in flight.
//!
//! The mirror of [`super::DiskReader`]: io_uring `WRITE_FIXED` from registered buffers of a shared
//! [`Region`] (the stage that fills the buffers holds the same region), or positional writes (`pwrite`)
//! where io_uring is unavailable. One [`DiskWriter`] lives on one thread and allocates nothing per write.
//!
//! # Call order
//! 1. [`DiskWriter::new`] picks the backend, probes io_uring and registers the region's buffers.
//! 2. [`DiskWriter::submit`] [`WriteReq`]s until it answers [`Full`]; the request's buffer and descriptor belong
//!    to the write until its completion is returned.
//! 3. [`DiskWriter::poll_complete`] / [`DiskWriter::wait_complete`] return [`WriteDone`]s in completion order.
//!    A short write is continued inside the engine, so a completion is the whole length or an error.

use super::uring::{enter, setup_for};
use super::{warn_fallback_named, BackendChoice, DiskBackend, Full, Region};
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// One write: `len` bytes of buffer `buf` (a raw index into the writer's region) to `fd` at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReq {
    /// The caller's name for this write, returned in its [`WriteDone`].
    pub req_id: u64,
    /// The open file; it must stay open until the completion.
    pub fd: RawFd,
    /// Byte offset in the file.
    pub offset: u64,
    /// Raw buffer index; the write owns the buffer until its completion.
    pub buf: u32,
    /// Bytes to write, 1 ..= the region's buffer size.
    pub len: u32,
}

/// A finished write. Its buffer belongs to the receiver of this value again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteDone {
    /// The request's `req_id`.
    pub req_id: u64,
    /// The buffer's raw index.
    pub buf: u32,
    /// `Ok(len)` when every byte was written, or the errno of the failure.
    pub result: Result<u32, i32>,
}

/// One write between `submit` and its delivery; `user_data` of its io_uring operation is its slab index.
#[derive(Clone, Copy, Default)]
struct Slot {
    req: Option<WriteReq>,
    written: u32,
    errno: i32,
}

/// The writer engine; see the [module documentation](self).
pub struct DiskWriter {
    // Declared before `region`: the ring (and with it the buffer registration) goes before the memory.
    ring: Option<IoUring>,
    region: Arc<Region>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Finished slots in completion order, not yet delivered (never more than the slab size).
    done: VecDeque<u32>,
    queued: u32,
    in_kernel: u32,
}

impl DiskWriter {
    /// A writer of `region`'s buffers with up to `queue_depth` writes in flight. With [`BackendChoice::Auto`]
    /// an unusable io_uring falls back to `pwrite` with one warning naming the reason.
    pub fn new(region: Arc<Region>, backend: BackendChoice, queue_depth: u32) -> io::Result<DiskWriter> {
        assert!((1..=4096).contains(&queue_depth), "queue depth {queue_depth} not in 1..=4096");
        let ring = match backend {
            BackendChoice::Force(DiskBackend::Pread) => None,
            choice => match setup_for(&region, queue_depth, opcode::WriteFixed::CODE, "WRITE_FIXED") {
                Ok(ring) => Some(ring),
                Err(why) if choice == BackendChoice::Force(DiskBackend::IoUring) => {
                    return Err(io::Error::other(format!("io_uring unavailable: {why}")))
                }
                Err(why) => {
                    warn_fallback_named("writing", &why);
                    None
                }
            },
        };
        Ok(DiskWriter {
            ring,
            region,
            slots: vec![Slot::default(); queue_depth as usize],
            free_slots: (0..queue_depth).rev().collect(),
            done: VecDeque::with_capacity(queue_depth as usize),
            queued: 0,
            in_kernel: 0,
        })
    }

    /// The backend in use (`Pread` names the positional fallback, `pwrite` here).
    pub fn backend(&self) -> DiskBackend {
        if self.ring.is_some() {
            DiskBackend::IoUring
        } else {
            DiskBackend::Pread
        }
    }

    /// Writes submitted and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// Queues a write (or, with `pwrite`, performs it), or answers [`Full`] when every slot is busy. Panics on a
    /// programmer error: `len` 0 or above the buffer size, a buffer outside the region.
    pub fn submit(&mut self, req: WriteReq) -> Result<(), Full> {
        assert!(
            req.len > 0 && req.len as usize <= self.region.buf_bytes() && req.buf < self.region.count(),
            "write of {} bytes from buffer {}: the region has {} buffers of {} bytes",
            req.len,
            req.buf,
            self.region.count(),
            self.region.buf_bytes()
        );
        let Some(s) = self.free_slots.pop() else { return Err(Full) };
        self.slots[s as usize] = Slot { req: Some(req), written: 0, errno: 0 };
        if self.ring.is_some() {
            self.push(s);
        } else {
            self.pwrite_all(s);
            self.done.push_back(s);
        }
        Ok(())
    }

    /// A finished write if one is ready, without blocking (queued writes are handed to the kernel first).
    /// An `Err` is a failure of the ring itself, not of a write.
    pub fn poll_complete(&mut self) -> io::Result<Option<WriteDone>> {
        if self.queued > 0 {
            self.enter(0)?;
        }
        self.reap();
        Ok(self.pop_done())
    }

    /// The next finished write, waiting for one; `None` if nothing is in flight.
    pub fn wait_complete(&mut self) -> io::Result<Option<WriteDone>> {
        loop {
            if let Some(c) = self.poll_complete()? {
                return Ok(Some(c));
            }
            if self.in_kernel == 0 {
                return Ok(None);
            }
            self.enter(1)?;
        }
    }

    fn pop_done(&mut self) -> Option<WriteDone> {
        let s = self.done.pop_front()?;
        let slot = std::mem::take(&mut self.slots[s as usize]);
        self.free_slots.push(s);
        let req = slot.req.expect("a finished slot holds its request");
        let result = if slot.errno == 0 { Ok(slot.written) } else { Err(slot.errno) };
        Some(WriteDone { req_id: req.req_id, buf: req.buf, result })
    }

    /// What remains of slot `s`: (fd, file offset, source, length).
    fn span(&self, s: u32) -> (RawFd, u64, *const u8, u32) {
        let slot = &self.slots[s as usize];
        let req = slot.req.expect("span of a free slot");
        // Safety: written < len <= buf_bytes, so the pointer stays inside the request's buffer.
        let src = unsafe { self.region.ptr(req.buf).add(slot.written as usize) };
        (req.fd, req.offset + slot.written as u64, src, req.len - slot.written)
    }

    /// Applies the kernel's answer (bytes written or -errno); true when the write is finished.
    fn advance(&mut self, s: u32, res: i64) -> bool {
        let slot = &mut self.slots[s as usize];
        let len = slot.req.expect("advance of a free slot").len;
        match res {
            r if r == -(libc::EINTR as i64) || r == -(libc::EAGAIN as i64) => false,
            r if r < 0 => {
                slot.errno = -r as i32;
                true
            }
            // No progress on a non-empty write: the device or file system will not take more.
            0 => {
                slot.errno = libc::EIO;
                true
            }
            r => {
                slot.written += r as u32;
                debug_assert!(slot.written <= len);
                slot.written >= len
            }
        }
    }

    fn pwrite_all(&mut self, s: u32) {
        loop {
            let (fd, offset, src, len) = self.span(s);
            // Safety: `src` points at `len` readable bytes of the request's buffer, which the write owns.
            let rc = unsafe { libc::pwrite(fd, src.cast(), len as usize, offset as libc::off_t) };
            let res = if rc < 0 {
                -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
            } else {
                rc as i64
            };
            if self.advance(s, res) {
                return;
            }
        }
    }

    fn push(&mut self, s: u32) {
        let (fd, offset, src, len) = self.span(s);
        let buf_index = self.slots[s as usize].req.expect("pushed slot holds a request").buf as u16;
        let sqe =
            opcode::WriteFixed::new(types::Fd(fd), src, len, buf_index).offset(offset).build().user_data(u64::from(s));
        let ring = self.ring.as_mut().expect("push without a ring");
        loop {
            // Safety: the operation reads `len` bytes at `src`, inside registered buffer `buf_index`, which slot
            // `s` owns until `reap` sees this `user_data` complete; the region outlives the ring (field order,
            // and `Drop` waits for every operation); the caller keeps `fd` open until the completion.
            if unsafe { ring.submission().push(&sqe) }.is_ok() {
                break;
            }
            // A full submission queue: hand it to the kernel and retry.
            if let Err(e) = ring.submit() {
                panic!("io_uring_enter failed while flushing a full submission queue: {e}");
            }
            self.queued = 0;
        }
        self.queued += 1;
        self.in_kernel += 1;
    }

    fn enter(&mut self, want: usize) -> io::Result<()> {
        enter(self.ring.as_mut().expect("enter without a ring"), want, &mut self.queued)
    }

    fn reap(&mut self) {
        loop {
            let Some(ring) = self.ring.as_mut() else { return };
            let Some(cqe) = ring.completion().next() else { return };
            let s = u32::try_from(cqe.user_data()).expect("user_data is a slab index");
            assert!((s as usize) < self.slots.len(), "completion for unknown slot {s}");
            self.in_kernel -= 1;
            if self.advance(s, cqe.result() as i64) {
                assert!(self.done.len() < self.slots.len());
                self.done.push_back(s);
            } else {
                self.push(s);
            }
        }
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        // The kernel may still read the region: wait for every operation before the registration goes.
        while self.in_kernel > 0 {
            if self.enter(1).is_err() {
                self.region.leak();
                return;
            }
            while let Some(cqe) = self.ring.as_mut().and_then(|r| r.completion().next()) {
                let _ = cqe;
                self.in_kernel -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::BufferPool;
    use std::os::fd::AsRawFd;

    fn write_pattern(backend: DiskBackend) {
        let dir = crate::testing::TempDir::new("writer");
        let path = dir.path().join("out.bin");
        let file = std::fs::File::create(&path).unwrap();
        let mut pool = BufferPool::new(8, 64 << 10);
        let mut w = DiskWriter::new(pool.region().clone(), BackendChoice::Force(backend), 4).unwrap();
        assert_eq!(w.backend(), backend);
        let total = 20u64;
        let mut expected = vec![0u8; (total * 50_000) as usize];
        let mut next = 0u64;
        let mut done = 0u64;
        let mut owned: Vec<Option<crate::disk::BufIdx>> = (0..8).map(|_| None).collect();
        // Writes in reverse order of offset, more than the queue depth, buffers recycled through completions.
        while done < total {
            while next < total {
                let Some(b) = pool.alloc() else { break };
                let k = total - 1 - next;
                let bytes = pool.buf_mut(&b);
                for (i, x) in bytes[..50_000].iter_mut().enumerate() {
                    *x = (k as usize * 7 + i) as u8;
                }
                expected[(k * 50_000) as usize..][..50_000].copy_from_slice(&bytes[..50_000]);
                let req = WriteReq { req_id: k, fd: file.as_raw_fd(), offset: k * 50_000, buf: b.index(), len: 50_000 };
                if w.submit(req).is_err() {
                    pool.free(b);
                    break;
                }
                let i = b.index() as usize;
                owned[i] = Some(b);
                next += 1;
            }
            let c = w.wait_complete().unwrap().expect("writes in flight");
            assert_eq!(c.result, Ok(50_000));
            pool.free(owned[c.buf as usize].take().unwrap());
            done += 1;
        }
        assert!(w.wait_complete().unwrap().is_none());
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn io_uring_writes_land_at_their_offsets() {
        match DiskWriter::new(BufferPool::new(1, 4096).region().clone(), BackendChoice::Auto, 1) {
            Ok(w) if w.backend() == DiskBackend::IoUring => write_pattern(DiskBackend::IoUring),
            _ => crate::testing::skip_or_fail("io_uring_writes_land_at_their_offsets", "io_uring unavailable here"),
        }
    }

    #[test]
    fn pwrite_fallback_writes_the_same() {
        write_pattern(DiskBackend::Pread);
    }

    #[test]
    fn a_failed_write_reports_its_errno() {
        let dir = crate::testing::TempDir::new("writer-err");
        let path = dir.path().join("ro.bin");
        std::fs::write(&path, b"x").unwrap();
        let ro = std::fs::File::open(&path).unwrap();
        let pool = BufferPool::new(1, 4096);
        for backend in [DiskBackend::Pread, DiskBackend::IoUring] {
            let Ok(mut w) = DiskWriter::new(pool.region().clone(), BackendChoice::Force(backend), 2) else { continue };
            w.submit(WriteReq { req_id: 9, fd: ro.as_raw_fd(), offset: 0, buf: 0, len: 100 }).unwrap();
            let c = w.wait_complete().unwrap().unwrap();
            assert_eq!((c.req_id, c.result), (9, Err(libc::EBADF)), "{backend:?}");
        }
    }
}
