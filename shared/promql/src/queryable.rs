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
}

/// A series as read from a source: samples sorted by time. Staleness markers are
/// floats with the stale-NaN bit pattern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, FloatHistogram)>,
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
    /// a later sample at the same timestamp replaces the earlier one.
    pub fn add(
        &mut self,
        labels: Labels,
        floats: &[(i64, f64)],
        histograms: &[(i64, FloatHistogram)],
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
        for &(t, v) in floats {
            s.histograms.retain(|(ht, _)| *ht != t);
            match s.floats.binary_search_by_key(&t, |p| p.0) {
                Ok(i) => s.floats[i].1 = v,
                Err(i) => s.floats.insert(i, (t, v)),
            }
        }
        for (t, h) in histograms {
            s.floats.retain(|(ft, _)| ft != t);
            match s.histograms.binary_search_by_key(t, |p| p.0) {
                Ok(i) => s.histograms[i].1 = h.clone(),
                Err(i) => s.histograms.insert(i, (*t, h.clone())),
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
            let floats: Vec<(i64, f64)> = s
                .floats
                .iter()
                .filter(|p| p.0 >= hints.start && p.0 <= hints.end)
                .copied()
                .collect();
            let histograms: Vec<(i64, FloatHistogram)> = s
                .histograms
                .iter()
                .filter(|p| p.0 >= hints.start && p.0 <= hints.end)
                .cloned()
                .collect();
            out.push(Series {
                labels: s.labels.clone(),
                floats,
                histograms,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
