//! The `mover` subcommands: what each prints around the library call that does the work. Argument
//! parsing lives in `main.rs` and [`args`]; sessions live in [`crate::session`]. Only `main.rs` imports this.

pub mod args;
pub mod bench_cipher;
pub mod bench_disk;
pub mod bench_e2e;
pub mod bench_net;
mod bench_net_series;
pub mod bench_plot;
pub mod bench_sampler;
pub mod copy;
pub mod demo;
pub mod doctor;
pub mod doctor_bottleneck;
pub mod doctor_checks;
pub mod doctor_host;
pub mod doctor_measure;
pub mod doctor_peer;
pub mod foreign_flags;
pub mod job;
pub mod packaging;
pub mod progress;
pub mod pull;
pub mod push;
pub mod serve;
pub mod serve_config;
pub mod status;
pub mod transfer;
