//! End to end with real parts: two Prometheus replicas (external labels
//! `cluster`, `replica`) scraping the same target, replica 0 with backfilled
//! history; in-process sidecars (replica 0 ships its blocks to a real S3 server,
//! SeaweedFS); a store over that bucket; the querier over HTTP, read with curl
//! and promtool. Answers must equal Prometheus's own over ranges spanning bucket
//! and fresh data; dedup hides replicas; a stopped sidecar gives a warning.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{free_port, Prometheus, S3Server};
use query::{EndpointSet, Querier, QuerierConfig};
use serde_json::Value;
use storeapi::StoreApi;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A scrape target serving fixed gauges and a counter, on its own thread.
fn start_target() -> String {
    let addr = format!("127.0.0.1:{}", free_port());
    let a = addr.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let start = Instant::now();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || async move {
                    let n = start.elapsed().as_secs() * 3;
                    format!(
                        "# TYPE demo_gauge gauge\ndemo_gauge{{kind=\"a\"}} 42\ndemo_gauge{{kind=\"b\"}} 7.5\n# TYPE demo_requests_total counter\ndemo_requests_total {n}\n"
                    )
                }),
            );
            let l = tokio::net::TcpListener::bind(&a).await.unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    harness::wait_for_port(&addr, Duration::from_secs(10)).unwrap();
    addr
}

/// Backfills `[from_s, to_s)` of the target's series (one sample a minute, 7 s
/// past the minute so that no evaluation time lands on a sample) into `dir`.
fn backfill(dir: &Path, target: &str, from_s: i64, to_s: i64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut om = String::from("# TYPE demo_gauge gauge\n");
    let base = format!("instance=\"{target}\",job=\"demo\"");
    let mut i = 0i64;
    let mut t = from_s - from_s % 60 + 7;
    let mut gauge = String::new();
    let mut counter = String::new();
    while t < to_s {
        gauge.push_str(&format!(
            "demo_gauge{{{base},kind=\"a\"}} {} {t}\n",
            (i % 10) as f64 * 1.5
        ));
        gauge.push_str(&format!(
            "demo_gauge{{{base},kind=\"b\"}} {} {t}\n",
            (i % 7) as f64
        ));
        counter.push_str(&format!(
            "demo_requests_total{{{base}}} {} {t}\n",
            i * 3 + i % 4
        ));
        i += 1;
        t += 60;
    }
    om.push_str(&gauge);
    om.push_str("# TYPE demo_requests_total gauge\n");
    om.push_str(&counter);
    om.push_str("# EOF\n");
    let f = dir.join("../backfill.om");
    std::fs::write(&f, om).unwrap();
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f.to_str().unwrap(),
        dir.to_str().unwrap(),
    ])
    .unwrap();
}

