//! The command line: flags and subcommands (clap) → a validated
//! [`Config`]. Flag names follow the Prometheus exporter conventions
//! (`--web.listen-address`); durations parse with humantime (`90s`,
//! `1h30m`); addresses accept the Go style `:PORT` for "all interfaces".
//!
//! Takes `argv`; hands on [`Args`] (for `main` and the manual page) and
//! [`Config`] (for the server).

use crate::collectd::SecurityLevel;
use crate::config::{Config, HttpLimits, ListenAddress, LogFormat, LogLevel};
use crate::store::Freshness;
use crate::store::sqlalchemy::Limits;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 90s, 5m, 1h30m)"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be longer than zero"));
    }
    Ok(d)
}

/// The peak window: 1 s to 1 day (its six buckets are at least a sixth of a
/// second each).
fn peak_window(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err(format!("{s:?}: must be between 1s and 24h"));
    }
    Ok(d)
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err(format!("{s:?}: must be at least 1")),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A CIDR network (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
fn network(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        // Host bits set (10.1.2.3/8) are almost always a typo for a narrower net.
        if net.trunc() != net {
            return Err(format!(
                "{s:?}: host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?}: not a CIDR network (10.0.0.0/8, 2001:db8::/32) or an address"))
}

fn push_path(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    telemetry_path(s)
}

fn host_label(s: &str) -> Result<String, String> {
    let valid = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
        && s != "type";
    if !valid {
        return Err(format!("{s:?}: not a usable label name"));
    }
    Ok(s.to_owned())
}

fn telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s == "/" || s.starts_with("/-/") {
        return Err(format!(
            "{s:?}: must start with / and not be / or under /-/"
        ));
    }
    if s.contains(['{', '}', '*', '?', '#']) || s.contains("//") {
        return Err(format!("{s:?}: must be a plain path"));
    }
    Ok(s.to_owned())
}

const MIB: usize = 1 << 20;

/// What `--version` prints after the name: the crate version, the git revision
/// and the UTC build date (both recorded by build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("SCE_GIT_REVISION"),
    ", built ",
    env!("SCE_BUILD_DATE"),
    ")"
);

