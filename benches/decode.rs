//! Decode cost per datagram, `cargo bench --bench decode`: the real
//! client's datagram (one value list, captured in tests/testdata), a
//! captured collectd 5.12 datagram (27 value lists, the most of any
//! capture) and a collectd-layout datagram of exactly 30 value lists built
//! with the encoder (none of the captures has 30). The benchmark example
//! times the same inputs in-process for its table (`decode_inputs` is shared
//! with it). The client's datagram is also timed on ingest's fast path
//! (`client_report` + `route_client`), which takes it without `decode`.

#[path = "../examples/support/load.rs"]
mod load;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlalchemy_collectd_exporter::collectd::{client_report, decode};
use sqlalchemy_collectd_exporter::route::route_client;
use std::hint::black_box;

/// (name, datagram, value lists it must decode to).
fn inputs() -> Vec<(&'static str, Bytes, usize)> {
    let read = |p: &str| {
        let path = format!("{}/tests/testdata/{p}", env!("CARGO_MANIFEST_DIR"));
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    };
    let thirty = load::collectd_datagram_with(30).expect("30 value lists fit in 1452 bytes");
    vec![
        ("real_client_pool", read("01_sqla_idle/000.bin"), 1),
        (
            "collectd_capture_27_lists",
            read("07_collectd_plain/000.bin"),
            27,
        ),
        ("collectd_30_lists", Bytes::from(thirty), 30),
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, datagram, lists) in inputs() {
        let packet = decode(&datagram).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(packet.value_lists.len(), lists, "{name}: value lists");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| decode(black_box(&datagram)).map(|p| p.value_lists.len()))
        });
        // What ingest runs for datagrams of the client's shape.
        if client_report(&datagram).is_some() {
            g.bench_function(format!("{name}_fast_path"), |b| {
                b.iter(|| {
                    client_report(black_box(&datagram))
                        .and_then(|r| route_client(&r))
                        .is_some()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
