//! The Kubernetes manifests (`deploy/kubernetes/*.yaml`, every file there,
//! so a new one is checked as soon as it lands), offline:
//!
//! - the built-in kinds (Deployment, Service, Secret, Namespace) against the
//!   Kubernetes API's schemas, strictly (an unknown field is an error), for
//!   the oldest and the newest version we support, with PyPI's
//!   `kubernetes-validate`, which bundles them;
//! - the prometheus-operator kinds (`monitoring.coreos.com`: ServiceMonitor,
//!   PodMonitor, PrometheusRule) against the operator's API with npm's
//!   `@kubernetes-models/prometheus-operator` (`tests/kubernetes/validate-crds.mjs`:
//!   its validator, and every key a declared field);
//! - what no schema knows: the Service, the monitors and the Deployment select
//!   each other and name the same ports, the probes and the storage volume
//!   are where the exporter serves and writes, the job the operator gives is
//!   the job the rules select, the container's flags parse, the user is the
//!   image's;
//! - the web config Secret example: an exporter started with its `web.yml`
//!   serves TLS and takes the scrape Secret's user and password, and no one
//!   else.
//!
//! Each validator must be installed (`scripts/install-deps.sh`): a missing one
//! fails the test, it never skips.

mod common;

use common::TempDir;
use common::pki::Pki;
use serde::Deserialize;
use serde_json::Value;
use sqlalchemy_collectd_exporter::config::Config;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Kubernetes versions the built-in kinds are checked against: the
/// oldest we support and the newest `kubernetes-validate` knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.27", "1.37"];
const NAMESPACE: &str = "monitoring";
const OPERATOR_GROUP: &str = "monitoring.coreos.com/";

fn dir() -> PathBuf {
    common::repo().join("deploy/kubernetes")
}

/// One document of one manifest file.
#[derive(Clone, Debug)]
struct Manifest {
    /// Relative to the repository, e.g. `deploy/kubernetes/service.yaml`.
    file: String,
    doc: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }

    fn is_operator(&self) -> bool {
        self.doc["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with(OPERATOR_GROUP))
    }
}

/// Every `*.yaml` in `deploy/kubernetes`, sorted.
fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of every manifest file, in file order.
fn manifests() -> Vec<Manifest> {
    let mut all = Vec::new();
    for path in files() {
        let text = std::fs::read_to_string(&path).expect("read manifest");
        let file = path
            .strip_prefix(common::repo())
            .expect("in the repository")
            .display()
            .to_string();
        for de in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc = Value::deserialize(de).unwrap_or_else(|e| panic!("{file}: {e}"));
            if doc.is_null() {
                continue;
            }
            all.push(Manifest {
                file: file.clone(),
                doc,
            });
        }
    }
    all
}

/// The one document of `kind` named `name`.
fn one(all: &[Manifest], kind: &str, name: &str) -> Value {
    let found: Vec<&Manifest> = all
        .iter()
        .filter(|m| m.kind() == kind && m.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name}, found {}", found.len());
    found[0].doc.clone()
}

const EXPORTER: &str = "sqlalchemy-collectd-exporter";

/// The interpreter with `kubernetes-validate`: the test venv's (`SCE_PYTHON`,
/// else `.venv/bin/python`).
fn python_with_validator() -> &'static Path {
    let python = common::client::python();
    let ok = Command::new(python)
        .args(["-c", "import kubernetes_validate"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        ok.success(),
        "{} has no kubernetes_validate; scripts/install-deps.sh installs \
         tests/kubernetes/requirements.txt into .venv",
        python.display()
    );
    python
}

/// `python -m kubernetes_validate --strict` for every version on `files`:
/// (exit code, output lines).
fn kubernetes_validate(files: &[PathBuf]) -> (i32, Vec<String>) {
    let mut cmd = Command::new(python_with_validator());
    cmd.args(["-m", "kubernetes_validate", "--strict"]);
    for v in KUBERNETES_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd
        .args(files)
        .current_dir(common::repo())
        .output()
        .expect("kubernetes_validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        text.lines().map(str::to_owned).collect(),
    )
}

/// `node tests/kubernetes/validate-crds.mjs` on `docs`: (exit code, output
/// lines).
fn validate_operator_kinds(docs: &[Manifest]) -> (i32, Vec<String>) {
    let script = common::repo().join("tests/kubernetes/validate-crds.mjs");
    let modules = common::repo().join("tests/kubernetes/node_modules/@kubernetes-models");
    assert!(
        modules.is_dir(),
        "{} is missing; scripts/install-deps.sh runs npm ci in tests/kubernetes",
        modules.display()
    );
    let input: Vec<Value> = docs
        .iter()
        .map(|m| serde_json::json!({"file": m.file, "doc": m.doc}))
        .collect();
    let mut child = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed (scripts/install-deps.sh installs nodejs and npm)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&input).expect("JSON").as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        text.lines().map(str::to_owned).collect(),
    )
}

