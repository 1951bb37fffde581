//! mover's XDP program: the classifier that sends mover's UDP frames to AF_XDP sockets and everything else to the
//! kernel, with its loader.
//!
//! Why bytecode emitted at run time (as firedancer does, `src/waltz/xdp/fd_xdp_redirect_prog.c`) and not a
//! compiled object: the program is about a hundred instructions, so writing them from Rust (`insn.rs`,
//! `program.rs`) needs no clang, LLVM or BPF target on the build machine — `cargo build` alone builds mover, and
//! there is no committed binary that can drift from its source. The cost is bytecode that is hard to read, so the
//! same rules are written a second time in plain Rust (`classify.rs`) and the two are tested against each other:
//! in user space on fixtures (`fixtures.rs`) and fuzzed frames, and in the kernel with `BPF_PROG_TEST_RUN` on the
//! same frames and thousands of mutations of them (`tests/kernel.rs`, as root). See
//! docs/decisions/0004-xdp-program.md.
//!
//! Layout: `insn` (encoding, assembler with labels), `program` (the XDP program), `classify` (the reference),
//! `fixtures` (test frames, public for mover's tests), `sys` (`bpf(2)` wrappers and [`LoadedProgram`]).

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod classify;
pub mod fixtures;
pub mod insn;
pub mod program;
pub mod sys;

pub use classify::{classify, PassReason, Verdict, L3};
pub use program::{
    xdp_classifier, MapFds, PROGRAM_NAME, STAT_MATCHED_NO_SOCKET, STAT_PASSED, STAT_REDIRECTED, XDP_PASS, XDP_REDIRECT,
};
pub use sys::{load_classifier, LoadedProgram};
