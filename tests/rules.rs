//! The Prometheus rules in `alerts/`: `promtool check rules` and `promtool test rules`
//! (the unit tests in `alerts/tests/*.yml`) pass, and the rules file agrees with the
//! contract in `docs/capacity-and-rules.md`, the metrics in `README.md` and the runbook.
//!
//! promtool comes from Debian's `prometheus` package; `scripts/test.sh` installs it. A
//! missing promtool fails these tests, it does not skip them.

use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const RULES: &str = "alerts/sqlalchemy.rules.yml";
const TESTS_DIR: &str = "alerts/tests";
const JOB_MATCHER: &str = r#"job="sqlalchemy""#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Runs promtool (`$PROMTOOL`, else `promtool` on PATH) in the crate root and fails with
/// its whole output unless it succeeds.
fn promtool(args: &[&str]) {
    let bin = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let out = Command::new(&bin)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): promtool is required; run scripts/test.sh, which \
                 installs it (Debian package `prometheus`), or set PROMTOOL",
                bin.to_string_lossy()
            )
        });
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `alerts/tests/*.yml`, relative to the crate root, sorted.
fn test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(TESTS_DIR))
        .unwrap_or_else(|e| panic!("reading {TESTS_DIR}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p: PathBuf| format!("{TESTS_DIR}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no unit tests in {TESTS_DIR}/*.yml");
    files
}

#[test]
fn promtool_check_rules() {
    promtool(&["check", "rules", RULES]);
}

#[test]
fn promtool_test_rules() {
    let files = test_files();
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    promtool(&args);
}

// ---------------------------------------------------------------------------------------
// The rules file, parsed.

struct Rule {
    /// `record` or `alert` name.
    name: String,
    alert: bool,
    group: String,
    expr: String,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
}

fn str_map(v: &Value) -> Vec<(String, String)> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let k = k.as_str().expect("string key").to_string();
                    let v = v
                        .as_str()
                        .unwrap_or_else(|| panic!("{k}: not a string"))
                        .to_string();
                    (k, v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rules() -> Vec<Rule> {
    let doc: Value = serde_yaml_ng::from_str(&read(RULES)).expect("rules file is YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        let gname = group["name"].as_str().expect("group name");
        for r in group["rules"].as_sequence().expect("rules") {
            let (name, alert) = match (r["record"].as_str(), r["alert"].as_str()) {
                (Some(n), None) => (n, false),
                (None, Some(n)) => (n, true),
                _ => panic!("rule with neither or both of record/alert: {r:?}"),
            };
            out.push(Rule {
                name: name.to_string(),
                alert,
                group: gname.to_string(),
                expr: r["expr"].as_str().expect("expr").to_string(),
                labels: str_map(&r["labels"]),
                annotations: str_map(&r["annotations"]),
            });
        }
    }
    out
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------
// A small PromQL / Markdown tokenizer: identifiers outside strings, label matchers and
// comments, each with the label matchers that follow it (if any).

struct Selector {
    name: String,
    /// The text between `{` and `}` right after the name, if there is one.
    matchers: Option<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every identifier of a PromQL expression outside string literals, `{…}` matchers and
/// `#` comments, with the matchers that directly follow it. Numbers and durations
/// (`5m`, `0.85`) are skipped whole.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<Selector> = Vec::new();
    let mut i = 0;
    let skip_string = |i: &mut usize| {
        let quote = chars[*i];
        *i += 1;
        while *i < chars.len() && chars[*i] != quote {
            if chars[*i] == '\\' && quote != '`' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            skip_string(&mut i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '{' {
            let start = i + 1;
            while i < chars.len() && chars[i] != '}' {
                if matches!(chars[i], '"' | '\'' | '`') {
                    skip_string(&mut i);
                } else {
                    i += 1;
                }
            }
            let text: String = chars[start..i.min(chars.len())].iter().collect();
            // Matchers right after an identifier (whitespace allowed) belong to it.
            let before = chars[..start - 1].iter().rev().find(|c| !c.is_whitespace());
            if let (Some(last), Some(b)) = (out.last_mut(), before)
                && is_ident(*b)
                && last.matchers.is_none()
            {
                last.matchers = Some(text);
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push(Selector {
                name: chars[start..i].iter().collect(),
                matchers: None,
            });
        } else {
            i += 1;
        }
    }
    out
}

/// Metric names an expression reads: recorded names (with `:`), `sqlalchemy_*` and `up`.
fn metric_selectors(expr: &str) -> Vec<Selector> {
    selectors(expr)
        .into_iter()
        .filter(|s| s.name.contains(':') || s.name.starts_with("sqlalchemy_") || s.name == "up")
        .collect()
}

/// Every `sqlalchemy_*` identifier in a text.
fn sqlalchemy_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_ident(c) {
            cur.push(c);
        } else {
            if cur.starts_with("sqlalchemy_") && !cur.ends_with('_') {
                out.insert(cur.clone());
            }
            cur.clear();
        }
    }
    out
}

/// The metric names of `README.md`'s tables and of `docs/capacity-and-rules.md`.
fn documented_metrics() -> BTreeSet<String> {
    let readme = read("README.md");
    let tables: String = readme
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = sqlalchemy_names(&tables);
    names.extend(sqlalchemy_names(&read("docs/capacity-and-rules.md")));
    names
}

/// The section of a Markdown text under `heading` (up to the next heading of that level).
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no `{heading}` section"));
    let level = heading.split(' ').next().unwrap();
    let rest = &text[start + heading.len()..];
    let end = rest.find(&format!("\n{level} ")).unwrap_or(rest.len());
    &rest[..end]
}

// ---------------------------------------------------------------------------------------

#[test]
fn every_metric_in_the_rules_is_recorded_documented_or_up() {
    let rules = rules();
    let recorded: BTreeSet<&str> = rules
        .iter()
        .filter(|r| !r.alert)
        .map(|r| r.name.as_str())
        .collect();
    let documented = documented_metrics();
    assert!(
        documented.contains("sqlalchemy_connections_checked_out")
            && documented.contains("sqlalchemy_connections_max")
            && documented.contains("sqlalchemy_collectd_exporter_kernel_receive_drops_total"),
        "the documented metric names were not found: {documented:?}"
    );
    let mut unknown = Vec::new();
    for rule in &rules {
        for sel in metric_selectors(&rule.expr) {
            let ok = if sel.name.contains(':') {
                recorded.contains(sel.name.as_str())
            } else {
                sel.name == "up" || documented.contains(&sel.name)
            };
            if !ok {
                unknown.push(format!("{}: {}", rule.name, sel.name));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics used in {RULES} that are neither recorded there nor in README.md's tables \
         or docs/capacity-and-rules.md: {unknown:#?}"
    );
}

#[test]
fn every_selector_carries_the_same_job_matcher() {
    // The mixin's _config.selector (mixin/config.libsonnet), rendered into every selector.
    let mut missing = Vec::new();
    for rule in rules() {
        let sels = metric_selectors(&rule.expr);
        assert!(!sels.is_empty(), "{}: reads no metric", rule.name);
        for sel in sels {
            let has = sel
                .matchers
                .as_deref()
                .is_some_and(|m| m.split(',').any(|x| x.trim() == JOB_MATCHER));
            if !has {
                missing.push(format!("{}: {}", rule.name, sel.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "selectors without {{{JOB_MATCHER}}}: {missing:#?}"
    );
    // The header says where the file comes from and how to render it for another job.
    let text = read(RULES);
    let header = "# Prometheus recording and alerting rules for sqlalchemy-collectd-exporter.\n\
                  #\n\
                  # Generated from the monitoring mixin in mixin/ by mixin/render.sh: do not \
                  edit by hand.\n";
    let example =
        r#"#   mixin/render.sh OUT '{selector: "job=\"my-job\"", groupLabels: ["cluster"]}'"#;
    assert!(
        text.starts_with(header) && text.lines().any(|l| l == example),
        "{RULES} must say it is rendered from mixin/ and how to render it with another job \
         selector:\n{text}"
    );
}

#[test]
fn recording_rules_are_the_contract() {
    let doc = read("docs/capacity-and-rules.md");
    let table = section(&doc, "## Recording rules");
    assert!(table.contains("group `sqlalchemy.rules`"));
    let mut contract = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let name = line.split('`').nth(1).unwrap();
        contract.insert(name.to_string());
    }
    assert_eq!(
        contract.len(),
        8,
        "recording rules in the contract: {contract:?}"
    );
    let rules = rules();
    let records: Vec<&Rule> = rules.iter().filter(|r| !r.alert).collect();
    let defined: BTreeSet<String> = records.iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        defined, contract,
        "recording rules in {RULES} vs the contract"
    );
    assert_eq!(
        defined.len(),
        records.len(),
        "a recording rule is defined twice"
    );
    for r in records {
        assert_eq!(r.group, "sqlalchemy.rules", "{}: group", r.name);
    }
}

#[test]
fn alerts_are_the_contract_with_labels_annotations_and_runbook() {
    let doc = read("docs/capacity-and-rules.md");
    let contract: BTreeSet<String> = section(&doc, "## Alerts")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with("SQLAlchemy"))
        .map(str::to_string)
        .collect();
    assert_eq!(contract.len(), 13, "alerts in the contract: {contract:?}");
    let runbook = read("docs/runbook.md");
    let unit_tests: String = test_files().iter().map(|f| read(f)).collect();

    let rules = rules();
    let alerts: Vec<&Rule> = rules.iter().filter(|r| r.alert).collect();
    let defined: BTreeSet<String> = alerts.iter().map(|r| r.name.clone()).collect();
    assert_eq!(defined, contract, "alerts in {RULES} vs the contract");

    for a in &alerts {
        assert_eq!(a.group, "sqlalchemy.alerts", "{}: group", a.name);
        let severity = get(&a.labels, "severity");
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{}: severity {severity:?}",
            a.name
        );
        for key in ["summary", "description"] {
            assert!(
                get(&a.annotations, key).is_some_and(|s| !s.trim().is_empty()),
                "{}: annotation {key}",
                a.name
            );
        }
        let description = get(&a.annotations, "description").unwrap();
        let names: Vec<String> = metric_selectors(&a.expr)
            .into_iter()
            .map(|s| s.name)
            .collect();
        let wants: &[&str] = if names.iter().any(|n| n.contains("database")) {
            &["{{ $labels.database }}"]
        } else if names
            .iter()
            .any(|n| n.starts_with("sqlalchemy_collectd_exporter_"))
        {
            &["{{ $labels.instance }}"]
        } else if names.iter().all(|n| n == "up") {
            &[]
        } else {
            &["{{ $labels.host }}", "{{ $labels.program }}"]
        };
        for want in wants {
            assert!(
                description.contains(want),
                "{}: the description shows {want}",
                a.name
            );
        }
        let anchor = a.name.to_lowercase();
        assert_eq!(
            get(&a.annotations, "runbook_url"),
            Some(format!("docs/runbook.md#{anchor}").as_str()),
            "{}: runbook_url",
            a.name
        );
        assert!(
            runbook.lines().any(|l| l == format!("## {}", a.name)),
            "docs/runbook.md has no `## {}` section (anchor #{anchor})",
            a.name
        );
        assert!(
            unit_tests.contains(&format!("alertname: {}\n", a.name)),
            "no promtool unit test in {TESTS_DIR} for {}",
            a.name
        );
    }
    for r in rules.iter().filter(|r| !r.alert) {
        assert!(
            unit_tests.contains(&format!("expr: {}\n", r.name)),
            "no promtool unit test in {TESTS_DIR} for the recording rule {}",
            r.name
        );
    }
}

#[test]
fn tokenizer_finds_metrics_and_their_matchers() {
    let sels = metric_selectors(
        r#"rate(sqlalchemy_checkouts_total{job="sqlalchemy",x="a}b"}[5m]) > 0.85
           and on (job) host_program:sqlalchemy_pool_usage:ratio {job="sqlalchemy"} # sqlalchemy_nope
           or absent(up{job="sqlalchemy"}) > 1e3 unless sqlalchemy_pools"#,
    );
    let got: Vec<(&str, Option<&str>)> = sels
        .iter()
        .map(|s| (s.name.as_str(), s.matchers.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "sqlalchemy_checkouts_total",
                Some(r#"job="sqlalchemy",x="a}b""#)
            ),
            (
                "host_program:sqlalchemy_pool_usage:ratio",
                Some(r#"job="sqlalchemy""#)
            ),
            ("up", Some(r#"job="sqlalchemy""#)),
            ("sqlalchemy_pools", None),
        ]
    );
    assert_eq!(
        sqlalchemy_names("| `sqlalchemy_connections_max{host}` | `_build_info` | sqlalchemy_"),
        BTreeSet::from(["sqlalchemy_connections_max".to_string()])
    );
}
