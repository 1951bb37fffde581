//! Which path MTU a sending session sizes its datagrams for (PROTOCOL.md §4.8): `--mtu` when given (an
//! override: nothing larger is tried), else the route's MTU as the kernel knows it towards the receiver,
//! capped at [`MAX_DISCOVERED_MTU`]. The sender's [`PmtuWatch`](crate::proto::pmtu::PmtuWatch) then
//! confirms it with the first data, and a black hole sends the session back here at the base size.

use crate::connect::unspecified;
use crate::net::DataSocket;
use std::net::{IpAddr, SocketAddr};

/// The largest MTU taken from a route: jumbo frames. Loopback's 64 KiB would buy little more per packet and
/// multiply every buffer sized in datagrams (TX and RX batches, socket queues).
pub const MAX_DISCOVERED_MTU: usize = 9000;
pub use crate::proto::pmtu::BASE_MTU;

/// Where a session's MTU came from (`pmtu_source` in the report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtuSource {
    /// `--mtu`.
    Flag,
    /// The route's MTU (`IP_MTU` of a socket connected to the receiver).
    Route,
    /// The route could not be read: the base.
    Base,
    /// A black hole at the route's size: the base, for the rerun.
    BlackHole,
}

impl MtuSource {
    /// The name in the report and its JSON.
    pub fn name(self) -> &'static str {
        match self {
            MtuSource::Flag => "flag",
            MtuSource::Route => "route",
            MtuSource::Base => "base",
            MtuSource::BlackHole => "black-hole-fallback",
        }
    }
}

/// The MTU a sender to `data_ip` uses: `flag` if given, else the route's (see the module documentation).
pub fn choose_mtu(data_ip: IpAddr, flag: Option<usize>) -> (usize, MtuSource) {
    if let Some(mtu) = flag {
        return (mtu, MtuSource::Flag);
    }
    match route_mtu(data_ip) {
        Some(mtu) => (mtu.min(MAX_DISCOVERED_MTU), MtuSource::Route),
        None => (BASE_MTU, MtuSource::Base),
    }
}

/// The kernel's path MTU towards `ip`: a UDP socket connected there (connecting sends nothing) reads it
/// with `IP_MTU`. `None` when there is no route or the option is unreadable.
pub fn route_mtu(ip: IpAddr) -> Option<usize> {
    let mut sock = DataSocket::bind(SocketAddr::new(unspecified(ip), 0)).ok()?;
    // The port only completes the address: the route and its MTU depend on the IP.
    sock.connect(SocketAddr::new(ip, 9)).ok()?;
    sock.path_mtu().ok().filter(|&m| m >= 576)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_loopback_is_capped_at_jumbo() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(choose_mtu(lo, Some(1500)), (1500, MtuSource::Flag));
        // Loopback's MTU is 65536 on Linux: the cap applies.
        assert_eq!(route_mtu(lo).map(|m| m > MAX_DISCOVERED_MTU), Some(true), "{:?}", route_mtu(lo));
        assert_eq!(choose_mtu(lo, None), (MAX_DISCOVERED_MTU, MtuSource::Route));
    }
}
