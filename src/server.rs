//! Binds every listener, then runs the receive threads, the sweep and the
//! HTTP servers until shutdown. `bind` is separate so that callers (main,
//! tests) learn the bound addresses and see bind errors before anything runs;
//! [`ReadyFile`] writes those addresses for whoever started the binary.
//! [`raise_open_file_limit`] (called by `main` before `bind`) lifts the soft
//! open-file limit to the hard one, and `bind` keeps `--web.max-connections`
//! within what that limit leaves room for.
//!
//! Takes a validated [`Config`]; builds the stores, the counters, the
//! reloadable settings and the reloader, and hands each stage only what it
//! uses: the receive threads and the push handler get the ingest [`Sink`],
//! the scrape handlers the snapshot [`Sources`], the reload handler and
//! SIGHUP the [`Reloader`], the accept loop (`crate::http::serve`) the
//! listeners, the router and the HTTP limits.

use crate::collectd::security::{AuthFileError, Keys};
use crate::collectd::typesdb::{TypesDb, TypesDbError};
use crate::config::file::{Capacity, ConfigFileError};
use crate::config::{Config, HttpLimits, ListenAddress};
use crate::exposition::families::BuildInfo;
use crate::http::serve::{Connections, RESERVED_FILES};
use crate::http::web::Web;
use crate::ingest::{Allow, Sink};
use crate::snapshot::Sources;
use crate::state::{ConfigFile, Current, Reloader};
use crate::storage::{Start, Storage, StorageError};
use crate::store::sqlalchemy::shards::Shards;
use crate::store::{Now, Stores};
use crate::telemetry::{Listener, Telemetry, socket_inode};
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What stops the exporter from starting.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A receive thread that could not be started.
    #[error("cannot start a receive thread")]
    Threads(#[source] std::io::Error),
    /// A listener that could not be opened.
    #[error("cannot listen on {proto} {address}")]
    Listen {
        proto: &'static str,
        address: ListenAddress,
        #[source]
        source: std::io::Error,
    },
    /// An auth file that cannot be read or parsed.
    #[error("auth file")]
    AuthFile(#[source] AuthFileError),
    /// A config file that cannot be read or is not valid.
    #[error("config file")]
    ConfigFile(#[source] ConfigFileError),
    /// A storage directory that cannot be used.
    #[error(transparent)]
    Storage(StorageError),
    /// A types.db that cannot be read or parsed.
    #[error("types.db")]
    TypesDb(#[source] TypesDbError),
    /// A web config file, or a certificate it names, that does not load.
    #[error("web config file")]
    WebConfig(#[source] crate::config::web::WebConfigError),
}

/// Sockets bound and ready, not yet served, and the state they will share.
#[derive(Debug)]
pub struct Bound {
    /// Each UDP socket's counters (its receive thread is already running).
    pub udp: Vec<Arc<Listener>>,
    /// The receive threads, one per UDP socket, and what stops them.
    pub receivers: Receivers,
    pub http: Vec<std::net::TcpListener>,
    /// Routes, applies and counts what arrives.
    pub sink: Arc<Sink>,
    /// What a scrape reads.
    pub sources: Arc<Sources>,
    /// Re-reads every configured file (SIGHUP, `POST /-/reload`).
    pub reloader: Arc<Reloader>,
    /// `--web.config.file`: TLS, basic auth and headers of the HTTP listeners.
    pub web: Option<Arc<Web>>,
    /// `--storage.path`: where the counters are saved at shutdown.
    pub storage: Option<Storage>,
    /// The HTTP listeners' timeouts and caps, the connection cap lowered to
    /// what the open-file limit leaves room for.
    pub http_limits: HttpLimits,
}

impl Bound {
    /// Each UDP listener's address, once (a listener has a socket per
    /// receive thread).
    pub fn udp_addresses(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        for l in &self.udp {
            if !all.contains(&l.address) {
                all.push(l.address);
            }
        }
        all
    }

    pub fn http_addresses(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// `--web.ready-file` could not be written.
#[derive(Debug, thiserror::Error)]
#[error("ready file {}", path.display())]
pub struct ReadyFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The ready file (`--web.ready-file`): the process id and every bound
/// address, written once every listener is bound, so that whoever started
/// the exporter on port 0 learns its ports. Removed on drop, which is at
/// clean shutdown; a file left by a process that was killed is stale.
#[derive(Debug)]
pub struct ReadyFile {
    path: PathBuf,
}

/// What the ready file holds.
#[derive(serde::Serialize)]
struct Ready<'a> {
    pid: u32,
    collectd: &'a [SocketAddr],
    web: &'a [SocketAddr],
}

impl ReadyFile {
    /// Writes `path` for `bound`: a reader sees no file or all of it (it is
    /// written beside `path`, then renamed over it).
    pub fn write(path: &Path, bound: &Bound) -> Result<ReadyFile, ReadyFileError> {
        let err = |source| ReadyFileError {
            path: path.to_owned(),
            source,
        };
        let ready = Ready {
            pid: std::process::id(),
            collectd: &bound.udp_addresses(),
            web: &bound.http_addresses(),
        };
        let mut text = serde_json::to_string(&ready).map_err(|e| err(e.into()))?;
        text.push('\n');
        let name = path.file_name().ok_or_else(|| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let mut temporary = std::ffi::OsString::from(".");
        temporary.push(name);
        temporary.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(temporary);
        if let Err(e) =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path))
        {
            let _ = std::fs::remove_file(&temporary);
            return Err(err(e));
        }
        tracing::info!(path = %path.display(), "ready file written");
        Ok(ReadyFile {
            path: path.to_owned(),
        })
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the ready file");
            }
            _ => {}
        }
    }
}

/// The open-file limits (soft, hard) after raising the soft one to the hard
/// one at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard one: systemd
/// gives a service a soft limit of 1,024 and a hard one far above, and
/// every HTTP connection is a file. Called by `main` before binding.
pub fn raise_open_file_limit() -> nix::Result<OpenFileLimit> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft_before, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft_before < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(OpenFileLimit {
        soft_before,
        soft,
        hard,
    })
}

/// `--web.max-connections`, lowered so that connections leave
/// [`RESERVED_FILES`] of the soft open-file limit `soft` free.
pub fn connection_cap(wanted: usize, soft: u64) -> usize {
    let room = usize::try_from(soft.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    wanted.min(room).max(1)
}

pub fn bind(config: &Config) -> Result<Bound, BindError> {
    let keys = match &config.auth_file {
        Some(path) => Some(Keys::load(path).map_err(BindError::AuthFile)?),
        None => None,
    };
    let capacity = match &config.config_file {
        Some(path) => Capacity::load(path).map_err(BindError::ConfigFile)?,
        None => Capacity::default(),
    };
    let typesdb = TypesDb::load(&config.typesdb_files).map_err(BindError::TypesDb)?;
    let web = match &config.web_config_file {
        Some(path) => Some(Arc::new(Web::load(path).map_err(BindError::WebConfig)?)),
        None => None,
    };
    tracing::info!(types = typesdb.len(), "types.db loaded");
    let telemetry = Arc::new(Telemetry::default());
    let mut udp = Vec::new();
    for &address in &config.collectd_listen {
        let err = |source| BindError::Listen {
            proto: "udp",
            address,
            source,
        };
        // A multicast group has one socket: every socket bound to the
        // group would receive every datagram.
        let multicast = matches!(address, ListenAddress::Ip(group) if group.ip().is_multicast());
        let threads = if multicast {
            1
        } else {
            config.receive_threads.max(1)
        };
        let first = match address {
            ListenAddress::Ip(group) if multicast => {
                let index = match &config.multicast_interface {
                    Some(name) => interface_index(name).map_err(err)?,
                    None => 0,
                };
                open_multicast(group, index).map_err(err)?
            }
            _ => open(address, Type::DGRAM, threads > 1).map_err(err)?,
        };
        let mut sockets = vec![first];
        if threads > 1 {
            // The others join the first one's port (its own when it was :0);
            // the kernel spreads senders over them by their address and port.
            let local = sockets[0]
                .local_addr()
                .map_err(err)?
                .as_socket()
                .ok_or_else(|| err(std::io::Error::other("not an IP socket")))?;
            let only_v6 = local.is_ipv6() && sockets[0].only_v6().map_err(err)?;
            for _ in 1..threads {
                sockets.push(open_reuse_port(local, only_v6).map_err(err)?);
            }
        }
        for socket in sockets {
            udp.push(set_up_udp(socket, config, &telemetry).map_err(err)?);
        }
    }
    let mut http = Vec::new();
    for &address in &config.web_listen {
        let err = |source| BindError::Listen {
            proto: "tcp",
            address,
            source,
        };
        let socket = open(address, Type::STREAM, false).map_err(err)?;
        socket.listen(1024).map_err(err)?;
        let listener: std::net::TcpListener = socket.into();
        listener.set_nonblocking(true).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        tracing::info!(address = %local, path = %config.telemetry_path, "serving metrics over HTTP");
        http.push(listener);
    }
    let mut http_limits = config.http;
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        http_limits.max_connections = connection_cap(config.http.max_connections, soft);
        if http_limits.max_connections < config.http.max_connections {
            tracing::warn!(
                requested = config.http.max_connections,
                limit = http_limits.max_connections,
                open_files = soft,
                "--web.max-connections lowered to what the open file limit leaves room for"
            );
        }
    }
    let started = Now::wall().unix;
    let keys = Arc::new(Current::new(keys));
    let capacity = Arc::new(Current::new(capacity));
    let reloader = Arc::new(reloader(config, &keys, &capacity, web.as_ref(), started));
    // The stores start empty; the saved state (if any) is read and restored
    // below, while the receive threads already read the sockets and hold
    // what they read, so that a large fleet's reports meanwhile are not
    // dropped by the kernel.
    let stores = Arc::new(Stores::with(
        Shards::new(
            config.receive_threads,
            config.freshness,
            config.limits,
            false,
        ),
        config.freshness,
        config.max_series,
    ));
    let sink = Arc::new(Sink::new(
        stores.clone(),
        telemetry.clone(),
        keys.clone(),
        Allow(config.collectd_allow.clone()),
        config.security_level,
    ));
    let sources = Arc::new(Sources {
        stores,
        telemetry,
        capacity,
        reloader: reloader.clone(),
        typesdb: Arc::new(typesdb),
        host_label: config.host_label.clone(),
        otel_names: config.otel_names,
        build: BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("SCE_GIT_REVISION"),
            start_time_unix: started,
        },
    });
    // From here the sockets are read; what arrives is held until the
    // start's state is in.
    let held_by = udp.len().max(1);
    sink.hold(HOLD_BYTES / held_by);
    let (mut receivers, udp) = Receivers::spawn(udp, &sink).map_err(BindError::Threads)?;
    let (storage, start) = match &config.storage_path {
        Some(dir) => match Storage::open(dir) {
            Ok((storage, start)) => (Some(storage), start),
            Err(e) => {
                receivers.stop();
                return Err(BindError::Storage(e));
            }
        },
        None => (None, Start::Unsaved("no --storage.path".to_owned())),
    };
    start_stores(start, sink.stores(), config);
    sink.release();
    Ok(Bound {
        udp,
        receivers,
        http,
        sink,
        sources,
        reloader,
        web,
        storage,
        http_limits,
    })
}

