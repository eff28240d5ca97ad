//! Shared test setup: a real S3 server (SeaweedFS) and blocks in it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bucket::object_store::ObjectStore;
use bucket::{ObjstoreConfig, RequestStats};
use harness::S3Server;
use model::Labels;
use storeapi::conformance::dataset;
use tsdb::block::BlockWriter;
use tsdb::meta::{BlockMeta, ThanosMeta};

pub struct Bucket {
    pub s3: S3Server,
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<RequestStats>,
}

impl Bucket {
    pub fn start() -> Bucket {
        let s3 = S3Server::start("store-test").expect("start SeaweedFS");
        let (store, stats) = ObjstoreConfig::parse(&s3.objstore_yaml())
            .unwrap()
            .build_with_stats()
            .unwrap();
        Bucket { s3, store, stats }
    }

    /// Another client of the same bucket with its own request counts (a new
    /// instance).
    pub fn client(&self) -> (Arc<dyn ObjectStore>, Arc<RequestStats>) {
        ObjstoreConfig::parse(&self.s3.objstore_yaml())
            .unwrap()
            .build_with_stats()
            .unwrap()
    }
}

pub fn labels(m: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

pub fn ext_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes a block of `series` (any order) with `thanos.labels = ext` and
/// `resolution`, keeping samples with `from <= t < to`.
pub fn write_block(
    dir: &Path,
    series: &[(Labels, Vec<(i64, f64)>)],
    from: i64,
    to: i64,
    ext: &BTreeMap<String, String>,
) -> BlockMeta {
    let mut sorted: Vec<&(Labels, Vec<(i64, f64)>)> = series.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = BlockWriter::create(dir).unwrap();
    for (l, s) in sorted {
        let s: Vec<(i64, f64)> = s
            .iter()
            .copied()
            .filter(|(t, _)| *t >= from && *t < to)
            .collect();
        w.add_series(l, s).unwrap();
    }
    w.finish(Some(ThanosMeta::new("test", ext.clone())))
        .unwrap()
}

/// Uploads the block directories under `dir` whose ULIDs are in `metas`.
pub async fn upload(store: &dyn ObjectStore, dir: &Path, metas: &[BlockMeta]) {
    for m in metas {
        bucket::upload_block(store, &dir.join(m.ulid.to_string()), None)
            .await
            .unwrap();
    }
}

/// The conformance dataset as blocks: the first hour, the second hour, and a
/// copy of the first hour (an overlapping block of the same stream).
pub fn dataset_blocks(dir: &Path, ext: &BTreeMap<String, String>) -> Vec<BlockMeta> {
    use storeapi::conformance::T0;
    let d = dataset();
    let hour = 3_600_000;
    vec![
        write_block(dir, &d, i64::MIN, T0 + hour, ext),
        write_block(dir, &d, T0 + hour, i64::MAX, ext),
        write_block(dir, &d, i64::MIN, T0 + hour, ext),
    ]
}
