//! `/api/v1/rules` and `/api/v1/alerts` of the querier: the rule groups and
//! alerts of every configured ruler (`--rule.url`), merged into one answer in
//! Prometheus's JSON, so that Grafana's alerting view works against the
//! querier as a data source.
//!
//! Thanos's querier reaches its rulers over the gRPC Rules API (`--rule`
//! endpoints); Aether asks each ruler's HTTP API (`GET /api/v1/rules`, the same
//! JSON Prometheus answers) instead, so any ruler speaking Prometheus's API
//! (an `aether rule`, a Thanos ruler, a Prometheus) can be listed.
//!
//! Merging follows Thanos's `dedupGroups` / `dedupRules`: groups with the same
//! file and name are one group; inside it, rules equal in type, name, labels
//! (minus the replica labels), query and (alerts) `for` duration are one rule,
//! and the copy kept is the more critical one (firing, then pending, then
//! inactive), then the one evaluated last. Unlike Thanos, nothing is re-sorted:
//! groups and rules keep the order the rulers list them in (rulers in flag
//! order). `/api/v1/alerts` is the alerts of the merged alerting rules, as in
//! Thanos.
//!
//! A ruler that cannot be reached, or answers something else than a Prometheus
//! rules response, is left out with a `warnings` entry naming it; the others
//! still answer. With no ruler configured the answer is Prometheus's for no
//! rules: `{"groups":[]}` / `{"alerts":[]}`.
//!
//! Filters (Prometheus's): `type=alert|record`, `rule_name[]`, `rule_group[]`,
//! `file[]`. When any is given, groups left without rules are not listed.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::json;
use crate::params::{self, Params};

/// Errors of the rules proxy's configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RulesProxyError {
    /// A `--rule.url` that is not an absolute http(s) URL.
    #[error("--rule.url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Checks a `--rule.url` value: an absolute `http://` or `https://` URL with a
/// host, optionally with a path prefix; no query or fragment.
pub fn validate_rule_url(url: &str) -> Result<(), RulesProxyError> {
    let bad = |reason: &str| RulesProxyError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            bad("want an http:// or https:// base URL of a ruler, e.g. http://127.0.0.1:10902")
        })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(bad("a base URL takes no query or fragment"));
    }
    reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    Ok(())
}

/// Which rules a `/api/v1/rules` request asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RulesFilter {
    /// `type`: `Some(true)` alerting only, `Some(false)` recording only.
    pub alerting: Option<bool>,
    /// `rule_name[]`.
    pub names: HashSet<String>,
    /// `rule_group[]`.
    pub groups: HashSet<String>,
    /// `file[]`.
    pub files: HashSet<String>,
}

impl RulesFilter {
    /// Prometheus's parameters; a `type` other than `alert` / `record`
    /// (case-insensitive) is Prometheus's bad_data error text.
    pub fn from_params(p: &Params) -> Result<Self, String> {
        let set = |name: &str| -> HashSet<String> {
            p.all(name)
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let typ = p.get("type").unwrap_or("").to_lowercase();
        let alerting = match typ.as_str() {
            "" => None,
            "alert" => Some(true),
            "record" => Some(false),
            other => {
                return Err(format!(
                    "invalid parameter \"type\": not supported value {}",
                    model::go_quote(other)
                ))
            }
        };
        Ok(RulesFilter {
            alerting,
            names: set("rule_name[]"),
            groups: set("rule_group[]"),
            files: set("file[]"),
        })
    }

    fn any(&self) -> bool {
        self.alerting.is_some()
            || !self.names.is_empty()
            || !self.groups.is_empty()
            || !self.files.is_empty()
    }

    fn keeps_group(&self, g: &Map<String, Value>) -> bool {
        (self.groups.is_empty() || self.groups.contains(str_field(g, "name")))
            && (self.files.is_empty() || self.files.contains(str_field(g, "file")))
    }

    fn keeps_rule(&self, r: &Map<String, Value>) -> bool {
        let alerting = str_field(r, "type") == "alerting";
        self.alerting.is_none_or(|a| a == alerting)
            && (self.names.is_empty() || self.names.contains(str_field(r, "name")))
    }
}

/// A rule group as a ruler answers it (Prometheus's JSON object).
pub type Group = Map<String, Value>;

/// A ruler's groups and warnings.
pub type RulerAnswer = (Vec<Group>, Vec<String>);

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The rulers the querier asks, and how.
pub struct RulesProxy {
    urls: Vec<String>,
    timeout: Duration,
    client: OnceLock<Result<reqwest::Client, String>>,
}

/// Merged rule groups and the warnings met on the way.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Merged {
    /// Rule groups (Prometheus's JSON objects), merged and filtered.
    pub groups: Vec<Map<String, Value>>,
    /// One entry per ruler that failed, plus the rulers' own warnings.
    pub warnings: Vec<String>,
}

