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
//! * each process orders its own reports by the client's timestamp, per type,
//!   and by its totals, which only ever grow within one process token: a
//!   report whose totals are lower than the last accepted ones is stale
//!   (refused, whatever its timestamp); a repeated timestamp is a duplicate;
//!   a timestamp that goes back by more than one report interval with totals
//!   that did not go down is the client's clock stepping (accepted, counted
//!   per host/program), so a host whose clock is corrected keeps reporting;
//! * processes first seen within the first liveness window after a start
//!   without saved state count from their first report (`baseline`), so that
//!   a restart of the exporter is one reset to Prometheus and no burst;
//! * at the process limit, processes that reported only once make room for
//!   new ones, newest first from the source that holds the most of them, so
//!   that one sender flooding new tokens cannot keep another's out;
//! * a host/program with no live process stays (zero gauges, counters kept)
//!   until `forget_after`, then is removed.

pub mod history;
mod peaks;
pub mod processes;
pub mod saved;
pub mod shards;

use crate::collectd::{CdTime, HR_PER_SECOND};
use crate::route::{Cumulative, Pool, RelayStat, Sample, SqlaRecord};
use crate::store::{Freshness, Now, SCAN_EVERY, Victims, most_common};
use history::History;
use peaks::Peaks;
use std::collections::HashMap;

/// Keys come from the network: a seeded hasher, fast for short strings.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// The process map: its growth moves a few entries on each insert instead
/// of all of them at once, so that a fleet that is new to the exporter (a
/// restart) does not stall ingest for the tens of milliseconds a rehash of
/// hundreds of thousands of entries takes.
type ProcessMap = griddle::HashMap<ProcessId, Process, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::Instant;

/// A client timestamp as the store keeps it: never zero (a report without
/// one is stamped with its arrival), so `Option<(Stamp, _)>` needs no tag.
type Stamp = std::num::NonZeroU64;

/// Who sent a report: an IPv4 address as its number, an IPv6 one folded to
/// 32 bits. Used only to share the process limit fairly between senders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(pub u32);

