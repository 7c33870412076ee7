//! The built binary: starts on ephemeral ports, writes them to its ready
//! file and logs them, serves what it receives, exits 0 on SIGTERM once the
//! requests in flight are answered (removing its ready file; SIGKILL leaves
//! it, stale); a bad flag, an address it cannot bind or a ready file it
//! cannot write exits non-zero with a one-line reason.

mod common;

use common::TempDir;
use common::binary::{Binary, Ready};
use common::load;
use nix::sys::signal::Signal;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use sqlalchemy_collectd_exporter::server::SHUTDOWN_GRACE;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Generic series for the scrape held open at shutdown: an OpenMetrics
/// body of about 10 MB, more than twice what the socket buffers between the
/// exporter and the client hold (the client's receive buffer is pinned at
/// [`CLIENT_BUFFER`], the exporter's send buffer grows to
/// `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default), so the exporter is
/// still writing it when SIGTERM arrives.
const SERIES: usize = 150_000;
const CLIENT_BUFFER: usize = 64 << 10;
/// Less than this and the exporter may have written the whole body into
/// the socket buffers before SIGTERM: the test would prove nothing.
const BODY_AT_LEAST: usize = 8 << 20;
/// How long the slow client takes for the rest of the body after SIGTERM:
/// ten times what the exporter needs to stop everything else (its receive
/// threads see the stop within 100 ms), well within [`SHUTDOWN_GRACE`].
const SLOW_READ: Duration = Duration::from_secs(1);

/// A `GET /metrics` (OpenMetrics, so that a complete body ends in `# EOF`)
/// on a connection whose receive buffer is [`CLIENT_BUFFER`].
fn open_scrape(http: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(http), Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(CLIENT_BUFFER)
        .expect("SO_RCVBUF");
    socket.connect(&http.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\
              Accept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n",
        )
        .expect("send the request");
    stream
}

/// Reads until the response head and some of the body have arrived: the
/// exporter is answering. Returns (head, the body so far).
fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = stream.read(&mut buf).expect("the response starts");
        assert!(n > 0, "the connection closed before the response");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() > end + 4
        {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            return (head, got[end + 4..].to_vec());
        }
    }
}

/// Reads the rest of a body of `length` bytes as a slow client does, spread
/// over [`SLOW_READ`]; stops at the end of the stream.
fn read_slowly(stream: &mut TcpStream, body: &mut Vec<u8>, length: usize) {
    let (start, from) = (Instant::now(), body.len());
    let mut buf = [0u8; 64 << 10];
    loop {
        let n = stream.read(&mut buf).expect("the rest of the response");
        if n == 0 {
            return;
        }
        body.extend_from_slice(&buf[..n]);
        let share = (body.len() - from) as f64 / length.saturating_sub(from).max(1) as f64;
        let due = SLOW_READ.mul_f64(share.min(1.0));
        std::thread::sleep(due.saturating_sub(start.elapsed()));
    }
}

#[test]
fn sigterm_lets_a_scrape_in_flight_finish_then_exits_0_without_its_ready_file() {
    let mut r = Binary::start(BIN, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    // Interval 1 h: the series stay live for the whole test. In batches the
    // exporter has read, so that a slow (debug) build drops none.
    let datagrams = load::collectd_datagrams(SERIES, now, 3600);
    load::send_drained(r.udp, &datagrams, 256, Duration::from_secs(60));

    let mut stream = open_scrape(r.http);
    let (head, mut body) = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    assert!(
        length >= BODY_AT_LEAST,
        "a scrape of {length} bytes is too small"
    );
    // The answer is being written and this client holds it: SIGTERM now,
    // then the rest, slowly.
    let term = Instant::now();
    r.signal(Signal::SIGTERM);
    r.log.wait_for("shutting down", TIMEOUT);
    read_slowly(&mut stream, &mut body, length);
    let read = term.elapsed();
    let status = r.wait_exit(SHUTDOWN_GRACE.saturating_sub(term.elapsed()));

    // Checked to fail without graceful shutdown: with `server::run`
    // aborting the HTTP servers (`servers.abort_all()`) instead of awaiting
    // them, as it did before, the connection goes with the runtime once the
    // receive threads have stopped, and the body ends at what the socket
    // buffers held then, a few MB of the 10.
    assert_eq!(
        body.len(),
        length,
        "the answer was cut off at shutdown (read until {read:?} after SIGTERM)"
    );
    let text = String::from_utf8(body).expect("UTF-8 exposition");
    assert!(text.ends_with("\n# EOF\n"), "not a complete exposition");
    let series = common::samples(&text)
        .keys()
        .filter(|k| k.starts_with("collectd_"))
        .count();
    // Every series but, at most, those of the receive thread's last batch
    // (64 datagrams), which it may still have been storing at the scrape.
    let last_batch = 64 * (SERIES.div_ceil(datagrams.len()) + 1);
    assert!(
        series + last_batch >= SERIES,
        "{series} of {SERIES} generic series served"
    );
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !r.ready_file.exists(),
        "the ready file outlived a clean shutdown"
    );
}

#[test]
fn sigkill_leaves_the_ready_file_stale() {
    let mut r = Binary::start(BIN, &[]);
    r.signal(Signal::SIGKILL);
    r.wait_exit(TIMEOUT);
    // Nobody removed it: it names a process that is gone.
    assert_eq!(Ready::read(&r.ready_file).as_ref(), Some(&r.ready));
}
