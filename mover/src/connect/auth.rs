//! Who may use `mover serve`, and how a client proves it (PROTOCOL.md §3.4, docs/decisions/0006).
//!
//! The control channel runs over TLS 1.3 ([`crate::net::tls`]). The client verifies the daemon's
//! certificate against `--ca`; the daemon knows the client by a verified client certificate (`--client-ca`)
//! or by a per-user token (`--tokens`), sent in the first message inside TLS (type 11). The daemon answers
//! with `Auth::Accepted` (once the session has a place: a busy daemon first sends `Queued`, its place in
//! the queue, which the client prints) or an `Error`, so [`connect_client`] returns only an authenticated
//! and admitted channel, and the session key (in `Accept`) never travels outside TLS. Plain TCP exists only
//! under `--insecure-no-auth`, on both sides.
//!
//! Token file (`--tokens FILE`): one `USER SHA256-HEX` per line, the SHA-256 of the token's bytes in hex;
//! blank lines and lines starting with `#` are ignored. `mover token --user NAME` makes a token and its
//! line; by hand: `t=$(head -c 32 /dev/urandom | xxd -p -c 64); printf '%s' "$t" | sha256sum`.
//! The daemon stores only hashes and compares them in constant time.

use super::delegation::{Delegations, DELEGATED_IDENTITY_PREFIX, DELEGATE_USER_PREFIX};
use super::error::ConnectError;
use crate::net::tls_words::{CLIENT_CERT_REFUSED, CLIENT_CERT_REQUIRED};
use crate::net::{tls, ControlChannel};
use crate::wire::control::{AuthMsg, ControlMsg, Secret};
use rustls::{ClientConfig, ServerConfig};
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Printed on stderr at every start of a daemon without authentication.
pub const INSECURE_WARNING: &str =
    "mover serve: WARNING: --insecure-no-auth: anyone who can reach this port can write \
     under --root, and session keys cross the network in clear. Use it only on loopback or a trusted test network; \
     otherwise pass --tls-cert, --tls-key and --client-ca and/or --tokens.";
/// How long [`accept_client`] waits for the TLS handshake and the client's credentials, together.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest user name in a token file, in bytes.
pub const MAX_USER_LEN: usize = 64;

/// How the daemon authenticates clients.
#[derive(Clone)]
pub enum ServerAuth {
    /// Plain TCP, nobody authenticated (`--insecure-no-auth`).
    Insecure,
    /// TLS 1.3 with client certificates and/or tokens.
    Tls(Arc<ServerTls>),
}

/// The daemon's TLS configuration and credentials.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    tokens: Option<TokenTable>,
    client_certs: bool,
    /// The `--client-ca` file, for the words of a refused client certificate.
    client_ca: Option<PathBuf>,
    /// A relay's spool (`mover relay`): a receiver may authenticate as `fetch-TRANSFER` with the
    /// transfer's fetch capability, whose SHA-256 the sender stored there (`TRANSFER/.fetch`).
    fetch_spool: Option<PathBuf>,
    /// One-time delegations for third-party pushes (`mover copy`): the sending end authenticates as
    /// `delegate-TRANSFER` with the secret (PROTOCOL.md §9).
    delegations: Arc<Delegations>,
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAuth::Insecure => write!(f, "Insecure"),
            ServerAuth::Tls(t) => write!(
                f,
                "Tls {{ client_certs: {}, token_users: {} }}",
                t.client_certs,
                t.tokens.as_ref().map_or(0, |t| t.users.len())
            ),
        }
    }
}

impl ServerAuth {
    /// TLS with the daemon's `cert` and `key`; clients authenticate with a certificate issued by
    /// `client_ca`, or a token from the `tokens` file; at least one of the two must be given.
    pub fn tls(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        tokens: Option<&Path>,
    ) -> Result<ServerAuth, ConnectError> {
        if client_ca.is_none() && tokens.is_none() {
            return Err(ConnectError::Credentials(
                "TLS without a way to authenticate clients: pass --client-ca FILE and/or --tokens FILE".into(),
            ));
        }
        let tokens = tokens.map(TokenTable::load).transpose()?;
        let config = tls::server_config(cert, key, client_ca, tokens.is_some()).map_err(ConnectError::Credentials)?;
        let client_certs = client_ca.is_some();
        let client_ca = client_ca.map(Path::to_path_buf);
        let delegations = Arc::default();
        Ok(ServerAuth::Tls(Arc::new(ServerTls {
            config,
            tokens,
            client_certs,
            client_ca,
            fetch_spool: None,
            delegations,
        })))
    }

