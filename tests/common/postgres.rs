//! PostgreSQL and PgBouncer as test peers: Debian's binaries (packages
//! `postgresql` and `pgbouncer`, which the test command installs), started
//! by the test in a temporary directory of their own, listening on a free
//! loopback port only (PostgreSQL's unix socket in that directory,
//! PgBouncer's none), with trust authentication for one user, [`USER`].
//! Both are stopped by their PID on drop, panics included (their logs are
//! printed then); a missing binary is a failure, never a skip.
//!
//! Both refuse to run as root, so under root (as CI runs) they run as
//! Debian's `postgres` account (`nobody` where there is none), and the
//! directories they write are made theirs; otherwise they run as the caller.
//!
//! [`psql`] runs one statement and hands back its rows by column name, for
//! the server's `pg_stat_activity` and PgBouncer's admin console alike.

use super::TempDir;
use super::process::kill_and_reap;
use std::collections::BTreeMap;
use std::fs::{File, Permissions};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The one database user, a superuser, trusted on loopback.
pub const USER: &str = "sce";

const HINT: &str = "run the README's test command, scripts/test.sh, which installs Debian's \
                    postgresql and pgbouncer";
/// Until a server answers a query.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// From the stop signal to SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One row of a `psql` answer: column name → value as text.
pub type Row = BTreeMap<String, String>;

/// The account the servers run as: `None` for the caller's own.
#[derive(Clone, Copy, Debug)]
struct Account {
    uid: u32,
    gid: u32,
}

/// Under root, the first of `postgres` (made by Debian's postgresql-common)
/// and `nobody` that exists; otherwise `None`.
fn account() -> Option<Account> {
    static ACCOUNT: OnceLock<Option<Account>> = OnceLock::new();
    *ACCOUNT.get_or_init(|| {
        // SAFETY: geteuid(2) has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        // getent rather than getpwnam(3), which is not thread-safe (tests
        // run on parallel threads) and reads NSS the same way.
        for name in ["postgres", "nobody"] {
            let Ok(out) = Command::new("getent").args(["passwd", name]).output() else {
                continue;
            };
            let line = String::from_utf8_lossy(&out.stdout);
            let fields: Vec<&str> = line.trim().split(':').collect();
            if let (true, Some(uid), Some(gid)) = (
                out.status.success(),
                fields.get(2).and_then(|u| u.parse().ok()),
                fields.get(3).and_then(|g| g.parse().ok()),
            ) {
                return Some(Account { uid, gid });
            }
        }
        panic!("running as root, and neither a postgres nor a nobody account exists to run PostgreSQL as")
    })
}

/// Makes `dir` the servers' (mode `mode`), when they run as another account.
fn hand_over(dir: &Path, mode: u32) {
    std::fs::set_permissions(dir, Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    if let Some(a) = account() {
        std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    }
}

/// Lets the servers' account enter `dir` and read what the test writes
/// there (their configuration), whatever the umask.
fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
}

