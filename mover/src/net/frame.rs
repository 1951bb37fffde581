//! Ethernet + IPv4/IPv6 + UDP framing for the AF_XDP path, where mover writes the headers the kernel's UDP
//! stack would otherwise write, and parses them on receive.
//!
//! Send: a [`FrameTemplate`] holds the headers of one flow (MACs from the neighbour table, addresses, ports)
//! with the per-packet fields blank; [`FrameTemplate::write`] copies them in front of a datagram that is
//! already in place in its frame and fills lengths, the IPv4 identification and both checksums (computed in
//! software: a veth or a NIC without AF_XDP checksum offload sends what it is given, and a UDP receiver's
//! kernel drops a datagram whose checksum is wrong).
//!
//! Receive: [`parse_udp`] checks a received frame once (Ethernet, up to two VLAN tags, IPv4 without
//! fragmentation or IPv6 without extension headers, UDP: the XDP program's rules, from its user-space twin
//! `mover_ebpf::classify`) and returns where the payload is and who sent it.
//! It never panics: it is fuzzed (`fuzz/fuzz_targets/xdp_frame.rs`).

use mover_ebpf::classify::{classify, PassReason, Verdict, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_UDP, L3};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Ethernet header bytes (no VLAN tag: mover sends untagged; a VLAN is a device of its own).
pub const ETH_HEADER: usize = 14;
/// IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// IPv6 fixed header.
pub const IPV6_HEADER: usize = 40;
/// UDP header.
pub const UDP_HEADER: usize = 8;
/// Most header bytes [`FrameTemplate::write`] puts in front of a datagram (Ethernet + IPv6 + UDP).
pub const MAX_HEADER: usize = ETH_HEADER + IPV6_HEADER + UDP_HEADER;

/// The link-layer and network addresses of one direction of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAddrs {
    /// Our interface's MAC.
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the peer's, or the gateway's).
    pub dst_mac: [u8; 6],
    /// Our address and port.
    pub src: SocketAddr,
    /// The peer's address and port.
    pub dst: SocketAddr,
}

/// Prebuilt headers for one flow; see the module docs.
#[derive(Clone, Debug)]
pub struct FrameTemplate {
    addrs: FlowAddrs,
    header: [u8; MAX_HEADER],
    header_len: usize,
    v6: bool,
    /// Sum of the pseudo-header's constant part (addresses and protocol), not folded.
    pseudo_sum: u64,
    ip_id: u16,
}

