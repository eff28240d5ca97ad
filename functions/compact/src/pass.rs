//! One compactor pass over a bucket: sync, compact every group, downsample, apply
//! retention, delete what is due, clean partial uploads, refresh the bucket index.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tsdb::meta::{BlockDesc, BlockMeta, ThanosMeta, META_FILENAME};
use ulid::Ulid;

use bucket::markers::{
    DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME,
};
use bucket::{DeletionMark, MarkerKind, NoCompactReason, UploadOptions};

use crate::clock::Clock;
use crate::hooks::{HookStore, Phase, PhaseHook, Progress};
use crate::lease::Lease;
use crate::merge::{is_bad_block_error, merge_blocks_with, DedupFunc, MergeError, MergeOptions};
use crate::plan::{self, GroupKey, Retention};

/// Everything a pass needs to know.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// Local scratch space (`<data-dir>/compact`, `<data-dir>/downsample`), wiped at
    /// the start of every pass.
    pub data_dir: PathBuf,
    /// Compaction ranges in ms (Thanos: 2h, 8h, 2d, 14d).
    pub ranges: Vec<i64>,
    pub retention: Retention,
    pub delete_delay_ms: i64,
    pub consistency_delay_ms: i64,
    /// Groups compacted at once.
    pub concurrency: usize,
    pub downsampling: bool,
    /// Labels that tell replicas apart; blocks differing only in them are one stream.
    pub replica_labels: Vec<String>,
    /// How overlapping samples of different blocks are merged
    /// (`--deduplication.func`).
    pub dedup: DedupFunc,
    /// Lease lifetime; 0 disables the lease (only one compactor may run then).
    pub lease_ttl_ms: i64,
    pub upload: UploadOptions,
}

impl CompactConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        CompactConfig {
            data_dir: data_dir.into(),
            ranges: plan::DEFAULT_RANGES.to_vec(),
            retention: Retention::default(),
            delete_delay_ms: 48 * 3_600_000,
            consistency_delay_ms: 30 * 60_000,
            concurrency: 1,
            downsampling: true,
            replica_labels: Vec::new(),
            dedup: DedupFunc::Chain,
            lease_ttl_ms: 30 * 60_000,
            upload: UploadOptions::default(),
        }
    }
}

/// Counters of the compactor (exposed as Prometheus metrics by the command).
#[derive(Debug, Default)]
pub struct Metrics {
    pub passes: AtomicU64,
    pub passes_skipped_lease: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_failures: AtomicU64,
    pub downsamples: AtomicU64,
    pub downsample_failures: AtomicU64,
    pub blocks_marked_no_compact: AtomicU64,
    pub blocks_marked_for_deletion: AtomicU64,
    pub blocks_deleted: AtomicU64,
    pub partial_uploads_deleted: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut s = String::new();
        for (name, v, help) in [
            (
                "aether_compact_iterations_total",
                g(&self.passes),
                "Compactor passes run.",
            ),
            (
                "aether_compact_iterations_skipped_lease_total",
                g(&self.passes_skipped_lease),
                "Passes skipped because another compactor held the lease.",
            ),
            (
                "aether_compact_group_compactions_total",
                g(&self.compactions),
                "Blocks written by compaction.",
            ),
            (
                "aether_compact_group_compactions_failures_total",
                g(&self.compaction_failures),
                "Failed group compactions.",
            ),
            (
                "aether_compact_downsample_total",
                g(&self.downsamples),
                "Blocks written by downsampling.",
            ),
            (
                "aether_compact_downsample_failures_total",
                g(&self.downsample_failures),
                "Failed downsamplings.",
            ),
            (
                "aether_compact_blocks_marked_no_compact_total",
                g(&self.blocks_marked_no_compact),
                "Blocks marked no-compact because they could not be read.",
            ),
            (
                "aether_compact_blocks_marked_for_deletion_total",
                g(&self.blocks_marked_for_deletion),
                "Blocks marked for deletion.",
            ),
            (
                "aether_compact_blocks_cleaned_total",
                g(&self.blocks_deleted),
                "Blocks deleted.",
            ),
            (
                "aether_compact_aborted_partial_uploads_deletion_attempts_total",
                g(&self.partial_uploads_deleted),
                "Partial uploads deleted.",
            ),
        ] {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        s
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    /// Another compactor held the lease: nothing was done.
    pub skipped: bool,
    /// (new block, its sources)
    pub compacted: Vec<(Ulid, Vec<Ulid>)>,
    /// (source block, new block, resolution)
    pub downsampled: Vec<(Ulid, Ulid, i64)>,
    pub marked_no_compact: Vec<(Ulid, String)>,
    pub marked_for_deletion: Vec<Ulid>,
    pub deleted: Vec<Ulid>,
    pub partial_deleted: Vec<Ulid>,
    /// Failures that did not stop the pass (retried next pass).
    pub errors: Vec<String>,
    /// The pass stopped at its deadline with work left for the next pass.
    pub deadline_reached: bool,
}

/// A pass's report in numbers, as the entry points answer and log it (JSON keys
/// are the field names).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PassSummary {
    pub skipped: bool,
    pub compacted: usize,
    pub downsampled: usize,
    pub marked_for_deletion: usize,
    pub deleted: usize,
    pub partial_deleted: usize,
    pub marked_no_compact: usize,
    pub errors: Vec<String>,
    pub deadline_reached: bool,
}

