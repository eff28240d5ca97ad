//! Prometheus's HTTP API (`/api/v1/...`) over the endpoints, with Thanos's extra
//! parameters (`dedup`, `replicaLabels[]`, `partial_response`,
//! `max_source_resolution`), the web UI and health endpoints.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use promql::{Engine, EngineOpts};

use crate::endpoints::{EndpointSet, Health};
use crate::fanout::{QueryOptions, StoreQueryable};
use crate::json;
use crate::params::{self, Params, MAX_TIME, MIN_TIME};

/// The querier's settings (its flags).
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// `--query.replica-label`: labels that tell replicas apart.
    pub replica_labels: Vec<String>,
    /// `--query.timeout`: longest a query may run.
    pub timeout: Duration,
    /// `--query.max-concurrent`: queries evaluated at once (more wait), and
    /// endpoint calls in flight per query.
    pub max_concurrent: usize,
    /// `--query.lookback-delta`.
    pub lookback_delta: Duration,
    /// `--query.partial-response`: the default of `partial_response`.
    pub partial_response: bool,
    /// `--query.max-samples`.
    pub max_samples: usize,
    /// Downsampling when `max_source_resolution` is absent: true = `auto`.
    pub auto_downsampling: bool,
    /// `--query.dynamic-lookback-delta`: widen the lookback delta to the
    /// resolution of downsampled data read (5m, 1h), as Thanos does, so that
    /// instant vectors over 1h-resolution data are not empty.
    pub dynamic_lookback_delta: bool,
    /// `--rule.url`: HTTP base URLs of rulers whose `/api/v1/rules` are merged
    /// into the querier's `/api/v1/rules` and `/api/v1/alerts` (Thanos uses
    /// its gRPC Rules API for this; see [`crate::rules_proxy`]).
    pub rule_urls: Vec<String>,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            replica_labels: Vec::new(),
            timeout: Duration::from_secs(120),
            max_concurrent: 20,
            lookback_delta: Duration::from_secs(300),
            partial_response: false,
            max_samples: 50_000_000,
            auto_downsampling: false,
            dynamic_lookback_delta: true,
            rule_urls: Vec::new(),
        }
    }
}

/// Thanos's lookback delta for a query reading data up to `max_resolution`
/// (ms): the configured `base`, widened to 5m or 1h when the resolution read
/// is coarser than the base and (with `dynamic`) the resolution level below.
pub fn lookback_for_resolution(base: Duration, dynamic: bool, max_resolution: i64) -> Duration {
    const LEVELS: [i64; 3] = [0, 5 * 60 * 1000, 60 * 60 * 1000];
    if !dynamic {
        return base;
    }
    let ld = i64::try_from(base.as_millis()).unwrap_or(i64::MAX);
    // The lookback per level: the base, or the level's resolution once
    // that is larger (and every level after it).
    let mut deltas = [base; 3];
    let mut cur = base;
    for (i, r) in LEVELS.iter().enumerate() {
        if ld < *r {
            cur = Duration::from_millis(*r as u64);
        }
        deltas[i] = cur;
    }
    for i in (1..LEVELS.len()).rev() {
        if LEVELS[i - 1].max(ld) < max_resolution {
            return deltas[i];
        }
    }
    deltas[0]
}

/// The querier handler: endpoints + settings. Cheap to share; holds no state
/// that matters beyond caches of endpoint Info.
pub struct Querier {
    pub endpoints: Arc<EndpointSet>,
    pub config: QuerierConfig,
    gate: tokio::sync::Semaphore,
    /// Request counts and latencies, for `/metrics`.
    pub http_metrics: Arc<crate::metrics::HttpMetrics>,
    /// The rulers behind `/api/v1/rules` and `/api/v1/alerts`.
    pub rules: crate::rules_proxy::RulesProxy,
}

impl Querier {
    pub fn new(endpoints: Arc<EndpointSet>, config: QuerierConfig) -> Arc<Querier> {
        let permits = config.max_concurrent.max(1);
        let rules = crate::rules_proxy::RulesProxy::new(&config.rule_urls, config.timeout);
        Arc::new(Querier {
            rules,
            endpoints,
            config,
            gate: tokio::sync::Semaphore::new(permits),
            http_metrics: Arc::default(),
        })
    }
}

