//! Stores keep what the routed records say, judged by the exporter's own
//! receive clock: `Freshness` turns a sender's interval into how long its data
//! stays live, and how long a program with nothing live is remembered.
//!
//! Takes routed records and the time they arrived; hands on snapshots (under
//! each store's lock, for the copy only). [`Stores`] is the pair ingest
//! writes to and the scrape reads; each has one mutex, taken by a receive
//! thread once per batch, by the sweep once a second, and by a scrape for its
//! copy.

pub mod collectd;
pub mod sqlalchemy;

use crate::collectd::CdTime;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Locks a store (or any of the exporter's mutexes). A panic while a store
/// was locked cannot have left it half-updated in a way that matters more
/// than losing every later report, so a poisoned lock is taken over rather
/// than propagated.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key that appears most often in `keys` (of equals, the greatest):
/// whose entries make room at a limit (a sender's address, a host).
pub fn most_common<K: std::hash::Hash + Eq + Ord + Copy>(
    keys: impl Iterator<Item = K>,
) -> Option<K> {
    let mut held: std::collections::HashMap<K, u64> = std::collections::HashMap::new();
    for k in keys {
        *held.entry(k).or_default() += 1;
    }
    held.into_iter()
        .max_by_key(|(k, n)| (*n, *k))
        .map(|(k, _)| k)
}

/// At a limit: the entries that make room, from the last scan (the next
/// one last), and when another scan may run: once the list is used up, and
/// then only a second after the last or once an eighth of the entries held
/// went since, so that a flood cannot turn every datagram into a full scan.
#[derive(Debug)]
pub struct Victims<K> {
    list: Vec<K>,
    last_scan: Option<Instant>,
    since_scan: usize,
}

impl<K> Default for Victims<K> {
    fn default() -> Self {
        Victims {
            list: Vec::new(),
            last_scan: None,
            since_scan: 0,
        }
    }
}

/// How often a store at a limit may scan for what to drop.
pub const SCAN_EVERY: Duration = Duration::from_secs(1);

impl<K> Victims<K> {
    /// The next entry to drop that `evictable` still says may go, of `held`
    /// entries in all; `scan` lists them afresh (the next one last) when a
    /// scan is due. `None`: nothing may go now.
    pub fn next(
        &mut self,
        now: Instant,
        held: usize,
        mut evictable: impl FnMut(&K) -> bool,
        mut scan: impl FnMut() -> Vec<K>,
    ) -> Option<K> {
        loop {
            while let Some(k) = self.list.pop() {
                if evictable(&k) {
                    self.since_scan += 1;
                    return Some(k);
                }
            }
            if self
                .last_scan
                .is_some_and(|t| now.duration_since(t) < SCAN_EVERY && self.since_scan < held / 8)
            {
                return None;
            }
            self.last_scan = Some(now);
            self.since_scan = 0;
            self.list = scan();
            if self.list.is_empty() {
                return None;
            }
        }
    }
}

/// The two stores: the SQLAlchemy one in shards (one per receive thread),
/// each behind its own lock, and the generic one behind one.
#[derive(Debug)]
pub struct Stores {
    pub sqla: sqlalchemy::shards::Shards,
    pub generic: Mutex<collectd::GenericStore>,
}

impl Stores {
    pub fn new(freshness: Freshness, limits: sqlalchemy::Limits, max_series: usize) -> Self {
        Stores::with(
            sqlalchemy::shards::Shards::one(sqlalchemy::SqlaStore::new(freshness, limits)),
            freshness,
            max_series,
        )
    }

    /// A given SQLAlchemy store (restored, or with the start-up baseline)
    /// and an empty generic one.
    pub fn with(sqla: sqlalchemy::shards::Shards, freshness: Freshness, max_series: usize) -> Self {
        Stores {
            sqla,
            generic: Mutex::new(collectd::GenericStore::new(freshness, max_series)),
        }
    }

    /// What a scrape copies out of the SQLAlchemy store: everything done
    /// while ingest waits on a shard's lock, one shard at a time (sorting
    /// comes after).
    pub fn sqla_snapshot(&self, now: Instant) -> sqlalchemy::Snapshot {
        self.sqla.snapshot_unsorted(now)
    }

    /// One page of a host/program's processes (`GET /api/v1/processes`):
    /// selected under the lock, which copies the page only.
    pub fn sqla_processes(
        &self,
        host: &str,
        program: &str,
        now: Instant,
        order: sqlalchemy::processes::ProcessOrder,
        offset: usize,
        limit: usize,
    ) -> Option<sqlalchemy::processes::ProcessList> {
        self.sqla
            .processes(host, program, now, order, offset, limit)
    }

    /// Every host/program's history, copied under the lock (sorted after).
    pub fn sqla_histories(&self, now: Instant) -> Vec<sqlalchemy::ProgramHistory> {
        let mut all = self.sqla.histories_unsorted(now);
        all.sort_unstable_by(|a, b| (&*a.host, &*a.program).cmp(&(&*b.host, &*b.program)));
        all
    }

    /// How much the SQLAlchemy store holds (nothing copied).
    pub fn sqla_counts(&self, now: Instant) -> sqlalchemy::Counts {
        self.sqla.counts(now)
    }

    /// What a scrape copies out of the generic store (naming comes after).
    pub fn generic_live(&self, now: Instant) -> collectd::Live {
        lock(&self.generic).live(now)
    }

    /// Counts dead processes and drops forgotten ones (see each store).
    pub fn sweep(&self, now: Instant) {
        self.sqla.sweep(now);
        lock(&self.generic).sweep(now);
    }
}

/// The moment a datagram was received, on both clocks: `at` for expiry
/// (monotonic), `unix` for the timestamps we export.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub at: Instant,
    pub unix: f64,
}

