//! Issue 18, item 4: many small files pushed between real processes over loopback while the receiver's
//! open-files limit is far below the number of files in flight. The receiver held one descriptor per file
//! whose data had started and that was not committed yet, so 100,000 files of 4 KiB met this VM's hard limit
//! of 20,000 ("Too many open files"); it now bounds its claims (`files::claims`) and takes a released
//! partial again by name when its next block comes. The sender runs under the same limit.

mod common;

use common::{json_raw, mover, run_with_limit, with_nofile, Server, TempDir};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Files of the tree: far more than the descriptors either side may open.
const FILES: usize = 20_000;
/// The open-files limit of both processes (soft and hard).
const NOFILE: u64 = 256;

/// File `i`'s contents: 4 KiB, different for every file (a file written into another's partial shows).
fn contents(i: usize) -> Vec<u8> {
    let seed = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..4096u64).map(|k| (seed.rotate_left((k % 64) as u32) ^ k) as u8).collect()
}

fn name(i: usize) -> String {
    format!("d{:02}/f{i:05}", i % 40)
}

fn write_tree(tree: &Path) {
    for d in 0..40 {
        fs::create_dir_all(tree.join(format!("d{d:02}"))).unwrap();
    }
    for i in 0..FILES {
        fs::write(tree.join(name(i)), contents(i)).unwrap();
    }
}

#[test]
fn twenty_thousand_small_files_arrive_identical_under_a_limit_of_256_descriptors() {
    let tmp = TempDir::new("many-small");
    let tree = tmp.path().join("src/tree");
    write_tree(&tree);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();

    let mut server = Server::start_with_nofile(&root, &["--once"], NOFILE);
    let url = format!("mover://{}/in", server.addr);
    let out = run_with_limit(
        with_nofile(mover(), NOFILE).args(["push", "--insecure-no-auth", "--json"]).arg(&tree).arg(&url),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let served = server.lines.lock().unwrap().join("\n");
    assert!(out.status.success(), "push failed: {stderr}\nserver: {served}");
    assert_eq!(json_raw(&stdout, "verified"), Some("true"), "{stdout}");
    assert_eq!(json_raw(&stdout, "files").and_then(|f| f.parse().ok()), Some(FILES), "{stdout}");
    let status = server.wait(Duration::from_secs(20)).expect("serve --once exits");
    assert!(status.success(), "serve failed: {served}");

    let dest = root.join("in/tree");
    for i in 0..FILES {
        let got = fs::read(dest.join(name(i))).unwrap_or_else(|e| panic!("{}: {e}", name(i)));
        assert!(got == contents(i), "{} differs", name(i));
    }
    let listed = common::list_tree(&root);
    assert!(listed.iter().all(|p| !p.contains(".mover.part")), "partials left behind");
    // `in`, `in/tree`, its 40 directories and the files: nothing else.
    assert_eq!(listed.len(), 2 + 40 + FILES);
}
