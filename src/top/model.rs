//! What `top` shows, without a terminal: each fetched [`Pools`] document
//! becomes rows per host/program and per host, with the peaks seen during
//! this session, the change since the previous refresh and counter rates;
//! the view (sort column, direction, per-host, filter, selected row) picks
//! and orders them, and keys change the view. Enter on a program's row opens
//! its [`ProcessView`], fed by the `/api/v1/processes` document; Esc goes
//! back. Rendering (`render.rs`) only reads a [`Model`].

use crate::api::processes::Processes;
use crate::api::{Pools, Program, ProgramState};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::SystemTime;

/// A row's identity: host, and program (`None` for a per-host row).
pub type Key = (String, Option<String>);

/// The table's columns, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Host,
    Program,
    State,
    Age,
    Processes,
    Connections,
    CheckedOut,
    CheckoutsRate,
    InvalidationsRate,
    Usage,
}

impl Column {
    pub const ALL: [Column; 10] = [
        Column::Host,
        Column::Program,
        Column::State,
        Column::Age,
        Column::Processes,
        Column::Connections,
        Column::CheckedOut,
        Column::CheckoutsRate,
        Column::InvalidationsRate,
        Column::Usage,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Host => "HOST",
            Column::Program => "PROGRAM",
            Column::State => "STATE",
            Column::Age => "AGE/INT",
            Column::Processes => "PROCS",
            Column::Connections => "CONNS",
            Column::CheckedOut => "OUT",
            Column::CheckoutsRate => "CKOUT/S",
            Column::InvalidationsRate => "INVAL/S",
            Column::Usage => "USE%",
        }
    }

    /// Text columns are left-aligned, numbers right-aligned.
    pub fn numeric(self) -> bool {
        !matches!(self, Column::Host | Column::Program | Column::State)
    }

    fn index(self) -> usize {
        Column::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Column {
        let n = Column::ALL.len() as isize;
        Column::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub host: String,
    /// `None` for a per-host row.
    pub program: Option<String>,
    /// Programs summed into this row (1 for a program row).
    pub programs: usize,
    pub state: ProgramState,
    pub age_seconds: f64,
    pub interval_seconds: f64,
    pub processes: u64,
    pub processes_peak: u64,
    pub connections: f64,
    pub connections_peak: f64,
    /// Change since the previous refresh; `None` on the first one.
    pub connections_delta: Option<f64>,
    pub checked_out: f64,
    pub checked_out_peak: f64,
    pub checked_out_delta: Option<f64>,
    /// Per second between the last two refreshes (by the exporter's clock);
    /// `None` on the first refresh and after a counter went down (the
    /// exporter restarted or a program was forgotten).
    pub checkouts_rate: Option<f64>,
    pub invalidations_rate: Option<f64>,
    /// Configured capacity (`connections_max`), where there is one.
    pub capacity: Option<f64>,
    /// checked_out / capacity.
    pub usage: Option<f64>,
}

impl Row {
    pub fn late(&self) -> bool {
        self.state == ProgramState::Late
    }

    /// What a row of this column is sorted by.
    fn compare(&self, other: &Row, column: Column) -> Ordering {
        let f = |a: f64, b: f64| a.total_cmp(&b);
        let o = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        };
        match column {
            Column::Host => Ordering::Equal,
            Column::Program => match (&self.program, &other.program) {
                (Some(a), Some(b)) => a.cmp(b),
                _ => self.programs.cmp(&other.programs),
            },
            Column::State => state_rank(self.state).cmp(&state_rank(other.state)),
            Column::Age => f(self.age_seconds, other.age_seconds),
            Column::Processes => self.processes.cmp(&other.processes),
            Column::Connections => f(self.connections, other.connections),
            Column::CheckedOut => f(self.checked_out, other.checked_out),
            Column::CheckoutsRate => o(self.checkouts_rate, other.checkouts_rate),
            Column::InvalidationsRate => o(self.invalidations_rate, other.invalidations_rate),
            Column::Usage => o(self.usage, other.usage),
        }
    }
}

fn state_rank(s: ProgramState) -> u8 {
    match s {
        ProgramState::Live => 0,
        ProgramState::Late => 1,
        ProgramState::Dead => 2,
    }
}

/// Whether the last fetch worked.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Nothing fetched yet.
    Connecting,
    Ok,
    Unreachable {
        /// The one-line reason of the last failure.
        error: String,
        /// When a fetch last worked (this machine's clock).
        last_success: Option<SystemTime>,
    },
}

