//! `mover push`: what it prints around [`session::push`](crate::session::push).

use super::progress::event::End;
use super::progress::ProgressArgs;
use crate::exit::Failed;
use crate::session::{push, push_striped, PushOptions};

/// Runs the push and prints: the progress (`--progress`, a bar on a terminal) while it runs, the summary
/// line on stderr once verified (not with `--quiet` or `--progress json`), the stage table with `stats`, the
/// JSON object on stdout with `json`. A session the network broke is run again up to `retries` times
/// (`--retries`). The error, if any, is returned with its exit class for `main` to print. What it prints is
/// [`super::transfer::run`]'s, shared with `mover pull`.
pub fn run(opts: &PushOptions, retries: u32, stats: bool, json: bool, progress: &ProgressArgs) -> Result<(), Failed> {
    let display = progress.start(opts.live.clone(), End::Sending)?;
    let session = || match &opts.stripe {
        Some(s) => push_striped(opts, s),
        None => push(opts),
    };
    super::transfer::run("push", display, session, retries, stats, json)
}
