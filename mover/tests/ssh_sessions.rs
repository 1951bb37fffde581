//! `mover push/pull [user@]host:PATH` through a real OpenSSH server: the test makes its own host and user
//! keys and an sshd on a free loopback port, and points `--ssh` and `--remote-mover` at them. Needs root
//! (sshd's privilege separation, `root@127.0.0.1`) and `/usr/sbin/sshd`; skips loudly otherwise.

mod common;

use common::{
    is_root, json_raw, list_tree, mover, run_with_limit, skip_or_fail, write_random_file, KillOnDrop, TempDir,
};
use mover::sim::dataset::compare_trees;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const LIMIT: Duration = Duration::from_secs(60);

/// An sshd on 127.0.0.1 with its own keys, killed on drop.
struct Sshd {
    _child: KillOnDrop,
    port: u16,
    user_key: PathBuf,
    host_key: PathBuf,
    log: PathBuf,
    /// sshd also listens on [::1].
    ipv6: bool,
}

impl Sshd {
    /// Starts one, or says why not and returns `None` (the caller then skips).
    fn start(dir: &Path, test: &str) -> Option<Sshd> {
        if !is_root() {
            skip_or_fail(test, "needs root for sshd and root@127.0.0.1 (CI runs as root)");
            return None;
        }
        if !Path::new(SSHD).exists() || Command::new("ssh").arg("-V").output().is_err() {
            skip_or_fail(test, &format!("needs openssh-server ({SSHD}) and openssh-client (test.sh installs them)"));
            return None;
        }
        // Without PAM, sshd refuses every login to an account whose password field is locked ("!...").
        let shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
        if shadow.lines().any(|l| l.starts_with("root:!")) {
            skip_or_fail(test, "root's account is locked in /etc/shadow, so sshd (UsePAM no) refuses it");
            return None;
        }
        let host_key = dir.join("host_key");
        let user_key = dir.join("user_key");
        for k in [&host_key, &user_key] {
            let ok = Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-f"]).arg(k).status();
            assert!(ok.is_ok_and(|s| s.success()), "ssh-keygen failed");
        }
        let authorized = dir.join("authorized_keys");
        fs::copy(user_key.with_extension("pub"), &authorized).unwrap();
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let ipv6 = TcpListener::bind(("::1", port)).is_ok();
        let cfg = dir.join("sshd_config");
        fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\n{}HostKey {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n",
                if ipv6 { "ListenAddress ::1\n" } else { "" },
                host_key.display(),
                dir.join("sshd.pid").display(),
                authorized.display()
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sshd");
        let child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen: {}", fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(20));
        }
        if ipv6 {
            while TcpStream::connect(("::1", port)).is_err() {
                assert!(Instant::now() < deadline, "sshd did not listen on [::1]");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(Sshd { _child: child, port, user_key, host_key, log, ipv6 })
    }

    /// `--ssh` for this server with `key` (isolated from the user's ssh config and known hosts).
    fn ssh_command(&self, port: u16, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -p {port} -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            key.display()
        )
    }

    /// `mover VERB --ssh ... --remote-mover <this mover> --remote-root ROOT`.
    fn mover(&self, verb: &str, remote_root: &Path) -> Command {
        let mut c = mover();
        c.arg(verb)
            .args(["--ssh", &self.ssh_command(self.port, &self.user_key)])
            .args(["--remote-mover", env!("CARGO_BIN_EXE_mover"), "--remote-root"])
            .arg(remote_root);
        c
    }

    /// `mover VERB --ssh ... --remote-mover <this mover>` without `--remote-root`: scp's semantics.
    fn mover_unconfined(&self, verb: &str) -> Command {
        let mut c = mover();
        c.arg(verb)
            .args(["--ssh", &self.ssh_command(self.port, &self.user_key)])
            .args(["--remote-mover", env!("CARGO_BIN_EXE_mover")]);
        c
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The single `mover: error:` line of a failed run.
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mover: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected in: {stderr}");
    errors[0].to_string()
}

fn succeed(cmd: &mut Command, sshd: &Sshd) -> String {
    let out = run_with_limit(cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}\nsshd log: {}", fs::read_to_string(&sshd.log).unwrap_or_default());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn push_and_pull_a_tree_over_ssh() {
    let tmp = TempDir::new("ssh-tree");
    let Some(sshd) = Sshd::start(tmp.path(), "push_and_pull_a_tree_over_ssh") else { return };
    let tree = tmp.path().join("src/tree");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::create_dir_all(tree.join("empty dir")).unwrap();
    fs::write(tree.join("a/b/c/deep.txt"), b"deep").unwrap();
    fs::write(tree.join("empty"), b"").unwrap();
    write_random_file(&tree.join("a/four-mib.bin"), 4 << 20, 7);
    fs::write(tree.join("odd name 'quoted' & $HOME"), b"odd").unwrap();
    fs::write(tree.join("a/new\nline-ü"), b"nl").unwrap();
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).unwrap();

    // Push to an absolute path inside the remote root, as scp users write it.
    let dest = format!("root@127.0.0.1:{}", remote.join("in/coming").display());
    let out = succeed(sshd.mover("push", &remote).args(["--json"]).arg(&tree).arg(&dest), &sshd);
    assert_eq!(json_raw(&out, "verified"), Some("true"), "{out}");
    compare_trees(&tree, &remote.join("in/coming/tree")).unwrap();

    // Pull it back by its path relative to the remote root, over IPv6 where loopback has it.
    let local = tmp.path().join("local");
    let source = if sshd.ipv6 { "root@[::1]:in/coming/tree" } else { "root@127.0.0.1:in/coming/tree" };
    if !sshd.ipv6 {
        skip_or_fail("push_and_pull_a_tree_over_ssh (its IPv6 pull)", "no IPv6 loopback: the pull runs over 127.0.0.1");
    }
    let out = succeed(sshd.mover("pull", &remote).args(["--json"]).arg(source).arg(&local), &sshd);
    assert_eq!(out.lines().count(), 1, "exactly one JSON object on stdout: {out}");
    assert_eq!(json_raw(&out, "verified"), Some("true"), "{out}");
    assert_eq!(json_raw(&out, "files"), Some("5"), "{out}");
    compare_trees(&tree, &local.join("tree")).unwrap();
    for dir in [&remote, &local] {
        assert!(
            list_tree(dir).iter().all(|p| !p.contains(".mover-") && !p.contains(".mover.part")),
            "temporary files left in {}",
            dir.display()
        );
    }
}

#[test]
fn pulls_that_leave_the_root_are_refused() {
    let tmp = TempDir::new("ssh-escape");
    let Some(sshd) = Sshd::start(tmp.path(), "pulls_that_leave_the_root_are_refused") else { return };
    let remote = tmp.path().join("remote");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(remote.join("dir")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::write(remote.join("dir/ok"), b"ok").unwrap();
    std::os::unix::fs::symlink(&outside, remote.join("link")).unwrap();
    std::os::unix::fs::symlink(&outside, remote.join("dir/inner-link")).unwrap();
    let local = tmp.path().join("local");
    let outside_abs = format!("{}", outside.join("secret").display());
    let src = tmp.path().join("f");
    fs::write(&src, b"x").unwrap();
    let nonexistent = tmp.path().join("nonexistent");
    // (verb, remote root, remote path, expected reason): pulls, pushes, and a remote root that does not exist.
    let cases = [
        ("pull", &remote, "../outside/secret", "'..'"),
        ("pull", &remote, "link", "symlink escape"),
        ("pull", &remote, "link/secret", "symlink escape"),
        ("pull", &remote, outside_abs.as_str(), "outside this server's root"),
        ("push", &remote, "/etc", "outside this server's root"),
        ("push", &remote, "link/x", "symlink"),
        ("pull", &nonexistent, "x", "does not exist"),
    ];
    // Run side by side: each is mostly an ssh handshake.
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|&(verb, root, path, _)| {
                let mut c = sshd.mover(verb, root);
                let remote_path = format!("root@127.0.0.1:{path}");
                if verb == "pull" {
                    c.arg(remote_path).arg(&local);
                } else {
                    c.arg(&src).arg(remote_path);
                }
                s.spawn(move || run_with_limit(&mut c, LIMIT))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((verb, _, path, why), out) in cases.iter().zip(&outputs) {
        let line = error_line(out);
        assert!(line.contains("server refused") && line.contains(why), "{verb} {path}: {line}");
    }
    assert!(!local.exists(), "a refused pull created {}", local.display());
    assert_eq!(list_tree(&outside), ["secret"], "a push wrote outside the root");
    // A directory with a symlink inside: the link is not followed out of the root; it arrives as a link
    // (only a name), and nothing of what it points to is read or sent.
    succeed(sshd.mover("pull", &remote).arg("root@127.0.0.1:dir").arg(&local), &sshd);
    assert_eq!(list_tree(&local), ["dir", "dir/inner-link", "dir/ok"]);
    assert_eq!(fs::read_link(local.join("dir/inner-link")).unwrap(), outside);
    assert_eq!(list_tree(&outside), ["secret"]);
}

#[test]
fn ssh_failures_are_clear_errors() {
    let tmp = TempDir::new("ssh-fail");
    let Some(sshd) = Sshd::start(tmp.path(), "ssh_failures_are_clear_errors") else { return };
    let src = tmp.path().join("f");
    fs::write(&src, b"x").unwrap();
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).unwrap();
    let wrong_port = sshd.ssh_command(free_port(), &sshd.user_key);
    let wrong_key = sshd.ssh_command(sshd.port, &sshd.host_key);
    for (ssh, remote_mover, why) in [
        (wrong_port.as_str(), env!("CARGO_BIN_EXE_mover"), "exit status 255"),
        (wrong_key.as_str(), env!("CARGO_BIN_EXE_mover"), "exit status 255"),
        (&*sshd.ssh_command(sshd.port, &sshd.user_key), "/nonexistent/mover", "--remote-mover"),
    ] {
        let started = Instant::now();
        let out = run_with_limit(
            mover()
                .args(["push", "--ssh", ssh, "--remote-mover", remote_mover, "--remote-root"])
                .arg(&remote)
                .arg(&src)
                .arg("root@127.0.0.1:x"),
            LIMIT,
        );
        let line = error_line(&out);
        assert!(line.contains("ssh to 127.0.0.1 failed") && line.contains(why), "{ssh}: {line}");
        assert!(started.elapsed() < Duration::from_secs(20), "{ssh}: took {:?}", started.elapsed());
    }
    assert!(list_tree(&remote).is_empty());
}

/// root's home directory as sshd gives it to the session (from /etc/passwd, not this process's $HOME).
fn root_home() -> PathBuf {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.starts_with("root:")).expect("root in /etc/passwd");
    PathBuf::from(line.split(':').nth(5).expect("home field"))
}

/// A directory removed on drop (one in root's home, which is no TempDir).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn without_remote_root_paths_work_as_with_scp() {
    let tmp = TempDir::new("h6-ssh-scp");
    let Some(sshd) = Sshd::start(tmp.path(), "without_remote_root_paths_work_as_with_scp") else { return };
    let tree = tmp.path().join("src/tree");
    fs::create_dir_all(tree.join("a")).unwrap();
    write_random_file(&tree.join("a/one-mib.bin"), 1 << 20, 3);
    fs::write(tree.join("small"), b"small").unwrap();
    // The destination is outside root's home, in the temp directory: refused before issue 17.
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).unwrap();
    // An old partial file next to it: a --stdio session must not sweep (its root is `/`).
    let old_partial = tmp.path().join(".left-behind.mover.part");
    fs::write(&old_partial, b"partial").unwrap();
    let weeks_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    fs::File::options().write(true).open(&old_partial).unwrap().set_modified(weeks_ago).unwrap();

    // Absolute, through a symlink on the way (followed, as scp follows it).
    std::os::unix::fs::symlink(&remote, tmp.path().join("remote-link")).unwrap();
    let dest = format!("root@127.0.0.1:{}", tmp.path().join("remote-link/in/coming").display());
    let out = succeed(sshd.mover_unconfined("push").args(["--json"]).arg(&tree).arg(&dest), &sshd);
    assert_eq!(json_raw(&out, "verified"), Some("true"), "{out}");
    compare_trees(&tree, &remote.join("in/coming/tree")).unwrap();
    assert!(old_partial.exists(), "the --stdio session swept a partial outside where it wrote");

    // Pull it back by its absolute path.
    let local = tmp.path().join("local");
    let source = format!("root@127.0.0.1:{}", remote.join("in/coming/tree").display());
    let out = succeed(sshd.mover_unconfined("pull").args(["--json"]).arg(&source).arg(&local), &sshd);
    assert_eq!(json_raw(&out, "verified"), Some("true"), "{out}");
    compare_trees(&tree, &local.join("tree")).unwrap();

    // Relative: lands under the remote home, as `host:projects` does with scp and rsync.
    let name = format!("mover-h6-ssh-rel-{}", std::process::id());
    let in_home = RemoveOnDrop(root_home().join(&name));
    let out = succeed(
        sshd.mover_unconfined("push").args(["--json"]).arg(&tree).arg(format!("root@127.0.0.1:{name}/dir")),
        &sshd,
    );
    assert_eq!(json_raw(&out, "verified"), Some("true"), "{out}");
    compare_trees(&tree, &in_home.0.join("dir/tree")).unwrap();
    let local2 = tmp.path().join("local2");
    succeed(sshd.mover_unconfined("pull").arg(format!("root@127.0.0.1:{name}/dir/tree")).arg(&local2), &sshd);
    compare_trees(&tree, &local2.join("tree")).unwrap();

    // --remote-root is still a confinement: the same absolute path is refused outside it.
    let confined = tmp.path().join("confined");
    fs::create_dir(&confined).unwrap();
    let out = run_with_limit(sshd.mover("pull", &confined).arg(&source).arg(tmp.path().join("local3")), LIMIT);
    let line = error_line(&out);
    assert!(line.contains("outside this server's root"), "{line}");
}

