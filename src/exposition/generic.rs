//! Generic collectd series: every value list that is not SQLAlchemy's, named the way `prometheus/collectd_exporter` names it,
//! so its users' dashboards keep working:
//!
//! * `collectd_<plugin>_<type>[_<dsname>]`, or `collectd_<type>` when plugin
//!   and type are equal; no suffix for a single data source named `value` (or
//!   a single value of an unknown type); data-source names from types.db, the
//!   value's index when the type is unknown; characters outside
//!   `[a-zA-Z0-9_:]` become `_`;
//! * COUNTER and DERIVE values are counters (`_total`), GAUGE and ABSOLUTE
//!   values gauges (ABSOLUTE is a count per interval, reset at every read, so
//!   it is a level, not a running total);
//! * labels: `<plugin>` = plugin instance and `type` = type instance, or
//!   `<plugin>` = type instance when there is no plugin instance; the host in
//!   the host label (`instance` unless `--collectd.host-label` says otherwise).
//!
//! Takes the [`Live`] copy of the generic store (names and labels are built
//! here, after the store's lock is released); hands on a [`GenericSnapshot`]
//! whose conflicts are resolved so the scrape never fails (see [`resolve`]).

use super::families::{Kind, Number};
use super::text::render_labels;
use crate::collectd::Value;
use crate::collectd::typesdb::TypesDb;
use crate::store::collectd::{Live, LiveEntry};
use std::collections::HashMap;
use std::fmt::Write;

/// One exported family of generic series.
#[derive(Clone, Debug, PartialEq)]
pub struct GenericFamily {
    /// Without `_total`; the encoders add it to counters.
    pub name: String,
    pub kind: Kind,
    /// Every label name used in the family, sorted; a series without one of
    /// them has it empty (which Prometheus treats as absent).
    pub label_names: Vec<String>,
    /// Sorted by label set; their labels are in [`GenericSnapshot`]
    /// ([`GenericSnapshot::values`], [`GenericSnapshot::rendered`]).
    pub samples: Vec<GenericSample>,
}

/// One sample of a [`GenericFamily`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenericSample {
    /// Its value list's label set in [`GenericSnapshot`]'s `sets`.
    set: Span,
    /// Its labels in the text format, in [`GenericSnapshot`]'s `rendered`.
    rendered: Span,
    pub number: Number,
}

/// Where a string is in one of [`GenericSnapshot`]'s buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of(buffer: &str, start: usize) -> Span {
        Span {
            start,
            end: buffer.len(),
        }
    }

    fn get(self, buffer: &str) -> &str {
        buffer.get(self.start..self.end).unwrap_or_default()
    }
}

/// Value lists left out of a scrape so that it stays valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conflicts {
    /// Samples whose name and labels equal another's: the one received last
    /// is exported (ties: the larger identity).
    pub duplicate_series: u64,
    /// Samples whose family already has the other type: the type of the
    /// series created first is kept. A counter `x` (exposed as `x_total`) and
    /// a gauge `x_total` count as one family here.
    pub type_mismatch: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenericSnapshot {
    pub families: Vec<GenericFamily>,
    pub conflicts: Conflicts,
    /// Value lists held (live ones; dead ones are dropped at once).
    pub value_lists: usize,
    pub expired: u64,
    pub evicted: u64,
    /// The label set of every value list, one after the other: its non-empty
    /// labels sorted (by name, then value), each written `name\0value\0`.
    /// Identity strings hold no NUL, so these bytes sort as the label lists
    /// do, and equal bytes are equal label sets.
    sets: String,
    /// Label sets in the text format (`text::render_labels`): each value
    /// list's own once, shared by its samples, and a sample's own where its
    /// family has label names its value list lacks.
    rendered: String,
}

impl GenericSnapshot {
    /// The label values of `sample` of `family`, in `label_names` order
    /// (empty where its value list has no such label).
    pub fn values<'a>(&'a self, family: &GenericFamily, sample: &GenericSample) -> Vec<&'a str> {
        let set = set_labels(sample.set.get(&self.sets));
        family
            .label_names
            .iter()
            .map(|n| value_of(set.clone(), n))
            .collect()
    }

    /// `sample`'s labels as the text format writes them between the braces:
    /// every label name of its family, values escaped.
    pub fn rendered(&self, sample: &GenericSample) -> &str {
        sample.rendered.get(&self.rendered)
    }
}

