//! The querier's `/api/v1/rules` and `/api/v1/alerts` over real rulers: two
//! `aether rule` HTTP APIs (the rule crate's own axum router over rulers that
//! evaluated rules with a scripted querier), a ruler that is down and one that
//! answers garbage, all on loopback; the querier served on loopback too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bucket::object_store::memory::InMemory;
use model::Labels;
use query::{EndpointSet, Querier, QuerierConfig};
use rule::notifier::RecordingNotifier;
use rule::querier::{QueryOutput, RuleQuerier};
use rule::rulefile::{parse_rules, PartialResponseStrategy};
use rule::ruler::{BucketStateStore, RulerConfig};
use rule::{Head, Ruler};
use serde_json::Value;

/// Answers each expression with fixed samples.
#[derive(Default)]
struct Scripted(Mutex<HashMap<String, Vec<(Labels, f64)>>>);

#[async_trait]
impl RuleQuerier for Scripted {
    async fn query(
        &self,
        expr: &str,
        _t: i64,
        _s: PartialResponseStrategy,
    ) -> rule::Result<QueryOutput> {
        Ok(QueryOutput {
            samples: self
                .0
                .lock()
                .unwrap()
                .get(expr)
                .cloned()
                .unwrap_or_default(),
            warnings: vec![],
        })
    }
}

const SHARED: &str = r#"
groups:
  - name: thanos
    interval: 10s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: ThanosDown
        expr: up{job="thanos"} == 0
        for: 20s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} is down"
"#;

const ONLY_R1: &str = r#"
groups:
  - name: only-r1
    interval: 10s
    rules:
      - record: r1:one
        expr: vector(1)
"#;

struct RulerServer {
    url: String,
    _dir: tempfile::TempDir,
}

/// A ruler with `files` (text, name), ticked at `ticks`, its HTTP API served.
async fn ruler(replica: &str, files: &[(&str, &str)], ticks: &[i64]) -> RulerServer {
    let dir = tempfile::tempdir().unwrap();
    let ext = Labels::from_pairs([("replica", replica)]);
    let head = Arc::new(Head::open(dir.path(), ext.clone(), 7_200_000, 86_400_000).unwrap());
    let scripted = Arc::new(Scripted::default());
    {
        let mut a = scripted.0.lock().unwrap();
        a.insert(
            "sum by (job) (up)".into(),
            vec![(Labels::from_pairs([("job", "thanos")]), 0.0)],
        );
        a.insert(
            "up{job=\"thanos\"} == 0".into(),
            vec![(
                Labels::from_pairs([("__name__", "up"), ("job", "thanos"), ("instance", "a:1")]),
                0.0,
            )],
        );
        a.insert("vector(1)".into(), vec![(Labels::empty(), 1.0)]);
    }
    let mut groups = Vec::new();
    for (text, name) in files {
        groups.extend(parse_rules(text, name).unwrap());
    }
    let bucket: Arc<dyn bucket::object_store::ObjectStore> = Arc::new(InMemory::new());
    let r = Arc::new(Ruler::new(
        RulerConfig {
            external_labels: ext.clone(),
            ..RulerConfig::default()
        },
        groups,
        scripted,
        Arc::new(RecordingNotifier::default()),
        head.clone(),
        Arc::new(BucketStateStore::new(bucket, &ext)),
    ));
    for t in ticks {
        r.tick(*t).await.unwrap();
    }
    let app = rule::api::router(rule::api::ApiState {
        ruler: r,
        reloader: None,
        head: Some(head),
        alertmanagers: None,
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    RulerServer { url, _dir: dir }
}

/// A server answering every request with a 404 page.
async fn not_a_ruler() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "404 page not found\n") });
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

/// An address nothing listens on.
async fn down_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

async fn querier(rule_urls: Vec<String>, replica_labels: &[&str]) -> String {
    let q = Querier::new(
        Arc::new(EndpointSet::from_stores(vec![])),
        QuerierConfig {
            rule_urls,
            replica_labels: replica_labels.iter().map(|s| s.to_string()).collect(),
            ..QuerierConfig::default()
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(query::serve(q, l, std::future::pending()));
    url
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    let code = r.status().as_u16();
    (code, r.text().await.unwrap())
}

async fn get_json(url: &str) -> Value {
    let (code, body) = get(url).await;
    assert_eq!(code, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The same JSON with every number as a float (`10` and `10.0` compare equal).
fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
        }
        v => v,
    }
}

fn rule_names(v: &Value) -> Vec<String> {
    v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let rules: Vec<&str> = g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
                .collect();
            format!("{}: {}", g["name"].as_str().unwrap(), rules.join(", "))
        })
        .collect()
}

#[tokio::test]
async fn no_rulers_answer_like_prometheus_without_rules() {
    let q = querier(vec![], &[]).await;
    assert_eq!(
        get(&format!("{q}/api/v1/rules")).await,
        (
            200,
            r#"{"status":"success","data":{"groups":[]}}"#.to_string()
        )
    );
    assert_eq!(
        get(&format!("{q}/api/v1/alerts")).await,
        (
            200,
            r#"{"status":"success","data":{"alerts":[]}}"#.to_string()
        )
    );
    // Prometheus's error for a bad type.
    let (code, body) = get(&format!("{q}/api/v1/rules?type=both")).await;
    assert_eq!(code, 400);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"type\": not supported value \"both\""}"#
    );
}

