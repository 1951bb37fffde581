//! Shards are disjoint, cover everything, balance by bytes and stay put when files are added: on random trees,
//! with large files split, for 1 to 8 shards.

use super::*;
use std::collections::{HashMap, HashSet};

/// SplitMix64: reproducible trees without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn file(path: &str, size: u64) -> Entry {
    Entry { rel_path: path.into(), kind: EntryKind::File, size, ..Default::default() }
}

fn dir(path: &str) -> Entry {
    Entry { rel_path: path.into(), kind: EntryKind::Dir, ..Default::default() }
}

/// A random tree: directories, files from empty to a few hundred MiB (some split), links.
fn random_tree(rng: &mut SplitMix, files: usize) -> Vec<Entry> {
    let mut out = vec![dir("t")];
    for d in 0..4 {
        out.push(dir(&format!("t/d{d}")));
    }
    for i in 0..files {
        let size = match rng.next_u64() % 10 {
            0 => 0,
            1..=6 => rng.next_u64() % (256 << 10),
            7 | 8 => rng.next_u64() % (16 << 20),
            _ => rng.next_u64() % (300 << 20),
        };
        out.push(file(&format!("t/d{}/f{i}", i % 4), size));
        if i % 17 == 0 {
            let kind = if i % 2 == 0 { EntryKind::Symlink } else { EntryKind::HardLink };
            let target = format!("t/d{}/f{i}", i % 4);
            out.push(Entry { rel_path: format!("t/l{i}"), kind, link_target: target, ..Default::default() });
        }
    }
    out
}

fn weight(u: &Unit) -> u64 {
    u.len + UNIT_COST_BYTES
}

#[test]
fn shards_are_disjoint_cover_everything_and_balance_by_bytes() {
    let mut rng = SplitMix::new(21);
    for trial in 0..12 {
        let entries = random_tree(&mut rng, 50 + 40 * trial);
        for split in [false, true] {
            let all = units(&entries, split);
            let total: u64 = all.iter().map(weight).sum();
            let largest = all.iter().map(weight).max().unwrap();
            for count in 1..=8u32 {
                let mut seen: HashMap<(usize, u64), u32> = HashMap::new();
                let mut bytes = vec![0u64; count as usize];
                for index in 0..count {
                    for u in shard_units(&entries, Shard { index, count }, split) {
                        assert!(seen.insert((u.entry, u.offset), index).is_none(), "unit {u:?} in two shards");
                        bytes[index as usize] += weight(&u);
                    }
                }
                assert_eq!(seen.len(), all.len(), "every unit in some shard ({count} shards)");
                // Within one unit of an even cut (plus the hard links pulled to their targets, a few KiB).
                for (i, b) in bytes.iter().enumerate() {
                    let even = total / u64::from(count);
                    assert!(b.abs_diff(even) <= largest + 64 * UNIT_COST_BYTES, "shard {i}/{count}: {b} vs {even}");
                }
            }
        }
    }
}

#[test]
fn large_files_are_cut_into_ranges_that_tile_the_file() {
    let entries = vec![dir("t"), file("t/big", (300 << 20) + 5), file("t/small", 10), file("t/edge", 16 << 20)];
    let all = units(&entries, true);
    let big: Vec<&Unit> = all.iter().filter(|u| u.entry == 1).collect();
    assert_eq!(big.len(), 19, "300 MiB + 5 B in 16 MiB ranges");
    let mut next = 0;
    for u in &big {
        assert_eq!(u.offset, next);
        next += u.len;
    }
    assert_eq!(next, (300 << 20) + 5);
    assert_eq!(all.iter().filter(|u| u.entry == 3).count(), 1, "16 MiB exactly is not split");
    assert_eq!(units(&[file("x", (16 << 20) + 1)], true).len(), 2, "16 MiB + 1 B is");
    // Huge files: at most 1024 ranges, each a whole number of MiB but the last.
    assert_eq!(piece_bytes(1 << 40), 1 << 30);
    assert_eq!(piece_bytes(10 << 30), 16 << 20);
    assert_eq!(piece_bytes(16 << 30), 16 << 20, "16 GiB: 1024 ranges of 16 MiB");
    assert_eq!(piece_bytes((16 << 30) + 1), 17 << 20, "over 16 GiB: a 1024th, rounded up to a MiB");
    assert!(units(&[file("x", (1 << 40) + 1)], true).len() <= 1025);
}

