//! `bench store`: the store-read handler over a real S3 server (SeaweedFS on
//! loopback): cold start to first Series answer for a bucket of 500 blocks with
//! and without the shared index cache, GETs per query, and Series throughput and
//! peak RSS for a query touching 100k series.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use bucket::object_store::path::Path as ObjPath;
use bucket::object_store::{ObjectStore, ObjectStoreExt};
use bucket::{ObjstoreConfig, RequestStats, StatsSnapshot};
use futures::{StreamExt, TryStreamExt};
use model::{Labels, MatchType, Matcher};
use storeapi::convert::matchers_to_pb;
use storeapi::{pb, StoreApi};
use tsdb::block::BlockWriter;
use tsdb::meta::{BlockMeta, ThanosMeta};

const HOUR: i64 = 3_600_000;
const START: i64 = 1_680_307_200_000;

fn vm_hwm_mib() -> f64 {
    super::peak_rss_mib()
}

/// Resets the kernel's peak-RSS mark for this process (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn client(yaml: &str) -> Result<(Arc<dyn ObjectStore>, Arc<RequestStats>)> {
    Ok(ObjstoreConfig::parse(yaml)?.build_with_stats()?)
}

/// Writes `n` blocks of 1 h each, `series` series of 120 samples at 30 s.
pub(crate) fn write_blocks(dir: &Path, n: usize, series: usize) -> Result<Vec<BlockMeta>> {
    let mut labels: Vec<Labels> = (0..series)
        .map(|i| {
            Labels::from_pairs([
                (
                    "__name__",
                    if i % 10 == 0 { "up" } else { "metric_total" }.to_string(),
                ),
                ("instance", format!("host-{i:06}")),
                ("job", "bench".to_string()),
            ])
        })
        .collect();
    labels.sort();
    let ext: BTreeMap<String, String> = [("cluster".to_string(), "bench".to_string())].into();
    let mut metas = Vec::with_capacity(n);
    for b in 0..n as i64 {
        let from = START + b * HOUR;
        let mut w = BlockWriter::create(dir)?;
        for (i, l) in labels.iter().enumerate() {
            let samples = (0..120).map(|k| (from + k * 30_000, (i as f64) + (k as f64) * 2.0));
            w.add_series(l, samples)?;
        }
        metas.push(w.finish(Some(ThanosMeta::new("bench", ext.clone())))?);
    }
    Ok(metas)
}

