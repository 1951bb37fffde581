//! The whole loop driven through Unix datagram socketpairs instead of interfaces: no root, no NIC, real clock.
//! `outer_a` plays the sender's veth, `outer_b` the receiver's; the forwarder holds the other two ends.

use super::*;
use crate::args::{self, Command};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

struct Harness {
    outer_a: OwnedFd,
    outer_b: OwnedFd,
    stop_write: OwnedFd,
    thread: Option<std::thread::JoinHandle<(DirectionStats, DirectionStats)>>,
}

/// Frames as seen on an interface of MTU 1500.
const MTU: u32 = 1500;

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // Safety: fds is valid for two ints.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
    // Safety: both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn set_nonblocking(fd: &OwnedFd) {
    // Safety: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

impl Harness {
    fn start(extra: &[&str]) -> Harness {
        let mut argv = vec!["--a", "inner_a", "--b", "inner_b"];
        argv.extend_from_slice(extra);
        let Ok(Command::Run(cfg)) = args::parse(argv.iter().copied()) else { panic!("{argv:?}") };
        let (outer_a, inner_a) = socketpair();
        let (outer_b, inner_b) = socketpair();
        set_nonblocking(&inner_a);
        set_nonblocking(&inner_b);
        let mut pipe = [0; 2];
        // Safety: pipe is valid for two ints.
        assert_eq!(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // Safety: fresh descriptors, owned here.
        let (stop_read, stop_write) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let thread = std::thread::spawn(move || {
            let a = PacketSocket::from_datagram_socket(inner_a, "inner_a", MTU);
            let b = PacketSocket::from_datagram_socket(inner_b, "inner_b", MTU);
            let mut fwd = Forwarder::with_sockets(&cfg, a, b).expect("forwarder");
            fwd.run(stop_read.as_raw_fd()).expect("run");
            fwd.stats()
        });
        Harness { outer_a, outer_b, stop_write, thread: Some(thread) }
    }

    fn stop(mut self) -> (DirectionStats, DirectionStats) {
        // Safety: writes one byte from a valid buffer.
        assert_eq!(unsafe { libc::write(self.stop_write.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
        self.thread.take().unwrap().join().expect("forwarder thread")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // Safety: as in stop; a failed test still ends the thread.
            unsafe { libc::write(self.stop_write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            let _ = t.join();
        }
    }
}

fn send(fd: &OwnedFd, frame: &[u8]) {
    // Safety: frame is valid for its length.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(n, frame.len() as isize, "send: {}", io::Error::last_os_error());
}

/// Receives one frame, waiting at most `limit`.
fn recv(fd: &OwnedFd, limit: Duration) -> Option<Vec<u8>> {
    if !poll_readable(fd.as_raw_fd(), Some(limit.as_nanos() as u64)).unwrap() {
        return None;
    }
    let mut buf = vec![0u8; 70_000];
    // Safety: buf is valid for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert!(n >= 0, "recv: {}", io::Error::last_os_error());
    buf.truncate(n as usize);
    Some(buf)
}

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![(seq % 251) as u8; len];
    f[..4].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[..4].try_into().unwrap())
}

#[test]
fn delays_each_frame_and_keeps_bytes_and_order() {
    let h = Harness::start(&["--delay", "20ms"]);
    // Receive on a thread of its own while sending, so each frame is timed when it arrives.
    let outer_b = h.outer_b.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        (0..40).map_while(|_| recv(&outer_b, Duration::from_secs(2)).map(|f| (Instant::now(), f))).collect::<Vec<_>>()
    });
    let mut sent_at = Vec::new();
    for seq in 0..40u32 {
        sent_at.push(Instant::now());
        send(&h.outer_a, &frame(seq, 60 + seq as usize * 37));
        std::thread::sleep(Duration::from_micros(700));
    }
    let received = reader.join().unwrap();
    assert_eq!(received.len(), 40);
    let mut delays_us = Vec::new();
    for (seq, (at, got)) in received.iter().enumerate() {
        assert_eq!(got, &frame(seq as u32, 60 + seq * 37), "bytes and order kept");
        delays_us.push(at.duration_since(sent_at[seq]).as_micros() as i64);
    }
    delays_us.sort();
    let median = delays_us[delays_us.len() / 2];
    // Generous: the test machine is shared; the accuracy test measures the real thing.
    assert!((19_500..22_000).contains(&median), "median one-way delay {median} us: {delays_us:?}");
    assert!(delays_us[0] >= 19_900, "a frame left early: {delays_us:?}");
    let (fwd, rev) = h.stop();
    assert_eq!((fwd.frames_in, fwd.frames_out), (40, 40));
    assert_eq!(rev.frames_in, 0);
    assert!(fwd.late_us_max >= fwd.late_us_p50, "{fwd:?}");
}

#[test]
fn the_bottleneck_spaces_frames_at_the_rate() {
    // 1514 B at 10 Mbit/s = 1211.2 us per frame.
    let h = Harness::start(&["--rate", "10M", "--queue", "1MB"]);
    let n = 60u32;
    for seq in 0..n {
        send(&h.outer_a, &frame(seq, 1514));
    }
    let first = recv(&h.outer_b, Duration::from_secs(2)).expect("first");
    let t0 = Instant::now();
    assert_eq!(seq_of(&first), 0);
    for seq in 1..n {
        let got = recv(&h.outer_b, Duration::from_secs(2)).expect("frame");
        assert_eq!(seq_of(&got), seq);
    }
    let span_us = t0.elapsed().as_micros() as f64;
    let expected_us = (n - 1) as f64 * 1211.2;
    assert!((span_us / expected_us - 1.0).abs() < 0.05, "{span_us} us for {expected_us} us");
    let (fwd, _) = h.stop();
    assert_eq!(fwd.bytes_out, n as u64 * 1514);
    assert_eq!(fwd.queue_drops, 0);
}

#[test]
fn a_full_queue_drops_and_counts() {
    // 10 Mbit/s, a queue of 5 frames: of a burst of 40 only the first few pass.
    let h = Harness::start(&["--rate", "10M", "--queue", "7570B"]);
    for seq in 0..40u32 {
        send(&h.outer_a, &frame(seq, 1514));
    }
    let mut got = Vec::new();
    while let Some(f) = recv(&h.outer_b, Duration::from_millis(300)) {
        got.push(seq_of(&f));
    }
    let (fwd, _) = h.stop();
    assert_eq!(fwd.frames_in, 40);
    assert_eq!(fwd.frames_out as usize, got.len());
    assert_eq!(fwd.queue_drops + fwd.frames_out, 40, "{fwd:?}");
    // The sender's writes are paced by the socketpair's queue, so a few frames find room as the queue drains.
    assert!((5..20).contains(&got.len()), "{got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order kept: {got:?}");
}

#[test]
fn reverse_direction_has_its_own_loss() {
    let h = Harness::start(&["--reverse-loss", "50%", "--seed", "3"]);
    for seq in 0..400u32 {
        send(&h.outer_b, &frame(seq, 100));
        if seq % 8 == 7 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut delivered = 0u64;
    while recv(&h.outer_a, Duration::from_millis(200)).is_some() {
        delivered += 1;
    }
    let (fwd, rev) = h.stop();
    assert_eq!(fwd.frames_in, 0);
    assert_eq!(rev.frames_in, 400);
    assert_eq!(rev.frames_out, delivered);
    assert_eq!(rev.lost_random + rev.frames_out, 400);
    assert!((140..260).contains(&rev.lost_random), "{rev:?}");
}

#[test]
fn reordered_frames_arrive_late_and_are_counted() {
    let h = Harness::start(&["--reorder", "20%", "--reorder-delay", "5ms"]);
    for seq in 0..200u32 {
        send(&h.outer_a, &frame(seq, 200));
        std::thread::sleep(Duration::from_micros(100));
    }
    let mut got = Vec::new();
    while let Some(f) = recv(&h.outer_b, Duration::from_millis(200)) {
        got.push(seq_of(&f));
    }
    let (fwd, _) = h.stop();
    assert_eq!(got.len(), 200);
    let out_of_order = got.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(out_of_order > 10, "{out_of_order} inversions");
    assert!((20..70).contains(&fwd.reordered), "{fwd:?}");
}

#[test]
fn oversize_frames_are_counted_and_forwarded_whole() {
    let h = Harness::start(&[]);
    let big = frame(1, 9_000);
    send(&h.outer_a, &big);
    send(&h.outer_a, &frame(2, 64));
    assert_eq!(recv(&h.outer_b, Duration::from_secs(1)).as_deref(), Some(&big[..]));
    assert_eq!(seq_of(&recv(&h.outer_b, Duration::from_secs(1)).unwrap()), 2);
    let (fwd, _) = h.stop();
    assert_eq!((fwd.oversize, fwd.frames_out, fwd.truncated), (1, 2, 0));
}

#[test]
fn a_small_pool_drops_instead_of_blocking() {
    // 256 frames, 128 of them armed in the receive batches: a 100 ms delay holds at most 128 more.
    let h = Harness::start(&["--delay", "100ms", "--pool-frames", "256"]);
    for seq in 0..300u32 {
        send(&h.outer_a, &frame(seq, 100));
    }
    let mut delivered = 0u64;
    while recv(&h.outer_b, Duration::from_millis(400)).is_some() {
        delivered += 1;
    }
    let (fwd, _) = h.stop();
    assert_eq!(fwd.frames_out, delivered);
    assert_eq!(fwd.pool_drops + fwd.frames_out, 300, "{fwd:?}");
    assert!(fwd.pool_drops >= 300 - 128, "{fwd:?}");
}

#[test]
fn pool_sizing() {
    let cfg = |extra: &[&str]| {
        let mut argv = vec!["--a", "a", "--b", "b"];
        argv.extend_from_slice(extra);
        match args::parse(argv) {
            Ok(Command::Run(cfg)) => *cfg,
            other => panic!("{other:?}"),
        }
    };
    let slot = slot_bytes_for_mtu(1500);
    assert_eq!(slot, 1536);
    assert_eq!(slot_bytes_for_mtu(9000), 9024);
    // 1 Gbit/s, 50 ms each way, 100 ms queue: (125 MB/s x 56.05 ms + 12.5 MB) / 1514 B ~ 12.9k frames,
    // doubled for small frames, for two directions.
    let n = default_pool_frames(&cfg(&["--rate", "1G", "--delay", "50ms", "--queue", "100ms"]), 1500, slot);
    assert!((50_000..54_000).contains(&n), "{n}");
    // A jumbo-frame link counts 1514-byte frames too (it may carry them), in bigger slots.
    let jumbo = default_pool_frames(&cfg(&["--rate", "1G", "--delay", "50ms", "--queue", "100ms"]), 9000, 9024);
    assert_eq!(jumbo, n);
    // The cap: 1 GiB of slots.
    let n = default_pool_frames(&cfg(&["--rate", "100G", "--delay", "1s"]), 1500, slot);
    assert_eq!(n as u64, (1u64 << 30) / 1536);
    // Nothing configured still leaves room beyond the receive batches.
    assert!(default_pool_frames(&cfg(&[]), 1500, slot) as usize > 2 * BATCH + 1000);
}
