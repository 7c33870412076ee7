//! What ships around the binary: `--version` (revision and build date), the
//! completion scripts (checked by the real shells), the manual page (checked by
//! groff and man), the systemd unit (checked by systemd-analyze) with its
//! environment and sysctl files, and the Dockerfile. Every tool is required: a
//! missing one fails the test (scripts/test.sh installs them).

mod common;

use clap::CommandFactory;
use common::{TempDir, repo};
use sqlalchemy_collectd_exporter::cli::Args;
use sqlalchemy_collectd_exporter::config::Config;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sqlalchemy-collectd-exporter");
const NAME: &str = "sqlalchemy-collectd-exporter";

/// Runs `program` with `stdin`, failing the test when it is not installed.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Output {
    run_with(Command::new(program).args(args), stdin)
}

fn run_with(command: &mut Command, stdin: &[u8]) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not run ({e}); scripts/test.sh installs it"));
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait")
}

/// stdout of a run that must succeed with nothing on stderr.
fn clean(what: &str, out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {}\n{stderr}", out.status);
    assert_eq!(stderr, "", "{what} complained");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn exporter(args: &[&str]) -> String {
    clean(&format!("{NAME} {args:?}"), run(BIN, args, b""))
}

/// Every long flag the binary takes, from its clap definition.
fn long_flags() -> Vec<String> {
    let cmd = Args::command();
    let mut flags: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(str::to_owned)
        .collect();
    flags.extend(["help", "version"].map(str::to_owned));
    flags
}

fn subcommands() -> Vec<String> {
    Args::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

fn git(args: &[&str]) -> String {
    let out = run_with(
        Command::new("git")
            .arg("-C")
            .arg(repo())
            .args(args)
            .env("TZ", "UTC"),
        b"",
    );
    clean(&format!("git {args:?}"), out).trim().to_owned()
}

fn gnu_date(args: &[&str]) -> String {
    clean(&format!("date {args:?}"), run("date", args, b""))
        .trim()
        .to_owned()
}

/// The date in `--version`.
fn built_date() -> String {
    let version = exporter(&["--version"]);
    let at = version.find(", built ").expect("build date in --version") + 8;
    version[at..at + 10].to_owned()
}

#[test]
fn version_names_the_revision_and_build_date() {
    let version = exporter(&["--version"]);
    let revision = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = built_date();
    assert_eq!(
        version,
        format!(
            "{NAME} {} (rev {revision}, built {date})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        date.len() == 10
            && date.chars().enumerate().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            }),
        "{date} is not YYYY-MM-DD"
    );
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) if !epoch.trim().is_empty() => {
            assert_eq!(
                date,
                gnu_date(&["-u", "-d", &format!("@{}", epoch.trim()), "+%F"])
            );
        }
        _ => {
            // build.rs runs again whenever HEAD moves, so the binary was built
            // after HEAD was committed, and not after today (UTC).
            let committed = git(&["log", "-1", "--format=%cd", "--date=format-local:%F"]);
            let today = gnu_date(&["-u", "+%F"]);
            assert!(
                committed <= date && date <= today,
                "built {date}: not between HEAD's commit {committed} and today {today}"
            );
        }
    }
}

/// How each shell's script names a long flag.
fn flag_in(shell: &str, flag: &str) -> String {
    match shell {
        "fish" => format!("-l {flag}"),
        _ => format!("--{flag}"),
    }
}

#[test]
fn completions_name_every_flag_and_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = exporter(&["completions", shell]);
        for flag in long_flags() {
            let needle = flag_in(shell, &flag);
            assert!(
                script.contains(&needle),
                "{shell} completion lacks {needle}"
            );
        }
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell} completion lacks {sub}");
        }
    }
}

#[test]
fn completions_pass_the_shells_syntax_checks() {
    let bash = exporter(&["completions", "bash"]);
    clean("bash -n", run("bash", &["-n"], bash.as_bytes()));
    let zsh = exporter(&["completions", "zsh"]);
    clean("zsh -n", run("zsh", &["-n"], zsh.as_bytes()));
    let fish = exporter(&["completions", "fish"]);
    clean(
        "fish --no-execute",
        run("fish", &["--no-execute"], fish.as_bytes()),
    );
}

#[test]
fn bash_completes_a_flag_prefix_to_the_binarys_flags() {
    let script = exporter(&["completions", "bash"]);
    // As bash calls the function the script registered (`complete -F`) when
    // Tab is pressed after `--web.`.
    let session = format!(
        "{script}\nspec=$(complete -p {NAME}); f=${{spec#*-F }}; f=${{f%% *}}\n\
         COMP_WORDS=({NAME} --web.); COMP_CWORD=1; COMP_LINE='{NAME} --web.'; \
         COMP_POINT=${{#COMP_LINE}}\n\"$f\" {NAME} --web. {NAME}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    );
    let offered: BTreeSet<String> = clean("bash", run("bash", &["--norc"], session.as_bytes()))
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = long_flags()
        .into_iter()
        .filter(|f| f.starts_with("web."))
        .map(|f| format!("--{f}"))
        .collect();
    assert_eq!(offered, expected);
}

#[test]
fn man_page_passes_groff_and_man_and_documents_every_flag() {
    let page = exporter(&["man"]);
    clean(
        "groff -man -z -ww",
        run("groff", &["-man", "-z", "-ww"], page.as_bytes()),
    );
    let text = clean(
        "man --warnings -l -",
        run_with(
            Command::new("man")
                .args([
                    "--warnings",
                    "--no-hyphenation",
                    "--no-justification",
                    "-l",
                    "-",
                ])
                .env("MANWIDTH", "200")
                .env("LC_ALL", "C")
                .env("MANPAGER", "cat"),
            page.as_bytes(),
        ),
    );
    let entries: Vec<&str> = text.lines().map(str::trim_start).collect();
    for flag in long_flags() {
        // An OPTIONS entry starts its line with the flag (`-h, --help` with the short one).
        let documented = entries.iter().any(|l| {
            l.starts_with(&format!("--{flag}"))
                || l.split_once(", ")
                    .is_some_and(|(_, rest)| rest.starts_with(&format!("--{flag}")))
        });
        assert!(documented, "no OPTIONS entry for --{flag} in\n{text}");
    }
    for sub in subcommands() {
        assert!(
            entries
                .iter()
                .any(|l| l.starts_with(&format!("{NAME}-{sub}("))),
            "{sub} in\n{text}"
        );
    }
    for heading in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SIGNALS",
        "EXIT STATUS",
        "VERSION",
    ] {
        assert!(
            text.lines().any(|l| l == heading),
            "section {heading} in\n{text}"
        );
    }
    let title = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect(".TH line");
    assert_eq!(
        title,
        format!(
            ".TH {NAME} 1 {} \"{NAME} {}\" ",
            built_date(),
            env!("CARGO_PKG_VERSION")
        )
    );
}

