//! Choosing and setting up the data path: `--net auto|xdp|udp`.
//!
//! All privileged set-up of the XDP path happens here, in one place, before the pipeline starts
//! (ENGINEERING.md 4): capabilities, the interface (from the routing table), the UMEM, the AF_XDP sockets,
//! and on the receiver the XDP program and its maps. `auto` takes the XDP path only where it is expected to
//! beat UDP sockets: every step works, the driver runs XDP natively, and the AF_XDP socket binds in
//! **zero-copy** mode. Copy mode (a veth, most virtual NICs) measured slower than UDP sockets with GSO
//! (2.07 vs 2.40 Gbit/s on a veth at MTU 1500, retransmitting more: docs/decisions/0020), so `auto` takes
//! UDP there. Each end decides for itself by the same rule, and says why ([`NetPick::reason`], the
//! `net_reason` of `--json`); a failure on the way is also said once on stderr. `xdp` takes AF_XDP in any
//! mode and turns the failures into errors.
//!
//! **Who uses what.** The sender sends data through an AF_XDP TX ring and needs no XDP program: its
//! feedback (a few hundred datagrams a second) arrives on the kernel UDP socket that also holds its port.
//! The receiver attaches mover's XDP program, which steers the session's UDP port to one AF_XDP socket per
//! receive queue; it sends feedback through its kernel UDP socket.
//!
//! **Clean-up.** The program is attached through a BPF link (5.9+), which the kernel detaches when the last
//! descriptor closes: at exit, on Ctrl-C, and after `kill -9` alike. Where links are unavailable (or
//! `MOVER_XDP_ATTACH=netlink`), it is attached through netlink and detached on drop and by a SIGINT/SIGTERM
//! handler; a program left behind by a killed mover is recognised by its name ([`PROGRAM_NAME`]) and
//! replaced by the next run. A program that is not mover's is never touched.

use super::caps;
use super::frame::{FlowAddrs, FrameTemplate};
use super::netlink::{self, XdpMode};
use super::xdp_io::{SharedTemplate, XdpSink, XdpSource};
use super::xsk::{BindMode, UmemArea, Xsk, XskOptions, FRAME_SIZE};
use mover_ebpf::program::PROGRAM_NAME;
use mover_ebpf::sys::{self as bpf, LoadedProgram};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `--net`: which data path to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NetChoice {
    /// AF_XDP where it binds zero-copy on a native attach, else UDP (saying why).
    #[default]
    Auto,
    /// AF_XDP or fail with the reason.
    Xdp,
    /// The kernel's UDP sockets.
    Udp,
}

impl std::str::FromStr for NetChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(NetChoice::Auto),
            "xdp" => Ok(NetChoice::Xdp),
            "udp" => Ok(NetChoice::Udp),
            _ => Err(format!("--net takes auto, xdp or udp, not '{s}'")),
        }
    }
}

/// What the XDP path runs on, for `--json` and the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpInfo {
    /// Interface name.
    pub interface: String,
    /// "copy" or "zero-copy".
    pub mode: &'static str,
    /// How the program is attached: "native", "generic", or "none" (a sender sends without one).
    pub attach: &'static str,
    /// AF_XDP sockets (one per receive queue on the receiver).
    pub queues: u32,
    /// Whether the frames sit on huge pages.
    pub huge_pages: bool,
}

/// Frames of each receiving socket's UMEM: every receive batch full (32 x 64) plus as many again on the fill
/// ring, so that the kernel never finds the fill ring empty while the stages hold frames.
pub const RX_FRAMES_PER_QUEUE: usize = 4096;
/// RX ring entries per socket.
const RX_RING: u32 = 2048;
/// How often the sender re-reads the route and neighbour tables.
const NEIGHBOUR_RECHECK: Duration = Duration::from_millis(500);

/// The data path one end of a session takes, and why: `xdp` is the opened XDP path, `None` for UDP sockets.
pub struct NetPick<T> {
    /// The XDP path, when taken.
    pub xdp: Option<T>,
    /// Why, in words, starting with the path's name: "udp: AF_XDP on veth0 is copy mode only (no zero-copy);
    /// UDP sockets are faster there", "xdp: AF_XDP on eth0 binds zero-copy" (`--json`'s `net_reason`).
    pub reason: String,
}

