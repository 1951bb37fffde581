//! One progress view for a whole job (decision 0038), from the [`Live`] counters of each transfer x
//! destination, read ten times a second by a thread of its own as push's display reads its one
//! (`cmd::progress`):
//! - on a terminal (`--progress auto`/`bar`): a bar of the job's bytes and transfers, and a line per
//!   running transfer (indicatif's `MultiProgress`);
//! - `--progress json`: NDJSON on stderr, each object with `event`, `name` and `to`: `start` and `end`
//!   (with `status`, `attempts` and the push's `files`, `bytes`, `seconds`, `error`) per transfer, `retry`
//!   before each retry, and `progress` once a second per running transfer (push's event keys:
//!   `cmd::progress::event`);
//! - nothing with `-q` or `--progress none`, or off a terminal with `auto`.

use crate::cmd::progress::event::{running_phase, End, Reading};
use crate::cmd::progress::meter::{eta_seconds, Meter};
use crate::cmd::progress::{later, ProgressArgs, Show, BAR_RATE_WINDOW, JSON_INTERVAL, TICK};
use crate::exit::Failed;
use crate::json::JsonObject;
use crate::pipeline::live::{Live, Phase};
use crate::rate::{format_bytes, format_rate_bps};
use crate::session::Report;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where one transfer x destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Ended { ok: bool },
}

/// One transfer x destination as the display sees it.
struct Slot {
    name: String,
    to: String,
    live: Arc<Live>,
    state: State,
    started: Instant,
    meter: Meter,
    bar: Option<ProgressBar>,
}

