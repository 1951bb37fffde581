//! The sender's pipeline: reader -> packetizer -> pacer, with the NAK stage feeding feedback back to the
//! packetizer. See [`super::topology`] for the table of stages and rings.
//!
//! The packetizer owns the protocol core ([`Sender`]) and the control channel; the other stages own their
//! I/O (the disk reader, the sending socket handle, the receiving socket handle). Buffers move between them
//! by index: read chunks (the reader's pool), send batches ([`TxSlot`]s) and feedback buffers.

use super::bell::Bell;
use super::chunks::ChunkSource;
use super::pace::{run_pacer, AnySink, PacerStage, TxSlot};
use super::reader::{run_reader, Chunk, ReaderShared};
use super::ring::{ring, Consumer, Producer};
use super::slots::Slots;
use super::stats::{StageMeter, StageReport};
use super::topology::{depth, pin_current_thread, Topology};
use crate::disk::{BackendChoice, DiskBackend, DiskReader, ReaderConfig};
use crate::files::SourceFiles;
use crate::net::xdp_io::XdpSink;
use crate::net::xsk::{UmemArea, FRAME_SIZE};
use crate::net::{ControlChannel, ControlEvent, DataSocket, RxBatch, TxBatch};
use crate::proto::{Sender, SenderState};
use crate::time::{Clock, MonotonicClock, Time};
use crate::wire::control::{ControlMsg, ReceiverSummary};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per read chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Reads in flight in the reader stage by default (`push --queue-depth`); at most the chunk pool's size.
pub const READ_QUEUE_DEPTH: u32 = 8;
/// Datagrams per send batch.
pub const TX_BATCH: usize = 32;
/// Bytes in front of each datagram in an AF_XDP send frame, for the Ethernet, IP and UDP headers.
pub const TX_HEADROOM: usize = 128;
/// AF_XDP frames the sender's TX area needs: one per slot of every send batch.
pub const XDP_TX_FRAMES: usize = depth::TX_BATCHES * TX_BATCH;

/// The XDP path of the sender: the sink over the AF_XDP socket and the area of its TX frames, which the send
/// batches are laid over (batch `i` = frames `i * TX_BATCH ..`).
pub struct XdpTx {
    /// The pacer's sink.
    pub sink: XdpSink,
    /// The frames.
    pub area: Arc<UmemArea>,
}
/// Datagrams per feedback receive.
const FEEDBACK_RX: usize = 16;

/// How the sender's pipeline is set up.
#[derive(Debug, Clone)]
pub struct SendSetup {
    /// Stages, rings and cores.
    pub topology: Topology,
    /// Disk backend choice (`MOVER_DISK`).
    pub disk: BackendChoice,
    /// Read with O_DIRECT where the file system allows it.
    pub direct: bool,
    /// Reads in flight (1 ..= the chunk pool's size).
    pub queue_depth: u32,
}

/// How a pipelined send ended.
pub struct SendOutcome {
    /// The receiver's summary, or why the session failed.
    pub result: Result<ReceiverSummary, String>,
    /// Per-stage reports, in topology order.
    pub stages: Vec<StageReport>,
    /// The disk backend that ran.
    pub disk: DiskBackend,
}

