//! The sender's [`BlockSource`] over real files.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::fdcache::FdCache;
use crate::proto::BlockSource;

/// Reads blocks from the scanned files (`Scanned::file_paths`, index = file id) with positional reads,
/// keeping a bounded number of them open.
pub struct SourceFiles {
    paths: Vec<PathBuf>,
    cache: FdCache,
}

impl SourceFiles {
    /// How many files [`SourceFiles::new`] keeps open at once.
    pub const DEFAULT_MAX_OPEN: usize = 64;

    /// A source over `paths` (index = file id), keeping at most [`SourceFiles::DEFAULT_MAX_OPEN`] open.
    pub fn new(paths: Vec<PathBuf>) -> SourceFiles {
        SourceFiles::with_max_open(paths, SourceFiles::DEFAULT_MAX_OPEN)
    }

    /// A source keeping at most `max_open` files open (at least one).
    pub fn with_max_open(paths: Vec<PathBuf>, max_open: usize) -> SourceFiles {
        SourceFiles { paths, cache: FdCache::new(max_open) }
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.paths.len()
    }
}

impl BlockSource for SourceFiles {
    fn read_block(&mut self, file_id: u32, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let path = self
            .paths
            .get(file_id as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no file with id {file_id}")))?;
        let file = self.cache.get_or_open(file_id, || {
            File::open(path).map_err(|e| io::Error::new(e.kind(), format!("opening '{}': {e}", path.display())))
        })?;
        // Positional reads: no seek state, so interleaved retransmissions of one file need no care.
        file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    e.kind(),
                    format!(
                        "reading '{}': the file shrank since it was scanned (no {} bytes at offset {offset})",
                        path.display(),
                        buf.len()
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("reading '{}': {e}", path.display()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::testutil::TempDir;
    use std::fs;

    #[test]
    fn reads_blocks_across_more_files_than_open_slots() {
        let t = TempDir::new("source");
        let paths: Vec<PathBuf> = (0..5u8)
            .map(|i| {
                let p = t.path().join(format!("f{i}"));
                fs::write(&p, (0..100u8).map(|b| b.wrapping_add(i * 50)).collect::<Vec<_>>()).unwrap();
                p
            })
            .collect();
        let mut src = SourceFiles::with_max_open(paths, 2);
        assert_eq!(src.file_count(), 5);
        let mut buf = [0u8; 10];
        for round in 0..3u64 {
            for i in (0..5u32).rev() {
                src.read_block(i, 10 * round, &mut buf).unwrap();
                let want: Vec<u8> = (0..10u8).map(|b| (b + 10 * round as u8).wrapping_add(i as u8 * 50)).collect();
                assert_eq!(buf.as_slice(), want.as_slice());
                assert!(src.cache.len() <= 2);
            }
        }
        // The last block of a file, exactly up to its end.
        src.read_block(4, 90, &mut buf).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let t = TempDir::new("source");
        let p = t.path().join("shrinks");
        fs::write(&p, vec![1u8; 100]).unwrap();
        let gone = t.path().join("gone");
        let mut src = SourceFiles::new(vec![p.clone(), gone.clone()]);
        let mut buf = [0u8; 50];
        src.read_block(0, 50, &mut buf).unwrap();
        fs::File::options().write(true).open(&p).unwrap().set_len(60).unwrap();
        let e = src.read_block(0, 50, &mut buf).unwrap_err();
        assert!(e.to_string().contains(&format!("'{}'", p.display())) && e.to_string().contains("shrank"), "{e}");

        let e = src.read_block(1, 0, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains(&format!("opening '{}'", gone.display())), "{e}");
        let e = src.read_block(2, 0, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
