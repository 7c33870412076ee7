//! Bytes → [`Packet`]: a pure function over one datagram.
//!
//! Parts are `u16 type | u16 length | body`, the length counting the 4-byte
//! header. HOST, TIME, PLUGIN and the rest set the current state; each VALUES
//! part emits one value list from that state and each MESSAGE part one
//! notification, so a datagram can hold many lists that share the parts sent
//! before them (collectd only writes a part when it changes). Unknown parts are
//! skipped. Every length and count is checked before it is used.

use super::label::label_enum;
use super::security::{CryptoError, Keys, Protection};
use super::{
    CdTime, Identity, Notification, Packet, Severity, Str, ValueList, Values, ValuesRef, part,
    value_type,
};
use bytes::Bytes;

/// The longest identity string collectd accepts, NUL included
/// (`DATA_MAX_NAME_LEN`): longer ones are rejected, as collectd does.
pub const MAX_STRING_BYTES: usize = 128;

/// Why a datagram was rejected. Offsets are byte positions in the datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram has no bytes at all.
    #[error("datagram is empty")]
    Empty,
    /// Fewer than 4 bytes remain where a part header should start.
    #[error("part header at byte {offset} needs 4 bytes, {remaining} remain")]
    TruncatedHeader { offset: usize, remaining: usize },
    /// A part header claims more bytes than remain in the datagram.
    #[error("part 0x{part_type:04x} at byte {offset} claims {part_len} bytes, {remaining} remain")]
    PartPastEnd {
        offset: usize,
        part_type: u16,
        part_len: u16,
        remaining: usize,
    },
    /// A part length below the 4 bytes of its own header (0 would loop forever).
    #[error(
        "part 0x{part_type:04x} at byte {offset} has length {part_len}, below the 4-byte header"
    )]
    PartTooShort {
        offset: usize,
        part_type: u16,
        part_len: u16,
    },
    /// A TIME, INTERVAL, TIME_HR, INTERVAL_HR or SEVERITY part whose body is not 8 bytes.
    #[error("numeric part 0x{part_type:04x} at byte {offset} has length {part_len}, expected 12")]
    NumberLength {
        offset: usize,
        part_type: u16,
        part_len: u16,
    },
    /// A VALUES part whose count does not match its length (`6 + 9 * count`).
    #[error("values part at byte {offset} declares {count} values but has length {part_len}")]
    ValuesLength {
        offset: usize,
        count: u16,
        part_len: u16,
    },
    /// A VALUES part that declares zero values.
    #[error("values part at byte {offset} holds no values")]
    NoValues { offset: usize },
    /// A value type code other than 0 (COUNTER), 1 (GAUGE), 2 (DERIVE), 3 (ABSOLUTE).
    #[error("values part at byte {offset}: value {index} has unknown type {code}")]
    UnknownValueType {
        offset: usize,
        index: usize,
        code: u8,
    },
    /// A string part whose last byte is not NUL (or that has no body).
    #[error("string part 0x{part_type:04x} at byte {offset} is not NUL-terminated")]
    StringNotTerminated { offset: usize, part_type: u16 },
    /// An identity string longer than collectd accepts.
    #[error("string part 0x{part_type:04x} at byte {offset} is {len} bytes, the limit is {max}", max = MAX_STRING_BYTES - 1)]
    StringTooLong {
        offset: usize,
        part_type: u16,
        len: usize,
    },
    /// An identity string that is not UTF-8 (it would become a label value).
    #[error("string part 0x{part_type:04x} at byte {offset} is not UTF-8")]
    InvalidUtf8 { offset: usize, part_type: u16 },
    /// A SIGNATURE part too short to hold its 32-byte HMAC.
    #[error("signature part at byte {offset} has length {part_len}, below 36")]
    SignatureTooShort { offset: usize, part_len: u16 },
    /// An ENCRYPTION part, and no auth file to open it.
    #[error("encrypted part at byte {offset} and no auth file to decrypt it")]
    Encrypted { offset: usize },
    /// A SIGNATURE part from an unknown user or with a wrong HMAC.
    #[error("signature part at byte {offset} (user {user:?}): {error}")]
    Signature {
        offset: usize,
        user: String,
        error: CryptoError,
    },
    /// An ENCRYPTION part that does not open: unknown user, wrong password, too short.
    #[error("encrypted part at byte {offset}: {error}")]
    Decrypt { offset: usize, error: CryptoError },
    /// Protected parts nested deeper than collectd ever writes them.
    #[error("protected part at byte {offset} nested too deep")]
    TooDeep { offset: usize },
}

