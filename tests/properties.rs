//! Property tests over the public API: the collectd codec, the SQLAlchemy
//! store's counter and liveness rules under an adversarial network, and the
//! generic store's scrape validity. Case counts are set per property so the
//! whole file stays fast in the default (debug) test profile.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sqlalchemy_collectd_exporter::collectd::typesdb::TypesDb;
use sqlalchemy_collectd_exporter::collectd::{
    CdTime, Encoder, Identity, MAX_STRING_BYTES, Packet, Protection, Value, ValueList, Values,
    client_report, decode, part,
};
use sqlalchemy_collectd_exporter::exposition::families::{Kind, Scrape};
use sqlalchemy_collectd_exporter::exposition::generic::resolve;
use sqlalchemy_collectd_exporter::exposition::{Format, encode};
use sqlalchemy_collectd_exporter::route::{
    Cumulative, Pool, ProcessKey, Record, Sample, SqlaRecord, route, route_client,
};
use sqlalchemy_collectd_exporter::store::collectd::GenericStore;
use sqlalchemy_collectd_exporter::store::sqlalchemy::{ApplyError, Limits, Snapshot, SqlaStore};
use sqlalchemy_collectd_exporter::store::{Freshness, Now};
use sqlalchemy_collectd_exporter::telemetry::Telemetry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// 1. Codec
// ---------------------------------------------------------------------------

/// At most 127 bytes of UTF-8 without NUL, cut at a character boundary.
fn fit_identity(chars: Vec<char>) -> String {
    let mut s = String::new();
    for c in chars.into_iter().filter(|&c| c != '\0') {
        if s.len() + c.len_utf8() > MAX_STRING_BYTES - 1 {
            break;
        }
        s.push(c);
    }
    s
}

/// Identity strings: often empty or from a tiny alphabet (so consecutive
/// value lists share parts and the collectd layout leaves them out), else
/// arbitrary UTF-8 up to the 127-byte limit.
fn identity_string() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        4 => prop::sample::select(vec!["a", "b", "vm", "cpu", "a-b"]).prop_map(String::from),
        4 => prop::collection::vec(any::<char>(), 0..=127).prop_map(fit_identity),
        1 => "[a-z]{120,127}",
        1 => prop::collection::vec(prop::sample::select(vec!['é', '€', '😀', 'x']), 30..=130)
            .prop_map(fit_identity),
    ]
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        identity_string(),
        identity_string(),
        identity_string(),
        identity_string(),
        identity_string(),
    )
        .prop_map(|(h, p, pi, t, ti)| Identity {
            host: h.as_str().into(),
            plugin: p.as_str().into(),
            plugin_instance: pi.as_str().into(),
            type_: t.as_str().into(),
            type_instance: ti.as_str().into(),
        })
}

fn gauge() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        any::<f64>(),
        // Every bit pattern, signalling NaNs with payloads included.
        any::<u64>().prop_map(f64::from_bits),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![Just(u64::MAX), Just(0), any::<u64>()].prop_map(Value::Counter),
        gauge().prop_map(Value::Gauge),
        prop_oneof![Just(i64::MIN), Just(-1), i64::MIN..0, any::<i64>()].prop_map(Value::Derive),
        prop_oneof![Just(u64::MAX), any::<u64>()].prop_map(Value::Absolute),
    ]
}

fn values(max: usize) -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(value(), 1..=max)
}

/// Times that repeat often (so TIME_HR/INTERVAL_HR are left out when
/// unchanged), or anything.
fn hr_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![0u64, 1 << 30, 1_795_289_844 << 30, u64::MAX]),
        1 => any::<u64>(),
    ]
}

/// A value compared by bits: type code and the 8 wire bytes' meaning.
fn bits(v: Value) -> (u8, u64) {
    match v {
        Value::Counter(n) => (0, n),
        Value::Gauge(g) => (1, g.to_bits()),
        Value::Derive(d) => (2, d as u64),
        Value::Absolute(n) => (3, n),
    }
}

fn assert_values(got: &Values, want: &[Value]) {
    assert_eq!(got.len(), want.len());
    let got: Vec<_> = got.iter().map(bits).collect();
    let want: Vec<_> = want.iter().copied().map(bits).collect();
    assert_eq!(got, want);
}

type ListSpec = (Identity, u64, u64, Vec<Value>);

fn list_spec(max_values: usize) -> impl Strategy<Value = ListSpec> {
    (identity(), hr_time(), hr_time(), values(max_values))
}

/// Byte offsets at which a part starts, and the end of the datagram.
fn part_boundaries(raw: &[u8]) -> Vec<(usize, u16)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let part_type = u16::from_be_bytes([raw[at], raw[at + 1]]);
        let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
        assert!(len >= 4, "the encoder wrote a part shorter than its header");
        out.push((at, part_type));
        at += len;
    }
    assert_eq!(at, raw.len());
    out
}

/// Touches everything a decoded packet holds, as ingest would.
fn consume(packet: &Packet) -> usize {
    let mut n = 0;
    for vl in &packet.value_lists {
        assert!(!vl.values.is_empty());
        n += vl.values.iter().count();
        for s in [
            &vl.id.host,
            &vl.id.plugin,
            &vl.id.plugin_instance,
            &vl.id.type_,
            &vl.id.type_instance,
        ] {
            assert!(s.as_bytes().len() < MAX_STRING_BYTES);
            assert_eq!(s.as_str().len(), s.as_bytes().len(), "identity not UTF-8");
        }
    }
    // Debug formatting reads every string and value too.
    assert!(!format!("{packet:?}").is_empty());
    n
}

