//! The file system side: scanning what to send, confining where to write, committing verified files.

mod entry;
mod sanitize;

pub use entry::{Entry, EntryKind};
pub use sanitize::{sanitize_dest_dir, sanitize_relative, PathError, RelPath};
