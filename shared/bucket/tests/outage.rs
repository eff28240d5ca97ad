//! A real SeaweedFS goes away and comes back: requests fail with transient errors
//! meanwhile, and an operation wrapped in `retry::with_backoff` succeeds once the
//! server is back.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bucket::block;
use bucket::config::ObjstoreConfig;
use bucket::object_store::{BackoffConfig, RetryConfig};
use bucket::retry::{with_backoff, RetryPolicy};
use bucket::ObjectRange;
use tsdb::meta::{BlockMeta, ThanosMeta};
use tsdb::RangeRead;
use ulid::Ulid;

fn make_block(parent: &FsPath, size: usize) -> (Ulid, PathBuf) {
    let id = Ulid::new();
    let dir = parent.join(id.to_string());
    std::fs::create_dir_all(dir.join("chunks")).unwrap();
    let mut meta = BlockMeta::new(id, 0, 7_200_000);
    meta.thanos = Some(ThanosMeta::new(
        "sidecar",
        [("replica".to_string(), "a".to_string())].into(),
    ));
    meta.write_dir(&dir).unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(dir.join("chunks/000001"), &data).unwrap();
    std::fs::write(dir.join("index"), &data[..size / 2]).unwrap();
    (id, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_operations_survive_an_s3_outage() {
    let mut server = tokio::task::spawn_blocking(|| harness::S3Server::start("outage"))
        .await
        .unwrap()
        .expect("starting SeaweedFS (run tests/scripts/install-deps.sh)");
    let mut cfg = ObjstoreConfig::parse(&server.objstore_yaml()).unwrap();
    // Request-level retries give up fast here, so the outage is bridged by the
    // operation-level retry under test.
    cfg.retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(2),
    };
    let store = cfg.build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (id1, dir1) = make_block(tmp.path(), 6 << 20);
    block::upload_block(&*store, &dir1, None).await.unwrap();

    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();

    // While it is down, errors are transient and name bucket and key.
    let e = block::fetch_meta(&*store, id1).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("s3://outage/{id1}/meta.json")),
        "{e}"
    );
    let r = ObjectRange::new(store.clone(), block::index_path(id1));
    assert!(r.read(0..10).await.is_err());

    // Upload a second block "for as long as it takes" while the server is down.
    let (id2, dir2) = make_block(tmp.path(), 7 << 20);
    let attempts = Arc::new(AtomicU32::new(0));
    let task = {
        let store = store.clone();
        let attempts = attempts.clone();
        let dir2 = dir2.clone();
        tokio::spawn(async move {
            let policy = RetryPolicy::forever()
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(1));
            with_backoff(&policy, || {
                attempts.fetch_add(1, Ordering::SeqCst);
                block::upload_block(&*store, &dir2, None)
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished(), "upload cannot finish while S3 is down");
    assert!(attempts.load(Ordering::SeqCst) >= 2);

    let server = tokio::task::spawn_blocking(move || server.restart())
        .await
        .unwrap()
        .expect("restarting SeaweedFS");
    let up = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("upload finished after the restart")
        .unwrap()
        .unwrap();
    assert_eq!(up.ulid, id2);

    // Both blocks are complete; data survived the restart.
    let metas = block::list_block_metas(&*store).await.unwrap();
    let mut ids: Vec<Ulid> = metas.metas.iter().map(|m| m.ulid).collect();
    ids.sort();
    let mut want = vec![id1, id2];
    want.sort();
    assert_eq!(ids, want);
    assert!(metas.partial.is_empty());
    let dest = tmp.path().join("dl").join(id2.to_string());
    block::download_block(&*store, id2, &dest).await.unwrap();
    assert!(
        std::fs::read(dir2.join("chunks/000001")).unwrap()
            == std::fs::read(dest.join("chunks/000001")).unwrap()
    );
    let r = ObjectRange::new(store.clone(), block::index_path(id1));
    assert_eq!(r.read(0..10).await.unwrap().len(), 10);

    // Permanent errors are not retried at all.
    let calls = AtomicU32::new(0);
    let missing = Ulid::new();
    let x = tmp.path().join("x");
    let e = with_backoff(&RetryPolicy::forever(), || {
        calls.fetch_add(1, Ordering::SeqCst);
        block::download_block(&*store, missing, &x)
    })
    .await
    .unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(server);
}
