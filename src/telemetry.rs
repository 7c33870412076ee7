//! The exporter's own counters, in one struct shared by the listeners, the
//! ingest loop and the scrape. Everything is an atomic so that counting never
//! takes a lock; reasons are fixed enums so every series exists from the start.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::collectd::{
    DecodeError, DecodeErrorKind, Rejection, Severity, SeverityKind, label_enum,
};
use crate::route::RouteError;
use crate::store::sqlalchemy::ApplyError;

label_enum! {
    /// Why a whole datagram was dropped.
    pub enum DatagramReject {
        /// Not a valid collectd packet (the decode error kind is counted too).
        Malformed => "malformed",
        /// A SIGNATURE part that does not verify.
        BadSignature => "bad_signature",
        /// An ENCRYPTION part that cannot be opened.
        DecryptFailed => "decrypt_failed",
        /// Data below the configured security level.
        BelowSecurityLevel => "below_security_level",
        /// A sender outside the allowed networks.
        SourceNotAllowed => "source_not_allowed",
    }
}

label_enum! {
    /// Why one value list of an accepted datagram changed nothing.
    pub enum ValueListReject {
        /// Plugin `sqlalchemy` with a type the client does not send.
        UnknownType => "unknown_type",
        /// A SQLAlchemy type with the wrong number or kind of values, or a
        /// value list without a plugin or a type.
        Malformed => "malformed",
        /// A NaN/infinite pool gauge or a negative count.
        InvalidValue => "invalid_value",
        /// Duplicate, reordered or late: not newer than the process's last report.
        OutOfOrder => "out_of_order",
        /// Totals lower than the process's last accepted ones: a late or
        /// replayed datagram, whatever its timestamp.
        Stale => "stale",
        /// A new process, program or generic series beyond the configured limits.
        OverLimit => "over_limit",
        /// The per-host sum relayed by sqlalchemy-collectd's server plugin.
        AggregateIgnored => "aggregate_ignored",
    }
}

impl From<&RouteError> for ValueListReject {
    fn from(e: &RouteError) -> Self {
        match e {
            RouteError::UnknownType { .. } => ValueListReject::UnknownType,
            RouteError::ValueCount { .. }
            | RouteError::ValueType { .. }
            | RouteError::NoPluginOrType => ValueListReject::Malformed,
            RouteError::OutOfRange { .. } => ValueListReject::InvalidValue,
            RouteError::HostAggregate => ValueListReject::AggregateIgnored,
        }
    }
}

impl From<ApplyError> for ValueListReject {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::OutOfOrder => ValueListReject::OutOfOrder,
            ApplyError::Stale => ValueListReject::Stale,
            ApplyError::OverLimit(_) | ApplyError::NeedsRoom(_) => ValueListReject::OverLimit,
        }
    }
}

label_enum! {
    /// How the write_http endpoint answered a request: the label is the
    /// HTTP status code.
    pub enum PushOutcome {
        /// The body was parsed and its value lists routed.
        Received => "200",
        /// The body is not collectd JSON.
        BadBody => "400",
        /// The security level accepts only signed or encrypted data.
        Forbidden => "403",
        /// The body is larger than the endpoint takes.
        TooLarge => "413",
    }
}

label_enum! {
    /// Why the exporter closed an HTTP connection (`crate::http::serve`).
    pub enum ConnectionClose {
        /// Silent longer than `--web.idle-timeout` since its last response
        /// (or since it was accepted).
        IdleTimeout => "idle_timeout",
        /// A request head (or a TLS handshake) not finished within
        /// `--web.read-header-timeout`.
        HeaderTimeout => "header_timeout",
        /// The longest idle connection, closed for a new one at
        /// `--web.max-connections`.
        Evicted => "evicted",
        /// A new connection at `--web.max-connections` while every open
        /// one had a request in flight.
        OverLimit => "over_limit",
    }
}

label_enum! {
    /// Why an HTTP request was answered without being served.
    pub enum RequestRefusal {
        /// `--web.max-requests` scrapes were already being answered (503).
        MaxRequests => "max_requests",
    }
}

/// Counters of one UDP listener.
#[derive(Debug)]
pub struct Listener {
    pub address: SocketAddr,
    /// Label value: the address as bound.
    pub label: String,
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    /// SO_RCVBUF as granted by the kernel.
    pub receive_buffer: u64,
    /// The socket's inode, to find its kernel drop counter.
    pub inode: Option<u64>,
    /// Reads in a row that found a full batch queued: the receive thread
    /// is behind (see [`Telemetry::ingest_behind`]).
    pub full_reads: AtomicU64,
}

