//! The accept loop of every HTTP listener, plain or TLS (TLS is a layer on
//! the accepted stream), and what keeps one client from taking the exporter
//! down with connections it opens and never finishes:
//!
//! * a request head (or a TLS handshake) must be complete within
//!   `--web.read-header-timeout` of its first byte (of the accept, for TLS);
//! * a connection silent for `--web.idle-timeout` after its last response
//!   (or after the accept) is closed;
//! * at `--web.max-connections` open connections, a new one closes the one
//!   that has been idle the longest, or, when every connection has a
//!   request in flight, is closed itself;
//! * a request head larger than [`MAX_HEAD_BYTES`] gets 431 from hyper.
//!
//! hyper's own header timeout also runs between requests, and hyper-util's
//! protocol detection has none, so the timing is done here: each connection
//! reads through [`Tracked`], which notes when the first byte of a new head
//! arrives, and calls the router through [`Counted`], which counts a request
//! in flight from its head until hyper has taken the last of its body (what
//! is left then is in hyper's write buffer, under `MAX_HEAD_BYTES` plus one
//! [`CHUNK`], and the kernel's). A reaper looks at every connection each
//! [`REAP_EVERY`]. A connection with a request in flight is never closed by
//! any of these.
//!
//! Takes the bound listeners (with the web config for those that serve
//! TLS), the router, the `HttpLimits` and the counters; hands each connection
//! to hyper (HTTP/1.1; HTTP/2 over plain TCP with prior knowledge and over
//! TLS where the web config offers h2) and counts the connections it closes
//! by reason. On stop: no new connection, idle ones closed, requests in
//! flight finished within the grace.

use super::web::Web;
use crate::config::HttpLimits;
use crate::store::lock;
use crate::telemetry::{ConnectionClose, Telemetry};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

/// The largest request head: hyper's HTTP/1 read buffer (a head that does
/// not fit gets 431) and the HTTP/2 header list. A scrape's head is a few
/// hundred bytes.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// How often the reaper looks for connections past their timeouts.
pub const REAP_EVERY: Duration = Duration::from_millis(250);
/// Response bodies are handed to hyper in pieces of at most this size, so
/// that a body counts as in flight until (nearly) all of it is written.
pub const CHUNK: usize = 64 << 10;
/// File descriptors kept free of connections, for the UDP sockets, the
/// listeners and the files a reload opens.
pub const RESERVED_FILES: u64 = 64;

/// An HTTP listener and, when it serves TLS, the web config with its
/// certificates.
pub struct Listener {
    pub socket: tokio::net::TcpListener,
    pub tls: Option<Arc<Web>>,
}

/// Milliseconds since the first connection table was made, plus one, so
/// that 0 can mean "never".
#[derive(Clone, Copy, Debug)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Set in [`Conn::in_flight`] once a connection is chosen to be closed: it
/// is chosen only with nothing in flight, in one compare-and-swap, so a
/// request that starts at that moment makes the choice fail instead.
const CLOSING: u32 = 1 << 31;

/// One open connection, as the reaper and the cap see it.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// Requests in flight (several with HTTP/2), and [`CLOSING`].
    in_flight: AtomicU32,
    /// When the first byte of the head being read arrived ([`Clock`]); 0
    /// when no head is being read.
    head_since: AtomicU64,
    /// When the last response was finished, or the connection accepted.
    idle_since: AtomicU64,
    /// HTTP/2: bytes between requests are frames (pings, window updates),
    /// not a head, so only the idle timeout applies between requests.
    http2: AtomicBool,
    /// Wakes the connection's task to drop it.
    close: Notify,
}

