//! A dry run of a push (`mover job --dry-run`, PROTOCOL.md §3.6): the client scans its sources as a push
//! would and asks the destination, with a `DryRun` carrying the push's `Hello` and its manifest, what it
//! would do with each file; the receiver answers with `Verdicts` decided read-only
//! ([`crate::files::dry_run_verdicts`]) and `DryRunDone`. Nothing is created, claimed or changed on either
//! side, and no data path is opened.

use super::error::SessionError;
use super::handshake::{check_hello, read_manifest};
use super::limits::Limits;
use super::memory::MemoryBudget;
use super::push::{reach, scan_push_sources, PushOptions};
use super::report::{Direction, Report};
use super::send::block_payload;
use crate::connect::{Location, QueuePlace};
use crate::files::{dry_run_verdicts, EntryKind, RelPath};
use crate::net::ControlChannel;
use crate::proto::config::DEFAULT_WINDOW_BYTES;
use crate::wire::control::{ControlMsg, Hello, MAX_VERDICTS_PER_MESSAGE};
use crate::wire::verdict::Verdict;
use crate::wire::VERSION;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for each answer: the receiver stats (and with `--checksum` hashes) files
/// between messages.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// One file of a dry run: its manifest path, size and what a push would do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileVerdict {
    /// The path as it lands below the destination directory (the manifest's, source name first).
    pub path: String,
    /// The source's size in bytes.
    pub size: u64,
    /// What a push would do.
    pub verdict: Verdict,
}

impl FileVerdict {
    /// Bytes a push would send for this file: all of a new one, a changed one's less what its partial
    /// holds, none of an unchanged one.
    pub fn bytes_to_send(&self) -> u64 {
        use crate::wire::verdict::VerdictKind::*;
        match self.verdict.kind {
            New => self.size,
            Changed => self.size.saturating_sub(self.verdict.held),
            Unchanged => 0,
        }
    }
}

/// What a dry run found at one destination.
#[derive(Clone, Debug, Default)]
pub struct DryRunReport {
    /// Every regular file of the push's manifest, in manifest order.
    pub files: Vec<FileVerdict>,
    /// Entries the scan would not send (sockets, devices, ...), as a push reports them.
    pub skipped: u64,
    /// The destination's control address.
    pub peer: Option<SocketAddr>,
}

/// Asks `opts.url` what a push with `opts` would do, file by file, and changes nothing. Fails as a push
/// would (a missing source, a refused or unreachable destination) with the same exit classes.
pub fn dry_run(opts: &PushOptions) -> Result<DryRunReport, SessionError> {
    if opts.stripe.is_some() {
        return Err(SessionError::Setup("a dry run of a striped push (--via) is not supported: drop --via".into()));
    }
    let dest = Location::parse(&opts.url)?;
    let scanned = scan_push_sources(opts)?;
    let mut reached = reach(opts, dest)?;
    let block_payload = block_payload(reached.data_ip, opts.mtu, opts.net)?;
    let files: Vec<_> = scanned.entries.iter().filter(|e| e.kind == EntryKind::File).collect();
    let window = opts.window_bytes.unwrap_or(DEFAULT_WINDOW_BYTES);
    let hello = Hello {
        version: VERSION as u16,
        block_payload,
        rate_bps: opts.rate_bps,
        window_blocks: (window / u64::from(block_payload)).clamp(64, 1 << 32),
        entry_count: scanned.entries.len() as u64,
        total_bytes: files.iter().map(|e| e.size).sum(),
        cipher: opts.cipher,
        options: opts.options,
        policy: opts.policy,
        dest: reached.dest.clone(),
    };
    let ch = reached.ch();
    let peer = ch.peer_addr();
    let msgs = std::iter::once(ControlMsg::DryRun(hello))
        .chain(scanned.entries.iter().map(|e| ControlMsg::Entry(e.clone())))
        .chain(std::iter::once(ControlMsg::ManifestEnd));
    if let Err(e) = ch.send_all(msgs) {
        return Err(refusal_or(ch, SessionError::lost(format!("sending to {peer}: {e}"))));
    }
    let verdicts = read_verdicts(ch, files.len())?;
    let files = files
        .iter()
        .zip(verdicts)
        .map(|(e, verdict)| FileVerdict { path: e.rel_path.clone(), size: e.size, verdict })
        .collect();
    Ok(DryRunReport { files, skipped: scanned.skipped.len() as u64, peer: Some(peer) })
}

