//! The stateless tick end to end in-process: rule files, a scripted querier (and
//! the embedded engine over an in-memory StoreAPI), the head, the bucket state
//! (object_store's in-memory store, which honours conditional writes) and a
//! recording notifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bucket::object_store::memory::InMemory;
use bucket::object_store::{ObjectStore, ObjectStoreExt};
use model::Labels;
use rule::notifier::RecordingNotifier;
use rule::querier::{QueryOutput, RuleQuerier};
use rule::rulefile::{parse_rules, PartialResponseStrategy};
use rule::ruler::{BucketStateStore, RulerConfig};
use rule::{Head, Ruler};

#[derive(Default)]
struct Scripted {
    answers: Mutex<HashMap<String, QueryOutput>>,
    calls: Mutex<Vec<(String, i64, PartialResponseStrategy)>>,
}

impl Scripted {
    fn set(&self, expr: &str, samples: Vec<(Labels, f64)>, warnings: Vec<&str>) {
        self.answers.lock().unwrap().insert(
            expr.to_string(),
            QueryOutput {
                samples,
                warnings: warnings.into_iter().map(String::from).collect(),
            },
        );
    }
}

#[async_trait]
impl RuleQuerier for Scripted {
    async fn query(
        &self,
        expr: &str,
        t: i64,
        s: PartialResponseStrategy,
    ) -> rule::Result<QueryOutput> {
        self.calls.lock().unwrap().push((expr.to_string(), t, s));
        // Yield, so that concurrent ticks interleave.
        tokio::task::yield_now().await;
        Ok(self
            .answers
            .lock()
            .unwrap()
            .get(expr)
            .cloned()
            .unwrap_or_default())
    }
}

const RULES: &str = r#"
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
          summary: "{{ $labels.instance }} of {{ $labels.job }} is down ({{ $externalLabels.replica }})"
  - name: partial
    interval: 10s
    partial_response_strategy: warn
    rules:
      - record: partial:warn
        expr: vector(1)
  - name: partial-abort
    interval: 10s
    rules:
      - record: partial:abort
        expr: vector(1)
"#;

struct Setup {
    ruler: Ruler,
    querier: Arc<Scripted>,
    notifier: Arc<RecordingNotifier>,
    head: Arc<Head>,
    _dir: tempfile::TempDir,
}

fn setup(bucket: Arc<dyn ObjectStore>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ext = Labels::from_pairs([("replica", "r0")]);
    let head = Arc::new(Head::open(dir.path(), ext.clone(), 7_200_000, 86_400_000).unwrap());
    let querier = Arc::new(Scripted::default());
    let notifier = Arc::new(RecordingNotifier::default());
    let groups = parse_rules(RULES, "rules.yaml").unwrap();
    let cfg = RulerConfig {
        eval_interval_ms: 60_000,
        resend_delay_ms: 60_000,
        external_labels: ext.clone(),
        external_url: "http://ruler:10902".into(),
        alert_label_drop: vec!["dropme".into()],
        spread_groups: false,
    };
    let ruler = Ruler::new(
        cfg,
        groups,
        querier.clone(),
        notifier.clone(),
        head.clone(),
        Arc::new(BucketStateStore::new(bucket, &ext)),
    );
    Setup {
        ruler,
        querier,
        notifier,
        head,
        _dir: dir,
    }
}

fn up(instance: &str) -> Labels {
    Labels::from_pairs([
        ("__name__", "up"),
        ("job", "thanos"),
        ("instance", instance),
    ])
}

fn samples_of(head: &Head, name: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
    head.snapshot()
        .into_iter()
        .filter(|(l, _)| l.metric_name() == Some(name))
        .collect()
}

