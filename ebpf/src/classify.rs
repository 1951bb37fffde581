//! The XDP program's rules in plain Rust: the reference the bytecode is tested against.
//!
//! Why a second copy: bytecode is hard to review and impossible to unit-test directly, so the rules live here too,
//! where they are readable, fuzzed, and run on every fixture; the kernel tests then check that the program in
//! `program.rs` gives the same verdict as [`classify`] on thousands of mutated frames (ENGINEERING.md §11). A
//! change to one without the other fails those tests.
//!
//! The rules, in the order the program applies them (any failure means "pass to the kernel stack"):
//! 1. Ethernet II header (14 bytes), then up to two VLAN tags (802.1Q or 802.1ad, 4 bytes each).
//! 2. IPv4: version 4, IHL >= 5, protocol UDP, not a fragment (the kernel reassembles; mover never sends one).
//!    IPv6: version 6, next header UDP directly (an extension header, fragment header included, means pass).
//! 3. A complete UDP header whose destination port is one of ours.

/// Length of an Ethernet II header: destination and source MAC, EtherType (IEEE 802.3 clause 3.1.1).
pub const ETH_HEADER_LEN: usize = 14;
/// Offset of the EtherType in the Ethernet header.
pub const ETH_TYPE_OFFSET: usize = 12;
/// Length of a VLAN tag: TPID (the EtherType position) + TCI; the next EtherType follows it (IEEE 802.1Q 9.3).
pub const VLAN_TAG_LEN: usize = 4;
/// VLAN tags the classifier looks through: one (802.1Q) or two (802.1ad "QinQ").
pub const MAX_VLAN_TAGS: usize = 2;
/// TPID of an 802.1Q customer VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad service VLAN tag (the outer tag of QinQ).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// EtherType of IPv4 (RFC 894).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6 (RFC 2464).
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Minimum IPv4 header length (IHL 5, RFC 791 3.1).
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// Offset of the IPv4 flags + fragment offset field (RFC 791 3.1).
pub const IPV4_FRAG_OFFSET: usize = 6;
/// The MF flag and the 13-bit fragment offset: any bit set means the datagram is a fragment.
pub const IPV4_FRAG_MASK: u16 = 0x3fff;
/// Offset of the IPv4 protocol field.
pub const IPV4_PROTOCOL_OFFSET: usize = 9;
/// Length of the fixed IPv6 header (RFC 8200 3).
pub const IPV6_HEADER_LEN: usize = 40;
/// Offset of the IPv6 next header field.
pub const IPV6_NEXT_HEADER_OFFSET: usize = 6;
/// IP protocol number of UDP (IANA "Assigned Internet Protocol Numbers").
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 next header value of the fragment header (RFC 8200 4.5).
pub const IPV6_NEXT_HEADER_FRAGMENT: u8 = 44;
/// IPv6 extension header types other than the fragment header (RFC 8200 4; IANA "IPv6 Extension Header Types").
pub const IPV6_EXTENSION_HEADERS: [u8; 10] = [0, 43, 50, 51, 60, 135, 139, 140, 253, 254];
/// Length of a UDP header (RFC 768).
pub const UDP_HEADER_LEN: usize = 8;
/// Offset of the destination port in the UDP header.
pub const UDP_DST_PORT_OFFSET: usize = 2;

/// What the XDP program does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// UDP to one of our ports: redirected to the AF_XDP socket of the receive queue.
    Ours {
        /// The IP version.
        l3: L3,
        /// Offset of the IP header in the frame (after the Ethernet header and any VLAN tags).
        l3_offset: usize,
        /// Offset of the UDP header in the frame.
        udp_offset: usize,
        /// UDP destination port, host order.
        dst_port: u16,
    },
    /// Anything else: left to the kernel's stack.
    Pass(PassReason),
}

/// IP version of a frame that is ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Why a frame is passed to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassReason {
    /// The frame ends inside a header the rules need.
    Truncated,
    /// The EtherType (after at most two VLAN tags) is neither IPv4 nor IPv6.
    NotIp,
    /// The IP version field disagrees with the EtherType, or the IPv4 IHL is below 5.
    BadIpHeader,
    /// Not UDP (TCP, ICMP, ...).
    NotUdp,
    /// An IPv4 fragment (MF set or a non-zero offset) or an IPv6 fragment header.
    Fragment,
    /// An IPv6 extension header other than the fragment header before the UDP header.
    Ipv6ExtensionHeader,
    /// UDP to a port that is not ours.
    OtherPort,
}

