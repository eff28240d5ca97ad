//! `aether sidecar`: runs next to a Prometheus server.
//!
//! - Ships every finished TSDB block to the bucket exactly once ([`shipper`]),
//!   with the `thanos` section in `meta.json` and a Thanos-compatible state file
//!   ([`state`]); blocks are verified first ([`verify`]).
//! - Serves Prometheus's data over Thanos's StoreAPI (gRPC, [`store`]) from
//!   remote read ([`prom`]).
//! - `/metrics`, `/-/healthy`, `/-/ready` over HTTP ([`http`]).
//!
//! [`run`] is the whole component; the `aether` binary only parses flags into a
//! [`Config`].

mod error;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod prom;
pub mod shipper;
pub mod state;
pub mod store;
pub mod verify;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use error::{Error, Result};
pub use metrics::Metrics;
pub use prom::PromClient;
pub use shipper::{Shipper, ShipperOptions, SyncReport};
pub use state::{read_state, write_state, ShipperState, STATE_FILENAME};
pub use store::{PromState, PromStore};

use bucket::ObjstoreConfig;

/// Where the objstore configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjstoreSource {
    /// `--objstore.config-file`
    File(PathBuf),
    /// `--objstore.config` (inline YAML)
    Inline(String),
}

/// The sidecar's configuration (its flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Prometheus's TSDB directory (`--tsdb.path`).
    pub tsdb_path: PathBuf,
    /// Prometheus's URL (`--prometheus.url`).
    pub prometheus_url: String,
    /// The bucket; None: serve the StoreAPI only, ship nothing.
    pub objstore: Option<ObjstoreSource>,
    /// gRPC listen address (`--grpc-address`).
    pub grpc_address: String,
    /// HTTP listen address (`--http-address`).
    pub http_address: String,
    /// Ship compacted blocks too (`--shipper.upload-compacted`).
    pub upload_compacted: bool,
    /// Serve only data after this time (`--min-time`).
    pub min_time: Option<MinTime>,
    /// Pause between shipper passes.
    pub sync_interval: Duration,
    /// Pause between checks of Prometheus (external labels, lowest timestamp).
    pub heartbeat_interval: Duration,
    /// On shutdown, how long in-flight gRPC and HTTP calls may take to finish
    /// (`--grpc-grace-period`).
    pub grace_period: Duration,
}

impl Config {
    /// Defaults as Thanos's flags have them.
    pub fn new(tsdb_path: impl Into<PathBuf>, prometheus_url: impl Into<String>) -> Self {
        Config {
            tsdb_path: tsdb_path.into(),
            prometheus_url: prometheus_url.into(),
            objstore: None,
            grpc_address: "0.0.0.0:10901".into(),
            http_address: "0.0.0.0:10902".into(),
            upload_compacted: false,
            min_time: None,
            sync_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            grace_period: Duration::from_secs(120),
        }
    }
}

/// `--min-time`: an absolute time or one relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTime {
    /// Milliseconds since the epoch.
    Absolute(i64),
    /// Milliseconds relative to now (negative: in the past).
    Relative(i64),
}

impl MinTime {
    /// Parses RFC 3339 (`2024-01-02T03:04:05Z`, with optional fraction and offset)
    /// or a signed duration (`-2h`, `-2w`, `-1d12h`, `-30m`; units ms s m h d w y).
    pub fn parse(s: &str) -> Result<MinTime> {
        let s = s.trim();
        if let Some(ms) = parse_rfc3339(s) {
            return Ok(MinTime::Absolute(ms));
        }
        if let Some(ms) = parse_signed_duration(s) {
            return Ok(MinTime::Relative(ms));
        }
        Err(Error::Config(format!(
            "--min-time {s:?}: want an RFC 3339 time (2024-01-02T03:04:05Z) or a duration like -2h"
        )))
    }

