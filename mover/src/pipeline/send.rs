//! The sender's pipeline: reader -> packetizer -> pacer, with the NAK stage feeding feedback back to the
//! packetizer. See [`super::topology`] for the table of stages and rings.
//!
//! The packetizer owns the protocol core ([`Sender`]) and the control channel; the other stages own their
//! I/O (the disk reader, the sending socket handle, the receiving socket handle). Buffers move between them
//! by index: read chunks (the reader's pool), send batches ([`TxSlot`]s) and feedback buffers.

use super::chunks::{ChunkSource, Repairs};
pub use super::items::FeedbackBuf;
use super::live::{self, Live, PUBLISH_INTERVAL};
use super::pace::{AnySink, PacerStage, TxSlot};
use super::rate_share::RateShareCell;
use super::reader::{ReaderShared, ReaderStage};
use super::repair::RepairServer;
use super::runtime::{join, Inbox, Outbox, Progress, Stage, StageCx, Wiring};
use super::slots::{BufRegion, Slot, SlotPool};
use super::stats::{StageMeter, StageReport};
use super::topology::{depth, rings, RingId, StageId, Topology};
use crate::disk::{BackendChoice, DiskBackend, DiskReader, ReaderConfig};
use crate::net::xdp_io::XdpSink;
use crate::net::xsk::{UmemArea, FRAME_SIZE};
use crate::net::{ControlChannel, ControlEvent, DataSocket, RxBatch, TxBatch};
use crate::proto::{FailureKind, Sender, SenderState};
use crate::time::{Clock, MonotonicClock, Time};
use crate::wire::control::{ControlMsg, ReceiverSummary};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes per read chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Reads in flight in the reader stage by default (`push --queue-depth`); at most the chunk pool's size.
pub const READ_QUEUE_DEPTH: u32 = 8;
/// Datagrams per send batch. 64 rather than 32: a batch is at most one `sendmmsg` and one wake-up of the
/// pacer, and at 1472-byte datagrams 44 of them make one 64 KiB GSO message, so 32 capped every message
/// (and the kernel's per-message work, on a veth the receiver's softirq too) at 32 segments (issue 18).
pub const TX_BATCH: usize = 64;
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
/// The packetizer's longest nap while a retransmission waits for its repair read (the read's arrival wakes it
/// sooner).
const REPAIR_NAP: Duration = Duration::from_micros(500);
/// Datagrams per feedback receive.
const FEEDBACK_RX: usize = 16;

