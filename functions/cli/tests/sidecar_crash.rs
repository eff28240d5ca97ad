//! Crash test of `aether sidecar` (the real binary, real Prometheus, real S3):
//! `kill -9` at several points of an upload (after the chunks, between index and
//! meta.json, after meta.json before the state file), then restart: no block
//! missing, none uploaded twice, no partial block left.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bucket::object_store::path::Path as ObjPath;
use bucket::object_store::{ObjectStore, ObjectStoreExt};
use harness::{free_port, Proc, Prometheus, S3Server};
use ulid::Ulid;

const BASE_S: i64 = 1_699_992_000;

fn backfill(data: &Path, hours: i64) {
    std::fs::create_dir_all(data).unwrap();
    let mut om = String::from("# TYPE crash_metric gauge\n");
    for job in ["a", "b", "c"] {
        for i in 0..hours * 60 {
            om.push_str(&format!(
                "crash_metric{{job=\"{job}\"}} {} {}\n",
                i * 3,
                BASE_S + i * 60
            ));
        }
    }
    om.push_str("# EOF\n");
    let f = data.join("../in.om");
    std::fs::write(&f, om).unwrap();
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f.to_str().unwrap(),
        data.to_str().unwrap(),
    ])
    .unwrap();
}

fn local_blocks(dir: &Path) -> Vec<Ulid> {
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

fn tsdb_min_time(block: &Path) -> i64 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(block.join("meta.json")).unwrap()).unwrap();
    v["minTime"].as_i64().unwrap()
}

fn uploaded(dir: &Path) -> Vec<Ulid> {
    sidecar::read_state(dir).unwrap().uploaded
}

fn spawn_sidecar(
    data: &Path,
    prom: &str,
    objstore: &Path,
    pause: Option<&str>,
    log: &Path,
) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args(["sidecar", "--shipper.sync-interval=1s"])
        .arg(format!("--tsdb.path={}", data.display()))
        .arg(format!("--prometheus.url={prom}"))
        .arg(format!("--objstore.config-file={}", objstore.display()))
        .arg(format!("--grpc-address=127.0.0.1:{}", free_port()))
        .arg(format!("--http-address=127.0.0.1:{}", free_port()));
    if let Some(p) = pause {
        cmd.env("AETHER_SIDECAR_TEST_PAUSE", p);
    }
    Proc::spawn("aether sidecar", &mut cmd, log.to_path_buf()).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// (e_tag, last_modified) of a block's index and meta.json.
async fn stamps(store: &dyn ObjectStore, id: Ulid) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for f in ["index", "meta.json", "chunks/000001"] {
        let p = ObjPath::from(format!("{id}/{f}"));
        let h = store.head(&p).await.unwrap();
        out.push((h.e_tag, h.last_modified.to_rfc3339()));
    }
    out
}

