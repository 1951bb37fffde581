//! Reading a `--files-from` list: paths relative to the source directory, one a line (or NUL-separated
//! with `--from0`), from a file or from standard input (`-`). Judging the paths is the scan's job
//! ([`ScanOptions::files_from`](super::ScanOptions)); this only splits the text.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{FileOp, FilesError};

/// The paths of a list read from `source` (`-` for standard input), split at NUL bytes with `nul`, else
/// at newlines. Empty entries are ignored; a leading `./` and a trailing `/` are dropped, as users write
/// them (`./run1/`); a `\r` before a newline is dropped too.
pub fn read_files_from(source: &Path, nul: bool) -> Result<Vec<String>, FilesError> {
    let mut bytes = Vec::new();
    let read = if source == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(source).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    read.map_err(|error| FilesError::Io { op: FileOp::Read, path: source.to_path_buf(), error })?;
    parse_files_from(&bytes, nul).map_err(|problem| FilesError::Source { path: PathBuf::from(source), problem })
}

/// Splits a list (see [`read_files_from`]); a path that is not UTF-8 is an error naming its line.
pub fn parse_files_from(bytes: &[u8], nul: bool) -> Result<Vec<String>, String> {
    let sep = if nul { 0 } else { b'\n' };
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == sep).enumerate() {
        let raw = if nul { raw } else { raw.strip_suffix(b"\r").unwrap_or(raw) };
        let text = std::str::from_utf8(raw)
            .map_err(|_| format!("entry {} of the --files-from list is not valid UTF-8", i + 1))?;
        let mut p = text;
        while let Some(rest) = p.strip_prefix("./") {
            p = rest;
        }
        let p = p.strip_suffix('/').unwrap_or(p);
        if !p.is_empty() {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_nul_separated_lists() {
        let l = parse_files_from(b"a.txt\n./sub/b\r\n\nsub/dir/\n", false).unwrap();
        assert_eq!(l, ["a.txt", "sub/b", "sub/dir"]);
        let l = parse_files_from(b"with\nnewline\0other\0", true).unwrap();
        assert_eq!(l, ["with\nnewline", "other"]);
        // Escaping paths are kept as written: the scan refuses them with the reason.
        assert_eq!(parse_files_from(b"../x\n/etc/passwd", false).unwrap(), ["../x", "/etc/passwd"]);
        assert!(parse_files_from(b"ok\n\xff\n", false).unwrap_err().contains("entry 2"));
    }
}
