//! `GET /metrics`: one scrape, encoded off the async workers at a lower
//! priority than ingest (unless ingest is saturated: then at the same), its
//! freed memory given back beside the response.
//!
//! Takes the scrape's [`Sources`] and the `Accept` header; hands on the
//! encoded body (500 when encoding fails, never a panic).

use crate::exposition::{encode, negotiate};
use crate::snapshot::Sources;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

pub async fn metrics(State(sources): State<Arc<Sources>>, headers: HeaderMap) -> Response {
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let now = Instant::now();
    let behind = sources.telemetry.ingest_behind();
    let work = move || encode(sources.scrape(now), format);
    // A large scrape takes a while: off the async workers, so that other
    // requests (health checks, pushes) are not held up behind it.
    let encoded = if behind {
        // Ingest is saturated: drops happen whatever the scrape does, and a
        // scrape waiting behind it would be one more loss (Prometheus marks
        // the target down). A thread of its own at the async workers'
        // priority (nice 0; a thread cannot raise its own priority back
        // once lowered without privileges).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("scrape".into())
            .spawn(move || {
                let _ = tx.send(work());
            });
        match spawned {
            Ok(_) => rx.await.ok(),
            Err(_) => None,
        }
    } else {
        tokio::task::spawn_blocking(move || {
            yield_to_ingest();
            work()
        })
        .await
        .ok()
    };
    // The scrape's temporaries are freed by now; their pages are given back
    // beside the response, not before it (a large scrape's: milliseconds).
    drop(tokio::task::spawn_blocking(
        crate::memory::release_free_memory,
    ));
    match encoded {
        Some(Ok((body, content_type))) => {
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
