//! `mover serve`: the daemon or, with `--stdio`, one session over SSH's pipes.

use crate::session::{serve, serve_stdio, ServeOptions, SessionError, StdioOutcome};

/// Runs the daemon, or one `--stdio` session. A `--stdio` failure the client was told about exits 1
/// without printing it again (ssh forwards our stderr to the same terminal).
pub fn run(opts: &ServeOptions, stdio: bool) -> Result<(), SessionError> {
    if !stdio {
        return serve(opts);
    }
    match serve_stdio(opts)? {
        StdioOutcome::Done => Ok(()),
        StdioOutcome::FailedAndReported => std::process::exit(1),
    }
}

/// The remote user's home directory: the root when `--stdio` runs without `--root`.
pub fn default_root() -> Result<std::path::PathBuf, String> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(h.into()),
        _ => Err("--stdio without --root needs $HOME".into()),
    }
}
