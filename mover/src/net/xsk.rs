//! AF_XDP sockets over libc: the UMEM, its fill and completion rings, and the RX and TX rings.
//!
//! **Ownership.** Every UMEM frame has exactly one owner at a time, named by its address (offset in the
//! UMEM): mover (a send batch, a receive batch, or a free list) or the kernel (between being put on the fill
//! or TX ring and coming back on the RX or completion ring). The ring types here only move addresses; the
//! stages that use them keep the books (see `pipeline::pace` and `pipeline::recv`).
//!
//! **Rings.** Each ring is a single-producer single-consumer queue shared with the kernel. The producer and
//! consumer indices are cached and published once per batch (ENGINEERING.md 7); the Acquire/Release pairs
//! are commented where they are.
//!
//! **One mapping, several sockets.** [`UmemArea`] is one anonymous mapping; each socket registers its own
//! slice of it, so a receive batch can name frames of several queues' sockets by one offset.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Bytes per UMEM frame. 4096 is the largest chunk a UMEM takes without huge-page-backed chunks and the
/// smallest that holds a 1500-byte-MTU frame with headroom; see [`MAX_DATAGRAM`].
pub const FRAME_SIZE: usize = 4096;
/// The kernel keeps this much headroom in front of a received frame (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: usize = 256;
/// Largest UDP payload the XDP path carries: what fits a received frame after the kernel's headroom, an
/// Ethernet header, two VLAN tags, an IPv6 header and a UDP header. Jumbo-frame links carry datagrams of at
/// most this size on the XDP path (multi-buffer AF_XDP would lift it; see hardware-notes/xdp.md).
pub const MAX_DATAGRAM: usize = FRAME_SIZE - XDP_PACKET_HEADROOM - 14 - 8 - 40 - 8;

// Socket options for busy polling (linux/asm-generic/socket.h), not all in the libc crate.
const SO_BUSY_POLL: i32 = 46;
const SO_PREFER_BUSY_POLL: i32 = 69;
const SO_BUSY_POLL_BUDGET: i32 = 70;

/// An anonymous, page-aligned, populated memory area for UMEMs, unmapped on drop.
#[derive(Debug)]
pub struct UmemArea {
    base: *mut u8,
    len: usize,
    huge: bool,
}

// Safety: the area is plain memory; who may touch which frame is decided by the ownership rule above, not
// by which thread holds the handle.
unsafe impl Send for UmemArea {}
// Safety: as above; shared handles only hand out raw pointers.
unsafe impl Sync for UmemArea {}

impl UmemArea {
    /// Maps `frames` frames of [`FRAME_SIZE`], on 2 MiB huge pages when the system has them reserved (fewer
    /// TLB misses), else on ordinary pages.
    pub fn new(frames: usize) -> io::Result<Arc<UmemArea>> {
        assert!(frames > 0, "an empty UMEM");
        let len = frames * FRAME_SIZE;
        let huge_len = len.next_multiple_of(2 << 20);
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        // Safety: an anonymous mapping with no address hint touches no existing memory; the result is checked.
        let p = unsafe { libc::mmap(ptr::null_mut(), huge_len, prot, flags | libc::MAP_HUGETLB, -1, 0) };
        if p != libc::MAP_FAILED {
            return Ok(Arc::new(UmemArea { base: p as *mut u8, len: huge_len, huge: true }));
        }
        // Safety: as above.
        let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::other(format!(
                "mapping {} MiB for AF_XDP frames: {}",
                len >> 20,
                io::Error::last_os_error()
            )));
        }
        Ok(Arc::new(UmemArea { base: p as *mut u8, len, huge: false }))
    }

    /// First byte of the area.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true (an area has at least one frame); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the area sits on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // Safety: `base`/`len` are exactly the mapping made in `new`, and every socket registered on it holds
        // an `Arc` to this area, so none is alive any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// One mmap'ed ring shared with the kernel, unmapped on drop.
struct RingMap {
    base: *mut u8,
    len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut u8,
    size: u32,
}