/// How rows are picked and ordered.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub sort: Column,
    pub descending: bool,
    pub per_host: bool,
    /// Case-insensitive substring of the host or the program.
    pub filter: String,
    /// The filter being typed after `/`; `None` when not typing.
    pub editing: Option<String>,
    /// The row `↑`/`↓` moved to; the first one shown when `None` or gone.
    pub selected: Option<Key>,
}

impl Default for View {
    fn default() -> Self {
        View {
            sort: Column::Host,
            descending: false,
            per_host: false,
            filter: String::new(),
            editing: None,
            selected: None,
        }
    }
}

/// A key, as the model understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Char(char),
    Left,
    Right,
    Up,
    Down,
    Tab,
    Enter,
    Esc,
    Backspace,
    /// Ctrl-C: quits even while typing a filter.
    Interrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

/// Last values of a row, for deltas and rates.
#[derive(Clone, Copy, Debug)]
struct Previous {
    server_time: f64,
    connections: f64,
    checked_out: f64,
    checkouts: u64,
    invalidations: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Peaks {
    processes: u64,
    connections: f64,
    checked_out: f64,
}

/// Everything `top` knows.
#[derive(Clone, Debug)]
pub struct Model {
    /// The exporter's address, as given.
    pub url: String,
    pub status: Status,
    pub view: View,
    /// From the last document.
    pub exporter_version: String,
    pub server_time_unix: f64,
    program_rows: Vec<Row>,
    host_rows: Vec<Row>,
    last_success: Option<SystemTime>,
    previous: HashMap<Key, Previous>,
    peaks: HashMap<Key, Peaks>,
    /// The process view, while it is open.
    pub processes: Option<ProcessView>,
}

/// A row before the session's history is applied.
struct Raw {
    key: Key,
    programs: usize,
    state: ProgramState,
    age_seconds: f64,
    interval_seconds: f64,
    processes: u64,
    connections: f64,
    checked_out: f64,
    checkouts: u64,
    invalidations: u64,
    capacity: Option<f64>,
    /// The exporter's peaks (connections, checked out) of a program row;
    /// a host row's are its own sums' (the programs' peaks need not have
    /// been at the same moment).
    peak: Option<[f64; 2]>,
}

impl Raw {
    fn program(p: &Program) -> Raw {
        Raw {
            key: (p.host.clone(), Some(p.program.clone())),
            programs: 1,
            state: p.state,
            age_seconds: p.age_seconds,
            interval_seconds: p.interval_seconds,
            processes: p.processes,
            connections: p.connections,
            checked_out: p.checked_out,
            checkouts: p.checkouts,
            invalidations: p.invalidations,
            capacity: p.connections_max,
            peak: Some([p.connections_peak, p.checked_out_peak]),
        }
    }

    /// Sums one host's programs (sorted by host in the document). Its state
    /// and age are those of its worst program (late before live, dead only
    /// when every program is), so a late program turns its host red; its
    /// capacity is known only when every program has one.
    fn hosts(programs: &[Program]) -> Vec<Raw> {
        let mut out: Vec<Raw> = Vec::new();
        let mut worst: Vec<&Program> = Vec::new();
        for p in programs {
            match out.last_mut() {
                Some(h) if h.key.0 == p.host => {
                    h.programs += 1;
                    h.processes += p.processes;
                    h.connections += p.connections;
                    h.checked_out += p.checked_out;
                    h.checkouts = h.checkouts.saturating_add(p.checkouts);
                    h.invalidations = h.invalidations.saturating_add(p.invalidations);
                    h.capacity = h.capacity.zip(p.connections_max).map(|(a, b)| a + b);
                    if let Some(w) = worst.last_mut()
                        && worse(p, w)
                    {
                        *w = p;
                    }
                }
                _ => {
                    let mut h = Raw::program(p);
                    h.key.1 = None;
                    h.peak = None;
                    out.push(h);
                    worst.push(p);
                }
            }
        }
        for (h, w) in out.iter_mut().zip(worst) {
            h.state = if h.processes == 0 {
                ProgramState::Dead
            } else if w.state == ProgramState::Late {
                ProgramState::Late
            } else {
                ProgramState::Live
            };
            h.age_seconds = w.age_seconds;
            h.interval_seconds = w.interval_seconds;
        }
        out
    }
}

/// Whether `a` says more about its host's health than `b`.
fn worse(a: &Program, b: &Program) -> bool {
    let rank = |p: &Program| match p.state {
        ProgramState::Dead => 0,
        ProgramState::Live => 1,
        ProgramState::Late => 2,
    };
    (rank(a), a.age_seconds) > (rank(b), b.age_seconds)
}

impl Model {
    pub fn new(url: &str) -> Model {
        Model {
            url: url.to_owned(),
            status: Status::Connecting,
            view: View::default(),
            exporter_version: String::new(),
            server_time_unix: 0.0,
            program_rows: Vec::new(),
            host_rows: Vec::new(),
            last_success: None,
            previous: HashMap::new(),
            peaks: HashMap::new(),
            processes: None,
        }
    }

