//! The sender's pacer stage: takes filled send batches from the packetizer and releases their datagrams to
//! the socket at the session rate.
//!
//! This is the only place the sender's pipeline paces: the protocol core (in the packetizer) decides the
//! order of departures and the rate, which each batch carries, and builds at most one burst ahead of this
//! stage ([`crate::proto::Sender::set_driver_pacing`]).
//!
//! The rate is a GCRA token bucket (a pure function of time, [`Pacer`]). When the bucket says wait, the
//! stage sleeps if the gap is long; on a core of its own it spins on the clock for gaps shorter than
//! [`SPIN_BELOW`], which holds microsecond gaps (MACHINE-NOTES: sleeps cannot make gaps below ~25 us), and
//! sleeping would waste a core shared with other stages. The error between the scheduled and the actual
//! release goes into the `pacer_gap_error` histogram; the delay from a NAK's arrival to the first send of a
//! batch holding its retransmission into `nak_to_retransmit`.

pub use super::items::TxSlot;
use super::runtime::{Inbox, Outbox, Progress, Stage, StageCx};
use super::slots::{Slot, SlotPool};
use super::topology::StageId;
use crate::net::xdp_io::XdpSink;
use crate::net::{DataSocket, TxBatch};
use crate::proto::pacer::Pacer;
use crate::time::Clock;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Gaps shorter than this are waited out by spinning, when the pacer has a core to itself.
pub const SPIN_BELOW: Duration = Duration::from_micros(60);
/// Burst allowance on a shared core: a sleep here ends 50-100 us late, and later under load (MACHINE-NOTES),
/// so the bucket must let a late wake-up catch up or the average rate falls short.
pub const SHARED_CORE_BURST: Duration = Duration::from_micros(400);
/// On a shared core, sleep until this much of the rate has accumulated, so each wake-up releases a batch
/// rather than one datagram (every wake-up is a context switch on a core other stages need).
pub const SHARED_CORE_RELEASE: Duration = Duration::from_micros(150);
/// Burst allowance on an own core: enough for one GSO send.
pub const OWN_CORE_BURST: Duration = Duration::from_micros(20);

/// Most datagrams released by one send.
const MAX_RELEASE: usize = 256;

/// Where the pacer's datagrams go: the UDP socket, or a test's recorder.
pub trait DatagramSink: Send {
    /// Sends up to `limit` of the oldest datagrams of `batch`, removing those sent; returns how many.
    fn send_upto(&mut self, batch: &mut TxBatch, limit: usize) -> io::Result<usize>;
    /// Waits up to `timeout` for room to send.
    fn wait_writable(&mut self, timeout: Duration);
    /// Whether the sink still owns memory of `batch` after sending all of it (AF_XDP frames not yet
    /// completed), so that the batch may not be refilled yet.
    fn holds(&mut self, _batch: &TxBatch) -> bool {
        false
    }
}

/// The data path's sink: the kernel's UDP socket or an AF_XDP socket.
pub enum AnySink {
    /// `sendmmsg` on a UDP socket.
    Udp(DataSocket),
    /// The TX ring of an AF_XDP socket (boxed: it is much larger than a socket, and built once).
    Xdp(Box<XdpSink>),
}

impl DatagramSink for AnySink {
    fn send_upto(&mut self, batch: &mut TxBatch, limit: usize) -> io::Result<usize> {
        match self {
            AnySink::Udp(s) => s.send_upto(batch, limit),
            AnySink::Xdp(s) => s.send(batch, limit),
        }
    }

    fn wait_writable(&mut self, timeout: Duration) {
        match self {
            AnySink::Udp(s) => DatagramSink::wait_writable(s, timeout),
            AnySink::Xdp(s) => s.wait_writable(timeout),
        }
    }

    fn holds(&mut self, batch: &TxBatch) -> bool {
        match self {
            AnySink::Udp(_) => false,
            AnySink::Xdp(s) => s.holds(batch),
        }
    }
}

