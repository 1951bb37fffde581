//! Thin wrappers over the `bpf(2)` system call, and [`LoadedProgram`]: mover's XDP program with its three maps.
//!
//! Why by hand: mover needs a dozen commands of `bpf(2)`, each a few fields of `union bpf_attr`; defining those
//! fields here (`#[repr(C)]` prefixes of the kernel's structs, zeroed, their size passed to the kernel, which
//! zero-fills the rest) costs less than a loader library and its build. The layouts follow
//! `include/uapi/linux/bpf.h`; the kernel accepts a shorter `attr` than its own, so only the leading fields are
//! declared.
//!
//! Errors keep the kernel's errno (as the `io::ErrorKind` and the source error) and say which operation failed and
//! what usually causes it, so an operator reading one line knows what to fix.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::insn::{self, Insn};
use crate::program::{
    self, MapFds, PORTS_ENTRIES, PROGRAM_NAME, STATS_ENTRIES, STAT_MATCHED_NO_SOCKET, STAT_PASSED, STAT_REDIRECTED,
};

// Commands (enum bpf_cmd).
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_LINK_CREATE: u32 = 28;
const BPF_LINK_GET_FD_BY_ID: u32 = 30;
const BPF_LINK_GET_NEXT_ID: u32 = 31;
const BPF_LINK_DETACH: u32 = 34;

/// `BPF_MAP_TYPE_ARRAY` (enum bpf_map_type).
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PERCPU_HASH`.
pub const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
pub const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
/// `BPF_MAP_TYPE_XSKMAP`: AF_XDP sockets by receive queue.
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP` (enum bpf_prog_type).
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` (enum bpf_attach_type): attaching to a network device.
pub const BPF_XDP: u32 = 37;
/// `BPF_LINK_TYPE_XDP` (enum bpf_link_type).
pub const BPF_LINK_TYPE_XDP: u32 = 6;
/// `XDP_FLAGS_SKB_MODE` (include/uapi/linux/if_link.h): generic XDP, after the skb is built; works on any device.
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver (veth only while the peer's MTU allows, see MACHINE-NOTES.md).
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

/// License string given to the kernel; GPL-compatible, so every helper is allowed.
const LICENSE: &CStr = c"Dual MIT/GPL";
/// Size of the verifier log buffer: far more than this program's log, small enough to allocate per load.
const VERIFIER_LOG_BYTES: usize = 1 << 20;
/// `log_level` 1: the verifier's instruction-by-instruction log of the failing path.
const VERIFIER_LOG_LEVEL: u32 = 1;
/// The kernel's limit on object names (`BPF_OBJ_NAME_LEN`), NUL included.
const OBJ_NAME_LEN: usize = 16;
/// Hint appended to EPERM errors.
const EPERM_HINT: &str = "needs CAP_BPF and CAP_NET_ADMIN (or root)";

/// Plain-old-data types a map key or value may be read into: every bit pattern is a valid value, and there is no
/// padding.
///
/// # Safety
/// Implement only for types without padding for which any bytes are a valid value.
pub unsafe trait Pod: Copy + 'static {}
// Safety: integers and byte arrays have no padding and no invalid bit patterns.
unsafe impl Pod for u8 {}
// Safety: as above.
unsafe impl Pod for u16 {}
// Safety: as above.
unsafe impl Pod for u32 {}
// Safety: as above.
unsafe impl Pod for u64 {}
// Safety: as above.
unsafe impl Pod for i32 {}
// Safety: as above.
unsafe impl Pod for i64 {}
// Safety: as above.
unsafe impl<const N: usize> Pod for [u8; N] {}

/// Creates a map; `name` (at most 15 bytes of `[A-Za-z0-9_.]`) shows in `bpftool map`.
pub fn map_create(map_type: u32, key_size: u32, value_size: u32, max_entries: u32, name: &str) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_name: object_name(name),
        ..Default::default()
    };
    let fd = bpf(BPF_MAP_CREATE, &mut attr).map_err(|err| context(err, format!("creating BPF map {name}")))?;
    Ok(owned_fd(fd))
}

/// Writes `map[key] = value` (`BPF_ANY`). The key and value types must have the map's key and value sizes (checked
/// against the map's info: a mismatch is `InvalidInput`, never a wild write).
pub fn map_update_elem<K: Pod, V: Pod>(fd: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<()> {
    map_check_sizes::<K>(fd, size_of::<V>(), "updating")?;
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *const V as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|err| context(err, "updating a BPF map element".into()))?;
    Ok(())
}

/// Reads `map[key]`, or `None` if the key is absent. For maps whose values are one per CPU, use
/// [`read_percpu_u64`].
pub fn map_lookup_elem<K: Pod, V: Pod>(fd: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let info = map_check_sizes::<K>(fd, size_of::<V>(), "reading")?;
    if is_percpu(info.map_type) {
        return Err(invalid_input(format!("map {} holds one value per CPU: use read_percpu_u64", info.name)));
    }
    // Safety: V is Pod: the all-zero bytes are a valid value.
    let mut value: V = unsafe { std::mem::zeroed() };
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: &mut value as *mut V as u64,
        ..Default::default()
    };
    // The kernel writes value_size bytes, checked above to be size_of::<V>().
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(value)),
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(err) => Err(context(err, format!("reading an element of BPF map {}", info.name))),
    }
}

/// Deletes `map[key]` (hash maps, XSKMAP; arrays have no deletion: write a zero value instead).
pub fn map_delete_elem<K: Pod>(fd: BorrowedFd<'_>, key: &K) -> io::Result<()> {
    let info = map_info(fd)?;
    if info.key_size as usize != size_of::<K>() {
        return Err(invalid_input(format!(
            "map {}: key is {} bytes, not {}",
            info.name,
            info.key_size,
            size_of::<K>()
        )));
    }
    let mut attr = MapElemAttr { map_fd: fd.as_raw_fd() as u32, key: key as *const K as u64, ..Default::default() };
    bpf(BPF_MAP_DELETE_ELEM, &mut attr).map_err(|err| context(err, format!("deleting from BPF map {}", info.name)))?;
    Ok(())
}

/// The sum over all possible CPUs of the u64 at `key` of a per-CPU map (each CPU counts alone; the total is what
/// an operator wants). Not a snapshot: CPUs keep counting while it reads.
pub fn read_percpu_u64(fd: BorrowedFd<'_>, key: u32) -> io::Result<u64> {
    let info = map_check_sizes::<u32>(fd, size_of::<u64>(), "reading")?;
    if !is_percpu(info.map_type) {
        return Err(invalid_input(format!("map {} is not a per-CPU map (type {})", info.name, info.map_type)));
    }
    // One 8-byte slot per possible CPU (values are rounded up to 8 bytes each; u64 already is).
    let mut values = vec![0u64; possible_cpus()?];
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: values.as_mut_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map_err(|err| context(err, format!("reading BPF map {}[{key}]", info.name)))?;
    Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
}

/// What the kernel says about a map (the leading fields of `struct bpf_map_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// The map's id (system-wide).
    pub id: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU, for per-CPU maps).
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Name given at creation.
    pub name: String,
}

