//! What can end a session, typed. `Display` is what the peer may see: a daemon sends `err.to_string()` to
//! its client as it is, so no variant's text names a path above the daemon's root.

use crate::connect::ConnectError;
use crate::exit::ExitClass;
use crate::files::{FilesError, SpaceShortfall};
use crate::proto::FailureKind;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a session failed.
#[derive(Debug)]
pub enum SessionError {
    /// The connection could not be set up (address, TCP, TLS, credentials, SSH).
    Connect(ConnectError),
    /// The file system side refused or failed (paths relative to the root).
    Files(FilesError),
    /// The peer refused the session, with its reason; `who` is "server" or "client".
    Refused {
        /// Who refused: "server" or "client".
        who: &'static str,
        /// The peer's reason, as it sent it.
        message: String,
    },
    /// The peer broke the protocol, or the control channel failed (text from `net`).
    Protocol(String),
    /// This side's rules or limits refuse what the peer asked for (`--max-files`, versions, rates, ...).
    NotAllowed(String),
    /// A path the peer named lies outside the root (an absolute path over `--stdio`).
    OutsideRoot {
        /// The path as the peer wrote it.
        path: String,
    },
    /// A source a peer asked for cannot be sent; `why` says what it is.
    NotSendable {
        /// The source, relative to the root.
        path: String,
        /// Why: "is a symbolic link: not sent (symlink escape)", "is not a regular file or directory".
        why: &'static str,
    },
    /// This side cannot run a session as configured (cores, disk backend, MTU, XDP): text from the layers
    /// that judged it.
    Setup(String),
    /// The transfer failed after it started (the pipeline's text).
    Transfer(String),
    /// The root to serve is missing or not a directory (said at start-up, or to an SSH user whose root it is).
    Root {
        /// The root as configured.
        path: PathBuf,
        /// Why it cannot be read (`None`: it is not a directory).
        error: Option<io::Error>,
    },
    /// A session the daemon served failed: for its log (the client was sent `Display` of `error`).
    Served {
        /// The client's address.
        peer: SocketAddr,
        /// Who it authenticated as, if it got that far.
        who: Option<String>,
        /// What failed.
        error: Box<SessionError>,
    },
    /// No datagram and no control message from the peer for `seconds` (`--timeout`): the path or the peer
    /// is down. Retryable: a rerun resumes.
    PathSilent {
        /// Who fell silent: "server" or "client".
        who: &'static str,
        /// How long the silence lasted (the timeout).
        seconds: u64,
    },
    /// The control connection closed, failed or did not answer mid-session (text from `net`). Retryable.
    ConnectionLost(String),
    /// Full-size datagrams stopped arriving while feedback did: a path MTU black hole (PROTOCOL.md §4.8).
    /// `push` runs the session again at the base size by itself; a rerun at `--mtu 1500` resumes.
    PathMtuBlackHole(String),
    /// Some files were committed and some were not.
    Partial {
        /// Who committed them: "server" or "client".
        who: &'static str,
        /// Files committed.
        committed_files: u64,
        /// Files in the session.
        files: u64,
        /// Bytes committed.
        committed_bytes: u64,
        /// Bytes in the session.
        bytes: u64,
    },
    /// The receiving file system cannot hold what is still to write (checked before data flows). No rerun
    /// fixes it until space is freed.
    NoSpace(SpaceShortfall),
    /// A local operation failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// What the OS said.
        error: io::Error,
    },
}

