//! The querier over in-process stores: two HA replicas (one with a gap), a store
//! of another cluster, a failing store; the HTTP API read with curl and promtool.

use std::sync::Arc;

use model::Labels;
use query::{EndpointSet, Querier, QuerierConfig};
use storeapi::{pb, MemStore, SeriesStream, StoreApi};

fn l(p: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(p.iter().copied())
}

/// Samples every 15 s in `[from_s, to_s)` seconds, shifted by `off_ms`, value =
/// seconds / 15.
fn samples(from_s: i64, to_s: i64, off_ms: i64) -> Vec<(i64, f64)> {
    (from_s..to_s)
        .step_by(15)
        .map(|s| (s * 1000 + off_ms, (s / 15) as f64))
        .collect()
}

/// A store whose Info works and whose Series fails.
struct Broken(Labels);

#[async_trait::async_trait]
impl StoreApi for Broken {
    async fn info(&self) -> storeapi::Result<pb::info::InfoResponse> {
        Ok(storeapi::store_info_response(
            "sidecar",
            std::slice::from_ref(&self.0),
            0,
            i64::MAX,
        ))
    }
    async fn series(&self, _: pb::SeriesRequest) -> storeapi::Result<SeriesStream> {
        Err(storeapi::Error::Unavailable("connection refused".into()))
    }
    async fn label_names(
        &self,
        _: pb::LabelNamesRequest,
    ) -> storeapi::Result<pb::LabelNamesResponse> {
        Err(storeapi::Error::Unavailable("connection refused".into()))
    }
    async fn label_values(
        &self,
        _: pb::LabelValuesRequest,
    ) -> storeapi::Result<pb::LabelValuesResponse> {
        Err(storeapi::Error::Unavailable("connection refused".into()))
    }
}

use harness::curl_get;

struct Fixture {
    addr: String,
    _rt: tokio::runtime::Runtime,
}

