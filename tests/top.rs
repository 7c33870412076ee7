//! `/api/v1/pools` and `sqlalchemy-collectd-exporter top` against a live
//! exporter: the document for a replayed capture, `top --once`'s table (over
//! plain HTTP, and over TLS with basic auth and a client certificate, the
//! exporter taking a `--web.config.file`), its one-line errors when the
//! exporter is away or refuses it, and the full screen in tmux while the
//! real Python client changes its pool.
//!
//! Expected values come from what was sent: the captured datagrams (decoded
//! here) or the app's own report of the pool it holds. Only the age of the
//! last report depends on when the test runs; it is checked against the
//! time the test measured around sending and reading.

mod common;

use bytes::Bytes;
use common::TempDir;
use common::client::App;
use common::pki::Pki;
use serde_json::{Value as Json, json};
use sqlalchemy_collectd_exporter::collectd::{Value, decode};
use sqlalchemy_collectd_exporter::top::client::PASSWORD_ENV;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const CAPTURE: &str = "05_sqla_fork_workers_two_programs";
const POOL_SIZE: f64 = 5.0;
const MAX_OVERFLOW: f64 = 10.0;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A config file giving `program` a capacity of POOL_SIZE + MAX_OVERFLOW per pool.
fn capacity_for(dir: &TempDir, program: &str) -> PathBuf {
    let path = dir.0.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "pools:\n  - programs: [\"{program}\"]\n    pool_size: {POOL_SIZE}\n    max_overflow: {MAX_OVERFLOW}\n"
        ),
    )
    .expect("write config");
    path
}

/// One host/program of a capture: each process's last pool gauges and last
/// totals, summed (each process's totals only grow within a capture).
#[derive(Debug, Default)]
struct Sent {
    processes: u64,
    /// numpools, checkedout, checkedin, detached, connections.
    pool: [f64; 5],
    /// checkouts, invalidated, connects, disconnects.
    totals: [u64; 4],
    interval: f64,
    /// The most checked out and connections summed over the processes after
    /// any datagram, in the order sent (all are live while replayed).
    peak: [f64; 2],
}

/// Host, program, process token, type.
type ValueListKey = (String, String, String, String);