/// The (name, value) pairs of an encoded label set.
fn set_labels(set: &str) -> impl Iterator<Item = (&str, &str)> + Clone {
    let mut parts = set.split_terminator('\0');
    std::iter::from_fn(move || Some((parts.next()?, parts.next().unwrap_or_default())))
}

/// The value of label `name` in `labels`, or "".
fn value_of<'a>(mut labels: impl Iterator<Item = (&'a str, &'a str)>, name: &str) -> &'a str {
    labels.find(|(n, _)| *n == name).map_or("", |(_, v)| v)
}

/// Names, labels and values of every live value list.
///
/// The scrape cannot fail: samples that would share a name and label set
/// keep the one received last (ties: the larger identity); a family keeps
/// the type of its first series; label names are made consistent within a
/// family by leaving missing labels empty. What was left out is counted
/// in `conflicts`.
///
/// Built for a million value lists: each value list's labels are encoded
/// and rendered once, into two buffers, and shared by its samples; names
/// are built once per plugin/type; duplicates are found by sorting, not
/// hashing label sets.
pub fn resolve(live: &Live, types: &TypesDb, host_label: &str) -> GenericSnapshot {
    type Fixed = foldhash::fast::FixedState;
    /// A value list's label set: its span in `sets`, its rendering in
    /// `rendered`, how many labels it has and which label names (an index
    /// in `name_lists`).
    struct Own {
        set: Span,
        rendered: Span,
        labels: usize,
        names: usize,
    }
    /// A sample before duplicates are resolved; `set` is its value list's,
    /// `order` its place in creation order.
    #[derive(Clone, Copy)]
    struct Raw {
        set: Span,
        family: usize,
        entry: usize,
        order: usize,
        number: Number,
    }
    /// A plugin's label name, and the label names (an index in
    /// `name_lists`) of a value list of that plugin by which of its labels
    /// are there.
    struct Plugin {
        label: String,
        names: [Option<usize>; 8],
    }
    struct Building {
        name: String,
        kind: Kind,
    }
    let entries = live.entries();
    // Each label set is about its identity's length, the label names and
    // the quotes: sized once rather than copied as they double.
    let identities: usize = entries.iter().map(|e| e.key().len() + 24).sum();
    let mut sets = String::with_capacity(identities);
    let mut rendered = String::with_capacity(identities + identities / 4);
    let mut name_lists: Vec<Vec<String>> = Vec::new();
    let mut own: Vec<Own> = Vec::with_capacity(entries.len());
    let mut raws: Vec<Raw> = Vec::with_capacity(entries.len());
    // A plugin's label name, and the family (or the clash that keeps it
    // out) of each value of a plugin/type/value count: the same for every
    // value list that has them, so worked out at the first.
    let mut plugins: HashMap<&str, Plugin, Fixed> = HashMap::default();
    let mut outcomes: HashMap<(&str, &str, usize), Vec<Option<usize>>, Fixed> = HashMap::default();
    let mut index: HashMap<String, usize, Fixed> = HashMap::default();
    let mut families: Vec<Building> = Vec::new();
    let mut conflicts = Conflicts::default();
    let mut name = String::new();
    for (at, e) in entries.iter().enumerate() {
        if at % WARM == 0 {
            warm(entries.get(at..).unwrap_or_default());
        }
        let [host, plugin, plugin_instance, type_, type_instance] = identity(e.key());
        let known = plugins.entry(plugin).or_insert_with(|| Plugin {
            label: label_name(plugin, host_label),
            names: [None; 8],
        });
        let plugin_label = known.label.as_str();
        let (first, second) = match (plugin_instance.is_empty(), type_instance.is_empty()) {
            (false, false) => ((plugin_label, plugin_instance), ("type", type_instance)),
            (false, true) => ((plugin_label, plugin_instance), ("", "")),
            (true, false) => ((plugin_label, type_instance), ("", "")),
            (true, true) => (("", ""), ("", "")),
        };
        // The non-empty ones.
        let mut labels = [first, second, (host_label, host)];
        let mut n = 0;
        let mut present = 0;
        for i in 0..labels.len() {
            if !labels[i].1.is_empty() {
                labels[n] = labels[i];
                n += 1;
                present |= 1 << i;
            }
        }
        let labels = &mut labels[..n];
        labels.sort_unstable();
        let start = sets.len();
        for (k, v) in labels.iter() {
            sets.push_str(k);
            sets.push('\0');
            sets.push_str(v);
            sets.push('\0');
        }
        let set = Span::of(&sets, start);
        let start = rendered.len();
        render_labels(&mut rendered, labels);
        let names = *known.names[present].get_or_insert_with(|| {
            name_lists.push(labels.iter().map(|(k, _)| (*k).to_owned()).collect());
            name_lists.len() - 1
        });
        own.push(Own {
            set,
            rendered: Span::of(&rendered, start),
            labels: n,
            names,
        });

        let values = e.values();
        let outcome = outcomes
            .entry((plugin, type_, values.len()))
            .or_insert_with(|| {
                let ds_names = types.names(type_, values.len());
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let ds = match ds_names {
                            Some(names) => names[i].as_str(),
                            None if values.len() == 1 => "value",
                            None => "",
                        };
                        metric_name_into(&mut name, plugin, type_, ds, i);
                        family_of(&name, kind_of(v), &mut index, &mut families)
                    })
                    .collect()
            });
        for (v, family) in values.iter().zip(outcome.iter()) {
            let (kind, number) = match *v {
                Value::Gauge(g) => (Kind::Gauge, Number::F64(g)),
                Value::Absolute(a) => (Kind::Gauge, Number::U64(a)),
                Value::Counter(c) => (Kind::Counter, Number::U64(c)),
                Value::Derive(d) => (Kind::Counter, Number::F64(d as f64)),
            };
            match family {
                Some(f) if families[*f].kind == kind => raws.push(Raw {
                    set,
                    family: *f,
                    entry: at,
                    order: raws.len(),
                    number,
                }),
                _ => conflicts.type_mismatch += 1,
            }
        }
    }

    /// A family's kind, or the counter/gauge clash that keeps it out.
    fn family_of(
        name: &str,
        kind: Kind,
        index: &mut HashMap<String, usize, Fixed>,
        families: &mut Vec<Building>,
    ) -> Option<usize> {
        if let Some(&at) = index.get(name) {
            return Some(at);
        }
        // Counters are exposed as `<name>_total`: a new counter `x` and a
        // gauge `x_total` (or the other way round) would be two families of
        // one name, which fails the scrape.
        let clash = match kind {
            Kind::Counter => index
                .get(format!("{name}_total").as_str())
                .is_some_and(|&f| families[f].kind == Kind::Gauge),
            Kind::Gauge => name
                .strip_suffix("_total")
                .and_then(|base| index.get(base))
                .is_some_and(|&f| families[f].kind == Kind::Counter),
        };
        if clash {
            return None;
        }
        families.push(Building {
            name: name.to_owned(),
            kind,
        });
        index.insert(name.to_owned(), families.len() - 1);
        Some(families.len() - 1)
    }

    // The samples of each family, then sorted by label set (and creation,
    // so that of a value list's two values in one series the first is
    // kept): duplicates are neighbours.
    let mut counts = vec![0; families.len()];
    for raw in &raws {
        counts[raw.family] += 1;
    }
    let mut by_family: Vec<Vec<Raw>> = counts.into_iter().map(Vec::with_capacity).collect();
    for raw in raws {
        by_family[raw.family].push(raw);
    }
    let mut order: Vec<usize> = (0..families.len()).collect();
    order.sort_unstable_by(|&a, &b| families[a].name.cmp(&families[b].name));
    let mut out = Vec::with_capacity(families.len());
    let mut seen = vec![false; name_lists.len()];
    for f in order {
        let mut kept = std::mem::take(&mut by_family[f]);
        let mut keys: Vec<(u64, usize)> = (0..kept.len()).map(|i| (0, i)).collect();
        sort_by_set(&mut keys, &|i| (kept[i].set.get(&sets), kept[i].order), 0);
        kept = keys.iter().map(|&(_, i)| kept[i]).collect();
        // Of equal label sets the one received last (ties: the larger
        // identity) is kept, in place.
        let newer = |r: &Raw| {
            let e = &entries[r.entry];
            (e.received_unix(), e.key())
        };
        let mut len = 0;
        for i in 0..kept.len() {
            if len > 0 && kept[len - 1].set.get(&sets) == kept[i].set.get(&sets) {
                conflicts.duplicate_series += 1;
                if newer(&kept[i]) > newer(&kept[len - 1]) {
                    kept.swap(len - 1, i);
                }
            } else {
                kept.swap(len, i);
                len += 1;
            }
        }
        kept.truncate(len);
        seen.fill(false);
        for raw in &kept {
            seen[own[raw.entry].names] = true;
        }
        let mut label_names: Vec<&str> = Vec::new();
        for (list, _) in name_lists.iter().zip(&seen).filter(|(_, seen)| **seen) {
            for n in list {
                if !label_names.contains(&n.as_str()) {
                    label_names.push(n);
                }
            }
        }
        label_names.sort_unstable();
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(label_names.len());
        let samples = kept
            .iter()
            .map(|raw| {
                let o = &own[raw.entry];
                let rendered = if o.labels == label_names.len() {
                    o.rendered
                } else {
                    // Its family has label names it lacks: written empty.
                    let set = set_labels(o.set.get(&sets));
                    labels.clear();
                    labels.extend(label_names.iter().map(|n| (*n, value_of(set.clone(), n))));
                    let start = rendered.len();
                    render_labels(&mut rendered, &labels);
                    Span::of(&rendered, start)
                };
                GenericSample {
                    set: o.set,
                    rendered,
                    number: raw.number,
                }
            })
            .collect();
        out.push(GenericFamily {
            name: std::mem::take(&mut families[f].name),
            kind: families[f].kind,
            label_names: label_names.into_iter().map(str::to_owned).collect(),
            samples,
        });
    }
    GenericSnapshot {
        families: out,
        conflicts,
        value_lists: live.value_lists(),
        expired: live.expired(),
        evicted: live.evicted(),
        sets,
        rendered,
    }
}

