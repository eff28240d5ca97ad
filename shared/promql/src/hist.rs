//! Float histogram arithmetic and statistics as PromQL needs them (Prometheus's
//! `FloatHistogram.Add/Sub/Mul/Div`, `HistogramQuantile`, `HistogramFraction`).

use model::{bucket_upper_bound, CounterResetHint, FloatHistogram, Span};

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistErr {
    /// One has custom buckets, the other exponential ones.
    MixedSchemas,
}

/// `(index, count)` of each bucket of `spans`.
pub(crate) fn bucket_list(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(counts.len());
    let mut idx: i32 = 0;
    let mut pos = 0usize;
    for s in spans {
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            if pos >= counts.len() {
                return out;
            }
            out.push((idx, counts[pos]));
            pos += 1;
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// Spans and counts from `(index, count)` pairs sorted by index.
pub(crate) fn from_bucket_list(list: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(list.len());
    let mut next: Option<i32> = None;
    for &(i, c) in list {
        match next {
            Some(n) if n == i => {
                if let Some(s) = spans.last_mut() {
                    s.length += 1;
                }
            }
            Some(n) => spans.push(Span {
                offset: i - n,
                length: 1,
            }),
            None => spans.push(Span {
                offset: i,
                length: 1,
            }),
        }
        counts.push(c);
        next = Some(i + 1);
    }
    (spans, counts)
}

fn merge(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push(a[i]);
            i += 1;
        } else if i >= a.len() || b[j].0 < a[i].0 {
            out.push((b[j].0, sign * b[j].1));
            j += 1;
        } else {
            out.push((a[i].0, a[i].1 + sign * b[j].1));
            i += 1;
            j += 1;
        }
    }
    out
}

/// Moves the buckets that lie within `threshold` into the zero bucket.
fn widen_zero(h: &mut FloatHistogram, threshold: f64) {
    if threshold <= h.zero_threshold || h.uses_custom_buckets() {
        return;
    }
    let mut zc = h.zero_count;
    for neg in [false, true] {
        let (spans, counts) = if neg {
            (&h.negative_spans, &h.negative_buckets)
        } else {
            (&h.positive_spans, &h.positive_buckets)
        };
        let list = bucket_list(spans, counts);
        let mut keep = Vec::with_capacity(list.len());
        for (i, c) in list {
            if bucket_upper_bound(i, h.schema, &[]) <= threshold {
                zc += c;
            } else {
                keep.push((i, c));
            }
        }
        let (s, c) = from_bucket_list(&keep);
        if neg {
            h.negative_spans = s;
            h.negative_buckets = c;
        } else {
            h.positive_spans = s;
            h.positive_buckets = c;
        }
    }
    h.zero_count = zc;
    h.zero_threshold = threshold;
}

/// Re-buckets a custom-bucket histogram onto `bounds`, a subset of its own
/// boundaries: each bucket goes to the first new bucket whose upper bound is
/// not below its own.
fn rebucket_custom(h: &FloatHistogram, bounds: &[f64]) -> FloatHistogram {
    let mut out = h.clone();
    let mut acc: Vec<f64> = vec![0.0; bounds.len() + 1];
    for (i, c) in bucket_list(&h.positive_spans, &h.positive_buckets) {
        let ub = bucket_upper_bound(i, h.schema, &h.custom_values);
        let k = bounds.partition_point(|b| *b < ub);
        acc[k.min(bounds.len())] += c;
    }
    let list: Vec<(i32, f64)> = acc
        .into_iter()
        .enumerate()
        .filter(|(_, c)| *c != 0.0)
        .map(|(i, c)| (i as i32, c))
        .collect();
    let (sp, bs) = from_bucket_list(&list);
    out.positive_spans = sp;
    out.positive_buckets = bs;
    out.custom_values = bounds.to_vec();
    out
}

