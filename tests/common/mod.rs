//! The one home of test support, shared by the integration tests (`mod
//! common;`) and the examples (`#[path = "../tests/common/mod.rs"] mod
//! common;`): an exporter started in-process on ephemeral loopback ports (its
//! own runtime on its own thread, so tests are plain blocking code), UDP
//! sending, scraping, parsing, polling and temporary directories;
//! [`binary`] runs the built binary and reads its ready file, [`load`] makes
//! and paces load (the load generator, the benchmark, the soak test),
//! [`process`] reaps children and reads their logs, [`daemon`] starts
//! Prometheus and Alertmanager, [`client`] drives the real Python client
//! (`tests/clients/app.py`), [`pki`] makes certificates for TLS, [`postgres`]
//! starts PostgreSQL and PgBouncer and queries them.
//!
//! Nothing here is part of the exporter's library; each user takes what it
//! needs of it.

#![allow(dead_code)]

pub mod binary;
pub mod browser;
pub mod client;
pub mod daemon;
pub mod load;
pub mod pki;
pub mod postgres;
pub mod process;

use sqlalchemy_collectd_exporter::config::Config;
use sqlalchemy_collectd_exporter::server;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Exporter {
    pub udp: SocketAddr,
    pub http: SocketAddr,
    /// Every UDP listener, in flag order (`udp` is the first).
    pub udp_all: Vec<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Its `--storage.path`, empty at start: a first start, so every process
    /// counts from zero.
    _storage: TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts an exporter on 127.0.0.1:0 (UDP and HTTP) with `args` added.
pub fn start(args: &[&str]) -> Exporter {
    let mut argv = vec![
        "sqlalchemy-collectd-exporter",
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
    ];
    let storage = TempDir::new("exporter", "storage");
    let storage_path = storage.path().display().to_string();
    argv.extend_from_slice(&["--storage.path", &storage_path]);
    argv.extend_from_slice(args);
    let config = Config::try_parse_from(argv).expect("test flags parse");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let bound = server::bind(&config).expect("bind on loopback");
            addr_tx
                .send((bound.udp_addresses(), bound.http_addresses()[0]))
                .expect("test waits for addresses");
            server::run(bound, &config.telemetry_path, &config.push_path, async {
                let _ = shutdown_rx.await;
            })
            .await
            .expect("server runs");
        });
    });
    let (udp_all, http) = addr_rx.recv().expect("exporter started");
    Exporter {
        udp: udp_all[0],
        http,
        udp_all,
        shutdown: Some(shutdown_tx),
        thread: Some(thread),
        _storage: storage,
    }
}

/// A directory under the system temp dir, `sce-<test>-<pid>-<what>-<n>`,
/// removed on drop; kept (and named on stderr) when a test panics, for
/// inspection.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str, what: &str) -> TempDir {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sce-{test}-{}-{what}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn sender() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind sender")
}

pub fn send_all(to: SocketAddr, datagrams: &[Vec<u8>]) {
    let s = sender();
    for d in datagrams {
        s.send_to(d, to).expect("send datagram");
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn testdata(scenario: &str) -> PathBuf {
    repo().join("tests/testdata").join(scenario)
}

/// The scenario's datagrams in capture order.
pub fn datagrams(scenario: &str) -> Vec<Vec<u8>> {
    let dir = testdata(scenario);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read datagram"))
        .collect()
}

pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub body: Vec<u8>,
}

/// An HTTP client that hands back every status (no error for 4xx and 5xx)
/// and gives up after 10 s.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The `Authorization` header value of HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn get(http: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = agent().get(format!("http://{http}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().expect("HTTP request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let content_encoding = header("content-encoding");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("read body");
    Response {
        status,
        content_type,
        content_encoding,
        body,
    }
}

/// `/metrics` in the text format.
pub fn scrape(http: SocketAddr) -> String {
    let r = get(http, "/metrics", &[]);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).expect("UTF-8 exposition")
}

