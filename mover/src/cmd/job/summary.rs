//! How a job ended: one [`Outcome`] per transfer x destination, the table on stderr, the `--json`
//! object on stdout and the exit code's class ([`exit_class`], the rule in [`super::JOB_EXIT_HELP`]).

use crate::exit::{ExitClass, Failed};
use crate::json::JsonObject;
use crate::rate::{format_bytes, format_rate_bps};
use crate::session::Report;

/// How one destination of one transfer ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The transfer's name.
    pub name: String,
    /// The destination.
    pub to: String,
    /// The push's last report (its error, if it failed).
    pub report: Report,
    /// Sessions run: 1, plus one per retry.
    pub attempts: u32,
}

impl Outcome {
    /// Whether the push succeeded: every file verified.
    pub fn ok(&self) -> bool {
        self.report.error.is_none()
    }

    /// `ok` or `failed`, as the table and the JSON say it.
    pub fn status(&self) -> &'static str {
        if self.ok() {
            "ok"
        } else {
            "failed"
        }
    }
}

/// The order in which the classes of an all-failed job are told: what needs a person before a rerun
/// first, what a rerun alone fixes last.
const TELLING: [ExitClass; 6] = [
    ExitClass::Usage,
    ExitClass::AuthRefused,
    ExitClass::SourceNotFound,
    ExitClass::Failure,
    ExitClass::Partial,
    ExitClass::Retryable,
];

/// The job's exit class from its outcomes' classes (`Success` for those that succeeded): success when all
/// succeeded, [`ExitClass::Partial`] when some did, else the most telling of the failures ([`TELLING`]).
pub fn exit_class(classes: &[ExitClass]) -> ExitClass {
    let failed: Vec<ExitClass> = classes.iter().copied().filter(|c| *c != ExitClass::Success).collect();
    if failed.is_empty() {
        return ExitClass::Success;
    }
    if failed.len() < classes.len() {
        return ExitClass::Partial;
    }
    TELLING.into_iter().find(|c| failed.contains(c)).unwrap_or(ExitClass::Failure)
}

/// How one transfer x destination ended, for [`result`]: its name, its destination, and its failure's
/// class and message if it failed.
pub type End = (String, String, Option<(ExitClass, String)>);

/// The job's result for `main`: `Ok` when every outcome succeeded, else the failure's class and one line
/// that counts the failures and names the first.
///
/// `what` names the outcomes (`transfers`, `dry runs`); `rerun` is what running again does, said at the
/// end unless the failure is a usage error.
pub fn result(outcomes: &[End], what: &str, rerun: &str) -> Result<(), Failed> {
    let classes: Vec<ExitClass> =
        outcomes.iter().map(|(_, _, e)| e.as_ref().map_or(ExitClass::Success, |(c, _)| *c)).collect();
    let class = exit_class(&classes);
    if class == ExitClass::Success {
        return Ok(());
    }
    let failed: Vec<_> = outcomes.iter().filter_map(|(n, t, e)| e.as_ref().map(|(_, m)| (n, t, m))).collect();
    let (name, to, first) = failed[0];
    let more = match failed.len() {
        1 => String::new(),
        n => format!(" (and {} more: see the summary)", n - 1),
    };
    let rerun = if class == ExitClass::Usage { String::new() } else { format!("; {rerun}") };
    Err(Failed {
        class,
        message: format!("{} of {} {what} failed: {name} -> {to}: {first}{more}{rerun}", failed.len(), outcomes.len()),
    })
}

