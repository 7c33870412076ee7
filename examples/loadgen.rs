//! A load generator: H hosts × P programs × N processes of the real
//! sqlalchemy-collectd client, sending byte-identical datagrams (a
//! `sqlalchemy_pool` and a `sqlalchemy_totals` per process per cycle) to an
//! exporter on loopback, bounded in time and count.
//!
//!     cargo run --release --example loadgen -- --processes 1000 --rate 50000 --seconds 10
//!
//! Prints what it sent. `--rate 0` sends as fast as it can.

use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

struct Args {
    target: SocketAddr,
    hosts: usize,
    programs: usize,
    processes: usize,
    rate: u64,
    seconds: u64,
    max: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:25827".parse().map_err(|e| format!("{e}"))?,
        hosts: 10,
        programs: 10,
        processes: 10,
        rate: 0,
        seconds: 10,
        max: 10_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!(
                "loadgen [--target 127.0.0.1:25827] [--hosts 10] [--programs 10] [--processes 10] \
                 [--rate 0 (as fast as possible)] [--seconds 10 (at most 600)] [--max 10000000]"
            );
            std::process::exit(0);
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
            "--programs" => a.programs = n()? as usize,
            "--processes" => a.processes = n()? as usize,
            "--rate" => a.rate = n()?,
            "--seconds" => a.seconds = n()?.min(600),
            "--max" => a.max = n()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !a.target.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", a.target));
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
    // Every process's two datagrams, built once; the time part is patched per cycle.
    let mut datagrams = Vec::new();
    for h in 0..a.hosts {
        for p in 0..a.programs {
            for n in 0..a.processes {
                let id = |type_: &str| Identity {
                    host: format!("host{h}").as_str().into(),
                    plugin: "sqlalchemy".into(),
                    plugin_instance: format!("program{p}").as_str().into(),
                    type_: type_.into(),
                    type_instance: format!(
                        "{}:{:06x}",
                        10_000 + n,
                        (h * 7919 + p * 104_729 + n) % 0xff_ffff
                    )
                    .as_str()
                    .into(),
                };
                let pool = [1.0, 2.0, 3.0, 0.0, 5.0].map(Value::Gauge);
                let totals = [100, 0, 5, 0].map(Value::Derive);
                datagrams.push(
                    Encoder::new()
                        .client_value_list(&id("sqlalchemy_pool"), 0, 2, &pool)
                        .finish()
                        .to_vec(),
                );
                datagrams.push(
                    Encoder::new()
                        .client_value_list(&id("sqlalchemy_totals"), 0, 2, &totals)
                        .finish()
                        .to_vec(),
                );
            }
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    let mut sent = 0u64;
    let mut failed = 0u64;
    let mut cycle = 0u64;
    'outer: loop {
        cycle += 1;
        // TIME sits at byte 4 + host part; the client layout puts it right after HOST.
        for d in &mut datagrams {
            let host_len = u16::from_be_bytes([d[2], d[3]]) as usize;
            d[host_len + 4..host_len + 12].copy_from_slice(&(1_000_000 + cycle * 2).to_be_bytes());
            if sent >= a.max || Instant::now() >= deadline {
                break 'outer;
            }
            if a.rate > 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / a.rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            match socket.send_to(d, a.target) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} datagrams ({} processes, {cycle} cycles) in {secs:.2} s = {:.0}/s; {failed} send errors",
        a.hosts * a.programs * a.processes,
        sent as f64 / secs
    );
}