/// The HTTP API, UI and health endpoints.
pub fn router(q: Arc<Querier>) -> Router {
    let metrics = Arc::clone(&q.http_metrics);
    let render = Arc::clone(&q.http_metrics);
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/flags", get(empty_object))
        .route("/api/v1/metadata", get(empty_object))
        .route("/api/v1/query_exemplars", get(empty_list).post(empty_list))
        .route("/api/v1/rules", get(rules_api))
        .route("/api/v1/alerts", get(alerts_api))
        .route("/api/v1/endpoints", get(endpoints_api))
        .route("/api/v1/stores", get(endpoints_api))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(|| async { "OK" }))
        .route("/", get(crate::ui::index))
        .route("/graph", get(crate::ui::index))
        .route("/endpoints", get(crate::ui::index))
        .with_state(q)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .route(
            "/metrics",
            get(move || {
                let m = Arc::clone(&render);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
}

/// An API error: Prometheus's `errorType` and HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: &'static str,
    pub msg: String,
}

impl ApiError {
    pub fn bad_data(msg: impl Into<String>) -> Self {
        ApiError {
            kind: "bad_data",
            msg: msg.into(),
        }
    }
    fn param(name: &str, e: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {}: {e}", model::go_quote(name)))
    }
    /// The HTTP status Prometheus answers with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "canceled" => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "not_found" => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    fn from_engine(e: promql::Error) -> Self {
        use promql::Error as E;
        let kind = match &e {
            E::Parse(_) => return Self::param("query", &e),
            E::Eval(_) | E::TooManySamples => "execution",
            E::Timeout => "timeout",
            E::Canceled => "canceled",
            E::Storage(_) => "internal",
        };
        ApiError {
            kind,
            msg: e.to_string(),
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

/// An answer's data, warnings and infos, or its error and warnings.
pub type ApiResult = Result<(String, Vec<String>, Vec<String>), (ApiError, Vec<String>)>;

fn respond(r: ApiResult) -> Response {
    match r {
        Ok((data, warnings, infos)) => {
            json_response(StatusCode::OK, json::success(&data, &warnings, &infos))
        }
        Err((e, warnings)) => json_response(e.status(), json::error(e.kind, &e.msg, &warnings)),
    }
}

fn read_params(uri: &Uri, headers: &HeaderMap, method: &Method, body: &Bytes) -> Params {
    let mut p = Params::default();
    // Go's ParseForm: body values first, then the URL's.
    if *method == Method::POST
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    {
        p.extend_urlencoded(body);
    }
    if let Some(q) = uri.query() {
        p.extend_urlencoded(q.as_bytes());
    }
    p
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(s) => params::parse_time(s).map_err(|e| ApiError::param(name, e)),
    }
}

fn bool_param(p: &Params, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(s) => params::parse_bool(s).ok_or_else(|| {
            ApiError::bad_data(format!(
                "cannot parse parameter {name}: strconv.ParseBool: parsing {}: invalid syntax",
                model::go_quote(s)
            ))
        }),
    }
}

fn matcher_sets(p: &Params) -> Result<Vec<Vec<model::Matcher>>, ApiError> {
    p.all("match[]")
        .into_iter()
        .map(|s| params::parse_selector(s).map_err(|e| ApiError::param("match[]", e)))
        .collect()
}

impl Querier {
    /// Thanos's per-request options; `step` (ms) for `max_source_resolution=auto`.
    pub fn query_options(&self, p: &Params, step: i64) -> Result<QueryOptions, ApiError> {
        let mut replica_labels: Vec<String> = p
            .all("replicaLabels[]")
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if replica_labels.is_empty() {
            replica_labels = self.config.replica_labels.clone();
        }
        let auto = |step: i64| step / 5;
        let max_resolution = match p.get("max_source_resolution") {
            None | Some("") => {
                if self.config.auto_downsampling {
                    auto(step)
                } else {
                    0
                }
            }
            Some("auto") => auto(step),
            Some(s) => {
                let ms = params::parse_duration(s)
                    .map_err(|e| ApiError::param("max_source_resolution", e))?;
                if ms < 0 {
                    return Err(ApiError::bad_data(
                        "negative max_source_resolution is not accepted. Try a positive integer",
                    ));
                }
                ms
            }
        };
        Ok(QueryOptions {
            dedup: bool_param(p, "dedup", true)?,
            replica_labels,
            partial_response: bool_param(p, "partial_response", self.config.partial_response)?,
            max_resolution,
            max_concurrent: self.config.max_concurrent.max(1),
        })
    }

    fn engine(&self, p: &Params, max_resolution: i64) -> Result<(Engine, Duration), ApiError> {
        let mut timeout = self.config.timeout;
        if let Some(s) = p.get("timeout").filter(|s| !s.is_empty()) {
            let ms = params::parse_duration(s).map_err(|e| ApiError::param("timeout", e))?;
            if ms > 0 {
                timeout = timeout.min(Duration::from_millis(ms as u64));
            }
        }
        let mut lookback = lookback_for_resolution(
            self.config.lookback_delta,
            self.config.dynamic_lookback_delta,
            max_resolution,
        );
        if let Some(s) = p.get("lookback_delta").filter(|s| !s.is_empty()) {
            let ms = params::parse_duration(s).map_err(|e| ApiError::param("lookback_delta", e))?;
            if ms > 0 {
                lookback = Duration::from_millis(ms as u64);
            }
        }
        let opts = EngineOpts {
            lookback_delta: lookback,
            max_samples: self.config.max_samples,
            timeout,
            ..EngineOpts::default()
        };
        Ok((Engine::new(opts), timeout))
    }

    /// Evaluates a query over `[start, end]` every `step` (0: instant) and
    /// answers as Prometheus does (data, warnings, infos).
    pub async fn run_query(
        &self,
        p: &Params,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> ApiResult {
        let opts = self.query_options(p, step).map_err(|e| (e, vec![]))?;
        let (engine, timeout) = self
            .engine(p, opts.max_resolution)
            .map_err(|e| (e, vec![]))?;
        let q = StoreQueryable::new(Arc::clone(&self.endpoints), opts);
        let queued = std::time::Instant::now();
        let _permit = self.gate.acquire().await;
        let queue_time = queued.elapsed().as_secs_f64();
        let fut = async {
            if step == 0 {
                engine.instant_query(&q, query, start).await
            } else {
                engine.range_query(&q, query, start, end, step).await
            }
        };
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(promql::Error::Timeout),
        };
        let mut warnings = q.take_warnings();
        match r {
            Ok(res) => {
                warnings.extend(res.warnings);
                let mut data = json::query_data(&res.value);
                // As Prometheus: any non-empty `stats` asks for the statistics.
                if p.get("stats").is_some_and(|s| !s.is_empty()) {
                    let total = queued.elapsed().as_secs_f64();
                    json::add_query_stats(&mut data, &res.stats, queue_time, total);
                }
                Ok((data, warnings, res.infos))
            }
            Err(e) => Err((ApiError::from_engine(e), warnings)),
        }
    }
}

async fn query(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = read_params(&uri, &headers, &method, &body);
    let r = async {
        let ts = time_param(&p, "time", now_ms()).map_err(|e| (e, vec![]))?;
        let expr = p.get("query").unwrap_or("").to_string();
        q.run_query(&p, &expr, ts, ts, 0).await
    }
    .await;
    respond(r)
}

async fn query_range(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = read_params(&uri, &headers, &method, &body);
    let r = async {
        let nw = |e| (e, Vec::new());
        let start = params::parse_time(p.get("start").unwrap_or(""))
            .map_err(|e| nw(ApiError::param("start", e)))?;
        let end = params::parse_time(p.get("end").unwrap_or(""))
            .map_err(|e| nw(ApiError::param("end", e)))?;
        if end < start {
            return Err(nw(ApiError::bad_data(
                "end timestamp must not be before start time",
            )));
        }
        let step = params::parse_duration(p.get("step").unwrap_or(""))
            .map_err(|e| nw(ApiError::param("step", e)))?;
        if step <= 0 {
            return Err(nw(ApiError::bad_data(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            )));
        }
        if (end - start) / step > 11_000 {
            return Err(nw(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            )));
        }
        let expr = p.get("query").unwrap_or("").to_string();
        q.run_query(&p, &expr, start, end, step).await
    }
    .await;
    respond(r)
}

