//! Control messages, carried over TCP (later over an SSH pipe or TLS) as length-prefixed frames
//! (PROTOCOL.md §3).
//!
//! A frame is `len: u32` (big-endian, bytes that follow, 1..=[`MAX_FRAME_LEN`]) then `type: u8` and the
//! message body. Integers are big-endian; strings are `u16` length + UTF-8. A decoder never allocates more
//! than the frame it was given, which the framing layer caps before reading it.

use super::cipher::Cipher;
use super::entry::{Entry, EntryKind, MAX_XATTRS_PER_ENTRY};
use super::options::TransferOptions;
use super::policy::Policy;
use super::seal::{SessionKey, KEY_LEN};
use super::shard::Shard;
use super::verdict::{Verdict, VERDICT_LEN};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The largest frame body a peer may send (PROTOCOL.md §3.1). Larger lengths end the connection.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Longest path or message string (PROTOCOL.md §3.1).
pub const MAX_STRING_LEN: usize = 4096;
/// Most file ids in one `RoundFailed` message.
pub const MAX_IDS_PER_MESSAGE: usize = (MAX_FRAME_LEN - 16) / 4;
/// Most `(offset, len)` ranges in one `Have` message (PROTOCOL.md §3.2): what fits in one frame.
pub const MAX_RANGES_PER_MESSAGE: usize = (MAX_FRAME_LEN - 16) / 16;
/// Most verdicts in one `Verdicts` message (PROTOCOL.md §3.6): what fits in one frame.
pub const MAX_VERDICTS_PER_MESSAGE: usize = (MAX_FRAME_LEN - 16) / VERDICT_LEN;

/// What the sender asks for when it opens a session (PROTOCOL.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Wire protocol version the sender speaks.
    pub version: u16,
    /// Payload bytes per data packet (every block but a file's last has exactly this many).
    pub block_payload: u16,
    /// Sending rate in bits per second (informational for the receiver).
    pub rate_bps: u64,
    /// Receive window in blocks: the sender never sends a block this far beyond the cumulative ACK.
    pub window_blocks: u64,
    /// Number of manifest entries that follow.
    pub entry_count: u64,
    /// Bytes in all regular files of the manifest.
    pub total_bytes: u64,
    /// How datagrams are sealed: the sender's `--cipher`.
    pub cipher: Cipher,
    /// Sync, resume and metadata choices (`--overwrite`, `--checksum`, `--no-resume`, ...).
    pub options: TransferOptions,
    /// The sender's rate policy (`--policy`): informational, for a daemon that shares a rate cap between its
    /// sessions by policy (`low` yields first, PROTOCOL.md §3.7). It travels in the options word's bits
    /// 13-14 ([`HELLO_POLICY_SHIFT`]).
    pub policy: Policy,
    /// Destination directory, relative to the receiver's root.
    pub dest: String,
}

/// Where a `Hello`'s rate policy sits in its options word (PROTOCOL.md §3.2): two bits above the transfer
/// options, 0 `fair`, 1 `low`, 2 `fixed` (3 is refused). `fair`, the default, is 0 so that a default push
/// still reaches a daemon that does not know these bits (it refuses options bits it does not know).
pub const HELLO_POLICY_SHIFT: u32 = 13;
const _: () = assert!(super::options::KNOWN_BITS & (3 << HELLO_POLICY_SHIFT) == 0, "the policy bits are free");

/// A client asks the server to send it files: the server becomes the sender (PROTOCOL.md §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    /// Wire protocol version the client speaks.
    pub version: u16,
    /// How datagrams are sealed: the puller's `--cipher`.
    pub cipher: Cipher,
    /// The sender's rate policy (`--policy`).
    pub policy: Policy,
    /// Path MTU in bytes: the sender sizes its datagrams to fit it.
    pub mtu: u32,
    /// Sending rate (fixed) or ceiling (fair, low), bits per second.
    pub rate_bps: u64,
    /// The adaptive policies' floor, bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Receive window in bytes; 0 for the sender's default.
    pub window_bytes: u64,
    /// Sync, resume and metadata choices (`--overwrite`, `--checksum`, `--no-resume`, ...).
    pub options: TransferOptions,
    /// What to send: a file or directory, relative to the server's root.
    pub path: String,
    /// `--shard I/N`: the server sends only this shard of what it scans (`files::shard`).
    pub shard: Shard,
}

/// A `mover serve --stdio` server's first message: its version and the addresses of the SSH connection it
/// runs over, from `$SSH_CONNECTION` (PROTOCOL.md §3.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// Wire protocol version the server speaks.
    pub version: u16,
    /// The SSH client's address as sshd saw it (where a pulled session's data goes).
    pub client: Option<SocketAddr>,
    /// The address sshd accepted the connection on (where a pushed session's data goes).
    pub server: Option<SocketAddr>,
}

/// A sender opens a striped session through relays (type 16, PROTOCOL.md §8.3): the push's `Hello` and
/// what striping adds to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeHello {
    /// What a push's `Hello` says (its `block_payload` and `window_blocks` are unused: 0).
    pub hello: Hello,
    /// The transfer's id: names its directories on the relays and in the receiver's staging, and goes
    /// into the block key's derivation.
    pub transfer_id: u128,
    /// Plaintext bytes per block (every block but a file's last).
    pub block_bytes: u32,
    /// Collect from the relays while striping goes on (false: `--no-overlap`, only after `StripeDone`).
    pub overlap: bool,
    /// The sender leaves once striping is done (`--detach`): the receiver finishes on its own.
    pub detach: bool,
}

/// Most block indexes in one `BlocksAt` or `Refetch` message.
pub const MAX_BLOCKS_PER_MESSAGE: usize = (MAX_FRAME_LEN - 16) / 8;
/// Longest CA certificate text in a `RelayOffer`.
pub const MAX_CA_PEM_LEN: usize = 64 << 10;

