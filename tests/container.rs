//! The container image, built and run here: `scripts/container-image.sh`
//! builds it from the release binary (no base image to pull: the binary, the
//! libraries it links and the accounts, `FROM scratch`) with buildah, podman
//! runs it as the image's non-root user with a read-only root file system and
//! the Kubernetes Deployment's flags, in its own network namespace with its
//! ports published on 127.0.0.1 only, and the real sqlalchemy-collectd client
//! sends to it; `/metrics` must show exactly what the client's pool holds, and
//! a `podman stop` must save the counters into the storage volume as that
//! user.
//!
//! Also: the `Dockerfile` (distroless, for users who can pull its bases) and
//! `deploy/container/Containerfile` declare the same entrypoint, user and
//! ports, and the image built is what they declare.
//!
//! podman runs with its own storage (vfs: no overlay mounts needed), run and
//! temporary directories under a temporary directory of the test, runc (crun
//! refuses hybrid cgroups) and cgroupfs; only the container the test started
//! is removed, by its id.

mod common;

use common::TempDir;
use common::client::{App, Programs, Series, View, shows};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const ENTRYPOINT: &str = "/usr/local/bin/sqlalchemy-collectd-exporter";
/// distroless's nonroot user.
const UID: u32 = 65532;
const STORAGE: &str = "/var/lib/sqlalchemy-collectd-exporter";
/// Host label the app sends (`collectd_report_host`).
const HOST: &str = "container-test";
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

/// What an image definition declares about how the image runs.
#[derive(Debug, PartialEq, Eq)]
struct Declared {
    entrypoint: Vec<String>,
    cmd: Option<Vec<String>>,
    user: String,
    /// `9827/tcp`, `25827/udp`.
    ports: BTreeSet<String>,
}

/// The final stage of a Dockerfile or Containerfile: its ENTRYPOINT (exec
/// form), CMD, USER and EXPOSE, continuation lines joined.
fn declared(path: &Path) -> Declared {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_stage = lines
        .iter()
        .rposition(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .unwrap_or_else(|| panic!("{}: no FROM", path.display()));
    let mut d = Declared {
        entrypoint: Vec::new(),
        cmd: None,
        user: String::new(),
        ports: BTreeSet::new(),
    };
    let exec_form = |arg: &str| -> Vec<String> {
        serde_json::from_str(arg)
            .unwrap_or_else(|e| panic!("{}: {arg} is not the exec form: {e}", path.display()))
    };
    for l in &lines[last_stage..] {
        let (instruction, arg) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let arg = arg.trim();
        match instruction.to_ascii_uppercase().as_str() {
            "ENTRYPOINT" => d.entrypoint = exec_form(arg),
            "CMD" => d.cmd = Some(exec_form(arg)),
            "USER" => d.user = arg.to_owned(),
            "EXPOSE" => d.ports.extend(arg.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                }
            })),
            _ => {}
        }
    }
    d
}

fn dockerfile() -> PathBuf {
    common::repo().join("Dockerfile")
}

fn containerfile() -> PathBuf {
    common::repo().join("deploy/container/Containerfile")
}

#[test]
fn the_dockerfile_and_the_local_containerfile_declare_the_same_image() {
    let docker = declared(&dockerfile());
    let local = declared(&containerfile());
    assert_eq!(docker, local);
    assert_eq!(
        local,
        Declared {
            entrypoint: vec![ENTRYPOINT.to_owned()],
            cmd: None,
            user: format!("{UID}:{UID}"),
            ports: ["25827/udp".to_owned(), "9827/tcp".to_owned()].into(),
        }
    );
}

/// The release build of the exporter (cargo builds it; the tests share the
/// target directory).
fn release_binary() -> PathBuf {
    let root = common::repo();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "sqlalchemy-collectd-exporter",
        ])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(status.success(), "cargo build --release: {status}");
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release/sqlalchemy-collectd-exporter")
}

