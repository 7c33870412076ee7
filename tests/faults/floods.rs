//! One sender flooding new process tokens (a runaway fork loop, a scanner,
//! a fuzzer) past `--limits.max-processes`, against the built binary: from
//! 127.0.0.2, tens of thousands of new tokens a second for longer than it
//! takes to fill the limit many times over, while a fleet of 300 genuine new
//! processes reports at the real cadence from 127.0.0.1. All 300 must be
//! exported exactly; the flood makes room out of its own entries.

use crate::common::binary::Binary;
use crate::common::{self, TempDir, load, samples};
use crate::report;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const P: &str = "sqlalchemy_collectd_exporter_";
const LIMIT: usize = 20_000;
const LEGIT: usize = 300;
/// The flood's pace: well within what the exporter reads, so that what is
/// measured is admission, not kernel drops.
const FLOOD_PER_SEC: u64 = 40_000;
/// Bounds on the flood.
const FLOOD_FOR: Duration = Duration::from_secs(20);
const CYCLES: u32 = 4;

#[test]
fn a_token_flood_from_one_source_does_not_keep_another_sources_processes_out() {
    // A first start (empty storage): every process counts from zero.
    let storage = TempDir::new("faults-flood", "storage");
    let limit = LIMIT.to_string();
    let e = Binary::start(
        BIN,
        &[
            "--limits.max-processes",
            &limit,
            "--storage.path",
            &storage.path().display().to_string(),
            // Two receive threads, whatever the machine: the flood comes
            // from 8 ports, so through both sockets (but for a chance in
            // 128), and room made for a new genuine process on one thread
            // must not be taken by the flood on the other first.
            "--collectd.receive-threads",
            "2",
        ],
    );
    let (udp, http) = (e.udp, e.http);
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, flooded) = (stop.clone(), flooded.clone());
        std::thread::spawn(move || {
            let sockets: Vec<UdpSocket> = (0..8)
                .map(|_| UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2"))
                .collect();
            let begun = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && begun.elapsed() < FLOOD_FOR {
                // A thousand new tokens, then wait for the pace.
                for _ in 0..1000 {
                    let token = format!("{}:{:06x}", 100_000 + n / 0xff_ffff, n % 0xff_ffff);
                    let [pool, _] = report("runaway", &token, 1_000_000, 2, 1.0, 0);
                    let _ = sockets[(n % 8) as usize].send_to(&pool, udp);
                    n += 1;
                }
                let due = begun + Duration::from_secs_f64(n as f64 / FLOOD_PER_SEC as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            flooded.store(n, Ordering::Relaxed);
        })
    };
    // The flood fills the limit first.
    common::poll(
        Duration::from_secs(20),
        "the flood to fill the process limit",
        || {
            let s = samples(&common::scrape(http));
            (s[&format!("{P}processes_tracked")] >= LIMIT as f64).then_some(())
        },
    );

    // The genuine fleet: new processes, every one reporting every 2 s.
    let mut fleet = load::Fleet::new(1, 1, LEGIT);
    let mut sender = load::Sender::new(udp);
    let t0 = 2_000_000;
    let begun = Instant::now();
    for cycle in 0..CYCLES {
        std::thread::sleep(
            (begun + load::CADENCE * cycle).saturating_duration_since(Instant::now()),
        );
        for slot in 0..fleet.slots() {
            fleet.set_time(slot, t0 + 2 * u64::from(cycle));
        }
        sender.send(fleet.all());
    }
    common::poll(
        Duration::from_secs(10),
        "every genuine process exported",
        || {
            let s = samples(&common::scrape(http));
            (common::sqla(&s, "sqlalchemy_processes", "host0", "program0") == Some(LEGIT as f64))
                .then_some(())
        },
    );
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    let flooded = flooded.load(Ordering::Relaxed);
    // Until the exporter has judged everything that was sent.
    let fleet_lists = (2 * LEGIT as u32 * CYCLES) as f64;
    let s = common::poll(Duration::from_secs(10), "every value list judged", || {
        let s = samples(&common::scrape(http));
        let judged = s[&format!("{P}value_lists_received_total")];
        (judged >= flooded as f64 + fleet_lists).then_some(s)
    });

    // Exactly the fleet: each process's pool [1, 2, 3, 0, 5] and totals
    // [100, 0, 5, 0] (load::Fleet), counted once.
    let g = |name: &str| common::sqla(&s, name, "host0", "program0");
    let n = LEGIT as f64;
    assert_eq!(g("sqlalchemy_connections"), Some(5.0 * n));
    assert_eq!(g("sqlalchemy_connections_checked_out"), Some(2.0 * n));
    assert_eq!(g("sqlalchemy_checkouts_total"), Some(100.0 * n));
    assert_eq!(g("sqlalchemy_connects_total"), Some(5.0 * n));
    let evicted = s[&format!("{P}processes_evicted_total")];
    let tracked = s[&format!("{P}processes_tracked")];
    let over_limit = s[&format!("{P}value_lists_rejected_total{{reason=\"over_limit\"}}")];
    eprintln!(
        "flood: {flooded} new tokens from 127.0.0.2 at {FLOOD_PER_SEC}/s against a limit of \
         {LIMIT}; genuine processes exported {n}/{LEGIT}; evicted {evicted}, over_limit \
         {over_limit}, tracked {tracked}"
    );
    assert_eq!(tracked, LIMIT as f64);
    // Every value list is accounted for: the flood's (one each) and the
    // fleet's (two per process per cycle) were accepted or refused at the
    // limit; every process admitted is tracked, evicted, or was dropped
    // dead (forgotten) to make room.
    let accepted = s[&format!("{P}value_lists_accepted_total")];
    assert_eq!(accepted + over_limit, flooded as f64 + fleet_lists);
    let forgotten = s[&format!("{P}processes_forgotten_total")];
    let admitted = (accepted - fleet_lists) + LEGIT as f64;
    assert_eq!(tracked, admitted - evicted - forgotten);
    assert!(evicted > 0.0);
    // Nothing was lost to the kernel: this measured admission.
    let drops = common::sum(&s, &format!("{P}kernel_receive_drops_total{{"));
    assert_eq!(drops, 0.0);
}
