//! Test frames: a builder for Ethernet/VLAN/IP/UDP frames and the fixture set both classifiers are checked on.
//!
//! Why public and not `cfg(test)`: mover's own tests (AF_XDP receive, the attach path) need the same frames, with
//! valid IPv4 header and UDP checksums, so they can be written into a veth and reach a real socket.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::classify::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETH_HEADER_LEN, IPPROTO_UDP,
    IPV6_NEXT_HEADER_FRAGMENT, UDP_HEADER_LEN,
};

/// EtherType of ARP (RFC 826), for a frame that is not IP at all.
const ETHERTYPE_ARP: u16 = 0x0806;
/// IPv4 "don't fragment" flag: set on every unfragmented fixture, as Linux does with path MTU discovery, so the
/// classifier is seen to ignore it.
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
/// IPv4 "more fragments" flag.
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
/// IPv6 next header value of the hop-by-hop options header (RFC 8200 4.3).
const IPV6_NEXT_HEADER_HOP_BY_HOP: u8 = 0;
/// IP protocol number of TCP.
const IPPROTO_TCP: u8 = 6;
/// IP protocol number of ICMP.
const IPPROTO_ICMP: u8 = 1;

/// Addresses of a frame's IP header; the variant picks the IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpSpec {
    /// An IPv4 header.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// An IPv6 header.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

/// Everything that varies between test frames. Start from [`FrameSpec::udp_v4`] or [`FrameSpec::udp_v6`] and
/// override fields with struct update syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// One VLAN tag per entry, outermost first, each with this TPID (0x8100 or 0x88a8; anything goes).
    pub vlan_tpids: Vec<u16>,
    /// IP version and addresses.
    pub ip: IpSpec,
    /// IP protocol (IPv4) or the next header after any extension headers (IPv6). With anything but UDP the
    /// layer-4 header is still 8 bytes with the two ports, and a zero checksum.
    pub ip_protocol: u8,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// Bytes after the UDP header.
    pub payload_len: usize,
    /// IPv4 options, in 4-byte words (IHL = 5 + this, at most 10). Ignored for IPv6.
    pub ipv4_option_words: u8,
    /// IPv4: the MF flag. IPv6: a fragment header with the M flag.
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units (13 bits). IPv6: a non-zero offset (or `more_fragments`) adds a fragment
    /// header.
    pub fragment_offset: u16,
    /// IPv6 only: a hop-by-hop options header (8 bytes of padding) right after the fixed header.
    pub ipv6_hop_by_hop: bool,
}

impl FrameSpec {
    /// An untagged IPv4 UDP frame to `dst_port` with a 32-byte payload.
    pub fn udp_v4(dst_port: u16) -> FrameSpec {
        FrameSpec {
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            vlan_tpids: Vec::new(),
            ip: IpSpec::V4 { src: Ipv4Addr::new(10, 0, 0, 1), dst: Ipv4Addr::new(10, 0, 0, 2) },
            ip_protocol: IPPROTO_UDP,
            src_port: 40000,
            dst_port,
            payload_len: 32,
            ipv4_option_words: 0,
            more_fragments: false,
            fragment_offset: 0,
            ipv6_hop_by_hop: false,
        }
    }

    /// An untagged IPv6 UDP frame to `dst_port` with a 32-byte payload.
    pub fn udp_v6(dst_port: u16) -> FrameSpec {
        let ip = IpSpec::V6 { src: "fd00::1".parse().expect("literal"), dst: "fd00::2".parse().expect("literal") };
        FrameSpec { ip, ..FrameSpec::udp_v4(dst_port) }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        assert!(self.ipv4_option_words <= 10, "IHL is 4 bits: at most 10 option words");
        assert!(self.fragment_offset < 1 << 13, "fragment offset is 13 bits");
        let l4 = self.l4_segment();
        let ethertype = match self.ip {
            IpSpec::V4 { .. } => ETHERTYPE_IPV4,
            IpSpec::V6 { .. } => ETHERTYPE_IPV6,
        };
        let mut frame = self.ethernet_header(ethertype);
        match self.ip {
            IpSpec::V4 { src, dst } => frame.extend(self.ipv4_header(src, dst, l4.len())),
            IpSpec::V6 { src, dst } => frame.extend(self.ipv6_headers(src, dst, l4.len())),
        }
        frame.extend(l4);
        frame
    }

