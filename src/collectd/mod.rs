//! The collectd binary network protocol: what a datagram carries once decoded.
//!
//! `decode` turns one datagram (`Bytes`) into [`Packet`]s of [`ValueList`]s and
//! [`Notification`]s without copying: every string and the values of a list
//! are slices of the datagram. `encode` writes the same format back (tests and
//! the load generator use it). Nothing here touches a socket, clock or metric.

mod decode;
mod encode;
pub mod json;
mod label;
pub mod security;
pub mod typesdb;

pub use decode::{
    ClientReport, DecodeError, DecodeErrorKind, MAX_STRING_BYTES, Rejection, client_report, decode,
    decode_with,
};
pub use encode::{Encoder, PartState};
pub(crate) use label::label_enum;
pub use security::{Keys, Protection, SecurityLevel};

use bytes::Bytes;

/// Part type codes, from collectd's `network.h`.
pub mod part {
    pub const HOST: u16 = 0x0000;
    pub const TIME: u16 = 0x0001;
    pub const PLUGIN: u16 = 0x0002;
    pub const PLUGIN_INSTANCE: u16 = 0x0003;
    pub const TYPE: u16 = 0x0004;
    pub const TYPE_INSTANCE: u16 = 0x0005;
    pub const VALUES: u16 = 0x0006;
    pub const INTERVAL: u16 = 0x0007;
    pub const TIME_HR: u16 = 0x0008;
    pub const INTERVAL_HR: u16 = 0x0009;
    pub const MESSAGE: u16 = 0x0100;
    pub const SEVERITY: u16 = 0x0101;
    pub const SIGNATURE: u16 = 0x0200;
    pub const ENCRYPTION: u16 = 0x0210;
}

/// Value type codes inside a VALUES part.
pub mod value_type {
    pub const COUNTER: u8 = 0;
    pub const GAUGE: u8 = 1;
    pub const DERIVE: u8 = 2;
    pub const ABSOLUTE: u8 = 3;
}

/// collectd's high-resolution time unit: 2^-30 seconds.
pub const HR_PER_SECOND: u64 = 1 << 30;

/// A point in time or a duration in collectd's 2^-30 s units, whichever part
/// (TIME or TIME_HR, INTERVAL or INTERVAL_HR) carried it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CdTime(pub u64);

impl CdTime {
    /// From whole seconds, as the low-resolution TIME and INTERVAL parts carry them.
    pub fn from_secs(secs: u64) -> Self {
        CdTime(secs.saturating_mul(HR_PER_SECOND))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / HR_PER_SECOND as f64
    }

    pub fn as_duration(self) -> std::time::Duration {
        let secs = self.0 >> 30;
        let frac = self.0 & (HR_PER_SECOND - 1);
        // frac < 2^30, so frac * 10^9 fits in u64.
        let nanos = (frac * 1_000_000_000) >> 30;
        std::time::Duration::new(secs, nanos as u32)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// One value of a value list, in the type the sender put on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    Derive(i64),
    Absolute(u64),
}

impl Value {
    pub fn type_code(self) -> u8 {
        match self {
            Value::Counter(_) => value_type::COUNTER,
            Value::Gauge(_) => value_type::GAUGE,
            Value::Derive(_) => value_type::DERIVE,
            Value::Absolute(_) => value_type::ABSOLUTE,
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Derive(_) => "derive",
            Value::Absolute(_) => "absolute",
        }
    }
}

/// The values of one VALUES part, still in wire form: `n` type bytes followed
/// by `n` eight-byte values. The decoder has checked the count against the
/// part length and every type code, so reading can no longer fail.
#[derive(Clone, PartialEq, Eq)]
pub struct Values {
    /// The part body after the u16 count: types, then values.
    raw: Bytes,
}

impl Values {
    /// `raw` must hold `n` valid type codes followed by `8 * n` bytes; only
    /// the decoder and the encoder build one.
    pub(crate) fn from_checked(raw: Bytes) -> Self {
        debug_assert_eq!(raw.len() % 9, 0);
        Values { raw }
    }

    /// Wire form of `values`, for value lists that arrive another way than
    /// a VALUES part (write_http JSON).
    pub fn new(values: &[Value]) -> Self {
        let mut raw = Vec::with_capacity(values.len() * 9);
        raw.extend(values.iter().map(|v| v.type_code()));
        for v in values {
            match *v {
                Value::Counter(n) | Value::Absolute(n) => raw.extend_from_slice(&n.to_be_bytes()),
                Value::Gauge(g) => raw.extend_from_slice(&g.to_le_bytes()),
                Value::Derive(d) => raw.extend_from_slice(&d.to_be_bytes()),
            }
        }
        Values { raw: raw.into() }
    }

