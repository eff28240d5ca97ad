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

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves `/metrics` (the compactor's counters) and `/-/healthy`, `/-/ready` on
/// `--http-address`: a minimal HTTP/1.1 responder, one request per connection.
async fn serve_http(listener: tokio::net::TcpListener, metrics: Arc<compact::Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match sock.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                "/-/healthy" | "/-/ready" => ("200 OK", "text/plain", "OK\n".to_string()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
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
    if a.wait {
        let http = tokio::net::TcpListener::bind(&a.http_address)
            .await
            .map_err(|e| anyhow::anyhow!("--http-address {}: {e}", a.http_address))?;
        tokio::spawn(serve_http(http, c.metrics()));
    }
    tracing::info!(bucket = %objcfg.describe(), wait = a.wait, "compactor starting");
    let pass = || async {
        let r = c.run_pass().await?;
        tracing::info!(
            skipped = r.skipped,
            compacted = r.compacted.len(),
            downsampled = r.downsampled.len(),
            marked_for_deletion = r.marked_for_deletion.len(),
            deleted = r.deleted.len(),
            partial_deleted = r.partial_deleted.len(),
            marked_no_compact = r.marked_no_compact.len(),
            errors = r.errors.len(),
            "compaction pass done"
        );
        for e in &r.errors {
            tracing::warn!(error = %e, "pass error (retried next pass)");
        }
        anyhow::Ok(())
    };
    if !a.wait {
        return pass().await;
    }
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        if let Err(e) = pass().await {
            tracing::error!(error = %format!("{e:#}"), "compaction pass failed; retrying after the interval");
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
