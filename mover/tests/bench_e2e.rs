//! `mover bench e2e` and the `--plot` of `bench e2e` and `bench net`, driven through the real binary on
//! loopback: the JSON (parsed, sizes, percentiles), the SVG (well formed, one point per 100 ms of the run),
//! a push to a real `mover serve`, and the one error line of a wrong `--to`.

mod common;

use common::{json_f64, json_u64, list_tree, mover, run_with_limit, Server, TempDir};
use std::time::Duration;

/// A minimal JSON validator (objects, arrays, strings, numbers, literals), so "the JSON parses" is checked
/// without a parser dependency.
fn json_valid(s: &str) -> bool {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }
    fn value(b: &[u8], i: usize) -> Option<usize> {
        let i = ws(b, i);
        match *b.get(i)? {
            b'{' => {
                let mut i = ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    return Some(i + 1);
                }
                loop {
                    i = string(b, ws(b, i))?;
                    i = ws(b, i);
                    if b.get(i) != Some(&b':') {
                        return None;
                    }
                    i = ws(b, value(b, i + 1)?);
                    match b.get(i)? {
                        b',' => i += 1,
                        b'}' => return Some(i + 1),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                let mut i = ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    return Some(i + 1);
                }
                loop {
                    i = ws(b, value(b, i)?);
                    match b.get(i)? {
                        b',' => i += 1,
                        b']' => return Some(i + 1),
                        _ => return None,
                    }
                }
            }
            b'"' => string(b, i),
            b't' => b[i..].starts_with(b"true").then_some(i + 4),
            b'f' => b[i..].starts_with(b"false").then_some(i + 5),
            b'n' => b[i..].starts_with(b"null").then_some(i + 4),
            _ => {
                let end = i + b[i..].iter().take_while(|c| b"+-.eE0123456789".contains(c)).count();
                std::str::from_utf8(&b[i..end]).ok()?.parse::<f64>().ok()?;
                Some(end)
            }
        }
    }
    fn string(b: &[u8], i: usize) -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let mut i = i + 1;
        loop {
            match *b.get(i)? {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }
    let b = s.as_bytes();
    value(b, 0).is_some_and(|end| ws(b, end) == b.len())
}

/// The text of the object after `"key":` (its first occurrence), for reading the keys nested in it.
fn object<'a>(json: &'a str, key: &str) -> &'a str {
    let at = json.find(&format!("\"{key}\":{{")).unwrap_or_else(|| panic!("no object {key} in {json}"));
    let rest = &json[at..];
    &rest[..rest.find('}').unwrap() + 1]
}

/// Checks `{count, p50, p90, p99, min, max}` is ordered and returns (count, p50).
fn check_percentiles(json: &str, key: &str) -> (u64, u64) {
    let p = object(json, key);
    let get = |k: &str| json_u64(p, k).unwrap_or_else(|| panic!("no {k} in {p}"));
    let (min, p50, p90, p99, max) = (get("min"), get("p50"), get("p90"), get("p99"), get("max"));
    assert!(min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "percentiles out of order: {p}");
    assert!(max > 0, "{p}");
    (get("count"), p50)
}

/// Checks the SVG is well formed (every element closed in order) and returns the point counts of its
/// polylines.
fn svg_polylines(svg: &str) -> Vec<usize> {
    let t = svg.trim();
    assert!(t.starts_with("<svg") || t.starts_with("<?xml"), "not SVG: {}", &t[..t.len().min(200)]);
    assert!(t.ends_with("</svg>"), "SVG not closed");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("tag closed") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap());
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    t.split("<polyline")
        .skip(1)
        .map(|p| p.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split_whitespace().count())
        .collect()
}

