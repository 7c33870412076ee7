//! Binds every listener, then runs the receive loops, the sweep and the HTTP
//! servers until shutdown. `bind` is separate so that callers (main, tests)
//! learn the bound addresses and see bind errors before anything runs.

use crate::capacity::{Capacity, ConfigFileError};
use crate::collectd::SecurityLevel;
use crate::collectd::security::{AuthFileError, Keys};
use crate::config::{Config, ListenAddress};
use crate::exposition::families::BuildInfo;
use crate::store::collectd::GenericStore;
use crate::store::sqlalchemy::SqlaStore;
use crate::telemetry::{Listener, Telemetry, socket_inode};
use crate::typesdb::{TypesDb, TypesDbError};
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// Locks a store. A panic while a store was locked cannot have left it
/// half-updated in a way that matters more than losing every later report,
/// so a poisoned lock is taken over rather than propagated.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by the receive loops, the sweep and the scrape handler.
#[derive(Debug)]
pub struct Shared {
    pub sqla: Mutex<SqlaStore>,
    pub generic: Mutex<GenericStore>,
    pub typesdb: TypesDb,
    pub host_label: String,
    /// Source networks datagrams are accepted from; empty: all.
    pub allow: Allow,
    pub telemetry: Telemetry,
    pub build: BuildInfo,
    pub security_level: SecurityLevel,
    pub auth_file: Option<PathBuf>,
    /// Replaced whole on reload; readers clone the `Arc` once per batch.
    keys: RwLock<Option<Arc<Keys>>>,
    pub config_file: Option<PathBuf>,
    /// Replaced whole on reload; each scrape clones the `Arc`.
    capacity: RwLock<Arc<Capacity>>,
    /// Whether the last reload of the config file worked, and when one last did.
    pub reload: Mutex<ReloadStatus>,
    /// `--web.config.file`: TLS, basic auth and headers of the HTTP listeners.
    pub web: Option<Arc<crate::webconfig::Web>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReloadStatus {
    pub successful: bool,
    pub success_unix: f64,
}

impl Shared {
    pub fn keys(&self) -> Option<Arc<Keys>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn capacity(&self) -> Arc<Capacity> {
        match self.capacity.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads the config file (SIGHUP, POST /-/reload). A file that does
    /// not load leaves the configuration in use unchanged.
    pub fn reload_config(&self) -> Result<(), ConfigFileError> {
        let Some(path) = &self.config_file else {
            return Ok(());
        };
        let result = Capacity::load(path);
        let mut status = lock(&self.reload);
        match result {
            Ok(c) => {
                let (pools, databases) = (c.pool_rules(), c.database_rules());
                match self.capacity.write() {
                    Ok(mut slot) => *slot = Arc::new(c),
                    Err(p) => *p.into_inner() = Arc::new(c),
                }
                tracing::info!(path = %path.display(), pools, databases, "config file reloaded");
                *status = ReloadStatus {
                    successful: true,
                    success_unix: crate::store::Now::wall().unix,
                };
                Ok(())
            }
            Err(e) => {
                status.successful = false;
                Err(e)
            }
        }
    }

    /// Re-reads the web config file (SIGHUP, POST /-/reload). A file that
    /// does not load leaves the one in use unchanged.
    pub fn reload_web_config(&self) -> Result<(), crate::webconfig::WebConfigError> {
        match &self.web {
            Some(web) => web.reload(),
            None => Ok(()),
        }
    }

    /// Re-reads the auth file (on SIGHUP). A file that does not parse leaves
    /// the keys in use unchanged.
    pub fn reload_auth_file(&self) -> Result<(), AuthFileError> {
        let Some(path) = &self.auth_file else {
            return Ok(());
        };
        let keys = Keys::load(path)?;
        let users = keys.len();
        match self.keys.write() {
            Ok(mut k) => *k = Some(Arc::new(keys)),
            Err(p) => *p.into_inner() = Some(Arc::new(keys)),
        }
        // Logged once the new users are in use, so the line means they are.
        tracing::info!(path = %path.display(), users, "auth file reloaded");
        Ok(())
    }
}

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

/// What stops the exporter from starting.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
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
    /// A types.db that cannot be read or parsed.
    #[error("types.db")]
    TypesDb(#[source] TypesDbError),
    /// A web config file, or a certificate it names, that does not load.
    #[error("web config file")]
    WebConfig(#[source] crate::webconfig::WebConfigError),
}

/// Sockets bound and ready, not yet served.
#[derive(Debug)]
pub struct Bound {
    pub udp: Vec<(std::net::UdpSocket, Arc<Listener>)>,
    pub http: Vec<std::net::TcpListener>,
    pub shared: Arc<Shared>,
}

impl Bound {
    pub fn udp_addresses(&self) -> Vec<SocketAddr> {
        self.udp.iter().map(|(_, l)| l.address).collect()
    }

    pub fn http_addresses(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

pub fn bind(config: &Config) -> Result<Bound, BindError> {
    let keys = match &config.auth_file {
        Some(path) => Some(Arc::new(Keys::load(path).map_err(BindError::AuthFile)?)),
        None => None,
    };
    let capacity = match &config.config_file {
        Some(path) => Capacity::load(path).map_err(BindError::ConfigFile)?,
        None => Capacity::default(),
    };
    let typesdb = TypesDb::load(&config.typesdb_files).map_err(BindError::TypesDb)?;
    let web = match &config.web_config_file {
        Some(path) => Some(Arc::new(
            crate::webconfig::Web::load(path).map_err(BindError::WebConfig)?,
        )),
        None => None,
    };
    tracing::info!(types = typesdb.len(), "types.db loaded");
    let telemetry = Telemetry::default();
    let mut udp = Vec::new();
    for &address in &config.collectd_listen {
        let err = |source| BindError::Listen {
            proto: "udp",
            address,
            source,
        };
        let socket = match address {
            ListenAddress::Ip(group) if group.ip().is_multicast() => {
                let index = match &config.multicast_interface {
                    Some(name) => interface_index(name).map_err(err)?,
                    None => 0,
                };
                open_multicast(group, index).map_err(err)?
            }
            _ => open(address, Type::DGRAM).map_err(err)?,
        };
        if config.udp_buffer > 0 {
            socket
                .set_recv_buffer_size(config.udp_buffer)
                .map_err(err)?;
            // SO_RCVBUF stops at net.core.rmem_max; with CAP_NET_ADMIN,
            // SO_RCVBUFFORCE goes past it. Without the capability this fails
            // and the size granted above stands (and is logged below).
            if socket.recv_buffer_size().map_err(err)? < config.udp_buffer {
                let _ = nix::sys::socket::setsockopt(
                    &socket,
                    nix::sys::socket::sockopt::RcvBufForce,
                    &config.udp_buffer,
                );
            }
        }
        let granted = socket.recv_buffer_size().map_err(err)?;
        let socket: std::net::UdpSocket = socket.into();
        socket.set_nonblocking(true).map_err(err)?;
        let local = socket.local_addr().map_err(err)?;
        if config.udp_buffer > 0 && granted < config.udp_buffer {
            tracing::warn!(
                listener = %local, requested = config.udp_buffer, granted,
                "the kernel granted a smaller UDP receive buffer; raise net.core.rmem_max to avoid drops under load"
            );
        }
        tracing::info!(listener = %local, receive_buffer = granted, "listening for collectd datagrams");
        let listener = telemetry.add_listener(Listener {
            address: local,
            label: local.to_string(),
            datagrams: 0.into(),
            bytes: 0.into(),
            receive_buffer: granted as u64,
            inode: socket_inode(socket.as_raw_fd()),
        });
        udp.push((socket, listener));
    }
    let mut http = Vec::new();
    for &address in &config.web_listen {
        let err = |source| BindError::Listen {
            proto: "tcp",
            address,
            source,
        };
        let socket = open(address, Type::STREAM).map_err(err)?;
        socket.listen(1024).map_err(err)?;
        let listener: std::net::TcpListener = socket.into();
        listener.set_nonblocking(true).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        tracing::info!(address = %local, path = %config.telemetry_path, "serving metrics over HTTP");
        http.push(listener);
    }
    let shared = Arc::new(Shared {
        sqla: Mutex::new(SqlaStore::new(config.freshness, config.limits)),
        generic: Mutex::new(GenericStore::new(config.freshness, config.max_series)),
        typesdb,
        host_label: config.host_label.clone(),
        allow: Allow(config.collectd_allow.clone()),
        telemetry,
        build: BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("SCE_GIT_REVISION"),
            start_time_unix: crate::store::Now::wall().unix,
        },
        security_level: config.security_level,
        auth_file: config.auth_file.clone(),
        keys: RwLock::new(keys),
        config_file: config.config_file.clone(),
        capacity: RwLock::new(Arc::new(capacity)),
        reload: Mutex::new(ReloadStatus {
            successful: true,
            success_unix: crate::store::Now::wall().unix,
        }),
        web,
    });
    Ok(Bound { udp, http, shared })
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

fn open(address: ListenAddress, ty: Type) -> std::io::Result<Socket> {
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

/// Serves until `shutdown` completes.
pub async fn run(
    bound: Bound,
    telemetry_path: &str,
    push_path: &str,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = bound.shared;
    let mut tasks = tokio::task::JoinSet::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut receivers = Vec::new();
    for (socket, listener) in bound.udp {
        let (shared, stop) = (shared.clone(), stop.clone());
        let name = format!("udp {}", listener.label);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || crate::ingest::receive(socket, listener, shared, stop))?;
        receivers.push(thread);
    }
    let sweeper = shared.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            lock(&sweeper.sqla).sweep(now);
            lock(&sweeper.generic).sweep(now);
        }
    });
    let router = crate::exposition::router(shared.clone(), telemetry_path, push_path);
    let router = match &shared.web {
        Some(web) => router.layer(axum::middleware::from_fn_with_state(
            web.clone(),
            crate::webconfig::guard,
        )),
        None => router,
    };
    for listener in bound.http {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let router = router.clone();
        match shared.web.clone().filter(|web| web.tls()) {
            Some(web) => {
                tracing::info!(address = ?listener.local_addr().ok(), "serving HTTPS");
                tasks.spawn(crate::webconfig::serve_tls(listener, router, web));
            }
            None => {
                tasks.spawn(async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        tracing::error!(error = %e, "HTTP server stopped");
                    }
                });
            }
        }
    }
    shutdown.await;
    tracing::info!("shutting down");
    tasks.shutdown().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Each receive thread wakes within its read timeout and sees the flag.
    let _ = tokio::task::spawn_blocking(move || {
        for t in receivers {
            let _ = t.join();
        }
    })
    .await;
    Ok(())
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
