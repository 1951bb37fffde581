//! Sealing and opening datagrams: the 16-byte tag at the end of every datagram (PROTOCOL.md §2.2, §6).
//!
//! With an AEAD cipher (the default), everything after the 20-byte common header is encrypted and the tag
//! authenticates it together with the header (the associated data). Each direction of a session has its own
//! key, derived from the session key with HKDF-SHA256, and the nonce is the packet number, which a sender
//! never repeats within a session: so no (key, nonce) pair is ever used twice. With the `none` cipher the
//! tag is xxh3-128 over the datagram, seeded with the session id: it catches corruption in flight (so only the
//! damaged block is resent) but is no authentication, as anyone who sees the session id can forge it.
//!
//! Opening checks the tag before anything of the body is believed; the [`ReplayWindow`] then refuses a
//! packet number seen before, so a recorded datagram cannot be played back into the session.

use super::cipher::Cipher;
use super::keys::{KeyDeriver, OpenKeys, SealKeys};
use super::replay::ReplayWindow;
use super::{be, DropReason, COMMON_HEADER_LEN};
use ring::aead::{Aad, Nonce, NONCE_LEN};
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// Bytes in the tag slot at the end of every datagram.
pub const TAG_LEN: usize = 16;
/// Bytes in a session key (PROTOCOL.md §6).
pub const KEY_LEN: usize = 32;

/// A session key (PROTOCOL.md §6.1). Its `Debug` shows no key material, so no error message or log line
/// that prints a control message or a configuration can leak it.
#[derive(Copy, Clone, PartialEq, Eq, Default)]
pub struct SessionKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// Which end of a session a [`Sealer`] serves: it seals what this end sends and opens what it receives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Seals data packets, opens feedback.
    Sender,
    /// Seals feedback, opens data packets.
    Receiver,
}

/// HKDF info labels of the two directions (PROTOCOL.md §6.1).
const LABEL_DATA: &[u8] = b"mover v3 data sender->receiver";
const LABEL_FEEDBACK: &[u8] = b"mover v3 feedback receiver->sender";

/// Seals outgoing datagrams and opens incoming ones for one end of one session.
#[derive(Clone)]
pub struct Sealer {
    cipher: Cipher,
    /// The keys of the direction this end sends in (`None` for the integrity-only cipher).
    seal_keys: Option<SealKeys>,
    /// The keys of the direction this end receives in.
    open_keys: Option<OpenKeys>,
    /// xxh3 seed of the integrity-only cipher.
    seed: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Sealer").field("cipher", &self.cipher).finish_non_exhaustive()
    }
}

impl Sealer {
    /// The integrity-only sealer of the session `session_id` (the `none` cipher): the same for both ends.
    pub fn integrity(session_id: u64) -> Sealer {
        Sealer { cipher: Cipher::None, seal_keys: None, open_keys: None, seed: session_id ^ 0x6d6f_7665_725f_7631 }
    }

    /// The sealer of `role`'s end of session `session_id` with `cipher` and the session key `key`
    /// (ignored for [`Cipher::None`]).
    pub fn new(cipher: Cipher, key: &[u8; KEY_LEN], session_id: u64, role: Role) -> Sealer {
        let (Some(data), Some(feedback)) = (
            KeyDeriver::new(cipher, key, session_id, LABEL_DATA),
            KeyDeriver::new(cipher, key, session_id, LABEL_FEEDBACK),
        ) else {
            return Sealer::integrity(session_id);
        };
        let (seal, open) = match role {
            Role::Sender => (data, feedback),
            Role::Receiver => (feedback, data),
        };
        Sealer { cipher, seal_keys: Some(SealKeys::new(seal)), open_keys: Some(OpenKeys::new(open)), seed: 0 }
    }

    /// Keys this end derived for opening so far (one per key epoch it received in).
    pub fn open_derivations(&self) -> u64 {
        self.open_keys.as_ref().map_or(0, |k| k.derivations())
    }

    /// The cipher.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Seals `datagram` in place: encrypts everything between the common header and the last [`TAG_LEN`]
    /// bytes and writes the tag there. The header must already hold this datagram's packet number.
    pub fn seal(&mut self, datagram: &mut [u8]) {
        assert!(datagram.len() >= COMMON_HEADER_LEN + TAG_LEN);
        let body_end = datagram.len() - TAG_LEN;
        let Some(keys) = &mut self.seal_keys else {
            let tag = xxh3_128_with_seed(&datagram[..body_end], self.seed);
            datagram[body_end..].copy_from_slice(&tag.to_le_bytes());
            return;
        };
        let key = keys.key_for(be::u64_at(datagram, 12));
        let (header, rest) = datagram.split_at_mut(COMMON_HEADER_LEN);
        let (body, tag_slot) = rest.split_at_mut(body_end - COMMON_HEADER_LEN);
        let tag = key
            .seal_in_place_separate_tag(nonce_of(header), Aad::from(&*header), body)
            .expect("a datagram is far below the AEAD's message limit");
        tag_slot.copy_from_slice(tag.as_ref());
    }

