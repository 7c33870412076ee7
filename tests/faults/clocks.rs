//! Client clocks that are stepped (an NTP correction, a VM resumed from
//! suspend) and datagrams that are replayed, against the built binary: a
//! process keeps reporting every second in the real client's layout while
//! its TIME jumps. It must stay exported (never `sqlalchemy_processes` 0,
//! which would fire SQLAlchemyProgramDown), its gauges follow within two
//! reports, its counters keep counting, the step is counted for its
//! host/program, and what it sent before the step, replayed after it, is
//! refused as stale without changing a counter.

use crate::common::binary::Binary;
use crate::common::{self, samples};
use crate::report;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const INTERVAL: u64 = 1;
const TOKEN: &str = "5150:a1b2c3";
const P: &str = "sqlalchemy_collectd_exporter_";

struct Client {
    socket: UdpSocket,
    to: SocketAddr,
    http: SocketAddr,
    /// Lifetime checkouts, +10 per report.
    checkouts: u64,
    reports: u64,
    /// The checkouts of its first report.
    first: Option<u64>,
    /// Every report sent, to replay.
    sent: Vec<[Vec<u8>; 2]>,
}

impl Client {
    fn new(e: &Binary) -> Client {
        Client {
            socket: UdpSocket::bind("127.0.0.1:0").expect("bind the client socket"),
            to: e.udp,
            http: e.http,
            checkouts: 1_000,
            reports: 0,
            first: None,
            sent: Vec::new(),
        }
    }

    fn send(&self, datagrams: &[Vec<u8>]) {
        for d in datagrams {
            self.socket
                .send_to(d, self.to)
                .expect("send to the exporter");
        }
    }

    /// One report at client time `time`, a second after the last one on the
    /// exporter's clock; then, within two report intervals, the exporter
    /// shows exactly it: one live process, its checked-out gauge, its
    /// checkouts. Returns the scrape.
    fn report(&mut self, time: u64, paced: &mut Instant) -> BTreeMap<String, f64> {
        std::thread::sleep(paced.saturating_duration_since(Instant::now()));
        *paced += Duration::from_secs(INTERVAL);
        self.checkouts += 10;
        self.reports += 1;
        let checked_out = (self.reports % 4) as f64;
        let r = report("app", TOKEN, time, INTERVAL, checked_out, self.checkouts);
        self.send(&r);
        self.sent.push(r);
        // Started without --storage.path: the first report is the
        // process's baseline.
        let first = self.first.get_or_insert(self.checkouts);
        let want = (1.0, checked_out, (self.checkouts - *first) as f64);
        let deadline = Instant::now() + Duration::from_secs(2 * INTERVAL);
        loop {
            let s = samples(&common::scrape(self.http));
            let g = |name: &str| common::sqla(&s, name, "vm", "app").unwrap_or(f64::NAN);
            let got = (
                g("sqlalchemy_processes"),
                g("sqlalchemy_connections_checked_out"),
                g("sqlalchemy_checkouts_total"),
            );
            if got == want {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "report {} at client time {time}: {got:?}, want {want:?}",
                self.reports
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn steps(s: &BTreeMap<String, f64>) -> f64 {
    common::sqla(s, "sqlalchemy_client_clock_steps_total", "vm", "app").unwrap_or(f64::NAN)
}

fn offset(s: &BTreeMap<String, f64>) -> f64 {
    common::sqla(s, "sqlalchemy_client_clock_offset_seconds", "vm", "app").unwrap_or(f64::NAN)
}

fn rejected(s: &BTreeMap<String, f64>, reason: &str) -> f64 {
    s[&format!("{P}value_lists_rejected_total{{reason=\"{reason}\"}}")]
}

#[test]
fn a_client_clock_stepped_back_ten_minutes_keeps_its_process_exported() {
    let e = Binary::start(BIN, &[]);
    let mut c = Client::new(&e);
    let mut paced = Instant::now();
    let t0 = now_secs();
    for n in 0..3 {
        c.report(t0 + n, &mut paced);
    }
    // NTP steps the host's clock back ten minutes; the process goes on.
    let back = t0 + 3 - 600;
    let s = c.report(back, &mut paced);
    assert_eq!(steps(&s), 1.0);
    // The offset shows the host: its clock is ten minutes behind (give or
    // take the second of TIME's resolution and the delivery).
    assert!((offset(&s) + 600.0).abs() < 2.0, "offset {}", offset(&s));
    for n in 1..4 {
        c.report(back + n, &mut paced);
    }
    // A duplicate of the last report, and a replay of everything sent
    // before the step (TIMEs ten minutes ahead, totals lower): refused,
    // nothing changes.
    let before = samples(&common::scrape(c.http));
    let last = c.sent.last().cloned().expect("a report");
    c.send(&last);
    let replay: Vec<Vec<u8>> = c.sent[..3].iter().flatten().cloned().collect();
    c.send(&replay);
    let s = common::poll(
        Duration::from_secs(5),
        "the duplicate and the replay counted",
        || {
            let s = samples(&common::scrape(c.http));
            (rejected(&s, "out_of_order") >= rejected(&before, "out_of_order") + 2.0
                && rejected(&s, "stale") >= rejected(&before, "stale") + 3.0)
                .then_some(s)
        },
    );
    assert_eq!(
        rejected(&s, "out_of_order"),
        rejected(&before, "out_of_order") + 2.0
    );
    assert_eq!(rejected(&s, "stale"), rejected(&before, "stale") + 3.0);
    for name in [
        "sqlalchemy_checkouts_total",
        "sqlalchemy_connections_checked_out",
        "sqlalchemy_processes",
        "sqlalchemy_client_clock_steps_total",
    ] {
        assert_eq!(
            common::sqla(&s, name, "vm", "app"),
            common::sqla(&before, name, "vm", "app"),
            "{name} changed"
        );
    }
    // The process carries on as before.
    c.report(back + 4, &mut paced);
}

#[test]
fn a_client_clock_stepped_forward_a_day_and_back_keeps_counting() {
    let e = Binary::start(BIN, &[]);
    let mut c = Client::new(&e);
    let mut paced = Instant::now();
    let t0 = now_secs();
    for n in 0..2 {
        c.report(t0 + n, &mut paced);
    }
    let ahead = t0 + 2 + 86_400;
    for n in 0..3 {
        let s = c.report(ahead + n, &mut paced);
        assert_eq!(steps(&s), 0.0);
        assert!((offset(&s) - 86_400.0).abs() < 2.0, "offset {}", offset(&s));
    }
    // The correction: back to the right time.
    let s = c.report(t0 + 5, &mut paced);
    assert_eq!(steps(&s), 1.0);
    assert!(offset(&s).abs() < 2.0, "offset {}", offset(&s));
    for n in 6..9 {
        c.report(t0 + n, &mut paced);
    }
    assert_eq!(
        rejected(&samples(&common::scrape(c.http)), "out_of_order"),
        0.0
    );
}
