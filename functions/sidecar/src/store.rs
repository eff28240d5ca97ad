//! The sidecar's StoreAPI: Prometheus's data through remote read.
//!
//! - `Series`: matchers on external labels are checked here (a mismatch answers
//!   nothing without asking Prometheus) and dropped; the others and the time range
//!   go to `/api/v1/read` asking for streamed XOR chunks, which pass through to the
//!   StoreAPI unchanged (Prometheus encoding n is wire encoding n-1). A sampled
//!   answer is cut into XOR chunks of at most 120 samples. `skip_chunks` asks
//!   `/api/v1/series` instead. Series carry the external labels and come sorted.
//! - `LabelNames` / `LabelValues`: Prometheus's HTTP API, plus the external labels.
//! - `Info`: the external label set and the time range Prometheus holds
//!   (its lowest timestamp, or `--min-time` if later, to the end of time).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use model::{Labels, MatchType, Matcher};
use storeapi::pb;
use storeapi::{Error as ApiError, Result as ApiResult, SeriesStream, StoreApi};
use tsdb::chunkenc::{Encoding, XorChunk};

use crate::metrics::Metrics;
use crate::prom::{PromClient, ReadSeries};
use crate::MinTime;

/// Samples per chunk built from a sampled remote-read answer.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// State shared between the store and the sidecar's Prometheus checks.
#[derive(Debug)]
pub struct PromState {
    /// Prometheus's external labels.
    pub external_labels: RwLock<Labels>,
    /// Lowest timestamp Prometheus holds (ms).
    pub lowest_timestamp: AtomicI64,
}

impl PromState {
    pub fn new(labels: &BTreeMap<String, String>) -> Self {
        PromState {
            external_labels: RwLock::new(labels_from_map(labels)),
            lowest_timestamp: AtomicI64::new(i64::MIN),
        }
    }

    pub fn labels(&self) -> Labels {
        self.external_labels.read().expect("lock").clone()
    }

    pub fn set_labels(&self, labels: &BTreeMap<String, String>) {
        *self.external_labels.write().expect("lock") = labels_from_map(labels);
    }
}

/// External labels as [`Labels`].
pub fn labels_from_map(m: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(m.iter().map(|(k, v)| (k.clone(), v.clone())))
}

/// External labels, matchers for Prometheus, start, end.
type Prepared = (Labels, Vec<Matcher>, i64, i64);

/// The StoreAPI over one Prometheus.
pub struct PromStore {
    prom: PromClient,
    state: Arc<PromState>,
    min_time: Option<MinTime>,
    metrics: Arc<Metrics>,
}

impl PromStore {
    pub fn new(
        prom: PromClient,
        state: Arc<PromState>,
        min_time: Option<MinTime>,
        metrics: Arc<Metrics>,
    ) -> Self {
        PromStore {
            prom,
            state,
            min_time,
            metrics,
        }
    }

    /// The earliest time served: Prometheus's lowest timestamp, or `--min-time`.
    fn min_served(&self) -> i64 {
        let low = self.state.lowest_timestamp.load(Ordering::Relaxed);
        match &self.min_time {
            Some(m) => low.max(m.resolve()),
            None => low,
        }
    }

    /// The matchers to send to Prometheus and the clamped range, or None when
    /// nothing can match.
    fn prepare(
        &self,
        matchers: &[pb::LabelMatcher],
        start: i64,
        end: i64,
    ) -> ApiResult<Option<Prepared>> {
        let ms = storeapi::convert::matchers_from_pb(matchers)?;
        let ext = self.state.labels();
        let Some(rest) = storeapi::extlabels::split_matchers(&ms, &ext) else {
            return Ok(None);
        };
        let start = match &self.min_time {
            Some(m) => start.max(m.resolve()),
            None => start,
        };
        if end < start {
            return Ok(None);
        }
        Ok(Some((ext, rest, start, end)))
    }
}

