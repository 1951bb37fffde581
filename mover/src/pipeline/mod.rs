//! The pinned-core pipeline: each stage is one thread running one loop, pinned to a core from the
//! [`topology`] table, owning its state and its I/O; stages exchange buffers by index through lock-free
//! single-producer, single-consumer [`ring`]s and wake each other with a [`bell::Bell`].
//!
//! Sender: `reader` (io_uring reads into the chunk pool) -> `packetizer` (protocol core, datagrams into send
//! batches) -> `pacer` (release at the rate) -> socket; socket -> `nak` (feedback) -> `packetizer`.
//! Receiver: socket -> `recv` (recvmmsg into receive batches) -> `reassembly` (protocol core, write runs,
//! hashing, feedback) -> `writer` (io_uring writes) -> back to `reassembly`.

pub mod bell;
pub mod chunks;
pub mod pace;
pub mod reader;
pub mod recv;
pub mod ring;
pub mod runtime;
pub mod send;
pub mod slots;
pub mod stats;
pub mod store;
pub mod topology;
pub mod write_stage;
