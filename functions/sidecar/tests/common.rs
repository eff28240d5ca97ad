//! Helpers for the sidecar's integration tests: backfilled blocks, a Prometheus
//! with external labels, the bucket, an in-process sidecar.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bucket::object_store::ObjectStore;
use harness::{free_port, Prometheus, S3Server};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

/// 2h-aligned start of the backfilled data (2023-11-14T20:00:00Z).
pub const BASE_S: i64 = 1_699_992_000;

/// Writes `hours` hours of two series (`demo_metric{job="a"|"b"}`, one sample a
/// minute) starting `offset_h` hours after [`BASE_S`] as OpenMetrics, and
/// backfills it with promtool into `data_dir` (one 2h block per 2h).
pub fn backfill(data_dir: &Path, offset_h: i64, hours: i64) {
    std::fs::create_dir_all(data_dir).unwrap();
    let mut om = String::from("# TYPE demo_metric gauge\n");
    for job in ["a", "b"] {
        for i in 0..hours * 60 {
            let t = BASE_S + offset_h * 3600 + i * 60;
            let v = if job == "a" {
                i as f64 * 1.5
            } else {
                (i % 7) as f64
            };
            om.push_str(&format!("demo_metric{{job=\"{job}\"}} {v} {t}\n"));
        }
    }
    om.push_str("# EOF\n");
    let f = data_dir.join("../backfill.om");
    std::fs::write(&f, om).unwrap();
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f.to_str().unwrap(),
        data_dir.to_str().unwrap(),
    ])
    .unwrap();
}

/// A Prometheus config with external labels (none if `labels` is empty) that
/// scrapes itself every `scrape` (None: no scraping).
pub fn prom_config(labels: &[(&str, &str)], self_port_scrape: Option<&str>) -> String {
    let mut s = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
    if !labels.is_empty() {
        s.push_str("  external_labels:\n");
        for (k, v) in labels {
            s.push_str(&format!("    {k}: {v}\n"));
        }
    }
    match self_port_scrape {
        Some(target) => s.push_str(&format!(
            "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{target}']\n"
        )),
        None => s.push_str("scrape_configs: []\n"),
    }
    s
}

/// Starts Prometheus over `data_dir` with 2h blocks (no compaction, as Thanos
/// requires) unless `extra` says otherwise.
pub fn start_prometheus(config: &str, data_dir: &Path, extra: &[&str]) -> Prometheus {
    let mut args: Vec<&str> = extra.to_vec();
    if extra.is_empty() {
        args = vec![
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ];
    }
    Prometheus::start(config, data_dir, &args).expect("start Prometheus")
}

pub fn bucket_of(s3: &S3Server) -> Arc<dyn ObjectStore> {
    bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap()
}

/// ULIDs of the finished blocks in a TSDB directory.
pub fn local_blocks(dir: &Path) -> Vec<Ulid> {
    let mut v: Vec<Ulid> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            Ulid::from_string(&n)
                .ok()
                .filter(|u| u.to_string() == n && e.path().join("meta.json").exists())
        })
        .collect();
    v.sort();
    v
}

pub fn state_uploaded(dir: &Path) -> Vec<Ulid> {
    sidecar::read_state(dir).unwrap().uploaded
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// An in-process sidecar; stops when dropped.
pub struct Sidecar {
    pub http: String,
    pub grpc: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<sidecar::Result<()>>>,
}

impl Sidecar {
    pub fn start(tsdb: &Path, prom_url: &str, objstore_yaml: Option<String>) -> Sidecar {
        let http = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut cfg = sidecar::Config::new(tsdb, prom_url);
        cfg.objstore = objstore_yaml.map(sidecar::ObjstoreSource::Inline);
        cfg.http_address = http.clone();
        cfg.grpc_address = grpc.clone();
        cfg.sync_interval = Duration::from_secs(1);
        cfg.heartbeat_interval = Duration::from_secs(2);
        cfg.grace_period = Duration::from_secs(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(sidecar::run_until(cfg, async move {
                let _ = rx.await;
            }))
        });
        harness::wait_for_port(&http, Duration::from_secs(20)).unwrap();
        Sidecar {
            http,
            grpc,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn get(&self, path: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-s"])
            .arg(format!("http://{}{}", self.http, path))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// A metric's value from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
    }

    pub fn stop(mut self) -> sidecar::Result<()> {
        self.stop.take().map(|s| s.send(()));
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks the bucket against the local blocks `ids`: each complete (no partial
/// blocks at all), with the sidecar's `thanos` section (external labels, source,
/// resolution 0, files with the local sizes).
pub async fn check_bucket(
    store: &dyn ObjectStore,
    tsdb: &Path,
    ids: &[Ulid],
    labels: &BTreeMap<String, String>,
) {
    let metas = bucket::list_block_metas(store).await.unwrap();
    assert!(
        metas.partial.is_empty(),
        "partial blocks: {:?}",
        metas.partial
    );
    assert!(
        metas.corrupted.is_empty(),
        "corrupted: {:?}",
        metas.corrupted
    );
    for id in ids {
        let m: &BlockMeta = metas
            .metas
            .iter()
            .find(|m| m.ulid == *id)
            .unwrap_or_else(|| panic!("block {id} missing from the bucket"));
        let t = m.thanos.as_ref().expect("thanos section");
        assert_eq!(&t.labels, labels);
        assert_eq!(t.source, "sidecar");
        assert_eq!(t.downsample.resolution, 0);
        let dir = tsdb.join(id.to_string());
        for f in &t.files {
            if f.rel_path == "meta.json" {
                continue;
            }
            let local = std::fs::metadata(dir.join(&f.rel_path)).unwrap().len();
            assert_eq!(f.size_bytes, local, "{id}/{}", f.rel_path);
        }
        assert!(t.files.iter().any(|f| f.rel_path == "index"));
        assert!(t.files.iter().any(|f| f.rel_path == "chunks/000001"));
    }
}

/// `promtool tsdb dump` of one local block and of its copy downloaded from the
/// bucket must be equal (and not empty).
pub async fn check_dumps_equal(store: &dyn ObjectStore, tsdb: &Path, id: Ulid) {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    harness::copy_dir(&tsdb.join(id.to_string()), &local.join(id.to_string())).unwrap();
    let remote = tmp.path().join("remote");
    bucket::download_block(store, id, &remote.join(id.to_string()))
        .await
        .unwrap();
    let a = harness::promtool_dump(&local, &[]).unwrap();
    let b = harness::promtool_dump(&remote, &[]).unwrap();
    assert!(!a.is_empty(), "empty dump of {id}");
    assert_eq!(a, b, "dumps of {id} differ");
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn tsdb_dir(root: &Path) -> PathBuf {
    root.join("data")
}
