//! The forwarding loop: one thread, two directions, each reading frames from one socket, asking its [`Link`]
//! when they leave, and writing them to the other socket at that time.
//!
//! One pass of the loop: receive a batch on each side, transmit everything due, then sleep until the next
//! release. Each frame is dated by the kernel's arrival stamp, not by when the loop got to it, so the loop may
//! read late without adding delay. Sleeping is coarse on purpose: frames due within half a tick of now leave
//! together, because the kernel cannot time sleeps shorter than ~23 us anyway (MACHINE-NOTES.md, "Timers"), and
//! a sleep shorter than the configured delay does not wake for arriving frames (none of them can be due before
//! it ends), so they are read in one batch at the next tick. At 1 Gbit/s of 1514-byte frames that is a wake-up
//! every 25-50 us handling a few frames each, instead of one wake-up per frame. The price: a frame may leave up
//! to half a tick early, or late by the sleep's overshoot (learned and subtracted, see `learn_oversleep`). The
//! bottleneck's rate is unaffected: departures are computed, not observed.

use crate::afpacket::{receive_stamp_ns, PacketSocket};
use crate::args::Config;
use crate::link::{Link, LinkParams, Verdict};
use crate::pool::{DescRing, FrameDesc, FramePool, NO_SLOT, SPILL_BYTES};
use crate::rng::{Probability, Rng};
use crate::stats::{DirectionStats, LatenessHistogram};
use std::io;
use std::os::fd::RawFd;

/// Frames per recvmmsg/sendmmsg call.
pub const BATCH: usize = 64;

/// Receive batches per side per pass while the sockets keep returning full batches, before transmitting: bounds
/// how long due frames wait behind a flood of arrivals.
const RX_ROUNDS: usize = 4;

/// Waits shorter than this are spun instead of slept: a sleep would overshoot them several times over.
const SPIN_NS: u64 = 5_000;

/// The longest sleep that leaves arriving frames in the socket: 1 ms is 300 KB at 2.5 Gbit/s, far inside the
/// socket's receive buffer.
const MAX_RX_COALESCE_NS: u64 = 1_000_000;

/// Overshoots beyond this (a stall, not a timer's lateness) count as this much in the estimate.
const MAX_OVERSLEEP_NS: u64 = 500_000;

/// How often a loop that never sleeps (busy-poll, or a flood) checks for a stop request.
const STOP_CHECK_NS: u64 = 1_000_000;

/// Spill slots beyond the ones armed in the receive batches: oversize frames that may wait at once.
const SPILL_IN_FLIGHT: u32 = 64;

/// The rate assumed when sizing the pool for an unlimited link: above what this forwarder moves on the
/// machines it was measured on (MACHINE-NOTES.md), so the pool is not the limit.
const UNLIMITED_RATE_FOR_SIZING_BITS_PER_S: u64 = 5_000_000_000;

/// Extra time frames are assumed to wait beyond the configured delays: scheduling stalls of the forwarder.
const STALL_MARGIN_NS: u64 = 5_000_000;

/// The pool's cap: virtual memory (touched only as far as traffic needs), but bounded all the same.
const POOL_MAX_BYTES: u64 = 1 << 30;

/// Sizes the frame pool from the configuration: every frame that can be in flight in both directions at once,
/// i.e. rate x (delay + jitter + reorder delay + margin) plus a full queue, counted in full-size frames (of at
/// most 1514 bytes: a jumbo-frame link still carries 1500-byte traffic) and then doubled for smaller ones, plus
/// the slots armed in the receive batches.
pub fn default_pool_frames(cfg: &Config, mtu: u32, slot_bytes: usize) -> u32 {
    let frame_bytes = (mtu as u64 + 14).min(1514);
    let rate = if cfg.rate_bits_per_s == 0 { UNLIMITED_RATE_FOR_SIZING_BITS_PER_S } else { cfg.rate_bits_per_s };
    let hold_ns = cfg.delay_ns + cfg.jitter_ns + cfg.reorder_delay_ns + cfg.tick_ns + STALL_MARGIN_NS;
    let in_flight_bytes = (rate as u128 * hold_ns as u128 / 8_000_000_000) as u64 + cfg.queue_bytes().unwrap_or(0);
    let per_direction = 2 * (in_flight_bytes / frame_bytes + 1);
    let wanted = 2 * per_direction + 2 * BATCH as u64 + 1024;
    let cap = POOL_MAX_BYTES / slot_bytes as u64;
    wanted.min(cap) as u32
}