#[test]
fn adding_files_moves_few_units() {
    let mut rng = SplitMix::new(7);
    let before = random_tree(&mut rng, 400);
    let mut after = before.clone();
    let mut added = 0;
    for i in 0..10 {
        let size = rng.next_u64() % (1 << 20);
        added += size + UNIT_COST_BYTES;
        after.push(file(&format!("t/new{i}"), size));
    }
    for count in 2..=8u32 {
        let old_units = units(&before, true);
        let old = assign(&before, &old_units, count);
        let new_units = units(&after, true);
        let new = assign(&after, &new_units, count);
        let largest = old_units.iter().map(weight).max().unwrap();
        // The old units keep their indices: the new files come after them in the manifest.
        let moved: u64 =
            old_units.iter().zip(old.iter().zip(&new)).filter(|(_, (a, b))| a != b).map(|(u, _)| weight(u)).sum();
        let total: u64 = old_units.iter().map(weight).sum();
        assert!(moved <= moved_bound(added, largest, count), "{count} shards: {moved} bytes moved");
        assert!(moved * 10 < total, "{count} shards: {moved} of {total} bytes moved");
    }
}

#[test]
fn hard_links_go_with_their_target_and_directories_go_everywhere() {
    let mut rng = SplitMix::new(3);
    let entries = random_tree(&mut rng, 300);
    for count in 2..=5u32 {
        for index in 0..count {
            let shard = Shard { index, count };
            let kept: HashSet<usize> = shard_units(&entries, shard, false).into_iter().map(|u| u.entry).collect();
            for (i, e) in entries.iter().enumerate() {
                if e.kind == EntryKind::HardLink && kept.contains(&i) {
                    let t = entries.iter().position(|t| t.rel_path == e.link_target).unwrap();
                    assert!(kept.contains(&t), "{} without {}", e.rel_path, e.link_target);
                }
            }
            let s = crate::files::Scanned {
                entries: entries.clone(),
                file_paths: entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::File)
                    .map(|e| std::path::PathBuf::from(&e.rel_path))
                    .collect(),
                ..Default::default()
            };
            let k = keep_shard(s, shard, false);
            assert_eq!(k.entries.iter().filter(|e| e.kind == EntryKind::Dir).count(), 5);
            let files: Vec<&Entry> = k.entries.iter().filter(|e| e.kind == EntryKind::File).collect();
            assert_eq!(files.len(), k.file_paths.len());
            for (e, p) in files.iter().zip(&k.file_paths) {
                assert_eq!(std::path::Path::new(&e.rel_path), p, "file ids renumbered with the manifest");
            }
        }
    }
}

#[test]
fn parse_explicit_slurm_and_kubernetes() {
    let none = |_: &str| None;
    assert_eq!(Shard::parse("2/4", &none), Ok(Shard { index: 2, count: 4 }));
    assert_eq!(Shard::parse("0/1", &none), Ok(Shard::WHOLE));
    for bad in ["4/4", "x/4", "1/0", "1/", "/4", "3", "1/100000", "auto"] {
        let e = Shard::parse(bad, &none).unwrap_err();
        assert!(e.starts_with("--shard"), "{bad}: {e}");
    }
    let slurm = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    let e = slurm(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
    assert_eq!(Shard::parse("auto", &e), Ok(Shard { index: 3, count: 4 }));
    assert_eq!(Shard::parse("auto/4", &e), Ok(Shard { index: 3, count: 4 }));
    assert!(Shard::parse("auto/8", &e).unwrap_err().contains("SLURM_ARRAY_TASK_COUNT"));
    // --array=1-4 and --array=0-15:4: the index counts tasks, not ids.
    let e = slurm(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
    assert_eq!(Shard::parse("auto", &e), Ok(Shard { index: 3, count: 4 }));
    let e = slurm(&[
        ("SLURM_ARRAY_TASK_ID", "12"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_STEP", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ]);
    assert_eq!(Shard::parse("auto", &e), Ok(Shard { index: 3, count: 4 }));
    let k8s = slurm(&[("JOB_COMPLETION_INDEX", "5")]);
    assert_eq!(Shard::parse("auto/8", &k8s), Ok(Shard { index: 5, count: 8 }));
    assert!(Shard::parse("auto", &k8s).unwrap_err().contains("auto/N"));
    assert!(Shard::parse("auto/4", &k8s).unwrap_err().contains("below the count"));
    assert!(Shard::parse("auto", &none).unwrap_err().contains("SLURM_ARRAY_TASK_ID"));
}
