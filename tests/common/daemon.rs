//! Prometheus and Alertmanager for the tests: started on a free loopback
//! port, awaited until `/-/ready`, killed and reaped on drop (panics
//! included, with their log printed then).

use super::process::kill_and_reap;
use serde_json::Value;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HINT: &str = "run the README's test command, scripts/test.sh, which installs Debian's \
                    prometheus and prometheus-alertmanager";
/// Until a daemon answers `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Daemon {
    pub name: &'static str,
    pub child: Child,
    pub url: String,
    pub addr: SocketAddr,
    log: PathBuf,
    pub agent: ureq::Agent,
}

impl Daemon {
    /// Runs `binary` with `args(port, attempt)`, its log in `dir`, and waits
    /// for `/-/ready`.
    pub fn start(
        name: &'static str,
        binary: &str,
        dir: &Path,
        args: impl Fn(u16, usize) -> Vec<String>,
    ) -> Daemon {
        let mut last_log = String::new();
        // A port taken between choosing and binding makes the daemon exit:
        // try another.
        for attempt in 0..3 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port");
            let log = dir.join(format!("{name}-{attempt}.log"));
            let child = Command::new(binary)
                .args(args(addr.port(), attempt))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("create the log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {binary}: {e}; {HINT}"));
            let mut daemon = Daemon {
                name,
                child,
                url: format!("http://{addr}"),
                addr,
                log,
                agent: super::agent(),
            };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    last_log = daemon.log_text();
                    eprintln!("{name} exited ({status}) on {addr}:\n{last_log}");
                    break;
                }
                if daemon.get("/-/ready").is_some_and(|(code, _)| code == 200) {
                    return daemon;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} not ready within {START_TIMEOUT:?}:\n{}",
                    daemon.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{name} did not start:\n{last_log}")
    }

    /// Prometheus (Debian's `prometheus`) with `config`, its storage and
    /// log in `dir`.
    pub fn prometheus(dir: &Path, config: &Path) -> Daemon {
        Daemon::start("prometheus", "prometheus", dir, |port, attempt| {
            vec![
                format!("--config.file={}", config.display()),
                format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{attempt}")).display()
                ),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        })
    }

    /// Alertmanager (Debian's `prometheus-alertmanager`) with `config`, its
    /// storage and log in `dir`, without clustering.
    pub fn alertmanager(dir: &Path, config: &Path) -> Daemon {
        Daemon::start(
            "alertmanager",
            "prometheus-alertmanager",
            dir,
            |port, attempt| {
                vec![
                    format!("--config.file={}", config.display()),
                    format!(
                        "--storage.path={}",
                        dir.join(format!("am-{attempt}")).display()
                    ),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    // Empty: no clustering (and no gossip port to collide on).
                    "--cluster.listen-address=".to_owned(),
                ]
            },
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut resp = self.agent.get(format!("{}{path}", self.url)).call().ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.body_mut().read_to_string().ok()?))
    }

    /// `GET /api/v1/<path>` with query parameters; the JSON answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut req = self.agent.get(format!("{}/api/v1/{path}", self.url));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let mut resp = req
            .call()
            .unwrap_or_else(|e| panic!("GET /api/v1/{path} {params:?}: {e}"));
        let body = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: {e}"));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: not JSON ({e}): {body}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, false, self.name);
        if std::thread::panicking() {
            eprintln!("{} log:\n{}", self.name, self.log_text());
        }
    }
}
