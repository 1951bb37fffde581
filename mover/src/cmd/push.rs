//! `mover push`: what it prints around [`session::push`](crate::session::push).

use crate::exit::Failed;
use crate::session::{push_retrying, PushOptions};

/// Runs the push and prints: the summary line on stderr once verified, the stage table with `stats`, the
/// JSON object on stdout with `json`. A session the network broke is run again up to `retries` times
/// (`--retries`). The error, if any, is returned with its exit class for `main` to print.
pub fn run(opts: &PushOptions, retries: u32, stats: bool, json: bool) -> Result<(), Failed> {
    let report = push_retrying(opts, retries);
    if report.error.is_none() {
        eprintln!("mover push: {}", report.summary_line());
    }
    if stats {
        eprint!("{}", report.stage_table("push"));
    }
    if json {
        println!("{}", report.to_json());
    }
    report.error.map_or(Ok(()), |message| Err(Failed { class: report.exit_class, message }))
}