impl Source {
    pub fn of(ip: std::net::IpAddr) -> Source {
        match ip.to_canonical() {
            std::net::IpAddr::V4(v4) => Source(u32::from(v4)),
            std::net::IpAddr::V6(v6) => {
                let o = v6.octets();
                let word = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                Source(word(0) ^ word(4) ^ word(8) ^ word(12))
            }
        }
    }
}

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
    /// Totals lower than the last accepted ones of the same process: a late
    /// or replayed datagram (totals only grow within one process token).
    #[error("totals are lower than the last accepted ones of this process")]
    Stale,
    /// A new process or program would exceed `Limits`.
    #[error("{0} limit reached")]
    OverLimit(&'static str),
    /// A shard of several (see [`shards`]) is at a limit its own entries
    /// cannot make room under: its [`shards::Shards`] makes room across every
    /// shard and applies the report again. Never leaves `Shards`.
    #[error("{0} limit reached in this shard")]
    NeedsRoom(&'static str),
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
    /// Processes that had reported once, dropped at the process limit to
    /// admit a new one (see [`SqlaStore`]).
    pub processes_evicted: u64,
    /// Processes whose first report was taken as their baseline (first seen
    /// within the first liveness window after a start without saved state).
    pub processes_baselined: u64,
    /// Host/program pairs none of whose processes had reported twice,
    /// dropped at the program limit to admit new ones.
    pub programs_evicted: u64,
}

/// A point on the store's clock: nanoseconds since the store was made.
/// Eight bytes where an `Instant` takes sixteen, in every process record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Tick(u64);

#[derive(Debug)]
struct Process {
    live_until: Tick,
    pool: Option<(Stamp, Pool)>,
    totals: Option<(Stamp, [u64; 4])>,
    /// What few processes have: transactions, the relay form, a pool report
    /// held across a clock step. Boxed so that every other process pays one
    /// word for it.
    extra: Option<Box<Extra>>,
    source: Source,
    flags: u8,
}

/// `Process::flags`: its expiry was counted.
const EXPIRY_COUNTED: u8 = 1;
/// It reported more than once: never evicted to admit a new process.
const CONFIRMED: u8 = 2;
/// First seen within the start-up window: each count's first report is its
/// baseline.
const BASELINE: u8 = 4;

impl Process {
    fn new(source: Source, baseline: bool) -> Self {
        Process {
            live_until: Tick::default(),
            pool: None,
            totals: None,
            extra: None,
            source,
            flags: if baseline { BASELINE } else { 0 },
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// What the process adds to its program's held sums (checked out,
    /// connections): its gauges until its expiry is counted.
    fn load(&self) -> [f64; 2] {
        if self.has(EXPIRY_COUNTED) {
            return [0.0; 2];
        }
        match (&self.pool, self.extra.as_deref()) {
            (
                _,
                Some(Extra {
                    relay: Some(relay), ..
                }),
            ) => {
                let g = |i: usize| relay.gauges[i].map_or(0.0, |(_, v)| v);
                [g(1), g(4)]
            }
            (Some((_, pool)), _) => [pool.checkedout, pool.connections],
            (None, _) => [0.0; 2],
        }
    }

    /// Whether a report of `sample`'s kind was accepted before.
    fn reported(&self, sample: &Sample) -> bool {
        match sample {
            Sample::Pool(_) => self.pool.is_some(),
            Sample::Cumulative(Cumulative::Totals(_)) => self.totals.is_some(),
            Sample::Cumulative(Cumulative::Transactions(_)) => self
                .extra
                .as_ref()
                .is_some_and(|e| e.transactions.is_some()),
            Sample::Relay(_) => self.extra.as_ref().is_some_and(|e| e.relay.is_some()),
        }
    }
}

#[derive(Debug, Default)]
struct Extra {
    transactions: Option<(Stamp, [u64; 3])>,
    /// Set for a host/program relayed by sqlalchemy-collectd's server plugin.
    relay: Option<Relay>,
    /// A pool report older than the last one by more than an interval: the
    /// client's clock may have stepped back. Applied once totals of the same
    /// timestamp confirm the step; a replayed old datagram's totals do not.
    held_pool: Option<(Stamp, Pool)>,
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

/// Index of a host/program in `SqlaStore::programs`.
type ProgramId = u32;

/// A process: its program and its token. Tokens of the real client's form
/// (`<pid>:<6 hex digits>`) are packed into the number itself; any other
/// token is numbered by [`Tokens`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ProcessId {
    program: ProgramId,
    token: u64,
}

/// Set in the numbers given to tokens that are not of the client's form;
/// packed tokens use at most 56 bits.
const TEXT_TOKEN: u64 = 1 << 63;

/// `<pid>:<6 lowercase hex digits>` with a canonical decimal pid below 2^32,
/// packed as `pid << 24 | hex`: one number per token and one token per number.
fn packed_token(token: &str) -> Option<u64> {
    // The colon of a packable token is the seventh byte from the end: looked
    // at directly rather than searched for, on every report. (Any other
    // colon makes the pid part fail its digit check below.) One pass over
    // each part checks and converts it.
    let b = token.as_bytes();
    let colon = b.len().checked_sub(7)?;
    let (pid, rest) = b.split_at(colon);
    let (&sep, hex) = rest.split_first()?;
    if sep != b':' || pid.is_empty() || pid.len() > 10 || (pid.len() > 1 && pid[0] == b'0') {
        return None;
    }
    let mut p = 0u64;
    for &c in pid {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        p = p * 10 + u64::from(d);
    }
    if p > u64::from(u32::MAX) {
        return None;
    }
    let mut h = 0u64;
    for &c in hex {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        h = h << 4 | u64::from(d);
    }
    Some(p << 24 | h)
}

/// Numbers for tokens that do not pack, held while a process uses them.
#[derive(Debug, Default)]
struct Tokens {
    numbers: Map<Box<str>, (u64, usize)>,
    names: Map<u64, Box<str>>,
    next: u64,
}

impl Tokens {
    /// The number of a token if it has one.
    fn find(&self, token: &str) -> Option<u64> {
        match packed_token(token) {
            Some(n) => Some(n),
            None => self.numbers.get(token).map(|&(n, _)| n),
        }
    }

    /// The number of a token for a new process, given one if needed.
    fn hold(&mut self, token: &str) -> u64 {
        if let Some(n) = packed_token(token) {
            return n;
        }
        if let Some((n, users)) = self.numbers.get_mut(token) {
            *users += 1;
            return *n;
        }
        let n = TEXT_TOKEN | self.next;
        self.next += 1;
        self.numbers.insert(token.into(), (n, 1));
        self.names.insert(n, token.into());
        n
    }

    /// A process that used `number` is gone.
    fn release(&mut self, number: u64) {
        if number & TEXT_TOKEN == 0 {
            return;
        }
        let Some(name) = self.names.get(&number) else {
            return;
        };
        let last = match self.numbers.get_mut(name) {
            Some((_, users)) => {
                *users -= 1;
                *users == 0
            }
            None => false,
        };
        if last && let Some(name) = self.names.remove(&number) {
            self.numbers.remove(&name);
        }
    }
}

#[derive(Debug)]
struct Program {
    host: Arc<str>,
    name: Arc<str>,
    /// Accumulated deltas: checkouts, invalidated, connects, disconnects.
    totals: [u64; 4],
    /// commits, rollbacks, transactions; `None` until a client sends them.
    transactions: Option<[u64; 3]>,
    last_report_unix: f64,
    /// Report interval of the newest accepted report, seconds.
    interval: f64,
    /// The latest `live_until` of its processes.
    live_until: Tick,
    /// Client time minus receive time of the newest accepted report with a
    /// client timestamp, seconds.
    clock_offset: Option<f64>,
    /// Reports accepted although their timestamp went back (clock steps).
    clock_steps: u64,
    /// Who sent the report that made it, and in what order programs were
    /// made: what the program limit judges by.
    source: Source,
    created: u64,
    /// The held sums of checked-out connections and connections, and their
    /// maxima over the peak window.
    peaks: Peaks,
    /// The held sum of checked-out connections, step by step (`history`).
    history: History,
}

/// How a report's timestamp and counts place it after the last accepted one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// Newer by its timestamp (or a first report).
    Newer,
    /// Its timestamp went back, but its counts say it is not old: the
    /// client's clock stepped.
    Step,
}

/// Nanoseconds per step of the history.
const HISTORY_STEP: u64 = history::STEP.as_nanos() as u64;

impl Program {
    /// The held sums change by `delta` at `at` (in buckets of `peak_bucket`
    /// ticks for the peaks).
    fn add_held(&mut self, delta: [f64; 2], at: Tick, peak_bucket: u64) {
        self.peaks.add(delta, at.0 / peak_bucket);
        self.history.set(self.peaks.held()[0], at.0 / HISTORY_STEP);
    }

    /// The held sums are `held` from `at` on.
    fn set_held(&mut self, held: [f64; 2], at: Tick, peak_bucket: u64) {
        self.peaks.set(held, at.0 / peak_bucket);
        self.history.set(held[0], at.0 / HISTORY_STEP);
    }

    /// Applies a report to one of this program's processes.
    fn update(
        &mut self,
        process: &mut Process,
        report: &Report<'_>,
        time: Stamp,
        live_until: Tick,
        unix: f64,
    ) -> Result<(), ApplyError> {
        // A timestamp that goes back by more than this is a clock step, not
        // a reordered datagram.
        let step = report.interval.0.max(HR_PER_SECOND);
        let baseline = process.has(BASELINE);
        match report.sample {
            Sample::Pool(pool) => {
                let totals = process.totals.map(|(t, _)| t);
                match process.pool {
                    Some((t, _)) if time == t => return Err(ApplyError::OutOfOrder),
                    Some((t, _)) if time < t && t.get() - time.get() <= step => {
                        return Err(ApplyError::OutOfOrder);
                    }
                    // Older by more than an interval, or ahead of the
                    // process's totals by more: the clock stepped, or this
                    // is a replay of what was sent before a step. Held until
                    // totals of the same time say which; liveness waits too.
                    // (Without totals to judge by, it is a step.)
                    Some((t, _))
                        if totals.is_some()
                            && (time < t
                                || totals.is_some_and(|tt| time.get() > tt.get() + step)) =>
                    {
                        let extra = process.extra.get_or_insert_with(Box::default);
                        extra.held_pool = Some((time, *pool));
                        return Ok(());
                    }
                    _ => process.pool = Some((time, *pool)),
                }
            }
            Sample::Cumulative(Cumulative::Totals(new)) => {
                let order = judge(&process.totals, time, new, step)?;
                // A process first seen in the start-up window counts from
                // its first report of each kind.
                let old = match process.totals {
                    None if baseline => Some(*new),
                    last => last.map(|(_, v)| v),
                };
                add_deltas(&mut self.totals, old, new);
                if order == Order::Step {
                    self.stepped(process, time);
                }
                process.totals = Some((time, *new));
                // The totals are the process's clock: a pool report held
                // for this time is its own; one stamped later is not.
                if let Some(extra) = process.extra.as_mut()
                    && let Some((t, pool)) = extra.held_pool.take()
                {
                    if t == time {
                        process.pool = Some((t, pool));
                    } else {
                        extra.held_pool = Some((t, pool));
                    }
                }
                if let Some((t, _)) = &mut process.pool
                    && *t > time
                {
                    *t = Stamp::new(time.get() - 1).unwrap_or(Stamp::MIN);
                }
            }
            Sample::Cumulative(Cumulative::Transactions(new)) => {
                let last = process.extra.as_ref().and_then(|e| e.transactions);
                let order = judge(&last, time, new, step)?;
                let old = match last {
                    None if baseline => Some(*new),
                    last => last.map(|(_, v)| v),
                };
                add_deltas(self.transactions.get_or_insert([0; 3]), old, new);
                if order == Order::Step {
                    self.stepped(process, time);
                }
                process.extra.get_or_insert_with(Box::default).transactions = Some((time, *new));
            }
            Sample::Relay(stat) => {
                let extra = process.extra.get_or_insert_with(Box::default);
                let relay = extra.relay.get_or_insert_with(Relay::default);
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
                        // A relay first seen in the start-up window starts
                        // from its first sum.
                        let base = if baseline { value } else { 0 };
                        let delta = value.saturating_sub(old.unwrap_or(base));
                        self.totals[index] = self.totals[index].saturating_add(delta);
                        *slot = Some((time, value));
                    }
                }
            }
        }

        if !report.time.is_zero() {
            self.clock_offset = Some(report.time.as_secs_f64() - unix);
        }
        process.live_until = live_until;
        process.flags &= !EXPIRY_COUNTED;
        self.live_until = self.live_until.max(live_until);
        self.last_report_unix = self.last_report_unix.max(unix);
        self.interval = report.interval.as_secs_f64();
        Ok(())
    }

    /// The client's clock went back to `time` (its counts say the report is
    /// new): every kind of the process's reports is judged from just before
    /// `time` on (the caller then stamps its own kind).
    fn stepped(&mut self, process: &mut Process, time: Stamp) {
        self.clock_steps += 1;
        let before = Stamp::new(time.get() - 1).unwrap_or(Stamp::MIN);
        let clamp = |t: &mut Stamp| *t = (*t).min(before);
        if let Some((t, _)) = &mut process.pool {
            clamp(t);
        }
        if let Some((t, _)) = &mut process.totals {
            clamp(t);
        }
        if let Some(extra) = process.extra.as_mut()
            && let Some((t, _)) = &mut extra.transactions
        {
            clamp(t);
        }
    }
}

/// Where cumulative counts reported at `time` stand against the last
/// accepted ones: lower counts are stale whatever the timestamp; the same
/// timestamp and counts are a duplicate; a timestamp that went back is a
/// clock step if the counts grew or it went back by more than `step`.
fn judge<const N: usize>(
    last: &Option<(Stamp, [u64; N])>,
    time: Stamp,
    new: &[u64; N],
    step: u64,
) -> Result<Order, ApplyError> {
    let Some((t, old)) = last else {
        return Ok(Order::Newer);
    };
    if new.iter().zip(old).any(|(n, o)| n < o) {
        return Err(ApplyError::Stale);
    }
    let grew = new != old;
    if time > *t {
        Ok(Order::Newer)
    } else if time == *t {
        if grew {
            Ok(Order::Newer)
        } else {
            Err(ApplyError::OutOfOrder)
        }
    } else if grew || t.get() - time.get() > step {
        Ok(Order::Step)
    } else {
        Err(ApplyError::OutOfOrder)
    }
}

/// One report as the store takes it, borrowed from wherever it was decoded.
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    pub host: &'a str,
    pub program: &'a str,
    pub token: &'a str,
    /// The sender's time (used only to order one process's reports).
    pub time: CdTime,
    /// The sender's interval; zero when it sent none.
    pub interval: CdTime,
    pub sample: &'a Sample,
    /// Who sent it (shares the process limit between senders).
    pub source: Source,
}

