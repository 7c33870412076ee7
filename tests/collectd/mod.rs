//! The real collectd daemon (`/usr/sbin/collectd`, Debian `collectd-core`)
//! as a test peer: a generated configuration in a fresh directory, the daemon
//! in the foreground as a child process that is always killed and reaped,
//! and readers for what its csv plugin wrote and for the types.db it used.
//! Besides the network plugin a configuration can have the write_http plugin
//! and sqlalchemy-collectd's server plugin (in collectd's python plugin),
//! fed by the real Python client (`common::client`).

use crate::common::TempDir;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const COLLECTD: &str = "/usr/sbin/collectd";
pub const TYPES_DB: &str = "/usr/share/collectd/types.db";
pub const PLUGIN_DIR: &str = "/usr/lib/collectd";

/// The read plugins of [`Setup::read_plugins`].
pub const READ_PLUGINS: [&str; 5] = ["load", "cpu", "memory", "interface", "df"];

/// One `<Server>` block of the network plugin.
pub struct Server<'a> {
    pub port: u16,
    /// `None`, `Sign` or `Encrypt`.
    pub level: &'a str,
    /// Username and password (Sign and Encrypt).
    pub auth: Option<(&'a str, &'a str)>,
}

/// sqlalchemy-collectd's server plugin, run by collectd's `python` plugin:
/// it listens for the client's datagrams on `port` and dispatches, every
/// `Interval`, the per-program and per-host sums as `sqlalchemy` / `count-…`
/// and `derive-…` value lists into collectd.
pub struct Relay<'a> {
    /// The `site-packages` directory holding `sqlalchemy_collectd`
    /// (collectd's embedded interpreter gets it as `ModulePath`).
    pub module_path: &'a Path,
    /// UDP port on 127.0.0.1 it listens on.
    pub port: u16,
}

/// What a generated configuration holds besides logfile and csv (which
/// every configuration has).
#[derive(Default)]
pub struct Setup<'a> {
    /// The [`READ_PLUGINS`] (df restricted to `/`, interface to `lo`).
    pub read_plugins: bool,
    /// The network plugin with these `<Server>` blocks (none: not loaded).
    pub servers: &'a [Server<'a>],
    /// The write_http plugin with one `<Node>` posting JSON to this URL.
    pub write_http: Option<&'a str>,
    /// The python plugin running sqlalchemy-collectd's server plugin.
    pub relay: Option<Relay<'a>>,
}

/// Fails, naming what to install, unless `/usr/lib/collectd/<plugin>.so`
/// can be loaded: collectd-core only suggests the libraries some plugins
/// link (libyajl2 for write_http, libpython3.11 for python), and ldd(1)
/// shows a missing one as "not found".
fn assert_plugin_loadable(plugin: &str) {
    let so = format!("{PLUGIN_DIR}/{plugin}.so");
    assert!(
        Path::new(&so).exists(),
        "{so} is missing (Debian package collectd-core); run scripts/test.sh"
    );
    let Ok(out) = Command::new("ldd").arg(&so).output() else {
        // No ldd: collectd's own dlopen error will say it.
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("not found"))
        .map(str::trim)
        .collect();
    assert!(
        missing.is_empty(),
        "collectd's {plugin} plugin cannot be loaded, {so} needs libraries that are not \
         installed: {missing:?} (Debian packages: libyajl2 for write_http, \
         libpython3.11 for python); run scripts/test.sh"
    );
}

/// A running collectd. Dropping it kills (SIGKILL) and reaps the daemon if
/// it still runs, panic or not.
pub struct Collectd {
    child: Option<Child>,
    pub host: String,
    // Declared last: dropped after the daemon is gone.
    dir: TempDir,
}

impl Collectd {
    /// [`Collectd::start_with`] the [`READ_PLUGINS`] and the network plugin
    /// sending to `servers`.
    pub fn start(tag: &str, servers: &[Server]) -> Collectd {
        Collectd::start_with(
            tag,
            &Setup {
                read_plugins: true,
                servers,
                ..Setup::default()
            },
        )
    }

