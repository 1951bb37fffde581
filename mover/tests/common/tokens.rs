//! Test credentials for TLS daemons with tokens: the test certificates (`certs`) and a token for alice, its
//! line for `serve --tokens`, and the client flags that use them.

use super::certs::{self, Certs};
use super::{mover, run_with_limit};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The certificates, the daemon's tokens file and alice's token file.
pub struct TokenTls {
    pub certs: Certs,
    /// For `serve --tokens`.
    pub tokens: PathBuf,
    /// Alice's token, for `--token-file`.
    pub token: PathBuf,
}

/// Makes them under `dir` (the token with `mover token --user alice`).
pub fn token_tls(dir: &Path) -> TokenTls {
    let certs = certs::make(dir);
    let out = run_with_limit(mover().args(["token", "--user", "alice"]), Duration::from_secs(60));
    assert!(out.status.success(), "mover token: {}", String::from_utf8_lossy(&out.stderr));
    let token = dir.join("alice.token");
    std::fs::write(&token, &out.stdout).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, &out.stderr).unwrap();
    TokenTls { certs, tokens, token }
}

impl TokenTls {
    /// `--ca CA --token-file TOKEN --user alice`, trusting `ca` (the CA, or a pinned self-signed certificate).
    pub fn client_args_with(&self, ca: &Path) -> Vec<String> {
        let p = |p: &Path| p.to_str().unwrap().to_string();
        vec!["--ca".into(), p(ca), "--token-file".into(), p(&self.token), "--user".into(), "alice".into()]
    }

    /// `--tls-cert CERT --tls-key KEY --tokens TOKENS`: a daemon's (or a relay's) TLS with alice's token.
    pub fn server_args(&self) -> Vec<String> {
        let p = |p: &Path| p.to_str().unwrap().to_string();
        let c = &self.certs;
        vec![
            "--tls-cert".into(),
            p(&c.server_cert),
            "--tls-key".into(),
            p(&c.server_key),
            "--tokens".into(),
            p(&self.tokens),
        ]
    }

    /// A TLS daemon (`common::Server`, `--net udp`) on `root`, created if missing, with [`TokenTls::server_args`].
    pub fn daemon(&self, root: &Path) -> super::Server {
        std::fs::create_dir_all(root).unwrap();
        let mut args = self.server_args();
        args.extend(["--net".into(), "udp".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        super::Server::start(root, &args)
    }

    /// [`TokenTls::client_args_with`] the test CA.
    pub fn client_args(&self) -> Vec<String> {
        self.client_args_with(&self.certs.ca)
    }
}