/// Runs the session through the pipeline until the receiver confirms or the session fails.
#[allow(clippy::too_many_arguments)]
pub fn run_send(
    sender: &mut Sender,
    paths: Vec<PathBuf>,
    sizes: Vec<u64>,
    sock: DataSocket,
    xdp: Option<XdpTx>,
    ch: &mut ControlChannel,
    clock: MonotonicClock,
    max_datagram: usize,
    setup: &SendSetup,
) -> SendOutcome {
    let topo = &setup.topology;
    let reader = match DiskReader::new(&ReaderConfig {
        backend: setup.disk,
        queue_depth: setup.queue_depth.clamp(1, depth::CHUNKS as u32),
        block_bytes: CHUNK_BYTES,
        buffers: depth::CHUNKS as u32,
        max_open_files: 64,
    }) {
        Ok(r) => r,
        Err(e) => {
            return SendOutcome { result: Err(format!("disk reader: {e}")), stages: vec![], disk: DiskBackend::Pread }
        }
    };
    let disk = reader.backend();
    let (sink, tx_area) = match xdp {
        Some(x) => (AnySink::Xdp(Box::new(x.sink)), Some(x.area)),
        None => match sock.try_clone() {
            Ok(s) => (AnySink::Udp(s), None),
            Err(e) => return SendOutcome { result: Err(e.to_string()), stages: vec![], disk },
        },
    };
    let rx_sock = sock;

    let reader_shared = ReaderShared::default();
    let stop = reader_shared.stop.clone();
    let (chunks_tx, chunks_rx) = ring::<Chunk>(depth::CHUNKS);
    let (chunk_free_tx, chunk_free_rx) = ring::<u32>(depth::CHUNKS);
    let (tx_tx, tx_rx) = ring::<u32>(depth::TX_BATCHES);
    let (tx_free_tx, tx_free_rx) = ring::<u32>(depth::TX_BATCHES);
    let (fb_tx, fb_rx) = ring::<u32>(depth::FEEDBACK);
    let (fb_free_tx, fb_free_rx) = ring::<u32>(depth::FEEDBACK);
    let (tx_slots, tx_spare) = Slots::new(depth::TX_BATCHES as u32, |i| {
        let batch = match &tx_area {
            // Batch i is frames i * TX_BATCH .. (i + 1) * TX_BATCH of the TX area (see `XdpTx`).
            Some(area) => TxBatch::in_frames(area.clone(), i as usize * TX_BATCH * FRAME_SIZE, TX_BATCH, TX_HEADROOM),
            None => TxBatch::new(TX_BATCH, max_datagram),
        };
        TxSlot { batch, nak_at: None }
    });
    let (fb_slots, fb_spare) =
        Slots::new(depth::FEEDBACK as u32, |_| FeedbackBuf { bytes: vec![0; max_datagram], len: 0, at: Time(0) });
    let pacer_bell = Bell::new();
    // The rate policy runs in the core (packetizer); the pacer stage follows what it chose.
    let rate_bps = Arc::new(AtomicU64::new(sender.rate_bps()));
    let released_bytes = Arc::new(AtomicU64::new(0));
    let send_error: Arc<Mutex<Option<String>>> = Arc::default();
    let region = reader.pool().region().clone();
    let source =
        ChunkSource::new(region, chunks_rx, chunk_free_tx, reader_shared.clone(), SourceFiles::new(paths.clone()));

    let mut stages = Vec::new();
    let result = std::thread::scope(|scope| {
        let spawn = |name: &'static str| std::thread::Builder::new().name(format!("mover-{name}"));
        let core = |name: &str| topo.core_of(name);
        let rs = reader_shared.clone();
        let direct = setup.direct;
        let reader_handle = spawn("reader")
            .spawn_scoped(scope, move || {
                pin_current_thread(core("reader"));
                run_reader(
                    reader,
                    paths,
                    sizes,
                    direct,
                    chunks_tx,
                    chunk_free_rx,
                    rs,
                    StageMeter::new("reader", core("reader")),
                )
            })
            .expect("spawn reader stage");
        let pacer_stage = PacerStage {
            sink,
            slots: tx_slots.clone(),
            input: tx_rx,
            free: tx_free_tx,
            packetizer_bell: reader_shared.packetizer_bell.clone(),
            own_bell: pacer_bell.clone(),
            rate_bps: rate_bps.clone(),
            released_bytes: released_bytes.clone(),
            own_core: topo.has_own_core("pacer"),
            stop: stop.clone(),
            error: send_error.clone(),
            clock,
        };
        let pacer_handle = spawn("pacer")
            .spawn_scoped(scope, move || {
                pin_current_thread(core("pacer"));
                run_pacer(pacer_stage, StageMeter::new("pacer", core("pacer")))
            })
            .expect("spawn pacer stage");
        let nak = NakStage {
            sock: rx_sock,
            slots: fb_slots.clone(),
            spare: fb_spare,
            out: fb_tx,
            free: fb_free_rx,
            packetizer_bell: reader_shared.packetizer_bell.clone(),
            stop: stop.clone(),
            clock,
            max_datagram,
        };
        let nak_handle = spawn("nak")
            .spawn_scoped(scope, move || {
                pin_current_thread(core("nak"));
                run_nak(nak, StageMeter::new("nak", core("nak")))
            })
            .expect("spawn nak stage");
        let packetizer = Packetizer {
            sender,
            ch,
            source,
            tx_slots,
            tx_spare,
            tx_out: tx_tx,
            tx_free: tx_free_rx,
            fb_slots,
            fb_in: fb_rx,
            fb_free: fb_free_tx,
            shared: reader_shared.clone(),
            pacer_bell: pacer_bell.clone(),
            send_error: send_error.clone(),
            rate_bps,
            released_bytes,
            clock,
        };
        let pk_handle = spawn("packetizer")
            .spawn_scoped(scope, move || {
                pin_current_thread(core("packetizer"));
                run_packetizer(packetizer, StageMeter::new("packetizer", core("packetizer")))
            })
            .expect("spawn packetizer stage");
        let (result, pk_report) =
            pk_handle.join().unwrap_or_else(|_| (Err("the packetizer stage panicked".into()), None));
        stop.store(true, Ordering::Relaxed);
        reader_shared.reader_bell.ring();
        pacer_bell.ring();
        let join = |h: std::thread::ScopedJoinHandle<'_, StageReport>, name: &'static str| {
            h.join().unwrap_or_else(|_| {
                eprintln!("mover: the {name} stage panicked");
                StageMeter::new(name, None).finish()
            })
        };
        stages.push(join(reader_handle, "reader"));
        if let Some(r) = pk_report {
            stages.push(r);
        }
        stages.push(join(pacer_handle, "pacer"));
        stages.push(join(nak_handle, "nak"));
        result
    });
    SendOutcome { result, stages, disk }
}

