//! Fetches `GET /api/v1/pools` from a running exporter over HTTP or HTTPS
//! (rustls with the ring provider; `--ca-file` adds the CA to trust, else the
//! webpki roots), with basic auth when a user is given. Hands on a
//! [`Pools`] document or a one-line [`FetchError`].

use crate::api::{PATH, Pools};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// Environment variable with the basic-auth password, when no
/// `--password-file` is given.
pub const PASSWORD_ENV: &str = "SQLALCHEMY_COLLECTD_EXPORTER_PASSWORD";

/// The largest document accepted: far above 100k host/programs.
const BODY_LIMIT: u64 = 512 << 20;

/// Why the client cannot be set up from its flags.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `--url` is not `http://…` or `https://…`.
    #[error("--url {0:?}: must start with http:// or https://")]
    Url(String),
    /// `--ca-file` with an `http://` URL.
    #[error("--ca-file needs an https:// --url")]
    CaWithoutTls,
    /// The CA file cannot be read.
    #[error("--ca-file {}: {source}", path.display())]
    CaRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate, or a broken one.
    #[error("--ca-file {}: {reason}", path.display())]
    CaPem { path: PathBuf, reason: String },
    /// The password file cannot be read.
    #[error("--password-file {}: {source}", path.display())]
    PasswordRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `--user` without a password from a file or the environment.
    #[error("--user needs --password-file or {PASSWORD_ENV} in the environment")]
    NoPassword,
}

/// Why one fetch failed, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct FetchError {
    pub url: String,
    pub reason: String,
}

/// What the client needs from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The password from the environment, if set.
    pub password_env: Option<String>,
    pub timeout: Duration,
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
}

impl Client {
    pub fn new(o: &Options) -> Result<Client, SetupError> {
        let base = o.url.trim_end_matches('/');
        let lower = base.to_ascii_lowercase();
        let tls = lower.starts_with("https://");
        if !tls && !lower.starts_with("http://") {
            return Err(SetupError::Url(o.url.clone()));
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(o.timeout))
            .user_agent(concat!(
                "sqlalchemy-collectd-exporter-top/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(path) = &o.ca_file {
            if !tls {
                return Err(SetupError::CaWithoutTls);
            }
            let roots = load_ca(path)?;
            config = config.tls_config(TlsConfig::builder().root_certs(roots).build());
        }
        let authorization = match &o.user {
            None => None,
            Some(user) => {
                let password = match (&o.password_file, &o.password_env) {
                    (Some(path), _) => read_password(path)?,
                    (None, Some(p)) => p.clone(),
                    (None, None) => return Err(SetupError::NoPassword),
                };
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
        };
        Ok(Client {
            agent: config.build().into(),
            url: format!("{base}{PATH}"),
            authorization,
        })
    }

    /// The address fetched.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn fetch(&self) -> Result<Pools, FetchError> {
        let fail = |reason: String| FetchError {
            url: self.url.clone(),
            reason,
        };
        let mut request = self.agent.get(&self.url);
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let mut response = request.call().map_err(|e| fail(one_line(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {}{}",
                status.as_u16(),
                status
                    .canonical_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            )));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| fail(one_line(&e)))?;
        serde_json::from_slice(&body)
            .map_err(|e| fail(format!("not a pools document ({e}); is this the exporter?")))
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().collect::<Vec<_>>().join(" ")
}

fn load_ca(path: &Path) -> Result<RootCerts, SetupError> {
    let pem = std::fs::read(path).map_err(|source| SetupError::CaRead {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| SetupError::CaPem {
        path: path.to_owned(),
        reason,
    };
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(one_line(&e)))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The first line of the file: the password, without its line ending.
fn read_password(path: &Path) -> Result<String, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::PasswordRead {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Options {
        Options {
            url: url.into(),
            timeout: Duration::from_secs(1),
            ..Options::default()
        }
    }

    #[test]
    fn the_api_path_is_appended_to_the_base_url() {
        let c = Client::new(&options("http://localhost:9827/")).unwrap();
        assert_eq!(c.url(), "http://localhost:9827/api/v1/pools");
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        let msg = |o: &Options| Client::new(o).err().map(|e| e.to_string());
        assert_eq!(
            msg(&options("localhost:9827")).as_deref(),
            Some("--url \"localhost:9827\": must start with http:// or https://")
        );
        let mut o = options("http://x");
        o.ca_file = Some("/nonexistent.pem".into());
        assert_eq!(
            msg(&o).as_deref(),
            Some("--ca-file needs an https:// --url")
        );
        o.url = "https://x".into();
        assert_eq!(
            msg(&o).as_deref(),
            Some("--ca-file /nonexistent.pem: No such file or directory (os error 2)")
        );
        let mut o = options("http://x");
        o.user = Some("alice".into());
        assert_eq!(
            msg(&o).as_deref(),
            Some(
                "--user needs --password-file or SQLALCHEMY_COLLECTD_EXPORTER_PASSWORD in the environment"
            )
        );
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let path = std::env::temp_dir().join(format!("sce-top-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut o = options("https://x");
        o.ca_file = Some(path.clone());
        let err = Client::new(&o).err().map(|e| e.to_string());
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            err,
            Some(format!(
                "--ca-file {}: no PEM certificate in it",
                path.display()
            ))
        );
    }

    #[test]
    fn basic_auth_reads_the_first_line_of_the_password_file() {
        let path = std::env::temp_dir().join(format!("sce-top-pw-{}", std::process::id()));
        std::fs::write(&path, "wonderland\n").unwrap();
        let mut o = options("http://x");
        o.user = Some("alice".into());
        o.password_file = Some(path.clone());
        o.password_env = Some("ignored".into());
        let c = Client::new(&o);
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            c.unwrap().authorization.as_deref(),
            Some("Basic YWxpY2U6d29uZGVybGFuZA==")
        );
    }
}
