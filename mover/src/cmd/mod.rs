//! The `mover` subcommands, as library functions so that `demo` and the tests can run them in-process.

pub mod bench_disk;
pub mod bench_net;
pub mod demo;
pub mod json;
pub mod push;
pub mod serve;
pub mod url;

/// 64 random bits from the kernel (session ids): never predictable to another party on the path.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Safety: `b` is a valid, writable 8-byte buffer for the duration of the call.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "getrandom failed: {}", std::io::Error::last_os_error());
    u64::from_ne_bytes(b)
}
