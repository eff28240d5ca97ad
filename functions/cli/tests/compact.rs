//! `aether compact` end to end: demo blocks in a real S3 server (SeaweedFS), one
//! pass of the binary, exit 0, blocks compacted, every sample kept (checked with
//! promtool on the downloaded result).

use std::process::Command;

use tsdb::meta::ThanosMeta;

const H: i64 = 3_600_000;

#[test]
fn one_pass_compacts_and_exits_zero() {
    let s3 = harness::S3Server::start("compact-cli").expect("start SeaweedFS");
    let tmp = tempfile::tempdir().unwrap();
    let spec = tools::demo::DemoSpec {
        start: 0,
        end: 10 * H,
        interval: 60_000,
        instances: 1,
    };
    let blocks = tmp.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let metas = tools::demo::write_blocks(&spec, 2 * H, &blocks).unwrap();
    assert_eq!(metas.len(), 5);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap();
    rt.block_on(async {
        // weed mini answers before its -bucket exists: wait until a PUT works.
        use bucket::object_store::ObjectStoreExt;
        let probe = bucket::object_store::path::Path::from("ready-probe");
        let t0 = std::time::Instant::now();
        while let Err(e) = store
            .put(&probe, bucket::object_store::PutPayload::from_static(b"1"))
            .await
        {
            assert!(t0.elapsed().as_secs() < 30, "bucket never usable: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        store.delete(&probe).await.unwrap();
        for (k, m) in metas.iter().enumerate() {
            let mut m = m.clone();
            m.min_time = k as i64 * 2 * H;
            m.max_time = (k as i64 + 1) * 2 * H;
            m.thanos = Some(ThanosMeta::new(
                "sidecar",
                [("cluster".to_string(), "x".to_string())].into(),
            ));
            bucket::upload_block(&*store, &blocks.join(m.ulid.to_string()), Some(&m))
                .await
                .unwrap();
        }
    });
    let cfg = tmp.path().join("objstore.yml");
    std::fs::write(&cfg, s3.objstore_yaml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["compact", "--consistency-delay=0s", "--delete-delay=0s"])
        .arg(format!("--data-dir={}", tmp.path().join("data").display()))
        .arg(format!("--objstore.config-file={}", cfg.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = rt
        .block_on(bucket::list_block_metas(&*store))
        .unwrap()
        .metas;
    assert_eq!(after.len(), 2, "{after:#?}");
    let big = after.iter().find(|m| m.compaction.level == 2).unwrap();
    assert_eq!((big.min_time, big.max_time), (0, 8 * H));

    // promtool reads the compacted block and finds every sample of the first 8h.
    let data = tmp.path().join("prom");
    rt.block_on(bucket::download_block(
        &*store,
        big.ulid,
        &data.join(big.ulid.to_string()),
    ))
    .unwrap();
    let dump = harness::promtool_dump(&data, &[]).unwrap();
    let want: usize = tools::demo::series(&spec)
        .iter()
        .map(|s| s.samples(&spec, 0, 8 * H).len())
        .sum();
    assert_eq!(dump.lines().count(), want);
}

#[test]
fn deduplication_func_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("objstore.yml");
    std::fs::write(
        &cfg,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            tmp.path().join("bucket").display()
        ),
    )
    .unwrap();
    let run = |func: &str| {
        Command::new(env!("CARGO_BIN_EXE_aether"))
            .args(["compact", "--consistency-delay=0s"])
            .arg(format!("--deduplication.func={func}"))
            .arg(format!("--data-dir={}", tmp.path().join("data").display()))
            .arg(format!("--objstore.config-file={}", cfg.display()))
            .output()
            .unwrap()
    };
    let out = run("chain-of-fools");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--deduplication.func") && err.contains("penalty"),
        "{err}"
    );
    for ok in ["", "penalty"] {
        let out = run(ok);
        assert!(
            out.status.success(),
            "{ok:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
