//! Addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The unspecified address of `ip`'s family: binding to it lets the kernel pick the source address toward
/// a peer (a NAT may stand between us and what the peer saw).
pub fn unspecified(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    }
}
