//! Knative mode: with `K_SERVICE` and `PORT` set, `aether store` and `aether
//! query` serve everything on `0.0.0.0:$PORT`: HTTP (health, API) and the
//! StoreAPI over h2c gRPC on the same port, so a Knative Service with one
//! `h2c` port carries both. A querier in Knative mode reads a store in
//! Knative mode through that port.

use std::process::Command;
use std::time::Duration;

use harness::{free_port, Proc};
use storeapi::StoreApi;

use harness::curl_get as curl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_query_serve_http_and_grpc_on_port() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    // Flags name other addresses: Knative mode must ignore them for $PORT.
    let unused = || format!("127.0.0.1:{}", free_port());

    let store_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args(["store", "--objstore.config", &objstore])
        .args([
            "--data-dir",
            &tmp.path().join("store").display().to_string(),
        ])
        .args(["--http-address", &unused(), "--grpc-address", &unused()])
        .env("K_SERVICE", "aether-store")
        .env("PORT", store_port.to_string());
    let mut store = Proc::spawn("store", &mut cmd, tmp.path().join("store.log")).unwrap();
    let store_addr = format!("127.0.0.1:{store_port}");
    harness::wait_for_port(&store_addr, Duration::from_secs(20)).unwrap();
    let (code, body) = curl(&format!("http://{store_addr}/-/healthy"));
    assert_eq!(code, 200, "{body}");
    let client = storeapi::grpc::GrpcStore::connect(&store_addr, Default::default())
        .await
        .unwrap();
    let info = client.info().await.unwrap();
    assert!(info.store.is_some(), "{info:?}");

    let query_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args(["query", "--endpoint", &store_addr])
        .args(["--http-address", &unused(), "--grpc-address", &unused()])
        .env("K_SERVICE", "aether-query")
        .env("PORT", query_port.to_string());
    let mut query = Proc::spawn("query", &mut cmd, tmp.path().join("query.log")).unwrap();
    let query_addr = format!("127.0.0.1:{query_port}");
    harness::wait_for_port(&query_addr, Duration::from_secs(20)).unwrap();
    let (code, body) = curl(&format!(
        "http://{query_addr}/api/v1/query?query=vector(1)&time=100"
    ));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""result":[{"metric":{},"value":[100,"1"]}]"#),
        "{body}"
    );
    // The querier's endpoint page shows the store reached over h2c.
    let mut up = false;
    for _ in 0..50 {
        let (_, body) = curl(&format!("http://{query_addr}/api/v1/endpoints"));
        if body.contains(&store_addr) && body.contains("\"up\"") {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(up, "store not up behind the querier: {}", query.log());
    // And the querier's own StoreAPI answers on the same port.
    let client = storeapi::grpc::GrpcStore::connect(&query_addr, Default::default())
        .await
        .unwrap();
    assert!(client.info().await.is_ok());

    // The ruler: HTTP on $PORT, one tick per POST /-/tick (a PingSource),
    // evaluating over the store's h2c port; state and samples in the bucket.
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n- name: knative\n  rules:\n  - record: aether:test:answer\n    expr: vector(42)\n",
    )
    .unwrap();
    let rule_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args(["rule", "--objstore.config", &objstore])
        .args(["--rule-file", &rules.display().to_string()])
        .args(["--endpoint", &store_addr, "--label", "replica=\"k0\""])
        .args(["--data-dir", &tmp.path().join("rule").display().to_string()])
        .args(["--http-address", &unused(), "--grpc-address", &unused()])
        .env("K_SERVICE", "aether-rule")
        .env("PORT", rule_port.to_string());
    let mut rule = Proc::spawn("rule", &mut cmd, tmp.path().join("rule.log")).unwrap();
    let rule_addr = format!("127.0.0.1:{rule_port}");
    harness::wait_for_port(&rule_addr, Duration::from_secs(20)).unwrap();
    let post = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-X", "POST", "-w", "\n%{http_code}"])
            .arg(format!("http://{rule_addr}{path}"))
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let (body, code) = s.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap_or(0), body.to_string())
    };
    let (code, body) = post("/-/tick");
    assert_eq!(code, 200, "{body}: {}", rule.log());
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    // A second tick in the same minute (the default interval) records nothing.
    let (code, body) = post("/-/tick");
    assert_eq!(code, 200, "{body}");
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    let minute = |v: &serde_json::Value| v["at"].as_i64().unwrap() / 60_000;
    assert_eq!(
        first["evaluated"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    assert_eq!(first["samples"], 1, "{first}");
    if minute(&first) == minute(&second) {
        assert_eq!(
            second["evaluated"].as_array().map(Vec::len),
            Some(0),
            "{second}"
        );
    }
    let (code, body) = curl(&format!("http://{rule_addr}/api/v1/rules"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("aether:test:answer") && body.contains(r#""health":"ok""#),
        "{body}"
    );
    // The pending sample is in the bucket, under the ruler's prefix.
    let pending: Vec<_> = walk(&bucket)
        .into_iter()
        .filter(|p| p.contains("/pending/"))
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");

    // The compactor: one pass per POST /-/tick.
    let compact_port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args(["compact", "--objstore.config", &objstore])
        .args([
            "--data-dir",
            &tmp.path().join("compact").display().to_string(),
        ])
        .args(["--http-address", &unused()])
        .env("K_SERVICE", "aether-compact")
        .env("PORT", compact_port.to_string());
    let mut compact = Proc::spawn("compact", &mut cmd, tmp.path().join("compact.log")).unwrap();
    let compact_addr = format!("127.0.0.1:{compact_port}");
    harness::wait_for_port(&compact_addr, Duration::from_secs(20)).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-w", "\n%{http_code}"])
        .arg(format!("http://{compact_addr}/-/tick"))
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    let (body, code) = s.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}: {}", compact.log());
    let report: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["skipped"], false, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let (code, body) = curl(&format!("http://{compact_addr}/metrics"));
    assert_eq!(code, 200);
    assert!(body.contains("pass"), "{body}");
    compact.stop(Duration::from_secs(5));
    rule.stop(Duration::from_secs(5));
    query.stop(Duration::from_secs(5));
    store.stop(Duration::from_secs(5));
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
