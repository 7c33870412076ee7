//! The family table: every metric the exporter serves, declared once (name,
//! help, type), and the one function that walks a scrape snapshot through it.
//! Both output formats implement [`FamilyWriter`], so they cannot disagree on
//! what is exported. Help texts are static: nothing from a packet goes there.

use super::generic::GenericSnapshot;
use super::text::render_labels;
use crate::config::file::DatabaseSnapshot;
use crate::state::{ConfigFile, ReloadStatus};
use crate::store::sqlalchemy::{ProgramSnapshot, Snapshot as SqlaSnapshot};
use crate::telemetry::{ListenerSnapshot, TelemetrySnapshot};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Declared without `_total`; each encoder adds it.
    Counter,
}

#[derive(Clone, Copy, Debug)]
pub struct Family<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    F64(f64),
    U64(u64),
}

pub type Labels<'a> = [(&'a str, &'a str)];

/// Receives the samples of one family.
pub trait SampleWriter {
    fn sample(&mut self, labels: &Labels<'_>, value: Number) -> fmt::Result;

    /// A sample whose label set is already in the text format's words
    /// (`crate::exposition::text::render_labels`): a label set that many
    /// families repeat is written once per scrape and copied into each line.
    /// Only called on the samples of a [`FamilyWriter`] whose
    /// [`renders_labels`](FamilyWriter::renders_labels) is true; any other
    /// writer refuses it.
    fn sample_rendered(&mut self, labels: &str, value: Number) -> fmt::Result {
        let _ = (labels, value);
        Err(fmt::Error)
    }
}

/// An output format.
pub trait FamilyWriter {
    /// Writes the family's descriptor once, then lets `samples` write its
    /// samples. Only called for families with at least one sample.
    fn family(
        &mut self,
        family: &Family<'_>,
        samples: &mut dyn FnMut(&mut dyn SampleWriter) -> fmt::Result,
    ) -> fmt::Result;

    /// Whether its samples take label sets rendered in the text format
    /// ([`SampleWriter::sample_rendered`]); the text writer's do.
    fn renders_labels(&self) -> bool {
        false
    }
}

/// Everything one scrape encodes, taken under the locks and encoded after.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub sqla: SqlaSnapshot,
    pub databases: Vec<DatabaseSnapshot>,
    /// The last reload of each file: the config file's always (a reload
    /// without one succeeds), the others' where they are configured.
    pub reloads: Vec<(ConfigFile, ReloadStatus)>,
    pub generic: GenericSnapshot,
    pub telemetry: TelemetrySnapshot,
    pub build: BuildInfo,
    /// `--metrics.otel-names`: the OpenTelemetry families ([`OTEL`]) too.
    pub otel: bool,
}

#[derive(Clone, Debug, Default)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub start_time_unix: f64,
}

const fn gauge(name: &'static str, help: &'static str) -> Family<'static> {
    Family {
        name,
        help,
        kind: Kind::Gauge,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Family<'static> {
    Family {
        name,
        help,
        kind: Kind::Counter,
    }
}

type Field = fn(&ProgramSnapshot) -> Option<Number>;

