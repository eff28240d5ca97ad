//! The ruler's HTTP API: `/api/v1/rules` (with `type=alert|record`) and
//! `/api/v1/alerts` in Prometheus's JSON, `/metrics`, `/-/healthy`, `/-/ready` and
//! `POST /-/reload` (re-reads the rule files; a bad file keeps the last good
//! rules, logs the error and sets `thanos_rule_config_last_reload_successful` 0).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::alert::AlertState;
use crate::head::Head;
use crate::notifier::rfc3339_ms;
use crate::rulefile::{self, RuleKind};
use crate::ruler::{group_key, rule_keys, Ruler, RulerState};

/// Reloads rule files into a ruler, counting outcomes.
pub struct Reloader {
    patterns: Vec<String>,
    ruler: Arc<Ruler>,
    pub last_success: AtomicI64,
    pub last_success_time: AtomicI64,
    pub failures: AtomicU64,
}

impl Reloader {
    pub fn new(patterns: Vec<String>, ruler: Arc<Ruler>) -> Self {
        Reloader {
            patterns,
            ruler,
            last_success: AtomicI64::new(1),
            last_success_time: AtomicI64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Loads the rule files (globs expanded); installs them only if all are valid.
    pub fn reload(&self) -> crate::Result<usize> {
        let r =
            rulefile::expand_globs(&self.patterns).and_then(|paths| rulefile::load_files(&paths));
        match r {
            Ok(groups) => {
                let n = groups.iter().map(|g| g.rules.len()).sum();
                tracing::info!(groups = groups.len(), rules = n, "rule files loaded");
                self.ruler.set_groups(groups);
                self.last_success.store(1, Ordering::Relaxed);
                self.last_success_time
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading rule files failed; keeping the last good rules");
                self.last_success.store(0, Ordering::Relaxed);
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        rulefile::expand_globs(&self.patterns).unwrap_or_default()
    }
}

/// What the router serves.
#[derive(Clone)]
pub struct ApiState {
    pub ruler: Arc<Ruler>,
    pub reloader: Option<Arc<Reloader>>,
    pub head: Option<Arc<Head>>,
    /// The Alertmanager client, for its delivery counters.
    pub alertmanagers: Option<Arc<crate::notifier::AlertmanagerNotifier>>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Thanos Rule is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Thanos Rule is Ready.\n" }))
        .route("/-/reload", post(reload))
        .with_state(state)
}

fn go_float_e(v: f64) -> String {
    // strconv.FormatFloat(v, 'e', -1, 64)
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn time_or_zero(ms: i64) -> String {
    if ms == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        rfc3339_ms(ms)
    }
}

fn alert_json(a: &crate::alert::Alert) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339_ms(a.active_at),
        "value": go_float_e(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        v["keepFiringSince"] = json!(rfc3339_ms(k));
    }
    v
}

fn error(status: StatusCode, kind: &str, msg: String) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "errorType": kind, "error": msg})),
    )
        .into_response()
}

