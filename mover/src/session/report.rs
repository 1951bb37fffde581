//! One report for a finished (or failed) session, whichever side this host was on, and the one writer of
//! its `--json` object. `mover push` prints a sending report, `mover pull` a receiving one; the daemon logs
//! both kinds (a served pull is a sending report).

use crate::exit::ExitClass;
use crate::json::JsonObject;
use crate::net::xdp_path::XdpInfo;
use crate::pipeline::stats::{render_table, StageReport};
use crate::proto::policy::Policy;
use crate::rate::{format_bytes, format_rate_bps};
use crate::wire::control::ReceiverSummary;
use crate::wire::Cipher;
use std::net::SocketAddr;

/// Which side of the data this host was on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// This host read files and sent datagrams (a push, or a server answering a pull).
    #[default]
    Sent,
    /// This host received datagrams and committed files (a pull, or a server receiving a push).
    Received,
}

/// The outcome of one session: everything `--json` prints and everything the daemon logs.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Which side this host was on.
    pub direction: Direction,
    /// The other end of the control channel, once known.
    pub peer: Option<SocketAddr>,
    /// Regular files sent (sending) or committed (receiving).
    pub files: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Seconds from contacting the peer to the confirmation (sending) or the last commit (receiving).
    pub seconds: f64,
    /// Payload bits per second over `seconds`.
    pub goodput_bps: f64,
    /// Data packets sent (sending side).
    pub packets_sent: u64,
    /// Data packets that were retransmissions (sending side).
    pub packets_retransmitted: u64,
    /// True only when every file arrived and its whole-file hash matched.
    pub verified: bool,
    /// The data path used: "udp" or "xdp".
    pub net: &'static str,
    /// Why this end took that path, starting with its name ("udp: AF_XDP on veth0 is copy mode only ...");
    /// empty when no data path was opened (nothing to send).
    pub net_reason: String,
    /// The XDP path's details when `net` is "xdp".
    pub xdp: Option<XdpInfo>,
    /// The XDP program's counters at the end (receiving side): redirected, matched without a socket, passed.
    pub xdp_counters: [u64; 3],
    /// The sending rate asked for: the rate under `fixed`, the ceiling otherwise.
    pub rate_bps: u64,
    /// The rate policy.
    pub policy: Policy,
    /// The highest rate the policy chose, bits per second (sending side).
    pub max_rate_bps: u64,
    /// The rate the policy chose last, bits per second (sending side).
    pub final_rate_bps: u64,
    /// The last share of the receiving daemon's rate cap the sender was told (or, on a pull the daemon
    /// serves, its own), bits per second; `None` when no cap applied (sending side; PROTOCOL.md §3.7).
    pub rate_share_bps: Option<u64>,
    /// Smoothed RTT at the end, milliseconds (sending side).
    pub rtt_ms: f64,
    /// Verification rounds, 1 when no file needed repair (sending side).
    pub rounds: u32,
    /// Times sending held because the receiver's feedback was overdue: it stalled (sending side;
    /// PROTOCOL.md §4.5).
    pub receiver_stalls: u64,
    /// UDP payload bytes per data datagram (sending side).
    pub datagram_bytes: u64,
    /// The path MTU the datagrams were sized for (sending side; PROTOCOL.md §4.8).
    pub path_mtu: u64,
    /// Where `path_mtu` came from: "flag" (`--mtu`), "route", "base" or "black-hole-fallback" (sending side).
    pub pmtu_source: &'static str,
    /// The receiver counted a full-size data packet: the path carries `datagram_bytes` (sending side).
    pub pmtu_confirmed: bool,
    /// Whether UDP GSO was used (sending side).
    pub gso: bool,
    /// Entries skipped while scanning: symlinks, devices, ... (sending side).
    pub skipped: u64,
    /// The receiver's own counts: the peer's when sending, this host's when receiving.
    pub receiver: ReceiverSummary,
    /// The disk backend the reader or writer stage used: "io_uring", "pread" or "none".
    pub disk: &'static str,
    /// How datagrams were sealed (`--cipher`).
    pub cipher: Cipher,
    /// Feedback datagrams the sender dropped as damaged or foreign.
    pub feedback_dropped_invalid: u64,
    /// Of those, feedback that failed authentication.
    pub feedback_dropped_auth: u64,
    /// Feedback refused by the replay window.
    pub feedback_dropped_replayed: u64,
    /// What each pipeline stage did.
    pub stages: Vec<StageReport>,
    /// Why the session failed, if it did.
    pub error: Option<String>,
    /// The exit code's class of `error` ([`ExitClass::Success`] without one).
    pub exit_class: ExitClass,
    /// Bytes not sent again because the receiver already held them in partial files (resume).
    pub resumed_bytes: u64,
    /// Files not sent because the receiver's copy is current (`--overwrite`, `--checksum`).
    pub skipped_files: u64,
    /// Bytes of those files.
    pub skipped_bytes: u64,
    /// Payload bytes put on the wire, retransmissions included (sending side).
    pub sent_bytes: u64,
    /// Seconds from the start of the command to the first new data datagram (sending side; `None` when
    /// there was nothing to send).
    pub first_data_seconds: Option<f64>,
    /// A striped push's (`--via`) send phase and legs.
    pub stripe: Option<StripeReport>,
    /// A striped push returned once striping was done (`--detach`): the receiver finishes on its own.
    pub detached: bool,
    /// `--via auto`: every candidate relay with its RTTs and score, chosen ones first.
    pub relay_choice: Vec<super::relay_choice::Candidate>,
    /// `--shard`: which shard of the work this run moved (`0/1`: all of it).
    pub shard: crate::files::Shard,
    /// `--compress`: how the sender compressed blocks.
    pub compress: crate::wire::Compression,
    /// Payload bytes as they crossed the wire: compressed blocks at their frames' length, raw ones whole
    /// (sending side: every block sent, retransmissions included; receiving side: new blocks delivered).
    pub wire_bytes: u64,
    /// The same blocks' bytes before compression (`compression_ratio` is this over `wire_bytes`).
    pub raw_wire_bytes: u64,
    /// One destination of a fan-out push: bytes of the sources its session read from disk, and bytes it
    /// copied from the other sessions' reads (`read_disk_bytes`, `read_shared_bytes`).
    pub shared_reads: Option<(u64, u64)>,
}

