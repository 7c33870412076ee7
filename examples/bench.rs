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
//! * memory: resident bytes per tracked process (100k processes).
//!
//! Every figure is the median (min–max) of `--runs` runs. Everything runs on
//! loopback and is bounded in time.

use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use std::io::{BufRead, BufReader, IoSliceMut};
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
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for d in datagrams {
        // A full socket buffer drops; the ceiling counts what arrived.
        let _ = s.send_to(d, to);
    }
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

struct Exporter {
    child: Child,
    udp: SocketAddr,
    http: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exporter(cpu: Option<usize>, extra: &[&str]) -> Exporter {
    let mut cmd = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string(), BIN]);
            t
        }
        None => Command::new(BIN),
    };
    cmd.args([
        "--collectd.listen-address",
        "127.0.0.1:0",
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.level",
        "info",
    ])
    .args(extra)
    .stderr(Stdio::piped())
    .stdout(Stdio::null());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{BIN}: {e} (cargo build --release first)"));
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let field = |line: &str, key: &str| -> SocketAddr {
        let at = line.find(&format!(" {key}=")).expect("field") + key.len() + 2;
        line[at..]
            .split(' ')
            .next()
            .expect("value")
            .parse()
            .expect("address")
    };
    let (mut udp, mut http) = (None, None);
    while udp.is_none() || http.is_none() {
        let line = lines.next().expect("exporter log").expect("line");
        if line.contains("listening for collectd datagrams") {
            udp = Some(field(&line, "listener"));
        }
        if line.contains("serving metrics over HTTP") {
            http = Some(field(&line, "address"));
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Exporter {
        child,
        udp: udp.expect("udp"),
        http: http.expect("http"),
    }
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0)
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// (datagrams/s drained, CPU seconds per million datagrams).
fn drain(datagrams: &[Vec<u8>]) -> (f64, f64) {
    let e = exporter(Some(0), &["--collectd.udp-buffer", &BIG_BUFFER.to_string()]);
    let pid = e.child.id();
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    send_all(e.udp, datagrams);
    let cpu0 = cpu_secs(pid);
    let start = Instant::now();
    signal(pid, nix::sys::signal::Signal::SIGCONT);
    let deadline = start + Duration::from_secs(120);
    loop {
        let text = get(e.http);
        let done = metric(
            &text,
            "sqlalchemy_collectd_exporter_value_lists_accepted_total",
        ) + metric(
            &text,
            "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
        );
        if done >= datagrams.len() as f64 || Instant::now() > deadline {
            let accepted = metric(
                &text,
                "sqlalchemy_collectd_exporter_value_lists_accepted_total",
            );
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_secs(pid) - cpu0;
            return (accepted / secs, cpu / (accepted / 1e6));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `datagrams` cyclically at `rate`/s for `secs` from the calling
/// thread, up to 64 per `sendmmsg`; returns how many were sent.
fn paced(to: SocketAddr, datagrams: &[Vec<u8>], rate: u64, secs: u64) -> u64 {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    s.connect(to).expect("connect sender");
    let fd = s.as_raw_fd();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(64, None);
    let none: Vec<Option<SockaddrIn>> = vec![None; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    let total = rate * secs;
    while sent < total && start.elapsed() < Duration::from_secs(secs + 5) {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let n = (due - sent).min(64) as usize;
            let slices: Vec<[std::io::IoSlice<'_>; 1]> = (0..n)
                .map(|k| {
                    [std::io::IoSlice::new(
                        &datagrams[(sent as usize + k) % datagrams.len()],
                    )]
                })
                .collect();
            let cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut headers,
                &slices,
                &none[..n],
                cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(r) => sent += r.count() as u64,
                Err(_) => break,
            }
        }
        std::hint::spin_loop();
    }
    sent
}

/// Highest rate with zero kernel drops, exporter on CPU 0, loader on CPU 1.
fn sustained(datagrams: &[Vec<u8>]) -> f64 {
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &{
        let mut set = nix::sched::CpuSet::new();
        let _ = set.set(1);
        set
    });
    let e = exporter(Some(0), &["--collectd.udp-buffer", "8388608"]);
    // Warm up: create every process once.
    send_all(e.udp, &datagrams[..datagrams.len().min(20_000)]);
    let (mut lo, mut hi) = (50_000u64, 1_000_000u64);
    while hi - lo > 20_000 {
        let rate = (lo + hi) / 2;
        let before = metric(
            &get(e.http),
            "sqlalchemy_collectd_exporter_kernel_receive_drops_total",
        );
        let sent = paced(e.udp, datagrams, rate, 3);
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
fn memory() -> f64 {
    let e = exporter(None, &["--collectd.udp-buffer", &BIG_BUFFER.to_string()]);
    let pid = e.child.id();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes(pid);
    let n = 100_000;
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
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn row(name: &str, unit: &str, mut v: Vec<f64>, ceiling: Option<f64>) {
    let (m, lo, hi) = median(&mut v);
    let ratio = ceiling.map_or(String::new(), |c| format!("{:.0}%", 100.0 * m / c));
    println!("| {name} | {m:.0} ({lo:.0}–{hi:.0}) {unit} | {ratio} |");
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    if !std::path::Path::new(BIN).exists() {
        eprintln!("error: {BIN} missing; run cargo build --release first");
        std::process::exit(2);
    }
    let n: usize = 400_000;
    let workloads: Vec<(usize, Vec<Vec<u8>>)> = [1_000usize, 10_000, 100_000]
        .into_iter()
        .map(|p| {
            let per_cycle = 2 * p;
            let cycles = n.div_ceil(per_cycle).max(1);
            let mut d = datagrams(p, cycles);
            d.truncate(n.max(per_cycle));
            (p, d)
        })
        .collect();

    println!("| figure | median (min–max) | of ceiling |");
    println!("|---|---|---|");
    let mut ceilings = Vec::new();
    for _ in 0..runs {
        ceilings.push(ceiling(&workloads[1].1));
    }
    let c = median(&mut ceilings.clone()).0;
    row(
        "ceiling: bare recvmmsg drain, one core",
        "datagrams/s",
        ceilings,
        None,
    );
    for (p, d) in &workloads {
        let (mut rates, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (r, cpu) = drain(d);
            rates.push(r);
            cpus.push(cpu);
        }
        row(
            &format!("exporter drain, {p} processes"),
            "datagrams/s",
            rates,
            Some(c),
        );
        let (m, lo, hi) = median(&mut cpus);
        println!("| CPU per million datagrams, {p} processes | {m:.2} ({lo:.2}–{hi:.2}) s | |");
    }
    let mut rates = Vec::new();
    for _ in 0..runs {
        rates.push(sustained(&workloads[1].1));
    }
    row(
        "zero-loss sustained rate, 10k processes (exporter one core, loader the other)",
        "datagrams/s",
        rates,
        Some(c),
    );
    for count in [1_000usize, 10_000, 100_000] {
        let (mut ms, mut bytes) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (t, b) = scrape(count);
            ms.push(t);
            bytes.push(b);
        }
        let (m, lo, hi) = median(&mut ms);
        let (b, _, _) = median(&mut bytes);
        println!(
            "| scrape, {count} host/program pairs | {m:.1} ({lo:.1}–{hi:.1}) ms, {:.0} KiB | |",
            b / 1024.0
        );
    }
    let mut per = Vec::new();
    for _ in 0..runs {
        per.push(memory());
    }
    row(
        "RSS per tracked process (100k processes)",
        "bytes",
        per,
        None,
    );
}