impl Now {
    pub fn wall() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Now {
            at: Instant::now(),
            unix,
        }
    }

    /// The same moment, `d` later on both clocks.
    pub fn after(self, d: Duration) -> Self {
        Now {
            at: self.at + d,
            unix: self.unix + d.as_secs_f64(),
        }
    }
}

/// collectd's default `Interval`, used when a sender gives none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Intervals beyond this are clamped, so no sender can keep data alive forever.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Live for this many of the sender's own intervals...
    pub stale_intervals: u32,
    /// ...unless a fixed duration is set.
    pub stale_after: Option<Duration>,
    /// How long a program with no live process stays exported.
    pub forget_after: Duration,
    /// The span of the peak gauges (`sqlalchemy::peaks`).
    pub peak_window: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            stale_intervals: 3,
            stale_after: None,
            forget_after: Duration::from_secs(3600),
            peak_window: Duration::from_secs(60),
        }
    }
}

impl Freshness {
    /// How long data sent with `interval` stays live after it was received.
    pub fn window(&self, interval: CdTime) -> Duration {
        if let Some(fixed) = self.stale_after {
            return fixed;
        }
        let interval = if interval.is_zero() {
            DEFAULT_INTERVAL
        } else {
            interval.as_duration().min(MAX_INTERVAL)
        };
        interval * self.stale_intervals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_n_of_the_senders_intervals() {
        let f = Freshness::default();
        assert_eq!(f.window(CdTime::from_secs(2)), Duration::from_secs(6));
    }

    #[test]
    fn missing_interval_uses_collectds_default() {
        assert_eq!(
            Freshness::default().window(CdTime(0)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn stale_after_overrides_the_interval() {
        let f = Freshness {
            stale_after: Some(Duration::from_millis(1500)),
            ..Freshness::default()
        };
        assert_eq!(f.window(CdTime::from_secs(2)), Duration::from_millis(1500));
    }

    #[test]
    fn huge_intervals_are_clamped() {
        let f = Freshness::default();
        assert_eq!(f.window(CdTime(u64::MAX)), MAX_INTERVAL * 3);
    }
}
