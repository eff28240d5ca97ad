//! The store-read handler over blocks in a real S3 server (SeaweedFS): StoreAPI
//! conformance (in-process and over gRPC), the shared index cache (GET counts of
//! cold instances), corrupt blocks, limits, downsampled aggregates.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bucket::bucket_index::{self, SyncOutcome, BUCKET_INDEX_PATH};
use bucket::header_cache::header_path;
use bucket::object_store::path::Path as ObjPath;
use bucket::object_store::ObjectStoreExt;
use common::*;
use model::{Labels, Matcher};
use store::{BucketStore, StoreConfig};
use storeapi::conformance::{Suite, T0, T_END};
use storeapi::convert::{labels_from_pb, matchers_to_pb};
use storeapi::grpc::{ClientOptions, GrpcStore};
use storeapi::{collect_series, pb, Error, StoreApi};
use tsdb::index::IndexHeader;

fn ext() -> Labels {
    Labels::from_pairs([("region", "eu")])
}

fn req(ms: &[Matcher], mint: i64, maxt: i64) -> pb::SeriesRequest {
    pb::SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: matchers_to_pb(ms),
        ..Default::default()
    }
}

fn all() -> Vec<Matcher> {
    vec![Matcher::new(model::MatchType::Regex, "__name__", ".+").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_process_and_over_grpc() {
    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    let metas = dataset_blocks(tmp.path(), &ext_map(&[("region", "eu")]));
    upload(&*b.store, tmp.path(), &metas).await;

    let store = BucketStore::new(b.store.clone(), StoreConfig::default());
    Suite::new(ext()).run(&store).await.unwrap();

    // Overlapping blocks of one stream: one series, no duplicate chunks.
    let (series, warnings) = collect_series(
        store
            .series(req(&[Matcher::equal("__name__", "up")], T0, T_END))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(series.len(), 3);
    for s in &series {
        let mut seen = std::collections::HashSet::new();
        for c in &s.chunks {
            assert!(seen.insert((c.min_time, c.raw.as_ref().unwrap().data.clone())));
        }
    }

    // The same handler over gRPC.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(storeapi::grpc::serve(
        Arc::new(store.clone()) as Arc<dyn StoreApi>,
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let client = GrpcStore::connect(&addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    Suite::new(ext()).run(&client).await.unwrap();
    let info = client.info().await.unwrap();
    assert_eq!(info.component_type, "store");
    assert_eq!(info.store.unwrap().tsdb_infos.len(), 3);
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_instances_use_the_shared_index_cache() {
    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    let metas = dataset_blocks(tmp.path(), &ext_map(&[("region", "eu")]));
    upload(&*b.store, tmp.path(), &metas).await;
    let q = req(&[Matcher::equal("__name__", "up")], T0, T_END);

    // Instance 1: nothing cached anywhere. Lists the bucket, builds headers from
    // the indexes, writes both back.
    let (s1, st1) = b.client();
    let first = BucketStore::new(s1.clone(), StoreConfig::default());
    let (want, _) = collect_series(first.series(q.clone()).await.unwrap())
        .await
        .unwrap();
    let cold = st1.snapshot();
    assert!(matches!(
        first.last_sync(),
        Some(SyncOutcome::ListedMissing)
    ));
    assert_eq!(
        first
            .metrics()
            .headers_built
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert!(cold.list >= 1);
    assert!(b
        .store
        .head(&ObjPath::from(BUCKET_INDEX_PATH))
        .await
        .is_ok());
    for m in &metas {
        let bytes = b
            .store
            .get(&header_path(m.ulid))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let h = IndexHeader::decode(&bytes).unwrap();
        let built = bucket::header_cache::build_header(b.store.clone(), m)
            .await
            .unwrap();
        assert_eq!(
            h, built,
            "cached header equals the one built from the index"
        );
    }

    // Instance 2: fresh process, empty data dir: one GET for the bucket index, one
    // per block for its header, then only postings, series and chunks.
    let (s2, st2) = b.client();
    let dir2 = tempfile::tempdir().unwrap();
    let second = BucketStore::new(
        s2,
        StoreConfig {
            local_header_dir: Some(dir2.path().join("index-headers")),
            ..Default::default()
        },
    );
    st2.start_log();
    let (got, _) = collect_series(second.series(q.clone()).await.unwrap())
        .await
        .unwrap();
    let log = st2.take_log();
    let warm = st2.snapshot();
    assert_eq!(got, want);
    assert!(matches!(
        second.last_sync(),
        Some(SyncOutcome::Loaded { .. })
    ));
    assert_eq!(warm.list, 0, "no listing: {log:?}");
    assert_eq!(warm.head, 0, "{log:?}");
    assert_eq!(warm.put, 0, "nothing to write back: {log:?}");
    let m2 = second.metrics();
    assert_eq!(
        m2.headers_from_bucket
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(
        m2.headers_built.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // bucket index + per block: header, postings, series, chunks
    assert!(warm.gets() <= 1 + 3 * 4, "{} GETs: {log:?}", warm.gets());
    assert!(
        warm.gets() < cold.gets(),
        "warm {} vs cold {}",
        warm.gets(),
        cold.gets()
    );
    eprintln!(
        "cold instance: {} GETs, {} LISTs, {} PUTs; warm instance: {} GETs, 0 LISTs",
        cold.gets(),
        cold.list,
        cold.put,
        warm.gets()
    );

    // The same query again on instance 2: all from memory (LRU + headers).
    st2.reset();
    let (again, _) = collect_series(second.series(q.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(again, want);
    assert_eq!(st2.snapshot().gets(), 0);

    // Instance 3 with instance 2's scratch dir: headers from local disk.
    let (s3c, _) = b.client();
    let third = BucketStore::new(
        s3c,
        StoreConfig {
            local_header_dir: Some(dir2.path().join("index-headers")),
            ..Default::default()
        },
    );
    collect_series(third.series(q.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        third
            .metrics()
            .headers_from_local
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // Thanos-style listing still sees exactly the blocks; deleting a block deletes
    // its header.
    let listed = bucket::list_block_metas(&*b.store).await.unwrap();
    assert_eq!(listed.metas.len(), 3);
    assert!(listed.partial.is_empty() && listed.corrupted.is_empty());
    bucket::delete_block(&*b.store, metas[2].ulid)
        .await
        .unwrap();
    assert!(b.store.head(&header_path(metas[2].ulid)).await.is_err());

    // A stale bucket index is updated by listing (incrementally) and says so.
    let fresh = BucketStore::new(
        b.store.clone(),
        StoreConfig {
            bucket_index_max_age: Duration::ZERO,
            ..Default::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let idx = fresh.sync().await.unwrap();
    assert!(matches!(
        fresh.last_sync(),
        Some(SyncOutcome::ListedStale { .. })
    ));
    assert_eq!(idx.blocks.len(), 2);
    let (stored, _) = bucket_index::sync(&b.store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(stored.blocks.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_instances_build_the_same_header() {
    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    let metas = dataset_blocks(tmp.path(), &ext_map(&[("region", "eu")]));
    upload(&*b.store, tmp.path(), &metas).await;
    let q = req(&all(), T0, T_END);
    let stores: Vec<BucketStore> = (0..4)
        .map(|_| BucketStore::new(b.client().0, StoreConfig::default()))
        .collect();
    let answers = futures::future::join_all(stores.iter().map(|s| {
        let q = q.clone();
        async move { collect_series(s.series(q).await.unwrap()).await.unwrap() }
    }))
    .await;
    for a in &answers[1..] {
        assert_eq!(a, &answers[0]);
        assert!(a.1.is_empty());
    }
    for m in &metas {
        let bytes = b
            .store
            .get(&header_path(m.ulid))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        IndexHeader::decode(&bytes).unwrap();
    }
    let (idx, outcome) = bucket_index::sync(&b.store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(!outcome.listed());
    assert_eq!(idx.blocks.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blocks_are_warnings() {
    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    let metas = dataset_blocks(tmp.path(), &ext_map(&[("region", "eu")]));
    upload(&*b.store, tmp.path(), &metas[..2]).await;
    // Second hour: chunks overwritten with garbage of the same size.
    let seg = bucket::block::chunk_path(metas[1].ulid, 1);
    let size = b.store.head(&seg).await.unwrap().size;
    b.store
        .put(&seg, vec![0x5a; size as usize].into())
        .await
        .unwrap();
    let store = BucketStore::new(b.store.clone(), StoreConfig::default());
    let (series, warnings) = collect_series(store.series(req(&all(), T0, T_END)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&metas[1].ulid.to_string()),
        "{warnings:?}"
    );
    assert!(!series.is_empty(), "the healthy block is still served");

    // A block whose index is garbage: a warning too, for every API.
    let other = metas[2].clone();
    upload(&*b.store, tmp.path(), std::slice::from_ref(&other)).await;
    let idx = bucket::block::index_path(other.ulid);
    let size = b.store.head(&idx).await.unwrap().size;
    b.store
        .put(&idx, vec![7u8; size as usize].into())
        .await
        .unwrap();
    // (The bucket index written above predates this block: list again.)
    let store = BucketStore::new(
        b.store.clone(),
        StoreConfig {
            bucket_index_max_age: Duration::ZERO,
            ..Default::default()
        },
    );
    let (series, warnings) = collect_series(
        store
            .series(req(&[Matcher::equal("__name__", "up")], T0, T0 + 60_000))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&other.ulid.to_string()));
    assert_eq!(series.len(), 2);
    let names = store
        .label_names(pb::LabelNamesRequest {
            start: T0,
            end: T_END,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(names.names.contains(&"job".to_string()));
    assert!(names
        .warnings
        .iter()
        .any(|w| w.contains(&other.ulid.to_string())));
    // With the ABORT strategy the request fails instead.
    let res = match store
        .series(pb::SeriesRequest {
            partial_response_strategy: pb::PartialResponseStrategy::Abort as i32,
            ..req(&all(), T0, T_END)
        })
        .await
    {
        Ok(s) => collect_series(s).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(matches!(res, Err(Error::Corrupt(_))), "{res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_grpc_errors() {
    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    let metas = dataset_blocks(tmp.path(), &ext_map(&[("region", "eu")]));
    upload(&*b.store, tmp.path(), &metas[..2]).await;
    let store = BucketStore::new(
        b.store.clone(),
        StoreConfig {
            series_limit: 4,
            ..Default::default()
        },
    );
    let small = collect_series(
        store
            .series(req(&[Matcher::equal("__name__", "up")], T0, T0 + 60_000))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(small.unwrap().0.len(), 2);
    let big = match store.series(req(&all(), T0, T_END)).await {
        Ok(s) => collect_series(s).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let Err(Error::ResourceExhausted(msg)) = big else {
        panic!("want ResourceExhausted, got {big:?}")
    };
    assert!(msg.contains("series limit"), "{msg}");

    let store = BucketStore::new(
        b.store.clone(),
        StoreConfig {
            samples_limit: 1000,
            ..Default::default()
        },
    );
    let big = match store.series(req(&all(), T0, T_END)).await {
        Ok(s) => collect_series(s).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        matches!(&big, Err(Error::ResourceExhausted(m)) if m.contains("samples limit")),
        "{big:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_blocks_send_requested_aggregates() {
    use tsdb::block::BlockWriter;
    use tsdb::chunkenc::{XorChunk, ENCODING_AGGR};
    use tsdb::meta::ThanosMeta;

    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    // One series, one aggregate chunk: count, sum, min, max (counter absent).
    let xor = |vals: &[(i64, f64)]| {
        let mut x = XorChunk::new();
        for &(t, v) in vals {
            x.append(t, v);
        }
        x.bytes().to_vec()
    };
    let res = 300_000;
    let ts: Vec<i64> = (0..4).map(|i| T0 + i * res + res - 1).collect();
    let count = xor(&ts.iter().map(|&t| (t, 20.0)).collect::<Vec<_>>());
    let sum = xor(&ts.iter().map(|&t| (t, 40.0)).collect::<Vec<_>>());
    let min = xor(&ts.iter().map(|&t| (t, 1.0)).collect::<Vec<_>>());
    let max = xor(&ts.iter().map(|&t| (t, 3.0)).collect::<Vec<_>>());
    let mut data = Vec::new();
    for sub in [&count, &sum, &min, &max] {
        let mut n = sub.len();
        while n >= 0x80 {
            data.push((n as u8) | 0x80);
            n >>= 7;
        }
        data.push(n as u8);
        data.push(1);
        data.extend_from_slice(sub);
    }
    data.push(0);
    let mut w = BlockWriter::create(tmp.path()).unwrap();
    w.add_series_chunks(
        &Labels::from_pairs([("__name__", "up"), ("job", "x")]),
        [(ts[0], ts[3], ENCODING_AGGR, &data[..], 4)],
    )
    .unwrap();
    let mut t = ThanosMeta::new("compactor", ext_map(&[("region", "eu")]));
    t.downsample.resolution = res;
    let meta = w.finish(Some(t)).unwrap();
    upload(&*b.store, tmp.path(), std::slice::from_ref(&meta)).await;

    let store = BucketStore::new(b.store.clone(), StoreConfig::default());
    // Raw only (max_resolution_window 0): the 5m block is not read.
    let (raw, _) = collect_series(store.series(req(&all(), T0, T_END)).await.unwrap())
        .await
        .unwrap();
    assert!(raw.is_empty());
    let (got, warnings) = collect_series(
        store
            .series(pb::SeriesRequest {
                max_resolution_window: res,
                aggregates: vec![pb::Aggr::Count as i32, pb::Aggr::Sum as i32],
                ..req(&all(), T0, T_END)
            })
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(got.len(), 1);
    assert_eq!(
        labels_from_pb(&got[0].labels).to_string(),
        r#"{__name__="up", job="x", region="eu"}"#
    );
    let c = &got[0].chunks[0];
    assert_eq!(c.count.as_ref().unwrap().data, count);
    assert_eq!(c.sum.as_ref().unwrap().data, sum);
    assert!(c.min.is_none() && c.max.is_none() && c.counter.is_none() && c.raw.is_none());
    assert_eq!(c.count.as_ref().unwrap().r#type, 0, "XOR is 0 on the wire");
}

/// After a compaction the inputs stay in the bucket (marked for deletion, deleted
/// after a delay) next to the output: the store serves the output only, so no
/// sample is seen twice even when the output's chunks were re-encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_inputs_are_not_served_twice() {
    let b = Bucket::start();
    let tmp = tempfile::tempdir().unwrap();
    let e = ext_map(&[("region", "eu")]);
    let l = Labels::from_pairs([("__name__", "m")]);
    let hour = 3_600_000;
    let input: Vec<(i64, f64)> = (0..240).map(|i| (T0 + i * 30_000, i as f64)).collect();
    let a = write_block(
        tmp.path(),
        &[(l.clone(), input.clone())],
        i64::MIN,
        T0 + hour,
        &e,
    );
    let c = write_block(
        tmp.path(),
        &[(l.clone(), input.clone())],
        T0 + hour,
        i64::MAX,
        &e,
    );
    // The "compacted" block: same samples, values shifted so its chunks differ from
    // the inputs' (as a re-encoded vertical merge would), sources = both inputs.
    let shifted: Vec<(i64, f64)> = input.iter().map(|(t, v)| (*t, v + 0.5)).collect();
    let mut out = write_block(
        tmp.path(),
        &[(l.clone(), shifted.clone())],
        i64::MIN,
        i64::MAX,
        &e,
    );
    out.compaction.level = 2;
    out.compaction.sources = vec![a.ulid, c.ulid];
    out.write_dir(&tmp.path().join(out.ulid.to_string()))
        .unwrap();
    upload(&*b.store, tmp.path(), &[a.clone(), c.clone(), out.clone()]).await;
    bucket::mark_for_deletion(&*b.store, a.ulid, "compacted")
        .await
        .unwrap();

    let store = BucketStore::new(b.store.clone(), StoreConfig::default());
    let (series, warnings) = collect_series(store.series(req(&all(), T0, T_END)).await.unwrap())
        .await
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(series.len(), 1);
    let mut got = Vec::new();
    for c in &series[0].chunks {
        let raw = c.raw.as_ref().unwrap();
        for s in storeapi::chunk::iter_wire_chunk(raw).unwrap() {
            match s.unwrap() {
                (t, tsdb::chunkenc::SampleValue::Float(v)) => got.push((t, v)),
                other => panic!("unexpected sample {other:?}"),
            }
        }
    }
    assert_eq!(got, shifted, "only the compacted block is served");
}