    /// [`ServerAuth::tls`] for a relay whose spool is `spool`: senders authenticate as for `serve`, and a
    /// receiver with no certificate and no token of the table may fetch one transfer's blocks with its fetch
    /// capability (user `fetch-TRANSFER`, PROTOCOL.md §8.5).
    pub fn tls_relay(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        tokens: Option<&Path>,
        spool: &Path,
    ) -> Result<ServerAuth, ConnectError> {
        if client_ca.is_none() && tokens.is_none() {
            return Err(ConnectError::Credentials(
                "TLS without a way to authenticate senders: pass --client-ca FILE and/or --tokens FILE".into(),
            ));
        }
        let tokens = tokens.map(TokenTable::load).transpose()?;
        // Receivers come without a certificate: certificates are optional, checked when presented.
        let config = tls::server_config(cert, key, client_ca, true).map_err(ConnectError::Credentials)?;
        let client_certs = client_ca.is_some();
        let client_ca = client_ca.map(Path::to_path_buf);
        let fetch_spool = Some(spool.to_path_buf());
        let delegations = Arc::default();
        Ok(ServerAuth::Tls(Arc::new(ServerTls { config, tokens, client_certs, client_ca, fetch_spool, delegations })))
    }

    /// The daemon's delegations (`None` without TLS: there is no credential to delegate).
    pub fn delegations(&self) -> Option<&Arc<Delegations>> {
        match self {
            ServerAuth::Insecure => None,
            ServerAuth::Tls(t) => Some(&t.delegations),
        }
    }

    /// True for [`ServerAuth::Insecure`].
    pub fn is_insecure(&self) -> bool {
        matches!(self, ServerAuth::Insecure)
    }
}

/// How a client authenticates to the daemon.
#[derive(Clone)]
pub enum ClientAuth {
    /// Plain TCP to a daemon started with `--insecure-no-auth`.
    Insecure,
    /// TLS 1.3 with a client certificate and/or a token.
    Tls(Arc<ClientTls>),
}

/// A client's TLS configuration and credentials.
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// The `--ca` file, for the words of a certificate that does not verify.
    ca: PathBuf,
    user: String,
    token: Secret,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Insecure => write!(f, "Insecure"),
            ClientAuth::Tls(t) => write!(f, "Tls {{ user: {:?}, token: {:?} }}", t.user, t.token),
        }
    }
}

impl ClientAuth {
    /// TLS trusting the server certificates `ca` issued (or `ca` itself, for a self-signed one), with a
    /// client certificate (`cert_key`) and/or `user` and `token`; at least one of the two.
    pub fn tls(
        ca: &Path,
        cert_key: Option<(&Path, &Path)>,
        user: &str,
        token: Option<&str>,
    ) -> Result<ClientAuth, ConnectError> {
        let token = token.unwrap_or_default();
        if cert_key.is_none() && token.is_empty() {
            return Err(ConnectError::Credentials(
                "no credentials: pass --cert FILE --key FILE, or a token (--token-file FILE or MOVER_TOKEN)".into(),
            ));
        }
        let config = tls::client_config(ca, cert_key).map_err(ConnectError::Credentials)?;
        let (ca, user, token) = (ca.to_path_buf(), user.to_string(), Secret(token.to_string()));
        Ok(ClientAuth::Tls(Arc::new(ClientTls { config, ca, user, token })))
    }
}

impl ClientAuth {
    /// The `--ca` file the server's certificate is checked against (`None` for plain TCP).
    pub fn ca_file(&self) -> Option<&Path> {
        match self {
            ClientAuth::Insecure => None,
            ClientAuth::Tls(t) => Some(&t.ca),
        }
    }
}

/// How the daemon knows a client: `user:NAME` (token), `cert:HEX` (the first 16 bytes of the SHA-256 of
/// its certificate) or `ip:ADDR` (no authentication). Sessions are capped per identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity(pub String);

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connects to the daemon at `addr` and authenticates: the channel comes back only once the daemon has
/// accepted the client. `host` is what the daemon's certificate must name (the URL's host).
pub fn connect_client(
    host: &str,
    addr: SocketAddr,
    auth: &ClientAuth,
    timeout: Duration,
) -> Result<ControlChannel, ConnectError> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|error| ConnectError::Connect { target: format!("{host} ({addr})"), error })?;
    start_client(stream, host, auth, timeout)
}

