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

/// Everything the server needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub collectd_listen: Vec<ListenAddress>,
    pub udp_buffer: usize,
    /// Empty: every source is allowed.
    pub collectd_allow: Vec<ipnet::IpNet>,
    pub multicast_interface: Option<String>,
    pub security_level: SecurityLevel,
    pub auth_file: Option<PathBuf>,
    pub typesdb_files: Vec<PathBuf>,
    pub host_label: String,
    pub max_series: usize,
    pub web_listen: Vec<ListenAddress>,
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
}