    /// Opens `datagram` in place: checks the tag and decrypts the body. On success the plaintext body is
    /// `datagram[COMMON_HEADER_LEN..len - TAG_LEN]`; on failure the contents are unspecified and must be
    /// dropped.
    pub fn open(&mut self, datagram: &mut [u8]) -> Result<(), DropReason> {
        if datagram.len() < COMMON_HEADER_LEN + TAG_LEN {
            return Err(DropReason::Truncated);
        }
        let body_end = datagram.len() - TAG_LEN;
        let Some(keys) = &mut self.open_keys else {
            let tag = xxh3_128_with_seed(&datagram[..body_end], self.seed);
            if datagram[body_end..] != tag.to_le_bytes() {
                return Err(DropReason::BadTag);
            }
            return Ok(());
        };
        let packet_number = be::u64_at(datagram, 12);
        let key = keys.key_for(packet_number)?;
        let (header, rest) = datagram.split_at_mut(COMMON_HEADER_LEN);
        // `open_in_place` takes ciphertext followed by its tag, which is exactly the rest of the datagram.
        key.open_in_place(nonce_of(header), Aad::from(&*header), rest).map_err(|_| DropReason::BadTag)?;
        keys.authenticated(packet_number);
        Ok(())
    }
}

/// The nonce of a datagram: four zero bytes, then its packet number (header bytes 12..20, big-endian).
/// Unique per key because each direction has its own key and numbers its packets without reuse.
fn nonce_of(header: &[u8]) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&header[12..COMMON_HEADER_LEN]);
    Nonce::assume_unique_for_key(n)
}

