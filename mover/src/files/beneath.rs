//! File-system operations beneath a root directory, by descriptor: nothing a local process does to the
//! tree while a session runs (swapping a directory for a symlink between two calls) can make a read or a
//! write land outside the root.
//!
//! [`Beneath`] holds a descriptor of the root. A path below it is resolved to its parent directory's
//! descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (Linux 5.6), or,
//! where `openat2` is missing (an old kernel or a seccomp filter answering `ENOSYS`), by a walk that opens one
//! component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)` from the descriptor before: just as strict,
//! one syscall per component. The last component is then handled by a `*at` call relative to that
//! descriptor that does not follow a symlink either (`openat(O_NOFOLLOW)`, `mkdirat`, `renameat2`,
//! `unlinkat`, `utimensat(AT_SYMLINK_NOFOLLOW)`, ...). A directory swapped for a symlink after it was
//! resolved does not matter: the descriptor still names the directory that was checked.
//!
//! The root itself is trusted (it is the server's configuration, and may be a symlink such as
//! `/data -> /mnt/data`); only what lies below it is resolved this way.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// How paths below the root are resolved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// `openat2` where the kernel has it, else [`Resolve::Walk`] (decided per call: `ENOSYS` falls back).
    Auto,
    /// One `openat(O_NOFOLLOW | O_DIRECTORY)` per component (what a kernel without `openat2` gets; tests
    /// force it to prove the fallback is as strict).
    Walk,
}

/// A root directory that every operation stays beneath.
#[derive(Debug)]
pub struct Beneath {
    root: Dir,
    resolve: Resolve,
}

/// An open directory (an `O_PATH` descriptor): the anchor of `*at` calls on the names inside it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// The directory one pass resolved last ([`Beneath::parent_cached`]); start a new one for each pass.
#[derive(Debug, Default)]
pub struct ParentCache {
    last: Option<(std::path::PathBuf, Dir)>,
}

/// What `fstatat(AT_SYMLINK_NOFOLLOW)` says of one name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_s: i64,
    /// Nanoseconds of the modification time.
    pub mtime_ns: u32,
    /// Device of the file system.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Hard link count.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// 512-byte blocks allocated.
    pub blocks: u64,
}

impl From<&std::fs::Metadata> for Stat {
    fn from(m: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            mode: m.mode(),
            size: m.size(),
            mtime_s: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec().clamp(0, 999_999_999)).unwrap_or(0),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            blocks: m.blocks(),
        }
    }
}

impl Stat {
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// What [`symlink_refused`] says.
const SYMLINK_REFUSED: &str = "its path passes through a symbolic link (nothing is read or written through one)";

/// The error for a path that would pass through a symlink below the root.
pub fn symlink_refused() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, SYMLINK_REFUSED)
}

/// Whether `e` is [`symlink_refused`]'s error (callers turn it into their own "symlink escape").
pub fn is_symlink_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        && e.raw_os_error().is_none()
        && e.get_ref().is_some_and(|inner| inner.to_string() == SYMLINK_REFUSED)
}

impl Resolve {
    /// The mode the daemon's file-system floor uses: [`Resolve::Auto`], unless the environment variable
    /// `MOVER_RESOLVE` is `walk` (a test hook: the symlink-race tests run a real daemon both ways, proving
    /// the fallback a kernel without `openat2` gets is as strict). Read once per process.
    pub fn configured() -> Resolve {
        static MODE: std::sync::OnceLock<Resolve> = std::sync::OnceLock::new();
        *MODE.get_or_init(|| match std::env::var("MOVER_RESOLVE").as_deref() {
            Ok("walk") => Resolve::Walk,
            _ => Resolve::Auto,
        })
    }
}

impl Beneath {
    /// Opens `root` (which may itself be a symlink: it is trusted).
    pub fn new(root: &Path) -> io::Result<Beneath> {
        let c = cstr(root.as_os_str())?;
        // Safety: a NUL-terminated path; the result is checked.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        Ok(Beneath { root: Dir { fd: owned(fd)? }, resolve: Resolve::Auto })
    }

    /// The same root resolved the given way (tests force [`Resolve::Walk`]).
    pub fn with_resolve(mut self, resolve: Resolve) -> Beneath {
        self.resolve = resolve;
        self
    }

