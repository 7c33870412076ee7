//! `--web.config.file`: the exporter over TLS with basic auth and response
//! headers, as the real `curl` and a real Prometheus see it. Certificates (a
//! CA, a server certificate for 127.0.0.1/localhost, client certificates)
//! are made at test time with rcgen; rotating the server certificate needs no
//! restart; reloads keep the last good file; `check-web-config` validates.

mod common;

use common::TempDir;
use common::daemon::Daemon;
use common::pki::Pki;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret:with-colon";
const TIMEOUT: Duration = Duration::from_secs(20);

/// What `curl -v -i` said.
#[derive(Debug)]
struct Curl {
    /// `None` when no HTTP response came (TLS failure, refused connection).
    status: Option<u16>,
    headers: BTreeMap<String, String>,
    body: String,
    /// curl's `-v` log (TLS handshake, certificate subject).
    log: String,
}

fn curl(url: &str, args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "-v", "-i", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}; scripts/test.sh installs it"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map_or((text.as_str(), ""), |(h, b)| (h, b));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .filter(|_| out.status.success());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Curl {
        status,
        headers,
        body: body.to_owned(),
        log,
    }
}

fn url(http: SocketAddr, path: &str) -> String {
    format!("https://{http}{path}")
}

fn user() -> String {
    format!("{USER}:{PASSWORD}")
}

