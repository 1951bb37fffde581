//! Keeping the receiver's writes inside its root directory.
//!
//! A [`RelPath`] cannot climb out of the root by its text, but a symlink already on disk can: if
//! `root/projects` is a symlink to `/etc`, writing `projects/passwd` would write `/etc/passwd`. So the
//! receiver never lets the OS resolve a path under the root in one go; it walks it one component at a time
//! with `lstat`, refusing symlinks and non-directories.
//!
//! TOCTOU: between the `lstat` of a component and the later `open`/`mkdir`/`rename` through it, another
//! local process with write access to the tree could swap a directory for a symlink. Closing that window
//! needs component-relative syscalls: the receiver's file data goes only through descriptors opened with
//! [`open_beneath`] (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so no byte is written through
//! a symlink, whoever made it; directory creation, renames and links still go by path (an
//! `openat(O_NOFOLLOW)` walk holding directory fds would close those too). The walk here already stops
//! everything a *remote* peer can do, since the peer only controls path text.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::sanitize::{PathError, RelPath};

/// What to do about a component that does not exist.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Missing {
    /// Create it as a directory with this mode.
    Create(u32),
    /// Leave it (and everything below it) absent.
    Allow,
}

/// Checks one existing component: it must be a real directory, not a symlink to one.
fn check_dir(path: &Path, meta: &fs::Metadata) -> Result<(), PathError> {
    let t = meta.file_type();
    if t.is_symlink() {
        Err(PathError::SymlinkEscape { path: path.to_path_buf() })
    } else if !t.is_dir() {
        Err(PathError::NotADirectory { path: path.to_path_buf() })
    } else {
        Ok(())
    }
}

fn walk(root: &Path, rel: &RelPath, missing: Missing) -> Result<PathBuf, PathError> {
    // `root` itself is trusted (it is the server's configuration, and may legitimately be a symlink such
    // as /data -> /mnt/data); only what lies below it is checked.
    let mut path = root.to_path_buf();
    let mut absent = false;
    for c in rel.components() {
        path.push(c);
        if absent {
            // An ancestor is missing and we are not creating: nothing below it can exist.
            continue;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) => check_dir(&path, &meta)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match missing {
                Missing::Allow => absent = true,
                Missing::Create(mode) => match fs::DirBuilder::new().mode(mode).create(&path) {
                    Ok(()) => {}
                    // Someone created it between our lstat and mkdir: judge what is there now.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let meta =
                            fs::symlink_metadata(&path).map_err(|error| PathError::Io { path: path.clone(), error })?;
                        check_dir(&path, &meta)?;
                    }
                    Err(error) => return Err(PathError::Io { path, error }),
                },
            },
            Err(error) => return Err(PathError::Io { path, error }),
        }
    }
    Ok(path)
}

/// Makes sure `root/rel` is a directory, creating missing components with `mode` (subject to the umask;
/// the receiver uses 0o700 while a transfer runs and applies the final modes at the end).
///
/// Walks from `root` one component at a time with `lstat`: an existing symlink is refused
/// ([`PathError::SymlinkEscape`]), as is an existing non-directory ([`PathError::NotADirectory`]). On error,
/// components created before the failing one are left in place (they are empty directories inside the
/// root). Returns `root/rel`; for [`RelPath::root`] that is `root` itself.
pub fn create_dir_under_root(root: &Path, rel: &RelPath, mode: u32) -> Result<PathBuf, PathError> {
    walk(root, rel, Missing::Create(mode))
}

/// Like [`create_dir_under_root`] but creates nothing: every component that exists must be a real
/// directory (not a symlink); components that do not exist are fine, so the returned `root/rel` may not
/// exist yet.
pub fn resolve_under_root(root: &Path, rel: &RelPath) -> Result<PathBuf, PathError> {
    walk(root, rel, Missing::Allow)
}

