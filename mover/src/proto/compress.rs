//! Which blocks the sender compresses (PROTOCOL.md §4.8): every block at a fixed zstd level, or, for
//! `--compress auto`, only while compressing raises goodput.
//!
//! The core asks its [`BlockEncoder`] before it reads each block ([`BlockEncoder::wants`]) and, if it
//! does, hands it the raw block to compress into the datagram ([`BlockEncoder::encode`]). The encoder may
//! keep a clock of its own: compression speed is CPU time, which the core's `now` (the driver's time, or the
//! simulator's) does not measure.

use crate::wire::compress::{BlockCompressor, AUTO_LEVEL};
use crate::wire::Compression;

/// What the core tells its encoder about each block it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendSignal {
    /// The rate the core sends at, bits per second on the wire.
    pub rate_bps: u64,
    /// The rate policy is still in startup: its rate says nothing yet about the path.
    pub startup: bool,
}

/// Compresses the blocks the sender chooses to compress.
pub trait BlockEncoder: Send {
    /// Whether the next block should be offered to [`BlockEncoder::encode`].
    fn wants(&mut self) -> bool;

    /// Compresses `raw` into `out`; `Some(n)` if the frame of `n` bytes is shorter than `raw` (the block
    /// goes compressed), `None` if it goes raw.
    fn encode(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize>;

    /// Every block sent, offered or not: `raw` bytes of the block, `wire` bytes of payload it took.
    fn sent(&mut self, raw: usize, wire: usize, signal: SendSignal);

    /// Whether the encoder compresses at the moment (`auto` switches; a fixed level always does).
    fn compressing(&self) -> bool;
}

/// The encoder for `choice`, `None` for [`Compression::None`]; `clock` is a monotonic clock in
/// nanoseconds, for `auto`'s measurements.
pub fn encoder_for(choice: Compression, clock: fn() -> u64) -> std::io::Result<Option<Box<dyn BlockEncoder>>> {
    Ok(match choice {
        Compression::None => None,
        Compression::Zstd(level) => Some(Box::new(FixedEncoder { cx: BlockCompressor::new(level)? })),
        Compression::Auto => Some(Box::new(AutoEncoder::new(clock)?)),
    })
}

/// Every block, at one level.
pub struct FixedEncoder {
    cx: BlockCompressor,
}

impl BlockEncoder for FixedEncoder {
    fn wants(&mut self) -> bool {
        true
    }

    fn encode(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize> {
        self.cx.compress(raw, out)
    }

    fn sent(&mut self, _raw: usize, _wire: usize, _signal: SendSignal) {}

    fn compressing(&self) -> bool {
        true
    }
}

/// Shortest span `auto` judges: long against the pipeline's batches (a batch of 64 datagrams is over 2 ms
/// at 2 Gbit/s), short against a transfer.
pub const AUTO_WINDOW_NS: u64 = 100_000_000;
/// Fewest compressed samples a judgement to turn compression on needs (while off, only the probes are
/// samples).
pub const AUTO_MIN_SAMPLES: u32 = 32;
/// While `auto` does not compress and the path holds the sender back, one block in this many is compressed
/// anyway, to keep measuring: data changes (a text file after an archive) and so does the path's rate.
pub const AUTO_PROBE_EVERY: u32 = 32;
/// Once `auto` judged raw the better (its CPU holds it back, or compression would not pay), probes are this
/// rare: at 1 in 32 they cost a sender that compresses at a third of its raw speed ~9% of its goodput (the
/// clean veth, benches/RESULTS.md).
pub const AUTO_PROBE_IDLE: u32 = 1024;
/// How much more goodput compression must promise (or deliver) than sending raw before `auto` turns it on
/// (and keeps it on): measurements are noisy, and the receiver's decompression costs CPU the sender's
/// figures do not see.
pub const AUTO_MIN_GAIN: f64 = 1.25;
/// The sender counts as held by the path (not by its own CPU) while it puts at least this share of the
/// policy's rate on the wire.
pub const AUTO_PATH_BOUND: f64 = 0.7;

/// What one span measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AutoWindow {
    /// Raw bytes offered to the compressor.
    pub raw: u64,
    /// Bytes that went out for them (compressed, or raw where a block did not shrink).
    pub out: u64,
    /// Time spent compressing them, nanoseconds.
    pub ns: u64,
    /// Blocks offered.
    pub samples: u32,
    /// Every block's raw bytes, offered or not.
    pub all_raw: u64,
    /// Every block's payload bytes on the wire.
    pub all_wire: u64,
}

impl AutoWindow {
    /// Raw bytes per byte sent, of the offered blocks.
    pub fn ratio(&self) -> f64 {
        self.raw as f64 / self.out.max(1) as f64
    }