fn stdout_of(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn e2e_on_loopback_json() {
    let tmp = TempDir::new("h5-e2e-json");
    let out = run_with_limit(
        mover().args(["bench", "e2e", "--size", "64M", "--json", "--dir"]).arg(tmp.path()),
        Duration::from_secs(120),
    );
    let json = stdout_of(&out);
    let json = json.trim();
    assert!(json_valid(json), "not valid JSON: {json}");
    assert_eq!(json_u64(json, "bytes"), Some(64 << 20), "{json}");
    assert_eq!(json_u64(json, "files"), Some(203), "the generated set: 1 large, 200 small, 2 empty files");
    assert!(json.starts_with("{\"mode\":\"loopback\""), "{json}");
    assert!(json.contains("\"verified\":true"), "{json}");
    let goodput = json_f64(json, "goodput_bps").unwrap();
    let seconds = json_f64(json, "seconds").unwrap();
    assert!(goodput > 0.0 && seconds > 0.0, "{json}");
    assert!((goodput - (64u64 << 20) as f64 * 8.0 / seconds).abs() < goodput * 1e-6, "goodput is bytes over seconds");
    let (count, p50) = check_percentiles(json, "interval_goodput_bps");
    assert!(count >= 1 && p50 > 0, "{json}");
    let cpu = json_f64(json, "cpu_user_seconds").unwrap() + json_f64(json, "cpu_sys_seconds").unwrap();
    assert!(cpu > 0.0, "a push of 64 MiB takes CPU time: {json}");
    let per_gib = json_f64(json, "cpu_seconds_per_gib").unwrap();
    assert!((per_gib - cpu * 16.0).abs() < 0.01 + per_gib * 1e-3, "64 MiB is 1/16 GiB: {per_gib} vs {cpu}");
    assert!(json_f64(json, "retransmitted_percent").is_some_and(|p| (0.0..=100.0).contains(&p)), "{json}");
    // The stage latencies the sender's pipeline records: the reader's block reads at least.
    let lat = object(json, "reader.block_read");
    assert!(json_u64(lat, "count").unwrap() > 0, "{lat}");
    assert!(json.contains("\"push\":{\"files\":203"), "the push's own report is kept: {json}");
    // Nothing is left behind in --dir.
    assert!(list_tree(tmp.path()).is_empty(), "{:?}", list_tree(tmp.path()));
}

#[test]
fn e2e_plot_has_a_point_per_interval_of_the_run() {
    let tmp = TempDir::new("h5-e2e-plot");
    let svg_path = tmp.path().join("out.svg");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // A fixed 400 Mbit/s: a run of about 1.4 s, long enough for a dozen intervals and a steady median.
    let rate = 400e6;
    let out = run_with_limit(
        mover()
            .args(["bench", "e2e", "--size", "64M", "--policy", "fixed", "--rate", "400M", "--json", "--dir"])
            .arg(&work)
            .arg("--plot")
            .arg(&svg_path),
        Duration::from_secs(120),
    );
    let json = stdout_of(&out);
    let seconds = json_f64(&json, "seconds").unwrap();
    let intervals = json_u64(&json, "intervals").unwrap() as f64;
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let lines = svg_polylines(&svg);
    let points = *lines.iter().max().unwrap() as f64;
    assert_eq!(points, intervals, "one point per sampled interval: {lines:?}");
    // The sampler runs for the whole push (connecting and verifying included): 10 points a second.
    let expected = seconds * 10.0;
    assert!(
        points >= expected.floor() - 1.0 && points <= expected * 1.3 + 3.0,
        "{points} points for a {seconds:.2} s run"
    );
    // goodput (acknowledged), sent, policy rate, retransmissions: four series of every interval.
    assert_eq!(lines.iter().filter(|&&n| n as f64 == points).count(), 4, "{lines:?}");
    for text in ["time (s)", "rate (Gbit/s)", "retransmitted packets per 100 ms", "--rate 400", "fixed"] {
        assert!(svg.contains(text), "the plot lacks {text:?}");
    }
    // Paced at 400 Mbit/s on loopback, most 100 ms intervals carry about that (payload only: a little less).
    let (count, p50) = check_percentiles(&json, "interval_goodput_bps");
    assert!(count >= 8, "{json}");
    assert!(p50 as f64 > rate * 0.6 && (p50 as f64) < rate * 1.1, "median interval goodput {p50} at --rate 400M");
}

#[test]
fn net_plot_and_interval_percentiles_on_loopback() {
    let tmp = TempDir::new("h5-net-plot");
    let svg_path = tmp.path().join("net.svg");
    let rate = 200e6;
    let out = run_with_limit(
        mover().args(["bench", "net", "--seconds", "1.5", "--rate", "200M", "--json", "--plot"]).arg(&svg_path),
        Duration::from_secs(60),
    );
    let json = stdout_of(&out);
    let json = json.trim();
    assert!(json_valid(json), "not valid JSON: {json}");
    // The keys bench net always had are still there, first.
    assert!(json.starts_with("{\"role\":\"loopback\",\"datagrams\":"), "{json}");
    for key in ["bytes", "seconds", "pps", "goodput_bps", "gso", "loss", "sent"] {
        assert!(json.contains(&format!("\"{key}\":")), "{key} missing: {json}");
    }
    let (count, p50) = check_percentiles(json, "interval_rate_bps");
    assert!(count >= 10, "{json}");
    assert!(p50 as f64 > rate * 0.7 && (p50 as f64) < rate * 1.15, "median interval rate {p50} at --rate 200M");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let lines = svg_polylines(&svg);
    let points = *lines.iter().max().unwrap();
    assert_eq!(points as u64, json_u64(json, "intervals").unwrap(), "{lines:?}");
    // 1.5 s of sending, the end datagrams and the receiver's drain: 15 to 30 points.
    assert!((15..=30).contains(&points), "{points} points for 1.5 s");
    assert_eq!(lines.iter().filter(|&&n| n == points).count(), 2, "sent and received: {lines:?}");
    assert!(svg.contains("--rate 200M") && svg.contains("rate (Gbit/s)"), "title and axis");
}

#[test]
fn e2e_to_a_running_daemon() {
    let tmp = TempDir::new("h5-e2e-peer");
    let root = tmp.path().join("root");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let src = work.join("one.bin");
    common::write_random_file(&src, 8 << 20, 17);
    let server = Server::start(&root, &[]);
    let url = format!("mover://{}/bench", server.addr);
    let out = run_with_limit(
        mover().args(["bench", "e2e", "--insecure-no-auth", "--json", "--to", &url, "--file"]).arg(&src),
        Duration::from_secs(60),
    );
    let json = stdout_of(&out);
    assert!(json.starts_with("{\"mode\":\"peer\""), "{json}");
    assert_eq!(json_u64(&json, "bytes"), Some(8 << 20));
    assert!(json.contains("\"cpu_scope\":\"sender\""), "{json}");
    assert_eq!(common::hash_file(&root.join("bench/one.bin")), common::hash_file(&src), "the daemon holds the file");
    assert!(src.exists(), "--file is the user's: never removed");
}

#[test]
fn a_wrong_to_is_one_clear_error_line() {
    let stderr_lines = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect()
    };
    let out =
        run_with_limit(mover().args(["bench", "e2e", "--to", "http://example.invalid/x"]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2), "usage error");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("mover: error: --to takes") && lines[0].contains("mover://HOST[:PORT]/DIR"),
        "{lines:?}"
    );

    // A daemon address where nothing listens: refused, retryable (exit 5), one error line, nothing generated.
    let tmp = TempDir::new("h5-e2e-refused");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = run_with_limit(
        mover()
            .args(["bench", "e2e", "--insecure-no-auth", "--size", "1M", "--to"])
            .arg(format!("mover://127.0.0.1:{port}/x"))
            .arg("--dir")
            .arg(tmp.path()),
        Duration::from_secs(30),
    );
    let lines = stderr_lines(&out);
    let errors: Vec<_> = lines.iter().filter(|l| l.starts_with("mover: error:")).collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
    assert_eq!(out.status.code(), Some(5), "a refused connection is retryable: {lines:?}");
    assert!(list_tree(tmp.path()).is_empty(), "the generated data set is removed");

    // Auth flags are checked before anything is generated: no credentials for a mover:// daemon.
    let out = run_with_limit(
        mover().args(["bench", "e2e", "--size", "1M", "--to", "mover://127.0.0.1:9/x"]),
        Duration::from_secs(20),
    );
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("mover: error: pass --ca FILE"), "{lines:?}");
}