/// The SQLAlchemy families, labelled `host` and `program`, in output order.
pub const SQLALCHEMY: &[(Family, Field)] = &[
    (
        gauge(
            "sqlalchemy_processes",
            "Live processes reporting for this host and program.",
        ),
        |p| Some(Number::U64(p.processes)),
    ),
    (
        gauge(
            "sqlalchemy_pools",
            "Connection pools (Engines) in the live processes.",
        ),
        |p| Some(Number::F64(p.pool.numpools)),
    ),
    (
        gauge(
            "sqlalchemy_connections",
            "Open DBAPI connections in the live processes.",
        ),
        |p| Some(Number::F64(p.pool.connections)),
    ),
    (
        gauge(
            "sqlalchemy_connections_checked_out",
            "Connections checked out of their pool, in use by the application.",
        ),
        |p| Some(Number::F64(p.pool.checkedout)),
    ),
    (
        gauge(
            "sqlalchemy_connections_checked_in",
            "Idle connections checked in to their pool.",
        ),
        |p| Some(Number::F64(p.pool.checkedin)),
    ),
    (
        gauge(
            "sqlalchemy_connections_detached",
            "Connections detached from their pool.",
        ),
        |p| Some(Number::F64(p.pool.detached)),
    ),
    (
        gauge(
            "sqlalchemy_connections_max",
            "Configured capacity (pool_size + max_overflow) times the live pools; only where the config file sets one.",
        ),
        |p| p.connections_max.map(Number::F64),
    ),
    (
        gauge(
            "sqlalchemy_connections_peak",
            "Most open connections summed over the processes after any report within the peak window (--peak-window, 1m by default).",
        ),
        |p| Some(Number::F64(p.connections_peak)),
    ),
    (
        gauge(
            "sqlalchemy_connections_checked_out_peak",
            "Most checked-out connections summed over the processes after any report within the peak window (--peak-window, 1m by default).",
        ),
        |p| Some(Number::F64(p.checked_out_peak)),
    ),
    (
        counter(
            "sqlalchemy_checkouts",
            "Connection checkouts from the pools.",
        ),
        |p| Some(Number::U64(p.totals[0])),
    ),
    (
        counter("sqlalchemy_connects", "New DBAPI connections opened."),
        |p| Some(Number::U64(p.totals[2])),
    ),
    (
        counter("sqlalchemy_disconnects", "DBAPI connections closed."),
        |p| Some(Number::U64(p.totals[3])),
    ),
    (
        counter(
            "sqlalchemy_invalidations",
            "Connections invalidated, usually after a connectivity error.",
        ),
        |p| Some(Number::U64(p.totals[1])),
    ),
    (
        counter("sqlalchemy_commits", "Transactions committed."),
        |p| p.transactions.map(|t| Number::U64(t[0])),
    ),
    (
        counter("sqlalchemy_rollbacks", "Transactions rolled back."),
        |p| p.transactions.map(|t| Number::U64(t[1])),
    ),
    (
        counter("sqlalchemy_transactions", "Transactions begun."),
        |p| p.transactions.map(|t| Number::U64(t[2])),
    ),
    (
        gauge(
            "sqlalchemy_last_report_timestamp_seconds",
            "Receive time of the newest report for this host and program, in Unix seconds.",
        ),
        |p| Some(Number::F64(p.last_report_unix)),
    ),
    (
        gauge(
            "sqlalchemy_client_clock_offset_seconds",
            "Client timestamp minus receive time of the newest report for this host and program (clock skew plus network delay).",
        ),
        |p| p.clock_offset_seconds.map(Number::F64),
    ),
    (
        counter(
            "sqlalchemy_client_clock_steps",
            "Reports accepted although their client timestamp went back (the client's clock was stepped).",
        ),
        |p| Some(Number::U64(p.clock_steps)),
    ),
];

/// A sample of an OpenTelemetry family: its extra label (name and value, or
/// none) and its value, for one host/program; `None` where it has none.
type OtelField = fn(&ProgramSnapshot) -> Vec<(Option<(&'static str, &'static str)>, Number)>;

/// The OpenTelemetry semantic conventions' pool metrics in their Prometheus
/// translation (dots become underscores, units in braces are dropped,
/// UpDownCounters are gauges), written with `--metrics.otel-names` beside
/// the families above: a host/program is the pool
/// (`db_client_connection_pool_name` is the program, `host` stays). `used` is
/// checked out, `idle` checked in.
pub const OTEL: &[(Family, &str, OtelField)] = &[
    (
        gauge(
            "db_client_connection_count",
            "OpenTelemetry db.client.connection.count: connections of the pool by state (used: checked out, idle: checked in).",
        ),
        "db_client_connection_pool_name",
        |p| {
            vec![
                (
                    Some(("db_client_connection_state", "idle")),
                    Number::F64(p.pool.checkedin),
                ),
                (
                    Some(("db_client_connection_state", "used")),
                    Number::F64(p.pool.checkedout),
                ),
            ]
        },
    ),
    (
        gauge(
            "db_client_connection_max",
            "OpenTelemetry db.client.connection.max: the most connections the pool allows (from the config file).",
        ),
        "db_client_connection_pool_name",
        |p| {
            p.connections_max
                .map(|m| (None, Number::F64(m)))
                .into_iter()
                .collect()
        },
    ),
    (
        gauge(
            "db_client_connections_usage",
            "OpenTelemetry db.client.connections.usage (the older name, which opentelemetry-instrumentation-sqlalchemy emits): connections by state.",
        ),
        "pool_name",
        |p| {
            vec![
                (Some(("state", "idle")), Number::F64(p.pool.checkedin)),
                (Some(("state", "used")), Number::F64(p.pool.checkedout)),
            ]
        },
    ),
];

