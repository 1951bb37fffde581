//! Random numbers from the kernel (`getrandom`): session ids, session keys and tokens. Ground floor: the
//! protocol core never calls it (randomness is an input there); the layers that start sessions do.

use crate::wire::KEY_LEN;

/// 64 random bits from the kernel (session ids): never predictable to another party on the path.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Safety: `b` is a valid, writable 8-byte buffer for the duration of the call.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "getrandom failed: {}", std::io::Error::last_os_error());
    u64::from_ne_bytes(b)
}

/// A fresh session key from the kernel's random source (PROTOCOL.md §6): never reused across sessions.
pub fn random_key() -> std::io::Result<[u8; KEY_LEN]> {
    let mut k = [0u8; KEY_LEN];
    // Safety: `k` is a valid, writable buffer of `k.len()` bytes for the duration of the call. getrandom
    // returns at most 256 bytes in one call without EINTR once the pool is initialised; check anyway.
    let n = unsafe { libc::getrandom(k.as_mut_ptr().cast(), k.len(), 0) };
    if n != k.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(k)
}