impl SqlaRecord {
    pub fn report(&self) -> Report<'_> {
        Report {
            host: self.key.host.as_str(),
            program: self.key.program.as_str(),
            token: self.key.token.as_str(),
            time: self.time,
            interval: self.interval,
            sample: &self.sample,
            source: Source::default(),
        }
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
    /// Client time minus receive time of the newest report with a client
    /// timestamp, seconds.
    pub clock_offset_seconds: Option<f64>,
    /// Reports accepted although their client timestamp went back.
    pub clock_steps: u64,
    /// The most checked-out connections and connections summed over the
    /// processes over the peak window (`peaks`).
    pub checked_out_peak: f64,
    pub connections_peak: f64,
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

/// Every process in one map and every host/program in one table, so that a
/// process costs one map entry of 128 bytes and nothing else.
#[derive(Debug)]
pub struct SqlaStore {
    freshness: Freshness,
    limits: Limits,
    /// host → program → its index in `programs`.
    index: Map<Arc<str>, Map<Arc<str>, ProgramId>>,
    /// By `ProgramId`; `None` for a forgotten one whose index is in `free`.
    programs: Vec<Option<Program>>,
    free: Vec<ProgramId>,
    program_count: usize,
    processes: ProcessMap,
    tokens: Tokens,
    /// Where `Tick` counts from.
    epoch: Instant,
    stats: StoreStats,
    /// When the process limit last forced a scan for dead processes.
    last_eviction_scan: Option<Instant>,
    /// Whether processes first seen in the start-up window count from their
    /// first report (a start without saved state).
    baseline: bool,
    /// At the process limit: processes that reported once, in the order they
    /// make room.
    victims: Victims<ProcessId>,
    last_program_scan: Option<Instant>,
    /// Programs made so far: each one's `created`.
    programs_made: u64,
    /// Ticks per bucket of the peak window.
    peak_bucket: u64,
    /// When this store is one shard of several: the counts the limits apply
    /// to, which every shard shares, and how much of them is this shard's.
    shared: Option<Arc<shards::Shared>>,
    published: [usize; 2],
}

/// What a shard's caller has already made room for, so that a report asks
/// for room of each kind at most once.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Asked {
    pub programs: bool,
    pub processes: bool,
    /// Apply reports of known processes only; any other is refused with
    /// `NeedsRoom("new")`, to be applied in the batch's order afterwards.
    pub known_only: bool,
}

/// Takes one of `count` if fewer than `max` are taken.
fn take_one(count: &std::sync::atomic::AtomicUsize, max: usize) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    count
        .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
        .is_ok()
}

impl Default for SqlaStore {
    fn default() -> Self {
        SqlaStore::new(Freshness::default(), Limits::default())
    }
}

impl SqlaStore {
    pub fn new(freshness: Freshness, limits: Limits) -> Self {
        SqlaStore {
            freshness,
            limits,
            index: Map::default(),
            programs: Vec::new(),
            free: Vec::new(),
            program_count: 0,
            processes: ProcessMap::default(),
            tokens: Tokens::default(),
            epoch: Instant::now(),
            stats: StoreStats::default(),
            last_eviction_scan: None,
            baseline: false,
            victims: Victims::default(),
            last_program_scan: None,
            programs_made: 0,
            peak_bucket: (freshness.peak_window.as_nanos() / u128::from(peaks::PARTS))
                .clamp(1, u128::from(u64::MAX)) as u64,
            shared: None,
            published: [0; 2],
        }
    }

    /// Makes this store a shard counting against `shared`, with what it holds.
    pub(crate) fn share(&mut self, shared: Arc<shards::Shared>, epoch: Option<Instant>) {
        if let Some(epoch) = epoch {
            self.epoch = epoch;
        }
        self.shared = Some(shared);
        self.published = [0; 2];
        self.publish();
    }

    /// Brings the shared counts up to what this shard holds.
    fn publish(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(shared) = &self.shared else { return };
        let held = [self.processes.len(), self.program_count];
        for ((count, published), n) in [&shared.processes, &shared.programs]
            .into_iter()
            .zip(&mut self.published)
            .zip(held)
        {
            if n >= *published {
                count.fetch_add(n - *published, Relaxed);
            } else {
                count.fetch_sub(*published - n, Relaxed);
            }
            *published = n;
        }
    }

