//! `mover bench e2e`: one push end to end, disk -> network -> disk, timed until the receiver has verified
//! every file. On loopback (the default) this process also runs the receiving daemon on 127.0.0.1 with a
//! temporary root, as `mover demo` does; with `--to mover://HOST[:PORT]/DIR` it pushes to a running
//! `mover serve`.
//!
//! Beside the push's own summary it reports what an operator compares hosts by: goodput, retransmitted %,
//! the CPU time of this process per GiB moved (getrusage: user + system; on loopback both ends are this
//! process), percentiles of the goodput of each 100 ms interval, and the stage latencies the pipeline
//! records. `--plot FILE` draws the run (see [`super::bench_plot`]).

use super::bench_plot::{check_path, write_svg, PlotSpec};
use super::bench_sampler::{active, intervals, RatePercentiles, Reading, Sampler, INTERVAL};
use crate::connect::ClientAuth;
use crate::exit::{ExitClass, Failed};
use crate::json::JsonObject;
use crate::net::xdp_path::NetChoice;
use crate::pipeline::live::Live;
use crate::pipeline::stats::StageReport;
use crate::proto::policy::Policy;
use crate::rate::{format_bytes, format_rate_bps, parse_rate_bps, parse_size_bytes};
use crate::session::{push, serve_on, PushOptions, Report};
use crate::sim::dataset::{compare_trees, generate_dataset};
use crate::wire::Cipher;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `--rate` under `--policy fixed` when none is given (as `push`).
const DEFAULT_FIXED_RATE_BPS: u64 = 1_000_000_000;
/// The ceiling of `fair` and `low` when no `--rate` is given (as `push`): above anything a host sends today.
const NO_CEILING_BPS: u64 = 400_000_000_000;
/// Bytes in a GiB, for the CPU time per GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// Arguments of `mover bench e2e`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchE2eArgs {
    /// Push to this running daemon (mover://HOST[:PORT]/DIR) instead of one started in this process on
    /// 127.0.0.1; what is pushed stays in DIR there.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Size of the generated data set (one large file and 200 small ones; binary suffixes: 64M, 1G).
    #[arg(long, default_value = "1G", value_parser = parse_size_bytes, conflicts_with = "file")]
    pub size: u64,
    /// Push this existing file or directory instead of a generated data set.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Directory for the generated data set and, on loopback, the receiving root (a fresh directory inside
    /// it, removed at the end; default: the system temp directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Sending rate in bits/s with SI suffix (500M, 2G): the rate under --policy fixed (default 1G), a
    /// ceiling under fair and low (default: none).
    #[arg(long, value_parser = parse_rate_bps)]
    pub rate: Option<u64>,
    /// Rate policy: fair, low or fixed (as `push`).
    #[arg(long, default_value = "fair")]
    pub policy: Policy,
    /// Path MTU in bytes; datagrams are sized to fit it.
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// How datagrams are sealed: aes256gcm, chacha20poly1305 or none.
    #[arg(long, default_value = "aes256gcm")]
    pub cipher: Cipher,
    /// Data path: auto, xdp or udp (as `push`).
    #[arg(long, default_value = "auto")]
    pub net: NetChoice,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    pub json: bool,
    /// Draw rate and retransmissions over time into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// How to authenticate to the --to daemon (as `push`).
    #[command(flatten)]
    pub auth: super::args::ClientAuthArgs,
}

/// CPU time this process used, from getrusage(RUSAGE_SELF).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    /// User time, seconds.
    pub user: f64,
    /// System time, seconds.
    pub sys: f64,
}

impl CpuTime {
    /// This process's CPU time so far (all threads).
    pub fn now() -> CpuTime {
        // SAFETY: getrusage fills the zeroed struct it is given and reads nothing else.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage; RUSAGE_SELF cannot fail.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        CpuTime { user: secs(ru.ru_utime), sys: secs(ru.ru_stime) }
    }

    /// The time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime { user: (self.user - earlier.user).max(0.0), sys: (self.sys - earlier.sys).max(0.0) }
    }
}

/// What one `bench e2e` run measured.
#[derive(Debug)]
pub struct E2eResult {
    /// "loopback" or "peer".
    pub mode: &'static str,
    /// The push's own report (verified, goodput, packets, stages).
    pub report: Report,
    /// CPU time of this process during the push.
    pub cpu: CpuTime,
    /// Goodput percentiles over the 100 ms intervals of the transfer.
    pub interval_goodput: RatePercentiles,
    /// Intervals sampled over the whole push (set-up and verification included: the plot's points).
    pub intervals: usize,
}

impl E2eResult {
    /// Retransmitted packets as a percentage of packets sent.
    pub fn retransmitted_percent(&self) -> f64 {
        let r = &self.report;
        if r.packets_sent == 0 {
            0.0
        } else {
            r.packets_retransmitted as f64 * 100.0 / r.packets_sent as f64
        }
    }

    /// CPU seconds per GiB moved.
    pub fn cpu_seconds_per_gib(&self) -> f64 {
        if self.report.bytes == 0 {
            0.0
        } else {
            (self.cpu.user + self.cpu.sys) * GIB / self.report.bytes as f64
        }
    }

