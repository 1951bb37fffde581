//! Entry points shared by the fuzz targets and the corpus tests.
//!
//! Each `pub fn` here takes arbitrary bytes, feeds them to one parser or state machine, and checks the
//! properties that must hold for *every* input: no panic, and a few invariants (a parsed header re-emits to
//! the same bytes, a decoded control message re-encodes to the same frame, an accepted path has no `..`,
//! a receiver never delivers bytes outside a file, ...). A broken invariant panics, which is what the fuzzer
//! reports.
//!
//! The same functions run in two places:
//! - `fuzz/fuzz_targets/<name>.rs`, one-liners for `cargo fuzz run <name>`;
//! - `mover/tests/fuzz_corpus.rs`, which runs every file of the committed seed corpus `fuzz/corpus/<name>/`
//!   under plain `cargo test`.
//!
//! [`seed_corpus`] builds that seed corpus from the crate's own emitters (see `fuzz/README.md` for how to
//! regenerate it).
//!
//! The two state-machine targets read their input as a small program (see [`receiver_datagram`]): a
//! session set-up, then a sequence of operations, so that the fuzzer can reach states beyond the first
//! packet and can get past the tag check with *sealed* packets built from fuzz-chosen header fields.

use crate::files::{sanitize_dest_dir, sanitize_relative, PathError, RelPath};
use crate::proto::{BlockSource, Config, Receiver, ReceiverState, Sender};
use crate::time::Time;
use crate::wire::control::{ControlError, ControlMsg, MAX_FRAME_LEN};
use crate::wire::data::{DataHeader, DATA_HEADER_LEN, DATA_OVERHEAD};
use crate::wire::feedback::{datagram_len, nak_ranges, FeedbackHeader, NakRange};
use crate::wire::keys::epoch_of;
use crate::wire::{open_datagram, Cipher, ReplayWindow, Role, REPLAY_WINDOW};
use crate::wire::{CommonHeader, DropReason, PacketType, Sealer, COMMON_HEADER_LEN, TAG_LEN};
use std::path::Component;

/// `files::sanitize`'s limits (not exported; `NAME_MAX` and `PATH_MAX` on Linux).
const MAX_COMPONENT_LEN: usize = 255;
const MAX_PATH_LEN: usize = 4096;

/// Session id of the fuzzed sessions.
pub const SESSION_ID: u64 = 0x5eed_f022;
/// Largest UDP payload of the fuzzed sessions (block payload 1412).
pub const MAX_DATAGRAM: usize = 1472;
/// File sizes a fuzzed session picks from: empty, one byte, around one block, several blocks, and one file
/// beyond 4 GiB (offsets above `u32::MAX`). The plan keeps no per-block state, so big sizes cost nothing.
pub const SIZES: [u64; 8] = [0, 1, 1411, 1412, 1413, 3 * 1412 + 7, 100_000, 5 << 30];

/// Reads fields from the fuzz input; past the end it yields zeros, so every input is a complete program.
struct Input<'a> {
    buf: &'a [u8],
}

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.buf.split_at(n.min(self.buf.len()));
        self.buf = tail;
        head
    }
    fn uint<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let head = self.take(N);
        b[..head.len()].copy_from_slice(head);
        b
    }
    fn u8(&mut self) -> u8 {
        self.uint::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.uint())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.uint())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.uint())
    }
}

/// The tag check on any input: `open` refuses short datagrams as truncated and accepts exactly the sealed
/// ones; sealing always makes `open` succeed.
fn check_tag(session_id: u64, datagram: &[u8]) {
    let mut sealer = Sealer::integrity(session_id);
    let opened = sealer.open(&mut datagram.to_vec());
    if datagram.len() < COMMON_HEADER_LEN + TAG_LEN {
        assert_eq!(opened, Err(DropReason::Truncated));
        return;
    }
    let mut sealed = datagram.to_vec();
    sealer.seal(&mut sealed);
    assert_eq!(sealer.open(&mut sealed.clone()), Ok(()));
    assert_eq!(opened.is_ok(), sealed == datagram, "open must accept exactly the sealed datagram");
    assert!(matches!(opened, Ok(()) | Err(DropReason::BadTag)));
}

/// The common header: a parsed header re-emits to the same 20 bytes.
fn check_common(datagram: &[u8]) -> Option<CommonHeader> {
    let c = CommonHeader::parse(datagram).ok()?;
    let mut b = [0u8; COMMON_HEADER_LEN];
    c.emit(&mut b);
    assert_eq!(b[..], datagram[..COMMON_HEADER_LEN], "common header does not re-emit to its bytes");
    Some(c)
}

/// Data datagrams: [`CommonHeader::parse`], [`DataHeader::parse`], `payload_range` and the tag.
///
/// An accepted header describes exactly the datagram it came from (length, payload range inside it, no
/// offset overflow) and re-emits to the same header bytes.
pub fn data_packet(data: &[u8]) {
    let common = check_common(data);
    if let Ok(h) = DataHeader::parse(data) {
        let c = common.expect("an accepted data packet has a valid common header");
        assert_eq!(c.packet_type, PacketType::Data);
        assert_eq!((c.session_id, c.packet_number), (h.session_id, h.packet_number));
        assert_eq!(h.datagram_len(), data.len());
        let range = h.payload_range();
        assert_eq!(range.start, DATA_HEADER_LEN);
        assert_eq!(range.end + TAG_LEN, data.len());
        assert_eq!(data[range].len(), h.len as usize);
        assert!(h.offset.checked_add(h.len as u64).is_some());
        let mut buf = vec![0u8; data.len()];
        h.emit(&mut buf);
        assert_eq!(buf[..DATA_HEADER_LEN], data[..DATA_HEADER_LEN], "data header does not re-emit to its bytes");
    }
    check_tag(common.map_or(SESSION_ID, |c| c.session_id), data);
}

