//! Value list → [`Record`]: recognises the sqlalchemy-collectd client's types
//! and checks their shape, so the stores only ever see well-formed numbers.
//! Everything that is not SQLAlchemy's is handed on as [`Record::Generic`].

use crate::collectd::{CdTime, ClientReport, Str, Value, ValueList, ValuesRef};

/// The plugin name the client writes.
pub const PLUGIN: &str = "sqlalchemy";
pub const TYPE_POOL: &str = "sqlalchemy_pool";
pub const TYPE_TOTALS: &str = "sqlalchemy_totals";
pub const TYPE_TRANSACTIONS: &str = "sqlalchemy_transactions";
/// The types sqlalchemy-collectd's collectd server plugin forwards: one value
/// per stat, named by the type instance, already summed per host/program.
pub const TYPE_RELAY_COUNT: &str = "count";
pub const TYPE_RELAY_DERIVE: &str = "derive";
/// The server plugin's per-host aggregate, which PromQL sums instead.
pub const RELAY_HOST_AGGREGATE: &str = "host";
/// The process token under which a relayed host/program is kept. collectd
/// strings end at their first NUL, so no sender can send this token.
pub const RELAY_TOKEN: &str = "\0relay";

/// One process of one program on one host. The client sends the same process
/// token for every program name a process uses, so the token alone is not a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub host: Str,
    pub program: Str,
    pub token: Str,
}

/// `sqlalchemy_pool`: the client's five gauges, in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pool {
    pub numpools: f64,
    pub checkedout: f64,
    pub checkedin: f64,
    pub detached: f64,
    pub connections: f64,
}

impl Pool {
    pub fn add(&mut self, other: &Pool) {
        self.numpools += other.numpools;
        self.checkedout += other.checkedout;
        self.checkedin += other.checkedin;
        self.detached += other.detached;
        self.connections += other.connections;
    }
}

/// Cumulative counts since the process started, in wire order:
/// `sqlalchemy_totals` (checkouts, invalidated, connects, disconnects) or
/// `sqlalchemy_transactions` (commits, rollbacks, transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cumulative {
    Totals([u64; 4]),
    Transactions([u64; 3]),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    Pool(Pool),
    Cumulative(Cumulative),
    /// One stat of a program as sqlalchemy-collectd's server plugin forwards it.
    Relay(RelayStat),
}

/// A relayed stat: the sum over the relaying server's live processes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RelayStat {
    /// `count`: numpools, checkedout, checkedin, detached, connections (the
    /// index into [`Pool`]'s fields, in wire order), or numprocs (5).
    Gauge { index: usize, value: f64 },
    /// `derive`: checkouts, invalidated, connects, disconnects (index as in
    /// `Cumulative::Totals`).
    Counter { index: usize, value: u64 },
}

impl RelayStat {
    pub const GAUGES: [&'static str; 6] = [
        "numpools",
        "checkedout",
        "checkedin",
        "detached",
        "connections",
        "numprocs",
    ];
    pub const COUNTERS: [&'static str; 4] = ["checkouts", "invalidated", "connects", "disconnects"];
}

/// A SQLAlchemy value list, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlaRecord {
    pub key: ProcessKey,
    /// The sender's time (used only to order one process's reports).
    pub time: CdTime,
    /// The sender's interval; zero when it sent none.
    pub interval: CdTime,
    pub sample: Sample,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Sqla(SqlaRecord),
    Generic(ValueList),
}

/// Why a value list was not accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// Plugin `sqlalchemy` with a type the client does not send.
    #[error("plugin sqlalchemy has no type {type_:?}")]
    UnknownType { type_: String },
    /// A known type with the wrong number of values.
    #[error("{type_} needs {expected} values, got {got}")]
    ValueCount {
        type_: &'static str,
        expected: usize,
        got: usize,
    },
    /// A value of a type the client never uses for this data source.
    #[error("{type_} value {index} is a {got}, expected {expected}")]
    ValueType {
        type_: &'static str,
        index: usize,
        expected: &'static str,
        got: &'static str,
    },
    /// The relaying server plugin's per-host sum: PromQL sums per host itself.
    #[error("per-host aggregate of the sqlalchemy-collectd server plugin")]
    HostAggregate,
    /// A value list without a plugin or a type, which cannot be named.
    #[error("value list without a plugin or a type")]
    NoPluginOrType,
    /// A NaN or infinite pool gauge, or a negative count.
    #[error("{type_} value {index} is out of range ({value})")]
    OutOfRange {
        type_: &'static str,
        index: usize,
        value: String,
    },
}