fn start(with_broken: bool, partial: bool) -> Fixture {
    let series = l(&[("__name__", "demo"), ("job", "x")]);
    let mut a = MemStore::new(l(&[("cluster", "c1"), ("replica", "a")]));
    // Replica a misses [300 s, 600 s).
    a.add_series(&series, &samples(0, 300, 0));
    a.add_series(&series, &samples(600, 900, 0));
    let mut b = MemStore::new(l(&[("cluster", "c1"), ("replica", "b")]));
    b.add_series(&series, &samples(0, 900, 1000));
    let mut c = MemStore::new(l(&[("cluster", "c2")]));
    c.add_series(
        &l(&[("__name__", "other"), ("job", "y")]),
        &samples(0, 900, 0),
    );
    let mut stores: Vec<(String, Arc<dyn StoreApi>)> = vec![
        ("replica-a".into(), Arc::new(a)),
        ("replica-b".into(), Arc::new(b)),
        ("cluster-c2".into(), Arc::new(c)),
    ];
    if with_broken {
        stores.push(("broken:1".into(), Arc::new(Broken(l(&[("cluster", "c3")])))));
    }
    let set = Arc::new(EndpointSet::from_stores(stores));
    let q = Querier::new(
        set,
        QuerierConfig {
            replica_labels: vec!["replica".into()],
            partial_response: partial,
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(query::serve(q, listener, std::future::pending()));
    Fixture { addr, _rt: rt }
}

impl Fixture {
    /// (HTTP status, body) of a GET.
    fn get(&self, path: &str) -> (u16, String) {
        curl_get(&format!("http://{}{}", self.addr, path))
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sg", "-w", "\n%{http_code}"]);
        for (k, v) in form {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd
            .arg(format!("http://{}{}", self.addr, path))
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let (body, code) = s.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }
}

#[test]
fn instant_query_dedups_replicas() {
    let f = start(false, true);
    let (code, body) = f.get("/api/v1/query?query=demo&time=590");
    assert_eq!(code, 200, "{body}");
    // At 590 s only replica b has data in the lookback window (a's gap): its
    // sample at 586 s (value 585 / 15).
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"demo","cluster":"c1","job":"x"},"value":[590,"39"]}]}}"#
    );
    let (_, body) = f.get("/api/v1/query?query=demo&time=590&dedup=false");
    assert!(body.contains(r#""replica":"b""#), "{body}");
    assert!(!body.contains(r#""replica":"a""#), "{body}");
    let (_, body) = f.get("/api/v1/query?query=demo&time=100&dedup=false");
    assert!(
        body.contains(r#""replica":"a""#) && body.contains(r#""replica":"b""#),
        "{body}"
    );
    let (_, body) = f.get("/api/v1/query?query=count(demo)&time=100");
    assert!(body.contains(r#""value":[100,"1"]"#), "{body}");
    let (_, body) = f.get("/api/v1/query?query=count(demo)&time=100&dedup=false");
    assert!(body.contains(r#""value":[100,"2"]"#), "{body}");

    // `stats` (any value) adds Prometheus's statistics object, in its key order:
    // two series each give one sample to count(); Prometheus 3 holds at most those
    // two at once (its aggregation releases the input as the result is made;
    // 2.42 held 5: the selector's, their per-step copy and the result).
    let (code, body) = f.get("/api/v1/query?query=count(demo)&time=100&dedup=false&stats=all");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stats = &v["data"]["stats"];
    assert_eq!(stats["samples"]["totalQueryableSamples"], 2, "{body}");
    assert_eq!(stats["samples"]["peakSamples"], 2, "{body}");
    let order = [
        r#""stats":{"timings":{"evalTotalTime":"#,
        r#","resultSortTime":0,"queryPreparationTime":"#,
        r#","innerEvalTime":"#,
        r#","execQueueTime":"#,
        r#","execTotalTime":"#,
        r#"},"samples":{"totalQueryableSamples":2,"peakSamples":2}}}}"#,
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| body.find(k).unwrap_or(usize::MAX))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1] && w[1] != usize::MAX),
        "{body}"
    );
    assert!(stats["timings"]["execTotalTime"].as_f64().unwrap() > 0.0);
    let (_, body) = f.get("/api/v1/query?query=count(demo)&time=100");
    assert!(!body.contains("stats"), "{body}");
}

#[test]
fn range_query_fills_gaps_from_the_other_replica() {
    let f = start(false, true);
    let (code, body) = f.post(
        "/api/v1/query_range",
        &[
            ("query", "demo"),
            ("start", "1970-01-01T00:00:00Z"),
            ("end", "870"),
            ("step", "30s"),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{body}");
    let values = result[0]["values"].as_array().unwrap();
    // Every step from 0 to 870 has a value: a's gap is filled by b.
    assert_eq!(values.len(), 30, "{body}");
    assert_eq!(values[0], serde_json::json!([0, "0"]));
    assert_eq!(values[10], serde_json::json!([300, "19"]));
    assert_eq!(values[20], serde_json::json!([600, "39"]));
    assert_eq!(values[29], serde_json::json!([870, "57"]));
}

#[test]
fn series_labels_and_values() {
    let f = start(false, true);
    let (code, body) = f.get("/api/v1/series?match[]=demo&match[]=other");
    assert_eq!(code, 200);
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"demo","cluster":"c1","job":"x"},{"__name__":"other","cluster":"c2","job":"y"}]}"#
    );
    let (_, body) = f.get("/api/v1/series?match[]=demo&dedup=false");
    assert!(body.contains(r#""replica":"a""#), "{body}");
    let (_, body) = f.get("/api/v1/labels");
    assert_eq!(
        body,
        r#"{"status":"success","data":["__name__","cluster","job"]}"#
    );
    let (_, body) = f.get("/api/v1/label/job/values?match[]=demo");
    assert_eq!(body, r#"{"status":"success","data":["x"]}"#);
    let (_, body) = f.get("/api/v1/label/__name__/values");
    assert_eq!(body, r#"{"status":"success","data":["demo","other"]}"#);
    let (code, body) = f.get("/api/v1/series");
    assert_eq!(code, 400);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#
    );
}

#[test]
fn errors_as_prometheus() {
    let f = start(false, true);
    let (code, body) = f.get("/api/v1/query_range?query=demo&start=x&end=1&step=1");
    assert_eq!(code, 400);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"}"#
    );
    let (code, body) = f.get("/api/v1/query_range?query=demo&start=10&end=1&step=1");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("end timestamp must not be before start time"));
    let (code, body) = f.get("/api/v1/query_range?query=demo&start=0&end=100000&step=1");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("11,000 points"));
    let (code, body) = f.get("/api/v1/query?query=sum(");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(r#""errorType":"bad_data","error":"invalid parameter \"query\": "#),
        "{body}"
    );
    let (code, body) = f.get("/api/v1/query?query=demo&dedup=maybe");
    assert_eq!(code, 400, "{body}");
    let (code, body) = f.get("/api/v1/status/buildinfo");
    assert_eq!(code, 200);
    assert!(body.contains(r#""version":"#));
    let (code, body) = f.get("/api/v1/metadata");
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"status":"success","data":{}}"#)
    );
    let (_, body) = f.get("/api/v1/query_exemplars?query=demo");
    assert_eq!(body, r#"{"status":"success","data":[]}"#);
}

#[test]
fn partial_response_warns_or_fails() {
    let f = start(true, true);
    let (code, body) = f.get("/api/v1/query?query=demo&time=100");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""warnings":["endpoint broken:1"#), "{body}");
    assert!(body.contains(r#""value":[100,"6"]"#), "{body}");
    // A query that cannot touch the broken store's cluster gives no warning.
    let (_, body) = f.get("/api/v1/query?query=demo{cluster=\"c1\"}&time=100");
    assert!(!body.contains("warnings"), "{body}");
    let (code, body) = f.get("/api/v1/query?query=demo&time=100&partial_response=false");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains(r#""status":"error""#) && body.contains("broken:1"),
        "{body}"
    );
    // Strict by default, partial on request.
    let strict = start(true, false);
    let (code, _) = strict.get("/api/v1/query?query=demo&time=100");
    assert_eq!(code, 500);
    let (code, body) = strict.get("/api/v1/query?query=demo&time=100&partial_response=true");
    assert_eq!(code, 200, "{body}");
    let (_, body) = strict.get("/api/v1/labels?partial_response=true");
    assert!(body.contains("warnings"), "{body}");
    let (_, body) = strict.get("/api/v1/endpoints");
    assert!(
        body.contains(r#""address":"broken:1","health":"up""#),
        "{body}"
    );
}

#[test]
fn promtool_is_a_client() {
    let f = start(false, true);
    let url = format!("http://{}", f.addr);
    let out = harness::promtool(&["query", "instant", "--time=590", &url, "demo"]).unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.trim(), r#"demo{cluster="c1", job="x"} => 39 @[590]"#);
    let out = harness::promtool(&[
        "query",
        "range",
        "--start=0",
        "--end=60",
        "--step=30s",
        &url,
        "demo",
    ])
    .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("0 @[0]") && s.contains("2 @[30]") && s.contains("4 @[60]"),
        "{s}"
    );
    let out = harness::promtool(&[
        "query",
        "series",
        "--match=demo",
        "--start=0",
        "--end=1000",
        &url,
    ])
    .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.trim(), r#"{__name__="demo", cluster="c1", job="x"}"#);
    let out =
        harness::promtool(&["query", "labels", "--start=0", "--end=1000", &url, "job"]).unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.trim(), "x\ny");
}

#[test]
fn web_ui_and_endpoints_page() {
    let f = start(true, true);
    for path in ["/", "/endpoints", "/graph"] {
        let (code, body) = f.get(path);
        assert_eq!(code, 200, "{path}");
        assert!(body.contains("<title>Aether query</title>"), "{path}");
        // Everything is served from the binary: no external scripts or styles.
        assert!(!body.contains("src=\"http") && !body.contains("href=\"http"));
    }
    let (_, body) = f.get("/api/v1/endpoints");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let eps = v["data"].as_array().unwrap();
    assert_eq!(eps.len(), 4, "{body}");
    assert_eq!(eps[0]["address"], "replica-a");
    assert_eq!(eps[0]["health"], "up");
    assert_eq!(eps[0]["labelSets"][0]["replica"], "a");
    assert_eq!(eps[0]["minTime"], 0);
    let (code, _) = f.get("/-/ready");
    assert_eq!(code, 200);
}

/// A store that records the Series requests it gets.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<pb::SeriesRequest>>);

#[async_trait::async_trait]
impl StoreApi for Recorder {
    async fn info(&self) -> storeapi::Result<pb::info::InfoResponse> {
        Ok(storeapi::store_info_response("store", &[], 0, i64::MAX))
    }
    async fn series(&self, req: pb::SeriesRequest) -> storeapi::Result<SeriesStream> {
        self.0.lock().unwrap().push(req);
        Ok(Box::pin(futures::stream::empty()))
    }
    async fn label_names(
        &self,
        _: pb::LabelNamesRequest,
    ) -> storeapi::Result<pb::LabelNamesResponse> {
        Ok(Default::default())
    }
    async fn label_values(
        &self,
        _: pb::LabelValuesRequest,
    ) -> storeapi::Result<pb::LabelValuesResponse> {
        Ok(Default::default())
    }
}

#[test]
fn hints_and_resolution_pushed_down() {
    let rec = Arc::new(Recorder::default());
    let set = Arc::new(EndpointSet::from_stores(vec![(
        "rec".into(),
        Arc::clone(&rec) as Arc<dyn StoreApi>,
    )]));
    let q = Querier::new(set, QuerierConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut p = query::params::Params::default();
    p.extend_urlencoded(b"max_source_resolution=auto");
    let r = rt.block_on(q.run_query(
        &p,
        "sum by (job) (rate(x{job=\"a\"}[5m]))",
        0,
        3_600_000,
        3_600_000,
    ));
    assert!(r.is_ok());
    let reqs = rec.0.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.max_resolution_window, 720_000, "auto = step / 5");
    assert_eq!(r.aggregates, vec![pb::Aggr::Counter as i32]);
    assert_eq!(r.max_time, 3_600_000);
    assert_eq!(r.matchers.len(), 2);
    let h = r.query_hints.as_ref().unwrap();
    assert_eq!(h.step_millis, 3_600_000);
    assert_eq!(h.func.as_ref().unwrap().name, "rate");
    assert_eq!(h.range.as_ref().unwrap().millis, 300_000);
    let mut p = query::params::Params::default();
    p.extend_urlencoded(b"max_source_resolution=1h");
    rt.block_on(q.run_query(&p, "x", 0, 0, 0)).unwrap();
    assert_eq!(rec.0.lock().unwrap()[1].max_resolution_window, 3_600_000);
}

#[test]
fn proxy_store_merges_endpoints_and_warns() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let series = l(&[("__name__", "demo"), ("job", "x")]);
    let mut a = MemStore::new(l(&[("replica", "a")]));
    a.add_series(&series, &samples(0, 60, 0));
    let mut b = MemStore::new(l(&[("replica", "b")]));
    b.add_series(&series, &samples(0, 60, 0));
    let set = Arc::new(EndpointSet::from_stores(vec![
        ("a".into(), Arc::new(a) as Arc<dyn StoreApi>),
        ("b".into(), Arc::new(b)),
        ("broken:1".into(), Arc::new(Broken(l(&[("replica", "c")])))),
    ]));
    let proxy = query::ProxyStore::new(set);
    rt.block_on(async {
        let info = proxy.info().await.unwrap();
        assert_eq!(info.component_type, "query");
        assert_eq!(info.label_sets.len(), 3);
        let req = pb::SeriesRequest {
            min_time: 0,
            max_time: 100_000,
            matchers: storeapi::convert::matchers_to_pb(&[model::Matcher::equal(
                "__name__", "demo",
            )]),
            ..Default::default()
        };
        let (got, warnings) = storeapi::collect_series(proxy.series(req.clone()).await.unwrap())
            .await
            .unwrap();
        let labels: Vec<String> = got
            .iter()
            .map(|s| storeapi::convert::series_labels(s).to_string())
            .collect();
        assert_eq!(
            labels,
            vec![
                r#"{__name__="demo", job="x", replica="a"}"#,
                r#"{__name__="demo", job="x", replica="b"}"#
            ]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("broken:1"));
        let strict = pb::SeriesRequest {
            partial_response_disabled: true,
            ..req
        };
        assert!(proxy.series(strict).await.is_err());
        let names = proxy
            .label_names(pb::LabelNamesRequest {
                start: 0,
                end: 100_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(names.names, vec!["__name__", "job", "replica"]);
        assert_eq!(names.warnings.len(), 1);
    });
}

/// `/api/v1/format_query` answers byte for byte what a real Prometheus answers,
/// formatted queries and parse errors alike (GET and form POST).
#[test]
fn format_query_as_prometheus() {
    let f = start(false, true);
    let dir = tempfile::tempdir().unwrap();
    let prom = harness::Prometheus::start("global: {}\n", &dir.path().join("data"), &[]).unwrap();
    let queries = [
        "up",
        "sum(rate(x{a=\"b\"}[5m]))by(job)/on(job)group_left count(y)",
        "sum without(instance)(rate(http_requests_total{job=~\"api|web\",code!~\"5..\"}[5m] offset -1h))",
        "histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        "a > bool b",
        "a and on(x) b or c unless ignoring(y) d",
        "-a ^ 2 ^ -b",
        "(a + b) * c",
        "max_over_time(sum by (instance) (rate(x[5m]))[30m:1m] @ 1609746000)",
        "rate(x[1h30m] @ start()) + x @ end()",
        "topk(5, x) + quantile(0.5, y) + count_values(\"v\", z)",
        "label_replace(up, \"dst\", \"$1\", \"src\", \"(.*)\")",
        // Numbers whose printing Prometheus 2.42 and 3 share (2.42 used `%v`,
        // 3 uses 'f' formatting; format::tests checks Prometheus 3's).
        "1e3 + 0x10 - NaN + 1.5",
        "\"a string with \\\"quotes\\\"\"",
        "x[5m:]",
        "{__name__=\"up\", job=\"a\"}",
        "sum by (job) (rate(http_requests_total{job=\"some-very-long-job-name\", handler=\"/api/v1/query_range\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
        "a < b & c",
        "sum(",
        "",
        "rate(x)",
        "x offset 5m offset 1m",
    ];
    for q in queries {
        let path = format!("/api/v1/format_query?query={}", enc(q));
        let want = curl_get(&format!("{}{path}", prom.url()));
        let got = f.get(&path);
        let posted = f.post("/api/v1/format_query", &[("query", q)]);
        assert_eq!(posted, got, "POST and GET {q:?}");
        if want.0 == 200 {
            assert_eq!(got, want, "{q:?}");
        } else {
            // Errors: same status and type; promql-parser's messages carry no
            // `line:col: parse error:` prefix (shared/promql/README.md).
            assert_eq!(got.0, want.0, "{q:?}: {got:?} vs {want:?}");
            let prefix = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": "#;
            assert!(got.1.starts_with(prefix), "{q:?}: {got:?}");
            assert!(want.1.starts_with(prefix), "{q:?}: {want:?}");
        }
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
