//! The StoreAPI endpoints a querier fans out to: discovery (static addresses,
//! `dns+host:port`, `dnssrv+name`, file SD) and each endpoint's Info (external
//! label sets, time range) and health.
//!
//! Nothing here needs a long-lived process: discovery and Info are refreshed on
//! demand, when a request finds them older than their interval. A long-lived
//! process may also call [`EndpointSet::refresh`] on a timer. An endpoint that
//! cannot be reached stays in the set, marked down, and is retried.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::{Labels, Matcher};
use storeapi::grpc::{ClientOptions, GrpcStore};
use storeapi::StoreApi;

use crate::dns::Dns;

/// Creates the client of an address (default: a lazily connecting gRPC client).
pub type Connector = Arc<dyn Fn(&str) -> storeapi::Result<Arc<dyn StoreApi>> + Send + Sync>;

/// What an endpoint's Info said.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    /// Thanos's component type ("sidecar", "store", ...).
    pub component: String,
    /// External label sets; every series it serves carries one of them.
    pub label_sets: Vec<Labels>,
    /// Time range of its data (ms, inclusive).
    pub min_time: i64,
    pub max_time: i64,
}

impl EndpointInfo {
    /// Whether the endpoint may hold series matching `matchers` in `[mint, maxt]`.
    pub fn may_match(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> bool {
        self.min_time <= maxt
            && self.max_time >= mint
            && storeapi::extlabels::label_sets_match(matchers, &self.label_sets)
    }

    fn from_pb(r: &storeapi::pb::info::InfoResponse) -> Self {
        let (min_time, max_time) = r
            .store
            .as_ref()
            .map_or((i64::MIN, i64::MAX), |s| (s.min_time, s.max_time));
        EndpointInfo {
            component: r.component_type.clone(),
            label_sets: r
                .label_sets
                .iter()
                .map(|z| storeapi::convert::labels_from_pb(&z.labels))
                .collect(),
            min_time,
            max_time,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    info: Option<EndpointInfo>,
    error: Option<String>,
    checked: Option<Instant>,
    checked_unix_ms: i64,
    refreshing: bool,
}

/// One StoreAPI endpoint.
pub struct Endpoint {
    address: String,
    store: Arc<dyn StoreApi>,
    state: Mutex<State>,
}

/// An endpoint's health as last checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Not checked yet.
    Unknown,
    /// Its last Info call succeeded.
    Up(EndpointInfo),
    /// Its last Info call failed; the info is the last one known, if any.
    Down {
        info: Option<EndpointInfo>,
        error: String,
    },
}

/// An endpoint's status for the API and the UI.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    pub address: String,
    pub health: Health,
    /// When Info was last asked (unix ms; 0: never).
    pub last_check_ms: i64,
}

impl Endpoint {
    /// An endpoint over any StoreAPI client (in-process or remote).
    pub fn new(address: impl Into<String>, store: Arc<dyn StoreApi>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            address: address.into(),
            store,
            state: Mutex::new(State::default()),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn store(&self) -> &Arc<dyn StoreApi> {
        &self.store
    }

    pub fn health(&self) -> Health {
        let s = self.state.lock().unwrap();
        match (&s.error, &s.info, s.checked) {
            (_, _, None) => Health::Unknown,
            (Some(e), info, _) => Health::Down {
                info: info.clone(),
                error: e.clone(),
            },
            (None, Some(i), _) => Health::Up(i.clone()),
            (None, None, _) => Health::Unknown,
        }
    }

    pub fn status(&self) -> EndpointStatus {
        EndpointStatus {
            address: self.address.clone(),
            health: self.health(),
            last_check_ms: self.state.lock().unwrap().checked_unix_ms,
        }
    }

    /// Asks the endpoint's Info now (at most `timeout`) and records the outcome.
    pub async fn check(&self, timeout: Duration) {
        let r = match tokio::time::timeout(timeout, self.store.info()).await {
            Ok(Ok(r)) => Ok(EndpointInfo::from_pb(&r)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("info call timed out after {timeout:?}")),
        };
        let mut s = self.state.lock().unwrap();
        s.checked = Some(Instant::now());
        s.checked_unix_ms = now_ms();
        s.refreshing = false;
        match r {
            Ok(i) => {
                s.info = Some(i);
                s.error = None;
            }
            Err(e) => {
                tracing::debug!(endpoint = %self.address, error = %e, "endpoint down");
                s.error = Some(e);
            }
        }
    }

    /// Whether Info is older than `ttl` (or was never asked); marks it as being
    /// refreshed so that concurrent requests do not all ask.
    fn claim_refresh(&self, ttl: Duration) -> (bool, bool) {
        let mut s = self.state.lock().unwrap();
        let never = s.checked.is_none();
        let stale = s.checked.is_none_or(|t| t.elapsed() >= ttl);
        if stale && !s.refreshing {
            s.refreshing = true;
            (true, never)
        } else {
            (false, never)
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How often to re-resolve DNS names and re-read SD files, ask Info, and how long
/// an Info call may take.
#[derive(Debug, Clone)]
pub struct Intervals {
    pub resolve: Duration,
    pub info: Duration,
    pub info_timeout: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            resolve: Duration::from_secs(30),
            info: Duration::from_secs(5),
            info_timeout: Duration::from_secs(5),
        }
    }
}

/// A spec for endpoints: an address, a DNS name or an SRV name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `host:port` (or a URI): used as is.
    Static(String),
    /// `dns+host:port`: every A/AAAA record, with the port.
    Dns { host: String, port: u16 },
    /// `dnssrv+name`: every SRV record's target, resolved to its addresses,
    /// with the record's port.
    DnsSrv(String),
    /// `dnssrvnoa+name`: every SRV record's `target:port`, unresolved.
    DnsSrvNoA(String),
}

impl Spec {
    /// Parses a `--endpoint` value.
    pub fn parse(s: &str) -> Result<Spec, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty endpoint address".into());
        }
        if let Some(rest) = s.strip_prefix("dnssrv+") {
            return Ok(Spec::DnsSrv(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("dnssrvnoa+") {
            return Ok(Spec::DnsSrvNoA(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("dns+") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: dns+ needs host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: bad port {port:?}"))?;
            return Ok(Spec::Dns {
                host: host.trim_matches(['[', ']']).to_string(),
                port,
            });
        }
        if !s.contains("://") && !s.contains(':') {
            return Err(format!(
                "{s:?}: want host:port, dns+host:port or dnssrv+name"
            ));
        }
        Ok(Spec::Static(s.to_string()))
    }

    async fn resolve(&self, dns: &Dns) -> Result<Vec<String>, String> {
        match self {
            Spec::Static(a) => Ok(vec![a.clone()]),
            Spec::Dns { host, port } => dns.lookup_host(host, *port).await,
            Spec::DnsSrv(name) => dns.srv_endpoints(name, true).await,
            Spec::DnsSrvNoA(name) => dns.srv_endpoints(name, false).await,
        }
    }
}

/// Reads a Prometheus file-SD file (YAML or JSON: a list of `{targets: [...]}`).
pub fn read_sd_file(path: &std::path::Path) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Group {
        #[serde(default)]
        targets: Vec<String>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<Group> =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(groups.into_iter().flat_map(|g| g.targets).collect())
}

struct Discovery {
    specs: Vec<Spec>,
    /// The resolver for `dns+`/`dnssrv+` specs: injected, or the system's on
    /// first use.
    dns: Option<Dns>,
    sd_files: Vec<PathBuf>,
    /// Last good resolution of each spec / file (kept when a later one fails).
    resolved: BTreeMap<String, Vec<String>>,
    last: Option<Instant>,
    errors: Vec<String>,
}

/// The set of endpoints a querier uses.
pub struct EndpointSet {
    connector: Connector,
    intervals: Intervals,
    discovery: tokio::sync::Mutex<Discovery>,
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    /// Endpoints given as clients (in-process), never re-resolved.
    fixed: Vec<Arc<Endpoint>>,
}

/// The default connector: gRPC, connecting on first use.
pub fn grpc_connector(opts: ClientOptions) -> Connector {
    Arc::new(move |addr: &str| {
        Ok(Arc::new(GrpcStore::connect_lazy(addr, opts.clone())?) as Arc<dyn StoreApi>)
    })
}

impl EndpointSet {
    /// Endpoints from `--endpoint` values and file-SD files, reached through
    /// `connector`.
    pub fn new(
        specs: &[String],
        sd_files: &[PathBuf],
        connector: Connector,
        intervals: Intervals,
    ) -> Result<EndpointSet, String> {
        let specs = specs
            .iter()
            .map(|s| Spec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EndpointSet {
            connector,
            intervals,
            discovery: tokio::sync::Mutex::new(Discovery {
                specs,
                dns: None,
                sd_files: sd_files.to_vec(),
                resolved: BTreeMap::new(),
                last: None,
                errors: Vec::new(),
            }),
            endpoints: RwLock::new(BTreeMap::new()),
            fixed: Vec::new(),
        })
    }

    /// A set of given clients (in-process stores, tests): `(name, store)`.
    pub fn from_stores(stores: Vec<(String, Arc<dyn StoreApi>)>) -> EndpointSet {
        let mut set = EndpointSet::new(
            &[],
            &[],
            Arc::new(|a: &str| {
                Err(storeapi::Error::Unavailable(format!(
                    "no connector for {a}"
                )))
            }),
            Intervals::default(),
        )
        .expect("no specs");
        set.fixed = stores
            .into_iter()
            .map(|(name, s)| Endpoint::new(name, s))
            .collect();
        set
    }

    /// Resolves `dns+`/`dnssrv+` specs with `dns` instead of the system's
    /// resolver.
    pub fn with_dns(self, dns: Dns) -> Self {
        self.discovery.try_lock().expect("not shared yet").dns = Some(dns);
        self
    }

    /// Sets the refresh intervals.
    pub fn with_intervals(mut self, intervals: Intervals) -> Self {
        self.intervals = intervals;
        self
    }

    /// Re-resolves names and re-reads SD files if due (or `force`), then asks
    /// Info of endpoints never asked (waiting) and of stale ones (waiting only
    /// if `force`; otherwise in the background).
    pub async fn refresh(&self, force: bool) {
        self.resolve(force).await;
        let eps = self.all();
        let mut wait = Vec::new();
        for ep in eps {
            let (claimed, never) = ep.claim_refresh(if force {
                Duration::ZERO
            } else {
                self.intervals.info
            });
            if !claimed {
                continue;
            }
            let timeout = self.intervals.info_timeout;
            if never || force {
                wait.push(async move { ep.check(timeout).await });
            } else {
                tokio::spawn(async move { ep.check(timeout).await });
            }
        }
        futures::future::join_all(wait).await;
    }

    async fn resolve(&self, force: bool) {
        let mut d = self.discovery.lock().await;
        if !force && d.last.is_some_and(|t| t.elapsed() < self.intervals.resolve) {
            return;
        }
        d.last = Some(Instant::now());
        d.errors.clear();
        let mut addrs: Vec<String> = Vec::new();
        let specs = d.specs.clone();
        let needs_dns = specs.iter().any(|s| !matches!(s, Spec::Static(_)));
        if needs_dns && d.dns.is_none() {
            match Dns::system() {
                Ok(dns) => d.dns = Some(dns),
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver; DNS endpoints keep their last result");
                    d.errors.push(e);
                }
            }
        }
        let dns = d.dns.clone();
        for spec in &specs {
            let key = format!("{spec:?}");
            let result = match (&dns, spec) {
                (_, Spec::Static(a)) => Ok(vec![a.clone()]),
                (Some(dns), spec) => spec.resolve(dns).await,
                (None, _) => continue,
            };
            match result {
                Ok(v) => {
                    d.resolved.insert(key.clone(), v);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "endpoint discovery failed; keeping the last result");
                    d.errors.push(e);
                }
            }
            addrs.extend(d.resolved.get(&key).cloned().unwrap_or_default());
        }
        for f in d.sd_files.clone() {
            let key = format!("file:{}", f.display());
            match read_sd_file(&f) {
                Ok(targets) => {
                    let mut v = Vec::new();
                    for t in targets {
                        match Spec::parse(&t) {
                            Ok(Spec::Static(a)) => v.push(a),
                            Ok(s) => {
                                if d.dns.is_none() {
                                    match Dns::system() {
                                        Ok(dns) => d.dns = Some(dns),
                                        Err(e) => {
                                            d.errors.push(e);
                                            continue;
                                        }
                                    }
                                }
                                let dns = d.dns.clone().expect("set above");
                                match s.resolve(&dns).await {
                                    Ok(a) => v.extend(a),
                                    Err(e) => d.errors.push(e),
                                }
                            }
                            Err(e) => d.errors.push(e),
                        }
                    }
                    d.resolved.insert(key.clone(), v);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "file SD failed; keeping the last result");
                    d.errors.push(e);
                }
            }
            addrs.extend(d.resolved.get(&key).cloned().unwrap_or_default());
        }
        addrs.sort();
        addrs.dedup();
        let mut map = self.endpoints.write().unwrap();
        map.retain(|a, _| addrs.binary_search(a).is_ok());
        for a in addrs {
            if map.contains_key(&a) {
                continue;
            }
            match (self.connector)(&a) {
                Ok(store) => {
                    map.insert(a.clone(), Endpoint::new(a, store));
                }
                Err(e) => d.errors.push(format!("{a}: {e}")),
            }
        }
    }

    /// Every endpoint (fixed ones first, then discovered ones by address).
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        let mut v = self.fixed.clone();
        v.extend(self.endpoints.read().unwrap().values().cloned());
        v
    }