/// Samples of a text or OpenMetrics exposition: `name{labels}` → value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (series.to_owned(), value)
        })
        .collect()
}

/// One SQLAlchemy sample, e.g. `sqla(&m, "sqlalchemy_connections", "vm", "app")`.
pub fn sqla(samples: &BTreeMap<String, f64>, name: &str, host: &str, program: &str) -> Option<f64> {
    samples
        .get(&format!("{name}{{host=\"{host}\",program=\"{program}\"}}"))
        .copied()
}

/// Calls `f` until it returns `Some`, or panics after `timeout` with the
/// last state `describe` gives.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Scrapes until `want` holds for the samples; returns them.
pub fn scrape_until(
    http: SocketAddr,
    what: &str,
    timeout: Duration,
    want: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = scrape(http);
        let s = samples(&last);
        if want(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last scrape:\n{last}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `promtool check metrics` on an exposition; panics with its output when it
/// finds a problem. promtool is required: the test command installs it.
pub fn promtool_check(exposition: &[u8]) {
    let problems = promtool_problems(exposition);
    assert!(
        problems.is_empty(),
        "promtool check metrics:\n{}",
        problems.join("\n")
    );
}

/// What `promtool check metrics` finds wrong with an exposition, one line
/// each (an OpenMetrics artefact left out, see below).
pub fn promtool_problems(exposition: &[u8]) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool must be installed (Debian package prometheus); run the README's test command",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition)
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenMetrics counters are declared without _total, which promtool's
    // linter reports as "no help text" for the _total sample: an artefact.
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("_total no help text"))
        .collect();
    // (A failure that reports only the artefact is a clean exposition.)
    problems.into_iter().map(str::to_owned).collect()
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = repo().join("tests/fixtures").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if actual != expected {
        let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
        let diff: Vec<String> = e
            .iter()
            .filter(|l| !a.contains(l))
            .map(|l| format!("- {l}"))
            .chain(
                a.iter()
                    .filter(|l| !e.contains(l))
                    .map(|l| format!("+ {l}")),
            )
            .collect();
        panic!(
            "{} differs (UPDATE_GOLDEN=1 rewrites it):\n{}",
            path.display(),
            diff.join("\n")
        );
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Sum of every sample whose series starts with `prefix`.
pub fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// Sends datagrams and waits until the exporter has judged every value list
/// in them (stored or rejected); returns the scrape at that point.
pub fn send_and_settle(e: &Exporter, datagrams: &[Vec<u8>], value_lists: usize) -> String {
    send_and_settle_with(e, datagrams, value_lists, || scrape(e.http))
}

/// [`send_and_settle`], scraping with `scrape` (say, over TLS).
pub fn send_and_settle_with(
    e: &Exporter,
    datagrams: &[Vec<u8>],
    value_lists: usize,
    scrape: impl Fn() -> String,
) -> String {
    const P: &str = "sqlalchemy_collectd_exporter_";
    let before = samples(&scrape());
    let judged = |s: &BTreeMap<String, f64>| {
        sum(s, &format!("{P}value_lists_accepted_total"))
            + sum(s, &format!("{P}value_lists_rejected_total"))
    };
    let (base_judged, base_dgrams) = (
        judged(&before),
        sum(&before, &format!("{P}datagrams_received_total")),
    );
    send_all(e.udp, datagrams);
    let want_dgrams = base_dgrams + datagrams.len() as f64;
    let want_judged = base_judged + value_lists as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape();
        let s = samples(&text);
        if sum(&s, &format!("{P}datagrams_received_total")) == want_dgrams
            && judged(&s) == want_judged
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "exporter did not judge {value_lists} value lists:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// POSTs `body` as JSON; returns the status and the response text.
pub fn post(http: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    post_with(http, path, body, &[("Content-Type", "application/json")])
}

/// POSTs `body` with `headers`; returns the status and the response text.
pub fn post_with(
    http: SocketAddr,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = agent().post(format!("http://{http}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).expect("HTTP request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}