/// The reason a peer that closed early sent, if it sent one; else `otherwise`.
fn refusal_or(ch: &mut ControlChannel, otherwise: SessionError) -> SessionError {
    match ch.recv_timeout(Duration::from_secs(2)) {
        Some(crate::net::ControlEvent::Msg(ControlMsg::Error { message })) => {
            SessionError::Refused { who: "server", message }
        }
        _ => otherwise,
    }
}

/// The receiver's verdicts for `count` files, in order, up to its `DryRunDone`.
fn read_verdicts(ch: &mut ControlChannel, count: usize) -> Result<Vec<Verdict>, SessionError> {
    let mut verdicts = Vec::with_capacity(count);
    let mut place = QueuePlace::default();
    let bad = |why: String| SessionError::Protocol(format!("the server's dry-run answer is invalid: {why}"));
    loop {
        match ch.expect_msg(ANSWER_TIMEOUT, "waiting for its dry-run verdicts").map_err(SessionError::lost)? {
            ControlMsg::Queued { position, waiting } => place.show(position, waiting),
            ControlMsg::Verdicts { first_file_id, verdicts: more } => {
                if first_file_id as usize != verdicts.len() || verdicts.len() + more.len() > count {
                    return Err(bad(format!(
                        "verdicts for files {first_file_id}.. after {} of {count}",
                        verdicts.len()
                    )));
                }
                verdicts.extend(more);
            }
            ControlMsg::DryRunDone { files } if files as usize == count && verdicts.len() == count => {
                return Ok(verdicts)
            }
            ControlMsg::DryRunDone { files } => {
                return Err(bad(format!("done after {} verdicts for {files} files of {count}", verdicts.len())))
            }
            ControlMsg::Error { message } => return Err(SessionError::Refused { who: "server", message }),
            other => return Err(SessionError::Protocol(format!("unexpected answer to a dry run: {other:?}"))),
        }
    }
}

/// The receiving side of a dry run, after the client's `DryRun(hello)`: the manifest, judged as a push's
/// would be (the same limits and memory account), then the verdicts and `DryRunDone`. Read-only: the
/// destination directory below `root` is resolved by `dest_of` and looked at, never created.
pub(super) fn answer_dry_run(
    ch: &mut ControlChannel,
    hello: Hello,
    root: &Path,
    dest_of: &dyn Fn(&str) -> Result<RelPath, SessionError>,
    limits: &Limits,
    memory: &MemoryBudget,
) -> Result<Report, SessionError> {
    check_hello(&hello)?;
    limits.check_hello(&hello)?;
    let mut reservation = memory.reservation(limits.max_manifest_memory);
    let entries = read_manifest(ch, &hello, &mut reservation)?;
    limits.check_entries(&entries)?;
    let dest = dest_of(&hello.dest)?;
    let verdicts = dry_run_verdicts(root, &dest, &entries, &hello.options, u32::from(hello.block_payload))?;
    let count = verdicts.len() as u32;
    let chunks = verdicts.chunks(MAX_VERDICTS_PER_MESSAGE).enumerate();
    let msgs = chunks
        .map(|(i, c)| ControlMsg::Verdicts {
            first_file_id: (i * MAX_VERDICTS_PER_MESSAGE) as u32,
            verdicts: c.to_vec(),
        })
        .chain(std::iter::once(ControlMsg::DryRunDone { files: count }));
    ch.send_all(msgs).map_err(|error| SessionError::Io { what: "sending the dry-run verdicts", error })?;
    // Let the client read them and close first, so our close cannot reset the connection.
    let _ = ch.recv_timeout(Duration::from_secs(5));
    Ok(Report {
        peer: Some(ch.peer_addr()),
        verified: true,
        ..Report::new(Direction::Received, hello.rate_bps, Default::default(), hello.cipher)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::verdict::VerdictKind;

    #[test]
    fn bytes_to_send_by_verdict() {
        let v = |kind, held| FileVerdict { path: "a".into(), size: 100, verdict: Verdict { kind, held } };
        assert_eq!(v(VerdictKind::New, 0).bytes_to_send(), 100);
        assert_eq!(v(VerdictKind::Changed, 30).bytes_to_send(), 70);
        assert_eq!(v(VerdictKind::Changed, 0).bytes_to_send(), 100);
        assert_eq!(v(VerdictKind::Unchanged, 0).bytes_to_send(), 0);
    }
}