fn sent(scenario: &str) -> BTreeMap<(String, String), Sent> {
    let mut last: BTreeMap<ValueListKey, (Vec<Value>, f64)> = BTreeMap::new();
    let mut peaks: BTreeMap<(String, String), [f64; 2]> = BTreeMap::new();
    for d in common::datagrams(scenario) {
        let packet = decode(&Bytes::from(d)).expect("captured datagrams decode");
        for vl in packet.value_lists {
            let id = &vl.id;
            let (host, program) = (id.host.as_str(), id.plugin_instance.as_str());
            last.insert(
                (
                    host.to_owned(),
                    program.to_owned(),
                    id.type_instance.as_str().to_owned(),
                    id.type_.as_str().to_owned(),
                ),
                (vl.values.iter().collect(), vl.interval.as_secs_f64()),
            );
            let mut held = [0.0; 2];
            for ((h, p, _, t), (values, _)) in &last {
                if (h.as_str(), p.as_str(), t.as_str()) == (host, program, "sqlalchemy_pool") {
                    for (sum, i) in held.iter_mut().zip([1, 4]) {
                        if let Some(Value::Gauge(g)) = values.get(i) {
                            *sum += g;
                        }
                    }
                }
            }
            let peak = peaks
                .entry((host.to_owned(), program.to_owned()))
                .or_default();
            *peak = [peak[0].max(held[0]), peak[1].max(held[1])];
        }
    }
    let mut out: BTreeMap<(String, String), Sent> = BTreeMap::new();
    let mut tokens: BTreeMap<(String, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    for ((host, program, token, type_), (values, interval)) in last {
        let s = out.entry((host.clone(), program.clone())).or_default();
        tokens.entry((host, program)).or_default().insert(token);
        s.interval = interval;
        for (i, v) in values.into_iter().enumerate() {
            match (type_.as_str(), v) {
                ("sqlalchemy_pool", Value::Gauge(g)) => s.pool[i] += g,
                ("sqlalchemy_totals", Value::Derive(d)) => {
                    s.totals[i] += u64::try_from(d).expect("totals are positive")
                }
                other => panic!("unexpected value list {other:?}"),
            }
        }
    }
    for (k, t) in tokens {
        out.get_mut(&k).expect("program").processes = t.len() as u64;
    }
    for (k, peak) in peaks {
        out.get_mut(&k).expect("program").peak = peak;
    }
    out
}

/// The captured datagrams, replayed at once into an exporter that gives
/// `forkapp` a capacity; returns the exporter and the time before sending.
fn replayed(dir: &TempDir) -> (common::Exporter, f64) {
    let config = capacity_for(dir, "forkapp");
    let config = config.to_str().expect("UTF-8 path");
    let e = common::start(&["--config.file", config]);
    let sent_at = replay(&e, || common::scrape(e.http));
    (e, sent_at)
}

/// Sends the captured datagrams and waits, scraping with `scrape`, until
/// the exporter has judged them all; returns the time before sending.
fn replay(e: &common::Exporter, scrape: impl Fn() -> String) -> f64 {
    let datagrams = common::datagrams(CAPTURE);
    let before = unix_now();
    common::send_and_settle_with(e, &datagrams, datagrams.len(), scrape);
    before
}

#[test]
fn pools_document_is_exactly_what_was_sent() {
    let dir = TempDir::new("top", "api");
    let (e, sent_at) = replayed(&dir);
    let settled = unix_now();
    let r = common::get(e.http, "/api/v1/pools", &[]);
    let read = unix_now();
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (200, "application/json")
    );
    let mut doc: Json = serde_json::from_slice(&r.body).expect("JSON");

    // The clock-dependent fields: within what the test measured, and
    // consistent with each other; then fixed for the exact comparison.
    let server_time = doc["server_time_unix"].as_f64().expect("server time");
    assert!(
        (settled..=read).contains(&server_time),
        "{settled} ≤ {server_time} ≤ {read}"
    );
    doc["server_time_unix"] = json!(0.0);
    for p in doc["programs"].as_array_mut().expect("programs") {
        let last = p["last_report_unix"].as_f64().expect("last report");
        assert!(
            (sent_at..=settled).contains(&last),
            "{sent_at} ≤ {last} ≤ {settled}"
        );
        let age = ((server_time - last) * 1000.0).round() / 1000.0;
        assert_eq!(p["age_seconds"].as_f64(), Some(age));
        p["last_report_unix"] = json!(0.0);
        p["age_seconds"] = json!(0.0);
    }

    let programs: Vec<Json> = sent(CAPTURE)
        .into_iter()
        .map(|((host, program), s)| {
            let [pools, checked_out, checked_in, detached, connections] = s.pool;
            let [checkouts, invalidations, connects, disconnects] = s.totals;
            let max = (program == "forkapp").then_some((POOL_SIZE + MAX_OVERFLOW) * pools);
            json!({
                "host": host,
                "program": program,
                "state": "live",
                "processes": s.processes,
                "pools": pools as u64,
                "connections": connections as u64,
                "checked_out": checked_out as u64,
                "checked_in": checked_in as u64,
                "detached": detached as u64,
                "connections_peak": s.peak[1] as u64,
                "checked_out_peak": s.peak[0] as u64,
                "checkouts": checkouts,
                "invalidations": invalidations,
                "connects": connects,
                "disconnects": disconnects,
                "transactions": null,
                "last_report_unix": 0.0,
                "age_seconds": 0.0,
                "interval_seconds": s.interval,
                "late": false,
                "connections_max": max.map(|m| m as u64),
                "usage": max.map(|m| checked_out / m),
            })
        })
        .collect();
    assert_eq!(programs.len(), 2, "the capture has two programs");
    let want = json!({
        "exporter": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": env!("SCE_GIT_REVISION"),
        },
        "server_time_unix": 0.0,
        "late_after_intervals": 1.5,
        "programs": programs,
    });
    assert_eq!(doc, want);
}

