//! The topology as data: one table names each side's stages, the rings between them (depth, what they carry,
//! what a full ring does) and the core each stage is pinned to. Pipelines build their rings from it
//! ([`crate::pipeline::runtime::Wiring`]) and size their pools from it, and `--show-topology` prints it
//! (ENGINEERING.md §4).

use std::fmt::Write;
use std::marker::PhantomData;

/// Which end of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `mover push`.
    Sender,
    /// `mover serve`.
    Receiver,
}

/// A stage of either side. Its [`name`](StageId::name) is what `--cores name=N`, `--show-topology` and the
/// stats table show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageId {
    /// Sender: reads files into the chunk pool.
    Reader,
    /// Sender: the protocol core; datagrams into send batches.
    Packetizer,
    /// Sender: releases datagrams at the rate.
    Pacer,
    /// Sender: receives feedback.
    Nak,
    /// Receiver: receives datagrams into receive batches.
    Recv,
    /// Receiver: the protocol core; blocks into write runs.
    Reassembly,
    /// Receiver: writes the runs.
    Writer,
}

impl StageId {
    /// Every stage, sender's then receiver's, in table order.
    pub const ALL: [StageId; 7] = [
        StageId::Reader,
        StageId::Packetizer,
        StageId::Pacer,
        StageId::Nak,
        StageId::Recv,
        StageId::Reassembly,
        StageId::Writer,
    ];

    /// The stage's name.
    pub fn name(self) -> &'static str {
        match self {
            StageId::Reader => "reader",
            StageId::Packetizer => "packetizer",
            StageId::Pacer => "pacer",
            StageId::Nak => "nak",
            StageId::Recv => "recv",
            StageId::Reassembly => "reassembly",
            StageId::Writer => "writer",
        }
    }

    /// The stage named `name`, if any.
    pub fn from_name(name: &str) -> Option<StageId> {
        StageId::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The side the stage runs on.
    pub fn side(self) -> Side {
        match self {
            StageId::Reader | StageId::Packetizer | StageId::Pacer | StageId::Nak => Side::Sender,
            StageId::Recv | StageId::Reassembly | StageId::Writer => Side::Receiver,
        }
    }

    /// Position in [`StageId::ALL`] (for per-stage arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// What the stage does, as `--show-topology` prints it.
    pub fn does(self) -> &'static str {
        match self {
            StageId::Reader => "io_uring reads of large blocks into the chunk pool, files in order, several in flight; retransmissions' reads",
            StageId::Packetizer => {
                "protocol core: splits chunks into datagrams, headers and checksums in place; queues NAKed blocks first"
            }
            StageId::Pacer => {
                "releases datagram batches at the rate (sleeps for long gaps, spins for short ones on its own core)"
            }
            StageId::Nak => "receives feedback datagrams (ACK/NAK) and hands them to the packetizer",
            StageId::Recv => {
                "batched recvmmsg (GRO) into receive batches; with none free the socket buffer queues, then the kernel drops"
            }
            StageId::Reassembly => {
                "protocol core: checks tags, gathers blocks into 1 MiB write runs, hashes, sends feedback"
            }
            StageId::Writer => "io_uring writes of the runs from registered buffers; reads files back and hashes them for verification",
        }
    }
}

/// One stage: a pinned thread running one loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// Which stage.
    pub id: StageId,
    /// Name, as in `--cores name=N` and the stats table (`id.name()`).
    pub name: &'static str,
    /// What it does.
    pub does: &'static str,
    /// The core it is pinned to (None: left to the scheduler).
    pub core: Option<usize>,
}

/// A ring between two stages. The item type of each ring is fixed by its typed handle in [`rings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingId {
    /// Read chunks, reader -> packetizer.
    Chunks,
    /// Chunk buffers back, packetizer -> reader.
    ChunkFree,
    /// Filled send batches, packetizer -> pacer.
    Tx,
    /// Sent batches back, pacer -> packetizer.
    TxFree,
    /// Retransmissions' reads (with their repair buffer), packetizer -> reader.
    Repair,
    /// Repair buffers read, reader -> packetizer.
    Repaired,
    /// Feedback datagrams, nak -> packetizer.
    Feedback,
    /// Feedback buffers back, packetizer -> nak.
    FeedbackFree,
    /// Receive batches, recv -> reassembly.
    Rx,
    /// Receive batches back, reassembly -> recv.
    RxFree,
    /// Write runs, reassembly -> writer.
    Writes,
    /// Finished writes, writer -> reassembly.
    Written,
    /// Verification read-backs (a file's running hash and a range), reassembly -> writer.
    Verify,
    /// Read-backs done (the hash advanced), writer -> reassembly.
    Verified,
}