    /// Raw bytes compressed per second.
    pub fn speed_bytes_per_s(&self) -> f64 {
        self.raw as f64 * 1e9 / self.ns.max(1) as f64
    }
}

/// `auto`'s rule for turning compression on, from a span sent raw at `rate_bps` that the path held back:
/// the goodput compression allows, bounded by the compressor's speed and by the path carrying compressed
/// bytes, `min(speed, rate x ratio)`, must beat the raw goodput, `rate`, by at least [`AUTO_MIN_GAIN`].
pub fn auto_decides(w: &AutoWindow, rate_bps: u64) -> bool {
    let path = rate_bps as f64 / 8.0;
    let with = w.speed_bytes_per_s().min(path * w.ratio());
    with >= path * AUTO_MIN_GAIN
}

/// `--compress auto`: zstd at [`AUTO_LEVEL`] only while it raises goodput.
///
/// It starts raw, compressing one block in [`AUTO_PROBE_EVERY`] to measure the data's ratio and its own
/// speed (the samples, kept until a judgement uses them), and looks at what it sent every
/// [`AUTO_WINDOW_NS`]; it turns compression on only once the rate policy has left startup (before that,
/// the rate is a probe, not the path's) and with [`AUTO_MIN_SAMPLES`] samples:
/// - sending raw, and held by the path (it sent at [`AUTO_PATH_BOUND`] of the rate or more): compress if
///   [`auto_decides`]; the raw goodput it had is remembered;
/// - sending raw, held by its own CPU: stay raw (compressing only costs more CPU per byte);
/// - compressing, held by the path: stay on while the ratio clears [`AUTO_MIN_GAIN`];
/// - compressing, held by its CPU: stay on only while the goodput it measures beats the remembered raw
///   goodput by [`AUTO_MIN_GAIN`].
///
/// Once it has judged that raw is better, it probes only one block in [`AUTO_PROBE_IDLE`]: enough to
/// notice data or a path that changed within a few tens of MB, too few to cost goodput.
pub struct AutoEncoder {
    cx: BlockCompressor,
    clock: fn() -> u64,
    on: bool,
    /// Compressed samples since the last judgement that used them.
    samples: AutoWindow,
    /// What was sent since `window_start` (its `all_*` fields).
    sent: AutoWindow,
    window_start: u64,
    blocks_since_clock: u32,
    /// Raw goodput (bytes per second) of the last span sent raw and held by the path.
    raw_goodput: f64,
    /// Blocks left before the next probe while off, and the probes' interval.
    until_probe: u32,
    probe_every: u32,
    /// Times `auto` changed its mind.
    switches: u64,
}

impl AutoEncoder {
    /// Starts raw, measuring.
    pub fn new(clock: fn() -> u64) -> std::io::Result<AutoEncoder> {
        Ok(AutoEncoder {
            cx: BlockCompressor::new(AUTO_LEVEL)?,
            window_start: clock(),
            clock,
            on: false,
            samples: AutoWindow::default(),
            sent: AutoWindow::default(),
            blocks_since_clock: 0,
            raw_goodput: 0.0,
            until_probe: 1,
            probe_every: AUTO_PROBE_EVERY,
            switches: 0,
        })
    }

