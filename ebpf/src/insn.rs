//! BPF instructions and a small assembler with labels.
//!
//! Why hand-encoded: the XDP program is about a hundred instructions, so encoding them here (one constructor per
//! instruction form, tested against known bytes) is smaller than any toolchain that would produce them, and lets
//! `cargo build` alone build mover. Encodings follow the kernel's instruction-set document
//! (Documentation/bpf/standardization/instruction-set.rst, "Instruction encoding"); the constants are those of
//! `include/uapi/linux/bpf_common.h` and `include/uapi/linux/bpf.h`.
//!
//! Jumps are written against [`Label`]s and resolved by [`Asm::finish`], so adding an instruction in the middle of
//! the program never means recounting offsets by hand.

// Instruction classes (instruction-set.rst, "Instruction classes").
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;

// Source operand: the immediate (K) or the source register (X).
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;

// Load/store modes.
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;

// `BPF_END` (byte swap, in the ALU class) and its `BPF_TO_BE` direction bit.
const OP_END: u8 = 0xd0;
const END_TO_BE: u8 = 0x08;

// Jump-class operations without a condition.
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;

/// `src` of a 64-bit immediate load whose `imm` is a map's file descriptor (`BPF_PSEUDO_MAP_FD`, bpf.h): the
/// verifier replaces it with the map's address.
pub const PSEUDO_MAP_FD: u8 = 1;

/// One 8-byte BPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Operation code: class, source and operation (or size and mode for loads and stores).
    pub code: u8,
    /// Destination register (low nibble of byte 1).
    pub dst: u8,
    /// Source register (high nibble of byte 1).
    pub src: u8,
    /// Signed offset: of the memory operand, or of a jump target relative to the next instruction.
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

/// A BPF register. `R0` holds return values, `R1`..`R5` are arguments (clobbered by calls), `R6`..`R9` are
/// preserved across calls, `R10` is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)] // The names are the registers'.
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// The 64-bit arithmetic operations the program uses (`BPF_ADD`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AluOp {
    /// `dst += src`.
    Add = 0x00,
    /// `dst -= src`.
    Sub = 0x10,
    /// `dst |= src`.
    Or = 0x40,
    /// `dst &= src`.
    And = 0x50,
    /// `dst <<= src`.
    Lsh = 0x60,
    /// `dst >>= src` (logical).
    Rsh = 0x70,
    /// `dst = src`.
    Mov = 0xb0,
}

/// Conditions of conditional jumps (`BPF_JEQ`...); comparisons are unsigned unless named signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum JmpOp {
    /// `dst == src`.
    Eq = 0x10,
    /// `dst > src`.
    Gt = 0x20,
    /// `dst >= src`.
    Ge = 0x30,
    /// `dst & src != 0`.
    Set = 0x40,
    /// `dst != src`.
    Ne = 0x50,
    /// `dst < src`.
    Lt = 0xa0,
    /// `dst <= src`.
    Le = 0xb0,
}

/// Width of a memory access (`BPF_W`, `BPF_H`, `BPF_B`, `BPF_DW`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Size {
    /// 4 bytes.
    W = 0x00,
    /// 2 bytes.
    H = 0x08,
    /// 1 byte.
    B = 0x10,
    /// 8 bytes.
    DW = 0x18,
}

impl Insn {
    /// The instruction as the kernel reads it: 8 bytes, little endian, `dst` in the low nibble of byte 1 and `src`
    /// in the high nibble.
    pub fn to_bytes(self) -> [u8; 8] {
        debug_assert!(self.dst < 16 && self.src < 16, "register out of range: {self:?}");
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [self.code, (self.src << 4) | (self.dst & 0x0f), off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }

    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn { code, dst: dst as u8, src: src as u8, off, imm }
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::alu64_imm(AluOp::Mov, dst, imm)
    }

    /// `dst = src`.
    pub fn mov64_reg(dst: Reg, src: Reg) -> Insn {
        Insn::alu64_reg(AluOp::Mov, dst, src)
    }

