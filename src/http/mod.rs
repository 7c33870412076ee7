//! HTTP: the router and its handlers. `/metrics` (or
//! `--web.telemetry-path`) encodes a scrape in the Prometheus text format or
//! OpenMetrics as the scraper's `Accept` asks, gzipped when asked;
//! `/api/v1/pools` is the same snapshot as JSON, `/api/v1/processes` one
//! host/program's processes, `/api/v1/status` the exporter's own health;
//! `/live` is the live fleet page that polls them (`live`); `/` is a landing
//! page,
//! `/-/healthy` and `/-/ready` health checks, `POST /-/reload` re-reads every
//! file; `POST /collectd-post` takes collectd's write_http JSON. TLS, basic
//! auth and headers come from the web config file; the accept loop, its
//! timeouts and its connection cap are in [`serve`], the cap on concurrent
//! scrapes in [`scrapes`].
//!
//! Takes the scrape's sources, the ingest sink and the reloader, each handed
//! only to the handler that uses it; hands on HTTP responses.

pub mod api;
pub mod auth;
pub mod landing;
pub mod live;
pub mod metrics;
pub mod push;
pub mod reload;
pub mod scrapes;
pub mod serve;
pub mod tls;
pub mod web;

use crate::ingest::Sink;
use crate::snapshot::Sources;
use crate::state::Reloader;
use axum::Router;
use axum::extract::FromRef;
use axum::response::Html;
use axum::routing::{get, post};
use std::sync::Arc;

/// What the handlers share; each takes its own part (`FromRef`).
#[derive(Clone, Debug)]
pub struct AppState {
    /// `/metrics`, `/api/v1/pools` and `/api/v1/processes`.
    pub sources: Arc<Sources>,
    /// `POST /collectd-post`.
    pub sink: Arc<Sink>,
    /// `POST /-/reload`.
    pub reloader: Arc<Reloader>,
}

impl FromRef<AppState> for Arc<Sources> {
    fn from_ref(s: &AppState) -> Self {
        s.sources.clone()
    }
}

impl FromRef<AppState> for Arc<Sink> {
    fn from_ref(s: &AppState) -> Self {
        s.sink.clone()
    }
}

impl FromRef<AppState> for Arc<Reloader> {
    fn from_ref(s: &AppState) -> Self {
        s.reloader.clone()
    }
}

/// Every route; `web` adds the web config file's auth and headers to each,
/// `scrapes` limits the scrape routes.
pub fn router(
    state: AppState,
    telemetry_path: &str,
    push_path: &str,
    web: Option<Arc<web::Web>>,
    scrapes: Arc<scrapes::Scrapes>,
) -> Router {
    let limited = || axum::middleware::from_fn_with_state(scrapes.clone(), scrapes::limit);
    // The metrics and push paths take precedence over the API's.
    let serves_api = telemetry_path != crate::api::PATH && push_path != crate::api::PATH;
    let landing = landing::page(telemetry_path, serves_api);
    let live = live::page(telemetry_path, serves_api);
    // A telemetry or push path takes precedence over the page's own.
    let free = |path: &str| path != telemetry_path && path != push_path;
    let mut router = Router::new();
    if !push_path.is_empty() && push_path != telemetry_path {
        router = router.route(push_path, post(push::collectd_post));
    }
    if serves_api {
        router = router.route(crate::api::PATH, get(api::pools).layer(limited()));
    }
    let processes = crate::api::processes::PATH;
    if telemetry_path != processes && push_path != processes {
        router = router.route(processes, get(api::processes).layer(limited()));
    }
    if free(crate::api::status::PATH) {
        router = router.route(crate::api::status::PATH, get(api::status).layer(limited()));
    }
    if free(live::PATH) {
        router = router.route(live::PATH, get(move || live::html(live.clone())));
    }
    if free(live::CSS_PATH) {
        router = router.route(live::CSS_PATH, get(live::css));
    }
    if free(live::JS_PATH) {
        router = router.route(live::JS_PATH, get(live::js));
    }
    let router = router
        .route(telemetry_path, get(metrics::metrics).layer(limited()))
        .route("/", get(move || async move { Html(landing) }))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }))
        .route("/-/reload", post(reload::reload))
        // gzip at its fastest level: on exposition text it still shrinks a
        // scrape about 15 times, for a fifth of the CPU of the default level
        // (a 10,000-pair scrape: 9 MB).
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .with_state(state);
    match web {
        Some(web) => router.layer(axum::middleware::from_fn_with_state(web, auth::guard)),
        None => router,
    }
}
