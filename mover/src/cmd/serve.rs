//! `mover serve`: the daemon or, with `--stdio`, one session over SSH's pipes.

use crate::session::{serve, serve_stdio, PathRule, ServeOptions, SessionError, StdioOutcome};
use std::path::PathBuf;

/// Runs the daemon (`stdio` is `None`), or one `--stdio` session whose paths `stdio` maps. A `--stdio`
/// failure the client was told about exits 1 without printing it again (ssh forwards our stderr to the
/// same terminal).
pub fn run(opts: &ServeOptions, stdio: Option<PathRule>) -> Result<(), SessionError> {
    let Some(rule) = stdio else { return serve(opts) };
    match serve_stdio(opts, &rule)? {
        StdioOutcome::Done => Ok(()),
        StdioOutcome::FailedAndReported => std::process::exit(1),
    }
}

/// The root to serve and, under `--stdio`, the rule for the paths the client names: with `--root DIR`
/// (the client's `--remote-root`) relative paths or absolute ones inside DIR; without, scp's semantics
/// (the root is `/`, relative paths start at the remote user's home: [`PathRule::Account`]).
pub fn root_and_rule(root: Option<PathBuf>, stdio: bool) -> Result<(PathBuf, Option<PathRule>), String> {
    match (root, stdio) {
        (Some(r), false) => Ok((r, None)),
        (Some(r), true) => Ok((r, Some(PathRule::AbsoluteInRoot))),
        (None, true) => {
            let rule = PathRule::Account { home: home()? };
            Ok((rule.root(std::path::Path::new("/")), Some(rule)))
        }
        (None, false) => Err("mover serve needs --root DIR: the directory pushes land in and pulls read from".into()),
    }
}

/// The remote user's home directory, where relative paths of a `--stdio` session start.
fn home() -> Result<PathBuf, String> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(h.into()),
        _ => Err("--stdio without --root needs $HOME (relative paths start there)".into()),
    }
}
