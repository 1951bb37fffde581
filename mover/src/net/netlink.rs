//! A thin rtnetlink client: routes, neighbours, links, and XDP attach/detach.
//!
//! Why mover needs it: on the AF_XDP path mover frames its own packets, so the kernel's routing and
//! neighbour code never sees them. mover asks the kernel instead: [`route_to`] gives the outgoing interface
//! and the next hop (the gateway, or the destination itself when it is on-link), [`neighbour`] gives that next
//! hop's MAC address, and [`link_info`] gives the interface's own MAC, MTU, queue counts and attached XDP
//! program. A neighbour can change (a failover moves an address to another host), so mover re-resolves
//! periodically and follows the change instead of caching the answer forever.
//!
//! XDP programs are attached and detached through `RTM_SETLINK` ([`xdp_attach`], [`xdp_detach`]). A refused
//! request comes back as an [`io::Error`] carrying the kernel's extended-ack text when there is one (for example
//! veth's "Peer MTU is too large to set XDP"); [`errno`] recovers the errno from either kind of error. To detach
//! from a signal handler, [`xdp_detach_request`] builds the request ahead of time and
//! [`PrebuiltRequest::send_unchecked`] sends it with `socket`/`sendto`/`close` only.
//!
//! Each call opens its own `NETLINK_ROUTE` socket, sends one request and reads until its answer is complete
//! (for dumps, until `NLMSG_DONE`). This is set-up and housekeeping, never the hot path, so the answer buffer is
//! an ordinary `Vec`. Everything the kernel sends is parsed defensively: message and attribute lengths are
//! checked against the buffer before use, and anything malformed becomes an `InvalidData` error, never a panic.
//! The same machinery (`Request`, `Attrs`, `transact_on`) serves the generic-netlink reader in
//! `xdp_features` on a `NETLINK_GENERIC` socket, so the crate has one netlink implementation, not two.
//!
//! Constants are from the kernel's UAPI headers: `linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_link.h`,
//! `linux/neighbour.h`; each names its header.

use std::fmt;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// The route the kernel would use to reach a destination (the answer to `ip route get`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Outgoing interface index.
    pub oif: u32,
    /// Next-hop gateway; `None` when the destination is on-link (then the next hop is the destination itself).
    pub gateway: Option<IpAddr>,
    /// Preferred source address for this route, if the kernel chose one.
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    /// The address whose MAC the frames must carry: the gateway, or `dst` itself when on-link.
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

/// `RTM_GETROUTE` for `dst` (like `ip route get`).
///
/// Fails with the kernel's errno when there is no route (`ENETUNREACH`, `EHOSTUNREACH`, ...), and with
/// `EHOSTUNREACH` for any route but a unicast or local one (blackhole, prohibit, broadcast, multicast, ...).
pub fn route_to(dst: IpAddr) -> io::Result<Route> {
    let mut req = route_request(dst);
    let mut route = None;
    transact(&mut req, |msg_type, payload| {
        if msg_type == RTM_NEWROUTE && route.is_none() {
            route = Some(parse_route(payload)?);
        }
        Ok(())
    })?;
    route.ok_or_else(|| invalid_data("RTM_GETROUTE answered without a route"))
}

/// A neighbour (ARP or NDP) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Link-layer address.
    pub mac: [u8; 6],
    /// Neighbour-table state, a set of `NUD_*` bits (`linux/neighbour.h`): [`NUD_REACHABLE`], [`NUD_STALE`], ...
    pub state: u16,
}

/// `NUD_INCOMPLETE`: resolution in progress, no address yet (`linux/neighbour.h`).
pub const NUD_INCOMPLETE: u16 = 0x01;
/// `NUD_REACHABLE`: confirmed recently.
pub const NUD_REACHABLE: u16 = 0x02;
/// `NUD_STALE`: usable, but will be re-confirmed on use.
pub const NUD_STALE: u16 = 0x04;
/// `NUD_DELAY`: usable, confirmation pending.
pub const NUD_DELAY: u16 = 0x08;
/// `NUD_PROBE`: usable, being probed.
pub const NUD_PROBE: u16 = 0x10;
/// `NUD_FAILED`: resolution failed.
pub const NUD_FAILED: u16 = 0x20;
/// `NUD_NOARP`: the device needs no resolution.
pub const NUD_NOARP: u16 = 0x40;
/// `NUD_PERMANENT`: a static entry.
pub const NUD_PERMANENT: u16 = 0x80;

/// The neighbour entry for `ip` on `ifindex` (an `RTM_GETNEIGH` dump, filtered here).
///
/// `None` if there is no entry or it is not usable: still resolving (`INCOMPLETE`), `FAILED`, or without a
/// 6-byte link-layer address (a `NOARP` entry on a device without MACs). The kernel starts resolution when
/// a packet is routed to the address; this call does not.
pub fn neighbour(ifindex: u32, ip: IpAddr) -> io::Result<Option<Neighbour>> {
    let mut req = neighbour_request(ifindex_to_c(ifindex)?, ip);
    let mut found = None;
    transact(&mut req, |msg_type, payload| {
        if msg_type == RTM_NEWNEIGH && found.is_none() {
            found = parse_neighbour(payload, ifindex, ip)?;
        }
        Ok(())
    })?;
    Ok(found)
}

/// What `RTM_GETLINK` says about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name (`IFLA_IFNAME`).
    pub name: String,
    /// Hardware address; all zero when the device has none or it is not 6 bytes long.
    pub mac: [u8; 6],
    /// MTU in bytes (the IP packet size, without the Ethernet header).
    pub mtu: u32,
    /// `IFF_LOOPBACK` is set.
    pub is_loopback: bool,
    /// The attached XDP program, if any.
    pub xdp: XdpState,
    /// Receive queues (`IFLA_NUM_RX_QUEUES`); 1 if the kernel does not say.
    pub num_rx_queues: u32,
    /// Transmit queues (`IFLA_NUM_TX_QUEUES`); 1 if the kernel does not say.
    pub num_tx_queues: u32,
}

/// The XDP program attached to an interface, from `IFLA_XDP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpState {
    /// The program's id (`IFLA_XDP_PROG_ID`, or in multi mode the first of the per-mode ids); `None` if none.
    pub prog_id: Option<u32>,
    /// How it is attached (`IFLA_XDP_ATTACHED`); `None` if nothing is attached or the mode is unknown.
    pub mode: Option<XdpMode>,
}

/// How an XDP program is attached (`XDP_ATTACHED_*` in `linux/if_link.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`XDP_ATTACHED_DRV`).
    Native,
    /// In the generic network stack, after the SKB is built (`XDP_ATTACHED_SKB`).
    Generic,
    /// In the NIC (`XDP_ATTACHED_HW`).
    Offloaded,
    /// Programs in more than one mode at once (`XDP_ATTACHED_MULTI`).
    Multi,
}

/// `RTM_GETLINK` for one interface.
pub fn link_info(ifindex: u32) -> io::Result<LinkInfo> {
    let mut req = link_request(ifindex_to_c(ifindex)?, None);
    let mut link = None;
    transact(&mut req, |msg_type, payload| {
        if msg_type == RTM_NEWLINK && link.is_none() {
            link = Some(parse_link(payload)?);
        }
        Ok(())
    })?;
    let link = link.ok_or_else(|| invalid_data("RTM_GETLINK answered without a link"))?;
    if link.ifindex != ifindex {
        return Err(invalid_data("RTM_GETLINK answered for another interface"));
    }
    Ok(link)
}

/// Interface index by name (`RTM_GETLINK` with `IFLA_IFNAME`). `ENODEV` if there is no such interface.
pub fn ifindex_of(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not an interface name: {name:?}")));
    }
    let mut req = link_request(0, Some(name));
    let mut ifindex = None;
    transact(&mut req, |msg_type, payload| {
        if msg_type == RTM_NEWLINK && ifindex.is_none() {
            ifindex = Some(parse_link(payload)?.ifindex);
        }
        Ok(())
    })?;
    ifindex.ok_or_else(|| invalid_data("RTM_GETLINK answered without a link"))
}

/// `XDP_FLAGS_UPDATE_IF_NOEXIST`: fail with `EBUSY` if a program is already attached (`linux/if_link.h`).
pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
/// `XDP_FLAGS_SKB_MODE`: generic XDP.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native (driver) XDP.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_FLAGS_HW_MODE`: offloaded XDP.
pub const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
/// `XDP_FLAGS_REPLACE`: act only if the attached program is `IFLA_XDP_EXPECTED_FD`'s. Set by this module.
pub const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// Attach `prog_fd` as the interface's XDP program (`RTM_SETLINK`, `IFLA_XDP { IFLA_XDP_FD, IFLA_XDP_FLAGS }`).
///
/// `flags` is a set of `XDP_FLAGS_*`: [`XDP_FLAGS_UPDATE_IF_NOEXIST`] | [`XDP_FLAGS_SKB_MODE`] |
/// [`XDP_FLAGS_DRV_MODE`]. When `replace_prog_fd` is `Some`, [`XDP_FLAGS_REPLACE`] is added with
/// `IFLA_XDP_EXPECTED_FD`, so only that program is replaced (`EEXIST` otherwise). A refusal carries the
/// kernel's message when it gave one; [`errno`] gives the errno.
pub fn xdp_attach(ifindex: u32, prog_fd: RawFd, flags: u32, replace_prog_fd: Option<RawFd>) -> io::Result<()> {
    let mut req = xdp_setlink(ifindex_to_c(ifindex)?, prog_fd, flags, replace_prog_fd, NLM_F_REQUEST | NLM_F_ACK);
    transact(&mut req, |_, _| Ok(()))
}

