//! The server's end of an SSH session: `mover serve --stdio`, started by a client's
//! `ssh host mover serve --stdio` (PROTOCOL.md §3.3), speaks the control protocol on its stdin and stdout.
//! No daemon, no listening port: the UDP data socket lives as long as the session.

use super::error::ConnectError;
use crate::net::ControlChannel;
use crate::wire::control::{ControlMsg, Welcome};
use crate::wire::VERSION;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};

/// Turns this process's stdin and stdout into the control channel and greets the client with `Welcome`
/// (the addresses sshd saw, from `$SSH_CONNECTION`, so the client learns where to send data).
///
/// Stdout carries nothing but control frames: it is moved to a fresh descriptor first and fd 1 is pointed
/// at stderr, so a stray print cannot corrupt the channel. Logs go to stderr, which ssh forwards to the
/// client's terminal.
pub fn accept_stdio() -> Result<ControlChannel, ConnectError> {
    let (input, output) = take_stdio()?;
    let (client, server) = match std::env::var("SSH_CONNECTION") {
        Ok(v) => parse_ssh_connection(&v).unwrap_or((None, None)),
        Err(_) => (None, None),
    };
    let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
    let peer = client.unwrap_or(any);
    let local = server.unwrap_or(SocketAddr::new(super::addr::unspecified(peer.ip()), 0));
    let closer = input.try_clone().map_err(|error| ConnectError::Local { what: "stdin", error })?;
    let close = move || {
        // Makes a blocked read return when stdin is a socket (sshd may use socketpairs); for a pipe it
        // fails harmlessly and the reader ends with the process.
        // Safety: shutdown on a descriptor we own (a duplicate of stdin); no memory is involved.
        unsafe {
            libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&closer), libc::SHUT_RDWR);
        }
    };
    let mut ch = ControlChannel::from_parts(input, output, close, peer, local)
        .map_err(|error| ConnectError::Local { what: "stdio", error })?;
    // The greeting comes before the session judges anything (the root, say), so that a refusal reaches the
    // client as an `Error` it can show, not as a closed pipe.
    ch.send(&ControlMsg::Welcome(Welcome { version: VERSION as u16, client, server }))
        .map_err(|error| ConnectError::Local { what: "stdout", error })?;
    Ok(ch)
}

/// `$SSH_CONNECTION`: "client_ip client_port server_ip server_port". `None` for anything else.
pub fn parse_ssh_connection(v: &str) -> Option<(Option<SocketAddr>, Option<SocketAddr>)> {
    let f: Vec<&str> = v.split_whitespace().collect();
    let [cip, cport, sip, sport] = f.as_slice() else { return None };
    let addr = |ip: &str, port: &str| -> Option<SocketAddr> {
        // sshd writes link-local IPv6 addresses with a zone (`fe80::1%eth0`); the zone is dropped.
        let ip: IpAddr = ip.split('%').next()?.parse().ok()?;
        Some(SocketAddr::new(ip, port.parse().ok()?))
    };
    Some((addr(cip, cport), addr(sip, sport)))
}

/// stdin as a `File`, and stdout moved to a new descriptor with fd 1 then pointing at stderr.
fn take_stdio() -> Result<(File, File), ConnectError> {
    // Safety: dup/dup2 on the standard descriptors, which this process owns; the new descriptors are
    // checked before being wrapped, and each `File` becomes their only owner.
    unsafe {
        let out = libc::dup(1);
        if out < 0 {
            return Err(os_error("dup(stdout)"));
        }
        if libc::dup2(2, 1) < 0 {
            return Err(os_error("dup2(stderr, stdout)"));
        }
        let inp = libc::dup(0);
        if inp < 0 {
            return Err(os_error("dup(stdin)"));
        }
        Ok((File::from(OwnedFd::from_raw_fd(inp)), File::from(OwnedFd::from_raw_fd(out))))
    }
}

fn os_error(what: &'static str) -> ConnectError {
    ConnectError::Local { what, error: std::io::Error::last_os_error() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_is_parsed() {
        let (c, s) = parse_ssh_connection("10.0.0.1 51234 10.0.0.2 22").unwrap();
        assert_eq!(c, Some("10.0.0.1:51234".parse().unwrap()));
        assert_eq!(s, Some("10.0.0.2:22".parse().unwrap()));
        let (c, s) = parse_ssh_connection("fe80::1%eth0 5 ::1 22").unwrap();
        assert_eq!(c, Some("[fe80::1]:5".parse().unwrap()));
        assert_eq!(s, Some("[::1]:22".parse().unwrap()));
        assert_eq!(parse_ssh_connection("x 1 ::1 22"), Some((None, Some("[::1]:22".parse().unwrap()))));
        assert_eq!(parse_ssh_connection("1.2.3.4 5"), None);
        assert_eq!(parse_ssh_connection(""), None);
    }
}
