//! Certificates made at test time with rcgen: a CA and the certificates it
//! signs (for localhost and 127.0.0.1), written as PEM files into a
//! directory, for an exporter started with `--web.config.file` and the
//! clients that talk to it.

use super::TempDir;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::PathBuf;

/// A CA (`ca.crt` in `dir`) and the certificates it signs.
pub struct Pki {
    pub dir: TempDir,
    pub ca: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(test: &str) -> Pki {
        let dir = TempDir::new(test, "pki");
        let (ca, pem) = Pki::make_ca("exporter test CA");
        std::fs::write(dir.0.join("ca.crt"), pem).expect("write the CA");
        Pki { dir, ca }
    }

    /// A self-signed CA named `name`: the issuer and its certificate's PEM.
    pub fn make_ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        (Issuer::new(params, key), cert.pem())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// `path(name)` as a flag value.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("UTF-8 path").to_owned()
    }

    /// A certificate named `cn` for localhost and 127.0.0.1, signed by
    /// `issuer`: (certificate PEM, key PEM).
    pub fn issue(issuer: &Issuer<'static, KeyPair>, cn: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `<name>.crt` and `<name>.key` for `cn`.
    pub fn write(&self, name: &str, cn: &str) {
        let (cert, key) = Pki::issue(&self.ca, cn);
        // Key first: a reader that sees the new certificate sees its key.
        std::fs::write(self.path(&format!("{name}.key")), key).expect("write key");
        std::fs::write(self.path(&format!("{name}.crt")), cert).expect("write cert");
    }
}