/// Both histograms with custom buckets on the boundaries they have in common,
/// when their boundaries differ (Prometheus's reconciliation).
pub(crate) fn reconcile_custom(
    a: &FloatHistogram,
    b: &FloatHistogram,
) -> Option<(FloatHistogram, FloatHistogram)> {
    if !a.uses_custom_buckets() || !b.uses_custom_buckets() || a.custom_values == b.custom_values {
        return None;
    }
    let common: Vec<f64> = a
        .custom_values
        .iter()
        .copied()
        .filter(|v| b.custom_values.contains(v))
        .collect();
    Some((rebucket_custom(a, &common), rebucket_custom(b, &common)))
}

/// `a + sign * b` (Go's `FloatHistogram.Add`/`Sub`).
pub(crate) fn add(
    a: &FloatHistogram,
    b: &FloatHistogram,
    sign: f64,
) -> Result<FloatHistogram, HistErr> {
    add_reconcile(a, b, sign).map(|x| x.0)
}

/// Like [`add`], also saying whether mismatched custom buckets were reconciled.
pub(crate) fn add_reconcile(
    a: &FloatHistogram,
    b: &FloatHistogram,
    sign: f64,
) -> Result<(FloatHistogram, bool), HistErr> {
    let mut a = a.clone();
    let mut b = b.clone();
    if a.uses_custom_buckets() != b.uses_custom_buckets() {
        return Err(HistErr::MixedSchemas);
    }
    let mut reconciled = false;
    if let Some((x, y)) = reconcile_custom(&a, &b) {
        a = x;
        b = y;
        reconciled = true;
    }
    if !a.uses_custom_buckets() {
        let target = a.schema.min(b.schema);
        a.reduce_resolution(target);
        b.reduce_resolution(target);
        let zt = a.zero_threshold.max(b.zero_threshold);
        widen_zero(&mut a, zt);
        widen_zero(&mut b, zt);
    }
    let pos = merge(
        &bucket_list(&a.positive_spans, &a.positive_buckets),
        &bucket_list(&b.positive_spans, &b.positive_buckets),
        sign,
    );
    let neg = merge(
        &bucket_list(&a.negative_spans, &a.negative_buckets),
        &bucket_list(&b.negative_spans, &b.negative_buckets),
        sign,
    );
    let (ps, pc) = from_bucket_list(&pos);
    let (ns, nc) = from_bucket_list(&neg);
    a.positive_spans = ps;
    a.positive_buckets = pc;
    a.negative_spans = ns;
    a.negative_buckets = nc;
    a.count += sign * b.count;
    a.sum += sign * b.sum;
    a.zero_count += sign * b.zero_count;
    Ok((a, reconciled))
}

