//! The compactor against a real S3 server (SeaweedFS): blocks written with the
//! TSDB writer, uploaded with a thanos section, compacted / downsampled / deleted
//! by real passes, read back through range reads.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bucket::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use bucket::ObjstoreConfig;
use compact::downsample::{AggrChunk, AGGR_COUNT, AGGR_COUNTER, AGGR_MAX, AGGR_MIN, AGGR_SUM};
use compact::{Clock, CompactConfig, Compactor, ManualClock, Retention};
use harness::S3Server;
use model::Labels;
use tsdb::block::BlockWriter;
use tsdb::meta::{BlockMeta, ThanosMeta, RES_5M};
use ulid::Ulid;

const H: i64 = 3_600_000;

type Series = Vec<(Labels, Vec<(i64, f64)>)>;
type Dump = BTreeMap<(Vec<(String, String)>, String), Vec<(i64, f64)>>;

struct Env {
    _s3: S3Server,
    store: Arc<dyn ObjectStore>,
    tmp: tempfile::TempDir,
}

fn env() -> Env {
    let s3 = S3Server::start("compact-test").expect("start SeaweedFS");
    let store = ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap();
    // weed mini answers before its -bucket exists (more so on a loaded machine):
    // wait until a PUT works.
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let key = bucket::object_store::path::Path::from("ready-probe");
            let t0 = std::time::Instant::now();
            while let Err(e) = store.put(&key, PutPayload::from_static(b"1")).await {
                assert!(
                    t0.elapsed() < std::time::Duration::from_secs(30),
                    "bucket never became usable: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            store.delete(&key).await.unwrap();
        })
    });
    Env {
        _s3: s3,
        store,
        tmp: tempfile::tempdir().unwrap(),
    }
}