    /// A shard's admission of a new process (and program): takes their
    /// places in the shared counts, after dropping this shard's dead
    /// processes if that is what makes room.
    fn reserve(&mut self, new_program: bool, now: Instant, asked: Asked) -> Result<(), ApplyError> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(shared) = self.shared.clone() else {
            return Ok(());
        };
        let refuse = |kind: &'static str, asked: bool| {
            if asked {
                ApplyError::OverLimit(kind)
            } else {
                ApplyError::NeedsRoom(kind)
            }
        };
        if new_program && !take_one(&shared.programs, self.limits.max_programs) {
            return Err(refuse("program", asked.programs));
        }
        if !take_one(&shared.processes, self.limits.max_processes) {
            self.evict_dead_processes(now);
            if !take_one(&shared.processes, self.limits.max_processes) {
                if new_program {
                    shared.programs.fetch_sub(1, Relaxed);
                }
                return Err(refuse("process", asked.processes));
            }
        }
        self.published[0] += 1;
        if new_program {
            self.published[1] += 1;
        }
        Ok(())
    }

    /// The peak window's bucket at `at`.
    fn bucket(&self, at: Instant) -> u64 {
        self.tick(at).0 / self.peak_bucket
    }

    /// Processes first seen within the first liveness window from now (the
    /// store's start) count from their first report: for a start without
    /// saved state, when the fleet's processes were counted by an exporter
    /// before this one and Prometheus holds their counters.
    pub fn baseline_at_start(&mut self) {
        self.baseline = true;
    }

    /// `at` on the store's clock. Instants from before the store was made
    /// (none in practice) count as its start.
    fn tick(&self, at: Instant) -> Tick {
        Tick(at.saturating_duration_since(self.epoch).as_nanos() as u64)
    }

    pub fn apply(&mut self, record: &SqlaRecord, now: Now) -> Result<(), ApplyError> {
        self.apply_report(&record.report(), now)
    }

    pub fn apply_report(&mut self, report: &Report<'_>, now: Now) -> Result<(), ApplyError> {
        self.apply_asked(report, now, Asked::default())
    }

    /// [`SqlaStore::apply_report`], with the room already asked for.
    pub(crate) fn apply_asked(
        &mut self,
        report: &Report<'_>,
        now: Now,
        asked: Asked,
    ) -> Result<(), ApplyError> {
        let time = if report.time.is_zero() {
            // No TIME part: order by arrival instead.
            CdTime((now.unix * HR_PER_SECOND as f64) as u64)
        } else {
            report.time
        };
        let time = Stamp::new(time.0).unwrap_or(Stamp::MIN);
        let now_tick = self.tick(now.at);
        let window = self.freshness.window(report.interval).as_nanos();
        let live_until = Tick(
            now_tick
                .0
                .saturating_add(window.min(u128::from(u64::MAX)) as u64),
        );
        let peak_bucket = self.peak_bucket;

        let program = self
            .index
            .get(report.host)
            .and_then(|programs| programs.get(report.program))
            .copied();
        // A known process, by far the common case: no allocation.
        if let (Some(program), Some(token)) = (program, self.tokens.find(report.token))
            && let Some(process) = self.processes.get_mut(&ProcessId { program, token })
            && let Some(Some(p)) = self.programs.get_mut(program as usize)
        {
            // A second report of a kind (a second cycle of the client's)
            // confirms the process: never evicted to make room.
            let seen = process.reported(report.sample);
            // Only gauges change the held sums, or any report of a process
            // whose expiry was counted (it comes back).
            let loads = matches!(report.sample, Sample::Pool(_) | Sample::Relay(_))
                || process.has(EXPIRY_COUNTED);
            let before = if loads { process.load() } else { [0.0; 2] };
            let result = p.update(process, report, time, live_until, now.unix);
            if result.is_ok() {
                if seen {
                    process.flags |= CONFIRMED;
                }
                let after = if loads { process.load() } else { before };
                if after != before {
                    p.add_held(
                        [after[0] - before[0], after[1] - before[1]],
                        now_tick,
                        peak_bucket,
                    );
                }
            }
            return result;
        }
        if asked.known_only {
            return Err(ApplyError::NeedsRoom("new"));
        }

        if self.shared.is_some() {
            self.reserve(program.is_none(), now.at, asked)?;
        } else {
            if program.is_none()
                && self.program_count >= self.limits.max_programs
                && !self.make_program_room(now.at)
            {
                return Err(ApplyError::OverLimit("program"));
            }
            if self.processes.len() >= self.limits.max_processes {
                self.evict_dead_processes(now.at);
                if self.processes.len() >= self.limits.max_processes && !self.make_room(now.at) {
                    return Err(ApplyError::OverLimit("process"));
                }
            }
        }
        let program = match program {
            Some(id) => id,
            None => self.add_program(report.host, report.program, report.source, now.at),
        };
        let token = self.tokens.hold(report.token);
        let baseline = self.baseline
            && self.tick(now.at).0 < self.freshness.window(report.interval).as_nanos() as u64;
        if baseline {
            self.stats.processes_baselined += 1;
        }
        let process = self
            .processes
            .entry(ProcessId { program, token })
            .or_insert(Process::new(report.source, baseline));
        match self.programs.get_mut(program as usize) {
            Some(Some(p)) => {
                let before = process.load();
                let result = p.update(process, report, time, live_until, now.unix);
                let after = process.load();
                if after != before {
                    p.add_held(
                        [after[0] - before[0], after[1] - before[1]],
                        now_tick,
                        peak_bucket,
                    );
                }
                result
            }
            // Every id in the index has its program.
            _ => Ok(()),
        }
    }

    /// At the process limit with nothing dead to drop: drops the newest
    /// process that has reported only once, from the source holding the
    /// most of those, so that a flood of new tokens from one sender makes
    /// room out of its own entries and never out of another sender's (nor
    /// out of any process that reported twice). False if there is none.
    fn make_room(&mut self, now: Instant) -> bool {
        let (processes, programs) = (&self.processes, &self.programs);
        let victim = self.victims.next(
            now,
            processes.len(),
            |id| processes.get(id).is_some_and(|p| !p.has(CONFIRMED)),
            || Self::victims(processes, programs),
        );
        let Some(id) = victim else {
            return false;
        };
        self.evict_process(id, now);
        true
    }

    /// Drops a process to make room at the process limit.
    fn evict_process(&mut self, id: ProcessId, now: Instant) {
        if let Some(process) = self.processes.remove(&id) {
            let tick = self.tick(now);
            unload(&mut self.programs, id, &process, tick, self.peak_bucket);
        }
        self.tokens.release(id.token);
        self.stats.processes_evicted += 1;
        self.publish();
    }

    /// Lists the processes that reported once of the source holding the most
    /// of them, and within it of the host holding the most (one runaway host
    /// behind a relay or a NAT makes room out of its own), in the order they
    /// make room: newest first (the list is taken from its end).
    fn victims(processes: &ProcessMap, programs: &[Option<Program>]) -> Vec<ProcessId> {
        let host = |id: &ProcessId| match programs.get(id.program as usize) {
            Some(Some(p)) => &*p.host,
            _ => "",
        };
        let once = || processes.iter().filter(|(_, p)| !p.has(CONFIRMED));
        let Some(source) = most_common(once().map(|(_, p)| p.source)) else {
            return Vec::new();
        };
        let of_source = || once().filter(|(_, p)| p.source == source);
        let Some(busiest) = most_common(of_source().map(|(id, _)| host(id))) else {
            return Vec::new();
        };
        let mut once: Vec<(Tick, ProcessId)> = of_source()
            .filter(|(id, _)| host(id) == busiest)
            .map(|(id, p)| (p.live_until, *id))
            .collect();
        // Ascending, so that the end holds the newest.
        once.sort_unstable_by_key(|(until, _)| *until);
        once.into_iter().map(|(_, id)| id).collect()
    }

    /// At the program limit: drops, at once, the newest programs with
    /// processes none of which has reported twice, of the source that made
    /// the most of them (up to an eighth of the limit, so that one scan of the
    /// processes makes room for many new programs). A scan at most once a
    /// second. False if nothing could be dropped.
    fn make_program_room(&mut self, now: Instant) -> bool {
        if self
            .last_program_scan
            .is_some_and(|t| now.duration_since(t) < SCAN_EVERY)
        {
            return false;
        }
        self.last_program_scan = Some(now);
        let confirmed = self.programs_kept();
        let evictable = self
            .programs
            .iter()
            .zip(&confirmed)
            .filter_map(|(slot, c)| match slot {
                Some(p) if !*c => Some(p),
                _ => None,
            });
        let Some(largest) = most_common(evictable.clone().map(|p| p.source)) else {
            return false;
        };
        let Some(busiest) =
            most_common(evictable.filter(|p| p.source == largest).map(|p| &*p.host))
        else {
            return false;
        };
        let mut once: Vec<(u64, ProgramId)> = self
            .programs
            .iter()
            .zip(&confirmed)
            .enumerate()
            .filter_map(|(id, (slot, c))| match slot {
                Some(p) if !*c && p.source == largest && *p.host == *busiest => {
                    Some((p.created, id as ProgramId))
                }
                _ => None,
            })
            .collect();
        once.sort_unstable_by_key(|(created, _)| std::cmp::Reverse(*created));
        once.truncate((self.limits.max_programs / 8).max(1));
        let ids: Vec<ProgramId> = once.into_iter().map(|(_, id)| id).collect();
        self.evict_programs(&ids);
        !ids.is_empty()
    }

    /// Per program (by id): whether it is kept at the program limit, because
    /// a process of it reported twice or because it has none left (a dead
    /// program, exported until forgotten); a program of only once-seen
    /// processes is not.
    fn programs_kept(&self) -> Vec<bool> {
        let mut confirmed = vec![true; self.programs.len()];
        let mut has_process = vec![false; self.programs.len()];
        for id in self.processes.keys() {
            if let Some(h) = has_process.get_mut(id.program as usize) {
                *h = true;
            }
        }
        for (c, h) in confirmed.iter_mut().zip(&has_process) {
            *c = !*h;
        }
        for (id, p) in &self.processes {
            if p.has(CONFIRMED)
                && let Some(c) = confirmed.get_mut(id.program as usize)
            {
                *c = true;
            }
        }
        confirmed
    }

    /// Drops the programs `ids` and their processes at the program limit.
    fn evict_programs(&mut self, ids: &[ProgramId]) {
        let mut evict = vec![false; self.programs.len()];
        for id in ids {
            if let Some(e) = evict.get_mut(*id as usize) {
                *e = true;
            }
        }
        let (stats, tokens) = (&mut self.stats, &mut self.tokens);
        self.processes.retain(|id, _| {
            let gone = evict.get(id.program as usize).copied().unwrap_or(false);
            if gone {
                stats.processes_evicted += 1;
                tokens.release(id.token);
            }
            !gone
        });
        for id in ids {
            if let Some(slot) = self.programs.get_mut(*id as usize)
                && let Some(program) = slot.take()
            {
                if let Some(programs) = self.index.get_mut(&*program.host) {
                    programs.remove(&*program.name);
                    if programs.is_empty() {
                        self.index.remove(&*program.host);
                    }
                }
                self.free.push(*id);
                self.program_count -= 1;
                self.stats.programs_evicted += 1;
            }
        }
        self.publish();
    }

    fn add_program(&mut self, host: &str, name: &str, source: Source, at: Instant) -> ProgramId {
        let host: Arc<str> = match self.index.get_key_value(host) {
            Some((h, _)) => h.clone(),
            None => host.into(),
        };
        let name: Arc<str> = name.into();
        let program = Program {
            host: host.clone(),
            name: name.clone(),
            totals: [0; 4],
            transactions: None,
            last_report_unix: 0.0,
            interval: 0.0,
            live_until: self.tick(at),
            clock_offset: None,
            clock_steps: 0,
            source,
            created: match &self.shared {
                // Comparable across shards, for the program limit's choice.
                Some(shared) => shared
                    .programs_made
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                None => self.programs_made,
            },
            peaks: Peaks::new(self.bucket(at)),
            history: History::new(self.tick(at).0 / HISTORY_STEP),
        };
        self.programs_made += 1;
        let id = match self.free.pop() {
            Some(id) => {
                self.programs[id as usize] = Some(program);
                id
            }
            None => {
                self.programs.push(Some(program));
                (self.programs.len() - 1) as ProgramId
            }
        };
        self.index.entry(host).or_default().insert(name, id);
        self.program_count += 1;
        id
    }

    /// Counts expiries and drops what `forget_after` says to forget.
    pub fn sweep(&mut self, now: Instant) {
        let now_tick = self.tick(now);
        let forget = self.forget_ticks();
        let stats = &mut self.stats;
        let tokens = &mut self.tokens;
        let mut removed_processes = 0;
        // The held sums counted afresh: without the processes whose expiry
        // is counted now, and without what adding and taking away fractions
        // may have left.
        let mut held = vec![[0.0f64; 2]; self.programs.len()];
        self.processes.retain(|id, p| {
            if p.live_until <= now_tick && !p.has(EXPIRY_COUNTED) {
                p.flags |= EXPIRY_COUNTED;
                stats.processes_expired += 1;
            }
            let keep = p.live_until.0.saturating_add(forget) > now_tick.0;
            if !keep {
                removed_processes += 1;
                tokens.release(id.token);
            } else if let Some(sum) = held.get_mut(id.program as usize) {
                let load = p.load();
                sum[0] += load[0];
                sum[1] += load[1];
            }
            keep
        });
        stats.processes_forgotten += removed_processes;
        // A program's `live_until` is the latest of its processes', so a
        // program forgotten here has no process left.
        for (id, slot) in self.programs.iter_mut().enumerate() {
            let Some(program) = slot else { continue };
            if program.live_until.0.saturating_add(forget) > now_tick.0 {
                continue;
            }
            if let Some(programs) = self.index.get_mut(&*program.host) {
                programs.remove(&*program.name);
                if programs.is_empty() {
                    self.index.remove(&*program.host);
                }
            }
            *slot = None;
            self.free.push(id as ProgramId);
            self.program_count -= 1;
            stats.programs_forgotten += 1;
        }
        self.hold(&held, now);
        self.shrink();
        self.publish();
    }

    /// The held sums of each program (by id) are `held` from `at` on.
    fn hold(&mut self, held: &[[f64; 2]], at: Instant) {
        let (tick, peak_bucket) = (self.tick(at), self.peak_bucket);
        for (slot, held) in self.programs.iter_mut().zip(held) {
            if let Some(program) = slot
                && program.peaks.held() != *held
            {
                program.set_held(*held, tick, peak_bucket);
            }
        }
    }

    /// After a wave of processes is forgotten the process map keeps its
    /// size (and what deletions left in it); a map four times larger than
    /// needed is rebuilt at twice its contents, so memory follows the fleet
    /// down as well as up.
    fn shrink(&mut self) {
        const MIN: usize = 1024;
        if self.processes.capacity() > MIN.max(4 * self.processes.len()) {
            self.processes.shrink_to(MIN.max(2 * self.processes.len()));
        }
        let tokens = &mut self.tokens;
        if tokens.numbers.capacity() > MIN.max(4 * tokens.numbers.len()) {
            tokens.numbers.shrink_to(MIN.max(2 * tokens.numbers.len()));
            tokens.names.shrink_to(MIN.max(2 * tokens.names.len()));
        }
    }

    fn forget_ticks(&self) -> u64 {
        self.freshness
            .forget_after
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64
    }

    /// At the process limit, dead processes make room: they only guard
    /// against counting a process twice if it comes back.
    fn evict_dead_processes(&mut self, now: Instant) {
        if self
            .last_eviction_scan
            .is_some_and(|t| now.duration_since(t) < SCAN_EVERY)
        {
            return;
        }
        self.last_eviction_scan = Some(now);
        let now_tick = self.tick(now);
        let peak_bucket = self.peak_bucket;
        let stats = &mut self.stats;
        let tokens = &mut self.tokens;
        let programs = &mut self.programs;
        self.processes.retain(|id, p| {
            let live = p.live_until > now_tick;
            if !live {
                stats.processes_forgotten += 1;
                if !p.has(EXPIRY_COUNTED) {
                    stats.processes_expired += 1;
                }
                unload(programs, *id, p, now_tick, peak_bucket);
                tokens.release(id.token);
            }
            live
        });
        self.publish();
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
        let now_tick = self.tick(now);
        let forget = self.forget_ticks();
        // Live processes and pool gauges per program, in one pass.
        let mut live = vec![(0u64, Pool::default()); self.programs.len()];
        for (id, p) in &self.processes {
            if p.live_until <= now_tick {
                continue;
            }
            let Some((processes, pool)) = live.get_mut(id.program as usize) else {
                continue;
            };
            match p.extra.as_deref() {
                Some(Extra {
                    relay: Some(relay), ..
                }) => {
                    *processes += relay.processes();
                    pool.add(&relay.pool());
                }
                _ => {
                    *processes += 1;
                    if let Some((_, g)) = &p.pool {
                        pool.add(g);
                    }
                }
            }
        }
        let mut programs = Vec::with_capacity(self.program_count);
        let bucket = now_tick.0 / self.peak_bucket;
        for (slot, (processes, pool)) in self.programs.iter().zip(live) {
            let Some(program) = slot else { continue };
            if program.live_until.0.saturating_add(forget) <= now_tick.0 {
                continue;
            }
            // Never below the gauges themselves (which leave a process out
            // from the moment it is dead, the held sums from the sweep on).
            let [checked_out, connections] = program.peaks.peak(bucket);
            programs.push(ProgramSnapshot {
                checked_out_peak: checked_out.max(pool.checkedout),
                connections_peak: connections.max(pool.connections),
                host: program.host.clone(),
                program: program.name.clone(),
                processes,
                pool,
                totals: program.totals,
                transactions: program.transactions,
                last_report_unix: program.last_report_unix,
                interval_seconds: program.interval,
                connections_max: None,
                clock_offset_seconds: program.clock_offset,
                clock_steps: program.clock_steps,
            });
        }
        Snapshot {
            programs,
            tracked_processes: self.processes.len(),
            stats: self.stats,
        }
    }
}

