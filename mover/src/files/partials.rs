//! Finding and sweeping the partial files sessions left under a root (issue 15, item 7: no orphans).
//!
//! A partial with a journal is kept by an aborted session so that the next run resumes it; one that no run
//! ever comes back for would fill the disk silently. The daemon lists them at start and removes those older
//! than `--partial-max-age` ([`sweep_partials`]), then again every hour.

use super::partial::{is_claimed, PARTIAL_SUFFIX};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One partial file (or a journal left without its partial) found under a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialInfo {
    /// The partial (or the lone journal), relative to the root.
    pub path: PathBuf,
    /// Bytes the partial and its journal occupy on disk (allocated blocks: a sparse partial counts what it
    /// holds, not its announced size).
    pub disk_bytes: u64,
    /// Whether it has a journal (a rerun can resume it).
    pub journal: bool,
    /// Time since the newest modification of the partial or its journal.
    pub age: Duration,
    /// Whether a live session holds it (never removed).
    pub in_use: bool,
    /// Whether [`sweep_partials`] removed it.
    pub removed: bool,
}

/// Every partial under `root` and every journal whose partial is gone: names `.<name>.mover.part`, their
/// journals (`.journal`, and `.journal.new` a crash left mid-rewrite), and the per-session names of
/// earlier versions (`.<name>.mover-<16 hex digits>.part`, never resumed). Walks `root` without following
/// symbolic links (a link is neither listed nor entered) and lists only regular files. Unreadable
/// directories are skipped; an error reading `root` itself is returned.
pub fn list_partials(root: &Path) -> io::Result<Vec<PartialInfo>> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if first => return Err(e),
            Err(_) => continue,
        };
        first = false;
        let mut names: Vec<(String, fs::Metadata)> = Vec::new();
        for entry in entries.flatten() {
            // `file_type` and `symlink_metadata` never follow a link.
            let Ok(meta) = fs::symlink_metadata(entry.path()) else { continue };
            if meta.file_type().is_dir() {
                stack.push(entry.path());
            } else if meta.file_type().is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push((name.to_owned(), meta));
                }
            }
        }
        collect_dir(root, &dir, &names, now, &mut found);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Lists the partials under `root` ([`list_partials`]) and removes those (with their journals) whose newest
/// modification is older than `max_age` and that no live session holds. Returns everything listed, the
/// removed ones marked. A removal that fails leaves that entry unmarked.
pub fn sweep_partials(root: &Path, max_age: Duration) -> io::Result<Vec<PartialInfo>> {
    let mut found = list_partials(root)?;
    for p in &mut found {
        if p.age < max_age || p.in_use {
            continue;
        }
        let path = root.join(&p.path);
        let mut ok = remove_if_there(&path);
        if is_partial(file_name(&p.path)) {
            let journal = with_suffix(&path, ".journal");
            ok &= remove_if_there(&journal) & remove_if_there(&with_suffix(&journal, ".new"));
        }
        p.removed = ok;
    }
    Ok(found)
}

/// What is the partial (or lone journal) in one directory, from its regular files' names.
fn collect_dir(root: &Path, dir: &Path, names: &[(String, fs::Metadata)], now: SystemTime, out: &mut Vec<PartialInfo>) {
    let meta_of = |n: &str| names.iter().find(|(m, _)| m == n).map(|(_, meta)| meta);
    for (name, meta) in names {
        if is_partial(name) || is_legacy_partial(name) {
            let mut disk_bytes = meta.blocks() * 512;
            let mut newest = meta.modified().ok();
            let mut journal = false;
            for suffix in [".journal", ".journal.new"] {
                if let Some(j) = meta_of(&format!("{name}{suffix}")) {
                    journal |= suffix == ".journal";
                    disk_bytes += j.blocks() * 512;
                    newest = newest.max(j.modified().ok());
                }
            }
            let path = dir.join(name);
            out.push(PartialInfo {
                path: rel(&path, root),
                disk_bytes,
                journal,
                age: newest.and_then(|t| now.duration_since(t).ok()).unwrap_or_default(),
                // An error asking counts as held: never remove what might be in use.
                in_use: is_partial(name) && is_claimed(&path).unwrap_or(true),
                removed: false,
            });
            continue;
        }
        // A journal (or its rewrite) whose partial is gone: listed on its own, to be swept.
        let base = name.strip_suffix(".journal.new").or_else(|| name.strip_suffix(".journal"));
        if let Some(base) = base.filter(|b| is_partial(b) && meta_of(b).is_none()) {
            let lone_journal = name.ends_with(".journal.new") && meta_of(&format!("{base}.journal")).is_some();
            if lone_journal {
                continue; // Listed with its `.journal`.
            }
            out.push(PartialInfo {
                path: rel(&dir.join(name), root),
                disk_bytes: meta.blocks() * 512,
                journal: true,
                age: meta.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default(),
                in_use: false,
                removed: false,
            });
        }
    }
}

/// `.<name>.mover.part` with a non-empty name.
fn is_partial(name: &str) -> bool {
    name.len() > 1 + PARTIAL_SUFFIX.len() && name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX)
}

/// `.<name>.mover-<16 lowercase hex digits>.part`, the per-session names of earlier versions.
fn is_legacy_partial(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".part") else { return false };
    let Some((head, tag)) = stem.rsplit_once(".mover-") else { return false };
    head.len() > 1
        && head.starts_with('.')
        && tag.len() == 16
        && tag.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn remove_if_there(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

fn rel(path: &Path, root: &Path) -> PathBuf {
    path.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

/// Parses a `--partial-max-age` value: a whole number with a unit, `7d`, `12h`, `30m` or `3600s`.
pub fn parse_max_age(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid age '{s}': use a whole number with a unit, such as 7d, 12h, 30m or 3600s");
    let (digits, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    };
    secs.map(Duration::from_secs).ok_or_else(bad)
}