impl<T> NetPick<T> {
    /// The kernel's UDP sockets, for the reason `why`.
    pub fn udp(why: impl std::fmt::Display) -> NetPick<T> {
        NetPick { xdp: None, reason: format!("udp: {why}") }
    }
}

/// The reason `auto` gives for UDP sockets on an interface whose AF_XDP sockets bind only in copy mode.
pub fn copy_mode_reason(interface: &str) -> String {
    format!("AF_XDP on {interface} is copy mode only (no zero-copy); UDP sockets are faster there")
}

/// Why the XDP path is not used: under `--net xdp` an error, under `auto` said once on stderr (something
/// failed on the way) and returned as the UDP path's reason.
fn refuse<T>(choice: NetChoice, why: String) -> Result<NetPick<T>, String> {
    match choice {
        NetChoice::Xdp => Err(format!("--net xdp: {why}")),
        _ => {
            eprintln!("mover: using UDP sockets for data: {why}");
            Ok(NetPick::udp(why))
        }
    }
}

/// The checks both ends make before opening anything: the choice, capabilities (`with_bpf` on the receiver),
/// the datagram size (`datagram`, the receiver's session), the interface towards `peer`, loopback. Returns the
/// interface, or the UDP path with its reason (said once under `auto` when something failed; an error under
/// `xdp`).
fn preflight<T>(
    peer: IpAddr,
    choice: NetChoice,
    with_bpf: bool,
    datagram: Option<usize>,
) -> Result<Result<netlink::LinkInfo, NetPick<T>>, String> {
    if choice == NetChoice::Udp {
        return Ok(Err(NetPick::udp("--net udp")));
    }
    let missing = caps::missing_for_xdp(with_bpf);
    if !missing.is_empty() {
        return refuse(choice, format!("needs {} (run as root)", missing.join(" and "))).map(Err);
    }
    if let Some(d) = datagram.filter(|&d| d > super::xsk::MAX_DATAGRAM) {
        let max = super::xsk::MAX_DATAGRAM;
        let mtu = max + if peer.is_ipv4() { 28 } else { 48 };
        let why = format!(
            "the sender's datagrams of {d} bytes do not fit an AF_XDP frame (at most {max} bytes: push with --mtu \
             {mtu} or less)"
        );
        return refuse(choice, why).map(Err);
    }
    let link = match interface_to(peer) {
        Ok((_, link)) => link,
        Err(e) => return refuse(choice, e).map(Err),
    };
    if link.is_loopback {
        let why = format!("{peer} is on the loopback device, where AF_XDP has nothing to bypass");
        // Not worth a word under `auto`: loopback is where tests and the demo run.
        return match choice {
            NetChoice::Xdp => refuse(choice, why).map(Err),
            _ => Ok(Err(NetPick::udp(why))),
        };
    }
    Ok(Ok(link))
}

/// Why an opened XDP path is used: zero-copy under `auto`, anything under `--net xdp`.
fn xdp_reason(choice: NetChoice, interface: &str, mode: BindMode) -> String {
    match choice {
        NetChoice::Xdp => format!("xdp: --net xdp (AF_XDP on {interface}, {} mode)", mode.name()),
        _ => format!("xdp: AF_XDP on {interface} binds zero-copy"),
    }
}

/// The interface the kernel routes `peer` through, with its details.
fn interface_to(peer: IpAddr) -> Result<(netlink::Route, netlink::LinkInfo), String> {
    let route = netlink::route_to(peer).map_err(|e| format!("no route to {peer}: {e}"))?;
    let link = netlink::link_info(route.oif).map_err(|e| format!("interface {}: {e}", route.oif))?;
    Ok((route, link))
}

/// The sender's XDP path, opened before the session's hello (it bounds the datagram size).
pub struct SenderXdp {
    xsk: Xsk,
    area: Arc<UmemArea>,
    ifindex: u32,
    src_mac: [u8; 6],
    info: XdpInfo,
}

