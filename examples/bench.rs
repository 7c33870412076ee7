//! The benchmark: one table of ingest, scrape and memory figures for the
//! exporter, each next to a ceiling measured in the same run.
//!
//!     cargo build --release && cargo run --release --example bench [-- --runs 3]
//!
//! * ceiling: datagrams/s a bare `recvmmsg` loop on one core drains from a
//!   pre-filled socket, for the same real-client datagrams;
//! * drain: the exporter (the release binary, a child process) is stopped
//!   with SIGSTOP, its socket pre-filled, then resumed and timed until it has
//!   stored every value list; for 1k, 10k and 100k distinct processes; with
//!   the CPU seconds it spent per million datagrams;
//! * sustained: the highest rate (loader on one core, exporter on the other)
//!   with zero kernel drops over 3 s, found by bisection;
//! * scrape: latency and size of /metrics with 1k, 10k and 100k host/program
//!   pairs;
//! * scrape with 1M generic collectd series (collectd-style datagrams, ~30
//!   value lists each), and resident bytes per generic series;
//! * scrapes back to back while a paced load (half the zero-loss rate) runs:
//!   kernel drops during the scrapes against drops at the same rate idle;
//! * memory: resident bytes per tracked process (100k processes), and RSS
//!   after process churn (10k new tokens/s for longer than the windows, short
//!   `--stale-after`/`--forget-after`) against RSS at rest;
//! * decode: ns per datagram for the real client's datagram and collectd's
//!   27- and 30-value-list datagrams (the inputs of `benches/decode.rs`);
//! * the reference pipeline: collectd 5.12 with sqlalchemy-collectd's server
//!   plugin (python plugin) and write_prometheus, fed the same load at the real
//!   cadence for 1k and 10k processes and a pre-filled socket; datagrams it
//!   processes a second (sent − kernel drops), its loss, and its
//!   write_prometheus scrape with 10k host/program pairs.
//!
//! Every figure is the median (min–max) of `--runs` runs. `--quick` uses
//! smaller sizes and shorter phases (a smoke run, not a measurement).
//! Everything runs on loopback and is bounded in time.

#[path = "../tests/common/mod.rs"]
mod common;

use common::binary::Binary;
use common::load;
use nix::sys::signal::Signal;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value, decode};
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "target/release/sqlalchemy-collectd-exporter";
const BIG_BUFFER: usize = 512 << 20;

/// `processes` real-client processes (H hosts × P programs × N tokens), two
/// datagrams each per cycle, `cycles` cycles with increasing TIME.
fn datagrams(processes: usize, cycles: usize) -> Vec<Vec<u8>> {
    let programs = processes.clamp(1, 100);
    let mut out = Vec::with_capacity(processes * cycles * 2);
    for c in 0..cycles {
        for n in 0..processes {
            let id = |type_: &str| Identity {
                host: format!("host{}", n % 100).as_str().into(),
                plugin: "sqlalchemy".into(),
                plugin_instance: format!("program{}", (n / 100) % programs).as_str().into(),
                type_: type_.into(),
                type_instance: format!("{}:{:06x}", 10_000 + n, n % 0xff_ffff)
                    .as_str()
                    .into(),
            };
            let time = 1_000_000 + 2 * c as u64;
            let pool = [1.0, 2.0, 3.0, 0.0, 5.0].map(Value::Gauge);
            let totals = [100 + c as i64, 0, 5, 0].map(Value::Derive);
            out.push(
                Encoder::new()
                    .client_value_list(&id("sqlalchemy_pool"), time, 2, &pool)
                    .finish()
                    .to_vec(),
            );
            out.push(
                Encoder::new()
                    .client_value_list(&id("sqlalchemy_totals"), time, 2, &totals)
                    .finish()
                    .to_vec(),
            );
        }
    }
    out
}

/// How long a scrape holds the SQLAlchemy store's lock, which is how long
/// ingest waits behind it: the production copy (`Stores::sqla_snapshot`, what
/// `snapshot::Sources::scrape` does under the lock) over `count` host/program
/// pairs (one process each), fed through the production ingest `Sink`; in
/// process, median of 21 in milliseconds. Sorting, capacity and encoding
/// happen after the lock is released.
fn lock_hold(count: usize) -> f64 {
    use sqlalchemy_collectd_exporter::collectd::SecurityLevel;
    use sqlalchemy_collectd_exporter::ingest::{Allow, Batch, Sink};
    use sqlalchemy_collectd_exporter::state::Current;
    use sqlalchemy_collectd_exporter::store::sqlalchemy::Limits;
    use sqlalchemy_collectd_exporter::store::{Freshness, Now, Stores};
    use sqlalchemy_collectd_exporter::telemetry::{Listener, Telemetry};
    use std::sync::Arc;
    let stores = Arc::new(Stores::new(Freshness::default(), Limits::default(), 1000));
    let telemetry = Arc::new(Telemetry::default());
    let sink = Sink::new(
        stores.clone(),
        telemetry.clone(),
        Arc::new(Current::new(None)),
        Allow::default(),
        SecurityLevel::None,
    );
    let from = SocketAddr::from(([127, 0, 0, 1], 25826));
    let listener = Listener::new(from, 0, None);
    let now = Now::wall();
    let datagrams: Vec<bytes::Bytes> = pairs(count).into_iter().map(Into::into).collect();
    let mut batch = Batch::new();
    for d in &datagrams {
        sink.datagram(d, 0..d.len(), from, None, &listener, &mut batch);
        sink.apply_at(&mut batch, now);
    }
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let snapshot = stores.sqla_snapshot(now.at);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(snapshot.programs.len(), count);
            ms
        })
        .collect();
    median(&mut times).0
}

/// Distinct host/program pairs, one process each.
fn pairs(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let id = Identity {
                host: format!("host{}", i / 100).as_str().into(),
                plugin: "sqlalchemy".into(),
                plugin_instance: format!("program{}", i % 100).as_str().into(),
                type_: "sqlalchemy_pool".into(),
                type_instance: format!("{i}:abcdef").as_str().into(),
            };
            let pool = [1.0, 2.0, 3.0, 0.0, 5.0].map(Value::Gauge);
            Encoder::new()
                .client_value_list(&id, 1_000_000, 2, &pool)
                .finish()
                .to_vec()
        })
        .collect()
}

