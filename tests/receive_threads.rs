//! Receive threads (`--collectd.receive-threads`): a socket per thread on
//! the listener's port (SO_REUSEPORT), the kernel spreading senders over
//! them by source port, and a sharded store whose scrape is exactly what
//! the fleet holds, however many threads took its datagrams.

mod common;

use common::load::{self, Fleet};
use common::{samples, scrape_until, sqla};
use std::time::Duration;

const HOSTS: usize = 20;
const PROGRAMS: usize = 5;
const PER_PAIR: usize = 10;
/// Source ports the fleet sends from: each process from one of them, as
/// each real process sends from a socket of its own.
const PORTS: usize = 64;

/// Sends `fleet` from [`PORTS`] source ports; returns the datagrams sent.
fn send(fleet: &Fleet, to: std::net::SocketAddr) -> u64 {
    let mut senders: Vec<load::Sender> = (0..PORTS).map(|_| load::Sender::new(to)).collect();
    for slot in 0..fleet.slots() {
        senders[slot % PORTS].send(&fleet.datagrams(slot));
    }
    senders.iter().map(|s| s.sent).sum()
}

/// The whole fleet, exactly, on one scrape: every pair's sums and the
/// listener's counts.
fn assert_exact(threads: usize) {
    let e = common::start(&["--collectd.receive-threads", &threads.to_string()]);
    assert_eq!(load::sockets(e.udp.port()), threads, "sockets on {}", e.udp);
    let fleet = Fleet::new(HOSTS, PROGRAMS, PER_PAIR);
    let sent = send(&fleet, e.udp);
    assert_eq!(sent, 2 * fleet.slots() as u64);
    let processes = fleet.slots() as f64;
    // Every socket's datagrams are in only when every thread read its own
    // socket: with 64 source ports each socket has some of them. (A scrape
    // reads the counters before the store, so the counters are waited for.)
    let listener = format!("{{listener=\"{}\"}}", e.udp);
    let received = format!("sqlalchemy_collectd_exporter_datagrams_received_total{listener}");
    let s = scrape_until(e.http, "the whole fleet", Duration::from_secs(20), |s| {
        s.get("sqlalchemy_collectd_exporter_value_lists_accepted_total") == Some(&(sent as f64))
            && s.get(&received) == Some(&(sent as f64))
    });
    assert_eq!(
        s.get("sqlalchemy_collectd_exporter_processes_tracked"),
        Some(&processes)
    );
    let per_pair = PER_PAIR as f64;
    for h in 0..HOSTS {
        for p in 0..PROGRAMS {
            let (host, program) = (format!("host{h}"), format!("program{p}"));
            let got = |name| sqla(&s, name, &host, &program);
            assert_eq!(
                got("sqlalchemy_processes"),
                Some(per_pair),
                "{host}/{program}"
            );
            assert_eq!(
                got("sqlalchemy_connections_checked_out"),
                Some(per_pair * Fleet::POOL[1]),
                "{host}/{program}"
            );
            assert_eq!(
                got("sqlalchemy_connections"),
                Some(per_pair * Fleet::POOL[4]),
                "{host}/{program}"
            );
            assert_eq!(
                got("sqlalchemy_checkouts_total"),
                Some(per_pair * Fleet::TOTALS[0] as f64),
                "{host}/{program}"
            );
        }
    }
    // One listener, whatever its sockets: its counts are theirs summed.
    let own = |name: &str| {
        s.get(&format!("sqlalchemy_collectd_exporter_{name}{listener}"))
            .copied()
    };
    assert_eq!(own("kernel_receive_drops_total"), Some(0.0));
    assert_eq!(
        s.get("sqlalchemy_collectd_exporter_value_lists_received_total"),
        Some(&(sent as f64))
    );
    assert_eq!(
        s.get("sqlalchemy_collectd_exporter_programs"),
        Some(&((HOSTS * PROGRAMS) as f64))
    );
    let listeners = samples(&common::scrape(e.http))
        .keys()
        .filter(|k| k.starts_with("sqlalchemy_collectd_exporter_datagrams_received_total{"))
        .count();
    assert_eq!(listeners, 1);
}

#[test]
fn one_receive_thread_takes_the_whole_fleet_exactly() {
    assert_exact(1);
}

#[test]
fn two_receive_threads_take_the_whole_fleet_exactly() {
    assert_exact(2);
}

#[test]
fn more_receive_threads_than_cores_take_the_whole_fleet_exactly() {
    assert_exact(5);
}
