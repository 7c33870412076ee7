//! Scale-out as a large fleet runs it (`docs/scale-out.md`): three exporters,
//! one per site, each fed by its own hosts (a real sqlalchemy-collectd
//! client app and hosts of synthetic client processes); two Prometheus
//! replicas in agent mode (external label `replica`) scraping all three and
//! remote-writing into one VictoriaMetrics (Debian's `victoria-metrics`),
//! which drops the `replica` label and deduplicates the two copies of every
//! sample. Queries on the central store must give the fleet's truth: per
//! program the connections and checked-out connections the clients hold and
//! the `increase()` of checkouts they made, exactly, with no double counting
//! from the replicas; an exporter killed takes its site's series with it
//! (Prometheus's staleness markers) and the rest stays exact.

mod common;

use common::TempDir;
use common::binary::Binary;
use common::client::{App, Report};
use common::daemon::Daemon;
use nix::sys::signal::Signal;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const SITES: [&str; 3] = ["a", "b", "c"];
/// Synthetic hosts per site, and per host its programs with their processes.
const HOSTS: usize = 3;
const PROGRAMS: [(&str, usize); 2] = [("api", 2), ("worker", 1)];
/// The real client's program (the app's scenario).
const REAL: &str = "checkout";
/// Checkouts each synthetic process of a program adds per report while busy.
const STEP: [(&str, u64); 2] = [("api", 7), ("worker", 3)];
/// Reports in the busy phase.
const BUSY_REPORTS: u64 = 3;
/// How long the central store may take to show a state.
const SETTLE: Duration = Duration::from_secs(30);
const HINT: &str = "run the README's test command, scripts/test.sh, which installs Debian's \
                    prometheus and victoria-metrics";

fn unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One synthetic client process: what it holds and its lifetime checkouts.
#[derive(Clone, Debug)]
struct Process {
    site: usize,
    host: String,
    program: &'static str,
    token: String,
    checked_out: u64,
    idle: u64,
    checkouts: u64,
}

/// Every synthetic process, the reports left in the busy phase, and the
/// client clock (one second per report, as the real client stamps them).
struct Fleet {
    processes: Vec<Process>,
    busy: u64,
    time: u64,
}

impl Fleet {
    fn new() -> Fleet {
        let mut processes = Vec::new();
        for (site, s) in SITES.iter().enumerate() {
            for h in 0..HOSTS {
                for (program, n) in PROGRAMS {
                    for i in 0..n {
                        processes.push(Process {
                            site,
                            host: format!("site{s}-host{h}"),
                            program,
                            token: format!("{}:{:06x}", 2000 + processes.len(), 0xabc000 + i),
                            // Different on every process, so that a sum
                            // counted twice or missing one cannot match.
                            checked_out: 1 + ((site + h + i) % 3) as u64,
                            idle: 1 + (h % 2) as u64,
                            checkouts: 100 * (processes.len() as u64 + 1),
                        });
                    }
                }
            }
        }
        Fleet {
            processes,
            busy: 0,
            time: unix() as u64,
        }
    }

    /// One report of every process: the datagrams per site.
    fn round(&mut self) -> Vec<Vec<Vec<u8>>> {
        self.time += 1;
        let busy = self.busy > 0;
        self.busy = self.busy.saturating_sub(1);
        let mut out = vec![Vec::new(); SITES.len()];
        for p in &mut self.processes {
            if busy {
                p.checkouts += step(p.program);
            }
            let id = |type_: &str| Identity {
                host: p.host.as_str().into(),
                plugin: "sqlalchemy".into(),
                plugin_instance: p.program.into(),
                type_: type_.into(),
                type_instance: p.token.as_str().into(),
            };
            let (out_, idle) = (p.checked_out as f64, p.idle as f64);
            let pool = [1.0, out_, idle, 0.0, out_ + idle].map(Value::Gauge);
            let totals = [p.checkouts as i64, 0, (p.checked_out + p.idle) as i64, 0];
            for (type_, values) in [
                ("sqlalchemy_pool", pool.to_vec()),
                ("sqlalchemy_totals", totals.map(Value::Derive).to_vec()),
            ] {
                out[p.site].push(
                    Encoder::new()
                        .client_value_list(&id(type_), self.time, 1, &values)
                        .finish()
                        .to_vec(),
                );
            }
        }
        out
    }
}

fn step(program: &str) -> u64 {
    STEP.iter()
        .find(|(p, _)| *p == program)
        .map_or(0, |(_, s)| *s)
}

/// Per program: connections, checked out, checkouts.
type Truth = BTreeMap<String, [u64; 3]>;

/// What the synthetic processes of `sites` and their real apps (the latest
/// report of each site's app, by site) hold and did.
fn truth(fleet: &Fleet, reports: &[Report], sites: &[usize]) -> Truth {
    let mut t = Truth::new();
    for p in fleet.processes.iter().filter(|p| sites.contains(&p.site)) {
        let e = t.entry(p.program.to_owned()).or_default();
        e[0] += p.checked_out + p.idle;
        e[1] += p.checked_out;
        e[2] += p.checkouts;
    }
    for (site, r) in reports.iter().enumerate() {
        if !sites.contains(&site) {
            continue;
        }
        for v in &r.live {
            let s = v.client_state();
            let e = t.entry(v.program.clone()).or_default();
            e[0] += s.open;
            e[1] += s.held;
            e[2] += s.checkouts;
        }
    }
    t
}

