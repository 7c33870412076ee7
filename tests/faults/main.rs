//! Faults against the built binary, asserting what a user would see: one
//! module per kind of fault (`connections`: what one HTTP client can do to
//! the listeners; `restarts`: the exporter restarted under a fleet, scraped
//! by a real Prometheus; `clocks`: client clocks stepped, datagrams
//! replayed; `floods`: one sender flooding new process tokens; `overload`:
//! more datagrams than the exporter can take).

#[path = "../common/mod.rs"]
mod common;

mod clocks;
mod connections;
mod floods;
mod restarts;

use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};

/// One report of a process on host `vm` in the real client's layout: the
/// pool datagram, then the totals datagram, with the same TIME (seconds)
/// and interval; `checked_out` of 4 connections, `checkouts` lifetime
/// checkouts, 4 connects.
pub fn report(
    program: &str,
    token: &str,
    time: u64,
    interval: u64,
    checked_out: f64,
    checkouts: u64,
) -> [Vec<u8>; 2] {
    let id = |type_: &str| Identity {
        host: "vm".into(),
        plugin: "sqlalchemy".into(),
        plugin_instance: program.into(),
        type_: type_.into(),
        type_instance: token.into(),
    };
    let pool = [1.0, checked_out, 4.0 - checked_out, 0.0, 4.0].map(Value::Gauge);
    let totals = [checkouts as i64, 0, 4, 0].map(Value::Derive);
    [
        Encoder::new()
            .client_value_list(&id("sqlalchemy_pool"), time, interval, &pool)
            .finish()
            .to_vec(),
        Encoder::new()
            .client_value_list(&id("sqlalchemy_totals"), time, interval, &totals)
            .finish()
            .to_vec(),
    ]
}
