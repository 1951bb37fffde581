//! What one progress reading says: the `--progress json` event and the text of the bar's line. Pure
//! functions of a [`LiveSnapshot`] and the derived numbers, so their format is tested without a transfer.

use super::meter::format_eta;
use crate::json::JsonObject;
use crate::pipeline::live::{LiveSnapshot, Phase};
use crate::rate::{format_bytes, format_rate_bps};
use std::time::Duration;

/// Which end of the transfer this process is: what it can know about the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `push`: this process runs the sender, so the policy's rate, retransmissions and RTT are known here.
    Sending,
    /// `pull`: the sender is remote; this side knows what arrived (and duplicates), not what the remote
    /// policy chose or retransmitted.
    Receiving,
}

/// One reading, with what the display derived from the readings before it.
#[derive(Clone, Copy, Debug)]
pub struct Reading<'a> {
    /// The counters.
    pub snap: LiveSnapshot,
    /// The phase to report: the session's while it runs, `done` or `failed` in the final event.
    pub phase: &'a str,
    /// Since the command started.
    pub elapsed: Duration,
    /// Bits per second of bytes done, over the meter's window.
    pub rate_bps: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Which end this process is.
    pub end: End,
    /// Why the transfer failed (final event only).
    pub error: Option<&'a str>,
}

/// The phase name of a session that is still running. The session's own `done` and `failed` are not the
/// end of the command yet (a failed session may be retried; a verified one is closing), so only the
/// final event says `done` or `failed`: a script can stop reading at either.
pub fn running_phase(phase: Phase) -> &'static str {
    match phase {
        Phase::Starting => "starting",
        Phase::Transferring => "transferring",
        Phase::Done => "finishing",
        Phase::Failed => "interrupted",
    }
}

fn opt_f64(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{}", (v * 1000.0).round() / 1000.0),
        None => "null".into(),
    }
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

