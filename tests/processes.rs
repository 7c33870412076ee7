//! `GET /api/v1/processes` against the real client: a parent and three
//! forked workers of one program (`tests/clients/app.py fork`), each listed
//! with its own pid and exactly the pool and totals the app says it holds;
//! the pages of both orders; a worker that exits, listed dead with its last
//! totals; the 400 and 404 answers; and the route behind basic auth.
//!
//! Expected values come from the app's reports by the rules of
//! `tests/real_client.rs` (a forked worker reports its inherited state plus
//! its own; checked in is one too high after a check-in without a DBAPI
//! connection). Only the age of a report and the client's clock offset
//! depend on when the test runs; they are checked against bounds and
//! against each other.

mod common;

use common::client::{App, Report, View};
use serde_json::{Value as Json, json};
use std::net::SocketAddr;
use std::time::Duration;

const HOST: &str = "itest";
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

fn get(http: SocketAddr, query: &str) -> (u16, Json) {
    let r = common::get(http, &format!("/api/v1/processes?{query}"), &[]);
    assert_eq!(r.content_type, "application/json", "{query}");
    let doc = serde_json::from_slice(&r.body).expect("a JSON body");
    (r.status, doc)
}

/// What the document must say of one process of the app, its clock-dependent
/// fields left out (see [`timeless`]).
fn expected(v: &View, live: bool) -> Json {
    let s = v.client_state();
    // A dead process keeps what it last reported.
    let state = if live { "live" } else { "dead" };
    json!({
        "pid": v.pid,
        "state": state,
        "relayed_processes": null,
        "pools": v.engines,
        "connections": s.open,
        "checked_out": s.held,
        "checked_in": s.idle + u64::from(s.none_checkins > 0),
        "detached": s.detached,
        "checkouts": s.checkouts,
        "invalidations": s.invalidations,
        "connects": s.connects,
        "disconnects": s.disconnects,
        "transactions": null,
        "interval_seconds": 2.0,
        "late": !live,
    })
}

/// A process of the document without its token, report time, age and clock
/// offset, after checking them: the token is the client's `<pid>:<6 hex>`,
/// the age is within `max_age` and agrees with the report time, and the
/// client's clock (whole seconds on the wire) is within two seconds of the
/// exporter's (same machine).
fn timeless(p: &Json, server_time: f64, max_age: f64) -> Json {
    let mut p = p.clone();
    let pid = p["pid"].as_u64().expect("a pid");
    let token = p["token"].as_str().expect("a token").to_owned();
    let suffix = token
        .strip_prefix(&format!("{pid}:"))
        .unwrap_or_else(|| panic!("token {token:?} of pid {pid}"));
    assert!(
        suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    let age = p["age_seconds"].as_f64().expect("age");
    let last = p["last_report_unix"].as_f64().expect("last report");
    assert!((0.0..=max_age).contains(&age), "age {age} of {token}");
    assert!(
        (server_time - age - last).abs() < 0.0011,
        "{server_time} - {age} vs {last}"
    );
    let offset = p["clock_offset_seconds"].as_f64().expect("clock offset");
    assert!(offset.abs() < 2.0, "clock offset {offset} of {token}");
    let o = p.as_object_mut().expect("a process object");
    for k in [
        "token",
        "age_seconds",
        "last_report_unix",
        "clock_offset_seconds",
    ] {
        o.remove(k);
    }
    p
}

/// The reporting processes of `program` in a report: live ones, then dead.
fn views<'a>(r: &'a Report, program: &str) -> Vec<(&'a View, bool)> {
    r.live
        .iter()
        .map(|v| (v, true))
        .chain(r.dead.iter().map(|v| (v, false)))
        .filter(|(v, _)| v.program == program && v.reports())
        .collect()
}

/// Polls the program's document (sorted by token, i.e. by pid) until its
/// processes are exactly `want` (in pid order); returns the document.
fn await_processes(http: SocketAddr, program: &str, want: &[Json], max_age: f64) -> Json {
    let mut want = want.to_vec();
    want.sort_by_key(|p| p["pid"].as_u64());
    let mut last = Json::Null;
    let query = format!("host={HOST}&program={program}&sort=token");
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::poll(PHASE_TIMEOUT, "the processes document", || {
            let (status, doc) = get(http, &query);
            last = doc.clone();
            if status != 200 {
                return None;
            }
            let server_time = doc["server_time_unix"].as_f64()?;
            let got: Vec<Json> = doc["processes"]
                .as_array()?
                .iter()
                .map(|p| timeless(p, server_time, max_age))
                .collect();
            (got == want).then_some(doc)
        })
    }));
    found.unwrap_or_else(|_| {
        panic!(
            "want {}\nlast document {}",
            serde_json::to_string_pretty(&want).unwrap_or_default(),
            serde_json::to_string_pretty(&last).unwrap_or_default()
        )
    })
}

