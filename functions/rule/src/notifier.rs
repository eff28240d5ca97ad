//! Sending alerts to Alertmanagers (API v2: `POST /api/v2/alerts`, a JSON array of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`).
//!
//! [`Notifier`] is the seam; [`AlertmanagerNotifier`] posts every batch to each
//! configured Alertmanager concurrently, retrying transient failures with
//! exponential backoff. A batch counts as delivered when at least one
//! Alertmanager took it (as Prometheus's notifier does).
//!
//! Alertmanagers are given as base URLs or, as Thanos's `--alertmanagers.url`
//! takes them, found through DNS ([`AmTarget`]): `dns+http://host:port/prefix`
//! (every A/AAAA address of `host`; the port defaults to 9093),
//! `dnssrv+http://_web._tcp.name/prefix` (every SRV record, its target's
//! addresses and its port) and `dnssrvnoa+...` (the SRV targets as they are).
//! Names are looked up again at most every `sd_interval`; when a lookup fails,
//! its last answer stays in use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use query::dns::Dns;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One alert as the Alertmanager API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// RFC 3339 with milliseconds in UTC, as Go's `time.Time` JSON (trailing zeros trimmed).
pub fn rfc3339_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            let frac = ms.rem_euclid(1000);
            if frac != 0 {
                let f = format!("{frac:03}");
                s.push('.');
                s.push_str(f.trim_end_matches('0'));
            }
            s.push('Z');
            s
        }
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Delivers alerts.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends a batch; an error when no Alertmanager took it.
    async fn send(&self, alerts: &[AmAlert]) -> Result<()>;
}

/// Counters of the notifier, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifierMetrics {
    /// Alerts delivered (per Alertmanager).
    pub sent: AtomicU64,
    /// Failed deliveries (per Alertmanager, after retries).
    pub errors: AtomicU64,
    /// Alerts no Alertmanager took.
    pub dropped: AtomicU64,
    /// Alertmanagers known at the last send (static and discovered).
    pub discovered: AtomicU64,
}

/// How a DNS-discovered Alertmanager address is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// `dns+`: the A/AAAA addresses of the host.
    A,
    /// `dnssrv+`: the SRV records, their targets resolved to addresses.
    Srv,
    /// `dnssrvnoa+`: the SRV records' targets as they are.
    SrvNoA,
}

/// One `--alertmanagers.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmTarget {
    /// A base URL, used as given.
    Static(String),
    /// A base URL whose host is looked up in DNS.
    Discovered {
        lookup: Lookup,
        /// `http` or `https`.
        scheme: String,
        /// The name to look up.
        host: String,
        /// The port given in the URL (`dns+` only; SRV records carry theirs).
        port: Option<u16>,
        /// The path prefix (no trailing `/`).
        path: String,
    },
}

/// The port of `dns+` addresses without one (Alertmanager's).
const DEFAULT_AM_PORT: u16 = 9093;

impl AmTarget {
    /// Parses one `--alertmanagers.url`.
    pub fn parse(spec: &str) -> Result<AmTarget> {
        let bad = |why: &str| Error::Config(format!("--alertmanagers.url {spec:?}: {why}"));
        let (lookup, url) = if let Some(r) = spec.strip_prefix("dnssrvnoa+") {
            (Some(Lookup::SrvNoA), r)
        } else if let Some(r) = spec.strip_prefix("dnssrv+") {
            (Some(Lookup::Srv), r)
        } else if let Some(r) = spec.strip_prefix("dns+") {
            (Some(Lookup::A), r)
        } else {
            (None, spec)
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(bad("scheme must be http or https"));
        }
        let Some(lookup) = lookup else {
            return Ok(AmTarget::Static(url.to_string()));
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host to look up"))?
            .to_string();
        // The port as written: the URL parser drops a scheme's default port.
        let authority = url
            .split_once("://")
            .map(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""))
            .unwrap_or("");
        let port = match authority.rsplit_once(':') {
            Some((_, p)) if !p.is_empty() && !p.contains(']') => {
                Some(p.parse::<u16>().map_err(|_| bad("bad port"))?)
            }
            _ => None,
        };
        if port.is_some() && lookup != Lookup::A {
            return Err(bad(
                "an SRV name takes its ports from the SRV records; give no port",
            ));
        }
        Ok(AmTarget::Discovered {
            lookup,
            scheme: parsed.scheme().to_string(),
            host,
            port,
            path: parsed.path().trim_end_matches('/').to_string(),
        })
    }

