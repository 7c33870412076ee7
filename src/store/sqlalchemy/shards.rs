//! The SQLAlchemy store split into shards by host/program, so that several
//! receive threads apply their batches side by side instead of one after
//! another behind one mutex.
//!
//! Takes reports with their receive time; hands on what a single
//! [`SqlaStore`] does (snapshots, pages of processes, histories, counts, the
//! saved state), merged over the shards. A host/program lives in exactly one
//! shard (a seeded hash of host and program picks it), so every per-program
//! rule of the store (sums, peaks, history, ordering, expiry) holds within a
//! shard unchanged, and a merge is a concatenation.
//!
//! The limits stay global, and exact: the shards share one count of
//! processes and one of programs ([`Shared`]), and a shard takes a place in
//! them before it adds a process or a program. A shard at a limit first drops
//! its own dead processes; if that is not enough, its report waits (the
//! shard's lock released) while [`Shards`] takes every shard's lock, in
//! order, and makes room across all of them by the store's rules: dead
//! processes first, then the newest once-seen processes of the source
//! holding the most of them, or at the program limit the newest once-seen
//! programs of the source that made the most, so that fair admission by
//! source is what one store would do. With one shard (one receive thread)
//! there is nothing shared and the store runs exactly as it always has.

use super::{
    ApplyError, Asked, CONFIRMED, Counts, Limits, ProcessId, ProgramHistory, ProgramId, Report,
    Snapshot, SqlaStore, StoreStats, processes::ProcessList, processes::ProcessOrder, saved::Saved,
};
use crate::store::{Freshness, Now, SCAN_EVERY, Victims, lock, most_common};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the shards of one store count together.
#[derive(Debug, Default)]
pub struct Shared {
    /// Processes held, every shard together.
    pub(super) processes: AtomicUsize,
    /// Host/programs held, every shard together.
    pub(super) programs: AtomicUsize,
    /// Programs made so far, every shard together: each one's `created`.
    pub(super) programs_made: AtomicU64,
}

/// A shard on a cache line of its own, so that two threads locking two
/// shards do not contend for one line.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<SqlaStore>);

/// Cross-shard room making: what a single store keeps for it.
#[derive(Debug, Default)]
struct Room {
    victims: Victims<(usize, ProcessId)>,
    last_program_scan: Option<Instant>,
}

/// The SQLAlchemy store in `len()` shards.
#[derive(Debug)]
pub struct Shards {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
    limits: Limits,
    /// The counts every shard shares (none with one shard).
    shared: Option<Arc<Shared>>,
    room: Mutex<Room>,
}

impl Default for Shards {
    fn default() -> Self {
        Shards::one(SqlaStore::default())
    }
}

impl Shards {
    /// One shard: the store as it is, nothing shared.
    pub fn one(store: SqlaStore) -> Self {
        let limits = store.limits;
        Shards {
            shards: vec![Shard(Mutex::new(store))].into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
            limits,
            shared: None,
            room: Mutex::default(),
        }
    }

    /// `n` empty shards (`baseline`: see [`SqlaStore::baseline_at_start`]).
    pub fn new(n: usize, freshness: Freshness, limits: Limits, baseline: bool) -> Self {
        let make = || {
            let mut s = SqlaStore::new(freshness, limits);
            if baseline {
                s.baseline_at_start();
            }
            s
        };
        if n <= 1 {
            return Shards::one(make());
        }
        let shared = Arc::new(Shared::default());
        let epoch = Instant::now();
        let stores = (0..n)
            .map(|_| {
                let mut s = make();
                s.share(shared.clone(), Some(epoch));
                s
            })
            .collect();
        Shards::of(stores, limits, shared)
    }

    /// `n` shards holding what `saved` holds, up to the limits (every shard
    /// together).
    pub fn restore(n: usize, saved: Saved, freshness: Freshness, limits: Limits, now: Now) -> Self {
        let shards = Shards::new(n, freshness, limits, false);
        shards.restore_into(saved, freshness, now);
        shards
    }

