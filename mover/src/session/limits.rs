//! What one session may ask of `mover serve`: entries, bytes, name length, concurrent sessions per
//! client, and (with `--require-encryption`) an encrypted data channel. Checked on the announced `Hello`
//! and on the manifest, before anything is created on disk.

use super::error::SessionError;
use super::handshake::MAX_ENTRIES;
use crate::files::Entry;
use crate::files::MAX_COMPONENT_LEN;
use crate::rate::format_bytes;
use crate::wire::control::Hello;
use crate::wire::Cipher;

/// Default `--max-files`: manifest entries (files and directories) in one session.
pub const DEFAULT_MAX_FILES: u64 = MAX_ENTRIES;
/// Default `--max-bytes`: 64 TiB in one session.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 40;
/// Default `--max-sessions-per-client`.
pub const DEFAULT_MAX_SESSIONS_PER_CLIENT: usize = 8;

/// The limits of `mover serve` (`--max-files`, `--max-bytes`, `--max-name-len`, `--max-sessions-per-client`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most manifest entries (files and directories) in one session; at most [`MAX_ENTRIES`].
    pub max_files: u64,
    /// Most bytes in the regular files of one session.
    pub max_bytes: u64,
    /// Longest name (one path component) in bytes; at most [`MAX_COMPONENT_LEN`].
    pub max_name_len: usize,
    /// Most sessions one client (one authenticated identity; one IP address without authentication) may
    /// have at once.
    pub max_sessions_per_client: usize,
    /// Refuse sessions that ask for `--cipher none` (`--require-encryption`).
    pub require_encryption: bool,
    // Memory (issue 16): the daemon-wide `--max-memory` is a shared account, `ServeOptions::memory`.
    /// Most bytes one session's manifest may occupy on the server (`--max-manifest-memory`), counted as
    /// entries arrive ([`super::memory::entry_bytes`]).
    pub max_manifest_memory: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_files: DEFAULT_MAX_FILES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_name_len: MAX_COMPONENT_LEN,
            max_sessions_per_client: DEFAULT_MAX_SESSIONS_PER_CLIENT,
            require_encryption: false,
            max_manifest_memory: super::memory::DEFAULT_MAX_MANIFEST_MEMORY,
        }
    }
}

impl Limits {
    /// Judges what the `Hello` announces (the manifest must then match it: [`super::handshake::read_manifest`]).
    pub fn check_hello(&self, h: &Hello) -> Result<(), SessionError> {
        self.check_cipher(h.cipher)?;
        if h.entry_count > self.max_files {
            return Err(SessionError::NotAllowed(format!(
                "{} entries exceed this server's limit of {} per session (--max-files)",
                h.entry_count, self.max_files
            )));
        }
        if h.total_bytes > self.max_bytes {
            return Err(SessionError::NotAllowed(format!(
                "{} exceed this server's limit of {} per session (--max-bytes)",
                format_bytes(h.total_bytes),
                format_bytes(self.max_bytes)
            )));
        }
        self.check_names(&h.dest)
    }

    /// Judges the cipher a push or pull asks for.
    pub fn check_cipher(&self, cipher: Cipher) -> Result<(), SessionError> {
        if self.require_encryption && !cipher.is_aead() {
            return Err(SessionError::NotAllowed(
                "this server requires encrypted data (--require-encryption): --cipher none is refused; \
                        use aes256gcm or chacha20poly1305"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Judges every entry's name lengths.
    pub fn check_entries(&self, entries: &[Entry]) -> Result<(), SessionError> {
        entries.iter().try_for_each(|e| self.check_names(&e.rel_path))
    }

    fn check_names(&self, path: &str) -> Result<(), SessionError> {
        match path.split('/').find(|c| c.len() > self.max_name_len) {
            None => Ok(()),
            Some(c) => Err(SessionError::NotAllowed(format!(
                "refused name '{}': it is {} bytes long, this server's limit is {} (--max-name-len)",
                shorten(c),
                c.len(),
                self.max_name_len
            ))),
        }
    }
}

/// An untrusted name for a message: control characters escaped, at most 40 characters.
fn shorten(name: &str) -> String {
    let mut out: String = name.chars().take(40).flat_map(char::escape_debug).collect();
    if name.chars().nth(40).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::EntryKind;
    use crate::wire::Cipher;

    fn hello(entries: u64, bytes: u64, dest: &str) -> Hello {
        Hello {
            version: 0,
            block_payload: 1400,
            rate_bps: 1,
            window_blocks: 64,
            entry_count: entries,
            total_bytes: bytes,
            cipher: Cipher::default(),
            options: Default::default(),
            policy: Default::default(),
            dest: dest.into(),
        }
    }

    #[test]
    fn each_limit_refuses_with_its_flag() {
        let l = Limits {
            max_files: 10,
            max_bytes: 1000,
            max_name_len: 8,
            max_sessions_per_client: 1,
            require_encryption: false,
            max_manifest_memory: 1 << 20,
        };
        assert!(l.check_hello(&hello(10, 1000, "abcdefgh/x")).is_ok());
        assert!(l.check_hello(&hello(11, 0, "")).unwrap_err().to_string().contains("--max-files"));
        assert!(l.check_hello(&hello(1, 1001, "")).unwrap_err().to_string().contains("--max-bytes"));
        assert!(l.check_hello(&hello(1, 1, "a/abcdefghi")).unwrap_err().to_string().contains("--max-name-len"));
        let e = |p: &str| Entry {
            rel_path: p.into(),
            kind: EntryKind::File,
            size: 1,
            mode: 0o644,
            mtime_s: 0,
            mtime_ns: 0,
            ..Entry::default()
        };
        assert!(l.check_entries(&[e("a/b"), e("abcdefgh")]).is_ok());
        let err = l.check_entries(&[e("a/b"), e(&format!("d/{}\n", "x".repeat(100)))]).unwrap_err().to_string();
        assert!(err.contains("101 bytes") && err.contains("...") && !err.contains('\n'), "{err}");
    }
}
