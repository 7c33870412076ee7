//! The receive loop of one UDP listener: datagram → decode → route → store.
//!
//! Each listener has a thread of its own that reads up to `BATCH` datagrams
//! per `recvmmsg` call into reused buffers (64 KiB per datagram, so no
//! datagram is ever cut), decodes them without copying, and applies them to
//! the stores under one lock per batch. Bad input is counted by reason and
//! logged at debug; nothing from the network can stop the loop.

use crate::collectd::{
    ClientReport, DecodeError, Keys, SecurityLevel, ValueList, client_report, decode_with,
};
use crate::route::{Record, Sample, SqlaRecord, route, route_client};
use crate::server::{Shared, lock};
use crate::store::Now;
use crate::store::sqlalchemy::Report;
use crate::telemetry::{DatagramReject, Listener};
use bytes::{Bytes, BytesMut};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6),
/// so no datagram is ever cut.
pub const MAX_DATAGRAM: usize = 1 << 16;
/// Datagrams read per system call and applied per store lock.
pub const BATCH: usize = 64;
/// The first bytes of each datagram land in a dense buffer of slots this
/// large, the rest (if any) in an overflow slot of its own. Nearly every
/// datagram fits (the client's are about 140 bytes, collectd's at most 1452
/// by default), so the kernel writes and the decoder reads 128 KiB per batch
/// rather than one page 64 KiB apart per datagram, which all fall into the
/// same cache sets.
const SLOT: usize = 2048;
const OVERFLOW: usize = MAX_DATAGRAM - SLOT;
/// How often a blocked receive wakes up to see whether to stop.
const WAKE_EVERY: Duration = Duration::from_millis(100);
/// After a read that found the socket nearly empty, wait this long before the
/// next one so that datagrams arrive in batches: under steady load each
/// read would otherwise wake for a single datagram and pay a system call and
/// a wake-up for it. The socket buffer holds what arrives meanwhile; a few
/// hundred microseconds of delay do not matter to metrics.
const GATHER: Duration = Duration::from_micros(250);

/// Receives until `stop` is set. Runs on a thread of its own.
pub fn receive(
    socket: UdpSocket,
    listener: Arc<Listener>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(WAKE_EVERY)))
    {
        tracing::error!(listener = %listener.label, error = %e, "cannot set up the receive socket");
        return;
    }
    let fd = socket.as_raw_fd();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Kept from one batch to the next (see `recycle`).
    let mut spare_fast: Vec<(ClientReport<'static>, Sample)> = Vec::with_capacity(BATCH);
    let mut buf = BytesMut::zeroed(BATCH * SLOT);
    // Only the pages a large datagram is written to become resident.
    let mut overflow = vec![0u8; BATCH * OVERFLOW];
    let mut received: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut batch = Batch::default();
    while !stop.load(Relaxed) {
        received.clear();
        {
            let mut slots: Vec<[IoSliceMut<'_>; 2]> = buf
                .chunks_mut(SLOT)
                .zip(overflow.chunks_mut(OVERFLOW))
                .map(|(slot, rest)| [IoSliceMut::new(slot), IoSliceMut::new(rest)])
                .collect();
            // MSG_WAITFORONE: block for the first datagram only, then take
            // what else is queued, up to BATCH.
            match recvmmsg(
                fd,
                &mut headers,
                slots.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => received.extend(msgs.map(|m| {
                    let from = m.address.and_then(|a| socket_addr(&a)).unwrap_or(unknown);
                    (m.bytes, from)
                })),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    // Errors such as ICMP-reported ones concern one datagram.
                    tracing::debug!(listener = %listener.label, error = %e, "receive failed");
                    continue;
                }
            }
        }
        let keys = shared.keys();
        let keys = keys.as_deref();
        let all = buf.freeze();
        // Reports of the real client's shape, borrowed from `all`.
        let mut fast = recycle(std::mem::take(&mut spare_fast));
        for (i, &(len, from)) in received.iter().enumerate() {
            let start = i * SLOT;
            if len > SLOT {
                // A large datagram: put its two pieces together.
                let mut whole = Vec::with_capacity(len);
                whole.extend_from_slice(&all[start..start + SLOT]);
                whole.extend_from_slice(&overflow[i * OVERFLOW..i * OVERFLOW + (len - SLOT)]);
                handle(whole.into(), from, keys, &listener, &shared, &mut batch);
                continue;
            }
            let datagram = &all[start..start + len];
            if shared.security_level == SecurityLevel::None
                && shared.allow.allows(&from)
                && let Some(report) = client_report(datagram)
                && let Some(sample) = route_client(&report)
            {
                listener.datagrams.fetch_add(1, Relaxed);
                listener.bytes.fetch_add(len as u64, Relaxed);
                shared.telemetry.value_lists_received(1);
                match sample {
                    Ok(sample) => fast.push((report, sample)),
                    Err(e) => {
                        shared.telemetry.value_list_rejected(e.reason());
                        tracing::debug!(%from, error = %e, "value list rejected");
                    }
                }
                continue;
            }
            handle(
                all.slice(start..start + len),
                from,
                keys,
                &listener,
                &shared,
                &mut batch,
            );
        }
        apply_with(&shared, &mut batch, &fast);
        spare_fast = recycle(fast);
        if received.len() < BATCH / 4 {
            std::thread::sleep(GATHER);
        }
        // Every slice of the buffer has been dropped with the batch, so it is
        // reused rather than reallocated.
        buf = all
            .try_into_mut()
            .unwrap_or_else(|_| BytesMut::zeroed(BATCH * SLOT));
    }
}

/// An empty vector with `v`'s allocation, for elements of another lifetime:
/// what lets the receive loop keep vectors of borrowed data across batches.
/// (Collecting an emptied vector's iterator into one whose elements have the
/// same size and alignment reuses its buffer.)
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
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
    if !shared.allow.allows(&from) {
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
    apply_with(shared, batch, &[]);
}

/// [`apply`] with the reports the decoder's fast path took as well (see
/// [`client_report`]): the same store, under the same lock.
fn apply_with(shared: &Shared, batch: &mut Batch, fast: &[(ClientReport<'_>, Sample)]) {
    if batch.sqla.is_empty() && batch.generic.is_empty() && fast.is_empty() {
        return;
    }
    let now = Now::wall();
    let mut rejected = Vec::new();
    if !batch.sqla.is_empty() || !fast.is_empty() {
        let mut store = lock(&shared.sqla);
        for (r, sample) in fast {
            let report = Report {
                host: r.host,
                program: r.plugin_instance,
                token: r.type_instance,
                time: r.time,
                interval: r.interval,
                sample,
            };
            if let Err(e) = store.apply_report(&report, now) {
                rejected.push(e);
            }
        }
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
    let total = fast.len() + batch.sqla.len() + batch.generic.len();
    shared
        .telemetry
        .value_lists_accepted((total - rejected.len()) as u64);
    for e in rejected {
        shared.telemetry.value_list_rejected(e.reason());
    }
    batch.sqla.clear();
    batch.generic.clear();
}
