//! `/`: the landing page, linking the live page, the metrics, the pools
//! document (where it is served) and the health checks. Takes the paths in use; hands on the
//! page, built once at start.

/// `/`: links to the metrics, the pools document (when `serves_api`: a
/// telemetry or push path can take its place) and the health checks.
pub fn page(telemetry_path: &str, serves_api: bool) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let live = crate::http::live::PATH;
    let api = if serves_api {
        format!(
            "<li><a href=\"{}\">Pools (JSON, what <code>top</code> reads)</a></li>\n",
            crate::api::PATH
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html><head><title>sqlalchemy-collectd-exporter</title></head>\n<body>\n\
         <h1>sqlalchemy-collectd-exporter {version}</h1>\n\
         <p>SQLAlchemy connection-pool statistics from sqlalchemy-collectd clients and collectd, for Prometheus.</p>\n\
         <ul>\n<li><a href=\"{live}\">Live pools (the fleet page)</a></li>\n<li><a href=\"{telemetry_path}\">Metrics</a></li>\n{api}\
         <li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n\
         </body></html>\n"
    )
}
