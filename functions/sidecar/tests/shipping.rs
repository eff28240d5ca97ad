//! Shipping against the real parts: Prometheus 2.42 cutting blocks and SeaweedFS.

mod common;

use std::time::Duration;

use common::*;
use harness::S3Server;
use tsdb::block::BlockWriter;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Backfilled blocks plus blocks Prometheus cuts from its head (1m block
/// duration): every block arrives complete, exactly once, with the thanos
/// section, and the bucket's copy dumps the same samples as the local block.
#[test]
fn ships_every_block_once_and_dumps_match() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let data = tsdb_dir(root.path());
    backfill(&data, 0, 5); // 3 blocks: 2h, 2h, 1h
    let s3 = S3Server::start("ship").unwrap();
    // Prometheus scrapes itself; its port is chosen by the harness, so scrape a
    // fixed target list that includes it after start via 127.0.0.1:<port>.
    let port = harness::free_port();
    let cfg = prom_config(
        &[("cluster", "test"), ("replica", "0")],
        Some(&format!("127.0.0.1:{port}")),
    );
    let prom = start_prometheus(
        &cfg,
        &data,
        &[
            "--storage.tsdb.min-block-duration=1m",
            "--storage.tsdb.max-block-duration=1m",
        ],
    );
    let backfilled = local_blocks(&data);
    assert_eq!(backfilled.len(), 3, "{backfilled:?}");
    // Prometheus scrapes its own /metrics: point the scrape job at the real port.
    let cfg = prom_config(
        &[("cluster", "test"), ("replica", "0")],
        Some(&format!("127.0.0.1:{}", prom.port)),
    );
    std::fs::write(data.join("../prometheus.yml"), cfg).unwrap();
    std::process::Command::new("curl")
        .args(["-s", "-XPOST"])
        .arg(format!("{}/-/reload", prom.url()))
        .status()
        .unwrap();

    let side = Sidecar::start(&data, &prom.url(), Some(s3.objstore_yaml()));
    assert_eq!(side.get("/-/healthy"), "OK\n");
    wait_until("backfilled blocks shipped", Duration::from_secs(60), || {
        let up = state_uploaded(&data);
        backfilled.iter().all(|b| up.contains(b))
    });
    assert_eq!(side.get("/-/ready"), "OK\n");
    // A block cut by Prometheus itself (about 100 s after start with 1m blocks).
    wait_until(
        "a block cut by Prometheus shipped",
        Duration::from_secs(200),
        || {
            state_uploaded(&data)
                .iter()
                .any(|b| !backfilled.contains(b))
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    let uploaded = state_uploaded(&data);
    let mut dedup = uploaded.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        uploaded.len(),
        "state lists a block twice: {uploaded:?}"
    );
    let store = bucket_of(&s3);
    let local = local_blocks(&data);
    // Every local block with samples is shipped (Prometheus may have just cut
    // another one: ship that too before comparing).
    wait_until("every local block shipped", Duration::from_secs(30), || {
        let up = state_uploaded(&data);
        local_blocks(&data).iter().all(|b| up.contains(b))
    });
    let uploaded = state_uploaded(&data);
    let ext = labels(&[("cluster", "test"), ("replica", "0")]);
    rt.block_on(async {
        check_bucket(&*store, &data, &local, &ext).await;
        let in_bucket = bucket::list_blocks(&*store).await.unwrap();
        let mut want = uploaded.clone();
        want.sort();
        assert_eq!(
            in_bucket, want,
            "the bucket holds exactly the shipped blocks"
        );
        for id in &local {
            check_dumps_equal(&*store, &data, *id).await;
        }
    });
    assert_eq!(
        side.metric("thanos_shipper_uploads_total") as usize,
        uploaded.len()
    );
    assert_eq!(side.metric("thanos_shipper_upload_failures_total"), 0.0);
    assert!(side.metric("thanos_shipper_uploaded_bytes_total") > 0.0);
    assert!(side.metric("thanos_shipper_last_successful_upload_time") > 1.6e9);
    assert_eq!(side.metric("thanos_sidecar_prometheus_up"), 1.0);
    // Never the head, WAL or temporary directories; local data untouched.
    assert!(data.join("wal").is_dir());
    for id in &local {
        assert!(data.join(id.to_string()).join("index").is_file());
    }
    side.stop().unwrap();
}

/// Writes a small block of `series` series into `dir` directly (as if Prometheus
/// had cut it).
fn write_block(dir: &std::path::Path, start_ms: i64, name: &str) -> ulid::Ulid {
    let mut w = BlockWriter::create(dir).unwrap();
    let l = model::Labels::from_pairs([("__name__", name), ("job", "x")]);
    w.add_series(&l, (0..200).map(|i| (start_ms + i * 15_000, i as f64)))
        .unwrap();
    w.finish(None).unwrap().ulid
}

/// The S3 server goes away in the middle of shipping and comes back: every block
/// arrives, once, and the failure counter stays 0 (retries, not failures).
#[test]
fn s3_outage_during_shipping() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let data = tsdb_dir(root.path());
    backfill(&data, 0, 4);
    let mut s3 = S3Server::start("outage").unwrap();
    let prom = start_prometheus(&prom_config(&[("cluster", "outage")], None), &data, &[]);
    let first = local_blocks(&data);
    assert_eq!(first.len(), 2);
    let side = Sidecar::start(&data, &prom.url(), Some(s3.objstore_yaml()));
    wait_until("first blocks shipped", Duration::from_secs(60), || {
        state_uploaded(&data).len() == 2
    });

    s3.stop();
    let c = write_block(&data, (BASE_S + 4 * 3600) * 1000, "outage_c");
    let d = write_block(&data, (BASE_S + 6 * 3600) * 1000, "outage_d");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        state_uploaded(&data).len(),
        2,
        "nothing can ship while S3 is down"
    );
    let s3 = s3.restart().unwrap();
    wait_until(
        "blocks shipped after the outage",
        Duration::from_secs(120),
        || {
            let up = state_uploaded(&data);
            up.contains(&c) && up.contains(&d)
        },
    );
    let store = bucket_of(&s3);
    let all = local_blocks(&data);
    assert_eq!(all.len(), 4);
    rt.block_on(async {
        check_bucket(&*store, &data, &all, &labels(&[("cluster", "outage")])).await;
        assert_eq!(bucket::list_blocks(&*store).await.unwrap(), all);
        check_dumps_equal(&*store, &data, c).await;
    });
    assert_eq!(side.metric("thanos_shipper_uploads_total"), 4.0);
    assert_eq!(side.metric("thanos_shipper_upload_failures_total"), 0.0);
    assert_eq!(state_uploaded(&data).len(), 4);
    side.stop().unwrap();
}

