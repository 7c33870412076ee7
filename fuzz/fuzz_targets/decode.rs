//! Any bytes as a datagram: `decode` and `decode_with` (the test captures'
//! keys) never panic; what they decode is well formed, survives being written
//! again. The datagram then goes through the production ingest sink (fast
//! path, decode, route, stores, accounting), with and without the keys, and
//! the production scrape in both formats must stay valid (each family
//! declared once). The fast path for the real client's datagrams agrees with
//! `decode` on every datagram it takes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::collectd::{client_report, decode, decode_with};
use sqlalchemy_collectd_exporter_fuzz::{Pipeline, check_round_trip, keys};

fuzz_target!(|data: &[u8]| {
    let datagram = Bytes::copy_from_slice(data);
    if let Some(report) = client_report(data) {
        let packet = decode(&datagram).expect("the fast path takes only datagrams decode accepts");
        assert!(packet.notifications.is_empty() && packet.username.is_none());
        assert_eq!(packet.value_lists.len(), 1);
        let vl = &packet.value_lists[0];
        assert_eq!(
            [
                vl.id.host.as_str(),
                vl.id.plugin.as_str(),
                vl.id.plugin_instance.as_str(),
                vl.id.type_.as_str(),
                vl.id.type_instance.as_str()
            ],
            [
                report.host,
                report.plugin,
                report.plugin_instance,
                report.type_,
                report.type_instance
            ]
        );
        assert_eq!((vl.time, vl.interval), (report.time, report.interval));
        assert_eq!(vl.values.as_ref(), report.values);
    }
    for result in [decode(&datagram), decode_with(&datagram, Some(keys()))] {
        match result {
            Ok(packet) => {
                if packet.username.is_none() {
                    // Nothing protected: both decodes must agree.
                    check_round_trip(&packet);
                }
            }
            // Every error has a metric label and a message.
            Err(e) => assert!(!e.kind().as_str().is_empty() && !e.to_string().is_empty()),
        }
    }
    for mut pipeline in [Pipeline::new(), Pipeline::with_auth_file()] {
        pipeline.datagram(data);
        pipeline.scrape_and_check();
    }
});
