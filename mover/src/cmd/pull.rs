//! `mover pull`: what it prints around [`session::pull`](crate::session::pull).

use super::progress::event::End;
use super::progress::ProgressArgs;
use crate::exit::Failed;
use crate::session::{pull, with_retries, PullOptions};

/// Runs the pull and prints: the progress (`--progress`, a bar on a terminal; the sender is remote, so it
/// shows what arrives, without the remote policy's rate or retransmissions) while it runs, the summary line
/// on stderr once verified (not with `--quiet` or `--progress json`), the stage table with `stats`, the JSON
/// object on stdout with `json`. A session the network broke is run again up to `retries` times
/// (`--retries`). The error, if any, is returned with its exit class for `main` to print.
pub fn run(opts: &PullOptions, retries: u32, stats: bool, json: bool, progress: &ProgressArgs) -> Result<(), Failed> {
    let display = progress.start(opts.live.clone(), End::Receiving)?;
    let attempt = || {
        let report = pull(opts);
        if report.error.is_some() {
            // A retry's line or the error is printed next: not over the bar.
            display.pause();
        }
        report
    };
    let report = with_retries(retries, "pull", attempt, |wait| {
        std::thread::sleep(wait);
        display.resume();
    });
    let summary = display.prints_summary();
    display.end(report.error.as_deref().map_or(Ok(()), Err));
    if report.verified && summary {
        eprintln!("mover pull: {}", report.summary_line());
    }
    if stats {
        eprint!("{}", report.stage_table("pull"));
    }
    if json {
        super::packaging::print_stdout_line(&report.to_json());
    }
    report.error.map_or(Ok(()), |message| Err(Failed { class: report.exit_class, message }))
}
