//! Ingest: datagrams and value lists in, stores and counters updated.
//!
//! [`Sink`] is the one place that judges what arrives (source allowlist,
//! decode, security level, route), applies it to the stores and counts every
//! outcome. The UDP receiver ([`receive`]), the write_http push
//! (`crate::http::push`), the fuzz targets and the benchmark all drive it, so
//! what they check is what production does.
//!
//! Takes datagrams (with their source) or decoded value lists; hands on
//! nothing but the stores' new state and the telemetry counters. Bad input is
//! counted by reason and logged at debug (the first of a kind in a minute at
//! warn); nothing from the network can stop it.

pub mod receive;

use crate::collectd::{
    ClientReport, DecodeError, Keys, SecurityLevel, ValueList, client_report, decode_with,
};
use crate::route::{Record, Sample, SqlaRecord, route, route_client};
use crate::state::Current;
use crate::store::sqlalchemy::{Report, Source};
use crate::store::{Now, Stores, lock};
use crate::telemetry::{DatagramReject, Listener, Telemetry, ValueListReject};
use bytes::Bytes;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// `--collectd.allow`: the source networks datagrams are accepted from.
#[derive(Clone, Debug, Default)]
pub struct Allow(pub Vec<ipnet::IpNet>);

impl Allow {
    /// Whether a datagram from `from` is accepted. An IPv4 sender seen on a
    /// dual-stack socket (`::ffff:a.b.c.d`) is judged by its IPv4 address.
    pub fn allows(&self, from: &SocketAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let (ip, canonical) = (from.ip(), from.ip().to_canonical());
        self.0
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
    }
}

/// Routes, applies and counts. Shared by every receive thread and the push
/// handler; holds the stores and counters, the keys in use, and the rules
/// for what is accepted.
#[derive(Debug)]
pub struct Sink {
    stores: Arc<Stores>,
    telemetry: Arc<Telemetry>,
    /// Replaced whole when the auth file is reloaded.
    keys: Arc<Current<Option<Keys>>>,
    allow: Allow,
    level: SecurityLevel,
    /// While set (the saved state being read and restored at start), the
    /// receive threads hold what they read instead of applying it, up to
    /// `hold_bytes` each, and apply it in order once it is cleared.
    holding: std::sync::atomic::AtomicBool,
    hold_bytes: std::sync::atomic::AtomicUsize,
}

/// Records of several datagrams, applied to the stores together (one lock
/// per store per batch). `'a` is the receive buffer the fast path's reports
/// borrow from.
#[derive(Default)]
pub struct Batch<'a> {
    sqla: Vec<(SqlaRecord, Source)>,
    generic: Vec<(ValueList, Source)>,
    /// Reports of the real client's shape, decoded in place (see
    /// [`client_report`]).
    fast: Vec<(ClientReport<'a>, Sample, Source)>,
    /// Value lists of the fast path received, counted into the telemetry
    /// once per batch: a counter every receive thread adds to per datagram
    /// would be a cache line the cores pass back and forth.
    received: u64,
}

impl<'a> Batch<'a> {
    pub fn new() -> Self {
        Batch::default()
    }

    /// An empty batch for another buffer, with this one's allocations: what
    /// lets the receive loop keep its vectors across batches.
    pub fn recycle<'b>(self) -> Batch<'b> {
        let Batch {
            mut sqla,
            mut generic,
            fast,
            received: _,
        } = self;
        sqla.clear();
        generic.clear();
        Batch {
            sqla,
            generic,
            fast: recycle(fast),
            received: 0,
        }
    }
}

