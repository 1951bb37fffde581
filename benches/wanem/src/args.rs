//! The command line, parsed by hand (the project keeps its dependency tree lean) into a [`Config`] whose fields
//! are already in the units the data path uses: nanoseconds, bits per second, bytes, [`Probability`].

use crate::rng::Probability;
use std::path::PathBuf;

/// Printed by `--help` and after an argument error.
pub const USAGE: &str = "\
usage: mover-wanem --a IFACE --b IFACE [--delay 50ms] [--jitter 0ms] [--loss 1%] [--reverse-loss 0%]
                   [--burst-loss ENTER,LEAVE,LOSS_IN_BAD] [--rate 1G] [--queue 100ms|4MB] [--reorder 0%]
                   [--reorder-delay 1ms] [--seed 1] [--stats-json PATH] [--tick 50us] [--pool-frames N]
                   [--rt-priority 10]

Forwards every Ethernet frame between IFACE a (the sender side) and IFACE b (the receiver side), run in a
network namespace of its own whose kernel has no addresses on them. a->b is \"forward\", b->a \"reverse\".
  --delay D          one-way delay added in each direction (RTT = 2 x D)
  --jitter J         extra uniform 0..J per frame; order within a direction is kept
  --loss P           independent random loss a->b (1% or 0.01); --reverse-loss P: b->a
  --burst-loss E,L,P Gilbert-Elliott loss a->b: enter the bad state with E per frame, leave it with L,
                     lose with P while bad
  --rate R           bottleneck in bits/s of Ethernet frame bytes (k, M, G), each direction; 0 = unlimited
  --queue Q          drop-tail queue before the bottleneck: time at the rate (100ms) or bytes (4MB, 512K,
                     1MiB); default max(2 x delay, 10ms) at the rate
  --reorder P        hold a fraction P of forward frames back an extra --reorder-delay (default 1ms)
  --seed N           seed of the loss, jitter and reordering draws (default 1)
  --stats-json PATH  on SIGINT/SIGTERM, write per-direction counters there
  --tick T           frames due within T/2 leave together; the forwarder sleeps between ticks (default
                     50us; 0 = busy-poll, costs a whole core)
  --pool-frames N    frame buffers to allocate (default: sized from rate x (delay + queue))
  --rt-priority N    run under SCHED_FIFO priority N (default 10; 0 = ordinary scheduling), so a busy
                     machine delays the forwarder's wake-ups by microseconds, not milliseconds
Prints `ready` on stdout once both interfaces are open.";

/// Everything the forwarder needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The sender-side interface: frames read here go forward (a -> b).
    pub iface_a: String,
    /// The receiver-side interface.
    pub iface_b: String,
    /// One-way delay added in each direction.
    pub delay_ns: u64,
    /// Upper bound of the extra uniform per-frame delay.
    pub jitter_ns: u64,
    /// Independent loss a -> b.
    pub loss: Probability,
    /// Independent loss b -> a.
    pub reverse_loss: Probability,
    /// Gilbert-Elliott loss a -> b, when given.
    pub burst_loss: Option<BurstLoss>,
    /// Bottleneck rate in bits/s of Ethernet frame bytes; 0 = unlimited.
    pub rate_bits_per_s: u64,
    /// `--queue` as given; `None` = the default of one BDP (see [`Config::queue_bytes`]).
    pub queue: Option<QueueLimit>,
    /// Fraction of forward frames held back by `reorder_delay_ns`.
    pub reorder: Probability,
    /// The extra hold of a reordered frame.
    pub reorder_delay_ns: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Where to write the counters at exit.
    pub stats_json: Option<PathBuf>,
    /// Release granularity; 0 = busy-poll.
    pub tick_ns: u64,
    /// Overrides the frame pool's size.
    pub pool_frames: Option<u32>,
    /// SCHED_FIFO priority; 0 = ordinary scheduling.
    pub rt_priority: u8,
}