/// The columns of a plain table: two spaces between, text left, numbers right.
fn table(rows: &[[String; 10]]) -> String {
    let mut widths = [0usize; 10];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < 3 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn titles() -> [String; 10] {
    [
        "HOST", "PROGRAM", "STATE", "AGE/INT", "PROCS", "CONNS", "OUT", "CKOUT/S", "INVAL/S",
        "USE%",
    ]
    .map(str::to_owned)
}

/// Checks an AGE/INT cell (`0.4s/2s`): the age lies within `bound` seconds;
/// returns the cell.
fn check_age(cell: &str, interval: &str, bound: f64) -> String {
    let age = cell
        .strip_suffix(&format!("s/{interval}s"))
        .and_then(|a| a.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("AGE/INT cell {cell:?}"));
    assert!(
        (0.0..=bound).contains(&age),
        "age {age} outside 0..={bound}"
    );
    cell.to_owned()
}

fn top(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("top")
        .args(args)
        .output()
        .expect("binary runs")
}

/// What `top --once` must print for the replayed capture, `elapsed`
/// seconds after sending began (the age cells are read from `stdout` and
/// checked against it).
fn once_table(stdout: &str, elapsed: f64) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut rows = vec![titles()];
    for (i, ((host, program), s)) in sent(CAPTURE).into_iter().enumerate() {
        let [pools, checked_out, _, _, connections] = s.pool;
        let line = lines
            .get(i + 1)
            .unwrap_or_else(|| panic!("row {i} in\n{stdout}"));
        let age = line.split_whitespace().nth(3).expect("AGE/INT cell");
        // One fetch: no change or rate yet; the peaks are the exporter's.
        let [out_peak, connections_peak] = s.peak;
        rows.push([
            host,
            program.clone(),
            "live".into(),
            check_age(age, &format!("{}", s.interval), elapsed + 0.05),
            format!("{}/{}", s.processes, s.processes),
            format!("{connections}/{connections_peak}/-"),
            format!("{checked_out}/{out_peak}/-"),
            "-".into(),
            "-".into(),
            if program == "forkapp" {
                format!(
                    "{:.1}%",
                    100.0 * checked_out / ((POOL_SIZE + MAX_OVERFLOW) * pools)
                )
            } else {
                "-".into()
            },
        ]);
    }
    assert_eq!(rows.len(), 3, "the capture has two programs");
    table(&rows)
}

#[test]
fn top_once_prints_the_table_of_what_was_sent() {
    let dir = TempDir::new("top", "once");
    let (e, sent_at) = replayed(&dir);
    let out = top(&["--once", "--url", &format!("http://{}", e.http)]);
    let elapsed = unix_now() - sent_at;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    println!("{stdout}");
    assert_eq!(stdout, once_table(&stdout, elapsed));
}

/// One process of a capture: its token, its last pool gauges and totals,
/// its interval and the client time of its last value list.
#[derive(Debug, Default)]
struct SentProcess {
    token: String,
    pool: [f64; 5],
    totals: [u64; 4],
    interval: f64,
    time: f64,
}

/// Every process of `host`/`program` in a capture.
fn sent_processes(scenario: &str, host: &str, program: &str) -> Vec<SentProcess> {
    let mut out: BTreeMap<String, SentProcess> = BTreeMap::new();
    for d in common::datagrams(scenario) {
        let packet = decode(&Bytes::from(d)).expect("captured datagrams decode");
        for vl in packet.value_lists {
            let id = &vl.id;
            if id.host.as_str() != host || id.plugin_instance.as_str() != program {
                continue;
            }
            let token = id.type_instance.as_str().to_owned();
            let p = out.entry(token.clone()).or_insert_with(|| SentProcess {
                token,
                ..SentProcess::default()
            });
            p.interval = vl.interval.as_secs_f64();
            p.time = p.time.max(vl.time.as_secs_f64());
            for (i, v) in vl.values.iter().enumerate() {
                match (id.type_.as_str(), v) {
                    ("sqlalchemy_pool", Value::Gauge(g)) => p.pool[i] = g,
                    ("sqlalchemy_totals", Value::Derive(d)) => {
                        p.totals[i] = u64::try_from(d).expect("totals are positive")
                    }
                    other => panic!("unexpected value list {other:?}"),
                }
            }
        }
    }
    out.into_values().collect()
}

