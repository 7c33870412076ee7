//! The receive loop of one UDP listener: `recvmmsg` → [`Sink`]. The hot
//! path, alone in its file.
//!
//! Each listener has a thread of its own that reads up to `BATCH` datagrams
//! per `recvmmsg` call into reused buffers (64 KiB per datagram, so no
//! datagram is ever cut) and hands each to the sink, which decodes it
//! without copying; the batch is applied to the stores under one lock per
//! store. Takes a bound socket, its listener's counters and the sink; runs
//! until `stop` is set. Nothing from the network can stop the loop.

use super::{Batch, Sink};
use crate::telemetry::Listener;
use bytes::BytesMut;
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
pub fn receive(socket: UdpSocket, listener: Arc<Listener>, sink: Arc<Sink>, stop: Arc<AtomicBool>) {
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(WAKE_EVERY)))
    {
        tracing::error!(listener = %listener.label, error = %e, "cannot set up the receive socket");
        return;
    }
    let fd = socket.as_raw_fd();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Kept from one batch to the next (see `Batch::recycle`).
    let mut spare: Batch<'static> = Batch::new();
    let mut buf = BytesMut::zeroed(BATCH * SLOT);
    // Only the pages a large datagram is written to become resident.
    let mut overflow = vec![0u8; BATCH * OVERFLOW];
    let mut received: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut held = Held::default();
    while !stop.load(Relaxed) {
        received.clear();
        let holding = sink.holding();
        match holding {
            // Full: the kernel's queue holds the rest (or drops and counts
            // it) until the sink is released.
            Some(max) if held.bytes() + BATCH * SLOT > max => {
                std::thread::sleep(GATHER);
                continue;
            }
            Some(_) => {}
            None if !held.is_empty() => held.apply(&sink, &listener),
            None => {}
        }
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
        if holding.is_some() {
            for (i, &(len, from)) in received.iter().enumerate() {
                let first = &buf[i * SLOT..i * SLOT + len.min(SLOT)];
                let rest = &overflow[i * OVERFLOW..i * OVERFLOW + len.saturating_sub(SLOT)];
                held.push(first, rest, from);
            }
            continue;
        }
        let keys = sink.keys();
        let keys = keys.as_ref().as_ref();
        let all = buf.freeze();
        let mut batch = std::mem::take(&mut spare).recycle();
        for (i, &(len, from)) in received.iter().enumerate() {
            let start = i * SLOT;
            if len > SLOT {
                // A large datagram: put its two pieces together.
                let mut whole = Vec::with_capacity(len);
                whole.extend_from_slice(&all[start..start + SLOT]);
                whole.extend_from_slice(&overflow[i * OVERFLOW..i * OVERFLOW + (len - SLOT)]);
                sink.decoded(whole.into(), from, keys, &listener, &mut batch);
                continue;
            }
            sink.datagram(&all, start..start + len, from, keys, &listener, &mut batch);
        }
        sink.apply(&mut batch);
        spare = batch.recycle();
        if received.len() == BATCH {
            listener.full_reads.fetch_add(1, Relaxed);
        } else {
            listener.full_reads.store(0, Relaxed);
        }
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

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Datagrams read while the sink holds (see [`Sink::hold`]), one after
/// another in one buffer, in the order they arrived.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    /// Each datagram's end in `bytes` and its sender.
    datagrams: Vec<(usize, SocketAddr)>,
}

impl Held {
    fn bytes(&self) -> usize {
        self.bytes.len()
    }

    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    fn push(&mut self, first: &[u8], rest: &[u8], from: SocketAddr) {
        self.bytes.extend_from_slice(first);
        self.bytes.extend_from_slice(rest);
        self.datagrams.push((self.bytes.len(), from));
    }

    /// Applies what was held, in order and in batches as the receive loop
    /// applies, then frees it.
    fn apply(&mut self, sink: &Sink, listener: &Listener) {
        let all = bytes::Bytes::from(std::mem::take(&mut self.bytes));
        let datagrams = std::mem::take(&mut self.datagrams);
        tracing::info!(
            listener = %listener.label,
            datagrams = datagrams.len(),
            bytes = all.len(),
            "applying the datagrams held while the saved state was restored"
        );
        let keys = sink.keys();
        let keys = keys.as_ref().as_ref();
        let mut start = 0;
        for chunk in datagrams.chunks(BATCH) {
            let mut batch = Batch::new();
            for &(end, from) in chunk {
                sink.datagram(&all, start..end, from, keys, listener, &mut batch);
                start = end;
            }
            sink.apply(&mut batch);
        }
    }
}
