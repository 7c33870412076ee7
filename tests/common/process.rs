//! Child processes of the tests and the benchmark: killed and reaped
//! ([`kill_and_reap`]), their stderr read line by line on a thread of its
//! own so that a chatty child never blocks on a full pipe ([`Log`]), and
//! their resident memory from /proc ([`rss_bytes`]).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills and reaps a child process (its process group, which
/// `process_group(0)` made for it, when `group`); waits at most a few
/// seconds.
pub fn kill_and_reap(child: &mut Child, group: bool, what: &str) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    if group {
        // SAFETY: kill(2) with a negative pid signals the process group that
        // `process_group(0)` made for this child (its forked children
        // included); it touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    } else {
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!("{what}: pid {pid} not reaped after SIGKILL");
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A child's stderr, line by line: each line is handed on once (to
/// [`Log::next_line`] and [`Log::wait_for`]) and kept (for [`Log::text`]).
pub struct Log {
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    /// The pipe reached its end: the child and whatever inherited it closed it.
    closed: Arc<AtomicBool>,
}

impl Log {
    /// Reads `stderr` until it closes.
    pub fn capture(stderr: ChildStderr) -> Log {
        let (tx, lines) = std::sync::mpsc::channel();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let closed: Arc<AtomicBool> = Arc::default();
        let (keep, done) = (seen.clone(), closed.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                // Nobody waiting for lines: keep reading all the same.
                let _ = tx.send(line);
            }
            done.store(true, Ordering::Relaxed);
        });
        Log {
            lines,
            seen,
            closed,
        }
    }

    /// The next line not handed on yet, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        // Timed out, or the pipe closed and every line was handed on.
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next line containing `needle`, within `timeout`; panics with the
    /// log otherwise.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!(
                    "no log line with {needle:?} within {timeout:?}; the log:\n{}",
                    self.text()
                ),
            }
        }
    }

    /// Every line so far.
    pub fn text(&self) -> String {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Every line, once the pipe has closed (the child exited), or what
    /// there is after `timeout`.
    pub fn text_at_end(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.closed.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.text()
    }
}

/// Resident memory of `pid` (VmRSS in /proc/PID/status), in bytes; `None`
/// when the process or the field is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
