//! Datagrams in over real UDP, `/metrics` out over real HTTP: the scraped
//! values equal what the captured client datagrams say, both formats pass
//! promtool, and the HTTP surface behaves as a Prometheus exporter's should.

mod common;

use bytes::Bytes;
use common::{Exporter, sqla};
use serde_json::Value as Json;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value, decode, part};
use std::collections::{BTreeMap, HashMap};

const SQLA_SCENARIOS: [&str; 5] = [
    "01_sqla_idle",
    "02_sqla_checkout3_return1",
    "03_sqla_invalidate_detach",
    "04_sqla_two_engines",
    "05_sqla_fork_workers_two_programs",
];

/// What the exporter must show for one host/program after a capture was
/// replayed at once (every process live), computed from the manifest alone:
/// gauges = sum over tokens of each token's last `sqlalchemy_pool`, counters =
/// sum over tokens of each token's last `sqlalchemy_totals` (each token's
/// totals only grow within a capture, so the sum of its deltas is its last value).
#[derive(Debug, Default, PartialEq)]
struct Expected {
    processes: f64,
    pool: [f64; 5],
    totals: [f64; 4],
}

fn expected_from_manifest(scenario: &str) -> BTreeMap<(String, String), Expected> {
    let path = common::testdata(scenario).join("manifest.json");
    let m: Json =
        serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("JSON");
    let mut last: HashMap<(String, String, String, String), Vec<f64>> = HashMap::new();
    for d in m["datagrams"].as_array().expect("datagrams") {
        for vl in d["value_lists"].as_array().expect("value lists") {
            let s = |k: &str| vl[k].as_str().expect("string").to_owned();
            let values = vl["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v[1].as_f64().expect("number"))
                .collect();
            last.insert(
                (
                    s("host"),
                    s("plugin_instance"),
                    s("type_instance"),
                    s("type"),
                ),
                values,
            );
        }
    }
    let mut out: BTreeMap<(String, String), Expected> = BTreeMap::new();
    let mut tokens: BTreeMap<(String, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    for ((host, program, token, type_), values) in last {
        let e = out.entry((host.clone(), program.clone())).or_default();
        tokens.entry((host, program)).or_default().insert(token);
        match type_.as_str() {
            "sqlalchemy_pool" => e.pool.iter_mut().zip(&values).for_each(|(a, v)| *a += v),
            "sqlalchemy_totals" => e.totals.iter_mut().zip(&values).for_each(|(a, v)| *a += v),
            other => panic!("unexpected type {other}"),
        }
    }
    for (k, t) in tokens {
        out.get_mut(&k).expect("program").processes = t.len() as f64;
    }
    out
}

fn observed(s: &BTreeMap<String, f64>, host: &str, program: &str) -> Expected {
    let g = |n| {
        sqla(s, n, host, program)
            .unwrap_or_else(|| panic!("{n} missing for {host}/{program} in {s:#?}"))
    };
    Expected {
        processes: g("sqlalchemy_processes"),
        pool: [
            g("sqlalchemy_pools"),
            g("sqlalchemy_connections_checked_out"),
            g("sqlalchemy_connections_checked_in"),
            g("sqlalchemy_connections_detached"),
            g("sqlalchemy_connections"),
        ],
        totals: [
            g("sqlalchemy_checkouts_total"),
            g("sqlalchemy_invalidations_total"),
            g("sqlalchemy_connects_total"),
            g("sqlalchemy_disconnects_total"),
        ],
    }
}

fn replay(e: &Exporter, scenario: &str) -> String {
    let datagrams = common::datagrams(scenario);
    let n = datagrams.len();
    common::send_and_settle(e, &datagrams, n)
}

#[test]
fn replayed_client_captures_scrape_as_their_manifests_say() {
    for scenario in SQLA_SCENARIOS {
        let e = common::start(&[]);
        let text = replay(&e, scenario);
        let s = common::samples(&text);
        let expected = expected_from_manifest(scenario);
        assert!(!expected.is_empty());
        for ((host, program), want) in &expected {
            assert_eq!(
                &observed(&s, host, program),
                want,
                "{scenario}: {host}/{program}\n{text}"
            );
        }
        // Nothing else was exported.
        let programs = s["sqlalchemy_collectd_exporter_programs"];
        assert_eq!(programs, expected.len() as f64, "{scenario}");
    }
}

/// Lines that differ from run to run: receive times, ports, build revision.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = regex_lite_port(l);
            if l.starts_with("sqlalchemy_last_report_timestamp_seconds")
                || l.starts_with("sqlalchemy_client_clock_offset_seconds")
                || l.starts_with("sqlalchemy_collectd_exporter_start_time_seconds ")
                || l.starts_with(
                    "sqlalchemy_collectd_exporter_config_last_reload_success_timestamp_seconds ",
                )
                || l.starts_with("sqlalchemy_collectd_exporter_udp_receive_buffer_bytes")
                // The scrape's own connection, and the previous scrape's
                // if it is still closing.
                || l.starts_with("sqlalchemy_collectd_exporter_http_connections ")
            {
                let (series, _) = l.rsplit_once(' ').expect("sample");
                format!("{series} <varies>")
            } else if l.starts_with("sqlalchemy_collectd_exporter_build_info") {
                "sqlalchemy_collectd_exporter_build_info{<varies>} 1".to_owned()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `listener="127.0.0.1:40123"` → `listener="127.0.0.1:PORT"`.
fn regex_lite_port(line: &str) -> String {
    match line.find("listener=\"127.0.0.1:") {
        Some(at) => {
            let start = at + "listener=\"127.0.0.1:".len();
            let end = start + line[start..].find('"').expect("closing quote");
            format!("{}PORT{}", &line[..start], &line[end..])
        }
        None => line.to_owned(),
    }
}

#[test]
fn fork_and_two_programs_golden_in_both_formats() {
    let e = common::start(&[]);
    let before =
        common::samples(&common::scrape(e.http))["sqlalchemy_collectd_exporter_start_time_seconds"];
    replay(&e, "05_sqla_fork_workers_two_programs");
    let text = common::scrape(e.http);
    let om = common::get(
        e.http,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    );
    let after = common::samples(&text)["sqlalchemy_last_report_timestamp_seconds{host=\"vm\",program=\"forkapp\"}"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        before <= after && after <= now,
        "last report {after} not between start {before} and now {now}"
    );

    common::golden("fork_two_programs.prom", &normalise(&text));
    assert!(
        om.content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        om.content_type
    );
    let om_text = String::from_utf8(om.body).expect("UTF-8");
    assert!(om_text.ends_with("# EOF\n"));
    common::golden("fork_two_programs.om.txt", &normalise(&om_text));

    common::promtool_check(text.as_bytes());
    common::promtool_check(om_text.as_bytes());
}

#[test]
fn text_format_is_the_default_and_families_are_declared_once() {
    let e = common::start(&[]);
    replay(&e, "05_sqla_fork_workers_two_programs");
    let r = common::get(e.http, "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = String::from_utf8(r.body).expect("UTF-8");
    let mut seen = std::collections::HashSet::new();
    for help in text.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(
            seen.insert(help.split(' ').nth(2)),
            "declared twice: {help}"
        );
    }
    // Two programs, one HELP for each SQLAlchemy family.
    assert_eq!(text.matches("# HELP sqlalchemy_connections ").count(), 1);
    assert_eq!(text.matches("sqlalchemy_connections{").count(), 2);
}

/// `--metrics.otel-names`: the same pools under OpenTelemetry's names, the
/// values taken from the exporter's own families of the same scrape;
/// `promtool check metrics` clean; without the flag, none of them.
#[test]
fn otel_names_mirror_the_pool_families_when_asked() {
    let dir = common::TempDir::new("otel", "config");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "pools:\n  - programs: ['checkout_app']\n    pool_size: 5\n    max_overflow: 10\n",
    )
    .expect("write the config file");
    let config = config.display().to_string();
    let e = common::start(&["--metrics.otel-names", "--config.file", &config]);
    let text = replay(&e, "02_sqla_checkout3_return1");
    // The conventions' Prometheus name ends in _count, which promtool's
    // linter keeps for histograms and summaries: the one finding, left so
    // that dashboards built for OpenTelemetry find the name they query.
    assert_eq!(
        common::promtool_problems(text.as_bytes()),
        [
            "db_client_connection_count non-histogram and non-summary metrics should not have \"_count\" suffix"
        ]
    );
    let s = common::samples(&text);
    let ours = |name: &str| sqla(&s, name, "vm", "checkout_app").expect(name);
    let otel = |series: &str| s.get(series).copied();
    for (state, family) in [
        ("used", "sqlalchemy_connections_checked_out"),
        ("idle", "sqlalchemy_connections_checked_in"),
    ] {
        assert_eq!(
            otel(&format!(
                "db_client_connection_count{{host=\"vm\",db_client_connection_pool_name=\"checkout_app\",db_client_connection_state=\"{state}\"}}"
            )),
            Some(ours(family)),
            "{text}"
        );
        assert_eq!(
            otel(&format!(
                "db_client_connections_usage{{host=\"vm\",pool_name=\"checkout_app\",state=\"{state}\"}}"
            )),
            Some(ours(family))
        );
    }
    // (5 + 10) × one pool.
    assert_eq!(ours("sqlalchemy_connections_max"), 15.0);
    assert_eq!(
        otel(
            "db_client_connection_max{host=\"vm\",db_client_connection_pool_name=\"checkout_app\"}"
        ),
        Some(15.0)
    );
    // The capture's last state: 2 checked out, 1 idle.
    assert_eq!(
        (
            ours("sqlalchemy_connections_checked_out"),
            ours("sqlalchemy_connections_checked_in")
        ),
        (2.0, 1.0)
    );

    let plain = common::start(&[]);
    let text = replay(&plain, "02_sqla_checkout3_return1");
    assert!(!text.contains("db_client_"), "{text}");
}

#[test]
fn gzip_when_asked() {
    let e = common::start(&[]);
    replay(&e, "02_sqla_checkout3_return1");
    let r = common::get(e.http, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.content_encoding.as_deref(), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain)
        .expect("gunzip");
    let s = common::samples(&plain);
    assert_eq!(
        sqla(
            &s,
            "sqlalchemy_connections_checked_out",
            "vm",
            "checkout_app"
        ),
        Some(2.0),
        "{plain}"
    );
}

#[test]
fn landing_page_health_and_custom_telemetry_path() {
    let e = common::start(&["--web.telemetry-path", "/pool-metrics"]);
    let landing = common::get(e.http, "/", &[]);
    assert_eq!(landing.status, 200);
    assert!(String::from_utf8_lossy(&landing.body).contains("href=\"/pool-metrics\""));
    assert_eq!(common::get(e.http, "/-/healthy", &[]).status, 200);
    assert_eq!(common::get(e.http, "/-/ready", &[]).status, 200);
    assert_eq!(common::get(e.http, "/metrics", &[]).status, 404);
    let r = common::get(e.http, "/pool-metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("sqlalchemy_collectd_exporter_build_info{"));
}

/// The landing page as served with `telemetry_path`, listing `api` (the
/// pools document) when given.
fn landing(telemetry_path: &str, api: Option<&str>) -> String {
    let api = api
        .map(|p| {
            format!("<li><a href=\"{p}\">Pools (JSON, what <code>top</code> reads)</a></li>\n")
        })
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html><head><title>sqlalchemy-collectd-exporter</title></head>\n<body>\n\
         <h1>sqlalchemy-collectd-exporter {}</h1>\n\
         <p>SQLAlchemy connection-pool statistics from sqlalchemy-collectd clients and collectd, for Prometheus.</p>\n\
         <ul>\n<li><a href=\"/live\">Live pools (the fleet page)</a></li>\n<li><a href=\"{telemetry_path}\">Metrics</a></li>\n{api}\
         <li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n\
         </body></html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[test]
fn landing_page_links_the_pools_document_only_where_it_is_served() {
    let e = common::start(&[]);
    let page = common::get(e.http, "/", &[]);
    assert_eq!(
        (page.status, page.content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8_lossy(&page.body),
        landing("/metrics", Some("/api/v1/pools"))
    );
    let api = common::get(e.http, "/api/v1/pools", &[]);
    assert_eq!(
        (api.status, api.content_type.as_str()),
        (200, "application/json")
    );

    // A push path on the API's path takes it: the page does not link it.
    let e = common::start(&["--web.collectd-push-path", "/api/v1/pools"]);
    let page = common::get(e.http, "/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&page.body),
        landing("/metrics", None)
    );
    assert_eq!(common::get(e.http, "/api/v1/pools", &[]).status, 405);

    // So does the telemetry path; the page links it once, as the metrics.
    let e = common::start(&["--web.telemetry-path", "/api/v1/pools"]);
    let page = common::get(e.http, "/", &[]);
    assert_eq!(
        String::from_utf8_lossy(&page.body),
        landing("/api/v1/pools", None)
    );
}

fn client_datagram(
    program: &str,
    token: &str,
    time: u64,
    type_: &str,
    values: &[Value],
) -> Vec<u8> {
    let id = Identity {
        host: "h1".into(),
        plugin: "sqlalchemy".into(),
        plugin_instance: program.into(),
        type_: type_.into(),
        type_instance: token.into(),
    };
    Encoder::new()
        .client_value_list(&id, time, 2, values)
        .finish()
        .to_vec()
}

#[test]
fn malformed_datagrams_are_counted_by_reason_and_touch_nothing_else() {
    let e = common::start(&[]);
    let good = client_datagram(
        "app",
        "1:aaaaaa",
        100,
        "sqlalchemy_totals",
        &[
            Value::Derive(5),
            Value::Derive(0),
            Value::Derive(1),
            Value::Derive(0),
        ],
    );
    common::send_and_settle(&e, std::slice::from_ref(&good), 1);

    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut zero_len = good.clone();
    zero_len[2] = 0;
    zero_len[3] = 0;
    let mut bad_type = good.clone();
    let values_at = bad_type.len() - (2 + 4 + 32);
    bad_type[values_at + 2] = 7;
    let bad = vec![truncated, zero_len, bad_type, Vec::new(), vec![0xff; 3]];
    for d in &bad {
        assert!(decode(&Bytes::from(d.clone())).is_err());
    }
    common::send_all(e.udp, &bad);
    let s = common::scrape_until(
        e.http,
        "5 malformed datagrams",
        std::time::Duration::from_secs(10),
        |s| {
            s.get("sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"malformed\"}")
                == Some(&5.0)
        },
    );
    let err =
        |k: &str| s[&format!("sqlalchemy_collectd_exporter_decode_errors_total{{error=\"{k}\"}}")];
    assert_eq!(err("part_past_end"), 1.0);
    assert_eq!(err("part_too_short"), 1.0);
    assert_eq!(err("unknown_value_type"), 1.0);
    assert_eq!(err("empty"), 1.0);
    assert_eq!(err("truncated_header"), 1.0);
    assert_eq!(
        sqla(&s, "sqlalchemy_checkouts_total", "h1", "app"),
        Some(5.0)
    );
    assert_eq!(s["sqlalchemy_collectd_exporter_programs"], 1.0);
}

#[test]
fn value_lists_are_rejected_by_reason() {
    let e = common::start(&["--limits.max-programs", "1"]);
    let totals = |program: &str, t, n| {
        client_datagram(
            program,
            "1:aaaaaa",
            t,
            "sqlalchemy_totals",
            &[
                Value::Derive(n),
                Value::Derive(0),
                Value::Derive(1),
                Value::Derive(0),
            ],
        )
    };
    let datagrams = vec![
        totals("app", 100, 5),
        totals("app", 100, 5),   // duplicate
        totals("app", 98, 3),    // late, with lower totals: stale
        totals("app", 101, 5),   // a second report: "app" is kept at the limit
        totals("other", 100, 1), // a second program: over the limit
        client_datagram(
            "app",
            "1:aaaaaa",
            100,
            "sqlalchemy_bogus",
            &[Value::Gauge(1.0)],
        ),
        client_datagram(
            "app",
            "1:aaaaaa",
            102,
            "sqlalchemy_pool",
            &[Value::Gauge(1.0)],
        ),
        client_datagram(
            "app",
            "1:aaaaaa",
            102,
            "sqlalchemy_pool",
            &[Value::Gauge(f64::NAN); 5],
        ),
        {
            let mut e = Encoder::new();
            e.string(part::HOST, "h1")
                .string(part::PLUGIN, "load")
                .string(part::TYPE, "gauge")
                .values(&[Value::Gauge(0.1)]);
            e.finish().to_vec()
        },
    ];
    let text = common::send_and_settle(&e, &datagrams, datagrams.len());
    let s = common::samples(&text);
    let r = |k: &str| {
        s[&format!("sqlalchemy_collectd_exporter_value_lists_rejected_total{{reason=\"{k}\"}}")]
    };
    assert_eq!(
        [
            r("out_of_order"),
            r("stale"),
            r("over_limit"),
            r("unknown_type"),
            r("malformed"),
            r("invalid_value"),
        ],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        "{text}"
    );
    // The two SQLAlchemy totals and the generic `load` value list.
    assert_eq!(
        s["sqlalchemy_collectd_exporter_value_lists_accepted_total"],
        3.0
    );
    assert_eq!(s["collectd_load_gauge{instance=\"h1\"}"], 0.1);
    assert_eq!(
        sqla(&s, "sqlalchemy_checkouts_total", "h1", "app"),
        Some(5.0)
    );
}

#[test]
fn dead_process_leaves_the_gauges_and_keeps_its_counters_then_the_program_is_forgotten() {
    let e = common::start(&["--stale-after", "1s", "--forget-after", "2s"]);
    let pool = |token: &str, t, out: f64| {
        client_datagram(
            "app",
            token,
            t,
            "sqlalchemy_pool",
            &[
                Value::Gauge(1.0),
                Value::Gauge(out),
                Value::Gauge(0.0),
                Value::Gauge(0.0),
                Value::Gauge(out),
            ],
        )
    };
    let totals = |token: &str, t, n| {
        client_datagram(
            "app",
            token,
            t,
            "sqlalchemy_totals",
            &[
                Value::Derive(n),
                Value::Derive(0),
                Value::Derive(n),
                Value::Derive(0),
            ],
        )
    };
    let sent_at = std::time::Instant::now();
    let text = common::send_and_settle(
        &e,
        &[
            pool("1:aaaaaa", 100, 2.0),
            totals("1:aaaaaa", 100, 7),
            pool("2:bbbbbb", 100, 3.0),
            totals("2:bbbbbb", 100, 4),
        ],
        4,
    );
    let s = common::samples(&text);
    assert_eq!(sqla(&s, "sqlalchemy_processes", "h1", "app"), Some(2.0));
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_checked_out", "h1", "app"),
        Some(5.0)
    );

    let s = common::scrape_until(
        e.http,
        "processes to expire",
        std::time::Duration::from_secs(10),
        |s| sqla(s, "sqlalchemy_processes", "h1", "app") == Some(0.0),
    );
    assert!(
        sent_at.elapsed() >= std::time::Duration::from_secs(1),
        "expired before --stale-after"
    );
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_checked_out", "h1", "app"),
        Some(0.0)
    );
    assert_eq!(sqla(&s, "sqlalchemy_connections", "h1", "app"), Some(0.0));
    assert_eq!(
        sqla(&s, "sqlalchemy_checkouts_total", "h1", "app"),
        Some(11.0)
    );
    assert_eq!(
        sqla(&s, "sqlalchemy_connects_total", "h1", "app"),
        Some(11.0)
    );

    let s = common::scrape_until(
        e.http,
        "the program to be forgotten",
        std::time::Duration::from_secs(10),
        |s| sqla(s, "sqlalchemy_processes", "h1", "app").is_none(),
    );
    assert!(
        sent_at.elapsed() >= std::time::Duration::from_secs(3),
        "forgotten before stale + forget"
    );
    assert!(
        !s.keys().any(
            |k| k.starts_with("sqlalchemy_") && !k.starts_with("sqlalchemy_collectd_exporter_")
        )
    );
    let s = common::scrape_until(
        e.http,
        "the sweep to count",
        std::time::Duration::from_secs(5),
        |s| s["sqlalchemy_collectd_exporter_programs_forgotten_total"] == 1.0,
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_processes_expired_total"],
        2.0
    );
    assert_eq!(s["sqlalchemy_collectd_exporter_processes_tracked"], 0.0);
}

#[test]
fn ipv6_and_go_style_listeners_receive() {
    let e = common::start(&[
        "--collectd.listen-address",
        "[::1]:0",
        "--collectd.listen-address",
        ":0",
    ]);
    let (v6, any) = (e.udp_all[1], e.udp_all[2]);
    assert!(v6.is_ipv6());
    let totals = |token: &str| {
        client_datagram(
            "app",
            token,
            100,
            "sqlalchemy_totals",
            &[
                Value::Derive(1),
                Value::Derive(0),
                Value::Derive(1),
                Value::Derive(0),
            ],
        )
    };
    let s6 = std::net::UdpSocket::bind("[::1]:0").expect("IPv6 loopback");
    s6.send_to(&totals("1:aaaaaa"), v6).expect("send over IPv6");
    // `:PORT` is one socket for both families.
    s6.send_to(
        &totals("2:bbbbbb"),
        std::net::SocketAddr::new("::1".parse().expect("ip"), any.port()),
    )
    .expect("send");
    common::sender()
        .send_to(
            &totals("3:cccccc"),
            std::net::SocketAddr::new("127.0.0.1".parse().expect("ip"), any.port()),
        )
        .expect("send");
    let s = common::scrape_until(
        e.http,
        "three processes",
        std::time::Duration::from_secs(10),
        |s| sqla(s, "sqlalchemy_processes", "h1", "app") == Some(3.0),
    );
    assert_eq!(
        sqla(&s, "sqlalchemy_checkouts_total", "h1", "app"),
        Some(3.0)
    );
    let per_listener = s
        .iter()
        .filter(|(k, v)| {
            k.starts_with("sqlalchemy_collectd_exporter_datagrams_received_total") && **v > 0.0
        })
        .count();
    assert_eq!(
        per_listener, 2,
        "the [::1] and the :PORT listener each counted their datagrams"
    );
}

#[test]
fn a_datagram_near_64_kib_is_read_whole() {
    let e = common::start(&[]);
    let mut enc = Encoder::new();
    let mut n = 0;
    // ~140-byte client value lists until the next would pass 65,000 bytes.
    while enc.len() < 65_000 - 200 {
        let id = Identity {
            host: "h1".into(),
            plugin: "sqlalchemy".into(),
            plugin_instance: "big".into(),
            type_: "sqlalchemy_pool".into(),
            type_instance: format!("{n}:abcdef").as_str().into(),
        };
        enc.client_value_list(
            &id,
            100,
            2,
            &[
                Value::Gauge(1.0),
                Value::Gauge(1.0),
                Value::Gauge(0.0),
                Value::Gauge(0.0),
                Value::Gauge(1.0),
            ],
        );
        n += 1;
    }
    let datagram = enc.finish().to_vec();
    assert!(datagram.len() > 64_000, "{}", datagram.len());
    let s = common::samples(&common::send_and_settle(&e, &[datagram], n));
    assert_eq!(
        sqla(&s, "sqlalchemy_processes", "h1", "big"),
        Some(n as f64)
    );
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_checked_out", "h1", "big"),
        Some(n as f64)
    );
}

#[test]
fn datagrams_around_the_receive_slot_size_are_read_whole() {
    // Sizes on both sides of the 2 KiB dense slot; each datagram holds client
    // value lists and is padded to its exact size with a part collectd skips.
    let e = common::start(&[]);
    let sizes = [2040usize, 2047, 2048, 2049, 2050, 3000, 4096, 4097];
    let mut datagrams = Vec::new();
    let mut n = 0;
    for size in sizes {
        let mut enc = Encoder::new();
        while enc.len() + 400 < size {
            let id = Identity {
                host: "h1".into(),
                plugin: "sqlalchemy".into(),
                plugin_instance: "edge".into(),
                type_: "sqlalchemy_pool".into(),
                type_instance: format!("{n}:abcdef").as_str().into(),
            };
            enc.client_value_list(&id, 100, 2, &[Value::Gauge(1.0); 5]);
            n += 1;
        }
        let mut raw = enc.finish().to_vec();
        let pad = size - raw.len();
        assert!(pad >= 4);
        raw.extend_from_slice(&0x7f00u16.to_be_bytes());
        raw.extend_from_slice(&(pad as u16).to_be_bytes());
        raw.resize(size, 0xaa);
        assert_eq!(raw.len(), size);
        datagrams.push(raw);
        // A small client datagram between them shares each batch.
        let id = Identity {
            host: "h1".into(),
            plugin: "sqlalchemy".into(),
            plugin_instance: "edge".into(),
            type_: "sqlalchemy_pool".into(),
            type_instance: format!("{n}:abcdef").as_str().into(),
        };
        let small = Encoder::new()
            .client_value_list(&id, 100, 2, &[Value::Gauge(1.0); 5])
            .finish()
            .to_vec();
        datagrams.push(small);
        n += 1;
    }
    let s = common::samples(&common::send_and_settle(&e, &datagrams, n));
    assert_eq!(
        sqla(&s, "sqlalchemy_processes", "h1", "edge"),
        Some(n as f64)
    );
    assert_eq!(
        common::sum(
            &s,
            "sqlalchemy_collectd_exporter_datagram_bytes_received_total"
        ),
        datagrams.iter().map(Vec::len).sum::<usize>() as f64
    );
}

/// An auth file in a directory of its own (removed with the directory).
fn write_auth(dir_name: &str, text: &str) -> (common::TempDir, std::path::PathBuf) {
    let dir = common::TempDir::new("scrape", dir_name);
    let path = dir.path().join("authfile");
    std::fs::write(&path, text).expect("write auth file");
    (dir, path)
}

#[test]
fn security_level_sign_accepts_signed_and_rejects_plain_and_forged() {
    let (_dir, auth) = write_auth("sign", "alice: wonderland\n");
    let auth = auth.to_str().expect("utf-8 path");
    let e = common::start(&[
        "--collectd.security-level",
        "sign",
        "--collectd.auth-file",
        auth,
    ]);
    let signed = common::datagrams("08_collectd_sign");
    let plain = common::datagrams("07_collectd_plain");
    let mut forged = signed[0].clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    common::send_all(e.udp, &signed);
    common::send_all(e.udp, &plain);
    common::send_all(e.udp, &[forged]);
    // A datagram is counted as received before it is judged, so wait for the
    // judgements themselves: 11 plain ones below the level, 1 forged.
    let rejected = |s: &BTreeMap<String, f64>, k: &str| {
        s[&format!("sqlalchemy_collectd_exporter_datagrams_rejected_total{{reason=\"{k}\"}}")]
    };
    let s = common::scrape_until(
        e.http,
        "23 datagrams judged",
        std::time::Duration::from_secs(10),
        |s| {
            common::sum(s, "sqlalchemy_collectd_exporter_datagrams_received_total") == 23.0
                && s["sqlalchemy_collectd_exporter_value_lists_accepted_total"] == 278.0
                && rejected(s, "below_security_level") == 11.0
                && rejected(s, "bad_signature") == 1.0
        },
    );
    // Nothing else was rejected.
    assert_eq!(
        common::sum(&s, "sqlalchemy_collectd_exporter_datagrams_rejected_total"),
        12.0
    );
    // Only the signed datagrams' 278 value lists got through.
    assert_eq!(
        s["sqlalchemy_collectd_exporter_value_lists_received_total"],
        278.0
    );
}

#[test]
fn security_level_encrypt_opens_encrypted_and_rejects_signed() {
    let (_dir, auth) = write_auth("encrypt", "alice: wonderland\n");
    let auth = auth.to_str().expect("utf-8 path");
    let e = common::start(&[
        "--collectd.security-level",
        "encrypt",
        "--collectd.auth-file",
        auth,
    ]);
    common::send_all(e.udp, &common::datagrams("09_collectd_encrypt"));
    common::send_all(e.udp, &common::datagrams("08_collectd_sign"));
    let s = common::scrape_until(
        e.http,
        "22 datagrams",
        std::time::Duration::from_secs(10),
        |s| {
            // Received is counted before a datagram is judged: wait for the judgement.
            common::sum(s, "sqlalchemy_collectd_exporter_datagrams_received_total") == 22.0
                && s["sqlalchemy_collectd_exporter_value_lists_received_total"] == 278.0
                && s["sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"below_security_level\"}"]
                    == 11.0
        },
    );
    assert_eq!(
        common::sum(&s, "sqlalchemy_collectd_exporter_datagrams_rejected_total"),
        11.0
    );
}

#[test]
fn encrypted_sqlalchemy_data_is_stored() {
    let (_dir, auth) = write_auth("sqla-encrypt", "app: s3cret\n");
    let auth = auth.to_str().expect("utf-8 path");
    let e = common::start(&[
        "--collectd.security-level",
        "encrypt",
        "--collectd.auth-file",
        auth,
    ]);
    let plain = client_datagram(
        "app",
        "1:aaaaaa",
        100,
        "sqlalchemy_pool",
        &[
            Value::Gauge(1.0),
            Value::Gauge(3.0),
            Value::Gauge(1.0),
            Value::Gauge(0.0),
            Value::Gauge(4.0),
        ],
    );
    let sealed = sqlalchemy_collectd_exporter::collectd::security::seal::encrypt(
        "app", "s3cret", [3; 16], &plain,
    );
    let wrong = sqlalchemy_collectd_exporter::collectd::security::seal::encrypt(
        "app", "guess", [3; 16], &plain,
    );
    let text = common::send_and_settle(&e, &[wrong, plain, sealed], 1);
    let s = common::samples(&text);
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_checked_out", "h1", "app"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"decrypt_failed\"}"],
        1.0
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"below_security_level\"}"],
        1.0
    );
}

