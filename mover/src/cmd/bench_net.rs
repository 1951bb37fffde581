//! `mover bench net`: the raw UDP ceiling of a path, with no protocol on top.
//!
//! The sender blasts sequence-numbered datagrams (optionally paced to `--rate`) for `--seconds` through
//! [`DataSocket::send_batch`], then announces its total in an "end" datagram repeated a few times; the
//! receiver counts what arrives through [`DataSocket::recv_batch`] and reports rate and loss. Without
//! `--listen`/`--to` both ends run in this process over 127.0.0.1 (a self-test).
//!
//! Datagram layout (little endian): magic `u32`, session `u32` (random per sender run; the receiver follows
//! the first session it sees and ignores others), sequence `u64`, then filler up to `--size`. The end
//! datagram has sequence `u64::MAX` followed by the datagrams sent (`u64`) and their payload bytes (`u64`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::bench_net_series::{finish_sampler, start_sampler, with_intervals, NetCounters, Role};
use crate::net::{DataSocket, RxBatch, TxBatch};
use crate::rate::{format_bytes, format_rate_bps, parse_rate_bps};

/// Marks benchmark datagrams ("MVNB").
const MAGIC: u32 = 0x4D56_4E42;
/// Magic, session, sequence.
const HEADER: usize = 16;
/// Sequence number of the end datagram.
const END_SEQ: u64 = u64::MAX;
/// Header, datagrams sent, bytes sent.
const END_LEN: usize = HEADER + 16;
/// Times the end datagram is sent (it may be lost like any other).
const END_REPEATS: usize = 5;
/// Largest UDP payload over IPv4.
const MAX_SIZE: usize = 65_507;
/// Socket buffers asked for at both ends.
const SOCKET_BUFFER: usize = 32 << 20;
/// The receiver stops after this long without a datagram once traffic has flowed.
const IDLE_STOP: Duration = Duration::from_secs(1);
/// After the first end datagram, the receiver drains this long for stragglers.
const END_DRAIN: Duration = Duration::from_millis(100);
/// Pacing tick: the paced sender sleeps this long between bursts.
const TICK: Duration = Duration::from_micros(100);

/// Arguments of `mover bench net`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchNetArgs {
    /// Receive mode: listen on this address and count datagrams
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Send mode: blast datagrams to this address
    #[arg(long)]
    pub to: Option<SocketAddr>,
    /// Datagram payload size in bytes (default 1472 = MTU 1500 minus IPv4+UDP headers)
    #[arg(long, default_value_t = 1472)]
    pub size: usize,
    /// Seconds to send (sender) / maximum seconds to wait (receiver)
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Send rate in bits/s with SI suffix: 500M, 2G, 10G (default: as fast as possible)
    #[arg(long)]
    pub rate: Option<String>,
    /// Use UDP GSO/GRO when available (default on); --no-gso to disable
    #[arg(long)]
    pub no_gso: bool,
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// Draw the rate over time (sent and received, Gbit/s per 100 ms) into this SVG file
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// What the sending end did.
#[derive(Debug, Clone, PartialEq)]
pub struct SendReport {
    /// Datagrams handed to the kernel (not counting the end datagrams).
    pub datagrams: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Sending time.
    pub seconds: f64,
    /// GSO was in use to the end.
    pub gso: bool,
    /// Sends refused by an ICMP port unreachable (receiver not there yet, or gone).
    pub refused: u64,
}

/// What the receiving end saw.
#[derive(Debug, Clone, PartialEq)]
pub struct RecvReport {
    /// Benchmark datagrams received (not counting end datagrams).
    pub datagrams: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// From the first to the last datagram received.
    pub seconds: f64,
    /// UDP GRO was on.
    pub gro: bool,
    /// The sender's count from its end datagram, if one arrived.
    pub sent: Option<u64>,
    /// Highest sequence number seen, plus one (an estimate of `sent` when no end datagram arrived).
    pub seq_span: u64,
    /// Datagrams from other programs or other sender runs.
    pub ignored: u64,
    /// Datagrams too large for the receive slots.
    pub truncated: u64,
}

impl RecvReport {
    /// Datagrams the sender sent: its own count, or the sequence span if its end datagram was lost.
    pub fn sent_estimate(&self) -> u64 {
        self.sent.unwrap_or(self.seq_span)
    }

