//! The real collectd daemon against the exporter: collectd 5.12 (Debian
//! `collectd-core`) reads load, cpu, memory, interface (`lo`) and df (`/`)
//! every second, writes every value list with its csv plugin, and sends the
//! same value lists to an in-process exporter with its network plugin, in
//! plain text, signed or encrypted, or with its write_http plugin as JSON.
//! The last test runs the relay chain the exporter replaces: the real
//! Python client → sqlalchemy-collectd's server plugin inside collectd →
//! collectd's network plugin → the exporter.
//!
//! The expected series are derived from the csv files collectd wrote in the
//! same run (identity from the file path, data-source names from the header
//! line, DS types from types.db) by collectd_exporter's naming rules, and the
//! expected values are the last csv row of each file: the test waits until
//! the exporter shows every series, stops collectd with SIGTERM (collectd
//! flushes the network plugin's buffer on the way out), waits until the
//! exporter has received exactly as many value lists as the csv files hold
//! rows, and then compares. So each exported value must be the one collectd
//! read last for that identity: the row with the latest timestamp.
//!
//! The exporter runs with `--stale-after 120s`: with `Interval 1` its default
//! freshness (3 intervals) would drop the series 3 s after collectd stopped,
//! before the comparison.

mod collectd;
mod common;

use collectd::{Collectd, CsvSeries, READ_PLUGINS, Server, Setup, TYPES_DB};
use common::TempDir;
use common::client::{App, Programs, Report, Series, shows};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const P: &str = "sqlalchemy_collectd_exporter_";
/// Until every series collectd has written shows up in `/metrics`; cpu needs
/// two reads before its first value, the network plugin flushes every second.
const SHOW_TIMEOUT: Duration = Duration::from_secs(20);
/// Rows every csv identity must have before collectd is stopped.
const MIN_ROWS: usize = 3;
/// Until the datagrams sent at collectd's shutdown have been judged.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls `f` until it returns `Ok`, or panics after `timeout` with the last
/// `Err` (which describes the state).
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}:\n{state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A series as `name{label="value",...}`, labels sorted, empty ones left out
/// (an empty label is an absent label in Prometheus).
fn canonical(name: &str, labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Splits an exposition series key (`name{a="x",b="y"}`) into its name and
/// labels, undoing the text format's escapes.
fn parse_series(key: &str) -> (String, BTreeMap<String, String>) {
    let Some((name, rest)) = key.split_once('{') else {
        return (key.to_owned(), BTreeMap::new());
    };
    let rest = rest.strip_suffix('}').expect("series ends with }");
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if label.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label value of {label} in {key}");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next().expect("escape") {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(label, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    (name.to_owned(), labels)
}

/// The exported `collectd_*` samples, by canonical series.
fn exported(samples: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with("collectd_"))
        .map(|(k, v)| {
            let (name, labels) = parse_series(k);
            (canonical(&name, &labels), *v)
        })
        .collect()
}

/// collectd_exporter's characters: anything outside `[a-zA-Z0-9_:]` is `_`.
fn sanitize(s: &str, colon: bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One expected sample.
#[derive(Debug)]
struct Want {
    /// GAUGE, DERIVE, COUNTER or ABSOLUTE (from types.db).
    ds_type: String,
    /// The field of the csv file's last row, as written.
    csv_value: String,
    /// Where it came from, for messages.
    origin: String,
}

/// The series collectd_exporter would export for what collectd wrote, with
/// the last row of each csv file as the value.
fn expected(
    csv: &[CsvSeries],
    types: &BTreeMap<String, collectd::DataSources>,
    host: &str,
) -> BTreeMap<String, Want> {
    let mut want = BTreeMap::new();
    for s in csv {
        let sources = types
            .get(&s.type_)
            .unwrap_or_else(|| panic!("type {} not in {TYPES_DB}", s.type_));
        let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(s.ds_names, names, "csv header of {:?} vs types.db", s.files);
        // Labels: <plugin> = plugin instance and type = type instance, or
        // <plugin> = type instance without a plugin instance; host in instance.
        let mut labels = BTreeMap::new();
        let plugin_label = sanitize(&s.plugin, false);
        match (s.plugin_instance.is_empty(), s.type_instance.is_empty()) {
            (false, false) => {
                labels.insert(plugin_label, s.plugin_instance.clone());
                labels.insert("type".to_owned(), s.type_instance.clone());
            }
            (false, true) => {
                labels.insert(plugin_label, s.plugin_instance.clone());
            }
            (true, false) => {
                labels.insert(plugin_label, s.type_instance.clone());
            }
            (true, true) => {}
        }
        labels.insert("instance".to_owned(), host.to_owned());
        let (epoch, last) = s.rows.last().expect("csv series has rows");
        for (i, (ds, ds_type)) in sources.iter().enumerate() {
            let mut name = if s.plugin == s.type_ {
                format!("collectd_{}", s.type_)
            } else {
                format!("collectd_{}_{}", s.plugin, s.type_)
            };
            if ds != "value" {
                name = format!("{name}_{ds}");
            }
            let mut name = sanitize(&name, true);
            if ds_type == "DERIVE" || ds_type == "COUNTER" {
                name.push_str("_total");
            }
            let key = canonical(&name, &labels);
            let w = Want {
                ds_type: ds_type.clone(),
                csv_value: last[i].clone(),
                origin: format!(
                    "{} row {epoch} field {ds}",
                    s.files.last().expect("file").display()
                ),
            };
            assert!(
                want.insert(key.clone(), w).is_none(),
                "two csv files give {key}"
            );
        }
    }
    want
}

/// Whether an exported value is the one collectd's csv plugin wrote.
///
/// Counters (DERIVE, COUNTER) are integers in the csv file and compared
/// exactly. Gauges are written with `%lf`, i.e. rounded to 6 decimals, so the
/// exported double is printed the same way and compared as text: equal text
/// means the exported value is the double collectd had, up to that printed
/// precision (for integer-valued gauges such as memory and df bytes, which
/// are below 2^53 and spaced ≥ 2^-20 apart, it means the same double; load
/// averages are multiples of 1/65536 with more digits than the csv keeps).
/// Rust and glibc both round the exact binary value half to even.
fn value_matches(want: &Want, got: f64) -> bool {
    match want.ds_type.as_str() {
        "GAUGE" => match want.csv_value.as_str() {
            "nan" | "-nan" => got.is_nan(),
            "inf" => got == f64::INFINITY,
            "-inf" => got == f64::NEG_INFINITY,
            text => format!("{got:.6}") == text,
        },
        _ => {
            let n: i128 = want.csv_value.parse().unwrap_or_else(|_| {
                panic!("{}: {:?} is not an integer", want.origin, want.csv_value)
            });
            // The text exposition's doubles are exact for these magnitudes.
            assert!(n.unsigned_abs() < 1 << 53, "{}: {n} too large", want.origin);
            got == n as f64
        }
    }
}

fn value_of(s: &BTreeMap<String, f64>, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}

fn auth_file(tag: &str) -> (TempDir, String) {
    let dir = TempDir::new("collectd", tag);
    let path = dir.path().join("authfile");
    std::fs::write(&path, "alice: wonderland\n").expect("write auth file");
    let path = path.to_str().expect("UTF-8 temp path").to_owned();
    (dir, path)
}

/// How collectd sends to the exporter.
enum Transport<'a> {
    /// The network plugin, one `<Server>` block at `level` (`None`, `Sign`,
    /// `Encrypt`) with `auth`.
    Network {
        level: &'a str,
        auth: Option<(&'a str, &'a str)>,
    },
    /// The write_http plugin, `Format "JSON"`, to `/collectd-post`.
    WriteHttp,
}

/// Runs collectd sending by `transport` to an exporter started with
/// `exporter_args`, and checks that the exporter ends up with exactly the
/// series and values collectd wrote to csv. Returns the exporter and its
/// final scrape.
fn collectd_values_match_csv(
    tag: &str,
    transport: Transport,
    exporter_args: &[&str],
) -> (common::Exporter, String) {
    let types = collectd::types_db(TYPES_DB);
    let mut args = vec!["--collectd.typesdb-file", TYPES_DB, "--stale-after", "120s"];
    args.extend_from_slice(exporter_args);
    let e = common::start(&args);
    let url = format!("http://{}/collectd-post", e.http);
    let servers;
    let setup = match transport {
        Transport::Network { level, auth } => {
            servers = [Server {
                port: e.udp.port(),
                level,
                auth,
            }];
            Setup {
                read_plugins: true,
                servers: &servers,
                ..Setup::default()
            }
        }
        Transport::WriteHttp => Setup {
            read_plugins: true,
            write_http: Some(&url),
            ..Setup::default()
        },
    };
    let mut cd = Collectd::start_with(tag, &setup);
    let host = cd.host.clone();
    let all_plugins: BTreeSet<&str> = READ_PLUGINS.into_iter().collect();

    // Every series collectd has written so far, from every plugin, is
    // exported, and every identity has a few rows (so that "the last row" is
    // a choice: cpu and interface counters change from row to row).
    wait_for(SHOW_TIMEOUT, "every csv series in /metrics", || {
        cd.assert_running();
        let csv = collectd::read_csv(&cd.csv_dir(), &host, false);
        let plugins: BTreeSet<&str> = csv.iter().map(|s| s.plugin.as_str()).collect();
        if plugins != all_plugins {
            return Err(format!("csv has plugins {plugins:?} so far\n{}", cd.log()));
        }
        if let Some(s) = csv.iter().find(|s| s.rows.len() < MIN_ROWS) {
            return Err(format!("{:?} has {} rows so far", s.files, s.rows.len()));
        }
        let want = expected(&csv, &types, &host);
        let got = exported(&common::samples(&common::scrape(e.http)));
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not exported yet: {missing:#?}\n{}", cd.log()))
        }
    });

    cd.stop();
    let csv = collectd::read_csv(&cd.csv_dir(), &host, true);
    let rows: usize = csv.iter().map(|s| s.rows.len()).sum();
    let received_key = format!("{P}value_lists_received_total");
    // collectd hands every value list to csv and to network alike, so the
    // exporter must receive exactly as many as the files hold rows.
    let text = wait_for(DRAIN_TIMEOUT, "every value list collectd wrote", || {
        let text = common::scrape(e.http);
        let received = value_of(&common::samples(&text), &received_key);
        assert!(
            received <= rows as f64,
            "exporter received {received} value lists, csv has {rows} rows\n{text}"
        );
        if received == rows as f64 {
            Ok(text)
        } else {
            Err(format!("received {received} of {rows}\n{text}"))
        }
    });
    let s = common::samples(&text);

    assert_eq!(
        value_of(&s, &format!("{P}value_lists_accepted_total")),
        rows as f64,
        "{text}"
    );
    for family in [
        "datagrams_rejected",
        "value_lists_rejected",
        "decode_errors",
    ] {
        assert_eq!(
            common::sum(&s, &format!("{P}{family}_total")),
            0.0,
            "{text}"
        );
    }

    // The generic store holds one value list per csv identity, and nothing
    // had to be left out of the scrape.
    assert_eq!(
        s.get(&format!("{P}generic_value_lists")).copied(),
        Some(csv.len() as f64),
        "generic value lists held vs csv identities\n{text}"
    );
    for kind in ["duplicate_series", "type_mismatch"] {
        assert_eq!(
            s.get(&format!("{P}generic_conflicts{{kind=\"{kind}\"}}"))
                .copied(),
            Some(0.0),
            "{text}"
        );
    }

    let want = expected(&csv, &types, &host);
    let got = exported(&s);
    let want_keys: BTreeSet<&String> = want.keys().collect();
    let got_keys: BTreeSet<&String> = got.keys().collect();
    assert_eq!(
        got_keys,
        want_keys,
        "series: exported but not expected {:#?}, expected but not exported {:#?}",
        got_keys.difference(&want_keys).collect::<Vec<_>>(),
        want_keys.difference(&got_keys).collect::<Vec<_>>()
    );
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, w)| !value_matches(w, got[*k]))
        .map(|(k, w)| format!("{k} = {} but csv {} has {}", got[k], w.origin, w.csv_value))
        .collect();
    assert!(
        wrong.is_empty(),
        "values differ from csv:\n{}",
        wrong.join("\n")
    );

    // Spot checks that the derivation above names what the brief expects.
    let h = &host;
    for key in [
        format!("collectd_load_shortterm{{instance=\"{h}\"}}"),
        format!("collectd_cpu_total{{cpu=\"0\",instance=\"{h}\",type=\"idle\"}}"),
        format!("collectd_memory{{instance=\"{h}\",memory=\"used\"}}"),
        format!("collectd_interface_if_octets_rx_total{{instance=\"{h}\",interface=\"lo\"}}"),
        format!("collectd_df_df_complex{{df=\"root\",instance=\"{h}\",type=\"free\"}}"),
    ] {
        assert!(got.contains_key(&key), "{key} missing:\n{text}");
    }
    eprintln!(
        "{tag}: {} series from {} csv identities, {rows} value lists:\n{}",
        got.len(),
        csv.len(),
        got.keys().cloned().collect::<Vec<_>>().join("\n")
    );
    (e, text)
}

