//! The live page (`/live`) in a real browser: Debian's Chromium, headless,
//! driven over WebDriver (`common::browser`), against an exporter fed by the
//! real client (`tests/clients/app.py`: a plain app, two programs on two
//! hosts, a parent with three forked workers). The rows show exactly what
//! the apps say they hold; sorting, the filter and the per-host grouping
//! change the rows; a program's processes list its workers' pids; a stopped
//! app's row turns red (late), then grey (dead); an exporter that stops
//! answering is said so. The test saves the screenshots of the README
//! (`docs/live-page-*.png`). Another test loads the page behind TLS and
//! basic auth with another telemetry path; the last measures the bytes over
//! the wire at 1,000 host/programs, as the browser counts them.

mod common;

use common::browser::Browser;
use common::client::{App, Report};
use common::load::Fleet;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Every program row of the table, in order, as the test compares it.
const ROWS: &str = r#"
return [...document.querySelectorAll('#programs tbody tr[data-program]')]
  .filter(tr => !tr.classList.contains('host-row'))
  .map(tr => {
    const c = k => tr.querySelector('[data-col="' + k + '"]').textContent;
    return {host: tr.dataset.host, program: tr.dataset.program, class: tr.className,
            state: c('state'), processes: c('processes'), connections: c('connections'),
            checked_out: c('checked_out'), checkout_rate: c('checkout_rate'),
            invalidation_rate: c('invalidation_rate')};
  });"#;

/// (host, program) → (processes, connections, checked out) of the apps'
/// reports, by the rules of `tests/real_client.rs` (a forked worker reports
/// its inherited state plus its own).
fn truth(reports: &[&Report]) -> BTreeMap<(String, String), (u64, u64, u64)> {
    let mut all = BTreeMap::new();
    for r in reports {
        for v in r.live.iter().filter(|v| v.reports()) {
            let s = v.client_state();
            let e = all
                .entry((v.host.clone(), v.program.clone()))
                .or_insert((0, 0, 0));
            e.0 += 1;
            e.1 += s.open;
            e.2 += s.held;
        }
    }
    all
}

fn row(host: &str, program: &str, n: (u64, u64, u64), state: &str) -> Json {
    json!({"host": host, "program": program, "class": state, "state": state,
           "processes": n.0.to_string(), "connections": n.1.to_string(),
           "checked_out": n.2.to_string(), "checkout_rate": "0.0", "invalidation_rate": "0.0"})
}

fn programs_of(rows: &Json) -> Vec<String> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r["host"].as_str().unwrap_or(""),
                        r["program"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn advance(app: &mut App, phases: &[&str]) -> Report {
    let mut last = None;
    for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            app.next();
        }
        last = Some(app.report(phase));
    }
    last.expect("a phase")
}

