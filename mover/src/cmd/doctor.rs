//! `mover doctor`: what limits a transfer on this host, and how to fix it. It reads the host's settings
//! ([`super::doctor_host`]), judges them ([`super::doctor_checks`]), measures the stages of a transfer with
//! mover's own engines ([`super::doctor_measure`], and [`super::doctor_peer`] with `--peer`), and names the
//! slowest ([`super::doctor_bottleneck`]). It never changes a setting: it reads, and writes only a temporary
//! file (removed) in `--dir`. Decision note 0016 says how it measures and what it cannot see in a VM.

use super::args::ClientAuthArgs;
use super::doctor_bottleneck::{self as bottleneck, Bottleneck, Stage};
use super::doctor_checks::{self as checks, Finding, Severity};
use super::doctor_host;
use super::doctor_measure::{self as measure, DiskSpeeds};
use super::doctor_peer::{self as peer, PeerResult};
use crate::exit::{ExitClass, Failed};
use crate::json::JsonObject;
use crate::rate::{format_bytes, format_rate_bps, parse_size_bytes};
use crate::wire::Cipher;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `mover doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Directory for the disk measurement's temporary file: the file system transfers will read and write
    /// (default: the current directory, or $TMPDIR when it is not writable)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Bytes written and read back by the disk measurement (binary suffixes: 256M, 1G)
    #[arg(long, default_value = "256M", value_parser = parse_size_bytes)]
    pub disk_size: u64,
    /// Also measure the path to a running daemon, mover://HOST[:PORT][/DIR]: round-trip time and a short
    /// push of generated data (left on the daemon under DIR/mover-doctor-PID/)
    #[arg(long, value_name = "URL")]
    pub peer: Option<String>,
    /// About how long the --peer push runs, in seconds
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub peer_seconds: f64,
    /// Exit with code 1 when a finding is bad (default: 0 whatever was found)
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON object on stdout: findings, measured, bottleneck
    #[arg(long)]
    pub json: bool,
    /// How to authenticate to the --peer daemon (as `mover push`).
    #[command(flatten)]
    pub auth: ClientAuthArgs,
}

/// Everything measured (`None`: the measurement failed; a finding says why).
#[derive(Debug, Default)]
struct Measured {
    disk: Option<DiskSpeeds>,
    cipher: Option<(Cipher, f64, f64)>,
    udp: Option<(f64, f64)>,
    peer: Option<PeerResult>,
}

impl Measured {
    fn stages(&self) -> Vec<Stage> {
        let mut s = Vec::new();
        if let Some(d) = &self.disk {
            s.push(Stage { key: "disk_read", label: "the disk read", bps: d.read.bps });
            s.push(Stage { key: "disk_write", label: "the disk write", bps: d.write.bps });
        }
        if let Some((_, seal, open)) = self.cipher {
            s.push(Stage { key: "cipher", label: "the cipher on one core", bps: seal.min(open) });
        }
        if let Some((bps, _)) = self.udp {
            s.push(Stage { key: "udp", label: "the UDP socket path", bps });
        }
        if let Some(p) = &self.peer {
            s.push(Stage { key: "peer", label: "the path to the peer", bps: p.goodput_bps });
        }
        s
    }
}

/// Runs the doctor and prints its report. With `--strict`, bad findings are an error (exit code 1).
pub fn run(args: &DoctorArgs) -> Result<(), Failed> {
    let usage = |message: String| Failed { class: ExitClass::Usage, message };
    if !(args.peer_seconds.is_finite() && args.peer_seconds > 0.0 && args.peer_seconds <= 600.0) {
        return Err(usage(format!("--peer-seconds {} must be between 0 and 600", args.peer_seconds)));
    }
    if args.disk_size < 1 << 20 {
        return Err(usage("--disk-size must be at least 1M".into()));
    }
    let auth = match &args.peer {
        Some(p) if !p.starts_with("mover://") => {
            return Err(usage(format!("--peer takes a daemon's URL, mover://HOST[:PORT], not '{p}'")))
        }
        Some(_) => Some(args.auth.resolve().map_err(|e| Failed { class: e.exit_class(), message: e.to_string() })?),
        None => None,
    };
    let started = Instant::now();
    let dir = measure_dir(args.dir.as_deref())?;
    let say = |what: &str| {
        if !args.json {
            eprintln!("mover doctor: {what}");
        }
    };
    say("reading the host's settings");
    let host = doctor_host::read(true);
    let mut findings = checks::judge(&host);
    let mut m = Measured::default();
    say(&format!("measuring the disk in '{}' ({})", dir.display(), format_bytes(args.disk_size)));
    match measure::disk(&dir, args.disk_size) {
        Ok(d) => {
            findings.push(disk_finding(&d));
            m.disk = Some(d);
        }
        Err(e) => findings.push(failed("disk", &e)),
    }
    say("measuring the cipher on one core");
    match measure::cipher() {
        Ok(c) => m.cipher = Some(c),
        Err(e) => findings.push(failed("cipher", &e)),
    }
    say("measuring UDP over loopback");
    match measure::udp(1.0) {
        Ok(u) => m.udp = Some(u),
        Err(e) => findings.push(failed("udp", &e)),
    }
    if let (Some(url), Some(auth)) = (&args.peer, auth) {
        say(&format!("measuring the path to {url}"));
        let expect = m.stages().iter().map(|s| s.bps).fold(f64::INFINITY, f64::min);
        let expect = if expect.is_finite() { expect } else { 1e9 };
        match peer::measure(url, auth, args.peer_seconds, expect, &dir) {
            Ok(p) => m.peer = Some(p),
            Err(e) => findings.push(failed("peer", &e)),
        }
    }
    let verdict = bottleneck::judge(&m.stages());
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", to_json(&findings, &m, &host, verdict.as_ref(), seconds));
    } else {
        print!("{}", describe(&findings, &m, verdict.as_ref(), seconds));
    }
    let bad = findings.iter().filter(|f| f.severity == Severity::Bad).count();
    if args.strict && bad > 0 {
        return Err(Failed {
            class: ExitClass::Failure,
            message: format!("{bad} finding(s) are bad (--strict); the fix of each is printed above"),
        });
    }
    Ok(())
}

/// `--dir`, or the current directory when writable, else the temporary directory.
fn measure_dir(dir: Option<&Path>) -> Result<PathBuf, Failed> {
    if let Some(d) = dir {
        if !d.is_dir() {
            return Err(Failed {
                class: ExitClass::Usage,
                message: format!("--dir '{}' is not a directory (give one on the disk to measure)", d.display()),
            });
        }
        return Ok(d.to_path_buf());
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    // access(2) answers for the real user, who is the one that will create the file.
    let c = std::ffi::CString::new(cwd.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // Safety: access reads a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(cwd)
    } else {
        Ok(std::env::temp_dir())
    }
}

fn failed(what: &str, e: &str) -> Finding {
    Finding {
        check: format!("measure {what}"),
        severity: Severity::Warn,
        seen: format!("failed: {e}"),
        why: "the bottleneck is judged without this stage".into(),
        fix: String::new(),
    }
}

/// Whether the disk figures measured the disk, or memory.
fn disk_finding(d: &DiskSpeeds) -> Finding {
    let tmpfs = is_tmpfs(&d.dir);
    let cached = d.read_cached_fraction > 0.5 || !d.read.direct;
    let why = "a read served from the page cache measures memory, not the disk: a transfer of data larger than \
               memory, or read for the first time, runs at the disk's speed; see hardware-notes/disk.md#page-cache";
    let (severity, seen, fix) = if tmpfs {
        (
            Severity::Warn,
            format!("'{}' is tmpfs: both figures are memory speeds", d.dir.display()),
            "mover doctor --dir DIR (a directory on the disk transfers use)".to_string(),
        )
    } else if cached {
        (
            Severity::Warn,
            format!(
                "the read came from the page cache ({:.0}% of the file cached{})",
                d.read_cached_fraction * 100.0,
                if d.read.direct { "" } else { "; O_DIRECT refused by the file system" }
            ),
            "mover doctor --dir DIR on a file system that takes O_DIRECT, or echo 1 > /proc/sys/vm/drop_caches before `mover bench disk --direct --file FILE` (drops every cached page: not on a busy host)".to_string(),
        )
    } else {
        (
            Severity::Ok,
            format!(
                "read from the disk ({}, O_DIRECT, {:.0}% cached before), written with {}{}",
                d.read.engine,
                d.read_cached_fraction * 100.0,
                d.write.engine,
                if d.write.direct { " O_DIRECT + fdatasync" } else { " + fdatasync" }
            ),
            String::new(),
        )
    };
    Finding { check: "disk read source".into(), severity, seen, why: why.into(), fix }
}

fn is_tmpfs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // Safety: statfs writes one struct into `s`; the path is NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // `f_type` is signed in glibc and unsigned in musl: compare the bits.
    unsafe { libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as u64 == libc::TMPFS_MAGIC as u64 }
}

fn gbs(bps: f64) -> String {
    format!("{:.2} GB/s ({})", bps / 8e9, format_rate_bps(bps))
}

fn describe(findings: &[Finding], m: &Measured, verdict: Option<&Bottleneck>, seconds: f64) -> String {
    let mut o = String::from("measured (mover's own engines):\n");
    if let Some(d) = &m.disk {
        o += &format!(
            "  disk write  {:<28} {}, {}, {} in {}\n",
            gbs(d.write.bps),
            d.write.engine,
            if d.write.direct { "O_DIRECT + fdatasync" } else { "buffered + fdatasync" },
            format_bytes(d.bytes),
            d.dir.display()
        );
        o += &format!(
            "  disk read   {:<28} {}, {}, {:.0}% of it in the page cache before\n",
            gbs(d.read.bps),
            d.read.engine,
            if d.read.direct { "O_DIRECT" } else { "buffered" },
            d.read_cached_fraction * 100.0
        );
    }
    if let Some((c, seal, open)) = m.cipher {
        o += &format!(
            "  cipher      {:<28} {c}, one core: seal {}, open {}\n",
            gbs(seal.min(open)),
            gbs(seal),
            gbs(open)
        );
    }
    if let Some((bps, loss)) = m.udp {
        o += &format!(
            "  udp         {:<28} loopback, 1472-byte datagrams, no GSO/GRO, loss {:.2}%\n",
            gbs(bps),
            loss * 100.0
        );
    }
    if let Some(p) = &m.peer {
        o += &format!(
            "  peer        {:<28} {}: TCP connect RTT {:.3} ms (median {:.3}), push of {} in {:.2} s, protocol RTT {:.3} ms (smoothed: includes the queue in socket buffers), {:.2}% retransmitted\n",
            gbs(p.goodput_bps),
            p.addr,
            p.rtt_ms,
            p.rtt_median_ms,
            format_bytes(p.bytes),
            p.seconds,
            p.protocol_rtt_ms,
            p.retransmitted * 100.0
        );
    }
    o += "findings:\n";
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in sorted {
        o += &format!("  [{:<4}] {}: {}\n", f.severity.name(), f.check, f.seen);
        if f.severity != Severity::Ok {
            o += &format!("         why: {}\n", f.why);
            if !f.fix.is_empty() {
                o += &format!("         fix: {}\n", f.fix);
            }
        }
    }
    match verdict {
        Some(b) => o += &format!("bottleneck: {}\n", b.text),
        None => o += "bottleneck: nothing could be measured\n",
    }
    let (bad, warn) = (
        findings.iter().filter(|f| f.severity == Severity::Bad).count(),
        findings.iter().filter(|f| f.severity == Severity::Warn).count(),
    );
    o += &format!(
        "mover doctor: {bad} bad, {warn} warnings, {} checks in {seconds:.1} s; nothing was changed\n",
        findings.len()
    );
    o
}

fn to_json(
    findings: &[Finding],
    m: &Measured,
    host: &doctor_host::HostReadings,
    verdict: Option<&Bottleneck>,
    seconds: f64,
) -> String {
    let mut meas = JsonObject::new();
    if let Some(d) = &m.disk {
        meas = meas
            .f64("disk_read_bps", d.read.bps)
            .f64("disk_write_bps", d.write.bps)
            .u64("disk_bytes", d.bytes)
            .str("disk_dir", &d.dir.to_string_lossy())
            .str("disk_read_engine", d.read.engine)
            .bool("disk_read_direct", d.read.direct)
            .f64("disk_read_cached_fraction", d.read_cached_fraction)
            .bool("disk_read_from_page_cache", d.read_cached_fraction > 0.5 || !d.read.direct)
            .str("disk_write_engine", d.write.engine)
            .bool("disk_write_direct", d.write.direct);
    }
    if let Some((c, seal, open)) = m.cipher {
        meas = meas
            .f64("cipher_bps", seal.min(open))
            .str("cipher", c.name())
            .f64("cipher_seal_bps", seal)
            .f64("cipher_open_bps", open);
    }
    if let Some((bps, loss)) = m.udp {
        meas = meas.f64("udp_bps", bps).f64("udp_loss", loss);
    }
    if let Some(p) = &m.peer {
        meas = meas
            .f64("peer_rtt_ms", p.rtt_ms)
            .f64("peer_rtt_median_ms", p.rtt_median_ms)
            .f64("peer_goodput_bps", p.goodput_bps)
            .u64("peer_bytes", p.bytes)
            .f64("peer_seconds", p.seconds)
            .f64("peer_protocol_rtt_ms", p.protocol_rtt_ms)
            .f64("peer_retransmitted", p.retransmitted);
    }
    meas = meas.array(
        "xdp",
        host.xdp.iter().map(|(name, mode)| {
            let features = host.xdp_features.iter().find(|(n, _)| n == name).map_or(0, |(_, f)| *f);
            let o = JsonObject::new()
                .str("interface", name)
                .strs("driver_xdp_features", crate::net::xdp_features::names(features));
            match mode {
                Ok(m) => o.str("mode", m),
                Err(e) => o.str("mode", "none").str("error", e),
            }
        }),
    );
    let mut out = JsonObject::new().array("findings", findings.iter().map(Finding::to_json)).obj("measured", meas);
    out = match verdict {
        Some(b) => out.obj("bottleneck", b.to_json()),
        None => out.obj(
            "bottleneck",
            JsonObject::new().str("stage", "none").f64("bps", 0.0).str("text", "nothing could be measured"),
        ),
    };
    out.f64("seconds", seconds).finish()
}
