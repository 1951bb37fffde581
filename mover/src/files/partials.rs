//! Finding and sweeping the partial files sessions left under a root (issue 15, item 7: no orphans).
//!
//! A partial with a journal is kept by an aborted session so that the next run resumes it; one that no run
//! ever comes back for would fill the disk silently. The daemon lists them at start and removes those older
//! than `--partial-max-age` ([`sweep_partials`]), then again every hour.

use super::beneath::{Beneath, Dir, Resolve, Stat};
use super::partial::{try_lock_at, Lock, PARTIAL_SUFFIX};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
/// earlier versions (`.<name>.mover-<16 hex digits>.part`, never resumed). Walks `root` by descriptor
/// beneath it (each directory opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` or the strict
/// walk, its names examined with no-follow `*at` calls): a symbolic link is neither listed nor entered, and
/// only regular files are listed. Unreadable directories are skipped; an error reading `root` itself is
/// returned.
pub fn list_partials(root: &Path) -> io::Result<Vec<PartialInfo>> {
    visit(root, Resolve::configured(), None, &mut |_| {})
}

/// Lists the partials under `root` ([`list_partials`]) and removes those (with their journals) whose newest
/// modification is older than `max_age` and that no live session holds. Returns everything listed, the
/// removed ones marked. A removal that fails leaves that entry unmarked.
///
/// Each directory's partials are removed with `unlinkat` on the descriptor the directory was listed
/// through: a directory swapped for a symlink meanwhile changes nothing (the descriptor still names the
/// directory that was listed), so nothing outside the root is ever removed.
pub fn sweep_partials(root: &Path, max_age: Duration) -> io::Result<Vec<PartialInfo>> {
    visit(root, Resolve::configured(), Some(max_age), &mut |_| {})
}