/// The small slot size for an MTU: the frame (MTU + 14-byte Ethernet header + a 4-byte VLAN tag), rounded up to
/// whole cache lines.
pub fn slot_bytes_for_mtu(mtu: u32) -> usize {
    (mtu as usize + 18).div_ceil(64) * 64
}

/// The monotonic clock in nanoseconds: the time base of every release.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: ts is valid for writes; the clocks used here always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Both directions, their sockets and the shared frame pool.
pub struct Forwarder {
    sock_a: PacketSocket,
    sock_b: PacketSocket,
    pool: FramePool,
    forward: Direction,
    reverse: Direction,
    tick_ns: u64,
    /// Sleeps up to this long do not wake for arriving frames (see `run`).
    rx_coalesce_ns: u64,
    /// How much later than asked a sleep usually ends (see `learn_oversleep`).
    oversleep_ns: u64,
}

impl Forwarder {
    /// Opens both interfaces and allocates everything the loop will use.
    pub fn open(cfg: &Config) -> io::Result<Forwarder> {
        let sock_a = PacketSocket::open(&cfg.iface_a)?;
        let sock_b = PacketSocket::open(&cfg.iface_b)?;
        Forwarder::with_sockets(cfg, sock_a, sock_b)
    }

    /// The forwarder over two already-open sockets (`a` the sender side).
    pub fn with_sockets(cfg: &Config, sock_a: PacketSocket, sock_b: PacketSocket) -> io::Result<Forwarder> {
        let mtu = sock_a.mtu().max(sock_b.mtu());
        let slot_bytes = slot_bytes_for_mtu(mtu);
        let frames = cfg.pool_frames.unwrap_or_else(|| default_pool_frames(cfg, mtu, slot_bytes));
        assert!(frames as usize > 2 * BATCH, "the receive batches alone arm 2 x BATCH slots");
        let mut pool = FramePool::new(frames, slot_bytes, 2 * BATCH as u32 + SPILL_IN_FLIGHT)?;
        let forward_params = LinkParams {
            delay_ns: cfg.delay_ns,
            jitter_ns: cfg.jitter_ns,
            rate_bits_per_s: cfg.rate_bits_per_s,
            queue_bytes: cfg.queue_bytes().unwrap_or(0),
            loss: cfg.loss,
            burst_loss: cfg.burst_loss,
            reorder: cfg.reorder,
            reorder_delay_ns: cfg.reorder_delay_ns,
        };
        // The reverse direction carries acknowledgements: same delay, jitter and bottleneck, its own loss, and
        // no bursts or reordering (the contract applies those to the data direction).
        let reverse_params = LinkParams {
            loss: cfg.reverse_loss,
            burst_loss: None,
            reorder: Probability::NEVER,
            ..forward_params.clone()
        };
        let forward = Direction::new(Link::new(forward_params, Rng::new(cfg.seed, 0)), &mut pool, frames, sock_a.mtu());
        let reverse = Direction::new(Link::new(reverse_params, Rng::new(cfg.seed, 1)), &mut pool, frames, sock_b.mtu());
        let rx_coalesce_ns = cfg.delay_ns.min(MAX_RX_COALESCE_NS);
        Ok(Forwarder { sock_a, sock_b, pool, forward, reverse, tick_ns: cfg.tick_ns, rx_coalesce_ns, oversleep_ns: 0 })
    }

    /// Frames in the pool and bytes per frame slot.
    pub fn pool_size(&self) -> (usize, usize) {
        (self.pool.small_slots(), self.pool.slot_bytes())
    }