#[tokio::test]
async fn ticks_record_alert_and_never_double_record() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let s = setup(bucket.clone());
    s.querier.set(
        "sum by (job) (up)",
        vec![(Labels::from_pairs([("job", "thanos")]), 0.0)],
        vec![],
    );
    s.querier.set(
        "up{job=\"thanos\"} == 0",
        vec![(up("a:1").with("dropme", "x"), 0.0)],
        vec![],
    );
    s.querier.set(
        "vector(1)",
        vec![(Labels::empty(), 1.0)],
        vec!["endpoint x: unavailable"],
    );

    // First tick at 10.5 s: every group's slot is 10 s.
    let r = s.ruler.tick(10_500).await.unwrap();
    assert_eq!(r.evaluated.len(), 3);
    assert!(r.evaluated.iter().all(|(_, t)| *t == 10_000));
    let rec = samples_of(&s.head, "job:up:sum");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].1, vec![(10_000, 0.0)]);
    let pending: Vec<_> = samples_of(&s.head, "ALERTS");
    assert_eq!(pending[0].0.get("alertstate"), Some("pending"));
    assert!(
        s.notifier.sent.lock().unwrap().is_empty(),
        "pending alerts are not sent"
    );

    // The same time again (and a later time in the same slot): nothing evaluated or recorded.
    let before = s.head.stats();
    let calls = s.querier.calls.lock().unwrap().len();
    assert!(s.ruler.tick(10_500).await.unwrap().evaluated.is_empty());
    assert!(s.ruler.tick(19_999).await.unwrap().evaluated.is_empty());
    assert_eq!(s.head.stats(), before);
    assert_eq!(s.querier.calls.lock().unwrap().len(), calls);

    // A fresh process (new ruler, same bucket) continues from the bucket state.
    let s2 = setup(bucket.clone());
    for (e, v) in s.querier.answers.lock().unwrap().iter() {
        s2.querier
            .answers
            .lock()
            .unwrap()
            .insert(e.clone(), v.clone());
    }
    assert!(s2.ruler.tick(15_000).await.unwrap().evaluated.is_empty());
    s2.ruler.tick(20_000).await.unwrap();
    assert!(
        s2.notifier.sent.lock().unwrap().is_empty(),
        "for 20s not passed yet"
    );
    s2.ruler.tick(30_000).await.unwrap();
    let sent = s2.notifier.sent.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        1,
        "fires once for has passed (active since 10 s)"
    );
    let a = &sent[0];
    assert_eq!(a.labels["alertname"], "ThanosDown");
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(a.labels["replica"], "r0", "ruler labels attached");
    assert!(
        !a.labels.contains_key("dropme"),
        "--alert.label-drop applied"
    );
    assert_eq!(a.annotations["summary"], "a:1 of thanos is down (r0)");
    assert_eq!(a.starts_at, "1970-01-01T00:00:30Z");
    assert_eq!(
        a.ends_at, "1970-01-01T00:04:30Z",
        "valid for 4 resend delays"
    );
    assert!(a
        .generator_url
        .starts_with("http://ruler:10902/graph?g0.expr=up%7Bjob%3D%22thanos%22%7D"));
    // ALERTS_FOR_STATE holds the activation time (s).
    let fs = samples_of(&s2.head, "ALERTS_FOR_STATE");
    assert_eq!(fs[0].1.last().unwrap().1, 10.0);

    // Not resent within the resend delay; resolved is sent at once.
    s2.ruler.tick(40_000).await.unwrap();
    assert_eq!(s2.notifier.sent.lock().unwrap().len(), 1);
    s2.querier.set("up{job=\"thanos\"} == 0", vec![], vec![]);
    s2.ruler.tick(50_000).await.unwrap();
    let sent = s2.notifier.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].ends_at, "1970-01-01T00:00:50Z");
    // The firing series went stale.
    let firing = samples_of(&s2.head, "ALERTS");
    let f = firing
        .iter()
        .find(|(l, _)| l.get("alertstate") == Some("firing"))
        .unwrap();
    assert!(model::is_stale_nan(f.1.last().unwrap().1));
    assert_eq!(f.1.last().unwrap().0, 50_000);

    // Partial responses: warn records, abort fails the rule.
    let st = s2.ruler.last_state();
    let warn = &st.groups["rules.yaml;partial"].rules["partial:warn{}#0"];
    assert_eq!(warn.health, "ok");
    let abort = &st.groups["rules.yaml;partial-abort"].rules["partial:abort{}#0"];
    assert_eq!(abort.health, "err");
    assert!(
        abort
            .last_error
            .contains("partial response with the abort strategy"),
        "{}",
        abort.last_error
    );
    assert!(samples_of(&s2.head, "partial:abort").is_empty());
    assert!(!samples_of(&s2.head, "partial:warn").is_empty());
    let calls = s2.querier.calls.lock().unwrap().clone();
    assert!(calls.iter().any(|c| c.2 == PartialResponseStrategy::Warn));

    // The API's JSON.
    let j = rule::api::rules_json(&s2.ruler, &st, None);
    let g = &j["data"]["groups"][0];
    assert_eq!(g["name"], "thanos");
    assert_eq!(g["file"], "rules.yaml");
    assert_eq!(g["interval"], 10.0);
    assert_eq!(g["lastEvaluation"], "1970-01-01T00:00:50Z");
    let alert = &g["rules"][1];
    assert_eq!(alert["type"], "alerting");
    assert_eq!(alert["state"], "inactive");
    assert_eq!(alert["duration"], 20.0);
    assert_eq!(alert["health"], "ok");
    assert_eq!(g["rules"][0]["type"], "recording");
    let only_alerts = rule::api::rules_json(&s2.ruler, &st, Some("alert"));
    assert_eq!(only_alerts["data"]["groups"].as_array().unwrap().len(), 1);
    assert_eq!(
        only_alerts["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_reload_keeps_rule_state_by_name_and_marks_removed_rules_and_groups_stale() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let s = setup(bucket.clone());
    s.querier.set(
        "sum by (job) (up)",
        vec![(Labels::from_pairs([("job", "thanos")]), 0.0)],
        vec![],
    );
    s.querier
        .set("up{job=\"thanos\"} == 0", vec![(up("a:1"), 0.0)], vec![]);
    s.querier
        .set("vector(1)", vec![(Labels::empty(), 1.0)], vec![]);
    s.querier
        .set("vector(2)", vec![(Labels::empty(), 2.0)], vec![]);
    s.ruler.tick(10_000).await.unwrap();
    s.ruler.tick(20_000).await.unwrap();
    s.ruler.tick(30_000).await.unwrap();
    assert_eq!(s.notifier.sent.lock().unwrap().len(), 1, "ThanosDown fired");

    // The reload: the alert moved to the front, a new rule, the recording rule
    // gone, the group `partial` gone.
    let reloaded = r#"
groups:
  - name: thanos
    interval: 10s
    rules:
      - alert: ThanosDown
        expr: up{job="thanos"} == 0
        for: 20s
        labels:
          severity: critical
      - record: new:rule
        expr: vector(2)
  - name: partial-abort
    interval: 10s
    rules:
      - record: partial:abort
        expr: vector(1)
"#;
    s.ruler
        .set_groups(parse_rules(reloaded, "rules.yaml").unwrap());
    s.ruler.tick(40_000).await.unwrap();

    // The alert kept its state: still firing since 30 s, not pending anew.
    let st = s.ruler.last_state();
    let thanos = &st.groups["rules.yaml;thanos"];
    let alert = &thanos.rules["ThanosDown{severity=\"critical\"}#0"];
    assert_eq!(
        rule::Ruler::rule_state(Some(alert)),
        rule::alert::AlertState::Firing
    );
    let fs = samples_of(&s.head, "ALERTS_FOR_STATE");
    assert_eq!(
        fs[0].1.last().unwrap(),
        &(40_000, 10.0),
        "active since 10 s"
    );
    assert!(!thanos.rules.contains_key("job:up:sum{}#0"));
    assert!(!st.groups.contains_key("rules.yaml;partial"));

    // The removed rule's and the removed group's series end with a staleness
    // marker at the reload's tick.
    for name in ["job:up:sum", "partial:warn"] {
        let series = samples_of(&s.head, name);
        assert_eq!(series.len(), 1, "{name}");
        let last = *series[0].1.last().unwrap();
        assert_eq!(last.0, 40_000, "{name}");
        assert!(model::is_stale_nan(last.1), "{name}: {last:?}");
    }
    assert_eq!(samples_of(&s.head, "new:rule")[0].1, vec![(40_000, 2.0)]);

    // Once only: the next tick writes no further markers.
    s.ruler.tick(50_000).await.unwrap();
    assert_eq!(samples_of(&s.head, "job:up:sum")[0].1.len(), 4);
}

#[tokio::test]
async fn state_written_with_positional_keys_is_still_read() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let s = setup(bucket.clone());
    s.querier
        .set("up{job=\"thanos\"} == 0", vec![(up("a:1"), 0.0)], vec![]);
    s.ruler.tick(10_000).await.unwrap();
    // Rewrite the state as an older version wrote it: `<index>:<name>` keys.
    let ext = Labels::from_pairs([("replica", "r0")]);
    let key = bucket::object_store::path::Path::from(rule::ruler::state_key(&ext));
    let raw = bucket.get(&key).await.unwrap().bytes().await.unwrap();
    let text = String::from_utf8(raw.to_vec())
        .unwrap()
        .replace("ThanosDown{severity=\\\"critical\\\"}#0", "1:ThanosDown")
        .replace("job:up:sum{}#0", "0:job:up:sum");
    assert!(text.contains("\"1:ThanosDown\""), "{text}");
    bucket.put(&key, text.into_bytes().into()).await.unwrap();

    let s2 = setup(bucket.clone());
    s2.querier
        .set("up{job=\"thanos\"} == 0", vec![(up("a:1"), 0.0)], vec![]);
    s2.ruler.tick(20_000).await.unwrap();
    s2.ruler.tick(30_000).await.unwrap();
    assert_eq!(
        s2.notifier.sent.lock().unwrap().len(),
        1,
        "the alert pending since 10 s fires at 30 s"
    );
}

