//! collectd's network security: the AuthFile of users and passwords, and the
//! two protected part types.
//!
//! * SIGNATURE (0x0200): `HMAC-SHA-256(key = password, message = username ||
//!   every byte after the part)`, then the username, inside the part.
//! * ENCRYPTION (0x0210): `u16 username length | username | 16-byte IV |
//!   AES-256-OFB(key = SHA-256(password))` over `SHA-1(payload) | payload`,
//!   where the payload is a complete packet of its own.
//!
//! Takes the part bodies from the decoder; hands back verified or decrypted
//! bytes. No clock, socket or metric.

use aes::cipher::{KeyIvInit, StreamCipher};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use sha1::Digest;
use std::collections::HashMap;
use std::path::Path;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;
type Aes256Ofb = ofb::Ofb<aes::Aes256>;

/// collectd's `SecurityLevel`: the least protection a value list needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum SecurityLevel {
    #[default]
    None,
    Sign,
    Encrypt,
}

/// How a value list or notification reached us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protection {
    /// Plain, or signed by a user we could not check (no auth file), which
    /// collectd accepts at level None and so do we.
    #[default]
    None,
    /// Inside a signature that verified.
    Signed,
    /// Inside an encrypted part that decrypted and checked.
    Encrypted,
}

impl Protection {
    pub fn satisfies(self, level: SecurityLevel) -> bool {
        match level {
            SecurityLevel::None => true,
            SecurityLevel::Sign => self >= Protection::Signed,
            SecurityLevel::Encrypt => self == Protection::Encrypted,
        }
    }
}

struct Secret {
    password: Box<[u8]>,
    aes_key: [u8; 32],
}

/// Users and passwords, from a collectd AuthFile.
#[derive(Default)]
pub struct Keys {
    users: HashMap<Box<[u8]>, Secret>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print passwords.
        f.debug_struct("Keys")
            .field("users", &self.users.len())
            .finish()
    }
}

/// A line of an AuthFile that is not `user: password`.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: &'static str,
    },
    #[error("{path}: no users")]
    Empty { path: String },
}

