//! The querier as an AWS Lambda function behind a Function URL: Prometheus's
//! HTTP API and the UI (the same axum Router as `aether query`), reading
//! - the bucket in-process through the store-read handler (the shared index
//!   cache in the bucket makes a cold instance cheap); and, when
//!   `AETHER_STORE_FUNCTION` names the store-read function, requests spanning
//!   more than `AETHER_FANOUT_ABOVE` (default 24h) by invoking it, split by
//!   time over `AETHER_FANOUT` (default 4) parallel invocations;
//! - and any StoreAPI endpoints in `AETHER_ENDPOINTS` (comma-separated, e.g.
//!   sidecars reachable from the function's VPC), over gRPC.
//!
//! Settings: `AETHER_REPLICA_LABELS` (comma-separated), `AETHER_QUERY_TIMEOUT`
//! (default 60s), `AETHER_LOOKBACK_DELTA` (5m), `AETHER_PARTIAL_RESPONSE`
//! (`true`/`false`, default false), `AETHER_AUTO_DOWNSAMPLING` (default
//! true), and the bucket (see `lambda_env`).

#[path = "../lambda_env.rs"]
mod lambda_env;

use std::sync::Arc;
use std::time::Duration;

use storeapi::StoreApi;

fn flag(name: &str, default: bool) -> anyhow::Result<bool> {
    match lambda_env::var(name).as_deref() {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => anyhow::bail!("{name}={v:?}: want true or false"),
    }
}

fn main() -> std::process::ExitCode {
    lambda_env::run(async {
        let (cfg, bucket, _stats) = lambda_env::bucket()?;
        let mut stores: Vec<(String, Arc<dyn StoreApi>)> = Vec::new();
        match lambda_env::var("AETHER_STORE_FUNCTION") {
            Some(function) => {
                let width: usize = match lambda_env::var("AETHER_FANOUT") {
                    None => 4,
                    Some(v) => v
                        .parse()
                        .map_err(|_| anyhow::anyhow!("AETHER_FANOUT={v:?}: want a number"))?,
                };
                let invoker = Arc::new(serve::lambda::AwsInvoker::from_env().await);
                let invoked: Arc<dyn StoreApi> = Arc::new(storeapi::lambda::InvokedStore::new(
                    invoker,
                    function.clone(),
                ));
                let above =
                    lambda_env::duration("AETHER_FANOUT_ABOVE", Duration::from_secs(86_400))?;
                let wide: Arc<dyn StoreApi> =
                    Arc::new(storeapi::lambda::TimeSplitStore::new(invoked, width));
                let narrow: Arc<dyn StoreApi> = Arc::new(lambda_env::bucket_store(bucket)?);
                stores.push((
                    format!("bucket+lambda:{function}"),
                    Arc::new(storeapi::lambda::SpanRouter::new(
                        narrow,
                        wide,
                        i64::try_from(above.as_millis()).unwrap_or(i64::MAX),
                    )),
                ));
            }
            None => {
                stores.push((
                    "bucket".to_string(),
                    Arc::new(lambda_env::bucket_store(bucket)?),
                ));
            }
        }
        for addr in lambda_env::list("AETHER_ENDPOINTS") {
            let client = storeapi::grpc::GrpcStore::connect_lazy(
                &addr,
                storeapi::grpc::ClientOptions::default(),
            )?;
            stores.push((addr, Arc::new(client)));
        }
        let set = Arc::new(query::EndpointSet::from_stores(stores));
        let config = query::QuerierConfig {
            replica_labels: lambda_env::list("AETHER_REPLICA_LABELS"),
            timeout: lambda_env::duration("AETHER_QUERY_TIMEOUT", Duration::from_secs(60))?,
            lookback_delta: lambda_env::duration(
                "AETHER_LOOKBACK_DELTA",
                Duration::from_secs(300),
            )?,
            partial_response: flag("AETHER_PARTIAL_RESPONSE", false)?,
            auto_downsampling: flag("AETHER_AUTO_DOWNSAMPLING", true)?,
            ..query::QuerierConfig::default()
        };
        tracing::info!(bucket = %cfg.describe(), "query function ready");
        let querier = query::Querier::new(set, config);
        serve::lambda::run_http(query::router(querier)).await?;
        Ok(())
    })
}
