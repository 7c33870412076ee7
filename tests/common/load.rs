//! Load shared by the load generator, the benchmark and the soak test: a
//! fleet of real-client processes whose tokens can be replaced (churn),
//! collectd-style datagrams carrying many value lists (generic series), and
//! a sender that writes up to 64 datagrams per `sendmmsg` call, paced and
//! bounded in time and count. Loopback only.

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
use sqlalchemy_collectd_exporter::collectd::{CdTime, Encoder, HR_PER_SECOND, Identity, Value};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The real client's report interval: each process sends its two datagrams
/// every 2 s.
pub const CADENCE: Duration = Duration::from_secs(2);

/// collectd's network plugin fills datagrams up to this many bytes (its
/// default `MaxPacketSize`).
pub const COLLECTD_PACKET: usize = 1452;

/// Token ids are written as 6 hex digits, so this many distinct tokens exist.
const TOKEN_SPACE: u64 = 0xff_ffff;

/// H hosts × P programs × N process slots of the real client. Every slot
/// holds one process token (`<pid>:<6 hex>`, as the client makes them) and
/// that process's two datagrams (`sqlalchemy_pool`, `sqlalchemy_totals`).
/// [`Fleet::replace`] gives a slot a new token: the old process simply
/// stops sending, as a real one that exits does.
pub struct Fleet {
    /// Host names are `host<first_host + h>`.
    first_host: usize,
    hosts: usize,
    programs: usize,
    per_pair: usize,
    /// Token id of each slot.
    ids: Vec<u64>,
    next_id: u64,
    /// Two datagrams per slot, TIME patched by [`Fleet::set_time`].
    datagrams: Vec<Vec<u8>>,
}

impl Fleet {
    /// What every process reports in `sqlalchemy_pool`: numpools, checked
    /// out, checked in, detached, connections.
    pub const POOL: [f64; 5] = [1.0, 2.0, 3.0, 0.0, 5.0];
    /// What every process reports in `sqlalchemy_totals`: checkouts,
    /// invalidated, connects, disconnects.
    pub const TOTALS: [i64; 4] = [100, 0, 5, 0];

    pub fn new(hosts: usize, programs: usize, per_pair: usize) -> Fleet {
        Fleet::from_host(0, hosts, programs, per_pair)
    }

    /// [`Fleet::new`] with hosts numbered from `first_host`: fleets that
    /// share no process.
    pub fn from_host(first_host: usize, hosts: usize, programs: usize, per_pair: usize) -> Fleet {
        let slots = hosts * programs * per_pair;
        let mut f = Fleet {
            first_host,
            hosts,
            programs,
            per_pair,
            ids: (0..slots as u64).collect(),
            next_id: slots as u64,
            datagrams: vec![Vec::new(); 2 * slots],
        };
        for slot in 0..slots {
            f.encode(slot);
        }
        f
    }

    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// Distinct host/program pairs.
    pub fn pairs(&self) -> usize {
        self.hosts * self.programs
    }

    /// Tokens handed out so far (the initial ones included).
    pub fn tokens_created(&self) -> u64 {
        self.next_id
    }

    /// The process token of `slot`: a pid from the slot, 6 hex digits from
    /// a fleet-wide counter (unique for the first 16.7 million tokens).
    pub fn token(&self, slot: usize) -> String {
        format!("{}:{:06x}", 1000 + slot, self.ids[slot] % TOKEN_SPACE)
    }

    /// A new process in `slot`; the old one stops sending.
    pub fn replace(&mut self, slot: usize) {
        self.ids[slot] = self.next_id;
        self.next_id += 1;
        self.encode(slot);
    }

    /// The two datagrams of `slot`.
    pub fn datagrams(&self, slot: usize) -> [&[u8]; 2] {
        [&self.datagrams[2 * slot], &self.datagrams[2 * slot + 1]]
    }

    /// Every datagram, two per slot in slot order.
    pub fn all(&self) -> &[Vec<u8>] {
        &self.datagrams
    }

    /// Sets the client's TIME (whole seconds) of `slot`'s datagrams: the
    /// client layout puts it right after HOST.
    pub fn set_time(&mut self, slot: usize, secs: u64) {
        for d in &mut self.datagrams[2 * slot..2 * slot + 2] {
            let host_len = u16::from_be_bytes([d[2], d[3]]) as usize;
            d[host_len + 4..host_len + 12].copy_from_slice(&secs.to_be_bytes());
        }
    }