fn systemd_dir() -> PathBuf {
    repo().join("examples/systemd")
}

/// The example unit with ExecStart pointed at the binary under test, and the
/// manual page where `man` finds it (verify follows Documentation=man:…).
fn installed_unit(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(systemd_dir().join(format!("{NAME}.service")))
        .expect("read the unit");
    let exec = format!("ExecStart=/usr/local/bin/{NAME} ");
    assert_eq!(
        unit.matches(&exec).count(),
        1,
        "one ExecStart of /usr/local/bin"
    );
    let unit = unit.replace(&exec, &format!("ExecStart={BIN} "));
    let path = dir.join(format!("{NAME}.service"));
    std::fs::write(&path, unit).expect("write unit");
    let man1 = dir.join("man/man1");
    std::fs::create_dir_all(&man1).expect("man dir");
    std::fs::write(man1.join(format!("{NAME}.1")), exporter(&["man"])).expect("write man page");
    path
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("packaging", "verify");
    let unit = installed_unit(&dir.0);
    let out = run_with(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .env("MANPATH", dir.0.join("man"))
            .current_dir(&dir.0),
        b"",
    );
    // Unknown keys and bad values are warnings on stderr with exit status 0.
    clean("systemd-analyze verify", out);
}

#[test]
fn systemd_unit_is_locked_down() {
    let dir = TempDir::new("packaging", "security");
    let unit = installed_unit(&dir.0);
    let out = run_with(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit)
            .current_dir(&dir.0),
        b"",
    );
    let report = clean("systemd-analyze security --offline=yes", out);
    for passed in [
        "User=/DynamicUser=",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
        "ProtectKernelLogs=",
        "ProtectControlGroups=",
        "RestrictAddressFamilies=~AF_NETLINK",
        "RestrictAddressFamilies=~AF_PACKET",
        "RestrictNamespaces=~user",
        "LockPersonality=",
        "MemoryDenyWriteExecute=",
        "SystemCallFilter=~@privileged",
        "CapabilityBoundingSet=~CAP_NET_ADMIN",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "AmbientCapabilities=",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("✓ {passed} "))),
            "{passed} not passed in\n{report}"
        );
    }
    // Only what a network service needs stays exposed (sockets, the host's
    // network and root directory): "OK" in systemd's terms is below 2.
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split(": ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("overall exposure level");
    assert!(score < 2.0, "exposure {score} in\n{report}");
}

/// The ARGS examples in the environment file are flags the binary accepts.
#[test]
fn environment_file_examples_parse() {
    let text = std::fs::read_to_string(systemd_dir().join(format!("{NAME}.default")))
        .expect("read the environment file");
    let mut examples = 0;
    for line in text.lines() {
        let Some(value) = line.trim_start_matches(['#', ' ']).strip_prefix("ARGS=") else {
            continue;
        };
        let args = value.trim_matches('"');
        let parsed = Config::try_parse_from(std::iter::once(NAME).chain(args.split_whitespace()));
        assert!(parsed.is_ok(), "{line}: {:?}", parsed.err());
        examples += 1;
    }
    assert_eq!(examples, text.matches("ARGS=").count());
    assert!(examples > 1, "no ARGS examples");
}

/// The sysctl file lets the default receive buffer be granted without CAP_NET_ADMIN.
#[test]
fn sysctl_file_allows_the_default_udp_buffer() {
    let text = std::fs::read_to_string(systemd_dir().join(format!("{NAME}.sysctl.conf")))
        .expect("read the sysctl file");
    let values: Vec<usize> = text
        .lines()
        .filter_map(|l| l.strip_prefix("net.core.rmem_max = "))
        .map(|v| v.parse().expect("a number of bytes"))
        .collect();
    let default = Config::try_parse_from([NAME]).expect("defaults").udp_buffer;
    assert_eq!(values, vec![default]);
}

/// The image exposes the default listen ports.
#[test]
fn dockerfile_exposes_the_default_ports() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    let c = Config::try_parse_from([NAME]).expect("defaults");
    let udp = c.collectd_listen[0].socket_addr(false).0.port();
    let http = c.web_listen[0].socket_addr(false).0.port();
    let expose: Vec<&str> = text.lines().filter(|l| l.starts_with("EXPOSE ")).collect();
    assert_eq!(expose, vec![format!("EXPOSE {udp}/udp {http}").as_str()]);
    let entry: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ENTRYPOINT "))
        .collect();
    assert_eq!(
        entry,
        vec![format!("ENTRYPOINT [\"/usr/local/bin/{NAME}\"]").as_str()]
    );
}