/// Parameters of a Gilbert-Elliott two-state loss channel; each is per frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstLoss {
    /// Probability of moving from the good to the bad state.
    pub enter: Probability,
    /// Probability of moving from the bad back to the good state.
    pub leave: Probability,
    /// Probability that a frame is lost while in the bad state (the good state loses nothing).
    pub loss_in_bad: Probability,
}

/// The drop-tail queue's capacity as the user gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    /// This long at the bottleneck rate.
    Time {
        /// Nanoseconds.
        ns: u64,
    },
    /// This many bytes of Ethernet frames.
    Bytes {
        /// Bytes.
        bytes: u64,
    },
}

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run the forwarder.
    Run(Box<Config>),
    /// Print [`USAGE`] and exit 0.
    Help,
}

/// The default queue when `--queue` is absent: at least this long at the rate.
pub const MIN_DEFAULT_QUEUE_NS: u64 = 10_000_000;

/// The default extra hold of a reordered frame.
pub const DEFAULT_REORDER_DELAY_NS: u64 = 1_000_000;

/// The default real-time priority: above every ordinary process (the sender and receiver under test, other
/// work on the machine), below the kernel's threaded interrupt handlers (50).
pub const DEFAULT_RT_PRIORITY: u8 = 10;

/// The default release granularity: the machine notes measure sleeps of 50-100 us as on target at the median,
/// and shorter ones overshoot to ~23 us anyway.
pub const DEFAULT_TICK_NS: u64 = 50_000;

impl Config {
    /// The drop-tail queue's capacity in bytes; `None` when the rate is unlimited (there is no queue then).
    pub fn queue_bytes(&self) -> Option<u64> {
        if self.rate_bits_per_s == 0 {
            return None;
        }
        let ns_to_bytes = |ns: u64| (ns as u128 * self.rate_bits_per_s as u128 / 8_000_000_000) as u64;
        Some(match self.queue {
            Some(QueueLimit::Bytes { bytes }) => bytes,
            Some(QueueLimit::Time { ns }) => ns_to_bytes(ns),
            None => ns_to_bytes((2 * self.delay_ns).max(MIN_DEFAULT_QUEUE_NS)),
        })
    }
}

/// Parses the arguments after the program name. The error is a sentence for the user.
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut iface_a = None;
    let mut iface_b = None;
    let mut cfg = Config {
        iface_a: String::new(),
        iface_b: String::new(),
        delay_ns: 0,
        jitter_ns: 0,
        loss: Probability::NEVER,
        reverse_loss: Probability::NEVER,
        burst_loss: None,
        rate_bits_per_s: 0,
        queue: None,
        reorder: Probability::NEVER,
        reorder_delay_ns: DEFAULT_REORDER_DELAY_NS,
        seed: 1,
        stats_json: None,
        tick_ns: DEFAULT_TICK_NS,
        pool_frames: None,
        rt_priority: DEFAULT_RT_PRIORITY,
    };
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument `{arg}`"));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        let v = value.as_str();
        let with_flag = |e: String| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--a" => iface_a = Some(parse_iface(v).map_err(with_flag)?),
            "--b" => iface_b = Some(parse_iface(v).map_err(with_flag)?),
            "--delay" => cfg.delay_ns = parse_duration_ns(v).map_err(with_flag)?,
            "--jitter" => cfg.jitter_ns = parse_duration_ns(v).map_err(with_flag)?,
            "--loss" => cfg.loss = parse_probability(v).map_err(with_flag)?,
            "--reverse-loss" => cfg.reverse_loss = parse_probability(v).map_err(with_flag)?,
            "--burst-loss" => cfg.burst_loss = Some(parse_burst_loss(v).map_err(with_flag)?),
            "--rate" => cfg.rate_bits_per_s = parse_rate_bits_per_s(v).map_err(with_flag)?,
            "--queue" => cfg.queue = Some(parse_queue(v).map_err(with_flag)?),
            "--reorder" => cfg.reorder = parse_probability(v).map_err(with_flag)?,
            "--reorder-delay" => cfg.reorder_delay_ns = parse_duration_ns(v).map_err(with_flag)?,
            "--seed" => cfg.seed = v.parse().map_err(|_| with_flag("not an unsigned integer".into()))?,
            "--stats-json" if v.is_empty() => return Err(format!("{flag} needs a path")),
            "--stats-json" => cfg.stats_json = Some(PathBuf::from(v)),
            "--tick" => cfg.tick_ns = parse_duration_ns(v).map_err(with_flag)?,
            "--rt-priority" => {
                let n: u8 = v.parse().map_err(|_| with_flag("not an integer from 0 to 99".into()))?;
                if n > 99 {
                    return Err(with_flag("SCHED_FIFO priorities go from 1 to 99 (0 = ordinary)".into()));
                }
                cfg.rt_priority = n;
            }
            "--pool-frames" => {
                let n: u32 = v.parse().map_err(|_| with_flag("not an unsigned integer".into()))?;
                if !(256..=(1 << 24)).contains(&n) {
                    return Err(with_flag("must be between 256 and 16777216".into()));
                }
                cfg.pool_frames = Some(n);
            }
            _ => return Err(format!("unknown option `{flag}`")),
        }
    }
    cfg.iface_a = iface_a.ok_or("--a IFACE (the sender side) is required")?;
    cfg.iface_b = iface_b.ok_or("--b IFACE (the receiver side) is required")?;
    if cfg.iface_a == cfg.iface_b {
        return Err(format!("--a and --b are both `{}`: they must be two interfaces", cfg.iface_a));
    }
    if cfg.tick_ns > 10_000_000 {
        return Err("--tick above 10ms would add that much error to every frame".into());
    }
    Ok(Command::Run(Box::new(cfg)))
}

