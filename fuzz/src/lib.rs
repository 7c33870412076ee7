//! What the fuzz targets share: the auth-file keys of the test captures and
//! the exporter's own pipeline — the production ingest `Sink` (fast path,
//! decode, security level, route, apply, accounting) and the production
//! scrape assembly (`snapshot::Sources`) encoded in both formats — checked
//! for what the real server would serve, without sockets or threads.

use bytes::Bytes;
use sqlalchemy_collectd_exporter::collectd::typesdb::TypesDb;
use sqlalchemy_collectd_exporter::collectd::{
    Encoder, Keys, Packet, SecurityLevel, ValueList, decode,
};
use sqlalchemy_collectd_exporter::config::file::Capacity;
use sqlalchemy_collectd_exporter::exposition::families::BuildInfo;
use sqlalchemy_collectd_exporter::exposition::{Format, encode};
use sqlalchemy_collectd_exporter::ingest::{Allow, Batch, Sink};
use sqlalchemy_collectd_exporter::snapshot::Sources;
use sqlalchemy_collectd_exporter::state::{Current, Reloader};
use sqlalchemy_collectd_exporter::store::sqlalchemy::Limits;
use sqlalchemy_collectd_exporter::store::{Freshness, Now, Stores};
use sqlalchemy_collectd_exporter::telemetry::{Listener, Telemetry};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The auth file of tests/testdata/08_collectd_sign and 09_collectd_encrypt.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(new_keys)
}

fn new_keys() -> Keys {
    Keys::parse(&format!("{USER}: {PASSWORD}\n"), "fuzz-auth").expect("auth file parses")
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

/// The exporter's production pipeline with small limits (so the limits are
/// reached): the ingest `Sink` fed as a receive thread feeds it, and the
/// scrape's `Sources` encoded as `/metrics` would be.
pub struct Pipeline {
    sink: Sink,
    sources: Sources,
    listener: Arc<Listener>,
    now: Now,
    /// Datagrams handed to the sink.
    datagrams: u64,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

const FROM: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 25826);

impl Pipeline {
    /// Without keys: signed data is accepted unverified, encrypted refused.
    pub fn new() -> Self {
        Self::with_keys(None)
    }

    /// With the test captures' auth file.
    pub fn with_auth_file() -> Self {
        Self::with_keys(Some(new_keys()))
    }

    fn with_keys(keys: Option<Keys>) -> Self {
        let freshness = Freshness::default();
        let limits = Limits {
            max_processes: 16,
            max_programs: 8,
        };
        let stores = Arc::new(Stores::new(freshness, limits, 64));
        let telemetry = Arc::new(Telemetry::default());
        let sink = Sink::new(
            stores.clone(),
            telemetry.clone(),
            Arc::new(Current::new(keys)),
            Allow::default(),
            SecurityLevel::None,
        );
        let unix = 1_795_289_844.5;
        let sources = Sources {
            stores,
            telemetry,
            capacity: Arc::new(Current::new(capacity().clone())),
            reloader: Arc::new(Reloader::new(unix)),
            typesdb: Arc::new(typesdb().clone()),
            host_label: "instance".into(),
            // The production scrape with every family, the OpenTelemetry
            // ones included.
            otel_names: true,
            build: BuildInfo {
                version: "0.0.0",
                revision: "fuzz",
                start_time_unix: unix,
            },
        };
        let listener = sources.telemetry.add_listener(Listener::new(FROM, 0, None));
        Pipeline {
            sink,
            sources,
            listener,
            now: Now {
                at: Instant::now(),
                unix,
            },
            datagrams: 0,
        }
    }

    /// One datagram, handed to the sink as a receive thread hands it on
    /// (the client's shape on the fast path, anything else decoded), and
    /// applied as one batch; one receive time per call.
    pub fn datagram(&mut self, datagram: &[u8]) {
        let buffer = Bytes::copy_from_slice(datagram);
        let keys = self.sink.keys();
        let mut batch = Batch::new();
        self.sink.datagram(
            &buffer,
            0..buffer.len(),
            FROM,
            keys.as_ref().as_ref(),
            &self.listener,
            &mut batch,
        );
        self.sink.apply_at(&mut batch, self.now);
        self.datagrams += 1;
        self.now = self.now.after(Duration::from_millis(1500));
    }

    /// Value lists as the write_http push hands them on; one receive time
    /// per call.
    pub fn ingest(&mut self, value_lists: Vec<ValueList>) {
        for vl in &value_lists {
            check_value_list(vl);
        }
        self.sink
            .value_lists_at(value_lists, "fuzz", Default::default(), self.now);
        self.now = self.now.after(Duration::from_millis(1500));
    }

    pub fn telemetry(&self) -> &Telemetry {
        self.sink.telemetry()
    }

    /// Scrapes now in both formats, checks the counters' accounting, then
    /// checks that everything is forgotten once the longest interval and
    /// `forget_after` have passed.
    pub fn scrape_and_check(&mut self) {
        let t = self.telemetry().snapshot();
        let rejected: u64 = t.value_lists_rejected.iter().map(|(_, n)| n).sum();
        assert_eq!(
            t.value_lists_received,
            t.value_lists_accepted + rejected,
            "every value list received is accepted or rejected by a reason"
        );
        let counted: u64 = t.listeners.iter().map(|l| l.datagrams).sum();
        assert_eq!(
            counted, self.datagrams,
            "every datagram counted on its listener"
        );
        if t.value_lists_accepted > 0 {
            self.check_scrape(self.now.at);
        }
        let later = self.now.after(Duration::from_secs(4 * 24 * 3600)).at;
        self.sources.stores.sweep(later);
        let scrape = self.sources.scrape(later);
        assert!(scrape.sqla.programs.is_empty(), "programs never forgotten");
        assert_eq!(
            scrape.sqla.tracked_processes, 0,
            "processes never forgotten"
        );
        assert!(scrape.generic.families.is_empty() && scrape.generic.value_lists == 0);
    }

    fn check_scrape(&self, at: Instant) {
        let scrape = self.sources.scrape(at);
        let (text, _) = encode(scrape.clone(), Format::Text).expect("text encodes");
        check_exposition(&text, "text");
        let (om, _) = encode(scrape, Format::OpenMetrics).expect("OpenMetrics encodes");
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
