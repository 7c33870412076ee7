//! collectd's types.db: the data-source names of each type
//! (`if_octets  rx:DERIVE:0:U, tx:DERIVE:0:U`), used to name the values of
//! generic value lists. Only the names matter here: the value types come from
//! the wire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The system's types.db, used when no `--collectd.typesdb-file` is given.
pub const SYSTEM_TYPES_DB: &str = "/usr/share/collectd/types.db";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypesDb {
    types: HashMap<String, Vec<String>>,
}

/// A line that is not `type ds:TYPE:min:max[, ...]`.
#[derive(Debug, thiserror::Error)]
pub enum TypesDbError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
}

impl TypesDb {
    /// Loads the given files in order (later definitions win), or the
    /// system's types.db when none are given and it exists.
    pub fn load(files: &[PathBuf]) -> Result<TypesDb, TypesDbError> {
        let mut db = TypesDb::default();
        let system = [PathBuf::from(SYSTEM_TYPES_DB)];
        let files = if files.is_empty() {
            if !system[0].exists() {
                return Ok(db);
            }
            &system[..]
        } else {
            files
        };
        for f in files {
            db.read(f)?;
        }
        Ok(db)
    }

    pub fn read(&mut self, path: &Path) -> Result<(), TypesDbError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TypesDbError::Read {
            path: shown.clone(),
            source,
        })?;
        self.parse(&text, &shown)
    }

    pub fn parse(&mut self, text: &str, path: &str) -> Result<(), TypesDbError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |problem: String| TypesDbError::Line {
                path: path.to_owned(),
                line: i + 1,
                problem,
            };
            let (name, sources) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| err(format!("type {line:?} has no data sources")))?;
            let mut names = Vec::new();
            for ds in sources.split(',') {
                let ds = ds.trim();
                let mut fields = ds.split(':');
                let ds_name = fields.next().unwrap_or_default();
                let ds_type = fields.next().unwrap_or_default();
                if ds_name.is_empty()
                    || !matches!(
                        ds_type.to_ascii_uppercase().as_str(),
                        "GAUGE" | "COUNTER" | "DERIVE" | "ABSOLUTE"
                    )
                {
                    return Err(err(format!(
                        "data source {ds:?} of type {name} is not name:GAUGE|COUNTER|DERIVE|ABSOLUTE:min:max"
                    )));
                }
                names.push(ds_name.to_owned());
            }
            self.types.insert(name.to_owned(), names);
        }
        Ok(())
    }

    /// The data-source names of `type_`, if it is known with `count` sources.
    pub fn names(&self, type_: &str, count: usize) -> Option<&[String]> {
        self.types
            .get(type_)
            .map(Vec::as_slice)
            .filter(|n| n.len() == count)
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_source_names_come_from_the_type_line() {
        let mut db = TypesDb::default();
        db.parse(
            "# comment\nif_octets\t\trx:DERIVE:0:U, tx:DERIVE:0:U\nload  shortterm:GAUGE:0:5000, midterm:GAUGE:0:5000, longterm:GAUGE:0:5000\n",
            "types.db",
        )
        .unwrap();
        assert_eq!(
            db.names("if_octets", 2),
            Some(&["rx".to_owned(), "tx".to_owned()][..])
        );
        assert_eq!(db.names("load", 3).map(<[String]>::len), Some(3));
        assert_eq!(
            db.names("if_octets", 3),
            None,
            "a count that does not match is unknown"
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = TypesDb::default()
            .parse("ok value:GAUGE:0:U\nbroken value:FLOAT:0:U\n", "my.db")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("my.db:2: data source \"value:FLOAT:0:U\""),
            "{e}"
        );
    }
}
