//! PromQL functions.

use crate::engine::HashMap;

use model::{format_go_float, FloatHistogram, Labels, MatchType, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::engine::{err, selector_matchers, Evaluator, MatrixV, SelOut, MS, V, VS};
use crate::{Error, Result};

/// Neumaier-improved Kahan summation step (Prometheus's `kahanSumInc`).
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
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

/// Prometheus's `quantile` over float values (NaN sorts first).
pub(crate) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    vals[lower as usize] * (1.0 - weight) + vals[upper as usize] * weight
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a > 0.0 || b.is_infinite() && b > 0.0 {
        return f64::INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b {
        a
    } else {
        b
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a < 0.0 || b.is_infinite() && b < 0.0 {
        return f64::NEG_INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b {
        a
    } else {
        b
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        _ => e,
    }
}

fn arg_vector(ev: &mut Evaluator, c: &Call, i: usize, ts: &[i64]) -> Result<Vec<VS>> {
    match ev.eval(&c.args.args[i], ts)? {
        V::Vector(v) => Ok(v),
        _ => err(format!(
            "expected instant vector argument to {}",
            c.func.name
        )),
    }
}

fn arg_scalar(ev: &mut Evaluator, c: &Call, i: usize, ts: &[i64]) -> Result<Vec<f64>> {
    match ev.eval(&c.args.args[i], ts)? {
        V::Scalar(v) => Ok(v),
        _ => err(format!("expected scalar argument to {}", c.func.name)),
    }
}

fn arg_string(ev: &mut Evaluator, c: &Call, i: usize, ts: &[i64]) -> Result<String> {
    match ev.eval(&c.args.args[i], ts)? {
        V::Str(s) => Ok(s),
        _ => err(format!("expected string argument to {}", c.func.name)),
    }
}

fn arg_matrix(ev: &mut Evaluator, c: &Call, i: usize, ts: &[i64]) -> Result<MatrixV> {
    match ev.eval(&c.args.args[i], ts)? {
        V::Matrix(m) => Ok(m),
        _ => err(format!("expected range vector argument to {}", c.func.name)),
    }
}

fn map_values(vs: Vec<VS>, f: impl Fn(f64) -> f64) -> Vec<VS> {
    vs.into_iter()
        .map(|s| VS {
            h: Vec::new(),
            labels: s.labels,
            drop: true,
            v: s.v.into_iter().map(|x| x.map(&f)).collect(),
        })
        .collect()
}

fn map_values_step(vs: Vec<VS>, f: impl Fn(f64, usize) -> f64) -> Vec<VS> {
    vs.into_iter()
        .map(|s| VS {
            h: Vec::new(),
            labels: s.labels,
            drop: true,
            v: s.v
                .into_iter()
                .enumerate()
                .map(|(i, x)| x.map(|x| f(x, i)))
                .collect(),
        })
        .collect()
}

/// Infos for histograms with NaN observations; `text` gives the message.
fn nan_observation_infos(
    ev: &mut Evaluator,
    v: &[VS],
    text: impl Fn(&FloatHistogram, usize) -> &'static str,
) {
    for s in v {
        for st in 0..s.h.len() {
            if let Some(h) = s.hist(st) {
                if crate::hist::has_nan_observations(h) {
                    ev.info(format!(
                        "{} for metric name {}",
                        text(h, st),
                        model::go_quote(s.labels.metric_name().unwrap_or(""))
                    ));
                }
            }
        }
    }
}

/// `histogram_quantile` over native histograms and classic bucket groups.
fn hist_quantile(
    ev: &mut Evaluator,
    q: &[f64],
    v: &[VS],
    groups: Vec<(Labels, Vec<(usize, f64)>)>,
    n: usize,
) -> Vec<VS> {
    let native = hist_map(v, |h, st| Some(crate::hist::quantile(q[st], h)));
    nan_observation_infos(ev, v, |h, st| {
        if crate::hist::quantile(q[st], h).is_nan() {
            "input to histogram_quantile has NaN observations, result is NaN"
        } else {
            "input to histogram_quantile has NaN observations, result is skewed higher"
        }
    });
    let mut out = Vec::new();
    for (key, members) in groups {
        let mut vals = Vec::with_capacity(n);
        let mut any = false;
        #[allow(clippy::needless_range_loop)]
        for st in 0..n {
            let mut buckets: Vec<(f64, f64)> = members
                .iter()
                .filter_map(|&(i, le)| v[i].v[st].map(|x| (le, x)))
                .collect();
            if buckets.is_empty() {
                vals.push(None);
                continue;
            }
            let (r, forced) = bucket_quantile(q[st], &mut buckets);
            if forced {
                ev.info(format!("input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {}", model::go_quote(key.metric_name().unwrap_or(""))));
            }
            any = true;
            vals.push(Some(r));
        }
        if any {
            out.push(VS {
                h: Vec::new(),
                labels: key,
                drop: true,
                v: vals,
            });
        }
    }
    merge_native_classic(ev, native, out)
}

/// Joins native and classic results; where both have a sample with the same
/// labels at a step, neither is kept and Prometheus's warning is given.
fn merge_native_classic(ev: &mut Evaluator, native: Vec<VS>, mut classic: Vec<VS>) -> Vec<VS> {
    let mut out = Vec::new();
    for mut ns in native {
        if let Some(cs) = classic.iter_mut().find(|c| c.labels == ns.labels) {
            for st in 0..ns.v.len() {
                if ns.v[st].is_some() && cs.v[st].is_some() {
                    ns.v[st] = None;
                    cs.v[st] = None;
                    ev.warn(format!(
                        "vector contains a mix of classic and native histograms for metric name {}",
                        model::go_quote(ns.labels.metric_name().unwrap_or(""))
                    ));
                }
            }
        }
        if ns.v.iter().any(|x| x.is_some()) {
            out.push(ns);
        }
    }
    classic.retain(|c| c.v.iter().any(|x| x.is_some()));
    out.extend(classic);
    out
}

/// Float series computed from the histogram samples of `vs` (floats are ignored).
fn hist_map(vs: &[VS], f: impl Fn(&FloatHistogram, usize) -> Option<f64>) -> Vec<VS> {
    let mut out = Vec::new();
    for s in vs {
        if s.h.is_empty() {
            continue;
        }
        let v: Vec<Option<f64>> = (0..s.v.len())
            .map(|st| s.hist(st).and_then(|h| f(h, st)))
            .collect();
        if v.iter().any(|x| x.is_some()) {
            out.push(VS {
                h: Vec::new(),
                labels: s.labels.clone(),
                drop: true,
                v,
            });
        }
    }
    out
}

/// Groups the float series of `v` by their labels without `le` (classic
/// histograms), warning about a missing or malformed `le`.
fn classic_groups(ev: &mut Evaluator, v: &[VS]) -> Vec<(Labels, Vec<(usize, f64)>)> {
    let mut groups: Vec<(Labels, Vec<(usize, f64)>)> = Vec::new();
    let mut gidx: HashMap<Labels, usize> = HashMap::default();
    for (i, s) in v.iter().enumerate() {
        if !s.v.iter().any(|x| x.is_some()) {
            continue;
        }
        let le_s = s.labels.get("le").unwrap_or("");
        let Some(le) = parse_go_float(le_s) else {
            ev.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {} for metric name {}",
                model::go_quote(le_s),
                model::go_quote(s.labels.metric_name().unwrap_or(""))
            ));
            continue;
        };
        let key = s.labels.without(&["le"]);
        let g = *gidx.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((i, le));
    }
    groups
}

/// Prometheus's `BucketFraction` over classic buckets `(le, cumulative count)`.
fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same upper bound.
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match co.last_mut() {
            Some(l) if l.0 == b.0 => l.1 += b.1,
            _ => co.push(b),
        }
    }
    let count = co[co.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(ub, bc)) in co.iter().enumerate() {
        let lb = if i > 0 {
            co[i - 1].0
        } else if ub > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let infinite = lb.is_infinite() || ub.is_infinite();
        // No interpolation within a bucket of infinite width: it contributes
        // nothing to the fraction.
        let interp = |v: f64, is_lower: bool| {
            if infinite {
                // The value counts as at the bucket's finite bound.
                let _ = is_lower;
                if ub.is_infinite() {
                    rank
                } else {
                    bc
                }
            } else {
                rank + (bc - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower, true);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper, false);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bc;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    ((upper_rank - lower_rank) / count).max(0.0)
}

/// The warning (text before the quoted metric name) for a sample whose start
/// timestamp lies before the previous sample without being the previous one's
/// (Prometheus's `StartTimeOverlapWarning`).
const ST_OVERLAP: &str =
    "sample has start time that overlaps with previous sample timestamp for metric ";

/// Prometheus's `isStartTimestampReset`: whether the start timestamp of the
/// current sample says the counter was reset since the previous sample. Not when
/// it is unknown (0), invalid (after the sample) or OTel's unknown start (equal to
/// the sample's time), nor when it lies before the previous sample; yes when it
/// lies after it. When it is the previous sample's time, the series is a delta
/// series (reset) if the previous start timestamp is known and valid, else a
/// cumulative one with unknown start (no reset).
pub(crate) fn is_st_reset(prev_st: i64, prev_t: i64, cur_st: i64, cur_t: i64) -> bool {
    if cur_st == 0 || cur_st >= cur_t || cur_st < prev_t {
        return false;
    }
    if cur_st > prev_t {
        return true;
    }
    if prev_st > prev_t {
        return false;
    }
    prev_st != 0 && prev_st != prev_t
}

/// Prometheus's `checkStartTimeOverlap`: a known start timestamp before the
/// previous sample that is not the previous sample's start timestamp.
pub(crate) fn st_overlap(prev_st: i64, prev_t: i64, cur_st: i64) -> bool {
    cur_st != 0 && cur_st < prev_t && cur_st != prev_st
}

/// The window `(a, b)` of start timestamps `sts` (empty when `sts` is).
fn st_win(sts: &[i64], a: usize, b: usize) -> &[i64] {
    if sts.is_empty() || b <= a {
        &[]
    } else {
        &sts[a..b]
    }
}

/// Marks the info about reconciled custom buckets among `histogram_rate`'s notes.
const RECONCILED_SUB: &str = "info:mismatched custom buckets were reconciled during subtraction";

/// Prometheus's `histogramRate`: the increase of histogram points (no
/// extrapolation), with the warnings (texts to append the metric name to).
/// `sts` are the points' start timestamps (empty when unknown): a start
/// timestamp reset counts as a counter reset, and an overlap adds [`ST_OVERLAP`].
fn histogram_rate(
    pts: &[(i64, FloatHistogram)],
    sts: &[i64],
    is_counter: bool,
) -> (Option<FloatHistogram>, Vec<&'static str>) {
    use crate::hist::{add, detect_reset, is_gauge};
    let mut warns = Vec::new();
    let mut prev = pts[0].1.clone();
    let last = &pts[pts.len() - 1].1;
    let mut custom = prev.uses_custom_buckets();
    if is_counter && (is_gauge(&prev) || is_gauge(last)) {
        warns.push("this native histogram metric is not a counter: ");
    }
    if is_counter && pts.len() > 1 {
        let second = &pts[1].1;
        if (sts.len() > 1 && is_st_reset(sts[0], pts[0].0, sts[1], pts[1].0))
            || detect_reset(second, &prev)
        {
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..Default::default()
            };
            custom = second.uses_custom_buckets();
        }
    }
    const MIXED: &str =
        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name ";
    if last.uses_custom_buckets() != custom {
        warns.push(MIXED);
        return (None, warns);
    }
    for p in &pts[1..pts.len() - 1] {
        if !is_counter {
            continue;
        }
        if is_gauge(&p.1) {
            warns.push("this native histogram metric is not a counter: ");
        }
        if p.1.uses_custom_buckets() != custom {
            return (None, vec![MIXED]);
        }
    }
    let first_prev = prev.clone();
    let Ok((mut h, rec)) = crate::hist::add_reconcile(last, &first_prev, -1.0) else {
        return (None, warns);
    };
    if rec {
        warns.push(RECONCILED_SUB);
    }
    if is_counter {
        let mut prev = first_prev;
        let mut overlap = false;
        for (i, p) in pts[1..].iter().enumerate() {
            if !overlap && i + 1 < sts.len() && st_overlap(sts[i], pts[i].0, sts[i + 1]) {
                warns.push(ST_OVERLAP);
                overlap = true;
            }
            let st_reset = i + 1 < sts.len() && is_st_reset(sts[i], pts[i].0, sts[i + 1], p.0);
            if st_reset || detect_reset(&p.1, &prev) {
                match add(&h, &prev, 1.0) {
                    Ok(x) => h = x,
                    Err(_) => return (None, warns),
                }
            }
            prev = p.1.clone();
        }
    } else if !is_gauge(&pts[0].1) || !is_gauge(last) {
        warns.push("this native histogram metric is not a gauge: ");
    }
    warns.dedup();
    (Some(h), warns)
}

