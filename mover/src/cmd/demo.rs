//! `mover demo`: the embedded default job. Generates a data set, starts a server on loopback in this process,
//! pushes the data set to it under the adaptive `fair` policy (no fixed rate, so the goodput is what this host
//! achieves), checks the received tree byte for byte, and prints a short result: goodput, time, verified,
//! the data path in words, which stage limited it (CPU or disk), and the share of this machine's ceiling: the
//! raw UDP rate of loopback at the push's datagram size (`mover bench net`'s self-test, one second, after the
//! push so the two do not compete), the most any protocol on these sockets could reach here.

use super::bench_net::{self, BenchNetArgs};
use crate::connect::ClientAuth;
use crate::json::JsonObject;
use crate::net::xdp_path::NetChoice;
use crate::pipeline::stats::StageReport;
use crate::proto::policy::Policy;
use crate::rate::{format_bytes, format_rate_bps};
use crate::session::{push, run_session, Admission, PushOptions, Report, ServeOptions};
use crate::sim::dataset::{compare_trees, generate_dataset};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `--size`'s default: large enough for the policy to find the host's ceiling, small enough to finish in
/// seconds on a 2-core machine.
pub const DEFAULT_SIZE: &str = "512M";

/// The ceiling of the `fair` policy when no `--rate` is given: above anything a host sends today.
const NO_CEILING_BPS: u64 = 400_000_000_000;

/// What `mover demo` was asked to do.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Total bytes in the generated data set.
    pub size_bytes: u64,
    /// A ceiling for the sending rate, bits per second (`None`: none; the policy finds the host's rate).
    pub rate_bps: Option<u64>,
    /// Path MTU for the push.
    pub mtu: usize,
    /// Where to put the data set and the received copy (a fresh directory is made inside).
    pub workdir: Option<PathBuf>,
    /// Keep the files afterwards.
    pub keep: bool,
    /// How the push seals its datagrams.
    pub cipher: crate::wire::Cipher,
}

/// What the demo did: both ends' reports (the push's, verified against the source tree, and the
/// in-process server's) and how long generating the data set took.
#[derive(Clone, Debug)]
pub struct DemoResult {
    /// The sending side's report.
    pub push: Report,
    /// The receiving side's report (its stages say whether the writer was the limit).
    pub serve: Report,
    /// Seconds spent writing the data set before the push.
    pub generate_seconds: f64,
    /// CPU time of this process (both ends) during the push, divided by its wall time: cores kept busy.
    pub cpu_cores_used: f64,
    /// The path's ceiling measured after the push (`None` if the measurement failed: the demo still reports).
    pub ceiling: Option<Ceiling>,
}

/// The raw UDP ceiling of loopback on this machine: `mover bench net`'s self-test at the push's datagram size,
/// with GSO/GRO as the push uses them, no sealing, no files.
#[derive(Clone, Debug)]
pub struct Ceiling {
    /// Payload bits per second that arrived.
    pub bps: f64,
    /// Datagram payload size measured, bytes.
    pub datagram_bytes: usize,
    /// UDP GSO was on at the sender (then GRO at the receiver too).
    pub gso: bool,
    /// Seconds of sending.
    pub seconds: f64,
}

/// How long the ceiling is measured: long enough for a stable rate, short enough to keep the demo quick.
const CEILING_SECONDS: f64 = 1.0;

/// IPv4 and UDP headers: the UDP payload of a datagram that fills an MTU.
const IP_UDP_HEADERS: usize = 28;

/// Measures the ceiling (see [`Ceiling`]) for datagrams that fill `mtu`.
pub fn measure_ceiling(mtu: usize) -> Result<Ceiling, String> {
    let datagram_bytes = mtu.saturating_sub(IP_UDP_HEADERS).clamp(64, 65_507);
    let args = BenchNetArgs {
        listen: None,
        to: None,
        size: datagram_bytes,
        seconds: CEILING_SECONDS,
        rate: None,
        no_gso: false,
        json: false,
        plot: None,
    };
    let (sent, received) = bench_net::self_test(&args)?;
    let bps = if received.seconds > 0.0 { received.bytes as f64 * 8.0 / received.seconds } else { 0.0 };
    if bps <= 0.0 {
        return Err("no datagram arrived".into());
    }
    Ok(Ceiling { bps, datagram_bytes, gso: sent.gso, seconds: sent.seconds })
}

