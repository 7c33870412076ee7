//! Any UTF-8 text as the `--config.file` YAML: `Capacity::parse` never
//! panics (nor overflows its stack on deep nesting), errors name the file
//! (with a line and column, never 0:0, when they are about the YAML), and an
//! accepted file can be applied to a scrape's programs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::config::file::{Capacity, ConfigFileError};
use sqlalchemy_collectd_exporter::route::Pool;
use sqlalchemy_collectd_exporter::store::sqlalchemy::ProgramSnapshot;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    // The longest UTF-8 prefix, so mutations that break UTF-8 still test something.
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    };
    match Capacity::parse(text, "fuzz.yml") {
        Ok(capacity) => {
            let mut programs: Vec<ProgramSnapshot> = [("web1", "api"), ("", ""), ("b", "worker-1")]
                .into_iter()
                .map(|(host, program)| ProgramSnapshot {
                    host: Arc::from(host),
                    program: Arc::from(program),
                    processes: 1,
                    pool: Pool {
                        numpools: 2.0,
                        connections: 3.0,
                        ..Pool::default()
                    },
                    totals: [0; 4],
                    transactions: None,
                    last_report_unix: 0.0,
                    interval_seconds: 0.0,
                    connections_max: None,
                    clock_offset_seconds: None,
                    clock_steps: 0,
                    checked_out_peak: 0.0,
                    connections_peak: 3.0,
                })
                .collect();
            let databases = capacity.apply(&mut programs);
            assert_eq!(databases.len(), capacity.database_rules());
        }
        Err(e @ ConfigFileError::Invalid { line, column, .. }) => {
            assert!(line >= 1 && column >= 1, "{e}");
            assert!(e.to_string().starts_with("fuzz.yml:"), "{e}");
        }
        Err(e @ ConfigFileError::Semantic { .. }) => {
            assert!(e.to_string().starts_with("fuzz.yml: "), "{e}")
        }
        Err(e @ ConfigFileError::Read { .. }) => panic!("parsing reads no file: {e}"),
    }
});