/// A float `*_over_time` function over the points of one window.
fn float_over_time(name: &str, p: &[(i64, f64)]) -> f64 {
    match name {
        "avg_over_time" => {
            let vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            crate::aggr::avg(&vals)
        }
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for x in p {
                (s, c) = kahan_inc(x.1, s, c);
            }
            s + c
        }
        "count_over_time" => p.len() as f64,
        "min_over_time" | "ts_of_min_over_time" => {
            let mut m = p[0];
            for &x in &p[1..] {
                if (x.1 <= m.1 || m.1.is_nan())
                    && (x.1 < m.1 || m.1.is_nan() || name == "ts_of_min_over_time")
                {
                    m = x;
                }
            }
            if name == "min_over_time" {
                m.1
            } else {
                m.0 as f64 / 1000.0
            }
        }
        "max_over_time" | "ts_of_max_over_time" => {
            let mut m = p[0];
            for &x in &p[1..] {
                if (x.1 >= m.1 || m.1.is_nan())
                    && (x.1 > m.1 || m.1.is_nan() || name == "ts_of_max_over_time")
                {
                    m = x;
                }
            }
            if name == "max_over_time" {
                m.1
            } else {
                m.0 as f64 / 1000.0
            }
        }
        "stddev_over_time" => stdvar(p).sqrt(),
        "stdvar_over_time" => stdvar(p),
        "last_over_time" => p[p.len() - 1].1,
        "first_over_time" => p[0].1,
        "ts_of_last_over_time" => p[p.len() - 1].0 as f64 / 1000.0,
        "ts_of_first_over_time" => p[0].0 as f64 / 1000.0,
        "present_over_time" => 1.0,
        _ => {
            // mad_over_time
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            if vals.iter().any(|x| x.is_nan()) {
                return f64::NAN;
            }
            let med = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|x| (x - med).abs()).collect();
            quantile(0.5, &mut dev)
        }
    }
}

