//! [`BucketStore`]: the store-read handler. StoreAPI answers from the blocks of a
//! bucket, through the shared index cache (bucket index, per-block index headers)
//! and an in-memory LRU.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bucket::bucket_index::{self, BucketIndex, IndexedBlock, SyncOutcome};
use bucket::header_cache::{self, HeaderSource};
use bucket::ObjectRange;
use futures::{stream, StreamExt};
use model::{Labels, Matcher};
use object_store::ObjectStore;
use storeapi::convert::{labels_to_pb, matchers_from_pb, zlabel_set};
use storeapi::pb::{self, info as infopb};
use storeapi::{extlabels, merge, series_frame, warning_frame, Error, Result, SeriesStream};
use tokio::sync::{mpsc, OnceCell, Semaphore};
use tsdb::block::Block;
use tsdb::chunks::ChunkReader;
use tsdb::index::{IndexHeader, IndexReader};
use tsdb::tombstones::Tombstones;
use tsdb::{ChunkMeta, RangeRead};
use ulid::Ulid;

use crate::aggr::{to_aggr_chunk, Wanted};
use crate::cache::{CacheStats, CachedRange, FileKind, RangeCache};
use crate::config::{now_ms, StoreConfig};

/// Samples a chunk is assumed to hold for `--store.limits.request-samples` (as
/// Thanos: the limit is enforced on chunks).
pub const SAMPLES_PER_CHUNK_ESTIMATE: u64 = 120;

/// Counters of a [`BucketStore`] (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct Metrics {
    pub series_requests: AtomicU64,
    pub label_requests: AtomicU64,
    pub blocks_queried: AtomicU64,
    pub series_sent: AtomicU64,
    pub chunks_sent: AtomicU64,
    pub chunk_bytes_sent: AtomicU64,
    pub block_warnings: AtomicU64,
    pub limit_errors: AtomicU64,
    pub headers_from_memory: AtomicU64,
    pub headers_from_local: AtomicU64,
    pub headers_from_bucket: AtomicU64,
    pub headers_built: AtomicU64,
    pub index_loaded: AtomicU64,
    pub index_listed: AtomicU64,
    pub index_sync_failures: AtomicU64,
}

impl Metrics {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

struct IndexState {
    index: Option<Arc<BucketIndex>>,
    synced_at: Option<Instant>,
    last: Option<SyncOutcome>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    cfg: StoreConfig,
    state: Mutex<IndexState>,
    sync_lock: tokio::sync::Mutex<()>,
    headers: Mutex<HashMap<Ulid, Arc<OnceCell<Arc<IndexHeader>>>>>,
    cache: Arc<RangeCache>,
    metrics: Metrics,
}

/// The store-read handler: serves the StoreAPI over the blocks of one bucket.
///
/// It holds no state beyond caches (bucket index, index headers, byte ranges) and
/// starts no background task: the bucket index is re-read on demand when older
/// than `sync_interval`, so the handler works the same in a long-lived pod and in
/// a short-lived function. Cloning is cheap and shares the caches.
#[derive(Clone)]
pub struct BucketStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore")
            .field("bucket", &self.inner.store.to_string())
            .finish()
    }
}

