//! The `mover` subcommands, as library functions so that `demo` and the tests can run them in-process.

pub mod auth;
pub mod bench_cipher;
pub mod bench_disk;
pub mod bench_net;
pub mod demo;
pub mod limits;
pub mod pull;
pub mod push;
pub mod serve;
pub mod session;
pub mod ssh;
pub mod stdio;
pub mod url;

/// 64 random bits from the kernel (session ids): never predictable to another party on the path.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Safety: `b` is a valid, writable 8-byte buffer for the duration of the call.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "getrandom failed: {}", std::io::Error::last_os_error());
    u64::from_ne_bytes(b)
}

/// A fresh session key from the kernel's random source (PROTOCOL.md §6): never reused across sessions.
pub fn random_key() -> Result<[u8; crate::wire::KEY_LEN], String> {
    let mut k = [0u8; crate::wire::KEY_LEN];
    // Safety: `k` is a valid, writable buffer of `k.len()` bytes for the duration of the call. getrandom
    // returns at most 256 bytes in one call without EINTR once the pool is initialised; check anyway.
    let n = unsafe { libc::getrandom(k.as_mut_ptr().cast(), k.len(), 0) };
    if n != k.len() as isize {
        return Err(format!("getrandom for a session key failed: {}", std::io::Error::last_os_error()));
    }
    Ok(k)
}
