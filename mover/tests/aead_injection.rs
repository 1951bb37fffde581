//! An attacker on the path of a live encrypted transfer (loopback only).
//!
//! A man in the middle relays the control connection (rewriting the receiver's UDP port in `Accept` to its
//! own) and every datagram in both directions, and injects into the data stream: tampered copies, truncated
//! copies, exact replays, originals held back until they are older than the replay window, datagrams sealed
//! with a wrong key, and a flood of forgeries; into the feedback stream, tampered copies and replays. Every
//! injected datagram must be dropped and counted under its reason, and the transfer must complete
//! byte-identical, at a rate the flood does not stall.

use mover::net::control::read_frame;
use mover::session::serve_on;
use mover::session::{push, PushOptions};
use mover::sim::dataset::{compare_trees, generate_dataset};
use mover::wire::control::ControlMsg;
use mover::wire::{Cipher, CommonHeader, PacketType, Role, Sealer, KEY_LEN, REPLAY_WINDOW};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the man in the middle did, to compare with the receiver's and sender's drop counters.
#[derive(Debug, Default)]
struct Injected {
    data_seen: u64,
    tampered: u64,
    truncated: u64,
    replayed: u64,
    held_back: u64,
    wrong_key: u64,
    flood: u64,
    feedback_seen: u64,
    feedback_tampered: u64,
    feedback_replayed: u64,
    /// The relay's datagram count when each replay and late original was sent, to tell which came so late
    /// that the receiver may have finished before reading them.
    replay_at: Vec<u64>,
    /// The same for invalid injections (tampered, truncated, wrong key, flood): (count, how many).
    invalid_at: Vec<(u64, u64)>,
}

/// The session parameters the receiver sent in `Accept`, as the relay saw them.
#[derive(Clone, Copy)]
struct Session {
    id: u64,
    server_udp: SocketAddr,
}

