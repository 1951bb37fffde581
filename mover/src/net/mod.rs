//! Sockets: batched UDP for data, TCP for the control channel; rtnetlink for routes, neighbours and XDP.

pub mod control;
pub mod netlink;
pub mod udp;

pub use control::{ControlChannel, ControlEvent};
pub use udp::{DataSocket, RxBatch, TxBatch};