/// What a striped push (`--via`, PROTOCOL.md §8) adds to its report.
#[derive(Clone, Debug, Default)]
pub struct StripeReport {
    /// The transfer's id (what `mover status ID` asks the receiving daemon about).
    pub transfer: String,
    /// Seconds until every block was held by a relay or the receiver.
    pub send_seconds: f64,
    /// The files' bytes over `send_seconds`, bits per second.
    pub send_goodput_bps: f64,
    /// Blocks the receiver asked for again.
    pub refetched: u64,
    /// Each leg: "direct" (the receiver) and each relay.
    pub legs: Vec<LegReport>,
}

/// One leg of a striped push.
#[derive(Clone, Debug, Default)]
pub struct LegReport {
    /// "direct" or the relay's URL.
    pub name: String,
    /// Sealed bytes the leg stored (headers and tags included).
    pub bytes: u64,
    /// Blocks it stored.
    pub blocks: u64,
    /// Batches (one push each).
    pub batches: u64,
    /// Seconds from the start of the push to its last stored batch.
    pub seconds: f64,
    /// `bytes` over `seconds`, bits per second.
    pub goodput_bps: f64,
    /// Datagrams its pushes sent again.
    pub retransmitted: u64,
    /// Batches its relay refused for want of room (each waited and went again, or elsewhere).
    pub spool_full: u64,
    /// Why it stopped taking batches, if it failed.
    pub failed: Option<String>,
}

