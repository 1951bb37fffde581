//! Runs the committed seed corpus of every fuzz target (`fuzz/corpus/<target>/`) through the same checking
//! function the fuzz target runs (`mover::fuzzing`), so plain `cargo test` holds the parsers to the fuzz
//! properties on every seed.
//!
//! Regenerate the seed corpus (after changing `mover::fuzzing::seed_corpus`) with
//! `cargo test --release --test fuzz_corpus -- --ignored regenerate_seed_corpus`.

use std::fs;
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

#[test]
fn every_target_passes_its_seed_corpus() {
    for (target, check) in mover::fuzzing::TARGETS {
        let dir = corpus_dir(target);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("corpus entry").path()).collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        for file in files {
            let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // A panic names the target and file.
            let r = std::panic::catch_unwind(|| check(&bytes));
            assert!(r.is_ok(), "{target}: {} failed", file.display());
        }
    }
}

#[test]
fn every_generated_seed_passes() {
    for seed in mover::fuzzing::seed_corpus() {
        let (_, check) = mover::fuzzing::TARGETS.iter().find(|(t, _)| *t == seed.target).expect("known target");
        check(&seed.bytes);
    }
}

/// Writes `mover::fuzzing::seed_corpus()` into `fuzz/corpus/` (ignored: run it by name to regenerate).
#[test]
#[ignore]
fn regenerate_seed_corpus() {
    for seed in mover::fuzzing::seed_corpus() {
        let dir = corpus_dir(seed.target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        fs::write(dir.join(seed.name), &seed.bytes).expect("write seed");
    }
}
