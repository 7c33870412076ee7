//! The exporter next to the database's own truth. Debian's PostgreSQL and
//! PgBouncer are started by the test (`tests/common/postgres.rs`); programs
//! of the real client (`tests/clients/app.py`, scenario "postgres": real
//! SQLAlchemy engines on psycopg2, every connection's `application_name` its
//! program's name) hold known pool states, and both sides are compared.
//!
//! - Directly, the server's `pg_stat_activity` rows of each
//!   `application_name` are the exporter's `sqlalchemy_connections` of that
//!   program, and its rows of the database are
//!   `sqlalchemy_database_connections` — while the server shows every one of
//!   them `idle`, checked out or not.
//! - Through PgBouncer in transaction mode, the server has only the pooler's
//!   server connections (as many as its pool, named after whichever client
//!   used them last), while the exporter still attributes every connection,
//!   checked out or idle, to its program, as PgBouncer's own client list does.
//!
//! Expected values are computed from what the apps report holding; every
//! side is polled until it shows them. Each test prints both views side by
//! side (`cargo test --test database -- --nocapture`).

mod common;

use common::client::{App, Programs, Report, Series, shows};
use common::postgres::{PgBouncer, Postgres, Row, USER};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Host label the apps send (`collectd_report_host`).
const HOST: &str = "dbtest";
/// The database the programs use (the exporter's `database` label too).
const DB: &str = "appdb";
/// The server's `max_connections`: room for every program and the probes.
const MAX_CONNECTIONS: u32 = 40;
/// PgBouncer's server connections for the database (`default_pool_size`).
const POOL_SIZE: u32 = 2;
/// How long one side may take to show the state: the client sends every
/// 2.0–2.2 s, so this is several send periods.
const TIMEOUT: Duration = Duration::from_secs(20);

/// One program: its processes, each holding `hold` connections checked out
/// and `idle` in its pool.
struct Program {
    name: &'static str,
    processes: usize,
    hold: u64,
    idle: u64,
}

const PROGRAMS: [Program; 2] = [
    Program {
        name: "api",
        processes: 2,
        hold: 3,
        idle: 2,
    },
    Program {
        name: "worker",
        processes: 1,
        hold: 1,
        idle: 4,
    },
];

/// Starts every process of every program on `url` and waits until each
/// holds its state; the apps (stopped on drop) and their reports.
fn run_programs(exporter: &common::Exporter, url: &str) -> (Vec<App>, Vec<Report>) {
    let mut apps = Vec::new();
    for p in &PROGRAMS {
        for _ in 0..p.processes {
            let (hold, idle) = (p.hold.to_string(), p.idle.to_string());
            apps.push(App::start_with(
                "postgres",
                exporter.udp.port(),
                HOST,
                &[
                    "--url",
                    url,
                    "--program",
                    p.name,
                    "--hold",
                    &hold,
                    "--idle",
                    &idle,
                ],
            ));
        }
    }
    let reports: Vec<Report> = apps.iter().map(|a| a.report("holding")).collect();
    // The scripts did what they were asked (so a broken one cannot pass by
    // doing nothing).
    let mut i = 0;
    for p in &PROGRAMS {
        for r in &reports[i..i + p.processes] {
            let [v] = r.live.as_slice() else {
                panic!("one program per process: {r:?}")
            };
            assert_eq!(v.program, p.name, "{r:?}");
            let s = v.own;
            assert_eq!(
                (s.held, s.idle, s.open, s.detached, s.none_checkins),
                (p.hold, p.idle, p.hold + p.idle, 0, 0),
                "{v:?}"
            );
        }
        i += p.processes;
    }
    (apps, reports)
}