/// Receiver's statistics at the end of a session.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverSummary {
    /// Files committed.
    pub files: u64,
    /// Payload bytes committed.
    pub bytes: u64,
    /// Valid data packets received.
    pub packets_received: u64,
    /// Duplicates received (spurious retransmissions, network duplication).
    pub duplicates: u64,
    /// Datagrams dropped as damaged or foreign (bad tag, truncated, ...).
    pub dropped_invalid: u64,
    /// Of those, datagrams that failed authentication (or, with cipher `none`, the integrity check).
    pub dropped_auth: u64,
    /// Authenticated datagrams refused by the replay window: replayed, copied by the network, or older than
    /// the window.
    pub dropped_replayed: u64,
    /// Whole-file verification failures that were repaired by sending the file again.
    pub repaired_files: u64,
    /// What the receiver could not keep (`wire::entry::dropped` bits).
    pub dropped: u32,
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// Sender opens a session (type 1).
    Hello(Hello),
    /// One manifest entry (type 2).
    Entry(Entry),
    /// End of the manifest (type 3).
    ManifestEnd,
    /// Receiver accepts: session id and the UDP port to send data to (type 4).
    Accept {
        /// Session id for every datagram.
        session_id: u64,
        /// Receiver's UDP port.
        udp_port: u16,
        /// The session key, fresh from the receiver's random source (all zeros with cipher `none`). It
        /// crosses only an authenticated, encrypted control channel (SSH or TLS), except under
        /// `--insecure-no-auth` (PROTOCOL.md §6).
        key: SessionKey,
    },
    /// Either side gives up, with a reason for the user (type 5).
    Error {
        /// One line for the user.
        message: String,
    },
    /// Sender's whole-file hash of one file, after reading it for this round (type 6).
    FileHash {
        /// Round.
        round: u8,
        /// File id.
        file_id: u32,
        /// xxh3-128 of the file's bytes.
        hash: u128,
    },
    /// Files of a round that failed whole-file verification; more may follow (type 7).
    RoundFailed {
        /// Round.
        round: u8,
        /// Failed file ids.
        file_ids: Vec<u32>,
    },
    /// The receiver has verified every file of the round; `failed` of them did not match and are sent
    /// again in the next round (type 8).
    RoundDone {
        /// Round.
        round: u8,
        /// How many files failed (the ids came in `RoundFailed` messages before).
        failed: u32,
    },
    /// Every file is committed (type 9).
    Complete(ReceiverSummary),
    /// Client asks the server to send (type 10).
    Pull(Pull),
    /// A `--stdio` server's greeting (type 12).
    Welcome(Welcome),
    /// Authentication inside the daemon's TLS control channel, before the `Hello` or `Pull` (type 11,
    /// PROTOCOL.md §3.4).
    Auth(AuthMsg),
    /// Receiver to sender, between `ManifestEnd` and `Accept`: files the receiver already holds, which
    /// are not sent (type 13, PROTOCOL.md §3.2).
    Skip {
        /// File ids (manifest order of regular files).
        file_ids: Vec<u32>,
    },
    /// Receiver to sender, between `ManifestEnd` and `Accept`: byte ranges of a file the receiver already
    /// holds from an earlier run, which round 0 does not send (type 14, PROTOCOL.md §3.2, §4.1).
    Have {
        /// File id.
        file_id: u32,
        /// `(offset, len)` ranges on the session's block grid, ascending, not overlapping.
        ranges: Vec<(u64, u64)>,
    },
    /// Daemon to client, while the session waits for a place (`--max-sessions`, `--max-sessions-per-client`):
    /// its place in the daemon's queue, sent when it changes and at least every few seconds as a keep-alive
    /// (type 15, PROTOCOL.md §3.5). It comes where the client waits for `Auth::Accepted` (TLS), or for
    /// `Accept` or the pull's `Hello` (`--insecure-no-auth`).
    Queued {
        /// 1-based place in the queue: 1 runs next.
        position: u32,
        /// Sessions waiting in all.
        waiting: u32,
    },
    /// Sender opens a striped session (type 16, PROTOCOL.md §8.3).
    Stripe(StripeHello),
    /// Sender to receiver: a relay that holds (or will hold) blocks of this transfer, and how to fetch
    /// from it (type 17).
    RelayOffer {
        /// The leg's number in `BlocksAt` (1..; 0 is the receiver itself).
        leg: u8,
        /// `mover://HOST:PORT` of the relay.
        url: String,
        /// The CA certificates (PEM) the sender trusts the relay's certificate by; empty: plain TCP
        /// (`--insecure-no-auth`).
        ca_pem: String,
        /// The fetch capability the relay accepts for this transfer's blocks (empty without TLS).
        capability: String,
    },
    /// Sender to receiver: these blocks are held on `leg` in batch `batch` (type 18).
    BlocksAt {
        /// 0: in the receiver's own staging; n: the relay of `RelayOffer { leg: n }`.
        leg: u8,
        /// The batch (its directory `b<batch>`).
        batch: u32,
        /// Global block indexes.
        blocks: Vec<u64>,
    },
    /// Sender to receiver: every block is held by a relay or the receiver; the whole-file hashes were all
    /// sent (type 19).
    StripeDone,
    /// Receiver to sender: these blocks could not be collected (lost, altered, refused): send them again
    /// (type 20).
    Refetch {
        /// Global block indexes.
        blocks: Vec<u64>,
    },
    /// Client to daemon, as its first message: how is the striped transfer `transfer` doing (`mover status`,
    /// type 21)?
    StatusQuery {
        /// The transfer's id, 32 hex digits.
        transfer: String,
    },
    /// Daemon to client: the answer to a `StatusQuery` (type 22).
    StatusReply(TransferStatus),
    /// Sender to receiver in a striped session, before any block (`--via auto`): measure your RTT to these
    /// relays (type 23, PROTOCOL.md §8.7).
    MeasureRtt {
        /// `mover://HOST[:PORT]` each, at most [`MAX_RTT_CANDIDATES`].
        urls: Vec<String>,
    },
    /// Sender to receiver under `--no-overlap`: every relay refuses more for want of room, so collect now
    /// rather than at `StripeDone`, or striping never ends (type 25, PROTOCOL.md §8.4).
    Drain,
    /// Receiver to sender: the RTTs, in microseconds, in the order asked; `u32::MAX` for a relay it could
    /// not reach (type 24).
    Rtts {
        /// One per URL of the `MeasureRtt`.
        micros: Vec<u32>,
    },
    /// Controller to the receiving daemon, as its first message (`mover copy`, PROTOCOL.md §9): mint a
    /// one-time delegation for a push into `dest` (type 26).
    Delegate {
        /// The destination directory, as a push's `Hello.dest` will name it.
        dest: String,
    },
    /// Receiving daemon to controller: the delegation, good for one push into the asked `dest` within a
    /// short time (type 27). `user` and `token` are the credentials the sending end presents.
    Delegation {
        /// The transfer's id (32 hex digits), for `mover status`.
        transfer: String,
        /// `delegate-` and the transfer's id; empty when the daemon runs without authentication.
        user: String,
        /// The one-time secret; empty when the daemon runs without authentication.
        token: Secret,
    },
    /// Controller to the sending end, as its first message: push `source` to the receiving daemon with the
    /// delegation (type 28).
    ThirdParty(ThirdParty),
    /// Sending end to controller at the end of a third-party push: its exit code, its `--json` report and
    /// its summary line (type 29). Progress before it comes as `StatusReply` (state running).
    CopyDone {
        /// The exit code a push with that outcome would have (0 for success).
        exit_code: u8,
        /// The sending end's report, as `push --json` prints it.
        json: String,
        /// Its summary line, or the error.
        summary: String,
    },
    /// Receiver to sender: the most this session may send, in bits per second of datagram bytes (the
    /// daemon's rate cap shared between its sessions, PROTOCOL.md §3.7). Sent before `Accept` and again
    /// whenever the share changes; the sender never paces above the latest (type 30).
    RateShare {
        /// The share, bits per second; never 0.
        bps: u64,
    },
    /// Client to daemon, as its first message (`mover job --dry-run`, PROTOCOL.md §3.6): what would a
    /// push of this `Hello` and the manifest that follows (entries, `ManifestEnd`, as after a `Hello`) do?
    /// The receiver answers with `Verdicts` and `DryRunDone` and creates, claims and changes nothing
    /// (type 31).
    DryRun(Hello),
    /// Receiver to client: the verdicts of files `first_file_id..` in manifest order of regular files; as
    /// many messages as the manifest needs, in order (type 32).
    Verdicts {
        /// The file id of the first verdict.
        first_file_id: u32,
        /// One per file.
        verdicts: Vec<Verdict>,
    },
    /// Receiver to client: every file's verdict was sent; `files` of them (type 33).
    DryRunDone {
        /// The manifest's regular files.
        files: u32,
    },
}

/// What the sending end of a third-party copy is asked to do (PROTOCOL.md §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThirdParty {
    /// Wire protocol version the controller speaks.
    pub version: u16,
    /// What to send: a file or directory, as a pull names it (relative to the sending daemon's root).
    pub source: String,
    /// The receiving daemon and directory, `mover://HOST[:PORT]/DIR`.
    pub dest_url: String,
    /// The receiving daemon's trust anchor (PEM, the controller's `--ca`); empty without TLS.
    pub ca_pem: String,
    /// The delegation's credentials (`Delegation`).
    pub user: String,
    /// The delegation's one-time secret.
    pub token: Secret,
    /// The transfer's id (the delegation's).
    pub transfer: String,
    /// How datagrams are sealed.
    pub cipher: Cipher,
    /// The rate policy.
    pub policy: Policy,
    /// Sending rate (fixed) or ceiling (fair, low), bits per second.
    pub rate_bps: u64,
    /// The adaptive policies' floor, bits per second; 0 for none.
    pub min_rate_bps: u64,
    /// Path MTU; 0 for the route's.
    pub mtu: u32,
    /// Receive window in bytes; 0 for the default.
    pub window_bytes: u64,
    /// Sync, resume, metadata and compression choices.
    pub options: TransferOptions,
    /// `--shard I/N`: the sending daemon sends only this shard of the source.
    pub shard: Shard,
}

/// Most relays one `MeasureRtt` names.
pub const MAX_RTT_CANDIDATES: usize = 64;

