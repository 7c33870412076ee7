//! `GET /api/v1/pools`: one scrape's SQLAlchemy part as the JSON document of
//! `crate::api`. Takes the scrape's sources; hands on the JSON (500 when it
//! cannot be encoded).

use crate::api::{Exporter, document};
use crate::snapshot::Sources;
use crate::store::Now;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// The handler: one scrape, encoded as JSON.
pub async fn pools(State(sources): State<Arc<Sources>>) -> Response {
    let scrape = sources.scrape(Instant::now());
    let exporter = Exporter {
        version: scrape.build.version.to_owned(),
        revision: scrape.build.revision.to_owned(),
    };
    let doc = document(&scrape.sqla.programs, exporter, Now::wall().unix);
    match serde_json::to_string(&doc) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding the pools document failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
    }
}