impl DemoResult {
    /// The push's goodput as a share (0..) of the ceiling, if the ceiling was measured.
    pub fn ceiling_share(&self) -> Option<f64> {
        self.ceiling.as_ref().map(|c| self.push.goodput_bps / c.bps)
    }
}

/// Runs the demo and returns what both ends reported (the received tree was compared with the source).
pub fn run(opts: &DemoOptions) -> Result<DemoResult, String> {
    let base = opts.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("mover-demo-{}", std::process::id()));
    let result = run_in(&dir, opts);
    if !opts.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(dir: &Path, opts: &DemoOptions) -> Result<DemoResult, String> {
    let src = dir.join("src").join("dataset");
    let dst_root = dir.join("dst");
    fs::create_dir_all(&dst_root).map_err(|e| format!("creating {}: {e}", dst_root.display()))?;
    eprintln!("mover demo: generating {} of files in {}", format_bytes(opts.size_bytes), src.display());
    let generating = Instant::now();
    generate_dataset(&src, opts.size_bytes).map_err(|e| format!("generating the data set: {e}"))?;
    let generate_seconds = generating.elapsed().as_secs_f64();

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listening on loopback: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // In-process on 127.0.0.1 only: no authentication on either side (`ServerAuth::Insecure` in
    // `ServeOptions::new`, `ClientAuth::Insecure`), as with --insecure-no-auth; nothing outside this host can
    // reach the listener. One session, run here rather than by the daemon's loop, so that its report comes
    // back (for the receiver's stages) instead of a log line.
    let mut serve_opts = ServeOptions::new(local, dst_root.clone());
    // Loopback: nothing for AF_XDP to bypass.
    serve_opts.net = NetChoice::Udp;
    // Its summary says what the session did: no daemon log lines in between.
    serve_opts.log_sessions = false;
    let server = std::thread::spawn(move || -> Result<Report, String> {
        let (stream, _) = listener.accept().map_err(|e| format!("accepting on loopback: {e}"))?;
        let admission = Admission::new(&serve_opts.admission, serve_opts.limits.max_sessions_per_client);
        run_session(stream, &serve_opts, &admission).map_err(|e| e.to_string())
    });
    let mut push_opts =
        PushOptions::new(vec![src.clone()], format!("mover://{local}/demo"), opts.rate_bps.unwrap_or(NO_CEILING_BPS));
    push_opts.policy = Policy::Fair;
    push_opts.auth = ClientAuth::Insecure;
    push_opts.mtu = Some(opts.mtu);
    push_opts.cipher = opts.cipher;
    push_opts.net = NetChoice::Udp;
    push_opts.connect_timeout = Duration::from_secs(5);
    // A floor, so that a host whose CPU is taken by something else still finishes the demo in seconds (a
    // starved receiver drops datagrams, and `fair` would back off far below what the host can do).
    push_opts.min_rate_bps = DEMO_FLOOR_BPS.min(push_opts.rate_bps);
    let (cpu_before, wall) = (cpu_seconds(), Instant::now());
    let report = push(&push_opts);
    let cpu_cores_used = (cpu_seconds() - cpu_before) / wall.elapsed().as_secs_f64().max(1e-9);
    if let Some(e) = &report.error {
        return Err(e.clone());
    }
    let serve = server.join().map_err(|_| "the server thread panicked".to_string())??;
    let received = dst_root.join("demo").join("dataset");
    compare_trees(&src, &received)?;
    let ceiling = match measure_ceiling(opts.mtu) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("mover demo: could not measure this machine's ceiling (raw UDP over loopback): {e}");
            None
        }
    };
    Ok(DemoResult { push: report, serve, generate_seconds, cpu_cores_used, ceiling })
}

