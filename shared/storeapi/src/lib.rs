//! The Thanos StoreAPI for Aether: wire types, the [`StoreApi`] seam, adapters.
//!
//! - [`pb`]: messages and gRPC stubs generated from the workspace's `proto/`
//!   (package `thanos`: `Store` service and its messages; [`pb::info`], package
//!   `thanos.info`: the `Info` service). Field numbers match Thanos, so a Thanos
//!   querier can query Aether stores and Aether can query Thanos sidecars/stores.
//! - [`StoreApi`]: the one trait every store implements and every querier calls.
//!   An `Arc<dyn StoreApi>` is the in-process adapter; [`grpc`] has the server
//!   adapter (any `Arc<dyn StoreApi>` as `thanos.Store` + `thanos.info.Info`)
//!   and the client adapter ([`grpc::GrpcStore`]).
//! - [`merge`]: k-way merge of sorted series streams from several stores, with
//!   the chunks of equal series combined in time order and exact duplicates
//!   dropped (Thanos's `MergeSeriesSets`).
//! - [`extlabels`]: external labels: attach, strip, and whether matchers can
//!   select anything from a store's label sets.
//! - [`lambda`]: the StoreAPI over function invocations (Lambda `Invoke`):
//!   payload codec, the invoked side, the invoking [`StoreApi`], time splits.
//! - [`convert`], [`chunk`]: wire <-> model conversions and chunk helpers.
//! - `conformance` (feature `testing`): checks any `StoreApi` against known
//!   data, and `MemStore`, an in-memory store that passes them.
//!
//! Errors are [`Error`], one variant per gRPC status code, so they survive the
//! trip over the wire (a bad regex matcher is [`Error::InvalidArgument`] both
//! in-process and through gRPC).

#![warn(missing_docs)]

/// Generated protobuf messages and tonic stubs (package `thanos`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));

    /// Generated protobuf messages and tonic stubs (package `thanos.info`).
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}

pub mod chunk;
pub mod convert;
mod error;
pub mod extlabels;
pub mod grpc;
pub mod lambda;
pub mod merge;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
mod memstore;
#[cfg(feature = "testing")]
pub use memstore::MemStore;

use std::sync::Arc;

pub use error::{Error, Result};

/// A stream of Series frames (series, batches of series, warnings, hints).
pub type SeriesStream = futures::stream::BoxStream<'static, Result<pb::SeriesResponse>>;

/// The StoreAPI: what a querier asks of any store, whether it lives in the same
/// process, behind gRPC or in a Lambda.
///
/// Contract (as Thanos's): `series` yields series sorted by labels (Prometheus
/// order), each series' frames before the next series'; chunks sorted by
/// `min_time` and each overlapping the requested `[min_time, max_time]`
/// (inclusive, ms); labels include the store's external labels. Bad matchers
/// are [`Error::InvalidArgument`].
#[async_trait::async_trait]
pub trait StoreApi: Send + Sync {
    /// What the store serves: external label sets, time range, capabilities.
    async fn info(&self) -> Result<pb::info::InfoResponse>;

    /// The series matching the request, as a stream of frames.
    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream>;

    /// Label names (sorted, unique) of series in `[start, end]` matching the
    /// request's matchers (all series when there are none).
    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse>;

    /// Values (sorted, unique) of `req.label` in `[start, end]` among series
    /// matching the request's matchers.
    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse>;
}

#[async_trait::async_trait]
impl<T: StoreApi + ?Sized> StoreApi for Arc<T> {
    async fn info(&self) -> Result<pb::info::InfoResponse> {
        (**self).info().await
    }
    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        (**self).series(req).await
    }
    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        (**self).label_names(req).await
    }
    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        (**self).label_values(req).await
    }
}

/// Frames of a series stream, flattened: every series (batches unpacked) in
/// order, and the warnings. Hints frames are dropped. Stops at the first error.
pub async fn collect_series(stream: SeriesStream) -> Result<(Vec<pb::Series>, Vec<String>)> {
    use futures::StreamExt;
    use pb::series_response::Result as R;
    let mut stream = stream;
    let (mut series, mut warnings) = (Vec::new(), Vec::new());
    while let Some(frame) = stream.next().await {
        match frame?.result {
            Some(R::Series(s)) => series.push(s),
            Some(R::Batch(b)) => series.extend(b.series),
            Some(R::Warning(w)) => warnings.push(w),
            Some(R::Hints(_)) | None => {}
        }
    }
    Ok((series, warnings))
}

/// A Series frame holding one series.
pub fn series_frame(s: pb::Series) -> pb::SeriesResponse {
    pb::SeriesResponse {
        result: Some(pb::series_response::Result::Series(s)),
    }
}

/// A Series frame holding a warning.
pub fn warning_frame(w: impl Into<String>) -> pb::SeriesResponse {
    pb::SeriesResponse {
        result: Some(pb::series_response::Result::Warning(w.into())),
    }
}

/// An Info answer for a component serving the StoreAPI: `component` is Thanos's
/// component type ("store", "sidecar", "rule", "query", "receive").
pub fn store_info_response(
    component: &str,
    external_labels: &[model::Labels],
    min_time: i64,
    max_time: i64,
) -> pb::info::InfoResponse {
    pb::info::InfoResponse {
        label_sets: external_labels.iter().map(convert::zlabel_set).collect(),
        component_type: component.to_string(),
        store: Some(pb::info::StoreInfo {
            min_time,
            max_time,
            ..Default::default()
        }),
        ..Default::default()
    }
}
