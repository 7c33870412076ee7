//! The shipped Grafana dashboards (`dashboards/*.json`) against real data.
//!
//! `every_dashboard_query_returns_data`: an in-process exporter with a
//! capacity config (`--config.file`), the real sqlalchemy-collectd client
//! (`tests/clients/app.py dashboards`) sending to it, and a real Prometheus
//! (`/usr/bin/prometheus`, Debian's package) scraping it every second and
//! evaluating the shipped recording rules (`alerts/sqlalchemy.rules.yml`).
//! Every target of every panel, with its template variables substituted the
//! way Grafana does, must be a valid query that returns at least one finite
//! sample, both with the test's host/program/instance selected and with All;
//! every variable query must offer the test's value; and every metric name a
//! dashboard uses must be in the exporter's output, a recording rule or one
//! of Prometheus' own scrape series.
//!
//! `dashboards_are_well_formed`: the JSON itself (uids, variables, panels,
//! descriptions, units, data sources, links, layout), and the Grafana and
//! Prometheus examples that load them.
//!
//! Prometheus and the Python client are required: a missing one fails the
//! test with a pointer to `scripts/test.sh`, which installs both.

mod common;

use common::TempDir;
use common::client::App;
use common::daemon::Daemon;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The dashboards and their stable uids.
const DASHBOARDS: [(&str, &str); 3] = [
    ("sqlalchemy-fleet.json", "sqlalchemy-fleet"),
    ("sqlalchemy-program.json", "sqlalchemy-program"),
    ("sqlalchemy-exporter.json", "sqlalchemy-exporter"),
];
/// The scrape job name the recording rules select (`{job="sqlalchemy"}`).
const JOB: &str = "sqlalchemy";
/// Labels the app sends (`tests/clients/app.py dashboards`).
const HOST: &str = "itest";
const PROGRAM: &str = "dashapp";
/// The shipped recording and alerting rules.
const RULES: &str = "alerts/sqlalchemy.rules.yml";
/// Capacity config for the exporter: the app's two engines have
/// pool_size 5 + max_overflow 5 each, so capacity is 20.
const EXPORTER_CONFIG: &str = r#"pools:
  - programs: ["dashapp"]
    hosts: ["itest"]
    pool_size: 5
    max_overflow: 5
databases:
  - name: main
    max_connections: 100
    programs: ["dash*"]
"#;
const CAPACITY_PER_POOL: f64 = 10.0;
const MAX_CONNECTIONS: f64 = 100.0;
/// Grafana's time-range variables, for a test whose data is seconds old
/// (Prometheus scrapes every second, so a 15 s window holds many samples).
const RANGE_VARIABLES: [(&str, &str); 7] = [
    ("__rate_interval", "15s"),
    ("__interval", "1s"),
    ("__interval_ms", "1000"),
    ("__range", "1m"),
    ("__range_s", "60"),
    ("__range_ms", "60000"),
    ("__rate_interval_ms", "15000"),
];
/// Series Prometheus adds to every scrape.
const SCRAPE_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];
const HINT: &str = "run the README's test command, scripts/test.sh, which installs Debian's \
                    prometheus package and the Python client in .venv";

/// Start-up of Prometheus and of the Python app (imports included).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// From Prometheus ready to the app's state in Prometheus: the client sends
/// every 2 s, Prometheus scrapes and evaluates rules every second.
const DATA_TIMEOUT: Duration = Duration::from_secs(20);
/// From then on, for every query to return data (rate() needs two scrapes,
/// the recorded rates two evaluations).
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

// ---- the dashboards ---------------------------------------------------------

fn dashboards() -> Vec<(&'static str, Value)> {
    DASHBOARDS
        .iter()
        .map(|(file, uid)| {
            let path = common::repo().join("dashboards").join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (*uid, json)
        })
        .collect()
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn variables(dashboard: &Value) -> &Vec<Value> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// One query of one panel.
struct Target {
    dashboard: &'static str,
    panel: String,
    ref_id: String,
    expr: String,
}

fn targets(uid: &'static str, dashboard: &Value) -> Vec<Target> {
    panels(dashboard)
        .into_iter()
        .filter(|p| text(p, "type") != "row")
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| Target {
                    dashboard: uid,
                    panel: text(p, "title").to_owned(),
                    ref_id: text(t, "refId").to_owned(),
                    expr: text(t, "expr").to_owned(),
                })
        })
        .collect()
}

