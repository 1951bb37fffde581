//! The XDP program in the kernel: it passes the verifier, and `BPF_PROG_TEST_RUN` gives the verdict of
//! `classify` on every fixture and on thousands of mutated frames. Needs root (CAP_BPF + CAP_NET_ADMIN); skips
//! loudly otherwise.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use mover_ebpf::fixtures::{fixture_set, FrameSpec};
use mover_ebpf::insn::{Insn, Reg};
use mover_ebpf::sys::{self, load_classifier, LoadedProgram};
use mover_ebpf::{
    classify, PROGRAM_NAME, STAT_MATCHED_NO_SOCKET, STAT_PASSED, STAT_REDIRECTED, XDP_PASS, XDP_REDIRECT,
};

const OUR_PORT: u16 = 47000;
/// A second port of ours, so the differential test also sees "ours" after a port byte was mutated.
const OUR_OTHER_PORT: u16 = 47001;
/// The kernel refuses BPF_PROG_TEST_RUN on XDP frames shorter than an Ethernet header.
const MIN_TEST_RUN_LEN: usize = 14;

fn is_root() -> bool {
    // Safety: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!("skipping: needs root (BPF)");
    false
}

fn load() -> LoadedProgram {
    let program = load_classifier(4).unwrap_or_else(|err| panic!("{err}"));
    program.add_port(OUR_PORT).unwrap();
    program
}

/// Runs one frame and returns (retval, index of the counter that moved).
fn run(program: &LoadedProgram, frame: &[u8]) -> (u32, usize) {
    let before = program.stats().unwrap();
    let retval = sys::prog_test_run_xdp(program.prog.as_fd(), frame, 0, 0).unwrap();
    let after = program.stats().unwrap();
    let moved: Vec<usize> = (0..3).filter(|&stat| after[stat] != before[stat]).collect();
    assert_eq!(moved.len(), 1, "one counter moves per frame: {before:?} -> {after:?}");
    assert_eq!(after[moved[0]], before[moved[0]] + 1);
    (retval, moved[0])
}

#[test]
fn program_passes_the_verifier() {
    if !is_root() {
        return;
    }
    let program = load();
    let info = sys::prog_info(program.prog.as_fd()).unwrap();
    assert_eq!(info.name, PROGRAM_NAME);
    assert_ne!(info.id, 0);
    let reopened = sys::prog_get_fd_by_id(info.id).unwrap();
    assert_eq!(sys::prog_info(reopened.as_fd()).unwrap(), info);
}

#[test]
fn verifier_log_comes_with_a_rejection() {
    if !is_root() {
        return;
    }
    // Returns r0 without setting it: the verifier refuses ("R0 !read_ok").
    let err = sys::prog_load_xdp(&[Insn::exit()], "mover_bad", None).unwrap_err();
    assert_eq!(err.error.raw_os_error(), Some(libc::EACCES), "{err}");
    assert!(err.log.contains("R0"), "{}", err.log);
    assert!(err.to_string().contains("verifier"), "{err}");
    // And a trivial valid one loads.
    sys::prog_load_xdp(&[Insn::mov64_imm(Reg::R0, XDP_PASS as i32), Insn::exit()], "mover_ok", None).unwrap();
}

#[test]
fn every_fixture_gets_its_verdict_in_the_kernel() {
    if !is_root() {
        return;
    }
    let program = load();
    for (name, frame, expect_ours) in fixture_set(OUR_PORT) {
        if frame.len() < MIN_TEST_RUN_LEN {
            let err = sys::prog_test_run_xdp(program.prog.as_fd(), &frame, 0, 0).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{name}: {err}");
            continue;
        }
        let (retval, moved) = run(&program, &frame);
        // No socket in the XSKMAP: ours falls back to XDP_PASS too, counted apart.
        assert_eq!(retval, XDP_PASS, "{name}");
        let expected = if expect_ours { STAT_MATCHED_NO_SOCKET } else { STAT_PASSED };
        assert_eq!(moved, expected as usize, "{name}");
    }
    assert_eq!(program.stats().unwrap()[STAT_REDIRECTED as usize], 0);
}

#[test]
fn ports_can_be_added_and_removed() {
    if !is_root() {
        return;
    }
    let program = load();
    let frame = FrameSpec::udp_v4(OUR_OTHER_PORT).build();
    assert_eq!(run(&program, &frame).1, STAT_PASSED as usize);
    program.add_port(OUR_OTHER_PORT).unwrap();
    assert_eq!(run(&program, &frame).1, STAT_MATCHED_NO_SOCKET as usize);
    program.remove_port(OUR_OTHER_PORT).unwrap();
    assert_eq!(run(&program, &frame).1, STAT_PASSED as usize);
}