    /// Replaces what every shard holds with what `saved` holds, up to the
    /// limits (every shard together): each host/program into the shard it
    /// lives in. Meant for shards that hold nothing yet (a start).
    pub fn restore_into(&self, saved: Saved, freshness: Freshness, now: Now) {
        let (n, limits) = (self.shards.len(), self.limits);
        let Some(shared) = &self.shared else {
            *self.lock(0) = SqlaStore::restore(saved, freshness, limits, now);
            return;
        };
        let mut parts: Vec<Saved> = (0..n)
            .map(|_| Saved {
                format: saved.format,
                saved_unix: saved.saved_unix,
                programs: Vec::new(),
            })
            .collect();
        for p in saved.programs {
            let i = shard_of(&self.hasher, n, &p.host, &p.program);
            parts[i].programs.push(p);
        }
        let (mut processes, mut programs) = (0, 0);
        for (i, part) in parts.into_iter().enumerate() {
            let left = Limits {
                max_processes: limits.max_processes.saturating_sub(processes),
                max_programs: limits.max_programs.saturating_sub(programs),
            };
            let mut s = SqlaStore::restore(part, freshness, left, now);
            s.limits = limits;
            processes += s.processes.len();
            programs += s.program_count;
            let mut old = self.lock(i);
            // What the replaced store held leaves the shared counts.
            old.processes = Default::default();
            old.program_count = 0;
            old.publish();
            s.share(shared.clone(), None);
            *old = s;
        }
    }

    /// Makes every shard take the start-up baseline (see
    /// [`SqlaStore::baseline_at_start`]).
    pub fn baseline_at_start(&self) {
        for i in 0..self.shards.len() {
            self.lock(i).baseline_at_start();
        }
    }

