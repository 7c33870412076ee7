//! The shipped alert `SQLAlchemyPoolSaturation` end to end, from a real
//! SQLAlchemy pool to a notification.
//!
//! An in-process exporter with a capacity config (`--config.file`: the test
//! program has pool_size 2 + max_overflow 0), the real sqlalchemy-collectd
//! client (`tests/clients/app.py saturate`: one engine with exactly that pool,
//! both connections checked out and held, usage 100 %) sending to it, a real
//! Prometheus (`/usr/bin/prometheus`) scraping it and evaluating a generated
//! copy of `alerts/sqlalchemy.rules.yml` in which only the `for:` durations
//! are shortened, a real Alertmanager (`/usr/bin/prometheus-alertmanager`)
//! configured from `examples/alertmanager.yml` (its route, grouping and
//! inhibit rule; only the timers are shortened and the webhook URL points at
//! the test), and a webhook receiver in the test.
//!
//! The notification must be the critical `SQLAlchemyPoolSaturation` of the
//! app's host/program with its annotations; the warning, which fires too
//! (usage is above 95 %), must be inhibited by the example's inhibit rule.
//! When the app returns its connections, the resolved notification must
//! follow. Every webhook payload received is printed on stdout (run with
//! `--nocapture` to see them).
//!
//! Prometheus, Alertmanager and the Python client are required: a missing one
//! fails the test with a pointer to `scripts/test.sh`, which installs them.

mod common;

use common::TempDir;
use common::client::App;
use common::daemon::Daemon;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The scrape job name the rules select (`{job="sqlalchemy"}`).
const JOB: &str = "sqlalchemy";
/// Labels the app sends (`tests/clients/app.py saturate`).
const HOST: &str = "itest";
const PROGRAM: &str = "alertapp";
const ALERT: &str = "SQLAlchemyPoolSaturation";
const RUNBOOK_URL: &str = "docs/runbook.md#sqlalchemypoolsaturation";
/// The shipped rules and the example Alertmanager config the test derives
/// its configs from.
const RULES: &str = "alerts/sqlalchemy.rules.yml";
const ALERTMANAGER_EXAMPLE: &str = "examples/alertmanager.yml";
/// Capacity of the app's program: its one engine has pool_size 2 and
/// max_overflow 0 (`scenario_saturate`), and so has the config.
const EXPORTER_CONFIG: &str = r#"pools:
  - programs: ["alertapp"]
    hosts: ["itest"]
    pool_size: 2
    max_overflow: 0
"#;
const CAPACITY: f64 = 2.0;
/// Every `for:` of the test copy of the rules.
const SHORT_FOR: &str = "3s";
/// Alertmanager's timers in the test. Prometheus sets an alert's startsAt to
/// when it became pending, and Alertmanager flushes a new group at once when
/// startsAt + group_wait is already past: a group_wait well above SHORT_FOR
/// makes the first notification wait for both alerts of the group (warning
/// and critical reach Alertmanager in separate batches, milliseconds apart),
/// so the inhibit rule is judged with both present, as in production.
const GROUP_WAIT: &str = "8s";
const GROUP_INTERVAL: &str = "1s";
const HINT: &str = "run the README's test command, scripts/test.sh, which installs Debian's \
                    prometheus and prometheus-alertmanager packages and the Python client in .venv";

/// Start-up of Prometheus, Alertmanager and the Python app (imports included).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// From the app's report to its usage in Prometheus: the client sends every
/// 2 s, Prometheus scrapes and evaluates rules every second.
const DATA_TIMEOUT: Duration = Duration::from_secs(20);
/// From the usage in Prometheus to the firing notification: SHORT_FOR,
/// GROUP_WAIT and a few evaluation and send delays.
const FIRING_TIMEOUT: Duration = Duration::from_secs(25);
/// From the connections' return to the resolved notification: a report of
/// the client, a scrape, two evaluations and GROUP_INTERVAL.
const RESOLVED_TIMEOUT: Duration = Duration::from_secs(20);

// ---- generated configs ----------------------------------------------------------

