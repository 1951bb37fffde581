//! The pinned-core pipeline: each stage is one thread, pinned to a core from the [`topology`] table, owning
//! its state and its I/O; stages hand each other buffers through lock-free single-producer, single-consumer
//! [`ring`]s and wake each other with a [`bell::Bell`].
//!
//! **One runtime.** Every stage implements [`runtime::Stage`] (poll inputs, handle them, publish outputs in a
//! batch, say whether it waits for input or for room downstream) and runs in the one loop of
//! [`runtime::run`], which does what every stage needs the same way: pinning, the stop flag, parking on the
//! stage's bell (counted as input or output stall in its [`stats::StageMeter`]), a rate-limited housekeeping
//! step and the final [`stats::StageReport`]. Stages are named by [`topology::StageId`].
//!
//! **The table is what runs.** [`runtime::Wiring`] builds each ring from its row of the table (depth, and the
//! item type fixed by its typed handle in [`topology::rings`]); the producer's publish rings the consuming
//! stage's bell; pools are sized from the depth of the ring that carries them; a ring of the table left
//! unbuilt, or built twice, is caught at start-up.
//!
//! **One owner per buffer.** Send batches, receive batches and feedback buffers live in a [`slots::SlotPool`],
//! disk buffers in a [`slots::BufRegion`]; both are reached only through move-only tokens
//! ([`slots::Slot`], [`slots::RegionBuf`]) that travel through the rings, so the compiler enforces that one
//! stage holds each buffer. The `unsafe` of shared buffers lives in `slots.rs` alone.
//!
//! Sender: `reader` (io_uring reads into the chunk pool) -> `packetizer` (protocol core, datagrams into send
//! batches, one burst ahead at most) -> `pacer` (the one pacer: releases at the rate each batch carries) ->
//! socket; socket -> `nak` (feedback) -> `packetizer`; retransmissions' reads `packetizer` -> `repair` ->
//! `reader` -> `repaired` -> `packetizer` (the packetizer never reads the disk).
//! Receiver: socket -> `recv` (recvmmsg into receive batches) -> `reassembly` (protocol core, write runs,
//! feedback) -> `writer` (io_uring writes; verification read-backs and hashing) -> back to `reassembly`
//! (the reassembly stage never reads the disk).

pub mod bell;
pub mod chunks;
pub mod items;
pub mod journal_keeper;
pub mod journal_runs;
pub mod live;
pub mod pace;
pub mod rate_share;
pub mod reader;
pub mod recv;
pub mod repair;
pub mod ring;
pub mod runtime;
pub mod send;
pub mod shared_reads;
pub mod slots;
pub mod stats;
pub mod store;
#[cfg(test)]
mod store_resume_tests;
pub mod topology;
pub mod write_stage;
