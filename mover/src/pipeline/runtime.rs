//! The stage runtime: one run loop for every pipeline stage (model: firedancer's `fd_stem`).
//!
//! A stage implements [`Stage`]: it polls its inputs, handles what it found, publishes its outputs in a batch
//! and says what it is waiting for ([`Progress`]). [`run`] does everything else, the same way for every
//! stage: pinning to the core of the [`Topology`], registering the stage's bell, the stop flag, parking (for
//! input or for output, with the time counted against the right column of the [`StageMeter`]), a
//! rate-limited [`Stage::housekeeping`] step and the final [`StageReport`].
//!
//! [`Wiring`] builds the rings from the topology table: a pipeline asks for ring [`rings::CHUNKS`] and gets a
//! ring of the table's depth, carrying the type the table names, whose producer rings the consuming stage's
//! bell on every publish. [`Wiring::finish`] checks that every ring of the table was built exactly once, so
//! the table cannot disagree with what runs.
//!
//! [`rings::CHUNKS`]: super::topology::rings::CHUNKS

use super::bell::Bell;
use super::ring::{ring, Consumer, Producer};
use super::stats::{StageMeter, StageReport};
use super::topology::{pin_current_thread, RingDef, StageId, Topology};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

/// How often [`Stage::housekeeping`] runs at most.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(1);

/// What a stage found in one [`Stage::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// It did work (or may have more at once): poll again.
    Busy,
    /// Nothing to do until an input arrives (a bell rings) or `0` passes.
    WaitInput(Duration),
    /// Blocked until a consumer gives room back (a bell rings) or `0` passes.
    WaitOutput(Duration),
    /// The stage has finished its work: leave the loop.
    Done,
}

/// What the runtime lends a stage on every call: its meter and the pipeline's stop flag.
pub struct StageCx {
    /// The stage's counters and latency distributions.
    pub meter: StageMeter,
    stop: Arc<AtomicBool>,
}

impl StageCx {
    /// A context for stage `id` on `core`, sharing the pipeline's `stop` flag.
    pub fn new(id: StageId, core: Option<usize>, stop: Arc<AtomicBool>) -> StageCx {
        StageCx { meter: StageMeter::new(id.name(), core), stop }
    }

    /// Whether the pipeline is stopping.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops every stage of the pipeline (the session ended, or this stage failed).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Runs `wait`, a blocking wait for input outside the runtime (a socket, a disk completion), counting its
    /// time as stalled on input.
    pub fn wait_input<R>(&mut self, wait: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = wait();
        self.meter.stalled_on_input(t.elapsed());
        r
    }

    /// Runs `wait`, a blocking wait for room downstream outside the runtime (a full socket buffer, the
    /// disk, the pacer's gap), counting its time as stalled on output.
    pub fn wait_output<R>(&mut self, wait: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = wait();
        self.meter.stalled_on_output(t.elapsed());
        r
    }
}

/// One pipeline stage: single-threaded, pinned, owning its state (ENGINEERING.md §3).
pub trait Stage {
    /// What the stage hands back when it ends, besides its report.
    type Output;

    /// Which stage this is.
    const ID: StageId;

    /// Called once on the stage's thread before the first poll (register latency distributions, wake-ups).
    fn on_start(&mut self, _cx: &mut StageCx) {}

    /// Polls inputs, handles them and publishes outputs in a batch.
    fn poll(&mut self, cx: &mut StageCx) -> Progress;

    /// A step that need not run on every poll (publishing counters kept elsewhere); at most once per
    /// [`HOUSEKEEPING_INTERVAL`], and once more before [`Stage::on_stop`].
    fn housekeeping(&mut self, _cx: &mut StageCx) {}

    /// Whether the stage may leave now that the pipeline is stopping (a writer first waits for its writes
    /// in flight; a stage that ends the session by itself returns `false`).
    fn may_stop(&mut self) -> bool {
        true
    }

    /// Called once when the loop ends.
    fn on_stop(self, cx: &mut StageCx) -> Self::Output;
}