type DatabaseField = fn(&DatabaseSnapshot) -> Number;

/// The families of the databases the config file names, labelled `database`,
/// in output order; written when the config file names any.
pub const DATABASES: &[(Family, DatabaseField)] = &[
    (
        gauge(
            "sqlalchemy_database_connections",
            "Open connections of every host/program the config file maps to this database.",
        ),
        |db| Number::F64(db.connections),
    ),
    (
        gauge(
            "sqlalchemy_database_connections_max",
            "The database's max_connections, from the config file.",
        ),
        |db| Number::U64(db.max_connections),
    ),
];

macro_rules! own {
    ($kind:ident, $suffix:literal, $help:literal) => {
        $kind(concat!("sqlalchemy_collectd_exporter_", $suffix), $help)
    };
}

/// Writes the samples of one of the exporter's own families.
type Samples = fn(&Scrape, &mut dyn SampleWriter) -> fmt::Result;

/// The exporter's own families, in output order. A family that has no sample
/// in a scrape is left out: the listener families without a UDP listener,
/// kernel drops where the OS does not report them, the reload families of a
/// file missing from [`Scrape::reloads`] (the config file is always there,
/// the web config file and the auth file when they are configured). Counts
/// by reason carry every label value from start-up.
pub const OWN: &[(Family, Samples)] = &[
    (
        own!(
            gauge,
            "build_info",
            "Version and revision of the exporter; always 1."
        ),
        |s, w| {
            let b = &s.build;
            w.sample(
                &[("version", b.version), ("revision", b.revision)],
                Number::U64(1),
            )
        },
    ),
    (
        own!(
            gauge,
            "start_time_seconds",
            "Start time of the exporter, in Unix seconds."
        ),
        |s, w| w.sample(&[], Number::F64(s.build.start_time_unix)),
    ),
    (
        own!(
            counter,
            "datagrams_received",
            "Datagrams received, per UDP listener."
        ),
        |s, w| per_listener(s, w, |l| Some(Number::U64(l.datagrams))),
    ),
    (
        own!(
            counter,
            "datagram_bytes_received",
            "Bytes of datagrams received, per UDP listener."
        ),
        |s, w| per_listener(s, w, |l| Some(Number::U64(l.bytes))),
    ),
    (
        own!(
            gauge,
            "udp_receive_buffer_bytes",
            "Receive buffer size (SO_RCVBUF) granted by the kernel, per UDP listener."
        ),
        |s, w| per_listener(s, w, |l| Some(Number::U64(l.receive_buffer))),
    ),
    (
        own!(
            counter,
            "kernel_receive_drops",
            "Datagrams the kernel dropped because the listener's receive buffer was full."
        ),
        |s, w| per_listener(s, w, |l| l.kernel_drops.map(Number::U64)),
    ),
    (
        own!(
            counter,
            "datagrams_rejected",
            "Datagrams dropped whole, by reason."
        ),
        |s, w| by_label(w, "reason", &s.telemetry.datagrams_rejected),
    ),
    (
        own!(
            counter,
            "decode_errors",
            "Malformed datagrams, by what was wrong."
        ),
        |s, w| by_label(w, "error", &s.telemetry.decode_errors),
    ),
    (
        own!(
            counter,
            "value_lists_received",
            "Value lists decoded from accepted datagrams."
        ),
        |s, w| w.sample(&[], Number::U64(s.telemetry.value_lists_received)),
    ),
    (
        own!(counter, "value_lists_accepted", "Value lists stored."),
        |s, w| w.sample(&[], Number::U64(s.telemetry.value_lists_accepted)),
    ),
    (
        own!(
            counter,
            "value_lists_rejected",
            "Value lists that changed nothing, by reason."
        ),
        |s, w| by_label(w, "reason", &s.telemetry.value_lists_rejected),
    ),
    (
        own!(
            counter,
            "notifications_received",
            "collectd notifications received, by severity."
        ),
        |s, w| by_label(w, "severity", &s.telemetry.notifications),
    ),
    (
        own!(
            counter,
            "http_push_requests",
            "collectd write_http JSON requests, by status code."
        ),
        |s, w| by_label(w, "code", &s.telemetry.push_requests),
    ),
    (
        own!(gauge, "http_connections", "HTTP connections open."),
        |s, w| w.sample(&[], Number::U64(s.telemetry.http_connections)),
    ),
    (
        own!(
            counter,
            "http_connections_closed",
            "HTTP connections the exporter closed, by reason: idle_timeout (--web.idle-timeout), header_timeout (--web.read-header-timeout), evicted (the longest idle, for a new one at --web.max-connections), over_limit (a new one at the cap while every other had a request in flight)."
        ),
        |s, w| by_label(w, "reason", &s.telemetry.http_connections_closed),
    ),
    (
        own!(
            counter,
            "http_requests_refused",
            "HTTP requests answered 503 without being served, by reason: max_requests (--web.max-requests scrapes already in flight)."
        ),
        |s, w| by_label(w, "reason", &s.telemetry.http_requests_refused),
    ),
    (
        own!(gauge, "processes", "Live SQLAlchemy client processes."),
        |s, w| w.sample(&[], Number::U64(s.sqla.live_processes())),
    ),
    (
        own!(
            gauge,
            "processes_tracked",
            "SQLAlchemy client processes held in memory, dead ones kept for counter continuity included."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.tracked_processes as u64)),
    ),
    (
        own!(gauge, "programs", "Host/program pairs exported."),
        |s, w| w.sample(&[], Number::U64(s.sqla.programs.len() as u64)),
    ),
    (
        own!(gauge, "series", "SQLAlchemy series in this scrape."),
        |s, w| w.sample(&[], Number::U64(sqlalchemy_series(&s.sqla) as u64)),
    ),
    (
        own!(
            counter,
            "processes_expired",
            "Processes that stopped reporting and left the gauges."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.stats.processes_expired)),
    ),
    (
        own!(
            counter,
            "processes_forgotten",
            "Dead processes whose state was dropped."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.stats.processes_forgotten)),
    ),
    (
        own!(
            counter,
            "processes_evicted",
            "SQLAlchemy client processes that had reported once, dropped at --limits.max-processes to admit a new one (from the source holding most of them)."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.stats.processes_evicted)),
    ),
    (
        own!(
            counter,
            "processes_baselined",
            "SQLAlchemy client processes first seen in the start-up window after a start without saved state, counted from their first report."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.stats.processes_baselined)),
    ),
    (
        own!(
            counter,
            "programs_evicted",
            "Host/program pairs whose processes had each reported once, dropped at --limits.max-programs to admit new ones (the newest of the source that made most of them)."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.stats.programs_evicted)),
    ),
    (
        own!(
            counter,
            "programs_forgotten",
            "Host/program pairs removed after --forget-after with no live process."
        ),
        |s, w| w.sample(&[], Number::U64(s.sqla.stats.programs_forgotten)),
    ),
    (
        own!(
            gauge,
            "config_last_reload_successful",
            "Whether the last reload of the config file worked (1) or not (0)."
        ),
        |s, w| reload(s, w, ConfigFile::Config, successful),
    ),
    (
        own!(
            gauge,
            "config_last_reload_success_timestamp_seconds",
            "When the config file was last loaded successfully, in Unix seconds."
        ),
        |s, w| reload(s, w, ConfigFile::Config, success_time),
    ),
    (
        own!(
            gauge,
            "web_config_last_reload_successful",
            "Whether the last reload of the web config file worked (1) or not (0)."
        ),
        |s, w| reload(s, w, ConfigFile::WebConfig, successful),
    ),
    (
        own!(
            gauge,
            "web_config_last_reload_success_timestamp_seconds",
            "When the web config file was last loaded successfully, in Unix seconds."
        ),
        |s, w| reload(s, w, ConfigFile::WebConfig, success_time),
    ),
    (
        own!(
            gauge,
            "auth_file_last_reload_successful",
            "Whether the last reload of the auth file worked (1) or not (0)."
        ),
        |s, w| reload(s, w, ConfigFile::AuthFile, successful),
    ),
    (
        own!(
            gauge,
            "auth_file_last_reload_success_timestamp_seconds",
            "When the auth file was last loaded successfully, in Unix seconds."
        ),
        |s, w| reload(s, w, ConfigFile::AuthFile, success_time),
    ),
    (
        own!(
            gauge,
            "generic_value_lists",
            "Generic collectd value lists held."
        ),
        |s, w| w.sample(&[], Number::U64(s.generic.value_lists as u64)),
    ),
    (
        own!(
            counter,
            "generic_value_lists_expired",
            "Generic collectd value lists dropped after missing their intervals."
        ),
        |s, w| w.sample(&[], Number::U64(s.generic.expired)),
    ),
    (
        own!(
            counter,
            "generic_value_lists_evicted",
            "Generic collectd value lists seen once, dropped at --limits.max-series to admit a new one (from the source holding most of them)."
        ),
        |s, w| w.sample(&[], Number::U64(s.generic.evicted)),
    ),
    (
        own!(
            gauge,
            "generic_conflicts",
            "Generic samples left out of this scrape to keep it valid, by kind: duplicate_series (the last received is kept), type_mismatch (the family keeps its first type)."
        ),
        |s, w| {
            let c = &s.generic.conflicts;
            by_label(
                w,
                "kind",
                &[
                    ("duplicate_series", c.duplicate_series),
                    ("type_mismatch", c.type_mismatch),
                ],
            )
        },
    ),
];

