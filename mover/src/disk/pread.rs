//! The fallback backend: positional reads, each finished inside `submit`.

use std::io;

use super::{Completion, Core, Full, ReadReq, Step};

/// [`super::DiskReader`]'s `pread` backend: same interface, one read at a time. A read runs to completion in
/// `submit` (short reads continued, EINTR retried) and waits in the done queue for a poll.
pub struct PreadReader {
    pub(super) core: Core,
}

impl PreadReader {
    pub(crate) fn new(core: Core) -> PreadReader {
        PreadReader { core }
    }

    pub(super) fn submit(&mut self, req: ReadReq) -> Result<(), Full> {
        let s = self.core.begin(req)?;
        loop {
            let (fd, offset, dst, len, _) = self.core.span(s);
            // Safety: `dst..dst+len` lies inside the buffer owned by slot `s` (see `Core::span`), which nothing
            // else references until the slot is delivered; the call returns before we touch it again.
            let n = unsafe { libc::pread(fd, dst.cast(), len as usize, offset as libc::off_t) };
            let res = if n < 0 { -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) } else { n as i32 };
            if self.core.advance(s, res) == Step::Done {
                break;
            }
        }
        self.core.finish(s);
        Ok(())
    }

    pub(super) fn poll_complete(&mut self) -> io::Result<Option<Completion>> {
        Ok(self.core.pop_done())
    }

    pub(super) fn wait_complete(&mut self) -> io::Result<Option<Completion>> {
        Ok(self.core.pop_done())
    }
}
