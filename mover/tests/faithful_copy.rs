//! A faithful copy (issue 15, item 4), with `mover serve` and `mover push`/`pull` as real processes over loopback:
//! symbolic links arrive as links (in-tree and out-of-tree targets) and a symlink in the destination is
//! never written through; a hard link pair arrives as one inode; a 50 MiB sparse file with 1 MiB of data
//! stays sparse; nested directories keep their modes and a new destination directory is not private;
//! set-user-ID bits and owners are kept with `--preserve owner` as root and reported when dropped;
//! `--xattrs` carries `user.*` attributes; `--files-from` (lines, `--from0`, stdin) sends exactly a list.

mod common;

use common::{hash_file, is_root, json_raw, mover, run_with_limit, skip_or_fail, write_random_file, Server, TempDir};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn push(server: &Server, args: &[&str], srcs: &[&Path], dest: &str) -> Output {
    let url = format!("mover://{}/{dest}", server.addr);
    run_with_limit(
        mover().args(["push", "--insecure-no-auth", "--rate", "2G", "--json"]).args(args).args(srcs).arg(url),
        LIMIT,
    )
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// The process umask, from /proc (reading it with umask(2) would change it for a moment).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).expect("Umask in /proc/self/status");
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// tree/{a(0755)/b(0755)/c(0750)/f.txt, a/rel-link -> b/c/f.txt, out-link -> OUTSIDE, h1 == h2, sparse.img}
fn make_tree(tmp: &TempDir, outside: &Path) -> PathBuf {
    let tree = tmp.path().join("src/tree");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("a/b/c/f.txt"), b"hello").unwrap();
    for (d, m) in [("a", 0o755), ("a/b", 0o755), ("a/b/c", 0o750)] {
        fs::set_permissions(tree.join(d), fs::Permissions::from_mode(m)).unwrap();
    }
    symlink("b/c/f.txt", tree.join("a/rel-link")).unwrap();
    symlink(outside, tree.join("out-link")).unwrap();
    fs::write(tree.join("h1"), b"one inode, two names").unwrap();
    fs::hard_link(tree.join("h1"), tree.join("h2")).unwrap();
    // 50 MiB with 1 MiB of random data at 20 MiB: a hole on each side.
    let sparse = tree.join("sparse.img");
    write_random_file(&tmp.path().join("data"), 1 << 20, 7);
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(50 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &fs::read(tmp.path().join("data")).unwrap(), 20 << 20).unwrap();
    tree
}

#[test]
fn links_hard_links_sparse_files_and_directory_modes_arrive_as_sent() {
    let tmp = TempDir::new("faithful");
    let outside = TempDir::new("faithful-outside");
    let tree = make_tree(&tmp, outside.path());
    let sparse_src = fs::metadata(tree.join("sparse.img")).unwrap();
    assert!(sparse_src.blocks() * 512 < 4 << 20, "the source itself is not sparse here");
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    let stdout = ok(&push(&server, &[], &[&tree], "new/deep"));
    assert_eq!(json_raw(&stdout, "verified"), Some("true"));
    assert_eq!(json_raw(&stdout, "dropped"), Some("[]"), "{stdout}");

    let got = root.join("new/deep/tree");
    // Symlinks: links with the same target text, whether it lies inside the tree or not.
    assert_eq!(fs::read_link(got.join("a/rel-link")).unwrap(), Path::new("b/c/f.txt"));
    assert_eq!(fs::read_link(got.join("out-link")).unwrap(), outside.path());
    assert_eq!(fs::read(got.join("a/rel-link")).unwrap(), b"hello");
    // One inode, two names.
    let (h1, h2) = (fs::metadata(got.join("h1")).unwrap(), fs::metadata(got.join("h2")).unwrap());
    assert_eq!((h1.ino(), h1.nlink(), h2.nlink()), (h2.ino(), 2, 2));
    assert_eq!(fs::read(got.join("h2")).unwrap(), b"one inode, two names");
    // Sparse: the same bytes in far fewer blocks than 50 MiB.
    let sparse = fs::metadata(got.join("sparse.img")).unwrap();
    assert_eq!(sparse.len(), 50 << 20);
    assert!(sparse.blocks() * 512 < 8 << 20, "50 MiB sparse file arrived with {} blocks", sparse.blocks());
    assert_eq!(hash_file(&got.join("sparse.img")), hash_file(&tree.join("sparse.img")));
    // Directory modes as sent; the new destination directories as `mkdir -p` makes them, not 0700.
    assert_eq!((mode(&got.join("a")), mode(&got.join("a/b")), mode(&got.join("a/b/c"))), (0o755, 0o755, 0o750));
    let normal = 0o777 & !umask();
    assert_eq!((mode(&root.join("new")), mode(&root.join("new/deep"))), (normal, normal));
    assert!(common::list_tree(&root).iter().all(|p| !p.contains(".mover-")), "{:?}", common::list_tree(&root));
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "something was written outside");

    // Pushed again: the links are replaced by links, not followed.
    let stdout = ok(&push(&server, &[], &[&tree], "new/deep"));
    assert_eq!(json_raw(&stdout, "verified"), Some("true"));
    assert_eq!(fs::read_link(got.join("out-link")).unwrap(), outside.path());
    assert_eq!(fs::metadata(got.join("h2")).unwrap().ino(), fs::metadata(got.join("h1")).unwrap().ino());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "something was written outside");
}

