//! The document of `GET /api/v1/pools`: the SQLAlchemy part of a scrape as
//! one JSON document, for `sqlalchemy-collectd-exporter top` and for scripts
//! (`curl … | jq`). The handler is `crate::http::api`.
//!
//! Takes the same per-program snapshot as `/metrics` (sorted by host and
//! program, capacities applied) and the server's wall clock; hands on a
//! [`Pools`] document whose schema the README describes. The types derive
//! both `Serialize` and `Deserialize`, so the `top` client reads exactly what
//! this module writes; `top` depends on nothing else of the server.

pub mod processes;
pub mod status;

use crate::store::sqlalchemy::{ProgramHistory, ProgramSnapshot};
use serde::{Deserialize, Serialize};

/// Where the document is served.
pub const PATH: &str = "/api/v1/pools";

/// A host/program is late when its newest report is older than this many of
/// its report intervals: 1.5 lets a report arrive anywhere in its period
/// (the real client sends every 2.0–2.2 s) and flags the first missed one.
pub const LATE_AFTER_INTERVALS: f64 = 1.5;

/// The whole document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pools {
    pub exporter: Exporter,
    /// The exporter's wall clock when the document was built, Unix seconds.
    pub server_time_unix: f64,
    /// [`LATE_AFTER_INTERVALS`], so clients need not hard-code the rule.
    pub late_after_intervals: f64,
    /// One entry per host/program, sorted by host, then program.
    pub programs: Vec<Program>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exporter {
    pub version: String,
    pub revision: String,
}

/// `live`: processes report on time; `late`: processes are live but the
/// newest report is older than [`LATE_AFTER_INTERVALS`] intervals; `dead`: no
/// live process (the program is kept until `--forget-after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramState {
    Live,
    Late,
    Dead,
}

/// One host/program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub host: String,
    pub program: String,
    pub state: ProgramState,
    /// Live processes.
    pub processes: u64,
    // Gauges, summed over the live processes. Integral values are written as
    // JSON integers (what the real client sends); others as decimals.
    #[serde(with = "gauge")]
    pub pools: f64,
    #[serde(with = "gauge")]
    pub connections: f64,
    #[serde(with = "gauge")]
    pub checked_out: f64,
    #[serde(with = "gauge")]
    pub checked_in: f64,
    #[serde(with = "gauge")]
    pub detached: f64,
    /// The most `connections` and `checked_out` reached within the peak
    /// window (`--peak-window`): never below the current values.
    #[serde(with = "gauge")]
    pub connections_peak: f64,
    #[serde(with = "gauge")]
    pub checked_out_peak: f64,
    // Counters since the exporter started (the `*_total` series).
    pub checkouts: u64,
    pub invalidations: u64,
    pub connects: u64,
    pub disconnects: u64,
    /// `null` until a client sends `sqlalchemy_transactions`.
    pub transactions: Option<Transactions>,
    /// Receive time of the newest report, Unix seconds (exporter's clock).
    pub last_report_unix: f64,
    /// `server_time_unix - last_report_unix`, milliseconds precision, ≥ 0.
    pub age_seconds: f64,
    /// Report interval the clients announce, seconds.
    pub interval_seconds: f64,
    /// `age_seconds > late_after_intervals × interval_seconds`.
    pub late: bool,
    /// (pool_size + max_overflow) × pools where `--config.file` sets a
    /// capacity for this host/program, else `null`.
    #[serde(with = "opt_gauge")]
    pub connections_max: Option<f64>,
    /// `checked_out / connections_max` (0–1, may exceed 1), `null` without a
    /// capacity or when it is 0.
    pub usage: Option<f64>,
    /// Only with `?history=1` (the live page): the last minutes, step by
    /// step; absent otherwise, so the document is unchanged without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
}

/// A host/program's recent past (`store::sqlalchemy::history`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The span of one sample, seconds.
    pub step_seconds: f64,
    /// The most checked-out connections in each step, oldest first; the
    /// last is the current step's (still filling). Fewer than the full
    /// length while the host/program is younger than it.
    #[serde(with = "gauges")]
    pub checked_out: Vec<f64>,
}

