//! The configuration file (`--config.file`, YAML): pool capacities and
//! databases, which turn the client's numbers into usage ratios.
//!
//! ```yaml
//! pools:                        # the first entry that matches a host/program wins
//!   - programs: ["api", "worker-*"]
//!     hosts: ["web*"]           # optional; any host by default
//!     pool_size: 5
//!     max_overflow: 10          # -1: unlimited (no capacity exported)
//! databases:
//!   - name: main
//!     max_connections: 100
//!     programs: ["api", "worker-*"]
//!     hosts: ["*"]              # optional
//! ```
//!
//! Takes a scrape's per-program snapshot and hands on
//! `sqlalchemy_connections_max` per host/program and the connections and
//! `max_connections` per database. Unknown keys and bad values are errors that
//! name the file, line and key.

use crate::store::sqlalchemy::ProgramSnapshot;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Deserializer};
use std::path::Path;

/// Which key a list of globs sits under, for error messages (serde reports
/// the position of the enclosing entry, not of the key).
trait Key {
    const NAME: &'static str;
}

#[derive(Clone, Debug)]
struct ProgramsKey;
impl Key for ProgramsKey {
    const NAME: &'static str = "programs";
}

#[derive(Clone, Debug)]
struct HostsKey;
impl Key for HostsKey {
    const NAME: &'static str = "hosts";
}

/// Globs on a label value; a list of at least one pattern.
#[derive(Clone, Debug)]
struct Globs<K> {
    set: GlobSet,
    key: std::marker::PhantomData<K>,
}

