//! Reload, against the built binary with `--config.file`, `--web.config.file`
//! (basic auth users) and `--collectd.auth-file`: SIGHUP and `POST
//! /-/reload` are one reload. For each case (one file broken while the
//! others change, or all three fine) both triggers leave the same users
//! accepted, the same `…_last_reload_successful` gauges and the same outcome
//! per file, in the log for SIGHUP and in the answer for the POST.

mod common;

use common::TempDir;
use common::binary::Binary;
use common::process::Log;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const TIMEOUT: Duration = Duration::from_secs(20);

/// The web users: alice is in every web config here, bob only in some.
const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password");

const CONFIG: &str = "pools:\n  - programs: [api]\n    pool_size: 5\n    max_overflow: 10\n";
const CONFIG_CHANGED: &str = "pools:\n  - programs: [api]\n    pool_size: 5\n    max_overflow: 10\n  \
     - programs: [worker]\n    pool_size: 2\n    max_overflow: 0\n\
     databases:\n  - name: main\n    max_connections: 100\n    programs: [api, worker]\n";
const CONFIG_BROKEN: &str = "pools:\n  - programs: [api]\n    pool_size: 5\n    max_overflw: 10\n";
const WEB_BROKEN: &str = "basic_auth_users:\n  alice: not-a-bcrypt-hash\n";
const AUTH: &str = "alice: wonderland\n";
const AUTH_CHANGED: &str = "alice: wonderland\nbob: builder\n";
const AUTH_BROKEN: &str = "alice wonderland\n";

/// The reload families, in the order of the files.
const GAUGES: [&str; 3] = [
    "sqlalchemy_collectd_exporter_config_last_reload_successful",
    "sqlalchemy_collectd_exporter_web_config_last_reload_successful",
    "sqlalchemy_collectd_exporter_auth_file_last_reload_successful",
];
/// How logs and answers name the files, in the order they are reloaded.
const FILES: [&str; 3] = ["config file", "web config file", "auth file"];

/// A web config file with these users (bcrypt cost 4, to keep the test fast).
fn web(users: &[(&str, &str)]) -> String {
    let mut text = "basic_auth_users:\n".to_owned();
    for (user, password) in users {
        let hash = bcrypt::hash(password, 4).expect("bcrypt");
        text.push_str(&format!("  {user}: '{hash}'\n"));
    }
    text
}

#[derive(Clone, Copy, Debug)]
enum Trigger {
    Sighup,
    Post,
}

/// What a user sees after a reload.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Each web user and the status of `GET /-/healthy` with its password.
    users: Vec<(&'static str, u16)>,
    /// Each reload family and its value.
    gauges: Vec<(&'static str, f64)>,
    /// Each file and, when it reloaded, the summary of what is in use.
    files: Vec<(&'static str, Option<String>)>,
}

/// The three files, written into a directory of their own.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new(case: &str, trigger: Trigger) -> Files {
        let files = Files {
            dir: TempDir::new("reload", &format!("{case}-{trigger:?}")),
        };
        files.write(CONFIG, &web(&[ALICE]), AUTH);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, config: &str, web: &str, auth: &str) {
        for (name, text) in [("config.yml", config), ("web.yml", web), ("authfile", auth)] {
            std::fs::write(self.path(name), text).expect("write");
        }
    }

    /// The flags that name them.
    fn flags(&self) -> Vec<String> {
        [
            ("--config.file", "config.yml"),
            ("--web.config.file", "web.yml"),
            ("--collectd.auth-file", "authfile"),
        ]
        .iter()
        .flat_map(|(flag, name)| [flag.to_string(), self.path(name).display().to_string()])
        .collect()
    }
}

/// The value of `key` in a logfmt line (quoted or not).
fn logfmt<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(' ').next(),
    }
}

/// The outcome of the next `files` files as the log tells it, in reload
/// order: each file's `<file> reloaded` line (with the summary) or `<file>
/// reload failed` line.
fn logged(log: &Log, files: usize) -> Vec<(&'static str, Option<String>)> {
    let mut out = Vec::new();
    while out.len() < files {
        let line = log
            .next_line(TIMEOUT)
            .unwrap_or_else(|| panic!("only {out:?} logged; the log:\n{}", log.text()));
        let Some(message) = logfmt(&line, "message") else {
            continue;
        };
        for file in FILES {
            if message == format!("{file} reloaded") {
                let summary = logfmt(&line, "summary").expect("a summary");
                out.push((file, Some(summary.to_owned())));
            } else if message.starts_with(&format!("{file} reload failed")) {
                out.push((file, None));
            }
        }
    }
    out
}

/// The outcome of each file as the answer to the POST tells it: one line
/// per file, `<file> <path>: reloaded (<summary>)` or `<file>: not
/// reloaded, …`.
fn answered(body: &str, files: &Files) -> Vec<(&'static str, Option<String>)> {
    let paths = ["config.yml", "web.yml", "authfile"].map(|n| files.path(n));
    body.lines()
        .map(|line| {
            FILES
                .iter()
                .zip(&paths)
                .find_map(|(&file, path)| {
                    let reloaded = format!("{file} {}: reloaded (", path.display());
                    if let Some(summary) = line.strip_prefix(&reloaded) {
                        let summary = summary.strip_suffix(')').expect("(summary)");
                        return Some((file, Some(summary.to_owned())));
                    }
                    line.starts_with(&format!("{file}: not reloaded, the last good one stays: "))
                        .then_some((file, None))
                })
                .unwrap_or_else(|| panic!("not a file's line: {line:?}"))
        })
        .collect()
}