/// The rejection reason a decode error counts under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    BadSignature,
    DecryptFailed,
}

label_enum! {
    /// What was wrong with a datagram the decoder refused, one per
    /// [`DecodeError`] variant: the `error` label of
    /// `sqlalchemy_collectd_exporter_decode_errors_total`.
    pub enum DecodeErrorKind {
        Empty => "empty",
        TruncatedHeader => "truncated_header",
        PartPastEnd => "part_past_end",
        PartTooShort => "part_too_short",
        NumberLength => "number_length",
        ValuesLength => "values_length",
        NoValues => "no_values",
        UnknownValueType => "unknown_value_type",
        StringNotTerminated => "string_not_terminated",
        StringTooLong => "string_too_long",
        InvalidUtf8 => "invalid_utf8",
        SignatureTooShort => "signature_too_short",
        Encrypted => "encrypted",
        Signature => "signature",
        Decrypt => "decrypt",
        TooDeep => "too_deep",
    }
}

impl DecodeError {
    /// Its kind: a stable, low-cardinality metric label.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::Empty => DecodeErrorKind::Empty,
            DecodeError::TruncatedHeader { .. } => DecodeErrorKind::TruncatedHeader,
            DecodeError::PartPastEnd { .. } => DecodeErrorKind::PartPastEnd,
            DecodeError::PartTooShort { .. } => DecodeErrorKind::PartTooShort,
            DecodeError::NumberLength { .. } => DecodeErrorKind::NumberLength,
            DecodeError::ValuesLength { .. } => DecodeErrorKind::ValuesLength,
            DecodeError::NoValues { .. } => DecodeErrorKind::NoValues,
            DecodeError::UnknownValueType { .. } => DecodeErrorKind::UnknownValueType,
            DecodeError::StringNotTerminated { .. } => DecodeErrorKind::StringNotTerminated,
            DecodeError::StringTooLong { .. } => DecodeErrorKind::StringTooLong,
            DecodeError::InvalidUtf8 { .. } => DecodeErrorKind::InvalidUtf8,
            DecodeError::SignatureTooShort { .. } => DecodeErrorKind::SignatureTooShort,
            DecodeError::Encrypted { .. } => DecodeErrorKind::Encrypted,
            DecodeError::Signature { .. } => DecodeErrorKind::Signature,
            DecodeError::Decrypt { .. } => DecodeErrorKind::Decrypt,
            DecodeError::TooDeep { .. } => DecodeErrorKind::TooDeep,
        }
    }

    pub fn rejection(&self) -> Rejection {
        match self {
            DecodeError::Signature { .. } => Rejection::BadSignature,
            DecodeError::Decrypt { .. } | DecodeError::Encrypted { .. } => Rejection::DecryptFailed,
            _ => Rejection::Malformed,
        }
    }
}

/// The state that parts set and value lists and notifications read.
#[derive(Default)]
struct State {
    id: Identity,
    time: CdTime,
    interval: CdTime,
    severity: u64,
}

/// Protected parts may nest (a signed packet inside an encrypted one), but
/// not without end.
const MAX_NESTING: usize = 2;

/// Decodes one datagram without keys: signed data is accepted unverified
/// (as collectd does without an AuthFile), encrypted data is refused.
pub fn decode(datagram: &Bytes) -> Result<Packet, DecodeError> {
    decode_with(datagram, None)
}

