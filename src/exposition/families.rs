//! The family table: every metric the exporter serves, declared once (name,
//! help, type), and the one function that walks a scrape snapshot through it.
//! Both output formats implement [`FamilyWriter`], so they cannot disagree on
//! what is exported. Help texts are static: nothing from a packet goes there.

use super::generic::GenericSnapshot;
use crate::config::file::DatabaseSnapshot;
use crate::state::{ConfigFile, ReloadStatus};
use crate::store::sqlalchemy::{ProgramSnapshot, Snapshot as SqlaSnapshot};
use crate::telemetry::TelemetrySnapshot;
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
];

const P: &str = "sqlalchemy_collectd_exporter_";

macro_rules! own {
    ($kind:ident, $suffix:literal, $help:literal) => {
        $kind(concat!("sqlalchemy_collectd_exporter_", $suffix), $help)
    };
}

pub const BUILD_INFO: Family = own!(
    gauge,
    "build_info",
    "Version and revision of the exporter; always 1."
);
pub const START_TIME: Family = own!(
    gauge,
    "start_time_seconds",
    "Start time of the exporter, in Unix seconds."
);
pub const DATAGRAMS_RECEIVED: Family = own!(
    counter,
    "datagrams_received",
    "Datagrams received, per UDP listener."
);
pub const DATAGRAM_BYTES_RECEIVED: Family = own!(
    counter,
    "datagram_bytes_received",
    "Bytes of datagrams received, per UDP listener."
);
pub const KERNEL_DROPS: Family = own!(
    counter,
    "kernel_receive_drops",
    "Datagrams the kernel dropped because the listener's receive buffer was full."
);
pub const RECEIVE_BUFFER: Family = own!(
    gauge,
    "udp_receive_buffer_bytes",
    "Receive buffer size (SO_RCVBUF) granted by the kernel, per UDP listener."
);
pub const DATAGRAMS_REJECTED: Family = own!(
    counter,
    "datagrams_rejected",
    "Datagrams dropped whole, by reason."
);
pub const DECODE_ERRORS: Family = own!(
    counter,
    "decode_errors",
    "Malformed datagrams, by what was wrong."
);
pub const VALUE_LISTS_RECEIVED: Family = own!(
    counter,
    "value_lists_received",
    "Value lists decoded from accepted datagrams."
);
pub const VALUE_LISTS_ACCEPTED: Family =
    own!(counter, "value_lists_accepted", "Value lists stored.");
pub const VALUE_LISTS_REJECTED: Family = own!(
    counter,
    "value_lists_rejected",
    "Value lists that changed nothing, by reason."
);
pub const NOTIFICATIONS: Family = own!(
    counter,
    "notifications_received",
    "collectd notifications received, by severity."
);
pub const PROCESSES: Family = own!(gauge, "processes", "Live SQLAlchemy client processes.");
pub const PROCESSES_TRACKED: Family = own!(
    gauge,
    "processes_tracked",
    "SQLAlchemy client processes held in memory, dead ones kept for counter continuity included."
);
pub const PROGRAMS: Family = own!(gauge, "programs", "Host/program pairs exported.");
pub const SERIES: Family = own!(gauge, "series", "SQLAlchemy series in this scrape.");
pub const PROCESSES_EXPIRED: Family = own!(
    counter,
    "processes_expired",
    "Processes that stopped reporting and left the gauges."
);
pub const PROCESSES_FORGOTTEN: Family = own!(
    counter,
    "processes_forgotten",
    "Dead processes whose state was dropped."
);
pub const PROGRAMS_FORGOTTEN: Family = own!(
    counter,
    "programs_forgotten",
    "Host/program pairs removed after --forget-after with no live process."
);

pub const DATABASE_CONNECTIONS: Family = gauge(
    "sqlalchemy_database_connections",
    "Open connections of every host/program the config file maps to this database.",
);
pub const DATABASE_CONNECTIONS_MAX: Family = gauge(
    "sqlalchemy_database_connections_max",
    "The database's max_connections, from the config file.",
);
pub const CONFIG_RELOAD_SUCCESSFUL: Family = own!(
    gauge,
    "config_last_reload_successful",
    "Whether the last reload of the config file worked (1) or not (0)."
);
pub const CONFIG_RELOAD_TIME: Family = own!(
    gauge,
    "config_last_reload_success_timestamp_seconds",
    "When the config file was last loaded successfully, in Unix seconds."
);
pub const WEB_CONFIG_RELOAD_SUCCESSFUL: Family = own!(
    gauge,
    "web_config_last_reload_successful",
    "Whether the last reload of the web config file worked (1) or not (0)."
);
pub const WEB_CONFIG_RELOAD_TIME: Family = own!(
    gauge,
    "web_config_last_reload_success_timestamp_seconds",
    "When the web config file was last loaded successfully, in Unix seconds."
);
pub const AUTH_FILE_RELOAD_SUCCESSFUL: Family = own!(
    gauge,
    "auth_file_last_reload_successful",
    "Whether the last reload of the auth file worked (1) or not (0)."
);
pub const AUTH_FILE_RELOAD_TIME: Family = own!(
    gauge,
    "auth_file_last_reload_success_timestamp_seconds",
    "When the auth file was last loaded successfully, in Unix seconds."
);