/// The rules with every `for:` replaced by `short`, and nothing else
/// changed; the number of `for:` replaced.
fn shorten_for(rules: &str, short: &str) -> (String, usize) {
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(rules).unwrap_or_else(|e| panic!("{RULES}: {e}"));
    let mut replaced = 0;
    for group in doc["groups"]
        .as_sequence_mut()
        .unwrap_or_else(|| panic!("{RULES}: no groups"))
    {
        for rule in group["rules"].as_sequence_mut().into_iter().flatten() {
            if let Some(f) = rule.get_mut("for") {
                *f = serde_yaml_ng::Value::String(short.to_owned());
                replaced += 1;
            }
        }
    }
    (
        serde_yaml_ng::to_string(&doc).expect("serialize the rules"),
        replaced,
    )
}

/// `examples/alertmanager.yml` with short timers and its webhook pointed at
/// `url`; route, grouping, receiver and inhibit rules as shipped.
fn alertmanager_config(example: &str, url: &str) -> String {
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(example).unwrap_or_else(|e| panic!("{ALERTMANAGER_EXAMPLE}: {e}"));
    let route = &mut doc["route"];
    route["group_wait"] = GROUP_WAIT.into();
    route["group_interval"] = GROUP_INTERVAL.into();
    let receiver = route["receiver"]
        .as_str()
        .unwrap_or_else(|| panic!("{ALERTMANAGER_EXAMPLE}: no route.receiver"))
        .to_owned();
    let webhooks = doc["receivers"]
        .as_sequence_mut()
        .into_iter()
        .flatten()
        .find(|r| r["name"].as_str() == Some(&receiver))
        .and_then(|r| r["webhook_configs"].as_sequence_mut())
        .unwrap_or_else(|| {
            panic!("{ALERTMANAGER_EXAMPLE}: receiver {receiver} has no webhook_configs")
        });
    assert_eq!(webhooks.len(), 1, "{ALERTMANAGER_EXAMPLE}: one webhook");
    webhooks[0]["url"] = url.into();
    serde_yaml_ng::to_string(&doc).expect("serialize the Alertmanager config")
}

// ---- processes ----------------------------------------------------------------

impl Daemon {
    /// A JSON answer of the API, or `Null` when there is none.
    fn json(&self, path: &str) -> Value {
        self.get(path)
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or(Value::Null)
    }

    /// Prometheus: an instant query's samples, `(labels, value)`.
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let answer = self
            .agent
            .get(format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let v = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), v)
            })
            .collect()
    }
}

/// The report of the next phase of `app.py saturate`, which must be
/// `phase`; the view of the test's program in it.
fn report(app: &App, phase: &str) -> Value {
    let report: Value = app.read_report(Some(phase), START_TIMEOUT);
    assert_eq!(report["phase"], phase, "app.py: phases out of step");
    let live = report["live"].as_array().expect("live views");
    assert_eq!(live.len(), 1, "one process, one program: {report}");
    let view = live[0].clone();
    assert!(
        view["program"] == PROGRAM && view["host"] == HOST && view["engines"] == 1,
        "the saturate scenario runs one engine of {PROGRAM} on {HOST}: {view}"
    );
    assert_eq!(
        view["sender_alive"], true,
        "the client's sender thread is dead: {view}"
    );
    view
}

// ---- the webhook receiver -------------------------------------------------------

