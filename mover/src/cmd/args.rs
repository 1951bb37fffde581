//! Command-line flags shared by several subcommands, and what they resolve to.

use crate::connect::{ClientAuth, ConnectError, ServerAuth};
use crate::files::MAX_COMPONENT_LEN;
use crate::rate::{parse_rate_bps, parse_size_bytes};
use crate::session::governor::{parse_user_cap, RateCaps};
use crate::session::limits::{Limits, DEFAULT_MAX_FILES, DEFAULT_MAX_SESSIONS_PER_CLIENT};
use crate::session::{
    AdmissionLimits, MemoryBudget, DEFAULT_MAX_HANDSHAKES, DEFAULT_MAX_QUEUE, DEFAULT_MAX_SESSIONS, MAX_ENTRIES,
};
use std::path::PathBuf;

/// `mover serve`'s authentication flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerAuthArgs {
    /// Serve WITHOUT authentication or encryption of the control channel (plain TCP; session keys cross in
    /// clear): for loopback and trusted test networks only. Warns on every start.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "client_ca", "tokens"])]
    pub insecure_no_auth: bool,
    /// The daemon's certificate chain (PEM) for the TLS control channel.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Accept clients with a certificate issued by this CA (PEM); required of every client unless --tokens
    /// is also given.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Accept clients with a per-user token: lines 'USER SHA256-HEX' (make one with `mover token`).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
}

impl ServerAuthArgs {
    /// The authentication the flags ask for; without --insecure-no-auth, TLS with a way to authenticate
    /// clients is required.
    pub fn resolve(&self) -> Result<ServerAuth, ConnectError> {
        if self.insecure_no_auth {
            return Ok(ServerAuth::Insecure);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) if self.client_ca.is_some() || self.tokens.is_some() => {
                ServerAuth::tls(cert, key, self.client_ca.as_deref(), self.tokens.as_deref())
            }
            _ => Err(ConnectError::Credentials(
                "mover serve accepts only authenticated clients: pass --tls-cert FILE --tls-key FILE and \
                      --client-ca FILE and/or --tokens FILE (or --insecure-no-auth to serve without \
                      authentication, on loopback or a trusted test network only)"
                    .into(),
            )),
        }
    }
}

/// The client's authentication flags (`mover push`, and every command that connects to a daemon).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientAuthArgs {
    /// Speak plain TCP to a daemon started with --insecure-no-auth (no TLS, no authentication).
    #[arg(long, conflicts_with_all = ["ca", "cert", "key", "token_file"])]
    pub insecure_no_auth: bool,
    /// Trust anchor for the daemon's certificate (PEM): its CA, or the certificate itself.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for a daemon with --client-ca.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// File holding the token (its first line that is not blank or a '#' comment), for a daemon with --tokens. The environment variable
    /// MOVER_TOKEN is used when this is not given.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The user the token belongs to (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

impl ServerAuthArgs {
    /// [`ServerAuthArgs::resolve`] for `mover relay` with its spool: receivers may also fetch with a
    /// transfer's capability (PROTOCOL.md §8.5).
    pub fn resolve_relay(&self, spool: &std::path::Path) -> Result<ServerAuth, ConnectError> {
        match (self.insecure_no_auth, &self.tls_cert, &self.tls_key) {
            (false, Some(cert), Some(key)) if self.client_ca.is_some() || self.tokens.is_some() => {
                ServerAuth::tls_relay(cert, key, self.client_ca.as_deref(), self.tokens.as_deref(), spool)
            }
            _ => self.resolve(),
        }
    }
}