    fn of(stores: Vec<SqlaStore>, limits: Limits, shared: Arc<Shared>) -> Self {
        Shards {
            shards: stores.into_iter().map(|s| Shard(Mutex::new(s))).collect(),
            hasher: foldhash::fast::RandomState::default(),
            limits,
            shared: Some(shared),
            room: Mutex::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The shard a host/program lives in.
    pub fn shard_of(&self, host: &str, program: &str) -> usize {
        shard_of(&self.hasher, self.shards.len(), host, program)
    }

    /// Locks shard `i` (of `len()`).
    pub fn lock(&self, i: usize) -> MutexGuard<'_, SqlaStore> {
        lock(&self.shards[i.min(self.shards.len() - 1)].0)
    }

    /// Applies reports `0..n` (`report(i)` makes the i-th), each shard's
    /// under one lock; pushes each refusal onto `rejected`.
    pub fn apply<'r>(
        &self,
        n: usize,
        report: impl Fn(usize) -> Report<'r>,
        now: Now,
        rejected: &mut Vec<ApplyError>,
    ) {
        if n == 0 {
            return;
        }
        if self.shards.len() == 1 {
            let mut store = self.lock(0);
            for i in 0..n {
                if let Err(e) = store.apply_report(&report(i), now) {
                    rejected.push(e);
                }
            }
            return;
        }
        let of: Vec<u8> = (0..n)
            .map(|i| {
                let r = report(i);
                self.shard_of(r.host, r.program) as u8
            })
            .collect();
        // Known processes first, each shard under one lock: the steady
        // state, where the shards' receive threads do not wait on each other.
        let mut new = Vec::new();
        // Far from both limits, no admission can fail, so the order new
        // processes are added in does not matter.
        let margin = n.saturating_mul(self.shards.len());
        let room = self.shared.as_ref().is_some_and(|c| {
            use std::sync::atomic::Ordering::Relaxed;
            c.processes.load(Relaxed).saturating_add(margin) < self.limits.max_processes
                && c.programs.load(Relaxed).saturating_add(margin) < self.limits.max_programs
        });
        let known_only = Asked {
            known_only: !room,
            ..Asked::default()
        };
        // A shard another thread holds is left for later rather than waited
        // on; the last one left is waited on.
        let mut left: Vec<usize> = (0..self.shards.len())
            .filter(|s| of.contains(&(*s as u8)))
            .collect();
        while !left.is_empty() {
            let (pos, mut store) = match left
                .iter()
                .enumerate()
                .find_map(|(k, s)| try_lock(&self.shards[*s].0).map(|g| (k, g)))
            {
                Some(found) => found,
                None => (0, self.lock(left[0])),
            };
            let s = left.swap_remove(pos);
            for (i, _) in of.iter().enumerate().filter(|(_, o)| usize::from(**o) == s) {
                match store.apply_asked(&report(i), now, known_only) {
                    Ok(()) => {}
                    Err(ApplyError::NeedsRoom(_)) => new.push(i),
                    Err(e) => rejected.push(e),
                }
            }
        }
        // New processes in the batch's order, as one store admits them (at a
        // limit, which one is in first matters).
        new.sort_unstable();
        let mut held: Option<(usize, MutexGuard<'_, SqlaStore>)> = None;
        for i in new {
            let s = usize::from(of[i]);
            let store = match &mut held {
                Some((at, store)) if *at == s => store,
                _ => {
                    held = None;
                    &mut held.insert((s, self.lock(s))).1
                }
            };
            let mut result = store.apply_asked(&report(i), now, Asked::default());
            if matches!(result, Err(ApplyError::NeedsRoom(_))) {
                held = None;
                result = self.apply_making_room(s, &report(i), now);
            }
            if let Err(e) = result {
                rejected.push(e);
            }
        }
    }

    /// Applies a report of a new process to shard `s` with every shard
    /// locked, making room across them for what it needs, as one store
    /// would (see the module's header). The locks are held from making room
    /// to taking it, so that no other receive thread takes the room made.
    fn apply_making_room(&self, s: usize, report: &Report<'_>, now: Now) -> Result<(), ApplyError> {
        let mut all: Vec<MutexGuard<'_, SqlaStore>> =
            self.shards.iter().map(|s| lock(&s.0)).collect();
        let mut room = lock(&self.room);
        let mut asked = Asked::default();
        loop {
            let Some(store) = all.get_mut(s) else {
                return Err(ApplyError::OverLimit("process"));
            };
            match store.apply_asked(report, now, asked) {
                // Asked once for each kind: the second time it is refused.
                Err(ApplyError::NeedsRoom(kind)) if kind == "program" && !asked.programs => {
                    asked.programs = true;
                    make_program_room(&mut all, &mut room, self.limits, now.at);
                }
                Err(ApplyError::NeedsRoom(kind)) if kind == "process" && !asked.processes => {
                    asked.processes = true;
                    make_process_room(&mut all, &mut room, self.limits, now.at);
                }
                Err(ApplyError::NeedsRoom(kind)) => return Err(ApplyError::OverLimit(kind)),
                result => return result,
            }
        }
    }

    /// Every host/program not yet forgotten (see
    /// [`SqlaStore::snapshot_unsorted`]): each shard locked for its own copy.
    pub fn snapshot_unsorted(&self, now: Instant) -> Snapshot {
        let mut all = Snapshot::default();
        for s in self.shards.iter() {
            let part = lock(&s.0).snapshot_unsorted(now);
            if all.programs.is_empty() {
                all.programs = part.programs;
            } else {
                all.programs.extend(part.programs);
            }
            all.tracked_processes += part.tracked_processes;
            add_stats(&mut all.stats, &part.stats);
        }
        all
    }

    /// The merged snapshot, sorted.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut s = self.snapshot_unsorted(now);
        s.sort();
        s
    }

    /// One page of a host/program's processes, from its shard.
    pub fn processes(
        &self,
        host: &str,
        program: &str,
        now: Instant,
        order: ProcessOrder,
        offset: usize,
        limit: usize,
    ) -> Option<ProcessList> {
        self.lock(self.shard_of(host, program))
            .processes(host, program, now, order, offset, limit)
    }