#[test]
fn the_live_page_shows_the_real_clients_sorts_filters_and_turns_a_stopped_app_red() {
    let dir = common::TempDir::new("browser", "config");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "pools:\n  - programs: [\"*\"]\n    pool_size: 5\n    max_overflow: 5\n",
    )
    .expect("write the config file");
    let config = config.display().to_string();
    // Late after 1.5 intervals (3 s), dead 15 s after the last report.
    let exporter = common::start(&["--stale-after", "15s", "--config.file", &config]);
    let port = exporter.udp.port();
    let mut checkout = App::start("checkout", port, "web1");
    let mut programs = App::start("programs", port, "web2");
    let mut fork = App::start("fork", port, "web3");
    let r_checkout = advance(&mut checkout, &["init", "three_out"]);
    let r_programs = advance(&mut programs, &["init", "out"]);
    let r_fork = advance(
        &mut fork,
        &[
            "init",
            "parent_one_idle",
            "forked",
            "worker_1_out",
            "worker_2_out",
            "worker_3_out",
        ],
    );
    let truth = truth(&[&r_checkout, &r_programs, &r_fork]);
    assert_eq!(
        truth
            .keys()
            .map(|(h, p)| format!("{h}/{p}"))
            .collect::<Vec<_>>(),
        [
            "web1/checkout",
            "web2/alpha",
            "web2-beta/beta",
            "web3/forkapp"
        ]
    );
    let want: Vec<Json> = truth
        .iter()
        .map(|((h, p), n)| row(h, p, *n, "live"))
        .collect();

    let browser = Browser::start("browser", 1280, 800);
    let page = format!("http://{}/live", exporter.http);
    browser.goto(&page);
    // The rows: the apps' numbers, by host and program (the first order),
    // no checkout or invalidation since the previous refresh.
    let rows = browser.wait_for("the apps' rows", WAIT, ROWS, |v| *v == json!(want));
    println!("rows: {rows}");
    let usage = browser.script(
        "return document.querySelector('tr[data-program=checkout] [data-col=usage]').textContent",
        &[],
    );
    assert_eq!(usage, json!("30%"), "3 of 10 checked out");

    // Sorting: checked out, most first; again, least first.
    let by_out = |desc: bool| {
        let mut all: Vec<_> = truth.iter().collect();
        all.sort_by(|a, b| {
            let o = a.1.2.cmp(&b.1.2);
            (if desc { o.reverse() } else { o }).then(a.0.cmp(b.0))
        });
        all.iter()
            .map(|((h, p), _)| format!("{h}/{p}"))
            .collect::<Vec<_>>()
    };
    browser.click(&browser.find("th[data-key=checked_out] button"));
    assert_eq!(programs_of(&browser.script(ROWS, &[])), by_out(true));
    assert_eq!(
        browser.script(
            "return document.querySelector('th[data-key=checked_out]').getAttribute('aria-sort')",
            &[]
        ),
        json!("descending")
    );
    browser.click(&browser.find("th[data-key=checked_out] button"));
    assert_eq!(programs_of(&browser.script(ROWS, &[])), by_out(false));
    assert_eq!(
        browser.script("return [...document.querySelectorAll('th[aria-sort]')].map(t => t.dataset.key + ' ' + t.getAttribute('aria-sort'))", &[]),
        json!(["checked_out ascending"])
    );
    // Back to hosts, with the keyboard: Tab to the Host button, Enter.
    browser.script(
        "document.querySelector('th[data-key=host] button').focus()",
        &[],
    );
    browser.keys(&["\u{E007}"]);
    assert_eq!(
        programs_of(&browser.script(ROWS, &[])),
        programs_of(&json!(want))
    );

    // The filter: a part of a host or of a program; Escape clears it.
    let filter = browser.find("#filter");
    browser.type_into(&filter, "web2");
    assert_eq!(
        programs_of(&browser.script(ROWS, &[])),
        ["web2/alpha", "web2-beta/beta"]
    );
    browser.script("document.getElementById('filter').value = ''", &[]);
    browser.type_into(&filter, "FORK");
    assert_eq!(programs_of(&browser.script(ROWS, &[])), ["web3/forkapp"]);
    assert_eq!(
        browser.script("return document.getElementById('count').textContent", &[]),
        json!("1 of 4 shown")
    );
    browser.keys(&["\u{E00C}"]);
    assert_eq!(
        programs_of(&browser.script(ROWS, &[])),
        programs_of(&json!(want))
    );

    // Per host: one group (tbody) a host, its row first with the sums.
    browser.click(&browser.find("#group"));
    let groups = browser.script(
        "return [...document.querySelectorAll('#programs tbody')].map(b => { const h = b.querySelector('tr.host-row'); \
         return [h.dataset.host, h.querySelector('[data-col=checked_out]').textContent, b.rows.length - 1]; })",
        &[],
    );
    let mut hosts: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for ((h, _), n) in &truth {
        let e = hosts.entry(h).or_default();
        e.0 += n.2;
        e.1 += 1;
    }
    let want_groups: Vec<Json> = hosts
        .iter()
        .map(|(h, (out, n))| json!([h, out.to_string(), n]))
        .collect();
    assert_eq!(groups, json!(want_groups));
    browser.click(&browser.find("#group"));

    // The sparkline of each row: the history the exporter keeps, up to now.
    let spark = browser.script(
        "return document.querySelector('tr[data-program=checkout] [data-col=trend] svg').getAttribute('aria-label')",
        &[],
    );
    let spark = spark.as_str().unwrap_or_default().to_owned();
    assert!(spark.ends_with("to 3"), "{spark}");

    // The exporter's health: processes live / tracked, nothing rejected or
    // dropped, datagrams arriving.
    let live: u64 = truth.values().map(|n| n.0).sum();
    let health = browser.wait_for(
        "the health header",
        WAIT,
        "return ['h-processes', 'h-rejected', 'h-drops', 'h-programs', 'h-rate'].map(id => document.getElementById(id).textContent)",
        |v| v[0] == json!(format!("{live} / {live}")) && v[4].as_str().and_then(|r| r.parse::<f64>().ok()).is_some_and(|r| r > 0.0),
    );
    assert_eq!(
        health.as_array().map(|h| h[1..4].to_vec()),
        Some(vec![json!("none"), json!("0"), json!("4")]),
        "{health}"
    );

    // The processes of the forked program: its parent's and workers' pids.
    browser.click(&browser.find("a[data-key='web3\u{0}forkapp']"));
    let mut pids: Vec<u64> = r_fork
        .live
        .iter()
        .filter(|v| v.reports())
        .map(|v| u64::from(v.pid))
        .collect();
    pids.sort();
    assert_eq!(pids.len(), 4, "a parent and three workers");
    let listed = browser.wait_for(
        "the process view",
        WAIT,
        "return [...document.querySelectorAll('#process-table tbody tr[data-pid]')].map(r => Number(r.dataset.pid)).sort((a, b) => a - b)",
        |v| *v == json!(pids),
    );
    println!("forkapp pids: {listed}");
    assert_eq!(
        browser.script("return [location.hash, document.getElementById('fleet').hidden, document.getElementById('processes-title').textContent]", &[]),
        json!(["#processes=web3/forkapp", true, "Processes of web3/forkapp"])
    );
    browser.keys(&["\u{E00C}"]);
    assert_eq!(
        browser.script("return [location.hash, document.getElementById('fleet').hidden, document.getElementById('processes').hidden]", &[]),
        json!(["", false, true])
    );

    // The checkout app stops: its row goes late (red) after 1.5 intervals.
    drop(checkout);
    let late = browser.wait_for(
        "the stopped app's row late",
        WAIT,
        "const tr = document.querySelector('tr[data-program=checkout]'); \
         return [tr.className, tr.querySelector('[data-col=state]').textContent, getComputedStyle(tr.querySelector('[data-col=state]')).color]",
        |v| v[0] == json!("late"),
    );
    assert_eq!(late, json!(["late", "late", "rgb(179, 38, 30)"]));
    let docs = common::repo().join("docs");
    std::fs::write(docs.join("live-page-1280x800.png"), browser.screenshot())
        .expect("save the screenshot");
    browser.viewport(390, 844);
    std::fs::write(docs.join("live-page-390x844.png"), browser.screenshot())
        .expect("save the screenshot");
    // On a phone the page does not scroll sideways; the table does.
    assert_eq!(
        browser.script("return [document.documentElement.scrollWidth, getComputedStyle(document.querySelector('td.host')).display]", &[]),
        json!([390, "none"])
    );
    browser.viewport(1280, 800);
    // The other rows stay live.
    let others: Vec<Json> = want
        .iter()
        .filter(|r| r["program"] != "checkout")
        .cloned()
        .collect();
    let rows = browser.script(ROWS, &[]);
    assert_eq!(rows.as_array().map(|r| r[1..].to_vec()), Some(others));

    // Then dead (grey) once its process expired (15 s after its last report).
    let dead = browser.wait_for(
        "the stopped app's row dead",
        WAIT,
        "const tr = document.querySelector('tr[data-program=checkout]'); \
         return [tr.className, tr.querySelector('[data-col=processes]').textContent, getComputedStyle(tr.querySelector('[data-col=state]')).color]",
        |v| v[0] == json!("dead"),
    );
    assert_eq!(dead, json!(["dead", "0", "rgb(107, 114, 128)"]));

    // The exporter stops: the page says so, and keeps the last figures.
    drop(exporter);
    let banner = browser.wait_for(
        "the banner",
        WAIT,
        "const b = document.getElementById('banner'); return [b.hidden, b.textContent, document.querySelectorAll('#programs tbody tr[data-program]').length]",
        |v| v[0] == json!(false),
    );
    let text = banner[1].as_str().unwrap_or_default();
    assert!(
        text.starts_with("The exporter is not answering since "),
        "{text}"
    );
    assert!(text.contains("The figures below are from "), "{text}");
    assert_eq!(banner[2], json!(4));
    drop((programs, fork));
}

