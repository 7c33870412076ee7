//! Draws a [`Model`]: the terminal screen (a status line, the table, a key
//! line) into a ratatui `Frame`, and the same table as plain text for
//! `top --once`. Both take their cells from [`cells`].

use super::model::{Column, Model, Row, Status};
use crate::api::ProgramState;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table, Wrap};
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
    render_status(frame, status, model);
    match &model.status {
        Status::Unreachable {
            error,
            last_success,
        } => render_unreachable(frame, body, error, *last_success),
        _ => render_table(frame, body, model),
    }
    render_keys(frame, keys, model);
}

fn render_status(frame: &mut Frame, area: Rect, model: &Model) {
    let line = match &model.status {
        Status::Connecting => Line::from(format!("{} — connecting…", model.url)),
        Status::Ok => {
            let (hosts, programs) = model.counts();
            Line::from(format!(
                "{} — exporter {} — {} — {programs} programs on {hosts} hosts",
                model.url,
                model.exporter_version,
                utc(unix(model.server_time_unix)),
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
    error: &str,
    last_success: Option<SystemTime>,
) {
    let red = Style::new().fg(Color::Red);
    let text = Text::from(vec![
        Line::from(""),
        Line::from(Span::styled(
            "exporter unreachable",
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
    let body = rows.iter().zip(texts).map(|(r, t)| {
        let style = match r.state {
            ProgramState::Late => Style::new().fg(Color::Red),
            ProgramState::Dead => Style::new().fg(Color::DarkGray),
            ProgramState::Live => Style::new(),
        };
        TableRow::new(
            t.into_iter()
                .enumerate()
                .map(|(i, c)| align(i, c))
                .collect::<Vec<_>>(),
        )
        .style(style)
    });
    let table = Table::new(body, widths.map(|w| Constraint::Length(w as u16)))
        .header(header)
        .column_spacing(GAP);
    frame.render_widget(table, area);
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
            "q quit  ←/→ sort  r reverse  h per-host  / filter",
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
