//! A bounded set of open files keyed by file id, closing the least recently used one when full.
//!
//! A session may hold millions of files, and the per-process fd limit is often 1024: the sender and the
//! receiver keep only a few files open and reopen the rest on demand (the receiver through its bounded
//! claims, module `claims`, this cache the sender). Blocks are requested mostly in file
//! order, so hits dominate and the linear scan on a miss (over at most `max` entries) is cheap.

use std::collections::HashMap;
use std::fs::File;
use std::io;

pub(crate) struct FdCache {
    open: HashMap<u32, (File, u64)>,
    max: usize,
    tick: u64,
}

impl FdCache {
    /// A cache holding at most `max` files (at least one).
    pub(crate) fn new(max: usize) -> FdCache {
        FdCache { open: HashMap::new(), max: max.max(1), tick: 0 }
    }

    /// The open file for `id`, opening it with `open` (after closing the least recently used file if the
    /// cache is full) if it is not open.
    pub(crate) fn get_or_open(&mut self, id: u32, open: impl FnOnce() -> io::Result<File>) -> io::Result<&File> {
        self.tick += 1;
        if !self.open.contains_key(&id) {
            let file = open()?;
            if self.open.len() >= self.max {
                if let Some(lru) = self.open.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k) {
                    self.open.remove(&lru);
                }
            }
            self.open.insert(id, (file, self.tick));
        }
        // Just inserted or already present.
        let slot = self.open.get_mut(&id).ok_or_else(|| io::Error::other("file cache lost an entry"))?;
        slot.1 = self.tick;
        Ok(&slot.0)
    }

    /// How many files are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}
