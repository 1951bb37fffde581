//! The control channel: length-prefixed frames (PROTOCOL.md §3.1) read by a thread of its own, so the
//! transfer loop only ever polls a queue and never blocks on the network.
//!
//! The transport is any byte stream: a TCP connection, the pipes of an SSH session (`mover serve --stdio`),
//! or a TLS session's plaintext side. [`ControlChannel::from_parts`] takes its read half, write half and a
//! function that shuts both (so the reader thread ends when the channel is dropped).

use crate::wire::control::{ControlError, ControlMsg};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::Thread;
use std::time::Duration;

/// The reader thread's buffer.
const READ_BUFFER_BYTES: usize = 64 << 10;
/// Bytes the reader thread may hold decoded before the channel's owner takes them, each message counted as
/// its frame plus its queue slot ([`event_cost`]); it also holds at most [`MAX_QUEUED_EVENTS`] messages.
/// Past either, the reader stops reading, and TCP's flow control (or the TLS pump's bounded buffer) pushes
/// back on the peer: a client cannot make the daemon buffer what it sends faster than its session reads. Large enough that both sides may write a burst of large messages
/// before reading (each side's reader absorbs the other's), which the protocol does; one channel holds at
/// most this plus one message ([`crate::wire::control::MAX_FRAME_LEN`]).
pub const EVENT_QUEUE_BYTES: usize = 16 << 20;
/// The most messages the reader thread holds decoded (about 1 MB of queue slots). The byte limit lets a
/// burst of large frames through; this one holds a stream of small ones (a manifest's entries, a round's
/// hashes: 30-byte frames in 224-byte slots) to what the owner needs to stay busy. The rest waits in the
/// socket's buffer, which costs the process nothing. Without it, how far the reader ran ahead of a busy
/// session was the scheduler's choice: the 30k hashes of a round of empty files were 1 MB of queue in one
/// run of `tests/peak_memory.rs` and 7 MB in the next.
pub const MAX_QUEUED_EVENTS: usize = 4096;
/// The backlog of a daemon's connection until it is admitted ([`ControlChannel::set_backlog_limit`]):
/// credentials and a first request are small, and a connection that is still authenticating or waiting in
/// the queue then holds at most this plus one frame, however much its peer sends.
pub const UNADMITTED_QUEUE_BYTES: usize = 64 << 10;
/// About how many bytes [`ControlChannel::send_all`] gathers into one write.
pub const WRITE_BATCH_BYTES: usize = 64 << 10;

/// What the reader thread saw.
#[derive(Debug)]
pub enum ControlEvent {
    /// A well-formed message.
    Msg(ControlMsg),
    /// The peer closed the connection.
    Closed,
    /// A read error or a malformed frame; the channel reads nothing further.
    Failed(String),
}

/// One control connection: send from the caller's thread, receive through a queue fed by a reader thread.
pub struct ControlChannel {
    writer: Box<dyn Write + Send>,
    close: Box<dyn Fn() + Send>,
    events: mpsc::Receiver<(ControlEvent, usize)>,
    /// What the events queued in `events` cost ([`EVENT_QUEUE_BYTES`]).
    backlog: Arc<Backlog>,
    peer: SocketAddr,
    local: SocketAddr,
    frame: Vec<u8>,
    /// The end of the channel (close or failure) was reported: later receives return nothing, so that
    /// `while let Some(ev) = ch.try_recv()` loops end.
    ended: bool,
    /// A thread to unpark after each event (a parked pipeline stage that polls this channel).
    waker: Arc<Mutex<Option<Thread>>>,
    /// Rewrites the text of every `Error` sent (a server's scrub of its root: `session::RootScrub`).
    error_filter: Option<ErrorFilter>,
}

/// A rewrite of outgoing `Error` texts ([`ControlChannel::set_error_filter`]).
type ErrorFilter = Box<dyn Fn(&str) -> String + Send>;