/// The map's type, sizes and name.
pub fn map_info(fd: BorrowedFd<'_>) -> io::Result<MapInfo> {
    let mut raw = MapInfoRaw::default();
    obj_info(fd, &mut raw).map_err(|err| context(err, "reading a BPF map's info".into()))?;
    Ok(MapInfo {
        map_type: raw.map_type,
        id: raw.id,
        key_size: raw.key_size,
        value_size: raw.value_size,
        max_entries: raw.max_entries,
        name: name_from(&raw.name),
    })
}

/// Why a program did not load: the kernel's error and the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    /// The program's name.
    pub name: String,
    /// The error `BPF_PROG_LOAD` returned.
    pub error: io::Error,
    /// The verifier log (empty if the kernel wrote none).
    pub log: String,
}

impl LoadError {
    /// The last `lines` lines of the verifier log: where the verifier gave up, and why.
    pub fn log_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "loading BPF program {}: {}", self.name, self.error)?;
        match self.error.raw_os_error() {
            Some(libc::EPERM) => write!(f, " ({EPERM_HINT})")?,
            Some(libc::EACCES | libc::EINVAL) if !self.log.is_empty() => {
                write!(f, "; the verifier rejected it, last lines of its log:\n{}", self.log_tail(20))?
            }
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Loads an XDP program. `name` (at most 15 bytes of `[A-Za-z0-9_.]`) is how `bpftool prog` and [`prog_info`]
/// show it. `expected_attach_type`: `None` means [`BPF_XDP`] (a program attached to a device); programs for
/// devmap/cpumap entries name theirs. The verifier log is kept only when the load fails.
pub fn prog_load_xdp(insns: &[Insn], name: &str, expected_attach_type: Option<u32>) -> Result<OwnedFd, LoadError> {
    let code = insn::to_bytes(insns);
    let mut log = vec![0u8; VERIFIER_LOG_BYTES];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: code.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: VERIFIER_LOG_LEVEL,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: object_name(name),
        expected_attach_type: expected_attach_type.unwrap_or(BPF_XDP),
        ..Default::default()
    };
    // EAGAIN: the verifier was interrupted by a signal or ran out of its time budget; libbpf retries too.
    let mut result = bpf(BPF_PROG_LOAD, &mut attr);
    for _ in 0..4 {
        match &result {
            Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => result = bpf(BPF_PROG_LOAD, &mut attr),
            _ => break,
        }
    }
    match result {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(error) => {
            let end = log.iter().position(|&byte| byte == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]).into_owned();
            Err(LoadError { name: name.to_string(), error, log })
        }
    }
}