/// The decryptor front end: [`open_datagram`] with an AEAD cipher and its replay window, fed a program of
/// datagrams. Byte 0 picks the cipher; then each operation is either a datagram sealed under the session's
/// key with a fuzz-chosen packet number and body, or raw fuzz bytes (possibly an earlier sealed datagram
/// with fuzz-chosen bytes flipped, or replayed whole).
///
/// Checked against a model: a datagram opens exactly when it is one the session sealed, unaltered, whose
/// packet number was not accepted before and is inside the window; an opened datagram yields the plaintext
/// it was sealed from; nothing panics.
pub fn datagram_open(data: &[u8]) {
    let mut input = Input { buf: data };
    let cipher = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305][input.u8() as usize % 2];
    let key = [0x6bu8; crate::wire::KEY_LEN];
    let mut tx = Sealer::new(cipher, &key, SESSION_ID, Role::Sender);
    let mut rx = Sealer::new(cipher, &key, SESSION_ID, Role::Receiver);
    let mut window = ReplayWindow::new();
    // Every datagram sealed so far, with its plaintext; the accepted packet numbers and the window's top.
    let mut sealed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut accepted = std::collections::HashSet::new();
    let mut top = 0u64;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let datagram = match input.u8() % 4 {
            0 => {
                // Seal a fresh datagram: fuzz-chosen packet number (near the top, or anywhere) and body.
                let pn = match input.u8() % 3 {
                    0 => top.saturating_add(input.u8() as u64),
                    1 => top.saturating_sub(input.u16() as u64),
                    _ => input.u64(),
                };
                let len = (input.u16() as usize % MAX_DATAGRAM).max(COMMON_HEADER_LEN + TAG_LEN);
                let mut d: Vec<u8> = input.take(len).to_vec();
                d.resize(len, 0xa5);
                CommonHeader { packet_type: PacketType::Data, session_id: SESSION_ID, packet_number: pn }.emit(&mut d);
                let plain = d.clone();
                tx.seal(&mut d);
                sealed.push((d.clone(), plain));
                d
            }
            1 if !sealed.is_empty() => {
                // An earlier sealed datagram, replayed whole.
                sealed[input.u16() as usize % sealed.len()].0.clone()
            }
            2 if !sealed.is_empty() => {
                // An earlier sealed datagram with one bit flipped or cut short.
                let mut d = sealed[input.u16() as usize % sealed.len()].0.clone();
                let at = input.u16() as usize % d.len();
                if input.u8() & 1 == 0 {
                    d[at] ^= 1 << (input.u8() % 8);
                } else {
                    d.truncate(at);
                }
                d
            }
            _ => {
                let len = input.u16() as usize % (MAX_DATAGRAM + 8);
                input.take(len).to_vec()
            }
        };
        let original = sealed.iter().find(|(s, _)| *s == datagram).map(|(_, p)| p.clone());
        let mut buf = datagram.clone();
        let got = open_datagram(&mut buf, PacketType::Data, &mut rx, SESSION_ID, MAX_DATAGRAM, &mut window);
        match (&got, &original) {
            (Ok(h), Some(plain)) => {
                assert!(!accepted.contains(&h.packet_number), "packet number {} accepted twice", h.packet_number);
                assert!(top <= h.packet_number || top - h.packet_number <= REPLAY_WINDOW, "outside the window");
                let body = COMMON_HEADER_LEN..buf.len() - TAG_LEN;
                assert_eq!(buf[body.clone()], plain[body], "opened to other bytes than were sealed");
                accepted.insert(h.packet_number);
                top = top.max(h.packet_number + 1);
            }
            (Ok(h), None) => {
                // Not sealed in this run. The fuzzer can still hold a genuine sealing under this fixed key
                // (it copies bytes the model compared in earlier runs): like a replay from another session
                // with the same key, which real sessions never have (a fresh key each). What must hold is
                // that the accepted bytes are exactly the sealing of what they opened to, under this key.
                let mut resealed = buf.clone();
                tx.seal(&mut resealed);
                assert_eq!(resealed, datagram, "a datagram that is no sealing under the session key was accepted");
                assert!(!accepted.contains(&h.packet_number), "packet number {} accepted twice", h.packet_number);
                accepted.insert(h.packet_number);
                top = top.max(h.packet_number + 1);
            }
            (Err(DropReason::Replayed), _) => {
                let pn = CommonHeader::parse(&datagram).expect("replay after a valid header").packet_number;
                assert!(accepted.contains(&pn), "refused as replayed but never accepted");
            }
            (Err(DropReason::TooOld), _) => {
                let pn = CommonHeader::parse(&datagram).expect("too old after a valid header").packet_number;
                assert!(top > pn && top - pn > REPLAY_WINDOW, "refused as too old inside the window");
            }
            (Err(DropReason::Malformed), Some(_)) => {
                assert_eq!(CommonHeader::parse(&datagram).map(|h| h.packet_number), Ok(u64::MAX));
            }
            (Err(DropReason::BadTag), Some(_)) => {
                // Only a number more than one key epoch beyond the newest authenticated one: its key is
                // never derived for an unauthenticated packet.
                let pn = CommonHeader::parse(&datagram).expect("sealed").packet_number;
                assert!(epoch_of(pn) > epoch_of(top.saturating_sub(1)) + 1, "a sealed datagram failed its tag");
            }
            (Err(e), Some(_)) if datagram.len() <= MAX_DATAGRAM => {
                panic!("an unaltered sealed datagram was refused: {e:?}")
            }
            (Err(_), _) => {}
        }
    }
}

/// Feedback datagrams: [`FeedbackHeader::parse`], [`nak_ranges`] and the tag.
///
/// An accepted packet's NAK ranges are non-empty and do not overflow, its length matches their count, and
/// it re-emits to the same bytes (except the reserved flags byte, which is sent as 0 and ignored).
pub fn feedback_packet(data: &[u8]) {
    let common = check_common(data);
    // Never panics, whatever the input (it yields nothing for lengths that do not match the count).
    let naks: Vec<NakRange> = nak_ranges(data).collect();
    if let Ok(h) = FeedbackHeader::parse(data) {
        let c = common.expect("an accepted feedback packet has a valid common header");
        assert_eq!(c.packet_type, PacketType::Feedback);
        assert_eq!((c.session_id, c.packet_number), (h.session_id, h.packet_number));
        assert_eq!(data.len(), datagram_len(naks.len()));
        for n in &naks {
            assert!(n.count > 0 && n.start.checked_add(n.count as u64).is_some(), "accepted bad range {n:?}");
        }
        let mut buf = vec![0u8; data.len()];
        let len = h.emit(&naks, &mut buf);
        assert_eq!(len, data.len());
        buf[21] = data[21];
        assert_eq!(buf[..len - TAG_LEN], data[..len - TAG_LEN], "feedback does not re-emit to its bytes");
    }
    check_tag(common.map_or(SESSION_ID, |c| c.session_id), data);
}