/// Parts with plausible types and mostly plausible lengths, for a decoder
/// fuzz that gets past the first header more often than random bytes do.
fn garbage_part() -> impl Strategy<Value = Vec<u8>> {
    let part_type = prop_oneof![
        8 => prop::sample::select(vec![
            part::HOST,
            part::TIME,
            part::PLUGIN,
            part::PLUGIN_INSTANCE,
            part::TYPE,
            part::TYPE_INSTANCE,
            part::VALUES,
            part::INTERVAL,
            part::TIME_HR,
            part::INTERVAL_HR,
            part::MESSAGE,
            part::SEVERITY,
            part::SIGNATURE,
            part::ENCRYPTION,
        ]),
        1 => any::<u16>(),
    ];
    let body = prop_oneof![
        // A VALUES body: count, type codes (some unknown), 8-byte words.
        (
            0u16..6,
            prop::collection::vec(0u8..5, 0..6),
            prop::collection::vec(any::<u8>(), 0..60)
        )
            .prop_map(|(count, codes, words)| {
                let mut b = count.to_be_bytes().to_vec();
                b.extend(codes);
                b.extend(words);
                b
            }),
        // A string, NUL-terminated or not.
        (prop::collection::vec(any::<u8>(), 0..140), any::<bool>()).prop_map(|(mut s, nul)| {
            if nul {
                s.push(0);
            }
            s
        }),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    (
        part_type,
        body,
        prop_oneof![6 => Just(0i32), 1 => -6i32..6, 1 => any::<u16>().prop_map(i32::from)],
    )
        .prop_map(|(t, body, adjust)| {
            let len = (4 + body.len() as i32 + adjust).clamp(0, i32::from(u16::MAX)) as u16;
            let mut b = t.to_be_bytes().to_vec();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend(body);
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// The sqlalchemy-collectd client's layout: every part, whole seconds.
    #[test]
    fn client_layout_round_trips(lists in prop::collection::vec(
        (identity(), any::<u64>(), any::<u64>(), values(64)), 1..=4)
    ) {
        let mut e = Encoder::new();
        for (id, t, i, v) in &lists {
            e.client_value_list(id, *t, *i, v);
        }
        let packet = decode(&e.finish()).expect("a client datagram decodes");
        prop_assert!(packet.notifications.is_empty());
        prop_assert_eq!(packet.value_lists.len(), lists.len());
        for (vl, (id, t, i, v)) in packet.value_lists.iter().zip(&lists) {
            prop_assert_eq!(&vl.id, id);
            prop_assert_eq!(vl.time, CdTime::from_secs(*t));
            prop_assert_eq!(vl.interval, CdTime::from_secs(*i));
            if *t < u64::MAX >> 30 {
                prop_assert_eq!(vl.time.0 >> 30, *t);
            }
            prop_assert_eq!(vl.protection, Protection::None);
            assert_values(&vl.values, v);
        }
    }

    /// collectd's layout: high-resolution times and only the parts that
    /// changed, so later value lists inherit what earlier ones set.
    #[test]
    fn collectd_layout_round_trips(lists in prop::collection::vec(list_spec(64), 1..=8)) {
        let mut e = Encoder::new();
        for (id, t, i, v) in &lists {
            e.collectd_value_list(id, CdTime(*t), CdTime(*i), v);
        }
        let raw = e.finish();
        let packet = decode(&raw).expect("a collectd datagram decodes");
        prop_assert_eq!(packet.value_lists.len(), lists.len());
        for (vl, (id, t, i, v)) in packet.value_lists.iter().zip(&lists) {
            prop_assert_eq!(&vl.id, id);
            prop_assert_eq!(vl.time, CdTime(*t));
            prop_assert_eq!(vl.interval, CdTime(*i));
            assert_values(&vl.values, v);
        }
        // The delta encoding really leaves parts out: one string part per
        // change of an identity field (empty strings are free at the start).
        let mut strings = 0;
        let mut prev: Option<&Identity> = None;
        for (id, ..) in &lists {
            let fields = |x: &Identity| [
                x.host.clone(), x.plugin.clone(), x.plugin_instance.clone(),
                x.type_.clone(), x.type_instance.clone(),
            ];
            let now = fields(id);
            strings += match prev {
                None => now.iter().filter(|s| !s.is_empty()).count(),
                Some(p) => fields(p).iter().zip(&now).filter(|(a, b)| a != b).count(),
            };
            prev = Some(id);
        }
        let string_parts = part_boundaries(&raw)
            .iter()
            .filter(|(_, t)| matches!(*t, part::HOST | part::PLUGIN | part::PLUGIN_INSTANCE
                | part::TYPE | part::TYPE_INSTANCE))
            .count();
        prop_assert_eq!(string_parts, strings);
        // Times likewise: written for the first list, then on change only.
        let changes = |pick: fn(&ListSpec) -> u64| {
            1 + lists.windows(2).filter(|w| pick(&w[0]) != pick(&w[1])).count()
        };
        let parts_of = |wanted: u16| part_boundaries(&raw).iter().filter(|(_, t)| *t == wanted).count();
        prop_assert_eq!(parts_of(part::TIME_HR), changes(|l| l.1));
        prop_assert_eq!(parts_of(part::INTERVAL_HR), changes(|l| l.2));
        prop_assert_eq!(parts_of(part::VALUES), lists.len());
    }

    #[test]
    fn decode_never_panics_on_random_bytes(raw in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(p) = decode(&Bytes::from(raw)) {
            consume(&p);
        }
    }

    #[test]
    fn decode_never_panics_on_random_parts(parts in prop::collection::vec(garbage_part(), 0..12)) {
        let raw: Vec<u8> = parts.concat();
        if let Ok(p) = decode(&Bytes::from(raw)) {
            consume(&p);
        }
    }
}

/// Checks the decoder's fast path against the general one for `raw`: when
/// `client_report` takes a datagram, `decode` gives exactly the one value list
/// it describes, and `route_client` gives what `route` gives for it. Returns
/// whether the fast path took it.
fn fast_path_agrees(raw: &[u8]) -> Result<bool, TestCaseError> {
    let Some(r) = client_report(raw) else {
        return Ok(false);
    };
    let packet = match decode(&Bytes::copy_from_slice(raw)) {
        Ok(p) => p,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the fast path took a datagram decode refuses: {e}"
            )));
        }
    };
    prop_assert!(packet.notifications.is_empty());
    prop_assert_eq!(packet.value_lists.len(), 1);
    let vl = &packet.value_lists[0];
    prop_assert_eq!(
        [
            vl.id.host.as_str(),
            vl.id.plugin.as_str(),
            vl.id.plugin_instance.as_str(),
            vl.id.type_.as_str(),
            vl.id.type_instance.as_str()
        ],
        [
            r.host,
            r.plugin,
            r.plugin_instance,
            r.type_,
            r.type_instance
        ]
    );
    prop_assert_eq!((vl.time, vl.interval), (r.time, r.interval));
    prop_assert_eq!(vl.protection, Protection::None);
    prop_assert_eq!(
        vl.values.iter().map(bits).collect::<Vec<_>>(),
        r.values.iter().map(bits).collect::<Vec<_>>()
    );
    if let Some(fast) = route_client(&r) {
        match (fast, route(vl.clone())) {
            (Ok(sample), Ok(Record::Sqla(record))) => {
                prop_assert_eq!(sample, record.sample);
                prop_assert_eq!(record.key.token.as_str(), r.type_instance);
                prop_assert_eq!(record.key.program.as_str(), r.plugin_instance);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => {
                return Err(TestCaseError::fail(format!(
                    "fast path routed to {a:?}, route to {b:?}"
                )));
            }
        }
    }
    Ok(true)
}