async fn series(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = read_params(&uri, &headers, &method, &body);
    let r = async {
        let nw = |e| (e, Vec::new());
        if p.all("match[]").is_empty() {
            return Err(nw(ApiError::bad_data("no match[] parameter provided")));
        }
        let start = time_param(&p, "start", MIN_TIME).map_err(nw)?;
        let end = time_param(&p, "end", MAX_TIME).map_err(nw)?;
        let sets = matcher_sets(&p).map_err(nw)?;
        let opts = q.query_options(&p, 0).map_err(nw)?;
        let sq = StoreQueryable::new(Arc::clone(&q.endpoints), opts);
        let r = sq.series_labels(&sets, start, end).await;
        let warnings = sq.take_warnings();
        match r {
            Ok(ls) => {
                let mut o = String::from("[");
                for (i, l) in ls.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    json::write_labels(&mut o, l);
                }
                o.push(']');
                Ok((o, warnings, vec![]))
            }
            Err(e) => Err((ApiError::from_engine(e), warnings)),
        }
    }
    .await;
    respond(r)
}

async fn labels(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = read_params(&uri, &headers, &method, &body);
    let r = async {
        let nw = |e| (e, Vec::new());
        let start = time_param(&p, "start", MIN_TIME).map_err(nw)?;
        let end = time_param(&p, "end", MAX_TIME).map_err(nw)?;
        let sets = matcher_sets(&p).map_err(nw)?;
        let opts = q.query_options(&p, 0).map_err(nw)?;
        let sq = StoreQueryable::new(Arc::clone(&q.endpoints), opts);
        let r = sq.label_names(&sets, start, end).await;
        let warnings = sq.take_warnings();
        match r {
            Ok(names) => {
                let mut o = String::new();
                json::write_strings(&mut o, &names);
                Ok((o, warnings, vec![]))
            }
            Err(e) => Err((ApiError::from_engine(e), warnings)),
        }
    }
    .await;
    respond(r)
}