impl Listener {
    /// A listener bound at `address`, labelled by it, with nothing counted.
    pub fn new(address: SocketAddr, receive_buffer: u64, inode: Option<u64>) -> Self {
        Listener {
            address,
            label: address.to_string(),
            datagrams: 0.into(),
            bytes: 0.into(),
            receive_buffer,
            inode,
            full_reads: 0.into(),
        }
    }
}

/// This many full batches read in a row: the socket queue has stayed
/// backed up for a few thousand datagrams, so ingest is saturated.
pub const BEHIND_AFTER_FULL_READS: u64 = 32;

#[derive(Debug, Default)]
pub struct Telemetry {
    listeners: Mutex<Vec<Arc<Listener>>>,
    datagrams_rejected: [AtomicU64; DatagramReject::ALL.len()],
    decode_errors: [AtomicU64; DecodeErrorKind::ALL.len()],
    value_lists_received: AtomicU64,
    value_lists_accepted: AtomicU64,
    value_lists_rejected: [AtomicU64; ValueListReject::ALL.len()],
    notifications: [AtomicU64; SeverityKind::ALL.len()],
    push_requests: [AtomicU64; PushOutcome::ALL.len()],
    http_connections: AtomicU64,
    http_connections_closed: [AtomicU64; ConnectionClose::ALL.len()],
    http_requests_refused: [AtomicU64; RequestRefusal::ALL.len()],
    /// When each datagram rejection reason was last logged at warn level.
    warned_at: [AtomicU64; DatagramReject::ALL.len()],
}

/// A rejection reason is logged at warn level at most this often (seconds);
/// the counters carry the rest.
const WARN_EVERY_SECS: u64 = 60;

