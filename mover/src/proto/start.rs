//! Where round 0 starts from: the files the receiver already holds (sync) and the byte ranges of partial
//! files it already holds (resume) (PROTOCOL.md §3.2 `Skip`/`Have`, §4.1).
//!
//! The receiver decides, from its disk, before any data flows; it sends the plan as `Skip` and `Have`
//! messages between `ManifestEnd` and `Accept`; the sender rebuilds it with [`StartPlan::absorb`] and checks
//! it with [`StartPlan::validate`] before trusting a byte of it. Both ends then derive the same round-0
//! numbering from it ([`crate::proto::plan::RoundPlan::for_start`]). The whole-file hash still covers every
//! byte of every sent file, held ranges included, so a receiver that claims bytes it does not hold gets the
//! file again whole in round 1.

use crate::wire::control::{ControlMsg, MAX_IDS_PER_MESSAGE, MAX_RANGES_PER_MESSAGE};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What round 0 does not send. The default plan sends everything.
///
/// Ordered sets, not sorted vectors: a peer's messages may come in any order, and inserting into a vector
/// out of order would cost quadratic time on a hostile plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartPlan {
    /// Files the receiver holds whole: not sent, not verified, not committed by the core.
    skip: BTreeSet<u32>,
    /// Per file, `(offset, len)` ranges the receiver holds: not sent, but hashed.
    have: BTreeMap<u32, Vec<(u64, u64)>>,
}

/// Why a start plan cannot be used. A receiver can send anything here, so each defect is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// A file id beyond the manifest's files.
    UnknownFile {
        /// The id named.
        file_id: u32,
        /// Regular files in the manifest.
        files: u64,
    },
    /// A file named twice across `Skip` and `Have` messages.
    Duplicate {
        /// The id named twice.
        file_id: u32,
    },
    /// A range that is empty, does not start on a block boundary, or is not a whole number of blocks
    /// without ending at the file's end.
    OffGrid {
        /// File id.
        file_id: u32,
        /// Range start.
        offset: u64,
        /// Range length.
        len: u64,
        /// The session's block payload.
        block: u64,
    },
    /// Ranges not ascending, or overlapping.
    Overlapping {
        /// File id.
        file_id: u32,
        /// Start of the range that overlaps or goes backwards.
        offset: u64,
    },
    /// A range ending past the file's size.
    PastEnd {
        /// File id.
        file_id: u32,
        /// Where the range ends (saturated on overflow).
        end: u64,
        /// The file's size in the manifest.
        size: u64,
    },
    /// Held ranges for a file also skipped.
    HaveOnSkipped {
        /// File id.
        file_id: u32,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the receiver's resume plan is invalid: ")?;
        match self {
            StartError::UnknownFile { file_id, files } => {
                write!(f, "file id {file_id} is not in the manifest ({files} files)")?
            }
            StartError::Duplicate { file_id } => write!(f, "file id {file_id} is named twice")?,
            StartError::OffGrid { file_id, offset, len, block } => {
                write!(f, "range ({offset}, {len}) of file id {file_id} is not on the {block}-byte block grid")?
            }
            StartError::Overlapping { file_id, offset } => {
                write!(f, "ranges of file id {file_id} overlap or go backwards at offset {offset}")?
            }
            StartError::PastEnd { file_id, end, size } => {
                write!(f, "a range of file id {file_id} ends at {end}, past its size {size}")?
            }
            StartError::HaveOnSkipped { file_id } => write!(f, "file id {file_id} is both skipped and partly held")?,
        }
        write!(f, " (a receiver bug; rerun with --no-resume to send everything)")
    }
}

impl std::error::Error for StartError {}

impl StartPlan {
    /// Marks `file_id` as held whole: it is not sent.
    pub fn skip_file(&mut self, file_id: u32) {
        self.skip.insert(file_id);
    }

    /// Records the `(offset, len)` ranges of `file_id` the receiver holds, replacing any recorded before.
    /// An empty list records nothing. At most [`MAX_RANGES_PER_MESSAGE`] are kept (a file appears in one
    /// `Have` message); the rest are sent again, which is always safe.
    pub fn add_have(&mut self, file_id: u32, mut ranges: Vec<(u64, u64)>) {
        if ranges.is_empty() {
            self.have.remove(&file_id);
            return;
        }
        ranges.truncate(MAX_RANGES_PER_MESSAGE);
        self.have.insert(file_id, ranges);
    }

    /// Whether the plan sends everything.
    pub fn is_empty(&self) -> bool {
        self.skip.is_empty() && self.have.is_empty()
    }