impl SqlaStore {
    /// The history of every host/program not yet forgotten at `now`
    /// (`history`), in no particular order: what `/api/v1/pools?history=1`
    /// copies under the lock, [`history::SAMPLES`] numbers a program.
    pub fn histories_unsorted(&self, now: Instant) -> Vec<ProgramHistory> {
        let now_tick = self.tick(now);
        let forget = self.forget_ticks();
        let step = now_tick.0 / HISTORY_STEP;
        self.programs
            .iter()
            .flatten()
            .filter(|p| p.live_until.0.saturating_add(forget) > now_tick.0)
            .map(|p| ProgramHistory {
                host: p.host.clone(),
                program: p.name.clone(),
                checked_out: p.history.samples(step),
            })
            .collect()
    }
}

/// How much the store holds (`/api/v1/status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Live processes, a relay's counted as the processes it sums.
    pub live_processes: u64,
    /// Processes held, dead ones included.
    pub tracked_processes: u64,
    /// Host/programs not yet forgotten.
    pub programs: u64,
}

impl SqlaStore {
    /// The counts at `now`, in one pass over the processes and one over the
    /// programs, copying nothing.
    pub fn counts(&self, now: Instant) -> Counts {
        let now_tick = self.tick(now);
        let forget = self.forget_ticks();
        let live_processes = self
            .processes
            .values()
            .filter(|p| p.live_until > now_tick)
            .map(|p| match p.extra.as_deref() {
                Some(Extra {
                    relay: Some(relay), ..
                }) => relay.processes(),
                _ => 1,
            })
            .sum();
        let programs = self
            .programs
            .iter()
            .flatten()
            .filter(|p| p.live_until.0.saturating_add(forget) > now_tick.0)
            .count();
        Counts {
            live_processes,
            tracked_processes: self.processes.len() as u64,
            programs: programs as u64,
        }
    }
}

/// One host/program's history: the most checked-out connections in each
/// step of [`history::STEP`], oldest first, the last one the current step's.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramHistory {
    pub host: Arc<str>,
    pub program: Arc<str>,
    pub checked_out: Vec<f32>,
}