/// Runs an XDP program once on `frame` (`BPF_PROG_TEST_RUN`) and returns its action (`XDP_PASS`...). Redirects
/// are not performed, only reported. Kernel rules (net/bpf/test_run.c): the frame is at least 14 bytes
/// (`EINVAL` below); a non-zero `rx_queue_index` needs the `ingress_ifindex` of a device that has that receive
/// queue (`EINVAL` with index 0, `ENODEV` for no such device); the program's map updates are real.
pub fn prog_test_run_xdp(
    prog_fd: BorrowedFd<'_>,
    frame: &[u8],
    rx_queue_index: u32,
    ingress_ifindex: u32,
) -> io::Result<u32> {
    let ctx = XdpMd { data: 0, data_end: frame.len() as u32, rx_queue_index, ingress_ifindex, ..Default::default() };
    let mut attr = TestRunAttr {
        prog_fd: prog_fd.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|err| {
        let what = format!(
            "BPF_PROG_TEST_RUN on a {}-byte frame, rx queue {rx_queue_index}, ifindex {ingress_ifindex}",
            frame.len()
        );
        context(err, what)
    })?;
    Ok(attr.retval)
}

/// Attaches an XDP program to a network device through a BPF link (`BPF_LINK_CREATE`, `BPF_XDP`); `flags` is
/// `XDP_FLAGS_SKB_MODE`, `XDP_FLAGS_DRV_MODE` or 0 (native if the driver has it, else generic). The program stays
/// attached while the returned link fd (or a copy of it) is open: a crashed mover leaves nothing behind.
pub fn link_create_xdp(prog_fd: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr =
        LinkCreateAttr { prog_fd: prog_fd.as_raw_fd() as u32, target_ifindex: ifindex, attach_type: BPF_XDP, flags };
    let fd = bpf(BPF_LINK_CREATE, &mut attr).map_err(|err| {
        let hint = match err.raw_os_error() {
            Some(libc::EBUSY | libc::EEXIST) => "; another XDP program is attached to it (see `bpftool net`)",
            Some(libc::EOPNOTSUPP) => "; the driver has no native XDP: use generic (skb) mode",
            Some(libc::ENODEV) => "; no such interface",
            _ => "",
        };
        context(err, format!("attaching XDP to interface {ifindex} (flags {flags:#x}){hint}"))
    })?;
    Ok(owned_fd(fd))
}

/// Detaches a BPF link from its hook (`BPF_LINK_DETACH`) even while other fds of it stay open: how a stale link
/// of a previous run is removed.
pub fn link_detach(link_fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkDetachAttr { link_fd: link_fd.as_raw_fd() as u32 };
    bpf(BPF_LINK_DETACH, &mut attr).map_err(|err| context(err, "detaching a BPF link".into()))?;
    Ok(())
}

/// Opens the program with this id (system-wide, from `bpftool prog` or [`xdp_links_on`]).
pub fn prog_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetByIdAttr { id, ..Default::default() };
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map_err(|err| context(err, format!("opening BPF program {id}")))?;
    Ok(owned_fd(fd))
}