/// An empty vector with `v`'s allocation, for elements of another lifetime.
/// (Collecting an emptied vector's iterator into one whose elements have the
/// same size and alignment reuses its buffer.)
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl Sink {
    pub fn new(
        stores: Arc<Stores>,
        telemetry: Arc<Telemetry>,
        keys: Arc<Current<Option<Keys>>>,
        allow: Allow,
        level: SecurityLevel,
    ) -> Self {
        Sink {
            stores,
            telemetry,
            keys,
            allow,
            level,
            holding: std::sync::atomic::AtomicBool::new(false),
            hold_bytes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Makes the receive threads hold what they read, up to `bytes` of
    /// datagrams each (beyond it they stop reading, and the kernel queues,
    /// then drops and counts), until [`Sink::release`].
    pub fn hold(&self, bytes: usize) {
        self.hold_bytes.store(bytes, Relaxed);
        self.holding
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Lets the receive threads apply what they held, then go on as usual.
    pub fn release(&self) {
        self.holding
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Whether to hold (see [`Sink::hold`]), and up to how many bytes.
    pub fn holding(&self) -> Option<usize> {
        self.holding
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| self.hold_bytes.load(Relaxed))
    }

    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub fn security_level(&self) -> SecurityLevel {
        self.level
    }

    /// The keys in use; taken once per batch.
    pub fn keys(&self) -> Arc<Option<Keys>> {
        self.keys.get()
    }

    /// One datagram of a batch, `buffer[range]`, received from `from` on
    /// `listener`. The real client's datagrams are decoded in place and
    /// borrow from `buffer`; anything else goes through the general decoder.
    pub fn datagram<'a>(
        &self,
        buffer: &'a Bytes,
        range: Range<usize>,
        from: SocketAddr,
        keys: Option<&Keys>,
        listener: &Listener,
        batch: &mut Batch<'a>,
    ) {
        let datagram = &buffer[range.clone()];
        if self.level == SecurityLevel::None
            && self.allow.allows(&from)
            && let Some(report) = client_report(datagram)
            && let Some(sample) = route_client(&report)
        {
            listener.datagrams.fetch_add(1, Relaxed);
            listener.bytes.fetch_add(datagram.len() as u64, Relaxed);
            batch.received += 1;
            match sample {
                Ok(sample) => batch.fast.push((report, sample, Source::of(from.ip()))),
                Err(e) => {
                    // Received before rejected, as every scrape sees them.
                    self.telemetry
                        .value_lists_received(std::mem::take(&mut batch.received));
                    self.telemetry
                        .value_list_rejected(ValueListReject::from(&e));
                    tracing::debug!(%from, error = %e, "value list rejected");
                }
            }
            return;
        }
        self.decoded(buffer.slice(range), from, keys, listener, batch);
    }

    /// One datagram through the general decoder (several value lists,
    /// notifications, signatures, encryption, errors).
    pub fn decoded(
        &self,
        datagram: Bytes,
        from: SocketAddr,
        keys: Option<&Keys>,
        listener: &Listener,
        batch: &mut Batch<'_>,
    ) {
        let t = &self.telemetry;
        listener.datagrams.fetch_add(1, Relaxed);
        listener.bytes.fetch_add(datagram.len() as u64, Relaxed);
        if !self.allow.allows(&from) {
            if t.datagram_rejected(DatagramReject::SourceNotAllowed) {
                tracing::warn!(
                    %from,
                    "datagram from a source outside --collectd.allow dropped; more within a minute are only counted"
                );
            } else {
                tracing::debug!(%from, "datagram from a source outside --collectd.allow dropped");
            }
            return;
        }
        let mut packet = match decode_with(&datagram, keys) {
            Ok(p) => p,
            Err(e) => {
                self.reject_datagram(&e, from);
                return;
            }
        };
        let level = self.level;
        let carried = packet.value_lists.len() + packet.notifications.len();
        packet.value_lists.retain(|v| v.protection.satisfies(level));
        packet
            .notifications
            .retain(|n| n.protection.satisfies(level));
        if packet.value_lists.len() + packet.notifications.len() < carried {
            if t.datagram_rejected(DatagramReject::BelowSecurityLevel) {
                tracing::warn!(
                    %from, ?level,
                    "data below the security level dropped; more within a minute are only counted"
                );
            } else {
                tracing::debug!(%from, ?level, "data below the security level dropped");
            }
        }
        for n in &packet.notifications {
            t.notification(n.severity);
            tracing::debug!(
                %from, host = n.id.host.as_str(), plugin = n.id.plugin.as_str(),
                severity = n.severity.as_str(),
                message = %String::from_utf8_lossy(&n.message), "notification"
            );
        }
        self.route(packet.value_lists, &from, Source::of(from.ip()), batch);
    }

    /// Value lists that arrived another way than a datagram (write_http
    /// JSON): routed and applied at once.
    pub fn value_lists(&self, value_lists: Vec<ValueList>, from: &str) {
        self.value_lists_at(value_lists, from, Source::default(), Now::wall());
    }

    /// [`Sink::value_lists`] sent by `source` (what shares the limits).
    pub fn value_lists_from(&self, value_lists: Vec<ValueList>, from: &str, source: Source) {
        self.value_lists_at(value_lists, from, source, Now::wall());
    }

    /// [`Sink::value_lists_from`] at a given receive time.
    pub fn value_lists_at(
        &self,
        value_lists: Vec<ValueList>,
        from: &str,
        source: Source,
        now: Now,
    ) {
        let mut batch = Batch::new();
        self.route(value_lists, &from, source, &mut batch);
        self.apply_at(&mut batch, now);
    }

    fn reject_datagram(&self, e: &DecodeError, from: SocketAddr) {
        if self.telemetry.decode_error(e) {
            tracing::warn!(
                %from, error = %e,
                "datagram rejected; more of this kind within a minute are only counted \
                 (sqlalchemy_collectd_exporter_datagrams_rejected_total) and logged at debug level"
            );
        } else {
            tracing::debug!(%from, error = %e, "datagram rejected");
        }
    }

    /// Sorts value lists into the batch; the ones that cannot be stored are
    /// counted by reason.
    fn route(
        &self,
        value_lists: Vec<ValueList>,
        from: &dyn std::fmt::Display,
        source: Source,
        batch: &mut Batch<'_>,
    ) {
        let t = &self.telemetry;
        t.value_lists_received(value_lists.len() as u64);
        for vl in value_lists {
            match route(vl) {
                Ok(Record::Sqla(r)) => batch.sqla.push((r, source)),
                Ok(Record::Generic(vl)) => batch.generic.push((vl, source)),
                Err(e) => {
                    t.value_list_rejected(ValueListReject::from(&e));
                    tracing::debug!(%from, error = %e, "value list rejected");
                }
            }
        }
    }

    /// Applies a batch, one lock per store, at the wall clock's now; then
    /// empties it.
    pub fn apply(&self, batch: &mut Batch<'_>) {
        self.apply_at(batch, Now::wall());
    }

    /// [`Sink::apply`] at a given receive time (the fuzz targets step time).
    pub fn apply_at(&self, batch: &mut Batch<'_>, now: Now) {
        // Received before accepted or rejected, as every scrape sees them.
        if batch.received > 0 {
            self.telemetry
                .value_lists_received(std::mem::take(&mut batch.received));
        }
        if batch.sqla.is_empty() && batch.generic.is_empty() && batch.fast.is_empty() {
            return;
        }
        let mut rejected = Vec::new();
        if !batch.sqla.is_empty() || !batch.fast.is_empty() {
            let (fast, sqla) = (&batch.fast, &batch.sqla);
            let report = |i: usize| match fast.get(i) {
                Some((r, sample, source)) => Report {
                    host: r.host,
                    program: r.plugin_instance,
                    token: r.type_instance,
                    time: r.time,
                    interval: r.interval,
                    sample,
                    source: *source,
                },
                None => {
                    let (r, source) = &sqla[i - fast.len()];
                    Report {
                        source: *source,
                        ..r.report()
                    }
                }
            };
            self.stores
                .sqla
                .apply(fast.len() + sqla.len(), report, now, &mut rejected);
        }
        if !batch.generic.is_empty() {
            let mut store = lock(&self.stores.generic);
            for (vl, source) in &batch.generic {
                if let Err(e) = store.apply_from(vl, *source, now) {
                    rejected.push(e);
                }
            }
        }
        let total = batch.fast.len() + batch.sqla.len() + batch.generic.len();
        self.telemetry
            .value_lists_accepted((total - rejected.len()) as u64);
        for e in rejected {
            self.telemetry.value_list_rejected(ValueListReject::from(e));
        }
        batch.sqla.clear();
        batch.generic.clear();
        batch.fast.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(nets: &[&str]) -> Allow {
        Allow(
            nets.iter()
                .map(|n| n.parse().expect("test network"))
                .collect(),
        )
    }

    fn from(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("test address"), 25827)
    }

    #[test]
    fn an_empty_allowlist_accepts_every_source() {
        assert!(allow(&[]).allows(&from("192.0.2.1")));
        assert!(allow(&[]).allows(&from("2001:db8::1")));
    }

    #[test]
    fn sources_are_matched_against_every_network() {
        let a = allow(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(a.allows(&from("10.255.0.1")));
        assert!(!a.allows(&from("11.0.0.1")));
        assert!(a.allows(&from("2001:db8:1::5")));
        assert!(!a.allows(&from("2001:db9::5")));
    }

    #[test]
    fn ipv4_senders_on_a_dual_stack_socket_are_judged_as_ipv4() {
        let a = allow(&["127.0.0.0/8"]);
        assert!(a.allows(&from("::ffff:127.0.0.2")));
        assert!(!a.allows(&from("::ffff:192.0.2.1")));
        // A network written in the mapped form matches too.
        assert!(allow(&["::ffff:0:0/96"]).allows(&from("::ffff:127.0.0.1")));
    }
}