/// The info Prometheus gives when a float function ignores the histograms of a
/// range that has both.
fn mixed_range_info(ev: &mut Evaluator, m: &MatrixV) {
    for s in &m.series {
        if s.hpts.is_empty() {
            continue;
        }
        let mixed = s
            .win
            .iter()
            .zip(s.hwin.iter())
            .any(|(w, h)| w.1 > w.0 && h.1 > h.0);
        if mixed {
            ev.info(format!(
                "ignored histograms in a range containing both floats and histograms for metric name {}",
                model::go_quote(s.labels.metric_name().unwrap_or(""))
            ));
        }
    }
}

/// A sample of a merged window: time, value (`Err` for a histogram) and start
/// timestamp (0 when unknown).
type MergedSample<'a> = (i64, std::result::Result<f64, &'a FloatHistogram>, i64);

/// The samples of a window merged in time order, with their start timestamps
/// (`fst`/`hst` parallel to `fl`/`hs`, or empty).
fn merged<'a>(
    fl: &'a [(i64, f64)],
    hs: &'a [(i64, FloatHistogram)],
    fst: &[i64],
    hst: &[i64],
) -> Vec<MergedSample<'a>> {
    let mut out = Vec::with_capacity(fl.len() + hs.len());
    let (mut i, mut j) = (0, 0);
    while i < fl.len() || j < hs.len() {
        if j >= hs.len() || (i < fl.len() && fl[i].0 < hs[j].0) {
            out.push((fl[i].0, Ok(fl[i].1), fst.get(i).copied().unwrap_or(0)));
            i += 1;
        } else {
            out.push((hs[j].0, Err(&hs[j].1), hst.get(j).copied().unwrap_or(0)));
            j += 1;
        }
    }
    out
}

/// `resets`/`changes` over floats and histograms (`resets` also counts start
/// timestamp resets).
fn resets_changes(
    fl: &[(i64, f64)],
    hs: &[(i64, FloatHistogram)],
    fst: &[i64],
    hst: &[i64],
    resets: bool,
) -> f64 {
    let all = merged(fl, hs, fst, hst);
    let mut count = 0.0;
    for w in all.windows(2) {
        let st_reset = || is_st_reset(w[0].2, w[0].0, w[1].2, w[1].0);
        let hit = match (&w[0].1, &w[1].1) {
            (Ok(a), Ok(b)) => {
                if resets {
                    b < a || st_reset()
                } else {
                    a != b && !(a.is_nan() && b.is_nan())
                }
            }
            (Err(a), Err(b)) => {
                if resets {
                    st_reset() || crate::hist::detect_reset(b, a)
                } else {
                    !crate::hist::equals(a, b)
                }
            }
            _ => true,
        };
        if hit {
            count += 1.0;
        }
    }
    count
}

/// `irate`/`idelta` over a window with histograms (Prometheus's `instantValue`).
fn instant_value_mixed(
    ev: &mut Evaluator,
    fl: &[(i64, f64)],
    hs: &[(i64, FloatHistogram)],
    fst: &[i64],
    hst: &[i64],
    is_rate: bool,
    labels: &Labels,
) -> Option<Out> {
    let all = merged(fl, hs, fst, hst);
    if all.len() < 2 {
        return None;
    }
    let mname = || model::go_quote(labels.metric_name().unwrap_or(""));
    let (prev, last) = (&all[all.len() - 2], &all[all.len() - 1]);
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    let st_reset = is_st_reset(prev.2, prev.0, last.2, last.0);
    match (&prev.1, &last.1) {
        (Ok(a), Ok(b)) => {
            let mut r = if is_rate && (b < a || st_reset) {
                *b
            } else {
                b - a
            };
            if is_rate {
                r /= interval as f64 / 1000.0;
            }
            Some(Out::F(r))
        }
        (Err(a), Err(b)) => {
            use crate::hist::is_gauge;
            if !is_rate && (!is_gauge(a) || !is_gauge(b)) {
                ev.warn(format!(
                    "this native histogram metric is not a gauge: {}",
                    mname()
                ));
            }
            if is_rate && (is_gauge(a) || is_gauge(b)) {
                ev.warn(format!(
                    "this native histogram metric is not a counter: {}",
                    mname()
                ));
            }
            let mut h = if is_rate && (st_reset || crate::hist::detect_reset(b, a)) {
                (*b).clone()
            } else {
                match crate::hist::add_reconcile(b, a, -1.0) {
                    Ok((h, rec)) => {
                        if rec {
                            ev.info(
                                "mismatched custom buckets were reconciled during subtraction"
                                    .into(),
                            );
                        }
                        h
                    }
                    Err(_) => {
                        ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}", mname()));
                        return None;
                    }
                }
            };
            if is_rate {
                h = crate::hist::scale(&h, 1000.0 / interval as f64);
            }
            h.counter_reset_hint = model::CounterResetHint::Gauge;
            Some(Out::H(h))
        }
        _ => {
            ev.warn(format!(
                "encountered a mix of histograms and floats for metric name {}",
                mname()
            ));
            None
        }
    }
}

/// A function's result for one step: a float or a histogram.
enum Out {
    F(f64),
    H(FloatHistogram),
}

/// The float and histogram points of one series' window, with their start
/// timestamps (each empty when unknown).
struct Window<'a> {
    fl: &'a [(i64, f64)],
    hs: &'a [(i64, FloatHistogram)],
    fst: &'a [i64],
    hst: &'a [i64],
}

/// Like [`over_matrix`], with the float and histogram points of each window.
fn over_matrix_mixed(
    ev: &mut Evaluator,
    m: &MatrixV,
    keep_name: bool,
    mut f: impl FnMut(&mut Evaluator, &Window, usize, &Labels) -> Option<Out>,
) -> Result<Vec<VS>> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        ev.check()?;
        let n = s.win.len();
        let mut v = Vec::with_capacity(n);
        let mut hv: Vec<Option<Box<FloatHistogram>>> = Vec::new();
        let mut any = false;
        for st in 0..n {
            let (a, b) = s.win[st];
            let (ha, hb) = s.hwin.get(st).copied().unwrap_or((0, 0));
            let w = Window {
                fl: if b > a { &s.pts[a..b] } else { &[][..] },
                hs: if hb > ha { &s.hpts[ha..hb] } else { &[][..] },
                fst: st_win(&s.sts, a, b),
                hst: st_win(&s.hsts, ha, hb),
            };
            let r = if w.fl.is_empty() && w.hs.is_empty() {
                None
            } else {
                f(ev, &w, st, &s.labels)
            };
            match r {
                Some(Out::F(x)) => {
                    any = true;
                    v.push(Some(x));
                }
                Some(Out::H(h)) => {
                    any = true;
                    v.push(None);
                    if hv.is_empty() {
                        hv = vec![None; n];
                    }
                    hv[st] = Some(Box::new(h));
                }
                None => v.push(None),
            }
        }
        if any {
            out.push(VS {
                h: hv,
                labels: s.labels.clone(),
                drop: if keep_name { s.drop } else { true },
                v,
            });
        }
    }
    Ok(out)
}