/// An HTTP server on 127.0.0.1 that answers 200 to everything and hands the
/// body of every POST to the test; stopped and joined on drop.
struct Webhook {
    addr: SocketAddr,
    bodies: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Requests it could not read, for the failure message.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("webhook address");
        let (tx, bodies) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, errors) = (stop.clone(), errors.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Err(e) = serve(stream, &tx) {
                        errors.lock().expect("errors").push(e.to_string());
                    }
                }
            })
        };
        Webhook {
            addr,
            bodies,
            stop,
            thread: Some(thread),
            errors,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request per connection (Content-Length or chunked body),
/// answers 200 and closes; sends a POST's body.
fn serve(stream: TcpStream, bodies: &Sender<String>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // the wake-up connection of Drop, or a probe
    }
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed in the headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse().map_err(std::io::Error::other)?;
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break; // no trailers: Alertmanager sends none
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    if request_line.starts_with("POST ") {
        let _ = bodies.send(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(())
}

// ---- payloads -----------------------------------------------------------------

/// Every payload received, in order, with its arrival time.
struct Payloads {
    started: Instant,
    all: Vec<(Duration, Value)>,
}

impl Payloads {
    /// Receives payloads (each printed) until one satisfies `want`; panics
    /// with `diagnose()` after `timeout`.
    fn await_one(
        &mut self,
        webhook: &Webhook,
        what: &str,
        timeout: Duration,
        want: impl Fn(&Value) -> bool,
        diagnose: impl Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match webhook.bodies.recv_timeout(left) {
                Ok(body) => {
                    let at = self.started.elapsed();
                    let payload: Value = serde_json::from_str(&body)
                        .unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {body}"));
                    println!(
                        "webhook payload #{} ({:.1} s after the start):\n{}",
                        self.all.len() + 1,
                        at.as_secs_f64(),
                        serde_json::to_string_pretty(&payload).expect("JSON")
                    );
                    self.all.push((at, payload.clone()));
                    if want(&payload) {
                        return payload;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no webhook payload with {what} within {timeout:?} ({} others received; \
                     receiver errors: {:?})\n{}",
                    self.all.len(),
                    webhook.errors.lock().expect("errors"),
                    diagnose()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!("the webhook receiver stopped"),
            }
        }
    }
}

/// The alerts of a payload that are the test's SQLAlchemyPoolSaturation.
fn ours(payload: &Value) -> Vec<&Value> {
    payload["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let l = &a["labels"];
            l["alertname"] == ALERT && l["host"] == HOST && l["program"] == PROGRAM
        })
        .collect()
}

fn with_status<'a>(alerts: &[&'a Value], status: &str, severity: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["status"] == status && a["labels"]["severity"] == severity)
        .copied()
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The annotations of the shipped critical rule, rendered for usage 100 %.
fn check_annotations(alert: &Value) {
    let a = &alert["annotations"];
    assert_eq!(
        a["summary"],
        format!("SQLAlchemy pool of {PROGRAM} on {HOST} is 100% used"),
        "summary: {alert}"
    );
    let description = a["description"].as_str().unwrap_or("");
    for part in [
        format!("{PROGRAM} on {HOST} has had more than 95% of its configured pool capacity"),
        "100% now".to_owned(),
        "QueuePool limit".to_owned(),
    ] {
        assert!(
            description.contains(&part),
            "description lacks {part:?}: {alert}"
        );
    }
    assert_eq!(a["runbook_url"], RUNBOOK_URL, "runbook_url: {alert}");
    let keys: Vec<&String> = a.as_object().expect("annotations").keys().collect();
    assert_eq!(keys, ["description", "runbook_url", "summary"], "{alert}");
}

