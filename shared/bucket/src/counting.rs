//! [`CountingStore`]: an [`ObjectStore`] wrapper that counts requests by kind, so
//! tests and metrics can see how many GETs a read path costs.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

/// The kind of a request, as counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Get,
    GetRange,
    Head,
    Put,
    MultipartStart,
    MultipartPart,
    List,
    Delete,
    Copy,
}

/// Request counters. Cheap relaxed atomics; read them with the accessor methods or
/// [`RequestStats::snapshot`]. Optionally also a log of every request (kind and
/// path, in order), for tests: [`RequestStats::start_log`].
#[derive(Debug, Default)]
pub struct RequestStats {
    logging: AtomicBool,
    log: Mutex<Vec<(RequestKind, String)>>,
    get: AtomicU64,
    get_range: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    multipart_uploads: AtomicU64,
    multipart_parts: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
    get_bytes: AtomicU64,
}

/// A point-in-time copy of [`RequestStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// GETs of whole objects.
    pub get: u64,
    /// GETs of a byte range.
    pub get_range: u64,
    pub head: u64,
    /// Single-request PUTs.
    pub put: u64,
    /// Multipart uploads started.
    pub multipart_uploads: u64,
    /// Parts uploaded in multipart uploads.
    pub multipart_parts: u64,
    /// List requests (recursive listings count once per call, not per page).
    pub list: u64,
    /// Objects deleted (or asked to be).
    pub delete: u64,
    /// Copies and renames.
    pub copy: u64,
    /// Bytes requested by ranged GETs (whole-object GETs are not counted).
    pub get_range_bytes: u64,
}

impl StatsSnapshot {
    /// All GET requests, whole and ranged.
    pub fn gets(&self) -> u64 {
        self.get + self.get_range
    }
}