/// Columns of a plain table of any width: two spaces between, the `text`
/// columns left, the others right.
fn plain_table(rows: &[Vec<String>], text: &[usize]) -> String {
    let mut widths = vec![0usize; rows[0].len()];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if text.contains(&i) {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

const PROCESS_TITLES: [&str; 14] = [
    "PID",
    "TOKEN",
    "STATE",
    "AGE/INT",
    "POOLS",
    "CONNS",
    "OUT",
    "IN",
    "DET",
    "CKOUTS",
    "CKOUT/S",
    "INVAL",
    "CONN/DISC",
    "CLOCK",
];

/// Checks a CLOCK cell (`-12.3s`): within 0.1 s of `lo..=hi`; returns it.
fn check_clock(cell: &str, lo: f64, hi: f64) -> String {
    let offset = cell
        .strip_suffix('s')
        .and_then(|o| o.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("CLOCK cell {cell:?}"));
    assert!(
        (lo - 0.1..=hi + 0.1).contains(&offset),
        "clock offset {offset} outside {lo}..={hi}"
    );
    cell.to_owned()
}

#[test]
fn top_once_processes_prints_each_process_of_the_program() {
    let dir = TempDir::new("top", "once-processes");
    let (e, sent_at) = replayed(&dir);
    let settled = unix_now();
    let ((host, program), _) = sent(CAPTURE)
        .into_iter()
        .max_by_key(|(_, s)| s.processes)
        .expect("a program");
    let mut processes = sent_processes(CAPTURE, &host, &program);
    assert!(processes.len() > 1, "a program of several processes");
    let pid = |p: &SentProcess| -> u32 {
        p.token
            .split_once(':')
            .and_then(|(pid, _)| pid.parse().ok())
            .expect("the client's token")
    };
    // Most checked out first, then by pid: what the exporter sorts by.
    processes.sort_by(|a, b| b.pool[1].total_cmp(&a.pool[1]).then(pid(a).cmp(&pid(b))));

    let out = top(&[
        "--once",
        "--url",
        &format!("http://{}", e.http),
        "--processes",
        &format!("{host}/{program}"),
    ]);
    let elapsed = unix_now() - sent_at;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.status.success());
    println!("{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let mut rows = vec![PROCESS_TITLES.map(str::to_owned).to_vec()];
    for (i, p) in processes.iter().enumerate() {
        let cells: Vec<&str> = lines
            .get(i + 1)
            .unwrap_or_else(|| panic!("row {i} in\n{stdout}"))
            .split_whitespace()
            .collect();
        let [pools, checked_out, checked_in, detached, connections] = p.pool;
        let [checkouts, invalidations, connects, disconnects] = p.totals;
        rows.push(vec![
            pid(p).to_string(),
            p.token.clone(),
            "live".into(),
            check_age(cells[3], &format!("{}", p.interval), elapsed + 0.05),
            format!("{pools}"),
            format!("{connections}"),
            format!("{checked_out}"),
            format!("{checked_in}"),
            format!("{detached}"),
            checkouts.to_string(),
            "-".into(),
            invalidations.to_string(),
            format!("{connects}/{disconnects}"),
            check_clock(cells[13], p.time - settled, p.time - sent_at),
        ]);
    }
    assert_eq!(stdout, plain_table(&rows, &[1, 2]));

    // An unknown program is the exporter's 404, in one line.
    let url = format!("http://{}", e.http);
    let out = top(&["--once", "--url", &url, "--processes", "nohost/noprogram"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {url}/api/v1/processes?host=nohost&program=noprogram&sort=checked_out&offset=0&limit=1000: \
             HTTP 404 Not Found: no host \"nohost\" with program \"noprogram\": never seen, or forgotten after --forget-after\n"
        )
    );
    let out = top(&["--once", "--url", &url, "--processes", "no-slash"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"no-slash\": must be HOST/PROGRAM (e.g. web1/api)"),
        "{stderr}"
    );
}

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

/// Client authentication lines for the web config.
const REQUIRE_CLIENT_CERT: &str =
    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n";

/// An exporter over TLS with `pki`'s `server` certificate, basic auth for
/// USER/PASSWORD and `client_auth` lines, giving `forkapp` a capacity, with
/// the capture replayed (scraped over TLS as `top` connects, with `pki`'s
/// `client` certificate when `client_cert`); returns the exporter and the
/// time before sending.
fn replayed_over_tls(pki: &Pki, client_auth: &str, client_cert: bool) -> (common::Exporter, f64) {
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let web = pki.path("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{client_auth}\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .expect("write web config");
    let config = capacity_for(&pki.dir, "forkapp");
    let e = common::start(&[
        "--config.file",
        config.to_str().expect("UTF-8 path"),
        "--web.config.file",
        web.to_str().expect("UTF-8 path"),
    ]);
    let agent = tls_agent(pki, client_cert);
    let url = format!("https://{}/metrics", e.http);
    let authorization = common::basic_auth(USER, PASSWORD);
    let sent_at = replay(&e, || {
        agent
            .get(&url)
            .header("Authorization", &authorization)
            .call()
            .expect("scrape over TLS")
            .body_mut()
            .read_to_string()
            .expect("read the scrape")
    });
    (e, sent_at)
}

/// A client that trusts `pki`'s CA and, when `client_cert`, presents its
/// `client` certificate.
fn tls_agent(pki: &Pki, client_cert: bool) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let pem = |name: &str| std::fs::read(pki.path(name)).expect("read PEM");
    let ca = Certificate::from_pem(&pem("ca.crt")).expect("the CA");
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca]));
    if client_cert {
        let cert = Certificate::from_pem(&pem("client.crt")).expect("client certificate");
        let key = PrivateKey::from_pem(&pem("client.key")).expect("client key");
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls.build())
        .build()
        .into()
}