    /// Forwards until `stop_fd` becomes readable (a signalfd in the binary, a pipe in tests).
    pub fn run(&mut self, stop_fd: RawFd) -> io::Result<()> {
        let early_ns = self.tick_ns / 2;
        let mut last_stop_check_ns = now_ns();
        loop {
            let mut rx_full = false;
            for _ in 0..RX_ROUNDS {
                let a = self.forward.receive(&self.sock_a, &mut self.pool)?;
                let b = self.reverse.receive(&self.sock_b, &mut self.pool)?;
                rx_full = a == BATCH || b == BATCH;
                if !rx_full {
                    break;
                }
            }
            let tx_ns = now_ns();
            self.forward.transmit(&self.sock_b, &mut self.pool, tx_ns + early_ns);
            self.reverse.transmit(&self.sock_a, &mut self.pool, tx_ns + early_ns);

            let now = now_ns();
            let next_release = match (self.forward.next_release_ns(), self.reverse.next_release_ns()) {
                (Some(f), Some(r)) => Some(f.min(r)),
                (f, r) => f.or(r),
            };
            // Wake half a tick before the next release (less the usual oversleep), but at most once a tick: under
            // load this is a periodic tick sending everything due within +-tick/2, so each frame's error is
            // uniform in that window.
            let lead_ns = early_ns + self.oversleep_ns;
            let wake_ns = next_release.map(|r| r.saturating_sub(lead_ns).max(tx_ns + self.tick_ns));
            let mut wait_ns = wake_ns.map(|w| w.saturating_sub(now));
            let blocked = self.forward.tx_blocked || self.reverse.tx_blocked;
            if blocked {
                // The kernel refused for lack of buffer: retry after a tick, or on POLLOUT.
                wait_ns = Some(wait_ns.unwrap_or(u64::MAX).min(self.tick_ns.max(SPIN_NS)));
            }
            let spin = rx_full || self.tick_ns == 0 || wait_ns.is_some_and(|w| w < SPIN_NS);
            if spin {
                if now - last_stop_check_ns >= STOP_CHECK_NS {
                    last_stop_check_ns = now;
                    if poll_readable(stop_fd, Some(0))? {
                        return Ok(());
                    }
                }
                continue;
            }
            // Coalesce: a frame arriving during a sleep shorter than the delay cannot be due before the wake-up
            // (it is dated by its kernel stamp, not by when it is read), so only longer sleeps watch the sockets.
            let watch_rx = wait_ns.is_none_or(|w| w > self.rx_coalesce_ns);
            let mut fds = [
                libc::pollfd { fd: stop_fd, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.sock_a.raw_fd(), events: 0, revents: 0 },
                libc::pollfd { fd: self.sock_b.raw_fd(), events: 0, revents: 0 },
            ];
            if watch_rx {
                fds[1].events |= libc::POLLIN;
                fds[2].events |= libc::POLLIN;
            }
            if self.reverse.tx_blocked {
                fds[1].events |= libc::POLLOUT;
            }
            if self.forward.tx_blocked {
                fds[2].events |= libc::POLLOUT;
            }
            let woken = ppoll(&mut fds, wait_ns)?;
            let after = now_ns();
            last_stop_check_ns = after;
            if fds[0].revents & libc::POLLIN != 0 {
                return Ok(());
            }
            if let (Some(wait), false) = (wait_ns, woken) {
                self.learn_oversleep(after.saturating_sub(now + wait));
            }
        }
    }

    /// Folds one timed-out sleep's overshoot into the running estimate (1/8 weight). A sleep of an idle vCPU
    /// on this VM overshoots by ~100-150 us (the host must reschedule it), a busy one by ~20 us; waking that much
    /// earlier puts sparse frames (pings, a slow flow) on time instead of 0.1 ms late.
    fn learn_oversleep(&mut self, overshoot_ns: u64) {
        let sample = overshoot_ns.min(MAX_OVERSLEEP_NS) as i64;
        let est = self.oversleep_ns as i64;
        self.oversleep_ns = (est + (sample - est) / 8) as u64;
    }

    /// The counters of (forward, reverse), with the kernel's drop counts and the frames still waiting.
    pub fn stats(&mut self) -> (DirectionStats, DirectionStats) {
        self.forward.stats.socket_drops += self.sock_a.take_kernel_drops();
        self.reverse.stats.socket_drops += self.sock_b.take_kernel_drops();
        for dir in [&mut self.forward, &mut self.reverse] {
            dir.stats.in_flight_at_exit = (dir.normal.len() + dir.held.len() + dir.tx.len) as u64;
            dir.lateness.summarize_into(&mut dir.stats);
        }
        (self.forward.stats, self.reverse.stats)
    }
}

