//! mover's XDP program, emitted as BPF instructions: the rules of `classify.rs` in bytecode.
//!
//! Why this shape: frames to one of mover's UDP ports go to the AF_XDP socket of the queue they arrived on; every
//! other frame goes on to the kernel's stack untouched (ARP, SSH, and mover's own control connection must keep
//! working), so the program never drops. Three counters say where frames went; `matched_no_socket` in particular
//! shows frames that were ours while no socket was bound to their queue (they reach the kernel's stack instead).
//!
//! Register use: `r6` = the context (preserved across calls), `r2` = the current header, `r3` = `data_end`,
//! `r7` = the verdict while the counter is updated. Every packet read is preceded by a bounds check against
//! `data_end`, in the form the verifier tracks (`rX = r2 + n; if rX > r3 goto pass`).

use crate::classify::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETH_HEADER_LEN, ETH_TYPE_OFFSET, IPPROTO_UDP,
    IPV4_FRAG_MASK, IPV4_FRAG_OFFSET, IPV4_MIN_HEADER_LEN, IPV4_PROTOCOL_OFFSET, IPV6_HEADER_LEN,
    IPV6_NEXT_HEADER_OFFSET, MAX_VLAN_TAGS, UDP_DST_PORT_OFFSET, UDP_HEADER_LEN, VLAN_TAG_LEN,
};
use crate::insn::{AluOp, Asm, Insn, JmpOp, Reg, Size};

/// The program's name in the kernel (`bpf_prog_info.name`, at most 15 bytes): a later run of mover finds a
/// stale program of its own on an interface by this name.
pub const PROGRAM_NAME: &str = "mover_xdp";

/// Index of the `redirected` counter in the stats map: frames handed to an AF_XDP socket.
pub const STAT_REDIRECTED: u32 = 0;
/// Index of the `matched_no_socket` counter: frames to one of our ports while no socket was bound to their queue.
pub const STAT_MATCHED_NO_SOCKET: u32 = 1;
/// Index of the `passed` counter: frames that were not ours (any reason, truncated ones included).
pub const STAT_PASSED: u32 = 2;
/// Entries of the stats map: the three counters and a spare, so a counter can be added without resizing.
pub const STATS_ENTRIES: u32 = 4;
/// Entries of the ports map: one per UDP port.
pub const PORTS_ENTRIES: u32 = 1 << 16;

/// `XDP_PASS` (enum xdp_action, include/uapi/linux/bpf.h).
pub const XDP_PASS: u32 = 2;
/// `XDP_REDIRECT` (enum xdp_action).
pub const XDP_REDIRECT: u32 = 4;

/// `BPF_FUNC_map_lookup_elem` (bpf.h `___BPF_FUNC_MAPPER`).
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_redirect_map`: `bpf_redirect_map(map, key, flags)`; the low bits of `flags` are the action returned
/// when the map slot is empty.
const HELPER_REDIRECT_MAP: i32 = 51;

// Offsets in `struct xdp_md` (bpf.h), the program's context.
const XDP_MD_DATA: i16 = 0;
const XDP_MD_DATA_END: i16 = 4;
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Stack slots (below the frame pointer r10) for the map keys helpers read.
const STACK_PORT_KEY: i16 = -4;
const STACK_STATS_KEY: i16 = -8;

/// File descriptors of the maps the program uses; they are baked into the instructions (`BPF_PSEUDO_MAP_FD`) and
/// resolved by the kernel at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFds {
    /// `BPF_MAP_TYPE_ARRAY`, key u32 (UDP port, host order), value u32, [`PORTS_ENTRIES`] entries; non-zero: ours.
    pub ports: i32,
    /// `BPF_MAP_TYPE_XSKMAP`, key u32 (receive queue), value u32 (AF_XDP socket fd when written).
    pub xsks: i32,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`, key u32 (`STAT_*`), value u64, [`STATS_ENTRIES`] entries.
    pub stats: i32,
}

