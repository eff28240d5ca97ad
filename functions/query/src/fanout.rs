//! The engine's [`Queryable`] over StoreAPI endpoints: each select goes to every
//! endpoint whose Info (external labels, time range) can match, concurrently
//! (bounded), with matchers, time range and hints pushed down; the answers are
//! decoded, merged and (optionally) deduplicated. Failed endpoints become
//! warnings (partial response) or the query's error.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use model::{FloatHistogram, Labels, Matcher};
use promql::{Error, Queryable, SelectHints, Series};
use storeapi::pb::{self, Aggr};
use tsdb::chunkenc::SampleValue;

use crate::dedup;
use crate::endpoints::{Endpoint, EndpointSet, Health};

/// Per-query options (Thanos's API parameters).
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Merge series that differ only in replica labels.
    pub dedup: bool,
    /// The replica labels.
    pub replica_labels: Vec<String>,
    /// Answer with the endpoints that worked (plus warnings) when some fail.
    pub partial_response: bool,
    /// Coarsest resolution of downsampled data to read, ms (0: raw only).
    pub max_resolution: i64,
    /// Most endpoint calls in flight per query.
    pub max_concurrent: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            dedup: true,
            replica_labels: Vec::new(),
            partial_response: true,
            max_resolution: 0,
            max_concurrent: 20,
        }
    }
}

/// A [`Queryable`] (and series / label source) over an [`EndpointSet`], for one
/// query: it gathers the warnings of the endpoints it asks.
pub struct StoreQueryable {
    set: Arc<EndpointSet>,
    opts: QueryOptions,
    warnings: Mutex<Vec<String>>,
}

/// Thanos's choice of downsampled aggregates for the function a selector is an
/// argument of.
pub fn aggrs_from_func(func: Option<&str>) -> Vec<Aggr> {
    let f = func.unwrap_or("");
    if f == "min" || f.starts_with("min_") {
        vec![Aggr::Min]
    } else if f == "max" || f.starts_with("max_") {
        vec![Aggr::Max]
    } else if f == "count" || f.starts_with("count_") {
        vec![Aggr::Count]
    } else if f.starts_with("sum_") {
        vec![Aggr::Sum]
    } else if matches!(f, "increase" | "rate" | "irate" | "resets") {
        vec![Aggr::Counter]
    } else {
        vec![Aggr::Count, Aggr::Sum]
    }
}

fn describe(ep: &Endpoint) -> String {
    match ep.health() {
        Health::Up(i) | Health::Down { info: Some(i), .. } => {
            let sets: Vec<String> = i.label_sets.iter().map(|l| l.to_string()).collect();
            if sets.is_empty() {
                format!("{} ({})", ep.address(), i.component)
            } else {
                format!("{} ({} {})", ep.address(), i.component, sets.join(","))
            }
        }
        _ => ep.address().to_string(),
    }
}

impl StoreQueryable {
    pub fn new(set: Arc<EndpointSet>, opts: QueryOptions) -> Self {
        StoreQueryable {
            set,
            opts,
            warnings: Mutex::new(Vec::new()),
        }
    }

    pub fn options(&self) -> &QueryOptions {
        &self.opts
    }

    /// The warnings gathered so far (taken).
    pub fn take_warnings(&self) -> Vec<String> {
        let mut w = std::mem::take(&mut *self.warnings.lock().unwrap());
        w.dedup();
        w
    }

    fn warn(&self, w: String) {
        let mut ws = self.warnings.lock().unwrap();
        if !ws.contains(&w) {
            ws.push(w);
        }
    }

    fn failed(&self, ep: &Endpoint, err: &str) -> Result<(), Error> {
        let msg = format!("endpoint {}: {err}", describe(ep));
        if self.opts.partial_response {
            tracing::debug!(warning = %msg, "partial response");
            self.warn(msg);
            Ok(())
        } else {
            Err(Error::Storage(msg))
        }
    }

