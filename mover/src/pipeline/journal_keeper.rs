//! [`JournalKeeper`]: the resume journals ([`FileJournals`]) on a thread of their own, so a journal step's
//! `fdatasync` (tens to hundreds of milliseconds on a slow disk: it writes back what the page cache holds)
//! never stalls the writer stage, and through it the reassembly and receive stages (ENGINEERING: nothing
//! blocks the receive path).
//!
//! The writer stage hands over ranges of written runs it already hashed from their buffers
//! ([`super::journal_runs::JournalRuns`]): the file, its generation, a descriptor of the partial and the
//! range with its xxh3-64; no bytes, and the keeper reads nothing back (it did, once per byte, until issue
//! 18). The journal syncs the data before it vouches for a range, as before. The queue is bounded and the
//! writer never waits on it: a notice that finds it full is dropped (that range is not journaled, so a
//! rerun sends it again; counted).

use super::journal_runs::{ClosedRange, Notice};
use crate::files::FileJournals;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Ranges queued at most (each one or more 1 MiB runs, up to 64 MiB): far more than a journal step takes to
/// sync on any disk that keeps up with the network.
const QUEUE: usize = 4096;
/// How often the keeper looks for idle journals to flush when no notice arrives.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

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
            loop {
                match rx.recv_timeout(HOUSEKEEPING) {
                    Ok(Notice::Range(ClosedRange { file_id, generation, fd, range })) => {
                        journals.record_hashed(file_id, generation, fd, range);
                    }
                    Ok(Notice::Begin { file_id, generation, fd }) => journals.begin(file_id, generation, fd),
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

    /// A notice of the writer's [`super::journal_runs::JournalRuns`]: a file's journal to start, or a range
    /// of written runs it hashed. Never blocks.
    pub fn notice(&mut self, notice: Notice) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(notice) {
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
