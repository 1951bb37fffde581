//! Site-wide bandwidth governance (`serve --max-rate`, `--user-max-rate`; PROTOCOL.md §3.7, decision 0035):
//! the daemon shares its rate caps between the sessions whose data path runs, and each session's sender
//! keeps to its share.
//!
//! [`shares`] is the rule, a pure function of the caps and the running sessions' demands: **water-filling**
//! (max-min fairness). `fair` and `fixed` sessions first: every one rises at the same pace until it reaches
//! what it asked for (its `--rate`: the ceiling of `fair`, the rate of `fixed`), its account's cap is used
//! up (the account's sessions stop together), or the daemon's cap is. `low` sessions then share what is
//! left the same way, each keeping a small floor ([`LOW_FLOOR_PERCENT`]) reserved before anything else, so
//! a scavenger slows to a crawl but never stalls into its peer's timeout. The floors come out of the caps:
//! the shares never add up to more than any cap.
//!
//! [`Governor`] holds the running sessions and recomputes every share when one starts or ends (a lock taken
//! then, never per packet), storing each into the session's [`RateShareCell`]; the stage that owns the
//! session's protocol core reads its cell in its housekeeping step and the core tells the sender (or, on a
//! pull the daemon serves, paces by it itself), so a re-balance reaches the senders within a round trip.
//!
//! A share is in bits per second of datagram bytes, the unit of `--rate` and of the pacer. It says what a
//! session may send, not what it will: a session held back by its path or its disk leaves part of its share
//! unused, and the others do not get it (see decision 0035).

use crate::connect::DELEGATED_IDENTITY_PREFIX;
use crate::pipeline::rate_share::RateShareCell;
use crate::proto::policy::Policy;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Each `low` session keeps this percentage of the smallest cap it is under (the daemon's, its account's),
/// whatever the `fair` and `fixed` sessions take: at `--max-rate 600M`, 6 Mbit/s. Enough for its
/// feedback, keepalives and progress to flow (no silence, no timeout), small enough that the others are not
/// slowed by it.
pub const LOW_FLOOR_PERCENT: u64 = 1;
/// The `low` sessions under one cap keep at most this percentage of it together: many of them split it.
pub const LOW_FLOORS_MAX_PERCENT: u64 = 5;
/// No governed session's share is below this: a cap smaller than the number of sessions in bits per
/// second is no cap a sender can keep to, and a share of 0 cannot be told (PROTOCOL.md §3.7).
pub const MIN_SHARE_BPS: u64 = 1;

/// The daemon's caps (`--max-rate`, `--user-max-rate`), in bits per second of datagram bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateCaps {
    /// All sessions together (`--max-rate`).
    pub max_rate_bps: Option<u64>,
    /// Each account's sessions together (`--user-max-rate NAME=RATE`), by the identity the daemon knows the
    /// client by (`user:alice`, `cert:HEX`, `ip:ADDR`).
    pub user_max_rate_bps: BTreeMap<String, u64>,
}

impl RateCaps {
    /// Whether nothing is capped (then no session is governed and no `RateShare` is ever sent).
    pub fn is_empty(&self) -> bool {
        self.max_rate_bps.is_none() && self.user_max_rate_bps.is_empty()
    }

    /// The cap of `account`, if it has one.
    pub fn account_cap(&self, account: &str) -> Option<u64> {
        self.user_max_rate_bps.get(account).copied()
    }
}

/// Parses one `--user-max-rate` value, `NAME=RATE` (`alice=200M`): a token user's name, or an identity as
/// the daemon logs it (`cert:0a1b...`, `ip:10.0.0.5`); the rate as `--rate` takes it. Returns the identity
/// and the rate in bits per second.
pub fn parse_user_cap(text: &str) -> Result<(String, u64), String> {
    let Some((name, rate)) = text.split_once('=') else {
        return Err(format!("'{text}' is not NAME=RATE (e.g. alice=200M)"));
    };
    let name = name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{name}' is not a user name (e.g. alice=200M)"));
    }
    let rate = crate::rate::parse_rate_bps(rate)?;
    // A plain name is a token user; anything with a kind (cert:, ip:, user:) is taken as it is.
    let identity = if name.contains(':') { name.to_string() } else { format!("user:{name}") };
    Ok((identity, rate))
}

