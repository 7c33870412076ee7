//! Structure-aware: datagrams of well-formed value lists whose names come
//! mostly from a small vocabulary (the client's types, collectd's, names that
//! collide once sanitised or suffixed with `_total`), so the fuzzer spends
//! its time on routing, the stores and the scrape rather than on getting part
//! lengths right. Every such datagram must decode; the scrape in both formats
//! must stay valid, and everything must be forgotten in the end.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::collectd::{CdTime, Encoder, Identity, Str, Value, decode};
use sqlalchemy_collectd_exporter_fuzz::Pipeline;

/// Few words, so that names meet: equal after sanitising (`a-b`, `a_b`),
/// one the `_total` of another, the client's types and stats, a label name.
const VOCABULARY: &[&str] = &[
    "",
    "a",
    "total",
    "a_total",
    "a-b",
    "a_b",
    "value",
    "instance",
    "sqlalchemy",
    "sqlalchemy_pool",
    "sqlalchemy_totals",
    "sqlalchemy_transactions",
    "count",
    "derive",
    "checkedout",
    "checkouts",
    "numprocs",
    "host",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Word(u8),
    /// The same field of the previous value list.
    Same,
    Text(String),
}

impl Name {
    /// A string collectd accepts: below 128 bytes, no NUL.
    fn get(&self, previous: &Str) -> Str {
        match self {
            Name::Word(i) => Str::from(VOCABULARY[usize::from(*i) % VOCABULARY.len()]),
            Name::Same => previous.clone(),
            Name::Text(s) if s.len() < 128 && !s.contains('\0') => Str::from(s.as_str()),
            Name::Text(_) => Str::from("long"),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Number {
    Counter(u64),
    Gauge(f64),
    Derive(i64),
    Absolute(u64),
    Small(u8),
}

#[derive(Arbitrary, Debug)]
struct List {
    host: Name,
    plugin: Name,
    plugin_instance: Name,
    type_: Name,
    type_instance: Name,
    /// Seconds, few distinct ones: reports out of order and duplicated.
    time: u8,
    interval: u8,
    values: Vec<Number>,
}

fuzz_target!(|datagrams: Vec<Vec<List>>| {
    let mut pipeline = Pipeline::new();
    let mut previous = Identity::default();
    for lists in datagrams.iter().take(16) {
        let mut e = Encoder::new();
        let mut count = 0;
        for l in lists.iter().take(32) {
            let values: Vec<Value> = l
                .values
                .iter()
                .take(6)
                .map(|n| match *n {
                    Number::Counter(c) => Value::Counter(c),
                    Number::Gauge(g) => Value::Gauge(g),
                    Number::Derive(d) => Value::Derive(d),
                    Number::Absolute(a) => Value::Absolute(a),
                    Number::Small(s) => Value::Gauge(f64::from(s)),
                })
                .collect();
            if values.is_empty() {
                continue;
            }
            let id = Identity {
                host: l.host.get(&previous.host),
                plugin: l.plugin.get(&previous.plugin),
                plugin_instance: l.plugin_instance.get(&previous.plugin_instance),
                type_: l.type_.get(&previous.type_),
                type_instance: l.type_instance.get(&previous.type_instance),
            };
            e.collectd_value_list(
                &id,
                CdTime::from_secs(1_795_289_000 + u64::from(l.time)),
                CdTime::from_secs(u64::from(l.interval)),
                &values,
            );
            count += 1;
            previous = id;
        }
        if count == 0 {
            continue;
        }
        let datagram = e.finish();
        let packet = decode(&datagram).expect("well-formed datagram decodes");
        assert_eq!(packet.value_lists.len(), count);
        // Through the production sink, as a receive thread hands it on.
        pipeline.datagram(&datagram);
    }
    pipeline.scrape_and_check();
});
