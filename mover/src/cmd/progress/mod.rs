//! Progress of `push` and `pull` on stderr while the session runs: a bar on a terminal (indicatif), one
//! JSON event a second for scripts and GUIs (`--progress json`), or nothing (`--quiet`, `--progress
//! none`, or stderr not a terminal).
//!
//! A thread of its own reads [`Live`], the counters the session's protocol stage publishes every 50 ms:
//! relaxed loads of a few atomics, so the display never slows the transfer. Retries share the same
//! `Live`, so one display covers every attempt. The final event or frame is drawn when the command knows
//! how the transfer ended ([`Progress::end`]), before the summary line.

mod bar;
pub mod event;
pub mod meter;

use crate::exit::{ExitClass, Failed};
use crate::pipeline::live::Live;
use bar::Bar;
use event::{running_phase, End, Reading};
use meter::{eta_seconds, Meter};
use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the bar reads the counters (and redraws at most).
const BAR_TICK: Duration = Duration::from_millis(100);
/// The bar's rate covers this much time: 100 ms ticks alone would flicker.
const BAR_RATE_WINDOW: Duration = Duration::from_secs(2);
/// One JSON event this often; its rate covers the interval since the previous one.
const JSON_TICK: Duration = Duration::from_secs(1);

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
    /// Progress on stderr: auto (a bar when stderr is a terminal), bar, json (one object a second: bytes,
    /// files, rate_bps, eta_seconds, retransmitted, ...; a final one with phase done or failed; no summary
    /// line), none.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub progress: ProgressMode,
}

/// What the display draws, from the flags and whether stderr is a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Show {
    Nothing,
    Bar { forced: bool },
    Json,
}

impl ProgressArgs {
    /// What to draw. `--quiet` silences the bar (a contradicting `--progress bar` is refused); JSON events
    /// are machine output a script asked for, so `--quiet --progress json` keeps them.
    fn show(&self, stderr_is_terminal: bool) -> Result<Show, Failed> {
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
    let (tick, window) = match show {
        Show::Json => (JSON_TICK, JSON_TICK),
        _ => (BAR_TICK, BAR_RATE_WINDOW),
    };
    let mut bar = match show {
        Show::Bar { forced } => Some(Bar::new(forced)),
        _ => None,
    };
    let mut meter = Meter::new(window);
    meter.record(Duration::ZERO, 0);
    let mut next = started + tick;
    let mut paused = false;
    loop {
        let msg = rx.recv_timeout(next.saturating_duration_since(Instant::now()));
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
        let elapsed = started.elapsed();
        meter.record(elapsed, snap.bytes_done);
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
            (None, _) => eprintln!("{}", reading.to_json()),
        }
        if outcome.is_some() {
            return;
        }
        // A fixed schedule (one event a second, not a second after the last one drawn), skipping ticks
        // missed while the machine was busy.
        next += tick;
        let now = Instant::now();
        if next <= now {
            next = now + tick;
        }
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
    fn nothing_shown_starts_no_thread_and_ends_at_once() {
        let p = args(true, ProgressMode::None).start(Live::new(), End::Sending).unwrap();
        assert!(p.thread.is_none() && !p.prints_summary());
        p.pause();
        p.resume();
        p.end(Ok(()));
    }
}