/// One feedback datagram handed from the NAK stage to the packetizer.
struct FeedbackBuf {
    bytes: Vec<u8>,
    len: usize,
    /// When it was received.
    at: Time,
}

struct NakStage {
    sock: DataSocket,
    slots: Arc<Slots<FeedbackBuf>>,
    spare: Vec<u32>,
    out: Producer<u32>,
    free: Consumer<u32>,
    packetizer_bell: Bell,
    stop: Arc<AtomicBool>,
    clock: MonotonicClock,
    max_datagram: usize,
}

/// The NAK stage: receives feedback and hands each datagram to the packetizer. It never blocks on the
/// packetizer: with no free buffer, a feedback datagram is dropped and counted (the next one repeats it).
fn run_nak(mut st: NakStage, mut meter: StageMeter) -> StageReport {
    let mut rx = RxBatch::new(FEEDBACK_RX, st.max_datagram);
    let mut dropped = 0u64;
    while !st.stop.load(Ordering::Relaxed) {
        let n = match st.sock.recv_batch(&mut rx) {
            Ok(n) => n,
            // ICMP port unreachable for an earlier datagram: the control channel tells the story.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => 0,
            Err(_) => 0,
        };
        if n == 0 {
            let t = Instant::now();
            let _ = st.sock.wait_readable(Duration::from_millis(5));
            meter.stalled_on_input(t.elapsed());
            continue;
        }
        let now = st.clock.now();
        while let Some(i) = st.free.pop() {
            st.spare.push(i);
        }
        st.free.release();
        let mut pushed = 0;
        for k in 0..n {
            let (d, _) = rx.get(k);
            let Some(i) = st.spare.pop() else {
                dropped += 1;
                continue;
            };
            // Safety: `i` came from the spare list (never handed out twice): this stage holds it.
            let fb = unsafe { st.slots.get_mut(i) };
            let len = d.len().min(fb.bytes.len());
            fb.bytes[..len].copy_from_slice(&d[..len]);
            fb.len = len;
            fb.at = now;
            if st.out.push(i).is_err() {
                st.spare.push(i);
                dropped += 1;
                continue;
            }
            pushed += 1;
            meter.add(1, len as u64);
        }
        if pushed > 0 {
            st.out.publish();
            st.packetizer_bell.ring();
        }
    }
    if dropped > 0 {
        eprintln!("mover: {dropped} feedback datagrams dropped: the packetizer fell behind");
    }
    meter.finish()
}