#[tokio::test]
async fn concurrent_ticks_for_the_same_time_record_once() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = setup(bucket.clone());
    let b = setup(bucket.clone());
    for s in [&a, &b] {
        s.querier.set(
            "sum by (job) (up)",
            vec![(Labels::from_pairs([("job", "x")]), 1.0)],
            vec![],
        );
    }
    let (ra, rb) = tokio::join!(a.ruler.tick(10_000), b.ruler.tick(10_000));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.lost_race ^ rb.lost_race,
        "exactly one tick wins: {ra:?} {rb:?}"
    );
    let recorded =
        samples_of(&a.head, "job:up:sum").len() + samples_of(&b.head, "job:up:sum").len();
    assert_eq!(recorded, 1);
    // The loser's next tick for the same time sees the winner's state.
    let loser = if ra.lost_race { &a } else { &b };
    assert!(loser.ruler.tick(10_000).await.unwrap().evaluated.is_empty());
}

#[tokio::test]
async fn embedded_engine_over_storeapi_endpoints() {
    use rule::querier::EngineQuerier;
    use storeapi::{MemStore, StoreApi};
    let mut store = MemStore::new(Labels::from_pairs([("prom", "p0")]));
    store.add_series(
        &Labels::from_pairs([("__name__", "up"), ("job", "thanos"), ("instance", "a")]),
        &[(0, 1.0), (15_000, 0.0)],
    );
    store.add_series(
        &Labels::from_pairs([("__name__", "up"), ("job", "thanos"), ("instance", "b")]),
        &[(0, 1.0), (15_000, 1.0)],
    );
    let set = Arc::new(query::EndpointSet::from_stores(vec![(
        "mem".into(),
        Arc::new(store) as Arc<dyn StoreApi>,
    )]));
    let q = EngineQuerier::new(
        promql::Engine::default(),
        set,
        query::QueryOptions::default(),
    );
    let out = q
        .query("sum by (job) (up)", 20_000, PartialResponseStrategy::Abort)
        .await
        .unwrap();
    assert_eq!(
        out.samples,
        vec![(Labels::from_pairs([("job", "thanos")]), 1.0)]
    );
    let out = q
        .query("up == 0", 20_000, PartialResponseStrategy::Abort)
        .await
        .unwrap();
    assert_eq!(out.samples.len(), 1);
    assert_eq!(out.samples[0].0.get("instance"), Some("a"));
    assert!(q
        .query("sum(", 0, PartialResponseStrategy::Abort)
        .await
        .is_err());
}

