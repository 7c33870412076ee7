//! The real sqlalchemy-collectd client as a test peer: `tests/clients/app.py`
//! (SQLAlchemy and sqlalchemy-collectd from PyPI in `.venv`) run through the
//! phases of a scenario, one JSON report per phase on stdout, "next" on
//! stdin to go on (the protocol is described at the top of app.py). The app
//! and its forked workers run in a process group of their own that is
//! killed and reaped on drop, panics included.
//!
//! Also the report types ([`Report`], [`View`], [`State`]) and the ten
//! `sqlalchemy_*` series of one host/program ([`Series`]) that tests expect
//! from those reports.

use super::process::kill_and_reap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the app may take to report a phase (Python start-up included).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a missing or broken interpreter points to.
pub const HINT: &str = "run the README's test command, scripts/test.sh, which installs \
                        tests/clients/requirements.txt into .venv";

/// What one process did for one program (see `tests/clients/app.py`).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct State {
    pub held: u64,
    pub idle: u64,
    pub detached: u64,
    pub open: u64,
    pub none_checkins: u64,
    pub checkouts: u64,
    pub connects: u64,
    pub invalidations: u64,
    pub disconnects: u64,
}

impl State {
    pub fn plus(self, o: State) -> State {
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
pub struct View {
    pub pid: u32,
    pub program: String,
    pub host: String,
    pub forked: bool,
    pub engines: u64,
    pub own: State,
    pub inherited: Option<State>,
    /// Whether the client's sender thread runs in this process.
    pub sender_alive: bool,
}

impl View {
    /// Whether the process reports at all: from `create_engine()` on, and a
    /// forked worker (which inherits no sender thread) from its first own
    /// DBAPI connect on.
    pub fn reports(&self) -> bool {
        !self.forked || self.own.connects > 0
    }

    /// The collector state the client holds in this process: a forked worker
    /// starts from the parent's state at the fork.
    pub fn client_state(&self) -> State {
        self.inherited.unwrap_or_default().plus(self.own)
    }
}

/// What the app holds after a phase.
#[derive(Clone, Debug, Deserialize)]
pub struct Report {
    pub phase: String,
    pub live: Vec<View>,
    pub dead: Vec<View>,
}

/// The ten `sqlalchemy_*` series of one host/program.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Series {
    pub processes: u64,
    pub pools: u64,
    pub connections: u64,
    pub checked_out: u64,
    pub checked_in: u64,
    pub detached: u64,
    pub checkouts: u64,
    pub connects: u64,
    pub disconnects: u64,
    pub invalidations: u64,
}

impl Series {
    /// Every series' name and value.
    pub fn series(&self) -> [(&'static str, u64); 10] {
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

/// The series of every host/program, keyed by (host, program).
pub type Programs = BTreeMap<(String, String), Series>;

/// Whether the scrape shows exactly `want`: every series of every
/// host/program, and no other host/program.
pub fn shows(samples: &BTreeMap<String, f64>, want: &Programs) -> bool {
    let programs = samples
        .keys()
        .filter(|k| k.starts_with("sqlalchemy_processes{"))
        .count();
    programs == want.len()
        && want.iter().all(|((host, program), e)| {
            e.series().iter().all(|(name, value)| {
                super::sqla(samples, name, host, program) == Some(*value as f64)
            })
        })
}

/// The interpreter with the real client installed: `SCE_PYTHON`, else
/// `.venv/bin/python`. Missing is a failure, never a skip.
pub fn python() -> &'static Path {
    try_python().unwrap_or_else(|e| panic!("{e}"))
}

/// [`python`], or why there is none (for the benchmark, which reports it).
pub fn try_python() -> Result<&'static Path, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let path = std::env::var_os("SCE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| super::repo().join(".venv/bin/python"));
        let mut child = Command::new(&path)
            .args(["-c", "import sqlalchemy, sqlalchemy_collectd"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}; {HINT}", path.display()))?;
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
                    return Err(format!("{} -c 'import ...' hangs; {HINT}", path.display()));
                }
            }
        };
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(format!(
                "{} cannot import sqlalchemy_collectd: {}; {HINT}",
                path.display(),
                stderr.trim()
            ));
        }
        Ok(path)
    });
    found.as_deref().map_err(Clone::clone)
}

/// The directory `sqlalchemy_collectd` is installed in (the venv's
/// site-packages), for collectd's python plugin (`ModulePath`).
pub fn site_packages() -> PathBuf {
    try_site_packages().unwrap_or_else(|e| panic!("{e}"))
}

/// [`site_packages`], or why it cannot be found.
pub fn try_site_packages() -> Result<PathBuf, String> {
    let python = try_python()?;
    let out = Command::new(python)
        .args([
            "-c",
            "import os, sqlalchemy_collectd as m; \
             print(os.path.dirname(os.path.dirname(os.path.abspath(m.__file__))))",
        ])
        .output()
        .map_err(|e| format!("run {}: {e}; {HINT}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot locate sqlalchemy_collectd: {}; {HINT}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.join("sqlalchemy_collectd/server/plugin.py").exists() {
        return Err(format!(
            "no sqlalchemy_collectd/server/plugin.py under {}; {HINT}",
            dir.display()
        ));
    }
    Ok(dir)
}

/// A running `app.py <scenario>`, with its SQLite files in a directory of
/// its own that is removed after the app.
pub struct App {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    name: String,
    /// Dropped after the app is reaped.
    _workdir: super::TempDir,
}

impl App {
    /// Starts `app.py <scenario>` sending to 127.0.0.1:`port` as `host`.
    pub fn start(scenario: &str, port: u16, host: &str) -> App {
        App::start_with(scenario, port, host, &[])
    }

    /// [`App::start`] with the scenario's own arguments `extra` (e.g.
    /// `--url` of scenario "postgres").
    pub fn start_with(scenario: &str, port: u16, host: &str, extra: &[&str]) -> App {
        let python = python();
        let workdir = super::TempDir::new("app", scenario);
        let script = super::repo().join("tests/clients/app.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(scenario)
            .args(["--port", &port.to_string()])
            .arg("--workdir")
            .arg(workdir.path())
            .args(["--host", host])
            .args(extra)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}; {HINT}", script.display()));
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
            _workdir: workdir,
            name: scenario.to_owned(),
        }
    }

    /// The next report line, parsed as `T`, within `timeout`; `phase` (the
    /// phase it should be, if known) is for messages only.
    pub fn read_report<T: DeserializeOwned>(&self, phase: Option<&str>, timeout: Duration) -> T {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "app {}: no report{} within {timeout:?}; stderr:\n{}",
                self.name,
                phase
                    .map(|p| format!(" of phase {p:?}"))
                    .unwrap_or_default(),
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "app {}: exited {} ({HINT}); stderr:\n{}",
                self.name,
                phase.map_or_else(
                    || "without a report".to_owned(),
                    |p| format!("before phase {p:?}")
                ),
                self.stderr()
            ),
        };
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("app {}: bad report {line:?}: {e}", self.name))
    }

    /// The report of the next phase, which must be `phase`; every process
    /// that reports must still run the client's sender thread.
    pub fn report(&self, phase: &str) -> Report {
        let report: Report = self.read_report(Some(phase), REPORT_TIMEOUT);
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
    pub fn next(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open until drop");
        stdin
            .write_all(b"next\n")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("app {}: write to stdin: {e}", self.name));
    }

    /// What the app wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stdin.take();
        kill_and_reap(&mut self.child, true, &format!("app {}", self.name));
        if std::thread::panicking() {
            eprintln!("app {} stderr:\n{}", self.name, self.stderr());
        }
    }
}