/// Relays the control connection from `client` to `server`, handing the session to `on_accept` and
/// rewriting the UDP port to `relay_port`.
fn relay_control(client: TcpStream, server: SocketAddr, relay_port: u16, on_accept: impl FnOnce(Session) + Send) {
    let upstream = TcpStream::connect(server).unwrap();
    let (mut c_read, mut u_write) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    // Client to server: bytes as they are.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let mut on_accept = Some(on_accept);
    let mut body = Vec::new();
    while let Ok(Some(mut msg)) = read_frame(&mut u_read, &mut body) {
        if let ControlMsg::Accept { session_id, udp_port, key } = msg {
            let server_udp = SocketAddr::new(server.ip(), udp_port);
            (on_accept.take().expect("one accept"))(Session { id: session_id, server_udp });
            msg = ControlMsg::Accept { session_id, udp_port: relay_port, key };
        }
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        if c_write.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = c_write.shutdown(std::net::Shutdown::Both);
}

/// Relays datagrams between the sender and the receiver through `sock`, injecting as it goes.
fn relay_datagrams(
    sock: UdpSocket,
    session: Session,
    cipher: Cipher,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Injected>>,
) {
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    let mut history: Vec<Vec<u8>> = Vec::new();
    let mut held: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut forger = Sealer::new(cipher, &[0x42; KEY_LEN], session.id, Role::Sender);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (len, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let d = buf[..len].to_vec();
        let mut log = log.lock().unwrap();
        if from == session.server_udp {
            // Feedback, receiver to sender.
            let Some(to) = client else { continue };
            log.feedback_seen += 1;
            let _ = sock.send_to(&d, to);
            if log.feedback_seen % 20 == 5 {
                let mut t = d.clone();
                let at = t.len() / 2;
                t[at] ^= 0x80;
                let _ = sock.send_to(&t, to);
                log.feedback_tampered += 1;
            }
            if log.feedback_seen % 20 == 15 {
                let _ = sock.send_to(&d, to);
                log.feedback_replayed += 1;
            }
            continue;
        }
        client.get_or_insert(from);
        log.data_seen += 1;
        n += 1;
        let to = session.server_udp;
        // Every 97th original is held back until the replay window has moved past it: a reordering the
        // receiver cannot tell from a replay, so it refuses it, and the block is repaired by a NAK.
        if n % 97 == 50 && n < 20_000 {
            held.push((n + REPLAY_WINDOW + 200, d.clone()));
        } else {
            let _ = sock.send_to(&d, to);
        }
        while held.first().is_some_and(|(due, _)| *due <= n) {
            let (_, late) = held.remove(0);
            let _ = sock.send_to(&late, to);
            log.held_back += 1;
            log.replay_at.push(n);
        }
        match n % 101 {
            7 => {
                let mut t = d.clone();
                let at = 20 + (n as usize * 13) % (t.len() - 20);
                t[at] ^= 0x01;
                let _ = sock.send_to(&t, to);
                log.tampered += 1;
                log.invalid_at.push((n, 1));
            }
            17 => {
                let _ = sock.send_to(&d[..d.len() - 1 - (n as usize % 40)], to);
                log.truncated += 1;
                log.invalid_at.push((n, 1));
            }
            37 if !history.is_empty() => {
                // An exact copy of a datagram the receiver accepted a while ago (still inside the window).
                let old = &history[(n as usize / 101) % history.len()];
                let _ = sock.send_to(old, to);
                log.replayed += 1;
                log.replay_at.push(n);
            }
            57 => {
                // Same session and a fresh packet number, sealed with a key that is not the session's.
                let mut f = d.clone();
                let pn = (1u64 << 22) + n;
                CommonHeader { packet_type: PacketType::Data, session_id: session.id, packet_number: pn }.emit(&mut f);
                forger.seal(&mut f);
                let _ = sock.send_to(&f, to);
                log.wrong_key += 1;
                log.invalid_at.push((n, 1));
            }
            _ => {}
        }
        if n % 101 == 80 {
            history.clear();
        }
        if n % 101 == 1 && n % 3 == 0 && n % 97 != 50 {
            history.push(d.clone());
        }
        // A flood of forgeries: 200 per 1000 originals, garbage bodies under the session's id.
        if n % 1000 == 500 {
            for i in 0..200u64 {
                let mut f = vec![(i as u8).wrapping_mul(31); d.len()];
                let pn = n + 10 + i;
                CommonHeader { packet_type: PacketType::Data, session_id: session.id, packet_number: pn }.emit(&mut f);
                let _ = sock.send_to(&f, to);
            }
            log.flood += 200;
            log.invalid_at.push((n, 200));
        }
    }
}

fn run_attacked_transfer(cipher: Cipher) {
    let dir = tempdir(&format!("aead-{}", cipher.name()));
    let src = dir.join("src");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    generate_dataset(&src, 24 << 20).unwrap();

    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let root2 = root.clone();
    let serve = std::thread::spawn(move || serve_on(server, &root2, true, false));

    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay_port = udp.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Injected::default()));
    let (stop2, log2) = (stop.clone(), log.clone());
    let control = std::thread::spawn(move || {
        let (client, _) = relay.accept().unwrap();
        let mut datagrams = None;
        relay_control(client, server_addr, relay_port, |session| {
            datagrams = Some(std::thread::spawn(move || relay_datagrams(udp, session, cipher, stop2, log2)));
        });
        datagrams
    });

    let mut opts = PushOptions::new(vec![src.clone()], format!("mover://{relay_addr}/dest"), 400_000_000);
    opts.cipher = cipher;
    opts.net = mover::net::xdp_path::NetChoice::Udp;
    // 1472-byte datagrams, not loopback's discovered 8972: the attack's volume is counted in datagrams.
    opts.mtu = Some(1500);
    opts.connect_timeout = Duration::from_secs(5);
    let overflows_before = udp_rcvbuf_errors();
    let report = push(&opts);
    let overflows = udp_rcvbuf_errors() - overflows_before;
    stop.store(true, Ordering::Relaxed);
    let datagrams = control.join().unwrap();
    if let Some(d) = datagrams {
        d.join().unwrap();
    }
    serve.join().unwrap().unwrap_or_else(|e| panic!("{cipher}: server: {e}"));
    let log = log.lock().unwrap();
    let r = &report.receiver;
    eprintln!("{cipher}: {log:?}\n{}", report.to_json());
    assert!(report.error.is_none() && report.verified, "{cipher}: {:?}", report.error);
    compare_trees(&src, &root.join("dest/src")).unwrap_or_else(|e| panic!("{cipher}: {e}"));

    assert!(log.data_seen > 10_000 && log.flood >= 2_000, "{cipher}: the attack ran: {log:?}");
    // Injections may go uncounted for two reasons, and only these: ones sent among the transfer's last
    // datagrams (the receiver can finish before reading them, as with feedback below), and ones a full
    // loopback socket dropped under the flood (the kernel's UDP `RcvbufErrors`, counted over the host, so an
    // upper bound).
    let in_tail = |at: u64| at + 64 > log.data_seen;
    let invalid_tail: u64 = log.invalid_at.iter().filter(|(at, _)| in_tail(*at)).map(|(_, k)| k).sum();
    let tail = log.replay_at.iter().filter(|&&at| in_tail(at)).count() as u64;
    // Tampered, wrong-key and flooded datagrams fail authentication; truncated ones fail it or are too
    // short to hold a tag. Nothing else was invalid on loopback.
    let forged = log.tampered + log.wrong_key + log.flood;
    let may_miss_invalid = invalid_tail + overflows;
    assert!(
        r.dropped_auth + may_miss_invalid >= forged,
        "{cipher}: {} auth drops for {forged} forgeries",
        r.dropped_auth
    );
    assert!(
        r.dropped_invalid <= forged + log.truncated && r.dropped_invalid + may_miss_invalid >= forged + log.truncated,
        "{cipher}: {} invalid drops for {} injected ({invalid_tail} in the last 64 datagrams, {overflows} socket \
         overflows)",
        r.dropped_invalid,
        forged + log.truncated
    );
    // Replays and held-back originals are authentic, and refused by the replay window.
    let may_miss = tail + overflows;
    assert!(
        r.dropped_replayed + may_miss >= log.replayed + log.held_back,
        "{cipher}: {} replay drops for {} replays and {} late originals ({tail} in the last 64 datagrams, \
         {overflows} socket overflows)",
        r.dropped_replayed,
        log.replayed,
        log.held_back
    );
    // The late originals' blocks were repaired.
    assert!(report.packets_retransmitted >= log.held_back);
    // Feedback that arrives after the sender finished is not read: the last few injections may go uncounted.
    assert!(
        report.feedback_dropped_auth <= log.feedback_tampered
            && report.feedback_dropped_auth + 2 >= log.feedback_tampered,
        "{cipher}: tampered feedback refused"
    );
    assert!(report.feedback_dropped_replayed + 2 >= log.feedback_replayed, "{cipher}: replayed feedback refused");
    assert!(log.feedback_tampered > 5 && log.held_back > 50, "{cipher}: the attack ran: {log:?}");
    // The flood did not stall the transfer: it ran at a good share of the asked rate.
    assert!(report.goodput_bps > 0.3 * 400e6, "{cipher}: {} bit/s under attack", report.goodput_bps);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host's count of UDP datagrams dropped because a socket's receive buffer was full.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0))
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mover-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn aes256gcm_transfer_survives_an_attacker_on_the_path() {
    run_attacked_transfer(Cipher::Aes256Gcm);
}

#[test]
fn chacha20poly1305_transfer_survives_an_attacker_on_the_path() {
    run_attacked_transfer(Cipher::ChaCha20Poly1305);
}
