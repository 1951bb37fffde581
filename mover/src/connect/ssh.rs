//! Sessions started over SSH: `[user@]host:PATH` operands, and the `ssh` child that runs
//! `mover serve --stdio` on the remote host and carries the control channel (PROTOCOL.md §3.3).
//!
//! The local `ssh` binary does the authentication, with the user's config, keys and agent; mover never
//! sees a credential. Only the control channel crosses SSH; the data goes directly over UDP.

use super::error::ConnectError;
use super::url::MoverUrl;
use crate::net::control::read_frame;
use crate::net::ControlChannel;
use crate::wire::control::{ControlMsg, Welcome};
use crate::wire::VERSION;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for the remote side's `Welcome`: ssh may be asking for a password or a passphrase.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a finished session's ssh gets to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A source or destination operand as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local path.
    Local(PathBuf),
    /// `mover://HOST[:PORT]/PATH`: a `mover serve` daemon.
    Daemon(MoverUrl),
    /// `[user@]host:PATH`: over SSH.
    Ssh(SshTarget),
}

/// `[user@]host:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// The login name, if given.
    pub user: Option<String>,
    /// The host as written (an ssh config alias, a name or an address; IPv6 without brackets).
    pub host: String,
    /// The remote path as written: absolute, or relative to the remote home (or to `--remote-root`); empty
    /// for the home (or that root).
    pub path: String,
}

impl Location {
    /// Classifies an operand like scp does: `mover://...` is the daemon (another scheme, `http://...`, is
    /// refused); a `:` before any `/` makes it remote (`host:PATH`, `user@host:PATH`, `[::1]:PATH`); anything
    /// else is a local path (write `./a:b` for a local file with a colon in its name).
    pub fn parse(s: &str) -> Result<Location, ConnectError> {
        if s.starts_with("mover://") {
            return MoverUrl::parse(s).map(Location::Daemon);
        }
        // `http://host/x` is a URL of another scheme, not an ssh host named `http`: say so.
        if let Some((scheme, _)) = s.split_once("://") {
            let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b));
            if is_scheme {
                return Err(ConnectError::BadAddress(format!(
                    "'{s}': {scheme}:// is not a mover URL; name a mover serve daemon as mover://HOST[:PORT]/DIR, or \
                     a host over SSH as [user@]host:DIR"
                )));
            }
        }
        let colon = s.find(':');
        let slash = s.find('/');
        // `[::1]:x` and `user@[::1]:x`: the colon that ends the host comes after the bracket.
        let bracket = s.find('[').filter(|&b| colon.is_some_and(|c| b < c) && slash.is_none_or(|sl| b < sl));
        if let Some(b) = bracket {
            return parse_bracketed(s, b).map(Location::Ssh);
        }
        match colon {
            Some(c) if slash.is_none_or(|sl| c < sl) => {
                let (user, host) = split_user(&s[..c], s)?;
                if host.is_empty() {
                    return Err(ConnectError::BadAddress(format!("no host in '{s}' (expected [user@]host:PATH)")));
                }
                Ok(Location::Ssh(SshTarget { user, host: host.to_string(), path: s[c + 1..].to_string() }))
            }
            _ => Ok(Location::Local(PathBuf::from(s))),
        }
    }

    /// True for the forms that name another host.
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }
}

fn parse_bracketed(s: &str, open: usize) -> Result<SshTarget, ConnectError> {
    let (user, before) = split_user(&s[..open], s)?;
    if !before.is_empty() {
        return Err(ConnectError::BadAddress(format!("unexpected '{before}' before '[' in '{s}'")));
    }
    let rest = &s[open + 1..];
    let close = rest.find(']').ok_or_else(|| ConnectError::BadAddress(format!("unclosed '[' in '{s}'")))?;
    let host = &rest[..close];
    let path = rest[close + 1..]
        .strip_prefix(':')
        .ok_or_else(|| ConnectError::BadAddress(format!("expected ':' after ']' in '{s}'")))?;
    if host.is_empty() {
        return Err(ConnectError::BadAddress(format!("no host in '{s}' (expected [user@]host:PATH)")));
    }
    Ok(SshTarget { user, host: host.to_string(), path: path.to_string() })
}