#[test]
fn a_pull_keeps_links_hard_links_and_holes_too() {
    let tmp = TempDir::new("faithful-pull");
    let outside = TempDir::new("faithful-pull-outside");
    let tree = make_tree(&tmp, outside.path());
    // The daemon serves what lies under its root: the tree is there.
    let root = tmp.path().join("src");
    let server = Server::start(&root, &[]);
    let local = tmp.path().join("local");
    let url = format!("mover://{}/tree", server.addr);
    let out = run_with_limit(
        mover().args(["pull", "--insecure-no-auth", "--rate", "2G", "--json"]).arg(url).arg(&local),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pull failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_raw(&stdout, "dropped"), Some("[]"), "{stdout}");
    let got = local.join("tree");
    assert_eq!(fs::read_link(got.join("out-link")).unwrap(), outside.path());
    assert_eq!(fs::read_link(got.join("a/rel-link")).unwrap(), Path::new("b/c/f.txt"));
    assert_eq!(fs::metadata(got.join("h1")).unwrap().ino(), fs::metadata(got.join("h2")).unwrap().ino());
    let sparse = fs::metadata(got.join("sparse.img")).unwrap();
    assert!(sparse.blocks() * 512 < 8 << 20, "pulled sparse file has {} blocks", sparse.blocks());
    assert_eq!(hash_file(&got.join("sparse.img")), hash_file(&tree.join("sparse.img")));
    assert_eq!(mode(&got.join("a/b/c")), 0o750);
}

#[test]
fn a_symlink_in_the_destination_is_never_written_through() {
    let tmp = TempDir::new("faithful-escape");
    let outside = TempDir::new("faithful-escape-outside");
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    // A first push leaves `esc -> OUTSIDE` in the destination (it is only a name there).
    let first = tmp.path().join("one/esc");
    fs::create_dir_all(first.parent().unwrap()).unwrap();
    symlink(outside.path(), &first).unwrap();
    ok(&push(&server, &[], &[&first], "d"));
    assert_eq!(fs::read_link(root.join("d/esc")).unwrap(), outside.path());
    // A second push sends a directory of the same name with a file in it: refused, nothing outside.
    let second = tmp.path().join("two/esc");
    fs::create_dir_all(&second).unwrap();
    fs::write(second.join("payload"), b"must not escape").unwrap();
    let out = push(&server, &[], &[&second], "d");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a push through a symlink succeeded");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    // A destination directory that is the symlink is refused as well.
    let file = tmp.path().join("f");
    fs::write(&file, b"x").unwrap();
    let out = push(&server, &[], &[&file], "d/esc");
    assert!(!out.status.success(), "a push into a symlinked destination succeeded");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "something was written outside");
    assert_eq!(fs::read_link(root.join("d/esc")).unwrap(), outside.path());
}

