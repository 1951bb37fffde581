//! A dry run's answer for one file (`mover job --dry-run`, PROTOCOL.md §3.6): what a push with the same
//! `Hello` and manifest would do with it, as the receiver decides it without changing anything. Carried by
//! `ControlMsg::Verdicts` (type 32) as 9 bytes a file: `kind: u8`, `held: u64`.

use std::fmt;

/// Bytes one verdict takes on the wire.
pub const VERDICT_LEN: usize = 9;

/// What a push would do with one file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum VerdictKind {
    /// Not at the destination (nor a partial to resume): sent whole.
    New,
    /// At the destination but not current by the push's `--overwrite`/`--checksum` rule, or a partial of
    /// an earlier run to resume: sent, less what a partial holds.
    Changed,
    /// Current at the destination: not sent.
    Unchanged,
}

impl VerdictKind {
    /// The name in `mover job --dry-run`'s table and JSON.
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::New => "new",
            VerdictKind::Changed => "changed",
            VerdictKind::Unchanged => "unchanged",
        }
    }

    /// The wire code (PROTOCOL.md §3.6).
    pub fn code(self) -> u8 {
        match self {
            VerdictKind::New => 0,
            VerdictKind::Changed => 1,
            VerdictKind::Unchanged => 2,
        }
    }

    /// The kind of wire code `code`, if it is one.
    pub fn from_code(code: u8) -> Option<VerdictKind> {
        match code {
            0 => Some(VerdictKind::New),
            1 => Some(VerdictKind::Changed),
            2 => Some(VerdictKind::Unchanged),
            _ => None,
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One file's verdict: its kind and, for a partial to resume, the bytes the partial already holds on the
/// session's block grid (what the push would not send again; 0 for every other file).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What a push would do.
    pub kind: VerdictKind,
    /// Bytes a partial of an earlier run holds and a push would resume from; only a `Changed` file has any.
    pub held: u64,
}

impl Verdict {
    /// Appends the verdict's 9 bytes.
    pub fn put(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        out.extend_from_slice(&self.held.to_be_bytes());
    }

    /// The verdict in `bytes` (exactly [`VERDICT_LEN`] of them), refusing an unknown kind and held bytes on
    /// a file that is not `Changed` (no receiver sends either).
    pub fn parse(bytes: &[u8; VERDICT_LEN]) -> Option<Verdict> {
        let kind = VerdictKind::from_code(bytes[0])?;
        let held = u64::from_be_bytes(bytes[1..].try_into().expect("8 bytes"));
        if held != 0 && kind != VerdictKind::Changed {
            return None;
        }
        Some(Verdict { kind, held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip_and_odd_ones_are_refused() {
        for v in [
            Verdict { kind: VerdictKind::New, held: 0 },
            Verdict { kind: VerdictKind::Changed, held: 0 },
            Verdict { kind: VerdictKind::Changed, held: u64::MAX },
            Verdict { kind: VerdictKind::Unchanged, held: 0 },
        ] {
            let mut out = Vec::new();
            v.put(&mut out);
            assert_eq!(Verdict::parse(&out.try_into().unwrap()), Some(v));
        }
        assert_eq!(Verdict::parse(&[3, 0, 0, 0, 0, 0, 0, 0, 0]), None, "unknown kind");
        assert_eq!(Verdict::parse(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), None, "a new file holds nothing");
        assert_eq!(Verdict::parse(&[2, 0, 0, 0, 0, 0, 0, 0, 1]), None, "an unchanged file holds nothing");
        assert_eq!(VerdictKind::Unchanged.to_string(), "unchanged");
    }
}