    /// The same values, borrowed.
    pub fn as_ref(&self) -> ValuesRef<'_> {
        ValuesRef { raw: &self.raw }
    }

    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<Value> {
        self.as_ref().get(index)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Value> + '_ {
        let values = self.as_ref();
        (0..values.len()).map(move |i| values.at(i))
    }
}

/// [`Values`] borrowed from a datagram: what the decoder's fast path for the
/// real client's datagrams hands on without touching a reference count.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ValuesRef<'a> {
    /// Checked as for [`Values`]: `n` valid type codes, then `8 * n` bytes.
    raw: &'a [u8],
}

impl<'a> ValuesRef<'a> {
    pub(crate) fn from_checked(raw: &'a [u8]) -> Self {
        debug_assert_eq!(raw.len() % 9, 0);
        ValuesRef { raw }
    }

    pub fn len(&self) -> usize {
        self.raw.len() / 9
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<Value> {
        (index < self.len()).then(|| self.at(index))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Value> + 'a {
        let values = *self;
        (0..values.len()).map(move |i| values.at(i))
    }

    /// `index` is below `len()`.
    fn at(&self, index: usize) -> Value {
        let at = self.len() + index * 8;
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.raw[at..at + 8]);
        match self.raw[index] {
            value_type::COUNTER => Value::Counter(u64::from_be_bytes(word)),
            // collectd writes gauges as little-endian doubles, unlike every
            // other number on the wire.
            value_type::GAUGE => Value::Gauge(f64::from_le_bytes(word)),
            value_type::DERIVE => Value::Derive(i64::from_be_bytes(word)),
            _ => Value::Absolute(u64::from_be_bytes(word)),
        }
    }
}

impl std::fmt::Debug for ValuesRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A string part's content without its NUL, as a slice of the datagram.
/// Identity strings (host, plugin, type and their instances) are checked to be
/// UTF-8 by the decoder, so `as_str` cannot fail for them.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Str(Bytes);

impl Str {
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Str(bytes)
    }

    pub fn from_static(s: &'static str) -> Self {
        Str(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // Checked when built; the fallback never runs.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// The identity of a value list: what collectd calls host/plugin-plugin_instance/type-type_instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub host: Str,
    pub plugin: Str,
    pub plugin_instance: Str,
    pub type_: Str,
    pub type_instance: Str,
}

/// One value list, as emitted by one VALUES part with the state carried over
/// from the parts before it in the same datagram.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueList {
    pub id: Identity,
    /// Sender's time; zero when the datagram carried none.
    pub time: CdTime,
    /// Sender's interval; zero when the datagram carried none.
    pub interval: CdTime,
    pub values: Values,
    /// Whether it arrived signed or encrypted (and verified).
    pub protection: Protection,
}

/// collectd notification severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Failure,
    Warning,
    Okay,
    /// Any other number; collectd itself only sends 1, 2 and 4.
    Other(u64),
}

impl Severity {
    pub fn from_wire(n: u64) -> Self {
        match n {
            1 => Severity::Failure,
            2 => Severity::Warning,
            4 => Severity::Okay,
            n => Severity::Other(n),
        }
    }

    pub fn to_wire(self) -> u64 {
        match self {
            Severity::Failure => 1,
            Severity::Warning => 2,
            Severity::Okay => 4,
            Severity::Other(n) => n,
        }
    }

    /// What it is counted as.
    pub fn kind(self) -> SeverityKind {
        match self {
            Severity::Failure => SeverityKind::Failure,
            Severity::Warning => SeverityKind::Warning,
            Severity::Okay => SeverityKind::Okay,
            Severity::Other(_) => SeverityKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }
}

label_enum! {
    /// A [`Severity`] as counted: the `severity` label of
    /// `sqlalchemy_collectd_exporter_notifications_received_total`, every
    /// number outside collectd's three under `other`.
    pub enum SeverityKind {
        Failure => "failure",
        Warning => "warning",
        Okay => "okay",
        Other => "other",
    }
}

/// One notification (a MESSAGE part with the state before it).
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub id: Identity,
    pub time: CdTime,
    pub severity: Severity,
    /// Raw bytes: collectd cuts messages at 255 bytes, which can split a UTF-8
    /// character, so the message is not required to be UTF-8.
    pub message: Bytes,
    pub protection: Protection,
}

/// Everything one datagram carried.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packet {
    pub value_lists: Vec<ValueList>,
    pub notifications: Vec<Notification>,
    /// The user of the last SIGNATURE or ENCRYPTION part, verified or not.
    pub username: Option<Bytes>,
}