/// Receives collectd binary-protocol datagrams from sqlalchemy-collectd clients and
/// collectd, and serves SQLAlchemy connection-pool metrics per host and program for
/// Prometheus.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "sqlalchemy-collectd-exporter",
    version = VERSION,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// UDP address for collectd datagrams (repeatable; IPv4, [IPv6] or :PORT for all). A
    /// multicast address (collectd's default groups are 239.192.74.66 and
    /// [ff18::efc0:4a42]) joins the group.
    #[arg(
        long = "collectd.listen-address",
        value_name = "ADDR",
        default_value = "0.0.0.0:25827"
    )]
    pub collectd_listen: Vec<ListenAddress>,

    /// Accept datagrams only from these source networks (CIDR, IPv4 or IPv6; repeatable).
    /// Others are dropped and counted as source_not_allowed. By default every source is
    /// accepted.
    #[arg(long = "collectd.allow", value_name = "CIDR", value_parser = network)]
    pub collectd_allow: Vec<ipnet::IpNet>,

    /// Network interface on which multicast listen addresses join their group (e.g. eth0);
    /// by default the kernel picks one by its routes.
    #[arg(long = "collectd.multicast-interface", value_name = "NAME")]
    pub multicast_interface: Option<String>,

    /// Receive buffer (SO_RCVBUF) to ask for on each UDP socket, in bytes; 0 keeps the
    /// kernel default. The size granted is logged and exported.
    #[arg(long = "collectd.udp-buffer", value_name = "BYTES", default_value_t = 8 * MIB)]
    pub udp_buffer: usize,

    /// Sockets on every UDP listener (SO_REUSEPORT; a multicast listener keeps
    /// one), each read by a thread of its own, and as many shards of the
    /// SQLAlchemy store. Default: one fewer than the CPUs this process may run
    /// on (the one left is the scrapes'), at least 1, at most 8.
    #[arg(long = "collectd.receive-threads", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub receive_threads: Option<u16>,

    /// Least protection data needs to be accepted, as collectd's SecurityLevel: none,
    /// sign (signed or encrypted) or encrypt. sign and encrypt need --collectd.auth-file.
    #[arg(long = "collectd.security-level", value_name = "LEVEL", value_enum,
          default_value_t = SecurityLevel::None)]
    pub security_level: SecurityLevel,

    /// collectd AuthFile ("user: password" per line) to verify signed and open encrypted
    /// datagrams; re-read on SIGHUP.
    #[arg(long = "collectd.auth-file", value_name = "FILE",
          required_if_eq_any([("security_level", "sign"), ("security_level", "encrypt")]))]
    pub auth_file: Option<PathBuf>,

    /// types.db with the data-source names of generic value lists (repeatable; default the
    /// system's /usr/share/collectd/types.db when present).
    #[arg(long = "collectd.typesdb-file", value_name = "FILE")]
    pub typesdb_files: Vec<PathBuf>,

    /// Label that carries the collectd host of generic series (collectd_exporter uses
    /// `instance`, which needs honor_labels in Prometheus).
    #[arg(long = "collectd.host-label", value_name = "NAME", default_value = "instance", value_parser = host_label)]
    pub host_label: String,

    /// HTTP address for /metrics (repeatable; IPv4, [IPv6] or :PORT for all).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "0.0.0.0:9827"
    )]
    pub web_listen: Vec<ListenAddress>,

    /// Longest an HTTP client may take to send a request head, from its first byte (over
    /// TLS: from connecting, for the handshake, then from the head's first byte), e.g. 10s;
    /// a connection that takes longer is closed (Go's ReadHeaderTimeout).
    #[arg(long = "web.read-header-timeout", value_name = "DURATION", default_value = "10s",
          value_parser = duration)]
    pub read_header_timeout: Duration,

    /// An HTTP connection that sends nothing this long after its last response (or after
    /// connecting) is closed, e.g. 2m.
    #[arg(long = "web.idle-timeout", value_name = "DURATION", default_value = "2m",
          value_parser = duration)]
    pub idle_timeout: Duration,

    /// Most HTTP connections open at once (every listener together; never more than the
    /// open-file limit minus 64). At the cap, a new connection closes the one that has been
    /// idle the longest; when every connection has a request in flight, the new one is
    /// closed.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = HttpLimits::default().max_connections,
          value_parser = at_least_one)]
    pub max_connections: usize,

    /// Most scrapes (the telemetry path, /api/v1/pools and /api/v1/processes) answered at once;
    /// more get 503 until one has been sent whole. 0 for no limit.
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = HttpLimits::default().max_requests)]
    pub max_requests: usize,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = telemetry_path)]
    pub telemetry_path: String,

    /// Path that accepts collectd's write_http plugin (Format "JSON") by POST; empty
    /// disables it.
    #[arg(long = "web.collectd-push-path", value_name = "PATH", default_value = "/collectd-post",
          value_parser = push_path)]
    pub push_path: String,

    /// A process is dead after missing this many of its own report intervals.
    #[arg(long = "stale-intervals", value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "stale_after")]
    pub stale_intervals: u32,

    /// A process is dead this long after its last report, whatever its interval
    /// (e.g. 10s); replaces --stale-intervals.
    #[arg(long = "stale-after", value_name = "DURATION", value_parser = duration)]
    pub stale_after: Option<Duration>,

    /// A host/program with no live process is exported (processes 0) this long, then
    /// forgotten.
    #[arg(long = "forget-after", value_name = "DURATION", default_value = "1h", value_parser = duration)]
    pub forget_after: Duration,

    /// The peak gauges (sqlalchemy_connections_peak, sqlalchemy_connections_checked_out_peak)
    /// are the most each sum reached over this window (at least the window, at most a sixth
    /// more), so bursts between scrapes show.
    #[arg(long = "peak-window", value_name = "DURATION", default_value = "1m", value_parser = peak_window)]
    pub peak_window: Duration,

    /// Most client processes tracked; reports from further new processes are rejected
    /// and counted (reason over_limit).
    #[arg(long = "limits.max-processes", value_name = "N", default_value_t = Limits::default().max_processes)]
    pub max_processes: usize,

    /// Most host/program pairs tracked; further new ones are rejected and counted.
    #[arg(long = "limits.max-programs", value_name = "N", default_value_t = Limits::default().max_programs)]
    pub max_programs: usize,

    /// Most generic collectd value lists tracked; further new ones are rejected and counted.
    #[arg(
        long = "limits.max-series",
        value_name = "N",
        default_value_t = 1_000_000
    )]
    pub max_series: usize,

    /// YAML file with pool capacities and databases (see the README); re-read on SIGHUP and
    /// POST /-/reload. Everything works without one.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// exporter-toolkit web configuration (TLS, basic auth, response headers; see the
    /// README); re-read on SIGHUP and POST /-/reload. Without it: plain HTTP, no auth.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Once every listener is bound, write this file with the process id and the bound
    /// addresses as JSON ({"pid":N,"collectd":["IP:PORT",...],"web":["IP:PORT",...]}), so
    /// that port 0 can be used; written atomically (a temporary file in the same directory,
    /// then renamed) and removed at clean shutdown (one left after a crash is stale).
    #[arg(long = "web.ready-file", value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    /// Directory where a graceful shutdown saves every host/program's counters and
    /// every process's last reports, so that the next start continues them (no counter
    /// reset at a deploy). After a crash, and without this flag, processes first seen
    /// within the first liveness window count from their first report instead: one
    /// reset to Prometheus, no burst. The first start in an empty directory counts from
    /// zero.
    #[arg(long = "storage.path", value_name = "DIR")]
    pub storage_path: Option<PathBuf>,

    /// Also serve every host/program's pool under OpenTelemetry's names, for dashboards
    /// built for them: db_client_connection_count{db_client_connection_state="idle"|"used"},
    /// db_client_connection_max (from the config file) and the older
    /// db_client_connections_usage{state}; the pool name is the program, host stays.
    #[arg(long = "metrics.otel-names")]
    pub otel_names: bool,

    /// Log level.
    #[arg(long = "log.level", value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(long = "log.format", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file and exit (0 when it is valid).
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
    /// Show a running exporter's pools live in the terminal, like top (`--once`: one table).
    Top(crate::top::TopArgs),
    /// Print a completion script for SHELL to stdout (see the README for where to put it).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff, section 1) to stdout.
    Man,
    /// Validate a web configuration file (--web.config.file) and the certificates it
    /// names, and exit (0 when it is valid).
    CheckWebConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
}

