//! Penalty deduplication of HA replicas, as Thanos's `dedupSeriesIterator` does it.
//! The querier merges replicas with it at query time and the compactor
//! (`--deduplication.func=penalty`) when it merges blocks.

/// Penalty when no previous sample is known (Thanos's `initialPenalty`, ms).
const INITIAL_PENALTY: i64 = 5000;

/// Merges two replicas of one series (samples sorted by time) into one: walk both
/// in time order, take the earlier sample, and make the other replica skip its
/// samples within twice the gap since the last chosen sample (5 s at the start). A
/// gap in one replica is filled by the other; the result keeps the sampling rate of
/// one replica.
pub fn penalty_dedup_pair<T: Clone>(a: &[(i64, T)], b: &[(i64, T)]) -> Vec<(i64, T)> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    /// The first index at or after `from` whose time is >= t (never backwards).
    fn seek<T>(s: &[(i64, T)], from: usize, t: i64) -> usize {
        let mut i = from;
        while i < s.len() && s[i].0 < t {
            i += 1;
        }
        i
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (0usize, 0usize);
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let mut last_t: Option<i64> = None;
    loop {
        let base = last_t.map_or(i64::MIN, |t| t.saturating_add(1));
        ia = seek(a, ia, base.saturating_add(pen_a));
        ib = seek(b, ib, base.saturating_add(pen_b));
        let (aok, bok) = (ia < a.len(), ib < b.len());
        let take_a = match (aok, bok) {
            (false, false) => break,
            (true, false) => true,
            (false, true) => false,
            (true, true) => a[ia].0 <= b[ib].0,
        };
        let (t, pen_other) = if take_a {
            (a[ia].0, &mut pen_b)
        } else {
            (b[ib].0, &mut pen_a)
        };
        if aok && bok {
            *pen_other = last_t.map_or(INITIAL_PENALTY, |l| 2 * (t - l));
        }
        if take_a {
            pen_a = 0;
            out.push(a[ia].clone());
        } else {
            pen_b = 0;
            out.push(b[ib].clone());
        }
        last_t = Some(t);
    }
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
        assert_eq!(penalty_dedup_pair(&a, &b), a);
        assert_eq!(penalty_dedup_pair(&a, &a), a);
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
        let ts: Vec<i64> = penalty_dedup_pair(&a, &b).iter().map(|p| p.0).collect();
        // After 15s, b's 31s sample lies within the 2x15s penalty and is
        // skipped; a is penalised after b takes over and ends (as in Thanos).
        assert_eq!(ts, vec![0, 15_000, 46_000, 61_000, 76_000, 91_000, 106_000]);
    }

    #[test]
    fn one_empty_replica() {
        let a = pts(&[1, 2, 3], 1.0);
        assert_eq!(penalty_dedup_pair(&a, &[]), a);
        assert_eq!(penalty_dedup_pair(&[], &a), a);
    }
}