impl RingMap {
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, entries: u32, desc_size: usize, pgoff: i64) -> io::Result<Self> {
        let len = off.desc as usize + entries as usize * desc_size;
        // Safety: maps the ring the kernel set up for this socket at `pgoff`; length and offsets come from
        // XDP_MMAP_OFFSETS; the result is checked.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let b = p as *mut u8;
        // Safety: the offsets lie inside the mapping (the kernel reports them for it); the index fields are
        // u32s the kernel accesses atomically, aligned by the kernel's layout.
        unsafe {
            Ok(RingMap {
                base: b,
                len,
                producer: b.add(off.producer as usize) as *const AtomicU32,
                consumer: b.add(off.consumer as usize) as *const AtomicU32,
                flags: b.add(off.flags as usize) as *const AtomicU32,
                descs: b.add(off.desc as usize),
                size: entries,
            })
        }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // Safety: exactly the mapping made in `map`; the ring structs that point into it are dropped with it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The user-space producer end of a ring (fill or TX).
pub struct ProducerRing {
    map: RingMap,
    cached_prod: u32,
    cached_cons: u32,
    desc_bytes: usize,
}

impl ProducerRing {
    /// Free entries, refreshing the kernel's consumer index only if fewer than `want` look free.
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.map.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        // Acquire: pairs with the kernel's release of the consumer index after it read the descriptors, so
        // the entries it gave back may be overwritten.
        // Safety: `consumer` points into the live mapping.
        self.cached_cons = unsafe { (*self.map.consumer).load(Ordering::Acquire) };
        self.map.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Entry `i` past the cached producer index (not yet visible to the kernel). The caller has checked
    /// [`free`](Self::free).
    #[inline]
    fn slot(&mut self, i: u32) -> *mut u8 {
        let idx = self.cached_prod.wrapping_add(i) & (self.map.size - 1);
        // Safety (of the pointer arithmetic): idx < size, so the entry lies inside the descriptor array.
        unsafe { self.map.descs.add(idx as usize * self.desc_bytes) }
    }

    /// Makes `n` written entries visible to the kernel.
    #[inline]
    pub fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the descriptors written before become visible before the new producer index.
        // Safety: `producer` points into the live mapping.
        unsafe { (*self.map.producer).store(self.cached_prod, Ordering::Release) };
    }

    /// Whether the kernel asked to be woken up (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        // Safety: `flags` points into the live mapping.
        unsafe { (*self.map.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }
}

/// The user-space consumer end of a ring (completion or RX).
pub struct ConsumerRing {
    map: RingMap,
    cached_prod: u32,
    cached_cons: u32,
    desc_bytes: usize,
}

impl ConsumerRing {
    /// Entries ready, refreshing the kernel's producer index when none are cached.
    pub fn ready(&mut self) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready > 0 {
            return ready;
        }
        // Acquire: pairs with the kernel's release of the producer index, so the entries it wrote are seen.
        // Safety: `producer` points into the live mapping.
        self.cached_prod = unsafe { (*self.map.producer).load(Ordering::Acquire) };
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    #[inline]
    fn entry(&self, i: u32) -> *const u8 {
        let idx = self.cached_cons.wrapping_add(i) & (self.map.size - 1);
        // Safety (of the pointer arithmetic): idx < size.
        unsafe { self.map.descs.add(idx as usize * self.desc_bytes) }
    }

    /// Gives `n` read entries back to the kernel.
    #[inline]
    pub fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the entries happen before the kernel may overwrite them.
        // Safety: `consumer` points into the live mapping.
        unsafe { (*self.map.consumer).store(self.cached_cons, Ordering::Release) };
    }
}

/// How the socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The kernel copies between its buffers and the UMEM.
    Copy,
    /// The NIC reads and writes the UMEM directly.
    ZeroCopy,
}

impl BindMode {
    /// "copy" or "zero-copy", as `--json` reports it.
    pub fn name(self) -> &'static str {
        match self {
            BindMode::Copy => "copy",
            BindMode::ZeroCopy => "zero-copy",
        }
    }
}

/// What to open.
#[derive(Clone, Copy, Debug)]
pub struct XskOptions {
    /// Interface index.
    pub ifindex: u32,
    /// Queue of the interface.
    pub queue: u32,
    /// Entries of the RX ring and the fill ring (a power of two; 0 = no RX ring).
    pub rx_entries: u32,
    /// Entries of the TX ring and the completion ring (a power of two; 0 = no TX ring).
    pub tx_entries: u32,
    /// Try zero-copy first and fall back to copy mode.
    pub try_zero_copy: bool,
    /// Busy-poll budget in microseconds (`SO_BUSY_POLL` with `SO_PREFER_BUSY_POLL`); `None` = interrupts.
    pub busy_poll_us: Option<u32>,
}

/// Statistics the kernel keeps per socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than a full ring or an empty fill ring.
    pub rx_dropped: u64,
    /// Descriptors that were invalid.
    pub rx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
}