impl ControlChannel {
    /// Takes over a connected TCP stream and starts its reader thread.
    pub fn new(stream: TcpStream) -> io::Result<ControlChannel> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        let reader = stream.try_clone()?;
        let closer = stream.try_clone()?;
        let close = move || {
            let _ = closer.shutdown(Shutdown::Both);
        };
        ControlChannel::from_parts(reader, stream, close, peer, local)
    }

    /// A channel over any byte stream: `reader` is read by a thread of its own, `writer` takes whole frames
    /// (and is flushed after each), `close` must make a blocked read of `reader` return (it runs on drop).
    /// `peer` and `local` are the addresses the data path uses: for a pipe, those of the connection the
    /// pipe stands for (an SSH session's).
    pub fn from_parts(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        close: impl Fn() + Send + 'static,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> io::Result<ControlChannel> {
        let (tx, events) = mpsc::channel();
        let waker = Arc::new(Mutex::new(None));
        let w = waker.clone();
        let backlog = Arc::new(Backlog::default());
        let b = backlog.clone();
        // Buffered: a manifest of many small frames is then a few large reads, not two per frame.
        let reader = io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
        std::thread::Builder::new().name("mover-control".into()).spawn(move || read_loop(reader, tx, w, b))?;
        Ok(ControlChannel {
            writer: Box::new(writer),
            close: Box::new(close),
            events,
            backlog,
            peer,
            local,
            frame: Vec::with_capacity(256),
            ended: false,
            waker,
            error_filter: None,
        })
    }

    /// Connects to `addr` within `timeout` and starts the channel.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<ControlChannel> {
        ControlChannel::new(TcpStream::connect_timeout(&addr, timeout)?)
    }

    /// Unparks `thread` after every event from now on (`None`: stop), so a stage that parks between polls
    /// sees control messages at once.
    pub fn wake_on_event(&self, thread: Option<Thread>) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = thread;
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// This end's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Passes the text of every `Error` sent from now on through `filter`: a server installs the scrub of
    /// its root here, so that no layer that sends on this channel can show the client a server path.
    pub fn set_error_filter(&mut self, filter: impl Fn(&str) -> String + Send + 'static) {
        self.error_filter = Some(Box::new(filter));
    }

    /// Sends one message (blocking until the kernel has it).
    pub fn send(&mut self, msg: &ControlMsg) -> io::Result<()> {
        self.frame.clear();
        encode_filtered(msg, self.error_filter.as_ref(), &mut self.frame);
        self.writer.write_all(&self.frame)?;
        self.writer.flush()
    }

    /// Sends messages in order, gathered into writes of about [`WRITE_BATCH_BYTES`] (a manifest of 10,000
    /// entries is then a few dozen writes, not 10,000), flushed at the end.
    pub fn send_all<M: std::borrow::Borrow<ControlMsg>>(
        &mut self,
        msgs: impl IntoIterator<Item = M>,
    ) -> io::Result<()> {
        self.frame.clear();
        for msg in msgs {
            encode_filtered(msg.borrow(), self.error_filter.as_ref(), &mut self.frame);
            if self.frame.len() >= WRITE_BATCH_BYTES {
                self.writer.write_all(&self.frame)?;
                self.frame.clear();
            }
        }
        self.writer.write_all(&self.frame)?;
        self.frame.clear();
        self.writer.flush()
    }

    /// The next event if one is waiting. The end of the channel is reported once, then `None` forever.
    pub fn try_recv(&mut self) -> Option<ControlEvent> {
        if self.ended {
            return None;
        }
        let event = match self.events.try_recv() {
            Ok((e, bytes)) => self.backlog.take(bytes, e),
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => ControlEvent::Closed,
        };
        self.note_end(event)
    }

    /// The next event, waiting up to `timeout`; `None` on timeout, and after the end was reported.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<ControlEvent> {
        if self.ended {
            return None;
        }
        let event = match self.events.recv_timeout(timeout) {
            Ok((e, bytes)) => self.backlog.take(bytes, e),
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => ControlEvent::Closed,
        };
        self.note_end(event)
    }

    fn note_end(&mut self, event: ControlEvent) -> Option<ControlEvent> {
        self.ended = !matches!(event, ControlEvent::Msg(_));
        Some(event)
    }

    /// The next message, waiting up to `timeout`; anything else is an error for the user.
    pub fn expect_msg(&mut self, timeout: Duration, what: &str) -> Result<ControlMsg, String> {
        match self.recv_timeout(timeout) {
            Some(ControlEvent::Msg(m)) => Ok(m),
            Some(ControlEvent::Closed) => Err(format!("{} closed the control connection while {what}", self.peer)),
            Some(ControlEvent::Failed(e)) => {
                Err(format!("control connection with {} failed while {what}: {e}", self.peer))
            }
            None => Err(format!("{} did not answer within {} s while {what}", self.peer, timeout.as_secs())),
        }
    }

    /// The next message, waiting until `deadline` at most: for a handshake that must finish by a deadline
    /// as a whole, not per message (a peer that sends one frame just before each per-message timeout is
    /// cut all the same). A missed deadline's text contains [`DEADLINE_MISSED`].
    pub fn expect_msg_by(&mut self, deadline: std::time::Instant, what: &str) -> Result<ControlMsg, String> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match self.expect_msg(left, what) {
            Err(e) if e.contains("did not answer within") => {
                Err(format!("{} {DEADLINE_MISSED} while {what}: the whole handshake must finish in time", self.peer))
            }
            other => other,
        }
    }

    /// Bounds what the reader thread holds decoded before the owner takes it (default
    /// [`EVENT_QUEUE_BYTES`]): a daemon keeps a connection to [`UNADMITTED_QUEUE_BYTES`] until it is
    /// admitted, then raises it. [`MAX_QUEUED_EVENTS`] holds whatever the limit.
    pub fn set_backlog_limit(&self, bytes: usize) {
        self.backlog.limit.store(bytes, Ordering::Release);
        self.backlog.room.notify_all();
    }

    /// Closes both directions (the reader thread then ends).
    pub fn shutdown(&self) {
        (self.close)();
    }
}

