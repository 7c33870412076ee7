//! The real client against the exporter: scripted SQLAlchemy apps
//! (`tests/clients/app.py`, SQLAlchemy and sqlalchemy-collectd from PyPI in
//! `.venv`) send to an in-process exporter, and `/metrics` must show exactly
//! what the apps' pools hold.
//!
//! The app reports the state it holds after each phase (one JSON line on
//! stdout) and waits for "next" on stdin, so the test decides when state
//! changes. The expected series are computed from those reports by the rules
//! below, then `/metrics` is polled until it shows them; a timeout fails with
//! the last scrape.
//!
//! Rules, from what sqlalchemy-collectd 0.0.8 sends (tests/testdata/README.md,
//! "Protocol observations"):
//!
//! 1. *Who reports.* A process reports once the client has started its sender
//!    thread: from `create_engine()` on. A forked worker inherits no thread;
//!    the client starts one on the worker's first own DBAPI connect, so a
//!    forked worker that has not connected is not a process yet.
//! 2. *What a process reports.* The client's collector state lives in the
//!    process image, per program name; a forked worker starts from the
//!    parent's state at the fork (`engine.dispose(close=False)` does not
//!    reset it). So a process reports its inherited state plus its own.
//! 3. *Gauges*, per process: checked out = held, checked in = idle (+1, rule
//!    4), detached = detached, connections = open, pools = engines; the
//!    exporter sums them over the live processes that report.
//! 4. *The `id(None)` quirk.* The client keys connections by `id()`; a hard
//!    `invalidate()` checks a connection-less record in, so the client adds
//!    `id(None)` to its checked-in set and never removes it: checked in is 1
//!    too high, for the rest of the process, once any check-in without a
//!    DBAPI connection happened (inherited ones included).
//! 5. *Counters.* Each process sends its cumulative totals (inherited plus
//!    own); the exporter adds every process's last totals, live or dead. A
//!    forked worker's totals include the parent's counts at the fork, so
//!    those are counted once more per worker: what the client sends.

mod common;

use common::client::{App, Programs, Report, View, shows};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long one phase may take to show up in `/metrics`: the client sends
/// every 2.0–2.2 s, so this is several send periods.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);
/// Host label the apps send (`collectd_report_host`).
const HOST: &str = "itest";

/// Applies the rules to the latest report of every app.
fn expected(reports: &[&Report]) -> Programs {
    let mut want = Programs::new();
    for r in reports {
        for (v, live) in r
            .live
            .iter()
            .map(|v| (v, true))
            .chain(r.dead.iter().map(|v| (v, false)))
        {
            // Rule 1.
            if !v.reports() {
                continue;
            }
            // Rule 2.
            let s = v.client_state();
            let e = want.entry((v.host.clone(), v.program.clone())).or_default();
            // Rule 5.
            e.checkouts += s.checkouts;
            e.connects += s.connects;
            e.disconnects += s.disconnects;
            e.invalidations += s.invalidations;
            if live {
                // Rule 3, with rule 4's extra check-in.
                e.processes += 1;
                e.pools += v.engines;
                e.connections += s.open;
                e.checked_out += s.held;
                e.checked_in += s.idle + u64::from(s.none_checkins > 0);
                e.detached += s.detached;
            }
        }
    }
    want
}

fn describe(want: &Programs) -> String {
    want.iter()
        .map(|((host, program), e)| format!("\n  host={host} program={program}: {e:?}"))
        .collect()
}

/// Polls `/metrics` until it shows what the reports say; returns the samples.
fn await_reports(exporter: &common::Exporter, reports: &[&Report]) -> BTreeMap<String, f64> {
    let want = expected(reports);
    let phase = reports.first().map_or("?", |r| r.phase.as_str());
    common::scrape_until(
        exporter.http,
        &format!("phase {phase:?}: {}", describe(&want)),
        PHASE_TIMEOUT,
        |s| shows(s, &want),
    )
}

