//! A fan-out push (`mover push --to A --to B --to C`, a job transfer with `to = [...]`): one source set sent
//! to several destinations at once, each its own session with its own plan, verification, retries and
//! report, all reading the sources through one bounded buffer ([`crate::pipeline::shared_reads`]), so the
//! disk reads them once while the destinations keep pace with each other (decision 0039).
//!
//! A destination that is slow or fails holds up no other: the others never wait for its network, and once
//! it is more than the buffer behind it reads on its own. A failed one is reported with its error and, like
//! any push, resumes when run again.

use super::push::PushOptions;
use super::report::Report;
use crate::pipeline::shared_reads::{SharedReads, MAX_MEMBERS};

/// The default budget of the shared buffer (`--fan-out-buffer`): how far, in bytes of chunks, the
/// destinations may drift apart and still share every read.
pub const DEFAULT_FAN_OUT_BUFFER: u64 = 256 << 20;

/// Most destinations one fan-out push serves.
pub const MAX_DESTINATIONS: usize = MAX_MEMBERS;

/// Runs `run` for every push of `pushes` (one per destination: the same sources, each its own `url`) at
/// once, each on its own thread with its seat at reads shared through a buffer of `buffer_bytes`; returns
/// what each returned, in `pushes`' order, its report's `shared_reads` filled in. `run` is the push with
/// its retries: a destination leaves the shared reads only when it is done for good.
pub fn push_fan_out<T: Send>(
    pushes: &[PushOptions],
    buffer_bytes: u64,
    run: &(dyn Fn(usize, &PushOptions) -> (Report, T) + Sync),
) -> Vec<(Report, T)> {
    assert!((1..=MAX_DESTINATIONS).contains(&pushes.len()), "a fan-out has 1..={MAX_DESTINATIONS} destinations");
    let reads = SharedReads::new(pushes.len(), usize::try_from(buffer_bytes).unwrap_or(usize::MAX));
    std::thread::scope(|scope| {
        let threads: Vec<_> = reads
            .seats()
            .into_iter()
            .zip(pushes)
            .enumerate()
            .map(|(i, (seat, push))| {
                scope.spawn(move || {
                    let member = seat.member;
                    let reads = seat.reads.clone();
                    let opts = PushOptions { shared_reads: Some(seat), ..push.clone() };
                    let (mut report, t) = run(i, &opts);
                    reads.leave(member);
                    report.shared_reads = Some(reads.counts(member));
                    (report, t)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("a fan-out push thread panicked")).collect()
    })
}