/// What a receiving daemon knows of a striped transfer (`mover status`, PROTOCOL.md §8.6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferStatus {
    /// 0: unknown here, 1: running, 2: done (every file verified and committed), 3: failed.
    pub state: u8,
    /// Files verified and committed so far.
    pub files_done: u64,
    /// Files in the transfer.
    pub files_total: u64,
    /// Bytes of the committed files.
    pub bytes_done: u64,
    /// Bytes in the transfer.
    pub bytes_total: u64,
    /// Why it failed (state 3), else empty.
    pub message: String,
}

/// `TransferStatus::state` values.
pub mod transfer_state {
    /// The daemon knows no such transfer.
    pub const UNKNOWN: u8 = 0;
    /// Still collecting.
    pub const RUNNING: u8 = 1;
    /// Every file verified and committed.
    pub const DONE: u8 = 2;
    /// Ended without completing.
    pub const FAILED: u8 = 3;
}

/// How the text of an `Error` starts when the daemon refuses a session because it is busy (its queue is
/// full): the client classes it as retryable (exit 5), not as a refusal.
pub const SERVER_BUSY: &str = "the server is busy";

/// The two directions of the authentication step (type 11; the first body byte is the kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMsg {
    /// Client to server, the first message after the TLS handshake (kind 1): a user and its token, or an
    /// empty token when the client authenticates with its TLS certificate alone.
    Credentials {
        /// The user the token belongs to.
        user: String,
        /// The token; empty for certificate authentication.
        token: Secret,
    },
    /// Server to client (kind 2): the client is authenticated as `identity` and may send its `Hello`.
    Accepted {
        /// How the server knows the client (`user:NAME` or `cert:SHA256-PREFIX`), for its logs.
        identity: String,
    },
}

/// A string that never appears in `Debug` output (a token inside a message that an error prints).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Why a control frame was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The frame ended before the message did.
    Truncated,
    /// The frame had bytes after the message.
    TrailingBytes,
    /// Unknown message type.
    UnknownType(u8),
    /// A string was not UTF-8 or was too long.
    BadString,
    /// A field had a value no valid message has.
    BadValue(&'static str),
    /// A frame length of 0 or over [`MAX_FRAME_LEN`].
    BadFrameLength(u64),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Truncated => write!(f, "control message truncated"),
            ControlError::TrailingBytes => write!(f, "control message has trailing bytes"),
            ControlError::UnknownType(t) => write!(f, "unknown control message type {t}"),
            ControlError::BadString => write!(f, "control message has an invalid string"),
            ControlError::BadValue(what) => write!(f, "control message has an invalid {what}"),
            ControlError::BadFrameLength(n) => {
                write!(f, "control frame length {n} is outside 1..={MAX_FRAME_LEN}")
            }
        }
    }
}

impl std::error::Error for ControlError {}