impl SenderXdp {
    /// Opens the AF_XDP socket on the interface towards `peer` with `tx_frames` frames, or explains why not
    /// (UDP and its reason under `auto`, an error under `xdp`). UDP at once for `udp`.
    pub fn open(peer: IpAddr, choice: NetChoice, tx_frames: usize) -> Result<NetPick<SenderXdp>, String> {
        let link = match preflight(peer, choice, false, None)? {
            Ok(link) => link,
            Err(udp) => return Ok(udp),
        };
        let area = UmemArea::new(tx_frames).map_err(|e| e.to_string())?;
        let opts = XskOptions {
            ifindex: link.ifindex,
            queue: 0,
            rx_entries: 0,
            tx_entries: (tx_frames as u32).next_power_of_two(),
            try_zero_copy: true,
            busy_poll_us: None,
        };
        let xsk = match Xsk::open(area.clone(), 0, tx_frames * FRAME_SIZE, &opts) {
            Ok(x) => x,
            Err(e) => return refuse(choice, format!("{}: {e}", link.name)),
        };
        if choice == NetChoice::Auto && xsk.mode() == BindMode::Copy {
            return Ok(NetPick::udp(copy_mode_reason(&link.name)));
        }
        let reason = xdp_reason(choice, &link.name, xsk.mode());
        let info = XdpInfo {
            interface: link.name.clone(),
            mode: xsk.mode().name(),
            attach: "none",
            queues: 1,
            huge_pages: area.huge_pages(),
        };
        Ok(NetPick { xdp: Some(SenderXdp { xsk, area, ifindex: link.ifindex, src_mac: link.mac, info }), reason })
    }

    /// What the path runs on.
    pub fn info(&self) -> &XdpInfo {
        &self.info
    }

    /// Resolves the next hop's MAC for `local` -> `peer` and makes the sink for `batches` batches of
    /// `frames_per_batch` frames, with a watcher that follows route and neighbour changes while it lives.
    pub fn start(
        self,
        local: SocketAddr,
        peer: SocketAddr,
        frames_per_batch: usize,
        batches: usize,
    ) -> Result<(XdpSink, Arc<UmemArea>, NeighbourWatcher), String> {
        let resolve = move || resolve_flow(self.ifindex, self.src_mac, local, peer);
        let addrs = wait_for(Duration::from_secs(3), &resolve)?;
        let shared = SharedTemplate::new(FrameTemplate::new(addrs)?);
        let watcher = NeighbourWatcher::spawn(shared.clone(), resolve);
        let sink = XdpSink::new(self.xsk, shared, 0, frames_per_batch, batches);
        Ok((sink, self.area, watcher))
    }
}

/// Resolves the addresses of a flow from the routing and neighbour tables.
fn resolve_flow(ifindex: u32, src_mac: [u8; 6], local: SocketAddr, peer: SocketAddr) -> Result<FlowAddrs, String> {
    let route = netlink::route_to(peer.ip()).map_err(|e| format!("no route to {}: {e}", peer.ip()))?;
    if route.oif != ifindex {
        return Err(format!("the route to {} moved to interface {}", peer.ip(), route.oif));
    }
    let next_hop = route.gateway.unwrap_or(peer.ip());
    let n = netlink::neighbour(ifindex, next_hop)
        .map_err(|e| format!("neighbour table: {e}"))?
        .ok_or_else(|| format!("no neighbour entry (MAC address) for {next_hop}"))?;
    Ok(FlowAddrs { src_mac, dst_mac: n.mac, src: local, dst: peer })
}

fn wait_for(limit: Duration, resolve: &impl Fn() -> Result<FlowAddrs, String>) -> Result<FlowAddrs, String> {
    let until = Instant::now() + limit;
    loop {
        match resolve() {
            Ok(a) => return Ok(a),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Re-resolves a flow's next hop every [`NEIGHBOUR_RECHECK`] and updates the sink's template when it changes
/// (a failed look-up keeps the old one). Stops when dropped.
pub struct NeighbourWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NeighbourWatcher {
    fn spawn(shared: Arc<SharedTemplate>, resolve: impl Fn() -> Result<FlowAddrs, String> + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mover-neigh".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::park_timeout(NEIGHBOUR_RECHECK);
                    if let Ok(t) = resolve().and_then(FrameTemplate::new) {
                        if shared.update(t) {
                            eprintln!("mover: next hop changed: now {:02x?}", shared.get().addrs().dst_mac);
                        }
                    }
                }
            })
            .ok();
        NeighbourWatcher { stop, thread }
    }
}