/// Help of every generic collectd family: the name says the rest.
pub const GENERIC_HELP: &str = "collectd value list, named collectd_<plugin>_<type>[_<data source>] as collectd_exporter does.";

/// Every family name the exporter can serve but the generic ones, in output
/// order (for docs and tests): the names of the tables [`write`] walks.
pub fn all_names() -> Vec<&'static str> {
    SQLALCHEMY
        .iter()
        .map(|(f, _)| f.name)
        .chain(DATABASES.iter().map(|(f, _)| f.name))
        .chain(OTEL.iter().map(|(f, _, _)| f.name))
        .chain(OWN.iter().map(|(f, _)| f.name))
        .collect()
}

/// Number of SQLAlchemy samples a snapshot produces.
pub fn sqlalchemy_series(snap: &SqlaSnapshot) -> usize {
    snap.programs
        .iter()
        .map(|p| SQLALCHEMY.iter().filter(|(_, f)| f(p).is_some()).count())
        .sum()
}

/// Writes a whole scrape.
pub fn write(scrape: &Scrape, w: &mut dyn FamilyWriter) -> fmt::Result {
    let programs = &scrape.sqla.programs;
    // Every host/program is a line of each of the ~20 families: its label
    // set is rendered once here, not once a line.
    let rendered = w.renders_labels().then(|| PairLabels::new(programs));
    for (family, field) in SQLALCHEMY {
        if !programs.iter().any(|p| field(p).is_some()) {
            continue;
        }
        w.family(family, &mut |s| match &rendered {
            Some(labels) => {
                for (i, p) in programs.iter().enumerate() {
                    if let Some(v) = field(p) {
                        s.sample_rendered(labels.get(i), v)?;
                    }
                }
                Ok(())
            }
            None => {
                for p in programs {
                    if let Some(v) = field(p) {
                        s.sample(&pair_labels(p), v)?;
                    }
                }
                Ok(())
            }
        })?;
    }
    if !scrape.databases.is_empty() {
        let dbs = &scrape.databases;
        for (family, value) in DATABASES {
            w.family(family, &mut |s| {
                for db in dbs {
                    s.sample(&[("database", &db.name)], value(db))?;
                }
                Ok(())
            })?;
        }
    }
    if scrape.otel {
        write_otel(&scrape.sqla.programs, w)?;
    }
    write_generic(&scrape.generic, w)?;
    write_own(scrape, w)
}