impl ClientAuthArgs {
    /// The authentication the flags (and MOVER_TOKEN, USER) ask for.
    pub fn resolve(&self) -> Result<ClientAuth, ConnectError> {
        if self.insecure_no_auth {
            return Ok(ClientAuth::Insecure);
        }
        let Some(ca) = &self.ca else {
            return Err(ConnectError::Credentials(
                "pass --ca FILE (the daemon's certificate or its CA) and a client certificate (--cert, \
                        --key) or a token (--token-file FILE or MOVER_TOKEN), or --insecure-no-auth for a daemon \
                        started with --insecure-no-auth"
                    .into(),
            ));
        };
        let token = match &self.token_file {
            Some(f) => Some(crate::connect::read_token_file(f)?),
            None => std::env::var("MOVER_TOKEN").ok().map(|t| t.trim().to_string()),
        };
        let user = match &self.user {
            Some(u) => u.clone(),
            None => std::env::var("USER").unwrap_or_default(),
        };
        if token.as_deref().is_some_and(|t| !t.is_empty()) && user.is_empty() {
            return Err(ConnectError::Credentials("a token needs a user: pass --user NAME (USER is not set)".into()));
        }
        let cert_key = self.cert.as_deref().zip(self.key.as_deref());
        ClientAuth::tls(ca, cert_key, &user, token.as_deref())
    }
}

/// The command-line flags for [`Limits`].
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Most manifest entries (files and directories) one session may send.
    #[arg(long, default_value_t = DEFAULT_MAX_FILES,
          value_parser = clap::value_parser!(u64).range(1..=MAX_ENTRIES))]
    pub max_files: u64,
    /// Most bytes one session may send (binary suffixes: 500G, 64T).
    #[arg(long, default_value = "64T", value_parser = parse_size_bytes)]
    pub max_bytes: u64,
    /// Longest file or directory name, in bytes (1-255).
    #[arg(long, default_value_t = MAX_COMPONENT_LEN as u64, value_parser = clap::value_parser!(u64).range(1..=MAX_COMPONENT_LEN as u64))]
    pub max_name_len: u64,
    /// Most concurrent sessions per client (per authenticated user or certificate; per IP address under
    /// --insecure-no-auth).
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS_PER_CLIENT as u64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_sessions_per_client: u64,
    /// Refuse pushes and pulls that ask for --cipher none: every session's data must be encrypted and
    /// authenticated.
    #[arg(long)]
    pub require_encryption: bool,
    /// Most memory one session's manifest may occupy on this server (binary suffixes: 256M, 1G); a larger
    /// manifest is refused as it arrives.
    #[arg(long, value_name = "BYTES", default_value = "512M", value_parser = parse_size_bytes)]
    pub max_manifest_memory: u64,
    /// Most memory all sessions together may reserve (manifests and data-path buffers; default: half of
    /// this machine's memory); a session past it is refused with "try again later".
    #[arg(long, value_name = "BYTES", value_parser = parse_size_bytes)]
    pub max_memory: Option<u64>,
}

impl LimitArgs {
    /// The limits the flags ask for.
    pub fn limits(&self) -> Limits {
        Limits {
            max_files: self.max_files,
            max_bytes: self.max_bytes,
            max_name_len: self.max_name_len as usize,
            max_sessions_per_client: self.max_sessions_per_client as usize,
            require_encryption: self.require_encryption,
            max_manifest_memory: self.max_manifest_memory,
        }
    }

    /// The daemon-wide memory account `--max-memory` asks for (one per daemon: sessions share it).
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget::new(self.max_memory.unwrap_or_else(crate::session::memory::default_max_memory))
    }
}

/// What `--preserve` can keep beyond modes and modification times.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreserveWhat {
    /// Owners and groups (numeric ids), when the receiver runs as root.
    Owner,
}

/// Sync, resume and metadata flags of `push` and `pull`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SyncArgs {
    /// When a file that exists at the destination is replaced: never, always, if-newer (the source's mtime
    /// is newer), if-different (size or mtime differ, or content with --checksum).
    #[arg(long, value_name = "WHEN", default_value = "if-different")]
    pub overwrite: crate::wire::Overwrite,
    /// Compare content hashes (xxh3-128) instead of size and modification time to find unchanged files.
    #[arg(long)]
    pub checksum: bool,
    /// Start every file over: ignore (and remove) partial files an earlier run left.
    #[arg(long)]
    pub no_resume: bool,
    /// Keep more metadata: `owner` keeps owners and groups when the receiver runs as root.
    #[arg(long, value_name = "WHAT", value_delimiter = ',')]
    pub preserve: Vec<PreserveWhat>,
    /// Send and set extended attributes.
    #[arg(long)]
    pub xattrs: bool,
    /// Compress each block before it is sealed: none, zstd (level 3), zstd:LEVEL (1-19), or auto (zstd:1
    /// only while it raises goodput: measured compression speed and ratio against the path's rate). A block
    /// that does not shrink goes raw. The sender compresses: on a pull the server does, as asked.
    #[arg(long, value_name = "HOW", default_value = "none")]
    pub compress: crate::wire::Compression,
}

