//! Fetches `GET /api/v1/pools` from a running exporter over HTTP or HTTPS
//! (rustls with the ring provider; `--ca-file` adds the CA to trust, else the
//! webpki roots; `--cert-file`/`--key-file` a client certificate for an
//! exporter that requires one), with basic auth when a user is given; and
//! `GET /api/v1/processes` of one host/program. Hands on a [`Pools`] or a
//! [`Processes`] document, or a one-line [`FetchError`] (with the
//! exporter's own reason for a 400 or 404).

use crate::api::processes::{ApiError, Processes, Query, Sort};
use crate::api::{PATH, Pools};
use base64::Engine;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

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
    /// `--ca-file`, `--cert-file` or `--key-file` (the flag) with an
    /// `http://` URL.
    #[error("{0} needs an https:// --url")]
    NeedsTls(&'static str),
    /// `--cert-file` without `--key-file`, or the other way round.
    #[error("--cert-file and --key-file go together")]
    HalfIdentity,
    /// A PEM file named by a flag (`--ca-file`, `--cert-file`,
    /// `--key-file`) cannot be read.
    #[error("{flag} {}: {source}", path.display())]
    PemRead {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The private key does not fit the certificate, or is of a kind the
    /// ring provider cannot sign with.
    #[error("--key-file {}: not usable with --cert-file {}: {reason}", key.display(), cert.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// A PEM file holds no item of the kind its flag needs (certificate or
    /// private key), or a broken one.
    #[error("{flag} {}: {reason}", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
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
    /// The HTTP status, when the exporter answered with an error.
    pub status: Option<u16>,
}

/// What the client needs from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM, chain first to last) and its private key.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The password from the environment, if set.
    pub password_env: Option<String>,
    pub timeout: Duration,
}

pub struct Client {
    agent: ureq::Agent,
    /// The exporter's address, without a trailing slash.
    base: String,
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
        let identity = match (&o.cert_file, &o.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => return Err(SetupError::HalfIdentity),
        };
        if o.ca_file.is_some() || identity.is_some() {
            if !tls {
                let flag = if o.ca_file.is_some() {
                    "--ca-file"
                } else {
                    "--cert-file"
                };
                return Err(SetupError::NeedsTls(flag));
            }
            let mut tls_config = TlsConfig::builder();
            if let Some(path) = &o.ca_file {
                let certs = load_certs("--ca-file", path)?;
                tls_config = tls_config.root_certs(RootCerts::new_with_certs(&certs));
            }
            if let Some((cert, key)) = identity {
                tls_config = tls_config.client_cert(Some(load_identity(cert, key)?));
            }
            config = config.tls_config(tls_config.build());
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
            base: base.to_owned(),
            url: format!("{base}{PATH}"),
            authorization,
        })
    }

    /// The address fetched.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn fetch(&self) -> Result<Pools, FetchError> {
        self.get(&self.url, "a pools document")
    }

    /// The first page (as many as the exporter gives at once) of
    /// `host`/`program`'s processes, most checked-out connections first.
    pub fn fetch_processes(&self, host: &str, program: &str) -> Result<Processes, FetchError> {
        let query = Query {
            host: host.to_owned(),
            program: program.to_owned(),
            sort: Sort::CheckedOut,
            offset: 0,
            limit: crate::api::processes::DEFAULT_LIMIT,
        };
        self.get(&query.url(&self.base), "a processes document")
    }

    fn get<T: DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, FetchError> {
        let fail = |reason: String, status: Option<u16>| FetchError {
            url: url.to_owned(),
            reason,
            status,
        };
        let mut request = self.agent.get(url);
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let mut response = request.call().map_err(|e| fail(one_line(&e), None))?;
        let status = response.status();
        if !status.is_success() {
            // The API's 400 and 404 say why in a JSON body.
            let why = response
                .body_mut()
                .with_config()
                .limit(64 << 10)
                .read_to_vec()
                .ok()
                .and_then(|b| serde_json::from_slice::<ApiError>(&b).ok())
                .map(|e| format!(": {}", one_line(&e.error)))
                .unwrap_or_default();
            return Err(fail(
                format!(
                    "HTTP {}{}{why}",
                    status.as_u16(),
                    status
                        .canonical_reason()
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default()
                ),
                Some(status.as_u16()),
            ));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| fail(one_line(&e), None))?;
        serde_json::from_slice(&body)
            .map_err(|e| fail(format!("not {what} ({e}); is this the exporter?"), None))
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().collect::<Vec<_>>().join(" ")
}

fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::PemRead {
        flag,
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(flag: &'static str, path: &Path, reason: String) -> SetupError {
    SetupError::Pem {
        flag,
        path: path.to_owned(),
        reason,
    }
}

/// Every certificate in a PEM file, in file order; at least one.
fn load_certs(flag: &'static str, path: &Path) -> Result<Vec<Certificate<'static>>, SetupError> {
    let pem = read_pem(flag, path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad_pem(flag, path, one_line(&e)))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad_pem(flag, path, "no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The client certificate and its key (the first private key in its file:
/// PKCS#8, PKCS#1 or SEC1), checked as rustls will use them: ureq builds its
/// TLS configuration at the first connection and panics on a key that does
/// not fit.
fn load_identity(cert: &Path, key: &Path) -> Result<ClientCert, SetupError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    const FLAG: &str = "--key-file";
    let chain = load_certs("--cert-file", cert)?;
    let pem = read_pem(FLAG, key)?;
    let mut private = None;
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::PrivateKey(k) = item.map_err(|e| bad_pem(FLAG, key, one_line(&e)))? {
            private = Some(k);
            break;
        }
    }
    // Both parsers are rustls-pki-types' PEM reader: the same first key.
    let (Some(private), Ok(key_der)) = (private, PrivateKeyDer::from_pem_slice(&pem)) else {
        return Err(bad_pem(FLAG, key, "no PEM private key in it".into()));
    };
    let chain_der = chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    rustls::sign::CertifiedKey::from_der(
        chain_der,
        key_der,
        &rustls::crypto::ring::default_provider(),
    )
    .map_err(|e| SetupError::Identity {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "the certificate is for another key".into()
            }
            e => one_line(&e),
        },
    })?;
    Ok(ClientCert::new_with_certs(&chain, private))
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
    fn a_client_certificate_needs_its_key_and_https() {
        let msg = |o: &Options| Client::new(o).err().map(|e| e.to_string());
        let mut o = options("https://x");
        o.cert_file = Some("/nonexistent.crt".into());
        assert_eq!(
            msg(&o).as_deref(),
            Some("--cert-file and --key-file go together")
        );
        o.cert_file = None;
        o.key_file = Some("/nonexistent.key".into());
        assert_eq!(
            msg(&o).as_deref(),
            Some("--cert-file and --key-file go together")
        );
        o.cert_file = Some("/nonexistent.crt".into());
        assert_eq!(
            msg(&o).as_deref(),
            Some("--cert-file /nonexistent.crt: No such file or directory (os error 2)")
        );
        o.url = "http://x".into();
        assert_eq!(
            msg(&o).as_deref(),
            Some("--cert-file needs an https:// --url")
        );
    }

    #[test]
    fn a_key_file_without_its_key_is_refused() {
        let dir = std::env::temp_dir();
        let id = std::process::id();
        let (cert, key) = (
            dir.join(format!("sce-top-cert-{id}.pem")),
            dir.join(format!("sce-top-key-{id}.pem")),
        );
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(&cert, issued.cert.pem()).unwrap();
        // The certificate is not its key.
        std::fs::write(&key, issued.cert.pem()).unwrap();
        let mut o = options("https://x");
        o.cert_file = Some(cert.clone());
        o.key_file = Some(key.clone());
        let refused = Client::new(&o).err().map(|e| e.to_string());
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let mismatched = Client::new(&o).err().map(|e| e.to_string());
        std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
        let accepted = Client::new(&o).is_ok();
        let _ = (std::fs::remove_file(&cert), std::fs::remove_file(&key));
        assert_eq!(
            refused,
            Some(format!(
                "--key-file {}: no PEM private key in it",
                key.display()
            ))
        );
        assert_eq!(
            mismatched,
            Some(format!(
                "--key-file {}: not usable with --cert-file {}: the certificate is for another key",
                key.display(),
                cert.display()
            ))
        );
        assert!(accepted);
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
