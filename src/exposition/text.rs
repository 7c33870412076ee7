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

    fn renders_labels(&self) -> bool {
        true
    }
}

impl SampleWriter for Samples<'_> {
    fn sample(&mut self, labels: &Labels<'_>, value: Number) -> fmt::Result {
        self.out.push_str(self.name);
        self.out.push_str(self.suffix);
        if !labels.is_empty() {
            self.out.push('{');
            render_labels(self.out, labels);
            self.out.push('}');
        }
        self.value(value)
    }

    fn sample_rendered(&mut self, labels: &str, value: Number) -> fmt::Result {
        self.out.push_str(self.name);
        self.out.push_str(self.suffix);
        if !labels.is_empty() {
            self.out.push('{');
            self.out.push_str(labels);
            self.out.push('}');
        }
        self.value(value)
    }
}

impl Samples<'_> {
    /// The value and the end of the line.
    fn value(&mut self, value: Number) -> fmt::Result {
        self.out.push(' ');
        match value {
            Number::U64(n) => self.out.push_str(itoa::Buffer::new().format(n)),
            Number::F64(x) => write_f64(self.out, x)?,
        }
        self.out.push('\n');
        Ok(())
    }
}

/// A label set as it stands between the braces of a sample line:
/// `k="v",k2="v2"`, values escaped. What [`SampleWriter::sample_rendered`]
/// takes: a label set written once and copied into every family's line.
pub fn render_labels(out: &mut String, labels: &Labels<'_>) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape(out, v, true);
        out.push('"');
    }
}

/// Go's float formatting as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, and
/// the shortest representation that round-trips otherwise.
pub fn write_f64(out: &mut String, x: f64) -> fmt::Result {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" });
    } else if x.fract() == 0.0 && x.abs() < WHOLE && !(x == 0.0 && x.is_sign_negative()) {
        // A whole value (what the real client's gauges are), in the digits
        // `{x}` writes for it, by the integer formatter: a fraction of the
        // cost of the shortest-float search.
        out.push_str(itoa::Buffer::new().format(x as i64));
    } else {
        // A fraction: ryu finds the same shortest round-trip digits `{x}`
        // writes, a good deal faster, but writes small and large
        // magnitudes with an exponent and -0 as `-0.0`, which `{x}` never
        // does: those go to `{x}`.
        let mut buffer = ryu::Buffer::new();
        let digits = buffer.format_finite(x);
        if digits.contains('e') || digits.ends_with(".0") {
            write!(out, "{x}")?;
        } else {
            out.push_str(digits);
        }
    }
    Ok(())
}

/// Whole values below this are written as integers (exact in an `f64` and
/// an `i64`).
const WHOLE: f64 = 9.0e15;

/// Label values escape `\`, `"` and newline; help text `\` and newline.
fn escape(out: &mut String, s: &str, quote: bool) {
    // Almost every value needs none: copied whole, not char by char.
    if !s
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(s);
        return;
    }
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
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(-7.0), "-7");
        assert_eq!(f(-1.25), "-1.25");
        assert_eq!(f(0.001), "0.001");
        assert_eq!(f(1e-7), "0.0000001");
        // Whole values are written as the float formatter writes them.
        for x in [
            0.0,
            1.0,
            42.0,
            1e6,
            123456789.0,
            8.999e15,
            9e15,
            1e16,
            -3e15,
            2f64.powi(60),
        ] {
            assert_eq!(f(x), format!("{x}"), "{x}");
        }
    }

    /// Fractions are written as the float formatter writes them (but for
    /// the digit chosen in a tie): receive
    /// timestamps, clock offsets, values with few and many digits, near
    /// powers of two and ten, and doubles of every exponent.
    #[test]
    fn fractions_are_written_as_the_float_formatter_writes_them() {
        let f = |x: f64| {
            let mut s = String::new();
            write_f64(&mut s, x).unwrap();
            s
        };
        // xorshift64*: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let (mut checked, mut ties) = (0, 0);
        for _ in 0..20_000 {
            let r = next();
            let micros = (r % 4_000_000_000_000_000) as f64 / 1e6;
            let offset = (r % 2_000_000) as f64 / 1e6 - 1.0;
            let nanos = 1.7e9 + (r % 1_000_000_000_000_000) as f64 / 1e9;
            let any = f64::from_bits(r);
            let mantissa = (r >> 11) as f64 / (1u64 << 53) as f64;
            let scaled = mantissa * 10f64.powi((r % 18) as i32);
            let decimal = (r % 100_000) as f64 / 10f64.powi(((r >> 60) % 9) as i32);
            let near_two = 2f64.powi((r % 100) as i32 - 60) * (1.0 + f64::EPSILON * (r % 3) as f64);
            for x in [
                micros,
                nanos,
                offset,
                any,
                -any,
                scaled,
                decimal,
                near_two,
                1.0 / scaled,
            ] {
                if x.is_finite() {
                    // The same double, in as many digits as `{x}` writes;
                    // the digits themselves may differ where two
                    // candidates are equally close (ryu rounds such a tie
                    // to even, `{x}` up), never the value read back.
                    let (got, want) = (f(x), format!("{x}"));
                    assert_eq!(got.parse::<f64>().ok(), Some(x), "{got} for {x:e}");
                    assert_eq!(got.len(), want.len(), "{got} against {want}");
                    ties += usize::from(got != want);
                    checked += 1;
                }
            }
        }
        assert!(checked > 170_000);
        assert!(ties < checked / 1000, "{ties} ties of {checked}");
    }
}
