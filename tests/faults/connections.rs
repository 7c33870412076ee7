//! What one HTTP client can do to the listeners, against the built binary
//! started as systemd starts a service (a soft open-file limit of 1,024, a
//! higher hard one): thousands of connections that send half a request head
//! (or half a TLS ClientHello) and wait; idle connections past the
//! connection cap; a head that never ends; a keep-alive connection left
//! silent; more scrapes at once than `--web.max-requests`; a head larger
//! than the cap. Each case asserts what a scraper sees (the status, how
//! soon) and what the exporter counts.

use crate::common;
use crate::common::binary::Binary;
use crate::common::load;
use crate::common::pki::Pki;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const TIMEOUT: Duration = Duration::from_secs(20);
const P: &str = "sqlalchemy_collectd_exporter_";
/// The soft open-file limit systemd gives a service.
const SOFT: u64 = 1024;
/// `--web.max-connections`' default.
const MAX_CONNECTIONS: usize = 1024;
/// The operator's report: about 1,100 were enough to stop every scrape.
const FLOOD: usize = 5000;
/// A scrape of an empty exporter takes milliseconds; under the flood it
/// must still answer well within a scrape timeout.
const SCRAPE_WITHIN: Duration = Duration::from_secs(1);
/// The first line and one header of a scrape: half a head.
const HALF_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";

/// The tests that open thousands of connections or build a 10 MB scrape run
/// one at a time: on two cores, two of them at once would measure each
/// other.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Raises this process's soft open-file limit to its hard one (the flood
/// needs thousands of sockets); returns the hard limit.
fn raise_own_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the test's soft limit");
    assert!(
        hard >= FLOOD as u64 + 512,
        "the hard open-file limit ({hard}) is too low for {FLOOD} connections"
    );
    hard
}

/// The binary with a soft open-file limit of [`SOFT`] and this process's
/// hard limit, as systemd starts a service.
fn start(args: &[&str]) -> (Binary, u64) {
    let hard = raise_own_limit();
    let mut command = Command::new(BIN);
    // SAFETY: runs in the child between fork and exec; setrlimit is a
    // system call that allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: SOFT,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (Binary::launch(command, args), hard)
}

/// `n` connections, each having sent `send`, held open. A connection the
/// exporter has closed already may refuse the write: that is what it is
/// for.
fn flood(http: SocketAddr, n: usize, send: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(http)
                .unwrap_or_else(|e| panic!("connection {i} of the flood: {e}"));
            if !send.is_empty() {
                let _ = s.write_all(send);
            }
            s
        })
        .collect()
}