/// The sum of `hs` (at least one) with Kahan-compensated fields, as Prometheus's
/// `KahanAdd`; also whether mismatched custom buckets were reconciled.
pub(crate) fn sum_all(hs: &[&FloatHistogram]) -> Result<(FloatHistogram, bool), HistErr> {
    use std::collections::BTreeMap;
    let first = hs[0];
    let custom = first.uses_custom_buckets();
    if hs.iter().any(|h| h.uses_custom_buckets() != custom) {
        return Err(HistErr::MixedSchemas);
    }
    let mut reconciled = false;
    let mut norm: Vec<FloatHistogram> = Vec::with_capacity(hs.len());
    if custom {
        let mut bounds = first.custom_values.clone();
        for h in &hs[1..] {
            if h.custom_values != bounds {
                reconciled = true;
                bounds.retain(|b| h.custom_values.contains(b));
            }
        }
        for h in hs {
            norm.push(if h.custom_values == bounds {
                (*h).clone()
            } else {
                rebucket_custom(h, &bounds)
            });
        }
    } else {
        let schema = hs.iter().map(|h| h.schema).min().unwrap_or(0);
        let zt = hs.iter().map(|h| h.zero_threshold).fold(0.0, f64::max);
        for h in hs {
            let mut h = (*h).clone();
            h.reduce_resolution(schema);
            widen_zero(&mut h, zt);
            norm.push(h);
        }
    }
    let kahan = |acc: &mut (f64, f64), x: f64| {
        let (s, c) = kahan_inc(x, acc.0, acc.1);
        *acc = (s, c);
    };
    let (mut count, mut sum, mut zero) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    let mut pos: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
    let mut neg: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
    for h in &norm {
        kahan(&mut count, h.count);
        kahan(&mut sum, h.sum);
        kahan(&mut zero, h.zero_count);
        for (i, c) in bucket_list(&h.positive_spans, &h.positive_buckets) {
            kahan(pos.entry(i).or_insert((0.0, 0.0)), c);
        }
        for (i, c) in bucket_list(&h.negative_spans, &h.negative_buckets) {
            kahan(neg.entry(i).or_insert((0.0, 0.0)), c);
        }
    }
    let total = |x: (f64, f64)| if x.0.is_infinite() { x.0 } else { x.0 + x.1 };
    let mut out = norm.swap_remove(0);
    out.count = total(count);
    out.sum = total(sum);
    out.zero_count = total(zero);
    let pl: Vec<(i32, f64)> = pos.into_iter().map(|(i, x)| (i, total(x))).collect();
    let nl: Vec<(i32, f64)> = neg.into_iter().map(|(i, x)| (i, total(x))).collect();
    let (ps, pc) = from_bucket_list(&pl);
    let (ns, nc) = from_bucket_list(&nl);
    out.positive_spans = ps;
    out.positive_buckets = pc;
    out.negative_spans = ns;
    out.negative_buckets = nc;
    Ok((out, reconciled))
}

/// Whether the summands have conflicting counter reset hints (a reset and a
/// not-reset), which Prometheus warns about.
pub(crate) fn conflicting_resets(hs: &[&FloatHistogram]) -> bool {
    hs.iter()
        .any(|h| h.counter_reset_hint == CounterResetHint::CounterReset)
        && hs
            .iter()
            .any(|h| h.counter_reset_hint == CounterResetHint::NotCounterReset)
}

/// The mean of `hs` (at least one); when the sum overflows, the inputs are
/// divided before they are added (like Prometheus's incremental mean).
pub(crate) fn avg_all(hs: &[&FloatHistogram]) -> Result<(FloatHistogram, bool), HistErr> {
    let n = hs.len() as f64;
    let (sum, rec) = sum_all(hs)?;
    let overflow = |h: &FloatHistogram| {
        h.count.is_infinite()
            || h.sum.is_infinite()
            || h.zero_count.is_infinite()
            || h.positive_buckets.iter().any(|c| c.is_infinite())
            || h.negative_buckets.iter().any(|c| c.is_infinite())
    };
    if overflow(&sum) && !hs.iter().any(|h| overflow(h)) {
        let scaled: Vec<FloatHistogram> = hs.iter().map(|h| scale(h, 1.0 / n)).collect();
        let refs: Vec<&FloatHistogram> = scaled.iter().collect();
        return sum_all(&refs);
    }
    Ok((scale(&sum, 1.0 / n), rec))
}

/// Multiplies all counts and the sum by `f`.
pub(crate) fn scale(h: &FloatHistogram, f: f64) -> FloatHistogram {
    let mut h = h.clone();
    h.count *= f;
    h.sum *= f;
    h.zero_count *= f;
    for c in h
        .positive_buckets
        .iter_mut()
        .chain(h.negative_buckets.iter_mut())
    {
        *c *= f;
    }
    h
}

/// Divides all counts and the sum by `d` (Go's `FloatHistogram.Div`): dividing
/// by zero leaves only the zero bucket, with all observations.
pub(crate) fn div(h: &FloatHistogram, d: f64) -> FloatHistogram {
    if d == 0.0 {
        let mut r = h.clone();
        r.count /= d;
        r.sum /= d;
        r.zero_count = h.count / d;
        r.positive_spans.clear();
        r.positive_buckets.clear();
        r.negative_spans.clear();
        r.negative_buckets.clear();
        return r;
    }
    scale(h, 1.0 / d)
}

