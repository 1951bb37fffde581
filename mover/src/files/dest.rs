//! The receiver's [`BlockStore`] over a real directory tree.
//!
//! Every file is written under a partial name in its final directory (`.<name>.mover.part`: hidden,
//! recognisable, the same in every run so that a rerun finds it, and on the same file system so that the
//! final `rename` is atomic). Only a file whose whole-file hash matched is renamed into place, so the final
//! name never holds partial or unverified contents. An aborted session keeps each partial that has a resume
//! journal (the next run resumes it, [`DestTree::decide_start`]) and removes the others.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::beneath::{is_symlink_refused, Beneath, Dir, ParentCache, Resolve};
use super::claim_waits::ClaimOwner;
use super::claims::{claims_for_this_process, ClaimBound};
use super::error::{FileOp, FilesError};
use super::journal::{with_suffix, FileIdentity, JournalRange};
use super::links::{create_links, link_blocker, LinkSlot};
use super::metadata::{EntryMeta, MetaPolicy};
use super::partial::{claim_at, partial_name, reclaim_at, stat_not_a_file, try_lock_at, Claim, Lock, Released};
use super::sanitize::{sanitize_relative, PathError, RelPath, MAX_COMPONENT_LEN};
use super::sparse::{is_all_zero, punch_hole};
use super::start::start_over;
use crate::proto::{BlockStore, HashDone, HashJob};
use crate::wire::entry::{Entry, EntryKind};
use crate::wire::TransferOptions;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The journal generation of a committed file: nothing is journaled for it any more.
pub(crate) const JOURNAL_DONE: u32 = u32::MAX;
/// Mode of directories created while a transfer runs: private until [`DestTree::finish`] applies the
/// announced modes, so nobody else sees (or writes into) a half-received tree.
const DIR_MODE_DURING: u32 = 0o700;
/// Mode of the destination directory's missing components, created at once for good (subject to the
/// umask, as `mkdir -p` does): only the manifest's directories are private until [`DestTree::finish`].
const DEST_DIR_MODE: u32 = 0o777;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// No temporary file yet.
    NotCreated,
    /// The temporary file exists, claimed by this session (and is ours to remove or keep for resume).
    Created,
    /// Renamed into place; no longer ours to touch.
    Committed,
    /// The destination is current ([`DestTree::decide_start`]): never created, never committed.
    Skipped,
}

/// One file of the manifest. Its names are kept relative to the root, and every operation on them resolves
/// the parent directory beneath the root by descriptor at that moment ([`Beneath::parent`]: a few syscalls
/// per file, none per block), so no path is ever handed to the kernel whole.
pub(super) struct FileSlot {
    /// The final name relative to the root: what operations resolve, and what messages show (a peer may see
    /// them, module `files::error`).
    pub(super) shown: PathBuf,
    /// The partial's name relative to the root (in the same directory as `shown`).
    pub(super) shown_temp: PathBuf,
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) mtime_s: i64,
    pub(super) mtime_ns: u32,
    pub(super) state: State,
    /// The source as the sender described it, for the resume journal.
    pub(super) identity: FileIdentity,
    /// The partial's lock while this session may write it (`Created`); its descriptor is the one every
    /// write and read-back of the file duplicates. `None` while released to bound the descriptors held
    /// ([`ClaimBound`]; then `released` says which file to take again).
    pub(super) claim: Option<Claim>,
    /// The partial this session claimed and let go of to stay within its bound on claims (boxed: rare, and
    /// every file of a manifest has a slot; decision 0025).
    pub(super) released: Option<Box<Released>>,
    /// Ranges a resumed partial already holds (handed to its journal writer).
    pub(super) trusted: Vec<JournalRange>,
    /// What to keep of owners, set-ID bits and extended attributes.
    pub(super) meta: EntryMeta,
    /// A range of a file split between shards, and the source version it belongs to
    /// ([`super::pieces`]): committed under a done name, and the file assembled once every range is done.
    /// Boxed: only sharded sessions have ranges, and every file of a manifest has a slot (decision 0025).
    pub(super) piece: Option<Box<(crate::wire::shard::Piece, u64)>>,
}

struct DirSlot {
    /// The directory relative to the root (resolved beneath it when its metadata is applied; messages).
    shown: PathBuf,
    depth: usize,
    mode: u32,
    mtime_s: i64,
    mtime_ns: u32,
    meta: EntryMeta,
}

/// A session's destination tree: creates the directories up front, receives each file into a temporary
/// file and commits it under its final name once verified.
///
/// Dropping it without committing everything removes the uncommitted temporary files (see
/// [`DestTree::abort`]).
pub struct DestTree {
    /// The root everything lies below; messages name paths relative to it.
    pub(super) root: PathBuf,
    /// The root's descriptor: every operation below it goes through it (shared with the journal thread).
    pub(super) beneath: Arc<Beneath>,
    pub(super) files: Vec<FileSlot>,
    dirs: Vec<DirSlot>,
    /// How many files hold a claim (a descriptor) at once: bounded, whatever the files in flight.
    pub(super) claims: ClaimBound,
    total_bytes: u64,
    fsync: bool,
    /// Symbolic and hard links, created by [`DestTree::finish`] after every file.
    links: Vec<LinkSlot>,
    /// Owners, set-ID bits and extended attributes: what to keep, and what was dropped.
    policy: MetaPolicy,
    /// The session's block size once [`DestTree::decide_start`] ran: files are journaled from then on.
    pub(super) block_size: Option<u32>,
    /// Per file id, bumped when the file's journal is removed (commit, reset), so the writer stage's
    /// journal writer of that file stops ([`super::FileJournals`]).
    pub(super) generations: Arc<[AtomicU32]>,
    /// This tree's claims in the process's table ([`super::claim_waits`]): sessions of one daemon never
    /// wait for each other's partials in a cycle.
    pub(super) owner: ClaimOwner,
}

