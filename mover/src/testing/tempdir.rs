//! A self-removing temporary directory for the unit tests of every floor (disk, net, files, pipeline, ...).
//!
//! Written here rather than pulled from the `tempfile` crate to keep the dependency list short.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh directory under `std::env::temp_dir()`, removed with everything in it on drop.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty, uniquely named directory.
    pub(crate) fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let path = std::env::temp_dir().join(format!("mover-test-{label}-{}-{n}-{nanos}", std::process::id()));
            // create_dir (not create_dir_all) so that a name collision is noticed instead of shared.
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes every directory below `dir` writable and searchable again, so tests that set restrictive
/// directory modes can still be cleaned up. Never follows symlinks.
fn make_removable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                make_removable(&e.path());
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        make_removable(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}
