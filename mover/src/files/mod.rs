//! The file system side: scanning what to send, confining where to write, committing verified files.

mod coalesce;
mod confine;
mod dest;
mod entry;
mod fdcache;
pub mod journal;
mod sanitize;
mod scan;
mod source;
#[cfg(test)]
pub(crate) mod testutil;

pub use coalesce::{WriteCoalescer, DEFAULT_RUN_BYTES};
pub use confine::{create_dir_under_root, resolve_under_root};
pub use dest::DestTree;
pub use entry::{Entry, EntryKind};
pub use sanitize::{sanitize_dest_dir, sanitize_relative, PathError, RelPath, MAX_COMPONENT_LEN};
pub use scan::{scan_sources, Scanned};
pub use source::SourceFiles;