#[test]
fn a_missing_file_or_a_dir_inside_it_is_one_clear_error_line() {
    let tmp = TempDir::new("h5-e2e-badfile");
    let one_line = |out: &std::process::Output| -> String {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    let out = run_with_limit(
        mover().args(["bench", "e2e", "--file"]).arg(tmp.path().join("missing")),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(3), "source not found");
    assert!(one_line(&out).starts_with("mover: error: --file "));
    let out = run_with_limit(
        mover().args(["bench", "e2e", "--file"]).arg(tmp.path()).arg("--dir").arg(tmp.path().join("work")),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "usage");
    assert!(one_line(&out).contains("lies inside --file"));
    let out = run_with_limit(
        mover().args(["bench", "e2e", "--dir"]).arg(tmp.path()).arg("--plot").arg(tmp.path().join("no/such/x.svg")),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "usage");
    assert!(one_line(&out).contains("--plot "), "a --plot that cannot be written is refused before the run");
    let out = run_with_limit(
        mover().args(["bench", "net", "--seconds", "0.2", "--plot"]).arg(tmp.path().join("no/such/x.svg")),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(one_line(&out).starts_with("mover: error: --plot "));
    assert!(list_tree(tmp.path()).is_empty(), "nothing was generated: {:?}", list_tree(tmp.path()));
}

#[test]
fn net_plot_of_a_separate_sender_and_receiver() {
    let tmp = TempDir::new("h5-net-pair");
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let rx_svg = tmp.path().join("rx.svg");
    let tx_svg = tmp.path().join("tx.svg");
    let mut rx = common::KillOnDrop(
        mover()
            .args(["bench", "net", "--seconds", "4", "--json", "--listen", &addr, "--plot"])
            .arg(&rx_svg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The receiver binds at once; a send before it does is refused and counted, not fatal.
    std::thread::sleep(Duration::from_millis(300));
    let out = run_with_limit(
        mover()
            .args(["bench", "net", "--seconds", "1", "--rate", "100M", "--json", "--to", &addr, "--plot"])
            .arg(&tx_svg),
        Duration::from_secs(30),
    );
    let tx_json = stdout_of(&out);
    rx.wait_timeout(Duration::from_secs(15)).unwrap();
    let mut rx_json = String::new();
    std::io::Read::read_to_string(rx.0.stdout.as_mut().unwrap(), &mut rx_json).unwrap();
    for (json, role, svg) in [(tx_json.trim(), "sender", &tx_svg), (rx_json.trim(), "receiver", &rx_svg)] {
        assert!(json_valid(json), "{json}");
        assert!(json.starts_with(&format!("{{\"role\":\"{role}\"")), "{json}");
        let (count, p50) = check_percentiles(json, "interval_rate_bps");
        assert!(count >= 8 && p50 as f64 > 100e6 * 0.6 && (p50 as f64) < 100e6 * 1.2, "{role}: {json}");
        let svg = std::fs::read_to_string(svg).unwrap();
        let lines = svg_polylines(&svg);
        let points = *lines.iter().max().unwrap();
        assert_eq!(points as u64, json_u64(json, "intervals").unwrap(), "{role}: {lines:?}");
        assert_eq!(lines.iter().filter(|&&n| n == points).count(), 1, "{role}: one series: {lines:?}");
    }
}