#[test]
fn collectd_capture_is_exported_with_collectd_exporter_names() {
    let e = common::start(&["--collectd.typesdb-file", "/usr/share/collectd/types.db"]);
    let text = common::send_and_settle(&e, &common::datagrams("07_collectd_plain"), 278);
    let s = common::samples(&text);
    // Every value of every value list is one sample; compute the count from the manifest.
    let path = common::testdata("07_collectd_plain").join("manifest.json");
    let m: Json =
        serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("JSON");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for d in m["datagrams"].as_array().expect("datagrams") {
        for vl in d["value_lists"].as_array().expect("value lists") {
            let st = |k: &str| vl[k].as_str().expect("string").to_owned();
            let (plugin, pi, type_, ti) = (
                st("plugin"),
                st("plugin_instance"),
                st("type"),
                st("type_instance"),
            );
            let values = vl["values"].as_array().expect("values");
            let dsnames = vl["dsnames"].as_array().expect("dsnames");
            for (v, ds) in values.iter().zip(dsnames) {
                let ds = ds.as_str().expect("dsname");
                let mut name = if plugin == type_ {
                    format!("collectd_{type_}")
                } else {
                    format!("collectd_{plugin}_{type_}")
                };
                if ds != "value" {
                    name = format!("{name}_{ds}");
                }
                if matches!(v[0].as_str(), Some("derive") | Some("counter")) {
                    name.push_str("_total");
                }
                let mut labels = Vec::new();
                match (pi.is_empty(), ti.is_empty()) {
                    (false, false) => {
                        labels.push((plugin.clone(), pi.clone()));
                        labels.push(("type".to_owned(), ti.clone()));
                    }
                    (false, true) => labels.push((plugin.clone(), pi.clone())),
                    (true, false) => labels.push((plugin.clone(), ti.clone())),
                    (true, true) => {}
                }
                labels.push(("instance".to_owned(), st("host")));
                labels.sort();
                let labels: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                let value = v[1].as_f64().expect("number");
                // A later value list of the same identity replaces an earlier one.
                want.insert(format!("{name}{{{}}}", labels.join(",")), value);
            }
        }
    }
    let got: BTreeMap<String, f64> = s
        .iter()
        .filter(|(k, _)| k.starts_with("collectd_"))
        .map(|(k, v)| {
            // Families with some series lacking a label carry it empty; drop those.
            let k = k.replace(",type=\"\"", "").replace("{type=\"\",", "{");
            (k, *v)
        })
        .collect();
    assert_eq!(got, want, "{text}");
    assert!(got.contains_key("collectd_load_shortterm{instance=\"vm\"}"));
    assert!(
        got.contains_key("collectd_interface_if_octets_rx_total{instance=\"vm\",interface=\"lo\"}")
    );
    common::promtool_check(text.as_bytes());
    let om = common::get(
        e.http,
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
    );
    common::promtool_check(&om.body);
}