/// Client datagrams of every SQLAlchemy type and some others, with values of
/// any count and kind, sometimes followed by or spliced with a stray part.
fn client_like_datagram() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let type_ = prop::sample::select(vec![
        "sqlalchemy_pool",
        "sqlalchemy_totals",
        "sqlalchemy_transactions",
        "count",
        "derive",
        "cpu",
    ]);
    let plugin = prop::sample::select(vec!["sqlalchemy", "sqlalchemy", "cpu", ""]);
    (
        identity(),
        plugin,
        type_,
        any::<u64>(),
        any::<u64>(),
        values(6),
        prop::option::of((garbage_part(), any::<bool>())),
    )
        .prop_map(|(mut id, plugin, type_, t, i, v, extra)| {
            id.plugin = plugin.into();
            id.type_ = type_.into();
            let mut raw = Encoder::new()
                .client_value_list(&id, t, i, &v)
                .finish()
                .to_vec();
            let stray = extra.is_some();
            if let Some((part, at_start)) = extra {
                if at_start {
                    raw.splice(0..0, part);
                } else {
                    raw.extend(part);
                }
            }
            (raw, stray)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the bytes, the fast path never disagrees with the decoder.
    #[test]
    fn fast_path_agrees_with_decode_on_random_parts(parts in prop::collection::vec(garbage_part(), 0..10)) {
        fast_path_agrees(&parts.concat())?;
    }

    /// Datagrams of the real client's layout always take the fast path, and
    /// agree with the decoder with or without a stray part.
    #[test]
    fn fast_path_takes_client_datagrams((raw, stray) in client_like_datagram()) {
        let taken = fast_path_agrees(&raw)?;
        if !stray {
            prop_assert!(taken);
        }
    }
}

#[test]
fn fast_path_takes_every_captured_client_datagram() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut taken = 0;
    for scenario in [
        "01_sqla_idle",
        "02_sqla_checkout3_return1",
        "03_sqla_invalidate_detach",
        "04_sqla_two_engines",
        "05_sqla_fork_workers_two_programs",
    ] {
        for entry in std::fs::read_dir(dir.join(scenario)).expect("testdata") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "bin") {
                let raw = std::fs::read(&path).expect("read capture");
                assert!(
                    fast_path_agrees(&raw).expect("agrees"),
                    "{} did not take the fast path",
                    path.display()
                );
                taken += 1;
            }
        }
    }
    assert!(taken > 0);
}

