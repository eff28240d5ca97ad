//! `aether store`: flags -> the store-read handler served over gRPC and HTTP.

use std::sync::Arc;

use crate::components::StoreArgs;

use serve::shutdown_signal;

/// Runs `aether store` until SIGTERM / Ctrl-C.
pub async fn run(a: StoreArgs) -> anyhow::Result<()> {
    let objcfg = tools::bucket_tools::load_config(
        a.objstore.objstore_config_file.as_deref(),
        a.objstore.objstore_config.as_deref(),
    )?;
    let (bucket, stats) = objcfg.build_with_stats()?;
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<store::TimeBound>> {
        v.as_deref()
            .map(|s| store::TimeBound::parse(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
            .transpose()
    };
    let cfg = store::StoreConfig {
        min_time: time("min-time", &a.min_time)?,
        max_time: time("max-time", &a.max_time)?,
        index_cache_bytes: store::parse_bytes(&a.index_cache_size)
            .map_err(|e| anyhow::anyhow!("--index-cache-size: {e}"))?,
        series_limit: a.request_series_limit,
        samples_limit: a.request_samples_limit,
        local_header_dir: Some(std::path::Path::new(&a.data_dir).join("index-headers")),
        ..Default::default()
    };
    let mode = serve::Mode::detect()?;
    let listeners = serve::bind(
        mode,
        &a.server.http_address,
        Some(a.server.grpc_address.as_str()),
    )
    .await?;
    tracing::info!(
        bucket = %objcfg.describe(),
        ?mode,
        http = %listeners.http.local_addr()?,
        grpc = ?listeners.grpc.as_ref().map(|l| l.local_addr()).transpose()?,
        "store serving the bucket's blocks"
    );
    let server = store::server::Server {
        store: store::BucketStore::new(bucket, cfg),
        bucket_stats: Some(Arc::clone(&stats)),
        listeners,
    };
    store::server::run(server, shutdown_signal()).await?;
    Ok(())
}