#[test]
fn test_run_queue_and_device_rules() {
    if !is_root() {
        return;
    }
    let program = load();
    let frame = FrameSpec::udp_v4(OUR_PORT).build();
    let prog = program.prog.as_fd();
    // Queue 0 of loopback is a real queue: accepted.
    assert_eq!(sys::prog_test_run_xdp(prog, &frame, 0, LOOPBACK_IFINDEX).unwrap(), XDP_PASS);
    // A queue without a device, a queue the device lacks, a device that does not exist: refused.
    let err = sys::prog_test_run_xdp(prog, &frame, 1, 0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let err = sys::prog_test_run_xdp(prog, &frame, 1, LOOPBACK_IFINDEX).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    let err = sys::prog_test_run_xdp(prog, &frame, 0, 999_999).unwrap_err();
    assert_eq!(err.raw_os_error_of_source(), Some(libc::ENODEV), "{err}");
}

/// An AF_XDP socket bound (copy mode) to queue 0 of loopback, with a small UMEM and no rings mapped: enough for
/// the XSKMAP to accept it, which is all the program's redirect needs under `BPF_PROG_TEST_RUN` (the kernel does
/// not deliver frames redirected in a test run).
struct BoundXsk {
    socket: OwnedFd,
    umem: *mut libc::c_void,
}

const UMEM_FRAMES: usize = 16;
const UMEM_FRAME_SIZE: usize = 4096;
const LOOPBACK_IFINDEX: u32 = 1;

impl BoundXsk {
    fn on_loopback_queue_0() -> BoundXsk {
        let umem_len = UMEM_FRAMES * UMEM_FRAME_SIZE;
        // Safety: an anonymous private mapping; checked for failure below, unmapped in Drop.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(umem, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        // Safety: socket(2) with constant arguments; the fd is checked and then owned.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "AF_XDP socket: {}", std::io::Error::last_os_error());
        // Safety: fd was just created and nothing else owns it.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let xsk = BoundXsk { socket, umem };
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: UMEM_FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        xsk.setsockopt(libc::XDP_UMEM_REG, &reg);
        let ring_size = UMEM_FRAMES as u32;
        for ring in [libc::XDP_UMEM_FILL_RING, libc::XDP_UMEM_COMPLETION_RING, libc::XDP_RX_RING] {
            xsk.setsockopt(ring, &ring_size);
        }
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: LOOPBACK_IFINDEX,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // Safety: addr is a valid sockaddr_xdp of the size passed.
        let ret = unsafe {
            libc::bind(
                xsk.socket.as_raw_fd(),
                &addr as *const libc::sockaddr_xdp as *const libc::sockaddr,
                std::mem::size_of_val(&addr) as u32,
            )
        };
        assert_eq!(ret, 0, "binding AF_XDP to lo queue 0: {}", std::io::Error::last_os_error());
        xsk
    }

    fn setsockopt<T>(&self, option: i32, value: &T) {
        // Safety: value is a live T and its size is what is passed.
        let ret = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_XDP,
                option,
                value as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as u32,
            )
        };
        assert_eq!(ret, 0, "setsockopt(SOL_XDP, {option}): {}", std::io::Error::last_os_error());
    }
}

impl Drop for BoundXsk {
    fn drop(&mut self) {
        // Safety: the mapping made in on_loopback_queue_0, of that length; the kernel keeps its own page references
        // while the socket (closed after this, with the struct's fields) lives.
        unsafe { libc::munmap(self.umem, UMEM_FRAMES * UMEM_FRAME_SIZE) };
    }
}

#[test]
fn ours_with_a_bound_socket_is_redirected() {
    if !is_root() {
        return;
    }
    let program = load();
    let xsk = BoundXsk::on_loopback_queue_0();
    program.set_xsk(0, xsk.socket.as_raw_fd()).unwrap();
    let prog = program.prog.as_fd();
    let ours = FrameSpec::udp_v6(OUR_PORT).build();
    let before = program.stats().unwrap();
    assert_eq!(sys::prog_test_run_xdp(prog, &ours, 0, LOOPBACK_IFINDEX).unwrap(), XDP_REDIRECT);
    let other = FrameSpec::udp_v6(OUR_OTHER_PORT).build();
    assert_eq!(sys::prog_test_run_xdp(prog, &other, 0, LOOPBACK_IFINDEX).unwrap(), XDP_PASS);
    let after = program.stats().unwrap();
    assert_eq!(after[STAT_REDIRECTED as usize], before[STAT_REDIRECTED as usize] + 1);
    assert_eq!(after[STAT_PASSED as usize], before[STAT_PASSED as usize] + 1);

    program.clear_xsk(0).unwrap();
    assert_eq!(run(&program, &ours), (XDP_PASS, STAT_MATCHED_NO_SOCKET as usize));
}