    fn ethernet_header(&self, ethertype: u16) -> Vec<u8> {
        let mut header = Vec::with_capacity(ETH_HEADER_LEN + 4 * self.vlan_tpids.len());
        header.extend(self.dst_mac);
        header.extend(self.src_mac);
        for (index, tpid) in self.vlan_tpids.iter().enumerate() {
            let vlan_id = 100 + index as u16;
            header.extend(tpid.to_be_bytes());
            header.extend(vlan_id.to_be_bytes());
        }
        header.extend(ethertype.to_be_bytes());
        header
    }

    fn ipv4_header(&self, src: Ipv4Addr, dst: Ipv4Addr, l4_len: usize) -> Vec<u8> {
        let header_len = 20 + 4 * usize::from(self.ipv4_option_words);
        let total_len = u16::try_from(header_len + l4_len).expect("IPv4 packet over 64 KiB");
        let mut flags = self.fragment_offset;
        if self.more_fragments {
            flags |= IPV4_MORE_FRAGMENTS;
        }
        if flags == 0 {
            flags = IPV4_DONT_FRAGMENT;
        }
        let mut header = Vec::with_capacity(header_len);
        header.push(0x40 | (5 + self.ipv4_option_words));
        header.push(0); // DSCP/ECN
        header.extend(total_len.to_be_bytes());
        header.extend(0x1234u16.to_be_bytes()); // identification
        header.extend(flags.to_be_bytes());
        header.push(64); // TTL
        header.push(self.ip_protocol);
        header.extend([0, 0]); // checksum, below
        header.extend(src.octets());
        header.extend(dst.octets());
        header.resize(header_len, 1); // options: NOPs (RFC 791 3.1, "No Operation")
        let checksum = !fold(sum_words(&header));
        header[10..12].copy_from_slice(&checksum.to_be_bytes());
        header
    }

