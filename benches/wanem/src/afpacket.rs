//! AF_PACKET raw sockets bound to one interface: a thin layer over `libc`.
//!
//! Every frame the interface receives (any EtherType) is read, and frames written go out of that interface
//! as they are. `PACKET_IGNORE_OUTGOING` keeps the socket from reading back what is transmitted on its interface
//! (our own forwarded frames, or anything the middle namespace's kernel might send), and `PACKET_QDISC_BYPASS`
//! keeps a kernel queue from forming after the forwarder, where it would distort the emulated queue.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Socket buffer sizes asked for (with the *FORCE options, which root may use beyond the sysctl ceilings; the
/// kernel doubles them for its bookkeeping). A stall of the forwarder (descheduled on a busy machine) must not
/// lose frames: they keep their arrival stamps and leave late instead. 64 MiB holds ~0.2 s of 1514-byte frames
/// at 1.5 Gbit/s (each costs ~2.3-4.5 KB of buffer accounting). Memory is only used while frames wait.
const RCVBUF_BYTES: libc::c_int = 64 << 20;
const SNDBUF_BYTES: libc::c_int = 4 << 20;

/// An AF_PACKET SOCK_RAW socket bound to one interface, non-blocking.
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
    mtu: u32,
}

impl PacketSocket {
    /// Opens and binds the socket. The interface must exist in this namespace and be up.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{ifname}: {what}: {e}"));
        let c_name = CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
        // Safety: c_name is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(context("no such interface in this network namespace", io::Error::last_os_error()));
        }
        // Protocol 0 until bind: the socket receives nothing before it is bound to its interface, so no frame of
        // another interface can slip into its queue.
        // Safety: plain socket(2) call; the result is checked before use.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) { " (needs root or CAP_NET_RAW)" } else { "" };
            return Err(context(&format!("AF_PACKET socket{hint}"), e));
        }
        // Safety: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let flags = ifreq_get(&fd, ifname, libc::SIOCGIFFLAGS).map_err(|e| context("SIOCGIFFLAGS", e))?;
        // Safety: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { flags.ifr_ifru.ifru_flags } as libc::c_int;
        if flags & libc::IFF_UP == 0 {
            return Err(io::Error::other(format!("{ifname} is down (ip link set {ifname} up)")));
        }
        let mtu = ifreq_get(&fd, ifname, libc::SIOCGIFMTU).map_err(|e| context("SIOCGIFMTU", e))?;
        // Safety: SIOCGIFMTU filled the mtu member of the union.
        let mtu = unsafe { mtu.ifr_ifru.ifru_mtu } as u32;

        set_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
            .map_err(|e| context("PACKET_IGNORE_OUTGOING (Linux >= 4.20)", e))?;
        // Best effort: without the bypass, frames go through the interface's qdisc (noqueue on a veth anyway).
        let _ = set_int(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
        enable_receive_stamps(&fd);
        if set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF_BYTES).is_err() {
            let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF_BYTES);
        }
        if set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF_BYTES).is_err() {
            let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SNDBUF_BYTES);
        }
        // Promiscuous, so that a real NIC also passes frames addressed to other hosts (a veth passes them all).
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // Safety: mreq is a valid packet_mreq and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(context("PACKET_ADD_MEMBERSHIP (promiscuous)", io::Error::last_os_error()));
        }

        // Safety: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as libc::c_int;
        // Safety: addr is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(context("bind", io::Error::last_os_error()));
        }
        Ok(PacketSocket { fd, ifname: ifname.to_string(), mtu })
    }

    /// Wraps any datagram socket as if it were an interface of MTU `mtu`: the tests drive the forwarder through
    /// Unix socketpairs this way, without root or a NIC (recvmmsg/sendmmsg behave the same on them).
    pub fn from_datagram_socket(fd: OwnedFd, name: &str, mtu: u32) -> PacketSocket {
        enable_receive_stamps(&fd);
        PacketSocket { fd, ifname: name.to_string(), mtu }
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's MTU (IP bytes; the frame adds a 14-byte Ethernet header).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The descriptor, for poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receives up to `msgs.len()` frames without blocking; 0 when none is waiting.
    ///
    /// # Safety
    /// Every `mmsghdr` must describe iovecs that point to memory writable for their whole length and owned by
    /// the caller for the duration of the call.
    pub unsafe fn recv_batch(&self, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
        // Safety: the caller guarantees the buffers; the count matches the slice.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Transmits `msgs` in order; returns how many were sent. An error means the first message failed (the
    /// kernel reports a later message's error on the next call, after returning the count of those sent).
    ///
    /// # Safety
    /// Every `mmsghdr` must describe iovecs that point to readable memory for their whole length.
    pub unsafe fn send_batch(&self, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
        // Safety: the caller guarantees the buffers; the count matches the slice.
        let n = unsafe {
            libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as libc::c_uint, libc::MSG_DONTWAIT)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Frames the kernel dropped because this socket's receive buffer was full, since the last call (the kernel
    /// resets the counter on read).
    pub fn take_kernel_drops(&self) -> u64 {
        // Safety: tpacket_stats is plain data.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // Safety: st and len are valid for writes and len holds st's size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return 0;
        }
        st.tp_drops as u64
    }
}

/// Asks for each frame's kernel arrival time (SO_TIMESTAMPNS, CLOCK_REALTIME): the forwarder may read a frame
/// long after it arrived (it sleeps between ticks) and must date it from its arrival. Best effort: without
/// stamps, frames are dated when read.
fn enable_receive_stamps(fd: &OwnedFd) {
    let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
}

/// The CLOCK_REALTIME arrival stamp (nanoseconds) in a received message's control data, if there is one.
pub fn receive_stamp_ns(hdr: &libc::msghdr) -> Option<u64> {
    // Safety: hdr's control pointer and length describe the buffer the kernel filled in recvmmsg; the CMSG
    // macros stay inside msg_controllen, and the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

fn ifreq_get(fd: &OwnedFd, ifname: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    // Safety: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    // Safety: req is a valid ifreq with a NUL-terminated name; the kernel writes only inside it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut req as *mut libc::ifreq) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // Safety: value lives across the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The IP addresses the kernel has on `ifname`: the middle namespace should have none (its kernel would answer
/// or route frames itself, next to the forwarder).
pub fn addresses_on(ifname: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // Safety: getifaddrs writes a list head into `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return found;
    }
    let mut cur = list;
    while !cur.is_null() {
        // Safety: cur is a node of the list getifaddrs returned, alive until freeifaddrs.
        let node = unsafe { &*cur };
        cur = node.ifa_next;
        if node.ifa_addr.is_null() || node.ifa_name.is_null() {
            continue;
        }
        // Safety: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(node.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // Safety: ifa_addr is non-null and points to a sockaddr whose family says which struct it is.
        let family = unsafe { (*node.ifa_addr).sa_family } as libc::c_int;
        match family {
            libc::AF_INET => {
                // Safety: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in) };
                found.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string());
            }
            libc::AF_INET6 => {
                // Safety: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in6) };
                found.push(Ipv6Addr::from(sin6.sin6_addr.s6_addr).to_string());
            }
            _ => {}
        }
    }
    // Safety: list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}