impl RingId {
    /// The ring's row of the table.
    pub fn spec(self) -> RingSpec {
        use depth::*;
        use StageId::*;
        let (name, from, to, depth, item, when_full) = match self {
            RingId::Chunks => ("chunks", Reader, Packetizer, CHUNKS, "chunk index, file, offset, length", "block"),
            RingId::ChunkFree => {
                ("chunk_free", Packetizer, Reader, CHUNKS, "chunk index back to the pool", "cannot fill")
            }
            RingId::Repair => {
                ("repair", Packetizer, Reader, REPAIRS, "repair buffer, file, offset, length", "cannot fill")
            }
            RingId::Repaired => {
                ("repaired", Reader, Packetizer, REPAIRS, "repair buffer read, or the error", "cannot fill")
            }
            RingId::Tx => ("tx", Packetizer, Pacer, TX_BATCHES, "send batch index (up to 64 datagrams)", "block"),
            RingId::TxFree => ("tx_free", Pacer, Packetizer, TX_BATCHES, "sent batch index back", "cannot fill"),
            RingId::Feedback => {
                ("feedback", Nak, Packetizer, FEEDBACK, "feedback datagram index, arrival time", "drop, count")
            }
            RingId::FeedbackFree => ("feedback_free", Packetizer, Nak, FEEDBACK, "feedback buffer back", "cannot fill"),
            RingId::Rx => ("rx", Recv, Reassembly, RX_BATCHES, "receive batch index", "socket queues"),
            RingId::RxFree => ("rx_free", Reassembly, Recv, RX_BATCHES, "receive batch back", "cannot fill"),
            RingId::Writes => ("writes", Reassembly, Writer, WRITES, "run buffer index, fd, offset, length", "block"),
            RingId::Written => ("written", Writer, Reassembly, WRITES, "run buffer index, result", "cannot fill"),
            RingId::Verify => ("verify", Reassembly, Writer, VERIFY, "file, range, hash state, fd", "store queues"),
            RingId::Verified => ("verified", Writer, Reassembly, VERIFY, "hash state advanced, result", "cannot fill"),
        };
        assert!(depth.is_power_of_two());
        RingSpec {
            id: self,
            name,
            from: from.name(),
            to: to.name(),
            from_stage: from,
            to_stage: to,
            depth,
            item,
            when_full,
        }
    }
}

/// One single-producer, single-consumer ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSpec {
    /// Which ring.
    pub id: RingId,
    /// Name.
    pub name: &'static str,
    /// Producing stage's name.
    pub from: &'static str,
    /// Consuming stage's name.
    pub to: &'static str,
    /// Producing stage.
    pub from_stage: StageId,
    /// Consuming stage.
    pub to_stage: StageId,
    /// Slots (a power of two).
    pub depth: usize,
    /// What one slot carries.
    pub item: &'static str,
    /// What the producer does when the ring is full (ENGINEERING.md §9).
    pub when_full: &'static str,
}

/// A ring of the table together with the type of its items, so the pipeline can only build it with that type.
pub struct RingDef<T> {
    /// Which ring.
    pub id: RingId,
    _item: PhantomData<fn() -> T>,
}

impl<T> RingDef<T> {
    const fn new(id: RingId) -> RingDef<T> {
        RingDef { id, _item: PhantomData }
    }
}

/// The typed handle of every ring: what each one carries.
pub mod rings {
    use super::{RingDef, RingId};
    use crate::net::RxBatch;
    use crate::pipeline::items::{
        FeedbackBuf, ReadOutcome, RepairReq, Repaired, TxSlot, VerifyItem, WriteItem, Written,
    };
    use crate::pipeline::slots::{RegionBuf, Slot};
    use crate::proto::HashDone;

