//! Sockets: batched UDP for data, AF_XDP for the kernel-bypass data path, TCP for the control channel, and
//! rtnetlink for the routes, neighbours and XDP attachments the AF_XDP path needs; reading the host's network
//! settings (`sysinfo`, `ethtool`) for `mover doctor`.

pub mod caps;
pub mod control;
pub mod ethtool;
pub mod frame;
pub mod netlink;
pub mod sysinfo;
pub mod tls;
pub mod tls_words;
pub mod udp;
pub mod xdp_features;
pub mod xdp_io;
pub mod xdp_path;
pub mod xsk;

pub use control::{ControlChannel, ControlEvent, DEADLINE_MISSED, PEER_SPEAKS_TLS};
pub use udp::{DataSocket, RxBatch, TxBatch};
