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
    /// `--timeout`): running the same command again resumes.
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
  5  retryable failure: network unreachable, connection dropped, timeout, path silent past --timeout
     (running the same command again resumes)
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
}
