//! `--shipper.upload-compacted`: compacted blocks (level > 1) are shipped only when
//! their data is not in the bucket already, so shipping never makes overlapping
//! copies of shipped data; without the flag they are never shipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bucket::ObjstoreConfig;
use model::Labels;
use sidecar::{Metrics, Shipper, ShipperOptions};
use tsdb::block::BlockWriter;
use tsdb::meta::BlockMeta;
use ulid::Ulid;

const H: i64 = 3_600_000;

/// A block with one series covering [from, to) every 15s, at compaction `level`
/// with `sources`.
fn block(dir: &Path, from: i64, to: i64, level: u32, sources: Option<Vec<Ulid>>) -> BlockMeta {
    let mut w = BlockWriter::create(dir).unwrap();
    let l = Labels::from_pairs([("__name__", "x"), ("job", "a")]);
    w.add_series(&l, (from..to).step_by(15_000).map(|t| (t, t as f64)))
        .unwrap();
    let mut m = w.finish(None).unwrap();
    m.compaction.level = level;
    if let Some(s) = sources {
        m.compaction.sources = s;
    }
    m.write_dir(&dir.join(m.ulid.to_string())).unwrap();
    m
}

fn shipper(tsdb: &Path, bucket_dir: &Path, upload_compacted: bool) -> Shipper {
    let store = ObjstoreConfig::filesystem(bucket_dir).build().unwrap();
    let opts = ShipperOptions {
        upload_compacted,
        ..ShipperOptions::default()
    };
    Shipper::new(tsdb, store, opts, Arc::new(Metrics::default()))
}

#[tokio::test]
async fn compacted_blocks_ship_only_when_their_data_is_not_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (tsdb, bkt) = (tmp.path().join("tsdb"), tmp.path().join("bucket"));
    std::fs::create_dir_all(&tsdb).unwrap();
    std::fs::create_dir_all(&bkt).unwrap();
    let labels: BTreeMap<String, String> = [("replica".to_string(), "a".to_string())].into();

    // Three level-1 blocks ship.
    let t0 = 100 * H;
    let l1: Vec<BlockMeta> = (0..3)
        .map(|i| block(&tsdb, t0 + i * 2 * H, t0 + (i + 1) * 2 * H, 1, None))
        .collect();
    let s = shipper(&tsdb, &bkt, true);
    let r = s.sync(&labels).await.unwrap();
    assert_eq!(r.uploaded.len(), 3, "{r:?}");

    // Prometheus compacts them into one level-2 block: its data is shipped already.
    let sources: Vec<Ulid> = l1.iter().map(|m| m.ulid).collect();
    let compacted = block(&tsdb, t0, t0 + 6 * H, 2, Some(sources));
    // An old compacted block from before the sidecar existed: not in the bucket.
    let old = block(
        &tsdb,
        t0 - 10 * H,
        t0 - 4 * H,
        2,
        Some(vec![Ulid::new(), Ulid::new()]),
    );
    // A compacted block that overlaps shipped data without naming it as a source.
    let overlapping = block(&tsdb, t0 + 5 * H, t0 + 7 * H, 2, Some(vec![Ulid::new()]));

    // Without the flag no compacted block ships.
    let off = shipper(&tsdb, &bkt, false).sync(&labels).await.unwrap();
    assert!(off.uploaded.is_empty(), "{off:?}");
    for id in [compacted.ulid, old.ulid, overlapping.ulid] {
        assert!(off.skipped_compacted.contains(&id), "{off:?}");
    }

    let r = s.sync(&labels).await.unwrap();
    assert_eq!(r.uploaded, vec![old.ulid], "{r:?}");
    assert!(r.skipped_compacted.contains(&compacted.ulid), "{r:?}");
    assert!(r.skipped_compacted.contains(&overlapping.ulid), "{r:?}");

    let store = ObjstoreConfig::filesystem(&bkt).build().unwrap();
    let mut in_bucket = bucket::list_blocks(store.as_ref()).await.unwrap();
    in_bucket.sort();
    let mut want: Vec<Ulid> = l1.iter().map(|m| m.ulid).chain([old.ulid]).collect();
    want.sort();
    assert_eq!(in_bucket, want);
    let m = bucket::fetch_meta(store.as_ref(), old.ulid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.compaction.level, 2);
    assert_eq!(m.thanos.unwrap().labels, labels);
}