/// Opens the BPF link with this id.
pub fn link_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetByIdAttr { id, ..Default::default() };
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr).map_err(|err| context(err, format!("opening BPF link {id}")))?;
    Ok(owned_fd(fd))
}

/// What the kernel says about a loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    /// The program's id (system-wide).
    pub id: u32,
    /// Its name ([`PROGRAM_NAME`] for mover's).
    pub name: String,
    /// The kernel's hash of its instructions (`bpftool prog`'s "tag"): equal tags, equal programs.
    pub tag: [u8; 8],
}

/// The program's id, name and tag (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let mut raw = ProgInfoRaw::default();
    obj_info(fd, &mut raw).map_err(|err| context(err, "reading a BPF program's info".into()))?;
    Ok(ProgInfo { id: raw.id, name: name_from(&raw.name), tag: raw.tag })
}

/// The XDP links attached to interface `ifindex`, as (link id, program id). Programs attached the legacy way
/// (netlink, `ip link set xdp`) have no link and are not listed. The kernel reports a link's ifindex without its
/// network namespace, so links on a device with the same ifindex in another namespace are listed too: check the
/// program ([`prog_info`]) before detaching.
pub fn xdp_links_on(ifindex: u32) -> io::Result<Vec<(u32, u32)>> {
    let mut links = Vec::new();
    let mut id = 0;
    loop {
        let mut attr = GetByIdAttr { id, ..Default::default() };
        match bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => id = attr.next_id,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(links),
            Err(err) => return Err(context(err, "listing BPF links".into())),
        }
        let link = match link_get_fd_by_id(id) {
            Ok(link) => link,
            // Gone between the two calls.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let mut info = LinkInfoRaw::default();
        obj_info(link.as_fd(), &mut info).map_err(|err| context(err, format!("reading BPF link {id}'s info")))?;
        if info.link_type == BPF_LINK_TYPE_XDP && info.xdp_ifindex == ifindex {
            links.push((info.id, info.prog_id));
        }
    }
}

/// mover's XDP program, loaded with its maps, ready to attach ([`link_create_xdp`] with `prog`). Dropping it
/// closes every fd: the kernel frees program and maps once no link holds them.
#[derive(Debug)]
pub struct LoadedProgram {
    /// The program.
    pub prog: OwnedFd,
    /// UDP ports that are ours (`program::MapFds::ports`).
    pub ports: OwnedFd,
    /// AF_XDP sockets by receive queue.
    pub xsks: OwnedFd,
    /// Per-CPU counters, indexed by `STAT_*`.
    pub stats: OwnedFd,
}

/// Creates the three maps (the XSKMAP with `xsk_slots` entries: one per receive queue) and loads the program.
/// The error is one message for an operator, with the verifier log's tail if the verifier refused.
pub fn load_classifier(xsk_slots: u32) -> Result<LoadedProgram, String> {
    let u32_size = size_of::<u32>() as u32;
    let ports = map_create(BPF_MAP_TYPE_ARRAY, u32_size, u32_size, PORTS_ENTRIES, "mover_ports");
    let ports = ports.map_err(|err| err.to_string())?;
    let xsks = map_create(BPF_MAP_TYPE_XSKMAP, u32_size, u32_size, xsk_slots, "mover_xsks");
    let xsks = xsks.map_err(|err| err.to_string())?;
    let stats = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, u32_size, size_of::<u64>() as u32, STATS_ENTRIES, "mover_stats");
    let stats = stats.map_err(|err| err.to_string())?;
    let fds = MapFds { ports: ports.as_raw_fd(), xsks: xsks.as_raw_fd(), stats: stats.as_raw_fd() };
    let prog = prog_load_xdp(&program::xdp_classifier(&fds), PROGRAM_NAME, None).map_err(|err| err.to_string())?;
    Ok(LoadedProgram { prog, ports, xsks, stats })
}

impl LoadedProgram {
    /// Frames to UDP port `port` are ours from now on.
    pub fn add_port(&self, port: u16) -> io::Result<()> {
        map_update_elem(self.ports.as_fd(), &u32::from(port), &1u32)
    }

    /// Frames to UDP port `port` go to the kernel again.
    pub fn remove_port(&self, port: u16) -> io::Result<()> {
        map_update_elem(self.ports.as_fd(), &u32::from(port), &0u32)
    }