fn big_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &BIG_BUFFER);
    s
}

fn send_all(to: SocketAddr, datagrams: &[Vec<u8>]) {
    // A full socket buffer drops; the ceiling counts what arrived.
    load::Sender::new(to).send(datagrams);
}

/// Iterations/s of a CPU-bound loop (no memory traffic) on `threads`
/// threads at once, all together: what the machine's CPUs give side by side,
/// the ceiling of any speed-up from more threads.
fn spin_rate(threads: usize) -> f64 {
    const ITERATIONS: u64 = 200_000_000;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut x = 0u64;
                for i in 0..ITERATIONS {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                }
                std::hint::black_box(x);
                Instant::now()
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let end = handles
        .into_iter()
        .map(|h| h.join().expect("spin thread"))
        .max()
        .unwrap_or(start);
    (threads as u64 * ITERATIONS) as f64 / end.duration_since(start).as_secs_f64()
}

/// Empties `fd` (non-blocking) with recvmmsg, 64 at a time; returns how
/// many it read.
fn drain_fd(fd: std::os::fd::RawFd) -> usize {
    let mut headers =
        nix::sys::socket::MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(64, None);
    let mut buf = vec![0u8; 64 * 2048];
    let mut got = 0usize;
    loop {
        let mut slots: Vec<[IoSliceMut<'_>; 1]> =
            buf.chunks_mut(2048).map(|c| [IoSliceMut::new(c)]).collect();
        match nix::sys::socket::recvmmsg(
            fd,
            &mut headers,
            slots.iter_mut(),
            nix::sys::socket::MsgFlags::empty(),
            None,
        ) {
            Ok(msgs) => got += msgs.count(),
            Err(_) => return got,
        }
    }
}

/// The machine's own ceiling for the thread rows: datagrams/s that
/// `threads` bare recvmmsg loops, each on its own `SO_REUSEPORT` socket of
/// one port, drain together from sockets pre-filled as
/// [`drain_threads`] fills the exporter's.
fn ceiling_threads(datagrams: &[Vec<u8>], per_cycle: usize, threads: usize) -> f64 {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |addr: SocketAddr| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        let _ =
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &BIG_BUFFER);
        s.bind(&addr.into()).expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        UdpSocket::from(s)
    };
    let first = open("127.0.0.1:0".parse().expect("address"));
    let addr = first.local_addr().expect("addr");
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(open(addr));
    }
    send_by_port(addr, datagrams, per_cycle);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|sock| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let got = drain_fd(sock.as_raw_fd());
                (got, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let (mut got, mut end) = (0, start);
    for h in handles {
        let (n, at) = h.join().expect("drain thread");
        got += n;
        end = end.max(at);
    }
    got as f64 / end.duration_since(start).as_secs_f64()
}

/// Sends `datagrams` to `to` from [`SOURCE_PORTS`] ports, each process's
/// datagrams (two a process, `per_cycle` a cycle) from one port, half of the
/// ports from a thread on each of the first two CPUs (as a fleet's traffic
/// comes in on several: on loopback a datagram's buffer is freed back to
/// the CPU that sent it), and closes them: what they sent is queued on the
/// receiving sockets, and closed they are no longer lines of
/// /proc/net/udp, which a drain polls (reading it with every sender open
/// takes a good part of a core).
fn send_by_port(to: SocketAddr, datagrams: &[Vec<u8>], per_cycle: usize) {
    let mut by_port: Vec<Vec<&Vec<u8>>> = vec![Vec::new(); SOURCE_PORTS];
    for (i, d) in datagrams.iter().enumerate() {
        let process = (i % per_cycle.max(1)) / 2;
        by_port[process % SOURCE_PORTS].push(d);
    }
    let cpus = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(2);
    let per_cpu = SOURCE_PORTS.div_ceil(cpus);
    std::thread::scope(|scope| {
        for (cpu, ports) in by_port.chunks(per_cpu).enumerate() {
            scope.spawn(move || {
                let mut set = nix::sched::CpuSet::new();
                if set.set(cpu).is_ok() {
                    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                }
                for ds in ports {
                    load::Sender::new(to).send(ds);
                }
            });
        }
    });
}

/// Datagrams/s a bare recvmmsg loop drains from a pre-filled socket.
fn ceiling(datagrams: &[Vec<u8>]) -> f64 {
    let sock = big_socket();
    send_all(sock.local_addr().expect("addr"), datagrams);
    let fd = sock.as_raw_fd();
    sock.set_nonblocking(true).expect("nonblocking");
    let mut headers =
        nix::sys::socket::MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(64, None);
    let mut buf = vec![0u8; 64 * 2048];
    let start = Instant::now();
    let mut got = 0usize;
    loop {
        let mut slots: Vec<[IoSliceMut<'_>; 1]> =
            buf.chunks_mut(2048).map(|c| [IoSliceMut::new(c)]).collect();
        match nix::sys::socket::recvmmsg(
            fd,
            &mut headers,
            slots.iter_mut(),
            nix::sys::socket::MsgFlags::empty(),
            None,
        ) {
            Ok(msgs) => got += msgs.count(),
            Err(_) => break,
        }
    }
    got as f64 / start.elapsed().as_secs_f64()
}

/// The release binary, on CPU `cpu` when given (`taskset`), with `extra`
/// flags.
fn exporter(cpu: Option<usize>, extra: &[&str]) -> Binary {
    let command = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string(), BIN]);
            t
        }
        None => Command::new(BIN),
    };
    let mut args = vec!["--log.level", "info"];
    args.extend_from_slice(extra);
    Binary::launch(command, &args)
}