    /// The skipped file ids, ascending.
    pub fn skipped(&self) -> impl Iterator<Item = u32> + '_ {
        self.skip.iter().copied()
    }

    /// Whether `file_id` is skipped.
    pub fn is_skipped(&self, file_id: u32) -> bool {
        self.skip.contains(&file_id)
    }

    /// The ranges of `file_id` the receiver holds (empty if none).
    pub fn have(&self, file_id: u32) -> &[(u64, u64)] {
        self.have.get(&file_id).map_or(&[], |r| r.as_slice())
    }

    /// Files with held ranges, ascending, with their ranges.
    pub fn haves(&self) -> impl Iterator<Item = (u32, &[(u64, u64)])> {
        self.have.iter().map(|(id, r)| (*id, r.as_slice()))
    }

    /// Bytes round 0 does not send because the receiver holds them (of a validated plan).
    pub fn resumed_bytes(&self) -> u64 {
        self.have.values().flatten().fold(0u64, |a, &(_, len)| a.saturating_add(len))
    }

    /// Files skipped.
    pub fn skipped_files(&self) -> u64 {
        self.skip.len() as u64
    }

    /// Bytes of the skipped files, for files of `sizes` (file id = index; unknown ids count 0).
    pub fn skipped_bytes(&self, sizes: &[u64]) -> u64 {
        self.skip.iter().map(|&id| sizes.get(id as usize).copied().unwrap_or(0)).sum()
    }

    /// The messages that carry the plan, each under the frame limit; send them all before `Accept`.
    pub fn to_messages(&self) -> Vec<ControlMsg> {
        let skip: Vec<u32> = self.skip.iter().copied().collect();
        let mut out: Vec<ControlMsg> =
            skip.chunks(MAX_IDS_PER_MESSAGE).map(|c| ControlMsg::Skip { file_ids: c.to_vec() }).collect();
        out.extend(self.have.iter().map(|(id, r)| ControlMsg::Have { file_id: *id, ranges: r.clone() }));
        out
    }

    /// Adds a received `Skip` or `Have` to the plan: `Ok(true)` if it was one, `Ok(false)` for any other
    /// message (the caller's to handle). A file named a second time is an error; the sizes and the grid
    /// are checked by [`StartPlan::validate`] once `Accept` arrived. Each entry costs the sender about as
    /// much memory as its bytes on the wire cost the peer.
    pub fn absorb(&mut self, msg: &ControlMsg) -> Result<bool, StartError> {
        match msg {
            ControlMsg::Skip { file_ids } => {
                for &id in file_ids {
                    if self.is_skipped(id) || self.have.contains_key(&id) {
                        return Err(StartError::Duplicate { file_id: id });
                    }
                    self.skip_file(id);
                }
                Ok(true)
            }
            ControlMsg::Have { file_id, ranges } => {
                if self.is_skipped(*file_id) {
                    return Err(StartError::HaveOnSkipped { file_id: *file_id });
                }
                if self.have.contains_key(file_id) {
                    return Err(StartError::Duplicate { file_id: *file_id });
                }
                // Recorded even when empty, so a second `Have` for the file is still a duplicate.
                self.have.insert(*file_id, ranges.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Checks the plan against the manifest's file `sizes` (file id = index) and the block payload `block`:
    /// every id known, ranges on the grid, ascending, disjoint and inside the file, none on
    /// a skipped file.
    pub fn validate(&self, sizes: &[u64], block: u64) -> Result<(), StartError> {
        assert!(block > 0, "block payload 0");
        let files = sizes.len() as u64;
        let known = |file_id: u32| {
            if (file_id as u64) < files {
                Ok(())
            } else {
                Err(StartError::UnknownFile { file_id, files })
            }
        };
        for &id in &self.skip {
            known(id)?;
        }
        for (&id, ranges) in &self.have {
            known(id)?;
            if self.is_skipped(id) {
                return Err(StartError::HaveOnSkipped { file_id: id });
            }
            let size = sizes[id as usize];
            let mut prev_end = 0u64;
            for (k, &(offset, len)) in ranges.iter().enumerate() {
                let end = offset.checked_add(len);
                if len == 0 || offset % block != 0 || (len % block != 0 && end != Some(size)) {
                    return Err(StartError::OffGrid { file_id: id, offset, len, block });
                }
                let end = end.filter(|&e| e <= size).ok_or(StartError::PastEnd {
                    file_id: id,
                    end: offset.saturating_add(len),
                    size,
                })?;
                if k > 0 && offset < prev_end {
                    return Err(StartError::Overlapping { file_id: id, offset });
                }
                prev_end = end;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 100;

    fn plan(skip: &[u32], have: &[(u32, &[(u64, u64)])]) -> StartPlan {
        let mut p = StartPlan::default();
        skip.iter().for_each(|&id| p.skip_file(id));
        have.iter().for_each(|(id, r)| p.add_have(*id, r.to_vec()));
        p
    }

    #[test]
    fn a_good_plan_validates_and_counts() {
        let sizes = [1000, 250, 0, 10_000];
        let p = plan(&[2, 0], &[(3, &[(0, 300), (500, 200), (9_900, 100)]), (1, &[(200, 50)])]);
        assert_eq!(p.validate(&sizes, B), Ok(()));
        assert_eq!(p.skipped().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!((p.skipped_files(), p.skipped_bytes(&sizes), p.resumed_bytes()), (2, 1000, 650));
        assert_eq!(p.have(1), &[(200, 50)]);
        assert!(p.have(0).is_empty());
        assert!(StartPlan::default().validate(&sizes, B).is_ok() && StartPlan::default().is_empty());
    }

    /// Every defect is refused by name, and its message says what to do.
    #[test]
    fn every_defect_is_refused() {
        let sizes = [1000, 250];
        let cases: Vec<(StartPlan, StartError)> = vec![
            (plan(&[2], &[]), StartError::UnknownFile { file_id: 2, files: 2 }),
            (plan(&[], &[(7, &[(0, 100)])]), StartError::UnknownFile { file_id: 7, files: 2 }),
            (plan(&[], &[(0, &[(50, 100)])]), StartError::OffGrid { file_id: 0, offset: 50, len: 100, block: B }),
            (plan(&[], &[(0, &[(0, 150)])]), StartError::OffGrid { file_id: 0, offset: 0, len: 150, block: B }),
            (plan(&[], &[(0, &[(0, 0)])]), StartError::OffGrid { file_id: 0, offset: 0, len: 0, block: B }),
            (plan(&[], &[(0, &[(0, 300), (200, 100)])]), StartError::Overlapping { file_id: 0, offset: 200 }),
            (plan(&[], &[(0, &[(500, 100), (100, 100)])]), StartError::Overlapping { file_id: 0, offset: 100 }),
            (plan(&[], &[(1, &[(200, 100)])]), StartError::PastEnd { file_id: 1, end: 300, size: 250 }),
            (plan(&[], &[(0, &[(900, 200)])]), StartError::PastEnd { file_id: 0, end: 1100, size: 1000 }),
            (
                plan(&[], &[(0, &[(u64::MAX - 99, 100)])]),
                StartError::OffGrid { file_id: 0, offset: u64::MAX - 99, len: 100, block: B },
            ),
            (
                plan(&[], &[(0, &[(9_999_999_900, u64::MAX - 50)])]),
                StartError::OffGrid { file_id: 0, offset: 9_999_999_900, len: u64::MAX - 50, block: B },
            ),
            (
                plan(&[], &[(0, &[(9_999_999_900, u64::MAX / 100 * 100)])]),
                StartError::PastEnd { file_id: 0, end: u64::MAX, size: 1000 },
            ),
            (plan(&[0], &[(0, &[(0, 100)])]), StartError::HaveOnSkipped { file_id: 0 }),
        ];
        for (p, want) in cases {
            assert_eq!(p.validate(&sizes, B), Err(want.clone()), "{p:?}");
            let line = want.to_string();
            assert!(line.contains("--no-resume") && !line.contains('\n'), "{line}");
        }
    }

    /// The messages rebuild the same plan, chunked under the frame limit; a file named twice across
    /// messages is refused while absorbing.
    #[test]
    fn messages_round_trip() {
        let mut p = plan(&[1, 3], &[(0, &[(0, 100), (300, 50)]), (2, &[(100, 100)])]);
        for id in 10..(MAX_IDS_PER_MESSAGE as u32 + 20) {
            p.skip_file(id);
        }
        let msgs = p.to_messages();
        assert_eq!(msgs.len(), 2 + 2, "two Skip chunks, one Have per file");
        let mut back = StartPlan::default();
        for m in &msgs {
            let mut frame = Vec::new();
            m.encode(&mut frame);
            assert!(frame.len() - 4 <= crate::wire::control::MAX_FRAME_LEN);
            let m = ControlMsg::decode(&frame[4..]).unwrap();
            assert_eq!(back.absorb(&m), Ok(true));
        }
        assert_eq!(back, p);
        assert_eq!(back.absorb(&ControlMsg::ManifestEnd), Ok(false));
        assert_eq!(back.absorb(&ControlMsg::Skip { file_ids: vec![2] }), Err(StartError::Duplicate { file_id: 2 }));
        let again = ControlMsg::Have { file_id: 0, ranges: vec![(0, 100)] };
        assert_eq!(back.absorb(&again), Err(StartError::Duplicate { file_id: 0 }));
        let on_skipped = ControlMsg::Have { file_id: 3, ranges: vec![(0, 100)] };
        assert_eq!(back.absorb(&on_skipped), Err(StartError::HaveOnSkipped { file_id: 3 }));
        assert_eq!(back.absorb(&ControlMsg::Skip { file_ids: vec![1] }), Err(StartError::Duplicate { file_id: 1 }));
    }
}
