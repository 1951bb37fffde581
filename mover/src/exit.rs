//! Exit codes: what a failed run tells a script or a scheduler, in the spirit of rsync's and rclone's.
//!
//! Each layer's error says which [`ExitClass`] it belongs to (`FilesError::exit_class`,
//! `ConnectError::exit_class`, `SessionError::exit_class`); `main` prints the one `mover: error: ...` line
//! and exits with [`ExitClass::code`]. The table is [`EXIT_CODES_HELP`], printed by `mover --help` and
//! copied in README.md. It sits on the lowest floor so that every layer's error can name its class.

/// What kind of failure ended a run, by what the caller should do about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExitClass {
    /// Everything asked for was done.
    #[default]
    Success,
    /// A failure that running again will not fix: the remote side refused, the disk is full, verification
    /// failed, or anything not classified otherwise.
    Failure,
    /// The command line is wrong (clap's own errors exit 2 as well).
    Usage,
    /// A source does not exist.
    SourceNotFound,
    /// The server refused the credentials (or they are unusable).
    AuthRefused,
    /// The network failed (unreachable, connection reset or dropped, a timeout, a path silent past
    /// `--timeout`), or another transfer still held a file this one writes: running the same command again
    /// resumes.
    Retryable,
    /// Some files were transferred and some were not.
    Partial,
}

impl ExitClass {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitClass::Success => 0,
            ExitClass::Failure => 1,
            ExitClass::Usage => 2,
            ExitClass::SourceNotFound => 3,
            ExitClass::AuthRefused => 4,
            ExitClass::Retryable => 5,
            ExitClass::Partial => 6,
        }
    }

    /// The class of exit code `code` (an unknown code is a [`ExitClass::Failure`]): what a remote end's
    /// outcome becomes here.
    pub const fn from_code(code: u8) -> ExitClass {
        match code {
            0 => ExitClass::Success,
            2 => ExitClass::Usage,
            3 => ExitClass::SourceNotFound,
            4 => ExitClass::AuthRefused,
            5 => ExitClass::Retryable,
            6 => ExitClass::Partial,
            _ => ExitClass::Failure,
        }
    }

    /// Whether running the session again (`--retries`, or the user) may succeed.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ExitClass::Retryable)
    }

    /// The class of an I/O error met on a local or remote file system: a missing file is
    /// [`ExitClass::SourceNotFound`] only where `missing_is_source` (reading a source); the rest is
    /// [`ExitClass::Failure`] (a full disk, a permission).
    pub fn of_io(error: &std::io::Error, missing_is_source: bool) -> ExitClass {
        match error.kind() {
            std::io::ErrorKind::NotFound if missing_is_source => ExitClass::SourceNotFound,
            _ => ExitClass::Failure,
        }
    }
}

/// What the user can do about an I/O error on the destination, for the end of its one line: a full disk or
/// quota (free space, then rerun: it resumes) and a destination that cannot be written (read-only, no
/// permission). `None` for anything else. By kind, so that it survives wrapping in `io::Error::new`.
pub fn io_fix(error: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    match error.kind() {
        StorageFull | QuotaExceeded => {
            Some("free space on the destination, then run the same command again: it resumes")
        }
        ReadOnlyFilesystem | PermissionDenied => {
            Some("the destination is not writable: make it writable (or choose another), then run the command again")
        }
        _ => None,
    }
}

/// `error`'s text followed by its fix ([`io_fix`]), if it has one and does not say it already.
pub fn with_fix(error: &std::io::Error) -> String {
    match io_fix(error) {
        Some(fix) if !error.to_string().contains(fix) => format!("{error}; {fix}"),
        _ => error.to_string(),
    }
}

/// A failure's one line and its class: what a subcommand hands `main` to print and exit with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// The exit code's class.
    pub class: ExitClass,
    /// The line after `mover: error: `.
    pub message: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

/// The exit-code table for `mover --help` and README.md.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure that a rerun will not fix: remote refused, disk full, verification failed, anything else
  2  usage error: a bad flag, operand or value
  3  source not found
  4  authentication refused
  5  retryable failure: network unreachable, connection dropped, timeout, path silent past --timeout,
     another transfer still writing the same file (running the same command again resumes)
  6  partial success: some files were transferred, some were not";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_the_table_lists_each() {
        let all = [
            ExitClass::Success,
            ExitClass::Failure,
            ExitClass::Usage,
            ExitClass::SourceNotFound,
            ExitClass::AuthRefused,
            ExitClass::Retryable,
            ExitClass::Partial,
        ];
        let mut codes: Vec<u8> = all.iter().map(|c| c.code()).collect();
        codes.dedup();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6]);
        for c in codes {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {c}  ")), "code {c} missing from the table");
        }
        assert!(ExitClass::Retryable.is_retryable() && !ExitClass::AuthRefused.is_retryable());
    }

    #[test]
    fn a_full_or_read_only_disk_names_its_fix_even_when_wrapped() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let wrapped = std::io::Error::new(full.kind(), format!("writing 'a' at offset 0: {full}"));
        let line = with_fix(&wrapped);
        assert!(line.starts_with("writing 'a' at offset 0: No space left") && line.ends_with("it resumes"), "{line}");
        let ro = std::io::Error::from_raw_os_error(libc::EROFS);
        assert!(with_fix(&ro).contains("not writable"));
        let again = std::io::Error::new(ro.kind(), with_fix(&ro));
        assert_eq!(with_fix(&again), again.to_string(), "said once");
        assert_eq!(with_fix(&std::io::Error::from_raw_os_error(libc::EIO)), "Input/output error (os error 5)");
    }
}