/// A response read off a stream: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Reads one response with a Content-Length body from `r`.
fn read_answer(r: &mut impl Read) -> Answer {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = r.read(&mut buf).expect("the response head");
        assert!(n > 0, "closed before the response head: {got:?}");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = got[end + 4..].to_vec();
    while body.len() < length {
        let n = r.read(&mut buf).expect("the response body");
        assert!(n > 0, "closed after {} of {length} bytes", body.len());
        body.extend_from_slice(&buf[..n]);
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET path` over plain HTTP on a new connection, timed from connect to
/// the last byte of the body.
fn timed_get(http: SocketAddr, path: &str) -> (Duration, Answer) {
    let start = Instant::now();
    let mut s = TcpStream::connect(http).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: exporter\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let answer = read_answer(&mut s);
    (start.elapsed(), answer)
}

/// A rustls client that trusts only `ca`.
fn tls_client(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("trust the CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// `GET path` over TLS on a new connection, timed from connect (handshake
/// included) to the last byte of the body.
fn timed_get_tls(
    http: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    path: &str,
) -> (Duration, Answer) {
    let start = Instant::now();
    let tcp = TcpStream::connect(http).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(client.clone(), name).expect("TLS client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let answer = read_answer(&mut tls);
    (start.elapsed(), answer)
}

fn samples(answer: &Answer) -> BTreeMap<String, f64> {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    common::samples(std::str::from_utf8(&answer.body).expect("UTF-8 exposition"))
}

/// `http_connections_closed_total{reason}`.
fn closed(s: &BTreeMap<String, f64>, reason: &str) -> f64 {
    let series = format!("{P}http_connections_closed_total{{reason=\"{reason}\"}}");
    *s.get(&series)
        .unwrap_or_else(|| panic!("no {series} in the scrape"))
}

/// Every closure reason's count, in the order of the family.
fn closures(s: &BTreeMap<String, f64>) -> [f64; 4] {
    ["idle_timeout", "header_timeout", "evicted", "over_limit"].map(|r| closed(s, r))
}

/// Waits, until `within` after `since`, for the exporter to close `stream`
/// (a read returns end of file); returns how long after `since` that was.
fn closed_by_server(stream: &mut TcpStream, since: Instant, within: Duration) -> Duration {
    let left = within.saturating_sub(since.elapsed());
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("read timeout");
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(0) => since.elapsed(),
        Ok(n) => panic!("{n} bytes where the end of the stream was expected"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => since.elapsed(),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
            "still open {:?} after (expected closed within {within:?})",
            since.elapsed()
        ),
        Err(e) => panic!("reading: {e}"),
    }
}

/// The value of `key=` in a logfmt line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    line[at + key.len() + 2..].split(' ').next().expect("value")
}

/// Issue 11: with the soft limit of 1,024, about 1,100 connections that
/// sent half a request head made every scrape fail ("accept error: Too
/// many open files") for as long as they stayed open. Now the soft limit
/// is raised to the hard one, and at the connection cap each new
/// connection closes the longest idle one, so a scrape gets in.
#[test]
fn a_flood_of_half_sent_heads_does_not_keep_a_scrape_out() {
    let _heavy = heavy();
    let (r, hard) = start(&[]);
    let raised = r.log.wait_for("raised the open file limit", TIMEOUT);
    assert_eq!(field(&raised, "soft_before"), SOFT.to_string(), "{raised}");
    assert_eq!(field(&raised, "soft"), hard.to_string(), "{raised}");

    let started = Instant::now();
    let held = flood(r.http, FLOOD, HALF_HEAD);
    let opened = started.elapsed();
    let scrapes: Vec<(Duration, BTreeMap<String, f64>)> = (0..3)
        .map(|_| {
            let (took, answer) = timed_get(r.http, "/metrics");
            (took, samples(&answer))
        })
        .collect();
    let took: Vec<Duration> = scrapes.iter().map(|(t, _)| *t).collect();
    println!(
        "plain HTTP: {FLOOD} half-sent heads opened in {opened:?}; scrapes then took {took:?}; \
         closed (idle, header, evicted, over limit): {:?}",
        closures(&scrapes[2].1)
    );
    cap_held(&scrapes);
    drop(held);
}

/// Every scrape under a flood answered within [`SCRAPE_WITHIN`], with the
/// cap full and holding: the first scrape found [`MAX_CONNECTIONS`] open
/// (its own included), none found more, and every new connection found an
/// idle one to replace. (Later scrapes may find one fewer: the previous
/// scrape's connection may still be closing when the next arrives, and
/// takes its place.)
fn cap_held(scrapes: &[(Duration, BTreeMap<String, f64>)]) {
    let open = |s: &BTreeMap<String, f64>| s[&format!("{P}http_connections")];
    assert_eq!(open(&scrapes[0].1), MAX_CONNECTIONS as f64);
    for (took, s) in scrapes {
        assert!(
            *took < SCRAPE_WITHIN,
            "a scrape took {took:?} under the flood"
        );
        assert!(open(s) <= MAX_CONNECTIONS as f64, "{}", open(s));
        assert_eq!(closed(s, "over_limit"), 0.0);
        assert!(closed(s, "evicted") > 0.0);
    }
}

/// With `--web.max-connections 100`, 500 idle connections and one scrape:
/// once the 100th is open, every new connection closes the one idle the
/// longest (the oldest, as none has sent anything), so the scrape is
/// answered, the first 401 connections are closed and the last 99 are not.
#[test]
fn at_the_connection_cap_the_longest_idle_connection_is_closed() {
    const CAP: usize = 100;
    const IDLE: usize = 500;
    let (r, _) = start(&["--web.max-connections", "100"]);
    let mut held = flood(r.http, IDLE, b"");
    let (_, answer) = timed_get(r.http, "/metrics");
    let s = samples(&answer);
    // IDLE + 1 connections accepted (the scrape's last: the kernel hands
    // them over in order), CAP of them open when the scrape is served, and
    // each closure beyond the cap an eviction done before the next
    // connection is served.
    let evicted = IDLE + 1 - CAP;
    assert_eq!(closures(&s), [0.0, 0.0, evicted as f64, 0.0]);
    assert_eq!(s[&format!("{P}http_connections")], CAP as f64);
    let since = Instant::now();
    for (i, stream) in held.iter_mut().enumerate() {
        if i < evicted {
            closed_by_server(stream, since, TIMEOUT);
        } else {
            stream.set_nonblocking(true).expect("non-blocking");
            let mut buf = [0u8; 1];
            let e = stream.read(&mut buf).map(|n| n.to_string());
            assert_eq!(
                e.map_err(|e| e.kind()),
                Err(ErrorKind::WouldBlock),
                "connection {i} should still be open"
            );
        }
    }
}

/// A head that never ends is closed `--web.read-header-timeout` after its
/// first byte; a keep-alive connection silent after its response is closed
/// `--web.idle-timeout` after it. Each is counted under its reason.
#[test]
fn slow_heads_and_silent_keep_alive_connections_are_closed() {
    const LIMIT: Duration = Duration::from_secs(1);
    // The reaper looks every 250 ms; a loaded machine gets a second more.
    const WITHIN: Duration = Duration::from_millis(2250);
    let (r, _) = start(&[
        "--web.read-header-timeout",
        "1s",
        "--web.idle-timeout",
        "1s",
    ]);

    let mut slow = TcpStream::connect(r.http).expect("connect");
    slow.write_all(HALF_HEAD).expect("half a head");
    let sent = Instant::now();

    let mut kept = TcpStream::connect(r.http).expect("connect");
    kept.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    kept.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("a whole request");
    let answer = read_answer(&mut kept);
    let answered = Instant::now();
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"OK\n"[..]));
    assert_eq!(answer.headers.get("connection"), None, "kept alive");

    let head = closed_by_server(&mut slow, sent, WITHIN);
    let idle = closed_by_server(&mut kept, answered, WITHIN);
    println!("half-sent head closed after {head:?}, silent keep-alive after {idle:?}");
    for t in [head, idle] {
        assert!(t >= LIMIT && t < WITHIN, "closed after {t:?}");
    }
    let (_, answer) = timed_get(r.http, "/metrics");
    assert_eq!(closures(&samples(&answer)), [1.0, 1.0, 0.0, 0.0]);
}

/// Generic series for a scrape of about 10 MB: more than twice what the
/// socket buffers between the exporter and a client hold (see
/// tests/binary.rs), so a client that stops reading keeps it in flight.
const SERIES: usize = 150_000;
const CLIENT_BUFFER: usize = 64 << 10;
const BODY_AT_LEAST: usize = 8 << 20;

/// With `--web.max-requests 1`, a scrape holds its slot until its body is
/// sent whole: while a client reads a 10 MB scrape no faster than it does
/// now (not at all), a second scrape and the pools and processes documents
/// get 503 at once, a health check does not; once the body is read, scrapes
/// are answered again and the refusals are counted.
#[test]
fn scrapes_beyond_max_requests_get_503_while_one_is_being_sent() {
    let _heavy = heavy();
    let (r, _) = start(&["--web.max-requests", "1"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let datagrams = load::collectd_datagrams(SERIES, now, 3600);
    load::send_drained(r.udp, &datagrams, 256, Duration::from_secs(60));

    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(r.http), Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(CLIENT_BUFFER)
        .expect("SO_RCVBUF");
    socket.connect(&r.http.into()).expect("connect");
    let mut slow: TcpStream = socket.into();
    slow.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    slow.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\
          Accept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n",
    )
    .expect("send the scrape");
    // Its head and the first bytes: it is being sent, and this client now
    // reads nothing more until the refusals below.
    let mut first = [0u8; 4096];
    let n = slow.read(&mut first).expect("the scrape's answer starts");
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );

    for path in [
        "/metrics",
        "/api/v1/pools",
        "/api/v1/processes?host=h&program=p",
    ] {
        let (took, refused) = timed_get(r.http, path);
        assert_eq!(
            (
                refused.status,
                String::from_utf8_lossy(&refused.body).as_ref()
            ),
            (
                503,
                "too many scrapes at once (--web.max-requests 1); try again later\n"
            ),
            "{path}"
        );
        assert_eq!(
            refused.headers.get("retry-after").map(String::as_str),
            Some("1")
        );
        println!("{path} refused in {took:?}");
    }
    let (_, healthy) = timed_get(r.http, "/-/healthy");
    assert_eq!(healthy.status, 200, "health checks are not scrapes");

    let mut rest = first[..n].to_vec();
    slow.read_to_end(&mut rest).expect("the rest of the scrape");
    let whole = read_answer(&mut rest.as_slice());
    assert!(
        whole.body.len() >= BODY_AT_LEAST,
        "a scrape of {} bytes is too small to stay in flight",
        whole.body.len()
    );
    assert!(whole.body.ends_with(b"\n# EOF\n"), "not a whole exposition");
    // The body is read, so it was handed on whole: the slot is free.
    let (_, answer) = timed_get(r.http, "/metrics");
    let s = samples(&answer);
    assert_eq!(
        s[&format!("{P}http_requests_refused_total{{reason=\"max_requests\"}}")],
        3.0
    );
}

/// A request head larger than the 16 KiB cap is answered 431 by hyper; one
/// well inside it is served.
#[test]
fn an_oversized_head_gets_431() {
    let (r, _) = start(&[]);
    let ask = |filler: usize| {
        let mut s = TcpStream::connect(r.http).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        let head = format!(
            "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(filler)
        );
        s.write_all(head.as_bytes()).expect("send the head");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    let big = ask(20 << 10);
    assert!(
        big.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{big:?}"
    );
    let fine = ask(8 << 10);
    assert!(fine.starts_with("HTTP/1.1 200 OK\r\n"), "{fine:?}");
}

/// A web config serving TLS with the PKI's server certificate.
fn tls_config(pki: &Pki) -> String {
    pki.write("server", "exporter");
    let path = pki.path("web.yml");
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .expect("write the web config");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The start of a TLS ClientHello: a handshake record announcing 512
/// bytes, a ClientHello header announcing 508, and nothing more.
const HALF_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

/// Issue 11 over TLS: 5,000 connections that sent half a ClientHello do
/// not keep a scrape (handshake included) out.
#[test]
fn a_flood_of_half_sent_handshakes_does_not_keep_a_tls_scrape_out() {
    let _heavy = heavy();
    let pki = Pki::new("faults-tls-flood");
    let web = tls_config(&pki);
    let (r, _) = start(&["--web.config.file", &web]);
    let client = tls_client(&pki.path("ca.crt"));
    // Answers over TLS before the flood: the certificate is right.
    assert_eq!(timed_get_tls(r.http, &client, "/-/healthy").1.status, 200);

    let started = Instant::now();
    let held = flood(r.http, FLOOD, HALF_CLIENT_HELLO);
    let opened = started.elapsed();
    let scrapes: Vec<(Duration, BTreeMap<String, f64>)> = (0..3)
        .map(|_| {
            let (took, answer) = timed_get_tls(r.http, &client, "/metrics");
            (took, samples(&answer))
        })
        .collect();
    let took: Vec<Duration> = scrapes.iter().map(|(t, _)| *t).collect();
    println!(
        "TLS: {FLOOD} half-sent ClientHellos opened in {opened:?}; scrapes (handshake included) \
         then took {took:?}; closed (idle, header, evicted, over limit): {:?}",
        closures(&scrapes[2].1)
    );
    cap_held(&scrapes);
    drop(held);
}

/// A TLS client that connects and sends nothing is closed
/// `--web.read-header-timeout` after connecting, counted as header_timeout
/// (over plain TCP such a connection is idle, and the idle timeout is 2m).
#[test]
fn a_tls_client_that_sends_nothing_is_closed_after_the_read_header_timeout() {
    let pki = Pki::new("faults-tls-silent");
    let web = tls_config(&pki);
    let (r, _) = start(&["--web.config.file", &web, "--web.read-header-timeout", "1s"]);
    let mut silent = TcpStream::connect(r.http).expect("connect");
    let connected = Instant::now();
    silent
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let took = closed_by_server(&mut silent, connected, Duration::from_millis(2250));
    println!("silent TLS connection closed after {took:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2250),
        "{took:?}"
    );
    let client = tls_client(&pki.path("ca.crt"));
    let (_, answer) = timed_get_tls(r.http, &client, "/metrics");
    assert_eq!(closures(&samples(&answer)), [0.0, 1.0, 0.0, 0.0]);
}
