//! Draws a [`Model`]: the terminal screen (a status line, the table, a key
//! line) into a ratatui `Frame`, and the same table as plain text for
//! `top --once`. Both take their cells from [`cells`]; the process view's
//! from [`process_cells`], as text by [`plain_processes`].

use super::model::{Column, Model, ProcessRow, ProcessView, Row, Status};
use crate::api::ProgramState;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table, TableState, Wrap};
use std::time::{Duration, SystemTime};

/// Space between columns.
const GAP: u16 = 2;

/// A gauge: an integer when it is one (what the real client sends).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

fn delta(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(d) if d > 0.0 => format!("+{}", number(d)),
        Some(d) => number(d),
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |r| format!("{r:.1}"))
}

/// `0.8s`, `12m05s`, `3h04m`: short enough for a column, precise where it
/// matters (around the report interval).
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 100.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let s = s as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let s = s as u64;
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

fn state(s: ProgramState) -> &'static str {
    match s {
        ProgramState::Live => "live",
        ProgramState::Late => "late",
        ProgramState::Dead => "dead",
    }
}

/// The text of one row, one string per [`Column::ALL`].
pub fn cells(r: &Row) -> [String; 10] {
    [
        r.host.clone(),
        match &r.program {
            Some(p) => p.clone(),
            None if r.programs == 1 => "(1 program)".into(),
            None => format!("({} programs)", r.programs),
        },
        state(r.state).into(),
        format!(
            "{}/{}",
            age(r.age_seconds),
            number(r.interval_seconds) + "s"
        ),
        format!("{}/{}", r.processes, r.processes_peak),
        format!(
            "{}/{}/{}",
            number(r.connections),
            number(r.connections_peak),
            delta(r.connections_delta)
        ),
        format!(
            "{}/{}/{}",
            number(r.checked_out),
            number(r.checked_out_peak),
            delta(r.checked_out_delta)
        ),
        rate(r.checkouts_rate),
        rate(r.invalidations_rate),
        r.usage
            .map_or_else(|| "-".into(), |u| format!("{:.1}%", u * 100.0)),
    ]
}

/// The header of each column, the sort column marked with its direction.
fn titles(model: &Model) -> [String; 10] {
    Column::ALL.map(|c| {
        if c == model.view.sort {
            let arrow = if model.view.descending { "▼" } else { "▲" };
            format!("{}{arrow}", c.title())
        } else {
            c.title().to_owned()
        }
    })
}