/// Writes a file the servers' account can read, whatever the umask.
fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, Permissions::from_mode(0o644)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A command run as the servers' account, in `cwd` (one it can enter), in
/// the C locale.
fn command(program: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    if let Some(a) = account() {
        c.uid(a.uid).gid(a.gid);
    }
    c.current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .stdin(Stdio::null());
    c
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `postgres`.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new("/usr/lib/postgresql");
        let entries =
            std::fs::read_dir(root).unwrap_or_else(|e| panic!("{}: {e}; {HINT}", root.display()));
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("postgres").exists().then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
            .unwrap_or_else(|| panic!("no {}/*/bin/postgres; {HINT}", root.display()))
    })
    .clone()
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Runs `sql` as [`USER`] on database `db` at 127.0.0.1:`port` (PostgreSQL
/// or PgBouncer, whose admin console is database `pgbouncer`); the rows, or
/// psql's error.
pub fn psql(port: u16, db: &str, sql: &str) -> Result<Vec<Row>, String> {
    let psql = bin_dir().join("psql");
    let out = Command::new(&psql)
        .args([
            "-X",
            "-A",
            "-F",
            "\t",
            "-P",
            "footer=off",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .arg(format!(
            "host=127.0.0.1 port={port} user={USER} dbname={db} \
             application_name=sce-probe connect_timeout=5"
        ))
        .args(["-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {HINT}", psql.display()))?;
    if !out.status.success() {
        return Err(format!(
            "psql {db} {sql:?}: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let columns: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    Ok(lines
        .map(|l| {
            columns
                .iter()
                .zip(l.split('\t'))
                .map(|(c, v)| ((*c).to_owned(), v.to_owned()))
                .collect()
        })
        .collect())
}

/// Sends `signal` to the child, waits up to [`STOP_GRACE`], then kills its
/// process group (a server's forked processes included).
fn stop(child: &mut Child, signal: libc::c_int, what: &str) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on the PID of our own unreaped child; no memory.
    unsafe {
        libc::kill(pid, signal);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{what}: pid {pid} still running {STOP_GRACE:?} after signal {signal}; SIGKILL");
    kill_and_reap(child, true, what);
}

/// Spawns `cmd` (its stderr and stdout into `log`) in a process group of
/// its own, then waits until `ready` holds; `None` when it exited first
/// (say, its port was taken meanwhile), after printing its log.
fn spawn_until_ready(
    what: &str,
    mut cmd: Command,
    log: &Path,
    ready: impl Fn() -> bool,
) -> Option<Child> {
    let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = out.try_clone().expect("clone the log file");
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}; {HINT}"));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("{what} exited ({status}):\n{}", read(log));
            return None;
        }
        if ready() {
            return Some(child);
        }
        if Instant::now() >= deadline {
            stop(&mut child, libc::SIGKILL, what);
            panic!("{what} not ready within {START_TIMEOUT:?}:\n{}", read(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// A PostgreSQL server of its own: a fresh cluster in a temporary
/// directory, on 127.0.0.1:`port`.
pub struct Postgres {
    pub port: u16,
    child: Child,
    log: PathBuf,
    /// Removed after the server has stopped (fields drop after `drop`).
    _dir: TempDir,
}

impl Postgres {
    /// initdb, then `postgres` with `max_connections`; waits until it
    /// answers. Durability is off: the cluster lives as long as the test.
    pub fn start(test: &str, max_connections: u32) -> Postgres {
        let bin = bin_dir();
        let dir = TempDir::new(test, "postgres");
        open_to_all(dir.path());
        let data = dir.path().join("data");
        let socket = dir.path().join("socket");
        for d in [&data, &socket] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            hand_over(d, 0o700);
        }
        let out = command(&bin.join("initdb"), dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}; {HINT}"));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A port taken between choosing and binding makes postgres exit:
        // try another.
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("postgres-{attempt}.log"));
            let mut cmd = command(&bin.join("postgres"), dir.path());
            cmd.arg("-D").arg(&data).args(["-p", &port.to_string()]);
            for setting in [
                "listen_addresses=127.0.0.1".to_owned(),
                format!("unix_socket_directories={}", socket.display()),
                format!("max_connections={max_connections}"),
                "fsync=off".to_owned(),
                "synchronous_commit=off".to_owned(),
                "full_page_writes=off".to_owned(),
            ] {
                cmd.args(["-c", &setting]);
            }
            let ready = || psql(port, "postgres", "SELECT 1").is_ok();
            if let Some(child) = spawn_until_ready("postgres", cmd, &log, ready) {
                return Postgres {
                    port,
                    child,
                    log,
                    _dir: dir,
                };
            }
        }
        panic!(
            "postgres did not start; its logs are in {}",
            dir.path().display()
        )
    }

    /// [`psql`] on this server; panics with the server's log on an error.
    pub fn query(&self, db: &str, sql: &str) -> Vec<Row> {
        psql(self.port, db, sql)
            .unwrap_or_else(|e| panic!("{e}\npostgres log:\n{}", read(&self.log)))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: backends are ended, the
        // cluster stopped cleanly.
        stop(&mut self.child, libc::SIGINT, "postgres");
        if std::thread::panicking() {
            eprintln!("postgres log:\n{}", read(&self.log));
        }
    }
}

/// PgBouncer in front of one database of a [`Postgres`], in transaction
/// mode, on 127.0.0.1:`port`.
pub struct PgBouncer {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl PgBouncer {
    /// Pools database `db` of `server` with `pool_size` server connections,
    /// kept open even when no client needs them (`min_pool_size`), so the
    /// server's count is the pool's; waits until its admin console answers.
    pub fn start(test: &str, server: &Postgres, db: &str, pool_size: u32) -> PgBouncer {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("pgbouncer"));
        let dir = TempDir::new(test, "pgbouncer");
        open_to_all(dir.path());
        let users = dir.path().join("userlist.txt");
        write_readable(&users, &format!("\"{USER}\" \"\"\n"));
        for attempt in 0..3 {
            let port = free_port();
            let ini = dir.path().join(format!("pgbouncer-{attempt}.ini"));
            write_readable(
                &ini,
                &format!(
                    "[databases]\n\
                     {db} = host=127.0.0.1 port={server_port} dbname={db}\n\
                     [pgbouncer]\n\
                     listen_addr = 127.0.0.1\n\
                     listen_port = {port}\n\
                     unix_socket_dir =\n\
                     auth_type = trust\n\
                     auth_file = {users}\n\
                     admin_users = {USER}\n\
                     pool_mode = transaction\n\
                     default_pool_size = {pool_size}\n\
                     min_pool_size = {pool_size}\n\
                     reserve_pool_size = 0\n\
                     max_client_conn = 100\n\
                     logfile =\n\
                     pidfile =\n",
                    server_port = server.port,
                    users = users.display(),
                ),
            );
            let log = dir.path().join(format!("pgbouncer-{attempt}.log"));
            let mut cmd = command(&binary, dir.path());
            cmd.arg(&ini);
            let ready = || psql(port, "pgbouncer", "SHOW VERSION").is_ok();
            if let Some(child) = spawn_until_ready("pgbouncer", cmd, &log, ready) {
                return PgBouncer {
                    port,
                    child,
                    log,
                    _dir: dir,
                };
            }
        }
        panic!(
            "pgbouncer did not start; its logs are in {}",
            dir.path().display()
        )
    }

    /// A `SHOW …` command of the admin console (`SERVERS`, `CLIENTS`, …).
    pub fn show(&self, what: &str) -> Vec<Row> {
        psql(self.port, "pgbouncer", &format!("SHOW {what}"))
            .unwrap_or_else(|e| panic!("{e}\npgbouncer log:\n{}", read(&self.log)))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM: PgBouncer's immediate shutdown.
        stop(&mut self.child, libc::SIGTERM, "pgbouncer");
        if std::thread::panicking() {
            eprintln!("pgbouncer log:\n{}", read(&self.log));
        }
    }
}