    /// Refreshes if due, then every endpoint.
    pub async fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.refresh(false).await;
        self.all()
    }

    /// Status of every endpoint.
    pub async fn status(&self) -> Vec<EndpointStatus> {
        self.endpoints().await.iter().map(|e| e.status()).collect()
    }

    /// Discovery errors of the last resolution.
    pub async fn discovery_errors(&self) -> Vec<String> {
        self.discovery.lock().await.errors.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(Spec::parse("a:1").unwrap(), Spec::Static("a:1".into()));
        assert_eq!(
            Spec::parse("dns+store.svc:10901").unwrap(),
            Spec::Dns {
                host: "store.svc".into(),
                port: 10901
            }
        );
        assert_eq!(
            Spec::parse("dnssrv+_grpc._tcp.store.svc").unwrap(),
            Spec::DnsSrv("_grpc._tcp.store.svc".into())
        );
        assert!(Spec::parse("nohostport").is_err());
        assert!(Spec::parse("dns+x").is_err());
    }

    #[test]
    fn sd_file_yaml_and_json() {
        let d = tempfile::tempdir().unwrap();
        let y = d.path().join("a.yml");
        std::fs::write(&y, "- targets: ['a:1', 'b:2']\n- targets: ['c:3']\n").unwrap();
        assert_eq!(read_sd_file(&y).unwrap(), vec!["a:1", "b:2", "c:3"]);
        let j = d.path().join("a.json");
        std::fs::write(&j, r#"[{"targets":["x:1"],"labels":{"k":"v"}}]"#).unwrap();
        assert_eq!(read_sd_file(&j).unwrap(), vec!["x:1"]);
    }

    #[tokio::test]
    async fn file_sd_reload_and_dns() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sd.yml");
        std::fs::write(&f, "- targets: ['127.0.0.1:1']\n").unwrap();
        let set = EndpointSet::new(
            &["dns+localhost:2".to_string()],
            std::slice::from_ref(&f),
            grpc_connector(ClientOptions::default()),
            Intervals {
                resolve: Duration::ZERO,
                info: Duration::from_secs(60),
                info_timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        set.refresh(false).await;
        let addrs: Vec<String> = set.all().iter().map(|e| e.address().to_string()).collect();
        assert!(addrs.contains(&"127.0.0.1:1".to_string()), "{addrs:?}");
        assert!(addrs.iter().any(|a| a.ends_with(":2")), "{addrs:?}");
        // Nothing listens on port 1: shown as down, not fatal.
        let ep = set
            .all()
            .into_iter()
            .find(|e| e.address() == "127.0.0.1:1")
            .unwrap();
        assert!(
            matches!(ep.health(), Health::Down { .. }),
            "{:?}",
            ep.health()
        );
        std::fs::write(&f, "- targets: ['127.0.0.1:3']\n").unwrap();
        set.refresh(false).await;
        let addrs: Vec<String> = set.all().iter().map(|e| e.address().to_string()).collect();
        assert!(addrs.contains(&"127.0.0.1:3".to_string()), "{addrs:?}");
        assert!(!addrs.contains(&"127.0.0.1:1".to_string()), "{addrs:?}");
    }
}