impl<'de, K: Key> Deserialize<'de> for Globs<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patterns = Vec::<String>::deserialize(d)?;
        let key = K::NAME;
        if patterns.is_empty() {
            return Err(serde::de::Error::custom(format!(
                "{key}: needs at least one glob"
            )));
        }
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            let glob = Glob::new(p).map_err(|e| {
                serde::de::Error::custom(format!("{key}: bad glob {p:?}: {}", e.kind()))
            })?;
            b.add(glob);
        }
        let set = b
            .build()
            .map_err(|e| serde::de::Error::custom(e.to_string()))?;
        Ok(Globs {
            set,
            key: std::marker::PhantomData,
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolRule {
    programs: Globs<ProgramsKey>,
    #[serde(default)]
    hosts: Option<Globs<HostsKey>>,
    pool_size: u32,
    #[serde(deserialize_with = "max_overflow")]
    max_overflow: Option<u32>,
}

/// SQLAlchemy's `max_overflow=-1` means no limit.
fn max_overflow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match i64::deserialize(d)? {
        -1 => Ok(None),
        n => u32::try_from(n)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{n} is not -1 or a count"))),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseRule {
    name: String,
    max_connections: u64,
    programs: Globs<ProgramsKey>,
    #[serde(default)]
    hosts: Option<Globs<HostsKey>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    pools: Vec<PoolRule>,
    #[serde(default)]
    databases: Vec<DatabaseRule>,
}

/// A validated configuration file; the default (no file) configures nothing.
#[derive(Clone, Debug, Default)]
pub struct Capacity {
    pools: Vec<PoolRule>,
    databases: Vec<DatabaseRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// serde's message names the key; the location is the line and column.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: String, message: String },
}

/// What a scrape exports from the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatabaseSnapshot {
    pub name: String,
    pub connections: f64,
    pub max_connections: u64,
}

fn matches(
    programs: &Globs<ProgramsKey>,
    hosts: &Option<Globs<HostsKey>>,
    p: &ProgramSnapshot,
) -> bool {
    programs.set.is_match(&*p.program) && hosts.as_ref().is_none_or(|h| h.set.is_match(&*p.host))
}

impl Capacity {
    pub fn load(path: &Path) -> Result<Capacity, ConfigFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Capacity::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Capacity, ConfigFileError> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let at = crate::config::yaml::locate(&e);
                ConfigFileError::Invalid {
                    path: path.to_owned(),
                    line: at.line,
                    column: at.column,
                    message: at.message,
                }
            })?
        };
        let mut names = std::collections::HashSet::new();
        for db in &file.databases {
            if db.name.is_empty() {
                return Err(ConfigFileError::Semantic {
                    path: path.to_owned(),
                    message: "databases: a database has an empty name".into(),
                });
            }
            if !names.insert(db.name.as_str()) {
                return Err(ConfigFileError::Semantic {
                    path: path.to_owned(),
                    message: format!("databases: name {:?} is used twice", db.name),
                });
            }
        }
        Ok(Capacity {
            pools: file.pools,
            databases: file.databases,
        })
    }

    pub fn pool_rules(&self) -> usize {
        self.pools.len()
    }

    pub fn database_rules(&self) -> usize {
        self.databases.len()
    }

    /// One line for logs, reloads and `check-config`.
    pub fn summary(&self) -> String {
        format!(
            "{} pool entries, {} databases",
            self.pool_rules(),
            self.database_rules()
        )
    }

    /// Connections one pool of this host/program may hold (pool_size +
    /// max_overflow), from the first matching entry; `None` when no entry
    /// matches or the matching one has no limit.
    pub fn per_pool(&self, p: &ProgramSnapshot) -> Option<u64> {
        let rule = self
            .pools
            .iter()
            .find(|r| matches(&r.programs, &r.hosts, p))?;
        Some(u64::from(rule.pool_size) + u64::from(rule.max_overflow?))
    }

    /// Fills `connections_max` of every program and sums the databases.
    pub fn apply(&self, programs: &mut [ProgramSnapshot]) -> Vec<DatabaseSnapshot> {
        for p in programs.iter_mut() {
            p.connections_max = self.per_pool(p).map(|n| n as f64 * p.pool.numpools);
        }
        self.databases
            .iter()
            .map(|db| DatabaseSnapshot {
                name: db.name.clone(),
                connections: programs
                    .iter()
                    .filter(|p| matches(&db.programs, &db.hosts, p))
                    .map(|p| p.pool.connections)
                    .sum(),
                max_connections: db.max_connections,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Pool;
    use std::sync::Arc;

    fn program(host: &str, program: &str, numpools: f64, connections: f64) -> ProgramSnapshot {
        ProgramSnapshot {
            host: Arc::from(host),
            program: Arc::from(program),
            processes: 1,
            pool: Pool {
                numpools,
                connections,
                ..Pool::default()
            },
            totals: [0; 4],
            transactions: None,
            last_report_unix: 0.0,
            interval_seconds: 0.0,
            connections_max: None,
            clock_offset_seconds: None,
            clock_steps: 0,
            checked_out_peak: 0.0,
            connections_peak: 0.0,
        }
    }

    const FILE: &str = "
pools:
  - programs: [api]
    hosts: ['web*']
    pool_size: 5
    max_overflow: 10
  - programs: ['api', 'worker-*']
    pool_size: 2
    max_overflow: 0
  - programs: [unbounded]
    pool_size: 5
    max_overflow: -1
databases:
  - name: main
    max_connections: 100
    programs: ['*']
  - name: jobs
    max_connections: 20
    programs: ['worker-*']
    hosts: ['batch1']
";

    #[test]
    fn first_matching_pool_entry_wins_and_scales_with_pools() {
        let c = Capacity::parse(FILE, "c.yml").unwrap();
        let mut ps = vec![
            program("web1", "api", 2.0, 7.0),
            program("db1", "api", 1.0, 1.0),
            program("batch1", "worker-a", 3.0, 4.0),
            program("web1", "unbounded", 1.0, 2.0),
            program("web1", "other", 1.0, 5.0),
        ];
        let dbs = c.apply(&mut ps);
        let max: Vec<Option<f64>> = ps.iter().map(|p| p.connections_max).collect();
        assert_eq!(max, vec![Some(30.0), Some(2.0), Some(6.0), None, None]);
        assert_eq!(
            dbs,
            vec![
                DatabaseSnapshot {
                    name: "main".into(),
                    connections: 19.0,
                    max_connections: 100
                },
                DatabaseSnapshot {
                    name: "jobs".into(),
                    connections: 4.0,
                    max_connections: 20
                },
            ]
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = Capacity::parse(
            "pools:\n  - programs: [api]\n    pool_size: 5\n    max_overflw: 1\n",
            "/etc/sce.yml",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("/etc/sce.yml:4:5: pools[0]: unknown field `max_overflw`"),
            "{text}"
        );
        let e = Capacity::parse(
            "pools:\n  - programs: []\n    pool_size: 5\n    max_overflow: 1\n",
            "c.yml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yml:2:5: pools[0]: programs: needs at least one glob"
        );
        let e = Capacity::parse(
            "pools:\n  - programs: [api]\n    pool_size: -5\n    max_overflow: 1\n",
            "c.yml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yml:3:16: pools[0].pool_size: invalid type: integer `-5`, expected u32"
        );
        let e = Capacity::parse(
            "databases:\n  - {name: a, max_connections: 1, programs: ['[']}\n",
            "c.yml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("programs: bad glob \"[\""), "{e}");
        let e = Capacity::parse("databases:\n  - {name: a, max_connections: 1, programs: [x]}\n  - {name: a, max_connections: 2, programs: [y]}\n", "c.yml").unwrap_err();
        assert_eq!(e.to_string(), "c.yml: databases: name \"a\" is used twice");
    }

    /// The web config's fuzz target (fuzz/fuzz_targets/web_config.rs) found
    /// its parser placing an error without a location (several documents)
    /// at 0:0; this parser did the same.
    #[test]
    fn multi_document_error_is_placed_at_the_start() {
        let e = Capacity::parse("pools: []\n---\ndatabases: []\n", "c.yml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yml:1:1: deserializing from YAML containing more than one document is not supported"
        );
    }

    #[test]
    fn empty_file_configures_nothing() {
        let c = Capacity::parse("\n", "c.yml").unwrap();
        assert_eq!((c.pool_rules(), c.database_rules()), (0, 0));
    }
}
