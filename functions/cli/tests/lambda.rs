//! The Lambda entry points run as Lambda runs them: each function binary is
//! started against a runtime-API emulator (`harness::lambda`) and answers real
//! invocation payloads, reading a real S3 bucket (SeaweedFS):
//! - `aether-store-lambda`: StoreAPI payloads (Info, Series, labels, errors);
//! - `aether-query-lambda`: Function URL events for Prometheus's HTTP API,
//!   reading the bucket in-process, and again fanning out to the store-read
//!   function through the AWS SDK's Invoke (the emulator's Invoke API).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use harness::lambda::{function_url_event, http_answer, Emulator};
use model::Labels;
use prost::Message;
use storeapi::lambda::{Answer, Invocation, Method};
use storeapi::{pb, StoreApi};
use tsdb::block::BlockWriter;
use tsdb::meta::ThanosMeta;

const H: i64 = 3_600_000;
/// 2023-11-14T22:00:00Z, aligned to 2 h.
const T0: i64 = 1_699_999_200_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Three 2h blocks of 20 series each (a counter per instance), uploaded.
async fn fill_bucket(yaml: &str, tmp: &Path) -> Arc<dyn bucket::object_store::ObjectStore> {
    let store = bucket::ObjstoreConfig::parse(yaml)
        .unwrap()
        .build()
        .unwrap();
    for b in 0..3i64 {
        let dir = tmp.join(format!("b{b}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = BlockWriter::create(&dir).unwrap();
        let mut series: Vec<(Labels, Vec<(i64, f64)>)> = (0..20)
            .map(|i| {
                let l = Labels::from_pairs([
                    ("__name__", "http_requests_total"),
                    ("instance", &*format!("i{i:02}")),
                    ("job", "api"),
                ]);
                let s = (0..480)
                    .map(|k| {
                        let t = T0 + b * 2 * H + k * 15_000;
                        (t, ((t - T0) / 15_000 * (i + 1)) as f64)
                    })
                    .collect();
                (l, s)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (l, s) in series {
            w.add_series(&l, s).unwrap();
        }
        let ext: BTreeMap<String, String> = [("cluster".to_string(), "eu".to_string())].into();
        let meta = w.finish(Some(ThanosMeta::new("sidecar", ext))).unwrap();
        bucket::upload_block(&*store, &dir.join(meta.ulid.to_string()), Some(&meta))
            .await
            .unwrap();
    }
    store
}

async fn invoke_store(
    emu: &Emulator,
    method: Method,
    request: Vec<u8>,
    after: Option<String>,
) -> Answer {
    let inv = Invocation {
        method,
        request: b64(&request),
        after,
    };
    let out = emu.invoke(serde_json::to_vec(&inv).unwrap()).await.unwrap();
    let body = out.result.expect("no function error");
    serde_json::from_slice(&body).unwrap()
}

fn series_req(mint: i64, maxt: i64) -> pb::SeriesRequest {
    pb::SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: vec![pb::LabelMatcher {
            r#type: pb::label_matcher::Type::Eq as i32,
            name: "job".into(),
            value: "api".into(),
        }],
        ..Default::default()
    }
}

async fn query(emu: &Emulator, q: &str) -> (u16, serde_json::Value) {
    let qs = format!(
        "query={}&time={}",
        q.replace('(', "%28")
            .replace(')', "%29")
            .replace('[', "%5B")
            .replace(']', "%5D")
            .replace('"', "%22")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace(' ', "%20"),
        (T0 + 5 * H) / 1000
    );
    let out = emu
        .invoke(function_url_event("GET", "/api/v1/query", &qs, None))
        .await
        .unwrap();
    let a = http_answer(&out).unwrap();
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_functions_answer_through_the_runtime_api() {
    let s3 = harness::S3Server::start("lambda").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = s3.objstore_yaml();
    let bucket = fill_bucket(&yaml, tmp.path()).await;
    let reference = store::BucketStore::new(bucket, store::StoreConfig::default());

    // --- store-read ---
    let store_emu = Emulator::start("aether-store").await.unwrap();
    let env = vec![
        ("AETHER_OBJSTORE_CONFIG", yaml.clone()),
        ("TMPDIR", tmp.path().join("store-tmp").display().to_string()),
    ];
    std::fs::create_dir_all(tmp.path().join("store-tmp")).unwrap();
    let mut store_proc = store_emu
        .spawn(
            Path::new(env!("CARGO_BIN_EXE_aether-store-lambda")),
            &env,
            &tmp.path().join("store.log"),
        )
        .unwrap();
    store_emu.wait_ready(Duration::from_secs(20)).await.unwrap();

    let info = invoke_store(&store_emu, Method::Info, vec![], None).await;
    let info = pb::info::InfoResponse::decode(
        &*base64::engine::general_purpose::STANDARD
            .decode(info.response.unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(info, reference.info().await.unwrap());

    let req = series_req(T0 + H, T0 + 5 * H);
    let answer = invoke_store(&store_emu, Method::Series, req.encode_to_vec(), None).await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert!(answer.next.is_none());
    let frames: Vec<pb::SeriesResponse> = answer
        .frames
        .iter()
        .map(|f| {
            pb::SeriesResponse::decode(
                &*base64::engine::general_purpose::STANDARD.decode(f).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let (got, _) =
        storeapi::collect_series(futures::stream::iter(frames.into_iter().map(Ok)).boxed_stream())
            .await
            .unwrap();
    let (want, _) = storeapi::collect_series(reference.series(req.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(got.len(), 20);
    assert_eq!(got, want);

    // A bad request is an answer with the error, and the function lives on.
    let mut bad = req.clone();
    bad.matchers[0].r#type = pb::label_matcher::Type::Re as i32;
    bad.matchers[0].value = "(".into();
    let answer = invoke_store(&store_emu, Method::Series, bad.encode_to_vec(), None).await;
    assert_eq!(
        answer.error.unwrap().code,
        tonic::Code::InvalidArgument as i32
    );
    let out = store_emu
        .invoke(b"{\"method\":\"series\",\"request\":\"%%%\"}".to_vec())
        .await
        .unwrap();
    let a: Answer = serde_json::from_slice(&out.result.unwrap()).unwrap();
    assert_eq!(a.error.unwrap().code, tonic::Code::InvalidArgument as i32);
    assert!(
        !store_proc.exited(),
        "store function died: {}",
        store_proc.log()
    );

    // --- query, reading the bucket in-process ---
    let q_emu = Emulator::start("aether-query").await.unwrap();
    let qtmp = tmp.path().join("query-tmp");
    std::fs::create_dir_all(&qtmp).unwrap();
    let mut q_proc = q_emu
        .spawn(
            Path::new(env!("CARGO_BIN_EXE_aether-query-lambda")),
            &[
                ("AETHER_OBJSTORE_CONFIG", yaml.clone()),
                ("TMPDIR", qtmp.display().to_string()),
            ],
            &tmp.path().join("query.log"),
        )
        .unwrap();
    q_emu.wait_ready(Duration::from_secs(20)).await.unwrap();
    let q = "sum(rate(http_requests_total[5m]))";
    let (status, v) = query(&q_emu, q).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success");
    // Each instance i grows by (i+1) per 15 s scrape: sum of rates = 210/15.
    let got: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((got - 210.0 / 15.0).abs() < 1e-9, "{v}");
    for name in ["instant-query", "labels", "buildinfo"] {
        let path = format!("{}/../query/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let out = q_emu.invoke(std::fs::read(&path).unwrap()).await.unwrap();
        let a = http_answer(&out).unwrap();
        assert_eq!(
            a.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    let (status, v) = query(&q_emu, "sum(").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");

    // --- query, fanning out to the store-read function via Invoke ---
    let f_emu = Emulator::start("aether-query-fanout").await.unwrap();
    let ftmp = tmp.path().join("fanout-tmp");
    std::fs::create_dir_all(&ftmp).unwrap();
    let mut f_proc = f_emu
        .spawn(
            Path::new(env!("CARGO_BIN_EXE_aether-query-lambda")),
            &[
                ("AETHER_OBJSTORE_CONFIG", yaml.clone()),
                ("TMPDIR", ftmp.display().to_string()),
                ("AETHER_STORE_FUNCTION", "aether-store".to_string()),
                ("AETHER_FANOUT", "3".to_string()),
                // Every request spanning more than 1h is fanned out.
                ("AETHER_FANOUT_ABOVE", "1h".to_string()),
                (
                    "AWS_ENDPOINT_URL_LAMBDA",
                    format!("http://{}", store_emu.addr()),
                ),
                ("AWS_ACCESS_KEY_ID", "local".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "local".to_string()),
            ],
            &tmp.path().join("fanout.log"),
        )
        .unwrap();
    f_emu.wait_ready(Duration::from_secs(20)).await.unwrap();
    // Narrow requests are read in-process; wide ones (> 1h here) fan out to
    // the store-read function in slices cut on 2h boundaries (at most 3).
    for (q, wide) in [
        ("sum(rate(http_requests_total[5m]))", false),
        (
            "count_over_time(http_requests_total{instance=\"i03\"}[5h])",
            true,
        ),
        ("max_over_time(http_requests_total[3h])", true),
    ] {
        let (s1, direct) = query(&q_emu, q).await;
        let before = store_emu.invocations();
        let (s2, fanned) = query(&f_emu, q).await;
        let calls = store_emu.invocations() - before;
        if wide {
            assert!(
                (2..=3).contains(&calls),
                "{q}: {calls} store-read invocations"
            );
        } else {
            assert_eq!(calls, 0, "{q}: {calls} store-read invocations");
        }
        assert_eq!(
            (s1, s2),
            (200, 200),
            "{q}: {direct} / {fanned}: {}",
            f_proc.log()
        );
        assert_eq!(direct["data"], fanned["data"], "{q}");
        assert!(
            !direct["data"]["result"].as_array().unwrap().is_empty(),
            "{q}: {direct}"
        );
    }
    for p in [&mut store_proc, &mut q_proc, &mut f_proc] {
        p.stop(Duration::from_secs(2));
    }
}

trait BoxedStream {
    fn boxed_stream(self) -> storeapi::SeriesStream;
}

impl<S> BoxedStream for S
where
    S: futures::Stream<Item = storeapi::Result<pb::SeriesResponse>> + Send + 'static,
{
    fn boxed_stream(self) -> storeapi::SeriesStream {
        futures::StreamExt::boxed(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_function_ticks_statelessly_and_cuts_blocks() {
    use bucket::object_store::ObjectStoreExt;
    let s3 = harness::S3Server::start("lambda-rule").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = s3.objstore_yaml();
    let bucket = bucket::ObjstoreConfig::parse(&yaml)
        .unwrap()
        .build()
        .unwrap();
    // The rule files live in the bucket.
    let rules = "groups:\n- name: lambda\n  rules:\n  - record: aether:test:answer\n    expr: vector(42)\n  - alert: AlwaysOn\n    expr: vector(1) > 0\n    labels:\n      severity: none\n";
    bucket
        .put(
            &bucket::object_store::path::Path::from("aether/rules/test.yaml"),
            rules.as_bytes().to_vec().into(),
        )
        .await
        .unwrap();

    let emu = Emulator::start("aether-rule").await.unwrap();
    let rtmp = tmp.path().join("rule-tmp");
    std::fs::create_dir_all(&rtmp).unwrap();
    let mut p = emu
        .spawn(
            Path::new(env!("CARGO_BIN_EXE_aether-rule-lambda")),
            &[
                ("AETHER_OBJSTORE_CONFIG", yaml.clone()),
                ("TMPDIR", rtmp.display().to_string()),
                (
                    "AETHER_LABELS",
                    r#"replica="l0",ruler="lambda""#.to_string(),
                ),
                ("AETHER_EVAL_INTERVAL", "1s".to_string()),
                ("AETHER_BLOCK_DURATION", "2s".to_string()),
                ("AETHER_CUT_GRACE", "1s".to_string()),
            ],
            &tmp.path().join("rule.log"),
        )
        .unwrap();
    emu.wait_ready(Duration::from_secs(20)).await.unwrap();
    let tick = || async {
        let out = emu
            .invoke(b"{\"source\":\"aws.scheduler\"}".to_vec())
            .await
            .unwrap();
        let body = out
            .result
            .unwrap_or_else(|e| panic!("function error: {}", String::from_utf8_lossy(&e)));
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let first = tick().await;
    assert_eq!(
        first["evaluated"].as_array().unwrap().len(),
        1,
        "{first}: {}",
        p.log()
    );
    // The recorded sample, ALERTS{alertstate="firing"} (no `for`) and
    // ALERTS_FOR_STATE.
    assert_eq!(first["samples"], 3, "{first}");
    assert_eq!(
        first["evaluated"][0]["group"],
        "aether/rules/test.yaml;lambda"
    );
    // Another tick in the same slot (a retried or duplicate invocation)
    // records nothing: the slot is taken in the bucket's state.
    let again = tick().await;
    if again["at"].as_i64().unwrap() / 1000 == first["at"].as_i64().unwrap() / 1000 {
        assert!(again["evaluated"].as_array().unwrap().is_empty(), "{again}");
        assert_eq!(again["samples"], 0, "{again}");
    }
    // Later ticks cut the closed ranges into blocks in the bucket.
    let mut blocks = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = tick().await;
        blocks.extend(
            r["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_str().unwrap().to_string()),
        );
        if !blocks.is_empty() {
            break;
        }
    }
    assert!(!blocks.is_empty(), "no block cut: {}", p.log());
    let metas = bucket::list_block_metas(&*bucket).await.unwrap().metas;
    let m = metas
        .iter()
        .find(|m| m.ulid.to_string() == blocks[0])
        .expect("cut block in the bucket");
    let th = m.thanos.as_ref().unwrap();
    assert_eq!(th.source, "ruler");
    assert_eq!(th.labels.get("replica").map(String::as_str), Some("l0"));
    // promtool reads it, with the recorded series and ALERTS in it.
    let data = tmp.path().join("promtool-data");
    bucket::download_block(&*bucket, m.ulid, &data.join(m.ulid.to_string()))
        .await
        .unwrap();
    let dump = harness::promtool_dump(&data, &[]).unwrap();
    assert!(
        dump.contains(r#"{__name__="aether:test:answer"} 42 "#),
        "{dump}"
    );
    assert!(
        dump.contains(r#"{__name__="ALERTS", alertname="AlwaysOn", alertstate="firing""#),
        "{dump}"
    );
    p.stop(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_function_runs_one_pass_per_invocation_within_its_deadline() {
    let s3 = harness::S3Server::start("lambda-compact").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = s3.objstore_yaml();
    let bucket = bucket::ObjstoreConfig::parse(&yaml)
        .unwrap()
        .build()
        .unwrap();
    // Five 2h blocks of one stream from an 8h boundary: the first 8h range is
    // closed.
    let start = T0 + 2 * H;
    assert_eq!(start % (8 * H), 0);
    for b in 0..5i64 {
        let dir = tmp.path().join(format!("b{b}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = BlockWriter::create(&dir).unwrap();
        let l = Labels::from_pairs([("__name__", "m"), ("job", "x")]);
        w.add_series(
            &l,
            (0..120).map(|k| (start + b * 2 * H + k * 60_000, k as f64)),
        )
        .unwrap();
        let ext: BTreeMap<String, String> = [("cluster".to_string(), "eu".to_string())].into();
        let mut meta = w.finish(Some(ThanosMeta::new("sidecar", ext))).unwrap();
        // Blocks cover their whole 2h range, as Prometheus's do.
        meta.min_time = start + b * 2 * H;
        meta.max_time = start + (b + 1) * 2 * H;
        bucket::upload_block(&*bucket, &dir.join(meta.ulid.to_string()), Some(&meta))
            .await
            .unwrap();
    }
    let spawn = |name: &'static str, margin: &'static str| {
        let (yaml, dir) = (yaml.clone(), tmp.path().join(name));
        async move {
            std::fs::create_dir_all(&dir).unwrap();
            let emu = Emulator::start(name).await.unwrap();
            let p = emu
                .spawn(
                    Path::new(env!("CARGO_BIN_EXE_aether-compact-lambda")),
                    &[
                        ("AETHER_OBJSTORE_CONFIG", yaml),
                        ("TMPDIR", dir.display().to_string()),
                        ("AETHER_CONSISTENCY_DELAY", "0s".to_string()),
                        ("AETHER_DELETE_DELAY", "0s".to_string()),
                        ("AETHER_SAFETY_MARGIN", margin.to_string()),
                    ],
                    &dir.join("log"),
                )
                .unwrap();
            emu.wait_ready(Duration::from_secs(20)).await.unwrap();
            (emu, p)
        }
    };
    let pass = |emu: Emulator| async move {
        let out = emu
            .invoke(b"{\"source\":\"aws.scheduler\"}".to_vec())
            .await
            .unwrap();
        let body = out
            .result
            .unwrap_or_else(|e| panic!("function error: {}", String::from_utf8_lossy(&e)));
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    // A margin longer than the invocation (60 s in the emulator): the pass
    // starts nothing and says so.
    let (late, mut p1) = spawn("compact-late", "120s").await;
    let r = pass(late.clone()).await;
    assert_eq!(r["deadline_reached"], true, "{r}");
    assert_eq!(r["compacted"], 0, "{r}");
    assert_eq!(
        bucket::list_block_metas(&*bucket)
            .await
            .unwrap()
            .metas
            .len(),
        5
    );
    // With time enough: the closed range is compacted (4 blocks into one) and
    // the sources deleted (delete delay 0).
    let (emu, mut p2) = spawn("compact", "1s").await;
    let r = pass(emu.clone()).await;
    assert_eq!(r["deadline_reached"], false, "{r}");
    assert_eq!(r["compacted"], 1, "{r}: {}", p2.log());
    let r = pass(emu).await;
    assert_eq!(r["compacted"], 0, "{r}");
    let metas = bucket::list_block_metas(&*bucket).await.unwrap().metas;
    let mut spans: Vec<i64> = metas
        .iter()
        .map(|m| (m.max_time - m.min_time) / H)
        .collect();
    spans.sort();
    assert_eq!(spans, vec![2, 8], "{metas:?}");
    p1.stop(Duration::from_secs(2));
    p2.stop(Duration::from_secs(2));
}
