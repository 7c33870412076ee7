//! The exporter's own counters, in one struct shared by the listeners, the
//! ingest loop and the scrape. Everything is an atomic so that counting never
//! takes a lock; reasons are fixed enums so every series exists from the start.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::collectd::{DecodeError, Rejection, Severity};

/// Why a whole datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramReject {
    /// Not a valid collectd packet (the decode error kind is counted too).
    Malformed,
    /// A SIGNATURE part that does not verify.
    BadSignature,
    /// An ENCRYPTION part that cannot be opened.
    DecryptFailed,
    /// Data below the configured security level.
    BelowSecurityLevel,
    /// A sender outside the allowed networks.
    SourceNotAllowed,
}

impl DatagramReject {
    pub const ALL: [DatagramReject; 5] = [
        DatagramReject::Malformed,
        DatagramReject::BadSignature,
        DatagramReject::DecryptFailed,
        DatagramReject::BelowSecurityLevel,
        DatagramReject::SourceNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatagramReject::Malformed => "malformed",
            DatagramReject::BadSignature => "bad_signature",
            DatagramReject::DecryptFailed => "decrypt_failed",
            DatagramReject::BelowSecurityLevel => "below_security_level",
            DatagramReject::SourceNotAllowed => "source_not_allowed",
        }
    }
}

/// Why one value list of an accepted datagram changed nothing.
pub const VALUE_LIST_REASONS: [&str; 6] = [
    // Plugin `sqlalchemy` with a type the client does not send.
    "unknown_type",
    // A SQLAlchemy type with the wrong number or kind of values.
    "malformed",
    // A NaN/infinite pool gauge or a negative count.
    "invalid_value",
    // Duplicate, reordered or late: not newer than the process's last report.
    "out_of_order",
    // A new process, program or generic series beyond the configured limits.
    "over_limit",
    // The per-host sum relayed by sqlalchemy-collectd's server plugin.
    "aggregate_ignored",
];

const SEVERITIES: [&str; 4] = ["failure", "warning", "okay", "other"];

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
}

#[derive(Debug, Default)]
pub struct Telemetry {
    listeners: Mutex<Vec<Arc<Listener>>>,
    datagrams_rejected: [AtomicU64; DatagramReject::ALL.len()],
    decode_errors: [AtomicU64; DecodeError::KINDS.len()],
    value_lists_received: AtomicU64,
    value_lists_accepted: AtomicU64,
    value_lists_rejected: [AtomicU64; VALUE_LIST_REASONS.len()],
    notifications: [AtomicU64; SEVERITIES.len()],
    push_requests: [AtomicU64; PUSH_CODES.len()],
    /// When each datagram rejection reason was last logged at warn level.
    warned_at: [AtomicU64; DatagramReject::ALL.len()],
}

/// A rejection reason is logged at warn level at most this often (seconds);
/// the counters carry the rest.
const WARN_EVERY_SECS: u64 = 60;

/// Status codes the write_http endpoint answers with.
pub const PUSH_CODES: [u16; 4] = [200, 400, 403, 413];

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
        let i = DatagramReject::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
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
        if let Some(i) = DecodeError::KINDS.iter().position(|k| *k == e.kind()) {
            self.decode_errors[i].fetch_add(1, Relaxed);
        }
        warn
    }

    pub fn value_lists_received(&self, n: u64) {
        self.value_lists_received.fetch_add(n, Relaxed);
    }

    /// Value lists a store took (counted after the store applied them).
    pub fn value_lists_accepted(&self, n: u64) {
        self.value_lists_accepted.fetch_add(n, Relaxed);
    }

    /// `reason` is one of [`VALUE_LIST_REASONS`].
    pub fn value_list_rejected(&self, reason: &str) {
        if let Some(i) = VALUE_LIST_REASONS.iter().position(|r| *r == reason) {
            self.value_lists_rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn notification(&self, severity: Severity) {
        if let Some(i) = SEVERITIES.iter().position(|s| *s == severity.as_str()) {
            self.notifications[i].fetch_add(1, Relaxed);
        }
    }

    pub fn push_request(&self, code: u16) {
        if let Some(i) = PUSH_CODES.iter().position(|c| *c == code) {
            self.push_requests[i].fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> TelemetrySnapshot {
        let listeners = self.listeners.lock().map(|l| l.clone()).unwrap_or_default();
        let drops = kernel_drops();
        TelemetrySnapshot {
            listeners: listeners
                .iter()
                .map(|l| ListenerSnapshot {
                    label: l.label.clone(),
                    datagrams: l.datagrams.load(Relaxed),
                    bytes: l.bytes.load(Relaxed),
                    receive_buffer: l.receive_buffer,
                    kernel_drops: l
                        .inode
                        .and_then(|ino| drops.iter().find(|(i, _)| *i == ino).map(|(_, d)| *d)),
                })
                .collect(),
            datagrams_rejected: zip(
                DatagramReject::ALL.map(DatagramReject::as_str),
                &self.datagrams_rejected,
            ),
            decode_errors: zip(DecodeError::KINDS.iter().copied(), &self.decode_errors),
            value_lists_received: self.value_lists_received.load(Relaxed),
            value_lists_accepted: self.value_lists_accepted.load(Relaxed),
            value_lists_rejected: zip(VALUE_LIST_REASONS, &self.value_lists_rejected),
            notifications: zip(SEVERITIES, &self.notifications),
            push_requests: zip(["200", "400", "403", "413"], &self.push_requests),
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