/// The `*_over_time` functions over a range vector that has histograms.
fn over_time_mixed(ev: &mut Evaluator, m: &MatrixV, name: &str, keep: bool) -> Result<V> {
    let out = over_matrix_mixed(ev, m, keep, |ev, w, _, labels| {
        let (fl, hs) = (w.fl, w.hs);
        let mname = || model::go_quote(labels.metric_name().unwrap_or(""));
        match name {
            "count_over_time" => Some(Out::F((fl.len() + hs.len()) as f64)),
            "present_over_time" => Some(Out::F(1.0)),
            "last_over_time" | "ts_of_last_over_time" => {
                let lf = fl.last();
                let lh = hs.last();
                let use_h = match (lf, lh) {
                    (Some(f), Some(h)) => h.0 > f.0,
                    (None, Some(_)) => true,
                    _ => false,
                };
                if name == "ts_of_last_over_time" {
                    let t = if use_h {
                        lh.map(|x| x.0)
                    } else {
                        lf.map(|x| x.0)
                    };
                    return t.map(|t| Out::F(t as f64 / 1000.0));
                }
                if use_h {
                    lh.map(|x| Out::H(x.1.clone()))
                } else {
                    lf.map(|x| Out::F(x.1))
                }
            }
            "first_over_time" | "ts_of_first_over_time" => {
                let ff = fl.first();
                let fh = hs.first();
                let use_h = match (ff, fh) {
                    (Some(f), Some(h)) => h.0 < f.0,
                    (None, Some(_)) => true,
                    _ => false,
                };
                if name == "ts_of_first_over_time" {
                    let t = if use_h {
                        fh.map(|x| x.0)
                    } else {
                        ff.map(|x| x.0)
                    };
                    return t.map(|t| Out::F(t as f64 / 1000.0));
                }
                if use_h {
                    fh.map(|x| Out::H(x.1.clone()))
                } else {
                    ff.map(|x| Out::F(x.1))
                }
            }
            "sum_over_time" | "avg_over_time" => {
                if !fl.is_empty() && !hs.is_empty() {
                    ev.warn(format!(
                        "encountered a mix of histograms and floats for metric name {}",
                        mname()
                    ));
                    return None;
                }
                if hs.is_empty() {
                    return Some(Out::F(float_over_time(name, fl)));
                }
                let refs: Vec<&FloatHistogram> = hs.iter().map(|x| &x.1).collect();
                if crate::hist::conflicting_resets(&refs) {
                    ev.warn("conflicting counter resets during histogram aggregation".into());
                }
                let total = if name == "avg_over_time" {
                    crate::hist::avg_all(&refs)
                } else {
                    crate::hist::sum_all(&refs)
                };
                let acc = match total {
                    Ok((x, rec)) => {
                        if rec {
                            ev.info(
                                "mismatched custom buckets were reconciled during aggregation"
                                    .into(),
                            );
                        }
                        x
                    }
                    Err(_) => {
                        ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}", mname()));
                        return None;
                    }
                };
                Some(Out::H(acc))
            }
            _ => {
                if fl.is_empty() {
                    return None;
                }
                if !hs.is_empty() {
                    ev.info(format!(
                        "ignored histograms in a range containing both floats and histograms for metric name {}",
                        mname()
                    ));
                }
                Some(Out::F(float_over_time(name, fl)))
            }
        }
    })?;
    Ok(V::Vector(out))
}

/// Applies `f` to every series window of a range vector.
fn over_matrix(
    ev: &mut Evaluator,
    m: &MatrixV,
    keep_name: bool,
    mut f: impl FnMut(&mut Evaluator, &[(i64, f64)], usize, &Labels) -> Option<f64>,
) -> Result<Vec<VS>> {
    over_matrix_st(ev, m, keep_name, |ev, pts, _, st, s| {
        f(ev, pts, st, &s.labels)
    })
}

/// Like [`over_matrix`], also passing each window's start timestamps (empty
/// when the series has none).
fn over_matrix_st(
    ev: &mut Evaluator,
    m: &MatrixV,
    keep_name: bool,
    mut f: impl FnMut(&mut Evaluator, &[(i64, f64)], &[i64], usize, &MS) -> Option<f64>,
) -> Result<Vec<VS>> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        ev.check()?;
        let mut v = Vec::with_capacity(s.win.len());
        let mut any = false;
        for (st, &(a, b)) in s.win.iter().enumerate() {
            let r = if b > a {
                f(ev, &s.pts[a..b], st_win(&s.sts, a, b), st, s)
            } else {
                None
            };
            any |= r.is_some();
            v.push(r);
        }
        if any {
            out.push(VS {
                h: Vec::new(),
                labels: s.labels.clone(),
                drop: if keep_name { s.drop } else { true },
                v,
            });
        }
    }
    Ok(out)
}