impl Reading<'_> {
    /// The `--progress json` event: one line of JSON. Every key is always present; what this end cannot
    /// know is `null` (see [`End`]).
    pub fn to_json(&self) -> String {
        let s = &self.snap;
        let sending = self.end == End::Sending;
        let known = |v: u64| if sending { Some(v) } else { None };
        let mut j = JsonObject::new()
            .str("phase", self.phase)
            .f64("elapsed_seconds", (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0)
            .u64("bytes", s.bytes_done)
            .u64("bytes_total", s.bytes_total)
            .u64("files", s.files_done)
            .u64("files_total", s.files_total)
            .raw("rate_bps", &opt_f64(self.rate_bps.map(f64::round)))
            .raw("eta_seconds", &opt_f64(self.eta_seconds))
            .raw("retransmitted", &opt_u64(known(s.packets_retransmitted)))
            .raw("retransmitted_percent", &opt_f64(sending.then(|| s.retransmitted_percent())))
            .raw("policy_rate_bps", &opt_u64(known(s.rate_bps).filter(|&r| r > 0)))
            .raw("rate_share_bps", &opt_u64(known(s.rate_share_bps).filter(|&r| r > 0)))
            .raw("rtt_ms", &opt_f64(known(s.rtt_us).filter(|&r| r > 0).map(|us| us as f64 / 1000.0)))
            .u64("packets", if sending { s.packets_sent } else { s.packets_received })
            .raw("duplicates", &opt_u64((!sending).then_some(s.duplicates)));
        if let Some(e) = self.error {
            j = j.str("error", e);
        }
        j.finish()
    }

    /// Whole percent of bytes done, rounded down: 100 only when every byte is done (an empty transfer is
    /// done when its files are).
    pub fn percent(&self) -> u64 {
        let s = &self.snap;
        if s.bytes_total == 0 {
            let all_files = s.files_total > 0 && s.files_done >= s.files_total;
            return if all_files || self.phase == "done" { 100 } else { 0 };
        }
        (u128::from(s.bytes_done.min(s.bytes_total)) * 100 / u128::from(s.bytes_total)) as u64
    }

    /// The bar's two lines of text: after the bar, percent and bytes done of total and the ETA; below it,
    /// files done of total, the rate, and on the sending end the retransmitted share and the policy's rate.
    /// Two short lines fit an 80-column terminal.
    pub fn bar_lines(&self) -> [String; 2] {
        let s = &self.snap;
        let percent = self.percent();
        // Every byte acknowledged or delivered, and the session not over: the receiver verifies and commits.
        let when = match (percent, self.phase) {
            (_, "done") => "done".to_string(),
            (100, _) => "verifying".to_string(),
            _ => format!("ETA {}", format_eta(self.eta_seconds)),
        };
        let head = format!("{percent:>3}% {} of {}, {when}", format_bytes(s.bytes_done), format_bytes(s.bytes_total));
        let rate = self.rate_bps.map_or_else(|| "--".into(), format_rate_bps);
        let mut tail = format!("{} of {} files, {rate}", s.files_done, s.files_total);
        if self.end == End::Sending {
            tail += &format!(", retx {:.2}%", s.retransmitted_percent());
            if s.rate_bps > 0 {
                tail += &format!(", policy {}", format_rate_bps(s.rate_bps as f64));
            }
            // Why a push runs below its --rate: the daemon's cap, shared with its other sessions.
            if s.rate_share_bps > 0 {
                tail += &format!(" (share {})", format_rate_bps(s.rate_share_bps as f64));
            }
        }
        [head, tail]
    }

    /// The spinner's text before data flows: what the session is doing, so that a long scan of a huge
    /// tree is not a dead bar.
    pub fn starting_text(&self) -> String {
        let s = &self.snap;
        match (self.end, s.files_total) {
            (End::Sending, 0) => "scanning the sources and connecting".into(),
            (End::Receiving, 0) => "connecting and reading the manifest".into(),
            (_, n) => format!("starting: {n} files, {}", format_bytes(s.bytes_total)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(end: End) -> Reading<'static> {
        Reading {
            snap: LiveSnapshot {
                phase: Phase::Transferring,
                files_total: 4,
                bytes_total: 4 << 30,
                files_done: 1,
                bytes_done: 1 << 30,
                packets_sent: 1000,
                packets_retransmitted: 25,
                rate_bps: 3_000_000_000,
                rtt_us: 1500,
                packets_received: 900,
                duplicates: 7,
                ..LiveSnapshot::default()
            },
            phase: "transferring",
            elapsed: Duration::from_millis(2500),
            rate_bps: Some(2_500_000_000.4),
            eta_seconds: Some(10.3076),
            end,
            error: None,
        }
    }

    #[test]
    fn the_sending_event_has_every_key() {
        assert_eq!(
            reading(End::Sending).to_json(),
            r#"{"phase":"transferring","elapsed_seconds":2.5,"bytes":1073741824,"bytes_total":4294967296,"files":1,"files_total":4,"rate_bps":2500000000,"eta_seconds":10.308,"retransmitted":25,"retransmitted_percent":2.5,"policy_rate_bps":3000000000,"rate_share_bps":null,"rtt_ms":1.5,"packets":1000,"duplicates":null}"#
        );
    }

    #[test]
    fn the_receiving_event_says_null_for_what_only_the_sender_knows() {
        let mut r = reading(End::Receiving);
        r.phase = "failed";
        r.rate_bps = None;
        r.eta_seconds = None;
        r.error = Some("the \"path\" broke");
        assert_eq!(
            r.to_json(),
            r#"{"phase":"failed","elapsed_seconds":2.5,"bytes":1073741824,"bytes_total":4294967296,"files":1,"files_total":4,"rate_bps":null,"eta_seconds":null,"retransmitted":null,"retransmitted_percent":null,"policy_rate_bps":null,"rate_share_bps":null,"rtt_ms":null,"packets":900,"duplicates":7,"error":"the \"path\" broke"}"#
        );
    }

    #[test]
    fn the_bar_lines() {
        assert_eq!(
            reading(End::Sending).bar_lines(),
            [
                " 25% 1.00 GiB of 4.00 GiB, ETA 0:11".to_string(),
                "1 of 4 files, 2.50 Gbit/s, retx 2.50%, policy 3.00 Gbit/s".to_string()
            ]
        );
        let mut shared = reading(End::Sending);
        shared.snap.rate_share_bps = 3_000_000_000;
        assert!(shared.bar_lines()[1].ends_with("policy 3.00 Gbit/s (share 3.00 Gbit/s)"), "{:?}", shared.bar_lines());
        assert!(shared.to_json().contains(r#""rate_share_bps":3000000000,"#), "{}", shared.to_json());
        let mut r = reading(End::Receiving);
        r.rate_bps = None;
        r.eta_seconds = None;
        assert_eq!(r.bar_lines(), [" 25% 1.00 GiB of 4.00 GiB, ETA --:--".to_string(), "1 of 4 files, --".to_string()]);
        r.snap.bytes_done = r.snap.bytes_total;
        r.eta_seconds = Some(0.0);
        assert_eq!(r.bar_lines()[0], "100% 4.00 GiB of 4.00 GiB, verifying", "all sent, not yet committed");
        r.phase = "done";
        assert_eq!(r.bar_lines()[0], "100% 4.00 GiB of 4.00 GiB, done");
    }

    #[test]
    fn percent_says_100_only_when_everything_is_done() {
        let mut r = reading(End::Sending);
        r.snap.bytes_done = r.snap.bytes_total - 1;
        assert_eq!(r.percent(), 99);
        r.snap.bytes_done = r.snap.bytes_total;
        assert_eq!(r.percent(), 100);
        r.snap.bytes_total = 0;
        r.snap.bytes_done = 0;
        assert_eq!(r.percent(), 0, "empty files not yet committed");
        r.snap.files_done = 4;
        assert_eq!(r.percent(), 100);
        r.snap.files_total = 0;
        r.snap.files_done = 0;
        assert_eq!(r.percent(), 0, "only directories, not yet done");
        r.phase = "done";
        assert_eq!(r.percent(), 100);
    }

    #[test]
    fn before_data_flows_the_spinner_says_what_happens() {
        let mut r = reading(End::Sending);
        r.snap.files_total = 0;
        assert_eq!(r.starting_text(), "scanning the sources and connecting");
        r.end = End::Receiving;
        assert_eq!(r.starting_text(), "connecting and reading the manifest");
        r.snap.files_total = 3;
        r.snap.bytes_total = 3 << 20;
        assert_eq!(r.starting_text(), "starting: 3 files, 3.00 MiB");
    }

    #[test]
    fn running_phases_never_claim_the_end() {
        assert_eq!(running_phase(Phase::Done), "finishing");
        assert_eq!(running_phase(Phase::Failed), "interrupted");
        assert_eq!(running_phase(Phase::Starting), "starting");
    }
}