fn widths(titles: &[String; 10], rows: &[[String; 10]]) -> [usize; 10] {
    let mut w = titles.each_ref().map(|t| t.chars().count());
    for r in rows {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    w
}

/// `top --once`: the table as plain text, columns separated by two spaces,
/// numbers right-aligned, no trailing spaces.
pub fn plain(model: &Model) -> String {
    let rows: Vec<[String; 10]> = model.rows().into_iter().map(cells).collect();
    let titles = Column::ALL.map(|c| c.title().to_owned());
    let widths = widths(&titles, &rows);
    let mut out = String::new();
    for line in std::iter::once(&titles).chain(&rows) {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if Column::ALL[i].numeric() {
                text.push_str(&format!("{cell:>w$}"));
            } else {
                text.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn utc(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix(seconds: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0))
}

/// The whole screen.
pub fn render(frame: &mut Frame, model: &Model) {
    let [status, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    if let Some(view) = &model.processes {
        render_processes(frame, [status, body, keys], &model.url, view);
        return;
    }
    render_status(frame, status, model);
    match &model.status {
        Status::Unreachable {
            error,
            last_success,
        } => render_unreachable(frame, body, "exporter unreachable", error, *last_success),
        _ => render_table(frame, body, model),
    }
    render_keys(frame, keys, model);
}

fn render_status(frame: &mut Frame, area: Rect, model: &Model) {
    let line = match &model.status {
        Status::Connecting => Line::from(format!("{} — connecting…", model.url)),
        Status::Ok => {
            let (hosts, programs) = model.counts();
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            Line::from(format!(
                "{} — exporter {} — {} — {} on {}",
                model.url,
                model.exporter_version,
                utc(unix(model.server_time_unix)),
                plural(programs, "program"),
                plural(hosts, "host"),
            ))
        }
        Status::Unreachable { .. } => Line::from(Span::styled(
            format!("{} — exporter unreachable", model.url),
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_unreachable(
    frame: &mut Frame,
    area: Rect,
    headline: &str,
    error: &str,
    last_success: Option<SystemTime>,
) {
    let red = Style::new().fg(Color::Red);
    let text = Text::from(vec![
        Line::from(""),
        Line::from(Span::styled(
            headline.to_owned(),
            red.add_modifier(Modifier::BOLD),
        )),
        Line::from(Span::styled(error.to_owned(), red)),
        Line::from(match last_success {
            Some(t) => format!("last success: {}", utc(t)),
            None => "never reached".to_owned(),
        }),
        Line::from("retrying at every refresh"),
    ]);
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        area,
    );
}

fn render_table(frame: &mut Frame, area: Rect, model: &Model) {
    let rows = model.rows();
    let texts: Vec<[String; 10]> = rows.iter().map(|r| cells(r)).collect();
    let titles = titles(model);
    let widths = widths(&titles, &texts);
    let align = |i: usize, s: String| {
        let line = Line::from(s);
        if Column::ALL[i].numeric() {
            Cell::from(line.right_aligned())
        } else {
            Cell::from(line)
        }
    };
    let header = TableRow::new(
        titles
            .into_iter()
            .enumerate()
            .map(|(i, t)| align(i, t))
            .collect::<Vec<_>>(),
    )
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let body = rows
        .iter()
        .zip(texts)
        .map(|(r, t)| aligned_row(t, |i| Column::ALL[i].numeric()).style(state_style(r.state)));
    let table = Table::new(body, widths.map(|w| Constraint::Length(w as u16)))
        .header(header)
        .column_spacing(GAP)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(model.selected());
    frame.render_stateful_widget(table, area, &mut state);
}

/// Red for late, grey for dead: the same in every table.
fn state_style(state: ProgramState) -> Style {
    match state {
        ProgramState::Late => Style::new().fg(Color::Red),
        ProgramState::Dead => Style::new().fg(Color::DarkGray),
        ProgramState::Live => Style::new(),
    }
}

/// One table row of cells, right-aligned where `numeric` says.
fn aligned_row<'a>(
    cells: impl IntoIterator<Item = String>,
    numeric: impl Fn(usize) -> bool,
) -> TableRow<'a> {
    TableRow::new(
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let line = Line::from(c);
                Cell::from(if numeric(i) {
                    line.right_aligned()
                } else {
                    line
                })
            })
            .collect::<Vec<_>>(),
    )
}

fn render_keys(frame: &mut Frame, area: Rect, model: &Model) {
    let line = if let Some(text) = &model.view.editing {
        Line::from(vec![
            Span::styled("filter: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{text}_")),
            Span::raw("  (Enter keeps, Esc clears)"),
        ])
    } else {
        let mut spans = vec![Span::raw(
            "q quit  ←/→ sort  r reverse  h per-host  / filter  Enter processes",
        )];
        if !model.view.filter.is_empty() {
            spans.push(Span::styled(
                format!("  filter: {} (Esc clears)", model.view.filter),
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The process view's columns.
pub const PROCESS_TITLES: [&str; 14] = [
    "PID",
    "TOKEN",
    "STATE",
    "AGE/INT",
    "POOLS",
    "CONNS",
    "OUT",
    "IN",
    "DET",
    "CKOUTS",
    "CKOUT/S",
    "INVAL",
    "CONN/DISC",
    "CLOCK",
];

/// Which of [`PROCESS_TITLES`] are text (left-aligned).
fn process_text_column(i: usize) -> bool {
    matches!(i, 1 | 2)
}

fn opt_number(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), number)
}

fn opt_count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |c| c.to_string())
}

/// The text of one process row, one string per [`PROCESS_TITLES`].
pub fn process_cells(r: &ProcessRow) -> [String; 14] {
    [
        r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
        match r.relayed_processes {
            Some(n) => format!("(relay of {n} processes)"),
            None => r.token.clone(),
        },
        state(r.state).into(),
        format!(
            "{}/{}",
            age(r.age_seconds),
            number(r.interval_seconds) + "s"
        ),
        opt_number(r.pools),
        opt_number(r.connections),
        opt_number(r.checked_out),
        opt_number(r.checked_in),
        opt_number(r.detached),
        opt_count(r.checkouts),
        rate(r.checkouts_rate),
        opt_count(r.invalidations),
        match (r.connects, r.disconnects) {
            (None, None) => "-".into(),
            (c, d) => format!("{}/{}", opt_count(c), opt_count(d)),
        },
        r.clock_offset_seconds
            .map_or_else(|| "-".into(), |o| format!("{o:+.1}s")),
    ]
}

fn process_widths(rows: &[[String; 14]]) -> [usize; 14] {
    let mut w = PROCESS_TITLES.map(|t| t.chars().count());
    for r in rows {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    w
}

/// `top --once --processes`: the process table as plain text, as [`plain`].
pub fn plain_processes(view: &ProcessView) -> String {
    let rows: Vec<[String; 14]> = view.rows.iter().map(process_cells).collect();
    let titles = PROCESS_TITLES.map(str::to_owned);
    let widths = process_widths(&rows);
    let mut out = String::new();
    for line in std::iter::once(&titles).chain(&rows) {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if process_text_column(i) {
                text.push_str(&format!("{cell:<w$}"));
            } else {
                text.push_str(&format!("{cell:>w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    if view.rows.len() < view.total {
        out.push_str(&format!(
            "({} of {} processes shown: those holding the most connections)\n",
            view.rows.len(),
            view.total
        ));
    }
    out
}

/// The process view: its status line, its table (or why there is none) and
/// its keys.
fn render_processes(
    frame: &mut Frame,
    [status, body, keys]: [Rect; 3],
    url: &str,
    view: &ProcessView,
) {
    let name = format!("{}/{}", view.host, view.program);
    let line = match &view.status {
        Status::Connecting => Line::from(format!("{url} — processes of {name} — fetching…")),
        Status::Ok => {
            let shown = if view.rows.len() < view.total {
                format!(", {} holding the most shown", view.rows.len())
            } else {
                String::new()
            };
            Line::from(format!(
                "{url} — processes of {name} — {} — {} tracked, {} live{shown}",
                utc(unix(view.server_time_unix)),
                view.total,
                view.live,
            ))
        }
        Status::Unreachable { .. } => Line::from(Span::styled(
            format!("{url} — processes of {name} unavailable"),
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )),
    };
    frame.render_widget(Paragraph::new(line), status);
    match &view.status {
        Status::Unreachable {
            error,
            last_success,
        } => render_unreachable(
            frame,
            body,
            &format!("processes of {name} unavailable"),
            error,
            *last_success,
        ),
        _ => render_process_table(frame, body, view),
    }
    frame.render_widget(
        Paragraph::new(Line::from("Esc back  q quit  ↑/↓ select")),
        keys,
    );
}

fn render_process_table(frame: &mut Frame, area: Rect, view: &ProcessView) {
    let texts: Vec<[String; 14]> = view.rows.iter().map(process_cells).collect();
    let widths = process_widths(&texts);
    let align = |i: usize, s: String| {
        let line = Line::from(s);
        if process_text_column(i) {
            Cell::from(line)
        } else {
            Cell::from(line.right_aligned())
        }
    };
    let header = TableRow::new(
        PROCESS_TITLES
            .iter()
            .enumerate()
            .map(|(i, t)| align(i, (*t).to_owned()))
            .collect::<Vec<_>>(),
    )
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let body = view
        .rows
        .iter()
        .zip(texts)
        .map(|(r, t)| aligned_row(t, |i| !process_text_column(i)).style(state_style(r.state)));
    let table = Table::new(body, widths.map(|w| Constraint::Length(w as u16)))
        .header(header)
        .column_spacing(GAP)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let selected = (!view.rows.is_empty()).then_some(view.selected);
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::Input;
    use crate::top::model::tests::{doc, program};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    fn draw(model: &Model, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| render(f, model)).unwrap();
        terminal.backend().buffer().clone()
    }

    fn lines(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| {
                (0..b.area.width)
                    .map(|x| b[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    fn print(b: &Buffer) {
        for l in lines(b) {
            println!("{l:?},");
        }
    }

    /// Three programs on two hosts, refreshed twice (so deltas and rates exist).
    fn model() -> Model {
        let mut m = Model::new("http://x:9827");
        let mut api = program("web1", "api");
        api.connections_max = Some(15.0);
        let mut worker = program("web1", "worker");
        worker.processes = 3;
        worker.connections = 6.0;
        worker.checked_out = 5.0;
        let mut late = program("web2", "cron");
        late.state = ProgramState::Late;
        late.age_seconds = 3.5;
        m.update(
            &doc(1000.0, vec![api.clone(), worker.clone(), late.clone()]),
            SystemTime::UNIX_EPOCH,
        );
        api.checked_out = 3.0;
        api.checkouts = 110;
        worker.processes = 2;
        worker.connections = 5.0;
        worker.checked_out = 4.0;
        worker.checkouts = 140;
        worker.invalidations = 1;
        late.age_seconds = 5.5;
        m.update(
            &doc(1002.0, vec![api, worker, late]),
            SystemTime::UNIX_EPOCH,
        );
        m
    }

    #[test]
    fn table_shows_now_max_delta_rates_and_usage() {
        let b = draw(&model(), 100, 7);
        print(&b);
        assert_eq!(
            lines(&b),
            [
                "http://x:9827 — exporter 0.1.0 — 1970-01-01T00:16:42Z — 3 programs on 2 hosts",
                "HOST▲  PROGRAM  STATE  AGE/INT  PROCS   CONNS     OUT  CKOUT/S  INVAL/S   USE%",
                "web1   api      live   1.0s/2s    1/1   4/4/0  3/3/+1      5.0      0.0  20.0%",
                "web1   worker   live   1.0s/2s    2/3  5/6/-1  4/5/-1     20.0      0.5      -",
                "web2   cron     late   5.5s/2s    1/1   4/4/0   2/2/0      0.0      0.0      -",
                "",
                "q quit  ←/→ sort  r reverse  h per-host  / filter  Enter processes",
            ]
        );
    }

    /// Foreground, background and modifiers of a cell.
    fn look(b: &Buffer, x: u16, y: u16) -> (Color, Color, Modifier) {
        let c = &b[(x, y)];
        (c.fg, c.bg, c.modifier)
    }

    /// The look every cell of screen line `y` has (asserting they agree).
    fn line_style(b: &Buffer, y: u16) -> (Color, Color, Modifier) {
        let first = look(b, 0, y);
        for x in 0..b.area.width {
            assert_eq!(look(b, x, y), first, "cell ({x}, {y})");
        }
        first
    }

    #[test]
    fn late_rows_are_red_dead_rows_grey_live_rows_plain() {
        let mut m = model();
        let mut dead = program("web3", "gone");
        dead.state = ProgramState::Dead;
        dead.processes = 0;
        let mut docs = doc(1004.0, vec![program("web1", "api"), dead]);
        let mut late = program("web2", "cron");
        late.state = ProgramState::Late;
        docs.programs.insert(1, late);
        m.update(&docs, SystemTime::UNIX_EPOCH);
        let b = draw(&m, 100, 6);
        assert_eq!(
            lines(&b)[2..5],
            [
                // api's checkouts went down (100 after 110): a reset, no rate.
                "web1   api      live   1.0s/2s    1/1  4/4/0  2/3/-1        -      0.0     -",
                "web2   cron     late   1.0s/2s    1/1  4/4/0   2/2/0      0.0      0.0     -",
                "web3   gone     dead   1.0s/2s    0/0  4/4/-   2/2/-        -        -     -",
            ]
        );
        let (reset, none) = (Color::Reset, Modifier::empty());
        // The first row is the selected one (Enter opens it): reversed.
        assert_eq!(line_style(&b, 2), (reset, reset, Modifier::REVERSED));
        assert_eq!(line_style(&b, 3), (Color::Red, reset, none));
        assert_eq!(line_style(&b, 4), (Color::DarkGray, reset, none));
        assert_eq!(
            line_style(&b, 1),
            (reset, reset, Modifier::BOLD | Modifier::REVERSED)
        );
    }

    #[test]
    fn sorting_by_a_column_reorders_rows_and_marks_its_header() {
        let mut m = model();
        for _ in 0..7 {
            m.input(Input::Right);
        }
        m.input(Input::Char('r'));
        let b = draw(&m, 100, 6);
        assert_eq!(
            lines(&b)[1..5],
            [
                "HOST  PROGRAM  STATE  AGE/INT  PROCS   CONNS     OUT  CKOUT/S▼  INVAL/S   USE%",
                "web1  worker   live   1.0s/2s    2/3  5/6/-1  4/5/-1      20.0      0.5      -",
                "web1  api      live   1.0s/2s    1/1   4/4/0  3/3/+1       5.0      0.0  20.0%",
                "web2  cron     late   5.5s/2s    1/1   4/4/0   2/2/0       0.0      0.0      -",
            ]
        );
    }

    #[test]
    fn per_host_view_sums_each_hosts_programs() {
        let mut m = model();
        m.input(Input::Char('h'));
        let b = draw(&m, 100, 5);
        assert_eq!(
            lines(&b)[1..4],
            [
                // Peaks are of the host's sums: out was 2 + 5, then 3 + 4.
                "HOST▲  PROGRAM       STATE  AGE/INT  PROCS    CONNS    OUT  CKOUT/S  INVAL/S  USE%",
                "web1   (2 programs)  live   1.0s/2s    3/4  9/10/-1  7/7/0     25.0      0.5     -",
                "web2   (1 program)   late   5.5s/2s    1/1    4/4/0  2/2/0      0.0      0.0     -",
            ]
        );
        assert_eq!(
            line_style(&b, 3),
            (Color::Red, Color::Reset, Modifier::empty())
        );
    }

    #[test]
    fn filter_shows_matching_rows_and_what_is_typed() {
        let mut m = model();
        m.input(Input::Char('/'));
        m.input(Input::Char('W'));
        m.input(Input::Char('o'));
        let b = draw(&m, 100, 5);
        assert_eq!(
            lines(&b)[1..],
            [
                "HOST▲  PROGRAM  STATE  AGE/INT  PROCS   CONNS     OUT  CKOUT/S  INVAL/S  USE%",
                "web1   worker   live   1.0s/2s    2/3  5/6/-1  4/5/-1     20.0      0.5     -",
                "",
                "filter: Wo_  (Enter keeps, Esc clears)",
            ]
        );
        m.input(Input::Enter);
        let b = draw(&m, 100, 5);
        assert_eq!(
            lines(&b)[4],
            "q quit  ←/→ sort  r reverse  h per-host  / filter  Enter processes  filter: Wo (Esc clears)"
        );
    }

    #[test]
    fn unreachable_replaces_the_table_and_recovers() {
        let mut m = model();
        m.failed("http://x:9827/api/v1/pools: io: Connection refused (os error 111)".into());
        let b = draw(&m, 80, 8);
        assert_eq!(
            lines(&b),
            [
                "http://x:9827 — exporter unreachable",
                "",
                "                              exporter unreachable",
                "        http://x:9827/api/v1/pools: io: Connection refused (os error 111)",
                "                       last success: 1970-01-01T00:00:00Z",
                "                            retrying at every refresh",
                "",
                "q quit  ←/→ sort  r reverse  h per-host  / filter  Enter processes",
            ]
        );
        assert_eq!(look(&b, 0, 0), (Color::White, Color::Red, Modifier::BOLD));
        assert_eq!(look(&b, 30, 2), (Color::Red, Color::Reset, Modifier::BOLD));
        assert_eq!(
            look(&b, 8, 3),
            (Color::Red, Color::Reset, Modifier::empty())
        );
        let mut api = program("web1", "api");
        api.checkouts = 114;
        m.update(&doc(1004.0, vec![api]), SystemTime::UNIX_EPOCH);
        let b = draw(&m, 80, 4);
        assert_eq!(
            lines(&b)[..3],
            [
                "http://x:9827 — exporter 0.1.0 — 1970-01-01T00:16:44Z — 1 program on 1 host",
                "HOST▲  PROGRAM  STATE  AGE/INT  PROCS  CONNS     OUT  CKOUT/S  INVAL/S  USE%",
                "web1   api      live   1.0s/2s    1/1  4/4/0  2/3/-1      2.0      0.0     -",
            ]
        );
    }

    #[test]
    fn once_prints_the_same_cells_as_plain_text() {
        assert_eq!(
            plain(&model()),
            "HOST  PROGRAM  STATE  AGE/INT  PROCS   CONNS     OUT  CKOUT/S  INVAL/S   USE%\n\
             web1  api      live   1.0s/2s    1/1   4/4/0  3/3/+1      5.0      0.0  20.0%\n\
             web1  worker   live   1.0s/2s    2/3  5/6/-1  4/5/-1     20.0      0.5      -\n\
             web2  cron     late   5.5s/2s    1/1   4/4/0   2/2/0      0.0      0.0      -\n"
        );
    }

    /// The process view of web1/api after two refreshes.
    fn process_model() -> Model {
        use crate::top::model::tests::{process, processes_doc};
        let mut m = model();
        m.input(Input::Enter);
        let mut dead = process(77, 4.0, 12);
        dead.state = ProgramState::Dead;
        dead.age_seconds = 125.0;
        let mut text = process(0, 0.0, 0);
        text.token = Some("worker-a".into());
        text.pid = None;
        text.clock_offset_seconds = None;
        let mut late = process(300, 1.0, 40);
        late.state = ProgramState::Late;
        late.age_seconds = 3.5;
        m.update_processes(
            &processes_doc(
                1000.0,
                "web1",
                "api",
                vec![process(4242, 3.0, 100), late.clone()],
            ),
            SystemTime::UNIX_EPOCH,
        );
        let mut doc = processes_doc(
            1002.0,
            "web1",
            "api",
            vec![process(4242, 3.0, 110), late, text, dead],
        );
        doc.total = 5;
        doc.live = 3;
        m.update_processes(&doc, SystemTime::UNIX_EPOCH);
        m
    }

    #[test]
    fn the_process_view_lists_each_process_and_esc_goes_back() {
        let mut m = process_model();
        let b = draw(&m, 110, 8);
        print(&b);
        assert_eq!(
            lines(&b),
            [
                "http://x:9827 — processes of web1/api — 1970-01-01T00:16:42Z — 5 tracked, 3 live, 4 holding the most shown",
                " PID  TOKEN        STATE   AGE/INT  POOLS  CONNS  OUT  IN  DET  CKOUTS  CKOUT/S  INVAL  CONN/DISC  CLOCK",
                "4242  4242:abcdef  live    1.0s/2s      1      4    3   1    0     110      5.0      0        2/0  -0.3s",
                " 300  300:abcdef   late    3.5s/2s      1      2    1   1    0      40      0.0      0        2/0  -0.3s",
                "   -  worker-a     live    1.0s/2s      1      1    0   1    0       0        -      0        2/0      -",
                "  77  77:abcdef    dead   2m05s/2s      1      5    4   1    0      12        -      0        2/0  -0.3s",
                "",
                "Esc back  q quit  ↑/↓ select",
            ]
        );
        let (reset, none) = (Color::Reset, Modifier::empty());
        assert_eq!(line_style(&b, 2), (reset, reset, Modifier::REVERSED));
        assert_eq!(line_style(&b, 3), (Color::Red, reset, none));
        assert_eq!(line_style(&b, 5), (Color::DarkGray, reset, none));
        m.input(Input::Esc);
        let b = draw(&m, 100, 7);
        assert_eq!(lines(&b)[1].split_whitespace().next(), Some("HOST▲"));
    }

    #[test]
    fn once_prints_the_process_table_as_plain_text() {
        let m = process_model();
        assert_eq!(
            plain_processes(m.processes.as_ref().unwrap()),
            [
                " PID  TOKEN        STATE   AGE/INT  POOLS  CONNS  OUT  IN  DET  CKOUTS  CKOUT/S  INVAL  CONN/DISC  CLOCK",
                "4242  4242:abcdef  live    1.0s/2s      1      4    3   1    0     110      5.0      0        2/0  -0.3s",
                " 300  300:abcdef   late    3.5s/2s      1      2    1   1    0      40      0.0      0        2/0  -0.3s",
                "   -  worker-a     live    1.0s/2s      1      1    0   1    0       0        -      0        2/0      -",
                "  77  77:abcdef    dead   2m05s/2s      1      5    4   1    0      12        -      0        2/0  -0.3s",
                "(4 of 5 processes shown: those holding the most connections)",
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn ages_stay_short() {
        assert_eq!(
            [0.04, 99.94, 100.0, 725.0, 3600.0, 11040.0].map(age),
            ["0.0s", "99.9s", "1m40s", "12m05s", "1h00m", "3h04m"]
        );
    }
}
