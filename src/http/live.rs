//! `/live`: the live fleet page — one row per host/program as in `top`, the
//! exporter's own health above it — and its stylesheet and script, all
//! compiled into the binary (`live/`), no CDN, no external font. The page
//! polls `api/v1/pools?history=1`, `api/v1/status` and, for one program,
//! `api/v1/processes` with relative URLs, so it works behind TLS, basic auth
//! (the browser sends its credentials again) and a reverse proxy's prefix.
//!
//! Takes the paths in use; hands on the page (built once at start) and the
//! two assets.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// Where the page is served.
pub const PATH: &str = "/live";
/// Its stylesheet and script, beside it.
pub const CSS_PATH: &str = "/live.css";
pub const JS_PATH: &str = "/live.js";

const HTML: &str = include_str!("live/live.html");
const CSS: &str = include_str!("live/live.css");
const JS: &str = include_str!("live/live.js");

/// The page with the metrics path in use; `serves_api` false when a
/// telemetry or push path took the pools document's (the page then says it
/// cannot show anything).
pub fn page(telemetry_path: &str, serves_api: bool) -> String {
    HTML.replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{metrics}}", &escape(&relative(telemetry_path)))
        .replace("{{api}}", if serves_api { "1" } else { "0" })
}

/// `/metrics` as `./metrics`: relative to the page, so a proxy's prefix stays.
fn relative(path: &str) -> String {
    format!(".{path}")
}

/// Escapes text for an HTML attribute or element.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub async fn html(page: String) -> Html<String> {
    Html(page)
}

pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated on every load: an upgraded binary is never
            // served its predecessor's script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_the_metrics_relative_to_itself_escaped() {
        let page = page("/a\"b<c", true);
        assert!(page.contains("href=\"./a&quot;b&lt;c\""), "{page}");
        assert!(page.contains("data-api=\"1\""));
        assert!(!page.contains("{{"));
        assert!(super::page("/metrics", false).contains("data-api=\"0\""));
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for text in [HTML, CSS, JS] {
            for far in ["http:", "https:", "\"//", "@import", "url(", "@font-face"] {
                assert!(!text.contains(far), "{far} in an asset");
            }
        }
    }
}