    /// Lost fraction (0..=1) of the datagrams sent; 0 if nothing was sent.
    pub fn loss(&self) -> f64 {
        let sent = self.sent_estimate();
        if sent == 0 {
            0.0
        } else {
            sent.saturating_sub(self.datagrams) as f64 / sent as f64
        }
    }
}

/// Releases datagrams at a rate: a token bucket without credit for stalls longer than a couple of
/// milliseconds (a late wake-up does not turn into a line-rate burst).
#[derive(Debug, Clone)]
pub struct Pacer {
    datagrams_per_sec: f64,
    released: u64,
    max_burst: u64,
}

impl Pacer {
    /// A pacer for `rate_bps` bits/s of `datagram_bytes`-byte payloads.
    pub fn new(rate_bps: u64, datagram_bytes: usize) -> Pacer {
        let datagrams_per_sec = rate_bps as f64 / 8.0 / datagram_bytes.max(1) as f64;
        let max_burst = ((datagrams_per_sec * 0.002) as u64).max(1);
        Pacer { datagrams_per_sec, released: 0, max_burst }
    }

    /// Datagrams that may go now, `elapsed` after the start, and counts them as released.
    pub fn release(&mut self, elapsed: Duration) -> u64 {
        let due = (elapsed.as_secs_f64() * self.datagrams_per_sec) as u64;
        let mut n = due.saturating_sub(self.released);
        if n > self.max_burst {
            n = self.max_burst;
            self.released = due - n;
        }
        self.released += n;
        n
    }

    /// Returns `n` released datagrams that were not used.
    pub fn unrelease(&mut self, n: u64) {
        self.released = self.released.saturating_sub(n);
    }
}

fn rate_of(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Runs `mover bench net`.
pub fn run(args: &BenchNetArgs) -> Result<(), String> {
    check_args(args)?;
    match (args.listen, args.to) {
        (Some(_), Some(_)) => Err("give either --listen (receive) or --to (send), not both".into()),
        (Some(listen), None) => {
            let rx = receiver_socket(listen, args.no_gso)?;
            eprintln!("bench net: listening on {}", rx.local_addr().map_err(|e| e.to_string())?);
            let counters = Arc::new(NetCounters::default());
            let sampler = start_sampler(&counters, Role::Receiver)?;
            let report = receive(rx, args.seconds, &counters);
            let sampled = finish_sampler(
                sampler,
                Role::Receiver,
                plot_request(args, Role::Receiver, report.as_ref().is_ok_and(|r| r.gro)),
            )?;
            let report = report?;
            print_recv(&report, args.size);
            if args.json {
                println!("{}", with_intervals(recv_json("receiver", &report, report.gro, None), &sampled));
            }
            Ok(())
        }
        (None, Some(to)) => {
            let tx = sender_socket(to, args.no_gso, args.size)?;
            let gso = tx.gso_enabled();
            let counters = Arc::new(NetCounters::default());
            let sampler = start_sampler(&counters, Role::Sender)?;
            let report = send(tx, args, &counters);
            let sampled = finish_sampler(sampler, Role::Sender, plot_request(args, Role::Sender, gso))?;
            let report = report?;
            print_send(&report);
            if args.json {
                println!("{}", with_intervals(send_json(&report), &sampled));
            }
            Ok(())
        }
        (None, None) => {
            let counters = Arc::new(NetCounters::default());
            let sampler = start_sampler(&counters, Role::Loopback)?;
            let run = self_test_counted(args, !args.no_gso, &counters);
            let sampled = finish_sampler(
                sampler,
                Role::Loopback,
                plot_request(args, Role::Loopback, run.as_ref().is_ok_and(|(tx, _)| tx.gso)),
            )?;
            let (tx, rx) = run?;
            print_send(&tx);
            print_recv(&rx, args.size);
            if tx.gso && rx.gro {
                eprintln!(
                    "bench net: note: over loopback GSO+GRO moves 64 KiB super-datagrams unsplit (a memory-copy \
                     figure); --no-gso gives the per-datagram rate"
                );
            }
            if args.json {
                println!("{}", with_intervals(recv_json("loopback", &rx, tx.gso, Some(tx.datagrams)), &sampled));
            }
            Ok(())
        }
    }
}

/// The `--plot` file and the chart's title (the run's parameters), if `--plot` was given.
fn plot_request(args: &BenchNetArgs, role: Role, gso: bool) -> Option<(&std::path::Path, String)> {
    let path = args.plot.as_deref()?;
    let where_ = match role {
        Role::Loopback => "loopback".to_string(),
        Role::Sender => format!("--to {}", args.to.map_or(String::new(), |a| a.to_string())),
        Role::Receiver => format!("--listen {}", args.listen.map_or(String::new(), |a| a.to_string())),
    };
    let title = format!(
        "mover bench net ({where_}) --size {} --seconds {} --rate {}, GSO {}",
        args.size,
        args.seconds,
        args.rate.as_deref().unwrap_or("unpaced"),
        if gso { "on" } else { "off" },
    );
    Some((path, title))
}

fn check_args(args: &BenchNetArgs) -> Result<(), String> {
    if !(HEADER..=MAX_SIZE).contains(&args.size) {
        return Err(format!("--size {} out of range {HEADER}..={MAX_SIZE}", args.size));
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 1e6) {
        return Err(format!("--seconds {} must be a positive number of seconds", args.seconds));
    }
    if let Some(rate) = &args.rate {
        parse_rate_bps(rate).map_err(|e| format!("--rate: {e}"))?;
    }
    if let Some(p) = &args.plot {
        super::bench_plot::check_path(p)?;
    }
    Ok(())
}

/// Both ends in this process over 127.0.0.1: the receiver on a thread, the sender on this one.
pub fn self_test(args: &BenchNetArgs) -> Result<(SendReport, RecvReport), String> {
    self_test_with(args, !args.no_gso)
}

/// [`self_test`] with GRO on the receiver chosen separately (`gro`) from GSO on the sender.
fn self_test_with(args: &BenchNetArgs, gro: bool) -> Result<(SendReport, RecvReport), String> {
    self_test_counted(args, gro, &Arc::new(NetCounters::default()))
}

/// [`self_test_with`] that keeps `counters` up to date as it runs.
fn self_test_counted(
    args: &BenchNetArgs,
    gro: bool,
    counters: &Arc<NetCounters>,
) -> Result<(SendReport, RecvReport), String> {
    check_args(args)?;
    let rx = receiver_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), !gro)?;
    let to = rx.local_addr().map_err(|e| format!("self-test receiver address: {e}"))?;
    let wait = args.seconds;
    let rx_counters = Arc::clone(counters);
    let receiver = thread::Builder::new()
        .name("bench-net-rx".into())
        .spawn(move || receive(rx, wait, &rx_counters))
        .map_err(|e| format!("starting the receiver thread: {e}"))?;
    let tx = sender_socket(to, args.no_gso, args.size)?;
    let sent = send(tx, args, counters);
    let received = receiver.join().map_err(|_| "the receiver thread panicked".to_string())?;
    Ok((sent?, received?))
}