fn ext_labels(b: &IndexedBlock) -> Labels {
    Labels::from_pairs(b.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Blocks of one stream (same external labels) covering `[mint, maxt]`, preferring
/// the coarsest resolution allowed and filling its gaps with finer ones (Thanos's
/// `bucketBlockSet.getFor`). `by_res` holds the blocks per resolution, coarsest
/// first, each sorted by min_time.
fn get_for<'a>(
    by_res: &[(i64, Vec<&'a IndexedBlock>)],
    mint: i64,
    maxt: i64,
    max_res: i64,
    out: &mut Vec<&'a IndexedBlock>,
) {
    if mint > maxt {
        return;
    }
    let Some(i) = by_res.iter().position(|(r, _)| *r <= max_res) else {
        return;
    };
    let finer = by_res.get(i + 1).map(|(r, _)| *r);
    let mut start = mint;
    for b in &by_res[i].1 {
        if b.max_time <= mint {
            continue;
        }
        if b.min_time > maxt {
            break;
        }
        if let Some(f) = finer {
            get_for(by_res, start, b.min_time - 1, f, out);
        }
        out.push(b);
        start = start.max(b.max_time);
    }
    if let Some(f) = finer {
        get_for(by_res, start, maxt, f, out);
    }
}

/// A request's shared budget: series and chunks touched so far.
struct Budget {
    series: AtomicU64,
    chunks: AtomicU64,
    series_limit: u64,
    samples_limit: u64,
}

impl Budget {
    fn charge(&self, series: u64, chunks: u64) -> Result<()> {
        let s = self.series.fetch_add(series, Ordering::Relaxed) + series;
        if self.series_limit > 0 && s > self.series_limit {
            return Err(Error::ResourceExhausted(format!(
                "exceeded series limit: the request touches more than {} series (--store.limits.request-series)",
                self.series_limit
            )));
        }
        let c = self.chunks.fetch_add(chunks, Ordering::Relaxed) + chunks;
        if self.samples_limit > 0
            && c.saturating_mul(SAMPLES_PER_CHUNK_ESTIMATE) > self.samples_limit
        {
            return Err(Error::ResourceExhausted(format!(
                "exceeded samples limit: the request touches {c} chunks, estimated {} samples, more than {} (--store.limits.request-samples)",
                c.saturating_mul(SAMPLES_PER_CHUNK_ESTIMATE),
                self.samples_limit
            )));
        }
        Ok(())
    }
}

/// One block's part of a Series request.
struct BlockQuery {
    matchers: Arc<Vec<Matcher>>,
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
    wanted: Wanted,
    strip: Arc<Vec<String>>,
    abort_on_error: bool,
    budget: Arc<Budget>,
    sem: Arc<Semaphore>,
}

/// What went wrong in one block: a failure of that block (warning) or of the
/// whole request (limit).
enum BlockError {
    Block(String),
    Request(Error),
}

impl From<tsdb::Error> for BlockError {
    fn from(e: tsdb::Error) -> Self {
        BlockError::Block(e.to_string())
    }
}

type Tx = mpsc::Sender<Result<pb::SeriesResponse>>;

impl BucketStore {
    /// A handler over the bucket `store`.
    pub fn new(store: Arc<dyn ObjectStore>, cfg: StoreConfig) -> Self {
        let cache = Arc::new(RangeCache::new(cfg.index_cache_bytes));
        BucketStore {
            inner: Arc::new(Inner {
                store,
                cfg,
                state: Mutex::new(IndexState {
                    index: None,
                    synced_at: None,
                    last: None,
                }),
                sync_lock: tokio::sync::Mutex::new(()),
                headers: Mutex::new(HashMap::new()),
                cache,
                metrics: Metrics::default(),
            }),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// How the last sync got the bucket index.
    pub fn last_sync(&self) -> Option<SyncOutcome> {
        self.inner.state.lock().ok()?.last.clone()
    }

    /// Reads the bucket index now (the stored one if fresh enough, else by
    /// listing the bucket, writing the result back).
    pub async fn sync(&self) -> Result<Arc<BucketIndex>> {
        let _g = self.inner.sync_lock.lock().await;
        self.sync_locked().await
    }

    async fn sync_locked(&self) -> Result<Arc<BucketIndex>> {
        let m = &self.inner.metrics;
        match bucket_index::sync(&self.inner.store, self.inner.cfg.bucket_index_max_age).await {
            Ok((idx, outcome)) => {
                if outcome.listed() {
                    Metrics::inc(&m.index_listed);
                    tracing::warn!(
                        ?outcome,
                        blocks = idx.blocks.len(),
                        "bucket index missing or stale: listed the bucket"
                    );
                } else {
                    Metrics::inc(&m.index_loaded);
                }
                let idx = Arc::new(idx);
                if let Ok(mut s) = self.inner.state.lock() {
                    s.index = Some(idx.clone());
                    s.synced_at = Some(Instant::now());
                    s.last = Some(outcome);
                }
                // Forget headers of blocks that are gone.
                if let Ok(mut h) = self.inner.headers.lock() {
                    let live: BTreeSet<Ulid> = idx.blocks.iter().map(|b| b.ulid).collect();
                    h.retain(|id, _| live.contains(id));
                }
                Ok(idx)
            }
            Err(e) => {
                Metrics::inc(&m.index_sync_failures);
                let old = self.inner.state.lock().ok().and_then(|s| s.index.clone());
                match old {
                    Some(idx) => {
                        tracing::warn!(error = %e, "syncing the bucket index failed; serving the previous one");
                        Ok(idx)
                    }
                    None => Err(Error::Unavailable(format!(
                        "reading the bucket's blocks: {e}"
                    ))),
                }
            }
        }
    }

    /// The bucket index, re-read when older than the sync interval.
    pub async fn index(&self) -> Result<Arc<BucketIndex>> {
        let fresh = |s: &IndexState| match (&s.index, s.synced_at) {
            (Some(i), Some(t)) if t.elapsed() < self.inner.cfg.sync_interval => Some(i.clone()),
            _ => None,
        };
        if let Some(i) = self.inner.state.lock().ok().and_then(|s| fresh(&s)) {
            return Ok(i);
        }
        let _g = self.inner.sync_lock.lock().await;
        if let Some(i) = self.inner.state.lock().ok().and_then(|s| fresh(&s)) {
            return Ok(i);
        }
        self.sync_locked().await
    }

    /// The store's time partition at `now`.
    fn partition(&self, now: i64) -> (i64, i64) {
        let c = &self.inner.cfg;
        (
            c.min_time.map_or(i64::MIN, |b| b.at(now)),
            c.max_time.map_or(i64::MAX, |b| b.at(now)),
        )
    }

    /// Blocks this store serves: in its time partition, not marked for deletion
    /// longer ago than the delay, and not covered by a block that holds the same
    /// data (a compactor's output replaces its inputs at once, before they are
    /// deleted, so queries never see samples twice).
    fn served<'a>(&self, idx: &'a BucketIndex) -> Vec<&'a IndexedBlock> {
        let now = now_ms();
        let (pmin, pmax) = self.partition(now);
        let delay = self.inner.cfg.ignore_deletion_marks_delay.as_secs() as i64;
        let live: Vec<&IndexedBlock> = idx
            .blocks
            .iter()
            .filter(|b| b.deletion_time.is_none_or(|t| now / 1000 - t < delay))
            .collect();
        let covered = bucket::bucket_index::covered_blocks(live.iter().copied());
        live.into_iter()
            .filter(|b| b.max_time > pmin && b.min_time <= pmax)
            .filter(|b| !covered.contains(&b.ulid))
            .collect()
    }

    /// Blocks to read for `[mint, maxt]` with resolutions up to `max_res`, for
    /// streams whose external labels can match `matchers`.
    fn select<'a>(
        &self,
        idx: &'a BucketIndex,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_res: i64,
    ) -> Vec<&'a IndexedBlock> {
        let mut streams: BTreeMap<&BTreeMap<String, String>, Vec<&IndexedBlock>> = BTreeMap::new();
        for b in self.served(idx) {
            streams.entry(&b.labels).or_default().push(b);
        }
        let mut out = Vec::new();
        for (labels, blocks) in streams {
            let ext = Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if !extlabels::label_sets_match(matchers, std::slice::from_ref(&ext)) {
                continue;
            }
            let mut by_res: BTreeMap<std::cmp::Reverse<i64>, Vec<&IndexedBlock>> = BTreeMap::new();
            for b in blocks {
                by_res
                    .entry(std::cmp::Reverse(b.resolution))
                    .or_default()
                    .push(b);
            }
            let by_res: Vec<(i64, Vec<&IndexedBlock>)> = by_res
                .into_iter()
                .map(|(r, mut v)| {
                    v.sort_by_key(|b| (b.min_time, b.ulid));
                    (r.0, v)
                })
                .collect();
            get_for(&by_res, mint, maxt, max_res.max(0), &mut out);
        }
        out
    }

    /// The index header of a block: memory, local scratch dir, the bucket's cache
    /// object, or built from the index (and written back). Concurrent requests for
    /// the same block share one load.
    async fn header(&self, b: &IndexedBlock) -> std::result::Result<Arc<IndexHeader>, tsdb::Error> {
        let m = &self.inner.metrics;
        let cell = {
            let mut h = self
                .inner
                .headers
                .lock()
                .map_err(|_| tsdb::Error::invalid("header cache", "poisoned"))?;
            if let Some(c) = h.get(&b.ulid) {
                if let Some(v) = c.get() {
                    Metrics::inc(&m.headers_from_memory);
                    return Ok(v.clone());
                }
                c.clone()
            } else {
                if h.len() >= self.inner.cfg.max_cached_headers.max(1) {
                    // Drop some entry: headers are cheap to fetch again.
                    if let Some(k) = h.keys().next().copied() {
                        h.remove(&k);
                    }
                }
                let c = Arc::new(OnceCell::new());
                h.insert(b.ulid, c.clone());
                c
            }
        };
        let v = cell
            .get_or_try_init(|| async {
                let local = self.inner.cfg.local_header_dir.as_ref().map(|d| {
                    d.join(format!(
                        "{}.{}",
                        b.ulid,
                        header_cache::INDEX_HEADER_FILENAME
                    ))
                });
                let meta = b.to_meta();
                let want_size = header_cache::index_size(&meta);
                if let Some(p) = &local {
                    if let Ok(bytes) = tokio::fs::read(p).await {
                        if let Ok(h) = IndexHeader::decode(&bytes) {
                            if want_size.is_none_or(|s| s == h.file_size()) {
                                Metrics::inc(&m.headers_from_local);
                                return Ok(Arc::new(h));
                            }
                        }
                    }
                }
                let (h, source) =
                    header_cache::load_or_build_header(self.inner.store.clone(), &meta)
                        .await
                        .map_err(|e| {
                            tsdb::Error::invalid(
                                format!("index header of block {}", b.ulid),
                                e.to_string(),
                            )
                        })?;
                match source {
                    HeaderSource::Bucket => Metrics::inc(&m.headers_from_bucket),
                    HeaderSource::Built => Metrics::inc(&m.headers_built),
                }
                if let Some(p) = &local {
                    // Scratch cache: failures only cost a GET next time.
                    if let Some(dir) = p.parent() {
                        let _ = tokio::fs::create_dir_all(dir).await;
                    }
                    let tmp = p.with_extension("tmp");
                    if tokio::fs::write(&tmp, h.encode()).await.is_ok() {
                        let _ = tokio::fs::rename(&tmp, p).await;
                    }
                }
                Ok::<_, tsdb::Error>(Arc::new(h))
            })
            .await;
        match v {
            Ok(v) => Ok(v.clone()),
            Err(e) => {
                // Do not remember failures.
                if let Ok(mut h) = self.inner.headers.lock() {
                    h.remove(&b.ulid);
                }
                Err(e)
            }
        }
    }

    /// Opens a block for reading: header from the caches, index and chunk files
    /// read by range through the LRU.
    async fn open(&self, b: &IndexedBlock) -> std::result::Result<Block, tsdb::Error> {
        let header = self.header(b).await?;
        let store = &self.inner.store;
        let index_file: Arc<dyn RangeRead> = Arc::new(CachedRange::new(
            Arc::new(ObjectRange::with_size(
                store.clone(),
                bucket::block::index_path(b.ulid),
                header.file_size(),
            )),
            self.inner.cache.clone(),
            b.ulid,
            FileKind::Index,
        ));
        let index = IndexReader::new(header, index_file);
        let mut segments: Vec<(u32, Arc<dyn RangeRead>)> = Vec::new();
        for f in &b.files {
            let Some(n) = f
                .rel_path
                .strip_prefix("chunks/")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let file: Arc<dyn RangeRead> = Arc::new(CachedRange::new(
                Arc::new(ObjectRange::with_size(
                    store.clone(),
                    bucket::block::block_file(b.ulid, &f.rel_path),
                    f.size_bytes,
                )),
                self.inner.cache.clone(),
                b.ulid,
                FileKind::Chunks(n),
            ));
            segments.push((n, file));
        }
        let chunks = ChunkReader::new(segments)?.without_header_checks();
        // Tombstones are not applied (Thanos does not upload them either).
        Ok(Block::new(
            b.to_meta(),
            index,
            chunks,
            Tombstones::default(),
        ))
    }

    /// Series refs of a block matching `matchers` (external labels already
    /// split off: empty means every series).
    async fn postings(
        block: &Block,
        rest: &[Matcher],
    ) -> std::result::Result<Vec<u64>, tsdb::Error> {
        if rest.is_empty() {
            block.index().all_postings().await
        } else {
            block.index().postings_for_matchers(rest).await
        }
    }

    /// Streams one block's series into `tx`, sorted by labels with the block's
    /// external labels attached.
    async fn block_series(
        &self,
        b: &IndexedBlock,
        q: &BlockQuery,
        tx: &Tx,
    ) -> std::result::Result<(), BlockError> {
        let ext = ext_labels(b);
        let Some(rest) = extlabels::split_matchers(&q.matchers, &ext) else {
            return Ok(());
        };
        let permit = q
            .sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BlockError::Request(internal(e)))?;
        Metrics::inc(&self.inner.metrics.blocks_queried);
        let block = self.open(b).await?;
        let refs = Self::postings(&block, &rest).await?;
        let entries = block.index().series_many(&refs).await?;
        let strip: Vec<&str> = q.strip.iter().map(String::as_str).collect();
        let mut series: Vec<(Labels, Vec<ChunkMeta>)> = Vec::with_capacity(entries.len());
        let mut nchunks = 0u64;
        for (labels, metas) in entries {
            let metas: Vec<ChunkMeta> = metas
                .into_iter()
                .filter(|m| m.max_time >= q.mint && m.min_time <= q.maxt)
                .collect();
            if metas.is_empty() {
                continue;
            }
            nchunks += metas.len() as u64;
            let mut l = extlabels::attach(&labels, &ext);
            if !strip.is_empty() {
                l = extlabels::strip(&l, &strip);
            }
            series.push((l, metas));
        }
        q.budget
            .charge(series.len() as u64, if q.skip_chunks { 0 } else { nchunks })
            .map_err(BlockError::Request)?;
        // Attaching external labels can change the order.
        series.sort_by(|a, b| a.0.cmp(&b.0));
        drop(permit);

        // Batches of series whose chunks are read together (one coalesced read per
        // segment): bounded by series and by chunks, so memory stays bounded.
        let batch = self.inner.cfg.series_batch.max(1);
        let max_chunks = self.inner.cfg.chunks_batch.max(1);
        let mut it = series.into_iter().peekable();
        while it.peek().is_some() {
            let mut part: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
            let mut n = 0;
            while let Some(s) = it
                .next_if(|s| part.is_empty() || (part.len() < batch && n + s.1.len() <= max_chunks))
            {
                n += s.1.len();
                part.push(s);
            }
            let raw = if q.skip_chunks {
                Vec::new()
            } else {
                let refs: Vec<u64> = part
                    .iter()
                    .flat_map(|(_, m)| m.iter().map(|c| c.chunk_ref))
                    .collect();
                let _permit = q
                    .sem
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| BlockError::Request(internal(e)))?;
                block.chunks().chunks(&refs).await?
            };
            let mut raw = raw.into_iter();
            for (labels, metas) in part {
                let mut chunks = Vec::with_capacity(if q.skip_chunks { 0 } else { metas.len() });
                if !q.skip_chunks {
                    for m in &metas {
                        let r = raw
                            .next()
                            .ok_or_else(|| BlockError::Block("chunk missing".into()))?;
                        let c = to_aggr_chunk(m, &r, q.wanted).map_err(BlockError::Block)?;
                        self.inner
                            .metrics
                            .chunk_bytes_sent
                            .fetch_add(r.data.len() as u64, Ordering::Relaxed);
                        chunks.push(c);
                    }
                }
                self.inner
                    .metrics
                    .chunks_sent
                    .fetch_add(chunks.len() as u64, Ordering::Relaxed);
                let s = pb::Series {
                    labels: labels_to_pb(&labels),
                    chunks,
                };
                if tx.send(Ok(series_frame(s))).await.is_err() {
                    return Ok(()); // the client went away
                }
            }
        }
        Ok(())
    }

    /// Label names and values per block, for the label APIs: `f` gets each block's
    /// reader and its split matchers. Blocks failing are warnings (or the error,
    /// with the ABORT strategy).
    async fn per_block<T, F, Fut>(
        &self,
        start: i64,
        end: i64,
        matchers: &[Matcher],
        abort: bool,
        f: F,
    ) -> Result<(Vec<T>, Vec<String>)>
    where
        F: Fn(Block, Labels, Vec<Matcher>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tsdb::Error>>,
    {
        let idx = self.index().await?;
        let (pmin, pmax) = self.partition(now_ms());
        let (start, end) = (start.max(pmin), end.min(pmax));
        // Label APIs look at every resolution.
        let blocks: Vec<IndexedBlock> = self
            .select(&idx, matchers, start, end, i64::MAX)
            .into_iter()
            .cloned()
            .collect();
        let f = &f;
        let results: Vec<(Ulid, std::result::Result<Option<T>, tsdb::Error>)> =
            stream::iter(blocks)
                .map(|b: IndexedBlock| async move {
                    let ext = ext_labels(&b);
                    let Some(rest) = extlabels::split_matchers(matchers, &ext) else {
                        return (b.ulid, Ok(None));
                    };
                    let r = match self.open(&b).await {
                        Ok(block) => f(block, ext, rest).await.map(Some),
                        Err(e) => Err(e),
                    };
                    (b.ulid, r)
                })
                .buffer_unordered(self.inner.cfg.block_concurrency.max(1))
                .collect()
                .await;
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for (id, r) in results {
            match r {
                Ok(Some(v)) => out.push(v),
                Ok(None) => {}
                Err(e) => {
                    Metrics::inc(&self.inner.metrics.block_warnings);
                    let msg = format!("block {id}: {e}");
                    if abort {
                        return Err(Error::Corrupt(msg));
                    }
                    tracing::warn!(block = %id, error = %e, "block failed");
                    warnings.push(msg);
                }
            }
        }
        Ok((out, warnings))
    }
}