impl RequestStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            get: l(&self.get),
            get_range: l(&self.get_range),
            head: l(&self.head),
            put: l(&self.put),
            multipart_uploads: l(&self.multipart_uploads),
            multipart_parts: l(&self.multipart_parts),
            list: l(&self.list),
            delete: l(&self.delete),
            copy: l(&self.copy),
            get_range_bytes: l(&self.get_bytes),
        }
    }

    /// All GET requests (whole objects and ranges).
    pub fn gets(&self) -> u64 {
        self.snapshot().gets()
    }

    pub fn get_ranges(&self) -> u64 {
        self.get_range.load(Ordering::Relaxed)
    }

    pub fn heads(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    pub fn puts(&self) -> u64 {
        self.put.load(Ordering::Relaxed)
    }

    pub fn lists(&self) -> u64 {
        self.list.load(Ordering::Relaxed)
    }

    pub fn deletes(&self) -> u64 {
        self.delete.load(Ordering::Relaxed)
    }

    /// Starts (or restarts, clearing it) the request log.
    pub fn start_log(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
        self.logging.store(true, Ordering::SeqCst);
    }

    /// Stops logging and returns the requests logged since [`Self::start_log`].
    pub fn take_log(&self) -> Vec<(RequestKind, String)> {
        self.logging.store(false, Ordering::SeqCst);
        self.log
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    fn record(&self, kind: RequestKind, path: &Path) {
        let counter = match kind {
            RequestKind::Get => &self.get,
            RequestKind::GetRange => &self.get_range,
            RequestKind::Head => &self.head,
            RequestKind::Put => &self.put,
            RequestKind::MultipartStart => &self.multipart_uploads,
            RequestKind::MultipartPart => &self.multipart_parts,
            RequestKind::List => &self.list,
            RequestKind::Delete => &self.delete,
            RequestKind::Copy => &self.copy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.logging.load(Ordering::Relaxed) {
            if let Ok(mut l) = self.log.lock() {
                l.push((kind, path.to_string()));
            }
        }
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        for a in [
            &self.get,
            &self.get_range,
            &self.head,
            &self.put,
            &self.multipart_uploads,
            &self.multipart_parts,
            &self.list,
            &self.delete,
            &self.copy,
            &self.get_bytes,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// Wraps a store and counts its requests. Its `Display` is the given name (or the
/// inner store's), which the crate's errors use as the bucket's name.
///
/// `get_ranges` is not forwarded to the inner store: object_store's default
/// implementation runs (coalescing ranges closer than 1 MiB) and each resulting
/// ranged GET passes through here and is counted.
#[derive(Debug, Clone)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    stats: Arc<RequestStats>,
    name: Option<String>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore {
            inner,
            stats: Arc::default(),
            name: None,
        }
    }

    /// A counting wrapper that displays as `name` (e.g. `s3://bucket/prefix`).
    pub fn with_name(inner: Arc<dyn ObjectStore>, name: impl Into<String>) -> Self {
        CountingStore {
            inner,
            stats: Arc::default(),
            name: Some(name.into()),
        }
    }

    /// Shares counters with another wrapper.
    pub fn with_stats(mut self, stats: Arc<RequestStats>) -> Self {
        self.stats = stats;
        self
    }

    pub fn stats(&self) -> Arc<RequestStats> {
        Arc::clone(&self.stats)
    }

    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Wraps `inner`, returning the wrapper as a trait object and its counters.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> (Arc<dyn ObjectStore>, Arc<RequestStats>) {
        let c = CountingStore::new(inner);
        let stats = c.stats();
        (Arc::new(c), stats)
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => f.write_str(n),
            None => fmt::Display::fmt(&self.inner, f),
        }
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    stats: Arc<RequestStats>,
    path: Path,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.stats.record(RequestKind::MultipartPart, &self.path);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.stats.record(RequestKind::Put, location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.stats.record(RequestKind::MultipartStart, location);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            stats: Arc::clone(&self.stats),
            path: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            self.stats.record(RequestKind::Head, location);
        } else if let Some(r) = &options.range {
            self.stats.record(RequestKind::GetRange, location);
            if let object_store::GetRange::Bounded(b) = r {
                self.stats
                    .get_bytes
                    .fetch_add(b.end.saturating_sub(b.start), Ordering::Relaxed);
            }
        } else {
            self.stats.record(RequestKind::Get, location);
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stats = Arc::clone(&self.stats);
        let counted = locations
            .inspect(move |l| {
                if let Ok(p) = l {
                    stats.record(RequestKind::Delete, p);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.stats
            .record(RequestKind::List, prefix.unwrap_or(&Path::default()));
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.stats
            .record(RequestKind::List, prefix.unwrap_or(&Path::default()));
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.stats
            .record(RequestKind::List, prefix.unwrap_or(&Path::default()));
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.stats.record(RequestKind::Copy, to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.stats.record(RequestKind::Copy, to);
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn counts_each_kind() {
        let (store, stats) = CountingStore::wrap(Arc::new(InMemory::new()));
        let p = Path::from("a/b");
        store.put(&p, vec![0u8; 100].into()).await.unwrap();
        store.get(&p).await.unwrap().bytes().await.unwrap();
        store.get_range(&p, 10..20).await.unwrap();
        store.head(&p).await.unwrap();
        store.list_with_delimiter(None).await.unwrap();
        stats.start_log();
        store.delete(&p).await.unwrap();
        assert_eq!(
            stats.take_log(),
            vec![(RequestKind::Delete, "a/b".to_string())]
        );
        let s = stats.snapshot();
        assert_eq!(
            (s.put, s.get, s.get_range, s.head, s.list, s.delete),
            (1, 1, 1, 1, 1, 1)
        );
        assert_eq!(s.get_range_bytes, 10);
        assert_eq!(s.gets(), 2);
        stats.reset();
        assert_eq!(stats.snapshot(), StatsSnapshot::default());
    }

    #[tokio::test]
    async fn get_ranges_counted_per_request() {
        let (store, stats) = CountingStore::wrap(Arc::new(InMemory::new()));
        let p = Path::from("x");
        store.put(&p, vec![7u8; 4 << 20].into()).await.unwrap();
        // Two close ranges coalesce (1 MiB default), the far one is separate.
        let out = store
            .get_ranges(&p, &[0..10, 100..200, (3 << 20)..(3 << 20) + 5])
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [10, 100, 5]
        );
        assert_eq!(stats.get_ranges(), 2);
    }
}