/// Runs one app through `phases`, checking `/metrics` after each; `check`
/// may assert what the scenario itself did (so a broken script cannot pass
/// by doing nothing).
fn walk(
    exporter: &common::Exporter,
    app: &mut App,
    phases: &[&str],
    mut check: impl FnMut(&Report, &BTreeMap<String, f64>),
) {
    for (i, phase) in phases.iter().enumerate() {
        let report = app.report(phase);
        let samples = await_reports(exporter, &[&report]);
        check(&report, &samples);
        if i + 1 < phases.len() {
            app.next();
        }
    }
}

fn only<'a>(r: &'a Report, program: &str) -> &'a View {
    let mut it = r.live.iter().filter(|v| v.program == program);
    let v = it.next().unwrap_or_else(|| panic!("no {program} in {r:?}"));
    assert!(it.next().is_none(), "one process expected: {r:?}");
    v
}

#[test]
fn checkouts_and_checkins_are_exported_exactly() {
    let exporter = common::start(&[]);
    let mut app = App::start("checkout", exporter.udp.port(), HOST);
    walk(
        &exporter,
        &mut app,
        &["init", "three_out", "one_returned"],
        |r, s| {
            let v = only(r, "checkout");
            match r.phase.as_str() {
                "init" => assert_eq!(v.own.connects, 0),
                "three_out" => assert_eq!((v.own.held, v.own.idle), (3, 0)),
                _ => assert_eq!((v.own.held, v.own.idle, v.own.checkouts), (2, 1, 3)),
            }
            let last = common::sqla(
                s,
                "sqlalchemy_last_report_timestamp_seconds",
                HOST,
                "checkout",
            );
            assert!(
                last.is_some_and(|t| t > 0.0),
                "last report timestamp: {last:?}"
            );
        },
    );
}

/// A burst the scrape no longer sees stays in the peak gauges for
/// `--peak-window`, then leaves: the peak is the most the exporter saw the
/// app hold, computed from the app's own reports.
#[test]
fn the_peak_keeps_what_the_pool_held_for_the_window() {
    let window = Duration::from_secs(6);
    let exporter = common::start(&["--peak-window", "6s"]);
    let mut app = App::start("checkout", exporter.udp.port(), HOST);
    let (name, peak) = ("checkout", "sqlalchemy_connections_checked_out_peak");
    let mut most = 0.0f64;
    let mut last = BTreeMap::new();
    walk(
        &exporter,
        &mut app,
        &["init", "three_out", "one_returned"],
        |r, s| {
            let v = only(r, name);
            most = most.max(v.own.held as f64);
            let out = common::sqla(s, "sqlalchemy_connections_checked_out", HOST, name);
            assert_eq!(out, Some(v.own.held as f64), "{}", r.phase);
            // The scrape that first shows the phase: what was held before
            // it is still within the window.
            assert_eq!(common::sqla(s, peak, HOST, name), Some(most), "{}", r.phase);
            assert_eq!(
                common::sqla(s, "sqlalchemy_connections_peak", HOST, name),
                common::sqla(s, "sqlalchemy_connections", HOST, name),
                "{}",
                r.phase
            );
            last = s.clone();
        },
    );
    let held = common::sqla(&last, "sqlalchemy_connections_checked_out", HOST, name);
    assert!(held < Some(most), "{held:?} then {most}");
    // Within the window and a bucket (7 s) plus a report period, the peak
    // is what is held now.
    common::scrape_until(
        exporter.http,
        &format!("{peak} back to {held:?}"),
        window * 2 + Duration::from_secs(5),
        |s| common::sqla(s, peak, HOST, name) == held,
    );
}