    /// Times the encoder turned compression on or off.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The judgement at the end of a span of `wall_ns`.
    fn judge(&mut self, wall_ns: u64, signal: SendSignal) {
        let rate = signal.rate_bps as f64 / 8.0;
        let wire_rate = self.sent.all_wire as f64 * 1e9 / wall_ns.max(1) as f64;
        let goodput = self.sent.all_raw as f64 * 1e9 / wall_ns.max(1) as f64;
        let path_bound = wire_rate >= rate * AUTO_PATH_BOUND;
        let enough = self.samples.samples >= AUTO_MIN_SAMPLES;
        let (on, judged) = match (self.on, path_bound) {
            // In startup the rate is a probe, not the path's; and too few samples say nothing yet.
            (false, true) if signal.startup || !enough => (false, false),
            (false, true) => {
                self.raw_goodput = goodput;
                (auto_decides(&self.samples, signal.rate_bps), true)
            }
            (false, false) => (false, true),
            (true, true) => (self.samples.ratio() >= AUTO_MIN_GAIN, true),
            (true, false) => (goodput >= self.raw_goodput * AUTO_MIN_GAIN, true),
        };
        if judged {
            self.samples = AutoWindow::default();
            self.probe_every = if on { AUTO_PROBE_EVERY } else { AUTO_PROBE_IDLE };
            self.until_probe = self.until_probe.min(self.probe_every);
        }
        self.switches += (on != self.on) as u64;
        self.on = on;
    }
}

impl BlockEncoder for AutoEncoder {
    fn wants(&mut self) -> bool {
        if self.on {
            return true;
        }
        self.until_probe -= 1;
        if self.until_probe == 0 {
            self.until_probe = self.probe_every;
            return true;
        }
        false
    }

