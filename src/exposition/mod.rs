//! HTTP: `/metrics` (or `--web.telemetry-path`) encodes a snapshot of the
//! stores and the exporter's own counters on every scrape, in the Prometheus
//! text format or OpenMetrics as the scraper's `Accept` asks, gzipped when
//! asked; `/` is a landing page, `/-/healthy` and `/-/ready` health checks;
//! `/api/v1/pools` is the same snapshot as JSON (`crate::api`).

pub mod families;
pub mod openmetrics;
pub mod text;

use crate::server::{Shared, lock};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use families::Scrape;
use std::sync::Arc;
use std::time::Instant;

pub fn router(shared: Arc<Shared>, telemetry_path: &str, push_path: &str) -> Router {
    // The metrics and push paths take precedence over the API's.
    let serves_api = telemetry_path != crate::api::PATH && push_path != crate::api::PATH;
    let landing = landing_page(telemetry_path, serves_api);
    let mut router = Router::new();
    if !push_path.is_empty() && push_path != telemetry_path {
        router = router.route(push_path, post(crate::push::collectd_post));
    }
    if serves_api {
        router = router.route(crate::api::PATH, get(crate::api::pools));
    }
    router
        .route(telemetry_path, get(metrics))
        .route("/", get(move || async move { Html(landing) }))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }))
        .route("/-/reload", post(reload))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(shared)
}

/// Takes everything a scrape encodes, each lock held only for its copy.
///
/// The counters are read before the store: ingest counts a value list as
/// accepted only after the store holds it, so whatever the counters say was
/// accepted is in the snapshot too.
pub fn scrape(shared: &Shared, now: Instant) -> Scrape {
    let telemetry = shared.telemetry.snapshot();
    let mut sqla = lock(&shared.sqla).snapshot_unsorted(now);
    sqla.sort();
    let databases = shared.capacity().apply(&mut sqla.programs);
    // Copy under the lock; names and labels are built after it is released.
    let live = lock(&shared.generic).live(now);
    let generic = live.resolve(&shared.typesdb, &shared.host_label);
    Scrape {
        sqla,
        databases,
        reload: *lock(&shared.reload),
        generic,
        telemetry,
        build: shared.build.clone(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

/// OpenMetrics when the scraper ranks it at least as high as the text format.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "*/*" | "text/*" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

pub fn encode(scrape: Scrape, format: Format) -> Result<(String, &'static str), std::fmt::Error> {
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::Text => {
            families::write(&scrape, &mut text::TextWriter::new(&mut out))?;
            Ok((out, text::CONTENT_TYPE))
        }
        Format::OpenMetrics => {
            openmetrics::encode(Arc::new(scrape), &mut out)?;
            Ok((out, openmetrics::CONTENT_TYPE))
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let now = Instant::now();
    // A large scrape takes a while: off the async workers, so that other
    // requests (health checks, pushes) are not held up behind it.
    let encoded = tokio::task::spawn_blocking(move || {
        yield_to_ingest();
        let encoded = encode(scrape(&shared, now), format);
        // Its temporaries are freed by now; give their pages back.
        crate::memory::release_free_memory();
        encoded
    })
    .await;
    match encoded {
        Ok(Ok((body, content_type))) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        _ => {
            tracing::error!("encoding the scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice 10), so that on a
/// busy core the receive threads run first: a datagram waits in a socket
/// buffer of bounded size, a scrape can wait for the CPU. (On Linux the nice
/// value is per thread; the blocking pool's threads run scrapes and other
/// work that is not urgent.)
fn yield_to_ingest() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the nice value of the calling thread
    // (`who` 0); it touches no memory.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// `POST /-/reload`: re-reads the config file (and the auth and web config files); 500 with
/// the reason when one does not load (the old one stays in use).
async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    let result = shared
        .reload_config()
        .map_err(|e| e.to_string())
        .and_then(|()| shared.reload_auth_file().map_err(|e| e.to_string()))
        .and_then(|()| shared.reload_web_config().map_err(|e| e.to_string()));
    match result {
        Ok(()) => (StatusCode::OK, "reloaded\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the previous configuration");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

/// `/`: links to the metrics, the pools document (when `serves_api`: a
/// telemetry or push path can take its place) and the health checks.
fn landing_page(telemetry_path: &str, serves_api: bool) -> String {
    let version = env!("CARGO_PKG_VERSION");
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
         <ul>\n<li><a href=\"{telemetry_path}\">Metrics</a></li>\n{api}\
         <li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n\
         </body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_accept_header_gets_openmetrics() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn curl_gets_text() {
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(None), Format::Text);
    }

    #[test]
    fn text_preferred_over_openmetrics_gets_text() {
        let a = "text/plain;version=0.0.4,application/openmetrics-text;q=0.5";
        assert_eq!(negotiate(Some(a)), Format::Text);
    }
}