/// A block with an unreadable index is not uploaded, is counted, and the others
/// still ship; Prometheus without external labels: the sidecar refuses to ship.
#[test]
fn bad_blocks_skipped_and_no_external_labels_refused() {
    let rt = rt();
    let root = tempfile::tempdir().unwrap();
    let data = tsdb_dir(root.path());
    backfill(&data, 0, 4);
    let blocks = local_blocks(&data);
    // Corrupt the second block's index (keep its size).
    let idx = data.join(blocks[1].to_string()).join("index");
    let mut b = std::fs::read(&idx).unwrap();
    let n = b.len();
    for x in &mut b[n / 3..n - 8] {
        *x = 0xAB;
    }
    std::fs::write(&idx, b).unwrap();
    let s3 = S3Server::start("bad").unwrap();

    // No external labels: run_until fails with a clear error, ships nothing.
    let bare = start_prometheus(&prom_config(&[], None), &root.path().join("bare"), &[]);
    let mut cfg = sidecar::Config::new(&data, bare.url());
    cfg.objstore = Some(sidecar::ObjstoreSource::Inline(s3.objstore_yaml()));
    cfg.http_address = format!("127.0.0.1:{}", harness::free_port());
    cfg.grpc_address = format!("127.0.0.1:{}", harness::free_port());
    let err = rt
        .block_on(sidecar::run_until(cfg, std::future::pending()))
        .unwrap_err();
    assert!(err.to_string().contains("no external labels"), "{err}");
    drop(bare);

    // Blocks written by our own writer sit next to Prometheus's: corrupt one is
    // skipped, the others ship.
    let prom = start_prometheus(
        &prom_config(&[("cluster", "bad")], None),
        &root.path().join("p2"),
        &[],
    );
    let side = Sidecar::start(&data, &prom.url(), Some(s3.objstore_yaml()));
    wait_until("good block shipped", Duration::from_secs(60), || {
        state_uploaded(&data) == vec![blocks[0]]
    });
    wait_until("bad block counted", Duration::from_secs(20), || {
        side.metric("thanos_shipper_corrupted_blocks_total") == 1.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state_uploaded(&data), vec![blocks[0]]);
    assert_eq!(side.metric("thanos_shipper_corrupted_blocks_total"), 1.0);
    rt.block_on(async {
        let store = bucket_of(&s3);
        assert_eq!(bucket::list_blocks(&*store).await.unwrap(), vec![blocks[0]]);
    });
    side.stop().unwrap();
}