/// `top` with the password in the environment.
fn top_with_password(args: &[&str], password: &str) -> Output {
    Command::new(BIN)
        .arg("top")
        .args(args)
        .env(PASSWORD_ENV, password)
        .output()
        .expect("binary runs")
}

#[test]
fn top_once_over_https_trusts_the_ca_file_and_sends_basic_auth() {
    let pki = Pki::new("top-tls");
    pki.write("server", "exporter-1");
    let (e, sent_at) = replayed_over_tls(&pki, "", false);
    let url = format!("https://{}", e.http);
    let ca = pki.arg("ca.crt");
    std::fs::write(pki.path("password"), format!("{PASSWORD}\n")).expect("write password");
    let password = pki.arg("password");

    let out = top(&[
        "--once",
        "--url",
        &url,
        "--ca-file",
        &ca,
        "--user",
        USER,
        "--password-file",
        &password,
    ]);
    let elapsed = unix_now() - sent_at;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.status.success());
    assert_eq!(stdout, once_table(&stdout, elapsed));

    // The password from the environment; a wrong one is refused.
    let out = top_with_password(
        &["--once", "--url", &url, "--ca-file", &ca, "--user", USER],
        "rabbit",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: exporter unreachable: {url}/api/v1/pools: HTTP 401 Unauthorized\n")
    );

    // Without the CA, the exporter's certificate is not trusted.
    let out = top_with_password(&["--once", "--url", &url, "--user", USER], PASSWORD);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: exporter unreachable: {url}/api/v1/pools: io: invalid peer certificate: UnknownIssuer\n"
        )
    );
}

