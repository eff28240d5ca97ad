//! Command-line flags of the server components, named as Thanos names them so that
//! Thanos manifests run unchanged with `aether` in place of `thanos`.
//!
//! The servers themselves are built issue by issue; until a component exists its
//! command parses its flags and exits with an error that says so.

use clap::Args;

/// Flags every server component shares with Thanos.
#[derive(Args, Debug, Clone)]
pub struct CommonServerArgs {
    /// Listen host:port for HTTP endpoints (metrics, health, APIs).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// Time to wait after an interrupt for HTTP requests to finish.
    #[arg(long = "http-grace-period", default_value = "2m")]
    pub http_grace_period: String,
    /// Listen host:port for gRPC endpoints (StoreAPI).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: String,
    /// Time to wait after an interrupt for gRPC requests to finish.
    #[arg(long = "grpc-grace-period", default_value = "2m")]
    pub grpc_grace_period: String,
}

/// Object storage configuration, as a file or inline YAML.
#[derive(Args, Debug, Clone)]
pub struct ObjstoreArgs {
    /// Path to a Thanos objstore YAML file.
    #[arg(long = "objstore.config-file")]
    pub objstore_config_file: Option<String>,
    /// Thanos objstore YAML inline (alternative to --objstore.config-file).
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SidecarArgs {
    #[command(flatten)]
    pub server: CommonServerArgs,
    #[command(flatten)]
    pub objstore: ObjstoreArgs,
    /// Data directory of the Prometheus TSDB.
    #[arg(long = "tsdb.path", default_value = "./data")]
    pub tsdb_path: String,
    /// URL of the Prometheus server next to the sidecar.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    pub prometheus_url: String,
    /// Also upload compacted blocks (level > 1).
    #[arg(long = "shipper.upload-compacted")]
    pub upload_compacted: bool,
    /// Serve only data after this time (RFC3339 or relative like -2h).
    #[arg(long = "min-time", allow_hyphen_values = true)]
    pub min_time: Option<String>,
    /// Config file the reloader watches (accepted for compatibility).
    #[arg(long = "reloader.config-file")]
    pub reloader_config_file: Option<String>,
    /// Output file of the reloader's env substitution (accepted for compatibility).
    #[arg(long = "reloader.config-envsubst-file")]
    pub reloader_config_envsubst_file: Option<String>,
    /// Rule directories the reloader watches (accepted for compatibility).
    #[arg(long = "reloader.rule-dir")]
    pub reloader_rule_dir: Vec<String>,
    /// How often the shipper looks for new blocks.
    #[arg(long = "shipper.sync-interval", default_value = "10s")]
    pub shipper_sync_interval: String,
}

/// Runs `aether sidecar`.
pub async fn run_sidecar(a: SidecarArgs) -> anyhow::Result<()> {
    let mut cfg = sidecar::Config::new(&a.tsdb_path, &a.prometheus_url);
    cfg.objstore = match (a.objstore.objstore_config_file, a.objstore.objstore_config) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give either --objstore.config-file or --objstore.config, not both")
        }
        (Some(f), None) => Some(sidecar::ObjstoreSource::File(f.into())),
        (None, Some(y)) => Some(sidecar::ObjstoreSource::Inline(y)),
        (None, None) => None,
    };
    cfg.grpc_address = a.server.grpc_address;
    cfg.http_address = a.server.http_address;
    cfg.upload_compacted = a.upload_compacted;
    cfg.min_time = a
        .min_time
        .as_deref()
        .map(sidecar::MinTime::parse)
        .transpose()?;
    cfg.sync_interval = bucket::config::parse_duration(&a.shipper_sync_interval).map_err(|e| {
        anyhow::anyhow!("--shipper.sync-interval {:?}: {e}", a.shipper_sync_interval)
    })?;
    cfg.grace_period =
        bucket::config::parse_duration(&a.server.grpc_grace_period).map_err(|e| {
            anyhow::anyhow!("--grpc-grace-period {:?}: {e}", a.server.grpc_grace_period)
        })?;
    sidecar::run(cfg).await?;
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    #[command(flatten)]
    pub server: CommonServerArgs,
    #[command(flatten)]
    pub objstore: ObjstoreArgs,
    /// Local scratch directory (caches only; may be empty or vanish).
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: String,
    /// Serve only blocks after this time (RFC3339 or relative like -2w).
    #[arg(long = "min-time", allow_hyphen_values = true)]
    pub min_time: Option<String>,
    /// Serve only blocks before this time (RFC3339 or relative like -2w).
    #[arg(long = "max-time", allow_hyphen_values = true)]
    pub max_time: Option<String>,
    /// Size of the in-memory index cache, e.g. 250MB.
    #[arg(long = "index-cache-size", default_value = "250MB")]
    pub index_cache_size: String,
    /// Largest number of series one Series request may touch (0 = no limit).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub request_series_limit: u64,
    /// Largest number of samples one Series request may touch (0 = no limit).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub request_samples_limit: u64,
}

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    #[command(flatten)]
    pub server: CommonServerArgs,
    /// StoreAPI endpoints: host:port, dns+host:port, dnssrv+name.
    #[arg(long = "endpoint")]
    pub endpoint: Vec<String>,
    /// Alias of --endpoint.
    #[arg(long = "store")]
    pub store: Vec<String>,
    /// File service discovery files with endpoints.
    #[arg(long = "store.sd-files")]
    pub store_sd_files: Vec<String>,
    /// Labels that mark replicas of one stream, for deduplication.
    #[arg(long = "query.replica-label")]
    pub replica_label: Vec<String>,
    #[arg(long = "query.timeout", default_value = "2m")]
    pub timeout: String,
    #[arg(long = "query.max-concurrent", default_value_t = 20)]
    pub max_concurrent: usize,
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    pub lookback_delta: String,
    /// Answer with partial data when an endpoint fails.
    #[arg(long = "query.partial-response")]
    pub partial_response: bool,
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub max_samples: u64,
    /// Widen the lookback delta to the resolution of downsampled data read.
    #[arg(long = "query.dynamic-lookback-delta", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dynamic_lookback_delta: bool,
    /// Downsampled data when a request has no max_source_resolution: auto
    /// (resolution <= step/5), as `max_source_resolution=auto`.
    #[arg(long = "query.auto-downsampling")]
    pub auto_downsampling: bool,
    /// HTTP base URL of a ruler (e.g. http://ruler:10902) whose rules and
    /// alerts /api/v1/rules and /api/v1/alerts merge; repeatable. Thanos
    /// reaches rulers over their gRPC Rules API (`--rule`); Aether uses the
    /// rulers' Prometheus HTTP API for now.
    #[arg(long = "rule.url")]
    pub rule_url: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CompactArgs {
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    #[command(flatten)]
    pub objstore: ObjstoreArgs,
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: String,
    /// Keep running, repeating passes.
    #[arg(long = "wait", short = 'w')]
    pub wait: bool,
    #[arg(long = "wait-interval", default_value = "5m")]
    pub wait_interval: String,
    #[arg(long = "retention.resolution-raw", default_value = "0d")]
    pub retention_raw: String,
    #[arg(long = "retention.resolution-5m", default_value = "0d")]
    pub retention_5m: String,
    #[arg(long = "retention.resolution-1h", default_value = "0d")]
    pub retention_1h: String,
    #[arg(long = "delete-delay", default_value = "48h")]
    pub delete_delay: String,
    #[arg(long = "consistency-delay", default_value = "30m")]
    pub consistency_delay: String,
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    pub concurrency: usize,
    #[arg(long = "downsampling.disable")]
    pub downsampling_disable: bool,
    #[arg(long = "deduplication.replica-label")]
    pub dedup_replica_label: Vec<String>,
    /// How overlapping blocks' samples are merged: "" keeps every distinct
    /// timestamp; "penalty" deduplicates HA replicas as the querier does (use
    /// with --deduplication.replica-label).
    #[arg(long = "deduplication.func", default_value = "")]
    pub dedup_func: String,
    /// Longest a pass runs before it stops at a safe point (0: no limit; in
    /// Knative mode 4m by default, within the request timeout). The next pass
    /// continues.
    #[arg(long = "compact.pass-timeout", default_value = "0s")]
    pub pass_timeout: String,
}

