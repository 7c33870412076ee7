//! Any UTF-8 text as the `--web.config.file` YAML: `WebConfig::parse` never
//! panics (the error placement scans the text by hand), every error names
//! the file with a line and column, and an accepted file's TLS settings
//! name their keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlalchemy_collectd_exporter::config::web::{WebConfig, WebConfigError};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The longest UTF-8 prefix, so mutations that break UTF-8 still test something.
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    };
    match WebConfig::parse(text, "fuzz.yml", Path::new("/nonexistent")) {
        Ok(config) => {
            let _ = config.summary();
            if let Some(tls) = &config.tls {
                // The files do not exist: loading fails, naming the key.
                if let Err(e) = tls.server_config() {
                    assert!(e.to_string().starts_with("fuzz.yml:"), "{e}");
                }
            }
        }
        Err(e @ WebConfigError::Invalid { line, column, .. }) => {
            assert!(line >= 1 && column >= 1, "{e}");
            assert!(e.to_string().starts_with("fuzz.yml:"), "{e}");
        }
        Err(e) => panic!("parsing reads no file: {e}"),
    }
});