    /// The time in ms now.
    pub fn resolve(&self) -> i64 {
        match *self {
            MinTime::Absolute(ms) => ms,
            MinTime::Relative(d) => now_ms().saturating_add(d),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_signed_duration(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let ms = model::parse_duration_ms(rest)?;
    Some(if neg { -ms } else { ms })
}

/// RFC 3339 to ms since the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let padded: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(3)
            .collect();
        frac_ms = padded.parse().ok()?;
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh: i64 = tz[1..3].parse().ok()?;
            let om: i64 = tz[4..6].parse().ok()?;
            let v = oh * 60 + om;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

/// Builds the bucket from the objstore configuration, with clear errors.
pub fn build_bucket(
    src: &ObjstoreSource,
) -> Result<(Arc<dyn bucket::object_store::ObjectStore>, ObjstoreConfig)> {
    let (desc, cfg) = match src {
        ObjstoreSource::File(p) => (
            format!("--objstore.config-file {}", p.display()),
            ObjstoreConfig::from_file(p),
        ),
        ObjstoreSource::Inline(y) => ("--objstore.config".to_string(), ObjstoreConfig::parse(y)),
    };
    let cfg = cfg.map_err(|e| Error::Objstore {
        source_desc: desc.clone(),
        reason: e.to_string(),
    })?;
    let store = cfg.build().map_err(|e| Error::Objstore {
        source_desc: desc,
        reason: e.to_string(),
    })?;
    Ok((store, cfg))
}

/// Runs the sidecar until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    run_until(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

async fn bind(what: &'static str, addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Server {
            what,
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Runs the sidecar until `shutdown` completes (or a fatal error).
pub async fn run_until(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let prom = PromClient::new(&config.prometheus_url)?;
    let bucket = match &config.objstore {
        Some(src) => {
            let (store, cfg) = build_bucket(src)?;
            tracing::info!(bucket = %cfg.describe(), "shipping blocks to the bucket");
            Some((hooks::wrap_from_env(store), cfg))
        }
        None => {
            tracing::info!(
                "no objstore configuration: serving the StoreAPI only, no blocks are shipped"
            );
            None
        }
    };
    if bucket.is_some() {
        let md = std::fs::metadata(&config.tsdb_path).map_err(|e| {
            Error::Config(format!("--tsdb.path {}: {e}", config.tsdb_path.display()))
        })?;
        if !md.is_dir() {
            return Err(Error::Config(format!(
                "--tsdb.path {} is not a directory",
                config.tsdb_path.display()
            )));
        }
    }
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };

    let http_listener = bind("HTTP server", &config.http_address).await?;
    let grpc_listener = bind("gRPC server", &config.grpc_address).await?;
    tracing::info!(http = %config.http_address, grpc = %config.grpc_address, "listening");
    let http_task = tokio::spawn(http::serve(
        http_listener,
        http::HttpState {
            metrics: Arc::clone(&metrics),
            ready: Arc::clone(&ready),
        },
        stopped(),
    ));

    let mut shutdown = Box::pin(shutdown);
    // Wait for Prometheus and its external labels.
    let labels = tokio::select! {
        l = wait_for_prometheus(&prom, &metrics) => l,
        _ = &mut shutdown => {
            let _ = stop_tx.send(true);
            let _ = http_task.await;
            return Ok(());
        }
    };
    if labels.is_empty() {
        let err = Error::NoExternalLabels {
            url: prom.url().to_string(),
        };
        if bucket.is_some() {
            let _ = stop_tx.send(true);
            let _ = http_task.await;
            return Err(err);
        }
        tracing::warn!("{err}");
    }
    tracing::info!(external_labels = ?labels, "Prometheus is up");
    let state = Arc::new(PromState::new(&labels));
    if let Ok(t) = prom.lowest_timestamp().await {
        state.lowest_timestamp.store(t, Ordering::Relaxed);
    }
    ready.store(true, Ordering::Relaxed);

    let store = Arc::new(PromStore::new(
        prom.clone(),
        Arc::clone(&state),
        config.min_time,
        Arc::clone(&metrics),
    ));
    let grpc_task = tokio::spawn(storeapi::grpc::serve(store, grpc_listener, stopped()));

    let hb_task = tokio::spawn(heartbeat(
        prom.clone(),
        Arc::clone(&state),
        Arc::clone(&metrics),
        config.heartbeat_interval,
        config.objstore.is_some(),
        stopped(),
    ));

    let ship_task = bucket.map(|(store, cfg)| {
        let shipper = Shipper::new(
            config.tsdb_path.clone(),
            store,
            ShipperOptions {
                upload_compacted: config.upload_compacted,
                upload: cfg.upload_options(),
                ..Default::default()
            },
            Arc::clone(&metrics),
        );
        tokio::spawn(ship_loop(
            shipper,
            Arc::clone(&state),
            config.sync_interval,
            stopped(),
        ))
    });

    shutdown.await;
    let _ = stop_tx.send(true);
    if let Some(t) = ship_task {
        let _ = t.await;
    }
    let _ = hb_task.await;
    let grace = config.grace_period;
    let grpc_abort = grpc_task.abort_handle();
    match tokio::time::timeout(grace, grpc_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server"),
        Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task"),
        Ok(Ok(Ok(()))) => {}
        Err(_) => {
            tracing::warn!(
                ?grace,
                "gRPC calls still open after the grace period; closing them"
            );
            grpc_abort.abort();
        }
    }
    let http_abort = http_task.abort_handle();
    if tokio::time::timeout(grace, http_task).await.is_err() {
        http_abort.abort();
    }
    Ok(())
}

/// Polls Prometheus until it answers with its configuration; logs while waiting.
async fn wait_for_prometheus(prom: &PromClient, metrics: &Metrics) -> BTreeMap<String, String> {
    let mut attempt = 0u64;
    loop {
        match prom.external_labels().await {
            Ok(l) => {
                metrics.prometheus_up.store(1, Ordering::Relaxed);
                metrics
                    .last_heartbeat_time
                    .store(metrics::unix_now(), Ordering::Relaxed);
                return l;
            }
            Err(e) => {
                metrics.prometheus_up.store(0, Ordering::Relaxed);
                if attempt.is_multiple_of(15) {
                    tracing::warn!(url = %prom.url(), error = %e, "waiting for Prometheus to be up (retrying every 2s)");
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn heartbeat(
    prom: PromClient,
    state: Arc<PromState>,
    metrics: Arc<Metrics>,
    every: Duration,
    shipping: bool,
    stopped: impl Future<Output = ()>,
) {
    let mut stopped = Box::pin(stopped);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut stopped => return,
        }
        match prom.external_labels().await {
            Ok(l) => {
                metrics.prometheus_up.store(1, Ordering::Relaxed);
                metrics
                    .last_heartbeat_time
                    .store(metrics::unix_now(), Ordering::Relaxed);
                if l.is_empty() && shipping {
                    tracing::error!(url = %prom.url(), "Prometheus has no external labels any more; not shipping until it has");
                }
                if l != state
                    .labels()
                    .iter()
                    .map(|x| (x.name.clone(), x.value.clone()))
                    .collect::<BTreeMap<_, _>>()
                {
                    tracing::info!(external_labels = ?l, "Prometheus's external labels changed");
                }
                state.set_labels(&l);
            }
            Err(e) => {
                metrics.prometheus_up.store(0, Ordering::Relaxed);
                tracing::warn!(error = %e, "Prometheus is not reachable");
            }
        }
        if let Ok(t) = prom.lowest_timestamp().await {
            state.lowest_timestamp.store(t, Ordering::Relaxed);
        }
    }
}

async fn ship_loop(
    shipper: Shipper,
    state: Arc<PromState>,
    every: Duration,
    stopped: impl Future<Output = ()>,
) {
    let mut stopped = Box::pin(stopped);
    loop {
        let labels: BTreeMap<String, String> = state
            .labels()
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        if labels.is_empty() {
            tracing::error!("Prometheus has no external labels; refusing to ship blocks");
        } else {
            tokio::select! {
                r = shipper.sync(&labels) => match r {
                    Ok(rep) => {
                        if !rep.uploaded.is_empty() || !rep.already_in_bucket.is_empty() {
                            tracing::info!(uploaded = rep.uploaded.len(), already_in_bucket = rep.already_in_bucket.len(), "shipper pass done");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "shipper pass failed"),
                },
                _ = &mut stopped => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut stopped => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_time_forms() {
        assert_eq!(
            MinTime::parse("1970-01-01T00:00:01Z").unwrap(),
            MinTime::Absolute(1000)
        );
        assert_eq!(
            MinTime::parse("2024-01-02T03:04:05.5+01:00").unwrap(),
            MinTime::Absolute(1_704_161_045_500)
        );
        assert_eq!(
            MinTime::parse("-2h").unwrap(),
            MinTime::Relative(-7_200_000)
        );
        assert_eq!(
            MinTime::parse("-1d12h").unwrap(),
            MinTime::Relative(-129_600_000)
        );
        assert_eq!(
            MinTime::parse("-2w").unwrap(),
            MinTime::Relative(-1_209_600_000)
        );
        assert!(MinTime::parse("yesterday").is_err());
        assert!(MinTime::parse("-2x").is_err());
    }
}