fn valid_label_name(s: &str) -> bool {
    let mut it = s.chars();
    matches!(it.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && it.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

async fn label_values(
    State(q): State<Arc<Querier>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = read_params(&uri, &headers, &method, &body);
    let r = async {
        let nw = |e| (e, Vec::new());
        if !valid_label_name(&name) {
            return Err(nw(ApiError::bad_data(format!(
                "invalid label name: {}",
                model::go_quote(&name)
            ))));
        }
        let start = time_param(&p, "start", MIN_TIME).map_err(nw)?;
        let end = time_param(&p, "end", MAX_TIME).map_err(nw)?;
        let sets = matcher_sets(&p).map_err(nw)?;
        let opts = q.query_options(&p, 0).map_err(nw)?;
        let sq = StoreQueryable::new(Arc::clone(&q.endpoints), opts);
        let r = sq.label_values(&name, &sets, start, end).await;
        let warnings = sq.take_warnings();
        match r {
            Ok(values) => {
                let mut o = String::new();
                json::write_strings(&mut o, &values);
                Ok((o, warnings, vec![]))
            }
            Err(e) => Err((ApiError::from_engine(e), warnings)),
        }
    }
    .await;
    respond(r)
}

/// `/api/v1/format_query`: the query pretty-printed as Prometheus prints it
/// (Grafana's "format query").
async fn format_query(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let p = read_params(&uri, &headers, &method, &body);
    let r = crate::format::format_query(p.get("query").unwrap_or(""))
        .map(|f| {
            let mut data = String::new();
            json::write_str(&mut data, &f);
            (data, Vec::new(), Vec::new())
        })
        .map_err(|e| (ApiError::from_engine(e), Vec::new()));
    respond(r)
}

async fn buildinfo() -> Response {
    let data = format!(
        r#"{{"version":"{}","revision":"","branch":"","buildUser":"","buildDate":"","goVersion":""}}"#,
        env!("CARGO_PKG_VERSION")
    );
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

async fn empty_object() -> Response {
    json_response(StatusCode::OK, json::success("{}", &[], &[]))
}

async fn empty_list() -> Response {
    json_response(StatusCode::OK, json::success("[]", &[], &[]))
}

/// The endpoints as JSON: `[{address, health, component, labelSets, minTime,
/// maxTime, lastCheck, lastError}]`.
pub async fn endpoints_json(set: &EndpointSet) -> String {
    let mut o = String::from("[");
    for (i, s) in set.status().await.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(r#"{"address":"#);
        json::write_str(&mut o, &s.address);
        let (health, info, err) = match &s.health {
            Health::Unknown => ("unknown", None, None),
            Health::Up(i) => ("up", Some(i), None),
            Health::Down { info, error } => ("down", info.as_ref(), Some(error)),
        };
        o.push_str(r#","health":"#);
        json::write_str(&mut o, health);
        if let Some(i) = info {
            o.push_str(r#","component":"#);
            json::write_str(&mut o, &i.component);
            o.push_str(r#","labelSets":["#);
            for (j, l) in i.label_sets.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                json::write_labels(&mut o, l);
            }
            o.push_str(&format!(
                r#"],"minTime":{},"maxTime":{}"#,
                i.min_time, i.max_time
            ));
        }
        o.push_str(&format!(r#","lastCheck":{}"#, s.last_check_ms));
        if let Some(e) = err {
            o.push_str(r#","lastError":"#);
            json::write_str(&mut o, e);
        }
        o.push('}');
    }
    o.push(']');
    o
}

/// `/api/v1/rules`: the configured rulers' rule groups, merged and filtered.
async fn rules_api(State(q): State<Arc<Querier>>, uri: Uri) -> Response {
    let mut p = Params::default();
    if let Some(s) = uri.query() {
        p.extend_urlencoded(s.as_bytes());
    }
    let filter = match crate::rules_proxy::RulesFilter::from_params(&p) {
        Ok(f) => f,
        Err(e) => return ApiError::bad_data(e).into_response(),
    };
    let m = q.rules.rules(&filter, &q.config.replica_labels).await;
    let data = crate::rules_proxy::groups_json(&m.groups);
    json_response(StatusCode::OK, json::success(&data, &m.warnings, &[]))
}

/// `/api/v1/alerts`: the alerts of the configured rulers' alerting rules.
async fn alerts_api(State(q): State<Arc<Querier>>) -> Response {
    let filter = crate::rules_proxy::RulesFilter {
        alerting: Some(true),
        ..Default::default()
    };
    let m = q.rules.rules(&filter, &q.config.replica_labels).await;
    let data = crate::rules_proxy::alerts_json(&crate::rules_proxy::alerts_of(&m.groups));
    json_response(StatusCode::OK, json::success(&data, &m.warnings, &[]))
}

async fn endpoints_api(State(q): State<Arc<Querier>>) -> Response {
    let data = endpoints_json(&q.endpoints).await;
    json_response(StatusCode::OK, json::success(&data, &[], &[]))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status(), json::error(self.kind, &self.msg, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::lookback_for_resolution;
    use std::time::Duration;

    const M: i64 = 60_000;

    fn ld(base_min: u64, dynamic: bool, res_ms: i64) -> u64 {
        lookback_for_resolution(Duration::from_secs(base_min * 60), dynamic, res_ms).as_secs() / 60
    }

    #[test]
    fn lookback_follows_thanos_dynamic_lookback_delta() {
        // The default 5m: raw and 5m data keep 5m; anything coarser gets 1h.
        assert_eq!(ld(5, true, 0), 5);
        assert_eq!(ld(5, true, 5 * M), 5);
        assert_eq!(ld(5, true, 10 * M), 60);
        assert_eq!(ld(5, true, 60 * M), 60);
        // Off: always the base.
        assert_eq!(ld(5, false, 60 * M), 5);
        // A 1m base widens to 5m over 5m data, to 1h over 1h data.
        assert_eq!(ld(1, true, 0), 1);
        assert_eq!(ld(1, true, M), 1);
        assert_eq!(ld(1, true, 2 * M), 5);
        assert_eq!(ld(1, true, 5 * M), 5);
        assert_eq!(ld(1, true, 60 * M), 60);
        // A base longer than every resolution is never narrowed.
        assert_eq!(ld(120, true, 60 * M), 120);
        assert_eq!(ld(120, true, 0), 120);
    }
}
