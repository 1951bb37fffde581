//! Batched UDP for the data path: `sendmmsg`/`recvmmsg`, UDP GSO on send and UDP GRO on receive.
//!
//! Three types:
//! - [`DataSocket`] owns a non-blocking UDP socket (IPv4 or IPv6) and does the system calls;
//! - [`TxBatch`] owns the datagrams waiting to be sent (one contiguous buffer of fixed slots, used as a ring);
//! - [`RxBatch`] owns the buffers the kernel receives into and the table of datagrams split out of them.
//!
//! All buffers and the kernel-facing scratch arrays (`mmsghdr`, `iovec`, control messages, socket addresses)
//! are allocated by `TxBatch::new` / `RxBatch::new`; sending and receiving never allocate. The only
//! allocations after construction are in the error paths that attach context to an `io::Error`
//! (`ECONNREFUSED` from a send is returned without context, so counting and ignoring it stays free).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

use super::xsk::{UmemArea, FRAME_SIZE, MAX_DATAGRAM};
use std::sync::Arc;

/// Most segments the kernel accepts in one UDP GSO send (`UDP_MAX_SEGMENTS`), and most GRO coalesces.
const MAX_SEGMENTS: usize = 64;

/// Largest UDP payload in one IPv4 GSO send: 65535 - 20 (IPv4 header) - 8 (UDP header).
const GSO_MAX_PAYLOAD_V4: usize = 65_507;

/// Largest UDP payload in one IPv6 GSO send: 65535 - 40 (IPv6 header) - 8 (UDP header).
const GSO_MAX_PAYLOAD_V6: usize = 65_487;

/// `sendmmsg`/`recvmmsg` take at most this many messages per call (`UIO_MAXIOV`).
const MAX_MESSAGES: usize = 1024;

/// Room for one control message carrying an `int` or `u16`, aligned like `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