fn get(http: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(http).expect("connect");
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    c.read_to_string(&mut body).expect("response");
    body
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(vec![], |(_, r)| r.split(' ').collect());
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn rss_bytes(pid: u32) -> f64 {
    common::process::rss_bytes(pid).map_or(0.0, |b| b as f64)
}

/// (datagrams/s drained, CPU seconds per million datagrams).
///
/// The end is when the socket's queue is empty, read from /proc/net/udp
/// every millisecond: scraping the exporter to find out would take the CPU
/// the drain is timed on. A scrape afterwards checks that every value list
/// was stored.
fn drain(datagrams: &[Vec<u8>]) -> (f64, f64) {
    let e = exporter(Some(0), &["--collectd.udp-buffer", &BIG_BUFFER.to_string()]);
    let pid = e.pid();
    e.signal(Signal::SIGSTOP);
    send_all(e.udp, datagrams);
    let cpu0 = cpu_secs(pid);
    let start = Instant::now();
    e.signal(Signal::SIGCONT);
    let deadline = start + Duration::from_secs(120);
    while load::rx_queue(e.udp.port()).is_some_and(|q| q > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    let drops = metric(
        &get(e.http),
        "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
    );
    let want = datagrams.len() as f64 - drops;
    let accepted = wait_metric(
        e.http,
        "sqlalchemy_collectd_exporter_value_lists_accepted_total",
        want,
        Duration::from_secs(10),
    );
    count_out_of_order(e.http);
    (accepted / secs, cpu / (accepted / 1e6))
}

/// Source ports the thread rows send from: a fleet's processes each send
/// from a port of their own, and SO_REUSEPORT spreads senders over the
/// receive threads' sockets by address and port.
const SOURCE_PORTS: usize = 512;

/// Datagrams/s the exporter (every CPU, `threads` receive threads) drains
/// from its sockets pre-filled from [`SOURCE_PORTS`] ports, each process's
/// datagrams from one port (`per_cycle` datagrams a cycle, two a process).
fn drain_threads(datagrams: &[Vec<u8>], per_cycle: usize, threads: usize) -> f64 {
    let e = exporter(
        None,
        &[
            "--collectd.udp-buffer",
            &BIG_BUFFER.to_string(),
            "--collectd.receive-threads",
            &threads.to_string(),
        ],
    );
    e.signal(Signal::SIGSTOP);
    send_by_port(e.udp, datagrams, per_cycle);
    let start = Instant::now();
    e.signal(Signal::SIGCONT);
    let deadline = start + Duration::from_secs(120);
    while load::rx_queue(e.udp.port()).is_some_and(|q| q > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let drops = metric(
        &get(e.http),
        "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
    );
    let want = datagrams.len() as f64 - drops;
    let accepted = wait_metric(
        e.http,
        "sqlalchemy_collectd_exporter_value_lists_accepted_total",
        want,
        Duration::from_secs(10),
    );
    count_out_of_order(e.http);
    accepted / secs
}

/// The thread rows: drain with 100k processes from many source ports, one
/// receive thread and two (this machine's cores), each against the bare
/// drain of as many sockets and threads.
fn thread_rows(runs: usize, d: &[Vec<u8>], processes: usize) {
    let mut spins = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (threads, v) in [1, 2].into_iter().zip(spins.iter_mut()) {
            v.push(spin_rate(threads));
        }
    }
    let [one, two] = spins.map(|mut v| median(&mut v).0);
    println!(
        "| ceiling: a CPU-bound loop on 2 threads / on 1 | {:.2}× | what this machine's CPUs give side by side |",
        two / one
    );
    let mut bare = Vec::new();
    for threads in [1, 2] {
        let mut rates = Vec::new();
        for _ in 0..runs {
            rates.push(ceiling_threads(d, 2 * processes, threads));
        }
        bare.push(median(&mut rates.clone()).0);
        let unit = if threads == 1 { "socket" } else { "sockets" };
        row(
            &format!(
                "ceiling: bare recvmmsg drain, {threads} SO_REUSEPORT {unit} and threads, from {SOURCE_PORTS} source ports"
            ),
            "datagrams/s",
            rates,
            None,
        );
    }
    println!(
        "| ceiling: bare drain, 2 sockets / 1 | {:.2}× | this machine's own scaling |",
        bare[1] / bare[0]
    );
    let mut medians = Vec::new();
    for threads in [1, 2] {
        let mut rates = Vec::new();
        for _ in 0..runs {
            rates.push(drain_threads(d, 2 * processes, threads));
        }
        medians.push(median(&mut rates.clone()).0);
        let unit = if threads == 1 { "thread" } else { "threads" };
        row(
            &format!(
                "exporter drain, {processes} processes, {threads} receive {unit}, from {SOURCE_PORTS} source ports (every CPU)"
            ),
            "datagrams/s",
            rates,
            Some(bare[threads - 1]),
        );
    }
    println!(
        "| drain, 2 receive threads / 1 | {:.2}× | target ≥ 1.7×; the CPU-bound loop's 2 / 1 in this run: {:.2}× |",
        medians[1] / medians[0],
        two / one
    );
}

/// Where the client layout keeps TIME (whole seconds): right after HOST.
fn time_range(d: &[u8]) -> Option<std::ops::Range<usize>> {
    let host = usize::from(u16::from_be_bytes([*d.get(2)?, *d.get(3)?]));
    (d.len() >= host + 12).then(|| host + 4..host + 12)
}

/// Real-client datagrams replayed as the clients would go on sending them:
/// each pass over the set moves every TIME on by the span the set covers,
/// so that no process ever sends a TIME it sent before (a repeated TIME is
/// refused as `out_of_order`, which is not what clients make the exporter
/// do). Kept across calls: one replay per exporter.
struct Replay {
    original: Vec<Vec<u8>>,
    /// Seconds between a datagram and its copy in the next pass.
    span: u64,
    passes: u64,
}

impl Replay {
    fn new(datagrams: &[Vec<u8>]) -> Replay {
        let times: Vec<u64> = datagrams
            .iter()
            .filter_map(|d| {
                let r = time_range(d)?;
                Some(u64::from_be_bytes(d[r].try_into().ok()?))
            })
            .collect();
        let (lo, hi) = (
            times.iter().copied().min().unwrap_or(0),
            times.iter().copied().max().unwrap_or(0),
        );
        Replay {
            original: datagrams.to_vec(),
            span: hi - lo + 2,
            passes: 0,
        }
    }

    /// The next pass's datagrams, written over `out`.
    fn next_pass(&mut self, out: &mut [Vec<u8>]) {
        self.passes += 1;
        let shift = self.passes * self.span;
        for (o, d) in self.original.iter().zip(out) {
            if let Some(r) = time_range(o) {
                let t = u64::from_be_bytes(o[r.clone()].try_into().unwrap_or([0; 8]));
                d[r].copy_from_slice(&(t + shift).to_be_bytes());
            }
        }
    }
}

/// Sends `replay`'s datagrams cyclically at `rate`/s for `secs` from the
/// calling thread, up to 64 per `sendmmsg` (the load generator's pacer),
/// every pass with newer TIMEs; returns how many were sent.
fn paced(to: SocketAddr, replay: &mut Replay, rate: u64, secs: u64) -> u64 {
    let mut datagrams = replay.original.clone();
    let (sent, _) = load::paced(
        to,
        &mut datagrams,
        rate,
        secs as f64,
        rate * secs,
        |_, d| replay.next_pass(d),
    );
    sent
}

/// Value lists the exporter at `http` refused as `out_of_order`.
fn out_of_order(http: SocketAddr) -> f64 {
    metric(
        &get(http),
        "sqlalchemy_collectd_exporter_value_lists_rejected_total{reason=\"out_of_order\"}",
    )
}

/// `out_of_order` refusals seen by the drain and sustained measurements
/// (a real client never repeats a TIME: 0 expected).
static REFUSED_OUT_OF_ORDER: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);

fn count_out_of_order(http: SocketAddr) {
    if let Ok(mut n) = REFUSED_OUT_OF_ORDER.lock() {
        *n += out_of_order(http);
    }
}

/// `processes` real-client processes at the real cadence (a pair every 2 s
/// each, so `processes` datagrams a second, TIME the wall clock) for `secs`,
/// exporter on CPU 0, loader on CPU 1: (datagrams/s sent, kernel drops in
/// the first 2 s cycle, when every process is new, kernel drops after it).
fn cadence(processes: usize, secs: f64) -> (f64, f64, f64) {
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &{
        let mut set = nix::sched::CpuSet::new();
        let _ = set.set(1);
        set
    });
    let e = exporter(Some(0), &["--collectd.udp-buffer", "8388608"]);
    let port = e.udp.port();
    let mut fleet = load::Fleet::new(100, 100, processes.div_ceil(10_000));
    let d0 = udp_drops(port);
    let mut after_first: Option<f64> = None;
    let report = load::churn(e.udp, &mut fleet, 0, secs, u64::MAX, |r| {
        // The first cycle has been sent and (a little later) read.
        if after_first.is_none() && r.seconds >= load::CADENCE.as_secs_f64() + 0.5 {
            after_first = Some(udp_drops(port));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let end = udp_drops(port);
    let first = after_first.unwrap_or(end);
    (report.sent as f64 / report.seconds, first - d0, end - first)
}

/// Highest rate with zero kernel drops, exporter on CPU 0, loader on CPU 1,
/// after every one of the `processes` has reported once.
fn sustained(datagrams: &[Vec<u8>], processes: usize, step: u64) -> f64 {
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &{
        let mut set = nix::sched::CpuSet::new();
        let _ = set.set(1);
        set
    });
    let e = exporter(Some(0), &["--collectd.udp-buffer", "8388608"]);
    // Warm up: create every process once.
    send_all(e.udp, &datagrams[..datagrams.len().min(2 * processes)]);
    wait_metric(
        e.http,
        "sqlalchemy_collectd_exporter_processes_tracked",
        processes as f64,
        Duration::from_secs(30),
    );
    let mut replay = Replay::new(datagrams);
    let (mut lo, mut hi) = (50_000u64, 1_000_000u64);
    while hi - lo > step {
        let rate = (lo + hi) / 2;
        let before = metric(
            &get(e.http),
            "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
        );
        let sent = paced(e.udp, &mut replay, rate, 3);
        std::thread::sleep(Duration::from_millis(300));
        let drops = metric(
            &get(e.http),
            "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
        ) - before;
        let achieved = sent as f64 / 3.0;
        if drops == 0.0 && achieved >= rate as f64 * 0.98 {
            lo = rate;
        } else {
            hi = rate;
        }
    }
    count_out_of_order(e.http);
    lo as f64
}

/// (milliseconds, bytes) of a /metrics scrape with `count` host/program pairs.
fn scrape(count: usize) -> (f64, f64) {
    let e = exporter(None, &["--collectd.udp-buffer", &BIG_BUFFER.to_string()]);
    send_all(e.udp, &pairs(count));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&get(e.http), "sqlalchemy_collectd_exporter_programs ") < count as f64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut times = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        bytes = get(e.http).len() as f64;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(&mut times).0, bytes)
}

