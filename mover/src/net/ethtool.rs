//! Reading a NIC's settings with the `SIOCETHTOOL` ioctl, as `ethtool -g`, `-l` and `-k` show them:
//! ring sizes, channels and offload features. Read-only: only `ETHTOOL_G*` commands are ever issued, so
//! `mover doctor` can look without changing anything (and without the `ethtool` program installed).
//!
//! The structures are those of `include/uapi/linux/ethtool.h`; a driver that does not implement a command
//! answers `EOPNOTSUPP`, which comes back as `None`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GRINGPARAM: u32 = 0x10;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
/// `ETH_SS_FEATURES`: the string set naming the feature bits of `ETHTOOL_GFEATURES`.
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// More feature names than any kernel has (about 70 today); a bound on what a driver can make us allocate.
const MAX_FEATURES: u32 = 1024;

/// Ring sizes (`ethtool -g`): descriptors per receive and transmit ring, now and at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rings {
    /// RX descriptors now.
    pub rx: u32,
    /// RX descriptors the driver allows at most.
    pub rx_max: u32,
    /// TX descriptors now.
    pub tx: u32,
    /// TX descriptors at most.
    pub tx_max: u32,
}

/// Channels (`ethtool -l`): queues (with their interrupts) now and at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Combined RX/TX channels now.
    pub combined: u32,
    /// Combined channels at most.
    pub combined_max: u32,
    /// RX-only channels now.
    pub rx: u32,
    /// TX-only channels now.
    pub tx: u32,
}

/// One offload feature (`ethtool -k`): its name and whether it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// The kernel's name, e.g. `tx-udp-segmentation`, `rx-gro`, `rx-udp-gro-forwarding`.
    pub name: String,
    /// Active now.
    pub active: bool,
    /// The driver lets it be changed (`ethtool -K`); false means "fixed".
    pub changeable: bool,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// A socket to issue ethtool ioctls on (any socket in the interface's namespace works).
fn control_socket() -> io::Result<OwnedFd> {
    // Safety: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Issues one `SIOCETHTOOL` on `ifname` with `buf` (whose first `u32` is the command). `Ok(false)` when the
/// driver does not implement the command.
fn ethtool(ifname: &str, buf: &mut [u32]) -> io::Result<bool> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name '{ifname}'")));
    }
    let sock = control_socket()?;
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: buf.as_mut_ptr().cast(), _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // Safety: `req` is an ifreq whose data points at `buf`, which is as large as the command's structure
    // (each caller sizes it); the kernel writes only within that structure.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(false),
        _ => Err(err),
    }
}

/// Ring sizes of `ifname`, `None` if the driver has no rings to report (loopback, veth before 5.x).
pub fn rings(ifname: &str) -> io::Result<Option<Rings>> {
    // struct ethtool_ringparam: cmd, then rx/rx_mini/rx_jumbo/tx maxima, then the same four now.
    let mut b = [0u32; 9];
    b[0] = ETHTOOL_GRINGPARAM;
    Ok(ethtool(ifname, &mut b)?.then_some(Rings { rx_max: b[1], tx_max: b[4], rx: b[5], tx: b[8] }))
}

/// Channels of `ifname`, `None` if the driver does not report them.
pub fn channels(ifname: &str) -> io::Result<Option<Channels>> {
    // struct ethtool_channels: cmd, max rx/tx/other/combined, then rx/tx/other/combined now.
    let mut b = [0u32; 9];
    b[0] = ETHTOOL_GCHANNELS;
    Ok(ethtool(ifname, &mut b)?.then_some(Channels { combined_max: b[4], rx: b[5], tx: b[6], combined: b[8] }))
}

/// Every offload feature of `ifname` by name, as `ethtool -k` lists them.
pub fn features(ifname: &str) -> io::Result<Vec<Feature>> {
    // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one u32 count per set in the mask.
    let mut info = [0u32; 5];
    info[0] = ETHTOOL_GSSET_INFO;
    info[2] = 1 << ETH_SS_FEATURES;
    if !ethtool(ifname, &mut info)? || info[2] & (1 << ETH_SS_FEATURES) == 0 {
        return Ok(Vec::new());
    }
    let count = info[4].min(MAX_FEATURES);
    // struct ethtool_gstrings: cmd, string_set, len, then len names of 32 bytes.
    let mut strings = vec![0u32; 3 + count as usize * ETH_GSTRING_LEN / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count;
    if !ethtool(ifname, &mut strings)? {
        return Ok(Vec::new());
    }
    let names: Vec<String> = strings[3..]
        .chunks(ETH_GSTRING_LEN / 4)
        .map(|w| {
            let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_ne_bytes()).take_while(|&c| c != 0).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect();
    // struct ethtool_gfeatures: cmd, size (blocks), then per block available, requested, active, never_changed.
    let blocks = count.div_ceil(32);
    let mut feats = vec![0u32; 2 + 4 * blocks as usize];
    feats[0] = ETHTOOL_GFEATURES;
    feats[1] = blocks;
    if !ethtool(ifname, &mut feats)? {
        return Ok(Vec::new());
    }
    Ok(names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, name)| {
            let block = &feats[2 + 4 * (i / 32)..2 + 4 * (i / 32) + 4];
            let bit = 1u32 << (i % 32);
            Feature { name, active: block[2] & bit != 0, changeable: block[0] & bit != 0 && block[3] & bit == 0 }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_reports_its_offloads_by_name() {
        // Every kernel has `lo` with named features (tx-checksumming bits, GSO, GRO); none is invented here.
        let f = features("lo").unwrap();
        assert!(f.iter().any(|x| x.name == "rx-gro"), "{f:?}");
        assert!(f.iter().any(|x| x.name == "tx-generic-segmentation"), "{f:?}");
        assert!(rings("no-such-if0").is_err());
        assert!(ethtool("", &mut [0u32; 2]).is_err());
    }
}
