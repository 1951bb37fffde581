//! Partial files: their deterministic names, and claiming one for a session.
//!
//! A file is received under `.<name>.mover.part` in its final directory, the same name in every run, so a
//! rerun finds what an earlier one left (with its journal, [`super::journal::journal_path_for`]) and resumes
//! it. Because the name no longer differs per session, two sessions could pick the same partial: a session
//! *claims* a partial by holding `flock(LOCK_EX | LOCK_NB)` on it for as long as it may write it, and a held
//! lock is a clear error for the second session, which then removes nothing.

use super::beneath::{is_symlink_refused, Dir, Stat};
use super::claim_waits::{self, ClaimOwner, PartialKey};
use super::error::FilesError;
use super::sanitize::MAX_COMPONENT_LEN;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// What every partial's name ends with.
pub const PARTIAL_SUFFIX: &str = ".mover.part";
/// Mode of partial files: private, and writable by us whatever the final mode is.
const PARTIAL_MODE: u32 = 0o600;
/// Room a partial's name leaves for its journal's suffix (and the journal's `.new` while it is rewritten),
/// so that the journal's name fits the 255-byte limit too.
const JOURNAL_ROOM: usize = ".journal.new".len();

/// The partial file name of a file named `name`: `.<name>.mover.part`. A name too long for that (with room
/// for the journal's suffix) is cut at a character boundary and marked with the xxh3-64 of the whole name
/// (`.<prefix>~<16 hex digits>.mover.part`), so the result is the same in every run and still distinct.
pub fn partial_name(name: &str) -> String {
    let full = format!(".{name}{PARTIAL_SUFFIX}");
    if full.len() + JOURNAL_ROOM <= MAX_COMPONENT_LEN {
        return full;
    }
    let marker = format!("~{:016x}", xxhash_rust::xxh3::xxh3_64(name.as_bytes()));
    let mut cut = MAX_COMPONENT_LEN - JOURNAL_ROOM - 1 - PARTIAL_SUFFIX.len() - marker.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{marker}{PARTIAL_SUFFIX}", &name[..cut])
}

/// A partial file this session holds the lock of. Dropping it releases the lock (the file stays).
#[derive(Debug)]
pub struct Claim {
    file: File,
    /// Whether the partial existed before the claim (left by an earlier run).
    pub existed: bool,
    /// Whose claim it is, and the partial's identity, in this process's table of claims
    /// ([`super::claim_waits`]).
    owner: ClaimOwner,
    key: PartialKey,
}

impl Drop for Claim {
    fn drop(&mut self) {
        claim_waits::release(self.owner, self.key);
    }
}