    fn encode(&mut self, slot: usize) {
        let pair = slot / self.per_pair;
        let (h, p) = (pair / self.programs, pair % self.programs);
        let token = self.token(slot);
        let id = |type_: &str| Identity {
            host: format!("host{}", self.first_host + h).as_str().into(),
            plugin: "sqlalchemy".into(),
            plugin_instance: format!("program{p}").as_str().into(),
            type_: type_.into(),
            type_instance: token.as_str().into(),
        };
        let pool = Fleet::POOL.map(Value::Gauge);
        let totals = Fleet::TOTALS.map(Value::Derive);
        self.datagrams[2 * slot] = Encoder::new()
            .client_value_list(&id("sqlalchemy_pool"), 1_000_000, 2, &pool)
            .finish()
            .to_vec();
        self.datagrams[2 * slot + 1] = Encoder::new()
            .client_value_list(&id("sqlalchemy_totals"), 1_000_000, 2, &totals)
            .finish()
            .to_vec();
    }
}

/// The identity and values of generic series `i`: a host per 1000 series,
/// and within a host the single-value types of collectd's cpu, memory, df
/// and irq plugins (one exported sample per value list), as in collectd's
/// types.db.
fn generic_series(i: usize) -> (Identity, Value) {
    const CPU_STATES: [&str; 8] = [
        "user",
        "system",
        "idle",
        "wait",
        "nice",
        "interrupt",
        "softirq",
        "steal",
    ];
    let (h, j) = (i / 1000, i % 1000);
    let host = format!("node{h:06}");
    let (plugin, pi, type_, ti, value) = match j % 4 {
        0 => (
            "cpu",
            format!("{}", j / 32),
            "cpu",
            CPU_STATES[(j / 4) % 8].to_owned(),
            Value::Derive(1_000_000 + i as i64),
        ),
        1 => (
            "memory",
            String::new(),
            "memory",
            format!("slab{j}"),
            Value::Gauge(1e9 + i as f64),
        ),
        2 => (
            "df",
            format!("mnt{j}"),
            "df_complex",
            "used".to_owned(),
            Value::Gauge(5e9 + i as f64),
        ),
        _ => (
            "irq",
            String::new(),
            "irq",
            format!("{j}"),
            Value::Derive(i as i64),
        ),
    };
    (
        Identity {
            host: host.as_str().into(),
            plugin: plugin.into(),
            plugin_instance: pi.as_str().into(),
            type_: type_.into(),
            type_instance: ti.as_str().into(),
        },
        value,
    )
}

/// `series` distinct generic value lists in collectd's own layout (TIME_HR,
/// INTERVAL_HR, only the parts that changed), packed like collectd's network
/// plugin does: as many value lists per datagram as fit in
/// [`COLLECTD_PACKET`] bytes (about 30 here). `time_secs` is the value
/// lists' time, `interval_secs` their interval.
pub fn collectd_datagrams(series: usize, time_secs: u64, interval_secs: u64) -> Vec<Vec<u8>> {
    let time = CdTime(time_secs * HR_PER_SECOND);
    let interval = CdTime(interval_secs * HR_PER_SECOND);
    let mut out = Vec::new();
    let mut e = Encoder::new();
    let mut last = 0;
    for i in 0..series {
        let (id, v) = generic_series(i);
        e.collectd_value_list(&id, time, interval, &[v]);
        if e.len() > COLLECTD_PACKET {
            // Too big: this value list starts the next datagram (a value list
            // of these types is far smaller than a packet).
            let full = e.finish();
            out.push(full[..last].to_vec());
            e.collectd_value_list(&id, time, interval, &[v]);
        }
        last = e.len();
    }
    if !e.is_empty() {
        out.push(e.finish().to_vec());
    }
    out
}

/// One collectd-style datagram with exactly `lists` value lists of the cpu
/// plugin (per-CPU, per-state derives, as collectd's cpu plugin sends them;
/// for the decode benchmark), or `None` if they do not fit in
/// [`COLLECTD_PACKET`].
pub fn collectd_datagram_with(lists: usize) -> Option<Vec<u8>> {
    let time = CdTime(1_700_000_000 * HR_PER_SECOND);
    let interval = CdTime(10 * HR_PER_SECOND);
    let mut e = Encoder::new();
    for i in 0..lists {
        // Every fourth series is the cpu plugin's.
        let (id, v) = generic_series(4 * i);
        e.collectd_value_list(&id, time, interval, &[v]);
    }
    let d = e.finish().to_vec();
    (d.len() <= COLLECTD_PACKET).then_some(d)
}

/// One input of the decode benchmarks (`benches/decode.rs` and the
/// benchmark's decode rows).
pub struct DecodeInput {
    /// criterion's name for it.
    pub id: &'static str,
    /// Its name in the benchmark's table.
    pub name: &'static str,
    pub datagram: bytes::Bytes,
    /// How many value lists it decodes to.
    pub lists: usize,
}

