//! An in-memory StoreAPI (feature `testing`): series of float samples held as
//! XOR chunks of at most 120 samples, as Prometheus cuts them.

use std::collections::BTreeSet;

use futures::StreamExt;
use model::{Labels, Matcher};
use tsdb::chunkenc::{Encoding, XorChunk};

use crate::chunk::{raw_aggr_chunk, wire_chunk};
use crate::convert::{labels_to_pb, matchers_from_pb};
use crate::merge::merge_chunks;
use crate::pb::{self, info as infopb};
use crate::{extlabels, series_frame, Error, Result, SeriesStream, StoreApi};

/// Samples per chunk, as Prometheus's head cuts XOR chunks.
const SAMPLES_PER_CHUNK: usize = 120;

#[derive(Debug, Clone)]
struct MemSeries {
    /// With the external labels attached.
    labels: Labels,
    chunks: Vec<pb::AggrChunk>,
}

/// An in-memory [`StoreApi`] for tests: holds series of float samples, serves
/// them with its external labels attached, honours matchers, time ranges,
/// `skip_chunks`, `limit`, `response_batch_size` and `without_replica_labels`.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    external_labels: Labels,
    series: Vec<MemSeries>,
}

impl MemStore {
    /// An empty store whose series all carry `external_labels`.
    pub fn new(external_labels: Labels) -> Self {
        MemStore {
            external_labels,
            series: Vec::new(),
        }
    }

    /// A store holding `data` (e.g. [`crate::conformance::dataset`]).
    pub fn with_data(external_labels: Labels, data: &[(Labels, Vec<(i64, f64)>)]) -> Self {
        let mut s = MemStore::new(external_labels);
        for (l, samples) in data {
            s.add_series(l, samples);
        }
        s
    }

    /// Adds a series' samples (in time order), cut into XOR chunks of 120. Adding
    /// the same labels again adds chunks to that series.
    pub fn add_series(&mut self, labels: &Labels, samples: &[(i64, f64)]) {
        let labels = extlabels::attach(labels, &self.external_labels);
        let chunks: Vec<pb::AggrChunk> = samples
            .chunks(SAMPLES_PER_CHUNK)
            .map(|part| {
                let mut x = XorChunk::new();
                for &(t, v) in part {
                    x.append(t, v);
                }
                let (min, max) = (part[0].0, part[part.len() - 1].0);
                raw_aggr_chunk(
                    min,
                    max,
                    wire_chunk(Encoding::Xor, x.bytes().to_vec(), true),
                )
            })
            .collect();
        match self.series.binary_search_by(|s| s.labels.cmp(&labels)) {
            Ok(i) => {
                let s = &mut self.series[i];
                s.chunks.extend(chunks);
                s.chunks = merge_chunks(std::mem::take(&mut s.chunks));
            }
            Err(i) => self.series.insert(i, MemSeries { labels, chunks }),
        }
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        let mut it = self.series.iter().flat_map(|s| &s.chunks);
        let first = it.next()?;
        Some(it.fold((first.min_time, first.max_time), |(a, b), c| {
            (a.min(c.min_time), b.max(c.max_time))
        }))
    }

    /// Series matching all matchers with a chunk overlapping `[mint, maxt]`.
    fn select<'a>(
        &'a self,
        matchers: &'a [Matcher],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = (&'a MemSeries, Vec<&'a pb::AggrChunk>)> + 'a {
        self.series.iter().filter_map(move |s| {
            if !matchers
                .iter()
                .all(|m| m.matches(s.labels.get(m.name()).unwrap_or("")))
            {
                return None;
            }
            let chunks: Vec<_> = s
                .chunks
                .iter()
                .filter(|c| c.min_time <= maxt && c.max_time >= mint)
                .collect();
            (!chunks.is_empty()).then_some((s, chunks))
        })
    }
}

fn limit(n: i64) -> usize {
    if n > 0 {
        usize::try_from(n).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    }
}

#[async_trait::async_trait]
impl StoreApi for MemStore {
    async fn info(&self) -> Result<infopb::InfoResponse> {
        let (min, max) = self.time_range().unwrap_or((i64::MAX, i64::MIN));
        let sets: Vec<Labels> = if self.external_labels.is_empty() {
            vec![]
        } else {
            vec![self.external_labels.clone()]
        };
        let mut info = crate::store_info_response("store", &sets, min, max);
        if let Some(store) = info.store.as_mut() {
            store.supports_without_replica_labels = true;
            store.tsdb_infos = vec![infopb::TsdbInfo {
                labels: Some(crate::convert::zlabel_set(&self.external_labels)),
                min_time: min,
                max_time: max,
            }];
        }
        Ok(info)
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        let matchers = matchers_from_pb(&req.matchers)?;
        let strip: Vec<&str> = req
            .without_replica_labels
            .iter()
            .map(String::as_str)
            .collect();
        let mut out: Vec<(Labels, Vec<pb::AggrChunk>)> = self
            .select(&matchers, req.min_time, req.max_time)
            .map(|(s, chunks)| {
                let chunks = if req.skip_chunks {
                    vec![]
                } else {
                    chunks.into_iter().cloned().collect()
                };
                (extlabels::strip(&s.labels, &strip), chunks)
            })
            .collect();
        if !strip.is_empty() {
            // Stripping can reorder series and make label sets equal.
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.dedup_by(|b, a| {
                if a.0 != b.0 {
                    return false;
                }
                a.1.append(&mut b.1);
                a.1 = merge_chunks(std::mem::take(&mut a.1));
                true
            });
        }
        out.truncate(limit(req.limit));
        let series: Vec<pb::Series> = out
            .into_iter()
            .map(|(l, chunks)| pb::Series {
                labels: labels_to_pb(&l),
                chunks,
            })
            .collect();
        let frames: Vec<Result<pb::SeriesResponse>> = if req.response_batch_size > 1 {
            let n = limit(req.response_batch_size);
            series
                .chunks(n)
                .map(|b| {
                    Ok(pb::SeriesResponse {
                        result: Some(pb::series_response::Result::Batch(pb::SeriesBatch {
                            series: b.to_vec(),
                        })),
                    })
                })
                .collect()
        } else {
            series.into_iter().map(|s| Ok(series_frame(s))).collect()
        };
        Ok(futures::stream::iter(frames).boxed())
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        let matchers = matchers_from_pb(&req.matchers)?;
        let strip: Vec<&str> = req
            .without_replica_labels
            .iter()
            .map(String::as_str)
            .collect();
        let names: BTreeSet<&str> = self
            .select(&matchers, req.start, req.end)
            .flat_map(|(s, _)| s.labels.iter().map(|l| l.name.as_str()))
            .filter(|n| !strip.contains(n))
            .collect();
        Ok(pb::LabelNamesResponse {
            names: names
                .into_iter()
                .take(limit(req.limit))
                .map(str::to_string)
                .collect(),
            ..Default::default()
        })
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        if req.label.is_empty() {
            return Err(Error::InvalidArgument("label name is empty".into()));
        }
        let matchers = matchers_from_pb(&req.matchers)?;
        if req.without_replica_labels.contains(&req.label) {
            return Ok(pb::LabelValuesResponse::default());
        }
        let values: BTreeSet<&str> = self
            .select(&matchers, req.start, req.end)
            .filter_map(|(s, _)| s.labels.get(&req.label))
            .collect();
        Ok(pb::LabelValuesResponse {
            values: values
                .into_iter()
                .take(limit(req.limit))
                .map(str::to_string)
                .collect(),
            ..Default::default()
        })
    }
}
