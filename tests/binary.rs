//! The built binary: starts on ephemeral ports, writes them to its ready
//! file and logs them, serves what it receives, exits 0 on SIGTERM (removing
//! its ready file); a bad flag, an address it cannot bind or a ready file it
//! cannot write exits non-zero with a one-line reason.

mod common;

use common::TempDir;
use common::binary::Binary;
use nix::sys::signal::Signal;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const TIMEOUT: Duration = Duration::from_secs(20);

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
    let mut r = Binary::start(BIN, &[]);
    // The log names the addresses the ready file does.
    let udp: SocketAddr = field(
        &r.log.wait_for("listening for collectd datagrams", TIMEOUT),
        "listener",
    )
    .parse()
    .expect("udp address");
    let http: SocketAddr = field(
        &r.log.wait_for("serving metrics over HTTP", TIMEOUT),
        "address",
    )
    .parse()
    .expect("http address");
    assert_eq!((udp, http), (r.udp, r.http));

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

    r.signal(Signal::SIGTERM);
    r.log.wait_for("shutting down", TIMEOUT);
    let status = r.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !r.ready_file.exists(),
        "the ready file outlived the exporter"
    );
}

#[test]
fn ready_file_names_every_listener() {
    let r = Binary::start(
        BIN,
        &[
            "--collectd.listen-address",
            "[::1]:0",
            "--web.listen-address",
            "localhost:0",
        ],
    );
    assert_eq!(r.ready.pid, r.pid());
    assert_eq!(r.ready.collectd.len(), 2, "{:?}", r.ready);
    assert_eq!(r.ready.web.len(), 2, "{:?}", r.ready);
    assert!(r.ready.collectd[1].is_ipv6(), "{:?}", r.ready);
    for http in &r.ready.web {
        assert_eq!(common::get(*http, "/-/ready", &[]).status, 200, "{http}");
    }
}

#[test]
fn json_logs_when_asked() {
    let r = Binary::start(BIN, &["--log.format", "json"]);
    let line = r.log.wait_for("listening for collectd datagrams", TIMEOUT);
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
fn unwritable_ready_file_exits_1_naming_it() {
    let dir = TempDir::new("binary", "unwritable-ready");
    let ready = dir.path().join("no-such-directory/ready.json");
    let (code, stderr) = fails(&[
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.ready-file",
        ready.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.lines().last().expect("an error line"),
        format!(
            "error: ready file {}: No such file or directory (os error 2)",
            ready.display()
        )
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read dir").count(),
        0,
        "nothing written"
    );
}

#[test]
fn auth_file_is_reread_on_sighup_and_a_bad_one_keeps_the_old_users() {
    let dir = TempDir::new("binary", "hup");
    let auth = dir.path().join("authfile");
    std::fs::write(&auth, "alice: not-the-password\n").expect("write");
    let r = Binary::start(
        BIN,
        &[
            "--collectd.security-level",
            "encrypt",
            "--collectd.auth-file",
            auth.to_str().expect("path"),
        ],
    );
    let (udp, http) = (r.udp, r.http);
    let encrypted = common::datagrams("09_collectd_encrypt");
    let rejected =
        "sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"decrypt_failed\"}";
    common::send_all(udp, &encrypted[..1]);
    common::scrape_until(http, "a decrypt failure", Duration::from_secs(10), |s| {
        s.get(rejected) == Some(&1.0)
    });

    std::fs::write(&auth, "alice: wonderland\n").expect("write");
    r.signal(Signal::SIGHUP);
    // Regression: the reload was logged before the new users were in use,
    // so a datagram sent on seeing the line could still meet the old ones.
    r.log.wait_for("auth file reloaded", TIMEOUT);
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
    r.signal(Signal::SIGHUP);
    let line = r.log.wait_for("auth file reload failed", TIMEOUT);
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
    let dir = TempDir::new("binary", "badauth");
    let auth = dir.path().join("authfile");
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
    let mut r = Binary::start(BIN, &[]);
    let garbage: Vec<Vec<u8>> = (0..50u8).map(|i| vec![0xff, i, 0, 1]).collect();
    common::send_all(r.udp, &garbage);
    common::scrape_until(
        r.http,
        "50 malformed datagrams",
        Duration::from_secs(10),
        |s| {
            s.get("sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"malformed\"}")
                == Some(&50.0)
        },
    );
    r.signal(Signal::SIGTERM);
    let mut lines = Vec::new();
    loop {
        let line = r.log.next_line(TIMEOUT).expect("log until shutdown");
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
    r.wait_exit(Duration::from_secs(10));
}
