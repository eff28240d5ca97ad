//! The web UI: one page served from the binary (no CDN), with a query form
//! (instant / range, time, step, dedup, partial response), a table, a line graph
//! drawn as inline SVG, and the endpoints with labels, time ranges and health.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("ui.html");

pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}