impl ControlMsg {
    /// Appends the whole frame (length prefix included) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            ControlMsg::Hello(h) => {
                out.push(1);
                put_hello(out, h);
            }
            ControlMsg::Entry(e) => {
                out.push(2);
                out.push(match e.kind {
                    EntryKind::File => 1,
                    EntryKind::Dir => 2,
                    EntryKind::Symlink => 3,
                    EntryKind::HardLink => 4,
                });
                out.extend_from_slice(&e.mode.to_be_bytes());
                out.extend_from_slice(&e.mtime_s.to_be_bytes());
                out.extend_from_slice(&e.mtime_ns.to_be_bytes());
                out.extend_from_slice(&e.size.to_be_bytes());
                put_str(out, &e.rel_path);
                put_entry_meta(out, e);
            }
            ControlMsg::ManifestEnd => out.push(3),
            ControlMsg::Accept { session_id, udp_port, key } => {
                out.push(4);
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&udp_port.to_be_bytes());
                out.extend_from_slice(&key.0);
            }
            ControlMsg::Error { message } => {
                out.push(5);
                put_str(out, message);
            }
            ControlMsg::FileHash { round, file_id, hash } => {
                out.push(6);
                out.push(*round);
                out.extend_from_slice(&file_id.to_be_bytes());
                out.extend_from_slice(&hash.to_be_bytes());
            }
            ControlMsg::RoundFailed { round, file_ids } => {
                assert!(file_ids.len() <= MAX_IDS_PER_MESSAGE);
                out.push(7);
                out.push(*round);
                out.extend_from_slice(&(file_ids.len() as u32).to_be_bytes());
                for id in file_ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            ControlMsg::RoundDone { round, failed } => {
                out.push(8);
                out.push(*round);
                out.extend_from_slice(&failed.to_be_bytes());
            }
            ControlMsg::Complete(s) => {
                out.push(9);
                for v in [
                    s.files,
                    s.bytes,
                    s.packets_received,
                    s.duplicates,
                    s.dropped_invalid,
                    s.repaired_files,
                    s.dropped_auth,
                    s.dropped_replayed,
                ] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&s.dropped.to_be_bytes());
            }
            ControlMsg::Pull(p) => {
                out.push(10);
                out.extend_from_slice(&p.version.to_be_bytes());
                out.push(p.cipher.code());
                out.push(policy_code(p.policy));
                out.extend_from_slice(&p.mtu.to_be_bytes());
                out.extend_from_slice(&p.rate_bps.to_be_bytes());
                out.extend_from_slice(&p.min_rate_bps.to_be_bytes());
                out.extend_from_slice(&p.window_bytes.to_be_bytes());
                out.extend_from_slice(&p.options.to_bits().to_be_bytes());
                put_str(out, &p.path);
                put_shard(out, p.shard);
            }
            ControlMsg::Welcome(w) => {
                out.push(12);
                out.extend_from_slice(&w.version.to_be_bytes());
                put_addr(out, w.client);
                put_addr(out, w.server);
            }
            ControlMsg::Auth(AuthMsg::Credentials { user, token }) => {
                out.extend_from_slice(&[11, 1]);
                put_str(out, user);
                put_str(out, &token.0);
            }
            ControlMsg::Auth(AuthMsg::Accepted { identity }) => {
                out.extend_from_slice(&[11, 2]);
                put_str(out, identity);
            }
            ControlMsg::Skip { file_ids } => {
                assert!(file_ids.len() <= MAX_IDS_PER_MESSAGE);
                out.push(13);
                out.extend_from_slice(&(file_ids.len() as u32).to_be_bytes());
                for id in file_ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            ControlMsg::Have { file_id, ranges } => {
                assert!(ranges.len() <= MAX_RANGES_PER_MESSAGE);
                out.push(14);
                out.extend_from_slice(&file_id.to_be_bytes());
                out.extend_from_slice(&(ranges.len() as u32).to_be_bytes());
                for (offset, len) in ranges {
                    out.extend_from_slice(&offset.to_be_bytes());
                    out.extend_from_slice(&len.to_be_bytes());
                }
            }
            ControlMsg::Queued { position, waiting } => {
                out.push(15);
                out.extend_from_slice(&position.to_be_bytes());
                out.extend_from_slice(&waiting.to_be_bytes());
            }
            ControlMsg::Stripe(s) => {
                out.push(16);
                out.extend_from_slice(&s.transfer_id.to_be_bytes());
                out.extend_from_slice(&s.block_bytes.to_be_bytes());
                out.push(u8::from(s.overlap) | (u8::from(s.detach) << 1));
                put_hello(out, &s.hello);
            }
            ControlMsg::RelayOffer { leg, url, ca_pem, capability } => {
                out.push(17);
                out.push(*leg);
                put_str(out, url);
                let pem = &ca_pem.as_bytes()[..ca_pem.len().min(MAX_CA_PEM_LEN)];
                out.extend_from_slice(&(pem.len() as u32).to_be_bytes());
                out.extend_from_slice(pem);
                put_str(out, capability);
            }
            ControlMsg::BlocksAt { leg, batch, blocks } => {
                assert!(blocks.len() <= MAX_BLOCKS_PER_MESSAGE);
                out.push(18);
                out.push(*leg);
                out.extend_from_slice(&batch.to_be_bytes());
                put_blocks(out, blocks);
            }
            ControlMsg::StripeDone => out.push(19),
            ControlMsg::Refetch { blocks } => {
                assert!(blocks.len() <= MAX_BLOCKS_PER_MESSAGE);
                out.push(20);
                put_blocks(out, blocks);
            }
            ControlMsg::Drain => out.push(25),
            ControlMsg::MeasureRtt { urls } => {
                assert!(urls.len() <= MAX_RTT_CANDIDATES);
                out.push(23);
                out.push(urls.len() as u8);
                for u in urls {
                    put_str(out, u);
                }
            }
            ControlMsg::Rtts { micros } => {
                assert!(micros.len() <= MAX_RTT_CANDIDATES);
                out.push(24);
                out.push(micros.len() as u8);
                for m in micros {
                    out.extend_from_slice(&m.to_be_bytes());
                }
            }
            ControlMsg::StatusQuery { transfer } => {
                out.push(21);
                put_str(out, transfer);
            }
            ControlMsg::StatusReply(t) => {
                out.push(22);
                out.push(t.state);
                for v in [t.files_done, t.files_total, t.bytes_done, t.bytes_total] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                put_str(out, &t.message);
            }
            ControlMsg::Delegate { dest } => {
                out.push(26);
                put_str(out, dest);
            }
            ControlMsg::Delegation { transfer, user, token } => {
                out.push(27);
                put_str(out, transfer);
                put_str(out, user);
                put_str(out, &token.0);
            }
            ControlMsg::ThirdParty(t) => {
                out.push(28);
                out.extend_from_slice(&t.version.to_be_bytes());
                put_str(out, &t.source);
                put_str(out, &t.dest_url);
                out.extend_from_slice(&(t.ca_pem.len() as u32).to_be_bytes());
                out.extend_from_slice(t.ca_pem.as_bytes());
                put_str(out, &t.user);
                put_str(out, &t.token.0);
                put_str(out, &t.transfer);
                out.push(t.cipher.code());
                out.push(policy_code(t.policy));
                for v in [t.rate_bps, t.min_rate_bps] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&t.mtu.to_be_bytes());
                out.extend_from_slice(&t.window_bytes.to_be_bytes());
                out.extend_from_slice(&t.options.to_bits().to_be_bytes());
                put_shard(out, t.shard);
            }
            ControlMsg::RateShare { bps } => {
                out.push(30);
                out.extend_from_slice(&bps.to_be_bytes());
            }
            ControlMsg::CopyDone { exit_code, json, summary } => {
                out.push(29);
                out.push(*exit_code);
                out.extend_from_slice(&(json.len() as u32).to_be_bytes());
                out.extend_from_slice(json.as_bytes());
                put_str(out, summary);
            }
            ControlMsg::DryRun(h) => {
                out.push(31);
                put_hello(out, h);
            }
            ControlMsg::Verdicts { first_file_id, verdicts } => {
                assert!(verdicts.len() <= MAX_VERDICTS_PER_MESSAGE);
                out.push(32);
                out.extend_from_slice(&first_file_id.to_be_bytes());
                out.extend_from_slice(&(verdicts.len() as u32).to_be_bytes());
                for v in verdicts {
                    v.put(out);
                }
            }
            ControlMsg::DryRunDone { files } => {
                out.push(33);
                out.extend_from_slice(&files.to_be_bytes());
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Checks a frame's length prefix before its body is read.
    pub fn check_frame_len(len: u32) -> Result<usize, ControlError> {
        if len == 0 || len as usize > MAX_FRAME_LEN {
            return Err(ControlError::BadFrameLength(len as u64));
        }
        Ok(len as usize)
    }

    /// Decodes a frame body (type byte and message, without the length prefix).
    pub fn decode(body: &[u8]) -> Result<ControlMsg, ControlError> {
        if body.len() > MAX_FRAME_LEN {
            return Err(ControlError::BadFrameLength(body.len() as u64));
        }
        let mut r = Reader { buf: body };
        let msg = match r.u8()? {
            1 => ControlMsg::Hello(r.hello()?),
            2 => {
                let kind = match r.u8()? {
                    1 => EntryKind::File,
                    2 => EntryKind::Dir,
                    3 => EntryKind::Symlink,
                    4 => EntryKind::HardLink,
                    _ => return Err(ControlError::BadValue("entry kind")),
                };
                let mode = r.u32()?;
                let mtime_s = r.u64()? as i64;
                let mtime_ns = r.u32()?;
                let size = r.u64()?;
                let rel_path = r.string()?;
                if mode > 0o7777 {
                    return Err(ControlError::BadValue("mode"));
                }
                if mtime_ns >= 1_000_000_000 {
                    return Err(ControlError::BadValue("mtime nanoseconds"));
                }
                if kind == EntryKind::Dir && size != 0 {
                    return Err(ControlError::BadValue("directory size"));
                }
                let mut e = Entry { rel_path, kind, size, mode, mtime_s, mtime_ns, ..Entry::default() };
                r.entry_meta(&mut e)?;
                ControlMsg::Entry(e)
            }
            3 => ControlMsg::ManifestEnd,
            4 => ControlMsg::Accept {
                session_id: r.u64()?,
                udp_port: r.u16()?,
                key: SessionKey(r.take(KEY_LEN)?.try_into().expect("KEY_LEN bytes")),
            },
            5 => ControlMsg::Error { message: r.string()? },
            6 => ControlMsg::FileHash { round: r.u8()?, file_id: r.u32()?, hash: r.u128()? },
            7 => {
                let round = r.u8()?;
                let n = r.u32()? as usize;
                // Check the count against the bytes present before allocating for it.
                if n > MAX_IDS_PER_MESSAGE || r.buf.len() < n * 4 {
                    return Err(ControlError::BadValue("file id count"));
                }
                let mut file_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    file_ids.push(r.u32()?);
                }
                ControlMsg::RoundFailed { round, file_ids }
            }
            8 => ControlMsg::RoundDone { round: r.u8()?, failed: r.u32()? },
            9 => ControlMsg::Complete(ReceiverSummary {
                files: r.u64()?,
                bytes: r.u64()?,
                packets_received: r.u64()?,
                duplicates: r.u64()?,
                dropped_invalid: r.u64()?,
                repaired_files: r.u64()?,
                dropped_auth: r.u64()?,
                dropped_replayed: r.u64()?,
                dropped: match r.u32()? {
                    bits if bits & !super::entry::dropped::KNOWN == 0 => bits,
                    _ => return Err(ControlError::BadValue("dropped bits")),
                },
            }),
            10 => ControlMsg::Pull(Pull {
                version: r.u16()?,
                cipher: Cipher::from_code(r.u8()?).ok_or(ControlError::BadValue("cipher"))?,
                policy: policy_from_code(r.u8()?).ok_or(ControlError::BadValue("policy"))?,
                mtu: r.u32()?,
                rate_bps: r.u64()?,
                min_rate_bps: r.u64()?,
                window_bytes: r.u64()?,
                options: TransferOptions::from_bits(r.u32()?).ok_or(ControlError::BadValue("options"))?,
                path: r.string()?,
                shard: r.shard()?,
            }),
            12 => ControlMsg::Welcome(Welcome { version: r.u16()?, client: r.addr()?, server: r.addr()? }),
            11 => match r.u8()? {
                1 => ControlMsg::Auth(AuthMsg::Credentials { user: r.string()?, token: Secret(r.string()?) }),
                2 => ControlMsg::Auth(AuthMsg::Accepted { identity: r.string()? }),
                _ => return Err(ControlError::BadValue("authentication kind")),
            },
            13 => {
                let n = r.u32()? as usize;
                // Check the count against the bytes present before allocating for it.
                if n > MAX_IDS_PER_MESSAGE || r.buf.len() < n * 4 {
                    return Err(ControlError::BadValue("file id count"));
                }
                let mut file_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    file_ids.push(r.u32()?);
                }
                ControlMsg::Skip { file_ids }
            }
            14 => {
                let file_id = r.u32()?;
                let n = r.u32()? as usize;
                if n > MAX_RANGES_PER_MESSAGE || r.buf.len() < n * 16 {
                    return Err(ControlError::BadValue("range count"));
                }
                let mut ranges = Vec::with_capacity(n);
                for _ in 0..n {
                    ranges.push((r.u64()?, r.u64()?));
                }
                ControlMsg::Have { file_id, ranges }
            }
            15 => {
                let (position, waiting) = (r.u32()?, r.u32()?);
                if position == 0 || position > waiting {
                    return Err(ControlError::BadValue("queue place"));
                }
                ControlMsg::Queued { position, waiting }
            }
            16 => {
                let transfer_id = r.u128()?;
                let block_bytes = r.u32()?;
                let flags = r.u8()?;
                if flags & !3 != 0 {
                    return Err(ControlError::BadValue("stripe flags"));
                }
                if !(super::stripe::MIN_BLOCK_BYTES..=super::stripe::MAX_BLOCK_BYTES).contains(&block_bytes) {
                    return Err(ControlError::BadValue("block size"));
                }
                let hello = r.hello()?;
                ControlMsg::Stripe(StripeHello {
                    hello,
                    transfer_id,
                    block_bytes,
                    overlap: flags & 1 != 0,
                    detach: flags & 2 != 0,
                })
            }
            17 => {
                let leg = r.u8()?;
                let url = r.string()?;
                let n = r.u32()? as usize;
                if n > MAX_CA_PEM_LEN {
                    return Err(ControlError::BadValue("certificate length"));
                }
                let ca_pem = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| ControlError::BadString)?;
                let capability = r.string()?;
                if leg == 0 {
                    return Err(ControlError::BadValue("relay leg"));
                }
                ControlMsg::RelayOffer { leg, url, ca_pem, capability }
            }
            18 => {
                let (leg, batch) = (r.u8()?, r.u32()?);
                ControlMsg::BlocksAt { leg, batch, blocks: r.blocks()? }
            }
            19 => ControlMsg::StripeDone,
            20 => ControlMsg::Refetch { blocks: r.blocks()? },
            21 => ControlMsg::StatusQuery { transfer: r.string()? },
            26 => ControlMsg::Delegate { dest: r.string()? },
            27 => ControlMsg::Delegation { transfer: r.string()?, user: r.string()?, token: Secret(r.string()?) },
            28 => {
                let version = r.u16()?;
                let (source, dest_url) = (r.string()?, r.string()?);
                let n = r.u32()? as usize;
                if n > MAX_CA_PEM_LEN {
                    return Err(ControlError::BadValue("certificate length"));
                }
                let ca_pem = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| ControlError::BadString)?;
                let (user, token, transfer) = (r.string()?, Secret(r.string()?), r.string()?);
                ControlMsg::ThirdParty(ThirdParty {
                    version,
                    source,
                    dest_url,
                    ca_pem,
                    user,
                    token,
                    transfer,
                    cipher: Cipher::from_code(r.u8()?).ok_or(ControlError::BadValue("cipher"))?,
                    policy: policy_from_code(r.u8()?).ok_or(ControlError::BadValue("policy"))?,
                    rate_bps: r.u64()?,
                    min_rate_bps: r.u64()?,
                    mtu: r.u32()?,
                    window_bytes: r.u64()?,
                    options: TransferOptions::from_bits(r.u32()?).ok_or(ControlError::BadValue("options"))?,
                    shard: r.shard()?,
                })
            }
            29 => {
                let exit_code = r.u8()?;
                let n = r.u32()? as usize;
                if n > MAX_FRAME_LEN {
                    return Err(ControlError::BadValue("report length"));
                }
                let json = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| ControlError::BadString)?;
                ControlMsg::CopyDone { exit_code, json, summary: r.string()? }
            }
            25 => ControlMsg::Drain,
            30 => match r.u64()? {
                0 => return Err(ControlError::BadValue("rate share")),
                bps => ControlMsg::RateShare { bps },
            },
            31 => ControlMsg::DryRun(r.hello()?),
            32 => {
                let first_file_id = r.u32()?;
                let n = r.u32()? as usize;
                // Check the count against the bytes present before allocating for it.
                if n > MAX_VERDICTS_PER_MESSAGE || r.buf.len() < n * VERDICT_LEN {
                    return Err(ControlError::BadValue("verdict count"));
                }
                if u64::from(first_file_id) + n as u64 > 1 << 32 {
                    return Err(ControlError::BadValue("file id"));
                }
                let mut verdicts = Vec::with_capacity(n);
                for _ in 0..n {
                    let bytes: &[u8; VERDICT_LEN] = r.take(VERDICT_LEN)?.try_into().expect("VERDICT_LEN bytes");
                    verdicts.push(Verdict::parse(bytes).ok_or(ControlError::BadValue("verdict"))?);
                }
                ControlMsg::Verdicts { first_file_id, verdicts }
            }
            33 => ControlMsg::DryRunDone { files: r.u32()? },
            23 => {
                let n = r.u8()? as usize;
                if n > MAX_RTT_CANDIDATES {
                    return Err(ControlError::BadValue("relay count"));
                }
                ControlMsg::MeasureRtt { urls: (0..n).map(|_| r.string()).collect::<Result<_, _>>()? }
            }
            24 => {
                let n = r.u8()? as usize;
                if n > MAX_RTT_CANDIDATES {
                    return Err(ControlError::BadValue("relay count"));
                }
                ControlMsg::Rtts { micros: (0..n).map(|_| r.u32()).collect::<Result<_, _>>()? }
            }
            22 => {
                let state = r.u8()?;
                if state > transfer_state::FAILED {
                    return Err(ControlError::BadValue("transfer state"));
                }
                ControlMsg::StatusReply(TransferStatus {
                    state,
                    files_done: r.u64()?,
                    files_total: r.u64()?,
                    bytes_done: r.u64()?,
                    bytes_total: r.u64()?,
                    message: r.string()?,
                })
            }
            t => return Err(ControlError::UnknownType(t)),
        };
        if !r.buf.is_empty() {
            return Err(ControlError::TrailingBytes);
        }
        Ok(msg)
    }
}