/// Splits `user@host` (the last `@`, as ssh does); the user must not be empty.
fn split_user<'a>(authority: &'a str, whole: &str) -> Result<(Option<String>, &'a str), ConnectError> {
    match authority.rsplit_once('@') {
        Some(("", _)) => Err(ConnectError::BadAddress(format!("empty user name in '{whole}'"))),
        Some((u, h)) => Ok((Some(u.to_string()), h)),
        None => Ok((None, authority)),
    }
}

/// How to start the remote side: the client's `--ssh`, `--remote-mover` and `--remote-root`.
#[derive(Clone, Debug, Default)]
pub struct SshOptions {
    /// The ssh command, split like a POSIX shell splits it (`None`: `ssh`).
    pub ssh: Option<String>,
    /// The mover binary on the remote host (`None`: `mover`, found on the remote PATH).
    pub remote_mover: Option<String>,
    /// `--root` for the remote `mover serve --stdio` (`None`: no confinement but the remote account's own,
    /// as scp: absolute paths as they are, relative ones from the remote home).
    pub remote_root: Option<String>,
}

impl SshOptions {
    /// The ssh command line for `target`: the `--ssh` words, `--`, the destination and one remote command
    /// (ssh hands it to the remote shell, so its words are quoted).
    pub fn command_line(&self, target: &SshTarget) -> Result<Vec<String>, ConnectError> {
        let mut argv = split_ssh_command(self.ssh.as_deref().unwrap_or("ssh"))?;
        if target.host.starts_with('-') {
            return Err(ConnectError::Ssh(format!("host '{}' starts with '-'", target.host)));
        }
        argv.push("--".into());
        argv.push(match &target.user {
            Some(u) => format!("{u}@{}", target.host),
            None => target.host.clone(),
        });
        let mut remote = vec![shell_quote(self.remote_mover.as_deref().unwrap_or("mover")), "serve --stdio".into()];
        if let Some(root) = &self.remote_root {
            remote.push("--root".into());
            remote.push(shell_quote(root));
        }
        argv.push(remote.join(" "));
        Ok(argv)
    }
}

/// Splits `--ssh COMMAND` into words as a POSIX shell does (`-o 'ProxyCommand nc %h %p'` is two words), so
/// that what works on a command line works here; unbalanced quotes and an empty command are refused.
pub fn split_ssh_command(command: &str) -> Result<Vec<String>, ConnectError> {
    let words = shlex::split(command).ok_or_else(|| {
        ConnectError::Ssh(format!(
            "--ssh has an unbalanced quote or a trailing backslash ({command}): quote it as you would in a shell"
        ))
    })?;
    if words.is_empty() {
        return Err(ConnectError::Ssh("--ssh is empty: give the ssh command, e.g. --ssh 'ssh -p 2222'".into()));
    }
    Ok(words)
}

/// Quotes `s` for a POSIX shell: single quotes, with `'` written as `'\''`. Plain words stay as they are.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A running `ssh ... mover serve --stdio` and the control channel over its pipes.
///
/// Dropping it closes the channel's write side (the remote side then ends and ssh exits), waits a few
/// seconds for ssh to exit and kills it otherwise.
pub struct SshLink {
    /// The control channel: our writes go to ssh's stdin, its stdout feeds the reader thread.
    pub ch: ControlChannel,
    /// The remote side's greeting.
    pub welcome: Welcome,
    child: Child,
    host: String,
}