/// One direction: its link model, counters, batches and the two FIFOs of frames waiting for release.
struct Direction {
    link: Link,
    stats: DirectionStats,
    rx: RxBatch,
    tx: TxBatch,
    /// Frames in release order.
    normal: DescRing,
    /// Reordered frames, also in release order among themselves (see `Link::handle_frame`).
    held: DescRing,
    /// Frames longer than this (input MTU + Ethernet header) are counted as oversize.
    max_frame_bytes: usize,
    /// The last send failed for lack of kernel buffer: wait for POLLOUT.
    tx_blocked: bool,
    /// How late frames actually left.
    lateness: LatenessHistogram,
    /// The arrival time given to the last frame: arrivals never go backwards (two CPUs' backlogs may deliver
    /// frames slightly out of stamp order).
    last_arrival_ns: u64,
    /// Diagnostics already printed (one line per kind, not one per frame).
    warned_oversize: bool,
    warned_truncated: bool,
    warned_send_errno: Option<i32>,
}

impl Direction {
    fn new(link: Link, pool: &mut FramePool, frames: u32, in_mtu: u32) -> Direction {
        Direction {
            link,
            stats: DirectionStats::default(),
            rx: RxBatch::new(pool),
            tx: TxBatch::new(),
            normal: DescRing::new(frames as usize),
            held: DescRing::new(frames as usize),
            max_frame_bytes: in_mtu as usize + 14,
            tx_blocked: false,
            lateness: LatenessHistogram::default(),
            last_arrival_ns: 0,
            warned_oversize: false,
            warned_truncated: false,
            warned_send_errno: None,
        }
    }

    /// Reads one batch and queues (or drops) each frame; returns how many frames were read.
    fn receive(&mut self, sock: &PacketSocket, pool: &mut FramePool) -> io::Result<usize> {
        self.rx.arm(pool);
        // Safety: `arm` pointed every entry's iovecs at slots this batch owns, for their full lengths; nothing
        // else reads or writes those slots until they are handed on below.
        let n = match unsafe { sock.recv_batch(&mut self.rx.msgs) } {
            Ok(n) => n,
            // AF_PACKET reports an interface going down once, as an error on the next read: not fatal, the frames
            // resume when it comes back up.
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                eprintln!("mover-wanem: {}: {e}", sock.ifname());
                return Ok(0);
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: recvmmsg: {e}", sock.ifname()))),
        };
        if n == 0 {
            return Ok(0);
        }
        let now = now_ns();
        // Kernel stamps are CLOCK_REALTIME; this offset maps them onto the monotonic clock (a clock step between
        // the two reads shows as at most one batch dated `now`, by the clamp below).
        let realtime_minus_mono = clock_ns(libc::CLOCK_REALTIME).wrapping_sub(now);
        for i in 0..n {
            let arrival = match receive_stamp_ns(&self.rx.msgs[i].msg_hdr) {
                Some(stamp) => stamp.wrapping_sub(realtime_minus_mono).clamp(self.last_arrival_ns, now),
                None => now,
            };
            self.last_arrival_ns = arrival;
            self.handle_received(i, arrival, pool, sock.ifname());
        }
        Ok(n)
    }

    fn handle_received(&mut self, i: usize, now: u64, pool: &mut FramePool, ifname: &str) {
        let len = self.rx.msgs[i].msg_len as usize;
        let truncated = self.rx.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        self.stats.frames_in += 1;
        self.stats.bytes_in += len as u64;
        if truncated {
            self.stats.truncated += 1;
            if !std::mem::replace(&mut self.warned_truncated, true) {
                eprintln!("mover-wanem: {ifname}: a frame above {} bytes was truncated and dropped", SPILL_BYTES);
            }
            return;
        }
        if len > self.max_frame_bytes {
            self.stats.oversize += 1;
            if !std::mem::replace(&mut self.warned_oversize, true) {
                eprintln!(
                    "mover-wanem: {ifname}: {len}-byte frame above MTU + 14: turn offloads off on the outer veth \
                     (ethtool -K DEV tso off gso off gro off tx off); forwarding it anyway"
                );
            }
        }
        // Without a free slot to re-arm this entry the frame cannot leave it: drop it before the link model
        // sees it, so the model's state only reflects frames that really go on.
        if pool.free_small() == 0 {
            self.stats.pool_drops += 1;
            return;
        }
        let (release_ns, reordered) = match self.link.handle_frame(now, len) {
            Verdict::QueueDrop => return self.stats.queue_drops += 1,
            Verdict::LostBurst => return self.stats.lost_burst += 1,
            Verdict::LostRandom => return self.stats.lost_random += 1,
            Verdict::Deliver { release_ns, reordered } => (release_ns, reordered),
        };
        let uses_spill = len > pool.slot_bytes();
        let desc = FrameDesc {
            release_ns,
            slot: self.rx.slots[i],
            spill: if uses_spill { self.rx.spills[i] } else { NO_SLOT },
            len: len as u32,
        };
        // The descriptor now owns the slots; the entry gets fresh ones.
        self.rx.slots[i] = pool.take_small().expect("a free slot was checked above");
        if uses_spill {
            self.rx.spills[i] = pool.take_spill().unwrap_or(NO_SLOT);
        }
        if reordered {
            self.stats.reordered += 1;
            self.held.push(desc);
        } else {
            self.normal.push(desc);
        }
    }