/// An instant query on the central store: label value of `by` → value.
fn query(vm: &Daemon, expr: &str, by: &str) -> BTreeMap<String, f64> {
    let doc = vm.api("query", &[("query", expr)]);
    assert_eq!(doc["status"], "success", "{expr}: {doc}");
    doc["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{expr}: no result in {doc}"))
        .iter()
        .map(|r| {
            let key = r["metric"][by].as_str().unwrap_or_default().to_owned();
            let value = r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{expr}: a value in {r}"));
            (key, value)
        })
        .collect()
}

/// Polls the central store until `expr` by `by` is `want`.
fn await_query(vm: &Daemon, expr: &str, by: &str, want: &BTreeMap<String, f64>) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = query(vm, expr, by);
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{expr} on the central store within {SETTLE:?}:\n  got  {got:?}\n  want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Polls the central store until the fleet-wide sums per program of
/// connections, checked out and checkouts are `truth`.
fn await_truth(vm: &Daemon, truth: &Truth) {
    for (i, name) in [
        "sqlalchemy_connections",
        "sqlalchemy_connections_checked_out",
        "sqlalchemy_checkouts_total",
    ]
    .into_iter()
    .enumerate()
    {
        let want = truth
            .iter()
            .map(|(k, v)| (k.clone(), v[i] as f64))
            .collect();
        await_query(
            vm,
            &format!("sum by (program) ({name}{{job=\"sqlalchemy\"}})"),
            "program",
            &want,
        );
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Debian's VictoriaMetrics, single node: the remote-write receiver and the
/// central store, the `replica` label dropped and one sample kept per
/// second and series.
fn victoria_metrics(dir: &Path) -> Daemon {
    let relabel = dir.join("relabel.yml");
    write(&relabel, "- action: labeldrop\n  regex: replica\n");
    Daemon::start(
        "victoria-metrics",
        "victoria-metrics",
        dir,
        |port, attempt| {
            vec![
                format!(
                    "-storageDataPath={}",
                    dir.join(format!("vm-{attempt}")).display()
                ),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-relabelConfig={}", relabel.display()),
                "-dedup.minScrapeInterval=1s".into(),
                // Queries see samples as soon as they are written, uncached.
                "-search.latencyOffset=0s".into(),
                "-search.disableCache".into(),
                "-loggerLevel=WARN".into(),
            ]
        },
    )
}

/// A Prometheus replica in agent mode: scrapes every exporter each second and
/// remote-writes to `vm`.
fn agent(dir: &Path, replica: &str, exporters: &[SocketAddr], vm: &Daemon) -> Daemon {
    let targets: Vec<String> = exporters.iter().map(|a| format!("'{a}'")).collect();
    let config = dir.join(format!("agent-{replica}.yml"));
    write(
        &config,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  external_labels:\n    replica: {replica}\n\
             scrape_configs:\n  - job_name: sqlalchemy\n    static_configs:\n      - targets: [{}]\n\
             remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 500ms\n",
            targets.join(", "),
            vm.url
        ),
    );
    let name: &'static str = if replica == "a" { "agent-a" } else { "agent-b" };
    Daemon::start(name, "prometheus", dir, |port, attempt| {
        vec![
            "--enable-feature=agent".into(),
            format!("--config.file={}", config.display()),
            format!(
                "--storage.agent.path={}",
                dir.join(format!("{name}-wal-{attempt}")).display()
            ),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]
    })
}

#[test]
fn sharded_exporters_behind_ha_agents_give_the_fleets_truth_in_the_central_store() {
    for bin in ["victoria-metrics", "prometheus"] {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "{bin} is missing; {HINT}"
        );
    }
    let tmp = TempDir::new("scale-out", "topology");
    let mut exporters: Vec<Binary> = SITES
        .iter()
        .map(|s| {
            let storage = tmp.path().join(format!("storage-{s}"));
            std::fs::create_dir_all(&storage).expect("a storage directory");
            Binary::start(BIN, &["--storage.path", &storage.display().to_string()])
        })
        .collect();
    let https: Vec<SocketAddr> = exporters.iter().map(|e| e.http).collect();
    let udps: Vec<SocketAddr> = exporters.iter().map(|e| e.udp).collect();
    let vm = victoria_metrics(tmp.path());
    let agents = [
        agent(tmp.path(), "a", &https, &vm),
        agent(tmp.path(), "b", &https, &vm),
    ];

    // The synthetic hosts report every second until the test ends.
    let fleet = Arc::new(Mutex::new(Fleet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (fleet, stop) = (fleet.clone(), stop.clone());
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
            let started = Instant::now();
            for n in 1..=600u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sites = fleet.lock().expect("fleet").round();
                for (site, datagrams) in sites.iter().enumerate() {
                    for d in datagrams {
                        // A killed exporter's port refuses; its clients go on.
                        let _ = socket.send_to(d, udps[site]);
                    }
                }
                let next = started + Duration::from_secs(u64::from(n));
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    // A real client app per site, on a host of its own.
    let mut apps: Vec<App> = SITES
        .iter()
        .zip(&exporters)
        .map(|(s, e)| App::start(REAL, e.udp.port(), &format!("site{s}-real")))
        .collect();
    let mut reports: Vec<Report> = apps.iter().map(|a| a.report("init")).collect();
    let all = [0, 1, 2];

    // The steady state, exact on the central store.
    let before = truth(&fleet.lock().expect("fleet"), &reports, &all);
    let sel = "{job=\"sqlalchemy\"}";
    await_truth(&vm, &before);
    // One series per host/program, not one per replica.
    let pairs = SITES.len() * (HOSTS * PROGRAMS.len() + 1);
    let count = query(&vm, &format!("count(sqlalchemy_processes{sel})"), "");
    assert_eq!(count, BTreeMap::from([(String::new(), pairs as f64)]));
    assert_eq!(
        query(&vm, "count(up{job=\"sqlalchemy\"})", ""),
        BTreeMap::from([(String::new(), SITES.len() as f64)]),
        "one up series per exporter"
    );
    // The plateau before the busy phase is in the store for a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let busy_from = unix();
    // Deduplication: over the life of a series, both replicas' samples of it
    // are at most one per second (without it, two).
    let series = "sqlalchemy_processes{job=\"sqlalchemy\",host=\"sitea-host0\",program=\"api\"}";
    let age_expr = format!("time() - tfirst_over_time({series}[1m])");
    let age = common::poll(SETTLE, "a series 8 s old on the central store", || {
        let age = query(&vm, &age_expr, "").values().next().copied()?;
        (age >= 8.0).then_some(age)
    });
    let n = query(&vm, &format!("count_over_time({series}[1m])"), "")
        .values()
        .next()
        .copied()
        .unwrap_or(0.0);
    assert!(
        (age / 2.0..=age + 2.0).contains(&n),
        "samples of one series over its {age} s, two replicas deduplicated: {n}"
    );
    // ... although both replicas write every one of them.
    for a in &agents {
        let sent = common::poll(SETTLE, "samples remote-written by each replica", || {
            let (_, text) = a.get("/metrics")?;
            let s = common::samples(&text);
            let sent = common::sum(&s, "prometheus_remote_storage_samples_total");
            let failed = common::sum(&s, "prometheus_remote_storage_samples_failed_total");
            assert_eq!(failed, 0.0, "{}: samples that failed to send", a.name);
            (sent > 0.0).then_some(sent)
        });
        eprintln!("{}: {sent} samples remote-written", a.name);
    }
    eprintln!("one series on the central store: {n} samples in its {age} s");

    // The busy phase: every synthetic process checks out more, each app
    // checks out three connections and returns one.
    fleet.lock().expect("fleet").busy = BUSY_REPORTS;
    for (app, r) in apps.iter_mut().zip(&mut reports) {
        app.next();
        *r = app.report("three_out");
    }
    for (app, r) in apps.iter_mut().zip(&mut reports) {
        app.next();
        *r = app.report("one_returned");
    }
    common::poll(Duration::from_secs(10), "the busy phase to end", || {
        (fleet.lock().expect("fleet").busy == 0).then_some(())
    });
    let after = truth(&fleet.lock().expect("fleet"), &reports, &all);
    await_truth(&vm, &after);
    // increase() over a window that starts on the plateau: what the
    // clients did, exactly.
    let window = (unix() - busy_from + 2.0).ceil() as u64;
    let did: BTreeMap<String, f64> = after
        .iter()
        .map(|(k, v)| (k.clone(), (v[2] - before[k][2]) as f64))
        .collect();
    assert!(
        did.values().all(|d| *d > 0.0),
        "every program did work: {did:?}"
    );
    await_query(
        &vm,
        &format!("sum by (program) (increase(sqlalchemy_checkouts_total{sel}[{window}s]))"),
        "program",
        &did,
    );
    eprintln!(
        "central store, per program (connections, checked out, checkouts; increase over {window}s):"
    );
    for (program, v) in &after {
        eprintln!("  {program:<10} {:?} +{}", v, did[program]);
    }

    // Site c's exporter dies: its series go stale there, the rest is exact.
    let killed = exporters.pop().expect("site c");
    killed.signal(Signal::SIGKILL);
    let rest = truth(&fleet.lock().expect("fleet"), &reports, &[0, 1]);
    await_query(
        &vm,
        "count(sqlalchemy_processes{job=\"sqlalchemy\",host=~\"sitec-.*\"}) or vector(0)",
        "",
        &BTreeMap::from([(String::new(), 0.0)]),
    );
    await_truth(&vm, &rest);
    await_query(
        &vm,
        &format!("up{{job=\"sqlalchemy\",instance=\"{}\"}}", killed.http),
        "instance",
        &BTreeMap::from([(killed.http.to_string(), 0.0)]),
    );

    stop.store(true, Ordering::Relaxed);
    sender.join().expect("the sender");
}
