//! The dashboard page at `/`: one self-contained HTML file (no build step, no external assets) that polls
//! `/status` and draws the charts in the browser. What it shows and how to read it: `docs/monitoring.md`.
//!
//! The page fetches `status` relative to its own URL, so it also works behind a reverse proxy's path prefix. Each
//! chart's `<svg>` carries `data-points="N"` (points drawn), which `views/tests/dashboard.rs` checks in a headless
//! browser against a running pipeline.

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The page itself.
pub const PAGE: &str = include_str!("dashboard.html");

/// The page. Not cached: a new build of the service may serve a new page.
pub async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// Machines running the service may have no internet: nothing may be loaded from elsewhere.
    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["<script src", "<link", "@import", "url(", "//cdn", "https://"] {
            assert!(!PAGE.contains(needle), "the dashboard references an external asset: {needle}");
        }
        // The only absolute URL is the SVG namespace, which is an identifier, not a download.
        let urls: Vec<&str> = PAGE.match_indices("http://").map(|(i, _)| &PAGE[i..(i + 40).min(PAGE.len())]).collect();
        assert!(urls.iter().all(|u| u.starts_with("http://www.w3.org/2000/svg")), "{urls:?}");
    }

    #[test]
    fn the_page_polls_status_relative_to_itself_and_marks_its_charts() {
        assert!(PAGE.contains(r#"fetch("status""#), "polls status relative to the page URL");
        assert!(PAGE.contains("POLL_MS = 2000"));
        assert!(PAGE.contains(r#"svg.setAttribute("data-points", drawn)"#));
        for id in ["lag-chart", "rate-chart", "consumer", "freshness", "down"] {
            assert!(PAGE.contains(&format!(r#"id: "{id}""#)) || PAGE.contains(&format!(r#"id="{id}""#)), "{id}");
        }
    }
}
