//! DNS discovery against a real (local) DNS responder over UDP: `dnssrv+`,
//! `dnssrvnoa+` and `dns+` endpoints resolve through hickory-resolver, are
//! re-resolved when the zone changes, keep their last answer when DNS fails,
//! and a discovered gRPC store answers Info.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use harness::dns::DnsServer;
use model::Labels;
use query::dns::Dns;
use query::endpoints::{grpc_connector, Health, Intervals};
use query::EndpointSet;
use storeapi::grpc::ClientOptions;
use storeapi::{MemStore, StoreApi};

const SRV_NAME: &str = "_grpc._tcp.aether-store.monitoring.svc.cluster.local";

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn addresses(set: &EndpointSet) -> Vec<String> {
    set.refresh(true).await;
    let mut v: Vec<String> = set.all().iter().map(|e| e.address().to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn srv_and_a_discovery_follows_the_zone_and_survives_dns_failures() {
    let server = DnsServer::start().await;
    server.set_srv(
        SRV_NAME,
        &[(10901, "store-0.test"), (10902, "store-1.test")],
    );
    server.set_a("store-0.test", &[[127, 0, 0, 10]]);
    server.set_a("store-1.test", &[[127, 0, 0, 11]]);
    let dns = Dns::with_nameserver(server.addr()).unwrap();

    // The resolver itself.
    let mut targets = dns.lookup_srv(SRV_NAME).await.unwrap();
    targets.sort();
    assert_eq!(
        targets,
        vec![
            ("store-0.test".to_string(), 10901),
            ("store-1.test".to_string(), 10902)
        ]
    );
    // A name that does not exist has no endpoints (not an error: they are gone).
    assert_eq!(dns.lookup_srv("_grpc._tcp.nothing.test").await, Ok(vec![]));

    let specs = vec![
        format!("dnssrv+{SRV_NAME}"),
        format!("dnssrvnoa+{SRV_NAME}"),
        "dns+store-0.test:19090".to_string(),
        "127.0.0.1:1".to_string(),
    ];
    let set = EndpointSet::new(
        &specs,
        &[],
        grpc_connector(ClientOptions::default()),
        Intervals {
            resolve: Duration::ZERO,
            info: Duration::from_secs(60),
            info_timeout: Duration::from_millis(300),
        },
    )
    .unwrap()
    .with_dns(dns);
    assert_eq!(
        addresses(&set).await,
        sorted(&[
            "127.0.0.1:1",
            "127.0.0.10:10901",
            "127.0.0.10:19090",
            "127.0.0.11:10902",
            "store-0.test:10901",
            "store-1.test:10902",
        ])
    );
    assert!(set.discovery_errors().await.is_empty());

    // A replica goes away: the next resolution drops it.
    server.set_srv(SRV_NAME, &[(10901, "store-0.test")]);
    assert_eq!(
        addresses(&set).await,
        sorted(&[
            "127.0.0.1:1",
            "127.0.0.10:10901",
            "127.0.0.10:19090",
            "store-0.test:10901"
        ])
    );

    // DNS fails: the last answers stay, and the failure is reported.
    server.set_broken(true);
    assert_eq!(
        addresses(&set).await,
        sorted(&[
            "127.0.0.1:1",
            "127.0.0.10:10901",
            "127.0.0.10:19090",
            "store-0.test:10901"
        ])
    );
    let errors = set.discovery_errors().await;
    assert!(
        errors.iter().any(|e| e.contains(SRV_NAME)),
        "errors name the SRV name: {errors:?}"
    );
}

#[tokio::test]
async fn a_store_found_by_srv_answers_info() {
    // A real gRPC store on loopback, found through an SRV record.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let store: Arc<dyn StoreApi> = Arc::new(MemStore::with_data(
        Labels::from_pairs([("replica", "a")]),
        &[(
            Labels::from_pairs([("__name__", "up"), ("job", "x")]),
            vec![(1000, 1.0)],
        )],
    ));
    tokio::spawn(storeapi::grpc::serve(
        store,
        listener,
        std::future::pending(),
    ));

    let server = DnsServer::start().await;
    server.set_srv(SRV_NAME, &[(port, "store-0.test")]);
    server.set_a("store-0.test", &[[127, 0, 0, 1]]);
    let set = EndpointSet::new(
        &[format!("dnssrv+{SRV_NAME}")],
        &[],
        grpc_connector(ClientOptions::default()),
        Intervals::default(),
    )
    .unwrap()
    .with_dns(Dns::with_nameserver(server.addr()).unwrap());
    set.refresh(true).await;
    let eps = set.all();
    assert_eq!(eps.len(), 1);
    assert_eq!(
        eps[0].address(),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).to_string()
    );
    match eps[0].health() {
        Health::Up(info) => {
            assert_eq!(
                info.label_sets,
                vec![Labels::from_pairs([("replica", "a")])]
            );
            assert_eq!((info.min_time, info.max_time), (1000, 1000));
        }
        other => panic!("endpoint not up: {other:?}"),
    }
}