/// Below this many, [`sort_by_set`] compares whole label sets.
const SMALL_SORT: usize = 32;

/// Sorts `items` (an index each, and room for a key) by the label set
/// `set` gives for the index, then by its creation order, from byte `depth`
/// of the label sets on (the bytes before are equal): by the 8 bytes after
/// the prefix all of them share, as an integer kept beside the index, then
/// each run of equal keys the same way 8 bytes further. The label sets of a
/// family share long stretches (label names, host name prefixes), so this
/// reads each one a few times instead of comparing it whole, through a
/// pointer, some twenty times.
fn sort_by_set<'a>(
    items: &mut [(u64, usize)],
    set: &dyn Fn(usize) -> (&'a str, usize),
    depth: usize,
) {
    let tail = |i: usize| {
        let (bytes, order) = set(i);
        (bytes.as_bytes().get(depth..).unwrap_or_default(), order)
    };
    if items.len() < SMALL_SORT {
        items.sort_unstable_by(|a, b| tail(a.1).cmp(&tail(b.1)));
        return;
    }
    let first = tail(items[0].1).0;
    let shared = items.iter().fold(first.len(), |shared, item| {
        let other = tail(item.1).0;
        shared.min(first.iter().zip(other).take_while(|(a, b)| a == b).count())
    });
    let at = depth + shared;
    let mut ended = true;
    for item in items.iter_mut() {
        let bytes = set(item.1).0.as_bytes().get(at..).unwrap_or_default();
        let mut key = [0u8; 8];
        let n = bytes.len().min(8);
        key[..n].copy_from_slice(&bytes[..n]);
        ended &= bytes.len() <= 8;
        // Zeros past the end sort a set before those it is a prefix of;
        // a label set never holds two NULs in a row, so none ties with
        // another that goes on.
        item.0 = u64::from_be_bytes(key);
    }
    items.sort_unstable_by_key(|item| item.0);
    let mut start = 0;
    while start < items.len() {
        let key = items[start].0;
        let run = items[start..].iter().take_while(|i| i.0 == key).count();
        let equal = &mut items[start..start + run];
        if run > 1 {
            if ended {
                // Whole label sets equal: creation order.
                equal.sort_unstable_by_key(|item| set(item.1).1);
            } else {
                sort_by_set(equal, set, at + 8);
            }
        }
        start += run;
    }
}

