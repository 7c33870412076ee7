//! `sqlalchemy-collectd-exporter top`: a connmon-style live view of a
//! running exporter, one row per host/program (or per host), read from its
//! `/api/v1/pools` document at every refresh; Enter on a program opens its
//! processes, read from `/api/v1/processes` the same way.
//!
//! `client` fetches the documents, `model` turns successive documents into
//! rows (peaks, deltas, rates) and applies the view (sort, filter, per-host,
//! selection, the process view), `render` draws a model into a ratatui
//! frame or as plain text (`--once`). This file holds the flags, the fetch
//! thread and the terminal loop.

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

    /// Show the processes of one program on one host (HOST/PROGRAM, split at the first /)
    /// instead of the programs; Esc goes to the programs.
    #[arg(long, value_name = "HOST/PROGRAM", value_parser = host_program)]
    pub processes: Option<(String, String)>,

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

fn host_program(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((host, program)) if !host.is_empty() && !program.is_empty() => {
            Ok((host.to_owned(), program.to_owned()))
        }
        _ => Err(format!("{s:?}: must be HOST/PROGRAM (e.g. web1/api)")),
    }
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
    /// `--once --processes`: the exporter refused the query (400) or does not
    /// know the host/program (404); the error names which.
    #[error("{0}")]
    Refused(FetchError),
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
    if let Some((host, program)) = &args.processes {
        model.open_processes(host, program);
    }
    if args.once {
        match &args.processes {
            Some((host, program)) => {
                let doc = client.fetch_processes(host, program).map_err(|e| {
                    if matches!(e.status, Some(400 | 404)) {
                        TopError::Refused(e)
                    } else {
                        TopError::Unreachable(e)
                    }
                })?;
                model.update_processes(&doc, SystemTime::now());
                if let Some(view) = &model.processes {
                    print!("{}", render::plain_processes(view));
                }
            }
            None => {
                let doc = client.fetch()?;
                model.update(&doc, SystemTime::now());
                print!("{}", render::plain(&model));
            }
        }
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let (targets, wanted) = mpsc::channel();
    let refresh = args.refresh;
    let first = model.target();
    // Fetches run beside the screen so keys stay responsive while the
    // exporter is slow or away; the thread ends when the screen is gone.
    std::thread::spawn(move || fetch_loop(&client, first, refresh, &tx, &wanted));
    let mut terminal = ratatui::try_init()?;
    let result = screen(&mut terminal, &mut model, &rx, &targets);
    ratatui::restore();
    result
}

/// What the fetch thread hands the screen.
enum Fetched {
    Pools(Result<crate::api::Pools, FetchError>, SystemTime),
    Processes(
        (String, String),
        Result<crate::api::processes::Processes, FetchError>,
        SystemTime,
    ),
}

/// Fetches what the screen shows (the pools document, or `target`'s
/// processes) every `refresh`, and at once when the screen asks for
/// another; ends when the screen is gone.
fn fetch_loop(
    client: &Client,
    mut target: Option<(String, String)>,
    refresh: Duration,
    tx: &mpsc::Sender<Fetched>,
    wanted: &mpsc::Receiver<Option<(String, String)>>,
) {
    loop {
        let fetched = match &target {
            None => Fetched::Pools(client.fetch(), SystemTime::now()),
            Some((host, program)) => Fetched::Processes(
                (host.clone(), program.clone()),
                client.fetch_processes(host, program),
                SystemTime::now(),
            ),
        };
        if tx.send(fetched).is_err() {
            return;
        }
        match wanted.recv_timeout(refresh) {
            Ok(next) => {
                target = next;
                // Only the last of several quick changes matters.
                while let Ok(next) = wanted.try_recv() {
                    target = next;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    model: &mut Model,
    rx: &mpsc::Receiver<Fetched>,
    targets: &mpsc::Sender<Option<(String, String)>>,
) -> Result<(), TopError> {
    let mut dirty = true;
    let mut target = model.target();
    loop {
        while let Ok(fetched) = rx.try_recv() {
            match fetched {
                Fetched::Pools(Ok(doc), at) => model.update(&doc, at),
                Fetched::Pools(Err(e), _) => model.failed(e.to_string()),
                Fetched::Processes(_, Ok(doc), at) => model.update_processes(&doc, at),
                Fetched::Processes((host, program), Err(e), _) => {
                    model.processes_failed(&host, &program, e.to_string())
                }
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
                    KeyCode::Up => Input::Up,
                    KeyCode::Down => Input::Down,
                    KeyCode::Tab => Input::Tab,
                    KeyCode::Enter => Input::Enter,
                    KeyCode::Esc => Input::Esc,
                    KeyCode::Backspace => Input::Backspace,
                    _ => continue,
                };
                if model.input(input) == Action::Quit {
                    return Ok(());
                }
                if model.target() != target {
                    target = model.target();
                    // The fetch thread is gone only with a broken screen.
                    let _ = targets.send(target.clone());
                }
                dirty = true;
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}