/// The receive threads, running from the end of [`bind`] (they hold what
/// they read until the start's state is in: see [`Sink::hold`]).
#[derive(Debug)]
pub struct Receivers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Receivers {
    /// A thread per socket, reading into `sink`.
    fn spawn(
        udp: Vec<(std::net::UdpSocket, Arc<Listener>)>,
        sink: &Arc<Sink>,
    ) -> std::io::Result<(Receivers, Vec<Arc<Listener>>)> {
        let mut receivers = Receivers {
            threads: Vec::new(),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let mut listeners = Vec::new();
        for (socket, listener) in udp {
            let (sink, stop) = (sink.clone(), receivers.stop.clone());
            let name = format!("udp {}", listener.label);
            listeners.push(listener.clone());
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || crate::ingest::receive::receive(socket, listener, sink, stop));
            match thread {
                Ok(t) => receivers.threads.push(t),
                Err(e) => {
                    receivers.stop();
                    return Err(e);
                }
            }
        }
        Ok((receivers, listeners))
    }

    /// Stops every thread and waits for it (each wakes within its read
    /// timeout and sees the flag).
    pub fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// At most this many bytes of datagrams are held while the saved state is
/// restored at start, every receive thread together (300,000 processes at
/// their cadence send about 40 MB a second); beyond it the kernel's queues
/// take the rest, then drop and count it.
pub const HOLD_BYTES: usize = 128 * MIB;
const MIB: usize = 1 << 20;

/// Brings the stores to this start's state (see [`crate::storage`]): the
/// saved state restored, nothing for a first start, or the start-up
/// baseline.
fn start_stores(start: Start, stores: &Stores, config: &Config) {
    match start {
        Start::Restored(saved) => {
            let (programs, saved_unix) = (saved.programs.len(), saved.saved_unix);
            stores
                .sqla
                .restore_into(*saved, config.freshness, Now::wall());
            tracing::info!(
                programs,
                processes = stores.sqla_counts(Instant::now()).tracked_processes,
                saved_unix,
                "counters restored from the state the last shutdown saved"
            );
        }
        Start::First => {
            tracing::info!(
                "first start with this storage directory: every process counts from zero"
            );
        }
        Start::Unsaved(why) => {
            tracing::info!(
                reason = %why,
                "no saved counters: processes first seen within the first liveness window count from their first report"
            );
            stores.sqla.baseline_at_start();
        }
    }
}

/// The reload of every configured file: each loads on its own and, when it
/// does, replaces what is in use.
fn reloader(
    config: &Config,
    keys: &Arc<Current<Option<Keys>>>,
    capacity: &Arc<Current<Capacity>>,
    web: Option<&Arc<Web>>,
    started: f64,
) -> Reloader {
    let mut r = Reloader::new(started);
    if let Some(path) = &config.config_file {
        let capacity = capacity.clone();
        r.watch(
            ConfigFile::Config,
            path.clone(),
            Box::new(move |path| {
                let c = Capacity::load(path).map_err(|e| e.to_string())?;
                let summary = c.summary();
                capacity.set(c);
                Ok(summary)
            }),
            started,
        );
    }
    if let Some(web) = web {
        let web = web.clone();
        r.watch(
            ConfigFile::WebConfig,
            web.path().to_owned(),
            Box::new(move |_| web.reload().map_err(|e| e.to_string())),
            started,
        );
    }
    if let Some(path) = &config.auth_file {
        let keys = keys.clone();
        r.watch(
            ConfigFile::AuthFile,
            path.clone(),
            Box::new(move |path| {
                let k = Keys::load(path).map_err(|e| e.to_string())?;
                let summary = format!("{} users", k.len());
                keys.set(Some(k));
                Ok(summary)
            }),
            started,
        );
    }
    r
}

/// A UDP socket for a multicast group: bound to the group (so it receives
/// that group only, as collectd does) with address reuse, and joined on
/// `interface` (an index; 0 lets the kernel choose by its routes).
fn open_multicast(group: SocketAddr, interface: u32) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    match group.ip() {
        std::net::IpAddr::V4(ip) => {
            socket.join_multicast_v4_n(&ip, &socket2::InterfaceIndexOrAddress::Index(interface))?
        }
        std::net::IpAddr::V6(ip) => {
            socket.set_only_v6(true)?;
            socket.join_multicast_v6(&ip, interface)?
        }
    }
    socket.bind(&group.into())?;
    Ok(socket)
}