/// Opens `path`, which lies below `root`, with `flags` (`O_RDWR`, `O_CREAT | O_EXCL`, ...; `mode` when
/// creating), resolving every component below the root without following any symlink: `openat2(2)` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` from a descriptor of the root. This closes, for writes, the
/// window between the `lstat` walk above and the open. A kernel without `openat2` (before 5.6, or a
/// seccomp filter answering `ENOSYS`) gets the plain `open` with `O_NOFOLLOW` on the last component.
pub fn open_beneath(root: &Path, path: &Path, flags: i32, mode: u32) -> io::Result<fs::File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let rel = path.strip_prefix(root).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dir = fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(root)?;
    let c =
        std::ffi::CString::new(rel.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    /// `struct open_how` of linux/openat2.h (libc's is non-exhaustive, so it cannot be built here).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
        mode: u64::from(mode),
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // Safety: a valid directory descriptor, a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // Safety: the kernel just returned this descriptor, and nothing else owns it.
        return Ok(unsafe { fs::File::from_raw_fd(fd as i32) });
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            // std takes the access mode from read/write (it masks O_ACCMODE out of custom_flags); every
            // caller opens for reading and writing.
            let mut o = fs::OpenOptions::new();
            o.read(true).write(true).custom_flags((flags & !libc::O_ACCMODE) | libc::O_NOFOLLOW).mode(mode);
            o.open(path)
        }
        Some(libc::ELOOP) | Some(libc::EXDEV) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "its path passes through a symbolic link (nothing is written through one)",
        )),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::sanitize::sanitize_relative;
    use crate::testing::TempDir;
    use std::os::unix::fs::symlink;

    fn rel(s: &str) -> RelPath {
        sanitize_relative(s).unwrap()
    }

    #[test]
    fn creates_nested_dirs() {
        let t = TempDir::new("confine");
        let p = create_dir_under_root(t.path(), &rel("a/b/c"), 0o700).unwrap();
        assert_eq!(p, t.path().join("a/b/c"));
        assert!(p.is_dir());
        // Again: everything exists, nothing changes.
        assert_eq!(create_dir_under_root(t.path(), &rel("a/b/c"), 0o700).unwrap(), p);
        assert_eq!(create_dir_under_root(t.path(), &RelPath::root(), 0o700).unwrap(), t.path());
        assert_eq!(resolve_under_root(t.path(), &rel("a/b/c")).unwrap(), p);
    }

    #[test]
    fn refuses_symlink_component_and_creates_nothing_outside() {
        let t = TempDir::new("confine-root");
        let outside = TempDir::new("confine-outside");
        symlink(outside.path(), t.path().join("link")).unwrap();
        let e = create_dir_under_root(t.path(), &rel("link/x/y"), 0o700).unwrap_err();
        assert!(matches!(e, PathError::SymlinkEscape { ref path } if path == &t.path().join("link")), "{e}");
        assert!(e.to_string().contains("symlink escape"), "{e}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "something was created outside");
        let e = resolve_under_root(t.path(), &rel("link/x")).unwrap_err();
        assert!(matches!(e, PathError::SymlinkEscape { .. }), "{e}");

        // A symlink to a directory inside the root is refused too: the walk does not judge targets.
        fs::create_dir(t.path().join("real")).unwrap();
        symlink("real", t.path().join("inner")).unwrap();
        assert!(matches!(
            create_dir_under_root(t.path(), &rel("inner/z"), 0o700),
            Err(PathError::SymlinkEscape { .. })
        ));
        // A dangling symlink as the last component.
        symlink("/nonexistent-mover-test", t.path().join("real/dangling")).unwrap();
        assert!(matches!(
            create_dir_under_root(t.path(), &rel("real/dangling"), 0o700),
            Err(PathError::SymlinkEscape { .. })
        ));
        assert!(!Path::new("/nonexistent-mover-test").exists());
    }

    #[test]
    fn opens_beneath_the_root_never_through_a_symlink() {
        let t = TempDir::new("confine-open");
        let outside = TempDir::new("confine-open-outside");
        fs::create_dir(t.path().join("d")).unwrap();
        let creat = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        let f = open_beneath(t.path(), &t.path().join("d/new"), creat, 0o600).unwrap();
        drop(f);
        assert!(t.path().join("d/new").is_file());
        // A directory swapped for a symlink after the walk: refused, nothing created outside.
        symlink(outside.path(), t.path().join("swapped")).unwrap();
        let e = open_beneath(t.path(), &t.path().join("swapped/x"), creat, 0o600).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        symlink("d/new", t.path().join("last")).unwrap();
        assert!(open_beneath(t.path(), &t.path().join("last"), libc::O_RDWR, 0).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // A root that is itself a symlink is trusted (as in `walk`).
        let via = TempDir::new("confine-open-via");
        symlink(t.path(), via.path().join("root")).unwrap();
        open_beneath(&via.path().join("root"), &via.path().join("root/d/new"), libc::O_RDWR, 0).unwrap();
    }

    #[test]
    fn refuses_file_component() {
        let t = TempDir::new("confine");
        fs::write(t.path().join("f"), b"x").unwrap();
        let e = create_dir_under_root(t.path(), &rel("f/sub"), 0o700).unwrap_err();
        assert!(matches!(e, PathError::NotADirectory { .. }), "{e}");
        assert!(matches!(resolve_under_root(t.path(), &rel("f")), Err(PathError::NotADirectory { .. })));
    }

    #[test]
    fn resolve_creates_nothing() {
        let t = TempDir::new("confine");
        let p = resolve_under_root(t.path(), &rel("x/y")).unwrap();
        assert_eq!(p, t.path().join("x/y"));
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn io_errors_name_the_path() {
        let t = TempDir::new("confine");
        let missing_root = t.path().join("nope");
        let e = create_dir_under_root(&missing_root, &rel("a"), 0o700).unwrap_err();
        assert!(matches!(e, PathError::Io { .. }), "{e}");
        assert!(e.to_string().contains("nope/a"), "{e}");
    }
}