/// The XDP program: redirects UDP to our ports into the receive queue's AF_XDP socket, passes everything else.
pub fn xdp_classifier(maps: &MapFds) -> Vec<Insn> {
    use Reg::*;
    let mut asm = Asm::new();
    let pass = asm.label();
    let count = asm.label();
    let l3 = asm.label();
    let ipv4 = asm.label();
    let udp = asm.label();
    let done = asm.label();

    // Ethernet: r2 = data, r3 = data_end; r5 = EtherType, r2 = the header after it.
    asm.emit([Insn::mov64_reg(R6, R1)]);
    asm.emit([Insn::ldx(Size::W, R2, R6, XDP_MD_DATA), Insn::ldx(Size::W, R3, R6, XDP_MD_DATA_END)]);
    bounds_check(&mut asm, ETH_HEADER_LEN, pass);
    asm.emit([Insn::ldx(Size::H, R5, R2, ETH_TYPE_OFFSET as i16), Insn::to_be(R5, 16)]);
    asm.emit([Insn::alu64_imm(AluOp::Add, R2, ETH_HEADER_LEN as i32)]);

    // VLAN tags, unrolled: the verifier accepts no loops here, and two tags is all the rules look through.
    for _ in 0..MAX_VLAN_TAGS {
        let tag = asm.label();
        asm.jump_if_imm(JmpOp::Eq, R5, ETHERTYPE_VLAN.into(), tag);
        asm.jump_if_imm(JmpOp::Ne, R5, ETHERTYPE_QINQ.into(), l3);
        asm.bind(tag);
        bounds_check(&mut asm, VLAN_TAG_LEN, pass);
        asm.emit([Insn::ldx(Size::H, R5, R2, 2), Insn::to_be(R5, 16)]);
        asm.emit([Insn::alu64_imm(AluOp::Add, R2, VLAN_TAG_LEN as i32)]);
    }

    asm.bind(l3);
    asm.jump_if_imm(JmpOp::Eq, R5, ETHERTYPE_IPV4.into(), ipv4);
    asm.jump_if_imm(JmpOp::Ne, R5, ETHERTYPE_IPV6.into(), pass);

    // IPv6: version 6, next header UDP; any extension header (the fragment header too) is passed.
    bounds_check(&mut asm, IPV6_HEADER_LEN, pass);
    asm.emit([Insn::ldx(Size::B, R4, R2, 0), Insn::alu64_imm(AluOp::Rsh, R4, 4)]);
    asm.jump_if_imm(JmpOp::Ne, R4, 6, pass);
    asm.emit([Insn::ldx(Size::B, R4, R2, IPV6_NEXT_HEADER_OFFSET as i16)]);
    asm.jump_if_imm(JmpOp::Ne, R4, IPPROTO_UDP.into(), pass);
    asm.emit([Insn::alu64_imm(AluOp::Add, R2, IPV6_HEADER_LEN as i32)]);
    asm.jump_to(udp);

    // IPv4: version 4, IHL >= 5, protocol UDP, not a fragment; the UDP header is IHL * 4 bytes further.
    asm.bind(ipv4);
    bounds_check(&mut asm, IPV4_MIN_HEADER_LEN, pass);
    asm.emit([Insn::ldx(Size::B, R4, R2, 0), Insn::mov64_reg(R5, R4), Insn::alu64_imm(AluOp::Rsh, R5, 4)]);
    asm.jump_if_imm(JmpOp::Ne, R5, 4, pass);
    asm.emit([Insn::alu64_imm(AluOp::And, R4, 0x0f)]);
    asm.jump_if_imm(JmpOp::Lt, R4, 5, pass);
    asm.emit([Insn::ldx(Size::B, R5, R2, IPV4_PROTOCOL_OFFSET as i16)]);
    asm.jump_if_imm(JmpOp::Ne, R5, IPPROTO_UDP.into(), pass);
    asm.emit([Insn::ldx(Size::H, R5, R2, IPV4_FRAG_OFFSET as i16), Insn::to_be(R5, 16)]);
    asm.jump_if_imm(JmpOp::Set, R5, IPV4_FRAG_MASK.into(), pass);
    // r4 is known to be 5..=15 here (masked, then compared), so r2 + r4 * 4 is a packet pointer with a bounded
    // variable offset, which the verifier accepts; the UDP bounds check below then covers it.
    asm.emit([Insn::alu64_imm(AluOp::Lsh, R4, 2), Insn::alu64_reg(AluOp::Add, R2, R4)]);

    // UDP: destination port (host order) -> ports map.
    asm.bind(udp);
    bounds_check(&mut asm, UDP_HEADER_LEN, pass);
    asm.emit([Insn::ldx(Size::H, R7, R2, UDP_DST_PORT_OFFSET as i16), Insn::to_be(R7, 16)]);
    asm.emit([Insn::stx(Size::W, R10, STACK_PORT_KEY, R7)]);
    asm.emit(Insn::ld_map_fd(R1, maps.ports));
    asm.emit([Insn::mov64_reg(R2, R10), Insn::alu64_imm(AluOp::Add, R2, STACK_PORT_KEY.into())]);
    asm.emit([Insn::call(HELPER_MAP_LOOKUP_ELEM)]);
    asm.jump_if_imm(JmpOp::Eq, R0, 0, pass); // never for an array and a 16-bit key; the verifier insists
    asm.emit([Insn::ldx(Size::W, R1, R0, 0)]);
    asm.jump_if_imm(JmpOp::Eq, R1, 0, pass);

    // Ours: the socket of this receive queue, or XDP_PASS when none is bound.
    asm.emit([Insn::ldx(Size::W, R2, R6, XDP_MD_RX_QUEUE_INDEX)]);
    asm.emit(Insn::ld_map_fd(R1, maps.xsks));
    asm.emit([Insn::mov64_imm(R3, XDP_PASS as i32), Insn::call(HELPER_REDIRECT_MAP)]);
    asm.emit([Insn::mov64_reg(R7, R0), Insn::mov64_imm(R1, STAT_MATCHED_NO_SOCKET as i32)]);
    asm.jump_if_imm(JmpOp::Ne, R0, XDP_REDIRECT as i32, count);
    asm.emit([Insn::mov64_imm(R1, STAT_REDIRECTED as i32)]);
    asm.jump_to(count);

    asm.bind(pass);
    asm.emit([Insn::mov64_imm(R7, XDP_PASS as i32), Insn::mov64_imm(R1, STAT_PASSED as i32)]);

    // stats[r1] += 1 on this CPU (a per-CPU map: no other writer, so no atomic needed), then return r7.
    asm.bind(count);
    asm.emit([Insn::stx(Size::W, R10, STACK_STATS_KEY, R1)]);
    asm.emit(Insn::ld_map_fd(R1, maps.stats));
    asm.emit([Insn::mov64_reg(R2, R10), Insn::alu64_imm(AluOp::Add, R2, STACK_STATS_KEY.into())]);
    asm.emit([Insn::call(HELPER_MAP_LOOKUP_ELEM)]);
    asm.jump_if_imm(JmpOp::Eq, R0, 0, done);
    asm.emit([Insn::ldx(Size::DW, R1, R0, 0), Insn::alu64_imm(AluOp::Add, R1, 1), Insn::stx(Size::DW, R0, 0, R1)]);
    asm.bind(done);
    asm.emit([Insn::mov64_reg(R0, R7), Insn::exit()]);
    asm.finish()
}

