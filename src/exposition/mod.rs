//! Encoding: the family table ([`families`]) walked by the Prometheus text
//! writer ([`text`]) or the OpenMetrics one ([`openmetrics`]), and the
//! collectd_exporter naming of generic series ([`generic`]). Pure: a
//! [`Scrape`] in, text out; no lock, socket or clock.
//!
//! Takes a [`Scrape`] (what `crate::snapshot` copied out of the stores) and
//! the format the scraper asked for; hands on the body and its content type.

pub mod families;
pub mod generic;
pub mod openmetrics;
pub mod text;

pub use families::Scrape;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

/// OpenMetrics when the scraper ranks it at least as high as the text format.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "*/*" | "text/*" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Encodes `scrape` in `format`: the body and its content type.
pub fn encode(scrape: Scrape, format: Format) -> Result<(String, &'static str), std::fmt::Error> {
    // Sized from the last scrape (plus an eighth for growth), so that a body
    // of a hundred megabytes is not copied over and over as it doubles.
    let last = LAST_LENGTH.load(Ordering::Relaxed);
    let mut out = String::with_capacity((last + last / 8).max(64 * 1024));
    let content_type = match format {
        Format::Text => {
            families::write(&scrape, &mut text::TextWriter::new(&mut out))?;
            text::CONTENT_TYPE
        }
        Format::OpenMetrics => {
            openmetrics::encode(Arc::new(scrape), &mut out)?;
            openmetrics::CONTENT_TYPE
        }
    };
    LAST_LENGTH.store(out.len(), Ordering::Relaxed);
    Ok((out, content_type))
}

/// Length of the last body [`encode`] wrote, what the next one is sized by.
static LAST_LENGTH: AtomicUsize = AtomicUsize::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_accept_header_gets_openmetrics() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn curl_gets_text() {
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(None), Format::Text);
    }

    #[test]
    fn text_preferred_over_openmetrics_gets_text() {
        let a = "text/plain;version=0.0.4,application/openmetrics-text;q=0.5";
        assert_eq!(negotiate(Some(a)), Format::Text);
    }
}
