//! The command-line contract other scripts rely on: bad arguments are a clear error with exit status 2.
//! (Having an integration test also makes `cargo test --workspace` build the binary that mover's
//! `tests/netns_wan.rs` runs.)

use std::process::Command;

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_mover-wanem")).args(["--a", "x", "--delay", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!out.stderr.is_empty(), "no message on stderr");
}
