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

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one phase may take to show up in `/metrics`: the client sends
/// every 2.0–2.2 s, so this is several send periods.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the app may take to report a phase (Python start-up included).
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Host label the apps send (`collectd_report_host`).
const HOST: &str = "itest";

/// What one process did for one program (see `tests/clients/app.py`).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct State {
    held: u64,
    idle: u64,
    detached: u64,
    open: u64,
    none_checkins: u64,
    checkouts: u64,
    connects: u64,
    invalidations: u64,
    disconnects: u64,
}

impl State {
    fn plus(self, o: State) -> State {
        State {
            held: self.held + o.held,
            idle: self.idle + o.idle,
            detached: self.detached + o.detached,
            open: self.open + o.open,
            none_checkins: self.none_checkins + o.none_checkins,
            checkouts: self.checkouts + o.checkouts,
            connects: self.connects + o.connects,
            invalidations: self.invalidations + o.invalidations,
            disconnects: self.disconnects + o.disconnects,
        }
    }
}

/// One process's record for one program.
#[derive(Clone, Debug, Deserialize)]
struct View {
    pid: u32,
    program: String,
    host: String,
    forked: bool,
    engines: u64,
    own: State,
    inherited: Option<State>,
    /// Whether the client's sender thread runs in this process.
    sender_alive: bool,
}

impl View {
    /// Rule 1.
    fn reports(&self) -> bool {
        !self.forked || self.own.connects > 0
    }

    /// Rule 2: the collector state the client holds in this process.
    fn client_state(&self) -> State {
        self.inherited.unwrap_or_default().plus(self.own)
    }
}

#[derive(Clone, Debug, Deserialize)]
struct Report {
    phase: String,
    live: Vec<View>,
    dead: Vec<View>,
}

/// The series of one host/program.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Expected {
    processes: u64,
    pools: u64,
    connections: u64,
    checked_out: u64,
    checked_in: u64,
    detached: u64,
    checkouts: u64,
    connects: u64,
    disconnects: u64,
    invalidations: u64,
}

impl Expected {
    fn series(&self) -> [(&'static str, u64); 10] {
        [
            ("sqlalchemy_processes", self.processes),
            ("sqlalchemy_pools", self.pools),
            ("sqlalchemy_connections", self.connections),
            ("sqlalchemy_connections_checked_out", self.checked_out),
            ("sqlalchemy_connections_checked_in", self.checked_in),
            ("sqlalchemy_connections_detached", self.detached),
            ("sqlalchemy_checkouts_total", self.checkouts),
            ("sqlalchemy_connects_total", self.connects),
            ("sqlalchemy_disconnects_total", self.disconnects),
            ("sqlalchemy_invalidations_total", self.invalidations),
        ]
    }
}

type Want = BTreeMap<(String, String), Expected>;

/// Applies the rules to the latest report of every app.
fn expected(reports: &[&Report]) -> Want {
    let mut want = Want::new();
    for r in reports {
        for (v, live) in r
            .live
            .iter()
            .map(|v| (v, true))
            .chain(r.dead.iter().map(|v| (v, false)))
        {
            if !v.reports() {
                continue;
            }
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

/// Whether the scrape shows exactly `want`: every series of every
/// host/program, and no other host/program.
fn shows(samples: &BTreeMap<String, f64>, want: &Want) -> bool {
    let programs: Vec<&String> = samples
        .keys()
        .filter(|k| k.starts_with("sqlalchemy_processes{"))
        .collect();
    programs.len() == want.len()
        && want.iter().all(|((host, program), e)| {
            e.series().iter().all(|(name, value)| {
                common::sqla(samples, name, host, program) == Some(*value as f64)
            })
        })
}

fn describe(want: &Want) -> String {
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

/// The interpreter with the real client installed: `SCE_PYTHON`, else
/// `.venv/bin/python`. Missing is a failure, never a skip.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let path = std::env::var_os("SCE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| common::repo().join(".venv/bin/python"));
        let hint = "run the README's test command, scripts/test.sh, which installs \
                    tests/clients/requirements.txt into .venv";
        let mut child = Command::new(&path)
            .args(["-c", "import sqlalchemy, sqlalchemy_collectd"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}; {hint}", path.display()))?;
        let deadline = Instant::now() + REPORT_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{} -c 'import ...' hangs; {hint}", path.display()));
                }
            }
        };
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(format!(
                "{} cannot import sqlalchemy_collectd: {}; {hint}",
                path.display(),
                stderr.trim()
            ));
        }
        Ok(path)
    });
    match found {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// A running `app.py` in its own process group (its forked workers too),
/// killed and reaped on drop, panics included.
struct App {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    workdir: PathBuf,
    name: String,
}

impl App {
    fn start(scenario: &str, exporter: &common::Exporter) -> App {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let workdir = std::env::temp_dir().join(format!(
            "sce-real-client-{}-{scenario}-{seq}",
            std::process::id()
        ));
        let python = python();
        std::fs::create_dir_all(&workdir).expect("create the app's work directory");
        let script = common::repo().join("tests/clients/app.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(scenario)
            .args(["--port", &exporter.udp.port().to_string()])
            .arg("--workdir")
            .arg(&workdir)
            .args(["--host", HOST])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&workdir);
                panic!("start {}: {e}", script.display())
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().expect("stderr buffer").push_str(&text);
            }
        });
        App {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            workdir,
            name: scenario.to_owned(),
        }
    }

    /// The report of the next phase, which must be `phase`.
    fn report(&mut self, phase: &str) -> Report {
        let line = match self.lines.recv_timeout(REPORT_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "app {}: no report of phase {phase:?} within {REPORT_TIMEOUT:?}",
                self.name
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("app {}: exited before phase {phase:?}", self.name)
            }
        };
        let report: Report = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("app {}: bad report {line:?}: {e}", self.name));
        assert_eq!(report.phase, phase, "app {}: phases out of step", self.name);
        for v in report.live.iter().filter(|v| v.reports()) {
            assert!(
                v.sender_alive,
                "app {}: the client's sender thread is dead in pid {} ({}); \
                 sqlalchemy-collectd iterates its target registry unlocked, and a \
                 program registered meanwhile kills the thread",
                self.name, v.pid, v.program
            );
        }
        report
    }

    /// Lets the app go on to its next phase.
    fn next(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open until drop");
        stdin
            .write_all(b"next\n")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("app {}: write to stdin: {e}", self.name));
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stdin.take();
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group that
        // `process_group(0)` made for this app; it touches no memory.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("app {}: pid {pgid} not reaped after SIGKILL", self.name);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        if std::thread::panicking() {
            let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            eprintln!("app {} stderr:\n{stderr}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
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
    let mut app = App::start("checkout", &exporter);
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

#[test]
fn invalidation_and_detach_follow_the_client_including_its_checkin_quirk() {
    let exporter = common::start(&[]);
    let mut app = App::start("invalidate_detach", &exporter);
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
    let mut app = App::start("two_engines", &exporter);
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
    let mut app = App::start("fork", &exporter);
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
    let mut main = App::start("programs", &exporter);
    let mut side = App::start("programs_side", &exporter);
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
    let mut app = App::start("worker_exit", &exporter);
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