#[test]
fn collectd_plain_values_equal_its_csv() {
    let (e, text) = collectd_values_match_csv(
        "none",
        Transport::Network {
            level: "None",
            auth: None,
        },
        &[],
    );
    common::promtool_check(text.as_bytes());
    let om = common::get(
        e.http,
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
    );
    assert_eq!(om.status, 200);
    common::promtool_check(&om.body);
}

/// The same with collectd's write_http plugin (`Format "JSON"`) posting to
/// `/collectd-post` instead of the network plugin: the same series and
/// values, every request answered 200, nothing over UDP.
#[test]
fn collectd_write_http_json_values_equal_its_csv() {
    let (_e, text) = collectd_values_match_csv("write-http", Transport::WriteHttp, &[]);
    let s = common::samples(&text);
    let requests = |code: &str| {
        s.get(&format!("{P}http_push_requests_total{{code=\"{code}\"}}"))
            .copied()
    };
    assert!(
        requests("200").is_some_and(|n| n > 0.0),
        "no write_http request answered 200\n{text}"
    );
    for code in ["400", "403", "413"] {
        assert_eq!(requests(code), Some(0.0), "{text}");
    }
    assert_eq!(
        common::sum(&s, &format!("{P}datagrams_received_total")),
        0.0,
        "{text}"
    );
}