    /// Starts `collectd -f -C <conf>` with a configuration generated in a
    /// fresh directory: `Interval 1`, logfile into `<dir>/collectd.log`, csv
    /// into `<dir>/csv` with `StoreRates false`, and what `setup` asks for.
    ///
    /// collectd's network plugin fills a 1452-byte buffer and sends it only
    /// when the next value list would not fit (no timer), so the plugin gets
    /// `FlushInterval 1` (a `<LoadPlugin>` option, collectd.conf(5)): the
    /// daemon calls its flush callback every second, which sends whatever
    /// is buffered. write_http buffers the same way (`BufferSize`, default
    /// 4096 bytes, here 65536 so that one request carries many value lists)
    /// and gets the same `FlushInterval 1`. At shutdown collectd flushes
    /// both.
    pub fn start_with(tag: &str, setup: &Setup) -> Collectd {
        assert!(
            Path::new(COLLECTD).exists(),
            "{COLLECTD} is missing: these tests need the real collectd daemon \
             (Debian package collectd-core); run scripts/test.sh, which installs it"
        );
        if setup.relay.is_some() {
            assert_plugin_loadable("python");
        }
        if setup.write_http.is_some() {
            assert_plugin_loadable("write_http");
        }
        let dir = TempDir::new("collectd", tag);
        let host = format!("collectd-test-{}-{tag}", std::process::id());
        let d = dir.path().display().to_string();
        let mut conf = String::new();
        let w = &mut conf;
        let _ = writeln!(w, "Hostname \"{host}\"");
        let _ = writeln!(w, "FQDNLookup false");
        let _ = writeln!(w, "BaseDir \"{d}\"");
        let _ = writeln!(w, "PIDFile \"{d}/collectd.pid\"");
        let _ = writeln!(w, "PluginDir \"{PLUGIN_DIR}\"");
        let _ = writeln!(w, "TypesDB \"{TYPES_DB}\"");
        let _ = writeln!(w, "Interval 1");
        let _ = writeln!(w, "LoadPlugin logfile");
        let _ = writeln!(
            w,
            "<Plugin logfile>\n  LogLevel info\n  File \"{d}/collectd.log\"\n  Timestamp true\n  PrintSeverity true\n</Plugin>"
        );
        if setup.read_plugins {
            for p in READ_PLUGINS {
                let _ = writeln!(w, "LoadPlugin {p}");
            }
            let _ = writeln!(w, "<Plugin df>\n  MountPoint \"/\"\n</Plugin>");
            let _ = writeln!(w, "<Plugin interface>\n  Interface \"lo\"\n</Plugin>");
        }
        if let Some(relay) = &setup.relay {
            let _ = writeln!(w, "LoadPlugin python");
            let _ = writeln!(w, "<Plugin python>");
            let _ = writeln!(w, "  ModulePath \"{}\"", relay.module_path.display());
            let _ = writeln!(w, "  LogTraces true");
            let _ = writeln!(w, "  Import \"sqlalchemy_collectd.server.plugin\"");
            let _ = writeln!(w, "  <Module \"sqlalchemy_collectd.server.plugin\">");
            let _ = writeln!(w, "    listen \"127.0.0.1\" {}", relay.port);
            let _ = writeln!(w, "    loglevel \"info\"");
            let _ = writeln!(w, "  </Module>");
            let _ = writeln!(w, "</Plugin>");
        }
        let _ = writeln!(w, "LoadPlugin csv");
        let _ = writeln!(
            w,
            "<Plugin csv>\n  DataDir \"{d}/csv\"\n  StoreRates false\n</Plugin>"
        );
        if !setup.servers.is_empty() {
            let _ = writeln!(w, "<LoadPlugin network>\n  FlushInterval 1\n</LoadPlugin>");
            let _ = writeln!(w, "<Plugin network>");
            for s in setup.servers {
                let _ = writeln!(w, "  <Server \"127.0.0.1\" \"{}\">", s.port);
                let _ = writeln!(w, "    SecurityLevel {}", s.level);
                if let Some((user, password)) = s.auth {
                    let _ = writeln!(w, "    Username \"{user}\"\n    Password \"{password}\"");
                }
                let _ = writeln!(w, "  </Server>");
            }
            let _ = writeln!(w, "</Plugin>");
        }
        if let Some(url) = setup.write_http {
            let _ = writeln!(
                w,
                "<LoadPlugin write_http>\n  FlushInterval 1\n</LoadPlugin>"
            );
            let _ = writeln!(w, "<Plugin write_http>\n  <Node \"exporter\">");
            let _ = writeln!(w, "    URL \"{url}\"");
            let _ = writeln!(w, "    Format \"JSON\"\n    StoreRates false");
            let _ = writeln!(w, "    BufferSize 65536\n    Timeout 5000");
            let _ = writeln!(w, "    LogHttpError true");
            let _ = writeln!(w, "  </Node>\n</Plugin>");
        }
        let conf_path = dir.path().join("collectd.conf");
        std::fs::write(&conf_path, &conf).expect("write collectd.conf");
        let out = std::fs::File::create(dir.path().join("stdout")).expect("create stdout file");
        let err = std::fs::File::create(dir.path().join("stderr")).expect("create stderr file");
        let mut cmd = Command::new(COLLECTD);
        cmd.arg("-f")
            .arg("-C")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Should the test process die without unwinding, the kernel kills
        // the daemon too (the spawning thread lives until after Drop).
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {COLLECTD}: {e}; run scripts/test.sh"));
        Collectd {
            child: Some(child),
            host,
            dir,
        }
    }

