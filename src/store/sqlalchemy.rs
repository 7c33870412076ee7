//! The SQLAlchemy store: per-process state of every client, summed per
//! host/program at scrape time.
//!
//! Takes checked [`SqlaRecord`]s with their receive time; hands on a
//! [`Snapshot`] of every host/program. The rules users rely on (PRODUCT.md):
//!
//! * gauges and the process count cover live processes only; a process is live
//!   for `Freshness::window` of its own interval after its last accepted
//!   report, on the exporter's clock;
//! * counters are built from per-process deltas of the client's cumulative
//!   totals, so they never go backwards: a dead process keeps its contribution,
//!   a process that reappears continues from its last totals (it is kept as a
//!   tombstone until `forget_after`), and a total that goes down is a reset;
//! * each process orders its own reports by the client's timestamp, per type:
//!   a duplicated, reordered or late report is refused and changes nothing;
//! * a host/program with no live process stays (zero gauges, counters kept)
//!   until `forget_after`, then is removed.

use crate::collectd::{CdTime, HR_PER_SECOND};
use crate::route::{Cumulative, Pool, ProcessKey, RelayStat, Sample, SqlaRecord};
use crate::store::{Freshness, Now};
use std::collections::HashMap;

/// Keys come from the network: a seeded hasher, fast for short strings.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client timestamp as the store keeps it: never zero (a report without
/// one is stamped with its arrival), so `Option<(Stamp, _)>` needs no tag.
type Stamp = std::num::NonZeroU64;

/// Bounds on what a sender can make the store hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Processes tracked, dead ones kept for counter continuity included.
    pub max_processes: usize,
    /// Host/program pairs.
    pub max_programs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_processes: 1_000_000,
            max_programs: 100_000,
        }
    }
}

/// Why a record changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The process already reported this type with the same or a later client
    /// timestamp: a duplicate, reordered or late datagram.
    #[error("report is not newer than the last one of this process")]
    OutOfOrder,
    /// A new process or program would exceed `Limits`.
    #[error("{0} limit reached")]
    OverLimit(&'static str),
}

impl ApplyError {
    pub fn reason(self) -> &'static str {
        match self {
            ApplyError::OutOfOrder => "out_of_order",
            ApplyError::OverLimit(_) => "over_limit",
        }
    }
}

/// Cumulative events the store has counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Processes that stopped reporting and left the gauges.
    pub processes_expired: u64,
    /// Dead processes whose state was dropped (after `forget_after`, or to
    /// make room at the process limit).
    pub processes_forgotten: u64,
    /// Host/program pairs removed after `forget_after` with nothing live.
    pub programs_forgotten: u64,
}

#[derive(Debug)]
struct Process {
    live_until: Instant,
    expiry_counted: bool,
    pool: Option<(Stamp, Pool)>,
    totals: Option<(Stamp, [u64; 4])>,
    /// Boxed: few clients send transactions, and every process pays for the
    /// field's size.
    transactions: Option<Box<(Stamp, [u64; 3])>>,
    /// Set for a host/program relayed by sqlalchemy-collectd's server plugin.
    relay: Option<Box<Relay>>,
}

/// A relayed host/program: stats arrive one value list each, already summed
/// over the relaying server's live processes.
#[derive(Debug, Default)]
struct Relay {
    /// numpools, checkedout, checkedin, detached, connections, numprocs.
    gauges: [Option<(Stamp, f64)>; 6],
    /// Last relayed sum of checkouts, invalidated, connects, disconnects.
    counters: [Option<(Stamp, u64)>; 4],
}

impl Relay {
    fn pool(&self) -> Pool {
        let g = |i: usize| self.gauges[i].map_or(0.0, |(_, v)| v);
        Pool {
            numpools: g(0),
            checkedout: g(1),
            checkedin: g(2),
            detached: g(3),
            connections: g(4),
        }
    }