    /// Read chunks in (file, offset) order, or the report of a failed read.
    pub const CHUNKS: RingDef<ReadOutcome> = RingDef::new(RingId::Chunks);
    /// Chunk buffers back to the reader.
    pub const CHUNK_FREE: RingDef<RegionBuf> = RingDef::new(RingId::ChunkFree);
    /// Retransmissions' reads.
    pub const REPAIR: RingDef<RepairReq> = RingDef::new(RingId::Repair);
    /// Retransmissions' reads done.
    pub const REPAIRED: RingDef<Repaired> = RingDef::new(RingId::Repaired);
    /// Filled send batches.
    pub const TX: RingDef<Slot<TxSlot>> = RingDef::new(RingId::Tx);
    /// Sent batches back.
    pub const TX_FREE: RingDef<Slot<TxSlot>> = RingDef::new(RingId::TxFree);
    /// Feedback datagrams.
    pub const FEEDBACK: RingDef<Slot<FeedbackBuf>> = RingDef::new(RingId::Feedback);
    /// Feedback buffers back.
    pub const FEEDBACK_FREE: RingDef<Slot<FeedbackBuf>> = RingDef::new(RingId::FeedbackFree);
    /// Filled receive batches.
    pub const RX: RingDef<Slot<RxBatch>> = RingDef::new(RingId::Rx);
    /// Receive batches back.
    pub const RX_FREE: RingDef<Slot<RxBatch>> = RingDef::new(RingId::RxFree);
    /// Write runs.
    pub const WRITES: RingDef<WriteItem> = RingDef::new(RingId::Writes);
    /// Finished writes.
    pub const WRITTEN: RingDef<Written> = RingDef::new(RingId::Written);
    /// Verification read-backs.
    pub const VERIFY: RingDef<VerifyItem> = RingDef::new(RingId::Verify);
    /// Read-backs done.
    pub const VERIFIED: RingDef<HashDone> = RingDef::new(RingId::Verified);
}

/// How stages are placed on cores (`--cores`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorePlan {
    /// With at least as many allowed cores as stages, give each stage its own core (in the side's priority
    /// order); with fewer, pin nothing and let the scheduler move stages to whichever core is idle.
    Auto,
    /// Pin nothing.
    None,
    /// Stage k (in table order) goes to `list[k % len]`.
    List(Vec<usize>),
    /// `name=core` pairs; unnamed stages are not pinned.
    Named(Vec<(String, usize)>),
}

impl CorePlan {
    /// Parses `auto`, `none`, a list of cores and ranges (`0,2-3`), or `stage=core` pairs
    /// (`pacer=1,packetizer=0`).
    pub fn parse(text: &str) -> Result<CorePlan, String> {
        let text = text.trim();
        match text {
            "" | "auto" => return Ok(CorePlan::Auto),
            "none" => return Ok(CorePlan::None),
            _ => {}
        }
        let bad = |part: &str| format!("--cores: '{part}' is not a core number, a range a-b, or stage=core");
        if text.contains('=') {
            let mut pairs = Vec::new();
            for part in text.split(',') {
                let (name, core) = part.split_once('=').ok_or_else(|| bad(part))?;
                let core: usize = core.trim().parse().map_err(|_| bad(part))?;
                if name.trim().is_empty() {
                    return Err(bad(part));
                }
                pairs.push((name.trim().to_string(), core));
            }
            return Ok(CorePlan::Named(pairs));
        }
        let mut list = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if let Some((a, b)) = part.split_once('-') {
                let a: usize = a.trim().parse().map_err(|_| bad(part))?;
                let b: usize = b.trim().parse().map_err(|_| bad(part))?;
                if a > b || b - a > 4096 {
                    return Err(bad(part));
                }
                list.extend(a..=b);
            } else {
                list.push(part.parse().map_err(|_| bad(part))?);
            }
        }
        Ok(CorePlan::List(list))
    }
}

/// The cores this process may run on (its affinity mask), in ascending order.
pub fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids
}

/// Stages of each side in table order, with the order in which [`CorePlan::Auto`] gives them cores (the
/// stage listed first in `AUTO_ORDER` gets the first core to itself on a machine with enough cores).
const SENDER_STAGES: [StageId; 4] = [StageId::Reader, StageId::Packetizer, StageId::Pacer, StageId::Nak];
const SENDER_AUTO_ORDER: [StageId; 4] = [StageId::Pacer, StageId::Packetizer, StageId::Reader, StageId::Nak];
const SENDER_RINGS: [RingId; 8] = [
    RingId::Chunks,
    RingId::ChunkFree,
    RingId::Repair,
    RingId::Repaired,
    RingId::Tx,
    RingId::TxFree,
    RingId::Feedback,
    RingId::FeedbackFree,
];
const RECEIVER_STAGES: [StageId; 3] = [StageId::Recv, StageId::Reassembly, StageId::Writer];
const RECEIVER_AUTO_ORDER: [StageId; 3] = [StageId::Recv, StageId::Reassembly, StageId::Writer];
const RECEIVER_RINGS: [RingId; 6] =
    [RingId::Rx, RingId::RxFree, RingId::Writes, RingId::Written, RingId::Verify, RingId::Verified];