impl Drop for NeighbourWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The receiver's XDP path: sockets, program, attachment. Dropping it detaches the program.
pub struct ReceiverXdp {
    source: Option<XdpSource>,
    program: LoadedProgram,
    /// Held only for its `Drop`, which detaches the program.
    _attachment: Attachment,
    info: XdpInfo,
    mode: BindMode,
}

/// How the program is attached; detaches on drop.
enum Attachment {
    /// A BPF link: the kernel detaches when the descriptor closes.
    Link(#[allow(dead_code)] OwnedFd),
    /// Netlink: detached explicitly (and by the signal handler).
    Netlink { ifindex: u32, flags: u32 },
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Attachment::Netlink { ifindex, flags } = *self {
            let _ = netlink::xdp_detach(ifindex, flags, None);
            signal_detach::disarm();
        }
    }
}

/// XDP_FLAGS_* for netlink and links.
const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

impl ReceiverXdp {
    /// Sets up the XDP path for datagrams from `peer` to local UDP port `port`, or explains why not (UDP and
    /// its reason under `auto`, an error under `xdp`). `datagram` is the session's datagram size, which must
    /// fit a frame.
    pub fn open(peer: IpAddr, port: u16, datagram: usize, choice: NetChoice) -> Result<NetPick<ReceiverXdp>, String> {
        let link = match preflight(peer, choice, true, Some(datagram))? {
            Ok(link) => link,
            Err(udp) => return Ok(udp),
        };
        match Self::set_up(&link, port, choice) {
            Ok(Some(x)) => {
                let reason = xdp_reason(choice, &link.name, x.mode);
                Ok(NetPick { xdp: Some(x), reason })
            }
            // `auto` on a copy-mode interface: a choice, not a failure, so nothing on stderr.
            Ok(None) => Ok(NetPick::udp(copy_mode_reason(&link.name))),
            Err(e) => refuse(choice, format!("{}: {e}", link.name)),
        }
    }

    /// Opens the sockets, loads and attaches the program; `None` when `auto` finds the first socket bound in
    /// copy mode (before anything is attached).
    fn set_up(link: &netlink::LinkInfo, port: u16, choice: NetChoice) -> Result<Option<ReceiverXdp>, String> {
        replace_stale_program(link)?;
        let queues = rx_queue_count(link).max(1);
        let program = bpf::load_classifier(queues).map_err(|e| format!("loading the XDP program: {e}"))?;
        let area = UmemArea::new(RX_FRAMES_PER_QUEUE * queues as usize).map_err(|e| e.to_string())?;
        let mut sockets = Vec::new();
        for q in 0..queues {
            let opts = XskOptions {
                ifindex: link.ifindex,
                queue: q,
                rx_entries: RX_RING,
                tx_entries: 0,
                try_zero_copy: true,
                busy_poll_us: busy_poll_from_env(),
            };
            let start = q as usize * RX_FRAMES_PER_QUEUE * FRAME_SIZE;
            let xsk =
                Xsk::open(area.clone(), start, RX_FRAMES_PER_QUEUE * FRAME_SIZE, &opts).map_err(|e| e.to_string())?;
            if choice == NetChoice::Auto && xsk.mode() == BindMode::Copy {
                return Ok(None);
            }
            program.set_xsk(q, xsk.raw_fd()).map_err(|e| format!("XSKMAP: {e}"))?;
            sockets.push(xsk);
        }
        program.add_port(port).map_err(|e| format!("port map: {e}"))?;
        let mode = sockets[0].mode();
        let (attachment, attach) = attach(&program, link, choice)?;
        let info =
            XdpInfo { interface: link.name.clone(), mode: mode.name(), attach, queues, huge_pages: area.huge_pages() };
        let source = XdpSource::new(sockets, port, |k| {
            let start = (k * RX_FRAMES_PER_QUEUE * FRAME_SIZE) as u64;
            (0..RX_FRAMES_PER_QUEUE as u64).map(|f| start + f * FRAME_SIZE as u64).collect()
        })
        .map_err(|e| e.to_string())?;
        Ok(Some(ReceiverXdp { source: Some(source), program, _attachment: attachment, info, mode }))
    }