impl SessionError {
    /// The exit code's class (crate::exit): what the caller should do about it. Only [`ExitClass::Retryable`]
    /// errors are retried (`--retries`).
    pub fn exit_class(&self) -> ExitClass {
        match self {
            SessionError::Connect(e) => e.exit_class(),
            SessionError::Files(e) => e.exit_class(),
            SessionError::Served { error, .. } => error.exit_class(),
            SessionError::PathSilent { .. } | SessionError::ConnectionLost(_) | SessionError::PathMtuBlackHole(_) => {
                ExitClass::Retryable
            }
            // The daemon's queue is full: the same command later may well be served.
            SessionError::Refused { message, .. } if message.starts_with(crate::wire::control::SERVER_BUSY) => {
                ExitClass::Retryable
            }
            SessionError::Partial { .. } => ExitClass::Partial,
            // The peer's store waited for another session's lock on a partial and gave up (two pushes of one
            // tree at once, a retry overlapping its predecessor): that session ends, so a retry gets the file.
            SessionError::Transfer(m) if m.contains(crate::files::PARTIAL_BUSY) => ExitClass::Retryable,
            _ => ExitClass::Failure,
        }
    }

    /// The error for a control channel that failed, closed or did not answer while a session was being set
    /// up (`message` from `net`): retryable, except a peer that speaks TLS where plain frames were expected
    /// (`--insecure-no-auth` on one side only), which no retry fixes.
    pub fn lost(message: String) -> SessionError {
        if message.contains(crate::net::PEER_SPEAKS_TLS) {
            SessionError::Protocol(message)
        } else {
            SessionError::ConnectionLost(message)
        }
    }

    /// What a client with `--insecure-no-auth` (`plain`) is told when the daemon at `server` answered in TLS:
    /// the mismatch in words and the flags that fix it, instead of the channel's failure.
    pub fn for_plain_client(self, server: &str, plain: bool) -> SessionError {
        if plain && self.to_string().contains(crate::net::PEER_SPEAKS_TLS) {
            return SessionError::Protocol(format!(
                "{server} is a TLS daemon, and this client was started with --insecure-no-auth (plain TCP): drop \
                 --insecure-no-auth and pass --ca FILE (the daemon's certificate or its CA) with --token-file FILE, \
                 or --cert and --key"
            ));
        }
        self
    }

    /// The error for a data phase that failed with `message`, of `kind` as the state machine recorded it:
    /// a silent path and a lost control connection become the retryable variants.
    pub fn from_transfer(message: String, kind: FailureKind, who: &'static str, timeout: Duration) -> SessionError {
        match kind {
            FailureKind::Silent => SessionError::PathSilent { who, seconds: timeout.as_secs() },
            FailureKind::ControlLost => SessionError::ConnectionLost(message),
            FailureKind::PathMtu => SessionError::PathMtuBlackHole(message),
            FailureKind::Other => SessionError::Transfer(message),
        }
    }
}

/// What to do after a failure the network caused.
const RERUN_RESUMES: &str = "run the same command again: it resumes";

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Connect(e) => e.fmt(f),
            SessionError::Files(e) => e.fmt(f),
            SessionError::Refused { who, message } => write!(f, "{who} refused: {message}"),
            SessionError::Protocol(m) | SessionError::NotAllowed(m) => f.write_str(m),
            SessionError::Setup(m) | SessionError::Transfer(m) => f.write_str(m),
            SessionError::OutsideRoot { path } => write!(f, "'{path}' lies outside this server's root"),
            SessionError::NotSendable { path, why } => write!(f, "'{path}' {why}"),
            SessionError::Io { what, error } => write!(f, "{what}: {error}"),
            SessionError::NoSpace(short) => short.fmt(f),
            SessionError::PathSilent { who, seconds } => write!(
                f,
                "the path to the {who} was silent for {seconds} s (--timeout {seconds}): nothing got through \
                 (a partition, or the {who} stalled); {RERUN_RESUMES}"
            ),
            SessionError::ConnectionLost(m) => write!(f, "{m}; {RERUN_RESUMES}"),
            SessionError::PathMtuBlackHole(m) => write!(f, "{m}; run it again with --mtu 1500: it resumes"),
            SessionError::Partial { who, committed_files, files, committed_bytes, bytes } => write!(
                f,
                "partial transfer: the {who} committed {committed_files} of {files} files ({committed_bytes} of \
                 {bytes} bytes)"
            ),
            SessionError::Root { path, error: None } => write!(f, "root '{}' is not a directory", path.display()),
            SessionError::Root { path, error: Some(e) } => {
                write!(f, "root '{}' does not exist or cannot be read: {e}", path.display())
            }
            SessionError::Served { peer, who: None, error } => write!(f, "session from {peer}: {}", error),
            SessionError::Served { peer, who: Some(who), error } => {
                write!(f, "session from {peer}: {} ({who})", error)
            }
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Connect(e) => Some(e),
            SessionError::Files(e) => Some(e),
            SessionError::Io { error, .. } => Some(error),
            SessionError::Root { error: Some(e), .. } => Some(e),
            SessionError::Served { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }
}

