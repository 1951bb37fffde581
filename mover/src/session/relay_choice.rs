//! `push --via auto`: choosing relays by round-trip time (the Fast Send Protocol's multi-constraint query,
//! PROTOCOL.md §8.7; decision 0032).
//!
//! The sender measures its RTT to every relay of `--relays FILE`, the receiver measures its own (asked with
//! `MeasureRtt`), and each relay gets the distance to the solution space
//! s = Σ over the two targets of max(0, d − d_max)², where d is the measured RTT and d_max the target's
//! `--max-rtt-sender` / `--max-rtt-receiver` (no constraint: 0). Relays with s = 0 satisfy every
//! constraint and are chosen first, nearest first (by the sum of their RTTs); when none does, the single
//! closest one is taken, and said so. A relay that did not answer is never chosen.
//!
//! The RTT is the TCP handshake's: the least `connect()` time of a few tries (the least filters queueing on
//! the way), so it needs nothing of the relay but its listening port, and no credentials.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Handshakes timed per relay.
pub const RTT_TRIES: usize = 3;
/// How long one try may take before the relay counts as unreachable.
pub const RTT_TIMEOUT: Duration = Duration::from_secs(1);
/// Most relays a `--relays` file may list (and a `MeasureRtt` may ask for).
pub const MAX_CANDIDATES: usize = 64;

/// A candidate relay and what was measured of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// `mover://HOST[:PORT]`.
    pub url: String,
    /// The sender's RTT in milliseconds (`None`: unreachable).
    pub rtt_sender_ms: Option<f64>,
    /// The receiver's RTT in milliseconds (`None`: unreachable).
    pub rtt_receiver_ms: Option<f64>,
    /// The distance to the solution space; infinite when unreachable.
    pub score: f64,
    /// Whether it was chosen.
    pub chosen: bool,
}

/// The relays of a `--relays` file: one `mover://HOST[:PORT]` per line; blank lines and `#` comments are
/// skipped.
pub fn parse_relays_file(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let url = crate::connect::MoverUrl::parse(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if !url.path.is_empty() {
            return Err(format!("line {}: a relay is mover://HOST[:PORT], without a path: '{line}'", i + 1));
        }
        out.push(line.to_string());
    }
    if out.is_empty() {
        return Err("it lists no relay".into());
    }
    if out.len() > MAX_CANDIDATES {
        return Err(format!("it lists {} relays; at most {MAX_CANDIDATES}", out.len()));
    }
    Ok(out)
}

/// The least TCP handshake time to `url`'s host and port over [`RTT_TRIES`] tries, in milliseconds; `None`
/// when it does not resolve or no try connects within [`RTT_TIMEOUT`].
pub fn measure_rtt_ms(url: &str) -> Option<f64> {
    let u = crate::connect::MoverUrl::parse(url).ok()?;
    let addr: SocketAddr = (u.host.as_str(), u.port).to_socket_addrs().ok()?.next()?;
    (0..RTT_TRIES)
        .filter_map(|_| {
            let t = Instant::now();
            TcpStream::connect_timeout(&addr, RTT_TIMEOUT).ok().map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .min_by(f64::total_cmp)
}

/// Measures every URL at once (one thread each): the RTTs in the same order.
pub fn measure_all(urls: &[String]) -> Vec<Option<f64>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = urls.iter().map(|u| s.spawn(move || measure_rtt_ms(u))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(None)).collect()
    })
}

/// s = Σ max(0, d − d_max)² over the targets with a constraint; infinite if a target did not reach it.
pub fn score(measured: &[(Option<f64>, Option<f64>)]) -> f64 {
    measured
        .iter()
        .map(|&(d, max)| match (d, max) {
            (None, _) => f64::INFINITY,
            (Some(_), None) => 0.0,
            (Some(d), Some(m)) => (d - m).max(0.0).powi(2),
        })
        .sum()
}