    /// What the path runs on.
    pub fn info(&self) -> &XdpInfo {
        &self.info
    }

    /// The receive stage's source (taken once).
    pub fn take_source(&mut self) -> Option<XdpSource> {
        self.source.take()
    }

    /// The program's counters: redirected, matched without a socket, passed.
    pub fn counters(&self) -> [u64; 3] {
        self.program.stats().unwrap_or([0; 3])
    }
}

fn busy_poll_from_env() -> Option<u32> {
    std::env::var("MOVER_XDP_BUSY_POLL_US").ok().and_then(|v| v.parse().ok())
}

/// Receive queues in use on the interface (`ETHTOOL_GCHANNELS`; 1 if the driver does not say).
fn rx_queue_count(link: &netlink::LinkInfo) -> u32 {
    ethtool_channels(&link.name).unwrap_or(1)
}

/// Combined + RX channels of `name` from ethtool, if the driver reports them.
fn ethtool_channels(name: &str) -> Option<u32> {
    // An unsigned long on glibc, an int on musl: `libc::Ioctl` is whichever the target takes.
    const SIOCETHTOOL: libc::Ioctl = 0x8946;
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    let mut ch = Channels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    // Safety: ifreq is plain old data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return None;
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = &mut ch as *mut Channels as *mut libc::c_char;
    // Safety: plain socket call; the result is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // Safety: SIOCETHTOOL reads `ifr` and writes `ch`, both alive for the call.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut ifr) };
    // Safety: `fd` is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return None;
    }
    let n = ch.combined_count + ch.rx_count;
    (n > 0).then_some(n)
}

/// If the interface carries an XDP program of mover's that no live process holds (attached through
/// netlink by a run that was killed), removes it. A program of another tool, or one held by a link (a live
/// mover), is an error: mover never touches it.
fn replace_stale_program(link: &netlink::LinkInfo) -> Result<(), String> {
    let Some(id) = link.xdp.prog_id else { return Ok(()) };
    let name = bpf::prog_get_fd_by_id(id).and_then(|fd| bpf::prog_info(fd.as_fd())).map(|i| i.name);
    let name = name.map_err(|e| format!("inspecting XDP program {id} on {}: {e}", link.name))?;
    if name != PROGRAM_NAME {
        return Err(format!(
            "interface busy: another XDP program ('{name}', id {id}) is attached; mover leaves it alone (detach it \
             with `ip link set dev {} xdp off` if it is not needed)",
            link.name
        ));
    }
    // Links carry an ifindex but no namespace, so match them by the program attached here (ids are global).
    let held = bpf::xdp_links_on(link.ifindex).map_err(|e| format!("listing XDP links: {e}"))?;
    if held.iter().any(|&(_, prog)| prog == id) {
        return Err(format!("interface busy: another mover process or session receives through XDP on {}", link.name));
    }
    let flags = match link.xdp.mode {
        Some(XdpMode::Generic) => XDP_FLAGS_SKB_MODE,
        Some(XdpMode::Native) => XDP_FLAGS_DRV_MODE,
        _ => 0,
    };
    netlink::xdp_detach(link.ifindex, flags, None).map_err(|e| format!("removing a stale mover program: {e}"))?;
    eprintln!("mover: removed a stale XDP program of mover's (id {id}) from {}", link.name);
    Ok(())
}

