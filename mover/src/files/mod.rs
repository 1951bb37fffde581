//! The file system side: scanning what to send, confining where to write, committing verified files.

pub mod beneath;
mod claim_waits;
mod claims;
mod dest;
mod dest_start;
mod dry_run;
mod error;
mod fdcache;
mod files_from;
mod free_space;
pub mod journal;
mod journaling;
mod links;
mod metadata;
mod open_files;
mod partial;
pub mod partials;
mod pieces;
mod sanitize;
mod scan;
mod scan_beneath;
pub mod shard;
mod source;
mod source_open;
mod sparse;
mod start;
mod xattr;

/// Manifest entries are a wire type (the manifest message serialises them); re-exported where they are used.
pub use crate::wire::entry::{Entry, EntryKind};
pub use beneath::{Beneath, Dir, Resolve};
pub use dest::DestTree;
pub use dest_start::{JOURNAL_MIN_BYTES, JOURNAL_STEP_BYTES};
pub use dry_run::dry_run_verdicts;
pub use error::{relative, FileOp, FilesError, PARTIAL_BUSY};
pub use files_from::{parse_files_from, read_files_from};
pub use free_space::{free_space, FreeSpace, SpaceNeed, SpaceShortfall, FREE_SPACE_MARGIN_BYTES};
pub use journaling::{FileJournals, PlannedJournal, MAX_ACTIVE_JOURNALS};
pub use open_files::{emfile_hint, raise_open_files_limit};
pub use partial::{partial_name, PARTIAL_SUFFIX};
pub use partials::{list_partials, sweep_partials, PartialInfo};
pub use sanitize::{sanitize_dest_dir, sanitize_relative, PathError, RelPath, MAX_COMPONENT_LEN};
pub use scan::{content_hash, scan_sources, scan_sources_with, ScanOptions, Scanned};
pub use scan_beneath::scan_beneath;
pub use shard::{keep_shard, Shard};
pub use source::SourceFiles;
pub use source_open::Opener;
pub use sparse::{is_all_zero, punch_hole};
pub use start::{FileStart, StartDecision};
#[cfg(test)]
mod dest_swap_tests;
#[cfg(test)]
mod start_tests;
