//! The exporter's built binary as a child process, for the tests (the path
//! is `env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter")`) and the
//! benchmark (the release binary): on ephemeral loopback ports with
//! `--web.ready-file`, its addresses read from that file, which is polled for
//! (never from its log); its stderr kept line by line ([`Log`]); killed and
//! reaped on drop, its log printed when a test panics.

use super::TempDir;
use super::process::{Log, kill_and_reap};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long the binary may take to write its ready file.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What a ready file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub pid: u32,
    /// Every UDP listener, in flag order.
    pub collectd: Vec<SocketAddr>,
    /// Every HTTP listener, in flag order.
    pub web: Vec<SocketAddr>,
}

impl Ready {
    /// The ready file at `path`, once it is there and complete (it is
    /// renamed into place, so a file that is there is whole).
    pub fn read(path: &Path) -> Option<Ready> {
        let text = std::fs::read_to_string(path).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text:?}", path.display()));
        let addresses = |key: &str| -> Vec<SocketAddr> {
            doc[key]
                .as_array()
                .unwrap_or_else(|| panic!("{}: no {key} list: {text}", path.display()))
                .iter()
                .map(|a| {
                    a.as_str()
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("{}: {a} is not an address", path.display()))
                })
                .collect()
        };
        Some(Ready {
            pid: doc["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_else(|| panic!("{}: no pid: {text}", path.display())),
            collectd: addresses("collectd"),
            web: addresses("web"),
        })
    }
}

/// A running exporter binary.
pub struct Binary {
    pub child: Child,
    /// The first UDP and HTTP listeners.
    pub udp: SocketAddr,
    pub http: SocketAddr,
    /// What its ready file said.
    pub ready: Ready,
    /// `--web.ready-file`, in a directory of its own.
    pub ready_file: PathBuf,
    /// Its stderr.
    pub log: Log,
    _dir: TempDir,
}

impl Binary {
    /// Runs `bin` on 127.0.0.1:0 (one UDP, one HTTP listener) with `args`
    /// added, and waits for its ready file.
    pub fn start(bin: &str, args: &[&str]) -> Binary {
        Binary::launch(Command::new(bin), args)
    }

    /// [`Binary::start`] with a command that runs the binary: the binary
    /// itself, or a wrapper such as `taskset -c 0 BIN`. The listen
    /// addresses, the ready file and `args` are added after it.
    pub fn launch(command: Command, args: &[&str]) -> Binary {
        Binary::launch_on(command, "127.0.0.1:0", "127.0.0.1:0", args)
    }

    /// [`Binary::launch`] on given listen addresses (a restart on the same
    /// ports, for a scraper that knows only those).
    pub fn launch_on(mut command: Command, collectd: &str, web: &str, args: &[&str]) -> Binary {
        let dir = TempDir::new("exporter", "ready");
        let ready_file = dir.path().join("ready.json");
        command
            .args([
                "--collectd.listen-address",
                collectd,
                "--web.listen-address",
                web,
            ])
            .arg("--web.ready-file")
            .arg(&ready_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let what = format!("{:?}", command.get_program());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e} (is it built?)"));
        let log = Log::capture(child.stderr.take().expect("piped stderr"));
        let ready = super::poll(START_TIMEOUT, "the exporter's ready file", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{what} exited ({status}) before it was ready:\n{}",
                    log.text_at_end(Duration::from_secs(5))
                );
            }
            Ready::read(&ready_file)
        });
        assert_eq!(
            ready.pid,
            child.id(),
            "{}: another process's ready file",
            ready_file.display()
        );
        Binary {
            udp: *ready.collectd.first().expect("a UDP listener"),
            http: *ready.web.first().expect("an HTTP listener"),
            child,
            ready,
            ready_file,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("{signal} to the exporter (pid {pid}): {e}"));
    }

    /// Its exit status, within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        super::poll(timeout, "the exporter to exit", || {
            child.try_wait().expect("wait for the exporter")
        })
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, false, "exporter");
        if std::thread::panicking() {
            eprintln!(
                "exporter log:\n{}",
                self.log.text_at_end(Duration::from_secs(2))
            );
        }
    }
}
