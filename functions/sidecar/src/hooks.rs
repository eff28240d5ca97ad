//! A test hook for crash tests, off unless the environment variable
//! `AETHER_SIDECAR_TEST_PAUSE` is set: the bucket is wrapped so that the first
//! upload reaching the named point stops there for good (the process keeps
//! running, so a test can `kill -9` it at exactly that point). Points:
//! `after-chunks` (chunk files uploaded, index not yet), `before-meta` (index
//! uploaded, `meta.json` not yet), `after-meta` (`meta.json` uploaded, the state
//! file not yet updated). When paused it prints
//! `AETHER_TEST_PAUSED point=<point> key=<key>` to stderr.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bucket::object_store::path::Path;
use bucket::object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures::stream::BoxStream;

/// The environment variable naming the pause point.
pub const PAUSE_ENV: &str = "AETHER_SIDECAR_TEST_PAUSE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    AfterChunks,
    BeforeMeta,
    AfterMeta,
}

/// Wraps `store` when [`PAUSE_ENV`] names a point.
pub fn wrap_from_env(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let point = match std::env::var(PAUSE_ENV).as_deref() {
        Ok("after-chunks") => Point::AfterChunks,
        Ok("before-meta") => Point::BeforeMeta,
        Ok("after-meta") => Point::AfterMeta,
        Ok(other) => {
            tracing::warn!("{PAUSE_ENV}={other:?} is not a known point; ignored");
            return store;
        }
        Err(_) => return store,
    };
    tracing::warn!(?point, "test hook active: uploads will pause");
    Arc::new(PauseStore {
        inner: store,
        point,
        fired: AtomicBool::new(false),
    })
}

#[derive(Debug)]
struct PauseStore {
    inner: Arc<dyn ObjectStore>,
    point: Point,
    fired: AtomicBool,
}

impl fmt::Display for PauseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

fn is_block_file(p: &Path, name: &str) -> bool {
    let parts: Vec<_> = p.parts().collect();
    parts.len() == 2
        && parts[1].as_ref() == name
        && ulid::Ulid::from_string(parts[0].as_ref()).is_ok()
}

impl PauseStore {
    async fn maybe_pause(&self, at: Point, location: &Path) {
        if at == self.point && !self.fired.swap(true, Ordering::SeqCst) {
            let name = match at {
                Point::AfterChunks => "after-chunks",
                Point::BeforeMeta => "before-meta",
                Point::AfterMeta => "after-meta",
            };
            eprintln!("AETHER_TEST_PAUSED point={name} key={location}");
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl ObjectStore for PauseStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> bucket::object_store::Result<PutResult> {
        if is_block_file(location, "index") {
            self.maybe_pause(Point::AfterChunks, location).await;
        }
        if is_block_file(location, "meta.json") {
            self.maybe_pause(Point::BeforeMeta, location).await;
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        if is_block_file(location, "meta.json") {
            self.maybe_pause(Point::AfterMeta, location).await;
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> bucket::object_store::Result<Box<dyn MultipartUpload>> {
        if is_block_file(location, "index") {
            self.maybe_pause(Point::AfterChunks, location).await;
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> bucket::object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, bucket::object_store::Result<Path>>,
    ) -> BoxStream<'static, bucket::object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, bucket::object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> bucket::object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: bucket::object_store::CopyOptions,
    ) -> bucket::object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