pub fn route(vl: ValueList) -> Result<Record, RouteError> {
    if vl.id.plugin.as_str() != PLUGIN {
        if vl.id.plugin.is_empty() || vl.id.type_.is_empty() {
            return Err(RouteError::NoPluginOrType);
        }
        return Ok(Record::Generic(vl));
    }
    let sample = match vl.id.type_.as_str() {
        TYPE_RELAY_COUNT | TYPE_RELAY_DERIVE => return relay(vl),
        type_ => match client_sample(type_, vl.values.as_ref()) {
            Some(sample) => sample?,
            None => {
                return Err(RouteError::UnknownType {
                    type_: type_.to_owned(),
                });
            }
        },
    };
    Ok(Record::Sqla(SqlaRecord {
        key: ProcessKey {
            host: vl.id.host,
            program: vl.id.plugin_instance,
            token: vl.id.type_instance,
        },
        time: vl.time,
        interval: vl.interval,
        sample,
    }))
}

/// The sample of one of the client's own types; `None` for any other type.
fn client_sample(type_: &str, values: ValuesRef<'_>) -> Option<Result<Sample, RouteError>> {
    Some(match type_ {
        TYPE_POOL => pool(values).map(Sample::Pool),
        TYPE_TOTALS => {
            counts(values, TYPE_TOTALS).map(|c| Sample::Cumulative(Cumulative::Totals(c)))
        }
        TYPE_TRANSACTIONS => counts(values, TYPE_TRANSACTIONS)
            .map(|c| Sample::Cumulative(Cumulative::Transactions(c))),
        _ => return None,
    })
}

/// [`route`] for a report from the decoder's fast path, when it is one of
/// the client's own types: the same checks and the same sample as `route`
/// gives for the equal value list. `None` for anything else (other plugins,
/// the relay form), which takes the general path.
pub fn route_client(report: &ClientReport<'_>) -> Option<Result<Sample, RouteError>> {
    if report.plugin != PLUGIN {
        return None;
    }
    client_sample(report.type_, report.values)
}

/// The server plugin's forwarded form: plugin `sqlalchemy`, type `count` or
/// `derive`, type instance the stat, plugin instance the program.
fn relay(vl: ValueList) -> Result<Record, RouteError> {
    if vl.id.plugin_instance.as_str() == RELAY_HOST_AGGREGATE {
        return Err(RouteError::HostAggregate);
    }
    let stat = vl.id.type_instance.as_str();
    let unknown = || RouteError::UnknownType {
        type_: format!("{}-{stat}", vl.id.type_.as_str()),
    };
    let stat = if vl.id.type_.as_str() == TYPE_RELAY_COUNT {
        let index = RelayStat::GAUGES
            .iter()
            .position(|s| *s == stat)
            .ok_or_else(unknown)?;
        let [value] = numbers(vl.values.as_ref(), TYPE_RELAY_COUNT, |i, v| match v {
            Value::Gauge(g) if g.is_finite() => Ok(g),
            other => Err(RouteError::OutOfRange {
                type_: TYPE_RELAY_COUNT,
                index: i,
                value: format!("{other:?}"),
            }),
        })?;
        RelayStat::Gauge { index, value }
    } else {
        let index = RelayStat::COUNTERS
            .iter()
            .position(|s| *s == stat)
            .ok_or_else(unknown)?;
        let [value] = counts(vl.values.as_ref(), TYPE_RELAY_DERIVE)?;
        RelayStat::Counter { index, value }
    };
    Ok(Record::Sqla(SqlaRecord {
        key: ProcessKey {
            host: vl.id.host,
            program: vl.id.plugin_instance,
            token: Str::from_static(RELAY_TOKEN),
        },
        time: vl.time,
        interval: vl.interval,
        sample: Sample::Relay(stat),
    }))
}

fn pool(values: ValuesRef<'_>) -> Result<Pool, RouteError> {
    let v: [f64; 5] = numbers(values, TYPE_POOL, |index, value| match value {
        Value::Gauge(g) if g.is_finite() => Ok(g),
        Value::Gauge(g) => Err(RouteError::OutOfRange {
            type_: TYPE_POOL,
            index,
            value: g.to_string(),
        }),
        other => Err(RouteError::ValueType {
            type_: TYPE_POOL,
            index,
            expected: "gauge",
            got: other.type_name(),
        }),
    })?;
    Ok(Pool {
        numpools: v[0],
        checkedout: v[1],
        checkedin: v[2],
        detached: v[3],
        connections: v[4],
    })
}

fn counts<const N: usize>(
    values: ValuesRef<'_>,
    type_: &'static str,
) -> Result<[u64; N], RouteError> {
    numbers(values, type_, |index, value| match value {
        Value::Counter(n) | Value::Absolute(n) => Ok(n),
        Value::Derive(d) => u64::try_from(d).map_err(|_| RouteError::OutOfRange {
            type_,
            index,
            value: d.to_string(),
        }),
        Value::Gauge(_) => Err(RouteError::ValueType {
            type_,
            index,
            expected: "derive",
            got: "gauge",
        }),
    })
}