#[test]
fn the_directory_holds_every_manifest_the_readme_names() {
    let kinds: BTreeSet<(String, String)> = manifests()
        .iter()
        .map(|m| (m.kind().to_owned(), m.name().to_owned()))
        .collect();
    for (kind, name) in [
        ("Namespace", NAMESPACE),
        ("Deployment", EXPORTER),
        ("Service", EXPORTER),
        ("ServiceMonitor", EXPORTER),
        ("PodMonitor", EXPORTER),
        ("Secret", "sqlalchemy-collectd-exporter-web-config"),
        ("Secret", "sqlalchemy-collectd-exporter-scrape-auth"),
    ] {
        assert!(
            kinds.contains(&(kind.to_owned(), name.to_owned())),
            "no {kind} {name} in deploy/kubernetes: {kinds:?}"
        );
    }
    for m in manifests() {
        if m.kind() != "Namespace" {
            assert_eq!(
                m.doc["metadata"]["namespace"],
                NAMESPACE,
                "{} {}",
                m.file,
                m.name()
            );
        }
    }
}

#[test]
fn built_in_kinds_pass_the_kubernetes_schemas_strictly() {
    let all = manifests();
    let (code, lines) = kubernetes_validate(&files());
    let report = lines.join("\n");
    assert_eq!(code, 0, "kubernetes-validate failed:\n{report}");
    for m in &all {
        for v in KUBERNETES_VERSIONS {
            let key = format!(
                "{} passed for resource {}/{} against version {v}",
                m.file,
                m.kind().to_lowercase(),
                m.name()
            );
            let passed = lines
                .iter()
                .any(|l| l.starts_with("INFO ") && l.ends_with(&key));
            // The operator's kinds are not in the Kubernetes API; the next
            // test checks them. Any other kind must pass.
            assert_eq!(
                passed,
                !m.is_operator(),
                "{} {}/{} against {v}:\n{report}",
                m.file,
                m.kind(),
                m.name()
            );
        }
    }
    for l in &lines {
        let operator_kind_without_schema = l.starts_with("WARN ")
            && l.contains("Couldn't find schema for kind ")
            && l.contains(&format!("with api version {OPERATOR_GROUP}"));
        assert!(
            l.starts_with("INFO ") || operator_kind_without_schema,
            "kubernetes-validate: {l}\n{report}"
        );
    }
}

#[test]
fn the_kubernetes_validator_rejects_an_unknown_field() {
    // So that the test above cannot pass by checking nothing.
    let tmp = TempDir::new("kubernetes", "typo");
    let text = std::fs::read_to_string(dir().join("deployment.yaml")).expect("deployment");
    let typo = text.replace("readOnlyRootFilesystem:", "readOnlyRootFilesytem:");
    assert_ne!(typo, text);
    let path = tmp.path().join("deployment.yaml");
    std::fs::write(&path, typo).expect("write");
    let (code, lines) = kubernetes_validate(&[path]);
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("ERROR ") && l.contains("readOnlyRootFilesytem"))
            .count(),
        KUBERNETES_VERSIONS.len(),
        "{lines:#?}"
    );
}

#[test]
fn operator_kinds_pass_the_prometheus_operator_api() {
    let docs: Vec<Manifest> = manifests()
        .into_iter()
        .filter(|m| m.is_operator())
        .collect();
    let kinds: BTreeSet<&str> = docs.iter().map(|m| m.kind()).collect();
    assert!(
        kinds.contains("ServiceMonitor") && kinds.contains("PodMonitor"),
        "{kinds:?}"
    );
    let (code, lines) = validate_operator_kinds(&docs);
    let want: Vec<String> = docs
        .iter()
        .map(|m| format!("ok {} {}/{}", m.file, m.kind().to_lowercase(), m.name()))
        .collect();
    assert_eq!((code, &lines), (0, &want));
}