/// Decodes one datagram, verifying signatures and opening encrypted parts
/// with `keys`. Strings and values share `datagram`'s buffer (or the
/// decrypted payload's); nothing else is copied.
pub fn decode_with(datagram: &Bytes, keys: Option<&Keys>) -> Result<Packet, DecodeError> {
    if datagram.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packet = Packet::default();
    parse(datagram, keys, Protection::None, 0, &mut packet)?;
    Ok(packet)
}

fn parse(
    buf: &Bytes,
    keys: Option<&Keys>,
    protection: Protection,
    depth: usize,
    packet: &mut Packet,
) -> Result<(), DecodeError> {
    let mut state = State::default();
    let mut offset = 0usize;
    let len = buf.len();

    while offset < len {
        let remaining = len - offset;
        if remaining < 4 {
            return Err(DecodeError::TruncatedHeader { offset, remaining });
        }
        let part_type = u16::from_be_bytes([buf[offset], buf[offset + 1]]);
        let part_len = u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]);
        if part_len < 4 {
            return Err(DecodeError::PartTooShort {
                offset,
                part_type,
                part_len,
            });
        }
        if usize::from(part_len) > remaining {
            return Err(DecodeError::PartPastEnd {
                offset,
                part_type,
                part_len,
                remaining,
            });
        }
        let end = offset + usize::from(part_len);
        // The body is sliced (a reference count) only for what keeps it: strings
        // and values; numbers are read in place.
        let at = Part {
            buf,
            start: offset + 4,
            end,
            offset,
            part_type,
            part_len,
        };

        match part_type {
            part::HOST => state.id.host = at.identity_string()?,
            part::PLUGIN => state.id.plugin = at.identity_string()?,
            part::PLUGIN_INSTANCE => state.id.plugin_instance = at.identity_string()?,
            part::TYPE => state.id.type_ = at.identity_string()?,
            part::TYPE_INSTANCE => state.id.type_instance = at.identity_string()?,
            part::TIME => state.time = CdTime::from_secs(at.number()?),
            part::TIME_HR => state.time = CdTime(at.number()?),
            part::INTERVAL => state.interval = CdTime::from_secs(at.number()?),
            part::INTERVAL_HR => state.interval = CdTime(at.number()?),
            part::SEVERITY => state.severity = at.number()?,
            part::VALUES => packet.value_lists.push(ValueList {
                id: state.id.clone(),
                time: state.time,
                interval: state.interval,
                values: at.values()?,
                protection,
            }),
            part::MESSAGE => packet.notifications.push(Notification {
                id: state.id.clone(),
                time: state.time,
                severity: Severity::from_wire(state.severity),
                message: at.raw_string()?,
                protection,
            }),
            part::SIGNATURE => {
                let body = at.body();
                if body.len() < 32 {
                    return Err(DecodeError::SignatureTooShort { offset, part_len });
                }
                let user = buf.slice(at.start + 32..end);
                packet.username = Some(user.clone());
                let Some(keys) = keys else {
                    // Without an auth file collectd accepts signed data
                    // unverified; it counts as unprotected.
                    offset = end;
                    continue;
                };
                if depth >= MAX_NESTING {
                    return Err(DecodeError::TooDeep { offset });
                }
                let rest = buf.slice(end..);
                keys.verify(&user, &body[..32], &rest)
                    .map_err(|e| DecodeError::Signature {
                        offset,
                        user: String::from_utf8_lossy(&user).into_owned(),
                        error: e,
                    })?;
                // The signature covers everything after it, which collectd
                // parses as a packet of its own (fresh state).
                let inner = protection.max(Protection::Signed);
                return parse(&rest, Some(keys), inner, depth + 1, packet);
            }
            part::ENCRYPTION => {
                let Some(keys) = keys else {
                    return Err(DecodeError::Encrypted { offset });
                };
                if depth >= MAX_NESTING {
                    return Err(DecodeError::TooDeep { offset });
                }
                let (user, payload) = keys
                    .decrypt(at.body())
                    .map_err(|e| DecodeError::Decrypt { offset, error: e })?;
                packet.username = Some(user);
                if payload.is_empty() {
                    return Err(DecodeError::Empty);
                }
                // A decrypted payload is a packet of its own, with fresh state.
                parse(
                    &payload,
                    Some(keys),
                    Protection::Encrypted,
                    depth + 1,
                    packet,
                )?;
            }
            _ => {} // Unknown parts are skipped, as collectd does.
        }
        offset = end;
    }
    Ok(())
}

