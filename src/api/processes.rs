//! The document of `GET /api/v1/processes?host=H&program=P`: one
//! host/program's processes, for `top`'s process view and for scripts. The
//! handler is `crate::http::api::processes`.
//!
//! Takes the query string's parameters ([`Query::parse`]) and the store's
//! [`ProcessList`] of that host/program, ordered and cut to the page asked
//! for; hands on a [`Processes`] document (or an [`ApiError`] for a bad query
//! or an unknown host/program) whose schema the README describes. As the
//! pools document, the types derive both `Serialize` and `Deserialize`, so
//! `top` reads exactly what this module writes.

use super::{Exporter, LATE_AFTER_INTERVALS, ProgramState, Transactions};
use crate::store::sqlalchemy::processes::{ProcessList, ProcessOrder, ProcessSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where the document is served.
pub const PATH: &str = "/api/v1/processes";

/// Processes in one document unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;
/// The most `limit` may ask for; more is taken as this.
pub const MAX_LIMIT: usize = 10_000;

/// A process's state, by the pools document's rules: `live` while it
/// reports; `late` when its last report is older than
/// [`LATE_AFTER_INTERVALS`] intervals but it is not yet expired; `dead` once
/// expired (kept until `--forget-after`).
pub type ProcessState = ProgramState;

/// The whole document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Processes {
    pub exporter: Exporter,
    /// The exporter's wall clock when the document was built, Unix seconds.
    pub server_time_unix: f64,
    pub late_after_intervals: f64,
    pub host: String,
    pub program: String,
    /// The order of `processes`.
    pub sort: Sort,
    /// Processes tracked for this host/program, live and dead, on every page.
    pub total: usize,
    /// Of those, the ones live now.
    pub live: usize,
    /// Where this page starts in the order, and the most it holds (the
    /// `limit` asked for, at most [`MAX_LIMIT`]).
    pub offset: usize,
    pub limit: usize,
    pub processes: Vec<Process>,
}

/// The order of a document's processes (the `sort` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Live and late ones first, then most checked-out connections first,
    /// then by token: who holds the connections.
    #[default]
    CheckedOut,
    /// Client tokens by pid, then other tokens, then a relay: the same
    /// order from one request to the next, for walking the pages.
    Token,
}

impl Sort {
    fn name(self) -> &'static str {
        match self {
            Sort::CheckedOut => "checked_out",
            Sort::Token => "token",
        }
    }
}

/// One process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// The process token as sent (`"<pid>:<6 hex>"` from the real client);
    /// `null` for a relay.
    pub token: Option<String>,
    /// The pid of a token of the client's form, else `null`.
    pub pid: Option<u32>,
    pub state: ProcessState,
    /// For a host/program relayed by sqlalchemy-collectd's server plugin:
    /// the processes the relaying server sums (its gauges and totals are
    /// those sums); `null` for a process.
    pub relayed_processes: Option<u64>,
    // The process's last pool report (a dead one's: what it last had);
    // `null` before its first.
    #[serde(with = "super::opt_gauge")]
    pub pools: Option<f64>,
    #[serde(with = "super::opt_gauge")]
    pub connections: Option<f64>,
    #[serde(with = "super::opt_gauge")]
    pub checked_out: Option<f64>,
    #[serde(with = "super::opt_gauge")]
    pub checked_in: Option<f64>,
    #[serde(with = "super::opt_gauge")]
    pub detached: Option<f64>,
    // Its totals as the client last sent them (cumulative since the process
    // started, a forked worker's including its parent's at the fork); `null`
    // before its first.
    pub checkouts: Option<u64>,
    pub invalidations: Option<u64>,
    pub connects: Option<u64>,
    pub disconnects: Option<u64>,
    /// `null` until it sends `sqlalchemy_transactions`.
    pub transactions: Option<Transactions>,
    /// Receive time of its last accepted report, Unix seconds (exporter's
    /// clock), milliseconds precision.
    pub last_report_unix: f64,
    /// `server_time_unix - last_report_unix`, milliseconds precision, ≥ 0.
    pub age_seconds: f64,
    /// The program's report interval, seconds.
    pub interval_seconds: f64,
    /// `age_seconds > late_after_intervals × interval_seconds`.
    pub late: bool,
    /// Its client's clock minus the exporter's at its last accepted report,
    /// seconds, milliseconds precision; `null` when the reports carry no
    /// timestamp.
    pub clock_offset_seconds: Option<f64>,
}

/// The body of a 400 or 404.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub host: String,
    pub program: String,
    pub sort: Sort,
    pub offset: usize,
    pub limit: usize,
}

