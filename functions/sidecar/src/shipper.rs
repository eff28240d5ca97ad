//! The shipper: uploads every finished local block to the bucket exactly once.
//!
//! One [`Shipper::sync`] is one pass over the TSDB directory (the caller runs it on
//! a timer). A pass:
//! 1. reads the state file (`thanos.shipper.json`, see [`crate::state`]);
//! 2. lists finished blocks: directories named by a ULID with a readable
//!    `meta.json` (Prometheus writes blocks as `*.tmp-for-creation` and renames
//!    them when done, so the head, the WAL, `*.tmp*` directories and blocks being
//!    written are never candidates), oldest first;
//! 3. for each block not yet recorded: skips empty blocks, and compacted ones
//!    (level > 1) unless `upload_compacted` is set and they overlap nothing already
//!    shipped; asks the bucket whether the block is already complete there (then
//!    only records it); verifies it ([`crate::verify`]); hard-links its files into
//!    `<tsdb>/thanos/upload/<ULID>/` so Prometheus's retention or compaction cannot
//!    delete them mid-upload; uploads chunks, index, then `meta.json` with the
//!    `thanos` section ([`bucket::upload_block_with`], streaming, multipart for big
//!    files); records the block in the state file (atomically) and removes the
//!    links.
//!
//! Exactly once: the state file is written after `meta.json` is in the bucket. A
//! crash before `meta.json` leaves a partial upload that the next pass redoes
//! (overwriting it); a crash after it leaves a block the next pass finds complete
//! in the bucket and records without uploading. Transient bucket errors are
//! retried with backoff for as long as it takes. Local data is never deleted
//! (only the shipper's own hard links).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bucket::object_store::ObjectStore;
use bucket::{RetryPolicy, UploadOptions};
use tsdb::meta::{BlockMeta, ThanosMeta, META_FILENAME};
use ulid::Ulid;

use crate::metrics::{unix_now, Metrics};
use crate::state::{read_state, sync_dir, write_state};
use crate::verify::verify_block;
use crate::{Error, Result};

/// Directory (under the TSDB directory) holding the shipper's hard links.
pub const UPLOAD_DIR: &str = "thanos/upload";
/// The `thanos.source` of blocks the sidecar ships.
pub const SOURCE: &str = "sidecar";

/// How the shipper behaves.
#[derive(Debug, Clone)]
pub struct ShipperOptions {
    /// Also ship compacted blocks (level > 1) that overlap nothing shipped.
    pub upload_compacted: bool,
    /// Part size and concurrency of uploads.
    pub upload: UploadOptions,
    /// Retries of bucket operations (default: forever, for transient errors).
    pub retry: RetryPolicy,
}

