//! HA deduplication: series that differ only in replica labels are one series.
//!
//! Samples are chosen as Thanos's `dedupSeriesIterator` chooses them: walk both
//! replicas in time order, take the earlier sample, and penalise the other
//! replica by twice the gap since the last chosen sample (5 s at the start) so
//! that its nearby samples are skipped. A gap in one replica is filled by the
//! other; the sampling frequency of the result stays that of one replica.

use std::collections::BTreeMap;

use model::{FloatHistogram, Labels};
use promql::Series;

/// Merges two replicas of one series (samples sorted by time) into one (see
/// [`model::dedup::penalty_dedup_pair`]).
pub use model::dedup::penalty_dedup_pair as dedup_pair;

/// Deduplicates `series` (any order): replica labels are removed, and the series
/// then equal are merged replica by replica (in the order of their full label
/// sets) with [`dedup_pair`]. The result is sorted by labels.
pub fn dedup_series(series: Vec<Series>, replica_labels: &[String]) -> Vec<Series> {
    let names: Vec<&str> = replica_labels.iter().map(String::as_str).collect();
    let mut groups: BTreeMap<Labels, Vec<Series>> = BTreeMap::new();
    for s in series {
        groups.entry(s.labels.without(&names)).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(labels, mut reps)| {
            reps.sort_by(|a, b| a.labels.cmp(&b.labels));
            let mut it = reps.into_iter();
            let first = it.next().expect("groups are never empty");
            let mut floats: Vec<(i64, f64)> = first.floats;
            let mut hists: Vec<(i64, FloatHistogram)> = first.histograms;
            for r in it {
                floats = dedup_pair(&floats, &r.floats);
                hists = dedup_pair(&hists, &r.histograms);
            }
            Series {
                labels,
                floats,
                histograms: hists,
                ..Default::default()
            }
        })
        .collect()
}

/// Label sets without the replica labels, deduplicated and sorted.
pub fn dedup_label_sets(sets: Vec<Labels>, replica_labels: &[String]) -> Vec<Labels> {
    let names: Vec<&str> = replica_labels.iter().map(String::as_str).collect();
    let mut out: Vec<Labels> = sets.into_iter().map(|l| l.without(&names)).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(ts: &[i64], v: f64) -> Vec<(i64, f64)> {
        ts.iter().map(|&t| (t, v)).collect()
    }

    #[test]
    fn series_grouped_by_labels_without_replica() {
        let l = |r: &str| Labels::from_pairs([("__name__", "up"), ("replica", r), ("z", "1")]);
        let s = |r: &str, v: f64| Series {
            labels: l(r),
            floats: pts(&[0, 15_000], v),
            histograms: vec![],
            ..Default::default()
        };
        let other = Series {
            labels: Labels::from_pairs([("__name__", "up"), ("replica", "a"), ("z", "2")]),
            floats: pts(&[0], 3.0),
            histograms: vec![],
            ..Default::default()
        };
        let out = dedup_series(vec![s("b", 2.0), other, s("a", 1.0)], &["replica".into()]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels.to_string(), r#"{__name__="up", z="1"}"#);
        assert_eq!(out[0].floats, pts(&[0, 15_000], 1.0));
        assert_eq!(out[1].labels.to_string(), r#"{__name__="up", z="2"}"#);
    }
}
