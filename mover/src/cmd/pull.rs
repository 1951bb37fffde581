//! `mover pull`: what it prints around [`session::pull`](crate::session::pull).

use crate::session::{pull, PullOptions};

/// Runs the pull and prints: the summary line on stderr once verified, the stage table with `stats`, the
/// JSON object on stdout with `json`. The error, if any, is returned for `main` to print.
pub fn run(opts: &PullOptions, stats: bool, json: bool) -> Result<(), String> {
    let report = pull(opts);
    if report.verified {
        eprintln!("mover pull: {}", report.summary_line());
    }
    if stats {
        eprint!("{}", report.stage_table("pull"));
    }
    if json {
        println!("{}", report.to_json());
    }
    report.error.map_or(Ok(()), Err)
}