impl Verdict {
    /// Whether the frame goes to mover's socket.
    pub fn is_ours(&self) -> bool {
        matches!(self, Verdict::Ours { .. })
    }
}

/// Classifies an Ethernet frame as the XDP program does; `is_ours` says whether a UDP destination port (host
/// order) is one of ours. Never panics, whatever the bytes.
pub fn classify(frame: &[u8], is_ours: impl Fn(u16) -> bool) -> Verdict {
    match udp_header(frame) {
        Err(reason) => Verdict::Pass(reason),
        Ok((l3, l3_offset, udp_offset)) => {
            let Some(dst_port) = be16(frame, udp_offset + UDP_DST_PORT_OFFSET) else {
                return Verdict::Pass(PassReason::Truncated);
            };
            if !is_ours(dst_port) {
                return Verdict::Pass(PassReason::OtherPort);
            }
            Verdict::Ours { l3, l3_offset, udp_offset, dst_port }
        }
    }
}

/// The IP version, the IP header's offset and the offset of a complete UDP header, or why there is none.
fn udp_header(frame: &[u8]) -> Result<(L3, usize, usize), PassReason> {
    let mut ethertype = be16(frame, ETH_TYPE_OFFSET).ok_or(PassReason::Truncated)?;
    let mut l3_offset = ETH_HEADER_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        // The tag's TCI is at l3_offset, the next EtherType right after it.
        ethertype = be16(frame, l3_offset + 2).ok_or(PassReason::Truncated)?;
        l3_offset += VLAN_TAG_LEN;
    }
    let (l3, udp_offset) = match ethertype {
        ETHERTYPE_IPV4 => (L3::V4, ipv4_payload_offset(frame, l3_offset)?),
        ETHERTYPE_IPV6 => (L3::V6, ipv6_payload_offset(frame, l3_offset)?),
        _ => return Err(PassReason::NotIp),
    };
    if frame.len() < udp_offset + UDP_HEADER_LEN {
        return Err(PassReason::Truncated);
    }
    Ok((l3, l3_offset, udp_offset))
}

/// Offset of the UDP header of the IPv4 packet at `at`.
fn ipv4_payload_offset(frame: &[u8], at: usize) -> Result<usize, PassReason> {
    let header = frame.get(at..at + IPV4_MIN_HEADER_LEN).ok_or(PassReason::Truncated)?;
    let version = header[0] >> 4;
    let ihl = usize::from(header[0] & 0x0f);
    if version != 4 || ihl < 5 {
        return Err(PassReason::BadIpHeader);
    }
    if header[IPV4_PROTOCOL_OFFSET] != IPPROTO_UDP {
        return Err(PassReason::NotUdp);
    }
    let frag = u16::from_be_bytes([header[IPV4_FRAG_OFFSET], header[IPV4_FRAG_OFFSET + 1]]);
    if frag & IPV4_FRAG_MASK != 0 {
        return Err(PassReason::Fragment);
    }
    Ok(at + ihl * 4)
}

/// Offset of the UDP header of the IPv6 packet at `at`.
fn ipv6_payload_offset(frame: &[u8], at: usize) -> Result<usize, PassReason> {
    let header = frame.get(at..at + IPV6_HEADER_LEN).ok_or(PassReason::Truncated)?;
    if header[0] >> 4 != 6 {
        return Err(PassReason::BadIpHeader);
    }
    match header[IPV6_NEXT_HEADER_OFFSET] {
        IPPROTO_UDP => Ok(at + IPV6_HEADER_LEN),
        IPV6_NEXT_HEADER_FRAGMENT => Err(PassReason::Fragment),
        next if IPV6_EXTENSION_HEADERS.contains(&next) => Err(PassReason::Ipv6ExtensionHeader),
        _ => Err(PassReason::NotUdp),
    }
}