#[test]
fn set_id_bits_and_owners_are_kept_with_preserve_owner_as_root_and_reported_without() {
    if !is_root() {
        return skip_or_fail("set_id_bits_and_owners_are_kept_with_preserve_owner_as_root", "chown needs root");
    }
    let tmp = TempDir::new("faithful-owner");
    let tree = tmp.path().join("src/tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("suid"), b"#!/bin/true\n").unwrap();
    fs::set_permissions(tree.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(tree.join("owned"), b"x").unwrap();
    std::os::unix::fs::chown(tree.join("owned"), Some(1234), Some(2345)).unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);

    let stdout = ok(&push(&server, &["--preserve", "owner"], &[&tree], "kept"));
    assert_eq!(json_raw(&stdout, "dropped"), Some("[]"), "{stdout}");
    let owned = fs::metadata(root.join("kept/tree/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 2345));
    assert_eq!(mode(&root.join("kept/tree/suid")), 0o4755);

    let out = push(&server, &[], &[&tree], "plain");
    let stdout = ok(&out);
    assert_eq!(mode(&root.join("plain/tree/suid")), 0o755);
    assert_eq!(fs::metadata(root.join("plain/tree/owned")).unwrap().uid(), 0);
    let dropped = json_raw(&stdout, "dropped").unwrap();
    assert!(dropped.contains("set-user-ID"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("dropped: ").count(), 1, "said once: {stderr}");
}

#[test]
fn user_xattrs_round_trip_with_the_flag_only() {
    let tmp = TempDir::new("faithful-xattr");
    let tree = tmp.path().join("src/tree");
    fs::create_dir_all(&tree).unwrap();
    let f = tree.join("tagged");
    fs::write(&f, b"data").unwrap();
    if let Err(e) = set_xattr(&f, "user.test", b"v\0alue") {
        return skip_or_fail("user_xattrs_round_trip_with_the_flag_only", &format!("this fs refuses user xattrs: {e}"));
    }
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    let stdout = ok(&push(&server, &["--xattrs"], &[&tree], "with"));
    assert_eq!(json_raw(&stdout, "dropped"), Some("[]"), "{stdout}");
    assert_eq!(get_xattr(&root.join("with/tree/tagged"), "user.test").unwrap(), b"v\0alue");
    ok(&push(&server, &[], &[&tree], "without"));
    assert!(get_xattr(&root.join("without/tree/tagged"), "user.test").is_err());
}

#[test]
fn files_from_sends_exactly_the_list() {
    let tmp = TempDir::new("faithful-list");
    let outside = TempDir::new("faithful-list-outside");
    let tree = make_tree(&tmp, outside.path());
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    let list = tmp.path().join("list");
    fs::write(&list, "a/b/c/f.txt\n./h1\n").unwrap();
    ok(&push(&server, &["--files-from", list.to_str().unwrap()], &[&tree], "lines"));
    let mut got = common::list_tree(&root.join("lines"));
    got.sort();
    assert_eq!(got, ["tree", "tree/a", "tree/a/b", "tree/a/b/c", "tree/a/b/c/f.txt", "tree/h1"]);
    assert_eq!(mode(&root.join("lines/tree/a/b/c")), 0o750);

    // NUL-separated, from standard input.
    let url = format!("mover://{}/nul", server.addr);
    let mut child = mover()
        .args(["push", "--insecure-no-auth", "--rate", "2G", "--files-from", "-", "--from0"])
        .arg(&tree)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"out-link\0a/rel-link\0").unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let mut got = common::list_tree(&root.join("nul"));
    got.sort();
    assert_eq!(got, ["tree", "tree/a", "tree/a/rel-link", "tree/out-link"]);
    assert_eq!(fs::read_link(root.join("nul/tree/out-link")).unwrap(), outside.path());

    // A path leaving SRC, and one that does not exist: one clear line each, nothing sent.
    for (line, says) in [("../secret", "'../secret' in --files-from"), ("nope/x", "'nope'")] {
        fs::write(&list, format!("h1\n{line}\n")).unwrap();
        let out = push(&server, &["--files-from", list.to_str().unwrap()], &[&tree], "bad");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line} was accepted");
        assert!(stderr.contains(says) && stderr.lines().count() == 1, "{stderr}");
        assert!(!root.join("bad").exists());
    }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // Safety: NUL-terminated path and name, `value.len()` readable bytes.
    if unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // Safety: as above, `buf.len()` writable bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}