/// With `spread_groups`, each group is evaluated at Prometheus's offset within
/// its interval: a real Prometheus 2.42 evaluating the same groups from the same
/// file writes its samples at exactly those offsets.
#[test]
fn spread_group_offsets_are_prometheus_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    let text = "groups:\n  - name: first\n    interval: 1s\n    rules:\n      - record: spread_first\n        expr: vector(1)\n  - name: second group\n    interval: 1s\n    rules:\n      - record: spread_second\n        expr: vector(2)\n";
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap().to_string();
    let config = format!("global:\n  evaluation_interval: 1s\nrule_files:\n  - {file}\n");
    let prom = harness::Prometheus::start(&config, &dir.path().join("data"), &[]).unwrap();

    let groups = parse_rules(text, &file).unwrap();
    let ruler = Ruler::new(
        RulerConfig {
            spread_groups: true,
            ..RulerConfig::default()
        },
        groups.clone(),
        Arc::new(Scripted::default()),
        Arc::new(RecordingNotifier::default()),
        Arc::new(
            Head::open(
                &dir.path().join("head"),
                Labels::empty(),
                7_200_000,
                86_400_000,
            )
            .unwrap(),
        ),
        Arc::new(BucketStateStore::new(
            Arc::new(InMemory::new()),
            &Labels::empty(),
        )),
    );
    for (g, metric) in groups.iter().zip(["spread_first", "spread_second"]) {
        let want = rule::ruler::group_offset_ms(g, 1000);
        // Our slots: the group's offset past each second.
        assert_eq!(ruler.slot(g, 5_000 + want), 5_000 + want);
        assert_eq!(ruler.slot(g, 5_000 + want - 1), 4_000 + want);
        // Prometheus's samples (after a few evaluations).
        let mut stamps = Vec::new();
        for _ in 0..100 {
            let body = prom
                .get(&format!("/api/v1/query?query={metric}%5B1m%5D"))
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            stamps = v["data"]["result"][0]["values"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
                        .collect()
                })
                .unwrap_or_default();
            if stamps.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(
            stamps.len() >= 2,
            "{metric}: Prometheus evaluated it: {stamps:?}"
        );
        for t in &stamps {
            assert_eq!(t.rem_euclid(1000), want, "{metric} at {t}: {stamps:?}");
        }
    }
}