/// Prometheus's `extrapolatedRate` over float points `pts` in the window ending at
/// `end`, with their start timestamps `sts` (empty when unknown). Sets `overlap`
/// when a start timestamp overlaps the previous sample (counters only).
fn extrapolated_rate(
    pts: &[(i64, f64)],
    sts: &[i64],
    end: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
    overlap: &mut bool,
) -> Option<f64> {
    let n = pts.len();
    // One sample is enough when its start timestamp lies in the range.
    if n == 0 || (n < 2 && sts.is_empty()) {
        return None;
    }
    let range_start = end - range;
    let first = pts[0];
    let last = pts[n - 1];
    let mut result = last.1 - first.1;
    if is_counter {
        if sts.is_empty() {
            let mut prev = first.1;
            for p in &pts[1..] {
                if p.1 < prev {
                    result += prev;
                }
                prev = p.1;
            }
        } else {
            for i in 1..n {
                let (p, c) = (pts[i - 1], pts[i]);
                if !*overlap && st_overlap(sts[i - 1], p.0, sts[i]) {
                    *overlap = true;
                }
                if c.1 < p.1 || is_st_reset(sts[i - 1], p.0, sts[i], c.0) {
                    result += p.1;
                }
            }
        }
    }
    let mut dur_to_start = (first.0 - range_start) as f64 / 1000.0;
    let mut dur_to_end = (end - last.0) as f64 / 1000.0;
    let mut sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_between = if n > 1 { sampled / (n - 1) as f64 } else { 0.0 };
    let threshold = avg_between * 1.1;
    match sts.first() {
        // The first sample's start timestamp lies in the range: assume a zero
        // sample there instead of extrapolating to the left.
        Some(&st0) if is_counter && st0 != 0 && st0 > range_start && st0 < first.0 => {
            dur_to_start = 0.0;
            sampled = (last.0 - st0) as f64 / 1000.0;
            result += first.1;
        }
        _ if n == 1 => return None,
        _ => {
            if dur_to_start >= threshold {
                dur_to_start = avg_between / 2.0;
            }
            if is_counter && result > 0.0 && first.1 >= 0.0 {
                let dur_to_zero = sampled * (first.1 / result);
                if dur_to_zero < dur_to_start {
                    dur_to_start = dur_to_zero;
                }
            }
        }
    }
    if dur_to_end >= threshold {
        dur_to_end = avg_between / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + dur_to_start + dur_to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

fn linear_regression(pts: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = pts[0].1;
    let mut const_y = true;
    for (i, p) in pts.iter().enumerate() {
        if const_y && i > 0 && p.1 != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.0 - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.1, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.1, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn stdvar(pts: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in pts {
        count += 1.0;
        let delta = p.1 - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (p.1 - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// Labels for `absent()` from the equality matchers of a selector argument.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let Ok(ms) = selector_matchers(vs) else {
        return Labels::empty();
    };
    let mut l = Labels::empty();
    let mut has: Vec<String> = Vec::new();
    for m in ms {
        if m.name() == METRIC_NAME {
            continue;
        }
        if m.kind() == MatchType::Equal && !has.iter().any(|h| h == m.name()) {
            l = l.with(m.name(), m.value());
            has.push(m.name().to_string());
        } else {
            l = l.without(&[m.name()]);
        }
    }
    l
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn date_part(name: &str, v: f64) -> f64 {
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "minute" => ((sod / 60) % 60) as f64,
        "hour" => (sod / 3600) as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let mut doy = CUM[(m - 1) as usize] + d;
            if m > 2 && is_leap(y) {
                doy += 1;
            }
            doy as f64
        }
        "month" => m as f64,
        "year" => y as f64,
        "days_in_month" => {
            const DIM: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            let mut n = DIM[(m - 1) as usize];
            if m == 2 && is_leap(y) {
                n += 1;
            }
            n as f64
        }
        _ => f64::NAN,
    }
}

/// Natural ordering of strings (digit runs compare numerically).
fn natural_less(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        let (ca, cb) = (ab[i], bb[j]);
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// Checks that no two series share a label set at the same step.
fn check_unique(vs: &[VS]) -> Result<()> {
    let mut seen: HashMap<(&Labels, bool), usize> = HashMap::default();
    for (i, s) in vs.iter().enumerate() {
        if let Some(&j) = seen.get(&(&s.labels, s.drop)) {
            if s.v
                .iter()
                .zip(vs[j].v.iter())
                .any(|(a, b)| a.is_some() && b.is_some())
            {
                return err("vector cannot contain metrics with the same labelset");
            }
        } else {
            seen.insert((&s.labels, s.drop), i);
        }
    }
    Ok(())
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('\u{fffd}')
}

/// Classic-bucket quantile (Prometheus's `BucketQuantile`); returns the value and
/// whether monotonicity had to be forced.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    // Coalesce buckets with the same bound.
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &b in buckets.iter() {
        match co.last_mut() {
            Some(l) if l.0 == b.0 => l.1 += b.1,
            _ => co.push(b),
        }
    }
    let mut forced = false;
    let mut prev = co[0].1;
    for b in co.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if crate::promqltest::almost_equal(prev, curr, 1e-12) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if co.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = co[co.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let n = co.len() - 1;
    let b = co[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return (co[n - 1].0, forced);
    }
    if b == 0 && co[0].0 <= 0.0 {
        return (co[0].0, forced);
    }
    let mut start = 0.0;
    let end = co[b].0;
    let mut count = co[b].1;
    if b > 0 {
        start = co[b - 1].0;
        count -= co[b - 1].1;
        rank -= co[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Parses a float like Go's `strconv.ParseFloat`.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s || t.is_empty() {
        return None;
    }
    if lower.starts_with("0x") || lower.starts_with("-0x") || lower.starts_with("+0x") {
        let (neg, h) = if let Some(h) = lower.strip_prefix('-') {
            (true, h)
        } else {
            (false, lower.trim_start_matches('+'))
        };
        let v = i64::from_str_radix(&h[2..], 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    t.replace('_', "").parse::<f64>().ok()
}

pub(crate) fn eval_call(ev: &mut Evaluator, c: &Call, ts: &[i64]) -> Result<V> {
    let name = c.func.name;
    let nargs = c.args.args.len();
    let n = ts.len();
    match name {
        "info" => crate::info::eval_info(ev, c, ts),
        "time" => Ok(V::Scalar(ts.iter().map(|&t| t as f64 / 1000.0).collect())),
        "pi" => Ok(V::Scalar(vec![std::f64::consts::PI; n])),
        "start" => Ok(V::Scalar(vec![ev.start as f64 / 1000.0; n])),
        "end" => Ok(V::Scalar(vec![ev.end as f64 / 1000.0; n])),
        "range" => Ok(V::Scalar(vec![(ev.end - ev.start) as f64 / 1000.0; n])),
        "step" => {
            let step = if n > 1 { ts[1] - ts[0] } else { 0 };
            Ok(V::Scalar(vec![step as f64 / 1000.0; n]))
        }
        "min_of" | "max_of" => {
            let mut acc: Option<Vec<f64>> = None;
            for i in 0..nargs {
                let v = arg_scalar(ev, c, i, ts)?;
                acc = Some(match acc {
                    None => v,
                    Some(a) => a
                        .iter()
                        .zip(v.iter())
                        .map(|(x, y)| {
                            if name == "min_of" {
                                go_min(*x, *y)
                            } else {
                                go_max(*x, *y)
                            }
                        })
                        .collect(),
                });
            }
            Ok(V::Scalar(acc.unwrap_or_else(|| vec![f64::NAN; n])))
        }
        "scalar" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let mut out = vec![f64::NAN; n];
            for (st, o) in out.iter_mut().enumerate() {
                let mut it = v.iter().filter_map(|s| s.v[st]);
                if let (Some(x), None) = (it.next(), it.next()) {
                    *o = x;
                }
            }
            Ok(V::Scalar(out))
        }
        "vector" => {
            let s = arg_scalar(ev, c, 0, ts)?;
            Ok(V::Vector(vec![VS {
                h: Vec::new(),
                labels: Labels::empty(),
                drop: false,
                v: s.into_iter().map(Some).collect(),
            }]))
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "sin"
        | "cos" | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh"
        | "acosh" | "atanh" | "deg" | "rad" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |x: f64| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
                _ => |x: f64| x * std::f64::consts::PI / 180.0,
            };
            Ok(V::Vector(map_values(v, f)))
        }
        "round" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let to = if nargs > 1 {
                arg_scalar(ev, c, 1, ts)?
            } else {
                vec![1.0; n]
            };
            Ok(V::Vector(map_values_step(v, |x, st| {
                let inv = 1.0 / to[st];
                (x * inv + 0.5).floor() / inv
            })))
        }
        "clamp" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let lo = arg_scalar(ev, c, 1, ts)?;
            let hi = arg_scalar(ev, c, 2, ts)?;
            let mut out = map_values_step(v, |x, st| go_max(lo[st], go_min(hi[st], x)));
            for s in out.iter_mut() {
                for (st, x) in s.v.iter_mut().enumerate() {
                    if hi[st] < lo[st] {
                        *x = None;
                    }
                }
            }
            out.retain(|s| s.v.iter().any(|x| x.is_some()));
            Ok(V::Vector(out))
        }
        "clamp_min" | "clamp_max" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let b = arg_scalar(ev, c, 1, ts)?;
            let is_min = name == "clamp_min";
            Ok(V::Vector(map_values_step(v, |x, st| {
                if is_min {
                    go_max(b[st], x)
                } else {
                    go_min(b[st], x)
                }
            })))
        }
        "timestamp" => {
            let arg = unparen(&c.args.args[0]);
            if let Expr::VectorSelector(vs) = arg {
                let v = ev.eval_vector_selector(vs, ts, SelOut::Timestamp)?;
                return Ok(V::Vector(map_values(v, |x| x)));
            }
            let v = arg_vector(ev, c, 0, ts)?;
            Ok(V::Vector(map_values_step(v, |_, st| {
                ts[st] as f64 / 1000.0
            })))
        }
        "start_timestamp" => {
            // Only a selector's samples carry start timestamps; any other
            // expression has none, so the result is empty (as in Prometheus).
            let arg = unparen(&c.args.args[0]);
            if let Expr::VectorSelector(vs) = arg {
                let v = ev.eval_vector_selector(vs, ts, SelOut::StartTimestamp)?;
                return Ok(V::Vector(map_values(v, |x| x)));
            }
            arg_vector(ev, c, 0, ts)?;
            Ok(V::Vector(Vec::new()))
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "month" | "year"
        | "days_in_month" => {
            if nargs == 0 {
                let v = ts
                    .iter()
                    .map(|&t| Some(date_part(name, t as f64 / 1000.0)))
                    .collect();
                return Ok(V::Vector(vec![VS {
                    h: Vec::new(),
                    labels: Labels::empty(),
                    drop: false,
                    v,
                }]));
            }
            let v = arg_vector(ev, c, 0, ts)?;
            let mut out = map_values(v, |x| {
                if x.is_finite() {
                    date_part(name, x)
                } else {
                    f64::NAN
                }
            });
            for s in out.iter_mut() {
                for x in s.v.iter_mut() {
                    if x.is_some_and(|x| x.is_nan()) {
                        *x = None;
                    }
                }
            }
            out.retain(|s| s.v.iter().any(|x| x.is_some()));
            Ok(V::Vector(out))
        }
        "label_replace" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let dst = arg_string(ev, c, 1, ts)?;
            let repl = arg_string(ev, c, 2, ts)?;
            let src = arg_string(ev, c, 3, ts)?;
            let re_s = arg_string(ev, c, 4, ts)?;
            let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|_| {
                Error::Eval(format!(
                    "invalid regular expression in label_replace(): {re_s}"
                ))
            })?;
            if !valid_label_name(&dst) {
                return err(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let sv = s.labels.get(&src).unwrap_or("").to_string();
                if let Some(caps) = re.captures(&sv) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    s.labels = s.labels.with(&dst, &res);
                    if dst == METRIC_NAME {
                        s.drop = false;
                    }
                }
                out.push(s);
            }
            check_unique(&out)?;
            Ok(V::Vector(out))
        }
        "label_join" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let dst = arg_string(ev, c, 1, ts)?;
            let sep = arg_string(ev, c, 2, ts)?;
            let mut srcs = Vec::new();
            for i in 3..nargs {
                srcs.push(arg_string(ev, c, i, ts)?);
            }
            if !valid_label_name(&dst) {
                return err(format!(
                    "invalid destination label name in label_join(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let joined: Vec<&str> =
                    srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                let j = joined.join(&sep);
                s.labels = s.labels.with(&dst, &j);
                if dst == METRIC_NAME {
                    s.drop = false;
                }
                out.push(s);
            }
            check_unique(&out)?;
            Ok(V::Vector(out))
        }
        "sort" | "sort_desc" => {
            let mut v = arg_vector(ev, c, 0, ts)?;
            // Histogram samples are dropped.
            for s in v.iter_mut() {
                s.h.clear();
            }
            v.retain(|s| s.v.iter().any(|x| x.is_some()));
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                let (x, y) = (a.v[0].unwrap_or(f64::NAN), b.v[0].unwrap_or(f64::NAN));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => {
                        let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                        if desc {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                }
            });
            Ok(V::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = arg_vector(ev, c, 0, ts)?;
            let mut names = Vec::new();
            for i in 1..nargs {
                names.push(arg_string(ev, c, i, ts)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for l in &names {
                    let (x, y) = (a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                    if x == y {
                        continue;
                    }
                    let o = natural_less(x, y);
                    return if desc { o.reverse() } else { o };
                }
                let o = a.labels.cmp(&b.labels);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(V::Vector(v))
        }
        "absent" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let labels = absent_labels(&c.args.args[0]);
            let vals: Vec<Option<f64>> = (0..n)
                .map(|st| {
                    if v.iter().any(|s| s.has(st)) {
                        None
                    } else {
                        Some(1.0)
                    }
                })
                .collect();
            if vals.iter().all(|x| x.is_none()) {
                return Ok(V::Vector(vec![]));
            }
            Ok(V::Vector(vec![VS {
                h: Vec::new(),
                labels,
                drop: false,
                v: vals,
            }]))
        }
        "absent_over_time" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            let labels = absent_labels(&c.args.args[0]);
            let vals: Vec<Option<f64>> = (0..n)
                .map(|st| {
                    if m.series.iter().any(|s| {
                        s.win[st].1 > s.win[st].0 || s.hwin.get(st).is_some_and(|w| w.1 > w.0)
                    }) {
                        None
                    } else {
                        Some(1.0)
                    }
                })
                .collect();
            if vals.iter().all(|x| x.is_none()) {
                return Ok(V::Vector(vec![]));
            }
            Ok(V::Vector(vec![VS {
                h: Vec::new(),
                labels,
                drop: false,
                v: vals,
            }]))
        }
        "rate" | "increase" | "delta" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            let is_counter = name != "delta";
            let is_rate = name == "rate";
            let range = m.range;
            let ends = m.ends.clone();
            if is_counter {
                for s in &m.series {
                    if let Some(mn) = s.labels.metric_name() {
                        if !s.drop
                            && !["_total", "_sum", "_count", "_bucket"]
                                .iter()
                                .any(|suf| mn.ends_with(suf))
                            && s.win.iter().any(|w| w.1 > w.0)
                        {
                            ev.info(format!(
                                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                                model::go_quote(mn)
                            ));
                        }
                    }
                }
            }
            let mut out = over_matrix_st(ev, &m, false, |ev, p, sts, st, s| {
                let mut overlap = false;
                let r =
                    extrapolated_rate(p, sts, ends[st], range, is_counter, is_rate, &mut overlap);
                if overlap {
                    ev.warn(format!(
                        "{ST_OVERLAP}{}",
                        model::go_quote(s.labels.metric_name().unwrap_or(""))
                    ));
                }
                r
            })?;
            // Histogram samples.
            for s in &m.series {
                if s.hpts.is_empty() {
                    continue;
                }
                let mname = s.labels.metric_name().unwrap_or("").to_string();
                let mut hv: Vec<Option<Box<FloatHistogram>>> = vec![None; ends.len()];
                let mut mixed = vec![false; ends.len()];
                for st in 0..ends.len() {
                    let (a, b) = s.hwin[st];
                    let (fa, fb) = s.win[st];
                    if b <= a {
                        continue;
                    }
                    if fb > fa {
                        mixed[st] = true;
                        ev.warn(format!(
                            "encountered a mix of histograms and floats for metric name {}",
                            model::go_quote(&mname)
                        ));
                        continue;
                    }
                    let pts = &s.hpts[a..b];
                    let sts = st_win(&s.hsts, a, b);
                    let n = pts.len();
                    // One sample is enough when its start timestamp lies in the range.
                    if n < 2 && sts.is_empty() {
                        continue;
                    }
                    let mut r = None;
                    if n > 1 {
                        let (res, warns) = histogram_rate(pts, sts, is_counter);
                        for w in warns {
                            if w == RECONCILED_SUB {
                                ev.annotate(w.to_string());
                            } else {
                                ev.warn(format!("{w}{}", model::go_quote(&mname)));
                            }
                        }
                        match res {
                            Some(x) => r = Some(x),
                            None => continue,
                        }
                    }
                    let first = &pts[0];
                    let last = &pts[n - 1];
                    let range_start = ends[st] - range;
                    let mut dur_to_start = (first.0 - range_start) as f64 / 1000.0;
                    let mut dur_to_end = (ends[st] - last.0) as f64 / 1000.0;
                    let mut sampled = (last.0 - first.0) as f64 / 1000.0;
                    let avg_between = if n > 1 { sampled / (n - 1) as f64 } else { 0.0 };
                    let threshold = avg_between * 1.1;
                    let r = match sts.first() {
                        // The first sample's start timestamp lies in the range:
                        // assume a zero sample there instead of extrapolating left.
                        Some(&st0)
                            if is_counter && st0 != 0 && st0 > range_start && st0 < first.0 =>
                        {
                            dur_to_start = 0.0;
                            sampled = (last.0 - st0) as f64 / 1000.0;
                            match r {
                                None => first.1.clone(),
                                Some(r) => match crate::hist::add(&r, &first.1, 1.0) {
                                    Ok(x) => x,
                                    Err(_) => {
                                        ev.warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}", model::go_quote(&mname)));
                                        continue;
                                    }
                                },
                            }
                        }
                        _ => {
                            let Some(r) = r else { continue };
                            if dur_to_start >= threshold {
                                dur_to_start = avg_between / 2.0;
                            }
                            if is_counter && r.count > 0.0 && first.1.count >= 0.0 {
                                let dz = sampled * (first.1.count / r.count);
                                if dz < dur_to_start {
                                    dur_to_start = dz;
                                }
                            }
                            r
                        }
                    };
                    if dur_to_end >= threshold {
                        dur_to_end = avg_between / 2.0;
                    }
                    let mut factor = if sampled != 0.0 {
                        (sampled + dur_to_start + dur_to_end) / sampled
                    } else {
                        1.0
                    };
                    if is_rate {
                        factor /= range as f64 / 1000.0;
                    }
                    let mut h = crate::hist::scale(&r, factor);
                    h.counter_reset_hint = model::CounterResetHint::Gauge;
                    hv[st] = Some(Box::new(h));
                }
                let has_any = hv.iter().any(|x| x.is_some()) || mixed.iter().any(|x| *x);
                if !has_any {
                    continue;
                }
                match out.iter_mut().find(|o| o.labels == s.labels) {
                    Some(o) => {
                        for st in 0..ends.len() {
                            if mixed[st] {
                                o.v[st] = None;
                            }
                            if hv[st].is_some() {
                                o.v[st] = None;
                            }
                        }
                        o.h = hv;
                    }
                    None => out.push(VS {
                        h: hv,
                        labels: s.labels.clone(),
                        drop: true,
                        v: vec![None; ends.len()],
                    }),
                }
            }
            out.retain(|o| o.v.iter().any(|x| x.is_some()) || o.h.iter().any(|x| x.is_some()));
            Ok(V::Vector(out))
        }
        "irate" | "idelta" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            let is_rate = name == "irate";
            if !m.series.iter().all(|s| s.hpts.is_empty()) {
                return Ok(V::Vector(over_matrix_mixed(
                    ev,
                    &m,
                    false,
                    |ev, w, _, labels| {
                        instant_value_mixed(ev, w.fl, w.hs, w.fst, w.hst, is_rate, labels)
                    },
                )?));
            }
            Ok(V::Vector(over_matrix_st(
                ev,
                &m,
                false,
                |_, p, sts, _, _| {
                    let n = p.len();
                    if n < 2 {
                        return None;
                    }
                    let (last, prev) = (p[n - 1], p[n - 2]);
                    let st_reset =
                        !sts.is_empty() && is_st_reset(sts[n - 2], prev.0, sts[n - 1], last.0);
                    let mut r = if is_rate && (last.1 < prev.1 || st_reset) {
                        last.1
                    } else {
                        last.1 - prev.1
                    };
                    let interval = last.0 - prev.0;
                    if interval == 0 {
                        return None;
                    }
                    if is_rate {
                        r /= interval as f64 / 1000.0;
                    }
                    Some(r)
                },
            )?))
        }
        "deriv" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            mixed_range_info(ev, &m);
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, _, _| {
                if p.len() < 2 {
                    return None;
                }
                Some(linear_regression(p, p[0].0).0)
            })?))
        }
        "predict_linear" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            mixed_range_info(ev, &m);
            let d = arg_scalar(ev, c, 1, ts)?;
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, st, _| {
                if p.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(p, ts[st]);
                Some(slope * d[st] + intercept)
            })?))
        }
        "resets" | "changes" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            let resets = name == "resets";
            if !m.series.iter().all(|s| s.hpts.is_empty()) {
                return Ok(V::Vector(over_matrix_mixed(
                    ev,
                    &m,
                    false,
                    |_, w, _, _| Some(Out::F(resets_changes(w.fl, w.hs, w.fst, w.hst, resets))),
                )?));
            }
            Ok(V::Vector(over_matrix_st(
                ev,
                &m,
                false,
                |_, p, sts, _, _| {
                    let mut count = 0.0;
                    if resets && !sts.is_empty() {
                        for i in 1..p.len() {
                            if p[i].1 < p[i - 1].1
                                || is_st_reset(sts[i - 1], p[i - 1].0, sts[i], p[i].0)
                            {
                                count += 1.0;
                            }
                        }
                        return Some(count);
                    }
                    for w in p.windows(2) {
                        let (a, b) = (w[0].1, w[1].1);
                        if resets {
                            if b < a {
                                count += 1.0;
                            }
                        } else if a != b && !(a.is_nan() && b.is_nan()) {
                            count += 1.0;
                        }
                    }
                    Some(count)
                },
            )?))
        }
        "avg_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "min_over_time"
        | "max_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "first_over_time"
        | "present_over_time"
        | "mad_over_time"
        | "ts_of_min_over_time"
        | "ts_of_max_over_time"
        | "ts_of_last_over_time"
        | "ts_of_first_over_time" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            let keep = name == "last_over_time" || name == "first_over_time";
            if m.series.iter().any(|s| !s.hpts.is_empty()) {
                return over_time_mixed(ev, &m, name, keep);
            }
            Ok(V::Vector(over_matrix(ev, &m, keep, |_, p, _, _| {
                Some(float_over_time(name, p))
            })?))
        }
        "quantile_over_time" => {
            // The range argument first: Prometheus evaluates a subquery there
            // before the other arguments (this orders the samples held).
            let m = arg_matrix(ev, c, 1, ts)?;
            let q = arg_scalar(ev, c, 0, ts)?;
            mixed_range_info(ev, &m);
            if let Some(&bad) = q.iter().find(|q| q.is_nan() || !(0.0..=1.0).contains(*q)) {
                if !m.series.is_empty() {
                    ev.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        format_go_float(bad)
                    ));
                }
            }
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, st, _| {
                let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
                Some(quantile(q[st], &mut vals))
            })?))
        }
        "double_exponential_smoothing" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            mixed_range_info(ev, &m);
            let sf = arg_scalar(ev, c, 1, ts)?;
            let tf = arg_scalar(ev, c, 2, ts)?;
            for st in 0..n {
                if sf[st] <= 0.0 || sf[st] >= 1.0 {
                    return err(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {:.6}",
                        sf[st]
                    ));
                }
                if tf[st] <= 0.0 || tf[st] >= 1.0 {
                    return err(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {:.6}",
                        tf[st]
                    ));
                }
            }
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, st, _| {
                if p.len() < 2 {
                    return None;
                }
                let (sf, tf) = (sf[st], tf[st]);
                let (mut s0, mut s1) = (0.0, p[0].1);
                let mut b = p[1].1 - p[0].1;
                for (i, x) in p.iter().enumerate().skip(1) {
                    let xx = sf * x.1;
                    if i > 1 {
                        b = tf * (s1 - s0) + (1.0 - tf) * b;
                    }
                    let y = (1.0 - sf) * (s1 + b);
                    s0 = s1;
                    s1 = xx + y;
                }
                Some(s1)
            })?))
        }
        "histogram_quantile" => {
            let q = arg_scalar(ev, c, 0, ts)?;
            let v = arg_vector(ev, c, 1, ts)?;
            if let Some(&bad) = q.iter().find(|q| q.is_nan() || !(0.0..=1.0).contains(*q)) {
                ev.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_go_float(bad)
                ));
            }
            let groups = classic_groups(ev, &v);
            Ok(V::Vector(hist_quantile(ev, &q, &v, groups, n)))
        }
        "histogram_quantiles" => {
            let v = arg_vector(ev, c, 0, ts)?;
            let label = arg_string(ev, c, 1, ts)?;
            let mut qs = Vec::new();
            for i in 2..nargs {
                qs.push(arg_scalar(ev, c, i, ts)?);
            }
            for q in &qs {
                if let Some(&bad) = q.iter().find(|q| q.is_nan() || !(0.0..=1.0).contains(*q)) {
                    ev.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        format_go_float(bad)
                    ));
                }
            }
            let groups = classic_groups(ev, &v);
            let mut out: Vec<VS> = Vec::new();
            for q in &qs {
                let mut text = format_go_float(q[0]);
                if !text.contains(['.', 'e', 'I', 'N']) {
                    text.push_str(".0");
                }
                for mut s in hist_quantile(ev, q, &v, groups.clone(), n) {
                    if s.labels.get(&label).is_some() {
                        return err(format!(
                            "label {} already exists in the input series",
                            model::go_quote(&label)
                        ));
                    }
                    s.labels = s.labels.with(&label, &text);
                    out.push(s);
                }
            }
            Ok(V::Vector(out))
        }
        "histogram_fraction" => {
            let lo = arg_scalar(ev, c, 0, ts)?;
            let hi = arg_scalar(ev, c, 1, ts)?;
            let v = arg_vector(ev, c, 2, ts)?;
            let native = hist_map(&v, |h, st| Some(crate::hist::fraction(lo[st], hi[st], h)));
            nan_observation_infos(ev, &v, |_, _| {
                "input to histogram_fraction has NaN observations, which are excluded from all fractions"
            });
            let mut out = Vec::new();
            let groups = classic_groups(ev, &v);
            for (key, members) in groups {
                let mut vals = Vec::with_capacity(n);
                let mut any = false;
                #[allow(clippy::needless_range_loop)]
                for st in 0..n {
                    let buckets: Vec<(f64, f64)> = members
                        .iter()
                        .filter_map(|&(i, le)| v[i].v[st].map(|x| (le, x)))
                        .collect();
                    if buckets.is_empty() {
                        vals.push(None);
                        continue;
                    }
                    any = true;
                    vals.push(Some(bucket_fraction(lo[st], hi[st], buckets)));
                }
                if any {
                    out.push(VS {
                        h: Vec::new(),
                        labels: key,
                        drop: true,
                        v: vals,
                    });
                }
            }
            Ok(V::Vector(merge_native_classic(ev, native, out)))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = arg_vector(ev, c, 0, ts)?;
            Ok(V::Vector(hist_map(&v, |h, _| {
                Some(match name {
                    "histogram_count" => h.count,
                    "histogram_sum" => h.sum,
                    "histogram_avg" => h.sum / h.count,
                    "histogram_stddev" => crate::hist::variance(h).sqrt(),
                    _ => crate::hist::variance(h),
                })
            })))
        }
        _ => err(format!("function \"{name}\" is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_timestamp_resets() {
        // Unknown, after the sample, or equal to it (OTel's unknown start): no reset.
        assert!(!is_st_reset(10, 100, 0, 200));
        assert!(!is_st_reset(10, 100, 201, 200));
        assert!(!is_st_reset(10, 100, 200, 200));
        // Before the previous sample (a cumulative series): no reset.
        assert!(!is_st_reset(10, 100, 10, 200));
        assert!(!is_st_reset(10, 100, 99, 200));
        // After the previous sample: reset.
        assert!(is_st_reset(10, 100, 101, 200));
        assert!(is_st_reset(0, 100, 199, 200));
        // At the previous sample: a delta series if the previous start is known.
        assert!(is_st_reset(50, 100, 100, 200));
        assert!(!is_st_reset(0, 100, 100, 200));
        assert!(!is_st_reset(100, 100, 100, 200));
        assert!(!is_st_reset(150, 100, 100, 200));
    }

    #[test]
    fn start_timestamp_overlaps() {
        assert!(st_overlap(0, 100, 50));
        assert!(st_overlap(10, 100, 99));
        assert!(!st_overlap(10, 100, 10)); // cumulative: same start
        assert!(!st_overlap(10, 100, 100)); // delta: starts at the previous sample
        assert!(!st_overlap(10, 100, 0)); // unknown
    }

    #[test]
    fn rate_without_start_timestamps_is_unchanged() {
        let pts = [(10_000, 3.0), (70_000, 8.0), (130_000, 2.0), (190_000, 6.0)];
        let mut o = false;
        let plain = extrapolated_rate(&pts, &[], 240_000, 300_000, true, true, &mut o);
        let zero = extrapolated_rate(&pts, &[0; 4], 240_000, 300_000, true, true, &mut o);
        assert_eq!(plain, zero);
        assert!(!o);
        // Increase 3 + 8 (reset) = 11 over 180s sampled, extrapolated by half an
        // interval (30s) to the left (the range start is 70s away, beyond the 66s
        // threshold; the zero point 49s away is further) and 50s to the end.
        let want = 11.0 * (180.0 + 30.0 + 50.0) / 180.0 / 300.0;
        assert!((plain.unwrap() - want).abs() < 1e-12, "{plain:?}");
        // One sample alone gives nothing without a start timestamp in range.
        assert_eq!(
            extrapolated_rate(&pts[..1], &[], 240_000, 300_000, true, false, &mut o),
            None
        );
        assert_eq!(
            extrapolated_rate(&pts[..1], &[5_000], 240_000, 300_000, true, false, &mut o),
            Some(3.0)
        );
    }
}
