//! `mover push`: what it prints around [`session::push`](crate::session::push).

use super::progress::event::End;
use super::progress::ProgressArgs;
use crate::exit::Failed;
use crate::session::{push, with_retries, PushOptions};

/// Runs the push and prints: the progress (`--progress`, a bar on a terminal) while it runs, the summary
/// line on stderr once verified (not with `--quiet` or `--progress json`), the stage table with `stats`, the
/// JSON object on stdout with `json`. A session the network broke is run again up to `retries` times
/// (`--retries`). The error, if any, is returned with its exit class for `main` to print.
pub fn run(opts: &PushOptions, retries: u32, stats: bool, json: bool, progress: &ProgressArgs) -> Result<(), Failed> {
    let display = progress.start(opts.live.clone(), End::Sending)?;
    let attempt = || {
        let report = push(opts);
        if report.error.is_some() {
            // A retry's line or the error is printed next: not over the bar.
            display.pause();
        }
        report
    };
    let report = with_retries(retries, "push", attempt, |wait| {
        std::thread::sleep(wait);
        display.resume();
    });
    let summary = display.prints_summary();
    display.end(report.error.as_deref().map_or(Ok(()), Err));
    if report.error.is_none() && summary {
        eprintln!("mover push: {}", report.summary_line());
    }
    if stats {
        eprint!("{}", report.stage_table("push"));
    }
    if json {
        super::packaging::print_stdout_line(&report.to_json());
    }
    report.error.map_or(Ok(()), |message| Err(Failed { class: report.exit_class, message }))
}