#[test]
fn the_operator_validator_rejects_unknown_fields_and_bad_values() {
    let mut docs: Vec<Manifest> = manifests()
        .into_iter()
        .filter(|m| matches!(m.kind(), "ServiceMonitor" | "PodMonitor"))
        .collect();
    docs.sort_by(|a, b| a.kind().cmp(b.kind()));
    let [pod, service] = &mut docs[..] else {
        panic!("one PodMonitor and one ServiceMonitor")
    };
    pod.doc["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s".into();
    service.doc["spec"]["endpoints"][0]["scheme"] = "ftp".into();
    let (pod_file, service_file) = (pod.file.clone(), service.file.clone());
    let (code, lines) = validate_operator_kinds(&docs);
    assert_eq!(code, 1, "{lines:#?}");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "error {} podmonitor/{EXPORTER}: spec.podMetricsEndpoints[0].intervall: \
             not a field of PodMetricsEndpoint",
            pod_file
        )),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1],
        format!(
            "error {} servicemonitor/{EXPORTER}: data/spec/endpoints/0/scheme must be \
             equal to one of the allowed values",
            service_file
        )
    );
}

/// The ports of a container or a Service, by name: (number, protocol).
fn ports(list: &Value, number: &str) -> Vec<(String, u64, String)> {
    list.as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name").to_owned(),
                p[number].as_u64().expect("port number"),
                p["protocol"].as_str().unwrap_or("TCP").to_owned(),
            )
        })
        .collect()
}

/// Whether every `matchLabels` pair is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector.as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The job every rule expression selects (`job="…"`), in the rules users load.
fn rules_job() -> String {
    let mut jobs = BTreeSet::new();
    let mut rule_files = vec![common::repo().join("alerts/sqlalchemy.rules.yml")];
    // The rendered PrometheusRule, once it is there, selects the same job.
    let rendered = dir().join("prometheusrule.yaml");
    if rendered.exists() {
        rule_files.push(rendered);
    }
    for path in rule_files {
        let doc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("rules")).expect("YAML");
        let groups = doc
            .get("spec")
            .map_or(&doc["groups"], |spec| &spec["groups"]);
        for rule in groups
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().expect("rules"))
        {
            let expr = rule["expr"].as_str().expect("expr");
            for (at, _) in expr.match_indices("job=\"") {
                let rest = &expr[at + 5..];
                jobs.insert(rest[..rest.find('"').expect("closing quote")].to_owned());
            }
        }
    }
    assert_eq!(jobs.len(), 1, "one job in every rule: {jobs:?}");
    jobs.into_iter().next().expect("a job")
}