    fn processes(&self) -> u64 {
        self.gauges[5].map_or(0.0, |(_, v)| v).max(0.0) as u64
    }
}

#[derive(Debug)]
struct Program {
    processes: Map<Box<str>, Process>,
    /// Accumulated deltas: checkouts, invalidated, connects, disconnects.
    totals: [u64; 4],
    /// commits, rollbacks, transactions; `None` until a client sends them.
    transactions: Option<[u64; 3]>,
    last_report_unix: f64,
    /// Report interval of the newest accepted report, seconds.
    interval: f64,
    /// The latest `live_until` of its processes.
    live_until: Instant,
}

impl Program {
    /// Applies a record to one of this program's processes (which exists).
    fn update(
        &mut self,
        token: &str,
        record: &SqlaRecord,
        time: Stamp,
        window: Duration,
        now: Now,
    ) -> Result<(), ApplyError> {
        let Program {
            processes,
            totals,
            transactions,
            last_report_unix,
            interval,
            live_until,
        } = self;
        let Some(process) = processes.get_mut(token) else {
            return Ok(());
        };
        match &record.sample {
            Sample::Pool(pool) => {
                newer(&process.pool, time)?;
                process.pool = Some((time, *pool));
            }
            Sample::Cumulative(Cumulative::Totals(new)) => {
                let old = newer(&process.totals, time)?;
                add_deltas(totals, old, new);
                process.totals = Some((time, *new));
            }
            Sample::Cumulative(Cumulative::Transactions(new)) => {
                let old = newer(&process.transactions.as_deref().copied(), time)?;
                add_deltas(transactions.get_or_insert([0; 3]), old, new);
                process.transactions = Some(Box::new((time, *new)));
            }
            Sample::Relay(stat) => {
                let relay = process.relay.get_or_insert_with(Box::default);
                match *stat {
                    RelayStat::Gauge { index, value } => {
                        let slot = &mut relay.gauges[index];
                        newer(slot, time)?;
                        *slot = Some((time, value));
                    }
                    RelayStat::Counter { index, value } => {
                        let slot = &mut relay.counters[index];
                        let old = newer(slot, time)?;
                        // A relayed sum drops when a process leaves the
                        // relaying server's aggregate: nothing was undone, so
                        // the sum is re-based instead of counted as a reset.
                        let delta = value.saturating_sub(old.unwrap_or(0));
                        totals[index] = totals[index].saturating_add(delta);
                        *slot = Some((time, value));
                    }
                }
            }
        }

        process.live_until = now.at + window;
        process.expiry_counted = false;
        *live_until = (*live_until).max(process.live_until);
        *last_report_unix = last_report_unix.max(now.unix);
        *interval = record.interval.as_secs_f64();
        Ok(())
    }
}

/// One host/program as exported.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramSnapshot {
    pub host: Arc<str>,
    pub program: Arc<str>,
    /// Live processes.
    pub processes: u64,
    /// Pool gauges summed over the live processes.
    pub pool: Pool,
    /// checkouts, invalidated, connects, disconnects.
    pub totals: [u64; 4],
    /// commits, rollbacks, transactions, once any process sent them.
    pub transactions: Option<[u64; 3]>,
    /// Receive time of the newest accepted report, Unix seconds.
    pub last_report_unix: f64,
    /// Report interval of the newest accepted report, seconds (0 before any).
    pub interval_seconds: f64,
    /// Configured capacity × pools; filled at scrape time from the config file.
    pub connections_max: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Sorted by host, then program.
    pub programs: Vec<ProgramSnapshot>,
    /// Processes tracked, dead ones included.
    pub tracked_processes: usize,
    pub stats: StoreStats,
}

impl Snapshot {
    pub fn sort(&mut self) {
        self.programs
            .sort_unstable_by(|a, b| (&*a.host, &*a.program).cmp(&(&*b.host, &*b.program)));
    }

