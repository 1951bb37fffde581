//! The io_uring backend: `READ_FIXED` into registered pool buffers, `user_data` = slab index.

use std::io;

use io_uring::{opcode, register::Probe, types, IoUring};

use super::{Completion, Core, Full, ReadReq, Region, Step};

/// [`super::DiskReader`]'s io_uring backend.
///
/// Discipline (ENGINEERING.md §8): every operation is a slot of the slab and carries the slot's index as
/// `user_data`; the slot owns its buffer until the operation's completion is reaped; a full submission queue
/// is flushed and the push retried; opcodes and buffer registration are probed in `new`, and a failure
/// names the cause and the fix.
pub struct UringReader {
    // Declared before `core`: the ring (and with it the buffer registration) goes before the pool's memory.
    ring: IoUring,
    pub(super) core: Core,
    /// Operations in the submission queue not yet handed to the kernel.
    queued: u32,
    /// Operations handed to the kernel (or queued) whose completion has not been reaped.
    in_kernel: u32,
}

impl UringReader {
    /// A reader over a ring from [`setup`] that registered `core`'s pool.
    pub(crate) fn new(ring: IoUring, core: Core) -> UringReader {
        UringReader { ring, core, queued: 0, in_kernel: 0 }
    }

    pub(super) fn submit(&mut self, req: ReadReq) -> Result<(), Full> {
        let s = self.core.begin(req)?;
        self.push(s);
        Ok(())
    }

    pub(super) fn poll_complete(&mut self) -> io::Result<Option<Completion>> {
        // Hand queued reads to the kernel before delivering anything, so that the kernel's queue stays full
        // while the caller drains finished ones.
        if self.queued > 0 {
            self.enter(0)?;
        }
        self.reap();
        Ok(self.core.pop_done())
    }

    pub(super) fn wait_complete(&mut self) -> io::Result<Option<Completion>> {
        loop {
            if let Some(c) = self.poll_complete()? {
                return Ok(Some(c));
            }
            if self.in_kernel == 0 {
                return Ok(None);
            }
            self.enter(1)?;
            self.reap();
        }
    }

    /// Queues the rest of slot `s`'s read.
    fn push(&mut self, s: u32) {
        let (fd, offset, dst, len, buf_index) = self.core.span(s);
        let sqe =
            opcode::ReadFixed::new(types::Fd(fd), dst, len, buf_index).offset(offset).build().user_data(u64::from(s));
        loop {
            // Safety: the operation writes `len` bytes at `dst`, inside registered buffer `buf_index`, which slot
            // `s` owns (its `BufIdx` stays in the slot) until `reap` sees this `user_data` complete; the pool
            // outlives the ring (field order, and `Drop` waits for every operation). The fd stays open:
            // `close` refuses while the slot counts a read of its file.
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                break;
            }
            // A full submission queue: hand it to the kernel and retry.
            if let Err(e) = self.enter(0) {
                panic!("io_uring_enter failed while flushing a full submission queue: {e}");
            }
        }
        self.queued += 1;
        self.in_kernel += 1;
    }

    /// Submits the queued operations and waits for `want` completions, retrying on EINTR.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        enter(&mut self.ring, want, &mut self.queued)
    }

    /// Moves every available completion into its slot; continues short reads.
    fn reap(&mut self) {
        loop {
            let Some(cqe) = self.ring.completion().next() else { return };
            let s = u32::try_from(cqe.user_data()).expect("user_data is a slab index");
            assert!((s as usize) < self.core.slots.len(), "completion for unknown slot {s}");
            self.in_kernel -= 1;
            match self.core.advance(s, cqe.result()) {
                Step::Done => self.core.finish(s),
                Step::Again => self.push(s),
            }
        }
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        // The kernel may still write into the pool: wait for every operation before the memory goes.
        while self.in_kernel > 0 {
            if self.enter(1).is_err() {
                // Cannot wait: never free memory the kernel may still write.
                self.core.pool.leak();
                return;
            }
            while let Some(cqe) = self.ring.completion().next() {
                let _ = cqe;
                self.in_kernel -= 1;
            }
        }
    }
}

/// Submits `ring`'s queued operations (`queued` counts them down) and waits for `want` completions, retrying
/// on EINTR; a busy completion queue with nothing to wait for is not an error (reaping makes room).
pub(crate) fn enter(ring: &mut IoUring, want: usize, queued: &mut u32) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(want) {
            Ok(n) => {
                *queued = queued.saturating_sub(n as u32);
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && want == 0 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Builds the ring for a reader, probes `READ_FIXED` and registers the pool. The error says why and what to do.
pub(crate) fn setup(core: &Core, queue_depth: u32) -> Result<IoUring, String> {
    setup_for(core.pool.region(), queue_depth, opcode::ReadFixed::CODE, "READ_FIXED")
}

/// Builds a ring of at least `queue_depth` entries, checks that the kernel knows `opcode_code` and registers
/// every buffer of `region`. The error says why and what to do.
pub(crate) fn setup_for(
    region: &Region,
    queue_depth: u32,
    opcode_code: u8,
    opcode_name: &str,
) -> Result<IoUring, String> {
    let ring = build_ring(queue_depth)?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring opcode probe: {e} (hint: the kernel is older than 5.6; use Linux 5.6+)"))?;
    if !probe.is_supported(opcode_code) {
        return Err(format!("the kernel's io_uring lacks {opcode_name} (hint: use Linux 5.6 or newer)"));
    }
    let iovecs = region.iovecs();
    // Safety: each iovec spans one buffer of `region`, whose allocation is never moved and is freed only after
    // the ring is dropped (the owners hold the region's `Arc` and drop the ring first; their `Drop` waits for
    // in-flight operations).
    unsafe { ring.submitter().register_buffers(&iovecs) }.map_err(|e| {
        let mib = (region.count() as usize * region.buf_bytes()) >> 20;
        match e.raw_os_error() {
            Some(libc::ENOMEM) => format!(
                "registering {mib} MiB of I/O buffers: {e} (hint: raise the locked-memory limit, `ulimit -l` \
                 or LimitMEMLOCK=, run with CAP_IPC_LOCK, or use a smaller queue depth or block size)"
            ),
            _ => format!("registering {mib} MiB of I/O buffers: {e}"),
        }
    })?;
    Ok(ring)
}

/// Sets up a ring of at least `queue_depth` entries; the error says why it failed and what to do (kernel
/// version, `kernel.io_uring_disabled`, a seccomp profile, the locked-memory limit).
pub(crate) fn build_ring(queue_depth: u32) -> Result<IoUring, String> {
    let entries = queue_depth.next_power_of_two();
    IoUring::builder().build(entries).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => format!(
            "io_uring_setup: {e}; the kernel is older than 5.1 or built without io_uring (hint: Linux 5.6 or newer)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "io_uring_setup: {e}; io_uring is disabled for this process (hint: `sysctl kernel.io_uring_disabled` is \
             {}: 0 allows it; or a seccomp profile, e.g. a container runtime's, blocks it)",
            std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unreadable".into())
        ),
        Some(libc::ENOMEM) => {
            format!("io_uring_setup: {e} (hint: raise the locked-memory limit, `ulimit -l`, or use Linux 5.12+)")
        }
        _ => format!("io_uring_setup: {e}"),
    })
}