impl RulesProxy {
    /// Rulers at `urls` (base URLs; see [`validate_rule_url`]); each request
    /// to a ruler gives up after `timeout`.
    pub fn new(urls: &[String], timeout: Duration) -> Self {
        RulesProxy {
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            timeout,
            client: OnceLock::new(),
        }
    }

    /// The rulers' base URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(self.timeout.min(Duration::from_secs(5)))
                    .timeout(self.timeout)
                    .build()
                    .map_err(|e| error_chain(&e))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every ruler's groups (only `type`'s kind, when given), merged, then
    /// filtered. `replica_labels` are dropped from rule labels before rules
    /// are compared.
    pub async fn rules(&self, filter: &RulesFilter, replica_labels: &[String]) -> Merged {
        let typ = match filter.alerting {
            Some(true) => Some("alert"),
            Some(false) => Some("record"),
            None => None,
        };
        let answers = futures::future::join_all(self.urls.iter().map(|u| self.fetch(u, typ))).await;
        let mut warnings = Vec::new();
        let mut per_ruler = Vec::new();
        for (url, a) in self.urls.iter().zip(answers) {
            match a {
                Ok((groups, w)) => {
                    warnings.extend(w);
                    per_ruler.push(groups);
                }
                Err(e) => {
                    tracing::warn!(ruler = %url, error = %e, "rules from a ruler failed");
                    warnings.push(format!("rules from ruler {url}: {e}"));
                }
            }
        }
        let mut groups = merge(per_ruler, replica_labels);
        filter_groups(&mut groups, filter);
        Merged { groups, warnings }
    }

    /// One ruler's `/api/v1/rules` (groups, warnings).
    async fn fetch(&self, base: &str, typ: Option<&str>) -> Result<RulerAnswer, String> {
        validate_rule_url(base).map_err(|e| e.to_string())?;
        let client = self.client()?;
        let mut url = format!("{base}/api/v1/rules");
        if let Some(t) = typ {
            let _ = write!(url, "?type={t}");
        }
        let resp = client
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| error_chain(&e))?;
        parse_rules_response(status.as_u16(), &body)
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            let _ = write!(s, ": {m}");
        }
        cur = c.source();
    }
    s
}

/// Reads a ruler's answer to `/api/v1/rules`: Prometheus's envelope with
/// `data.groups`, each group an object with `name`, `file` and `rules`.
pub fn parse_rules_response(status: u16, body: &[u8]) -> Result<RulerAnswer, String> {
    let snippet = || {
        let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
        s.trim().to_string()
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "HTTP {status}, not a Prometheus API response ({e}): {:?}",
            snippet()
        )
    })?;
    if v["status"] != "success" || !(200..300).contains(&status) {
        let msg = v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(snippet);
        return Err(format!("HTTP {status}: {msg}"));
    }
    let warnings = v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let groups = v["data"]["groups"]
        .as_array()
        .ok_or_else(|| "answer has no data.groups list".to_string())?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let g = g
            .as_object()
            .ok_or_else(|| format!("a rule group is not an object: {g}"))?;
        if !g.get("name").is_some_and(Value::is_string)
            || !g.get("rules").is_some_and(Value::is_array)
        {
            return Err(format!(
                "a rule group without name or rules: {}",
                Value::Object(g.clone())
            ));
        }
        out.push(g.clone());
    }
    Ok((out, warnings))
}