/// Why a query is refused (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `host` or `program` is not given.
    #[error("the {0} parameter is required (/api/v1/processes?host=HOST&program=PROGRAM)")]
    Missing(&'static str),
    /// `offset` or `limit` is not a non-negative integer.
    #[error("{name}={value:?} is not a non-negative integer")]
    NotANumber { name: &'static str, value: String },
    /// `sort` is neither `checked_out` nor `token`.
    #[error("sort={0:?}: use checked_out or token")]
    Sort(String),
    /// The query string does not decode (axum's reason).
    #[error("bad query string: {0}")]
    Malformed(String),
}

impl Query {
    /// From the decoded query string; other parameters are ignored.
    pub fn parse(params: &HashMap<String, String>) -> Result<Query, QueryError> {
        let text = |name: &'static str| {
            params
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or(QueryError::Missing(name))
        };
        let number = |name: &'static str, default: usize| match params.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| QueryError::NotANumber {
                name,
                value: v.clone(),
            }),
        };
        let sort = match params.get("sort").map(String::as_str) {
            None | Some("checked_out") => Sort::CheckedOut,
            Some("token") => Sort::Token,
            Some(other) => return Err(QueryError::Sort(other.to_owned())),
        };
        Ok(Query {
            host: text("host")?,
            program: text("program")?,
            sort,
            offset: number("offset", 0)?,
            limit: number("limit", DEFAULT_LIMIT)?.min(MAX_LIMIT),
        })
    }

    /// This query's address under `base` (`http://host:9827`), encoded.
    pub fn url(&self, base: &str) -> String {
        format!(
            "{base}{PATH}?host={}&program={}&sort={}&offset={}&limit={}",
            encode(&self.host),
            encode(&self.program),
            self.sort.name(),
            self.offset,
            self.limit
        )
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The 404 body for a host/program the exporter does not track.
pub fn unknown(query: &Query) -> ApiError {
    ApiError {
        error: format!(
            "no host {:?} with program {:?}: never seen, or forgotten after --forget-after",
            query.host, query.program
        ),
    }
}

impl Sort {
    /// The store's order of the same name.
    pub fn order(self) -> ProcessOrder {
        match self {
            Sort::CheckedOut => ProcessOrder::CheckedOut,
            Sort::Token => ProcessOrder::Token,
        }
    }
}

/// The document of the page `list` holds (the one `query` asked for) at
/// `now_unix` (the exporter's clock, the moment `list` was taken at).
pub fn document(list: &ProcessList, query: &Query, exporter: Exporter, now_unix: f64) -> Processes {
    let interval = list.interval_seconds;
    Processes {
        exporter,
        server_time_unix: now_unix,
        late_after_intervals: LATE_AFTER_INTERVALS,
        host: list.host.to_string(),
        program: list.program.to_string(),
        sort: query.sort,
        total: list.total,
        live: list.live,
        offset: query.offset,
        limit: query.limit,
        processes: list
            .processes
            .iter()
            .map(|p| process(p, interval, now_unix))
            .collect(),
    }
}

fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn process(p: &ProcessSnapshot, interval: f64, now_unix: f64) -> Process {
    let age = millis(p.age.as_secs_f64());
    let last = millis(now_unix - p.age.as_secs_f64());
    let late = interval > 0.0 && age > LATE_AFTER_INTERVALS * interval;
    let state = if !p.live {
        ProcessState::Dead
    } else if late {
        ProcessState::Late
    } else {
        ProcessState::Live
    };
    let received = now_unix - p.age.as_secs_f64();
    let total = |i: usize| p.totals.map(|t| t[i]);
    Process {
        token: p.token.text(),
        pid: p.token.pid(),
        state,
        relayed_processes: p.relayed_processes,
        pools: p.pool.map(|g| g.numpools),
        connections: p.pool.map(|g| g.connections),
        checked_out: p.pool.map(|g| g.checkedout),
        checked_in: p.pool.map(|g| g.checkedin),
        detached: p.pool.map(|g| g.detached),
        checkouts: total(0),
        invalidations: total(1),
        connects: total(2),
        disconnects: total(3),
        transactions: p
            .transactions
            .map(|[commits, rollbacks, transactions]| Transactions {
                commits,
                rollbacks,
                transactions,
            }),
        last_report_unix: last,
        age_seconds: age,
        interval_seconds: interval,
        late,
        clock_offset_seconds: p.client_time_unix.map(|t| millis(t - received)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Pool;
    use crate::store::sqlalchemy::processes::Token;
    use std::time::Duration;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn exporter() -> Exporter {
        Exporter {
            version: "1.2.3".into(),
            revision: "abc".into(),
        }
    }

    fn snapshot(pid: u32, out: f64, age_ms: u64, live: bool) -> ProcessSnapshot {
        ProcessSnapshot {
            token: Token::Client {
                pid,
                suffix: 0xabcdef,
            },
            live,
            age: Duration::from_millis(age_ms),
            pool: Some(Pool {
                numpools: 1.0,
                checkedout: out,
                checkedin: 1.0,
                detached: 0.0,
                connections: out + 1.0,
            }),
            totals: Some([10, 0, 2, 0]),
            transactions: None,
            relayed_processes: None,
            client_time_unix: Some(999.0),
        }
    }

    /// A page as the store hands it on: ordered, with the counts of all.
    fn list(processes: Vec<ProcessSnapshot>, total: usize, live: usize) -> ProcessList {
        ProcessList {
            host: "web1".into(),
            program: "api".into(),
            interval_seconds: 2.0,
            total,
            live,
            processes,
        }
    }

    #[test]
    fn document_is_exact_json() {
        let q = Query::parse(&params(&[("host", "web1"), ("program", "api")])).unwrap();
        let mut relay = snapshot(0, 4.0, 250, true);
        relay.token = Token::Relay;
        relay.relayed_processes = Some(3);
        relay.totals = None;
        relay.client_time_unix = None;
        let doc = document(
            &list(vec![relay, snapshot(42, 2.0, 750, true)], 2, 2),
            &q,
            exporter(),
            1000.5,
        );
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"exporter":{"version":"1.2.3","revision":"abc"},"server_time_unix":1000.5,"late_after_intervals":1.5,"host":"web1","program":"api","sort":"checked_out","total":2,"live":2,"offset":0,"limit":1000,"processes":[{"token":null,"pid":null,"state":"live","relayed_processes":3,"pools":1,"connections":5,"checked_out":4,"checked_in":1,"detached":0,"checkouts":null,"invalidations":null,"connects":null,"disconnects":null,"transactions":null,"last_report_unix":1000.25,"age_seconds":0.25,"interval_seconds":2.0,"late":false,"clock_offset_seconds":null},{"token":"42:abcdef","pid":42,"state":"live","relayed_processes":null,"pools":1,"connections":3,"checked_out":2,"checked_in":1,"detached":0,"checkouts":10,"invalidations":0,"connects":2,"disconnects":0,"transactions":null,"last_report_unix":999.75,"age_seconds":0.75,"interval_seconds":2.0,"late":false,"clock_offset_seconds":-0.75}]}"#
        );
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<Processes>(&text).unwrap(), doc);
    }

    #[test]
    fn states_follow_the_pools_rules_and_the_page_says_what_it_is_of() {
        let q = Query::parse(&params(&[
            ("host", "web1"),
            ("program", "api"),
            ("limit", "3"),
            ("offset", "1"),
            ("sort", "token"),
        ]))
        .unwrap();
        let doc = document(
            &list(
                vec![
                    snapshot(1, 1.0, 3000, true),
                    snapshot(2, 5.0, 3001, true),
                    snapshot(3, 9.0, 9000, false),
                ],
                7,
                5,
            ),
            &q,
            exporter(),
            1000.0,
        );
        let got: Vec<_> = doc
            .processes
            .iter()
            .map(|p| (p.pid, p.state, p.late))
            .collect();
        // Late after 1.5 intervals of 2 s; dead when the store says so.
        assert_eq!(
            got,
            [
                (Some(1), ProcessState::Live, false),
                (Some(2), ProcessState::Late, true),
                (Some(3), ProcessState::Dead, true),
            ]
        );
        assert_eq!(
            (doc.sort, doc.total, doc.live, doc.offset, doc.limit),
            (Sort::Token, 7, 5, 1, 3)
        );
    }

    #[test]
    fn queries_need_host_and_program_and_cap_the_limit() {
        let parse = |pairs: &[(&str, &str)]| Query::parse(&params(pairs));
        assert_eq!(
            parse(&[("program", "api")]),
            Err(QueryError::Missing("host"))
        );
        assert_eq!(
            parse(&[("host", "web1"), ("program", "")]),
            Err(QueryError::Missing("program"))
        );
        assert_eq!(
            parse(&[("host", "h"), ("program", "p"), ("limit", "-1")]),
            Err(QueryError::NotANumber {
                name: "limit",
                value: "-1".into()
            })
        );
        assert_eq!(
            parse(&[("host", "h"), ("program", "p"), ("sort", "pid")]),
            Err(QueryError::Sort("pid".into()))
        );
        let q = parse(&[
            ("host", "h"),
            ("program", "p"),
            ("limit", "99999"),
            ("sort", "token"),
        ])
        .unwrap();
        assert_eq!((q.limit, q.offset, q.sort), (MAX_LIMIT, 0, Sort::Token));
        assert_eq!(
            QueryError::Missing("host").to_string(),
            "the host parameter is required (/api/v1/processes?host=HOST&program=PROGRAM)"
        );
    }

    #[test]
    fn the_url_encodes_host_and_program() {
        let q = Query {
            host: "web 1".into(),
            program: "a&b/c=é".into(),
            sort: Sort::CheckedOut,
            offset: 0,
            limit: 1000,
        };
        assert_eq!(
            q.url("http://x:9827"),
            "http://x:9827/api/v1/processes?host=web%201&program=a%26b%2Fc%3D%C3%A9&sort=checked_out&offset=0&limit=1000"
        );
    }
}
