//! A load generator on loopback, bounded in time (at most 600 s) and count.
//!
//! * default: H hosts × P programs × N processes of the real
//!   sqlalchemy-collectd client, byte-identical datagrams (a `sqlalchemy_pool`
//!   and a `sqlalchemy_totals` per process per cycle) at `--rate` datagrams/s
//!   (0: as fast as it can), cycling through the processes;
//! * `--churn N`: N processes a second are replaced by new ones (a new
//!   `<pid>:<6 hex>` token; the old process simply stops sending);
//! * `--cadence`: the real client's cadence instead of `--rate`: every
//!   process sends its pair every 2 s (so H × P × N datagrams/s);
//! * `--soak`: `--cadence --churn 10000` with 10 × 10 × 300 processes (each
//!   lives 3 s) for 120 s unless given otherwise;
//! * `--collectd`: collectd-style datagrams (TIME_HR, only changed parts,
//!   about 30 value lists each, up to collectd's 1452-byte packet) of
//!   `--series` distinct generic value lists (cpu, memory, df, irq).
//!
//! Examples:
//!
//! ```text
//! cargo run --release --example loadgen -- --processes 1000 --rate 50000 --seconds 10
//! cargo run --release --example loadgen -- --soak --seconds 60
//! cargo run --release --example loadgen -- --collectd --series 1000000 --rate 20000
//! ```
//!
//! Prints what it sent.

#[path = "../tests/common/mod.rs"]
mod common;

use common::load::{self, Fleet};
use std::net::SocketAddr;
use std::time::Instant;

struct Args {
    target: SocketAddr,
    first_host: usize,
    hosts: usize,
    programs: usize,
    processes: usize,
    rate: u64,
    seconds: u64,
    max: u64,
    churn: u64,
    cadence: bool,
    collectd: bool,
    series: usize,
}

const USAGE: &str = "loadgen [--target 127.0.0.1:25827] [--hosts 10] [--first-host 0 (hosts are host<N>...)] \
[--programs 10] [--processes 10] \
[--rate 0 (datagrams/s; 0 = as fast as possible)] [--seconds 10 (at most 600)] [--max 10000000] \
[--churn 0 (processes replaced per second)] [--cadence (every process sends every 2 s)] \
[--soak (= --cadence --churn 10000 --processes 300 --seconds 120)] \
[--collectd --series 100000 (generic value lists, ~30 per datagram)]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:25827".parse().map_err(|e| format!("{e}"))?,
        first_host: 0,
        hosts: 10,
        programs: 10,
        processes: 10,
        rate: 0,
        seconds: 10,
        max: 10_000_000,
        churn: 0,
        cadence: false,
        collectd: false,
        series: 100_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // --soak sets defaults that later flags override.
    if argv.iter().any(|f| f == "--soak") {
        a.cadence = true;
        a.churn = 10_000;
        a.processes = 300;
        a.seconds = 120;
        a.max = 100_000_000;
    }
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--soak" => continue,
            "--cadence" => {
                a.cadence = true;
                continue;
            }
            "--collectd" => {
                a.collectd = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--target" => a.target = value.parse().map_err(|_| format!("--target: {value:?}"))?,
            "--hosts" => a.hosts = n()? as usize,
            "--first-host" => a.first_host = n()? as usize,
            "--programs" => a.programs = n()? as usize,
            "--processes" => a.processes = n()? as usize,
            "--rate" => a.rate = n()?,
            "--seconds" => a.seconds = n()?.min(600),
            "--max" => a.max = n()?,
            "--churn" => a.churn = n()?,
            "--series" => a.series = n()? as usize,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if !a.target.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", a.target));
    }
    if a.hosts * a.programs * a.processes == 0 {
        return Err("--hosts, --programs and --processes must be at least 1".into());
    }
    Ok(a)
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    if a.collectd {
        let mut datagrams = load::collectd_datagrams(a.series, 1_700_000_000, 10);
        let lists = a.series as f64 / datagrams.len().max(1) as f64;
        let (sent, failed) = load::paced(
            a.target,
            &mut datagrams,
            a.rate,
            a.seconds as f64,
            a.max,
            |cycle, ds| {
                // TIME_HR must grow per cycle or the exporter refuses the
                // repeats as old; collectd's layout has it after HOST.
                for d in ds {
                    patch_time_hr(d, (1_700_000_000 + 10 * cycle) << 30);
                }
            },
        );
        let secs = start.elapsed().as_secs_f64();
        println!(
            "sent {sent} collectd datagrams ({} series, {lists:.1} value lists a datagram) in {secs:.2} s = {:.0}/s; {failed} send errors",
            a.series,
            sent as f64 / secs
        );
        return;
    }
    let mut fleet = Fleet::from_host(a.first_host, a.hosts, a.programs, a.processes);
    if a.cadence {
        let r = load::churn(
            a.target,
            &mut fleet,
            a.churn,
            a.seconds as f64,
            a.max,
            |_| {},
        );
        println!(
            "sent {} datagrams ({} process slots at the 2 s cadence, {} processes replaced, {} tokens sent) in {:.2} s = {:.0}/s; {} send errors",
            r.sent,
            fleet.slots(),
            r.replaced,
            r.tokens,
            r.seconds,
            r.sent as f64 / r.seconds,
            r.failed
        );
        return;
    }
    // --rate mode: cycle through every slot's pair; churn replaces slots
    // round-robin at the same time.
    let slots = fleet.slots() as u64;
    let mut replaced = 0u64;
    let mut sender = load::Sender::new(a.target);
    let deadline = std::time::Duration::from_secs(a.seconds);
    let mut next = 0u64;
    while start.elapsed() < deadline && sender.sent + sender.failed < a.max {
        let t = start.elapsed().as_secs_f64();
        while replaced < (t * a.churn as f64) as u64 {
            fleet.replace((replaced % slots) as usize);
            replaced += 1;
        }
        let done = sender.sent + sender.failed;
        let due = if a.rate == 0 {
            done + 64
        } else {
            ((t * a.rate as f64) as u64).min(a.max)
        };
        if due <= done {
            std::thread::sleep(std::time::Duration::from_micros(200));
            continue;
        }
        let mut batch = Vec::with_capacity(64);
        while batch.len() < (due - done).min(64) as usize {
            let slot = (next / 2 % slots) as usize;
            let cycle = next / (2 * slots);
            if next.is_multiple_of(2) {
                fleet.set_time(slot, 1_000_000 + 2 * cycle);
            }
            batch.push(fleet.datagrams(slot)[(next % 2) as usize].to_vec());
            next += 1;
        }
        sender.send(&batch);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {} datagrams ({} processes, {} cycles, {replaced} processes replaced) in {secs:.2} s = {:.0}/s; {} send errors",
        sender.sent,
        slots,
        next / (2 * slots),
        sender.sent as f64 / secs,
        sender.failed
    );
}

/// Sets the first TIME_HR part of a collectd-layout datagram (it follows
/// HOST).
fn patch_time_hr(d: &mut [u8], hr: u64) {
    let host_len = u16::from_be_bytes([d[2], d[3]]) as usize;
    d[host_len + 4..host_len + 12].copy_from_slice(&hr.to_be_bytes());
}
