//! The receiver's pipeline: recv -> reassembly -> writer, with runs' buffers and verification read-backs
//! coming back from the writer.
//! See [`super::topology`] for the table of stages and rings.
//!
//! The reassembly stage owns the protocol core ([`ReceiverSession`] over a [`PipeStore`]), the control
//! channel and a socket handle for feedback; the recv stage owns the receiving socket handle and the receive
//! batches it fills; the writer stage owns the [`DiskWriter`] and does the verification read-backs (the
//! reassembly stage hands it each file's running hash and gets it back advanced: it never reads the disk).

use super::live::{self, Live, PUBLISH_INTERVAL};
use super::rate_share::RateShareCell;
use super::runtime::{join, Inbox, Outbox, Progress, Stage, StageCx, Wiring};
use super::slots::{BufRegion, Slot, SlotPool};
use super::stats::StageReport;
use super::store::PipeStore;
use super::topology::{rings, RingId, StageId, Topology};
use super::write_stage::{ReadBack, WriterStage};
use crate::disk::{BackendChoice, BufferPool, DiskBackend, DiskWriter};
use crate::files::DestTree;
use crate::net::xdp_io::XdpSource;
use crate::net::xsk::UmemArea;
use crate::net::{ControlChannel, ControlEvent, DataSocket, RxBatch};
use crate::proto::{BlockStore, FailureKind, Receiver, ReceiverSession};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::ReceiverSummary;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Bytes per write run.
pub const RUN_BYTES: usize = 1 << 20;
/// Writes in flight in the writer stage by default (`serve --queue-depth`); at most the run pool's size.
pub const WRITE_QUEUE_DEPTH: u32 = 16;
/// Receive slots per batch without GRO.
const RX_SLOTS: usize = 64;
/// How long the recv stage naps after a short receive while data flows.
const RX_NAP: Duration = Duration::from_micros(50);
/// Receive slots per batch with GRO (each up to 64 datagrams).
const RX_SLOTS_GRO: usize = 16;

/// The bytes of buffers [`run_receive`] allocates for `topology` (write runs, receive batches with or
/// without GRO): what a daemon reserves from its memory budget before the data path starts.
pub fn buffer_bytes(topology: &Topology, max_datagram: usize) -> u64 {
    let runs = topology.depth(RingId::Writes) * RUN_BYTES;
    let batch = (RX_SLOTS * max_datagram).max(RX_SLOTS_GRO * RxBatch::GRO_DATAGRAM);
    (runs + topology.depth(RingId::Rx) * batch) as u64
}

/// How the receiver's pipeline is set up.
#[derive(Debug, Clone)]
pub struct ReceiveSetup {
    /// Stages, rings and cores.
    pub topology: Topology,
    /// Disk backend choice (`MOVER_DISK`).
    pub disk: BackendChoice,
    /// Writes in flight (1 ..= the run pool's size).
    pub queue_depth: u32,
    /// Where the reassembly stage publishes progress for other threads (a progress bar, the daemon's
    /// metrics).
    pub live: Arc<Live>,
    /// A daemon's governor's share for this session: the reassembly stage tells the sender each new value
    /// (`RateShare`, PROTOCOL.md §3.7). `None` where nothing is capped (a pull's client).
    pub rate_share: Option<Arc<RateShareCell>>,
}

/// How a pipelined receive ended.
pub struct ReceiveOutcome {
    /// The summary of what was committed, or why the session failed.
    pub result: Result<ReceiverSummary, String>,
    /// What kind of failure `result` is, if it is one (a silent path or a lost control connection can be
    /// resumed by a rerun).
    pub failure: FailureKind,
    /// Per-stage reports, in topology order.
    pub stages: Vec<StageReport>,
    /// The disk backend the writer used.
    pub disk: DiskBackend,
    /// New payload bytes delivered, and the bytes they took on the wire (compressed blocks at their frame's
    /// length).
    pub delivered: (u64, u64),
}

