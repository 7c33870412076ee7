//! `--config.file`: pool capacities and databases become
//! `sqlalchemy_connections_max` and the database families; reloads through
//! POST /-/reload keep the old configuration when the new one is bad; the
//! `check-config` subcommand validates without starting.

mod common;

use common::sqla;
use sqlalchemy_collectd_exporter::collectd::{Encoder, Identity, Value};
use std::path::PathBuf;

/// A config file in a directory of its own (removed with the directory).
fn temp_file(name: &str, text: &str) -> (common::TempDir, PathBuf) {
    let dir = common::TempDir::new("config", name);
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// A process of `program` on `host` with `numpools` pools and `connections` open.
fn pool(host: &str, program: &str, token: &str, numpools: f64, connections: f64) -> Vec<u8> {
    let id = Identity {
        host: host.into(),
        plugin: "sqlalchemy".into(),
        plugin_instance: program.into(),
        type_: "sqlalchemy_pool".into(),
        type_instance: token.into(),
    };
    let values = [numpools, connections, 0.0, 0.0, connections].map(Value::Gauge);
    Encoder::new()
        .client_value_list(&id, 100, 2, &values)
        .finish()
        .to_vec()
}

const POOL_SIZE: u64 = 5;
const MAX_OVERFLOW: u64 = 10;
const MAX_CONNECTIONS: u64 = 100;

fn config(pool_size: u64) -> String {
    format!(
        "pools:\n  - programs: ['api*']\n    hosts: ['web*']\n    pool_size: {pool_size}\n    max_overflow: {MAX_OVERFLOW}\n\
         databases:\n  - name: main\n    max_connections: {MAX_CONNECTIONS}\n    programs: ['api*', 'worker']\n"
    )
}

#[test]
fn capacity_and_databases_follow_the_config_file_and_reload() {
    let (_dir, path) = temp_file("reload", &config(POOL_SIZE));
    let e = common::start(&["--config.file", path.to_str().expect("path")]);
    let datagrams = vec![
        pool("web1", "api", "1:aaaaaa", 2.0, 7.0),
        pool("web1", "api", "2:bbbbbb", 1.0, 3.0),
        pool("db1", "api", "3:cccccc", 1.0, 4.0),
        pool("web2", "worker", "4:dddddd", 1.0, 6.0),
        pool("web2", "other", "5:eeeeee", 1.0, 9.0),
    ];
    let s = common::samples(&common::send_and_settle(&e, &datagrams, datagrams.len()));
    // web1/api: (pool_size + max_overflow) × its 3 live pools; db1 is not a web* host.
    let per_pool = (POOL_SIZE + MAX_OVERFLOW) as f64;
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_max", "web1", "api"),
        Some(per_pool * 3.0)
    );
    assert_eq!(sqla(&s, "sqlalchemy_connections_max", "db1", "api"), None);
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_max", "web2", "worker"),
        None
    );
    // main: every api* and worker program, on any host.
    assert_eq!(
        s["sqlalchemy_database_connections{database=\"main\"}"],
        7.0 + 3.0 + 4.0 + 6.0
    );
    assert_eq!(
        s["sqlalchemy_database_connections_max{database=\"main\"}"],
        MAX_CONNECTIONS as f64
    );
    assert_eq!(
        s["sqlalchemy_collectd_exporter_config_last_reload_successful"],
        1.0
    );

    // A valid change applies at once.
    std::fs::write(&path, config(POOL_SIZE + 1)).expect("rewrite");
    let r = common::post(e.http, "/-/reload", b"");
    assert_eq!(
        r,
        (
            200,
            format!(
                "config file {}: reloaded (1 pool entries, 1 databases)\n",
                path.display()
            )
        )
    );
    let s = common::samples(&common::scrape(e.http));
    let per_pool = (POOL_SIZE + 1 + MAX_OVERFLOW) as f64;
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_max", "web1", "api"),
        Some(per_pool * 3.0)
    );

    // A bad file is refused with its line and key; the last good one stays.
    std::fs::write(&path, "pools:\n  - programs: ['api*']\n    pool_sise: 5\n").expect("rewrite");
    let (code, text) = common::post(e.http, "/-/reload", b"");
    assert_eq!(code, 500);
    assert_eq!(
        text,
        format!(
            "config file: not reloaded, the last good one stays: {}:3:5: pools[0]: unknown field `pool_sise`, expected one of `programs`, `hosts`, `pool_size`, `max_overflow`\n",
            path.display()
        )
    );
    let s = common::samples(&common::scrape(e.http));
    assert_eq!(
        s["sqlalchemy_collectd_exporter_config_last_reload_successful"],
        0.0
    );
    assert_eq!(
        sqla(&s, "sqlalchemy_connections_max", "web1", "api"),
        Some(per_pool * 3.0)
    );
    common::promtool_check(common::scrape(e.http).as_bytes());
}

#[test]
fn no_config_file_exports_no_capacity() {
    let e = common::start(&[]);
    let s = common::samples(&common::send_and_settle(
        &e,
        &[pool("web1", "api", "1:aaaaaa", 1.0, 1.0)],
        1,
    ));
    assert!(
        !s.keys().any(|k| k.starts_with("sqlalchemy_connections_max")
            || k.starts_with("sqlalchemy_database_"))
    );
    // Reloading without a file is a no-op that succeeds.
    assert_eq!(common::post(e.http, "/-/reload", b"").0, 200);
}

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");

#[test]
fn check_config_validates_without_starting() {
    let (_good_dir, good) = temp_file("check-good", &config(POOL_SIZE));
    let out = std::process::Command::new(BIN)
        .args(["check-config", good.to_str().expect("path")])
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: valid (1 pool entries, 1 databases)\n", good.display())
    );
    let (_bad_dir, bad) = temp_file(
        "check-bad",
        "databases:\n  - name: main\n    max_connections: lots\n    programs: [x]\n",
    );
    let out = std::process::Command::new(BIN)
        .args(["check-config", bad.to_str().expect("path")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: {}:3:22: databases[0].max_connections: invalid type: string \"lots\"",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn a_bad_config_file_stops_start_up_naming_file_and_line() {
    let (_bad_dir, bad) = temp_file(
        "startup-bad",
        "pools: [{programs: [a], pool_size: 1, max_overflow: 1, size: 3}]\n",
    );
    let out = std::process::Command::new(BIN)
        .args([
            "--collectd.listen-address",
            "127.0.0.1:0",
            "--web.listen-address",
            "127.0.0.1:0",
            "--config.file",
            bad.to_str().expect("path"),
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().expect("an error line");
    assert!(
        last.starts_with(&format!("error: config file: {}:1:", bad.display())),
        "{last}"
    );
    assert!(last.contains("unknown field `size`"), "{last}");
}