/// A process left the store: what it held leaves its program's sums.
fn unload(
    programs: &mut [Option<Program>],
    id: ProcessId,
    process: &Process,
    at: Tick,
    peak_bucket: u64,
) {
    let load = process.load();
    if load != [0.0; 2]
        && let Some(Some(program)) = programs.get_mut(id.program as usize)
    {
        program.add_held([-load[0], -load[1]], at, peak_bucket);
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
/// (the client's totals start with the process) unless `old` is its
/// baseline; counts never go down here (`judge` refuses those as stale).
fn add_deltas<const N: usize>(sum: &mut [u64; N], old: Option<[u64; N]>, new: &[u64; N]) {
    for i in 0..N {
        let before = old.map_or(0, |o| o[i]);
        sum[i] = sum[i].saturating_add(new[i].saturating_sub(before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ProcessKey;
    use std::time::Duration;

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
        // What each tracked process costs: one map entry of key and record
        // (the map adds a control byte and its free slots).
        assert_eq!(
            std::mem::size_of::<(ProcessId, Process)>(),
            128,
            "{} + {}",
            std::mem::size_of::<ProcessId>(),
            std::mem::size_of::<Process>()
        );
    }

    #[test]
    fn the_process_map_shrinks_when_the_fleet_does() {
        let mut s = store();
        let t0 = Now::wall();
        for n in 0..20_000 {
            s.apply(&pool_rec("api", &format!("{n}:abcdef"), 10, 1.0, 2.0), t0)
                .unwrap();
        }
        let grown = s.processes.capacity();
        assert!(grown >= 20_000);
        // All but 100 are forgotten; those 100 keep reporting.
        let later = Now {
            at: t0.at + Duration::from_secs(3000),
            unix: t0.unix + 3000.0,
        };
        for n in 0..100 {
            s.apply(
                &pool_rec("api", &format!("{n}:abcdef"), 20, 1.0, 2.0),
                later,
            )
            .unwrap();
        }
        s.sweep(t0.at + Duration::from_secs(3700));
        assert_eq!(s.snapshot(later.at).tracked_processes, 100);
        assert!(
            s.processes.capacity() < grown / 4,
            "{} of {grown}",
            s.processes.capacity()
        );
        assert_eq!(one(&s, later.at).processes, 100);
    }

    #[test]
    fn client_tokens_pack_into_one_number_each() {
        assert_eq!(packed_token("12345:abcdef"), Some(12345 << 24 | 0xabcdef));
        assert_eq!(packed_token("0:000000"), Some(0));
        assert_eq!(
            packed_token("4294967295:ffffff"),
            Some(u64::from(u32::MAX) << 24 | 0xffffff)
        );
        // Anything that would not give the token back as it was is text.
        for text in [
            "",
            ":",
            "1:abcde",
            "1:abcdef0",
            "1:ABCDEF",
            "01:abcdef",
            "+1:abcdef",
            "4294967296:abcdef",
            "a:abcdef",
            "1:abcdeg",
            "1;abcdef",
            "1:2:abcdef",
            "é:abcdef",
            "\0relay",
        ] {
            assert_eq!(packed_token(text), None, "{text:?}");
        }
    }

    proptest::proptest! {
        /// A token packs exactly when the number gives it back as it was.
        #[test]
        fn a_token_packs_exactly_when_its_number_gives_it_back(
            token in "[0-9+]{0,11}[:;]?[0-9a-gA-F]{0,7}"
        ) {
            let back = packed_token(&token).map(|n| format!("{}:{:06x}", n >> 24, n & 0xff_ffff));
            let canonical = token.split_once(':').is_some_and(|(pid, hex)| {
                pid.parse::<u32>().is_ok_and(|p| p.to_string() == pid)
                    && hex.len() == 6
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
            proptest::prop_assert_eq!(back.as_deref(), canonical.then_some(token.as_str()));
        }
    }

    #[test]
    fn text_tokens_are_numbered_while_a_process_holds_them() {
        let mut t = Tokens::default();
        let a = t.hold("worker-a");
        assert_ne!(a & TEXT_TOKEN, 0);
        assert_eq!(
            t.hold("worker-a"),
            a,
            "a second program's process shares it"
        );
        let b = t.hold("worker-b");
        assert_ne!(a, b);
        assert_eq!(t.find("worker-a"), Some(a));
        t.release(a);
        assert_eq!(t.find("worker-a"), Some(a), "one holder left");
        t.release(a);
        assert_eq!(t.find("worker-a"), None);
        assert_eq!((t.numbers.len(), t.names.len()), (1, 1));
        // Packed tokens are never held.
        assert_eq!(t.hold("7:00000a"), 7 << 24 | 0xa);
        assert_eq!(t.numbers.len(), 1);
    }

    #[test]
    fn the_same_token_in_two_programs_is_two_processes() {
        let mut s = store();
        let t0 = Now::wall();
        for program in ["api", "worker"] {
            s.apply(&pool_rec(program, "100:abcdef", 10, 1.0, 2.0), t0)
                .unwrap();
            s.apply(&pool_rec(program, "odd-token", 10, 1.0, 2.0), t0)
                .unwrap();
        }
        let snap = s.snapshot(t0.at);
        assert_eq!(snap.tracked_processes, 4);
        assert_eq!(
            snap.programs
                .iter()
                .map(|p| p.processes)
                .collect::<Vec<_>>(),
            [2, 2]
        );
        s.sweep(t0.at + Duration::from_secs(7200));
        assert_eq!(s.snapshot(t0.at).tracked_processes, 0);
        assert!(s.tokens.numbers.is_empty() && s.tokens.names.is_empty());
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
    fn totals_that_go_down_are_stale_whatever_their_time() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&totals_rec("app", "1:a", 100, [10, 4, 5, 5]), t0)
            .unwrap();
        for t in [102, 100_000] {
            assert_eq!(
                s.apply(&totals_rec("app", "1:a", t, [3, 4, 6, 5]), t0.after(2 * S)),
                Err(ApplyError::Stale)
            );
        }
        assert_eq!(one(&s, t0.at + 2 * S).totals, [10, 4, 5, 5]);
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
        // The report of t=102 arrives last: its totals are lower, stale.
        let late = totals_rec("app", "1:a", 102, [15, 0, 1, 0]);
        assert_eq!(s.apply(&late, t0.after(3 * S)), Err(ApplyError::Stale));
        // One of t=103 with the same totals as t=104: late within an interval.
        let late = totals_rec("app", "1:a", 103, [20, 0, 2, 0]);
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
        assert!(s.index.is_empty());
        assert_eq!(s.program_count, 0);
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
        for (t, at) in [(100, t0), (101, t0.after(S))] {
            s.apply(&pool_rec("app", "1:a", t, 1.0, 1.0), at).unwrap();
            s.apply(&pool_rec("app", "2:b", t, 1.0, 1.0), at).unwrap();
        }
        // Both reported twice: neither makes room.
        assert_eq!(
            s.apply(&pool_rec("app", "3:c", 100, 1.0, 1.0), t0.after(S)),
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
        s.apply(&pool_rec("a", "1:a", 102, 1.0, 1.0), t0).unwrap();
        // "a" has a process that reported twice: it stays.
        assert_eq!(
            s.apply(&pool_rec("b", "1:a", 100, 1.0, 1.0), t0),
            Err(ApplyError::OverLimit("program"))
        );
        assert_eq!(s.snapshot(t0.at).programs.len(), 1);
    }

    #[test]
    fn a_runaway_host_behind_a_shared_source_makes_room_out_of_its_own() {
        let limits = Limits {
            max_processes: 10,
            max_programs: 10,
        };
        let mut s = SqlaStore::new(Freshness::default(), limits);
        let t0 = Now::wall();
        let from_host = |s: &mut SqlaStore, host: &str, token: &str| {
            let mut r = pool_rec("app", token, 100, 1.0, 1.0);
            r.key.host = host.into();
            s.apply_report(
                &Report {
                    source: Source(7),
                    ..r.report()
                },
                t0,
            )
        };
        // One relay (or NAT): the same source for every host. "runaway"
        // floods new tokens; "web1" starts three new processes meanwhile.
        for n in 0..5 {
            from_host(&mut s, "runaway", &format!("{n}:aaaaaa")).unwrap();
        }
        for n in 0..3 {
            from_host(&mut s, "web1", &format!("{n}:bbbbbb")).unwrap();
        }
        for n in 5..500 {
            from_host(&mut s, "runaway", &format!("{n}:aaaaaa")).unwrap();
        }
        let snap = s.snapshot(t0.at);
        let web1 = snap
            .programs
            .iter()
            .find(|p| &*p.host == "web1")
            .map(|p| p.processes);
        assert_eq!(web1, Some(3), "{snap:?}");
        assert_eq!(snap.tracked_processes, 10);
    }

    #[test]
    fn a_flood_of_new_programs_makes_room_out_of_its_own() {
        let limits = Limits {
            max_processes: 1000,
            max_programs: 16,
        };
        let mut s = SqlaStore::new(Freshness::default(), limits);
        let t0 = Now::wall();
        let rec = |program: &str, t| pool_rec(program, "1:aaaaaa", t, 1.0, 1.0);
        let apply = |s: &mut SqlaStore, source, program: &str, t, now: Now| {
            let r = rec(program, t);
            s.apply_report(
                &Report {
                    source: Source(source),
                    ..r.report()
                },
                now,
            )
        };
        // Source 1's program reported twice; source 2 fills the limit with
        // programs of one report each.
        apply(&mut s, 1, "ours", 100, t0).unwrap();
        apply(&mut s, 1, "ours", 102, t0).unwrap();
        for n in 0..15 {
            apply(&mut s, 2, &format!("flood{n}"), 100, t0).unwrap();
        }
        // A new program of source 1 gets in: the newest eighth of the limit
        // (2) of source 2's programs go at once.
        apply(&mut s, 1, "new", 100, t0).unwrap();
        let snap = s.snapshot(t0.at);
        assert_eq!(snap.programs.len(), 15);
        assert_eq!(snap.stats.programs_evicted, 2);
        assert_eq!(snap.stats.processes_evicted, 2);
        let names: Vec<&str> = snap.programs.iter().map(|p| &*p.program).collect();
        assert!(
            names.contains(&"ours") && names.contains(&"new"),
            "{names:?}"
        );
        assert!(
            !names.contains(&"flood14") && !names.contains(&"flood13"),
            "{names:?}"
        );
        // Within the second, no other scan: the limit holds.
        apply(&mut s, 2, "flood15", 100, t0).unwrap();
        assert_eq!(
            apply(&mut s, 2, "flood16", 100, t0),
            Err(ApplyError::OverLimit("program"))
        );
        // A second later, room again.
        apply(&mut s, 2, "flood16", 100, t0.after(S)).unwrap();
    }

    /// One report cycle of the real client: pool, then totals, same time.
    fn cycle(s: &mut SqlaStore, token: &str, t: u64, out: f64, totals: [u64; 4], at: Now) {
        assert_eq!(s.apply(&pool_rec("app", token, t, out, 4.0), at), Ok(()));
        assert_eq!(s.apply(&totals_rec("app", token, t, totals), at), Ok(()));
    }

    #[test]
    fn a_client_clock_stepped_back_keeps_its_process_exported() {
        let mut s = store();
        let t0 = Now::wall();
        let base = 1_000_000;
        for i in 0..5u64 {
            cycle(
                &mut s,
                "1:a",
                base + 2 * i,
                1.0,
                [10 * i, 0, 1, 0],
                t0.after(2 * i as u32 * S),
            );
        }
        // The clock goes back ten minutes; the process keeps reporting.
        let back = base + 10 - 600;
        cycle(&mut s, "1:a", back, 3.0, [50, 0, 1, 0], t0.after(10 * S));
        let p = one(&s, t0.at + 10 * S);
        assert_eq!(
            (p.processes, p.pool.checkedout, p.totals),
            (1, 3.0, [50, 0, 1, 0])
        );
        assert_eq!(p.clock_steps, 1);
        // The offset is what the client's clock says against the receive time.
        let offset = p.clock_offset_seconds.unwrap();
        assert!(
            (offset - (back as f64 - t0.after(10 * S).unix)).abs() < 1e-6,
            "{offset}"
        );
        // An idle process steps too: its totals did not grow.
        cycle(
            &mut s,
            "1:a",
            back + 2,
            2.0,
            [50, 0, 1, 0],
            t0.after(12 * S),
        );
        assert_eq!(one(&s, t0.at + 12 * S).pool.checkedout, 2.0);
        // Duplicates are still refused, and so is what was sent before the
        // step with lower totals.
        assert_eq!(
            s.apply(
                &totals_rec("app", "1:a", back + 2, [50, 0, 1, 0]),
                t0.after(12 * S)
            ),
            Err(ApplyError::OutOfOrder)
        );
        assert_eq!(
            s.apply(
                &pool_rec("app", "1:a", back + 2, 9.0, 9.0),
                t0.after(12 * S)
            ),
            Err(ApplyError::OutOfOrder)
        );
        assert_eq!(
            s.apply(
                &totals_rec("app", "1:a", base + 8, [40, 0, 1, 0]),
                t0.after(13 * S)
            ),
            Err(ApplyError::Stale)
        );
        // The replayed pool report of before the step is held, never applied:
        // its totals were stale.
        s.apply(
            &pool_rec("app", "1:a", base + 8, 9.0, 9.0),
            t0.after(13 * S),
        )
        .unwrap();
        cycle(
            &mut s,
            "1:a",
            back + 4,
            1.0,
            [60, 1, 1, 0],
            t0.after(14 * S),
        );
        let p = one(&s, t0.at + 14 * S);
        assert_eq!(
            (p.pool.checkedout, p.totals, p.clock_steps),
            (1.0, [60, 1, 1, 0], 1)
        );
    }

    #[test]
    fn a_clock_stepped_forward_a_day_and_back_keeps_counting() {
        let mut s = store();
        let t0 = Now::wall();
        let base = 1_000_000;
        cycle(&mut s, "1:a", base, 1.0, [1, 0, 1, 0], t0);
        cycle(
            &mut s,
            "1:a",
            base + 86_400,
            2.0,
            [2, 0, 1, 0],
            t0.after(2 * S),
        );
        cycle(&mut s, "1:a", base + 4, 3.0, [3, 0, 1, 0], t0.after(4 * S));
        cycle(&mut s, "1:a", base + 6, 4.0, [4, 0, 1, 0], t0.after(6 * S));
        let p = one(&s, t0.at + 6 * S);
        assert_eq!(
            (p.processes, p.pool.checkedout, p.totals, p.clock_steps),
            (1, 4.0, [4, 0, 1, 0], 1)
        );
    }

    #[test]
    fn a_pool_report_arriving_after_its_stepped_totals_is_applied() {
        let mut s = store();
        let t0 = Now::wall();
        cycle(&mut s, "1:a", 1_000, 1.0, [1, 0, 1, 0], t0);
        s.apply(
            &totals_rec("app", "1:a", 100, [2, 0, 1, 0]),
            t0.after(2 * S),
        )
        .unwrap();
        s.apply(&pool_rec("app", "1:a", 100, 3.0, 4.0), t0.after(2 * S))
            .unwrap();
        let p = one(&s, t0.at + 2 * S);
        assert_eq!(
            (p.pool.checkedout, p.totals, p.clock_steps),
            (3.0, [2, 0, 1, 0], 1)
        );
    }

    #[test]
    fn after_a_start_without_saved_state_first_reports_are_baselines() {
        let mut s = store();
        s.baseline_at_start();
        let t0 = Now::wall();
        // A process that was running before the start: its lifetime totals
        // are not activity seen here.
        cycle(&mut s, "1:a", 100, 1.0, [100_000, 3, 20, 19], t0);
        cycle(
            &mut s,
            "1:a",
            102,
            1.0,
            [100_010, 3, 21, 19],
            t0.after(2 * S),
        );
        assert_eq!(one(&s, t0.at + 2 * S).totals, [10, 0, 1, 0]);
        // First seen after the start-up window (3 intervals of 2 s): new, so
        // it counts from zero.
        cycle(&mut s, "2:b", 106, 1.0, [5, 0, 1, 0], t0.after(6 * S));
        assert_eq!(one(&s, t0.at + 6 * S).totals, [15, 0, 2, 0]);
        assert_eq!(s.snapshot(t0.at).stats.processes_baselined, 1);
    }

    fn from(
        s: &mut SqlaStore,
        source: u32,
        token: &str,
        t: u64,
        at: Now,
    ) -> Result<(), ApplyError> {
        let r = pool_rec("app", token, t, 1.0, 1.0);
        s.apply_report(
            &Report {
                source: Source(source),
                ..r.report()
            },
            at,
        )
    }

    #[test]
    fn a_flood_of_new_tokens_makes_room_out_of_its_own_entries() {
        let limits = Limits {
            max_processes: 10,
            max_programs: 10,
        };
        let mut s = SqlaStore::new(Freshness::default(), limits);
        let t0 = Now::wall();
        // A legitimate process, reported twice.
        from(&mut s, 1, "1:aaaaaa", 100, t0).unwrap();
        from(&mut s, 1, "1:aaaaaa", 102, t0.after(S)).unwrap();
        // Source 2 floods new tokens far past the limit.
        for n in 0..1000 {
            from(&mut s, 2, &format!("{n}:bbbbbb"), 100, t0.after(S)).unwrap();
        }
        // Source 1's new processes get in and stay while the flood goes on.
        for n in 0..3 {
            from(&mut s, 1, &format!("{}:cccccc", n + 10), 100, t0.after(S)).unwrap();
        }
        for n in 1000..2000 {
            from(&mut s, 2, &format!("{n}:bbbbbb"), 100, t0.after(S)).unwrap();
        }
        for n in 0..3 {
            from(
                &mut s,
                1,
                &format!("{}:cccccc", n + 10),
                102,
                t0.after(2 * S),
            )
            .unwrap();
        }
        let snap = s.snapshot(t0.at + 2 * S);
        assert_eq!(snap.tracked_processes, 10);
        // The first 9 of the flood fit; every later new token, the flood's
        // and source 1's, evicts one of the flood's.
        assert_eq!(snap.stats.processes_evicted, (1000 - 9) + 3 + 1000);
        for token in ["1:aaaaaa", "10:cccccc", "11:cccccc", "12:cccccc"] {
            let id = ProcessId {
                program: 0,
                token: packed_token(token).unwrap(),
            };
            assert!(s.processes.contains_key(&id), "{token} was evicted");
        }
        // Once every process reported twice, nothing makes room.
        let mut s = SqlaStore::new(
            Freshness::default(),
            Limits {
                max_processes: 2,
                max_programs: 10,
            },
        );
        for n in 0..2 {
            from(&mut s, 1, &format!("{n}:dddddd"), 100, t0).unwrap();
            from(&mut s, 1, &format!("{n}:dddddd"), 102, t0).unwrap();
        }
        assert_eq!(
            from(&mut s, 2, "9:dddddd", 100, t0),
            Err(ApplyError::OverLimit("process"))
        );
    }

    /// The peaks of the only program at `at`: checked out, connections.
    fn peaks(s: &SqlaStore, at: Instant) -> (f64, f64) {
        let p = one(s, at);
        (p.checked_out_peak, p.connections_peak)
    }

    #[test]
    fn a_burst_between_scrapes_is_the_peak_for_the_window() {
        // The default window: 1 minute in buckets of 10 s.
        let mut s = store();
        let t0 = Now::wall();
        let at = |secs: u64| t0.after(Duration::from_secs(secs));
        // Two workers at 1 and 2 checked out; one bursts to 10 for 4 s.
        s.apply(&pool_rec("api", "1:aaaaaa", 100, 1.0, 5.0), at(0))
            .unwrap();
        s.apply(&pool_rec("api", "2:bbbbbb", 100, 2.0, 5.0), at(0))
            .unwrap();
        s.apply(&pool_rec("api", "1:aaaaaa", 102, 10.0, 12.0), at(2))
            .unwrap();
        s.apply(&pool_rec("api", "1:aaaaaa", 104, 10.0, 12.0), at(4))
            .unwrap();
        s.apply(&pool_rec("api", "2:bbbbbb", 104, 2.0, 5.0), at(4))
            .unwrap();
        s.apply(&pool_rec("api", "1:aaaaaa", 106, 1.0, 12.0), at(6))
            .unwrap();
        // A scrape at 7 s sees 3 checked out now, 12 at the burst's height.
        let p = one(&s, at(7).at);
        assert_eq!((p.pool.checkedout, p.pool.connections), (3.0, 17.0));
        assert_eq!(peaks(&s, at(7).at), (12.0, 17.0));
        // Both keep reporting; the burst stays the peak for the window
        // (its bucket, 0–10 s, leaves at 70 s).
        for (n, t) in (8..=68).step_by(2).enumerate() {
            let time = 108 + 2 * n as u64;
            s.apply(&pool_rec("api", "1:aaaaaa", time, 1.0, 12.0), at(t))
                .unwrap();
            s.apply(&pool_rec("api", "2:bbbbbb", time, 2.0, 5.0), at(t))
                .unwrap();
            s.sweep(at(t).at);
        }
        assert_eq!(peaks(&s, at(69).at), (12.0, 17.0));
        assert_eq!(peaks(&s, at(70).at), (3.0, 17.0));
    }

    #[test]
    fn a_dead_process_leaves_the_peak_a_window_after_its_expiry_is_counted() {
        let mut s = store();
        let t0 = Now::wall();
        let at = |secs: u64| t0.after(Duration::from_secs(secs));
        s.apply(&pool_rec("api", "1:aaaaaa", 100, 4.0, 6.0), at(0))
            .unwrap();
        s.apply(&pool_rec("api", "2:bbbbbb", 100, 1.0, 1.0), at(0))
            .unwrap();
        // Worker 1 stops; worker 2 goes on. Worker 1 is dead 6 s after its
        // report (3 intervals of 2 s) and leaves the held sums at the sweep.
        for t in (2..=30).step_by(2) {
            s.apply(&pool_rec("api", "2:bbbbbb", 100 + t, 1.0, 1.0), at(t))
                .unwrap();
            s.sweep(at(t).at);
        }
        let p = one(&s, at(30).at);
        assert_eq!((p.processes, p.pool.checkedout), (1, 1.0));
        assert_eq!(peaks(&s, at(30).at), (5.0, 7.0));
        // Its expiry was counted at the sweep at 6 s, in the bucket of 0–10 s.
        assert_eq!(peaks(&s, at(69).at), (5.0, 7.0));
        assert_eq!(peaks(&s, at(70).at), (1.0, 1.0));
    }

    #[test]
    fn the_peak_is_never_below_the_gauges() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool_rec("api", "1:aaaaaa", 100, 3.0, 4.0), t0)
            .unwrap();
        assert_eq!(peaks(&s, t0.at), (3.0, 4.0));
        // A scrape whose clock was read before the report's.
        assert_eq!(peaks(&s, t0.at - Duration::from_millis(1)), (3.0, 4.0));
        // Long after, with the process still reporting the same.
        let later = t0.after(3600 * S);
        s.apply(&pool_rec("api", "1:aaaaaa", 3700, 3.0, 4.0), later)
            .unwrap();
        assert_eq!(peaks(&s, later.at), (3.0, 4.0));
    }

    #[test]
    fn a_process_that_comes_back_after_its_expiry_counts_again() {
        let mut s = store();
        let t0 = Now::wall();
        let at = |secs: u64| t0.after(Duration::from_secs(secs));
        s.apply(&pool_rec("api", "1:aaaaaa", 100, 2.0, 2.0), at(0))
            .unwrap();
        s.sweep(at(7).at);
        assert_eq!(
            s.programs[0].as_ref().map(|p| p.peaks.held()),
            Some([0.0; 2])
        );
        // Its totals bring it back with the pool it last reported.
        s.apply(&totals_rec("api", "1:aaaaaa", 108, [1, 0, 1, 0]), at(8))
            .unwrap();
        assert_eq!(
            s.programs[0].as_ref().map(|p| p.peaks.held()),
            Some([2.0; 2])
        );
        s.apply(&pool_rec("api", "1:aaaaaa", 110, 3.0, 3.0), at(10))
            .unwrap();
        assert_eq!(
            s.programs[0].as_ref().map(|p| p.peaks.held()),
            Some([3.0; 2])
        );
        assert_eq!(peaks(&s, at(10).at), (3.0, 3.0));
    }

    #[test]
    fn the_peak_window_is_the_flag() {
        let f = Freshness {
            peak_window: Duration::from_secs(6),
            ..Freshness::default()
        };
        let mut s = SqlaStore::new(f, Limits::default());
        let t0 = Now::wall();
        let at = |secs: u64| t0.after(Duration::from_secs(secs));
        s.apply(&pool_rec("api", "1:aaaaaa", 100, 9.0, 9.0), at(0))
            .unwrap();
        s.apply(&pool_rec("api", "1:aaaaaa", 101, 1.0, 9.0), at(1))
            .unwrap();
        // Buckets of 1 s: the 9 of 0–2 s leaves at 8 s.
        assert_eq!(peaks(&s, at(7).at), (9.0, 9.0));
        assert_eq!(peaks(&s, at(8).at), (1.0, 9.0));
    }

    #[test]
    fn relayed_gauges_make_the_relays_peak() {
        let mut s = store();
        let t0 = Now::wall();
        let g = |index, value| RelayStat::Gauge { index, value };
        s.apply(&relay_rec(100, g(1, 7.0)), t0).unwrap();
        s.apply(&relay_rec(100, g(4, 8.0)), t0).unwrap();
        s.apply(&relay_rec(110, g(1, 2.0)), t0.after(10 * S))
            .unwrap();
        let p = one(&s, t0.after(10 * S).at);
        assert_eq!((p.pool.checkedout, p.checked_out_peak), (2.0, 7.0));
        assert_eq!((p.pool.connections, p.connections_peak), (8.0, 8.0));
    }

    #[test]
    fn an_evicted_process_leaves_the_sums() {
        let limits = Limits {
            max_processes: 2,
            ..Limits::default()
        };
        let mut s = SqlaStore::new(Freshness::default(), limits);
        let t0 = Now::wall();
        s.apply(&pool_rec("api", "1:aaaaaa", 100, 2.0, 2.0), t0)
            .unwrap();
        s.apply(&pool_rec("api", "1:aaaaaa", 102, 2.0, 2.0), t0.after(2 * S))
            .unwrap();
        s.apply(&pool_rec("api", "2:bbbbbb", 100, 5.0, 5.0), t0)
            .unwrap();
        // A third makes room out of the once-seen second.
        s.apply(&pool_rec("api", "3:cccccc", 100, 1.0, 1.0), t0.after(2 * S))
            .unwrap();
        assert_eq!(s.stats.processes_evicted, 1);
        assert_eq!(
            s.programs[0].as_ref().map(|p| p.peaks.held()),
            Some([3.0; 2])
        );
    }
}