/// `/api/v1/rules` as Prometheus answers it, from the ruler's rules and `state`.
pub fn rules_json(ruler: &Ruler, state: &RulerState, type_filter: Option<&str>) -> Value {
    let mut groups = Vec::new();
    for g in ruler.groups().iter() {
        let gs = state.groups.get(&group_key(g));
        let mut rules = Vec::new();
        for (r, key) in g.rules.iter().zip(rule_keys(g)) {
            let st = gs.and_then(|s| s.rules.get(&key));
            let health = st.map(|s| s.health.as_str()).unwrap_or("unknown");
            let mut v = match &r.kind {
                RuleKind::Alert(name) => {
                    if type_filter == Some("record") {
                        continue;
                    }
                    let active: Vec<Value> = st
                        .and_then(|s| s.alerts.as_ref())
                        .map(|a| {
                            a.active
                                .values()
                                .filter(|x| x.state != AlertState::Inactive)
                                .map(alert_json)
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({
                        "state": Ruler::rule_state(st).as_str(),
                        "name": name,
                        "query": r.expr,
                        "duration": r.for_.as_secs_f64(),
                        "keepFiringFor": r.keep_firing_for.as_secs_f64(),
                        "labels": r.labels,
                        "annotations": r.annotations,
                        "alerts": active,
                        "health": health,
                        "evaluationTime": st.map(|s| s.eval_seconds).unwrap_or(0.0),
                        "lastEvaluation": time_or_zero(st.map(|s| s.last_eval).unwrap_or(0)),
                        "type": "alerting",
                    })
                }
                RuleKind::Record(name) => {
                    if type_filter == Some("alert") {
                        continue;
                    }
                    let mut v = json!({
                        "name": name,
                        "query": r.expr,
                        "health": health,
                        "evaluationTime": st.map(|s| s.eval_seconds).unwrap_or(0.0),
                        "lastEvaluation": time_or_zero(st.map(|s| s.last_eval).unwrap_or(0)),
                        "type": "recording",
                    });
                    if !r.labels.is_empty() {
                        v["labels"] = json!(r.labels);
                    }
                    v
                }
            };
            if let Some(s) = st.filter(|s| !s.last_error.is_empty()) {
                v["lastError"] = json!(s.last_error);
            }
            rules.push(v);
        }
        if type_filter.is_some() && rules.is_empty() {
            continue;
        }
        groups.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": ruler.interval_ms(g) as f64 / 1000.0,
            "limit": g.limit,
            "evaluationTime": gs.map(|s| s.eval_seconds).unwrap_or(0.0),
            "lastEvaluation": time_or_zero(gs.map(|s| s.last_eval).unwrap_or(0)),
            "partialResponseStrategy": g.partial_response_strategy.as_str(),
        }));
    }
    json!({"status": "success", "data": {"groups": groups}})
}

async fn rules(State(s): State<ApiState>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let t = q.get("type").map(String::as_str);
    if let Some(t) = t.filter(|t| !t.is_empty()) {
        if t != "alert" && t != "record" {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("unsupported type {t:?}: want \"alert\" or \"record\""),
            );
        }
    }
    let state = s.ruler.last_state();
    axum::Json(rules_json(&s.ruler, &state, t.filter(|t| !t.is_empty()))).into_response()
}

async fn alerts(State(s): State<ApiState>) -> Response {
    let state = s.ruler.last_state();
    let mut out = Vec::new();
    for g in s.ruler.groups().iter() {
        let Some(gs) = state.groups.get(&group_key(g)) else {
            continue;
        };
        for key in rule_keys(g) {
            if let Some(a) = gs.rules.get(&key).and_then(|s| s.alerts.as_ref()) {
                out.extend(
                    a.active
                        .values()
                        .filter(|x| x.state != AlertState::Inactive)
                        .map(alert_json),
                );
            }
        }
    }
    axum::Json(json!({"status": "success", "data": {"alerts": out}})).into_response()
}

