//! `mover serve --metrics ADDR`: the daemon's counters in the Prometheus text format (version 0.0.4) at
//! `GET /metrics`, from a small HTTP/1.1 server on a thread of its own.
//!
//! The numbers are read when scraped ([`SessionRegistry::snapshot`], [`Admission::stats`],
//! [`MemoryBudget::stats`]), so nothing is counted twice and nothing runs between scrapes. The text is
//! written here (decision 0018): a dozen families, one escaping rule for label values.
//!
//! The server answers one request per connection, reads at most [`MAX_REQUEST`] bytes with a
//! [`IO_TIMEOUT`] per read and write, and answers anything but `GET /metrics` with 404 (405 for another
//! method), then waits for the client to close (at most [`IO_TIMEOUT`] and 64 KiB read and dropped): a
//! scraper on the network cannot hold it longer or make it buffer. One connection at a time: a client
//! that stalls delays the next scrape by at most a few seconds.

use super::admission::{Admission, AdmissionStats};
use super::governor::RateCaps;
use super::memory::{MemoryBudget, MemoryStats};
use super::registry::{RegistrySnapshot, SessionRegistry};
use super::report::Direction;
use super::SessionError;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Most bytes of a request read (its request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Each read and write on a metrics connection gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint reads at each scrape.
#[derive(Clone)]
pub struct MetricsSource {
    /// The sessions.
    pub registry: Arc<SessionRegistry>,
    /// Admission: running, queued, authenticating.
    pub admission: Arc<Admission>,
    /// The daemon-wide memory account.
    pub memory: MemoryBudget,
    /// The rate caps (`--max-rate`, `--user-max-rate`), if any.
    pub caps: RateCaps,
}

impl MetricsSource {
    /// The text a scrape returns now.
    pub fn render(&self) -> String {
        let mut text = render(&self.registry.snapshot(), &self.admission.stats(), &self.memory.stats());
        render_caps(&mut text, &self.caps);
        text
    }
}

/// Binds `addr` and serves `GET /metrics` from `source` on a thread for the daemon's lifetime; returns the
/// bound address (a port 0 is chosen by the kernel).
pub fn spawn_metrics(addr: SocketAddr, source: MetricsSource) -> Result<SocketAddr, SessionError> {
    let listener =
        TcpListener::bind(addr).map_err(|e| SessionError::Setup(format!("--metrics: cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|error| SessionError::Io { what: "metrics socket", error })?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    // A client's failure (a timeout, a reset) only ends its own connection.
                    Ok(stream) => drop(answer(stream, &source)),
                    // Out of descriptors, say: do not spin on it.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(|error| SessionError::Io { what: "starting the metrics thread", error })?;
    Ok(local)
}

/// Reads one request and answers it.
fn answer(mut stream: TcpStream, source: &MetricsSource) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return respond(&mut stream, "431 Request Header Fields Too Large", "request too large\n");
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(&mut stream, "200 OK", &source.render()),
        ("GET", _) => respond(&mut stream, "404 Not Found", "not found: the metrics are at /metrics\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", "only GET\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    // Close only after the client has: closing with its unread bytes in our buffer (a refused large
    // request) would reset the connection, and a reset can destroy the answer before it is read.
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

/// Most bytes read and dropped after an answer while waiting for the client to close.
const MAX_DRAIN: usize = 64 * 1024;

/// A label value as the text format quotes it: backslash, double quote and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family: its HELP and TYPE lines and its samples (`labels` already formatted, or empty).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

fn one(v: u64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

fn by(label: &str, values: &[(&str, u64)]) -> Vec<(String, f64)> {
    values.iter().map(|(l, v)| (format!("{label}=\"{l}\""), *v as f64)).collect()
}

/// The whole text of a scrape.
pub fn render(reg: &RegistrySnapshot, adm: &AdmissionStats, mem: &MemoryStats) -> String {
    let t = &reg.totals;
    let mut o = String::new();
    let counter = "counter";
    let gauge = "gauge";
    family(&mut o, "mover_bytes_received_total", counter, "Bytes of files received (pushes).", &one(t.bytes_received));
    family(&mut o, "mover_bytes_sent_total", counter, "Bytes of files sent (served pulls).", &one(t.bytes_sent));
    family(&mut o, "mover_files_received_total", counter, "Files received and committed.", &one(t.files_received));
    family(&mut o, "mover_files_sent_total", counter, "Files sent and confirmed.", &one(t.files_sent));
    family(
        &mut o,
        "mover_sessions_total",
        counter,
        "Sessions by result: ok, failed (after they started), refused (authentication or a full queue).",
        &by("result", &[("ok", t.sessions_ok), ("failed", t.sessions_failed), ("refused", t.sessions_refused)]),
    );
    family(&mut o, "mover_sessions_active", gauge, "Sessions running now.", &one(reg.active.len() as u64));
    family(&mut o, "mover_packets_received_total", counter, "Valid data packets received.", &one(t.packets_received));
    family(
        &mut o,
        "mover_packets_sent_total",
        counter,
        "Data packets sent, retransmissions included.",
        &one(t.packets_sent),
    );
    family(
        &mut o,
        "mover_packets_retransmitted_total",
        counter,
        "Data packets sent again.",
        &one(t.packets_retransmitted),
    );
    family(
        &mut o,
        "mover_datagrams_dropped_total",
        counter,
        "Datagrams dropped, by cause: invalid (damaged or foreign), auth (failed authentication), replayed, \
         duplicate (data already received).",
        &by(
            "cause",
            &[
                ("invalid", t.dropped_invalid),
                ("auth", t.dropped_auth),
                ("replayed", t.dropped_replayed),
                ("duplicate", t.duplicates),
            ],
        ),
    );
    let labels = |a: &super::registry::ActiveInfo| {
        let direction = if a.direction == Direction::Received { "receive" } else { "send" };
        format!("session=\"{}\",peer=\"{}\",direction=\"{direction}\"", a.id, escape_label(&a.peer.to_string()))
    };
    let rates: Vec<(String, f64)> = reg.active.iter().map(|a| (labels(a), a.rate_bps.round())).collect();
    family(
        &mut o,
        "mover_session_rate_bps",
        gauge,
        "Goodput of each running session over the last second or more between scrapes, bits per second.",
        &rates,
    );
    let shares: Vec<(String, f64)> = reg
        .active
        .iter()
        .filter(|a| a.live.rate_share_bps > 0)
        .map(|a| (labels(a), a.live.rate_share_bps as f64))
        .collect();
    family(
        &mut o,
        "mover_session_rate_share_bps",
        gauge,
        "Each running session's share of the rate caps (--max-rate, --user-max-rate), bits per second of \
         datagrams; sessions no cap applies to have none.",
        &shares,
    );
    family(
        &mut o,
        "mover_sessions_queued",
        gauge,
        "Sessions waiting in the admission queue.",
        &one(adm.waiting as u64),
    );
    family(
        &mut o,
        "mover_connections_handshaking",
        gauge,
        "Connections still authenticating.",
        &one(adm.handshaking as u64),
    );
    family(&mut o, "mover_sessions_admitted_total", counter, "Sessions admitted.", &one(adm.admitted));
    family(
        &mut o,
        "mover_sessions_waited_total",
        counter,
        "Sessions that waited in the queue before their turn.",
        &one(adm.queued),
    );
    family(
        &mut o,
        "mover_sessions_refused_busy_total",
        counter,
        "Sessions refused because the queue was full (--max-queue).",
        &one(adm.refused_busy),
    );
    family(
        &mut o,
        "mover_sessions_left_queue_total",
        counter,
        "Queued sessions whose client left before its turn.",
        &one(adm.left_queue),
    );
    family(
        &mut o,
        "mover_connections_cut_total",
        counter,
        "Authenticating connections cut: idle (to make room, --max-handshakes), deadline (too slow).",
        &by("cause", &[("idle", adm.cut_idle), ("deadline", adm.cut_deadline)]),
    );
    family(
        &mut o,
        "mover_memory_reserved_bytes",
        gauge,
        "Memory reserved by running sessions (manifests, buffers).",
        &one(mem.reserved_bytes),
    );
    family(
        &mut o,
        "mover_memory_peak_reserved_bytes",
        gauge,
        "The most memory ever reserved at once.",
        &one(mem.peak_reserved_bytes),
    );
    family(&mut o, "mover_memory_limit_bytes", gauge, "The daemon-wide limit (--max-memory).", &one(mem.limit_bytes));
    family(
        &mut o,
        "mover_memory_refusals_total",
        counter,
        "Sessions refused for memory: session (--max-manifest-memory), daemon (--max-memory).",
        &by("scope", &[("session", mem.session_refusals), ("daemon", mem.daemon_refusals)]),
    );
    o
}

/// The rate caps, appended to a scrape's text: the daemon's (when set) and each capped account's.
fn render_caps(o: &mut String, caps: &RateCaps) {
    let daemon: Vec<(String, f64)> = caps.max_rate_bps.map(|c| (String::new(), c as f64)).into_iter().collect();
    family(o, "mover_rate_cap_bps", "gauge", "The daemon's rate cap (--max-rate), bits per second.", &daemon);
    let users: Vec<(String, f64)> =
        caps.user_max_rate_bps.iter().map(|(u, &c)| (format!("account=\"{}\"", escape_label(u)), c as f64)).collect();
    family(
        o,
        "mover_account_rate_cap_bps",
        "gauge",
        "Each account's rate cap (--user-max-rate), bits per second.",
        &users,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::live::set;

    /// Every line is a comment (`# HELP name text` / `# TYPE name counter|gauge`) or a sample
    /// `name{label="value",...} number` of the family announced last.
    fn check_exposition(text: &str) {
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert!(!kind.is_empty() && (kind != "counter" || name.ends_with("_total")), "{line}");
                family = name.to_string();
            } else if line.starts_with("# HELP ") {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line}"));
                let name = series.split('{').next().unwrap();
                assert_eq!(name, family, "{line}");
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                if let Some(labels) = series.strip_prefix(name).and_then(|l| l.strip_prefix('{')) {
                    assert!(labels.ends_with('}'), "{line}");
                }
            }
        }
    }

    #[test]
    fn a_scrape_is_valid_text_format_with_every_family() {
        let reg = SessionRegistry::new();
        let s = reg.begin("[::1]:7".parse().unwrap(), "a\"b", Direction::Received);
        s.live.set_totals(1, 10);
        s.live.set_done(0, 5);
        set(&s.live.duplicates, 4);
        set(&s.live.rate_share_bps, 200_000_000);
        let mut text = render(&reg.snapshot(), &AdmissionStats::default(), &MemoryStats::default());
        let caps = RateCaps { max_rate_bps: Some(600_000_000), user_max_rate_bps: [("user:a".into(), 1)].into() };
        render_caps(&mut text, &caps);
        check_exposition(&text);
        assert!(text.contains(
            "mover_session_rate_share_bps{session=\"1\",peer=\"[::1]:7\",direction=\"receive\"} 200000000\n"
        ));
        assert!(
            text.contains("mover_rate_cap_bps 600000000\n")
                && text.contains("mover_account_rate_cap_bps{account=\"user:a\"} 1\n")
        );
        assert!(text.contains("mover_bytes_received_total 5\n"), "{text}");
        assert!(text.contains("mover_sessions_active 1\n"), "{text}");
        assert!(text.contains("mover_datagrams_dropped_total{cause=\"duplicate\"} 4\n"), "{text}");
        assert!(text.contains("mover_session_rate_bps{session=\"1\",peer=\"[::1]:7\",direction=\"receive\"}"));
        for name in ["mover_sessions_total", "mover_memory_limit_bytes", "mover_sessions_queued"] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