/// Upper bound of any duration option: an hour is already absurd for a WAN, and it keeps every sum of
/// nanosecond times far from overflow.
const MAX_DURATION_NS: u64 = 3_600_000_000_000;

/// Upper bound of `--rate`: 1 Tbit/s keeps the per-frame arithmetic in u64 with room to spare.
const MAX_RATE_BITS_PER_S: u64 = 1_000_000_000_000;

/// Upper bound of a byte-sized `--queue`.
const MAX_QUEUE_BYTES: u64 = 1 << 32;

fn parse_iface(v: &str) -> Result<String, String> {
    // IFNAMSIZ is 16 including the NUL.
    if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', '\0']) {
        return Err("not an interface name (1-15 characters, no '/' or spaces)".into());
    }
    Ok(v.to_string())
}

/// `50ms`, `0.5ms`, `100us`, `2s`, `250ns`; a bare `0` is allowed, any other number needs its unit.
pub fn parse_duration_ns(v: &str) -> Result<u64, String> {
    if v == "0" {
        return Ok(0);
    }
    let units: [(&str, f64); 5] = [("ns", 1.0), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)];
    let (number, scale) = units
        .iter()
        .find_map(|&(suffix, scale)| v.strip_suffix(suffix).map(|n| (n, scale)))
        .ok_or("a duration needs a unit: ns, us, ms or s (e.g. 50ms)")?;
    let ns = parse_non_negative(number)? * scale;
    if ns > MAX_DURATION_NS as f64 {
        return Err("longer than an hour".into());
    }
    Ok(ns.round() as u64)
}

/// `1%`, `0.5%` or a fraction `0.01`.
pub fn parse_probability(v: &str) -> Result<Probability, String> {
    let p = match v.strip_suffix('%') {
        Some(percent) => parse_non_negative(percent)? / 100.0,
        None => parse_non_negative(v)?,
    };
    Probability::new(p).ok_or_else(|| "a probability must be between 0 and 1 (or 0% and 100%)".into())
}

fn parse_burst_loss(v: &str) -> Result<BurstLoss, String> {
    let parts: Vec<&str> = v.split(',').collect();
    let [enter, leave, loss_in_bad] = parts[..] else {
        return Err("expected three probabilities ENTER,LEAVE,LOSS_IN_BAD (e.g. 0.5%,30%,50%)".into());
    };
    let burst = BurstLoss {
        enter: parse_probability(enter)?,
        leave: parse_probability(leave)?,
        loss_in_bad: parse_probability(loss_in_bad)?,
    };
    if burst.leave.is_never() && !burst.enter.is_never() {
        return Err("LEAVE of 0 would stay in the bad state forever once entered".into());
    }
    Ok(burst)
}

