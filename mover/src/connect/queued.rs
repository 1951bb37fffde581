//! What a client shows while the daemon keeps it waiting in its queue (`Queued`, PROTOCOL.md §3.5).

/// A waiting client's place in the daemon's queue, printed on stderr once per change (the daemon repeats an
/// unchanged place as a keep-alive, which prints nothing).
#[derive(Debug, Default)]
pub struct QueuePlace {
    last: Option<(u32, u32)>,
}

impl QueuePlace {
    /// Notes the place the daemon sent; prints `mover: the server is busy: waiting in its queue, place P of
    /// N` when it differs from the last one printed.
    pub fn show(&mut self, position: u32, waiting: u32) {
        if let Some(line) = self.line(position, waiting) {
            eprintln!("{line}");
        }
    }

    /// The line to print for this place, if it changed.
    fn line(&mut self, position: u32, waiting: u32) -> Option<String> {
        if self.last == Some((position, waiting)) {
            return None;
        }
        self.last = Some((position, waiting));
        Some(format!("mover: the server is busy: waiting in its queue, place {position} of {waiting}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_printed_once_per_change() {
        let mut p = QueuePlace::default();
        assert_eq!(p.line(3, 7).as_deref(), Some("mover: the server is busy: waiting in its queue, place 3 of 7"));
        assert_eq!(p.line(3, 7), None, "a keep-alive with the same place prints nothing");
        assert!(p.line(2, 7).unwrap().ends_with("place 2 of 7"));
        assert!(p.line(2, 6).is_some());
    }
}
