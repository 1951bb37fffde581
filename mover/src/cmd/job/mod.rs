//! `mover job FILE.toml`: many pushes from one file (decision 0038), run by a bounded pool with retries,
//! one progress view, NDJSON events, a summary table and JSON; `--dry-run` asks each destination what
//! would move and why, changing nothing.
//!
//! [`file`] reads the job file into push flags; `main` parses those with push's own definition into one
//! [`JobTransfer`] per `[[transfer]]`; [`run::run`] and [`dry_run::run`] run them; [`summary`] says how
//! they ended and decides the exit code ([`summary::exit_class`]).

pub mod dry_run;
pub mod file;
mod pool;
mod progress;
pub mod run;
pub mod summary;

use crate::cmd::progress::ProgressArgs;
use crate::session::PushOptions;
use std::path::PathBuf;

/// `mover job`'s flags.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job file (TOML): job-wide defaults (any long flag of `mover push`, and concurrency = N), then one
    /// [[transfer]] table per transfer with sources = [...], to = "mover://HOST/DIR" (or a list) and any
    /// push flag of its own. See dist/examples/job.example.toml.
    pub file: PathBuf,
    /// List, per transfer and destination, each file that would move and why (new, changed, unchanged) and
    /// the bytes, as each destination decides it; nothing is created or changed on either side.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one JSON object on stdout (with --dry-run: one object per destination, a line
    /// each).
    #[arg(long)]
    pub json: bool,
    /// Move one shard of every transfer (I/N, auto or auto/N, as push --shard): N runs of the job, one per
    /// node, together move everything once. Wins over the file's shard keys.
    #[arg(long, value_name = "I/N|auto[/N]")]
    pub shard: Option<String>,
    /// `-q` and `--progress`: one view for the whole job.
    #[command(flatten)]
    pub progress: ProgressArgs,
}

/// One `[[transfer]]`, ready to run: one push per destination, each with its own options (its `url` is
/// the destination, its `live` its own counters).
#[derive(Clone, Debug)]
pub struct JobTransfer {
    /// The transfer's name (the file's `name`, or made from its sources).
    pub name: String,
    /// One push per destination, in the file's order.
    pub pushes: Vec<PushOptions>,
    /// `--retries` (the `retries` key): times a push the network broke is run again.
    pub retries: u32,
    /// `--fan-out-buffer` (the `fan-out-buffer` key): with several destinations, the buffer through which
    /// their sessions share the reads of the sources (`session::push_fan_out`).
    pub fan_out_buffer: u64,
}

/// The exit-code rule of `mover job`, for `mover job --help` and README.md.
pub const JOB_EXIT_HELP: &str = "\
Exit codes (each transfer x destination counts once):
  0  every transfer succeeded (with --dry-run: every destination answered)
  6  some succeeded and some failed (partial success; the summary says which)
  1-5  all failed: the most telling class among them, in this order: 2 usage, 4 authentication refused,
     3 source not found, 1 failure, 6 partial, 5 retryable (5 only when every failure was retryable:
     running the same job again resumes)
  2  the job file or a flag is wrong (one line names the file, the [[transfer]] and the key); nothing ran";