/// `1G`, `100M`, `1.5G`, `500k`, `0`; optionally followed by `bit` or `bps` (`1Gbit`, `100Mbps`). SI
/// (decimal) multipliers: a rate of `1G` is 10^9 bits per second.
pub fn parse_rate_bits_per_s(v: &str) -> Result<u64, String> {
    let v = v.strip_suffix("bps").or_else(|| v.strip_suffix("bit")).unwrap_or(v);
    let (number, scale) = split_si_suffix(v);
    let bits = parse_non_negative(number)? * scale;
    if bits > MAX_RATE_BITS_PER_S as f64 {
        return Err("above 1 Tbit/s".into());
    }
    let bits = bits.round() as u64;
    if bits != 0 && bits < 8_000 {
        return Err("below 8 kbit/s (one byte per millisecond); use 0 for unlimited".into());
    }
    Ok(bits)
}

/// `100ms` (time at the rate) or bytes: `4MB`, `512K`, `1MiB`, `65536`. `K`/`M`/`G` are decimal (SI), `KiB`,
/// `MiB`, `GiB` binary; a trailing `B` is optional.
pub fn parse_queue(v: &str) -> Result<QueueLimit, String> {
    if v.ends_with('s') {
        let ns = parse_duration_ns(v)?;
        if ns == 0 {
            return Err("a queue of 0 would drop everything".into());
        }
        return Ok(QueueLimit::Time { ns });
    }
    let v = v.strip_suffix('B').unwrap_or(v);
    let (number, scale) = match v.strip_suffix('i') {
        Some(binary) => match binary.char_indices().last() {
            Some((at, unit)) => {
                let scale = match unit {
                    'K' | 'k' => 1024.0,
                    'M' => 1024.0 * 1024.0,
                    'G' => 1024.0 * 1024.0 * 1024.0,
                    _ => return Err("expected KiB, MiB or GiB".into()),
                };
                (&binary[..at], scale)
            }
            None => return Err("no number".into()),
        },
        None => split_si_suffix(v),
    };
    let bytes = parse_non_negative(number)? * scale;
    if bytes > MAX_QUEUE_BYTES as f64 {
        return Err("above 4 GiB".into());
    }
    if bytes < 1.0 {
        return Err("a queue of 0 would drop everything".into());
    }
    Ok(QueueLimit::Bytes { bytes: bytes.round() as u64 })
}

/// Splits a trailing SI multiplier (`k`/`K`, `M`, `G`, `T`) off a number.
fn split_si_suffix(v: &str) -> (&str, f64) {
    let scales = [('k', 1e3), ('K', 1e3), ('M', 1e6), ('m', 1e6), ('G', 1e9), ('g', 1e9), ('T', 1e12)];
    for (suffix, scale) in scales {
        if let Some(number) = v.strip_suffix(suffix) {
            return (number, scale);
        }
    }
    (v, 1.0)
}