/// The real client's datagram (one value list, captured in
/// tests/testdata), a captured collectd 5.12 datagram (27 value lists, the
/// most of any capture) and a collectd-layout datagram of exactly 30 value
/// lists built with the encoder (none of the captures has 30).
pub fn decode_inputs() -> Vec<DecodeInput> {
    let read = |p: &str| {
        let path = format!("{}/tests/testdata/{p}", env!("CARGO_MANIFEST_DIR"));
        bytes::Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    };
    let thirty = collectd_datagram_with(30).expect("30 value lists fit in 1452 bytes");
    vec![
        DecodeInput {
            id: "real_client_pool",
            name: "the real client's datagram",
            datagram: read("01_sqla_idle/000.bin"),
            lists: 1,
        },
        DecodeInput {
            id: "collectd_capture_27_lists",
            name: "collectd's datagram (capture, 27 value lists)",
            datagram: read("07_collectd_plain/000.bin"),
            lists: 27,
        },
        DecodeInput {
            id: "collectd_30_lists",
            name: "collectd-style datagram, 30 value lists",
            datagram: bytes::Bytes::from(thirty),
            lists: 30,
        },
    ]
}

/// A UDP socket connected to `target` (which must be loopback), writing up
/// to 64 datagrams per `sendmmsg` call.
pub struct Sender {
    socket: UdpSocket,
    headers: MultiHeaders<SockaddrIn>,
    pub sent: u64,
    /// Datagrams the kernel refused (e.g. ECONNREFUSED after an ICMP error).
    pub failed: u64,
}

impl Sender {
    pub fn new(target: SocketAddr) -> Sender {
        assert!(
            target.ip().is_loopback(),
            "{target} is not a loopback address"
        );
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback sender socket");
        socket.connect(target).expect("connect the sender socket");
        Sender {
            socket,
            headers: MultiHeaders::preallocate(64, None),
            sent: 0,
            failed: 0,
        }
    }

    /// Sends every datagram of `batch`, 64 per system call.
    pub fn send<D: AsRef<[u8]>>(&mut self, batch: &[D]) {
        let fd = self.socket.as_raw_fd();
        let none: [Option<SockaddrIn>; 64] = [None; 64];
        for chunk in batch.chunks(64) {
            let slices: Vec<[std::io::IoSlice<'_>; 1]> = chunk
                .iter()
                .map(|d| [std::io::IoSlice::new(d.as_ref())])
                .collect();
            let mut done = 0;
            // sendmmsg may stop early; a failure costs the datagram it was at.
            while done < slices.len() {
                let cmsgs: [ControlMessage<'_>; 0] = [];
                match sendmmsg(
                    fd,
                    &mut self.headers,
                    &slices[done..],
                    &none[..slices.len() - done],
                    cmsgs,
                    MsgFlags::empty(),
                ) {
                    Ok(r) => {
                        let n = r.count();
                        self.sent += n as u64;
                        done += n.max(1);
                        if n == 0 {
                            self.failed += 1;
                        }
                    }
                    Err(_) => {
                        self.failed += 1;
                        done += 1;
                    }
                }
            }
        }
    }
}

/// The lines of /proc/net/udp of every socket bound to 127.0.0.1:`port`
/// (several when the exporter has a socket per receive thread).
fn proc_net_udp(port: u16) -> Vec<Vec<String>> {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&want))
        .collect()
}

/// How many UDP sockets are bound to 127.0.0.1:`port` (one per receive
/// thread of an exporter).
pub fn sockets(port: u16) -> usize {
    proc_net_udp(port).len()
}

/// Bytes queued on the UDP sockets bound to 127.0.0.1:`port`, not yet read
/// by their owner (the rx_queue half of `tx_queue:rx_queue`), summed.
pub fn rx_queue(port: u16) -> Option<u64> {
    let all = proc_net_udp(port);
    if all.is_empty() {
        return None;
    }
    all.iter()
        .map(|f| {
            let (_, rx) = f.get(4)?.split_once(':')?;
            u64::from_str_radix(rx, 16).ok()
        })
        .sum()
}

/// Datagrams the kernel dropped on the UDP sockets bound to
/// 127.0.0.1:`port` because their buffers were full (the last column),
/// summed.
pub fn udp_drops(port: u16) -> Option<u64> {
    let all = proc_net_udp(port);
    if all.is_empty() {
        return None;
    }
    all.iter().map(|f| f.last()?.parse::<u64>().ok()).sum()
}