/// Detach the interface's XDP program (`IFLA_XDP_FD = -1`). `flags` selects the mode as for [`xdp_attach`].
///
/// With `expected_prog_fd`, only if that program is the one attached ([`XDP_FLAGS_REPLACE`] and
/// `IFLA_XDP_EXPECTED_FD`; `EEXIST` otherwise).
pub fn xdp_detach(ifindex: u32, flags: u32, expected_prog_fd: Option<RawFd>) -> io::Result<()> {
    let mut req = xdp_setlink(ifindex_to_c(ifindex)?, -1, flags, expected_prog_fd, NLM_F_REQUEST | NLM_F_ACK);
    transact(&mut req, |_, _| Ok(()))
}

/// A complete netlink request, built ahead of time so that a signal handler can send it with only
/// `socket`/`sendto`/`close`, which are async-signal-safe. Plain bytes: `Copy`, and fine in a `static`.
#[derive(Clone, Copy)]
pub struct PrebuiltRequest {
    bytes: [u8; REQUEST_CAP],
    len: usize,
}

/// An `RTM_SETLINK` request that detaches the XDP program of `ifindex` in the mode `flags` selects.
///
/// It asks for no acknowledgement: the kernel handles a netlink request inside `sendto`, so when
/// [`PrebuiltRequest::send_unchecked`] returns, the detach has happened or failed.
///
/// # Panics
/// If `ifindex` is above `i32::MAX`, which no interface index is.
pub fn xdp_detach_request(ifindex: u32, flags: u32) -> PrebuiltRequest {
    let ifindex = ifindex_to_c(ifindex).expect("interface index above i32::MAX");
    let req = xdp_setlink(ifindex, -1, flags, None, NLM_F_REQUEST);
    PrebuiltRequest { bytes: req.bytes, len: req.len }
}

impl PrebuiltRequest {
    /// Sends it without allocating or locking (usable from a signal handler); ignores the answer and errors.
    ///
    /// The socket is opened in the calling thread's network namespace.
    pub fn send_unchecked(&self) {
        // Safety: socket/sendto/close on a local fd; the address and the bytes outlive the calls; errno is
        // left as the calls set it, which a signal handler that cares saves and restores around this call.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
            if fd < 0 {
                return;
            }
            let kernel = kernel_addr();
            libc::sendto(
                fd,
                self.bytes.as_ptr().cast(),
                self.len,
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            );
            libc::close(fd);
        }
    }

    /// The request's bytes, as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for PrebuiltRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrebuiltRequest").field("bytes", &self.as_bytes()).finish()
    }
}

/// A request the kernel refused with an extended-ack message; the `io::Error` wrapping it has the errno's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The errno the kernel answered (positive, e.g. `libc::EBUSY`).
    pub errno: i32,
    /// The kernel's message (`NLMSGERR_ATTR_MSG`).
    pub message: String,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, io::Error::from_raw_os_error(self.errno))
    }
}

impl std::error::Error for KernelError {}

/// The errno of an error from this module: the OS error code, or a [`KernelError`]'s errno.
pub fn errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| err.get_ref()?.downcast_ref::<KernelError>().map(|k| k.errno))
}

// ---- Constants (kernel UAPI) ----

/// `struct nlmsghdr` size (`linux/netlink.h`).
const NLMSG_HDRLEN: usize = 16;
/// `struct nlattr` / `struct rtattr` header size.
const NLA_HDRLEN: usize = 4;
/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER` are flags in an attribute's type (`linux/netlink.h`).
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLA_F_NESTED: u16 = 1 << 15;

// nlmsg_type values below NLMSG_MIN_TYPE (`linux/netlink.h`).
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

// nlmsg_flags (`linux/netlink.h`).
/// `NLM_F_REQUEST`: every request carries it.
pub(super) const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_MULTI: u16 = 0x02;
const NLM_F_ACK: u16 = 0x04;
/// `NLM_F_DUMP`: answer with every object, ending with `NLMSG_DONE`.
pub(super) const NLM_F_DUMP: u16 = 0x100 | 0x200; // NLM_F_ROOT | NLM_F_MATCH
/// In an `NLMSG_ERROR`: the echoed request is only its header.
const NLM_F_CAPPED: u16 = 0x100;
/// In an `NLMSG_ERROR` or `NLMSG_DONE`: extended-ack TLVs follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `enum nlmsgerr_attrs` (`linux/netlink.h`).
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NETLINK_EXT_ACK` socket option (`linux/netlink.h`).
const NETLINK_EXT_ACK: libc::c_int = 11;

// Message types (`linux/rtnetlink.h`).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;

// `enum rtattr_type_t` (`linux/rtnetlink.h`).
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;
// rtm_type values (`linux/rtnetlink.h`).
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;

// `enum { NDA_* }` (`linux/neighbour.h`).
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_IFINDEX: u16 = 8;

// `IFLA_*` (`linux/if_link.h`).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;
/// `RTEXT_FILTER_SKIP_STATS` for `IFLA_EXT_MASK` (`linux/rtnetlink.h`): leave the counters out of the answer.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// `IFF_LOOPBACK` (`linux/if.h`).
const IFF_LOOPBACK: u32 = 0x8;
/// `IFNAMSIZ` (`linux/if.h`): names are at most 15 bytes plus the NUL.
const IFNAMSIZ: usize = 16;

/// Fixed header sizes: `struct rtmsg`, `struct ndmsg`, `struct ifinfomsg`.
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;
const IFINFOMSG_LEN: usize = 16;

/// Room for any request this module builds; the largest, an XDP attach with an expected fd, is 60 bytes, and
/// `ifindex_of` with a 15-byte name is 60.
const REQUEST_CAP: usize = 128;

/// Give up on a kernel answer after this long (it comes at once; this only bounds a bug).
// Not `libc::time_t`: musl's libc crate deprecates the name (its width changed in musl 1.2).
const RECV_TIMEOUT_S: i32 = 5;

/// Round up to the 4-byte alignment of netlink messages and attributes (`NLMSG_ALIGN`, `NLA_ALIGN`).
const fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

// ---- Request encoding ----

/// A netlink request under construction, in a fixed buffer (no allocation, so a [`PrebuiltRequest`] can be
/// made of one). `nlmsg_len` is kept current by every push. Overflowing [`REQUEST_CAP`] is a programmer error.
#[derive(Clone, Copy)]
pub(super) struct Request {
    bytes: [u8; REQUEST_CAP],
    len: usize,
}

impl Request {
    /// A request of `msg_type` (for generic netlink, the family id) with netlink `flags`; the sequence number
    /// is set when it is sent.
    pub(super) fn new(msg_type: u16, flags: u16) -> Request {
        let mut req = Request { bytes: [0; REQUEST_CAP], len: NLMSG_HDRLEN };
        req.bytes[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        req.bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        req.sync_len();
        req
    }

    fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.bytes[6], self.bytes[7]])
    }

    fn seq(&self) -> u32 {
        u32::from_ne_bytes([self.bytes[8], self.bytes[9], self.bytes[10], self.bytes[11]])
    }

    fn set_seq(&mut self, seq: u32) {
        self.bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
    }

    /// Appends the family-specific fixed header (`rtmsg`, `ndmsg`, `ifinfomsg`, `genlmsghdr`), padded to 4
    /// bytes.
    pub(super) fn push_header(&mut self, header: &[u8]) {
        debug_assert_eq!(self.len, NLMSG_HDRLEN, "the fixed header comes right after nlmsghdr");
        self.push_padded(header);
    }

    /// Appends one attribute, padded to 4 bytes.
    pub(super) fn push_attr(&mut self, attr_type: u16, value: &[u8]) {
        let attr_len = u16::try_from(NLA_HDRLEN + value.len()).expect("attribute too long");
        let [l0, l1] = attr_len.to_ne_bytes();
        let [t0, t1] = attr_type.to_ne_bytes();
        self.push_padded_tail(&[l0, l1, t0, t1], value);
    }

    /// Starts a nested attribute; its length is filled in by [`Request::end_nested`] with the returned offset.
    fn begin_nested(&mut self, attr_type: u16) -> usize {
        let start = self.len;
        self.push_attr(attr_type | NLA_F_NESTED, &[]);
        start
    }

    fn end_nested(&mut self, start: usize) {
        let nested_len = u16::try_from(self.len - start).expect("nested attribute too long");
        self.bytes[start..start + 2].copy_from_slice(&nested_len.to_ne_bytes());
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push_padded(&mut self, data: &[u8]) {
        self.push_padded_tail(data, &[]);
    }

    /// Appends `head` then `tail`, then zero padding to the next 4-byte boundary.
    fn push_padded_tail(&mut self, head: &[u8], tail: &[u8]) {
        let end = self.len + head.len() + tail.len();
        assert!(align4(end) <= REQUEST_CAP, "netlink request longer than {REQUEST_CAP} bytes");
        self.bytes[self.len..self.len + head.len()].copy_from_slice(head);
        self.bytes[self.len + head.len()..end].copy_from_slice(tail);
        self.bytes[end..align4(end)].fill(0);
        self.len = align4(end);
        self.sync_len();
    }

    fn sync_len(&mut self) {
        let len = self.len as u32;
        self.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
    }
}