/// The index of a network interface, from Linux's sysfs.
fn interface_index(name: &str) -> std::io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("no network interface {name:?} ({path}: {e})"),
        )
    })?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} is not a number"),
        )
    })
}

/// Sizes a bound UDP socket's receive buffer and gives it its counters.
fn set_up_udp(
    socket: Socket,
    config: &Config,
    telemetry: &Telemetry,
) -> std::io::Result<(std::net::UdpSocket, Arc<Listener>)> {
    if config.udp_buffer > 0 {
        socket.set_recv_buffer_size(config.udp_buffer)?;
        // SO_RCVBUF stops at net.core.rmem_max; with CAP_NET_ADMIN,
        // SO_RCVBUFFORCE goes past it. Without the capability this fails
        // and the size granted above stands (and is logged below).
        if socket.recv_buffer_size()? < config.udp_buffer {
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBufForce,
                &config.udp_buffer,
            );
        }
    }
    let granted = socket.recv_buffer_size()?;
    let socket: std::net::UdpSocket = socket.into();
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    if config.udp_buffer > 0 && granted < config.udp_buffer {
        tracing::warn!(
            listener = %local, requested = config.udp_buffer, granted,
            "the kernel granted a smaller UDP receive buffer; raise net.core.rmem_max to avoid drops under load"
        );
    }
    tracing::info!(listener = %local, receive_buffer = granted, "listening for collectd datagrams");
    let listener = telemetry.add_listener(Listener::new(
        local,
        granted as u64,
        socket_inode(socket.as_raw_fd()),
    ));
    Ok((socket, listener))
}