    /// Frames of receive queue `queue` that are ours go to the AF_XDP socket `xsk_fd` (bound to that queue: the
    /// kernel checks when a frame arrives, not here).
    pub fn set_xsk(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        map_update_elem(self.xsks.as_fd(), &queue, &(xsk_fd as u32))
    }

    /// Frames of receive queue `queue` that are ours go to the kernel again (counted as `matched_no_socket`).
    pub fn clear_xsk(&self, queue: u32) -> io::Result<()> {
        map_delete_elem(self.xsks.as_fd(), &queue)
    }

    /// The counters, summed over CPUs, indexed by `STAT_REDIRECTED`, `STAT_MATCHED_NO_SOCKET`, `STAT_PASSED`.
    pub fn stats(&self) -> io::Result<[u64; 3]> {
        let mut counters = [0; 3];
        for stat in [STAT_REDIRECTED, STAT_MATCHED_NO_SOCKET, STAT_PASSED] {
            counters[stat as usize] = read_percpu_u64(self.stats.as_fd(), stat)?;
        }
        Ok(counters)
    }
}

/// Number of possible CPUs: per-CPU map values come as one slot for each (kernel: `num_possible_cpus()`).
pub fn possible_cpus() -> io::Result<usize> {
    static POSSIBLE: OnceLock<usize> = OnceLock::new();
    if let Some(&count) = POSSIBLE.get() {
        return Ok(count);
    }
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(PATH).map_err(|err| context(err, format!("reading {PATH}")))?;
    let count = parse_cpu_list(text.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{PATH}: unexpected {text:?}")))?;
    Ok(*POSSIBLE.get_or_init(|| count))
}

/// Number of CPUs in a kernel CPU list such as `0-3,8-11` or `0`.
fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut count = 0;
    for range in list.split(',') {
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?),
            None => (range.parse().ok()?, range.parse().ok()?),
        };
        count += last.checked_sub(first)? + 1;
    }
    Some(count)
}

fn is_percpu(map_type: u32) -> bool {
    matches!(map_type, BPF_MAP_TYPE_PERCPU_HASH | BPF_MAP_TYPE_PERCPU_ARRAY | BPF_MAP_TYPE_LRU_PERCPU_HASH)
}

/// The map's info, after checking that `K` and a value of `value_size` bytes fit its key and value.
fn map_check_sizes<K>(fd: BorrowedFd<'_>, value_size: usize, doing: &str) -> io::Result<MapInfo> {
    let info = map_info(fd)?;
    if info.key_size as usize != size_of::<K>() || info.value_size as usize != value_size {
        return Err(invalid_input(format!(
            "{doing} map {}: its key/value are {}/{} bytes, given {}/{}",
            info.name,
            info.key_size,
            info.value_size,
            size_of::<K>(),
            value_size
        )));
    }
    Ok(info)
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info`, a `#[repr(C)]` prefix of the object's info struct.
fn obj_info<T: InfoStruct>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut attr =
        InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: size_of::<T>() as u32, info: info as *mut T as u64 };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(())
}

/// The `bpf(2)` system call with `attr` (a `#[repr(C)]` prefix of `union bpf_attr`); the non-negative result.
fn bpf<A: Attr>(cmd: u32, attr: &mut A) -> io::Result<i32> {
    // Safety: `attr` is a live, initialised #[repr(C)] struct laid out as the leading fields of union bpf_attr for
    // `cmd` (the `Attr` types below), and its size is what is passed, so the kernel reads and writes only inside it.
    // Every pointer stored in it points to a buffer alive for this call, of the size stored next to it (or of the
    // size the map was checked to have, for map elements).
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>() as libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i32)
}

