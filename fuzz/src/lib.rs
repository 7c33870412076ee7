//! What the fuzz targets share: the auth-file keys of the test captures and a
//! small exporter pipeline (route → stores → scrape in both formats) that
//! checks what the real server would serve, without sockets or threads.

use sqlalchemy_collectd_exporter::capacity::Capacity;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Keys, Packet, ValueList, decode};
use sqlalchemy_collectd_exporter::exposition::families::{self, Scrape};
use sqlalchemy_collectd_exporter::exposition::{openmetrics, text};
use sqlalchemy_collectd_exporter::route::{Record, route};
use sqlalchemy_collectd_exporter::store::collectd::GenericStore;
use sqlalchemy_collectd_exporter::store::sqlalchemy::{Limits, SqlaStore};
use sqlalchemy_collectd_exporter::store::{Freshness, Now};
use sqlalchemy_collectd_exporter::telemetry::Telemetry;
use sqlalchemy_collectd_exporter::typesdb::TypesDb;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The auth file of tests/testdata/08_collectd_sign and 09_collectd_encrypt.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        Keys::parse(&format!("{USER}: {PASSWORD}\n"), "fuzz-auth").expect("auth file parses")
    })
}

/// A config file whose rules match some of what the fuzzer sends, so that
/// capacities and database sums are part of the scrape.
pub fn capacity() -> &'static Capacity {
    static CAPACITY: OnceLock<Capacity> = OnceLock::new();
    CAPACITY.get_or_init(|| {
        Capacity::parse(
            "pools:\n  - programs: ['a*', '?']\n    hosts: ['*']\n    pool_size: 5\n    max_overflow: 10\n  \
             - programs: ['*']\n    pool_size: 1\n    max_overflow: -1\n\
             databases:\n  - name: main\n    max_connections: 100\n    programs: ['*']\n",
            "fuzz.yml",
        )
        .expect("config parses")
    })
}

fn typesdb() -> &'static TypesDb {
    static TYPES: OnceLock<TypesDb> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mut db = TypesDb::default();
        db.parse(
            "load shortterm:GAUGE:0:5000, midterm:GAUGE:0:5000, longterm:GAUGE:0:5000\n\
             if_octets rx:DERIVE:0:U, tx:DERIVE:0:U\n\
             memory value:GAUGE:0:281474976710656\n\
             a b:COUNTER:0:U, value:ABSOLUTE:0:U, b_:DERIVE:U:U\n",
            "fuzz-types.db",
        )
        .expect("types.db parses");
        db
    })
}

/// A decoded identity string is what the decoder promised: UTF-8 (so
/// `as_str` never falls back) and shorter than collectd's limit.
pub fn check_value_list(vl: &ValueList) {
    for s in [
        &vl.id.host,
        &vl.id.plugin,
        &vl.id.plugin_instance,
        &vl.id.type_,
        &vl.id.type_instance,
    ] {
        assert_eq!(s.as_str().len(), s.as_bytes().len(), "identity not UTF-8");
        assert!(
            s.as_bytes().len() < 128,
            "identity of {} bytes",
            s.as_bytes().len()
        );
        assert!(!s.as_bytes().contains(&0), "identity with NUL");
    }
    assert!(!vl.values.is_empty() && vl.values.len() <= usize::from(u16::MAX));
    assert_eq!(vl.values.iter().count(), vl.values.len());
}

/// Every value list and notification of a packet decoded without keys,
/// written again as collectd writes them, decodes to the same thing.
pub fn check_round_trip(packet: &Packet) {
    let mut e = Encoder::new();
    for vl in &packet.value_lists {
        let values: Vec<_> = vl.values.iter().collect();
        e.collectd_value_list(&vl.id, vl.time, vl.interval, &values);
    }
    if e.is_empty() {
        return;
    }
    let again = decode(&e.finish()).expect("re-encoded value lists decode");
    assert_eq!(again.value_lists.len(), packet.value_lists.len());
    for (a, b) in again.value_lists.iter().zip(&packet.value_lists) {
        assert_eq!(a.id, b.id);
        assert_eq!((a.time, a.interval), (b.time, b.interval));
        assert_eq!(a.values, b.values);
    }
}

