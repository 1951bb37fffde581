//! A deterministic network simulator for the sans-IO core.
//!
//! Virtual time jumps from one deadline to the next, so a 2 GiB transfer over a 10 Gbit/s x 100 ms path
//! takes seconds of wall time. Everything random comes from one seeded generator: the same seed gives the
//! same run, byte for byte, which is what lets the goodput table live as a snapshot.

pub mod aimd;
pub mod data;
pub mod dataset;
pub mod disk;
pub mod harness;
pub mod link;
pub mod rng;
pub mod stripe;

pub use aimd::{AimdConfig, AimdFlow, Competitor};
pub use data::{synth_fill, synth_hash, CheckingStore, MemStore, SynthSource};
pub use disk::{Crash, DiskStore};
pub use harness::{run_synth_checked, run_transfer, run_transfer_from, SimConfig, SimReport, SimSample};
pub use link::{BurstLoss, LinkConfig, LinkStats};
pub use rng::SimRng;
