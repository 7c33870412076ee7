//! Any bytes as a write_http JSON body: `json::parse` never panics, and the
//! value lists it accepts obey the binary protocol's limits and go through
//! routing, the stores and a scrape like datagrams do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::collectd::json;
use sqlalchemy_collectd_exporter_fuzz::Pipeline;

fuzz_target!(|data: &[u8]| {
    match json::parse(data) {
        Ok(value_lists) => {
            let mut pipeline = Pipeline::new();
            pipeline.ingest(value_lists);
            pipeline.scrape_and_check();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
