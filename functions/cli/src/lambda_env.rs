//! What every Lambda entry point shares: logging for CloudWatch, the runtime,
//! and configuration from the environment (a function has no flags).
//!
//! - `AETHER_OBJSTORE_CONFIG`: the bucket as Thanos objstore YAML (for S3 on
//!   AWS, no keys: the function's role supplies credentials), or
//!   `AETHER_OBJSTORE_CONFIG_FILE`: a path to it (e.g. in the zip);
//! - `AETHER_LOG_LEVEL` (default `info`; `RUST_LOG` wins when set).

#![allow(dead_code)] // each binary uses part of it

use std::time::Duration;

/// The allocator of every Aether binary (see `main.rs`): query buffers are reused
/// instead of being returned to the kernel and faulted in again.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bucket, as every component sees it.
pub type Bucket = std::sync::Arc<dyn bucket::object_store::ObjectStore>;

/// Logs as JSON lines to stderr (CloudWatch keeps them per invocation).
pub fn init_logging() {
    let level = std::env::var("AETHER_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time() // CloudWatch stamps each line
        .json()
        .init();
}

/// Runs `main` on a Tokio runtime; an error is printed and exits 1 (Lambda
/// reports it as an init error).
pub fn run(main: impl std::future::Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(main) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "function failed");
            eprintln!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A variable, if set and not empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A duration variable (`30s`, `5m`, ...), or `default`.
pub fn duration(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(v) => {
            bucket::config::parse_duration(&v).map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))
        }
    }
}

/// A list variable: comma-separated, blanks dropped.
pub fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The bucket from `AETHER_OBJSTORE_CONFIG` / `AETHER_OBJSTORE_CONFIG_FILE`.
pub fn bucket() -> anyhow::Result<(
    bucket::ObjstoreConfig,
    Bucket,
    std::sync::Arc<bucket::RequestStats>,
)> {
    let file = var("AETHER_OBJSTORE_CONFIG_FILE");
    let inline = var("AETHER_OBJSTORE_CONFIG");
    if file.is_none() && inline.is_none() {
        anyhow::bail!("no bucket configured: set AETHER_OBJSTORE_CONFIG (objstore YAML) or AETHER_OBJSTORE_CONFIG_FILE");
    }
    let cfg = tools::bucket_tools::load_config(file.as_deref(), inline.as_deref())?;
    let (bucket, stats) = cfg.build_with_stats()?;
    Ok((cfg, bucket, stats))
}

/// The store-read handler over the bucket, with the index headers it builds
/// kept under `/tmp` (the only writable place in Lambda) for the instance's
/// life, and the shared index cache in the bucket read and written.
pub fn bucket_store(bucket: Bucket) -> anyhow::Result<store::BucketStore> {
    let cfg = store::StoreConfig {
        index_cache_bytes: store::parse_bytes(
            &var("AETHER_INDEX_CACHE_SIZE").unwrap_or_else(|| "250MB".into()),
        )
        .map_err(|e| anyhow::anyhow!("AETHER_INDEX_CACHE_SIZE: {e}"))?,
        local_header_dir: Some(std::env::temp_dir().join("aether-index-headers")),
        ..Default::default()
    };
    Ok(store::BucketStore::new(bucket, cfg))
}

/// Splits `a="x",b="y,z"` at the commas outside double quotes.
pub fn split_label_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in v.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                cur.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}
