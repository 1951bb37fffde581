//! The `mover` subcommands: what each prints around the library call that does the work. Argument
//! parsing lives in `main.rs` and [`args`]; sessions live in [`crate::session`]. Only `main.rs` imports this.

pub mod args;
pub mod bench_cipher;
pub mod bench_disk;
pub mod bench_net;
pub mod demo;
pub mod foreign_flags;
pub mod pull;
pub mod push;
pub mod serve;
