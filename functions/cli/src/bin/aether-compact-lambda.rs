//! The compactor as an AWS Lambda function: one pass per invocation (an
//! EventBridge schedule), stopping at a safe point a minute before the
//! invocation's deadline; the next invocation continues from what the bucket
//! shows (compaction is crash-safe, and a lease object keeps two passes from
//! running at once).
//!
//! Settings (environment): `AETHER_RETENTION_RAW`, `AETHER_RETENTION_5M`,
//! `AETHER_RETENTION_1H` (`0d`: keep forever), `AETHER_DELETE_DELAY` (48h),
//! `AETHER_CONSISTENCY_DELAY` (30m), `AETHER_DOWNSAMPLING` (`true`),
//! `AETHER_REPLICA_LABELS` and `AETHER_DEDUP_FUNC` (`""` or `penalty`) for
//! vertical compaction of HA replicas, `AETHER_SAFETY_MARGIN` (1m: how long
//! before the deadline the pass stops starting work), and the bucket (see
//! `lambda_env`). Scratch space is `/tmp` (up to 10 GB on Lambda).

#[path = "../lambda_env.rs"]
mod lambda_env;

use std::sync::Arc;
use std::time::Duration;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn config() -> anyhow::Result<compact::CompactConfig> {
    let mut cfg = compact::CompactConfig::new(std::env::temp_dir().join("aether-compact"));
    let zero = Duration::ZERO;
    cfg.retention = compact::Retention {
        raw_ms: millis(lambda_env::duration("AETHER_RETENTION_RAW", zero)?),
        res_5m_ms: millis(lambda_env::duration("AETHER_RETENTION_5M", zero)?),
        res_1h_ms: millis(lambda_env::duration("AETHER_RETENTION_1H", zero)?),
    };
    cfg.delete_delay_ms = millis(lambda_env::duration(
        "AETHER_DELETE_DELAY",
        Duration::from_secs(48 * 3600),
    )?);
    cfg.consistency_delay_ms = millis(lambda_env::duration(
        "AETHER_CONSISTENCY_DELAY",
        Duration::from_secs(1800),
    )?);
    cfg.downsampling = match lambda_env::var("AETHER_DOWNSAMPLING").as_deref() {
        None | Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(v) => anyhow::bail!("AETHER_DOWNSAMPLING={v:?}: want true or false"),
    };
    cfg.replica_labels = lambda_env::list("AETHER_REPLICA_LABELS");
    let func = lambda_env::var("AETHER_DEDUP_FUNC").unwrap_or_default();
    cfg.dedup = compact::DedupFunc::parse(&func)
        .ok_or_else(|| anyhow::anyhow!("AETHER_DEDUP_FUNC={func:?}: want \"\" or \"penalty\""))?;
    Ok(cfg)
}

fn main() -> std::process::ExitCode {
    lambda_env::run(async {
        let (objcfg, bucket, _stats) = lambda_env::bucket()?;
        let mut cfg = config()?;
        cfg.upload = objcfg.upload_options();
        let margin = millis(lambda_env::duration(
            "AETHER_SAFETY_MARGIN",
            Duration::from_secs(60),
        )?);
        let holder = format!(
            "lambda:{}",
            std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "local".into())
        );
        let c = Arc::new(
            compact::Compactor::new(bucket, cfg, Arc::new(compact::SystemClock))
                .with_holder(holder),
        );
        tracing::info!(bucket = %objcfg.describe(), "compact function ready");
        serve::lambda::run_events(move |_event, deadline| {
            let c = Arc::clone(&c);
            async move {
                let r = c
                    .run_pass_until(Some(deadline.saturating_sub(margin)))
                    .await
                    .map_err(|e| e.to_string())?
                    .summary();
                for e in &r.errors {
                    tracing::warn!(error = %e, "pass error (retried next pass)");
                }
                serde_json::to_value(r).map_err(|e| e.to_string())
            }
        })
        .await?;
        Ok(())
    })
}
