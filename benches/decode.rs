//! Decode cost per datagram, `cargo bench --bench decode`: the real
//! client's datagram (one value list, captured in tests/testdata), a
//! captured collectd 5.12 datagram (27 value lists, the most of any
//! capture) and a collectd-layout datagram of exactly 30 value lists built
//! with the encoder (none of the captures has 30). The benchmark example
//! times the same inputs in-process for its table (both take them from
//! `tests/common/load.rs`). The client's datagram is also timed on ingest's fast path
//! (`client_report` + `route_client`), which takes it without `decode`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::load::{DecodeInput, decode_inputs};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlalchemy_collectd_exporter::collectd::{client_report, decode};
use sqlalchemy_collectd_exporter::route::route_client;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for DecodeInput {
        id: name,
        datagram,
        lists,
        ..
    } in decode_inputs()
    {
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