#[test]
fn pool_saturation_reaches_the_webhook_and_resolves() {
    let started = Instant::now();
    let tmp = TempDir::new("alerting", "e2e");
    let repo = common::repo();

    // The rules, with only their `for:` shortened.
    let shipped =
        std::fs::read_to_string(repo.join(RULES)).unwrap_or_else(|e| panic!("{RULES}: {e}"));
    let (rules, replaced) = shorten_for(&shipped, SHORT_FOR);
    assert!(
        replaced >= 2 && !rules.contains("for: 5m"),
        "{RULES}: {replaced} `for:` replaced:\n{rules}"
    );
    let rules_copy = tmp.0.join("sqlalchemy.rules.yml");
    std::fs::write(&rules_copy, &rules).expect("write the rules copy");
    let promtool = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_copy)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}; {HINT}"));
    assert!(
        promtool.status.success(),
        "promtool check rules on the test copy:\n{}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );

    // The webhook and Alertmanager, configured from the example.
    let webhook = Webhook::start();
    let example = std::fs::read_to_string(repo.join(ALERTMANAGER_EXAMPLE))
        .unwrap_or_else(|e| panic!("{ALERTMANAGER_EXAMPLE}: {e}"));
    let am_config = tmp.0.join("alertmanager.yml");
    std::fs::write(&am_config, alertmanager_config(&example, &webhook.url()))
        .expect("write the Alertmanager config");
    let alertmanager = Daemon::alertmanager(&tmp.0, &am_config);

    // The exporter with the capacity config, and Prometheus.
    let exporter_config = tmp.0.join("exporter.yml");
    std::fs::write(&exporter_config, EXPORTER_CONFIG).expect("write the exporter config");
    let exporter = common::start(&[
        "--config.file",
        exporter_config.to_str().expect("UTF-8 temp path"),
    ]);
    let prom_config = tmp.0.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules_copy.display(),
            am = alertmanager.addr,
            target = exporter.http,
        ),
    )
    .expect("write the Prometheus config");
    let prom = Daemon::prometheus(&tmp.0, &prom_config);
    // Prometheus knows Alertmanager before any alert can fire (its
    // discovery publishes targets every few seconds).
    let am_api = format!("{}/api/v2/alerts", alertmanager.url);
    common::poll(START_TIMEOUT, "Prometheus to discover Alertmanager", || {
        let answer = prom.json("/api/v1/alertmanagers");
        answer["data"]["activeAlertmanagers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["url"] == am_api.as_str())
            .then_some(())
    });
    let ready = started.elapsed();

    // The app saturates its pool.
    let mut app = App::start("saturate", exporter.udp.port(), HOST);
    let view = report(&app, "saturated");
    assert_eq!(
        view["own"]["held"].as_f64(),
        Some(CAPACITY),
        "the app holds its whole pool: {view}"
    );
    let sel = format!("{{job=\"{JOB}\",host=\"{HOST}\",program=\"{PROGRAM}\"}}");
    let usage = format!("host_program:sqlalchemy_pool_usage:ratio{sel}");
    common::poll(DATA_TIMEOUT, &format!("{usage} == 1 in Prometheus"), || {
        let s = prom.query(&usage);
        (s.len() == 1 && s[0].1 == 1.0).then_some(())
    });
    let saturated = started.elapsed();

    let diagnose = || {
        format!(
            "Prometheus alerts: {}\nAlertmanager alerts: {}",
            prom.json("/api/v1/alerts"),
            alertmanager.json("/api/v2/alerts")
        )
    };
    let mut payloads = Payloads {
        started,
        all: Vec::new(),
    };

    // Firing: the critical alert, the warning inhibited.
    let firing = payloads.await_one(
        &webhook,
        &format!("{ALERT} firing for {PROGRAM} on {HOST}"),
        FIRING_TIMEOUT,
        |p| p["status"] == "firing" && !ours(p).is_empty(),
        diagnose,
    );
    let fired = started.elapsed();
    let group = labels(&[("alertname", ALERT), ("host", HOST), ("program", PROGRAM)]);
    assert_eq!(firing["version"], "4", "{firing}");
    assert_eq!(firing["receiver"], "webhook", "{firing}");
    assert_eq!(firing["groupLabels"], group, "grouped as shipped: {firing}");
    let alerts = firing["alerts"].as_array().expect("alerts");
    assert_eq!(
        alerts.len(),
        1,
        "one notified alert: the warning, which fires too (usage 100 % > 85 %), is \
         inhibited by the critical one (inhibit_rules of {ALERTMANAGER_EXAMPLE}): {firing}"
    );
    let alert = &alerts[0];
    let instance = exporter.http.to_string();
    let want_labels = labels(&[
        ("alertname", ALERT),
        ("host", HOST),
        ("program", PROGRAM),
        ("severity", "critical"),
        ("job", JOB),
        ("instance", &instance),
    ]);
    assert_eq!(alert["labels"], want_labels, "{firing}");
    assert_eq!(alert["status"], "firing", "{firing}");
    check_annotations(alert);
    assert_eq!(firing["commonLabels"], want_labels, "{firing}");
    // Prometheus does have the warning firing: it is Alertmanager that
    // holds it back.
    let warning = format!(
        "ALERTS{{alertname=\"{ALERT}\",alertstate=\"firing\",severity=\"warning\",host=\"{HOST}\",program=\"{PROGRAM}\"}}"
    );
    assert_eq!(
        prom.query(&warning).len(),
        1,
        "the warning fires in Prometheus: {}",
        diagnose()
    );

    // Resolved: the app returns its connections.
    app.next();
    let view = report(&app, "released");
    assert_eq!(
        view["own"]["held"].as_f64(),
        Some(0.0),
        "the app returned its connections: {view}"
    );
    let released = started.elapsed();
    let resolved = payloads.await_one(
        &webhook,
        &format!("{ALERT} resolved for {PROGRAM} on {HOST}"),
        RESOLVED_TIMEOUT,
        |p| p["status"] == "resolved" && with_status(&ours(p), "resolved", "critical").is_some(),
        diagnose,
    );
    let done = started.elapsed();
    assert_eq!(resolved["groupLabels"], group, "{resolved}");
    let mine = ours(&resolved);
    assert!(
        mine.iter().all(|a| a["status"] == "resolved"),
        "every alert of the group is resolved: {resolved}"
    );
    let alert = with_status(&mine, "resolved", "critical").expect("checked above");
    assert_eq!(alert["labels"], want_labels, "{resolved}");
    check_annotations(alert);
    assert_eq!(
        alert["startsAt"], alerts[0]["startsAt"],
        "the resolved alert is the one that fired: {resolved}"
    );
    assert!(
        alert["endsAt"]
            .as_str()
            .is_some_and(|e| !e.starts_with("0001")),
        "a resolved alert has an end: {resolved}"
    );

    // The warning was never notified as firing: the inhibit rule held for
    // as long as the critical alert fired.
    let firing_warnings: Vec<&Value> = payloads
        .all
        .iter()
        .filter_map(|(_, p)| with_status(&ours(p), "firing", "warning"))
        .collect();
    assert!(
        firing_warnings.is_empty(),
        "the warning was notified while the critical alert fired: {firing_warnings:?}"
    );
    let others: BTreeMap<String, usize> =
        payloads.all.iter().fold(BTreeMap::new(), |mut m, (_, p)| {
            let key = format!(
                "{} {}",
                p["groupLabels"]["alertname"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?")
            );
            *m.entry(key).or_default() += 1;
            m
        });
    eprintln!(
        "ready after {ready:?}, usage 100 % in Prometheus after {saturated:?}, firing \
         notification after {fired:?}, connections returned after {released:?}, resolved \
         notification after {done:?}; payloads received: {others:?}"
    );
}

#[test]
fn only_the_for_durations_of_the_test_rules_differ() {
    let shipped = std::fs::read_to_string(common::repo().join(RULES))
        .unwrap_or_else(|e| panic!("{RULES}: {e}"));
    let (short, replaced) = shorten_for(&shipped, SHORT_FOR);
    let fors = shipped
        .lines()
        .filter(|l| l.trim_start().starts_with("for: "))
        .count();
    assert_eq!(replaced, fors, "every `for:` line of {RULES} is replaced");
    let mut original: serde_yaml_ng::Value = serde_yaml_ng::from_str(&shipped).expect("rules");
    let mut shortened: serde_yaml_ng::Value = serde_yaml_ng::from_str(&short).expect("copy");
    for doc in [&mut original, &mut shortened] {
        for group in doc["groups"].as_sequence_mut().expect("groups") {
            for rule in group["rules"].as_sequence_mut().expect("rules") {
                if let Some(map) = rule.as_mapping_mut() {
                    map.remove("for");
                }
            }
        }
    }
    assert_eq!(original, shortened, "nothing but `for:` changed");
    assert!(
        short.matches(&format!("for: {SHORT_FOR}")).count() == replaced,
        "{short}"
    );
}