/// What the exporter must show for the reports: each process's pool state
/// and totals, summed per program.
fn expected(reports: &[Report]) -> Programs {
    let mut want = Programs::new();
    for v in reports.iter().flat_map(|r| &r.live) {
        let s = v.own;
        let e: &mut Series = want.entry((v.host.clone(), v.program.clone())).or_default();
        e.processes += 1;
        e.pools += v.engines;
        e.connections += s.open;
        e.checked_out += s.held;
        e.checked_in += s.idle;
        e.detached += s.detached;
        e.checkouts += s.checkouts;
        e.connects += s.connects;
        e.disconnects += s.disconnects;
        e.invalidations += s.invalidations;
    }
    want
}

/// The exporter with a config file that maps every program to [`DB`] with
/// the server's own `max_connections`; the config's directory lives as long
/// as the exporter.
fn exporter(pg: &Postgres) -> (common::Exporter, common::TempDir) {
    let max = pg.query("postgres", "SHOW max_connections");
    let max = &max[0]["max_connections"];
    assert_eq!(max, &MAX_CONNECTIONS.to_string());
    let programs: Vec<String> = PROGRAMS.iter().map(|p| format!("'{}'", p.name)).collect();
    let dir = common::TempDir::new("database", "config");
    let path = dir.path().join("config.yml");
    std::fs::write(
        &path,
        format!(
            "databases:\n  - name: {DB}\n    max_connections: {max}\n    programs: [{}]\n",
            programs.join(", ")
        ),
    )
    .expect("write the config file");
    let e = common::start(&["--config.file", path.to_str().expect("UTF-8 path")]);
    (e, dir)
}

/// Scrapes until the exporter shows `want` and its database total; returns
/// the samples.
fn await_exporter(e: &common::Exporter, want: &Programs) -> BTreeMap<String, f64> {
    let total: u64 = want.values().map(|s| s.connections).sum();
    common::scrape_until(e.http, &format!("{want:?}, {DB} {total}"), TIMEOUT, |s| {
        shows(s, want) && s.get(&database_series("")) == Some(&(total as f64))
    })
}

fn database_series(suffix: &str) -> String {
    format!("sqlalchemy_database_connections{suffix}{{database=\"{DB}\"}}")
}

/// The server's client backends on [`DB`] (the probe connects to database
/// `postgres`, so it is not among them).
fn backends(pg: &Postgres) -> Vec<Row> {
    pg.query(
        "postgres",
        &format!(
            "SELECT pid, application_name, state FROM pg_stat_activity \
             WHERE datname = '{DB}' AND backend_type = 'client backend' ORDER BY pid"
        ),
    )
}

/// Rows grouped by `column`, counted by `state` (or by nothing).
type Grouped = BTreeMap<String, BTreeMap<String, u64>>;

fn group(rows: &[Row], column: &str, state: Option<&str>) -> Grouped {
    let mut g = Grouped::new();
    for r in rows {
        let key = state.map_or_else(String::new, |s| r[s].clone());
        *g.entry(r[column].clone())
            .or_default()
            .entry(key)
            .or_default() += 1;
    }
    g
}

fn count(g: &Grouped, name: &str) -> u64 {
    g.get(name).map_or(0, |states| states.values().sum())
}

