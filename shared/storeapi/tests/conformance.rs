//! The conformance suite against the in-memory store: directly, through the gRPC
//! server and client over loopback TCP, and through a merging proxy.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use model::Labels;
use storeapi::conformance::{dataset, Suite};
use storeapi::grpc::{ClientOptions, GrpcStore};
use storeapi::merge::{limit_series, merge_series_streams};
use storeapi::{pb, MemStore, Result, SeriesStream, StoreApi};

fn ext() -> Labels {
    Labels::from_pairs([("region", "eu"), ("replica", "r0")])
}

#[tokio::test]
async fn memstore_in_process() {
    let store = MemStore::with_data(Labels::empty(), &dataset());
    Suite::default().run(&store).await.unwrap();
}

#[tokio::test]
async fn memstore_with_external_labels_as_trait_object() {
    let store: Arc<dyn StoreApi> = Arc::new(MemStore::with_data(ext(), &dataset()));
    Suite::new(ext()).run(&store).await.unwrap();
}

#[tokio::test]
async fn memstore_over_grpc() {
    let server = common::Server::start(Arc::new(MemStore::with_data(ext(), &dataset()))).await;
    let client = GrpcStore::connect(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    Suite::new(ext()).run(&client).await.unwrap();
    // And a lazily connecting client given a URI.
    let lazy =
        GrpcStore::connect_lazy(&format!("http://{}", server.addr), ClientOptions::default())
            .unwrap();
    Suite::new(ext()).run(&lazy).await.unwrap();
    server.stop().await;
}

/// A store that fans out to others and merges their answers.
struct Proxy(Vec<Arc<dyn StoreApi>>);

#[async_trait::async_trait]
impl StoreApi for Proxy {
    async fn info(&self) -> Result<pb::info::InfoResponse> {
        let mut out = self.0[0].info().await?;
        for s in &self.0[1..] {
            let i = s.info().await?;
            let (a, b) = (out.store.as_mut().unwrap(), i.store.unwrap());
            a.min_time = a.min_time.min(b.min_time);
            a.max_time = a.max_time.max(b.max_time);
        }
        Ok(out)
    }
    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        let mut streams = Vec::new();
        for s in &self.0 {
            streams.push(s.series(req.clone()).await?);
        }
        Ok(limit_series(merge_series_streams(streams), req.limit))
    }
    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        let mut names = std::collections::BTreeSet::new();
        for s in &self.0 {
            names.extend(s.label_names(req.clone()).await?.names);
        }
        Ok(pb::LabelNamesResponse {
            names: names.into_iter().collect(),
            ..Default::default()
        })
    }
    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        let mut values = std::collections::BTreeSet::new();
        for s in &self.0 {
            values.extend(s.label_values(req.clone()).await?.values);
        }
        Ok(pb::LabelValuesResponse {
            values: values.into_iter().collect(),
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn merged_stores_pass_the_suite() {
    let data = dataset();
    // Two full copies (exact duplicate chunks) and one store per half of the
    // series, the second half further split in time across two stores.
    let full_a = MemStore::with_data(ext(), &data);
    let full_b = MemStore::with_data(ext(), &data);
    let (first, second) = data.split_at(data.len() / 2);
    let half_a = MemStore::with_data(ext(), first);
    let early: Vec<_> = second
        .iter()
        .map(|(l, s)| (l.clone(), s[..s.len() / 2].to_vec()))
        .collect();
    let late: Vec<_> = second
        .iter()
        .map(|(l, s)| (l.clone(), s[s.len() / 2..].to_vec()))
        .collect();
    let server = common::Server::start(Arc::new(MemStore::with_data(ext(), &late))).await;
    let remote = GrpcStore::connect(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    let proxy = Proxy(vec![
        Arc::new(full_a),
        Arc::new(half_a),
        Arc::new(MemStore::with_data(ext(), &early)),
        Arc::new(remote),
        Arc::new(full_b),
    ]);
    Suite::new(ext()).run(&proxy).await.unwrap();

    let req = pb::SeriesRequest {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers: vec![pb::LabelMatcher {
            r#type: pb::label_matcher::Type::Re as i32,
            name: "__name__".into(),
            value: ".+".into(),
        }],
        ..Default::default()
    };
    let single: Vec<_> = MemStore::with_data(ext(), &data)
        .series(req.clone())
        .await
        .unwrap()
        .collect()
        .await;
    // Only exact copies (whole series or not at all): duplicates are gone and
    // the merged answer equals one full store's.
    let copies = Proxy(vec![
        Arc::new(MemStore::with_data(ext(), &data)),
        Arc::new(MemStore::with_data(ext(), first)),
        Arc::new(MemStore::with_data(ext(), &data)),
    ]);
    let merged: Vec<_> = copies.series(req.clone()).await.unwrap().collect().await;
    assert!(merged == single, "merging exact copies changed the answer");
    // With the time-split store, chunks differ but no chunk appears twice.
    let (all, _) = storeapi::collect_series(proxy.series(req).await.unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), single.len());
    for s in &all {
        let mut c = s.chunks.clone();
        c.dedup();
        assert_eq!(c.len(), s.chunks.len());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_broken_store_fails_the_suite() {
    /// Drops the matchers: answers every query with every series.
    struct IgnoresMatchers(MemStore);
    #[async_trait::async_trait]
    impl StoreApi for IgnoresMatchers {
        async fn info(&self) -> Result<pb::info::InfoResponse> {
            self.0.info().await
        }
        async fn series(&self, mut req: pb::SeriesRequest) -> Result<SeriesStream> {
            req.matchers.clear();
            self.0.series(req).await
        }
        async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
            self.0.label_names(req).await
        }
        async fn label_values(
            &self,
            req: pb::LabelValuesRequest,
        ) -> Result<pb::LabelValuesResponse> {
            self.0.label_values(req).await
        }
    }
    let broken = IgnoresMatchers(MemStore::with_data(Labels::empty(), &dataset()));
    let failures = Suite::default().run(&broken).await.unwrap_err();
    let text = failures.to_string();
    assert!(text.contains("matchers:"), "{text}");
    assert!(text.contains("bad matchers:"), "{text}");
}