proptest! {
    // Every cut of every datagram is decoded: fewer cases, smaller lists.
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// A datagram cut anywhere decodes to a prefix of its value lists exactly
    /// when the cut falls between parts, and is an error otherwise.
    #[test]
    fn truncated_datagram_is_a_prefix_or_an_error(
        collectd_layout in any::<bool>(),
        lists in prop::collection::vec(list_spec(12), 1..=5),
    ) {
        let mut e = Encoder::new();
        for (id, t, i, v) in &lists {
            if collectd_layout {
                e.collectd_value_list(id, CdTime(*t), CdTime(*i), v);
            } else {
                e.client_value_list(id, *t >> 34, *i >> 34, v);
            }
        }
        let raw = e.finish();
        let full = decode(&raw).expect("the whole datagram decodes");
        let boundaries = part_boundaries(&raw);
        for cut in 0..=raw.len() {
            let at_boundary = cut == raw.len() || boundaries.iter().any(|(o, _)| *o == cut);
            match decode(&raw.slice(..cut)) {
                Ok(p) => {
                    prop_assert!(cut > 0 && at_boundary, "cut {} of {} decoded", cut, raw.len());
                    let values_parts = boundaries
                        .iter()
                        .filter(|(o, t)| *o < cut && *t == part::VALUES)
                        .count();
                    prop_assert_eq!(p.value_lists.len(), values_parts);
                    prop_assert_eq!(&p.value_lists[..], &full.value_lists[..values_parts]);
                }
                Err(_) => prop_assert!(cut == 0 || !at_boundary, "cut {} at a part boundary failed", cut),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. SQLAlchemy store under an adversarial network
// ---------------------------------------------------------------------------

const HOST: &str = "vm";
const PROGRAMS: [&str; 2] = ["app", "worker"];
const TOKENS: [&str; 3] = ["101:aaaa", "102:bbbb", "103:cccc"];
/// Record kinds a client cycle sends, each in its own datagram.
/// Where client clocks start, so that a clock stepped back stays positive.
const CLIENT_EPOCH_S: i64 = 1_000_000;
const POOL: usize = 0;
const TOTALS: usize = 1;
const TRANSACTIONS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every report arrives at least once (duplicates, reordering, delays).
    Clean,
    /// Reports may also be lost.
    Lossy,
    /// Losses and client resets (totals that go down).
    Chaos,
}

#[derive(Clone, Debug)]
struct Delivery {
    delay_ms: u64,
    sweep_after: bool,
}

#[derive(Clone, Debug)]
struct Cycle {
    /// Silent for longer than the stale window before this cycle (the
    /// process looked dead, then reappears with the same token).
    pause_ms: Option<u64>,
    jitter_ms: u64,
    reset: bool,
    /// The client's clock is stepped by this many seconds from this cycle
    /// on (an NTP correction, a VM resumed).
    clock_step_s: i64,
    totals_inc: [u64; 4],
    tx_inc: [u64; 3],
    checked_out: u8,
    checked_in: u8,
    /// Per kind: the copies the network delivers; none is a loss.
    fates: [Vec<Delivery>; 3],
}

#[derive(Clone, Debug)]
struct ProcSpec {
    program: usize,
    token: usize,
    interval_s: u64,
    clock_offset_s: u64,
    start_ms: u64,
    cycles: Vec<Cycle>,
}

/// When an extra scrape happens.
#[derive(Clone, Copy, Debug)]
enum Tick {
    /// Anywhere in the timeline (this fraction of u16::MAX of it).
    Anywhere(u16),
    /// Exactly when the process that sent the n-th delivered report
    /// (modulo their number) would expire from it, or a millisecond before.
    AtExpiry(u16, bool),
}

#[derive(Clone, Debug)]
struct Fleet {
    mode: Mode,
    procs: Vec<ProcSpec>,
    /// Extra scrapes between deliveries, each after a sweep or not.
    ticks: Vec<(Tick, bool)>,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    let delay = prop_oneof![6 => 0u64..300, 3 => 0u64..3_000, 1 => 3_000u64..20_000];
    (delay, prop::bool::weighted(0.15)).prop_map(|(delay_ms, sweep_after)| Delivery {
        delay_ms,
        sweep_after,
    })
}

fn cycle(mode: Mode) -> impl Strategy<Value = Cycle> {
    let min_copies = if mode == Mode::Clean { 1 } else { 0 };
    let fate = prop_oneof![
        6 => prop::collection::vec(delivery(), 1..=1),
        2 => prop::collection::vec(delivery(), min_copies..=3),
    ];
    let reset = if mode == Mode::Chaos {
        prop::bool::weighted(0.12).boxed()
    } else {
        Just(false).boxed()
    };
    let step = if mode == Mode::Clean {
        Just(0i64).boxed()
    } else {
        prop_oneof![12 => Just(0i64), 1 => -700i64..700, 1 => Just(-600i64), 1 => Just(86_400i64), 1 => Just(-86_400i64)].boxed()
    };
    (
        (prop::option::weighted(0.1, 0u64..20_000), step),
        0u64..500,
        reset,
        prop::array::uniform4(prop_oneof![2 => Just(0u64), 3 => 0u64..50, 1 => 0u64..5_000]),
        prop::array::uniform3(0u64..40),
        (0u8..8, 0u8..8),
        [fate.clone(), fate.clone(), fate],
    )
        .prop_map(
            |(
                (pause_ms, clock_step_s),
                jitter_ms,
                reset,
                totals_inc,
                tx_inc,
                (checked_out, checked_in),
                fates,
            )| {
                Cycle {
                    pause_ms,
                    jitter_ms,
                    reset,
                    clock_step_s,
                    totals_inc,
                    tx_inc,
                    checked_out,
                    checked_in,
                    fates,
                }
            },
        )
}

fn fleet() -> impl Strategy<Value = Fleet> {
    prop_oneof![Just(Mode::Clean), Just(Mode::Lossy), Just(Mode::Chaos)].prop_flat_map(|mode| {
        let proc_spec = (
            0..PROGRAMS.len(),
            0..TOKENS.len(),
            prop::sample::select(vec![1u64, 2, 5]),
            prop_oneof![Just(1u64), 1u64..2_000_000_000],
            0u64..10_000,
            prop::collection::vec(cycle(mode), 1..=25),
        )
            .prop_map(
                |(program, token, interval_s, clock_offset_s, start_ms, cycles)| ProcSpec {
                    program,
                    token,
                    interval_s,
                    clock_offset_s,
                    start_ms,
                    cycles,
                },
            );
        (
            Just(mode),
            prop::collection::vec(proc_spec, 1..=5),
            prop::collection::vec(
                (
                    prop_oneof![
                        any::<u16>().prop_map(Tick::Anywhere),
                        (any::<u16>(), any::<bool>()).prop_map(|(n, b)| Tick::AtExpiry(n, b)),
                    ],
                    any::<bool>(),
                ),
                0..30,
            ),
        )
            .prop_map(|(mode, procs, ticks)| Fleet { mode, procs, ticks })
    })
}

/// One report as the client sent it.
#[derive(Clone, Debug)]
struct Sent {
    process: usize,
    kind: usize,
    cycle: usize,
    client_s: u64,
    record: SqlaRecord,
}

enum Event {
    Deliver { sent: usize, sweep_after: bool },
    Tick { sweep: bool },
}

/// The test's own account of one process, kept beside the store.
#[derive(Clone, Debug, Default)]
struct Oracle {
    /// Client time (collectd's units) each kind's next report is judged
    /// against, per kind: the last accepted one's, or just before a clock
    /// step's.
    stamps: [Option<u64>; 3],
    /// A pool report held until totals of its time confirm it.
    held_pool: Option<(u64, Pool)>,
    /// Receive time (ms) until which the process is live.
    live_until_ms: Option<u64>,
    pool: Option<Pool>,
    /// Per kind: the delivered report of the latest cycle.
    latest: [Option<(u64, usize)>; 3],
    /// What the accepted reports add up to by the README's rule (a total
    /// that grew adds the growth; totals that went down are stale and
    /// refused), with the last accepted totals.
    counted_totals: [u64; 4],
    last_totals: Option<[u64; 4]>,
    counted_tx: Option<[u64; 3]>,
    last_tx: Option<[u64; 3]>,
}

/// `last` becomes `new`; `counted` grows as the README says a counter does.
fn count<const N: usize>(counted: &mut [u64; N], last: &mut Option<[u64; N]>, new: [u64; N]) {
    let before = last.unwrap_or([0; N]);
    for i in 0..N {
        counted[i] += new[i] - before[i];
    }
    *last = Some(new);
}

/// What the README's rules make of a report, given what the process's
/// last accepted ones were.
#[derive(Debug, PartialEq)]
enum Verdict {
    Apply,
    /// A cumulative report whose timestamp went back: a clock step.
    Step,
    /// A pool report kept until totals of its time confirm it.
    Hold,
    Refuse(ApplyError),
}

/// Counts against the last accepted ones: lower ones are stale; the same
/// timestamp and counts a duplicate; a timestamp gone back with counts that
/// grew, or gone back by more than an interval, a clock step.
fn judge_counts<const N: usize>(
    last: Option<(u64, [u64; N])>,
    time: u64,
    new: &[u64; N],
    step: u64,
) -> Verdict {
    let Some((t, old)) = last else {
        return Verdict::Apply;
    };
    if (0..N).any(|i| new[i] < old[i]) {
        return Verdict::Refuse(ApplyError::Stale);
    }
    let grew = *new != old;
    if time > t || (time == t && grew) {
        Verdict::Apply
    } else if time < t && (grew || t - time > step) {
        Verdict::Step
    } else {
        Verdict::Refuse(ApplyError::OutOfOrder)
    }
}

impl Oracle {
    fn verdict(&self, kind: usize, time: u64, sample: &Sample, step: u64) -> Verdict {
        match sample {
            Sample::Pool(_) => match self.stamps[POOL] {
                Some(t) if time == t => Verdict::Refuse(ApplyError::OutOfOrder),
                Some(t) if time < t && t - time <= step => Verdict::Refuse(ApplyError::OutOfOrder),
                Some(t) if self.stamps[TOTALS].is_some_and(|tt| time < t || time > tt + step) => {
                    Verdict::Hold
                }
                _ => Verdict::Apply,
            },
            Sample::Cumulative(Cumulative::Totals(new)) => {
                judge_counts(self.stamps[TOTALS].zip(self.last_totals), time, new, step)
            }
            Sample::Cumulative(Cumulative::Transactions(new)) => {
                judge_counts(self.stamps[kind].zip(self.last_tx), time, new, step)
            }
            Sample::Relay(_) => unreachable!("no relay records here"),
        }
    }
}

/// Cumulative values of one process's true history, per cycle.
struct History {
    totals: Vec<[u64; 4]>,
    transactions: Vec<[u64; 3]>,
    /// Everything counted up to and including each cycle (resets included).
    work_totals: Vec<[u64; 4]>,
    work_transactions: Vec<[u64; 3]>,
}

fn history(spec: &ProcSpec) -> History {
    let mut h = History {
        totals: vec![],
        transactions: vec![],
        work_totals: vec![],
        work_transactions: vec![],
    };
    let (mut t, mut x, mut wt, mut wx) = ([0u64; 4], [0u64; 3], [0u64; 4], [0u64; 3]);
    for c in &spec.cycles {
        if c.reset {
            t = [0; 4];
            x = [0; 3];
        }
        for i in 0..4 {
            t[i] += c.totals_inc[i];
            wt[i] += c.totals_inc[i];
        }
        for i in 0..3 {
            x[i] += c.tx_inc[i];
            wx[i] += c.tx_inc[i];
        }
        h.totals.push(t);
        h.transactions.push(x);
        h.work_totals.push(wt);
        h.work_transactions.push(wx);
    }
    h
}

fn add<const N: usize>(sum: &mut [u64; N], v: &[u64; N]) {
    for i in 0..N {
        sum[i] += v[i];
    }
}

fn run_fleet(fleet: &Fleet) -> Result<(), TestCaseError> {
    // One (program, token) is one process: later duplicates of a key are dropped.
    let mut seen = HashSet::new();
    let procs: Vec<&ProcSpec> = fleet
        .procs
        .iter()
        .filter(|p| seen.insert((p.program, p.token)))
        .collect();
    let histories: Vec<History> = procs.iter().map(|p| history(p)).collect();
    // Resets and clock steps: the report latest by client time is not the
    // one with the largest totals.
    let any_reset = procs
        .iter()
        .any(|p| p.cycles.iter().any(|c| c.reset || c.clock_step_s != 0));

    // What the clients sent, and when the network hands each copy over.
    let mut sent = Vec::new();
    let mut timeline: Vec<(u64, usize, Event)> = Vec::new();
    for (pi, p) in procs.iter().enumerate() {
        let mut send_ms = p.start_ms;
        let mut stepped_s = 0i64;
        for (ci, c) in p.cycles.iter().enumerate() {
            stepped_s += c.clock_step_s;
            if ci > 0 {
                send_ms += p.interval_s * 1000 + c.jitter_ms;
            }
            if let Some(extra) = c.pause_ms {
                // Longer than the stale window: 3 intervals.
                send_ms += 3 * p.interval_s * 1000 + 1000 + extra;
            }
            // Sends are at least a second apart: client seconds increase
            // (unless the clock was stepped).
            let client_s =
                (CLIENT_EPOCH_S + p.clock_offset_s as i64 + (send_ms / 1000) as i64 + stepped_s)
                    .max(1) as u64;
            let h = &histories[pi];
            for kind in [POOL, TOTALS, TRANSACTIONS] {
                let sample = match kind {
                    POOL => Sample::Pool(Pool {
                        numpools: 1.0,
                        checkedout: f64::from(c.checked_out),
                        checkedin: f64::from(c.checked_in),
                        detached: 0.0,
                        connections: f64::from(c.checked_out) + f64::from(c.checked_in),
                    }),
                    TOTALS => Sample::Cumulative(Cumulative::Totals(h.totals[ci])),
                    _ => Sample::Cumulative(Cumulative::Transactions(h.transactions[ci])),
                };
                let record = SqlaRecord {
                    key: ProcessKey {
                        host: HOST.into(),
                        program: PROGRAMS[p.program].into(),
                        token: TOKENS[p.token].into(),
                    },
                    time: CdTime::from_secs(client_s),
                    interval: CdTime::from_secs(p.interval_s),
                    sample,
                };
                for copy in &c.fates[kind] {
                    let n = timeline.len();
                    timeline.push((
                        send_ms + copy.delay_ms,
                        n,
                        Event::Deliver {
                            sent: sent.len(),
                            sweep_after: copy.sweep_after,
                        },
                    ));
                }
                sent.push(Sent {
                    process: pi,
                    kind,
                    cycle: ci,
                    client_s,
                    record,
                });
            }
        }
    }
    let end_ms = timeline.iter().map(|(t, ..)| *t).max().unwrap_or(0) + 10_000;
    let deliveries: Vec<(u64, usize)> = timeline
        .iter()
        .filter_map(|(t, _, e)| match e {
            Event::Deliver { sent, .. } => Some((*t, *sent)),
            Event::Tick { .. } => None,
        })
        .collect();
    for &(tick, sweep) in &fleet.ticks {
        let at = match tick {
            Tick::Anywhere(f) => end_ms * u64::from(f) / u64::from(u16::MAX),
            Tick::AtExpiry(_, _) if deliveries.is_empty() => continue,
            Tick::AtExpiry(n, early) => {
                let (t, si) = deliveries[usize::from(n) % deliveries.len()];
                let window = 3 * procs[sent[si].process].interval_s * 1000;
                t + window - u64::from(early)
            }
        };
        let n = timeline.len();
        timeline.push((at, n, Event::Tick { sweep }));
    }
    timeline.push((end_ms, timeline.len(), Event::Tick { sweep: true }));
    timeline.sort_by_key(|(t, n, _)| (*t, *n));
    let freshness = Freshness::default();
    // Nothing is forgotten within the timeline, so every program stays.
    prop_assert!(Duration::from_millis(end_ms) < freshness.forget_after);

    let mut store = SqlaStore::new(freshness, Limits::default());
    let base = Instant::now();
    let base_unix = 1_795_289_844.0;
    let mut oracle = vec![Oracle::default(); procs.len()];
    let mut prev: Option<Snapshot> = None;

    for (now_ms, _, event) in &timeline {
        let now = Now {
            at: base + Duration::from_millis(*now_ms),
            unix: base_unix + *now_ms as f64 / 1000.0,
        };
        let sweep = match *event {
            Event::Deliver {
                sent: si,
                sweep_after,
            } => {
                let s = &sent[si];
                let o = &mut oracle[s.process];
                let time = s.record.time.0;
                let step = s.record.interval.0.max(CdTime::from_secs(1).0);
                let verdict = o.verdict(s.kind, time, &s.record.sample, step);
                let got = store.apply(&s.record, now);
                match verdict {
                    Verdict::Refuse(e) => {
                        prop_assert_eq!(got, Err(e), "report {:?} at {} ms", s, now_ms)
                    }
                    Verdict::Hold => {
                        prop_assert_eq!(got, Ok(()), "report {:?} at {} ms", s, now_ms);
                        if let Sample::Pool(pool) = s.record.sample {
                            o.held_pool = Some((time, pool));
                        }
                    }
                    Verdict::Apply | Verdict::Step => {
                        prop_assert_eq!(got, Ok(()), "report {:?} at {} ms", s, now_ms);
                        if verdict == Verdict::Step {
                            for t in o.stamps.iter_mut().flatten() {
                                *t = (*t).min(time - 1);
                            }
                        }
                        o.stamps[s.kind] = Some(time);
                        let window = freshness.window(s.record.interval);
                        o.live_until_ms = Some(now_ms + window.as_millis() as u64);
                        match s.record.sample {
                            Sample::Pool(pool) => o.pool = Some(pool),
                            Sample::Cumulative(Cumulative::Totals(t)) => {
                                count(&mut o.counted_totals, &mut o.last_totals, t);
                                // The totals are the process's clock.
                                match o.held_pool.take() {
                                    Some((ht, pool)) if ht == time => {
                                        o.pool = Some(pool);
                                        o.stamps[POOL] = Some(time);
                                    }
                                    other => o.held_pool = other,
                                }
                                if let Some(pt) = &mut o.stamps[POOL]
                                    && *pt > time
                                {
                                    *pt = time - 1;
                                }
                            }
                            Sample::Cumulative(Cumulative::Transactions(t)) => {
                                count(o.counted_tx.get_or_insert([0; 3]), &mut o.last_tx, t)
                            }
                            Sample::Relay(_) => unreachable!("no relay records here"),
                        }
                    }
                }
                // The latest cycle delivered (the latest client time too,
                // unless the clock was stepped).
                if o.latest[s.kind].is_none_or(|(_, c)| s.cycle > c) {
                    o.latest[s.kind] = Some((s.client_s, s.cycle));
                }
                sweep_after
            }
            Event::Tick { sweep } => sweep,
        };
        if sweep {
            let before = store.snapshot(now.at);
            store.sweep(now.at);
            let after = store.snapshot(now.at);
            prop_assert_eq!(
                &before.programs,
                &after.programs,
                "a sweep changed the scrape"
            );
        }
        let snap = store.snapshot(now.at);
        check_snapshot(
            &snap,
            prev.as_ref(),
            &procs,
            &histories,
            &oracle,
            *now_ms,
            any_reset,
        )?;
        prev = Some(snap);
    }
    if fleet.mode == Mode::Clean {
        // Everything arrived: the counters are the clients' final totals.
        let snap = prev.expect("at least one scrape");
        for (gi, name) in PROGRAMS.iter().enumerate() {
            let mut want = [0u64; 4];
            for (pi, p) in procs.iter().enumerate() {
                if p.program == gi {
                    add(&mut want, histories[pi].totals.last().expect("one cycle"));
                }
            }
            if let Some(p) = snap.programs.iter().find(|p| &*p.program == *name) {
                prop_assert_eq!(p.totals, want);
            }
        }
    }
    Ok(())
}

fn check_snapshot(
    snap: &Snapshot,
    prev: Option<&Snapshot>,
    procs: &[&ProcSpec],
    histories: &[History],
    oracle: &[Oracle],
    now_ms: u64,
    any_reset: bool,
) -> Result<(), TestCaseError> {
    for (gi, name) in PROGRAMS.iter().enumerate() {
        let members: Vec<usize> = (0..procs.len())
            .filter(|&i| procs[i].program == gi)
            .collect();
        let reported = members.iter().any(|&i| oracle[i].live_until_ms.is_some());
        let got = snap.programs.iter().find(|p| &*p.program == *name);
        let Some(got) = got else {
            prop_assert!(
                !reported,
                "program {} with accepted reports is missing",
                name
            );
            continue;
        };
        prop_assert!(
            reported,
            "program {} without accepted reports is exported",
            name
        );
        prop_assert_eq!(&*got.host, HOST);

        // Counters never go backwards.
        if let Some(before) =
            prev.and_then(|s| s.programs.iter().find(|p| p.program == got.program))
        {
            for i in 0..4 {
                prop_assert!(
                    got.totals[i] >= before.totals[i],
                    "{} totals[{}] went from {} to {} at {} ms",
                    name,
                    i,
                    before.totals[i],
                    got.totals[i],
                    now_ms
                );
            }
            if let Some(b) = before.transactions {
                let Some(g) = got.transactions else {
                    return Err(TestCaseError::fail(format!(
                        "{name} transactions disappeared"
                    )));
                };
                for i in 0..3 {
                    prop_assert!(
                        g[i] >= b[i],
                        "{} transactions[{}] went from {} to {}",
                        name,
                        i,
                        b[i],
                        g[i]
                    );
                }
            }
        }

        // Counters from the delivered history.
        let mut latest_totals = [0u64; 4];
        let mut work_totals = [0u64; 4];
        let mut latest_tx: Option<[u64; 3]> = None;
        let mut work_tx = [0u64; 3];
        for &i in &members {
            let h = &histories[i];
            if let Some((_, c)) = oracle[i].latest[TOTALS] {
                add(&mut latest_totals, &h.totals[c]);
                add(&mut work_totals, &h.work_totals[c]);
            }
            if let Some((_, c)) = oracle[i].latest[TRANSACTIONS] {
                add(latest_tx.get_or_insert([0; 3]), &h.transactions[c]);
                add(&mut work_tx, &h.work_transactions[c]);
            }
        }
        prop_assert_eq!(got.transactions.is_some(), latest_tx.is_some());
        // Exact, by the rule over the reports the store must have accepted.
        let mut counted = [0u64; 4];
        let mut counted_tx: Option<[u64; 3]> = None;
        for &i in &members {
            add(&mut counted, &oracle[i].counted_totals);
            if let Some(c) = &oracle[i].counted_tx {
                add(counted_tx.get_or_insert([0; 3]), c);
            }
        }
        prop_assert_eq!(got.totals, counted, "{} at {} ms", name, now_ms);
        prop_assert_eq!(got.transactions, counted_tx, "{} at {} ms", name, now_ms);
        if !any_reset {
            // Exact: each process's largest delivered total, summed.
            prop_assert_eq!(got.totals, latest_totals, "{} at {} ms", name, now_ms);
            prop_assert_eq!(got.transactions, latest_tx, "{} at {} ms", name, now_ms);
        } else {
            // A client that resets its totals within one token sends stale
            // reports from then on: never more than the clients counted.
            for (i, (g, w)) in got.totals.iter().zip(work_totals).enumerate() {
                prop_assert!(*g <= w, "{} totals[{}] = {} above {}", name, i, g, w);
            }
            if let Some(g) = got.transactions {
                prop_assert!(g.iter().zip(work_tx).all(|(g, w)| *g <= w));
            }
        }

        // Gauges: the processes whose last accepted report is within its window.
        let live: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| oracle[i].live_until_ms.is_some_and(|u| u > now_ms))
            .collect();
        prop_assert_eq!(
            got.processes,
            live.len() as u64,
            "{} processes at {} ms",
            name,
            now_ms
        );
        let mut pool = Pool::default();
        for &i in &live {
            if let Some(p) = &oracle[i].pool {
                pool.add(p);
            }
        }
        prop_assert_eq!(got.pool, pool, "{} pool at {} ms", name, now_ms);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Duplicates, reordering, late arrivals, losses, deaths and reappearances:
    /// counters never decrease, equal the delivered totals when no client
    /// reset, and gauges cover exactly the live processes.
    #[test]
    fn sqla_store_counters_never_decrease(fleet in fleet()) {
        run_fleet(&fleet)?;
    }
}

// ---------------------------------------------------------------------------
// 3. Generic store and the text exposition
// ---------------------------------------------------------------------------

const TYPES_DB: &str = "\
if_octets rx:DERIVE:0:U, tx:DERIVE:0:U
load shortterm:GAUGE:0:U, midterm:GAUGE:0:U, longterm:GAUGE:0:U
cpu value:DERIVE:0:U
b value:GAUGE:0:U, total:DERIVE:0:U
pair total:GAUGE:0:U, x_0:COUNTER:0:U
";

/// Names that sanitise alike, that equal other label names, that end in
/// `_total` or `_0` as other names' suffixes do.
fn name_part() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a-b",
        "a.b",
        "a_b",
        "a",
        "b",
        "b_total",
        "total",
        "b_0",
        "b-0",
        "cpu",
        "load",
        "if_octets",
        "pair",
        "value",
        "type",
        "instance",
        "9p",
        "__x",
        "sqlalchemy",
        "x:y",
    ])
}

