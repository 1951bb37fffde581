//! Sockets: batched UDP for data, TCP for the control channel.

pub mod udp;

pub use udp::{DataSocket, RxBatch, TxBatch};