/// Another UDP socket on `local` with `SO_REUSEPORT`, beside the first one.
fn open_reuse_port(local: SocketAddr, only_v6: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        socket.set_only_v6(only_v6)?;
    }
    socket.set_reuse_port(true)?;
    socket.bind(&local.into())?;
    Ok(socket)
}

fn open(address: ListenAddress, ty: Type, reuse_port: bool) -> std::io::Result<Socket> {
    let protocol = if ty == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let attempt = |ipv6_any: bool| -> std::io::Result<Socket> {
        let (addr, v6only) = address.socket_addr(ipv6_any);
        let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
        if addr.is_ipv6() {
            socket.set_only_v6(v6only)?;
        }
        if ty == Type::STREAM {
            socket.set_reuse_address(true)?;
        }
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    match address {
        // `:PORT` prefers one dual-stack socket; hosts without IPv6 get IPv4.
        ListenAddress::AnyInterface(_) => attempt(true).or_else(|_| attempt(false)),
        ListenAddress::Ip(_) => attempt(false),
    }
}

/// How often dead processes are counted and forgotten ones dropped. Gauges
/// do not wait for it: every snapshot filters by the scrape's own clock.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// At shutdown, requests in flight (a large scrape) get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves until `shutdown` completes; then stops accepting connections, lets
/// requests in flight finish (for at most [`SHUTDOWN_GRACE`]), and stops the
/// receivers last, so nothing that arrived before is lost to a scrape.
pub async fn run(
    bound: Bound,
    telemetry_path: &str,
    push_path: &str,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Bound {
        udp: _,
        mut receivers,
        http,
        sink,
        sources,
        reloader,
        web,
        storage,
        http_limits,
    } = bound;
    let stores = sink.stores().clone();
    let saved_stores = stores.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            stores.sweep(Instant::now());
        }
    });
    let telemetry = sources.telemetry.clone();
    let scrapes = Arc::new(crate::http::scrapes::Scrapes::new(
        http_limits.max_requests,
        telemetry.clone(),
    ));
    let state = crate::http::AppState {
        sources,
        sink,
        reloader,
    };
    let router = crate::http::router(state, telemetry_path, push_path, web.clone(), scrapes);
    let tls = web.filter(|web| web.tls());
    let mut listeners = Vec::new();
    for listener in http {
        let socket = tokio::net::TcpListener::from_std(listener)?;
        if tls.is_some() {
            tracing::info!(address = ?socket.local_addr().ok(), "serving HTTPS");
        }
        listeners.push(crate::http::serve::Listener {
            socket,
            tls: tls.clone(),
        });
    }
    tracing::info!(
        read_header_timeout = ?http_limits.read_header_timeout,
        idle_timeout = ?http_limits.idle_timeout,
        max_connections = http_limits.max_connections,
        max_requests = http_limits.max_requests,
        "HTTP limits"
    );
    let (stop_http, stopped) = tokio::sync::watch::channel(false);
    let connections = Arc::new(Connections::new(http_limits, telemetry));
    let servers = tokio::spawn(crate::http::serve::serve(
        listeners,
        router,
        connections,
        stopped,
        SHUTDOWN_GRACE,
    ));
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_http.send(true);
    let _ = servers.await;
    sweeper.abort();
    let _ = tokio::task::spawn_blocking(move || {
        receivers.stop();
        // Last: everything received is in.
        if let Some(storage) = storage {
            let saved = saved_stores.sqla.save(Now::wall());
            let programs = saved.programs.len();
            match storage.save(&saved) {
                Ok(()) => tracing::info!(programs, "counters saved for the next start"),
                Err(e) => tracing::error!(error = %e, "saving the counters failed; the next start takes a baseline"),
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Config {
        Config::try_parse_from([
            "x",
            "--collectd.listen-address",
            "127.0.0.1:0",
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sce-ready-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn ready_file_names_the_bound_addresses_until_dropped() {
        let bound = bind(&loopback()).unwrap();
        let dir = scratch("written");
        let path = dir.join("ready.json");
        let ready = ReadyFile::write(&path, &bound).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let addresses = |a: Vec<SocketAddr>| a.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            doc,
            serde_json::json!({
                "pid": std::process::id(),
                "collectd": addresses(bound.udp_addresses()),
                "web": addresses(bound.http_addresses()),
            })
        );
        // Nothing but the file itself is left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ready.json"]);
        drop(ready);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_connection_cap_leaves_room_for_other_files() {
        assert_eq!(connection_cap(1024, 1024), 960);
        assert_eq!(connection_cap(1024, 1_048_576), 1024);
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(1024, 10), 1);
    }

    #[test]
    fn ready_file_that_cannot_be_written_is_an_error_naming_it() {
        let bound = bind(&loopback()).unwrap();
        let dir = scratch("missing");
        let path = dir.join("no-such-dir/ready.json");
        let e = ReadyFile::write(&path, &bound).unwrap_err();
        assert_eq!(e.to_string(), format!("ready file {}", path.display()));
        assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