    /// `dst = dst <op> imm`, 64 bits wide.
    pub fn alu64_imm(op: AluOp, dst: Reg, imm: i32) -> Insn {
        Insn::new(CLASS_ALU64 | SRC_K | op as u8, dst, Reg::R0, 0, imm)
    }

    /// `dst = dst <op> src`, 64 bits wide.
    pub fn alu64_reg(op: AluOp, dst: Reg, src: Reg) -> Insn {
        Insn::new(CLASS_ALU64 | SRC_X | op as u8, dst, src, 0, 0)
    }

    /// `dst = htobe<bits>(dst)`: on a little-endian host, turns a big-endian field loaded from the packet into its
    /// value (and clears the bits above `bits`). `bits` is 16, 32 or 64.
    pub fn to_be(dst: Reg, bits: i32) -> Insn {
        assert!(matches!(bits, 16 | 32 | 64), "byte swap width {bits}");
        Insn::new(CLASS_ALU | OP_END | END_TO_BE, dst, Reg::R0, 0, bits)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_LDX | MODE_MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(CLASS_STX | MODE_MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(CLASS_ST | MODE_MEM | size as u8, dst, Reg::R0, off, imm)
    }

    /// `if dst <op> imm goto pc + 1 + off`.
    pub fn jmp_imm(op: JmpOp, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | SRC_K | op as u8, dst, Reg::R0, off, imm)
    }

    /// `if dst <op> src goto pc + 1 + off`.
    pub fn jmp_reg(op: JmpOp, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_JMP | SRC_X | op as u8, dst, src, off, 0)
    }

    /// `goto pc + 1 + off`.
    pub fn ja(off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JA, Reg::R0, Reg::R0, off, 0)
    }

    /// Call helper function number `helper` (`BPF_FUNC_*` in bpf.h): arguments in `R1`..`R5`, result in `R0`.
    pub fn call(helper: i32) -> Insn {
        Insn::new(CLASS_JMP | OP_CALL, Reg::R0, Reg::R0, 0, helper)
    }

    /// Return `R0` from the program.
    pub fn exit() -> Insn {
        Insn::new(CLASS_JMP | OP_EXIT, Reg::R0, Reg::R0, 0, 0)
    }

    /// `dst = imm64`: the one instruction that takes two slots; the second holds the upper 32 bits.
    pub fn ld_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
        [
            Insn::new(CLASS_LD | MODE_IMM | Size::DW as u8, dst, Reg::R0, 0, imm as u32 as i32),
            Insn { code: 0, dst: 0, src: 0, off: 0, imm: (imm >> 32) as u32 as i32 },
        ]
    }

    /// `dst = &map` for the map open as `fd` (`BPF_PSEUDO_MAP_FD`): two slots.
    pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
        let mut insns = Insn::ld_imm64(dst, fd as u32 as u64);
        insns[0].src = PSEUDO_MAP_FD;
        insns
    }
}