    pub fn live_processes(&self) -> u64 {
        self.programs.iter().map(|p| p.processes).sum()
    }
}

#[derive(Debug, Default)]
pub struct SqlaStore {
    freshness: Freshness,
    limits: Limits,
    hosts: Map<Arc<str>, Map<Arc<str>, Program>>,
    programs: usize,
    processes: usize,
    stats: StoreStats,
    /// When the process limit last forced a scan for dead processes.
    last_eviction_scan: Option<Instant>,
}

/// The process limit scans for dead processes to drop at most this often, so
/// a flood of new tokens cannot turn every datagram into a full scan.
const EVICTION_SCAN_EVERY: Duration = Duration::from_secs(1);

impl SqlaStore {
    pub fn new(freshness: Freshness, limits: Limits) -> Self {
        SqlaStore {
            freshness,
            limits,
            ..SqlaStore::default()
        }
    }

    pub fn apply(&mut self, record: &SqlaRecord, now: Now) -> Result<(), ApplyError> {
        let key = &record.key;
        let time = if record.time.is_zero() {
            // No TIME part: order by arrival instead.
            CdTime((now.unix * HR_PER_SECOND as f64) as u64)
        } else {
            record.time
        };
        let time = Stamp::new(time.0).unwrap_or(Stamp::MIN);
        let window = self.freshness.window(record.interval);

        // A known process, by far the common case: three lookups, no allocation.
        if let Some(program) = self
            .hosts
            .get_mut(key.host.as_str())
            .and_then(|programs| programs.get_mut(key.program.as_str()))
            && program.processes.contains_key(key.token.as_str())
        {
            return program.update(key.token.as_str(), record, time, window, now);
        }

        let known_program = self
            .hosts
            .get(key.host.as_str())
            .is_some_and(|programs| programs.contains_key(key.program.as_str()));
        if !known_program && self.programs >= self.limits.max_programs {
            return Err(ApplyError::OverLimit("program"));
        }
        if self.processes >= self.limits.max_processes {
            self.evict_dead_processes(now.at);
            if self.processes >= self.limits.max_processes {
                return Err(ApplyError::OverLimit("process"));
            }
        }
        self.processes += 1;
        let program = self.program_entry(key, now.at);
        program.processes.insert(
            key.token.as_str().into(),
            Process {
                live_until: now.at,
                expiry_counted: false,
                pool: None,
                totals: None,
                transactions: None,
                relay: None,
            },
        );
        program.update(key.token.as_str(), record, time, window, now)
    }

    fn program_entry(&mut self, key: &ProcessKey, at: Instant) -> &mut Program {
        // Two lookups instead of `entry` so that a known host/program costs no
        // allocation for its key.
        if !self.hosts.contains_key(key.host.as_str()) {
            self.hosts.insert(key.host.as_str().into(), Map::default());
        }
        let programs = self
            .hosts
            .get_mut(key.host.as_str())
            .expect("inserted above");
        if !programs.contains_key(key.program.as_str()) {
            self.programs += 1;
            programs.insert(
                key.program.as_str().into(),
                Program {
                    processes: Map::default(),
                    totals: [0; 4],
                    transactions: None,
                    last_report_unix: 0.0,
                    interval: 0.0,
                    live_until: at,
                },
            );
        }
        programs
            .get_mut(key.program.as_str())
            .expect("inserted above")
    }

    /// Counts expiries and drops what `forget_after` says to forget.
    pub fn sweep(&mut self, now: Instant) {
        let forget = self.freshness.forget_after;
        let stats = &mut self.stats;
        let mut removed_processes = 0;
        let mut removed_programs = 0;
        self.hosts.retain(|_, programs| {
            programs.retain(|_, program| {
                program.processes.retain(|_, p| {
                    if p.live_until <= now && !p.expiry_counted {
                        p.expiry_counted = true;
                        stats.processes_expired += 1;
                    }
                    let keep = p.live_until + forget > now;
                    if !keep {
                        removed_processes += 1;
                    }
                    keep
                });
                let keep = program.live_until + forget > now;
                if !keep {
                    removed_programs += 1;
                }
                keep
            });
            !programs.is_empty()
        });
        stats.processes_forgotten += removed_processes;
        stats.programs_forgotten += removed_programs;
        self.processes -= removed_processes as usize;
        self.programs -= removed_programs as usize;
    }

