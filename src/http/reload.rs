//! `POST /-/reload`: re-reads every configured file, as SIGHUP does (one
//! [`Reloader`] for both). 200 when every file loaded, 500 when one did not
//! (its last good version stays in use, the others are reloaded all the
//! same); the body names each file and its result. Takes the reloader; hands
//! on the answer.

use crate::state::{Reloader, answer};
use crate::store::Now;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn reload(State(reloader): State<Arc<Reloader>>) -> Response {
    let outcomes = reloader.reload(Now::wall().unix);
    let code = if outcomes.iter().all(|o| o.result.is_ok()) {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (code, answer(&outcomes)).into_response()
}