impl PassReport {
    /// The counts of what the pass did, and its errors.
    pub fn summary(&self) -> PassSummary {
        PassSummary {
            skipped: self.skipped,
            compacted: self.compacted.len(),
            downsampled: self.downsampled.len(),
            marked_for_deletion: self.marked_for_deletion.len(),
            deleted: self.deleted.len(),
            partial_deleted: self.partial_deleted.len(),
            marked_no_compact: self.marked_no_compact.len(),
            errors: self.errors.clone(),
            deadline_reached: self.deadline_reached,
        }
    }
}

/// A group's plan and its outcome (`None`: not started, past the deadline).
type GroupResult = (
    GroupKey,
    Vec<BlockMeta>,
    Option<Result<BlockMeta, MergeError>>,
);

/// The bucket as a pass sees it.
#[derive(Debug, Default, Clone)]
struct BucketState {
    metas: BTreeMap<Ulid, BlockMeta>,
    /// Deletion time (unix s) of marked blocks.
    deletion: HashMap<Ulid, i64>,
    no_compact: HashSet<Ulid>,
    no_downsample: HashSet<Ulid>,
    /// Partial block directories with the newest object's time (ms).
    partial: Vec<(Ulid, i64)>,
}

/// The compactor: one bucket, a config, a clock.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    cfg: CompactConfig,
    clock: Arc<dyn Clock>,
    holder: String,
    metrics: Arc<Metrics>,
    meta_cache: std::sync::Mutex<HashMap<Ulid, BlockMeta>>,
    hook: Option<Arc<dyn PhaseHook>>,
    progress: Option<Arc<dyn Progress>>,
    task_keys: AtomicU64,
    /// Stop starting new work at this time (clock ms), e.g. before a Lambda
    /// invocation's timeout.
    deadline_ms: Option<i64>,
    /// A deadline for the current pass only (`run_pass_until`); MIN: none.
    deadline_override: AtomicI64,
    deadline_reached: AtomicBool,
}