/// Adds each program's history to `doc` (both sorted by host and program;
/// a program without one, made since the document's snapshot, gets none).
pub fn add_history(doc: &mut Pools, histories: &[ProgramHistory], step_seconds: f64) {
    let mut rest = histories.iter().peekable();
    for p in &mut doc.programs {
        let key = (p.host.as_str(), p.program.as_str());
        while rest.peek().is_some_and(|h| (&*h.host, &*h.program) < key) {
            rest.next();
        }
        if let Some(h) = rest.peek()
            && (&*h.host, &*h.program) == key
        {
            p.history = Some(History {
                step_seconds,
                checked_out: h.checked_out.iter().map(|v| f64::from(*v)).collect(),
            });
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transactions {
    pub commits: u64,
    pub rollbacks: u64,
    pub transactions: u64,
}

/// Builds the document from a scrape's programs at `now_unix` (the
/// exporter's clock).
pub fn document(programs: &[ProgramSnapshot], exporter: Exporter, now_unix: f64) -> Pools {
    Pools {
        exporter,
        server_time_unix: now_unix,
        late_after_intervals: LATE_AFTER_INTERVALS,
        programs: programs.iter().map(|p| program(p, now_unix)).collect(),
    }
}

fn program(p: &ProgramSnapshot, now_unix: f64) -> Program {
    let age = ((now_unix - p.last_report_unix).max(0.0) * 1000.0).round() / 1000.0;
    let late = p.interval_seconds > 0.0 && age > LATE_AFTER_INTERVALS * p.interval_seconds;
    let state = if p.processes == 0 {
        ProgramState::Dead
    } else if late {
        ProgramState::Late
    } else {
        ProgramState::Live
    };
    let [checkouts, invalidations, connects, disconnects] = p.totals;
    Program {
        host: p.host.to_string(),
        program: p.program.to_string(),
        state,
        processes: p.processes,
        pools: p.pool.numpools,
        connections: p.pool.connections,
        checked_out: p.pool.checkedout,
        checked_in: p.pool.checkedin,
        detached: p.pool.detached,
        connections_peak: p.connections_peak,
        checked_out_peak: p.checked_out_peak,
        checkouts,
        invalidations,
        connects,
        disconnects,
        transactions: p
            .transactions
            .map(|[commits, rollbacks, transactions]| Transactions {
                commits,
                rollbacks,
                transactions,
            }),
        last_report_unix: p.last_report_unix,
        age_seconds: age,
        interval_seconds: p.interval_seconds,
        late,
        connections_max: p.connections_max,
        usage: p
            .connections_max
            .filter(|max| *max > 0.0)
            .map(|max| p.pool.checkedout / max),
        history: None,
    }
}

/// A gauge as a JSON integer when it is one, so `"connections": 3` rather
/// than `3.0`; non-finite values (which the store refuses anyway) as `null`.
mod gauge {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Largest integer an f64 holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.fract() == 0.0 && v.abs() <= EXACT {
            s.serialize_i64(*v as i64)
        } else {
            s.serialize_f64(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

mod gauges {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    struct One<'a>(&'a f64);

    impl serde::Serialize for One<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::gauge::serialize(self.0, s)
        }
    }

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&One(x))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    }
}

mod opt_gauge {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::gauge::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Pool;

    fn document(programs: &[ProgramSnapshot], now_unix: f64) -> Pools {
        let exporter = Exporter {
            version: "1.2.3".into(),
            revision: "abc".into(),
        };
        super::document(programs, exporter, now_unix)
    }

    fn snapshot(host: &str, program: &str, processes: u64, last: f64) -> ProgramSnapshot {
        ProgramSnapshot {
            host: host.into(),
            program: program.into(),
            processes,
            pool: Pool {
                numpools: 2.0,
                checkedout: 3.0,
                checkedin: 1.0,
                detached: 0.0,
                connections: 4.0,
            },
            totals: [10, 1, 5, 1],
            transactions: None,
            last_report_unix: last,
            interval_seconds: 2.0,
            connections_max: None,
            clock_offset_seconds: None,
            clock_steps: 0,
            checked_out_peak: 0.0,
            connections_peak: 0.0,
        }
    }

    fn scrape(programs: Vec<ProgramSnapshot>) -> Vec<ProgramSnapshot> {
        programs
    }

    #[test]
    fn document_is_exact_json() {
        let mut capped = snapshot("web1", "api", 2, 999.5);
        capped.connections_max = Some(30.0);
        capped.transactions = Some([7, 1, 8]);
        (capped.connections_peak, capped.checked_out_peak) = (6.0, 4.5);
        let doc = document(&scrape(vec![capped]), 1000.25);
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"exporter":{"version":"1.2.3","revision":"abc"},"server_time_unix":1000.25,"late_after_intervals":1.5,"programs":[{"host":"web1","program":"api","state":"live","processes":2,"pools":2,"connections":4,"checked_out":3,"checked_in":1,"detached":0,"connections_peak":6,"checked_out_peak":4.5,"checkouts":10,"invalidations":1,"connects":5,"disconnects":1,"transactions":{"commits":7,"rollbacks":1,"transactions":8},"last_report_unix":999.5,"age_seconds":0.75,"interval_seconds":2.0,"late":false,"connections_max":30,"usage":0.1}]}"#
        );
    }

    #[test]
    fn late_after_one_and_a_half_intervals_and_dead_without_processes() {
        let doc = document(
            &scrape(vec![
                snapshot("h", "on_time", 1, 997.0),
                snapshot("h", "late", 1, 996.999),
                snapshot("h", "dead", 0, 900.0),
            ]),
            1000.0,
        );
        let states: Vec<_> = doc
            .programs
            .iter()
            .map(|p| (p.program.as_str(), p.state, p.late, p.age_seconds))
            .collect();
        assert_eq!(
            states,
            [
                ("on_time", ProgramState::Live, false, 3.0),
                ("late", ProgramState::Late, true, 3.001),
                ("dead", ProgramState::Dead, true, 100.0),
            ]
        );
    }

    #[test]
    fn no_usage_without_a_capacity_or_with_a_zero_one() {
        let mut zero = snapshot("h", "zero", 1, 1.0);
        zero.connections_max = Some(0.0);
        let doc = document(&scrape(vec![snapshot("h", "none", 1, 1.0), zero]), 1.0);
        let usage: Vec<_> = doc
            .programs
            .iter()
            .map(|p| (p.connections_max, p.usage))
            .collect();
        assert_eq!(usage, [(None, None), (Some(0.0), None)]);
    }

    #[test]
    fn history_is_added_by_host_and_program_only_where_there_is_one() {
        let mut doc = document(
            &scrape(vec![
                snapshot("a", "p", 1, 1.0),
                snapshot("b", "new", 1, 1.0),
                snapshot("b", "p", 1, 1.0),
            ]),
            2.0,
        );
        let history = |host: &str, program: &str, checked_out: Vec<f32>| ProgramHistory {
            host: host.into(),
            program: program.into(),
            checked_out,
        };
        add_history(
            &mut doc,
            &[
                history("a", "gone", vec![9.0]),
                history("a", "p", vec![1.0, 2.5]),
                history("b", "p", vec![3.0]),
            ],
            5.0,
        );
        let text = serde_json::to_value(&doc).unwrap();
        let histories: Vec<_> = text["programs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.get("history").map(|h| h.to_string()))
            .collect();
        assert_eq!(
            histories,
            [
                Some(r#"{"checked_out":[1,2.5],"step_seconds":5.0}"#.to_owned()),
                None,
                Some(r#"{"checked_out":[3],"step_seconds":5.0}"#.to_owned()),
            ]
        );
        let back: Pools = serde_json::from_value(text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn document_round_trips() {
        let doc = document(&scrape(vec![snapshot("h", "p", 1, 1.0)]), 2.0);
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<Pools>(&text).unwrap(), doc);
    }
}
