//! The daemon as a service (issue 17, item 5): `serve --metrics` scraped during and after real transfers
//! over loopback, the start and end log lines in text and JSON, `--config` parity with flags, and
//! `--check-config`. Everything runs the real binary.

mod common;

use common::{certs, json_u64, mover, run_with_limit, write_random_file, KillOnDrop, Server, TempDir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// Waits for a line of the server's stderr containing `needle` and returns it.
fn wait_line(server: &Server, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(l) = server.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        assert!(start.elapsed() < LIMIT, "no line with {needle:?}: {:?}", server.lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `n` of the server's lines contain `needle`, and returns them.
fn wait_lines(server: &Server, needle: &str, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let found: Vec<String> = server.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect();
        if found.len() >= n {
            return found;
        }
        assert!(start.elapsed() < LIMIT, "{n} lines with {needle:?}: {:?}", server.lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /metrics` (or another path) over a plain socket: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn scrape(addr: &str) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

/// The value of one series (`name` or `name{labels}`) in a scrape.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// The metrics endpoint's `host:port` from the daemon's line about it.
fn metrics_addr(server: &Server) -> String {
    let line = wait_line(server, "metrics on http://");
    let rest = line.split("metrics on http://").nth(1).unwrap();
    rest.split('/').next().unwrap().to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn metrics_rise_during_a_push_and_match_the_summaries_and_sessions_are_logged() {
    let dir = TempDir::new("h4-metrics");
    let (root, src, dest) = (dir.path().join("root"), dir.path().join("src"), dir.path().join("dest"));
    for d in [&root, &src, &dest] {
        std::fs::create_dir(d).unwrap();
    }
    write_random_file(&src.join("a"), 30_000_000, 1);
    write_random_file(&src.join("b"), 10_000_000, 2);
    let server = Server::start(&root, &["--metrics", "127.0.0.1:0"]);
    let at = metrics_addr(&server);
    assert_eq!(metric(&scrape(&at), "mover_sessions_active"), 0.0);
    assert_eq!(get(&at, "/other").0, "HTTP/1.1 404 Not Found");

    // 40 MB at 100 Mbit/s: more than three seconds of transfer to scrape.
    let url = format!("mover://{}/in", server.addr);
    let push = mover()
        .args(["push", "--insecure-no-auth", "--policy", "fixed", "--rate", "100M", "--json"])
        .arg(&src)
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut push = KillOnDrop(push);
    let start = Instant::now();
    let first = loop {
        let m = scrape(&at);
        if metric(&m, "mover_sessions_active") == 1.0 && metric(&m, "mover_bytes_received_total") > 0.0 {
            break m;
        }
        assert!(start.elapsed() < LIMIT, "the push never showed in the metrics:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(1100));
    let second = scrape(&at);
    assert_eq!(metric(&second, "mover_sessions_active"), 1.0, "{second}");
    for counter in ["mover_bytes_received_total", "mover_packets_received_total"] {
        assert!(metric(&second, counter) > metric(&first, counter), "{counter} did not rise:\n{first}\n{second}");
    }
    let rate = second.lines().find(|l| l.starts_with("mover_session_rate_bps{session=\"1\",")).expect(&second);
    assert!(rate.contains("direction=\"receive\""), "{rate}");
    let bps: f64 = rate.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bps > 10e6 && bps < 200e6, "a 100 Mbit/s push measured at {bps} bit/s");

    push.wait_timeout(LIMIT).unwrap();
    let mut summary = String::new();
    push.0.stdout.take().unwrap().read_to_string(&mut summary).unwrap();
    let (files, bytes) = (json_u64(&summary, "files").unwrap(), json_u64(&summary, "bytes").unwrap());
    assert_eq!((files, bytes), (2, 40_000_000), "{summary}");
    // The end line comes after the client has its summary: wait for it, then the totals are final.
    wait_line(&server, "session 1 ended");
    let after = scrape(&at);
    assert_eq!(metric(&after, "mover_bytes_received_total"), bytes as f64, "{after}");
    assert_eq!(metric(&after, "mover_files_received_total"), files as f64);
    assert_eq!(metric(&after, "mover_sessions_total{result=\"ok\"}"), 1.0);
    assert_eq!(metric(&after, "mover_sessions_active"), 0.0);
    assert!(!after.contains("mover_session_rate_bps{"), "an ended session keeps its gauge:\n{after}");

    let pull = run_with_limit(
        mover()
            .args(["pull", "--insecure-no-auth", "--json"])
            .arg(format!("mover://{}/in/src", server.addr))
            .arg(&dest),
        LIMIT,
    );
    assert!(pull.status.success(), "{}", stderr(&pull));
    let pulled = stdout(&pull);
    wait_line(&server, "session 2 ended");
    let last = scrape(&at);
    assert_eq!(metric(&last, "mover_bytes_sent_total"), json_u64(&pulled, "bytes").unwrap() as f64, "{last}");
    assert_eq!(metric(&last, "mover_files_sent_total"), json_u64(&pulled, "files").unwrap() as f64);
    assert!(metric(&last, "mover_packets_sent_total") >= 40_000_000.0 / 1500.0);
    assert_eq!(metric(&last, "mover_sessions_total{result=\"ok\"}"), 2.0);
    // Totals never go back.
    assert_eq!(metric(&last, "mover_bytes_received_total"), bytes as f64);

    // One line at each session's start and one at its end.
    let start1 = wait_line(&server, "session 1 started");
    for field in ["direction=receive", "dest=in", "bytes=40000000", "user=", "peer=127.0.0.1:"] {
        assert!(start1.contains(field), "{field} missing: {start1}");
    }
    let end1 = wait_line(&server, "session 1 ended");
    for field in ["result=ok", "files=2", "bytes=40000000", "seconds=", "goodput_bps=", "retransmitted="] {
        assert!(end1.contains(field), "{field} missing: {end1}");
    }
    let start2 = wait_line(&server, "session 2 started");
    assert!(start2.contains("direction=send") && start2.contains("source=in/src"), "{start2}");
    assert!(start2.contains("bytes=40000000"), "{start2}");
    assert!(wait_line(&server, "session 2 ended").contains("result=ok files=2 bytes=40000000"));
    let starts = server.lines.lock().unwrap().iter().filter(|l| l.contains(" started ")).count();
    assert_eq!(starts, 2, "one start line per session");
}

/// A minimal JSON checker: one value, the whole text (objects, arrays, strings with escapes, numbers,
/// literals).
fn json_value(s: &[u8], mut i: usize) -> Result<usize, String> {
    let ws = |s: &[u8], mut i: usize| {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    i = ws(s, i);
    let bad = |i: usize| Err(format!("bad JSON at byte {i}"));
    match s.get(i) {
        Some(b'{') | Some(b'[') => {
            let (close, object) = if s[i] == b'{' { (b'}', true) } else { (b']', false) };
            i = ws(s, i + 1);
            if s.get(i) == Some(&close) {
                return Ok(i + 1);
            }
            loop {
                if object {
                    if s.get(i) != Some(&b'"') {
                        return bad(i);
                    }
                    i = ws(s, json_value(s, i)?);
                    if s.get(i) != Some(&b':') {
                        return bad(i);
                    }
                    i += 1;
                }
                i = ws(s, json_value(s, i)?);
                match s.get(i) {
                    Some(b',') => i += 1,
                    Some(c) if *c == close => return Ok(i + 1),
                    _ => return bad(i),
                }
            }
        }
        Some(b'"') => {
            i += 1;
            while let Some(&c) = s.get(i) {
                match c {
                    b'"' => return Ok(i + 1),
                    b'\\' => i += 2,
                    c if c < 0x20 => return bad(i),
                    _ => i += 1,
                }
            }
            bad(i)
        }
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let end = i + s[i..].iter().take_while(|c| c.is_ascii_digit() || b"+-.eE".contains(c)).count();
            std::str::from_utf8(&s[i..end]).unwrap().parse::<f64>().map_err(|e| e.to_string())?;
            Ok(end)
        }
        _ => ["true", "false", "null"]
            .iter()
            .find(|w| s[i..].starts_with(w.as_bytes()))
            .map(|w| i + w.len())
            .ok_or_else(|| format!("bad JSON at byte {i}")),
    }
}

fn is_json_object(line: &str) -> bool {
    line.starts_with('{') && json_value(line.as_bytes(), 0) == Ok(line.len())
}

#[test]
fn the_json_checker_rejects_what_is_not_json() {
    assert!(is_json_object(r#"{"a":[1,-2.5e3,"x\"y"],"b":{"c":true,"d":null}}"#));
    for bad in ["mover serve: listening", r#"{"a":1"#, r#"{"a" 1}"#, r#"{"a":1}x"#, r#"{"a":tru}"#] {
        assert!(!is_json_object(bad), "{bad}");
    }
}

#[test]
fn json_logs_every_line_for_a_push_a_pull_and_a_failure() {
    let dir = TempDir::new("h4-jsonlog");
    let (root, src, dest) = (dir.path().join("root"), dir.path().join("src"), dir.path().join("dest"));
    for d in [&root, &src, &dest] {
        std::fs::create_dir(d).unwrap();
    }
    write_random_file(&src.join("f"), 1_000_000, 3);
    let server = Server::start(&root, &["--log-format", "json", "--stats", "--metrics", "127.0.0.1:0"]);
    let base = format!("mover://{}", server.addr);
    let push = run_with_limit(mover().args(["push", "--insecure-no-auth"]).arg(&src).arg(format!("{base}/in")), LIMIT);
    assert!(push.status.success(), "{}", stderr(&push));
    let pull =
        run_with_limit(mover().args(["pull", "--insecure-no-auth", &format!("{base}/in/src")]).arg(&dest), LIMIT);
    assert!(pull.status.success(), "{}", stderr(&pull));
    let bad =
        run_with_limit(mover().args(["pull", "--insecure-no-auth", &format!("{base}/missing")]).arg(&dest), LIMIT);
    assert!(!bad.status.success());

    let ends = wait_lines(&server, "\"event\":\"session_end\"", 3);
    let lines = server.lines.lock().unwrap().clone();
    for l in &lines {
        assert!(is_json_object(l), "not a JSON object: {l}");
        for key in ["\"ts\":\"", "\"level\":\"", "\"event\":\"", "\"message\":\""] {
            assert!(l.contains(key), "{key} missing: {l}");
        }
    }
    assert!(lines.iter().any(|l| l.contains("\"event\":\"stats\"")), "--stats tables are log lines too");
    let starts: Vec<&String> = lines.iter().filter(|l| l.contains("\"event\":\"session_start\"")).collect();
    assert_eq!(starts.len(), 3, "{lines:?}");
    assert!(starts[0].contains(r#""direction":"receive","dest":"in","entries":2,"bytes":1000000"#), "{}", starts[0]);
    assert!(starts[1].contains(r#""direction":"send","source":"in/src","entries":2,"bytes":1000000"#), "{}", starts[1]);
    assert!(ends[0].contains(r#""result":"ok","files":1,"bytes":1000000,"seconds":"#), "{}", ends[0]);
    assert!(ends[1].contains(r#""result":"ok","files":1,"bytes":1000000,"seconds":"#), "{}", ends[1]);
    assert!(ends[2].contains(r#""level":"warn""#) && ends[2].contains(r#""result":"failed""#), "{}", ends[2]);
    assert!(ends[2].contains(r#""error":""#) && ends[2].contains("missing"), "{}", ends[2]);
    let m = scrape(&metrics_addr(&server));
    assert_eq!(metric(&m, "mover_sessions_total{result=\"ok\"}"), 2.0, "{m}");
    assert_eq!(metric(&m, "mover_sessions_total{result=\"failed\"}"), 1.0, "{m}");
}

#[test]
fn refused_sessions_are_counted_and_logged_and_the_endpoint_answers_only_get_metrics() {
    let dir = TempDir::new("h4-refused");
    let (root, src) = (dir.path().join("root"), dir.path().join("src"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&src).unwrap();
    write_random_file(&src.join("f"), 10_000_000, 4);
    // One session at a time and no queue: a second push while the first runs is refused as busy.
    let args = ["--metrics", "127.0.0.1:0", "--max-sessions", "1", "--max-queue", "0"];
    let server = Server::start(&root, &args);
    let at = metrics_addr(&server);
    let url = format!("mover://{}/in", server.addr);
    let slow = mover()
        .args(["push", "--insecure-no-auth", "--policy", "fixed", "--rate", "20M", "--retries", "0"])
        .arg(&src)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut slow = KillOnDrop(slow);
    wait_line(&server, "session 1 started");
    let busy =
        run_with_limit(mover().args(["push", "--insecure-no-auth", "--retries", "0"]).arg(&src).arg(&url), LIMIT);
    assert!(!busy.status.success(), "a push beyond --max-sessions and --max-queue ran");
    let refused = wait_line(&server, "busy");
    assert!(refused.starts_with("mover serve: ") && refused.contains("peer=127.0.0.1:"), "{refused}");
    let m = scrape(&at);
    assert_eq!(metric(&m, "mover_sessions_total{result=\"refused\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "mover_sessions_refused_busy_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "mover_sessions_active"), 1.0, "{m}");
    let _ = slow.0.kill();

    assert_eq!(get(&at, "/").0, "HTTP/1.1 404 Not Found");
    let mut post = TcpStream::connect(&at).unwrap();
    write!(post, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    // The endpoint waits (at most 2 s) for a client to close after its answer.
    drop(post);
    // Headers past the request limit are refused, not buffered.
    let mut big = TcpStream::connect(&at).unwrap();
    let _ = write!(big, "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(20_000));
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    drop(big);
    // And the endpoint still serves.
    scrape(&at);
}

#[test]
fn json_logs_keep_the_last_error_of_a_daemon_that_exits() {
    // `--once` with a failing session: main's `mover: error:` line, printed as the process exits, comes
    // out as JSON too (the captured stderr is drained at exit).
    let dir = TempDir::new("h4-jsonexit");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut server = Server::start(&root, &["--log-format", "json", "--once"]);
    let bad = run_with_limit(
        mover().args(["pull", "--insecure-no-auth", &format!("mover://{}/missing", server.addr)]).arg(dir.path()),
        LIMIT,
    );
    assert!(!bad.status.success());
    let status = server.wait(LIMIT).expect("serve --once exits");
    assert!(!status.success());
    let lines = wait_lines(&server, "mover: error:", 1);
    assert!(is_json_object(&lines[0]) && lines[0].contains(r#""level":"error","event":"stderr""#), "{lines:?}");
}

/// `mover serve ARGS --check-config` (in `cwd`).
fn check_config(args: &[&str], cwd: &Path) -> Output {
    run_with_limit(mover().arg("serve").args(args).arg("--check-config").current_dir(cwd), LIMIT)
}

/// The key of each line of `--check-config`'s output (`key = value` or `# key is not set`).
fn keys_of(settings: &str) -> Vec<String> {
    settings
        .lines()
        .filter_map(|l| match l.strip_prefix("# ") {
            Some(c) => c.strip_suffix(" is not set").map(str::to_string),
            None => l.split(" = ").next().map(str::to_string),
        })
        .collect()
}

/// The same settings as a file of keys and as flags: both checks print the same effective settings, and
/// each key shows the value given.
fn assert_parity(settings: &[(&str, String)], dir: &Path) -> String {
    let mut file = String::new();
    let mut flags: Vec<String> = Vec::new();
    for (key, value) in settings {
        file.push_str(&format!("{key} = {value}\n"));
        match value.as_str() {
            "true" => flags.push(format!("--{key}")),
            "false" => {}
            v => {
                flags.push(format!("--{key}"));
                flags.push(v.trim_matches('"').to_string());
            }
        }
    }
    let path = dir.join("parity.toml");
    std::fs::write(&path, &file).unwrap();
    let by_file = check_config(&["--config", path.to_str().unwrap()], dir);
    assert!(by_file.status.success(), "{}\n{file}", stderr(&by_file));
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let by_flags = check_config(&flag_refs, dir);
    assert!(by_flags.status.success(), "{}\n{flags:?}", stderr(&by_flags));
    assert_eq!(stdout(&by_file), stdout(&by_flags), "the file and the flags disagree");
    let out = stdout(&by_file);
    for (key, value) in settings {
        assert!(out.lines().any(|l| l == format!("{key} = {value}")), "{key} = {value} not in:\n{out}");
    }
    out
}

#[test]
fn every_serve_flag_has_a_key_and_a_file_gives_what_the_flags_give() {
    let dir = TempDir::new("h4-parity");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let c = certs::make(dir.path());
    let tokens = dir.path().join("tokens");
    let token = run_with_limit(mover().args(["token", "--user", "alice"]), LIMIT);
    std::fs::write(&tokens, &token.stderr).unwrap();
    let q = |p: &Path| format!("\"{}\"", p.display());
    let s = |v: &str| v.to_string();
    // Every flag with a value other than its default; the two runs cover what conflicts
    // (--insecure-no-auth and the TLS files).
    let shared: Vec<(&str, String)> = vec![
        ("listen", s("\"127.0.0.1:7499\"")),
        ("root", q(&root)),
        ("once", s("true")),
        ("fsync", s("true")),
        ("no-third-party", s("true")),
        ("partial-max-age", s("\"12h\"")),
        ("cores", s("\"none\"")),
        ("stats", s("true")),
        ("show-topology", s("true")),
        ("net", s("\"udp\"")),
        ("queue-depth", s("8")),
        ("max-files", s("1000")),
        ("max-bytes", s("\"1T\"")),
        ("max-name-len", s("200")),
        ("max-sessions-per-client", s("2")),
        ("require-encryption", s("true")),
        ("max-manifest-memory", s("\"64M\"")),
        ("max-memory", s("\"1G\"")),
        ("max-sessions", s("4")),
        ("max-queue", s("9")),
        ("max-handshakes", s("7")),
        ("max-rate", s("\"600M\"")),
        ("user-max-rate", s("\"alice=200M\"")),
        ("metrics", s("\"127.0.0.1:9400\"")),
        ("log-format", s("\"json\"")),
    ];
    let mut tls = shared.clone();
    tls.extend([
        ("tls-cert", q(&c.server_cert)),
        ("tls-key", q(&c.server_key)),
        ("client-ca", q(&c.ca)),
        ("tokens", q(&tokens)),
    ]);
    let mut insecure = shared;
    insecure.extend([("insecure-no-auth", s("true")), ("stdio", s("true"))]);
    let out = assert_parity(&tls, dir.path());
    assert_parity(&insecure, dir.path());
    // clap's definition of serve, as --check-config lists it: a flag added later without a value above
    // fails here, so it is tested for a key too.
    for key in keys_of(&out) {
        assert!(
            tls.iter().chain(&insecure).any(|(k, _)| *k == key),
            "`mover serve --{key}` is not covered by this test: give it a value above"
        );
    }
    assert!(keys_of(&out).len() >= 28, "{out}");
}

#[test]
fn the_command_line_overrides_the_file_and_underscores_name_keys() {
    let dir = TempDir::new("h4-override");
    let f = dir.path().join("serve.toml");
    std::fs::write(&f, "root = \".\"\ninsecure_no_auth = true\nmax_sessions = 3\nmax-queue = 5\n").unwrap();
    let out = check_config(&["--max-sessions", "11", "--config", f.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\nmax-sessions = 11\n") && text.contains("\nmax-queue = 5\n"), "{text}");
    // What --check-config printed is a config file that gives the same settings.
    let back = dir.path().join("back.toml");
    std::fs::write(&back, &text).unwrap();
    let again = check_config(&["--config", back.to_str().unwrap()], dir.path());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).replace("  # default", ""), text.replace("  # default", ""));
}

/// Runs a failing check: exit code 2 and one `mover: error:` line containing each of `words`.
fn assert_config_error(args: &[&str], cwd: &Path, words: &[&str]) {
    let out = check_config(args, cwd);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mover: error: "), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
    assert!(stdout(&out).is_empty(), "no settings on failure");
}

#[test]
fn bad_keys_values_roots_and_certificates_fail_the_check_with_one_line() {
    let dir = TempDir::new("h4-errors");
    let f = dir.path().join("serve.toml");
    let file = f.to_str().unwrap();
    std::fs::write(&f, "root = \".\"\n\nmax-sesions = 3\n").unwrap();
    assert_config_error(&["--config", file], dir.path(), &[file, "line 3", "'max-sesions'", "'max-sessions'"]);
    std::fs::write(&f, "colour = \"blue\"\n").unwrap();
    assert_config_error(&["--config", file], dir.path(), &["line 1", "unknown key 'colour'", "listen, root,"]);
    std::fs::write(&f, "root = \".\"\nmax-sessions = 0\n").unwrap();
    assert_config_error(&["--config", file], dir.path(), &["line 2", "max-sessions = 0", "1..=100000"]);
    std::fs::write(&f, "once = \"yes\"\n").unwrap();
    assert_config_error(&["--config", file], dir.path(), &["'once' is a switch"]);
    std::fs::write(&f, "check-config = true\n").unwrap();
    assert_config_error(&["--config", file], dir.path(), &["cannot be set in a config file"]);
    std::fs::write(&f, "root = [\n").unwrap();
    assert_config_error(&["--config", file], dir.path(), &["not valid TOML"]);
    assert_config_error(&["--config", "/nonexistent/h4.toml"], dir.path(), &["cannot read it"]);

    // What the daemon checks at start.
    let missing = dir.path().join("no-such-root");
    assert_config_error(
        &["--root", missing.to_str().unwrap(), "--insecure-no-auth"],
        dir.path(),
        &["root", "does not exist"],
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let g = garbage.to_str().unwrap();
    assert_config_error(
        &["--root", ".", "--tls-cert", g, "--tls-key", g, "--client-ca", g],
        dir.path(),
        &["garbage.pem"],
    );
    assert_config_error(&["--root", ".", "--tls-cert", g, "--tls-key", g], dir.path(), &["--tokens"]);
}

#[test]
fn the_shipped_example_config_passes_the_check() {
    let dir = TempDir::new("h4-example");
    let c = certs::make(dir.path());
    let tokens = dir.path().join("tokens");
    let token = run_with_limit(mover().args(["token", "--user", "alice"]), LIMIT);
    std::fs::write(&tokens, &token.stderr).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/serve.example.toml");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "--config".into(),
        p(&example),
        // This machine's paths instead of /srv and /etc: the command line overrides the file.
        "--root".into(),
        p(dir.path()),
        "--tls-cert".into(),
        p(&c.server_cert),
        "--tls-key".into(),
        p(&c.server_key),
        "--tokens".into(),
        p(&tokens),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = check_config(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\nlog-format = \"json\"\n") && text.contains("\nmetrics = \"127.0.0.1:9400\"\n"), "{text}");
}
