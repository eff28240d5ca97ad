//! Observation points of a pass, for crash tests and progress display.
//!
//! A [`PhaseHook`] is awaited at every [`Phase`] a pass reaches. Production code
//! installs none. The crash tests install [`PauseAt`] (through the environment
//! variable [`PAUSE_ENV`], read by `aether compact`): the first time the pass
//! reaches the named phase it prints `AETHER_TEST_PAUSED phase=<name>` to stderr
//! and stops there for good, so that the test can `kill -9` the process at exactly
//! that point — deterministically, without sleeps. It is compiled in always and is
//! a testing aid only: never set the variable in production.
//!
//! Phases reached inside the object store (in the middle of an upload or of a
//! block deletion) are observed by wrapping the bucket in [`HookStore`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// The environment variable naming the phase at which `aether compact` pauses.
pub const PAUSE_ENV: &str = "AETHER_COMPACT_TEST_PAUSE";

/// Points of a pass, in the order a pass reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Merging source blocks: the first merged series is written to local disk,
    /// nothing of the new block is in the bucket yet.
    Merge,
    /// Uploading the compacted block: its chunks are in the bucket, its index and
    /// `meta.json` are not.
    Upload,
    /// The compacted block is complete in the bucket; no source is marked yet.
    Uploaded,
    /// The first source of a compaction is marked for deletion, the others not.
    MarkSources,
    /// A downsampled block is written locally, nothing of it uploaded.
    Downsample,
    /// Uploading a downsampled block: chunks up, index and `meta.json` not.
    DownsampleUpload,
    /// The first block expired by retention is marked for deletion, others not.
    Retention,
    /// Deleting a block: its `meta.json` is gone, its other files are not.
    Delete,
    /// About to write the bucket index.
    BucketIndex,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Merge,
        Phase::Upload,
        Phase::Uploaded,
        Phase::MarkSources,
        Phase::Downsample,
        Phase::DownsampleUpload,
        Phase::Retention,
        Phase::Delete,
        Phase::BucketIndex,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Merge => "merge",
            Phase::Upload => "upload",
            Phase::Uploaded => "uploaded",
            Phase::MarkSources => "mark-sources",
            Phase::Downsample => "downsample",
            Phase::DownsampleUpload => "downsample-upload",
            Phase::Retention => "retention",
            Phase::Delete => "delete",
            Phase::BucketIndex => "bucket-index",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Called (and awaited) whenever a pass reaches a [`Phase`].
pub trait PhaseHook: Send + Sync + fmt::Debug {
    fn reached(&self, phase: Phase) -> BoxFuture<'_, ()>;
}

/// Progress of long steps (merging a group, downsampling a block, deleting
/// blocks), for a progress display. `key` tells concurrent tasks apart.
pub trait Progress: Send + Sync + fmt::Debug {
    /// A task starts; `total` units (series or blocks), 0 if unknown yet.
    fn begin(&self, key: u64, what: &str, total: u64);
    /// `done` of `total` units are done (`total` 0: as given to `begin`).
    fn set(&self, key: u64, done: u64, total: u64);
    /// The task ended (done or failed).
    fn end(&self, key: u64);
}

/// Pauses forever the first time `phase` is reached (crash tests).
#[derive(Debug)]
pub struct PauseAt {
    phase: Phase,
    fired: AtomicBool,
}

impl PauseAt {
    pub fn new(phase: Phase) -> Self {
        PauseAt {
            phase,
            fired: AtomicBool::new(false),
        }
    }
}