/// One AF_XDP socket bound to one queue, with its own UMEM registration on a slice of a [`UmemArea`].
///
/// Frame addresses at this API are offsets in the *area*, so that several sockets' frames can be named
/// alike; the socket translates them to offsets in its own UMEM.
pub struct Xsk {
    fd: OwnedFd,
    area: Arc<UmemArea>,
    umem_start: u64,
    umem_len: u64,
    fill: Option<ProducerRing>,
    comp: Option<ConsumerRing>,
    rx: Option<ConsumerRing>,
    tx: Option<ProducerRing>,
    mode: BindMode,
    busy_poll: bool,
}

// Safety: the rings' pointers point into mappings this socket owns; the socket is used by one thread at a
// time (it is moved into the stage that owns it).
unsafe impl Send for Xsk {}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk").field("fd", &self.fd).field("mode", &self.mode).finish()
    }
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // Safety: `value` is a valid T for the duration of the call and its size is passed along.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, value as *const T as *const libc::c_void, mem::size_of::<T>() as u32)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn locked_memory_hint() -> String {
    // Safety: getrlimit writes one rlimit struct.
    let mut lim: libc::rlimit = unsafe { mem::zeroed() };
    // Safety: as above; `lim` is valid for writes.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let cur = if lim.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", lim.rlim_cur >> 10)
    };
    format!(
        "the locked-memory limit (ulimit -l) is {cur} and the process lacks CAP_IPC_LOCK; raise it (ulimit -l \
         unlimited, or LimitMEMLOCK=infinity in a systemd unit)"
    )
}

impl Xsk {
    /// Opens a socket on `opts.ifindex`/`opts.queue` whose UMEM is the `umem_len` bytes of `area` starting
    /// at `umem_start` (both multiples of [`FRAME_SIZE`]). Tries zero-copy first when asked, then copy mode.
    pub fn open(area: Arc<UmemArea>, umem_start: usize, umem_len: usize, opts: &XskOptions) -> io::Result<Xsk> {
        assert!(umem_start % FRAME_SIZE == 0 && umem_len % FRAME_SIZE == 0 && umem_len > 0);
        assert!(umem_start + umem_len <= area.len(), "UMEM slice outside its area");
        assert!(opts.rx_entries.is_power_of_two() || opts.rx_entries == 0);
        assert!(opts.tx_entries.is_power_of_two() || opts.tx_entries == 0);
        if opts.try_zero_copy {
            match Self::open_mode(&area, umem_start, umem_len, opts, BindMode::ZeroCopy) {
                Ok(x) => return Ok(x),
                // No zero-copy support in the driver (EOPNOTSUPP), or for this queue or configuration
                // (EINVAL): copy mode works everywhere.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) => {}
                Err(e) => return Err(e),
            }
        }
        Self::open_mode(&area, umem_start, umem_len, opts, BindMode::Copy)
    }