/// The reload families of each file: whether the last reload worked, and
/// when one last did.
pub fn reload_families(file: ConfigFile) -> (Family<'static>, Family<'static>) {
    match file {
        ConfigFile::Config => (CONFIG_RELOAD_SUCCESSFUL, CONFIG_RELOAD_TIME),
        ConfigFile::WebConfig => (WEB_CONFIG_RELOAD_SUCCESSFUL, WEB_CONFIG_RELOAD_TIME),
        ConfigFile::AuthFile => (AUTH_FILE_RELOAD_SUCCESSFUL, AUTH_FILE_RELOAD_TIME),
    }
}
pub const PUSH_REQUESTS: Family = own!(
    counter,
    "http_push_requests",
    "collectd write_http JSON requests, by status code."
);
pub const GENERIC_VALUE_LISTS: Family = own!(
    gauge,
    "generic_value_lists",
    "Generic collectd value lists held."
);
pub const GENERIC_EXPIRED: Family = own!(
    counter,
    "generic_value_lists_expired",
    "Generic collectd value lists dropped after missing their intervals."
);
pub const GENERIC_CONFLICTS: Family = own!(
    gauge,
    "generic_conflicts",
    "Generic samples left out of this scrape to keep it valid, by kind: duplicate_series (the last received is kept), type_mismatch (the family keeps its first type)."
);

/// Help of every generic collectd family: the name says the rest.
pub const GENERIC_HELP: &str = "collectd value list, named collectd_<plugin>_<type>[_<data source>] as collectd_exporter does.";

/// Every family name the exporter can serve (for docs and tests).
pub fn all_names() -> Vec<&'static str> {
    let own = [
        BUILD_INFO,
        START_TIME,
        DATAGRAMS_RECEIVED,
        DATAGRAM_BYTES_RECEIVED,
        KERNEL_DROPS,
        RECEIVE_BUFFER,
        DATAGRAMS_REJECTED,
        DECODE_ERRORS,
        VALUE_LISTS_RECEIVED,
        VALUE_LISTS_ACCEPTED,
        VALUE_LISTS_REJECTED,
        NOTIFICATIONS,
        PROCESSES,
        PROCESSES_TRACKED,
        PROGRAMS,
        SERIES,
        PROCESSES_EXPIRED,
        PROCESSES_FORGOTTEN,
        PROGRAMS_FORGOTTEN,
        PUSH_REQUESTS,
        CONFIG_RELOAD_SUCCESSFUL,
        CONFIG_RELOAD_TIME,
        WEB_CONFIG_RELOAD_SUCCESSFUL,
        WEB_CONFIG_RELOAD_TIME,
        AUTH_FILE_RELOAD_SUCCESSFUL,
        AUTH_FILE_RELOAD_TIME,
        GENERIC_VALUE_LISTS,
        GENERIC_EXPIRED,
        GENERIC_CONFLICTS,
    ];
    debug_assert!(own.iter().all(|f| f.name.starts_with(P)));
    SQLALCHEMY
        .iter()
        .map(|(f, _)| f.name)
        .chain([DATABASE_CONNECTIONS.name, DATABASE_CONNECTIONS_MAX.name])
        .chain(own.iter().map(|f| f.name))
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
    for (family, field) in SQLALCHEMY {
        let programs = &scrape.sqla.programs;
        if !programs.iter().any(|p| field(p).is_some()) {
            continue;
        }
        w.family(family, &mut |s| {
            for p in programs {
                if let Some(v) = field(p) {
                    s.sample(&[("host", &p.host), ("program", &p.program)], v)?;
                }
            }
            Ok(())
        })?;
    }
    if !scrape.databases.is_empty() {
        let dbs = &scrape.databases;
        w.family(&DATABASE_CONNECTIONS, &mut |s| {
            for db in dbs {
                s.sample(&[("database", &db.name)], Number::F64(db.connections))?;
            }
            Ok(())
        })?;
        w.family(&DATABASE_CONNECTIONS_MAX, &mut |s| {
            for db in dbs {
                s.sample(&[("database", &db.name)], Number::U64(db.max_connections))?;
            }
            Ok(())
        })?;
    }
    write_generic(&scrape.generic, w)?;
    write_own(scrape, w)
}

