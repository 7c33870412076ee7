//! sqlalchemy-collectd-exporter: collectd datagrams in, Prometheus metrics out.
//!
//! The modules, in the order the data flows (each depends only on the ones
//! before it; `tests/architecture.rs` keeps it so):
//!
//! 1. `collectd`: decode, encode, security and types.db (pure: bytes in,
//!    value lists out);
//! 2. `route`: value lists into SQLAlchemy pool, totals and transaction
//!    records, or generic ones (pure);
//! 3. `store`: per-process state summed per host/program, and generic value
//!    lists; time is an argument;
//! 4. `telemetry`: the exporter's own counters;
//! 5. `config`: the validated `Config`, the config file and the web config file;
//! 6. `state`: what a reload replaces, and the one reload of every file;
//! 7. `ingest`: the `Sink` (route + apply + count) and the UDP receive loop;
//! 8. `exposition`: the family table and both text formats (pure);
//! 9. `snapshot`: what a scrape copies out of the stores;
//! 10. `api`: the `/api/v1/pools` document, which `top` reads;
//! 11. `http`: router, handlers, TLS and auth;
//! 12. `server`: bind, then run until shutdown;
//! 13. `cli`: flags → `Config`; `manual` and `top` hang off it.
//!
//! `docs/architecture.md` is the map: stages, locks, and where to add a
//! metric, a flag, a collectd type or a route.

pub mod api;
#[cfg(test)]
mod build_date;
pub mod cli;
pub mod collectd;
pub mod config;
pub mod exposition;
pub mod http;
pub mod ingest;
pub mod manual;
pub mod memory;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod top;