async fn reload(State(s): State<ApiState>) -> Response {
    match &s.reloader {
        None => (StatusCode::NOT_FOUND, "reloading is not enabled\n").into_response(),
        Some(r) => {
            let r = Arc::clone(r);
            match tokio::task::spawn_blocking(move || r.reload()).await {
                Ok(Ok(n)) => (StatusCode::OK, format!("reloaded: {n} rules\n")).into_response(),
                Ok(Err(e)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("failed to reload config: {e}\n"),
                )
                    .into_response(),
                Err(e) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, format!("reload: {e}\n")).into_response()
                }
            }
        }
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of the ruler's metrics.
pub fn metrics_text(s: &ApiState) -> String {
    let mut out = String::new();
    let m = &s.ruler.metrics;
    let groups = m.groups.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let per_group = |f: &dyn Fn(&crate::ruler::GroupMetrics) -> String| -> Vec<(String, String)> {
        groups
            .iter()
            .map(|(k, g)| (format!("{{rule_group=\"{}\"}}", esc(k)), f(g)))
            .collect()
    };
    family(
        "prometheus_rule_evaluations_total",
        "counter",
        "The total number of rule evaluations.",
        per_group(&|g| g.evaluations.to_string()),
    );
    family(
        "prometheus_rule_evaluation_failures_total",
        "counter",
        "The total number of rule evaluation failures.",
        per_group(&|g| g.failures.to_string()),
    );
    family(
        "prometheus_rule_group_last_duration_seconds",
        "gauge",
        "The duration of the last rule group evaluation.",
        per_group(&|g| model::format_go_float(g.last_duration_s)),
    );
    family(
        "prometheus_rule_group_last_evaluation_timestamp_seconds",
        "gauge",
        "The timestamp of the last rule group evaluation in seconds.",
        per_group(&|g| model::format_go_float(g.last_eval_ms as f64 / 1000.0)),
    );
    family(
        "prometheus_rule_group_interval_seconds",
        "gauge",
        "The interval of a rule group.",
        per_group(&|g| model::format_go_float(g.interval_s)),
    );
    family(
        "prometheus_rule_group_rules",
        "gauge",
        "The number of rules.",
        per_group(&|g| g.rules.to_string()),
    );
    family(
        "thanos_rule_evaluation_with_warnings_total",
        "counter",
        "Rule evaluations that returned warnings (partial responses).",
        per_group(&|g| g.warnings.to_string()),
    );
    let c = |a: &AtomicU64| vec![(String::new(), a.load(Ordering::Relaxed).to_string())];
    match &s.alertmanagers {
        Some(am) => {
            family(
                "prometheus_notifications_sent_total",
                "counter",
                "Total number of alerts sent (per Alertmanager).",
                c(&am.metrics.sent),
            );
            family(
                "prometheus_notifications_errors_total",
                "counter",
                "Total number of failed deliveries to an Alertmanager (after retries).",
                c(&am.metrics.errors),
            );
            family(
                "prometheus_notifications_dropped_total",
                "counter",
                "Total number of alerts no Alertmanager took.",
                c(&am.metrics.dropped),
            );
            family(
                "prometheus_notifications_alertmanagers_discovered",
                "gauge",
                "The number of Alertmanagers discovered and active.",
                c(&am.metrics.discovered),
            );
        }
        None => {
            family(
                "prometheus_notifications_sent_total",
                "counter",
                "Total number of alerts sent.",
                c(&m.alerts_sent),
            );
            family(
                "prometheus_notifications_errors_total",
                "counter",
                "Total number of failed alert batches.",
                c(&m.notify_failures),
            );
        }
    }
    family(
        "aether_rule_alerts_handed_to_notifier_total",
        "counter",
        "Alerts the ticks handed to the notifier.",
        c(&m.alerts_sent),
    );
    family(
        "aether_rule_notifier_failures_total",
        "counter",
        "Batches the notifier refused (queue full or no Alertmanager took them).",
        c(&m.notify_failures),
    );
    family(
        "aether_rule_ticks_total",
        "counter",
        "Evaluation ticks run.",
        c(&m.ticks),
    );
    family(
        "aether_rule_tick_lost_races_total",
        "counter",
        "Ticks whose results were dropped because another tick saved the state first.",
        c(&m.lost_races),
    );
    family(
        "aether_rule_samples_appended_total",
        "counter",
        "Samples recorded into the ruler's head.",
        c(&m.samples_appended),
    );
    family(
        "aether_rule_samples_out_of_order_total",
        "counter",
        "Samples dropped as not newer than their series' last one.",
        c(&m.samples_out_of_order),
    );
    if let Some(r) = &s.reloader {
        family(
            "thanos_rule_config_last_reload_successful",
            "gauge",
            "Whether the last rule file reload succeeded.",
            vec![(
                String::new(),
                r.last_success.load(Ordering::Relaxed).to_string(),
            )],
        );
        family(
            "thanos_rule_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Time of the last successful reload.",
            vec![(
                String::new(),
                r.last_success_time.load(Ordering::Relaxed).to_string(),
            )],
        );
        family(
            "thanos_rule_config_reload_failures_total",
            "counter",
            "Failed reloads.",
            c(&r.failures),
        );
    }
    if let Some(h) = &s.head {
        let (series, samples) = h.stats();
        family(
            "aether_rule_head_series",
            "gauge",
            "Series in the ruler's head.",
            vec![(String::new(), series.to_string())],
        );
        family(
            "aether_rule_head_samples",
            "gauge",
            "Samples in the ruler's head.",
            vec![(String::new(), samples.to_string())],
        );
    }
    out
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
        metrics_text(&s),
    )
        .into_response()
}