    /// A fetch worked at `at` (this machine's clock).
    pub fn update(&mut self, doc: &Pools, at: SystemTime) {
        let t = doc.server_time_unix;
        let programs: Vec<Raw> = doc.programs.iter().map(Raw::program).collect();
        let hosts = Raw::hosts(&doc.programs);
        let mut previous = HashMap::with_capacity(programs.len() + hosts.len());
        self.program_rows = programs
            .into_iter()
            .map(|r| self.row(r, t, &mut previous))
            .collect();
        self.host_rows = hosts
            .into_iter()
            .map(|r| self.row(r, t, &mut previous))
            .collect();
        self.previous = previous;
        self.exporter_version = doc.exporter.version.clone();
        self.server_time_unix = t;
        self.last_success = Some(at);
        self.status = Status::Ok;
    }

    /// A fetch failed; the rows are kept for when the exporter comes back.
    pub fn failed(&mut self, error: String) {
        self.status = Status::Unreachable {
            error,
            last_success: self.last_success,
        };
    }

    fn row(&mut self, r: Raw, t: f64, next: &mut HashMap<Key, Previous>) -> Row {
        let prev = self.previous.get(&r.key).copied();
        let peaks = self.peaks.entry(r.key.clone()).or_default();
        peaks.processes = peaks.processes.max(r.processes);
        let [connections, checked_out] = r.peak.unwrap_or([r.connections, r.checked_out]);
        peaks.connections = peaks.connections.max(connections).max(r.connections);
        peaks.checked_out = peaks.checked_out.max(checked_out).max(r.checked_out);
        let rate = |now: u64, before: fn(&Previous) -> u64| {
            let p = prev?;
            let dt = t - p.server_time;
            let before = before(&p);
            (dt > 0.0 && now >= before).then(|| (now - before) as f64 / dt)
        };
        let row = Row {
            host: r.key.0.clone(),
            program: r.key.1.clone(),
            programs: r.programs,
            state: r.state,
            age_seconds: r.age_seconds,
            interval_seconds: r.interval_seconds,
            processes: r.processes,
            processes_peak: peaks.processes,
            connections: r.connections,
            connections_peak: peaks.connections,
            connections_delta: prev.map(|p| r.connections - p.connections),
            checked_out: r.checked_out,
            checked_out_peak: peaks.checked_out,
            checked_out_delta: prev.map(|p| r.checked_out - p.checked_out),
            checkouts_rate: rate(r.checkouts, |p| p.checkouts),
            invalidations_rate: rate(r.invalidations, |p| p.invalidations),
            capacity: r.capacity,
            usage: r.capacity.filter(|c| *c > 0.0).map(|c| r.checked_out / c),
        };
        next.insert(
            r.key,
            Previous {
                server_time: t,
                connections: r.connections,
                checked_out: r.checked_out,
                checkouts: r.checkouts,
                invalidations: r.invalidations,
            },
        );
        row
    }

    /// Hosts and programs in the last document.
    pub fn counts(&self) -> (usize, usize) {
        (self.host_rows.len(), self.program_rows.len())
    }

    /// The rows the view shows, in its order.
    pub fn rows(&self) -> Vec<&Row> {
        let source = if self.view.per_host {
            &self.host_rows
        } else {
            &self.program_rows
        };
        let filter = self.view.filter.to_lowercase();
        let matches = |r: &Row| {
            if filter.is_empty() || r.host.to_lowercase().contains(&filter) {
                return true;
            }
            match &r.program {
                Some(p) => p.to_lowercase().contains(&filter),
                // A host row matches when one of its programs does.
                None => self.program_rows.iter().any(|p| {
                    p.host == r.host
                        && p.program
                            .as_deref()
                            .is_some_and(|p| p.to_lowercase().contains(&filter))
                }),
            }
        };
        let mut rows: Vec<&Row> = source.iter().filter(|r| matches(r)).collect();
        let (column, descending) = (self.view.sort, self.view.descending);
        rows.sort_by(|a, b| {
            let primary = a.compare(b, column);
            let primary = if descending {
                primary.reverse()
            } else {
                primary
            };
            // Ties (and the host column itself) go by host, then program.
            let tie = (&a.host, &a.program).cmp(&(&b.host, &b.program));
            let tie = if descending && column == Column::Host {
                tie.reverse()
            } else {
                tie
            };
            primary.then(tie)
        });
        rows
    }