/// One part: where it sits (for error messages) and its body
/// `buf[start..end]`.
struct Part<'a> {
    buf: &'a Bytes,
    start: usize,
    end: usize,
    offset: usize,
    part_type: u16,
    part_len: u16,
}

impl Part<'_> {
    fn body(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn number(&self) -> Result<u64, DecodeError> {
        let word: [u8; 8] = self
            .body()
            .try_into()
            .map_err(|_| DecodeError::NumberLength {
                offset: self.offset,
                part_type: self.part_type,
                part_len: self.part_len,
            })?;
        Ok(u64::from_be_bytes(word))
    }

    /// The length of a NUL-terminated string body without its NUL. Like
    /// collectd's C strings it ends at the first NUL.
    fn string_len(&self) -> Result<usize, DecodeError> {
        c_string_len(self.body()).ok_or(DecodeError::StringNotTerminated {
            offset: self.offset,
            part_type: self.part_type,
        })
    }

    fn raw_string(&self) -> Result<Bytes, DecodeError> {
        let len = self.string_len()?;
        Ok(self.buf.slice(self.start..self.start + len))
    }

    fn identity_string(&self) -> Result<Str, DecodeError> {
        let len = self.string_len()?;
        if len >= MAX_STRING_BYTES {
            return Err(DecodeError::StringTooLong {
                offset: self.offset,
                part_type: self.part_type,
                len,
            });
        }
        let range = self.start..self.start + len;
        if std::str::from_utf8(&self.buf[range.clone()]).is_err() {
            return Err(DecodeError::InvalidUtf8 {
                offset: self.offset,
                part_type: self.part_type,
            });
        }
        Ok(Str::from_checked(self.buf.slice(range)))
    }

    fn values(&self) -> Result<Values, DecodeError> {
        let body = self.body();
        if body.len() < 2 {
            return Err(DecodeError::ValuesLength {
                offset: self.offset,
                count: 0,
                part_len: self.part_len,
            });
        }
        let count = u16::from_be_bytes([body[0], body[1]]);
        if count == 0 {
            return Err(DecodeError::NoValues {
                offset: self.offset,
            });
        }
        if body.len() != 2 + 9 * usize::from(count) {
            return Err(DecodeError::ValuesLength {
                offset: self.offset,
                count,
                part_len: self.part_len,
            });
        }
        if let Some((index, code)) = unknown_value_type(body) {
            return Err(DecodeError::UnknownValueType {
                offset: self.offset,
                index,
                code,
            });
        }
        Ok(Values::from_checked(
            self.buf.slice(self.start + 2..self.end),
        ))
    }
}

/// The length of a NUL-terminated string body up to its first NUL; `None`
/// when the body does not end with a NUL.
fn c_string_len(body: &[u8]) -> Option<usize> {
    if body.last() != Some(&0) {
        return None;
    }
    body.iter().position(|&b| b == 0)
}

/// The first type code that is no value type, in a VALUES body whose length
/// matches its count.
fn unknown_value_type(body: &[u8]) -> Option<(usize, u8)> {
    let count = usize::from(u16::from_be_bytes([body[0], body[1]]));
    body[2..2 + count]
        .iter()
        .enumerate()
        .find(|(_, code)| **code > value_type::ABSOLUTE)
        .map(|(index, &code)| (index, code))
}

