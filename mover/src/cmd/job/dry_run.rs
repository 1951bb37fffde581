//! `mover job --dry-run`: every transfer x destination asked what its push would do
//! ([`crate::session::dry_run`], PROTOCOL.md §3.6), at most `concurrency` at once, and the answers
//! printed on stdout: per destination a line of totals and a line per file (`new`, `changed`,
//! `unchanged`, with the bytes a push would send), or with `--json` one object per destination a line.
//! Nothing is created or changed on either side.

use super::pool::{one_per_destination, run_pool, WorkItem};
use super::summary;
use super::JobTransfer;
use crate::exit::Failed;
use crate::json::JsonObject;
use crate::rate::format_bytes;
use crate::session::{dry_run, DryRunReport, FileVerdict, SessionError};
use crate::wire::verdict::VerdictKind;

/// A destination's answer in numbers, with the names a push's report gives the same numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files a push would send: new and changed (the report's `files`).
    pub files: u64,
    /// Their sizes (the report's `bytes`).
    pub bytes: u64,
    /// Of those, new files.
    pub new_files: u64,
    /// Of those, changed files.
    pub changed_files: u64,
    /// Bytes partials of changed files hold, not sent again (the report's `resumed_bytes`).
    pub resumed_bytes: u64,
    /// Files a push would skip as unchanged (the report's `skipped_files`).
    pub skipped_files: u64,
    /// Their sizes (the report's `skipped_bytes`).
    pub skipped_bytes: u64,
    /// Bytes a push would put on the network, retransmissions aside: `bytes - resumed_bytes`.
    pub send_bytes: u64,
}

impl Totals {
    /// The totals of `files`' verdicts.
    pub fn of(files: &[FileVerdict]) -> Totals {
        let mut t = Totals::default();
        for f in files {
            match f.verdict.kind {
                VerdictKind::Unchanged => {
                    t.skipped_files += 1;
                    t.skipped_bytes += f.size;
                    continue;
                }
                VerdictKind::New => t.new_files += 1,
                VerdictKind::Changed => t.changed_files += 1,
            }
            t.files += 1;
            t.bytes += f.size;
            t.resumed_bytes += f.verdict.held;
            t.send_bytes += f.bytes_to_send();
        }
        t
    }
}

/// Asks every destination of `transfers` (at most `concurrency` at once) and prints the answers; fails,
/// with the job's exit rule, if a destination could not answer.
pub fn run(transfers: &[JobTransfer], concurrency: usize, json: bool) -> Result<(), Failed> {
    let dests: Vec<usize> = transfers.iter().map(|t| t.pushes.len()).collect();
    let work = |item: &WorkItem| -> Vec<Result<DryRunReport, SessionError>> {
        item.dests.iter().map(|&d| dry_run(&transfers[item.transfer].pushes[d])).collect()
    };
    let mut ends = Vec::new();
    for ((t, d), answer) in run_pool(one_per_destination(&dests), concurrency, &work) {
        let (name, to) = (&transfers[t].name, &transfers[t].pushes[d].url);
        let error = match answer {
            Ok(report) => {
                let text = if json { to_json(name, to, &report) } else { table(name, to, &report) };
                crate::cmd::packaging::print_stdout_line(text.trim_end());
                None
            }
            Err(e) => {
                if json {
                    let j = JsonObject::new().str("name", name).str("to", to).str("error", &e.to_string());
                    crate::cmd::packaging::print_stdout_line(&j.finish());
                }
                eprintln!("mover job: {name} -> {to}: {e}");
                Some((e.exit_class(), e.to_string()))
            }
        };
        ends.push((name.clone(), to.clone(), error));
    }
    summary::result(&ends, "dry runs", "the listing above is of the destinations that answered")
}

/// The text answer of one destination: a line of totals, then a line per file.
pub fn table(name: &str, to: &str, r: &DryRunReport) -> String {
    let t = Totals::of(&r.files);
    let mut out = format!(
        "{name} -> {to}: {} new, {} changed ({} held by partials), {} unchanged ({}): would send {} files, {}\n",
        t.new_files,
        t.changed_files,
        format_bytes(t.resumed_bytes),
        t.skipped_files,
        format_bytes(t.skipped_bytes),
        t.files,
        format_bytes(t.send_bytes),
    );
    for f in &r.files {
        let held = match f.verdict.held {
            0 => String::new(),
            h => format!("  (partial holds {})", format_bytes(h)),
        };
        out += &format!("  {:<9}  {:>11}  {}{held}\n", f.verdict.kind.name(), format_bytes(f.bytes_to_send()), f.path);
    }
    out
}

/// The `--json` answer of one destination: `name`, `to`, `files` (each `path`, `verdict`, `bytes` a push
/// would send, `size`, `held`), then the [`Totals`] under their own names (`would_send_files`, ...).
pub fn to_json(name: &str, to: &str, r: &DryRunReport) -> String {
    let t = Totals::of(&r.files);
    let files = r.files.iter().map(|f| {
        JsonObject::new()
            .str("path", &f.path)
            .str("verdict", f.verdict.kind.name())
            .u64("bytes", f.bytes_to_send())
            .u64("size", f.size)
            .u64("held", f.verdict.held)
    });
    JsonObject::new()
        .str("name", name)
        .str("to", to)
        .array("files", files)
        .u64("new_files", t.new_files)
        .u64("changed_files", t.changed_files)
        .u64("unchanged_files", t.skipped_files)
        .u64("files_to_send", t.files)
        .u64("bytes_of_files_to_send", t.bytes)
        .u64("resumed_bytes", t.resumed_bytes)
        .u64("skipped_files", t.skipped_files)
        .u64("skipped_bytes", t.skipped_bytes)
        .u64("send_bytes", t.send_bytes)
        .u64("skipped", r.skipped)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::verdict::Verdict;

    fn f(path: &str, size: u64, kind: VerdictKind, held: u64) -> FileVerdict {
        FileVerdict { path: path.into(), size, verdict: Verdict { kind, held } }
    }

    #[test]
    fn totals_use_the_names_of_a_push_report() {
        let files = [
            f("d/a", 100, VerdictKind::New, 0),
            f("d/b", 50, VerdictKind::Changed, 20),
            f("d/c", 7, VerdictKind::Unchanged, 0),
        ];
        let t = Totals::of(&files);
        assert_eq!(
            t,
            Totals {
                files: 2,
                bytes: 150,
                new_files: 1,
                changed_files: 1,
                resumed_bytes: 20,
                skipped_files: 1,
                skipped_bytes: 7,
                send_bytes: 130
            }
        );
        let r = DryRunReport { files: files.to_vec(), skipped: 0, peer: None };
        let text = table("data", "mover://h/in", &r);
        assert!(
            text.starts_with("data -> mover://h/in: 1 new, 1 changed (20 B held by partials), 1 unchanged"),
            "{text}"
        );
        assert!(text.contains("\n  changed           30 B  d/b  (partial holds 20 B)\n"), "{text}");
        let j = to_json("data", "mover://h/in", &r);
        assert!(j.contains(r#"{"path":"d/b","verdict":"changed","bytes":30,"size":50,"held":20}"#), "{j}");
        assert!(
            j.contains(r#""files_to_send":2,"bytes_of_files_to_send":150,"resumed_bytes":20,"skipped_files":1"#),
            "{j}"
        );
    }
}