fn pids(doc: &Json) -> Vec<u64> {
    doc["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["pid"].as_u64().expect("pid"))
        .collect()
}

#[test]
fn each_worker_is_listed_with_its_pid_and_its_own_pool_and_pages_walk_them() {
    let exporter = common::start(&[]);
    let mut app = App::start("fork", exporter.udp.port(), HOST);
    let phases = [
        "init",
        "parent_one_idle",
        "forked",
        "worker_1_out",
        "worker_2_out",
        "worker_3_out",
        "parent_two_out",
    ];
    let mut report = None;
    for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            app.next();
        }
        report = Some(app.report(phase));
    }
    let report = report.expect("the last phase");
    let processes = views(&report, "forkapp");
    // The scenario: the parent holds 2, worker n holds n.
    let mut held: Vec<u64> = processes.iter().map(|(v, _)| v.own.held).collect();
    held.sort();
    assert_eq!(held, [1, 2, 2, 3], "{report:?}");
    let want: Vec<Json> = processes.iter().map(|(v, l)| expected(v, *l)).collect();
    let doc = await_processes(exporter.http, "forkapp", &want, 3.0);
    assert_eq!(
        (
            &doc["host"],
            &doc["program"],
            &doc["sort"],
            &doc["total"],
            &doc["live"],
            &doc["offset"],
            &doc["limit"]
        ),
        (
            &json!(HOST),
            &json!("forkapp"),
            &json!("token"),
            &json!(4),
            &json!(4),
            &json!(0),
            &json!(1000)
        )
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).expect("the document")
    );

    // Sorted by checked out (the default): most held first, ties by pid;
    // two pages of two, the total on each.
    let mut by_out: Vec<(u64, u64)> = processes
        .iter()
        .map(|(v, _)| (v.client_state().held, u64::from(v.pid)))
        .collect();
    by_out.sort_by_key(|(out, pid)| (std::cmp::Reverse(*out), *pid));
    let by_out: Vec<u64> = by_out.into_iter().map(|(_, pid)| pid).collect();
    let mut pages = Vec::new();
    for offset in [0, 2, 4] {
        let (status, page) = get(
            exporter.http,
            &format!("host={HOST}&program=forkapp&limit=2&offset={offset}"),
        );
        assert_eq!(status, 200);
        assert_eq!(
            (&page["total"], &page["limit"], &page["sort"]),
            (&json!(4), &json!(2), &json!("checked_out"))
        );
        pages.push(pids(&page));
    }
    assert_eq!(
        pages,
        [by_out[..2].to_vec(), by_out[2..].to_vec(), Vec::new()]
    );
    let mut by_pid = by_out.clone();
    by_pid.sort();
    assert_eq!(pids(&doc), by_pid);
    // A limit above the cap is the cap.
    let (_, capped) = get(
        exporter.http,
        &format!("host={HOST}&program=forkapp&limit=1000000"),
    );
    assert_eq!(capped["limit"], json!(10_000));
    assert_eq!(pids(&capped), by_out);
}

#[test]
fn a_worker_that_exits_is_listed_dead_with_its_last_totals() {
    let exporter = common::start(&[]);
    let mut app = App::start("worker_exit", exporter.udp.port(), HOST);
    app.report("parent_one_idle");
    app.next();
    let r = app.report("workers_out");
    let want: Vec<Json> = views(&r, "exitapp")
        .iter()
        .map(|(v, l)| expected(v, *l))
        .collect();
    assert_eq!(want.len(), 3, "{r:?}");
    await_processes(exporter.http, "exitapp", &want, 3.0);
    app.next();
    let r = app.report("worker_exited");
    let processes = views(&r, "exitapp");
    assert_eq!(
        processes.iter().filter(|(_, live)| !live).count(),
        1,
        "{r:?}"
    );
    let want: Vec<Json> = processes.iter().map(|(v, l)| expected(v, *l)).collect();
    // The dead one's last report is at least its 6 s window old.
    let doc = await_processes(exporter.http, "exitapp", &want, 60.0);
    assert_eq!((&doc["total"], &doc["live"]), (&json!(3), &json!(2)));
    // Live ones first when sorted by checked out; the dead one last,
    // whatever it held.
    let (_, by_out) = get(exporter.http, &format!("host={HOST}&program=exitapp"));
    let dead = processes
        .iter()
        .find(|(_, live)| !live)
        .map(|(v, _)| u64::from(v.pid));
    assert_eq!(pids(&by_out).last().copied(), dead);
}

#[test]
fn bad_queries_get_400_and_unknown_programs_404_with_a_json_error() {
    let e = common::start(&[]);
    let cases = [
        (
            "program=api",
            400,
            "the host parameter is required (/api/v1/processes?host=HOST&program=PROGRAM)",
        ),
        (
            "host=web1",
            400,
            "the program parameter is required (/api/v1/processes?host=HOST&program=PROGRAM)",
        ),
        (
            "host=web1&program=api&limit=ten",
            400,
            "limit=\"ten\" is not a non-negative integer",
        ),
        (
            "host=web1&program=api&sort=pid",
            400,
            "sort=\"pid\": use checked_out or token",
        ),
        (
            "host=web1&program=api",
            404,
            "no host \"web1\" with program \"api\": never seen, or forgotten after --forget-after",
        ),
    ];
    for (query, status, error) in cases {
        assert_eq!(
            get(e.http, query),
            (status, json!({ "error": error })),
            "{query}"
        );
    }
    let r = common::get(e.http, "/api/v1/processes", &[]);
    assert_eq!(r.status, 400);
    // A telemetry path on the API's path takes it.
    let e = common::start(&["--web.telemetry-path", "/api/v1/processes"]);
    let r = common::get(e.http, "/api/v1/processes", &[]);
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
}

#[test]
fn the_processes_document_needs_the_web_configs_basic_auth() {
    let dir = common::TempDir::new("processes", "auth");
    let hash = bcrypt::hash("wonderland", 4).expect("bcrypt");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: '{hash}'\n")).expect("write");
    let e = common::start(&["--web.config.file", web.to_str().expect("UTF-8 path")]);
    let path = "/api/v1/processes?host=web1&program=api";
    assert_eq!(common::get(e.http, path, &[]).status, 401);
    let auth = common::basic_auth("alice", "wonderland");
    let r = common::get(e.http, path, &[("Authorization", &auth)]);
    assert_eq!(r.status, 404);
}