    /// Calls `call` on every endpoint that may hold series matching `matchers` in
    /// `[mint, maxt]` (any of `matcher_sets`), at most `max_concurrent` at once.
    async fn fan_out<T, F, Fut>(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        call: F,
    ) -> Result<Vec<T>, Error>
    where
        F: Fn(Arc<Endpoint>) -> Fut,
        Fut: Future<Output = storeapi::Result<T>>,
    {
        let may = |i: &crate::endpoints::EndpointInfo| {
            if matcher_sets.is_empty() {
                i.may_match(&[], mint, maxt)
            } else {
                matcher_sets.iter().any(|m| i.may_match(m, mint, maxt))
            }
        };
        let mut targets = Vec::new();
        for ep in self.set.endpoints().await {
            match ep.health() {
                Health::Up(i) => {
                    if may(&i) {
                        targets.push(ep);
                    }
                }
                Health::Down { info, error } => {
                    if info.as_ref().is_none_or(may) {
                        self.failed(&ep, &format!("endpoint is down: {error}"))?;
                    }
                }
                Health::Unknown => targets.push(ep),
            }
        }
        let results: Vec<(Arc<Endpoint>, storeapi::Result<T>)> =
            futures::stream::iter(targets.into_iter().map(|ep| {
                let fut = call(Arc::clone(&ep));
                async move { (ep, fut.await) }
            }))
            .buffer_unordered(self.opts.max_concurrent.max(1))
            .collect()
            .await;
        let mut out = Vec::with_capacity(results.len());
        for (ep, r) in results {
            match r {
                Ok(v) => out.push(v),
                Err(e) => self.failed(&ep, &e.to_string())?,
            }
        }
        Ok(out)
    }

    fn partial_strategy(&self) -> (bool, i32) {
        if self.opts.partial_response {
            (false, pb::PartialResponseStrategy::Warn as i32)
        } else {
            (true, pb::PartialResponseStrategy::Abort as i32)
        }
    }

