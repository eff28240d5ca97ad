//! `aether compact`: flags -> [`compact::Compactor`] passes (one, or repeated with
//! `--wait`).

use std::sync::Arc;
use std::time::Duration;

use crate::components::CompactArgs;

fn dur(flag: &str, v: &str) -> anyhow::Result<Duration> {
    bucket::config::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The compactor config from the flags.
pub fn config(a: &CompactArgs) -> anyhow::Result<compact::CompactConfig> {
    let mut cfg = compact::CompactConfig::new(&a.data_dir);
    cfg.retention = compact::Retention {
        raw_ms: ms(dur("retention.resolution-raw", &a.retention_raw)?),
        res_5m_ms: ms(dur("retention.resolution-5m", &a.retention_5m)?),
        res_1h_ms: ms(dur("retention.resolution-1h", &a.retention_1h)?),
    };
    cfg.delete_delay_ms = ms(dur("delete-delay", &a.delete_delay)?);
    cfg.consistency_delay_ms = ms(dur("consistency-delay", &a.consistency_delay)?);
    cfg.concurrency = a.concurrency.max(1);
    cfg.downsampling = !a.downsampling_disable;
    cfg.replica_labels = a.dedup_replica_label.clone();
    cfg.dedup = compact::DedupFunc::parse(&a.dedup_func).ok_or_else(|| {
        anyhow::anyhow!(
            "--deduplication.func: {:?} is not a deduplication function (\"\" or \"penalty\")",
            a.dedup_func
        )
    })?;
    Ok(cfg)
}

use serve::shutdown_signal;

/// `/metrics`, health, and (`tick`) `POST /-/tick`: one pass per request,
/// stopping at a safe point before `pass_timeout`.
fn router(c: Arc<compact::Compactor>, tick: bool, pass_timeout: Duration) -> axum::Router {
    use axum::routing::{get, post};
    let metrics = c.metrics();
    let mut r = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }));
    if tick {
        r = r.route(
            "/-/tick",
            post(move || {
                let c = c.clone();
                async move {
                    let deadline = now_ms() + ms(pass_timeout);
                    match run_pass(&c, Some(deadline)).await {
                        Ok(report) => (axum::http::StatusCode::OK, format!("{report}\n")),
                        Err(e) => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("compaction pass failed: {e:#}\n"),
                        ),
                    }
                }
            }),
        );
    }
    r
}

fn now_ms() -> i64 {
    use compact::Clock;
    compact::SystemClock.now_ms()
}

/// One pass (stopping at a safe point after `deadline_ms`, if given); the
/// report as JSON, logged.
pub async fn run_pass(
    c: &compact::Compactor,
    deadline_ms: Option<i64>,
) -> anyhow::Result<serde_json::Value> {
    let r = c.run_pass_until(deadline_ms).await?.summary();
    tracing::info!(
        skipped = r.skipped,
        compacted = r.compacted,
        downsampled = r.downsampled,
        marked_for_deletion = r.marked_for_deletion,
        deleted = r.deleted,
        partial_deleted = r.partial_deleted,
        marked_no_compact = r.marked_no_compact,
        errors = r.errors.len(),
        deadline_reached = r.deadline_reached,
        "compaction pass done"
    );
    for e in &r.errors {
        tracing::warn!(error = %e, "pass error (retried next pass)");
    }
    Ok(serde_json::to_value(r)?)
}

/// The lease holder: host name and data dir, so that a compactor restarted in
/// place (same pod, same volume) after a crash takes its lease back at once,
/// while compactors elsewhere wait for it to expire.
fn holder_id(data_dir: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into());
    let _ = std::fs::create_dir_all(data_dir);
    let dir = std::fs::canonicalize(data_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| data_dir.to_string());
    format!("{host}:{dir}")
}

/// Runs `aether compact`: one pass, or passes every `--wait-interval` with `--wait`.
pub async fn run(a: CompactArgs) -> anyhow::Result<()> {
    let objcfg = tools::bucket_tools::load_config(
        a.objstore.objstore_config_file.as_deref(),
        a.objstore.objstore_config.as_deref(),
    )?;
    let mut cfg = config(&a)?;
    cfg.upload = objcfg.upload_options();
    let interval = dur("wait-interval", &a.wait_interval)?;
    let store = objcfg.build()?;
    let holder = holder_id(&a.data_dir);
    let mut c =
        compact::Compactor::new(store, cfg, Arc::new(compact::SystemClock)).with_holder(holder);
    // Testing aid for the crash tests (see compact::hooks): pause at a phase.
    if let Some(h) = compact::hooks::pause_hook_from_env()? {
        c = c.with_hook(h);
    }
    if let Some(p) = compact::progress::TerminalProgress::if_tty() {
        c = c.with_progress(p);
    }
    let c = Arc::new(c);
    let pass_timeout = dur("compact.pass-timeout", &a.pass_timeout)?;
    let mode = serve::Mode::detect()?;
    if let serve::Mode::Knative { .. } = mode {
        // Knative: a PingSource POSTs /-/tick; each request is one pass, cut
        // short before the request would time out.
        let timeout = if pass_timeout.is_zero() {
            Duration::from_secs(240)
        } else {
            pass_timeout
        };
        let listeners = serve::bind(mode, &a.http_address, None).await?;
        tracing::info!(bucket = %objcfg.describe(), ?mode, http = %listeners.http.local_addr()?, "compactor serving; passes on POST /-/tick");
        serve::serve(listeners, router(c, true, timeout), None, shutdown_signal()).await?;
        return Ok(());
    }
    let deadline = || (!pass_timeout.is_zero()).then(|| now_ms() + ms(pass_timeout));
    if a.wait {
        let listeners = serve::bind(mode, &a.http_address, None).await?;
        let app = router(c.clone(), false, pass_timeout);
        tokio::spawn(async move {
            if let Err(e) = serve::serve(listeners, app, None, std::future::pending()).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
    }
    tracing::info!(bucket = %objcfg.describe(), wait = a.wait, "compactor starting");
    if !a.wait {
        return run_pass(&c, deadline()).await.map(|_| ());
    }
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        if let Err(e) = run_pass(&c, deadline()).await {
            tracing::error!(error = %format!("{e:#}"), "compaction pass failed; retrying after the interval");
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