fn prom_config(replica: &str, target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: e2e\n    replica: \"{replica}\"\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// An in-process sidecar; stops when dropped.
struct Sidecar {
    grpc: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sidecar {
    fn start(tsdb: &Path, prom_url: &str, objstore_yaml: Option<String>) -> Sidecar {
        let http = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut cfg = sidecar::Config::new(tsdb, prom_url);
        cfg.objstore = objstore_yaml.map(sidecar::ObjstoreSource::Inline);
        cfg.http_address = http.clone();
        cfg.grpc_address = grpc.clone();
        cfg.sync_interval = Duration::from_secs(1);
        cfg.heartbeat_interval = Duration::from_secs(1);
        cfg.grace_period = Duration::from_secs(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(sidecar::run_until(cfg, async move {
                let _ = rx.await;
            }));
            if let Err(e) = r {
                eprintln!("sidecar: {e}");
            }
        });
        harness::wait_for_port(&grpc, Duration::from_secs(20)).unwrap();
        Sidecar {
            grpc,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A querier served over HTTP from its own runtime.
struct QuerierProc {
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn start_querier(
    stores: impl FnOnce() -> Vec<(String, Arc<dyn StoreApi>)>,
    replica_labels: &[&str],
) -> QuerierProc {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stores = {
        let _g = rt.enter();
        stores()
    };
    let set = Arc::new(EndpointSet::from_stores(stores));
    let q = Querier::new(
        set,
        QuerierConfig {
            replica_labels: replica_labels.iter().map(|s| s.to_string()).collect(),
            partial_response: true,
            ..Default::default()
        },
    );
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    rt.spawn(query::serve(q, l, std::future::pending()));
    QuerierProc { url, _rt: rt }
}

use harness::curl_get as curl;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The result of an API answer with the external labels removed from every
/// metric, sorted by metric.
fn normalized(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    let mut data = v["data"].clone();
    if let Some(arr) = data["result"].as_array_mut() {
        for r in arr.iter_mut() {
            if let Some(m) = r["metric"].as_object_mut() {
                m.remove("cluster");
                m.remove("replica");
            }
        }
        arr.sort_by_key(|r| r["metric"].to_string());
    }
    data
}

/// The first difference of two JSON values, as a path and the two sides.
fn first_diff(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_diff(&format!("{path}[{i}]"), p, q) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path}: length {} vs {}", x.len(), y.len()))
        }
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            for (k, p) in x {
                let q = y.get(k)?;
                if let Some(d) = first_diff(&format!("{path}.{k}"), p, q) {
                    return Some(d);
                }
            }
            None
        }
        (Value::String(x), Value::String(y)) if x != y => {
            // Values may differ in the last bits: the engine has Prometheus 3's
            // summation (Kahan) where Prometheus 2.42 has plain sums.
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) if (p - q).abs() <= 1e-12 * p.abs().max(q.abs()) => None,
                _ => Some(format!("{path}: {a} vs {b}")),
            }
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

fn assert_same(got: &Value, want: &Value, what: &str) {
    if let Some(d) = first_diff("", got, want) {
        panic!("{what}: querier vs Prometheus differ at {d}");
    }
}

fn grpc_store(addr: &str) -> Arc<dyn StoreApi> {
    Arc::new(
        storeapi::grpc::GrpcStore::connect_lazy(addr, storeapi::grpc::ClientOptions::default())
            .unwrap(),
    )
}

#[test]
fn querier_matches_prometheus_over_bucket_and_fresh_data() {
    let tmp = tempfile::tempdir().unwrap();
    let target = start_target();
    let now_s = now_ms() / 1000;
    // History: 6 h up to 10 min ago, in replica 0 only (-> its blocks -> bucket).
    let data0 = tmp.path().join("p0/data");
    backfill(&data0, &target, now_s - 6 * 3600, now_s - 600);
    let blocks = std::fs::read_dir(&data0)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert!(blocks >= 3, "{blocks} backfilled blocks");
    let flags = [
        "--storage.tsdb.min-block-duration=2h",
        "--storage.tsdb.max-block-duration=2h",
    ];
    let p0 = Prometheus::start(&prom_config("0", &target), &data0, &flags).unwrap();
    let data1 = tmp.path().join("p1/data");
    let p1 = Prometheus::start(&prom_config("1", &target), &data1, &flags).unwrap();
    let s3 = S3Server::start("query-e2e").unwrap();
    let side0 = Sidecar::start(&data0, &p0.url(), Some(s3.objstore_yaml()));
    let mut side1 = Sidecar::start(&data1, &p1.url(), None);
    wait_until(
        "replica 0's blocks in the bucket",
        Duration::from_secs(90),
        || {
            sidecar::read_state(&data0)
                .map(|s| s.uploaded.len() >= blocks)
                .unwrap_or(false)
        },
    );
    let bucket = bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap();
    let store: Arc<dyn StoreApi> = Arc::new(store::BucketStore::new(
        bucket,
        store::StoreConfig::default(),
    ));
    // Let both replicas scrape a few times (the first scrape comes up to 5 s
    // after start).
    for p in [&p0, &p1] {
        wait_until("a scrape", Duration::from_secs(30), || {
            p.get("/api/v1/query?query=demo_gauge")
                .is_ok_and(|b| b.contains("\"value\""))
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    // Evaluation times end on .321 s: never on a sample.
    let end_ms = now_ms() - 1000;
    let end = format!("{}.321", end_ms / 1000);
    let start = format!("{}.321", end_ms / 1000 - 5 * 3600);
    let mid = format!("{}.321", end_ms / 1000 - 3 * 3600);

    // Replica 0's view: its sidecar + the store over the bucket.
    let q0 = start_querier(
        || {
            vec![
                (side0.grpc.clone(), grpc_store(&side0.grpc)),
                ("bucket-store".into(), Arc::clone(&store)),
            ]
        },
        &[],
    );
    wait_until("querier sees sidecar 0 up", Duration::from_secs(30), || {
        let (_, b) = curl(&format!("{}/api/v1/endpoints", q0.url));
        b.matches(r#""health":"up""#).count() == 2 && b.contains(r#""replica":"0""#)
    });
    let instant = [
        "demo_gauge",
        "sum(demo_gauge)",
        "sum by (kind) (demo_gauge) * 2",
        "rate(demo_requests_total[5m])",
        "max_over_time(demo_gauge[10m])",
        "count_over_time(demo_gauge[1h])",
        "demo_gauge{kind=\"a\"} > 3",
    ];
    for at in [&mid, &end] {
        for expr in instant {
            let path = format!("/api/v1/query?query={}&time={at}", enc(expr));
            let want = p0.get(&path).unwrap();
            let (code, got) = curl(&format!("{}{path}", q0.url));
            assert_eq!(code, 200, "{expr}: {got}");
            if expr == "demo_gauge" {
                // History (bucket) at `mid`, fresh data (sidecar) at `end`.
                assert!(want.contains(r#""value""#), "{expr} at {at}: {want}");
            }
            assert_same(
                &normalized(&got),
                &normalized(&want),
                &format!("{expr} at {at}"),
            );
        }
    }
    let range = [
        "demo_gauge",
        "sum by (kind) (demo_gauge)",
        "rate(demo_requests_total[5m])",
        "avg_over_time(demo_gauge[15m])",
        "min_over_time(demo_gauge[15m])",
        "max by (kind) (demo_gauge) - on (kind) min by (kind) (demo_gauge)",
    ];
    for expr in range {
        let path = format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=60",
            enc(expr)
        );
        let want = p0.get(&path).unwrap();
        let (code, got) = curl(&format!("{}{path}", q0.url));
        assert_eq!(code, 200, "{expr}: {got}");
        let (g, w) = (normalized(&got), normalized(&want));
        assert!(
            w["result"].as_array().is_some_and(|a| !a.is_empty()),
            "{expr}: {want}"
        );
        assert_same(&g, &w, &format!("{expr} over [{start}, {end}]"));
    }
    // The bucket alone answers the history the same way.
    let qb = start_querier(|| vec![("bucket-store".into(), Arc::clone(&store))], &[]);
    let path = format!("/api/v1/query?query={}&time={mid}", enc("sum(demo_gauge)"));
    assert_eq!(
        normalized(&curl(&format!("{}{path}", qb.url)).1),
        normalized(&p0.get(&path).unwrap())
    );

    // promtool as the client: same output from Prometheus and the querier.
    for expr in [
        "sum(demo_gauge)",
        "sum by (kind) (rate(demo_requests_total[5m]))",
    ] {
        let a = harness::promtool(&[
            "query",
            "instant",
            &format!("--time={mid}"),
            &p0.url(),
            expr,
        ])
        .unwrap();
        let b = harness::promtool(&["query", "instant", &format!("--time={mid}"), &q0.url, expr])
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&b.stdout),
            String::from_utf8_lossy(&a.stdout),
            "{expr}"
        );
    }
    let a = harness::promtool(&[
        "query",
        "range",
        &format!("--start={start}"),
        &format!("--end={end}"),
        "--step=5m",
        &p0.url(),
        "sum(demo_gauge)",
    ])
    .unwrap();
    let b = harness::promtool(&[
        "query",
        "range",
        &format!("--start={start}"),
        &format!("--end={end}"),
        "--step=5m",
        &q0.url,
        "sum(demo_gauge)",
    ])
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&a.stdout)
    );
    let labels = harness::promtool(&["query", "labels", &q0.url, "kind"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&labels.stdout).trim(), "a\nb");

    // HA: both replicas, deduplicated on `replica`.
    let qha = start_querier(
        || {
            vec![
                (side0.grpc.clone(), grpc_store(&side0.grpc)),
                (side1.grpc.clone(), grpc_store(&side1.grpc)),
                ("bucket-store".into(), Arc::clone(&store)),
            ]
        },
        &["replica"],
    );
    wait_until(
        "querier sees both sidecars up",
        Duration::from_secs(30),
        || {
            let (_, b) = curl(&format!("{}/api/v1/endpoints", qha.url));
            b.matches(r#""health":"up""#).count() == 3 && b.contains(r#""replica":"1""#)
        },
    );
    let count = |extra: &str| -> String {
        let (code, b) = curl(&format!(
            "{}/api/v1/query?query=count(demo_gauge)&time={end}{extra}",
            qha.url
        ));
        assert_eq!(code, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("count(demo_gauge) at {end}{extra}: {b}"))
            .to_string()
    };
    if std::env::var("E2E_DEBUG").is_ok() {
        let (_, e) = curl(&format!("{}/api/v1/endpoints", qha.url));
        let (_, b) = curl(&format!(
            "{}/api/v1/query?query=demo_gauge&time={end}&dedup=false",
            qha.url
        ));
        let (_, c) = curl(&format!(
            "{}/api/v1/query?query=demo_gauge&time={end}&dedup=false",
            q0.url
        ));
        let t = p0.get("/api/v1/targets").unwrap();
        let u = p0.get("/api/v1/query?query=demo_gauge").unwrap();
        panic!("end {end}\nendpoints {e}\nresult {b}\nq0 {c}\ntargets {t}\nnow {u}");
    }
    assert_eq!(count(""), "2");
    assert_eq!(count("&dedup=false"), "4");
    let (_, b) = curl(&format!(
        "{}/api/v1/series?match[]=demo_gauge&start={start}",
        qha.url
    ));
    assert!(!b.contains("replica"), "{b}");
    let (_, b) = curl(&format!(
        "{}/api/v1/series?match[]=demo_gauge&start={start}&dedup=false",
        qha.url
    ));
    assert!(
        b.contains(r#""replica":"0""#) && b.contains(r#""replica":"1""#),
        "{b}"
    );
    // Deduplicated history equals replica 0's own (replica 1 has none).
    let path = format!("/api/v1/query?query={}&time={mid}", enc("demo_gauge"));
    assert_eq!(
        normalized(&curl(&format!("{}{path}", qha.url)).1),
        normalized(&p0.get(&path).unwrap())
    );

    // Replica 1's sidecar goes away: partial response with a warning naming it.
    let gone = side1.grpc.clone();
    side1.stop();
    let (code, b) = curl(&format!(
        "{}/api/v1/query?query=count(demo_gauge)&time={end}",
        qha.url
    ));
    assert_eq!(code, 200, "{b}");
    assert!(b.contains("\"warnings\":[") && b.contains(&gone), "{b}");
    assert!(b.contains(r#""value":["#), "{b}");
    let (code, b) = curl(&format!(
        "{}/api/v1/query?query=count(demo_gauge)&time={end}&partial_response=false",
        qha.url
    ));
    assert_eq!(code, 500, "{b}");
    assert!(b.contains(&gone), "{b}");
    drop(side0);
    drop(p1);
}
