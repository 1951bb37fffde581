//! Progress of `mover push` and `mover pull` as the real binary prints it, over loopback to a real
//! `mover serve`: the bar under a pseudo-terminal (it appears, updates, and ends at 100%), no bar when
//! stderr is a pipe, `--progress json` events parsed line by line (push of a tree, pull, and a pull with
//! nothing left to do), and `--quiet`.

mod common;

use common::{mover, run_with_limit, Server, TempDir};
use mover::sim::dataset::write_random;
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// A fixed rate low enough that a few hundred MiB take seconds, so that progress is seen moving.
const RATE: &str = "400M";

/// Writes a tree of `sizes.len()` files (random content, one empty if a size is 0) under `dir`, in two
/// directories; returns the bytes written.
fn make_tree(dir: &Path, sizes: &[u64]) -> u64 {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for (i, &size) in sizes.iter().enumerate() {
        let path = if i % 2 == 0 { dir.join(format!("f{i}.bin")) } else { dir.join("sub").join(format!("f{i}.bin")) };
        write_random(&path, size, 17 + i as u64).unwrap();
    }
    sizes.iter().sum()
}

// ---- a tiny JSON reader for the events: one flat object of strings, numbers, null and booleans ----

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Num(f64),
    Null,
    Bool(bool),
}

/// Parses one flat JSON object; `Err` says what is wrong with it.
fn parse_object(line: &str) -> Result<Vec<(String, Value)>, String> {
    let b = line.trim().as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let string = |i: &mut usize| -> Result<String, String> {
        if b.get(*i) != Some(&b'"') {
            return Err(format!("a string expected at {i}"));
        }
        *i += 1;
        let mut s = String::new();
        loop {
            match b.get(*i) {
                None => return Err("an unterminated string".into()),
                Some(b'"') => {
                    *i += 1;
                    return Ok(s);
                }
                Some(b'\\') => {
                    let c = *b.get(*i + 1).ok_or("a bad escape")?;
                    s.push(match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        _ => return Err(format!("an unexpected escape \\{}", c as char)),
                    });
                    *i += 2;
                }
                Some(_) => {
                    let ch = line.trim()[*i..].chars().next().unwrap();
                    s.push(ch);
                    *i += ch.len_utf8();
                }
            }
        }
    };
    if b.first() != Some(&b'{') {
        return Err("not an object".into());
    }
    i += 1;
    let mut fields = Vec::new();
    ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            ws(&mut i);
            let key = string(&mut i)?;
            ws(&mut i);
            if b.get(i) != Some(&b':') {
                return Err(format!("':' expected after {key}"));
            }
            i += 1;
            ws(&mut i);
            let value = match b.get(i) {
                Some(b'"') => Value::Str(string(&mut i)?),
                Some(b'n') if b[i..].starts_with(b"null") => {
                    i += 4;
                    Value::Null
                }
                Some(b't') if b[i..].starts_with(b"true") => {
                    i += 4;
                    Value::Bool(true)
                }
                Some(b'f') if b[i..].starts_with(b"false") => {
                    i += 5;
                    Value::Bool(false)
                }
                _ => {
                    let start = i;
                    while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                        i += 1;
                    }
                    let text = std::str::from_utf8(&b[start..i]).unwrap();
                    Value::Num(text.parse().map_err(|_| format!("a bad value for {key}: {text:?}"))?)
                }
            };
            fields.push((key, value));
            ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(format!("',' or '}}' expected at {i}")),
            }
        }
    }
    if i != b.len() {
        return Err("text after the object".into());
    }
    Ok(fields)
}