impl Conn {
    fn new(id: u64, now: u64, handshake: bool) -> Conn {
        Conn {
            id,
            in_flight: AtomicU32::new(0),
            head_since: AtomicU64::new(if handshake { now } else { 0 }),
            idle_since: AtomicU64::new(now),
            http2: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    /// Bytes arrived: the start of a head, if nothing is in flight and no
    /// head is being read already.
    fn read(&self, now: u64) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            let _ = self
                .head_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The TLS handshake is done: from now on, a head starts with its first
    /// byte, as over plain TCP.
    fn handshake_done(&self, http2: bool) {
        self.http2.store(http2, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Release);
    }

    fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
    }

    fn request_finished(&self, now: u64) {
        self.idle_since.store(now, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Why this connection should be closed at `now`, if it should.
    fn verdict(&self, now: u64, limits: &HttpLimits) -> Option<ConnectionClose> {
        if !self.idle() {
            return None;
        }
        let past = |since: u64, limit: Duration| {
            since != 0 && u128::from(now.saturating_sub(since)) > limit.as_millis()
        };
        if past(
            self.head_since.load(Ordering::Acquire),
            limits.read_header_timeout,
        ) {
            return Some(ConnectionClose::HeaderTimeout);
        }
        if past(self.idle_since.load(Ordering::Acquire), limits.idle_timeout) {
            return Some(ConnectionClose::IdleTimeout);
        }
        None
    }

    /// Chooses this connection for closing; false when a request started
    /// (or it was chosen already).
    fn claim(&self) -> bool {
        self.in_flight
            .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[derive(Debug, Default)]
struct Table {
    open: HashMap<u64, Arc<Conn>>,
    next_id: u64,
}

/// Every open connection of every listener: the cap, the reaper and the
/// `http_connections` gauge work on this one table.
#[derive(Debug)]
pub struct Connections {
    table: Mutex<Table>,
    limits: HttpLimits,
    clock: Clock,
    telemetry: Arc<Telemetry>,
}

impl Connections {
    pub fn new(limits: HttpLimits, telemetry: Arc<Telemetry>) -> Connections {
        Connections {
            table: Mutex::default(),
            limits,
            clock: Clock(Instant::now()),
            telemetry,
        }
    }

    /// Takes a newly accepted connection into the table: at the cap, closes
    /// the connection idle the longest to make room, or, when none is idle,
    /// refuses the new one (`None`: drop it). `handshake`: a TLS handshake
    /// comes first, timed as a head.
    fn admit(self: &Arc<Self>, handshake: bool) -> Option<Registration> {
        let now = self.clock.now();
        let mut table = lock(&self.table);
        let mut evicted = None;
        while table.open.len() >= self.limits.max_connections.max(1) {
            let oldest = table
                .open
                .values()
                .filter(|c| c.idle())
                .min_by_key(|c| (c.idle_since.load(Ordering::Acquire), c.id))
                .cloned();
            let Some(oldest) = oldest else {
                drop(table);
                self.telemetry
                    .http_connection_closed(ConnectionClose::OverLimit);
                tracing::debug!(
                    limit = self.limits.max_connections,
                    "a new connection at the limit was closed: every connection has a request in flight"
                );
                return None;
            };
            // A request may have started since the look: then look again.
            if oldest.claim() {
                table.open.remove(&oldest.id);
                evicted = Some(oldest);
                break;
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn::new(id, now, handshake));
        table.open.insert(id, conn.clone());
        self.telemetry.http_connections(table.open.len());
        drop(table);
        if let Some(oldest) = evicted {
            self.telemetry
                .http_connection_closed(ConnectionClose::Evicted);
            oldest.close.notify_one();
        }
        Some(Registration {
            connections: self.clone(),
            conn,
        })
    }

    /// Closes every connection past its timeout at `now`.
    fn reap(&self, now: u64) {
        let mut closed = Vec::new();
        let mut table = lock(&self.table);
        table
            .open
            .retain(|_, c| match c.verdict(now, &self.limits) {
                Some(reason) if c.claim() => {
                    closed.push((c.clone(), reason));
                    false
                }
                _ => true,
            });
        self.telemetry.http_connections(table.open.len());
        drop(table);
        for (conn, reason) in closed {
            self.telemetry.http_connection_closed(reason);
            conn.close.notify_one();
        }
    }

    fn remove(&self, id: u64) {
        let mut table = lock(&self.table);
        if table.open.remove(&id).is_some() {
            self.telemetry.http_connections(table.open.len());
        }
    }
}

/// A connection's place in the table, given up when its task ends (or is
/// aborted at the end of the grace).
struct Registration {
    connections: Arc<Connections>,
    conn: Arc<Conn>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.remove(self.conn.id);
    }
}

/// Serves `router` on every listener until `stop` turns true; then no new
/// connection, idle ones closed, requests in flight finished within
/// `grace`.
pub async fn serve(
    listeners: Vec<Listener>,
    router: axum::Router,
    connections: Arc<Connections>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let reaper = {
        let connections = connections.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                connections.reap(connections.clock.now());
            }
        })
    };
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept(
            listener,
            router.clone(),
            connections.clone(),
            stop.clone(),
            grace,
        ));
    }
    while loops.join_next().await.is_some() {}
    reaper.abort();
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped_signal(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One listener's accept loop; each connection is a task of its own.
async fn accept(
    listener: Listener,
    router: axum::Router,
    connections: Arc<Connections>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let Listener { socket, tls } = listener;
    let mut tasks = tokio::task::JoinSet::new();
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            () = stopped_signal(&mut stopped) => break,
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Refused at the cap: dropping the stream closes it.
                    if let Some(registration) = connections.admit(tls.is_some()) {
                        tasks.spawn(connection(
                            stream,
                            peer,
                            registration,
                            router.clone(),
                            tls.clone(),
                            stop.clone(),
                        ));
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: let connections finish.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(socket);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(grace = ?grace, "HTTP requests still in flight at shutdown were cut off");
    }
}

/// Serves one accepted connection: the TLS handshake first where the
/// listener serves TLS, then HTTP until the client closes, the reaper or
/// the cap closes it, or the exporter stops.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    registration: Registration,
    router: axum::Router,
    tls: Option<Arc<Web>>,
    mut stop: watch::Receiver<bool>,
) {
    let conn = registration.conn.clone();
    let clock = registration.connections.clock;
    let Some(web) = tls else {
        return http(stream, peer, &conn, clock, router, true, stop).await;
    };
    let Some(config) = web.server_config() else {
        return;
    };
    let offers_h2 = config.alpn_protocols.iter().any(|p| p == b"h2");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stream = tokio::select! {
        r = acceptor.accept(stream) => match r {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
        () = conn.close.notified() => {
            tracing::debug!(%peer, "TLS handshake closed unfinished");
            return;
        }
        () = stopped_signal(&mut stop) => return,
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    conn.handshake_done(h2);
    http(stream, peer, &conn, clock, router, offers_h2, stop).await;
}

/// HTTP on an accepted (and, for TLS, handshaken) stream.
async fn http<S>(
    stream: S,
    peer: std::net::SocketAddr,
    conn: &Arc<Conn>,
    clock: Clock,
    router: axum::Router,
    http2: bool,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(Tracked {
        inner: stream,
        conn: conn.clone(),
        clock,
    });
    // Handlers that want the peer (the write_http push) find it where
    // axum's `ConnectInfo` would put it.
    let router = router.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = Counted {
        inner: hyper_util::service::TowerToHyperService::new(router),
        conn: conn.clone(),
        clock,
    };
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .enable_connect_protocol();
    if !http2 {
        builder = builder.http1_only();
    }
    let connection = builder.serve_connection_with_upgrades(io, service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = conn.close.notified() => return,
        () = stopped_signal(&mut stop) => {
            // Finish the request in flight, if any, then close.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                r = connection.as_mut() => r,
                () = conn.close.notified() => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// The accepted stream, noting when the bytes of a new head arrive.
struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
    clock: Clock,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read(self.clock.now());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, counting each request in flight on its connection.
struct Counted<S> {
    inner: S,
    conn: Arc<Conn>,
    clock: Clock,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<InFlight<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = Guard::start(
            self.conn.clone(),
            self.clock,
            request.version() == hyper::Version::HTTP_2,
        );
        let response = self.inner.call(request);
        // The guard is in the future until the response exists, then in its
        // body: a request dropped halfway is finished all the same.
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| InFlight {
                body,
                rest: Bytes::new(),
                guard: Some(guard),
            }))
        })
    }
}

/// One request in flight on its connection, until dropped.
struct Guard {
    conn: Arc<Conn>,
    clock: Clock,
}

impl Guard {
    fn start(conn: Arc<Conn>, clock: Clock, http2: bool) -> Guard {
        conn.request_started(http2);
        Guard { conn, clock }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.conn.request_finished(self.clock.now());
    }
}

/// A response body that keeps its request in flight until hyper has taken
/// all of it, in pieces of at most [`CHUNK`] bytes.
struct InFlight<B> {
    body: B,
    /// What is left of the last data frame.
    rest: Bytes,
    guard: Option<Guard>,
}

impl<B> Body for InFlight<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if !this.rest.is_empty() {
            let piece = this.rest.split_to(CHUNK.min(this.rest.len()));
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > CHUNK {
                        this.rest = data.split_off(CHUNK);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                this.guard = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            read_header_timeout: Duration::from_millis(1000),
            idle_timeout: Duration::from_millis(5000),
            max_connections: 2,
            max_requests: 0,
        }
    }

