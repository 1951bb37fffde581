//! TLS 1.3 under the control channel (docs/decisions/0006-tls-control-channel.md).
//!
//! A rustls connection cannot be split between the channel's reader thread and the caller's writing thread,
//! so one *pump* thread owns the TCP socket and the rustls state, and the [`ControlChannel`] is built over
//! one end of a `UnixStream` pair whose other end the pump serves:
//!
//! ```text
//!   ControlChannel (reader thread, caller's writes) <-> UnixStream pair <-> pump: rustls <-> TcpStream
//! ```
//!
//! The pump polls both sockets (non-blocking) and moves bytes while it can: plaintext from the channel is
//! encrypted and written to TCP, records from TCP are decrypted and handed to the channel. Backpressure is
//! kept both ways (no plaintext is taken while TLS output is pending; no TLS is read while decrypted bytes
//! wait for the channel). When the channel closes, the pump sends `close_notify`, half-closes TCP and drains
//! what the peer still sends for a moment (so a refusal it just wrote is not destroyed by a reset); when the
//! peer closes, the channel's reader sees the end. A TLS failure reaches the channel's reader as a read
//! error carrying rustls' reason (say, the peer's alert), not as a clean end.
//!
//! The handshake runs before the pump starts, blocking with a time limit, so its errors come back to the
//! caller of [`client_channel`] or [`server_channel`] directly.

use super::control::ControlChannel;
use super::tls_words::{after_handshake_in_words, handshake_in_words, Checking};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore, ServerConfig, ServerConnection,
    SignatureScheme,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the pump keeps reading (and discarding) after it has closed its side, so that a refusal
/// written just before is read by the peer instead of being destroyed by a TCP reset.
const LINGER: Duration = Duration::from_secs(2);
/// Decrypted bytes the pump holds for a channel that does not read (then it stops reading TCP).
const PLAINTEXT_HELD_MAX: usize = 256 << 10;

/// The ring provider (docs/decisions/0006): TLS 1.3 only, since the crate is built without `tls12`.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading certificates from '{}': {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading certificates from '{}': {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("'{}' holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Loads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("reading a private key from '{}': {e}", path.display()))
}

fn root_store(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| format!("'{}': not a usable trust anchor: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// The daemon's TLS configuration: its certificate chain and key; with `client_ca`, client certificates
/// issued by it are verified, and required unless `certs_optional` (then a client may authenticate with a
/// token instead; one that presents a certificate must still present a valid one).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    certs_optional: bool,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider());
            let v = if certs_optional { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("--client-ca '{}': {e}", ca.display()))?)
        }
    };
    let mut config = builder
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    // One connection per session; resumption buys nothing.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client's TLS configuration: trust anchors for the server's certificate (`ca`: CA certificates, or the
/// server's own self-signed certificate, which is then pinned), and optionally a client certificate chain
/// and key.
pub fn client_config(ca: &Path, cert_key: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, String> {
    let pinned = load_certs(ca)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider())
        .build()
        .map_err(|e| format!("--ca '{}': {e}", ca.display()))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { pinned, webpki }));
    let config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("--cert/--key: {e}"))?,
    };
    Ok(Arc::new(config))
}

/// Verifies the server's certificate: accepted if it is exactly one of the `--ca` certificates (a daemon's
/// self-signed certificate, pinned like an SSH host key: no name or date check, since the user named this
/// very certificate), otherwise by the usual chain, name and date checks against `--ca` as trust anchors
/// (which refuse a self-signed certificate as "CA used as end entity"). Either way the handshake's signature
/// is verified with the certificate's key, so the server must hold the private key.
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Runs the client side of the handshake on a connected stream (within `timeout`) and returns the control
/// channel over it. `server_name` is what the server's certificate must name (the URL's host: a DNS name or
/// an IP address); `ca` is the `--ca` file `config` was made from (for the words of a failure).
pub fn client_channel(
    stream: TcpStream,
    config: Arc<ClientConfig>,
    server_name: &str,
    ca: &Path,
    timeout: Duration,
) -> Result<ControlChannel, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("'{server_name}' cannot be checked against a certificate: {e}"))?;
    let conn = ClientConnection::new(config, name).map_err(|e| format!("TLS setup: {e}"))?;
    let checking = Checking::Daemon { ca, host: server_name };
    let (ch, _) = start(stream, Connection::Client(conn), timeout, checking)?;
    Ok(ch)
}