#[test]
fn the_test_json_reader_accepts_json_and_refuses_the_rest() {
    let f = parse_object(r#"{"a":1.5,"b":null,"c":"x\"y","d":true,"e":-2e3}"#).unwrap();
    assert_eq!(f[0], ("a".into(), Value::Num(1.5)));
    assert_eq!(f[1].1, Value::Null);
    assert_eq!(f[2].1, Value::Str("x\"y".into()));
    assert_eq!(f[4].1, Value::Num(-2000.0));
    for bad in ["mover push: 2 files", "{\"a\":}", "{\"a\":1", "{\"a\":1}x", "{a:1}", "{\"a\":nul}"] {
        assert!(parse_object(bad).is_err(), "{bad}");
    }
}

/// One `--progress json` event.
struct Event(Vec<(String, Value)>);

impl Event {
    fn get(&self, key: &str) -> &Value {
        &self.0.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in {:?}", self.0)).1
    }

    fn num(&self, key: &str) -> f64 {
        match self.get(key) {
            Value::Num(n) => *n,
            v => panic!("{key} is {v:?}, not a number"),
        }
    }

    fn u64(&self, key: &str) -> u64 {
        let n = self.num(key);
        assert!(n >= 0.0 && n.fract() == 0.0, "{key} = {n} is not a count");
        n as u64
    }

    fn str(&self, key: &str) -> &str {
        match self.get(key) {
            Value::Str(s) => s,
            v => panic!("{key} is {v:?}, not a string"),
        }
    }
}

/// Every stderr line as an event; panics on a line that is not one.
fn events(stderr: &str) -> Vec<Event> {
    stderr
        .lines()
        .map(|l| Event(parse_object(l).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l:?}\n{stderr}"))))
        .collect()
}

/// The checks every successful transfer's events pass: the keys, at least `min_running` events before the
/// final one, bytes and files never going back, and a final `done` event with everything done.
fn check_events(ev: &[Event], bytes: u64, files: u64, min_running: usize, sending: bool) {
    for e in ev {
        for key in [
            "phase",
            "elapsed_seconds",
            "bytes",
            "bytes_total",
            "files",
            "files_total",
            "rate_bps",
            "eta_seconds",
            "retransmitted",
            "retransmitted_percent",
            "policy_rate_bps",
            "rate_share_bps",
        ] {
            e.get(key);
        }
        assert!(!sending || matches!(e.get("retransmitted"), Value::Num(_)), "the sender knows its retransmissions");
        if !sending {
            assert_eq!(e.get("policy_rate_bps"), &Value::Null, "a pull does not know the remote policy's rate");
        }
    }
    let (last, running) = ev.split_last().expect("a final event");
    assert!(running.len() >= min_running, "{} events before the final one, wanted {min_running}", running.len());
    for w in ev.windows(2) {
        assert!(w[1].u64("bytes") >= w[0].u64("bytes"), "bytes went back");
        assert!(w[1].u64("files") >= w[0].u64("files"), "files went back");
        assert!(w[1].num("elapsed_seconds") > w[0].num("elapsed_seconds"));
    }
    for e in running {
        assert!(["starting", "transferring", "finishing"].contains(&e.str("phase")), "{}", e.str("phase"));
    }
    // Data moved while the events were printed: some event in the middle had a rate and an ETA.
    assert!(
        running
            .iter()
            .any(|e| matches!((e.get("rate_bps"), e.get("eta_seconds")), (Value::Num(r), Value::Num(_)) if *r > 0.0)),
        "no event during the transfer had a rate and an ETA"
    );
    assert_eq!(last.str("phase"), "done");
    assert_eq!((last.u64("bytes"), last.u64("bytes_total")), (bytes, bytes));
    assert_eq!((last.u64("files"), last.u64("files_total")), (files, files));
    assert_eq!(last.num("eta_seconds"), 0.0);
}

#[test]
fn push_prints_json_events_for_a_tree() {
    let tmp = TempDir::new("h1-progress-json-push");
    let src = tmp.path().join("tree");
    let sizes = [64 << 20, 48 << 20, 1, 0, 40 << 20, 7777];
    let bytes = make_tree(&src, &sizes);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/in", server.addr);
    let out = run_with_limit(
        mover()
            .args(["push", "--insecure-no-auth", "--net", "udp", "--policy", "fixed", "--rate", RATE])
            .args(["--progress", "json", "--json"])
            .arg(&src)
            .arg(&url),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push failed: {stderr}");
    let ev = events(&stderr);
    // 152 MiB at 400 Mbit/s is more than 3 s: at least two events a second apart before the final one.
    check_events(&ev, bytes, sizes.len() as u64, 2, true);
    // The final event agrees with the summary on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(common::json_u64(&stdout, "bytes"), Some(bytes), "{stdout}");
    assert_eq!(ev.last().unwrap().u64("retransmitted"), common::json_u64(&stdout, "packets_retransmitted").unwrap());
    assert!(server.wait(Duration::from_secs(10)).expect("serve --once exits").success());
    assert_eq!(fs::metadata(root.join("in/tree/f0.bin")).unwrap().len(), 64 << 20);
}

#[test]
fn pull_prints_json_events_and_a_second_pull_with_nothing_to_do_ends_done() {
    let tmp = TempDir::new("h1-progress-json-pull");
    let root = tmp.path().join("root");
    let sizes = [72 << 20, 40 << 20, 0, 12345];
    let bytes = make_tree(&root.join("exports/tree"), &sizes);
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/exports/tree", server.addr);
    let dest = tmp.path().join("local");
    let pull = || {
        run_with_limit(
            mover()
                .args(["pull", "--insecure-no-auth", "--net", "udp", "--policy", "fixed", "--rate", RATE])
                .args(["--progress", "json"])
                .arg(&url)
                .arg(&dest),
            Duration::from_secs(120),
        )
    };
    let out = pull();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull failed: {stderr}");
    // 112 MiB at 400 Mbit/s is more than 2 s.
    check_events(&events(&stderr), bytes, sizes.len() as u64, 2, false);
    assert_eq!(fs::metadata(dest.join("tree/f0.bin")).unwrap().len(), 72 << 20);

    // Again: every file is current, nothing is sent, and the final event still says everything is done.
    let out = pull();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "second pull failed: {stderr}");
    let ev = events(&stderr);
    let last = ev.last().expect("a final event");
    assert_eq!(last.str("phase"), "done");
    assert_eq!((last.u64("bytes"), last.u64("bytes_total")), (bytes, bytes), "{stderr}");
    assert_eq!((last.u64("files"), last.u64("files_total")), (4, 4), "{stderr}");
    // Files skipped as current are done at once, but nothing moved: no rate (not bytes over milliseconds).
    assert!(matches!(last.get("rate_bps"), Value::Null | Value::Num(0.0)), "{stderr}");
}

#[test]
fn quiet_prints_nothing_on_success_and_refuses_a_forced_bar() {
    let tmp = TempDir::new("h1-progress-quiet");
    let src = tmp.path().join("tree");
    make_tree(&src, &[3 << 20, 100, 0]);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/in", server.addr);
    for flag in ["--quiet", "-q"] {
        let out = run_with_limit(
            mover().args(["push", "--insecure-no-auth", "--net", "udp", flag]).arg(&src).arg(&url),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "push {flag} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "push {flag} printed on stderr");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "push {flag} printed on stdout");
    }
    let dest = tmp.path().join("local");
    let out = run_with_limit(
        mover().args(["pull", "--insecure-no-auth", "--net", "udp", "-q"]).arg(format!("{url}/tree")).arg(&dest),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "pull -q failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "pull -q printed on stderr");
    assert_eq!(fs::metadata(dest.join("tree/f0.bin")).unwrap().len(), 3 << 20);

    // Errors still print, with the usage exit code, before anything is sent.
    let out = run_with_limit(
        mover().args(["push", "--insecure-no-auth", "-q", "--progress", "bar"]).arg(&src).arg(&url),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("mover: error: --quiet") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn without_a_terminal_only_the_summary_line_unless_the_bar_is_forced() {
    let tmp = TempDir::new("h1-progress-pipe");
    let src = tmp.path().join("tree");
    make_tree(&src, &[24 << 20, 5, 0]);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/in", server.addr);
    // Each push to a destination of its own, so that none finds the files current.
    let push = |extra: &[&str]| {
        let out = run_with_limit(
            mover()
                .args(["push", "--insecure-no-auth", "--net", "udp", "--policy", "fixed", "--rate", RATE])
                .args(extra)
                .arg(&src)
                .arg(format!("{url}/{}", extra.join(""))),
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "push {extra:?} failed: {stderr}");
        stderr
    };
    // stderr is a pipe: auto draws nothing; only the summary line.
    let stderr = push(&[]);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("mover push: 3 files") && !stderr.contains('\x1b') && !stderr.contains('%'),
        "{stderr:?}"
    );
    // `--progress none` the same.
    let stderr = push(&["--progress", "none"]);
    assert!(stderr.starts_with("mover push: 3 files") && stderr.lines().count() == 1, "{stderr:?}");
    // `--progress bar` draws even into a pipe, ends at 100%, and the summary starts a line of its own.
    let stderr = push(&["--progress", "bar"]);
    let frames = bar_frames(&stderr);
    assert_eq!(frames.last().map(|f| f.percent), Some(100), "{stderr:?}");
    assert!(stderr.lines().any(|l| l.starts_with("mover push: 3 files")), "{stderr:?}");
}

/// One drawn frame of the bar: its percent and the text after it up to the end of the line.
#[derive(Debug)]
struct Frame {
    percent: u64,
    head: String,
}

/// The bar's frames in drawing order: each `] NN% ...` after the bar's closing bracket.
fn bar_frames(out: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut rest = out;
    while let Some(at) = rest.find("] ") {
        rest = &rest[at + 2..];
        let t = rest.trim_start();
        let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || !t[digits.len()..].starts_with('%') {
            continue;
        }
        let end = t.find(['\r', '\n', '\x1b']).unwrap_or(t.len());
        frames.push(Frame { percent: digits.parse().unwrap(), head: t[..end].trim_end().to_string() });
    }
    frames
}

/// A pseudo-terminal pair of `cols` columns: (controller, the terminal end for the child).
fn open_pty(cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (-1, -1);
    let size = libc::winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // Safety: openpty writes two descriptors into the ints passed; no name buffer, no termios; `size` is read.
    let rc = unsafe { libc::openpty(&mut controller, &mut terminal, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // Safety: both descriptors were just opened by openpty and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(controller), OwnedFd::from_raw_fd(terminal)) }
}

/// Everything the child wrote to the terminal, until its last terminal end is closed.
fn read_all(controller: OwnedFd) -> String {
    let mut out = Vec::new();
    let mut f = fs::File::from(controller);
    let mut buf = [0u8; 8192];
    // Linux answers EIO once the last terminal end is closed: that is the end.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `mover push --insecure-no-auth ARGS SRC URL` with stderr on a pseudo-terminal of 160 columns
/// (`TERM=xterm`), for at most `limit`; returns its exit status and everything it wrote to the terminal.
fn push_under_a_terminal(args: &[&str], src: &Path, url: &str, limit: Duration) -> (ExitStatus, String) {
    let (controller, terminal) = open_pty(160);
    let mut child = {
        // The command (and its copy of the terminal end) is dropped right after the spawn, so that the
        // controller reads end of file once the child exits.
        let mut cmd: Command = mover();
        cmd.args(["push", "--insecure-no-auth"])
            .args(args)
            .arg(src)
            .arg(url)
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(terminal));
        common::KillOnDrop(cmd.spawn().expect("spawn mover push"))
    };
    let reader = std::thread::spawn(move || read_all(controller));
    let status = child.wait_timeout(limit).expect("push finishes");
    (status, reader.join().unwrap())
}

#[test]
fn under_a_terminal_the_bar_appears_updates_and_ends_at_100_percent() {
    let tmp = TempDir::new("h1-progress-pty");
    let src = tmp.path().join("tree");
    let sizes = [256 << 20, 3 << 20, 0];
    make_tree(&src, &sizes);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut server = Server::start(&root, &["--once"]);
    let url = format!("mover://{}/in", server.addr);
    let args = ["--net", "udp", "--policy", "fixed", "--rate", RATE];
    let (status, out) = push_under_a_terminal(&args, &src, &url, Duration::from_secs(120));
    assert!(status.success(), "push failed: {out:?}");
    let frames = bar_frames(&out);
    let distinct: std::collections::BTreeSet<&str> = frames.iter().map(|f| f.head.as_str()).collect();
    // 259 MiB at 400 Mbit/s take over 5 s at 10 frames a second: many different frames.
    assert!(distinct.len() >= 5, "the bar updated {} times: {out:?}", distinct.len());
    assert!(frames.iter().any(|f| f.percent > 0 && f.percent < 100), "no frame in the middle: {out:?}");
    assert!(frames.windows(2).all(|w| w[1].percent >= w[0].percent), "percent went back: {frames:?}");
    let last = frames.last().expect("a frame");
    assert_eq!(last.percent, 100, "{out:?}");
    assert!(last.head.contains("259.00 MiB of 259.00 MiB, done"), "{last:?}");
    assert!(out.contains("3 of 3 files"), "{out:?}");
    assert_eq!(
        frames.iter().filter(|f| f.percent == 100).count(),
        frames.iter().rev().take_while(|f| f.percent == 100).count()
    );
    // The summary comes after the last frame.
    let summary = out.find("mover push: 3 files").expect("the summary line");
    assert!(summary > out.rfind("100%").unwrap(), "{out:?}");
    assert!(server.wait(Duration::from_secs(10)).expect("serve --once exits").success());
}

/// A loopback port nobody listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_failed_push_ends_its_json_events_with_failed_and_the_error() {
    let tmp = TempDir::new("h1-progress-json-fail");
    let src = tmp.path().join("tree");
    make_tree(&src, &[1 << 20, 10]);
    let url = format!("mover://127.0.0.1:{}/in", closed_port());
    let out = run_with_limit(
        mover().args(["push", "--insecure-no-auth", "--progress", "json", "--retries", "1"]).arg(&src).arg(&url),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "a refused connection is retryable: {stderr}");
    // The retry's notice and the error line stay plain text; every other line is an event.
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("mover push: ") && l.contains("retry 1 of 1")), "{stderr}");
    assert!(lines.last().unwrap().starts_with("mover: error: "), "{stderr}");
    let ev = events(&lines.iter().filter(|l| l.starts_with('{')).copied().collect::<Vec<_>>().join("\n"));
    let (last, running) = ev.split_last().expect("a final event");
    assert_eq!(last.str("phase"), "failed");
    assert!(last.str("error").contains("127.0.0.1"), "{stderr}");
    assert_eq!(last.get("eta_seconds"), &Value::Null, "a failed transfer has no ETA");
    assert!(running.iter().all(|e| e.str("phase") != "done" && e.str("phase") != "failed"), "{stderr}");
}

#[test]
fn under_a_terminal_a_failed_push_leaves_the_bar_marked_failed() {
    let tmp = TempDir::new("h1-progress-pty-fail");
    let src = tmp.path().join("tree");
    make_tree(&src, &[1 << 20]);
    let url = format!("mover://127.0.0.1:{}/in", closed_port());
    let (status, out) = push_under_a_terminal(&["--retries", "1"], &src, &url, Duration::from_secs(60));
    assert_eq!(status.code(), Some(5), "{out:?}");
    assert!(out.contains(": failed"), "the bar is not marked failed: {out:?}");
    assert!(!out.contains("100%"), "{out:?}");
    // The retry's notice starts on a line of its own (the bar was cleared first), and so does the error.
    let notice = out.find("mover push: ").expect("the retry notice");
    assert!(out[..notice].ends_with('\n') || out[..notice].ends_with("\x1b[2K") || notice == 0, "{out:?}");
    assert!(out.contains("mover: error: "), "{out:?}");
}