#[test]
fn collectd_signed_values_equal_its_csv() {
    let (_dir, auth) = auth_file("sign-auth");
    collectd_values_match_csv(
        "sign",
        Transport::Network {
            level: "Sign",
            auth: Some(("alice", "wonderland")),
        },
        &[
            "--collectd.security-level",
            "sign",
            "--collectd.auth-file",
            &auth,
        ],
    );
}

#[test]
fn collectd_encrypted_values_equal_its_csv() {
    let (_dir, auth) = auth_file("encrypt-auth");
    collectd_values_match_csv(
        "encrypt",
        Transport::Network {
            level: "Encrypt",
            auth: Some(("alice", "wonderland")),
        },
        &[
            "--collectd.security-level",
            "encrypt",
            "--collectd.auth-file",
            &auth,
        ],
    );
}

/// collectd signs for one server and encrypts for another, both with a
/// password the exporter's auth file does not have: every datagram is
/// rejected (collectd sends each buffer to every server, so as many signed
/// as encrypted ones) and nothing is exported.
#[test]
fn collectd_with_a_wrong_password_is_rejected() {
    let (_dir, auth) = auth_file("wrong-auth");
    let e = common::start(&[
        "--collectd.typesdb-file",
        TYPES_DB,
        "--collectd.security-level",
        "sign",
        "--collectd.auth-file",
        &auth,
    ]);
    let wrong = Some(("alice", "looking-glass"));
    let mut cd = Collectd::start(
        "wrong",
        &[
            Server {
                port: e.udp.port(),
                level: "Sign",
                auth: wrong,
            },
            Server {
                port: e.udp.port(),
                level: "Encrypt",
                auth: wrong,
            },
        ],
    );
    let bad_signature = format!("{P}datagrams_rejected_total{{reason=\"bad_signature\"}}");
    let decrypt_failed = format!("{P}datagrams_rejected_total{{reason=\"decrypt_failed\"}}");
    // A few flushes' worth of both kinds.
    wait_for(SHOW_TIMEOUT, "rejected datagrams of both kinds", || {
        cd.assert_running();
        let text = common::scrape(e.http);
        let s = common::samples(&text);
        if value_of(&s, &bad_signature) >= 2.0 && value_of(&s, &decrypt_failed) >= 2.0 {
            Ok(())
        } else {
            Err(text)
        }
    });
    cd.stop();
    let csv = collectd::read_csv(&cd.csv_dir(), &cd.host, true);
    let plugins: BTreeSet<&str> = csv.iter().map(|s| s.plugin.as_str()).collect();
    assert!(!plugins.is_empty(), "collectd wrote nothing:\n{}", cd.log());

    let received = format!("{P}datagrams_received_total");
    let text = wait_for(DRAIN_TIMEOUT, "the last datagrams judged", || {
        let text = common::scrape(e.http);
        let s = common::samples(&text);
        let (b, d) = (value_of(&s, &bad_signature), value_of(&s, &decrypt_failed));
        if b == d && common::sum(&s, &received) == b + d {
            Ok(text)
        } else {
            Err(text)
        }
    });
    let s = common::samples(&text);
    assert_eq!(
        common::sum(&s, &format!("{P}datagrams_rejected_total")),
        common::sum(&s, &received),
        "only bad_signature and decrypt_failed rejections\n{text}"
    );
    assert!(value_of(&s, &bad_signature) >= 2.0, "{text}");
    assert_eq!(
        value_of(&s, &format!("{P}value_lists_received_total")),
        0.0,
        "{text}"
    );
    let leaked: Vec<&String> = s.keys().filter(|k| k.starts_with("collectd_")).collect();
    assert!(
        leaked.is_empty(),
        "exported despite the wrong password: {leaked:#?}"
    );
}