/// The labels of a host/program's series in the [`SQLALCHEMY`] families.
fn pair_labels(p: &ProgramSnapshot) -> [(&str, &str); 2] {
    [("host", &p.host), ("program", &p.program)]
}

/// The label set of every host/program ([`pair_labels`]) rendered in the
/// text format, one after the other in one buffer.
struct PairLabels {
    text: String,
    /// Where the label set of program `i` ends in `text`.
    ends: Vec<usize>,
}

impl PairLabels {
    fn new(programs: &[ProgramSnapshot]) -> PairLabels {
        // `host="",program=""` and the names.
        let bytes = programs
            .iter()
            .map(|p| 18 + p.host.len() + p.program.len())
            .sum();
        let mut text = String::with_capacity(bytes);
        let mut ends = Vec::with_capacity(programs.len());
        for p in programs {
            render_labels(&mut text, &pair_labels(p));
            ends.push(text.len());
        }
        PairLabels { text, ends }
    }

    /// The rendered label set of program `i`.
    fn get(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            i => self.ends[i - 1],
        };
        &self.text[start..self.ends[i]]
    }
}

fn write_otel(programs: &[ProgramSnapshot], w: &mut dyn FamilyWriter) -> fmt::Result {
    for (family, pool_label, field) in OTEL {
        if !programs.iter().any(|p| !field(p).is_empty()) {
            continue;
        }
        w.family(family, &mut |s| {
            for p in programs {
                for (extra, v) in field(p) {
                    let base = [("host", &*p.host), (*pool_label, &*p.program)];
                    match extra {
                        Some(kv) => s.sample(&[base[0], base[1], kv], v)?,
                        None => s.sample(&base, v)?,
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn write_generic(g: &GenericSnapshot, w: &mut dyn FamilyWriter) -> fmt::Result {
    let rendered = w.renders_labels();
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(4);
    for f in &g.families {
        let family = Family {
            name: &f.name,
            help: GENERIC_HELP,
            kind: f.kind,
        };
        w.family(&family, &mut |s| {
            for sample in &f.samples {
                if rendered {
                    s.sample_rendered(g.rendered(sample), sample.number)?;
                } else {
                    labels.clear();
                    labels.extend(
                        f.label_names
                            .iter()
                            .map(String::as_str)
                            .zip(g.values(f, sample)),
                    );
                    s.sample(&labels, sample.number)?;
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Writes the [`OWN`] families that have a sample in this scrape.
fn write_own(scrape: &Scrape, w: &mut dyn FamilyWriter) -> fmt::Result {
    for (family, samples) in OWN {
        let mut count = Count(0);
        samples(scrape, &mut count)?;
        if count.0 > 0 {
            w.family(family, &mut |s| samples(scrape, s))?;
        }
    }
    Ok(())
}

/// Counts samples without writing them: whether a family has any.
struct Count(usize);

impl SampleWriter for Count {
    fn sample(&mut self, _: &Labels<'_>, _: Number) -> fmt::Result {
        self.0 += 1;
        Ok(())
    }
}

/// One sample per UDP listener that has a value, labelled `listener`.
fn per_listener(
    scrape: &Scrape,
    w: &mut dyn SampleWriter,
    value: fn(&ListenerSnapshot) -> Option<Number>,
) -> fmt::Result {
    for l in &scrape.telemetry.listeners {
        if let Some(v) = value(l) {
            w.sample(&[("listener", &l.label)], v)?;
        }
    }
    Ok(())
}

/// One sample per label value, in the order given.
fn by_label(w: &mut dyn SampleWriter, label: &str, counts: &[(&'static str, u64)]) -> fmt::Result {
    for (value, n) in counts {
        w.sample(&[(label, value)], Number::U64(*n))?;
    }
    Ok(())
}

/// The one sample of a reload family, where the scrape has the file's status.
fn reload(
    scrape: &Scrape,
    w: &mut dyn SampleWriter,
    file: ConfigFile,
    value: fn(&ReloadStatus) -> Number,
) -> fmt::Result {
    match scrape.reloads.iter().find(|(f, _)| *f == file) {
        Some((_, status)) => w.sample(&[], value(status)),
        None => Ok(()),
    }
}

fn successful(status: &ReloadStatus) -> Number {
    Number::U64(u64::from(status.successful))
}

fn success_time(status: &ReloadStatus) -> Number {
    Number::F64(status.success_unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::{DecodeErrorKind, SeverityKind};
    use crate::exposition::text::TextWriter;
    use crate::route::Pool;
    use crate::store::sqlalchemy::ProgramSnapshot;
    use crate::telemetry::{
        ConnectionClose, DatagramReject, PushOutcome, RequestRefusal, Telemetry, ValueListReject,
    };

    /// Records the names of the families written, in order.
    #[derive(Default)]
    struct Names(Vec<String>);

    impl FamilyWriter for Names {
        fn family(
            &mut self,
            family: &Family<'_>,
            samples: &mut dyn FnMut(&mut dyn SampleWriter) -> fmt::Result,
        ) -> fmt::Result {
            self.0.push(family.name.to_owned());
            samples(&mut Count(0))
        }
    }

    fn names(scrape: &Scrape) -> Vec<String> {
        let mut names = Names::default();
        write(scrape, &mut names).expect("writes");
        names.0
    }

    /// A scrape with everything that can be absent present: a program with
    /// a capacity and transactions, a database, a listener whose kernel
    /// drops are known, every reloadable file.
    fn full() -> Scrape {
        let mut telemetry = Telemetry::default().snapshot();
        telemetry.listeners.push(ListenerSnapshot {
            label: "0.0.0.0:25827".into(),
            datagrams: 1,
            bytes: 2,
            receive_buffer: 3,
            kernel_drops: Some(4),
        });
        let status = ReloadStatus {
            successful: true,
            success_unix: 1.0,
        };
        Scrape {
            sqla: SqlaSnapshot {
                programs: vec![ProgramSnapshot {
                    host: "h".into(),
                    program: "p".into(),
                    processes: 1,
                    pool: Pool::default(),
                    totals: [0; 4],
                    transactions: Some([0; 3]),
                    last_report_unix: 1.0,
                    interval_seconds: 10.0,
                    connections_max: Some(20.0),
                    clock_offset_seconds: Some(0.5),
                    clock_steps: 0,
                    checked_out_peak: 0.0,
                    connections_peak: 0.0,
                }],
                ..SqlaSnapshot::default()
            },
            databases: vec![DatabaseSnapshot {
                name: "db".into(),
                connections: 1.0,
                max_connections: 100,
            }],
            reloads: ConfigFile::ALL.iter().map(|f| (*f, status)).collect(),
            telemetry,
            otel: true,
            ..Scrape::default()
        }
    }

    /// No family is listed without being written, or written without being
    /// listed, and `all_names` is the output order.
    #[test]
    fn a_full_scrape_writes_every_listed_family_in_order() {
        assert_eq!(names(&full()), all_names());
    }

    #[test]
    fn family_names_are_distinct_and_own_ones_prefixed() {
        let all = all_names();
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        for (f, _) in OWN {
            assert!(
                f.name.starts_with("sqlalchemy_collectd_exporter_"),
                "{}",
                f.name
            );
        }
    }

    /// Every file a reload re-reads has its two families, written when the
    /// scrape has its status and only then.
    #[test]
    fn each_reloadable_file_has_its_two_families() {
        let mut none = full();
        none.reloads.clear();
        let without = names(&none);
        for file in ConfigFile::ALL {
            let mut one = full();
            one.reloads.retain(|(f, _)| *f == file);
            let extra: Vec<_> = names(&one)
                .into_iter()
                .filter(|n| !without.contains(n))
                .collect();
            assert_eq!(extra.len(), 2, "{file:?}: {extra:?}");
            assert!(extra[0].ends_with("_last_reload_successful"), "{extra:?}");
            assert!(
                extra[1].ends_with("_last_reload_success_timestamp_seconds"),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn without_listeners_or_kernel_drops_their_families_are_left_out() {
        let mut scrape = full();
        scrape.telemetry.listeners[0].kernel_drops = None;
        let listed = |scrape: &Scrape, name: &str| {
            names(scrape)
                .iter()
                .any(|n| *n == format!("sqlalchemy_collectd_exporter_{name}"))
        };
        assert!(!listed(&scrape, "kernel_receive_drops"));
        assert!(listed(&scrape, "datagrams_received"));
        scrape.telemetry.listeners.clear();
        for name in [
            "datagrams_received",
            "datagram_bytes_received",
            "udp_receive_buffer_bytes",
        ] {
            assert!(!listed(&scrape, name), "{name}");
        }
    }

    /// The text writer, made to take every sample's labels as pairs: the
    /// path of a writer that does not render label sets.
    struct Unrendered<'a>(TextWriter<'a>);

    impl FamilyWriter for Unrendered<'_> {
        fn family(
            &mut self,
            family: &Family<'_>,
            samples: &mut dyn FnMut(&mut dyn SampleWriter) -> fmt::Result,
        ) -> fmt::Result {
            self.0.family(family, samples)
        }
    }

    /// Label sets rendered once per scrape give the text that rendering
    /// each line's labels gives, escaping included.
    #[test]
    fn rendered_label_sets_give_the_text_of_labels_rendered_per_line() {
        let mut scrape = full();
        let first = scrape.sqla.programs[0].clone();
        for (host, program) in [
            ("", ""),
            ("a\"b", "c\\d"),
            ("line\nbreak", "ünïcode"),
            ("h", "p2"),
        ] {
            let mut p = first.clone();
            p.host = host.into();
            p.program = program.into();
            p.transactions = None;
            scrape.sqla.programs.push(p);
        }
        let mut rendered = String::new();
        write(&scrape, &mut TextWriter::new(&mut rendered)).expect("writes");
        let mut per_line = String::new();
        write(&scrape, &mut Unrendered(TextWriter::new(&mut per_line))).expect("writes");
        assert_eq!(rendered, per_line);
        assert!(
            rendered.contains("sqlalchemy_processes{host=\"a\\\"b\",program=\"c\\\\d\"} 1\n"),
            "{rendered}"
        );
        assert!(rendered.contains("sqlalchemy_commits_total{host=\"h\",program=\"p\"} 0\n"));
        assert!(!rendered.contains("sqlalchemy_commits_total{host=\"h\",program=\"p2\"}"));
    }

    /// A writer that does not render label sets refuses a rendered one.
    #[test]
    fn a_rendered_label_set_is_refused_by_default() {
        assert!(Count(0).sample_rendered("a=\"b\"", Number::U64(1)).is_err());
    }

    /// Every reason of every reason enum is a series of the first scrape, at 0.
    #[test]
    fn every_reason_is_in_the_first_scrape_at_zero() {
        let scrape = Scrape {
            telemetry: Telemetry::default().snapshot(),
            ..Scrape::default()
        };
        let mut text = String::new();
        write(&scrape, &mut TextWriter::new(&mut text)).expect("writes");
        let families: [(&str, &str, Vec<&str>); 7] = [
            (
                "datagrams_rejected",
                "reason",
                DatagramReject::ALL.map(DatagramReject::as_str).to_vec(),
            ),
            (
                "decode_errors",
                "error",
                DecodeErrorKind::ALL.map(DecodeErrorKind::as_str).to_vec(),
            ),
            (
                "value_lists_rejected",
                "reason",
                ValueListReject::ALL.map(ValueListReject::as_str).to_vec(),
            ),
            (
                "notifications_received",
                "severity",
                SeverityKind::ALL.map(SeverityKind::as_str).to_vec(),
            ),
            (
                "http_push_requests",
                "code",
                PushOutcome::ALL.map(PushOutcome::as_str).to_vec(),
            ),
            (
                "http_connections_closed",
                "reason",
                ConnectionClose::ALL.map(ConnectionClose::as_str).to_vec(),
            ),
            (
                "http_requests_refused",
                "reason",
                RequestRefusal::ALL.map(RequestRefusal::as_str).to_vec(),
            ),
        ];
        for (family, label, values) in families {
            for value in values {
                let line = format!(
                    "\nsqlalchemy_collectd_exporter_{family}_total{{{label}=\"{value}\"}} 0\n"
                );
                assert!(text.contains(&line), "{line:?} missing from\n{text}");
            }
        }
    }
}