/// Scores the candidates and marks the chosen ones: every one with s = 0 (nearest first, at most `max`),
/// or, when none has, the one with the least finite s. Returns them ranked (chosen first).
pub fn choose(
    mut cands: Vec<Candidate>,
    max_sender_ms: Option<f64>,
    max_receiver_ms: Option<f64>,
    max: usize,
) -> Vec<Candidate> {
    for c in &mut cands {
        c.score = score(&[(c.rtt_sender_ms, max_sender_ms), (c.rtt_receiver_ms, max_receiver_ms)]);
        c.chosen = false;
    }
    let total = |c: &Candidate| c.rtt_sender_ms.unwrap_or(f64::INFINITY) + c.rtt_receiver_ms.unwrap_or(f64::INFINITY);
    cands.sort_by(|a, b| a.score.total_cmp(&b.score).then(total(a).total_cmp(&total(b))));
    let satisfying = cands.iter().filter(|c| c.score == 0.0).count();
    let take = if satisfying > 0 {
        satisfying.min(max.max(1))
    } else {
        usize::from(cands.first().is_some_and(|c| c.score.is_finite()))
    };
    for c in cands.iter_mut().take(take) {
        c.chosen = true;
    }
    cands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(url: &str, s: Option<f64>, r: Option<f64>) -> Candidate {
        Candidate { url: url.into(), rtt_sender_ms: s, rtt_receiver_ms: r, score: 0.0, chosen: false }
    }

    #[test]
    fn the_score_is_the_squared_distance_to_the_solution_space() {
        assert_eq!(score(&[(Some(10.0), Some(20.0)), (Some(30.0), Some(20.0))]), 100.0);
        assert_eq!(score(&[(Some(10.0), None), (Some(25.0), Some(20.0))]), 25.0);
        assert_eq!(score(&[(None, Some(20.0)), (Some(1.0), Some(20.0))]), f64::INFINITY);
    }

    #[test]
    fn relays_within_both_constraints_are_chosen_nearest_first() {
        let cands = vec![
            cand("far-from-receiver", Some(2.0), Some(80.0)),
            cand("both-near", Some(10.0), Some(10.0)),
            cand("nearest", Some(1.0), Some(3.0)),
            cand("far-from-sender", Some(90.0), Some(5.0)),
            cand("dead", None, Some(1.0)),
        ];
        let got = choose(cands, Some(20.0), Some(20.0), 4);
        let chosen: Vec<&str> = got.iter().filter(|c| c.chosen).map(|c| c.url.as_str()).collect();
        assert_eq!(chosen, ["nearest", "both-near"]);
        // Ranked by the distance after them: 60² < 70², the dead one last.
        let rest: Vec<&str> = got.iter().filter(|c| !c.chosen).map(|c| c.url.as_str()).collect();
        assert_eq!(rest, ["far-from-receiver", "far-from-sender", "dead"]);
        let capped = choose(got, Some(20.0), Some(20.0), 1);
        assert_eq!(capped.iter().filter(|c| c.chosen).count(), 1);
    }

    #[test]
    fn with_none_inside_the_closest_one_is_taken_and_never_a_dead_one() {
        let got = choose(
            vec![cand("a", Some(30.0), Some(30.0)), cand("b", Some(25.0), Some(40.0))],
            Some(20.0),
            Some(20.0),
            4,
        );
        assert_eq!((got[0].url.as_str(), got[0].chosen, got[1].chosen), ("a", true, false));
        let dead = choose(vec![cand("x", None, None)], None, None, 4);
        assert!(!dead[0].chosen);
    }

    #[test]
    fn the_relays_file_takes_urls_and_comments() {
        let text = "# relays of site A\nmover://10.0.0.1:7400\n\n  mover://r2  # the second\n";
        assert_eq!(parse_relays_file(text).unwrap(), ["mover://10.0.0.1:7400", "mover://r2"]);
        assert!(parse_relays_file("mover://r1/path").unwrap_err().contains("without a path"));
        assert!(parse_relays_file("# none\n").is_err());
        assert!(parse_relays_file("http://x").unwrap_err().contains("line 1"));
    }
}