pub(crate) async fn upload_all(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    metas: &[BlockMeta],
) -> Result<()> {
    futures::stream::iter(metas.iter())
        .map(|m| {
            let store = store.clone();
            let d = dir.join(m.ulid.to_string());
            async move { bucket::upload_block(&*store, &d, None).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Deletes the shared index cache (bucket index and every header object).
pub(crate) async fn clear_cache(store: &Arc<dyn ObjectStore>) -> Result<()> {
    let _ = store
        .delete(&ObjPath::from(bucket::bucket_index::BUCKET_INDEX_PATH))
        .await;
    let all: Vec<_> = store.list(None).try_collect().await?;
    for o in all {
        if o.location.filename() == Some(bucket::header_cache::INDEX_HEADER_FILENAME) {
            store.delete(&o.location).await?;
        }
    }
    Ok(())
}

struct Run {
    secs: f64,
    series: u64,
    chunk_bytes: u64,
    stats: StatsSnapshot,
}

/// A fresh handler (cold process: empty memory, no local dir) answering one query.
async fn cold_query(yaml: &str, req: pb::SeriesRequest) -> Result<Run> {
    let (store, stats) = client(yaml)?;
    let t = Instant::now();
    let h = store::BucketStore::new(store, store::StoreConfig::default());
    let r = drain(&h, req).await?;
    Ok(Run {
        secs: t.elapsed().as_secs_f64(),
        stats: stats.snapshot(),
        ..r
    })
}

async fn drain(h: &store::BucketStore, req: pb::SeriesRequest) -> Result<Run> {
    let t = Instant::now();
    let mut s = h.series(req).await?;
    let (mut series, mut chunk_bytes) = (0u64, 0u64);
    while let Some(f) = s.next().await {
        match f?.result {
            Some(pb::series_response::Result::Series(x)) => {
                series += 1;
                chunk_bytes += x
                    .chunks
                    .iter()
                    .map(|c| c.raw.as_ref().map_or(0, |r| r.data.len() as u64))
                    .sum::<u64>();
            }
            Some(pb::series_response::Result::Warning(w)) => anyhow::bail!("warning: {w}"),
            _ => {}
        }
    }
    Ok(Run {
        secs: t.elapsed().as_secs_f64(),
        series,
        chunk_bytes,
        stats: StatsSnapshot::default(),
    })
}

fn req(ms: &[Matcher], mint: i64, maxt: i64) -> pb::SeriesRequest {
    pb::SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: matchers_to_pb(ms),
        ..Default::default()
    }
}

fn row(what: &str, r: &Run) {
    println!(
        "| {what} | {:.3} | {} | {} | {} | {} |",
        r.secs,
        r.series,
        r.stats.gets(),
        r.stats.list,
        r.stats.put
    );
}

async fn bench() -> Result<()> {
    let s3 = harness::S3Server::start("bench")?;
    let yaml = s3.objstore_yaml();
    let (store, _) = client(&yaml)?;
    let tmp = tempfile::tempdir()?;

    // 500 blocks of 1 h, 200 series each.
    let n_blocks = 500;
    let t = Instant::now();
    let metas = write_blocks(tmp.path(), n_blocks, 200)?;
    upload_all(&store, tmp.path(), &metas).await?;
    println!(
        "\nBucket: {n_blocks} blocks of 1 h x 200 series x 120 samples on SeaweedFS (loopback), written and uploaded in {:.1} s\n",
        t.elapsed().as_secs_f64()
    );
    let end = START + n_blocks as i64 * HOUR;
    let up = vec![Matcher::equal("__name__", "up")];
    let last_hour = req(&up, end - HOUR, end);
    let all_blocks = req(&up, START, end);

    println!("| cold start to first Series answer | seconds | series | GETs | LISTs | PUTs |");
    println!("| --- | --- | --- | --- | --- | --- |");
    clear_cache(&store).await?;
    row(
        "no shared cache, query touching 1 block (builds, writes back)",
        &cold_query(&yaml, last_hour.clone()).await?,
    );
    row(
        "shared cache, query touching 1 block",
        &cold_query(&yaml, last_hour.clone()).await?,
    );
    clear_cache(&store).await?;
    row(
        &format!("no shared cache, query touching all {n_blocks} blocks"),
        &cold_query(&yaml, all_blocks.clone()).await?,
    );
    row(
        &format!("shared cache, query touching all {n_blocks} blocks"),
        &cold_query(&yaml, all_blocks.clone()).await?,
    );

    // Warm process: second identical query.
    let (s2, st2) = client(&yaml)?;
    let h = store::BucketStore::new(s2, store::StoreConfig::default());
    drain(&h, all_blocks.clone()).await?;
    st2.reset();
    let mut warm = drain(&h, all_blocks.clone()).await?;
    warm.stats = st2.snapshot();
    row(
        &format!("same instance, same query again ({n_blocks} blocks, LRU)"),
        &warm,
    );

    // 100k series in one block.
    let big_dir = tmp.path().join("big");
    std::fs::create_dir_all(&big_dir)?;
    let t = Instant::now();
    let big = write_blocks(&big_dir, 1, 100_000)?;
    {
        let s3b = harness::S3Server::start("big")?;
        let y = s3b.objstore_yaml();
        let c = client(&y)?;
        upload_all(&c.0, &big_dir, &big).await?;
        let gen = t.elapsed().as_secs_f64();
        println!("\nThroughput: one block of 100,000 series x 120 samples (written and uploaded in {gen:.1} s)\n");
        println!("| query | seconds | series/s | chunk MiB/s | GETs | peak RSS (MiB) |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let all = vec![Matcher::new(MatchType::Regex, "__name__", ".+")?];
        let q = req(&all, START, START + HOUR);
        for (what, cold) in [
            ("cold instance (shared cache built)", true),
            ("cold instance, shared cache", true),
            ("warm instance (LRU)", false),
        ] {
            let (st, stats) = client(&y)?;
            let h = store::BucketStore::new(
                st,
                store::StoreConfig {
                    index_cache_bytes: 1 << 30,
                    ..Default::default()
                },
            );
            if !cold {
                drain(&h, q.clone()).await?;
                stats.reset();
            }
            reset_peak_rss();
            let r = drain(&h, q.clone()).await?;
            println!(
                "| {what} | {:.2} | {:.0} | {:.1} | {} | {:.0} |",
                r.secs,
                r.series as f64 / r.secs,
                r.chunk_bytes as f64 / r.secs / (1 << 20) as f64,
                stats.snapshot().gets(),
                vm_hwm_mib()
            );
        }
        drop(s3b);
    }
    Ok(())
}

pub fn bench_store() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
