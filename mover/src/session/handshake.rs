//! The first messages of a session, as the receiving side reads them: the sender's `Hello`, judged against
//! what any server accepts, and the manifest it announces (PROTOCOL.md §3).

use super::error::SessionError;
use super::memory::{entry_heap_bytes, Reservation};
use crate::files::{Entry, EntryKind};
use crate::net::ControlChannel;
use crate::wire::control::{ControlMsg, Hello};
use crate::wire::data::DATA_OVERHEAD;
use crate::wire::VERSION;
use std::time::Duration;

/// Most manifest entries one session may announce: bounds the memory a client can make the server spend.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// Most extended-attribute bytes (names and values) one manifest may carry: each entry is bounded on the
/// wire, this bounds their sum, which the receiver holds until the session ends.
pub const MAX_MANIFEST_XATTR_BYTES: usize = 64 << 20;
/// How long the receiving side waits for a handshake message (the daemon's handshake as a whole has
/// deadlines: [`super::admission::handshake_deadline`], [`super::admission::manifest_deadline`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Judges what a `Hello` announces against what any server accepts (the configured limits come after:
/// [`super::limits::Limits::check_hello`]).
pub fn check_hello(h: &Hello) -> Result<(), SessionError> {
    if h.version != VERSION as u16 {
        return Err(SessionError::Protocol(format!(
            "protocol version {} is not supported (this server speaks {VERSION})",
            h.version
        )));
    }
    if h.block_payload < 64 || h.block_payload as usize + DATA_OVERHEAD > 65_507 {
        return Err(SessionError::Protocol(format!(
            "block size {} is outside 64..={}",
            h.block_payload,
            65_507 - DATA_OVERHEAD
        )));
    }
    if !(64..=1 << 32).contains(&h.window_blocks) {
        return Err(SessionError::Protocol(format!("window of {} blocks is outside 64..=2^32", h.window_blocks)));
    }
    if h.entry_count > MAX_ENTRIES {
        return Err(SessionError::Protocol(format!(
            "{} entries exceed this server's limit of {MAX_ENTRIES}",
            h.entry_count
        )));
    }
    if h.rate_bps == 0 {
        return Err(SessionError::Protocol("rate must be positive".into()));
    }
    Ok(())
}

/// Entries the manifest's vector grows by at least: its growth is reserved before it happens.
const MANIFEST_GROWTH_ENTRIES: usize = 4096;

