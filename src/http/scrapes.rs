//! `--web.max-requests`: at most that many scrapes (the telemetry path,
//! `/api/v1/pools` and `/api/v1/processes`) answered at once, as
//! node_exporter's flag of the same name; one more is answered 503 at once
//! and counted
//! (`http_requests_refused_total{reason="max_requests"}`).
//!
//! A scrape holds its slot from its head until hyper has taken the last of
//! its body (see `super::serve`): a large scrape read slowly holds it for as
//! long as that takes, as a Go handler blocked in its `Write` does.
//!
//! Takes the limit and the counters; hands on a middleware for the scrape
//! routes.

use crate::telemetry::{RequestRefusal, Telemetry};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The scrape slots.
#[derive(Debug)]
pub struct Scrapes {
    /// `None`: no limit.
    slots: Option<Arc<Semaphore>>,
    limit: usize,
    telemetry: Arc<Telemetry>,
}

impl Scrapes {
    /// `limit` scrapes at once; 0 for no limit.
    pub fn new(limit: usize, telemetry: Arc<Telemetry>) -> Scrapes {
        Scrapes {
            slots: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            limit,
            telemetry,
        }
    }
}

/// The middleware: the scrape runs with a slot, or is answered 503.
pub async fn limit(State(scrapes): State<Arc<Scrapes>>, request: Request, next: Next) -> Response {
    let Some(slots) = &scrapes.slots else {
        return next.run(request).await;
    };
    match slots.clone().try_acquire_owned() {
        Ok(permit) => next.run(request).await.map(|body| {
            Body::new(Held {
                body,
                _permit: permit,
            })
        }),
        Err(_) => {
            scrapes
                .telemetry
                .http_request_refused(RequestRefusal::MaxRequests);
            tracing::debug!(
                limit = scrapes.limit,
                "a scrape was refused: too many in flight"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                format!(
                    "too many scrapes at once (--web.max-requests {}); try again later\n",
                    scrapes.limit
                ),
            )
                .into_response()
        }
    }
}

/// A response body holding its scrape's slot until it is dropped.
struct Held {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