    /// Where the selected row is in [`Model::rows`]; `None` without rows.
    pub fn selected(&self) -> Option<usize> {
        let rows = self.rows();
        if rows.is_empty() {
            return None;
        }
        let at = self.view.selected.as_ref().and_then(|key| {
            rows.iter()
                .position(|r| r.host == key.0 && r.program == key.1)
        });
        Some(at.unwrap_or(0))
    }

    fn select(&mut self, by: isize) {
        let Some(at) = self.selected() else { return };
        let rows = self.rows();
        let to = (at as isize + by).clamp(0, rows.len() as isize - 1) as usize;
        let key = (rows[to].host.clone(), rows[to].program.clone());
        self.view.selected = Some(key);
    }

    /// The host/program whose processes are shown, if the view is open:
    /// what the fetches are for.
    pub fn target(&self) -> Option<(String, String)> {
        self.processes
            .as_ref()
            .map(|p| (p.host.clone(), p.program.clone()))
    }

    /// Opens the process view of `host`/`program`.
    pub fn open_processes(&mut self, host: &str, program: &str) {
        self.processes = Some(ProcessView::new(host, program));
    }

    /// A processes document fetched at `at`; one of a host/program no
    /// longer shown is dropped.
    pub fn update_processes(&mut self, doc: &Processes, at: SystemTime) {
        if let Some(view) = &mut self.processes
            && view.host == doc.host
            && view.program == doc.program
        {
            view.update(doc, at);
        }
    }

    /// The fetch of `host`/`program`'s processes failed.
    pub fn processes_failed(&mut self, host: &str, program: &str, error: String) {
        if let Some(view) = &mut self.processes
            && view.host == host
            && view.program == program
        {
            view.status = Status::Unreachable {
                error,
                last_success: view.last_success,
            };
        }
    }

    /// Applies a key: `←`/`→` (or `<`/`>`) pick the sort column, `r`
    /// reverses it, `h` or Tab toggles the per-host view, `/` types a filter
    /// (Enter keeps it, Esc drops it), Esc clears the filter, `↑`/`↓` select
    /// a row, Enter opens a program row's processes, `q` quits. In the
    /// process view: `↑`/`↓` select, Esc goes back, `q` quits.
    pub fn input(&mut self, key: Input) -> Action {
        if key == Input::Interrupt {
            return Action::Quit;
        }
        if let Some(processes) = &mut self.processes {
            match key {
                Input::Char('q') => return Action::Quit,
                Input::Esc => self.processes = None,
                Input::Up => processes.selected = processes.selected.saturating_sub(1),
                Input::Down => {
                    processes.selected =
                        (processes.selected + 1).min(processes.rows.len().saturating_sub(1));
                }
                _ => {}
            }
            return Action::Continue;
        }
        if self.view.editing.is_none() {
            match key {
                Input::Up => self.select(-1),
                Input::Down => self.select(1),
                Input::Enter => {
                    let rows = self.rows();
                    let open = self
                        .selected()
                        .and_then(|at| rows.get(at))
                        .and_then(|r| Some((r.host.clone(), r.program.clone()?)));
                    if let Some((host, program)) = open {
                        self.open_processes(&host, &program);
                    }
                }
                _ => {}
            }
        }
        let view = &mut self.view;
        if let Some(text) = &mut view.editing {
            match key {
                Input::Char(c) => text.push(c),
                Input::Backspace => {
                    text.pop();
                }
                Input::Enter => {
                    view.filter = std::mem::take(text);
                    view.editing = None;
                }
                Input::Esc => {
                    view.filter.clear();
                    view.editing = None;
                }
                _ => {}
            }
            // Typing filters as it goes.
            if let Some(text) = &view.editing {
                view.filter = text.clone();
            }
            return Action::Continue;
        }
        match key {
            Input::Char('q') => return Action::Quit,
            Input::Left | Input::Char('<') => view.sort = view.sort.step(-1),
            Input::Right | Input::Char('>') => view.sort = view.sort.step(1),
            Input::Char('r') => view.descending = !view.descending,
            Input::Char('h') | Input::Tab => view.per_host = !view.per_host,
            Input::Char('/') => view.editing = Some(view.filter.clone()),
            Input::Esc => view.filter.clear(),
            _ => {}
        }
        Action::Continue
    }
}

/// One process, as the process view shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessRow {
    /// The token as sent; `(relay)` for a relayed host/program.
    pub token: String,
    pub pid: Option<u32>,
    /// For a relay: the processes it sums.
    pub relayed_processes: Option<u64>,
    pub state: ProgramState,
    pub age_seconds: f64,
    pub interval_seconds: f64,
    pub pools: Option<f64>,
    pub connections: Option<f64>,
    pub checked_out: Option<f64>,
    pub checked_in: Option<f64>,
    pub detached: Option<f64>,
    /// The totals the process last reported.
    pub checkouts: Option<u64>,
    pub invalidations: Option<u64>,
    pub connects: Option<u64>,
    pub disconnects: Option<u64>,
    /// Checkouts per second between the last two refreshes (by the
    /// exporter's clock); `None` on the first and after its total went down.
    pub checkouts_rate: Option<f64>,
    pub clock_offset_seconds: Option<f64>,
}