const WRITE_HTTP_BODY: &str = r#"[
 {"values":[0.25,0.5,0.75],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],"time":1795289844.125,"interval":10.000,"host":"web1","plugin":"load","plugin_instance":"","type":"load","type_instance":""},
 {"values":[1234],"dstypes":["derive"],"dsnames":["value"],"time":1795289844.125,"interval":10.000,"host":"web1","plugin":"cpu","plugin_instance":"0","type":"cpu","type_instance":"idle"},
 {"values":[3],"dstypes":["gauge"],"dsnames":["value"],"time":1795289844.125,"interval":10.000,"host":"web1","plugin":"sqlalchemy","plugin_instance":"api","type":"count","type_instance":"checkedout"}
]"#;

#[test]
fn write_http_json_is_accepted_on_the_push_path() {
    let e = common::start(&["--collectd.typesdb-file", "/usr/share/collectd/types.db"]);
    let (code, text) = common::post(e.http, "/collectd-post", WRITE_HTTP_BODY.as_bytes());
    assert_eq!((code, text.as_str()), (200, "received 3 value lists\n"));
    let s = common::samples(&common::scrape(e.http));
    assert_eq!(s["collectd_load_midterm{instance=\"web1\"}"], 0.5);
    assert_eq!(
        s["collectd_cpu_total{cpu=\"0\",instance=\"web1\",type=\"idle\"}"],
        1234.0
    );
    // A relayed sqlalchemy-collectd stat lands in the SQLAlchemy families.
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_checked_out", "web1", "api"),
        Some(3.0)
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_http_push_requests_total{code=\"200\"}"],
        1.0
    );
}