impl SyncArgs {
    /// The options the flags ask for.
    pub fn options(&self) -> crate::wire::TransferOptions {
        crate::wire::TransferOptions {
            overwrite: self.overwrite,
            checksum: self.checksum,
            resume: !self.no_resume,
            preserve_owner: self.preserve.contains(&PreserveWhat::Owner),
            xattrs: self.xattrs,
            compress: self.compress,
        }
    }
}

/// `push --files-from FILE [--from0]`: send a list of paths instead of whole trees.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilesFromArgs {
    /// Send only the paths listed in FILE (relative to the one SRC directory, one a line; `-` reads
    /// standard input), and the directories leading to them.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<std::path::PathBuf>,
    /// The --files-from list is NUL-separated (as `find -print0` writes it).
    #[arg(long, requires = "files_from")]
    pub from0: bool,
}

impl FilesFromArgs {
    /// The list's paths, read now (so a missing list fails before anything connects); `None` without
    /// `--files-from`.
    pub fn read(&self) -> Result<Option<Vec<String>>, crate::files::FilesError> {
        self.files_from.as_deref().map(|f| crate::files::read_files_from(f, self.from0)).transpose()
    }
}

/// `mover serve`'s rate caps: site-wide bandwidth governance (PROTOCOL.md §3.7, decision 0035).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RateCapArgs {
    /// The most all sessions together may send, bits/s with SI suffix (600M, 10G): shared between the
    /// running sessions by their policies (fair and fixed evenly up to what each asks, low only what they
    /// leave), each sender told its share and kept to it; re-balanced as sessions start and end.
    #[arg(long, value_name = "RATE", value_parser = parse_rate_bps)]
    pub max_rate: Option<u64>,
    /// The most one user's sessions may send together, NAME=RATE (alice=200M; cert:HEX=RATE or
    /// ip:ADDR=RATE for clients known so); repeat for each user. In --config: user-max-rate =
    /// ["alice=200M"], or a [user-max-rate] table of alice = "200M".
    #[arg(long, value_name = "NAME=RATE", value_parser = parse_user_cap)]
    pub user_max_rate: Vec<(String, u64)>,
}

impl RateCapArgs {
    /// The caps the flags ask for; a user named twice keeps the later rate (the command line's over the
    /// config file's).
    pub fn caps(&self) -> RateCaps {
        RateCaps { max_rate_bps: self.max_rate, user_max_rate_bps: self.user_max_rate.iter().cloned().collect() }
    }
}

/// `mover serve`'s admission flags: how many sessions run and wait, and how many connections may be
/// authenticating ([`crate::session::AdmissionLimits`]).
#[derive(clap::Args, Debug, Clone)]
pub struct AdmissionArgs {
    /// Most sessions running at once in the whole daemon; more wait in its queue (--max-queue).
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_sessions: u64,
    /// Most sessions waiting for a place (beyond --max-sessions or --max-sessions-per-client); one more is
    /// refused as busy, which the client may retry.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUE as u64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub max_queue: u64,
    /// Most connections still authenticating at once; a new one beyond it cuts the oldest.
    #[arg(long, default_value_t = DEFAULT_MAX_HANDSHAKES as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_handshakes: u64,
}

impl AdmissionArgs {
    /// The limits the flags ask for.
    pub fn limits(&self) -> AdmissionLimits {
        AdmissionLimits {
            max_sessions: self.max_sessions as usize,
            max_queue: self.max_queue as usize,
            max_handshakes: self.max_handshakes as usize,
        }
    }
}
