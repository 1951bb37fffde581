//! What `mover push` and `mover pull` print around their session, the same for both: the progress while
//! it runs (across retries), the summary line, the stage table and the JSON object. [`super::push`] and
//! [`super::pull`] only say which session runs and which end of it this process is.

use super::progress::Progress;
use crate::exit::Failed;
use crate::session::{with_retries, Report};

/// Runs `session` (`what`: `push` or `pull`, for the lines printed) while `display` shows it, again up to
/// `retries` times if the network broke it (`--retries`), then prints: the summary line on stderr once
/// verified (unless [`Progress::prints_summary`] says no), the stage table with `stats`, the JSON object on
/// stdout with `json`. The error, if any, is returned with its exit class for `main` to print.
pub fn run(
    what: &str,
    display: Progress,
    mut session: impl FnMut() -> Report,
    retries: u32,
    stats: bool,
    json: bool,
) -> Result<(), Failed> {
    let attempt = || {
        let report = session();
        if report.error.is_some() {
            // A retry's line or the error is printed next: not over the bar.
            display.pause();
        }
        report
    };
    let report = with_retries(retries, what, attempt, |wait| {
        std::thread::sleep(wait);
        display.resume();
    });
    let summary = display.prints_summary();
    display.end(report.error.as_deref().map_or(Ok(()), Err));
    // A session's report is verified exactly when it has no error (`session::push` and `session::pull`
    // both say so); `verified` is what the summary line claims.
    if report.verified && summary {
        eprintln!("mover {what}: {}", report.summary_line());
    }
    if report.detached && summary {
        let server = report.peer.map_or_else(|| "mover://HOST:PORT".to_string(), |p| format!("mover://{p}"));
        eprintln!("mover {what}: {}", report.detached_line(&server));
    }
    if stats {
        eprint!("{}", report.stage_table(what));
    }
    if json {
        super::packaging::print_stdout_line(&report.to_json());
    }
    report.error.map_or(Ok(()), |message| Err(Failed { class: report.exit_class, message }))
}