    fn open_mode(
        area: &Arc<UmemArea>,
        umem_start: usize,
        umem_len: usize,
        opts: &XskOptions,
        mode: BindMode,
    ) -> io::Result<Xsk> {
        let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("AF_XDP {what}: {e}"));
        // Safety: plain system call with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) { " (needs CAP_NET_RAW, or root)" } else { "" };
            return Err(io::Error::new(e.kind(), format!("creating an AF_XDP socket: {e}{hint}")));
        }
        // Safety: `fd` was just returned by socket(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let reg = libc::xdp_umem_reg {
            // Safety (of the pointer arithmetic): the slice lies inside the area (asserted by `open`).
            addr: unsafe { area.base().add(umem_start) } as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        if let Err(e) = setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg) {
            if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::ENOMEM) | Some(libc::EPERM)) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("registering {} MiB of AF_XDP frames: {e}: {}", umem_len >> 20, locked_memory_hint()),
                ));
            }
            return Err(ctx("UMEM registration", e));
        }
        // Room on the fill ring for every frame of the UMEM, so that returning frames never finds it full.
        let fill_entries = if opts.rx_entries > 0 { ((umem_len / FRAME_SIZE) as u32).next_power_of_two() } else { 1 };
        let comp_entries = opts.tx_entries.max(1).next_power_of_two();
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &fill_entries).map_err(|e| ctx("fill ring", e))?;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING, &comp_entries)
            .map_err(|e| ctx("completion ring", e))?;
        if opts.rx_entries > 0 {
            setsockopt(raw, libc::SOL_XDP, libc::XDP_RX_RING, &opts.rx_entries).map_err(|e| ctx("RX ring", e))?;
        }
        if opts.tx_entries > 0 {
            setsockopt(raw, libc::SOL_XDP, libc::XDP_TX_RING, &opts.tx_entries).map_err(|e| ctx("TX ring", e))?;
        }
        // Safety: xdp_mmap_offsets is plain old data; all-zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // Safety: `off`/`len` are valid for writes and `len` is `off`'s size.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            return Err(ctx("ring offsets", io::Error::last_os_error()));
        }
        let addr_bytes = mem::size_of::<u64>();
        let desc_bytes = mem::size_of::<libc::xdp_desc>();
        let fill = RingMap::map(raw, &off.fr, fill_entries, addr_bytes, libc::XDP_UMEM_PGOFF_FILL_RING as i64)
            .map_err(|e| ctx("mapping the fill ring", e))?;
        let comp = RingMap::map(raw, &off.cr, comp_entries, addr_bytes, libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64)
            .map_err(|e| ctx("mapping the completion ring", e))?;
        let rx = if opts.rx_entries > 0 {
            Some(
                RingMap::map(raw, &off.rx, opts.rx_entries, desc_bytes, libc::XDP_PGOFF_RX_RING)
                    .map_err(|e| ctx("mapping the RX ring", e))?,
            )
        } else {
            None
        };
        let tx = if opts.tx_entries > 0 {
            Some(
                RingMap::map(raw, &off.tx, opts.tx_entries, desc_bytes, libc::XDP_PGOFF_TX_RING)
                    .map_err(|e| ctx("mapping the TX ring", e))?,
            )
        } else {
            None
        };
        if let Some(us) = opts.busy_poll_us {
            // Best effort: without these the socket still works, interrupt-driven.
            let _ = setsockopt(raw, libc::SOL_SOCKET, SO_PREFER_BUSY_POLL, &1i32);
            let _ = setsockopt(raw, libc::SOL_SOCKET, SO_BUSY_POLL, &(us as i32));
            let _ = setsockopt(raw, libc::SOL_SOCKET, SO_BUSY_POLL_BUDGET, &64i32);
        }
        let mode_flag = match mode {
            BindMode::Copy => libc::XDP_COPY,
            BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
        };
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: mode_flag | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: opts.ifindex,
            sxdp_queue_id: opts.queue,
            sxdp_shared_umem_fd: 0,
        };
        // Safety: `sxdp` is a valid sockaddr_xdp and its size is passed.
        let rc = unsafe {
            libc::bind(
                raw,
                &sxdp as *const libc::sockaddr_xdp as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_xdp>() as u32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if mode == BindMode::ZeroCopy {
                // Bare errno: `open` decides whether copy mode is worth a try.
                return Err(e);
            }
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => " (another AF_XDP socket is bound to this queue)",
                Some(libc::EINVAL) if mode == BindMode::Copy => " (no such queue on this interface?)",
                _ => "",
            };
            return Err(io::Error::new(
                e.kind(),
                format!("binding AF_XDP to queue {} ({} mode): {e}{hint}", opts.queue, mode.name()),
            ));
        }
        let prod = |map: RingMap, desc_bytes| ProducerRing { map, cached_prod: 0, cached_cons: 0, desc_bytes };
        let cons = |map: RingMap, desc_bytes| ConsumerRing { map, cached_prod: 0, cached_cons: 0, desc_bytes };
        let mut x = Xsk {
            fd,
            area: area.clone(),
            umem_start: umem_start as u64,
            umem_len: umem_len as u64,
            fill: Some(prod(fill, addr_bytes)),
            comp: Some(cons(comp, addr_bytes)),
            rx: rx.map(|m| cons(m, desc_bytes)),
            tx: tx.map(|m| prod(m, desc_bytes)),
            mode,
            busy_poll: opts.busy_poll_us.is_some(),
        };
        // The kernel's producer/consumer start at 0, but read them anyway: cheap, and exact.
        if let Some(f) = x.fill.as_mut() {
            f.free(u32::MAX);
        }
        if let Some(t) = x.tx.as_mut() {
            t.free(u32::MAX);
        }
        Ok(x)
    }

    /// How the socket was bound.
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// The socket's descriptor (for the XSKMAP).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The area the frames live in.
    pub fn area(&self) -> &Arc<UmemArea> {
        &self.area
    }

    /// Whether `area_offset` names a frame of this socket's UMEM.
    pub fn owns(&self, area_offset: u64) -> bool {
        area_offset >= self.umem_start && area_offset < self.umem_start + self.umem_len
    }

    // ---- TX ----

    /// Free TX ring entries (0 without a TX ring).
    pub fn tx_free(&mut self, want: u32) -> u32 {
        self.tx.as_mut().map_or(0, |t| t.free(want))
    }

    /// Writes TX descriptor `i` (counted from the next free one): `len` bytes at `area_offset`.
    #[inline]
    pub fn tx_write(&mut self, i: u32, area_offset: u64, len: u32) {
        debug_assert!(self.owns(area_offset) && area_offset + len as u64 <= self.umem_start + self.umem_len);
        let umem_addr = area_offset - self.umem_start;
        let tx = self.tx.as_mut().expect("tx_write on a socket without a TX ring");
        let p = tx.slot(i) as *mut libc::xdp_desc;
        // Safety: `slot` points at a descriptor inside the TX ring that the caller checked is free.
        unsafe { ptr::write(p, libc::xdp_desc { addr: umem_addr, len, options: 0 }) };
    }

    /// Hands `n` written TX descriptors to the kernel and kicks it if it asked (always, in copy mode).
    pub fn tx_submit(&mut self, n: u32) -> io::Result<()> {
        let tx = self.tx.as_mut().expect("tx_submit on a socket without a TX ring");
        tx.submit(n);
        if tx.needs_wakeup() || self.mode == BindMode::Copy {
            self.kick_tx()?;
        }
        Ok(())
    }

    /// Asks the kernel to process the TX ring. A busy kernel (`EAGAIN`, `EBUSY`, `ENOBUFS`) is not an error:
    /// the descriptors stay queued and the next kick sends them.
    pub fn kick_tx(&self) -> io::Result<()> {
        // Safety: a zero-length send with no buffer and no address is how AF_XDP is kicked.
        let rc = unsafe { libc::sendto(self.fd.as_raw_fd(), ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
        if rc >= 0 {
            return Ok(());
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(()),
            _ => Err(io::Error::other(format!("AF_XDP TX: {}", io::Error::last_os_error()))),
        }
    }

    /// Takes up to `max` completed TX frames off the completion ring, calling `done` with each area offset.
    pub fn complete(&mut self, max: u32, mut done: impl FnMut(u64)) -> u32 {
        let start = self.umem_start;
        let comp = self.comp.as_mut().expect("socket without completion ring");
        let n = comp.ready().min(max);
        for i in 0..n {
            // Safety: entries below `ready` were written by the kernel and are ours until `release`.
            let addr = unsafe { ptr::read(comp.entry(i) as *const u64) };
            done(addr + start);
        }
        if n > 0 {
            comp.release(n);
        }
        n
    }

    // ---- RX ----

    /// Puts frames (area offsets) on the fill ring; returns how many fit.
    pub fn fill(&mut self, frames: &[u64]) -> usize {
        let start = self.umem_start;
        let fill = self.fill.as_mut().expect("socket without fill ring");
        let n = fill.free(frames.len() as u32).min(frames.len() as u32);
        for (i, &f) in frames[..n as usize].iter().enumerate() {
            debug_assert!(f >= start && f < start + self.umem_len && (f - start) % FRAME_SIZE as u64 == 0);
            // Safety: entry i < free is ours to write until `submit`.
            unsafe { ptr::write(fill.slot(i as u32) as *mut u64, f - start) };
        }
        if n > 0 {
            fill.submit(n);
        }
        n as usize
    }

    /// Takes up to `max` received frames off the RX ring, calling `got(area_offset_of_frame, data_offset,
    /// len)` for each: the frame's data starts `data_offset` bytes into the area. Returns the count.
    pub fn receive(&mut self, max: u32, mut got: impl FnMut(u64, u64, u32)) -> u32 {
        let start = self.umem_start;
        let rx = self.rx.as_mut().expect("receive on a socket without an RX ring");
        let n = rx.ready().min(max);
        for i in 0..n {
            // Safety: entries below `ready` were written by the kernel and are ours until `release`.
            let d = unsafe { ptr::read(rx.entry(i) as *const libc::xdp_desc) };
            let data = d.addr + start;
            let frame = data - data % FRAME_SIZE as u64;
            got(frame, data, d.len);
        }
        if n > 0 {
            rx.release(n);
        }
        n
    }

    /// Waits up to `timeout_ms` for received frames (`poll`), which is also the fill ring's wake-up; with
    /// busy polling, a non-blocking receive call that runs the driver's poll loop instead.
    pub fn wait_rx(&self, timeout_ms: i32) {
        if self.busy_poll {
            // Safety: a zero-length non-blocking receive with no buffer drives busy polling.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            return;
        }
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // Safety: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> XskStats {
        // Safety: xdp_statistics is plain old data; all-zero is valid.
        let mut s: libc::xdp_statistics = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // Safety: `s`/`len` are valid for writes and `len` is `s`'s size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                &mut s as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            return XskStats::default();
        }
        XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_invalid_descs: s.tx_invalid_descs,
        }
    }
}
