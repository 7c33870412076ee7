//! HTTPS: the rustls configuration in use, rebuilt when the certificate
//! files change, and the accept loop that serves the router over it.
//!
//! Takes the TLS settings of the web config file (`crate::config::web`) and
//! a router; hands on served connections. A handshake that fails or stalls
//! closes that connection only.

use super::web::Web;
use crate::config::web::{Stamp, TlsSettings, WebConfigError};
use crate::store::lock;
use rustls::server::ServerConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TLS client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The certificate files are compared with what is in use at most this often
/// (on a new connection), so a rotated certificate is served within about a
/// second without a restart.
pub(crate) const CERT_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The TLS configuration in use and what its sources held.
struct TlsState {
    settings: TlsSettings,
    config: Arc<ServerConfig>,
    stamp: Stamp,
    checked: Instant,
}

/// The certificates of the HTTPS listeners.
pub struct Certificates(Mutex<TlsState>);

impl Certificates {
    /// Reads the certificate, key and CA files `settings` name.
    pub fn load(settings: &TlsSettings) -> Result<Certificates, WebConfigError> {
        Ok(Certificates(Mutex::new(Self::state(settings)?)))
    }

    fn state(settings: &TlsSettings) -> Result<TlsState, WebConfigError> {
        let stamp = settings.stamp();
        let config = settings.server_config()?;
        Ok(TlsState {
            settings: settings.clone(),
            config,
            stamp,
            checked: Instant::now(),
        })
    }

    /// New settings (a reload); on error the ones in use stay.
    pub fn replace(&self, settings: &TlsSettings) -> Result<(), WebConfigError> {
        let state = Self::state(settings)?;
        *lock(&self.0) = state;
        Ok(())
    }

    /// The TLS configuration for a new connection; rebuilt first when the
    /// certificate, key or CA files changed (checked at most once a second).
    /// Files that do not load keep the configuration in use, and say why.
    pub fn current(&self, path: &Path) -> Arc<ServerConfig> {
        self.current_at(Instant::now(), path)
    }

    pub(crate) fn current_at(&self, now: Instant, path: &Path) -> Arc<ServerConfig> {
        let mut state = lock(&self.0);
        if now.duration_since(state.checked) >= CERT_CHECK_EVERY {
            state.checked = now;
            let stamp = state.settings.stamp();
            if stamp != state.stamp {
                // Remembered either way: a half-written pair is tried again
                // when the other file changes too, not every second.
                state.stamp = stamp;
                match state.settings.server_config() {
                    Ok(config) => {
                        state.config = config;
                        tracing::info!(path = %path.display(), "TLS certificate files changed; now in use");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS certificate files changed but do not load; keeping the previous ones");
                    }
                }
            }
        }
        state.config.clone()
    }
}

/// Serves `router` over TLS on `listener` until `stop` turns true. Each
/// connection is its own task: a handshake that fails is logged at debug
/// level and closes that connection only, and one that does not finish
/// within [`HANDSHAKE_TIMEOUT`] is dropped, so a slow client holds up nobody.
/// Once stopped, no connection is accepted; idle ones are closed and
/// requests in flight finish, for at most `grace`.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    web: Arc<Web>,
    stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            () = stopped_signal(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (router, web) = (router.clone(), web.clone());
                    connections.spawn(serve_connection(stream, peer, router, web, stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: let connections finish.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(grace = ?grace, "HTTPS connections still open at shutdown were closed");
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped_signal(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: axum::Router,
    web: Arc<Web>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(config) = web.server_config() else {
        return;
    };
    let http2 = config.alpn_protocols.iter().any(|p| p == b"h2");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    if !http2 {
        builder = builder.http1_only();
    }
    let connection =
        builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = stopped_signal(&mut stop) => {
            // Finish the request in flight, if any, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_certificate_keeps_the_previous_one() {
        let dir = std::env::temp_dir().join(format!("sce-webcfg-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write_pair = || {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
            std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        };
        write_pair();
        let path = dir.join("web.yml");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
        )
        .unwrap();
        let web = Web::load(&path).unwrap();
        let start = Instant::now();
        let first = web.certificates_at(start).unwrap();

        std::fs::write(dir.join("c.pem"), "broken\n").unwrap();
        // Within the second: not even looked at.
        let same = web.certificates_at(start).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        // Looked at, does not load: the previous one stays.
        let kept = web.certificates_at(start + CERT_CHECK_EVERY).unwrap();
        assert!(Arc::ptr_eq(&first, &kept));

        write_pair();
        let later = start + CERT_CHECK_EVERY * 2;
        let rotated = web.certificates_at(later).unwrap();
        assert!(!Arc::ptr_eq(&first, &rotated));
        // Unchanged files: the same configuration.
        let again = web.certificates_at(later + CERT_CHECK_EVERY).unwrap();
        assert!(Arc::ptr_eq(&rotated, &again));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