    fn ipv6_headers(&self, src: Ipv6Addr, dst: Ipv6Addr, l4_len: usize) -> Vec<u8> {
        let fragment = self.more_fragments || self.fragment_offset != 0;
        let mut extensions = Vec::new();
        let mut chain = Vec::new(); // next header values, in order: fixed header's first
        if self.ipv6_hop_by_hop {
            chain.push(IPV6_NEXT_HEADER_HOP_BY_HOP);
        }
        if fragment {
            chain.push(IPV6_NEXT_HEADER_FRAGMENT);
        }
        chain.push(self.ip_protocol);
        let mut next = chain[1..].iter();
        if self.ipv6_hop_by_hop {
            // Next header, length 0 (8 bytes), one PadN option of 4 bytes of data.
            extensions.extend([*next.next().expect("chain"), 0, 1, 4, 0, 0, 0, 0]);
        }
        if fragment {
            let offset_and_m = self.fragment_offset << 3 | u16::from(self.more_fragments);
            extensions.extend([*next.next().expect("chain"), 0]);
            extensions.extend(offset_and_m.to_be_bytes());
            extensions.extend(0x1234_5678u32.to_be_bytes()); // identification
        }
        let payload_len = u16::try_from(extensions.len() + l4_len).expect("IPv6 payload over 64 KiB");
        let mut header = Vec::with_capacity(40 + extensions.len());
        header.extend([0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
        header.extend(payload_len.to_be_bytes());
        header.push(chain[0]);
        header.push(64); // hop limit
        header.extend(src.octets());
        header.extend(dst.octets());
        header.extend(extensions);
        header
    }

    /// The UDP header and payload, with the checksum over the pseudo-header (RFC 768; RFC 8200 8.1).
    fn l4_segment(&self) -> Vec<u8> {
        let len = UDP_HEADER_LEN + self.payload_len;
        let mut segment = Vec::with_capacity(len);
        segment.extend(self.src_port.to_be_bytes());
        segment.extend(self.dst_port.to_be_bytes());
        segment.extend(u16::try_from(len).expect("UDP datagram over 64 KiB").to_be_bytes());
        segment.extend([0, 0]); // checksum, below
        segment.extend((0..self.payload_len).map(|index| index as u8));
        if self.ip_protocol != IPPROTO_UDP {
            return segment;
        }
        let pseudo = match self.ip {
            IpSpec::V4 { src, dst } => sum_words(&src.octets()) + sum_words(&dst.octets()),
            IpSpec::V6 { src, dst } => sum_words(&src.octets()) + sum_words(&dst.octets()),
        };
        let sum = pseudo + u64::from(IPPROTO_UDP) + len as u64 + sum_words(&segment);
        let checksum = match !fold(sum) {
            0 => 0xffff, // zero means "no checksum" in UDP
            checksum => checksum,
        };
        segment[6..8].copy_from_slice(&checksum.to_be_bytes());
        segment
    }
}

/// An ARP request (who has 10.0.0.2): a frame that is not IP.
pub fn arp_request() -> Vec<u8> {
    let spec = FrameSpec::udp_v4(0);
    let mut frame = FrameSpec { dst_mac: [0xff; 6], ..spec }.ethernet_header(ETHERTYPE_ARP);
    frame.extend([0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, address lengths, request
    frame.extend(spec.src_mac);
    frame.extend([10, 0, 0, 1]);
    frame.extend([0; 6]);
    frame.extend([10, 0, 0, 2]);
    frame
}

/// Named frames with the verdict both classifiers must give them (`true`: ours) when `our_port` is the only port
/// of ours. Covers every rule of `classify.rs`, on both sides of its boundary.
pub fn fixture_set(our_port: u16) -> Vec<(String, Vec<u8>, bool)> {
    let other_port = our_port.wrapping_add(1);
    let v4 = FrameSpec::udp_v4(our_port);
    let v6 = FrameSpec::udp_v6(our_port);
    let tagged = |spec: &FrameSpec, tpids: &[u16]| FrameSpec { vlan_tpids: tpids.to_vec(), ..spec.clone() };
    let mut set: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut add = |name: &str, frame: Vec<u8>, ours: bool| set.push((name.to_string(), frame, ours));

    add("udp-v4", v4.build(), true);
    add("udp-v6", v6.build(), true);
    add("udp-v4-vlan", tagged(&v4, &[ETHERTYPE_VLAN]).build(), true);
    add("udp-v6-vlan", tagged(&v6, &[ETHERTYPE_VLAN]).build(), true);
    add("udp-v4-vlan-88a8", tagged(&v4, &[ETHERTYPE_QINQ]).build(), true);
    add("udp-v4-qinq", tagged(&v4, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN]).build(), true);
    add("udp-v6-qinq", tagged(&v6, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN]).build(), true);
    add("udp-v4-three-vlan-tags", tagged(&v4, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_VLAN]).build(), false);
    add("udp-v4-empty-payload", FrameSpec { payload_len: 0, ..v4.clone() }.build(), true);
    let mut padded = FrameSpec { payload_len: 0, ..v4.clone() }.build();
    padded.resize(60, 0); // Ethernet minimum frame without FCS
    add("udp-v4-padded-to-60", padded, true);
    let mut payload_cut = FrameSpec { payload_len: 100, ..v4.clone() }.build();
    payload_cut.truncate(payload_cut.len() - 50);
    add("udp-v4-payload-cut", payload_cut, true); // lengths are user space's to check

    add("udp-v4-other-port", FrameSpec::udp_v4(other_port).build(), false);
    add("udp-v6-other-port", FrameSpec::udp_v6(other_port).build(), false);
    let swapped = FrameSpec { src_port: our_port, dst_port: other_port, ..v4.clone() };
    add("udp-v4-our-port-as-source", swapped.build(), false);
    add("tcp-v4", FrameSpec { ip_protocol: IPPROTO_TCP, ..v4.clone() }.build(), false);
    add("tcp-v6", FrameSpec { ip_protocol: IPPROTO_TCP, ..v6.clone() }.build(), false);
    add("icmp-v4", FrameSpec { ip_protocol: IPPROTO_ICMP, ..v4.clone() }.build(), false);
    add("arp", arp_request(), false);

    for words in 1..=10 {
        let frame = FrameSpec { ipv4_option_words: words, ..v4.clone() }.build();
        add(&format!("udp-v4-ihl-{}", 5 + words), frame, true);
    }
    for ihl in 0..5 {
        let mut frame = v4.build();
        frame[ETH_HEADER_LEN] = 0x40 | ihl;
        // Bait: our port where a classifier that accepted this IHL would read the destination port (not for IHL
        // 1, where it would land on the fragment field and test that rule instead).
        if ihl != 1 {
            let port_at = ETH_HEADER_LEN + usize::from(ihl) * 4 + 2;
            frame[port_at..port_at + 2].copy_from_slice(&our_port.to_be_bytes());
        }
        add(&format!("udp-v4-ihl-{ihl}"), frame, false);
    }
    let mut v4_version_6 = v4.build();
    v4_version_6[ETH_HEADER_LEN] = 0x65;
    add("udp-v4-version-6", v4_version_6, false);
    let mut v6_version_4 = v6.build();
    v6_version_4[ETH_HEADER_LEN] = 0x40;
    add("udp-v6-version-4", v6_version_4, false);

    add("udp-v4-mf-fragment", FrameSpec { more_fragments: true, ..v4.clone() }.build(), false);
    add("udp-v4-offset-fragment", FrameSpec { fragment_offset: 185, ..v4.clone() }.build(), false);
    add("udp-v4-last-fragment-offset-1", FrameSpec { fragment_offset: 1, ..v4.clone() }.build(), false);
    add("udp-v6-fragment-header", FrameSpec { more_fragments: true, ..v6.clone() }.build(), false);
    add("udp-v6-offset-fragment-header", FrameSpec { fragment_offset: 185, ..v6.clone() }.build(), false);
    add("udp-v6-hop-by-hop", FrameSpec { ipv6_hop_by_hop: true, ..v6.clone() }.build(), false);

    add("zero-length", Vec::new(), false);
    add("13-bytes", v4.build()[..13].to_vec(), false);
    add("ethernet-header-only", v4.build()[..ETH_HEADER_LEN].to_vec(), false);
    let cut_bases = [
        ("udp-v4", v4.clone()),
        ("udp-v6", v6.clone()),
        ("udp-v4-qinq", tagged(&v4, &[ETHERTYPE_QINQ, ETHERTYPE_VLAN])),
        ("udp-v6-vlan", tagged(&v6, &[ETHERTYPE_VLAN])),
        ("udp-v4-ihl-15", FrameSpec { ipv4_option_words: 10, ..v4.clone() }),
    ];
    for (name, spec) in cut_bases {
        let frame = spec.build();
        let headers_len = frame.len() - spec.payload_len;
        for len in 0..headers_len {
            add(&format!("{name}-cut-at-{len}"), frame[..len].to_vec(), false);
        }
    }
    set
}

/// One's-complement sum of big-endian 16-bit words (RFC 1071), not yet folded.
fn sum_words(bytes: &[u8]) -> u64 {
    bytes.chunks(2).map(|pair| u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))).sum()
}

