//! The web configuration file (`--web.config.file`, YAML), in the format of
//! the Prometheus exporter-toolkit, so one file serves every exporter of a
//! fleet:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$…           # bcrypt hash
//! ```
//!
//! Takes the file and hands on a [`WebConfig`] (pure parsing, for the fuzzer,
//! `check-web-config` and the HTTP layer) and, from its TLS settings, the
//! rustls `ServerConfig` ([`TlsSettings::server_config`], which reads the
//! certificate files). What the listeners do with it at run time (certificate
//! reload, the TLS accept loop, basic auth) lives in `crate::http`. Unknown
//! keys and bad values are errors that name the file, line, column and key.

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as provider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme, SupportedCipherSuite,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// ---------------------------------------------------------------- the file

/// exporter-toolkit's allowed response headers, with their allowed values
/// where the header's values are a fixed set. Any other header is refused:
/// the file must not be able to override what the exporter itself says
/// (Content-Type, Content-Encoding, WWW-Authenticate, …).
const HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Go's cipher-suite names, as the toolkit takes them, and what rustls (ring)
/// implements of them. Go does not let TLS 1.3 suites be configured (they are
/// all on), so naming one changes nothing; neither does it here.
const CIPHERS: &[(&str, Option<SupportedCipherSuite>)] = {
    use provider::cipher_suite as cs;
    &[
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Some(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ),
        ("TLS_AES_128_GCM_SHA256", None),
        ("TLS_AES_256_GCM_SHA384", None),
        ("TLS_CHACHA20_POLY1305_SHA256", None),
    ]
};

/// Go's CBC suites: valid in the toolkit, not implemented by rustls.
const CBC_CIPHERS: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
];

/// `client_auth_type`: Go's `tls.ClientAuthType` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    NoClientCert,
    /// One is asked for, not required and not verified.
    RequestClientCert,
    /// One is required, any is accepted.
    RequireAnyClientCert,
    /// One is asked for, and verified against `client_ca_file` if given.
    VerifyClientCertIfGiven,
    /// One is required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }

    fn parse(s: &str) -> Result<ClientAuth, String> {
        Ok(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // The toolkit keeps the old name for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => {
                return Err(format!(
                    "unknown value {s:?}, expected one of NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                ));
            }
        })
    }
}

impl std::fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// `min_version` / `max_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(s: &str) -> Result<TlsVersion, String> {
        match s {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{s} is not supported (rustls implements TLS12 and TLS13 only)"
            )),
            _ => Err(format!(
                "unknown TLS version {s:?}, expected TLS12 or TLS13"
            )),
        }
    }
}

/// One of `cipher_suites`; `None` for a TLS 1.3 suite (always on).
fn cipher(s: &str) -> Result<Option<SupportedCipherSuite>, String> {
    if let Some((_, suite)) = CIPHERS.iter().find(|(name, _)| *name == s) {
        return Ok(*suite);
    }
    let names: Vec<&str> = CIPHERS.iter().map(|(n, _)| *n).collect();
    Err(if CBC_CIPHERS.contains(&s) {
        format!(
            "{s} is not supported (rustls implements no CBC suite); use one of {}",
            names.join(", ")
        )
    } else {
        format!("unknown cipher {s:?}, expected one of {}", names.join(", "))
    })
}

type KxGroup = &'static dyn rustls::crypto::SupportedKxGroup;

/// One of `curve_preferences`.
fn curve(s: &str) -> Result<KxGroup, String> {
    use provider::kx_group;
    match s {
        "X25519" => Ok(kx_group::X25519),
        "CurveP256" => Ok(kx_group::SECP256R1),
        "CurveP384" => Ok(kx_group::SECP384R1),
        "CurveP521" => Err(
            "CurveP521 is not supported (rustls implements X25519, CurveP256 and CurveP384)".into(),
        ),
        _ => Err(format!(
            "unknown curve {s:?}, expected one of X25519, CurveP256, CurveP384"
        )),
    }
}

/// A bcrypt hash, checked when the file is read rather than at the first
/// login.
fn bcrypt_hash(s: &str) -> Result<(), String> {
    match s.parse::<bcrypt::HashParts>() {
        // Go's bcrypt (the toolkit's) takes costs 4 to 31.
        Ok(parts) if (4..=31).contains(&parts.get_cost()) => Ok(()),
        Ok(parts) => Err(format!("bcrypt cost {} is outside 4..31", parts.get_cost())),
        Err(e) => Err(format!(
            "not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
        )),
    }
}

