//! What a scrape copies out of the running exporter: the counters first,
//! then each store under its own lock for its copy only; names, labels,
//! capacities and sorting are built after the locks are released.
//!
//! Takes the stores, the counters, the config file in use and the reload
//! statuses ([`Sources`]); hands on a [`Scrape`] that `crate::exposition`
//! encodes and `crate::api` turns into the pools document. Used by
//! `/metrics`, `/api/v1/pools`, the fuzz targets and the benchmark.

use crate::collectd::typesdb::TypesDb;
use crate::config::file::Capacity;
use crate::exposition::Scrape;
use crate::exposition::families::BuildInfo;
use crate::exposition::generic::resolve;
use crate::state::{Current, Reloader};
use crate::store::Stores;
use crate::store::collectd::Live;
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Instant;

/// Everything a scrape reads.
#[derive(Debug)]
pub struct Sources {
    pub stores: Arc<Stores>,
    pub telemetry: Arc<Telemetry>,
    /// The config file in use (capacities and databases).
    pub capacity: Arc<Current<Capacity>>,
    pub reloader: Arc<Reloader>,
    pub typesdb: Arc<TypesDb>,
    /// `--collectd.host-label`.
    pub host_label: String,
    /// `--metrics.otel-names`.
    pub otel_names: bool,
    pub build: BuildInfo,
}

impl Sources {
    /// Takes everything a scrape encodes at `now`, each lock held only for
    /// its copy.
    ///
    /// The counters are read before the store: ingest counts a value list as
    /// accepted only after the store holds it, so whatever the counters say
    /// was accepted is in the snapshot too.
    pub fn scrape(&self, now: Instant) -> Scrape {
        let telemetry = self.telemetry.snapshot();
        let mut sqla = self.stores.sqla_snapshot(now);
        sqla.sort();
        let databases = self.capacity.get().apply(&mut sqla.programs);
        // Copy under the lock; names and labels are built after it is released.
        let live = self.stores.generic_live(now);
        let generic = resolve(&live, &self.typesdb, &self.host_label);
        free_later(live);
        Scrape {
            sqla,
            databases,
            reloads: self.reloader.statuses(),
            generic,
            telemetry,
            build: self.build.clone(),
            otel: self.otel_names,
        }
    }
}

/// Value lists copied beyond which [`free_later`] frees them on a thread of
/// its own.
const FREE_LATER: usize = 10_000;

/// Frees the copy of the generic store after the scrape instead of before
/// its encoding: a million value lists are two million small allocations,
/// tens of milliseconds to free and to give back to the system. A small copy
/// (or one whose thread cannot start) is freed at once.
fn free_later(live: Live) {
    if live.entries().len() < FREE_LATER {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("scrape-free".into())
        .spawn(move || {
            drop(live);
            crate::memory::release_free_memory();
        });
}