/// The account whose cap a client's session counts against: its identity, except that a third-party
/// copy's sending end (`delegated:TRANSFER:CONTROLLER`) counts against the controller who asked for it.
pub fn account_of(identity: &str) -> &str {
    match identity.strip_prefix(DELEGATED_IDENTITY_PREFIX).and_then(|rest| rest.split_once(':')) {
        Some((_transfer, controller)) => controller,
        None => identity,
    }
}

/// What a running session asks of the caps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demand {
    /// The account its share counts against ([`account_of`]).
    pub account: String,
    /// Its rate policy: `low` is served after `fair` and `fixed`.
    pub policy: Policy,
    /// The most it would send: its `--rate` (the rate of `fixed`, the ceiling of `fair` and `low`).
    pub ceiling_bps: u64,
}

/// Each session's share (in `demands`' order) under `caps`: `None` for a session no cap applies to (no
/// `--max-rate`, and none on its account). See the module documentation for the rule. The shares under
/// each cap add up to at most that cap, and none is above its session's ceiling (but for
/// [`MIN_SHARE_BPS`]).
pub fn shares(caps: &RateCaps, demands: &[Demand]) -> Vec<Option<u64>> {
    let account_cap: Vec<Option<u64>> = demands.iter().map(|d| caps.account_cap(&d.account)).collect();
    let governed = |i: usize| caps.max_rate_bps.is_some() || account_cap[i].is_some();
    let mut pools = Pools {
        daemon: caps.max_rate_bps.unwrap_or(u64::MAX),
        accounts: caps.user_max_rate_bps.iter().map(|(a, &c)| (a.as_str(), c)).collect(),
    };
    let mut given = vec![0u64; demands.len()];
    let is_low = |i: usize| demands[i].policy == Policy::Low;

    // The floors of the `low` sessions come first, out of every cap they are under.
    let lows: Vec<usize> = (0..demands.len()).filter(|&i| governed(i) && is_low(i)).collect();
    for &i in &lows {
        let under_daemon = lows.len() as u64;
        let under_account = lows.iter().filter(|&&j| demands[j].account == demands[i].account).count() as u64;
        let floor_under =
            |cap: u64, n: u64| (cap / 100 * LOW_FLOOR_PERCENT).min(cap / 100 * LOW_FLOORS_MAX_PERCENT / n);
        let mut floor = demands[i].ceiling_bps;
        if let Some(cap) = caps.max_rate_bps {
            floor = floor.min(floor_under(cap, under_daemon));
        }
        if let Some(cap) = account_cap[i] {
            floor = floor.min(floor_under(cap, under_account));
        }
        given[i] = pools.take(&demands[i].account, floor);
    }
    // Then `fair` and `fixed`, then `low` with what they left.
    let first: Vec<usize> = (0..demands.len()).filter(|&i| governed(i) && !is_low(i)).collect();
    pools.fill(demands, &mut given, &first);
    pools.fill(demands, &mut given, &lows);

    let out: Vec<Option<u64>> = (0..demands.len()).map(|i| governed(i).then(|| given[i].max(MIN_SHARE_BPS))).collect();
    debug_assert!(
        caps.max_rate_bps.is_none_or(|cap| {
            out.iter().flatten().sum::<u64>() <= cap.saturating_add(MIN_SHARE_BPS * demands.len() as u64)
        }),
        "shares {out:?} above the daemon's cap {caps:?}"
    );
    out
}

/// What is left of each cap while shares are handed out.
struct Pools<'a> {
    /// The daemon's cap (`u64::MAX`: none).
    daemon: u64,
    /// Each capped account's.
    accounts: BTreeMap<&'a str, u64>,
}