fn limit_of(n: i64) -> usize {
    if n > 0 {
        usize::try_from(n).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    }
}

/// Groups consecutive series frames into batches of `n`.
fn batch_frames(s: SeriesStream, n: usize) -> SeriesStream {
    use pb::series_response::Result as R;
    let flush = |buf: &mut Vec<pb::Series>| pb::SeriesResponse {
        result: Some(R::Batch(pb::SeriesBatch {
            series: std::mem::take(buf),
        })),
    };
    futures::stream::unfold(
        (s, Vec::<pb::Series>::new(), false),
        move |(mut s, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                match s.next().await {
                    Some(Ok(pb::SeriesResponse {
                        result: Some(R::Series(x)),
                    })) => {
                        buf.push(x);
                        if buf.len() >= n {
                            let f = flush(&mut buf);
                            return Some((Ok(f), (s, buf, false)));
                        }
                    }
                    Some(Ok(other)) => return Some((Ok(other), (s, buf, false))),
                    Some(Err(e)) => return Some((Err(e), (s, buf, true))),
                    None if buf.is_empty() => return None,
                    None => {
                        let f = flush(&mut buf);
                        return Some((Ok(f), (s, buf, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

#[async_trait::async_trait]
impl storeapi::StoreApi for BucketStore {
    async fn info(&self) -> Result<infopb::InfoResponse> {
        let idx = self.index().await?;
        let blocks = self.served(&idx);
        let (pmin, pmax) = self.partition(now_ms());
        let mut sets: BTreeSet<&BTreeMap<String, String>> = BTreeSet::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        let mut tsdb_infos = Vec::with_capacity(blocks.len());
        for b in &blocks {
            sets.insert(&b.labels);
            min = min.min(b.min_time);
            max = max.max(b.max_time);
            tsdb_infos.push(infopb::TsdbInfo {
                labels: Some(zlabel_set(&ext_labels(b))),
                min_time: b.min_time.max(pmin),
                max_time: b.max_time.min(pmax),
            });
        }
        if !blocks.is_empty() {
            min = min.max(pmin);
            max = max.min(pmax);
        }
        let sets: Vec<Labels> = sets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| Labels::from_pairs(s.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .collect();
        let mut info = storeapi::store_info_response("store", &sets, min, max);
        if let Some(s) = info.store.as_mut() {
            s.supports_without_replica_labels = true;
            s.tsdb_infos = tsdb_infos;
        }
        Ok(info)
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        Metrics::inc(&self.inner.metrics.series_requests);
        let matchers = matchers_from_pb(&req.matchers)?;
        let idx = self.index().await?;
        let (pmin, pmax) = self.partition(now_ms());
        let (mint, maxt) = (req.min_time.max(pmin), req.max_time.min(pmax));
        let blocks: Vec<IndexedBlock> = self
            .select(&idx, &matchers, mint, maxt, req.max_resolution_window)
            .into_iter()
            .cloned()
            .collect();
        let cfg = &self.inner.cfg;
        let q = Arc::new(BlockQuery {
            matchers: Arc::new(matchers),
            mint,
            maxt,
            skip_chunks: req.skip_chunks,
            wanted: Wanted::from_request(&req.aggregates),
            strip: Arc::new(req.without_replica_labels.clone()),
            abort_on_error: req.partial_response_disabled
                || req.partial_response_strategy == pb::PartialResponseStrategy::Abort as i32,
            budget: Arc::new(Budget {
                series: AtomicU64::new(0),
                chunks: AtomicU64::new(0),
                series_limit: cfg.series_limit,
                samples_limit: cfg.samples_limit,
            }),
            sem: Arc::new(Semaphore::new(cfg.block_concurrency.max(1))),
        });
        let mut streams: Vec<SeriesStream> = Vec::with_capacity(blocks.len());
        for b in blocks {
            let (tx, rx) = mpsc::channel::<Result<pb::SeriesResponse>>(4);
            let this = self.clone();
            let q = q.clone();
            tokio::spawn(async move {
                match this.block_series(&b, &q, &tx).await {
                    Ok(()) => {}
                    Err(BlockError::Request(e)) => {
                        Metrics::inc(&this.inner.metrics.limit_errors);
                        let _ = tx.send(Err(e)).await;
                    }
                    Err(BlockError::Block(msg)) => {
                        Metrics::inc(&this.inner.metrics.block_warnings);
                        let msg = format!("block {}: {msg}", b.ulid);
                        tracing::warn!(block = %b.ulid, error = %msg, "block failed");
                        let _ = tx
                            .send(if q.abort_on_error {
                                Err(Error::Corrupt(msg))
                            } else {
                                Ok(warning_frame(msg))
                            })
                            .await;
                    }
                }
            });
            streams.push(
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
                )
                .boxed(),
            );
        }
        let metrics_store = self.clone();
        let merged = merge::merge_series_streams(streams)
            .inspect(move |f| {
                if let Ok(pb::SeriesResponse {
                    result: Some(pb::series_response::Result::Series(_)),
                }) = f
                {
                    Metrics::inc(&metrics_store.inner.metrics.series_sent);
                }
            })
            .boxed();
        let limited = merge::limit_series(merged, req.limit);
        Ok(if req.response_batch_size > 1 {
            batch_frames(limited, limit_of(req.response_batch_size))
        } else {
            limited
        })
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        Metrics::inc(&self.inner.metrics.label_requests);
        let matchers = matchers_from_pb(&req.matchers)?;
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == pb::PartialResponseStrategy::Abort as i32;
        let (sets, warnings) = self
            .per_block(
                req.start,
                req.end,
                &matchers,
                abort,
                |block, ext, rest| async move {
                    let mut names: BTreeSet<String> = ext.iter().map(|l| l.name.clone()).collect();
                    if rest.is_empty() {
                        names.extend(block.index().label_names());
                    } else {
                        let refs = Self::postings(&block, &rest).await?;
                        for (l, _) in block.index().series_many(&refs).await? {
                            names.extend(l.iter().map(|l| l.name.clone()));
                        }
                        if refs.is_empty() {
                            names.clear();
                        }
                    }
                    Ok(names)
                },
            )
            .await?;
        let strip: BTreeSet<&String> = req.without_replica_labels.iter().collect();
        let all: BTreeSet<String> = sets
            .into_iter()
            .flatten()
            .filter(|n| !strip.contains(n))
            .collect();
        Ok(pb::LabelNamesResponse {
            names: all.into_iter().take(limit_of(req.limit)).collect(),
            warnings,
            hints: None,
        })
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        Metrics::inc(&self.inner.metrics.label_requests);
        if req.label.is_empty() {
            return Err(Error::InvalidArgument("label name is empty".into()));
        }
        let matchers = matchers_from_pb(&req.matchers)?;
        if req.without_replica_labels.contains(&req.label) {
            return Ok(pb::LabelValuesResponse::default());
        }
        let abort = req.partial_response_disabled
            || req.partial_response_strategy == pb::PartialResponseStrategy::Abort as i32;
        let name = req.label.clone();
        let (sets, warnings) = self
            .per_block(req.start, req.end, &matchers, abort, |block, ext, rest| {
                let name = name.clone();
                async move {
                    let mut values = BTreeSet::new();
                    if let Some(v) = ext.get(&name) {
                        // Every series of the block carries it (if any matches).
                        let any =
                            rest.is_empty() || !Self::postings(&block, &rest).await?.is_empty();
                        if any {
                            values.insert(v.to_string());
                        }
                    } else if rest.is_empty() {
                        values.extend(block.index().label_values(&name));
                    } else {
                        let refs = Self::postings(&block, &rest).await?;
                        for (l, _) in block.index().series_many(&refs).await? {
                            if let Some(v) = l.get(&name) {
                                values.insert(v.to_string());
                            }
                        }
                    }
                    Ok(values)
                }
            })
            .await?;
        let all: BTreeSet<String> = sets.into_iter().flatten().collect();
        Ok(pb::LabelValuesResponse {
            values: all.into_iter().take(limit_of(req.limit)).collect(),
            warnings,
            hints: None,
        })
    }
}