impl FrameTemplate {
    /// Headers for datagrams from `addrs.src` to `addrs.dst`. IPv4-mapped IPv6 addresses are sent as IPv4.
    /// Fails if one address is IPv4 and the other IPv6.
    pub fn new(addrs: FlowAddrs) -> Result<FrameTemplate, String> {
        let (src_ip, dst_ip) = (canonical(addrs.src.ip()), canonical(addrs.dst.ip()));
        let mut h = [0u8; MAX_HEADER];
        h[0..6].copy_from_slice(&addrs.dst_mac);
        h[6..12].copy_from_slice(&addrs.src_mac);
        let (v6, header_len, pseudo_sum) = match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                let ip = &mut h[ETH_HEADER..ETH_HEADER + IPV4_HEADER];
                ip[0] = 0x45;
                ip[6] = 0x40; // don't fragment: mover sizes datagrams to the path MTU itself
                ip[8] = 64;
                ip[9] = IPPROTO_UDP;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let sum = ones_sum(&s.octets(), 0) + ones_sum(&d.octets(), 0) + IPPROTO_UDP as u64;
                (false, ETH_HEADER + IPV4_HEADER + UDP_HEADER, sum)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                h[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                let ip = &mut h[ETH_HEADER..ETH_HEADER + IPV6_HEADER];
                ip[0] = 0x60;
                ip[6] = IPPROTO_UDP;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                let sum = ones_sum(&s.octets(), 0) + ones_sum(&d.octets(), 0) + IPPROTO_UDP as u64;
                (true, MAX_HEADER, sum)
            }
            _ => return Err(format!("{} and {} are not of one address family", addrs.src, addrs.dst)),
        };
        let udp = header_len - UDP_HEADER;
        h[udp..udp + 2].copy_from_slice(&addrs.src.port().to_be_bytes());
        h[udp + 2..udp + 4].copy_from_slice(&addrs.dst.port().to_be_bytes());
        Ok(FrameTemplate { addrs, header: h, header_len, v6, pseudo_sum, ip_id: 0 })
    }

    /// The addresses the template was built from.
    pub fn addrs(&self) -> &FlowAddrs {
        &self.addrs
    }

    /// Header bytes in front of each datagram.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Largest UDP payload in a frame of `frame_bytes` (Ethernet header included) for this template.
    pub fn max_payload(&self, frame_bytes: usize) -> usize {
        frame_bytes.saturating_sub(self.header_len)
    }

    /// Writes the headers into `frame[..header_len()]` for the datagram in `frame[header_len()..]`.
    ///
    /// Panics if the frame is shorter than the headers or the datagram longer than 65,507 bytes (callers
    /// size datagrams to the MTU, so either is a bug).
    #[inline]
    pub fn write(&mut self, frame: &mut [u8]) {
        let hl = self.header_len;
        assert!(frame.len() >= hl && frame.len() - hl <= 65_507, "frame of {} bytes", frame.len());
        let payload_len = frame.len() - hl;
        let udp_len = (payload_len + UDP_HEADER) as u16;
        let (head, payload) = frame.split_at_mut(hl);
        head.copy_from_slice(&self.header[..hl]);
        if self.v6 {
            head[ETH_HEADER + 4..ETH_HEADER + 6].copy_from_slice(&udp_len.to_be_bytes());
        } else {
            let ip = &mut head[ETH_HEADER..ETH_HEADER + IPV4_HEADER];
            ip[2..4].copy_from_slice(&(udp_len + IPV4_HEADER as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
            self.ip_id = self.ip_id.wrapping_add(1);
            let csum = !fold(ones_sum(ip, 0));
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
        }
        let udp = &mut head[hl - UDP_HEADER..];
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        // Pseudo-header (addresses, protocol, UDP length) + UDP header (checksum field still 0) + payload.
        let sum = ones_sum(payload, ones_sum(udp, self.pseudo_sum + udp_len as u64));
        let mut csum = !fold(sum);
        if csum == 0 {
            csum = 0xffff; // 0 means "no checksum" in UDP over IPv4 and is forbidden over IPv6
        }
        udp[6..8].copy_from_slice(&csum.to_be_bytes());
    }
}

/// `addr` with IPv4-mapped IPv6 addresses turned into IPv4 (how the kernel puts them on the wire).
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Adds `data` as big-endian 16-bit words to `sum` (one's-complement arithmetic, not folded). An odd last
/// byte is padded with zero, as RFC 1071 says.
#[inline]
pub fn ones_sum(data: &[u8], mut sum: u64) -> u64 {
    // Eight bytes at a time: one's-complement addition is the same in any byte order as long as the result
    // is swapped back at the end, so native-endian u32 halves can be summed into a u64 without carries lost.
    let mut chunks = data.chunks_exact(8);
    let mut acc: u64 = 0;
    for c in &mut chunks {
        let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    // `acc` holds native-order 16-bit words in pairs: fold to 16 bits, then swap to big-endian order.
    let mut native = fold(acc);
    if cfg!(target_endian = "little") {
        native = native.swap_bytes();
    }
    sum += native as u64;
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        sum += u16::from_be_bytes([p[0], p[1]]) as u64;
    }
    if let [last] = pairs.remainder() {
        sum += (*last as u64) << 8;
    }
    sum
}

/// Folds a one's-complement sum to 16 bits.
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Where a received UDP datagram sits in its frame, and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpInFrame {
    /// Offset of the UDP payload in the frame.
    pub payload_offset: usize,
    /// Payload bytes (from the UDP length; Ethernet padding excluded).
    pub payload_len: usize,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination port.
    pub dst_port: u16,
}

/// Why a received frame is not a UDP datagram mover can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than its headers say.
    Truncated,
    /// Not IPv4 or IPv6.
    NotIp,
    /// An IP header that is malformed or fragmented, or IPv6 extension headers.
    BadIp,
    /// Not UDP.
    NotUdp,
    /// A UDP length that disagrees with the IP length.
    BadUdpLength,
}

/// Parses a received Ethernet frame as IPv4/IPv6 UDP; see the module docs.
///
/// The structure (VLAN tags, IP version, header length, fragments, extension headers, protocol) is judged by
/// the XDP program's own rules, [`classify`], so the receive path takes exactly what the program steers;
/// this adds what the program does not check: the IP and UDP lengths against the frame, and the source.
pub fn parse_udp(frame: &[u8]) -> Result<UdpInFrame, FrameError> {
    let (l3, ip, l4, dst_port) = match classify(frame, |_| true) {
        Verdict::Ours { l3, l3_offset, udp_offset, dst_port } => (l3, l3_offset, udp_offset, dst_port),
        Verdict::Pass(PassReason::Truncated) => return Err(FrameError::Truncated),
        Verdict::Pass(PassReason::NotIp) => return Err(FrameError::NotIp),
        Verdict::Pass(PassReason::NotUdp | PassReason::OtherPort) => return Err(FrameError::NotUdp),
        Verdict::Pass(PassReason::BadIpHeader | PassReason::Fragment | PassReason::Ipv6ExtensionHeader) => {
            return Err(FrameError::BadIp)
        }
    };
    // `classify` has checked that the headers up to the UDP header are inside the frame.
    let (src_ip, ip_payload_len) = match l3 {
        L3::V4 => {
            let total = u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]) as usize;
            let header = l4 - ip;
            if total < header {
                return Err(FrameError::BadIp);
            }
            if frame.len() < ip + total {
                return Err(FrameError::Truncated);
            }
            let src = Ipv4Addr::new(frame[ip + 12], frame[ip + 13], frame[ip + 14], frame[ip + 15]);
            (IpAddr::V4(src), total - header)
        }
        L3::V6 => {
            let payload = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]) as usize;
            if frame.len() < l4 + payload {
                return Err(FrameError::Truncated);
            }
            let mut src = [0u8; 16];
            src.copy_from_slice(&frame[ip + 8..ip + 24]);
            (IpAddr::V6(Ipv6Addr::from(src)), payload)
        }
    };
    let udp = &frame[l4..l4 + UDP_HEADER];
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if udp_len < UDP_HEADER || udp_len > ip_payload_len {
        return Err(FrameError::BadUdpLength);
    }
    Ok(UdpInFrame {
        payload_offset: l4 + UDP_HEADER,
        payload_len: udp_len - UDP_HEADER,
        src: SocketAddr::new(src_ip, u16::from_be_bytes([udp[0], udp[1]])),
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's reference: the plain 16-bit-at-a-time sum.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for p in data.chunks(2) {
            s += if p.len() == 2 { u16::from_be_bytes([p[0], p[1]]) as u64 } else { (p[0] as u64) << 8 };
        }
        fold(s)
    }

    #[test]
    fn ones_sum_matches_the_reference_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for start in 0..9 {
            for len in (0..300).chain([1471, 1472, 3000, 4000]) {
                let d = &data[start..start + len];
                assert_eq!(fold(ones_sum(d, 0)), reference_sum(d), "start {start} len {len}");
            }
        }
        // All ones: a sum that needs several folds.
        let ff = vec![0xffu8; 9001];
        assert_eq!(fold(ones_sum(&ff, 0)), reference_sum(&ff));
    }

    fn addrs(src: &str, dst: &str) -> FlowAddrs {
        FlowAddrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    /// Verifies the checksums the way a receiving kernel does: the sum over the header (IPv4) and over
    /// pseudo-header + UDP datagram comes to 0xffff.
    fn checksums_ok(frame: &[u8]) -> bool {
        let p = parse_udp(frame).unwrap();
        let l4 = p.payload_offset - UDP_HEADER;
        let udp = &frame[l4..p.payload_offset + p.payload_len];
        let mut sum = ones_sum(udp, IPPROTO_UDP as u64 + udp.len() as u64);
        if frame[12..14] == ETHERTYPE_IPV4.to_be_bytes() {
            if fold(ones_sum(&frame[14..34], 0)) != 0xffff {
                return false;
            }
            sum = ones_sum(&frame[26..34], sum);
        } else {
            sum = ones_sum(&frame[22..54], sum);
        }
        fold(sum) == 0xffff
    }

    #[test]
    fn written_frames_parse_back_with_valid_checksums() {
        for (src, dst) in [
            ("10.0.0.1:4000", "10.0.0.2:5000"),
            ("[fd00::1]:4000", "[fd00::2]:5000"),
            ("[::ffff:10.0.0.1]:4000", "10.0.0.2:5000"),
        ] {
            let mut t = FrameTemplate::new(addrs(src, dst)).unwrap();
            for len in [0usize, 1, 7, 8, 9, 100, 1472, 3770] {
                let mut frame = vec![0u8; t.header_len() + len];
                for (i, b) in frame[t.header_len()..].iter_mut().enumerate() {
                    *b = (i * 31 + len) as u8;
                }
                t.write(&mut frame);
                let p = parse_udp(&frame).unwrap();
                assert_eq!(p.payload_offset, t.header_len());
                assert_eq!(p.payload_len, len);
                assert_eq!(p.dst_port, 5000);
                assert_eq!(p.src.port(), 4000);
                assert_eq!(p.src.ip(), canonical(src.parse::<SocketAddr>().unwrap().ip()));
                assert!(checksums_ok(&frame), "{src} {len}");
                assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 2]);
            }
        }
        assert!(FrameTemplate::new(addrs("10.0.0.1:1", "[fd00::2]:2")).is_err());
    }

    #[test]
    fn ipv4_identification_advances_and_padding_is_ignored() {
        let mut t = FrameTemplate::new(addrs("10.0.0.1:4000", "10.0.0.2:5000")).unwrap();
        let mut a = vec![0u8; t.header_len() + 4];
        let mut b = a.clone();
        t.write(&mut a);
        t.write(&mut b);
        assert_ne!(a[18..20], b[18..20]);
        // Ethernet pads short frames to 60 bytes; the IP and UDP lengths say what is real.
        a.resize(60, 0);
        assert_eq!(parse_udp(&a).unwrap().payload_len, 4);
    }

    #[test]
    fn parse_rejects_what_is_not_an_unfragmented_udp_datagram() {
        let mut t = FrameTemplate::new(addrs("10.0.0.1:4000", "10.0.0.2:5000")).unwrap();
        let mut f = vec![0u8; t.header_len() + 100];
        t.write(&mut f);
        for cut in 0..f.len() - 100 {
            assert_eq!(parse_udp(&f[..cut]).unwrap_err(), FrameError::Truncated, "cut at {cut}");
        }
        let mut frag = f.clone();
        frag[20] |= 0x20; // more fragments
        assert_eq!(parse_udp(&frag), Err(FrameError::BadIp));
        let mut tcp = f.clone();
        tcp[23] = 6;
        assert_eq!(parse_udp(&tcp), Err(FrameError::NotUdp));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_udp(&arp), Err(FrameError::NotIp));
        let mut long_udp = f.clone();
        long_udp[38..40].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(parse_udp(&long_udp), Err(FrameError::BadUdpLength));
        // A VLAN tag in front: still parsed, payload 4 bytes further on.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&f[12..]);
        let p = parse_udp(&tagged).unwrap();
        assert_eq!((p.payload_offset, p.payload_len), (t.header_len() + 4, 100));
    }
}