impl DestTree {
    /// Validates the manifest and lays out the tree under `root/dest_dir`.
    ///
    /// `root` must be an existing directory. Every entry's path is sanitized again (it came from the
    /// network); duplicate paths, a path below a file entry and invalid mtimes are refused. All of this is
    /// checked before anything is created. Then the destination directory, every directory entry and any
    /// missing parent of a file are created (by descriptor beneath `root`, [`Beneath`]; mode 0o700 until
    /// [`DestTree::finish`]).
    /// Files are not created until their first block or their commit. A final name that exists as a
    /// directory or a symlink is refused here already, so a doomed transfer fails before it starts.
    ///
    /// Partial names are the same in every run (`.<name>.mover.part`, [`super::partial_name`]);
    /// `session_tag` no longer names them and is kept for the callers' signature.
    /// Every path in an error is relative to `root` ([`FilesError`]), here and in the [`BlockStore`]
    /// methods' `io::Error`s, so a daemon can show them to its client.
    pub fn prepare(
        root: &Path,
        dest_dir: &RelPath,
        entries: &[Entry],
        session_tag: u64,
    ) -> Result<DestTree, FilesError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(FilesError::RootNotADirectory { path: root.to_path_buf() }),
            Err(error) => return Err(FilesError::Io { op: FileOp::Root, path: root.to_path_buf(), error }),
        }
        let manifest = |entry: usize, problem: String| FilesError::Manifest { entry, problem };
        // Pass 1: judge the whole manifest before touching the disk.
        let (total_bytes, seen) = judge_manifest(entries)?;

        // Pass 2: create the directories, by descriptor beneath the root. Every path from here on is
        // relative to the root, so nothing a peer may see names what lies above it.
        let beneath = Beneath::new(root)
            .map_err(|error| FilesError::Io { op: FileOp::Root, path: root.to_path_buf(), error })?
            .with_resolve(Resolve::configured());
        let hide_root = |e: FilesError| e.relative_to(root);
        let dest = dest_dir.to_path_buf();
        let dest_fd = beneath.mkdir_all(&dest, DEST_DIR_MODE).map_err(|error| dir_error(&dest, error))?;
        // A destination that cannot be written is refused now, by its name, not at the first partial file
        // deep in the transfer.
        if let Err(error) = dest_fd.check_writable() {
            return Err(if dest_dir.is_root() {
                FilesError::Io { op: FileOp::Root, path: root.to_path_buf(), error }
            } else {
                FilesError::Path(PathError::Io { path: dest, error })
            });
        }
        let mut ensured: HashSet<RelPath> = HashSet::new();
        ensured.insert(RelPath::root());
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let mut links = Vec::new();
        // Manifest paths of the files so far: what a hard link may name (its final path is the destination
        // joined with it; a set of borrowed names, not a copy of every final path, which cost about 90 bytes
        // a file at the session's peak).
        let mut file_finals: HashSet<&str> = HashSet::new();
        // Temporary names so far, by their 128-bit hash ([`temp_key`]) rather than a copy of each path.
        let mut temp_names: HashSet<u128> = HashSet::new();
        let mut parents = ParentCache::default();
        // Each path is sanitized again here rather than kept from pass 1: a `RelPath` per entry (a vector of
        // component strings) cost about 200 bytes a file at the session's peak.
        for (i, e) in entries.iter().enumerate() {
            let rel = sanitize_relative(&e.rel_path).map_err(|err| manifest(i, err.to_string()))?;
            match e.kind {
                EntryKind::Dir => {
                    let shown = dest.join(rel.to_path_buf());
                    mkdir_beneath(&beneath, &shown, DIR_MODE_DURING)?;
                    dirs.push(DirSlot {
                        shown,
                        depth: rel.components().len(),
                        mode: e.mode & 0o7777,
                        mtime_s: e.mtime_s,
                        mtime_ns: e.mtime_ns,
                        meta: EntryMeta::of(e),
                    });
                    ensured.insert(rel);
                }
                EntryKind::Symlink | EntryKind::HardLink => {
                    let slot = link_slot(&beneath, &dest, e, &rel, session_tag, i, &mut ensured, &file_finals)
                        .map_err(|p| match p {
                            LinkProblem::Files(e) => hide_root(e),
                            LinkProblem::Manifest(m) => manifest(i, m),
                        })?;
                    if !temp_names.insert(temp_key(&slot.temp)) || seen.contains(temp_rel(&rel, &slot.temp).as_str()) {
                        return Err(manifest(i, format!("'{rel}': its temporary name collides with another entry")));
                    }
                    links.push(slot);
                }
                EntryKind::File => {
                    let parent = rel.parent().unwrap_or_else(RelPath::root);
                    let dir = dest.join(parent.to_path_buf());
                    if !ensured.contains(&parent) {
                        mkdir_beneath(&beneath, &dir, DIR_MODE_DURING)?;
                        ensured.insert(parent);
                    }
                    let name = rel.file_name().unwrap_or_default();
                    let shown = dir.join(name);
                    check_replaceable(&beneath, &mut parents, &shown).map_err(hide_root)?;
                    let shown_temp = dir.join(partial_name_of(e, name));
                    // Only a crafted manifest can make a temporary name collide with another file's name.
                    if !temp_names.insert(temp_key(&shown_temp)) || seen.contains(temp_rel(&rel, &shown_temp).as_str())
                    {
                        return Err(manifest(i, format!("'{rel}': its temporary name collides with another entry")));
                    }
                    files.push(FileSlot {
                        shown,
                        shown_temp,
                        size: e.size,
                        mode: e.mode & 0o7777,
                        mtime_s: e.mtime_s,
                        mtime_ns: e.mtime_ns,
                        state: State::NotCreated,
                        meta: EntryMeta::of(e),
                        identity: identity_of(e),
                        claim: None,
                        released: None,
                        trusted: Vec::new(),
                        piece: e.piece.as_deref().copied().map(|p| {
                            Box::new((p, super::pieces::version_of(p, e.mtime_s, e.mtime_ns, e.mode, &e.rel_path)))
                        }),
                    });
                    file_finals.insert(&e.rel_path);
                }
            }
        }
        let generations = files.iter().map(|_| AtomicU32::new(0)).collect();
        let claims = ClaimBound::new(files.len(), claims_for_this_process());
        Ok(DestTree {
            root: root.to_path_buf(),
            beneath: Arc::new(beneath),
            files,
            dirs,
            claims,
            total_bytes,
            fsync: false,
            links,
            policy: MetaPolicy::new(&TransferOptions::default()),
            block_size: None,
            generations,
            owner: ClaimOwner::new(),
        })
    }

    /// Applies the client's metadata choices (`--preserve owner`, `--xattrs`); without this call owners
    /// and extended attributes are not kept and set-ID bits are dropped.
    pub fn set_options(&mut self, opts: &TransferOptions) {
        self.policy = MetaPolicy::new(opts);
    }

    /// What could not be kept so far (`wire::entry::dropped` bits); complete after [`DestTree::finish`].
    pub fn dropped(&self) -> u32 {
        self.policy.dropped
    }

    /// Whether the sender marked the file sparse: runs of zeros become holes.
    pub fn is_sparse(&self, file_id: u32) -> bool {
        self.files.get(file_id as usize).is_some_and(|f| f.meta.sparse)
    }

    /// Makes every commit durable before it is visible: fsync each file before its rename, so that after a
    /// crash the final name never holds a file whose blocks did not reach the disk. Off by default (as in
    /// rsync and scp): it costs a full write-back of every file inside the transfer.
    pub fn set_fsync(&mut self, fsync: bool) {
        self.fsync = fsync;
    }

    /// The number of regular files (file ids are `0..file_count()`).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The sum of the files' announced sizes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Applies the directory entries' modes and mtimes, deepest first. Call it after every file is
    /// committed: creating and renaming files changes their directories' mtimes, and a directory made
    /// read-only early would stop the files below it from being written. Fails (changing nothing) if a file
    /// is not committed; otherwise applies every directory and returns the first error.
    pub fn finish(&mut self) -> io::Result<()> {
        let pending = self.files.iter().filter(|f| !matches!(f.state, State::Committed | State::Skipped)).count();
        if pending > 0 {
            return Err(io::Error::other(format!("{pending} files are not committed")));
        }
        // Links last but one: nothing is written after them, so nothing goes through them.
        let links = create_links(&self.beneath, &self.links, &mut self.policy);
        let mut order: Vec<&DirSlot> = self.dirs.iter().collect();
        // Deepest first, so a parent's mode (perhaps read-only) is set after its children are done.
        order.sort_by_key(|d| std::cmp::Reverse(d.depth));
        let mut first_err = links.err();
        for d in order {
            if let Err(e) = apply_dir_meta(&self.beneath, d, &mut self.policy) {
                first_err.get_or_insert(io::Error::new(
                    e.kind(),
                    format!("setting mode and mtime of '{}': {e}", d.shown.display()),
                ));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Ends the session's claim on every partial that was not committed: a partial with a resume journal,
    /// or of a size that is journaled (its journal may still be on its way: the journal thread records runs
    /// after their writes), is kept (the next run of the same command resumes it); the others are removed. Committed files and
    /// files that existed before the session are never touched; directories created by
    /// [`DestTree::prepare`] are left. Removal is best effort (an abort usually happens because something
    /// already went wrong). Call it only once no write of this session can still reach the files.
    pub fn abort(&mut self) {
        for f in &mut self.files {
            if f.state == State::Created {
                if f.size < super::JOURNAL_MIN_BYTES {
                    match (&f.claim, f.released.as_deref().copied()) {
                        (Some(c), _) => remove_unjournaled(&self.beneath, &f.shown_temp, Some(c.file())),
                        // Released to bound the claims: removed only if its lock is free and the name still
                        // holds the very file (else another session has taken it since, and it stays).
                        (None, Some(r)) => remove_released(&self.beneath, &f.shown_temp, r),
                        (None, None) => remove_unjournaled(&self.beneath, &f.shown_temp, None),
                    }
                }
                f.state = State::NotCreated;
            }
            // Released only now: until the partial is removed (or left for resume) it is this session's.
            f.claim = None;
            f.released = None;
        }
        self.claims.clear();
    }

    /// Gives `claim` to `file_id` (which holds none) and releases the least recently written claims past
    /// the bound ([`ClaimBound`]). A claim whose identity cannot be read is kept (the bound is exceeded by
    /// it rather than losing track of the file).
    pub(super) fn hold_claim(&mut self, file_id: u32, claim: Claim) {
        let f = &mut self.files[file_id as usize];
        debug_assert!(f.claim.is_none(), "a second claim on one file");
        f.claim = Some(claim);
        f.released = None;
        self.claims.claimed(file_id);
        self.bound_claims(file_id);
    }

    /// Releases claims while more than the bound are held.
    fn bound_claims(&mut self, newest: u32) {
        let files = &mut self.files;
        while let Some(victim) = self.claims.victim(newest, |id| files[id as usize].claim.is_some()) {
            let f = &mut files[victim as usize];
            let Some(claim) = f.claim.take() else { continue };
            match claim.identity() {
                Ok(r) => {
                    f.released = Some(Box::new(r));
                    self.claims.ended();
                }
                Err(_) => {
                    f.claim = Some(claim);
                    break;
                }
            }
        }
    }

    /// Removes a file's journal and tells its journal writer to stop: the partial's journaled ranges are
    /// no longer what it should hold (committed, or started over).
    ///
    /// `committed`: the file is done, and its generation becomes [`JOURNAL_DONE`] *before* the removal, so a
    /// journal writer that is behind (the journal thread records runs after their writes completed) never
    /// starts a journal for it again. A reset bumps the generation after the removal: a writer that sees the
    /// new one creates the next journal afresh.
    fn drop_journal(&self, file_id: u32, committed: bool) -> io::Result<()> {
        let f = &self.files[file_id as usize];
        if committed {
            self.generations[file_id as usize].store(JOURNAL_DONE, Ordering::Release);
        }
        let r = self
            .beneath
            .parent(&f.shown_temp)
            .and_then(|(dir, name)| dir.unlink(&with_suffix(name, ".journal"), false));
        let r = match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if !committed {
            self.generations[file_id as usize].fetch_add(1, Ordering::Release);
        }
        r
    }

    /// Assembles the file of the range `file_id` if every range of its version is done
    /// ([`super::pieces::assemble`]), with the file's metadata; a no-op for a whole file.
    pub(super) fn assemble(&mut self, file_id: u32) -> io::Result<()> {
        let DestTree { files, beneath, policy, fsync, .. } = self;
        let f = &files[file_id as usize];
        let Some((piece, version)) = f.piece.as_deref().copied() else { return Ok(()) };
        let err = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("assembling '{}': {what}: {e}", f.shown.display()))
        };
        let (dir, name) = beneath.parent(&f.shown).map_err(|e| err("opening its directory", e))?;
        let text = name.to_str().unwrap_or_default();
        let replaceable = || {
            check_replaceable_at(&dir, name, &f.shown)
                .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e.to_string()))
        };
        let finish = |file: &File| {
            policy.apply_fd(file, &f.meta);
            file.set_permissions(fs::Permissions::from_mode(policy.file_mode(f.mode)))?;
            set_mtime(file, f.mtime_s, f.mtime_ns)?;
            if *fsync {
                file.sync_all()?;
            }
            Ok(())
        };
        super::pieces::assemble(&dir, text, piece, version, replaceable, finish)
            .map(drop)
            .map_err(|e| err("joining its ranges", e))
    }

    fn slot(&self, file_id: u32) -> io::Result<&FileSlot> {
        self.files
            .get(file_id as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no file with id {file_id}")))
    }

    /// Checks that `[offset, offset + len)` lies inside the file's announced size: a peer must not be able
    /// to grow a file (and fill the disk) beyond what the manifest said.
    fn check_range(&self, file_id: u32, offset: u64, len: usize) -> io::Result<()> {
        let f = self.slot(file_id)?;
        let end = offset.checked_add(len as u64);
        if !matches!(end, Some(end) if end <= f.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "'{}': {len} bytes at offset {offset} lie outside its size of {} bytes",
                    f.shown.display(),
                    f.size
                ),
            ));
        }
        Ok(())
    }

    /// A new descriptor of `file_id`'s temporary file (created as needed) after checking that
    /// `[offset, offset + len)` lies inside its announced size, for a writer on another thread. The caller owns
    /// the descriptor, so it stays valid whatever the tree closes meanwhile.
    pub fn write_handle(&mut self, file_id: u32, offset: u64, len: usize) -> io::Result<OwnedFd> {
        self.check_range(file_id, offset, len)?;
        let r = self.temp_file(file_id).and_then(|f| f.as_fd().try_clone_to_owned());
        r.map_err(|e| {
            let path = self.files[file_id as usize].shown.display();
            io::Error::new(e.kind(), format!("opening '{path}' for writing: {e}"))
        })
    }

    /// Reads back bytes already written to a file's temporary (for the whole-file hash).
    pub fn read_at(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check_range(file_id, offset, buf.len())?;
        let r = self.temp_file(file_id).and_then(|f| f.read_exact_at(buf, offset));
        r.map_err(|e| {
            let path = self.files[file_id as usize].shown.display();
            io::Error::new(e.kind(), format!("reading back '{path}': {e}"))
        })
    }

    /// The name a file will have, for messages.
    pub fn display_name(&self, file_id: u32) -> String {
        self.files.get(file_id as usize).map_or_else(|| format!("file id {file_id}"), |f| f.shown.display().to_string())
    }

    /// The temporary file of `file_id`, created (or reopened after eviction) as needed.
    fn temp_file(&mut self, file_id: u32) -> io::Result<&File> {
        let f = self
            .files
            .get_mut(file_id as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no file with id {file_id}")))?;
        if matches!(f.state, State::Committed | State::Skipped) {
            let what =
                if f.state == State::Committed { "already committed" } else { "skipped (its destination is current)" };
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("'{}' is {what}", f.shown.display())));
        }
        if f.claim.is_some() {
            self.claims.touched(file_id);
        } else {
            let r = open_temp(f, &self.beneath, self.owner);
            // Counted even if what followed the claim failed: the file is ours (to remove or keep) either way.
            if let Some(c) = f.claim.take() {
                self.hold_claim(file_id, c);
            }
            r?;
        }
        let f = &self.files[file_id as usize];
        f.claim.as_ref().map(Claim::file).ok_or_else(|| io::Error::other("the partial's claim was released"))
    }
}

