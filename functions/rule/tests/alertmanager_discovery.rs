//! Alertmanagers found through DNS (`--alertmanagers.url` with `dns+`,
//! `dnssrv+`, `dnssrvnoa+`), against a real DNS server on loopback
//! (`harness::dns`) and HTTP receivers taking `POST /api/v2/alerts`: alerts
//! reach every discovered Alertmanager, discovery follows the zone, and a DNS
//! outage keeps the last answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use harness::dns::DnsServer;
use query::dns::Dns;
use rule::notifier::{rfc3339_ms, AlertmanagerNotifier, AmAlert, AmTarget, Lookup, Notifier};

/// What one receiver was sent: the paths posted to and the alert names.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP server on `ip` (port 0: any) recording alert posts under `prefix`.
async fn receiver(ip: [u8; 4], port: u16, prefix: &str) -> (u16, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let path = format!("{prefix}/api/v2/alerts");
    let app = axum::Router::new().route(
        &path,
        post(move |uri: axum::http::Uri, body: String| {
            let g = g.clone();
            async move {
                let alerts: Vec<AmAlert> = serde_json::from_str(&body).unwrap();
                for a in alerts {
                    g.lock()
                        .unwrap()
                        .push((uri.path().to_string(), a.labels["alertname"].clone()));
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), port))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, got)
}

fn alert(name: &str) -> AmAlert {
    AmAlert {
        labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
        annotations: BTreeMap::new(),
        starts_at: rfc3339_ms(0),
        ends_at: rfc3339_ms(60_000),
        generator_url: String::new(),
    }
}

fn names(r: &Received) -> Vec<String> {
    r.lock().unwrap().iter().map(|(_, n)| n.clone()).collect()
}

const SRV: &str = "_web._tcp.alertmanager-operated.monitoring.test";

#[tokio::test]
async fn srv_discovered_alertmanagers_follow_the_zone_and_survive_a_dns_outage() {
    let (p0, am0) = receiver([127, 0, 0, 1], 0, "").await;
    let (p1, am1) = receiver([127, 0, 0, 1], 0, "").await;
    let dns = DnsServer::start().await;
    dns.set_srv(SRV, &[(p0, "am-0.test"), (p1, "am-1.test")]);
    dns.set_a("am-0.test", &[[127, 0, 0, 1]]);
    dns.set_a("am-1.test", &[[127, 0, 0, 1]]);

    let n = AlertmanagerNotifier::new(vec![format!("dnssrv+http://{SRV}")], Duration::from_secs(5))
        .unwrap()
        .with_retries(1, Duration::from_millis(10))
        .with_discovery(Dns::with_nameserver(dns.addr()).unwrap(), Duration::ZERO);
    let mut want = vec![
        format!("http://127.0.0.1:{p0}"),
        format!("http://127.0.0.1:{p1}"),
    ];
    want.sort();
    assert_eq!(n.alertmanagers().await, want);
    n.send(&[alert("First")]).await.unwrap();
    assert_eq!(names(&am0), ["First"]);
    assert_eq!(names(&am1), ["First"]);
    assert_eq!(
        n.metrics
            .discovered
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    // A replica leaves the SRV set: the next lookup drops it.
    dns.set_srv(SRV, &[(p1, "am-1.test")]);
    n.send(&[alert("Second")]).await.unwrap();
    assert_eq!(names(&am0), ["First"]);
    assert_eq!(names(&am1), ["First", "Second"]);

    // DNS fails: the last answer stays in use.
    dns.set_broken(true);
    n.send(&[alert("Third")]).await.unwrap();
    assert_eq!(names(&am1), ["First", "Second", "Third"]);
    assert_eq!(n.alertmanagers().await, [format!("http://127.0.0.1:{p1}")]);
}

#[tokio::test]
async fn a_records_with_a_port_and_a_path_prefix() {
    // Two Alertmanagers on one port, at two loopback addresses of one name.
    let (port, am0) = receiver([127, 0, 0, 1], 0, "/am").await;
    let (_, am1) = receiver([127, 0, 0, 2], port, "/am").await;
    let dns = DnsServer::start().await;
    dns.set_a("alertmanager.test", &[[127, 0, 0, 1], [127, 0, 0, 2]]);
    let n = AlertmanagerNotifier::new(
        vec![format!("dns+http://alertmanager.test:{port}/am/")],
        Duration::from_secs(5),
    )
    .unwrap()
    .with_discovery(Dns::with_nameserver(dns.addr()).unwrap(), Duration::ZERO);
    n.send(&[alert("A")]).await.unwrap();
    for am in [&am0, &am1] {
        assert_eq!(
            am.lock().unwrap().clone(),
            [("/am/api/v2/alerts".to_string(), "A".to_string())]
        );
    }

    // A name with no addresses left: the batch is dropped with a clear error.
    dns.set_a("alertmanager.test", &[]);
    let e = n.send(&[alert("B")]).await.unwrap_err().to_string();
    assert!(e.contains("no Alertmanager discovered"), "{e}");
    assert_eq!(
        n.metrics.dropped.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn alertmanager_urls_parse_as_thanos_takes_them() {
    assert_eq!(
        AmTarget::parse("http://am:9093/prefix").unwrap(),
        AmTarget::Static("http://am:9093/prefix".into())
    );
    assert_eq!(
        AmTarget::parse("dns+http://am.monitoring.svc").unwrap(),
        AmTarget::Discovered {
            lookup: Lookup::A,
            scheme: "http".into(),
            host: "am.monitoring.svc".into(),
            port: None,
            path: String::new(),
        }
    );
    // An explicit :80 is kept (the URL parser would drop it as http's default).
    assert!(matches!(
        AmTarget::parse("dns+http://am:80").unwrap(),
        AmTarget::Discovered { port: Some(80), .. }
    ));
    assert!(matches!(
        AmTarget::parse("dnssrvnoa+https://_web._tcp.am/x").unwrap(),
        AmTarget::Discovered { lookup: Lookup::SrvNoA, ref scheme, ref path, .. }
            if scheme == "https" && path == "/x"
    ));
    for (bad, why) in [
        ("dnssrv+http://_web._tcp.am:9093", "SRV"),
        ("dns+ftp://am", "scheme"),
        ("dns+http://am:notaport", "port"),
        ("am:9093", "scheme"),
    ] {
        let e = AmTarget::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
    }
}
