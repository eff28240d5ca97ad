//! The ruler as an AWS Lambda function: one evaluation tick per invocation
//! (an EventBridge schedule, every minute), state in the bucket
//! (`rule::ruler::Ruler::tick`), recorded samples and `ALERTS` kept in the
//! bucket as pending objects and cut into blocks once their range has closed
//! (`rule::bucket_sink`), alerts sent to Alertmanager before it returns.
//!
//! Settings (environment):
//! - `AETHER_LABELS`: the ruler's labels, `replica="r0",ruler="lambda"`;
//! - `AETHER_RULE_FILES`: rule files (comma-separated paths or globs, e.g.
//!   shipped in the zip); when unset, every object under `aether/rules/` in
//!   the bucket is a rule file;
//! - `AETHER_QUERY_URL`: a querier's HTTP API to evaluate through; when unset,
//!   the embedded PromQL engine over the bucket (store-read in-process) and
//!   `AETHER_ENDPOINTS`;
//! - `AETHER_ALERTMANAGERS`: Alertmanager URLs (comma-separated);
//! - `AETHER_EVAL_INTERVAL` (1m), `AETHER_RESEND_DELAY` (1m),
//!   `AETHER_BLOCK_DURATION` (2h), `AETHER_QUERY_TIMEOUT` (1m),
//!   `AETHER_CUT_GRACE` (how long after a block range ends its block is cut:
//!   2 x the interval, at least 5m),
//!   `AETHER_REPLICA_LABELS`, and the bucket (see `lambda_env`).

#[path = "../lambda_env.rs"]
mod lambda_env;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use rule::querier::{EngineQuerier, HttpQuerier, RuleQuerier};
use storeapi::StoreApi;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Rule groups from the rule files in the bucket (`aether/rules/`), each
/// named by its object key (the key, not a local path, identifies a group's
/// state across instances).
async fn rules_from_bucket(
    bucket: &lambda_env::Bucket,
) -> anyhow::Result<Vec<rule::rulefile::RuleGroup>> {
    use bucket::object_store::ObjectStoreExt;
    let prefix = bucket::object_store::path::Path::from("aether/rules");
    let mut objects: Vec<_> = bucket.list(Some(&prefix)).try_collect().await?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let (mut groups, mut errors) = (Vec::new(), Vec::new());
    for o in objects {
        let bytes = bucket.get(&o.location).await?.bytes().await?;
        let name = o.location.to_string();
        match rule::rulefile::parse_rules(&String::from_utf8_lossy(&bytes), &name) {
            Ok(g) => groups.extend(g),
            Err(es) => errors.extend(es.into_iter().map(|e| format!("{name}: {e}"))),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("rule files in the bucket:\n{}", errors.join("\n"));
    }
    Ok(groups)
}

fn main() -> std::process::ExitCode {
    lambda_env::run(async {
        let (cfg, bucket, _stats) = lambda_env::bucket()?;
        let labels = rule::ruler::parse_labels(&lambda_env::split_label_list(
            &lambda_env::var("AETHER_LABELS").unwrap_or_default(),
        ))?;
        let eval_interval = lambda_env::duration("AETHER_EVAL_INTERVAL", Duration::from_secs(60))?;
        let resend = lambda_env::duration("AETHER_RESEND_DELAY", Duration::from_secs(60))?;
        let block = lambda_env::duration("AETHER_BLOCK_DURATION", Duration::from_secs(7200))?;
        let query_timeout = lambda_env::duration("AETHER_QUERY_TIMEOUT", Duration::from_secs(60))?;
        let tmp = std::env::temp_dir().join("aether-rule");

        let groups = match lambda_env::var("AETHER_RULE_FILES") {
            Some(_) => rule::rulefile::load_files(&rule::rulefile::expand_globs(
                &lambda_env::list("AETHER_RULE_FILES"),
            )?)?,
            None => rules_from_bucket(&bucket).await?,
        };

        let groups_count = groups.len();
        let querier: Arc<dyn RuleQuerier> = match lambda_env::var("AETHER_QUERY_URL") {
            Some(url) => Arc::new(HttpQuerier::new(vec![url], query_timeout)?),
            None => {
                let mut stores: Vec<(String, Arc<dyn StoreApi>)> = vec![(
                    "bucket".into(),
                    Arc::new(lambda_env::bucket_store(Arc::clone(&bucket))?),
                )];
                for addr in lambda_env::list("AETHER_ENDPOINTS") {
                    let c = storeapi::grpc::GrpcStore::connect_lazy(
                        &addr,
                        storeapi::grpc::ClientOptions::default(),
                    )?;
                    stores.push((addr, Arc::new(c)));
                }
                let replica_labels = lambda_env::list("AETHER_REPLICA_LABELS");
                let opts = query::QueryOptions {
                    dedup: !replica_labels.is_empty(),
                    replica_labels,
                    ..Default::default()
                };
                let engine = promql::Engine::new(promql::EngineOpts {
                    timeout: query_timeout,
                    ..Default::default()
                });
                Arc::new(EngineQuerier::new(
                    engine,
                    Arc::new(query::EndpointSet::from_stores(stores)),
                    opts,
                ))
            }
        };
        let notifier = Arc::new(rule::notifier::AlertmanagerNotifier::new(
            lambda_env::list("AETHER_ALERTMANAGERS"),
            Duration::from_secs(10),
        )?);
        let sink = Arc::new(rule::bucket_sink::BucketSink::new(
            Arc::clone(&bucket),
            labels.clone(),
            millis(block),
        ));
        let ruler = Arc::new(rule::Ruler::new(
            rule::RulerConfig {
                eval_interval_ms: millis(eval_interval),
                resend_delay_ms: millis(resend),
                external_labels: labels.clone(),
                ..Default::default()
            },
            groups,
            querier,
            notifier,
            Arc::clone(&sink) as Arc<dyn rule::ruler::SampleSink>,
            Arc::new(rule::ruler::BucketStateStore::new(
                Arc::clone(&bucket),
                &labels,
            )),
        ));
        tracing::info!(bucket = %cfg.describe(), groups = groups_count, labels = %labels, "rule function ready");
        // Pending ranges are cut once no tick can still add to them.
        let grace = millis(lambda_env::duration(
            "AETHER_CUT_GRACE",
            (2 * eval_interval).max(Duration::from_secs(300)),
        )?);
        serve::lambda::run_events(move |_event, _deadline| {
            let (ruler, sink, tmp) = (Arc::clone(&ruler), Arc::clone(&sink), tmp.clone());
            async move {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(millis)
                    .unwrap_or_default();
                let report = ruler.tick(now).await.map_err(|e| e.to_string())?;
                let blocks = sink
                    .cut(now, grace, &tmp.join("blocks"))
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_value(report.summary(now, &blocks)).map_err(|e| e.to_string())
            }
        })
        .await?;
        Ok(())
    })
}