    /// The earliest release waiting, including frames a blocked send left in the transmit batch.
    fn next_release_ns(&self) -> Option<u64> {
        if self.tx.len > 0 {
            return Some(0);
        }
        match (self.normal.front(), self.held.front()) {
            (Some(n), Some(h)) => Some(n.release_ns.min(h.release_ns)),
            (Some(d), None) | (None, Some(d)) => Some(d.release_ns),
            (None, None) => None,
        }
    }

    /// Removes the earliest frame if it is due by `due_ns`; ties go to the in-order FIFO.
    fn pop_due(&mut self, due_ns: u64) -> Option<FrameDesc> {
        let normal = self.normal.front().map(|d| d.release_ns);
        let held = self.held.front().map(|d| d.release_ns);
        let take_held = match (normal, held) {
            (Some(n), Some(h)) => h < n,
            (None, Some(_)) => true,
            _ => false,
        };
        let ring = if take_held { &mut self.held } else { &mut self.normal };
        if ring.front()?.release_ns > due_ns {
            return None;
        }
        ring.pop()
    }

    /// Sends every frame due by `due_ns`, in batches.
    fn transmit(&mut self, sock: &PacketSocket, pool: &mut FramePool, due_ns: u64) {
        loop {
            while self.tx.len < BATCH {
                let Some(desc) = self.pop_due(due_ns) else { break };
                self.tx.descs[self.tx.len] = desc;
                self.tx.len += 1;
            }
            if self.tx.len == 0 {
                self.tx_blocked = false;
                return;
            }
            self.tx.point_at(pool);
            let send_ns = now_ns();
            // Safety: `point_at` aimed each entry's iovecs at the slots of the descriptor the batch owns, for the
            // frame's length, which lies inside them.
            match unsafe { sock.send_batch(&mut self.tx.msgs[..self.tx.len]) } {
                Ok(0) => {
                    self.tx_blocked = true;
                    return;
                }
                Ok(sent) => {
                    for desc in &self.tx.descs[..sent] {
                        self.lateness.record(send_ns.saturating_sub(desc.release_ns));
                        self.stats.frames_out += 1;
                        self.stats.bytes_out += desc.len as u64;
                        pool.release(desc);
                    }
                    self.tx.consume(sent);
                    self.tx_blocked = false;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) => {
                    self.tx_blocked = true;
                    return;
                }
                Err(e) => {
                    // The first frame of the batch failed (EMSGSIZE for an oversize frame, ENETDOWN, ...): drop
                    // it and go on with the rest.
                    self.stats.send_errors += 1;
                    if self.warned_send_errno != e.raw_os_error() {
                        self.warned_send_errno = e.raw_os_error();
                        eprintln!("mover-wanem: {}: send of a {}-byte frame: {e}", sock.ifname(), self.tx.descs[0].len);
                    }
                    pool.release(&self.tx.descs[0]);
                    self.tx.consume(1);
                }
            }
        }
    }
}

/// A batch of receive entries, each armed with a small slot and, when one is free, a spill slot.
struct RxBatch {
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[[libc::iovec; 2]]>,
    /// Control data of each entry: room for the arrival stamp (a cmsghdr and a timespec, 32 bytes) and slack.
    ctrl: Box<[[u64; 8]]>,
    slots: [u32; BATCH],
    spills: [u32; BATCH],
}