/// A rule's identity for deduplication (Thanos's `Rule.Compare == 0`): type,
/// name, labels without the replica labels, query, and `for` of alerts.
fn rule_identity(r: &Map<String, Value>) -> String {
    let mut id = String::new();
    for k in ["type", "name", "query"] {
        id.push_str(str_field(r, k));
        id.push('\u{0}');
    }
    if let Some(l) = r.get("labels") {
        id.push_str(&l.to_string()); // a BTreeMap: keys sorted
    }
    id.push('\u{0}');
    if str_field(r, "type") == "alerting" {
        let d = r.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
        let _ = write!(id, "{d}");
    }
    id
}

fn state_rank(r: &Map<String, Value>) -> u8 {
    match str_field(r, "state") {
        "firing" => 2,
        "pending" => 1,
        _ => 0,
    }
}

fn last_eval_ms(r: &Map<String, Value>) -> i64 {
    params::parse_rfc3339(str_field(r, "lastEvaluation")).unwrap_or(i64::MIN)
}

/// Whether rule `b` should replace its duplicate `a` (Thanos: the more
/// critical alert state, then the later evaluation).
fn better(b: &Map<String, Value>, a: &Map<String, Value>) -> bool {
    if str_field(a, "type") == "alerting" {
        let (ra, rb) = (state_rank(a), state_rank(b));
        if ra != rb {
            return rb > ra;
        }
    }
    last_eval_ms(b) > last_eval_ms(a)
}

fn drop_replica_labels(r: &mut Map<String, Value>, replica_labels: &[String]) {
    if let Some(Value::Object(l)) = r.get_mut("labels") {
        for name in replica_labels {
            l.remove(name);
        }
    }
}

/// Merges the rulers' groups: groups with the same file and name become one
/// (the first one's fields, every copy's rules), and equal rules in a group
/// one rule (see the module docs). Order of first appearance is kept.
pub fn merge(
    per_ruler: Vec<Vec<Map<String, Value>>>,
    replica_labels: &[String],
) -> Vec<Map<String, Value>> {
    let mut out: Vec<Map<String, Value>> = Vec::new();
    // Per output group: its index, and its rules' identities -> index.
    let mut by_key: HashMap<(String, String), (usize, HashMap<String, usize>)> = HashMap::new();
    for groups in per_ruler {
        for mut g in groups {
            let key = (
                str_field(&g, "file").to_string(),
                str_field(&g, "name").to_string(),
            );
            let rules = match g.remove("rules") {
                Some(Value::Array(r)) => r,
                _ => Vec::new(),
            };
            let (gi, seen) = by_key.entry(key).or_insert_with(|| {
                g.insert("rules".into(), Value::Array(Vec::new()));
                out.push(g);
                (out.len() - 1, HashMap::new())
            });
            let Some(Value::Array(merged)) = out[*gi].get_mut("rules") else {
                continue;
            };
            for r in rules {
                let Value::Object(mut r) = r else {
                    continue;
                };
                drop_replica_labels(&mut r, replica_labels);
                let id = rule_identity(&r);
                match seen.get(&id) {
                    Some(&i) => {
                        if let Some(Value::Object(a)) = merged.get(i) {
                            if better(&r, a) {
                                merged[i] = Value::Object(r);
                            }
                        }
                    }
                    None => {
                        seen.insert(id, merged.len());
                        merged.push(Value::Object(r));
                    }
                }
            }
        }
    }
    out
}

/// Applies Prometheus's filters; with any filter, groups left empty go.
pub fn filter_groups(groups: &mut Vec<Map<String, Value>>, f: &RulesFilter) {
    if !f.any() {
        return;
    }
    groups.retain_mut(|g| {
        if !f.keeps_group(g) {
            return false;
        }
        if let Some(Value::Array(rules)) = g.get_mut("rules") {
            rules.retain(|r| r.as_object().is_some_and(|r| f.keeps_rule(r)));
            !rules.is_empty()
        } else {
            false
        }
    });
}

/// The alerts of the merged alerting rules, in order.
pub fn alerts_of(groups: &[Map<String, Value>]) -> Vec<&Map<String, Value>> {
    groups
        .iter()
        .filter_map(|g| g.get("rules").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_object)
        .filter(|r| str_field(r, "type") == "alerting")
        .filter_map(|r| r.get("alerts").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_object)
        .collect()
}

