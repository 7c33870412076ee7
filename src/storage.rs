//! `--storage.path`: the directory where a graceful shutdown leaves the
//! SQLAlchemy store's counters for the next start, as Alertmanager keeps its
//! state across restarts.
//!
//! Takes the directory; hands on how this start begins ([`Start`]) and
//! writes the state at shutdown. Three files' worth of rules:
//!
//! * `state.json`: written (to a temporary file, then renamed) at a graceful
//!   shutdown; read at start and removed, so that a crash later never brings
//!   back counters older than what Prometheus already scraped;
//! * `started`: made at the first start in the directory and kept;
//! * a start that finds `started` but no `state.json` follows a crash (or a
//!   shutdown that could not save): processes first seen within the first
//!   liveness window count from their first report. A start that finds
//!   neither is the first: every process counts from zero.

use crate::store::sqlalchemy::saved::{FORMAT, Saved};
use std::io::Write;
use std::path::{Path, PathBuf};

const STATE: &str = "state.json";
const STARTED: &str = "started";

/// A file of the storage directory that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("storage {}: {what}", path.display())]
pub struct StorageError {
    pub path: PathBuf,
    pub what: String,
}

fn error(path: &Path, what: impl std::fmt::Display) -> StorageError {
    StorageError {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

/// How the store begins.
#[derive(Debug)]
pub enum Start {
    /// The state a graceful shutdown saved: counters continue.
    Restored(Box<Saved>),
    /// Nothing was ever exported from this directory: counts from zero.
    First,
    /// Counters were exported before but not saved (a crash, a state that
    /// could not be read, or no `--storage.path`): the start-up baseline.
    Unsaved(String),
}

#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
}

impl Storage {
    /// Opens (making it if needed) the directory and says how to start.
    pub fn open(dir: &Path) -> Result<(Storage, Start), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| error(dir, e))?;
        let (state, started) = (dir.join(STATE), dir.join(STARTED));
        let start = match std::fs::read(&state) {
            Ok(bytes) => {
                // Read once: a crash after this start must not bring it back.
                std::fs::remove_file(&state).map_err(|e| error(&state, e))?;
                match serde_json::from_slice::<Saved>(&bytes) {
                    Ok(saved) if saved.format == FORMAT => Start::Restored(Box::new(saved)),
                    Ok(saved) => Start::Unsaved(format!(
                        "{} has format {}, this exporter reads {FORMAT}",
                        state.display(),
                        saved.format
                    )),
                    Err(e) => Start::Unsaved(format!("{} is not readable: {e}", state.display())),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if started.exists() {
                    Start::Unsaved(format!(
                        "{} holds no saved state (the last run did not shut down cleanly)",
                        dir.display()
                    ))
                } else {
                    Start::First
                }
            }
            Err(e) => return Err(error(&state, e)),
        };
        std::fs::write(&started, b"").map_err(|e| error(&started, e))?;
        Ok((
            Storage {
                dir: dir.to_owned(),
            },
            start,
        ))
    }

    /// Writes the state for the next start: whole or not at all.
    pub fn save(&self, saved: &Saved) -> Result<(), StorageError> {
        let path = self.dir.join(STATE);
        let tmp = self.dir.join(format!(".{STATE}.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut file, saved)?;
            file.flush()?;
            file.get_ref().sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            error(&path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sce-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn saved() -> Saved {
        Saved {
            format: FORMAT,
            saved_unix: 1.0,
            programs: Vec::new(),
        }
    }

    #[test]
    fn first_start_then_restored_then_unsaved_after_a_crash() {
        let d = dir("cycle");
        let (s, start) = Storage::open(&d).unwrap();
        assert!(matches!(start, Start::First), "{start:?}");
        s.save(&saved()).unwrap();
        let (_, start) = Storage::open(&d).unwrap();
        assert!(
            matches!(start, Start::Restored(ref r) if **r == saved()),
            "{start:?}"
        );
        // That run "crashed": nothing saved.
        let (_, start) = Storage::open(&d).unwrap();
        assert!(matches!(start, Start::Unsaved(_)), "{start:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unreadable_state_is_an_unsaved_start_naming_the_file() {
        let d = dir("broken");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(STATE), "{not json").unwrap();
        let (_, start) = Storage::open(&d).unwrap();
        match start {
            Start::Unsaved(why) => assert!(why.contains("state.json is not readable"), "{why}"),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