/// Runs a session's data phase through the pipeline until the session completes or fails. With `xdp`, datagrams
/// arrive through AF_XDP sockets and `sock` only sends feedback.
#[allow(clippy::too_many_arguments)]
pub fn run_receive(
    core: Receiver,
    tree: DestTree,
    mut sock: DataSocket,
    xdp: Option<XdpSource>,
    ch: &mut ControlChannel,
    clock: MonotonicClock,
    max_datagram: usize,
    setup: &ReceiveSetup,
) -> ReceiveOutcome {
    let topo = &setup.topology;
    let run_buffers = topo.depth(RingId::Writes);
    let mut pool = BufferPool::new(run_buffers as u32, RUN_BYTES);
    let region = BufRegion::new(pool.region().clone());
    let writer =
        match DiskWriter::new(region.region().clone(), setup.disk, setup.queue_depth.clamp(1, run_buffers as u32)) {
            Ok(w) => w,
            Err(e) => {
                return ReceiveOutcome {
                    result: Err(format!("disk writer: {e}")),
                    failure: FailureKind::Other,
                    stages: vec![],
                    disk: DiskBackend::Pread,
                    delivered: (0, 0),
                }
            }
        };
    let disk = writer.backend();
    // On the XDP path the kernel socket only sends feedback (and keeps the port).
    let xdp_area: Option<Arc<UmemArea>> = xdp.as_ref().map(|x| x.sockets()[0].area().clone());
    let gro = xdp.is_none() && sock.enable_gro();
    let (fb_sock, rx_sock) = match xdp {
        Some(x) => (sock, AnySource::Xdp(x)),
        None => match sock.try_clone() {
            Ok(s) => (sock, AnySource::Udp(s)),
            Err(e) => {
                let failure = FailureKind::Other;
                return ReceiveOutcome { result: Err(e.to_string()), failure, stages: vec![], disk, delivered: (0, 0) };
            }
        },
    };
    let (rx_slots, rx_spare) = SlotPool::new(topo.depth(RingId::Rx) as u32, |_| {
        if let Some(area) = &xdp_area {
            RxBatch::for_frames(area.clone(), RX_SLOTS)
        } else if gro {
            RxBatch::new(RX_SLOTS_GRO, RxBatch::GRO_DATAGRAM)
        } else {
            RxBatch::new(RX_SLOTS, max_datagram)
        }
    });
    let mut wiring = Wiring::new(topo);
    let (rx_tx, rx_rx) = wiring.ring(rings::RX);
    let (rx_free_tx, rx_free_rx) = wiring.ring(rings::RX_FREE);
    let (writes_tx, writes_rx) = wiring.ring(rings::WRITES);
    let (written_tx, written_rx) = wiring.ring(rings::WRITTEN);
    let (verify_tx, verify_rx) = wiring.ring(rings::VERIFY);
    let (verified_tx, verified_rx) = wiring.ring(rings::VERIFIED);
    wiring.finish();
    let buffers =
        (0..run_buffers).map(|_| region.adopt(pool.alloc().expect("the pool has a buffer per slot"))).collect();
    let journals = tree.journals();
    let store = PipeStore::new(tree, region.clone(), buffers, (writes_tx, written_rx), (verify_tx, verified_rx));
    let session = ReceiverSession::new(core, store);
    let read_back = ReadBack::new(verify_rx, verified_tx);
    let writer =
        WriterStage::new(writer, run_buffers, writes_rx, written_tx, read_back).with_journals(journals, region);
    let recv = RecvStage { sock: rx_sock, slots: rx_slots.clone(), spare: rx_spare, out: rx_tx, free: rx_free_rx };
    let reassembly = Reassembly {
        fb_buf: vec![0u8; session.core.max_datagram()],
        session,
        ch,
        fb_sock,
        slots: rx_slots,
        input: rx_rx,
        free: rx_free_tx,
        peer: None,
        result: None,
        failure: FailureKind::Other,
        clock,
        live: setup.live.clone(),
        next_publish: std::time::Instant::now(),
        rate_share: setup.rate_share.clone(),
    };

    std::thread::scope(|scope| {
        let writer_handle = wiring.spawn(scope, writer);
        let recv_handle = wiring.spawn(scope, recv);
        let handle = wiring.spawn(scope, reassembly);
        let ((result, failure, delivered), report) = match join(handle, StageId::Reassembly) {
            Some((result, report)) => (result, Some(report)),
            None => ((Err("the reassembly stage panicked".into()), FailureKind::Other, (0, 0)), None),
        };
        wiring.stop_all();
        let recv_report = join(recv_handle, StageId::Recv);
        let writer_report = join(writer_handle, StageId::Writer);
        let mut stages = Vec::new();
        stages.extend(recv_report.map(|(_, r)| r));
        stages.extend(report);
        stages.extend(writer_report.map(|(_, r)| r));
        ReceiveOutcome { result, failure, stages, disk, delivered }
    })
}