/// A response header from `http_server_config.headers`, checked as the
/// toolkit checks it.
fn response_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "can not be configured; allowed: {}",
            names.join(", ")
        ));
    };
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(format!(
            "invalid value {value:?}, expected one of {}",
            allowed.join(", ")
        ));
    }
    let header_value = HeaderValue::from_str(value)
        .map_err(|_| format!("{value:?} is not a valid header value"))?;
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?}: bad header name"))?;
    Ok((header_name, header_value))
}

// serde checks the structure (and places unknown keys and wrong types);
// values are checked after, and placed by `find`, because serde_yaml_ng
// reports an error raised inside a value at its enclosing mapping.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_auth_type: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    /// Refused when present: not implemented.
    client_allowed_sans: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    headers: Option<BTreeMap<String, String>>,
    http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// Refused when present: not implemented.
    rate_limit: Option<serde_yaml_ng::Value>,
}

// ---------------------------------------------------------------- validated

/// Where PEM data comes from: a file (re-read when it changes) or the web
/// config file itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pem {
    File {
        path: PathBuf,
        /// The key, with its line and column, for errors found when the
        /// file is read (`web.yml:3:3: tls_server_config.cert_file`).
        at: String,
    },
    Inline {
        text: String,
        at: String,
    },
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Pem::File { path, at } => {
                std::fs::read(path).map_err(|e| format!("{at}: {}: {e}", path.display()))
            }
            Pem::Inline { text, .. } => Ok(text.as_bytes().to_vec()),
        }
    }

    fn at(&self) -> &str {
        match self {
            Pem::File { at, .. } | Pem::Inline { at, .. } => at,
        }
    }
}

/// `tls_server_config`, validated; the PEM files are read by
/// [`TlsSettings::server_config`].
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    versions: Vec<&'static SupportedProtocolVersion>,
    /// `None`: rustls's defaults.
    cipher_suites: Option<Vec<SupportedCipherSuite>>,
    curves: Option<Vec<KxGroup>>,
    prefer_server_cipher_suites: bool,
    http2: bool,
}

/// A web config file, validated.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Offer HTTP/2 over TLS (ALPN `h2`); plain HTTP is HTTP/1.1.
    pub http2: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User → bcrypt hash; empty: no authentication.
    users: BTreeMap<String, String>,
}

impl WebConfig {
    /// The bcrypt hash of `user`'s password, when `user` is configured.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not YAML, an unknown key, a bad value, or keys that do not go
    /// together; the message starts with the key.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A certificate, key or CA that does not load; the message starts
    /// with the file, line, column and key that name it.
    #[error("{0}")]
    Tls(String),
}

/// Line and column (1-based) of the first `needle` at or after `from`
/// (line, column); as a key (followed by `:`) when `key`.
fn find(text: &str, from: (usize, usize), needle: &str, key: bool) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    for (n, line) in text.lines().enumerate().skip(from.0.saturating_sub(1)) {
        let mut at = if n + 1 == from.0 {
            line.char_indices()
                .nth(from.1.saturating_sub(1))
                .map_or(line.len(), |(i, _)| i)
        } else {
            0
        };
        while let Some(i) = line[at..].find(needle) {
            let start = at + i;
            let end = start + needle.len();
            let before = line[..start].chars().next_back();
            let bounded = before
                .is_none_or(|c| matches!(c, ' ' | '\t' | '{' | '[' | ',' | '"' | '\'' | ':' | '-'));
            let keyed = line[end..]
                .trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with(':');
            if bounded && (!key || keyed) {
                return Some((n + 1, line[..start].chars().count() + 1));
            }
            at = end;
        }
    }
    None
}

/// Builds errors that name the file, the line and column, and the key.
struct Place<'a> {
    text: &'a str,
    path: &'a str,
}

