//! `mover job FILE.toml` with the real binary over loopback (issue 21, item 1): mixed successes and
//! failures give the documented exit code, table and JSON; a killed job reruns and resumes; `--dry-run` is
//! exact and changes nothing; bad job files are one-line usage errors; `--shard` is honoured; NDJSON
//! events parse.

mod common;

use common::{
    hash_file, json_objects, json_str, json_u64, list_tree, mover, run_with_limit, write_random_file, KillOnDrop,
    Server, TempDir,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

fn write_job(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("job.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn run_job(args: &[&str], file: &Path) -> Output {
    run_with_limit(mover().arg("job").args(args).arg(file), LIMIT)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A port nothing listens on: bound, then closed.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every file below `dir` with its size, mtime and inode: what "changed nothing" compares, and how a
/// rewritten file (a new inode by its commit's rename) is told from one left alone.
fn listing(dir: &Path) -> Vec<(String, u64, i64, u64)> {
    let mut out: Vec<_> = list_tree(dir)
        .into_iter()
        .map(|rel| {
            let m = std::fs::symlink_metadata(dir.join(&rel)).unwrap();
            let size = if m.is_dir() { 0 } else { m.len() };
            (rel, size, m.mtime() * 1_000_000_000 + m.mtime_nsec(), m.ino())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn mixed_outcomes_give_the_partial_exit_code_the_table_and_the_json() {
    let dir = TempDir::new("job-mixed");
    let src = dir.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("a.bin"), 300_000, 1);
    write_random_file(&src.join("b.bin"), 5_000, 2);
    let (root_a, root_b) = (dir.path().join("ra"), dir.path().join("rb"));
    std::fs::create_dir_all(&root_a).unwrap();
    std::fs::create_dir_all(&root_b).unwrap();
    let (a, b) = (Server::start(&root_a, &[]), Server::start(&root_b, &[]));
    let closed = closed_port();
    let file = write_job(
        dir.path(),
        &format!(
            r#"
            insecure-no-auth = true
            net = "udp"
            rate = "1G"
            retries = 0

            [[transfer]]
            name = "fan"
            sources = ["{src}"]
            to = ["mover://{a}/in", "mover://{b}/in"]

            [[transfer]]
            name = "closed"
            sources = ["{src}"]
            to = "mover://127.0.0.1:{closed}/in"
            connect-timeout = 2

            [[transfer]]
            name = "missing"
            sources = ["{missing}"]
            to = "mover://{a}/in"
            "#,
            src = src.display(),
            a = a.addr,
            b = b.addr,
            missing = dir.path().join("no-such-dir").display(),
        ),
    );
    let out = run_job(&["--json"], &file);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "mixed outcomes: partial success\n{stderr}");
    // The table: a header, then one row per transfer x destination in file order.
    let rows: Vec<&str> = stderr.lines().skip_while(|l| !l.starts_with("name ")).collect();
    assert!(rows[0].starts_with("name") && rows[0].contains("destination") && rows[0].ends_with("error"), "{stderr}");
    let row = |i: usize| rows[i].split_whitespace().collect::<Vec<&str>>();
    assert_eq!(row(1)[..4], ["fan", &format!("mover://{}/in", a.addr), "ok", "2"], "{stderr}");
    assert_eq!(row(2)[..4], ["fan", &format!("mover://{}/in", b.addr), "ok", "2"], "{stderr}");
    assert_eq!(row(3)[..3], ["closed", &format!("mover://127.0.0.1:{closed}/in"), "failed"], "{stderr}");
    assert!(rows[3].contains("refused"), "{stderr}");
    assert_eq!(row(4)[..3], ["missing", &format!("mover://{}/in", a.addr), "failed"], "{stderr}");
    // One error line after the table, counting the failures.
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("mover: error: 2 of 4 transfers failed: closed -> "), "{stderr}");
    // The JSON: each push's report keys after name, to, status and attempts; the totals.
    let transfers = json_objects(&stdout, "transfers");
    assert_eq!(transfers.len(), 4, "{stdout}");
    let statuses: Vec<_> =
        transfers.iter().map(|t| (json_str(t, "name").unwrap(), json_str(t, "status").unwrap())).collect();
    assert_eq!(statuses, [("fan", "ok"), ("fan", "ok"), ("closed", "failed"), ("missing", "failed")]);
    for t in &transfers[..2] {
        assert_eq!(json_u64(t, "bytes"), Some(305_000), "{t}");
        assert_eq!(json_u64(t, "attempts"), Some(1), "{t}");
        assert!(t.contains("\"verified\":true") && t.contains("\"goodput_bps\":"), "{t}");
    }
    assert!(
        json_str(transfers[2], "error").is_some() && json_str(transfers[3], "error").unwrap().contains("no-such-dir")
    );
    assert_eq!(json_u64(&stdout, "succeeded"), Some(2), "{stdout}");
    assert_eq!(json_u64(&stdout, "failed"), Some(2), "{stdout}");
    let totals = &stdout[stdout.rfind("}]").unwrap()..];
    assert_eq!(json_u64(totals, "files"), Some(4), "{stdout}");
    assert_eq!(json_u64(totals, "bytes"), Some(610_000), "{stdout}");
    for root in [&root_a, &root_b] {
        assert_eq!(hash_file(&root.join("in/data/a.bin")), hash_file(&src.join("a.bin")));
    }

    // All failed: the most telling class (a missing source) over the retryable one.
    let file = write_job(
        dir.path(),
        &format!(
            "insecure-no-auth = true\nretries = 0\n[[transfer]]\nsources = [\"{}\"]\nto = \"mover://127.0.0.1:{closed}/in\"\n\
             [[transfer]]\nsources = [\"{}\"]\nto = \"mover://{}/in\"\n",
            src.display(),
            dir.path().join("gone").display(),
            a.addr
        ),
    );
    let out = run_job(&["-q"], &file);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).lines().count(), 1, "-q: only the error line: {}", text(&out.stderr));
}

/// Waits until `path` exists and has grown past the size it first had (a resume journal that has made a
/// step), at most `limit`.
fn wait_for_growth(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut first = None;
    while Instant::now() < deadline {
        if let Ok(m) = std::fs::metadata(path) {
            match first {
                None => first = Some(m.len()),
                Some(f) if m.len() > f => return,
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not grow within {limit:?}", path.display());
}

/// Waits until the daemon has logged the end of a failed session (it let go of its partials).
fn wait_for_failed_session(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if server.lines.lock().unwrap().iter().any(|l| l.contains("failed")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the daemon did not end the killed session");
}

/// A tree of small files that sort first and one large file that takes seconds at 200 Mbit/s.
fn tree_with_a_big_file(src: &Path, big_bytes: u64) -> u64 {
    std::fs::create_dir_all(src).unwrap();
    let mut total = 0;
    for i in 0..4u64 {
        write_random_file(&src.join(format!("a{i}.bin")), 100_000 + i, 10 + i);
        total += 100_000 + i;
    }
    write_random_file(&src.join("z-big.bin"), big_bytes, 99);
    total + big_bytes
}

#[test]
fn a_killed_job_reruns_and_resumes() {
    let dir = TempDir::new("job-killed");
    let src = dir.path().join("data");
    let total = tree_with_a_big_file(&src, 96 << 20);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let file = write_job(
        dir.path(),
        &format!(
            "insecure-no-auth = true\nnet = \"udp\"\nrate = \"200M\"\n[[transfer]]\nname = \"run\"\nsources = [\"{}\"]\nto = \"mover://{}/in\"\n",
            src.display(),
            server.addr
        ),
    );
    let mut job = KillOnDrop(
        mover().arg("job").arg("-q").arg(&file).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    wait_for_growth(&root.join("in/data/.z-big.bin.mover.part.journal"), Duration::from_secs(60));
    // SIGKILL while the large file is in flight.
    job.0.kill().unwrap();
    job.0.wait().unwrap();
    wait_for_failed_session(&server);
    assert!(root.join("in/data/.z-big.bin.mover.part").exists(), "the partial is kept for resume");

    let out = run_job(&["--json", "-q"], &file);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let t = json_objects(&stdout, "transfers")[0];
    let resumed = json_u64(t, "resumed_bytes").unwrap();
    assert!(resumed > 0, "the rerun resumed the large file: {t}");
    assert_eq!(json_u64(t, "skipped_files"), Some(4), "the small files were complete: {t}");
    assert_eq!(json_u64(t, "bytes"), Some(96 << 20), "only the large file was committed again: {t}");
    assert!(total > 96 << 20);
    for rel in ["a0.bin", "a3.bin", "z-big.bin"] {
        assert_eq!(hash_file(&root.join("in/data").join(rel)), hash_file(&src.join(rel)), "{rel}");
    }
    assert!(
        !root.join("in/data/.z-big.bin.mover.part").exists()
            && !root.join("in/data/.z-big.bin.mover.part.journal").exists()
    );
}

#[test]
fn dry_run_is_exact_and_changes_nothing() {
    let dir = TempDir::new("job-dry-run");
    let src = dir.path().join("data");
    tree_with_a_big_file(&src, 48 << 20);
    for i in 0..3u64 {
        write_random_file(&src.join(format!("c{i}.bin")), 70_000, 20 + i);
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/in", server.addr);
    // Everything but the large file arrives whole; the large one leaves a journaled partial.
    let big = src.join("z-big.bin");
    let aside = dir.path().join("z-big.bin");
    std::fs::rename(&big, &aside).unwrap();
    let out =
        run_with_limit(mover().args(["push", "--insecure-no-auth", "--net", "udp", "-q"]).arg(&src).arg(&url), LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::rename(&aside, &big).unwrap();
    let mut push = KillOnDrop(
        mover()
            .args(["push", "--insecure-no-auth", "--net", "udp", "-q", "--rate", "200M"])
            .arg(&src)
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_growth(&root.join("in/data/.z-big.bin.mover.part.journal"), Duration::from_secs(60));
    push.0.kill().unwrap();
    push.0.wait().unwrap();
    wait_for_failed_session(&server);
    // Now: a1 unchanged, a0 changed (new content, same size), c* changed by mtime only if they differ...
    write_random_file(&src.join("a0.bin"), 100_000, 77);
    // ...one new file, and c1 removed at the destination (missing there).
    write_random_file(&src.join("n-new.bin"), 12_345, 5);
    std::fs::remove_file(root.join("in/data/c1.bin")).unwrap();
    let file = write_job(
        dir.path(),
        &format!(
            "insecure-no-auth = true\nnet = \"udp\"\n[[transfer]]\nname = \"data\"\nsources = [\"{}\"]\nto = \"{url}\"\n",
            src.display()
        ),
    );
    let before = listing(&root);
    let out = run_job(&["--dry-run", "--json"], &file);
    let dry = text(&out.stdout);
    assert!(out.status.success(), "{}\n{dry}", text(&out.stderr));
    assert_eq!(listing(&root), before, "a dry run creates and changes nothing on the daemon");
    let files = json_objects(&dry, "files");
    let verdict = |path: &str| {
        let f = files.iter().find(|f| json_str(f, "path") == Some(path)).unwrap_or_else(|| panic!("{path}: {dry}"));
        (json_str(f, "verdict").unwrap().to_string(), json_u64(f, "held").unwrap())
    };
    assert_eq!(verdict("data/a1.bin"), ("unchanged".to_string(), 0));
    assert_eq!(verdict("data/a0.bin").0, "changed");
    assert_eq!(verdict("data/c1.bin").0, "new");
    assert_eq!(verdict("data/n-new.bin").0, "new");
    let (big_verdict, held) = verdict("data/z-big.bin");
    assert!(big_verdict == "changed" && held > 0, "the partial: {big_verdict} {held}");
    // The text table says the same.
    let out = run_job(&["--dry-run"], &file);
    let table = text(&out.stdout);
    assert!(table.contains("  unchanged") && table.contains("data/z-big.bin  (partial holds "), "{table}");
    assert_eq!(listing(&root), before);

    // The real run moves exactly what the dry run said.
    let out = run_job(&["--json", "-q"], &file);
    let real = text(&out.stdout);
    assert!(out.status.success(), "{}\n{real}", text(&out.stderr));
    let t = json_objects(&real, "transfers")[0];
    for (dry_key, real_key) in [
        ("files_to_send", "files"),
        ("bytes_of_files_to_send", "bytes"),
        ("resumed_bytes", "resumed_bytes"),
        ("skipped_files", "skipped_files"),
        ("skipped_bytes", "skipped_bytes"),
    ] {
        let (said, moved) = (json_u64(&dry, dry_key), json_u64(t, real_key));
        assert!(said.is_some(), "{dry_key} missing: {dry}");
        assert_eq!(said, moved, "{dry_key} vs {real_key}\n{dry}\n{t}");
    }
    // File by file: what was unchanged was left alone (same inode), the rest was committed anew.
    let after = listing(&root);
    let ino = |l: &[(String, u64, i64, u64)], p: &str| l.iter().find(|e| e.0 == p).map(|e| e.3);
    for f in &files {
        let path = json_str(f, "path").unwrap();
        let at = format!("in/{path}");
        let kept = ino(&before, &at).is_some() && ino(&before, &at) == ino(&after, &at);
        assert_eq!(kept, json_str(f, "verdict") == Some("unchanged"), "{path}");
        assert_eq!(hash_file(&root.join(&at)), hash_file(&src.join(path.strip_prefix("data/").unwrap())), "{path}");
    }
}

#[test]
fn bad_job_files_are_one_line_usage_errors_naming_the_key() {
    let dir = TempDir::new("job-bad");
    let base = "[[transfer]]\nname = \"logs\"\nsources = [\"/tmp\"]\n";
    for (body, says) in [
        (format!("{base}to = \"mover://127.0.0.1:9/in\"\nrat = \"1G\"\n"), "unknown key 'rat': did you mean 'rate'?"),
        (format!("{base}to = \"mover://127.0.0.1:9/in\"\noverwrite = \"sometimes\"\n"), "overwrite = \"sometimes\""),
        (format!("{base}to = \"mover://127.0.0.1:9/in\"\nrate = \"fast\"\n"), "rate = \"fast\""),
        (base.to_string(), "no 'to': add to = "),
        ("concurrency = 0\n".to_string(), "concurrency = 0"),
        (format!("polcy = \"low\"\n{base}to = \"h:d\"\n"), "unknown key 'polcy': did you mean 'policy'?"),
    ] {
        let file = write_job(dir.path(), &body);
        let out = run_job(&[], &file);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("mover: error: ") && stderr.contains(says), "{body}: {stderr}");
        assert!(stderr.contains(&file.display().to_string()), "names the file: {stderr}");
    }
    // A flag whose value only push's own checks refuse (the floor above the rate) names the transfer.
    let file =
        write_job(dir.path(), &format!("{base}to = \"mover://127.0.0.1:9/in\"\nrate = \"1M\"\nmin-rate = \"2M\"\n"));
    let out = run_job(&[], &file);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[[transfer]] 1 ('logs')") && stderr.contains("--min-rate"), "{stderr}");
}

#[test]
fn shards_in_a_job_move_everything_once() {
    let dir = TempDir::new("job-shards");
    let src = dir.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    let mut total = 0;
    for i in 0..24u64 {
        let len = 1000 + i * 3001;
        write_random_file(&src.join(format!("f{i}.bin")), len, i);
        total += len;
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let file = write_job(
        dir.path(),
        &format!(
            "insecure-no-auth = true\nnet = \"udp\"\nshard = \"0/2\"\n[[transfer]]\nsources = [\"{}\"]\nto = \"mover://{}/in\"\n",
            src.display(),
            server.addr
        ),
    );
    // Shard 0/2 from the file, then 1/2 from the command line, which wins over the file's key.
    let (mut bytes, mut files) = (0, 0);
    for args in [&["--json", "-q"][..], &["--json", "-q", "--shard", "1/2"][..]] {
        let out = run_job(args, &file);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let t = json_objects(&stdout, "transfers")[0];
        assert_eq!(json_u64(t, "skipped_files"), Some(0), "no shard saw another's files: {t}");
        assert!(json_u64(t, "files").unwrap() > 0, "{t}");
        bytes += json_u64(t, "bytes").unwrap();
        files += json_u64(t, "files").unwrap();
    }
    assert_eq!((files, bytes), (24, total), "every file moved exactly once");
    for i in 0..24 {
        let rel = format!("f{i}.bin");
        assert_eq!(hash_file(&root.join("in/data").join(&rel)), hash_file(&src.join(&rel)));
    }
}

/// A minimal JSON checker: one value, nothing after it (objects, arrays, strings, numbers, literals).
fn parse_json(s: &str) -> Result<(), String> {
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    fn value(b: &[u8], i: &mut usize) -> Result<(), String> {
        ws(b, i);
        match b.get(*i) {
            Some(b'{') | Some(b'[') => {
                let close = if b[*i] == b'{' { b'}' } else { b']' };
                let object = close == b'}';
                *i += 1;
                ws(b, i);
                if b.get(*i) == Some(&close) {
                    *i += 1;
                    return Ok(());
                }
                loop {
                    if object {
                        ws(b, i);
                        if b.get(*i) != Some(&b'"') {
                            return Err(format!("key expected at {i}"));
                        }
                        value(b, i)?;
                        ws(b, i);
                        if b.get(*i) != Some(&b':') {
                            return Err(format!(": expected at {i}"));
                        }
                        *i += 1;
                    }
                    value(b, i)?;
                    ws(b, i);
                    match b.get(*i) {
                        Some(b',') => *i += 1,
                        Some(c) if *c == close => {
                            *i += 1;
                            return Ok(());
                        }
                        _ => return Err(format!(", or close expected at {i}")),
                    }
                }
            }
            Some(b'"') => {
                *i += 1;
                while *i < b.len() && b[*i] != b'"' {
                    if b[*i] == b'\\' {
                        *i += 1;
                    } else if b[*i] < 0x20 {
                        return Err(format!("control character in a string at {i}"));
                    }
                    *i += 1;
                }
                if *i >= b.len() {
                    return Err("unterminated string".into());
                }
                *i += 1;
                Ok(())
            }
            Some(_) => {
                let start = *i;
                while *i < b.len() && !b",]} \t\r\n".contains(&b[*i]) {
                    *i += 1;
                }
                let word = std::str::from_utf8(&b[start..*i]).unwrap();
                if matches!(word, "true" | "false" | "null") || word.parse::<f64>().is_ok() {
                    Ok(())
                } else {
                    Err(format!("bad literal {word:?}"))
                }
            }
            None => Err("value expected".into()),
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    value(b, &mut i)?;
    ws(b, &mut i);
    if i != b.len() {
        return Err(format!("trailing bytes at {i}"));
    }
    Ok(())
}

#[test]
fn progress_json_is_one_object_per_line_with_the_name() {
    assert!(parse_json(r#"{"a":[1,{"b":"c\"d"}],"e":null}"#).is_ok() && parse_json(r#"{"a":1,}"#).is_err());
    let dir = TempDir::new("job-ndjson");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    write_random_file(&one.join("big.bin"), 24 << 20, 1);
    write_random_file(&two.join("small.bin"), 50_000, 2);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::start(&root, &[]);
    let file = write_job(
        dir.path(),
        &format!(
            "insecure-no-auth = true\nnet = \"udp\"\nconcurrency = 2\n[[transfer]]\nsources = [\"{}\"]\nto = \"mover://{a}/in\"\nrate = \"60M\"\n\
             [[transfer]]\nsources = [\"{}\"]\nto = \"mover://{a}/in\"\n",
            one.display(),
            two.display(),
            a = server.addr
        ),
    );
    let out = run_job(&["--progress", "json"], &file);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    for l in &lines {
        parse_json(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(json_str(l, "name").is_some() && json_str(l, "to").is_some() && json_str(l, "event").is_some(), "{l}");
    }
    let events = |name: &str, event: &str| {
        lines.iter().filter(|l| json_str(l, "name") == Some(name) && json_str(l, "event") == Some(event)).count()
    };
    for name in ["one", "two"] {
        assert_eq!((events(name, "start"), events(name, "end")), (1, 1), "{name}: {stderr}");
    }
    assert!(events("one", "progress") >= 2, "one a second while it runs: {stderr}");
    let end = lines.iter().find(|l| json_str(l, "event") == Some("end") && json_str(l, "name") == Some("one")).unwrap();
    assert_eq!(json_str(end, "status"), Some("ok"));
    assert_eq!(json_u64(end, "bytes"), Some(24 << 20));
    assert!(!stderr.contains("name  destination"), "no table with --progress json");
}