/// Claims a partial file (into `f.claim`) on first use ([`claim_at`]: created, or an earlier run's partial emptied
/// and its journal removed, since no decision said to resume it), or again after its claim was released to
/// bound the claims held ([`reclaim_at`]: only the very file released). All go by descriptor beneath the
/// root ([`Beneath`]): a symlink planted under the partial name, or swapped for a directory above it, never
/// redirects our writes.
///
/// The claimed descriptor is the one every write and read-back duplicates: it is the very file created (or
/// judged) in the directory resolved beneath the root, so nothing swapped in since can meet a write, and no
/// second descriptor is opened or duplicated per file (issue 18, item 4).
fn open_temp(f: &mut FileSlot, beneath: &Beneath, owner: ClaimOwner) -> io::Result<()> {
    let err = |e: io::Error| io::Error::new(e.kind(), format!("creating '{}': {e}", f.shown_temp.display()));
    if f.state != State::Created {
        let (dir, name) = beneath.parent(&f.shown_temp).map_err(err)?;
        let c = claim_at(&dir, name, &f.shown_temp, owner).map_err(FilesError::into_io)?;
        // From here on the file is ours (to remove or keep), even if what follows fails.
        f.state = State::Created;
        let c = f.claim.insert(c);
        if c.existed {
            start_over(&dir, name, c, &f.shown_temp).map_err(FilesError::into_io)?;
        }
        // Full size at once, so out-of-order blocks do not extend the file again and again.
        return c.file().set_len(f.size).map_err(err);
    }
    let Some(released) = f.released.as_deref().copied() else {
        return Err(io::Error::other(format!("'{}' lost its claim", f.shown_temp.display())));
    };
    let (dir, name) = beneath.parent(&f.shown_temp).map_err(err)?;
    f.claim = Some(reclaim_at(&dir, name, &f.shown_temp, released, owner).map_err(FilesError::into_io)?);
    f.released = None;
    Ok(())
}