/// Value lists [`warm`] reads ahead of the work on them.
const WARM: usize = 32;

/// Reads the key and the first value of the next [`WARM`] value lists
/// before they are worked on: their copies are scattered over the heap, and
/// these loads are independent of each other, so the processor overlaps
/// their cache misses, where the work itself would wait for each in turn
/// (for a million value lists, most of the time spent on them).
fn warm(entries: &[LiveEntry]) {
    let mut touched = 0u8;
    for e in entries.iter().take(WARM) {
        let key = e.key().as_bytes();
        touched ^= key.first().copied().unwrap_or_default();
        touched ^= key.last().copied().unwrap_or_default();
        touched ^= u8::from(matches!(e.values().first(), Some(Value::Gauge(_))));
    }
    std::hint::black_box(touched);
}

/// Host, plugin, plugin instance, type and type instance of a value list,
/// from its key (the five joined by NUL, `LiveEntry::key`), as
/// `LiveEntry::identity` splits it: by the byte, which for fields this short
/// is several times quicker than a search for the character.
fn identity(key: &str) -> [&str; 5] {
    let mut parts = [""; 5];
    let mut n = 0;
    let mut start = 0;
    for (i, b) in key.bytes().enumerate() {
        if b == 0 {
            if let Some(part) = parts.get_mut(n) {
                *part = key.get(start..i).unwrap_or_default();
            }
            n += 1;
            start = i + 1;
        }
    }
    if let Some(part) = parts.get_mut(n) {
        *part = key.get(start..).unwrap_or_default();
    }
    parts
}

