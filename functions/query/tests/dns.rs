//! DNS discovery against a real (local) DNS responder over UDP: `dnssrv+`,
//! `dnssrvnoa+` and `dns+` endpoints resolve through hickory-resolver, are
//! re-resolved when the zone changes, keep their last answer when DNS fails,
//! and a discovered gRPC store answers Info.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use model::Labels;
use query::dns::Dns;
use query::endpoints::{grpc_connector, Health, Intervals};
use query::EndpointSet;
use storeapi::grpc::ClientOptions;
use storeapi::{MemStore, StoreApi};

type Zone = Arc<Mutex<HashMap<(String, RecordType), Vec<RData>>>>;

/// A UDP DNS responder answering from `zone` (NXDOMAIN for unknown names).
/// Returns its address and a switch that makes it answer SERVFAIL.
async fn responder(zone: Zone) -> (SocketAddr, Arc<Mutex<bool>>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let broken = Arc::new(Mutex::new(false));
    let b = broken.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            resp.metadata.recursion_desired = q.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.metadata.authoritative = true;
            for query in &q.queries {
                resp.add_query(query.clone());
                let key = (
                    query.name().to_utf8().trim_end_matches('.').to_string(),
                    query.query_type(),
                );
                if *b.lock().unwrap() {
                    resp.metadata.response_code = ResponseCode::ServFail;
                    continue;
                }
                let zone = zone.lock().unwrap();
                match zone.get(&key) {
                    Some(rdatas) => {
                        for rd in rdatas {
                            resp.add_answer(Record::from_rdata(
                                query.name().clone(),
                                1,
                                rd.clone(),
                            ));
                        }
                    }
                    None if zone.keys().any(|(n, _)| *n == key.0) => {} // NOERROR, no data
                    None => resp.metadata.response_code = ResponseCode::NXDomain,
                }
            }
            let bytes = resp.to_vec().unwrap();
            let _ = sock.send_to(&bytes, peer).await;
        }
    });
    (addr, broken)
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(
        0,
        10,
        port,
        Name::from_utf8(format!("{target}.")).unwrap(),
    ))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

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
    let zone: Zone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        z.insert(
            (SRV_NAME.to_string(), RecordType::SRV),
            vec![srv(10901, "store-0.test"), srv(10902, "store-1.test")],
        );
        z.insert(
            ("store-0.test".into(), RecordType::A),
            vec![a([127, 0, 0, 10])],
        );
        z.insert(
            ("store-1.test".into(), RecordType::A),
            vec![a([127, 0, 0, 11])],
        );
        z.insert(("store-1.test".into(), RecordType::AAAA), vec![]);
        z.insert(("store-0.test".into(), RecordType::AAAA), vec![]);
    }
    let (ns, broken) = responder(zone.clone()).await;
    let dns = Dns::with_nameserver(ns).unwrap();

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
    assert!(dns.lookup_srv("_grpc._tcp.nothing.test").await.is_err());

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
    zone.lock().unwrap().insert(
        (SRV_NAME.to_string(), RecordType::SRV),
        vec![srv(10901, "store-0.test")],
    );
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
    *broken.lock().unwrap() = true;
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

    let zone: Zone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        z.insert(
            (SRV_NAME.to_string(), RecordType::SRV),
            vec![srv(port, "store-0.test")],
        );
        z.insert(
            ("store-0.test".into(), RecordType::A),
            vec![a([127, 0, 0, 1])],
        );
        z.insert(("store-0.test".into(), RecordType::AAAA), vec![]);
    }
    let (ns, _) = responder(zone).await;
    let set = EndpointSet::new(
        &[format!("dnssrv+{SRV_NAME}")],
        &[],
        grpc_connector(ClientOptions::default()),
        Intervals::default(),
    )
    .unwrap()
    .with_dns(Dns::with_nameserver(ns).unwrap());
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