    #[test]
    fn a_head_begun_is_closed_after_the_read_header_timeout() {
        let c = Conn::new(0, 1, false);
        c.read(101);
        // The next bytes of the same head do not move its start.
        c.read(900);
        assert_eq!(c.verdict(1101, &limits()), None);
        assert_eq!(
            c.verdict(1102, &limits()),
            Some(ConnectionClose::HeaderTimeout)
        );
    }

    #[test]
    fn a_tls_handshake_is_timed_as_a_head_from_the_accept() {
        let c = Conn::new(0, 1, true);
        assert_eq!(
            c.verdict(1002, &limits()),
            Some(ConnectionClose::HeaderTimeout)
        );
        c.handshake_done(false);
        assert_eq!(c.verdict(1002, &limits()), None);
    }

    #[test]
    fn silence_after_a_response_is_closed_after_the_idle_timeout() {
        let c = Conn::new(0, 1, false);
        assert_eq!(
            c.verdict(5002, &limits()),
            Some(ConnectionClose::IdleTimeout)
        );
        c.read(10);
        c.request_started(false);
        // In flight: never closed, however long it takes.
        assert_eq!(c.verdict(1_000_000, &limits()), None);
        c.request_finished(2000);
        assert_eq!(c.verdict(7000, &limits()), None);
        assert_eq!(
            c.verdict(7001, &limits()),
            Some(ConnectionClose::IdleTimeout)
        );
    }