    /// At the process limit, dead processes make room: they only guard
    /// against counting a process twice if it comes back.
    fn evict_dead_processes(&mut self, now: Instant) {
        if self
            .last_eviction_scan
            .is_some_and(|t| now.duration_since(t) < EVICTION_SCAN_EVERY)
        {
            return;
        }
        self.last_eviction_scan = Some(now);
        let mut removed = 0;
        for programs in self.hosts.values_mut() {
            for program in programs.values_mut() {
                program.processes.retain(|_, p| {
                    let live = p.live_until > now;
                    if !live {
                        removed += 1;
                        if !p.expiry_counted {
                            self.stats.processes_expired += 1;
                        }
                    }
                    live
                });
            }
        }
        self.processes -= removed as usize;
        self.stats.processes_forgotten += removed;
    }

    /// Every host/program not yet forgotten, with gauges over the processes
    /// live at `now` (exact even between sweeps), sorted by host and program.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut s = self.snapshot_unsorted(now);
        s.sort();
        s
    }

    /// [`SqlaStore::snapshot`] in no particular order: what runs under the
    /// lock; the scrape sorts after releasing it.
    pub fn snapshot_unsorted(&self, now: Instant) -> Snapshot {
        let forget = self.freshness.forget_after;
        let mut programs = Vec::with_capacity(self.programs);
        for (host, host_programs) in &self.hosts {
            for (name, program) in host_programs {
                if program.live_until + forget <= now {
                    continue;
                }
                let mut pool = Pool::default();
                let mut processes = 0;
                for p in program.processes.values().filter(|p| p.live_until > now) {
                    if let Some(relay) = &p.relay {
                        processes += relay.processes();
                        pool.add(&relay.pool());
                        continue;
                    }
                    processes += 1;
                    if let Some((_, g)) = &p.pool {
                        pool.add(g);
                    }
                }
                programs.push(ProgramSnapshot {
                    host: host.clone(),
                    program: name.clone(),
                    processes,
                    pool,
                    totals: program.totals,
                    transactions: program.transactions,
                    last_report_unix: program.last_report_unix,
                    interval_seconds: program.interval,
                    connections_max: None,
                });
            }
        }
        Snapshot {
            programs,
            tracked_processes: self.processes,
            stats: self.stats,
        }
    }
}

/// The last accepted sample of this type if `time` is newer than it;
/// otherwise the report is a duplicate or out of order.
fn newer<T: Copy>(last: &Option<(Stamp, T)>, time: Stamp) -> Result<Option<T>, ApplyError> {
    match last {
        Some((t, _)) if time <= *t => Err(ApplyError::OutOfOrder),
        Some((_, v)) => Ok(Some(*v)),
        None => Ok(None),
    }
}

