//! mover: a bulk data mover over rate-paced UDP with NAK retransmission.
//!
//! The crate is split the way the data flows:
//! - [`wire`]: packet and control-message formats (parse/emit, no I/O);
//! - [`proto`]: the sans-IO sender and receiver state machines (datagrams, control messages and `now` in;
//!   datagrams, control messages and the next deadline out);
//! - [`sim`]: a deterministic network simulator that drives the state machines in virtual time;
//! - [`files`]: the file system side (scanning sources, confined destination paths, verified commits);
//! - [`net`]: sockets (batched UDP, the TCP control channel) and an rtnetlink client (routes, neighbours, XDP);
//! - [`disk`]: the reader engine (io_uring or pread into pooled, aligned buffers);
//! - [`connect`]: connection set-up (URLs, TLS and credentials, SSH) up to an authenticated control channel;
//! - [`session`]: starting, running and serving sessions over such a channel; one [`session::Report`];
//! - [`exit`]: the exit-code classes every layer's error maps to;
//! - [`cmd`]: what each `mover` subcommand prints around its library call (only `main.rs` imports it).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cmd;
pub mod connect;
pub mod disk;
pub mod exit;
pub mod files;
pub mod fuzzing;
pub mod json;
pub mod net;
pub mod pipeline;
pub mod proto;
pub mod random;
pub mod rate;
pub mod session;
pub mod sim;
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod wire;