/// The checks every received datagram goes through before its type-specific parse, in the order of
/// PROTOCOL.md §2.3/§2.4: size, common header, type, session, tag (decrypting the body in place), and last
/// the replay window, which only authenticated packet numbers may move.
pub fn open_datagram(
    datagram: &mut [u8],
    expected: super::PacketType,
    sealer: &mut Sealer,
    session_id: u64,
    max_len: usize,
    replay: &mut ReplayWindow,
) -> Result<super::CommonHeader, DropReason> {
    if datagram.len() > max_len {
        return Err(DropReason::Oversized);
    }
    let common = super::CommonHeader::parse(datagram)?;
    if common.packet_type != expected {
        return Err(DropReason::BadType);
    }
    if common.session_id != session_id {
        return Err(DropReason::WrongSession);
    }
    sealer.open(datagram)?;
    replay.check_and_mark(common.packet_number)?;
    Ok(common)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CommonHeader, PacketType};

    fn datagram(pn: u64, len: usize) -> Vec<u8> {
        let mut d: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        CommonHeader { packet_type: PacketType::Data, session_id: 42, packet_number: pn }.emit(&mut d);
        d
    }

    #[test]
    fn integrity_catches_any_flipped_bit() {
        let mut s = Sealer::integrity(42);
        let mut d = vec![7u8; 100];
        s.seal(&mut d);
        assert_eq!(s.open(&mut d.clone()), Ok(()));
        for byte in 0..d.len() {
            let mut c = d.clone();
            c[byte] ^= 0x10;
            assert_eq!(s.open(&mut c), Err(DropReason::BadTag), "flip in byte {byte}");
        }
        assert_eq!(Sealer::integrity(43).open(&mut d.clone()), Err(DropReason::BadTag));
        assert_eq!(s.open(&mut d[..30]), Err(DropReason::Truncated));
    }

    #[test]
    fn aead_round_trips_hides_the_body_and_catches_any_flipped_bit() {
        for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let key = [9u8; KEY_LEN];
            let mut tx = Sealer::new(cipher, &key, 42, Role::Sender);
            let mut rx = Sealer::new(cipher, &key, 42, Role::Receiver);
            let plain = datagram(5, 200);
            let mut d = plain.clone();
            tx.seal(&mut d);
            assert_eq!(d[..COMMON_HEADER_LEN], plain[..COMMON_HEADER_LEN], "the header stays readable");
            assert_ne!(d[COMMON_HEADER_LEN..184], plain[COMMON_HEADER_LEN..184], "{cipher}: body encrypted");
            let mut opened = d.clone();
            assert_eq!(rx.open(&mut opened), Ok(()));
            assert_eq!(opened[..184], plain[..184], "{cipher}: decrypted in place");
            for byte in 0..d.len() {
                let mut c = d.clone();
                c[byte] ^= 0x01;
                assert_eq!(rx.open(&mut c), Err(DropReason::BadTag), "{cipher}: flip in byte {byte}");
            }
            // The sender cannot open its own direction (reflection), nor can another key or session.
            assert_eq!(tx.open(&mut d.clone()), Err(DropReason::BadTag));
            let mut other_key = Sealer::new(cipher, &[8u8; KEY_LEN], 42, Role::Receiver);
            assert_eq!(other_key.open(&mut d.clone()), Err(DropReason::BadTag));
            let mut other_session = Sealer::new(cipher, &key, 43, Role::Receiver);
            assert_eq!(other_session.open(&mut d.clone()), Err(DropReason::BadTag));
            assert_eq!(rx.open(&mut d[..35]), Err(DropReason::Truncated));
        }
    }

    #[test]
    fn packet_numbers_make_distinct_ciphertexts_and_ciphers_do_not_open_each_other() {
        let key = [1u8; KEY_LEN];
        let mut tx = Sealer::new(Cipher::Aes256Gcm, &key, 42, Role::Sender);
        let (mut a, mut b) = (datagram(1, 100), datagram(2, 100));
        tx.seal(&mut a);
        tx.seal(&mut b);
        assert_ne!(a[COMMON_HEADER_LEN..], b[COMMON_HEADER_LEN..]);
        let mut chacha = Sealer::new(Cipher::ChaCha20Poly1305, &key, 42, Role::Receiver);
        assert_eq!(chacha.open(&mut a), Err(DropReason::BadTag));
    }

    #[test]
    fn open_datagram_drops_replays_after_authentication() {
        let key = [3u8; KEY_LEN];
        let mut tx = Sealer::new(Cipher::Aes256Gcm, &key, 42, Role::Sender);
        let mut rx = Sealer::new(Cipher::Aes256Gcm, &key, 42, Role::Receiver);
        let mut window = ReplayWindow::new();
        let mut d = datagram(7, 100);
        tx.seal(&mut d);
        let mut open = |d: &[u8], w: &mut ReplayWindow| {
            open_datagram(&mut d.to_vec(), PacketType::Data, &mut rx, 42, 2000, w).map(|h| h.packet_number)
        };
        assert_eq!(open(&d, &mut window), Ok(7));
        assert_eq!(open(&d, &mut window), Err(DropReason::Replayed));
        // A forged packet with a fresh number fails authentication and does not move the window.
        let mut forged = d.clone();
        forged[19] = 200;
        assert_eq!(open(&forged, &mut window), Err(DropReason::BadTag));
        let mut later = datagram(200, 100);
        tx.seal(&mut later);
        assert_eq!(open(&later, &mut window), Ok(200));
    }

    #[test]
    fn keys_change_every_epoch_and_floods_derive_nothing() {
        use crate::wire::keys::EPOCH_PACKETS;
        let key = [5u8; KEY_LEN];
        let mut tx = Sealer::new(Cipher::Aes256Gcm, &key, 42, Role::Sender);
        let mut rx = Sealer::new(Cipher::Aes256Gcm, &key, 42, Role::Receiver);
        let sealed = |tx: &mut Sealer, pn: u64| {
            let mut d = datagram(pn, 100);
            tx.seal(&mut d);
            d
        };
        // Across the first boundary, in both orders near it.
        for pn in [3, EPOCH_PACKETS - 1, EPOCH_PACKETS, EPOCH_PACKETS + 1, EPOCH_PACKETS - 2] {
            let mut d = sealed(&mut tx, pn);
            assert_eq!(rx.open(&mut d), Ok(()), "packet {pn}");
        }
        assert_eq!(rx.open_derivations(), 2, "epochs 0 and 1");
        // Epoch 1's key is not epoch 0's: the same body and nonce low bits seal differently.
        let (a, b) = (sealed(&mut tx, 5), sealed(&mut tx, EPOCH_PACKETS + 5));
        assert_ne!(a[COMMON_HEADER_LEN + 4..], b[COMMON_HEADER_LEN + 4..]);
        // A datagram sealed under epoch 0's key but numbered in epoch 1 does not open.
        let mut moved = a.clone();
        moved[12..20].copy_from_slice(&(EPOCH_PACKETS + 5).to_be_bytes());
        assert_eq!(rx.open(&mut moved), Err(DropReason::BadTag));
        // Forgeries naming far epochs are refused before any key is derived.
        let before = rx.open_derivations();
        for e in 3..1000u64 {
            let mut f = datagram(e * EPOCH_PACKETS, 100);
            assert_eq!(rx.open(&mut f), Err(DropReason::BadTag));
        }
        assert_eq!(rx.open_derivations(), before);
        // Far ahead, then an old epoch is too old.
        for pn in [2 * EPOCH_PACKETS + 7, 3 * EPOCH_PACKETS + 7] {
            let mut d = sealed(&mut tx, pn);
            assert_eq!(rx.open(&mut d), Ok(()), "packet {pn}");
        }
        let mut old = sealed(&mut tx, EPOCH_PACKETS + 9);
        assert_eq!(rx.open(&mut old), Err(DropReason::TooOld));
    }
}
