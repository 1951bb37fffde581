//! Running a session again when the network broke it (`--retries`): the client dials again exactly as the
//! first time (TLS and token, or SSH) after an exponential back-off, and the receiver resumes from its
//! partial files, so a rerun sends only what is missing. Only [`ExitClass::Retryable`] failures are
//! retried; authentication, usage, a missing source or a full disk never are.

use super::pull::{pull, PullOptions};
use super::push::{push, PushOptions};
use super::report::Report;
use crate::exit::ExitClass;
use std::time::Duration;

/// The first wait before a retry; each further one doubles it...
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// ...up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before retry number `retry` (0 for the first): 1 s, 2 s, 4 s, ... capped at [`MAX_BACKOFF`].
pub fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << retry.min(16)).min(MAX_BACKOFF)
}

/// Runs `attempt` until it succeeds, fails in a way a rerun does not fix, or has been retried `retries`
/// times; returns the last report. Before each retry it prints one line on stderr (`mover WHAT: ERROR;
/// retry N of M in S s`) and sleeps through `sleep` (a test passes a recorder).
pub fn with_retries(
    retries: u32,
    what: &str,
    attempt: impl FnMut() -> Report,
    mut sleep: impl FnMut(Duration),
) -> Report {
    with_retries_noting(retries, attempt, |retry, error, wait| {
        eprintln!("mover {what}: {error}; retry {retry} of {retries} in {} s", wait.as_secs());
        sleep(wait);
    })
}

/// [`with_retries`] that leaves the notice and the wait to `before_retry(retry, error, wait)` (1-based
/// retry, the failed attempt's error, the back-off): `mover job` says it in its own display and events.
pub fn with_retries_noting(
    retries: u32,
    mut attempt: impl FnMut() -> Report,
    mut before_retry: impl FnMut(u32, &str, Duration),
) -> Report {
    let mut retry = 0;
    loop {
        let report = attempt();
        let retryable = report.error.is_some() && report.exit_class == ExitClass::Retryable;
        if !retryable || retry >= retries {
            return report;
        }
        let wait = backoff(retry);
        retry += 1;
        before_retry(retry, report.error.as_deref().unwrap_or_default(), wait);
    }
}

/// [`push`], retried up to `retries` times (see [`with_retries`]).
pub fn push_retrying(opts: &PushOptions, retries: u32) -> Report {
    with_retries(retries, "push", || push(opts), std::thread::sleep)
}

/// [`pull`], retried up to `retries` times (see [`with_retries`]).
pub fn pull_retrying(opts: &PullOptions, retries: u32) -> Report {
    with_retries(retries, "pull", || pull(opts), std::thread::sleep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(class: ExitClass) -> Report {
        Report { error: Some("it broke".into()), exit_class: class, ..Report::default() }
    }

    #[test]
    fn the_back_off_doubles_from_one_second_up_to_thirty() {
        let waits: Vec<u64> = (0..8).map(|r| backoff(r).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn only_retryable_failures_are_retried_and_at_most_n_times() {
        let mut slept = Vec::new();
        let mut calls = 0;
        let r = with_retries(
            3,
            "push",
            || {
                calls += 1;
                failed(ExitClass::Retryable)
            },
            |d| slept.push(d.as_secs()),
        );
        assert_eq!((calls, slept), (4, vec![1, 2, 4]));
        assert_eq!(r.exit_class, ExitClass::Retryable);

        for class in [ExitClass::AuthRefused, ExitClass::Usage, ExitClass::SourceNotFound, ExitClass::Failure] {
            let mut calls = 0;
            let r = with_retries(
                3,
                "push",
                || {
                    calls += 1;
                    failed(class)
                },
                |_| panic!("{class:?} must not be retried"),
            );
            assert_eq!((calls, r.exit_class), (1, class));
        }
    }

    #[test]
    fn a_retry_that_succeeds_ends_the_loop() {
        let mut calls = 0;
        let r = with_retries(
            5,
            "pull",
            || {
                calls += 1;
                if calls < 3 {
                    failed(ExitClass::Retryable)
                } else {
                    Report::default()
                }
            },
            |_| {},
        );
        assert_eq!(calls, 3);
        assert!(r.error.is_none());
    }
}