/// `mover copy host:PATH mover://DAEMON/DIR`: the SSH host pushes straight to the daemon with a one-time
/// delegation (third party); this process only directs.
#[test]
fn copy_from_an_ssh_host_to_a_daemon() {
    let tmp = TempDir::new("ssh-copy");
    let Some(sshd) = Sshd::start(tmp.path(), "copy_from_an_ssh_host_to_a_daemon") else { return };
    let t = common::tokens::token_tls(tmp.path());
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let daemon_root = tmp.path().join("daemon");
    fs::create_dir(&daemon_root).unwrap();
    let tls = [p(&t.certs.server_cert), p(&t.certs.server_key), p(&t.tokens)];
    let server = common::Server::start(
        &daemon_root,
        &["--tls-cert", &tls[0], "--tls-key", &tls[1], "--tokens", &tls[2], "--net", "udp"],
    );
    let remote = tmp.path().join("remote");
    fs::create_dir_all(remote.join("runs/9")).unwrap();
    write_random_file(&remote.join("runs/9/reads.bin"), 3 << 20, 4);
    fs::write(remote.join("runs/9/sample.txt"), b"ACGTACGT\n".repeat(1000)).unwrap();
    let mut cmd = sshd.mover("copy", &remote);
    cmd.args(["--json", "--net", "udp"]).args(t.client_args());
    cmd.args(["root@127.0.0.1:runs/9".to_string(), format!("mover://{}/in", server.addr)]);
    let out = succeed(&mut cmd, &sshd);
    assert_eq!(json_raw(&out, "verified"), Some("true"), "{out}");
    assert!(json_raw(&out, "transfer").is_some(), "{out}");
    compare_trees(&remote.join("runs/9"), &daemon_root.join("in/9")).unwrap();
}