/// The exporter's stores with small limits (so the limits are reached), fed
/// value lists the way ingest feeds them, and scraped as `/metrics` would be.
pub struct Pipeline {
    sqla: SqlaStore,
    generic: GenericStore,
    telemetry: Telemetry,
    now: Now,
    /// Value lists the stores accepted.
    stored: u64,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    pub fn new() -> Self {
        let freshness = Freshness::default();
        Pipeline {
            sqla: SqlaStore::new(
                freshness,
                Limits {
                    max_processes: 16,
                    max_programs: 8,
                },
            ),
            generic: GenericStore::new(freshness, 64),
            telemetry: Telemetry::default(),
            now: Now {
                at: Instant::now(),
                unix: 1_795_289_844.5,
            },
            stored: 0,
        }
    }

    /// Routes and applies value lists as `ingest` does, one receive time per call.
    pub fn ingest(&mut self, value_lists: Vec<ValueList>) {
        self.telemetry
            .value_lists_received(value_lists.len() as u64);
        let mut accepted = 0;
        for vl in value_lists {
            check_value_list(&vl);
            let result = match route(vl) {
                Ok(Record::Sqla(r)) => self.sqla.apply(&r, self.now),
                Ok(Record::Generic(vl)) => self.generic.apply(&vl, self.now),
                Err(e) => {
                    self.telemetry.value_list_rejected(e.reason());
                    continue;
                }
            };
            match result {
                Ok(()) => accepted += 1,
                Err(e) => self.telemetry.value_list_rejected(e.reason()),
            }
        }
        self.telemetry.value_lists_accepted(accepted);
        self.stored += accepted;
        self.now = self.now.after(Duration::from_millis(1500));
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Scrapes now in both formats (when anything was stored: the scrape of
    /// empty stores never changes), then checks that everything is forgotten
    /// once the longest interval and `forget_after` have passed.
    pub fn scrape_and_check(&mut self) {
        if self.stored > 0 {
            self.check_scrape(self.now.at);
        }
        let later = self.now.after(Duration::from_secs(4 * 24 * 3600)).at;
        self.sqla.sweep(later);
        self.generic.sweep(later);
        let sqla = self.sqla.snapshot(later);
        assert!(sqla.programs.is_empty(), "programs never forgotten");
        assert_eq!(sqla.tracked_processes, 0, "processes never forgotten");
        let generic = self.generic.snapshot(later, typesdb(), "instance");
        assert!(generic.families.is_empty() && generic.value_lists == 0);
    }

    fn check_scrape(&self, at: Instant) {
        let mut sqla = self.sqla.snapshot(at);
        let databases = capacity().apply(&mut sqla.programs);
        let scrape = Scrape {
            sqla,
            databases,
            generic: self.generic.snapshot(at, typesdb(), "instance"),
            telemetry: self.telemetry.snapshot(),
            ..Scrape::default()
        };
        let mut text = String::new();
        families::write(&scrape, &mut text::TextWriter::new(&mut text)).expect("text encodes");
        check_exposition(&text, "text");
        let mut om = String::new();
        openmetrics::encode(Arc::new(scrape), &mut om).expect("OpenMetrics encodes");
        assert!(om.ends_with("# EOF\n"), "OpenMetrics without # EOF");
        check_exposition(&om, "OpenMetrics");
    }
}

/// Cheap validity checks of an exposition: something was written, every
/// family is declared once, and no line was broken by a label value.
fn check_exposition(out: &str, format: &str) {
    assert!(!out.is_empty(), "{format}: empty scrape");
    let mut help = HashSet::new();
    let mut types = HashSet::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(help.insert(name), "{format}: HELP of {name} twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(types.insert(name), "{format}: TYPE of {name} twice");
        } else if !line.starts_with('#') {
            // A sample: a metric name first, then labels or a space.
            let first = line.chars().next().unwrap_or(' ');
            assert!(
                first.is_ascii_alphabetic() || first == '_' || first == ':',
                "{format}: not a sample line: {line:?}"
            );
        }
    }
}
