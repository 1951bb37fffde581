//! How the sender opens the files it reads: by the path the user named (a client's own sources), or by
//! descriptor beneath the served root (a daemon serving a pull), so that a directory swapped for a symlink
//! while the session runs cannot make it read, and send, a file outside the root.

use super::beneath::Beneath;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// Where [`crate::files::Scanned::file_paths`] lead and how they are opened; shared by the reader stage,
/// its repair reads and [`crate::files::SourceFiles`].
#[derive(Clone, Debug, Default)]
pub enum Opener {
    /// Paths as the user named them, opened as they are (symlinks the user named are followed: they are
    /// the user's own choice).
    #[default]
    Path,
    /// Paths relative to this root, each opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or
    /// the strict walk) and read only if it is still a regular file.
    Beneath(Arc<Beneath>),
}

impl Opener {
    /// Opens `path` for reading, adding `extra_flags` (`O_DIRECT`, or 0).
    pub fn open(&self, path: &Path, extra_flags: i32) -> io::Result<File> {
        match self {
            Opener::Path => OpenOptions::new().read(true).custom_flags(extra_flags).open(path),
            Opener::Beneath(root) => root.open_regular(path, extra_flags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Resolve;
    use crate::testing::TempDir;
    use std::os::unix::fs::symlink;

    #[test]
    fn beneath_opens_only_regular_files_reached_without_symlinks() {
        let t = TempDir::new("source-open");
        let outside = TempDir::new("source-open-outside");
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"inside").unwrap();
        std::fs::write(outside.path().join("f"), b"secret").unwrap();
        symlink(outside.path(), t.path().join("swapped")).unwrap();
        symlink(outside.path().join("f"), t.path().join("d/link")).unwrap();
        let fifo = std::ffi::CString::new(t.path().join("d/fifo").into_os_string().into_encoded_bytes()).unwrap();
        // Safety: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for resolve in [Resolve::Auto, Resolve::Walk] {
            let o = Opener::Beneath(Arc::new(Beneath::new(t.path()).unwrap().with_resolve(resolve)));
            let mut s = String::new();
            std::io::Read::read_to_string(&mut o.open(Path::new("d/f"), 0).unwrap(), &mut s).unwrap();
            assert_eq!(s, "inside");
            for refused in ["swapped/f", "d/link"] {
                let e = o.open(Path::new(refused), 0).unwrap_err().to_string();
                assert!(e.contains("symbolic link"), "{refused}: {e}");
            }
            // A FIFO is refused at once instead of blocking the reader.
            let e = o.open(Path::new("d/fifo"), 0).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
            assert!(o.open(&t.path().join("d/f"), 0).is_err(), "an absolute path is not beneath the root");
        }
        // By path: what the user named, as before.
        assert!(Opener::Path.open(&t.path().join("swapped/f"), 0).is_ok());
    }
}
