//! The generic store: every value list that is not SQLAlchemy's, kept by
//! identity as the sender sent it (cheap at ingest), with collectd's own
//! order rule (a value not newer than the last is refused) and expiry after
//! the sender's intervals. At `max_series`, dead value lists make room
//! first; then one seen only once, the newest of the source holding the most
//! of those, so that one sender flooding new series cannot keep another's
//! out.
//!
//! Takes value lists and their receive time; hands on a [`Live`] copy of
//! what is live at a moment, which `crate::exposition::generic` names and
//! labels the way collectd_exporter does, after the lock is released.

use crate::collectd::{CdTime, Value, ValueList};
use crate::store::sqlalchemy::{ApplyError, Source};
use crate::store::{Freshness, Now, SCAN_EVERY, Victims, most_common};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug)]
struct Entry {
    values: Vec<Value>,
    time: CdTime,
    live_until: Instant,
    received_unix: f64,
    /// Creation order, so "first seen" is well defined.
    seq: u64,
    source: Source,
    /// A second value was accepted: never evicted to admit a new series.
    confirmed: bool,
}

#[derive(Debug, Default)]
pub struct GenericStore {
    freshness: Freshness,
    max_series: usize,
    /// Key: host, plugin, plugin instance, type, type instance joined by NUL
    /// (collectd strings end at their first NUL, so none contains one).
    entries: HashMap<Box<str>, Entry>,
    next_seq: u64,
    scratch: String,
    expired: u64,
    evicted: u64,
    last_dead_scan: Option<Instant>,
    /// Evictable keys of the source (and host) holding the most.
    victims: Victims<Box<str>>,
}

impl GenericStore {
    pub fn new(freshness: Freshness, max_series: usize) -> Self {
        GenericStore {
            freshness,
            max_series,
            ..GenericStore::default()
        }
    }

    pub fn apply(&mut self, vl: &ValueList, now: Now) -> Result<(), ApplyError> {
        self.apply_from(vl, Source::default(), now)
    }

    /// [`GenericStore::apply`] for a value list sent by `source`.
    pub fn apply_from(
        &mut self,
        vl: &ValueList,
        source: Source,
        now: Now,
    ) -> Result<(), ApplyError> {
        let id = &vl.id;
        self.scratch.clear();
        for (i, s) in [
            &id.host,
            &id.plugin,
            &id.plugin_instance,
            &id.type_,
            &id.type_instance,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                self.scratch.push('\0');
            }
            self.scratch.push_str(s.as_str());
        }
        let live_until = now.at + self.freshness.window(vl.interval);
        if let Some(e) = self.entries.get_mut(self.scratch.as_str()) {
            // collectd's own rule: a value not newer than the last is too old.
            if e.live_until > now.at && !vl.time.is_zero() && vl.time <= e.time {
                return Err(ApplyError::OutOfOrder);
            }
            e.values.clear();
            e.values.extend(vl.values.iter());
            e.time = vl.time;
            e.live_until = live_until;
            e.received_unix = now.unix;
            e.confirmed = true;
            return Ok(());
        }
        if self.entries.len() >= self.max_series {
            if self
                .last_dead_scan
                .is_none_or(|t| now.at.duration_since(t) >= SCAN_EVERY)
            {
                self.last_dead_scan = Some(now.at);
                self.drop_dead(now.at);
            }
            if self.entries.len() >= self.max_series && !self.make_room(now.at) {
                return Err(ApplyError::OverLimit("series"));
            }
        }
        self.next_seq += 1;
        self.entries.insert(
            self.scratch.as_str().into(),
            Entry {
                values: vl.values.iter().collect(),
                time: vl.time,
                live_until,
                received_unix: now.unix,
                seq: self.next_seq,
                source,
                confirmed: false,
            },
        );
        Ok(())
    }

    /// Drops the newest value list seen only once of the source holding the
    /// most of them; false if there is none.
    fn make_room(&mut self, now: Instant) -> bool {
        let entries = &self.entries;
        let victim = self.victims.next(
            now,
            entries.len(),
            |k| entries.get(k).is_some_and(|e| !e.confirmed),
            || victims(entries),
        );
        let Some(key) = victim else {
            return false;
        };
        self.entries.remove(&key);
        self.evicted += 1;
        true
    }

    /// Dead value lists are not kept: they carry no counter state of ours.
    pub fn sweep(&mut self, now: Instant) {
        self.drop_dead(now);
    }

    fn drop_dead(&mut self, now: Instant) {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.live_until > now);
        self.expired += (before - self.entries.len()) as u64;
        // Memory follows the series down as well as up.
        const MIN: usize = 1024;
        if self.entries.capacity() > MIN.max(4 * self.entries.len()) {
            self.entries.shrink_to(MIN.max(2 * self.entries.len()));
        }
    }

    /// Copies what is live at `now`; cheap, so it runs under the lock.
    /// `crate::exposition::generic::resolve` builds names and labels after
    /// the lock is released.
    pub fn live(&self, now: Instant) -> Live {
        let mut entries: Vec<LiveEntry> = self
            .entries
            .iter()
            .filter(|(_, e)| e.live_until > now)
            .map(|(k, e)| LiveEntry {
                key: k.clone(),
                values: e.values.clone(),
                received_unix: e.received_unix,
                seq: e.seq,
            })
            .collect();
        entries.sort_by_key(|e| e.seq);
        Live {
            entries,
            value_lists: self.entries.len(),
            expired: self.expired,
            evicted: self.evicted,
        }
    }
}