/// Folds a sum of 16-bit words into 16 bits with end-around carry.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        for words in [0, 3, 10] {
            let frame = FrameSpec { ipv4_option_words: words, ..FrameSpec::udp_v4(9) }.build();
            let header_len = 20 + 4 * usize::from(words);
            assert_eq!(fold(sum_words(&frame[14..14 + header_len])), 0xffff);
        }
    }

    #[test]
    fn udp_checksum_verifies_over_the_pseudo_header() {
        for spec in [FrameSpec::udp_v4(9), FrameSpec::udp_v6(9), FrameSpec { payload_len: 7, ..FrameSpec::udp_v6(9) }] {
            let frame = spec.build();
            let udp = &frame[frame.len() - 8 - spec.payload_len..];
            let pseudo = match spec.ip {
                IpSpec::V4 { src, dst } => sum_words(&src.octets()) + sum_words(&dst.octets()),
                IpSpec::V6 { src, dst } => sum_words(&src.octets()) + sum_words(&dst.octets()),
            };
            let sum = pseudo + u64::from(IPPROTO_UDP) + udp.len() as u64 + sum_words(udp);
            assert_eq!(fold(sum), 0xffff);
        }
    }

    #[test]
    fn lengths_and_layout() {
        assert_eq!(FrameSpec::udp_v4(9).build().len(), 14 + 20 + 8 + 32);
        assert_eq!(FrameSpec::udp_v6(9).build().len(), 14 + 40 + 8 + 32);
        let both = FrameSpec { ipv6_hop_by_hop: true, more_fragments: true, ..FrameSpec::udp_v6(9) }.build();
        assert_eq!(both.len(), 14 + 40 + 8 + 8 + 8 + 32);
        assert_eq!(both[14 + 6], IPV6_NEXT_HEADER_HOP_BY_HOP);
        assert_eq!(both[14 + 40], IPV6_NEXT_HEADER_FRAGMENT);
        assert_eq!(both[14 + 48], IPPROTO_UDP);
        assert_eq!(arp_request().len(), 42);
    }

    #[test]
    fn fixture_names_are_unique() {
        let set = fixture_set(47000);
        let mut names: Vec<&str> = set.iter().map(|(name, _, _)| name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), set.len());
    }
}