/// A jump target of an [`Asm`]: created unbound by [`Asm::label`], placed by [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// An instruction buffer whose jumps name [`Label`]s; [`Asm::finish`] turns them into offsets.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Instruction index each label is bound to, by label number.
    labels: Vec<Option<usize>>,
    /// Jumps to patch: (index of the jump instruction, its target).
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A new label, not yet bound to a position.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction emitted. A label is bound exactly once.
    pub fn bind(&mut self, label: Label) {
        let slot = &mut self.labels[label.0];
        assert!(slot.is_none(), "label {} bound twice", label.0);
        *slot = Some(self.insns.len());
    }

    /// Appends instructions (one, or the two slots of a 64-bit immediate load).
    pub fn emit(&mut self, insns: impl AsRef<[Insn]>) {
        self.insns.extend_from_slice(insns.as_ref());
    }

    /// `goto label`.
    pub fn jump_to(&mut self, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.insns.push(Insn::ja(0));
    }

    /// `if dst <op> imm goto label`.
    pub fn jump_if_imm(&mut self, op: JmpOp, dst: Reg, imm: i32, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.insns.push(Insn::jmp_imm(op, dst, imm, 0));
    }

    /// `if dst <op> src goto label`.
    pub fn jump_if_reg(&mut self, op: JmpOp, dst: Reg, src: Reg, label: Label) {
        self.fixups.push((self.insns.len(), label));
        self.insns.push(Insn::jmp_reg(op, dst, src, 0));
    }

    /// Number of instruction slots emitted so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether nothing was emitted yet.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The program with every jump resolved. Panics if a jump names a label never bound, or a label is bound past
    /// the last instruction (nothing to jump to): both are bugs in the program's construction.
    pub fn finish(mut self) -> Vec<Insn> {
        for (index, label) in self.labels.iter().enumerate() {
            let target = label.unwrap_or_else(|| panic!("label {index} never bound"));
            assert!(target < self.insns.len(), "label {index} bound after the last instruction");
        }
        for &(at, label) in &self.fixups {
            let target = self.labels[label.0].expect("checked above");
            let off = target as i64 - (at as i64 + 1);
            let off = i16::try_from(off).unwrap_or_else(|_| panic!("jump from {at} to {target} out of range"));
            self.insns[at].off = off;
        }
        self.insns
    }
}

