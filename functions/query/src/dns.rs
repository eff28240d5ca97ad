//! DNS discovery of endpoints, on `hickory-resolver` (as Thanos's `dns+`,
//! `dnssrv+` and `dnssrvnoa+` providers):
//!
//! - `dns+host:port`: every A/AAAA address of `host`, with `port`;
//! - `dnssrv+name`: every SRV record of `name`, its target resolved to A/AAAA
//!   addresses, with the record's port;
//! - `dnssrvnoa+name`: every SRV record's `target:port` as is.
//!
//! A name that does not exist or has no records of the type asked for answers
//! no addresses (as Thanos's resolver: the endpoints are gone); any other
//! failure is an error, and callers keep their last answer.
//!
//! The resolver reads `/etc/resolv.conf` (and `/etc/hosts`); tests point it at
//! a nameserver of their own. Answers are not cached here: the endpoint set
//! re-resolves on its own interval and must see changes at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// A DNS resolver for endpoint discovery; cheap to clone.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

fn opts(mut o: ResolverOpts) -> ResolverOpts {
    o.cache_size = 0;
    o.timeout = Duration::from_secs(5);
    o.attempts = 2;
    o
}

impl Dns {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Dns, String> {
        let mut b = TokioResolver::builder_tokio()
            .map_err(|e| format!("reading the system's DNS configuration: {e}"))?;
        let o = opts(b.options_mut().clone());
        *b.options_mut() = o;
        let resolver = b
            .build()
            .map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(Dns {
            resolver: Arc::new(resolver),
        })
    }

    /// A resolver asking only `server` (UDP, then TCP for truncated answers).
    pub fn with_nameserver(server: SocketAddr) -> Result<Dns, String> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let mut ns = NameServerConfig::udp(server.ip());
        ns.connections = vec![udp, tcp];
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let mut b = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let o = opts(b.options_mut().clone());
        *b.options_mut() = o;
        let resolver = b
            .build()
            .map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(Dns {
            resolver: Arc::new(resolver),
        })
    }

    /// `ip:port` for every address of `host` (an IP literal is returned as is).
    pub async fn lookup_host(&self, host: &str, port: u16) -> Result<Vec<String>, String> {
        let ips = match self.resolver.lookup_ip(host).await {
            Ok(ips) => ips,
            Err(e) if e.is_no_records_found() => {
                tracing::debug!(host, "no addresses in DNS");
                return Ok(Vec::new());
            }
            Err(e) => return Err(format!("resolving {host}: {e}")),
        };
        let mut v: Vec<String> = ips
            .iter()
            .map(|ip| SocketAddr::new(ip, port).to_string())
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// The `(target, port)` of every SRV record of `name` (target without the
    /// trailing dot).
    pub async fn lookup_srv(&self, name: &str) -> Result<Vec<(String, u16)>, String> {
        let lookup = match self.resolver.srv_lookup(name).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => {
                tracing::debug!(name, "no SRV records in DNS");
                return Ok(Vec::new());
            }
            Err(e) => return Err(format!("SRV lookup of {name}: {e}")),
        };
        let mut v: Vec<(String, u16)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => {
                    let t = srv.target.to_utf8();
                    let t = t.trim_end_matches('.').to_string();
                    // A target of "." means "no service here" (RFC 2782).
                    (!t.is_empty()).then_some((t, srv.port))
                }
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// `dnssrv+` (`resolve_targets`) or `dnssrvnoa+`: endpoint addresses of
    /// the SRV records of `name`.
    pub async fn srv_endpoints(
        &self,
        name: &str,
        resolve_targets: bool,
    ) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for (target, port) in self.lookup_srv(name).await? {
            if resolve_targets {
                out.extend(self.lookup_host(&target, port).await?);
            } else {
                out.push(format!("{target}:{port}"));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
