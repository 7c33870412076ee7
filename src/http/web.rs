//! The web config file in use (`--web.config.file`), shared by every HTTP
//! listener: the parsed file, the certificates of the HTTPS listeners and
//! the cache of verified credentials. Replaced whole on reload; a file that
//! does not load leaves the one in use.
//!
//! Takes the file's path; hands on the config for the auth middleware
//! ([`super::auth`]) and the TLS configuration for each new connection
//! ([`super::tls`]).

use super::auth::Auth;
use super::tls::Certificates;
use crate::config::web::{WebConfig, WebConfigError};
use crate::state::Current;
use rustls::server::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Web {
    path: PathBuf,
    config: Current<WebConfig>,
    /// `None` when serving plain HTTP; whether TLS is on is fixed at start.
    tls: Option<Certificates>,
    auth: Auth,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Web {
    /// Reads the file and, with TLS, the certificates.
    pub fn load(path: &Path) -> Result<Web, WebConfigError> {
        let config = WebConfig::load(path)?;
        let tls = match &config.tls {
            None => None,
            Some(settings) => Some(Certificates::load(settings)?),
        };
        Ok(Web {
            path: path.to_owned(),
            config: Current::new(config),
            tls,
            auth: Auth::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn config(&self) -> Arc<WebConfig> {
        self.config.get()
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Re-reads the file and the certificates; on any error the
    /// configuration in use stays. Hands on the new file's summary.
    pub fn reload(&self) -> Result<String, WebConfigError> {
        let config = WebConfig::load(&self.path)?;
        let shown = self.path.display();
        match (&self.tls, &config.tls) {
            (Some(certificates), Some(settings)) => certificates.replace(settings)?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(WebConfigError::Tls(format!(
                    "{shown}: tls_server_config: turning TLS off needs a restart"
                )));
            }
            (None, Some(_)) => {
                return Err(WebConfigError::Tls(format!(
                    "{shown}: tls_server_config: turning TLS on needs a restart"
                )));
            }
        }
        let summary = config.summary();
        self.config.set(config);
        self.auth.forget();
        Ok(summary)
    }

    /// The TLS configuration for a new connection (see
    /// [`Certificates::current`]); `None` when serving plain HTTP.
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        Some(self.tls.as_ref()?.current(&self.path))
    }

    #[cfg(test)]
    pub(crate) fn certificates_at(&self, now: std::time::Instant) -> Option<Arc<ServerConfig>> {
        Some(self.tls.as_ref()?.current_at(now, &self.path))
    }
}
