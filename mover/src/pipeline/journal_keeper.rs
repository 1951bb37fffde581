//! [`JournalKeeper`]: the resume journals ([`FileJournals`]) on a thread of their own, so a journal step's
//! `fdatasync` (tens to hundreds of milliseconds on a slow disk: it writes back what the page cache holds)
//! never stalls the writer stage, and through it the reassembly and receive stages (ENGINEERING: nothing
//! blocks the receive path).
//!
//! The writer stage hands over, per run whose write completed in full, the file, a descriptor of the
//! partial, the offset and the length: no bytes. The keeper reads the run back (`pread`, a page-cache hit
//! of what was just written) to hash it into the journal, which syncs the data before it vouches for it,
//! as before. The queue is bounded and the writer never waits on it: a notice that finds it full is
//! dropped (that range is not journaled, so a rerun sends it again; counted).

use crate::files::FileJournals;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Notices queued at most: 4 GiB of 1 MiB runs, far more than a journal step takes to sync on any disk
/// that keeps up with the network.
const QUEUE: usize = 4096;
/// How often the keeper looks for idle journals to flush when no notice arrives.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// The largest run the keeper reads back at once (a write run is at most 1 MiB).
const MAX_RUN_BYTES: usize = 1 << 20;

enum Notice {
    Written { file_id: u32, fd: OwnedFd, offset: u64, len: u32 },
}

/// See the [module documentation](self).
pub struct JournalKeeper {
    tx: Option<SyncSender<Notice>>,
    thread: Option<JoinHandle<FileJournals>>,
    /// Notices dropped because the queue was full.
    pub dropped: u64,
}

impl JournalKeeper {
    /// Starts the keeper's thread with `journals`.
    pub fn start(journals: FileJournals) -> std::io::Result<JournalKeeper> {
        let (tx, rx) = sync_channel::<Notice>(QUEUE);
        let thread = std::thread::Builder::new().name("mover-journal".into()).spawn(move || {
            let mut journals = journals;
            let mut buf = vec![0u8; MAX_RUN_BYTES];
            loop {
                match rx.recv_timeout(HOUSEKEEPING) {
                    Ok(Notice::Written { file_id, fd, offset, len }) => {
                        let len = len as usize;
                        if len > buf.len() {
                            buf.resize(len, 0);
                        }
                        let file = File::from(fd);
                        // A run that cannot be read back is not journaled: a rerun sends it again.
                        if file.read_exact_at(&mut buf[..len], offset).is_ok() {
                            journals.record(file_id, file.into(), offset, &buf[..len]);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => journals.housekeeping(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // The session ended: every journal gets its last step (an aborted session's partials keep what
            // reached the disk).
            journals.finish();
            journals
        })?;
        Ok(JournalKeeper { tx: Some(tx), thread: Some(thread), dropped: 0 })
    }

    /// `len` bytes of `file_id` at `offset` were written in full through `fd` (a descriptor of the partial).
    /// Never blocks.
    pub fn written(&mut self, file_id: u32, fd: OwnedFd, offset: u64, len: u32) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Notice::Written { file_id, fd, offset, len }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// Waits for the keeper to journal everything queued and make every journal's last step; returns the
    /// journals (for their counters).
    pub fn finish(mut self) -> Option<FileJournals> {
        self.tx = None;
        self.thread.take()?.join().ok()
    }
}

impl Drop for JournalKeeper {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