/// Removes on abort an unjournaled partial whose claim was released ([`ClaimBound`]): only if its lock is
/// free now and its name still holds the file released; otherwise another session has it, and it stays.
fn remove_released(beneath: &Beneath, shown_temp: &Path, released: Released) {
    let Ok((dir, name)) = beneath.parent(shown_temp) else { return };
    if let Ok(Lock::Held(file)) = try_lock_at(&dir, name) {
        if released.is(&file) {
            remove_unjournaled(beneath, shown_temp, Some(&file));
        }
    }
}

/// Removes an unjournaled partial on abort (best effort): one with a journal is left for the next run.
/// With a claim, only the claimed file itself: if the name now holds another file (this session's partial
/// was removed or replaced while it ran, and a newer session created and claimed its own under the same
/// name), that file is the other session's and stays (`symlink_race` met it: a later push's commit found
/// its partial unlinked by an aborting session).
fn remove_unjournaled(beneath: &Beneath, shown_temp: &Path, claimed: Option<&File>) {
    use std::os::unix::fs::MetadataExt;
    let Ok((dir, name)) = beneath.parent(shown_temp) else { return };
    if let Some(c) = claimed {
        let Ok(held) = c.metadata() else { return };
        match dir.stat(name) {
            Ok(now) if now.dev == held.dev() && now.ino == held.ino() => {}
            _ => return,
        }
    }
    if matches!(dir.stat(&with_suffix(name, ".journal")), Err(e) if e.kind() == io::ErrorKind::NotFound) {
        let _ = dir.unlink(name, false);
    }
}

/// Judges a manifest as a whole before anything on disk is touched: every path sanitized, no duplicates, valid
/// mtimes, nothing below a file or a link, at most `u32::MAX` files; returns the files' total size. Both
/// [`DestTree::prepare`] and a dry run ([`super::dry_run`]) start with it, so they refuse the same manifests.
/// The set of manifest paths comes back too: `prepare` checks temporary names against it.
pub(super) fn judge_manifest(entries: &[Entry]) -> Result<(u64, HashSet<&str>), FilesError> {
    let manifest = |entry: usize, problem: String| FilesError::Manifest { entry, problem };
    let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
    let mut file_paths: HashSet<&str> = HashSet::new();
    // The ranges of split files: a path may come once per range (of one size), never also whole.
    let mut ranges: HashSet<(&str, u64)> = HashSet::new();
    let mut split: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut total_bytes: u64 = 0;
    for (i, e) in entries.iter().enumerate() {
        let rel = sanitize_relative(&e.rel_path).map_err(|err| manifest(i, err.to_string()))?;
        if let Some(p) = e.piece.as_deref().copied() {
            if e.kind != EntryKind::File || !p.is_on_layout(e.size) {
                return Err(manifest(i, format!("'{rel}': a range that is not one of the file's ranges")));
            }
            let first_range = !split.contains_key(e.rel_path.as_str());
            if (first_range && seen.contains(e.rel_path.as_str()))
                || *split.entry(&e.rel_path).or_insert(p.file_size) != p.file_size
                || !ranges.insert((&e.rel_path, p.offset))
            {
                return Err(manifest(i, format!("duplicate path or range '{rel}' at {}", p.offset)));
            }
            seen.insert(&e.rel_path);
        } else if !seen.insert(&e.rel_path) {
            return Err(manifest(i, format!("duplicate path '{rel}'")));
        }
        if e.mtime_ns >= 1_000_000_000 {
            return Err(manifest(i, format!("'{rel}' has invalid mtime nanoseconds {}", e.mtime_ns)));
        }
        if e.kind != EntryKind::Dir {
            // Nothing may lie below a file or a link (a path through a link would be written through it).
            file_paths.insert(&e.rel_path);
        }
        if e.kind == EntryKind::File {
            total_bytes = total_bytes
                .checked_add(e.size)
                .ok_or_else(|| manifest(i, format!("'{rel}': the total size overflows")))?;
        }
    }
    let file_count = entries.iter().filter(|e| e.kind == EntryKind::File).count();
    if file_count > u32::MAX as usize {
        return Err(FilesError::TooManyFiles { count: file_count });
    }
    // `a` as a file and `a/b` as anything cannot both exist.
    for (i, e) in entries.iter().enumerate() {
        for (pos, _) in e.rel_path.match_indices('/') {
            let ancestor = &e.rel_path[..pos];
            if file_paths.contains(ancestor) {
                return Err(manifest(
                    i,
                    format!("'{}' lies inside '{ancestor}', which is a file or link", shown_rel(e)),
                ));
            }
        }
    }
    Ok((total_bytes, seen))
}

/// The identity a file's resume journal must match: the source as the sender announced it (size, mtime,
/// mode) and its manifest path.
pub(super) fn identity_of(e: &Entry) -> FileIdentity {
    FileIdentity {
        size: e.size,
        mtime_ns: e.mtime_s.saturating_mul(1_000_000_000).saturating_add(i64::from(e.mtime_ns)),
        mode: e.mode,
        path_hash: match e.piece.as_deref() {
            // A range's journal is the range's alone.
            Some(p) => FileIdentity::path_hash(format!("{}~{}", e.rel_path, p.offset).as_bytes()),
            None => FileIdentity::path_hash(e.rel_path.as_bytes()),
        },
    }
}

