//! Per-direction counters and their JSON form (written by hand: one flat object per direction, no dependency).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// What happened to the frames of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Frames read from the input interface.
    pub frames_in: u64,
    /// Their bytes (Ethernet header and payload, no FCS).
    pub bytes_in: u64,
    /// Frames written to the output interface.
    pub frames_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Dropped by independent loss.
    pub lost_random: u64,
    /// Dropped by Gilbert-Elliott loss.
    pub lost_burst: u64,
    /// Dropped because the queue in front of the bottleneck was full.
    pub queue_drops: u64,
    /// Held back by the reorder delay.
    pub reordered: u64,
    /// Dropped because every frame buffer was in use (the pool was sized too small for the traffic).
    pub pool_drops: u64,
    /// Frames longer than the interface MTU + 14 + 4 (offloads left on); they are forwarded if the kernel
    /// accepts them.
    pub oversize: u64,
    /// Frames longer than even a spill slot: dropped, their tail is gone.
    pub truncated: u64,
    /// Frames the kernel dropped before the forwarder read them (its socket receive buffer was full).
    pub socket_drops: u64,
    /// Frames the kernel refused to transmit (EMSGSIZE for an oversize frame, ENETDOWN, ...): dropped.
    pub send_errors: u64,
    /// Frames still waiting in the forwarder when it stopped.
    pub in_flight_at_exit: u64,
}

impl DirectionStats {
    /// The counters as one JSON object, the contract's fields first.
    pub fn to_json(&self) -> String {
        let fields = [
            ("frames_in", self.frames_in),
            ("frames_out", self.frames_out),
            ("bytes_out", self.bytes_out),
            ("lost_random", self.lost_random),
            ("lost_burst", self.lost_burst),
            ("queue_drops", self.queue_drops),
            ("reordered", self.reordered),
            ("bytes_in", self.bytes_in),
            ("pool_drops", self.pool_drops),
            ("oversize", self.oversize),
            ("truncated", self.truncated),
            ("socket_drops", self.socket_drops),
            ("send_errors", self.send_errors),
            ("in_flight_at_exit", self.in_flight_at_exit),
        ];
        let mut out = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{value}");
        }
        out.push('}');
        out
    }
}

/// The whole stats file: `{"forward":{..},"reverse":{..},"elapsed_s":..}`.
pub fn to_json(forward: &DirectionStats, reverse: &DirectionStats, elapsed_s: f64) -> String {
    format!("{{\"forward\":{},\"reverse\":{},\"elapsed_s\":{elapsed_s:.3}}}\n", forward.to_json(), reverse.to_json())
}

/// Writes the stats file through a temporary name and a rename, so a reader never sees half of it.
pub fn write_json(path: &Path, json: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let f =
            DirectionStats { frames_in: 10, frames_out: 8, bytes_out: 8 * 1514, lost_random: 2, ..Default::default() };
        let json = to_json(&f, &DirectionStats::default(), 1.5);
        assert!(json.starts_with(
            "{\"forward\":{\"frames_in\":10,\"frames_out\":8,\"bytes_out\":12112,\"lost_random\":2,\"lost_burst\":0,\
             \"queue_drops\":0,\"reordered\":0,"
        ));
        assert!(json.contains("},\"reverse\":{\"frames_in\":0,"));
        assert!(json.ends_with(",\"elapsed_s\":1.500}\n"));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
