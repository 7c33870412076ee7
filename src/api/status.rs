//! The document of `GET /api/v1/status`: the exporter's own health as the
//! live page shows it — datagrams and bytes received, rejections by reason,
//! kernel drops, processes and programs tracked — the same counters as the
//! `sqlalchemy_collectd_exporter_*` series of `/metrics`, as totals (a reader
//! makes rates from two documents and their `server_time_unix`).
//!
//! Takes the counters as `crate::telemetry` copies them ([`Counters`], filled
//! by the handler) and the store's counts; hands on a [`Status`] document
//! whose schema the README describes.

use crate::api::Exporter;
use crate::store::sqlalchemy::Counts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the document is served.
pub const PATH: &str = "/api/v1/status";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub exporter: Exporter,
    /// The exporter's wall clock when the document was built, Unix seconds.
    pub server_time_unix: f64,
    /// When the exporter started, Unix seconds.
    pub start_time_unix: f64,
    /// Datagrams received on every UDP listener, since the start.
    pub datagrams_received: u64,
    pub bytes_received: u64,
    /// Datagrams the kernel dropped (socket buffer full) summed over the
    /// listeners where the OS reports it; `null` where none does.
    pub kernel_drops: Option<u64>,
    /// Whole datagrams dropped, by reason (every reason, 0 included).
    pub datagrams_rejected: BTreeMap<String, u64>,
    pub value_lists_received: u64,
    pub value_lists_accepted: u64,
    /// Value lists of accepted datagrams that changed nothing, by reason.
    pub value_lists_rejected: BTreeMap<String, u64>,
    /// Live SQLAlchemy client processes.
    pub processes_live: u64,
    /// Processes held in memory, dead ones included.
    pub processes_tracked: u64,
    /// Host/programs exported (dead ones until `--forget-after`).
    pub programs: u64,
    pub listeners: Vec<Listener>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub address: String,
    pub datagrams: u64,
    pub kernel_drops: Option<u64>,
}

/// The exporter's counters, as a telemetry snapshot holds them.
#[derive(Clone, Debug, Default)]
pub struct Counters<'a> {
    /// Each UDP listener: address, datagrams, bytes, kernel drops.
    pub listeners: Vec<(&'a str, u64, u64, Option<u64>)>,
    pub datagrams_rejected: &'a [(&'static str, u64)],
    pub value_lists_received: u64,
    pub value_lists_accepted: u64,
    pub value_lists_rejected: &'a [(&'static str, u64)],
}

/// Builds the document at `now_unix` (the exporter's clock).
pub fn document(
    telemetry: &Counters<'_>,
    counts: Counts,
    exporter: Exporter,
    start_time_unix: f64,
    now_unix: f64,
) -> Status {
    let by_reason = |all: &[(&str, u64)]| {
        all.iter()
            .map(|(reason, n)| ((*reason).to_owned(), *n))
            .collect::<BTreeMap<_, _>>()
    };
    let listeners = &telemetry.listeners;
    let kernel_drops = listeners.iter().filter_map(|l| l.3).reduce(|a, b| a + b);
    Status {
        exporter,
        server_time_unix: now_unix,
        start_time_unix,
        datagrams_received: listeners.iter().map(|l| l.1).sum(),
        bytes_received: listeners.iter().map(|l| l.2).sum(),
        kernel_drops,
        datagrams_rejected: by_reason(telemetry.datagrams_rejected),
        value_lists_received: telemetry.value_lists_received,
        value_lists_accepted: telemetry.value_lists_accepted,
        value_lists_rejected: by_reason(telemetry.value_lists_rejected),
        processes_live: counts.live_processes,
        processes_tracked: counts.tracked_processes,
        programs: counts.programs,
        listeners: listeners
            .iter()
            .map(|l| Listener {
                address: l.0.to_owned(),
                datagrams: l.1,
                kernel_drops: l.3,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_listeners_and_names_every_reason() {
        let telemetry = Counters {
            listeners: vec![("127.0.0.1:1", 5, 500, Some(2)), ("[::1]:1", 7, 700, None)],
            datagrams_rejected: &[("malformed", 3), ("bad_signature", 0)],
            value_lists_received: 20,
            value_lists_accepted: 18,
            value_lists_rejected: &[("stale", 2)],
        };
        let counts = Counts {
            live_processes: 4,
            tracked_processes: 6,
            programs: 2,
        };
        let exporter = Exporter {
            version: "1.2.3".into(),
            revision: "abc".into(),
        };
        let doc = document(&telemetry, counts, exporter, 900.0, 1000.5);
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"exporter":{"version":"1.2.3","revision":"abc"},"server_time_unix":1000.5,"start_time_unix":900.0,"datagrams_received":12,"bytes_received":1200,"kernel_drops":2,"datagrams_rejected":{"bad_signature":0,"malformed":3},"value_lists_received":20,"value_lists_accepted":18,"value_lists_rejected":{"stale":2},"processes_live":4,"processes_tracked":6,"programs":2,"listeners":[{"address":"127.0.0.1:1","datagrams":5,"kernel_drops":2},{"address":"[::1]:1","datagrams":7,"kernel_drops":null}]}"#
        );
        let none = Counters::default();
        assert_eq!(
            document(&none, counts, doc.exporter.clone(), 0.0, 0.0).kernel_drops,
            None
        );
    }
}