impl From<ConnectError> for SessionError {
    fn from(e: ConnectError) -> SessionError {
        SessionError::Connect(e)
    }
}

impl From<FilesError> for SessionError {
    fn from(e: FilesError) -> SessionError {
        SessionError::Files(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_the_root_names_the_path_as_asked() {
        let outside = SessionError::OutsideRoot { path: "/etc".into() };
        assert_eq!(outside.to_string(), "'/etc' lies outside this server's root");
    }

    #[test]
    fn network_failures_are_retryable_and_say_that_a_rerun_resumes() {
        let t = Duration::from_secs(5);
        let silent = SessionError::from_transfer("no word".into(), FailureKind::Silent, "server", t);
        assert_eq!(silent.exit_class(), ExitClass::Retryable);
        let text = silent.to_string();
        assert!(text.contains("silent for 5 s") && text.contains("it resumes"), "{text}");
        let lost = SessionError::from_transfer("closed".into(), FailureKind::ControlLost, "server", t);
        assert_eq!(lost.exit_class(), ExitClass::Retryable);
        let other = SessionError::from_transfer("disk full".into(), FailureKind::Other, "server", t);
        assert_eq!(other.exit_class(), ExitClass::Failure);
        let refused = ConnectError::Refused("wrong token".into());
        assert_eq!(SessionError::from(refused).exit_class(), ExitClass::AuthRefused);
        // A daemon whose queue is full, over TLS (refused before authentication ends) and over plain TCP.
        let busy = "the server is busy: 1 sessions running, 1 waiting (--max-queue); try again later";
        assert_eq!(SessionError::from(ConnectError::Refused(busy.into())).exit_class(), ExitClass::Retryable);
        assert_eq!(SessionError::Refused { who: "server", message: busy.into() }.exit_class(), ExitClass::Retryable);
        assert_eq!(SessionError::Refused { who: "server", message: "no".into() }.exit_class(), ExitClass::Failure);
        let partial =
            SessionError::Partial { who: "server", committed_files: 2, files: 3, committed_bytes: 10, bytes: 15 };
        assert_eq!(partial.exit_class(), ExitClass::Partial);
        assert_eq!(partial.to_string(), "partial transfer: the server committed 2 of 3 files (10 of 15 bytes)");
        let served = SessionError::Served { peer: ([127, 0, 0, 1], 1).into(), who: None, error: Box::new(silent) };
        assert_eq!(served.exit_class(), ExitClass::Retryable);
    }

    /// The receiver's store gave up waiting for another session's lock on a partial (as a CI run of
    /// tests/concurrent_pushes.rs saw): the sender is told in words, and retries, as the other session ends.
    #[test]
    fn a_partial_another_session_holds_is_retryable_on_both_ends() {
        let busy = crate::files::FilesError::PartialBusy { path: "d/src/a/.f30.mover.part".into() };
        assert_eq!(busy.exit_class(), ExitClass::Retryable, "a receiving client (pull) retries");
        let told = format!("receiver: reading back file id 24 to verify it: opening 'd/src/a/f30' for writing: {busy}");
        let t = Duration::from_secs(5);
        let failed = SessionError::from_transfer(told, FailureKind::Other, "server", t);
        assert_eq!(failed.exit_class(), ExitClass::Retryable, "{failed}");
    }
}