#[test]
fn kill_9_during_uploads_then_restart_ships_each_block_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    backfill(&data, 8);
    let blocks = local_blocks(&data);
    assert_eq!(blocks.len(), 4, "{blocks:?}");
    let s3 = S3Server::start("crash").unwrap();
    let objstore = root.path().join("objstore.yml");
    std::fs::write(&objstore, s3.objstore_yaml()).unwrap();
    let prom = Prometheus::start(
        "global:\n  external_labels:\n    cluster: crash\nscrape_configs: []\n",
        &data,
        &[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ],
    )
    .unwrap();
    let store = bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap();
    // The shipper goes oldest first.
    let first = *blocks
        .iter()
        .min_by_key(|b| tsdb_min_time(&data.join(b.to_string())))
        .unwrap();

    // 1. kill -9 after the chunks went up, before the index.
    let log = root.path().join("run1.log");
    let mut p = spawn_sidecar(&data, &prom.url(), &objstore, Some("after-chunks"), &log);
    wait_for("pause after chunks", Duration::from_secs(60), || {
        p.log().contains("AETHER_TEST_PAUSED point=after-chunks")
    });
    p.kill9();
    rt.block_on(async {
        let m = bucket::list_block_metas(&*store).await.unwrap();
        assert!(m.metas.is_empty(), "nothing complete yet");
        assert_eq!(
            m.partial,
            vec![first],
            "a partial upload, never listed as a block"
        );
    });
    assert!(uploaded(&data).is_empty());

    // 2. kill -9 between index and meta.json.
    let log = root.path().join("run2.log");
    let mut p = spawn_sidecar(&data, &prom.url(), &objstore, Some("before-meta"), &log);
    wait_for("pause before meta.json", Duration::from_secs(60), || {
        p.log().contains("AETHER_TEST_PAUSED point=before-meta")
    });
    p.kill9();
    rt.block_on(async {
        let m = bucket::list_block_metas(&*store).await.unwrap();
        assert!(m.metas.is_empty());
        assert_eq!(m.partial, vec![first]);
        let idx = store
            .head(&ObjPath::from(format!("{first}/index")))
            .await
            .unwrap();
        assert!(idx.size > 0, "index uploaded, meta.json not");
    });
    assert!(uploaded(&data).is_empty());

    // 3. kill -9 after meta.json, before the state file records it.
    let log = root.path().join("run3.log");
    let mut p = spawn_sidecar(&data, &prom.url(), &objstore, Some("after-meta"), &log);
    wait_for("pause after meta.json", Duration::from_secs(60), || {
        p.log().contains("AETHER_TEST_PAUSED point=after-meta")
    });
    p.kill9();
    let before = rt.block_on(async {
        let m = bucket::list_block_metas(&*store).await.unwrap();
        assert_eq!(m.metas.len(), 1);
        assert_eq!(m.metas[0].ulid, first);
        assert!(m.partial.is_empty());
        stamps(&*store, first).await
    });
    assert!(
        uploaded(&data).is_empty(),
        "the state file was not updated yet"
    );
    assert!(
        data.join("thanos/upload").join(first.to_string()).exists(),
        "hard links left by the killed process"
    );

    // 4. Restart without the hook: everything ships, the first block is recorded
    // without being uploaded again.
    let log = root.path().join("run4.log");
    let mut p = spawn_sidecar(&data, &prom.url(), &objstore, None, &log);
    wait_for("all blocks shipped", Duration::from_secs(60), || {
        uploaded(&data).len() == blocks.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    p.stop(Duration::from_secs(10));
    let up = uploaded(&data);
    let mut sorted = up.clone();
    sorted.sort();
    assert_eq!(sorted, blocks, "each block recorded exactly once");
    assert!(
        p.log().contains("complete in the bucket already"),
        "{}",
        p.log()
    );
    assert!(
        !data.join("thanos/upload").join(first.to_string()).exists(),
        "stale links cleaned"
    );
    rt.block_on(async {
        let m = bucket::list_block_metas(&*store).await.unwrap();
        assert!(m.partial.is_empty(), "no partial block: {:?}", m.partial);
        let ids: Vec<Ulid> = m.metas.iter().map(|m| m.ulid).collect();
        assert_eq!(ids, blocks);
        for meta in &m.metas {
            let t = meta.thanos.as_ref().unwrap();
            assert_eq!(t.labels.get("cluster").map(String::as_str), Some("crash"));
            assert_eq!(t.source, "sidecar");
        }
        assert_eq!(
            stamps(&*store, first).await,
            before,
            "the block completed before the crash was not uploaded again"
        );
    });

    // 5. Another restart with nothing to do uploads nothing.
    let stamp_all = rt.block_on(async {
        let mut v = Vec::new();
        for b in &blocks {
            v.push(stamps(&*store, *b).await);
        }
        v
    });
    let log = root.path().join("run5.log");
    let mut p = spawn_sidecar(&data, &prom.url(), &objstore, None, &log);
    std::thread::sleep(Duration::from_secs(4));
    p.stop(Duration::from_secs(10));
    assert!(!p.log().contains("uploading block"), "{}", p.log());
    rt.block_on(async {
        for (b, s) in blocks.iter().zip(&stamp_all) {
            assert_eq!(&stamps(&*store, *b).await, s);
        }
    });
}
