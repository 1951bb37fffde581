//! The progress bar on a terminal, drawn by indicatif (docs/decisions/0015-progress-bar.md): a spinner
//! while the session starts (a long scan is not a dead bar), then the bar with [`Reading::bar_lines`].

use super::event::Reading;
use crate::pipeline::live::Phase;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// Redraws per second at most: enough to look live, little enough to cost nothing.
const MAX_HZ: u8 = 10;

/// The text the template's `{head}` and `{tail}` keys show. The display sets it and then the position in
/// one update, so that each frame is drawn once and its text and bar agree.
type Text = Arc<Mutex<[String; 2]>>;

/// The bar, created at the first reading and again after a [`Bar::pause`].
pub struct Bar {
    /// Draw through console's stderr even though it is not a terminal (`--progress bar` to a file).
    forced_off_terminal: bool,
    text: Text,
    shown: Option<(ProgressBar, bool)>,
}

fn style(template: &str, text: &Text) -> ProgressStyle {
    let key = |i: usize| {
        let text = text.clone();
        move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&text.lock().unwrap_or_else(|e| e.into_inner())[i]);
        }
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
        .with_key("head", key(0))
        .with_key("tail", key(1))
}

impl Bar {
    /// A bar drawn on stderr: only when it is a terminal, or always when `forced`.
    pub fn new(forced: bool) -> Bar {
        let forced_off_terminal = forced && !std::io::stderr().is_terminal();
        Bar { forced_off_terminal, text: Text::default(), shown: None }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.forced_off_terminal {
            // indicatif hides a bar whose stderr is not a terminal; console's stderr as a `TermLike` is drawn.
            ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), MAX_HZ)
        } else {
            ProgressDrawTarget::stderr_with_hz(MAX_HZ)
        }
    }

    fn set_text(&self, head: String, tail: String) {
        *self.text.lock().unwrap_or_else(|e| e.into_inner()) = [head, tail];
    }

    /// Draws one reading: the spinner before data flows (and while a retry reconnects), else the bar.
    pub fn show(&mut self, r: &Reading) {
        let as_bar = r.snap.phase == Phase::Transferring || r.phase == "done";
        if self.shown.as_ref().is_none_or(|(_, b)| *b != as_bar) {
            if let Some((old, _)) = self.shown.take() {
                old.finish_and_clear();
            }
            let pb = ProgressBar::with_draw_target(None, self.target());
            let template = if as_bar { "[{bar:30}] {head}\n  {tail}" } else { "{spinner} {elapsed:>4} {head}" };
            pb.set_style(style(template, &self.text));
            self.shown = Some((pb, as_bar));
        }
        let (pb, _) = self.shown.as_ref().expect("just shown");
        if as_bar {
            let [head, tail] = r.bar_lines();
            self.set_text(head, tail);
            // A transfer of empty files has no bytes: its bar is full when the reading says 100%.
            let (len, pos) = match r.snap.bytes_total {
                0 => (1, u64::from(r.percent() == 100)),
                t => (t, r.snap.bytes_done.min(t)),
            };
            pb.update(|s| {
                s.set_len(len);
                s.set_pos(pos);
            });
        } else {
            let text = if r.snap.phase == Phase::Failed { "interrupted; retrying".into() } else { r.starting_text() };
            self.set_text(text, String::new());
            pb.tick();
        }
    }

    /// Clears the bar from the screen, so that a line printed meanwhile (a retry's) stands on its own; the
    /// next [`Bar::show`] draws it again.
    pub fn pause(&mut self) {
        if let Some((pb, _)) = self.shown.take() {
            pb.finish_and_clear();
        }
    }

    /// Draws the final reading and leaves it on the screen, above the summary: at 100% when the transfer
    /// succeeded; where it stopped, marked failed, when it did not.
    pub fn finish(&mut self, r: &Reading, ok: bool) {
        self.show(r);
        let (pb, as_bar) = self.shown.take().expect("shown");
        if ok {
            pb.finish();
        } else {
            let [head, tail] = if as_bar { r.bar_lines() } else { [r.starting_text(), String::new()] };
            self.set_text(format!("{head}: failed"), tail);
            pb.abandon();
        }
        if self.forced_off_terminal {
            // On a terminal the bar's line is padded to the edge, so what follows starts a line of its own;
            // a file needs the newline.
            eprintln!();
        }
    }
}