    /// The `--json` object.
    pub fn to_json(&self, args: &BenchE2eArgs) -> String {
        let r = &self.report;
        JsonObject::new()
            .str("mode", self.mode)
            .u64("files", r.files)
            .u64("bytes", r.bytes)
            .f64("seconds", r.seconds)
            .f64("goodput_bps", r.goodput_bps)
            .bool("verified", r.verified)
            .u64("packets_sent", r.packets_sent)
            .u64("packets_retransmitted", r.packets_retransmitted)
            .f64("retransmitted_percent", self.retransmitted_percent())
            .f64("cpu_user_seconds", self.cpu.user)
            .f64("cpu_sys_seconds", self.cpu.sys)
            .f64("cpu_seconds_per_gib", self.cpu_seconds_per_gib())
            .str("cpu_scope", if self.mode == "loopback" { "sender and receiver" } else { "sender" })
            .u64("interval_ms", INTERVAL.as_millis() as u64)
            .u64("intervals", self.intervals as u64)
            .obj("interval_goodput_bps", self.interval_goodput.to_json())
            .obj("stage_latency_ns", stage_latencies(&r.stages))
            .str("policy", args.policy.name())
            .u64("rate_bps", r.rate_bps)
            .u64("max_rate_bps", r.max_rate_bps)
            .u64("mtu", args.mtu as u64)
            .str("cipher", r.cipher.name())
            .str("net", r.net)
            .str("disk", r.disk)
            .raw("push", &r.to_json())
            .finish()
    }

    /// The summary line on stderr.
    pub fn describe(&self) -> String {
        let r = &self.report;
        let p = &self.interval_goodput;
        format!(
            "bench e2e: {} in {} files over {} in {:.2} s: goodput {}, {:.3}% retransmitted; per 100 ms: p50 {}, \
             p90 {}, p99 {}, min {}, max {}; CPU {:.2} s (user {:.2} + sys {:.2}) = {:.2} s/GiB ({}); {}, {}, \
             {} disk; verified",
            format_bytes(r.bytes),
            r.files,
            if self.mode == "loopback" { "loopback" } else { "the network" },
            r.seconds,
            format_rate_bps(r.goodput_bps),
            self.retransmitted_percent(),
            format_rate_bps(p.p50 as f64),
            format_rate_bps(p.p90 as f64),
            format_rate_bps(p.p99 as f64),
            format_rate_bps(p.min as f64),
            format_rate_bps(p.max as f64),
            self.cpu.user + self.cpu.sys,
            self.cpu.user,
            self.cpu.sys,
            self.cpu_seconds_per_gib(),
            if self.mode == "loopback" { "both ends in this process" } else { "this sender" },
            r.net,
            r.cipher.name(),
            r.disk,
        )
    }
}

/// Every latency the stages recorded, as `"stage.latency": {count, p50, p99, p999, max}` in nanoseconds.
fn stage_latencies(stages: &[StageReport]) -> JsonObject {
    let mut j = JsonObject::new();
    for s in stages {
        for l in s.latencies.iter().filter(|l| l.count > 0) {
            j = j.obj(
                &format!("{}.{}", s.name, l.name),
                JsonObject::new()
                    .u64("count", l.count)
                    .u64("p50", l.p50_ns)
                    .u64("p99", l.p99_ns)
                    .u64("p999", l.p999_ns)
                    .u64("max", l.max_ns),
            );
        }
    }
    j
}

fn usage(message: String) -> Failed {
    Failed { class: ExitClass::Usage, message }
}

fn failure(message: String) -> Failed {
    Failed { class: ExitClass::Failure, message }
}

