//! `GET /api/v1/pools`: one scrape's SQLAlchemy part as the JSON document of
//! `crate::api`; `GET /api/v1/processes`: one host/program's processes as
//! the document of `crate::api::processes`. Takes the scrape's sources;
//! hands on the JSON (400 with a JSON error for a bad query, 404 for an
//! unknown host/program, 500 when it cannot be encoded).

use crate::api::processes::{self, ApiError, Query, QueryError};
use crate::api::{Exporter, document};
use crate::snapshot::Sources;
use crate::store::Now;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
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
    json(StatusCode::OK, &doc)
}

/// The handler of `/api/v1/processes?host=H&program=P[&sort=…&offset=…&limit=…]`.
pub async fn processes(
    State(sources): State<Arc<Sources>>,
    params: Result<axum::extract::Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = params
        .map_err(|e| QueryError::Malformed(e.body_text()))
        .and_then(|axum::extract::Query(p)| Query::parse(&p));
    let query = match query {
        Ok(q) => q,
        Err(e) => {
            let body = ApiError {
                error: e.to_string(),
            };
            return json(StatusCode::BAD_REQUEST, &body);
        }
    };
    let now = Now::wall();
    // The page is selected under the store's lock; named after it.
    let list = sources.stores.sqla_processes(
        &query.host,
        &query.program,
        now.at,
        query.sort.order(),
        query.offset,
        query.limit,
    );
    let Some(list) = list else {
        return json(StatusCode::NOT_FOUND, &processes::unknown(&query));
    };
    let exporter = Exporter {
        version: sources.build.version.to_owned(),
        revision: sources.build.revision.to_owned(),
    };
    let doc = processes::document(&list, &query, exporter, now.unix);
    json(StatusCode::OK, &doc)
}

fn json<T: serde::Serialize>(status: StatusCode, doc: &T) -> Response {
    match serde_json::to_string(doc) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding an API document failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
    }
}
