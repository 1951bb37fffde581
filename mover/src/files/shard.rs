//! Sharding a manifest across nodes (`--shard I/N`, issue 21 item 3): N runs of the same command, one per
//! node, each move one shard, and together they move the whole set exactly once.
//!
//! The work is cut into *units*: a regular file, or one range ([`piece_bytes`]) of a large file, or a link.
//! Each unit gets a position from the xxh3-64 of its manifest path (and its range's offset): a property of
//! the unit alone, so it is the same on every node and in every run. The units in position order are then cut
//! into N runs of equal bytes (each unit weighs its size plus [`UNIT_COST_BYTES`]), and shard `i` is the
//! `i`-th run: balanced by bytes to within one unit, and stable when files are added (a unit changes shard
//! only if the added bytes move a cut past it; see [`moved_bound`]). Plain `hash mod N` would move nothing but
//! balances only in expectation: with a few hundred units per shard its spread is ±10%, and the slowest
//! shard sets the job's end (docs/decisions/0036-sharding.md).
//!
//! Directories are in every shard (each shard needs the directories its files land in; creating one twice
//! is harmless); a hard link goes with the first range of the file it names, which the receiver links once
//! that range's file is committed.

use super::{Entry, EntryKind};
pub use crate::wire::shard::{piece_bytes, Piece, Shard, MAX_SHARDS, SPLIT_ABOVE_BYTES};

/// A unit costs this many bytes besides its size: a file's per-file work (a manifest entry, an open, a commit)
/// is worth roughly this much data, so a shard of ten thousand empty files is not "free".
pub const UNIT_COST_BYTES: u64 = 4096;

/// One unit of work: a link, a whole file, or the range `offset .. offset + len` of a file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The entry's index in the manifest.
    pub entry: usize,
    /// First byte of the range (0 for a whole file or a link).
    pub offset: u64,
    /// Bytes of the range (the file's size for a whole file, 0 for a link).
    pub len: u64,
}

/// The units of `entries` (directories are in every shard and are no unit). With `split`, files over
/// [`SPLIT_ABOVE_BYTES`] are cut into ranges of [`piece_bytes`]; without it every file is one unit. A file
/// that a hard link names stays whole: the receiver links it once it is committed, which a file assembled
/// from other nodes' ranges may not be when this shard ends.
pub fn units(entries: &[Entry], split: bool) -> Vec<Unit> {
    let linked: std::collections::HashSet<&str> =
        entries.iter().filter(|e| e.kind == EntryKind::HardLink).map(|e| e.link_target.as_str()).collect();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        match e.kind {
            EntryKind::Dir => {}
            EntryKind::File if split && e.size > SPLIT_ABOVE_BYTES && !linked.contains(e.rel_path.as_str()) => {
                let piece = piece_bytes(e.size);
                let mut offset = 0;
                while offset < e.size {
                    let len = piece.min(e.size - offset);
                    out.push(Unit { entry: i, offset, len });
                    offset += len;
                }
            }
            EntryKind::File => out.push(Unit { entry: i, offset: 0, len: e.size }),
            EntryKind::Symlink | EntryKind::HardLink => out.push(Unit { entry: i, offset: 0, len: 0 }),
        }
    }
    out
}

/// A unit's position: the xxh3-64 of its manifest path, seeded with its offset. A hard link takes the
/// position of its target's first range, so both land in one shard.
fn position(entries: &[Entry], u: &Unit) -> u64 {
    let e = &entries[u.entry];
    let path = if e.kind == EntryKind::HardLink { &e.link_target } else { &e.rel_path };
    xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), u.offset)
}

