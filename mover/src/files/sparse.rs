//! Keeping sparse files sparse: a run of zeros bound for a file the sender marked sparse is punched out
//! (`fallocate(PUNCH_HOLE)`) instead of written. Punching rather than skipping, because a resumed partial
//! may hold old bytes where the hole belongs: a punched range reads as zeros whatever was there.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Whether every byte of `buf` is zero.
pub fn is_all_zero(buf: &[u8]) -> bool {
    // Safety: every bit pattern is a valid u128; `align_to` hands back the unaligned ends as bytes.
    let (head, body, tail) = unsafe { buf.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && body.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Makes `[offset, offset + len)` of the file a hole (reads as zeros, allocates nothing), keeping its size.
/// Fails with the OS's error where the file system cannot punch holes: the caller then writes the zeros.
pub fn punch_hole(file: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // Safety: a valid descriptor; fallocate has no memory arguments.
    if unsafe { libc::fallocate(file.as_fd().as_raw_fd(), mode, off, n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn zero_detection() {
        let mut b = vec![0u8; 4099];
        assert!(is_all_zero(&b) && is_all_zero(&b[1..]) && is_all_zero(&[]));
        for i in [0, 1, 17, 4096, 4098] {
            b[i] = 1;
            assert!(!is_all_zero(&b), "byte {i}");
            assert!(!is_all_zero(&b[i..]), "from byte {i}");
            b[i] = 0;
        }
    }

    #[test]
    fn punched_garbage_reads_as_zeros_and_frees_blocks() {
        let t = TempDir::new("sparse");
        let f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(t.path().join("f"))
            .unwrap();
        f.write_all_at(&vec![0xab; 4 << 20], 0).unwrap();
        f.sync_all().unwrap();
        let before = f.metadata().unwrap().blocks();
        match punch_hole(&f, 1 << 20, 2 << 20) {
            Ok(()) => {}
            Err(e) => return crate::testing::skip_or_fail("punched_garbage_reads_as_zeros", &format!("{e}")),
        }
        let mut back = vec![1u8; 2 << 20];
        f.read_exact_at(&mut back, 1 << 20).unwrap();
        assert!(is_all_zero(&back));
        assert_eq!(f.metadata().unwrap().len(), 4 << 20);
        assert!(f.metadata().unwrap().blocks() < before, "no blocks freed");
    }
}