fn route_request(dst: IpAddr) -> Request {
    let mut req = Request::new(RTM_GETROUTE, NLM_F_REQUEST);
    req.push_header(&rtmsg(family_of(dst), host_prefix_len(dst)));
    push_ip(&mut req, RTA_DST, dst);
    req
}

/// A dump of one family's neighbours on `ifindex`. The kernel filters by `NDA_IFINDEX` (Linux 4.19+; older
/// kernels dump every interface), and [`parse_neighbour`] filters again.
fn neighbour_request(ifindex: i32, ip: IpAddr) -> Request {
    let mut req = Request::new(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP);
    req.push_header(&ndmsg(family_of(ip), ifindex));
    req.push_attr(NDA_IFINDEX, &ifindex.to_ne_bytes());
    req
}

/// One link by index, or by `name` (then `ifindex` is 0). The caller has checked that `name` is shorter than
/// `IFNAMSIZ`.
fn link_request(ifindex: i32, name: Option<&str>) -> Request {
    let mut req = Request::new(RTM_GETLINK, NLM_F_REQUEST);
    req.push_header(&ifinfomsg(ifindex));
    req.push_attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    if let Some(name) = name {
        let mut name_z = [0u8; IFNAMSIZ];
        name_z[..name.len()].copy_from_slice(name.as_bytes());
        req.push_attr(IFLA_IFNAME, &name_z[..=name.len()]);
    }
    req
}

fn xdp_setlink(ifindex: i32, fd: RawFd, flags: u32, expected_fd: Option<RawFd>, nl_flags: u16) -> Request {
    let mut req = Request::new(RTM_SETLINK, nl_flags);
    req.push_header(&ifinfomsg(ifindex));
    let nest = req.begin_nested(IFLA_XDP);
    req.push_attr(IFLA_XDP_FD, &fd.to_ne_bytes());
    let flags = if expected_fd.is_some() { flags | XDP_FLAGS_REPLACE } else { flags };
    if flags != 0 {
        req.push_attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    }
    if let Some(expected_fd) = expected_fd {
        req.push_attr(IFLA_XDP_EXPECTED_FD, &expected_fd.to_ne_bytes());
    }
    req.end_nested(nest);
    req
}

/// `struct rtmsg` for a lookup of one host address: family, `rtm_dst_len`, the rest zero.
fn rtmsg(family: u8, dst_len: u8) -> [u8; RTMSG_LEN] {
    let mut m = [0u8; RTMSG_LEN];
    m[0] = family;
    m[1] = dst_len;
    m
}

/// `struct ndmsg` selecting a family and an interface.
fn ndmsg(family: u8, ifindex: i32) -> [u8; NDMSG_LEN] {
    let mut m = [0u8; NDMSG_LEN];
    m[0] = family;
    m[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m
}

/// `struct ifinfomsg` for `AF_UNSPEC` and one interface (0: selected by name).
fn ifinfomsg(ifindex: i32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m
}

fn push_ip(req: &mut Request, attr_type: u16, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => req.push_attr(attr_type, &v4.octets()),
        IpAddr::V6(v6) => req.push_attr(attr_type, &v6.octets()),
    }
}

fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn host_prefix_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The kernel's `int` interface index; ours are `u32` because they are never negative.
fn ifindex_to_c(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("not an interface index: {ifindex}")))
}

// ---- Answer parsing ----

/// One netlink message: its header fields and payload (after `nlmsghdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NlMsg<'a> {
    msg_type: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The messages in one datagram. A malformed header yields one error and ends the iteration.
struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    fn new(datagram: &'a [u8]) -> Messages<'a> {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<NlMsg<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = mem::take(&mut self.rest);
        let Some(len) = u32_at(rest, 0) else {
            return Some(Err(invalid_data("netlink message header truncated")));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Some(Err(invalid_data("netlink message length out of bounds")));
        }
        let msg = NlMsg {
            msg_type: u16_at(rest, 4)?,
            flags: u16_at(rest, 6)?,
            seq: u32_at(rest, 8)?,
            payload: &rest[NLMSG_HDRLEN..len],
        };
        self.rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

/// The attributes in a buffer, as `(type without flags, value)`. A malformed one yields one error and ends
/// the iteration.
pub(super) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The attributes in `buf`, which starts at an attribute header.
    pub(super) fn new(buf: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = io::Result<(u16, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = mem::take(&mut self.rest);
        let (Some(len), Some(attr_type)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            return Some(Err(invalid_data("netlink attribute header truncated")));
        };
        let len = len as usize;
        if len < NLA_HDRLEN || len > rest.len() {
            return Some(Err(invalid_data("netlink attribute length out of bounds")));
        }
        self.rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((attr_type & NLA_TYPE_MASK, &rest[NLA_HDRLEN..len])))
    }
}

/// Splits a message payload into its fixed header (`size` bytes) and its attributes.
fn split_header(payload: &[u8], size: usize) -> io::Result<(&[u8], &[u8])> {
    if payload.len() < size {
        return Err(invalid_data("netlink message shorter than its fixed header"));
    }
    Ok((&payload[..size], payload.get(align4(size)..).unwrap_or(&[])))
}

/// Parses an `RTM_NEWROUTE` payload.
fn parse_route(payload: &[u8]) -> io::Result<Route> {
    let (header, attrs) = split_header(payload, RTMSG_LEN)?;
    let route_type = header[7];
    if route_type != RTN_UNICAST && route_type != RTN_LOCAL {
        return Err(io::Error::from_raw_os_error(libc::EHOSTUNREACH));
    }
    let mut oif = None;
    let mut gateway = None;
    let mut prefsrc = None;
    for attr in Attrs::new(attrs) {
        let (attr_type, value) = attr?;
        match attr_type {
            RTA_OIF => oif = Some(attr_u32(value)?),
            RTA_GATEWAY => gateway = Some(ip_from_bytes(value)?),
            RTA_PREFSRC => prefsrc = Some(ip_from_bytes(value)?),
            // `struct rtvia { __kernel_sa_family_t rtvia_family; __u8 rtvia_addr[]; }`: an IPv4 route via an
            // IPv6 next hop. The address length says the family.
            RTA_VIA => gateway = Some(ip_from_bytes(value.get(2..).unwrap_or(&[]))?),
            _ => {}
        }
    }
    let oif = oif.ok_or_else(|| invalid_data("route without an output interface"))?;
    Ok(Route { oif, gateway, prefsrc })
}

/// Parses an `RTM_NEWNEIGH` payload; `Some` only for a usable entry for `ip` on `ifindex`.
fn parse_neighbour(payload: &[u8], ifindex: u32, ip: IpAddr) -> io::Result<Option<Neighbour>> {
    let (header, attrs) = split_header(payload, NDMSG_LEN)?;
    let entry_ifindex = u32_at(header, 4).unwrap_or(0);
    let state = u16_at(header, 8).unwrap_or(0);
    if header[0] != family_of(ip) || entry_ifindex != ifindex {
        return Ok(None);
    }
    let mut dst = None;
    let mut lladdr = None;
    for attr in Attrs::new(attrs) {
        let (attr_type, value) = attr?;
        match attr_type {
            NDA_DST => dst = Some(ip_from_bytes(value)?),
            NDA_LLADDR => lladdr = <[u8; 6]>::try_from(value).ok(),
            _ => {}
        }
    }
    if dst != Some(ip) || state & (NUD_INCOMPLETE | NUD_FAILED) != 0 || state == 0 {
        return Ok(None);
    }
    Ok(lladdr.map(|mac| Neighbour { mac, state }))
}

/// Parses an `RTM_NEWLINK` payload.
fn parse_link(payload: &[u8]) -> io::Result<LinkInfo> {
    let (header, attrs) = split_header(payload, IFINFOMSG_LEN)?;
    let ifindex = u32_at(header, 4).unwrap_or(0);
    let if_flags = u32_at(header, 8).unwrap_or(0);
    let mut name = None;
    let mut mac = [0u8; 6];
    let mut mtu = None;
    let mut xdp = XdpState::default();
    let mut num_rx_queues = 1;
    let mut num_tx_queues = 1;
    for attr in Attrs::new(attrs) {
        let (attr_type, value) = attr?;
        match attr_type {
            IFLA_IFNAME => name = Some(attr_string(value)),
            IFLA_ADDRESS => mac = <[u8; 6]>::try_from(value).unwrap_or([0; 6]),
            IFLA_MTU => mtu = Some(attr_u32(value)?),
            IFLA_NUM_RX_QUEUES => num_rx_queues = attr_u32(value)?,
            IFLA_NUM_TX_QUEUES => num_tx_queues = attr_u32(value)?,
            IFLA_XDP => xdp = parse_xdp(value)?,
            _ => {}
        }
    }
    Ok(LinkInfo {
        ifindex,
        name: name.ok_or_else(|| invalid_data("link without a name"))?,
        mac,
        mtu: mtu.ok_or_else(|| invalid_data("link without an MTU"))?,
        is_loopback: if_flags & IFF_LOOPBACK != 0,
        xdp,
        num_rx_queues,
        num_tx_queues,
    })
}

/// Parses the attributes nested in `IFLA_XDP`.
fn parse_xdp(nested: &[u8]) -> io::Result<XdpState> {
    let mut mode = None;
    let mut prog_id = None;
    let mut mode_prog_id = None;
    for attr in Attrs::new(nested) {
        let (attr_type, value) = attr?;
        match attr_type {
            IFLA_XDP_ATTACHED => {
                mode = match value.first() {
                    Some(&XDP_ATTACHED_DRV) => Some(XdpMode::Native),
                    Some(&XDP_ATTACHED_SKB) => Some(XdpMode::Generic),
                    Some(&XDP_ATTACHED_HW) => Some(XdpMode::Offloaded),
                    Some(&XDP_ATTACHED_MULTI) => Some(XdpMode::Multi),
                    _ => None,
                }
            }
            IFLA_XDP_PROG_ID => prog_id = Some(attr_u32(value)?),
            // In multi mode the kernel gives one id per mode and no IFLA_XDP_PROG_ID.
            IFLA_XDP_DRV_PROG_ID | IFLA_XDP_SKB_PROG_ID | IFLA_XDP_HW_PROG_ID => {
                mode_prog_id = mode_prog_id.or(Some(attr_u32(value)?))
            }
            _ => {}
        }
    }
    let prog_id = prog_id.or(mode_prog_id).filter(|&id| id != 0);
    Ok(XdpState { prog_id, mode: mode.filter(|_| prog_id.is_some()) })
}

fn attr_u32(value: &[u8]) -> io::Result<u32> {
    u32_at(value, 0).ok_or_else(|| invalid_data("netlink u32 attribute shorter than 4 bytes"))
}

/// A NUL-terminated string attribute; bytes after the first NUL are ignored, invalid UTF-8 is replaced.
fn attr_string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn ip_from_bytes(value: &[u8]) -> io::Result<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(value) {
        return Ok(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(value) {
        return Ok(IpAddr::V6(Ipv6Addr::from(v6)));
    }
    Err(invalid_data("netlink address attribute neither 4 nor 16 bytes"))
}

fn u16_at(buf: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(offset..offset + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(offset..offset + 4)?.try_into().ok()?))
}

fn i32_at(buf: &[u8], offset: usize) -> Option<i32> {
    u32_at(buf, offset).map(|v| v as i32)
}

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

// ---- Answers: acks, errors, end of dump ----

/// Whether a request's answer is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    More,
    Done,
}

