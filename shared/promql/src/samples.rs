//! Prometheus's sample accounting: how many samples a query holds in memory
//! (`currentSamples`, checked against the sample limit), its peak (`peakSamples`)
//! and the total of samples it reads (`totalQueryableSamples`).
//!
//! The engine evaluates all steps of a node at once, so the figures are not
//! observed but computed from the evaluated values: every node kind applies the
//! arithmetic of the Prometheus code path that evaluates it (`evalSeries`,
//! `rangeEval` with `gatherVector`, the range-function loop over
//! `matrixIterSlice`, `rangeEvalAgg`, subqueries and `StepInvariantExpr`).

use crate::engine::HashSet;

use model::{FloatHistogram, Labels};
use promql_parser::parser::Expr;

use crate::engine::{addr, V};
use crate::{Error, Result};

/// Sample figures and timings of one query, as Prometheus reports them under
/// `stats=all`. Equality compares the sample figures only: the timings are
/// measurements of one run, not part of the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryStats {
    /// Most samples held in memory at once (Prometheus's `peakSamples`).
    pub peak_samples: u64,
    /// Samples read from storage (Prometheus's `totalQueryableSamples`).
    pub total_samples: u64,
    /// Time spent reading the selectors' series (Prometheus's
    /// `queryPreparationTime`).
    pub prepare_time: std::time::Duration,
    /// Time spent evaluating over the read series (Prometheus's `innerEvalTime`).
    pub eval_time: std::time::Duration,
}

impl PartialEq for QueryStats {
    fn eq(&self, other: &Self) -> bool {
        self.peak_samples == other.peak_samples && self.total_samples == other.total_samples
    }
}

impl Eq for QueryStats {}

/// Prometheus's `FloatHistogram.Size()`: bytes of the struct and its slices.
fn histogram_bytes(h: &FloatHistogram) -> i64 {
    let slices = h.positive_spans.len()
        + h.negative_spans.len()
        + h.positive_buckets.len()
        + h.negative_buckets.len()
        + h.custom_values.len();
    168 + 8 * slices as i64
}

/// The weight of a histogram point in a matrix (`HPoint.size()`).
pub(crate) fn hpoint_size(h: &FloatHistogram) -> i64 {
    (histogram_bytes(h) + 8) / 16
}

/// The weight of a histogram sample in a vector (`Vector.TotalSamples()`).
fn vector_hist_weight(h: &FloatHistogram) -> i64 {
    1 + histogram_bytes(h) / 16
}

/// A label set's fingerprint, to pair a function's output series with its input
/// (a cheap multiplicative hash over the label bytes, 8 at a time).
pub(crate) fn labels_key(l: &Labels) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    for x in l.iter() {
        for part in [x.name.as_bytes(), x.value.as_bytes()] {
            for c in part.chunks(8) {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
            }
            h = (h.rotate_left(5) ^ 0xff).wrapping_mul(K);
        }
    }
    h
}

/// One input series of a range function, over the counted steps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeriesProf {
    /// Largest window (points, histograms weighted).
    pub max_w: i64,
    /// The window of the last step (the buffer still held after the step loop).
    pub last_w: i64,
    /// Steps with a non-empty window.
    pub nonempty: i64,
    /// Fingerprint of the series' labels.
    pub key: u64,
}

/// What a matrix selector or subquery leaves for the function consuming it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeProf {
    pub series: Vec<SeriesProf>,
    /// Σ of non-empty window sizes over series and counted steps.
    pub total: i64,
    /// Σ of the first step's window sizes (a matrix selector as the query).
    pub first: i64,
    /// Samples of a subquery's result, released after the function.
    pub release: i64,
    /// Samples a subquery read, counted only when the subquery is the query.
    pub inner_total: i64,
    /// Whether this is a subquery.
    pub subquery: bool,
}

