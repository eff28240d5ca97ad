//! The querier's own StoreAPI (served on `--grpc-address`): every request fanned
//! out to the endpoints that may match and the answers merged, so queriers
//! stack (a global querier over regional ones), as Thanos's proxy store does.

use std::sync::Arc;

use futures::StreamExt;
use model::{Labels, Matcher};
use storeapi::pb::{self, info as infopb};
use storeapi::{Error, Result, SeriesStream, StoreApi};

use crate::endpoints::{Endpoint, EndpointSet, Health};

/// A [`StoreApi`] over an [`EndpointSet`].
pub struct ProxyStore {
    set: Arc<EndpointSet>,
}

impl ProxyStore {
    pub fn new(set: Arc<EndpointSet>) -> Self {
        ProxyStore { set }
    }

    /// Endpoints that may hold matching data, and the warnings / error for those
    /// that are down.
    async fn targets(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        partial_disabled: bool,
    ) -> Result<(Vec<Arc<Endpoint>>, Vec<String>)> {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for ep in self.set.endpoints().await {
            match ep.health() {
                Health::Up(i) if !i.may_match(matchers, mint, maxt) => {}
                Health::Up(_) | Health::Unknown => out.push(ep),
                Health::Down { info, error } => {
                    if info.is_none_or(|i| i.may_match(matchers, mint, maxt)) {
                        let msg = format!("endpoint {} is down: {error}", ep.address());
                        if partial_disabled {
                            return Err(Error::Unavailable(msg));
                        }
                        warnings.push(msg);
                    }
                }
            }
        }
        Ok((out, warnings))
    }
}

fn partial_disabled(disabled: bool, strategy: i32) -> bool {
    disabled || strategy == pb::PartialResponseStrategy::Abort as i32
}

#[async_trait::async_trait]
impl StoreApi for ProxyStore {
    async fn info(&self) -> Result<infopb::InfoResponse> {
        let mut sets: Vec<Labels> = Vec::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for ep in self.set.endpoints().await {
            if let Health::Up(i) = ep.health() {
                sets.extend(i.label_sets);
                min = min.min(i.min_time);
                max = max.max(i.max_time);
            }
        }
        sets.sort();
        sets.dedup();
        Ok(storeapi::store_info_response("query", &sets, min, max))
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        let matchers = storeapi::convert::matchers_from_pb(&req.matchers)?;
        let strict = partial_disabled(req.partial_response_disabled, req.partial_response_strategy);
        let (targets, warnings) = self
            .targets(&matchers, req.min_time, req.max_time, strict)
            .await?;
        let calls = targets.into_iter().map(|ep| {
            let req = req.clone();
            async move {
                let r = ep.store().series(req).await;
                (ep, r)
            }
        });
        let mut streams: Vec<SeriesStream> = Vec::new();
        let mut warn_frames: Vec<Result<pb::SeriesResponse>> = warnings
            .into_iter()
            .map(|w| Ok(storeapi::warning_frame(w)))
            .collect();
        for (ep, r) in futures::future::join_all(calls).await {
            match r {
                Ok(s) if strict => streams.push(s),
                Ok(s) => {
                    // A failure mid-stream becomes a warning, not the end.
                    let addr = ep.address().to_string();
                    streams.push(
                        s.map(move |f| match f {
                            Err(e) => Ok(storeapi::warning_frame(format!("endpoint {addr}: {e}"))),
                            ok => ok,
                        })
                        .boxed(),
                    );
                }
                Err(e) if strict => {
                    return Err(Error::Unavailable(format!(
                        "endpoint {}: {e}",
                        ep.address()
                    )))
                }
                Err(e) => warn_frames.push(Ok(storeapi::warning_frame(format!(
                    "endpoint {}: {e}",
                    ep.address()
                )))),
            }
        }
        let merged = storeapi::merge::merge_series_streams(streams);
        let merged = storeapi::merge::limit_series(merged, req.limit);
        Ok(futures::stream::iter(warn_frames).chain(merged).boxed())
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        let matchers = storeapi::convert::matchers_from_pb(&req.matchers)?;
        let strict = partial_disabled(req.partial_response_disabled, req.partial_response_strategy);
        let (targets, mut warnings) = self.targets(&matchers, req.start, req.end, strict).await?;
        let calls = targets.into_iter().map(|ep| {
            let req = req.clone();
            async move { (ep.address().to_string(), ep.store().label_names(req).await) }
        });
        let mut names = Vec::new();
        for (addr, r) in futures::future::join_all(calls).await {
            match r {
                Ok(a) => {
                    names.extend(a.names);
                    warnings.extend(a.warnings);
                }
                Err(e) if strict => {
                    return Err(Error::Unavailable(format!("endpoint {addr}: {e}")))
                }
                Err(e) => warnings.push(format!("endpoint {addr}: {e}")),
            }
        }
        names.sort();
        names.dedup();
        Ok(pb::LabelNamesResponse {
            names,
            warnings,
            hints: None,
        })
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        let matchers = storeapi::convert::matchers_from_pb(&req.matchers)?;
        let strict = partial_disabled(req.partial_response_disabled, req.partial_response_strategy);
        let (targets, mut warnings) = self.targets(&matchers, req.start, req.end, strict).await?;
        let calls = targets.into_iter().map(|ep| {
            let req = req.clone();
            async move { (ep.address().to_string(), ep.store().label_values(req).await) }
        });
        let mut values = Vec::new();
        for (addr, r) in futures::future::join_all(calls).await {
            match r {
                Ok(a) => {
                    values.extend(a.values);
                    warnings.extend(a.warnings);
                }
                Err(e) if strict => {
                    return Err(Error::Unavailable(format!("endpoint {addr}: {e}")))
                }
                Err(e) => warnings.push(format!("endpoint {addr}: {e}")),
            }
        }
        values.sort();
        values.dedup();
        Ok(pb::LabelValuesResponse {
            values,
            warnings,
            hints: None,
        })
    }
}