/// One bucket with its bounds, as Go's `Bucket`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
    pub zero: bool,
}

/// All buckets from lowest to highest: negative, zero, positive (Go's
/// `AllBucketIterator`).
pub(crate) fn all_buckets(h: &FloatHistogram) -> Vec<Bucket> {
    let mut out = Vec::new();
    let cv = &h.custom_values;
    for (i, c) in bucket_list(&h.negative_spans, &h.negative_buckets)
        .into_iter()
        .rev()
    {
        out.push(Bucket {
            lower: -bucket_upper_bound(i, h.schema, cv),
            upper: -bucket_upper_bound(i - 1, h.schema, cv),
            count: c,
            zero: false,
        });
    }
    if !h.uses_custom_buckets() && (h.zero_threshold != 0.0 || h.zero_count != 0.0) {
        out.push(Bucket {
            lower: -h.zero_threshold,
            upper: h.zero_threshold,
            count: h.zero_count,
            zero: true,
        });
    }
    for (i, c) in bucket_list(&h.positive_spans, &h.positive_buckets) {
        out.push(Bucket {
            lower: bucket_upper_bound(i - 1, h.schema, cv),
            upper: bucket_upper_bound(i, h.schema, cv),
            count: c,
            zero: false,
        });
    }
    out
}

/// The number of observations in the buckets (including the zero bucket).
fn bucket_total(h: &FloatHistogram) -> f64 {
    h.zero_count + h.positive_buckets.iter().sum::<f64>() + h.negative_buckets.iter().sum::<f64>()
}

/// Whether the histogram has NaN observations (counted, but in no bucket).
pub(crate) fn has_nan_observations(h: &FloatHistogram) -> bool {
    h.sum.is_nan() && h.count > bucket_total(h)
}

/// Go's `HistogramQuantile` for a native histogram.
pub(crate) fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let buckets = all_buckets(h);
    let forward = h.sum.is_nan() || q < 0.5;
    let rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket = Bucket {
        lower: 0.0,
        upper: 0.0,
        count: 0.0,
        zero: false,
    };
    let n = buckets.len();
    for k in 0..n {
        let b = if forward {
            buckets[k]
        } else {
            buckets[n - 1 - k]
        };
        bucket = b;
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        if count >= rank {
            break;
        }
    }
    let has_neg = !h.negative_buckets.is_empty();
    let has_pos = !h.positive_buckets.is_empty();
    if !h.uses_custom_buckets() && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if !has_neg && has_pos {
            bucket.lower = 0.0;
        } else if !has_pos && has_neg {
            bucket.upper = 0.0;
        }
    } else if h.uses_custom_buckets() {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return bucket.upper;
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            // The rank lies among the NaN observations.
            return f64::NAN;
        }
        return if forward { bucket.upper } else { bucket.lower };
    }
    let mut fraction;
    if forward {
        let r = rank - (count - bucket.count);
        fraction = r / bucket.count;
    } else {
        let r = rank - (count - bucket.count);
        fraction = 1.0 - r / bucket.count;
    }
    if !fraction.is_finite() {
        fraction = 0.0;
    }
    if h.uses_custom_buckets() || bucket.zero || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let log_lower = bucket.lower.abs().log2();
    let log_upper = bucket.upper.abs().log2();
    if bucket.lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }
}