impl CmsgBuf {
    const ZERO: CmsgBuf = CmsgBuf([0; 32]);
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `err` with `what` in front of its message, keeping its kind.
fn context(err: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Converts a `SocketAddr` to a `sockaddr_storage` and the length of the part in use.
///
/// With `v6_socket` an IPv4 address is written as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as a
/// dual-stack IPv6 socket expects.
pub(crate) fn to_sockaddr(addr: &SocketAddr, v6_socket: bool) -> (libc::sockaddr_storage, libc::socklen_t) {
    // Safety: sockaddr_storage is plain old data for which all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let addr = match (addr, v6_socket) {
        (SocketAddr::V4(a), true) => SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)),
        _ => *addr,
    };
    match addr {
        SocketAddr::V4(a) => {
            // Safety: sockaddr_in is plain old data; all-zero is valid.
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            // Safety: sockaddr_storage is larger than sockaddr_in and aligned at least as strictly (it is
            // designed to hold any sockaddr), so writing one at its start is in bounds and aligned.
            unsafe { ptr::write(&mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in, sin) };
            (storage, mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // Safety: sockaddr_in6 is plain old data; all-zero is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            // Like std: flowinfo and scope id are passed through as the kernel stores them.
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // Safety: as above, sockaddr_storage can hold a sockaddr_in6 at its start.
            unsafe { ptr::write(&mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6, sin6) };
            (storage, mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Converts a `sockaddr_storage` filled in by the kernel (`len` bytes valid) to a `SocketAddr`.
///
/// Returns `None` for other families or a too-short length. IPv4-mapped IPv6 addresses stay IPv6.
pub(crate) fn from_sockaddr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // Safety: the family says the storage holds a sockaddr_in, the length says all of it was written,
            // and sockaddr_storage is aligned for it.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // Safety: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A non-blocking UDP socket for bulk data, sending and receiving in batches.
///
/// The socket owns its file descriptor (closed on drop) and no packet buffers: those belong to the
/// [`TxBatch`] and [`RxBatch`] the caller passes in, so one socket can be used with batches of any shape.
#[derive(Debug)]
pub struct DataSocket {
    fd: OwnedFd,
    /// The socket is AF_INET6 (IPv4 peers are then written as IPv4-mapped addresses).
    v6: bool,
    /// Fixed peer set by `connect`, used by `send_batch`.
    peer: Option<SocketAddr>,
    /// Largest segment size for which runs of datagrams are sent as one GSO message; `None` = no GSO.
    gso_segment: Option<u16>,
    /// UDP_GRO is on: receives may carry several datagrams.
    gro: bool,
}

impl DataSocket {
    /// Opens a non-blocking, close-on-exec UDP socket bound to `local` (port 0 picks a free port).
    pub fn bind(local: SocketAddr) -> io::Result<DataSocket> {
        let v6 = local.is_ipv6();
        let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // Safety: plain system call with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(context(io::Error::last_os_error(), format_args!("creating a UDP socket for {local}")));
        }
        // Safety: `fd` was just returned by socket(2), is valid, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (storage, len) = to_sockaddr(&local, v6);
        // Safety: `storage` holds a valid sockaddr of `len` bytes and outlives the call.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), &storage as *const _ as *const libc::sockaddr, len) };
        if rc < 0 {
            return Err(context(io::Error::last_os_error(), format_args!("binding UDP socket to {local}")));
        }
        Ok(DataSocket { fd, v6, peer: None, gso_segment: None, gro: false })
    }

    /// The address the socket is bound to (with the port the kernel picked).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // Safety: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // Safety: `storage` and `len` are valid for writes and `len` is the storage's size.
        let rc =
            unsafe { libc::getsockname(self.fd.as_raw_fd(), &mut storage as *mut _ as *mut libc::sockaddr, &mut len) };
        if rc < 0 {
            return Err(context(io::Error::last_os_error(), "getsockname on UDP socket"));
        }
        from_sockaddr(&storage, len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "getsockname returned an unknown address family"))
    }

    /// Fixes the peer for [`send_batch`](Self::send_batch); datagrams from other sources are then dropped by
    /// the kernel, and ICMP errors from the peer are reported (as `ECONNREFUSED`) on later sends.
    pub fn connect(&mut self, peer: SocketAddr) -> io::Result<()> {
        let (storage, len) = to_sockaddr(&peer, self.v6);
        // Safety: `storage` holds a valid sockaddr of `len` bytes and outlives the call.
        let rc = unsafe { libc::connect(self.fd.as_raw_fd(), &storage as *const _ as *const libc::sockaddr, len) };
        if rc < 0 {
            return Err(context(io::Error::last_os_error(), format_args!("connecting UDP socket to {peer}")));
        }
        self.peer = Some(peer);
        Ok(())
    }

    /// Sets the don't-fragment bit on every datagram without letting the kernel's path MTU cache shrink or
    /// refuse them (`IP_PMTUDISC_PROBE`, `IPV6_PMTUDISC_PROBE`): the sender sizes datagrams itself and
    /// learns what the path carries from what arrives (PROTOCOL.md §4.8), so a router on the way never
    /// fragments them and a stale cache entry never turns a send into `EMSGSIZE`.
    pub fn set_pmtu_probe(&self) -> io::Result<()> {
        if self.v6 {
            self.set_int_opt(libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
        } else {
            self.set_int_opt(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
        }
        .map_err(|e| context(e, "setting IP_PMTUDISC_PROBE on the UDP socket"))
    }

    /// The path MTU the kernel knows towards the connected peer (`IP_MTU`, `IPV6_MTU`): the route's MTU,
    /// or less when an ICMP "fragmentation needed" or "packet too big" taught it better.
    pub fn path_mtu(&self) -> io::Result<usize> {
        let v = if self.v6 {
            self.get_int_opt(libc::IPPROTO_IPV6, libc::IPV6_MTU)
        } else {
            self.get_int_opt(libc::IPPROTO_IP, libc::IP_MTU)
        };
        v.map(|m| m.max(0) as usize).map_err(|e| context(e, "reading IP_MTU of the UDP socket"))
    }

    /// A second handle to the same socket (a duplicated descriptor with the same settings), so that one stage
    /// can send while another receives.
    pub fn try_clone(&self) -> io::Result<DataSocket> {
        let fd = self.fd.try_clone().map_err(|e| context(e, "duplicating the UDP socket"))?;
        Ok(DataSocket { fd, v6: self.v6, peer: self.peer, gso_segment: self.gso_segment, gro: self.gro })
    }

    /// The peer set by [`connect`](Self::connect).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn set_int_opt(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // Safety: `value` is a valid c_int for the duration of the call and its size is passed along.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &value as *const libc::c_int as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn get_int_opt(&self, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // Safety: `value` and `len` are valid for writes and `len` is the size of `value`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(value)
        }
    }

    /// Asks for `bytes` of send and receive buffer: `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` when permitted
    /// (root or CAP_NET_ADMIN, past the `net.core.[rw]mem_max` ceilings), else `SO_SNDBUF`/`SO_RCVBUF`
    /// (capped by those ceilings). Returns the effective `(snd, rcv)` sizes as the kernel reports them
    /// (`getsockopt`: double the request, the kernel's allowance for bookkeeping); 0 if unreadable.
    pub fn set_buffer_bytes(&self, bytes: usize) -> (usize, usize) {
        let value = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        for (force, plain) in [(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF), (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)] {
            if self.set_int_opt(libc::SOL_SOCKET, force, value).is_err() {
                // Without the privilege the plain option still gets as close as the sysctl ceiling allows;
                // failure leaves the default, which the returned sizes show.
                let _ = self.set_int_opt(libc::SOL_SOCKET, plain, value);
            }
        }
        let snd = self.get_int_opt(libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0).max(0) as usize;
        let rcv = self.get_int_opt(libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0).max(0) as usize;
        (snd, rcv)
    }

    /// Turns on UDP GSO for [`send_batch`](Self::send_batch) if the kernel supports `UDP_SEGMENT`.
    ///
    /// The probe sets the socket option to `segment_bytes` and back to 0; sends then attach the segment
    /// size per message (a `UDP_SEGMENT` control message), so runs of equal-size datagrams of at most
    /// `segment_bytes` each go out as one message. Datagrams longer than `segment_bytes` (keep it at or below
    /// the path MTU's payload, e.g. 1472) are sent one per message. Returns false if unsupported.
    ///
    /// If the route cannot do GSO (a device without checksum offload answers `EIO`, a segment larger than
    /// the route MTU `EINVAL`), `send_batch` turns GSO off by itself and resends without it; check
    /// [`gso_enabled`](Self::gso_enabled) afterwards.
    pub fn enable_gso(&mut self, segment_bytes: u16) -> bool {
        if segment_bytes == 0 {
            return false;
        }
        if self.set_int_opt(libc::SOL_UDP, libc::UDP_SEGMENT, segment_bytes as libc::c_int).is_err() {
            return false;
        }
        if self.set_int_opt(libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_err() {
            return false;
        }
        self.gso_segment = Some(segment_bytes);
        true
    }

    /// Whether `send_batch` currently uses GSO.
    pub fn gso_enabled(&self) -> bool {
        self.gso_segment.is_some()
    }

    /// Turns on UDP GRO for receiving: the kernel may hand over several datagrams from one sender as one
    /// coalesced receive, which [`recv_batch`](Self::recv_batch) splits back into datagrams. The
    /// [`RxBatch`] used with a GRO socket must have slots of at least [`RxBatch::GRO_DATAGRAM`] bytes.
    /// Returns false if unsupported.
    pub fn enable_gro(&mut self) -> bool {
        self.gro = self.set_int_opt(libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        self.gro
    }

    /// Whether UDP GRO is on.
    pub fn gro_enabled(&self) -> bool {
        self.gro
    }

    /// Sends the queued datagrams of `batch` to the connected peer with `sendmmsg`, removing the ones sent
    /// from the front of the batch, and returns how many were sent.
    ///
    /// With GSO, each run of equal-size datagrams (at most 64, at most 64 KiB in total, the last one may be
    /// shorter) is one message. When the socket buffer is full (`EAGAIN`/`ENOBUFS`) the count sent so far is
    /// returned (possibly 0) and the rest stay queued: retry later. An ICMP port unreachable from the peer
    /// is returned once as an error of kind `ConnectionRefused` (raw `ECONNREFUSED`, no allocation) with
    /// nothing removed; count it and call again.
    pub fn send_batch(&mut self, batch: &mut TxBatch) -> io::Result<usize> {
        self.send_batch_upto(batch, usize::MAX)
    }

    /// Like [`send_batch`](Self::send_batch), but sends at most the `limit` oldest datagrams (the pacer's
    /// allowance).
    pub fn send_batch_upto(&mut self, batch: &mut TxBatch, limit: usize) -> io::Result<usize> {
        let Some(peer) = self.peer else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "send_batch on a UDP socket without a peer"));
        };
        if batch.len == 0 || limit == 0 {
            return Ok(0);
        }
        loop {
            let max_payload = if self.v6 { GSO_MAX_PAYLOAD_V6 } else { GSO_MAX_PAYLOAD_V4 };
            let (messages, first_is_gso) = batch.prepare(self.gso_segment.map(usize::from), max_payload, limit);
            // Safety: `prepare` filled `batch.hdrs[..messages]` with msghdrs whose iovecs and control buffers
            // point into `batch`'s own buffers, which stay alive and unmoved (borrowed mutably here) for the
            // call; `messages` <= hdrs.len() <= UIO_MAXIOV.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    messages as libc::c_uint,
                    // The flags are an int on glibc and an unsigned on musl.
                    libc::MSG_DONTWAIT as _,
                )
            };
            if rc >= 0 {
                let sent: usize = batch.segs[..rc as usize].iter().map(|&s| s as usize).sum();
                batch.consume(sent);
                return Ok(sent);
            }
            match errno() {
                libc::EAGAIN | libc::ENOBUFS | libc::EINTR => return Ok(0),
                libc::ECONNREFUSED => return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
                libc::EIO | libc::EINVAL if first_is_gso => {
                    // The route cannot segment (no checksum offload, or segments above its MTU): go on
                    // without GSO.
                    self.gso_segment = None;
                }
                e => {
                    return Err(context(
                        io::Error::from_raw_os_error(e),
                        format_args!("sendmmsg of {messages} messages to {peer}"),
                    ))
                }
            }
        }
    }

    /// Sends one datagram to `to` (for feedback-style sends on an unconnected socket). A full socket buffer
    /// is an error of kind `WouldBlock`.
    pub fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<()> {
        let (storage, len) = to_sockaddr(&to, self.v6);
        // Safety: `buf` is valid for reads of its length; `storage` holds a valid sockaddr of `len` bytes;
        // both outlive the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
                &storage as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if rc < 0 {
            return Err(context(io::Error::last_os_error(), format_args!("sendto {to} ({} bytes)", buf.len())));
        }
        Ok(())
    }

    /// Receives what is waiting, without blocking, into `batch` (replacing its previous contents) with
    /// `recvmmsg`, and returns the number of datagrams now in it (0 if nothing was waiting).
    ///
    /// With GRO, a coalesced receive is split into its datagrams (the `UDP_GRO` control message gives the
    /// segment size; the last one may be shorter). Datagrams longer than the batch's slots are dropped and
    /// counted in [`RxBatch::truncated`].
    pub fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.count = 0;
        if self.gro && batch.max_datagram < RxBatch::GRO_DATAGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "recv_batch on a GRO socket needs RxBatch slots of {} bytes, this batch has {}",
                    RxBatch::GRO_DATAGRAM,
                    batch.max_datagram
                ),
            ));
        }
        let messages = batch.prepare(self.gro);
        // Safety: `prepare` filled `batch.hdrs[..messages]` with msghdrs whose name, iovec and control
        // pointers point into `batch`'s own buffers (sized as declared), alive and unmoved for the call.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                messages as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            return match errno() {
                libc::EAGAIN | libc::EINTR => Ok(0),
                libc::ECONNREFUSED => Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
                e => Err(context(io::Error::from_raw_os_error(e), "recvmmsg on UDP data socket")),
            };
        }
        batch.split(rc as usize);
        Ok(batch.count)
    }

    fn poll(&self, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events, revents: 0 };
        // ppoll, not poll: the pacer sleeps for tens of microseconds, and poll(2) rounds up to milliseconds.
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // Safety: `pfd` is one valid pollfd and `ts` a valid timespec, both live for the call; no signal mask.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if rc < 0 {
            if errno() == libc::EINTR {
                return Ok(false);
            }
            return Err(context(io::Error::last_os_error(), "poll on UDP data socket"));
        }
        Ok(rc > 0 && pfd.revents != 0)
    }

    /// Waits up to `timeout` for a datagram (or a pending error) with `ppoll(2)`; true if one is waiting.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        self.poll(libc::POLLIN, timeout)
    }

    /// Waits up to `timeout` for room in the socket send buffer with `ppoll(2)`; true if there is room.
    pub fn wait_writable(&self, timeout: Duration) -> io::Result<bool> {
        self.poll(libc::POLLOUT, timeout)
    }

    /// The file descriptor, for the caller's own `poll`/`epoll`. The socket keeps ownership.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsRawFd for DataSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Where a batch's slots live: its own heap buffer, or frames of an AF_XDP UMEM (the XDP path's batches, so