    /// Raw Series answers of every endpoint (series of each in order).
    async fn series_pb(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
        skip_chunks: bool,
    ) -> Result<Vec<Vec<pb::Series>>, Error> {
        let (disabled, strategy) = self.partial_strategy();
        let aggrs = aggrs_from_func(hints.func.as_deref());
        let req = pb::SeriesRequest {
            min_time: hints.start,
            max_time: hints.end,
            matchers: storeapi::convert::matchers_to_pb(matchers),
            max_resolution_window: self.opts.max_resolution,
            aggregates: aggrs.iter().map(|a| *a as i32).collect(),
            partial_response_disabled: disabled,
            partial_response_strategy: strategy,
            skip_chunks,
            step: hints.step,
            range: hints.range,
            query_hints: Some(pb::QueryHints {
                step_millis: hints.step,
                func: hints.func.as_ref().map(|f| pb::Func { name: f.clone() }),
                grouping: (!hints.grouping.is_empty() || hints.by).then(|| pb::Grouping {
                    by: hints.by,
                    labels: hints.grouping.clone(),
                }),
                range: (hints.range > 0).then_some(pb::Range {
                    millis: hints.range,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answers = self
            .fan_out(
                std::slice::from_ref(&matchers.to_vec()),
                hints.start,
                hints.end,
                |ep| {
                    let req = req.clone();
                    async move {
                        let stream = ep.store().series(req).await?;
                        storeapi::collect_series(stream).await
                    }
                },
            )
            .await?;
        let mut out = Vec::with_capacity(answers.len());
        for (series, warnings) in answers {
            for w in warnings {
                self.warn(w);
            }
            out.push(series);
        }
        Ok(out)
    }

    /// Label sets of the series matching any of `matcher_sets` in `[start, end]`
    /// (replica labels removed when deduplicating), sorted.
    pub async fn series_labels(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, Error> {
        let hints = SelectHints {
            start,
            end,
            ..Default::default()
        };
        let mut sets: Vec<Labels> = Vec::new();
        for ms in matcher_sets {
            for answer in self.series_pb(ms, &hints, true).await? {
                sets.extend(answer.iter().map(storeapi::convert::series_labels));
            }
        }
        Ok(if self.dedup_on() {
            dedup::dedup_label_sets(sets, &self.opts.replica_labels)
        } else {
            sets.sort();
            sets.dedup();
            sets
        })
    }

    fn dedup_on(&self) -> bool {
        self.opts.dedup && !self.opts.replica_labels.is_empty()
    }

    /// Label names in `[start, end]` among series matching any of `matcher_sets`
    /// (all series when empty), sorted; replica labels left out when deduplicating.
    pub async fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, Error> {
        let (disabled, strategy) = self.partial_strategy();
        let sets: Vec<Vec<Matcher>> = if matcher_sets.is_empty() {
            vec![Vec::new()]
        } else {
            matcher_sets.to_vec()
        };
        let mut names: Vec<String> = Vec::new();
        for ms in &sets {
            let req = pb::LabelNamesRequest {
                partial_response_disabled: disabled,
                partial_response_strategy: strategy,
                start,
                end,
                matchers: storeapi::convert::matchers_to_pb(ms),
                ..Default::default()
            };
            let answers = self
                .fan_out(std::slice::from_ref(ms), start, end, |ep| {
                    let req = req.clone();
                    async move { ep.store().label_names(req).await }
                })
                .await?;
            for a in answers {
                for w in a.warnings {
                    self.warn(w);
                }
                names.extend(a.names);
            }
        }
        if self.dedup_on() {
            names.retain(|n| !self.opts.replica_labels.contains(n));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Values of label `name` in `[start, end]` among series matching any of
    /// `matcher_sets`, sorted.
    pub async fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, Error> {
        let (disabled, strategy) = self.partial_strategy();
        let sets: Vec<Vec<Matcher>> = if matcher_sets.is_empty() {
            vec![Vec::new()]
        } else {
            matcher_sets.to_vec()
        };
        let mut values: Vec<String> = Vec::new();
        for ms in &sets {
            let req = pb::LabelValuesRequest {
                label: name.to_string(),
                partial_response_disabled: disabled,
                partial_response_strategy: strategy,
                start,
                end,
                matchers: storeapi::convert::matchers_to_pb(ms),
                ..Default::default()
            };
            let answers = self
                .fan_out(std::slice::from_ref(ms), start, end, |ep| {
                    let req = req.clone();
                    async move { ep.store().label_values(req).await }
                })
                .await?;
            for a in answers {
                for w in a.warnings {
                    self.warn(w);
                }
                values.extend(a.values);
            }
        }
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// Appends the samples in `[mint, maxt]` of a wire series' chunks to `out`.
/// Raw chunks are decoded as they are; downsampled ones by the aggregates asked
/// (`count`+`sum` give their average).
pub fn decode_series(
    s: &pb::Series,
    aggrs: &[Aggr],
    mint: i64,
    maxt: i64,
    out: &mut Series,
) -> storeapi::Result<()> {
    let keep = |t: i64| t >= mint && t <= maxt;
    let floats_of = |c: &pb::Chunk| -> storeapi::Result<Vec<(i64, f64)>> {
        let mut v = Vec::new();
        for r in storeapi::chunk::iter_wire_chunk(c)? {
            let (t, x) = r.map_err(|e| storeapi::Error::Corrupt(e.to_string()))?;
            if let SampleValue::Float(f) = x {
                v.push((t, f));
            }
        }
        Ok(v)
    };
    // Counter aggregates: Thanos's `ApplyCounterResetsSeriesIterator` over the
    // series' counter sub-chunks in time order. Each sub-chunk restarts at its
    // first raw value and ends with the last raw value repeated at its last
    // timestamp; read naively, a reset before a chunk boundary looks like a drop
    // to `rate` and inflates it.
    if aggrs == [Aggr::Counter] && s.chunks.iter().any(|c| c.raw.is_none()) {
        let mut chunks: Vec<&pb::AggrChunk> = s.chunks.iter().collect();
        chunks.sort_by_key(|c| c.min_time);
        let mut state: Option<(i64, f64, f64)> = None; // (last t, last raw v, total)
        for c in chunks {
            let points = match (&c.raw, &c.counter) {
                (Some(raw), _) | (None, Some(raw)) => floats_of(raw)?,
                (None, None) => {
                    return Err(storeapi::Error::Corrupt(
                        "downsampled chunk without the counter aggregate".into(),
                    ))
                }
            };
            for (t, v) in points {
                if v.is_nan() {
                    continue;
                }
                match &mut state {
                    None => {
                        state = Some((t, v, v));
                        if keep(t) {
                            out.floats.push((t, v));
                        }
                    }
                    Some((last_t, last_v, total)) => {
                        if t > *last_t {
                            *total += if v >= *last_v { v - *last_v } else { v };
                            *last_t = t;
                            *last_v = v;
                            if keep(t) {
                                out.floats.push((t, *total));
                            }
                        } else if t == *last_t {
                            *last_v = v;
                        }
                    }
                }
            }
        }
        return Ok(());
    }
    for c in &s.chunks {
        if let Some(raw) = &c.raw {
            for r in storeapi::chunk::iter_wire_chunk(raw)? {
                let (t, x) = r.map_err(|e| storeapi::Error::Corrupt(e.to_string()))?;
                if !keep(t) {
                    continue;
                }
                let h: FloatHistogram = match x {
                    SampleValue::Float(f) => {
                        out.floats.push((t, f));
                        continue;
                    }
                    SampleValue::Histogram(h) => h.to_float(),
                    SampleValue::FloatHistogram(h) => *h,
                };
                out.histograms.push((t, h));
            }
            continue;
        }
        let pick = |a: Aggr| match a {
            Aggr::Count => c.count.as_ref(),
            Aggr::Sum => c.sum.as_ref(),
            Aggr::Min => c.min.as_ref(),
            Aggr::Max => c.max.as_ref(),
            Aggr::Counter => c.counter.as_ref(),
            Aggr::Raw => None,
        };
        if aggrs == [Aggr::Count, Aggr::Sum] {
            let (Some(cnt), Some(sum)) = (pick(Aggr::Count), pick(Aggr::Sum)) else {
                return Err(storeapi::Error::Corrupt(
                    "downsampled chunk without count and sum".into(),
                ));
            };
            let (cnt, sum) = (floats_of(cnt)?, floats_of(sum)?);
            for ((t, n), (_, s)) in cnt.into_iter().zip(sum) {
                if keep(t) {
                    out.floats.push((t, s / n));
                }
            }
        } else if let Some(ch) = aggrs.first().and_then(|a| pick(*a)) {
            out.floats
                .extend(floats_of(ch)?.into_iter().filter(|p| keep(p.0)));
        } else {
            return Err(storeapi::Error::Corrupt(format!(
                "downsampled chunk without the {:?} aggregate",
                aggrs
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Queryable for StoreQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> promql::Result<Vec<Series>> {
        let answers = self.series_pb(matchers, hints, false).await?;
        let aggrs = aggrs_from_func(hints.func.as_deref());
        let mut merged: BTreeMap<Labels, Series> = BTreeMap::new();
        for answer in answers {
            for s in answer {
                let labels = storeapi::convert::series_labels(&s);
                let e = merged.entry(labels).or_default();
                decode_series(&s, &aggrs, hints.start, hints.end, e)
                    .map_err(|e| Error::Storage(e.to_string()))?;
            }
        }
        let mut out: Vec<Series> = merged
            .into_iter()
            .map(|(labels, mut s)| {
                s.labels = labels;
                if !s.floats.windows(2).all(|w| w[0].0 < w[1].0) {
                    s.floats.sort_by_key(|p| p.0);
                    s.floats.dedup_by_key(|p| p.0);
                }
                if !s.histograms.windows(2).all(|w| w[0].0 < w[1].0) {
                    s.histograms.sort_by_key(|p| p.0);
                    s.histograms.dedup_by_key(|p| p.0);
                }
                s
            })
            .filter(|s| !s.floats.is_empty() || !s.histograms.is_empty())
            .collect();
        if self.dedup_on() {
            out = dedup::dedup_series(out, &self.opts.replica_labels);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::chunkenc::{Encoding, XorChunk};

    fn xor(points: &[(i64, f64)]) -> pb::Chunk {
        let mut x = XorChunk::new();
        for &(t, v) in points {
            x.append(t, v);
        }
        storeapi::chunk::wire_chunk(Encoding::Xor, x.bytes().to_vec(), true)
    }

    #[test]
    fn aggregates_for_functions() {
        assert_eq!(aggrs_from_func(Some("rate")), vec![Aggr::Counter]);
        assert_eq!(aggrs_from_func(Some("min_over_time")), vec![Aggr::Min]);
        assert_eq!(aggrs_from_func(Some("max")), vec![Aggr::Max]);
        assert_eq!(aggrs_from_func(Some("count_over_time")), vec![Aggr::Count]);
        assert_eq!(aggrs_from_func(Some("sum_over_time")), vec![Aggr::Sum]);
        assert_eq!(aggrs_from_func(None), vec![Aggr::Count, Aggr::Sum]);
        assert_eq!(aggrs_from_func(Some("sum")), vec![Aggr::Count, Aggr::Sum]);
    }

    #[test]
    fn downsampled_chunks_decode_by_aggregate() {
        let s = pb::Series {
            labels: vec![],
            chunks: vec![pb::AggrChunk {
                min_time: 0,
                max_time: 600_000,
                count: Some(xor(&[(300_000, 4.0), (600_000, 2.0)])),
                sum: Some(xor(&[(300_000, 10.0), (600_000, 3.0)])),
                min: Some(xor(&[(300_000, 1.0), (600_000, 1.0)])),
                counter: Some(xor(&[(300_000, 5.0), (600_000, 9.0)])),
                ..Default::default()
            }],
        };
        let mut out = Series::default();
        decode_series(&s, &[Aggr::Count, Aggr::Sum], 0, i64::MAX, &mut out).unwrap();
        assert_eq!(out.floats, vec![(300_000, 2.5), (600_000, 1.5)]);
        let mut out = Series::default();
        decode_series(&s, &[Aggr::Counter], 0, 400_000, &mut out).unwrap();
        assert_eq!(out.floats, vec![(300_000, 5.0)]);
        let mut out = Series::default();
        assert!(decode_series(&s, &[Aggr::Max], 0, i64::MAX, &mut out).is_err());
    }

    #[test]
    fn counter_resets_apply_across_downsampled_chunks() {
        // Chunk 1: raw 10 → 20, reset, → 5 (corrected 25), last raw 5. Chunk 2
        // starts at raw 6: an increase of 1, not a reset.
        let chunk = |min_time, points: &[(i64, f64)]| pb::AggrChunk {
            min_time,
            max_time: points.last().unwrap().0,
            counter: Some(xor(points)),
            ..Default::default()
        };
        let s = pb::Series {
            labels: vec![],
            chunks: vec![
                chunk(600_000, &[(600_000, 6.0), (899_999, 8.0), (899_999, 8.0)]),
                chunk(
                    0,
                    &[(0, 10.0), (299_999, 20.0), (599_999, 25.0), (599_999, 5.0)],
                ),
            ],
        };
        let mut out = Series::default();
        decode_series(&s, &[Aggr::Counter], 0, i64::MAX, &mut out).unwrap();
        assert_eq!(
            out.floats,
            vec![
                (0, 10.0),
                (299_999, 20.0),
                (599_999, 25.0),
                (600_000, 26.0),
                (899_999, 28.0)
            ]
        );
    }
}
