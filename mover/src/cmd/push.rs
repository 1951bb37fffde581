//! `mover push`: what it prints around [`session::push`](crate::session::push).

use crate::session::{push, PushOptions};

/// Runs the push and prints: the summary line on stderr once verified, the stage table with `stats`, the
/// JSON object on stdout with `json`. The error, if any, is returned for `main` to print.
pub fn run(opts: &PushOptions, stats: bool, json: bool) -> Result<(), String> {
    let report = push(opts);
    if report.error.is_none() {
        eprintln!("mover push: {}", report.summary_line());
    }
    if stats {
        eprint!("{}", report.stage_table("push"));
    }
    if json {
        println!("{}", report.to_json());
    }
    report.error.map_or(Ok(()), Err)
}