/// A web config file in `pki`'s dir: TLS with its server certificate and
/// `extra` lines (indented under tls_server_config), the test user, headers.
fn write_web_config(pki: &Pki, extra: &str, password: &str) -> PathBuf {
    let hash = bcrypt::hash(password, 4).expect("bcrypt");
    let path = pki.path("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n    \
             Strict-Transport-Security: max-age=31536000\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .expect("write web config");
    path
}

/// Sends a real client's capture and waits (over TLS, with the user) until
/// its checkouts counter is exported; returns that series and value.
fn feed(e: &common::Exporter, auth: &[&str]) -> (String, f64) {
    common::send_all(e.udp, &common::datagrams("01_sqla_idle"));
    common::poll(TIMEOUT, "the capture's checkouts counter", || {
        let r = curl(&url(e.http, "/metrics"), auth);
        common::samples(&r.body)
            .into_iter()
            .find(|(k, _)| k.starts_with("sqlalchemy_checkouts_total{"))
    })
}

#[test]
fn curl_over_tls_needs_the_password_and_gets_the_headers() {
    let pki = Pki::new("webcfg-curl");
    pki.write("server", "exporter-1");
    let config = write_web_config(&pki, "", PASSWORD);
    let e = common::start(&["--web.config.file", config.to_str().expect("UTF-8 path")]);
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().expect("UTF-8 path");
    let user = user();
    let good = ["--cacert", ca, "-u", user.as_str()];

    let (series, value) = feed(&e, &good);
    let r = curl(&url(e.http, "/metrics"), &good);
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(common::samples(&r.body).get(&series), Some(&value));
    assert_eq!(
        r.headers.get("x-content-type-options").map(String::as_str),
        Some("nosniff")
    );
    assert_eq!(
        r.headers
            .get("strict-transport-security")
            .map(String::as_str),
        Some("max-age=31536000")
    );
    assert!(r.log.contains("subject: CN=exporter-1"), "{}", r.log);

    for args in [
        &["--cacert", ca, "-u", "prometheus:wrong"][..],
        &["--cacert", ca, "-u", "nobody:s3cret:with-colon"],
        &["--cacert", ca],
    ] {
        let r = curl(&url(e.http, "/metrics"), args);
        assert_eq!(r.status, Some(401), "{args:?}: {r:?}");
        assert_eq!(
            r.headers.get("www-authenticate").map(String::as_str),
            Some("Basic"),
            "{args:?}"
        );
        assert_eq!(
            r.headers.get("x-content-type-options").map(String::as_str),
            Some("nosniff")
        );
        assert_eq!(r.body, "Unauthorized\n");
    }

    // Without the CA, curl refuses the certificate; the server carries on.
    let r = curl(&url(e.http, "/metrics"), &["-u", user.as_str()]);
    assert_eq!(r.status, None, "{r:?}");
    // Plain HTTP and garbage on the TLS port fail that connection only, and
    // a client that connects and never speaks holds up nobody.
    let idle = TcpStream::connect(e.http).expect("connect");
    let mut garbage = TcpStream::connect(e.http).expect("connect");
    garbage
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let r = curl(&format!("http://{}/metrics", e.http), &[]);
    assert_eq!(r.status, None, "{r:?}");
    let r = curl(&url(e.http, "/-/healthy"), &good);
    assert_eq!((r.status, r.body.as_str()), (Some(200), "OK\n"));
    drop((idle, garbage));
}

#[test]
fn client_certificates_are_required_and_verified() {
    let pki = Pki::new("webcfg-mtls");
    pki.write("server", "exporter-1");
    pki.write("client", "prometheus-client");
    // A client certificate from a CA the exporter does not trust.
    let (other_ca, _) = Pki::make_ca("another CA");
    let (cert, key) = Pki::issue(&other_ca, "stranger");
    std::fs::write(pki.path("stranger.crt"), cert).expect("write");
    std::fs::write(pki.path("stranger.key"), key).expect("write");
    let config = write_web_config(
        &pki,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        PASSWORD,
    );
    let e = common::start(&["--web.config.file", config.to_str().expect("UTF-8 path")]);
    let s = |p: PathBuf| p.to_str().expect("UTF-8 path").to_owned();
    let (ca, user) = (s(pki.path("ca.crt")), user());

    let without = curl(&url(e.http, "/metrics"), &["--cacert", &ca, "-u", &user]);
    assert_eq!(without.status, None, "{without:?}");
    let stranger = curl(
        &url(e.http, "/metrics"),
        &[
            "--cacert",
            &ca,
            "-u",
            &user,
            "--cert",
            &s(pki.path("stranger.crt")),
            "--key",
            &s(pki.path("stranger.key")),
        ],
    );
    assert_eq!(stranger.status, None, "{stranger:?}");
    let with = [
        "--cacert",
        &ca,
        "-u",
        &user,
        "--cert",
        &s(pki.path("client.crt")),
        "--key",
        &s(pki.path("client.key")),
    ];
    let r = curl(&url(e.http, "/metrics"), &with);
    assert_eq!(r.status, Some(200), "{r:?}");
    assert!(
        r.body
            .contains("# TYPE sqlalchemy_collectd_exporter_build_info gauge\n")
    );
    // The certificate does not replace the password.
    let r = curl(&url(e.http, "/metrics"), &with[..4]);
    assert_eq!(r.status, None, "{r:?}");
    let mut no_password = with.to_vec();
    no_password.drain(2..4);
    let r = curl(&url(e.http, "/metrics"), &no_password);
    assert_eq!(r.status, Some(401), "{r:?}");
}

#[test]
fn rotated_certificate_is_served_without_restart() {
    let pki = Pki::new("webcfg-rotate");
    pki.write("server", "exporter-1");
    let config = write_web_config(&pki, "", PASSWORD);
    let e = common::start(&["--web.config.file", config.to_str().expect("UTF-8 path")]);
    let ca = pki.path("ca.crt");
    let user = user();
    let args = [
        "--cacert",
        ca.to_str().expect("UTF-8 path"),
        "-u",
        user.as_str(),
    ];
    let subject = || {
        let r = curl(&url(e.http, "/-/healthy"), &args);
        assert_eq!(r.status, Some(200), "{r:?}");
        r.log
            .lines()
            .find_map(|l| l.trim_start_matches(['*', ' ']).strip_prefix("subject: "))
            .map(str::to_owned)
    };
    assert_eq!(subject().as_deref(), Some("CN=exporter-1"));

    pki.write("server", "exporter-2");
    common::poll(TIMEOUT, "the rotated certificate", || {
        subject().filter(|s| s == "CN=exporter-2")
    });

    // A broken certificate file keeps the one in use (checked exactly by the
    // unit test broken_certificate_keeps_the_previous_one); the next good
    // one is taken.
    std::fs::write(pki.path("server.crt"), "not a certificate\n").expect("write");
    assert_eq!(subject().as_deref(), Some("CN=exporter-2"));
    pki.write("server", "exporter-3");
    common::poll(TIMEOUT, "the next certificate", || {
        subject().filter(|s| s == "CN=exporter-3")
    });
}

#[test]
fn reload_applies_users_and_keeps_the_last_good_file() {
    let pki = Pki::new("webcfg-reload");
    pki.write("server", "exporter-1");
    let config = write_web_config(&pki, "", PASSWORD);
    let e = common::start(&["--web.config.file", config.to_str().expect("UTF-8 path")]);
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().expect("UTF-8 path");
    let (old, new) = (user(), format!("{USER}:changed"));
    let status = |u: &str| curl(&url(e.http, "/-/healthy"), &["--cacert", ca, "-u", u]).status;
    let reload = |u: &str| {
        let r = curl(
            &url(e.http, "/-/reload"),
            &["--cacert", ca, "-u", u, "-X", "POST"],
        );
        (r.status, r.body)
    };
    assert_eq!(status(&old), Some(200));

    write_web_config(&pki, "", "changed");
    assert_eq!(
        reload(&old),
        (
            Some(200),
            format!(
                "web config file {}: reloaded (TLS, client certificates: NoClientCert, 1 basic-auth users, 2 headers)\n",
                config.display()
            )
        )
    );
    assert_eq!(status(&old), Some(401));
    assert_eq!(status(&new), Some(200));

    std::fs::write(
        &config,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: plaintext\n",
    )
    .expect("write");
    let (code, text) = reload(&new);
    assert_eq!(code, Some(500));
    assert!(
        text.starts_with(&format!(
            "web config file: not reloaded, the last good one stays: {}:5:3: basic_auth_users.prometheus: not a bcrypt hash",
            config.display()
        )),
        "{text}"
    );
    assert_eq!(status(&new), Some(200));

    // TLS cannot be turned off by a reload: the listener's scheme is fixed.
    std::fs::write(&config, "basic_auth_users: {}\n").expect("write");
    let (code, text) = reload(&new);
    assert_eq!(code, Some(500));
    assert_eq!(
        text,
        format!(
            "web config file: not reloaded, the last good one stays: {}: tls_server_config: turning TLS off needs a restart\n",
            config.display()
        )
    );
    assert_eq!(status(&new), Some(200));
}

#[test]
fn check_web_config_validates_the_file_and_its_certificates() {
    let pki = Pki::new("webcfg-check");
    pki.write("server", "exporter-1");
    let config = write_web_config(&pki, "", PASSWORD);
    let run = |file: &Path| {
        let out = Command::new(BIN)
            .arg("check-web-config")
            .arg(file)
            .output()
            .expect("run the binary");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run(&config),
        (
            Some(0),
            format!(
                "{}: valid (TLS, client certificates: NoClientCert, 1 basic-auth users, 2 headers)\n",
                config.display()
            ),
            String::new()
        )
    );
    std::fs::remove_file(pki.path("server.key")).expect("remove");
    let (code, out, err) = run(&config);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.starts_with(&format!(
            "error: {}:3:3: tls_server_config.key_file: {}: ",
            config.display(),
            pki.path("server.key").display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::write(&config, "tls_server_config:\n  cert_fille: a\n").expect("write");
    let (code, _, err) = run(&config);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(&format!(
            "error: {}:2:3: tls_server_config: unknown field `cert_fille`",
            config.display()
        )),
        "{err}"
    );
}

/// A real Prometheus scrapes over TLS with a client certificate and basic
/// auth, and stores what the exporter serves.
#[test]
fn prometheus_scrapes_over_tls_with_client_certificate_and_basic_auth() {
    const JOB: &str = "sqlalchemy-tls";
    let pki = Pki::new("webcfg-prometheus");
    pki.write("server", "exporter-1");
    pki.write("client", "prometheus-client");
    let config = write_web_config(
        &pki,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        PASSWORD,
    );
    let e = common::start(&["--web.config.file", config.to_str().expect("UTF-8 path")]);
    let s = |p: PathBuf| p.to_str().expect("UTF-8 path").to_owned();
    let (ca, user) = (s(pki.path("ca.crt")), user());
    let (cert, key) = (s(pki.path("client.crt")), s(pki.path("client.key")));
    let (series, value) = feed(
        &e,
        &["--cacert", &ca, "-u", &user, "--cert", &cert, "--key", &key],
    );

    let tmp = TempDir::new("webcfg-prometheus", "prometheus");
    let prom_config = tmp.0.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: {JOB}\n    scheme: https\n    \
             tls_config:\n      ca_file: {ca}\n      cert_file: {cert}\n      key_file: {key}\n    \
             basic_auth:\n      username: {USER}\n      password: '{PASSWORD}'\n    \
             static_configs:\n      - targets: [\"{target}\"]\n",
            target = e.http,
        ),
    )
    .expect("write the Prometheus config");
    let prom = Daemon::prometheus(&tmp.0, &prom_config);
    let instant = |expr: &str| -> Option<f64> {
        let answer = prom.api("query", &[("query", expr)]);
        answer["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    common::poll(TIMEOUT, "up == 1 for the TLS job", || {
        instant(&format!("up{{job=\"{JOB}\"}}")).filter(|&v| v == 1.0)
    });
    // `series` is `name{host="…",program="…"}`: add the job.
    let selector = series.replacen('{', &format!("{{job=\"{JOB}\","), 1);
    let stored = common::poll(TIMEOUT, "the scraped checkouts counter", || {
        instant(&selector)
    });
    assert_eq!(stored, value, "{selector}");
}
