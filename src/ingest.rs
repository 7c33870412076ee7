//! The receive loop of one UDP listener: datagram → decode → route → store.
//!
//! Datagrams are read whole into a reused buffer (never truncated), decoded
//! without copying, and applied to the store in batches: after each awaited
//! datagram the loop drains what else the socket holds (up to `BATCH`) and
//! takes the store lock once for all of them. Bad input is counted by reason
//! and logged at debug; nothing from the network can stop the loop.

use crate::collectd::{DecodeError, Keys, ValueList, decode_with};
use crate::route::{Record, SqlaRecord, route};
use crate::server::{Shared, lock};
use crate::store::Now;
use crate::telemetry::{DatagramReject, Listener};
use bytes::{Bytes, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::UdpSocket;

/// Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6),
/// so no datagram is ever cut.
pub const MAX_DATAGRAM: usize = 1 << 16;
/// Datagrams decoded per store lock.
const BATCH: usize = 64;

pub async fn receive(socket: UdpSocket, listener: Arc<Listener>, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(MAX_DATAGRAM * 4);
    let mut records = Batch::default();
    loop {
        buf.reserve(MAX_DATAGRAM);
        let from = match socket.recv_buf_from(&mut buf).await {
            Ok((_, from)) => from,
            Err(e) => {
                // Errors such as ICMP-reported ones concern one datagram.
                tracing::debug!(listener = %listener.label, error = %e, "receive failed");
                buf.clear();
                continue;
            }
        };
        let keys = shared.keys();
        let keys = keys.as_deref();
        handle(
            buf.split().freeze(),
            from,
            keys,
            &listener,
            &shared,
            &mut records,
        );
        for _ in 1..BATCH {
            buf.reserve(MAX_DATAGRAM);
            match socket.try_recv_buf_from(&mut buf) {
                Ok((_, from)) => handle(
                    buf.split().freeze(),
                    from,
                    keys,
                    &listener,
                    &shared,
                    &mut records,
                ),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => buf.clear(),
            }
        }
        apply(&shared, &mut records);
    }
}

/// Decodes and routes one datagram; SQLAlchemy records go into `records`.
pub fn handle(
    datagram: Bytes,
    from: SocketAddr,
    keys: Option<&Keys>,
    listener: &Listener,
    shared: &Shared,
    records: &mut Batch,
) {
    let t = &shared.telemetry;
    listener.datagrams.fetch_add(1, Relaxed);
    listener.bytes.fetch_add(datagram.len() as u64, Relaxed);
    let mut packet = match decode_with(&datagram, keys) {
        Ok(p) => p,
        Err(e) => {
            reject_datagram(shared, &e, from);
            return;
        }
    };
    let level = shared.security_level;
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
    records.route(packet.value_lists, shared, &from);
}

/// Value lists that arrived another way than a datagram (write_http JSON):
/// routed and applied at once.
pub fn ingest_value_lists(shared: &Shared, value_lists: Vec<ValueList>, from: &str) {
    let mut batch = Batch::default();
    batch.route(value_lists, shared, &from);
    apply(shared, &mut batch);
}

fn reject_datagram(shared: &Shared, e: &DecodeError, from: SocketAddr) {
    if shared.telemetry.decode_error(e) {
        tracing::warn!(
            %from, error = %e,
            "datagram rejected; more of this kind within a minute are only counted \
             (sqlalchemy_collectd_exporter_datagrams_rejected_total) and logged at debug level"
        );
    } else {
        tracing::debug!(%from, error = %e, "datagram rejected");
    }
}

/// Records of several datagrams, applied to the stores together.
#[derive(Default)]
pub struct Batch {
    pub sqla: Vec<SqlaRecord>,
    pub generic: Vec<ValueList>,
}

impl Batch {
    /// Sorts value lists into the batch; the ones that cannot be stored are
    /// counted by reason.
    fn route(
        &mut self,
        value_lists: Vec<ValueList>,
        shared: &Shared,
        from: &dyn std::fmt::Display,
    ) {
        let t = &shared.telemetry;
        t.value_lists_received(value_lists.len() as u64);
        for vl in value_lists {
            match route(vl) {
                Ok(Record::Sqla(r)) => self.sqla.push(r),
                Ok(Record::Generic(vl)) => self.generic.push(vl),
                Err(e) => {
                    t.value_list_rejected(e.reason());
                    tracing::debug!(%from, error = %e, "value list rejected");
                }
            }
        }
    }
}

/// Applies a batch, one lock per store, then empties it.
pub fn apply(shared: &Shared, batch: &mut Batch) {
    if batch.sqla.is_empty() && batch.generic.is_empty() {
        return;
    }
    let now = Now::wall();
    let mut rejected = Vec::new();
    if !batch.sqla.is_empty() {
        let mut store = lock(&shared.sqla);
        for r in &batch.sqla {
            if let Err(e) = store.apply(r, now) {
                rejected.push(e);
            }
        }
    }
    if !batch.generic.is_empty() {
        let mut store = lock(&shared.generic);
        for vl in &batch.generic {
            if let Err(e) = store.apply(vl, now) {
                rejected.push(e);
            }
        }
    }
    let total = batch.sqla.len() + batch.generic.len();
    shared
        .telemetry
        .value_lists_accepted((total - rejected.len()) as u64);
    for e in rejected {
        shared.telemetry.value_list_rejected(e.reason());
    }
    batch.sqla.clear();
    batch.generic.clear();
}
