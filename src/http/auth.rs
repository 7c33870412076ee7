//! Basic auth and response headers of the web config file, as middleware on
//! every route: the configured headers on every response, and 401 with
//! `WWW-Authenticate: Basic` unless the request carries a configured user's
//! credentials (when users are configured).
//!
//! Takes the web config in use (`super::web::Web`) and a request; hands on
//! the response. Verified credentials are remembered so that a scrape does
//! not cost a bcrypt; one bcrypt runs at a time.

use super::web::Web;
use crate::config::web::WebConfig;
use crate::store::lock;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Verified credentials remembered, so that a scrape does not cost a bcrypt.
const AUTH_CACHE_ENTRIES: usize = 100;

/// Credentials bcrypt accepted, and the one bcrypt that may run.
pub struct Auth {
    /// SHA-256 of (user, hash, password) for credentials bcrypt accepted.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time: it is slow on purpose, and a flood of bad
    /// passwords must not take every core.
    bcrypt: tokio::sync::Semaphore,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            verified: Mutex::new(HashSet::new()),
            bcrypt: tokio::sync::Semaphore::new(1),
        }
    }
}

impl Auth {
    /// Forgets every verified credential (the users changed).
    pub fn forget(&self) {
        lock(&self.verified).clear();
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        lock(&self.verified).contains(key)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut set = lock(&self.verified);
        if set.len() >= AUTH_CACHE_ENTRIES
            && let Some(old) = set.iter().next().copied()
        {
            set.remove(&old);
        }
        set.insert(key);
    }

    /// Whether the request's basic-auth credentials are a configured user's.
    async fn authorized(&self, config: &WebConfig, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let (hash, known) = match config.hash_of(&user) {
            Some(h) => (h.to_owned(), true),
            // An unknown user costs a bcrypt too, so timing does not tell
            // which users exist.
            None => (decoy_hash().to_owned(), false),
        };
        let mut hasher = Sha256::new();
        for part in [user.as_bytes(), hash.as_bytes(), password.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let key: [u8; 32] = hasher.finalize().into();
        if known && self.remembered(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        // bcrypt compares its output in constant time.
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && known {
            self.remember(key);
        }
        ok && known
    }
}

/// A bcrypt hash that no password the client can send matches in practice
/// (made once, from random bytes), for unknown users.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut seed = [0u8; 16];
        let _ = getrandom_seed(&mut seed);
        bcrypt::hash(seed, 10).unwrap_or_default()
    })
}

/// Random bytes from the kernel; on failure the decoy is still a valid hash
/// (of a fixed input), which only matters for timing.
fn getrandom_seed(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The middleware (see the module's header).
pub async fn guard(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let config = web.config();
    let mut response =
        if config.users() == 0 || web.auth().authorized(&config, request.headers()).await {
            next.run(request).await
        } else {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response()
        };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cDpx"),
        );
        assert_eq!(basic_credentials(&h), Some(("alice".into(), "p:q".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert_eq!(basic_credentials(&h), None);
    }
}