/// Control messages: [`ControlMsg::check_frame_len`] on the first four bytes (as a length prefix), and
/// [`ControlMsg::decode`] on the whole input (as a frame body).
///
/// A decoded message re-encodes to a frame whose prefix passes `check_frame_len`, whose body decodes to the
/// same message, and which is byte-for-byte the input: the encoding is canonical.
pub fn control_msg(data: &[u8]) {
    if let Some(prefix) = data.get(..4) {
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
        match ControlMsg::check_frame_len(len) {
            Ok(n) => assert!(n == len as usize && (1..=MAX_FRAME_LEN).contains(&n)),
            Err(e) => {
                assert!(len == 0 || len as usize > MAX_FRAME_LEN, "refused a valid length {len}");
                assert_eq!(e, ControlError::BadFrameLength(len as u64));
            }
        }
    }
    match ControlMsg::decode(data) {
        Ok(m) => {
            let mut frame = Vec::new();
            m.encode(&mut frame);
            let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
            assert_eq!(ControlMsg::check_frame_len(len), Ok(frame.len() - 4));
            assert_eq!(ControlMsg::decode(&frame[4..]).as_ref(), Ok(&m), "re-encoded message decodes differently");
            assert_eq!(&frame[4..], data, "encoding of {m:?} is not canonical");
            start_plan_from(&m);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A hostile `Skip` or `Have` as a receiver's start plan: absorbing and validating it never panics, and a
/// plan that validates against small manifests numbers its round 0 consistently (every sequence number maps
/// to a sent block and back; no held block has one).
fn start_plan_from(m: &ControlMsg) {
    use crate::proto::plan::RoundPlan;
    use crate::proto::StartPlan;
    let mut plan = StartPlan::default();
    if plan.absorb(m) != Ok(true) {
        return;
    }
    for (sizes, block) in [(&[0u64, 5000, 100_000][..], 1412u64), (&[1 << 33, 7, 64], 64), (&[300; 8], 100)] {
        if let Err(e) = plan.validate(sizes, block) {
            let _ = e.to_string();
            continue;
        }
        let p = RoundPlan::for_start(sizes, block, &plan);
        let total_blocks: u64 = (0..p.len()).map(|i| p.size(i).div_ceil(block)).sum();
        let sent_bytes: u64 = (0..p.len()).map(|i| p.size(i)).sum::<u64>() - p.held_bytes();
        assert!(p.total_seqs() <= total_blocks);
        for seq in (0..p.total_seqs()).take(4096) {
            let (idx, offset, len) = p.locate(seq);
            assert!(p.is_sent(idx, offset) && p.seq_of(idx, offset, len) == Some(seq));
        }
        if p.total_seqs() <= 1 << 16 {
            let sent_seen: u64 = (0..p.total_seqs()).map(|seq| p.locate(seq).2).sum();
            assert_eq!(sent_seen, sent_bytes, "sent blocks and held ranges do not partition the files");
        }
        for (id, ranges) in plan.haves() {
            let idx = p.index_of(id).expect("a held file is in round 0");
            for &(offset, _) in ranges.iter().take(64) {
                assert_eq!(p.seq_of(idx, offset, p.block_len(idx, offset)), None, "held block numbered");
            }
        }
    }
}

/// Checks the invariants of an accepted path.
fn check_accepted(p: &RelPath) {
    let text = p.to_string();
    assert!(text.len() <= MAX_PATH_LEN);
    assert!(!text.starts_with('/') && !text.contains('\0'), "accepted {text:?}");
    for c in p.components() {
        assert!(!c.is_empty() && c != "." && c != "..", "accepted component {c:?} in {text:?}");
        assert!(!c.contains('/') && !c.contains('\0') && c.len() <= MAX_COMPONENT_LEN, "accepted {c:?}");
    }
    // The OS's own view of the path agrees: only plain names, as many as we have.
    let buf = p.to_path_buf();
    assert!(buf.is_relative());
    assert!(buf.components().all(|c| matches!(c, Component::Normal(_))), "{buf:?} has a special component");
    assert_eq!(buf.components().count(), p.components().len());
}

/// Checks a refusal: its message escapes control characters (no newline or escape sequence from the peer
/// reaches the terminal) and stays short whatever the path's length.
fn check_refused(e: &PathError) {
    let msg = e.to_string();
    assert!(!msg.chars().any(char::is_control), "message with a control character: {msg:?}");
    // `shown` keeps 200 characters of the path, each escaped to at most 6 (`\u{9f}`), plus the fixed text.
    assert!(msg.chars().count() <= 200 * 6 + 150, "message of {} chars", msg.chars().count());
}

/// The path sanitizer: [`sanitize_relative`] and [`sanitize_dest_dir`] on the input (lossily UTF-8).
///
/// An accepted path has no `..`, `.` or empty component, no NUL, no leading `/`, and prints back as the
/// input (minus the one trailing `/` a destination may have).
pub fn path_sanitizer(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match sanitize_relative(&s) {
        Ok(p) => {
            check_accepted(&p);
            assert!(!p.is_root());
            assert_eq!(p.to_string(), s, "accepted path does not print back as given");
        }
        Err(e) => check_refused(&e),
    }
    match sanitize_dest_dir(&s) {
        Ok(p) => {
            check_accepted(&p);
            assert_eq!(p.is_root(), s.is_empty());
            assert_eq!(p.to_string(), s.strip_suffix('/').unwrap_or(&s), "accepted destination changed");
        }
        Err(e) => check_refused(&e),
    }
    if s.contains('\0') || s.starts_with('/') || s.split('/').any(|c| c == "..") {
        assert!(sanitize_relative(&s).is_err() && sanitize_dest_dir(&s).is_err(), "accepted {s:?}");
    }
}

/// The `--cores` parser and the topology built from it: [`CorePlan::parse`] on the input (lossily UTF-8),
/// then [`Topology::new`] for both sides over a few allowed cores, never panics; an accepted topology pins
/// stages only to allowed cores, and renders with every stage named.
pub fn core_plan(data: &[u8]) {
    use crate::pipeline::topology::{CorePlan, Side, Topology};
    let s = String::from_utf8_lossy(data);
    let Ok(plan) = CorePlan::parse(&s) else { return };
    for available in [&[0usize, 1][..], &[2, 3, 4, 5], &[0], &[]] {
        for side in [Side::Sender, Side::Receiver] {
            let Ok(t) = Topology::new(side, &plan, available) else { continue };
            for stage in &t.stages {
                if let (Some(c), false) = (stage.core, available.is_empty()) {
                    assert!(available.contains(&c), "stage {} pinned to core {c}, not in {available:?}", stage.name);
                }
            }
            let text = t.render();
            assert!(t.stages.iter().all(|st| text.contains(st.name)));
        }
    }
}

/// A received Ethernet frame: the XDP path's frame parser (`net::frame::parse_udp`) and the XDP program's
/// classifier rules (`mover_ebpf::classify`, the user-space twin of the bytecode). Neither may panic; a
/// frame the parser takes must lie inside the input and re-emit, through `FrameTemplate`, to a frame that
/// parses the same; a frame the classifier calls ours (a UDP datagram that is not a fragment) with a UDP
/// length that fits is one the parser takes, for the same port.
pub fn xdp_frame(data: &[u8]) {
    use crate::net::frame::{parse_udp, FlowAddrs, FrameTemplate};
    let parsed = parse_udp(data);
    if let Ok(p) = parsed {
        assert!(p.payload_offset + p.payload_len <= data.len(), "payload outside the frame: {p:?}");
        let dst = std::net::SocketAddr::new(p.src.ip(), p.dst_port);
        let addrs = FlowAddrs { src_mac: [0; 6], dst_mac: [0; 6], src: p.src, dst };
        let mut t = FrameTemplate::new(addrs).expect("one family");
        let mut frame = vec![0u8; t.header_len() + p.payload_len];
        frame[t.header_len()..].copy_from_slice(&data[p.payload_offset..p.payload_offset + p.payload_len]);
        t.write(&mut frame);
        let q = parse_udp(&frame).expect("a written frame parses");
        // IPv4-mapped IPv6 sources go out as IPv4, as the kernel sends them.
        let src = std::net::SocketAddr::new(p.src.ip().to_canonical(), p.src.port());
        assert_eq!((q.src, q.dst_port, q.payload_len), (src, p.dst_port, p.payload_len));
    }
    let verdict = mover_ebpf::classify::classify(data, |_| true);
    if let (mover_ebpf::classify::Verdict::Ours { dst_port, .. }, Ok(p)) = (verdict, parsed) {
        assert_eq!(dst_port, p.dst_port, "classifier and parser disagree on the port");
    }
    if parsed.is_ok() {
        // Everything the parser takes, the program would steer (it checks less: no lengths).
        assert!(verdict.is_ours(), "parser took a frame the XDP program passes: {verdict:?}");
    }
}

/// A fuzzed session: the config (window chosen by the input, so its edge is reachable) and file sizes.
fn session(input: &mut Input) -> (Config, Vec<u64>) {
    let mut cfg = Config::new(SESSION_ID, MAX_DATAGRAM, 1_000_000_000);
    cfg.window_blocks = 64 + input.u8() as u64;
    let n = input.u8() % 6;
    let sizes = (0..n).map(|_| SIZES[input.u8() as usize % SIZES.len()]).collect();
    (cfg, sizes)
}

/// Advances `now` by an input-chosen step of up to about 68 s (beyond the 30 s peer timeout).
fn advance(input: &mut Input, now: Time) -> Time {
    now.plus_ns(input.u32() as u64 * 16)
}

/// Seals `datagram` for `session_id`, then flips one bit if the input says so (bit 7 of `sel`).
fn seal_maybe_corrupt(input: &mut Input, sel: u8, session_id: u64, datagram: &mut [u8]) {
    Sealer::integrity(session_id).seal(datagram);
    if sel & 0x80 != 0 {
        let at = input.u16() as usize % datagram.len();
        datagram[at] ^= 1 << (input.u8() % 8);
    }
}

/// A control message from the input (a `u16` length, then that many bytes as a frame body), if it decodes.
fn control_from(input: &mut Input) -> Option<ControlMsg> {
    let n = input.u16() as usize;
    ControlMsg::decode(input.take(n)).ok()
}

/// Operation codes of the state-machine programs.
pub mod op {
    /// A raw datagram: `u16` length, then that many bytes.
    pub const RAW: u8 = 0;
    /// A sealed packet built from input-chosen fields (see the driver).
    pub const SEALED: u8 = 1;
    /// Advance time (`u32` x 16 ns) and call `handle_timeout`.
    pub const TIME: u8 = 2;
    /// Let the state machine transmit (receiver: feedback; sender: up to `u8` data packets).
    pub const TRANSMIT: u8 = 3;
    /// A control message from the peer (`u16` length, frame body); the receiver then verifies ready files
    /// with input-chosen verdicts (one `u8` each, bit 0: hash matched).
    pub const CONTROL: u8 = 4;
    /// Number of operations.
    pub const COUNT: u8 = 5;
}

/// The receiver's front end: [`Receiver::handle_datagram`], driven by a program.
///
/// Input: `window - 64: u8`, `file count (mod 6): u8`, one `u8` per file indexing [`SIZES`], then
/// operations until the input ends, each an [`op`] code byte (mod [`op::COUNT`]) and its arguments. A
/// [`op::SEALED`] data packet is `sel: u8` then fields, each either helpful or raw by a bit of `sel`:
/// file id (bit 0: `u8` mod files+1, else raw `u32`), offset (bit 1: `u16` block index, else raw `u64`),
/// length (bit 2: the true block length, else raw `u16`), round (bit 3: current, else raw `u8`), session
/// (bit 4: the session's, else raw `u64`); then flags `u8`, `tx_time_us: u32`, `srtt_us: u32`. Bit 7 of
/// `sel` flips one bit after sealing (`u16` position, `u8` bit).
///
/// Whatever the input, nothing panics, and every delivery lies inside its file and its datagram.
pub fn receiver_datagram(data: &[u8]) {
    let mut input = Input { buf: data };
    let (cfg, sizes) = session(&mut input);
    let block = cfg.block_payload as u64;
    let mut now = Time(1_000_000_000);
    let mut rx = Receiver::new(cfg.clone(), sizes.clone(), now);
    let mut feedback = vec![0u8; cfg.max_datagram()];
    let mut packet_number = 0u64;
    while !input.is_empty() {
        let mut datagram: Vec<u8> = match input.u8() % op::COUNT {
            op::RAW => {
                let n = input.u16() as usize;
                input.take(n).to_vec()
            }
            op::SEALED => {
                let sel = input.u8();
                let file_id = if sel & 1 != 0 { input.u8() as u32 % (sizes.len() as u32 + 1) } else { input.u32() };
                let offset = if sel & 2 != 0 { input.u16() as u64 * block } else { input.u64() };
                let size = sizes.get(file_id as usize).copied().unwrap_or(0);
                let len = if sel & 4 != 0 { size.saturating_sub(offset).min(block) as u16 } else { input.u16() };
                let round = if sel & 8 != 0 { rx.round() } else { input.u8() };
                let session_id = if sel & 16 != 0 { SESSION_ID } else { input.u64() };
                let h = DataHeader {
                    session_id,
                    packet_number,
                    file_id,
                    offset,
                    len,
                    flags: input.u8(),
                    round,
                    tx_time_us: input.u32(),
                    srtt_us: input.u32(),
                };
                packet_number += 1;
                let mut d = vec![0xa5u8; h.datagram_len()];
                h.emit(&mut d);
                seal_maybe_corrupt(&mut input, sel, session_id, &mut d);
                d
            }
            op::TIME => {
                now = advance(&mut input, now);
                rx.handle_timeout(now);
                continue;
            }
            op::TRANSMIT => {
                for _ in 0..8 {
                    let Some(len) = rx.poll_transmit(now, &mut feedback) else { break };
                    let fb = &feedback[..len];
                    assert_eq!(Sealer::integrity(SESSION_ID).open(&mut fb.to_vec()), Ok(()));
                    let h = FeedbackHeader::parse(fb).expect("the receiver emits valid feedback");
                    assert_eq!(h.round, rx.round());
                }
                continue;
            }
            _ => {
                if let Some(msg) = control_from(&mut input) {
                    rx.handle_control(now, msg);
                }
                while let Some(ready) = rx.poll_ready() {
                    assert_eq!(sizes.get(ready.file_id as usize), Some(&ready.size));
                    rx.handle_verified(ready.file_id, input.u8() & 1 != 0);
                }
                while let Some(msg) = rx.poll_control() {
                    let mut frame = Vec::new();
                    msg.encode(&mut frame);
                    assert_eq!(ControlMsg::decode(&frame[4..]), Ok(msg), "receiver sent an undecodable message");
                }
                continue;
            }
        };
        let was_receiving = *rx.state() == ReceiverState::Receiving;
        if let Ok(d) = rx.handle_datagram(now, &mut datagram) {
            assert!(was_receiving, "delivery outside a receiving state");
            let size = *sizes.get(d.file_id as usize).expect("delivery for a file of the session");
            assert!(d.payload.start == DATA_HEADER_LEN && d.payload.end + TAG_LEN == datagram.len());
            let end = d.offset + d.payload.len() as u64;
            assert!(end <= size && d.offset % block == 0, "delivery {d:?} outside file of {size} bytes");
            assert!(d.payload.len() as u64 == block || end == size, "short block {d:?} before the end");
        }
    }
}

/// A block source of zeros (the sender's hashes are then wrong, which only makes more rounds reachable).
struct Zeros;

impl BlockSource for Zeros {
    fn read_block(&mut self, _file_id: u32, _offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        Ok(())
    }
}

/// The sender's front end: [`Sender::handle_datagram`], driven by a program.
///
/// Input: the session as for [`receiver_datagram`], then operations. A [`op::SEALED`] feedback packet is
/// `sel: u8`, then: round (bit 3: current, else raw `u8`), session (bit 4: the session's, else raw `u64`),
/// cumulative ACK (bit 0: `u16`, else raw `u64`), echoed time (bit 1: now minus a `u16` of microseconds,
/// else raw `u32`), `echo_delay_us: u32`, `recv_rate: u64`, a NAK count `u8` mod 9 and each range's start
/// (bit 2: `u16`, else raw `u64`) and count (bit 5: `u8`, else raw `u32`; either may be 0). Bit 7 flips a
/// bit after sealing as for the receiver.
///
/// Whatever the input, nothing panics, and every data packet the sender emits is valid and lies inside its
/// file.
pub fn sender_datagram(data: &[u8]) {
    let mut input = Input { buf: data };
    let (cfg, sizes) = session(&mut input);
    let mut now = Time(1_000_000_000);
    let mut tx = Sender::new(cfg.clone(), sizes.clone(), now);
    let mut out = vec![0u8; cfg.max_datagram()];
    let mut packet_number = 0u64;
    while !input.is_empty() {
        let mut datagram: Vec<u8> = match input.u8() % op::COUNT {
            op::RAW => {
                let n = input.u16() as usize;
                input.take(n).to_vec()
            }
            op::SEALED => {
                let sel = input.u8();
                let round = if sel & 8 != 0 { tx.round() } else { input.u8() };
                let session_id = if sel & 16 != 0 { SESSION_ID } else { input.u64() };
                let cum_ack = if sel & 1 != 0 { input.u16() as u64 } else { input.u64() };
                let echo_tx_time_us =
                    if sel & 2 != 0 { now.wire_us().wrapping_sub(input.u16() as u32) } else { input.u32() };
                let h = FeedbackHeader {
                    session_id,
                    packet_number,
                    round,
                    echo_tx_time_us,
                    echo_delay_us: input.u32(),
                    cum_ack,
                    recv_rate: input.u64(),
                    received_packets: packet_number,
                    owd_us: if sel & 64 != 0 { Some(input.u32()) } else { None },
                };
                packet_number += 1;
                let naks: Vec<NakRange> = (0..input.u8() % 9)
                    .map(|_| NakRange {
                        start: if sel & 4 != 0 { input.u16() as u64 } else { input.u64() },
                        count: if sel & 32 != 0 { input.u8() as u32 } else { input.u32() },
                    })
                    .collect();
                let mut d = vec![0u8; datagram_len(naks.len())];
                h.emit(&naks, &mut d);
                seal_maybe_corrupt(&mut input, sel, session_id, &mut d);
                d
            }
            op::TIME => {
                now = advance(&mut input, now);
                tx.handle_timeout(now);
                continue;
            }
            op::TRANSMIT => {
                for _ in 0..input.u8() % 64 {
                    let Ok(Some(len)) = tx.poll_transmit(now, &mut Zeros, &mut out) else { break };
                    let d = &out[..len];
                    assert_eq!(Sealer::integrity(SESSION_ID).open(&mut d.to_vec()), Ok(()));
                    let h = DataHeader::parse(d).expect("the sender emits valid data packets");
                    let size = *sizes.get(h.file_id as usize).expect("data for a file of the session");
                    assert!(h.offset + h.len as u64 <= size && h.len > 0, "block {h:?} outside {size} bytes");
                    assert!(len <= cfg.max_datagram() && len >= DATA_OVERHEAD);
                    assert_eq!(h.round, tx.round());
                }
                continue;
            }
            _ => {
                if let Some(msg) = control_from(&mut input) {
                    tx.handle_control(now, msg);
                }
                while tx.poll_control().is_some() {}
                continue;
            }
        };
        let _ = tx.handle_datagram(now, &mut datagram);
    }
}

/// One file of the seed corpus.
#[derive(Clone, Debug)]
pub struct Seed {
    /// The fuzz target (a directory of `fuzz/corpus/`).
    pub target: &'static str,
    /// The file name.
    pub name: &'static str,
    /// The contents.
    pub bytes: Vec<u8>,
}

/// A fuzz target's checking function.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: the function each runs.
pub const TARGETS: [(&str, Check); 12] = [
    ("data_packet", data_packet),
    ("feedback_packet", feedback_packet),
    ("control_msg", control_msg),
    ("path_sanitizer", path_sanitizer),
    ("receiver_datagram", receiver_datagram),
    ("sender_datagram", sender_datagram),
    ("core_plan", core_plan),
    ("xdp_frame", xdp_frame),
    ("datagram_open", datagram_open),
    ("journal_load", crate::files::journal::fuzz::journal_load),
    ("sealed_block", sealed_block),
    ("compressed_block", compressed_block),
];

/// `compressed_block`: the decompressor's input (`--compress`, `wire::compress`), as a datagram's or a
/// sealed block's body carries it once its tag verified. The first byte picks the mode:
/// - 0: the next two bytes are the block length the receiver expects (1-65536), the rest the frame as it
///   came: never a panic, never a block of another length;
/// - 1: the rest is a block, compressed at level 1, then possibly one byte of the frame flipped (the next two
///   bytes say where, 0 for none): an untouched frame comes back exactly; a flipped one is refused or
///   yields a block of the same length;
/// - 2: the rest (after a length byte) is a frame in a data datagram flagged compressed, sealed, handed to a
///   receiver that expects a block there: it is dropped (`bad_compression` or `malformed`) or delivered as
///   exactly the block's bytes.
pub fn compressed_block(data: &[u8]) {
    use crate::wire::compress::{BlockCompressor, BlockUnpacker};
    use crate::wire::data::FLAG_COMPRESSED;
    let mut input = Input { buf: data };
    if input.is_empty() {
        return;
    }
    let mut un = BlockUnpacker::new().expect("a zstd context");
    match input.u8() % 3 {
        0 => {
            let len = input.u16() as usize + 1;
            let mut out = vec![0u8; len];
            let _ = un.unpack(input.buf, &mut out);
            assert_eq!(out.len(), len);
        }
        1 => {
            let flip = input.u16() as usize;
            let block = input.buf.to_vec();
            let mut frame = vec![0u8; block.len()];
            let Some(n) = BlockCompressor::new(1).expect("a zstd context").compress(&block, &mut frame) else {
                return;
            };
            let mut frame = frame[..n].to_vec();
            let mut out = vec![0u8; block.len()];
            if flip == 0 {
                un.unpack(&frame, &mut out).expect("an untouched frame decompresses");
                assert_eq!(out, block);
            } else {
                frame[(flip - 1) % n] ^= 1 << (flip % 8);
                let _ = un.unpack(&frame, &mut out);
                assert_eq!(out.len(), block.len());
            }
        }
        _ => {
            let sizes = vec![3000u64];
            let cfg = Config::new(SESSION_ID, MAX_DATAGRAM, 1_000_000_000);
            let block = cfg.block_payload as u64;
            let mut rx = Receiver::new(cfg.clone(), sizes.clone(), Time(1));
            let offset = (input.u8() as u64 % 3) * block;
            let frame = input.buf;
            let h = DataHeader {
                session_id: SESSION_ID,
                packet_number: 0,
                file_id: 0,
                offset,
                len: frame.len().min(u16::MAX as usize) as u16,
                flags: FLAG_COMPRESSED,
                round: 0,
                tx_time_us: 1,
                srtt_us: 0,
            };
            let mut d = vec![0u8; h.datagram_len()];
            h.emit(&mut d);
            d[h.payload_range()].copy_from_slice(&frame[..h.len as usize]);
            Sealer::integrity(SESSION_ID).seal(&mut d);
            match rx.handle_datagram(Time(2), &mut d) {
                Ok(delivery) => {
                    let want = sizes[0].saturating_sub(offset).min(block) as usize;
                    assert_eq!(delivery.unpacked, want, "a compressed block delivers its plan length");
                    assert!(rx.unpacked().len() >= want);
                }
                Err(reason) => assert!(
                    matches!(reason, DropReason::BadCompression | DropReason::Malformed | DropReason::Oversized),
                    "{reason:?}"
                ),
            }
        }
    }
}

/// `sealed_block`: what a relay hands a striped transfer's receiver (`wire::stripe`). The first byte picks
/// the mode: odd, the rest is a sealed block file as it came (opened against the place its own header
/// claims); even, the rest chooses a header and a body that are sealed with the transfer's key, then
/// possibly one byte flipped. Properties: never a panic; an untouched sealed block opens to exactly its
/// plaintext; any flipped byte is refused; whatever opens is the block that was asked for.
pub fn sealed_block(data: &[u8]) {
    use crate::wire::stripe::{BlockHeader, BlockKey};
    let key = BlockKey::new(Cipher::Aes256Gcm, &[0x5au8; crate::wire::KEY_LEN], 0x1234).expect("an AEAD key");
    let mut input = Input { buf: data };
    if input.is_empty() {
        return;
    }
    if input.u8() % 2 == 1 {
        let mut raw = input.buf.to_vec();
        if let Ok(h) = BlockHeader::decode(&raw) {
            if let Ok((got, plain)) = key.open(&mut raw, &h) {
                assert_eq!(got, h);
                assert_eq!(plain.len(), h.len as usize);
            }
        }
        return;
    }
    let h = BlockHeader {
        attempt: input.u16(),
        global: input.u64(),
        file_id: input.u16() as u32,
        offset: input.u64(),
        len: input.u16() as u32,
        frame: 0,
    };
    let flip = input.u16() as usize;
    let mut plain = input.take(h.len as usize).to_vec();
    plain.resize(h.len as usize, 0x3c);
    let mut sealed = key.seal(&h, &plain);
    if flip == 0 {
        let (got, opened) = key.open(&mut sealed, &h).expect("an untouched block opens");
        assert_eq!((got, opened), (h, &plain[..]));
    } else {
        let at = (flip - 1) % sealed.len();
        sealed[at] ^= 1 << (flip % 8);
        assert!(key.open(&mut sealed, &h).is_err(), "a flipped byte at {at} was not caught");
    }
}

fn sealed_data(h: &DataHeader, fill: u8) -> Vec<u8> {
    let mut d = vec![fill; h.datagram_len()];
    h.emit(&mut d);
    Sealer::integrity(h.session_id).seal(&mut d);
    d
}

fn sealed_feedback(h: &FeedbackHeader, naks: &[NakRange]) -> Vec<u8> {
    let mut d = vec![0u8; datagram_len(naks.len())];
    h.emit(naks, &mut d);
    Sealer::integrity(h.session_id).seal(&mut d);
    d
}

fn frame_body(m: &ControlMsg) -> Vec<u8> {
    let mut frame = Vec::new();
    m.encode(&mut frame);
    frame.split_off(4)
}

fn with_len(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// The seed corpus: valid packets and messages from the crate's own emitters, truncated and corrupted
/// variants, and short programs for the state machines (a session of files 1412, 1413 and 1 bytes).
pub fn seed_corpus() -> Vec<Seed> {
    use crate::files::{Entry, EntryKind};
    use crate::wire::control::{AuthMsg, Hello, ReceiverSummary, Secret};
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &'static str, bytes: Vec<u8>| seeds.push(Seed { target, name, bytes });

    for (name, text) in [
        ("auto", "auto"),
        ("none", "none"),
        ("list", "0,1"),
        ("ranges", "0-3,5"),
        ("named", "pacer=1,packetizer=0,recv=1"),
        ("unknown_stage", "bogus=1"),
        ("bad_range", "3-1"),
        ("huge", "0-99999999999999999999"),
        ("empty_name", "=2"),
    ] {
        add("core_plan", name, text.as_bytes().to_vec());
    }
    for (name, frame, _) in mover_ebpf::fixtures::fixture_set(7000).into_iter().step_by(7) {
        // Seed names are &'static; these few are made once per call (tests and corpus regeneration only).
        let name: &'static str = Box::leak(name.replace(|c: char| !c.is_ascii_alphanumeric(), "_").into_boxed_str());
        add("xdp_frame", name, frame);
    }

    let data = DataHeader {
        session_id: SESSION_ID,
        packet_number: 7,
        file_id: 1,
        offset: 1412,
        len: 1,
        flags: 0,
        round: 0,
        tx_time_us: 1000,
        srtt_us: 20_000,
    };
    let full = DataHeader { file_id: 0, offset: 0, len: 1412, flags: 1, ..data };
    let big = DataHeader { offset: (5 << 30) - 100, len: 100, round: 2, ..data };
    let d = sealed_data(&data, b'x');
    for (name, cipher) in [("aes_program", 0u8), ("chacha_program", 1u8)] {
        let mut prog = vec![cipher];
        // Seal pn top+5 (64 bytes), replay it, flip a bit in it, cut it short, raw bytes, seal pn 2^20,
        // seal a number far below the new top (too old), seal pn top+0.
        prog.extend([0, 0, 5, 0, 64]);
        prog.extend([0x11; 64]);
        prog.extend([1, 0, 0]);
        prog.extend([2, 0, 0, 0, 30, 0, 3]);
        prog.extend([2, 0, 0, 0, 30, 1]);
        prog.push(3);
        prog.extend(with_len(&[0x4d; 50]));
        prog.extend([0, 2]);
        prog.extend((1u64 << 20).to_be_bytes());
        prog.extend([0, 64]);
        prog.extend([0x22; 64]);
        prog.extend([0, 1, 0x30, 0, 0, 64]);
        prog.extend([0x33; 64]);
        prog.extend([0, 0, 0, 0, 40]);
        prog.extend([0x44; 40]);
        add("datagram_open", name, prog);
    }
    add("datagram_open", "empty", vec![]);
    add("data_packet", "valid_one_byte", d.clone());
    add("data_packet", "valid_full_block", sealed_data(&full, 0));
    add("data_packet", "valid_offset_above_4gib", sealed_data(&big, 1));
    add("data_packet", "valid_empty_payload", sealed_data(&DataHeader { len: 0, ..data }, 0));
    add("data_packet", "truncated_header", d[..30].to_vec());
    add("data_packet", "truncated_common", d[..19].to_vec());
    add("data_packet", "length_mismatch", d[..d.len() - 1].to_vec());
    let mut bad = d.clone();
    bad[50] ^= 1;
    add("data_packet", "bad_tag", bad);
    let mut ovf = sealed_data(&DataHeader { offset: u64::MAX, ..data }, 0);
    ovf[0] = b'M';
    add("data_packet", "offset_overflow", ovf);
    add("data_packet", "garbage", b"MV\x01\x01garbage that is not a packet at all".to_vec());

    let fb = FeedbackHeader {
        session_id: SESSION_ID,
        packet_number: 3,
        round: 0,
        echo_tx_time_us: 1000,
        echo_delay_us: 50,
        cum_ack: 1,
        recv_rate: 125_000_000,
        received_packets: 2,
        owd_us: Some(20_000),
    };
    let naks = [NakRange { start: 2, count: 1 }, NakRange { start: 5, count: 3 }];
    let f = sealed_feedback(&fb, &naks);
    add("feedback_packet", "valid_two_naks", f.clone());
    add("feedback_packet", "valid_no_naks", sealed_feedback(&fb, &[]));
    add("feedback_packet", "zero_count_nak", sealed_feedback(&fb, &[NakRange { start: 1, count: 0 }]));
    add("feedback_packet", "overflowing_nak", sealed_feedback(&fb, &[NakRange { start: u64::MAX, count: 2 }]));
    add("feedback_packet", "truncated", f[..f.len() - 1].to_vec());
    add("feedback_packet", "truncated_fixed", f[..40].to_vec());
    let mut lie = f.clone();
    lie[23] = 200; // nak_count larger than the datagram holds
    add("feedback_packet", "count_too_large", lie);
    add("feedback_packet", "data_not_feedback", d.clone());

    let msgs = [
        (
            "hello",
            ControlMsg::Hello(Hello {
                version: 1,
                block_payload: 1412,
                rate_bps: 1_000_000_000,
                window_blocks: 1 << 18,
                entry_count: 2,
                total_bytes: 1 << 33,
                cipher: crate::wire::Cipher::Aes256Gcm,
                options: Default::default(),
                policy: crate::proto::policy::Policy::Fair,
                dest: "projects/run42".into(),
            }),
        ),
        (
            "entry_file",
            ControlMsg::Entry(Entry {
                rel_path: "dataset/ä.txt".into(),
                kind: EntryKind::File,
                size: 5 << 30,
                mode: 0o644,
                mtime_s: -5,
                mtime_ns: 999_999_999,
                ..Entry::default()
            }),
        ),
        (
            "entry_file_meta",
            ControlMsg::Entry(Entry {
                rel_path: "dataset/sparse.img".into(),
                kind: EntryKind::File,
                size: 50 << 20,
                mode: 0o4755,
                uid: 1000,
                gid: 1000,
                sparse: true,
                content_hash: Some(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
                xattrs: vec![("user.test".into(), b"value".to_vec())],
                ..Entry::default()
            }),
        ),
        (
            "entry_file_range",
            ControlMsg::Entry(Entry {
                rel_path: "dataset/huge.bin".into(),
                kind: EntryKind::File,
                size: 16 << 20,
                mode: 0o644,
                content_hash: Some(5),
                piece: Some(Box::new(crate::wire::shard::Piece { offset: 64 << 20, file_size: 150 << 20 })),
                ..Entry::default()
            }),
        ),
        (
            "entry_symlink",
            ControlMsg::Entry(Entry {
                rel_path: "dataset/link".into(),
                kind: EntryKind::Symlink,
                mode: 0o777,
                link_target: "../outside".into(),
                ..Entry::default()
            }),
        ),
        (
            "entry_hardlink",
            ControlMsg::Entry(Entry {
                rel_path: "dataset/second".into(),
                kind: EntryKind::HardLink,
                mode: 0o644,
                link_target: "dataset/ä.txt".into(),
                ..Entry::default()
            }),
        ),
        (
            "entry_dir",
            ControlMsg::Entry(Entry {
                rel_path: "dataset".into(),
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o755,
                mtime_s: 1_700_000_000,
                mtime_ns: 0,
                ..Entry::default()
            }),
        ),
        ("manifest_end", ControlMsg::ManifestEnd),
        (
            "accept",
            ControlMsg::Accept {
                session_id: SESSION_ID,
                udp_port: 40000,
                key: crate::wire::SessionKey([0x5a; crate::wire::KEY_LEN]),
            },
        ),
        ("error", ControlMsg::Error { message: "disk full".into() }),
        ("file_hash", ControlMsg::FileHash { round: 0, file_id: 1, hash: u128::MAX - 3 }),
        ("round_failed", ControlMsg::RoundFailed { round: 1, file_ids: vec![0, 2, 9] }),
        ("round_done", ControlMsg::RoundDone { round: 1, failed: 3 }),
        ("complete", ControlMsg::Complete(ReceiverSummary { files: 1, bytes: 2, ..Default::default() })),
        (
            "pull",
            ControlMsg::Pull(crate::wire::control::Pull {
                version: crate::wire::VERSION as u16,
                cipher: crate::wire::Cipher::ChaCha20Poly1305,
                policy: crate::proto::policy::Policy::Fair,
                mtu: 1500,
                rate_bps: 1_000_000_000,
                min_rate_bps: 0,
                window_bytes: 1 << 30,
                options: Default::default(),
                shard: crate::wire::shard::Shard { index: 1, count: 3 },
                path: "projects/run42".into(),
            }),
        ),
        (
            "welcome",
            ControlMsg::Welcome(crate::wire::control::Welcome {
                version: crate::wire::VERSION as u16,
                client: Some("192.0.2.1:50000".parse().expect("literal address")),
                server: Some("[2001:db8::1]:22".parse().expect("literal address")),
            }),
        ),
    ];
    for (name, m) in &msgs {
        add("control_msg", name, frame_body(m));
    }
    add("control_msg", "round_failed_huge_count", vec![7, 0, 0xff, 0xff, 0xff, 0xff]);
    add("control_msg", "string_too_long", vec![5, 0xff, 0xff]);
    add("control_msg", "bad_utf8", vec![5, 0, 2, 0xc3, 0x28]);
    add("control_msg", "unknown_type", vec![42, 1, 2, 3]);
    let mut trailing = frame_body(&msgs[3].1);
    trailing.push(0);
    add("control_msg", "trailing_byte", trailing);
    // Authentication (type 11): both kinds, and an unknown kind.
    let creds = AuthMsg::Credentials { user: "alice".into(), token: Secret("0123abcd".into()) };
    add("control_msg", "auth_credentials", frame_body(&ControlMsg::Auth(creds)));
    add(
        "control_msg",
        "auth_accepted",
        frame_body(&ControlMsg::Auth(AuthMsg::Accepted { identity: "user:alice".into() })),
    );
    add("control_msg", "auth_bad_kind", vec![11, 9, 0, 0]);
    // Resume and sync plans (types 13, 14), and counts larger than the bytes present.
    add("control_msg", "skip", frame_body(&ControlMsg::Skip { file_ids: vec![0, 3, 4] }));
    let have = ControlMsg::Have { file_id: 2, ranges: vec![(0, 1412 * 8), (1412 * 20, 100_000 - 1412 * 20)] };
    add("control_msg", "have", frame_body(&have));
    add("control_msg", "skip_huge_count", vec![13, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
    add("control_msg", "have_huge_count", vec![14, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
    // The daemon's queue place (type 15), and a place past the queue's end.
    add("control_msg", "queued", frame_body(&ControlMsg::Queued { position: 3, waiting: 7 }));
    add("control_msg", "queued_past_end", vec![15, 0, 0, 0, 9, 0, 0, 0, 2]);
    // The daemon's rate share (type 30), and a share of nothing, which is refused.
    add("control_msg", "rate_share", frame_body(&ControlMsg::RateShare { bps: 200_000_000 }));
    add("control_msg", "rate_share_zero", vec![30, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Sealed blocks: one built and untouched, one with a flipped byte, one sealed block file as a relay
    // would serve it, and a truncated one.
    let mut built = vec![0u8];
    built.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 64, 0, 0]);
    built.extend_from_slice(&[0x61; 64]);
    add("sealed_block", "built", built.clone());
    built[23..25].copy_from_slice(&[0, 40]);
    add("sealed_block", "flipped", built);
    {
        use crate::wire::stripe::{BlockHeader, BlockKey};
        let key = BlockKey::new(Cipher::Aes256Gcm, &[0x5au8; crate::wire::KEY_LEN], 0x1234).expect("an AEAD key");
        let h = BlockHeader { attempt: 0, global: 3, file_id: 1, offset: 4096, len: 100, frame: 0 };
        let mut file = vec![1u8];
        file.extend_from_slice(&key.seal(&h, &[0x42; 100]));
        add("sealed_block", "file", file.clone());
        file.truncate(50);
        add("sealed_block", "file_truncated", file);
    }
    // Compressed blocks: a frame of text (through the unpacker, built and flipped, in a datagram), garbage, a
    // frame that claims a huge block.
    {
        use crate::wire::compress::BlockCompressor;
        let text = b"@r1 1:N:0\nACGTTGCAAC\n+\nFFFF:FFF,F\n".repeat(40);
        let mut frame = vec![0u8; text.len()];
        let n = BlockCompressor::new(1).expect("zstd").compress(&text, &mut frame).expect("text shrinks");
        let mut unpack = vec![0u8];
        unpack.extend_from_slice(&((text.len() - 1) as u16).to_be_bytes());
        unpack.extend_from_slice(&frame[..n]);
        add("compressed_block", "frame", unpack.clone());
        unpack[1..3].copy_from_slice(&[0, 9]);
        add("compressed_block", "frame_wrong_length", unpack);
        let mut built = vec![1u8, 0, 0];
        built.extend_from_slice(&text);
        add("compressed_block", "built", built.clone());
        built[1..3].copy_from_slice(&[0, 7]);
        add("compressed_block", "built_flipped", built);
        let mut datagram = vec![2u8, 0];
        datagram.extend_from_slice(&frame[..n]);
        add("compressed_block", "datagram", datagram);
        add("compressed_block", "datagram_garbage", vec![2, 1, 0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff]);
        // A frame header declaring 2^40 bytes of content.
        add("compressed_block", "huge_claim", vec![0, 0, 9, 0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0, 0, 0, 0, 1, 0, 0, 0]);
    }
    // Striped sessions (types 16-20): each, a block count past the bytes present, a relay offer for leg 0.
    let blocks_at = ControlMsg::BlocksAt { leg: 2, batch: 9, blocks: vec![4, 5, 6] };
    add("control_msg", "blocks_at", frame_body(&blocks_at));
    add("control_msg", "refetch", frame_body(&ControlMsg::Refetch { blocks: vec![1, 2] }));
    add("control_msg", "stripe_done", frame_body(&ControlMsg::StripeDone));
    let offer =
        ControlMsg::RelayOffer { leg: 1, url: "mover://r1:7710".into(), ca_pem: String::new(), capability: "c".into() };
    add("control_msg", "relay_offer", frame_body(&offer));
    add("control_msg", "relay_offer_leg0", vec![17, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    add("control_msg", "refetch_huge_count", vec![20, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]);
    let stripe = ControlMsg::Stripe(crate::wire::control::StripeHello {
        hello: crate::wire::control::Hello {
            version: 3,
            block_payload: 0,
            rate_bps: 1_000_000,
            window_blocks: 0,
            entry_count: 1,
            total_bytes: 10,
            cipher: crate::wire::Cipher::Aes256Gcm,
            options: Default::default(),
            policy: crate::proto::policy::Policy::Fair,
            dest: "d".into(),
        },
        transfer_id: 1,
        block_bytes: 1 << 20,
        overlap: true,
        detach: true,
    });
    add("control_msg", "stripe", frame_body(&stripe));
    let query = ControlMsg::StatusQuery { transfer: "0123456789abcdef0123456789abcdef".into() };
    add("control_msg", "status_query", frame_body(&query));
    let reply = ControlMsg::StatusReply(crate::wire::control::TransferStatus {
        state: 2,
        files_total: 3,
        ..Default::default()
    });
    add("control_msg", "status_reply", frame_body(&reply));
    add("control_msg", "status_reply_bad_state", vec![22, 9, 0, 0]);
    add("control_msg", "measure_rtt", frame_body(&ControlMsg::MeasureRtt { urls: vec!["mover://r1".into()] }));
    add("control_msg", "rtts", frame_body(&ControlMsg::Rtts { micros: vec![5000, u32::MAX] }));
    add("control_msg", "rtts_too_many", vec![24, 200, 0, 0, 0, 1]);
    add("control_msg", "drain", frame_body(&ControlMsg::Drain));
    // Dry runs (types 31-33): each, a verdict count past the bytes present, an unknown kind, held bytes on
    // a new file, file ids past u32.
    let dry_run = ControlMsg::DryRun(crate::wire::control::Hello {
        version: 3,
        block_payload: 8912,
        rate_bps: 200_000_000,
        window_blocks: 1 << 16,
        entry_count: 2,
        total_bytes: 10,
        cipher: crate::wire::Cipher::Aes256Gcm,
        options: Default::default(),
        policy: crate::proto::policy::Policy::Fair,
        dest: "in".into(),
    });
    add("control_msg", "dry_run", frame_body(&dry_run));
    use crate::wire::verdict::{Verdict, VerdictKind};
    let verdicts = ControlMsg::Verdicts {
        first_file_id: 2,
        verdicts: vec![
            Verdict { kind: VerdictKind::New, held: 0 },
            Verdict { kind: VerdictKind::Changed, held: 1 << 24 },
            Verdict { kind: VerdictKind::Unchanged, held: 0 },
        ],
    };
    add("control_msg", "verdicts", frame_body(&verdicts));
    add("control_msg", "verdicts_huge_count", vec![32, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]);
    add("control_msg", "verdicts_bad_kind", vec![32, 0, 0, 0, 0, 0, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
    add("control_msg", "verdicts_new_holds", vec![32, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    let mut past_end = vec![32, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2];
    past_end.extend_from_slice(&[0; 18]);
    add("control_msg", "verdicts_past_last_id", past_end);
    add("control_msg", "dry_run_done", frame_body(&ControlMsg::DryRunDone { files: 3 }));

    for (name, p) in [
        ("plain", "dataset/sub/a.txt"),
        ("dots_in_names", ".hidden/..x/x.."),
        ("dotdot", "a/../b"),
        ("dot", "./a"),
        ("absolute", "/etc/passwd"),
        ("double_slash", "a//b"),
        ("trailing_slash", "projects/run42/"),
        ("nul", "a\0b"),
        ("newline_escape", "x\n/../\u{1b}[2J"),
        ("unicode", "données/ä/日本"),
        ("empty", ""),
        ("only_slash", "/"),
        // Every traversal form the daemon must refuse (or, for look-alikes, keep as plain names).
        ("dotdot_alone", ".."),
        ("dotdot_leading", "../etc/passwd"),
        ("dotdot_trailing", "a/b/.."),
        ("dotdot_deep", "a/b/../../../../etc/shadow"),
        ("dotdot_after_slash", "/../x"),
        ("dotdot_trailing_slash", "../"),
        ("double_leading_slash", "//etc/passwd"),
        ("dot_middle", "a/./b"),
        ("nul_end", "a\0"),
        ("nul_after_dotdot", "..\0/x"),
        ("nul_hiding_dotdot", "ok\0/../../etc"),
        ("three_dots", ".../x"),
        ("backslash_dotdot", "..\\..\\etc"),
        ("percent_encoded", "%2e%2e/%2e%2e/etc"),
        ("fullwidth_dots", "\u{ff0e}\u{ff0e}/x"),
        ("one_dot_leader", "\u{2024}\u{2024}/x"),
        ("tab_dotdot", "\t../x"),
        ("dotdot_space", ".. /x"),
    ] {
        add("path_sanitizer", name, p.as_bytes().to_vec());
    }
    // Overlong UTF-8 encodings of '.' and '/' (invalid UTF-8: replaced, never decoded to a dot or a slash).
    add("path_sanitizer", "overlong_utf8_dotdot", b"\xc0\xae\xc0\xae\xc0\xafetc".to_vec());
    add("path_sanitizer", "component_at_limit", "x".repeat(255).into_bytes());
    add("path_sanitizer", "path_over_limit", ["a"; 2049].join("/").into_bytes());
    add("path_sanitizer", "long_component", "x".repeat(256).into_bytes());
    add("path_sanitizer", "invalid_utf8", b"a/\xff\xfe/b".to_vec());
    // Found by the fuzzer (a harness bound, not a crate bug): 200 escaped control characters in a message.
    add("path_sanitizer", "many_control_chars", [&b"\t\t"[..], &[0x19; 300]].concat());

    // Session: window 64 + 0, three files of SIZES[3] = 1412, SIZES[4] = 1413 and SIZES[1] = 1 bytes.
    let session = [0u8, 3, 3, 4, 1];
    // A sealed data packet of the receiver program: helpful file id, offset, length, round and session.
    let rx_block = |file: u8, block: u16| {
        let mut v = vec![op::SEALED, 0x1f, file];
        v.extend_from_slice(&block.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 100, 0, 0, 0x4e, 0x20]); // flags, tx_time_us 100, srtt_us 20000
        v
    };
    let rx_seal = |d: &DataHeader| {
        let mut v = vec![op::RAW];
        v.extend(with_len(&sealed_data(d, 0)));
        v
    };
    let rx_file0 = DataHeader { file_id: 0, offset: 0, len: 1412, ..data };
    let hash_msg = |file_id| {
        let mut v = vec![op::CONTROL];
        v.extend(with_len(&frame_body(&ControlMsg::FileHash { round: 0, file_id, hash: 1 })));
        v.push(1); // verdict: matched
        v
    };
    let mut prog = session.to_vec();
    prog.extend(rx_seal(&rx_file0));
    add("receiver_datagram", "raw_valid_block", prog.clone());
    // Every block of every file, out of order, with hashes and verdicts: the session completes.
    let mut whole = session.to_vec();
    for (file, block) in [(1, 1), (0, 0), (2, 0), (1, 0)] {
        whole.extend(rx_block(file, block));
        whole.extend([op::TIME, 0, 0x01, 0, 0, op::TRANSMIT]);
    }
    for id in 0..3 {
        whole.extend(hash_msg(id));
    }
    whole.push(op::TRANSMIT);
    add("receiver_datagram", "whole_session", whole);
    // A gap, then time passing: NAKs and the tail rule.
    let mut gap = session.to_vec();
    gap.extend(rx_block(1, 1));
    gap.extend([op::TIME, 0, 0x10, 0, 0, op::TRANSMIT, op::TIME, 0x10, 0, 0, 0, op::TRANSMIT]);
    add("receiver_datagram", "gap_and_naks", gap);
    // A failed verification: round 1 starts, and a round-0 packet is then stale.
    let mut fail = session.to_vec();
    for (file, block) in [(0, 0), (1, 0), (1, 1), (2, 0)] {
        fail.extend(rx_block(file, block));
    }
    fail.extend(hash_msg(0));
    let mut h1 = hash_msg(1);
    *h1.last_mut().expect("verdict") = 0;
    fail.extend(h1);
    fail.extend(hash_msg(2));
    fail.extend(rx_seal(&rx_file0));
    fail.extend(rx_block(1, 0));
    add("receiver_datagram", "failed_file_next_round", fail);
    let mut corrupt = session.to_vec();
    corrupt.extend([op::SEALED, 0x9f, 1, 0, 1, 0, 0, 0, 0, 100, 0, 0, 0x4e, 0x20, 0, 50, 3]);
    add("receiver_datagram", "corrupted_sealed", corrupt);
    let mut foreign = session.to_vec();
    foreign.extend(rx_seal(&DataHeader { session_id: 1, ..rx_file0 }));
    foreign.extend(rx_seal(&DataHeader { offset: 7, ..rx_file0 }));
    foreign.extend(rx_seal(&DataHeader { file_id: 99, ..rx_file0 }));
    add("receiver_datagram", "foreign_and_malformed", foreign);
    let mut big_file = vec![0, 1, 7];
    big_file.extend([op::SEALED, 0x1f, 0, 0xff, 0xff, 0, 0, 0, 0, 100, 0, 0, 0x4e, 0x20]);
    add("receiver_datagram", "out_of_window_big_file", big_file);
    add("receiver_datagram", "garbage", b"\x07\x02\x05\x06 not a program at all".to_vec());

    // The sender: transmit, then feedback acknowledging and NAKing.
    let fb_seed = |sel: u8, cum_ack: u16, naks: &[(u16, u8)]| {
        let mut v = vec![op::SEALED, sel | 0x18];
        v.extend_from_slice(&cum_ack.to_be_bytes());
        v.extend_from_slice(&[0, 10, 0, 0, 0, 5]); // echoed 10 us ago, held 5 us
        v.extend_from_slice(&125_000_000u64.to_be_bytes());
        v.push(naks.len() as u8);
        for &(start, count) in naks {
            v.extend_from_slice(&start.to_be_bytes());
            v.push(count);
        }
        v
    };
    let mut send = session.to_vec();
    send.extend([op::TRANSMIT, 10, op::TIME, 0, 0, 0x10, 0]);
    send.extend(fb_seed(0x27, 1, &[(2, 1)]));
    send.extend([op::TRANSMIT, 10]);
    send.extend(fb_seed(0x27, 4, &[]));
    add("sender_datagram", "ack_and_nak", send.clone());
    let mut verdict = send.clone();
    let mut rf = vec![op::CONTROL];
    rf.extend(with_len(&frame_body(&ControlMsg::RoundFailed { round: 0, file_ids: vec![1] })));
    rf.push(op::CONTROL);
    rf.extend(with_len(&frame_body(&ControlMsg::RoundDone { round: 0, failed: 1 })));
    verdict.extend(rf);
    verdict.extend([op::TRANSMIT, 10]);
    verdict.extend(fb_seed(0x27, 2, &[]));
    let mut done = vec![op::CONTROL];
    done.extend(with_len(&frame_body(&ControlMsg::Complete(ReceiverSummary::default()))));
    verdict.extend(done);
    add("sender_datagram", "round_failed_then_complete", verdict);
    let mut raw = session.to_vec();
    raw.push(op::TRANSMIT);
    raw.push(3);
    raw.push(op::RAW);
    raw.extend(with_len(&sealed_feedback(&FeedbackHeader { cum_ack: 2, ..fb }, &[NakRange { start: 0, count: 5 }])));
    add("sender_datagram", "raw_valid_feedback", raw);
    let mut huge = session.to_vec();
    huge.extend([op::TRANSMIT, 5]);
    huge.extend(fb_seed(0x00, 0, &[]));
    add("sender_datagram", "raw_fields", huge);
    let mut timeout = session.to_vec();
    timeout.extend([op::TRANSMIT, 1, op::TIME, 0xff, 0xff, 0xff, 0xff, op::TRANSMIT, 1]);
    add("sender_datagram", "peer_timeout", timeout);
    add("sender_datagram", "data_instead_of_feedback", [&session[..], &rx_seal(&rx_file0)].concat());
    add("sender_datagram", "garbage", b"\x03\x02\x05\x06 not a program at all".to_vec());
    for (name, bytes) in crate::files::journal::fuzz::seeds() {
        add("journal_load", name, bytes);
    }
    seeds
}