/// The lowest rate the demo's `fair` policy goes down to.
const DEMO_FLOOR_BPS: u64 = 250_000_000;

/// User and system CPU seconds of this process so far (every thread: both ends of the demo).
fn cpu_seconds() -> f64 {
    // Safety: getrusage fills the struct it is given; all-zero is a valid initial value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Safety: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The stage that was busy the largest share of its time, on either side, with that share.
pub fn busiest_stage(r: &DemoResult) -> Option<(&'static str, &'static str, f64)> {
    let share = |s: &StageReport| if s.seconds > 0.0 { s.busy_seconds / s.seconds } else { 0.0 };
    let sides = [("sender", &r.push.stages), ("receiver", &r.serve.stages)];
    sides
        .iter()
        .flat_map(|(side, stages)| stages.iter().map(move |s| (*side, s.name, share(s))))
        .max_by(|a, b| a.2.total_cmp(&b.2))
}

/// What a stage's work is limited by, in words.
fn stage_work(name: &str) -> &'static str {
    match name {
        "reader" => "reading files: the disk",
        "packetizer" => "sealing datagrams: CPU",
        "pacer" => "sending datagrams: CPU in the network stack",
        "nak" => "handling feedback: CPU",
        "recv" => "receiving datagrams: CPU in the network stack",
        "reassembly" => "opening and checking datagrams: CPU",
        "writer" => "writing files: the disk",
        _ => "CPU",
    }
}

/// The limit, in one phrase: the CPU when both ends kept (nearly) every core busy, else the busiest stage
/// and what it waits on, or that nothing here was saturated.
fn limit_line(r: &DemoResult) -> String {
    let cores = crate::pipeline::topology::available_cores().len();
    let used = format!("both ends used {:.1} of {cores} cores", r.cpu_cores_used);
    let busiest = busiest_stage(r);
    match busiest {
        _ if r.cpu_cores_used >= 0.8 * cores as f64 => {
            let stage = busiest.map_or(String::new(), |(side, name, _)| {
                format!(" (busiest stage: the {side}'s {name}, {})", stage_work(name))
            });
            format!("CPU: {used}{stage}; on a real path each end has its own host")
        }
        Some((side, name, share)) if share >= 0.6 => format!(
            "the {side}'s {name} stage ({}) was busy {:.0}% of the time; {used}",
            stage_work(name),
            share * 100.0
        ),
        _ => format!("no stage and no core was saturated ({used}): other work on this host shares them"),
    }
}

/// The goodput as a share of the ceiling, with the ceiling and what limits it, in one phrase.
fn share_line(r: &DemoResult) -> String {
    let (Some(c), Some(share)) = (&r.ceiling, r.ceiling_share()) else {
        return "unknown: this machine's ceiling (raw UDP over loopback) could not be measured".to_string();
    };
    let cores = crate::pipeline::topology::available_cores().len();
    format!(
        "{:.0}% of this machine's ceiling ({} of raw UDP over loopback, {}-byte datagrams, GSO {}, measured for \
         {:.1} s after the push; limited by CPU: sender and receiver share {cores} cores, no sealing or files)",
        share * 100.0,
        format_rate_bps(c.bps),
        c.datagram_bytes,
        if c.gso { "on" } else { "off" },
        c.seconds,
    )
}