/// Appends `msg`'s frame to `frame`, an `Error`'s text passed through `filter` first.
fn encode_filtered(msg: &ControlMsg, filter: Option<&ErrorFilter>, frame: &mut Vec<u8>) {
    match (msg, filter) {
        (ControlMsg::Error { message }, Some(filter)) => ControlMsg::Error { message: filter(message) }.encode(frame),
        _ => msg.encode(frame),
    }
}

impl Drop for ControlChannel {
    fn drop(&mut self) {
        self.backlog.close();
        self.shutdown();
    }
}

/// What a queued message costs the backlog: its frame (about what its strings and vectors hold once
/// decoded) plus the queue slot it is decoded into. Counting frames alone let a stream of small messages
/// (a manifest's entries: 40-byte frames in 224-byte slots) hold five times the limit.
pub fn event_cost(frame_len: usize) -> usize {
    frame_len + std::mem::size_of::<(ControlEvent, usize)>()
}

/// What the reader thread has queued and the owner not yet taken ([`event_cost`]); the reader waits for room.
struct Backlog {
    queued: Mutex<Queued>,
    /// The most it may hold before the reader waits ([`EVENT_QUEUE_BYTES`] unless set).
    limit: AtomicUsize,
    room: Condvar,
    /// The channel was dropped: the reader stops waiting for room.
    closed: AtomicBool,
}

/// The backlog's count, under its lock.
#[derive(Default)]
struct Queued {
    /// What the queued events cost.
    bytes: usize,
    /// How many there are.
    events: usize,
    /// The reader waits for room: the owner wakes it once the backlog is down to half of both limits.
    reader_waits: bool,
}

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog {
            queued: Mutex::new(Queued::default()),
            limit: AtomicUsize::new(EVENT_QUEUE_BYTES),
            room: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }
}

impl Backlog {
    /// Waits until the backlog is under its limits (or the channel is gone), then counts `bytes` in.
    /// Under the limit one more frame always fits, so a frame larger than the room left never waits forever.
    fn put(&self, bytes: usize) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        while (queued.bytes >= self.limit.load(Ordering::Acquire) || queued.events >= MAX_QUEUED_EVENTS)
            && !self.closed.load(Ordering::Acquire)
        {
            queued.reader_waits = true;
            // Timed, so that a close or a new limit that raced the check is seen.
            queued = self.room.wait_timeout(queued, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        queued.reader_waits = false;
        queued.bytes += bytes;
        queued.events += 1;
    }

    /// Counts `bytes` out (the owner took an event) and wakes a waiting reader once there is room for half
    /// a backlog; passes the event through.
    fn take(&self, bytes: usize, event: ControlEvent) -> ControlEvent {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        queued.bytes -= bytes;
        queued.events -= 1;
        // Waking the reader for every message taken from a full backlog would be a futex syscall per
        // control message, and a stream of small messages keeps the count full most of the time: the
        // reader refills half of the backlog per wake-up instead.
        if queued.reader_waits
            && queued.bytes <= self.limit.load(Ordering::Acquire) / 2
            && queued.events <= MAX_QUEUED_EVENTS / 2
        {
            queued.reader_waits = false;
            self.room.notify_one();
        }
        event
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_all();
    }
}

fn read_loop(
    mut stream: impl Read,
    tx: mpsc::Sender<(ControlEvent, usize)>,
    waker: Arc<Mutex<Option<Thread>>>,
    backlog: Arc<Backlog>,
) {
    let mut body = Vec::new();
    loop {
        let event = match read_frame(&mut stream, &mut body) {
            Ok(Some(m)) => ControlEvent::Msg(m),
            Ok(None) => ControlEvent::Closed,
            Err(e) => ControlEvent::Failed(e),
        };
        let last = !matches!(event, ControlEvent::Msg(_));
        let bytes = if last { 0 } else { event_cost(body.len() + 4) };
        if body.capacity() > READ_BUFFER_BYTES {
            // A rare large frame: do not hold its buffer for the rest of a long session.
            body = Vec::new();
        }
        // Waits while the backlog is full; the send fails once the channel is dropped (which ends this thread).
        backlog.put(bytes);
        let gone = tx.send((event, bytes)).is_err();
        if let Some(t) = waker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            t.unpark();
        }
        if gone || last {
            return;
        }
    }
}