/// The entry's fields after `rel_path` (PROTOCOL.md §3.2): owner, flags, content hash, link target and
/// extended attributes.
fn put_entry_meta(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(&e.uid.to_be_bytes());
    out.extend_from_slice(&e.gid.to_be_bytes());
    let flags = (u8::from(e.sparse) * ENTRY_SPARSE)
        | (u8::from(e.content_hash.is_some()) * ENTRY_HASH)
        | (u8::from(e.piece.is_some()) * ENTRY_PIECE);
    out.push(flags);
    if let Some(h) = e.content_hash {
        out.extend_from_slice(&h.to_be_bytes());
    }
    if let Some(p) = e.piece.as_deref() {
        out.extend_from_slice(&p.offset.to_be_bytes());
        out.extend_from_slice(&p.file_size.to_be_bytes());
    }
    put_str(out, &e.link_target);
    // The scan refuses more (Entry::check_xattrs); an encoder never emits what the decoder refuses.
    let n = e.xattrs.len().min(MAX_XATTRS_PER_ENTRY);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for (name, value) in &e.xattrs[..n] {
        put_str(out, name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
}

/// Entry flag: the source file is sparse (PROTOCOL.md §3.2).
const ENTRY_SPARSE: u8 = 1;
/// Entry flag: a 16-byte content hash follows.
const ENTRY_HASH: u8 = 2;
/// Entry flag: the entry is one range of a split file; `offset` u64 and `file_size` u64 follow (after the
/// hash, if any).
const ENTRY_PIECE: u8 = 4;

/// Link targets as text: a hard link's names a manifest path (the receiver sanitizes it again); neither
/// may hold a NUL (no system call could take it).
fn check_link_target(kind: EntryKind, target: &str) -> Result<(), ControlError> {
    let bad = |what| Err(ControlError::BadValue(what));
    match kind {
        EntryKind::File | EntryKind::Dir if !target.is_empty() => bad("link target on a file or directory"),
        EntryKind::Symlink | EntryKind::HardLink if target.is_empty() || target.contains('\0') => bad("link target"),
        EntryKind::HardLink if target.starts_with('/') || target.split('/').any(|c| matches!(c, "" | "." | "..")) => {
            bad("hard link target")
        }
        _ => Ok(()),
    }
}

/// A `Hello`'s body (after the type byte), also inside a `Stripe`.
fn put_hello(out: &mut Vec<u8>, h: &Hello) {
    out.extend_from_slice(&h.version.to_be_bytes());
    out.extend_from_slice(&h.block_payload.to_be_bytes());
    out.extend_from_slice(&h.rate_bps.to_be_bytes());
    out.extend_from_slice(&h.window_blocks.to_be_bytes());
    out.extend_from_slice(&h.entry_count.to_be_bytes());
    out.extend_from_slice(&h.total_bytes.to_be_bytes());
    out.push(h.cipher.code());
    let policy = match h.policy {
        Policy::Fair => 0,
        Policy::Low => 1,
        Policy::Fixed => 2,
    };
    out.extend_from_slice(&(h.options.to_bits() | policy << HELLO_POLICY_SHIFT).to_be_bytes());
    put_str(out, &h.dest);
}

/// A count (`u32`) and that many global block indexes (`u64`).
fn put_blocks(out: &mut Vec<u8>, blocks: &[u64]) {
    out.extend_from_slice(&(blocks.len() as u32).to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&b.to_be_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Encoders truncate rather than emit a frame the peer must refuse; callers validate lengths for users.
    let mut end = s.len().min(MAX_STRING_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// A shard: `index: u32`, `count: u32` (`0, 1` for the whole set).
fn put_shard(out: &mut Vec<u8>, shard: Shard) {
    out.extend_from_slice(&shard.index.to_be_bytes());
    out.extend_from_slice(&shard.count.to_be_bytes());
}

/// Policy codes in `Pull` (PROTOCOL.md §3.3).
fn policy_code(p: Policy) -> u8 {
    match p {
        Policy::Fixed => 0,
        Policy::Fair => 1,
        Policy::Low => 2,
    }
}

fn policy_from_code(c: u8) -> Option<Policy> {
    match c {
        0 => Some(Policy::Fixed),
        1 => Some(Policy::Fair),
        2 => Some(Policy::Low),
        _ => None,
    }
}

/// An optional socket address: `family: u8` (0 = none, 4, 6), then the address bytes and `port: u16`.
fn put_addr(out: &mut Vec<u8>, a: Option<SocketAddr>) {
    match a {
        None => out.push(0),
        Some(SocketAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ControlError> {
        if self.buf.len() < n {
            return Err(ControlError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ControlError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ControlError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, ControlError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, ControlError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn shard(&mut self) -> Result<Shard, ControlError> {
        let (index, count) = (self.u32()?, self.u32()?);
        if count == 0 || count > super::shard::MAX_SHARDS || index >= count {
            return Err(ControlError::BadValue("shard"));
        }
        Ok(Shard { index, count })
    }
    fn u128(&mut self) -> Result<u128, ControlError> {
        Ok(u128::from_be_bytes(self.take(16)?.try_into().expect("16 bytes")))
    }
    fn hello(&mut self) -> Result<Hello, ControlError> {
        let (version, block_payload, rate_bps) = (self.u16()?, self.u16()?, self.u64()?);
        let (window_blocks, entry_count, total_bytes) = (self.u64()?, self.u64()?, self.u64()?);
        let cipher = Cipher::from_code(self.u8()?).ok_or(ControlError::BadValue("cipher"))?;
        let bits = self.u32()?;
        let policy = match (bits >> HELLO_POLICY_SHIFT) & 3 {
            0 => Policy::Fair,
            1 => Policy::Low,
            2 => Policy::Fixed,
            _ => return Err(ControlError::BadValue("policy")),
        };
        let options = bits & !(3 << HELLO_POLICY_SHIFT);
        let options = TransferOptions::from_bits(options).ok_or(ControlError::BadValue("options"))?;
        Ok(Hello {
            version,
            block_payload,
            rate_bps,
            window_blocks,
            entry_count,
            total_bytes,
            cipher,
            options,
            policy,
            dest: self.string()?,
        })
    }
    fn blocks(&mut self) -> Result<Vec<u64>, ControlError> {
        let n = self.u32()? as usize;
        // Check the count against the bytes present before allocating for it.
        if n > MAX_BLOCKS_PER_MESSAGE || self.buf.len() < n * 8 {
            return Err(ControlError::BadValue("block count"));
        }
        (0..n).map(|_| self.u64()).collect()
    }
    fn addr(&mut self) -> Result<Option<SocketAddr>, ControlError> {
        let ip: IpAddr = match self.u8()? {
            0 => return Ok(None),
            4 => Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).expect("4 bytes")).into(),
            6 => Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).expect("16 bytes")).into(),
            _ => return Err(ControlError::BadValue("address family")),
        };
        Ok(Some(SocketAddr::new(ip, self.u16()?)))
    }
    /// The entry fields after `rel_path` (see `put_entry_meta`), validated.
    fn entry_meta(&mut self, e: &mut Entry) -> Result<(), ControlError> {
        e.uid = self.u32()?;
        e.gid = self.u32()?;
        let flags = self.u8()?;
        if flags & !(ENTRY_SPARSE | ENTRY_HASH | ENTRY_PIECE) != 0 {
            return Err(ControlError::BadValue("entry flags"));
        }
        e.sparse = flags & ENTRY_SPARSE != 0;
        if flags & ENTRY_HASH != 0 {
            e.content_hash = Some(self.u128()?);
        }
        if flags & ENTRY_PIECE != 0 {
            let piece = super::shard::Piece { offset: self.u64()?, file_size: self.u64()? };
            // Only the ranges the receiver assembles files from, of regular files, never sparse (a range is
            // written as it comes).
            if e.kind != EntryKind::File || e.sparse || !piece.is_on_layout(e.size) {
                return Err(ControlError::BadValue("file range"));
            }
            e.piece = Some(Box::new(piece));
        }
        e.link_target = self.string()?;
        check_link_target(e.kind, &e.link_target)?;
        let file_only = e.sparse || e.content_hash.is_some();
        match e.kind {
            EntryKind::Symlink | EntryKind::HardLink if file_only || e.size != 0 => {
                return Err(ControlError::BadValue("link size or flags"))
            }
            EntryKind::Dir if file_only => return Err(ControlError::BadValue("directory flags")),
            _ => {}
        }
        let n = self.u16()? as usize;
        // Each attribute takes at least 6 bytes: checked against the bytes present before allocating.
        if n > MAX_XATTRS_PER_ENTRY || self.buf.len() < n * 6 {
            return Err(ControlError::BadValue("extended attribute count"));
        }
        let mut xattrs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            let len = self.u32()? as usize;
            xattrs.push((name, self.take(len)?.to_vec()));
        }
        Entry::check_xattrs(&xattrs).map_err(|_| ControlError::BadValue("extended attributes"))?;
        e.xattrs = xattrs;
        Ok(())
    }
    fn string(&mut self) -> Result<String, ControlError> {
        let n = self.u16()? as usize;
        if n > MAX_STRING_LEN {
            return Err(ControlError::BadString);
        }
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ControlError::BadString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::verdict::VerdictKind;

    pub(crate) fn samples() -> Vec<ControlMsg> {
        vec![
            ControlMsg::Hello(Hello {
                version: 1,
                block_payload: 1412,
                rate_bps: 2_000_000_000,
                window_blocks: 1 << 18,
                entry_count: 3,
                total_bytes: 1 << 33,
                cipher: Cipher::ChaCha20Poly1305,
                options: Default::default(),
                policy: Policy::Low,
                dest: "projects/run42".into(),
            }),
            ControlMsg::Entry(Entry {
                rel_path: "dataset/ä.txt".into(),
                kind: EntryKind::File,
                size: 5 << 30,
                mode: 0o644,
                mtime_s: -5,
                mtime_ns: 999_999_999,
                uid: 1000,
                gid: 100,
                sparse: true,
                content_hash: Some(u128::MAX / 3),
                xattrs: vec![("user.test".into(), b"v\0x".to_vec()), ("user.empty".into(), Vec::new())],
                ..Entry::default()
            }),
            ControlMsg::Entry(Entry {
                rel_path: "dataset/huge.bin".into(),
                kind: EntryKind::File,
                size: 16 << 20,
                content_hash: Some(7),
                piece: Some(Box::new(crate::wire::shard::Piece { offset: 128 << 20, file_size: 200 << 20 })),
                ..Entry::default()
            }),
            ControlMsg::Entry(Entry {
                rel_path: "dataset/link".into(),
                kind: EntryKind::Symlink,
                mode: 0o777,
                link_target: "../../outside/target".into(),
                ..Entry::default()
            }),
            ControlMsg::Entry(Entry {
                rel_path: "dataset/second".into(),
                kind: EntryKind::HardLink,
                mode: 0o644,
                uid: u32::MAX,
                link_target: "dataset/ä.txt".into(),
                ..Entry::default()
            }),
            ControlMsg::Entry(Entry {
                rel_path: "dataset".into(),
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o755,
                mtime_s: 1_700_000_000,
                mtime_ns: 0,
                ..Entry::default()
            }),
            ControlMsg::ManifestEnd,
            ControlMsg::Accept { session_id: 0xdead_beef, udp_port: 40000, key: SessionKey([7; KEY_LEN]) },
            ControlMsg::Error { message: "disk full".into() },
            ControlMsg::FileHash { round: 0, file_id: 9, hash: u128::MAX - 3 },
            ControlMsg::RoundFailed { round: 2, file_ids: vec![1, 5, 9] },
            ControlMsg::RoundDone { round: 2, failed: 3 },
            ControlMsg::Complete(ReceiverSummary {
                files: 1,
                bytes: 2,
                packets_received: 3,
                duplicates: 4,
                dropped_invalid: 5,
                repaired_files: 6,
                dropped_auth: 7,
                dropped_replayed: 8,
                dropped: super::super::entry::dropped::SETID_BITS,
            }),
            ControlMsg::Pull(Pull {
                version: 3,
                cipher: Cipher::Aes256Gcm,
                policy: Policy::Low,
                mtu: 9000,
                rate_bps: 10_000_000_000,
                min_rate_bps: 1_000_000,
                window_bytes: 0,
                options: Default::default(),
                path: "/home/me/run42".into(),
                shard: Shard { index: 2, count: 4 },
            }),
            ControlMsg::Welcome(Welcome {
                version: 3,
                client: Some("10.0.0.1:51234".parse().unwrap()),
                server: Some("[2001:db8::2]:22".parse().unwrap()),
            }),
            ControlMsg::Welcome(Welcome { version: 3, client: None, server: None }),
            ControlMsg::Auth(AuthMsg::Credentials { user: "alice".into(), token: Secret("t0ken".into()) }),
            ControlMsg::Auth(AuthMsg::Credentials { user: "bob".into(), token: Secret::default() }),
            ControlMsg::Auth(AuthMsg::Accepted { identity: "user:alice".into() }),
            ControlMsg::Skip { file_ids: vec![0, 4, u32::MAX] },
            ControlMsg::Skip { file_ids: vec![] },
            ControlMsg::Have { file_id: 3, ranges: vec![(0, 1412 * 4), (1412 * 9, 700), (5 << 32, 1)] },
            ControlMsg::Have { file_id: 7, ranges: vec![] },
            ControlMsg::Queued { position: 3, waiting: 7 },
            ControlMsg::Queued { position: u32::MAX, waiting: u32::MAX },
            ControlMsg::Stripe(StripeHello {
                hello: Hello {
                    version: 3,
                    block_payload: 0,
                    rate_bps: 1_000_000_000,
                    window_blocks: 0,
                    entry_count: 2,
                    total_bytes: 1 << 30,
                    cipher: Cipher::Aes256Gcm,
                    options: Default::default(),
                    policy: Policy::Fixed,
                    dest: "evacuated".into(),
                },
                transfer_id: u128::MAX - 5,
                block_bytes: 4 << 20,
                overlap: true,
                detach: false,
            }),
            ControlMsg::RelayOffer {
                leg: 3,
                url: "mover://10.0.0.3:7710".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
                capability: "abcd".into(),
            },
            ControlMsg::BlocksAt { leg: 0, batch: 7, blocks: vec![0, 3, u64::MAX] },
            ControlMsg::StripeDone,
            ControlMsg::Refetch { blocks: vec![5] },
            ControlMsg::Refetch { blocks: vec![] },
            ControlMsg::StatusQuery { transfer: "0123456789abcdef0123456789abcdef".into() },
            ControlMsg::Delegate { dest: "incoming/run-7".into() },
            ControlMsg::Delegation {
                transfer: "0123456789abcdef0123456789abcdef".into(),
                user: "delegate-0123456789abcdef0123456789abcdef".into(),
                token: Secret("s3cret".into()),
            },
            ControlMsg::ThirdParty(ThirdParty {
                version: 3,
                source: "runs/7".into(),
                dest_url: "mover://[fd00::2]:7400/in".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
                user: "delegate-ab".into(),
                token: Secret("t".into()),
                transfer: "ab".into(),
                cipher: Cipher::default(),
                policy: Policy::Fair,
                rate_bps: 10_000_000_000,
                min_rate_bps: 0,
                mtu: 9000,
                window_bytes: 0,
                options: TransferOptions { compress: crate::wire::Compression::Zstd(3), ..Default::default() },
                shard: Shard::WHOLE,
            }),
            ControlMsg::CopyDone { exit_code: 0, json: "{\"files\":1}".into(), summary: "done".into() },
            ControlMsg::MeasureRtt { urls: vec!["mover://r1:7400".into(), "mover://[::1]".into()] },
            ControlMsg::Rtts { micros: vec![1200, u32::MAX] },
            ControlMsg::Drain,
            ControlMsg::RateShare { bps: 200_000_000 },
            ControlMsg::RateShare { bps: u64::MAX },
            ControlMsg::StatusReply(TransferStatus {
                state: transfer_state::FAILED,
                files_done: 1,
                files_total: 2,
                bytes_done: 3,
                bytes_total: 4,
                message: "lost".into(),
            }),
            ControlMsg::DryRun(Hello {
                version: 1,
                block_payload: 8912,
                rate_bps: 200_000_000,
                window_blocks: 1 << 16,
                entry_count: 2,
                total_bytes: 5,
                cipher: Cipher::None,
                options: TransferOptions { checksum: true, ..Default::default() },
                policy: Policy::Fair,
                dest: "in".into(),
            }),
            ControlMsg::Verdicts {
                first_file_id: 7,
                verdicts: vec![
                    Verdict { kind: VerdictKind::New, held: 0 },
                    Verdict { kind: VerdictKind::Changed, held: 1 << 24 },
                    Verdict { kind: VerdictKind::Unchanged, held: 0 },
                ],
            },
            ControlMsg::Verdicts { first_file_id: 0, verdicts: Vec::new() },
            ControlMsg::DryRunDone { files: 3 },
        ]
    }

    #[test]
    fn tokens_do_not_appear_in_debug_output() {
        let m = ControlMsg::Auth(AuthMsg::Credentials { user: "alice".into(), token: Secret("hunter2".into()) });
        let shown = format!("{m:?}");
        assert!(!shown.contains("hunter2") && shown.contains("alice"), "{shown}");
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let mut frame = Vec::new();
            m.encode(&mut frame);
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap());
            assert_eq!(ControlMsg::check_frame_len(len), Ok(frame.len() - 4));
            assert_eq!(ControlMsg::decode(&frame[4..]), Ok(m.clone()));
            // Every proper prefix is refused, never a panic.
            for cut in 0..frame.len() - 4 {
                assert!(ControlMsg::decode(&frame[4..4 + cut]).is_err(), "{m:?} cut at {cut}");
            }
            let mut longer = frame[4..].to_vec();
            longer.push(0);
            assert_eq!(ControlMsg::decode(&longer), Err(ControlError::TrailingBytes));
        }
    }

    #[test]
    fn absurd_lengths_are_refused_before_allocating() {
        assert!(ControlMsg::check_frame_len(0).is_err());
        assert!(ControlMsg::check_frame_len(u32::MAX).is_err());
        assert!(ControlMsg::check_frame_len(MAX_FRAME_LEN as u32 + 1).is_err());
        // A RoundFailed claiming four billion ids in a few bytes.
        let body = [7u8, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(ControlMsg::decode(&body), Err(ControlError::BadValue("file id count")));
        // Skip and Have claiming more entries than their bytes hold.
        assert_eq!(ControlMsg::decode(&[13, 0, 0, 0, 2, 0, 0, 0, 1]), Err(ControlError::BadValue("file id count")));
        let body = [14u8, 0, 0, 0, 1, 0x10, 0, 0, 0];
        assert_eq!(ControlMsg::decode(&body), Err(ControlError::BadValue("range count")));
        let body = [14u8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(ControlMsg::decode(&body), Err(ControlError::BadValue("range count")), "15 of 16 bytes");
        // A string claiming more bytes than the limit.
        let body = [5u8, 0xff, 0xff];
        assert_eq!(ControlMsg::decode(&body), Err(ControlError::BadString));
        // Unknown address family and policy.
        assert_eq!(ControlMsg::decode(&[12, 0, 3, 5]), Err(ControlError::BadValue("address family")));
        let mut pull = Vec::new();
        ControlMsg::Pull(Pull {
            version: 3,
            cipher: Cipher::None,
            policy: Policy::Fair,
            mtu: 1500,
            rate_bps: 1,
            min_rate_bps: 0,
            window_bytes: 0,
            options: Default::default(),
            path: String::new(),
            shard: Shard::WHOLE,
        })
        .encode(&mut pull);
        pull[8] = 3;
        assert_eq!(ControlMsg::decode(&pull[4..]), Err(ControlError::BadValue("policy")));
        // A queue place of 0, or past the end of the queue.
        assert_eq!(ControlMsg::decode(&[15, 0, 0, 0, 0, 0, 0, 0, 5]), Err(ControlError::BadValue("queue place")));
        assert_eq!(ControlMsg::decode(&[15, 0, 0, 0, 6, 0, 0, 0, 5]), Err(ControlError::BadValue("queue place")));
        // Verdicts claiming more than their bytes hold, past the last file id, or of an unknown kind.
        assert_eq!(ControlMsg::decode(&[32, 0, 0, 0, 0, 0, 0, 0, 2, 0]), Err(ControlError::BadValue("verdict count")));
        let past_end = [32u8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(ControlMsg::decode(&past_end), Err(ControlError::BadValue("file id")));
        let odd = [32u8, 0, 0, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(ControlMsg::decode(&odd), Err(ControlError::BadValue("verdict")));
        // A rate share of nothing: no sender could keep to it.
        assert_eq!(ControlMsg::decode(&[30, 0, 0, 0, 0, 0, 0, 0, 0]), Err(ControlError::BadValue("rate share")));
    }

    /// A Hello's policy rides in its options word, `fair` as 0 (what a sender that does not say sends); code 3
    /// is refused, and the bits never leak into the transfer options.
    #[test]
    fn a_hellos_policy_rides_in_its_options_word() {
        let ControlMsg::Hello(mut hello) = samples().remove(0) else { panic!("the first sample is a Hello") };
        for (policy, code) in [(Policy::Fair, 0u32), (Policy::Low, 1), (Policy::Fixed, 2)] {
            hello.policy = policy;
            let mut frame = Vec::new();
            ControlMsg::Hello(hello.clone()).encode(&mut frame);
            // type (1) + version, payload (4) + four u64 (32) + cipher (1): the options word is at 38.
            let bits = u32::from_be_bytes(frame[4 + 38..4 + 42].try_into().unwrap());
            assert_eq!(bits, hello.options.to_bits() | code << HELLO_POLICY_SHIFT);
            assert_eq!(ControlMsg::decode(&frame[4..]), Ok(ControlMsg::Hello(hello.clone())));
            if policy == Policy::Low {
                frame[4 + 38..4 + 42].copy_from_slice(&(bits | 3 << HELLO_POLICY_SHIFT).to_be_bytes());
                assert_eq!(ControlMsg::decode(&frame[4..]), Err(ControlError::BadValue("policy")));
            }
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        let enc = |e: Entry| {
            let mut f = Vec::new();
            ControlMsg::Entry(e).encode(&mut f);
            ControlMsg::decode(&f[4..])
        };
        let link =
            |kind, target: &str| Entry { rel_path: "l".into(), kind, link_target: target.into(), ..Entry::default() };
        assert_eq!(enc(link(EntryKind::Symlink, "")), Err(ControlError::BadValue("link target")));
        assert_eq!(enc(link(EntryKind::Symlink, "a\0b")), Err(ControlError::BadValue("link target")));
        assert!(enc(link(EntryKind::Symlink, "/etc/passwd")).is_ok(), "a symlink's target is just text");
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b"] {
            assert_eq!(enc(link(EntryKind::HardLink, bad)), Err(ControlError::BadValue("hard link target")), "{bad}");
        }
        assert_eq!(enc(link(EntryKind::File, "x")), Err(ControlError::BadValue("link target on a file or directory")));
        let sized = Entry { size: 5, ..link(EntryKind::Symlink, "x") };
        assert_eq!(enc(sized), Err(ControlError::BadValue("link size or flags")));
        let hashed_dir = Entry { kind: EntryKind::Dir, content_hash: Some(1), ..Entry::default() };
        assert_eq!(enc(hashed_dir), Err(ControlError::BadValue("directory flags")));
        // File ranges: only those of the layout, of regular files that are not sparse.
        let piece = |offset, size, file_size| Entry {
            size,
            piece: Some(Box::new(crate::wire::shard::Piece { offset, file_size })),
            ..Entry::default()
        };
        assert!(enc(piece(96 << 20, 4 << 20, 100 << 20)).is_ok(), "the last, short range");
        assert!(enc(piece(0, 32 << 20, 32 << 30)).is_ok(), "a 1024th of a file over 16 GiB");
        for (offset, size, file_size) in [
            (1, 16 << 20, 200 << 20),
            (0, 16 << 20, 16 << 20),
            (0, 1 << 20, 200 << 20),
            (0, 16 << 20, 32 << 30),
            (192 << 20, 16 << 20, 200 << 20),
            (256 << 20, 1, 200 << 20),
        ] {
            assert_eq!(
                enc(piece(offset, size, file_size)),
                Err(ControlError::BadValue("file range")),
                "{offset} {size}"
            );
        }
        let sparse = Entry { sparse: true, ..piece(0, 16 << 20, 100 << 20) };
        assert_eq!(enc(sparse), Err(ControlError::BadValue("file range")));
        let dir = Entry { kind: EntryKind::Dir, ..piece(0, 0, 100 << 20) };
        assert_eq!(enc(dir), Err(ControlError::BadValue("file range")));
        // A value over 64 KiB, and a count of attributes the frame cannot hold.
        let big = Entry { xattrs: vec![("user.a".into(), vec![0; (64 << 10) + 1])], ..Entry::default() };
        assert_eq!(enc(big), Err(ControlError::BadValue("extended attributes")));
        let mut f = Vec::new();
        ControlMsg::Entry(Entry::default()).encode(&mut f);
        let n = f.len();
        f[n - 2..].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(ControlMsg::decode(&f[4..]), Err(ControlError::BadValue("extended attribute count")));
        // Unknown flag bits.
        let mut f = Vec::new();
        ControlMsg::Entry(Entry::default()).encode(&mut f);
        let flags_at = f.len() - 2 - 2 - 1;
        f[flags_at] = 8;
        assert_eq!(ControlMsg::decode(&f[4..]), Err(ControlError::BadValue("entry flags")));
    }

    #[test]
    fn debug_output_shows_no_session_key() {
        let m = ControlMsg::Accept { session_id: 1, udp_port: 2, key: SessionKey([0xab; KEY_LEN]) };
        let shown = format!("{m:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