impl LegReport {
    fn to_json(&self) -> JsonObject {
        let j = JsonObject::new()
            .str("name", &self.name)
            .u64("bytes", self.bytes)
            .u64("blocks", self.blocks)
            .u64("batches", self.batches)
            .f64("goodput_bps", self.goodput_bps)
            .u64("retransmitted", self.retransmitted)
            .u64("spool_full", self.spool_full);
        match &self.failed {
            Some(why) => j.str("failed", why),
            None => j,
        }
    }
}

impl Report {
    /// An empty report of a session about to start: nothing moved yet, no disk or XDP in use.
    pub fn new(direction: Direction, rate_bps: u64, policy: Policy, cipher: Cipher) -> Report {
        Report { direction, net: "udp", disk: "none", rate_bps, policy, cipher, ..Report::default() }
    }

    /// The `--json` object. The keys differ by direction (a receiver has no packets sent or rates chosen,
    /// and its own counters are the top level), and each list is fixed: README.md names them.
    pub fn to_json(&self) -> String {
        let sent = self.direction == Direction::Sent;
        let r = &self.receiver;
        let mut j = JsonObject::new()
            .u64("files", self.files)
            .u64("bytes", self.bytes)
            .f64("seconds", self.seconds)
            .f64("goodput_bps", self.goodput_bps);
        if sent {
            j = j.u64("packets_sent", self.packets_sent).u64("packets_retransmitted", self.packets_retransmitted);
        }
        j = j
            .u64("resumed_bytes", self.resumed_bytes)
            .u64("skipped_files", self.skipped_files)
            .u64("skipped_bytes", self.skipped_bytes);
        if sent {
            j = j.u64("sent_bytes", self.sent_bytes);
            if let Some(s) = self.first_data_seconds {
                j = j.f64("first_data_seconds", s);
            }
        }
        j = j
            .bool("verified", self.verified)
            .str("net", self.net)
            .str("net_reason", &self.net_reason)
            .u64("rate_bps", self.rate_bps)
            .str("policy", self.policy.name());
        j = if sent {
            j.u64("max_rate_bps", self.max_rate_bps)
                .u64("final_rate_bps", self.final_rate_bps)
                .raw("rate_share_bps", &self.rate_share_bps.map_or_else(|| "null".into(), |b| b.to_string()))
                .f64("rtt_ms", self.rtt_ms)
                .u64("rounds", self.rounds as u64)
                .u64("receiver_stalls", self.receiver_stalls)
                .u64("datagram_bytes", self.datagram_bytes)
                .u64("path_mtu", self.path_mtu)
                .str("pmtu_source", self.pmtu_source)
                .bool("pmtu_confirmed", self.pmtu_confirmed)
                .bool("gso", self.gso)
                .u64("skipped", self.skipped)
        } else {
            receiver_counts(j, r)
        };
        j = j.str("disk", self.disk).str("cipher", self.cipher.name());
        if sent {
            j = j.obj(
                "feedback_dropped",
                JsonObject::new()
                    .u64("invalid", self.feedback_dropped_invalid)
                    .u64("auth", self.feedback_dropped_auth)
                    .u64("replayed", self.feedback_dropped_replayed),
            );
        }
        if let Some(x) = &self.xdp {
            j = j.str("xdp_mode", x.mode);
            if sent {
                j = j.str("xdp_attach", x.attach);
            }
            j = j.str("xdp_interface", &x.interface);
            if sent {
                j = j.u64("xdp_queues", x.queues as u64);
            }
        }
        if sent {
            let files = JsonObject::new().u64("files", r.files).u64("bytes", r.bytes);
            j = j.obj("receiver", receiver_counts(files, r));
        }
        let dropped = self.dropped_list();
        j = j.strs("dropped", dropped.iter().map(String::as_str));
        j = j.array("stages", self.stages.iter().map(StageReport::to_json));
        j = j
            .str("compress", &self.compress.to_string())
            .str("shard", &self.shard.to_string())
            .u64("wire_bytes", self.wire_bytes)
            .f64("compression_ratio", self.compression_ratio());
        if let Some((disk, shared)) = self.shared_reads {
            j = j.u64("read_disk_bytes", disk).u64("read_shared_bytes", shared);
        }
        if let Some(st) = &self.stripe {
            j = j
                .str("transfer", &st.transfer)
                .f64("send_seconds", st.send_seconds)
                .f64("send_goodput_bps", st.send_goodput_bps)
                .u64("refetched_blocks", st.refetched)
                .bool("detached", self.detached)
                .array("legs", st.legs.iter().map(LegReport::to_json));
        }
        if !self.relay_choice.is_empty() {
            let ms = |j: JsonObject, k: &str, v: Option<f64>| match v {
                Some(v) => j.f64(k, v),
                None => j.raw(k, "null"),
            };
            j = j.array(
                "relay_choice",
                self.relay_choice.iter().map(|c| {
                    let o = JsonObject::new().str("url", &c.url);
                    let o = ms(o, "rtt_sender_ms", c.rtt_sender_ms);
                    let o = ms(o, "rtt_receiver_ms", c.rtt_receiver_ms);
                    let o = if c.score.is_finite() { o.f64("score", c.score) } else { o.raw("score", "null") };
                    o.bool("chosen", c.chosen)
                }),
            );
        }
        if let Some(e) = &self.error {
            j = j.str("error", e);
        }
        j.finish()
    }