    /// Every host/program's history, each shard locked for its own copy.
    pub fn histories_unsorted(&self, now: Instant) -> Vec<ProgramHistory> {
        let mut all = Vec::new();
        for s in self.shards.iter() {
            all.extend(lock(&s.0).histories_unsorted(now));
        }
        all
    }

    /// The counts, summed over the shards.
    pub fn counts(&self, now: Instant) -> Counts {
        let mut all = Counts::default();
        for s in self.shards.iter() {
            let c = lock(&s.0).counts(now);
            all.live_processes += c.live_processes;
            all.tracked_processes += c.tracked_processes;
            all.programs += c.programs;
        }
        all
    }

    /// Sweeps each shard in turn.
    pub fn sweep(&self, now: Instant) {
        for s in self.shards.iter() {
            lock(&s.0).sweep(now);
        }
    }

    /// The state to keep across a restart: every shard's, in one document.
    pub fn save(&self, now: Now) -> Saved {
        let mut all: Option<Saved> = None;
        for s in self.shards.iter() {
            let part = lock(&s.0).save(now);
            match &mut all {
                Some(all) => all.programs.extend(part.programs),
                None => all = Some(part),
            }
        }
        all.unwrap_or_else(|| SqlaStore::default().save(now))
    }
}

/// Locks `m` if no one holds it (a poisoned lock is taken over, as
/// [`lock`] does).
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

fn shard_of(hasher: &foldhash::fast::RandomState, n: usize, host: &str, program: &str) -> usize {
    if n <= 1 {
        return 0;
    }
    (hasher.hash_one((host, program)) % n as u64) as usize
}

fn add_stats(sum: &mut StoreStats, s: &StoreStats) {
    sum.processes_expired += s.processes_expired;
    sum.processes_forgotten += s.processes_forgotten;
    sum.programs_forgotten += s.programs_forgotten;
    sum.processes_evicted += s.processes_evicted;
    sum.processes_baselined += s.processes_baselined;
    sum.programs_evicted += s.programs_evicted;
}

/// [`SqlaStore::victims`] over every shard: the once-seen processes of the
/// source holding the most of them, of its busiest host, newest last.
fn victims(all: &[MutexGuard<'_, SqlaStore>]) -> Vec<(usize, ProcessId)> {
    let once = || {
        all.iter().enumerate().flat_map(|(i, s)| {
            s.processes
                .iter()
                .filter(|(_, p)| !p.has(CONFIRMED))
                .map(move |(id, p)| (i, &**s, id, p))
        })
    };
    // Hosts compare by name: each shard has its own copy of a host's name.
    fn host<'s>(s: &'s SqlaStore, id: &ProcessId) -> &'s str {
        match s.programs.get(id.program as usize) {
            Some(Some(p)) => &p.host,
            _ => "",
        }
    }
    let Some(source) = most_common(once().map(|(_, _, _, p)| p.source)) else {
        return Vec::new();
    };
    let of_source = || once().filter(|(_, _, _, p)| p.source == source);
    let Some(busiest) = most_common(of_source().map(|(_, s, id, _)| host(s, id))) else {
        return Vec::new();
    };
    let mut once: Vec<(Instant, (usize, ProcessId))> = of_source()
        .filter(|(_, s, id, _)| host(s, id) == busiest)
        .map(|(i, s, id, p)| (s.epoch + Duration::from_nanos(p.live_until.0), (i, *id)))
        .collect();
    // Ascending, so that the end holds the newest.
    once.sort_unstable_by_key(|(until, _)| *until);
    once.into_iter().map(|(_, id)| id).collect()
}