impl Place<'_> {
    /// Where `section.key` is written, or `section`, or the start.
    fn key(&self, section: &str, key: Option<&str>) -> (usize, usize) {
        let s = find(self.text, (1, 1), section, true);
        key.and_then(|k| find(self.text, s.unwrap_or((1, 1)), k, true))
            .or(s)
            .unwrap_or((1, 1))
    }

    /// Where `value` is written after `section.key`, or the key.
    fn value(&self, section: &str, key: &str, value: &str) -> (usize, usize) {
        let k = self.key(section, Some(key));
        find(self.text, (k.0, k.1 + key.chars().count()), value, false).unwrap_or(k)
    }

    fn error(&self, (line, column): (usize, usize), field: &str, message: &str) -> WebConfigError {
        WebConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: format!("{field}: {message}"),
        }
    }
}

impl WebConfig {
    /// Reads and validates the file; the certificates are read by
    /// [`TlsSettings::server_config`].
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, &shown, dir)
    }

    /// Validates `text`, read from `path`; relative file names are relative
    /// to `dir`, as in the toolkit.
    pub fn parse(text: &str, path: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let at = crate::config::yaml::locate(&e);
                WebConfigError::Invalid {
                    path: path.to_owned(),
                    line: at.line,
                    column: at.column,
                    message: at.message,
                }
            })?
        };
        let place = Place { text, path };
        if file.rate_limit.is_some() {
            return Err(place.error(
                place.key("rate_limit", None),
                "rate_limit",
                "not supported by this exporter; remove it",
            ));
        }
        let mut users = BTreeMap::new();
        for (user, hash) in file.basic_auth_users.unwrap_or_default() {
            bcrypt_hash(&hash).map_err(|m| {
                place.error(
                    place.key("basic_auth_users", Some(&user)),
                    &format!("basic_auth_users.{user}"),
                    &m,
                )
            })?;
            users.insert(user, hash);
        }
        let http = file.http_server_config.unwrap_or_default();
        let http2 = http.http2.unwrap_or(true);
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let h = response_header(&name, &value).map_err(|m| {
                place.error(
                    place.key("headers", Some(&name)),
                    &format!("http_server_config.headers.{name}"),
                    &m,
                )
            })?;
            headers.push(h);
        }
        let tls = match file.tls_server_config {
            None => None,
            Some(t) => TlsSettings::from_file(t, &place, dir, http2)?,
        };
        Ok(WebConfig {
            tls,
            http2,
            headers,
            users,
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// One line for logs and `check-web-config`.
    pub fn summary(&self) -> String {
        let tls = match &self.tls {
            None => "plain HTTP".to_owned(),
            Some(t) => format!("TLS, client certificates: {}", t.client_auth),
        };
        format!(
            "{tls}, {} basic-auth users, {} headers",
            self.users.len(),
            self.headers.len()
        )
    }
}

/// What the certificate sources held when the `ServerConfig` was built, to
/// tell when they change.
pub type Stamp = Vec<[u8; 32]>;

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl TlsSettings {
    /// `tls_server_config`, checked; `None` when it configures nothing (an
    /// empty section means plain HTTP, as in the toolkit).
    fn from_file(
        t: TlsFile,
        place: &Place<'_>,
        dir: &Path,
        http2: bool,
    ) -> Result<Option<TlsSettings>, WebConfigError> {
        const S: &str = "tls_server_config";
        let at_key = |key: &str| place.key(S, Some(key));
        let err =
            |key: &str, message: &str| place.error(at_key(key), &format!("{S}.{key}"), message);
        let err_value = |key: &str, value: &str, message: &str| {
            place.error(place.value(S, key, value), &format!("{S}.{key}"), message)
        };
        if t.client_allowed_sans.is_some() {
            return Err(err(
                "client_allowed_sans",
                "not supported by this exporter; remove it",
            ));
        }
        let some = |s: Option<String>| s.filter(|s| !s.is_empty());
        let client_auth = match &t.client_auth_type {
            Some(s) => ClientAuth::parse(s).map_err(|m| err_value("client_auth_type", s, &m))?,
            None => ClientAuth::NoClientCert,
        };
        let sources = [
            some(t.cert_file),
            some(t.cert),
            some(t.key_file),
            some(t.key),
            some(t.client_ca_file),
            some(t.client_ca),
        ];
        if sources.iter().all(Option::is_none) && client_auth == ClientAuth::NoClientCert {
            return Ok(None);
        }
        let [cert_file, cert, key_file, key, ca_file, ca] = sources;
        let pem = |file: Option<String>, inline: Option<String>, name: &str, inline_name: &str| {
            let shown = |key: &str| {
                let (line, column) = at_key(key);
                format!("{}:{line}:{column}: {S}.{key}", place.path)
            };
            match (file, inline) {
                (Some(_), Some(_)) => Err(err(
                    inline_name,
                    &format!("give one of {name} and {inline_name}, not both"),
                )),
                (Some(f), None) => Ok(Some(Pem::File {
                    path: dir.join(f),
                    at: shown(name),
                })),
                (None, Some(text)) => Ok(Some(Pem::Inline {
                    text,
                    at: shown(inline_name),
                })),
                (None, None) => Ok(None),
            }
        };
        let section = |message: &str| place.error(place.key(S, None), S, message);
        let cert = pem(cert_file, cert, "cert_file", "cert")?
            .ok_or_else(|| section("missing one of cert or cert_file"))?;
        let key = pem(key_file, key, "key_file", "key")?
            .ok_or_else(|| section("missing one of key or key_file"))?;
        let client_ca = pem(ca_file, ca, "client_ca_file", "client_ca")?;
        if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
            let key = match client_ca {
                Some(Pem::Inline { .. }) => "client_ca",
                _ => "client_ca_file",
            };
            return Err(err(
                key,
                "client CAs are configured without a client_auth_type",
            ));
        }
        if client_ca.is_none() && client_auth.verifies() {
            return Err(err(
                "client_auth_type",
                &format!("{client_auth} needs client_ca_file (or client_ca)"),
            ));
        }
        let version = |key: &str, v: &Option<String>, default| match v {
            Some(s) => TlsVersion::parse(s).map_err(|m| err_value(key, s, &m)),
            None => Ok(default),
        };
        let min = version("min_version", &t.min_version, TlsVersion::Tls12)?;
        let max = version("max_version", &t.max_version, TlsVersion::Tls13)?;
        if min > max {
            return Err(err("max_version", "is below min_version"));
        }
        let versions = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, v)| v)
        .collect();
        let cipher_suites = match t.cipher_suites {
            Some(names) if !names.is_empty() => {
                let mut tls12 = Vec::new();
                for name in &names {
                    if let Some(suite) =
                        cipher(name).map_err(|m| err_value("cipher_suites", name, &m))?
                    {
                        tls12.push(suite);
                    }
                }
                if tls12.is_empty() && min == TlsVersion::Tls12 {
                    return Err(err(
                        "cipher_suites",
                        "names no TLS 1.2 suite while min_version allows TLS12",
                    ));
                }
                // TLS 1.3 suites stay on, as in Go.
                let mut suites: Vec<SupportedCipherSuite> = provider::ALL_CIPHER_SUITES
                    .iter()
                    .copied()
                    .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
                    .collect();
                suites.extend(tls12);
                Some(suites)
            }
            _ => None,
        };
        let curves = match t.curve_preferences {
            Some(names) if !names.is_empty() => Some(
                names
                    .iter()
                    .map(|n| curve(n).map_err(|m| err_value("curve_preferences", n, &m)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        Ok(Some(TlsSettings {
            cert,
            key,
            client_ca,
            client_auth,
            versions,
            cipher_suites,
            curves,
            prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
            http2,
        }))
    }

    /// The sources' current contents, hashed; unreadable ones hash as empty
    /// (the rebuild then reports why).
    pub fn stamp(&self) -> Stamp {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| digest(&p.read().unwrap_or_default()))
            .collect()
    }

    /// Reads the certificate, key and client CAs and builds the rustls
    /// server configuration (ring provider).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, WebConfigError> {
        self.build().map(Arc::new).map_err(WebConfigError::Tls)
    }

    fn build(&self) -> Result<ServerConfig, String> {
        let certs = CertificateDer::pem_slice_iter(&self.cert.read()?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.at()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate found", self.cert.at()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key.read()?)
            .map_err(|e| format!("{}: no PEM private key ({e})", self.key.at()))?;
        let mut crypto = provider::default_provider();
        if let Some(suites) = &self.cipher_suites {
            crypto.cipher_suites = suites.clone();
        }
        if let Some(curves) = &self.curves {
            crypto.kx_groups = curves.clone();
        }
        let crypto = Arc::new(crypto);
        let builder = ServerConfig::builder_with_provider(crypto.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| format!("tls_server_config: {e}"))?;
        let roots = match &self.client_ca {
            None => None,
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&ca.read()?) {
                    let cert = cert.map_err(|e| format!("{}: {e}", ca.at()))?;
                    roots.add(cert).map_err(|e| format!("{}: {e}", ca.at()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no PEM certificate found", ca.at()));
                }
                Some((Arc::new(roots), ca.at()))
            }
        };
        let verifier: Arc<dyn ClientCertVerifier> = match (self.client_auth, roots) {
            (ClientAuth::NoClientCert, _) => Arc::new(rustls::server::NoClientAuth),
            (ClientAuth::RequestClientCert, _) => Arc::new(AnyClientCert {
                mandatory: false,
                crypto: crypto.clone(),
            }),
            (ClientAuth::RequireAnyClientCert, _) => Arc::new(AnyClientCert {
                mandatory: true,
                crypto: crypto.clone(),
            }),
            (auth, Some((roots, at))) => {
                let b = WebPkiClientVerifier::builder_with_provider(roots, crypto.clone());
                let b = if auth == ClientAuth::VerifyClientCertIfGiven {
                    b.allow_unauthenticated()
                } else {
                    b
                };
                b.build().map_err(|e| format!("{at}: {e}"))?
            }
            (auth, None) => return Err(format!("tls_server_config: {auth} needs client_ca_file")),
        };
        let mut config = builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| format!("{}: {e}", self.key.at()))?;
        config.ignore_client_order = self.prefer_server_cipher_suites;
        config.alpn_protocols = if self.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(config)
    }
}