    /// The per-stage table `--stats` prints; `role` names the command ("push", "pull", "serve").
    pub fn stage_table(&self, role: &str) -> String {
        let side = match self.direction {
            Direction::Sent => "sender",
            Direction::Received => "receiver",
        };
        let mut table = String::new();
        if !self.net_reason.is_empty() {
            table += &format!("data path ({role}): {}\n", self.net_reason);
        }
        table + &render_table(&format!("{side} stages ({role}):"), &self.stages)
    }

    /// Payload bytes before compression per byte on the wire (`compression_ratio`; 1.0 when nothing went).
    pub fn compression_ratio(&self) -> f64 {
        if self.wire_bytes == 0 {
            1.0
        } else {
            self.raw_wire_bytes as f64 / self.wire_bytes as f64
        }
    }

    /// What did not arrive as it is at the source, one phrase each: entries the scan did not send, and
    /// what the receiver could not keep (`ReceiverSummary::dropped`). Said once, in the summary line and
    /// the `dropped` JSON key, never silently.
    pub fn dropped_list(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.skipped > 0 {
            out.push(format!(
                "{} entries not sent (sockets, devices, FIFOs, unreadable names; listed above)",
                self.skipped
            ));
        }
        out.extend(crate::wire::entry::dropped::describe(self.receiver.dropped).into_iter().map(String::from));
        out
    }

    fn dropped_note(&self) -> String {
        let d = self.dropped_list();
        if d.is_empty() {
            String::new()
        } else {
            format!("; dropped: {}", d.join(", "))
        }
    }

    /// The client's summary line after a verified transfer (without the `mover push: ` prefix).
    pub fn summary_line(&self) -> String {
        let packets = match (&self.stripe, self.direction) {
            (Some(st), _) => format!(
                "sent in {:.2} s ({}) through {} legs, {} packets retransmitted",
                st.send_seconds,
                format_rate_bps(st.send_goodput_bps),
                st.legs.len(),
                self.packets_retransmitted
            ),
            (None, Direction::Sent) => {
                format!("{} packets ({} retransmitted)", self.packets_sent, self.packets_retransmitted)
            }
            (None, Direction::Received) => {
                format!("{} packets ({} duplicates)", self.receiver.packets_received, self.receiver.duplicates)
            }
        };
        format!(
            "{} files, {} in {:.2} s: {} goodput, {packets}, verified{}; {}{}",
            self.files,
            format_bytes(self.bytes),
            self.seconds,
            format_rate_bps(self.goodput_bps),
            self.sync_note(),
            cipher_note(self.cipher),
            self.dropped_note()
        )
    }

