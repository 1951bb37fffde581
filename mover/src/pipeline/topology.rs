//! The topology as data: one table names each side's stages, the rings between them (depth, what they carry,
//! what a full ring does) and the core each stage is pinned to. Pipelines size their rings and pools from it,
//! and `--show-topology` prints it (ENGINEERING.md §4).

use std::fmt::Write;

/// Which end of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `mover push`.
    Sender,
    /// `mover serve`.
    Receiver,
}

/// One stage: a pinned thread running one loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// Name, as in `--cores name=N` and the stats table.
    pub name: &'static str,
    /// What it does.
    pub does: &'static str,
    /// The core it is pinned to (None: left to the scheduler).
    pub core: Option<usize>,
}

/// One single-producer, single-consumer ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSpec {
    /// Name.
    pub name: &'static str,
    /// Producing stage.
    pub from: &'static str,
    /// Consuming stage.
    pub to: &'static str,
    /// Slots (a power of two).
    pub depth: usize,
    /// What one slot carries.
    pub item: &'static str,
    /// What the producer does when the ring is full (ENGINEERING.md §9).
    pub when_full: &'static str,
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
const SENDER_STAGES: [(&str, &str); 4] = [
    ("reader", "io_uring reads of large blocks into the chunk pool, files in order, several in flight"),
    (
        "packetizer",
        "protocol core: splits chunks into datagrams, headers and checksums in place; queues NAKed blocks first",
    ),
    ("pacer", "releases datagram batches at the rate (sleeps for long gaps, spins for short ones on its own core)"),
    ("nak", "receives feedback datagrams (ACK/NAK) and hands them to the packetizer"),
];
const SENDER_AUTO_ORDER: [&str; 4] = ["pacer", "packetizer", "reader", "nak"];
const RECEIVER_STAGES: [(&str, &str); 3] = [
    (
        "recv",
        "batched recvmmsg (GRO) into receive batches; with none free the socket buffer queues, then the kernel drops",
    ),
    ("reassembly", "protocol core: checks tags, gathers blocks into 1 MiB write runs, hashes, sends feedback"),
    ("writer", "io_uring writes of the runs from registered buffers"),
];
const RECEIVER_AUTO_ORDER: [&str; 3] = ["recv", "reassembly", "writer"];