/// [`connect_client`] on an already connected stream (so the caller can time the TCP handshake alone).
pub fn start_client(
    stream: TcpStream,
    host: &str,
    auth: &ClientAuth,
    timeout: Duration,
) -> Result<ControlChannel, ConnectError> {
    let peer = stream.peer_addr().map_err(|error| ConnectError::Local { what: "control connection", error })?;
    let t = match auth {
        ClientAuth::Insecure => {
            return ControlChannel::new(stream)
                .map_err(|error| ConnectError::Local { what: "control connection", error })
        }
        ClientAuth::Tls(t) => t,
    };
    let mut ch = tls::client_channel(stream, t.config.clone(), host, &t.ca, timeout).map_err(|e| {
        // A handshake that times out is the network's (retryable); one the peer answered and broke off (a
        // certificate that does not verify, a peer that does not speak TLS) is a mismatch of settings that
        // no rerun fixes.
        let text = format!("{peer}: {e}");
        if e.contains("no answer within") {
            ConnectError::Channel(text)
        } else {
            ConnectError::Credentials(text)
        }
    })?;
    let creds = ControlMsg::Auth(AuthMsg::Credentials { user: t.user.clone(), token: t.token.clone() });
    // A failed send is explained by what the server says (or by how the connection failed) below.
    let _ = ch.send(&creds);
    // A busy daemon answers with its queue place (PROTOCOL.md §3.5) until it admits the session: each
    // `Queued` restarts the wait, since the daemon sends one at least every few seconds.
    let mut place = super::queued::QueuePlace::default();
    let answer = loop {
        match ch.expect_msg(timeout, "authenticating") {
            Ok(ControlMsg::Queued { position, waiting }) => place.show(position, waiting),
            other => break other,
        }
    };
    match answer {
        Ok(ControlMsg::Auth(AuthMsg::Accepted { .. })) => Ok(ch),
        Ok(ControlMsg::Error { message }) => Err(ConnectError::Refused(message)),
        Ok(other) => {
            Err(ConnectError::Channel(format!("unexpected answer from the server while authenticating: {other:?}")))
        }
        // TLS 1.3 refuses a client certificate after the client's side of the handshake: the channel's
        // failure carries the alert in words (net::tls_words).
        Err(e) if e.contains(CLIENT_CERT_REQUIRED) || e.contains(CLIENT_CERT_REFUSED) => {
            Err(ConnectError::Credentials(format!("{peer}: {e}")))
        }
        Err(e) => Err(ConnectError::Channel(e)),
    }
}

/// Authenticates the client on an accepted connection; on refusal the client is sent the reason and the
/// connection is closed. [`authenticate_client`] then [`send_accepted`].
pub fn accept_client(stream: TcpStream, auth: &ServerAuth) -> Result<(ControlChannel, Identity), ConnectError> {
    let (mut ch, who) = authenticate_client(stream, auth, Instant::now() + AUTH_TIMEOUT)?;
    send_accepted(&mut ch, &who, auth)?;
    Ok((ch, who))
}

/// Tells an authenticated client that it may send its `Hello` or `Pull` (`Auth::Accepted`; nothing under
/// `--insecure-no-auth`, which has no authentication exchange). The daemon sends it once the session is
/// admitted (it may first wait in the daemon's queue, sending `Queued`); from then on the channel may hold
/// the full backlog ([`crate::net::control::EVENT_QUEUE_BYTES`]: a manifest, a resume plan).
pub fn send_accepted(ch: &mut ControlChannel, who: &Identity, auth: &ServerAuth) -> Result<(), ConnectError> {
    ch.set_backlog_limit(crate::net::control::EVENT_QUEUE_BYTES);
    if auth.is_insecure() {
        return Ok(());
    }
    ch.send(&ControlMsg::Auth(AuthMsg::Accepted { identity: who.0.clone() }))
        .map_err(|error| ConnectError::Local { what: "sending the authentication result", error })
}