/// Measures `nak_to_retransmit`: from the arrival (at the NAK stage) of a feedback datagram that made blocks
/// pending to the send of the first retransmission after it, i.e. how long the pipeline's queues (feedback
/// ring, packetizer, `tx` ring, pacer) hold a repair back. The core resends pending blocks ahead of new data,
/// so that first retransmission answers this feedback or an earlier one. Feedback arriving while one is
/// already waiting is not sampled (the waiting one is older, so the delay reported is the longer).
#[derive(Default)]
struct NakClock {
    waiting: Option<Time>,
}

impl NakClock {
    fn on_feedback(&mut self, newly_pending: u64, at: Time) {
        if newly_pending > 0 && self.waiting.is_none() {
            self.waiting = Some(at);
        }
    }

    /// A pending block was resent: the arrival of the feedback it answers, if one was waiting.
    fn on_retransmit(&mut self) -> Option<Time> {
        self.waiting.take()
    }

    /// Nothing is pending any more (acknowledged meanwhile): nothing waits.
    fn clear(&mut self) {
        self.waiting = None;
    }
}

struct Packetizer<'a> {
    sender: &'a mut Sender,
    ch: &'a mut ControlChannel,
    source: ChunkSource,
    tx_slots: Arc<Slots<TxSlot>>,
    tx_spare: Vec<u32>,
    tx_out: Producer<u32>,
    tx_free: Consumer<u32>,
    fb_slots: Arc<Slots<FeedbackBuf>>,
    fb_in: Consumer<u32>,
    fb_free: Producer<u32>,
    shared: ReaderShared,
    pacer_bell: Bell,
    send_error: Arc<Mutex<Option<String>>>,
    /// The pacer stage's rate, published after feedback changed the core's choice.
    rate_bps: Arc<AtomicU64>,
    /// Datagram bytes the pacer stage released so far.
    released_bytes: Arc<AtomicU64>,
    clock: MonotonicClock,
}