impl RangeProf {
    /// Adds one series from its per-step windows (`win`/`hwin`, first `n` steps).
    pub fn add_series(
        &mut self,
        labels: &Labels,
        win: &[(usize, usize)],
        hpts: &[(i64, FloatHistogram)],
        hwin: &[(usize, usize)],
        n: usize,
    ) {
        let pre: Vec<i64> = if hpts.is_empty() {
            Vec::new()
        } else {
            let mut p = Vec::with_capacity(hpts.len() + 1);
            let mut acc = 0;
            p.push(0);
            for (_, h) in hpts {
                acc += hpoint_size(h);
                p.push(acc);
            }
            p
        };
        let mut sp = SeriesProf {
            key: labels_key(labels),
            ..Default::default()
        };
        for (st, &(a, b)) in win.iter().enumerate().take(n) {
            let mut w = b.saturating_sub(a) as i64;
            if let Some(&(ha, hb)) = hwin.get(st) {
                if hb > ha {
                    w += pre[hb] - pre[ha];
                }
            }
            if w > 0 {
                sp.nonempty += 1;
                self.total += w;
            }
            if st == 0 {
                self.first += w;
            }
            sp.max_w = sp.max_w.max(w);
            sp.last_w = w;
        }
        self.series.push(sp);
    }
}

/// Per step, the samples of a value: their number (`present`, one per sample as
/// `gatherVector` counts them) and their weight as `Vector.TotalSamples()`
/// counts them (`weight`); `total` is the value's `Matrix.TotalSamples()` over
/// the first `n` steps.
pub(crate) struct Sizes {
    pub present: Vec<i64>,
    pub weight: Vec<i64>,
    pub total: i64,
}

/// Measures `v` over `len` steps; `total` covers the first `n`.
pub(crate) fn sizes(v: &V, len: usize, n: usize) -> Sizes {
    let mut present = vec![0i64; len];
    let mut weight = vec![0i64; len];
    let mut total = 0;
    match v {
        V::Scalar(s) => {
            for st in 0..len.min(s.len()) {
                present[st] = 1;
                weight[st] = 1;
            }
            total = n.min(s.len()) as i64;
        }
        V::Vector(vs) => {
            for s in vs {
                for st in 0..len.min(s.v.len()) {
                    if s.v[st].is_some() {
                        present[st] += 1;
                        weight[st] += 1;
                        if st < n {
                            total += 1;
                        }
                    } else if let Some(h) = s.hist(st) {
                        present[st] += 1;
                        weight[st] += vector_hist_weight(h);
                        if st < n {
                            total += hpoint_size(h);
                        }
                    }
                }
            }
        }
        V::Str(_) | V::Matrix(_) => {}
    }
    Sizes {
        present,
        weight,
        total,
    }
}

/// `Matrix.TotalSamples()` of a vector value over its first `n` steps.
pub(crate) fn matrix_total(v: &V, n: usize) -> i64 {
    match v {
        V::Scalar(s) => n.min(s.len()) as i64,
        V::Vector(vs) => {
            let mut total = 0;
            for s in vs {
                for st in 0..n.min(s.v.len()) {
                    if s.v[st].is_some() {
                        total += 1;
                    } else if let Some(h) = s.hist(st) {
                        total += hpoint_size(h);
                    }
                }
            }
            total
        }
        V::Str(_) | V::Matrix(_) => 0,
    }
}

/// Per input series of a range function (`p`), the samples it output over the
/// first `n` steps. Outputs keep their input's labels and order: when every
/// input has an output they pair by position, otherwise by label fingerprint.
pub(crate) fn out_counts(p: &RangeProf, v: &V, n: usize) -> Vec<i64> {
    let V::Vector(vs) = v else {
        return vec![0; p.series.len()];
    };
    let count = |s: &crate::engine::VS| {
        let mut c = 0;
        for st in 0..n.min(s.v.len()) {
            if s.v[st].is_some() {
                c += 1;
            } else if let Some(h) = s.hist(st) {
                c += hpoint_size(h);
            }
        }
        c
    };
    if vs.len() == p.series.len() {
        return vs.iter().map(count).collect();
    }
    let outs: Vec<(u64, i64)> = vs
        .iter()
        .map(|s| (labels_key(&s.labels), count(s)))
        .collect();
    let mut res = vec![0i64; p.series.len()];
    let mut j = 0;
    for (k, sp) in p.series.iter().enumerate() {
        if j < outs.len() && outs[j].0 == sp.key {
            res[k] = outs[j].1;
            j += 1;
        }
    }
    if j < outs.len() {
        // Not in input order: pair by fingerprint alone.
        let mut by_key: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
        for (key, c) in outs {
            *by_key.entry(key).or_default() += c;
        }
        for (k, sp) in p.series.iter().enumerate() {
            res[k] = by_key.get(&sp.key).copied().unwrap_or(0);
        }
    }
    res
}