// --- JSON out, as Go's encoding/json writes Prometheus's structs ---

const GROUP_KEYS: &[&str] = &[
    "name",
    "file",
    "rules",
    "interval",
    "limit",
    "evaluationTime",
    "lastEvaluation",
];
const ALERTING_KEYS: &[&str] = &[
    "state",
    "name",
    "query",
    "duration",
    "keepFiringFor",
    "labels",
    "annotations",
    "alerts",
    "health",
    "lastError",
    "evaluationTime",
    "lastEvaluation",
    "type",
];
const RECORDING_KEYS: &[&str] = &[
    "name",
    "query",
    "labels",
    "health",
    "lastError",
    "evaluationTime",
    "lastEvaluation",
    "type",
];
const ALERT_KEYS: &[&str] = &[
    "labels",
    "annotations",
    "state",
    "activeAt",
    "keepFiringSince",
    "value",
];

/// A float as Go's `encoding/json` writes a float64.
pub fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        // Not valid JSON; Go would fail. Never in a ruler's answer we parsed.
        return "null".into();
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    let s = format!("{f:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    match e.strip_prefix('-') {
        Some(neg) => format!("{m}e-{neg}"),
        None => format!("{m}e+{e}"),
    }
}

/// Any JSON value; object keys sorted (Go's maps, e.g. label sets).
fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else {
                out.push_str(&go_json_float(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => json::write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => write_ordered(out, m, &[], |o, _, v| write_value(o, v)),
    }
}

/// An object with the keys in `order` first (a Go struct's field order), then
/// any others sorted.
fn write_ordered(
    out: &mut String,
    m: &Map<String, Value>,
    order: &[&str],
    mut field: impl FnMut(&mut String, &str, &Value),
) {
    out.push('{');
    let known = order
        .iter()
        .filter_map(|k| m.get_key_value(*k))
        .map(|(k, v)| (k.as_str(), v));
    let rest = m
        .iter()
        .filter(|(k, _)| !order.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v));
    for (i, (k, v)) in known.chain(rest).enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_str(out, k);
        out.push(':');
        field(out, k, v);
    }
    out.push('}');
}

fn write_alert(out: &mut String, a: &Map<String, Value>) {
    write_ordered(out, a, ALERT_KEYS, |o, _, v| write_value(o, v));
}

fn write_list<T>(out: &mut String, items: &[T], mut f: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(out, x);
    }
    out.push(']');
}

fn write_rule(out: &mut String, r: &Value) {
    let Value::Object(r) = r else {
        return write_value(out, r);
    };
    let order = if str_field(r, "type") == "alerting" {
        ALERTING_KEYS
    } else {
        RECORDING_KEYS
    };
    write_ordered(out, r, order, |o, k, v| match (k, v) {
        ("alerts", Value::Array(a)) => write_list(o, a, |o, x| match x {
            Value::Object(m) => write_alert(o, m),
            other => write_value(o, other),
        }),
        _ => write_value(o, v),
    });
}