/// The value lists seen once of the source holding the most of them, and
/// within it of the host (the key's first part) holding the most, the
/// newest last.
fn victims(entries: &HashMap<Box<str>, Entry>) -> Vec<Box<str>> {
    fn host(k: &str) -> &str {
        k.split('\0').next().unwrap_or_default()
    }
    let once = || entries.iter().filter(|(_, e)| !e.confirmed);
    let Some(source) = most_common(once().map(|(_, e)| e.source)) else {
        return Vec::new();
    };
    let of_source = || once().filter(|(_, e)| e.source == source);
    let Some(busiest) = most_common(of_source().map(|(k, _)| host(k))) else {
        return Vec::new();
    };
    let mut once: Vec<(u64, Box<str>)> = of_source()
        .filter(|(k, _)| host(k) == busiest)
        .map(|(k, e)| (e.seq, k.clone()))
        .collect();
    once.sort_unstable_by_key(|(seq, _)| *seq);
    once.into_iter().map(|(_, k)| k).collect()
}

/// One live value list, copied out of the store.
#[derive(Clone, Debug)]
pub struct LiveEntry {
    key: Box<str>,
    values: Vec<Value>,
    received_unix: f64,
    seq: u64,
}

/// The live value lists at one moment, in creation order.
#[derive(Clone, Debug, Default)]
pub struct Live {
    entries: Vec<LiveEntry>,
    value_lists: usize,
    expired: u64,
    evicted: u64,
}

impl LiveEntry {
    /// host, plugin, plugin instance, type, type instance.
    pub fn identity(&self) -> (&str, &str, &str, &str, &str) {
        let mut parts = self.key.split('\0');
        let mut next = || parts.next().unwrap_or_default();
        (next(), next(), next(), next(), next())
    }

    /// The five identity strings joined by NUL: unique per value list, and
    /// what ties between equal receive times are broken by.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// When the value list was received, Unix seconds.
    pub fn received_unix(&self) -> f64 {
        self.received_unix
    }
}

impl Live {
    /// The live value lists, in creation order.
    pub fn entries(&self) -> &[LiveEntry] {
        &self.entries
    }

    /// Value lists held (live ones; dead ones are dropped at once).
    pub fn value_lists(&self) -> usize {
        self.value_lists
    }

    /// Value lists dropped after missing their intervals, since start.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Value lists seen once, dropped at the limit to admit new ones.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::{Encoder, Identity, decode};
    use std::time::Duration;

