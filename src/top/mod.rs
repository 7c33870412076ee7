//! `sqlalchemy-collectd-exporter top`: a connmon-style live view of a
//! running exporter, one row per host/program (or per host), read from its
//! `/api/v1/pools` document at every refresh.
//!
//! `client` fetches the document, `model` turns successive documents into
//! rows (peaks, deltas, rates) and applies the view (sort, filter, per-host),
//! `render` draws a model into a ratatui frame or as plain text (`--once`).
//! This file holds the flags and the terminal loop.

pub mod client;
pub mod model;
pub mod render;

use client::{Client, FetchError, Options, SetupError};
use model::{Action, Input, Model};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// `top`'s flags.
#[derive(Clone, Debug, clap::Args)]
pub struct TopArgs {
    /// The exporter's web address (http:// or https://).
    #[arg(long, value_name = "URL", default_value = "http://localhost:9827")]
    pub url: String,

    /// Time between fetches (e.g. 2s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = refresh)]
    pub refresh: Duration,

    /// Print one plain-text table and exit (non-zero when the exporter cannot be reached).
    #[arg(long)]
    pub once: bool,

    /// PEM file with the CA certificate(s) to trust for an https:// URL.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM file with the client certificate (chain) to present to an exporter that requires one.
    #[arg(long = "cert-file", value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,

    /// PEM file with the private key of --cert-file.
    #[arg(long = "key-file", value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,

    /// Basic-auth user; the password comes from --password-file or the environment variable
    /// SQLALCHEMY_COLLECTD_EXPORTER_PASSWORD.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// File whose first line is the basic-auth password.
    #[arg(long = "password-file", value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
}

fn refresh(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 2s, 500ms)"))?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s:?}: must be at least 100ms"));
    }
    Ok(d)
}

/// Why `top` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// `--once` could not fetch.
    #[error("exporter unreachable: {0}")]
    Unreachable(#[from] FetchError),
    /// The terminal could not be set up, read or drawn.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Runs `top` until `q` (or, with `--once`, for one fetch).
pub fn run(args: &TopArgs) -> Result<(), TopError> {
    let client = Client::new(&Options {
        url: args.url.clone(),
        ca_file: args.ca_file.clone(),
        cert_file: args.cert_file.clone(),
        key_file: args.key_file.clone(),
        user: args.user.clone(),
        password_file: args.password_file.clone(),
        password_env: std::env::var(client::PASSWORD_ENV).ok(),
        // A slow exporter must not hold the screen for long.
        timeout: args
            .refresh
            .clamp(Duration::from_secs(2), Duration::from_secs(10)),
    })?;
    let mut model = Model::new(&args.url);
    if args.once {
        let doc = client.fetch()?;
        model.update(&doc, SystemTime::now());
        print!("{}", render::plain(&model));
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let refresh = args.refresh;
    // Fetches run beside the screen so keys stay responsive while the
    // exporter is slow or away; the thread ends when the screen is gone.
    std::thread::spawn(move || {
        loop {
            let result = client.fetch();
            if tx.send((result, SystemTime::now())).is_err() {
                return;
            }
            std::thread::sleep(refresh);
        }
    });
    let mut terminal = ratatui::try_init()?;
    let result = screen(&mut terminal, &mut model, &rx);
    ratatui::restore();
    result
}

type Fetched = (Result<crate::api::Pools, FetchError>, SystemTime);

fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    model: &mut Model,
    rx: &mpsc::Receiver<Fetched>,
) -> Result<(), TopError> {
    let mut dirty = true;
    loop {
        while let Ok((result, at)) = rx.try_recv() {
            match result {
                Ok(doc) => model.update(&doc, at),
                Err(e) => model.failed(e.to_string()),
            }
            dirty = true;
        }
        if dirty {
            terminal.draw(|frame| render::render(frame, model))?;
            dirty = false;
        }
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                let input = match key.code {
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        Input::Interrupt
                    }
                    KeyCode::Char(c) => Input::Char(c),
                    KeyCode::Left => Input::Left,
                    KeyCode::Right => Input::Right,
                    KeyCode::Tab => Input::Tab,
                    KeyCode::Enter => Input::Enter,
                    KeyCode::Esc => Input::Esc,
                    KeyCode::Backspace => Input::Backspace,
                    _ => continue,
                };
                if model.input(input) == Action::Quit {
                    return Ok(());
                }
                dirty = true;
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}