/// The program as the bytes `BPF_PROG_LOAD` takes.
pub fn to_bytes(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|insn| insn.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(insn: Insn) -> [u8; 8] {
        insn.to_bytes()
    }

    // Expected bytes from the opcode tables of instruction-set.rst (the kernel loading the program checks the rest).
    #[test]
    fn encodings_match_known_bytes() {
        assert_eq!(bytes(Insn::exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::mov64_imm(Reg::R0, 2)), [0xb7, 0x00, 0, 0, 0x02, 0, 0, 0]);
        assert_eq!(bytes(Insn::mov64_reg(Reg::R6, Reg::R1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        // r2 = *(u32 *)(r1 + 0); r3 = *(u32 *)(r1 + 4)
        assert_eq!(bytes(Insn::ldx(Size::W, Reg::R2, Reg::R1, 0)), [0x61, 0x12, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::ldx(Size::W, Reg::R3, Reg::R1, 4)), [0x61, 0x13, 0x04, 0, 0, 0, 0, 0]);
        // r5 = *(u16 *)(r2 + 12); r4 = *(u8 *)(r2 + 0); r1 = *(u64 *)(r0 + 0)
        assert_eq!(bytes(Insn::ldx(Size::H, Reg::R5, Reg::R2, 12)), [0x69, 0x25, 0x0c, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::ldx(Size::B, Reg::R4, Reg::R2, 0)), [0x71, 0x24, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0)), [0x79, 0x01, 0, 0, 0, 0, 0, 0]);
        // *(u32 *)(r10 - 4) = r7; *(u64 *)(r0 + 0) = r1; *(u32 *)(r10 - 8) = 0
        assert_eq!(bytes(Insn::stx(Size::W, Reg::R10, -4, Reg::R7)), [0x63, 0x7a, 0xfc, 0xff, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1)), [0x7b, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::st(Size::W, Reg::R10, -8, 0)), [0x62, 0x0a, 0xf8, 0xff, 0, 0, 0, 0]);
        // r4 += 14; r2 += r4; r4 &= 15; r5 >>= 4; r4 <<= 2; r2 += -4
        assert_eq!(bytes(Insn::alu64_imm(AluOp::Add, Reg::R4, 14)), [0x07, 0x04, 0, 0, 0x0e, 0, 0, 0]);
        assert_eq!(bytes(Insn::alu64_reg(AluOp::Add, Reg::R2, Reg::R4)), [0x0f, 0x42, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::alu64_imm(AluOp::And, Reg::R4, 15)), [0x57, 0x04, 0, 0, 0x0f, 0, 0, 0]);
        assert_eq!(bytes(Insn::alu64_imm(AluOp::Rsh, Reg::R5, 4)), [0x77, 0x05, 0, 0, 0x04, 0, 0, 0]);
        assert_eq!(bytes(Insn::alu64_imm(AluOp::Lsh, Reg::R4, 2)), [0x67, 0x04, 0, 0, 0x02, 0, 0, 0]);
        assert_eq!(bytes(Insn::alu64_imm(AluOp::Add, Reg::R2, -4)), [0x07, 0x02, 0, 0, 0xfc, 0xff, 0xff, 0xff]);
        assert_eq!(bytes(Insn::alu64_reg(AluOp::Rsh, Reg::R1, Reg::R2)), [0x7f, 0x21, 0, 0, 0, 0, 0, 0]);
        // r5 = be16 r5
        assert_eq!(bytes(Insn::to_be(Reg::R5, 16)), [0xdc, 0x05, 0, 0, 0x10, 0, 0, 0]);
        // if r4 > r3 goto +30; if r5 != 0x800 goto +3; if r1 == 0 goto -2; goto +5
        assert_eq!(bytes(Insn::jmp_reg(JmpOp::Gt, Reg::R4, Reg::R3, 30)), [0x2d, 0x34, 0x1e, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::jmp_imm(JmpOp::Ne, Reg::R5, 0x800, 3)), [0x55, 0x05, 0x03, 0, 0, 0x08, 0, 0]);
        assert_eq!(bytes(Insn::jmp_imm(JmpOp::Eq, Reg::R1, 0, -2)), [0x15, 0x01, 0xfe, 0xff, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::jmp_imm(JmpOp::Lt, Reg::R4, 5, 1)), [0xa5, 0x04, 0x01, 0, 0x05, 0, 0, 0]);
        assert_eq!(bytes(Insn::ja(5)), [0x05, 0, 0x05, 0, 0, 0, 0, 0]);
        // call bpf_map_lookup_elem (1); call bpf_redirect_map (51)
        assert_eq!(bytes(Insn::call(1)), [0x85, 0, 0, 0, 0x01, 0, 0, 0]);
        assert_eq!(bytes(Insn::call(51)), [0x85, 0, 0, 0, 0x33, 0, 0, 0]);
    }

    #[test]
    fn map_fd_load_takes_two_slots() {
        let [first, second] = Insn::ld_map_fd(Reg::R1, 7);
        assert_eq!(first.to_bytes(), [0x18, 0x11, 0, 0, 0x07, 0, 0, 0]);
        assert_eq!(second.to_bytes(), [0; 8]);
        let [low, high] = Insn::ld_imm64(Reg::R3, 0x1122_3344_5566_7788);
        assert_eq!(low.to_bytes(), [0x18, 0x03, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(high.to_bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut asm = Asm::new();
        let top = asm.label();
        let end = asm.label();
        asm.bind(top);
        asm.emit([Insn::mov64_imm(Reg::R0, 0)]); // 0
        asm.jump_if_imm(JmpOp::Eq, Reg::R0, 1, end); // 1 -> 4: off 2
        asm.emit(Insn::ld_imm64(Reg::R1, 0)); // 2, 3
        asm.bind(end);
        asm.jump_to(top); // 4 -> 0: off -5
        asm.emit([Insn::exit()]); // 5
        let insns = asm.finish();
        assert_eq!(insns.len(), 6);
        assert_eq!(insns[1].off, 2);
        assert_eq!(insns[4].off, -5);
    }

    #[test]
    #[should_panic(expected = "never bound")]
    fn unbound_label_panics() {
        let mut asm = Asm::new();
        let nowhere = asm.label();
        asm.jump_to(nowhere);
        asm.finish();
    }

    #[test]
    #[should_panic(expected = "bound twice")]
    fn label_bound_twice_panics() {
        let mut asm = Asm::new();
        let twice = asm.label();
        asm.bind(twice);
        asm.emit([Insn::exit()]);
        asm.bind(twice);
    }
}