fn receiver_socket(listen: SocketAddr, no_gso: bool) -> Result<DataSocket, String> {
    let mut rx = DataSocket::bind(listen).map_err(|e| format!("receiver: {e}"))?;
    rx.set_buffer_bytes(SOCKET_BUFFER);
    if !no_gso {
        rx.enable_gro();
    }
    Ok(rx)
}

fn sender_socket(to: SocketAddr, no_gso: bool, size: usize) -> Result<DataSocket, String> {
    let local = if to.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let mut tx = DataSocket::bind(local).map_err(|e| format!("sender: {e}"))?;
    tx.connect(to).map_err(|e| format!("sender: {e}"))?;
    tx.set_buffer_bytes(SOCKET_BUFFER);
    if !no_gso && size <= u16::MAX as usize {
        tx.enable_gso(size as u16);
    }
    Ok(tx)
}

fn session_id() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
}

fn write_header(buf: &mut [u8], session: u32, seq: u64) {
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&session.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// One `send_batch`: the count sent; a refusal (ICMP port unreachable) is counted and waited out briefly.
fn send_some(sock: &mut DataSocket, batch: &mut TxBatch, refused: &mut u64) -> Result<u64, String> {
    match sock.send_batch(batch) {
        Ok(n) => Ok(n as u64),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            *refused += 1;
            // Nobody listening (yet): do not spin on the error.
            thread::sleep(Duration::from_millis(1));
            Ok(0)
        }
        Err(e) => Err(format!("sender: {e}")),
    }
}