/// Reads the manifest a `Hello` announced, up to `ManifestEnd`, checking that it matches the announcement.
/// Every entry's bytes (and each growth of the vector) are reserved from `memory` before the entry is
/// kept, so a manifest past the session's or the daemon's budget is refused as it arrives, not when it
/// has been held.
pub fn read_manifest(
    ch: &mut ControlChannel,
    hello: &Hello,
    memory: &mut Reservation,
) -> Result<Vec<Entry>, SessionError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut total: u64 = 0;
    let mut xattr_bytes: usize = 0;
    // One deadline for the whole manifest, from its announced size: a peer that trickles entries just
    // inside a per-message timeout is cut all the same.
    let deadline = super::admission::manifest_deadline(hello.entry_count);
    loop {
        match ch.expect_msg_by(deadline, "reading the manifest").map_err(SessionError::Protocol)? {
            ControlMsg::Entry(e) => {
                if !e.xattrs.is_empty() && !hello.options.xattrs {
                    return Err(SessionError::Protocol("extended attributes sent without --xattrs".into()));
                }
                xattr_bytes += e.xattrs.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
                if xattr_bytes > MAX_MANIFEST_XATTR_BYTES {
                    return Err(SessionError::NotAllowed(format!(
                        "the manifest carries more than {} MiB of extended attributes (this server's limit)",
                        MAX_MANIFEST_XATTR_BYTES >> 20
                    )));
                }
                if entries.len() as u64 >= hello.entry_count {
                    return Err(SessionError::Protocol(format!(
                        "manifest has more entries than the {} announced",
                        hello.entry_count
                    )));
                }
                total = total
                    .checked_add(e.size)
                    .ok_or_else(|| SessionError::Protocol("manifest sizes overflow".into()))?;
                if entries.len() == entries.capacity() {
                    // Doubling, but never past what was announced (which the count above holds to).
                    let more =
                        entries.len().max(MANIFEST_GROWTH_ENTRIES).min(hello.entry_count as usize - entries.len());
                    memory.grow_manifest((more * std::mem::size_of::<Entry>()) as u64)?;
                    entries.reserve_exact(more);
                }
                memory.grow_manifest(entry_heap_bytes(&e))?;
                entries.push(e);
            }
            ControlMsg::ManifestEnd => break,
            other => return Err(SessionError::Protocol(format!("expected a manifest entry, got {other:?}"))),
        }
    }
    if entries.len() as u64 != hello.entry_count || total != hello.total_bytes {
        return Err(SessionError::Protocol(format!(
            "manifest has {} entries and {total} bytes, but {} and {} were announced",
            entries.len(),
            hello.entry_count,
            hello.total_bytes
        )));
    }
    if entries.iter().filter(|e| e.kind == EntryKind::File).count() > u32::MAX as usize {
        return Err(SessionError::Protocol("too many files".into()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::memory::{entry_bytes, MemoryBudget};
    use crate::wire::Cipher;
    use std::net::TcpListener;

    fn hello(entries: u64) -> Hello {
        Hello {
            version: VERSION as u16,
            block_payload: 1400,
            rate_bps: 1,
            window_blocks: 64,
            entry_count: entries,
            total_bytes: 0,
            cipher: Cipher::default(),
            options: Default::default(),
            policy: Default::default(),
            dest: String::new(),
        }
    }

    fn entry(i: u64) -> Entry {
        Entry { rel_path: format!("{i:06}/{}", "x".repeat(1000)), kind: EntryKind::Dir, ..Entry::default() }
    }

    /// A channel that has received `n` entries (and `ManifestEnd`) from a peer that has closed.
    fn channel_with(n: u64) -> ControlChannel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let mut ch = ControlChannel::connect(addr, Duration::from_secs(5)).unwrap();
            // Past the budget the reader stops taking them: a failed send is what a refused peer sees.
            let _ = ch.send_all((0..n).map(|i| ControlMsg::Entry(entry(i))).chain([ControlMsg::ManifestEnd]));
        });
        let ch = ControlChannel::new(listener.accept().unwrap().0).unwrap();
        std::thread::spawn(move || sender.join());
        ch
    }

    #[test]
    fn a_manifest_within_its_budget_is_reserved_entry_by_entry() {
        let budget = MemoryBudget::new(64 << 20);
        let mut memory = budget.reservation(8 << 20);
        let entries = read_manifest(&mut channel_with(5000), &hello(5000), &mut memory).unwrap();
        assert_eq!(entries.len(), 5000);
        let held: u64 = entries.iter().map(entry_bytes).sum();
        // Every entry, and the vector's spare capacity too.
        assert!(memory.manifest_bytes() >= held, "{} < {held}", memory.manifest_bytes());
        assert_eq!(budget.stats().reserved_bytes, memory.bytes());
        drop(memory);
        assert_eq!(budget.stats().reserved_bytes, 0);
    }

    #[test]
    fn a_manifest_past_its_budget_is_refused_as_it_arrives() {
        let budget = MemoryBudget::new(64 << 20);
        let mut memory = budget.reservation(1 << 20);
        let err = read_manifest(&mut channel_with(5000), &hello(5000), &mut memory).unwrap_err().to_string();
        assert!(err.contains("--max-manifest-memory"), "{err}");
        assert!(memory.manifest_bytes() <= 1 << 20);
        assert_eq!(budget.stats().session_refusals, 1);
    }
}
