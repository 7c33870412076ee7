//! The binary: flags → `Config`, logging, the soft open-file limit raised to
//! the hard one, bind every listener (and write the ready file), serve until
//! SIGINT or SIGTERM; SIGHUP reloads every file. A bad flag, an address that
//! cannot be bound or a ready file that cannot be written exits non-zero
//! with a one-line reason.

use anyhow::Context;
use clap::error::ErrorKind;
use sqlalchemy_collectd_exporter::cli::{Args, Command};
use sqlalchemy_collectd_exporter::config::file::Capacity;
use sqlalchemy_collectd_exporter::config::web::WebConfig;
use sqlalchemy_collectd_exporter::config::{Config, LogFormat, LogLevel};
use sqlalchemy_collectd_exporter::manual;
use sqlalchemy_collectd_exporter::server;
use sqlalchemy_collectd_exporter::store::Now;
use std::process::ExitCode;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    sqlalchemy_collectd_exporter::memory::return_large_buffers_to_the_system();
    let args = match <Args as clap::Parser>::try_parse() {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // clap's first line says what was wrong; the usage block after it is noise in logs.
            let text = e.to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Completions { shell }) = &args.command {
        return write_stdout(&manual::completions(*shell));
    }
    if let Some(Command::Man) = &args.command {
        return write_stdout(&manual::man_page());
    }
    if let Some(Command::CheckConfig { file }) = &args.command {
        return match Capacity::load(file) {
            Ok(c) => {
                println!("{}: valid ({})", file.display(), c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Top(top)) = &args.command {
        return match sqlalchemy_collectd_exporter::top::run(top) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::CheckWebConfig { file }) = &args.command {
        return check_web_config(file);
    }
    let config = Config::from(args);
    init_logging(config.log_level, config.log_format);
    match server::raise_open_file_limit() {
        Ok(l) if l.soft > l.soft_before => tracing::info!(
            soft_before = l.soft_before,
            soft = l.soft,
            hard = l.hard,
            "raised the open file limit"
        ),
        Ok(l) => tracing::info!(soft = l.soft, hard = l.hard, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit; keeping it"),
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes generated text to stdout; a closed pipe or full disk is one line on stderr.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `check-web-config FILE`: the file and the certificates it names load.
fn check_web_config(file: &std::path::Path) -> ExitCode {
    let checked = WebConfig::load(file).and_then(|c| match &c.tls {
        Some(tls) => tls.server_config().map(|_| c),
        None => Ok(c),
    });
    match checked {
        Ok(c) => {
            println!("{}: valid ({})", file.display(), c.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Handled from before the ready file is written: a signal sent as soon
        // as it appears must reload or stop, not kill (the default action).
        let handler = |kind| signal(kind).context("installing the signal handlers");
        let mut hup = handler(SignalKind::hangup())?;
        let stop = [
            handler(SignalKind::terminate())?,
            handler(SignalKind::interrupt())?,
        ];
        let bound = server::bind(&config)?;
        let ready = match &config.ready_file {
            Some(path) => Some(server::ReadyFile::write(path, &bound)?),
            None => None,
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "started");
        let reloader = bound.reloader.clone();
        tokio::spawn(async move {
            // The same reload as POST /-/reload; it logs each file's outcome.
            while hup.recv().await.is_some() {
                reloader.reload(Now::wall().unix);
            }
        });
        server::run(
            bound,
            &config.telemetry_path,
            &config.push_path,
            shutdown_signal(stop),
        )
        .await?;
        // Removed once every listener is closed: no file, nothing listening.
        drop(ready);
        Ok(())
    })
}

/// The first SIGTERM or SIGINT.
async fn shutdown_signal([mut term, mut int]: [Signal; 2]) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("sqlalchemy_collectd_exporter", level)
        .with_default(tracing::Level::WARN);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_target(false)
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