/// Ring depths (powers of two); the pools are sized from them.
pub mod depth {
    /// Read chunks in flight between reader and packetizer (each 1 MiB).
    pub const CHUNKS: usize = 32;
    /// Send batches between packetizer and pacer (each up to 32 datagrams): kept short, since every queued
    /// datagram delays a retransmission queued behind it.
    pub const TX_BATCHES: usize = 4;
    /// Feedback datagrams between the NAK stage and the packetizer.
    pub const FEEDBACK: usize = 64;
    /// Receive batches between recv and reassembly.
    pub const RX_BATCHES: usize = 32;
    /// Write runs between reassembly and writer (each 1 MiB).
    pub const WRITES: usize = 32;
    const _: () = assert!(CHUNKS.is_power_of_two() && TX_BATCHES.is_power_of_two() && FEEDBACK.is_power_of_two());
    const _: () = assert!(RX_BATCHES.is_power_of_two() && WRITES.is_power_of_two());
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
        use depth::*;
        let (stages, auto_order, rings): (&[(&str, &str)], &[&str], Vec<RingSpec>) = match side {
            Side::Sender => (
                &SENDER_STAGES,
                &SENDER_AUTO_ORDER,
                vec![
                    ring("chunks", "reader", "packetizer", CHUNKS, "chunk index, file, offset, length", "block"),
                    ring("chunk_free", "packetizer", "reader", CHUNKS, "chunk index back to the pool", "cannot fill"),
                    ring("tx", "packetizer", "pacer", TX_BATCHES, "send batch index (up to 32 datagrams)", "block"),
                    ring("tx_free", "pacer", "packetizer", TX_BATCHES, "sent batch index back", "cannot fill"),
                    ring(
                        "feedback",
                        "nak",
                        "packetizer",
                        FEEDBACK,
                        "feedback datagram index, arrival time",
                        "drop, count",
                    ),
                    ring("feedback_free", "packetizer", "nak", FEEDBACK, "feedback buffer back", "cannot fill"),
                ],
            ),
            Side::Receiver => (
                &RECEIVER_STAGES,
                &RECEIVER_AUTO_ORDER,
                vec![
                    ring("rx", "recv", "reassembly", RX_BATCHES, "receive batch index", "socket queues"),
                    ring("rx_free", "reassembly", "recv", RX_BATCHES, "receive batch back", "cannot fill"),
                    ring("writes", "reassembly", "writer", WRITES, "run buffer index, fd, offset, length", "block"),
                    ring("written", "writer", "reassembly", WRITES, "run buffer index, result", "cannot fill"),
                ],
            ),
        };
        let mut specs: Vec<StageSpec> =
            stages.iter().map(|&(name, does)| StageSpec { name, does, core: None }).collect();
        match plan {
            CorePlan::None => {}
            CorePlan::Auto => {
                // Measured on 2 cores (decision note 0003): pinning 4 + 3 stages onto 2 cores made a stage wait
                // behind a busy neighbour while the other core idled (1.71 against 2.50 Gbit/s unpinned).
                if available.len() >= specs.len() {
                    for (k, name) in auto_order.iter().enumerate() {
                        let s = specs.iter_mut().find(|s| s.name == *name).expect("auto order names stages");
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
                        if other_side_names(side).contains(&name.as_str()) {
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

    /// The core of stage `name`.
    pub fn core_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().find(|s| s.name == name).and_then(|s| s.core)
    }

    /// Whether stage `name` is pinned to a core no other stage of this side uses (it may then spin).
    pub fn has_own_core(&self, name: &str) -> bool {
        match self.core_of(name) {
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

fn other_side_names(side: Side) -> Vec<&'static str> {
    match side {
        Side::Sender => RECEIVER_STAGES.iter().map(|s| s.0).collect(),
        Side::Receiver => SENDER_STAGES.iter().map(|s| s.0).collect(),
    }
}

fn ring(
    name: &'static str,
    from: &'static str,
    to: &'static str,
    depth: usize,
    item: &'static str,
    when_full: &'static str,
) -> RingSpec {
    assert!(depth.is_power_of_two());
    RingSpec { name, from, to, depth, item, when_full }
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
        assert!(!two.has_own_core("pacer"));
        let four = Topology::new(Side::Sender, &CorePlan::Auto, &[2, 3, 4, 5]).unwrap();
        assert_eq!(four.core_of("pacer"), Some(2));
        assert_eq!(four.core_of("packetizer"), Some(3));
        assert_eq!(four.core_of("reader"), Some(4));
        assert_eq!(four.core_of("nak"), Some(5));
        assert!(four.has_own_core("pacer") && four.has_own_core("nak"));
        let listed = Topology::new(Side::Sender, &CorePlan::List(vec![0, 1]), &[0, 1]).unwrap();
        assert_eq!(listed.core_of("reader"), Some(0));
        assert_eq!(listed.core_of("pacer"), Some(0));
        assert!(!listed.has_own_core("pacer"));
        let one = Topology::new(Side::Receiver, &CorePlan::Auto, &[0]).unwrap();
        assert!(one.stages.iter().all(|s| s.core.is_none()), "one core: nothing to spread");
        let listed = Topology::new(Side::Receiver, &CorePlan::List(vec![1]), &[0, 1]).unwrap();
        assert!(listed.stages.iter().all(|s| s.core == Some(1)));
        let named = Topology::new(Side::Receiver, &CorePlan::parse("writer=1,pacer=0").unwrap(), &[0, 1]).unwrap();
        assert_eq!((named.core_of("writer"), named.core_of("recv")), (Some(1), None));
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