impl Pools<'_> {
    /// What is left for `account`'s sessions: the smaller of its cap's and the daemon's.
    fn left(&self, account: &str) -> u64 {
        self.accounts.get(account).map_or(self.daemon, |&a| a.min(self.daemon))
    }

    /// Takes up to `bps` for a session of `account` from every cap it is under; returns what it got.
    fn take(&mut self, account: &str, bps: u64) -> u64 {
        let bps = bps.min(self.left(account));
        if self.daemon != u64::MAX {
            self.daemon -= bps;
        }
        if let Some(a) = self.accounts.get_mut(account) {
            *a -= bps;
        }
        bps
    }

    /// Raises the shares of `members` together, in equal steps, each until it reaches its ceiling or a cap
    /// it is under runs out (progressive filling: max-min fair under nested caps).
    fn fill(&mut self, demands: &[Demand], given: &mut [u64], members: &[usize]) {
        let mut active: Vec<usize> = members.iter().copied().filter(|&i| given[i] < demands[i].ceiling_bps).collect();
        while !active.is_empty() {
            // The largest equal step every active session can take: its own room, and its share of each
            // cap's remainder among the active sessions under that cap.
            let mut step = active.iter().map(|&i| demands[i].ceiling_bps - given[i]).min().unwrap_or(0);
            step = step.min(self.daemon / active.len() as u64);
            let mut per_account: BTreeMap<&str, u64> = BTreeMap::new();
            for &i in &active {
                *per_account.entry(demands[i].account.as_str()).or_default() += 1;
            }
            for (account, n) in &per_account {
                if let Some(&left) = self.accounts.get(account) {
                    step = step.min(left / n);
                }
            }
            if step == 0 {
                // A cap cannot give each of its sessions one more bit per second: they are done (what is
                // left of it is less than one per session).
                if self.daemon / (active.len() as u64) == 0 {
                    return;
                }
                let exhausted =
                    |account: &str| self.accounts.get(account).is_some_and(|&left| left / per_account[account] == 0);
                active.retain(|&i| !exhausted(&demands[i].account));
                continue;
            }
            for &i in &active {
                given[i] += self.take(&demands[i].account, step);
            }
            active.retain(|&i| given[i] < demands[i].ceiling_bps && self.left(&demands[i].account) > 0);
        }
    }
}

/// The daemon's governor: its caps and the sessions whose data path runs, each with its share's cell.
/// Clones of the `Arc` are shared by every session thread and the metrics endpoint.
#[derive(Debug)]
pub struct Governor {
    caps: RateCaps,
    next_seat: AtomicU64,
    seats: Mutex<BTreeMap<u64, Seat>>,
}

#[derive(Debug)]
struct Seat {
    demand: Demand,
    cell: Arc<RateShareCell>,
}

impl Governor {
    /// A governor of `caps`, or `None` when nothing is capped (sessions then run as before: no share, no
    /// `RateShare` on the wire).
    pub fn new(caps: RateCaps) -> Option<Arc<Governor>> {
        (!caps.is_empty()).then(|| Arc::new(Governor { caps, next_seat: AtomicU64::new(0), seats: Mutex::default() }))
    }