/// The packetizer: feedback and control into the protocol core, datagrams out into send batches, until the
/// session ends. Returns the session's result and the stage report.
fn run_packetizer(
    mut p: Packetizer<'_>,
    mut meter: StageMeter,
) -> (Result<ReceiverSummary, String>, Option<StageReport>) {
    p.shared.packetizer_bell.register();
    p.ch.wake_on_event(Some(std::thread::current()));
    let mut naks = NakClock::default();
    let mut filling: Option<u32> = None;
    // Datagram bytes built so far; less the pacer's released count, the backlog between the stages.
    let mut built_bytes: u64 = 0;
    let result = loop {
        let now = p.clock.now();
        while let Some(i) = p.fb_in.pop() {
            // Safety: popped from the feedback ring; returned through `fb_free` below.
            let fb = unsafe { p.fb_slots.get_mut(i) };
            let before = p.sender.pending_retransmits();
            let _ = p.sender.handle_datagram(now, &mut fb.bytes[..fb.len]);
            naks.on_feedback(p.sender.pending_retransmits().saturating_sub(before), fb.at);
            assert!(p.fb_free.push(i).is_ok(), "feedback_free ring smaller than the buffer count");
        }
        p.fb_in.release();
        p.fb_free.publish();
        let rate = p.sender.rate_bps();
        if rate != p.rate_bps.load(Ordering::Relaxed) {
            p.rate_bps.store(rate, Ordering::Relaxed);
        }
        while let Some(ev) = p.ch.try_recv() {
            match ev {
                ControlEvent::Msg(m) => p.sender.handle_control(now, m),
                ControlEvent::Closed if !p.sender.is_finished() => {
                    p.sender.fail("the server closed the control connection".into())
                }
                ControlEvent::Failed(e) => p.sender.fail(format!("control connection failed: {e}")),
                ControlEvent::Closed => {}
            }
        }
        if let Some(e) = p.send_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.sender.fail(e);
        }
        p.sender.handle_timeout(now);

        // Fill send batches while the core has datagrams to give and batches are free.
        let released = p.released_bytes.load(Ordering::Relaxed);
        let mut out_stalled = false;
        let mut published = false;
        loop {
            let idx = match filling {
                Some(i) => i,
                None => {
                    while let Some(i) = p.tx_free.pop() {
                        p.tx_spare.push(i);
                    }
                    p.tx_free.release();
                    match p.tx_spare.pop() {
                        Some(i) => {
                            filling = Some(i);
                            i
                        }
                        None => {
                            out_stalled = true;
                            break;
                        }
                    }
                }
            };
            // Safety: `idx` is held by this stage (spare list or being filled) until pushed to `tx`.
            let slot = unsafe { p.tx_slots.get_mut(idx) };
            let mut more = true;
            while let Some(buf) = slot.batch.slot() {
                let pending_before = p.sender.pending_retransmits();
                debug_assert!(built_bytes >= released, "the pacer released more than was built");
                p.sender.set_send_backlog(built_bytes - released);
                match p.sender.poll_transmit(now, &mut p.source, buf) {
                    Ok(Some(len)) => {
                        slot.batch.commit(len);
                        built_bytes += len as u64;
                        meter.add(1, len as u64);
                        if p.sender.pending_retransmits() < pending_before {
                            if let Some(at) = naks.on_retransmit() {
                                slot.nak_at = Some(slot.nak_at.map_or(at, |t: Time| t.min(at)));
                            }
                        }
                    }
                    Ok(None) => {
                        more = false;
                        break;
                    }
                    Err(_) => {
                        more = false;
                        break;
                    }
                }
            }
            if p.sender.pending_retransmits() == 0 {
                naks.clear();
            }
            if slot.batch.is_empty() {
                break;
            }
            assert!(p.tx_out.push(idx).is_ok(), "tx ring smaller than the batch count");
            filling = None;
            published = true;
            if !more {
                break;
            }
        }
        if published {
            p.tx_out.publish();
            p.pacer_bell.ring();
        }
        meter.stalled_on_input(std::mem::take(&mut p.source.stalled));

        while let Some(m) = p.sender.poll_control() {
            if let Err(e) = p.ch.send(&m) {
                p.sender.fail(format!("sending to the server: {e}"));
            }
        }
        match p.sender.state() {
            SenderState::Done(summary) => break Ok(*summary),
            SenderState::Failed(m) => {
                let _ = p.ch.send(&ControlMsg::Error { message: m.clone() });
                break Err(m.clone());
            }
            _ => {}
        }
        let wait = p.sender.poll_timeout(now).map_or(Duration::from_millis(10), |d| d.since(p.clock.now()));
        if wait.is_zero() && !out_stalled {
            continue;
        }
        let wait = wait.clamp(Duration::from_micros(20), Duration::from_millis(10));
        if out_stalled {
            meter.park_for_output(wait);
        } else {
            meter.park_for_input(wait);
        }
    };
    p.ch.wake_on_event(None);
    p.source.release_all();
    p.shared.stop.store(true, Ordering::Relaxed);
    (result, Some(meter.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nak_clock_answers_each_feedback_once_in_order() {
        let mut c = NakClock::default();
        c.on_feedback(0, Time(1)); // nothing new: ignored
        c.on_feedback(3, Time(10));
        c.on_feedback(2, Time(20)); // the one at 10 still waits: the older one is measured
        assert_eq!(c.on_retransmit(), Some(Time(10)));
        assert_eq!(c.on_retransmit(), None);
        c.on_feedback(1, Time(30));
        c.clear(); // acknowledged before it was resent
        assert_eq!(c.on_retransmit(), None);
        c.on_feedback(1, Time(40));
        assert_eq!(c.on_retransmit(), Some(Time(40)));
    }
}