/// Adds what each cumulative count grew by. A first report counts from zero
/// (the client's totals start with the process); a count that went down was
/// reset, so all of it is new.
fn add_deltas<const N: usize>(sum: &mut [u64; N], old: Option<[u64; N]>, new: &[u64; N]) {
    for i in 0..N {
        let before = old.map_or(0, |o| o[i]);
        let delta = if new[i] >= before {
            new[i] - before
        } else {
            new[i]
        };
        sum[i] = sum[i].saturating_add(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn key(program: &str, token: &str) -> ProcessKey {
        ProcessKey {
            host: "vm".into(),
            program: program.into(),
            token: token.into(),
        }
    }

    fn pool_rec(
        program: &str,
        token: &str,
        t: u64,
        checkedout: f64,
        connections: f64,
    ) -> SqlaRecord {
        SqlaRecord {
            key: key(program, token),
            time: CdTime::from_secs(t),
            interval: CdTime::from_secs(2),
            sample: Sample::Pool(Pool {
                numpools: 1.0,
                checkedout,
                checkedin: connections - checkedout,
                detached: 0.0,
                connections,
            }),
        }
    }

    fn totals_rec(program: &str, token: &str, t: u64, totals: [u64; 4]) -> SqlaRecord {
        SqlaRecord {
            key: key(program, token),
            time: CdTime::from_secs(t),
            interval: CdTime::from_secs(2),
            sample: Sample::Cumulative(Cumulative::Totals(totals)),
        }
    }

    fn store() -> SqlaStore {
        SqlaStore::new(Freshness::default(), Limits::default())
    }

    fn one(store: &SqlaStore, at: Instant) -> ProgramSnapshot {
        let snap = store.snapshot(at);
        assert_eq!(snap.programs.len(), 1, "{snap:?}");
        snap.programs[0].clone()
    }

    #[test]
    fn a_process_stays_small() {
        // What each tracked process costs before the map's own overhead.
        assert!(
            std::mem::size_of::<Process>() <= 128,
            "{}",
            std::mem::size_of::<Process>()
        );
    }

    #[test]
    fn gauges_sum_over_live_processes() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 2.0, 3.0), t0).unwrap();
        s.apply(&pool_rec("app", "2:b", 100, 1.0, 5.0), t0).unwrap();
        let p = one(&s, t0.at);
        assert_eq!(p.processes, 2);
        assert_eq!(p.pool.checkedout, 3.0);
        assert_eq!(p.pool.connections, 8.0);
        assert_eq!(p.pool.checkedin, 5.0);
        assert_eq!(p.pool.numpools, 2.0);
    }

    #[test]
    fn one_token_under_two_programs_is_two_processes() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("a", "1:a", 100, 1.0, 1.0), t0).unwrap();
        s.apply(&pool_rec("b", "1:a", 100, 2.0, 2.0), t0).unwrap();
        let snap = s.snapshot(t0.at);
        let got: Vec<_> = snap
            .programs
            .iter()
            .map(|p| (p.program.to_string(), p.processes, p.pool.checkedout))
            .collect();
        assert_eq!(got, vec![("a".into(), 1, 1.0), ("b".into(), 1, 2.0)]);
    }

    #[test]
    fn counters_add_per_process_deltas() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [5, 0, 2, 0]), t0)
            .unwrap();
        s.apply(&totals_rec("app", "2:b", 100, [3, 1, 1, 1]), t0)
            .unwrap();
        s.apply(
            &totals_rec("app", "1:a", 102, [9, 0, 3, 1]),
            t0.after(2 * S),
        )
        .unwrap();
        assert_eq!(one(&s, t0.at + 2 * S).totals, [12, 1, 4, 2]);
    }

    #[test]
    fn dead_process_leaves_gauges_exactly_at_the_end_of_its_window() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 1.0, 1.0), t0).unwrap();
        s.apply(&pool_rec("app", "2:b", 100, 2.0, 2.0), t0).unwrap();
        s.apply(&pool_rec("app", "2:b", 104, 2.0, 2.0), t0.after(4 * S))
            .unwrap();
        // 3 intervals of 2 s: 1:a is live until t0 + 6 s, not a moment longer.
        let just_before = one(&s, t0.at + 6 * S - Duration::from_nanos(1));
        assert_eq!(
            (just_before.processes, just_before.pool.connections),
            (2, 3.0)
        );
        let at_end = one(&s, t0.at + 6 * S);
        assert_eq!((at_end.processes, at_end.pool.connections), (1, 2.0));
    }

    #[test]
    fn expiry_follows_each_processs_own_interval() {
        let mut s = store();
        let t0 = Now::wall();
        let mut slow = pool_rec("app", "1:a", 100, 1.0, 1.0);
        slow.interval = CdTime::from_secs(10);
        s.apply(&slow, t0).unwrap();
        s.apply(&pool_rec("app", "2:b", 100, 1.0, 1.0), t0).unwrap();
        assert_eq!(one(&s, t0.at + 7 * S).processes, 1);
        assert_eq!(one(&s, t0.at + 29 * S).processes, 1);
        assert_eq!(one(&s, t0.at + 30 * S).processes, 0);
    }

    #[test]
    fn stale_after_replaces_the_interval_rule() {
        let f = Freshness {
            stale_after: Some(Duration::from_millis(500)),
            ..Freshness::default()
        };
        let mut s = SqlaStore::new(f, Limits::default());
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 1.0, 1.0), t0).unwrap();
        assert_eq!(one(&s, t0.at + Duration::from_millis(499)).processes, 1);
        assert_eq!(one(&s, t0.at + Duration::from_millis(500)).processes, 0);
    }

    #[test]
    fn expiry_is_judged_by_receive_time_not_client_time() {
        let mut s = store();
        let t0 = Now::wall();
        // A client whose clock is a day behind is as live as any other.
        s.apply(&pool_rec("app", "1:a", 1000, 1.0, 1.0), t0)
            .unwrap();
        s.apply(&pool_rec("app", "1:a", 1002, 1.0, 1.0), t0.after(5 * S))
            .unwrap();
        assert_eq!(one(&s, t0.at + 10 * S).processes, 1);
        assert_eq!(one(&s, t0.at + 11 * S).processes, 0);
    }

    #[test]
    fn dead_process_keeps_its_counter_contribution() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [7, 1, 3, 2]), t0)
            .unwrap();
        s.apply(&totals_rec("app", "2:b", 100, [1, 0, 1, 0]), t0)
            .unwrap();
        let later = t0.at + 60 * S;
        s.sweep(later);
        let p = one(&s, later);
        assert_eq!(p.processes, 0);
        assert_eq!(p.totals, [8, 1, 4, 2]);
    }

    #[test]
    fn reappearing_process_is_not_counted_twice() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [10, 0, 2, 0]), t0)
            .unwrap();
        s.sweep(t0.at + 30 * S);
        s.apply(
            &totals_rec("app", "1:a", 130, [12, 0, 2, 0]),
            t0.after(30 * S),
        )
        .unwrap();
        let p = one(&s, t0.at + 30 * S);
        assert_eq!((p.processes, p.totals), (1, [12, 0, 2, 0]));
        assert_eq!(s.snapshot(t0.at + 30 * S).stats.processes_expired, 1);
    }

    #[test]
    fn counter_that_goes_down_is_a_reset() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [10, 4, 5, 5]), t0)
            .unwrap();
        s.apply(
            &totals_rec("app", "1:a", 102, [3, 4, 6, 5]),
            t0.after(2 * S),
        )
        .unwrap();
        assert_eq!(one(&s, t0.at + 2 * S).totals, [13, 4, 6, 5]);
    }

    #[test]
    fn duplicated_datagram_is_ignored() {
        let mut s = store();
        let t0 = Now::wall();
        let r = totals_rec("app", "1:a", 100, [10, 0, 1, 0]);
        s.apply(&r, t0).unwrap();
        assert_eq!(s.apply(&r, t0), Err(ApplyError::OutOfOrder));
        assert_eq!(one(&s, t0.at).totals, [10, 0, 1, 0]);
    }

    #[test]
    fn reordered_datagram_does_not_inflate_counters() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [10, 0, 1, 0]), t0)
            .unwrap();
        s.apply(
            &totals_rec("app", "1:a", 104, [20, 0, 2, 0]),
            t0.after(2 * S),
        )
        .unwrap();
        // The report of t=102 arrives last: it looks like a reset, and must not count.
        let late = totals_rec("app", "1:a", 102, [15, 0, 1, 0]);
        assert_eq!(s.apply(&late, t0.after(3 * S)), Err(ApplyError::OutOfOrder));
        s.apply(
            &totals_rec("app", "1:a", 106, [21, 0, 2, 0]),
            t0.after(4 * S),
        )
        .unwrap();
        assert_eq!(one(&s, t0.at + 4 * S).totals, [21, 0, 2, 0]);
    }

    #[test]
    fn late_pool_report_does_not_overwrite_newer_gauges_or_refresh_liveness() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 102, 3.0, 3.0), t0).unwrap();
        let late = pool_rec("app", "1:a", 100, 1.0, 1.0);
        assert_eq!(s.apply(&late, t0.after(5 * S)), Err(ApplyError::OutOfOrder));
        assert_eq!(one(&s, t0.at + 5 * S).pool.checkedout, 3.0);
        assert_eq!(one(&s, t0.at + 6 * S).processes, 0);
    }

    #[test]
    fn pool_and_totals_of_one_cycle_share_a_timestamp() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 1.0, 1.0), t0).unwrap();
        s.apply(&totals_rec("app", "1:a", 100, [1, 0, 1, 0]), t0)
            .unwrap();
        let p = one(&s, t0.at);
        assert_eq!((p.pool.checkedout, p.totals[0]), (1.0, 1));
    }

    #[test]
    fn dead_program_shows_zero_until_forget_after_then_is_removed() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 2.0, 4.0), t0).unwrap();
        s.apply(&totals_rec("app", "1:a", 100, [3, 0, 4, 0]), t0)
            .unwrap();
        // Live until t0 + 6 s; forgotten one hour after that.
        let dead = t0.at + 6 * S;
        let p = one(&s, dead);
        assert_eq!(
            (p.processes, p.pool.connections, p.totals),
            (0, 0.0, [3, 0, 4, 0])
        );
        let last_moment = dead + Duration::from_secs(3600) - Duration::from_nanos(1);
        s.sweep(last_moment);
        assert_eq!(one(&s, last_moment).processes, 0);
        let gone = dead + Duration::from_secs(3600);
        assert!(
            s.snapshot(gone).programs.is_empty(),
            "the snapshot filters before the sweep"
        );
        s.sweep(gone);
        let snap = s.snapshot(gone);
        assert!(snap.programs.is_empty());
        assert_eq!(snap.tracked_processes, 0);
        assert_eq!(snap.stats.programs_forgotten, 1);
        assert_eq!(snap.stats.processes_forgotten, 1);
        assert!(s.hosts.is_empty());
    }

    #[test]
    fn expiries_are_counted_once() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 1.0, 1.0), t0).unwrap();
        s.sweep(t0.at + 5 * S);
        s.sweep(t0.at + 7 * S);
        s.sweep(t0.at + 8 * S);
        assert_eq!(s.snapshot(t0.at + 8 * S).stats.processes_expired, 1);
    }

    #[test]
    fn last_report_is_the_receive_time_of_the_newest_report() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 1.0, 1.0), t0).unwrap();
        s.apply(&pool_rec("app", "2:b", 50, 1.0, 1.0), t0.after(3 * S))
            .unwrap();
        assert_eq!(one(&s, t0.at + 3 * S).last_report_unix, t0.unix + 3.0);
    }

    #[test]
    fn transactions_appear_only_once_a_client_sends_them() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [1, 0, 1, 0]), t0)
            .unwrap();
        assert_eq!(one(&s, t0.at).transactions, None);
        let tx = SqlaRecord {
            sample: Sample::Cumulative(Cumulative::Transactions([4, 1, 5])),
            ..totals_rec("app", "1:a", 100, [0; 4])
        };
        s.apply(&tx, t0).unwrap();
        assert_eq!(one(&s, t0.at).transactions, Some([4, 1, 5]));
    }

    fn relay_rec(t: u64, stat: RelayStat) -> SqlaRecord {
        SqlaRecord {
            key: ProcessKey {
                host: "vm".into(),
                program: "app".into(),
                token: crate::collectd::Str::from_static(crate::route::RELAY_TOKEN),
            },
            time: CdTime::from_secs(t),
            interval: CdTime::from_secs(10),
            sample: Sample::Relay(stat),
        }
    }

    #[test]
    fn relayed_program_takes_its_process_count_and_gauges_from_the_relay() {
        let mut s = store();
        let t0 = Now::wall();
        let g = |index, value| RelayStat::Gauge { index, value };
        for (i, v) in [2.0, 3.0, 1.0, 0.0, 4.0, 2.0].into_iter().enumerate() {
            s.apply(&relay_rec(100, g(i, v)), t0).unwrap();
        }
        let p = one(&s, t0.at);
        assert_eq!(
            (
                p.processes,
                p.pool.checkedout,
                p.pool.connections,
                p.pool.numpools
            ),
            (2, 3.0, 4.0, 2.0)
        );
        // Live for 3 of the relay's 10 s intervals.
        assert_eq!(one(&s, t0.at + 30 * S).processes, 0);
        // The same stat at the same time again is a duplicate.
        assert_eq!(
            s.apply(&relay_rec(100, g(1, 9.0)), t0),
            Err(ApplyError::OutOfOrder)
        );
    }

    #[test]
    fn relayed_sum_that_drops_is_rebased_not_reset() {
        let mut s = store();
        let t0 = Now::wall();
        let c = |value| RelayStat::Counter { index: 0, value };
        s.apply(&relay_rec(100, c(10)), t0).unwrap();
        s.apply(&relay_rec(110, c(15)), t0).unwrap();
        // A process left the relaying server's sum: 15 → 6.
        s.apply(&relay_rec(120, c(6)), t0).unwrap();
        s.apply(&relay_rec(130, c(8)), t0).unwrap();
        assert_eq!(one(&s, t0.at).totals[0], 17);
    }

    #[test]
    fn process_limit_rejects_new_processes_but_makes_room_from_dead_ones() {
        let limits = Limits {
            max_processes: 2,
            max_programs: 10,
        };
        let mut s = SqlaStore::new(Freshness::default(), limits);
        let t0 = Now::wall();
        s.apply(&pool_rec("app", "1:a", 100, 1.0, 1.0), t0).unwrap();
        s.apply(&pool_rec("app", "2:b", 100, 1.0, 1.0), t0).unwrap();
        assert_eq!(
            s.apply(&pool_rec("app", "3:c", 100, 1.0, 1.0), t0),
            Err(ApplyError::OverLimit("process"))
        );
        // Known processes still report.
        s.apply(&pool_rec("app", "1:a", 102, 2.0, 2.0), t0.after(4 * S))
            .unwrap();
        // Once 2:b is dead, a new process takes its place.
        s.apply(&pool_rec("app", "3:c", 108, 1.0, 1.0), t0.after(8 * S))
            .unwrap();
        let snap = s.snapshot(t0.at + 8 * S);
        assert_eq!(snap.tracked_processes, 2);
        assert_eq!(snap.programs[0].processes, 2);
    }

    #[test]
    fn program_limit_rejects_new_programs() {
        let limits = Limits {
            max_processes: 10,
            max_programs: 1,
        };
        let mut s = SqlaStore::new(Freshness::default(), limits);
        let t0 = Now::wall();
        s.apply(&pool_rec("a", "1:a", 100, 1.0, 1.0), t0).unwrap();
        assert_eq!(
            s.apply(&pool_rec("b", "1:a", 100, 1.0, 1.0), t0),
            Err(ApplyError::OverLimit("program"))
        );
        assert_eq!(s.snapshot(t0.at).programs.len(), 1);
    }
}