/// `if r2 + len > data_end goto pass` (r4 is scratch): after it, `len` bytes at r2 may be read.
fn bounds_check(asm: &mut Asm, len: usize, pass: crate::insn::Label) {
    asm.emit([Insn::mov64_reg(Reg::R4, Reg::R2), Insn::alu64_imm(AluOp::Add, Reg::R4, len as i32)]);
    asm.jump_if_reg(JmpOp::Gt, Reg::R4, Reg::R3, pass);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: MapFds = MapFds { ports: 3, xsks: 4, stats: 5 };

    #[test]
    fn program_is_small_and_ends_in_exit() {
        let insns = xdp_classifier(&MAPS);
        assert!(insns.len() < 128, "{} instructions", insns.len());
        assert_eq!(insns.last(), Some(&Insn::exit()));
    }

    #[test]
    fn maps_are_referenced_by_fd() {
        let insns = xdp_classifier(&MAPS);
        let map_fds: Vec<i32> = insns.iter().filter(|insn| insn.code == 0x18 && insn.src == 1).map(|i| i.imm).collect();
        assert_eq!(map_fds, [MAPS.ports, MAPS.xsks, MAPS.stats]);
    }

    #[test]
    fn jumps_land_inside_the_program() {
        let insns = xdp_classifier(&MAPS);
        for (at, insn) in insns.iter().enumerate() {
            let is_jump = insn.code & 0x07 == 0x05 && !matches!(insn.code & 0xf0, 0x80 | 0x90);
            if is_jump {
                let target = at as i64 + 1 + i64::from(insn.off);
                assert!((0..insns.len() as i64).contains(&target), "jump at {at} to {target}");
            }
        }
    }

    #[test]
    fn name_fits_the_kernel_field() {
        assert!(PROGRAM_NAME.len() < 16);
    }
}