impl Claim {
    /// The locked descriptor (reads and writes go through descriptors of their own).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// How long [`claim_at`] waits for another session to let go of a partial before it reports it busy.
#[cfg(not(test))]
pub const CLAIM_WAIT: Duration = Duration::from_secs(15);
/// (Shorter in unit tests, which hold a lock on purpose.)
#[cfg(test)]
pub const CLAIM_WAIT: Duration = Duration::from_millis(300);

/// [`claim_at`] by path (unit tests).
#[cfg(test)]
pub fn claim(path: &Path, shown: &Path) -> Result<Claim, FilesError> {
    claim_for(path, shown, ClaimOwner::new())
}

/// [`claim`] for a given owner (unit tests of waits between sessions).
#[cfg(test)]
pub fn claim_for(path: &Path, shown: &Path, owner: ClaimOwner) -> Result<Claim, FilesError> {
    let io_err = |error: io::Error| FilesError::Partial { path: shown.to_path_buf(), op: "opening", error };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let dir = super::Beneath::new(parent).map_err(io_err)?;
    claim_at(dir.root(), name, shown, owner)
}

/// Claims the partial `name` in `dir`, a directory resolved beneath the root ([`super::Beneath`]; `shown`
/// names it in errors): creates it (mode 0o600) or opens the one an earlier run left, and takes its lock
/// for `owner`, waiting at most [`CLAIM_WAIT`] for a session that holds it (not at all when that session
/// waits, through others, for `owner`: [`super::claim_waits`]).
///
/// Refused: a name that exists as anything but a regular file ([`FilesError::NotReplaceable`], nothing is
/// opened: a FIFO or device planted there is never opened for writing) and a partial another session holds
/// ([`FilesError::PartialBusy`]). Everything goes by descriptor: a symlink planted under the name is
/// refused too.
pub fn claim_at(dir: &Dir, name: &OsStr, shown: &Path, owner: ClaimOwner) -> Result<Claim, FilesError> {
    // The lock is taken on what was opened; by then the session that held it may have committed it (renamed
    // it to its final name) or removed it. Locking that file would truncate and rewrite a committed file
    // under its final name (seen with concurrent pushes of one tree), so a claim holds only if the name
    // still leads to the locked file; otherwise it starts again with whatever the name holds now.
    for _ in 0..CLAIM_ATTEMPTS {
        let Some(claim) = claim_once(dir, name, shown, owner)? else { continue };
        if still_named(dir, name, claim.key).map_err(|error| FilesError::Partial {
            path: shown.to_path_buf(),
            op: "opening",
            error,
        })? {
            return Ok(claim);
        }
    }
    Err(FilesError::PartialBusy { path: shown.to_path_buf() })
}

/// Times [`claim_at`] tries again when the partial it locked was committed or replaced meanwhile: each try
/// means another session finished with the name, so this many only under a storm of sessions on one file.
const CLAIM_ATTEMPTS: usize = 16;

/// Whether `name` in `dir` is still the very file locked, `(dev, ino)` = `held` (the claim's key).
fn still_named(dir: &Dir, name: &OsStr, held: PartialKey) -> io::Result<bool> {
    match dir.stat(name) {
        Ok(now) => Ok((now.dev, now.ino) == held),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// One try of [`claim_at`]: open or create, then lock; `None` when the name vanished between the two opens
/// (another session committed it): try again.
fn claim_once(dir: &Dir, name: &OsStr, shown: &Path, owner: ClaimOwner) -> Result<Option<Claim>, FilesError> {
    let io_err = |error: io::Error| FilesError::Partial { path: shown.to_path_buf(), op: "opening", error };
    let rw = libc::O_RDWR | libc::O_NONBLOCK;
    let (file, existed) = match dir.open(name, rw | libc::O_CREAT | libc::O_EXCL, PARTIAL_MODE) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            not_special(dir, name, shown)?;
            let f = match dir.open(name, rw, 0) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                r => r,
            };
            let f = f.map_err(|e| {
                if is_symlink_refused(&e) {
                    FilesError::NotReplaceable { path: shown.to_path_buf(), what: "symbolic link" }
                } else {
                    io_err(e)
                }
            })?;
            // Swapped between the stat and the open: judged again on what was opened.
            if !f.metadata().map_err(io_err)?.is_file() {
                return Err(FilesError::NotReplaceable { path: shown.to_path_buf(), what: "special file" });
            }
            (f, true)
        }
        Err(e) => return Err(io_err(e)),
    };
    // A session whose client vanished (killed, or cut off by a partition) holds its partials until its
    // control channel reports the loss, which can come seconds after the client has already started again:
    // wait a bounded while for it to let go rather than fail the rerun.
    let key = lock_waiting(&file, shown, Duration::from_millis(50), owner)?;
    Ok(Some(Claim { file, existed, owner, key }))
}

/// The identity of a partial whose claim this session let go of to bound its open descriptors
/// ([`Claim::identity`]), to take it again later ([`reclaim_at`]) only if the name still holds that file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Released {
    dev: u64,
    ino: u64,
    /// The birth time where the file system keeps one: an inode number is reused as soon as a removed
    /// file's last descriptor closes, so a partial removed and created again by another session can have
    /// the released one's `(dev, ino)`.
    born: Option<std::time::SystemTime>,
    /// [`Claim::existed`] of the first claim.
    pub existed: bool,
}

impl Claim {
    /// Which file the claim holds, to let go of it (dropping the claim closes its descriptor, which
    /// releases the lock once no write of it is in flight) and take it again later ([`reclaim_at`]).
    pub fn identity(&self) -> io::Result<Released> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        Ok(Released { dev: m.dev(), ino: m.ino(), born: m.created().ok(), existed: self.existed })
    }
}

impl Released {
    /// Whether `file` is the file released.
    pub fn is(&self, file: &File) -> bool {
        use std::os::unix::fs::MetadataExt;
        file.metadata().is_ok_and(|m| (m.dev(), m.ino(), m.created().ok()) == (self.dev, self.ino, self.born))
    }
}

/// Takes again the claim of a partial released by this session ([`Claim::identity`]): opens `name` in
/// `dir` (never creating it, never following a symlink), refuses it unless it is the very file released
/// (`shown` names it in errors), and takes its lock. The lock may still be held by this session's own
/// writes of the old descriptor (they finish within milliseconds) or, if another session claimed the
/// partial meanwhile, by that session: then it is busy, as for [`claim_at`].
pub fn reclaim_at(
    dir: &Dir,
    name: &OsStr,
    shown: &Path,
    released: Released,
    owner: ClaimOwner,
) -> Result<Claim, FilesError> {
    let io_err = |error: io::Error| FilesError::Partial { path: shown.to_path_buf(), op: "reopening", error };
    let file = dir.open(name, libc::O_RDWR | libc::O_NONBLOCK, 0).map_err(|e| {
        if is_symlink_refused(&e) {
            FilesError::NotReplaceable { path: shown.to_path_buf(), what: "symbolic link" }
        } else {
            io_err(e)
        }
    })?;
    if !released.is(&file) {
        return Err(io_err(io::Error::other("another file took its name while this transfer ran")));
    }
    let key = lock_waiting(&file, shown, Duration::from_millis(2), owner)?;
    Ok(Claim { file, existed: released.existed, owner, key })
}

