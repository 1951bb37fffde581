//! Per-direction AEAD keys and their epochs (PROTOCOL.md §6.1, §6.2).
//!
//! A direction's key changes every [`EPOCH_PACKETS`] packet numbers: key `e` is HKDF-Expand of the session's
//! PRK with the direction's label, the cipher, the session id and `e`. So no key protects more than 2^24
//! datagrams (at most 1.1 TB even of 64 KiB datagrams), which keeps AES-GCM far inside the margin TLS 1.3 and
//! QUIC keep, whatever the size of the session, with no message exchanged: the epoch follows from the
//! packet number in the authenticated header.
//!
//! The sealing side derives the next key when its packet numbers cross into a new epoch. The opening side
//! caches the keys of the newest epoch it authenticated and of its two neighbours; a datagram naming any
//! other epoch is refused without deriving anything, so forgeries cannot make it run HKDF per packet.

use super::cipher::Cipher;
use super::DropReason;
use ring::aead::{self, LessSafeKey, UnboundKey};
use ring::hkdf;

/// Bits of the packet number within one key epoch.
pub const EPOCH_BITS: u32 = 24;
/// Packet numbers per key epoch.
pub const EPOCH_PACKETS: u64 = 1 << EPOCH_BITS;

/// HKDF salt of the key schedule: binds the derived keys to this protocol version.
const KDF_SALT: &[u8] = b"mover v3 session key";

/// The epoch a packet number belongs to.
pub fn epoch_of(packet_number: u64) -> u64 {
    packet_number >> EPOCH_BITS
}

/// Derives one direction's epoch keys.
#[derive(Clone)]
pub struct KeyDeriver {
    prk: hkdf::Prk,
    algorithm: &'static aead::Algorithm,
    label: &'static [u8],
    code: u8,
    session_id: u64,
    /// Keys derived so far (for tests and counters: a flood must not raise it).
    pub derivations: u64,
}

impl KeyDeriver {
    /// The deriver of the direction named by `label` for the session key `key`.
    pub fn new(cipher: Cipher, key: &[u8], session_id: u64, label: &'static [u8]) -> Option<KeyDeriver> {
        let algorithm = match cipher {
            Cipher::None => return None,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KDF_SALT).extract(key);
        Some(KeyDeriver { prk, algorithm, label, code: cipher.code(), session_id, derivations: 0 })
    }

    /// The key of `epoch`.
    pub fn derive(&mut self, epoch: u64) -> LessSafeKey {
        let (code, sid, e) = ([self.code], self.session_id.to_be_bytes(), epoch.to_be_bytes());
        let info = [self.label, &code[..], &sid[..], &e[..]];
        // One key length is far below HKDF's limit of 255 hash lengths: cannot fail.
        let okm = self.prk.expand(&info, self.algorithm).expect("HKDF output of one key length");
        self.derivations += 1;
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// The sending side of a direction: the key of the epoch it is sealing in.
#[derive(Clone)]
pub struct SealKeys {
    deriver: KeyDeriver,
    epoch: u64,
    key: LessSafeKey,
}

impl SealKeys {
    /// Keys starting at epoch 0.
    pub fn new(mut deriver: KeyDeriver) -> SealKeys {
        let key = deriver.derive(0);
        SealKeys { deriver, epoch: 0, key }
    }

    /// The key for `packet_number` (deriving it when the numbers entered a new epoch).
    pub fn key_for(&mut self, packet_number: u64) -> &LessSafeKey {
        let e = epoch_of(packet_number);
        if e != self.epoch {
            self.key = self.deriver.derive(e);
            self.epoch = e;
        }
        &self.key
    }
}

/// The receiving side of a direction: the keys of the newest authenticated epoch and its neighbours.
#[derive(Clone)]
pub struct OpenKeys {
    deriver: KeyDeriver,
    /// The newest epoch a datagram authenticated in.
    top: u64,
    slots: [Option<(u64, LessSafeKey)>; 3],
}

impl OpenKeys {
    /// Keys starting at epoch 0.
    pub fn new(deriver: KeyDeriver) -> OpenKeys {
        OpenKeys { deriver, top: 0, slots: [None, None, None] }
    }

    /// The key for `packet_number`, if its epoch is the newest authenticated one or next to it: an older
    /// epoch is `TooOld` (its packets left the replay window long ago), a later one cannot be genuine
    /// (`BadTag`: the sender cannot be a whole epoch ahead of everything that arrived).
    pub fn key_for(&mut self, packet_number: u64) -> Result<&LessSafeKey, DropReason> {
        let e = epoch_of(packet_number);
        if e + 1 < self.top {
            return Err(DropReason::TooOld);
        }
        if e > self.top + 1 {
            return Err(DropReason::BadTag);
        }
        let slot = match self.slots.iter().position(|s| s.as_ref().is_some_and(|(se, _)| *se == e)) {
            Some(i) => i,
            None => {
                // Reuse a slot outside the three allowed epochs (or an empty one).
                let top = self.top;
                let i = self
                    .slots
                    .iter()
                    .position(|s| s.as_ref().is_none_or(|(se, _)| se + 1 < top || *se > top + 1))
                    .expect("three slots cover the three allowed epochs");
                self.slots[i] = Some((e, self.deriver.derive(e)));
                i
            }
        };
        Ok(&self.slots[slot].as_ref().expect("filled above").1)
    }

    /// Records that a datagram of `packet_number` authenticated.
    pub fn authenticated(&mut self, packet_number: u64) {
        self.top = self.top.max(epoch_of(packet_number));
    }

    /// Keys derived so far.
    pub fn derivations(&self) -> u64 {
        self.deriver.derivations
    }
}