/// The bytes of buffers [`run_send`] allocates for `topology` (read chunks and repairs, transmit batches):
/// what a daemon reserves from its memory budget before a pull's data path starts.
pub fn buffer_bytes(topology: &Topology, max_datagram: usize) -> u64 {
    let chunks = (topology.depth(RingId::Chunks) + topology.depth(RingId::Repair)) * CHUNK_BYTES;
    (chunks + topology.depth(RingId::Tx) * TX_BATCH * max_datagram) as u64
}

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
    /// How read errors name the files (index = file id); `None`: by their paths. A daemon serving a pull
    /// names them by their manifest paths, so its errors can go to the client as they are.
    pub file_names: Option<Vec<String>>,
    /// How the files are opened: by path, or beneath a daemon's root by descriptor (a pull it serves).
    pub opener: crate::files::Opener,
    /// Where the packetizer publishes progress for other threads (a progress bar, the daemon's metrics).
    pub live: Arc<Live>,
    /// A daemon serving a pull: its governor's share for the session, which the packetizer gives the core
    /// as it changes (PROTOCOL.md §3.7). `None` on a client, whose share comes as `RateShare` messages.
    pub rate_share: Option<Arc<RateShareCell>>,
    /// Where each file id's bytes start in its file (`Scanned::file_bases`: ranges of split files).
    pub bases: Vec<u64>,
    /// A session of a fan-out push: its seat at the reads the sessions share ([`super::shared_reads`]).
    pub shared_reads: Option<super::shared_reads::ReadSeat>,
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
    let chunk_buffers = topo.depth(RingId::Chunks);
    let repair_buffers = topo.depth(RingId::Repair);
    let mut reader = match DiskReader::new(&ReaderConfig {
        backend: setup.disk,
        queue_depth: setup.queue_depth.clamp(1, chunk_buffers as u32),
        block_bytes: CHUNK_BYTES,
        buffers: (chunk_buffers + repair_buffers) as u32,
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

    let mut wiring = Wiring::new(topo);
    let (chunks_tx, chunks_rx) = wiring.ring(rings::CHUNKS);
    let (chunk_free_tx, chunk_free_rx) = wiring.ring(rings::CHUNK_FREE);
    let (repair_tx, repair_rx) = wiring.ring(rings::REPAIR);
    let (repaired_tx, repaired_rx) = wiring.ring(rings::REPAIRED);
    let (tx_tx, tx_rx) = wiring.ring(rings::TX);
    let (tx_free_tx, tx_free_rx) = wiring.ring(rings::TX_FREE);
    let (fb_tx, fb_rx) = wiring.ring(rings::FEEDBACK);
    let (fb_free_tx, fb_free_rx) = wiring.ring(rings::FEEDBACK_FREE);
    wiring.finish();
    // Every pool holds as many objects as the ring that carries them has slots, so a ring never refuses one.
    let (tx_slots, tx_spare) = SlotPool::new(topo.depth(RingId::Tx) as u32, |i| {
        let batch = match &tx_area {
            // Batch i is frames i * TX_BATCH .. (i + 1) * TX_BATCH of the TX area (see `XdpTx`).
            Some(area) => TxBatch::in_frames(area.clone(), i as usize * TX_BATCH * FRAME_SIZE, TX_BATCH, TX_HEADROOM),
            None => TxBatch::new(TX_BATCH, max_datagram),
        };
        TxSlot { batch, rate_bps: sender.rate_bps(), nak_at: None }
    });
    let (fb_slots, fb_spare) = SlotPool::new(topo.depth(RingId::Feedback) as u32, |_| FeedbackBuf {
        bytes: vec![0; max_datagram],
        len: 0,
        at: Time(0),
    });
    // The rate policy runs in the core (packetizer); the pacer stage alone paces, at the rate each batch
    // carries.
    sender.set_driver_pacing();
    let released_bytes = Arc::new(AtomicU64::new(0));
    let send_error: Arc<Mutex<Option<String>>> = Arc::default();
    let region = BufRegion::new(reader.pool().region().clone());
    let reader_shared = ReaderShared::new(wiring.stop_flag());
    // The repair buffers leave the stream's circulation before it starts: neither can starve the other.
    let buffers = (0..repair_buffers)
        .map(|_| region.adopt(reader.reserve().expect("the pool has the repair buffers on top of the stream's")))
        .collect();
    let repairs = Repairs { out: repair_tx, back: repaired_rx, buffers, sizes: sizes.clone() };
    let source = ChunkSource::new(region.clone(), chunks_rx, chunk_free_tx, reader_shared.clone(), repairs);
    let repair_server = RepairServer::new(region.clone(), paths.clone(), repair_rx, repaired_tx);
    let mut reader_stage = ReaderStage::new(
        reader,
        region,
        paths,
        sizes,
        setup.direct,
        chunks_tx,
        chunk_free_rx,
        reader_shared,
        repair_server,
    );
    if let Some(names) = &setup.file_names {
        reader_stage.set_names(names.clone());
    }
    reader_stage.set_opener(setup.opener.clone());
    reader_stage.set_bases(setup.bases.clone());
    if let Some(seat) = &setup.shared_reads {
        reader_stage.set_shared_reads(seat.clone());
    }
    let pacer_stage = PacerStage {
        sink,
        slots: tx_slots.clone(),
        input: tx_rx,
        free: tx_free_tx,
        rate_bps: sender.rate_bps(),
        released_bytes: released_bytes.clone(),
        own_core: topo.has_own_core(StageId::Pacer),
        error: send_error.clone(),
        clock,
    };
    let nak = NakStage {
        sock: rx_sock,
        slots: fb_slots.clone(),
        spare: fb_spare,
        out: fb_tx,
        free: fb_free_rx,
        clock,
        rx: RxBatch::new(FEEDBACK_RX, max_datagram),
        dropped: 0,
    };
    let packetizer = Packetizer {
        sender,
        ch,
        source,
        tx_slots,
        tx_spare,
        filling: None,
        tx_out: tx_tx,
        tx_free: tx_free_rx,
        fb_slots,
        fb_in: fb_rx,
        fb_free: fb_free_tx,
        send_error,
        released_bytes,
        built_bytes: 0,
        naks: NakClock::default(),
        result: None,
        clock,
        live: setup.live.clone(),
        next_publish: std::time::Instant::now(),
        rate_share: setup.rate_share.clone(),
    };

    let mut stages = Vec::new();
    let result = std::thread::scope(|scope| {
        let reader_handle = wiring.spawn(scope, reader_stage);
        let pacer_handle = wiring.spawn(scope, pacer_stage.into_stage());
        let nak_handle = wiring.spawn(scope, nak);
        let pk_handle = wiring.spawn(scope, packetizer);
        let pk = join(pk_handle, StageId::Packetizer);
        wiring.stop_all();
        let report = |r: Option<((), StageReport)>, id: StageId| {
            r.map_or_else(|| StageMeter::new(id.name(), None).finish(), |(_, report)| report)
        };
        stages.push(report(join(reader_handle, StageId::Reader), StageId::Reader));
        let result = match pk {
            Some((result, pk_report)) => {
                stages.push(pk_report);
                result
            }
            None => Err("the packetizer stage panicked".into()),
        };
        stages.push(report(join(pacer_handle, StageId::Pacer), StageId::Pacer));
        stages.push(report(join(nak_handle, StageId::Nak), StageId::Nak));
        result
    });
    SendOutcome { result, stages, disk }
}

/// The NAK stage: receives feedback and hands each datagram to the packetizer. It never blocks on the
/// packetizer: with no free buffer, a feedback datagram is dropped and counted (the next one repeats it).
struct NakStage {
    sock: DataSocket,
    slots: Arc<SlotPool<FeedbackBuf>>,
    spare: Vec<Slot<FeedbackBuf>>,
    out: Outbox<Slot<FeedbackBuf>>,
    free: Inbox<Slot<FeedbackBuf>>,
    clock: MonotonicClock,
    rx: RxBatch,
    dropped: u64,
}

impl Stage for NakStage {
    type Output = ();
    const ID: StageId = StageId::Nak;

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        let n = match self.sock.recv_batch(&mut self.rx) {
            Ok(n) => n,
            // ICMP port unreachable for an earlier datagram: the control channel tells the story.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => 0,
            Err(_) => 0,
        };
        if n == 0 {
            let sock = &mut self.sock;
            let _ = cx.wait_input(|| sock.wait_readable(Duration::from_millis(5)));
            return Progress::Busy;
        }
        let now = self.clock.now();
        while let Some(t) = self.free.pop() {
            self.spare.push(t);
        }
        self.free.release();
        let mut pushed = 0;
        for k in 0..n {
            let (d, _) = self.rx.get(k);
            let Some(mut token) = self.spare.pop() else {
                self.dropped += 1;
                continue;
            };
            let fb = self.slots.get(&mut token);
            let len = d.len().min(fb.bytes.len());
            fb.bytes[..len].copy_from_slice(&d[..len]);
            fb.len = len;
            fb.at = now;
            if let Err(token) = self.out.push(token) {
                self.spare.push(token);
                self.dropped += 1;
                continue;
            }
            pushed += 1;
            cx.meter.add(1, len as u64);
        }
        if pushed > 0 {
            self.out.publish();
        }
        Progress::Busy
    }

    fn on_stop(self, _cx: &mut StageCx) {
        if self.dropped > 0 {
            eprintln!("mover: {} feedback datagrams dropped: the packetizer fell behind", self.dropped);
        }
    }
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
    tx_slots: Arc<SlotPool<TxSlot>>,
    tx_spare: Vec<Slot<TxSlot>>,
    /// The batch being filled.
    filling: Option<Slot<TxSlot>>,
    tx_out: Outbox<Slot<TxSlot>>,
    tx_free: Inbox<Slot<TxSlot>>,
    fb_slots: Arc<SlotPool<FeedbackBuf>>,
    fb_in: Inbox<Slot<FeedbackBuf>>,
    fb_free: Outbox<Slot<FeedbackBuf>>,
    send_error: Arc<Mutex<Option<String>>>,
    /// Datagram bytes the pacer stage released so far.
    released_bytes: Arc<AtomicU64>,
    /// Datagram bytes built so far; less the pacer's released count, the backlog between the stages.
    built_bytes: u64,
    naks: NakClock,
    /// How the session ended, once it has.
    result: Option<Result<ReceiverSummary, String>>,
    clock: MonotonicClock,
    live: Arc<Live>,
    next_publish: std::time::Instant,
    /// The daemon's share for a pull it serves (see [`SendSetup::rate_share`]).
    rate_share: Option<Arc<RateShareCell>>,
}