/// The processes of one host/program, in the exporter's order (live ones
/// first, most checked-out connections first).
#[derive(Clone, Debug)]
pub struct ProcessView {
    pub host: String,
    pub program: String,
    pub status: Status,
    pub server_time_unix: f64,
    /// Processes tracked, live and dead, and live ones: more than `rows`
    /// when the program has more than a page.
    pub total: usize,
    pub live: usize,
    pub rows: Vec<ProcessRow>,
    /// Index of the selected row.
    pub selected: usize,
    last_success: Option<SystemTime>,
    /// Per token: the server time and checkouts of the last refresh.
    previous: HashMap<String, (f64, u64)>,
}

impl ProcessView {
    fn new(host: &str, program: &str) -> ProcessView {
        ProcessView {
            host: host.to_owned(),
            program: program.to_owned(),
            status: Status::Connecting,
            server_time_unix: 0.0,
            total: 0,
            live: 0,
            rows: Vec::new(),
            selected: 0,
            last_success: None,
            previous: HashMap::new(),
        }
    }

    fn update(&mut self, doc: &Processes, at: SystemTime) {
        let t = doc.server_time_unix;
        let mut previous = HashMap::with_capacity(doc.processes.len());
        self.rows = doc
            .processes
            .iter()
            .map(|p| {
                let token = p.token.clone().unwrap_or_else(|| "(relay)".to_owned());
                let rate = match (self.previous.get(&token), p.checkouts) {
                    (Some(&(before_t, before)), Some(now)) if t > before_t && now >= before => {
                        Some((now - before) as f64 / (t - before_t))
                    }
                    _ => None,
                };
                if let Some(c) = p.checkouts {
                    previous.insert(token.clone(), (t, c));
                }
                ProcessRow {
                    token,
                    pid: p.pid,
                    relayed_processes: p.relayed_processes,
                    state: p.state,
                    age_seconds: p.age_seconds,
                    interval_seconds: p.interval_seconds,
                    pools: p.pools,
                    connections: p.connections,
                    checked_out: p.checked_out,
                    checked_in: p.checked_in,
                    detached: p.detached,
                    checkouts: p.checkouts,
                    invalidations: p.invalidations,
                    connects: p.connects,
                    disconnects: p.disconnects,
                    checkouts_rate: rate,
                    clock_offset_seconds: p.clock_offset_seconds,
                }
            })
            .collect();
        self.previous = previous;
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.server_time_unix = t;
        self.total = doc.total;
        self.live = doc.live;
        self.last_success = Some(at);
        self.status = Status::Ok;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::Exporter;

    /// A program as the exporter reports it; the tests change what they need.
    pub fn program(host: &str, name: &str) -> Program {
        Program {
            host: host.into(),
            program: name.into(),
            state: ProgramState::Live,
            processes: 1,
            pools: 1.0,
            connections: 4.0,
            checked_out: 2.0,
            checked_in: 2.0,
            detached: 0.0,
            connections_peak: 4.0,
            checked_out_peak: 2.0,
            checkouts: 100,
            invalidations: 0,
            connects: 4,
            disconnects: 0,
            transactions: None,
            last_report_unix: 999.0,
            age_seconds: 1.0,
            interval_seconds: 2.0,
            late: false,
            connections_max: None,
            usage: None,
            history: None,
        }
    }

    pub fn doc(time: f64, programs: Vec<Program>) -> Pools {
        Pools {
            exporter: Exporter {
                version: "0.1.0".into(),
                revision: "abc".into(),
            },
            server_time_unix: time,
            late_after_intervals: 1.5,
            programs,
        }
    }

    /// A process as the exporter reports it; the tests change what they need.
    pub fn process(pid: u32, checked_out: f64, checkouts: u64) -> crate::api::processes::Process {
        crate::api::processes::Process {
            token: Some(format!("{pid}:abcdef")),
            pid: Some(pid),
            state: ProgramState::Live,
            relayed_processes: None,
            pools: Some(1.0),
            connections: Some(checked_out + 1.0),
            checked_out: Some(checked_out),
            checked_in: Some(1.0),
            detached: Some(0.0),
            checkouts: Some(checkouts),
            invalidations: Some(0),
            connects: Some(2),
            disconnects: Some(0),
            transactions: None,
            last_report_unix: 999.0,
            age_seconds: 1.0,
            interval_seconds: 2.0,
            late: false,
            clock_offset_seconds: Some(-0.31),
        }
    }

    pub fn processes_doc(
        time: f64,
        host: &str,
        program: &str,
        processes: Vec<crate::api::processes::Process>,
    ) -> Processes {
        Processes {
            exporter: Exporter {
                version: "0.1.0".into(),
                revision: "abc".into(),
            },
            server_time_unix: time,
            late_after_intervals: 1.5,
            host: host.into(),
            program: program.into(),
            sort: crate::api::processes::Sort::CheckedOut,
            total: processes.len(),
            live: processes.len(),
            offset: 0,
            limit: 1000,
            processes,
        }
    }

    fn names(m: &Model) -> Vec<String> {
        m.rows()
            .iter()
            .map(|r| format!("{}/{}", r.host, r.program.as_deref().unwrap_or("*")))
            .collect()
    }

    #[test]
    fn deltas_rates_and_peaks_come_from_consecutive_refreshes() {
        let mut m = Model::new("u");
        let mut p = program("h", "api");
        m.update(&doc(1000.0, vec![p.clone()]), SystemTime::UNIX_EPOCH);
        let first = m.rows()[0].clone();
        assert_eq!(
            (first.connections_delta, first.checkouts_rate),
            (None, None)
        );
        p.connections = 3.0;
        p.checked_out = 1.0;
        p.checkouts = 110;
        p.invalidations = 1;
        m.update(&doc(1002.0, vec![p.clone()]), SystemTime::UNIX_EPOCH);
        let r = m.rows()[0].clone();
        assert_eq!(
            (r.connections, r.connections_peak, r.connections_delta),
            (3.0, 4.0, Some(-1.0))
        );
        assert_eq!(
            (r.checked_out, r.checked_out_peak, r.checked_out_delta),
            (1.0, 2.0, Some(-1.0))
        );
        assert_eq!(
            (r.checkouts_rate, r.invalidations_rate),
            (Some(5.0), Some(0.5))
        );
    }

    #[test]
    fn a_program_row_shows_the_exporters_peak_between_refreshes() {
        let mut m = Model::new("u");
        let mut p = program("h", "api");
        (p.checked_out_peak, p.connections_peak) = (7.0, 9.0);
        m.update(&doc(1000.0, vec![p]), SystemTime::UNIX_EPOCH);
        let r = m.rows()[0].clone();
        assert_eq!((r.checked_out, r.checked_out_peak), (2.0, 7.0));
        assert_eq!((r.connections, r.connections_peak), (4.0, 9.0));
    }

    #[test]
    fn a_counter_that_goes_down_has_no_rate() {
        let mut m = Model::new("u");
        let mut p = program("h", "api");
        m.update(&doc(1000.0, vec![p.clone()]), SystemTime::UNIX_EPOCH);
        p.checkouts = 3;
        m.update(&doc(1001.0, vec![p]), SystemTime::UNIX_EPOCH);
        assert_eq!(m.rows()[0].checkouts_rate, None);
        assert_eq!(m.rows()[0].invalidations_rate, Some(0.0));
    }

    #[test]
    fn host_rows_sum_programs_and_take_the_worst_state() {
        let mut m = Model::new("u");
        let mut late = program("a", "late");
        late.state = ProgramState::Late;
        late.age_seconds = 9.0;
        late.connections_max = Some(10.0);
        let mut capped = program("a", "capped");
        capped.connections_max = Some(6.0);
        let mut dead = program("b", "dead");
        dead.state = ProgramState::Dead;
        dead.processes = 0;
        m.update(
            &doc(1.0, vec![capped, late, dead, program("b", "x")]),
            SystemTime::UNIX_EPOCH,
        );
        m.input(Input::Char('h'));
        let rows = m.rows();
        let a = rows[0];
        assert_eq!(
            (a.programs, a.processes, a.connections, a.checked_out),
            (2, 2, 8.0, 4.0)
        );
        assert_eq!(
            (a.state, a.age_seconds, a.capacity, a.usage),
            (ProgramState::Late, 9.0, Some(16.0), Some(0.25))
        );
        let b = rows[1];
        assert_eq!(
            (b.state, b.capacity, b.processes),
            (ProgramState::Live, None, 1)
        );
    }

    #[test]
    fn keys_pick_the_sort_column_and_reverse_it() {
        let mut m = Model::new("u");
        let mut big = program("a", "big");
        big.connections = 9.0;
        let mut small = program("b", "small");
        small.connections = 1.0;
        m.update(
            &doc(1.0, vec![big, small, program("c", "mid")]),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(names(&m), ["a/big", "b/small", "c/mid"]);
        for _ in 0..5 {
            m.input(Input::Right);
        }
        assert_eq!(m.view.sort, Column::Connections);
        assert_eq!(names(&m), ["b/small", "c/mid", "a/big"]);
        m.input(Input::Char('r'));
        assert_eq!(names(&m), ["a/big", "c/mid", "b/small"]);
        m.input(Input::Left);
        assert_eq!(m.view.sort, Column::Processes);
        // Equal processes: host, then program, ascending.
        assert_eq!(names(&m), ["a/big", "b/small", "c/mid"]);
        m.input(Input::Char('<'));
        m.input(Input::Char('<'));
        m.input(Input::Char('<'));
        m.input(Input::Char('<'));
        assert_eq!(m.view.sort, Column::Host);
        assert_eq!(names(&m), ["c/mid", "b/small", "a/big"]);
        m.input(Input::Left);
        assert_eq!(m.view.sort, Column::Usage);
    }

    #[test]
    fn filter_is_typed_after_slash_and_matches_host_or_program() {
        let mut m = Model::new("u");
        m.update(
            &doc(
                1.0,
                vec![
                    program("web1", "api"),
                    program("web2", "worker"),
                    program("db", "API-2"),
                ],
            ),
            SystemTime::UNIX_EPOCH,
        );
        m.input(Input::Char('/'));
        for c in "apx".chars() {
            m.input(Input::Char(c));
        }
        assert_eq!(names(&m), Vec::<String>::new());
        m.input(Input::Backspace);
        assert_eq!(names(&m), ["db/API-2", "web1/api"]);
        // `q` is text while typing.
        assert_eq!(m.input(Input::Enter), Action::Continue);
        assert_eq!(m.view.filter, "ap");
        m.input(Input::Char('h'));
        assert_eq!(names(&m), ["db/*", "web1/*"]);
        m.input(Input::Char('/'));
        m.input(Input::Char('q'));
        assert_eq!(m.view.editing.as_deref(), Some("apq"));
        m.input(Input::Esc);
        assert_eq!((m.view.filter.as_str(), m.view.editing.clone()), ("", None));
        assert_eq!(names(&m), ["db/*", "web1/*", "web2/*"]);
        assert_eq!(m.input(Input::Char('q')), Action::Quit);
    }

    #[test]
    fn arrows_select_a_row_and_enter_opens_its_processes_until_esc() {
        let mut m = Model::new("u");
        let programs = vec![
            program("a", "api"),
            program("b", "worker"),
            program("c", "cron"),
        ];
        m.update(&doc(1.0, programs), SystemTime::UNIX_EPOCH);
        assert_eq!(m.selected(), Some(0), "the first row until one is picked");
        m.input(Input::Down);
        m.input(Input::Down);
        m.input(Input::Down);
        assert_eq!(m.selected(), Some(2), "stops at the last row");
        m.input(Input::Up);
        // The selection follows its row when the order changes.
        m.input(Input::Char('r'));
        assert_eq!(names(&m), ["c/cron", "b/worker", "a/api"]);
        assert_eq!(m.selected(), Some(1));
        assert_eq!(m.target(), None);
        m.input(Input::Enter);
        assert_eq!(m.target(), Some(("b".into(), "worker".into())));
        let view = m.processes.as_ref().unwrap();
        assert_eq!(view.status, Status::Connecting);
        // In the view, q still quits and Esc goes back, with the main view
        // as it was.
        m.input(Input::Esc);
        assert_eq!(m.target(), None);
        assert_eq!(m.view.filter, "");
        assert_eq!(m.selected(), Some(1));
        m.input(Input::Enter);
        assert_eq!(m.input(Input::Char('q')), Action::Quit);
        // A host row has no processes of its own: Enter stays.
        m.processes = None;
        m.input(Input::Char('h'));
        m.input(Input::Enter);
        assert_eq!(m.target(), None);
        // Enter while typing a filter keeps the filter, as before.
        m.input(Input::Char('h'));
        m.input(Input::Char('/'));
        m.input(Input::Char('a'));
        m.input(Input::Enter);
        assert_eq!((m.view.filter.as_str(), m.target()), ("a", None));
    }

    #[test]
    fn the_process_view_takes_its_own_documents_with_checkout_rates() {
        let mut m = Model::new("u");
        m.open_processes("web1", "api");
        // A late answer for another program is not this view's.
        m.update_processes(
            &processes_doc(1.0, "web1", "other", vec![process(9, 1.0, 1)]),
            SystemTime::UNIX_EPOCH,
        );
        assert!(m.processes.as_ref().unwrap().rows.is_empty());
        let at = SystemTime::UNIX_EPOCH;
        m.update_processes(
            &processes_doc(
                1000.0,
                "web1",
                "api",
                vec![process(1, 2.0, 100), process(2, 1.0, 7)],
            ),
            at,
        );
        let view = m.processes.as_ref().unwrap();
        assert_eq!(view.status, Status::Ok);
        assert_eq!(
            view.rows
                .iter()
                .map(|r| (r.pid, r.checkouts_rate))
                .collect::<Vec<_>>(),
            [(Some(1), None), (Some(2), None)]
        );
        let mut relay = process(0, 3.0, 50);
        relay.token = None;
        relay.pid = None;
        relay.relayed_processes = Some(3);
        m.update_processes(
            &processes_doc(
                1002.0,
                "web1",
                "api",
                vec![process(1, 2.0, 110), process(2, 1.0, 3), relay],
            ),
            at,
        );
        let view = m.processes.as_ref().unwrap();
        let rates: Vec<_> = view
            .rows
            .iter()
            .map(|r| (r.token.as_str(), r.checkouts_rate))
            .collect();
        // 2's total went down: a new process under an old token, no rate.
        assert_eq!(
            rates,
            [
                ("1:abcdef", Some(5.0)),
                ("2:abcdef", None),
                ("(relay)", None)
            ]
        );
        m.input(Input::Down);
        m.input(Input::Down);
        m.input(Input::Down);
        assert_eq!(m.processes.as_ref().unwrap().selected, 2);
        m.processes_failed("web1", "api", "HTTP 404 Not Found: gone".into());
        assert_eq!(
            m.processes.as_ref().unwrap().status,
            Status::Unreachable {
                error: "HTTP 404 Not Found: gone".into(),
                last_success: Some(at)
            }
        );
        // Fewer rows: the selection stays on one.
        m.update_processes(
            &processes_doc(1004.0, "web1", "api", vec![process(1, 2.0, 110)]),
            at,
        );
        assert_eq!(m.processes.as_ref().unwrap().selected, 0);
    }

    #[test]
    fn unreachable_keeps_the_last_success_and_recovers() {
        let mut m = Model::new("u");
        m.failed("refused".into());
        assert_eq!(
            m.status,
            Status::Unreachable {
                error: "refused".into(),
                last_success: None
            }
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(60);
        m.update(&doc(1.0, vec![program("h", "p")]), t);
        m.failed("timed out".into());
        assert_eq!(
            m.status,
            Status::Unreachable {
                error: "timed out".into(),
                last_success: Some(t)
            }
        );
        m.update(&doc(2.0, vec![program("h", "p")]), t);
        assert_eq!(m.status, Status::Ok);
        assert_eq!(m.rows()[0].checkouts_rate, Some(0.0));
    }
}