    /// The caps it shares.
    pub fn caps(&self) -> &RateCaps {
        &self.caps
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Seat>> {
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session whose data path starts now joins: every share is recomputed (its own is in its cell when
    /// this returns, to be told before `Accept`). It leaves when the returned guard drops.
    pub fn join(self: &Arc<Self>, demand: Demand) -> GovernedSession {
        let id = self.next_seat.fetch_add(1, Ordering::Relaxed);
        let cell = RateShareCell::new();
        let mut seats = self.lock();
        seats.insert(id, Seat { demand, cell: cell.clone() });
        self.rebalance(&seats);
        GovernedSession { governor: self.clone(), id, share: cell }
    }

    /// Recomputes every share and stores each in its session's cell.
    fn rebalance(&self, seats: &BTreeMap<u64, Seat>) {
        let demands: Vec<Demand> = seats.values().map(|s| s.demand.clone()).collect();
        for (seat, share) in seats.values().zip(shares(&self.caps, &demands)) {
            seat.cell.set(share);
        }
    }

    /// The governed sessions now: their demands and shares (for tests and diagnostics).
    pub fn sessions(&self) -> Vec<(Demand, Option<u64>)> {
        self.lock().values().map(|s| (s.demand.clone(), s.cell.get())).collect()
    }
}

/// A session's seat with the governor: its share's cell, read by the stage that owns its core. Dropping it
/// (the data path ended, either way) gives the share back to the others.
#[derive(Debug)]
pub struct GovernedSession {
    governor: Arc<Governor>,
    id: u64,
    /// The session's share, kept current by the governor.
    pub share: Arc<RateShareCell>,
}

impl Drop for GovernedSession {
    fn drop(&mut self) {
        let mut seats = self.governor.lock();
        seats.remove(&self.id);
        self.governor.rebalance(&seats);
    }
}

/// What a daemon session needs to join the governor once its data path starts: the governor and the account
/// its share counts against. Carried in `ReceiveParams`/`SendParams`.
#[derive(Clone, Debug)]
pub struct GovernorTicket {
    /// The daemon's governor.
    pub governor: Arc<Governor>,
    /// The client's account ([`account_of`] its identity).
    pub account: String,
}

impl GovernorTicket {
    /// Joins with the session's policy and ceiling (its `--rate`).
    pub fn join(&self, policy: Policy, ceiling_bps: u64) -> GovernedSession {
        self.governor.join(Demand { account: self.account.clone(), policy, ceiling_bps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;
    const NONE: u64 = crate::rate::NO_CEILING_BPS;

    fn caps(max: Option<u64>, users: &[(&str, u64)]) -> RateCaps {
        RateCaps {
            max_rate_bps: max,
            user_max_rate_bps: users.iter().map(|&(u, c)| (format!("user:{u}"), c)).collect(),
        }
    }

    fn d(user: &str, policy: Policy, ceiling_bps: u64) -> Demand {
        Demand { account: format!("user:{user}"), policy, ceiling_bps }
    }

    fn all(v: Vec<Option<u64>>) -> Vec<u64> {
        v.into_iter().map(|s| s.expect("governed")).collect()
    }

    #[test]
    fn fair_sessions_split_the_cap_evenly() {
        let c = caps(Some(600 * M), &[]);
        let three = [d("a", Policy::Fair, NONE), d("b", Policy::Fair, NONE), d("c", Policy::Fair, NONE)];
        assert_eq!(all(shares(&c, &three)), [200 * M; 3]);
        assert_eq!(all(shares(&c, &three[..1])), [600 * M]);
        assert_eq!(shares(&c, &[]), Vec::<Option<u64>>::new());
    }

    /// A session that asks for less than an even split gets what it asked for, and the rest is shared by
    /// the others; `fixed` asks for its rate.
    #[test]
    fn ceilings_and_fixed_rates_are_given_and_the_rest_shared() {
        let c = caps(Some(600 * M), &[]);
        let v = [d("a", Policy::Fair, 100 * M), d("b", Policy::Fair, NONE), d("c", Policy::Fixed, 1000 * M)];
        assert_eq!(all(shares(&c, &v)), [100 * M, 250 * M, 250 * M]);
        let v = [d("a", Policy::Fixed, 50 * M), d("b", Policy::Fair, NONE)];
        assert_eq!(all(shares(&c, &v)), [50 * M, 550 * M]);
        // Nobody wants the whole cap: everyone gets what they asked for.
        let v = [d("a", Policy::Fixed, 50 * M), d("b", Policy::Fair, 70 * M)];
        assert_eq!(all(shares(&c, &v)), [50 * M, 70 * M]);
    }

    /// An account's sessions together stay within its cap; what they cannot take goes to the others.
    #[test]
    fn account_caps_bound_their_sessions_together() {
        let c = caps(Some(600 * M), &[("alice", 100 * M)]);
        let v = [d("alice", Policy::Fair, NONE), d("alice", Policy::Fair, NONE), d("bob", Policy::Fair, NONE)];
        assert_eq!(all(shares(&c, &v)), [50 * M, 50 * M, 500 * M]);
        // Without a daemon-wide cap only alice is governed.
        let c = caps(None, &[("alice", 100 * M)]);
        assert_eq!(shares(&c, &v), [Some(50 * M), Some(50 * M), None]);
        // An account cap above the daemon's changes nothing.
        let c = caps(Some(300 * M), &[("alice", 1000 * M)]);
        assert_eq!(all(shares(&c, &v)), [100 * M; 3]);
    }

    /// `low` sessions get only their floor while `fair` and `fixed` take the rest, and what those leave
    /// (their ceilings) otherwise; alone, the whole cap.
    #[test]
    fn low_sessions_yield_to_the_others_down_to_their_floor() {
        let c = caps(Some(600 * M), &[]);
        let v = [d("a", Policy::Fair, NONE), d("b", Policy::Fair, NONE), d("c", Policy::Low, NONE)];
        assert_eq!(all(shares(&c, &v)), [297 * M, 297 * M, 6 * M], "the floor is 1% of the cap");
        let v = [d("a", Policy::Fair, 100 * M), d("c", Policy::Low, NONE)];
        assert_eq!(all(shares(&c, &v)), [100 * M, 500 * M]);
        assert_eq!(all(shares(&c, &v[1..])), [600 * M]);
        // Two lows share evenly what is left above their floors.
        let v = [d("a", Policy::Fixed, 200 * M), d("b", Policy::Low, NONE), d("c", Policy::Low, NONE)];
        assert_eq!(all(shares(&c, &v)), [200 * M, 200 * M, 200 * M]);
    }

    /// Many `low` sessions split 5% of the cap as their floors; the floor never exceeds a session's ceiling
    /// nor its account's share of floors.
    #[test]
    fn low_floors_are_bounded_together() {
        let c = caps(Some(600 * M), &[]);
        let mut v = vec![d("a", Policy::Fair, NONE)];
        v.extend((0..100).map(|_| d("b", Policy::Low, NONE)));
        let s = all(shares(&c, &v));
        assert_eq!(s[0], 570 * M);
        assert!(s[1..].iter().all(|&x| x == 300_000), "{:?}", &s[1..4]);
        let v = [d("a", Policy::Fair, NONE), d("b", Policy::Low, 1000)];
        assert_eq!(all(shares(&c, &v)), [600 * M - 1000, 1000]);
        let c = caps(Some(600 * M), &[("b", 100 * M)]);
        let v = [d("a", Policy::Fair, NONE), d("b", Policy::Low, NONE)];
        assert_eq!(all(shares(&c, &v)), [599 * M, M], "1% of its account's cap");
    }

    /// Whatever the mix, the shares under each cap add up to at most the cap, none exceeds its ceiling,
    /// every governed session gets a share, and the daemon's cap is used up whenever the sessions want it.
    #[test]
    fn shares_never_add_up_to_more_than_a_cap() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let policies = [Policy::Fair, Policy::Low, Policy::Fixed];
        for _ in 0..2000 {
            let max = [None, Some(1 + next(10_000 * M))][next(2) as usize];
            let mut users: Vec<(&str, u64)> = Vec::new();
            for u in ["u0", "u1", "u2"] {
                if next(2) == 0 {
                    users.push((u, 1 + next(2_000 * M)));
                }
            }
            let c = caps(max, &users);
            let v: Vec<Demand> = (0..next(12))
                .map(|_| {
                    let ceiling = [NONE, 1 + next(3_000 * M)][next(2) as usize];
                    d(["u0", "u1", "u2", "u3"][next(4) as usize], policies[next(3) as usize], ceiling)
                })
                .collect();
            let s = shares(&c, &v);
            for (i, share) in s.iter().enumerate() {
                let governed = max.is_some() || c.account_cap(&v[i].account).is_some();
                assert_eq!(share.is_some(), governed, "{c:?} {v:?} {s:?}");
                assert!(share.is_none_or(|x| x <= v[i].ceiling_bps.max(MIN_SHARE_BPS)), "{c:?} {v:?} {s:?}");
            }
            let sum = |f: &dyn Fn(&Demand) -> bool| {
                v.iter().zip(&s).filter(|(d, _)| f(d)).map(|(_, x)| x.unwrap_or(0)).sum::<u64>()
            };
            let slack = MIN_SHARE_BPS * v.len() as u64;
            if let Some(cap) = max {
                let total = sum(&|_| true);
                assert!(total <= cap + slack, "{total} above {cap}: {c:?} {v:?} {s:?}");
                let wanted: u64 = v.iter().map(|d| d.ceiling_bps.min(cap)).fold(0, u64::saturating_add);
                if users.is_empty() && wanted >= cap {
                    // Each filling leaves at most one bit per second per session of a cap's remainder.
                    assert!(total + 2 * slack >= cap, "{total} leaves the cap {cap} unused: {v:?} {s:?}");
                }
            }
            for (user, cap) in &users {
                let account = format!("user:{user}");
                let total = sum(&|d| d.account == account);
                assert!(total <= cap + slack, "{user}: {total} above {cap}: {c:?} {v:?} {s:?}");
            }
        }
    }

    /// Sessions joining and leaving re-balance every share at once, through the cells the stages read.
    #[test]
    fn shares_rebalance_as_sessions_start_and_end() {
        assert!(Governor::new(RateCaps::default()).is_none(), "nothing capped: no governor");
        let g = Governor::new(caps(Some(600 * M), &[])).unwrap();
        let ticket = GovernorTicket { governor: g.clone(), account: "ip:127.0.0.1".into() };
        let a = ticket.join(Policy::Fair, NONE);
        assert_eq!(a.share.get(), Some(600 * M));
        let b = ticket.join(Policy::Fair, NONE);
        let low = ticket.join(Policy::Low, NONE);
        assert_eq!([a.share.get(), b.share.get(), low.share.get()], [Some(297 * M), Some(297 * M), Some(6 * M)]);
        let c = ticket.join(Policy::Fair, NONE);
        assert_eq!([a.share.get(), c.share.get(), low.share.get()], [Some(198 * M), Some(198 * M), Some(6 * M)]);
        drop(b);
        drop(c);
        assert_eq!([a.share.get(), low.share.get()], [Some(594 * M), Some(6 * M)]);
        drop(a);
        assert_eq!(low.share.get(), Some(600 * M), "the scavenger takes the whole cap once alone");
        assert_eq!(g.sessions().len(), 1);
        drop(low);
        assert!(g.sessions().is_empty());
    }

    #[test]
    fn user_caps_parse_and_delegated_sessions_count_against_their_controller() {
        assert_eq!(parse_user_cap("alice=200M"), Ok(("user:alice".into(), 200 * M)));
        assert_eq!(parse_user_cap("ip:10.0.0.5=1G"), Ok(("ip:10.0.0.5".into(), 1000 * M)));
        assert!(parse_user_cap("alice").unwrap_err().contains("NAME=RATE"));
        assert!(parse_user_cap("=5M").is_err());
        assert!(parse_user_cap("alice=fast").unwrap_err().contains("not a rate"));
        assert_eq!(account_of("user:alice"), "user:alice");
        assert_eq!(account_of("delegated:0123abcd:user:alice"), "user:alice");
        assert_eq!(account_of("ip:10.0.0.5"), "ip:10.0.0.5");
    }
}
