//! What a server tells its client, kept apart from what it logs: a [`ClientText`] can only be made by a
//! [`RootScrub`], which names paths relative to the served root and replaces any other mention of the
//! root's absolute path (as configured, made absolute, and canonical). The daemon's log keeps its own text.
//!
//! Two layers: the file system side already reports paths relative to the root (`FilesError::relative_to`,
//! the tree's shown names), and the scrub is the last line for whatever text escapes that (an OS error that
//! names a path, a layer that formats a full path): it is applied to every message sent, explicitly through
//! [`RootScrub::message`] and, for what the pipeline sends mid-transfer, by the control channel's error
//! filter ([`RootScrub::install`]).

use super::error::SessionError;
use crate::net::ControlChannel;
use crate::wire::control::ControlMsg;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Text a server may show its client: it names no path above the served root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientText(String);

impl ClientText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned (for a `ControlMsg::Error`).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ClientText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The spellings of a served root that no client may see, longest first (so a canonical form that
/// extends a configured one is replaced whole).
#[derive(Clone, Debug)]
pub struct RootScrub {
    forms: Vec<String>,
}

impl RootScrub {
    /// The scrub for `root`: its path as configured, without `.` components and trailing slashes, made
    /// absolute against the working directory, and its canonical form (symbolic links resolved). The
    /// file system root `/` hides nothing (every path is below it) and is not scrubbed.
    pub fn new(root: &Path) -> RootScrub {
        let mut forms = vec![root.to_string_lossy().into_owned(), normal(root)];
        if let Ok(cwd) = std::env::current_dir() {
            forms.push(normal(&cwd.join(root)));
        }
        if let Ok(canonical) = std::fs::canonicalize(root) {
            forms.push(normal(&canonical));
        }
        let mut forms: Vec<String> =
            forms.into_iter().map(|f| f.trim_end_matches('/').to_string()).filter(|f| f.len() > 1).collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        RootScrub { forms }
    }

    /// `text` with every mention of the root replaced: `ROOT/a/b` becomes `a/b`, the root itself `.`.
    pub fn text(&self, text: &str) -> ClientText {
        let mut out = text.to_string();
        for form in &self.forms {
            if !out.contains(form.as_str()) {
                continue;
            }
            out = out.replace(&format!("{form}/"), "").replace(form.as_str(), ".");
        }
        ClientText(out)
    }

    /// What the client is told of `error`.
    pub fn error(&self, error: &SessionError) -> ClientText {
        self.text(&error.to_string())
    }

    /// The `Error` message that tells the client of `error`.
    pub fn message(&self, error: &SessionError) -> ControlMsg {
        ControlMsg::Error { message: self.error(error).into_string() }
    }

    /// Makes `ch` scrub every `Error` message sent on it from now on: the last line for the pipeline's
    /// mid-transfer failures, which it sends on the channel itself.
    pub fn install(self: &Arc<Self>, ch: &mut ControlChannel) {
        let scrub = self.clone();
        ch.set_error_filter(move |message| scrub.text(message).into_string());
    }
}

/// `path` without `.` components, repeated or trailing slashes.
fn normal(path: &Path) -> String {
    let normal: PathBuf = path.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    normal.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn every_spelling_of_the_root_becomes_relative() {
        let dir = TempDir::new("scrub");
        let real = dir.path().join("real-root");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link-root");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let scrub = RootScrub::new(&link.join("."));
        let (l, r) = (link.display().to_string(), real.display().to_string());
        let said = format!("writing '{l}/a/b': No space; renaming '{r}/c' in {r}; root '{l}//' and '{l}'");
        let text = scrub.text(&said).into_string();
        assert_eq!(text, "writing 'a/b': No space; renaming 'c' in .; root '/' and '.'", "{text}");
        assert!(!text.contains(&l) && !text.contains(&r));
        // Text without the root is left alone, and the file system root hides nothing.
        assert_eq!(scrub.text("'..' components are not allowed").as_str(), "'..' components are not allowed");
        assert_eq!(RootScrub::new(Path::new("/")).text("/etc/x").as_str(), "/etc/x");
    }

    /// The last line: an `Error` any layer sends on a channel with the scrub installed reaches the peer
    /// scrubbed, through `send` and `send_all` alike; other messages pass untouched.
    #[test]
    fn the_channel_scrubs_every_error_it_sends() {
        use crate::net::ControlEvent;
        use std::net::{TcpListener, TcpStream};
        use std::time::Duration;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || ControlChannel::new(TcpStream::connect(addr).unwrap()).unwrap());
        let mut server = ControlChannel::new(listener.accept().unwrap().0).unwrap();
        let mut client = peer.join().unwrap();
        let root = Path::new("/srv/very-secret-root");
        Arc::new(RootScrub::new(root)).install(&mut server);
        let error = |m: &str| ControlMsg::Error { message: m.to_string() };
        server.send(&error("writing '/srv/very-secret-root/a/b' at offset 0: EIO")).unwrap();
        server.send_all([error("in /srv/very-secret-root"), ControlMsg::ManifestEnd]).unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            match client.recv_timeout(Duration::from_secs(10)) {
                Some(ControlEvent::Msg(m)) => got.push(m),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        assert_eq!(got, [error("writing 'a/b' at offset 0: EIO"), error("in ."), ControlMsg::ManifestEnd]);
    }

    #[test]
    fn a_relative_root_is_scrubbed_in_its_absolute_form() {
        let cwd = std::env::current_dir().unwrap();
        let scrub = RootScrub::new(Path::new("some/served/dir"));
        let abs = format!("opening '{}/some/served/dir/f'", cwd.display());
        assert_eq!(scrub.text(&abs).as_str(), "opening 'f'");
    }
}
