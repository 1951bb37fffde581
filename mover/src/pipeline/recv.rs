//! The receiver's pipeline: recv -> reassembly -> writer, with runs' buffers coming back from the writer.
//! See [`super::topology`] for the table of stages and rings.
//!
//! The reassembly stage owns the protocol core ([`ReceiverSession`] over a [`PipeStore`]), the control
//! channel and a socket handle for feedback; the recv stage owns the receiving socket handle and the receive
//! batches it fills; the writer stage owns the [`DiskWriter`].

use super::bell::Bell;
use super::ring::{ring, Consumer, Producer};
use super::slots::Slots;
use super::stats::{StageMeter, StageReport};
use super::store::{PipeStore, WriteItem, Written};
use super::topology::{depth, pin_current_thread, Topology};
use super::write_stage::run_writer;
use crate::disk::{BackendChoice, BufferPool, DiskBackend, DiskWriter};
use crate::files::DestTree;
use crate::net::xdp_io::XdpSource;
use crate::net::xsk::UmemArea;
use crate::net::{ControlChannel, ControlEvent, DataSocket, RxBatch};
use crate::proto::{Receiver, ReceiverSession};
use crate::time::{Clock, MonotonicClock};
use crate::wire::control::ReceiverSummary;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How the receiver's pipeline is set up.
#[derive(Debug, Clone)]
pub struct ReceiveSetup {
    /// Stages, rings and cores.
    pub topology: Topology,
    /// Disk backend choice (`MOVER_DISK`).
    pub disk: BackendChoice,
    /// Writes in flight (1 ..= the run pool's size).
    pub queue_depth: u32,
}