    /// The base URLs this target stands for now.
    async fn resolve(&self, dns: &Dns) -> std::result::Result<Vec<String>, String> {
        match self {
            AmTarget::Static(u) => Ok(vec![u.clone()]),
            AmTarget::Discovered {
                lookup,
                scheme,
                host,
                port,
                path,
            } => {
                let addrs = match lookup {
                    Lookup::A => {
                        dns.lookup_host(host, port.unwrap_or(DEFAULT_AM_PORT))
                            .await?
                    }
                    Lookup::Srv => dns.srv_endpoints(host, true).await?,
                    Lookup::SrvNoA => dns.srv_endpoints(host, false).await?,
                };
                Ok(addrs
                    .into_iter()
                    .map(|a| format!("{scheme}://{a}{path}"))
                    .collect())
            }
        }
    }
}

/// The discovered Alertmanagers and when they were looked up.
struct Discovery {
    dns: Dns,
    interval: Duration,
    /// Per target: its last good answer.
    answers: Vec<Vec<String>>,
    looked_up: Option<Instant>,
}

/// Posts alerts to Alertmanagers.
pub struct AlertmanagerNotifier {
    targets: Vec<AmTarget>,
    /// `None` when every target is static.
    discovery: Option<tokio::sync::Mutex<Discovery>>,
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
    pub metrics: NotifierMetrics,
}

impl AlertmanagerNotifier {
    /// `urls`: `--alertmanagers.url`s (base URLs, a path prefix allowed, or
    /// `dns+`/`dnssrv+`/`dnssrvnoa+` ones looked up with the system's resolver
    /// every 30 s; see [`Self::with_discovery`]).
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Self> {
        let targets = urls
            .iter()
            .map(|u| AmTarget::parse(u))
            .collect::<Result<Vec<_>>>()?;
        let discovery = if targets
            .iter()
            .any(|t| matches!(t, AmTarget::Discovered { .. }))
        {
            let dns = Dns::system().map_err(Error::Config)?;
            Some(tokio::sync::Mutex::new(Discovery {
                dns,
                interval: Duration::from_secs(30),
                answers: vec![Vec::new(); targets.len()],
                looked_up: None,
            }))
        } else {
            None
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let metrics = NotifierMetrics::default();
        if discovery.is_none() {
            metrics
                .discovered
                .store(targets.len() as u64, Ordering::Relaxed);
        }
        Ok(AlertmanagerNotifier {
            targets,
            discovery,
            client,
            attempts: 3,
            backoff: Duration::from_millis(200),
            metrics,
        })
    }

    /// Sets the retries (attempts per Alertmanager, first backoff).
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Looks discovered Alertmanagers up with `dns` (instead of the system's
    /// resolver), again after `interval`.
    pub fn with_discovery(mut self, dns: Dns, interval: Duration) -> Self {
        if let Some(d) = &mut self.discovery {
            let d = d.get_mut();
            d.dns = dns;
            d.interval = interval;
        }
        self
    }

    /// Looks discovered Alertmanagers up again after `interval` (Thanos's
    /// `--alertmanagers.sd-dns-interval`; 30 s by default).
    pub fn with_discovery_interval(mut self, interval: Duration) -> Self {
        if let Some(d) = &mut self.discovery {
            d.get_mut().interval = interval;
        }
        self
    }

    /// The Alertmanagers' base URLs now: static ones as given, discovered ones
    /// from their last good DNS answer (looked up again when due).
    pub async fn alertmanagers(&self) -> Vec<String> {
        let Some(d) = &self.discovery else {
            return self
                .targets
                .iter()
                .filter_map(|t| match t {
                    AmTarget::Static(u) => Some(u.clone()),
                    AmTarget::Discovered { .. } => None,
                })
                .collect();
        };
        let mut d = d.lock().await;
        if d.looked_up.is_none_or(|t| t.elapsed() >= d.interval) {
            for (i, t) in self.targets.iter().enumerate() {
                match t.resolve(&d.dns).await {
                    Ok(v) => d.answers[i] = v,
                    Err(e) => tracing::warn!(
                        error = %e,
                        "looking up Alertmanagers failed; keeping the last answer"
                    ),
                }
            }
            d.looked_up = Some(Instant::now());
        }
        let mut all: Vec<String> = d.answers.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        self.metrics
            .discovered
            .store(all.len() as u64, Ordering::Relaxed);
        all
    }

    async fn post(&self, base: &str, body: &[u8]) -> std::result::Result<(), String> {
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            match self
                .client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.to_vec())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    last = format!("POST {url}: HTTP {status}: {}", text.trim());
                    // A 4xx other than 429 will not get better by retrying.
                    if status.is_client_error() && status.as_u16() != 429 {
                        break;
                    }
                }
                Err(e) => last = format!("POST {url}: {e}"),
            }
        }
        Err(last)
    }
}

