//! `aether query`: flags -> the querier handler served over HTTP (API + UI) and
//! gRPC (the StoreAPI of everything it queries, so queriers stack).

use std::sync::Arc;
use std::time::Duration;

use crate::components::QueryArgs;

fn duration(flag: &str, v: &str) -> anyhow::Result<Duration> {
    bucket::config::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e}"))
}

use serve::shutdown_signal;

/// Runs `aether query` until SIGTERM / Ctrl-C.
pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let mut specs = a.endpoint.clone();
    specs.extend(a.store.iter().cloned());
    let sd_files: Vec<std::path::PathBuf> = a.store_sd_files.iter().map(Into::into).collect();
    if specs.is_empty() && sd_files.is_empty() {
        tracing::warn!("no --endpoint, --store or --store.sd-files: every query answers empty");
    }
    for u in &a.rule_url {
        query::rules_proxy::validate_rule_url(u)?;
    }
    let set = query::EndpointSet::new(
        &specs,
        &sd_files,
        query::endpoints::grpc_connector(storeapi::grpc::ClientOptions::default()),
        query::Intervals::default(),
    )
    .map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
    let config = query::QuerierConfig {
        replica_labels: a.replica_label.clone(),
        timeout: duration("query.timeout", &a.timeout)?,
        max_concurrent: a.max_concurrent.max(1),
        lookback_delta: duration("query.lookback-delta", &a.lookback_delta)?,
        partial_response: a.partial_response,
        max_samples: usize::try_from(a.max_samples).unwrap_or(usize::MAX),
        auto_downsampling: a.auto_downsampling,
        dynamic_lookback_delta: a.dynamic_lookback_delta,
        rule_urls: a.rule_url.clone(),
    };
    let set = Arc::new(set);
    let querier = query::Querier::new(Arc::clone(&set), config);
    let mode = serve::Mode::detect()?;
    let listeners = serve::bind(
        mode,
        &a.server.http_address,
        Some(a.server.grpc_address.as_str()),
    )
    .await?;
    tracing::info!(
        ?mode,
        http = %listeners.http.local_addr()?,
        grpc = ?listeners.grpc.as_ref().map(|l| l.local_addr()).transpose()?,
        endpoints = ?specs,
        rulers = ?a.rule_url,
        "querier serving"
    );
    // Endpoints are checked at start and then every 5 s, so that the UI's
    // endpoint page is fresh even without queries.
    let refresher = {
        let set = Arc::clone(&set);
        tokio::spawn(async move {
            loop {
                set.refresh(false).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };
    let proxy: Arc<dyn storeapi::StoreApi> = Arc::new(query::ProxyStore::new(Arc::clone(&set)));
    let adapter = storeapi::grpc::StoreGrpc::new(proxy);
    let routes =
        tonic::service::Routes::new(adapter.store_service()).add_service(adapter.info_service());
    let result = serve::serve(listeners, query::router(querier), Some(routes), async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    })
    .await;
    refresher.abort();
    result?;
    Ok(())
}