/// Sends `datagrams` in batches of `batch`, each once the socket of
/// `target` has been read empty, so that a slow receiver drops none; returns
/// once the last batch has been read too (within `timeout` in all).
pub fn send_drained(target: SocketAddr, datagrams: &[Vec<u8>], batch: usize, timeout: Duration) {
    let mut sender = Sender::new(target);
    let deadline = Instant::now() + timeout;
    let drained = || {
        while rx_queue(target.port()).is_some_and(|q| q > 0) {
            assert!(
                Instant::now() < deadline,
                "{target} did not read its socket within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for chunk in datagrams.chunks(batch.max(1)) {
        drained();
        sender.send(chunk);
    }
    drained();
    assert_eq!(sender.failed, 0, "send errors");
}

/// What [`churn`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChurnReport {
    pub sent: u64,
    pub failed: u64,
    /// Tokens that replaced earlier ones.
    pub replaced: u64,
    /// Distinct tokens that sent at least one datagram.
    pub tokens: u64,
    pub seconds: f64,
}

/// The fleet at the real cadence (every slot sends its pair every
/// [`CADENCE`], slots spread evenly over it, TIME = the wall clock) while
/// `churn_per_sec` slots a second get a new process token, round-robin, so
/// each process lives `slots / churn_per_sec` seconds. Stops after
/// `seconds` or `max` datagrams, whichever comes first; `tick` is called
/// about every 10 ms with the report so far (the soak test samples the
/// exporter there).
pub fn churn(
    target: SocketAddr,
    fleet: &mut Fleet,
    churn_per_sec: u64,
    seconds: f64,
    max: u64,
    mut tick: impl FnMut(&ChurnReport),
) -> ChurnReport {
    let mut sender = Sender::new(target);
    let slots = fleet.slots() as u64;
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds.clamp(0.0, 600.0));
    let mut report = ChurnReport::default();
    // Sends and replacements happen in slot order: send number n is slot
    // n % slots, replacement number k is slot k % slots.
    let mut sends_done = 0u64;
    let mut has_sent = vec![false; fleet.slots()];
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(1024);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end || report.sent + report.failed >= max {
            break;
        }
        let t = elapsed.as_secs_f64();
        let sends_due = (t / CADENCE.as_secs_f64() * slots as f64) as u64;
        let replacements_due = (t * churn_per_sec as f64) as u64;
        while report.replaced < replacements_due {
            let slot = (report.replaced % slots) as usize;
            fleet.replace(slot);
            has_sent[slot] = false;
            report.replaced += 1;
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        while sends_done < sends_due && report.sent + report.failed + (batch.len() as u64) < max {
            let slot = (sends_done % slots) as usize;
            fleet.set_time(slot, unix);
            if !has_sent[slot] {
                has_sent[slot] = true;
                report.tokens += 1;
            }
            for d in fleet.datagrams(slot) {
                batch.push(d.to_vec());
            }
            sends_done += 1;
            if batch.len() >= 1024 {
                sender.send(&batch);
                batch.clear();
            }
        }
        sender.send(&batch);
        batch.clear();
        report.sent = sender.sent;
        report.failed = sender.failed;
        report.seconds = start.elapsed().as_secs_f64();
        tick(&report);
        std::thread::sleep(Duration::from_millis(10));
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// Sends `datagrams` cyclically at `rate` a second for at most `seconds`
/// (`rate` 0: as fast as possible), at most `max` in all; calls `before`
/// with the cycle number before each pass over them (to patch times).
/// Returns (sent, failed).
pub fn paced(
    target: SocketAddr,
    datagrams: &mut [Vec<u8>],
    rate: u64,
    seconds: f64,
    max: u64,
    mut before: impl FnMut(u64, &mut [Vec<u8>]),
) -> (u64, u64) {
    let mut sender = Sender::new(target);
    if datagrams.is_empty() {
        return (0, 0);
    }
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds.clamp(0.0, 600.0));
    let mut next = 0usize;
    let mut cycle = 0u64;
    before(cycle, datagrams);
    loop {
        let elapsed = start.elapsed();
        let done = sender.sent + sender.failed;
        if elapsed >= end || done >= max {
            break;
        }
        let due = if rate == 0 {
            done + 64
        } else {
            ((elapsed.as_secs_f64() * rate as f64) as u64).min(max)
        };
        if due <= done {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let n = ((due - done).min(64) as usize).min(datagrams.len() - next);
        sender.send(&datagrams[next..next + n]);
        next += n;
        if next == datagrams.len() {
            next = 0;
            cycle += 1;
            before(cycle, datagrams);
        }
    }
    (sender.sent, sender.failed)
}
