//! Several pushes of one tree into one daemon at once (a retry overlapping its predecessor, two nodes given
//! the same job): every push succeeds, the tree arrives whole, no partial is left, and no session ever writes
//! into a file another one committed (a partial renamed to its final name while a second session waited for
//! its lock was once claimed, emptied and rewritten under the final name).

mod common;

use common::{hash_file, list_tree, mover, write_random_file, Server, TempDir};
use std::process::Stdio;

#[test]
fn concurrent_pushes_of_one_tree_all_succeed_and_leave_it_whole() {
    let dir = TempDir::new("concurrent-pushes");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    for i in 0..40u64 {
        write_random_file(&src.join(format!("a/f{i}")), 1000 + i * 7919, i);
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &["--net", "udp"]);
    let url = format!("mover://{}/d", server.addr);
    for round in 0..4 {
        let _ = std::fs::remove_dir_all(root.join("d"));
        let pushes: Vec<_> = (0..6)
            .map(|_| {
                mover()
                    .args(["push", "--insecure-no-auth", "-q", "--net", "udp", "--overwrite", "always"])
                    .arg(&src)
                    .arg(&url)
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for p in pushes {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let got = root.join("d/src");
        assert_eq!(list_tree(&src), list_tree(&got), "round {round}: the same names, no partial left");
        for i in 0..40 {
            let f = format!("a/f{i}");
            assert_eq!(hash_file(&src.join(&f)), hash_file(&got.join(&f)), "round {round}: {f}");
        }
    }
}
