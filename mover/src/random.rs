//! Random numbers from the kernel (`getrandom`): session ids, session keys and tokens. Ground floor: the
//! protocol core never calls it (randomness is an input there); the layers that start sessions do.

/// 64 random bits from the kernel (session ids): never predictable to another party on the path.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Safety: `b` is a valid, writable 8-byte buffer for the duration of the call.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "getrandom failed: {}", std::io::Error::last_os_error());
    u64::from_ne_bytes(b)
}

/// `N` fresh random bytes from the kernel (a session key: PROTOCOL.md §6, never reused across sessions).
/// Generic over the length so this floor needs no wire constant.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut k = [0u8; N];
    // Safety: `k` is a valid, writable buffer of `k.len()` bytes for the duration of the call. getrandom
    // returns at most 256 bytes in one call without EINTR once the pool is initialised; check anyway.
    let n = unsafe { libc::getrandom(k.as_mut_ptr().cast(), k.len(), 0) };
    if n != k.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(k)
}