impl DatagramSink for DataSocket {
    fn send_upto(&mut self, batch: &mut TxBatch, limit: usize) -> io::Result<usize> {
        match self.send_batch_upto(batch, limit) {
            // ICMP port unreachable from an earlier datagram: the receiver's socket is gone or not there yet.
            // Count it as loss; the control channel says whether the session is over.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(0),
            r => r,
        }
    }

    fn wait_writable(&mut self, timeout: Duration) {
        let _ = DataSocket::wait_writable(self, timeout);
    }
}

/// The pacer stage's inputs and outputs.
pub struct PacerStage<K: DatagramSink, C: Clock> {
    /// Where datagrams go.
    pub sink: K,
    /// The send batches.
    pub slots: Arc<SlotPool<TxSlot>>,
    /// Filled batches from the packetizer.
    pub input: Inbox<Slot<TxSlot>>,
    /// Sent batches back to the packetizer.
    pub free: Outbox<Slot<TxSlot>>,
    /// The rate before the first batch arrives, bits per second (each batch then carries its own).
    pub rate_bps: u64,
    /// Datagram bytes released to the sink so far: the packetizer's count of bytes built, less this, is
    /// what waits between the two (`Sender::set_send_backlog`).
    pub released_bytes: Arc<AtomicU64>,
    /// Whether the stage has a core to itself (spin for short gaps).
    pub own_core: bool,
    /// A send error that ends the session.
    pub error: Arc<Mutex<Option<String>>>,
    /// The clock.
    pub clock: C,
}

/// The pacer stage while it runs: its inputs and outputs, the token bucket and the batches it holds.
pub struct Pacing<K: DatagramSink, C: Clock> {
    st: PacerStage<K, C>,
    pacer: Pacer,
    /// The batch being released.
    current: Option<Slot<TxSlot>>,
    /// Sent batches whose memory the sink still holds (AF_XDP frames not completed yet).
    retiring: Vec<Slot<TxSlot>>,
    gap_error: usize,
    nak_delay: usize,
}

impl<K: DatagramSink, C: Clock> PacerStage<K, C> {
    /// The stage, ready to run.
    pub fn into_stage(self) -> Pacing<K, C> {
        let burst = if self.own_core { OWN_CORE_BURST } else { SHARED_CORE_BURST };
        let pacer = Pacer::new(self.rate_bps.max(1), burst.as_nanos() as u64);
        let retiring = Vec::with_capacity(self.slots.len() as usize);
        Pacing { st: self, pacer, current: None, retiring, gap_error: 0, nak_delay: 0 }
    }
}

impl<K: DatagramSink, C: Clock> Stage for Pacing<K, C> {
    type Output = ();
    const ID: StageId = StageId::Pacer;

