//! Extended attributes through libc: listed and read without following symlinks (`llistxattr`,
//! `lgetxattr`), set on an open temporary file (`fsetxattr`); a link's own are set by descriptor
//! ([`super::beneath::Dir::set_xattr`]).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Every extended attribute of `path` itself (a symlink's own, not its target's), names as text. Names
/// that are not UTF-8 are an error (they could not travel).
pub fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = cpath(path)?;
    // Safety: a NULL buffer of size 0 asks only for the length; `c` is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // A file system without extended attributes has none to send.
        return if e.raw_os_error() == Some(libc::ENOTSUP) { Ok(Vec::new()) } else { Err(e) };
    }
    let mut names = vec![0u8; n as usize];
    // Safety: `names` has `names.len()` writable bytes; the list may have grown since, then ERANGE.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let text = std::str::from_utf8(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "an extended attribute name is not UTF-8"))?;
        let cname = CString::new(name).expect("split at NUL");
        out.push((text.to_string(), get(&c, &cname)?));
    }
    Ok(out)
}

/// Sets one attribute on an open file.
pub fn set_xattr_fd(file: &File, name: &str, value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // Safety: a valid descriptor, a NUL-terminated name and `value.len()` readable bytes.
    let r = unsafe { libc::fsetxattr(file.as_raw_fd(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get(path: &CStr, name: &CStr) -> io::Result<Vec<u8>> {
    // The kernel's limit is 64 KiB; a larger buffer than any value can be is simpler than asking twice.
    let mut buf = vec![0u8; crate::wire::entry::MAX_XATTR_VALUE_LEN + 1];
    // Safety: `buf` has `buf.len()` writable bytes; path and name are NUL-terminated.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}
