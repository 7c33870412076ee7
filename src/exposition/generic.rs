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
use crate::collectd::Value;
use crate::collectd::typesdb::TypesDb;
use crate::store::collectd::Live;
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
    /// Label values in `label_names` order, and the value; sorted.
    pub samples: Vec<(Vec<String>, Number)>,
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
}

/// Names, labels and values of every live value list.
///
/// The scrape cannot fail: samples that would share a name and label set
/// keep the one received last (ties: the larger identity); a family keeps
/// the type of its first series; label names are made consistent within a
/// family by leaving missing labels empty. What was left out is counted
/// in `conflicts`.
pub fn resolve(live: &Live, types: &TypesDb, host_label: &str) -> GenericSnapshot {
    /// Non-empty labels, sorted.
    type LabelSet = Vec<(String, String)>;
    /// The value, when it was received, and whose it is.
    type Sample<'a> = (Number, f64, &'a str);
    struct Building<'a> {
        name: String,
        kind: Kind,
        series: HashMap<&'a LabelSet, Sample<'a>, foldhash::fast::FixedState>,
    }
    // Each value list's plugin, type and labels, split and built once;
    // the labels are borrowed by its samples.
    let parsed: Vec<(&str, &str, LabelSet)> = live
        .entries()
        .iter()
        .map(|e| {
            let (host, plugin, plugin_instance, type_, type_instance) = e.identity();
            let labels = labels(plugin, plugin_instance, type_instance, host, host_label);
            (plugin, type_, labels)
        })
        .collect();
    let mut index: HashMap<String, usize, foldhash::fast::FixedState> = HashMap::default();
    let mut families: Vec<Building> = Vec::new();
    let mut conflicts = Conflicts::default();
    let mut name = String::new();
    for (e, (plugin, type_, labels)) in live.entries().iter().zip(&parsed) {
        let (key, plugin, type_): (&str, &str, &str) = (e.key(), plugin, type_);
        let ds_names = types.names(type_, e.values().len());
        for (i, v) in e.values().iter().enumerate() {
            let ds = match ds_names {
                Some(names) => names[i].as_str(),
                None if e.values().len() == 1 => "value",
                None => "",
            };
            let (kind, number) = match *v {
                Value::Gauge(g) => (Kind::Gauge, Number::F64(g)),
                Value::Absolute(a) => (Kind::Gauge, Number::U64(a)),
                Value::Counter(c) => (Kind::Counter, Number::U64(c)),
                Value::Derive(d) => (Kind::Counter, Number::F64(d as f64)),
            };
            metric_name_into(&mut name, plugin, type_, ds, i);
            let at = match index.get(name.as_str()) {
                Some(&at) => at,
                None => {
                    // Counters are exposed as `<name>_total`: a new counter
                    // `x` and a gauge `x_total` (or the other way round)
                    // would be two families of one name, which fails the
                    // scrape.
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
                        conflicts.type_mismatch += 1;
                        continue;
                    }
                    families.push(Building {
                        name: name.clone(),
                        kind,
                        series: HashMap::default(),
                    });
                    index.insert(name.clone(), families.len() - 1);
                    families.len() - 1
                }
            };
            let family = &mut families[at];
            if family.kind != kind {
                conflicts.type_mismatch += 1;
                continue;
            }
            let sample = (number, e.received_unix(), key);
            match family.series.entry(labels) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(sample);
                }
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    conflicts.duplicate_series += 1;
                    let (_, received, identity) = *slot.get();
                    if (e.received_unix(), key) > (received, identity) {
                        slot.insert(sample);
                    }
                }
            }
        }
    }

    families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let families = families
        .into_iter()
        .map(|b| {
            let mut series: Vec<(&LabelSet, Sample)> = b.series.into_iter().collect();
            series.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut label_names: Vec<&str> = series
                .iter()
                .flat_map(|(l, _)| l.iter().map(|(n, _)| n.as_str()))
                .collect();
            label_names.sort_unstable();
            label_names.dedup();
            let samples = series
                .into_iter()
                .map(|(labels, (number, _, _))| {
                    let values = label_names
                        .iter()
                        .map(|n| {
                            labels
                                .iter()
                                .find(|(k, _)| k == n)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        })
                        .collect();
                    (values, number)
                })
                .collect();
            GenericFamily {
                name: b.name,
                kind: b.kind,
                label_names: label_names.into_iter().map(str::to_owned).collect(),
                samples,
            }
        })
        .collect();
    GenericSnapshot {
        families,
        conflicts,
        value_lists: live.value_lists(),
        expired: live.expired(),
        evicted: live.evicted(),
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
                f.samples.iter().map(move |(values, _)| {
                    let labels: Vec<String> = f
                        .label_names
                        .iter()
                        .zip(values)
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
        assert_eq!(snap.families[0].samples[0].1, Number::F64(1.0));
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
        assert_eq!(snap.families[0].samples[0].1, Number::F64(10.0));
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

    #[test]
    fn label_names_are_consistent_within_a_family() {
        let a = vl("vm", "cpu", "0", "cpu", "idle", &[Value::Derive(1)]);
        let b = vl("vm", "cpu", "", "cpu", "", &[Value::Derive(2)]);
        let (s, now) = store_with(&[a, b]);
        let snap = s.snapshot(now.at, &types(), "instance");
        let f = &snap.families[0];
        assert_eq!(f.label_names, vec!["cpu", "instance", "type"]);
        assert!(f.samples.iter().all(|(v, _)| v.len() == 3));
        assert!(f.samples.iter().any(|(v, _)| v == &["", "vm", ""]));
    }
}