/// One value list in the shape every real-client datagram has, borrowed from
/// the datagram: see [`client_report`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientReport<'a> {
    pub host: &'a str,
    pub plugin: &'a str,
    pub plugin_instance: &'a str,
    pub type_: &'a str,
    pub type_instance: &'a str,
    pub time: CdTime,
    pub interval: CdTime,
    pub values: ValuesRef<'a>,
}

/// The fast path for the datagrams that make up nearly all traffic: a
/// datagram of identity, time and interval parts followed by exactly one
/// VALUES part at its end, each part as valid as [`decode`] demands. Such a
/// datagram decodes to exactly one unprotected value list equal to the
/// report returned here, so the caller may use either; nothing is sliced or
/// reference-counted. Anything else (several value lists, notifications,
/// signatures, encryption, unknown parts, any error) gives `None`, and the
/// datagram goes through [`decode_with`], which also says what was wrong.
pub fn client_report(datagram: &[u8]) -> Option<ClientReport<'_>> {
    let mut report = ClientReport {
        host: "",
        plugin: "",
        plugin_instance: "",
        type_: "",
        type_instance: "",
        time: CdTime(0),
        interval: CdTime(0),
        values: ValuesRef::from_checked(&[]),
    };
    let mut offset = 0usize;
    while offset < datagram.len() {
        let header = datagram.get(offset..offset + 4)?;
        let part_type = u16::from_be_bytes([header[0], header[1]]);
        let part_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if part_len < 4 {
            return None;
        }
        let body = datagram.get(offset + 4..offset + part_len)?;
        offset += part_len;
        match part_type {
            part::HOST => report.host = identity_str(body)?,
            part::PLUGIN => report.plugin = identity_str(body)?,
            part::PLUGIN_INSTANCE => report.plugin_instance = identity_str(body)?,
            part::TYPE => report.type_ = identity_str(body)?,
            part::TYPE_INSTANCE => report.type_instance = identity_str(body)?,
            part::TIME => report.time = CdTime::from_secs(number(body)?),
            part::TIME_HR => report.time = CdTime(number(body)?),
            part::INTERVAL => report.interval = CdTime::from_secs(number(body)?),
            part::INTERVAL_HR => report.interval = CdTime(number(body)?),
            part::VALUES if offset == datagram.len() => {
                if body.len() < 2 {
                    return None;
                }
                let count = usize::from(u16::from_be_bytes([body[0], body[1]]));
                if count == 0 || body.len() != 2 + 9 * count || unknown_value_type(body).is_some() {
                    return None;
                }
                report.values = ValuesRef::from_checked(&body[2..]);
                return Some(report);
            }
            _ => return None,
        }
    }
    None
}

/// An identity string as [`Part::identity_string`] accepts it.
fn identity_str(body: &[u8]) -> Option<&str> {
    let len = c_string_len(body)?;
    if len >= MAX_STRING_BYTES {
        return None;
    }
    std::str::from_utf8(&body[..len]).ok()
}