#[test]
fn write_http_errors_are_clear_4xx() {
    let e = common::start(&[]);
    let (code, text) = common::post(e.http, "/collectd-post", b"[{\"values\":[1]}]");
    assert_eq!(code, 400);
    assert!(
        text.starts_with("not collectd write_http JSON: missing field `dstypes`"),
        "{text}"
    );
    // A body announced as 9 MiB is refused before it is read; the response
    // comes while the client could still be sending, so read it over a raw
    // connection that sends only the headers.
    let mut conn = std::net::TcpStream::connect(e.http).expect("connect");
    std::io::Write::write_all(
        &mut conn,
        format!(
            "POST /collectd-post HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            9 << 20
        )
        .as_bytes(),
    )
    .expect("send headers");
    let mut status_line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&conn), &mut status_line)
        .expect("response");
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let s = common::samples(&common::scrape(e.http));
    assert_eq!(
        s["sqlalchemy_collectd_exporter_http_push_requests_total{code=\"400\"}"],
        1.0
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_http_push_requests_total{code=\"413\"}"],
        1.0
    );
    assert_eq!(s["sqlalchemy_collectd_exporter_generic_value_lists"], 0.0);
}

#[test]
fn write_http_is_refused_above_security_level_none_and_can_be_disabled() {
    let (_dir, auth) = write_auth("push", "alice: wonderland\n");
    let e = common::start(&[
        "--collectd.security-level",
        "sign",
        "--collectd.auth-file",
        auth.to_str().expect("path"),
    ]);
    let (code, text) = common::post(e.http, "/collectd-post", WRITE_HTTP_BODY.as_bytes());
    assert_eq!(
        (code, text.as_str()),
        (
            403,
            "collectd security level Sign accepts only signed or encrypted datagrams\n"
        )
    );
    let e = common::start(&["--web.collectd-push-path", ""]);
    let (code, _) = common::post(e.http, "/collectd-post", WRITE_HTTP_BODY.as_bytes());
    assert_eq!(code, 404);
}