// ---- the relay chain: client → sqlalchemy-collectd's server plugin in
// collectd → collectd's network plugin → exporter ---------------------------

/// Until the exporter shows a phase of the relayed app: the client sends
/// every 2.0–2.2 s, the server plugin sums every second, the network plugin
/// flushes every second.
const RELAY_PHASE_TIMEOUT: Duration = Duration::from_secs(20);
/// Until collectd has loaded the python plugin and the server plugin listens.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The relayed stat (type-type instance, as the server plugin dispatches it
/// and the csv plugin names its file) behind each series, in
/// [`Series::series`] order.
const RELAY_STATS: [&str; 10] = [
    "count-numprocs",
    "count-numpools",
    "count-connections",
    "count-checkedout",
    "count-checkedin",
    "count-detached",
    "derive-checkouts",
    "derive-connects",
    "derive-disconnects",
    "derive-invalidated",
];

/// What the exporter must show for an app behind the server plugin, from
/// the app's report.
///
/// Each process sends its client's state (its own, plus its parent's at the
/// fork for a forked worker) every 2 s. The server plugin keeps the latest
/// report of each process (keyed by host, program and process token) for
/// 2 × its interval × 1.2, and every `Interval` dispatches per host/program
/// the sum over what it keeps: the pool gauges and the cumulative totals of
/// the live processes, and `numprocs`, the number of process tokens heard
/// from in the last 12 s. So for an app whose processes all live and report
/// the relayed values are the sums over those processes; checked in is one
/// too high in a process once it checked in a connection-less record (the
/// client's `id(None)` quirk, see tests/real_client.rs). The exporter
/// exports the relayed gauges as they are and builds its counters from the
/// relayed sums' increases, which for sums that only grow is the last sum.
fn relayed(report: &Report) -> Programs {
    assert!(
        report.dead.is_empty(),
        "the server plugin drops exited processes from its sums; this rule set has no \
         rule for them: {report:?}"
    );
    let mut want = Programs::new();
    for v in report.live.iter().filter(|v| v.reports()) {
        let s = v.client_state();
        let e = want.entry((v.host.clone(), v.program.clone())).or_default();
        e.processes += 1;
        e.pools += v.engines;
        e.connections += s.open;
        e.checked_out += s.held;
        e.checked_in += s.idle + u64::from(s.none_checkins > 0);
        e.detached += s.detached;
        e.checkouts += s.checkouts;
        e.connects += s.connects;
        e.disconnects += s.disconnects;
        e.invalidations += s.invalidations;
    }
    want
}

