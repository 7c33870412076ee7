//! The monitoring mixin (`mixin/`): the committed `alerts/sqlalchemy.rules.yml`,
//! `dashboards/*.json` and `deploy/kubernetes/prometheusrule.yaml` are exactly what
//! `mixin/render.sh` renders from it; the PrometheusRule's groups pass `promtool check
//! rules`; a rendering with another selector (`job=~"sqla.*"`) and a group label
//! (`cluster`) passes `promtool check rules` and every promtool unit test of
//! `alerts/tests/` adapted to it, and its dashboards filter every query by the selector
//! and a `cluster` variable; thresholds and `for:` durations are configuration.
//!
//! jsonnet (Debian's package `jsonnet`) and promtool (package `prometheus`) are required;
//! `scripts/test.sh` installs both. A missing one fails these tests, it does not skip them.

mod common;

use common::TempDir;
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file the mixin renders, relative to the repository (and to a render's output).
const RENDERED: [&str; 5] = [
    "alerts/sqlalchemy.rules.yml",
    "dashboards/sqlalchemy-exporter.json",
    "dashboards/sqlalchemy-fleet.json",
    "dashboards/sqlalchemy-program.json",
    "deploy/kubernetes/prometheusrule.yaml",
];
const RULES: &str = "alerts/sqlalchemy.rules.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";
const DEFAULT_SELECTOR: &str = r#"job="sqlalchemy""#;

/// The custom rendering: a regex job selector that the dashboards follow too, a group
/// label and another uid prefix.
const CUSTOM_CONFIG: &str = r#"{selector: 'job=~"sqla.*"', dashboardSelector: self.selector, groupLabels: ['cluster'], dashboardUidPrefix: 'sqla-'}"#;
const CUSTOM_SELECTOR: &str = r#"job=~"sqla.*""#;
/// What the adapted unit tests' series carry instead of `job="sqlalchemy"`.
const CUSTOM_JOB: &str = "sqla-a";
const CLUSTER: &str = "c1";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn output(cmd: &mut Command, what: &str, hint: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): {hint}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const JSONNET_HINT: &str = "jsonnet is required: run scripts/test.sh, which installs it \
                            (Debian package `jsonnet`)";
const PROMTOOL_HINT: &str = "promtool is required: run scripts/test.sh, which installs it \
                             (Debian package `prometheus`), or set PROMTOOL";

/// `mixin/render.sh OUT [CONFIG]` into a new temporary directory.
fn render(what: &str, config: Option<&str>) -> TempDir {
    // The script's own check would also fail, but with less of a pointer.
    output(
        Command::new("jsonnet").arg("--version"),
        "jsonnet --version",
        JSONNET_HINT,
    );
    let out = TempDir::new("mixin", what);
    let mut cmd = Command::new(common::repo().join("mixin/render.sh"));
    cmd.arg(out.path());
    if let Some(config) = config {
        cmd.arg(config);
    }
    output(&mut cmd, "mixin/render.sh", JSONNET_HINT);
    out
}

fn promtool(args: &[&str]) -> String {
    let bin = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    output(
        Command::new(bin).args(args),
        &format!("promtool {}", args.join(" ")),
        PROMTOOL_HINT,
    )
}

fn yaml(text: &str, what: &str) -> Yaml {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"))
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the root");
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn committed_files_are_what_the_mixin_renders() {
    let out = render("default", None);
    let rendered = files_under(out.path());
    let expected: BTreeSet<String> = RENDERED.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(rendered, expected, "the files mixin/render.sh writes");
    let mut stale = Vec::new();
    for rel in RENDERED {
        let fresh = read(&out.path().join(rel));
        let committed = std::fs::read_to_string(common::repo().join(rel)).unwrap_or_default();
        if fresh != committed {
            let line = fresh
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(fresh.lines().count().min(committed.lines().count()));
            stale.push(format!(
                "{rel}: differs from line {}:\n  rendered:  {:?}\n  committed: {:?}",
                line + 1,
                fresh.lines().nth(line).unwrap_or("<end of file>"),
                committed.lines().nth(line).unwrap_or("<end of file>"),
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "the committed files are not what mixin/ renders: run mixin/render.sh and commit \
         the result (never edit them by hand)\n{}",
        stale.join("\n")
    );
    for rel in RENDERED.iter().filter(|f| f.ends_with(".json")) {
        let text = read(&out.path().join(rel));
        assert!(
            text.starts_with("{\n  \"") && text.ends_with("\n}\n") && !text.contains("\t"),
            "{rel}: JSON with 2-space indentation and a trailing newline"
        );
    }
}

#[test]
fn prometheusrule_holds_the_rules_and_passes_promtool() {
    let repo = common::repo();
    let resource = yaml(&read(&repo.join(PROMETHEUS_RULE)), PROMETHEUS_RULE);
    assert_eq!(resource["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(resource["kind"], "PrometheusRule");
    assert_eq!(
        resource["metadata"]["name"], "sqlalchemy-collectd-exporter",
        "{PROMETHEUS_RULE}: metadata.name"
    );
    let groups = resource["spec"]["groups"].clone();
    let rules = yaml(&read(&repo.join(RULES)), RULES);
    assert_eq!(
        groups, rules["groups"],
        "spec.groups are the groups of {RULES}"
    );

    let tmp = TempDir::new("mixin", "prometheusrule");
    let extracted = tmp.path().join("groups.yml");
    let mut doc = Mapping::new();
    doc.insert("groups".into(), groups);
    std::fs::write(
        &extracted,
        serde_yaml_ng::to_string(&doc).expect("serialize"),
    )
    .expect("write the groups");
    let report = promtool(&["check", "rules", &extracted.to_string_lossy()]);
    assert!(report.contains("SUCCESS: 24 rules found"), "{report}");
}

// ---------------------------------------------------------------------------------------
// The custom rendering.

/// Replaces `from` in a string value with `to`; whether it did.
fn replace_in(v: &mut Yaml, from: &str, to: &str) -> bool {
    match v {
        Yaml::String(s) if s.contains(from) => {
            *s = s.replace(from, to);
            true
        }
        _ => false,
    }
}

/// `alerts/tests/<file>` adapted to the custom rendering `rules`: the series of job
/// `sqlalchemy` become job `sqla-a` of cluster `c1` (other jobs stay what they were:
/// outside the selector), the expected alerts and samples carry those labels, and an
/// expected alert without an `instance` label, which only the absent() half of
/// SQLAlchemyCollectdExporterDown has, loses its job label: absent() of a regex
/// matcher has no labels.
fn adapt(file: &str, text: &str, rules: &Path) -> String {
    let old_job = DEFAULT_SELECTOR;
    let new_series = format!(r#"job="{CUSTOM_JOB}",cluster="{CLUSTER}""#);
    let mut doc = yaml(text, file);
    doc["rule_files"] = Yaml::Sequence(vec![rules.to_string_lossy().into_owned().into()]);
    let mut series = 0;
    let mut labels = 0;
    for test in doc["tests"].as_sequence_mut().expect("tests") {
        for s in test["input_series"]
            .as_sequence_mut()
            .expect("input_series")
        {
            series += usize::from(replace_in(&mut s["series"], old_job, &new_series));
        }
        for t in test
            .get_mut("alert_rule_test")
            .and_then(Yaml::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            let alertname = t["alertname"].as_str().expect("alertname").to_owned();
            for alert in t["exp_alerts"].as_sequence_mut().into_iter().flatten() {
                let exp = alert["exp_labels"].as_mapping_mut().expect("exp_labels");
                if exp.get("job").and_then(Yaml::as_str) != Some("sqlalchemy") {
                    continue;
                }
                labels += 1;
                let job_text = if exp.contains_key("instance") {
                    exp.insert("job".into(), CUSTOM_JOB.into());
                    exp.insert("cluster".into(), CLUSTER.into());
                    format!("(job {CUSTOM_JOB})")
                } else {
                    assert_eq!(
                        alertname, "SQLAlchemyCollectdExporterDown",
                        "{file}: an alert without instance that is not absent()'s"
                    );
                    exp.remove("job");
                    "(job )".to_owned()
                };
                if let Some(ann) = alert
                    .get_mut("exp_annotations")
                    .and_then(Yaml::as_mapping_mut)
                {
                    for (_, v) in ann.iter_mut() {
                        replace_in(v, "(job sqlalchemy)", &job_text);
                    }
                }
            }
        }
        for t in test
            .get_mut("promql_expr_test")
            .and_then(Yaml::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            replace_in(&mut t["expr"], old_job, CUSTOM_SELECTOR);
            for s in t["exp_samples"].as_sequence_mut().into_iter().flatten() {
                labels += usize::from(replace_in(&mut s["labels"], old_job, &new_series));
            }
        }
    }
    assert!(
        series > 0 && labels > 0,
        "{file}: {series} series and {labels} expected label sets adapted"
    );
    serde_yaml_ng::to_string(&doc).expect("serialize the adapted test")
}

#[test]
fn custom_selector_and_group_label_pass_promtool_and_the_adapted_unit_tests() {
    let out = render("custom", Some(CUSTOM_CONFIG));
    let rules_path = out.path().join(RULES);
    let custom = read(&rules_path);
    let shipped = read(&common::repo().join(RULES));
    let selectors = shipped.matches(DEFAULT_SELECTOR).count();
    assert!(selectors > 30, "{RULES}: {selectors} selectors");
    assert_eq!(
        (
            custom.matches(DEFAULT_SELECTOR).count(),
            custom.matches(CUSTOM_SELECTOR).count()
        ),
        (0, selectors),
        "every selector of the custom rules is the custom one:\n{custom}"
    );
    assert!(
        custom.contains(&format!("_config override: {}", r#"{"dashboardSelector":"job=~\"sqla.*\"","dashboardUidPrefix":"sqla-","groupLabels":["cluster"],"selector":"job=~\"sqla.*\""}"#)),
        "the custom rules say how they were rendered:\n{custom}"
    );
    let report = promtool(&["check", "rules", &rules_path.to_string_lossy()]);
    assert!(report.contains("SUCCESS: 24 rules found"), "{report}");

    let tests_dir = common::repo().join("alerts/tests");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
        .expect("alerts/tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 13, "alerts/tests/*.yml: {names:?}");
    let adapted_dir = out.path().join("adapted-tests");
    std::fs::create_dir_all(&adapted_dir).expect("mkdir");
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    for path in &names {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let adapted = adapt(&file, &read(path), &rules_path);
        assert!(!adapted.contains(DEFAULT_SELECTOR), "{file}: {adapted}");
        let target = adapted_dir.join(&file);
        std::fs::write(&target, adapted).expect("write the adapted test");
        args.push(target.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = promtool(&args);
    assert_eq!(
        report.matches("  SUCCESS").count(),
        names.len(),
        "every adapted unit test passes:\n{report}"
    );
}

fn dashboard(dir: &Path, file: &str) -> Json {
    let path = dir.join("dashboards").join(file);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn variable_query(v: &Json) -> &str {
    v["query"]["query"].as_str().unwrap_or("")
}

#[test]
fn custom_dashboards_have_the_group_variable_and_the_selector_in_every_query() {
    let out = render("custom-dashboards", Some(CUSTOM_CONFIG));
    let cluster = r#"cluster=~"$cluster""#;
    for (file, key) in [
        ("sqlalchemy-fleet.json", "fleet"),
        ("sqlalchemy-program.json", "program"),
        ("sqlalchemy-exporter.json", "exporter"),
    ] {
        let d = dashboard(out.path(), file);
        assert_eq!(d["uid"], format!("sqla-{key}"), "{file}: uid");
        for link in d["links"].as_array().expect("links") {
            let url = link["url"].as_str().expect("url");
            assert!(url.starts_with("/d/sqla-"), "{file}: link {url}");
        }
        let vars = d["templating"]["list"].as_array().expect("variables");
        let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(
            &names[..3],
            ["datasource", "cluster", "job"],
            "{file}: the group variable comes before job"
        );
        let group = &vars[1];
        assert_eq!(
            (
                variable_query(group),
                &group["definition"],
                &group["multi"],
                &group["includeAll"],
                &group["allValue"]
            ),
            (
                r#"label_values(sqlalchemy_collectd_exporter_build_info{job=~"sqla.*"}, cluster)"#,
                &Json::from(
                    r#"label_values(sqlalchemy_collectd_exporter_build_info{job=~"sqla.*"}, cluster)"#
                ),
                &Json::Bool(true),
                &Json::Bool(true),
                &Json::from(".*")
            ),
            "{file}: the cluster variable"
        );
        assert_eq!(
            variable_query(&vars[2]),
            r#"label_values(sqlalchemy_collectd_exporter_build_info{job=~"sqla.*", cluster=~"$cluster"}, job)"#,
            "{file}: the job variable"
        );
        for v in &vars[3..] {
            let q = variable_query(v);
            assert!(
                q.contains(&format!(r#"{CUSTOM_SELECTOR}, {cluster}, job=~"$job""#)),
                "{file}: variable {}: {q}",
                v["name"]
            );
            assert_eq!(v["definition"].as_str(), Some(q), "{file}: {}", v["name"]);
        }
        let mut queries = 0;
        for p in d["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("expr");
                queries += 1;
                let selectors = expr.matches(CUSTOM_SELECTOR).count();
                assert!(
                    selectors > 0
                        && expr.matches(cluster).count() == selectors
                        && expr.matches(r#"job=~"$job""#).count() == selectors,
                    "{file}: panel {}: every selector carries the custom selector, the \
                     cluster and the job variable: {expr}",
                    p["title"]
                );
            }
        }
        assert!(queries > 20, "{file}: {queries} queries");
    }
    let fleet = dashboard(out.path(), "sqlalchemy-fleet.json").to_string();
    assert!(
        fleet.contains(
            "/d/sqla-program/sqlalchemy-program?${datasource:queryparam}&${cluster:queryparam}&${job:queryparam}&var-host="
        ),
        "the Programs table links to the Program dashboard with the cluster"
    );
}

#[test]
fn thresholds_and_durations_are_configuration() {
    let config = r#"{poolUsageWarning: 0.8, poolSaturationFor: '3m', programDownFor: '1h', runbookUrlBase: 'https://runbooks.example/sqlalchemy#'}"#;
    let out = render("thresholds", Some(config));
    let rules = yaml(&read(&out.path().join(RULES)), "the rules");
    let alerts = rules["groups"][1]["rules"].as_sequence().expect("alerts");
    let find = |name: &str, severity: &str| {
        alerts
            .iter()
            .find(|a| a["alert"] == name && a["labels"]["severity"] == severity)
            .unwrap_or_else(|| panic!("no {name} {severity}"))
    };
    let warning = find("SQLAlchemyPoolSaturation", "warning");
    assert_eq!(
        (
            &warning["expr"],
            &warning["for"],
            &warning["annotations"]["runbook_url"]
        ),
        (
            &Yaml::from(r#"host_program:sqlalchemy_pool_usage:ratio{job="sqlalchemy"} > 0.8"#),
            &Yaml::from("3m"),
            &Yaml::from("https://runbooks.example/sqlalchemy#sqlalchemypoolsaturation"),
        )
    );
    let description = warning["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("more than 80% of its configured pool capacity")
            && description.contains("checked out for 3 minutes:"),
        "{description}"
    );
    let critical = find("SQLAlchemyPoolSaturation", "critical");
    assert_eq!(
        critical["expr"],
        r#"host_program:sqlalchemy_pool_usage:ratio{job="sqlalchemy"} > 0.95"#
    );
    let down = find("SQLAlchemyProgramDown", "warning");
    assert_eq!(down["for"], "1h");
    assert!(
        down["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("no live process for 1 hour "),
        "{down:?}"
    );
    let fleet = dashboard(out.path(), "sqlalchemy-fleet.json").to_string();
    assert!(
        fleet.contains("SQLAlchemyProgramDown fires after 1 hour.")
            && fleet.contains("Orange from 80 %, red from 95 %")
            && fleet.contains(r#"{"color":"orange","value":0.8}"#),
        "the Fleet dashboard states and draws the configured thresholds"
    );
}