/// Go's `HistogramFraction`.
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let has_neg = !h.negative_buckets.is_empty();
    let has_pos = !h.positive_buckets.is_empty();
    let custom = h.uses_custom_buckets();
    for mut b in all_buckets(h) {
        let mut zero = false;
        if !custom && b.lower <= 0.0 && b.upper >= 0.0 {
            zero = true;
            if !has_neg && has_pos {
                b.lower = 0.0;
            } else if !has_pos && has_neg {
                b.upper = 0.0;
            }
        }
        if custom && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
            b.lower = 0.0;
        }
        let infinite = b.lower.is_infinite() || b.upper.is_infinite();
        let lin = |v: f64, is_lower: bool| {
            if infinite {
                // The value counts as at the bucket's finite bound.
                let _ = is_lower;
                if b.upper.is_infinite() {
                    rank
                } else {
                    rank + b.count
                }
            } else {
                rank + b.count * (v - b.lower) / (b.upper - b.lower)
            }
        };
        let expo = |v: f64| {
            let ll = b.lower.abs().log2();
            let lu = b.upper.abs().log2();
            let lv = v.abs().log2();
            let f = if v > 0.0 {
                (lv - ll) / (lu - ll)
            } else {
                1.0 - ((lv - lu) / (ll - lu))
            };
            rank + b.count * f
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = if zero || custom {
                lin(lower, true)
            } else {
                expo(lower)
            };
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = if zero || custom {
                lin(upper, false)
            } else {
                expo(upper)
            };
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    // NaN observations are in no bucket and so in no fraction.
    let top = if has_nan_observations(h) {
        bucket_total(h)
    } else {
        h.count
    };
    if !lower_set || lower_rank > top {
        lower_rank = top;
    }
    if !upper_set || upper_rank > top {
        upper_rank = top;
    }
    ((upper_rank - lower_rank) / h.count).max(0.0)
}

/// Population variance of the observations, estimated from bucket midpoints.
pub(crate) fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let mut acc = 0.0;
    let mut comp = 0.0;
    for b in all_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let d = val - mean;
        let term = b.count * d * d;
        let (s, c) = kahan_inc(term, acc, comp);
        acc = s;
        comp = c;
    }
    (acc + comp) / h.count
}

fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Whether a histogram is a gauge histogram.
pub(crate) fn is_gauge(h: &FloatHistogram) -> bool {
    h.counter_reset_hint == CounterResetHint::Gauge
}

/// Whether `cur` is a counter reset relative to `prev` (Go's
/// `FloatHistogram.DetectReset`).
pub(crate) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    if cur.counter_reset_hint == CounterResetHint::CounterReset {
        return true;
    }
    if cur.counter_reset_hint == CounterResetHint::NotCounterReset {
        return false;
    }
    if cur.count < prev.count {
        return true;
    }
    if cur.uses_custom_buckets() != prev.uses_custom_buckets() {
        return true;
    }
    if let Some((c, p)) = reconcile_custom(cur, prev) {
        return detect_reset(&c, &p);
    }
    if cur.schema > prev.schema {
        return true;
    }
    if cur.zero_threshold < prev.zero_threshold {
        return true;
    }
    let mut prev = prev.clone();
    if cur.schema < prev.schema {
        prev.reduce_resolution(cur.schema);
    }
    if cur.zero_count < prev.zero_count && cur.zero_threshold == prev.zero_threshold {
        return true;
    }
    for neg in [false, true] {
        let (cs, cc, ps, pc) = if neg {
            (
                &cur.negative_spans,
                &cur.negative_buckets,
                &prev.negative_spans,
                &prev.negative_buckets,
            )
        } else {
            (
                &cur.positive_spans,
                &cur.positive_buckets,
                &prev.positive_spans,
                &prev.positive_buckets,
            )
        };
        let c = bucket_list(cs, cc);
        for (i, pcount) in bucket_list(ps, pc) {
            if pcount == 0.0 {
                continue;
            }
            if cur.zero_threshold > prev.zero_threshold
                && bucket_upper_bound(i, prev.schema, &[]) <= cur.zero_threshold
            {
                continue;
            }
            match c.binary_search_by_key(&i, |x| x.0) {
                Ok(k) if c[k].1 >= pcount => {}
                _ => return true,
            }
        }
    }
    false
}

/// Non-zero buckets as sorted `(index, count)` (Go's `Compact(0)` view).
fn nonzero(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    bucket_list(spans, counts)
        .into_iter()
        .filter(|b| b.1 != 0.0)
        .collect()
}