/// The job's display; [`JobProgress::finish`] ends it.
pub struct JobProgress {
    show: Show,
    summary: bool,
    slots: Arc<Mutex<Vec<Slot>>>,
    multi: Option<MultiProgress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl JobProgress {
    /// Starts the display of `slots` (`(name, to, live)` of each transfer x destination, in order).
    pub fn start(args: &ProgressArgs, slots: Vec<(String, String, Arc<Live>)>) -> Result<JobProgress, Failed> {
        let show = args.show(std::io::stderr().is_terminal())?;
        let summary = !args.quiet && show != Show::Json;
        let now = Instant::now();
        let window = if matches!(show, Show::Bar { .. }) { BAR_RATE_WINDOW } else { JSON_INTERVAL };
        let slots: Vec<Slot> = slots
            .into_iter()
            .map(|(name, to, live)| Slot {
                name,
                to,
                live,
                state: State::Waiting,
                started: now,
                meter: Meter::new(window),
                bar: None,
            })
            .collect();
        let slots = Arc::new(Mutex::new(slots));
        let stop = Arc::new(AtomicBool::new(false));
        let multi = match show {
            Show::Bar { forced } => Some(MultiProgress::with_draw_target(draw_target(forced))),
            _ => None,
        };
        let thread = match show {
            Show::Nothing => None,
            _ => {
                let (slots, stop, multi) = (slots.clone(), stop.clone(), multi.clone());
                let thread = std::thread::Builder::new()
                    .name("job-progress".into())
                    .spawn(move || display(&slots, &stop, multi.as_ref(), now))
                    .map_err(|e| Failed {
                        class: crate::exit::ExitClass::Failure,
                        message: format!("starting the progress display: {e}"),
                    })?;
                Some(thread)
            }
        };
        Ok(JobProgress { show, summary, slots, multi, stop, thread, started: now })
    }

    /// Whether the summary table is printed on stderr: not with `-q`, nor with `--progress json`, whose
    /// `end` events say the same to a script.
    pub fn prints_summary(&self) -> bool {
        self.summary
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Slot `i` starts its first attempt.
    pub fn started(&self, i: usize) {
        let mut slots = self.lock();
        let s = &mut slots[i];
        s.state = State::Running;
        s.started = Instant::now();
        if self.show == Show::Json {
            let j = event("start", s).f64("elapsed_seconds", seconds(self.started.elapsed())).finish();
            eprintln!("{j}");
        }
    }

    /// Slot `i` failed in a way a retry may fix: says so (the line push prints, or a `retry` event).
    pub fn retrying(&self, i: usize, retry: u32, retries: u32, error: &str, wait: Duration) {
        let slots = self.lock();
        let s = &slots[i];
        if self.show == Show::Json {
            let j = event("retry", s).u64("retry", u64::from(retry)).u64("retries", u64::from(retries));
            eprintln!("{}", j.str("error", error).f64("wait_seconds", wait.as_secs_f64()).finish());
            return;
        }
        let line =
            format!("mover job: {} -> {}: {error}; retry {retry} of {retries} in {} s", s.name, s.to, wait.as_secs());
        match &self.multi {
            Some(m) => m.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Slot `i` ended with `report` after `attempts` sessions.
    pub fn ended(&self, i: usize, report: &Report, attempts: u32) {
        let mut slots = self.lock();
        let s = &mut slots[i];
        s.state = State::Ended { ok: report.error.is_none() };
        if self.show == Show::Json {
            let status = if report.error.is_none() { "ok" } else { "failed" };
            let mut j = event("end", s)
                .str("status", status)
                .u64("attempts", u64::from(attempts))
                .u64("files", report.files)
                .u64("bytes", report.bytes)
                .f64("seconds", report.seconds);
            if let Some(e) = &report.error {
                j = j.str("error", e);
            }
            eprintln!("{}", j.finish());
        }
    }

    /// Stops the display (the bars are left as drawn last), so that the summary comes after it.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if matches!(self.show, Show::Bar { forced: true }) && !std::io::stderr().is_terminal() {
            // On a terminal the bar's line is padded to the edge; a file needs the newline.
            eprintln!();
        }
    }
}

fn draw_target(forced: bool) -> ProgressDrawTarget {
    if forced && !std::io::stderr().is_terminal() {
        // indicatif hides bars whose stderr is not a terminal; console's stderr as a `TermLike` is drawn.
        ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10)
    } else {
        ProgressDrawTarget::stderr_with_hz(10)
    }
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// An event's first keys: what it is and which transfer x destination.
fn event(kind: &str, s: &Slot) -> JsonObject {
    JsonObject::new().str("event", kind).str("name", &s.name).str("to", &s.to)
}

/// The display thread: every tick, reads each running slot's counters and draws, until told to stop.
fn display(slots: &Mutex<Vec<Slot>>, stop: &AtomicBool, multi: Option<&MultiProgress>, started: Instant) {
    let total = multi.map(|m| {
        let bar = m.add(ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {msg}").expect("a valid template").progress_chars("=> "),
        );
        bar
    });
    let mut next_tick = started + TICK;
    let mut next_event = started + JSON_INTERVAL;
    loop {
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
        let stopping = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
        let json_due = multi.is_none() && now >= next_event;
        let (mut bytes, mut bytes_total, mut ended, mut failed) = (0u64, 0u64, 0usize, 0usize);
        for s in slots.iter_mut() {
            let snap = s.live.snapshot();
            bytes += snap.bytes_done;
            bytes_total += snap.bytes_total;
            match s.state {
                State::Ended { ok } => {
                    ended += 1;
                    failed += usize::from(!ok);
                    if let Some(b) = s.bar.take() {
                        b.finish_and_clear();
                        if let Some(m) = multi {
                            m.remove(&b);
                        }
                    }
                    continue;
                }
                State::Waiting => continue,
                State::Running => {}
            }
            let elapsed = now.duration_since(s.started);
            let flows = matches!(snap.phase, Phase::Transferring | Phase::Done);
            s.meter.observe(elapsed, snap.bytes_done, flows);
            let rate_bps = s.meter.rate_bps();
            let reading = Reading {
                snap,
                phase: running_phase(snap.phase),
                elapsed,
                rate_bps,
                eta_seconds: eta_seconds(snap.bytes_done, snap.bytes_total, rate_bps),
                end: End::Sending,
                error: None,
            };
            match multi {
                Some(m) => {
                    let bar = s.bar.get_or_insert_with(|| {
                        let b = m.add(ProgressBar::new(1));
                        b.set_style(ProgressStyle::with_template("  {msg}").expect("a valid template"));
                        b
                    });
                    let line = match snap.phase {
                        Phase::Transferring | Phase::Done => {
                            let rate = rate_bps.map_or_else(|| "--".into(), format_rate_bps);
                            format!("{}, {rate}", reading.bar_lines()[0].trim_start())
                        }
                        Phase::Failed => "interrupted; retrying".into(),
                        Phase::Starting => reading.starting_text(),
                    };
                    bar.set_message(format!("{} -> {}: {line}", s.name, s.to));
                }
                None if json_due && !stopping => {
                    eprintln!("{}", event("progress", s).fields(&reading.to_json()).finish());
                }
                None => {}
            }
        }
        if let Some(t) = &total {
            let (len, pos) = if bytes_total == 0 { (1, 0) } else { (bytes_total, bytes.min(bytes_total)) };
            t.set_length(len);
            t.set_position(pos);
            let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
            t.set_message(format!(
                "{} of {}, {ended} of {} transfers done{failed}",
                format_bytes(bytes),
                format_bytes(bytes_total),
                slots.len()
            ));
        }
        drop(slots);
        if json_due {
            next_event = later(next_event, JSON_INTERVAL, now);
        }
        if stopping {
            if let Some(t) = total {
                t.finish();
            }
            return;
        }
        next_tick = later(next_tick, TICK, now);
    }
}