/// The big-endian u16 at `at`, if the frame holds it.
fn be16(frame: &[u8], at: usize) -> Option<u16> {
    let bytes = frame.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{fixture_set, FrameSpec};

    const OUR_PORT: u16 = 47000;

    #[test]
    fn every_fixture_gets_its_expected_verdict() {
        for (name, frame, expect_ours) in fixture_set(OUR_PORT) {
            let verdict = classify(&frame, |port| port == OUR_PORT);
            assert_eq!(verdict.is_ours(), expect_ours, "{name}: {verdict:?}");
        }
    }

    #[test]
    fn ours_reports_where_the_udp_header_is() {
        let v4 = FrameSpec::udp_v4(OUR_PORT).build();
        let expected = Verdict::Ours { l3: L3::V4, l3_offset: 14, udp_offset: 34, dst_port: OUR_PORT };
        assert_eq!(classify(&v4, |port| port == OUR_PORT), expected);

        let v4_options = FrameSpec { ipv4_option_words: 3, ..FrameSpec::udp_v4(OUR_PORT) }.build();
        let expected = Verdict::Ours { l3: L3::V4, l3_offset: 14, udp_offset: 46, dst_port: OUR_PORT };
        assert_eq!(classify(&v4_options, |port| port == OUR_PORT), expected);

        let qinq_v6 = FrameSpec { vlan_tpids: vec![ETHERTYPE_QINQ, ETHERTYPE_VLAN], ..FrameSpec::udp_v6(OUR_PORT) };
        let expected = Verdict::Ours { l3: L3::V6, l3_offset: 22, udp_offset: 62, dst_port: OUR_PORT };
        assert_eq!(classify(&qinq_v6.build(), |port| port == OUR_PORT), expected);
    }

    #[test]
    fn pass_reasons() {
        let ours = |port| port == OUR_PORT;
        let verdict = |spec: FrameSpec| classify(&spec.build(), ours);
        assert_eq!(verdict(FrameSpec::udp_v4(OUR_PORT + 1)), Verdict::Pass(PassReason::OtherPort));
        assert_eq!(
            verdict(FrameSpec { ip_protocol: 6, ..FrameSpec::udp_v4(OUR_PORT) }),
            Verdict::Pass(PassReason::NotUdp)
        );
        let fragment = FrameSpec { more_fragments: true, ..FrameSpec::udp_v6(OUR_PORT) };
        assert_eq!(verdict(fragment), Verdict::Pass(PassReason::Fragment));
        let hop_by_hop = FrameSpec { ipv6_hop_by_hop: true, ..FrameSpec::udp_v6(OUR_PORT) };
        assert_eq!(verdict(hop_by_hop), Verdict::Pass(PassReason::Ipv6ExtensionHeader));
        let three_tags = FrameSpec { vlan_tpids: vec![ETHERTYPE_VLAN; 3], ..FrameSpec::udp_v4(OUR_PORT) };
        assert_eq!(verdict(three_tags), Verdict::Pass(PassReason::NotIp));
        assert_eq!(classify(&[], ours), Verdict::Pass(PassReason::Truncated));
    }

    /// xorshift64: deterministic, so a failure names a reproducible case.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn never_panics_on_random_or_mutated_frames() {
        let fixtures = fixture_set(OUR_PORT);
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            let mut frame = fixtures[next(&mut state) as usize % fixtures.len()].1.clone();
            match next(&mut state) % 4 {
                // Fully random bytes, any length up to a jumbo-ish frame.
                0 => {
                    frame = (0..next(&mut state) % 200).map(|_| next(&mut state) as u8).collect();
                }
                // A few byte flips in the headers, then maybe a cut.
                _ => {
                    for _ in 0..1 + next(&mut state) % 4 {
                        if frame.is_empty() {
                            break;
                        }
                        let at = (next(&mut state) as usize % 80).min(frame.len() - 1);
                        frame[at] = next(&mut state) as u8;
                    }
                    if next(&mut state) % 3 == 0 {
                        frame.truncate(next(&mut state) as usize % (frame.len() + 1));
                    }
                }
            }
            let verdict = classify(&frame, |port| port & 1 == 0);
            if let Verdict::Ours { udp_offset, .. } = verdict {
                assert!(udp_offset + UDP_HEADER_LEN <= frame.len());
            }
        }
    }
}