impl From<Args> for Config {
    fn from(a: Args) -> Self {
        Config {
            collectd_listen: a.collectd_listen,
            udp_buffer: a.udp_buffer,
            receive_threads: a
                .receive_threads
                .map_or_else(crate::config::default_receive_threads, usize::from),
            collectd_allow: a.collectd_allow,
            multicast_interface: a.multicast_interface,
            security_level: a.security_level,
            auth_file: a.auth_file,
            typesdb_files: a.typesdb_files,
            host_label: a.host_label,
            max_series: a.max_series,
            storage_path: a.storage_path,
            otel_names: a.otel_names,
            web_listen: a.web_listen,
            http: HttpLimits {
                read_header_timeout: a.read_header_timeout,
                idle_timeout: a.idle_timeout,
                max_connections: a.max_connections,
                max_requests: a.max_requests,
            },
            telemetry_path: a.telemetry_path,
            push_path: a.push_path,
            freshness: Freshness {
                stale_intervals: a.stale_intervals,
                stale_after: a.stale_after,
                forget_after: a.forget_after,
                peak_window: a.peak_window,
            },
            limits: Limits {
                max_processes: a.max_processes,
                max_programs: a.max_programs,
            },
            log_level: a.log_level,
            log_format: a.log_format,
            config_file: a.config_file,
            web_config_file: a.web_config_file,
            ready_file: a.ready_file,
        }
    }
}

impl Config {
    /// Parses flags as the binary does (`args[0]` is the program name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Args::try_parse_from(args).map(Config::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_product_contract() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.collectd_listen, vec!["0.0.0.0:25827".parse().unwrap()]);
        assert_eq!(c.web_listen, vec!["0.0.0.0:9827".parse().unwrap()]);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.freshness, Freshness::default());
        assert_eq!(
            c.http,
            HttpLimits {
                read_header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(120),
                max_connections: 1024,
                max_requests: 40,
            }
        );
    }

    #[test]
    fn http_limits_parse_durations_and_counts() {
        let c = parse(&[
            "--web.read-header-timeout",
            "1500ms",
            "--web.idle-timeout",
            "1m",
            "--web.max-connections",
            "100",
            "--web.max-requests",
            "0",
        ])
        .unwrap();
        assert_eq!(
            c.http,
            HttpLimits {
                read_header_timeout: Duration::from_millis(1500),
                idle_timeout: Duration::from_secs(60),
                max_connections: 100,
                max_requests: 0,
            }
        );
    }

    #[test]
    fn listen_addresses_repeat_and_accept_go_style() {
        let c = parse(&[
            "--collectd.listen-address",
            ":25827",
            "--collectd.listen-address",
            "[::1]:9",
        ])
        .unwrap();
        assert_eq!(
            c.collectd_listen,
            vec![
                ListenAddress::AnyInterface(25827),
                ListenAddress::Ip("[::1]:9".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn allowlist_takes_networks_and_addresses() {
        let c = parse(&[
            "--collectd.allow",
            "10.0.0.0/8",
            "--collectd.allow",
            "2001:db8::/32",
            "--collectd.allow",
            "192.0.2.7",
        ])
        .unwrap();
        let nets: Vec<String> = c.collectd_allow.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]);
        assert!(parse(&[]).unwrap().collectd_allow.is_empty());
        let e = parse(&["--collectd.allow", "10.1.2.3/8"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 10.0.0.0/8?"), "{e}");
        let e = parse(&["--collectd.allow", "10.0.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a CIDR network"), "{e}");
    }

    #[test]
    fn durations_are_humantime() {
        let c = parse(&["--stale-after", "1m30s", "--forget-after", "2h"]).unwrap();
        assert_eq!(c.freshness.stale_after, Some(Duration::from_secs(90)));
        assert_eq!(c.freshness.forget_after, Duration::from_secs(7200));
    }

    #[test]
    fn bad_values_are_errors() {
        for args in [
            &["--collectd.listen-address", "nowhere"][..],
            &["--web.listen-address", "1.2.3.4"],
            &["--forget-after", "soon"],
            &["--stale-after", "0s"],
            &["--stale-intervals", "0"],
            &["--stale-intervals", "2", "--stale-after", "5s"],
            &["--web.telemetry-path", "metrics"],
            &["--web.telemetry-path", "/-/healthy"],
            &["--log.level", "loud"],
            &["--collectd.security-level", "sign"],
            &["--collectd.security-level", "paranoid"],
            &["--collectd.host-label", "9x"],
            &["--collectd.host-label", "type"],
            &["--web.read-header-timeout", "0s"],
            &["--web.idle-timeout", "soon"],
            &["--web.max-connections", "0"],
            &["--web.max-requests", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be rejected");
        }
    }
}