/// The running figures of one query.
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    /// Samples currently held (`currentSamples`).
    pub cur: i64,
    pub peak: i64,
    pub total: i64,
    pub max: i64,
}

impl Counter {
    pub fn new(max_samples: usize) -> Self {
        Counter {
            cur: 0,
            peak: 0,
            total: 0,
            max: i64::try_from(max_samples).unwrap_or(i64::MAX),
        }
    }

    /// Records `v` as a value held at some moment: updates the peak and fails
    /// when it is over the limit.
    pub fn reach(&mut self, v: i64) -> Result<()> {
        self.peak = self.peak.max(v);
        if v > self.max {
            return Err(Error::TooManySamples);
        }
        Ok(())
    }

    /// Updates the peak only (Prometheus's `UpdatePeak` without a check).
    pub fn see(&mut self, v: i64) {
        self.peak = self.peak.max(v);
    }

    /// Adds samples to the current count and checks the limit (adding none
    /// checks nothing, as no sample is added in Prometheus then).
    pub fn add(&mut self, n: i64) -> Result<()> {
        if n <= 0 {
            return Ok(());
        }
        self.cur += n;
        self.reach(self.cur)
    }

    pub fn stats(&self) -> QueryStats {
        QueryStats {
            peak_samples: self.peak.max(0) as u64,
            total_samples: self.total.max(0) as u64,
            ..QueryStats::default()
        }
    }
}

/// Functions whose result depends on the evaluation time even over `@`
/// arguments (Prometheus's `AtModifierUnsafeFunctions`).
fn at_unsafe(name: &str) -> bool {
    matches!(
        name,
        "days_in_month"
            | "day_of_month"
            | "day_of_week"
            | "day_of_year"
            | "hour"
            | "minute"
            | "month"
            | "year"
            | "predict_linear"
            | "time"
            | "timestamp"
    )
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        _ => e,
    }
}

/// The nodes Prometheus wraps in a `StepInvariantExpr` (its `PreprocessExpr`):
/// evaluated once at the first step and duplicated over the others.
pub(crate) fn step_invariant_nodes(e: &Expr) -> HashSet<usize> {
    let mut out = HashSet::default();
    if helper(e, &mut out).1 {
        out.insert(addr(e));
    }
    out
}