#[test]
fn top_once_presents_a_client_certificate_when_the_exporter_requires_one() {
    let pki = Pki::new("top-mtls");
    pki.write("server", "exporter-1");
    pki.write("client", "top");
    let (e, sent_at) = replayed_over_tls(&pki, REQUIRE_CLIENT_CERT, true);
    let url = format!("https://{}", e.http);
    let (ca, cert, key) = (
        pki.arg("ca.crt"),
        pki.arg("client.crt"),
        pki.arg("client.key"),
    );
    let base = ["--once", "--url", &url, "--ca-file", &ca, "--user", USER];

    let with_cert = [&base[..], &["--cert-file", &cert, "--key-file", &key]].concat();
    let out = top_with_password(&with_cert, PASSWORD);
    let elapsed = unix_now() - sent_at;
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.status.success());
    assert_eq!(stdout, once_table(&stdout, elapsed));

    // Without one, the exporter ends the handshake.
    let out = top_with_password(&base, PASSWORD);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: exporter unreachable: {url}/api/v1/pools: io: received fatal alert: CertificateRequired\n"
        )
    );

    // A key that is not the certificate's is a flag error, before any connection.
    let out = top_with_password(
        &[
            &base[..],
            &["--cert-file", &cert, "--key-file", &pki.arg("server.key")],
        ]
        .concat(),
        PASSWORD,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: --key-file {}: not usable with --cert-file {cert}: the certificate is for another key\n",
            pki.arg("server.key")
        )
    );
}

#[test]
fn top_once_without_an_exporter_fails_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = top(&["--once", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: exporter unreachable: http://127.0.0.1:{port}/api/v1/pools: io: Connection refused (os error 111)\n"
        )
    );
}