fn unavailable(e: crate::Error) -> ApiError {
    match e {
        crate::Error::Prometheus { .. } => ApiError::Unavailable(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Matchers for Prometheus: at least one (remote read and `/api/v1/series` need
/// one); none means every series with a name.
fn non_empty(ms: Vec<Matcher>) -> Vec<Matcher> {
    if ms.is_empty() {
        vec![Matcher::new(MatchType::Regex, "__name__", ".+").expect("valid regex")]
    } else {
        ms
    }
}

/// Cuts time-ordered samples into XOR chunks of at most [`SAMPLES_PER_CHUNK`].
pub fn samples_to_chunks(samples: &[(i64, f64)]) -> Vec<pb::AggrChunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|part| {
            let mut c = XorChunk::new();
            for &(t, v) in part {
                c.append(t, v);
            }
            let chunk = storeapi::chunk::wire_chunk(Encoding::Xor, c.bytes().to_vec(), true);
            storeapi::chunk::raw_aggr_chunk(part[0].0, part[part.len() - 1].0, chunk)
        })
        .collect()
}

/// Turns remote-read series into StoreAPI series: external labels attached,
/// sorted by labels, frames of one series merged, chunks in time order.
pub fn to_store_series(read: Vec<ReadSeries>, ext: &Labels) -> ApiResult<Vec<pb::Series>> {
    let mut out: Vec<(Labels, Vec<pb::AggrChunk>)> = Vec::with_capacity(read.len());
    for s in read {
        let (labels, chunks) = match s {
            ReadSeries::Samples(l, samples) => (l, samples_to_chunks(&samples)),
            ReadSeries::Chunks(l, chunks) => {
                let mut v = Vec::with_capacity(chunks.len());
                for c in chunks {
                    let enc = u8::try_from(c.r#type)
                        .ok()
                        .and_then(|t| Encoding::from_u8(t).ok())
                        .ok_or_else(|| {
                            ApiError::Corrupt(format!(
                                "remote read: unknown chunk encoding {}",
                                c.r#type
                            ))
                        })?;
                    let chunk = storeapi::chunk::wire_chunk(enc, c.data, true);
                    v.push(storeapi::chunk::raw_aggr_chunk(
                        c.min_time_ms,
                        c.max_time_ms,
                        chunk,
                    ));
                }
                (l, v)
            }
        };
        out.push((storeapi::extlabels::attach(&labels, ext), chunks));
    }
    // Attaching labels can change the order; a stable sort keeps the frames of one
    // series in the order they came.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(Labels, Vec<pb::AggrChunk>)> = Vec::with_capacity(out.len());
    for (l, c) in out {
        match merged.last_mut() {
            Some((pl, pc)) if *pl == l => pc.extend(c),
            _ => merged.push((l, c)),
        }
    }
    Ok(merged
        .into_iter()
        .map(|(l, mut chunks)| {
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            pb::Series {
                labels: storeapi::convert::labels_to_pb(&l),
                chunks,
            }
        })
        .collect())
}

#[async_trait::async_trait]
impl StoreApi for PromStore {
    async fn info(&self) -> ApiResult<pb::info::InfoResponse> {
        let ext = self.state.labels();
        Ok(storeapi::store_info_response(
            "sidecar",
            &[ext],
            self.min_served(),
            i64::MAX,
        ))
    }

    async fn series(&self, req: pb::SeriesRequest) -> ApiResult<SeriesStream> {
        Metrics::inc(&self.metrics.series_requests);
        let r = self.series_inner(req).await;
        if r.is_err() {
            Metrics::inc(&self.metrics.series_request_failures);
        }
        r
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> ApiResult<pb::LabelNamesResponse> {
        let Some((ext, ms, start, end)) = self.prepare(&req.matchers, req.start, req.end)? else {
            return Ok(pb::LabelNamesResponse::default());
        };
        let mut names = self
            .prom
            .label_names(&ms, start, end)
            .await
            .map_err(unavailable)?;
        if !names.is_empty() || ms.is_empty() {
            names.extend(ext.iter().map(|l| l.name.clone()));
        }
        names.sort();
        names.dedup();
        if req.limit > 0 {
            names.truncate(req.limit as usize);
        }
        Ok(pb::LabelNamesResponse {
            names,
            ..Default::default()
        })
    }

    async fn label_values(
        &self,
        req: pb::LabelValuesRequest,
    ) -> ApiResult<pb::LabelValuesResponse> {
        let Some((ext, ms, start, end)) = self.prepare(&req.matchers, req.start, req.end)? else {
            return Ok(pb::LabelValuesResponse::default());
        };
        let mut values = if let Some(v) = ext.get(&req.label) {
            vec![v.to_string()]
        } else {
            self.prom
                .label_values(&req.label, &ms, start, end)
                .await
                .map_err(unavailable)?
        };
        values.sort();
        values.dedup();
        if req.limit > 0 {
            values.truncate(req.limit as usize);
        }
        Ok(pb::LabelValuesResponse {
            values,
            ..Default::default()
        })
    }
}

impl PromStore {
    async fn series_inner(&self, req: pb::SeriesRequest) -> ApiResult<SeriesStream> {
        if req.min_time > req.max_time {
            return Err(ApiError::InvalidArgument(format!(
                "min_time {} after max_time {}",
                req.min_time, req.max_time
            )));
        }
        let Some((ext, ms, start, end)) =
            self.prepare(&req.matchers, req.min_time, req.max_time)?
        else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let ms = non_empty(ms);
        let mut series: Vec<pb::Series> = if req.skip_chunks {
            let mut v: Vec<Labels> = self
                .prom
                .series(&ms, start, end)
                .await
                .map_err(unavailable)?
                .into_iter()
                .map(|l| storeapi::extlabels::attach(&l, &ext))
                .collect();
            v.sort();
            v.dedup();
            v.into_iter()
                .map(|l| pb::Series {
                    labels: storeapi::convert::labels_to_pb(&l),
                    chunks: Vec::new(),
                })
                .collect()
        } else {
            let read = self
                .prom
                .remote_read(&ms, start, end, None)
                .await
                .map_err(unavailable)?;
            to_store_series(read, &ext)?
        };
        if req.limit > 0 {
            series.truncate(req.limit as usize);
        }
        let frames: Vec<ApiResult<pb::SeriesResponse>> = series
            .into_iter()
            .map(|s| Ok(storeapi::series_frame(s)))
            .collect();
        Ok(Box::pin(futures::stream::iter(frames)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::prompb;

    #[test]
    fn samples_cut_into_chunks_of_120() {
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (i * 1000, i as f64)).collect();
        let chunks = samples_to_chunks(&samples);
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[1].min_time, chunks[1].max_time), (120_000, 239_000));
        let mut back = Vec::new();
        for c in &chunks {
            let raw = c.raw.as_ref().unwrap();
            assert_eq!(raw.r#type, 0, "XOR is 0 on the wire");
            for s in tsdb::chunkenc::XorIterator::new(&raw.data).unwrap() {
                back.push(s.unwrap());
            }
        }
        assert_eq!(back, samples);
    }

    #[test]
    fn series_sorted_merged_and_labelled() {
        let l = |v: &str| Labels::from_pairs([("__name__", "m"), ("i", v)]);
        let ch = |t: i64| prompb::Chunk {
            min_time_ms: t,
            max_time_ms: t + 1,
            r#type: 1,
            data: vec![0, 0],
        };
        let read = vec![
            ReadSeries::Chunks(l("b"), vec![ch(0)]),
            ReadSeries::Chunks(l("b"), vec![ch(10)]),
            ReadSeries::Chunks(l("a"), vec![ch(5)]),
        ];
        let ext = Labels::from_pairs([("cluster", "x")]);
        let s = to_store_series(read, &ext).unwrap();
        assert_eq!(s.len(), 2);
        let l0 = storeapi::convert::labels_from_pb(&s[0].labels);
        assert_eq!(l0.to_string(), "{__name__=\"m\", cluster=\"x\", i=\"a\"}");
        assert_eq!(s[1].chunks.len(), 2);
        assert_eq!(s[1].chunks[0].raw.as_ref().unwrap().r#type, 0);
        let bad = vec![ReadSeries::Chunks(
            l("a"),
            vec![prompb::Chunk { r#type: 9, ..ch(0) }],
        )];
        assert!(to_store_series(bad, &ext).is_err());
    }
}