/// The checkout scenario in another runtime: the exporter shows the same
/// exactly.
fn three_out_one_returned(scenario: &str) {
    let exporter = common::start(&[]);
    let mut app = App::start(scenario, exporter.udp.port(), HOST);
    walk(
        &exporter,
        &mut app,
        &["init", "three_out", "one_returned"],
        |r, s| {
            let v = only(r, scenario);
            match r.phase.as_str() {
                "init" => assert_eq!(v.own.connects, 0),
                "three_out" => assert_eq!((v.own.held, v.own.idle), (3, 0)),
                _ => assert_eq!((v.own.held, v.own.idle, v.own.checkouts), (2, 1, 3)),
            }
            let out = common::sqla(s, "sqlalchemy_connections_checked_out", HOST, scenario);
            assert_eq!(out, Some(v.own.held as f64));
        },
    );
}

/// OpenStack's services run under eventlet.monkey_patch(): the client's
/// sender is a green thread, the checkouts are made by green threads.
#[test]
fn under_eventlet_monkey_patching_the_pool_is_exported_exactly() {
    three_out_one_returned("eventlet");
}

/// An AsyncEngine (create_async_engine, aiosqlite): tasks check out
/// connections concurrently.
#[test]
fn an_asyncio_engine_is_exported_exactly() {
    three_out_one_returned("asyncio");
}

#[test]
fn invalidation_and_detach_follow_the_client_including_its_checkin_quirk() {
    let exporter = common::start(&[]);
    let mut app = App::start("invalidate_detach", exporter.udp.port(), HOST);
    walk(
        &exporter,
        &mut app,
        &[
            "init",
            "three_out",
            "invalidated",
            "detached",
            "detached_closed",
            "returned",
            "reconnected",
        ],
        |r, s| {
            let v = only(r, "invdet");
            let quirk = v.own.none_checkins > 0;
            match r.phase.as_str() {
                "init" | "three_out" => assert!(!quirk),
                "invalidated" => {
                    assert_eq!((v.own.invalidations, v.own.none_checkins), (1, 1));
                    // Rule 4 at work: no idle connection, yet one checked in.
                    assert_eq!(v.own.idle, 0);
                    assert_eq!(
                        common::sqla(s, "sqlalchemy_connections_checked_in", HOST, "invdet"),
                        Some(1.0)
                    );
                }
                "detached" => assert_eq!(v.own.detached, 1),
                "detached_closed" => assert_eq!((v.own.detached, v.own.disconnects), (0, 2)),
                "returned" => assert_eq!(v.own.held, 0),
                _ => assert!(quirk && (v.own.held, v.own.checkouts) == (1, 4), "{v:?}"),
            }
        },
    );
}

#[test]
fn two_engines_in_one_process_are_two_pools_of_one_program() {
    let exporter = common::start(&[]);
    let mut app = App::start("two_engines", exporter.udp.port(), HOST);
    walk(
        &exporter,
        &mut app,
        &["init", "out", "one_returned"],
        |r, _| {
            let v = only(r, "twoeng");
            assert_eq!(v.engines, 2);
            if r.phase == "out" {
                assert_eq!(v.own.held, 3);
            }
        },
    );
}

#[test]
fn forked_workers_are_processes_once_they_connect() {
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
        "workers_returned",
    ];
    walk(&exporter, &mut app, &phases, |r, _| {
        let pids: Vec<u32> = r.live.iter().map(|v| v.pid).collect();
        let workers = r.live.iter().filter(|v| v.forked).count();
        let connected = r
            .live
            .iter()
            .filter(|v| v.forked && v.own.connects > 0)
            .count();
        match r.phase.as_str() {
            "init" | "parent_one_idle" => assert_eq!(workers, 0),
            // Rule 1 is checked from here on: the workers connect one per
            // phase, and those not yet connected must not be processes.
            "forked" => assert_eq!((workers, connected), (3, 0), "{pids:?}"),
            p if p.starts_with("worker_") => {
                let n: usize = p
                    .trim_start_matches("worker_")
                    .trim_end_matches("_out")
                    .parse()
                    .expect("phase worker_<n>_out");
                // The other workers are alive but have not connected.
                assert_eq!((workers, connected), (3, n), "{r:?}");
            }
            _ => assert_eq!(connected, 3),
        }
        // Every forked worker starts from the parent's state (rule 2).
        for w in r.live.iter().filter(|v| v.forked) {
            let inherited = w.inherited.expect("a forked worker has inherited state");
            assert_eq!((inherited.idle, inherited.open), (1, 1), "{w:?}");
        }
    });
}

