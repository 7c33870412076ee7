//! Restarts of the exporter under a fleet, scraped through the restart by a
//! real Prometheus: the program of the operator's report, one long-lived
//! process (100,000 lifetime checkouts, then +10 per report) and one that
//! had exited (50,000). The counters Prometheus computes over the restart
//! (`increase()`, which takes a drop as a reset) must be the clients' true
//! activity: exactly, across a graceful restart with `--storage.path`; after
//! a SIGKILL or without `--storage.path`, short of at most what was reported
//! since the last scrape before the stop, while it was down, and in the one
//! report it takes as its baseline — never a burst.

use crate::common::binary::Binary;
use crate::common::daemon::Daemon;
use crate::common::{self, TempDir};
use crate::report;
use nix::sys::signal::Signal;
use serde_json::Value as Json;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
/// The client's report interval in these tests (the real client's default
/// is 2 s; 1 s keeps the test short and Prometheus scrapes as often).
const INTERVAL: Duration = Duration::from_secs(1);
const PER_REPORT: u64 = 10;
const LONG_LIVED: u64 = 100_000;
const EXITED: u64 = 50_000;
const TIMEOUT: Duration = Duration::from_secs(30);

fn unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What the clients did: the long-lived process's reports, in order.
#[derive(Default)]
struct Sent {
    /// (send time in Unix seconds, its lifetime checkouts).
    reports: Vec<(f64, u64)>,
}

/// Free loopback ports for one exporter's UDP and HTTP listeners, kept
/// across its restart.
fn free_ports() -> (SocketAddr, SocketAddr) {
    let udp = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port");
    let http = TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free TCP port");
    (udp, http)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Restart {
    /// SIGTERM with `--storage.path`.
    Graceful,
    /// SIGKILL with `--storage.path`.
    Crash,
    /// SIGTERM without `--storage.path`.
    Unsaved,
}

/// The reset-aware increase of raw samples, as Prometheus computes it
/// between the first and the last.
fn reset_aware_increase(samples: &[(f64, f64)]) -> f64 {
    samples
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0].1, w[1].1);
            if b >= a { b - a } else { b }
        })
        .sum()
}

struct Measured {
    truth: u64,
    /// From the raw samples, as Prometheus's reset handling does.
    raw: f64,
    /// Prometheus's own `increase()` over the same samples.
    increase: f64,
    /// Long-lived reports sent while no exporter was listening.
    lost_while_down: u64,
    program_down_samples: usize,
}