/// Takes `file`'s lock for `owner`, polling every `poll` for at most [`CLAIM_WAIT`] while another
/// descriptor holds it, and not at all while waiting would close a cycle of waits among this process's
/// sessions ([`super::claim_waits`]). Returns the partial's identity in the table of claims.
fn lock_waiting(file: &File, shown: &Path, poll: Duration, owner: ClaimOwner) -> Result<PartialKey, FilesError> {
    use std::os::unix::fs::MetadataExt;
    let deadline = Instant::now() + CLAIM_WAIT;
    let io_err = |error: io::Error| FilesError::Partial { path: shown.to_path_buf(), op: "opening", error };
    let key = file.metadata().map(|m| (m.dev(), m.ino())).map_err(io_err)?;
    let busy = || {
        claim_waits::stop_waiting(owner);
        FilesError::PartialBusy { path: shown.to_path_buf() }
    };
    loop {
        // Safety: `flock` on a descriptor we own and keep open for the call; it touches no memory of ours.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            claim_waits::stop_waiting(owner);
            claim_waits::hold(owner, key);
            return Ok(key);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            claim_waits::stop_waiting(owner);
            return Err(io_err(e));
        }
        if Instant::now() >= deadline || !claim_waits::may_wait(owner, key) {
            return Err(busy());
        }
        std::thread::sleep(poll);
    }
}

/// Whether the partial at `path` is held by a live session (its lock is taken).
// By path: the daemon's sweep locks by descriptor instead (`partials::try_lock_at`); kept for the tests here.
#[cfg(test)]
pub fn is_claimed(path: &Path) -> io::Result<bool> {
    Ok(matches!(try_lock(path)?, Lock::Busy))
}

/// What [`try_lock`] found.
#[derive(Debug)]
pub enum Lock {
    /// The lock is ours while this descriptor is open.
    Held(File),
    /// Another session holds it.
    Busy,
    /// Nothing is there.
    Gone,
}

/// Takes the lock of an existing partial without creating it or waiting (the sweep removes a partial only
/// while holding its lock, so a session cannot claim it in between); by path, for the tests here.
#[cfg(test)]
pub fn try_lock(path: &Path) -> io::Result<Lock> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = super::beneath::Beneath::new(parent)?;
    try_lock_at(dir.root(), path.file_name().unwrap_or_default())
}

/// Takes the lock of the existing file `name` in `dir` without creating it, waiting, or following a
/// symlink (a session's claim takes the same `flock`).
pub(crate) fn try_lock_at(dir: &Dir, name: &OsStr) -> io::Result<Lock> {
    let file = match dir.open(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lock::Gone),
        Err(e) => return Err(e),
    };
    // Safety: a valid descriptor owned by `file`; flock touches no memory of ours.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Lock::Held(file));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        return Ok(Lock::Busy);
    }
    Err(e)
}

/// Refuses a name that exists as anything but a regular file (it is not ours to open or remove).
fn not_special(dir: &Dir, name: &OsStr, shown: &Path) -> Result<(), FilesError> {
    let s = match dir.stat(name) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(FilesError::Partial { path: shown.to_path_buf(), op: "opening", error }),
    };
    let Some(what) = stat_not_a_file(&s) else { return Ok(()) };
    Err(FilesError::NotReplaceable { path: shown.to_path_buf(), what })
}