impl SshLink {
    /// Starts ssh and waits for the remote side's `Welcome`. If ssh ends first (authentication failed,
    /// mover not found, connection refused), the error names its exit status.
    pub fn open(target: &SshTarget, opts: &SshOptions) -> Result<SshLink, ConnectError> {
        let argv = opts.command_line(target)?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| ConnectError::Ssh(format!("cannot run '{}': {e}", argv[0])))?;
        let host = target.host.clone();
        let mut stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        // The greeting is read by a helper thread, so a silent ssh cannot hang us past the timeout.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mover-ssh-welcome".into())
            .spawn(move || {
                let mut body = Vec::new();
                let r = read_frame(&mut stdout, &mut body);
                let _ = tx.send((r, stdout));
            })
            .map_err(|error| ConnectError::Local { what: "cannot start a thread", error })?;
        let (first, stdout) = match rx.recv_timeout(WELCOME_TIMEOUT) {
            Ok(x) => x,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConnectError::Ssh(format!(
                    "ssh to {host}: no answer from the remote mover within {} s",
                    WELCOME_TIMEOUT.as_secs()
                )));
            }
        };
        let welcome = match first {
            Ok(Some(ControlMsg::Welcome(w))) => w,
            Ok(Some(ControlMsg::Error { message })) => return Err(finish_failed(child, &host, Some(&message))),
            Ok(Some(other)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConnectError::Ssh(format!(
                    "ssh to {host}: the remote side sent {other:?} instead of a greeting"
                )));
            }
            Ok(None) => return Err(finish_failed(child, &host, None)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConnectError::Ssh(format!(
                    "ssh to {host}: the remote side did not speak the mover protocol ({e}); does the remote \
                     shell print something at login, or is --remote-mover not mover?"
                )));
            }
        };
        if welcome.version != VERSION as u16 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ConnectError::Ssh(format!(
                "the remote mover on {host} speaks protocol version {}, this one {VERSION}: install the same version",
                welcome.version
            )));
        }
        let server = match welcome.server {
            Some(a) => a,
            // No $SSH_CONNECTION on the remote side: fall back to what the host name resolves to here.
            None => SocketAddr::new(resolve(&target.host)?, 22),
        };
        let client = welcome.client.unwrap_or_else(|| SocketAddr::new(super::addr::unspecified(server.ip()), 0));
        let writer = Arc::new(Mutex::new(Some(stdin)));
        let closer = writer.clone();
        let close = move || {
            // Dropping ssh's stdin: the remote side reads end-of-file, ends, and ssh exits.
            closer.lock().unwrap_or_else(|e| e.into_inner()).take();
        };
        let ch = ControlChannel::from_parts(stdout, SharedStdin(writer), close, server, client)
            .map_err(|e| ConnectError::Ssh(format!("control channel: {e}")))?;
        Ok(SshLink { ch, welcome: Welcome { server: Some(server), client: Some(client), ..welcome }, child, host })
    }

    /// The remote host's address for data: the address sshd accepted the connection on.
    pub fn server_ip(&self) -> IpAddr {
        self.ch.peer_addr().ip()
    }

    /// The address sshd saw this client at.
    pub fn client_ip(&self) -> IpAddr {
        self.ch.local_addr().ip()
    }

    /// The host as the user wrote it.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for SshLink {
    fn drop(&mut self) {
        self.ch.shutdown();
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ssh's stdin, shared with the channel's close function (which drops it).
struct SharedStdin(Arc<Mutex<Option<ChildStdin>>>);

impl Write for SharedStdin {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(w) => w.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// The error for an ssh that ended before the greeting: its exit status and the likely cause.
fn finish_failed(mut child: Child, host: &str, message: Option<&str>) -> ConnectError {
    ConnectError::Ssh(ssh_failure(child_status(&mut child), host, message))
}

/// The exit status of an ssh that has closed its output (killed after a grace period if it has not exited).
fn child_status(child: &mut Child) -> Option<ExitStatus> {
    // ssh has closed its stdout; give it a moment to exit so its status is known.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut status: Option<ExitStatus> = None;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Why an ssh that ended before the greeting failed: from its exit status, the likely cause.
fn ssh_failure(status: Option<ExitStatus>, host: &str, message: Option<&str>) -> String {
    if let Some(m) = message {
        return format!("the remote mover on {host} refused: {m}");
    }
    match status.and_then(|s| s.code()) {
        Some(127) => format!(
            "ssh to {host} failed: exit status 127: mover was not found on the remote PATH; use --remote-mover PATH"
        ),
        Some(255) => format!(
            "ssh to {host} failed: exit status 255 (connection or authentication failed; see ssh's message above)"
        ),
        Some(c) => format!(
            "ssh to {host} failed: exit status {c} before the remote mover answered; is mover on the remote PATH? \
             use --remote-mover"
        ),
        None => format!(
            "ssh to {host} failed: it closed its output before the remote mover answered; is mover on the remote \
             PATH? use --remote-mover"
        ),
    }
}

fn resolve(host: &str) -> Result<IpAddr, ConnectError> {
    (host, 22)
        .to_socket_addrs()
        .map_err(|e| {
            ConnectError::Ssh(format!("the remote side did not report its address and '{host}' does not resolve: {e}"))
        })?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| ConnectError::Resolve { host: host.to_string(), error: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: Option<&str>, host: &str, path: &str) -> Location {
        Location::Ssh(SshTarget { user: user.map(String::from), host: host.into(), path: path.into() })
    }

    #[test]
    fn operands_are_classified_like_scp() {
        let p = |s| Location::parse(s).unwrap();
        assert_eq!(p("host:dir/x"), ssh(None, "host", "dir/x"));
        assert_eq!(p("me@host:/home/me/x"), ssh(Some("me"), "host", "/home/me/x"));
        assert_eq!(p("host:"), ssh(None, "host", ""));
        assert_eq!(p("a@b@host:x"), ssh(Some("a@b"), "host", "x"));
        assert_eq!(p("[::1]:x/y"), ssh(None, "::1", "x/y"));
        assert_eq!(p("root@[fe80::1%eth0]:"), ssh(Some("root"), "fe80::1%eth0", ""));
        assert_eq!(p("host:a:b"), ssh(None, "host", "a:b"));
        assert_eq!(p("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(p("dir/a:b"), Location::Local("dir/a:b".into()));
        assert_eq!(p("/abs/path"), Location::Local("/abs/path".into()));
        assert_eq!(p("plain"), Location::Local("plain".into()));
        assert_eq!(p("dir/[x]:y"), Location::Local("dir/[x]:y".into()));
        assert_eq!(p("./a://b"), Location::Local("./a://b".into()));
        let http = Location::parse("http://host/x").unwrap_err().to_string();
        assert!(http.contains("http:// is not a mover URL") && http.contains("[user@]host:DIR"), "{http}");
        assert!(matches!(p("mover://h:1/x"), Location::Daemon(u) if u.port == 1 && u.path == "x"));
        assert!(!p("x").is_remote() && p("h:x").is_remote() && p("mover://h/").is_remote());
        for bad in
            [":x", "@host:x", "me@:x", "[::1]x", "[::1", "[]:x", "u@v[::1]:x", "mover://:1/", "http://h/x", "s3://b/k"]
        {
            assert!(Location::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn command_line_quotes_the_remote_command() {
        let t = SshTarget { user: Some("me".into()), host: "h".into(), path: "x".into() };
        let o = SshOptions::default();
        assert_eq!(o.command_line(&t).unwrap(), ["ssh", "--", "me@h", "mover serve --stdio"]);
        let o = SshOptions {
            ssh: Some("  ssh -p 2222\t-i key ".into()),
            remote_mover: Some("/opt/my mover/bin/mover".into()),
            remote_root: Some("/data/it's".into()),
        };
        let t = SshTarget { user: None, host: "::1".into(), path: String::new() };
        assert_eq!(
            o.command_line(&t).unwrap(),
            [
                "ssh",
                "-p",
                "2222",
                "-i",
                "key",
                "--",
                "::1",
                r"'/opt/my mover/bin/mover' serve --stdio --root '/data/it'\''s'"
            ]
        );
        assert!(SshOptions { ssh: Some(" ".into()), ..SshOptions::default() }.command_line(&t).is_err());
        let dash = SshTarget { user: None, host: "-oProxyCommand=x".into(), path: String::new() };
        assert!(o.command_line(&dash).is_err());
    }

    #[test]
    fn the_ssh_command_splits_like_a_shell() {
        let split = |s: &str| split_ssh_command(s).map_err(|e| e.to_string());
        assert_eq!(
            split(r#"ssh -o 'ProxyCommand nc %h %p' -p 2222"#).unwrap(),
            ["ssh", "-o", "ProxyCommand nc %h %p", "-p", "2222"]
        );
        assert_eq!(split(r#"ssh -i "my key" -o A\ B"#).unwrap(), ["ssh", "-i", "my key", "-o", "A B"]);
        assert_eq!(split(r#"ssh -o "it's""#).unwrap(), ["ssh", "-o", "it's"]);
        assert!(split("ssh -o 'ProxyCommand nc").unwrap_err().contains("unbalanced quote"));
        assert!(split(r#"ssh -o "x"#).unwrap_err().contains("unbalanced quote"));
        assert!(split("  ").unwrap_err().contains("--ssh is empty"));
    }
}
