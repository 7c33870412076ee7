//! More datagrams than the exporter can take, for a minute: the release
//! build (what users run, built here by cargo so that it is never stale)
//! under two release load generators sending 10,000 host/program pairs of
//! the real client as fast as they can, every pass a newer TIME. Scrapes of
//! 10,000 pairs must keep answering within a second, resident memory must
//! stay flat, the kernel's drops must be counted, and once the overload
//! ends, one report per process makes the first scrape exact.
//!
//! Its own test binary, so that nothing else runs beside it on two cores.

mod common;

use common::binary::Binary;
use common::{TempDir, load, samples};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const P: &str = "sqlalchemy_collectd_exporter_";
/// Each load generator's fleet: 50 hosts × 100 programs, one process each
/// (10,000 host/program pairs in all).
const HOSTS: usize = 50;
const PROGRAMS: usize = 100;
const SENDERS: usize = 2;
const OVERLOAD: Duration = Duration::from_secs(60);
/// A scrape must answer within a scrape timeout.
const SCRAPE_WITHIN: Duration = Duration::from_secs(1);
/// Resident memory of 10,000 processes with everything around them.
const RSS_LIMIT: u64 = 256 << 20;
/// load::Fleet's totals: checkouts, connects; its pool: connections.
const CHECKOUTS: u64 = 100;
const CONNECTS: f64 = 5.0;
const CONNECTIONS: f64 = 5.0;
/// After the overload, each process reports once more, with more checkouts
/// and a TIME beyond any the load generators sent in a minute.
const FINAL_CHECKOUTS: u64 = 250;
const FINAL_TIME: u64 = 50_000_000;

/// The release build of the exporter and the load generator.
fn release_build() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "sqlalchemy-collectd-exporter",
            "--example",
            "loadgen",
        ])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(status.success(), "cargo build --release: {status}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    (
        target.join("release/sqlalchemy-collectd-exporter"),
        target.join("release/examples/loadgen"),
    )
}

/// Sets the checkouts of a `sqlalchemy_totals` datagram of load::Fleet: the
/// first of its four DERIVE values, the last 32 bytes, big-endian.
fn set_checkouts(datagram: &mut [u8], checkouts: u64) {
    let at = datagram.len() - 32;
    datagram[at..at + 8].copy_from_slice(&checkouts.to_be_bytes());
}