    fn encode(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize> {
        let t0 = (self.clock)();
        let r = self.cx.compress(raw, out);
        let ns = (self.clock)().saturating_sub(t0);
        self.samples.raw += raw.len() as u64;
        self.samples.out += r.unwrap_or(raw.len()) as u64;
        self.samples.ns += ns;
        self.samples.samples += 1;
        r
    }

    fn sent(&mut self, raw: usize, wire: usize, signal: SendSignal) {
        self.sent.all_raw += raw as u64;
        self.sent.all_wire += wire as u64;
        // The clock is read every 64 blocks, not per block.
        self.blocks_since_clock += 1;
        if self.blocks_since_clock < 64 {
            return;
        }
        self.blocks_since_clock = 0;
        let now = (self.clock)();
        let wall = now.saturating_sub(self.window_start);
        if wall < AUTO_WINDOW_NS {
            return;
        }
        self.judge(wall, signal);
        self.sent = AutoWindow::default();
        self.window_start = now;
    }

    fn compressing(&self) -> bool {
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn text(len: usize) -> Vec<u8> {
        b"@A00123:8:H7XYZ:2:1101:4242:1000 1:N:0\nACGTACGTTTGACCA\n+\nFFFFF:FFFFF,FFF\n"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_rule_weighs_speed_and_ratio_against_the_rate() {
        // 200 Mbit/s, text at 3x, a compressor at 400 MB/s: the path bound is 75 MB/s vs 25 raw.
        let text = AutoWindow { raw: 3_000_000, out: 1_000_000, ns: 7_500_000, ..AutoWindow::default() };
        assert!(auto_decides(&text, 200_000_000));
        // A 10 Gbit/s path (1.25 GB/s raw) outruns a 400 MB/s compressor.
        assert!(!auto_decides(&text, 10_000_000_000));
        // Incompressible data never pays, whatever the speed.
        let random = AutoWindow { raw: 1_000_000, out: 1_000_000, ns: 1_000, ..AutoWindow::default() };
        assert!(!auto_decides(&random, 100_000_000));
        // Barely compressible (1.1x) does not clear the margin.
        let weak = AutoWindow { raw: 1_100_000, out: 1_000_000, ns: 1_000, ..AutoWindow::default() };
        assert!(!auto_decides(&weak, 100_000_000));
    }

    thread_local! {
        /// The virtual clock of the test running on this thread.
        static FAKE_NS: Cell<u64> = const { Cell::new(0) };
    }
    /// Reads the virtual clock; each reading adds 2 µs (so a compression "takes" 2 µs: ~700 MB/s).
    fn fake_clock() -> u64 {
        FAKE_NS.with(|c| {
            c.set(c.get() + 2_000);
            c.get()
        })
    }

    /// Sends `blocks` blocks of `data` through `enc` as a core would, the virtual time advancing as a sender
    /// held to `wire_bps` on the wire would see it; returns how many blocks went compressed.
    fn send(enc: &mut AutoEncoder, blocks: u32, data: &dyn Fn(u32) -> Vec<u8>, rate_bps: u64, wire_bps: u64) -> u32 {
        let mut out = vec![0u8; 1412];
        let mut compressed = 0;
        for i in 0..blocks {
            let raw = data(i);
            let wire = if enc.wants() {
                match enc.encode(&raw, &mut out) {
                    Some(n) => {
                        compressed += 1;
                        n
                    }
                    None => raw.len(),
                }
            } else {
                raw.len()
            };
            FAKE_NS.with(|c| c.set(c.get() + wire as u64 * 8_000_000_000 / wire_bps));
            enc.sent(raw.len(), wire, SendSignal { rate_bps, startup: false });
        }
        compressed
    }

    #[test]
    fn auto_compresses_text_on_a_slow_path_and_stops_on_random_data() {
        let mut enc = AutoEncoder::new(fake_clock).unwrap();
        let rate = 200_000_000;
        // Raw at first: one block in AUTO_PROBE_EVERY is compressed to measure.
        let probes = send(&mut enc, 320, &|_| text(1412), rate, rate);
        assert_eq!(probes, 10);
        // Text on a 200 Mbit/s path the sender fills: compression turns on within a few spans.
        send(&mut enc, 40_000, &|_| text(1412), rate, rate);
        assert!(enc.compressing(), "text on a slow path");
        // Random data: the ratio falls under the margin and it turns off.
        send(&mut enc, 40_000, &|i| noise(1412, i as u64 + 1), rate, rate);
        assert!(!enc.compressing(), "random data");
        assert_eq!(enc.switches(), 2);
    }

    #[test]
    fn auto_stays_raw_and_probes_rarely_when_the_sender_not_the_path_is_the_limit() {
        let mut enc = AutoEncoder::new(fake_clock).unwrap();
        // The policy allows 10 Gbit/s; the sender puts 2 Gbit/s on the wire: its CPU is the limit.
        send(&mut enc, 100_000, &|_| text(1412), 10_000_000_000, 2_000_000_000);
        assert!(!enc.compressing());
        assert_eq!(enc.switches(), 0);
        let probes = send(&mut enc, 100_000, &|_| text(1412), 10_000_000_000, 2_000_000_000);
        assert!(probes <= 100_000 / AUTO_PROBE_IDLE + 1, "{probes} probes: they cost a CPU-bound sender goodput");
        // The path becomes the limit (the policy's rate falls to what the wire carries): probes resume, and
        // compression turns on.
        send(&mut enc, 200_000, &|_| text(1412), 200_000_000, 200_000_000);
        assert!(enc.compressing());
    }

    #[test]
    fn auto_turns_off_when_compressing_is_slower_than_raw_was() {
        let mut enc = AutoEncoder::new(fake_clock).unwrap();
        let rate = 200_000_000;
        send(&mut enc, 40_000, &|_| text(1412), rate, rate);
        assert!(enc.compressing());
        // Compression now holds the sender to 10 Mbit/s of wire (text at ~10x is 100 Mbit/s of goodput),
        // below the 200 Mbit/s it had raw.
        send(&mut enc, 40_000, &|_| text(1412), rate, 10_000_000);
        assert!(!enc.compressing());
    }
}