/// The walk of [`list_partials`] and [`sweep_partials`]; `listed` runs after each directory is listed and
/// before anything in it is removed (tests swap directories there).
fn visit(
    root: &Path,
    resolve: Resolve,
    sweep: Option<Duration>,
    listed: &mut dyn FnMut(&Path),
) -> io::Result<Vec<PartialInfo>> {
    let beneath = Beneath::new(root)?.with_resolve(resolve);
    let now = SystemTime::now();
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut first = true;
    while let Some(rel_dir) = stack.pop() {
        let opened = beneath.dir(&rel_dir).and_then(|d| d.names().map(|n| (d, n)));
        let (dir, names) = match opened {
            Ok(l) => l,
            Err(e) if first => return Err(e),
            Err(_) => continue,
        };
        first = false;
        let mut files: Vec<(String, Stat)> = Vec::new();
        for name in names {
            let Ok(st) = dir.stat(&name) else { continue };
            if st.is_dir() {
                stack.push(rel_dir.join(&name));
            } else if let Some(name) = name.to_str() {
                // A link's temporary name (a crash between creating a link and renaming it) is itself a
                // symbolic link: listed by its own name, never followed.
                if st.is_file() || (st.is_symlink() && is_link_temp(name)) {
                    files.push((name.to_owned(), st));
                }
            }
        }
        let start = found.len();
        collect_dir(&dir, &rel_dir, &files, now, &mut found);
        listed(&rel_dir);
        if let Some(max_age) = sweep {
            for p in &mut found[start..] {
                remove_if_old(&dir, p, max_age);
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Removes `p` (listed in `dir`) and its journals if it is older than `max_age` and nobody holds it.
fn remove_if_old(dir: &Dir, p: &mut PartialInfo, max_age: Duration) {
    if p.age < max_age || p.in_use {
        return;
    }
    let name = file_name(&p.path).to_owned();
    if is_link_temp(&name) {
        // Never locked (a session creates and renames it at once); unlinking never follows it.
        p.removed = unlink_if_there(dir, &name);
        return;
    }
    // Removed while holding its lock: a session that claims it now finds it busy or gone, never loses it
    // under its writes.
    let _lock = match try_lock_at(dir, OsStr::new(&name)) {
        Ok(Lock::Busy) => {
            p.in_use = true;
            return;
        }
        Ok(Lock::Held(f)) => Some(f),
        Ok(Lock::Gone) => None,
        Err(_) => return,
    };
    let mut ok = unlink_if_there(dir, &name);
    if is_partial(&name) {
        let journal = format!("{name}.journal");
        ok &= unlink_if_there(dir, &journal) & unlink_if_there(dir, &format!("{journal}.new"));
    }
    p.removed = ok;
}

/// What is the partial (or lone journal) in one directory (`rel_dir` under the root, open as `dir`), from
/// its regular files' names.
fn collect_dir(dir: &Dir, rel_dir: &Path, names: &[(String, Stat)], now: SystemTime, out: &mut Vec<PartialInfo>) {
    let stat_of = |n: &str| names.iter().find(|(m, _)| m == n).map(|(_, st)| st);
    for (name, st) in names {
        if is_partial(name) || is_legacy_partial(name) || is_link_temp(name) {
            let mut disk_bytes = st.blocks * 512;
            let mut newest = modified(st);
            let mut journal = false;
            for suffix in [".journal", ".journal.new"] {
                if let Some(j) = stat_of(&format!("{name}{suffix}")) {
                    journal |= suffix == ".journal";
                    disk_bytes += j.blocks * 512;
                    newest = newest.max(modified(j));
                }
            }
            out.push(PartialInfo {
                path: rel_dir.join(name),
                disk_bytes,
                journal,
                age: newest.and_then(|t| now.duration_since(t).ok()).unwrap_or_default(),
                // An error asking counts as held: never remove what might be in use.
                in_use: is_partial(name)
                    && try_lock_at(dir, OsStr::new(name)).map_or(true, |l| matches!(l, Lock::Busy)),
                removed: false,
            });
            continue;
        }
        // A journal (or its rewrite) whose partial is gone: listed on its own, to be swept.
        let base = name.strip_suffix(".journal.new").or_else(|| name.strip_suffix(".journal"));
        if let Some(base) = base.filter(|b| is_partial(b) && stat_of(b).is_none()) {
            let lone_journal = name.ends_with(".journal.new") && stat_of(&format!("{base}.journal")).is_some();
            if lone_journal {
                continue; // Listed with its `.journal`.
            }
            out.push(PartialInfo {
                path: rel_dir.join(name),
                disk_bytes: st.blocks * 512,
                journal: true,
                age: modified(st).and_then(|t| now.duration_since(t).ok()).unwrap_or_default(),
                in_use: false,
                removed: false,
            });
        }
    }
}

fn modified(st: &Stat) -> Option<SystemTime> {
    let s = u64::try_from(st.mtime_s).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(s, st.mtime_ns.min(999_999_999)))
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

/// `.<name>.mover-<16 lowercase hex digits>.link`: the temporary name of a symbolic or hard link, created
/// and renamed into place at the end of a session (files::links); one is left only by a crash in between.
fn is_link_temp(name: &str) -> bool {
    name.strip_suffix(".link").is_some_and(|stem| is_legacy_partial(&format!("{stem}.part")))
}

fn unlink_if_there(dir: &Dir, name: &str) -> bool {
    match dir.unlink(OsStr::new(name), false) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::partial::claim;
    use crate::testing::TempDir;
    use std::fs::{self, File, FileTimes};

    fn age(p: &Path, by: Duration) {
        let t = SystemTime::now() - by;
        File::options().write(true).open(p).unwrap().set_times(FileTimes::new().set_modified(t)).unwrap();
    }

    fn names(list: &[PartialInfo]) -> Vec<String> {
        list.iter().map(|p| p.path.display().to_string()).collect()
    }

    #[test]
    fn sweeps_only_old_partials_and_their_journals_by_name() {
        let t = TempDir::new("sweep");
        let root = t.path();
        fs::create_dir_all(root.join("d/e")).unwrap();
        let day = Duration::from_secs(86_400);
        let mk = |p: &str, old: bool| {
            fs::write(root.join(p), b"x").unwrap();
            if old {
                age(&root.join(p), 8 * day);
            }
        };
        mk(".old.mover.part", true);
        mk(".old.mover.part.journal", true);
        mk("d/.fresh.mover.part", false);
        mk("d/e/.oldj.mover.part", true);
        // Its journal was written recently: the pair is as young as its newest file.
        mk("d/e/.oldj.mover.part.journal", false);
        mk("d/.gone.mover.part.journal", true); // A journal whose partial is gone.
        mk("d/.legacy.mover-0123456789abcdef.part", true);
        // Names that only look similar.
        for n in [
            "old.mover.part",
            ".mover.part",
            ".x.mover.partial",
            ".x.mover.part.bak",
            ".y.mover-0123.part",
            ".z.mover-0123456789ABCDEF.part",
            "keep.journal",
        ] {
            mk(n, true);
        }
        let list = sweep_partials(root, 7 * day).unwrap();
        assert_eq!(
            names(&list),
            [
                ".old.mover.part",
                "d/.fresh.mover.part",
                "d/.gone.mover.part.journal",
                "d/.legacy.mover-0123456789abcdef.part",
                "d/e/.oldj.mover.part"
            ]
        );
        let removed: Vec<_> = list.iter().filter(|p| p.removed).map(|p| p.path.display().to_string()).collect();
        assert_eq!(removed, [".old.mover.part", "d/.gone.mover.part.journal", "d/.legacy.mover-0123456789abcdef.part"]);
        assert!(list[0].journal && !list[1].journal);
        assert!(!root.join(".old.mover.part.journal").exists(), "the journal stayed behind");
        assert!(root.join("d/e/.oldj.mover.part").exists() && root.join("d/.fresh.mover.part").exists());
        for n in ["old.mover.part", ".mover.part", ".x.mover.partial", ".x.mover.part.bak", "keep.journal"] {
            assert!(root.join(n).exists(), "{n} was removed");
        }
        assert!(root.join(".y.mover-0123.part").exists() && root.join(".z.mover-0123456789ABCDEF.part").exists());
    }

    #[test]
    fn old_link_temporaries_are_swept_without_following_them() {
        let t = TempDir::new("sweep-link-temps");
        let outside = TempDir::new("sweep-link-target");
        let target = outside.path().join("precious");
        fs::write(&target, b"keep").unwrap();
        let day = Duration::from_secs(86_400);
        let old = SystemTime::now() - 8 * day;
        // A symlink's own mtime: set without following it.
        let lage = |p: &Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            let s = old.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
            let ts = [libc::timespec { tv_sec: s, tv_nsec: 0 }, libc::timespec { tv_sec: s, tv_nsec: 0 }];
            // Safety: a NUL-terminated path and two timespecs that outlive the call.
            let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
            assert_eq!(rc, 0);
        };
        let sym = t.path().join(".s.mover-0123456789abcdef.link");
        std::os::unix::fs::symlink(&target, &sym).unwrap();
        lage(&sym);
        let hard = t.path().join(".h.mover-0123456789abcdef.link");
        fs::write(&hard, b"x").unwrap();
        age(&hard, 8 * day);
        let young = t.path().join(".y.mover-0123456789abcdef.link");
        std::os::unix::fs::symlink(&target, &young).unwrap();
        let other = t.path().join(".o.mover-0123.link");
        std::os::unix::fs::symlink(&target, &other).unwrap();
        lage(&other);
        let list = sweep_partials(t.path(), 7 * day).unwrap();
        let removed: Vec<_> = list.iter().filter(|p| p.removed).map(|p| p.path.display().to_string()).collect();
        assert_eq!(removed, [".h.mover-0123456789abcdef.link", ".s.mover-0123456789abcdef.link"]);
        assert!(fs::symlink_metadata(&young).is_ok() && fs::symlink_metadata(&other).is_ok());
        assert_eq!(fs::read(&target).unwrap(), b"keep", "the link's target was touched");
    }

    #[test]
    fn symlinks_are_not_followed_and_claimed_partials_stay() {
        let t = TempDir::new("sweep-links");
        let outside = TempDir::new("sweep-outside");
        fs::write(outside.path().join(".o.mover.part"), b"x").unwrap();
        age(&outside.path().join(".o.mover.part"), Duration::from_secs(1_000));
        std::os::unix::fs::symlink(outside.path(), t.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join(".o.mover.part"), t.path().join(".l.mover.part")).unwrap();
        let held = t.path().join(".held.mover.part");
        let c = claim(&held, Path::new(".held.mover.part")).unwrap();
        age(&held, Duration::from_secs(1_000));
        let list = sweep_partials(t.path(), Duration::from_secs(10)).unwrap();
        assert_eq!(names(&list), [".held.mover.part"]);
        assert!(list[0].in_use && !list[0].removed);
        assert!(held.exists() && outside.path().join(".o.mover.part").exists());
        drop(c);
        let list = sweep_partials(t.path(), Duration::from_secs(10)).unwrap();
        assert!(list[0].removed && !held.exists());
    }

    /// A directory swapped for a symlink to outside between its listing and the removals: the removals go
    /// through the descriptor it was listed by, so the partial outside survives (either resolve mode).
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_sweep_leads_nowhere_outside() {
        for resolve in [Resolve::Auto, Resolve::Walk] {
            let t = TempDir::new("sweep-race");
            let outside = TempDir::new("sweep-race-outside");
            let (root, day) = (t.path(), Duration::from_secs(86_400));
            fs::create_dir_all(root.join("d/sub")).unwrap();
            fs::create_dir(outside.path().join("sub")).unwrap();
            for p in [root.join("d/.old.mover.part"), root.join("d/sub/.deep.mover.part")] {
                fs::write(&p, b"x").unwrap();
                age(&p, 8 * day);
            }
            let secrets = [outside.path().join(".old.mover.part"), outside.path().join("sub/.deep.mover.part")];
            for p in &secrets {
                fs::write(p, b"secret").unwrap();
                age(p, 8 * day);
            }
            let mut swaps = 0;
            let mut swap = |rel: &Path| {
                if rel == Path::new("d") {
                    fs::rename(root.join("d"), root.join("moved")).unwrap();
                    std::os::unix::fs::symlink(outside.path(), root.join("d")).unwrap();
                    swaps += 1;
                }
            };
            let list = visit(root, resolve, Some(7 * day), &mut swap).unwrap();
            assert_eq!(swaps, 1, "{resolve:?}");
            // The listed directory's partial went (from where it now is); `d/sub` was not entered through
            // the symlink, so nothing below it was listed or removed.
            assert_eq!(names(&list), ["d/.old.mover.part"], "{resolve:?}");
            assert!(list[0].removed && !root.join("moved/.old.mover.part").exists(), "{resolve:?}");
            assert!(root.join("moved/sub/.deep.mover.part").exists());
            for p in &secrets {
                assert_eq!(fs::read(p).unwrap(), b"secret", "{resolve:?}: {} was touched", p.display());
            }
        }
    }

    #[test]
    fn max_ages_parse_with_their_units() {
        assert_eq!(parse_max_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_max_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_max_age("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_max_age("3600s"), Ok(Duration::from_secs(3_600)));
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            let e = parse_max_age(bad).unwrap_err();
            assert!(e.contains("such as 7d, 12h, 30m or 3600s"), "{bad}: {e}");
        }
    }
}