fn instance_part() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "",
        "0",
        "a-b",
        "a_b",
        "total",
        "x\"y",
        "back\\slash",
        "new\nline",
        "ü",
        " ",
    ])
}

fn generic_list() -> impl Strategy<Value = (Identity, u64, Vec<Value>)> {
    (
        prop::sample::select(vec!["vm", "h-1", "h.1", "h_1", ""]),
        prop_oneof![9 => name_part(), 1 => Just("")],
        instance_part(),
        prop_oneof![9 => name_part(), 1 => Just("")],
        instance_part(),
        prop::sample::select(vec![0u64, 100, 101, 102]),
        prop::collection::vec(value(), 1..=3),
    )
        .prop_map(|(host, plugin, pi, t, ti, time, values)| {
            let id = Identity {
                host: host.into(),
                plugin: plugin.into(),
                plugin_instance: pi.into(),
                type_: t.into(),
                type_instance: ti.into(),
            };
            (id, time, values)
        })
}

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Label names and (unescaped) values, in order.
type LabelPairs = Vec<(String, String)>;

/// One sample line: name, labels and value.
fn parse_sample(line: &str) -> Result<(String, LabelPairs, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without =")?;
            let lname = &rest[..eq];
            if !valid_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in label value".into()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((lname.to_owned(), value));
            rest = &rest[close + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let number = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok((name.to_owned(), labels, number))
}

/// Checks a text exposition: unique HELP/TYPE per family, samples under
/// their family, unique (name, labels) — empty labels count as absent.
fn check_text(text: &str) -> Result<usize, String> {
    let mut helps = HashSet::new();
    let mut types = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default().to_owned();
            if !helps.insert(name.clone()) {
                return Err(format!("duplicate # HELP for {name}"));
            }
            current = Some(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or("TYPE without a type")?;
            if !matches!(kind, "gauge" | "counter") {
                return Err(format!("type {kind}"));
            }
            if !types.insert(name.to_owned()) || current.as_deref() != Some(name) {
                return Err(format!("TYPE line for {name} out of place"));
            }
        } else if line.starts_with('#') {
            return Err(format!("unexpected comment {line:?}"));
        } else {
            let (name, labels, _) = parse_sample(line).map_err(|e| format!("{e}: {line:?}"))?;
            if current.as_deref() != Some(&name) {
                return Err(format!("sample {name} outside its family"));
            }
            let mut names: Vec<_> = labels.iter().map(|(n, _)| n.clone()).collect();
            names.sort();
            let n = names.len();
            names.dedup();
            if names.len() != n {
                return Err(format!("repeated label name: {line:?}"));
            }
            let mut set: Vec<_> = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            set.sort();
            if !series.insert((name, set)) {
                return Err(format!("duplicate series: {line:?}"));
            }
        }
    }
    Ok(series.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever arrives, the generic snapshot has no duplicate series and no
    /// family with two types, and the full text scrape is valid.
    #[test]
    fn generic_scrape_is_always_valid(lists in prop::collection::vec(generic_list(), 1..=40)) {
        let mut types = TypesDb::default();
        types.parse(TYPES_DB, "types.db").expect("types.db parses");
        let freshness = Freshness::default();
        let mut generic = GenericStore::new(freshness, 1000);
        let mut sqla = SqlaStore::new(freshness, Limits::default());
        let base = Now { at: Instant::now(), unix: 1_795_289_844.0 };
        let mut now = base;
        for (i, (id, time, values)) in lists.iter().enumerate() {
            now = base.after(Duration::from_millis(10 * i as u64));
            let vl = ValueList {
                id: id.clone(),
                time: CdTime::from_secs(*time),
                interval: CdTime::from_secs(10),
                values: Values::new(values),
                protection: Protection::None,
            };
            match route(vl) {
                Ok(Record::Generic(vl)) => {
                    let _ = generic.apply(&vl, now);
                }
                Ok(Record::Sqla(r)) => {
                    let _ = sqla.apply(&r, now);
                }
                Err(_) => {}
            }
        }
        // One real SQLAlchemy program, so the scrape has those families too.
        let pool = SqlaRecord {
            key: ProcessKey { host: "vm".into(), program: "app".into(), token: "1:a".into() },
            time: CdTime::from_secs(100),
            interval: CdTime::from_secs(2),
            sample: Sample::Pool(Pool { numpools: 1.0, checkedout: 1.0, checkedin: 1.0, detached: 0.0, connections: 2.0 }),
        };
        let _ = sqla.apply(&pool, now);

        let snap = resolve(&generic.live(now.at), &types, "instance");
        let mut family_kinds: BTreeMap<String, Kind> = BTreeMap::new();
        let mut exposed: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
        for f in &snap.families {
            prop_assert!(valid_metric_name(&f.name), "family name {:?}", f.name);
            prop_assert!(f.label_names.windows(2).all(|w| w[0] < w[1]), "label names {:?}", f.label_names);
            prop_assert!(f.label_names.iter().all(|n| valid_label_name(n)), "label names {:?}", f.label_names);
            prop_assert!(!f.samples.is_empty());
            // The name a scraper sees: counters get `_total`.
            let sample_name = match f.kind {
                Kind::Counter => format!("{}_total", f.name),
                Kind::Gauge => f.name.clone(),
            };
            prop_assert!(family_kinds.insert(f.name.clone(), f.kind).is_none(), "family {} twice", f.name);
            for sample in &f.samples {
                let values = snap.values(f, sample);
                prop_assert_eq!(values.len(), f.label_names.len());
                let set: Vec<(String, String)> = f
                    .label_names
                    .iter()
                    .cloned()
                    .zip(values.iter().map(|v| v.to_string()))
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                prop_assert!(exposed.insert((sample_name.clone(), set.clone())),
                    "duplicate sample {} {:?}", sample_name, set);
            }
        }
        // A family and another's `_total` name must not meet in the text format.
        for (name, kind) in &family_kinds {
            if *kind == Kind::Counter {
                prop_assert!(family_kinds.get(&format!("{name}_total")) != Some(&Kind::Gauge),
                    "counter {} and gauge {}_total expose the same name", name, name);
            }
        }

        let scrape = Scrape {
            sqla: sqla.snapshot(now.at),
            generic: snap,
            telemetry: Telemetry::default().snapshot(),
            ..Scrape::default()
        };
        let (text, _) = encode(scrape.clone(), Format::Text).expect("text encodes");
        if let Err(e) = check_text(&text) {
            return Err(TestCaseError::fail(format!("{e}\n{text}")));
        }
        let (om, _) = encode(scrape, Format::OpenMetrics).expect("OpenMetrics encodes");
        prop_assert!(om.ends_with("# EOF\n"));
    }
}