#[test]
fn top_rejects_bad_flags_with_one_line() {
    let out = top(&["--once", "--url", "localhost:9827"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --url \"localhost:9827\": must start with http:// or https://\n"
    );
    let out = top(&["--refresh", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "tmux must be installed (Debian package tmux); run the README's test command, \
             scripts/test.sh, which installs it"
        );
        Tmux {
            socket: format!("sce-top-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The cells of `program`'s row on a screen, if it shows one.
fn row(screen: &str, host: &str, program: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|l| {
        let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
        (cells.len() == 10 && cells[0] == host && cells[1] == program).then_some(cells)
    })
}

#[test]
fn top_in_tmux_follows_the_real_client() {
    const HOST: &str = "itest";
    const PROGRAM: &str = "checkout";
    let tmux = Tmux::new();
    let dir = TempDir::new("top", "tmux");
    let config = capacity_for(&dir, PROGRAM);
    let e = common::start(&["--config.file", config.to_str().expect("UTF-8 path")]);
    let status = dir.0.join("status");
    let command = format!(
        "{BIN} top --url http://{} --refresh 250ms; echo $? > {}",
        e.http,
        status.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");

    let mut app = App::start("checkout", e.udp.port(), HOST);
    let (mut peak_connections, mut peak_out) = (0, 0);
    let mut app_view = None;
    let mut last = String::new();
    for (i, phase) in ["init", "three_out", "one_returned"].iter().enumerate() {
        if i > 0 {
            app.next();
        }
        let report = app.report(phase);
        let [v] = &report.live[..] else {
            panic!("one process expected: {report:?}")
        };
        app_view = Some(v.clone());
        let s = v.client_state();
        peak_connections = peak_connections.max(s.open);
        peak_out = peak_out.max(s.held);
        let capacity = (POOL_SIZE + MAX_OVERFLOW) * v.engines as f64;
        // Settled: no change since the previous refresh, so Δ 0 and rates 0.
        let want = [
            HOST.to_owned(),
            PROGRAM.to_owned(),
            "live".into(),
            String::new(),
            "1/1".into(),
            format!("{}/{peak_connections}/0", s.open),
            format!("{}/{peak_out}/0", s.held),
            "0.0".into(),
            "0.0".into(),
            format!("{:.1}%", 100.0 * s.held as f64 / capacity),
        ];
        let cells = common::poll(
            Duration::from_secs(20),
            &format!("phase {phase}: row {want:?} on screen"),
            || {
                last = tmux.screen();
                let mut cells = row(&last, HOST, PROGRAM)?;
                let age = std::mem::take(&mut cells[3]);
                (cells == want).then_some(age)
            },
        );
        // Every refresh is at most 250 ms old and the client reports every
        // 2.0–2.2 s: a live program's report is younger than 1.5 intervals.
        check_age(&cells, "2", 3.0);
    }
    println!("top in tmux (160x40):\n{last}");
    let title = last.lines().next().unwrap_or_default();
    assert!(
        title.starts_with(&format!(
            "http://{} — exporter {} — ",
            e.http,
            env!("CARGO_PKG_VERSION")
        )) && title.ends_with(" — 1 program on 1 host"),
        "{title}"
    );
    assert_eq!(
        last.lines()
            .nth(1)
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec![
            "HOST▲", "PROGRAM", "STATE", "AGE/INT", "PROCS", "CONNS", "OUT", "CKOUT/S", "INVAL/S",
            "USE%"
        ])
    );

    // Enter opens the selected (the only) row's processes: the app's one
    // process, its pid, exactly its pool and totals; settled, so no
    // checkouts per second.
    let v = app_view.expect("the app's last report");
    let s = v.client_state();
    let enter = tmux.run(&["send-keys", "-t", "top", "Enter"]);
    assert!(enter.status.success(), "{enter:?}");
    let want = [
        v.pid.to_string(),
        String::new(),
        "live".into(),
        String::new(),
        v.engines.to_string(),
        s.open.to_string(),
        s.held.to_string(),
        (s.idle + u64::from(s.none_checkins > 0)).to_string(),
        s.detached.to_string(),
        s.checkouts.to_string(),
        "0.0".into(),
        s.invalidations.to_string(),
        format!("{}/{}", s.connects, s.disconnects),
        String::new(),
    ];
    let (token, age, clock) = common::poll(
        Duration::from_secs(20),
        &format!("the process row {want:?} on screen"),
        || {
            last = tmux.screen();
            let mut cells = last.lines().find_map(|l| {
                let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
                (cells.len() == 14 && cells[0] == v.pid.to_string()).then_some(cells)
            })?;
            let token = std::mem::take(&mut cells[1]);
            let age = std::mem::take(&mut cells[3]);
            let clock = std::mem::take(&mut cells[13]);
            (cells == want).then_some((token, age, clock))
        },
    );
    assert!(token.starts_with(&format!("{}:", v.pid)), "{token}");
    check_age(&age, "2", 3.0);
    // The client and the exporter share this machine's clock; the client
    // sends whole seconds.
    check_clock(&clock, -1.5, 0.5);
    println!("top's process view in tmux (160x40):\n{last}");
    let title = last.lines().next().unwrap_or_default();
    assert!(
        title.starts_with(&format!(
            "http://{} — processes of {HOST}/{PROGRAM} — ",
            e.http
        )) && title.ends_with(" — 1 tracked, 1 live"),
        "{title}"
    );
    let process_screen = last.clone();
    // Esc goes back to the programs.
    let esc = tmux.run(&["send-keys", "-t", "top", "Escape"]);
    assert!(esc.status.success(), "{esc:?}");
    common::poll(Duration::from_secs(10), "the programs again", || {
        last = tmux.screen();
        row(&last, HOST, PROGRAM)
    });

    let sent = tmux.run(&["send-keys", "-t", "top", "q"]);
    assert!(sent.status.success(), "{sent:?}");
    let code = common::poll(Duration::from_secs(10), "top to exit after q", || {
        std::fs::read_to_string(&status)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(code, "0\n");
    common::poll(Duration::from_secs(10), "the tmux session to end", || {
        (!tmux.run(&["has-session", "-t", "top"]).status.success()).then_some(())
    });
    save_screen(&last, "docs/top-screen.txt");
    save_screen(&process_screen, "docs/top-processes-screen.txt");
}

/// Keeps a screen for the docs (`docs/top-screen.txt`,
/// `docs/top-processes-screen.txt`) when asked.
fn save_screen(screen: &str, file: &str) {
    if std::env::var_os("UPDATE_SCREEN").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        std::fs::write(path, screen).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
}
