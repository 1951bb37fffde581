//! The file system side: scanning what to send, confining where to write, committing verified files.

mod entry;

pub use entry::{Entry, EntryKind};
