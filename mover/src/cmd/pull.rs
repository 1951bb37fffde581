//! `mover pull`: what it prints around [`session::pull`](crate::session::pull).

use crate::exit::Failed;
use crate::session::{pull_retrying, PullOptions};

/// Runs the pull and prints: the summary line on stderr once verified, the stage table with `stats`, the
/// JSON object on stdout with `json`. A session the network broke is run again up to `retries` times
/// (`--retries`). The error, if any, is returned with its exit class for `main` to print.
pub fn run(opts: &PullOptions, retries: u32, stats: bool, json: bool) -> Result<(), Failed> {
    let report = pull_retrying(opts, retries);
    if report.verified {
        eprintln!("mover pull: {}", report.summary_line());
    }
    if stats {
        eprint!("{}", report.stage_table("pull"));
    }
    if json {
        println!("{}", report.to_json());
    }
    report.error.map_or(Ok(()), |message| Err(Failed { class: report.exit_class, message }))
}