/// The `sqlalchemy*` lines of an exposition, for messages.
fn sqla_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("sqlalchemy_") && !l.starts_with(P))
        .chain(
            text.lines()
                .filter(|l| l.starts_with(&format!("{P}value_lists"))),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value lists the server plugin dispatched, as its collectd's csv
/// plugin stored them: one line per identity with its values, oldest first.
fn relay_csv_summary(csv: &[CsvSeries]) -> String {
    csv.iter()
        .map(|s| {
            let values: Vec<&str> = s.rows.iter().map(|(_, v)| v[0].as_str()).collect();
            format!(
                "  {}-{}/{}-{}: {}",
                s.plugin,
                s.plugin_instance,
                s.type_,
                s.type_instance,
                values.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// collectd running sqlalchemy-collectd's server plugin on a free port and
/// sending with its network plugin to the exporter's UDP port; started
/// again on another port if the first one was taken meanwhile. Returns the
/// daemon and the server plugin's port.
fn start_relay(exporter_udp: u16, module_path: &std::path::Path) -> (Collectd, u16) {
    let servers = [Server {
        port: exporter_udp,
        level: "None",
        auth: None,
    }];
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_udp_port();
        let mut cd = Collectd::start_with(
            "relay",
            &Setup {
                servers: &servers,
                relay: Some(collectd::Relay { module_path, port }),
                ..Setup::default()
            },
        );
        match cd.await_initialized(START_TIMEOUT) {
            Ok(()) => return (cd, port),
            Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
            Err(log) => panic!(
                "collectd with sqlalchemy-collectd's server plugin (python plugin, \
                 ModulePath {}) did not start; run scripts/test.sh\n{log}\n--- collectd.conf\n{}",
                module_path.display(),
                cd.config()
            ),
        }
    }
}

/// The relay chain this exporter replaces, end to end: the real client
/// (a parent and two forked workers of one program, `relay` in
/// tests/clients/app.py) sends to sqlalchemy-collectd's server plugin
/// running in the real collectd (python plugin), which sums per
/// host/program and per host every second; collectd's network plugin sends
/// the sums to the exporter.
///
/// While the app holds each phase, the exporter must show exactly the
/// app's pool state for its host/program (computed by [`relayed`] from the
/// app's report), the per-host aggregate must be ignored, and nothing may
/// be exported as a generic `collectd_*` series. After collectd stops, the
/// exporter must have judged exactly the value lists collectd's csv plugin
/// stored: the per-host aggregate's as `aggregate_ignored`, the rest
/// accepted, and the final values must be the last csv rows (counters: the
/// sum of the relayed sums' increases).
#[test]
fn relay_through_sqlalchemy_collectd_server_plugin() {
    let module_path = common::client::site_packages();
    let e = common::start(&["--collectd.typesdb-file", TYPES_DB, "--stale-after", "120s"]);
    let (mut cd, relay_port) = start_relay(e.udp.port(), &module_path);
    let host = format!("relay-{}", std::process::id());
    let mut app = App::start("relay", relay_port, &host);

    let phases = ["out", "back"];
    for (i, phase) in phases.iter().enumerate() {
        let report = app.report(phase);
        let want = relayed(&report);
        // The scenario did what it says: one program, three processes.
        assert_eq!(want.len(), 1, "{report:?}");
        let (_, p) = want.first_key_value().expect("one program");
        assert_eq!(p.processes, 3, "{report:?}");
        wait_for(
            RELAY_PHASE_TIMEOUT,
            &format!("phase {phase:?} relayed: {want:?}"),
            || {
                cd.assert_running();
                let text = common::scrape(e.http);
                if shows(&common::samples(&text), &want) {
                    Ok(())
                } else {
                    let csv = collectd::read_csv(&cd.csv_dir(), &host, false);
                    Err(format!(
                        "exporter:\n{}\nserver plugin dispatched so far:\n{}\napp stderr:\n{}",
                        sqla_lines(&text),
                        relay_csv_summary(&csv),
                        app.stderr()
                    ))
                }
            },
        );
        if i + 1 < phases.len() {
            app.next();
        }
    }

    // collectd sends what it still buffers on the way out; the app keeps
    // reporting meanwhile, so the last sums are of the final phase.
    cd.stop();
    let csv = collectd::read_csv(&cd.csv_dir(), &host, true);
    let summary = relay_csv_summary(&csv);
    let hosts: Vec<String> = std::fs::read_dir(cd.csv_dir())
        .expect("csv dir")
        .map(|d| {
            d.expect("csv dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(hosts, [host.as_str()], "csv holds other hosts:\n{summary}");
    // The server plugin dispatched the ten stats per program and per host.
    let mut identities: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in &csv {
        assert_eq!(s.plugin, "sqlalchemy", "{summary}");
        identities
            .entry(s.plugin_instance.as_str())
            .or_default()
            .push(format!("{}-{}", s.type_, s.type_instance));
    }
    let mut stats: Vec<String> = RELAY_STATS.iter().map(|s| (*s).to_owned()).collect();
    stats.sort();
    for names in identities.values_mut() {
        names.sort();
        assert_eq!(*names, stats, "{summary}");
    }
    assert_eq!(
        identities.keys().copied().collect::<Vec<_>>(),
        ["host", "relayapp"],
        "{summary}"
    );

    let rows: usize = csv.iter().map(|s| s.rows.len()).sum();
    let host_rows: usize = csv
        .iter()
        .filter(|s| s.plugin_instance == "host")
        .map(|s| s.rows.len())
        .sum();
    let received_key = format!("{P}value_lists_received_total");
    let text = wait_for(DRAIN_TIMEOUT, "every value list collectd stored", || {
        let text = common::scrape(e.http);
        let received = value_of(&common::samples(&text), &received_key);
        assert!(
            received <= rows as f64,
            "exporter received {received} value lists, csv has {rows} rows\n{text}"
        );
        if received == rows as f64 {
            Ok(text)
        } else {
            Err(format!("received {received} of {rows}\n{text}"))
        }
    });
    let s = common::samples(&text);
    let ignored = value_of(
        &s,
        &format!("{P}value_lists_rejected_total{{reason=\"aggregate_ignored\"}}"),
    );
    assert!(ignored > 0.0, "{text}");
    assert_eq!(ignored, host_rows as f64, "per-host aggregate\n{text}");
    assert_eq!(
        common::sum(&s, &format!("{P}value_lists_rejected_total")),
        ignored,
        "rejections other than aggregate_ignored\n{text}"
    );
    assert_eq!(
        value_of(&s, &format!("{P}value_lists_accepted_total")),
        (rows - host_rows) as f64,
        "{text}"
    );
    for family in ["datagrams_rejected", "decode_errors"] {
        assert_eq!(
            common::sum(&s, &format!("{P}{family}_total")),
            0.0,
            "{text}"
        );
    }
    // Nothing generic: no collectd_sqlalchemy_* (nor any other collectd_*).
    let generic: Vec<&String> = s.keys().filter(|k| k.starts_with("collectd_")).collect();
    assert!(generic.is_empty(), "generic series: {generic:#?}");
    assert_eq!(value_of(&s, &format!("{P}generic_value_lists")), 0.0);

    // The final values are the last relayed ones.
    let mut last = Series::default();
    {
        let fields: [&mut u64; 10] = [
            &mut last.processes,
            &mut last.pools,
            &mut last.connections,
            &mut last.checked_out,
            &mut last.checked_in,
            &mut last.detached,
            &mut last.checkouts,
            &mut last.connects,
            &mut last.disconnects,
            &mut last.invalidations,
        ];
        for (stat, field) in RELAY_STATS.iter().zip(fields) {
            let series = csv
                .iter()
                .find(|s| {
                    s.plugin_instance == "relayapp"
                        && format!("{}-{}", s.type_, s.type_instance) == *stat
                })
                .expect("checked above");
            let values: Vec<f64> = series
                .rows
                .iter()
                .map(|(_, v)| {
                    v[0].parse::<f64>()
                        .unwrap_or_else(|_| panic!("{stat}: {:?} is not a number", v[0]))
                })
                .collect();
            let value = if stat.starts_with("derive-") {
                // The exporter counts a relayed sum's increases (a drop is a
                // process leaving the relay's sum, not a reset).
                let mut prev = 0.0;
                let mut total = 0.0;
                for v in values {
                    total += (v - prev).max(0.0);
                    prev = v;
                }
                total
            } else {
                *values.last().expect("rows")
            };
            assert!(
                value >= 0.0 && value.fract() == 0.0,
                "{stat}: {value}\n{summary}"
            );
            *field = value as u64;
        }
    }
    let want = Programs::from([((host.clone(), "relayapp".to_owned()), last)]);
    assert!(
        shows(&s, &want),
        "final values differ from the last relayed ones {last:?}:\n{}\n{summary}",
        sqla_lines(&text)
    );
    assert_eq!(value_of(&s, &format!("{P}programs")), 1.0, "{text}");
    common::promtool_check(text.as_bytes());
    eprintln!(
        "relay: {rows} value lists dispatched by the server plugin ({host_rows} per-host \
         aggregate), final {last:?}:\n{summary}"
    );
}
