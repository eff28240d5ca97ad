//! The gRPC adapters over a real loopback socket: method paths, status codes,
//! limits and failures.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use model::Labels;
use storeapi::conformance::dataset;
use storeapi::grpc::{ClientOptions, GrpcStore};
use storeapi::pb::info::info_client::InfoClient;
use storeapi::pb::store_client::StoreClient;
use storeapi::{collect_series, pb, Error, MemStore, Result, SeriesStream, StoreApi};

fn bad_regex_request() -> pb::SeriesRequest {
    pb::SeriesRequest {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![pb::LabelMatcher {
            r#type: pb::label_matcher::Type::Re as i32,
            name: "job".into(),
            value: "a(b".into(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn generated_clients_reach_thanos_method_paths() {
    assert_eq!(pb::store_server::SERVICE_NAME, "thanos.Store");
    assert_eq!(pb::info::info_server::SERVICE_NAME, "thanos.info.Info");
    let server = common::Server::start(Arc::new(MemStore::with_data(
        Labels::from_pairs([("replica", "1")]),
        &dataset(),
    )))
    .await;
    let uri = format!("http://{}", server.addr);
    let mut info = InfoClient::connect(uri.clone()).await.unwrap();
    let i = info
        .info(pb::info::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(i.component_type, "store");
    assert_eq!(i.label_sets[0].labels[0].name, "replica");
    let store_info = i.store.unwrap();
    assert!(store_info.supports_without_replica_labels);

    let mut store = StoreClient::connect(uri).await.unwrap();
    // Raw tonic client: a bad regex is an InvalidArgument status naming it.
    let status = match store.series(bad_regex_request()).await {
        Err(s) => s,
        Ok(r) => r.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("job=~\"a(b\""),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("invalid regular expression"),
        "{}",
        status.message()
    );
    // without_replica_labels strips the replica label on the server.
    let r = store
        .series(pb::SeriesRequest {
            min_time: 0,
            max_time: i64::MAX,
            matchers: vec![pb::LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "up".into(),
            }],
            without_replica_labels: vec!["replica".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let frames: Vec<_> = r.into_inner().collect().await;
    assert_eq!(frames.len(), 3);
    for f in frames {
        let Some(pb::series_response::Result::Series(s)) = f.unwrap().result else {
            panic!("not a series frame")
        };
        assert!(s.labels.iter().all(|l| l.name != "replica"));
    }
    server.stop().await;
}

#[tokio::test]
async fn errors_come_back_as_the_same_variant() {
    let server =
        common::Server::start(Arc::new(MemStore::with_data(Labels::empty(), &dataset()))).await;
    let client = GrpcStore::connect(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    let err = match client.series(bad_regex_request()).await {
        Err(e) => e,
        Ok(s) => collect_series(s).await.unwrap_err(),
    };
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("a(b")),
        "{err}"
    );
    let err = client
        .label_values(pb::LabelValuesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err, Error::InvalidArgument("label name is empty".into()));
    server.stop().await;
}

#[tokio::test]
async fn unreachable_store_is_unavailable() {
    // Bind and drop to get a port with nothing listening.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let e = GrpcStore::connect(&addr.to_string(), opts.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    let lazy = GrpcStore::connect_lazy(&addr.to_string(), opts).unwrap();
    let e = lazy.info().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(matches!(
        GrpcStore::connect_lazy("not a uri", ClientOptions::default()),
        Err(Error::InvalidArgument(_))
    ));
}

/// Sends one frame, then stalls.
struct Slow;

#[async_trait::async_trait]
impl StoreApi for Slow {
    async fn info(&self) -> Result<pb::info::InfoResponse> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Default::default())
    }
    async fn series(&self, _req: pb::SeriesRequest) -> Result<SeriesStream> {
        let first = futures::stream::iter(vec![Ok(storeapi::warning_frame("first"))]);
        let stall = futures::stream::once(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(storeapi::warning_frame("late"))
        });
        Ok(first.chain(stall).boxed())
    }
    async fn label_names(&self, _req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        Err(Error::Unimplemented("label names".into()))
    }
    async fn label_values(&self, _req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        Err(Error::Internal("boom".into()))
    }
}

#[tokio::test]
async fn timeouts_and_other_codes() {
    let server = common::Server::start(Arc::new(Slow)).await;
    let opts = ClientOptions {
        request_timeout: Some(Duration::from_millis(300)),
        series_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let client = GrpcStore::connect(&server.addr.to_string(), opts)
        .await
        .unwrap();
    let e = client.info().await.unwrap_err();
    assert!(matches!(e, Error::DeadlineExceeded(_)), "{e}");
    let frames: Vec<_> = client
        .series(pb::SeriesRequest::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[0].is_ok());
    assert!(
        matches!(frames[1], Err(Error::DeadlineExceeded(_))),
        "{frames:?}"
    );
    assert!(matches!(
        client.label_names(Default::default()).await,
        Err(Error::Unimplemented(m)) if m == "label names"
    ));
    assert!(matches!(
        client.label_values(Default::default()).await,
        Err(Error::Internal(m)) if m == "boom"
    ));
    drop(client);
    drop(server);
}

#[tokio::test]
async fn message_size_limit_is_enforced() {
    let mut big = MemStore::new(Labels::empty());
    let samples: Vec<(i64, f64)> = (0..50_000).map(|i| (i, (i as f64).sin())).collect();
    big.add_series(&Labels::from_pairs([("__name__", "big")]), &samples);
    let server = common::Server::start(Arc::new(big)).await;
    let req = pb::SeriesRequest {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![pb::LabelMatcher {
            r#type: 0,
            name: "__name__".into(),
            value: "big".into(),
        }],
        ..Default::default()
    };
    let small = GrpcStore::connect(
        &server.addr.to_string(),
        ClientOptions {
            max_decoding_message_size: 64 << 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let e = collect_series(small.series(req.clone()).await.unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::ResourceExhausted(m) if m.contains("too large")),
        "{e}"
    );
    let normal = GrpcStore::connect(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    let (series, _) = collect_series(normal.series(req).await.unwrap())
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].chunks.len() > 400);
    server.stop().await;
}