/// Runs `mover bench e2e` and prints its results.
pub fn run(args: &BenchE2eArgs) -> Result<(), Failed> {
    if let Some(p) = &args.plot {
        check_path(p).map_err(usage)?;
    }
    // The destination and the credentials are checked before a data set is generated for them.
    let peer = match &args.to {
        Some(to) if !to.starts_with("mover://") => {
            return Err(usage(format!(
                "--to takes the address of a running `mover serve`, mover://HOST[:PORT]/DIR, not '{to}' (without \
                 --to, bench e2e runs on loopback)"
            )));
        }
        Some(to) => {
            let auth = args.auth.resolve().map_err(|e| Failed { class: e.exit_class(), message: e.to_string() })?;
            Some((to.clone(), auth))
        }
        None => None,
    };
    // Canonical, so that `--file .` or `--file dir/` lands under its real name.
    let file = match &args.file {
        Some(f) => Some(fs::canonicalize(f).map_err(|e| Failed {
            class: ExitClass::SourceNotFound,
            message: format!("--file {}: {e}: give an existing file or directory", f.display()),
        })?),
        None => None,
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = base.join(format!("mover-bench-e2e-{}", std::process::id()));
    if let Some(f) = &file {
        // The receiving root and a generated set must not become part of what is pushed.
        let base_abs = fs::canonicalize(&base).or_else(|_| std::path::absolute(&base)).unwrap_or(base.clone());
        if base_abs.starts_with(f) {
            return Err(usage(format!(
                "--dir {} lies inside --file {}: give a --dir outside what is pushed",
                base.display(),
                f.display()
            )));
        }
    }
    let result = run_in(&work, args, file, peer);
    let _ = fs::remove_dir_all(&work);
    let result = result?;
    eprintln!("{}", result.describe());
    if args.json {
        println!("{}", result.to_json(args));
    }
    Ok(())
}

/// Generates the data set (unless `--file`) and pushes it to `peer` (its URL and credentials) or, without
/// one, to a daemon started here on loopback.
fn run_in(
    work: &Path,
    args: &BenchE2eArgs,
    file: Option<PathBuf>,
    peer: Option<(String, ClientAuth)>,
) -> Result<E2eResult, Failed> {
    fs::create_dir_all(work).map_err(|e| usage(format!("--dir: creating {}: {e}", work.display())))?;
    let source = match file {
        Some(f) => f,
        None => {
            let src = work.join("src").join("dataset");
            eprintln!("bench e2e: generating {} in {}", format_bytes(args.size), src.display());
            generate_dataset(&src, args.size)
                .map_err(|e| failure(format!("generating the data set in {}: {e}", src.display())))?;
            src
        }
    };
    let rate_bps = match (args.policy, args.rate) {
        (_, Some(r)) => r,
        (Policy::Fixed, None) => DEFAULT_FIXED_RATE_BPS,
        (_, None) => NO_CEILING_BPS,
    };
    let (url, auth, received, mode) = match peer {
        Some((url, auth)) => (url, auth, None, "peer"),
        None => {
            let root = work.join("dst");
            fs::create_dir_all(&root).map_err(|e| failure(format!("creating {}: {e}", root.display())))?;
            let listener =
                TcpListener::bind("127.0.0.1:0").map_err(|e| failure(format!("listening on loopback: {e}")))?;
            let port = listener.local_addr().map_err(|e| failure(e.to_string()))?.port();
            // In-process on 127.0.0.1 only, as `mover demo`: no authentication on either side; nothing outside
            // this host can reach the listener. One session, then the thread ends.
            let serve_root = root.clone();
            std::thread::spawn(move || serve_on(listener, &serve_root, true, false));
            let name = source.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("dataset"));
            (
                format!("mover://127.0.0.1:{port}/e2e"),
                ClientAuth::Insecure,
                Some(root.join("e2e").join(name)),
                "loopback",
            )
        }
    };
    let mut opts = PushOptions::new(vec![source.clone()], url, rate_bps);
    opts.auth = auth;
    opts.policy = args.policy;
    opts.mtu = Some(args.mtu);
    opts.cipher = args.cipher;
    opts.net = args.net;
    opts.connect_timeout = Duration::from_secs(10);
    opts.live = Live::new();

    let live = Arc::clone(&opts.live);
    let sampler = Sampler::start(move || {
        let s = live.snapshot();
        Reading {
            bytes: s.bytes_done,
            other_bytes: s.payload_bytes_sent,
            events: s.packets_retransmitted,
            target_bps: s.rate_bps,
        }
    })
    .map_err(|e| failure(format!("starting the sampler thread: {e}")))?;
    let cpu_before = CpuTime::now();
    let report = push(&opts);
    let cpu = CpuTime::now().since(cpu_before);
    let samples = sampler.finish();
    if let Some(e) = &report.error {
        return Err(Failed { class: report.exit_class, message: e.clone() });
    }
    if let Some(received) = &received {
        // The push verified whole-file hashes; this also proves the tree (names, sizes, modes) arrived.
        compare_trees(&source, received).map_err(failure)?;
    }
    let all = intervals(&samples);
    let result =
        E2eResult { mode, interval_goodput: RatePercentiles::of(active(&all)), intervals: all.len(), cpu, report };
    if let Some(path) = &args.plot {
        let spec = PlotSpec {
            title: plot_title(args, &result),
            rate_name: "goodput (acknowledged)",
            other_name: Some("sent (retransmissions included)"),
            target_name: Some("policy rate"),
            events_name: Some("retransmitted packets"),
        };
        write_svg(path, &spec, &all).map_err(failure)?;
        eprintln!("bench e2e: plot written to {}", path.display());
    }
    Ok(result)
}

fn plot_title(args: &BenchE2eArgs, r: &E2eResult) -> String {
    let what = match &args.file {
        Some(f) => format!("--file {}", f.display()),
        None => format!("--size {}", format_bytes(args.size)),
    };
    let rate = match args.rate {
        Some(r) => format!(" --rate {}", format_rate_bps(r as f64)),
        None => String::new(),
    };
    format!(
        "mover bench e2e ({}) {what} --policy {}{rate} --mtu {} --cipher {} --net {}: {} goodput",
        r.mode,
        args.policy.name(),
        args.mtu,
        args.cipher.name(),
        r.report.net,
        format_rate_bps(r.report.goodput_bps),
    )
}