#[test]
fn the_live_page_works_behind_tls_and_basic_auth_with_another_telemetry_path() {
    let pki = common::pki::Pki::new("browser-tls");
    pki.write("server", "127.0.0.1");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let web = pki.path("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    Content-Security-Policy: default-src 'self'\n\
             basic_auth_users:\n  viewer: '{hash}'\n"
        ),
    )
    .expect("write the web config");
    let web = web.display().to_string();
    let exporter = common::start(&[
        "--web.config.file",
        &web,
        "--web.telemetry-path",
        "/pool-metrics",
    ]);
    common::send_all(exporter.udp, &common::datagrams("01_sqla_idle"));

    // The test's own CA is not the browser's: it takes any certificate.
    let browser = Browser::start_with("browser-tls", 1280, 800, &["--ignore-certificate-errors"]);
    // The credentials in the address: the browser sends them again with
    // every request of the page (relative URLs, the same origin), and the
    // page's own script and style pass a strict Content-Security-Policy.
    browser.goto(&format!("https://viewer:s3cret@{}/live", exporter.http));
    let shown = browser.wait_for(
        "the capture's row over TLS",
        WAIT,
        "return [document.querySelectorAll('#programs tbody tr[data-program]').length, document.getElementById('banner').hidden, document.getElementById('h-programs').textContent, document.getElementById('banner').textContent]",
        |v| v[0] == json!(1),
    );
    assert_eq!(shown, json!([1, true, "1", ""]));
    let metrics = browser.script("const a = document.querySelector('nav a[href=\"./pool-metrics\"]'); return [a.host, a.pathname]", &[]);
    assert_eq!(metrics, json!([exporter.http.to_string(), "/pool-metrics"]));
    // The page's requests carry the credentials; the same request without
    // them is refused.
    let statuses = browser.script_async(
        "const done = arguments[arguments.length - 1]; \
         const at = p => location.origin + '/' + p; \
         Promise.all([fetch(at('api/v1/status')), fetch(at('api/v1/status'), {credentials: 'omit'}), fetch(at('pool-metrics'))]) \
           .then(rs => done(rs.map(r => r.status)), e => done(String(e)))",
        &[],
    );
    assert_eq!(statuses, json!([200, 401, 200]));
}