/// The partial name of a file entry named `name`: its own, or its range's (module `pieces`).
pub(super) fn partial_name_of(e: &Entry, name: &str) -> String {
    match e.piece.as_deref() {
        Some(p) => super::pieces::piece_partial_name(name, p.offset),
        None => partial_name(name),
    }
}

/// Creates the directory `rel` (relative to the root) and its missing parents, by descriptor beneath the
/// root; a symlink or a non-directory on the way is refused, naming `rel`.
fn mkdir_beneath(beneath: &Beneath, rel: &Path, mode: u32) -> Result<(), FilesError> {
    beneath.mkdir_all(rel, mode).map(drop).map_err(|error| dir_error(rel, error))
}

/// `error` met resolving the directory `rel`, as the typed error a peer sees (relative to the root).
fn dir_error(rel: &Path, error: io::Error) -> FilesError {
    let path = rel.to_path_buf();
    FilesError::Path(if is_symlink_refused(&error) {
        PathError::SymlinkEscape { path }
    } else if error.kind() == io::ErrorKind::NotADirectory {
        PathError::NotADirectory { path }
    } else {
        PathError::Io { path, error }
    })
}

/// A final name may replace a regular file (or nothing), never a directory, a symlink, a device, a FIFO or
/// a socket: the peer must not choose to destroy (or, through a later open, write into) special files.
fn check_replaceable(beneath: &Beneath, parents: &mut ParentCache, rel: &Path) -> Result<(), FilesError> {
    let (dir, name) =
        beneath.parent_cached(parents, rel).map_err(|error| dir_error(rel.parent().unwrap_or(rel), error))?;
    check_replaceable_at(dir, name, rel)
}

/// [`check_replaceable`] of `name` in an already resolved `dir` (`shown` names it).
pub(super) fn check_replaceable_at(dir: &Dir, name: &OsStr, shown: &Path) -> Result<(), FilesError> {
    let s = match dir.stat(name) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(FilesError::Io { op: FileOp::Read, path: shown.to_path_buf(), error }),
    };
    let Some(what) = stat_not_a_file(&s) else { return Ok(()) };
    Err(FilesError::NotReplaceable { path: shown.to_path_buf(), what })
}

/// Why a link entry was refused: a manifest contradiction, or something on disk.
enum LinkProblem {
    Files(FilesError),
    Manifest(String),
}

/// Lays out a link entry: its parent directory (created like a file's), its final and temporary names, and
/// for a hard link the final path of the file it names, which must come earlier in the manifest.
#[allow(clippy::too_many_arguments)]
fn link_slot(
    beneath: &Beneath,
    dest: &Path,
    e: &Entry,
    rel: &RelPath,
    tag: u64,
    index: usize,
    ensured: &mut HashSet<RelPath>,
    file_finals: &HashSet<&str>,
) -> Result<LinkSlot, LinkProblem> {
    let target = match e.kind {
        EntryKind::HardLink => {
            let first = sanitize_relative(&e.link_target).map_err(|err| LinkProblem::Manifest(err.to_string()))?;
            if !file_finals.contains(first.to_string().as_str()) {
                return Err(LinkProblem::Manifest(format!(
                    "'{rel}' is a hard link to '{first}', which is not a file earlier in the manifest"
                )));
            }
            // The file's final path, as its slot has it (the destination, its parent, its name).
            dest.join(first.to_path_buf())
        }
        _ => PathBuf::from(&e.link_target),
    };
    let parent = rel.parent().unwrap_or_else(RelPath::root);
    let dir = dest.join(parent.to_path_buf());
    if !ensured.contains(&parent) {
        mkdir_beneath(beneath, &dir, DIR_MODE_DURING).map_err(LinkProblem::Files)?;
        ensured.insert(parent);
    }
    let name = rel.file_name().unwrap_or_default();
    let shown = dir.join(name);
    let blocker = link_blocker(beneath, &shown)
        .map_err(|error| LinkProblem::Files(FilesError::Io { op: FileOp::Read, path: shown.clone(), error }))?;
    if let Some(what) = blocker {
        return Err(LinkProblem::Files(FilesError::NotReplaceable { path: shown, what }));
    }
    let part = temp_name(name, tag, index as u32);
    let temp = format!("{}.link", part.strip_suffix(".part").unwrap_or(&part));
    Ok(LinkSlot {
        kind: e.kind,
        temp: dir.join(temp),
        shown,
        target,
        mtime_s: e.mtime_s,
        mtime_ns: e.mtime_ns,
        meta: EntryMeta::of(e),
    })
}

/// `.<name>.mover-<tag>.part`; if that exceeds the 255-byte name limit, the name is shortened and the file
/// id added (`.<prefix>~<id>.mover-<tag>.part`) to keep temporary names distinct.
fn temp_name(name: &str, tag: u64, file_id: u32) -> String {
    let suffix = format!(".mover-{tag:016x}.part");
    let full = format!(".{name}{suffix}");
    if full.len() <= MAX_COMPONENT_LEN {
        return full;
    }
    let marker = format!("~{file_id}");
    let mut cut = MAX_COMPONENT_LEN - 1 - suffix.len() - marker.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{marker}{suffix}", &name[..cut])
}

/// An entry's path as messages show it (sanitized: pass 1 of [`DestTree::prepare`] refused any other).
fn shown_rel(e: &Entry) -> String {
    sanitize_relative(&e.rel_path).map_or_else(|_| e.rel_path.clone(), |r| r.to_string())
}

/// A temporary path's key in the set that finds collisions: equal paths have equal keys, so no collision
/// is missed; two different paths share one only if a peer crafted them to, which refuses its own manifest.
fn temp_key(temp: &Path) -> u128 {
    use std::os::unix::ffi::OsStrExt;
    xxhash_rust::xxh3::xxh3_128(temp.as_os_str().as_bytes())
}

/// The manifest-relative path a temporary file would have, to check it against the entries.
fn temp_rel(rel: &RelPath, temp: &Path) -> String {
    let name = temp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match rel.parent() {
        Some(p) if !p.is_root() => format!("{p}/{name}"),
        _ => name,
    }
}

/// The announced mtime as a `SystemTime` (seconds may be negative: before 1970).
fn mtime(s: i64, ns: u32) -> io::Result<SystemTime> {
    let base = if s >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(s.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(s.unsigned_abs()))
    };
    base.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(ns))))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("mtime {s}.{ns:09} is out of range")))
}

/// Sets atime and mtime to the announced mtime. `File::set_times` is `futimens(2)` on Linux, with
/// nanosecond precision, which is what we would call through libc (without needing `unsafe`).
fn set_mtime(file: &File, s: i64, ns: u32) -> io::Result<()> {
    let t = mtime(s, ns)?;
    file.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
}

