//! HTTPS: the rustls configuration in use, rebuilt when the certificate
//! files change.
//!
//! Takes the TLS settings of the web config file (`crate::config::web`);
//! hands on the rustls configuration for each new connection, which
//! `super::serve` handshakes with (a handshake that fails or stalls closes
//! that connection only).

use crate::config::web::{Stamp, TlsSettings, WebConfigError};
use crate::store::lock;
use rustls::server::ServerConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::super::web::Web;
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
