//! The numbers a progress display derives from successive readings of [`Live`](crate::pipeline::live::Live):
//! the current rate over a sliding window and the time left at that rate. Pure arithmetic on
//! (elapsed, bytes done) pairs, so it is tested without a transfer.

use std::collections::VecDeque;
use std::time::Duration;

/// Bytes done over time while data flows, remembered over a window: the rate is measured from the oldest
/// sample that still spans the window to the newest one.
///
/// Bytes that were never sent count as done at once: files skipped as current and the resumed part of
/// partial files appear in one jump when the session's core first publishes. So measuring starts at the
/// first reading whose bytes differ from the one before while data flows, after that jump, and starts again
/// whenever data stops flowing (a retry): the rate is of bytes that moved.
#[derive(Debug)]
pub struct Meter {
    window: Duration,
    samples: VecDeque<(Duration, u64)>,
    measuring: bool,
    last: Option<u64>,
}

impl Meter {
    /// A meter whose rate covers at least `window` once that much history exists (1 s for the JSON events:
    /// the rate of the last interval; longer for the bar, whose frames come ten times a second).
    pub fn new(window: Duration) -> Meter {
        Meter { window, samples: VecDeque::new(), measuring: false, last: None }
    }

    /// Takes a reading: `bytes` done `at` the given time since the start, and whether data `flows` (the
    /// session transfers, or has just finished). Times must not go back.
    pub fn observe(&mut self, at: Duration, bytes: u64, flows: bool) {
        let moved = self.last.is_some_and(|last| last != bytes);
        self.last = Some(bytes);
        if !flows {
            self.measuring = false;
            self.samples.clear();
            return;
        }
        if !self.measuring {
            if !moved {
                return;
            }
            self.measuring = true;
        }
        self.samples.push_back((at, bytes));
        // Drop the oldest sample while the next one alone still reaches back a whole window.
        while self.samples.len() > 2 && at.saturating_sub(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
    }

    /// Bits per second between the oldest and the newest sample; `None` before two samples apart in time.
    pub fn rate_bps(&self) -> Option<f64> {
        let (&(t0, b0), &(t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let seconds = t1.checked_sub(t0)?.as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        Some(b1.saturating_sub(b0) as f64 * 8.0 / seconds)
    }
}

/// Seconds until `bytes_total` at `rate_bps`: 0 when everything is done, `None` when the rate is unknown or
/// zero (a stalled path has no honest ETA).
pub fn eta_seconds(bytes_done: u64, bytes_total: u64, rate_bps: Option<f64>) -> Option<f64> {
    let left = bytes_total.saturating_sub(bytes_done);
    if left == 0 {
        return Some(0.0);
    }
    match rate_bps {
        Some(r) if r > 0.0 && r.is_finite() => Some(left as f64 * 8.0 / r),
        _ => None,
    }
}

/// `h:mm:ss` or `m:ss` for people; `--:--` when unknown.
pub fn format_eta(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else { return "--:--".into() };
    let s = s.ceil() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A meter that already measures: the reading before data flows, then the first move.
    fn measuring(window: u64) -> Meter {
        let mut m = Meter::new(ms(window));
        m.observe(ms(0), 0, true);
        m.observe(ms(0), 1, true);
        m
    }

    #[test]
    fn the_rate_needs_two_samples_apart_in_time() {
        let mut m = Meter::new(ms(1000));
        assert_eq!(m.rate_bps(), None);
        m.observe(ms(0), 0, true);
        assert_eq!(m.rate_bps(), None);
        m.observe(ms(0), 10, true);
        assert_eq!(m.rate_bps(), None);
        m.observe(ms(500), 1_000_010, true);
        assert_eq!(m.rate_bps(), Some(16_000_000.0));
    }

    #[test]
    fn bytes_done_at_once_are_not_a_rate() {
        let mut m = Meter::new(ms(1000));
        m.observe(ms(0), 0, false); // starting: scanning, connecting
        m.observe(ms(100), 0, true); // data flows; the core has not published yet
        m.observe(ms(200), 900_000_000, true); // 900 MB skipped as current or resumed: done at once
        m.observe(ms(300), 900_000_000, true);
        assert_eq!(m.rate_bps(), Some(0.0), "measured from after the jump");
        m.observe(ms(1200), 901_000_000, true);
        assert_eq!(m.rate_bps(), Some(8e6));
        // Everything skipped: done before any data flowed, no rate at all.
        let mut m = Meter::new(ms(1000));
        m.observe(ms(0), 0, false);
        m.observe(ms(100), 5_000, true);
        assert_eq!(m.rate_bps(), None);
    }

    #[test]
    fn a_retry_starts_measuring_again() {
        let mut m = measuring(1000);
        m.observe(ms(1000), 125_000_001, true);
        assert_eq!(m.rate_bps(), Some(1e9));
        m.observe(ms(1500), 125_000_001, false); // interrupted
        assert_eq!(m.rate_bps(), None);
        m.observe(ms(4000), 125_000_001, true); // reconnected, nothing moved yet
        m.observe(ms(4100), 200_000_000, true); // the new session's plan: resumed bytes at once
        m.observe(ms(5100), 212_500_000, true);
        assert_eq!(m.rate_bps(), Some(1e8));
    }

    #[test]
    fn a_one_second_window_measures_the_last_second() {
        let mut m = measuring(1000);
        m.observe(ms(1000), 125_000_001, true); // 1 Gbit/s
        assert_eq!(m.rate_bps(), Some(1e9));
        m.observe(ms(2000), 187_500_001, true); // then 500 Mbit/s: the first second no longer counts
        assert_eq!(m.rate_bps(), Some(5e8));
        m.observe(ms(3000), 187_500_001, true); // a stall
        assert_eq!(m.rate_bps(), Some(0.0));
    }

    #[test]
    fn a_longer_window_smooths_over_its_whole_span() {
        let mut m = Meter::new(ms(2000));
        m.observe(ms(0), 0, true);
        for i in 1..=30u64 {
            // 100 ms ticks at 80 Mbit/s (1 MB per tick), then a jump to double from tick 21 on.
            let bytes = if i <= 20 { i * 1_000_000 } else { 20_000_000 + (i - 20) * 2_000_000 };
            m.observe(ms(i * 100), bytes, true);
        }
        // The window is ticks 10..=30: 10 ticks at 1 MB and 10 at 2 MB over 2 s.
        let r = m.rate_bps().unwrap();
        assert!((r - 120e6).abs() < 1.0, "{r}");
    }

    #[test]
    fn eta_from_the_rate_and_what_is_left() {
        assert_eq!(eta_seconds(0, 1_000_000_000, Some(8e9)), Some(1.0));
        assert_eq!(eta_seconds(750, 1000, Some(8000.0)), Some(0.25));
        assert_eq!(eta_seconds(1000, 1000, None), Some(0.0), "done needs no rate");
        assert_eq!(eta_seconds(0, 0, None), Some(0.0), "nothing to send is done");
        assert_eq!(eta_seconds(10, 1000, None), None);
        assert_eq!(eta_seconds(10, 1000, Some(0.0)), None, "a stall has no ETA");
        assert_eq!(eta_seconds(10, 1000, Some(f64::INFINITY)), None);
    }

    #[test]
    fn eta_for_people() {
        assert_eq!(format_eta(None), "--:--");
        assert_eq!(format_eta(Some(0.0)), "0:00");
        assert_eq!(format_eta(Some(61.2)), "1:02");
        assert_eq!(format_eta(Some(3725.0)), "1:02:05");
        assert_eq!(format_eta(Some(f64::NAN)), "--:--");
    }
}