#[test]
fn attach_list_and_detach_in_a_private_network_namespace() {
    if !is_root() {
        return;
    }
    // Its own network namespace (unshare affects this thread only), so the host's interfaces are never touched:
    // the new namespace's loopback has ifindex 1, and goes away with the thread.
    std::thread::spawn(|| {
        // Safety: unshare has no memory-safety preconditions; failure is checked.
        let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(ret, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        let program = load();
        let prog_id = sys::prog_info(program.prog.as_fd()).unwrap().id;
        let ours = |links: Vec<(u32, u32)>| links.into_iter().filter(|&(_, prog)| prog == prog_id).collect::<Vec<_>>();

        let link = sys::link_create_xdp(program.prog.as_fd(), LOOPBACK_IFINDEX, sys::XDP_FLAGS_SKB_MODE).unwrap();
        let links = ours(sys::xdp_links_on(LOOPBACK_IFINDEX).unwrap());
        assert_eq!(links.len(), 1);
        let stale = sys::prog_get_fd_by_id(links[0].1).unwrap();
        assert_eq!(sys::prog_info(stale.as_fd()).unwrap().name, PROGRAM_NAME);

        let err = sys::link_create_xdp(program.prog.as_fd(), LOOPBACK_IFINDEX, sys::XDP_FLAGS_SKB_MODE).unwrap_err();
        assert!(err.to_string().contains("another XDP program"), "{err}");

        let link_by_id = sys::link_get_fd_by_id(links[0].0).unwrap();
        sys::link_detach(link_by_id.as_fd()).unwrap();
        assert!(ours(sys::xdp_links_on(LOOPBACK_IFINDEX).unwrap()).is_empty());
        drop(link);
    })
    .join()
    .unwrap();
}

/// xorshift64: deterministic, so a disagreement names a reproducible frame.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A fixture with a few header bytes changed: to values that steer the parser down other paths (EtherTypes,
/// version/IHL nibbles, protocols, our port) as often as to random ones; sometimes cut short.
fn mutate(frame: &mut Vec<u8>, state: &mut u64) {
    const INTERESTING: [u8; 14] = [0x00, 0x08, 0x81, 0x86, 0xdd, 0x88, 0xa8, 0x45, 0x4f, 0x60, 0x11, 0x2c, 0x20, 0xff];
    for _ in 0..1 + next(state) % 3 {
        if frame.is_empty() {
            break;
        }
        let at = (next(state) as usize % 90).min(frame.len() - 1);
        frame[at] = match next(state) % 3 {
            0 => INTERESTING[next(state) as usize % INTERESTING.len()],
            1 => frame[at] ^ (1 << (next(state) % 8)),
            _ => next(state) as u8,
        };
    }
    if next(state) % 4 == 0 {
        frame.truncate(next(state) as usize % (frame.len() + 1));
    }
}

#[test]
fn kernel_agrees_with_classify_on_mutated_frames() {
    if !is_root() {
        return;
    }
    let program = load();
    program.add_port(OUR_OTHER_PORT).unwrap();
    let is_ours = |port| port == OUR_PORT || port == OUR_OTHER_PORT;
    let fixtures = fixture_set(OUR_PORT);
    // Most fixtures are truncations; start from an "ours" frame half of the time, so the mutations explore the
    // paths where one changed byte turns the verdict.
    let (ours_fixtures, other_fixtures): (Vec<_>, Vec<_>) = fixtures.iter().partition(|(_, _, ours)| *ours);
    let mut state = 0x2545_f491_4f6c_dd1d;
    let (mut ours, mut checked) = (0, 0);
    for case in 0..20_000 {
        let pool = if next(&mut state) % 2 == 0 { &ours_fixtures } else { &other_fixtures };
        let (name, frame, _) = pool[next(&mut state) as usize % pool.len()];
        let mut frame = frame.clone();
        mutate(&mut frame, &mut state);
        let verdict = classify(&frame, is_ours);
        if frame.len() < MIN_TEST_RUN_LEN {
            assert!(!verdict.is_ours());
            continue;
        }
        let (retval, moved) = run(&program, &frame);
        assert_eq!(retval, XDP_PASS);
        let expected = if verdict.is_ours() { STAT_MATCHED_NO_SOCKET } else { STAT_PASSED };
        assert_eq!(moved, expected as usize, "case {case}, from {name}: {verdict:?}, frame {frame:02x?}");
        checked += 1;
        ours += usize::from(verdict.is_ours());
    }
    eprintln!("{checked} mutated frames checked, {ours} of them ours");
    assert!(ours > checked / 10 && ours < checked * 9 / 10, "mutations too mild or too wild: {ours}/{checked}");
}

/// The errno behind an error of `sys` (kept as the source of the context message).
trait RawOsErrorOfSource {
    fn raw_os_error_of_source(&self) -> Option<i32>;
}

impl RawOsErrorOfSource for std::io::Error {
    fn raw_os_error_of_source(&self) -> Option<i32> {
        let source = std::error::Error::source(self.get_ref()?)?;
        source.downcast_ref::<std::io::Error>()?.raw_os_error()
    }
}
