//! How rules are evaluated: the [`RuleQuerier`] seam (an instant query at a time,
//! answering a vector and warnings) and its two implementations:
//!
//! - [`HttpQuerier`]: a querier's (Thanos or Aether) HTTP API, `POST
//!   /api/v1/query` with Thanos's `partial_response` parameter; several URLs are
//!   tried in turn.
//! - [`EngineQuerier`]: the embedded PromQL engine over StoreAPI endpoints
//!   (`--endpoint`), through the querier library's fan-out.
//!
//! The group's partial response strategy travels with each query: `abort` asks
//! for a complete answer (a failed store fails the query), `warn` accepts a
//! partial one and reports its warnings.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use model::Labels;

use crate::rulefile::PartialResponseStrategy;
use crate::{Error, Result};

/// The answer of one instant query: float samples and the warnings of a partial
/// response (PromQL's own annotations are not warnings here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOutput {
    pub samples: Vec<(Labels, f64)>,
    pub warnings: Vec<String>,
}

/// Evaluates instant queries for rules.
#[async_trait]
pub trait RuleQuerier: Send + Sync {
    /// `expr` at `t_ms`. A query failure is [`Error::Query`].
    async fn query(
        &self,
        expr: &str,
        t_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryOutput>;
}

fn is_promql_annotation(w: &str) -> bool {
    w.starts_with("PromQL warning") || w.starts_with("PromQL info")
}

// ---------------------------------------------------------------------------

/// Queries a querier's HTTP API.
pub struct HttpQuerier {
    urls: Vec<String>,
    client: reqwest::Client,
}

impl HttpQuerier {
    /// `urls`: base URLs of queriers (`http://host:10902`, with or without a path
    /// prefix). Tried in order until one answers.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Self> {
        if urls.is_empty() {
            return Err(Error::Config("no --query URL given".into()));
        }
        for u in &urls {
            reqwest::Url::parse(u).map_err(|e| Error::Config(format!("--query {u:?}: {e}")))?;
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(HttpQuerier { urls, client })
    }

    async fn query_one(
        &self,
        base: &str,
        expr: &str,
        t_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryOutput> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let time = format!("{}.{:03}", t_ms.div_euclid(1000), t_ms.rem_euclid(1000));
        let partial = if strategy == PartialResponseStrategy::Warn {
            "true"
        } else {
            "false"
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .append_pair("time", &time)
            .append_pair("partial_response", partial)
            .finish();
        let resp = self
            .client
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Query(format!("POST {url}: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Query(format!("POST {url}: reading the answer: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            Error::Query(format!(
                "POST {url}: answer is not JSON (HTTP {status}): {e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        if v["status"] != "success" {
            return Err(Error::Query(format!(
                "{}: {}",
                v["errorType"].as_str().unwrap_or("error"),
                v["error"].as_str().unwrap_or("query failed")
            )));
        }
        parse_query_data(&v)
    }
}

/// Parses the `data` and `warnings` of a successful Prometheus `/api/v1/query` answer.
pub fn parse_query_data(v: &serde_json::Value) -> Result<QueryOutput> {
    let bad = |what: &str| Error::Query(format!("malformed query answer: {what}"));
    let warnings = v["warnings"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w.as_str())
                .filter(|w| !is_promql_annotation(w))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let data = &v["data"];
    let parse_val = |p: &serde_json::Value| -> Result<f64> {
        let s = p[1]
            .as_str()
            .ok_or_else(|| bad("sample value is not a string"))?;
        match s {
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => s.parse().map_err(|_| bad("sample value is not a number")),
        }
    };
    let samples = match data["resultType"].as_str() {
        Some("vector") => {
            let mut out = Vec::new();
            for s in data["result"].as_array().ok_or_else(|| bad("no result"))? {
                // Native histogram samples are not recorded (floats only).
                if s.get("value").is_none() {
                    continue;
                }
                let metric = s["metric"].as_object().ok_or_else(|| bad("no metric"))?;
                let labels = Labels::from_pairs(
                    metric
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())),
                );
                out.push((labels, parse_val(&s["value"])?));
            }
            out
        }
        Some("scalar") => vec![(Labels::empty(), parse_val(&data["result"])?)],
        Some(other) => {
            return Err(Error::Query(format!(
                "rule expressions must be vectors or scalars, got {other}"
            )))
        }
        None => return Err(bad("no resultType")),
    };
    Ok(QueryOutput { samples, warnings })
}

#[async_trait]
impl RuleQuerier for HttpQuerier {
    async fn query(
        &self,
        expr: &str,
        t_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryOutput> {
        let mut last = None;
        for u in &self.urls {
            match self.query_one(u, expr, t_ms, strategy).await {
                Ok(o) => return Ok(o),
                Err(e) => {
                    tracing::debug!(url = %u, error = %e, "query failed; trying the next querier");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Query("no querier".into())))
    }
}

// ---------------------------------------------------------------------------

/// The embedded engine over StoreAPI endpoints.
pub struct EngineQuerier {
    engine: promql::Engine,
    set: Arc<query::EndpointSet>,
    opts: query::QueryOptions,
}

impl EngineQuerier {
    /// `opts.partial_response` is set per query from the group's strategy.
    pub fn new(
        engine: promql::Engine,
        set: Arc<query::EndpointSet>,
        opts: query::QueryOptions,
    ) -> Self {
        EngineQuerier { engine, set, opts }
    }
}

/// Float samples of a query value (scalars become one sample without labels).
pub fn vector_of(value: promql::Value) -> Result<Vec<(Labels, f64)>> {
    match value {
        promql::Value::Vector(v) => Ok(v
            .into_iter()
            .filter(|s| s.h.is_none())
            .map(|s| (s.labels, s.v))
            .collect()),
        promql::Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        promql::Value::String { .. } => Err(Error::Query(
            "rule expressions must be vectors or scalars, got string".into(),
        )),
        promql::Value::Matrix(_) => Err(Error::Query(
            "rule expressions must be vectors or scalars, got matrix".into(),
        )),
    }
}

#[async_trait]
impl RuleQuerier for EngineQuerier {
    async fn query(
        &self,
        expr: &str,
        t_ms: i64,
        strategy: PartialResponseStrategy,
    ) -> Result<QueryOutput> {
        let mut opts = self.opts.clone();
        opts.partial_response = strategy == PartialResponseStrategy::Warn;
        let q = query::StoreQueryable::new(Arc::clone(&self.set), opts);
        let res = self
            .engine
            .instant_query(&q, expr, t_ms)
            .await
            .map_err(|e| Error::Query(e.to_string()))?;
        Ok(QueryOutput {
            samples: vector_of(res.value)?,
            warnings: q.take_warnings(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_answers() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"__name__":"up","job":"a"},"value":[1.5,"1"]},
                {"metric":{"job":"b"},"value":[1.5,"NaN"]}]},
                "warnings":["endpoint x: down","PromQL info: whatever"]}"#,
        )
        .unwrap();
        let o = parse_query_data(&v).unwrap();
        assert_eq!(o.samples.len(), 2);
        assert_eq!(
            o.samples[0].0,
            Labels::from_pairs([("__name__", "up"), ("job", "a")])
        );
        assert_eq!(o.samples[0].1, 1.0);
        assert!(o.samples[1].1.is_nan());
        assert_eq!(o.warnings, vec!["endpoint x: down".to_string()]);
        let v: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#,
        )
        .unwrap();
        assert_eq!(
            parse_query_data(&v).unwrap().samples,
            vec![(Labels::empty(), 2.0)]
        );
        let v: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .unwrap();
        assert!(parse_query_data(&v).is_err());
    }
}