/// The demo's result, a few short lines for a person.
pub fn describe(r: &DemoResult) -> String {
    let p = &r.push;
    let retransmitted = 100.0 * p.packets_retransmitted as f64 / p.packets_sent.max(1) as f64;
    let cipher = if p.cipher.is_aead() {
        format!("encrypted and authenticated ({})", p.cipher)
    } else {
        "NOT encrypted or authenticated (--cipher none)".to_string()
    };
    let ceiling = if p.rate_bps >= NO_CEILING_BPS {
        "fair policy, no rate cap: what this host achieves".to_string()
    } else {
        format!("fair policy, capped at --rate {}", format_rate_bps(p.rate_bps as f64))
    };
    format!(
        "mover demo: pushed {} in {} files to a server in this process, over loopback\n  \
         goodput:  {} ({ceiling})\n  \
         share:    {}\n  \
         time:     {:.2} s from connecting to the verified commit (generating the files took {:.2} s)\n  \
         verified: yes: every file's hash matched at the receiver, and the copy equals the source byte for byte\n  \
         data:     {cipher}; UDP sockets (loopback has nothing for AF_XDP to bypass); {:.1}% of packets \
         retransmitted\n  \
         limit:    {}",
        format_bytes(p.bytes),
        p.files,
        format_rate_bps(p.goodput_bps),
        share_line(r),
        p.seconds,
        r.generate_seconds,
        retransmitted,
        limit_line(r),
    )
}

/// `--json`: the push's report (its keys at the top level, as scripts read `goodput_bps` and `verified`)
/// followed by the demo's own: `generate_seconds`, `cpu_cores_used`, `cores`, `busiest_stage` {`side`, `name`, `busy_share`},
/// and, when the ceiling was measured, `ceiling_bps` (raw UDP over loopback), `ceiling_datagram_bytes` and
/// `ceiling_share` (goodput / ceiling, 0..).
pub fn to_json(r: &DemoResult) -> String {
    let mut extra = JsonObject::new()
        .f64("generate_seconds", r.generate_seconds)
        .f64("cpu_cores_used", r.cpu_cores_used)
        .u64("cores", crate::pipeline::topology::available_cores().len() as u64);
    if let Some((side, name, share)) = busiest_stage(r) {
        extra =
            extra.obj("busiest_stage", JsonObject::new().str("side", side).str("name", name).f64("busy_share", share));
    }
    if let (Some(c), Some(share)) = (&r.ceiling, r.ceiling_share()) {
        extra = extra
            .f64("ceiling_bps", c.bps)
            .u64("ceiling_datagram_bytes", c.datagram_bytes as u64)
            .f64("ceiling_share", share);
    }
    // Two objects made into one: the push's without its `}`, the demo's without its `{`.
    let (push, extra) = (r.push.to_json(), extra.finish());
    format!("{},{}", &push[..push.len() - 1], &extra[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(goodput_bps: f64, ceiling: Option<Ceiling>) -> DemoResult {
        let mut push = Report { goodput_bps, ..Report::default() };
        push.packets_sent = 1000;
        DemoResult { push, serve: Report::default(), generate_seconds: 0.1, cpu_cores_used: 1.0, ceiling }
    }

    fn ceiling(bps: f64) -> Ceiling {
        Ceiling { bps, datagram_bytes: 8972, gso: true, seconds: 1.0 }
    }

    #[test]
    fn the_share_is_the_goodput_over_the_ceiling_in_words_and_in_json() {
        let r = result(2e9, Some(ceiling(8e9)));
        assert_eq!(r.ceiling_share(), Some(0.25));
        let line = share_line(&r);
        assert!(line.starts_with("25% of this machine's ceiling (8"), "{line}");
        assert!(line.contains("8972-byte datagrams, GSO on") && line.contains("limited by CPU"), "{line}");
        assert!(describe(&r).contains("\n  share:    25% of this machine's ceiling"), "{}", describe(&r));
        let json = to_json(&r);
        assert!(json.contains(r#""ceiling_bps":8000000000"#), "{json}");
        assert!(
            json.contains(r#""ceiling_datagram_bytes":8972"#) && json.contains(r#""ceiling_share":0.25"#),
            "{json}"
        );
    }

    #[test]
    fn a_ceiling_that_could_not_be_measured_is_said_and_left_out_of_the_json() {
        let r = result(2e9, None);
        assert_eq!(r.ceiling_share(), None);
        assert!(share_line(&r).starts_with("unknown:"), "{}", share_line(&r));
        assert!(!to_json(&r).contains("ceiling_"), "{}", to_json(&r));
    }
}
