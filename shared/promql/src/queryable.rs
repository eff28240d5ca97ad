//! The seam between the engine and a series source.

use async_trait::async_trait;
use model::{FloatHistogram, Labels, Matcher};

use crate::Result;

/// What the engine will do with the selected series, so a store can push work down
/// or trim what it sends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// Inclusive data range needed, in milliseconds.
    pub start: i64,
    pub end: i64,
    /// Query step in milliseconds (0 for instant queries).
    pub step: i64,
    /// Range of the range selector in milliseconds (0 for instant selectors).
    pub range: i64,
    /// The function the selector is an argument of, if any.
    pub func: Option<String>,
    /// The grouping labels of an enclosing aggregation, if any.
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` list (else `without`).
    pub by: bool,
    /// When above 0, the selector is evaluated at `start - 1 + window + k * step`
    /// (k = 0, 1, ...) and reads only the samples within `window` ms before each of
    /// those times, so a source may leave out every other sample (see
    /// [`crate::WindowFilter`]). Set by the engine for range queries whose step is
    /// longer than the selector's range or lookback; 0 means every sample in
    /// `[start, end]` is needed.
    pub window: i64,
}

/// A series as read from a source: samples sorted by time. Staleness markers are
/// floats with the stale-NaN bit pattern.
///
/// Start timestamps (the OpenTelemetry / Prometheus 3 "created" time of each
/// sample, in milliseconds, 0 meaning unknown) are optional: `float_sts` is either
/// empty (the series has none, the common case) or exactly as long as `floats`,
/// one per float sample; likewise `histogram_sts` for `histograms`. A vector of any
/// other length is ignored by the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, FloatHistogram)>,
    /// Start timestamps of `floats` (empty when none are known).
    pub float_sts: Vec<i64>,
    /// Start timestamps of `histograms` (empty when none are known).
    pub histogram_sts: Vec<i64>,
}

impl Series {
    /// The start timestamps of the float samples, if the series has them.
    pub fn float_start_timestamps(&self) -> Option<&[i64]> {
        (!self.float_sts.is_empty() && self.float_sts.len() == self.floats.len())
            .then_some(&self.float_sts[..])
    }

    /// The start timestamps of the histogram samples, if the series has them.
    pub fn histogram_start_timestamps(&self) -> Option<&[i64]> {
        (!self.histogram_sts.is_empty() && self.histogram_sts.len() == self.histograms.len())
            .then_some(&self.histogram_sts[..])
    }
}

/// A source of series.
#[async_trait]
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers`, with their samples in `[hints.start, hints.end]`.
    async fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>>;
}

/// An in-memory [`Queryable`] for tests.
#[derive(Debug, Clone, Default)]
pub struct MemQueryable {
    series: Vec<Series>,
}

impl MemQueryable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples to the series with `labels` (created if new); keeps time order,
    /// a later sample at the same timestamp replaces the earlier one. The samples
    /// have no start timestamp (see [`MemQueryable::add_with_start_timestamps`]).
    pub fn add(
        &mut self,
        labels: Labels,
        floats: &[(i64, f64)],
        histograms: &[(i64, FloatHistogram)],
    ) {
        self.add_with_start_timestamps(labels, floats, &[], histograms, &[]);
    }

    /// Like [`MemQueryable::add`], with a start timestamp per sample (ms, 0 for
    /// unknown): `float_sts` is empty or parallel to `floats`, `histogram_sts` empty
    /// or parallel to `histograms` (missing entries count as 0). A series keeps no
    /// start timestamps until one of its samples has a non-zero one.
    pub fn add_with_start_timestamps(
        &mut self,
        labels: Labels,
        floats: &[(i64, f64)],
        float_sts: &[i64],
        histograms: &[(i64, FloatHistogram)],
        histogram_sts: &[i64],
    ) {
        let idx = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    labels,
                    ..Default::default()
                });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[idx];
        // Start timestamps stay empty (no per-sample cost) until one is non-zero.
        let track = float_sts.iter().chain(histogram_sts).any(|&x| x != 0)
            || !s.float_sts.is_empty()
            || !s.histogram_sts.is_empty();
        if track {
            s.float_sts.resize(s.floats.len(), 0);
            s.histogram_sts.resize(s.histograms.len(), 0);
        }
        for (k, &(t, v)) in floats.iter().enumerate() {
            let st = float_sts.get(k).copied().unwrap_or(0);
            if let Some(hi) = s.histograms.iter().position(|(ht, _)| *ht == t) {
                s.histograms.remove(hi);
                if track {
                    s.histogram_sts.remove(hi);
                }
            }
            match s.floats.binary_search_by_key(&t, |p| p.0) {
                Ok(i) => {
                    s.floats[i].1 = v;
                    if track {
                        s.float_sts[i] = st;
                    }
                }
                Err(i) => {
                    s.floats.insert(i, (t, v));
                    if track {
                        s.float_sts.insert(i, st);
                    }
                }
            }
        }
        for (k, (t, h)) in histograms.iter().enumerate() {
            let st = histogram_sts.get(k).copied().unwrap_or(0);
            if let Some(fi) = s.floats.iter().position(|(ft, _)| ft == t) {
                s.floats.remove(fi);
                if track {
                    s.float_sts.remove(fi);
                }
            }
            match s.histograms.binary_search_by_key(t, |p| p.0) {
                Ok(i) => {
                    s.histograms[i].1 = h.clone();
                    if track {
                        s.histogram_sts[i] = st;
                    }
                }
                Err(i) => {
                    s.histograms.insert(i, (*t, h.clone()));
                    if track {
                        s.histogram_sts.insert(i, st);
                    }
                }
            }
        }
    }

    /// Removes all series.
    pub fn clear(&mut self) {
        self.series.clear();
    }
}

#[async_trait]
impl Queryable for MemQueryable {
    async fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>> {
        let mut out: Vec<Series> = Vec::new();
        for s in &self.series {
            if !matchers
                .iter()
                .all(|m| m.matches(s.labels.get(m.name()).unwrap_or("")))
            {
                continue;
            }
            let (fa, fb) = in_range(&s.floats, hints);
            let (ha, hb) = in_range(&s.histograms, hints);
            out.push(Series {
                labels: s.labels.clone(),
                floats: s.floats[fa..fb].to_vec(),
                histograms: s.histograms[ha..hb].to_vec(),
                float_sts: s
                    .float_start_timestamps()
                    .map(|x| x[fa..fb].to_vec())
                    .unwrap_or_default(),
                histogram_sts: s
                    .histogram_start_timestamps()
                    .map(|x| x[ha..hb].to_vec())
                    .unwrap_or_default(),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

/// The index range of the time-sorted `pts` within `[hints.start, hints.end]`.
fn in_range<T>(pts: &[(i64, T)], hints: &SelectHints) -> (usize, usize) {
    let a = pts.partition_point(|p| p.0 < hints.start);
    let b = pts.partition_point(|p| p.0 <= hints.end).max(a);
    (a, b)
}