#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    #[command(flatten)]
    pub server: CommonServerArgs,
    #[command(flatten)]
    pub objstore: ObjstoreArgs,
    /// Rule files to load; paths or globs (`rules/*.yaml`); repeatable.
    #[arg(long = "rule-file")]
    pub rule_file: Vec<String>,
    /// Querier HTTP base URL to evaluate rules through; repeatable (tried in order).
    #[arg(long = "query")]
    pub query: Vec<String>,
    /// StoreAPI endpoint to evaluate rules over with the embedded engine
    /// (instead of --query); repeatable, `dns+`/`dnssrv+` allowed.
    #[arg(long = "endpoint")]
    pub endpoint: Vec<String>,
    /// Replica labels to deduplicate on in --endpoint mode; repeatable.
    #[arg(long = "query.replica-label")]
    pub query_replica_label: Vec<String>,
    /// Alertmanager base URL (API v2); repeatable. `dns+http://host:port`,
    /// `dnssrv+http://_web._tcp.name` and `dnssrvnoa+` are looked up in DNS.
    #[arg(long = "alertmanagers.url")]
    pub alertmanagers_url: Vec<String>,
    /// How often DNS-discovered Alertmanagers are looked up again.
    #[arg(long = "alertmanagers.sd-dns-interval", default_value = "30s")]
    pub alertmanagers_sd_dns_interval: String,
    /// Timeout of one request to an Alertmanager.
    #[arg(long = "alertmanagers.send-timeout", default_value = "10s")]
    pub alertmanagers_send_timeout: String,
    /// Labels of this ruler (`name="value"`): external labels of its results
    /// and labels of its alerts; repeatable.
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Evaluation interval of groups without their own `interval`.
    #[arg(long = "eval-interval", default_value = "1m")]
    pub eval_interval: String,
    /// Minimum time between two sends of the same firing alert.
    #[arg(long = "resend-delay", default_value = "1m")]
    pub resend_delay: String,
    /// Accepted for compatibility: `for` state is kept exactly in the bucket, so
    /// there is nothing to grace after a restart.
    #[arg(long = "for-grace-period", default_value = "10m")]
    pub for_grace_period: String,
    /// Timeout of one rule query.
    #[arg(long = "query.timeout", default_value = "2m")]
    pub query_timeout: String,
    /// Base URL put into alerts' generatorURL.
    #[arg(long = "alert.query-url", default_value = "")]
    pub alert_query_url: String,
    /// Label dropped from alerts before they are sent (e.g. the replica label,
    /// for HA rulers); repeatable.
    #[arg(long = "alert.label-drop")]
    pub alert_label_drop: Vec<String>,
    /// Length of the blocks the ruler cuts and uploads.
    #[arg(long = "tsdb.block-duration", default_value = "2h")]
    pub tsdb_block_duration: String,
    /// How long recorded samples stay in the ruler's own store after their
    /// block is cut.
    #[arg(long = "tsdb.retention", default_value = "48h")]
    pub tsdb_retention: String,
    /// Directory of the ruler's log, blocks and shipper state.
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: String,
}
