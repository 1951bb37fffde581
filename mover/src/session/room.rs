//! The receiver's free-space check (`files::free_space`), run once the start decision says what is still
//! to write and before `Accept`: nothing has flowed, so a refusal costs the sender nothing.

use super::error::SessionError;
use crate::files::{free_space, Entry, RelPath, SpaceNeed, SpaceShortfall, StartDecision};
use std::path::Path;

/// Refuses the session if the file system under `root`/`dest` cannot hold what is still to write. A
/// daemon (`serving`) names the destination relative to its root; a puller names its own path. A file
/// system that cannot be asked is not a reason to refuse: the transfer then finds out.
pub fn check_room(
    root: &Path,
    dest: &RelPath,
    entries: &[Entry],
    decision: &StartDecision,
    serving: bool,
) -> Result<(), SessionError> {
    // `join` of the root's own RelPath would add a trailing slash to what the puller is shown.
    let dir = if dest.is_root() { root.to_path_buf() } else { root.join(dest.to_path_buf()) };
    let free = match free_space(&dir) {
        Ok(free) => free,
        Err(e) => {
            let who = if serving { "mover serve" } else { "mover" };
            eprintln!("{who}: warning: cannot tell the free space under '{}': {e}; not checked", dir.display());
            return Ok(());
        }
    };
    let need = SpaceNeed::of(entries, decision);
    let (where_, shown) = if serving {
        ("on the server", if dest.is_root() { ".".to_string() } else { dest.to_string() })
    } else {
        ("here", dir.display().to_string())
    };
    match SpaceShortfall::judge(need, free, where_, shown) {
        None => Ok(()),
        Some(short) => Err(SessionError::NoSpace(short)),
    }
}