impl Keys {
    /// Reads collectd's AuthFile format: one `user: password` per line; blank
    /// lines and lines starting with `#` are skipped; whitespace after the
    /// colon is not part of the password.
    pub fn load(path: &Path) -> Result<Keys, AuthFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Keys::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Keys, AuthFileError> {
        let mut keys = Keys::default();
        for (i, raw) in text.lines().enumerate() {
            let err = |problem| AuthFileError::Line {
                path: path.to_owned(),
                line: i + 1,
                problem,
            };
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, password) = line
                .split_once(':')
                .ok_or(err("expected \"user: password\""))?;
            let password = password.trim_start();
            if user.is_empty() {
                return Err(err("empty user name"));
            }
            if password.is_empty() {
                return Err(err("empty password"));
            }
            keys.insert(user.as_bytes(), password.as_bytes());
        }
        if keys.users.is_empty() {
            return Err(AuthFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(keys)
    }

    pub fn insert(&mut self, user: &[u8], password: &[u8]) {
        let aes_key: [u8; 32] = sha2::Sha256::digest(password).into();
        self.users.insert(
            user.into(),
            Secret {
                password: password.into(),
                aes_key,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a SIGNATURE part: `mac` is its first 32 bytes, `user` the rest,
    /// `signed` every byte of the datagram after the part.
    pub fn verify(&self, user: &[u8], mac: &[u8], signed: &[u8]) -> Result<(), CryptoError> {
        let secret = self.users.get(user).ok_or(CryptoError::UnknownUser)?;
        let mut h =
            HmacSha256::new_from_slice(&secret.password).map_err(|_| CryptoError::BadSignature)?;
        h.update(user);
        h.update(signed);
        h.verify_slice(mac).map_err(|_| CryptoError::BadSignature)
    }

    /// Opens an ENCRYPTION part body; returns the user and the inner packet.
    pub fn decrypt(&self, body: &[u8]) -> Result<(Bytes, Bytes), CryptoError> {
        let short = CryptoError::Truncated;
        let user_len = usize::from(u16::from_be_bytes([
            *body.first().ok_or(short)?,
            *body.get(1).ok_or(short)?,
        ]));
        let user = body.get(2..2 + user_len).ok_or(short)?;
        let iv = body.get(2 + user_len..2 + user_len + 16).ok_or(short)?;
        let sealed = &body[2 + user_len + 16..];
        if sealed.len() < 20 {
            return Err(short);
        }
        let secret = self.users.get(user).ok_or(CryptoError::UnknownUser)?;
        let mut plain = sealed.to_vec();
        let mut cipher = Aes256Ofb::new_from_slices(&secret.aes_key, iv).map_err(|_| short)?;
        cipher.apply_keystream(&mut plain);
        let (digest, payload) = plain.split_at(20);
        if sha1::Sha1::digest(payload).as_slice() != digest {
            return Err(CryptoError::Checksum);
        }
        let payload = Bytes::from(plain).slice(20..);
        Ok((Bytes::copy_from_slice(user), payload))
    }
}

/// Why a protected part was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("user not in the auth file")]
    UnknownUser,
    #[error("HMAC-SHA-256 does not match")]
    BadSignature,
    #[error("SHA-1 checksum of the decrypted payload does not match (wrong password?)")]
    Checksum,
    #[error("encrypted part too short")]
    Truncated,
}

/// Builds protected datagrams, for tests and the load generator.
pub mod seal {
    use super::*;

    /// `payload` signed by `user`: a SIGNATURE part followed by the payload.
    pub fn sign(user: &str, password: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = HmacSha256::new_from_slice(password.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        h.update(user.as_bytes());
        h.update(payload);
        let mac = h.finalize().into_bytes();
        let mut out = Vec::with_capacity(4 + 32 + user.len() + payload.len());
        out.extend_from_slice(&0x0200u16.to_be_bytes());
        out.extend_from_slice(&((4 + 32 + user.len()) as u16).to_be_bytes());
        out.extend_from_slice(&mac);
        out.extend_from_slice(user.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// `payload` encrypted for `user` with the given IV.
    pub fn encrypt(user: &str, password: &str, iv: [u8; 16], payload: &[u8]) -> Vec<u8> {
        let key: [u8; 32] = sha2::Sha256::digest(password.as_bytes()).into();
        let mut sealed = sha1::Sha1::digest(payload).to_vec();
        sealed.extend_from_slice(payload);
        let mut cipher = Aes256Ofb::new(&key.into(), &iv.into());
        cipher.apply_keystream(&mut sealed);
        let len = 4 + 2 + user.len() + 16 + sealed.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&0x0210u16.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&(user.len() as u16).to_be_bytes());
        out.extend_from_slice(user.as_bytes());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_is_user_colon_password() {
        let k = Keys::parse("# users\nalice: wonderland\n\n  bob:builder\n", "auth").unwrap();
        assert_eq!(k.len(), 2);
        assert!(k.users.contains_key(&b"bob"[..]));
        assert_eq!(&*k.users[&b"alice"[..]].password, b"wonderland");
    }

    #[test]
    fn auth_file_errors_name_file_and_line() {
        let e = Keys::parse("alice: wonderland\nbob\n", "/etc/collectd/auth")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "/etc/collectd/auth:2: expected \"user: password\""
        );
        let e = Keys::parse("alice:   \n", "a").err().unwrap();
        assert_eq!(e.to_string(), "a:1: empty password");
        assert_eq!(
            Keys::parse("# none\n", "a").err().unwrap().to_string(),
            "a: no users"
        );
    }

    #[test]
    fn levels_are_ordered_as_collectd_applies_them() {
        assert!(Protection::None.satisfies(SecurityLevel::None));
        assert!(!Protection::None.satisfies(SecurityLevel::Sign));
        assert!(Protection::Encrypted.satisfies(SecurityLevel::Sign));
        assert!(!Protection::Signed.satisfies(SecurityLevel::Encrypt));
    }

    #[test]
    fn sealed_payload_opens_with_the_right_password_only() {
        let mut keys = Keys::default();
        keys.insert(b"alice", b"wonderland");
        let sealed = seal::encrypt("alice", "wonderland", [7; 16], b"payload");
        let (user, payload) = keys.decrypt(&sealed[4..]).unwrap();
        assert_eq!((&user[..], &payload[..]), (&b"alice"[..], &b"payload"[..]));
        let wrong = seal::encrypt("alice", "queen", [7; 16], b"payload");
        assert_eq!(keys.decrypt(&wrong[4..]), Err(CryptoError::Checksum));
        let stranger = seal::encrypt("mallory", "x", [7; 16], b"payload");
        assert_eq!(keys.decrypt(&stranger[4..]), Err(CryptoError::UnknownUser));
        assert_eq!(keys.decrypt(&sealed[4..20]), Err(CryptoError::Truncated));
    }

    #[test]
    fn signature_covers_user_and_payload() {
        let mut keys = Keys::default();
        keys.insert(b"alice", b"wonderland");
        let signed = seal::sign("alice", "wonderland", b"payload");
        let (mac, user, rest) = (&signed[4..36], &signed[36..41], &signed[41..]);
        assert_eq!(keys.verify(user, mac, rest), Ok(()));
        assert_eq!(
            keys.verify(user, mac, b"payloaD"),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            keys.verify(b"bob", mac, rest),
            Err(CryptoError::UnknownUser)
        );
    }
}