/// Calls `f` until it says the state is right; panics with the last state
/// after [`TIMEOUT`].
fn until<T: std::fmt::Debug>(what: &str, mut f: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (done, state) = f();
        if done {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}; last: {state:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exporter's families shown per program, and their headings.
const SHOWN: [(&str, &str); 4] = [
    ("sqlalchemy_processes", "processes"),
    ("sqlalchemy_connections", "connections"),
    ("sqlalchemy_connections_checked_out", "checked_out"),
    ("sqlalchemy_connections_checked_in", "checked_in"),
];

/// Another side's view: its title, its rows grouped by `application_name`
/// (and by state, when `states`).
struct Side<'a> {
    title: &'a str,
    rows: &'a Grouped,
    states: bool,
}

/// The exporter's per-program numbers beside each other side's rows of the
/// same `application_name`, one line per name, then the totals.
fn side_by_side(title: &str, samples: &BTreeMap<String, f64>, sides: &[Side]) -> String {
    let mut names: Vec<String> = PROGRAMS.iter().map(|p| p.name.to_owned()).collect();
    for n in sides.iter().flat_map(|s| s.rows.keys()) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let width = |s: &Side| s.title.len().max(if s.states { 20 } else { 6 });
    let mut top = format!("{:<17}| {:<48}", "", "the exporter");
    let mut head = format!("{:<17}|", "application_name");
    for (_, h) in SHOWN {
        let _ = write!(head, " {h:>11}");
    }
    for s in sides {
        let _ = write!(top, " | {:<w$}", s.title, w = width(s));
        let _ = write!(
            head,
            " | {:<w$}",
            if s.states { "rows (states)" } else { "rows" },
            w = width(s)
        );
    }
    let mut out = format!("{title}\n{}\n{}\n", top.trim_end(), head.trim_end());
    let line = |name: &str, mine: Vec<Option<f64>>, theirs: Vec<BTreeMap<String, u64>>| {
        let mut l = format!("{name:<17}|");
        for v in mine {
            let _ = write!(
                l,
                " {:>11}",
                v.map_or_else(|| "-".to_owned(), |v| v.to_string())
            );
        }
        for (s, states) in sides.iter().zip(theirs) {
            let rows: u64 = states.values().sum();
            let mut cell = rows.to_string();
            if s.states && rows > 0 {
                let text: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
                let _ = write!(cell, " ({})", text.join(", "));
            }
            let _ = write!(l, " | {cell:<w$}", w = width(s));
        }
        l.trim_end().to_owned() + "\n"
    };
    for n in &names {
        out += &line(
            n,
            SHOWN
                .iter()
                .map(|(f, _)| common::sqla(samples, f, HOST, n))
                .collect(),
            sides
                .iter()
                .map(|s| s.rows.get(n).cloned().unwrap_or_default())
                .collect(),
        );
    }
    let all = |s: &Side| {
        let mut states = BTreeMap::new();
        for (state, n) in s.rows.values().flatten() {
            *states.entry(state.clone()).or_default() += n;
        }
        states
    };
    out += &line(
        "all",
        SHOWN
            .iter()
            .map(|(f, _)| {
                Some(
                    PROGRAMS
                        .iter()
                        .filter_map(|p| common::sqla(samples, f, HOST, p.name))
                        .sum(),
                )
            })
            .collect(),
        sides.iter().map(all).collect(),
    );
    let _ = write!(
        out,
        "{} {}",
        database_series(""),
        samples
            .get(&database_series(""))
            .copied()
            .unwrap_or(f64::NAN)
    );
    out
}

#[test]
fn directly_each_programs_connections_are_its_rows_in_pg_stat_activity() {
    let pg = Postgres::start("database", MAX_CONNECTIONS);
    pg.query("postgres", &format!("CREATE DATABASE {DB}"));
    let (exporter, _config) = exporter(&pg);
    let url = format!("postgresql+psycopg2://{USER}@127.0.0.1:{}/{DB}", pg.port);
    let (_apps, reports) = run_programs(&exporter, &url);
    let want = expected(&reports);
    let samples = await_exporter(&exporter, &want);

    // The server's rows per application_name are the exporter's connections
    // of that program, and no other client is on the database.
    let want_rows: BTreeMap<String, u64> = want
        .iter()
        .map(|((_, program), s)| (program.clone(), s.connections))
        .collect();
    let rows = until(
        "pg_stat_activity to show every program's connections",
        || {
            let rows = backends(&pg);
            let g = group(&rows, "application_name", Some("state"));
            let by_name: BTreeMap<String, u64> =
                g.keys().map(|k| (k.clone(), count(&g, k))).collect();
            (by_name == want_rows, rows)
        },
    );
    let server = group(&rows, "application_name", Some("state"));
    for ((_, program), s) in &want {
        assert_eq!(
            common::sqla(&samples, "sqlalchemy_connections", HOST, program),
            Some(count(&server, program) as f64),
            "{program}"
        );
        // Between transactions the server shows a checked-out connection
        // as it shows an idle one: only the client knows which is which.
        assert_eq!(
            server[program.as_str()],
            BTreeMap::from([("idle".to_owned(), s.checked_out + s.checked_in)]),
            "{program}"
        );
    }
    // The database-wide count and capacity are the server's.
    assert_eq!(samples[&database_series("")], rows.len() as f64);
    assert_eq!(
        samples[&database_series("_max")],
        f64::from(MAX_CONNECTIONS)
    );

    eprintln!(
        "\n{}\n",
        side_by_side(
            &format!("Directly to PostgreSQL, database {DB} (max_connections {MAX_CONNECTIONS})"),
            &samples,
            &[Side {
                title: "the server (pg_stat_activity)",
                rows: &server,
                states: true,
            }],
        )
    );
}

#[test]
fn through_pgbouncer_the_server_sees_the_pool_and_the_exporter_still_each_program() {
    let pg = Postgres::start("database", MAX_CONNECTIONS);
    pg.query("postgres", &format!("CREATE DATABASE {DB}"));
    let bouncer = PgBouncer::start("database", &pg, DB, POOL_SIZE);
    let (exporter, _config) = exporter(&pg);
    let url = format!(
        "postgresql+psycopg2://{USER}@127.0.0.1:{}/{DB}",
        bouncer.port
    );
    let (_apps, reports) = run_programs(&exporter, &url);
    let want = expected(&reports);
    let samples = await_exporter(&exporter, &want);
    let total: u64 = want.values().map(|s| s.connections).sum();

    // The server has exactly PgBouncer's server connections of the
    // database, as many as its pool, and nobody else's.
    let (rows, servers) = until(
        "the server's backends to be PgBouncer's pool of server connections",
        || {
            let rows = backends(&pg);
            let servers: Vec<Row> = bouncer
                .show("SERVERS")
                .into_iter()
                .filter(|s| s["database"] == DB)
                .collect();
            let pids = |rs: &[Row], col: &str| {
                let mut p: Vec<String> = rs.iter().map(|r| r[col].clone()).collect();
                p.sort();
                p
            };
            let done = rows.len() == POOL_SIZE as usize
                && pids(&rows, "pid") == pids(&servers, "remote_pid");
            (done, (rows, servers))
        },
    );
    assert_eq!(servers.len(), POOL_SIZE as usize);
    let server = group(&rows, "application_name", Some("state"));
    // So the server cannot attribute the programs' connections: it has
    // fewer rows than any one program holds, whatever their names say.
    for ((_, program), s) in &want {
        assert!(
            count(&server, program) <= u64::from(POOL_SIZE) && u64::from(POOL_SIZE) < s.connections,
            "{program}: {server:?}"
        );
    }
    assert!(u64::from(POOL_SIZE) < total);

    // The pooler itself knows its clients, as the exporter knows the
    // programs: the same count per application_name.
    let clients: Vec<Row> = bouncer
        .show("CLIENTS")
        .into_iter()
        .filter(|c| c["database"] == DB)
        .collect();
    let clients = group(&clients, "application_name", None);
    for ((_, program), s) in &want {
        assert_eq!(count(&clients, program), s.connections, "{program}");
    }
    assert_eq!(clients.len(), want.len(), "{clients:?}");
    // And the database family counts the programs' connections, not the
    // server's.
    assert_eq!(samples[&database_series("")], total as f64);

    eprintln!(
        "\n{}\n",
        side_by_side(
            &format!(
                "Through PgBouncer (pool_mode transaction, default_pool_size {POOL_SIZE}), database {DB}"
            ),
            &samples,
            &[
                Side {
                    title: "PgBouncer (SHOW CLIENTS)",
                    rows: &clients,
                    states: false,
                },
                Side {
                    title: "the server (pg_stat_activity)",
                    rows: &server,
                    states: true,
                },
            ],
        )
    );
}