/// The kind of family a value is exported in.
fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Gauge(_) | Value::Absolute(_) => Kind::Gauge,
        Value::Counter(_) | Value::Derive(_) => Kind::Counter,
    }
}

/// collectd_exporter's name for value `index` of a value list, without
/// `_total`. `ds` is the data-source name, or "" when unknown.
pub fn metric_name(plugin: &str, type_: &str, ds: &str, index: usize) -> String {
    let mut name = String::new();
    metric_name_into(&mut name, plugin, type_, ds, index);
    name
}

/// [`metric_name`] into a reused buffer.
pub fn metric_name_into(name: &mut String, plugin: &str, type_: &str, ds: &str, index: usize) {
    name.clear();
    name.push_str("collectd_");
    if plugin != type_ {
        name.push_str(plugin);
        name.push('_');
    }
    name.push_str(type_);
    match ds {
        "value" => {}
        "" => {
            let _ = write!(name, "_{index}");
        }
        ds => {
            name.push('_');
            name.push_str(ds);
        }
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if !name.chars().all(valid) {
        *name = name
            .chars()
            .map(|c| if valid(c) { c } else { '_' })
            .collect();
    }
}

/// collectd_exporter's labels, non-empty ones only, sorted by name.
pub fn labels(
    plugin: &str,
    plugin_instance: &str,
    type_instance: &str,
    host: &str,
    host_label: &str,
) -> Vec<(String, String)> {
    let plugin_label = label_name(plugin, host_label);
    let mut labels = Vec::with_capacity(3);
    match (plugin_instance.is_empty(), type_instance.is_empty()) {
        (false, false) => {
            labels.push((plugin_label, plugin_instance.to_owned()));
            labels.push(("type".to_owned(), type_instance.to_owned()));
        }
        (false, true) => labels.push((plugin_label, plugin_instance.to_owned())),
        (true, false) => labels.push((plugin_label, type_instance.to_owned())),
        (true, true) => {}
    }
    if !host.is_empty() {
        labels.push((host_label.to_owned(), host.to_owned()));
    }
    labels.sort();
    labels
}

/// A plugin name as a label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved
/// (`__…`), and not one of the other two label names (which would repeat a
/// label); such names get a `plugin_` prefix.
pub fn label_name(plugin: &str, host_label: &str) -> String {
    let mut name: String = plugin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || name.starts_with("__")
        || name == "type"
        || name == host_label
    {
        name.insert_str(0, "plugin_");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::{CdTime, Encoder, Identity, ValueList, decode};
    use crate::store::collectd::GenericStore;
    use crate::store::{Freshness, Now};
    use std::time::{Duration, Instant};

    /// The store's live copy, resolved as a scrape does.
    trait Snapshot {
        fn snapshot(&self, now: Instant, types: &TypesDb, host_label: &str) -> GenericSnapshot;
    }

    impl Snapshot for GenericStore {
        fn snapshot(&self, now: Instant, types: &TypesDb, host_label: &str) -> GenericSnapshot {
            resolve(&self.live(now), types, host_label)
        }
    }

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

    fn types() -> TypesDb {
        let mut db = TypesDb::default();
        db.parse(
            "if_octets rx:DERIVE:0:U, tx:DERIVE:0:U\ncpu value:DERIVE:0:U\nload shortterm:GAUGE:0:5000, midterm:GAUGE:0:5000, longterm:GAUGE:0:5000\nmemory value:GAUGE:0:U\n",
            "t",
        )
        .unwrap();
        db
    }

    fn names(s: &GenericSnapshot) -> Vec<String> {
        s.families
            .iter()
            .flat_map(|f| {
                f.samples.iter().map(move |sample| {
                    let labels: Vec<String> = f
                        .label_names
                        .iter()
                        .zip(s.values(f, sample))
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect();
                    let total = if f.kind == Kind::Counter {
                        "_total"
                    } else {
                        ""
                    };
                    format!("{}{total}{{{}}}", f.name, labels.join(","))
                })
            })
            .collect()
    }

    fn store_with(lists: &[ValueList]) -> (GenericStore, Now) {
        let mut s = GenericStore::new(Freshness::default(), 1000);
        let now = Now::wall();
        for l in lists {
            s.apply(l, now).unwrap();
        }
        (s, now)
    }

    #[test]
    fn names_follow_collectd_exporter() {
        let (s, now) = store_with(&[
            vl("vm", "cpu", "0", "cpu", "idle", &[Value::Derive(5)]),
            vl(
                "vm",
                "interface",
                "eth0",
                "if_octets",
                "",
                &[Value::Derive(1), Value::Derive(2)],
            ),
            vl(
                "vm",
                "load",
                "",
                "load",
                "",
                &[Value::Gauge(0.5), Value::Gauge(0.25), Value::Gauge(0.125)],
            ),
            vl("vm", "memory", "", "memory", "used", &[Value::Gauge(1e9)]),
            vl(
                "vm",
                "df",
                "root",
                "df_complex",
                "free",
                &[Value::Gauge(3.0)],
            ),
            vl(
                "vm",
                "my-plugin",
                "",
                "gauge",
                "",
                &[Value::Gauge(1.0), Value::Absolute(4)],
            ),
        ]);
        let snap = s.snapshot(now.at, &types(), "instance");
        assert_eq!(
            names(&snap),
            vec![
                "collectd_cpu_total{cpu=0,instance=vm,type=idle}",
                "collectd_df_df_complex{df=root,instance=vm,type=free}",
                "collectd_interface_if_octets_rx_total{instance=vm,interface=eth0}",
                "collectd_interface_if_octets_tx_total{instance=vm,interface=eth0}",
                "collectd_load_longterm{instance=vm}",
                "collectd_load_midterm{instance=vm}",
                "collectd_load_shortterm{instance=vm}",
                "collectd_memory{instance=vm,memory=used}",
                "collectd_my_plugin_gauge_0{instance=vm}",
                "collectd_my_plugin_gauge_1{instance=vm}",
            ]
        );
        assert_eq!(snap.conflicts, Conflicts::default());
    }

    #[test]
    fn host_label_can_be_renamed() {
        let (s, now) = store_with(&[vl(
            "vm",
            "memory",
            "",
            "memory",
            "used",
            &[Value::Gauge(1.0)],
        )]);
        let snap = s.snapshot(now.at, &types(), "host");
        assert_eq!(names(&snap), vec!["collectd_memory{host=vm,memory=used}"]);
    }

    #[test]
    fn plugin_label_names_are_made_valid_and_never_repeat_a_label() {
        assert_eq!(label_name("my-plugin.x", "instance"), "my_plugin_x");
        assert_eq!(label_name("9p", "instance"), "plugin_9p");
        assert_eq!(label_name("type", "instance"), "plugin_type");
        assert_eq!(label_name("instance", "instance"), "plugin_instance");
        assert_eq!(label_name("__name__", "instance"), "plugin___name__");
    }

    #[test]
    fn duplicate_series_keep_the_last_received() {
        // Two plugin names that sanitise alike.
        let a = vl("vm", "my.app", "", "gauge", "", &[Value::Gauge(1.0)]);
        let b = vl("vm", "my-app", "", "gauge", "", &[Value::Gauge(2.0)]);
        let mut s = GenericStore::new(Freshness::default(), 1000);
        let t0 = Now::wall();
        s.apply(&a, t0.after(Duration::from_secs(1))).unwrap();
        s.apply(&b, t0).unwrap();
        let snap = s.snapshot(t0.at + Duration::from_secs(1), &types(), "instance");
        assert_eq!(snap.families.len(), 1);
        assert_eq!(snap.families[0].samples[0].number, Number::F64(1.0));
        assert_eq!(snap.conflicts.duplicate_series, 1);
    }

    #[test]
    fn plugin_instance_and_type_instance_swapped_collide_deterministically() {
        // {cpu="0"} from a plugin instance and from a type instance: same series.
        let a = vl("vm", "cpu", "0", "cpu", "", &[Value::Derive(10)]);
        let b = vl("vm", "cpu", "", "cpu", "0", &[Value::Derive(20)]);
        let (s, now) = store_with(&[a, b]);
        let snap = s.snapshot(now.at, &types(), "instance");
        assert_eq!(names(&snap), vec!["collectd_cpu_total{cpu=0,instance=vm}"]);
        // Same receive time: the larger identity wins; "vm\0cpu\00\0cpu\0" (the
        // plugin instance one) sorts after "vm\0cpu\0\0cpu\00".
        assert_eq!(snap.families[0].samples[0].number, Number::F64(10.0));
        assert_eq!(snap.conflicts.duplicate_series, 1);
    }

    #[test]
    fn a_family_keeps_the_type_of_its_first_series() {
        let a = vl("vm", "app", "", "thing", "x", &[Value::Gauge(1.0)]);
        let b = vl("vm", "app", "", "thing", "y", &[Value::Derive(1)]);
        let c = vl("vm", "app", "", "thing", "z", &[Value::Gauge(3.0)]);
        let (s, now) = store_with(&[a, b, c]);
        let snap = s.snapshot(now.at, &TypesDb::default(), "instance");
        assert_eq!(
            names(&snap),
            vec![
                "collectd_app_thing{app=x,instance=vm}",
                "collectd_app_thing{app=z,instance=vm}"
            ]
        );
        assert_eq!(snap.conflicts.type_mismatch, 1);
    }

    #[test]
    fn counter_x_and_gauge_x_total_do_not_share_an_exposed_name() {
        // Found by tests/properties.rs: `collectd_a_b` as a counter is exposed
        // as `collectd_a_b_total`, the name of the gauge; the text format had
        // two HELP lines for it, which Prometheus refuses.
        let gauge = vl("vm", "a", "", "b_total", "", &[Value::Gauge(1.0)]);
        let counter = vl("vm", "a", "", "b", "", &[Value::Derive(2)]);
        // The one created first is kept.
        for (lists, kept) in [
            ([gauge.clone(), counter.clone()], Kind::Gauge),
            ([counter, gauge], Kind::Counter),
        ] {
            let (s, now) = store_with(&lists);
            let snap = s.snapshot(now.at, &TypesDb::default(), "instance");
            assert_eq!(names(&snap), vec!["collectd_a_b_total{instance=vm}"]);
            assert_eq!(snap.families[0].kind, kept);
            assert_eq!(snap.conflicts.type_mismatch, 1);
        }
    }

    /// The text writer, made to take every sample's labels as pairs.
    struct Unrendered<'a>(crate::exposition::text::TextWriter<'a>);

    impl crate::exposition::families::FamilyWriter for Unrendered<'_> {
        fn family(
            &mut self,
            family: &crate::exposition::families::Family<'_>,
            samples: &mut dyn FnMut(
                &mut dyn crate::exposition::families::SampleWriter,
            ) -> std::fmt::Result,
        ) -> std::fmt::Result {
            self.0.family(family, samples)
        }
    }

    /// The label sets rendered once per value list (or per sample, where the
    /// family has label names the value list lacks) give the text that
    /// rendering each line's labels gives, escaping included.
    #[test]
    fn rendered_label_sets_give_the_text_of_labels_rendered_per_line() {
        use crate::exposition::families::{Scrape, write};
        use crate::exposition::text::TextWriter;
        let (s, now) = store_with(&[
            vl("v\"m", "cpu", "0", "cpu", "idle", &[Value::Derive(1)]),
            vl("vm", "cpu", "", "cpu", "", &[Value::Derive(2)]),
            vl("vm", "cpu", "1\\2", "cpu", "a\nb", &[Value::Derive(3)]),
            vl("", "load", "", "load", "", &[Value::Gauge(0.5); 3]),
            vl(
                "vm",
                "a.b",
                "x",
                "t",
                "",
                &[Value::Gauge(1.5), Value::Gauge(2.5)],
            ),
        ]);
        let scrape = Scrape {
            generic: s.snapshot(now.at, &types(), "instance"),
            ..Scrape::default()
        };
        let mut rendered = String::new();
        write(&scrape, &mut TextWriter::new(&mut rendered)).unwrap();
        let mut per_line = String::new();
        write(&scrape, &mut Unrendered(TextWriter::new(&mut per_line))).unwrap();
        assert_eq!(rendered, per_line);
        for line in [
            "collectd_cpu_total{cpu=\"\",instance=\"vm\",type=\"\"} 2\n",
            "collectd_cpu_total{cpu=\"0\",instance=\"v\\\"m\",type=\"idle\"} 1\n",
            "collectd_cpu_total{cpu=\"1\\\\2\",instance=\"vm\",type=\"a\\nb\"} 3\n",
            "collectd_load_longterm 0.5\n",
            "collectd_a_b_t_1{a_b=\"x\",instance=\"vm\"} 2.5\n",
        ] {
            assert!(rendered.contains(line), "{line:?} missing from\n{rendered}");
        }
    }

    /// Two values of one value list named alike are one series: the first
    /// is kept.
    #[test]
    fn values_of_one_value_list_in_one_series_keep_the_first() {
        let mut db = TypesDb::default();
        db.parse("two a-b:GAUGE:U:U, a.b:GAUGE:U:U\n", "t").unwrap();
        let (s, now) = store_with(&[vl(
            "vm",
            "p",
            "",
            "two",
            "",
            &[Value::Gauge(1.0), Value::Gauge(2.0)],
        )]);
        let snap = s.snapshot(now.at, &db, "instance");
        assert_eq!(names(&snap), vec!["collectd_p_two_a_b{instance=vm}"]);
        assert_eq!(snap.families[0].samples[0].number, Number::F64(1.0));
        assert_eq!(snap.conflicts.duplicate_series, 1);
    }

    /// Label sets sorted 8 bytes at a time come out as a sort of the whole
    /// sets (then creation order) puts them: long shared prefixes, sets that
    /// are prefixes of others, equal sets, small and large runs.
    #[test]
    fn label_sets_sort_as_whole_sets_do() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for count in [0, 1, 5, 31, 32, 33, 200, 3000] {
            let sets: Vec<String> = (0..count)
                .map(|_| {
                    let r = next();
                    let mut set = String::new();
                    for i in 0..(r % 4) {
                        let name = ["cpu", "instance", "type", "a"][((r >> (8 * i)) % 4) as usize];
                        let value = format!("node{:06}", (r >> (16 + 4 * i)) % 40);
                        set.push_str(name);
                        set.push('\0');
                        set.push_str(&value[..1 + (r >> 40) as usize % value.len()]);
                        set.push('\0');
                    }
                    set
                })
                .collect();
            let mut items: Vec<(u64, usize)> = (0..sets.len()).map(|i| (0, i)).collect();
            sort_by_set(&mut items, &|i| (sets[i].as_str(), i), 0);
            let sorted: Vec<usize> = items.iter().map(|&(_, i)| i).collect();
            let mut want: Vec<usize> = (0..sets.len()).collect();
            want.sort_by(|&a, &b| (&sets[a], a).cmp(&(&sets[b], b)));
            assert_eq!(sorted, want, "{count} sets");
        }
    }

    #[test]
    fn a_key_splits_as_the_store_splits_it() {
        let (s, now) = store_with(&[
            vl("vm", "cpu", "0", "cpu", "idle", &[Value::Derive(1)]),
            vl("", "ü", "", "load", "", &[Value::Gauge(1.0)]),
        ]);
        for e in s.live(now.at).entries() {
            let (a, b, c, d, f) = e.identity();
            assert_eq!(identity(e.key()), [a, b, c, d, f]);
        }
        assert_eq!(identity("a\0b"), ["a", "b", "", "", ""]);
        assert_eq!(identity("a\0b\0c\0d\0e\0f"), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn label_names_are_consistent_within_a_family() {
        let a = vl("vm", "cpu", "0", "cpu", "idle", &[Value::Derive(1)]);
        let b = vl("vm", "cpu", "", "cpu", "", &[Value::Derive(2)]);
        let (s, now) = store_with(&[a, b]);
        let snap = s.snapshot(now.at, &types(), "instance");
        let f = &snap.families[0];
        assert_eq!(f.label_names, vec!["cpu", "instance", "type"]);
        assert!(f.samples.iter().all(|v| snap.values(f, v).len() == 3));
        assert!(
            f.samples
                .iter()
                .any(|v| snap.values(f, v) == ["", "vm", ""])
        );
    }
}