impl PhaseHook for PauseAt {
    fn reached(&self, phase: Phase) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if phase == self.phase && !self.fired.swap(true, Ordering::SeqCst) {
                eprintln!("AETHER_TEST_PAUSED phase={phase}");
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Why [`pause_hook_from_env`] refused the variable.
#[derive(Debug, thiserror::Error)]
#[error("{PAUSE_ENV}={value:?} is not a phase (one of: {known})")]
pub struct UnknownPhase {
    pub value: String,
    pub known: String,
}

/// The [`PauseAt`] hook named by [`PAUSE_ENV`], if set.
pub fn pause_hook_from_env() -> Result<Option<Arc<dyn PhaseHook>>, UnknownPhase> {
    let Ok(v) = std::env::var(PAUSE_ENV) else {
        return Ok(None);
    };
    match Phase::parse(&v) {
        Some(p) => {
            tracing::warn!(phase = %p, "{PAUSE_ENV} is set: this pass will stop for good at that phase (a testing aid)");
            Ok(Some(Arc::new(PauseAt::new(p))))
        }
        None => Err(UnknownPhase {
            value: v,
            known: Phase::ALL.map(Phase::name).join(", "),
        }),
    }
}

/// Whether `p` is `<ULID>/<name>`.
fn is_block_file(p: &Path, name: &str) -> bool {
    let parts: Vec<_> = p.parts().collect();
    parts.len() == 2
        && parts[1].as_ref() == name
        && ulid::Ulid::from_string(parts[0].as_ref()).is_ok()
}

/// A bucket that reports phases reached inside object-store calls: `upload`
/// (before a block's `index` is written, i.e. after its chunks) and `delete`
/// (after a block's `meta.json` is deleted).
#[derive(Debug)]
pub struct HookStore {
    inner: Arc<dyn ObjectStore>,
    hook: Arc<dyn PhaseHook>,
    upload: Option<Phase>,
    delete: Option<Phase>,
}

impl HookStore {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        hook: Arc<dyn PhaseHook>,
        upload: Option<Phase>,
        delete: Option<Phase>,
    ) -> Self {
        HookStore {
            inner,
            hook,
            upload,
            delete,
        }
    }

    async fn before_put(&self, location: &Path) {
        if let Some(p) = self.upload {
            if is_block_file(location, "index") {
                self.hook.reached(p).await;
            }
        }
    }
}

impl fmt::Display for HookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl ObjectStore for HookStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.before_put(location).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.before_put(location).await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.delete_stream(locations);
        let Some(phase) = self.delete else {
            return inner;
        };
        let hook = self.hook.clone();
        inner
            .then(move |r| {
                let hook = hook.clone();
                async move {
                    if let Ok(p) = &r {
                        if is_block_file(p, tsdb::meta::META_FILENAME) {
                            hook.reached(phase).await;
                        }
                    }
                    r
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.name()), Some(p));
        }
        assert_eq!(Phase::parse("nope"), None);
    }

    #[derive(Debug, Default)]
    struct Record(std::sync::Mutex<Vec<Phase>>);
    impl PhaseHook for Record {
        fn reached(&self, phase: Phase) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(phase);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn hook_store_reports_upload_and_delete_points() {
        use object_store::ObjectStoreExt;
        let mem: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let rec = Arc::new(Record::default());
        let s = HookStore::new(
            mem.clone(),
            rec.clone(),
            Some(Phase::Upload),
            Some(Phase::Delete),
        );
        let id = ulid::Ulid::new();
        let chunk = Path::from(format!("{id}/chunks/000001"));
        s.put(&chunk, PutPayload::from_static(b"c")).await.unwrap();
        assert!(rec.0.lock().unwrap().is_empty());
        s.put(
            &Path::from(format!("{id}/index")),
            PutPayload::from_static(b"i"),
        )
        .await
        .unwrap();
        assert_eq!(*rec.0.lock().unwrap(), vec![Phase::Upload]);
        let meta = Path::from(format!("{id}/meta.json"));
        s.put(&meta, PutPayload::from_static(b"{}")).await.unwrap();
        s.delete(&chunk).await.unwrap();
        assert_eq!(rec.0.lock().unwrap().len(), 1);
        s.delete(&meta).await.unwrap();
        assert_eq!(*rec.0.lock().unwrap(), vec![Phase::Upload, Phase::Delete]);
        assert!(mem.head(&meta).await.is_err());
    }
}