/// Runs the server side of the handshake on an accepted stream (within `timeout`) and returns the control
/// channel and the client's verified certificate chain (empty when it presented none). `client_ca` is the
/// `--client-ca` file `config` was made from, if any (for the words of a failure).
pub fn server_channel(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    client_ca: Option<&Path>,
    timeout: Duration,
) -> Result<(ControlChannel, Vec<CertificateDer<'static>>), String> {
    let conn = ServerConnection::new(config).map_err(|e| format!("TLS setup: {e}"))?;
    start(stream, Connection::Server(conn), timeout, Checking::Client { client_ca })
}

fn start(
    mut tcp: TcpStream,
    mut conn: Connection,
    timeout: Duration,
    checking: Checking,
) -> Result<(ControlChannel, Vec<CertificateDer<'static>>), String> {
    let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    if let Err(e) = handshake(&mut tcp, &mut conn, timeout, checking) {
        linger_close(&mut tcp);
        return Err(e);
    }
    let peer_certs = conn.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
    tcp.set_read_timeout(None).and_then(|()| tcp.set_write_timeout(None)).map_err(|e| e.to_string())?;
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socket pair: {e}"))?;
    ours.set_nonblocking(true).map_err(|e| e.to_string())?;
    let failure = Arc::new(Mutex::new(None));
    let pump = Pump { tcp, conn, local: ours, failure: failure.clone() };
    std::thread::Builder::new().name("mover-tls".into()).spawn(move || pump.run()).map_err(|e| e.to_string())?;
    let reader = PumpReader { sock: theirs.try_clone().map_err(|e| e.to_string())?, failure };
    let closer = theirs.try_clone().map_err(|e| e.to_string())?;
    let close = move || {
        let _ = closer.shutdown(Shutdown::Both);
    };
    let ch = ControlChannel::from_parts(reader, theirs, close, peer, local).map_err(|e| e.to_string())?;
    // Small until the daemon admits the session (`session::admit` raises it).
    ch.set_backlog_limit(crate::net::control::UNADMITTED_QUEUE_BYTES);
    Ok((ch, peer_certs))
}

/// Blocking handshake with a deadline: each read and write is limited by what is left of `timeout`.
fn handshake(tcp: &mut TcpStream, conn: &mut Connection, timeout: Duration, checking: Checking) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        tcp.set_read_timeout(Some(left)).and_then(|()| tcp.set_write_timeout(Some(left))).map_err(|e| e.to_string())?;
        if let Err(e) = conn.complete_io(tcp) {
            return Err(explain_handshake_error(&e, timeout, checking));
        }
    }
    // The client's Finished (and a server's first records) may still be buffered.
    while conn.wants_write() {
        conn.write_tls(tcp).map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(())
}

/// Closes after a failed handshake so that our alert reaches the peer: half-close, then read and discard what
/// it still sends (for at most [`LINGER`]), since closing with unread bytes would reset the connection and
/// destroy the alert in the peer's receive buffer.
fn linger_close(tcp: &mut TcpStream) {
    let _ = tcp.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if tcp.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn explain_handshake_error(e: &io::Error, timeout: Duration, checking: Checking) -> String {
    // rustls' own error, when it is one, says which certificate failed which check.
    let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if let Some(words) = rustls_error.and_then(|r| handshake_in_words(r, checking)) {
        return format!("TLS handshake: {words}");
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("TLS handshake: no answer within {} s", timeout.as_secs_f64())
        }
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            format!(
                "TLS handshake: the peer closed the connection ({e}): it does not speak TLS (a daemon started with \
                 --insecure-no-auth: pass --insecure-no-auth here too, on loopback or a trusted network only), or it \
                 refused the connection (too many from this address)"
            )
        }
        _ => {
            let text = e.to_string();
            if text.contains("corrupt message") || text.contains("InvalidContentType") {
                format!(
                    "TLS handshake: the peer does not speak TLS ({text}): one side runs with --insecure-no-auth and \
                     the other does not (pass it on both, or neither)"
                )
            } else if text.contains("invalid peer certificate") {
                format!("TLS handshake: {text}: the peer's certificate is not trusted (check --ca, or the server's --client-ca)")
            } else {
                format!("TLS handshake: {text}")
            }
        }
    }
}

