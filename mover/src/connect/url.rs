//! `mover://HOST[:PORT]/PATH` destinations.

use super::error::ConnectError;
use std::net::{SocketAddr, ToSocketAddrs};

/// The TCP port `mover serve` listens on when a URL names none.
pub const DEFAULT_PORT: u16 = 7400;

/// A parsed `mover://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoverUrl {
    /// Host name or address as written (IPv6 without brackets).
    pub host: String,
    /// TCP port of the server's control channel.
    pub port: u16,
    /// Destination directory relative to the server's root: the URL path minus exactly one leading `/`
    /// (so `mover://h//etc` asks for `/etc`, which the server refuses as absolute).
    pub path: String,
}

impl MoverUrl {
    /// Parses `mover://HOST[:PORT][/PATH]`.
    pub fn parse(url: &str) -> Result<MoverUrl, ConnectError> {
        let rest = url.strip_prefix("mover://").ok_or_else(|| {
            ConnectError::BadAddress(format!("not a mover URL: '{url}' (expected mover://HOST[:PORT]/PATH)"))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| ConnectError::BadAddress(format!("unclosed '[' in '{url}'")))?;
            let port = match &v6[end + 1..] {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| ConnectError::BadAddress(format!("bad port in '{url}'")))?),
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(ConnectError::BadAddress(format!("no host in '{url}'")));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| ConnectError::BadAddress(format!("bad port '{p}' in '{url}'")))?,
        };
        Ok(MoverUrl { host: host.to_string(), port, path: path.to_string() })
    }

    /// Resolves the host to a socket address (the first one).
    pub fn socket_addr(&self) -> Result<SocketAddr, ConnectError> {
        let host = || self.host.clone();
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| ConnectError::Resolve { host: host(), error: Some(e) })?
            .next()
            .ok_or_else(|| ConnectError::Resolve { host: host(), error: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let u = MoverUrl::parse("mover://127.0.0.1:7400/projects/run42").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 7400, "projects/run42"));
        let u = MoverUrl::parse("mover://10.0.0.2:7400/").unwrap();
        assert_eq!(u.path, "");
        let u = MoverUrl::parse("mover://host").unwrap();
        assert_eq!((u.port, u.path.as_str()), (DEFAULT_PORT, ""));
        let u = MoverUrl::parse("mover://[::1]:9/a").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 9, "a"));
        assert_eq!(MoverUrl::parse("mover://h//etc").unwrap().path, "/etc");
        assert!(MoverUrl::parse("http://h/").is_err());
        assert!(MoverUrl::parse("mover://:7400/").is_err());
        assert!(MoverUrl::parse("mover://h:0/").is_err());
        assert!(MoverUrl::parse("mover://h:99999/").is_err());
    }
}
