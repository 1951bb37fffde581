//! The process's open-files limit. A receiver holds a descriptor per file whose data has started arriving
//! and that is not committed yet (its partial's claim, module `partial`), up to a bound taken from this
//! limit (module `claims`: half of what is left after a reserve, at most 4,096); past it, claims are
//! released and taken again. A higher limit means fewer of those reopens (issue 18, item 4: 100,000 files
//! of 4 KiB had ~19,000 in flight at once), so the soft limit is raised to the hard one.

use std::io;

/// Raises the soft limit on open files to the hard limit (as the Go runtime does at start), returning the
/// limit now in force. Failing leaves the limit as it was: the error is reported by the first open that
/// runs out ([`emfile_hint`] says what to do then).
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // Safety: getrlimit writes only the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if l.rlim_cur < l.rlim_max {
        let raised = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
        // Safety: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        l = raised;
    }
    Ok(l.rlim_cur)
}

/// What to do about `error` if it is "too many open files", for the end of a message.
pub fn emfile_hint(error: &io::Error) -> &'static str {
    if error.raw_os_error() == Some(libc::EMFILE) {
        "; raise the open-files limit (ulimit -n, or LimitNOFILE= of the service): a transfer holds \
         descriptors for its sockets, disk I/O and files in flight"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = raise_open_files_limit().unwrap();
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // Safety: getrlimit writes only the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        assert_eq!((l.rlim_cur, now), (l.rlim_max, l.rlim_max));
    }

    #[test]
    fn only_emfile_gets_the_hint() {
        assert!(emfile_hint(&io::Error::from_raw_os_error(libc::EMFILE)).contains("ulimit -n"));
        assert_eq!(emfile_hint(&io::Error::from_raw_os_error(libc::ENOENT)), "");
    }
}