    fn on_start(&mut self, cx: &mut StageCx) {
        // Sleeps end up to the timer slack (50 us by default) late; the pacer wants them on time.
        // Safety: PR_SET_TIMERSLACK takes an integer argument and touches no memory of ours.
        let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        self.gap_error = cx.meter.add_latency("pacer_gap_error");
        self.nak_delay = cx.meter.add_latency("nak_to_retransmit");
    }

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        if !self.retiring.is_empty() {
            self.retire();
        }
        let Some(mut token) = self.current.take().or_else(|| self.next_batch()) else {
            let idle = if self.retiring.is_empty() { Duration::from_millis(5) } else { Duration::from_micros(20) };
            return Progress::WaitInput(idle);
        };
        let st = &mut self.st;
        let pacer = &mut self.pacer;
        let slot = st.slots.get(&mut token);
        if slot.rate_bps != pacer.rate_bps() && slot.rate_bps > 0 {
            pacer.set_rate_bps(slot.rate_bps);
        }
        let mut now = st.clock.now();
        let ready = if st.own_core {
            pacer.ready_at(now)
        } else {
            // Wait for a release's worth (the batch, or SHARED_CORE_RELEASE of the rate if that is less), not
            // for the first datagram: releasing whatever trickled in during the last send made a send call of
            // a few datagrams per wake-up when the rate binds, small GSO messages, and each costs the kernel
            // (and, on a veth, the receiver's softirq) per message, not per byte.
            pacer.ready_after(now, release_bytes_before_last(&slot.batch, pacer.rate_bps()))
        };
        if ready > now {
            let gap = Duration::from_nanos(ready.since_ns(now));
            let (own_core, clock) = (st.own_core, &st.clock);
            cx.wait_output(|| {
                if own_core && gap < SPIN_BELOW {
                    while clock.now() < ready {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::sleep(gap);
                }
            });
            now = st.clock.now();
            cx.meter.record(self.gap_error, now.since_ns(ready));
        }
        // How many datagrams the bucket lets go now (their lengths kept: the sink removes what it sends).
        let mut probe = pacer.clone();
        let mut lens = [0u16; MAX_RELEASE];
        let mut allowed = 0;
        while allowed < slot.batch.len().min(MAX_RELEASE) && probe.can_send(now) {
            let len = slot.batch.get(allowed).len();
            probe.on_send(now, len);
            lens[allowed] = len as u16;
            allowed += 1;
        }
        let sent = match st.sink.send_upto(&mut slot.batch, allowed) {
            Ok(n) => n,
            Err(e) => {
                st.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(format!("sending data: {e}"));
                cx.stop_all();
                self.current = Some(token);
                return Progress::Done;
            }
        };
        debug_assert!(sent <= allowed, "the sink sent {sent} datagrams of {allowed} allowed");
        if sent > 0 {
            if let Some(at) = slot.nak_at.take() {
                cx.meter.record(self.nak_delay, now.since_ns(at));
            }
        }
        let mut bytes = 0;
        for &len in &lens[..sent] {
            pacer.on_send(now, len as usize);
            bytes += len as u64;
        }
        cx.meter.add(sent as u64, bytes);
        st.released_bytes.fetch_add(bytes, Ordering::Relaxed);
        if sent < allowed {
            // Socket buffer full.
            let sink = &mut st.sink;
            cx.wait_output(|| sink.wait_writable(Duration::from_millis(1)));
        }
        if !slot.batch.is_empty() {
            self.current = Some(token);
            return Progress::Busy;
        }
        slot.nak_at = None;
        if st.sink.holds(&slot.batch) {
            self.retiring.push(token);
            return Progress::Busy;
        }
        assert!(st.free.push(token).is_ok(), "tx_free ring smaller than the batch count");
        st.free.publish();
        Progress::Busy
    }

    fn on_stop(self, _cx: &mut StageCx) {}
}

impl<K: DatagramSink, C: Clock> Pacing<K, C> {
    fn next_batch(&mut self) -> Option<Slot<TxSlot>> {
        let t = self.st.input.pop()?;
        self.st.input.release();
        Some(t)
    }

    /// Hands the batches in `retiring` that the sink no longer holds back to the packetizer.
    fn retire(&mut self) {
        let st = &mut self.st;
        let mut handed = false;
        let mut k = 0;
        while k < self.retiring.len() {
            if st.sink.holds(&st.slots.get(&mut self.retiring[k]).batch) {
                k += 1;
                continue;
            }
            let token = self.retiring.swap_remove(k);
            assert!(st.free.push(token).is_ok(), "tx_free ring smaller than the batch count");
            handed = true;
        }
        if handed {
            st.free.publish();
        }
    }
}