#[test]
fn multicast_listen_address_joins_the_group() {
    // collectd's default IPv4 group, joined on the loopback interface so the
    // test never sends beyond this machine.
    let e = common::start(&[
        "--collectd.listen-address",
        "239.192.74.66:0",
        "--collectd.multicast-interface",
        "lo",
    ]);
    let group = e.udp_all[1];
    assert_eq!(group.ip().to_string(), "239.192.74.66");
    let sender =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    sender
        .set_multicast_if_v4(&"127.0.0.1".parse().expect("ip"))
        .expect("IP_MULTICAST_IF");
    sender
        .set_multicast_loop_v4(true)
        .expect("IP_MULTICAST_LOOP");
    let datagram = client_datagram(
        "app",
        "1:aaaaaa",
        100,
        "sqlalchemy_pool",
        &[
            Value::Gauge(1.0),
            Value::Gauge(2.0),
            Value::Gauge(0.0),
            Value::Gauge(0.0),
            Value::Gauge(2.0),
        ],
    );
    sender
        .send_to(&datagram, &group.into())
        .expect("send to the group");
    let s = common::scrape_until(
        e.http,
        "the multicast datagram",
        std::time::Duration::from_secs(10),
        |s| sqla(s, "sqlalchemy_connections", "h1", "app").is_some(),
    );
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_checked_out", "h1", "app"),
        Some(2.0)
    );
    let on_group =
        format!("sqlalchemy_collectd_exporter_datagrams_received_total{{listener=\"{group}\"}}");
    assert_eq!(s[&on_group], 1.0);
}

