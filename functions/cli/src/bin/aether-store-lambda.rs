//! The store-read handler as an AWS Lambda function: each invocation is one
//! StoreAPI call (`storeapi::lambda` payloads: Info, Series, LabelNames,
//! LabelValues) answered from the bucket. Configuration: see `lambda_env`.

#[path = "../lambda_env.rs"]
mod lambda_env;

use std::sync::Arc;

fn main() -> std::process::ExitCode {
    lambda_env::run(async {
        let (cfg, bucket, _stats) = lambda_env::bucket()?;
        let store = Arc::new(lambda_env::bucket_store(bucket)?);
        tracing::info!(bucket = %cfg.describe(), "store-read function ready");
        serve::lambda::run_events(move |event, _deadline| {
            let store = Arc::clone(&store);
            async move {
                let payload = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
                let answer = storeapi::lambda::handle(&*store, &payload).await;
                serde_json::to_value(answer).map_err(|e| e.to_string())
            }
        })
        .await?;
        Ok(())
    })
}