impl Default for ShipperOptions {
    fn default() -> Self {
        ShipperOptions {
            upload_compacted: false,
            upload: UploadOptions::default(),
            retry: RetryPolicy::forever(),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Blocks uploaded in this pass.
    pub uploaded: Vec<Ulid>,
    /// Blocks found complete in the bucket and recorded without uploading.
    pub already_in_bucket: Vec<Ulid>,
    /// Blocks that failed verification (not uploaded), with the reason.
    pub corrupted: Vec<(Ulid, String)>,
    /// Blocks whose upload failed with a permanent error, with the reason.
    pub failed: Vec<(Ulid, String)>,
    /// Compacted blocks left out because they overlap shipped data (or because
    /// `upload_compacted` is off).
    pub skipped_compacted: Vec<Ulid>,
}

/// Ships the blocks of one TSDB directory to one bucket.
pub struct Shipper {
    dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    opts: ShipperOptions,
    metrics: Arc<Metrics>,
    /// Blocks that failed verification, reported once per process.
    bad: Mutex<HashSet<Ulid>>,
    /// Time ranges of shipped blocks no longer on local disk, from the bucket
    /// (None: not in the bucket any more).
    bucket_ranges: Mutex<HashMap<Ulid, Option<(i64, i64)>>>,
}

impl Shipper {
    pub fn new(
        dir: impl Into<PathBuf>,
        store: Arc<dyn ObjectStore>,
        opts: ShipperOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Shipper {
            dir: dir.into(),
            store,
            opts,
            metrics,
            bad: Mutex::default(),
            bucket_ranges: Mutex::default(),
        }
    }

    /// The TSDB directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metrics the shipper updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// One pass: uploads every finished block not uploaded yet, with `labels` as
    /// the blocks' external labels (must not be empty). Failures of single blocks
    /// are reported and counted, and the pass goes on with the others; the pass
    /// itself fails only for local problems (the TSDB directory or the state file
    /// cannot be read or written).
    pub async fn sync(&self, labels: &BTreeMap<String, String>) -> Result<SyncReport> {
        Metrics::inc(&self.metrics.dir_syncs);
        let r = self.sync_inner(labels).await;
        if r.is_err() {
            Metrics::inc(&self.metrics.dir_sync_failures);
        }
        r
    }

    async fn sync_inner(&self, labels: &BTreeMap<String, String>) -> Result<SyncReport> {
        if labels.is_empty() {
            return Err(Error::Config(
                "no external labels: refusing to ship blocks that cannot be told apart in the bucket".into(),
            ));
        }
        let mut report = SyncReport::default();
        let mut state = read_state(&self.dir)?;
        // Links left by an interrupted pass.
        let upload_root = self.dir.join(UPLOAD_DIR);
        if upload_root.exists() {
            std::fs::remove_dir_all(&upload_root)
                .map_err(|e| Error::local("removing old upload links in", &upload_root, e))?;
        }
        let metas = self.local_blocks()?;
        let local: HashMap<Ulid, &BlockMeta> = metas.iter().map(|m| (m.ulid, m)).collect();

        for m in &metas {
            let id = m.ulid;
            if state.contains(id) {
                continue;
            }
            if m.stats.num_samples == 0 {
                tracing::debug!(block = %id, "ignoring empty block");
                continue;
            }
            if self.bad.lock().expect("lock").contains(&id) {
                continue;
            }
            if m.compaction.level > 1 && !self.opts.upload_compacted {
                report.skipped_compacted.push(id);
                continue;
            }
            if let Some(why) = self.overlaps_shipped(m, &local, &state.uploaded).await {
                tracing::debug!(block = %id, reason = %why, "not shipping block: its data is shipped already");
                report.skipped_compacted.push(id);
                continue;
            }

            // Complete in the bucket already (e.g. uploaded before a crash that lost
            // the state file update): record, don't upload again.
            let store = &*self.store;
            let exists = bucket::with_backoff(&self.opts.retry, || {
                bucket::block_exists_complete(store, id)
            })
            .await;
            match exists {
                Ok(true) => {
                    tracing::info!(block = %id, "block is complete in the bucket already; recording it as uploaded");
                    Metrics::inc(&self.metrics.already_in_bucket);
                    state.add(id);
                    write_state(&self.dir, &state)?;
                    report.already_in_bucket.push(id);
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(block = %id, error = %e, "checking the bucket for the block failed; retrying next pass");
                    Metrics::inc(&self.metrics.upload_failures);
                    report.failed.push((id, e.to_string()));
                    continue;
                }
            }

            let block_dir = self.dir.join(id.to_string());
            if let Err(reason) = verify_block(&block_dir).await {
                if !block_dir.join(META_FILENAME).exists() {
                    tracing::debug!(block = %id, "block vanished (compacted or deleted by Prometheus)");
                    continue;
                }
                tracing::error!(block = %id, dir = %block_dir.display(), %reason,
                    "block failed verification; not uploading it");
                Metrics::inc(&self.metrics.corrupted_blocks);
                self.bad.lock().expect("lock").insert(id);
                report.corrupted.push((id, reason));
                continue;
            }

            match self.upload(m, labels).await {
                Ok(Some(bytes)) => {
                    state.add(id);
                    write_state(&self.dir, &state)?;
                    Metrics::inc(&self.metrics.uploads);
                    self.metrics
                        .uploaded_bytes
                        .fetch_add(bytes, Ordering::Relaxed);
                    self.metrics
                        .last_upload_time
                        .store(unix_now(), Ordering::Relaxed);
                    report.uploaded.push(id);
                }
                Ok(None) => {
                    tracing::debug!(block = %id, "block vanished before it could be linked");
                }
                Err(e) => {
                    tracing::error!(block = %id, error = %e, "uploading block failed; retrying next pass");
                    Metrics::inc(&self.metrics.upload_failures);
                    report.failed.push((id, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    /// Metas of the finished blocks in the TSDB directory, oldest first.
    fn local_blocks(&self) -> Result<Vec<BlockMeta>> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::local("reading", &self.dir, e))?;
        let mut metas = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::local("reading", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Exactly a ULID: `<ULID>.tmp-for-creation` and the like are blocks
            // being written or deleted.
            let Ok(id) = Ulid::from_string(name) else {
                continue;
            };
            if id.to_string() != name || !entry.path().is_dir() {
                continue;
            }
            match BlockMeta::read_dir(&entry.path()) {
                Ok(m) if m.ulid == id => metas.push(m),
                Ok(m) => {
                    tracing::warn!(dir = %entry.path().display(), meta_ulid = %m.ulid, "block directory and meta.json disagree on the ULID; skipping");
                }
                Err(e) => {
                    tracing::debug!(dir = %entry.path().display(), error = %e, "no readable meta.json; skipping");
                }
            }
        }
        metas.sort_by_key(|m| (m.min_time, m.ulid));
        Ok(metas)
    }

    /// Why `m` must not be shipped because its data is shipped already: one of its
    /// sources is a shipped block or a source of one, or (for a compacted block)
    /// its time range overlaps a shipped block's.
    async fn overlaps_shipped(
        &self,
        m: &BlockMeta,
        local: &HashMap<Ulid, &BlockMeta>,
        uploaded: &[Ulid],
    ) -> Option<String> {
        let mut covered: HashSet<Ulid> = uploaded.iter().copied().collect();
        for id in uploaded {
            if let Some(lm) = local.get(id) {
                covered.extend(lm.compaction.sources.iter().copied());
            }
        }
        if let Some(s) = m.compaction.sources.iter().find(|s| covered.contains(s)) {
            return Some(format!("its source block {s} is shipped"));
        }
        if m.compaction.level <= 1 {
            return None;
        }
        for &id in uploaded {
            let range = match local.get(&id) {
                Some(lm) => Some((lm.min_time, lm.max_time)),
                None => self.bucket_range(id).await,
            };
            if let Some((min, max)) = range {
                if m.min_time < max && min < m.max_time {
                    return Some(format!("it overlaps shipped block {id} [{min}, {max})"));
                }
            }
        }
        None
    }

    async fn bucket_range(&self, id: Ulid) -> Option<(i64, i64)> {
        if let Some(r) = self.bucket_ranges.lock().expect("lock").get(&id) {
            return *r;
        }
        let store = &*self.store;
        let r = bucket::with_backoff(&self.opts.retry, || bucket::fetch_meta(store, id)).await;
        let range = match r {
            Ok(m) => m.map(|m| (m.min_time, m.max_time)),
            Err(e) => {
                tracing::warn!(block = %id, error = %e, "reading a shipped block's meta.json failed");
                return None;
            }
        };
        self.bucket_ranges.lock().expect("lock").insert(id, range);
        range
    }

    /// Links and uploads one block; `Ok(None)` if it vanished before linking.
    async fn upload(
        &self,
        m: &BlockMeta,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<u64>> {
        let id = m.ulid;
        let src = self.dir.join(id.to_string());
        let link = self.dir.join(UPLOAD_DIR).join(id.to_string());
        match link_block(&src, &link) {
            Ok(()) => {}
            Err(e) if !src.join(META_FILENAME).exists() => {
                let _ = std::fs::remove_dir_all(&link);
                tracing::debug!(block = %id, error = %e, "block vanished while linking");
                return Ok(None);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&link);
                return Err(e);
            }
        }
        let mut meta = m.clone();
        let mut thanos = ThanosMeta::new(SOURCE, labels.clone());
        if let Some(old) = &m.thanos {
            thanos.extra = old.extra.clone();
        }
        meta.thanos = Some(thanos);
        tracing::info!(block = %id, min_time = m.min_time, max_time = m.max_time, level = m.compaction.level, "uploading block");
        let store = &*self.store;
        let opts = &self.opts.upload;
        let link_ref = &link;
        let meta_ref = &meta;
        let r = bucket::with_backoff(&self.opts.retry, || async move {
            let r = bucket::upload_block_with(store, link_ref, Some(meta_ref), opts).await;
            if let Err(e) = &r {
                if e.is_transient() {
                    tracing::warn!(block = %id, error = %e, "upload failed; retrying");
                }
            }
            r
        })
        .await;
        let _ = std::fs::remove_dir_all(&link);
        let stats = r?;
        Ok(Some(stats.bytes))
    }
}

/// Hard-links a block's data files (`chunks/*`, `index`, `tombstones`) from `src`
/// into `dst`, so the upload reads them even if Prometheus deletes the block.
fn link_block(src: &Path, dst: &Path) -> Result<()> {
    let chunks = dst.join("chunks");
    std::fs::create_dir_all(&chunks).map_err(|e| Error::local("creating", &chunks, e))?;
    let src_chunks = src.join("chunks");
    let rd = std::fs::read_dir(&src_chunks).map_err(|e| Error::local("reading", &src_chunks, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::local("reading", &src_chunks, e))?;
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let to = chunks.join(e.file_name());
            std::fs::hard_link(e.path(), &to)
                .map_err(|err| Error::local("hard-linking", e.path(), err))?;
        }
    }
    for name in ["index", "tombstones"] {
        let from = src.join(name);
        match std::fs::hard_link(&from, dst.join(name)) {
            Ok(()) => {}
            Err(e) if name == "tombstones" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::local("hard-linking", from, e)),
        }
    }
    sync_dir(dst);
    Ok(())
}