fn restart_case(kind: Restart) -> Measured {
    let tmp = TempDir::new("faults-restart", &format!("{kind:?}"));
    let storage = tmp.path().join("storage");
    let storage_arg = storage.display().to_string();
    let (udp, http) = free_ports();
    let (udp_s, http_s) = (udp.to_string(), http.to_string());
    let args: Vec<&str> = match kind {
        Restart::Graceful | Restart::Crash => vec!["--storage.path", &storage_arg],
        Restart::Unsaved => vec![],
    };
    let start = || Binary::launch_on(Command::new(BIN), &udp_s, &http_s, &args);
    let mut exporter = start();

    // The fleet, from the exporter's start (so that without storage its
    // first reports fall in the start-up window): reports every INTERVAL,
    // TIME the client's clock (one second per report). Idle, then +10 per
    // report, then idle again.
    let sent = Arc::new(Mutex::new(Sent::default()));
    let phase = Arc::new(Mutex::new(0u8)); // 0 idle, 1 active, 2 idle
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent, phase, stop) = (sent.clone(), phase.clone(), stop.clone());
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the client socket");
            let t0 = unix() as u64;
            let begun = Instant::now();
            let mut checkouts = LONG_LIVED;
            for n in 0..120u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = begun + INTERVAL * n as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if *phase.lock().expect("phase") == 1 {
                    checkouts += PER_REPORT;
                }
                let mut datagrams =
                    report("app", "4242:0a0b0c", t0 + n, 1, 1.0, checkouts).to_vec();
                if n < 3 {
                    // The process that exits after its third report.
                    datagrams.extend(report("app", "4243:0d0e0f", t0 + n, 1, 1.0, EXITED));
                }
                sent.lock().expect("sent").reports.push((unix(), checkouts));
                for d in &datagrams {
                    // Nobody listens while the exporter restarts: lost.
                    let _ = socket.send_to(d, udp);
                }
            }
        })
    };
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: sqlalchemy\n    static_configs:\n      - targets: [\"{http}\"]\n"
        ),
    )
    .expect("write the Prometheus config");
    let prometheus = Daemon::prometheus(tmp.path(), &config);

    let query = |q: &str| -> Json {
        let j = prometheus.api("query", &[("query", q)]);
        assert_eq!(j["status"], "success", "{q}: {j}");
        j["data"]["result"].clone()
    };
    let samples = |q: &str| -> Vec<(f64, f64)> {
        let r = query(q);
        r.as_array()
            .and_then(|a| a.first())
            .and_then(|s| s["values"].as_array())
            .map(|v| {
                v.iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let series = r#"sqlalchemy_checkouts_total{job="sqlalchemy",program="app"}"#;
    // Idle until Prometheus has scraped the same value twice after both
    // processes reported: their lifetime totals (with storage, a first
    // start) or their baseline (without).
    let idle = match kind {
        Restart::Graceful | Restart::Crash => (LONG_LIVED + EXITED) as f64,
        Restart::Unsaved => 0.0,
    };
    common::poll(TIMEOUT, "two idle samples of both processes", || {
        let s = samples(&format!("{series}[1m]"));
        (s.iter().filter(|(_, v)| *v == idle).count() >= 2).then_some(())
    });
    let active_from = unix();
    *phase.lock().expect("phase") = 1;
    // A few scrapes of activity, then the restart.
    std::thread::sleep(INTERVAL * 4);
    let down_at = unix();
    match kind {
        Restart::Graceful | Restart::Unsaved => {
            exporter.signal(Signal::SIGTERM);
            let status = exporter.wait_exit(Duration::from_secs(10));
            assert!(status.success(), "{status}");
        }
        Restart::Crash => {
            exporter.signal(Signal::SIGKILL);
            exporter.wait_exit(Duration::from_secs(10));
        }
    }
    exporter = start();
    let up_at = unix();
    std::thread::sleep(INTERVAL * 4);
    *phase.lock().expect("phase") = 2;
    let idle_from = unix();
    let final_total = sent.lock().expect("sent").reports.last().map_or(0, |r| r.1);
    // Idle again until Prometheus has scraped what the last active report
    // made of the counter, twice.
    let end = common::poll(TIMEOUT, "two samples after the activity ended", || {
        let s = samples(&format!("{series}[2m]"));
        let after: Vec<_> = s.iter().filter(|(t, _)| *t > idle_from + 1.5).collect();
        (after.len() >= 2).then(|| after[after.len() - 1].0)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();

    let all = samples(&format!("{series}[3m]"));
    let first = all
        .iter()
        .rposition(|(t, _)| *t < active_from)
        .expect("a sample before the activity");
    let window: Vec<(f64, f64)> = all[first..]
        .iter()
        .copied()
        .filter(|(t, _)| *t <= end)
        .collect();
    let start_t = window[0].0;
    let raw = reset_aware_increase(&window);
    let range_ms = ((end - start_t) * 1000.0).round() as u64;
    let inc = query(&format!("increase({series}[{range_ms}ms] @ {end:.3})"));
    let increase = inc[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let reports = sent.lock().expect("sent").reports.clone();
    let truth = final_total - LONG_LIVED;
    let lost_while_down = reports
        .iter()
        .filter(|(t, c)| *t > down_at && *t < up_at && *c > LONG_LIVED)
        .count() as u64;
    // Did the program ever look down to Prometheus (no live process)?
    let processes = samples(r#"sqlalchemy_processes{job="sqlalchemy",program="app"}[3m]"#);
    let program_down_samples = processes.iter().filter(|(_, v)| *v == 0.0).count();
    eprintln!(
        "{kind:?}: true activity {truth} checkouts; over the restart Prometheus counts {raw} \
         (raw samples), increase() {increase:.1}; {lost_while_down} reports sent while down; \
         samples {window:?}"
    );
    drop(exporter);
    drop(prometheus);
    Measured {
        truth,
        raw,
        increase,
        lost_while_down,
        program_down_samples,
    }
}

/// The graceful restart Alertmanager-style: the counters continue exactly.
#[test]
fn a_sigterm_restart_with_storage_counts_exactly_the_true_activity() {
    let m = restart_case(Restart::Graceful);
    assert_eq!(m.raw, m.truth as f64);
    assert!(
        (m.increase - m.truth as f64).abs() < 1.0,
        "increase() {}",
        m.increase
    );
    assert_eq!(m.program_down_samples, 0, "the program looked down");
}

/// A baseline start: no burst; what is lost is the activity reported after
/// the last scrape before the stop (one report here), while down, and in
/// the baseline report.
fn assert_baseline(m: &Measured) {
    let lost = PER_REPORT * (m.lost_while_down + 2);
    assert!(
        m.raw <= m.truth as f64 && m.raw >= (m.truth - lost) as f64,
        "{} outside [{}, {}]",
        m.raw,
        m.truth - lost,
        m.truth
    );
    assert!(
        (m.increase - m.raw).abs() < 1.0,
        "increase() {}",
        m.increase
    );
}

/// After a crash, the start-up baseline.
#[test]
fn a_sigkill_restart_loses_at_most_the_reports_it_could_not_see() {
    assert_baseline(&restart_case(Restart::Crash));
}

/// Without --storage.path, a graceful restart is a baseline too.
#[test]
fn a_restart_without_storage_takes_a_baseline_instead_of_a_burst() {
    assert_baseline(&restart_case(Restart::Unsaved));
}

/// A graceful restart under a large fleet that keeps sending: while the new
/// exporter reads and restores the saved state, the fleet's next cycle
/// arrives (in the restore's half second, more than the kernel's 8 MiB
/// socket buffer holds). The receive threads hold it meanwhile and apply it once the
/// state is in: nothing dropped, every report applied over the restored
/// counters.
#[test]
fn datagrams_arriving_while_the_saved_state_is_restored_are_held_not_dropped() {
    use crate::common::load::{self, Fleet};
    const P: &str = "sqlalchemy_collectd_exporter_";
    let tmp = TempDir::new("faults-restore-storm", "storage");
    let storage = tmp.path().display().to_string();
    let (udp, http) = free_ports();
    let (udp_s, http_s) = (udp.to_string(), http.to_string());
    let args = ["--storage.path", storage.as_str()];
    let start = || Binary::launch_on(Command::new(BIN), &udp_s, &http_s, &args);
    let own = |s: &std::collections::BTreeMap<String, f64>, name: &str| {
        s.get(&format!("{P}{name}")).copied().unwrap_or(-1.0)
    };
    let listener = format!("{{listener=\"{udp}\"}}");

    // 50,000 processes report once; the exporter saves them at SIGTERM.
    let mut fleet = Fleet::new(50, 20, 50);
    let processes = fleet.slots() as f64;
    let mut first = start();
    load::send_drained(first.udp, fleet.all(), 1000, TIMEOUT);
    common::scrape_until(first.http, "the fleet", TIMEOUT, |s| {
        own(s, "processes_tracked") == processes
    });
    first.signal(Signal::SIGTERM);
    assert!(first.wait_exit(TIMEOUT).success());
    drop(first);

    // The next cycle, sent as soon as the new exporter's socket is bound.
    for slot in 0..fleet.slots() {
        fleet.set_time(slot, 1_000_002);
    }
    let datagrams = fleet.all().to_vec();
    let sent = datagrams.len() as f64;
    let burst = std::thread::spawn(move || {
        common::poll(TIMEOUT, "the new exporter's socket", || {
            (load::sockets(udp.port()) > 0).then_some(())
        });
        // 50,000 a second, which the receive thread keeps up with even in a
        // debug build on a busy machine: what is measured is the window of
        // the restore (half a second here), not the reading speed.
        let mut sender = load::Sender::new(udp);
        let begun = Instant::now();
        for (i, chunk) in datagrams.chunks(1000).enumerate() {
            let due = begun + Duration::from_millis(20 * i as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            sender.send(chunk);
        }
        sender.failed
    });
    let second = start();
    assert_eq!(burst.join().expect("the burst"), 0, "send errors");
    let received = format!("{P}datagrams_received_total{listener}");
    let s = common::scrape_until(second.http, "the burst", TIMEOUT, |s| {
        s.get(&received) == Some(&sent) && own(s, "value_lists_accepted_total") == sent
    });
    assert_eq!(s[&format!("{P}kernel_receive_drops_total{listener}")], 0.0);
    assert_eq!(own(&s, "processes_tracked"), processes);
    assert_eq!(own(&s, "processes"), processes);
    // The restored totals, continued by reports that repeat them: counted once.
    assert_eq!(
        common::sum(&s, "sqlalchemy_checkouts_total{"),
        processes * load::Fleet::TOTALS[0] as f64
    );
    assert_eq!(
        common::sum(&s, "sqlalchemy_connections{"),
        processes * load::Fleet::POOL[4]
    );
    // The burst came while the state was restored, not after.
    let log = second.log.text();
    assert!(
        log.contains("applying the datagrams held while the saved state was restored"),
        "nothing was held:\n{log}"
    );
}