fn apply_dir_meta(beneath: &Beneath, d: &DirSlot, policy: &mut MetaPolicy) -> io::Result<()> {
    // Through a descriptor opened beneath the root, so a directory swapped for a symlink since `prepare`
    // makes this fail instead of changing the symlink's target.
    let dir = beneath.open(&d.shown, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // Owner before mode: chown clears set-group-ID.
    policy.apply_fd(&dir, &d.meta);
    dir.set_permissions(fs::Permissions::from_mode(d.mode))?;
    set_mtime(&dir, d.mtime_s, d.mtime_ns)
}

impl BlockStore for DestTree {
    fn write_block(&mut self, file_id: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_range(file_id, offset, data.len())?;
        let sparse = self.is_sparse(file_id) && is_all_zero(data);
        let r = self.temp_file(file_id).and_then(|f| {
            if sparse && punch_hole(f, offset, data.len() as u64).is_ok() {
                return Ok(());
            }
            f.write_all_at(data, offset)
        });
        r.map_err(|e| {
            let path = self.files[file_id as usize].shown.display();
            io::Error::new(e.kind(), format!("writing '{path}': {e}"))
        })
    }

    fn hash_back(&mut self, job: HashJob, scratch: &mut [u8]) -> Option<HashDone> {
        let file_id = job.file_id;
        Some(job.run(scratch, |offset, buf| self.read_at(file_id, offset, buf)))
    }

    fn commit(&mut self, file_id: u32) -> io::Result<()> {
        if matches!(self.slot(file_id)?.state, State::Committed | State::Skipped) {
            return Ok(());
        }
        // Through the claim's descriptor (taken again if it was released); a failed commit leaves the file
        // `Created` and claimed, for the protocol to try again or the abort to remove.
        self.temp_file(file_id)?;
        let f = &self.files[file_id as usize];
        let file =
            f.claim.as_ref().map(Claim::file).ok_or_else(|| io::Error::other("the partial's claim was released"))?;
        let err = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("committing '{}': {what}: {e}", f.shown.display()))
        };
        if let Some((piece, version)) = f.piece.as_deref().copied() {
            // A verified range: kept under its done name until every range of the file is (module `pieces`).
            if self.fsync {
                file.sync_all().map_err(|e| err("fsync", e))?;
            }
            let (dir, temp) = self.beneath.parent(&f.shown_temp).map_err(|e| err("opening its directory", e))?;
            let name = f.shown.file_name().and_then(OsStr::to_str).unwrap_or_default();
            let done = super::pieces::piece_done_name(name, piece.offset, version);
            dir.rename(temp, &dir, OsStr::new(&done), false).map_err(|e| err("rename", e))?;
            let f = &mut self.files[file_id as usize];
            f.state = State::Committed;
            f.claim = None;
            self.claims.ended();
            let _ = self.drop_journal(file_id, true);
            return self.assemble(file_id);
        }
        // Owner and attributes before the mode: chown clears set-ID bits.
        self.policy.apply_fd(file, &f.meta);
        let mode = self.policy.file_mode(f.mode);
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| err("chmod", e))?;
        set_mtime(file, f.mtime_s, f.mtime_ns).map_err(|e| err("setting mtime", e))?;
        if self.fsync {
            file.sync_all().map_err(|e| err("fsync", e))?;
        }
        // The directory is resolved once, now, and both names are taken relative to it: whatever is swapped
        // in above it meanwhile, the rename happens in the directory that was checked.
        let (dir, name) = self.beneath.parent(&f.shown).map_err(|e| err("opening its directory", e))?;
        let temp = f.shown_temp.file_name().unwrap_or_default();
        check_replaceable_at(&dir, name, &f.shown).map_err(|e| {
            let kind = match &e {
                FilesError::Io { error, .. } => error.kind(),
                _ => io::ErrorKind::AlreadyExists,
            };
            io::Error::new(kind, e.to_string())
        })?;
        dir.rename(temp, &dir, name, false).map_err(|e| err("rename", e))?;
        // Only a journaled size or a partial an earlier run left can have a journal: for the small files
        // this session created, looking for one cost a parent resolution and a failed unlink per file.
        let journal_possible = f.size >= super::JOURNAL_MIN_BYTES || f.claim.as_ref().is_none_or(|c| c.existed);
        self.files[file_id as usize].state = State::Committed;
        // The claim ends, closing the partial's last descriptor of this tree.
        self.files[file_id as usize].claim = None;
        self.claims.ended();
        if journal_possible {
            // The file is in place: its journal has nothing left to resume (one left by a crash here is swept).
            let _ = self.drop_journal(file_id, true);
        } else {
            self.generations[file_id as usize].store(JOURNAL_DONE, Ordering::Release);
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        DestTree::finish(self)
    }

    fn reset(&mut self, file_id: u32) -> io::Result<()> {
        if matches!(self.slot(file_id)?.state, State::NotCreated | State::Skipped) {
            return Ok(());
        }
        // The partial failed verification: its journal vouches for bytes that are not the file's; the file
        // starts over, with a fresh journal.
        self.drop_journal(file_id, false).map_err(|e| {
            let path = self.files[file_id as usize].shown.display();
            io::Error::new(e.kind(), format!("removing the journal of '{path}': {e}"))
        })?;
        self.files[file_id as usize].trusted = Vec::new();
        let size = self.slot(file_id)?.size;
        let r = self.temp_file(file_id).and_then(|f| {
            f.set_len(0)?;
            f.set_len(size)
        });
        r.map_err(|e| {
            let path = self.files[file_id as usize].shown.display();
            io::Error::new(e.kind(), format!("discarding '{path}': {e}"))
        })
    }
}