    /// The line of a striped push that left once striping was done (`--detach`), with how to learn the end.
    pub fn detached_line(&self, server: &str) -> String {
        let st = self.stripe.as_ref().map_or((0.0, 0.0, ""), |s| (s.send_seconds, s.send_goodput_bps, &s.transfer));
        format!(
            "{} files, {} striped in {:.2} s ({}); the receiver finishes on its own: \
             mover status {} --server {server}",
            self.files,
            format_bytes(self.bytes),
            st.0,
            format_rate_bps(st.1),
            st.2
        )
    }

    /// What the receiver already held, said in the summary when there was any: files skipped as current,
    /// bytes of partial files not sent again.
    fn sync_note(&self) -> String {
        let mut note = String::new();
        if self.skipped_files > 0 {
            note += &format!(
                "; {} files ({}) skipped, already current",
                self.skipped_files,
                format_bytes(self.skipped_bytes)
            );
        }
        if self.resumed_bytes > 0 {
            note += &format!("; resumed: {} already held", format_bytes(self.resumed_bytes));
        }
        note
    }

    /// The daemon's log line for a finished session (without the `mover serve: ` prefix): what the client
    /// committed, to or from whom, and how.
    pub fn served_line(&self) -> String {
        let r = &self.receiver;
        let peer = self.peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        format!(
            "{} files, {} {} {peer} in {:.2} s ({}), verified; {}; disk {}; net {}{}",
            r.files,
            format_bytes(r.bytes),
            if self.direction == Direction::Sent { "to" } else { "from" },
            self.seconds,
            format_rate_bps(r.bytes as f64 * 8.0 / self.seconds.max(1e-9)),
            cipher_note(self.cipher),
            self.disk,
            match &self.xdp {
                Some(x) => format!(
                    "xdp ({}, {}, {}, {} queue(s); program: {} redirected, {} passed)",
                    x.interface, x.mode, x.attach, x.queues, self.xdp_counters[0], self.xdp_counters[2]
                ),
                None if self.net_reason.is_empty() => "udp".into(),
                None => format!("udp ({})", self.net_reason.trim_start_matches("udp: ")),
            },
            self.dropped_note()
        )
    }
}

/// The receiver's counters, in the order both JSON forms list them.
fn receiver_counts(j: JsonObject, r: &ReceiverSummary) -> JsonObject {
    j.u64("packets_received", r.packets_received)
        .u64("duplicates", r.duplicates)
        .u64("dropped_invalid", r.dropped_invalid)
        .u64("dropped_auth", r.dropped_auth)
        .u64("dropped_replayed", r.dropped_replayed)
        .u64("repaired_files", r.repaired_files)
}