/// Returns (is step invariant, should be wrapped), wrapping children in `out`.
fn helper(e: &Expr, out: &mut HashSet<usize>) -> (bool, bool) {
    match e {
        Expr::VectorSelector(vs) => (vs.at.is_some(), vs.at.is_some()),
        Expr::Aggregate(a) => helper(unparen(&a.expr), out),
        Expr::Binary(b) => {
            let (li, lw) = helper(&b.lhs, out);
            let (ri, rw) = helper(&b.rhs, out);
            if li && ri {
                return (true, true);
            }
            if lw {
                out.insert(addr(b.lhs.as_ref()));
            }
            if rw {
                out.insert(addr(b.rhs.as_ref()));
            }
            (false, false)
        }
        Expr::Call(c) => {
            let mut inv = !at_unsafe(c.func.name);
            let mut wrap = Vec::with_capacity(c.args.args.len());
            for a in &c.args.args {
                let a = unparen(a);
                let (i, w) = helper(a, out);
                inv &= i;
                wrap.push((addr(a), w));
            }
            if inv {
                return (true, true);
            }
            for (k, w) in wrap {
                if w {
                    out.insert(k);
                }
            }
            (false, false)
        }
        Expr::MatrixSelector(ms) => (ms.vs.at.is_some(), false),
        Expr::Subquery(sq) => {
            let (i, _) = helper(&sq.expr, out);
            if i {
                out.insert(addr(sq.expr.as_ref()));
            }
            (sq.at.is_some(), sq.at.is_some())
        }
        Expr::Paren(p) => helper(&p.expr, out),
        Expr::Unary(u) => helper(&u.expr, out),
        Expr::StringLiteral(_) | Expr::NumberLiteral(_) => (true, false),
        Expr::Extension(_) => (false, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Span;

    #[test]
    fn stats_equality_ignores_timings() {
        let a = QueryStats {
            peak_samples: 3,
            total_samples: 2,
            prepare_time: std::time::Duration::from_millis(1),
            eval_time: std::time::Duration::from_millis(2),
        };
        let b = QueryStats {
            peak_samples: 3,
            total_samples: 2,
            ..QueryStats::default()
        };
        assert_eq!(a, b);
        assert_ne!(
            a,
            QueryStats {
                peak_samples: 4,
                ..b
            }
        );
        assert_ne!(
            a,
            QueryStats {
                total_samples: 1,
                ..b
            }
        );
    }

    fn hist(buckets: usize) -> FloatHistogram {
        FloatHistogram {
            schema: 1,
            positive_spans: vec![Span {
                offset: 0,
                length: buckets as u32,
            }],
            positive_buckets: vec![1.0; buckets],
            ..Default::default()
        }
    }

    #[test]
    fn histogram_weights_are_prometheus_sizes() {
        // 168 + 8 (span) + 32 (buckets) = 208 bytes: an HPoint weighs
        // (208 + 8) / 16 = 13 (TestQueryStatistics), a vector sample 1 + 208 / 16.
        assert_eq!(hpoint_size(&hist(4)), 13);
        assert_eq!(vector_hist_weight(&hist(4)), 14);
        assert_eq!(hpoint_size(&FloatHistogram::default()), 11);
    }

    #[test]
    fn counter_checks_the_limit_only_when_adding() {
        let mut c = Counter::new(3);
        c.add(3).expect("at the limit");
        assert_eq!(c.add(1), Err(Error::TooManySamples));
        assert_eq!(c.peak, 4);
        let mut c = Counter::new(0);
        c.cur = 5;
        c.add(0).expect("nothing added");
        assert_eq!(c.stats().peak_samples, 0);
    }

    #[test]
    fn labels_key_tells_label_sets_apart() {
        let a = Labels::from_pairs([("__name__", "x"), ("a", "1")]);
        let b = Labels::from_pairs([("__name__", "x"), ("a", "2")]);
        let c = Labels::from_pairs([("__name__", "x1"), ("a", "")]);
        assert_eq!(labels_key(&a), labels_key(&a.clone()));
        assert_ne!(labels_key(&a), labels_key(&b));
        assert_ne!(labels_key(&a), labels_key(&c));
    }

    fn wrapped(q: &str) -> Vec<String> {
        let e = promql_parser::parser::parse(q).expect("parses");
        let set = step_invariant_nodes(&e);
        let mut out = Vec::new();
        crate::engine::walk(&e, &mut |x| {
            if set.contains(&addr(x)) {
                out.push(x.to_string());
            }
        });
        out
    }

    #[test]
    fn step_invariant_nodes_follow_preprocess_expr() {
        // The whole query when all of it is invariant.
        assert_eq!(
            wrapped("sum(rate(x[5m] @ 100))"),
            ["sum(rate(x[5m] @ 100.000))"]
        );
        // Number literals and matrix selectors are never wrapped themselves.
        assert!(wrapped("1").is_empty());
        assert!(wrapped("rate(x[5m])").is_empty());
        // One side of a binary operation.
        assert_eq!(wrapped("x + y @ 10"), ["y @ 10.000"]);
        // Arguments of functions that depend on the evaluation time.
        assert_eq!(wrapped("timestamp(x @ 10)"), ["x @ 10.000"]);
        // The inside of a subquery, and the subquery with @ itself.
        assert_eq!(
            wrapped("max_over_time((x @ 10)[5m:1m]) + y"),
            ["(x @ 10.000)"]
        );
        assert_eq!(
            wrapped("max_over_time(x[5m:1m] @ 10) + y"),
            ["max_over_time(x[5m:1m] @ 10.000)"]
        );
    }
}