/// Part of the text of [`ControlChannel::expect_msg_by`]'s error when the deadline passed.
pub const DEADLINE_MISSED: &str = "missed the handshake's deadline";

/// Part of the text of a channel that failed because the peer speaks TLS where plain frames were expected:
/// a configuration mismatch, which no retry fixes.
pub const PEER_SPEAKS_TLS: &str = "the peer speaks TLS";

/// Reads one frame; `Ok(None)` on a clean end of stream between frames. The length is checked before the
/// body is read, so a hostile length never allocates more than [`crate::wire::control::MAX_FRAME_LEN`].
pub fn read_frame(r: &mut impl Read, body: &mut Vec<u8>) -> Result<Option<ControlMsg>, String> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let n = ControlMsg::check_frame_len(u32::from_be_bytes(len)).map_err(|e| match len {
        // A TLS record header (content type 20-23, version 3.x) where a frame length should be.
        // Said in words: the length those bytes would make means nothing to anyone.
        [20..=23, 3, _, _] => format!(
            "{PEER_SPEAKS_TLS} where plain TCP was expected: one side runs with --insecure-no-auth and the other \
             does not (pass it on both, or neither)"
        ),
        _ => e.to_string(),
    })?;
    // Grown as the bytes arrive, not to the announced length: a peer that announces 1 MiB and sends nothing
    // costs no more than what it sent.
    body.clear();
    let got =
        r.by_ref().take(n as u64).read_to_end(body).map_err(|e| format!("reading a {n}-byte control frame: {e}"))?;
    if got < n {
        return Err(format!("reading a {n}-byte control frame: the stream ended after {got} bytes"));
    }
    ControlMsg::decode(body).map(Some).map_err(|e: ControlError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Counts the writes a channel makes (and keeps the bytes), for the batching test.
    #[derive(Clone, Default)]
    struct CountingWriter(Arc<Mutex<(usize, Vec<u8>)>>);

    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0 += 1;
            g.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Issue 18, item 4: a sender poll's `FileHash`es (one per small file) go out in one write, not one each,
    /// and arrive whole and in order.
    #[test]
    fn send_all_gathers_many_messages_into_few_writes() {
        let w = CountingWriter::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut ch = ControlChannel::from_parts(io::empty(), w.clone(), || {}, addr, addr).unwrap();
        let msgs: Vec<ControlMsg> =
            (0..1000u32).map(|i| ControlMsg::FileHash { round: 0, file_id: i, hash: u128::from(i) << 64 }).collect();
        ch.send_all(&msgs).unwrap();
        let (writes, bytes) = w.0.lock().unwrap().clone();
        assert!(writes <= 2, "{writes} writes for 1000 messages");
        let (mut r, mut body, mut got) = (&bytes[..], Vec::new(), Vec::new());
        while let Some(m) = read_frame(&mut r, &mut body).unwrap() {
            got.push(m);
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn messages_cross_and_absurd_frames_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut ch = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
            ch.send(&ControlMsg::ManifestEnd).unwrap();
            ch.send(&ControlMsg::Error { message: "x".into() }).unwrap();
            // An absurd length: the server must refuse it without trying to read 4 GiB.
            ch.writer.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let (stream, _) = listener.accept().unwrap();
        let mut ch = ControlChannel::new(stream).unwrap();
        assert!(matches!(ch.recv_timeout(Duration::from_secs(5)), Some(ControlEvent::Msg(ControlMsg::ManifestEnd))));
        assert!(matches!(ch.recv_timeout(Duration::from_secs(5)), Some(ControlEvent::Msg(ControlMsg::Error { .. }))));
        match ch.recv_timeout(Duration::from_secs(5)) {
            Some(ControlEvent::Failed(e)) => assert!(e.contains("outside 1..="), "{e}"),
            other => panic!("expected a refused frame, got {other:?}"),
        }
        // The end is reported once: a `while let` over try_recv terminates.
        assert!(ch.try_recv().is_none());
        assert!(ch.recv_timeout(Duration::from_millis(10)).is_none());
        client.join().unwrap();
    }

    #[test]
    fn an_unadmitted_connection_holds_little_whatever_its_peer_sends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut frame = Vec::new();
        ControlMsg::Error { message: "x".repeat(4000) }.encode(&mut frame);
        let flooder = std::thread::spawn(move || {
            let mut raw = TcpStream::connect(addr).unwrap();
            raw.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
            while raw.write_all(&frame).is_ok() {}
            raw
        });
        let (stream, _) = listener.accept().unwrap();
        let ch = ControlChannel::new(stream).unwrap();
        ch.set_backlog_limit(UNADMITTED_QUEUE_BYTES);
        let _raw = flooder.join().unwrap();
        let held = ch.backlog.queued.lock().unwrap().bytes;
        // What the reader read before the limit was set (socket-buffer sized at most) or the limit plus one
        // frame: far below the admitted backlog.
        assert!(held < 8 << 20, "an unadmitted channel holds {} KiB", held >> 10);
        // Raised on admission: the reader takes more again.
        let before = held;
        ch.set_backlog_limit(EVENT_QUEUE_BYTES);
        std::thread::sleep(Duration::from_millis(300));
        assert!(ch.backlog.queued.lock().unwrap().bytes > before, "raising the limit let nothing more in");
    }

    #[test]
    fn a_stream_of_small_messages_is_held_to_a_count_not_only_to_bytes() {
        // Manifest entries: 30-byte frames, each decoded into a slot several times larger. Counted by frame
        // bytes, the 16 MiB backlog held all 200,000 of them (45 MB of slots).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let flooder = std::thread::spawn(move || {
            let mut ch = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
            let entry = |i: u32| {
                ControlMsg::Entry(crate::wire::entry::Entry { rel_path: format!("f{i:06}"), ..Default::default() })
            };
            let _ = ch.send_all((0..200_000).map(entry));
            ch
        });
        let (stream, _) = listener.accept().unwrap();
        // At the channel's usual limit (16 MiB): the count holds them.
        let mut ch = ControlChannel::new(stream).unwrap();
        // The sender stalls (6 MB of frames fill no window and no pair of loopback socket buffers). Wait
        // for the reader to reach its count (however slowly a loaded machine runs it), then give it time
        // to run past it if it would.
        let queued = || {
            let q = ch.backlog.queued.lock().unwrap();
            (q.events, q.bytes)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while queued().0 < MAX_QUEUED_EVENTS && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        let slot = std::mem::size_of::<(ControlEvent, usize)>();
        let (events, bytes) = queued();
        assert!(events <= MAX_QUEUED_EVENTS, "{events} events of {slot} bytes queued ({bytes} bytes)");
        assert!(events * slot < 1 << 20, "{events} events of {slot} bytes queued");
        assert_eq!(events, MAX_QUEUED_EVENTS, "the reader stopped short of its limit");
        // And all of them arrive, in order, through a window refilled half at a time.
        for i in 0..200_000u32 {
            match ch.recv_timeout(Duration::from_secs(5)) {
                Some(ControlEvent::Msg(ControlMsg::Entry(e))) => assert_eq!(e.rel_path, format!("f{i:06}")),
                other => panic!("entry {i}: {other:?}"),
            }
        }
        drop(flooder.join().unwrap());
    }

    #[test]
    fn a_peer_that_floods_is_pushed_back_until_the_owner_reads() {
        const FRAMES: usize = 40_000;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut frame = Vec::new();
        ControlMsg::Error { message: "x".repeat(4000) }.encode(&mut frame);
        let frame_len = frame.len();
        let flooder = std::thread::spawn(move || {
            let mut raw = TcpStream::connect(addr).unwrap();
            // 160 MB would fit no socket buffer and no backlog: the writes must stall.
            raw.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut sent = 0;
            while sent < FRAMES && raw.write_all(&frame).is_ok() {
                sent += 1;
            }
            sent
        });
        let (stream, _) = listener.accept().unwrap();
        let mut ch = ControlChannel::new(stream).unwrap();
        let sent = flooder.join().unwrap();
        // The backlog, the socket buffers of both ends (a few MiB each on loopback) and no more.
        assert!(sent * frame_len < EVENT_QUEUE_BYTES + (32 << 20), "{} MiB went out unread", (sent * frame_len) >> 20);
        assert!(sent * frame_len >= EVENT_QUEUE_BYTES, "the backlog took only {sent} frames");
        // What was sent is all there, in order.
        let mut received = 0;
        while let Some(ControlEvent::Msg(ControlMsg::Error { message })) = ch.recv_timeout(Duration::from_millis(500)) {
            assert_eq!(message.len(), 4000);
            received += 1;
        }
        assert_eq!(received, sent);
    }
}