/// Errors that stop a pass (everything else is reported in [`PassReport::errors`]
/// and retried by the next pass).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error("scratch directory {path}: {source}")]
    Local {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding a marker: {0}")]
    Json(#[from] serde_json::Error),
}

fn ulid_time_ms(id: Ulid) -> i64 {
    id.timestamp_ms() as i64
}

impl Compactor {
    pub fn new(store: Arc<dyn ObjectStore>, cfg: CompactConfig, clock: Arc<dyn Clock>) -> Self {
        Compactor {
            store,
            cfg,
            clock,
            holder: format!("compactor-{}", Ulid::new()),
            metrics: Arc::new(Metrics::default()),
            meta_cache: Default::default(),
            hook: None,
            progress: None,
            task_keys: AtomicU64::new(0),
            deadline_ms: None,
            deadline_override: AtomicI64::new(i64::MIN),
            deadline_reached: AtomicBool::new(false),
        }
    }

    /// Names this compactor in the lease. A compactor restarted with the same
    /// holder (same host and data dir) takes its own lease back at once instead
    /// of waiting for it to expire.
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Stops the pass at the first safe point at or after `deadline_ms` (the
    /// clock's ms): no new group, downsampling, mark or deletion is started;
    /// what was started is finished. The next pass continues.
    pub fn with_deadline(mut self, deadline_ms: i64) -> Self {
        self.deadline_ms = Some(deadline_ms);
        self
    }

    /// Awaits `hook` at every [`Phase`] (crash tests).
    pub fn with_hook(mut self, hook: Arc<dyn PhaseHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Reports long steps to `progress` (a progress bar).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    async fn at(&self, phase: Phase) {
        if let Some(h) = &self.hook {
            h.reached(phase).await;
        }
    }

    /// The bucket, wrapped to report phases inside uploads and deletions when a
    /// hook is installed.
    fn hooked(&self, upload: Option<Phase>, delete: Option<Phase>) -> Arc<dyn ObjectStore> {
        match &self.hook {
            None => self.store.clone(),
            Some(h) => Arc::new(HookStore::new(
                self.store.clone(),
                h.clone(),
                upload,
                delete,
            )),
        }
    }

    /// A step over `total` known items; none shown when there is nothing to do.
    fn counted_task(&self, what: &str, total: u64) -> Task<'_> {
        if total == 0 {
            return Task {
                progress: None,
                key: 0,
            };
        }
        self.task(what, total)
    }

    fn task(&self, what: &str, total: u64) -> Task<'_> {
        let key = self.task_keys.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = &self.progress {
            p.begin(key, what, total);
        }
        Task {
            progress: self.progress.as_deref(),
            key,
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn config(&self) -> &CompactConfig {
        &self.cfg
    }

    /// One recursive LIST; meta.json GETs only for blocks not seen before,
    /// deletion-mark GETs for marked blocks.
    async fn sync(&self) -> Result<BucketState, PassError> {
        #[derive(Default)]
        struct Dir {
            meta: bool,
            deletion: bool,
            no_compact: bool,
            no_downsample: bool,
            newest_ms: i64,
        }
        let listing: Vec<object_store::ObjectMeta> = self.store.list(None).try_collect().await?;
        let mut dirs: BTreeMap<Ulid, Dir> = BTreeMap::new();
        for o in listing {
            let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_string()).collect();
            let Some(first) = parts.first() else { continue };
            let Ok(id) = Ulid::from_string(first) else {
                continue;
            };
            if id.to_string() != *first || parts.len() < 2 {
                continue;
            }
            let d = dirs.entry(id).or_default();
            d.newest_ms = d.newest_ms.max(o.last_modified.timestamp_millis());
            if parts.len() == 2 {
                match parts[1].as_str() {
                    META_FILENAME => d.meta = true,
                    DELETION_MARK_FILENAME => d.deletion = true,
                    NO_COMPACT_MARK_FILENAME => d.no_compact = true,
                    NO_DOWNSAMPLE_MARK_FILENAME => d.no_downsample = true,
                    _ => {}
                }
            }
        }
        let cached: HashMap<Ulid, BlockMeta> = self.meta_cache.lock().unwrap().clone();
        let to_fetch: Vec<Ulid> = dirs
            .iter()
            .filter(|(id, d)| d.meta && !cached.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        let store = &*self.store;
        let fetched: Vec<(Ulid, bucket::Result<Option<BlockMeta>>)> = stream::iter(to_fetch)
            .map(|id| async move { (id, bucket::fetch_meta(store, id).await) })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut st = BucketState::default();
        {
            let mut cache = self.meta_cache.lock().unwrap();
            cache.retain(|id, _| dirs.get(id).is_some_and(|d| d.meta));
            for (id, r) in fetched {
                match r {
                    Ok(Some(m)) => {
                        cache.insert(id, m);
                    }
                    Ok(None) => {}
                    Err(bucket::Error::InvalidObject { reason, .. }) => {
                        tracing::warn!(block = %id, reason, "meta.json does not parse; ignoring the block");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            for (id, d) in &dirs {
                if !d.meta {
                    st.partial.push((*id, d.newest_ms));
                    continue;
                }
                if let Some(m) = cache.get(id) {
                    st.metas.insert(*id, m.clone());
                }
                if d.no_compact {
                    st.no_compact.insert(*id);
                }
                if d.no_downsample {
                    st.no_downsample.insert(*id);
                }
            }
        }
        let marked: Vec<Ulid> = dirs
            .iter()
            .filter(|(_, d)| d.deletion)
            .map(|(id, _)| *id)
            .collect();
        let now_s = self.clock.now_ms() / 1000;
        let marks: Vec<(Ulid, i64)> = stream::iter(marked)
            .map(|id| async move {
                let t = match bucket::read_deletion_mark(store, id).await {
                    Ok(Some(m)) => m.deletion_time,
                    // Unreadable or vanished: treat as marked now.
                    _ => now_s,
                };
                (id, t)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        st.deletion.extend(marks);
        Ok(st)
    }

    /// Writes `deletion-mark.json` with the clock's time unless one exists.
    async fn mark_for_deletion(&self, id: Ulid, details: &str) -> Result<bool, PassError> {
        let m = DeletionMark {
            id,
            version: 1,
            details: details.to_string(),
            deletion_time: self.clock.now_ms() / 1000,
        };
        let key = MarkerKind::Deletion.path(id);
        let body = PutPayload::from(serde_json::to_vec(&m)?);
        match self
            .store
            .put_opts(&key, body.clone(), PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => return Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                if bucket::read_deletion_mark(&*self.store, id)
                    .await?
                    .is_some()
                {
                    return Ok(false);
                }
                self.store.put(&key, body).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.metrics
            .blocks_marked_for_deletion
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(block = %id, details, "marked block for deletion");
        Ok(true)
    }

    async fn mark_no_compact(&self, id: Ulid, err: &MergeError, report: &mut PassReport) {
        let reason = match err {
            MergeError::BadBlock {
                err: tsdb::Error::Unsupported { what, .. },
                ..
            } if what == "vertical compaction" => NoCompactReason::DownsampleVerticalCompaction,
            _ => NoCompactReason::Other("unreadable-block".into()),
        };
        let details = err.to_string();
        tracing::error!(block = %id, reason = reason.as_str(), error = %details, "block cannot be compacted; marking it no-compact and going on");
        match bucket::mark_no_compact(&*self.store, id, reason, &details).await {
            Ok(_) => {
                self.metrics
                    .blocks_marked_no_compact
                    .fetch_add(1, Ordering::Relaxed);
                report.marked_no_compact.push((id, details));
            }
            Err(e) => report.errors.push(format!("marking {id} no-compact: {e}")),
        }
    }

    fn past_deadline(&self) -> bool {
        let o = self.deadline_override.load(Ordering::Relaxed);
        let d = if o != i64::MIN {
            Some(o)
        } else {
            self.deadline_ms
        };
        d.is_some_and(|d| self.clock.now_ms() >= d)
    }

    /// Whether to start the next unit of work (a group, a downsampled block, a
    /// mark, a deletion): the deadline has not passed and the lease is held.
    /// Every unit finishes what it starts, so stopping here is safe.
    async fn next_unit(&self, lease: Option<&Lease>) -> bool {
        if self.past_deadline() {
            if !self.deadline_reached.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    "deadline reached: stopping the pass at a safe point; the next pass continues"
                );
            }
            return false;
        }
        self.renew(lease).await
    }

    async fn renew(&self, lease: Option<&Lease>) -> bool {
        match lease {
            None => true,
            Some(l) => match l.renew().await {
                Ok(true) => true,
                Ok(false) => {
                    tracing::error!("lost the compactor lease; stopping the pass");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing the compactor lease failed; stopping the pass");
                    false
                }
            },
        }
    }

    fn work_dir(&self, what: &str) -> PathBuf {
        self.cfg.data_dir.join(what)
    }

    /// Blocks eligible for compaction and downsampling: complete, not marked for
    /// deletion, not covered by another block's sources, past the consistency
    /// delay (blocks the compactor wrote are exempt).
    fn live(&self, st: &BucketState) -> Vec<BlockMeta> {
        let now = self.clock.now_ms();
        let all: Vec<BlockMeta> = st
            .metas
            .values()
            .filter(|m| !st.deletion.contains_key(&m.ulid))
            .cloned()
            .collect();
        let covered = plan::covered_blocks(&all, &self.cfg.replica_labels);
        all.into_iter()
            .filter(|m| !covered.contains(&m.ulid))
            .filter(|m| {
                let src = m.thanos.as_ref().map(|t| t.source.as_str()).unwrap_or("");
                src == "compactor" || now - ulid_time_ms(m.ulid) >= self.cfg.consistency_delay_ms
            })
            .collect()
    }

    /// Runs one pass. Errors only when the bucket cannot be listed; everything
    /// else is logged, counted and reported, and the pass goes on.
    /// One pass, stopping at the first safe point at or after `deadline_ms`
    /// (overriding [`Compactor::with_deadline`] for this pass).
    pub async fn run_pass_until(&self, deadline_ms: Option<i64>) -> Result<PassReport, PassError> {
        let saved = self
            .deadline_override
            .swap(deadline_ms.unwrap_or(i64::MIN), Ordering::Relaxed);
        let r = self.run_pass().await;
        self.deadline_override.store(saved, Ordering::Relaxed);
        r
    }

    pub async fn run_pass(&self) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        self.metrics.passes.fetch_add(1, Ordering::Relaxed);
        let lease = if self.cfg.lease_ttl_ms > 0 {
            match Lease::acquire(
                self.store.clone(),
                &self.holder,
                self.cfg.lease_ttl_ms,
                self.clock.clone(),
            )
            .await?
            {
                Some(l) => Some(l),
                None => {
                    self.metrics
                        .passes_skipped_lease
                        .fetch_add(1, Ordering::Relaxed);
                    report.skipped = true;
                    return Ok(report);
                }
            }
        } else {
            None
        };
        // Heartbeat: renew the lease every third of its lifetime while the pass
        // runs (steps also renew before every bucket change).
        let lease = lease.map(Arc::new);
        let heartbeat = lease.clone().map(|l| {
            tokio::spawn(async move {
                let every = Duration::from_millis((l.ttl_ms() / 3).max(1000) as u64);
                loop {
                    tokio::time::sleep(every).await;
                    match l.renew().await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!("compactor lease taken over by another instance");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "renewing the compactor lease failed"),
                    }
                }
            })
        });
        self.deadline_reached.store(false, Ordering::Relaxed);
        let r = self.pass_inner(lease.as_deref(), &mut report).await;
        report.deadline_reached = self.deadline_reached.load(Ordering::Relaxed);
        if report.deadline_reached {
            // Keep the store's view current with what this pass finished.
            self.refresh_bucket_index().await;
        }
        if let Some(h) = heartbeat {
            h.abort();
            let _ = h.await;
        }
        if let Some(l) = lease {
            l.release().await;
        }
        r.map(|()| report)
    }

    async fn pass_inner(
        &self,
        lease: Option<&Lease>,
        report: &mut PassReport,
    ) -> Result<(), PassError> {
        for d in ["compact", "downsample"] {
            let p = self.work_dir(d);
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).map_err(|source| PassError::Local {
                path: p.display().to_string(),
                source,
            })?;
        }
        let mut st = self.sync().await?;

        // Blocks whose sources another block holds are leftovers of a pass that
        // stopped between upload and marking: mark them now.
        let unmarked: Vec<BlockMeta> = st
            .metas
            .values()
            .filter(|m| !st.deletion.contains_key(&m.ulid))
            .cloned()
            .collect();
        for id in plan::covered_blocks(&unmarked, &self.cfg.replica_labels) {
            if !self.next_unit(lease).await {
                return Ok(());
            }
            match self
                .mark_for_deletion(id, "sources already compacted into another block")
                .await
            {
                Ok(_) => {
                    st.deletion.insert(id, self.clock.now_ms() / 1000);
                    report.marked_for_deletion.push(id);
                }
                Err(e) => report.errors.push(format!("marking {id}: {e}")),
            }
        }

        if !self.compact_all(lease, &mut st, report).await {
            return Ok(());
        }
        if self.cfg.downsampling {
            for _level in 0..2 {
                if !self.downsample_all(lease, &mut st, report).await {
                    return Ok(());
                }
            }
        }
        // Retention.
        let now = self.clock.now_ms();
        let unmarked: Vec<BlockMeta> = st
            .metas
            .values()
            .filter(|m| !st.deletion.contains_key(&m.ulid))
            .cloned()
            .collect();
        let expired = plan::expired_blocks(&unmarked, &self.cfg.retention, now);
        let task = self.counted_task("retention: marking expired blocks", expired.len() as u64);
        for (k, id) in expired.into_iter().enumerate() {
            if !self.next_unit(lease).await {
                return Ok(());
            }
            match self.mark_for_deletion(id, "retention").await {
                Ok(_) => {
                    st.deletion.insert(id, now / 1000);
                    report.marked_for_deletion.push(id);
                }
                Err(e) => report.errors.push(format!("marking {id}: {e}")),
            }
            task.set(k as u64 + 1);
            if k == 0 {
                self.at(Phase::Retention).await;
            }
        }
        drop(task);
        // Deletion of blocks marked long enough ago.
        let due: Vec<Ulid> = st
            .deletion
            .iter()
            .filter(|(_, &t)| now - t * 1000 >= self.cfg.delete_delay_ms)
            .map(|(id, _)| *id)
            .collect();
        let task = self.counted_task("deleting blocks marked for deletion", due.len() as u64);
        let deleter = self.hooked(None, Some(Phase::Delete));
        for (k, id) in due.into_iter().enumerate() {
            task.set(k as u64);
            if !self.next_unit(lease).await {
                return Ok(());
            }
            match bucket::delete_block(&*deleter, id).await {
                Ok(_) => {
                    self.metrics.blocks_deleted.fetch_add(1, Ordering::Relaxed);
                    st.metas.remove(&id);
                    report.deleted.push(id);
                }
                Err(e) => report.errors.push(format!("deleting {id}: {e}")),
            }
        }
        // Partial uploads: ULID and newest object both older than the delay.
        for (id, newest) in st.partial.clone() {
            let delay = self.cfg.delete_delay_ms;
            if now - ulid_time_ms(id) < delay || now - newest < delay {
                continue;
            }
            if !self.next_unit(lease).await {
                return Ok(());
            }
            tracing::info!(block = %id, "deleting aborted partial upload");
            match bucket::delete_block(&*self.store, id).await {
                Ok(_) => {
                    self.metrics
                        .partial_uploads_deleted
                        .fetch_add(1, Ordering::Relaxed);
                    report.partial_deleted.push(id);
                }
                Err(e) => report.errors.push(format!("deleting partial {id}: {e}")),
            }
        }
        drop(task);
        // Keep the shared bucket index current for the store.
        self.refresh_bucket_index().await;
        Ok(())
    }

    async fn refresh_bucket_index(&self) {
        use bucket::bucket_index;
        let stored = bucket_index::load(&*self.store).await.ok().flatten();
        let (prev, version) = match stored {
            Some(s) => (Some(s.index), Some(s.version)),
            None => (None, None),
        };
        match bucket_index::update(&*self.store, prev.as_ref()).await {
            Ok(idx) => {
                self.at(Phase::BucketIndex).await;
                if let Err(e) = bucket_index::write(&*self.store, &idx, version).await {
                    tracing::warn!(error = %e, "writing the bucket index failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "updating the bucket index failed"),
        }
    }

    /// Plans and compacts groups until nothing is left to do. Returns false when
    /// the lease was lost.
    async fn compact_all(
        &self,
        lease: Option<&Lease>,
        st: &mut BucketState,
        report: &mut PassReport,
    ) -> bool {
        let mut failed_groups: HashSet<GroupKey> = HashSet::new();
        for _round in 0..10_000 {
            let live = self.live(st);
            let groups = plan::group_blocks(&live, &self.cfg.replica_labels);
            let mut jobs = Vec::new();
            for (key, metas) in groups {
                if failed_groups.contains(&key) {
                    continue;
                }
                let p = plan::plan(&self.cfg.ranges, &metas, &st.no_compact);
                if !p.is_empty() {
                    jobs.push((key, p));
                }
            }
            if jobs.is_empty() {
                return true;
            }
            if !self.next_unit(lease).await {
                return false;
            }
            // Each group is a unit: one past the deadline is not started.
            let results: Vec<GroupResult> = stream::iter(jobs)
                .map(|(key, p)| async move {
                    if self.past_deadline() {
                        return (key, p, None);
                    }
                    let r = self.compact_group(&key, &p, lease).await;
                    (key, p, Some(r))
                })
                .buffer_unordered(self.cfg.concurrency.max(1))
                .collect()
                .await;
            let mut stopped = false;
            for (key, p, r) in results {
                let Some(r) = r else {
                    stopped = true;
                    continue;
                };
                match r {
                    Ok(new) => {
                        let sources: Vec<Ulid> = p.iter().map(|m| m.ulid).collect();
                        for s in &sources {
                            st.deletion.insert(*s, self.clock.now_ms() / 1000);
                            report.marked_for_deletion.push(*s);
                        }
                        self.meta_cache
                            .lock()
                            .unwrap()
                            .insert(new.ulid, new.clone());
                        st.metas.insert(new.ulid, new.clone());
                        report.compacted.push((new.ulid, sources));
                    }
                    Err(e) => {
                        self.metrics
                            .compaction_failures
                            .fetch_add(1, Ordering::Relaxed);
                        match &e {
                            MergeError::BadBlock { id, .. } if p.iter().any(|m| m.ulid == *id) => {
                                let id = *id;
                                self.mark_no_compact(id, &e, report).await;
                                st.no_compact.insert(id);
                            }
                            _ => {
                                tracing::error!(group = %key, error = %e, "group compaction failed; retrying next pass");
                                report.errors.push(format!("group {key}: {e}"));
                                failed_groups.insert(key);
                            }
                        }
                    }
                }
            }
            if stopped {
                // Logs the stop once and reports it.
                self.next_unit(lease).await;
                return false;
            }
        }
        true
    }

    async fn open(&self, meta: &BlockMeta) -> Result<tsdb::block::Block, MergeError> {
        bucket::open_block(self.store.clone(), meta.clone(), None)
            .await
            .map_err(|e| classify_bucket_error(meta.ulid, e))
    }

    /// Compacts one plan: merge, upload (meta.json last), header cache, then mark
    /// the sources for deletion.
    async fn compact_group(
        &self,
        key: &GroupKey,
        p: &[BlockMeta],
        lease: Option<&Lease>,
    ) -> Result<BlockMeta, MergeError> {
        let mut blocks = Vec::with_capacity(p.len());
        for m in p {
            blocks.push(self.open(m).await?);
        }
        let ulid = Ulid::new();
        let dir = self.work_dir("compact");
        let first = &p[0];
        let mut thanos = ThanosMeta::new(
            "compactor",
            plan::stream_labels(first, &self.cfg.replica_labels),
        );
        thanos.downsample.resolution = key.resolution;
        tracing::info!(group = %key, blocks = ?p.iter().map(|m| m.ulid.to_string()).collect::<Vec<_>>(), new = %ulid, "compacting");
        let task = self.task(&format!("compacting {} blocks of {key}", p.len()), 0);
        let on_series = |done: u64, total: u64| task.set_of(done, total);
        let opts = MergeOptions {
            dedup: self.cfg.dedup,
            hook: self.hook.as_deref(),
            on_series: Some(&on_series),
        };
        let written = merge_blocks_with(&blocks, &dir, ulid, thanos.clone(), opts).await;
        drop(task);
        let written = match written {
            Ok(w) => w,
            Err(MergeError::Write(e)) if e.to_string().contains("no samples") => {
                // Every source was empty (all samples deleted): just retire them.
                tracing::warn!(group = %key, "compaction produced no samples; marking the sources for deletion");
                for m in p {
                    let _ = self
                        .mark_for_deletion(m.ulid, "compacted into nothing (no samples)")
                        .await;
                }
                return Err(MergeError::Write(e));
            }
            Err(e) => return Err(e),
        };
        let mut meta = written.clone();
        meta.min_time = p
            .iter()
            .map(|m| m.min_time)
            .min()
            .unwrap_or(written.min_time);
        meta.max_time = p
            .iter()
            .map(|m| m.max_time)
            .max()
            .unwrap_or(written.max_time);
        let mut sources: Vec<Ulid> = p
            .iter()
            .flat_map(|m| m.compaction.sources.iter().copied())
            .collect();
        sources.sort();
        sources.dedup();
        meta.compaction.level = p.iter().map(|m| m.compaction.level).max().unwrap_or(1) + 1;
        meta.compaction.sources = sources;
        meta.compaction.parents = p
            .iter()
            .map(|m| BlockDesc {
                ulid: m.ulid,
                min_time: m.min_time,
                max_time: m.max_time,
            })
            .collect();
        let block_dir = dir.join(ulid.to_string());
        let uploaded = self.upload(&block_dir, &meta, Phase::Upload).await?;
        self.at(Phase::Uploaded).await;
        if !self.renew(lease).await {
            // The new block is complete; the sources are covered by it and get
            // marked by the next pass that holds the lease.
            return Err(MergeError::Write(tsdb::Error::invalid(
                "compactor",
                "lease lost before marking sources",
            )));
        }
        for (k, m) in p.iter().enumerate() {
            if let Err(e) = self
                .mark_for_deletion(m.ulid, &format!("compacted into {ulid}"))
                .await
            {
                tracing::warn!(block = %m.ulid, error = %e, "marking a compacted source failed; the next pass marks it");
            }
            if k == 0 {
                self.at(Phase::MarkSources).await;
            }
        }
        self.metrics.compactions.fetch_add(1, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&block_dir);
        Ok(uploaded)
    }

    async fn upload(
        &self,
        block_dir: &FsPath,
        meta: &BlockMeta,
        phase: Phase,
    ) -> Result<BlockMeta, MergeError> {
        let store = self.hooked(Some(phase), None);
        let up = bucket::upload_block_with(&*store, block_dir, Some(meta), &self.cfg.upload)
            .await
            .map_err(|e| MergeError::Transient {
                id: meta.ulid,
                err: tsdb::Error::invalid("upload", e.to_string()),
            })?;
        // Shared index cache: the header from the local index, written once.
        match tsdb::FileRange::open(block_dir.join("index")) {
            Ok(f) => match tsdb::index::IndexHeader::read(&f).await {
                Ok(h) => {
                    bucket::header_cache::write_header(&*self.store, meta.ulid, &h, false).await;
                }
                Err(e) => {
                    tracing::warn!(block = %meta.ulid, error = %e, "building the index header failed")
                }
            },
            Err(e) => {
                tracing::warn!(block = %meta.ulid, error = %e, "opening the local index failed")
            }
        }
        Ok(up.meta)
    }

    /// Downsamples every candidate once. Returns false when the lease was lost.
    async fn downsample_all(
        &self,
        lease: Option<&Lease>,
        st: &mut BucketState,
        report: &mut PassReport,
    ) -> bool {
        let live = self.live(st);
        let cands = plan::downsample_candidates(&live, &st.no_downsample);
        let dir = self.work_dir("downsample");
        for (m, res) in cands {
            if !self.next_unit(lease).await {
                return false;
            }
            let ulid = Ulid::new();
            tracing::info!(block = %m.ulid, resolution = res, new = %ulid, "downsampling");
            let r = async {
                let b = self.open(&m).await?;
                let task = self.task(&format!("downsampling {} to {}", m.ulid, res_name(res)), 0);
                let on_series = |done: u64, total: u64| task.set_of(done, total);
                let meta =
                    crate::downsample::downsample_block_with(&b, &dir, ulid, res, Some(&on_series))
                        .await?;
                drop(task);
                let Some(meta) = meta else {
                    return Ok(None);
                };
                self.at(Phase::Downsample).await;
                let block_dir = dir.join(ulid.to_string());
                let up = self
                    .upload(&block_dir, &meta, Phase::DownsampleUpload)
                    .await?;
                let _ = std::fs::remove_dir_all(&block_dir);
                Ok::<_, MergeError>(Some(up))
            }
            .await;
            match r {
                Ok(Some(new)) => {
                    self.metrics.downsamples.fetch_add(1, Ordering::Relaxed);
                    self.meta_cache
                        .lock()
                        .unwrap()
                        .insert(new.ulid, new.clone());
                    st.metas.insert(new.ulid, new);
                    report.downsampled.push((m.ulid, ulid, res));
                }
                Ok(None) => {
                    tracing::warn!(block = %m.ulid, "nothing to downsample (no float samples)");
                    let _ = bucket::mark_no_downsample(
                        &*self.store,
                        m.ulid,
                        "manual",
                        "no float samples to downsample",
                    )
                    .await;
                    st.no_downsample.insert(m.ulid);
                }
                Err(e) => {
                    self.metrics
                        .downsample_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if let MergeError::BadBlock { id, .. } = &e {
                        let id = *id;
                        self.mark_no_compact(id, &e, report).await;
                        let _ =
                            bucket::mark_no_downsample(&*self.store, id, "manual", &e.to_string())
                                .await;
                        st.no_compact.insert(id);
                        st.no_downsample.insert(id);
                    } else {
                        report.errors.push(format!("downsampling {}: {e}", m.ulid));
                    }
                }
            }
        }
        true
    }
}

fn res_name(res: i64) -> &'static str {
    match res {
        tsdb::meta::RES_5M => "5m",
        tsdb::meta::RES_1H => "1h",
        _ => "raw",
    }
}

/// A step reported to the [`Progress`] sink; ends when dropped.
struct Task<'a> {
    progress: Option<&'a dyn Progress>,
    key: u64,
}

impl Task<'_> {
    fn set(&self, done: u64) {
        if let Some(p) = self.progress {
            p.set(self.key, done, 0);
        }
    }

    fn set_of(&self, done: u64, total: u64) {
        if let Some(p) = self.progress {
            p.set(self.key, done, total);
        }
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.progress {
            p.end(self.key);
        }
    }
}

fn classify_bucket_error(id: Ulid, e: bucket::Error) -> MergeError {
    let bad = match &e {
        bucket::Error::Tsdb(t) => is_bad_block_error(t),
        bucket::Error::NotFound { .. }
        | bucket::Error::InvalidObject { .. }
        | bucket::Error::SizeMismatch { .. } => true,
        bucket::Error::Store { source, .. } => {
            matches!(**source, object_store::Error::NotFound { .. })
        }
        _ => false,
    };
    let err = match e {
        bucket::Error::Tsdb(t) => *t,
        other => tsdb::Error::invalid("bucket", other.to_string()),
    };
    if bad {
        MergeError::BadBlock { id, err }
    } else {
        MergeError::Transient { id, err }
    }
}
