//! What each interface's driver says it can do with XDP, from the `netdev` generic-netlink family (Linux 6.3+,
//! `ynl --family netdev --dump dev-get`): native XDP (`basic`), redirect, being a redirect target
//! (`ndo-xmit`), AF_XDP zero-copy (`xsk-zerocopy`), offload to the NIC. Read-only: one dump request, no
//! program attached, no socket bound; `mover doctor` reports it per interface.
//!
//! The netlink plumbing (socket, request encoding, answer loop, attribute parsing) is `netlink`'s; this file
//! only speaks the generic-netlink layer on top. Constants are from the kernel's UAPI headers
//! `linux/genetlink.h` and `linux/netdev.h`.

use std::io;

use super::netlink::{self, Attrs, Request, NLM_F_DUMP, NLM_F_REQUEST};

/// `struct genlmsghdr` size: the fixed header before a generic-netlink message's attributes.
const GENL_HDRLEN: usize = 4;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;

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
    let Some(family) = family_id()? else { return Ok(None) };
    let mut req = request(family, NLM_F_REQUEST | NLM_F_DUMP, NETDEV_CMD_DEV_GET);
    let mut out = Vec::new();
    transact(&mut req, |payload| {
        let (mut ifindex, mut features) = (None, 0u64);
        for (t, v) in attrs(payload) {
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

/// The id of the `netdev` family, `None` if the kernel has none.
fn family_id() -> io::Result<Option<u16>> {
    let mut req = request(GENL_ID_CTRL, NLM_F_REQUEST, CTRL_CMD_GETFAMILY);
    req.push_attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    let mut id = None;
    let found = transact(&mut req, |payload| {
        for (t, v) in attrs(payload) {
            if t == CTRL_ATTR_FAMILY_ID && v.len() >= 2 {
                id = Some(u16::from_ne_bytes([v[0], v[1]]));
            }
        }
    });
    match found {
        Ok(()) => Ok(id),
        // `netlink::errno`, not `raw_os_error`: with extended acks the refusal can be a `KernelError`.
        Err(e) if netlink::errno(&e) == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A generic-netlink request: `nlmsghdr` addressed to `family`, then `genlmsghdr` with `cmd`, version 1.
fn request(family: u16, flags: u16, cmd: u8) -> Request {
    let mut req = Request::new(family, flags);
    req.push_header(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version, reserved
    req
}

/// Sends `req` on a `NETLINK_GENERIC` socket, giving each answer's payload to `on_msg`.
fn transact(req: &mut Request, mut on_msg: impl FnMut(&[u8])) -> io::Result<()> {
    netlink::transact_on(libc::NETLINK_GENERIC, req, |_, payload| {
        on_msg(payload);
        Ok(())
    })
}

/// The (type, value) attributes after a payload's `genlmsghdr`; stops at the first malformed one, as a
/// malformed tail only loses what it would have said.
fn attrs(payload: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    Attrs::new(payload.get(GENL_HDRLEN..).unwrap_or(&[])).map_while(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dump_lists_loopback_and_names_bits() {
        let devs = match dump().unwrap() {
            Some(devs) => devs,
            // Only a kernel before 6.3 has no netdev family: anywhere newer, None is a broken lookup.
            None if kernel_before_6_3() => return,
            None => panic!("the netdev family was not found on a kernel that has it"),
        };
        // Every interface, not only the first answer of the dump.
        let links = std::fs::read_dir("/sys/class/net").map_or(0, |d| d.count());
        assert_eq!(devs.len(), links, "one entry per interface: {devs:?}");
        assert!(devs.iter().any(|&(i, _)| i == 1), "lo (ifindex 1) is listed: {devs:?}");
        assert_eq!(names(XDP_ACT_BASIC | XDP_ACT_XSK_ZEROCOPY), ["basic", "xsk-zerocopy"]);
        assert!(names(0).is_empty());
    }

    /// Whether the running kernel is older than 6.3 (`uname -r`'s first two numbers).
    fn kernel_before_6_3() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (6, 3)
    }
}
