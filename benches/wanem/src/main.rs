//! `mover-wanem`: parses the command line, opens both interfaces, prints `ready`, forwards until SIGINT or
//! SIGTERM, then writes the counters. Exit codes: 0 after a signal, 1 on a run-time error, 2 on bad arguments.

use mover_wanem::args::{self, Command, Config, USAGE};
use mover_wanem::forwarder::{now_ns, Forwarder};
use mover_wanem::{afpacket, stats};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(s) => argv.push(s),
            Err(bad) => return usage_error(&format!("argument {bad:?} is not UTF-8")),
        }
    }
    let cfg = match args::parse(argv) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mover-wanem: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("mover-wanem: {e}\n\n{USAGE}");
    ExitCode::from(2)
}

fn run(cfg: &Config) -> std::io::Result<()> {
    // Signals first: a SIGTERM during set-up stays pending and stops the loop at once, rather than killing the
    // process before it writes its counters.
    let stop = stop_signals()?;
    // Exact wake-ups: the default 50 us of timer slack would be added to every sleep.
    // Safety: PR_SET_TIMERSLACK takes an integer argument and touches no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut fwd = Forwarder::open(cfg)?;
    set_realtime(cfg);
    for iface in [&cfg.iface_a, &cfg.iface_b] {
        let addrs = afpacket::addresses_on(iface);
        if !addrs.is_empty() {
            eprintln!(
                "mover-wanem: warning: {iface} has addresses {addrs:?}: this namespace's kernel may answer or route \
                 frames next to the forwarder (remove them; for IPv6: sysctl net.ipv6.conf.{iface}.disable_ipv6=1)"
            );
        }
    }
    let (frames, slot_bytes) = fwd.pool_size();
    eprintln!(
        "mover-wanem: {} <-> {}: delay {} us, jitter {} us, rate {} bit/s{}, queue {} B, loss {}/{}, reorder {}, \
         pool {frames} x {slot_bytes} B",
        cfg.iface_a,
        cfg.iface_b,
        cfg.delay_ns / 1000,
        cfg.jitter_ns / 1000,
        cfg.rate_bits_per_s,
        if cfg.rate_bits_per_s == 0 { " (unlimited)" } else { "" },
        cfg.queue_bytes().unwrap_or(0),
        cfg.loss.value(),
        cfg.reverse_loss.value(),
        cfg.reorder.value(),
    );
    let started_ns = now_ns();
    {
        let mut out = std::io::stdout().lock();
        // A closed stdout is no reason to stop forwarding.
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    let result = fwd.run(stop.as_raw_fd());
    // The counters are written even after an error: they tell what happened up to it.
    let (forward, reverse) = fwd.stats();
    let elapsed_s = (now_ns() - started_ns) as f64 / 1e9;
    if let Some(path) = &cfg.stats_json {
        stats::write_json(path, &stats::to_json(&forward, &reverse, elapsed_s))
            .map_err(|e| std::io::Error::new(e.kind(), format!("--stats-json {}: {e}", path.display())))?;
    }
    eprintln!(
        "mover-wanem: forward {} in, {} out; reverse {} in, {} out ({elapsed_s:.1} s)",
        forward.frames_in, forward.frames_out, reverse.frames_in, reverse.frames_out
    );
    result
}

/// Moves this process to SCHED_FIFO at `--rt-priority`: the loop sleeps between ticks, and under ordinary
/// scheduling a machine busy with other work wakes it milliseconds late (measured: median lateness 0.4-1.8 ms,
/// p99 50-100 ms with the load average at 4 on two cores, against 30 us and 0.3-3 ms at priority 10). It sleeps
/// most of the time, so it takes no more CPU than it needs. Not with `--tick 0`: a busy-polling real-time task
/// would hold a core. A refusal (no CAP_SYS_NICE, a container) is a warning, not an error.
fn set_realtime(cfg: &Config) {
    if cfg.rt_priority == 0 {
        return;
    }
    if cfg.tick_ns == 0 {
        eprintln!("mover-wanem: --tick 0 busy-polls: staying at ordinary priority (ignoring --rt-priority)");
        return;
    }
    let param = libc::sched_param { sched_priority: cfg.rt_priority as libc::c_int };
    // Safety: param is a valid sched_param; pid 0 is this process.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("mover-wanem: warning: SCHED_FIFO priority {}: {e}; running at ordinary priority", cfg.rt_priority);
    }
}

/// Blocks SIGINT and SIGTERM and returns a signalfd that becomes readable when one arrives: the loop polls it
/// next to its sockets, so a stop request is seen without a handler racing the sleep.
fn stop_signals() -> std::io::Result<OwnedFd> {
    // Safety: sigset operations on a local set; sigprocmask on this (single) thread; signalfd returns a new fd.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
