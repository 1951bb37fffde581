//! The file system side: scanning what to send, confining where to write, committing verified files.

mod confine;
mod dest;
mod error;
mod fdcache;
pub mod journal;
mod sanitize;
mod scan;
mod source;

/// Manifest entries are a wire type (the manifest message serialises them); re-exported where they are used.
pub use crate::wire::entry::{Entry, EntryKind};
pub use confine::{create_dir_under_root, resolve_under_root};
pub use dest::DestTree;
pub use error::{relative, FileOp, FilesError};
pub use sanitize::{sanitize_dest_dir, sanitize_relative, PathError, RelPath, MAX_COMPONENT_LEN};
pub use scan::{scan_sources, Scanned};
pub use source::SourceFiles;
