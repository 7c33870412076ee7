//! `GET /api/v1/pools`: one scrape's SQLAlchemy part as the JSON document of
//! `crate::api` (with `?history=1` each program's recent history too);
//! `GET /api/v1/processes`: one host/program's processes as the document of
//! `crate::api::processes`; `GET /api/v1/status`: the exporter's own health
//! (`crate::api::status`). Takes the scrape's sources;
//! hands on the JSON (400 with a JSON error for a bad query, 404 for an
//! unknown host/program, 500 when it cannot be encoded).

use crate::api::processes::{self, ApiError, Query, QueryError};
use crate::api::{Exporter, add_history, document, status};
use crate::snapshot::Sources;
use crate::store::Now;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The handler: one scrape, encoded as JSON; `?history=1` adds each
/// program's history (`history=0` or no parameter: none; anything else 400).
pub async fn pools(
    State(sources): State<Arc<Sources>>,
    params: Result<axum::extract::Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let history = match params {
        Ok(axum::extract::Query(p)) => match p.get("history").map(String::as_str) {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(other) => {
                let error = format!("history must be 1 or 0, not {other:?}");
                return json(StatusCode::BAD_REQUEST, &ApiError { error });
            }
        },
        Err(e) => {
            let error = e.body_text();
            return json(StatusCode::BAD_REQUEST, &ApiError { error });
        }
    };
    let now = Instant::now();
    let scrape = sources.scrape(now);
    let exporter = Exporter {
        version: scrape.build.version.to_owned(),
        revision: scrape.build.revision.to_owned(),
    };
    let mut doc = document(&scrape.sqla.programs, exporter, Now::wall().unix);
    if history {
        let histories = sources.stores.sqla_histories(now);
        let step = crate::store::sqlalchemy::history::STEP.as_secs_f64();
        add_history(&mut doc, &histories, step);
    }
    json(StatusCode::OK, &doc)
}

/// The handler of `/api/v1/status`: the counters and the store's counts,
/// nothing copied out of the store.
pub async fn status(State(sources): State<Arc<Sources>>) -> Response {
    let telemetry = sources.telemetry.snapshot();
    let counts = sources.stores.sqla_counts(Instant::now());
    let exporter = Exporter {
        version: sources.build.version.to_owned(),
        revision: sources.build.revision.to_owned(),
    };
    let counters = status::Counters {
        listeners: (telemetry.listeners.iter())
            .map(|l| (l.label.as_str(), l.datagrams, l.bytes, l.kernel_drops))
            .collect(),
        datagrams_rejected: &telemetry.datagrams_rejected,
        value_lists_received: telemetry.value_lists_received,
        value_lists_accepted: telemetry.value_lists_accepted,
        value_lists_rejected: &telemetry.value_lists_rejected,
    };
    let doc = status::document(
        &counters,
        counts,
        exporter,
        sources.build.start_time_unix,
        Now::wall().unix,
    );
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