impl Drop for DestTree {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::sanitize::{sanitize_dest_dir, sanitize_relative};
    use crate::testing::TempDir;
    use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};

    const TAG: u64 = 0x0123_4567_89ab_cdef;

    fn file(p: &str, size: u64, mode: u32, mtime_s: i64, mtime_ns: u32) -> Entry {
        Entry { rel_path: p.into(), kind: EntryKind::File, size, mode, mtime_s, mtime_ns, ..Entry::default() }
    }
    fn dir(p: &str, mode: u32, mtime_s: i64, mtime_ns: u32) -> Entry {
        Entry { rel_path: p.into(), kind: EntryKind::Dir, size: 0, mode, mtime_s, mtime_ns, ..Entry::default() }
    }
    fn rel(s: &str) -> RelPath {
        sanitize_relative(s).unwrap()
    }
    fn count_all(p: &Path) -> usize {
        fs::read_dir(p)
            .unwrap()
            .map(|e| 1 + e.map(|e| if e.file_type().unwrap().is_dir() { count_all(&e.path()) } else { 0 }).unwrap())
            .sum()
    }

    #[test]
    fn round_trip() {
        let t = TempDir::new("dest");
        let entries = [
            dir("d", 0o750, 1_500_000_000, 111),
            file("d/a", 10_000, 0o640, 1_600_000_000, 123_456_789),
            file("d/sub/empty", 0, 0o604, 1_700_000_000, 5),
            file("top", 5, 0o4755, 1_000, 0),
        ];
        let mut tree = DestTree::prepare(t.path(), &sanitize_dest_dir("in/coming").unwrap(), &entries, TAG).unwrap();
        assert_eq!((tree.file_count(), tree.total_bytes()), (3, 10_005));
        let base = t.path().join("in/coming");
        assert!(base.join("d/sub").is_dir(), "parent of a file created");
        assert_eq!(fs::metadata(base.join("d")).unwrap().mode() & 0o7777, 0o700);

        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        // Out of order, the last block first.
        for off in [9_000usize, 0, 5_000, 1_000, 7_000, 2_000, 4_000, 8_000, 3_000, 6_000] {
            tree.write_block(0, off as u64, &data[off..off + 1_000]).unwrap();
        }
        let temp = base.join("d/.a.mover.part");
        assert_eq!(fs::metadata(&temp).unwrap().len(), 10_000);
        assert_eq!(fs::metadata(&temp).unwrap().mode() & 0o7777, 0o600);
        assert!(!base.join("d/a").exists(), "final name visible before commit");
        let mut back = vec![0u8; 2_500];
        tree.read_at(0, 4_000, &mut back).unwrap();
        assert_eq!(back, &data[4_000..6_500]);

        tree.commit(0).unwrap();
        let a = base.join("d/a");
        // Metadata first: reading the file may update its atime (relatime).
        let m = fs::metadata(&a).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
        assert_eq!((m.atime(), m.atime_nsec()), (1_600_000_000, 123_456_789));
        assert_eq!(fs::read(&a).unwrap(), data);
        assert!(!temp.exists());
        tree.commit(0).unwrap(); // idempotent
        assert!(tree.write_block(0, 0, b"x").is_err(), "write after commit");

        // An empty file is committed without ever being written.
        tree.commit(1).unwrap();
        assert_eq!(fs::metadata(base.join("d/sub/empty")).unwrap().len(), 0);

        tree.write_block(2, 0, b"hello").unwrap();
        assert!(tree.finish().is_err(), "finish with an uncommitted file");
        tree.commit(2).unwrap();
        // Set-user-ID is dropped.
        assert_eq!(fs::metadata(base.join("top")).unwrap().mode() & 0o7777, 0o755);

        tree.finish().unwrap();
        let m = fs::metadata(base.join("d")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o750);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 111));
        drop(tree);
        assert_eq!(fs::read(base.join("top")).unwrap(), b"hello");
        // Nothing left over: d, d/a, d/sub, d/sub/empty, top.
        assert_eq!(count_all(&base), 5);
    }

    /// Issue 18, item 4: many small files are written through their claimed descriptor (not reopened by name)
    /// and committed without a journal lookup. Far more files than the bound on claims, written in two
    /// interleaved passes so every claim is released and taken again: never more claims than the bound, each
    /// file lands byte-identical with its mode and mtime, no partial stays, and a stale journal an earlier
    /// run left beside a partial is still removed.
    #[test]
    fn many_small_files_land_whole_through_their_claims() {
        let t = TempDir::new("dest-many");
        let n = 300;
        let entries: Vec<Entry> =
            (0..n).map(|i| file(&format!("d{}/f{i}", i % 3), 4096, 0o644, 1_600_000_000 + i as i64, 7)).collect();
        let base = t.path().join("in");
        // An earlier run's partial of f5 (never journaled at this size) with a journal beside it.
        fs::create_dir_all(base.join("d2")).unwrap();
        fs::write(base.join("d2/.f5.mover.part"), vec![0xee; 4096]).unwrap();
        let stale = base.join("d2/.f5.mover.part.journal");
        fs::write(&stale, b"not a journal").unwrap();
        let mut tree = DestTree::prepare(t.path(), &sanitize_dest_dir("in").unwrap(), &entries, TAG).unwrap();
        tree.claims = ClaimBound::new(n, 16);
        let data = |i: usize| -> Vec<u8> { (0..4096).map(|k| (k * 13 + i * 7) as u8).collect() };
        for half in [2048usize, 0] {
            for i in 0..n {
                tree.write_block(i as u32, half as u64, &data(i)[half..half + 2048]).unwrap();
                assert!(tree.claims.held() <= 16, "{} claims held", tree.claims.held());
            }
        }
        let held = tree.files.iter().filter(|f| f.claim.is_some()).count();
        assert_eq!((held, tree.claims.held()), (16, 16));
        for i in 0..n {
            tree.commit(i as u32).unwrap();
        }
        tree.finish().unwrap();
        drop(tree);
        for (i, e) in entries.iter().enumerate() {
            let p = base.join(&e.rel_path);
            let m = fs::metadata(&p).unwrap();
            assert_eq!((m.mode() & 0o7777, m.mtime(), m.mtime_nsec()), (0o644, 1_600_000_000 + i as i64, 7));
            assert_eq!(fs::read(&p).unwrap(), data(i), "{}", e.rel_path);
        }
        assert!(!stale.exists(), "the stale journal of a partial an earlier run left stayed");
        // Nothing but the three directories and the files.
        assert_eq!(count_all(&base), n + 3);
    }

    #[test]
    fn abort_and_drop_remove_only_temporaries() {
        let t = TempDir::new("dest");
        fs::write(t.path().join("old"), b"previous contents").unwrap();
        let entries = [file("old", 3, 0o644, 0, 0), file("new", 3, 0o644, 0, 0), file("done", 3, 0o644, 0, 0)];
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, TAG).unwrap();
        tree.write_block(0, 0, b"abc").unwrap();
        tree.write_block(1, 0, b"abc").unwrap();
        tree.write_block(2, 0, b"xyz").unwrap();
        tree.commit(2).unwrap();
        assert_eq!(count_all(t.path()), 4); // old, done, two temporaries
        drop(tree);
        assert_eq!(fs::read(t.path().join("old")).unwrap(), b"previous contents");
        assert_eq!(fs::read(t.path().join("done")).unwrap(), b"xyz");
        assert!(!t.path().join("new").exists());
        assert_eq!(count_all(t.path()), 2);

        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, TAG + 1).unwrap();
        tree.write_block(1, 0, b"abc").unwrap();
        tree.abort();
        assert_eq!(count_all(t.path()), 2);
    }

    /// An aborting session removes its own partial, never a newer one under the same name: here the partial
    /// it claimed is replaced (as when it was removed and a later session created and claimed its own) and
    /// the abort must leave the replacement, bytes and all.
    #[test]
    fn abort_leaves_a_partial_that_replaced_the_claimed_one() {
        let t = TempDir::new("dest-abort-replaced");
        let entries = [file("a", 3, 0o644, 0, 0), file("b", 3, 0o644, 0, 0)];
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, TAG).unwrap();
        tree.write_block(0, 0, b"abc").unwrap();
        tree.write_block(1, 0, b"abc").unwrap();
        let temp = t.path().join(partial_name("a"));
        fs::remove_file(&temp).unwrap();
        fs::write(&temp, b"another session's").unwrap();
        tree.abort();
        assert_eq!(fs::read(&temp).unwrap(), b"another session's", "the abort removed a partial it did not claim");
        assert!(!t.path().join(partial_name("b")).exists(), "the abort left its own partial");
    }

    #[test]
    fn reset_discards_and_reopens_after_eviction() {
        let t = TempDir::new("dest");
        let entries: Vec<Entry> = (0..5).map(|i| file(&format!("f{i}"), 8, 0o644, 0, 0)).collect();
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, TAG).unwrap();
        tree.claims = ClaimBound::new(tree.files.len(), 2);
        for i in 0..5 {
            tree.write_block(i, 0, b"1234").unwrap();
        }
        for i in 0..5 {
            tree.write_block(i, 4, b"5678").unwrap();
            assert!(tree.claims.held() <= 2);
        }
        let mut buf = [0u8; 8];
        tree.read_at(0, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"12345678");
        tree.reset(0).unwrap();
        tree.read_at(0, 0, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 8]);
        tree.reset(1).unwrap();
        tree.write_block(1, 0, b"abcdefgh").unwrap();
        tree.commit(1).unwrap();
        assert_eq!(fs::read(t.path().join("f1")).unwrap(), b"abcdefgh");
        assert!(tree.reset(1).is_err(), "reset after commit");
    }

    /// A partial whose claim was released to bound the claims is taken again only if its name still holds
    /// that very file: one replaced meanwhile (by another session) is refused with its name and left alone
    /// by the abort, while the abort removes the released partials that are still this session's.
    #[test]
    fn a_released_partial_is_taken_again_only_if_it_is_the_same_file() {
        let t = TempDir::new("dest-released");
        let entries: Vec<Entry> = (0..6).map(|i| file(&format!("f{i}"), 8, 0o644, 0, 0)).collect();
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &entries, TAG).unwrap();
        tree.claims = ClaimBound::new(tree.files.len(), 2);
        for i in 0..6 {
            tree.write_block(i, 0, b"1234").unwrap();
        }
        assert!(tree.files[0].claim.is_none() && tree.files[0].released.is_some(), "f0's claim was kept");
        // Another session replaces f0's partial while its claim is released.
        let p0 = t.path().join(partial_name("f0"));
        fs::remove_file(&p0).unwrap();
        fs::write(&p0, b"theirs!!").unwrap();
        let e = tree.write_block(0, 4, b"5678").unwrap_err();
        assert!(e.to_string().contains(".f0.mover.part") && e.to_string().contains("another file"), "{e}");
        // f1 is taken again (the same file) and holds both writes.
        tree.write_block(1, 4, b"5678").unwrap();
        let mut buf = [0u8; 8];
        tree.read_at(1, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"12345678");
        tree.abort();
        assert_eq!(fs::read(&p0).unwrap(), b"theirs!!", "the abort removed a partial it no longer held");
        for i in 1..6 {
            assert!(!t.path().join(partial_name(&format!("f{i}"))).exists(), "f{i}'s partial stayed");
        }
    }

    #[test]
    fn refuses_bad_manifests_creating_nothing() {
        let t = TempDir::new("dest");
        let dd = sanitize_dest_dir("x").unwrap();
        let bad: [(&[Entry], &str); 5] = [
            (&[dir("a", 0o755, 0, 0), file("a/../../etc/passwd", 1, 0o644, 0, 0)], "'..'"),
            (&[file("a", 1, 0o644, 0, 0), file("a", 1, 0o644, 0, 0)], "duplicate"),
            (&[file("/etc/passwd", 1, 0o644, 0, 0)], "absolute"),
            (&[file("a", 1, 0o644, 0, 0), file("a/b", 1, 0o644, 0, 0)], "which is a file"),
            (&[file("a", 1, 0o644, 0, 1_000_000_000)], "nanoseconds"),
        ];
        for (entries, why) in bad {
            let e = DestTree::prepare(t.path(), &dd, entries, TAG).err().unwrap().to_string();
            assert!(e.contains(why), "{e}");
            assert_eq!(count_all(t.path()), 0, "something was created for {why}");
        }
        let e = DestTree::prepare(&t.path().join("nope"), &dd, &[], TAG).err().unwrap().to_string();
        assert!(e.contains("destination root"), "{e}");
        fs::write(t.path().join("f"), b"").unwrap();
        let e = DestTree::prepare(&t.path().join("f"), &dd, &[], TAG).err().unwrap().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn refuses_special_files_at_a_final_or_temporary_name() {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let t = TempDir::new("dest-special");
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        // Safety: valid NUL-terminated paths for the duration of each call.
        assert_eq!(unsafe { libc::mkfifo(c(&t.path().join("fifo")).as_ptr(), 0o600) }, 0);
        let _sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
        let mut special = vec![("fifo", "FIFO"), ("sock", "socket")];
        // Safety: as above; mknod of a character device needs root, and the test says so when it skips it.
        if unsafe { libc::mknod(c(&t.path().join("dev")).as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) } == 0 {
            special.push(("dev", "device file"));
        } else {
            let case = "refuses_special_files_at_a_final_or_temporary_name (its device-file case)";
            crate::testing::skip_or_fail(case, "mknod needs root");
        }
        for (name, what) in special {
            let e = DestTree::prepare(t.path(), &RelPath::root(), &[file(name, 1, 0o644, 0, 0)], TAG)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&format!("it is a {what}")), "{e}");
        }
        // A FIFO planted under the temporary name is refused when the file is created, not opened (an open
        // for writing would block until a reader came).
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &[file("f", 1, 0o644, 0, 0)], TAG).unwrap();
        let temp = t.path().join(partial_name("f"));
        // Safety: as above.
        assert_eq!(unsafe { libc::mkfifo(c(&temp).as_ptr(), 0o600) }, 0);
        let e = tree.write_block(0, 0, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        drop(tree);
        assert!(fs::symlink_metadata(&temp).unwrap().file_type().is_fifo(), "the FIFO was replaced");
        assert!(!t.path().join("f").exists());
    }

    #[test]
    fn refuses_symlinks_and_directories_in_the_way() {
        let t = TempDir::new("dest");
        let outside = TempDir::new("dest-outside");
        symlink(outside.path(), t.path().join("link")).unwrap();
        let e = DestTree::prepare(t.path(), &rel("link"), &[file("a", 1, 0o644, 0, 0)], TAG).err().unwrap().to_string();
        assert!(e.contains("symlink escape"), "{e}");
        let e = DestTree::prepare(t.path(), &RelPath::root(), &[file("link/a", 1, 0o644, 0, 0)], TAG)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("symlink escape"), "{e}");
        // A final name that is a symlink is refused, not written through.
        let e = DestTree::prepare(t.path(), &RelPath::root(), &[file("link", 1, 0o644, 0, 0)], TAG)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(count_all(outside.path()), 0);

        // A directory appearing under the final name during the transfer is refused at commit.
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &[file("late", 1, 0o644, 0, 0)], TAG).unwrap();
        tree.write_block(0, 0, b"x").unwrap();
        fs::create_dir(t.path().join("late")).unwrap();
        let e = tree.commit(0).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        drop(tree);
        assert_eq!(count_all(t.path()), 2); // link, late/
    }

    #[test]
    fn writes_outside_the_announced_size_are_refused() {
        let t = TempDir::new("dest");
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &[file("a", 10, 0o644, 0, 0)], TAG).unwrap();
        assert!(tree.write_block(0, 8, b"abc").is_err());
        assert!(tree.write_block(0, u64::MAX, b"a").is_err());
        assert!(tree.write_block(1, 0, b"a").is_err());
        tree.write_block(0, 7, b"abc").unwrap();
        let mut b = [0u8; 11];
        assert!(tree.read_at(0, 0, &mut b).is_err());
    }

    #[test]
    fn long_names_get_short_distinct_temporaries() {
        let long = "n".repeat(255);
        let a = partial_name(&long);
        let b = partial_name(&"m".repeat(255));
        assert!(a.len() <= 255 && b.len() <= 255 && a != b, "{a} {b}");
        assert_eq!(partial_name("x.bin"), ".x.bin.mover.part");
        let t = TempDir::new("dest");
        let mut tree = DestTree::prepare(t.path(), &RelPath::root(), &[file(&long, 1, 0o644, 0, 0)], TAG).unwrap();
        tree.write_block(0, 0, b"x").unwrap();
        tree.commit(0).unwrap();
        assert_eq!(fs::read(t.path().join(&long)).unwrap(), b"x");
    }
}