#[test]
fn page_weight_at_a_thousand_host_programs() {
    let exporter = common::start(&[]);
    let fleet = Fleet::new(100, 10, 1);
    assert_eq!(fleet.pairs(), 1000);
    common::load::send_drained(exporter.udp, fleet.all(), 64, WAIT);
    common::poll(WAIT, "1,000 host/programs", || {
        let r = common::get(exporter.http, "/api/v1/status", &[]);
        let doc: Json = serde_json::from_slice(&r.body).ok()?;
        (doc["programs"] == json!(1000)).then_some(())
    });
    let browser = Browser::start("browser-weight", 1280, 800);
    browser.goto(&format!("http://{}/live", exporter.http));
    // The first load and at least four refreshes, as the browser counts
    // them: bytes over the wire (headers and the gzipped body), the body as
    // sent, the body unpacked.
    let entries = browser.wait_for(
        "five loads of the pools document",
        WAIT,
        "const e = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')] \
           .map(e => [new URL(e.name).pathname + new URL(e.name).search, e.transferSize, e.encodedBodySize, e.decodedBodySize]); \
         return e.filter(x => x[0].startsWith('/api/v1/pools')).length >= 5 ? e : null",
        |v| !v.is_null(),
    );
    let rows = browser.script(
        "return document.querySelectorAll('#programs tbody tr[data-program]').length",
        &[],
    );
    assert_eq!(rows, json!(1000));
    let entries: Vec<(String, u64, u64, u64)> = serde_json::from_value(entries).expect("entries");
    let first = |path: &str| {
        entries
            .iter()
            .find(|e| e.0 == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {path}: {entries:?}"))
    };
    let pools: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == "/api/v1/pools?history=1")
        .collect();
    let status: Vec<_> = entries.iter().filter(|e| e.0 == "/api/v1/status").collect();
    let load = ["/live", "/live.css", "/live.js"].map(first);
    for (path, wire, sent, body) in &load {
        println!("first load {path}: {wire} bytes over the wire ({sent} sent, {body} unpacked)");
    }
    for (what, all) in [("pools", &pools), ("status", &status)] {
        for (path, wire, sent, body) in all.iter() {
            println!("{what} {path}: {wire} bytes over the wire ({sent} sent, {body} unpacked)");
        }
    }
    let first_load: u64 = load.iter().map(|e| e.1).sum::<u64>() + pools[0].1 + status[0].1;
    let refresh: Vec<u64> = pools[1..]
        .iter()
        .zip(&status[1..])
        .map(|(p, s)| p.1 + s.1)
        .collect();
    println!(
        "page weight at 1,000 host/programs: first load {first_load} bytes, each refresh {refresh:?} bytes"
    );
    // gzip, as the browser asked: the document shrinks at least 5 times.
    for p in &pools {
        assert!(p.2 * 5 < p.3, "{p:?}");
    }
}
