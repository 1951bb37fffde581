//! Sockets: batched UDP for data, AF_XDP for the kernel-bypass data path, TCP for the control channel, and
//! rtnetlink for the routes, neighbours and XDP attachments the AF_XDP path needs.

pub mod caps;
pub mod control;
pub mod frame;
pub mod netlink;
pub mod tls;
pub mod tls_words;
pub mod udp;
pub mod xdp_io;
pub mod xdp_path;
pub mod xsk;

pub use control::{ControlChannel, ControlEvent, DEADLINE_MISSED, PEER_SPEAKS_TLS};
pub use udp::{DataSocket, RxBatch, TxBatch};