/// Sends for `args.seconds`, then the end datagrams; `counters.sent_bytes` follows what was sent.
fn send(mut sock: DataSocket, args: &BenchNetArgs, counters: &NetCounters) -> Result<SendReport, String> {
    let size = args.size;
    let mut pacer = match &args.rate {
        Some(r) => Some(Pacer::new(parse_rate_bps(r).map_err(|e| format!("--rate: {e}"))?, size)),
        None => None,
    };
    let capacity = if sock.gso_enabled() { 256 } else { 64 };
    let mut batch = TxBatch::new(capacity, size.max(END_LEN));
    let session = session_id();
    let mut seq = 0u64;
    let mut sent = 0u64;
    let mut refused = 0u64;
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(args.seconds);

    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        let mut allowed = match pacer.as_mut() {
            Some(p) => p.release(now - start),
            None => u64::MAX,
        };
        while allowed > 0 {
            let Some(slot) = batch.slot() else { break };
            write_header(slot, session, seq);
            batch.commit(size);
            seq += 1;
            allowed -= 1;
        }
        if let Some(p) = pacer.as_mut() {
            p.unrelease(allowed); // released but no room in the batch
        }
        if batch.is_empty() {
            // Paced and nothing due: wait for the next tick.
            thread::sleep(TICK);
            continue;
        }
        let n = send_some(&mut sock, &mut batch, &mut refused)?;
        sent += n;
        counters.sent_bytes.store(sent * size as u64, Ordering::Relaxed);
        if n == 0 && !batch.is_empty() {
            sock.wait_writable(Duration::from_millis(1)).map_err(|e| format!("sender: {e}"))?;
        } else if pacer.is_some() && !batch.is_full() {
            thread::sleep(TICK);
        }
    }
    // Flush what is still queued (up to a second), then stop the clock.
    let flush_until = Instant::now() + Duration::from_secs(1);
    while !batch.is_empty() && Instant::now() < flush_until {
        let n = send_some(&mut sock, &mut batch, &mut refused)?;
        sent += n;
        counters.sent_bytes.store(sent * size as u64, Ordering::Relaxed);
        if n == 0 {
            sock.wait_writable(Duration::from_millis(1)).map_err(|e| format!("sender: {e}"))?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    batch.clear();
    let bytes = sent * size as u64;
    for _ in 0..END_REPEATS {
        if let Some(slot) = batch.slot() {
            write_header(slot, session, END_SEQ);
            slot[HEADER..HEADER + 8].copy_from_slice(&sent.to_le_bytes());
            slot[HEADER + 8..HEADER + 16].copy_from_slice(&bytes.to_le_bytes());
            batch.commit(END_LEN);
        }
        let until = Instant::now() + Duration::from_millis(20);
        while !batch.is_empty() && Instant::now() < until {
            if send_some(&mut sock, &mut batch, &mut refused)? == 0 {
                thread::sleep(Duration::from_micros(200));
            }
        }
        batch.clear();
        // Spread the repeats: a receiver still draining a full socket buffer gets a later one.
        thread::sleep(Duration::from_millis(10));
    }
    Ok(SendReport { datagrams: sent, bytes, seconds, gso: sock.gso_enabled(), refused })
}

/// Counts datagrams until the end datagram (plus a short drain), a second of silence after traffic, or
/// `seconds + 1` s after the first datagram; gives up if nothing arrives within `seconds + 1` s.
/// `counters.received_bytes` follows what was counted.
fn receive(mut sock: DataSocket, seconds: f64, counters: &NetCounters) -> Result<RecvReport, String> {
    let gro = sock.gro_enabled();
    // 64 KiB slots: any datagram fits, and GRO needs them. 16 slots with GRO (up to 1024 datagrams).
    let mut batch = RxBatch::new(if gro { 16 } else { 64 }, RxBatch::GRO_DATAGRAM);
    let budget = Duration::from_secs_f64(seconds + 1.0);
    let listen_start = Instant::now();
    let mut session: Option<u32> = None;
    let mut first: Option<Instant> = None;
    let mut last = listen_start;
    let mut end_seen: Option<Instant> = None;
    let mut report =
        RecvReport { datagrams: 0, bytes: 0, seconds: 0.0, gro, sent: None, seq_span: 0, ignored: 0, truncated: 0 };
    loop {
        let n = sock.recv_batch(&mut batch).map_err(|e| format!("receiver: {e}"))?;
        let now = Instant::now();
        for i in 0..n {
            let (d, _from) = batch.get(i);
            if d.len() < HEADER || d[0..4] != MAGIC.to_le_bytes() {
                report.ignored += 1;
                continue;
            }
            let s = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
            if *session.get_or_insert(s) != s {
                report.ignored += 1;
                continue;
            }
            let seq = u64_at(d, 8);
            if seq == END_SEQ {
                if d.len() >= END_LEN {
                    report.sent = Some(u64_at(d, HEADER));
                    end_seen.get_or_insert(now);
                }
                continue;
            }
            report.datagrams += 1;
            report.bytes += d.len() as u64;
            report.seq_span = report.seq_span.max(seq + 1);
            first.get_or_insert(now);
            last = now;
        }
        counters.received_bytes.store(report.bytes, Ordering::Relaxed);
        if end_seen.is_some_and(|e| now - e >= END_DRAIN) {
            break;
        }
        match first {
            None if now - listen_start >= budget && end_seen.is_none() => break,
            Some(f) if now - f >= budget || now - last >= IDLE_STOP => break,
            _ => {}
        }
        if n == 0 {
            sock.wait_readable(Duration::from_millis(10)).map_err(|e| format!("receiver: {e}"))?;
        }
    }
    report.seconds = first.map_or(0.0, |f| (last - f).as_secs_f64());
    report.truncated = batch.truncated();
    Ok(report)
}

fn print_send(r: &SendReport) {
    let pps = rate_of(r.datagrams, r.seconds);
    eprintln!(
        "bench net: sent {} datagrams ({}) in {:.2} s: {:.1} kpps, {} payload, GSO {}{}",
        r.datagrams,
        format_bytes(r.bytes),
        r.seconds,
        pps / 1e3,
        format_rate_bps(rate_of(r.bytes * 8, r.seconds)),
        if r.gso { "on" } else { "off" },
        if r.refused > 0 { format!(", {} sends refused (ICMP port unreachable)", r.refused) } else { String::new() },
    );
}

fn print_recv(r: &RecvReport, size: usize) {
    let sent = match r.sent {
        Some(s) => format!("{s} sent"),
        None => format!("~{} sent (end datagram lost; from sequence numbers)", r.seq_span),
    };
    eprintln!(
        "bench net: received {} datagrams ({}) in {:.2} s: {:.1} kpps, {} payload, GRO {}; loss {:.3}% of {}",
        r.datagrams,
        format_bytes(r.bytes),
        r.seconds,
        rate_of(r.datagrams, r.seconds) / 1e3,
        format_rate_bps(rate_of(r.bytes * 8, r.seconds)),
        if r.gro { "on" } else { "off" },
        r.loss() * 100.0,
        sent,
    );
    if r.ignored > 0 || r.truncated > 0 {
        eprintln!(
            "bench net: ignored {} foreign datagrams, dropped {} larger than {} bytes",
            r.ignored,
            r.truncated,
            RxBatch::GRO_DATAGRAM.max(size)
        );
    }
}

/// A finite number as JSON, `null` otherwise.
fn json_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".into()
    }
}

