//! Progress of `push` and `pull` on stderr while the session runs: a bar on a terminal (indicatif), one
//! JSON event a second for scripts and GUIs (`--progress json`), or nothing (`--quiet`, `--progress
//! none`, or stderr not a terminal).
//!
//! A thread of its own reads [`Live`], the counters the session's protocol stage publishes every 50 ms, ten
//! times a second: relaxed loads of a few atomics, so the display never slows the transfer. Retries share
//! the same `Live`, so one display covers every attempt. The final event or frame is drawn when the command knows
//! how the transfer ended ([`Progress::end`]), before the summary line.

mod bar;
pub mod event;
pub mod meter;

use crate::exit::{ExitClass, Failed};
use crate::pipeline::live::{Live, Phase};
use bar::Bar;
use event::{running_phase, End, Reading};
use meter::{eta_seconds, Meter};
use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the display reads the counters (and the bar redraws, at most).
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// The bar's rate covers this much time: 100 ms frames alone would flicker.
pub(crate) const BAR_RATE_WINDOW: Duration = Duration::from_secs(2);
/// One JSON event this often; its rate covers the interval since the previous one.
pub(crate) const JSON_INTERVAL: Duration = Duration::from_secs(1);

/// What `--progress` shows.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, else nothing.
    #[default]
    Auto,
    /// The bar, even when stderr is not a terminal.
    Bar,
    /// One JSON object a second on stderr, and a final one (phase done or failed).
    Json,
    /// Nothing.
    None,
}

/// The progress flags of `push` and `pull`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProgressArgs {
    /// Print nothing on success: no progress bar and no summary line (errors still print; --json, --stats
    /// and --progress json still print what they ask for).
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress on stderr while the transfer runs.
    /// `json`: one object a second (bytes, files, rate_bps, eta_seconds, retransmitted, ...) and a final one
    /// (phase done or failed), instead of the summary line.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub progress: ProgressMode,
}

/// What the display draws, from the flags and whether stderr is a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Show {
    /// No display.
    Nothing,
    /// A bar; `forced` draws it even when stderr is not a terminal.
    Bar {
        /// `--progress bar`.
        forced: bool,
    },
    /// One JSON event a second.
    Json,
}

impl ProgressArgs {
    /// What to draw. `--quiet` silences the bar (a contradicting `--progress bar` is refused); JSON events
    /// are machine output a script asked for, so `--quiet --progress json` keeps them.
    pub(crate) fn show(&self, stderr_is_terminal: bool) -> Result<Show, Failed> {
        Ok(match (self.progress, self.quiet) {
            (ProgressMode::Bar, true) => {
                return Err(Failed {
                    class: ExitClass::Usage,
                    message: "--quiet silences the bar that --progress bar asks for: drop one of them".into(),
                })
            }
            (ProgressMode::Json, _) => Show::Json,
            (ProgressMode::Bar, false) => Show::Bar { forced: true },
            (ProgressMode::Auto, false) if stderr_is_terminal => Show::Bar { forced: false },
            _ => Show::Nothing,
        })
    }

    /// Starts the display of `live` (a thread, unless nothing is shown), for the `end` this process runs.
    pub fn start(&self, live: Arc<Live>, end: End) -> Result<Progress, Failed> {
        let show = self.show(std::io::stderr().is_terminal())?;
        // With JSON events stderr is for machines: the final event stands for the summary line.
        let summary = !self.quiet && show != Show::Json;
        if show == Show::Nothing {
            return Ok(Progress { tx: None, thread: None, summary });
        }
        let (tx, rx) = mpsc::channel();
        let thread =
            std::thread::Builder::new().name("progress".into()).spawn(move || display(&live, end, show, &rx)).map_err(
                |e| Failed { class: ExitClass::Failure, message: format!("starting the progress display: {e}") },
            )?;
        Ok(Progress { tx: Some(tx), thread: Some(thread), summary })
    }
}

/// What the command tells the display thread.
enum Msg {
    /// Clear the bar, then answer: a line is about to be printed.
    Pause(mpsc::SyncSender<()>),
    /// Draw again.
    Resume,
    /// The transfer ended: draw the final event or frame and stop.
    End(Result<(), String>),
}

/// A running display; [`Progress::end`] finishes it.
pub struct Progress {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    summary: bool,
}

impl Progress {
    /// Whether the human summary line is printed on stderr: not with `--quiet`, nor with `--progress
    /// json`, whose final event says the same to a script.
    pub fn prints_summary(&self) -> bool {
        self.summary
    }

    /// Clears the bar from the screen and returns once it is gone, so that a line printed next (a retry's)
    /// is not drawn over.
    pub fn pause(&self) {
        if let Some(tx) = &self.tx {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            if tx.send(Msg::Pause(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        }
    }

    /// Draws again after [`Progress::pause`].
    pub fn resume(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Resume);
        }
    }

