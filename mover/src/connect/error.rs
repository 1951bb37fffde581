//! What can go wrong while setting up a connection, typed by what the user can do about it.

use crate::exit::ExitClass;
use std::fmt;
use std::io;

/// A connection that could not be set up. The texts name only what the user typed or the peer said: a
/// client may print them as they are.
#[derive(Debug)]
pub enum ConnectError {
    /// An operand or URL that does not parse (`mover://HOST[:PORT]/PATH`, `[user@]host:PATH`).
    BadAddress(String),
    /// A host name that does not resolve, or resolves to nothing.
    Resolve {
        /// The host as written.
        host: String,
        /// What the resolver said (`None`: it gave no address).
        error: Option<io::Error>,
    },
    /// The TCP connection could not be made.
    Connect {
        /// Whom we dialled, as shown to the user (`host:port` or `host (addr)`).
        target: String,
        /// What the OS said.
        error: io::Error,
    },
    /// The server refused the client while authenticating it, with its reason.
    Refused(String),
    /// TLS or the control channel failed, or the peer broke the protocol while the connection was set up.
    Channel(String),
    /// Local credentials or TLS settings are unusable (flags, certificate, key or token files), or a
    /// client's credentials were refused.
    Credentials(String),
    /// An SSH session could not be started, or the remote mover did not answer properly.
    Ssh(String),
    /// A local resource failed (a thread, stdin or stdout).
    Local {
        /// What was being done.
        what: &'static str,
        /// What the OS said.
        error: io::Error,
    },
}

impl ConnectError {
    /// The exit code's class (crate::exit): a bad operand is a usage error; a refusal while authenticating
    /// and unusable credentials are [`ExitClass::AuthRefused`] (never retried); an address that does not
    /// resolve, a TCP connection that fails and a channel that breaks while being set up are
    /// [`ExitClass::Retryable`] (the daemon may be restarting, the network coming back).
    pub fn exit_class(&self) -> ExitClass {
        match self {
            ConnectError::BadAddress(_) => ExitClass::Usage,
            ConnectError::Resolve { .. } | ConnectError::Connect { .. } | ConnectError::Channel(_) => {
                ExitClass::Retryable
            }
            // A daemon whose queue is full: the same command later may well be served.
            ConnectError::Refused(m) if m.starts_with(crate::wire::control::SERVER_BUSY) => ExitClass::Retryable,
            ConnectError::Refused(_) | ConnectError::Credentials(_) => ExitClass::AuthRefused,
            ConnectError::Ssh(_) | ConnectError::Local { .. } => ExitClass::Failure,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::BadAddress(m) | ConnectError::Channel(m) | ConnectError::Credentials(m) => f.write_str(m),
            ConnectError::Ssh(m) => f.write_str(m),
            ConnectError::Resolve { host, error: Some(e) } => write!(f, "cannot resolve '{host}': {e}"),
            ConnectError::Resolve { host, error: None } => write!(f, "'{host}' has no address"),
            ConnectError::Connect { target, error } => write!(f, "cannot connect to {target}: {error}"),
            ConnectError::Refused(m) => write!(f, "server refused: {m}"),
            ConnectError::Local { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Resolve { error: Some(e), .. } => Some(e),
            ConnectError::Connect { error, .. } | ConnectError::Local { error, .. } => Some(error),
            _ => None,
        }
    }
}