/// A query variable's `label_values(EXPR, LABEL)`.
fn label_values(query: &str) -> Option<(&str, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (expr, label) = inner.rsplit_once(',')?;
    Some((expr.trim(), label.trim()))
}

fn variable_query(var: &Value) -> &str {
    match &var["query"] {
        Value::String(s) => s,
        q => text(q, "query"),
    }
}

/// Grafana's escaping of a selected value inside a Prometheus regex matcher
/// (`=~"$var"`): regex metacharacters escaped, the backslash doubled for the
/// PromQL string.
fn regex_value(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\^$*+?.()|{}[]".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// Replaces `$name`, `${name}` and `${name:format}` with `values[name]`;
/// panics on a variable it does not know.
fn substitute(expr: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {expr:?}"));
            let inner = &braced[..end];
            (
                inner.split_once(':').map_or(inner, |(n, _)| n),
                &braced[end + 1..],
            )
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let value = values
            .get(name)
            .unwrap_or_else(|| panic!("unknown variable ${name} in {expr:?}"));
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The metric names a PromQL expression selects: identifiers outside label
/// matchers, ranges and strings that are neither functions, aggregations,
/// keywords nor grouping labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may come before their modifier: `sum by (host) (x)`.
    const KEYWORDS: [&str; 20] = [
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    // Index just past the bracket matching the opening one at `i`.
    let close = |mut i: usize, open: u8, close: u8| {
        let mut depth = 0;
        let mut quote = None;
        while i < b.len() {
            let c = b[i];
            match quote {
                Some(q) if c == b'\\' && q != b'`' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'"' || c == b'\'' || c == b'`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                None => {}
            }
            i += 1;
        }
        panic!("unbalanced {} in {expr:?}", open as char)
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'{' {
            i = close(i, b'{', b'}');
        } else if c == b'[' {
            i = close(i, b'[', b']');
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let call = b.get(j) == Some(&b'(');
            if GROUPING.contains(&word) {
                if call {
                    i = close(j, b'(', b')');
                }
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

// ---- processes ----------------------------------------------------------------

/// Prometheus' query API, as the dashboards use it.
trait Query {
    fn query(&self, expr: &str) -> Result<Vec<(String, f64)>, String>;
}

impl Query for Daemon {
    /// An instant query: `Err` with Prometheus' error for an invalid one,
    /// else its samples (a scalar is one).
    fn query(&self, expr: &str) -> Result<Vec<(String, f64)>, String> {
        let answer = self.api("query", &[("query", expr)]);
        if answer["status"] != "success" {
            return Err(format!(
                "{}: {}",
                text(&answer, "errorType"),
                text(&answer, "error")
            ));
        }
        let data = &answer["data"];
        let value = |v: &Value| -> f64 {
            match v[1].as_str() {
                Some("+Inf") => f64::INFINITY,
                Some("-Inf") => f64::NEG_INFINITY,
                Some(s) => s.parse().unwrap_or(f64::NAN),
                None => f64::NAN,
            }
        };
        Ok(match text(data, "resultType") {
            "vector" => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["metric"].to_string(), value(&s["value"])))
                .collect(),
            "scalar" => vec![("scalar".to_owned(), value(&data["result"]))],
            other => return Err(format!("unexpected result type {other:?}")),
        })
    }
}

/// Recording rule names of a rules file.
fn recorded(rules: &Path) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(rules).unwrap_or_else(|e| panic!("{}: {e}", rules.display()));
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", rules.display()));
    doc["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .filter_map(|r| r["record"].as_str().map(str::to_owned))
        .collect()
}

/// Metric names in an exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    common::samples(text)
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_owned())
        .collect()
}

/// Polls `expr` until `want` holds for its samples.
fn await_query(
    prom: &Daemon,
    expr: &str,
    timeout: Duration,
    want: impl Fn(&[(String, f64)]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = prom.query(expr);
        if got.as_ref().is_ok_and(|s| want(s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {expr}; last answer: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn one_value(s: &[(String, f64)], want: f64) -> bool {
    s.len() == 1 && (s[0].1 - want).abs() < 1e-9
}

#[test]
fn every_dashboard_query_returns_data() {
    let started = Instant::now();
    let tmp = TempDir::new("dashboards", "query");
    let rules = common::repo().join(RULES);
    assert!(
        rules.exists(),
        "{} is missing: the dashboards use its recording rules",
        rules.display()
    );
    // Prometheus loads a copy, so that nothing it does touches the tree.
    let rules_copy = tmp.0.join("sqlalchemy.rules.yml");
    std::fs::copy(&rules, &rules_copy).expect("copy the rules");
    let recording = recorded(&rules);

    let config = tmp.0.join("exporter.yml");
    std::fs::write(&config, EXPORTER_CONFIG).expect("write the exporter config");
    let exporter = common::start(&["--config.file", config.to_str().expect("UTF-8 temp path")]);
    let app = App::start("dashboards", exporter.udp.port(), HOST);

    let prom_config = tmp.0.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules_copy.display(),
            target = exporter.http,
        ),
    )
    .expect("write the Prometheus config");
    let prom = Daemon::prometheus(&tmp.0, &prom_config);
    let ready = started.elapsed();

    // The app's state, as Prometheus sees it: the client has reported, the
    // scrape carries the config's capacity and the rules are evaluated.
    let report: Value = app.read_report(None, START_TIMEOUT);
    let view = report["live"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["program"] == PROGRAM))
        .unwrap_or_else(|| panic!("no {PROGRAM} in the report {report}"));
    let count = |k: &str| {
        view["own"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {view}"))
    };
    let (held, open, engines) = (
        count("held"),
        count("open"),
        view["engines"].as_f64().expect("engines"),
    );
    assert!(
        held > 0.0 && count("detached") > 0.0 && count("invalidations") > 0.0 && engines > 1.0,
        "the dashboards scenario must hold, detach and invalidate on two engines: {view}"
    );
    let sel = format!("{{job=\"{JOB}\",host=\"{HOST}\",program=\"{PROGRAM}\"}}");
    for (expr, want) in [
        (format!("up{{job=\"{JOB}\"}}"), 1.0),
        (format!("sqlalchemy_connections_checked_out{sel}"), held),
        (format!("sqlalchemy_connections{sel}"), open),
        (
            format!("sqlalchemy_connections_max{sel}"),
            CAPACITY_PER_POOL * engines,
        ),
        (
            format!("host_program:sqlalchemy_pool_usage:ratio{sel}"),
            held / (CAPACITY_PER_POOL * engines),
        ),
        (
            format!(
                "database:sqlalchemy_database_connections:ratio{{job=\"{JOB}\",database=\"main\"}}"
            ),
            open / MAX_CONNECTIONS,
        ),
    ] {
        await_query(&prom, &expr, DATA_TIMEOUT, |s| one_value(s, want));
    }
    let data = started.elapsed();

    // What the variables' queries offer, and the values the test selects.
    let dashboards = dashboards();
    let instance = exporter.http.to_string();
    let chosen: BTreeMap<&str, &str> = [
        ("job", JOB),
        ("host", HOST),
        ("program", PROGRAM),
        ("instance", instance.as_str()),
    ]
    .into();
    let mut selected: BTreeMap<&str, String> = RANGE_VARIABLES
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    for (k, v) in &chosen {
        selected.insert(k, regex_value(v));
    }
    // All: a variable's allValue, or else what Grafana sends for All without
    // one, the alternation of every value its query offers.
    let mut all = selected.clone();
    let mut failures = Vec::new();
    let mut variable_queries = 0;
    for (uid, d) in &dashboards {
        for var in variables(d).iter().filter(|v| v["type"] == "query") {
            let name = text(var, "name");
            let (expr, label) = label_values(variable_query(var))
                .unwrap_or_else(|| panic!("{uid}: variable {name} is not label_values(…)"));
            let expr = substitute(expr, &selected);
            variable_queries += 1;
            let answer = prom.api(&format!("label/{label}/values"), &[("match[]", &expr)]);
            let offered: Vec<&str> = answer["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let (key, want) = chosen
                .get_key_value(name)
                .unwrap_or_else(|| panic!("{uid}: no test value for variable {name}"));
            if answer["status"] != "success" || !offered.contains(want) {
                failures.push(format!(
                    "{uid}: variable {name}: label_values({expr}, {label}) offers {offered:?}, \
                     not {want:?}: {answer}"
                ));
            }
            let all_value = match var["allValue"].as_str() {
                Some(v) => v.to_owned(),
                None => {
                    let values: Vec<String> = offered.iter().map(|v| regex_value(v)).collect();
                    match values.as_slice() {
                        [one] => one.clone(),
                        _ => format!("({})", values.join("|")),
                    }
                }
            };
            all.insert(key, all_value);
        }
    }

    // Every metric name must exist.
    let scraped = common::scrape(exporter.http);
    let known: BTreeSet<String> = exposed(&scraped)
        .into_iter()
        .chain(recording.iter().cloned())
        .chain(SCRAPE_SERIES.iter().map(|s| (*s).to_owned()))
        .collect();
    let targets: Vec<Target> = dashboards
        .iter()
        .flat_map(|(uid, d)| targets(uid, d))
        .collect();
    let mut used = BTreeSet::new();
    for t in &targets {
        for name in metric_names(&substitute(&t.expr, &selected)) {
            if !known.contains(&name) {
                failures.push(format!(
                    "{} / {} / {}: {name} is neither exported, recorded nor a scrape series",
                    t.dashboard, t.panel, t.ref_id
                ));
            }
            used.insert(name);
        }
    }

    // Every target, with the test's values selected and with All.
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut queries = 0;
    for t in &targets {
        for (variant, values) in [("selected", &selected), ("All", &all)] {
            let expr = substitute(&t.expr, values);
            queries += 1;
            let outcome = loop {
                match prom.query(&expr) {
                    Err(e) => break Err(format!("invalid: {e}")),
                    Ok(s) if !s.is_empty() && s.iter().all(|(_, v)| v.is_finite()) => break Ok(()),
                    Ok(s) if Instant::now() >= deadline => {
                        break Err(if s.is_empty() {
                            "no data".to_owned()
                        } else {
                            format!("not finite: {s:?}")
                        });
                    }
                    Ok(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            if let Err(e) = outcome {
                failures.push(format!(
                    "{} / {} / {} ({variant}): {e}\n    {expr}",
                    t.dashboard, t.panel, t.ref_id
                ));
            }
        }
    }
    eprintln!(
        "{} targets ({queries} queries), {variable_queries} variable queries, {} metric names; \
         Prometheus ready after {ready:?}, data after {data:?}, done after {:?}",
        targets.len(),
        used.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} dashboard problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- the JSON and the examples ---------------------------------------------------

/// Grafana's own variables, which need no definition in `templating`.
fn builtin(name: &str) -> bool {
    name.starts_with("__") || name == "timeFilter"
}

/// Names of the variables an expression or URL uses.
fn used_variables(s: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            let inner = &braced[..end];
            inner.split([':', '.']).next().unwrap_or(inner)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        };
        if !name.is_empty() {
            out.insert(name.to_owned());
        }
    }
    out
}

fn is_datasource_variable(v: &Value) -> bool {
    v["type"] == "prometheus" && v["uid"] == "${datasource}"
}

#[test]
fn dashboards_are_well_formed() {
    let dir = common::repo().join("dashboards");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    let expected: BTreeSet<String> = DASHBOARDS.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(on_disk, expected, "dashboards/ holds exactly these");

    let uids: BTreeSet<&str> = DASHBOARDS.iter().map(|(_, u)| *u).collect();
    let mut titles = BTreeSet::new();
    let mut problems = Vec::new();
    for (uid, d) in dashboards() {
        let mut bad = |what: String| problems.push(format!("{uid}: {what}"));
        let raw = d.to_string();
        if d.get("__inputs").is_some() || raw.contains("${DS_") {
            bad("has __inputs / ${DS_…}: it would not load through file provisioning".into());
        }
        if text(&d, "uid") != uid {
            bad(format!("uid {:?}", d["uid"]));
        }
        if !d["id"].is_null() {
            bad("id must be null (Grafana assigns it)".into());
        }
        if text(&d, "title").is_empty() || !titles.insert(text(&d, "title").to_owned()) {
            bad("title missing or not unique".into());
        }
        if d["schemaVersion"].as_u64().is_none_or(|v| v < 39) {
            bad(format!(
                "schemaVersion {:?} (want ≥ 39)",
                d["schemaVersion"]
            ));
        }
        if !d["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "sqlalchemy"))
        {
            bad("no tag sqlalchemy".into());
        }

        // Variables.
        let vars = variables(&d);
        let by_name: BTreeMap<&str, &Value> = vars.iter().map(|v| (text(v, "name"), v)).collect();
        match by_name.get("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            other => bad(format!("datasource variable: {other:?}")),
        }
        for name in ["job", "host", "program"] {
            let Some(v) = by_name.get(name) else {
                bad(format!("no variable {name}"));
                continue;
            };
            let query = variable_query(v);
            let ok = v["type"] == "query"
                && is_datasource_variable(&v["datasource"])
                && v["multi"] == true
                && v["includeAll"] == true
                && label_values(query).is_some_and(|(expr, label)| {
                    label == name && (name == "job" || expr.contains("job=~\"$job\""))
                });
            if !ok {
                bad(format!("variable {name}: {v}"));
            }
        }
        for name in ["host", "program"] {
            let want = "label_values(sqlalchemy_processes{job=~\"$job\"";
            if !by_name
                .get(name)
                .is_some_and(|v| variable_query(v).starts_with(want))
            {
                bad(format!("variable {name} is not {want}…, {name})"));
            }
        }
        let defined: BTreeSet<&str> = by_name.keys().copied().collect();

        // Panels.
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
        let all_panels = panels(&d);
        if all_panels.is_empty() {
            bad("no panels".into());
        }
        for p in all_panels {
            let title = text(p, "title").to_owned();
            let mut bad_panel = |what: &str| bad(format!("panel {title:?}: {what}"));
            match p["id"].as_u64() {
                Some(id) if ids.insert(id) => {}
                _ => bad_panel("id missing or not unique"),
            }
            if title.is_empty() {
                bad_panel("no title");
            }
            if text(p, "description").trim().is_empty() {
                bad_panel("no description");
            }
            let g = &p["gridPos"];
            let pos = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap_or(-1));
            if pos.iter().any(|v| *v < 0) || pos[2] == 0 || pos[0] + pos[2] > 24 {
                bad_panel("gridPos");
            }
            for (other, o) in &boxes {
                let overlap = pos[0] < o[0] + o[2]
                    && o[0] < pos[0] + pos[2]
                    && pos[1] < o[1] + o[3]
                    && o[1] < pos[1] + pos[3];
                if overlap {
                    bad_panel(&format!("overlaps {other:?}"));
                }
            }
            boxes.push((title.clone(), pos));
            if text(p, "type") == "row" {
                continue;
            }
            if !is_datasource_variable(&p["datasource"]) {
                bad_panel("datasource is not ${datasource}");
            }
            if text(&p["fieldConfig"]["defaults"], "unit").is_empty() {
                bad_panel("no unit");
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                bad_panel("no targets");
            }
            let mut refs = BTreeSet::new();
            for t in &targets {
                let expr = text(t, "expr");
                if !is_datasource_variable(&t["datasource"]) {
                    bad_panel("a target's datasource is not ${datasource}");
                }
                if expr.trim().is_empty() || !refs.insert(text(t, "refId").to_owned()) {
                    bad_panel("a target without expr or with a duplicate refId");
                }
                for var in used_variables(expr) {
                    if !builtin(&var) && !defined.contains(var.as_str()) {
                        bad_panel(&format!("uses undefined variable ${var}"));
                    }
                }
                if expr.contains("sqlalchemy_") && !expr.contains("job=~\"$job\"") {
                    bad_panel(&format!("a query without the job selector: {expr}"));
                }
            }
        }

        // Links to the other dashboards, carrying the variables and time.
        let linked: BTreeSet<String> = d["links"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["includeVars"] == true && l["keepTime"] == true)
            .filter_map(|l| l["url"].as_str())
            .filter_map(|u| u.strip_prefix("/d/"))
            .map(|u| u.split('/').next().unwrap_or(u).to_owned())
            .collect();
        for other in uids.iter().filter(|o| **o != uid) {
            if !linked.contains(*other) {
                bad(format!("no link to {other}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn examples_load_the_dashboards_and_rules() {
    let repo = common::repo();
    let yaml = |rel: &str| -> serde_yaml_ng::Value {
        let path = repo.join(rel);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };

    let provider = yaml("examples/grafana/provisioning/dashboards/sqlalchemy.yml");
    let providers = provider["providers"].as_sequence().expect("providers");
    assert!(
        providers
            .iter()
            .any(|p| p["type"] == "file"
                && p["options"]["path"].as_str().is_some_and(|p| !p.is_empty())),
        "a file provider with a path: {provider:?}"
    );
    let datasources = yaml("examples/grafana/provisioning/datasources/prometheus.yml");
    assert!(
        datasources["datasources"]
            .as_sequence()
            .is_some_and(|d| d.iter().any(|d| d["type"] == "prometheus")),
        "a prometheus data source: {datasources:?}"
    );

    let prometheus = yaml("examples/prometheus.yml");
    let rule_files: Vec<&str> = prometheus["rule_files"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(
        rule_files.iter().any(|r| repo.join("examples").join(r)
            == repo.join("examples/../alerts/sqlalchemy.rules.yml")),
        "examples/prometheus.yml loads ../{RULES}: {rule_files:?}"
    );
    let jobs: Vec<&str> = prometheus["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| s["job_name"].as_str())
        .collect();
    assert!(jobs.contains(&JOB), "scrape job {JOB}: {jobs:?}");
    // promtool resolves rule_files relative to the config file, as
    // Prometheus does, and checks the rules they name.
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo.join("examples/prometheus.yml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}; {HINT}"));
    assert!(
        out.status.success(),
        "promtool check config examples/prometheus.yml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let alertmanager = yaml("examples/alertmanager.yml");
    let receiver = alertmanager["route"]["receiver"]
        .as_str()
        .expect("route.receiver");
    assert!(
        alertmanager["receivers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|r| r["name"] == receiver
                && r["webhook_configs"][0]["url"] == "http://127.0.0.1:5001/"),
        "the default route goes to the webhook http://127.0.0.1:5001/: {alertmanager:?}"
    );
}

#[test]
fn metric_names_of_an_expression() {
    let names = metric_names(
        "sum by (host, program) (rate(a_total{job=~\"x\", le=\"b\"}[5m] offset 1m)) \
         / on(host) group_left(program) rec:b:ratio or vector(0) \
         + count({__name__=~\"c.+\"}) * 2e3 and time() - bool_metric unless topk(5, d)",
    );
    let want: BTreeSet<String> = ["a_total", "rec:b:ratio", "bool_metric", "d"]
        .map(str::to_owned)
        .into();
    assert_eq!(names, want);
}

#[test]
fn variables_are_substituted_as_grafana_does() {
    let values: BTreeMap<&str, String> = [
        ("job", "sqlalchemy".to_owned()),
        ("instance", regex_value("127.0.0.1:9827")),
        ("__rate_interval", "15s".to_owned()),
    ]
    .into();
    assert_eq!(
        substitute(
            "rate(x{job=~\"$job\",instance=~\"${instance}\"}[$__rate_interval])",
            &values
        ),
        "rate(x{job=~\"sqlalchemy\",instance=~\"127\\\\.0\\\\.0\\\\.1:9827\"}[15s])"
    );
}
