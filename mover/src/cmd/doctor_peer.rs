//! `mover doctor --peer mover://HOST[:PORT]`: the path to a running daemon. The round-trip time is that of
//! TCP connects to the daemon's port (a SYN and its SYN-ACK: one round trip, the best of several); then a
//! real push of generated data, sized to take about `--peer-seconds` at the speed this host measured, gives
//! the goodput (and the protocol's own RTT estimate) over the whole path.
//!
//! The pushed file lands on the peer under `mover-doctor-<pid>/` below the URL's directory: the daemon's
//! root gains that file (the doctor changes nothing on *this* host).

use crate::connect::{ClientAuth, MoverUrl};
use crate::session::{push, PushOptions};
use std::fs::{self, File};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// TCP connects made to time the round trip.
const CONNECTS: usize = 5;
/// Bounds of the pushed file: enough for the rate to settle, not more than a short run's worth.
const MIN_PUSH_BYTES: u64 = 8 << 20;
const MAX_PUSH_BYTES: u64 = 2 << 30;
/// The push's rate ceiling: none in practice (the fair policy finds the path's).
const NO_CEILING_BPS: u64 = 400_000_000_000;

/// What was measured against the peer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerResult {
    /// The daemon's address.
    pub addr: SocketAddr,
    /// Best TCP connect time, milliseconds.
    pub rtt_ms: f64,
    /// Median TCP connect time, milliseconds.
    pub rtt_median_ms: f64,
    /// Bytes pushed.
    pub bytes: u64,
    /// Goodput of the push, bits per second.
    pub goodput_bps: f64,
    /// The push's duration.
    pub seconds: f64,
    /// The protocol's smoothed RTT at the end, milliseconds.
    pub protocol_rtt_ms: f64,
    /// Packets retransmitted / packets sent.
    pub retransmitted: f64,
}

/// Times connects to `url`'s daemon and pushes about `seconds` worth (at `expect_bps`, bits/s) of generated
/// data from a temporary directory in `dir`.
pub fn measure(url: &str, auth: ClientAuth, seconds: f64, expect_bps: f64, dir: &Path) -> Result<PeerResult, String> {
    let u = MoverUrl::parse(url).map_err(|e| e.to_string())?;
    let addr = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .map_err(|e| format!("--peer: cannot resolve '{}': {e}", u.host))?
        .next()
        .ok_or_else(|| format!("--peer: '{}' has no address", u.host))?;
    let mut times = Vec::new();
    for _ in 0..CONNECTS {
        let start = Instant::now();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("--peer: connecting to {addr}: {e} (is `mover serve` running there?)"))?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        drop(s);
    }
    times.sort_by(f64::total_cmp);

    let bytes = ((expect_bps / 8.0 * seconds) as u64).clamp(MIN_PUSH_BYTES, MAX_PUSH_BYTES) & !((1 << 20) - 1);
    let work = dir.join(format!(".mover-doctor-peer-{}", std::process::id()));
    let result = push_generated(&u, addr, auth, bytes, &work);
    let _ = fs::remove_dir_all(&work);
    let report = result?;
    let sent = report.packets_sent.max(1) as f64;
    Ok(PeerResult {
        addr,
        rtt_ms: times[0],
        rtt_median_ms: times[times.len() / 2],
        bytes: report.bytes,
        goodput_bps: report.goodput_bps,
        seconds: report.seconds,
        protocol_rtt_ms: report.rtt_ms,
        retransmitted: report.packets_retransmitted as f64 / sent,
    })
}

fn push_generated(
    u: &MoverUrl,
    addr: SocketAddr,
    auth: ClientAuth,
    bytes: u64,
    work: &Path,
) -> Result<crate::session::Report, String> {
    let src = work.join(format!("mover-doctor-{}", std::process::id()));
    fs::create_dir_all(&src).map_err(|e| format!("creating '{}': {e}", src.display()))?;
    let file = src.join("doctor.bin");
    let mut f = File::create(&file).map_err(|e| format!("creating '{}': {e}", file.display()))?;
    // Random bytes (one MiB repeated with a counter): nothing on the path can compress them away.
    let mut block = vec![0u8; 1 << 20];
    for chunk in block.chunks_mut(32) {
        chunk.copy_from_slice(&crate::random::random_bytes::<32>().map_err(|e| e.to_string())?);
    }
    for i in 0..bytes >> 20 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&block).map_err(|e| format!("writing '{}': {e}", file.display()))?;
    }
    f.sync_all().map_err(|e| format!("writing '{}': {e}", file.display()))?;
    drop(f);
    let host = if addr.is_ipv6() { format!("[{}]", addr.ip()) } else { addr.ip().to_string() };
    let dest = format!("mover://{host}:{}/{}", addr.port(), u.path.trim_matches('/'));
    let mut opts = PushOptions::new(vec![src], dest, NO_CEILING_BPS);
    opts.policy = crate::proto::policy::Policy::Fair;
    opts.auth = auth;
    opts.connect_timeout = Duration::from_secs(5);
    let report = push(&opts);
    match &report.error {
        Some(e) => Err(format!("--peer: the test push failed: {e}")),
        None => Ok(report),
    }
}