/// The channel's read half: the socket pair's end, and the reason the pump failed, if it did, reported
/// as a read error where the stream ends.
struct PumpReader {
    sock: UnixStream,
    failure: Arc<Mutex<Option<String>>>,
}

impl Read for PumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // The pump stores its failure before it shuts the pair, so it is visible here.
            if let Some(why) = self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return Err(io::Error::other(why));
            }
        }
        Ok(n)
    }
}

/// Owns the TCP socket and the TLS state (see the module documentation).
struct Pump {
    tcp: TcpStream,
    conn: Connection,
    local: UnixStream,
    failure: Arc<Mutex<Option<String>>>,
}

impl Pump {
    fn run(mut self) {
        let mut held: Vec<u8> = Vec::with_capacity(16 << 10);
        let mut buf = vec![0u8; 16 << 10];
        // The channel closed its side: close_notify queued, no more plaintext to take.
        let mut local_done = false;
        // The peer's plaintext is over (close_notify, or the connection ended).
        let mut peer_done = false;
        // TCP said end of stream.
        let mut tcp_eof = false;
        let mut local_write_shut = false;
        let mut linger_until: Option<Instant> = None;
        loop {
            let mut progress = false;
            // Decrypted bytes -> held.
            while !peer_done && held.len() < PLAINTEXT_HELD_MAX {
                match self.conn.reader().read(&mut buf) {
                    Ok(0) => peer_done = true,
                    Ok(n) => {
                        held.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return self.fail("TLS: the peer closed the connection without close_notify".into())
                    }
                    Err(e) => return self.fail(format!("TLS: {e}")),
                }
            }
            // held -> channel.
            while !held.is_empty() {
                match self.local.write(&held) {
                    Ok(n) => {
                        held.drain(..n);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The channel is gone: nobody wants what the peer still sends.
                    Err(_) => {
                        held.clear();
                        local_done_now(&mut self.conn, &mut local_done);
                    }
                }
            }
            if peer_done && held.is_empty() && !local_write_shut {
                let _ = self.local.shutdown(Shutdown::Write);
                local_write_shut = true;
            }
            // Channel -> TLS, only while no TLS output is pending (backpressure).
            while !local_done && !self.conn.wants_write() {
                match self.local.read(&mut buf) {
                    Ok(0) => local_done_now(&mut self.conn, &mut local_done),
                    Ok(n) => {
                        if let Err(e) = self.conn.writer().write_all(&buf[..n]) {
                            return self.fail(format!("TLS: {e}"));
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => local_done_now(&mut self.conn, &mut local_done),
                }
            }
            // TLS -> TCP.
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.tcp) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return self.fail(format!("TLS: writing to the peer: {e}")),
                }
            }
            if local_done && !self.conn.wants_write() && linger_until.is_none() {
                let _ = self.tcp.shutdown(Shutdown::Write);
                linger_until = Some(Instant::now() + LINGER);
            }
            // TCP -> TLS.
            if !peer_done && !tcp_eof && self.conn.wants_read() {
                match self.conn.read_tls(&mut self.tcp) {
                    // The reader above then reports whether close_notify came first.
                    Ok(0) => {
                        tcp_eof = true;
                        progress = true;
                    }
                    Ok(_) => {
                        if let Err(e) = self.conn.process_new_packets() {
                            // Send our alert, if any, before giving up.
                            let _ = self.conn.write_tls(&mut self.tcp);
                            let client = matches!(self.conn, Connection::Client(_));
                            return self.fail(format!("TLS: {}", after_handshake_in_words(&e, client)));
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return self.fail(format!("TLS: reading from the peer: {e}")),
                }
            }
            if let Some(until) = linger_until {
                if peer_done || tcp_eof || Instant::now() >= until {
                    return;
                }
            }
            if progress {
                continue;
            }
            if local_done && peer_done {
                return;
            }
            self.wait(&held, local_done, peer_done || tcp_eof, linger_until);
        }
    }

    /// Sleeps until one of the sockets can make progress (or the linger time is over).
    fn wait(&self, held: &[u8], local_done: bool, peer_done: bool, linger_until: Option<Instant>) {
        let mut tcp_events = 0;
        if !peer_done && self.conn.wants_read() {
            tcp_events |= libc::POLLIN;
        }
        if self.conn.wants_write() {
            tcp_events |= libc::POLLOUT;
        }
        let mut local_events = 0;
        if !local_done && !self.conn.wants_write() {
            local_events |= libc::POLLIN;
        }
        if !held.is_empty() {
            local_events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd { fd: self.tcp.as_raw_fd(), events: tcp_events, revents: 0 },
            libc::pollfd { fd: self.local.as_raw_fd(), events: local_events, revents: 0 },
        ];
        let timeout_ms = match linger_until {
            Some(t) => t.saturating_duration_since(Instant::now()).as_millis().clamp(1, 1000) as i32,
            // A bound, so a missed wake-up (none is expected) costs a second, never a hang.
            None => 1000,
        };
        // Safety: `fds` is a valid array of two pollfd structures for the duration of the call, and both
        // descriptors stay open (owned by self) until it returns.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    }

    fn fail(self, why: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        let _ = self.local.shutdown(Shutdown::Both);
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

fn local_done_now(conn: &mut Connection, local_done: &mut bool) {
    if !*local_done {
        conn.send_close_notify();
        *local_done = true;
    }
}

#[cfg(test)]
#[path = "../../tests/common/certs.rs"]
#[allow(dead_code)]
mod certs;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ControlEvent;
    use crate::testing::TempDir;
    use crate::wire::control::ControlMsg;
    use std::net::TcpListener;

    const T: Duration = Duration::from_secs(10);

    /// Large frames both ways at once, through both pumps: neither side may stall while the other writes
    /// (each side's writes only finish if the other side's pump keeps reading), and the order is kept.
    #[test]
    fn large_frames_cross_both_ways_at_once_and_close_cleanly() {
        let dir = TempDir::new("tls-pump");
        let c = certs::make(dir.path());
        let server_cfg = server_config(&c.server_cert, &c.server_key, Some(&c.ca), false).unwrap();
        let client_cfg = client_config(&c.ca, Some((&c.client_cert, &c.client_key))).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const N: u32 = 40;
        let big = |i: u32| ControlMsg::RoundFailed { round: (i % 200) as u8, file_ids: vec![i; 60_000] };
        // Each side writes everything before reading: this only finishes if each pump keeps moving the
        // other side's frames to its channel's reader thread meanwhile.
        let exchange = move |mut ch: ControlChannel| {
            for i in 0..N {
                ch.send(&big(i)).unwrap();
            }
            for i in 0..N {
                match ch.recv_timeout(T) {
                    Some(ControlEvent::Msg(m)) => assert_eq!(m, big(i)),
                    other => panic!("message {i}: {other:?}"),
                }
            }
            ch
        };
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let (ch, certs) = server_channel(stream, server_cfg, None, T).unwrap();
            assert_eq!(certs.len(), 1, "the client's certificate is reported");
            // An admitted session (the daemon raises the backlog when it sends `Accepted`).
            ch.set_backlog_limit(crate::net::control::EVENT_QUEUE_BYTES);
            let mut ch = exchange(ch);
            // The client closes: a clean end, once.
            assert!(matches!(ch.recv_timeout(T), Some(ControlEvent::Closed)));
        });
        let stream = TcpStream::connect(addr).unwrap();
        let ch = client_channel(stream, client_cfg, "127.0.0.1", &c.ca, T).unwrap();
        let ch = exchange(ch);
        drop(ch);
        server.join().unwrap();
    }

    /// One handshake over loopback: the client's and the server's results (errors as their text).
    fn handshake_pair(
        server_cfg: Arc<ServerConfig>,
        client_ca: Option<&Path>,
        client_cfg: Arc<ClientConfig>,
        ca: &Path,
        name: &str,
    ) -> (Result<ControlChannel, String>, Result<ControlChannel, String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client_ca = client_ca.map(Path::to_path_buf);
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            server_channel(stream, server_cfg, client_ca.as_deref(), T).map(|(ch, _)| ch)
        });
        let client = client_channel(TcpStream::connect(addr).unwrap(), client_cfg, name, ca, T);
        (client, server.join().unwrap())
    }