/// `{"groups":[...]}`, each group and rule in Prometheus's field order.
pub fn groups_json(groups: &[Map<String, Value>]) -> String {
    let mut o = String::from(r#"{"groups":"#);
    write_list(&mut o, groups, |o, g| {
        write_ordered(o, g, GROUP_KEYS, |o, k, v| match (k, v) {
            ("rules", Value::Array(r)) => write_list(o, r, write_rule),
            _ => write_value(o, v),
        })
    });
    o.push('}');
    o
}

/// `{"alerts":[...]}`.
pub fn alerts_json(alerts: &[&Map<String, Value>]) -> String {
    let mut o = String::from(r#"{"alerts":"#);
    write_list(&mut o, alerts, |o, a| write_alert(o, a));
    o.push('}');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn alert_rule(name: &str, state: &str, last: &str, replica: &str) -> Value {
        json!({
            "state": state, "name": name, "query": "up == 0", "duration": 300.0,
            "keepFiringFor": 0, "labels": {"severity": "page", "replica": replica},
            "annotations": {}, "health": "ok", "evaluationTime": 0.001,
            "lastEvaluation": last, "type": "alerting",
            "alerts": if state == "inactive" { json!([]) } else {
                json!([{"labels": {"alertname": name, "replica": replica}, "annotations": {},
                        "state": state, "activeAt": "2026-11-27T20:00:00Z", "value": "0e+00"}])
            },
        })
    }

    fn group(file: &str, name: &str, rules: Vec<Value>) -> Map<String, Value> {
        obj(
            json!({"name": name, "file": file, "rules": rules, "interval": 60.0,
                   "limit": 0, "evaluationTime": 0.002,
                   "lastEvaluation": "2026-11-27T20:00:00Z"}),
        )
    }

    #[test]
    fn go_floats() {
        for (f, s) in [
            (60.0, "60"),
            (0.0, "0"),
            (0.5, "0.5"),
            (0.000123, "0.000123"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (1e21, "1e+21"),
            (123456789.0, "123456789"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(go_json_float(f), s, "{f}");
        }
    }

    #[test]
    fn equal_rules_of_ha_rulers_merge_to_the_firing_one() {
        let a = vec![group(
            "r.yaml",
            "g",
            vec![
                alert_rule("Down", "pending", "2026-11-27T20:00:01Z", "r0"),
                json!({"name": "job:x", "query": "sum(x)", "health": "ok", "evaluationTime": 0.0,
                       "lastEvaluation": "2026-11-27T20:00:01Z", "type": "recording"}),
            ],
        )];
        let b = vec![
            group(
                "r.yaml",
                "g",
                vec![
                    alert_rule("Down", "firing", "2026-11-27T20:00:00Z", "r1"),
                    json!({"name": "job:x", "query": "sum(x)", "health": "err", "lastError": "boom",
                           "evaluationTime": 0.0, "lastEvaluation": "2026-11-27T20:00:02.5Z",
                           "type": "recording"}),
                ],
            ),
            group(
                "other.yaml",
                "h",
                vec![alert_rule("Up", "inactive", "2026-11-27T20:00:00Z", "r1")],
            ),
        ];
        let merged = merge(vec![a, b], &["replica".to_string()]);
        assert_eq!(merged.len(), 2);
        let rules = merged[0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{rules:?}");
        // Firing beats pending although evaluated earlier; replica label gone.
        assert_eq!(rules[0]["state"], "firing");
        assert_eq!(rules[0]["labels"], json!({"severity": "page"}));
        assert_eq!(rules[0]["alerts"][0]["labels"]["replica"], "r1");
        // Recording: the later evaluation (fractional seconds compared as times).
        assert_eq!(rules[1]["health"], "err");
        assert_eq!(merged[1]["name"], "h");
        // Alerts: the kept rules' alerts only.
        let alerts = alerts_of(&merged);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0]["state"], "firing");
    }

    #[test]
    fn different_rules_with_one_name_both_stay() {
        let mut r2 = alert_rule("Down", "inactive", "2026-11-27T20:00:00Z", "r0");
        r2["query"] = json!("up{job=\"b\"} == 0");
        let merged = merge(
            vec![
                vec![group(
                    "f",
                    "g",
                    vec![alert_rule("Down", "inactive", "2026-11-27T20:00:00Z", "r0")],
                )],
                vec![group("f", "g", vec![r2])],
            ],
            &[],
        );
        assert_eq!(merged[0]["rules"].as_array().unwrap().len(), 2);
    }

    fn params(q: &str) -> Params {
        let mut p = Params::default();
        p.extend_urlencoded(q.as_bytes());
        p
    }

    #[test]
    fn filters_like_prometheus() {
        let groups = || {
            vec![
                group(
                    "a.yaml",
                    "g1",
                    vec![
                        alert_rule("Down", "inactive", "2026-11-27T20:00:00Z", "r0"),
                        json!({"name": "job:x", "query": "x", "type": "recording"}),
                    ],
                ),
                group(
                    "b.yaml",
                    "g2",
                    vec![json!({"name": "job:y", "query": "y", "type": "recording"})],
                ),
            ]
        };
        let names = |gs: &[Map<String, Value>]| -> Vec<String> {
            gs.iter()
                .map(|g| {
                    let rules: Vec<&str> = g["rules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["name"].as_str().unwrap())
                        .collect();
                    format!("{}:{}", g["name"].as_str().unwrap(), rules.join(","))
                })
                .collect()
        };
        let run = |q: &str| {
            let f = RulesFilter::from_params(&params(q)).unwrap();
            let mut g = groups();
            filter_groups(&mut g, &f);
            names(&g)
        };
        assert_eq!(run(""), ["g1:Down,job:x", "g2:job:y"]);
        assert_eq!(run("type=alert"), ["g1:Down"]);
        assert_eq!(run("type=RECORD"), ["g1:job:x", "g2:job:y"]);
        assert_eq!(
            run("rule_name[]=job:y&rule_name[]=Down"),
            ["g1:Down", "g2:job:y"]
        );
        assert_eq!(run("rule_group[]=g2"), ["g2:job:y"]);
        assert_eq!(run("file[]=a.yaml&type=record"), ["g1:job:x"]);
        assert!(run("rule_name[]=nothing").is_empty());
        assert_eq!(
            RulesFilter::from_params(&params("type=foo")).unwrap_err(),
            "invalid parameter \"type\": not supported value \"foo\""
        );
    }

    #[test]
    fn json_in_prometheus_field_order() {
        let g = group(
            "f.yaml",
            "g",
            vec![
                alert_rule("Down", "firing", "2026-11-27T20:00:00Z", "r0"),
                json!({"type": "recording", "name": "a:b", "query": "sum(x) > 1", "health": "ok",
                       "evaluationTime": 0.0, "lastEvaluation": "0001-01-01T00:00:00Z"}),
            ],
        );
        let s = groups_json(&[g]);
        assert!(
            s.starts_with(r#"{"groups":[{"name":"g","file":"f.yaml","rules":[{"state":"firing","name":"Down","query":"up == 0","duration":300,"keepFiringFor":0,"labels":{"replica":"r0","severity":"page"},"annotations":{},"alerts":[{"labels":{"alertname":"Down","replica":"r0"},"annotations":{},"state":"firing","activeAt":"2026-11-27T20:00:00Z","value":"0e+00"}],"health":"ok","evaluationTime":0.001,"lastEvaluation":"2026-11-27T20:00:00Z","type":"alerting"},{"name":"a:b","query":"sum(x) \u003e 1","health":"ok","evaluationTime":0,"lastEvaluation":"0001-01-01T00:00:00Z","type":"recording"}],"interval":60,"limit":0,"evaluationTime":0.002,"lastEvaluation":"2026-11-27T20:00:00Z"}]}"#),
            "{s}"
        );
        // Round trip: the same values.
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["groups"][0]["rules"][0]["duration"], 300);
        assert_eq!(alerts_json(&[]), r#"{"alerts":[]}"#);
        assert_eq!(groups_json(&[]), r#"{"groups":[]}"#);
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        assert!(parse_rules_response(200, b"<html>")
            .unwrap_err()
            .contains("not a Prometheus API response"));
        let e = parse_rules_response(
            400,
            br#"{"status":"error","errorType":"bad_data","error":"nope"}"#,
        )
        .unwrap_err();
        assert_eq!(e, "HTTP 400: nope");
        assert!(parse_rules_response(200, br#"{"status":"success","data":{}}"#).is_err());
        assert!(
            parse_rules_response(200, br#"{"status":"success","data":{"groups":[1]}}"#).is_err()
        );
        let (g, w) = parse_rules_response(
            200,
            br#"{"status":"success","data":{"groups":[{"name":"g","file":"f","rules":[]}]},"warnings":["w1"]}"#,
        )
        .unwrap();
        assert_eq!((g.len(), w), (1, vec!["w1".to_string()]));
    }

    #[test]
    fn rule_urls_are_checked() {
        assert!(validate_rule_url("http://127.0.0.1:10942").is_ok());
        assert!(validate_rule_url("https://ruler.example/prefix/").is_ok());
        for bad in ["127.0.0.1:10942", "http://", "ftp://x", "http://x/?a=b"] {
            assert!(validate_rule_url(bad).is_err(), "{bad}");
        }
    }
}