impl Packetizer<'_> {
    /// Copies the core's progress and counters into [`Live`] (a handful of relaxed stores).
    fn publish(&self) {
        let (files, bytes) = self.sender.progress();
        self.live.set_done(files, bytes);
        let st = self.sender.stats();
        let l = &self.live;
        live::set(&l.packets_sent, st.packets_sent);
        live::set(&l.packets_retransmitted, st.packets_retransmitted);
        live::set(&l.payload_bytes_sent, st.payload_bytes_sent);
        live::set(&l.rate_bps, self.sender.rate_bps());
        live::set(&l.rtt_us, self.sender.srtt_ns() / 1_000);
        live::set(&l.rate_share_bps, self.sender.rate_share_bps().unwrap_or(0));
        live::set(&l.dropped_invalid, st.drops.invalid());
        live::set(&l.dropped_auth, st.drops.get(crate::wire::DropReason::BadTag));
        let replayed = st.drops.get(crate::wire::DropReason::Replayed) + st.drops.get(crate::wire::DropReason::TooOld);
        live::set(&l.dropped_replayed, replayed);
    }
}

/// The packetizer: feedback and control into the protocol core, datagrams out into send batches, until the
/// session ends.
impl Stage for Packetizer<'_> {
    type Output = Result<ReceiverSummary, String>;
    const ID: StageId = StageId::Packetizer;

    fn on_start(&mut self, _cx: &mut StageCx) {
        self.ch.wake_on_event(Some(std::thread::current()));
    }

    fn poll(&mut self, cx: &mut StageCx) -> Progress {
        let now = self.clock.now();
        let mut got_feedback = false;
        while let Some(mut token) = self.fb_in.pop() {
            let fb = self.fb_slots.get(&mut token);
            let before = self.sender.pending_retransmits();
            let _ = self.sender.handle_datagram(now, &mut fb.bytes[..fb.len]);
            self.naks.on_feedback(self.sender.pending_retransmits().saturating_sub(before), fb.at);
            assert!(self.fb_free.push(token).is_ok(), "feedback_free ring smaller than the buffer count");
            got_feedback = true;
        }
        if got_feedback {
            self.fb_in.release();
            self.fb_free.publish();
        }
        while let Some(ev) = self.ch.try_recv() {
            match ev {
                ControlEvent::Msg(m) => self.sender.handle_control(now, m),
                ControlEvent::Closed if !self.sender.is_finished() => {
                    self.sender.fail_as(FailureKind::ControlLost, "the server closed the control connection".into())
                }
                ControlEvent::Failed(e) => {
                    self.sender.fail_as(FailureKind::ControlLost, format!("control connection failed: {e}"))
                }
                ControlEvent::Closed => {}
            }
        }
        if let Some(e) = self.send_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.sender.fail(e);
        }
        self.sender.handle_timeout(now);

        let out_stalled = self.fill_batches(now, cx);

        // Gathered into one write: with many small files this is a `FileHash` per file, and a write each
        // cost a syscall per file here and a read per file on the receiver (issue 18, item 4).
        if let Some(first) = self.sender.poll_control() {
            let sender = &mut self.sender;
            let msgs = std::iter::once(first).chain(std::iter::from_fn(|| sender.poll_control()));
            if let Err(e) = self.ch.send_all(msgs) {
                self.sender.fail_as(FailureKind::ControlLost, format!("sending to the server: {e}"));
            }
        }
        match self.sender.state() {
            SenderState::Done(summary) => {
                self.result = Some(Ok(*summary));
                return Progress::Done;
            }
            SenderState::Failed(m) => {
                let _ = self.ch.send(&ControlMsg::Error { message: m.clone() });
                self.result = Some(Err(m.clone()));
                return Progress::Done;
            }
            _ => {}
        }
        let wait = self.sender.poll_timeout(now).map_or(Duration::from_millis(10), |d| d.since(self.clock.now()));
        // Waiting for a repair read: the core would say "send now" and find the bytes missing again; the
        // `repaired` ring's publish rings this stage's bell.
        let repair_wait = self.source.awaiting_repair();
        if wait.is_zero() && !out_stalled && !repair_wait {
            return Progress::Busy;
        }
        let wait =
            wait.clamp(if repair_wait { REPAIR_NAP } else { Duration::from_micros(20) }, Duration::from_millis(10));
        if out_stalled {
            Progress::WaitOutput(wait)
        } else {
            Progress::WaitInput(wait)
        }
    }

    /// The time spent waiting for chunks inside the core's reads is the stage's input stall.
    fn housekeeping(&mut self, cx: &mut StageCx) {
        cx.meter.stalled_on_input(std::mem::take(&mut self.source.stalled));
        // A changed share is applied within a millisecond of the governor's change, and costs one load here.
        let share = self.rate_share.as_ref().and_then(|cell| cell.get());
        if let Some(bps) = share.filter(|&bps| self.sender.rate_share_bps() != Some(bps)) {
            self.sender.set_rate_share(self.clock.now(), bps);
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

    fn on_stop(mut self, cx: &mut StageCx) -> Self::Output {
        self.publish();
        self.ch.wake_on_event(None);
        self.source.release_all();
        cx.stop_all();
        self.result.take().unwrap_or_else(|| Err("the packetizer stopped before the session ended".into()))
    }
}

impl Packetizer<'_> {
    /// Fills send batches while the core has datagrams to give and batches are free; returns whether it
    /// stopped for want of a free batch.
    fn fill_batches(&mut self, now: Time, cx: &mut StageCx) -> bool {
        let released = self.released_bytes.load(Ordering::Relaxed);
        let mut out_stalled = false;
        let mut published = false;
        loop {
            let mut token = match self.filling.take() {
                Some(t) => t,
                None => {
                    while let Some(t) = self.tx_free.pop() {
                        self.tx_spare.push(t);
                    }
                    self.tx_free.release();
                    match self.tx_spare.pop() {
                        Some(t) => t,
                        None => {
                            out_stalled = true;
                            break;
                        }
                    }
                }
            };
            let slot = self.tx_slots.get(&mut token);
            let mut more = true;
            while let Some(buf) = slot.batch.slot() {
                let pending_before = self.sender.pending_retransmits();
                debug_assert!(self.built_bytes >= released, "the pacer released more than was built");
                self.sender.set_send_backlog(self.built_bytes - released);
                match self.sender.poll_transmit(now, &mut self.source, buf) {
                    Ok(Some(len)) => {
                        slot.batch.commit(len);
                        self.built_bytes += len as u64;
                        cx.meter.add(1, len as u64);
                        if self.sender.pending_retransmits() < pending_before {
                            if let Some(at) = self.naks.on_retransmit() {
                                slot.nak_at = Some(slot.nak_at.map_or(at, |t: Time| t.min(at)));
                            }
                        }
                    }
                    Ok(None) | Err(_) => {
                        more = false;
                        break;
                    }
                }
            }
            if self.sender.pending_retransmits() == 0 {
                self.naks.clear();
            }
            if slot.batch.is_empty() {
                self.filling = Some(token);
                break;
            }
            // The pacer releases the batch at the rate the core chose for it.
            slot.rate_bps = self.sender.rate_bps();
            assert!(self.tx_out.push(token).is_ok(), "tx ring smaller than the batch count");
            published = true;
            if !more {
                break;
            }
        }
        if published {
            self.tx_out.publish();
        }
        out_stalled
    }
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