/// Ring depths (powers of two); the pools are sized from them.
pub mod depth {
    /// Read chunks in flight between reader and packetizer (each 1 MiB).
    pub const CHUNKS: usize = 32;
    /// Repair buffers (each a chunk buffer, set aside from the reader's pool): retransmissions' reads in
    /// flight or held by the packetizer.
    pub const REPAIRS: usize = 8;
    /// Send batches between packetizer and pacer (each up to 64 datagrams): kept short, since every queued
    /// datagram delays a retransmission queued behind it.
    pub const TX_BATCHES: usize = 4;
    /// Feedback datagrams between the NAK stage and the packetizer.
    pub const FEEDBACK: usize = 64;
    /// Receive batches between recv and reassembly.
    pub const RX_BATCHES: usize = 32;
    /// Write runs between reassembly and writer (each 1 MiB).
    pub const WRITES: usize = 32;
    /// Verification read-backs out at once (at most one per file; the store queues the rest).
    pub const VERIFY: usize = 16;
    const _: () = assert!(CHUNKS.is_power_of_two() && TX_BATCHES.is_power_of_two() && FEEDBACK.is_power_of_two());
    const _: () = assert!(REPAIRS.is_power_of_two());
    const _: () = assert!(RX_BATCHES.is_power_of_two() && WRITES.is_power_of_two() && VERIFY.is_power_of_two());
}

/// One side's stages and rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Which side.
    pub side: Side,
    /// Stages, in table order.
    pub stages: Vec<StageSpec>,
    /// Rings.
    pub rings: Vec<RingSpec>,
}

impl Topology {
    /// The table for `side`, with cores placed by `plan` over `available` cores.
    pub fn new(side: Side, plan: &CorePlan, available: &[usize]) -> Result<Topology, String> {
        let (stages, auto_order, rings): (&[StageId], &[StageId], &[RingId]) = match side {
            Side::Sender => (&SENDER_STAGES, &SENDER_AUTO_ORDER, &SENDER_RINGS),
            Side::Receiver => (&RECEIVER_STAGES, &RECEIVER_AUTO_ORDER, &RECEIVER_RINGS),
        };
        let rings: Vec<RingSpec> = rings.iter().map(|r| r.spec()).collect();
        debug_assert!(rings.iter().all(|r| r.from_stage.side() == side && r.to_stage.side() == side));
        let mut specs: Vec<StageSpec> =
            stages.iter().map(|&id| StageSpec { id, name: id.name(), does: id.does(), core: None }).collect();
        match plan {
            CorePlan::None => {}
            CorePlan::Auto => {
                // Measured on 2 cores (decision note 0003): pinning 4 + 3 stages onto 2 cores made a stage wait
                // behind a busy neighbour while the other core idled (1.71 against 2.50 Gbit/s unpinned).
                if available.len() >= specs.len() {
                    for (k, id) in auto_order.iter().enumerate() {
                        let s = specs.iter_mut().find(|s| s.id == *id).expect("auto order names stages");
                        s.core = Some(available[k % available.len()]);
                    }
                }
            }
            CorePlan::List(list) => {
                if list.is_empty() {
                    return Err("--cores: empty list".into());
                }
                for (k, s) in specs.iter_mut().enumerate() {
                    s.core = Some(list[k % list.len()]);
                }
            }
            CorePlan::Named(pairs) => {
                for (name, core) in pairs {
                    let Some(s) = specs.iter_mut().find(|s| s.name == name) else {
                        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
                        // The other side's stage names are accepted (one --cores for both commands).
                        if StageId::from_name(name).is_some_and(|id| id.side() != side) {
                            continue;
                        }
                        return Err(format!("--cores: no stage '{name}' (stages: {})", names.join(", ")));
                    };
                    s.core = Some(*core);
                }
            }
        }
        if !available.is_empty() {
            for s in &specs {
                if let Some(c) = s.core.filter(|c| !available.contains(c)) {
                    return Err(format!(
                        "--cores: core {c} for stage '{}' is not available (cores: {available:?})",
                        s.name
                    ));
                }
            }
        }
        Ok(Topology { side, stages: specs, rings })
    }

    /// The depth of ring `id` of this side (the pools it carries are sized from it).
    pub fn depth(&self, id: RingId) -> usize {
        let r = self.rings.iter().find(|r| r.id == id);
        r.unwrap_or_else(|| panic!("ring {id:?} is not in the {:?} table", self.side)).depth
    }

    /// The core of stage `id`.
    pub fn core_of(&self, id: StageId) -> Option<usize> {
        self.stages.iter().find(|s| s.id == id).and_then(|s| s.core)
    }

