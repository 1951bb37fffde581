//! mover-wanem: a userspace WAN emulator for a kernel without `netem`.
//!
//! It runs in a network namespace between a sender's and a receiver's, joined to each by a veth pair, and
//! forwards every Ethernet frame between its two interfaces through AF_PACKET sockets, adding one-way delay,
//! jitter, random and bursty loss, reordering, and a rate-limited drop-tail bottleneck. Every protocol (ARP, ICMP,
//! TCP, UDP, IPv6) crosses the same emulated path. See README.md for how to run it and how accurate it is.
//!
//! Layout, top-down: [`args`] parses the command line; [`forwarder`] is the loop; [`link`] is the model of one
//! direction as a pure function of time; [`pool`] holds the frame buffers and FIFOs; [`afpacket`] is the thin
//! socket layer; [`stats`] the counters; [`rng`] the seeded random draws.

#![warn(missing_docs)]

pub mod afpacket;
pub mod args;
pub mod forwarder;
pub mod link;
pub mod pool;
pub mod rng;
pub mod stats;