/// `RequestClientCert` and `RequireAnyClientCert`: Go asks for a
/// certificate and accepts any (the handshake still proves the client holds
/// its key). rustls has no such verifier built in.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    crypto: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.crypto.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.crypto.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.crypto
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, "web.yml", Path::new("/etc/exporter"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("{text:?} should be rejected, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = parse("").unwrap();
        assert!(c.tls.is_none());
        assert_eq!(c.users(), 0);
        assert!(c.headers.is_empty());
        assert!(parse("tls_server_config: {}\n").unwrap().tls.is_none());
    }

    #[test]
    fn full_file_parses_with_paths_relative_to_it() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let c = parse(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: '{hash}'\n"
        ))
        .unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert!(
            matches!(&tls.cert, Pem::File { path, .. } if path == Path::new("/etc/exporter/server.crt"))
        );
        assert!(matches!(&tls.key, Pem::File { path, .. } if path == Path::new("/abs/server.key")));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.versions, vec![&rustls::version::TLS13]);
        assert_eq!(tls.curves.as_ref().map(Vec::len), Some(2));
        assert!(!tls.prefer_server_cipher_suites);
        assert!(!c.http2);
        assert_eq!(c.headers.len(), 1);
        assert_eq!(c.users(), 1);
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        assert_eq!(
            error("tls_server_config:\n  cert_file: a\n  key_fil: b\n"),
            "web.yml:3:3: tls_server_config: unknown field `key_fil`, expected one of `cert_file`, \
             `key_file`, `cert`, `key`, `client_ca_file`, `client_ca`, `client_auth_type`, \
             `min_version`, `max_version`, `cipher_suites`, `curve_preferences`, \
             `prefer_server_cipher_suites`, `client_allowed_sans`"
        );
        assert_eq!(
            error("basic_auth_user:\n  a: b\n"),
            "web.yml:1:1: unknown field `basic_auth_user`, expected one of `tls_server_config`, \
             `http_server_config`, `basic_auth_users`, `rate_limit`"
        );
    }

    #[test]
    fn bad_bcrypt_hash_is_rejected_at_its_user() {
        assert_eq!(
            error("basic_auth_users:\n  alice: '$2y$10$short'\n"),
            "web.yml:2:3: basic_auth_users.alice: not a bcrypt hash (Invalid hash: the hash format \
             is malformed; expected 60 ASCII bytes); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
        );
        let e = error("basic_auth_users:\n  alice: x\n  bob: plaintext\n");
        assert!(
            e.starts_with("web.yml:2:3: basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        let e = error("basic_auth_users:\n  bob: [a]\n");
        assert!(
            e.starts_with("web.yml:2:8: basic_auth_users.bob: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn forbidden_header_is_rejected() {
        assert_eq!(
            error("http_server_config:\n  headers:\n    Content-Type: text/html\n"),
            "web.yml:3:5: http_server_config.headers.Content-Type: can not be configured; allowed: \
             Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, \
             Content-Security-Policy"
        );
        assert_eq!(
            error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "web.yml:3:5: http_server_config.headers.X-Frame-Options: invalid value \"allow\", \
             expected one of deny, sameorigin"
        );
    }

    #[test]
    fn tls_values_are_checked_at_their_value() {
        let tls = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
        assert_eq!(
            error(&format!("{tls}  min_version: TLS10\n")),
            "web.yml:4:16: tls_server_config.min_version: TLS10 is not supported (rustls implements \
             TLS12 and TLS13 only)"
        );
        assert_eq!(
            error(&format!("{tls}  client_auth_type: Sometimes\n")),
            "web.yml:4:21: tls_server_config.client_auth_type: unknown value \"Sometimes\", expected \
             one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, \
             RequireAndVerifyClientCert"
        );
        assert_eq!(
            error(&format!("{tls}  curve_preferences: [X25519, CurveP521]\n")),
            "web.yml:4:31: tls_server_config.curve_preferences: CurveP521 is not supported (rustls \
             implements X25519, CurveP256 and CurveP384)"
        );
        let e = error(&format!(
            "{tls}  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\n"
        ));
        assert!(
            e.starts_with(
                "web.yml:5:7: tls_server_config.cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA \
                 is not supported (rustls implements no CBC suite)"
            ),
            "{e}"
        );
        assert_eq!(
            error("rate_limit:\n  burst: 1\n"),
            "web.yml:1:1: rate_limit: not supported by this exporter; remove it"
        );
        assert_eq!(
            error(&format!("{tls}  client_allowed_sans: [a]\n")),
            "web.yml:4:3: tls_server_config.client_allowed_sans: not supported by this exporter; remove it"
        );
        let e = error(&format!("{tls}  prefer_server_cipher_suites: maybe\n"));
        assert!(
            e.starts_with(
                "web.yml:4:32: tls_server_config.prefer_server_cipher_suites: invalid type"
            ),
            "{e}"
        );
    }

    #[test]
    fn keys_that_do_not_go_together_are_placed_at_the_key() {
        assert_eq!(
            error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n"),
            "web.yml:4:3: tls_server_config.client_ca_file: client CAs are configured without a client_auth_type"
        );
        assert_eq!(
            error(
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n"
            ),
            "web.yml:4:3: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file (or client_ca)"
        );
        assert_eq!(
            error("tls_server_config:\n  cert_file: a\n"),
            "web.yml:1:1: tls_server_config: missing one of key or key_file"
        );
        assert_eq!(
            error(
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n"
            ),
            "web.yml:5:3: tls_server_config.max_version: is below min_version"
        );
    }

    #[test]
    fn missing_certificate_file_names_its_key() {
        let c = parse("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n").unwrap();
        let e = c.tls.unwrap().server_config().unwrap_err().to_string();
        assert!(
            e.starts_with("web.yml:2:3: tls_server_config.cert_file: /etc/exporter/nope.crt: "),
            "{e}"
        );
    }

    /// The README's example file is valid (its certificate files aside).
    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("(`--web.config.file`)").unwrap()..];
        let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let c = parse(example).unwrap();
        let hash = c.users.get("prometheus").unwrap();
        assert!(bcrypt::verify("changeme", hash).unwrap());
        assert_eq!(
            c.summary(),
            "TLS, client certificates: RequireAndVerifyClientCert, 1 basic-auth users, 2 headers"
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/web_config.rs): an error without
    /// a location was placed at 0:0.
    #[test]
    fn multi_document_error_is_placed_at_the_start() {
        assert_eq!(
            error("{}\n---\n{}\n"),
            "web.yml:1:1: deserializing from YAML containing more than one document is not supported"
        );
    }
}