/// The data path's receive end: the kernel's UDP socket or AF_XDP sockets.
pub enum AnySource {
    /// `recvmmsg` on a UDP socket.
    Udp(DataSocket),
    /// The RX rings of AF_XDP sockets (one per queue).
    Xdp(XdpSource),
}

impl AnySource {
    fn recv(&mut self, batch: &mut RxBatch) -> usize {
        match self {
            AnySource::Udp(s) => s.recv_batch(batch).unwrap_or_default(),
            AnySource::Xdp(s) => s.recv(batch),
        }
    }

    fn wait(&mut self, timeout: Duration) {
        match self {
            AnySource::Udp(s) => {
                let _ = s.wait_readable(timeout);
            }
            AnySource::Xdp(s) => s.wait(timeout),
        }
    }
}

/// The recv stage: fills receive batches and hands them on.
///
/// It does not wait for the reassembly stage beyond the socket: with every batch downstream it stops
/// receiving, and the socket's receive buffer (64 MiB) is the queue; when that overflows the kernel drops and
/// counts (`RcvbufErrors`), as a NIC drops when its fill ring runs dry. Receiving into a scratch batch to drop
/// in user space would only spend a core the reassembly stage needs to catch up.
struct RecvStage {
    sock: AnySource,
    slots: Arc<SlotPool<RxBatch>>,
    spare: Vec<Slot<RxBatch>>,
    out: Outbox<Slot<RxBatch>>,
    free: Inbox<Slot<RxBatch>>,
}

impl Stage for RecvStage {
    type Output = ();
    const ID: StageId = StageId::Recv;

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        while let Some(t) = self.free.pop() {
            self.spare.push(t);
        }
        self.free.release();
        let Some(mut token) = self.spare.pop() else {
            return Progress::WaitOutput(Duration::from_millis(1));
        };
        let batch = self.slots.get(&mut token);
        let n = self.sock.recv(batch);
        if n == 0 {
            self.spare.push(token);
            let sock = &mut self.sock;
            cx.wait_input(|| sock.wait(Duration::from_millis(5)));
            return Progress::Busy;
        }
        let bytes: usize = (0..n).map(|k| batch.get(k).0.len()).sum();
        let slots_full = n >= batch.capacity();
        cx.meter.add(n as u64, bytes as u64);
        assert!(self.out.push(token).is_ok(), "rx ring smaller than the batch count");
        self.out.publish();
        if !slots_full {
            // Data is flowing but this receive was short: nap so that the next one returns a fuller batch
            // rather than one datagram per wake-up (the socket buffer holds far more than a nap's worth).
            cx.wait_input(|| std::thread::sleep(RX_NAP));
        }
        Progress::Busy
    }

    fn on_stop(self, _cx: &mut StageCx) {}
}

struct Reassembly<'a> {
    session: ReceiverSession<PipeStore>,
    ch: &'a mut ControlChannel,
    fb_sock: DataSocket,
    fb_buf: Vec<u8>,
    slots: Arc<SlotPool<RxBatch>>,
    input: Inbox<Slot<RxBatch>>,
    free: Outbox<Slot<RxBatch>>,
    /// The sender's data address, once a datagram named it.
    peer: Option<SocketAddr>,
    result: Option<Result<ReceiverSummary, String>>,
    /// What kind of failure `result` is, if it is one.
    failure: FailureKind,
    clock: MonotonicClock,
    live: Arc<Live>,
    next_publish: std::time::Instant,
    /// The daemon's share for the session (see [`ReceiveSetup::rate_share`]).
    rate_share: Option<Arc<RateShareCell>>,
}

impl Reassembly<'_> {
    /// Copies the core's progress and counters into [`Live`] (a handful of relaxed stores).
    fn publish(&self) {
        let core = &self.session.core;
        let (files, bytes) = core.progress();
        self.live.set_done(files, bytes);
        let st = core.stats();
        let sum = core.summary();
        let l = &self.live;
        live::set(&l.packets_received, st.packets_received);
        live::set(&l.duplicates, sum.duplicates);
        live::set(&l.dropped_invalid, sum.dropped_invalid);
        live::set(&l.dropped_auth, sum.dropped_auth);
        live::set(&l.dropped_replayed, sum.dropped_replayed);
        live::set(&l.rate_share_bps, core.rate_share_bps().unwrap_or(0));
    }
}