impl RxBatch {
    fn new(pool: &mut FramePool) -> RxBatch {
        let mut slots = [NO_SLOT; BATCH];
        for s in &mut slots {
            *s = pool.take_small().expect("the pool is sized above the receive batches");
        }
        RxBatch {
            // Safety: mmsghdr and iovec are plain data; all-zero is a valid (empty) value.
            msgs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iovs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            ctrl: vec![[0u64; 8]; BATCH].into_boxed_slice(),
            slots,
            spills: [NO_SLOT; BATCH],
        }
    }

    /// Points every entry at its slots (re-arming spills taken by oversize frames when the pool has some) and
    /// clears what the last call returned.
    fn arm(&mut self, pool: &mut FramePool) {
        for i in 0..BATCH {
            if self.spills[i] == NO_SLOT {
                self.spills[i] = pool.take_spill().unwrap_or(NO_SLOT);
            }
            self.iovs[i][0] =
                libc::iovec { iov_base: pool.small_ptr(self.slots[i]).cast(), iov_len: pool.slot_bytes() };
            let mut iovlen = 1;
            if self.spills[i] != NO_SLOT {
                self.iovs[i][1] = libc::iovec { iov_base: pool.spill_ptr(self.spills[i]).cast(), iov_len: SPILL_BYTES };
                iovlen = 2;
            }
            // Safety: msghdr is plain data; all-zero means no address and no control data.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = self.iovs[i].as_mut_ptr();
            hdr.msg_iovlen = iovlen;
            hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
            hdr.msg_controllen = std::mem::size_of::<[u64; 8]>();
            self.msgs[i] = libc::mmsghdr { msg_hdr: hdr, msg_len: 0 };
        }
    }
}

/// Frames on their way out: owned by the batch from `pop_due` until the kernel took them (or refused them).
struct TxBatch {
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[[libc::iovec; 2]]>,
    descs: [FrameDesc; BATCH],
    len: usize,
}

impl TxBatch {
    fn new() -> TxBatch {
        TxBatch {
            // Safety: mmsghdr and iovec are plain data; all-zero is a valid (empty) value.
            msgs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iovs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            descs: [FrameDesc::default(); BATCH],
            len: 0,
        }
    }

    fn point_at(&mut self, pool: &FramePool) {
        let slot_bytes = pool.slot_bytes();
        for i in 0..self.len {
            let desc = self.descs[i];
            let len = desc.len as usize;
            self.iovs[i][0] = libc::iovec { iov_base: pool.small_ptr(desc.slot).cast(), iov_len: len.min(slot_bytes) };
            let mut iovlen = 1;
            if desc.spill != NO_SLOT {
                debug_assert!(len > slot_bytes && len - slot_bytes <= SPILL_BYTES);
                self.iovs[i][1] =
                    libc::iovec { iov_base: pool.spill_ptr(desc.spill).cast(), iov_len: len - slot_bytes };
                iovlen = 2;
            }
            // Safety: msghdr is plain data; no address: the socket is bound to its interface.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = self.iovs[i].as_mut_ptr();
            hdr.msg_iovlen = iovlen;
            self.msgs[i] = libc::mmsghdr { msg_hdr: hdr, msg_len: 0 };
        }
    }

    /// Forgets the first `n` frames (sent or dropped); the rest move to the front, in order.
    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.descs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

/// True when `fd` is readable within `timeout_ns` (`None` = wait indefinitely).
fn poll_readable(fd: RawFd, timeout_ns: Option<u64>) -> io::Result<bool> {
    let mut fds = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
    ppoll(&mut fds, timeout_ns)?;
    Ok(fds[0].revents & libc::POLLIN != 0)
}

/// ppoll with a nanosecond timeout (poll's is in milliseconds); true when a descriptor (or a signal) woke it,
/// false when it timed out.
fn ppoll(fds: &mut [libc::pollfd], timeout_ns: Option<u64>) -> io::Result<bool> {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000).min(i32::MAX as u64) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // Safety: fds is a valid array of its length; ts_ptr is null or points to ts, alive across the call.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
        return Ok(true);
    }
    Ok(rc > 0)
}

#[cfg(test)]
mod tests;
