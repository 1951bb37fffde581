//! The `mover` subcommands.

pub mod bench_net;
