//! The process's effective capabilities (`capget`), so that `--net xdp` can say which one is missing
//! instead of failing on an `EPERM` from deep inside the set-up.

/// `CAP_NET_ADMIN`: attach XDP programs, configure interfaces.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW`: open AF_XDP sockets.
pub const CAP_NET_RAW: u32 = 13;
/// `CAP_IPC_LOCK`: lock memory beyond `RLIMIT_MEMLOCK` (UMEM registration).
pub const CAP_IPC_LOCK: u32 = 14;
/// `CAP_SYS_ADMIN`: implies what `CAP_BPF` grants on kernels before 5.8.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF`: load BPF programs and create maps (5.8+).
pub const CAP_BPF: u32 = 39;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The effective capability set as a bit mask (bit n = capability n); 0 if it cannot be read.
pub fn effective() -> u64 {
    let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // Safety: capget with a version-3 header writes two CapData structs, which `data` holds.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    data[0].effective as u64 | (data[1].effective as u64) << 32
}

/// Whether capability `cap` is effective.
pub fn has(cap: u32) -> bool {
    effective() & (1 << cap) != 0
}

/// The capabilities the XDP path needs that the process lacks, by name; empty when it has them all.
/// `with_bpf`: the side that loads the XDP program (the receiver) also needs CAP_BPF (or CAP_SYS_ADMIN).
pub fn missing_for_xdp(with_bpf: bool) -> Vec<&'static str> {
    let eff = effective();
    let has = |c: u32| eff & (1 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if with_bpf && !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_what_xdp_needs() {
        // Safety: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::testing::skip_or_fail("root_has_what_xdp_needs", "needs root (CI runs as root)");
            return;
        }
        assert!(has(CAP_NET_ADMIN) && has(CAP_NET_RAW));
        assert!(missing_for_xdp(true).is_empty(), "{:?}", missing_for_xdp(true));
    }
}