/// Attaches the program natively or, under `--net xdp`, generically when the driver cannot; through a link,
/// or netlink where links are missing or `MOVER_XDP_ATTACH=netlink`.
fn attach(
    program: &LoadedProgram,
    link: &netlink::LinkInfo,
    choice: NetChoice,
) -> Result<(Attachment, &'static str), String> {
    let use_netlink = std::env::var("MOVER_XDP_ATTACH").is_ok_and(|v| v == "netlink");
    let prog = program.prog.as_raw_fd();
    let prog_borrowed = program.prog.as_fd();
    let mut modes = vec![(XDP_FLAGS_DRV_MODE, "native")];
    if choice == NetChoice::Xdp {
        modes.push((XDP_FLAGS_SKB_MODE, "generic"));
    }
    let mut why = Vec::new();
    for (flags, name) in modes {
        if !use_netlink {
            if let Ok(fd) = bpf::link_create_xdp(prog_borrowed, link.ifindex, flags) {
                return Ok((Attachment::Link(fd), name));
            }
            // A kernel without XDP links (< 5.9) attaches through netlink; on any other the netlink attempt
            // fails the same way, but with the driver's own explanation (extack), which is worth showing.
        }
        let nl_flags = flags | XDP_FLAGS_UPDATE_IF_NOEXIST;
        match netlink::xdp_attach(link.ifindex, prog, nl_flags, None) {
            Ok(()) => {
                signal_detach::arm(link.ifindex, flags);
                return Ok((Attachment::Netlink { ifindex: link.ifindex, flags }, name));
            }
            Err(e) => why.push(format!("{name}: {e}")),
        }
    }
    let hint = if choice == NetChoice::Auto { " (--net xdp would also try generic mode)" } else { "" };
    Err(format!("attaching the XDP program failed: {}{hint}", why.join("; ")))
}

/// Detaches a netlink-attached program when SIGINT or SIGTERM ends the process, with only async-signal-safe
/// calls (a prebuilt request, sent with socket/sendto/close), then dies of the signal as it would have.
mod signal_detach {
    use super::netlink::{self, PrebuiltRequest};
    use std::sync::atomic::{AtomicPtr, Ordering};

    static REQUEST: AtomicPtr<PrebuiltRequest> = AtomicPtr::new(std::ptr::null_mut());

    extern "C" fn on_signal(sig: libc::c_int) {
        let p = REQUEST.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // Safety: `p` came from Box::into_raw in `arm` and is leaked on purpose (never freed while armed).
            unsafe { (*p).send_unchecked() };
        }
        // Safety: restoring the default action and re-raising are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    /// Installs the handlers for `ifindex`.
    pub fn arm(ifindex: u32, flags: u32) {
        let req = Box::into_raw(Box::new(netlink::xdp_detach_request(ifindex, flags)));
        let old = REQUEST.swap(req, Ordering::AcqRel);
        if !old.is_null() {
            // Safety: `old` came from Box::into_raw and is no longer reachable by the handler.
            drop(unsafe { Box::from_raw(old) });
        }
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Safety: installing a handler that only does async-signal-safe work.
        unsafe {
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
    }

    /// The program was detached normally: the handler has nothing to do.
    pub fn disarm() {
        let old = REQUEST.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !old.is_null() {
            // Safety: as in `arm`.
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

/// Whether an AF_XDP socket can be opened on queue 0 of `ifindex`, and in which mode: `Ok("zero-copy")` or
/// `Ok("copy")`, or why not. For `mover doctor`: it opens a transmit-only socket, as the sender does, with a
/// small UMEM, and closes it again; no XDP program is attached and nothing on the interface is changed.
pub fn probe_bind_mode(ifindex: u32) -> Result<&'static str, String> {
    let missing = caps::missing_for_xdp(false);
    if !missing.is_empty() {
        return Err(format!("needs {} (run as root)", missing.join(" and ")));
    }
    const FRAMES: usize = 64;
    let area = UmemArea::new(FRAMES).map_err(|e| e.to_string())?;
    let opts = XskOptions {
        ifindex,
        queue: 0,
        rx_entries: 0,
        tx_entries: FRAMES as u32,
        try_zero_copy: true,
        busy_poll_us: None,
    };
    let xsk = Xsk::open(area, 0, FRAMES * FRAME_SIZE, &opts).map_err(|e| e.to_string())?;
    Ok(xsk.mode().name())
}