/// How a summary names the data channel's protection: `none` is said plainly, never silently.
pub fn cipher_note(cipher: Cipher) -> String {
    if cipher.is_aead() {
        format!("data encrypted and authenticated with {cipher}")
    } else {
        "data NOT encrypted or authenticated (--cipher none)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: &str) -> Vec<String> {
        // Top-level and nested keys in order: every `"name":`.
        json.split('"').collect::<Vec<_>>().windows(2).filter(|w| w[1].starts_with(':')).map(|w| w[0].into()).collect()
    }

    #[test]
    fn each_direction_writes_its_documented_keys_in_order() {
        let mut r = Report::new(Direction::Sent, 1, Policy::Fixed, Cipher::default());
        r.error = Some("x".into());
        let sent = "files bytes seconds goodput_bps packets_sent packets_retransmitted resumed_bytes skipped_files \
                    skipped_bytes sent_bytes verified net net_reason rate_bps policy \
                    max_rate_bps final_rate_bps rate_share_bps rtt_ms rounds receiver_stalls datagram_bytes path_mtu pmtu_source pmtu_confirmed gso skipped disk cipher feedback_dropped \
                    invalid auth replayed receiver files bytes packets_received duplicates dropped_invalid \
                    dropped_auth dropped_replayed repaired_files dropped stages compress shard wire_bytes compression_ratio error";
        assert_eq!(keys(&r.to_json()).join(" "), sent);
        r.direction = Direction::Received;
        r.error = None;
        let received = "files bytes seconds goodput_bps resumed_bytes skipped_files skipped_bytes verified net \
                        net_reason rate_bps policy packets_received duplicates \
                        dropped_invalid dropped_auth dropped_replayed repaired_files disk cipher dropped stages compress \
                        shard wire_bytes compression_ratio";
        assert_eq!(keys(&r.to_json()).join(" "), received);
        assert!(r.to_json().contains(r#""dropped":[]"#), "{}", r.to_json());
        r.direction = Direction::Sent;
        r.first_data_seconds = Some(0.25);
        assert!(r.to_json().contains(r#""sent_bytes":0,"first_data_seconds":0.25"#), "{}", r.to_json());
        r.direction = Direction::Received;
        r.skipped = 2;
        r.receiver.dropped = crate::wire::entry::dropped::SETID_BITS;
        let json = r.to_json();
        assert!(json.contains(r#""dropped":["2 entries not sent"#) && json.contains("set-user-ID"), "{json}");
        assert!(r.summary_line().contains("; dropped: 2 entries not sent"), "{}", r.summary_line());
        r.skipped_files = 3;
        r.skipped_bytes = 2048;
        r.resumed_bytes = 1 << 20;
        let line = r.summary_line();
        assert!(
            line.contains("; 3 files (2.00 KiB) skipped, already current; resumed: 1.00 MiB already held"),
            "{line}"
        );
    }

    #[test]
    fn a_striped_push_adds_its_documented_keys_in_order() {
        let mut r = Report::new(Direction::Sent, 1, Policy::Fair, Cipher::default());
        let leg = LegReport { name: "mover://r1:7400".into(), failed: Some("gone".into()), ..LegReport::default() };
        r.stripe =
            Some(StripeReport { transfer: "ab".into(), send_seconds: 2.0, legs: vec![leg], ..Default::default() });
        r.relay_choice = vec![super::super::relay_choice::Candidate {
            url: "mover://r1:7400".into(),
            rtt_sender_ms: Some(1.5),
            rtt_receiver_ms: None,
            score: f64::INFINITY,
            chosen: false,
        }];
        r.detached = true;
        let json = r.to_json();
        let all = keys(&json).join(" ");
        let tail = "stages compress shard wire_bytes compression_ratio transfer send_seconds send_goodput_bps refetched_blocks detached legs name bytes blocks \
                    batches goodput_bps retransmitted spool_full failed relay_choice url rtt_sender_ms \
                    rtt_receiver_ms score chosen";
        assert!(all.ends_with(tail), "{all}");
        assert!(json.contains(r#""rtt_receiver_ms":null,"score":null,"chosen":false"#), "{json}");
        assert!(json.contains(r#""detached":true"#), "{json}");
        // Nothing sent: the ratio is 1; zstd:1 that halved the bytes: 2.
        assert!(json.contains(r#""compress":"none","shard":"0/1","wire_bytes":0,"compression_ratio":1"#), "{json}");
        (r.compress, r.raw_wire_bytes, r.wire_bytes) = (crate::wire::Compression::Zstd(1), 2000, 1000);
        assert!(r.to_json().contains(r#""compress":"zstd:1","shard":"0/1","wire_bytes":1000,"compression_ratio":2"#));
        assert!(
            r.detached_line("mover://h:1").contains("mover status ab --server mover://h:1"),
            "{}",
            r.detached_line("x")
        );
    }
}
