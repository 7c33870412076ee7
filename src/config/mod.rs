//! Validated settings and the files that configure the exporter:
//!
//! * [`Config`]: everything the server needs, validated (the flags become one
//!   in `crate::cli`);
//! * [`file`]: the config file (`--config.file`): pool capacities and databases;
//! * [`web`]: the web config file (`--web.config.file`): TLS, basic auth, headers;
//! * [`yaml`]: where a YAML error is, for both files.
//!
//! Takes flags already parsed and file paths; hands on values the server and
//! the HTTP layer use. Nothing here touches a socket.

pub mod file;
pub mod web;
pub mod yaml;

use crate::collectd::SecurityLevel;
use crate::store::Freshness;
use crate::store::sqlalchemy::Limits;
use clap::ValueEnum;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// Where to listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    /// An explicit address. An IPv6 address listens on IPv6 only, so that
    /// `0.0.0.0:P` and `[::]:P` can both be given.
    Ip(SocketAddr),
    /// `:PORT`: every interface, IPv4 and IPv6 (one dual-stack socket where
    /// the host has IPv6, else IPv4), as Go exporters do.
    AnyInterface(u16),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Ip(a) => write!(f, "{a}"),
            ListenAddress::AnyInterface(p) => write!(f, ":{p}"),
        }
    }
}

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not IP:PORT, [IPv6]:PORT or :PORT");
        if let Some(port) = s.strip_prefix(':') {
            return port
                .parse()
                .map(ListenAddress::AnyInterface)
                .map_err(|_| bad());
        }
        if let Some(port) = s.strip_prefix("localhost:") {
            let port = port.parse().map_err(|_| bad())?;
            return Ok(ListenAddress::Ip(SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                port,
            )));
        }
        s.parse().map(ListenAddress::Ip).map_err(|_| bad())
    }
}

impl ListenAddress {
    /// The address to bind and whether it is IPv6-only.
    pub fn socket_addr(self, ipv6: bool) -> (SocketAddr, bool) {
        match self {
            ListenAddress::Ip(a) => (a, a.is_ipv6()),
            ListenAddress::AnyInterface(p) if ipv6 => {
                (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p), false)
            }
            ListenAddress::AnyInterface(p) => {
                (SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p), false)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// At most this many receive threads by default: beyond it a machine's
/// cores are better left to what else it runs, and the flag says otherwise.
pub const MAX_DEFAULT_RECEIVE_THREADS: usize = 8;

/// `--collectd.receive-threads` by default: one fewer than the CPUs this
/// process may run on (its affinity mask and its cgroup's CPU quota, as
/// `available_parallelism` reads them), at least 1 and at most
/// [`MAX_DEFAULT_RECEIVE_THREADS`]. The CPU left over is the scrapes': a
/// scrape of a large fleet keeps a core busy while it encodes, and under a
/// flood receive threads on every core would leave it none.
pub fn default_receive_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_sub(1)
        .clamp(1, MAX_DEFAULT_RECEIVE_THREADS)
}

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub collectd_listen: Vec<ListenAddress>,
    pub udp_buffer: usize,
    /// Receive threads (sockets per UDP listener, shards of the SQLAlchemy
    /// store), at least 1.
    pub receive_threads: usize,
    /// Empty: every source is allowed.
    pub collectd_allow: Vec<ipnet::IpNet>,
    pub multicast_interface: Option<String>,
    pub security_level: SecurityLevel,
    pub auth_file: Option<PathBuf>,
    pub typesdb_files: Vec<PathBuf>,
    pub host_label: String,
    pub max_series: usize,
    pub web_listen: Vec<ListenAddress>,
    /// Timeouts and caps of the HTTP listeners.
    pub http: HttpLimits,
    pub telemetry_path: String,
    /// Empty when disabled.
    pub push_path: String,
    pub freshness: Freshness,
    pub limits: Limits,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub config_file: Option<PathBuf>,
    pub web_config_file: Option<PathBuf>,
    /// Where the bound addresses are written once every listener is bound.
    pub ready_file: Option<PathBuf>,
    /// Where a graceful shutdown leaves the counters for the next start.
    pub storage_path: Option<PathBuf>,
    /// Also serve the pools under OpenTelemetry's metric names.
    pub otel_names: bool,
}

/// What one HTTP client may hold of the exporter: the timeouts after which
/// a connection that is not answering a request is closed, and the caps on
/// open connections and concurrent scrapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// `--web.read-header-timeout`: from the first byte of a request head
    /// (or from accepting a TLS connection) to the end of the head.
    pub read_header_timeout: std::time::Duration,
    /// `--web.idle-timeout`: silence after a response (or after accepting)
    /// before the connection is closed.
    pub idle_timeout: std::time::Duration,
    /// `--web.max-connections`: open connections, every listener together;
    /// never more than the open-file limit leaves room for
    /// (`crate::server` lowers it).
    pub max_connections: usize,
    /// `--web.max-requests`: scrapes (the telemetry path and
    /// `/api/v1/pools`) answered at once; 0 for no limit.
    pub max_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            read_header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(120),
            max_connections: 1024,
            max_requests: 40,
        }
    }
}