#[test]
fn the_manifests_fit_together_and_fit_the_exporter() {
    let all = manifests();
    let deployment = one(&all, "Deployment", EXPORTER);
    let service = one(&all, "Service", EXPORTER);
    let service_monitor = one(&all, "ServiceMonitor", EXPORTER);
    let pod_monitor = one(&all, "PodMonitor", EXPORTER);
    let spec = &deployment["spec"];
    let pod = &spec["template"];
    let pod_labels = &pod["metadata"]["labels"];
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // One replica, and never two during a rollout: a UDP Service over two
    // would split each client process's datagrams between them.
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate");
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));

    // The ports the exporter listens on by default, named for the Service.
    let container_ports = ports(&c["ports"], "containerPort");
    assert_eq!(
        container_ports,
        [
            ("collectd".to_owned(), 25827, "UDP".to_owned()),
            ("http".to_owned(), 9827, "TCP".to_owned()),
        ]
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    assert!(args.contains(&"--collectd.listen-address=0.0.0.0:25827"));
    assert!(args.contains(&"--web.listen-address=0.0.0.0:9827"));
    let mut argv = vec![EXPORTER];
    argv.extend(&args);
    Config::try_parse_from(argv).unwrap_or_else(|e| panic!("the Deployment's args: {e}"));

    // Probes where the exporter answers them.
    for (probe, path) in [
        ("startupProbe", "/-/ready"),
        ("readinessProbe", "/-/ready"),
        ("livenessProbe", "/-/healthy"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }

    // Non-root, read-only, and the one writable place is --storage.path.
    let pod_security = &pod["spec"]["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(pod_security["runAsUser"], image_uid());
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let storage = args
        .iter()
        .find_map(|a| a.strip_prefix("--storage.path="))
        .expect("--storage.path");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == storage)
        .unwrap_or_else(|| panic!("no volume mounted on {storage}"));
    let volume = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert!(volume["emptyDir"].is_object(), "{volume}");

    // The Service: the pod's two ports under the same names.
    assert!(selects(&service["spec"]["selector"], pod_labels));
    let service_ports = ports(&service["spec"]["ports"], "port");
    assert_eq!(service_ports, container_ports);
    for p in service["spec"]["ports"].as_array().expect("ports") {
        assert_eq!(p["targetPort"], p["name"]);
    }

    // The monitors select the Service and the pod, scrape the http port, and
    // give the job the rules select.
    let job = rules_job();
    let sm = &service_monitor["spec"];
    assert!(selects(
        &sm["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert_eq!(sm["namespaceSelector"]["matchNames"][0], NAMESPACE);
    assert_eq!(sm["endpoints"][0]["port"], "http");
    assert_eq!(sm["endpoints"][0]["path"], "/metrics");
    let label = sm["jobLabel"]
        .as_str()
        .expect("the ServiceMonitor's jobLabel");
    assert_eq!(service["metadata"]["labels"][label], job.as_str());
    let pm = &pod_monitor["spec"];
    assert!(selects(&pm["selector"]["matchLabels"], pod_labels));
    assert_eq!(pm["namespaceSelector"]["matchNames"][0], NAMESPACE);
    assert_eq!(pm["podMetricsEndpoints"][0]["port"], "http");
    assert_eq!(pm["podMetricsEndpoints"][0]["path"], "/metrics");
    let label = pm["jobLabel"].as_str().expect("the PodMonitor's jobLabel");
    assert_eq!(pod_labels[label], job.as_str());
}

/// The user the image runs as (`USER` of the Dockerfile's last stage).
fn image_uid() -> u64 {
    let dockerfile =
        std::fs::read_to_string(common::repo().join("Dockerfile")).expect("Dockerfile");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the Dockerfile");
    user.split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .unwrap_or_else(|| panic!("USER {user} is not numeric"))
}

#[test]
fn the_readme_points_clients_at_the_service() {
    let all = manifests();
    let service = one(&all, "Service", EXPORTER);
    let udp = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["protocol"] == "UDP")
        .expect("a UDP port");
    let readme = std::fs::read_to_string(dir().join("README.md")).expect("README.md");
    let url = format!(
        "plugin=collectd&collectd_host={}.{}.svc&collectd_port={}",
        service["metadata"]["name"].as_str().expect("name"),
        service["metadata"]["namespace"]
            .as_str()
            .expect("namespace"),
        udp["port"]
    );
    assert!(readme.contains(&url), "README.md has no {url}");
    // The parameters are the real client's (the test app's URL).
    let app = std::fs::read_to_string(common::repo().join("tests/clients/app.py")).expect("app.py");
    for param in ["plugin=collectd", "collectd_host=", "collectd_port="] {
        assert!(app.contains(param), "tests/clients/app.py has no {param}");
    }
}

/// `curl` over TLS: (status, body); status 0 when no response came.
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}; scripts/install-deps.sh installs it"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_web_config_secret_serves_tls_to_the_scrape_secrets_user_only() {
    let all = manifests();
    let web = one(&all, "Secret", "sqlalchemy-collectd-exporter-web-config");
    let auth = one(&all, "Secret", "sqlalchemy-collectd-exporter-scrape-auth");
    let web_yml = web["stringData"]["web.yml"].as_str().expect("web.yml");
    let (user, password) = (
        auth["stringData"]["username"].as_str().expect("username"),
        auth["stringData"]["password"].as_str().expect("password"),
    );
    // The certificate and key come from the TLS Secret mounted beside it;
    // here they are made at test time under the same names.
    let mount = "/etc/sqlalchemy-collectd-exporter/tls/";
    assert!(web_yml.contains(&format!("{mount}tls.crt")), "{web_yml}");
    let pki = Pki::new("kubernetes-web");
    pki.write("tls", "sqlalchemy-collectd-exporter.monitoring.svc");
    let config = pki.path("web.yml");
    let dir = format!("{}/", pki.dir.path().display());
    std::fs::write(&config, web_yml.replace(mount, &dir)).expect("write web.yml");

    let e = common::start(&["--web.config.file", config.to_str().expect("UTF-8")]);
    let url = format!("https://{}/metrics", e.http);
    let ca = pki.arg("ca.crt");
    let credentials = format!("{user}:{password}");
    let (status, body) = curl(&url, &["--cacert", &ca, "-u", &credentials]);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\nsqlalchemy_collectd_exporter_build_info{"),
        "{body}"
    );
    let wrong = format!("{user}:not-{password}");
    assert_eq!(curl(&url, &["--cacert", &ca, "-u", &wrong]).0, 401);
    assert_eq!(curl(&url, &["--cacert", &ca]).0, 401);
    // Plain HTTP is not served.
    let (status, _) = curl(&format!("http://{}/metrics", e.http), &[]);
    assert_ne!(status, 200);
}