    #[test]
    fn http2_frames_between_requests_are_not_a_head() {
        let c = Conn::new(0, 1, false);
        c.request_started(true);
        c.request_finished(10);
        c.read(20);
        assert_eq!(c.verdict(3000, &limits()), None);
    }

    #[test]
    fn a_connection_with_a_request_in_flight_cannot_be_claimed() {
        let c = Conn::new(0, 1, false);
        c.request_started(false);
        assert!(!c.claim());
        c.request_finished(2);
        assert!(c.claim());
        assert!(!c.claim(), "claimed once");
    }

    fn table(connections: &Arc<Connections>) -> Vec<u64> {
        let mut ids: Vec<u64> = lock(&connections.table).open.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn at_the_cap_the_longest_idle_goes_or_else_the_new_one() {
        let telemetry = Arc::new(Telemetry::default());
        let connections = Arc::new(Connections::new(limits(), telemetry.clone()));
        let first = connections.admit(false).unwrap();
        let second = connections.admit(false).unwrap();
        // The first finishes a request after the second was accepted: the
        // second has been idle longer.
        first.conn.request_started(false);
        first.conn.request_finished(u64::MAX - 1);
        let third = connections.admit(false).unwrap();
        assert_eq!(table(&connections), [0, 2]);
        let closed = |reason: ConnectionClose| {
            telemetry.snapshot().http_connections_closed[reason.index()].1
        };
        assert_eq!(closed(ConnectionClose::Evicted), 1);
        assert!(!second.conn.idle(), "claimed for closing");
        // Both in flight: the new one is refused.
        first.conn.request_started(false);
        third.conn.request_started(false);
        assert!(connections.admit(false).is_none());
        assert_eq!(closed(ConnectionClose::OverLimit), 1);
        assert_eq!(telemetry.snapshot().http_connections, 2);
        drop(second);
        assert_eq!(table(&connections), [0, 2], "evicted: already gone");
        drop(first);
        assert_eq!(table(&connections), [2]);
        assert_eq!(telemetry.snapshot().http_connections, 1);
    }

    #[test]
    fn the_reaper_closes_and_counts_by_reason() {
        let telemetry = Arc::new(Telemetry::default());
        let connections = Arc::new(Connections::new(
            HttpLimits {
                max_connections: 10,
                ..limits()
            },
            telemetry.clone(),
        ));
        let now = connections.clock.now();
        let heading = connections.admit(false).unwrap();
        heading.conn.read(now);
        let _idle = connections.admit(false).unwrap();
        let busy = connections.admit(false).unwrap();
        busy.conn.request_started(false);
        connections.reap(now + 1001);
        assert_eq!(table(&connections), [1, 2]);
        connections.reap(now + 5001);
        assert_eq!(table(&connections), [2]);
        let s = telemetry.snapshot();
        assert_eq!(
            s.http_connections_closed,
            [
                ("idle_timeout", 1),
                ("header_timeout", 1),
                ("evicted", 0),
                ("over_limit", 0)
            ]
        );
        assert_eq!(s.http_connections, 1);
    }

    #[tokio::test]
    async fn a_large_body_is_handed_on_in_chunks_and_in_flight_until_the_last() {
        let conn = Arc::new(Conn::new(0, 1, false));
        let clock = Clock(Instant::now());
        let mut body = InFlight {
            body: axum::body::Body::from(vec![7u8; CHUNK * 2 + 1]),
            rest: Bytes::new(),
            guard: Some(Guard::start(conn.clone(), clock, false)),
        };
        assert_eq!(body.size_hint().exact(), Some(CHUNK as u64 * 2 + 1));
        let mut sizes = Vec::new();
        while !body.is_end_stream() {
            assert!(!conn.idle());
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
                .await
                .unwrap()
                .unwrap();
            sizes.push(frame.into_data().unwrap().len());
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 1]);
        drop(body);
        assert!(conn.idle());
    }
}