/// [`SqlaStore::make_room`] over every shard: dead processes first, then
/// the newest once-seen process of the source holding the most of them.
fn make_process_room(
    all: &mut [MutexGuard<'_, SqlaStore>],
    room: &mut Room,
    limits: Limits,
    now: Instant,
) {
    for s in all.iter_mut() {
        s.evict_dead_processes(now);
    }
    let held: usize = all.iter().map(|s| s.processes.len()).sum();
    if held < limits.max_processes {
        return;
    }
    let victim = room.victims.next(
        now,
        held,
        |(i, id)| {
            all.get(*i)
                .and_then(|s| s.processes.get(id))
                .is_some_and(|p| !p.has(CONFIRMED))
        },
        || victims(all),
    );
    if let Some((i, id)) = victim
        && let Some(s) = all.get_mut(i)
    {
        s.evict_process(id, now);
    }
}

/// [`SqlaStore::make_program_room`] over every shard.
fn make_program_room(
    all: &mut [MutexGuard<'_, SqlaStore>],
    room: &mut Room,
    limits: Limits,
    now: Instant,
) {
    if room
        .last_program_scan
        .is_some_and(|t| now.duration_since(t) < SCAN_EVERY)
    {
        return;
    }
    room.last_program_scan = Some(now);
    let kept: Vec<Vec<bool>> = all.iter().map(|s| s.programs_kept()).collect();
    let evictable = || {
        all.iter()
            .zip(&kept)
            .enumerate()
            .flat_map(|(i, (s, kept))| {
                s.programs.iter().zip(kept).enumerate().filter_map(
                    move |(id, (slot, k))| match slot {
                        Some(p) if !*k => Some((i, id as ProgramId, p)),
                        _ => None,
                    },
                )
            })
    };
    let Some(largest) = most_common(evictable().map(|(_, _, p)| p.source)) else {
        return;
    };
    let Some(busiest) = most_common(
        evictable()
            .filter(|(_, _, p)| p.source == largest)
            .map(|(_, _, p)| &*p.host),
    ) else {
        return;
    };
    let busiest = busiest.to_owned();
    let mut once: Vec<(u64, usize, ProgramId)> = evictable()
        .filter(|(_, _, p)| p.source == largest && *p.host == *busiest)
        .map(|(i, id, p)| (p.created, i, id))
        .collect();
    once.sort_unstable_by_key(|(created, _, _)| std::cmp::Reverse(*created));
    once.truncate((limits.max_programs / 8).max(1));
    for (i, s) in all.iter_mut().enumerate() {
        let ids: Vec<ProgramId> = once
            .iter()
            .filter(|(_, shard, _)| *shard == i)
            .map(|(_, _, id)| *id)
            .collect();
        if !ids.is_empty() {
            s.evict_programs(&ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::CdTime;
    use crate::route::{Cumulative, Pool, ProcessKey, Sample, SqlaRecord};
    use crate::store::sqlalchemy::Source;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    /// A report of `host`/`program`'s process `token` from `source`.
    #[derive(Clone, Debug)]
    struct Op {
        host: u8,
        program: u8,
        token: u8,
        source: u32,
        /// Client TIME, seconds.
        time: u64,
        /// Pool gauges (checked out, connections), or else totals.
        pool: Option<(u8, u8)>,
        totals: [u64; 4],
    }

    impl Op {
        fn record(&self) -> SqlaRecord {
            SqlaRecord {
                key: ProcessKey {
                    host: format!("host{}", self.host).as_str().into(),
                    program: format!("program{}", self.program).as_str().into(),
                    token: format!("{}:abcdef", 100 + u32::from(self.token))
                        .as_str()
                        .into(),
                },
                time: CdTime::from_secs(self.time),
                interval: CdTime::from_secs(2),
                sample: match self.pool {
                    Some((out, extra)) => Sample::Pool(Pool {
                        numpools: 1.0,
                        checkedout: f64::from(out),
                        checkedin: f64::from(extra),
                        detached: 0.0,
                        connections: f64::from(out) + f64::from(extra),
                    }),
                    None => Sample::Cumulative(Cumulative::Totals(self.totals)),
                },
            }
        }
    }

    /// Applies `ops` as one batch, as a receive thread does.
    fn apply(shards: &Shards, ops: &[Op], now: Now) -> Vec<ApplyError> {
        let records: Vec<SqlaRecord> = ops.iter().map(Op::record).collect();
        let mut rejected = Vec::new();
        shards.apply(
            records.len(),
            |i| Report {
                source: Source(ops[i].source),
                ..records[i].report()
            },
            now,
            &mut rejected,
        );
        rejected
    }

    /// The same batch applied to one store, report by report.
    fn apply_one(store: &mut SqlaStore, ops: &[Op], now: Now) -> Vec<ApplyError> {
        ops.iter()
            .filter_map(|op| {
                let r = op.record();
                store
                    .apply_report(
                        &Report {
                            source: Source(op.source),
                            ..r.report()
                        },
                        now,
                    )
                    .err()
            })
            .collect()
    }

    /// `n` shards and one store with the same epoch (peak buckets and
    /// history steps start together).
    fn pair(n: usize, limits: Limits) -> (Shards, SqlaStore) {
        let shards = Shards::new(n, Freshness::default(), limits, false);
        let mut one = SqlaStore::new(Freshness::default(), limits);
        one.epoch = shards.lock(0).epoch;
        (shards, one)
    }

    /// What every shard holds, counted, against the shared counts.
    fn assert_counts_shared(shards: &Shards) {
        use std::sync::atomic::Ordering::Relaxed;
        let (mut processes, mut programs) = (0, 0);
        for i in 0..shards.len() {
            let s = shards.lock(i);
            processes += s.processes.len();
            programs += s.program_count;
        }
        if let Some(shared) = &shards.shared {
            assert_eq!(shared.processes.load(Relaxed), processes);
            assert_eq!(shared.programs.load(Relaxed), programs);
        }
        assert!(processes <= shards.limits.max_processes);
        assert!(programs <= shards.limits.max_programs);
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            0u8..6,
            0u8..4,
            0u8..5,
            1u32..4,
            0u64..4,
            proptest::option::of((0u8..20, 0u8..20)),
            proptest::array::uniform4(0u64..1000),
        )
            .prop_map(|(host, program, token, source, time, pool, totals)| Op {
                host,
                program,
                token,
                source,
                time: 1_000 + time,
                pool,
                totals,
            })
    }

    /// Batches of reports, each with the seconds that pass before it.
    fn batches() -> impl Strategy<Value = Vec<(u64, Vec<Op>)>> {
        proptest::collection::vec((0u64..20, proptest::collection::vec(op(), 1..40)), 1..12)
    }

    /// Each batch's TIMEs move on with the clock, so that most reports are
    /// news and some repeat a TIME (refused as out of order).
    fn timed(batches: &[(u64, Vec<Op>)]) -> Vec<(u64, Vec<Op>)> {
        let mut elapsed = 0;
        batches
            .iter()
            .map(|(dt, ops)| {
                elapsed += dt;
                let ops = ops
                    .iter()
                    .map(|o| Op {
                        time: o.time + elapsed,
                        ..o.clone()
                    })
                    .collect();
                (elapsed, ops)
            })
            .collect()
    }

    proptest! {
        /// Far from the limits, shards export exactly what one store
        /// exports for the same reports: sums, totals, peaks, expiry,
        /// refusals.
        #[test]
        fn shards_export_what_one_store_exports(n in 2usize..5, batches in batches()) {
            let (shards, mut one) = pair(n, Limits::default());
            let t0 = Now::wall();
            for (elapsed, ops) in timed(&batches) {
                let now = t0.after(Duration::from_secs(elapsed));
                let mut got = apply(&shards, &ops, now);
                let mut want = apply_one(&mut one, &ops, now);
                got.sort_by_key(|e| e.to_string());
                want.sort_by_key(|e| e.to_string());
                prop_assert_eq!(got, want);
                shards.sweep(now.at);
                one.sweep(now.at);
                prop_assert_eq!(shards.snapshot(now.at), one.snapshot(now.at));
                prop_assert_eq!(shards.counts(now.at), one.counts(now.at));
            }
            assert_counts_shared(&shards);
        }

        /// At small limits, the shards together never hold more than the
        /// limits, their shared counts are what they hold, a refusal is
        /// one a single store makes (room is never asked of the caller).
        /// Which report is refused may differ from one store's choice: the
        /// shards apply a batch's reports of known processes before its new
        /// ones.
        #[test]
        fn shards_keep_the_limits_together(
            n in 2usize..5,
            max_processes in 1usize..8,
            max_programs in 1usize..5,
            batches in batches(),
        ) {
            let limits = Limits { max_processes, max_programs };
            let (shards, _) = pair(n, limits);
            let t0 = Now::wall();
            for (elapsed, ops) in timed(&batches) {
                let now = t0.after(Duration::from_secs(elapsed));
                for e in apply(&shards, &ops, now) {
                    prop_assert!(!matches!(e, ApplyError::NeedsRoom(_)), "{:?}", e);
                }
                shards.sweep(now.at);
                assert_counts_shared(&shards);
                prop_assert_eq!(
                    shards.snapshot(now.at).tracked_processes as u64,
                    shards.counts(now.at).tracked_processes
                );
            }
        }
    }

    fn from(
        shards: &Shards,
        source: u32,
        host: u8,
        token: u8,
        time: u64,
        now: Now,
    ) -> Vec<ApplyError> {
        let op = Op {
            host,
            program: 0,
            token,
            source,
            time,
            pool: Some((1, 0)),
            totals: [0; 4],
        };
        apply(shards, &[op], now)
    }

    #[test]
    fn a_flood_of_new_tokens_makes_room_out_of_its_own_entries_in_any_shard() {
        let limits = Limits {
            max_processes: 10,
            max_programs: 10,
        };
        let (shards, _) = pair(3, limits);
        let t0 = Now::wall();
        // Host 0's process reported twice; source 2 floods new processes of
        // hosts 1 to 5 (in every shard) far past the limit.
        assert!(from(&shards, 1, 0, 0, 100, t0).is_empty());
        assert!(from(&shards, 1, 0, 0, 102, t0.after(S)).is_empty());
        for n in 0..200u32 {
            let rejected = from(
                &shards,
                2,
                1 + (n % 5) as u8,
                (n / 5) as u8,
                100,
                t0.after(S),
            );
            assert!(rejected.is_empty(), "{rejected:?}");
        }
        // Source 1's new processes get in beside it.
        for token in 1..4 {
            assert!(from(&shards, 1, 0, token, 100, t0.after(S)).is_empty());
        }
        let snap = shards.snapshot(t0.at + S);
        assert_eq!(snap.tracked_processes, 10);
        let host0 = snap.programs.iter().find(|p| &*p.host == "host0");
        assert_eq!(host0.map(|p| p.processes), Some(4), "{snap:?}");
        // The first 9 of the flood fit; every later new process evicts one
        // of the flood's.
        assert_eq!(snap.stats.processes_evicted, (200 - 9) + 3);
        assert_counts_shared(&shards);
        // Once every process reported twice, nothing makes room.
        let (shards, _) = pair(
            2,
            Limits {
                max_processes: 2,
                max_programs: 10,
            },
        );
        for host in 0..2 {
            assert!(from(&shards, 1, host, 0, 100, t0).is_empty());
            assert!(from(&shards, 1, host, 0, 102, t0).is_empty());
        }
        assert_eq!(
            from(&shards, 2, 3, 0, 100, t0),
            vec![ApplyError::OverLimit("process")]
        );
    }

    #[test]
    fn a_flood_of_new_programs_makes_room_out_of_its_own_in_any_shard() {
        let limits = Limits {
            max_processes: 1000,
            max_programs: 16,
        };
        let (shards, _) = pair(2, limits);
        let t0 = Now::wall();
        // Programs of one host, which the shards split between them.
        let program = |source, program, time| Op {
            host: 0,
            program,
            token: 0,
            source,
            time,
            pool: Some((1, 0)),
            totals: [0; 4],
        };
        assert!(apply(&shards, &[program(1, 200, 100)], t0).is_empty());
        assert!(apply(&shards, &[program(1, 200, 102)], t0).is_empty());
        let flood: Vec<Op> = (0..15).map(|h| program(2, h, 100)).collect();
        assert!(apply(&shards, &flood, t0).is_empty());
        // A new program of source 1 gets in: the newest eighth of the limit
        // (2) of source 2's programs go at once, whichever shard holds them.
        assert!(apply(&shards, &[program(1, 201, 100)], t0).is_empty());
        let snap = shards.snapshot(t0.at);
        assert_eq!(snap.programs.len(), 15);
        assert_eq!(snap.stats.programs_evicted, 2);
        let names: Vec<&str> = snap.programs.iter().map(|p| &*p.program).collect();
        for gone in ["program13", "program14"] {
            assert!(!names.contains(&gone), "{names:?}");
        }
        for kept in ["program200", "program201", "program12"] {
            assert!(names.contains(&kept), "{names:?}");
        }
        assert_counts_shared(&shards);
    }

    #[test]
    fn saved_shards_restore_into_any_number_of_shards() {
        let (shards, _) = pair(3, Limits::default());
        let t0 = Now::wall();
        let ops: Vec<Op> = (0..30u8)
            .map(|i| Op {
                host: i % 7,
                program: i % 3,
                token: i,
                source: 1,
                time: 100,
                pool: None,
                totals: [u64::from(i), 2 * u64::from(i), 1, 0],
            })
            .collect();
        assert!(apply(&shards, &ops, t0).is_empty());
        let want = shards.snapshot(t0.at);
        assert_eq!(want.programs.len(), 21);
        for n in [1, 2, 5] {
            let restored = Shards::restore(
                n,
                shards.save(t0),
                Freshness::default(),
                Limits::default(),
                t0,
            );
            let got = restored.snapshot(t0.at);
            // The counters come back; the restored processes are not live
            // until they report again.
            let totals = |s: &Snapshot| {
                s.programs
                    .iter()
                    .map(|p| (p.host.clone(), p.program.clone(), p.totals))
                    .collect::<Vec<_>>()
            };
            assert_eq!(totals(&got), totals(&want), "{n} shards");
            assert_counts_shared(&restored);
            // Each restored process counts on from its saved totals.
            let later: Vec<Op> = ops
                .iter()
                .map(|o| Op {
                    time: 102,
                    totals: [o.totals[0] + 1, o.totals[1], 1, 0],
                    ..o.clone()
                })
                .collect();
            assert!(apply(&restored, &later, t0.after(2 * S)).is_empty());
            let sum: u64 = restored
                .snapshot(t0.at + 2 * S)
                .programs
                .iter()
                .map(|p| p.totals[0])
                .sum();
            let before: u64 = want.programs.iter().map(|p| p.totals[0]).sum();
            assert_eq!(sum, before + 30, "{n} shards");
        }
    }

    #[test]
    fn a_restore_over_the_limit_keeps_it_across_shards() {
        let (shards, _) = pair(2, Limits::default());
        let t0 = Now::wall();
        let ops: Vec<Op> = (0..12u8)
            .map(|i| Op {
                host: i,
                program: 0,
                token: 0,
                source: 1,
                time: 100,
                pool: Some((1, 1)),
                totals: [0; 4],
            })
            .collect();
        assert!(apply(&shards, &ops, t0).is_empty());
        let limits = Limits {
            max_processes: 5,
            max_programs: 100,
        };
        let restored = Shards::restore(3, shards.save(t0), Freshness::default(), limits, t0);
        assert_eq!(restored.snapshot(t0.at).tracked_processes, 5);
        assert_counts_shared(&restored);
    }
}