#[async_trait]
impl Notifier for AlertmanagerNotifier {
    async fn send(&self, alerts: &[AmAlert]) -> Result<()> {
        if alerts.is_empty() || self.targets.is_empty() {
            return Ok(());
        }
        let urls = self.alertmanagers().await;
        if urls.is_empty() {
            self.metrics
                .dropped
                .fetch_add(alerts.len() as u64, Ordering::Relaxed);
            return Err(Error::Notify(
                "no Alertmanager discovered: the DNS names of --alertmanagers.url have no addresses"
                    .into(),
            ));
        }
        let body = serde_json::to_vec(alerts)
            .map_err(|e| Error::Notify(format!("encoding alerts: {e}")))?;
        let results = futures::future::join_all(urls.iter().map(|u| self.post(u, &body))).await;
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(()) => {
                    self.metrics
                        .sent
                        .fetch_add(alerts.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sending alerts to Alertmanager failed");
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    errors.push(e);
                }
            }
        }
        if errors.len() == urls.len() {
            self.metrics
                .dropped
                .fetch_add(alerts.len() as u64, Ordering::Relaxed);
            return Err(Error::Notify(errors.join("; ")));
        }
        Ok(())
    }
}

/// Sends in the background through a bounded queue, so that a slow or down
/// Alertmanager never delays evaluations (the long-lived ruler's choice; a
/// one-tick function sends inline). When the queue is full the batch is dropped
/// and counted, as Prometheus's notifier drops its oldest alerts.
pub struct QueuedNotifier {
    tx: tokio::sync::mpsc::Sender<Vec<AmAlert>>,
    /// Batches dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl QueuedNotifier {
    /// Starts the sending task (on the current tokio runtime).
    pub fn start(inner: std::sync::Arc<dyn Notifier>, capacity: usize) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AmAlert>>(capacity.max(1));
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                if let Err(e) = inner.send(&batch).await {
                    tracing::error!(error = %e, alerts = batch.len(), "alerts not delivered");
                }
            }
        });
        QueuedNotifier {
            tx,
            dropped: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Notifier for QueuedNotifier {
    async fn send(&self, alerts: &[AmAlert]) -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        self.tx.try_send(alerts.to_vec()).map_err(|e| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Error::Notify(format!("alert queue: {e}"))
        })
    }
}

/// A notifier that keeps what it is given (tests, dry runs).
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    pub sent: std::sync::Mutex<Vec<AmAlert>>,
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn send(&self, alerts: &[AmAlert]) -> Result<()> {
        self.sent
            .lock()
            .map_err(|_| Error::Notify("poisoned".into()))?
            .extend_from_slice(alerts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[tokio::test]
    async fn retries_then_fails_with_a_clear_error() {
        // Nothing listens on this port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let n = AlertmanagerNotifier::new(
            vec![format!("http://127.0.0.1:{port}")],
            Duration::from_secs(1),
        )
        .unwrap()
        .with_retries(2, Duration::from_millis(10));
        let a = AmAlert {
            labels: BTreeMap::from([("alertname".into(), "X".into())]),
            annotations: BTreeMap::new(),
            starts_at: rfc3339_ms(0),
            ends_at: rfc3339_ms(1),
            generator_url: String::new(),
        };
        let e = n.send(&[a]).await.unwrap_err().to_string();
        assert!(e.contains("/api/v2/alerts"), "{e}");
        assert_eq!(n.metrics.errors.load(Ordering::Relaxed), 1);
        assert_eq!(n.metrics.dropped.load(Ordering::Relaxed), 1);
        assert!(AlertmanagerNotifier::new(vec!["ftp://x".into()], Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn queued_notifier_hands_over_in_the_background() {
        let rec = std::sync::Arc::new(RecordingNotifier::default());
        let q = QueuedNotifier::start(rec.clone(), 4);
        let a = AmAlert {
            labels: BTreeMap::from([("alertname".into(), "X".into())]),
            annotations: BTreeMap::new(),
            starts_at: rfc3339_ms(0),
            ends_at: rfc3339_ms(1),
            generator_url: String::new(),
        };
        q.send(std::slice::from_ref(&a)).await.unwrap();
        for _ in 0..100 {
            if !rec.sent.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(rec.sent.lock().unwrap().clone(), vec![a]);
    }
}