/// Runs `stage` on the calling thread until it is [`Progress::Done`] or the pipeline stops.
pub fn run<S: Stage>(mut stage: S, bell: &Bell, mut cx: StageCx) -> (S::Output, StageReport) {
    bell.register();
    stage.on_start(&mut cx);
    let mut next_housekeeping = Instant::now() + HOUSEKEEPING_INTERVAL;
    loop {
        if cx.stopping() && stage.may_stop() {
            break;
        }
        match stage.poll(&mut cx) {
            Progress::Busy => {}
            Progress::WaitInput(d) if !d.is_zero() => cx.meter.park_for_input(d),
            Progress::WaitOutput(d) if !d.is_zero() => cx.meter.park_for_output(d),
            Progress::WaitInput(_) | Progress::WaitOutput(_) => {}
            Progress::Done => break,
        }
        let now = Instant::now();
        if now >= next_housekeeping {
            stage.housekeeping(&mut cx);
            next_housekeeping = now + HOUSEKEEPING_INTERVAL;
        }
    }
    stage.housekeeping(&mut cx);
    let out = stage.on_stop(&mut cx);
    (out, cx.meter.finish())
}

/// The producing half of a ring built by [`Wiring`]: publishing rings the consuming stage's bell.
pub struct Outbox<T> {
    ring: Producer<T>,
    bell: Bell,
}

impl<T: Send> Outbox<T> {
    /// An outbox over a ring built by hand: for tests that drive one stage without a pipeline.
    #[cfg(test)]
    pub(crate) fn from_ring(ring: Producer<T>, bell: Bell) -> Outbox<T> {
        Outbox { ring, bell }
    }

    /// Writes `item` into the next slot without publishing it; gives it back if the ring is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        self.ring.push(item)
    }

    /// Makes every pushed item visible to the consumer and wakes it.
    pub fn publish(&mut self) {
        self.ring.publish();
        self.bell.ring();
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

/// The consuming half of a ring built by [`Wiring`].
pub type Inbox<T> = Consumer<T>;

/// The rings, bells and stop flag of one side's pipeline, built from its [`Topology`].
pub struct Wiring<'t> {
    topology: &'t Topology,
    bells: [Bell; StageId::ALL.len()],
    stop: Arc<AtomicBool>,
    built: Vec<bool>,
}

impl<'t> Wiring<'t> {
    /// Bells and a stop flag for the stages of `topology`; no ring built yet.
    pub fn new(topology: &'t Topology) -> Wiring<'t> {
        Wiring {
            topology,
            bells: Default::default(),
            stop: Arc::new(AtomicBool::new(false)),
            built: vec![false; topology.rings.len()],
        }
    }

    /// Ring `def` of the table: its depth, its item type, and its consumer's bell on the producer.
    pub fn ring<T: Send>(&mut self, def: RingDef<T>) -> (Outbox<T>, Inbox<T>) {
        let k = self.topology.rings.iter().position(|r| r.id == def.id);
        let k = k.unwrap_or_else(|| panic!("ring {:?} is not in the {:?} table", def.id, self.topology.side));
        assert!(!self.built[k], "ring {:?} built twice", def.id);
        self.built[k] = true;
        let spec = &self.topology.rings[k];
        let (p, c) = ring::<T>(spec.depth);
        (Outbox { ring: p, bell: self.bell(spec.to_stage) }, c)
    }

    /// The bell that wakes stage `id`.
    pub fn bell(&self, id: StageId) -> Bell {
        self.bells[id.index()].clone()
    }

    /// The flag that stops every stage.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Checks that every ring of the table was built (call once the pipeline is wired).
    pub fn finish(&self) {
        for (r, built) in self.topology.rings.iter().zip(&self.built) {
            assert!(*built, "ring {} of the table was never built", r.name);
        }
    }

    /// Stops every stage and wakes them all, so that parked ones see the flag at once.
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in &self.topology.stages {
            self.bells[s.id.index()].ring();
        }
    }

