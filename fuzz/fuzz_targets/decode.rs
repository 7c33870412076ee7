//! Any bytes as a datagram: `decode` and `decode_with` (the test captures'
//! keys) never panic; what they decode is well formed, survives being written
//! again, and goes through routing, the stores and a scrape in both formats,
//! which must stay valid (each family declared once).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::collectd::{decode, decode_with};
use sqlalchemy_collectd_exporter_fuzz::{Pipeline, check_round_trip, keys};

fuzz_target!(|data: &[u8]| {
    let datagram = Bytes::copy_from_slice(data);
    let mut pipeline = Pipeline::new();
    for result in [decode(&datagram), decode_with(&datagram, Some(keys()))] {
        match result {
            Ok(packet) => {
                if packet.username.is_none() {
                    // Nothing protected: both decodes must agree.
                    check_round_trip(&packet);
                }
                pipeline.ingest(packet.value_lists);
            }
            Err(e) => {
                // Every error has a metric label and a message.
                assert!(!e.kind().is_empty() && !e.to_string().is_empty());
                pipeline.telemetry().decode_error(&e);
            }
        }
    }
    pipeline.scrape_and_check();
});
