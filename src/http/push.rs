//! `POST /collectd-post` (`--web.collectd-push-path`): collectd's write_http
//! plugin in JSON format. The body is parsed whole (up to
//! [`MAX_PUSH_BYTES`]) and goes through the same routing, stores and limits
//! as datagrams (the ingest [`Sink`]); a body that is not valid collectd JSON
//! is refused whole with a 400 that says what was wrong.

use crate::collectd::{SecurityLevel, json};
use crate::ingest::Sink;
use crate::store::sqlalchemy::Source;
use crate::telemetry::PushOutcome;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// write_http sends at most its `BufferSize` (4 KiB by default) per request;
/// 8 MiB leaves room for any sane configuration and bounds memory.
pub const MAX_PUSH_BYTES: usize = 8 << 20;

pub async fn collectd_post(
    State(sink): State<Arc<Sink>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The sender shares the series limit with the others by its address.
    let source = peer.map_or(Source::default(), |p| Source::of(p.0.0.ip()));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (outcome, message) = match announced {
        // Refused before reading: no need to take in a body we will not use.
        Some(n) if n > MAX_PUSH_BYTES as u64 => too_large(),
        _ => handle(&sink, source, body).await,
    };
    sink.telemetry().push_request(outcome);
    (status(outcome), message).into_response()
}

/// The answer's status code, which the outcome's label names.
fn status(outcome: PushOutcome) -> StatusCode {
    match outcome {
        PushOutcome::Received => StatusCode::OK,
        PushOutcome::BadBody => StatusCode::BAD_REQUEST,
        PushOutcome::Forbidden => StatusCode::FORBIDDEN,
        PushOutcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
    }
}

fn too_large() -> (PushOutcome, String) {
    (
        PushOutcome::TooLarge,
        format!("body larger than {MAX_PUSH_BYTES} bytes\n"),
    )
}

async fn handle(sink: &Sink, source: Source, body: Body) -> (PushOutcome, String) {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PUSH_BYTES).await else {
        return too_large();
    };
    let level = sink.security_level();
    if level != SecurityLevel::None {
        // write_http data is neither signed nor encrypted.
        return (
            PushOutcome::Forbidden,
            format!(
                "collectd security level {:?} accepts only signed or encrypted datagrams\n",
                level
            ),
        );
    }
    match json::parse(&bytes) {
        Ok(value_lists) => {
            let n = value_lists.len();
            sink.value_lists_from(value_lists, "write_http", source);
            (PushOutcome::Received, format!("received {n} value lists\n"))
        }
        Err(e) => {
            tracing::debug!(error = %e, "write_http body rejected");
            (PushOutcome::BadBody, format!("{e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_counted_under_its_status_code() {
        for outcome in PushOutcome::ALL {
            assert_eq!(status(outcome).as_str(), outcome.as_str());
        }
    }
}