    /// Whether stage `id` is pinned to a core no other stage of this side uses (it may then spin).
    pub fn has_own_core(&self, id: StageId) -> bool {
        match self.core_of(id) {
            Some(c) => self.stages.iter().filter(|s| s.core == Some(c)).count() == 1,
            None => false,
        }
    }

    /// The table `--show-topology` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let side = match self.side {
            Side::Sender => "sender (push)",
            Side::Receiver => "receiver (serve)",
        };
        let _ = writeln!(out, "{side} stages:");
        let _ = writeln!(out, "  {:<11} {:<5} does", "stage", "core");
        for s in &self.stages {
            let core = s.core.map_or("-".to_string(), |c| c.to_string());
            let _ = writeln!(out, "  {:<11} {:<5} {}", s.name, core, s.does);
        }
        let _ = writeln!(out, "{side} rings:");
        let _ = writeln!(out, "  {:<14} {:<24} {:>5}  {:<12} carries", "ring", "from -> to", "depth", "when full");
        for r in &self.rings {
            let edge = format!("{} -> {}", r.from, r.to);
            let _ = writeln!(out, "  {:<14} {:<24} {:>5}  {:<12} {}", r.name, edge, r.depth, r.when_full, r.item);
        }
        out
    }
}

/// Pins the calling thread to `core` (no-op for `None`); a refusal is reported once, not fatal.
pub fn pin_current_thread(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("mover: warning: could not pin a stage to core {id}; it runs unpinned");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_plans() {
        assert_eq!(CorePlan::parse("auto").unwrap(), CorePlan::Auto);
        assert_eq!(CorePlan::parse("none").unwrap(), CorePlan::None);
        assert_eq!(CorePlan::parse("0, 2-3").unwrap(), CorePlan::List(vec![0, 2, 3]));
        assert_eq!(
            CorePlan::parse("pacer=1,reader=0").unwrap(),
            CorePlan::Named(vec![("pacer".into(), 1), ("reader".into(), 0)])
        );
        for bad in ["x", "1-", "3-1", "pacer=", "=1", "1,,2"] {
            assert!(CorePlan::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn places_stages_on_two_and_many_cores() {
        let two = Topology::new(Side::Sender, &CorePlan::Auto, &[0, 1]).unwrap();
        assert!(two.stages.iter().all(|s| s.core.is_none()), "fewer cores than stages: left to the scheduler");
        assert!(!two.has_own_core(StageId::Pacer));
        let four = Topology::new(Side::Sender, &CorePlan::Auto, &[2, 3, 4, 5]).unwrap();
        assert_eq!(four.core_of(StageId::Pacer), Some(2));
        assert_eq!(four.core_of(StageId::Packetizer), Some(3));
        assert_eq!(four.core_of(StageId::Reader), Some(4));
        assert_eq!(four.core_of(StageId::Nak), Some(5));
        assert!(four.has_own_core(StageId::Pacer) && four.has_own_core(StageId::Nak));
        let listed = Topology::new(Side::Sender, &CorePlan::List(vec![0, 1]), &[0, 1]).unwrap();
        assert_eq!(listed.core_of(StageId::Reader), Some(0));
        assert_eq!(listed.core_of(StageId::Pacer), Some(0));
        assert!(!listed.has_own_core(StageId::Pacer));
        let one = Topology::new(Side::Receiver, &CorePlan::Auto, &[0]).unwrap();
        assert!(one.stages.iter().all(|s| s.core.is_none()), "one core: nothing to spread");
        let listed = Topology::new(Side::Receiver, &CorePlan::List(vec![1]), &[0, 1]).unwrap();
        assert!(listed.stages.iter().all(|s| s.core == Some(1)));
        let named = Topology::new(Side::Receiver, &CorePlan::parse("writer=1,pacer=0").unwrap(), &[0, 1]).unwrap();
        assert_eq!((named.core_of(StageId::Writer), named.core_of(StageId::Recv)), (Some(1), None));
        assert!(Topology::new(Side::Receiver, &CorePlan::parse("bogus=1").unwrap(), &[0, 1]).is_err());
        assert!(Topology::new(Side::Sender, &CorePlan::List(vec![7]), &[0, 1]).is_err());
    }

    #[test]
    fn renders_every_stage_and_ring() {
        for side in [Side::Sender, Side::Receiver] {
            let t = Topology::new(side, &CorePlan::Auto, &[0, 1]).unwrap();
            let text = t.render();
            for s in &t.stages {
                assert!(text.contains(s.name), "{text}");
            }
            for r in &t.rings {
                assert!(text.contains(r.name) && text.contains(&r.depth.to_string()), "{text}");
            }
        }
    }
}