    /// Spawns `stage` on a thread named after it, pinned to its core from the table, inside `scope`.
    pub fn spawn<'scope, 'env, S>(
        &self,
        scope: &'scope Scope<'scope, 'env>,
        stage: S,
    ) -> ScopedJoinHandle<'scope, (S::Output, StageReport)>
    where
        S: Stage + Send + 'scope,
        S::Output: Send + 'scope,
    {
        let id = S::ID;
        assert!(self.topology.stages.iter().any(|s| s.id == id), "stage {} is not in the table", id.name());
        let core = self.topology.core_of(id);
        let bell = self.bell(id);
        let cx = StageCx::new(id, core, self.stop.clone());
        std::thread::Builder::new()
            .name(format!("mover-{}", id.name()))
            .spawn_scoped(scope, move || {
                pin_current_thread(core);
                run(stage, &bell, cx)
            })
            .unwrap_or_else(|e| panic!("spawning the {} stage: {e}", id.name()))
    }
}

/// Joins a stage's thread; a panicked stage reports an empty report under its name.
pub fn join<T>(handle: ScopedJoinHandle<'_, (T, StageReport)>, id: StageId) -> Option<(T, StageReport)> {
    match handle.join() {
        Ok(r) => Some(r),
        Err(_) => {
            eprintln!("mover: the {} stage panicked", id.name());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::topology::{rings, CorePlan, Side};

    /// A stage that counts to `n`, waiting for input on every other poll.
    struct Counter {
        n: u64,
        seen: u64,
        housekeeping: u64,
    }

    impl Stage for Counter {
        type Output = (u64, u64);
        const ID: StageId = StageId::Nak;
        fn poll(&mut self, cx: &mut StageCx) -> Progress {
            if self.seen == self.n {
                return Progress::Done;
            }
            self.seen += 1;
            cx.meter.add(1, 10);
            if self.seen % 2 == 0 {
                Progress::WaitInput(Duration::from_micros(100))
            } else {
                Progress::Busy
            }
        }
        fn housekeeping(&mut self, _cx: &mut StageCx) {
            self.housekeeping += 1;
        }
        fn on_stop(self, _cx: &mut StageCx) -> (u64, u64) {
            (self.seen, self.housekeeping)
        }
    }

    #[test]
    fn runs_a_stage_to_done_with_its_report() {
        let topo = Topology::new(Side::Sender, &CorePlan::None, &[]).unwrap();
        let w = Wiring::new(&topo);
        let ((seen, hk), report) = std::thread::scope(|s| {
            let h = w.spawn(s, Counter { n: 100, seen: 0, housekeeping: 0 });
            join(h, StageId::Nak).unwrap()
        });
        assert_eq!(seen, 100);
        assert!(hk >= 1, "housekeeping runs at least once, before on_stop");
        assert_eq!((report.name, report.items, report.bytes), ("nak", 100, 1000));
        // 50 parks of ~100 us each, counted as input stall.
        assert!(report.stalled_input_seconds >= 0.004, "{report:?}");
    }

    #[test]
    fn stop_ends_a_waiting_stage_and_rings_come_from_the_table() {
        let topo = Topology::new(Side::Sender, &CorePlan::None, &[]).unwrap();
        let mut w = Wiring::new(&topo);
        let (tx, _rx) = w.ring(rings::TX_FREE);
        assert_eq!(tx.capacity(), topo.rings.iter().find(|r| r.name == "tx_free").unwrap().depth);
        let report = std::thread::scope(|s| {
            let h = w.spawn(s, Counter { n: u64::MAX, seen: 0, housekeeping: 0 });
            std::thread::sleep(Duration::from_millis(20));
            w.stop_all();
            join(h, StageId::Nak).unwrap().1
        });
        assert!(report.items > 0);
    }

    #[test]
    #[should_panic(expected = "never built")]
    fn a_ring_of_the_table_left_unbuilt_is_caught() {
        let topo = Topology::new(Side::Receiver, &CorePlan::None, &[]).unwrap();
        let mut w = Wiring::new(&topo);
        let _ = w.ring(rings::RX);
        w.finish();
    }

    #[test]
    #[should_panic(expected = "not in the")]
    fn a_ring_of_the_other_side_is_refused() {
        let topo = Topology::new(Side::Receiver, &CorePlan::None, &[]).unwrap();
        let _ = Wiring::new(&topo).ring(rings::TX);
    }
}