#[test]
fn two_program_names_are_separate_series() {
    let exporter = common::start(&[]);
    // One process with programs alpha and beta (beta under its own host),
    // and a second process with program alpha.
    let mut main = App::start("programs", exporter.udp.port(), HOST);
    let mut side = App::start("programs_side", exporter.udp.port(), HOST);
    let phases = ["init", "out", "back"];
    for (i, phase) in phases.iter().enumerate() {
        let a = main.report(phase);
        let b = side.report(phase);
        let s = await_reports(&exporter, &[&a, &b]);
        let want = expected(&[&a, &b]);
        let keys: Vec<(&str, &str)> = want.keys().map(|(h, p)| (h.as_str(), p.as_str())).collect();
        let beta_host = format!("{HOST}-beta");
        assert_eq!(keys, [(HOST, "alpha"), (beta_host.as_str(), "beta")]);
        assert_eq!(
            common::sqla(&s, "sqlalchemy_processes", HOST, "alpha"),
            Some(2.0)
        );
        // Both of main's programs are sent under one process token; they
        // are still two series.
        assert_eq!(only(&a, "alpha").pid, only(&a, "beta").pid);
        if i + 1 < phases.len() {
            main.next();
            side.next();
        }
    }
}

#[test]
fn a_worker_that_exits_leaves_the_gauges_within_the_stale_window_and_keeps_its_counts() {
    // The exporter's default: 3 of the client's 2 s intervals.
    const STALE: Duration = Duration::from_secs(6);
    // The client sends every 2.0–2.2 s, so its last report went out at most
    // this long before it exited.
    const SEND_PERIOD: Duration = Duration::from_millis(2200);
    // Scrape polling and scheduling.
    const SLACK: Duration = Duration::from_millis(1000);

    let exporter = common::start(&[]);
    let mut app = App::start("worker_exit", exporter.udp.port(), HOST);
    let r = app.report("parent_one_idle");
    await_reports(&exporter, &[&r]);
    app.next();
    let r = app.report("workers_out");
    let before = await_reports(&exporter, &[&r]);
    assert_eq!(
        common::sqla(&before, "sqlalchemy_processes", HOST, "exitapp"),
        Some(3.0)
    );
    app.next();
    let r = app.report("worker_exited");
    let exited = Instant::now();
    assert_eq!((r.live.len(), r.dead.len()), (2, 1), "{r:?}");
    let want = expected(&[&r]);
    let after = await_reports(&exporter, &[&r]);
    let gone_after = exited.elapsed();
    eprintln!("the dead worker left the gauges {gone_after:?} after it exited");
    assert!(
        gone_after <= STALE + SLACK,
        "the dead worker stayed {gone_after:?} after it exited (window {STALE:?})"
    );
    assert!(
        gone_after + SEND_PERIOD + SLACK >= STALE,
        "the dead worker left after {gone_after:?}, before its window of {STALE:?} \
         can have ended"
    );
    // Its counts stay: the counters did not move when it left.
    for name in [
        "sqlalchemy_checkouts_total",
        "sqlalchemy_connects_total",
        "sqlalchemy_disconnects_total",
        "sqlalchemy_invalidations_total",
    ] {
        assert_eq!(
            common::sqla(&after, name, HOST, "exitapp"),
            common::sqla(&before, name, HOST, "exitapp"),
            "{name}"
        );
    }
    // And the expectation depends on them: without the dead worker's
    // totals it would be lower, so the scrape above checked they stayed.
    let key = (HOST.to_owned(), "exitapp".to_owned());
    let without_dead = expected(&[&Report {
        dead: Vec::new(),
        ..r.clone()
    }]);
    assert!(
        without_dead[&key].checkouts < want[&key].checkouts
            && without_dead[&key].connects < want[&key].connects,
        "{r:?}"
    );
}
