//! Sessions: starting, running and serving them, over a control channel that `connect` set up.
//!
//! A session is one transfer between a sending and a receiving side. Either side may have dialled:
//! - [`push`] and [`pull`] start a session as a client (the client sends, or receives);
//! - [`serve`] (the daemon), [`serve_stdio`] (one session over SSH's pipes) and, for any other carrier,
//!   [`serve_channel`] serve one: the first message decides the direction;
//! - [`send_files`] and [`receive_files`] are the two sides themselves, for a caller that already holds a
//!   channel (a relay, a resumed session).
//!
//! Every entry point ends in one [`Report`], whichever direction ran, and [`Report::to_json`] is the one
//! `--json` writer. Floor: above `pipeline` and `connect`; below `cmd`.
//!
//! A new way to start or serve a session (resume, a relay, a third-party transfer) is a new file here that
//! obtains a channel from `connect` and calls [`send_files`], [`receive_files`] or [`serve_channel`]; what
//! can newly go wrong becomes a [`SessionError`] variant, whose `Display` a peer may see.

mod admission;
mod admit;
mod allocator;
mod client_text;
mod copy;
pub mod daemon_log;
mod data_socket;
mod dry_run;
mod error;
mod fan_out;
pub mod governor;
mod handshake;
pub mod limits;
pub mod memory;
pub mod metrics;
mod partial_sweep;
mod path_mtu;
mod paths;
mod pull;
mod pull_source;
mod push;
mod receive;
pub mod registry;
pub mod relay;
pub mod relay_choice;
mod report;
mod retry;
mod room;
mod send;
mod serve;
mod status;
mod stripe_options;
mod stripe_receive;
mod stripe_send;
mod stripe_status;
mod third_party;

pub use crate::proto::stripe_plan::{BlockPlan, Scheduler, StripeMode, MAX_BATCH_BLOCKS};
pub use admission::{
    handshake_deadline, manifest_deadline, Admission, AdmissionLimits, AdmissionStats, Handshaking, Progress,
    SessionSlot, Ticket, DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_QUEUE, DEFAULT_MAX_SESSIONS, HANDSHAKE_DEADLINE,
    HANDSHAKE_DEADLINE_ENV, MANIFEST_ENTRIES_PER_SECOND, MAX_HANDSHAKES_PER_ADDRESS,
};
pub use client_text::{ClientText, RootScrub};
pub use copy::{copy_third_party, server_of, CopyOptions, CopyOutcome};
pub use data_socket::SOCKET_BUFFER_BYTES;
pub use dry_run::{dry_run, DryRunReport, FileVerdict};
pub use error::SessionError;
pub use fan_out::{push_fan_out, DEFAULT_FAN_OUT_BUFFER, MAX_DESTINATIONS};
pub use handshake::{check_hello, read_manifest, HANDSHAKE_TIMEOUT, MAX_ENTRIES};
pub use limits::Limits;
pub use memory::{MemoryBudget, MemoryStats};
pub use partial_sweep::{sweep_and_log, sweep_lines, DEFAULT_PARTIAL_MAX_AGE};
pub use paths::{path_under_root, PathRule};
pub use pull::{pull, PullOptions};
pub use push::{push, PushOptions};
pub use receive::{receive_files, ReceiveParams, ReceiveTarget};
pub use relay::RelaySpool;
pub use report::{cipher_note, Direction, LegReport, Report, StripeReport};
pub use retry::{backoff, pull_retrying, push_retrying, with_retries, with_retries_noting, FIRST_BACKOFF, MAX_BACKOFF};
pub use send::{send_files, SendParams};
pub use serve::{
    check_root, check_serve, run_session, serve, serve_admitting, serve_channel, serve_on, serve_stdio, serve_with,
    ServeOptions, StdioOutcome,
};
pub use status::transfer_status;
pub use stripe_options::{AutoChoice, StripeOptions};
pub use stripe_send::{push_striped, RECEIVER_STAGING};
