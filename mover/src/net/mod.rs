//! Sockets: batched UDP for data, TCP for the control channel.

pub mod control;
pub mod udp;

pub use control::{ControlChannel, ControlEvent};
pub use udp::{DataSocket, RxBatch, TxBatch};