/// The shard of every unit (same order as `units`), for `count` shards.
pub fn assign(entries: &[Entry], units: &[Unit], count: u32) -> Vec<u32> {
    assert!(count >= 1);
    let weight = |u: &Unit| u.len + UNIT_COST_BYTES;
    let mut order: Vec<(u64, usize)> = units.iter().enumerate().map(|(i, u)| (position(entries, u), i)).collect();
    // Ties (a hard link and its target, or a hash collision) break by manifest order: the same on every node.
    order.sort_unstable_by_key(|&(pos, i)| (pos, units[i].entry, units[i].offset));
    let total: u128 = units.iter().map(|u| u128::from(weight(u))).sum();
    let mut out = vec![0; units.len()];
    let mut before: u128 = 0;
    for &(_, i) in &order {
        let w = u128::from(weight(&units[i]));
        // The unit's midpoint decides its shard: a unit is in shard k when its middle byte lies in the
        // k-th N-th of the whole.
        let mid2 = 2 * before + w;
        let shard = (mid2 * u128::from(count) / (2 * total)).min(u128::from(count - 1));
        out[i] = shard as u32;
        before += w;
    }
    // A hard link must sit with its target's first range, even when ties in position were cut apart.
    let firsts: std::collections::HashMap<&str, usize> = units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.offset == 0 && entries[u.entry].kind == EntryKind::File)
        .map(|(i, u)| (entries[u.entry].rel_path.as_str(), i))
        .collect();
    for (i, u) in units.iter().enumerate() {
        if entries[u.entry].kind == EntryKind::HardLink {
            if let Some(&t) = firsts.get(entries[u.entry].link_target.as_str()) {
                out[i] = out[t];
            }
        }
    }
    out
}

/// The most bytes (unit weights) that may change shard when `added` bytes of units are added to a set cut
/// into `count` shards whose largest unit weighs `largest`: each of the `count - 1` cuts moves by at most
/// `added`, and every unit's position by at most `added`, so only units within `2 * added` (plus one unit)
/// of a cut can cross it.
pub fn moved_bound(added: u64, largest: u64, count: u32) -> u64 {
    u64::from(count.saturating_sub(1)) * (2 * added + 2 * largest)
}

/// The units of shard `shard` of `entries`.
pub fn shard_units(entries: &[Entry], shard: Shard, split: bool) -> Vec<Unit> {
    let all = units(entries, split);
    if shard.is_whole() {
        return all;
    }
    let owner = assign(entries, &all, shard.count);
    all.into_iter().zip(owner).filter(|&(_, s)| s == shard.index).map(|(u, _)| u).collect()
}

/// Keeps of `scanned` what shard `shard` moves: every directory, and the files, ranges and links of its
/// units. A range becomes an entry of its own ([`Entry::piece`], `size` the range's length) read from its
/// offset in the file ([`super::Scanned::file_bases`]). File ids are renumbered with the manifest, as the
/// receiver numbers them. `split`: cut large files into ranges (a striped push keeps files whole).
pub fn keep_shard(scanned: super::Scanned, shard: Shard, split: bool) -> super::Scanned {
    if shard.is_whole() {
        return scanned;
    }
    let mut mine: std::collections::HashMap<usize, Vec<Unit>> = std::collections::HashMap::new();
    for u in shard_units(&scanned.entries, shard, split) {
        mine.entry(u.entry).or_default().push(u);
    }
    let mut out = super::Scanned { skipped: scanned.skipped, opener: scanned.opener, ..Default::default() };
    let mut paths = scanned.file_paths.into_iter();
    let mut bases = Vec::new();
    for (i, e) in scanned.entries.into_iter().enumerate() {
        let path = if e.kind == EntryKind::File { paths.next() } else { None };
        if e.kind == EntryKind::Dir {
            out.entries.push(e);
            continue;
        }
        let Some(units) = mine.get(&i) else { continue };
        match path {
            Some(p) if units[0].len != e.size || units.len() > 1 => {
                // Ranges, in offset order (shard_units keeps manifest order, ranges of a file ascending).
                for u in units {
                    let piece = crate::wire::shard::Piece { offset: u.offset, file_size: e.size };
                    debug_assert!(piece.is_on_layout(u.len));
                    out.entries.push(Entry { size: u.len, piece: Some(Box::new(piece)), sparse: false, ..e.clone() });
                    out.file_paths.push(p.clone());
                    bases.push(u.offset);
                }
            }
            Some(p) => {
                out.entries.push(e);
                out.file_paths.push(p);
                bases.push(0);
            }
            None => out.entries.push(e),
        }
    }
    if bases.iter().any(|&b| b != 0) {
        out.file_bases = bases;
    }
    out
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
