//! Fan-out pushes with the real binary over loopback (issue 21, item 2): `mover push --to A --to B --to C`
//! reads the sources once for every destination, each destination is verified on its own, a slow one
//! (a daemon capped at a tenth of the others' rate) holds up none of the fast ones, a failed one is
//! reported while the others finish, and a job transfer with `to = [...]` fans out the same way.

mod common;

use common::{
    hash_file, json_objects, json_str, json_u64, list_tree, mover, run_with_limit, write_random_file, Server, TempDir,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A tree of one file of `big` bytes, 30 small ones and one in a subdirectory; its total bytes.
fn tree(src: &Path, big: u64) -> u64 {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write_random_file(&src.join("big.bin"), big, 1);
    let mut total = big;
    for i in 0..30u64 {
        let len = 1_000 + i * 3_001;
        write_random_file(&src.join(format!("s{i:02}")), len, 100 + i);
        total += len;
    }
    write_random_file(&src.join("sub/deep.bin"), 77_777, 9);
    total + 77_777
}

/// Every file of `dir` by relative path with its hash.
fn hashes(dir: &Path) -> Vec<(String, u128)> {
    let mut out: Vec<_> = list_tree(dir)
        .into_iter()
        .filter(|rel| dir.join(rel).is_file())
        .map(|rel| {
            let h = hash_file(&dir.join(&rel));
            (rel, h)
        })
        .collect();
    out.sort();
    out
}

/// `n` daemons, each on its own root, with `extra` flags for daemon `i` from `extra(i)`.
fn daemons(dir: &Path, n: usize, extra: &dyn Fn(usize) -> Vec<&'static str>) -> (Vec<Server>, Vec<PathBuf>) {
    let mut servers = Vec::new();
    let mut roots = Vec::new();
    for i in 0..n {
        let root = dir.join(format!("root{i}"));
        std::fs::create_dir_all(&root).unwrap();
        servers.push(Server::start(&root, &extra(i)));
        roots.push(root);
    }
    (servers, roots)
}

fn push_to(servers: &[Server], src: &Path, flags: &[&str]) -> Output {
    let mut cmd = mover();
    cmd.args(["push", "--insecure-no-auth", "--net", "udp", "--json", "-q"]).args(flags);
    for s in servers {
        cmd.arg("--to").arg(format!("mover://{}/in", s.addr));
    }
    run_with_limit(cmd.arg(src), LIMIT)
}

#[test]
fn the_sources_are_read_once_and_every_destination_verifies_its_own_copy() {
    let dir = TempDir::new("fan-out-once");
    let src = dir.path().join("data");
    let total = tree(&src, 24 << 20);
    let (servers, roots) = daemons(dir.path(), 3, &|_| vec![]);
    let out = push_to(&servers, &src, &["--rate", "400M"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let transfers = json_objects(&stdout, "transfers");
    assert_eq!(transfers.len(), 3, "{stdout}");
    let mut disk = 0;
    for (t, s) in transfers.iter().zip(&servers) {
        assert_eq!(json_str(t, "to"), Some(format!("mover://{}/in", s.addr).as_str()), "{t}");
        assert_eq!(json_str(t, "status"), Some("ok"), "{t}");
        assert_eq!(json_u64(t, "bytes"), Some(total), "{t}");
        let (read, shared) = (json_u64(t, "read_disk_bytes").unwrap(), json_u64(t, "read_shared_bytes").unwrap());
        assert_eq!(read + shared, total, "every byte read or copied once per destination: {t}");
        disk += read;
    }
    // Each chunk was read by one session and copied by the others: the tree once, not three times.
    assert_eq!(disk, total, "bytes read from disk for three destinations, against the tree's {total}\n{stdout}");
    let want = hashes(&src);
    for root in &roots {
        assert_eq!(hashes(&root.join("in/data")), want, "{}", root.display());
    }
    // Each destination decides on its own what it needs: a rerun sends nothing to any of them.
    let again = push_to(&servers, &src, &["--rate", "400M"]);
    let stdout = text(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    for t in json_objects(&stdout, "transfers") {
        assert_eq!(json_u64(t, "skipped_bytes"), Some(total), "a rerun skips everything: {t}");
        assert_eq!(json_u64(t, "read_disk_bytes"), Some(0), "{t}");
    }
}

/// The issue's test: three daemons, one capped at a tenth of the rate the others take. The fast two
/// finish about when a push to one of them alone does, and the slow one at its own pace, verified too.
/// The buffer is made far smaller than the tree (4 MiB, below even one session's 32 MiB read-ahead), so
/// sharing breaks down and sessions read on their own: what must hold then is that nobody waits and
/// every copy is right. (With the default buffer the whole tree is shared: the test above.)
///
/// The tree is 64 MiB so that the slow one *must* fall behind: a session's reader runs up to its pool
/// (32 chunks of 1 MiB) ahead of its own sender, so a tree that fits the pool is read by all three at
/// disk speed and the slow one may copy every chunk (a CI run saw exactly that with 20 MiB). Here, by
/// the time the fast two are done (a few seconds), the slow sender has sent at most ~15 MiB, its reader
/// is at most ~47 MiB in, and the 4 MiB buffer holds only the tree's last chunks: it reads the rest.
#[test]
fn a_destination_at_a_tenth_of_the_rate_holds_up_none_of_the_others() {
    let dir = TempDir::new("fan-out-slow");
    let src = dir.path().join("data");
    let total = tree(&src, 64 << 20);
    let (servers, roots) = daemons(dir.path(), 3, &|i| if i == 2 { vec!["--max-rate", "25M"] } else { vec![] });
    // A push to one fast daemon alone, as the yardstick, in the same run.
    let alone = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--net", "udp", "--json", "-q", "--rate", "250M"])
            .arg(&src)
            .arg(format!("mover://{}/alone", servers[0].addr)),
        LIMIT,
    );
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone.stderr));
    let alone_s = common::json_f64(&text(&alone.stdout), "seconds").unwrap();
    let out = push_to(&servers, &src, &["--rate", "250M", "--fan-out-buffer", "4M"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let t = json_objects(&stdout, "transfers");
    let seconds: Vec<f64> = t.iter().map(|t| common::json_f64(t, "seconds").unwrap()).collect();
    let read: Vec<u64> = t.iter().map(|t| json_u64(t, "read_disk_bytes").unwrap()).collect();
    eprintln!("alone {alone_s:.2} s; fan-out seconds {seconds:?}, read from disk {read:?} of {total}");
    // The slow one takes ~10x as long (25 Mbit/s against 250).
    assert!(seconds[2] > 4.0 * seconds[0].max(seconds[1]), "the capped destination is not slower: {seconds:?}");
    for fast in &seconds[..2] {
        assert!(
            *fast < 2.0 * alone_s + 1.0,
            "a fast destination took {fast:.2} s against {alone_s:.2} s alone: the slow one held it up ({seconds:?})"
        );
    }
    // Every session got every byte, by reading it or copying it; the slow one, soon more than its pool and
    // the 4 MiB buffer behind, read some on its own.
    for tr in &t {
        let got = json_u64(tr, "read_disk_bytes").unwrap() + json_u64(tr, "read_shared_bytes").unwrap();
        assert_eq!(got, total, "{tr}");
    }
    assert!(read[2] > 0, "the slow one should have read on its own once behind: {read:?} of {total}");
    let want = hashes(&src);
    for root in &roots {
        assert_eq!(hashes(&root.join("in/data")), want, "{}", root.display());
    }
}

#[test]
fn a_failed_destination_is_reported_and_the_others_finish() {
    let dir = TempDir::new("fan-out-failed");
    let src = dir.path().join("data");
    tree(&src, 2 << 20);
    let (servers, roots) = daemons(dir.path(), 2, &|_| vec![]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--net", "udp", "--json", "--retries", "0", "--rate", "400M"])
            .args(["--to", &format!("mover://{}/in", servers[0].addr)])
            .args(["--to", &format!("mover://127.0.0.1:{closed}/in")])
            .args(["--to", &format!("mover://{}/in", servers[1].addr)])
            .arg(&src),
        LIMIT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "some destinations succeeded, one failed: partial\n{stderr}");
    let t = json_objects(&stdout, "transfers");
    let status: Vec<&str> = t.iter().map(|t| json_str(t, "status").unwrap()).collect();
    assert_eq!(status, ["ok", "failed", "ok"], "{stdout}");
    assert!(json_str(t[1], "error").unwrap().contains("refused"), "{}", t[1]);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("mover: error: 1 of 3 transfers failed: ") && last.contains(&closed.to_string()),
        "{stderr}"
    );
    let want = hashes(&src);
    for root in &roots {
        assert_eq!(hashes(&root.join("in/data")), want);
    }
}

#[test]
fn a_job_transfer_to_several_destinations_fans_out() {
    let dir = TempDir::new("fan-out-job");
    let src = dir.path().join("data");
    let total = tree(&src, 4 << 20);
    let (servers, roots) = daemons(dir.path(), 2, &|_| vec![]);
    let job = dir.path().join("job.toml");
    let text_of = format!(
        "insecure-no-auth = true\nnet = \"udp\"\nrate = \"400M\"\n\n[[transfer]]\nname = \"both\"\nsources = [\"{}\"]\nto = [\"mover://{}/in\", \"mover://{}/in\"]\n",
        src.display(),
        servers[0].addr,
        servers[1].addr
    );
    std::fs::write(&job, text_of).unwrap();
    let out = run_with_limit(mover().args(["job", "--json", "-q"]).arg(&job), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = json_objects(&stdout, "transfers");
    let disk: u64 = t.iter().map(|t| json_u64(t, "read_disk_bytes").unwrap()).sum();
    assert_eq!(disk, total, "the job's two destinations shared one read: {stdout}");
    for root in &roots {
        assert_eq!(hashes(&root.join("in/data")), hashes(&src));
    }
}

#[test]
fn bad_fan_outs_are_one_line_usage_errors() {
    let dir = TempDir::new("fan-out-usage");
    let cases: [(&[&str], &str); 5] = [
        (&["push", "a", "mover://h/y", "--to", "mover://h/x"], "give it as --to mover://h/y"),
        (&["push", "a", "--to", "mover://h/x", "--to", "mover://h/x"], "given twice"),
        (&["push", "a", "--to", "mover://h/x", "--to", "mover://g/x", "--via", "mover://r"], "--via"),
        (&["push", "a"], "SRC... DEST"),
        (&["push", "a", "--fan-out-buffer", "lots", "--to", "mover://h/x"], "fan-out-buffer"),
    ];
    for (args, says) in cases {
        let out = run_with_limit(mover().current_dir(dir.path()).args(args), LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Credentials are the same for every daemon of a fan-out: two TLS daemons that take alice's token both
/// get it (read once, given to each), and both verify their copy.
#[test]
fn a_fan_out_to_tls_daemons_authenticates_to_each() {
    let dir = TempDir::new("fan-out-tls");
    let src = dir.path().join("data");
    tree(&src, 1 << 20);
    let tls = common::tokens::token_tls(dir.path());
    let roots = [dir.path().join("root0"), dir.path().join("root1")];
    let servers = [tls.daemon(&roots[0]), tls.daemon(&roots[1])];
    let mut cmd = mover();
    cmd.args(["push", "--net", "udp", "--json", "-q", "--rate", "400M"]).args(tls.client_args());
    for s in &servers {
        cmd.arg("--to").arg(format!("mover://{}/in", s.addr));
    }
    let out = run_with_limit(cmd.arg(&src), LIMIT);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    let status: Vec<&str> = json_objects(&stdout, "transfers").iter().map(|t| json_str(t, "status").unwrap()).collect();
    assert_eq!(status, ["ok", "ok"], "{stdout}");
    for root in &roots {
        assert_eq!(hashes(&root.join("in/data")), hashes(&src), "{}", root.display());
    }
}
