//! The `aether store` process: the handler over gRPC (StoreAPI + Info) and HTTP
//! (`/metrics`, `/-/healthy`, `/-/ready`).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bucket::RequestStats;

use crate::BucketStore;

/// What the process serves.
pub struct Server {
    pub store: BucketStore,
    /// Request counts of the bucket client, for `/metrics`.
    pub bucket_stats: Option<Arc<RequestStats>>,
    /// Where to serve: a pod's HTTP and gRPC sockets, or Knative's one port
    /// (gRPC over h2c beside HTTP).
    pub listeners: serve::Listeners,
}

/// Prometheus text exposition of the handler's counters.
pub fn render_metrics(store: &BucketStore, stats: Option<&RequestStats>) -> String {
    let m = store.metrics();
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        "aether_store_series_requests_total",
        "Series requests.",
        l(&m.series_requests),
    );
    counter(
        "aether_store_label_requests_total",
        "LabelNames and LabelValues requests.",
        l(&m.label_requests),
    );
    counter(
        "aether_store_blocks_queried_total",
        "Blocks read for Series requests.",
        l(&m.blocks_queried),
    );
    counter(
        "aether_store_series_sent_total",
        "Series sent.",
        l(&m.series_sent),
    );
    counter(
        "aether_store_chunks_sent_total",
        "Chunks sent.",
        l(&m.chunks_sent),
    );
    counter(
        "aether_store_chunk_bytes_sent_total",
        "Chunk bytes sent.",
        l(&m.chunk_bytes_sent),
    );
    counter(
        "aether_store_block_warnings_total",
        "Blocks that failed and were reported as warnings.",
        l(&m.block_warnings),
    );
    counter(
        "aether_store_limit_errors_total",
        "Requests refused by the series/samples limits.",
        l(&m.limit_errors),
    );
    counter(
        "aether_store_headers_memory_total",
        "Index headers found in memory.",
        l(&m.headers_from_memory),
    );
    counter(
        "aether_store_headers_local_total",
        "Index headers read from the local scratch dir.",
        l(&m.headers_from_local),
    );
    counter(
        "aether_store_headers_bucket_total",
        "Index headers read from the bucket's cache objects.",
        l(&m.headers_from_bucket),
    );
    counter(
        "aether_store_headers_built_total",
        "Index headers built from the index (and written back).",
        l(&m.headers_built),
    );
    counter(
        "aether_store_bucket_index_loaded_total",
        "Bucket index syncs served by the stored index.",
        l(&m.index_loaded),
    );
    counter(
        "aether_store_bucket_index_listed_total",
        "Bucket index syncs that had to list the bucket.",
        l(&m.index_listed),
    );
    counter(
        "aether_store_bucket_index_sync_failures_total",
        "Failed bucket index syncs.",
        l(&m.index_sync_failures),
    );
    let c = store.cache_stats();
    counter("aether_store_index_cache_hits_total", "LRU hits.", c.hits);
    counter(
        "aether_store_index_cache_misses_total",
        "LRU misses.",
        c.misses,
    );
    counter(
        "aether_store_index_cache_evictions_total",
        "LRU evictions.",
        c.evictions,
    );
    let _ = writeln!(
        out,
        "# HELP aether_store_index_cache_bytes Bytes held by the LRU.\n# TYPE aether_store_index_cache_bytes gauge\naether_store_index_cache_bytes {}",
        c.bytes
    );
    if let Some(s) = stats {
        let s = s.snapshot();
        let _ = writeln!(out, "# HELP aether_objstore_requests_total Requests to the bucket by kind.\n# TYPE aether_objstore_requests_total counter");
        for (k, v) in [
            ("get", s.get),
            ("get_range", s.get_range),
            ("head", s.head),
            ("put", s.put),
            ("list", s.list),
            ("delete", s.delete),
        ] {
            let _ = writeln!(out, "aether_objstore_requests_total{{kind=\"{k}\"}} {v}");
        }
    }
    out
}

/// Serves until `shutdown` completes. The bucket index is read once before
/// `/-/ready` turns ready (a failure there is logged; requests retry it), then
/// re-read every `sync_interval` in the background so requests never wait for it.
pub async fn run(
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow_like::Result<()> {
    let Server {
        store,
        bucket_stats,
        listeners,
    } = server;
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Initial sync and periodic refresh (the handler itself would also refresh on
    // demand; this keeps request latency free of it in a long-lived pod).
    {
        let store = store.clone();
        let ready = ready.clone();
        let mut stop = stop_rx.clone();
        let every = store.config().sync_interval;
        tokio::spawn(async move {
            loop {
                match store.sync().await {
                    Ok(idx) => {
                        ready.store(true, Ordering::SeqCst);
                        tracing::info!(blocks = idx.blocks.len(), "bucket index synced");
                    }
                    Err(e) => tracing::warn!(error = %e, "bucket index sync failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }

    let app = {
        let store = store.clone();
        let ready = ready.clone();
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let store = store.clone();
                    let stats = bucket_stats.clone();
                    async move { render_metrics(&store, stats.as_deref()) }
                }),
            )
            .route("/-/healthy", get(|| async { "OK\n" }))
            .route(
                "/-/ready",
                get(move || {
                    let ready = ready.load(Ordering::SeqCst);
                    async move {
                        if ready {
                            (StatusCode::OK, "OK\n")
                        } else {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "bucket index not read yet\n",
                            )
                        }
                    }
                }),
            )
    };
    let adapter = storeapi::grpc::StoreGrpc::new(Arc::new(store) as Arc<dyn storeapi::StoreApi>);
    let routes =
        tonic::service::Routes::new(adapter.store_service()).add_service(adapter.info_service());
    let res = serve::serve(listeners, app, Some(routes), async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    res.map_err(|e| anyhow_like::Error(e.to_string()))
}

/// A minimal error for the process entry point.
pub mod anyhow_like {
    /// A server failure, as text.
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    pub type Result<T> = std::result::Result<T, Error>;
}