/// podman (and buildah) on a store of the test's own.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = TempDir::new("container", "podman");
        for sub in ["root", "run", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("podman dirs");
        }
        Podman { dir }
    }

    /// The store options buildah and podman share.
    fn store(&self) -> Vec<String> {
        let p = |sub: &str| self.dir.path().join(sub).display().to_string();
        vec![
            "--root".into(),
            p("root"),
            "--runroot".into(),
            p("run"),
            "--storage-driver".into(),
            "vfs".into(),
        ]
    }

    fn podman(&self, args: &[&str]) -> Output {
        let tmp = self.dir.path().join("tmp").display().to_string();
        Command::new("podman")
            .args(self.store())
            .args([
                "--tmpdir",
                &tmp,
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run podman: {e}; scripts/install-deps.sh installs it")
            })
    }

    /// podman's stdout; panics with its stderr when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    }
}

/// A container this test started, removed (by its id) on drop.
struct Container<'a> {
    podman: &'a Podman,
    id: String,
}

impl Container<'_> {
    fn inspect(&self, format: &str) -> String {
        self.podman.ok(&[
            "inspect",
            "--type",
            "container",
            "--format",
            format,
            &self.id,
        ])
    }

    /// The host address a container port is published on (`9827/tcp`).
    fn published(&self, port: &str) -> SocketAddr {
        let text = self.podman.ok(&["port", &self.id, port]);
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("podman port {port}: {text:?}"))
    }

    fn logs(&self) -> String {
        let out = self.podman.podman(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("container log:\n{}", self.logs());
        }
        let _ = self
            .podman
            .podman(&["rm", "--force", "--time", "2", &self.id]);
    }
}

/// A resource limit for the container no higher than this process's hard
/// limit, which it cannot raise (podman's defaults may be above it).
fn ulimit(resource: nix::sys::resource::Resource, cap: u64) -> String {
    let (_, hard) = nix::sys::resource::getrlimit(resource).expect("getrlimit");
    let n = hard.min(cap);
    format!("{n}:{n}")
}

/// The series one live process of the real client makes its host/program
/// show (tests/real_client.rs, rules 3 and 4; a process that was not forked).
fn series_of(v: &View) -> Series {
    let s = v.client_state();
    Series {
        processes: 1,
        pools: v.engines,
        connections: s.open,
        checked_out: s.held,
        checked_in: s.idle + u64::from(s.none_checkins > 0),
        detached: s.detached,
        checkouts: s.checkouts,
        connects: s.connects,
        disconnects: s.disconnects,
        invalidations: s.invalidations,
    }
}

/// The Deployment's container args (deploy/kubernetes/deployment.yaml).
fn deployment_args() -> Vec<String> {
    let text = std::fs::read_to_string(common::repo().join("deploy/kubernetes/deployment.yaml"))
        .expect("deployment.yaml");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    Vec::<String>::deserialize(&doc["spec"]["template"]["spec"]["containers"][0]["args"])
        .expect("args")
}

