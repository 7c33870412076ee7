//! The Prometheus text format 0.0.4, for scrapers that do not ask for
//! OpenMetrics (curl, older Prometheus). Walks the same family table as the
//! OpenMetrics encoder; counters get their `_total` here.

use super::families::{Family, FamilyWriter, Kind, Labels, Number, SampleWriter};
use std::fmt::{self, Write};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct TextWriter<'a> {
    out: &'a mut String,
}

impl<'a> TextWriter<'a> {
    pub fn new(out: &'a mut String) -> Self {
        TextWriter { out }
    }
}

struct Samples<'a> {
    out: &'a mut String,
    name: &'a str,
    suffix: &'static str,
}

impl FamilyWriter for TextWriter<'_> {
    fn family(
        &mut self,
        family: &Family<'_>,
        samples: &mut dyn FnMut(&mut dyn SampleWriter) -> fmt::Result,
    ) -> fmt::Result {
        let (suffix, kind) = match family.kind {
            Kind::Gauge => ("", "gauge"),
            Kind::Counter => ("_total", "counter"),
        };
        write!(self.out, "# HELP {}{suffix} ", family.name)?;
        escape(self.out, family.help, false);
        writeln!(self.out, "\n# TYPE {}{suffix} {kind}", family.name)?;
        samples(&mut Samples {
            out: self.out,
            name: family.name,
            suffix,
        })
    }
}

impl SampleWriter for Samples<'_> {
    fn sample(&mut self, labels: &Labels<'_>, value: Number) -> fmt::Result {
        self.out.push_str(self.name);
        self.out.push_str(self.suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape(self.out, v, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Number::U64(n) => write!(self.out, "{n}")?,
            Number::F64(x) => write_f64(self.out, x)?,
        }
        self.out.push('\n');
        Ok(())
    }
}

/// Go's float formatting as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, and
/// the shortest representation that round-trips otherwise.
pub fn write_f64(out: &mut String, x: f64) -> fmt::Result {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        write!(out, "{x}")?;
    }
    Ok(())
}

/// Label values escape `\`, `"` and newline; help text `\` and newline.
fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::families::Kind;

    #[test]
    fn counter_gets_total_and_labels_are_escaped() {
        let mut out = String::new();
        let f = Family {
            name: "x",
            help: "a\\b",
            kind: Kind::Counter,
        };
        TextWriter::new(&mut out)
            .family(&f, &mut |s| {
                s.sample(&[("host", "a\"b\\c\nd")], Number::U64(3))
            })
            .unwrap();
        assert_eq!(
            out,
            "# HELP x_total a\\\\b\n# TYPE x_total counter\nx_total{host=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn floats_are_written_as_prometheus_parses_them() {
        let f = |x| {
            let mut s = String::new();
            write_f64(&mut s, x).unwrap();
            s
        };
        assert_eq!(f(3.0), "3");
        assert_eq!(f(0.5), "0.5");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(1795289844.783717), "1795289844.783717");
    }
}