/// that the packetizer writes datagrams straight into the frames the NIC sends from).
struct SlotMem {
    base: *mut u8,
    len: usize,
    /// Bytes from one slot's start to the next.
    stride: usize,
    /// Bytes kept free in front of each slot's datagram (for the headers of the XDP path).
    headroom: usize,
    /// Keeps the memory alive.
    _owner: MemOwner,
}

enum MemOwner {
    Heap(#[allow(dead_code)] Vec<u8>),
    Umem(#[allow(dead_code)] Arc<UmemArea>),
}

impl SlotMem {
    fn heap(slots: usize, slot_bytes: usize) -> SlotMem {
        let mut v = vec![0u8; slots * slot_bytes];
        // The heap buffer does not move when the Vec (moved into `_owner`) does.
        let base = v.as_mut_ptr();
        SlotMem { base, len: v.len(), stride: slot_bytes, headroom: 0, _owner: MemOwner::Heap(v) }
    }

    /// `slots` frames of `area` from `first` (an area offset), datagrams `headroom` bytes into each.
    fn frames(area: Arc<UmemArea>, first: usize, slots: usize, headroom: usize) -> SlotMem {
        assert!(first % FRAME_SIZE == 0 && first + slots * FRAME_SIZE <= area.len(), "frames outside the UMEM");
        // Safety (of the pointer arithmetic): the frames lie inside the area, as just asserted.
        let base = unsafe { area.base().add(first) };
        SlotMem { base, len: slots * FRAME_SIZE, stride: FRAME_SIZE, headroom, _owner: MemOwner::Umem(area) }
    }

    /// Bytes `off..off + len` of the memory.
    #[inline]
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.len, "slot bytes {off}+{len} outside {}", self.len);
        // Safety: in bounds (asserted); the memory lives as long as `_owner`, i.e. as `self`; shared access
        // follows from `&self` (the batch owns its slots; see the ownership rule of `net::xsk`).
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }

