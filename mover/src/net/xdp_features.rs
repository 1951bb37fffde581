//! What each interface's driver says it can do with XDP, from the `netdev` generic-netlink family (Linux 6.3+,
//! `ynl --family netdev --dump dev-get`): native XDP (`basic`), redirect, being a redirect target
//! (`ndo-xmit`), AF_XDP zero-copy (`xsk-zerocopy`), offload to the NIC. Read-only: one dump request, no
//! program attached, no socket bound; `mover doctor` reports it per interface.
//!
//! Constants are from the kernel's UAPI headers `linux/netlink.h`, `linux/genetlink.h` and `linux/netdev.h`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_GENERIC: libc::c_int = 16;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NLA_TYPE_MASK`: the attribute type without the nested/byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The `netdev_xdp_act` bits, with the names `ynl` prints.
pub const XDP_ACT_NAMES: [(u64, &str); 7] = [
    (1, "basic"),
    (2, "redirect"),
    (4, "ndo-xmit"),
    (8, "xsk-zerocopy"),
    (16, "hw-offload"),
    (32, "rx-sg"),
    (64, "ndo-xmit-sg"),
];
/// Native XDP in the driver (`NETDEV_XDP_ACT_BASIC`).
pub const XDP_ACT_BASIC: u64 = 1;
/// AF_XDP zero-copy (`NETDEV_XDP_ACT_XSK_ZEROCOPY`).
pub const XDP_ACT_XSK_ZEROCOPY: u64 = 8;

/// The names of the bits set in `features`.
pub fn names(features: u64) -> Vec<&'static str> {
    XDP_ACT_NAMES.iter().filter(|(bit, _)| features & bit != 0).map(|(_, n)| *n).collect()
}

/// `(ifindex, xdp-features)` of every interface in this network namespace. `Ok(None)` when the kernel has no
/// `netdev` family (before 6.3).
pub fn dump() -> io::Result<Option<Vec<(u32, u64)>>> {
    let sock = open()?;
    let Some(family) = family_id(&sock)? else { return Ok(None) };
    let req = message(family, NLM_F_REQUEST | NLM_F_DUMP, 2, NETDEV_CMD_DEV_GET, &[]);
    send(&sock, &req)?;
    let mut out = Vec::new();
    receive(&sock, 2, true, |payload| {
        let (mut ifindex, mut features) = (None, 0u64);
        for (t, v) in attrs(payload.get(GENL_HDRLEN..).unwrap_or(&[])) {
            match t {
                NETDEV_A_DEV_IFINDEX if v.len() >= 4 => ifindex = Some(u32::from_ne_bytes(v[..4].try_into().unwrap())),
                NETDEV_A_DEV_XDP_FEATURES if v.len() >= 8 => features = u64::from_ne_bytes(v[..8].try_into().unwrap()),
                _ => {}
            }
        }
        if let Some(i) = ifindex {
            out.push((i, features));
        }
    })?;
    Ok(Some(out))
}

fn open() -> io::Result<OwnedFd> {
    // Safety: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_GENERIC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval { tv_sec: 2, tv_usec: 0 };
    // Safety: setsockopt reads one timeval.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

/// The id of the `netdev` family, `None` if the kernel has none.
fn family_id(sock: &OwnedFd) -> io::Result<Option<u16>> {
    let mut attr = Vec::new();
    push_attr(&mut attr, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    send(sock, &message(GENL_ID_CTRL, NLM_F_REQUEST, 1, CTRL_CMD_GETFAMILY, &attr))?;
    let mut id = None;
    match receive(sock, 1, false, |payload| {
        for (t, v) in attrs(payload.get(GENL_HDRLEN..).unwrap_or(&[])) {
            if t == CTRL_ATTR_FAMILY_ID && v.len() >= 2 {
                id = Some(u16::from_ne_bytes([v[0], v[1]]));
            }
        }
    }) {
        Ok(()) => Ok(id),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn message(msg_type: u16, flags: u16, seq: u32, cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + GENL_HDRLEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version, reserved
    m.extend_from_slice(attrs);
    m
}

fn push_attr(buf: &mut Vec<u8>, t: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&t.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// The (type, value) attributes in `buf`; stops at the first malformed one.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let t = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((t, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

fn send(sock: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // Safety: sockaddr_nl is plain data; zero is the kernel's address.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // Safety: `bytes` and `kernel` live across the call, with the lengths passed.
    let rc = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the answers to request `seq`, giving each data message's payload to `on_msg`, until `NLMSG_DONE`
/// (a dump) or the first answer (a plain request); an `NLMSG_ERROR` with an errno becomes that error.
fn receive(sock: &OwnedFd, seq: u32, dump: bool, mut on_msg: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Safety: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msgs = &buf[..n as usize];
        let mut done = false;
        while msgs.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes(msgs[..4].try_into().unwrap()) as usize;
            let msg_type = u16::from_ne_bytes([msgs[4], msgs[5]]);
            let msg_seq = u32::from_ne_bytes(msgs[8..12].try_into().unwrap());
            if len < NLMSG_HDRLEN || len > msgs.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message"));
            }
            let payload = &msgs[NLMSG_HDRLEN..len];
            if msg_seq == seq {
                match msg_type {
                    NLMSG_DONE => done = true,
                    NLMSG_ERROR => {
                        let err = payload.get(..4).map_or(0, |e| i32::from_ne_bytes(e.try_into().unwrap()));
                        if err != 0 {
                            return Err(io::Error::from_raw_os_error(-err));
                        }
                        done = true;
                    }
                    _ => {
                        on_msg(payload);
                        done |= !dump;
                    }
                }
            }
            msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
        }
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dump_lists_loopback_and_names_bits() {
        let Some(devs) = dump().unwrap() else { return }; // a kernel before 6.3 has no netdev family
        assert!(devs.iter().any(|&(i, _)| i == 1), "lo (ifindex 1) is listed: {devs:?}");
        assert_eq!(names(XDP_ACT_BASIC | XDP_ACT_XSK_ZEROCOPY), ["basic", "xsk-zerocopy"]);
        assert!(names(0).is_empty());
    }
}