/// What a name that is not a regular file is, from a no-follow [`Stat`], for
/// [`FilesError::NotReplaceable`]; `None` for a regular file.
pub(super) fn stat_not_a_file(s: &Stat) -> Option<&'static str> {
    Some(match s.mode & libc::S_IFMT {
        libc::S_IFREG => return None,
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFBLK | libc::S_IFCHR => "device file",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        _ => "special file",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::fs;

    #[test]
    fn names_are_deterministic_and_leave_room_for_the_journal() {
        assert_eq!(partial_name("x.bin"), ".x.bin.mover.part");
        let long = "n".repeat(255);
        let a = partial_name(&long);
        assert_eq!(a, partial_name(&long), "the same in every run");
        assert!(a.len() + ".journal.new".len() <= 255, "{a}");
        let other = format!("{}m", "n".repeat(254));
        assert_ne!(a, partial_name(&other), "two long names that share a prefix stay distinct");
        // A multi-byte character at the cut is not split.
        let wide = "é".repeat(127);
        let w = partial_name(&wide);
        assert!(w.len() + 12 <= 255 && w.ends_with(PARTIAL_SUFFIX), "{w}");
        // The longest name kept whole.
        let fits = "k".repeat(255 - 12 - 1 - PARTIAL_SUFFIX.len());
        assert_eq!(partial_name(&fits), format!(".{fits}{PARTIAL_SUFFIX}"));
    }

    #[test]
    fn a_partial_committed_while_waiting_for_its_lock_is_not_claimed() {
        use std::os::unix::fs::MetadataExt;
        let t = TempDir::new("partial-committed");
        let p = t.path().join(".a.mover.part");
        let done = t.path().join("a");
        let first = claim(&p, Path::new(".a.mover.part")).unwrap();
        fs::write(&p, b"verified").unwrap();
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || claim(&p, Path::new(".a.mover.part")))
        };
        // The second session is waiting on the lock of the very file the first now commits.
        std::thread::sleep(Duration::from_millis(100));
        fs::rename(&p, &done).unwrap();
        drop(first);
        let second = waiter.join().unwrap().unwrap();
        assert!(!second.existed, "a new partial, not the committed file");
        assert_ne!(second.file().metadata().unwrap().ino(), fs::metadata(&done).unwrap().ino());
        second.file().set_len(0).unwrap();
        assert_eq!(fs::read(&done).unwrap(), b"verified", "the committed file is untouched");
    }

    #[test]
    fn sessions_that_claim_in_opposite_orders_never_wait_for_each_other_in_a_ring() {
        use super::super::claim_waits::is_waiting;
        let t = TempDir::new("partial-ring");
        let (p, q) = (t.path().join(".p.mover.part"), t.path().join(".q.mover.part"));
        let (a, b) = (ClaimOwner::new(), ClaimOwner::new());
        let shown = Path::new(".x.mover.part");
        let a_holds = claim_for(&p, shown, a).unwrap();
        let b_holds = claim_for(&q, shown, b).unwrap();
        // a waits for q, which b holds...
        let a_waits = {
            let q = q.clone();
            std::thread::spawn(move || claim_for(&q, Path::new(".x.mover.part"), a).map(|c| (c, a_holds)))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_waiting(a) {
            assert!(Instant::now() < deadline && !a_waits.is_finished(), "a never waited for q");
            std::thread::sleep(Duration::from_millis(1));
        }
        // ...so b, asking for p, which a holds, would close the ring: busy at once, not after CLAIM_WAIT.
        let started = Instant::now();
        let e = claim_for(&p, shown, b).unwrap_err();
        assert!(matches!(e, FilesError::PartialBusy { .. }), "{e}");
        // A wait would take the whole bound: anything shorter is the refusal.
        assert!(started.elapsed() < CLAIM_WAIT, "b waited {:?} in a ring", started.elapsed());
        assert!(!is_waiting(b));
        // b's session fails and lets go of its claims: a gets q.
        drop(b_holds);
        let (got, _) = a_waits.join().unwrap().expect("a gets the partial b let go of");
        assert!(!is_waiting(a));
        // A wait that closes no ring still waits its bound, as before: b for q, which a holds.
        let started = Instant::now();
        assert!(matches!(claim_for(&q, shown, b), Err(FilesError::PartialBusy { .. })));
        assert!(started.elapsed() >= CLAIM_WAIT, "gave up after {:?}", started.elapsed());
        drop(got);
        claim_for(&q, shown, b).expect("free once a lets go");
    }

    #[test]
    fn a_claimed_partial_is_busy_for_a_second_session_until_released() {
        let t = TempDir::new("partial-claim");
        let p = t.path().join(".a.mover.part");
        let first = claim(&p, Path::new(".a.mover.part")).unwrap();
        assert!(!first.existed);
        assert!(is_claimed(&p).unwrap());
        let e = claim(&p, Path::new(".a.mover.part")).unwrap_err();
        assert!(matches!(e, FilesError::PartialBusy { .. }), "{e}");
        assert_eq!(e.to_string(), "another transfer is writing '.a.mover.part'; wait for it or stop it");
        assert!(p.exists(), "the busy partial was removed");
        drop(first);
        assert!(!is_claimed(&p).unwrap());
        let again = claim(&p, Path::new(".a.mover.part")).unwrap();
        assert!(again.existed);
    }

    #[test]
    fn special_files_and_symlinks_are_refused_without_opening_them() {
        let t = TempDir::new("partial-special");
        let outside = t.path().join("target");
        fs::write(&outside, b"keep").unwrap();
        let link = t.path().join(".l.mover.part");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = claim(&link, Path::new(".l.mover.part")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        fs::create_dir(t.path().join(".d.mover.part")).unwrap();
        let e = claim(&t.path().join(".d.mover.part"), Path::new(".d.mover.part")).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
    }
}