    /// Waits (at most `timeout`) until the daemon has read its configuration
    /// and entered its read loop: every plugin loaded and configured (the
    /// server plugin listening). `Err` with the log if the daemon exited
    /// first (e.g. a plugin failed to load or to configure, which makes
    /// collectd 5.12 give up); panics on a timeout.
    pub fn await_initialized(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("collectd.log")).unwrap_or_default();
            if log.contains("Initialization complete, entering read-loop.") {
                return Ok(());
            }
            let child = self.child.as_mut().expect("collectd was started");
            if let Some(status) = child.try_wait().expect("try_wait on collectd") {
                self.child = None;
                return Err(format!(
                    "collectd exited during start-up ({status}):\n{}",
                    self.log()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "collectd did not finish start-up within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The generated configuration, for messages.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collectd.conf")).unwrap_or_default()
    }

    pub fn csv_dir(&self) -> PathBuf {
        self.dir.path().join("csv")
    }

    /// The daemon's log, stdout and stderr, for failure messages.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- collectd.log\n{}--- stdout\n{}--- stderr\n{}",
            read("collectd.log"),
            read("stdout"),
            read("stderr")
        )
    }

    /// Panics (with the log) if the daemon has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("collectd was started");
        if let Some(status) = child.try_wait().expect("try_wait on collectd") {
            self.child = None;
            panic!("collectd exited early ({status}):\n{}", self.log());
        }
    }

    /// SIGTERM, then waits (at most 10 s) for a clean exit: collectd stops
    /// its read threads, flushes the write plugins (the network plugin sends
    /// its last buffer) and exits 0.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("collectd is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) collectd");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait on collectd") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "collectd did not exit within 10 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "collectd exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Collectd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The data sources of one types.db type: (name, DS type) in order.
pub type DataSources = Vec<(String, String)>;

/// Parses a types.db (`type ds:TYPE:min:max, ...` per line, `#` comments).
pub fn types_db(path: &str) -> BTreeMap<String, DataSources> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run scripts/test.sh"));
    let mut db = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((name, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let sources = rest
            .split(',')
            .map(|ds| {
                let mut f = ds.trim().split(':');
                let ds_name = f.next().expect("ds name").to_owned();
                let ds_type = f
                    .next()
                    .unwrap_or_else(|| panic!("{path}: {line}"))
                    .to_owned();
                (ds_name, ds_type)
            })
            .collect();
        db.insert(name.to_owned(), sources);
    }
    db
}