/// Handles one received datagram for the request with sequence number `seq` and netlink flags
/// `request_flags`, passing each answer message (type, payload) to `on_msg`.
///
/// The answer is complete at an ack, at `NLMSG_DONE`, or, for a request without `NLM_F_ACK`, after a reply
/// that is not part of a multipart dump. Messages for other sequence numbers are skipped.
fn handle_datagram(
    datagram: &[u8],
    seq: u32,
    request_flags: u16,
    on_msg: &mut dyn FnMut(u16, &[u8]) -> io::Result<()>,
) -> io::Result<Progress> {
    for msg in Messages::new(datagram) {
        let msg = msg?;
        if msg.seq != seq {
            continue;
        }
        match msg.msg_type {
            NLMSG_NOOP => {}
            NLMSG_ERROR => {
                check_nlmsgerr(msg.flags, msg.payload)?;
                return Ok(Progress::Done);
            }
            NLMSG_DONE => {
                // Since Linux 4.x a dump's NLMSG_DONE carries an int error, then extack TLVs.
                if let Some(err) = i32_at(msg.payload, 0).filter(|&e| e != 0) {
                    let tlvs = (msg.flags & NLM_F_ACK_TLVS != 0).then(|| &msg.payload[4..]);
                    return Err(kernel_error(err, tlvs));
                }
                return Ok(Progress::Done);
            }
            NLMSG_OVERRUN => return Err(invalid_data("netlink overrun: answer lost")),
            msg_type => {
                on_msg(msg_type, msg.payload)?;
                // A dump ends only at NLMSG_DONE: some generic-netlink families (netdev's dev-get) send
                // their dump's parts without NLM_F_MULTI.
                let dump = request_flags & NLM_F_DUMP == NLM_F_DUMP;
                if msg.flags & NLM_F_MULTI == 0 && request_flags & NLM_F_ACK == 0 && !dump {
                    return Ok(Progress::Done);
                }
            }
        }
    }
    Ok(Progress::More)
}

/// Checks an `NLMSG_ERROR` payload (`struct nlmsgerr`: an int error, the echoed request, extack TLVs):
/// `Ok` for an ack (error 0), the kernel's error otherwise.
fn check_nlmsgerr(flags: u16, payload: &[u8]) -> io::Result<()> {
    let err = i32_at(payload, 0).ok_or_else(|| invalid_data("netlink error message truncated"))?;
    if err == 0 {
        return Ok(());
    }
    // The echoed request is its header only (NLM_F_CAPPED) or the whole request, as its nlmsg_len says.
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32_at(payload, 4).map_or(usize::MAX, |len| align4(len as usize))
    };
    let tlvs = (flags & NLM_F_ACK_TLVS != 0).then(|| 4usize.checked_add(echoed_len).and_then(|at| payload.get(at..)));
    Err(kernel_error(err, tlvs.flatten()))
}

/// The error for a kernel `err` (negative errno), with the extack message from `tlvs` if there is one.
fn kernel_error(err: i32, tlvs: Option<&[u8]>) -> io::Error {
    let errno = if err < 0 { err.wrapping_neg() } else { err };
    // A malformed TLV only loses the message: the errno is the answer.
    let message = tlvs.into_iter().flat_map(Attrs::new).map_while(Result::ok).find_map(|(attr_type, value)| {
        (attr_type == NLMSGERR_ATTR_MSG).then(|| attr_string(value)).filter(|m| !m.is_empty())
    });
    match message {
        None => io::Error::from_raw_os_error(errno),
        Some(message) => io::Error::new(io::Error::from_raw_os_error(errno).kind(), KernelError { errno, message }),
    }
}

// ---- The socket ----

/// Sequence numbers, unique per request in this process.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

/// Sends `req` on a fresh `NETLINK_ROUTE` socket and feeds every answer message to `on_msg` until the answer
/// is complete.
fn transact(req: &mut Request, on_msg: impl FnMut(u16, &[u8]) -> io::Result<()>) -> io::Result<()> {
    transact_on(libc::NETLINK_ROUTE, req, on_msg)
}

/// [`transact`] on a socket of netlink `protocol` (`NETLINK_ROUTE`, `NETLINK_GENERIC`): sends `req` and feeds
/// every answer message (type, payload) to `on_msg` until the answer is complete. A refusal is the kernel's
/// error (see [`errno`]).
pub(super) fn transact_on(
    protocol: libc::c_int,
    req: &mut Request,
    mut on_msg: impl FnMut(u16, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let sock = open_socket(protocol)?;
    req.set_seq(NEXT_SEQ.fetch_add(1, Ordering::Relaxed));
    send_to_kernel(&sock, req.as_bytes())?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let len = recv_from_kernel(&sock, &mut buf)?;
        if handle_datagram(&buf[..len], req.seq(), req.flags(), &mut on_msg)? == Progress::Done {
            return Ok(());
        }
    }
}

fn open_socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // Safety: plain socket(2); the fd is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: `fd` was just returned by socket(2) and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Extended acks (Linux 4.12+) carry the kernel's reason for a refusal; without them we still get the errno.
    let _ = set_sockopt(&sock, libc::SOL_NETLINK, NETLINK_EXT_ACK, &1 as &libc::c_int);
    let timeout = libc::timeval { tv_sec: RECV_TIMEOUT_S.into(), tv_usec: 0 };
    set_sockopt(&sock, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
    Ok(sock)
}

