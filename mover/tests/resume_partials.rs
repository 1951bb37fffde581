//! Partials and journals with real processes over loopback (issue 15): a daemon killed (`SIGKILL`) in the
//! middle of a push leaves a partial and its journal whose ranges verify; the receiver's start decision
//! then resumes exactly those ranges; the daemon lists the partial at its next start; the same push again
//! completes with an identical file and leaves neither behind.

mod common;

use common::{mover, run_with_limit, KillOnDrop, Server, TempDir};
use mover::files::journal::{self, journal_path_for, FileIdentity};
use mover::files::{partial_name, sanitize_dest_dir, DestTree, Entry, EntryKind, FileStart};
use mover::sim::dataset::{compare_trees, write_random};
use mover::wire::TransferOptions;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_killed_daemon_leaves_a_journaled_partial_that_resumes_exactly_and_a_rerun_completes() {
    let tmp = TempDir::new("resume-kill");
    let src = tmp.path().join("big.bin");
    let size = 256u64 << 20;
    write_random(&src, size, 11).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let meta = std::fs::metadata(&src).unwrap();
    // The sender's view of the source, as the manifest carries it (permission bits only).
    let identity = FileIdentity {
        size,
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        mode: meta.mode() & 0o7777,
        path_hash: FileIdentity::path_hash(b"big.bin"),
    };
    let partial = root.join("in").join(partial_name("big.bin"));
    let jpath = journal_path_for(&partial);

    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/in", server.addr);
    let push = |rate: &str, url: &str| {
        let mut c = mover();
        c.args(["push", "--insecure-no-auth", "--rate", rate]).arg(&src).arg(url);
        c
    };
    let _client = KillOnDrop(push("300M", &url).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    // Wait until the journal vouches for something, then kill the daemon without warning.
    let start = Instant::now();
    let before = loop {
        if let Ok(r) = journal::load(&jpath, &identity) {
            if r.journaled_bytes() >= 32 << 20 {
                break r;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no journal with 32 MiB after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(before.journaled_bytes() < size, "the push finished before the kill: nothing to resume");

    assert!(partial.exists() && jpath.exists(), "the partial or its journal is gone after the kill");
    let r = journal::load(&jpath, &identity).unwrap();
    let file = std::fs::File::open(&partial).unwrap();
    assert_eq!(journal::verify_ranges(&file, &r.ranges).unwrap(), r.ranges, "a journaled range does not verify");
    drop(file);

    // The decision a rerun makes on the same destination: exactly the journal's ranges.
    let entry = Entry {
        rel_path: "big.bin".into(),
        kind: EntryKind::File,
        size,
        mode: identity.mode,
        mtime_s: meta.mtime(),
        mtime_ns: meta.mtime_nsec() as u32,
        ..Entry::default()
    };
    let mut tree = DestTree::prepare(&root, &sanitize_dest_dir("in").unwrap(), &[entry], 0).unwrap();
    let d = tree.decide_start(&TransferOptions::default(), &[], r.header.block_size).unwrap();
    let have: Vec<(u64, u64)> = r.ranges.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(d.files, [FileStart::Resume { have }]);
    assert_eq!(d.resumed_bytes, r.journaled_bytes());
    drop(tree);
    assert!(partial.exists() && jpath.exists(), "deciding (and releasing) lost the partial");

    // The next daemon lists it at start; the same push completes and leaves nothing behind.
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/in", server.addr);
    let listed = Instant::now();
    loop {
        let lines = server.lines.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains("partial files under the root: 1 kept, 0 removed")) {
            assert!(lines.iter().any(|l| l.contains("partial 'in/.big.bin.mover.part' kept") && l.contains("journal")));
            break;
        }
        assert!(listed.elapsed() < Duration::from_secs(10), "no sweep lines: {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut again = push("2G", &url);
    let out = run_with_limit(&mut again, Duration::from_secs(120));
    assert!(out.status.success(), "rerun failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(server.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    compare_trees(&src, &root.join("in/big.bin")).unwrap();
    assert!(!partial.exists() && !jpath.exists(), "the rerun left the partial or its journal");
}