fn ext(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn series(n: usize, from: i64, to: i64, step: i64) -> Series {
    (0..n)
        .map(|i| {
            let l = Labels::from_pairs([("__name__", "m"), ("i", &*i.to_string())]);
            let s = (from..to)
                .step_by(step as usize)
                .map(|t| (t, (t / step) as f64 * (i + 1) as f64))
                .collect();
            (l, s)
        })
        .collect()
}

/// Writes and uploads one block of `s` with meta range [min, max) and `labels`.
async fn put_block(
    e: &Env,
    s: &Series,
    min: i64,
    max: i64,
    labels: &BTreeMap<String, String>,
) -> BlockMeta {
    put_block_at(e, s, min, max, labels, Ulid::new()).await
}

async fn put_block_at(
    e: &Env,
    s: &Series,
    min: i64,
    max: i64,
    labels: &BTreeMap<String, String>,
    id: Ulid,
) -> BlockMeta {
    let mut sorted: Vec<_> = s.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = BlockWriter::create_with_ulid(e.tmp.path(), id).unwrap();
    for (l, samples) in sorted {
        w.add_series(
            l,
            samples
                .iter()
                .copied()
                .filter(|(t, _)| *t >= min && *t < max),
        )
        .unwrap();
    }
    let mut meta = w
        .finish(Some(ThanosMeta::new("sidecar", labels.clone())))
        .unwrap();
    meta.min_time = min;
    meta.max_time = max;
    let dir = e.tmp.path().join(id.to_string());
    bucket::upload_block(&*e.store, &dir, Some(&meta))
        .await
        .unwrap()
        .meta
}

fn cfg(e: &Env) -> CompactConfig {
    let mut c = CompactConfig::new(e.tmp.path().join("data"));
    c.consistency_delay_ms = 0;
    c.delete_delay_ms = 0;
    c
}

fn now_ms() -> i64 {
    compact::SystemClock.now_ms()
}

/// Complete blocks without a deletion mark.
async fn live_metas(store: &dyn ObjectStore) -> Vec<BlockMeta> {
    let mut out = Vec::new();
    for m in bucket::list_block_metas(store).await.unwrap().metas {
        if bucket::read_deletion_mark(store, m.ulid)
            .await
            .unwrap()
            .is_none()
        {
            out.push(m);
        }
    }
    out
}

/// Every float sample of the live blocks, by (external labels, series).
async fn dump(store: &Arc<dyn ObjectStore>, replica_labels: &[&str]) -> Dump {
    let mut out: Dump = BTreeMap::new();
    for m in live_metas(&**store).await {
        let mut ext = m.thanos.as_ref().unwrap().labels.clone();
        for r in replica_labels {
            ext.remove(*r);
        }
        let ext: Vec<(String, String)> = ext.into_iter().collect();
        let b = bucket::open_block(store.clone(), m.clone(), None)
            .await
            .unwrap();
        for s in b.select(&[vec![]]).await.unwrap() {
            let mut v = Vec::new();
            b.read_float_samples(&s, i64::MIN, i64::MAX, &mut v)
                .await
                .unwrap();
            out.entry((ext.clone(), s.labels.to_string()))
                .or_default()
                .extend(v);
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|s| s.0);
        v.dedup_by_key(|s| s.0);
    }
    out
}

fn expected(streams: &[(&BTreeMap<String, String>, &Series)]) -> Dump {
    let mut out: Dump = BTreeMap::new();
    for (ext, s) in streams {
        for (l, samples) in s.iter() {
            let k: Vec<(String, String)> =
                ext.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
            out.entry((k, l.to_string()))
                .or_default()
                .extend(samples.iter().copied());
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|s| s.0);
        v.dedup_by_key(|s| s.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_sample_and_merges_overlaps_and_replicas() {
    let e = env();
    let a = ext(&[("cluster", "a")]);
    let sa = series(3, 0, 10 * H, 15_000);
    for k in 0..5 {
        put_block(&e, &sa, k * 2 * H, (k + 1) * 2 * H, &a).await;
    }
    // Stream b: two overlapping blocks (vertical compaction).
    let b = ext(&[("cluster", "b")]);
    let sb = series(2, 0, 3 * H, 30_000);
    put_block(&e, &sb, 0, 2 * H, &b).await;
    put_block(&e, &sb, H, 3 * H, &b).await;
    // Stream c: two replicas with identical data, merged by the replica label.
    let sc = series(2, 0, 2 * H, 60_000);
    put_block(
        &e,
        &sc,
        0,
        2 * H,
        &ext(&[("cluster", "c"), ("replica", "0")]),
    )
    .await;
    put_block(
        &e,
        &sc,
        0,
        2 * H,
        &ext(&[("cluster", "c"), ("replica", "1")]),
    )
    .await;
    let c_ext = ext(&[("cluster", "c")]);
    let want = expected(&[(&a, &sa), (&b, &sb), (&c_ext, &sc)]);
    assert_eq!(dump(&e.store, &["replica"]).await, want);

    let mut config = cfg(&e);
    config.replica_labels = vec!["replica".into()];
    let c = Compactor::new(
        e.store.clone(),
        config,
        Arc::new(ManualClock::new(now_ms())),
    );
    let r = c.run_pass().await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.compacted.len(), 3, "{r:?}");
    assert!(r.marked_no_compact.is_empty());

    let live = live_metas(&*e.store).await;
    // a: [0,8h) level 2 + the newest 2h block held back; b: one block; c: one block.
    assert_eq!(live.len(), 4, "{live:#?}");
    let a_new = live
        .iter()
        .find(|m| m.thanos.as_ref().unwrap().labels == a && m.compaction.level == 2)
        .unwrap();
    assert_eq!((a_new.min_time, a_new.max_time), (0, 8 * H));
    assert_eq!(a_new.compaction.sources.len(), 4);
    assert_eq!(a_new.thanos.as_ref().unwrap().source, "compactor");
    let c_new = live
        .iter()
        .find(|m| m.thanos.as_ref().unwrap().labels == c_ext)
        .unwrap();
    assert_eq!(c_new.compaction.sources.len(), 2);
    let b_new = live
        .iter()
        .find(|m| m.thanos.as_ref().unwrap().labels == b)
        .unwrap();
    assert_eq!((b_new.min_time, b_new.max_time), (0, 3 * H));
    // Sources deleted (delete delay 0), samples identical.
    assert_eq!(
        bucket::list_block_metas(&*e.store)
            .await
            .unwrap()
            .metas
            .len(),
        4
    );
    assert_eq!(dump(&e.store, &[]).await, want);
    // Shared index cache and bucket index are current.
    for m in &live {
        if m.thanos.as_ref().unwrap().source == "compactor" {
            assert!(bucket::header_cache::read_header(&*e.store, m)
                .await
                .unwrap()
                .is_some());
        }
    }
    let idx = bucket::bucket_index::load(&*e.store)
        .await
        .unwrap()
        .unwrap()
        .index;
    let ids: HashSet<Ulid> = idx.blocks.iter().map(|b| b.ulid).collect();
    assert_eq!(ids, live.iter().map(|m| m.ulid).collect());

    // A second pass has nothing to do.
    let r = c.run_pass().await.unwrap();
    assert!(r.compacted.is_empty() && r.deleted.is_empty(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pass_between_upload_and_marking_loses_nothing() {
    let e = env();
    let a = ext(&[("cluster", "a")]);
    let sa = series(2, 0, 10 * H, 60_000);
    let mut src = Vec::new();
    for k in 0..5 {
        src.push(put_block(&e, &sa, k * 2 * H, (k + 1) * 2 * H, &a).await);
    }
    let mut config = cfg(&e);
    config.delete_delay_ms = 48 * H;
    config.downsampling = false;
    let clock = Arc::new(ManualClock::new(now_ms()));
    let c = Compactor::new(e.store.clone(), config, clock.clone());
    let r = c.run_pass().await.unwrap();
    assert_eq!(r.compacted.len(), 1);
    // Simulate the crash: the new block is up, its sources are not marked.
    for m in &src[..4] {
        bucket::remove_marker(&*e.store, m.ulid, bucket::MarkerKind::Deletion)
            .await
            .unwrap();
    }
    let c2 = Compactor::new(e.store.clone(), cfg_keep(&e), clock.clone());
    let r = c2.run_pass().await.unwrap();
    assert!(
        r.compacted.is_empty(),
        "no second compaction of the same sources: {r:?}"
    );
    let marked: HashSet<Ulid> = r.marked_for_deletion.iter().copied().collect();
    assert_eq!(marked, src[..4].iter().map(|m| m.ulid).collect());
    assert_eq!(dump(&e.store, &[]).await, expected(&[(&a, &sa)]));
    assert_eq!(live_metas(&*e.store).await.len(), 2);
}

fn cfg_keep(e: &Env) -> CompactConfig {
    let mut c = cfg(e);
    c.delete_delay_ms = 48 * H;
    c.downsampling = false;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_block_gets_no_compact_mark_and_the_rest_compacts() {
    let e = env();
    let a = ext(&[("cluster", "a")]);
    let sa = series(2, 0, 10 * H, 60_000);
    let mut src = Vec::new();
    for k in 0..5 {
        src.push(put_block(&e, &sa, k * 2 * H, (k + 1) * 2 * H, &a).await);
    }
    // Garbage of the same size in block 2's chunks.
    let key = bucket::block::chunk_path(src[1].ulid, 1);
    let size = e.store.head(&key).await.unwrap().size as usize;
    let mut junk = vec![0u8; size];
    junk[..8].copy_from_slice(&[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
    for (i, b) in junk.iter_mut().enumerate().skip(8) {
        *b = (i * 7 + 3) as u8;
    }
    e.store.put(&key, PutPayload::from(junk)).await.unwrap();

    let c = Compactor::new(
        e.store.clone(),
        cfg_keep(&e),
        Arc::new(ManualClock::new(now_ms())),
    );
    let r = c.run_pass().await.unwrap();
    assert_eq!(r.marked_no_compact.len(), 1, "{r:?}");
    assert_eq!(r.marked_no_compact[0].0, src[1].ulid);
    let mark = bucket::read_no_compact_mark(&*e.store, src[1].ulid)
        .await
        .unwrap()
        .unwrap();
    assert!(!mark.details.is_empty());
    // Blocks 3 and 4 (the part of 0-8h after the bad block) compacted.
    assert_eq!(r.compacted.len(), 1, "{r:?}");
    let got: HashSet<Ulid> = r.compacted[0].1.iter().copied().collect();
    assert_eq!(got, [src[2].ulid, src[3].ulid].into());
    assert_eq!(
        c.metrics()
            .blocks_marked_no_compact
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The next pass leaves the marked block alone and fails nothing.
    let r = c.run_pass().await.unwrap();
    assert!(
        r.compacted.is_empty() && r.marked_no_compact.is_empty() && r.errors.is_empty(),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_after_the_delay_and_nothing_else() {
    let e = env();
    let now = now_ms();
    let day = 24 * H;
    let a = ext(&[("cluster", "a")]);
    let old_t = (now - 40 * day) / (2 * H) * (2 * H);
    let new_t = (now - 2 * day) / (2 * H) * (2 * H);
    let old = put_block(
        &e,
        &series(1, old_t, old_t + 2 * H, 60_000),
        old_t,
        old_t + 2 * H,
        &a,
    )
    .await;
    let recent = put_block(
        &e,
        &series(1, new_t, new_t + 2 * H, 60_000),
        new_t,
        new_t + 2 * H,
        &a,
    )
    .await;
    // A partial upload (no meta.json), made "long ago".
    let partial = Ulid::from_parts((now - 10 * day) as u64, 7);
    e.store
        .put(
            &bucket::block::chunk_path(partial, 1),
            PutPayload::from(vec![1u8, 2, 3]),
        )
        .await
        .unwrap();

    let clock = Arc::new(ManualClock::new(now));
    let mut config = cfg(&e);
    config.retention = Retention {
        raw_ms: 30 * day,
        ..Default::default()
    };
    config.delete_delay_ms = 48 * H;
    let c = Compactor::new(e.store.clone(), config, clock.clone());
    let r = c.run_pass().await.unwrap();
    assert_eq!(r.marked_for_deletion, vec![old.ulid]);
    assert!(
        r.deleted.is_empty() && r.partial_deleted.is_empty(),
        "{r:?}"
    );
    assert!(bucket::read_deletion_mark(&*e.store, old.ulid)
        .await
        .unwrap()
        .is_some());
    assert!(bucket::fetch_meta(&*e.store, old.ulid)
        .await
        .unwrap()
        .is_some());

    clock.advance(47 * H);
    let r = c.run_pass().await.unwrap();
    assert!(r.deleted.is_empty(), "{r:?}");

    clock.advance(2 * H);
    let r = c.run_pass().await.unwrap();
    assert_eq!(r.deleted, vec![old.ulid]);
    assert_eq!(r.partial_deleted, vec![partial]);
    let left = bucket::list_blocks(&*e.store).await.unwrap();
    assert_eq!(left, vec![recent.ulid]);
    assert!(bucket::read_deletion_mark(&*e.store, recent.ulid)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_aggregates_match_the_raw_samples() {
    let e = env();
    let a = ext(&[("cluster", "a")]);
    // 48h of 60s samples: a counter with resets and a gauge.
    let step = 60_000;
    let mut counter = Vec::new();
    let mut gauge = Vec::new();
    let mut v = 0.0;
    for (i, t) in (0..48 * H).step_by(step as usize).enumerate() {
        v += (i % 7) as f64;
        if i % 1000 == 999 {
            v = 1.0;
        }
        counter.push((t, v));
        gauge.push((t, ((i * 37) % 101) as f64 - 50.0));
    }
    let s: Series = vec![
        (
            Labels::from_pairs([("__name__", "c_total")]),
            counter.clone(),
        ),
        (Labels::from_pairs([("__name__", "g")]), gauge.clone()),
    ];
    let src = put_block(&e, &s, 0, 48 * H, &a).await;
    let mut config = cfg_keep(&e);
    config.downsampling = true;
    let c = Compactor::new(
        e.store.clone(),
        config,
        Arc::new(ManualClock::new(now_ms())),
    );
    let r = c.run_pass().await.unwrap();
    assert_eq!(r.downsampled.len(), 1, "{r:?}");
    let (from, to, res) = r.downsampled[0];
    assert_eq!((from, res), (src.ulid, RES_5M));
    let m = bucket::fetch_meta(&*e.store, to).await.unwrap().unwrap();
    assert_eq!(m.thanos.as_ref().unwrap().downsample.resolution, RES_5M);
    assert_eq!((m.min_time, m.max_time), (0, 48 * H));
    assert_eq!(m.compaction.sources, vec![src.ulid]);

    let b = bucket::open_block(e.store.clone(), m.clone(), None)
        .await
        .unwrap();
    for entry in b.select(&[vec![]]).await.unwrap() {
        let raw_samples = if entry.labels.metric_name() == Some("g") {
            &gauge
        } else {
            &counter
        };
        let refs: Vec<u64> = entry.chunks.iter().map(|c| c.chunk_ref).collect();
        let chunks = b.chunks().chunks(&refs).await.unwrap();
        let mut got: [Vec<(i64, f64)>; 5] = Default::default();
        let mut counter_chunks = Vec::new();
        for c in &chunks {
            assert_eq!(c.encoding, 0xFF);
            // The store reads it.
            store::aggr::split_aggregate(&c.data).unwrap();
            let ag = AggrChunk::parse(&c.data).unwrap();
            for (i, g) in got.iter_mut().enumerate() {
                if i != AGGR_COUNTER {
                    g.extend(ag.samples(i).unwrap());
                }
            }
            counter_chunks.push(ag.samples(AGGR_COUNTER).unwrap());
        }
        // Expected windows from the raw samples.
        let mut win: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for &(t, v) in raw_samples {
            win.entry(t - t % 300_000 + 299_999).or_default().push(v);
        }
        // Stamped at the window's end, or at the last sample of the chunk's batch
        // when a chunk ends inside the window (Thanos clamps to the batch).
        assert_eq!(got[AGGR_COUNT].len(), win.len());
        for (&(t, _), &end) in got[AGGR_COUNT].iter().zip(win.keys()) {
            assert!(
                t <= end && t > end - 300_000,
                "{t} not in the window ending {end}"
            );
        }
        for (i, vals) in win.values().enumerate() {
            assert_eq!(got[AGGR_COUNT][i].1, vals.len() as f64);
            assert_eq!(got[AGGR_SUM][i].1, vals.iter().sum::<f64>());
            assert_eq!(
                got[AGGR_MIN][i].1,
                vals.iter().cloned().fold(f64::MAX, f64::min)
            );
            assert_eq!(
                got[AGGR_MAX][i].1,
                vals.iter().cloned().fold(f64::MIN, f64::max)
            );
        }
        // Counter: each chunk starts with its first raw value and ends with its
        // last raw value; the running counter in between increases exactly as the
        // raw counter does across resets.
        if entry.labels.metric_name() == Some("c_total") {
            let first = &counter_chunks[0];
            assert_eq!(first[0], raw_samples[0]);
            let last = counter_chunks.last().unwrap();
            assert_eq!(last[last.len() - 1].1, raw_samples.last().unwrap().1);
            let mut increase = 0.0;
            for w in raw_samples.windows(2) {
                increase += if w[1].1 >= w[0].1 {
                    w[1].1 - w[0].1
                } else {
                    w[1].1
                };
            }
            // Across all chunks: (last running value - first raw value) per chunk,
            // plus the reset-aware joins between chunks, equals the raw increase.
            let mut total = 0.0;
            let mut prev_last: Option<f64> = None;
            for ch in &counter_chunks {
                let first_raw = ch[0].1;
                let running_end = ch[ch.len() - 2].1;
                if let Some(p) = prev_last {
                    total += if first_raw >= p {
                        first_raw - p
                    } else {
                        first_raw
                    };
                }
                total += running_end - first_raw;
                prev_last = Some(ch[ch.len() - 1].1);
            }
            assert_eq!(total, increase);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_compactor_waits_for_the_lease() {
    let e = env();
    let a = ext(&[("cluster", "a")]);
    let sa = series(1, 0, 10 * H, 60_000);
    for k in 0..5 {
        put_block(&e, &sa, k * 2 * H, (k + 1) * 2 * H, &a).await;
    }
    let clock = Arc::new(ManualClock::new(now_ms()));
    let held = compact::lease::Lease::acquire(e.store.clone(), "other", 10 * 60_000, clock.clone())
        .await
        .unwrap()
        .expect("free lease");
    let c = Compactor::new(e.store.clone(), cfg_keep(&e), clock.clone());
    let r = c.run_pass().await.unwrap();
    assert!(r.skipped && r.compacted.is_empty());
    // The holder renews; once it stops and the lease expires, the pass runs.
    assert!(held.renew().await.unwrap());
    clock.advance(11 * 60_000);
    let r = c.run_pass().await.unwrap();
    assert!(!r.skipped);
    assert_eq!(r.compacted.len(), 1);
    // The old holder lost it.
    assert!(!held.renew().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_passes_at_once_do_not_both_run() {
    let e = env();
    let a = ext(&[("cluster", "a")]);
    let sa = series(2, 0, 10 * H, 60_000);
    for k in 0..5 {
        put_block(&e, &sa, k * 2 * H, (k + 1) * 2 * H, &a).await;
    }
    let clock = Arc::new(ManualClock::new(now_ms()));
    let c1 = Compactor::new(e.store.clone(), cfg(&e), clock.clone());
    let mut cfg2 = cfg(&e);
    cfg2.data_dir = e.tmp.path().join("data2");
    let c2 = Compactor::new(e.store.clone(), cfg2, clock.clone());
    let (r1, r2) = tokio::join!(c1.run_pass(), c2.run_pass());
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    // Either one ran and the other was kept out, or they ran one after the other
    // (the second then found nothing left to do): never two compactions.
    assert_eq!(r1.compacted.len() + r2.compacted.len(), 1, "{r1:?} {r2:?}");
    assert_eq!(dump(&e.store, &[]).await, expected(&[(&a, &sa)]));
    assert_eq!(live_metas(&*e.store).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalty_dedup_merges_replicas_filling_gaps() {
    let e = env();
    // Two HA replicas scraping every 15s, replica 1 three seconds later; replica
    // 0 misses 20 minutes in the middle (a restart).
    let gap = (50 * 60_000)..(70 * 60_000);
    let l = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
    let r0: Vec<(i64, f64)> = (0..2 * H)
        .step_by(15_000)
        .filter(|t| !gap.contains(t))
        .map(|t| (t, 1.0))
        .collect();
    let r1: Vec<(i64, f64)> = (3_000..2 * H).step_by(15_000).map(|t| (t, 2.0)).collect();
    put_block(
        &e,
        &vec![(l.clone(), r0.clone())],
        0,
        2 * H,
        &ext(&[("cluster", "c"), ("replica", "0")]),
    )
    .await;
    put_block(
        &e,
        &vec![(l.clone(), r1.clone())],
        0,
        2 * H,
        &ext(&[("cluster", "c"), ("replica", "1")]),
    )
    .await;
    let mut config = cfg(&e);
    config.replica_labels = vec!["replica".into()];
    config.dedup = compact::DedupFunc::Penalty;
    config.downsampling = false;
    let c = Compactor::new(
        e.store.clone(),
        config,
        Arc::new(ManualClock::new(now_ms())),
    );
    let r = c.run_pass().await.unwrap();
    assert_eq!(r.compacted.len(), 1, "{r:?}");
    let got = dump(&e.store, &[]).await;
    assert_eq!(got.len(), 1);
    let samples = got.values().next().unwrap();
    // One replica's rate, not both: about 480 samples in 2h, not 900.
    assert!(
        (470..=481).contains(&samples.len()),
        "{} samples",
        samples.len()
    );
    // The gap of replica 0 is filled by replica 1: no hole longer than the
    // penalty window (2 scrape intervals + offset).
    let worst = samples.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(worst <= 33_000, "largest gap {worst} ms");
    assert!(samples.iter().any(|s| s.1 == 2.0 && gap.contains(&s.0)));
    // Every sample is a real sample of one of the replicas.
    for s in samples {
        assert!(r0.contains(s) || r1.contains(s), "{s:?}");
    }
}

/// Moves the clock past the deadline when the first compacted block is
/// complete in the bucket.
#[derive(Debug)]
struct AdvanceAt {
    clock: Arc<ManualClock>,
    to: i64,
}

impl compact::hooks::PhaseHook for AdvanceAt {
    fn reached(&self, phase: compact::hooks::Phase) -> futures::future::BoxFuture<'_, ()> {
        if phase == compact::hooks::Phase::Uploaded {
            self.clock.set(self.to);
        }
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stops_at_its_deadline_at_a_safe_point_and_the_next_continues() {
    let e = env();
    let (a, b) = (ext(&[("cluster", "a")]), ext(&[("cluster", "b")]));
    // 8h ranges close once a later block exists: 5 blocks of 2h per stream.
    let s = series(2, 0, 10 * H, 60_000);
    for k in 0..5 {
        put_block(&e, &s, k * 2 * H, (k + 1) * 2 * H, &a).await;
        put_block(&e, &s, k * 2 * H, (k + 1) * 2 * H, &b).await;
    }
    let want = expected(&[(&a, &s), (&b, &s)]);
    let t0 = now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let mut config = cfg(&e);
    config.downsampling = false;
    let c = Compactor::new(e.store.clone(), config.clone(), clock.clone())
        .with_deadline(t0 + 60_000)
        .with_hook(Arc::new(AdvanceAt {
            clock: clock.clone(),
            to: t0 + 120_000,
        }));
    let r = c.run_pass().await.unwrap();
    // One group was finished (uploaded and its sources marked), the other not
    // started; nothing is lost or doubled in between.
    assert!(r.deadline_reached, "{r:?}");
    assert_eq!(r.compacted.len(), 1, "{r:?}");
    assert_eq!(r.compacted[0].1.len(), 4, "{r:?}");
    assert!(
        r.deleted.is_empty(),
        "no deletion started after the deadline: {r:?}"
    );
    assert_eq!(dump(&e.store, &[]).await, want);
    // The next pass (a new invocation) does the rest.
    let r = Compactor::new(e.store.clone(), config, clock.clone())
        .run_pass()
        .await
        .unwrap();
    assert!(!r.deadline_reached);
    assert_eq!(r.compacted.len(), 1, "{r:?}");
    assert_eq!(dump(&e.store, &[]).await, want);
    assert_eq!(live_metas(&*e.store).await.len(), 4);
}