/// A finite decimal number >= 0 (no sign, no exponent, so typos like `1e` or `-1` are refused clearly).
fn parse_non_negative(v: &str) -> Result<f64, String> {
    let ok = !v.is_empty()
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        && v.chars().filter(|&c| c == '.').count() <= 1
        && v.chars().any(|c| c.is_ascii_digit());
    if !ok {
        return Err(format!("`{v}` is not a non-negative decimal number"));
    }
    v.parse::<f64>().map_err(|e| format!("`{v}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse(args.iter().copied()) {
            Ok(Command::Run(cfg)) => *cfg,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => e,
            other => panic!("{args:?} should fail: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let cfg = run(&["--a", "x0", "--b", "x1"]);
        assert_eq!((cfg.iface_a.as_str(), cfg.iface_b.as_str()), ("x0", "x1"));
        assert_eq!(cfg.delay_ns, 0);
        assert!(cfg.loss.is_never() && cfg.reverse_loss.is_never() && cfg.reorder.is_never());
        assert_eq!(cfg.rate_bits_per_s, 0);
        assert_eq!(cfg.queue_bytes(), None, "no rate, no queue");
        assert_eq!(cfg.reorder_delay_ns, 1_000_000);
        assert_eq!(cfg.seed, 1);
        assert_eq!(cfg.tick_ns, 50_000);
        assert_eq!(cfg.rt_priority, 10);
        assert_eq!(run(&["--a", "a", "--b", "b", "--rt-priority", "0"]).rt_priority, 0);
    }

    #[test]
    fn the_documented_example() {
        let cfg = run(&[
            "--a",
            "snd",
            "--b",
            "rcv",
            "--delay",
            "50ms",
            "--jitter",
            "0ms",
            "--loss",
            "1%",
            "--reverse-loss",
            "0%",
            "--burst-loss",
            "0.5%,30%,0.5",
            "--rate",
            "1G",
            "--queue",
            "100ms",
            "--reorder",
            "0%",
            "--reorder-delay",
            "1ms",
            "--seed",
            "7",
            "--stats-json",
            "/tmp/s.json",
        ]);
        assert_eq!(cfg.delay_ns, 50_000_000);
        assert_eq!(cfg.loss, Probability::new(0.01).unwrap());
        let burst = cfg.burst_loss.unwrap();
        assert_eq!(burst.enter, Probability::new(0.005).unwrap());
        assert_eq!(burst.leave, Probability::new(0.3).unwrap());
        assert_eq!(burst.loss_in_bad, Probability::new(0.5).unwrap());
        assert_eq!(cfg.rate_bits_per_s, 1_000_000_000);
        assert_eq!(cfg.queue, Some(QueueLimit::Time { ns: 100_000_000 }));
        assert_eq!(cfg.queue_bytes(), Some(12_500_000), "100 ms at 1 Gbit/s");
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.stats_json.as_deref(), Some(std::path::Path::new("/tmp/s.json")));
    }

    #[test]
    fn equals_form_and_help() {
        let cfg = run(&["--a=x0", "--b=x1", "--delay=10ms", "--loss=0.02"]);
        assert_eq!(cfg.delay_ns, 10_000_000);
        assert_eq!(cfg.loss, Probability::new(0.02).unwrap());
        assert_eq!(parse(["--a", "x", "--help"]), Ok(Command::Help));
        assert_eq!(parse(["-h"]), Ok(Command::Help));
    }

    #[test]
    fn default_queue_is_one_bdp_or_10ms() {
        let cfg = run(&["--a", "a", "--b", "b", "--rate", "1G", "--delay", "50ms"]);
        assert_eq!(cfg.queue_bytes(), Some(12_500_000), "2 x 50 ms at 1 Gbit/s");
        let cfg = run(&["--a", "a", "--b", "b", "--rate", "1G", "--delay", "1ms"]);
        assert_eq!(cfg.queue_bytes(), Some(1_250_000), "10 ms floor at 1 Gbit/s");
        let cfg = run(&["--a", "a", "--b", "b", "--rate", "100M", "--queue", "512K"]);
        assert_eq!(cfg.queue_bytes(), Some(512_000));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("0"), Ok(0));
        assert_eq!(parse_duration_ns("0ms"), Ok(0));
        assert_eq!(parse_duration_ns("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_duration_ns("250us"), Ok(250_000));
        assert_eq!(parse_duration_ns("250µs"), Ok(250_000));
        assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration_ns("10ns"), Ok(10));
        for bad in ["50", "ms", "-1ms", "1e3ms", "1..2ms", "fast", "", "2h", "4000s"] {
            assert!(parse_duration_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probabilities() {
        assert_eq!(parse_probability("1%"), Ok(Probability::new(0.01).unwrap()));
        assert_eq!(parse_probability("0.01"), Ok(Probability::new(0.01).unwrap()));
        assert_eq!(parse_probability("100%"), Ok(Probability::new(1.0).unwrap()));
        assert_eq!(parse_probability("0"), Ok(Probability::NEVER));
        for bad in ["101%", "1.5", "-1%", "%", "one", "1%%", ""] {
            assert!(parse_probability(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate_bits_per_s("1G"), Ok(1_000_000_000));
        assert_eq!(parse_rate_bits_per_s("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate_bits_per_s("100M"), Ok(100_000_000));
        assert_eq!(parse_rate_bits_per_s("100m"), Ok(100_000_000));
        assert_eq!(parse_rate_bits_per_s("500k"), Ok(500_000));
        assert_eq!(parse_rate_bits_per_s("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate_bits_per_s("10Mbps"), Ok(10_000_000));
        assert_eq!(parse_rate_bits_per_s("2000000"), Ok(2_000_000));
        assert_eq!(parse_rate_bits_per_s("0"), Ok(0));
        for bad in ["", "G", "1X", "-1G", "2T", "100"] {
            assert!(parse_rate_bits_per_s(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queues() {
        assert_eq!(parse_queue("100ms"), Ok(QueueLimit::Time { ns: 100_000_000 }));
        assert_eq!(parse_queue("4MB"), Ok(QueueLimit::Bytes { bytes: 4_000_000 }));
        assert_eq!(parse_queue("4M"), Ok(QueueLimit::Bytes { bytes: 4_000_000 }));
        assert_eq!(parse_queue("512K"), Ok(QueueLimit::Bytes { bytes: 512_000 }));
        assert_eq!(parse_queue("512KiB"), Ok(QueueLimit::Bytes { bytes: 524_288 }));
        assert_eq!(parse_queue("1MiB"), Ok(QueueLimit::Bytes { bytes: 1_048_576 }));
        assert_eq!(parse_queue("65536"), Ok(QueueLimit::Bytes { bytes: 65_536 }));
        for bad in ["0", "0ms", "0B", "4XB", "MB", "5GiB", "1Qi", "-4MB"] {
            assert!(parse_queue(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_loss() {
        let cfg = run(&["--a", "a", "--b", "b", "--burst-loss", "1%,30%,50%"]);
        let b = cfg.burst_loss.unwrap();
        let p = |v| Probability::new(v).unwrap();
        assert_eq!((b.enter, b.leave, b.loss_in_bad), (p(0.01), p(0.3), p(0.5)));
        assert!(err(&["--a", "a", "--b", "b", "--burst-loss", "1%,30%"]).contains("three"));
        assert!(err(&["--a", "a", "--b", "b", "--burst-loss", "1%,0,50%"]).contains("forever"));
        assert!(err(&["--a", "a", "--b", "b", "--burst-loss", "1%,2x,50%"]).contains("--burst-loss"));
    }

    #[test]
    fn errors_are_clear() {
        assert!(err(&["--b", "x"]).contains("--a"));
        assert!(err(&["--a", "x"]).contains("--b"));
        assert!(err(&["--a", "x", "--b", "x"]).contains("two interfaces"));
        assert!(err(&["--a", "x", "--b", "y", "--delay"]).contains("needs a value"));
        assert!(err(&["--a", "x", "--b", "y", "--bogus", "1"]).contains("unknown option"));
        assert!(err(&["--a", "x", "--b", "y", "stray"]).contains("unexpected"));
        assert!(err(&["--a", "x", "--b", "y", "--loss", "2"]).contains("between 0 and 1"));
        assert!(err(&["--a", "x", "--b", "y", "--seed", "-3"]).contains("--seed"));
        assert!(err(&["--a", "this-name-is-too-long", "--b", "y"]).contains("interface name"));
        assert!(err(&["--a", "x", "--b", "y", "--tick", "1s"]).contains("--tick"));
        assert!(err(&["--a", "x", "--b", "y", "--pool-frames", "3"]).contains("--pool-frames"));
        assert!(err(&["--a", "x", "--b", "y", "--stats-json="]).contains("path"));
        assert!(err(&["--a", "x", "--b", "y", "--rt-priority", "100"]).contains("99"));
        assert!(err(&["--a", "x", "--b", "y", "--rt-priority", "high"]).contains("--rt-priority"));
    }
}
