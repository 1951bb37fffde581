//! `mover pull`: what it prints around [`session::pull`](crate::session::pull).

use super::progress::event::End;
use super::progress::ProgressArgs;
use crate::exit::Failed;
use crate::session::{pull, PullOptions};

/// Runs the pull and prints: the progress (`--progress`, a bar on a terminal; the sender is remote, so it
/// shows what arrives, without the remote policy's rate or retransmissions) while it runs, the summary line
/// on stderr once verified (not with `--quiet` or `--progress json`), the stage table with `stats`, the JSON
/// object on stdout with `json`. A session the network broke is run again up to `retries` times
/// (`--retries`). The error, if any, is returned with its exit class for `main` to print. What it prints is
/// [`super::transfer::run`]'s, shared with `mover push`.
pub fn run(opts: &PullOptions, retries: u32, stats: bool, json: bool, progress: &ProgressArgs) -> Result<(), Failed> {
    let display = progress.start(opts.live.clone(), End::Receiving)?;
    super::transfer::run("pull", display, || pull(opts), retries, stats, json)
}