/// A copy of every counter, taken at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TelemetrySnapshot {
    pub listeners: Vec<ListenerSnapshot>,
    pub datagrams_rejected: Vec<(&'static str, u64)>,
    pub decode_errors: Vec<(&'static str, u64)>,
    pub value_lists_received: u64,
    pub value_lists_accepted: u64,
    pub value_lists_rejected: Vec<(&'static str, u64)>,
    pub notifications: Vec<(&'static str, u64)>,
    /// write_http requests by status code.
    pub push_requests: Vec<(&'static str, u64)>,
    /// HTTP connections open.
    pub http_connections: u64,
    pub http_connections_closed: Vec<(&'static str, u64)>,
    pub http_requests_refused: Vec<(&'static str, u64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerSnapshot {
    pub label: String,
    pub datagrams: u64,
    pub bytes: u64,
    pub receive_buffer: u64,
    /// Datagrams the kernel dropped because the socket buffer was full, where
    /// the OS reports it.
    pub kernel_drops: Option<u64>,
}

impl Telemetry {
    pub fn add_listener(&self, listener: Listener) -> Arc<Listener> {
        let listener = Arc::new(listener);
        if let Ok(mut all) = self.listeners.lock() {
            all.push(listener.clone());
        }
        listener
    }

    /// Counts a rejected datagram; true when it should also be logged at
    /// warn level (the first of its reason in a minute), so that a flood of
    /// bad datagrams cannot flood the log.
    pub fn datagram_rejected(&self, reason: DatagramReject) -> bool {
        let i = reason.index();
        self.datagrams_rejected[i].fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.warned_at[i].load(Relaxed);
        (last == 0 || now >= last + WARN_EVERY_SECS)
            && self.warned_at[i]
                .compare_exchange(last, now.max(1), Relaxed, Relaxed)
                .is_ok()
    }

    /// Counts a datagram the decoder refused; see [`Telemetry::datagram_rejected`].
    pub fn decode_error(&self, e: &DecodeError) -> bool {
        let warn = self.datagram_rejected(match e.rejection() {
            Rejection::Malformed => DatagramReject::Malformed,
            Rejection::BadSignature => DatagramReject::BadSignature,
            Rejection::DecryptFailed => DatagramReject::DecryptFailed,
        });
        self.decode_errors[e.kind().index()].fetch_add(1, Relaxed);
        warn
    }

    pub fn value_lists_received(&self, n: u64) {
        self.value_lists_received.fetch_add(n, Relaxed);
    }

    /// Value lists a store took (counted after the store applied them).
    pub fn value_lists_accepted(&self, n: u64) {
        self.value_lists_accepted.fetch_add(n, Relaxed);
    }

    pub fn value_list_rejected(&self, reason: ValueListReject) {
        self.value_lists_rejected[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn notification(&self, severity: Severity) {
        self.notifications[severity.kind().index()].fetch_add(1, Relaxed);
    }

    pub fn push_request(&self, outcome: PushOutcome) {
        self.push_requests[outcome.index()].fetch_add(1, Relaxed);
    }

    /// The number of HTTP connections open now.
    pub fn http_connections(&self, open: usize) {
        self.http_connections.store(open as u64, Relaxed);
    }

    pub fn http_connection_closed(&self, reason: ConnectionClose) {
        self.http_connections_closed[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn http_request_refused(&self, reason: RequestRefusal) {
        self.http_requests_refused[reason.index()].fetch_add(1, Relaxed);
    }

    /// Whether a receive thread is saturated: it keeps finding its socket's
    /// queue full. Drops are happening or about to; a scrape that waited for
    /// it would only add an unanswered scrape to them.
    pub fn ingest_behind(&self) -> bool {
        self.listeners.lock().is_ok_and(|all| {
            all.iter()
                .any(|l| l.full_reads.load(Relaxed) >= BEHIND_AFTER_FULL_READS)
        })
    }

    pub fn snapshot(&self) -> TelemetrySnapshot {
        let listeners = self.listeners.lock().map(|l| l.clone()).unwrap_or_default();
        let drops = kernel_drops();
        TelemetrySnapshot {
            listeners: merged(&listeners, &drops),
            datagrams_rejected: zip(
                DatagramReject::ALL.map(DatagramReject::as_str),
                &self.datagrams_rejected,
            ),
            decode_errors: zip(
                DecodeErrorKind::ALL.map(DecodeErrorKind::as_str),
                &self.decode_errors,
            ),
            value_lists_received: self.value_lists_received.load(Relaxed),
            value_lists_accepted: self.value_lists_accepted.load(Relaxed),
            value_lists_rejected: zip(
                ValueListReject::ALL.map(ValueListReject::as_str),
                &self.value_lists_rejected,
            ),
            notifications: zip(
                SeverityKind::ALL.map(SeverityKind::as_str),
                &self.notifications,
            ),
            push_requests: zip(
                PushOutcome::ALL.map(PushOutcome::as_str),
                &self.push_requests,
            ),
            http_connections: self.http_connections.load(Relaxed),
            http_connections_closed: zip(
                ConnectionClose::ALL.map(ConnectionClose::as_str),
                &self.http_connections_closed,
            ),
            http_requests_refused: zip(
                RequestRefusal::ALL.map(RequestRefusal::as_str),
                &self.http_requests_refused,
            ),
        }
    }
}

fn zip(
    names: impl IntoIterator<Item = &'static str>,
    counters: &[AtomicU64],
) -> Vec<(&'static str, u64)> {
    names
        .into_iter()
        .zip(counters.iter().map(|c| c.load(Relaxed)))
        .collect()
}

/// One snapshot per listener: a listener with a socket per receive thread
/// has a [`Listener`] per socket, all with its label, summed here (kernel
/// drops too, by each socket's inode).
fn merged(listeners: &[Arc<Listener>], drops: &[(u64, u64)]) -> Vec<ListenerSnapshot> {
    let mut out: Vec<ListenerSnapshot> = Vec::new();
    for l in listeners {
        let dropped = l
            .inode
            .and_then(|ino| drops.iter().find(|(i, _)| *i == ino).map(|(_, d)| *d));
        let (datagrams, bytes) = (l.datagrams.load(Relaxed), l.bytes.load(Relaxed));
        match out.iter_mut().find(|s| s.label == l.label) {
            Some(s) => {
                s.datagrams += datagrams;
                s.bytes += bytes;
                s.receive_buffer = s.receive_buffer.max(l.receive_buffer);
                s.kernel_drops = match (s.kernel_drops, dropped) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            None => out.push(ListenerSnapshot {
                label: l.label.clone(),
                datagrams,
                bytes,
                receive_buffer: l.receive_buffer,
                kernel_drops: dropped,
            }),
        }
    }
    out
}

/// (socket inode, drops) of every UDP socket, from Linux's /proc/net/udp and
/// udp6 (last column). Empty where the files do not exist.
fn kernel_drops() -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for path in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            if fields.len() < 13 {
                continue;
            }
            if let (Ok(inode), Ok(drops)) = (fields[9].parse(), fields[12].parse()) {
                out.push((inode, drops));
            }
        }
    }
    out
}

/// The inode of an open socket, which /proc/net/udp lists it by.
pub fn socket_inode(fd: std::os::fd::RawFd) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The label values of every reason enum, by the family that counts them.
    fn labels() -> [(&'static str, Vec<&'static str>); 7] {
        [
            (
                "datagrams_rejected",
                DatagramReject::ALL.map(DatagramReject::as_str).to_vec(),
            ),
            (
                "decode_errors",
                DecodeErrorKind::ALL.map(DecodeErrorKind::as_str).to_vec(),
            ),
            (
                "value_lists_rejected",
                ValueListReject::ALL.map(ValueListReject::as_str).to_vec(),
            ),
            (
                "notifications",
                SeverityKind::ALL.map(SeverityKind::as_str).to_vec(),
            ),
            (
                "push_requests",
                PushOutcome::ALL.map(PushOutcome::as_str).to_vec(),
            ),
            (
                "http_connections_closed",
                ConnectionClose::ALL.map(ConnectionClose::as_str).to_vec(),
            ),
            (
                "http_requests_refused",
                RequestRefusal::ALL.map(RequestRefusal::as_str).to_vec(),
            ),
        ]
    }

    #[test]
    fn every_reason_has_a_distinct_non_empty_label() {
        for (family, labels) in labels() {
            assert!(labels.iter().all(|l| !l.is_empty()), "{family}: {labels:?}");
            let distinct: HashSet<_> = labels.iter().collect();
            assert_eq!(distinct.len(), labels.len(), "{family}: {labels:?}");
        }
    }

    #[test]
    fn every_reason_is_counted_at_zero_from_start() {
        let s = Telemetry::default().snapshot();
        let counted = [
            &s.datagrams_rejected,
            &s.decode_errors,
            &s.value_lists_rejected,
            &s.notifications,
            &s.push_requests,
            &s.http_connections_closed,
            &s.http_requests_refused,
        ];
        for ((family, labels), counts) in labels().into_iter().zip(counted) {
            let zeros: Vec<_> = labels.into_iter().map(|l| (l, 0)).collect();
            assert_eq!(*counts, zeros, "{family}");
        }
    }

    /// The label values and their order are what dashboards and alerts
    /// already query.
    #[test]
    fn label_values_keep_their_names_and_order() {
        let [
            datagrams,
            decode,
            value_lists,
            severities,
            push,
            closed,
            refused,
        ] = labels().map(|(_, l)| l);
        assert_eq!(
            datagrams,
            [
                "malformed",
                "bad_signature",
                "decrypt_failed",
                "below_security_level",
                "source_not_allowed"
            ]
        );
        assert_eq!(
            decode,
            [
                "empty",
                "truncated_header",
                "part_past_end",
                "part_too_short",
                "number_length",
                "values_length",
                "no_values",
                "unknown_value_type",
                "string_not_terminated",
                "string_too_long",
                "invalid_utf8",
                "signature_too_short",
                "encrypted",
                "signature",
                "decrypt",
                "too_deep"
            ]
        );
        assert_eq!(
            value_lists,
            [
                "unknown_type",
                "malformed",
                "invalid_value",
                "out_of_order",
                "stale",
                "over_limit",
                "aggregate_ignored"
            ]
        );
        assert_eq!(severities, ["failure", "warning", "okay", "other"]);
        assert_eq!(push, ["200", "400", "403", "413"]);
        assert_eq!(
            closed,
            ["idle_timeout", "header_timeout", "evicted", "over_limit"]
        );
        assert_eq!(refused, ["max_requests"]);
    }

    /// Counting one of each reason moves its own label and no other.
    #[test]
    fn each_reason_counts_under_its_own_label() {
        fn only(counts: &[(&'static str, u64)], label: &str) {
            for (l, n) in counts {
                assert_eq!(*n, u64::from(*l == label), "{label}: {counts:?}");
            }
        }
        for r in ValueListReject::ALL {
            let t = Telemetry::default();
            t.value_list_rejected(r);
            only(&t.snapshot().value_lists_rejected, r.as_str());
        }
        for r in DatagramReject::ALL {
            let t = Telemetry::default();
            assert!(t.datagram_rejected(r), "the first of a reason is logged");
            assert!(!t.datagram_rejected(r), "the second within a minute is not");
            let s = t.snapshot();
            let i = r.index();
            assert_eq!(s.datagrams_rejected[i], (r.as_str(), 2));
        }
        for o in PushOutcome::ALL {
            let t = Telemetry::default();
            t.push_request(o);
            only(&t.snapshot().push_requests, o.as_str());
        }
        for r in ConnectionClose::ALL {
            let t = Telemetry::default();
            t.http_connection_closed(r);
            only(&t.snapshot().http_connections_closed, r.as_str());
        }
        for r in RequestRefusal::ALL {
            let t = Telemetry::default();
            t.http_request_refused(r);
            only(&t.snapshot().http_requests_refused, r.as_str());
        }
        for (severity, label) in [
            (Severity::Failure, "failure"),
            (Severity::Warning, "warning"),
            (Severity::Okay, "okay"),
            (Severity::Other(0), "other"),
            (Severity::Other(7), "other"),
        ] {
            let t = Telemetry::default();
            t.notification(severity);
            only(&t.snapshot().notifications, label);
        }
    }

    #[test]
    fn a_decode_error_counts_its_kind_and_its_datagram_reason() {
        let t = Telemetry::default();
        t.decode_error(&DecodeError::TooDeep { offset: 0 });
        t.decode_error(&DecodeError::Encrypted { offset: 0 });
        let s = t.snapshot();
        let nonzero = |c: &[(&'static str, u64)]| -> Vec<(&'static str, u64)> {
            c.iter().copied().filter(|(_, n)| *n > 0).collect()
        };
        assert_eq!(
            nonzero(&s.decode_errors),
            [("encrypted", 1), ("too_deep", 1)]
        );
        assert_eq!(
            nonzero(&s.datagrams_rejected),
            [("malformed", 1), ("decrypt_failed", 1)]
        );
    }

    #[test]
    fn route_and_apply_errors_count_under_their_reasons() {
        let cases = [
            (
                RouteError::UnknownType {
                    type_: "sqlalchemy_bogus".into(),
                },
                ValueListReject::UnknownType,
            ),
            (
                RouteError::ValueCount {
                    type_: "sqlalchemy_totals",
                    expected: 4,
                    got: 3,
                },
                ValueListReject::Malformed,
            ),
            (
                RouteError::ValueType {
                    type_: "sqlalchemy_pool",
                    index: 0,
                    expected: "GAUGE",
                    got: "DERIVE",
                },
                ValueListReject::Malformed,
            ),
            (RouteError::NoPluginOrType, ValueListReject::Malformed),
            (
                RouteError::OutOfRange {
                    type_: "sqlalchemy_pool",
                    index: 0,
                    value: "NaN".into(),
                },
                ValueListReject::InvalidValue,
            ),
            (RouteError::HostAggregate, ValueListReject::AggregateIgnored),
        ];
        for (e, reason) in &cases {
            assert_eq!(ValueListReject::from(e), *reason, "{e:?}");
        }
        assert_eq!(
            ValueListReject::from(ApplyError::OutOfOrder),
            ValueListReject::OutOfOrder
        );
        assert_eq!(
            ValueListReject::from(ApplyError::OverLimit("process")),
            ValueListReject::OverLimit
        );
        assert_eq!(
            ValueListReject::from(ApplyError::Stale),
            ValueListReject::Stale
        );
    }

    #[test]
    fn ingest_is_behind_once_a_listener_keeps_reading_full_batches() {
        let t = Telemetry::default();
        let a = t.add_listener(Listener::new(([127, 0, 0, 1], 1).into(), 0, None));
        let b = t.add_listener(Listener::new(([127, 0, 0, 1], 2).into(), 0, None));
        assert!(!t.ingest_behind());
        b.full_reads.store(BEHIND_AFTER_FULL_READS - 1, Relaxed);
        assert!(!t.ingest_behind());
        b.full_reads.store(BEHIND_AFTER_FULL_READS, Relaxed);
        assert!(t.ingest_behind());
        // A read that is not full: caught up.
        b.full_reads.store(0, Relaxed);
        a.full_reads.store(0, Relaxed);
        assert!(!t.ingest_behind());
    }
}