/// Exact equality of two histograms' values (Go's `FloatHistogram.Equals` on
/// compacted histograms).
pub(crate) fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let same = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    a.schema == b.schema
        && same(a.count, b.count)
        && same(a.sum, b.sum)
        && a.zero_threshold == b.zero_threshold
        && same(a.zero_count, b.zero_count)
        && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
        && nonzero(&a.positive_spans, &a.positive_buckets)
            == nonzero(&b.positive_spans, &b.positive_buckets)
        && nonzero(&a.negative_spans, &a.negative_buckets)
            == nonzero(&b.negative_spans, &b.negative_buckets)
}

/// promqltest's `compareNativeHistogram` (after `Compact(0)`).
pub(crate) fn almost_equal(exp: &FloatHistogram, cur: &FloatHistogram) -> bool {
    use crate::promqltest::almost_equal as eq;
    const E: f64 = 0.000001;
    if exp.schema != cur.schema || !eq(exp.count, cur.count, E) || !eq(exp.sum, cur.sum, E) {
        return false;
    }
    if exp.uses_custom_buckets() && exp.custom_values != cur.custom_values {
        return false;
    }
    if exp.zero_threshold != cur.zero_threshold || !eq(exp.zero_count, cur.zero_count, E) {
        return false;
    }
    for (a, b) in [
        (
            nonzero(&exp.negative_spans, &exp.negative_buckets),
            nonzero(&cur.negative_spans, &cur.negative_buckets),
        ),
        (
            nonzero(&exp.positive_spans, &exp.positive_buckets),
            nonzero(&cur.positive_spans, &cur.positive_buckets),
        ),
    ] {
        if a.len() != b.len() {
            return false;
        }
        for (x, y) in a.iter().zip(b.iter()) {
            if x.0 != y.0 || !eq(x.1, y.1, E) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(schema: i32, offset: i32, buckets: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count: buckets.iter().sum(),
            sum: 1.0,
            positive_spans: vec![Span {
                offset,
                length: buckets.len() as u32,
            }],
            positive_buckets: buckets.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn add_reduces_to_common_schema() {
        // Schema 1 buckets 1..=2 merge into schema 0 bucket 1.
        let a = exp(1, 1, &[1.0, 2.0]);
        let b = exp(0, 1, &[4.0]);
        let r = add(&a, &b, 1.0).unwrap();
        assert_eq!(r.schema, 0);
        assert_eq!(
            bucket_list(&r.positive_spans, &r.positive_buckets),
            vec![(1, 7.0)]
        );
        let d = add(&r, &b, -1.0).unwrap();
        assert_eq!(d.count, 3.0);
    }

    #[test]
    fn custom_buckets_reconcile() {
        let a = FloatHistogram {
            schema: -53,
            count: 3.0,
            custom_values: vec![1.0, 5.0],
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![1.0, 1.0, 1.0],
            ..Default::default()
        };
        let mut b = a.clone();
        b.custom_values = vec![5.0, 10.0];
        let (r, rec) = add_reconcile(&a, &b, 1.0).unwrap();
        assert!(rec);
        assert_eq!(r.custom_values, vec![5.0]);
        assert_eq!(r.to_string(), "{count:6, sum:0, [-Inf,5]:3, (5,+Inf]:3}");
    }

    #[test]
    fn quantile_and_fraction() {
        // Schema 0: bucket 1 is (1, 2], bucket 2 is (2, 4].
        let h = exp(0, 1, &[2.0, 2.0]);
        assert_eq!(quantile(0.5, &h), 2.0);
        assert!((fraction(0.0, 2.0, &h) - 0.5).abs() < 1e-12);
        let q = quantile(0.75, &h);
        assert!(q > 2.0 && q < 4.0);
    }

    #[test]
    fn resets() {
        let a = exp(0, 1, &[2.0, 2.0]);
        let b = exp(0, 1, &[1.0, 3.0]);
        assert!(detect_reset(&b, &a));
        assert!(!detect_reset(&a, &a));
    }
}
