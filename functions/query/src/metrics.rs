//! The querier's own metrics, served at `/metrics` in Prometheus's text
//! format, with Thanos's names so its dashboards and alerts apply:
//! `http_requests_total{handler, code, method}` and
//! `http_request_duration_seconds{handler}` (histogram), where `handler` is
//! the API route's name (`query`, `query_range`, `series`, ...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the duration histogram, seconds (Thanos's HTTP buckets).
const BUCKETS: [f64; 11] = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latency histograms per handler.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16, String), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
}

/// The `handler` label of a route: its last meaningful path segment, as
/// Thanos names its API handlers.
pub fn handler_name(route: &str) -> String {
    match route {
        "/" | "/graph" | "/endpoints" => "ui".to_string(),
        "/api/v1/label/{name}/values" => "label_values".to_string(),
        "/-/healthy" => "healthy".to_string(),
        "/-/ready" => "ready".to_string(),
        r => r.rsplit('/').next().unwrap_or(r).to_string(),
    }
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn observe(&self, handler: &str, code: u16, method: &str, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry((handler.to_string(), code, method.to_string()))
            .or_default() += 1;
        let mut d = self.durations.lock().unwrap();
        let h = d.entry(handler.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP http_requests_total Tracks the number of HTTP requests.\n# TYPE http_requests_total counter\n");
        for ((handler, code, method), n) in self.requests.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{code=\"{code}\",handler=\"{handler}\",method=\"{}\"}} {n}",
                method.to_lowercase()
            );
        }
        out.push_str("# HELP http_request_duration_seconds Tracks the latencies for HTTP requests.\n# TYPE http_request_duration_seconds histogram\n");
        for (handler, h) in self.durations.lock().unwrap().iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{handler=\"{handler}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{handler=\"{handler}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{handler=\"{handler}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{handler=\"{handler}\"}} {}",
                h.count
            );
        }
        out
    }
}

/// Middleware: times every routed request and records it.
pub async fn track(
    State(m): State<std::sync::Arc<HttpMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    if let Some(route) = route {
        m.observe(
            &handler_name(&route),
            resp.status().as_u16(),
            &method,
            start.elapsed().as_secs_f64(),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exposition() {
        assert_eq!(handler_name("/api/v1/query_range"), "query_range");
        assert_eq!(handler_name("/api/v1/label/{name}/values"), "label_values");
        let m = HttpMetrics::default();
        m.observe("query", 200, "GET", 0.02);
        m.observe("query", 400, "POST", 2.0);
        let t = m.render();
        assert!(
            t.contains("http_requests_total{code=\"200\",handler=\"query\",method=\"get\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("http_requests_total{code=\"400\",handler=\"query\",method=\"post\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("http_request_duration_seconds_bucket{handler=\"query\",le=\"0.05\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("http_request_duration_seconds_bucket{handler=\"query\",le=\"2.5\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("http_request_duration_seconds_count{handler=\"query\"} 2"),
            "{t}"
        );
    }
}