    /// The root's own descriptor.
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// The existing directory `rel` (empty: the root), every component a real directory, none a symlink.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        let rel = checked(rel)?;
        if rel.as_os_str().is_empty() {
            return self.root.try_clone();
        }
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        if self.resolve == Resolve::Auto {
            match openat2_beneath(self.root.raw(), rel, flags, 0) {
                // ENOTDIR: a component is not a directory, or the last is a symlink (O_DIRECTORY and
                // O_NOFOLLOW); the walk says which.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::ENOTDIR)) => {}
                r => return r.map(|fd| Dir { fd }),
            }
        }
        self.walk(rel, None)
    }

    /// The directory `rel`, creating missing components with `mode` (subject to the umask), one `mkdirat` at
    /// a time in the component before. An existing symlink or non-directory on the way is refused.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        self.walk(checked(rel)?, Some(mode))
    }

    /// Opens the file `rel` with `flags` (`O_RDONLY`, `O_RDWR | O_CREAT | O_EXCL`, ...; `mode` when
    /// creating): no component, the last included, may be a symlink.
    pub fn open(&self, rel: &Path, flags: i32, mode: u32) -> io::Result<File> {
        let rel = checked(rel)?;
        if self.resolve == Resolve::Auto {
            match openat2_beneath(self.root.raw(), rel, flags, mode) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
                r => return r.map(File::from),
            }
        }
        let (dir, name) = self.parent(rel)?;
        dir.open(name, flags, mode)
    }

    /// The directory holding `rel` and `rel`'s last component (`rel` must not be empty).
    pub fn parent<'a>(&self, rel: &'a Path) -> io::Result<(Dir, &'a OsStr)> {
        let rel = checked(rel)?;
        let name = rel.file_name().ok_or_else(|| invalid("an empty path has no parent"))?;
        let dir = self.dir(rel.parent().unwrap_or(Path::new("")))?;
        Ok((dir, name))
    }

    /// [`Beneath::parent`], reusing the directory `cache` resolved last when `rel` lies in it too: one pass
    /// over a manifest (whose files come grouped by directory) resolves each directory once instead of once
    /// per file. The cached descriptor was resolved beneath the root like any other, moments before; a swap
    /// after that leaves it naming the directory that was checked.
    pub fn parent_cached<'c, 'a>(&self, cache: &'c mut ParentCache, rel: &'a Path) -> io::Result<(&'c Dir, &'a OsStr)> {
        let rel = checked(rel)?;
        let name = rel.file_name().ok_or_else(|| invalid("an empty path has no parent"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        if !matches!(&cache.last, Some((p, _)) if p == parent) {
            cache.last = None;
            cache.last = Some((parent.to_path_buf(), self.dir(parent)?));
        }
        let (_, dir) = cache.last.as_ref().expect("resolved just above");
        Ok((dir, name))
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)` of `rel` (the root for an empty path).
    pub fn stat(&self, rel: &Path) -> io::Result<Stat> {
        if checked(rel)?.as_os_str().is_empty() {
            return self.root.stat_self();
        }
        let (dir, name) = self.parent(rel)?;
        dir.stat(name)
    }

    fn walk(&self, rel: &Path, create: Option<u32>) -> io::Result<Dir> {
        let mut cur = self.root.try_clone()?;
        for c in rel.components() {
            let Component::Normal(name) = c else { return Err(invalid("not a plain relative path")) };
            cur = match cur.sub(name) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && create.is_some() => {
                    match cur.mkdir(name, create.unwrap_or(0o700)) {
                        Ok(()) => {}
                        // Someone made it meanwhile: judge what is there now, below.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                    cur.sub(name)?
                }
                r => r?,
            };
        }
        Ok(cur)
    }
}

impl Dir {
    /// Whether this process may create names in the directory (`faccessat(W_OK, AT_EACCESS)`): a read-only
    /// file system or a missing permission, found before a transfer starts rather than at its first file.
    pub fn check_writable(&self) -> io::Result<()> {
        // Safety: a valid descriptor and a NUL-terminated name.
        check(unsafe { libc::faccessat(self.raw(), c".".as_ptr(), libc::W_OK, libc::AT_EACCESS) })
    }

    /// The raw descriptor (for `*at` calls elsewhere, e.g. io_uring).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A second descriptor of the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()? })
    }

    /// The subdirectory `name`, which must be a real directory (a symlink is refused).
    pub fn sub(&self, name: &OsStr) -> io::Result<Dir> {
        let c = cstr(one(name)?)?;
        // O_PATH | O_NOFOLLOW would give a descriptor of a symlink itself; O_DIRECTORY makes that ENOTDIR.
        // Safety: a valid directory descriptor and a NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(self.raw(), c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        };
        match owned(fd) {
            Ok(fd) => Ok(Dir { fd }),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) || e.raw_os_error() == Some(libc::ELOOP) => {
                // Say which: a symlink is an escape attempt, anything else is just not a directory.
                match self.stat(name) {
                    Ok(s) if s.is_symlink() => Err(symlink_refused()),
                    _ => Err(io::Error::new(io::ErrorKind::NotADirectory, "a component is not a directory")),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Opens `name` here with `flags` (and `mode` when creating), never following a symlink.
    pub fn open(&self, name: &OsStr, flags: i32, mode: u32) -> io::Result<File> {
        let c = cstr(one(name)?)?;
        // Safety: a valid directory descriptor and a NUL-terminated name; the result is checked.
        let fd = unsafe { libc::openat(self.raw(), c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode) };
        owned(fd).map(File::from).map_err(refuse_loop)
    }

    /// Creates the directory `name` with `mode` (subject to the umask).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cstr(one(name)?)?;
        // Safety: as in `open`.
        check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), mode as libc::mode_t) })
    }

    /// Renames `name` here to `to_name` in `to` (`renameat2`; `no_replace`: fail if `to_name` exists).
    /// Neither name is followed if it is a symlink: the link itself is what moves or is replaced.
    pub fn rename(&self, name: &OsStr, to: &Dir, to_name: &OsStr, no_replace: bool) -> io::Result<()> {
        let (a, b) = (cstr(one(name)?)?, cstr(one(to_name)?)?);
        let flags = if no_replace { libc::RENAME_NOREPLACE } else { 0 };
        // Through syscall(2): the musl libc of the static build has no renameat2 wrapper (musl < 1.2.5).
        // Safety: valid descriptors and NUL-terminated names; the call returns 0 or -1.
        let rc = unsafe { libc::syscall(libc::SYS_renameat2, self.raw(), a.as_ptr(), to.raw(), b.as_ptr(), flags) };
        check(rc as libc::c_int)
    }

    /// Removes the file, symlink or (with `dir`) empty directory `name`.
    pub fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()> {
        let c = cstr(one(name)?)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // Safety: as in `open`.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), flags) })
    }

    /// Creates the symlink `name` pointing at `target` (the target is text: nothing is resolved).
    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        let (t, c) = (cstr(target)?, cstr(one(name)?)?);
        // Safety: as in `open`.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), c.as_ptr()) })
    }

    /// Makes `name` here a hard link to `from_name` in `from` (which is not followed if a symlink).
    pub fn hard_link(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        let (a, b) = (cstr(one(from_name)?)?, cstr(one(name)?)?);
        // Safety: valid descriptors and NUL-terminated names; flags 0: no AT_SYMLINK_FOLLOW.
        check(unsafe { libc::linkat(from.raw(), a.as_ptr(), self.raw(), b.as_ptr(), 0) })
    }

    /// The target text of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let c = cstr(one(name)?)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // Safety: a buffer of the length passed.
        let n = unsafe { libc::readlinkat(self.raw(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(OsString::from_vec(buf))
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)` of `name`.
    pub fn stat(&self, name: &OsStr) -> io::Result<Stat> {
        self.stat_at(&cstr(one(name)?)?, libc::AT_SYMLINK_NOFOLLOW)
    }

    /// `fstat` of this directory.
    pub fn stat_self(&self) -> io::Result<Stat> {
        self.stat_at(c"", libc::AT_EMPTY_PATH)
    }

    fn stat_at(&self, name: &std::ffi::CStr, flags: i32) -> io::Result<Stat> {
        // Safety: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // Safety: a valid descriptor, a NUL-terminated name and a stat to fill.
        check(unsafe { libc::fstatat(self.raw(), name.as_ptr(), &mut st, flags) })?;
        Ok(Stat {
            mode: st.st_mode,
            size: st.st_size as u64,
            mtime_s: st.st_mtime,
            mtime_ns: st.st_mtime_nsec as u32,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            blocks: st.st_blocks as u64,
        })
    }

    /// Sets the modification time of `name` (access time: now), not following a symlink.
    pub fn set_mtime(&self, name: &OsStr, mtime_s: i64, mtime_ns: u32) -> io::Result<()> {
        let c = cstr(one(name)?)?;
        let times = [
            libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
            libc::timespec { tv_sec: mtime_s, tv_nsec: i64::from(mtime_ns) },
        ];
        // Safety: a valid descriptor, a NUL-terminated name and two timespecs.
        check(unsafe { libc::utimensat(self.raw(), c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
    }

    /// Sets the owner and group of `name` (`u32::MAX`: leave), not following a symlink.
    pub fn set_owner(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let c = cstr(one(name)?)?;
        // Safety: as in `open`.
        check(unsafe { libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
    }

    /// Sets the permission bits of `name`, which must not be a symlink (`fchmodat` follows one; so the name
    /// is opened without following and changed through its descriptor).
    pub fn set_mode(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cstr(one(name)?)?;
        // Safety: as in `open`.
        let fd =
            owned(unsafe { libc::openat(self.raw(), c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) })?;
        let d = Dir { fd };
        if d.stat_self()?.is_symlink() {
            return Err(symlink_refused());
        }
        // An O_PATH descriptor cannot fchmod; its /proc/self/fd link names exactly the object it holds.
        let proc = CString::new(format!("/proc/self/fd/{}", d.raw())).map_err(|_| invalid("descriptor path"))?;
        // Safety: a NUL-terminated path.
        check(unsafe { libc::chmod(proc.as_ptr(), mode as libc::mode_t) })
    }

    /// Sets the extended attribute `key` of `name` itself (a symlink's own, never its target's). There is
    /// no `*at` call for attributes: the path goes through this descriptor's `/proc/self/fd` entry, which
    /// names exactly the directory held, and `lsetxattr` does not follow `name`.
    pub fn set_xattr(&self, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
        let mut path = format!("/proc/self/fd/{}/", self.raw()).into_bytes();
        path.extend_from_slice(one(name)?.as_bytes());
        let path = cstr(OsStr::from_bytes(&path))?;
        let key = CString::new(key).map_err(|_| invalid("a NUL byte in an attribute name"))?;
        // Safety: NUL-terminated path and name, `value.len()` readable bytes.
        check(unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
    }

    /// Flushes this directory's entries (after a rename into it).
    pub fn sync(&self) -> io::Result<()> {
        self.open(OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?.sync_all()
    }

    /// The names in this directory (without `.` and `..`), in the order the file system gives them.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let f = self.open(OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let fd: OwnedFd = f.into();
        // Safety: fdopendir takes the descriptor over (closed by closedir below).
        let d = unsafe { libc::fdopendir(fd.as_raw_fd()) };
        if d.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(fd);
        let mut out = Vec::new();
        loop {
            // Safety: a valid DIR*; the entry is read before the next call.
            let e = unsafe { libc::readdir64(d) };
            if e.is_null() {
                break;
            }
            // Safety: d_name is NUL-terminated within the entry.
            let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        // Safety: the DIR* from fdopendir, closed once.
        unsafe { libc::closedir(d) };
        Ok(out)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `rel` as a plain relative path: no root, no `.` or `..` (a [`super::RelPath`] always is).
fn checked(rel: &Path) -> io::Result<&Path> {
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(rel)
    } else {
        Err(invalid("not a plain relative path"))
    }
}

/// One path component: no `/`, not `..`, not empty (`.` names the directory itself: [`Dir::sync`]).
fn one(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b".." || b.contains(&b'/') {
        return Err(invalid("not a single name"));
    }
    Ok(name)
}

fn openat2_beneath(dir: RawFd, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    /// `struct open_how` of linux/openat2.h (libc's is non-exhaustive, so it cannot be built here).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let c = cstr(rel.as_os_str())?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 { u64::from(mode) } else { 0 },
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // Safety: a valid directory descriptor, a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, dir, c.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    };
    owned(fd as i32).map_err(|e| match e.raw_os_error() {
        // EXDEV: the path tried to leave the root; ELOOP: it met a symlink.
        Some(libc::ELOOP) | Some(libc::EXDEV) => symlink_refused(),
        _ => e,
    })
}

fn refuse_loop(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        symlink_refused()
    } else {
        e
    }
}

fn owned(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(r: i32) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| invalid("a NUL byte in a path"))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

// ---- For pull's reads and the partial sweep: names for calls without an `*at` form, and opening a file to
// read only if it is a regular file.

impl Beneath {
    /// How this root resolves paths.
    pub fn resolve(&self) -> Resolve {
        self.resolve
    }

    /// Opens the file `rel` for reading (`extra_flags`: e.g. `O_DIRECT`) only if it is a regular file: no
    /// component may be a symlink, and a FIFO or device swapped in is refused without blocking on it
    /// (opened `O_NONBLOCK`, checked with `fstat`, then made blocking again for the reads).
    pub fn open_regular(&self, rel: &Path, extra_flags: i32) -> io::Result<File> {
        regular(self.open(rel, libc::O_RDONLY | libc::O_NONBLOCK | extra_flags, 0)?)
    }
}

impl Dir {
    /// [`Beneath::open_regular`] of `name` in this directory.
    pub fn open_regular(&self, name: &OsStr, extra_flags: i32) -> io::Result<File> {
        regular(self.open(name, libc::O_RDONLY | libc::O_NONBLOCK | extra_flags, 0)?)
    }

    /// A path naming `name` in this directory through this process's descriptor of it
    /// (`/proc/self/fd/N/name`; `.`: the directory itself), for calls with no `*at` form (`llistxattr`,
    /// `lgetxattr`): the kernel jumps to the directory this descriptor holds, so a swap of the directory
    /// by path changes nothing; the last component is then handled by the no-follow call itself.
    pub fn proc_path(&self, name: &OsStr) -> io::Result<std::path::PathBuf> {
        let name = if name == "." { name } else { one(name)? };
        Ok(Path::new(&format!("/proc/self/fd/{}", self.raw())).join(name))
    }
}

/// `file` if it is a regular file, made blocking again; an error naming what it is otherwise.
fn regular(file: File) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (it changed since it was scanned)",
        ));
    }
    let fd = file.as_raw_fd();
    // Safety: a valid descriptor; F_GETFL/F_SETFL read and set its status flags only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    check(flags)?;
    // Safety: as above. O_NONBLOCK would make io_uring answer EAGAIN instead of waiting for the disk.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) })?;
    Ok(file)
}

/// [`Dir::check_writable`] of a directory named by path (a pull's local destination, which the user chose).
pub fn check_writable_path(path: &Path) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    // Safety: a NUL-terminated path.
    check(unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::os::unix::fs::symlink;

    fn both(root: &Path) -> [Beneath; 2] {
        [Beneath::new(root).unwrap(), Beneath::new(root).unwrap().with_resolve(Resolve::Walk)]
    }

    #[test]
    fn creates_and_opens_inside() {
        let t = TempDir::new("beneath");
        for (i, b) in both(t.path()).into_iter().enumerate() {
            let d = b.mkdir_all(Path::new(&format!("a{i}/b/c")), 0o700).unwrap();
            d.open(OsStr::new("f"), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600).unwrap();
            assert!(t.path().join(format!("a{i}/b/c/f")).is_file());
            b.open(Path::new(&format!("a{i}/b/c/f")), libc::O_RDONLY, 0).unwrap();
            assert!(b.stat(Path::new(&format!("a{i}/b/c/f"))).unwrap().is_file());
            assert!(b.stat(Path::new("")).unwrap().is_dir());
            let f = format!("a{i}/b/c/f");
            let (p, name) = b.parent(Path::new(&f)).unwrap();
            p.rename(name, &p, OsStr::new("g"), true).unwrap();
            p.set_mtime(OsStr::new("g"), 1_000_000, 5).unwrap();
            p.set_mode(OsStr::new("g"), 0o640).unwrap();
            let s = p.stat(OsStr::new("g")).unwrap();
            assert_eq!((s.mtime_s, s.mtime_ns, s.mode & 0o7777), (1_000_000, 5, 0o640));
            assert_eq!(p.names().unwrap(), vec![OsString::from("g")]);
        }
    }

    #[test]
    fn refuses_symlinks_on_the_way_and_at_the_end() {
        let t = TempDir::new("beneath-root");
        let outside = TempDir::new("beneath-outside");
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        symlink(outside.path(), t.path().join("swapped")).unwrap();
        symlink(outside.path().join("secret"), t.path().join("d/last")).unwrap();
        for b in both(t.path()) {
            let creat = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
            let e = b.open(Path::new("swapped/x"), creat, 0o600).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert!(b.open(Path::new("swapped/secret"), libc::O_RDONLY, 0).is_err());
            assert!(b.open(Path::new("d/last"), libc::O_RDONLY, 0).is_err());
            assert!(b.mkdir_all(Path::new("swapped/y"), 0o700).is_err());
            assert!(b.dir(Path::new("swapped")).is_err());
            let d = b.dir(Path::new("d")).unwrap();
            assert!(d.set_mode(OsStr::new("last"), 0o777).is_err());
            // Renaming a symlink moves the link, not its target.
            d.rename(OsStr::new("last"), &d, OsStr::new("last2"), false).unwrap();
            d.rename(OsStr::new("last2"), &d, OsStr::new("last"), false).unwrap();
            assert!(b.open(Path::new("../x"), libc::O_RDONLY, 0).is_err());
            assert!(b.open(Path::new("/etc/passwd"), libc::O_RDONLY, 0).is_err());
        }
        let mut names: Vec<_> = std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, vec![OsString::from("secret")], "something was created outside");
        assert_ne!(std::fs::metadata(outside.path().join("secret")).unwrap().permissions().mode() & 0o777, 0o777);
    }

    #[test]
    fn the_parent_cache_follows_the_directory_of_each_name() {
        let t = TempDir::new("beneath-cache");
        for b in both(t.path()) {
            b.mkdir_all(Path::new("a/x"), 0o700).unwrap();
            b.mkdir_all(Path::new("b"), 0o700).unwrap();
            let mut cache = ParentCache::default();
            for (rel, want) in [("a/x/f", "a/x"), ("a/x/g", "a/x"), ("b/f", "b"), ("top", ""), ("a/x/h", "a/x")] {
                let (dir, name) = b.parent_cached(&mut cache, Path::new(rel)).unwrap();
                dir.open(name, libc::O_RDWR | libc::O_CREAT, 0o600).unwrap();
                assert!(t.path().join(want).join(name).is_file(), "{rel}");
            }
            // A miss on a refused parent leaves nothing cached that a later name could use.
            symlink("/tmp", t.path().join("link")).unwrap();
            assert!(b.parent_cached(&mut cache, Path::new("link/f")).is_err());
            assert!(cache.last.is_none());
            std::fs::remove_file(t.path().join("link")).unwrap();
        }
    }

    #[test]
    fn a_descriptor_outlives_a_swap() {
        // Resolve a directory, then swap it for a symlink to outside: what the descriptor creates still
        // lands in the directory that was checked (now moved aside), never outside.
        let t = TempDir::new("beneath-swap");
        let outside = TempDir::new("beneath-swap-outside");
        let b = Beneath::new(t.path()).unwrap();
        let d = b.mkdir_all(Path::new("dir"), 0o700).unwrap();
        std::fs::rename(t.path().join("dir"), t.path().join("moved")).unwrap();
        symlink(outside.path(), t.path().join("dir")).unwrap();
        d.open(OsStr::new("f"), libc::O_RDWR | libc::O_CREAT, 0o600).unwrap();
        assert!(t.path().join("moved/f").is_file());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn attributes_go_on_the_name_itself_never_through_a_link() {
        let t = TempDir::new("beneath-xattr");
        std::fs::write(t.path().join("f"), b"x").unwrap();
        symlink("f", t.path().join("l")).unwrap();
        let root = Beneath::new(t.path()).unwrap();
        match root.root().set_xattr(OsStr::new("f"), "user.mover", b"v") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                return crate::testing::skip_or_fail("attributes_go_on_the_name_itself", "no user xattrs here");
            }
            Err(e) => panic!("{e}"),
        }
        let path = CString::new(t.path().join("f").as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 8];
        // Safety: a NUL-terminated path and name, and a buffer of the length passed.
        let n = unsafe { libc::getxattr(path.as_ptr(), c"user.mover".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n.max(0) as usize], b"v");
        // The kernel refuses user.* attributes on a symlink itself: what matters is that the target did not
        // get one through it.
        let _ = root.root().set_xattr(OsStr::new("l"), "user.other", b"w");
        // Safety: as above.
        let n = unsafe { libc::getxattr(path.as_ptr(), c"user.other".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n < 0, "set through the symlink");
        assert!(root.root().set_xattr(OsStr::new("../f"), "user.x", b"v").is_err());
    }

    #[test]
    fn a_root_that_is_a_symlink_is_trusted() {
        let t = TempDir::new("beneath-via-target");
        let via = TempDir::new("beneath-via");
        symlink(t.path(), via.path().join("root")).unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        Beneath::new(&via.path().join("root")).unwrap().open(Path::new("f"), libc::O_RDONLY, 0).unwrap();
    }

    use std::os::unix::fs::PermissionsExt;
}