/// Resident bytes per tracked process, 100k processes.
fn memory(n: usize) -> f64 {
    let e = exporter(None, &["--collectd.udp-buffer", &BIG_BUFFER.to_string()]);
    let pid = e.pid();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes(pid);
    send_all(e.udp, &datagrams(n, 1));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(
        &get(e.http),
        "sqlalchemy_collectd_exporter_processes_tracked",
    ) < n as f64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    (rss_bytes(pid) - before) / n as f64
}

fn median(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn row(name: &str, unit: &str, mut v: Vec<f64>, ceiling: Option<f64>) {
    let (m, lo, hi) = median(&mut v);
    let ratio = ceiling.map_or(String::new(), |c| format!("{:.0}%", 100.0 * m / c));
    println!("| {name} | {m:.0} ({lo:.0}–{hi:.0}) {unit} | {ratio} |");
}

/// Polls the exporter until the sum of `name` reaches `want` (at most
/// `timeout`); returns the last value.
fn wait_metric(http: SocketAddr, name: &str, want: f64, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = metric(&get(http), name);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// With `series` generic collectd value lists (collectd's layout, ~30 per
/// datagram): (scrape ms, scrape bytes, RSS bytes per series).
fn generic(series: usize) -> (f64, f64, f64) {
    let e = exporter(
        None,
        &[
            "--collectd.udp-buffer",
            &BIG_BUFFER.to_string(),
            "--limits.max-series",
            &(2 * series).to_string(),
        ],
    );
    let pid = e.pid();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes(pid);
    // Interval 60 s: the series stay live (3 intervals) for the whole measurement.
    let datagrams = load::collectd_datagrams(series, unix_secs(), 60);
    send_all(e.udp, &datagrams);
    wait_metric(
        e.http,
        "sqlalchemy_collectd_exporter_generic_value_lists ",
        series as f64,
        Duration::from_secs(120),
    );
    let per_series = (rss_bytes(pid) - before) / series as f64;
    let mut times = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..3 {
        let t = Instant::now();
        bytes = get(e.http).len() as f64;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(&mut times).0, bytes, per_series)
}

/// What [`scrapes_under_load`] saw.
struct UnderLoad {
    drops_idle: f64,
    drops_scraping: f64,
    scrapes: usize,
    scrape_ms_max: f64,
    sent_per_sec: f64,
}

/// `rate` datagrams/s for `secs` twice (exporter on CPU 0, loader and
/// scraper on CPU 1) with `pairs_n` host/program pairs present: first idle,
/// then while a client scrapes /metrics back to back.
fn scrapes_under_load(datagrams: &[Vec<u8>], rate: u64, pairs_n: usize, secs: u64) -> UnderLoad {
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &{
        let mut set = nix::sched::CpuSet::new();
        let _ = set.set(1);
        set
    });
    let e = exporter(Some(0), &["--collectd.udp-buffer", "8388608"]);
    send_all(e.udp, &pairs(pairs_n));
    wait_metric(
        e.http,
        "sqlalchemy_collectd_exporter_programs ",
        pairs_n as f64,
        Duration::from_secs(60),
    );
    send_all(e.udp, &datagrams[..datagrams.len().min(20_000)]);
    std::thread::sleep(Duration::from_millis(300));
    let drops = || {
        metric(
            &get(e.http),
            "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
        )
    };
    let d0 = drops();
    let mut replay = Replay::new(datagrams);
    paced(e.udp, &mut replay, rate, secs);
    std::thread::sleep(Duration::from_millis(300));
    let d1 = drops();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (stop, http) = (stop.clone(), e.http);
        std::thread::spawn(move || {
            let mut times = Vec::new();
            // Bounded by the flag and by time.
            let deadline = Instant::now() + Duration::from_secs(secs + 30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let t = Instant::now();
                get(http);
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times
        })
    };
    let sent = paced(e.udp, &mut replay, rate, secs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let times = scraper.join().expect("scraper thread");
    std::thread::sleep(Duration::from_millis(300));
    let d2 = drops();
    UnderLoad {
        drops_idle: d1 - d0,
        drops_scraping: d2 - d1,
        scrapes: times.len(),
        scrape_ms_max: times.iter().copied().fold(0.0, f64::max),
        sent_per_sec: sent as f64 / secs as f64,
    }
}

/// RSS (bytes) and tracked processes at rest (30k processes at the real
/// cadence, no churn) and after 10k new processes a second replaced old ones
/// for longer than the windows (`stale`, `forget` seconds).
fn churn_memory(stale: u64, forget: u64, extra: f64) -> ((f64, f64), (f64, f64)) {
    let e = exporter(
        None,
        &[
            "--collectd.udp-buffer",
            "67108864",
            "--stale-after",
            &format!("{stale}s"),
            "--forget-after",
            &format!("{forget}s"),
        ],
    );
    let pid = e.pid();
    let mut fleet = load::Fleet::new(10, 10, 300);
    let tracked = || {
        metric(
            &get(e.http),
            "sqlalchemy_collectd_exporter_processes_tracked",
        )
    };
    load::churn(e.udp, &mut fleet, 0, 6.0, u64::MAX, |_| {});
    let rest = (rss_bytes(pid), tracked());
    let churn = 10_000;
    let lifetime = fleet.slots() as f64 / churn as f64;
    let secs = lifetime + (stale + forget) as f64 + 1.0 + extra;
    load::churn(e.udp, &mut fleet, churn, secs, u64::MAX, |_| {});
    ((rest.0, rest.1), (rss_bytes(pid), tracked()))
}

/// ns per `decode` of `datagram`, a timed loop of `iterations`.
fn decode_ns(datagram: &bytes::Bytes, lists: usize, iterations: u32) -> f64 {
    let n = decode(datagram).map_or(0, |p| p.value_lists.len());
    assert_eq!(n, lists, "decode of a bench input");
    let start = Instant::now();
    for _ in 0..iterations {
        let p = decode(std::hint::black_box(datagram));
        std::hint::black_box(p.map(|p| p.value_lists.len()).unwrap_or(0));
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// ns per `client_report` + `route_client` of `datagram` (which must take
/// the fast path), in-process.
fn fast_path_ns(datagram: &[u8], iterations: u32) -> f64 {
    use sqlalchemy_collectd_exporter::collectd::client_report;
    use sqlalchemy_collectd_exporter::route::route_client;
    let taken = client_report(datagram)
        .and_then(|r| route_client(&r))
        .is_some_and(|s| s.is_ok());
    assert!(taken, "the bench input takes the fast path");
    let start = Instant::now();
    for _ in 0..iterations {
        let r = client_report(std::hint::black_box(datagram)).and_then(|r| route_client(&r));
        std::hint::black_box(r.is_some());
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// The reference pipeline: collectd 5.12 running sqlalchemy-collectd's
/// server plugin (python plugin) and write_prometheus, in a scratch
/// directory; killed and reaped on drop.
struct Reference {
    child: Child,
    dir: common::TempDir,
    /// UDP port the server plugin listens on.
    udp: u16,
    /// write_prometheus's HTTP port.
    http: u16,
}

impl Drop for Reference {
    fn drop(&mut self) {
        common::process::kill_and_reap(&mut self.child, false, "collectd");
    }
}

const COLLECTD: &str = "/usr/sbin/collectd";

/// Why the reference pipeline cannot run here, if it cannot: collectd, its
/// python and write_prometheus plugins' libraries, the server plugin.
fn reference_missing() -> Option<String> {
    if !std::path::Path::new(COLLECTD).exists() {
        return Some(format!("{COLLECTD} missing (Debian collectd-core)"));
    }
    for plugin in ["python", "write_prometheus"] {
        let so = format!("/usr/lib/collectd/{plugin}.so");
        let out = Command::new("ldd").arg(&so).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.contains("not found") {
            return Some(format!(
                "{so} cannot be loaded (libpython3.11, libmicrohttpd12, libprotobuf-c1): {}",
                text.lines()
                    .filter(|l| l.contains("not found"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    common::client::try_site_packages().err()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn reference() -> Result<Reference, String> {
    let site = common::client::try_site_packages()?;
    let dir = common::TempDir::new("bench", "reference");
    let (udp, http) = (free_port(), free_port());
    let d = dir.path().display();
    // Interval 2: the client's cadence; the server plugin sums and
    // dispatches per host/program on every read.
    let conf = format!(
        "Hostname \"reference\"\nFQDNLookup false\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n\
         PluginDir \"/usr/lib/collectd\"\nTypesDB \"/usr/share/collectd/types.db\"\nInterval 2\n\
         LoadPlugin logfile\n<Plugin logfile>\n  LogLevel info\n  File \"{d}/collectd.log\"\n</Plugin>\n\
         LoadPlugin python\n<Plugin python>\n  ModulePath \"{}\"\n  LogTraces true\n\
         \x20 Import \"sqlalchemy_collectd.server.plugin\"\n  <Module \"sqlalchemy_collectd.server.plugin\">\n\
         \x20   listen \"127.0.0.1\" {udp}\n    loglevel \"info\"\n  </Module>\n</Plugin>\n\
         LoadPlugin write_prometheus\n<Plugin write_prometheus>\n  Host \"127.0.0.1\"\n  Port \"{http}\"\n</Plugin>\n",
        site.display()
    );
    let conf_path = dir.path().join("collectd.conf");
    std::fs::write(&conf_path, conf).map_err(|e| format!("{e}"))?;
    let child = Command::new(COLLECTD)
        .arg("-f")
        .arg("-C")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{COLLECTD}: {e}"))?;
    let mut r = Reference {
        child,
        dir,
        udp,
        http,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(r.dir.path().join("collectd.log")).unwrap_or_default();
        if log.contains("Initialization complete") {
            return Ok(r);
        }
        if let Ok(Some(status)) = r.child.try_wait() {
            return Err(format!("collectd exited ({status}):\n{log}"));
        }
        if Instant::now() > deadline {
            return Err(format!("collectd did not start in 30 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kernel drops of the UDP socket bound to 127.0.0.1:`port`.
fn udp_drops(port: u16) -> f64 {
    load::udp_drops(port).map_or(0.0, |d| d as f64)
}

/// The reference fed `fleet` at the real cadence for `secs`:
/// (datagrams sent a second, processed a second = sent − kernel drops).
fn reference_cadence(r: &Reference, fleet: &mut load::Fleet, secs: f64) -> (f64, f64) {
    let to: SocketAddr = ([127, 0, 0, 1], r.udp).into();
    let d0 = udp_drops(r.udp);
    let rep = load::churn(to, fleet, 0, secs, u64::MAX, |_| {});
    std::thread::sleep(Duration::from_millis(500));
    let drops = udp_drops(r.udp) - d0;
    (
        rep.sent as f64 / rep.seconds,
        (rep.sent as f64 - drops) / rep.seconds,
    )
}

/// The reference offered `datagrams` as fast as one sender can for `secs`:
/// (offered a second, processed a second).
fn reference_saturated(r: &Reference, datagrams: &[Vec<u8>], secs: u64) -> (f64, f64) {
    let to: SocketAddr = ([127, 0, 0, 1], r.udp).into();
    let d0 = udp_drops(r.udp);
    let mut ds = datagrams.to_vec();
    let start = Instant::now();
    let (sent, _) = load::paced(to, &mut ds, 0, secs as f64, u64::MAX, |_, _| {});
    let t = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let drops = udp_drops(r.udp) - d0;
    (sent as f64 / t, (sent as f64 - drops) / t)
}

/// write_prometheus's /metrics: (ms, bytes, samples) or why it failed.
fn reference_scrape(r: &Reference) -> Result<(f64, f64, usize), String> {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", r.http)).map_err(|e| format!("{e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| format!("{e}"))?;
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| format!("{e}"))?;
    let mut body = Vec::new();
    c.read_to_end(&mut body).map_err(|e| format!("{e}"))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let text = String::from_utf8_lossy(&body);
    if !text.starts_with("HTTP/1.") || !text.contains(" 200 ") {
        return Err(text.lines().next().unwrap_or("no response").to_owned());
    }
    let samples = text.lines().filter(|l| l.starts_with("collectd_")).count();
    Ok((ms, body.len() as f64, samples))
}

fn row3(name: &str, v: &mut [f64], precision: usize, unit: &str, note: &str) {
    let (m, lo, hi) = median(v);
    println!("| {name} | {m:.precision$} ({lo:.precision$}–{hi:.precision$}) {unit} | {note} |");
}

const USAGE: &str = "\
usage: bench [--runs N] [--quick] [--only threads|cadence]

Prints the benchmark's table (Markdown) on stdout: each figure the median
(min-max) of N runs (default 3), next to the ceiling measured in the same run.
Needs the release binary: cargo build --release first. --quick: smaller sizes
and shorter phases (a smoke run, not a measurement). --only threads: the
ceiling and the receive-thread drain rows only; --only cadence: the ceiling
and the real-cadence rows only. About 14 minutes at --runs 3.";

/// The real-cadence rows: a 300k-process fleet (30k with `--quick`) whose
/// every process is new to the exporter, as after a restart.
fn cadence_rows(runs: usize, quick: bool) {
    let fleet = if quick { 30_000 } else { 300_000 };
    let (mut rate, mut first, mut steady) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (r, f, s) = cadence(fleet, if quick { 6.0 } else { 12.0 });
        rate.push(r);
        first.push(f);
        steady.push(s);
    }
    row3(
        &format!(
            "{fleet} processes at the real cadence: datagrams/s sent (loader on the other core)"
        ),
        &mut rate,
        0,
        "datagrams/s",
        "",
    );
    row3(
        &format!("{fleet} processes at the real cadence: kernel drops after the first cycle"),
        &mut steady,
        0,
        "datagrams",
        "steady state",
    );
    row3(
        &format!("{fleet} processes at the real cadence: kernel drops in the first cycle"),
        &mut first,
        0,
        "datagrams",
        "while every process is new",
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    if let Some(bad) = args
        .iter()
        .skip(1)
        .find(|a| a.starts_with('-') && !matches!(a.as_str(), "--runs" | "--quick" | "--only"))
    {
        eprintln!("error: unknown option {bad}\n{USAGE}");
        std::process::exit(2);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().skip_while(|a| *a != "--only").nth(1).cloned();
    if only
        .as_deref()
        .is_some_and(|o| o != "threads" && o != "cadence")
    {
        eprintln!("error: --only takes threads or cadence\n{USAGE}");
        std::process::exit(2);
    }
    let runs: usize = args
        .iter()
        .skip_while(|a| *a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    if !std::path::Path::new(BIN).exists() {
        eprintln!("error: {BIN} missing; run cargo build --release first");
        std::process::exit(2);
    }
    // (datagrams per drain, process counts, pair counts, generic series,
    // processes for RSS, phase seconds, bisection step)
    let n: usize = if quick { 100_000 } else { 400_000 };
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let series = if quick { 100_000 } else { 1_000_000 };
    let secs = if quick { 2 } else { 3 };
    let workloads: Vec<(usize, Vec<Vec<u8>>)> = sizes
        .iter()
        .map(|&p| {
            let per_cycle = 2 * p;
            let cycles = n.div_ceil(per_cycle).max(1);
            let mut d = datagrams(p, cycles);
            d.truncate(n.max(per_cycle));
            (p, d)
        })
        .collect();
    let ten_k = &workloads[1].1;

    println!("| figure | median (min–max) | of ceiling / note |");
    println!("|---|---|---|");
    let mut ceilings = Vec::new();
    for _ in 0..runs {
        ceilings.push(ceiling(ten_k));
    }
    let c = median(&mut ceilings.clone()).0;
    row(
        "ceiling: bare recvmmsg drain, one core",
        "datagrams/s",
        ceilings,
        None,
    );
    let (largest, largest_d) = workloads
        .last()
        .map(|(p, d)| (*p, d.as_slice()))
        .unwrap_or((0, &[]));
    match only.as_deref() {
        Some("threads") => return thread_rows(runs, largest_d, largest),
        Some(_) => return cadence_rows(runs, quick),
        None => {}
    }
    let mut drain_10k = f64::NAN;
    for (p, d) in &workloads {
        let (mut rates, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (r, cpu) = drain(d);
            rates.push(r);
            cpus.push(cpu);
        }
        if *p == 10_000 {
            drain_10k = median(&mut rates.clone()).0;
        }
        row(
            &format!("exporter drain, {p} processes"),
            "datagrams/s",
            rates,
            Some(c),
        );
        row3(
            &format!("CPU per million datagrams, {p} processes"),
            &mut cpus,
            2,
            "s",
            "",
        );
    }
    thread_rows(runs, largest_d, largest);
    let mut sustained_10k = f64::NAN;
    for (p, d) in &workloads {
        let mut rates = Vec::new();
        for _ in 0..runs {
            rates.push(sustained(d, *p, if quick { 100_000 } else { 20_000 }));
        }
        if *p == 10_000 {
            sustained_10k = median(&mut rates.clone()).0;
        }
        row(
            &format!(
                "zero-loss sustained rate, {p} processes, a new TIME every pass (exporter one core, loader the other)"
            ),
            "datagrams/s",
            rates,
            Some(c),
        );
    }
    let refused = REFUSED_OUT_OF_ORDER.lock().map_or(f64::NAN, |n| *n);
    println!(
        "| value lists refused as out_of_order during the drain and sustained rows | {refused:.0} | 0 expected: every pass sends newer TIMEs |"
    );
    cadence_rows(runs, quick);

    for &count in sizes {
        let (mut ms, mut bytes) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (t, b) = scrape(count);
            ms.push(t);
            bytes.push(b);
        }
        let (b, _, _) = median(&mut bytes);
        row3(
            &format!("scrape, {count} host/program pairs"),
            &mut ms,
            1,
            "ms",
            &format!("{:.0} KiB", b / 1024.0),
        );
    }
    for &count in sizes {
        let mut ms: Vec<f64> = (0..runs).map(|_| lock_hold(count)).collect();
        row3(
            &format!("ingest stall per scrape: store lock held, {count} host/program pairs"),
            &mut ms,
            3,
            "ms",
            "",
        );
    }
    let (mut ms, mut bytes, mut per) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (t, b, r) = generic(series);
        ms.push(t);
        bytes.push(b);
        per.push(r);
    }
    let (b, _, _) = median(&mut bytes);
    row3(
        &format!("scrape, {series} generic collectd series"),
        &mut ms,
        1,
        "ms",
        &format!("{:.1} MiB", b / 1048576.0),
    );
    row3(
        &format!("RSS per generic series ({series} series)"),
        &mut per,
        0,
        "bytes",
        "",
    );

    // Half the zero-loss rate: a load the exporter holds idle with margin.
    let rate = ((sustained_10k / 2.0) as u64).max(10_000);
    let (mut idle, mut busy, mut count, mut worst) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let u = scrapes_under_load(ten_k, rate, 10_000, secs * 2);
        idle.push(u.drops_idle);
        busy.push(u.drops_scraping);
        count.push(u.scrapes as f64);
        worst.push(u.scrape_ms_max);
        if u.sent_per_sec < rate as f64 * 0.95 {
            eprintln!(
                "warning: the loader sent {:.0}/s of {rate}/s",
                u.sent_per_sec
            );
        }
    }
    let (sc, _, _) = median(&mut count);
    let (w, _, _) = median(&mut worst);
    row3(
        &format!("kernel drops at {rate} datagrams/s, idle ({}s)", secs * 2),
        &mut idle,
        0,
        "datagrams",
        "",
    );
    row3(
        &format!(
            "kernel drops at {rate} datagrams/s while /metrics (10k pairs) is scraped back to back"
        ),
        &mut busy,
        0,
        "datagrams",
        &format!("{sc:.0} scrapes, slowest {w:.0} ms"),
    );

    let mut per = Vec::new();
    let mem_n = if quick { 20_000 } else { 100_000 };
    for _ in 0..runs {
        per.push(memory(mem_n));
    }
    row(
        &format!("RSS per tracked process ({mem_n} processes)"),
        "bytes",
        per,
        None,
    );
    let (stale, forget, extra) = if quick { (2, 5, 3.0) } else { (5, 20, 15.0) };
    let (mut rest, mut after, mut ratio, mut tracked) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let ((r, _), (a, t)) = churn_memory(stale, forget, extra);
        rest.push(r / 1048576.0);
        after.push(a / 1048576.0);
        ratio.push(a / r);
        tracked.push(t);
    }
    row3(
        "RSS at rest, 30k processes at the real cadence",
        &mut rest,
        1,
        "MiB",
        "",
    );
    let (t, _, _) = median(&mut tracked);
    row3(
        &format!("RSS after churn: 10k new processes/s for > {stale}s stale + {forget}s forget"),
        &mut after,
        1,
        "MiB",
        &format!("{t:.0} processes tracked"),
    );
    row3("RSS after churn / at rest", &mut ratio, 2, "×", "");

    let iterations = if quick { 50_000 } else { 500_000 };
    for load::DecodeInput {
        name,
        datagram: d,
        lists,
        ..
    } in load::decode_inputs()
    {
        let mut ns: Vec<f64> = (0..runs.max(3))
            .map(|_| decode_ns(&d, lists, iterations))
            .collect();
        row3(
            &format!("decode, {name} ({} bytes)", d.len()),
            &mut ns,
            0,
            "ns/datagram",
            &format!("{lists} value lists"),
        );
    }
    // What ingest runs for the client's datagrams: the fast path.
    if let Some(load::DecodeInput { datagram: d, .. }) = load::decode_inputs().into_iter().next() {
        let mut ns: Vec<f64> = (0..runs.max(3))
            .map(|_| fast_path_ns(&d, iterations))
            .collect();
        row3(
            &format!(
                "decode, the real client's datagram on ingest's fast path ({} bytes)",
                d.len()
            ),
            &mut ns,
            0,
            "ns/datagram",
            "collectd::client_report + route_client",
        );
    }

    reference_rows(runs, quick, sustained_10k, drain_10k, ten_k);
}

/// The reference pipeline's rows, or one row saying why it could not run.
fn reference_rows(runs: usize, quick: bool, sustained_10k: f64, drain_10k: f64, ten_k: &[Vec<u8>]) {
    if let Some(why) = reference_missing() {
        // The benchmark installs its reference itself (collectd and the
        // libraries its plugins need with apt-get, the server plugin from
        // PyPI into .venv), as the test command does.
        eprintln!("reference pipeline: {why}; running scripts/install-deps.sh");
        let installed = Command::new("scripts/install-deps.sh")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if let Some(why) = reference_missing() {
            let how = if installed {
                ""
            } else {
                " (scripts/install-deps.sh failed)"
            };
            println!("| reference pipeline | not run | {why}{how} |");
            return;
        }
    }
    let secs = if quick { 4.0 } else { 10.0 };
    // 1k and 10k processes at the real cadence; 10k also means 10k
    // host/program pairs for the write_prometheus scrape.
    for (processes, hosts, programs, per_pair) in [(1_000, 10, 10, 10), (10_000, 100, 100, 1)] {
        let (mut processed, mut loss, mut scrape_ms) = (vec![], vec![], vec![]);
        let mut scrape_note = String::new();
        for _ in 0..runs {
            let r = match reference() {
                Ok(r) => r,
                Err(e) => {
                    println!(
                        "| reference pipeline | failed to start | {} |",
                        e.replace('\n', " ")
                    );
                    return;
                }
            };
            let mut fleet = load::Fleet::new(hosts, programs, per_pair);
            let (sent, done) = reference_cadence(&r, &mut fleet, secs);
            processed.push(done);
            loss.push(100.0 * (sent - done) / sent);
            if processes == 10_000 {
                match reference_scrape(&r) {
                    Ok((ms, bytes, samples)) => {
                        scrape_ms.push(ms);
                        scrape_note = format!("{:.0} KiB, {samples} samples", bytes / 1024.0);
                    }
                    Err(e) => scrape_note = format!("failed: {e}"),
                }
            }
        }
        let (m, _, _) = median(&mut processed.clone());
        row3(
            &format!(
                "reference: processed at the real cadence, {processes} processes ({processes} datagrams/s sent)"
            ),
            &mut processed,
            0,
            "datagrams/s",
            &format!("exporter zero-loss rate / this: {:.0}×", sustained_10k / m),
        );
        row3(
            &format!("reference: loss at the real cadence, {processes} processes"),
            &mut loss,
            1,
            "%",
            "",
        );
        if processes == 10_000 {
            if scrape_ms.is_empty() {
                println!(
                    "| reference: write_prometheus scrape, 10k host/program pairs | failed | {scrape_note} |"
                );
            } else {
                row3(
                    "reference: write_prometheus scrape, 10k host/program pairs",
                    &mut scrape_ms,
                    1,
                    "ms",
                    &scrape_note,
                );
            }
        }
    }
    let mut processed = Vec::new();
    for _ in 0..runs {
        let Ok(r) = reference() else { continue };
        processed.push(reference_saturated(&r, ten_k, secs as u64 / 2).1);
    }
    let (m, _, _) = median(&mut processed.clone());
    row3(
        "reference: processed when offered as fast as one sender can (10k processes)",
        &mut processed,
        0,
        "datagrams/s",
        &format!("exporter drain / this: {:.0}×", drain_10k / m),
    );
}