/// The bytes before the last datagram of one release on a shared core: the oldest datagrams of `batch` (at
/// most [`MAX_RELEASE`]) that fit in [`SHARED_CORE_RELEASE`] at `rate_bps`, at least one.
fn release_bytes_before_last(batch: &TxBatch, rate_bps: u64) -> u64 {
    let budget = (rate_bps as u128 * SHARED_CORE_RELEASE.as_nanos() / 8_000_000_000) as u64;
    let mut total = 0u64;
    let mut last = 0u64;
    for i in 0..batch.len().min(MAX_RELEASE) {
        let len = batch.get(i).len() as u64;
        if i > 0 && total + len > budget {
            break;
        }
        total += len;
        last = len;
    }
    total - last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::bell::Bell;
    use crate::pipeline::ring::ring;
    use crate::pipeline::runtime::run;
    use crate::time::MonotonicClock;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    /// Records what it is given, as a socket would send it: a sequence number per datagram and when.
    struct Recorder {
        sent: Arc<Mutex<Vec<(u32, Instant)>>>,
        per_call: usize,
        /// How many datagrams each call sent.
        calls: Arc<Mutex<Vec<usize>>>,
        /// How long each call takes, as a `sendmmsg` does.
        call_time: Duration,
    }

    impl DatagramSink for Recorder {
        fn send_upto(&mut self, batch: &mut TxBatch, limit: usize) -> io::Result<usize> {
            let n = limit.min(self.per_call).min(batch.len());
            self.calls.lock().unwrap().push(n);
            if !self.call_time.is_zero() {
                let until = Instant::now() + self.call_time;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            let mut sent = self.sent.lock().unwrap();
            for i in 0..n {
                let d = batch.get(i);
                sent.push((u32::from_le_bytes(d[..4].try_into().unwrap()), Instant::now()));
            }
            drop(sent);
            // Remove what was "sent" from the front, as the socket does.
            let rest: Vec<Vec<u8>> = (n..batch.len()).map(|i| batch.get(i).to_vec()).collect();
            batch.clear();
            for d in rest {
                let slot = batch.slot().unwrap();
                slot[..d.len()].copy_from_slice(&d);
                batch.commit(d.len());
            }
            Ok(n)
        }
        fn wait_writable(&mut self, _: Duration) {}
    }

    /// The pacer stage alone, fed batches by the test through its rings (no socket): every datagram goes out
    /// once, in order, no faster than the rate, and every batch comes back.
    #[test]
    fn releases_every_datagram_in_order_at_the_rate() {
        const DATAGRAMS: u32 = 2000;
        const LEN: usize = 1000;
        const RATE_BPS: u64 = 100_000_000;
        let (slots, mut spare) =
            SlotPool::new(4, |_| TxSlot { batch: TxBatch::new(32, LEN), rate_bps: RATE_BPS, nak_at: None });
        let (mut to_pacer, input) = ring::<Slot<TxSlot>>(4);
        let (free, mut back) = ring::<Slot<TxSlot>>(4);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let own_bell = Bell::new();
        let clock = MonotonicClock::new();
        let stage = PacerStage {
            sink: Recorder { sent: sent.clone(), per_call: 7, calls: Arc::default(), call_time: Duration::ZERO },
            slots: slots.clone(),
            input,
            free: Outbox::from_ring(free, Bell::new()),
            rate_bps: 1,
            released_bytes: Arc::new(AtomicU64::new(0)),
            own_core: false,
            error: Arc::default(),
            clock,
        };
        let started = Instant::now();
        let (bell, st) = (own_bell.clone(), stop.clone());
        let pacer =
            std::thread::spawn(move || run(stage.into_stage(), &bell, StageCx::new(StageId::Pacer, None, st)).1);
        let mut next = 0u32;
        let mut returned = 0;
        let mut nak_marked = false;
        while returned < DATAGRAMS.div_ceil(32) {
            while let Some(t) = back.pop() {
                spare.push(t);
                returned += 1;
            }
            back.release();
            if next < DATAGRAMS {
                if let Some(mut t) = spare.pop() {
                    let slot = slots.get(&mut t);
                    while next < DATAGRAMS {
                        let Some(buf) = slot.batch.slot() else { break };
                        buf[..4].copy_from_slice(&next.to_le_bytes());
                        slot.batch.commit(LEN);
                        next += 1;
                    }
                    if !nak_marked {
                        slot.nak_at = Some(clock.now());
                        nak_marked = true;
                    }
                    assert!(to_pacer.push(t).is_ok());
                    to_pacer.publish();
                    own_bell.ring();
                    continue;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        own_bell.ring();
        let report = pacer.join().unwrap();
        let sent = sent.lock().unwrap();
        let order: Vec<u32> = sent.iter().map(|s| s.0).collect();
        assert_eq!(order, (0..DATAGRAMS).collect::<Vec<_>>());
        // No faster than the rate, less one burst.
        let ideal = Duration::from_nanos(DATAGRAMS as u64 * LEN as u64 * 8 * 1_000_000_000 / RATE_BPS);
        assert!(elapsed + SHARED_CORE_BURST >= ideal, "{elapsed:?} for an ideal of {ideal:?}");
        assert!(elapsed < ideal * 10, "{elapsed:?}: far below the rate");
        assert_eq!((report.items, report.bytes), (DATAGRAMS as u64, DATAGRAMS as u64 * LEN as u64));
        let nak = report.latencies.iter().find(|l| l.name == "nak_to_retransmit").unwrap();
        assert_eq!(nak.count, 1);
        assert!(report.latencies.iter().any(|l| l.name == "pacer_gap_error" && l.count > 0));
    }

    /// On a shared core, when the rate binds, each send gets a whole release (here: the whole batch), not the
    /// few datagrams the bucket gained while the previous send ran: every send call costs the kernel per
    /// message, so a trickle of small sends costs CPU per byte.
    #[test]
    fn a_shared_core_releases_whole_batches_when_the_rate_binds() {
        const BATCHES: u32 = 60;
        const PER_BATCH: usize = 32;
        const LEN: usize = 1000;
        // 4 us a datagram; a 32-datagram batch (128 us) is less than SHARED_CORE_RELEASE, so a release is the
        // batch. Each send "takes" 20 us: five datagrams' worth of the rate.
        const RATE_BPS: u64 = 2_000_000_000;
        const _: () = assert!(
            (PER_BATCH * LEN * 8) as u128 * 1_000_000_000 / (RATE_BPS as u128) < SHARED_CORE_RELEASE.as_nanos()
        );
        let (slots, mut spare) =
            SlotPool::new(4, |_| TxSlot { batch: TxBatch::new(PER_BATCH, LEN), rate_bps: RATE_BPS, nak_at: None });
        let (mut to_pacer, input) = ring::<Slot<TxSlot>>(4);
        let (free, mut back) = ring::<Slot<TxSlot>>(4);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let own_bell = Bell::new();
        let sink = Recorder {
            sent: sent.clone(),
            per_call: usize::MAX,
            calls: calls.clone(),
            call_time: Duration::from_micros(20),
        };
        let stage = PacerStage {
            sink,
            slots: slots.clone(),
            input,
            free: Outbox::from_ring(free, Bell::new()),
            rate_bps: RATE_BPS,
            released_bytes: Arc::new(AtomicU64::new(0)),
            own_core: false,
            error: Arc::default(),
            clock: MonotonicClock::new(),
        };
        let (bell, st) = (own_bell.clone(), stop.clone());
        let pacer =
            std::thread::spawn(move || run(stage.into_stage(), &bell, StageCx::new(StageId::Pacer, None, st)).1);
        let (mut next, mut returned) = (0u32, 0u32);
        while returned < BATCHES {
            while let Some(t) = back.pop() {
                spare.push(t);
                returned += 1;
            }
            back.release();
            if next < BATCHES * PER_BATCH as u32 {
                if let Some(mut t) = spare.pop() {
                    let slot = slots.get(&mut t);
                    for _ in 0..PER_BATCH {
                        let buf = slot.batch.slot().unwrap();
                        buf[..4].copy_from_slice(&next.to_le_bytes());
                        slot.batch.commit(LEN);
                        next += 1;
                    }
                    assert!(to_pacer.push(t).is_ok());
                    to_pacer.publish();
                    own_bell.ring();
                    continue;
                }
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        stop.store(true, Ordering::Relaxed);
        own_bell.ring();
        let report = pacer.join().unwrap();
        let order: Vec<u32> = sent.lock().unwrap().iter().map(|s| s.0).collect();
        assert_eq!(order, (0..BATCHES * PER_BATCH as u32).collect::<Vec<_>>());
        assert_eq!(report.items, (BATCHES as usize * PER_BATCH) as u64);
        let calls = calls.lock().unwrap();
        assert!(calls.iter().all(|&n| n == PER_BATCH), "send calls of other than a whole batch: {calls:?}");
    }
}
