//! sqlalchemy-collectd-exporter: collectd datagrams in, Prometheus metrics out.
//!
//! 1. `ingest` receives datagrams on the collectd UDP listeners;
//! 2. `collectd::decode` turns each into value lists (pure, zero-copy);
//! 3. `route` sorts them into SQLAlchemy pool, totals and transaction records;
//! 4. `store::sqlalchemy` keeps per-process state and sums it per host/program;
//! 5. `exposition` encodes a snapshot of the stores on every scrape.
//!
//! `config` turns flags into a `Config`, `server` binds and runs it all,
//! `telemetry` counts what the exporter itself does; `api` serves the
//! SQLAlchemy snapshot as JSON, which `top` (a terminal client) reads;
//! `webconfig` adds TLS, basic auth and headers to the HTTP listeners
//! (`--web.config.file`).

pub mod api;
#[cfg(test)]
mod build_date;
pub mod capacity;
pub mod collectd;
pub mod config;
pub mod exposition;
pub mod ingest;
pub mod manual;
pub mod memory;
pub mod push;
pub mod route;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod top;
pub mod typesdb;
pub mod webconfig;
