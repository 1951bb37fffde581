//! The datagram ciphers a session can use (`--cipher`): their names and wire codes (PROTOCOL.md §3.2).
//!
//! Its own file so that key derivation ([`super::keys`]) and sealing ([`super::seal`]) both depend on it
//! without depending on each other's internals in both directions.

/// How a session's datagrams are sealed (`--cipher`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256-GCM: the default; hardware AES makes it the fastest on x86-64 and ARMv8.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305: for CPUs without AES instructions.
    ChaCha20Poly1305,
    /// No encryption and no authentication: the xxh3 integrity tag only. Only when asked for by name.
    None,
}

impl Cipher {
    /// Every cipher, in wire-code order.
    pub const ALL: [Cipher; 3] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305, Cipher::None];

    /// The name on the command line, in summaries and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes256gcm",
            Cipher::ChaCha20Poly1305 => "chacha20poly1305",
            Cipher::None => "none",
        }
    }

    /// The byte that names the cipher in control messages (PROTOCOL.md §3.2).
    pub fn code(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
            Cipher::None => 0,
        }
    }

    /// The cipher a control message's byte names.
    pub fn from_code(code: u8) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Whether datagrams are encrypted and authenticated.
    pub fn is_aead(self) -> bool {
        self != Cipher::None
    }
}

impl std::str::FromStr for Cipher {
    type Err = String;
    fn from_str(s: &str) -> Result<Cipher, String> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown cipher '{s}' (expected aes256gcm, chacha20poly1305 or none)"))
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