/// One scrape as Prometheus makes it, gzip asked for, read by an optimised
/// client (curl: the test's own debug build is not what is timed): the
/// status and the bytes that came over the wire.
fn scrape_as_prometheus(http: std::net::SocketAddr) -> (u16, u64) {
    let out = Command::new("curl")
        .args(["-s", "--compressed", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(format!("http://{http}/metrics"))
        .output()
        .expect("curl (scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let status = it.next().unwrap_or(0);
    (u16::try_from(status).unwrap_or(0), it.next().unwrap_or(0))
}

fn own(s: &BTreeMap<String, f64>, name: &str) -> f64 {
    s.get(&format!("{P}{name}"))
        .copied()
        .unwrap_or_else(|| common::sum(s, &format!("{P}{name}{{")))
}

#[test]
fn under_overload_scrapes_answer_memory_stays_flat_and_the_first_scrape_after_is_exact() {
    let (exporter, loadgen) = release_build();
    let storage = TempDir::new("overload", "storage");
    let e = Binary::start(
        exporter.to_str().expect("UTF-8 path"),
        &["--storage.path", &storage.path().display().to_string()],
    );
    let (udp, http, pid) = (e.udp, e.http, e.pid());
    let fleets: Vec<load::Fleet> = (0..SENDERS)
        .map(|i| load::Fleet::from_host(i * HOSTS, HOSTS, PROGRAMS, 1))
        .collect();
    let pairs = (SENDERS * HOSTS * PROGRAMS) as f64;
    // Every process known before the overload.
    for f in &fleets {
        load::send_drained(udp, f.all(), 1000, Duration::from_secs(60));
    }
    common::poll(Duration::from_secs(10), "every process exported", || {
        let s = samples(&common::scrape(http));
        (own(&s, "processes") == pairs
            && common::sum(&s, "sqlalchemy_checkouts_total{") == pairs * CHECKOUTS as f64)
            .then_some(())
    });

    let before = samples(&common::scrape(http));
    let begun = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            Command::new(&loadgen)
                .args(["--target", &udp.to_string()])
                .args(["--first-host", &(i * HOSTS).to_string()])
                .args(["--hosts", &HOSTS.to_string()])
                .args(["--programs", &PROGRAMS.to_string()])
                .args(["--processes", "1", "--rate", "0", "--max", "100000000"])
                .args(["--seconds", &OVERLOAD.as_secs().to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", loadgen.display()))
        })
        .collect();
    // Scrapes, once a second, timed; resident memory beside each.
    let (mut latencies, mut rss) = (Vec::new(), Vec::new());
    while begun.elapsed() < OVERLOAD {
        let t = Instant::now();
        let (status, gzipped) = scrape_as_prometheus(http);
        let took = t.elapsed();
        assert_eq!(status, 200);
        // 10,000 pairs are megabytes of text, hundreds of kilobytes gzipped
        // (an exporter without them: a few kilobytes).
        assert!(gzipped > 100_000, "a scrape of {gzipped} bytes gzipped");
        latencies.push(took);
        rss.push(common::process::rss_bytes(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_secs(1).saturating_sub(took));
    }
    let mut sent = 0u64;
    for s in senders {
        let out = s.wait_with_output().expect("the load generator ends");
        assert!(out.status.success(), "loadgen: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{}", text.trim());
        sent += text
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("loadgen said {text:?}"));
    }
    let elapsed = begun.elapsed().as_secs_f64();
    // Once the socket is read empty, every datagram sent was taken or
    // dropped by the kernel.
    let during = common::poll(Duration::from_secs(10), "the socket read empty", || {
        let s = samples(&common::scrape(http));
        let taken = own(&s, "datagrams_received_total") - own(&before, "datagrams_received_total");
        let drops =
            own(&s, "kernel_receive_drops_total") - own(&before, "kernel_receive_drops_total");
        (taken + drops >= sent as f64).then_some(s)
    });

    // One report per process after the overload, with room to take it.
    let mut last = Vec::new();
    for mut f in fleets {
        for slot in 0..f.slots() {
            f.set_time(slot, FINAL_TIME);
        }
        let mut all = f.all().to_vec();
        for totals in all.iter_mut().skip(1).step_by(2) {
            set_checkouts(totals, FINAL_CHECKOUTS);
        }
        last.extend(all);
    }
    load::send_drained(udp, &last, 1000, Duration::from_secs(60));
    let want = pairs * FINAL_CHECKOUTS as f64;
    let after = common::poll(Duration::from_secs(10), "the final reports taken", || {
        let s = samples(&common::scrape(http));
        (common::sum(&s, "sqlalchemy_checkouts_total{") == want).then_some(s)
    });

    let worst = latencies.iter().max().copied().unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let delta = |name: &str| own(&during, name) - own(&before, name);
    let received = delta("datagrams_received_total");
    let drops = delta("kernel_receive_drops_total");
    let (offered, taken) = (sent as f64 / elapsed, received / elapsed);
    let max_rss = rss.iter().max().copied().unwrap_or(0);
    let min_rss = rss.iter().min().copied().unwrap_or(0);
    eprintln!(
        "overload: {sent} datagrams in {elapsed:.1} s: {offered:.0}/s offered, {taken:.0}/s taken \
         ({:.2}x); {drops} kernel drops counted; {} scrapes of {pairs} pairs, median {median:?}, worst {worst:?}; \
         RSS {}-{} MiB",
        offered / taken,
        latencies.len(),
        min_rss >> 20,
        max_rss >> 20
    );
    assert!(worst < SCRAPE_WITHIN, "a scrape took {worst:?}");
    assert!(
        latencies.len() >= 50,
        "{} scrapes in a minute",
        latencies.len()
    );
    // An overload: more was offered than taken, and what was not taken
    // was counted, by the kernel and by the exporter the same.
    assert!(
        offered > taken,
        "offered {offered:.0}/s, taken {taken:.0}/s"
    );
    assert!(drops > 0.0, "no drops counted");
    assert_eq!(received + drops, sent as f64);
    assert!(max_rss < RSS_LIMIT, "RSS {max_rss}");
    // Memory is flat: the store holds the same processes all along.
    assert_eq!(own(&during, "processes_tracked"), pairs);
    // Exact after the overload: every process live, each counted once.
    assert_eq!(own(&after, "processes"), pairs);
    assert_eq!(own(&after, "processes_tracked"), pairs);
    assert_eq!(
        common::sum(&after, "sqlalchemy_connections{"),
        CONNECTIONS * pairs
    );
    assert_eq!(
        common::sum(&after, "sqlalchemy_connects_total{"),
        CONNECTS * pairs
    );
    assert_eq!(common::sum(&after, "sqlalchemy_checkouts_total{"), want);
}
