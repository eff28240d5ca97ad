//! `aether rule` end to end with real parts: a real Prometheus scraping a target
//! the test can take down, an Aether sidecar and querier, the ruler evaluating
//! through the querier's HTTP API, a real Alertmanager (Debian's
//! `prometheus-alertmanager`) and SeaweedFS as the bucket. The seed's
//! `ThanosDown` alert reaches the Alertmanager only after `for` and resolves
//! when the target is back; the recording rule's series is queryable through
//! the querier (which has the ruler as an endpoint) and lands in the bucket as a
//! block `promtool tsdb dump` reads. Also `aether tools rules-check` against
//! `promtool check rules`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{free_port, Proc};

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sg", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

fn get_json(url: &str) -> serde_json::Value {
    let (code, body) = curl(&[url]);
    if code != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A `/metrics` target that answers 200 while `up`, 503 otherwise.
fn start_target(up: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let resp = if up.load(Ordering::SeqCst) {
                let body = "thanos_dummy_metric 1\n";
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

fn am_alerts(am: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{am}/api/v2/alerts"))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "ThanosDown")
        .collect()
}

const RULES: &str = r#"groups:
  - name: thanos
    rules:
      - alert: ThanosDown
        expr: up{job="thanos"} == 0
        for: 10s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} of job {{ $labels.job }} is down"
      - record: job:up:sum
        expr: sum by (job) (up)
"#;

#[test]
fn thanos_down_fires_after_for_resolves_and_records_into_the_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_aether");
    let up = Arc::new(AtomicBool::new(true));
    let target = start_target(Arc::clone(&up));

    // Prometheus evaluates the same alert (and a recording rule of another name),
    // so that the ruler's API JSON can be compared with the real one.
    let prom_rules = tmp.path().join("prom_rules.yml");
    std::fs::write(&prom_rules, RULES.replace("job:up:sum", "prom:up:sum")).unwrap();
    let prom_cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    prom: p0\nrule_files: ['{}']\nscrape_configs:\n  - job_name: thanos\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n",
        prom_rules.display()
    );
    let prom = harness::Prometheus::start(&prom_cfg, &tmp.path().join("prom/data"), &[]).unwrap();

    let mut s3 = harness::S3Server::start("rule-e2e").unwrap();
    let objstore = tmp.path().join("objstore.yml");
    std::fs::write(&objstore, s3.objstore_yaml()).unwrap();

    // Alertmanager.
    let am_port = free_port();
    let am_cfg = tmp.path().join("am.yml");
    std::fs::write(
        &am_cfg,
        "route:\n  receiver: 'null'\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let mut am_cmd = Command::new("prometheus-alertmanager");
    am_cmd
        .arg(format!("--config.file={}", am_cfg.display()))
        .arg(format!(
            "--storage.path={}",
            tmp.path().join("am").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=");
    let mut am = Proc::spawn("alertmanager", &mut am_cmd, tmp.path().join("am.log")).unwrap();
    let am_url = format!("http://127.0.0.1:{am_port}");

    // Sidecar, ruler, querier.
    let (sc_grpc, sc_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut sc_cmd = Command::new(bin);
    sc_cmd
        .args([
            "sidecar",
            "--grpc-address",
            &sc_grpc,
            "--http-address",
            &sc_http,
        ])
        .arg(format!("--tsdb.path={}", prom.data_dir.display()))
        .arg(format!("--prometheus.url={}", prom.url()));
    let mut sidecar = Proc::spawn("sidecar", &mut sc_cmd, tmp.path().join("sidecar.log")).unwrap();

    let (q_grpc, q_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (r1_grpc, r1_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (r_grpc, r_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut q_cmd = Command::new(bin);
    q_cmd
        .args([
            "query",
            "--grpc-address",
            &q_grpc,
            "--http-address",
            &q_http,
        ])
        .args([
            "--endpoint",
            &sc_grpc,
            "--endpoint",
            &r_grpc,
            "--endpoint",
            &r1_grpc,
        ])
        .arg(format!("--rule.url=http://{r_http}"))
        .arg(format!("--rule.url=http://{r1_http}"));
    let mut querier = Proc::spawn("query", &mut q_cmd, tmp.path().join("query.log")).unwrap();
    let q_url = format!("http://{q_http}");

    let rules = tmp.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let mut r_cmd = Command::new(bin);
    r_cmd
        .args(["rule", "--grpc-address", &r_grpc, "--http-address", &r_http])
        .arg(format!("--rule-file={}/*.yaml", tmp.path().display()))
        .arg(format!("--query={q_url}"))
        .arg(format!("--alertmanagers.url={am_url}"))
        .arg("--label=replica=\"r0\"")
        .args([
            "--eval-interval=1s",
            "--resend-delay=2s",
            "--tsdb.block-duration=10s",
            "--tsdb.retention=1h",
        ])
        .arg(format!("--data-dir={}", tmp.path().join("ruler").display()))
        .arg(format!("--objstore.config-file={}", objstore.display()));
    let mut ruler = Proc::spawn("rule", &mut r_cmd, tmp.path().join("rule.log")).unwrap();
    let r_url = format!("http://{r_http}");
    // A second ruler evaluating with the embedded engine straight over the
    // sidecar's StoreAPI (`--endpoint`), no bucket, no Alertmanager.
    let rules1 = tmp.path().join("rules1.yml");
    std::fs::write(
        &rules1,
        "groups:\n  - name: direct\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n",
    )
    .unwrap();
    let mut r1_cmd = Command::new(bin);
    r1_cmd
        .args([
            "rule",
            "--grpc-address",
            &r1_grpc,
            "--http-address",
            &r1_http,
        ])
        .arg(format!("--rule-file={}", rules1.display()))
        .args([
            "--endpoint",
            &sc_grpc,
            "--label=replica=\"r1\"",
            "--eval-interval=1s",
        ])
        .arg(format!(
            "--data-dir={}",
            tmp.path().join("ruler1").display()
        ));
    let mut ruler1 =
        Proc::spawn("rule-endpoint", &mut r1_cmd, tmp.path().join("rule1.log")).unwrap();
    for a in [&sc_http, &q_http, &r_http, &r_grpc] {
        harness::wait_for_port(a, Duration::from_secs(30)).unwrap();
    }
    harness::wait_for_port(&format!("127.0.0.1:{am_port}"), Duration::from_secs(30)).unwrap();

    // The recording rule's series, through the querier, from the ruler's StoreAPI.
    let rec = wait_for(
        "job:up:sum through the querier",
        Duration::from_secs(60),
        || {
            // This ruler's series (the second ruler records the same name,
            // evaluated at its own offset within the second).
            let v = get_json(&format!(
                "{q_url}/api/v1/query?query=job:up:sum%7Breplica%3D%22r0%22%7D"
            ));
            let r = v["data"]["result"].as_array()?.first()?.clone();
            (r["value"][1] == "1").then_some(r)
        },
    );
    assert_eq!(rec["metric"]["job"], "thanos");
    assert_eq!(rec["metric"]["replica"], "r0", "{rec}");

    // Take the target down: pending first, in the Alertmanager only after `for`.
    up.store(false, Ordering::SeqCst);
    let down_at = Instant::now();
    let mut saw_pending = false;
    let fired_after = wait_for(
        "ThanosDown in the Alertmanager",
        Duration::from_secs(60),
        || {
            let ra = get_json(&format!("{r_url}/api/v1/alerts"));
            let state = ra["data"]["alerts"][0]["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let in_am = am_alerts(&am_url);
            if state == "pending" {
                saw_pending = true;
                assert!(
                    in_am.is_empty(),
                    "a pending alert reached the Alertmanager: {in_am:?}"
                );
            }
            (!in_am.is_empty()).then(|| (down_at.elapsed(), in_am[0].clone()))
        },
    );
    assert!(saw_pending, "the alert was never seen pending");
    let (elapsed, a) = fired_after;
    assert!(
        elapsed >= Duration::from_secs(10),
        "fired after {elapsed:?}, before for: 10s"
    );
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["replica"], "r0", "ruler labels attached: {a}");
    assert_eq!(a["labels"]["job"], "thanos");
    assert_eq!(
        a["annotations"]["summary"],
        format!("127.0.0.1:{target} of job thanos is down")
    );
    // Rules API: firing, in Prometheus's shape.
    // The same keys as Prometheus's own /api/v1/rules (Thanos adds the group's
    // partialResponseStrategy) and /api/v1/alerts.
    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    }
    let theirs = wait_for(
        "ThanosDown firing in Prometheus",
        Duration::from_secs(30),
        || {
            let v = get_json(&format!("{}/api/v1/rules", prom.url()));
            (v["data"]["groups"][0]["rules"][0]["state"] == "firing").then_some(v)
        },
    );
    let ours = get_json(&format!("{r_url}/api/v1/rules"));
    let (tg, og) = (&theirs["data"]["groups"][0], &ours["data"]["groups"][0]);
    let mut og_keys = keys(og);
    og_keys.retain(|k| k != "partialResponseStrategy");
    assert_eq!(og_keys, keys(tg), "group keys: ours {og} theirs {tg}");
    for i in 0..2 {
        assert_eq!(
            keys(&og["rules"][i]),
            keys(&tg["rules"][i]),
            "rule {i}: ours {} theirs {}",
            og["rules"][i],
            tg["rules"][i]
        );
    }
    assert_eq!(
        keys(&og["rules"][0]["alerts"][0]),
        keys(&tg["rules"][0]["alerts"][0])
    );
    assert_eq!(og["rules"][0]["query"], tg["rules"][0]["query"]);
    assert_eq!(og["rules"][0]["labels"], tg["rules"][0]["labels"]);
    assert_eq!(og["rules"][0]["annotations"], tg["rules"][0]["annotations"]);
    assert_eq!(
        og["rules"][0]["alerts"][0]["annotations"],
        tg["rules"][0]["alerts"][0]["annotations"]
    );
    assert_eq!(
        og["rules"][0]["alerts"][0]["value"],
        tg["rules"][0]["alerts"][0]["value"]
    );
    let (ta, oa) = (
        get_json(&format!("{}/api/v1/alerts", prom.url())),
        get_json(&format!("{r_url}/api/v1/alerts")),
    );
    assert_eq!(keys(&oa["data"]), keys(&ta["data"]));
    assert_eq!(
        keys(&oa["data"]["alerts"][0]),
        keys(&ta["data"]["alerts"][0])
    );
    let rules_api = get_json(&format!("{r_url}/api/v1/rules?type=alert"));
    let rule0 = &rules_api["data"]["groups"][0]["rules"][0];
    assert_eq!(rule0["name"], "ThanosDown");
    assert_eq!(rule0["state"], "firing");
    assert_eq!(rule0["type"], "alerting");
    assert_eq!(rule0["duration"], 10.0);
    assert_eq!(rule0["health"], "ok");
    // The same alert through the querier (`--rule.url`), as Grafana reads it.
    let qa = get_json(&format!("{q_url}/api/v1/alerts"));
    assert!(
        qa["data"]["alerts"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["labels"]["alertname"] == "ThanosDown" && a["state"] == "firing")),
        "{qa}"
    );
    // ALERTS through the querier.
    let mut last = String::new();
    let found = (0..80).any(|_| {
        let (_, body) = curl(&[
            "--data-urlencode",
            "query=ALERTS{alertname=\"ThanosDown\",alertstate=\"firing\",replica=\"r0\"}",
            &format!("{q_url}/api/v1/query"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        last = body;
        let ok = v["data"]["result"].as_array().is_some_and(|r| r.len() == 1);
        if !ok {
            std::thread::sleep(Duration::from_millis(250));
        }
        ok
    });
    assert!(
        found,
        "ALERTS firing not seen through the querier; last answer: {last}"
    );

    // Back up: resolved in the Alertmanager.
    up.store(true, Ordering::SeqCst);
    wait_for("ThanosDown resolved", Duration::from_secs(60), || {
        am_alerts(&am_url).is_empty().then_some(())
    });
    let ra = get_json(&format!("{r_url}/api/v1/alerts"));
    assert_eq!(
        ra["data"]["alerts"].as_array().map(Vec::len),
        Some(0),
        "{ra}"
    );

    // A block with the recorded series in the bucket, readable by promtool.
    let cfg = bucket::ObjstoreConfig::from_file(&objstore).unwrap();
    let store = cfg.build().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Blocks are cut every 10 s: wait for one holding the alert's series too.
    let mut dumped = std::collections::BTreeMap::new();
    wait_for(
        "ruler blocks holding job:up:sum and ALERTS",
        Duration::from_secs(60),
        || {
            let metas = rt.block_on(bucket::list_block_metas(&*store)).ok()?;
            for meta in metas.metas {
                let Some(t) = meta.thanos.as_ref().filter(|t| t.source == "ruler") else {
                    continue;
                };
                if dumped.contains_key(&meta.ulid) {
                    continue;
                }
                assert_eq!(t.labels.get("replica").map(String::as_str), Some("r0"));
                assert_eq!(t.downsample.resolution, 0);
                assert_eq!(meta.max_time - meta.min_time, 10_000);
                let dl = tmp.path().join("dl").join(meta.ulid.to_string());
                rt.block_on(bucket::download_block(
                    &*store,
                    meta.ulid,
                    &dl.join(meta.ulid.to_string()),
                ))
                .unwrap();
                dumped.insert(meta.ulid, harness::promtool_dump(&dl, &[]).unwrap());
            }
            let all: String = dumped.values().cloned().collect();
            (all.contains("job:up:sum") && all.contains("__name__=\"ALERTS\"")).then_some(())
        },
    );

    // Metrics, and a bad reload keeps the last good rules.
    let (code, m) = curl(&[&format!("{r_url}/metrics")]);
    assert_eq!(code, 200);
    assert!(
        m.contains("prometheus_rule_evaluations_total{rule_group="),
        "{m}"
    );
    assert!(m.contains("prometheus_notifications_sent_total"), "{m}");
    std::fs::write(
        &rules,
        "groups:\n  - name: x\n    rules:\n      - record: 'bad name'\n        expr: up\n",
    )
    .unwrap();
    let (code, body) = curl(&["-XPOST", &format!("{r_url}/-/reload")]);
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("invalid recording rule name"), "{body}");
    let (_, m) = curl(&[&format!("{r_url}/metrics")]);
    assert!(
        m.contains("thanos_rule_config_last_reload_successful 0"),
        "{m}"
    );
    let rules_api = get_json(&format!("{r_url}/api/v1/rules"));
    assert_eq!(
        rules_api["data"]["groups"][0]["rules"][0]["name"],
        "ThanosDown"
    );
    // SIGHUP with a good file: the new rules replace the old.
    std::fs::write(
        &rules,
        "groups:\n  - name: y\n    rules:\n      - record: only:one\n        expr: vector(1)\n",
    )
    .unwrap();
    Command::new("kill")
        .args(["-HUP", &ruler.pid().to_string()])
        .status()
        .unwrap();
    wait_for("the SIGHUP reload", Duration::from_secs(20), || {
        let v = get_json(&format!("{r_url}/api/v1/rules"));
        (v["data"]["groups"][0]["name"] == "y").then_some(())
    });
    // The querier merges both rulers' groups, in --rule.url order.
    let v = get_json(&format!("{q_url}/api/v1/rules"));
    let names: Vec<&str> = v["data"]["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|g| g["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["y", "direct"], "{v}");

    for p in [&mut ruler, &mut ruler1, &mut querier, &mut sidecar, &mut am] {
        p.stop(Duration::from_secs(10));
    }
    assert!(ruler.exited(), "{}", ruler.log());
    s3.stop();
}

fn run(cmd: &str, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(cmd).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn rules_check_prints_like_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.yml");
    std::fs::write(&good, RULES).unwrap();
    let bad = tmp.path().join("bad.yml");
    std::fs::write(
        &bad,
        r#"groups:
  - name: example
    rules:
      - alert: X
        expr: up == 0
        labels:
          "bad-name": x
        annotations:
          summary: "{{ $labels.instance "
      - record: "bad name"
        expr: up
      - alert: Y
        record: Z
        expr: up
  - name: example
    rules:
      - record: a
        expr: up
        for: 5m
      - record: b
        expr: sum(up)
        annotations:
          x: y
"#,
    )
    .unwrap();
    let unknown = tmp.path().join("unknown.yml");
    std::fs::write(
        &unknown,
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        foo: bar\n",
    )
    .unwrap();
    let bad_expr = tmp.path().join("bad_expr.yml");
    std::fs::write(
        &bad_expr,
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: sum by (job) (up\n",
    )
    .unwrap();

    let bin = env!("CARGO_BIN_EXE_aether");
    for files in [
        vec![&good],
        vec![&bad],
        vec![&unknown],
        vec![&good, &bad, &unknown],
    ] {
        let f: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
        let mut ours_args = vec!["tools", "rules-check"];
        ours_args.extend(&f);
        let mut prom_args = vec!["check", "rules"];
        prom_args.extend(&f);
        let ours = run(bin, &ours_args);
        let theirs = run("promtool", &prom_args);
        assert_eq!(ours, theirs, "rules-check {f:?} differs from promtool");
    }
    // Expression errors: same place and prefix (the parser's own words differ).
    let (code, out, err) = run(bin, &["tools", "rules-check", bad_expr.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.starts_with("Checking "), "{out}");
    let want = format!(
        "{}: 5:15: group \"g\", rule 1, \"a\": could not parse expression: ",
        bad_expr.display()
    );
    assert!(err.contains(&want), "{err}");
    // Thanos's partial_response_strategy is accepted.
    let thanos = tmp.path().join("thanos.yml");
    std::fs::write(&thanos, "groups:\n  - name: g\n    partial_response_strategy: warn\n    rules:\n      - record: a\n        expr: up\n").unwrap();
    let (code, out, _) = run(bin, &["tools", "rules-check", thanos.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("SUCCESS: 1 rules found"), "{out}");
}