#[tokio::test]
async fn one_ruler_passes_through_unchanged() {
    // Two ticks 10 s apart: ThanosDown active for 10 s of its 20 s `for`: pending.
    let r0 = ruler("r0", &[(SHARED, "rules.yaml")], &[10_000, 20_000]).await;
    let q = querier(vec![r0.url.clone()], &[]).await;
    for path in [
        "/api/v1/rules",
        "/api/v1/rules?type=alert",
        "/api/v1/rules?type=record",
        "/api/v1/alerts",
    ] {
        let direct = get_json(&format!("{}{path}", r0.url)).await;
        let proxied = get_json(&format!("{q}{path}")).await;
        assert_eq!(numbers_as_f64(proxied), numbers_as_f64(direct), "{path}");
    }
    let v = get_json(&format!("{q}/api/v1/alerts")).await;
    assert_eq!(v["data"]["alerts"][0]["state"], "pending", "{v}");
    // Go's JSON numbers: 10 s interval is `10`, not `10.0`.
    let (_, body) = get(&format!("{q}/api/v1/rules")).await;
    assert!(body.contains(r#","interval":10,"#), "{body}");
    assert!(body.contains(r#""duration":20,"#), "{body}");
}

#[tokio::test]
async fn two_rulers_merge_one_down_one_broken_give_warnings() {
    // r0 and r1 evaluate the same file (HA pair): r0 has seen the alert for
    // 20 s (firing), r1 only once (pending). r1 also has a group of its own.
    let r0 = ruler("r0", &[(SHARED, "rules.yaml")], &[10_000, 20_000, 30_000]).await;
    let r1 = ruler(
        "r1",
        &[(SHARED, "rules.yaml"), (ONLY_R1, "r1.yaml")],
        &[30_000],
    )
    .await;
    let direct0 = get_json(&format!("{}/api/v1/alerts", r0.url)).await;
    assert_eq!(direct0["data"]["alerts"][0]["state"], "firing");
    let direct1 = get_json(&format!("{}/api/v1/alerts", r1.url)).await;
    assert_eq!(direct1["data"]["alerts"][0]["state"], "pending");

    let down = down_url().await;
    let broken = not_a_ruler().await;
    let q = querier(
        vec![r1.url.clone(), down.clone(), r0.url.clone(), broken.clone()],
        &["replica"],
    )
    .await;

    let v = get_json(&format!("{q}/api/v1/rules")).await;
    assert_eq!(v["status"], "success");
    // One "thanos" group with each rule once, and r1's own group.
    assert_eq!(
        rule_names(&v),
        ["thanos: job:up:sum, ThanosDown", "only-r1: r1:one"],
        "{v}"
    );
    let thanos = &v["data"]["groups"][0];
    assert_eq!(thanos["file"], "rules.yaml");
    let alert_rule = &thanos["rules"][1];
    assert_eq!(alert_rule["state"], "firing", "the firing copy wins: {v}");
    assert_eq!(alert_rule["alerts"].as_array().unwrap().len(), 1);
    // (Alert labels carry no external labels, as in Prometheus: r0's copy is
    // the firing one.)
    assert_eq!(alert_rule["alerts"][0]["state"], "firing");
    // Warnings name the ruler that is down and the one that is no ruler.
    let w: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with(&format!("rules from ruler {down}: ")),
        "{w:?}"
    );
    assert!(
        w[1].starts_with(&format!("rules from ruler {broken}: HTTP 404")),
        "{w:?}"
    );

    // Alerts: the merged alerting rules' alerts (the firing one).
    let a = get_json(&format!("{q}/api/v1/alerts")).await;
    let alerts = a["data"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{a}");
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(alerts[0]["labels"]["alertname"], "ThanosDown");
    assert_eq!(alerts[0]["annotations"]["summary"], "a:1 is down");
    assert_eq!(a["warnings"].as_array().unwrap().len(), 2);

    // Filters.
    let names = |v: &Value| rule_names(v);
    let f = |p: &str| format!("{q}/api/v1/rules?{p}");
    assert_eq!(
        names(&get_json(&f("type=record")).await),
        ["thanos: job:up:sum", "only-r1: r1:one"]
    );
    assert_eq!(
        names(&get_json(&f("type=alert")).await),
        ["thanos: ThanosDown"]
    );
    assert_eq!(
        names(&get_json(&f("rule_group[]=only-r1")).await),
        ["only-r1: r1:one"]
    );
    assert_eq!(
        names(&get_json(&f("file[]=rules.yaml&rule_name[]=job:up:sum")).await),
        ["thanos: job:up:sum"]
    );
    assert!(names(&get_json(&f("rule_name[]=none")).await).is_empty());
}
