//! What can change while the exporter runs, and the one reload that changes
//! it: [`Current`] holds a value replaced whole (readers clone an `Arc`, no
//! reader waits on a reload), and [`Reloader`] re-reads every configured
//! file on SIGHUP and `POST /-/reload` alike.
//!
//! Takes the paths of the config file, the web config file and the auth file,
//! each with what loads it; hands on each file's outcome (for the log line and
//! the HTTP answer) and its [`ReloadStatus`] (for the
//! `…_last_reload_successful` families). A file that does not load keeps its
//! last good version and does not stop the others.

use crate::store::lock;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A value replaced whole on reload.
#[derive(Debug, Default)]
pub struct Current<T>(RwLock<Arc<T>>);

impl<T> Current<T> {
    pub fn new(value: T) -> Self {
        Current(RwLock::new(Arc::new(value)))
    }

    /// The value in use; a reload after this call does not change it.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut slot) => *slot = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}

/// The files a reload re-reads, in the order it reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigFile {
    /// `--config.file`: pool capacities and databases.
    Config,
    /// `--web.config.file`: TLS, basic auth and headers.
    WebConfig,
    /// `--collectd.auth-file`: users and passwords of signed and encrypted
    /// datagrams.
    AuthFile,
}

impl ConfigFile {
    pub const ALL: [ConfigFile; 3] = [
        ConfigFile::Config,
        ConfigFile::WebConfig,
        ConfigFile::AuthFile,
    ];

    /// How logs and answers name it.
    pub fn name(self) -> &'static str {
        match self {
            ConfigFile::Config => "config file",
            ConfigFile::WebConfig => "web config file",
            ConfigFile::AuthFile => "auth file",
        }
    }
}

/// Whether the last reload of a file worked, and when one last did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReloadStatus {
    pub successful: bool,
    pub success_unix: f64,
}

/// Loads a file and puts it in use; `Ok` carries a one-line summary of
/// what is now in use, `Err` why the file did not load.
pub type Load = Box<dyn Fn(&Path) -> Result<String, String> + Send + Sync>;

struct Watched {
    file: ConfigFile,
    path: PathBuf,
    load: Load,
    status: Mutex<ReloadStatus>,
}

/// What one reload did to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub file: ConfigFile,
    pub path: PathBuf,
    /// The summary of what is in use now, or why the file did not load.
    pub result: Result<String, String>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(summary) => write!(
                f,
                "{} {}: reloaded ({summary})",
                self.file.name(),
                self.path.display()
            ),
            // The error names the file (and its line) itself.
            Err(e) => write!(
                f,
                "{}: not reloaded, the last good one stays: {e}",
                self.file.name()
            ),
        }
    }
}

/// Every configured file and how to load it.
pub struct Reloader {
    watched: Vec<Watched>,
    /// The config file's status when none is configured: the start, and
    /// successful (a reload without a file changes nothing).
    config: ReloadStatus,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field(
                "files",
                &self
                    .watched
                    .iter()
                    .map(|w| (w.file, &w.path))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// `started_unix`: when the files were first loaded (at start).
    pub fn new(started_unix: f64) -> Self {
        Reloader {
            watched: Vec::new(),
            config: ReloadStatus {
                successful: true,
                success_unix: started_unix,
            },
        }
    }

    /// Adds a file, loaded successfully at `started_unix`.
    pub fn watch(&mut self, file: ConfigFile, path: PathBuf, load: Load, started_unix: f64) {
        self.watched.push(Watched {
            file,
            path,
            load,
            status: Mutex::new(ReloadStatus {
                successful: true,
                success_unix: started_unix,
            }),
        });
        self.watched
            .sort_by_key(|w| ConfigFile::ALL.iter().position(|f| *f == w.file));
    }

    /// Re-reads every file, each on its own, at `now_unix`; logs each
    /// outcome and hands them on.
    pub fn reload(&self, now_unix: f64) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(self.watched.len());
        for w in &self.watched {
            let result = (w.load)(&w.path);
            let mut status = lock(&w.status);
            match &result {
                Ok(summary) => {
                    *status = ReloadStatus {
                        successful: true,
                        success_unix: now_unix,
                    };
                    // Logged once the new file is in use, so the line means it is.
                    tracing::info!(path = %w.path.display(), %summary, "{} reloaded", w.file.name());
                }
                Err(e) => {
                    status.successful = false;
                    tracing::error!(error = %e, "{} reload failed; keeping the last good one", w.file.name());
                }
            }
            outcomes.push(Outcome {
                file: w.file,
                path: w.path.clone(),
                result,
            });
        }
        outcomes
    }

    /// The status of the config file (always) and of every other file that
    /// is configured, in [`ConfigFile::ALL`] order.
    pub fn statuses(&self) -> Vec<(ConfigFile, ReloadStatus)> {
        let mut out = Vec::with_capacity(ConfigFile::ALL.len());
        if !self.watched.iter().any(|w| w.file == ConfigFile::Config) {
            out.push((ConfigFile::Config, self.config));
        }
        out.extend(self.watched.iter().map(|w| (w.file, *lock(&w.status))));
        out
    }
}

/// The answer to a reload, one line per file (the HTTP body; SIGHUP logs
/// each line as it goes).
pub fn answer(outcomes: &[Outcome]) -> String {
    if outcomes.is_empty() {
        return "nothing to reload: no --config.file, --web.config.file or --collectd.auth-file\n"
            .to_owned();
    }
    outcomes.iter().map(|o| format!("{o}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    fn load(ok: Arc<AtomicBool>) -> Load {
        Box::new(move |path| {
            if ok.load(Relaxed) {
                Ok("fine".into())
            } else {
                Err(format!("{}:1:1: broken", path.display()))
            }
        })
    }

    #[test]
    fn a_file_that_does_not_load_does_not_stop_the_others() {
        let (web_ok, auth_ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(true)),
        );
        let mut r = Reloader::new(1.0);
        r.watch(ConfigFile::AuthFile, "auth".into(), load(auth_ok), 1.0);
        r.watch(
            ConfigFile::WebConfig,
            "web.yml".into(),
            load(web_ok.clone()),
            1.0,
        );
        let outcomes = r.reload(2.0);
        assert_eq!(
            answer(&outcomes),
            "web config file: not reloaded, the last good one stays: web.yml:1:1: broken\n\
             auth file auth: reloaded (fine)\n"
        );
        let ok = |t| ReloadStatus {
            successful: true,
            success_unix: t,
        };
        assert_eq!(
            r.statuses(),
            vec![
                (ConfigFile::Config, ok(1.0)),
                (
                    ConfigFile::WebConfig,
                    ReloadStatus {
                        successful: false,
                        success_unix: 1.0
                    }
                ),
                (ConfigFile::AuthFile, ok(2.0)),
            ]
        );
        web_ok.store(true, Relaxed);
        r.reload(3.0);
        assert_eq!(r.statuses()[1], (ConfigFile::WebConfig, ok(3.0)));
    }

    #[test]
    fn nothing_configured_is_a_reload_that_succeeds() {
        let r = Reloader::new(1.0);
        assert_eq!(
            answer(&r.reload(5.0)),
            "nothing to reload: no --config.file, --web.config.file or --collectd.auth-file\n"
        );
        assert_eq!(
            r.statuses(),
            vec![(
                ConfigFile::Config,
                ReloadStatus {
                    successful: true,
                    success_unix: 1.0
                }
            )]
        );
    }

    #[test]
    fn current_hands_out_the_value_in_use() {
        let c = Current::new(1);
        let before = c.get();
        c.set(2);
        assert_eq!((*before, *c.get()), (1, 2));
    }
}