    /// Bytes `off..off + len` of the memory, writable.
    #[inline]
    fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        assert!(off + len <= self.len, "slot bytes {off}+{len} outside {}", self.len);
        // Safety: as in `bytes`, with exclusive access from `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off), len) }
    }

    /// Start of slot `i`'s datagram.
    #[inline]
    fn slot_start(&self, i: usize) -> usize {
        i * self.stride + self.headroom
    }
}

/// Datagrams queued for [`DataSocket::send_batch`].
///
/// The batch owns one contiguous buffer of `capacity` slots of `max_datagram` bytes, used as a ring: the
/// caller fills the next free slot ([`slot`](Self::slot)) and [`commit`](Self::commit)s its length;
/// `send_batch` removes datagrams from the front as they are sent. It also owns the `mmsghdr`/`iovec`/control
/// scratch arrays for `sendmmsg`. Nothing is allocated after [`new`](Self::new). A slot's bytes persist
/// across uses, so a caller may rewrite only a header each time.
pub struct TxBatch {
    mem: SlotMem,
    max_datagram: usize,
    capacity: usize,
    /// Length of the datagram in each slot.
    lens: Vec<usize>,
    /// Slot of the oldest queued datagram.
    head: usize,
    /// Queued datagrams.
    len: usize,
    // sendmmsg scratch, rebuilt before every call.
    hdrs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    cmsg: Vec<CmsgBuf>,
    /// Datagrams in each prepared message.
    segs: Vec<u16>,
}

// Safety: the raw pointers inside `hdrs`/`iov` only ever point into this batch's own heap buffers; they are
// rewritten by `prepare` before every system call and never dereferenced by Rust code, so moving the batch
// to another thread cannot create shared access.
unsafe impl Send for TxBatch {}

impl std::fmt::Debug for TxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBatch")
            .field("capacity", &self.capacity)
            .field("max_datagram", &self.max_datagram)
            .field("len", &self.len)
            .finish()
    }
}

impl TxBatch {
    /// A batch of up to `capacity` datagrams of up to `max_datagram` bytes each (both at least 1;
    /// `max_datagram` at most 65535).
    pub fn new(capacity: usize, max_datagram: usize) -> Self {
        assert!(capacity >= 1, "TxBatch capacity must be at least 1");
        assert!((1..=65_535).contains(&max_datagram), "TxBatch max_datagram must be 1..=65535");
        Self::with_mem(SlotMem::heap(capacity, max_datagram), capacity, max_datagram)
    }

    /// A batch whose `capacity` slots are the UMEM frames of `area` from area offset `first_frame` on, each
    /// datagram `headroom` bytes into its frame (room for the headers the XDP path writes in front).
    pub fn in_frames(area: Arc<UmemArea>, first_frame: usize, capacity: usize, headroom: usize) -> Self {
        assert!(headroom < FRAME_SIZE);
        let max_datagram = (FRAME_SIZE - headroom).min(65_535);
        Self::with_mem(SlotMem::frames(area, first_frame, capacity, headroom), capacity, max_datagram)
    }

    fn with_mem(mem: SlotMem, capacity: usize, max_datagram: usize) -> Self {
        assert!(capacity >= 1, "TxBatch capacity must be at least 1");
        let messages = capacity.min(MAX_MESSAGES);
        // Safety: mmsghdr is plain old data (pointers and integers); all-zero is valid.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        let zero_iov = libc::iovec { iov_base: ptr::null_mut(), iov_len: 0 };
        TxBatch {
            mem,
            max_datagram,
            capacity,
            lens: vec![0; capacity],
            head: 0,
            len: 0,
            hdrs: vec![zero_hdr; messages],
            iov: vec![zero_iov; capacity],
            cmsg: vec![CmsgBuf::ZERO; messages],
            segs: vec![0; messages],
        }
    }