fn numbers<T: Copy + Default, const N: usize>(
    values: ValuesRef<'_>,
    type_: &'static str,
    convert: impl Fn(usize, Value) -> Result<T, RouteError>,
) -> Result<[T; N], RouteError> {
    if values.len() != N {
        return Err(RouteError::ValueCount {
            type_,
            expected: N,
            got: values.len(),
        });
    }
    let mut out = [T::default(); N];
    for (index, value) in values.iter().enumerate() {
        out[index] = convert(index, value)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::{Encoder, Identity, decode};

    fn vl(type_: &str, values: &[Value]) -> ValueList {
        let id = Identity {
            host: "h".into(),
            plugin: PLUGIN.into(),
            plugin_instance: "app".into(),
            type_: type_.into(),
            type_instance: "1:abcdef".into(),
        };
        let raw = Encoder::new()
            .client_value_list(&id, 10, 2, values)
            .finish();
        decode(&raw).expect("decodes").value_lists.remove(0)
    }

    #[test]
    fn pool_gauges_map_in_wire_order() {
        let g = |x| Value::Gauge(x);
        let r = route(vl(TYPE_POOL, &[g(1.0), g(2.0), g(3.0), g(4.0), g(5.0)])).expect("routes");
        let Record::Sqla(SqlaRecord {
            key,
            sample: Sample::Pool(p),
            ..
        }) = r
        else {
            panic!("pool record expected, got {r:?}")
        };
        assert_eq!(key.program.as_str(), "app");
        assert_eq!(key.token.as_str(), "1:abcdef");
        assert_eq!(
            p,
            Pool {
                numpools: 1.0,
                checkedout: 2.0,
                checkedin: 3.0,
                detached: 4.0,
                connections: 5.0
            }
        );
    }

    #[test]
    fn totals_with_four_values_are_required() {
        let e = route(vl(TYPE_TOTALS, &[Value::Derive(1); 3])).expect_err("rejected");
        assert!(
            matches!(
                e,
                RouteError::ValueCount {
                    expected: 4,
                    got: 3,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn nan_pool_gauge_is_an_invalid_value() {
        let e = route(vl(TYPE_POOL, &[Value::Gauge(f64::NAN); 5])).expect_err("rejected");
        assert!(matches!(e, RouteError::OutOfRange { .. }), "{e:?}");
    }

    #[test]
    fn negative_derive_is_an_invalid_value() {
        let e = route(vl(TYPE_TOTALS, &[Value::Derive(-1); 4])).expect_err("rejected");
        assert!(matches!(e, RouteError::OutOfRange { .. }), "{e:?}");
    }

    #[test]
    fn unknown_sqlalchemy_type_is_rejected() {
        let e = route(vl("sqlalchemy_bogus", &[Value::Derive(1)])).expect_err("rejected");
        assert!(matches!(e, RouteError::UnknownType { .. }), "{e:?}");
    }

    #[test]
    fn generic_value_list_needs_plugin_and_type() {
        let mut v = vl(TYPE_POOL, &[Value::Gauge(1.0)]);
        v.id.plugin = "load".into();
        v.id.type_ = "".into();
        assert_eq!(route(v), Err(RouteError::NoPluginOrType));
    }

    #[test]
    fn relayed_stats_map_to_their_fields() {
        let mut v = vl(TYPE_RELAY_COUNT, &[Value::Gauge(4.0)]);
        v.id.type_instance = "connections".into();
        let Ok(Record::Sqla(r)) = route(v) else {
            panic!("relay record expected")
        };
        assert_eq!(
            r.sample,
            Sample::Relay(RelayStat::Gauge {
                index: 4,
                value: 4.0
            })
        );
        assert_eq!(r.key.token.as_str(), RELAY_TOKEN);
        let mut v = vl(TYPE_RELAY_DERIVE, &[Value::Derive(9)]);
        v.id.type_instance = "invalidated".into();
        let Ok(Record::Sqla(r)) = route(v) else {
            panic!("relay record expected")
        };
        assert_eq!(
            r.sample,
            Sample::Relay(RelayStat::Counter { index: 1, value: 9 })
        );
    }

    #[test]
    fn relayed_host_aggregate_is_ignored() {
        let mut v = vl(TYPE_RELAY_COUNT, &[Value::Gauge(4.0)]);
        v.id.plugin_instance = RELAY_HOST_AGGREGATE.into();
        v.id.type_instance = "connections".into();
        assert_eq!(route(v), Err(RouteError::HostAggregate));
    }

    #[test]
    fn other_plugins_are_generic() {
        let mut v = vl(TYPE_POOL, &[Value::Gauge(1.0)]);
        v.id.plugin = "load".into();
        assert!(matches!(route(v), Ok(Record::Generic(_))));
    }
}