/// Authenticates the client on an accepted connection by `deadline` (the TLS handshake and the credentials
/// together), without answering `Accepted` yet ([`send_accepted`]); on refusal the client is sent the
/// reason and the connection is closed. Under `--insecure-no-auth` the channel comes back at once, the client
/// known by its address.
pub fn authenticate_client(
    stream: TcpStream,
    auth: &ServerAuth,
    deadline: Instant,
) -> Result<(ControlChannel, Identity), ConnectError> {
    let t = match auth {
        ServerAuth::Insecure => {
            let ch = ControlChannel::new(stream)
                .map_err(|error| ConnectError::Local { what: "control connection", error })?;
            // Small until the daemon admits the session (`session::admit` raises it).
            ch.set_backlog_limit(crate::net::control::UNADMITTED_QUEUE_BYTES);
            let who = Identity(format!("ip:{}", ch.peer_addr().ip()));
            return Ok((ch, who));
        }
        ServerAuth::Tls(t) => t,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let (mut ch, certs) =
        tls::server_channel(stream, t.config.clone(), t.client_ca.as_deref(), left).map_err(ConnectError::Channel)?;
    let refuse = |ch: &mut ControlChannel, why: String| {
        let _ = ch.send(&ControlMsg::Error { message: why.clone() });
        Err(ConnectError::Credentials(why))
    };
    let (user, token) =
        match ch.expect_msg_by(deadline, "waiting for its credentials").map_err(ConnectError::Channel)? {
            ControlMsg::Auth(AuthMsg::Credentials { user, token }) => (user, token),
            other => {
                return refuse(&mut ch, format!("expected credentials first (control message type 11), got {other:?}"))
            }
        };
    // rustls has verified any certificate against --client-ca during the handshake.
    let who = if let Some(cert) = certs.first() {
        Identity(format!("cert:{}", hex(&sha256(cert.as_ref())[..16])))
    } else if let (Some(spool), Some(transfer)) = (&t.fetch_spool, user.strip_prefix(FETCH_USER_PREFIX)) {
        if !fetch_capability_holds(spool, transfer, &token.0) {
            return refuse(&mut ch, format!("no fetch capability for transfer '{}' here", shown(transfer)));
        }
        Identity(format!("fetch:{transfer}"))
    } else if let Some(transfer) = user.strip_prefix(DELEGATE_USER_PREFIX) {
        // Used up by this attempt, whatever its outcome (connect/delegation.rs).
        match t.delegations.redeem(transfer, &token.0) {
            Some(grant) => Identity(format!("{DELEGATED_IDENTITY_PREFIX}{transfer}:{}", grant.controller)),
            None => {
                return refuse(
                    &mut ch,
                    format!("delegation '{}' is unknown, used or expired: run mover copy again", shown(transfer)),
                )
            }
        }
    } else {
        match &t.tokens {
            Some(table) if !token.0.is_empty() => {
                if !table.verify(&user, &token.0) {
                    return refuse(
                        &mut ch,
                        format!("authentication failed for user '{}': unknown user or wrong token", shown(&user)),
                    );
                }
                Identity(format!("user:{user}"))
            }
            Some(_) => return refuse(&mut ch, "authentication required: no client certificate and no token".into()),
            None => {
                return refuse(&mut ch, "authentication required: this server accepts client certificates only".into())
            }
        }
    };
    Ok((ch, who))
}

/// How a receiver's user name at a relay starts: `fetch-` and the transfer's id.
pub const FETCH_USER_PREFIX: &str = "fetch-";
/// The file, in a transfer's directory on a relay, that holds the SHA-256 (hex) of its fetch capability.
pub const FETCH_FILE: &str = ".fetch";

/// Whether `token` is the fetch capability of `transfer` in the relay's `spool`: its SHA-256 matches what
/// the sender stored in `TRANSFER/.fetch` (compared in full, without an early exit).
fn fetch_capability_holds(spool: &Path, transfer: &str, token: &str) -> bool {
    if crate::wire::stripe::parse_transfer_name(transfer).is_none() || token.is_empty() {
        return false;
    }
    let Ok(stored) = std::fs::read_to_string(spool.join(transfer).join(FETCH_FILE)) else { return false };
    let want = hex(&sha256(token.as_bytes()));
    let stored = stored.trim().as_bytes();
    stored.len() == want.len() && stored.iter().zip(want.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The SHA-256 (hex) of a fetch capability, as a sender stores it on a relay.
pub fn fetch_capability_digest(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

/// A user name for a message: printable, at most [`MAX_USER_LEN`] characters.
fn shown(user: &str) -> String {
    user.chars().take(MAX_USER_LEN).flat_map(char::escape_debug).collect()
}

/// The daemon's `--tokens` file: user name to SHA-256 of the token.
#[derive(Clone, Debug)]
pub struct TokenTable {
    users: HashMap<String, [u8; 32]>,
}

impl TokenTable {
    /// Reads and parses a token file.
    pub fn load(path: &Path) -> Result<TokenTable, ConnectError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConnectError::Credentials(format!("--tokens '{}': {e}", path.display())))?;
        TokenTable::parse(&text).map_err(|e| ConnectError::Credentials(format!("--tokens '{}': {e}", path.display())))
    }

    /// Parses `USER SHA256-HEX` lines (module documentation).
    pub fn parse(text: &str) -> Result<TokenTable, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let mut fields = line.split_whitespace();
            let (Some(user), Some(hash), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!("line {n}: expected 'USER SHA256-HEX'"));
            };
            if !valid_user(user) {
                return Err(format!(
                    "line {n}: user name '{}' must be 1-{MAX_USER_LEN} of A-Z a-z 0-9 . _ - @",
                    shown(user)
                ));
            }
            let hash = parse_hash(hash)
                .ok_or_else(|| format!("line {n}: expected 64 hex digits (a SHA-256) after '{user}'"))?;
            if users.insert(user.to_string(), hash).is_some() {
                return Err(format!("line {n}: user '{user}' appears twice"));
            }
        }
        if users.is_empty() {
            return Err("no users: expected 'USER SHA256-HEX' per line (blank lines and lines starting with '#' are \
                        ignored; `mover token --user NAME` prints a line)"
                .into());
        }
        Ok(TokenTable { users })
    }

    /// True if `token` is `user`'s. The hashes are compared in constant time, and an unknown user costs
    /// the same as a wrong token.
    pub fn verify(&self, user: &str, token: &str) -> bool {
        let got = sha256(token.as_bytes());
        let (want, known) = match self.users.get(user) {
            Some(h) => (*h, true),
            None => ([0xa5; 32], false),
        };
        constant_time_eq(&got, &want) & known
    }
}

fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh token (32 random bytes as 64 hex digits) and its line for the `--tokens` file.
pub fn new_token(user: &str) -> Result<(String, String), ConnectError> {
    if !valid_user(user) {
        return Err(ConnectError::Credentials(format!(
            "user name '{}' must be 1-{MAX_USER_LEN} of A-Z a-z 0-9 . _ - @",
            shown(user)
        )));
    }
    let mut raw = [0u8; 32];
    for chunk in raw.chunks_mut(8) {
        chunk.copy_from_slice(&crate::random::random_u64().to_ne_bytes());
    }
    let token = hex(&raw);
    let line = format!("{user} {}", hex(&sha256(token.as_bytes())));
    Ok((token, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn token_file_parses_and_verifies() {
        let text = format!("# mover tokens\n\n  alice {ABC_SHA256}  \nbob.x-1@lab {}\n", ABC_SHA256.to_uppercase());
        let t = TokenTable::parse(&text).unwrap();
        assert!(t.verify("alice", "abc"));
        assert!(t.verify("bob.x-1@lab", "abc"));
        assert!(!t.verify("alice", "abd"));
        assert!(!t.verify("alice", ""));
        assert!(!t.verify("carol", "abc"));
        assert!(!t.verify("Alice", "abc"));
    }

    #[test]
    fn token_file_errors_name_the_line() {
        let bad = |text: &str, want: &str| {
            let e = TokenTable::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        };
        bad(&format!("alice {ABC_SHA256}\nalice {ABC_SHA256}\n"), "line 2: user 'alice' appears twice");
        bad("alice\n", "line 1: expected 'USER SHA256-HEX'");
        bad(&format!("alice {ABC_SHA256} extra\n"), "line 1: expected");
        bad("alice abc\n", "line 1: expected 64 hex digits");
        bad(&format!("alice {}\n", "g".repeat(64)), "64 hex digits");
        bad(&format!("al ice {ABC_SHA256}\n"), "line 1: expected");
        bad(&format!("al/ice {ABC_SHA256}\n"), "user name");
        bad(&format!("{} {ABC_SHA256}\n", "u".repeat(65)), "user name");
        bad(&format!("é {ABC_SHA256}\n"), "user name");
        bad("# nothing\n", "no users");
    }

    #[test]
    fn token_file_with_crlf_and_a_blank_first_line_parses() {
        let t = TokenTable::parse(&format!("\r\n# tokens\r\nalice {ABC_SHA256} \r\n\r\n")).unwrap();
        assert!(t.verify("alice", "abc"));
        let e = TokenTable::parse("\r\n\r\n").unwrap_err();
        assert!(e.contains("USER SHA256-HEX' per line"), "{e}");
    }

    #[test]
    fn new_tokens_verify_against_their_line() {
        let (token, line) = new_token("alice").unwrap();
        assert_eq!(token.len(), 64);
        let t = TokenTable::parse(&line).unwrap();
        assert!(t.verify("alice", &token));
        let (other, _) = new_token("alice").unwrap();
        assert_ne!(token, other);
        assert!(new_token("a b").is_err());
    }
}
