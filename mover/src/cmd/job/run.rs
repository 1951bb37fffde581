//! Running a job: every transfer x destination as a push ([`crate::session::push`], or a striped one),
//! each with push's retry loop and back-off (`session::retry`); a transfer's destinations at once as one
//! fan-out ([`crate::session::push_fan_out`]: the sources read once for all of them); at most
//! `concurrency` transfers at once ([`super::pool`]); then the summary table on stderr and, with `--json`, the summary object on stdout.
//! Resume needs nothing here: a rerun's pushes find the receivers' partials and journals, resume them and
//! skip the files already there.

use super::pool::{run_pool, work_items, WorkItem};
use super::progress::JobProgress;
use super::summary::{self, Outcome};
use super::JobTransfer;
use crate::cmd::progress::ProgressArgs;
use crate::exit::Failed;
use crate::session::{push, push_fan_out, push_striped, with_retries_noting, PushOptions, Report};
use std::time::Instant;

/// What running a job again does, for the end of its error line.
const RERUN: &str = "run the same job again: what arrived is skipped and partial files resume";

/// Runs `transfers` with at most `concurrency` pushes at once and prints their progress (`progress`), the
/// summary table (unless `-q` or `--progress json`) and with `json` the summary object. The error, if any,
/// carries the job's exit class ([`summary::exit_class`]).
pub fn run(transfers: &[JobTransfer], concurrency: usize, json: bool, progress: &ProgressArgs) -> Result<(), Failed> {
    let started = Instant::now();
    // Slots in work order: transfer by transfer, destination by destination.
    let slot_of = |t: usize, d: usize| transfers[..t].iter().map(|x| x.pushes.len()).sum::<usize>() + d;
    let slots = transfers
        .iter()
        .flat_map(|t| t.pushes.iter().map(|p| (t.name.clone(), p.url.clone(), p.live.clone())))
        .collect();
    let display = JobProgress::start(progress, slots)?;
    // A transfer to several destinations is one fan-out (read once for all of them), unless striped.
    let fans: Vec<(usize, bool)> = transfers.iter().map(|t| (t.pushes.len(), t.pushes[0].stripe.is_none())).collect();
    let work = |item: &WorkItem| -> Vec<(Report, u32)> {
        let t = &transfers[item.transfer];
        let one = |d: usize, opts: &PushOptions| {
            let slot = slot_of(item.transfer, d);
            display.started(slot);
            let (report, attempts) = push_with_retries(opts, t.retries, &|retry, error, wait| {
                display.retrying(slot, retry, t.retries, error, wait)
            });
            display.ended(slot, &report, attempts);
            (report, attempts)
        };
        if item.dests.len() > 1 {
            let pushes: Vec<PushOptions> = item.dests.iter().map(|&d| t.pushes[d].clone()).collect();
            return push_fan_out(&pushes, t.fan_out_buffer, &|i, opts| one(item.dests[i], opts));
        }
        item.dests.iter().map(|&d| one(d, &t.pushes[d])).collect()
    };
    let done = run_pool(work_items(&fans), concurrency, &work);
    let summary_shown = display.prints_summary();
    display.finish();
    let outcomes: Vec<Outcome> = done
        .into_iter()
        .map(|((t, d), (report, attempts))| Outcome {
            name: transfers[t].name.clone(),
            to: transfers[t].pushes[d].url.clone(),
            report,
            attempts,
        })
        .collect();
    if summary_shown {
        eprint!("{}", summary::table(&outcomes));
    }
    if json {
        crate::cmd::packaging::print_stdout_line(&summary::to_json(&outcomes, started.elapsed().as_secs_f64()));
    }
    let ends: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let error = o.report.error.clone().map(|e| (o.report.exit_class, e));
            (o.name.clone(), o.to.clone(), error)
        })
        .collect();
    summary::result(&ends, "transfers", RERUN)
}

/// One push (striped with `--via`), run again up to `retries` times when the network broke it, with
/// `before_retry(retry, error, wait)` saying so and waiting; its last report and the sessions it took.
fn push_with_retries(
    opts: &PushOptions,
    retries: u32,
    before_retry: &dyn Fn(u32, &str, std::time::Duration),
) -> (Report, u32) {
    let mut attempts = 0;
    let attempt = || {
        attempts += 1;
        match &opts.stripe {
            Some(s) => push_striped(opts, s),
            None => push(opts),
        }
    };
    let report = with_retries_noting(retries, attempt, |retry, error, wait| {
        before_retry(retry, error, wait);
        std::thread::sleep(wait);
    });
    (report, attempts)
}