fn set_sockopt<T>(sock: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // Safety: `value` points at a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn kernel_addr() -> libc::sockaddr_nl {
    // Safety: sockaddr_nl is plain data; all zero is valid (nl_pid 0 is the kernel).
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

fn send_to_kernel(sock: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    let kernel = kernel_addr();
    loop {
        // Safety: `bytes` and `kernel` are live for the call, with the lengths passed.
        let rc = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one datagram from the kernel into `buf`, growing `buf` if the datagram is larger; returns its
/// length. Datagrams from anyone but the kernel (port id 0) are dropped.
fn recv_from_kernel(sock: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        // Peek with MSG_TRUNC first: netlink then returns the datagram's full length, so it is never cut.
        let len = recv_once(sock, buf, libc::MSG_PEEK | libc::MSG_TRUNC)?.0;
        if len > buf.len() {
            buf.resize(len, 0);
        }
        let (len, from) = recv_once(sock, buf, 0)?;
        if from.nl_pid == 0 {
            return Ok(len.min(buf.len()));
        }
    }
}

fn recv_once(sock: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<(usize, libc::sockaddr_nl)> {
    loop {
        let mut from = kernel_addr();
        let mut from_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // Safety: `buf`, `from` and `from_len` are live for the call, with the lengths passed.
        let rc = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if rc >= 0 {
            return Ok((rc as usize, from));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer from the kernel over netlink"))
            }
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::process::Command;
    use std::time::{Duration, Instant};

    // ---- Hand-made kernel answers ----

    fn attr(attr_type: u16, value: &[u8]) -> Vec<u8> {
        let mut v = ((NLA_HDRLEN + value.len()) as u16).to_ne_bytes().to_vec();
        v.extend(attr_type.to_ne_bytes());
        v.extend(value);
        v.resize(align4(v.len()), 0);
        v
    }

    fn msg(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = ((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes().to_vec();
        v.extend(msg_type.to_ne_bytes());
        v.extend(flags.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(0u32.to_ne_bytes());
        v.extend(payload);
        v.resize(align4(v.len()), 0);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn route_payload(route_type: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut header = rtmsg(libc::AF_INET as u8, 32);
        header[7] = route_type;
        cat(&[&header, &attrs.concat()])
    }

    fn neigh_payload(family: u8, ifindex: u32, state: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut header = [0u8; NDMSG_LEN];
        header[0] = family;
        header[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        header[8..10].copy_from_slice(&state.to_ne_bytes());
        cat(&[&header, &attrs.concat()])
    }

    fn link_payload(ifindex: u32, if_flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut header = ifinfomsg(ifindex as i32);
        header[8..12].copy_from_slice(&if_flags.to_ne_bytes());
        cat(&[&header, &attrs.concat()])
    }

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    fn sample_link() -> Vec<u8> {
        let xdp = cat(&[&attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]), &attr(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes())]);
        link_payload(
            7,
            0,
            &[
                attr(IFLA_IFNAME, b"veth0\0"),
                attr(IFLA_ADDRESS, &MAC),
                attr(IFLA_MTU, &1500u32.to_ne_bytes()),
                attr(IFLA_NUM_TX_QUEUES, &3u32.to_ne_bytes()),
                attr(IFLA_NUM_RX_QUEUES, &2u32.to_ne_bytes()),
                attr(IFLA_XDP | NLA_F_NESTED, &xdp),
            ],
        )
    }

    /// An `NLMSG_ERROR` for `request` with `errno`, optionally capped, optionally with an extack message.
    fn error_msg(seq: u32, errno: i32, request: &[u8], capped: bool, text: Option<&[u8]>) -> Vec<u8> {
        let echoed = if capped { &request[..NLMSG_HDRLEN] } else { request };
        let tlvs = text.map(|t| cat(&[&attr(NLMSGERR_ATTR_MSG, t), &attr(2, &16u32.to_ne_bytes())]));
        let mut flags = if capped { NLM_F_CAPPED } else { 0 };
        if tlvs.is_some() {
            flags |= NLM_F_ACK_TLVS;
        }
        let payload = cat(&[&(-errno).to_ne_bytes(), echoed, &tlvs.unwrap_or_default()]);
        msg(NLMSG_ERROR, flags, seq, &payload)
    }

    fn collect(datagram: &[u8], seq: u32, request_flags: u16) -> (io::Result<Progress>, Vec<(u16, Vec<u8>)>) {
        let mut seen = Vec::new();
        let progress = handle_datagram(datagram, seq, request_flags, &mut |t, p| {
            seen.push((t, p.to_vec()));
            Ok(())
        });
        (progress, seen)
    }

    // ---- Encoding ----

    #[test]
    fn route_requests_for_ipv4_and_ipv6() {
        let v4 = route_request("10.1.2.3".parse().unwrap());
        let expected = msg(
            RTM_GETROUTE,
            NLM_F_REQUEST,
            0,
            &cat(&[&rtmsg(libc::AF_INET as u8, 32), &attr(RTA_DST, &[10, 1, 2, 3])]),
        );
        assert_eq!(v4.as_bytes(), &expected[..]);
        assert_eq!(v4.as_bytes().len(), 16 + 12 + 8);

        let dst: Ipv6Addr = "fd77::2".parse().unwrap();
        let v6 = route_request(IpAddr::V6(dst));
        let expected = msg(
            RTM_GETROUTE,
            NLM_F_REQUEST,
            0,
            &cat(&[&rtmsg(libc::AF_INET6 as u8, 128), &attr(RTA_DST, &dst.octets())]),
        );
        assert_eq!(v6.as_bytes(), &expected[..]);
    }

    #[test]
    fn neighbour_and_link_requests() {
        let req = neighbour_request(5, "fd77::2".parse().unwrap());
        let payload = cat(&[&ndmsg(10, 5), &attr(NDA_IFINDEX, &5i32.to_ne_bytes())]);
        assert_eq!(req.as_bytes(), &msg(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 0, &payload)[..]);
        assert_eq!(req.as_bytes()[16], libc::AF_INET6 as u8);
        let req = neighbour_request(5, "10.0.0.1".parse().unwrap());
        assert_eq!(req.as_bytes()[16], libc::AF_INET as u8);

        // A 5-byte name attribute (with its NUL) is padded to 8 bytes, and nlmsg_len counts the padding.
        let req = link_request(0, Some("eth0"));
        let ext_mask = attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
        let name = attr(IFLA_IFNAME, b"eth0\0");
        assert_eq!(name.len(), 12);
        assert_eq!(req.as_bytes(), &msg(RTM_GETLINK, NLM_F_REQUEST, 0, &cat(&[&ifinfomsg(0), &ext_mask, &name]))[..]);
        assert_eq!(u32_at(req.as_bytes(), 0), Some(52));
        // The longest name fits.
        assert_eq!(link_request(0, Some("fifteen-chars-x")).as_bytes().len(), 16 + 16 + 8 + 20);
    }

    #[test]
    fn xdp_requests() {
        let req = xdp_setlink(3, 7, XDP_FLAGS_SKB_MODE, Some(9), NLM_F_REQUEST | NLM_F_ACK);
        let nested = cat(&[
            &attr(IFLA_XDP_FD, &7i32.to_ne_bytes()),
            &attr(IFLA_XDP_FLAGS, &(XDP_FLAGS_SKB_MODE | XDP_FLAGS_REPLACE).to_ne_bytes()),
            &attr(IFLA_XDP_EXPECTED_FD, &9i32.to_ne_bytes()),
        ]);
        let expected = msg(
            RTM_SETLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            0,
            &cat(&[&ifinfomsg(3), &attr(IFLA_XDP | NLA_F_NESTED, &nested)]),
        );
        assert_eq!(req.as_bytes(), &expected[..]);
        assert_eq!(req.as_bytes().len(), 60);

        // No flags, no IFLA_XDP_FLAGS.
        let req = xdp_setlink(3, 7, 0, None, NLM_F_REQUEST);
        assert_eq!(req.as_bytes().len(), 16 + 16 + 4 + 8);

        let detach = xdp_detach_request(3, XDP_FLAGS_DRV_MODE);
        let nested = cat(&[
            &attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes()),
            &attr(IFLA_XDP_FLAGS, &XDP_FLAGS_DRV_MODE.to_ne_bytes()),
        ]);
        let expected =
            msg(RTM_SETLINK, NLM_F_REQUEST, 0, &cat(&[&ifinfomsg(3), &attr(IFLA_XDP | NLA_F_NESTED, &nested)]));
        assert_eq!(detach.as_bytes(), &expected[..]);
        assert!(format!("{detach:?}").starts_with("PrebuiltRequest"));
    }

    #[test]
    #[should_panic(expected = "longer than")]
    fn oversized_request_is_a_programmer_error() {
        let mut req = Request::new(RTM_GETLINK, NLM_F_REQUEST);
        req.push_attr(IFLA_IFNAME, &[b'x'; REQUEST_CAP]);
    }

    #[test]
    fn bad_arguments_fail_before_any_syscall() {
        for name in ["", "sixteen-chars-xx", "a\0b"] {
            assert_eq!(ifindex_of(name).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert_eq!(link_info(u32::MAX).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(xdp_detach(1 << 31, 0, None).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    // ---- Framing ----

    #[test]
    fn messages_and_attributes_follow_alignment() {
        // A 5-byte payload is padded to 8; the last message of a datagram may lack its padding.
        let first = msg(100, 0, 1, b"abcde");
        let mut second = msg(101, NLM_F_MULTI, 2, b"xyz");
        second.truncate(NLMSG_HDRLEN + 3);
        let datagram = cat(&[&first, &second]);
        let got: Vec<_> = Messages::new(&datagram).map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].msg_type, got[0].seq, got[0].payload), (100, 1, &b"abcde"[..]));
        assert_eq!((got[1].msg_type, got[1].flags, got[1].payload), (101, NLM_F_MULTI, &b"xyz"[..]));

        let mut attrs = cat(&[&attr(1, b"a"), &attr(2 | NLA_F_NESTED, &[]), &attr(3, &[1, 2, 3, 4, 5])]);
        attrs.truncate(attrs.len() - 3); // the last attribute's padding
        let got: Vec<_> = Attrs::new(&attrs).map(Result::unwrap).collect();
        assert_eq!(got, vec![(1, &b"a"[..]), (2, &[][..]), (3, &[1, 2, 3, 4, 5][..])]);
    }

    #[test]
    fn malformed_framing_is_an_error_not_a_panic() {
        let good = msg(100, 0, 1, b"abcd");
        let too_long = {
            let mut m = good.clone();
            m[0..4].copy_from_slice(&100u32.to_ne_bytes());
            m
        };
        let too_short = {
            let mut m = good.clone();
            m[0..4].copy_from_slice(&8u32.to_ne_bytes());
            m
        };
        for bad in [&good[..10], &too_long[..], &too_short[..]] {
            let mut it = Messages::new(bad);
            assert_eq!(it.next().unwrap().unwrap_err().kind(), io::ErrorKind::InvalidData);
            assert!(it.next().is_none(), "iteration ends after an error");
        }
        // A good message followed by garbage: the first is returned, then an error.
        let datagram = cat(&[&good, &[1, 2, 3]]);
        let mut it = Messages::new(&datagram);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());

        for bad in [&[4u8, 0][..], &[3, 0, 1, 0][..], &[9, 0, 1, 0, 1, 2, 3, 4][..]] {
            let mut it = Attrs::new(bad);
            assert_eq!(it.next().unwrap().unwrap_err().kind(), io::ErrorKind::InvalidData);
            assert!(it.next().is_none());
        }
    }

    // ---- Answers ----

    #[test]
    fn a_dump_whose_parts_lack_nlm_f_multi_runs_until_done() {
        // netdev's dev-get dump (generic netlink) sends each device without NLM_F_MULTI.
        let parts = cat(&[&msg(0x1d, 0, 4, b"lo"), &msg(0x1d, 0, 4, b"eth0")]);
        let (progress, seen) = collect(&parts, 4, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(progress.unwrap(), Progress::More, "the dump goes on after a part without NLM_F_MULTI");
        assert_eq!(seen.len(), 2);
        let done = msg(NLMSG_DONE, 0, 4, &0i32.to_ne_bytes());
        assert_eq!(collect(&done, 4, NLM_F_REQUEST | NLM_F_DUMP).0.unwrap(), Progress::Done);
    }

    #[test]
    fn acks_replies_dumps_and_sequence_numbers() {
        let reply = msg(RTM_NEWROUTE, 0, 5, b"r");
        let (progress, seen) = collect(&reply, 5, NLM_F_REQUEST);
        assert_eq!(progress.unwrap(), Progress::Done, "a single reply completes a request without ACK");
        assert_eq!(seen, vec![(RTM_NEWROUTE, b"r".to_vec())]);

        // With NLM_F_ACK the reply is followed by an ack, which completes it.
        let (progress, _) = collect(&reply, 5, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(progress.unwrap(), Progress::More);
        let ack = error_msg(5, 0, &reply, false, None);
        assert_eq!(collect(&ack, 5, NLM_F_REQUEST | NLM_F_ACK).0.unwrap(), Progress::Done);

        // A dump: parts, then NLMSG_DONE (with its int error 0) in a later datagram; other sequence numbers
        // and NOOPs are skipped.
        let parts = cat(&[
            &msg(RTM_NEWNEIGH, NLM_F_MULTI, 9, b"a"),
            &msg(RTM_NEWNEIGH, NLM_F_MULTI, 8, b"stale"),
            &msg(NLMSG_NOOP, 0, 9, b""),
            &msg(RTM_NEWNEIGH, NLM_F_MULTI, 9, b"b"),
        ]);
        let (progress, seen) = collect(&parts, 9, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(progress.unwrap(), Progress::More);
        assert_eq!(seen.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(), vec![b"a", b"b"]);
        let done = msg(NLMSG_DONE, NLM_F_MULTI, 9, &0i32.to_ne_bytes());
        assert_eq!(collect(&done, 9, NLM_F_REQUEST | NLM_F_DUMP).0.unwrap(), Progress::Done);
        // Old kernels send NLMSG_DONE without a payload.
        let done = msg(NLMSG_DONE, NLM_F_MULTI, 9, b"");
        assert_eq!(collect(&done, 9, NLM_F_REQUEST | NLM_F_DUMP).0.unwrap(), Progress::Done);
        // A dump that failed part way.
        let done = msg(NLMSG_DONE, NLM_F_MULTI, 9, &(-libc::EINTR).to_ne_bytes());
        assert_eq!(errno(&collect(&done, 9, 0).0.unwrap_err()), Some(libc::EINTR));

        let overrun = msg(NLMSG_OVERRUN, 0, 9, b"");
        assert!(collect(&overrun, 9, 0).0.is_err());
        // A callback's error stops the answer.
        let err = handle_datagram(&reply, 5, 0, &mut |_, _| Err(invalid_data("nope"))).unwrap_err();
        assert_eq!(err.to_string(), "nope");
    }

    #[test]
    fn errors_carry_errno_and_the_extack_message() {
        let request = xdp_setlink(3, 7, XDP_FLAGS_DRV_MODE, None, NLM_F_REQUEST | NLM_F_ACK);
        let text = b"Peer MTU is too large to set XDP\0";
        for capped in [false, true] {
            let answer = error_msg(1, libc::ERANGE, request.as_bytes(), capped, Some(text));
            let err = collect(&answer, 1, request.flags()).0.unwrap_err();
            assert_eq!(errno(&err), Some(libc::ERANGE), "capped {capped}");
            assert!(err.to_string().starts_with("Peer MTU is too large to set XDP: "), "{err}");
            let kernel = err.get_ref().unwrap().downcast_ref::<KernelError>().unwrap();
            assert_eq!(kernel.message, "Peer MTU is too large to set XDP");
        }
        // Without extack: a plain OS error with the errno's kind.
        let answer = error_msg(1, libc::EBUSY, request.as_bytes(), false, None);
        let err = collect(&answer, 1, 0).0.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(errno(&err), Some(libc::EBUSY));
        // An empty message counts as none.
        let answer = error_msg(1, libc::EPERM, request.as_bytes(), true, Some(b"\0"));
        assert_eq!(collect(&answer, 1, 0).0.unwrap_err().raw_os_error(), Some(libc::EPERM));
        // NLM_F_ACK_TLVS with the echoed request's length pointing past the end: errno only.
        let mut answer = error_msg(1, libc::EINVAL, request.as_bytes(), false, Some(text));
        answer[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(collect(&answer, 1, 0).0.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        // A truncated error message.
        let answer = msg(NLMSG_ERROR, 0, 1, &[0xff, 0xff]);
        assert_eq!(collect(&answer, 1, 0).0.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // errno() of an unrelated error.
        assert_eq!(errno(&invalid_data("x")), None);
    }

    // ---- Payloads ----

    #[test]
    fn routes() {
        let payload = route_payload(
            RTN_UNICAST,
            &[
                attr(RTA_OIF, &4u32.to_ne_bytes()),
                attr(RTA_GATEWAY, &[10, 0, 0, 1]),
                attr(RTA_PREFSRC, &[10, 0, 0, 9]),
                attr(15, &254u32.to_ne_bytes()), // RTA_TABLE: ignored
            ],
        );
        let route = parse_route(&payload).unwrap();
        let dst: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(route.oif, 4);
        assert_eq!(route.gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(route.prefsrc, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(route.next_hop(dst), route.gateway.unwrap());

        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        let payload = route_payload(RTN_UNICAST, &[attr(RTA_OIF, &4u32.to_ne_bytes())]);
        let on_link = parse_route(&payload).unwrap();
        assert_eq!((on_link.gateway, on_link.prefsrc), (None, None));
        assert_eq!(on_link.next_hop(dst), dst);
        // IPv4 via an IPv6 next hop (RTA_VIA: family, then the address).
        let via = cat(&[&(libc::AF_INET6 as u16).to_ne_bytes(), &v6.octets()]);
        let payload = route_payload(RTN_UNICAST, &[attr(RTA_OIF, &4u32.to_ne_bytes()), attr(RTA_VIA, &via)]);
        assert_eq!(parse_route(&payload).unwrap().gateway, Some(IpAddr::V6(v6)));

        // Unusable: no output interface, a blackhole, a 5-byte gateway, a short header.
        assert!(parse_route(&route_payload(RTN_UNICAST, &[])).is_err());
        let blackhole = route_payload(6, &[attr(RTA_OIF, &4u32.to_ne_bytes())]);
        assert_eq!(parse_route(&blackhole).unwrap_err().raw_os_error(), Some(libc::EHOSTUNREACH));
        let bad_gw = route_payload(RTN_UNICAST, &[attr(RTA_OIF, &4u32.to_ne_bytes()), attr(RTA_GATEWAY, &[1; 5])]);
        assert_eq!(parse_route(&bad_gw).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(parse_route(&[0; 11]).is_err());
    }

    #[test]
    fn neighbours() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let af = libc::AF_INET as u8;
        let entry = |state, attrs: &[Vec<u8>]| neigh_payload(af, 4, state, attrs);
        let full = [attr(NDA_DST, &[10, 0, 0, 2]), attr(NDA_LLADDR, &MAC)];
        assert_eq!(
            parse_neighbour(&entry(NUD_REACHABLE, &full), 4, ip).unwrap(),
            Some(Neighbour { mac: MAC, state: NUD_REACHABLE })
        );
        for usable in [NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT, NUD_NOARP] {
            assert!(parse_neighbour(&entry(usable, &full), 4, ip).unwrap().is_some(), "{usable:#x}");
        }
        for unusable in [0, NUD_INCOMPLETE, NUD_FAILED] {
            assert_eq!(parse_neighbour(&entry(unusable, &full), 4, ip).unwrap(), None, "{unusable:#x}");
        }
        // Another interface, family or address; no MAC (NOARP device); a 20-byte link-layer address.
        assert_eq!(parse_neighbour(&entry(NUD_REACHABLE, &full), 5, ip).unwrap(), None);
        assert_eq!(parse_neighbour(&neigh_payload(10, 4, NUD_REACHABLE, &full), 4, ip).unwrap(), None);
        assert_eq!(parse_neighbour(&entry(NUD_REACHABLE, &full), 4, "10.0.0.3".parse().unwrap()).unwrap(), None);
        assert_eq!(parse_neighbour(&entry(NUD_NOARP, &full[..1]), 4, ip).unwrap(), None);
        let ib = [full[0].clone(), attr(NDA_LLADDR, &[7; 20])];
        assert_eq!(parse_neighbour(&entry(NUD_REACHABLE, &ib), 4, ip).unwrap(), None);

        let ip6: Ipv6Addr = "fd77::2".parse().unwrap();
        let v6 = neigh_payload(10, 4, NUD_STALE, &[attr(NDA_DST, &ip6.octets()), attr(NDA_LLADDR, &MAC)]);
        assert_eq!(parse_neighbour(&v6, 4, IpAddr::V6(ip6)).unwrap().map(|n| n.mac), Some(MAC));
        assert!(parse_neighbour(&[0; 5], 4, ip).is_err());
    }

    #[test]
    fn links_and_xdp_state() {
        let link = parse_link(&sample_link()).unwrap();
        assert_eq!(
            link,
            LinkInfo {
                ifindex: 7,
                name: "veth0".into(),
                mac: MAC,
                mtu: 1500,
                is_loopback: false,
                xdp: XdpState { prog_id: Some(42), mode: Some(XdpMode::Generic) },
                num_rx_queues: 2,
                num_tx_queues: 3,
            }
        );

        // Loopback: flags, a zero MAC; no queue counts (defaults); no XDP.
        let lo = link_payload(
            1,
            IFF_LOOPBACK,
            &[attr(IFLA_IFNAME, b"lo\0"), attr(IFLA_ADDRESS, &[0; 6]), attr(IFLA_MTU, &65536u32.to_ne_bytes())],
        );
        let lo = parse_link(&lo).unwrap();
        assert!(lo.is_loopback);
        assert_eq!((lo.mac, lo.num_rx_queues, lo.xdp), ([0; 6], 1, XdpState::default()));
        // No MAC at all (a tun device), or a name without its NUL.
        let tun = link_payload(9, 0, &[attr(IFLA_IFNAME, b"tun0"), attr(IFLA_MTU, &1500u32.to_ne_bytes())]);
        let tun = parse_link(&tun).unwrap();
        assert_eq!((tun.name.as_str(), tun.mac), ("tun0", [0; 6]));
        // Missing name or MTU, a 2-byte MTU.
        assert!(parse_link(&link_payload(9, 0, &[attr(IFLA_MTU, &1500u32.to_ne_bytes())])).is_err());
        assert!(parse_link(&link_payload(9, 0, &[attr(IFLA_IFNAME, b"x\0")])).is_err());
        assert!(parse_link(&link_payload(9, 0, &[attr(IFLA_IFNAME, b"x\0"), attr(IFLA_MTU, &[1, 2])])).is_err());

        let xdp = |attrs: &[Vec<u8>]| parse_xdp(&attrs.concat()).unwrap();
        let id = |n: u32| n.to_ne_bytes();
        assert_eq!(xdp(&[attr(IFLA_XDP_ATTACHED, &[0])]), XdpState::default());
        assert_eq!(
            xdp(&[attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_DRV]), attr(IFLA_XDP_PROG_ID, &id(5))]),
            XdpState { prog_id: Some(5), mode: Some(XdpMode::Native) }
        );
        assert_eq!(
            xdp(&[attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_HW]), attr(IFLA_XDP_PROG_ID, &id(5))]).mode,
            Some(XdpMode::Offloaded)
        );
        // Multi mode: per-mode ids only.
        assert_eq!(
            xdp(&[
                attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_MULTI]),
                attr(IFLA_XDP_SKB_PROG_ID, &id(8)),
                attr(IFLA_XDP_HW_PROG_ID, &id(9)),
            ]),
            XdpState { prog_id: Some(8), mode: Some(XdpMode::Multi) }
        );
        // An unknown mode keeps the id; an empty ATTACHED is no mode.
        assert_eq!(xdp(&[attr(IFLA_XDP_ATTACHED, &[77]), attr(IFLA_XDP_PROG_ID, &id(5))]).mode, None);
        assert_eq!(xdp(&[attr(IFLA_XDP_ATTACHED, &[]), attr(IFLA_XDP_PROG_ID, &id(5))]).prog_id, Some(5));
        assert!(parse_xdp(&attr(IFLA_XDP_PROG_ID, &[1])).is_err());
    }

    /// Every truncation and many corruptions of valid answers, and random bytes: errors, never panics.
    #[test]
    fn garbage_never_panics() {
        let request = xdp_setlink(3, 7, XDP_FLAGS_DRV_MODE, None, NLM_F_REQUEST | NLM_F_ACK);
        let route =
            route_payload(RTN_UNICAST, &[attr(RTA_OIF, &4u32.to_ne_bytes()), attr(RTA_GATEWAY, &[10, 0, 0, 1])]);
        let neigh = neigh_payload(2, 4, NUD_REACHABLE, &[attr(NDA_DST, &[10, 0, 0, 2]), attr(NDA_LLADDR, &MAC)]);
        let seeds = [
            msg(RTM_NEWROUTE, 0, 1, &route),
            msg(RTM_NEWNEIGH, NLM_F_MULTI, 1, &neigh),
            msg(RTM_NEWLINK, 0, 1, &sample_link()),
            error_msg(1, libc::ERANGE, request.as_bytes(), false, Some(b"Peer MTU is too large to set XDP\0")),
            error_msg(1, libc::ERANGE, request.as_bytes(), true, Some(b"x\0")),
            msg(NLMSG_DONE, NLM_F_MULTI | NLM_F_ACK_TLVS, 1, &cat(&[&(-1i32).to_ne_bytes(), &attr(1, b"m\0")])),
        ];
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let poke = |datagram: &[u8]| {
            let _ = handle_datagram(datagram, 1, NLM_F_REQUEST | NLM_F_ACK, &mut |msg_type, payload| {
                let _ = match msg_type {
                    RTM_NEWROUTE => parse_route(payload).map(|_| ()),
                    RTM_NEWNEIGH => parse_neighbour(payload, 4, ip).map(|_| ()),
                    _ => parse_link(payload).map(|_| ()),
                };
                Ok(())
            });
            for payload in [datagram, datagram.get(NLMSG_HDRLEN..).unwrap_or(&[])] {
                let _ = parse_route(payload);
                let _ = parse_neighbour(payload, 4, ip);
                let _ = parse_link(payload);
                let _ = parse_xdp(payload);
                let _ = check_nlmsgerr(NLM_F_ACK_TLVS, payload);
                let _ = check_nlmsgerr(NLM_F_ACK_TLVS | NLM_F_CAPPED, payload);
            }
        };
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for seed in &seeds {
            for len in 0..=seed.len() {
                poke(&seed[..len]);
            }
            for _ in 0..2000 {
                let mut bad = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % bad.len();
                    bad[at] = next() as u8;
                }
                let keep = (next() as usize) % (bad.len() + 1);
                bad.truncate(keep.max(bad.len() / 2));
                poke(&bad);
            }
        }
        for _ in 0..5000 {
            let len = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 16 {
                // A plausible header so that the payload parsers run.
                bytes[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
                bytes[8..12].copy_from_slice(&1u32.to_ne_bytes());
            }
            poke(&bytes);
        }
    }

    // ---- Against the kernel, in throwaway network namespaces (root only) ----

    fn is_root() -> bool {
        // Safety: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn run(program: &str, args: &[&str]) -> String {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ip(args: &[&str]) -> String {
        run("ip", args)
    }

    /// Two network namespaces joined by a veth pair (3 TX, 2 RX queues), with 10.77.`subnet`.1/2 and
    /// fd77:`subnet`::1/2; both namespaces are deleted on drop, which also removes the veth.
    struct NetnsPair {
        ns_a: String,
        ns_b: String,
        veth_a: String,
        veth_b: String,
        subnet: u8,
    }

    impl NetnsPair {
        fn new(subnet: u8) -> NetnsPair {
            let pid = std::process::id();
            let pair = NetnsPair {
                ns_a: format!("mvnl-{pid}-{subnet}-a"),
                ns_b: format!("mvnl-{pid}-{subnet}-b"),
                veth_a: format!("nl{pid}t{subnet}a"),
                veth_b: format!("nl{pid}t{subnet}b"),
                subnet,
            };
            assert!(pair.veth_a.len() < IFNAMSIZ);
            ip(&["netns", "add", &pair.ns_a]);
            ip(&["netns", "add", &pair.ns_b]);
            #[rustfmt::skip]
            ip(&["link", "add", &pair.veth_a, "numtxqueues", "3", "numrxqueues", "2", "netns", &pair.ns_a,
                "type", "veth", "peer", "name", &pair.veth_b, "netns", &pair.ns_b]);
            for (ns, dev, host) in [(&pair.ns_a, &pair.veth_a, 1), (&pair.ns_b, &pair.veth_b, 2)] {
                ip(&["-n", ns, "addr", "add", &format!("10.77.{subnet}.{host}/24"), "dev", dev]);
                ip(&["-n", ns, "addr", "add", &format!("fd77:{subnet}::{host}/64"), "dev", dev, "nodad"]);
                ip(&["-n", ns, "link", "set", "lo", "up"]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
            pair
        }

        fn v4(&self, host: u8) -> IpAddr {
            IpAddr::V4(Ipv4Addr::new(10, 77, self.subnet, host))
        }

        fn v6(&self, host: u16) -> IpAddr {
            IpAddr::V6(Ipv6Addr::new(0xfd77, self.subnet.into(), 0, 0, 0, 0, 0, host))
        }

        /// Runs `f` on a thread that has entered namespace `ns`; the test's other threads stay where they are.
        fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
            std::thread::scope(|scope| {
                let thread = scope.spawn(|| {
                    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open the netns");
                    // Safety: setns on an open namespace fd; it affects only the calling thread.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {ns}: {}", io::Error::last_os_error());
                    f()
                });
                thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        }

        /// A device's MAC as the other tools see it.
        fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
            let text = run("ip", &["netns", "exec", ns, "cat", &format!("/sys/class/net/{dev}/address")]);
            let bytes: Vec<u8> = text.trim().split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
            bytes.try_into().unwrap()
        }
    }

    impl Drop for NetnsPair {
        fn drop(&mut self) {
            for ns in [&self.ns_a, &self.ns_b] {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    /// Waits up to 3 s for a usable neighbour entry.
    fn wait_for_neighbour(ifindex: u32, ip: IpAddr) -> Neighbour {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(n) = neighbour(ifindex, ip).unwrap() {
                return n;
            }
            assert!(Instant::now() < deadline, "no neighbour entry for {ip}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn root_routes_and_neighbours() {
        if !is_root() {
            crate::testing::skip_or_fail(
                "root_routes_and_neighbours",
                "needs root for network namespaces (CI runs as root)",
            );
            return;
        }
        let pair = NetnsPair::new(1);
        ip(&["-n", &pair.ns_a, "route", "add", "10.99.0.0/16", "via", &pair.v4(2).to_string()]);
        ip(&["-n", &pair.ns_a, "-6", "route", "add", "fd99::/64", "via", &pair.v6(2).to_string()]);
        let peer_mac = NetnsPair::mac_of(&pair.ns_b, &pair.veth_b);
        NetnsPair::run_in(&pair.ns_a, || {
            let ifindex = ifindex_of(&pair.veth_a).unwrap();
            assert_eq!(link_info(ifindex).unwrap().name, pair.veth_a);

            for (peer, own) in [(pair.v4(2), Some(pair.v4(1))), (pair.v6(2), None)] {
                let route = route_to(peer).unwrap();
                assert_eq!((route.oif, route.gateway), (ifindex, None), "{peer}");
                if own.is_some() {
                    assert_eq!(route.prefsrc, own);
                }
                assert_eq!(route.next_hop(peer), peer);
            }
            let via = route_to("10.99.1.1".parse().unwrap()).unwrap();
            assert_eq!((via.oif, via.gateway), (ifindex, Some(pair.v4(2))));
            let via = route_to("fd99::5".parse().unwrap()).unwrap();
            assert_eq!((via.oif, via.gateway), (ifindex, Some(pair.v6(2))));
            // The namespace has no default route: a lookup (no traffic) fails with the kernel's errno.
            let err = route_to("192.0.2.1".parse().unwrap()).unwrap_err();
            assert_eq!(errno(&err), Some(libc::ENETUNREACH), "{err}");
            // Our own address goes through loopback.
            assert_eq!(route_to(pair.v4(1)).unwrap().oif, ifindex_of("lo").unwrap());

            // No traffic yet, so no entries; one datagram to the discard port makes the kernel resolve the peer
            // (the peer answers with an ICMP error, which is fine).
            for peer in [pair.v4(2), pair.v6(2)] {
                assert_eq!(neighbour(ifindex, peer).unwrap(), None);
                let socket = UdpSocket::bind(if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
                socket.send_to(b"resolve", (peer, 9)).unwrap();
                let n = wait_for_neighbour(ifindex, peer);
                assert_eq!(n.mac, peer_mac, "{peer}");
                assert_eq!(n.state & (NUD_INCOMPLETE | NUD_FAILED), 0);
                // The same address on another interface is not it.
                assert_eq!(neighbour(ifindex_of("lo").unwrap(), peer).unwrap(), None);
            }
            assert_eq!(neighbour(ifindex, pair.v4(200)).unwrap(), None);
        });
    }

    #[test]
    fn root_link_info() {
        if !is_root() {
            crate::testing::skip_or_fail("root_link_info", "needs root for network namespaces (CI runs as root)");
            return;
        }
        let pair = NetnsPair::new(2);
        let own_mac = NetnsPair::mac_of(&pair.ns_a, &pair.veth_a);
        NetnsPair::run_in(&pair.ns_a, || {
            let ifindex = ifindex_of(&pair.veth_a).unwrap();
            let link = link_info(ifindex).unwrap();
            assert_eq!((link.ifindex, link.name.as_str(), link.mac), (ifindex, pair.veth_a.as_str(), own_mac));
            assert_eq!((link.mtu, link.is_loopback), (1500, false));
            assert_eq!((link.num_tx_queues, link.num_rx_queues), (3, 2));
            assert_eq!(link.xdp, XdpState::default());

            ip(&["-n", &pair.ns_a, "link", "set", &pair.veth_a, "mtu", "9000"]);
            assert_eq!(link_info(ifindex).unwrap().mtu, 9000);

            let lo = link_info(ifindex_of("lo").unwrap()).unwrap();
            assert_eq!((lo.name.as_str(), lo.is_loopback, lo.mac), ("lo", true, [0; 6]));

            assert_eq!(errno(&ifindex_of("nlnosuchdev").unwrap_err()), Some(libc::ENODEV));
            assert_eq!(errno(&link_info(999_999).unwrap_err()), Some(libc::ENODEV));
        });
    }

    /// Loads `r0 = XDP_PASS; exit` as an XDP program with the `mover_ebpf` loader.
    fn load_xdp_pass() -> OwnedFd {
        use mover_ebpf::insn::{Insn, Reg};
        mover_ebpf::sys::prog_load_xdp(&[Insn::mov64_imm(Reg::R0, 2), Insn::exit()], "mvnl_test", None)
            .unwrap_or_else(|e| panic!("BPF_PROG_LOAD: {e}"))
    }

    /// The program's id.
    fn prog_id(prog: &OwnedFd) -> u32 {
        use std::os::fd::AsFd;
        mover_ebpf::sys::prog_info(prog.as_fd()).expect("BPF_OBJ_GET_INFO_BY_FD").id
    }

    #[test]
    fn root_xdp_attach_and_detach() {
        if !is_root() {
            crate::testing::skip_or_fail(
                "root_xdp_attach_and_detach",
                "needs root for network namespaces (CI runs as root)",
            );
            return;
        }
        let pair = NetnsPair::new(3);
        let (prog1, prog2) = (load_xdp_pass(), load_xdp_pass());
        let (id1, id2) = (prog_id(&prog1), prog_id(&prog2));
        assert_ne!(id1, id2);
        let (fd1, fd2) = (prog1.as_raw_fd(), prog2.as_raw_fd());
        NetnsPair::run_in(&pair.ns_a, || {
            let ifindex = ifindex_of(&pair.veth_a).unwrap();
            let xdp = || link_info(ifindex).unwrap().xdp;
            let state = |id, mode| XdpState { prog_id: Some(id), mode: Some(mode) };

            // Generic.
            xdp_attach(ifindex, fd1, XDP_FLAGS_SKB_MODE, None).unwrap();
            assert_eq!(xdp(), state(id1, XdpMode::Generic));
            let busy = xdp_attach(ifindex, fd2, XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, None).unwrap_err();
            assert_eq!(errno(&busy), Some(libc::EBUSY), "{busy}");
            eprintln!("UPDATE_IF_NOEXIST refused: {busy}");
            // Replace only the expected program.
            let wrong = xdp_attach(ifindex, fd2, XDP_FLAGS_SKB_MODE, Some(fd2)).unwrap_err();
            assert_eq!(errno(&wrong), Some(libc::EEXIST), "{wrong}");
            xdp_attach(ifindex, fd2, XDP_FLAGS_SKB_MODE, Some(fd1)).unwrap();
            assert_eq!(xdp(), state(id2, XdpMode::Generic));
            // Detach only the expected program.
            let wrong = xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, Some(fd1)).unwrap_err();
            assert_eq!(errno(&wrong), Some(libc::EEXIST), "{wrong}");
            xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, Some(fd2)).unwrap();
            assert_eq!(xdp(), XdpState::default());

            // Native: veth supports it while the peer's MTU fits in a page.
            xdp_attach(ifindex, fd1, XDP_FLAGS_DRV_MODE, None).unwrap();
            assert_eq!(xdp(), state(id1, XdpMode::Native));
            xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, None).unwrap();
            assert_eq!(xdp(), XdpState::default());

            // The kernel's reason for a refusal reaches the caller.
            ip(&["-n", &pair.ns_b, "link", "set", &pair.veth_b, "mtu", "9000"]);
            let refused = xdp_attach(ifindex, fd1, XDP_FLAGS_DRV_MODE, None).unwrap_err();
            eprintln!("native attach with peer MTU 9000 refused: {refused}");
            assert!(refused.to_string().contains("MTU"), "{refused}");
            assert!(errno(&refused).is_some());
            assert_eq!(xdp(), XdpState::default());
            ip(&["-n", &pair.ns_b, "link", "set", &pair.veth_b, "mtu", "1500"]);

            // The prebuilt detach, as a signal handler would send it.
            xdp_attach(ifindex, fd1, XDP_FLAGS_DRV_MODE, None).unwrap();
            assert_eq!(xdp(), state(id1, XdpMode::Native));
            let detach = xdp_detach_request(ifindex, XDP_FLAGS_DRV_MODE);
            detach.send_unchecked();
            assert_eq!(xdp(), XdpState::default());
            detach.send_unchecked(); // nothing attached: harmless

            xdp_attach(ifindex, fd2, XDP_FLAGS_SKB_MODE, None).unwrap();
            xdp_detach_request(ifindex, XDP_FLAGS_SKB_MODE).send_unchecked();
            assert_eq!(xdp(), XdpState::default());
        });
    }
}