/// One value list identity as the csv plugin stored it: every row of every
/// day file, oldest first.
#[derive(Debug)]
pub struct CsvSeries {
    pub plugin: String,
    pub plugin_instance: String,
    pub type_: String,
    pub type_instance: String,
    /// From the header line (`epoch,<ds>,...`).
    pub ds_names: Vec<String>,
    /// The epoch and value fields, exactly as written.
    pub rows: Vec<(String, Vec<String>)>,
    pub files: Vec<PathBuf>,
}

/// Reads `<csv_dir>/<host>/<plugin>[-<plugin instance>]/<type>[-<type
/// instance>]-<YYYY-MM-DD>`. Plugin and type names contain no `-`, so the
/// first `-` ends them. A last line without its newline (being written) is
/// left out unless `complete`, which asserts there is none.
pub fn read_csv(csv_dir: &Path, host: &str, complete: bool) -> Vec<CsvSeries> {
    let host_dir = csv_dir.join(host);
    let mut by_id: BTreeMap<(String, String, String, String), CsvSeries> = BTreeMap::new();
    let Ok(plugin_dirs) = std::fs::read_dir(&host_dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for pd in plugin_dirs {
        let pd = pd.expect("csv dir entry").path();
        for f in std::fs::read_dir(&pd).unwrap_or_else(|e| panic!("{}: {e}", pd.display())) {
            files.push(f.expect("csv file entry").path());
        }
    }
    // Day files of one identity sort oldest first.
    files.sort();
    for path in files {
        let pdir = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("plugin dir name");
        let fname = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let (plugin, plugin_instance) = pdir.split_once('-').unwrap_or((pdir, ""));
        let (stem, date) = fname.split_at(fname.len().checked_sub(11).expect("dated file name"));
        let date_ok = date.len() == 11
            && date.char_indices().all(|(i, c)| match i {
                0 | 5 | 8 => c == '-',
                _ => c.is_ascii_digit(),
            });
        assert!(date_ok, "unexpected csv file name {}", path.display());
        let (type_, type_instance) = stem.split_once('-').unwrap_or((stem, ""));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if complete {
            assert!(text.ends_with('\n'), "{} ends mid-line", path.display());
        }
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        if lines.last().is_some_and(|l| !l.ends_with('\n')) {
            lines.pop();
        }
        let mut lines = lines.into_iter().map(|l| l.trim_end_matches('\n'));
        let Some(header) = lines.next() else { continue };
        let mut header = header.split(',');
        assert_eq!(header.next(), Some("epoch"), "{} header", path.display());
        let ds_names: Vec<String> = header.map(str::to_owned).collect();
        let key = (
            plugin.to_owned(),
            plugin_instance.to_owned(),
            type_.to_owned(),
            type_instance.to_owned(),
        );
        let series = by_id.entry(key).or_insert_with(|| CsvSeries {
            plugin: plugin.to_owned(),
            plugin_instance: plugin_instance.to_owned(),
            type_: type_.to_owned(),
            type_instance: type_instance.to_owned(),
            ds_names: ds_names.clone(),
            rows: Vec::new(),
            files: Vec::new(),
        });
        assert_eq!(series.ds_names, ds_names, "{} header", path.display());
        series.files.push(path.clone());
        for line in lines {
            let mut fields = line.split(',').map(str::to_owned);
            let epoch = fields.next().expect("epoch field");
            let values: Vec<String> = fields.collect();
            assert_eq!(values.len(), ds_names.len(), "{}: {line:?}", path.display());
            series.rows.push((epoch, values));
        }
    }
    by_id.into_values().filter(|s| !s.rows.is_empty()).collect()
}