fn write_generic(g: &GenericSnapshot, w: &mut dyn FamilyWriter) -> fmt::Result {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(4);
    for f in &g.families {
        let family = Family {
            name: &f.name,
            help: GENERIC_HELP,
            kind: f.kind,
        };
        w.family(&family, &mut |s| {
            for (values, number) in &f.samples {
                labels.clear();
                labels.extend(
                    f.label_names
                        .iter()
                        .map(String::as_str)
                        .zip(values.iter().map(String::as_str)),
                );
                s.sample(&labels, *number)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn write_own(scrape: &Scrape, w: &mut dyn FamilyWriter) -> fmt::Result {
    let t = &scrape.telemetry;
    let b = &scrape.build;
    single(
        w,
        &BUILD_INFO,
        &[("version", b.version), ("revision", b.revision)],
        Number::U64(1),
    )?;
    single(w, &START_TIME, &[], Number::F64(b.start_time_unix))?;

    let listeners = &t.listeners;
    if !listeners.is_empty() {
        per_listener(w, &DATAGRAMS_RECEIVED, listeners, |l| {
            Some(Number::U64(l.datagrams))
        })?;
        per_listener(w, &DATAGRAM_BYTES_RECEIVED, listeners, |l| {
            Some(Number::U64(l.bytes))
        })?;
        per_listener(w, &RECEIVE_BUFFER, listeners, |l| {
            Some(Number::U64(l.receive_buffer))
        })?;
        if listeners.iter().any(|l| l.kernel_drops.is_some()) {
            per_listener(w, &KERNEL_DROPS, listeners, |l| {
                l.kernel_drops.map(Number::U64)
            })?;
        }
    }
    by_reason(w, &DATAGRAMS_REJECTED, "reason", &t.datagrams_rejected)?;
    by_reason(w, &DECODE_ERRORS, "error", &t.decode_errors)?;
    single(
        w,
        &VALUE_LISTS_RECEIVED,
        &[],
        Number::U64(t.value_lists_received),
    )?;
    single(
        w,
        &VALUE_LISTS_ACCEPTED,
        &[],
        Number::U64(t.value_lists_accepted),
    )?;
    by_reason(w, &VALUE_LISTS_REJECTED, "reason", &t.value_lists_rejected)?;
    by_reason(w, &NOTIFICATIONS, "severity", &t.notifications)?;
    by_reason(w, &PUSH_REQUESTS, "code", &t.push_requests)?;

    let s = &scrape.sqla;
    single(w, &PROCESSES, &[], Number::U64(s.live_processes()))?;
    single(
        w,
        &PROCESSES_TRACKED,
        &[],
        Number::U64(s.tracked_processes as u64),
    )?;
    single(w, &PROGRAMS, &[], Number::U64(s.programs.len() as u64))?;
    single(w, &SERIES, &[], Number::U64(sqlalchemy_series(s) as u64))?;
    single(
        w,
        &PROCESSES_EXPIRED,
        &[],
        Number::U64(s.stats.processes_expired),
    )?;
    single(
        w,
        &PROCESSES_FORGOTTEN,
        &[],
        Number::U64(s.stats.processes_forgotten),
    )?;
    single(
        w,
        &PROGRAMS_FORGOTTEN,
        &[],
        Number::U64(s.stats.programs_forgotten),
    )?;

    for (file, reload) in &scrape.reloads {
        let (successful, time) = reload_families(*file);
        single(
            w,
            &successful,
            &[],
            Number::U64(u64::from(reload.successful)),
        )?;
        single(w, &time, &[], Number::F64(reload.success_unix))?;
    }

    let g = &scrape.generic;
    single(
        w,
        &GENERIC_VALUE_LISTS,
        &[],
        Number::U64(g.value_lists as u64),
    )?;
    single(w, &GENERIC_EXPIRED, &[], Number::U64(g.expired))?;
    by_reason(
        w,
        &GENERIC_CONFLICTS,
        "kind",
        &[
            ("duplicate_series", g.conflicts.duplicate_series),
            ("type_mismatch", g.conflicts.type_mismatch),
        ],
    )
}

fn single(w: &mut dyn FamilyWriter, f: &Family<'_>, labels: &Labels<'_>, v: Number) -> fmt::Result {
    w.family(f, &mut |s| s.sample(labels, v))
}

fn per_listener(
    w: &mut dyn FamilyWriter,
    f: &Family<'_>,
    listeners: &[crate::telemetry::ListenerSnapshot],
    value: fn(&crate::telemetry::ListenerSnapshot) -> Option<Number>,
) -> fmt::Result {
    w.family(f, &mut |s| {
        for l in listeners {
            if let Some(v) = value(l) {
                s.sample(&[("listener", &l.label)], v)?;
            }
        }
        Ok(())
    })
}

fn by_reason(
    w: &mut dyn FamilyWriter,
    f: &Family<'_>,
    label: &str,
    counts: &[(&'static str, u64)],
) -> fmt::Result {
    w.family(f, &mut |s| {
        for (reason, n) in counts {
            s.sample(&[(label, reason)], Number::U64(*n))?;
        }
        Ok(())
    })
}