/// The table on stderr: one row per transfer x destination (name, destination, status, files, bytes,
/// seconds, goodput, error).
pub fn table(outcomes: &[Outcome]) -> String {
    let header = ["name", "destination", "status", "files", "bytes", "seconds", "goodput", "error"];
    let rows: Vec<[String; 8]> = outcomes
        .iter()
        .map(|o| {
            let r = &o.report;
            [
                o.name.clone(),
                o.to.clone(),
                o.status().to_string(),
                r.files.to_string(),
                format_bytes(r.bytes),
                format!("{:.2}", r.seconds),
                if o.ok() { format_rate_bps(r.goodput_bps) } else { "-".into() },
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // The last column (the error) is not padded: it ends the line.
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for row in &rows {
        out += &line(&row.each_ref().map(String::as_str));
    }
    out
}

/// The `--json` object: every push's report (its `--json` keys) after `name`, `to`, `status` and
/// `attempts`; then the job's totals: `files` and `bytes` committed, `resumed_bytes`, `skipped_files`,
/// `seconds` (the whole job), `succeeded` and `failed`.
pub fn to_json(outcomes: &[Outcome], seconds: f64) -> String {
    let items = outcomes.iter().map(|o| {
        JsonObject::new()
            .str("name", &o.name)
            .str("to", &o.to)
            .str("status", o.status())
            .u64("attempts", u64::from(o.attempts))
            .fields(&o.report.to_json())
    });
    let sum = |f: fn(&Report) -> u64| outcomes.iter().map(|o| f(&o.report)).sum::<u64>();
    let ok = outcomes.iter().filter(|o| o.ok()).count() as u64;
    JsonObject::new()
        .array("transfers", items)
        .u64("files", sum(|r| r.files))
        .u64("bytes", sum(|r| r.bytes))
        .u64("resumed_bytes", sum(|r| r.resumed_bytes))
        .u64("skipped_files", sum(|r| r.skipped_files))
        .f64("seconds", (seconds * 1000.0).round() / 1000.0)
        .u64("succeeded", ok)
        .u64("failed", outcomes.len() as u64 - ok)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, error: Option<&str>) -> Outcome {
        let report = Report {
            files: 2,
            bytes: 3 << 20,
            seconds: 1.5,
            goodput_bps: 16e6,
            error: error.map(str::to_string),
            exit_class: if error.is_some() { ExitClass::Retryable } else { ExitClass::Success },
            ..Report::default()
        };
        Outcome { name: name.into(), to: "mover://h:7400/in".into(), report, attempts: 2 }
    }

    #[test]
    fn the_exit_class_rule() {
        use ExitClass::*;
        assert_eq!(exit_class(&[Success, Success]), Success);
        assert_eq!(exit_class(&[Success, Retryable, Failure]), Partial, "mixed: partial success");
        assert_eq!(exit_class(&[Retryable, Retryable]), Retryable, "all retryable: a rerun resumes");
        assert_eq!(exit_class(&[Retryable, SourceNotFound, Failure]), SourceNotFound);
        assert_eq!(exit_class(&[Failure, AuthRefused]), AuthRefused);
        assert_eq!(exit_class(&[Partial, Retryable]), Partial);
        assert_eq!(exit_class(&[Failure]), Failure);
    }

    #[test]
    fn the_table_has_a_row_per_destination_and_the_json_every_key() {
        let outs = [outcome("data", None), outcome("logs", Some("connection refused"))];
        let t = table(&outs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["name", "destination", "status", "files", "bytes", "seconds", "goodput", "error"]);
        assert!(lines[1].starts_with("data  mover://h:7400/in  ok      2      3.00 MiB  1.50"), "{t}");
        assert!(lines[2].contains(" failed ") && lines[2].ends_with(" -             connection refused"), "{t}");
        let j = to_json(&outs, 2.0);
        assert!(
            j.starts_with(
                r#"{"transfers":[{"name":"data","to":"mover://h:7400/in","status":"ok","attempts":2,"files":2,"#
            ),
            "{j}"
        );
        assert!(
            j.ends_with(
                r#""files":4,"bytes":6291456,"resumed_bytes":0,"skipped_files":0,"seconds":2,"succeeded":1,"failed":1}"#
            ),
            "{j}"
        );
        assert!(
            j.contains(r#""status":"failed","attempts":2,"#) && j.contains(r#""error":"connection refused""#),
            "{j}"
        );
    }

    #[test]
    fn the_error_line_counts_and_names_the_first_failure() {
        let o = |e: Option<(ExitClass, &str)>| ("n".to_string(), "h:d".to_string(), e.map(|(c, m)| (c, m.to_string())));
        assert!(result(&[o(None), o(None)], "transfers", "again").is_ok());
        let outs = [o(None), o(Some((ExitClass::Failure, "boom"))), o(Some((ExitClass::Retryable, "x")))];
        let e = result(&outs, "transfers", "run it again").unwrap_err();
        assert_eq!(e.class, ExitClass::Partial);
        assert_eq!(e.message, "2 of 3 transfers failed: n -> h:d: boom (and 1 more: see the summary); run it again");
    }
}