#[test]
fn the_image_runs_read_only_as_non_root_and_exports_the_real_clients_pool() {
    let binary = release_binary();
    let podman = Podman::new();
    let tag = format!(
        "localhost/sqlalchemy-collectd-exporter:test-{}",
        std::process::id()
    );

    // Build: the release binary and what ldd says it links, FROM scratch.
    let out = Command::new(common::repo().join("scripts/container-image.sh"))
        .arg(&tag)
        .env("SCE_BINARY", &binary)
        .env("BUILDAH_OPTS", podman.store().join(" "))
        .output()
        .expect("scripts/container-image.sh runs");
    assert!(
        out.status.success(),
        "scripts/container-image.sh: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The image is what both definitions declare.
    let config: Value = serde_json::from_str(&podman.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &tag,
    ]))
    .expect("image config JSON");
    let want = declared(&containerfile());
    assert_eq!(config["Entrypoint"], serde_json::json!(want.entrypoint));
    assert_eq!(config["Cmd"], Value::Null);
    assert_eq!(config["User"], want.user.as_str());
    let exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .cloned()
        .collect();
    assert_eq!(exposed, want.ports);

    // Run it with the Deployment's flags, its storage a volume the image's
    // user owns, the root file system read-only.
    let storage = TempDir::new("container", "storage");
    std::os::unix::fs::chown(storage.path(), Some(UID), Some(UID)).expect("chown storage");
    let volume = format!("{}:{STORAGE}", storage.path().display());
    let nofile = ulimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 65536);
    let nproc = ulimit(nix::sys::resource::Resource::RLIMIT_NPROC, 4096);
    let name = format!("sce-container-test-{}", std::process::id());
    let mut run: Vec<&str> = vec![
        "run",
        "--detach",
        "--name",
        &name,
        "--read-only",
        "--network",
        "slirp4netns",
        "--publish",
        "127.0.0.1::9827/tcp",
        "--publish",
        "127.0.0.1::25827/udp",
        "--volume",
        &volume,
        "--ulimit",
    ];
    let nofile = format!("nofile={nofile}");
    let nproc = format!("nproc={nproc}");
    run.extend([nofile.as_str(), "--ulimit", nproc.as_str(), &tag]);
    let args = deployment_args();
    run.extend(args.iter().map(String::as_str));
    let container = Container {
        podman: &podman,
        id: podman.ok(&run),
    };

    // As the image's user, on a read-only root.
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert_eq!(
        uids.split_whitespace()
            .map(|u| u.parse::<u32>().expect("uid"))
            .collect::<Vec<_>>(),
        [UID; 4],
        "{status}"
    );
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("the root mount");
    let options = root.split_whitespace().nth(5).expect("mount options");
    assert!(options.split(',').any(|o| o == "ro"), "{root}");

    let http = container.published("9827/tcp");
    let udp = container.published("25827/udp");
    common::poll(Duration::from_secs(20), "the container's /-/ready", || {
        common::agent()
            .get(format!("http://{http}/-/ready"))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
    });

    // The real client, through the published UDP port.
    let mut app = App::start("checkout", udp.port(), HOST);
    let phases = [
        // (phase, checked out, checked in, connections, checkouts)
        ("init", 0, 0, 0, 0),
        ("three_out", 3, 0, 3, 3),
        ("one_returned", 2, 1, 3, 3),
    ];
    for (i, (phase, out, idle, open, checkouts)) in phases.into_iter().enumerate() {
        if i > 0 {
            app.next();
        }
        let report = app.report(phase);
        assert_eq!(report.live.len(), 1, "{report:?}");
        let v = &report.live[0];
        let series = series_of(v);
        // What the app's pool holds, and what this scenario is.
        assert_eq!(
            (
                series.checked_out,
                series.checked_in,
                series.connections,
                series.checkouts
            ),
            (out, idle, open, checkouts),
            "{phase}: {v:?}"
        );
        let want: Programs = [((HOST.to_owned(), v.program.clone()), series)].into();
        let s = common::scrape_until(
            http,
            &format!("phase {phase}: {series:?}"),
            PHASE_TIMEOUT,
            |s| shows(s, &want),
        );
        assert_eq!(
            common::sqla(
                &s,
                "sqlalchemy_connections_checked_out_peak",
                HOST,
                &v.program
            ),
            Some(if phase == "init" { 0.0 } else { 3.0 }),
            "{phase}"
        );
    }
    // Received on the listener the Deployment's flags name.
    let listener =
        "sqlalchemy_collectd_exporter_datagrams_received_total{listener=\"0.0.0.0:25827\"}";
    let s = common::samples(&common::scrape(http));
    assert!(s.get(listener).is_some_and(|n| *n >= 6.0), "{s:?}");
    drop(app);

    // A graceful stop (SIGTERM, as Kubernetes stops a pod) saves the counters
    // into the volume, written by the image's user.
    podman.ok(&["stop", "--time", "10", &container.id]);
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );
    let state = storage.path().join("state.json");
    let meta = std::fs::metadata(&state)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", state.display(), container.logs()));
    assert_eq!((meta.uid(), meta.gid()), (UID, UID));
    let saved = std::fs::read_to_string(&state).expect("state.json");
    assert!(saved.contains(HOST), "{saved}");
}