#[test]
fn notifications_are_counted_by_severity_and_leave_value_lists_alone() {
    let scenario = "10_collectd_notifications";
    let path = common::testdata(scenario).join("manifest.json");
    let m: Json =
        serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("JSON");
    let (mut lists, mut by_severity) = (0usize, BTreeMap::<String, f64>::new());
    for d in m["datagrams"].as_array().expect("datagrams") {
        lists += d["value_lists"].as_array().expect("value lists").len();
        for n in d["notifications"].as_array().expect("notifications") {
            let name = n["severity_name"]
                .as_str()
                .expect("severity")
                .to_ascii_lowercase();
            *by_severity.entry(name).or_default() += 1.0;
        }
    }
    let e = common::start(&[]);
    let s = common::samples(&common::send_and_settle(
        &e,
        &common::datagrams(scenario),
        lists,
    ));
    for (severity, n) in &by_severity {
        let key = format!(
            "sqlalchemy_collectd_exporter_notifications_received_total{{severity=\"{severity}\"}}"
        );
        assert_eq!(s.get(&key), Some(n), "{key}");
    }
    assert_eq!(
        s["sqlalchemy_collectd_exporter_value_lists_accepted_total"],
        lists as f64
    );
    assert_eq!(
        common::sum(&s, "sqlalchemy_collectd_exporter_datagrams_rejected_total"),
        0.0
    );
}