/// How a pipelined receive ended.
pub struct ReceiveOutcome {
    /// The summary of what was committed, or why the session failed.
    pub result: Result<ReceiverSummary, String>,
    /// Per-stage reports, in topology order.
    pub stages: Vec<StageReport>,
    /// The disk backend the writer used.
    pub disk: DiskBackend,
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
    let pool = BufferPool::new(depth::WRITES as u32, RUN_BYTES);
    let region = pool.region().clone();
    let writer = match DiskWriter::new(region.clone(), setup.disk, setup.queue_depth.clamp(1, depth::WRITES as u32)) {
        Ok(w) => w,
        Err(e) => {
            return ReceiveOutcome {
                result: Err(format!("disk writer: {e}")),
                stages: vec![],
                disk: DiskBackend::Pread,
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
            Err(e) => return ReceiveOutcome { result: Err(e.to_string()), stages: vec![], disk },
        },
    };
    let (rx_slots, rx_spare) = Slots::new(depth::RX_BATCHES as u32, |_| {
        if let Some(area) = &xdp_area {
            RxBatch::for_frames(area.clone(), RX_SLOTS)
        } else if gro {
            RxBatch::new(RX_SLOTS_GRO, RxBatch::GRO_DATAGRAM)
        } else {
            RxBatch::new(RX_SLOTS, max_datagram)
        }
    });
    let (rx_tx, rx_rx) = ring::<u32>(depth::RX_BATCHES);
    let (rx_free_tx, rx_free_rx) = ring::<u32>(depth::RX_BATCHES);
    let (writes_tx, writes_rx) = ring::<WriteItem>(depth::WRITES);
    let (written_tx, written_rx) = ring::<Written>(depth::WRITES);
    let reassembly_bell = Bell::new();
    let writer_bell = Bell::new();
    let stop = Arc::new(AtomicBool::new(false));
    let store = PipeStore::new(tree, region, writes_tx, written_rx, writer_bell.clone());
    let session = ReceiverSession::new(core, store);

    std::thread::scope(|scope| {
        let spawn = |name: &'static str| std::thread::Builder::new().name(format!("mover-{name}"));
        let core_of = |name: &str| topo.core_of(name);
        let (st, wb, rb) = (stop.clone(), writer_bell.clone(), reassembly_bell.clone());
        let writer_handle = spawn("writer")
            .spawn_scoped(scope, move || {
                pin_current_thread(core_of("writer"));
                let meter = StageMeter::new("writer", core_of("writer"));
                run_writer(writer, depth::WRITES, writes_rx, written_tx, rb, wb, st, meter)
            })
            .expect("spawn writer stage");
        let recv = RecvStage {
            sock: rx_sock,
            slots: rx_slots.clone(),
            spare: rx_spare,
            out: rx_tx,
            free: rx_free_rx,
            bell: reassembly_bell.clone(),
            stop: stop.clone(),
        };
        let recv_handle = spawn("recv")
            .spawn_scoped(scope, move || {
                pin_current_thread(core_of("recv"));
                run_recv(recv, StageMeter::new("recv", core_of("recv")))
            })
            .expect("spawn recv stage");
        let reassembly = Reassembly {
            session,
            ch,
            fb_sock,
            slots: rx_slots,
            input: rx_rx,
            free: rx_free_tx,
            bell: reassembly_bell.clone(),
            clock,
        };
        let handle = spawn("reassembly")
            .spawn_scoped(scope, move || {
                pin_current_thread(core_of("reassembly"));
                run_reassembly(reassembly, StageMeter::new("reassembly", core_of("reassembly")))
            })
            .expect("spawn reassembly stage");
        let (result, report) = handle.join().unwrap_or_else(|_| (Err("the reassembly stage panicked".into()), None));
        stop.store(true, Ordering::Relaxed);
        writer_bell.ring();
        let recv_report = recv_handle.join();
        let writer_report = writer_handle.join();
        let mut stages: Vec<StageReport> = recv_report.ok().into_iter().collect();
        stages.extend(report);
        stages.extend(writer_report.ok());
        ReceiveOutcome { result, stages, disk }
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

struct RecvStage {
    sock: AnySource,
    slots: Arc<Slots<RxBatch>>,
    spare: Vec<u32>,
    out: Producer<u32>,
    free: Consumer<u32>,
    bell: Bell,
    stop: Arc<AtomicBool>,
}

/// The recv stage: fills receive batches and hands them on.
///
/// It does not wait for the reassembly stage beyond the socket: with every batch downstream it stops
/// receiving, and the socket's receive buffer (64 MiB) is the queue; when that overflows the kernel drops and
/// counts (`RcvbufErrors`), as a NIC drops when its fill ring runs dry. Receiving into a scratch batch to drop
/// in user space would only spend a core the reassembly stage needs to catch up.
fn run_recv(mut st: RecvStage, mut meter: StageMeter) -> StageReport {
    while !st.stop.load(Ordering::Relaxed) {
        while let Some(i) = st.free.pop() {
            st.spare.push(i);
        }
        st.free.release();
        let Some(i) = st.spare.pop() else {
            meter.park_for_output(Duration::from_millis(1));
            continue;
        };
        // Safety: `i` came from the spare list, which only holds indices returned by the reassembly stage
        // (or never handed out): this stage holds it until it pushes it.
        let batch = unsafe { st.slots.get_mut(i) };
        let n = st.sock.recv(batch);
        if n == 0 {
            st.spare.push(i);
            let t = Instant::now();
            st.sock.wait(Duration::from_millis(5));
            meter.stalled_on_input(t.elapsed());
            continue;
        }
        let bytes: usize = (0..n).map(|k| batch.get(k).0.len()).sum();
        let slots_full = n >= batch.capacity();
        meter.add(n as u64, bytes as u64);
        assert!(st.out.push(i).is_ok(), "rx ring smaller than the batch count");
        st.out.publish();
        st.bell.ring();
        if !slots_full {
            // Data is flowing but this receive was short: nap so that the next one returns a fuller batch
            // rather than one datagram per wake-up (the socket buffer holds far more than a nap's worth).
            let t = Instant::now();
            std::thread::sleep(RX_NAP);
            meter.stalled_on_input(t.elapsed());
        }
    }
    meter.finish()
}

struct Reassembly<'a> {
    session: ReceiverSession<PipeStore>,
    ch: &'a mut ControlChannel,
    fb_sock: DataSocket,
    slots: Arc<Slots<RxBatch>>,
    input: Consumer<u32>,
    free: Producer<u32>,
    bell: Bell,
    clock: MonotonicClock,
}

/// The reassembly stage: datagrams into the protocol core and the store, verification, feedback and
/// control, until the session ends.
fn run_reassembly(
    mut r: Reassembly<'_>,
    mut meter: StageMeter,
) -> (Result<ReceiverSummary, String>, Option<StageReport>) {
    r.bell.register();
    r.ch.wake_on_event(Some(std::thread::current()));
    let mut fb_buf = vec![0u8; r.session.core.max_datagram()];
    let mut peer: Option<SocketAddr> = None;
    let result = loop {
        let now = r.clock.now();
        let mut got = false;
        while let Some(i) = r.input.pop() {
            // Safety: popped from the rx ring; handed back through `free` below.
            let batch = unsafe { r.slots.get_mut(i) };
            for k in 0..batch.len() {
                let (datagram, src) = batch.get_mut(k);
                // The first datagram that passes the tag check with this session's id names the sender's
                // data address; feedback goes there.
                if r.session.handle_datagram(now, datagram).is_ok() && peer.is_none() {
                    peer = Some(src);
                }
            }
            meter.add(batch.len() as u64, 0);
            assert!(r.free.push(i).is_ok(), "rx_free ring smaller than the batch count");
            got = true;
        }
        if got {
            r.input.release();
            r.free.publish();
        }
        r.session.process();
        while let Some(ev) = r.ch.try_recv() {
            match ev {
                ControlEvent::Msg(m) => r.session.handle_control(now, m),
                ControlEvent::Closed => r.session.core.fail("the sender closed the control connection".into()),
                ControlEvent::Failed(e) => r.session.core.fail(format!("control connection failed: {e}")),
            }
        }
        r.session.handle_timeout(now);
        if let Some(p) = peer {
            while let Some(len) = r.session.poll_transmit(now, &mut fb_buf) {
                // A refused or dropped feedback datagram is just lost feedback: the next one repeats it.
                let _ = r.fb_sock.send_to(&fb_buf[..len], p);
            }
        }
        while let Some(m) = r.session.poll_control() {
            if let Err(e) = r.ch.send(&m) {
                r.session.core.fail(format!("sending to the sender: {e}"));
            }
        }
        meter.stalled_on_output(std::mem::take(&mut r.session.store.stalled));
        if let Some(outcome) = r.session.outcome() {
            if std::env::var_os("MOVER_DEBUG_STATS").is_some() {
                eprintln!("receiver stats: {:?}", r.session.core.stats());
            }
            // Nothing may still write into files the tree is about to remove or has committed.
            let _ = r.session.store.drain();
            break outcome.map(|()| r.session.core.summary());
        }
        if got {
            continue;
        }
        let wait = r.session.poll_timeout().map_or(Duration::from_millis(10), |d| d.since(r.clock.now()));
        if !wait.is_zero() {
            meter.park_for_input(wait.min(Duration::from_millis(10)));
        }
    };
    r.ch.wake_on_event(None);
    (result, Some(meter.finish()))
}