fn owned_fd(fd: i32) -> OwnedFd {
    assert!(fd >= 0, "bpf(2) returned fd {fd}");
    // Safety: a successful bpf(2) command that creates an object returns a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The error with what was being done, and the usual cause of EPERM.
fn context(err: io::Error, what: String) -> io::Error {
    let hint = if err.raw_os_error() == Some(libc::EPERM) { format!(" ({EPERM_HINT})") } else { String::new() };
    io::Error::new(err.kind(), ContextError { message: format!("{what}: {err}{hint}"), source: err })
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// An errno with a sentence of context; the errno stays reachable as the error's source.
#[derive(Debug)]
struct ContextError {
    message: String,
    source: io::Error,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A kernel object name: at most 15 bytes of `[A-Za-z0-9_.]`, NUL-terminated (kernel `bpf_obj_name_cpy`).
fn object_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    assert!(name.len() < OBJ_NAME_LEN, "BPF object name {name:?} over 15 bytes");
    assert!(name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.'), "{name:?}");
    let mut field = [0; OBJ_NAME_LEN];
    field[..name.len()].copy_from_slice(name.as_bytes());
    field
}

fn name_from(field: &[u8; OBJ_NAME_LEN]) -> String {
    let end = field.iter().position(|&byte| byte == 0).unwrap_or(OBJ_NAME_LEN);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Marker for the `#[repr(C)]` prefixes of `union bpf_attr` that [`bpf`] may pass.
trait Attr {}
/// Marker for the `#[repr(C)]` prefixes of the `bpf_*_info` structs that [`obj_info`] may pass.
trait InfoStruct {}

/// `attr.map_create` (BPF_MAP_CREATE).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; OBJ_NAME_LEN],
}
impl Attr for MapCreateAttr {}

/// The anonymous struct of BPF_MAP_*_ELEM commands.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}
impl Attr for MapElemAttr {}

/// The anonymous struct of BPF_PROG_LOAD.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}
impl Attr for ProgLoadAttr {}

/// `attr.test` (BPF_PROG_TEST_RUN).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
impl Attr for TestRunAttr {}

/// `struct xdp_md`, the XDP program's context, as BPF_PROG_TEST_RUN takes it.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// `attr.link_create` (BPF_LINK_CREATE), up to the common fields.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}
impl Attr for LinkCreateAttr {}

/// `attr.link_detach` (BPF_LINK_DETACH).
#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
}
impl Attr for LinkDetachAttr {}

/// The anonymous struct of BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}
impl Attr for GetByIdAttr {}

/// `attr.info` (BPF_OBJ_GET_INFO_BY_FD).
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}
impl Attr for InfoAttr {}

/// The leading fields of `struct bpf_prog_info`, up to `name`; the pointer fields stay zero, so the kernel fills
/// in no arrays.
#[repr(C)]
#[derive(Default)]
struct ProgInfoRaw {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; OBJ_NAME_LEN],
}
impl InfoStruct for ProgInfoRaw {}

/// The leading fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct MapInfoRaw {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; OBJ_NAME_LEN],
}
impl InfoStruct for MapInfoRaw {}

/// The leading fields of `struct bpf_link_info` and of its `xdp` union member (8-byte aligned, at offset 16).
#[repr(C)]
#[derive(Default)]
struct LinkInfoRaw {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    xdp_ifindex: u32,
    _pad2: u32,
}
impl InfoStruct for LinkInfoRaw {}

// The offsets the kernel expects (checked against include/uapi/linux/bpf.h of Linux 6.18).
const _: () = assert!(size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type) == 68);
const _: () = assert!(std::mem::offset_of!(MapCreateAttr, map_name) == 28);
const _: () = assert!(std::mem::offset_of!(TestRunAttr, ctx_in) == 48);
const _: () = assert!(std::mem::offset_of!(TestRunAttr, batch_size) == 72);
const _: () = assert!(std::mem::offset_of!(ProgInfoRaw, name) == 64);
const _: () = assert!(std::mem::offset_of!(LinkInfoRaw, xdp_ifindex) == 16);
const _: () = assert!(std::mem::offset_of!(XdpMd, rx_queue_index) == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(8));
        assert_eq!(parse_cpu_list("0,2"), Some(2));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list(""), None);
    }

    #[test]
    fn possible_cpus_reads_sysfs() {
        assert!(possible_cpus().unwrap() >= 1);
    }

    #[test]
    fn object_names() {
        assert_eq!(&object_name("mover_xdp")[..10], b"mover_xdp\0");
        assert_eq!(name_from(&object_name("mover_xdp")), "mover_xdp");
    }

    #[test]
    #[should_panic(expected = "over 15 bytes")]
    fn object_name_too_long() {
        object_name("a_name_of_16_byt");
    }
}
