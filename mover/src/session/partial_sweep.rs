//! The daemon's sweep of partial files (issue 15, item 7): at start and then hourly, list the partials under
//! the root, remove those older than `--partial-max-age`, and say so (one line per partial kept, one
//! summary line).

use crate::files::partials::{sweep_partials, PartialInfo};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--partial-max-age`'s default: a week.
pub const DEFAULT_PARTIAL_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// How often the daemon sweeps after the first sweep at start.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

/// Sweeps `root` now and then every [`SWEEP_EVERY`] on a thread of its own, for the daemon's lifetime.
/// The first sweep runs on that thread too, so a large root does not delay the first session.
pub fn spawn_partial_sweeper(root: PathBuf, max_age: Duration) {
    let spawned = std::thread::Builder::new().name("partial-sweep".into()).spawn(move || loop {
        sweep_and_log(&root, max_age);
        std::thread::sleep(SWEEP_EVERY);
    });
    if let Err(e) = spawned {
        super::daemon_log::warn("partial_sweep", &format!("cannot start the hourly sweep of partial files: {e}"));
    }
}

/// One sweep with its log lines.
pub fn sweep_and_log(root: &Path, max_age: Duration) {
    match sweep_partials(root, max_age) {
        Ok(list) => {
            for line in sweep_lines(&list, max_age) {
                super::daemon_log::info("partial_sweep", &line);
            }
        }
        Err(e) => super::daemon_log::warn("partial_sweep", &format!("cannot list partial files under the root: {e}")),
    }
}

/// The log lines of a sweep: each partial kept (with why), then the summary.
pub fn sweep_lines(list: &[PartialInfo], max_age: Duration) -> Vec<String> {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let mut lines = Vec::new();
    for p in list.iter().filter(|p| !p.removed) {
        let why = if p.in_use { "in use by a session" } else { "resumable until it is older than the maximum age" };
        lines.push(format!(
            "partial '{}' kept: {:.1} MiB on disk, {}, {} old, {why}",
            p.path.display(),
            mib(p.disk_bytes),
            if p.journal { "with a resume journal" } else { "no journal" },
            human_age(p.age),
        ));
    }
    let removed: Vec<_> = list.iter().filter(|p| p.removed).collect();
    lines.push(format!(
        "{} partial files under the root: {} kept, {} removed ({:.1} MiB freed) as older than {}",
        list.len(),
        list.len() - removed.len(),
        removed.len(),
        mib(removed.iter().map(|p| p.disk_bytes).sum()),
        human_age(max_age),
    ));
    lines
}

fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3_600),
        s if s >= 3_600 => format!("{}h{}m", s / 3_600, s % 3_600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