#[test]
fn allowlist_drops_and_counts_datagrams_from_other_sources() {
    let e = common::start(&[
        "--collectd.allow",
        "127.0.0.1/32",
        "--collectd.allow",
        "::1/128",
    ]);
    let datagrams = common::datagrams("02_sqla_checkout3_return1");
    let value_lists: usize = datagrams
        .iter()
        .map(|d| decode(&Bytes::from(d.clone())).map_or(0, |p| p.value_lists.len()))
        .sum();
    assert!(value_lists > 0);
    let rejected = |s: &BTreeMap<String, f64>| s["sqlalchemy_collectd_exporter_datagrams_rejected_total{reason=\"source_not_allowed\"}"];

    // 127.0.0.2 is loopback too, but outside the list.
    let outsider = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    for d in &datagrams {
        outsider.send_to(d, e.udp).expect("send");
    }
    let s = common::scrape_until(
        e.http,
        "every datagram from 127.0.0.2 dropped",
        std::time::Duration::from_secs(10),
        |s| rejected(s) == datagrams.len() as f64,
    );
    assert_eq!(
        common::sum(&s, "sqlalchemy_collectd_exporter_datagrams_rejected_total"),
        datagrams.len() as f64
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_value_lists_received_total"],
        0.0
    );
    assert!(!s.keys().any(|k| k.starts_with("sqlalchemy_processes")));

    // The same datagrams from 127.0.0.1 are accepted.
    common::send_all(e.udp, &datagrams);
    let s = common::scrape_until(
        e.http,
        "every value list from 127.0.0.1 accepted",
        std::time::Duration::from_secs(10),
        |s| s["sqlalchemy_collectd_exporter_value_lists_accepted_total"] == value_lists as f64,
    );
    assert_eq!(rejected(&s), datagrams.len() as f64);
    assert!(s.keys().any(|k| k.starts_with("sqlalchemy_processes{")));
}
