//! Time as an argument: the protocol never reads a clock, it is handed `now`.

use std::time::{Duration, Instant};

/// A point in time in nanoseconds since an arbitrary, per-process epoch.
///
/// The protocol only ever compares and subtracts these, so the epoch does not matter; the simulator starts
/// at zero and jumps from deadline to deadline.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// The epoch itself.
    pub const ZERO: Time = Time(0);

    /// `self + d`, saturating (a deadline "never" stays far in the future).
    pub fn plus(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// `self + ns`, saturating.
    pub fn plus_ns(self, ns: u64) -> Time {
        Time(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since_ns(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Duration from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.since_ns(earlier))
    }

    /// The low 32 bits of the time in microseconds: the timestamp carried on the wire (wraps every ~71 min;
    /// only differences of nearby values are ever taken).
    pub fn wire_us(self) -> u32 {
        (self.0 / 1_000) as u32
    }
}

/// A source of `now`. Production uses [`MonotonicClock`]; tests use a simulated clock.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Time;
}

/// The process's monotonic clock, as nanoseconds since the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        MonotonicClock { start: Instant::now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Time {
        Time(self.start.elapsed().as_nanos() as u64)
    }
}

/// The system's monotonic clock in nanoseconds (a vDSO call, no system call): for measuring short spans of
/// CPU work, such as `--compress auto`'s compression speed.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_arithmetic() {
        assert_eq!(Time(5).since_ns(Time(9)), 0);
        assert_eq!(Time(u64::MAX - 1).plus_ns(10), Time(u64::MAX));
        assert_eq!(Time(1_500_000).wire_us(), 1_500);
    }
}