fn number(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::{Encoder, Value};

    fn header(part_type: u16, len: u16) -> Vec<u8> {
        let mut v = part_type.to_be_bytes().to_vec();
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    fn err(bytes: Vec<u8>) -> DecodeError {
        decode(&Bytes::from(bytes)).expect_err("datagram should be rejected")
    }

    #[test]
    fn gauge_is_little_endian_and_derive_big_endian() {
        let mut e = Encoder::new();
        e.values(&[
            Value::Gauge(1.5),
            Value::Derive(-2),
            Value::Counter(u64::MAX),
            Value::Absolute(7),
        ]);
        let raw = e.finish();
        // Gauge bytes straight after the 4 type codes: little-endian 1.5.
        assert_eq!(&raw[10..18], &1.5f64.to_le_bytes());
        assert_eq!(&raw[18..26], &(-2i64).to_be_bytes());
        let packet = decode(&raw).expect("decodes");
        let values: Vec<Value> = packet.value_lists[0].values.iter().collect();
        assert_eq!(
            values,
            vec![
                Value::Gauge(1.5),
                Value::Derive(-2),
                Value::Counter(u64::MAX),
                Value::Absolute(7)
            ]
        );
    }

    #[test]
    fn empty_datagram_is_rejected() {
        assert_eq!(err(vec![]), DecodeError::Empty);
    }

    #[test]
    fn zero_length_part_is_rejected() {
        assert_eq!(
            err(header(part::HOST, 0)),
            DecodeError::PartTooShort {
                offset: 0,
                part_type: 0,
                part_len: 0
            }
        );
    }

    #[test]
    fn truncated_header_is_rejected() {
        let mut b = header(part::HOST, 7);
        b.extend_from_slice(b"vm\0");
        b.extend_from_slice(&[0, 1]);
        assert_eq!(
            err(b),
            DecodeError::TruncatedHeader {
                offset: 7,
                remaining: 2
            }
        );
    }

    #[test]
    fn length_past_the_end_is_rejected() {
        let mut b = header(part::HOST, 40);
        b.extend_from_slice(b"vm\0");
        let e = err(b);
        assert_eq!(
            e,
            DecodeError::PartPastEnd {
                offset: 0,
                part_type: 0,
                part_len: 40,
                remaining: 7
            }
        );
        assert_eq!(
            e.to_string(),
            "part 0x0000 at byte 0 claims 40 bytes, 7 remain"
        );
    }

    #[test]
    fn value_count_must_match_part_length() {
        // Claims 2 values, carries one.
        let mut b = header(part::VALUES, 4 + 2 + 9);
        b.extend_from_slice(&2u16.to_be_bytes());
        b.push(value_type::GAUGE);
        b.extend_from_slice(&1.0f64.to_le_bytes());
        assert_eq!(
            err(b),
            DecodeError::ValuesLength {
                offset: 0,
                count: 2,
                part_len: 15
            }
        );
    }

    #[test]
    fn zero_values_are_rejected() {
        let mut b = header(part::VALUES, 6);
        b.extend_from_slice(&0u16.to_be_bytes());
        assert_eq!(err(b), DecodeError::NoValues { offset: 0 });
    }

    #[test]
    fn unknown_value_type_is_rejected() {
        let mut b = header(part::VALUES, 15);
        b.extend_from_slice(&1u16.to_be_bytes());
        b.push(9);
        b.extend_from_slice(&[0; 8]);
        assert_eq!(
            err(b),
            DecodeError::UnknownValueType {
                offset: 0,
                index: 0,
                code: 9
            }
        );
    }

    #[test]
    fn string_without_nul_is_rejected() {
        let mut b = header(part::PLUGIN, 6);
        b.extend_from_slice(b"ab");
        assert_eq!(
            err(b),
            DecodeError::StringNotTerminated {
                offset: 0,
                part_type: part::PLUGIN
            }
        );
    }

    #[test]
    fn empty_string_part_body_is_rejected() {
        assert_eq!(
            err(header(part::TYPE, 4)),
            DecodeError::StringNotTerminated {
                offset: 0,
                part_type: part::TYPE
            }
        );
    }

    #[test]
    fn overlong_string_is_rejected() {
        let s = "h".repeat(MAX_STRING_BYTES);
        let mut b = header(part::HOST, (4 + s.len() + 1) as u16);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        assert!(matches!(
            err(b),
            DecodeError::StringTooLong { len: 128, .. }
        ));
    }

    #[test]
    fn longest_accepted_string_is_127_bytes() {
        let mut e = Encoder::new();
        e.string(part::TYPE_INSTANCE, &"t".repeat(127));
        e.values(&[Value::Gauge(0.0)]);
        let packet = decode(&e.finish()).expect("127 bytes are accepted");
        assert_eq!(packet.value_lists[0].id.type_instance.as_str().len(), 127);
    }

    #[test]
    fn non_utf8_identity_is_rejected() {
        let mut b = header(part::HOST, 7);
        b.extend_from_slice(&[0xff, 0xfe, 0]);
        assert_eq!(
            err(b),
            DecodeError::InvalidUtf8 {
                offset: 0,
                part_type: part::HOST
            }
        );
    }

    #[test]
    fn numeric_part_must_be_eight_bytes() {
        let mut b = header(part::TIME, 8);
        b.extend_from_slice(&[0; 4]);
        assert_eq!(
            err(b),
            DecodeError::NumberLength {
                offset: 0,
                part_type: part::TIME,
                part_len: 8
            }
        );
    }

    #[test]
    fn unknown_parts_are_skipped() {
        let mut b = header(0x7777, 6);
        b.extend_from_slice(&[1, 2]);
        let mut e = Encoder::new();
        e.values(&[Value::Gauge(3.0)]);
        b.extend_from_slice(&e.finish());
        let packet = decode(&Bytes::from(b)).expect("decodes");
        assert_eq!(packet.value_lists.len(), 1);
    }

    #[test]
    fn state_carries_from_one_value_list_to_the_next() {
        let mut e = Encoder::new();
        e.string(part::HOST, "h");
        e.number(part::TIME_HR, 5 << 30);
        e.string(part::PLUGIN, "cpu");
        e.string(part::TYPE, "cpu");
        e.values(&[Value::Derive(1)]);
        e.string(part::TYPE_INSTANCE, "idle");
        e.values(&[Value::Derive(2)]);
        let packet = decode(&e.finish()).expect("decodes");
        let [a, b] = &packet.value_lists[..] else {
            panic!("two value lists expected, got {:?}", packet.value_lists)
        };
        assert_eq!(a.id.type_instance.as_str(), "");
        assert_eq!(b.id.type_instance.as_str(), "idle");
        assert_eq!(b.id.host.as_str(), "h");
        assert_eq!(b.id.plugin.as_str(), "cpu");
        assert_eq!(b.time, CdTime(5 << 30));
    }

    #[test]
    fn low_resolution_time_is_scaled_to_2_pow_minus_30() {
        let mut e = Encoder::new();
        e.number(part::TIME, 1795289844);
        e.number(part::INTERVAL, 2);
        e.values(&[Value::Gauge(0.0)]);
        let vl = &decode(&e.finish()).expect("decodes").value_lists[0];
        assert_eq!(vl.time.as_secs_f64(), 1795289844.0);
        assert_eq!(vl.interval.as_duration(), std::time::Duration::from_secs(2));
    }

    #[test]
    fn string_ends_at_first_nul() {
        let mut b = header(part::HOST, 9);
        b.extend_from_slice(b"ab\0c\0");
        let mut e = Encoder::new();
        e.values(&[Value::Gauge(0.0)]);
        b.extend_from_slice(&e.finish());
        let packet = decode(&Bytes::from(b)).expect("decodes");
        assert_eq!(packet.value_lists[0].id.host.as_str(), "ab");
    }

    #[test]
    fn notification_takes_time_severity_and_identity() {
        let mut e = Encoder::new();
        e.number(part::TIME_HR, 7 << 30);
        e.number(part::SEVERITY, 2);
        e.string(part::HOST, "vm");
        e.string(part::PLUGIN, "load");
        e.string(part::MESSAGE, "load high");
        let packet = decode(&e.finish()).expect("decodes");
        let n = &packet.notifications[0];
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.id.plugin.as_str(), "load");
        assert_eq!(&n.message[..], b"load high");
        assert_eq!(n.time, CdTime(7 << 30));
    }

    #[test]
    fn decoding_does_not_copy_the_datagram() {
        let mut e = Encoder::new();
        e.string(part::HOST, "vm");
        e.values(&[Value::Gauge(0.0)]);
        let raw = e.finish();
        let packet = decode(&raw).expect("decodes");
        let host = packet.value_lists[0].id.host.as_bytes();
        let range = raw.as_ptr_range();
        assert!(range.contains(&host.as_ptr()));
    }
}