    /// Draws the final event or frame (`outcome`: `Err` with the error when the transfer failed) and waits
    /// for the display to stop, so that what the command prints next comes after it.
    pub fn end(mut self, outcome: Result<(), &str>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::End(outcome.map_err(str::to_owned)));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The display thread: reads `live` every tick and draws, until the command says how the transfer ended.
fn display(live: &Live, end: End, show: Show, rx: &mpsc::Receiver<Msg>) {
    let started = Instant::now();
    let mut bar = match show {
        Show::Bar { forced } => Some(Bar::new(forced)),
        _ => None,
    };
    // Readings every tick in both modes, so that the meter sees when data starts to flow.
    let mut meter = Meter::new(if bar.is_some() { BAR_RATE_WINDOW } else { JSON_INTERVAL });
    let mut next_tick = started + TICK;
    let mut next_event = started + JSON_INTERVAL;
    let mut paused = false;
    loop {
        let msg = rx.recv_timeout(next_tick.saturating_duration_since(Instant::now()));
        let outcome = match msg {
            Ok(Msg::Pause(ack)) => {
                if let Some(b) = bar.as_mut() {
                    b.pause();
                }
                paused = true;
                let _ = ack.send(());
                continue;
            }
            Ok(Msg::Resume) => {
                paused = false;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => None,
            Ok(Msg::End(outcome)) => Some(outcome),
            // The command went away without saying how it ended: leave the screen as it is.
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let snap = live.snapshot();
        let now = Instant::now();
        let elapsed = now.duration_since(started);
        let flows = matches!(snap.phase, Phase::Transferring | Phase::Done);
        meter.observe(elapsed, snap.bytes_done, flows);
        let rate_bps = meter.rate_bps();
        let phase = match &outcome {
            None => running_phase(snap.phase),
            Some(Ok(())) => "done",
            Some(Err(_)) => "failed",
        };
        let eta = match &outcome {
            Some(Err(_)) => None,
            _ => eta_seconds(snap.bytes_done, snap.bytes_total, rate_bps),
        };
        let error = outcome.as_ref().and_then(|o| o.as_ref().err()).map(String::as_str);
        let reading = Reading { snap, phase, elapsed, rate_bps, eta_seconds: eta, end, error };
        match (&mut bar, &outcome) {
            (Some(b), Some(o)) => b.finish(&reading, o.is_ok()),
            (Some(b), None) if !paused => b.show(&reading),
            (Some(_), None) => {}
            // Lines of JSON need no pause: each is printed whole.
            (None, Some(_)) => eprintln!("{}", reading.to_json()),
            (None, None) if now >= next_event => {
                eprintln!("{}", reading.to_json());
                next_event = later(next_event, JSON_INTERVAL, now);
            }
            (None, None) => {}
        }
        if outcome.is_some() {
            return;
        }
        next_tick = later(next_tick, TICK, now);
    }
}

/// The next time on a fixed schedule (one event a second, not a second after the last one drawn),
/// skipping what was missed while the machine was busy.
pub(crate) fn later(at: Instant, every: Duration, now: Instant) -> Instant {
    let next = at + every;
    if next <= now {
        now + every
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(quiet: bool, progress: ProgressMode) -> ProgressArgs {
        ProgressArgs { quiet, progress }
    }

    #[test]
    fn what_each_flag_combination_shows() {
        use ProgressMode::*;
        let show = |q, m, tty| args(q, m).show(tty).map_err(|e| e.class);
        assert_eq!(show(false, Auto, true), Ok(Show::Bar { forced: false }));
        assert_eq!(show(false, Auto, false), Ok(Show::Nothing));
        assert_eq!(show(false, Bar, false), Ok(Show::Bar { forced: true }));
        assert_eq!(show(false, Json, true), Ok(Show::Json));
        assert_eq!(show(false, None, true), Ok(Show::Nothing));
        assert_eq!(show(true, Auto, true), Ok(Show::Nothing));
        assert_eq!(show(true, Json, false), Ok(Show::Json));
        assert_eq!(show(true, None, true), Ok(Show::Nothing));
        assert_eq!(show(true, Bar, true), Err(ExitClass::Usage));
    }

    #[test]
    fn events_keep_a_fixed_schedule_and_skip_what_was_missed() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // Due at 1 s, printed at the tick at 1.05 s: the next is due at 2 s.
        assert_eq!(later(t0 + s, s, t0 + Duration::from_millis(1050)), t0 + 2 * s, "a late tick keeps the schedule");
        // Due at 1 s, printed at 5 s (a stalled machine): the next is a second later, not three at once.
        assert_eq!(later(t0 + s, s, t0 + 5 * s), t0 + 6 * s, "missed events are not printed in a burst");
    }

    #[test]
    fn nothing_shown_starts_no_thread_and_ends_at_once() {
        let p = args(true, ProgressMode::None).start(Live::new(), End::Sending).unwrap();
        assert!(p.thread.is_none() && !p.prints_summary());
        p.pause();
        p.resume();
        p.end(Ok(()));
    }
}