/// Starts the exporter with the three files, changes them to `config`,
/// `web` and `auth`, reloads by `trigger`, and says what a user sees.
fn reload(case: &str, trigger: Trigger, config: &str, web: &str, auth: &str) -> Seen {
    let files = Files::new(case, trigger);
    let flags = files.flags();
    let e = Binary::start(BIN, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let alice = common::basic_auth(ALICE.0, ALICE.1);
    let authorized = [("Authorization", alice.as_str())];
    files.write(config, web, auth);
    let files_seen = match trigger {
        Trigger::Sighup => {
            e.signal(Signal::SIGHUP);
            logged(&e.log, FILES.len())
        }
        Trigger::Post => {
            // alice's password is good before and after every case.
            let (status, body) = common::post_with(e.http, "/-/reload", b"", &authorized);
            let answered = answered(&body, &files);
            let logged = logged(&e.log, answered.len());
            assert_eq!(logged, answered, "{case}: the log and the answer");
            let all = answered.iter().all(|(_, summary)| summary.is_some());
            assert_eq!(status, if all { 200 } else { 500 }, "{case}: {body}");
            answered
        }
    };
    let users = [ALICE, BOB]
        .iter()
        .map(|&(user, password)| {
            let authorization = common::basic_auth(user, password);
            let r = common::get(e.http, "/-/healthy", &[("Authorization", &authorization)]);
            (user, r.status)
        })
        .collect();
    let metrics = common::get(e.http, "/metrics", &authorized);
    assert_eq!(metrics.status, 200, "{case}: scrape as alice");
    let samples = common::samples(&String::from_utf8(metrics.body).expect("UTF-8"));
    let gauges = GAUGES
        .iter()
        .map(|&g| {
            let value = *samples
                .get(g)
                .unwrap_or_else(|| panic!("{case}: no {g} in the scrape"));
            (g, value)
        })
        .collect();
    Seen {
        users,
        gauges,
        files: files_seen,
    }
}

/// Both triggers on a fresh exporter each: the same, and as `want`.
fn same_outcome(case: &str, (config, web, auth): (&str, &str, &str), want: Seen) {
    let by_hup = reload(case, Trigger::Sighup, config, web, auth);
    let by_post = reload(case, Trigger::Post, config, web, auth);
    assert_eq!(by_hup, want, "{case}: SIGHUP");
    assert_eq!(by_post, want, "{case}: POST /-/reload");
}

fn seen(users: [u16; 2], gauges: [f64; 3], files: [Option<&str>; 3]) -> Seen {
    Seen {
        users: vec![(ALICE.0, users[0]), (BOB.0, users[1])],
        gauges: GAUGES.into_iter().zip(gauges).collect(),
        files: FILES
            .into_iter()
            .zip(files.map(|s| s.map(str::to_owned)))
            .collect(),
    }
}

// Issue 10: POST /-/reload stopped at the first file that did not load, so
// the files after it were neither reloaded nor reported, while SIGHUP
// reloaded them all. The first two cases fail on that: bob stays refused
// and the web config file's line is missing (a broken config file), or the
// auth file's line is missing (a broken web config file).

#[test]
fn a_broken_config_file_does_not_keep_the_web_config_from_adding_a_user() {
    same_outcome(
        "config-broken",
        (CONFIG_BROKEN, &web(&[ALICE, BOB]), AUTH),
        seen(
            [200, 200],
            [0.0, 1.0, 1.0],
            [
                None,
                Some("plain HTTP, 2 basic-auth users, 0 headers"),
                Some("1 users"),
            ],
        ),
    );
}

#[test]
fn a_broken_web_config_does_not_keep_the_auth_file_from_changing() {
    same_outcome(
        "web-broken",
        (CONFIG, WEB_BROKEN, AUTH_CHANGED),
        seen(
            [200, 401],
            [1.0, 0.0, 1.0],
            [Some("1 pool entries, 0 databases"), None, Some("2 users")],
        ),
    );
}

#[test]
fn three_good_files_are_all_reloaded() {
    same_outcome(
        "all-fine",
        (CONFIG_CHANGED, &web(&[ALICE, BOB]), AUTH_CHANGED),
        seen(
            [200, 200],
            [1.0, 1.0, 1.0],
            [
                Some("2 pool entries, 1 databases"),
                Some("plain HTTP, 2 basic-auth users, 0 headers"),
                Some("2 users"),
            ],
        ),
    );
}

#[test]
fn a_broken_auth_file_keeps_its_users_and_the_others_reload() {
    same_outcome(
        "auth-broken",
        (CONFIG, &web(&[ALICE]), AUTH_BROKEN),
        seen(
            [200, 401],
            [1.0, 1.0, 0.0],
            [
                Some("1 pool entries, 0 databases"),
                Some("plain HTTP, 1 basic-auth users, 0 headers"),
                None,
            ],
        ),
    );
}