fn send_json(r: &SendReport) -> String {
    format!(
        "{{\"role\":\"sender\",\"datagrams\":{},\"bytes\":{},\"seconds\":{},\"pps\":{},\"goodput_bps\":{},\"gso\":{},\"loss\":null,\"refused\":{}}}",
        r.datagrams,
        r.bytes,
        json_num(r.seconds, 6),
        json_num(rate_of(r.datagrams, r.seconds), 1),
        json_num(rate_of(r.bytes * 8, r.seconds), 0),
        r.gso,
        r.refused,
    )
}

/// The receiver's numbers; `loss` is a fraction (0..=1). `sent_by_sender` adds a `sent` key (self-test).
fn recv_json(role: &str, r: &RecvReport, gso: bool, sent_by_sender: Option<u64>) -> String {
    let sent = sent_by_sender.or(r.sent);
    format!(
        "{{\"role\":\"{role}\",\"datagrams\":{},\"bytes\":{},\"seconds\":{},\"pps\":{},\"goodput_bps\":{},\"gso\":{},\"loss\":{},\"sent\":{}}}",
        r.datagrams,
        r.bytes,
        json_num(r.seconds, 6),
        json_num(rate_of(r.datagrams, r.seconds), 1),
        json_num(rate_of(r.bytes * 8, r.seconds), 0),
        gso,
        json_num(r.loss(), 6),
        sent.map_or("null".to_string(), |s| s.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(seconds: f64, rate: Option<&str>, no_gso: bool) -> BenchNetArgs {
        BenchNetArgs {
            listen: None,
            to: None,
            size: 1200,
            seconds,
            rate: rate.map(str::to_string),
            no_gso,
            json: false,
            plot: None,
        }
    }

    /// `end_required`: the end datagram must have arrived (it may be dropped, like any datagram, when an
    /// unpaced sender overruns the receiver on a busy machine).
    fn check_consistent(tx: &SendReport, rx: &RecvReport, size: usize, end_required: bool) {
        assert!(tx.datagrams > 0, "{tx:?}");
        assert!(rx.datagrams > 0, "{rx:?}");
        assert!(rx.datagrams <= tx.datagrams, "{rx:?} {tx:?}");
        assert_eq!(tx.bytes, tx.datagrams * size as u64);
        assert_eq!(rx.bytes, rx.datagrams * size as u64);
        if end_required || rx.sent.is_some() {
            assert_eq!(rx.sent, Some(tx.datagrams), "end datagram carries the sender's count");
        }
        assert!(rx.seq_span <= tx.datagrams);
        assert_eq!(rx.ignored, 0);
        let loss = rx.loss();
        assert!((0.0..=1.0).contains(&loss));
        assert!((loss - (tx.datagrams - rx.datagrams) as f64 / tx.datagrams as f64).abs() < 1e-12);
        assert!(rx.seconds > 0.0 && rx.seconds <= tx.seconds + 1.0);
        let json = recv_json("loopback", rx, tx.gso, Some(tx.datagrams));
        for key in ["role", "datagrams", "bytes", "seconds", "pps", "goodput_bps", "gso", "loss"] {
            assert!(json.contains(&format!("\"{key}\":")), "{json}");
        }
    }

    #[test]
    fn self_test_over_loopback() {
        for no_gso in [false, true] {
            let a = args(0.5, None, no_gso);
            let (tx, rx) = self_test(&a).unwrap();
            check_consistent(&tx, &rx, a.size, false);
            assert!(tx.seconds >= 0.5 && tx.seconds < 2.0, "{tx:?}");
        }
    }

    #[test]
    fn paced_self_test_holds_the_rate() {
        // 40 Mbit/s of 1200-byte datagrams for 0.4 s: ~1667 datagrams.
        let a = args(0.4, Some("40M"), false);
        let (tx, rx) = self_test(&a).unwrap();
        check_consistent(&tx, &rx, a.size, true);
        let expect = 40e6 / 8.0 / 1200.0 * tx.seconds;
        let got = tx.datagrams as f64;
        assert!(got <= expect * 1.05 + 2.0 && got >= expect * 0.7, "sent {got}, expected ~{expect}");
    }

    #[test]
    fn pacer_releases_at_rate_without_stall_credit() {
        let mut p = Pacer::new(1_000_000_000, 1250); // 100k datagrams/s
        let mut total = 0;
        for tick in 1..=10_000u64 {
            total += p.release(Duration::from_micros(100 * tick));
        }
        assert!((99_990..=100_000).contains(&total), "{total}");
        // A 1 s stall releases at most 2 ms worth.
        assert_eq!(p.release(Duration::from_secs(2)), 200);
        assert_eq!(p.release(Duration::from_secs(2)), 0);
        p.unrelease(50);
        assert_eq!(p.release(Duration::from_secs(2)), 50);
    }

    /// A measurement, not a check: `cargo test --release -p mover --lib loopback_numbers -- --ignored
    /// --nocapture` prints the self-test with and without GSO (BENCH_SECONDS, default 3).
    #[test]
    #[ignore]
    fn loopback_numbers() {
        let seconds = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
        for (no_gso, gro) in [(false, true), (false, false), (true, false)] {
            let mut a = args(seconds, None, no_gso);
            a.size = 1472;
            let (tx, rx) = self_test_with(&a, gro).unwrap();
            print_send(&tx);
            print_recv(&rx, a.size);
            println!("{}", recv_json("loopback", &rx, tx.gso, Some(tx.datagrams)));
        }
    }

    #[test]
    fn bad_arguments_are_rejected() {
        let mut a = args(1.0, None, false);
        a.size = 8;
        assert!(run(&a).is_err());
        let mut a = args(-1.0, None, false);
        assert!(run(&a).is_err());
        a.seconds = 1.0;
        a.rate = Some("fast".into());
        assert!(run(&a).is_err());
        a.rate = None;
        a.listen = Some("127.0.0.1:0".parse().unwrap());
        a.to = Some("127.0.0.1:9".parse().unwrap());
        assert!(run(&a).is_err());
    }
}
