//! Why a state machine failed, as far as a rerun is concerned: the session layer turns it into an exit code
//! (`crate::exit`), and the retry loop retries only what the network caused.

/// The kind of a failure the sender or the receiver recorded with its message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureKind {
    /// Anything a rerun does not fix: a read or write error, a full disk, failed verification, the peer's
    /// refusal.
    #[default]
    Other,
    /// No datagram and no control message from the peer for the whole peer timeout (`--timeout`): the path
    /// or the peer is down. A rerun resumes.
    Silent,
    /// The control connection closed or failed mid-session. A rerun resumes.
    ControlLost,
    /// Full-size datagrams stopped arriving while feedback still did: a path MTU black hole
    /// (PROTOCOL.md §4.8). A rerun at the base datagram size resumes.
    PathMtu,
}

impl FailureKind {
    /// Whether the network caused it (running the session again may succeed).
    pub fn is_network(self) -> bool {
        !matches!(self, FailureKind::Other)
    }
}
