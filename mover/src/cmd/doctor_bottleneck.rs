//! `mover doctor`: which stage of a transfer on this host is the slowest, from the measured rates. A transfer
//! runs its stages concurrently (decision 0003), so its rate is at most the slowest stage's: the disk read
//! (sender), the cipher on the one core that seals (packetizer) or opens (reassembly), the UDP socket path,
//! the disk write (receiver), and with `--peer` the path itself.

use crate::json::JsonObject;
use crate::rate::format_rate_bps;

/// One measured stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The JSON name: `disk_read`, `disk_write`, `cipher`, `udp` or `peer`.
    pub key: &'static str,
    /// What it is, for the sentence.
    pub label: &'static str,
    /// Its rate, bits per second.
    pub bps: f64,
}

/// The verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Bottleneck {
    /// The slowest stage's key.
    pub stage: &'static str,
    /// Its rate, bits per second.
    pub bps: f64,
    /// The sentence: "disk-bound at 1.40 GB/s (11.20 Gbit/s): the disk read is slower than ...".
    pub text: String,
}

impl Bottleneck {
    /// The `bottleneck` JSON object.
    pub fn to_json(&self) -> JsonObject {
        JsonObject::new().str("stage", self.stage).f64("bps", self.bps).str("text", &self.text)
    }
}

fn bound_word(key: &str) -> &'static str {
    match key {
        "disk_read" | "disk_write" => "disk-bound",
        "cipher" => "cipher-bound",
        "udp" => "network-bound",
        _ => "path-bound",
    }
}

fn rate(bps: f64) -> String {
    format!("{:.2} GB/s ({})", bps / 8e9, format_rate_bps(bps))
}

/// The slowest of `stages` (those with a positive rate), or `None` when none was measured.
pub fn judge(stages: &[Stage]) -> Option<Bottleneck> {
    let mut measured: Vec<&Stage> = stages.iter().filter(|s| s.bps.is_finite() && s.bps > 0.0).collect();
    measured.sort_by(|a, b| a.bps.total_cmp(&b.bps));
    let (first, rest) = measured.split_first()?;
    let others: Vec<String> = rest.iter().map(|s| format!("{} ({})", s.label, rate(s.bps))).collect();
    let than = match others.len() {
        0 => String::from("(the only stage measured)"),
        1 => format!("is slower than {}", others[0]),
        n => format!("is slower than {} and {}", others[..n - 1].join(", "), others[n - 1]),
    };
    let advice = match first.key {
        "disk_read" => "faster or more disks for the source (or a cached/tmpfs source) would speed a transfer up",
        "disk_write" => "the destination's disk limits a push into this host",
        "cipher" => "try --cipher chacha20poly1305 (or aes256gcm) and compare with `mover bench cipher`",
        "udp" => {
            "the kernel's per-datagram cost is the limit: larger --mtu (jumbo frames) or an AF_XDP zero-copy NIC help"
        }
        _ => "the network between the hosts is the limit",
    };
    Some(Bottleneck {
        stage: first.key,
        bps: first.bps,
        text: format!("{} at {}: {} {than}; {advice}", bound_word(first.key), rate(first.bps), first.label),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_measured_stage_is_named_with_the_others() {
        let stages = [
            Stage { key: "disk_read", label: "the disk read", bps: 11.2e9 },
            Stage { key: "udp", label: "the UDP socket path", bps: 16.8e9 },
            Stage { key: "cipher", label: "the cipher on one core", bps: 26.4e9 },
            Stage { key: "disk_write", label: "the disk write", bps: 0.0 },
        ];
        let b = judge(&stages).unwrap();
        assert_eq!((b.stage, b.bps), ("disk_read", 11.2e9));
        assert!(b.text.starts_with("disk-bound at 1.40 GB/s"), "{}", b.text);
        assert!(b.text.contains("the disk read is slower than the UDP socket path (2.10 GB/s"), "{}", b.text);
        assert!(b.text.contains("and the cipher on one core (3.30 GB/s"), "{}", b.text);
        assert!(!b.text.contains("disk write"), "an unmeasured stage is left out: {}", b.text);
        assert_eq!(judge(&stages[3..]), None);
    }
}