    #[test]
    fn an_untrusted_server_is_refused_in_the_handshake() {
        let dir = TempDir::new("tls-untrusted");
        let c = certs::make(dir.path());
        let server_cfg = server_config(&c.server_cert, &c.server_key, Some(&c.ca), true).unwrap();
        let client_cfg = client_config(&c.other_ca, None).unwrap();
        let (client, server) = handshake_pair(server_cfg, Some(&c.ca), client_cfg, &c.other_ca, "127.0.0.1");
        let e = client.err().unwrap();
        let want = format!("TLS handshake: the daemon's certificate is not signed by --ca '{}'", c.other_ca.display());
        assert!(e.starts_with(&want) && !e.contains("UnknownIssuer"), "{e}");
        let e = server.err().unwrap();
        assert!(
            e.contains("the client does not trust this daemon's certificate") && e.contains("unknown CA alert"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_for_other_names_says_which_names() {
        let dir = TempDir::new("tls-name");
        let c = certs::make(dir.path());
        let server_cfg = server_config(&c.server_cert, &c.server_key, None, true).unwrap();
        let client_cfg = client_config(&c.ca, None).unwrap();
        let (client, _) = handshake_pair(server_cfg, None, client_cfg, &c.ca, "files.invalid");
        let e = client.err().unwrap();
        assert!(e.contains("the daemon's certificate is for 127.0.0.1, localhost, not files.invalid"), "{e}");
    }

    #[test]
    fn a_self_signed_daemon_certificate_not_pinned_is_said_in_words() {
        let dir = TempDir::new("tls-self-signed");
        let c = certs::make(dir.path());
        let server_cfg = server_config(&c.self_signed_cert, &c.self_signed_key, None, true).unwrap();
        let client_cfg = client_config(&c.ca, None).unwrap();
        let (client, _) = handshake_pair(server_cfg, None, client_cfg, &c.ca, "127.0.0.1");
        let e = client.err().unwrap();
        assert!(e.contains(&format!("the daemon's certificate is not signed by --ca '{}'", c.ca.display())), "{e}");
        assert!(!e.contains("Other") && !e.contains("CaUsedAsEndEntity"), "{e}");
    }

    #[test]
    fn the_daemon_names_a_client_certificate_it_refuses() {
        let dir = TempDir::new("tls-client-cert");
        let c = certs::make(dir.path());
        // A certificate from another CA.
        let server_cfg = server_config(&c.server_cert, &c.server_key, Some(&c.ca), true).unwrap();
        let client_cfg = client_config(&c.ca, Some((&c.other_client_cert, &c.other_client_key))).unwrap();
        let (_, server) = handshake_pair(server_cfg, Some(&c.ca), client_cfg, &c.ca, "127.0.0.1");
        let e = server.err().unwrap();
        let want = format!("TLS handshake: the client's certificate is not signed by --client-ca '{}'", c.ca.display());
        assert_eq!(e, want);
        // No certificate where one is required.
        let server_cfg = server_config(&c.server_cert, &c.server_key, Some(&c.ca), false).unwrap();
        let client_cfg = client_config(&c.ca, None).unwrap();
        let (_, server) = handshake_pair(server_cfg, Some(&c.ca), client_cfg, &c.ca, "127.0.0.1");
        let e = server.err().unwrap();
        assert!(e.contains("the client presented no certificate, and this daemon requires one"), "{e}");
    }
}