    fn vl(host: &str, plugin: &str, pi: &str, t: &str, ti: &str, values: &[Value]) -> ValueList {
        let id = Identity {
            host: host.into(),
            plugin: plugin.into(),
            plugin_instance: pi.into(),
            type_: t.into(),
            type_instance: ti.into(),
        };
        let raw = Encoder::new()
            .collectd_value_list(&id, CdTime::from_secs(100), CdTime::from_secs(10), values)
            .finish();
        decode(&raw).unwrap().value_lists.remove(0)
    }

    #[test]
    fn value_lists_expire_after_their_own_intervals() {
        let mut s = GenericStore::new(Freshness::default(), 1000);
        let now = Now::wall();
        s.apply(
            &vl("vm", "memory", "", "memory", "used", &[Value::Gauge(1.0)]),
            now,
        )
        .unwrap();
        // Interval 10 s, three of them.
        assert_eq!(s.live(now.at + Duration::from_secs(29)).entries().len(), 1);
        assert!(
            s.live(now.at + Duration::from_secs(30))
                .entries()
                .is_empty()
        );
        s.sweep(now.at + Duration::from_secs(30));
        let live = s.live(now.at + Duration::from_secs(30));
        assert_eq!((live.value_lists(), live.expired()), (0, 1));
    }

    #[test]
    fn a_live_entry_gives_back_its_identity() {
        let mut s = GenericStore::new(Freshness::default(), 1000);
        let now = Now::wall();
        s.apply(
            &vl("vm", "cpu", "0", "cpu", "idle", &[Value::Derive(5)]),
            now,
        )
        .unwrap();
        let live = s.live(now.at);
        let e = &live.entries()[0];
        assert_eq!(e.identity(), ("vm", "cpu", "0", "cpu", "idle"));
        assert_eq!(e.values(), &[Value::Derive(5)]);
        assert_eq!(e.received_unix(), now.unix);
    }

    #[test]
    fn older_value_is_refused_and_the_limit_holds() {
        let mut s = GenericStore::new(Freshness::default(), 1);
        let now = Now::wall();
        let mut a = vl("vm", "memory", "", "memory", "used", &[Value::Gauge(1.0)]);
        s.apply(&a, now).unwrap();
        a.time = CdTime::from_secs(99);
        assert_eq!(s.apply(&a, now), Err(ApplyError::OutOfOrder));
        a.time = CdTime::from_secs(101);
        s.apply(&a, now).unwrap();
        // `a` was seen twice: it stays.
        let b = vl("vm", "memory", "", "memory", "free", &[Value::Gauge(1.0)]);
        assert_eq!(s.apply(&b, now), Err(ApplyError::OverLimit("series")));
    }

    #[test]
    fn a_flood_of_new_series_from_one_source_makes_room_out_of_its_own() {
        let mut s = GenericStore::new(Freshness::default(), 10);
        let now = Now::wall();
        let series = |ti: &str| vl("vm", "cpu", "0", "cpu", ti, &[Value::Derive(1)]);
        let mut ours = series("idle");
        s.apply_from(&ours, Source(1), now).unwrap();
        ours.time = CdTime::from_secs(101);
        s.apply_from(&ours, Source(1), now).unwrap();
        for n in 0..100 {
            s.apply_from(&series(&format!("flood{n}")), Source(2), now)
                .unwrap();
        }
        s.apply_from(&series("user"), Source(1), now).unwrap();
        for n in 100..200 {
            s.apply_from(&series(&format!("flood{n}")), Source(2), now)
                .unwrap();
        }
        let live = s.live(now.at);
        assert_eq!(live.value_lists(), 10);
        // 9 of the first flood fit; every later new series evicted one.
        assert_eq!(live.evicted(), (100 - 9) + 1 + 100);
        let keys: Vec<&str> = live.entries().iter().map(|e| e.identity().4).collect();
        assert!(keys.contains(&"idle") && keys.contains(&"user"), "{keys:?}");
    }
}