    /// The next free slot (`max_datagram` bytes) to write a datagram into, `None` when the batch is full.
    /// Nothing is queued until [`commit`](Self::commit).
    pub fn slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let i = (self.head + self.len) % self.capacity;
        let start = self.mem.slot_start(i);
        Some(self.mem.bytes_mut(start, self.max_datagram))
    }

    /// Queues the first `len` bytes of the slot returned by [`slot`](Self::slot) as a datagram.
    ///
    /// Panics if the batch is full or `len` exceeds `max_datagram`.
    pub fn commit(&mut self, len: usize) {
        assert!(!self.is_full(), "TxBatch::commit on a full batch");
        assert!(len <= self.max_datagram, "TxBatch::commit of {len} bytes > max_datagram {}", self.max_datagram);
        let i = (self.head + self.len) % self.capacity;
        self.lens[i] = len;
        self.len += 1;
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No datagram queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No free slot.
    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Most datagrams the batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest datagram a slot holds.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Drops every queued datagram.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The queued datagram `i` (0 = next to be sent).
    pub fn get(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "TxBatch::get({i}) with {} queued", self.len);
        let s = (self.head + i) % self.capacity;
        self.mem.bytes(self.mem.slot_start(s), self.lens[s])
    }

    /// For a batch made by [`in_frames`](Self::in_frames): queued datagram `i` with the `header_len` bytes in
    /// front of it, writable, and the area offset where those bytes start (what a TX descriptor names).
    pub fn framed_mut(&mut self, i: usize, header_len: usize) -> (&mut [u8], u64) {
        assert!(i < self.len && header_len <= self.mem.headroom, "framed_mut({i}, {header_len})");
        let MemOwner::Umem(area) = &self.mem._owner else { panic!("framed_mut on a heap batch") };
        let s = (self.head + i) % self.capacity;
        let start = self.mem.slot_start(s) - header_len;
        // Safety (of the pointer difference): `mem.base` points into `area` (see `SlotMem::frames`).
        let area_offset = unsafe { self.mem.base.offset_from(area.base()) } as usize + start;
        let len = header_len + self.lens[s];
        (self.mem.bytes_mut(start, len), area_offset as u64)
    }

    /// Area offset of the first frame of a batch made by [`in_frames`](Self::in_frames), `None` for a heap one.
    pub fn first_frame(&self) -> Option<u64> {
        let MemOwner::Umem(area) = &self.mem._owner else { return None };
        // Safety (of the pointer difference): `mem.base` points into `area`.
        Some(unsafe { self.mem.base.offset_from(area.base()) } as u64)
    }

    /// Removes the `n` oldest datagrams after a sink other than [`DataSocket`] sent them.
    pub fn mark_sent(&mut self, n: usize) {
        self.consume(n);
    }

    /// Removes the `n` oldest datagrams (they were sent).
    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let n = n.min(self.len);
        self.head = (self.head + n) % self.capacity;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }

    /// Fills the `sendmmsg` scratch for the queued datagrams: one iovec per datagram in queue order, grouped
    /// into messages (GSO runs when `gso_segment` is set). Returns the message count and whether the first
    /// message is a GSO one.
    fn prepare(&mut self, gso_segment: Option<usize>, max_payload: usize, limit: usize) -> (usize, bool) {
        let base = self.mem.base;
        let count = self.len.min(limit);
        for k in 0..count {
            let s = (self.head + k) % self.capacity;
            // Safety: s < capacity, so the slot's start is within the slot memory; only the pointer is
            // computed here.
            let p = unsafe { base.add(self.mem.slot_start(s)) };
            self.iov[k] = libc::iovec { iov_base: p as *mut libc::c_void, iov_len: self.lens[s] };
        }
        let mut k = 0;
        let mut m = 0;
        let mut first_is_gso = false;
        while k < count && m < self.hdrs.len() {
            let size = self.iov[k].iov_len;
            let mut run = 1;
            if let Some(seg) = gso_segment {
                if size > 0 && size <= seg {
                    let mut total = size;
                    while k + run < count && run < MAX_SEGMENTS {
                        let next = self.iov[k + run].iov_len;
                        if next == 0 || next > size || total + next > max_payload {
                            break;
                        }
                        total += next;
                        run += 1;
                        if next < size {
                            break; // a shorter datagram can only end a run
                        }
                    }
                }
            }
            let hdr = &mut self.hdrs[m].msg_hdr;
            hdr.msg_name = ptr::null_mut();
            hdr.msg_namelen = 0;
            hdr.msg_iov = &mut self.iov[k];
            hdr.msg_iovlen = run as _;
            hdr.msg_flags = 0;
            if run > 1 {
                let cbuf = &mut self.cmsg[m];
                hdr.msg_control = cbuf.0.as_mut_ptr() as *mut libc::c_void;
                // Safety: CMSG_SPACE is a pure size computation.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
                debug_assert!(hdr.msg_controllen <= mem::size_of::<CmsgBuf>() as _);
                // Safety: msg_control points at a CmsgBuf (aligned for cmsghdr) of at least msg_controllen
                // bytes, so CMSG_FIRSTHDR returns a non-null, in-bounds, aligned pointer to its start; the
                // header and its u16 payload (CMSG_LEN(2) bytes) fit in CMSG_SPACE(2).
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size as u16);
                }
                if m == 0 {
                    first_is_gso = true;
                }
            } else {
                hdr.msg_control = ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            self.hdrs[m].msg_len = 0;
            self.segs[m] = run as u16;
            k += run;
            m += 1;
        }
        (m, first_is_gso)
    }
}

/// Where one received datagram sits in an [`RxBatch`].
#[derive(Clone, Copy)]
struct RxEntry {
    offset: usize,
    len: usize,
    from: SocketAddr,
}

/// Buffers for [`DataSocket::recv_batch`] and the datagrams last received into them.
///
/// The batch owns one contiguous buffer of `capacity` receive slots of `max_datagram` bytes, the
/// `mmsghdr`/`iovec`/address/control scratch for `recvmmsg`, and a table of received datagrams. Each
/// `recv_batch` replaces the contents; [`get_mut`](Self::get_mut) lends datagram `i` until the next receive.
///
/// **GRO:** a coalesced receive holds up to 64 datagrams in one slot, so a batch used with a GRO socket
/// needs slots of [`GRO_DATAGRAM`](Self::GRO_DATAGRAM) (64 KiB) bytes; `recv_batch` refuses smaller ones.
/// Such a batch is `capacity` x 64 KiB of buffer (16 slots = 1 MiB) and may return up to `capacity` x 64
/// datagrams (split in place, no copy). Without GRO, size slots for the largest expected datagram.
pub struct RxBatch {
    mem: SlotMem,
    /// UMEM frames (area offsets) this batch holds, XDP path only: they go back to the fill ring when the
    /// batch is reused.
    frames: Vec<u64>,
    max_datagram: usize,
    capacity: usize,
    entries: Vec<RxEntry>,
    count: usize,
    truncated: u64,
    // recvmmsg scratch, rebuilt before every call.
    hdrs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsg: Vec<CmsgBuf>,
}

// Safety: as for TxBatch, the raw pointers in the scratch arrays only point into this batch's own heap
// buffers, are rewritten before every system call, and are never dereferenced by Rust code.
unsafe impl Send for RxBatch {}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch")
            .field("capacity", &self.capacity)
            .field("max_datagram", &self.max_datagram)
            .field("len", &self.count)
            .finish()
    }
}

impl RxBatch {
    /// Slot size needed to receive coalesced (GRO) datagrams: the largest UDP payload of one IP packet.
    pub const GRO_DATAGRAM: usize = 65_535;

