//! The built binary: starts on ephemeral ports and logs every bound address,
//! serves what it receives, exits 0 on SIGTERM; a bad flag or an address it
//! cannot bind exits non-zero with a one-line reason.

mod common;

use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines }
}

impl Running {
    /// The next log line containing `needle`.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// The value of `key=` in a logfmt line.
fn field(line: &str, key: &str) -> String {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    line[at + key.len() + 2..]
        .split(' ')
        .next()
        .expect("value")
        .to_owned()
}

#[test]
fn binary_logs_its_addresses_serves_and_stops_on_sigterm() {
    let r = spawn(&[
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    let udp: SocketAddr = field(&r.wait_for("listening for collectd datagrams"), "listener")
        .parse()
        .expect("udp address");
    let http: SocketAddr = field(&r.wait_for("serving metrics over HTTP"), "address")
        .parse()
        .expect("http address");

    let id = Identity {
        host: "web1".into(),
        plugin: "sqlalchemy".into(),
        plugin_instance: "api".into(),
        type_: "sqlalchemy_pool".into(),
        type_instance: "42:abcdef".into(),
    };
    let values = [1.0, 4.0, 1.0, 0.0, 5.0].map(Value::Gauge);
    let datagram = Encoder::new()
        .client_value_list(&id, 1_000, 2, &values)
        .finish();
    common::send_all(udp, &[datagram.to_vec()]);
    let s = common::scrape_until(http, "the pool datagram", Duration::from_secs(10), |s| {
        common::sqla(s, "sqlalchemy_connections", "web1", "api").is_some()
    });
    assert_eq!(
        common::sqla(&s, "sqlalchemy_connections_checked_out", "web1", "api"),
        Some(4.0)
    );
    assert_eq!(
        common::sqla(&s, "sqlalchemy_connections", "web1", "api"),
        Some(5.0)
    );

    let pid = r.child.id().to_string();
    let mut r = r;
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    r.wait_for("shutting down");
    let status = common::poll(Duration::from_secs(10), "exit after SIGTERM", || {
        r.child.try_wait().expect("wait")
    });
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn json_logs_when_asked() {
    let r = spawn(&[
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
    ]);
    let line = r.wait_for("listening for collectd datagrams");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(v["level"], "INFO");
    assert!(
        v["listener"]
            .as_str()
            .expect("listener field")
            .starts_with("127.0.0.1:")
    );
}

fn fails(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().expect("exit code"), stderr)
}

#[test]
fn bad_flag_exits_2_with_one_line() {
    let (code, stderr) = fails(&["--stale-after", "soon"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--stale-after"), "{stderr}");
}

#[test]
fn unbindable_address_exits_1_naming_it() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = fails(&[
        "--collectd.listen-address",
        &addr,
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    let last = stderr.lines().last().expect("an error line");
    assert_eq!(
        last,
        format!("error: cannot listen on udp {addr}: Address already in use (os error 98)")
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn auth_file_is_reread_on_sighup_and_a_bad_one_keeps_the_old_users() {
    let dir = std::env::temp_dir().join(format!("sce-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let auth = dir.join("authfile");
    std::fs::write(&auth, "alice: not-the-password\n").expect("write");
    let r = spawn(&[
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
        "--collectd.security-level",
        "encrypt",
        "--collectd.auth-file",
        auth.to_str().expect("path"),
    ]);
    let udp: SocketAddr = field(&r.wait_for("listening for collectd datagrams"), "listener")
        .parse()
        .expect("udp");
    let http: SocketAddr = field(&r.wait_for("serving metrics over HTTP"), "address")
        .parse()
        .expect("http");
    let encrypted = common::datagrams("09_collectd_encrypt");
    let rejected =
        "sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"decrypt_failed\"}";
    common::send_all(udp, &encrypted[..1]);
    common::scrape_until(http, "a decrypt failure", Duration::from_secs(10), |s| {
        s.get(rejected) == Some(&1.0)
    });

    let hup = || {
        Command::new("kill")
            .args(["-HUP", &r.child.id().to_string()])
            .status()
            .expect("kill")
    };
    std::fs::write(&auth, "alice: wonderland\n").expect("write");
    hup();
    // Regression: the reload was logged before the new users were in use,
    // so a datagram sent on seeing the line could still meet the old ones.
    r.wait_for("auth file reloaded");
    common::send_all(udp, &encrypted[1..2]);
    let s = common::scrape_until(
        http,
        "decrypted value lists",
        Duration::from_secs(10),
        |s| {
            s.get("sqlalchemy_collectd_exporter_value_lists_received_total")
                .is_some_and(|v| *v > 0.0)
        },
    );
    assert_eq!(s[rejected], 1.0);
    let lists = "sqlalchemy_collectd_exporter_value_lists_received_total";
    let before = s[lists];

    std::fs::write(&auth, "alice\n").expect("write");
    hup();
    let line = r.wait_for("auth file reload failed");
    assert!(
        line.contains(&format!("{}:1: expected", auth.display())),
        "{line}"
    );
    common::send_all(udp, &encrypted[2..3]);
    // Wait for the third datagram's judgement: decrypted (more value lists) or not.
    let s = common::scrape_until(
        http,
        "the third datagram judged",
        Duration::from_secs(10),
        |s| s[lists] > before || s[rejected] > 1.0,
    );
    assert_eq!(s[rejected], 1.0, "the old users still decrypt");
}

#[test]
fn unreadable_auth_file_exits_1_naming_file_and_line() {
    let dir = std::env::temp_dir().join(format!("sce-badauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let auth = dir.join("authfile");
    std::fs::write(&auth, "# users\nalice wonderland\n").expect("write");
    let (code, stderr) = fails(&[
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
        "--collectd.auth-file",
        auth.to_str().expect("path"),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().last().expect("error line"),
        format!(
            "error: auth file: {}:2: expected \"user: password\"",
            auth.display()
        )
    );
}

#[test]
fn a_flood_of_bad_datagrams_logs_one_warning_per_reason() {
    let mut r = spawn(&[
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    let udp: SocketAddr = field(&r.wait_for("listening for collectd datagrams"), "listener")
        .parse()
        .expect("udp");
    let http: SocketAddr = field(&r.wait_for("serving metrics over HTTP"), "address")
        .parse()
        .expect("http");
    let garbage: Vec<Vec<u8>> = (0..50u8).map(|i| vec![0xff, i, 0, 1]).collect();
    common::send_all(udp, &garbage);
    common::scrape_until(
        http,
        "50 malformed datagrams",
        Duration::from_secs(10),
        |s| {
            s.get("sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"malformed\"}")
                == Some(&50.0)
        },
    );
    Command::new("kill")
        .args(["-TERM", &r.child.id().to_string()])
        .status()
        .expect("kill");
    let mut lines = Vec::new();
    loop {
        let line = r
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("log until shutdown");
        if line.contains("shutting down") {
            break;
        }
        lines.push(line);
    }
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("level=warn") && l.contains("datagram rejected"))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert!(
        warnings[0].contains("part 0xff00 at byte 0 has length 1, below the 4-byte header"),
        "{}",
        warnings[0]
    );
    common::poll(Duration::from_secs(10), "exit", || {
        r.child.try_wait().expect("wait")
    });
}