/// The reassembly stage: datagrams into the protocol core and the store, verification, feedback and
/// control, until the session ends.
impl Stage for Reassembly<'_> {
    type Output = (Result<ReceiverSummary, String>, FailureKind, (u64, u64));
    const ID: StageId = StageId::Reassembly;

    fn on_start(&mut self, _cx: &mut StageCx) {
        self.ch.wake_on_event(Some(std::thread::current()));
    }

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        let now = self.clock.now();
        let mut got = false;
        while let Some(mut token) = self.input.pop() {
            let batch = self.slots.get(&mut token);
            for k in 0..batch.len() {
                let (datagram, src) = batch.get_mut(k);
                // The first datagram that passes the tag check with this session's id names the sender's
                // data address; feedback goes there.
                if self.session.handle_datagram(now, datagram).is_ok() && self.peer.is_none() {
                    self.peer = Some(src);
                }
            }
            cx.meter.add(batch.len() as u64, 0);
            assert!(self.free.push(token).is_ok(), "rx_free ring smaller than the batch count");
            got = true;
        }
        if got {
            self.input.release();
            self.free.publish();
        }
        let session = &mut self.session;
        session.process();
        while let Some(ev) = self.ch.try_recv() {
            match ev {
                ControlEvent::Msg(m) => session.handle_control(now, m),
                ControlEvent::Closed => {
                    session.core.fail_as(FailureKind::ControlLost, "the sender closed the control connection".into())
                }
                ControlEvent::Failed(e) => {
                    session.core.fail_as(FailureKind::ControlLost, format!("control connection failed: {e}"))
                }
            }
        }
        session.handle_timeout(now);
        if let Some(p) = self.peer {
            while let Some(len) = session.poll_transmit(now, &mut self.fb_buf) {
                // A refused or dropped feedback datagram is just lost feedback: the next one repeats it.
                let _ = self.fb_sock.send_to(&self.fb_buf[..len], p);
            }
        }
        while let Some(m) = session.poll_control() {
            if let Err(e) = self.ch.send(&m) {
                session.core.fail_as(FailureKind::ControlLost, format!("sending to the sender: {e}"));
            }
        }
        if let Some(outcome) = session.outcome() {
            if std::env::var_os("MOVER_DEBUG_STATS").is_some() {
                eprintln!("receiver stats: {:?}", session.core.stats());
            }
            // Nothing may still write into files the tree is about to remove or has committed.
            let _ = session.store.drain();
            let dropped = session.store.dropped();
            self.result = Some(outcome.map(|()| ReceiverSummary { dropped, ..session.core.summary() }));
            self.failure = session.core.failure_kind();
            return Progress::Done;
        }
        if got {
            return Progress::Busy;
        }
        let wait = session.poll_timeout().map_or(Duration::from_millis(10), |d| d.since(self.clock.now()));
        Progress::WaitInput(wait.min(Duration::from_millis(10)))
    }

    /// The time the store spent waiting for the writer is the stage's output stall.
    fn housekeeping(&mut self, cx: &mut StageCx) {
        cx.meter.stalled_on_output(std::mem::take(&mut self.session.store.stalled));
        // A changed share is queued for the sender within a millisecond of the governor's change (the core
        // tells only changes), and goes out with the next poll's control messages.
        if let Some(bps) = self.rate_share.as_ref().and_then(|cell| cell.get()) {
            self.session.core.set_rate_share(bps);
        }
        let now = std::time::Instant::now();
        if now >= self.next_publish {
            self.publish();
            self.next_publish = now + PUBLISH_INTERVAL;
        }
    }

    /// It ends the session itself.
    fn may_stop(&mut self) -> bool {
        false
    }

    fn on_stop(mut self, _cx: &mut StageCx) -> Self::Output {
        self.publish();
        self.ch.wake_on_event(None);
        let result =
            self.result.take().unwrap_or_else(|| Err("the reassembly stage stopped before the session ended".into()));
        let st = self.session.core.stats();
        (result, self.failure, (st.bytes_delivered, st.wire_bytes_delivered))
    }
}