    /// A batch of `capacity` receive slots of `max_datagram` bytes (both at least 1, `capacity` at most 1024).
    pub fn new(capacity: usize, max_datagram: usize) -> Self {
        assert!((1..=MAX_MESSAGES).contains(&capacity), "RxBatch capacity must be 1..=1024");
        assert!((1..=65_535).contains(&max_datagram), "RxBatch max_datagram must be 1..=65535");
        let per_slot = if max_datagram >= Self::GRO_DATAGRAM { MAX_SEGMENTS } else { 1 };
        // Safety: mmsghdr and sockaddr_storage are plain old data; all-zero is valid.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        // Safety: as above.
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_entry = RxEntry { offset: 0, len: 0, from: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0) };
        RxBatch {
            mem: SlotMem::heap(capacity, max_datagram),
            frames: Vec::new(),
            max_datagram,
            capacity,
            entries: vec![zero_entry; capacity * per_slot],
            count: 0,
            truncated: 0,
            hdrs: vec![zero_hdr; capacity],
            iov: vec![libc::iovec { iov_base: ptr::null_mut(), iov_len: 0 }; capacity],
            addrs: vec![zero_addr; capacity],
            cmsg: vec![CmsgBuf::ZERO; capacity],
        }
    }

    /// Datagrams received by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The last `recv_batch` got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Receive slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes per receive slot.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Datagrams dropped so far because they did not fit a slot (or a coalesced receive was cut short).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Datagram `i` (in arrival order) and its source. Panics if `i >= len()`.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddr) {
        assert!(i < self.count, "RxBatch::get_mut({i}) with {} datagrams", self.count);
        let e = self.entries[i];
        (self.mem.bytes_mut(e.offset, e.len), e.from)
    }

    /// Datagram `i` and its source, read-only.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        assert!(i < self.count, "RxBatch::get({i}) with {} datagrams", self.count);
        let e = self.entries[i];
        (self.mem.bytes(e.offset, e.len), e.from)
    }

    /// Replaces the contents with `datagrams` from `from`, as if received (one per slot; longer ones are
    /// counted as truncated). For driving a receive stage without a socket.
    pub fn fill_from(&mut self, datagrams: &[&[u8]], from: SocketAddr) {
        self.count = 0;
        for (i, d) in datagrams.iter().take(self.capacity).enumerate() {
            if d.len() > self.max_datagram {
                self.truncated += 1;
                continue;
            }
            let offset = i * self.max_datagram;
            self.mem.bytes_mut(offset, d.len()).copy_from_slice(d);
            self.entries[self.count] = RxEntry { offset, len: d.len(), from };
            self.count += 1;
        }
    }

    /// A batch for the XDP path: up to `capacity` datagrams that stay in the UMEM frames of `area` they
    /// arrived in (no copy), filled by [`hold_frame`](Self::hold_frame).
    pub fn for_frames(area: Arc<UmemArea>, capacity: usize) -> Self {
        let frames = area.len() / FRAME_SIZE;
        let mut b = RxBatch::new(1, 1);
        b.mem = SlotMem::frames(area, 0, frames, 0);
        b.max_datagram = MAX_DATAGRAM;
        b.capacity = capacity;
        b.entries = vec![b.entries[0]; capacity];
        b.frames = Vec::with_capacity(capacity);
        b
    }

    /// XDP path: forgets the datagrams and returns the frames held (to go back on a fill ring), leaving the
    /// batch empty. Call [`frames_returned`](Self::frames_returned) once they are handed over.
    pub fn held_frames(&self) -> &[u64] {
        &self.frames
    }

    /// XDP path: the frames from [`held_frames`](Self::held_frames) were handed back; the batch is empty.
    pub fn frames_returned(&mut self) {
        self.frames.clear();
        self.count = 0;
    }

    /// XDP path: takes ownership of the received frame at area offset `frame` and, if it held a datagram
    /// for us, records it (`len` bytes at area offset `data`, from `from`). Returns false when the batch is
    /// full (the frame is then not taken).
    pub fn hold_frame(&mut self, frame: u64, datagram: Option<(u64, usize, SocketAddr)>) -> bool {
        if self.frames.len() == self.capacity {
            return false;
        }
        self.frames.push(frame);
        if let Some((data, len, from)) = datagram {
            debug_assert!(data as usize + len <= self.mem.len);
            self.entries[self.count] = RxEntry { offset: data as usize, len, from };
            self.count += 1;
        }
        true
    }

    /// Counts a datagram dropped before it reached the batch (a malformed frame).
    pub fn count_truncated(&mut self) {
        self.truncated += 1;
    }

    /// Fills the `recvmmsg` scratch: one message per slot. Returns the message count.
    fn prepare(&mut self, gro: bool) -> usize {
        let base = self.mem.base;
        for i in 0..self.capacity {
            // Safety: i < capacity, so the slot start is within `buf`; only the pointer is computed.
            let p = unsafe { base.add(self.mem.slot_start(i)) };
            self.iov[i] = libc::iovec { iov_base: p as *mut libc::c_void, iov_len: self.max_datagram };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iov[i];
            hdr.msg_iovlen = 1;
            if gro {
                hdr.msg_control = self.cmsg[i].0.as_mut_ptr() as *mut libc::c_void;
                hdr.msg_controllen = mem::size_of::<CmsgBuf>() as _;
            } else {
                hdr.msg_control = ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        self.capacity
    }

    /// The GRO segment size in message `i`'s control data, if any.
    fn gro_segment(&self, i: usize) -> Option<usize> {
        let hdr = &self.hdrs[i].msg_hdr;
        if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
            return None;
        }
        // Safety: the kernel wrote msg_controllen bytes of well-formed control messages into the CmsgBuf
        // msg_control points at (still alive, owned by self); CMSG_FIRSTHDR/CMSG_NXTHDR stay within
        // msg_controllen and return null at the end; the int payload of a UDP_GRO cmsg lies inside its
        // cmsg_len, read unaligned to be safe.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP
                    && (*c).cmsg_type == libc::UDP_GRO
                    && (*c).cmsg_len as usize >= libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize
                {
                    let seg = ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                    return if seg > 0 { Some(seg as usize) } else { None };
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        None
    }

    /// Turns the first `messages` received messages into datagram entries, splitting GRO receives.
    fn split(&mut self, messages: usize) {
        let mut n = 0;
        for i in 0..messages {
            let hdr = &self.hdrs[i];
            let len = hdr.msg_len as usize;
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > self.max_datagram {
                self.truncated += 1;
                continue;
            }
            let from = from_sockaddr(&self.addrs[i], hdr.msg_hdr.msg_namelen)
                .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
            let slot = i * self.max_datagram;
            let seg = self.gro_segment(i).unwrap_or(len.max(1));
            let mut off = 0;
            loop {
                if n == self.entries.len() {
                    // Cannot happen with the documented sizes (<= 64 segments per GRO receive); count
                    // rather than overrun.
                    self.truncated += 1;
                    break;
                }
                let l = seg.min(len - off);
                self.entries[n] = RxEntry { offset: slot + off, len: l, from };
                n += 1;
                off += l;
                if off >= len {
                    break;
                }
            }
        }
        self.count = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn localhost_pair() -> (DataSocket, DataSocket, SocketAddr) {
        let rx = DataSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        rx.set_buffer_bytes(8 << 20);
        let rx_addr = rx.local_addr().unwrap();
        let mut tx = DataSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        tx.connect(rx_addr).unwrap();
        (tx, rx, rx_addr)
    }

    /// Datagram `i`: its index, then a byte pattern, `len` bytes in all.
    fn fill(buf: &mut [u8], i: u32, len: usize) {
        buf[..4].copy_from_slice(&i.to_le_bytes());
        for (k, b) in buf[4..len].iter_mut().enumerate() {
            *b = (i as usize * 7 + k) as u8;
        }
    }

    fn check(buf: &[u8]) -> u32 {
        let i = u32::from_le_bytes(buf[..4].try_into().unwrap());
        for (k, b) in buf[4..].iter().enumerate() {
            assert_eq!(*b, (i as usize * 7 + k) as u8, "datagram {i} byte {k}");
        }
        i
    }

    /// Sends `lens.len()` datagrams with the given lengths from `tx` and receives them all on `rx`, checking
    /// content, sizes, source and count.
    fn round_trip(
        tx: &mut DataSocket,
        rx: &mut DataSocket,
        rxb: &mut RxBatch,
        lens: &[usize],
        expect_from: SocketAddr,
    ) {
        let mut txb = TxBatch::new(64, 1500);
        let mut next = 0;
        let mut got = vec![0usize; lens.len()];
        let mut received = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while received < lens.len() {
            assert!(Instant::now() < deadline, "timed out with {received}/{} received", lens.len());
            while next < lens.len() {
                let Some(slot) = txb.slot() else { break };
                fill(slot, next as u32, lens[next]);
                txb.commit(lens[next]);
                next += 1;
            }
            if !txb.is_empty() {
                tx.send_batch(&mut txb).unwrap();
            }
            rx.wait_readable(Duration::from_millis(20)).unwrap();
            let n = rx.recv_batch(rxb).unwrap();
            for k in 0..n {
                let (d, from) = rxb.get_mut(k);
                assert_eq!(from, expect_from);
                let i = check(d) as usize;
                assert_eq!(got[i], 0, "datagram {i} twice");
                got[i] = d.len();
                received += 1;
            }
        }
        assert_eq!(got, lens, "sizes per datagram");
        assert_eq!(rxb.truncated(), 0);
    }

    fn lens(n: usize) -> Vec<usize> {
        (0..n).map(|i| 4 + (i * 131) % 1400).collect()
    }

    #[test]
    fn batch_round_trip_varying_sizes() {
        let (mut tx, mut rx, _) = localhost_pair();
        let from = tx.local_addr().unwrap();
        let mut rxb = RxBatch::new(32, 2048);
        // A modest count: the receive buffer holds all of them even if the receiver falls behind.
        round_trip(&mut tx, &mut rx, &mut rxb, &lens(2000), from);
    }

    #[test]
    fn gso_send_without_and_with_gro() {
        let (mut tx, mut rx, _) = localhost_pair();
        if !tx.enable_gso(1472) {
            crate::testing::skip_or_fail("gso_send_without_and_with_gro", "UDP GSO unsupported here");
            return;
        }
        let from = tx.local_addr().unwrap();
        // Runs of equal sizes with shorter last ones, mixed with singletons.
        let mut l = Vec::new();
        for r in 0..60 {
            let size = [1472, 1000, 500, 64][r % 4];
            let run = 1 + (r * 7) % 70;
            l.extend(std::iter::repeat_n(size, run));
            l.push(size / 2 + 4);
        }
        let mut rxb = RxBatch::new(64, 1500);
        round_trip(&mut tx, &mut rx, &mut rxb, &l, from);
        assert!(tx.gso_enabled(), "GSO fell back on loopback");

        if !rx.enable_gro() {
            crate::testing::skip_or_fail("gso_send_without_and_with_gro (its GRO half)", "UDP GRO unsupported here");
            return;
        }
        let mut small = RxBatch::new(4, 1500);
        assert_eq!(rx.recv_batch(&mut small).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let mut rxb = RxBatch::new(8, RxBatch::GRO_DATAGRAM);
        round_trip(&mut tx, &mut rx, &mut rxb, &l, from);
    }

    #[test]
    fn txbatch_bookkeeping_and_ring() {
        let mut b = TxBatch::new(4, 100);
        assert!(b.is_empty() && !b.is_full());
        assert_eq!(b.len(), 0);
        for i in 0..4u8 {
            let s = b.slot().unwrap();
            assert_eq!(s.len(), 100);
            s[0] = i;
            b.commit(1 + i as usize);
        }
        assert!(b.is_full() && b.slot().is_none());
        b.consume(3);
        assert_eq!(b.len(), 1);
        assert_eq!(b.get(0), &[3, 0, 0, 0]);
        // Wraps around the ring.
        for i in 10..13u8 {
            b.slot().unwrap()[0] = i;
            b.commit(2);
        }
        assert!(b.is_full());
        assert_eq!(b.get(1), &[10, 0]);
        assert_eq!(b.get(3), &[12, 0]);
        // The GSO grouping: 4 datagrams, sizes 4,2,2,2 -> a run of 4 with a shorter last, then 2,2.
        let (m, first_gso) = b.prepare(Some(1472), GSO_MAX_PAYLOAD_V4, usize::MAX);
        assert_eq!((m, first_gso), (2, true));
        assert_eq!(&b.segs[..2], &[2, 2]);
        // Without GSO: one message each.
        assert_eq!(b.prepare(None, GSO_MAX_PAYLOAD_V4, usize::MAX), (4, false));
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.slot().unwrap().len(), 100);
    }

    #[test]
    fn gso_grouping_limits() {
        let mut b = TxBatch::new(200, 1500);
        for _ in 0..100 {
            b.slot().unwrap();
            b.commit(1472);
        }
        b.slot().unwrap();
        b.commit(100);
        b.slot().unwrap();
        b.commit(1472);
        let (m, first_gso) = b.prepare(Some(1472), GSO_MAX_PAYLOAD_V4, usize::MAX);
        assert!(first_gso);
        // 44 x 1472 fit in 64 KiB; then 44; then 12 + the short 100; then a single 1472.
        assert_eq!(&b.segs[..m], &[44, 44, 13, 1]);
        // Larger than the GSO segment size: one per message.
        let (m, first_gso) = b.prepare(Some(1000), GSO_MAX_PAYLOAD_V4, usize::MAX);
        assert!(!first_gso);
        assert_eq!(m, 102);
        // Small segments: capped at 64 per message.
        let mut b = TxBatch::new(130, 100);
        for _ in 0..130 {
            b.slot().unwrap();
            b.commit(10);
        }
        let (m, _) = b.prepare(Some(1472), GSO_MAX_PAYLOAD_V4, usize::MAX);
        assert_eq!(&b.segs[..m], &[64, 64, 2]);
    }

    #[test]
    fn refused_send_keeps_datagrams_queued() {
        // A port nobody listens on: bind one, note it, close it.
        let dead = DataSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let mut tx = DataSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        tx.connect(dead_addr).unwrap();
        let mut b = TxBatch::new(8, 64);
        b.slot().unwrap();
        b.commit(10);
        assert_eq!(tx.send_batch(&mut b).unwrap(), 1);
        assert!(b.is_empty());
        // The ICMP port unreachable comes back synchronously on loopback; the next send reports it.
        for _ in 0..3 {
            b.slot().unwrap();
            b.commit(10);
        }
        let mut refused = false;
        for _ in 0..50 {
            match tx.send_batch(&mut b) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    assert_eq!(b.len(), 3, "a refused send removes nothing");
                    refused = true;
                    break;
                }
                Ok(_) => {
                    while !b.is_full() {
                        b.slot().unwrap();
                        b.commit(10);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused, "no ECONNREFUSED reported");
        // After the error is reported the queue goes out again (on loopback the next ICMP comes back at
        // once, so sendmmsg may stop after the first message).
        let queued = b.len();
        let n = tx.send_batch(&mut b).unwrap();
        assert!(n >= 1 && b.len() == queued - n, "sent {n} of {queued}, {} left", b.len());
    }

    #[test]
    fn rxbatch_bookkeeping() {
        let mut rx = DataSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut b = RxBatch::new(4, 16);
        assert!(b.is_empty());
        assert_eq!(rx.recv_batch(&mut b).unwrap(), 0);
        let addr = rx.local_addr().unwrap();
        let mut tx = DataSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for i in 0..6u8 {
            tx.send_to(&[i; 8], addr).unwrap();
        }
        tx.send_to(&[9; 40], addr).unwrap(); // too big for a 16-byte slot
        assert!(rx.wait_readable(Duration::from_secs(1)).unwrap());
        assert_eq!(rx.recv_batch(&mut b).unwrap(), 4);
        assert_eq!(b.len(), 4);
        for i in 0..4 {
            let (d, from) = b.get_mut(i);
            assert_eq!(d, &[i as u8; 8]);
            assert_eq!(from, tx.local_addr().unwrap());
        }
        assert_eq!(rx.recv_batch(&mut b).unwrap(), 2);
        assert_eq!(b.get(1).0, &[5u8; 8]);
        assert_eq!(b.truncated(), 1);
        assert_eq!(rx.recv_batch(&mut b).unwrap(), 0);
        assert!(b.is_empty());
        assert!(!rx.wait_readable(Duration::from_millis(1)).unwrap());
    }

    #[test]
    fn sockaddr_conversions() {
        for s in ["127.0.0.1:9", "10.1.2.3:65535", "[::1]:80", "[fe80::1%3]:443", "[2001:db8::5]:1"] {
            let a: SocketAddr = s.parse().unwrap();
            let (st, len) = to_sockaddr(&a, a.is_ipv6());
            assert_eq!(from_sockaddr(&st, len), Some(a), "{s}");
        }
        let a: SocketAddr = "192.0.2.7:1234".parse().unwrap();
        let (st, len) = to_sockaddr(&a, true);
        assert_eq!(from_sockaddr(&st, len), Some("[::ffff:192.0.2.7]:1234".parse().unwrap()));
        assert_eq!(from_sockaddr(&st, 4), None);
    }

    #[test]
    fn ipv6_round_trip() {
        let Ok(mut rx) = DataSocket::bind("[::1]:0".parse().unwrap()) else {
            crate::testing::skip_or_fail("ipv6_round_trip", "::1 unavailable (no IPv6 loopback)");
            return;
        };
        rx.set_buffer_bytes(8 << 20);
        let rx_addr = rx.local_addr().unwrap();
        let mut tx = DataSocket::bind("[::1]:0".parse().unwrap()).unwrap();
        tx.connect(rx_addr).unwrap();
        let from = tx.local_addr().unwrap();
        let mut rxb = RxBatch::new(16, 2048);
        round_trip(&mut tx, &mut rx, &mut rxb, &lens(300), from);
        if tx.enable_gso(1200) {
            round_trip(&mut tx, &mut rx, &mut rxb, &vec![1200; 200], from);
        }
    }
}
