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

/// Penalty when no previous sample is known (Thanos's `initialPenalty`, ms).
const INITIAL_PENALTY: i64 = 5000;

/// Merges two replicas of one series (samples sorted by time) into one.
pub fn dedup_pair<T: Clone>(a: &[(i64, T)], b: &[(i64, T)]) -> Vec<(i64, T)> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (0usize, 0usize);
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let mut last_t: Option<i64> = None;
    // Seek: first index at or after `from` whose time is >= t (never backwards).
    fn seek<T>(s: &[(i64, T)], from: usize, t: i64) -> usize {
        let mut i = from;
        while i < s.len() && s[i].0 < t {
            i += 1;
        }
        i
    }
    loop {
        let base = last_t.map_or(i64::MIN, |t| t.saturating_add(1));
        ia = seek(a, ia, base.saturating_add(pen_a));
        ib = seek(b, ib, base.saturating_add(pen_b));
        let (aok, bok) = (ia < a.len(), ib < b.len());
        if !aok && !bok {
            break;
        }
        if !aok {
            last_t = Some(b[ib].0);
            pen_b = 0;
            out.push(b[ib].clone());
            continue;
        }
        if !bok {
            last_t = Some(a[ia].0);
            pen_a = 0;
            out.push(a[ia].clone());
            continue;
        }
        let (ta, tb) = (a[ia].0, b[ib].0);
        if ta <= tb {
            pen_b = last_t.map_or(INITIAL_PENALTY, |l| 2 * (ta - l));
            pen_a = 0;
            last_t = Some(ta);
            out.push(a[ia].clone());
        } else {
            pen_a = last_t.map_or(INITIAL_PENALTY, |l| 2 * (tb - l));
            pen_b = 0;
            last_t = Some(tb);
            out.push(b[ib].clone());
        }
    }
    out
}

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
    fn identical_replicas_keep_one_sample_per_scrape() {
        let a = pts(&[0, 15_000, 30_000, 45_000], 1.0);
        let b = pts(&[1_000, 16_000, 31_000, 46_000], 2.0);
        let got = dedup_pair(&a, &b);
        assert_eq!(got, a);
    }

    #[test]
    fn gap_in_one_replica_is_filled_by_the_other() {
        // a misses 30s..75s; b is offset by 1s.
        let a = pts(&[0, 15_000, 90_000, 105_000], 1.0);
        let b = pts(
            &[
                1_000, 16_000, 31_000, 46_000, 61_000, 76_000, 91_000, 106_000,
            ],
            2.0,
        );
        let got = dedup_pair(&a, &b);
        let ts: Vec<i64> = got.iter().map(|p| p.0).collect();
        // After 15s, b's 31s sample lies within the 2x15s penalty and is
        // skipped; a is penalised after b takes over and ends (as in Thanos).
        assert_eq!(ts, vec![0, 15_000, 46_000, 61_000, 76_000, 91_000, 106_000]);
    }

    #[test]
    fn one_empty_replica() {
        let a = pts(&[1, 2, 3], 1.0);
        assert_eq!(dedup_pair(&a, &[]), a);
        assert_eq!(dedup_pair(&[], &a), a);
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
