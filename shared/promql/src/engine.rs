//! Planning (which data each selector needs), fetching, and step-vectorised evaluation.

/// Hash maps keyed by label sets, with a fast non-cryptographic hasher.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// Hash sets with the same hasher.
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::{is_stale_nan, FloatHistogram, Label, Labels, MatchType, Matcher, METRIC_NAME};
use promql_parser::label::MatchOp;
use promql_parser::parser::{
    self, AtModifier, BinaryExpr, Expr, LabelModifier, MatrixSelector, Offset, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};

use crate::queryable::{Queryable, SelectHints, Series};
use crate::samples::{self, Counter, RangeProf};
use crate::value::{QueryResult, RangeSeries, Sample, Value};
use crate::{Error, Result};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOpts {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta: Duration,
    /// Most samples a query may hold at once.
    pub max_samples: usize,
    /// Longest a query may run.
    pub timeout: Duration,
    /// Allow experimental functions (Prometheus's `--enable-feature=promql-experimental-functions`).
    pub enable_experimental_functions: bool,
    /// Step of a subquery written without one (`x[5m:]`).
    pub default_subquery_step: Duration,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            enable_experimental_functions: true,
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Cancels a running query when [`CancelToken::cancel`] is called.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The PromQL engine.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOpts,
}

/// One series of an instant vector evaluated over all steps.
#[derive(Debug, Clone)]
pub(crate) struct VS {
    pub labels: Labels,
    /// `__name__` is to be dropped at the end (delayed name removal).
    pub drop: bool,
    pub v: Vec<Option<f64>>,
    /// Per step, the histogram sample (empty when the series has none); a step
    /// has a float or a histogram, never both.
    pub h: Vec<Option<Box<FloatHistogram>>>,
}

impl VS {
    /// The histogram at step `st`, if any.
    pub fn hist(&self, st: usize) -> Option<&FloatHistogram> {
        self.h.get(st).and_then(|x| x.as_deref())
    }

    /// The float or histogram at step `st`.
    pub fn val(&self, st: usize) -> Option<Val<'_>> {
        match self.v[st] {
            Some(f) => Some(Val::F(f)),
            None => self.hist(st).map(Val::H),
        }
    }

    /// Whether the series has a float or histogram at step `st`.
    pub fn has(&self, st: usize) -> bool {
        self.v[st].is_some() || self.hist(st).is_some()
    }

    /// Sets the histogram at step `st`.
    pub fn set_hist(&mut self, st: usize, h: Option<FloatHistogram>) {
        if self.h.is_empty() {
            if h.is_none() {
                return;
            }
            self.h = vec![None; self.v.len()];
        }
        self.h[st] = h.map(Box::new);
    }
}

/// One series of a range vector: its points and, per step, the window of them.
#[derive(Debug, Clone)]
pub(crate) struct MS {
    pub labels: Labels,
    pub drop: bool,
    pub pts: Vec<(i64, f64)>,
    pub win: Vec<(usize, usize)>,
    /// Histogram points and, per step, their window (both empty without any).
    pub hpts: Vec<(i64, FloatHistogram)>,
    pub hwin: Vec<(usize, usize)>,
    /// Start timestamps parallel to `pts` (ms, 0 unknown), or empty when the
    /// series has none (always empty unless read straight from a selector).
    pub sts: Vec<i64>,
    /// Start timestamps parallel to `hpts`, or empty.
    pub hsts: Vec<i64>,
}

/// A range vector over all steps.
#[derive(Debug, Clone)]
pub(crate) struct MatrixV {
    pub series: Vec<MS>,
    /// Range in milliseconds.
    pub range: i64,
    /// Per step, the end of the window (evaluation time after `@` and offset).
    pub ends: Vec<i64>,
}

/// An evaluated expression, over all steps.
#[derive(Debug, Clone)]
pub(crate) enum V {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<VS>),
    Matrix(MatrixV),
}

/// What [`Evaluator::eval_vector_selector`] reports per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelOut {
    /// The sample's value.
    Value,
    /// The sample's timestamp in seconds (`timestamp()`).
    Timestamp,
    /// The sample's start timestamp in seconds, 0 when unknown (`start_timestamp()`).
    StartTimestamp,
}

/// A series' labels, name-drop flag and points.
type RawSeries = (Labels, bool, Vec<(i64, f64)>);

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Eval(msg.into()))
}

fn dur_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The matchers of a selector in the model's form.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        if !vs.matchers.matchers.iter().any(|m| m.name == METRIC_NAME) {
            out.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
    }
    if !vs.matchers.or_matchers.is_empty() {
        return err("'or' in label matchers is not supported");
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        out.push(
            Matcher::new(kind, m.name.clone(), m.value.clone())
                .map_err(|e| Error::Parse(e.to_string()))?,
        );
    }
    Ok(out)
}

pub(crate) fn addr<T>(r: &T) -> usize {
    r as *const T as usize
}

/// One selector's fetch: what and over which range.
struct Fetch {
    key: usize,
    matchers: Vec<Matcher>,
    hints: SelectHints,
}

struct Planner {
    start: i64,
    end: i64,
    step: i64,
    lookback: i64,
    sub_step: i64,
    fetches: Vec<Fetch>,
    /// Selectors read for histogram statistics (see [`stats_selectors`]).
    stats: HashSet<usize>,
    /// How many subqueries enclose the node being planned: selectors under one are
    /// evaluated at the subquery's steps, not the query's.
    subquery_depth: u32,
}

impl Planner {
    fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    fn eff_range(
        &self,
        at: &Option<AtModifier>,
        off: &Option<Offset>,
        mint: i64,
        maxt: i64,
    ) -> (i64, i64) {
        let o = offset_ms(off);
        match self.at_time(at) {
            Some(a) => (a - o, a - o),
            None => (mint - o, maxt - o),
        }
    }

    fn plan(
        &mut self,
        e: &Expr,
        mint: i64,
        maxt: i64,
        func: Option<&str>,
        grouping: Option<(&[String], bool)>,
    ) -> Result<()> {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.eff_range(&vs.at, &vs.offset, mint, maxt);
                self.push(addr(vs), vs, a - self.lookback + 1, b, 0, func, grouping)?;
                self.set_window(vs, self.lookback);
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.eff_range(&ms.vs.at, &ms.vs.offset, mint, maxt);
                let r = dur_ms(&ms.range);
                // Counter reset detection for statistics needs the sample before
                // the range, too.
                let extra = i64::from(self.stats.contains(&addr(&ms.vs)));
                self.push(
                    addr(&ms.vs),
                    &ms.vs,
                    a - r + 1 - extra,
                    b,
                    r,
                    func,
                    grouping,
                )?;
                if extra == 0 {
                    self.set_window(&ms.vs, r);
                }
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.eff_range(&sq.at, &sq.offset, mint, maxt);
                let r = dur_ms(&sq.range);
                self.subquery_depth += 1;
                let planned = self.plan(&sq.expr, a - r, b, None, None);
                self.subquery_depth -= 1;
                planned?;
            }
            Expr::Aggregate(ag) => {
                if let Some(p) = &ag.param {
                    self.plan(p, mint, maxt, None, None)?;
                }
                let g = ag.modifier.as_ref().map(|m| match m {
                    LabelModifier::Include(l) => (l.labels.as_slice(), true),
                    LabelModifier::Exclude(l) => (l.labels.as_slice(), false),
                });
                self.plan(&ag.expr, mint, maxt, Some(&ag.op.to_string()), g)?;
            }
            Expr::Unary(u) => self.plan(&u.expr, mint, maxt, None, None)?,
            Expr::Binary(b) => {
                self.plan(&b.lhs, mint, maxt, None, None)?;
                self.plan(&b.rhs, mint, maxt, None, None)?;
            }
            Expr::Paren(p) => self.plan(&p.expr, mint, maxt, func, grouping)?,
            Expr::Call(c) if c.func.name == "info" => {
                // The first argument is planned as usual; the info series are fetched
                // by the second (a label selector) over the steps' lookback, keyed
                // by the call (see `crate::info`).
                if let Some(a) = c.args.args.first() {
                    self.plan(a, mint, maxt, Some("info"), None)?;
                }
                let matchers = crate::info::info_fetch_matchers(c)?;
                self.fetches.push(Fetch {
                    key: addr(c),
                    matchers,
                    hints: SelectHints {
                        start: mint - self.lookback + 1,
                        end: maxt,
                        step: self.step,
                        range: 0,
                        func: Some("info".to_string()),
                        grouping: Vec::new(),
                        by: false,
                        window: 0,
                    },
                });
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, mint, maxt, Some(c.func.name), None)?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::Extension(_) => {
                return Err(Error::Parse(
                    "extension expressions are not supported".into(),
                ))
            }
        }
        Ok(())
    }

    /// Marks the fetch just pushed for `vs` as windowed (see
    /// [`SelectHints::window`]) when the selector is evaluated at the query's own
    /// steps and those are further apart than `window`: a source may then leave out
    /// the samples between windows.
    fn set_window(&mut self, vs: &VectorSelector, window: i64) {
        if self.step <= window || self.subquery_depth > 0 || vs.at.is_some() {
            return;
        }
        if let Some(f) = self.fetches.last_mut() {
            f.hints.window = window;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        key: usize,
        vs: &VectorSelector,
        start: i64,
        end: i64,
        range: i64,
        func: Option<&str>,
        grouping: Option<(&[String], bool)>,
    ) -> Result<()> {
        let matchers = selector_matchers(vs)?;
        self.fetches.push(Fetch {
            key,
            matchers,
            hints: SelectHints {
                start,
                end,
                step: self.step,
                range,
                func: func.map(str::to_string),
                grouping: grouping.map(|g| g.0.to_vec()).unwrap_or_default(),
                by: grouping.map(|g| g.1).unwrap_or(false),
                window: 0,
            },
        });
        Ok(())
    }
}

pub(crate) struct Evaluator {
    pub opts: EngineOpts,
    pub start: i64,
    pub end: i64,
    pub lookback: i64,
    data: HashMap<usize, Vec<Series>>,
    /// Selectors read for histogram statistics only (under `histogram_count`,
    /// `histogram_sum` or `histogram_avg`): their histogram samples get counter
    /// reset hints from explicit detection, like Prometheus's
    /// `HistogramStatsIterator`.
    stats: HashSet<usize>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    deadline: Instant,
    cancel: Option<CancelToken>,
    ticks: u32,
    /// Prometheus's sample accounting (see [`crate::samples`]).
    pub(crate) samples: Counter,
    /// Nodes Prometheus evaluates once and duplicates over the steps.
    invariant: HashSet<usize>,
    /// Inside such a node: only the first step is accounted.
    one_step: bool,
    /// End of the current evaluation (the query's, or a subquery's inner end).
    tl_end: i64,
    /// The node being evaluated is an argument of a `rangeEval` node, which
    /// counts its samples per step (`gatherVector`): it pushes them on `gather`.
    want_counts: bool,
    gather: Vec<Vec<i64>>,
    /// Windows of the matrix selectors and subqueries evaluated, for the
    /// function that consumes them.
    profiles: Vec<RangeProf>,
}

impl Evaluator {
    pub fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    pub fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }

    /// Adds an annotation given as `info:text` or `warn:text`.
    pub fn annotate(&mut self, msg: String) {
        match msg.strip_prefix("info:") {
            Some(m) => self.info(m.to_string()),
            None => self.warn(msg.strip_prefix("warn:").unwrap_or(&msg).to_string()),
        }
    }

    /// Checks the deadline and cancellation; cheap enough to call in loops.
    pub fn check(&mut self) -> Result<()> {
        self.ticks = self.ticks.wrapping_add(1);
        if !self.ticks.is_multiple_of(64) {
            return Ok(());
        }
        if let Some(c) = &self.cancel {
            if c.is_canceled() {
                return Err(Error::Canceled);
            }
        }
        if Instant::now() > self.deadline {
            return Err(Error::Timeout);
        }
        Ok(())
    }

    /// Takes the fetched series of a fetch key (see [`addr`]).
    pub fn take_data(&mut self, key: usize) -> Vec<Series> {
        self.data.remove(&key).unwrap_or_default()
    }

    /// How many of `len` steps the sample accounting covers.
    fn nsteps(&self, len: usize) -> usize {
        if self.one_step {
            len.min(1)
        } else {
            len
        }
    }

    fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    fn eff_times(&self, at: &Option<AtModifier>, off: &Option<Offset>, ts: &[i64]) -> Vec<i64> {
        let o = offset_ms(off);
        match self.at_time(at) {
            Some(a) => vec![a - o; ts.len()],
            None => ts.iter().map(|t| t - o).collect(),
        }
    }

    pub fn eval(&mut self, e: &Expr, ts: &[i64]) -> Result<V> {
        self.check()?;
        if ts.len() > 1 && !self.one_step && self.invariant.contains(&addr(e)) {
            return self.eval_invariant(e, ts);
        }
        match e {
            Expr::NumberLiteral(_) | Expr::Binary(_) => self.range_eval(e, ts),
            Expr::Call(c) => match c.func.name {
                // These hand their argument's samples through.
                "label_replace" | "label_join" | "info" => self.eval_raw(e, ts),
                _ if has_range_arg(c) => self.range_call(c, ts),
                _ => self.range_eval(e, ts),
            },
            Expr::Aggregate(a) if a.op.to_string() == "count_values" => self.range_eval(e, ts),
            Expr::Aggregate(a) => self.aggregate(e, a.op.to_string(), ts),
            _ => self.eval_raw(e, ts),
        }
    }

    /// Prometheus's `StepInvariantExpr`: the node is evaluated at the first step
    /// only, its samples read once per step, and its result duplicated.
    fn eval_invariant(&mut self, e: &Expr, ts: &[i64]) -> Result<V> {
        let n = ts.len() as i64;
        let saved_total = std::mem::take(&mut self.samples.total);
        self.one_step = true;
        let r = self.eval(e, ts);
        self.one_step = false;
        let child = self.samples.total;
        self.samples.total = saved_total + n * child;
        let v = r?;
        if !matches!(unparen(e), Expr::MatrixSelector(_) | Expr::Subquery(_)) {
            let first = samples::matrix_total(&v, 1);
            if first > 0 {
                self.samples.add((n - 1) * first)?;
            }
        }
        Ok(v)
    }

    /// A node Prometheus evaluates with `rangeEval`: its arguments' samples are
    /// gathered per step and its results accumulate.
    fn range_eval(&mut self, e: &Expr, ts: &[i64]) -> Result<V> {
        let cur0 = self.samples.cur;
        let want = std::mem::replace(&mut self.want_counts, true);
        let mark = self.gather.len();
        let r = self.eval_raw(e, ts);
        self.want_counts = want;
        let gathered: Vec<Vec<i64>> = self.gather.drain(mark..).collect();
        let v = r?;
        let n = self.nsteps(ts.len());
        let sz = samples::sizes(&v, ts.len(), n);
        let c = self.samples.cur;
        let (mut acc, mut top, mut any) = (0i64, c, false);
        for st in 0..n {
            let g: i64 = gathered.iter().filter_map(|x| x.get(st)).sum();
            let w = sz.weight[st];
            any |= g + w > 0;
            top = top.max(c + acc + g + w);
            acc += w;
        }
        if any {
            self.samples.reach(top)?;
        }
        self.samples.cur = cur0 + sz.total;
        self.samples.see(self.samples.cur);
        if want {
            self.gather.push(sz.present);
        }
        Ok(v)
    }

    /// An aggregation (`rangeEvalAgg`): no new samples while aggregating; the
    /// input is released for the result afterwards.
    fn aggregate(&mut self, e: &Expr, op: String, ts: &[i64]) -> Result<V> {
        let cur0 = self.samples.cur;
        let want = std::mem::replace(&mut self.want_counts, false);
        let r = self.eval_raw(e, ts);
        self.want_counts = want;
        let v = r?;
        let n = self.nsteps(ts.len());
        let k_family = matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio");
        if n > 1 || (n == 1 && !k_family) {
            let c = self.samples.cur;
            self.samples.reach(c)?;
        }
        let sz = samples::sizes(&v, if want { ts.len() } else { 0 }, n);
        let total = if want {
            sz.total
        } else {
            samples::matrix_total(&v, n)
        };
        self.samples.cur = cur0 + total;
        self.samples.see(self.samples.cur);
        if want {
            self.gather.push(sz.present);
        }
        Ok(v)
    }

    /// A function over a range vector: per input series, its window buffer is
    /// held while the series is processed, and the outputs accumulate.
    fn range_call(&mut self, c: &parser::Call, ts: &[i64]) -> Result<V> {
        let want = std::mem::replace(&mut self.want_counts, false);
        let mark = self.profiles.len();
        let r = crate::funcs::eval_call(self, c, ts);
        self.want_counts = want;
        let prof = if self.profiles.len() > mark {
            self.profiles.pop()
        } else {
            None
        };
        self.profiles.truncate(mark);
        let v = r?;
        let n = self.nsteps(ts.len());
        if let Some(p) = prof {
            let outs: Vec<i64> = if c.func.name == "absent_over_time" {
                p.series.iter().map(|s| s.nonempty).collect()
            } else {
                samples::out_counts(&p, &v, n)
            };
            let c0 = self.samples.cur;
            let (mut base, mut top, mut any) = (c0, c0, false);
            for (sp, &o) in p.series.iter().zip(outs.iter()) {
                if sp.max_w > 0 {
                    top = top.max(base + sp.max_w);
                    any = true;
                }
                if o > 0 {
                    top = top.max(base + sp.last_w + o);
                    any = true;
                }
                base += o;
            }
            if any {
                self.samples.reach(top)?;
            }
            self.samples.total += p.total;
            self.samples.cur = base - p.release;
        }
        if want {
            self.gather.push(samples::sizes(&v, ts.len(), n).present);
        }
        Ok(v)
    }

    /// The node's own evaluation (its accounting is done by [`Evaluator::eval`]).
    fn eval_raw(&mut self, e: &Expr, ts: &[i64]) -> Result<V> {
        match e {
            Expr::NumberLiteral(n) => Ok(V::Scalar(vec![n.val; ts.len()])),
            Expr::StringLiteral(s) => Ok(V::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::VectorSelector(vs) => Ok(V::Vector(self.eval_vector_selector(
                vs,
                ts,
                SelOut::Value,
            )?)),
            Expr::MatrixSelector(ms) => Ok(V::Matrix(self.eval_matrix_selector(ms, ts)?)),
            Expr::Subquery(sq) => Ok(V::Matrix(self.eval_subquery(sq, ts)?)),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                V::Scalar(v) => Ok(V::Scalar(v.into_iter().map(|x| -x).collect())),
                V::Vector(vs) => Ok(V::Vector(
                    vs.into_iter()
                        .map(|s| VS {
                            h: s.h
                                .into_iter()
                                .map(|x| x.map(|h| Box::new(crate::hist::scale(&h, -1.0))))
                                .collect(),
                            labels: s.labels,
                            drop: true,
                            v: s.v.into_iter().map(|x| x.map(|x| -x)).collect(),
                        })
                        .collect(),
                )),
                _ => err(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                ),
            },
            Expr::Binary(b) => self.eval_binary(b, ts),
            Expr::Aggregate(a) => crate::aggr::eval_aggregate(self, a, ts),
            Expr::Call(c) => crate::funcs::eval_call(self, c, ts),
            Expr::Extension(_) => err("extension expressions are not supported"),
        }
    }

    /// Evaluates an instant selector; `what` picks the values: the samples', or
    /// their timestamps or start timestamps in seconds (for `timestamp()` and
    /// `start_timestamp()`).
    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        ts: &[i64],
        what: SelOut,
    ) -> Result<Vec<VS>> {
        let want_ts = what != SelOut::Value;
        let eff = self.eff_times(&vs.at, &vs.offset, ts);
        let lookback = self.lookback;
        // Every selector node is evaluated once: its data is moved out.
        let mut data = self.data.remove(&addr(vs)).unwrap_or_default();
        if self.stats.contains(&addr(vs)) {
            detect_hints(&mut data);
        }
        let mut out = Vec::with_capacity(data.len());
        let mut per_step = vec![0i64; ts.len()];
        let n_acct = self.nsteps(ts.len());
        // Histogram weight beyond one sample each, over the accounted steps.
        let mut hist_extra = 0i64;
        let sorted = eff.windows(2).all(|w| w[0] <= w[1]);
        for s in data.into_iter() {
            self.check()?;
            let f = &s.floats;
            let hs = &s.histograms;
            if f.is_empty() && hs.is_empty() {
                continue;
            }
            // The time reported per sample: its own, or its start timestamp.
            let (fst, hst) = (s.float_start_timestamps(), s.histogram_start_timestamps());
            let start_ts = what == SelOut::StartTimestamp;
            let report = |pt: i64, sts: Option<&[i64]>, k: usize| -> f64 {
                if start_ts {
                    sts.map_or(0, |x| x[k]) as f64 / 1000.0
                } else {
                    pt as f64 / 1000.0
                }
            };
            let mut v = Vec::with_capacity(ts.len());
            let mut hv: Vec<Option<Box<FloatHistogram>>> = Vec::new();
            let mut any = false;
            let (mut idx, mut hidx) = (0usize, 0usize);
            let mut last_hist_t: Option<i64> = None;
            for (i, &t) in eff.iter().enumerate() {
                if sorted {
                    while idx < f.len() && f[idx].0 <= t {
                        idx += 1;
                    }
                    while hidx < hs.len() && hs[hidx].0 <= t {
                        hidx += 1;
                    }
                } else {
                    idx = f.partition_point(|p| p.0 <= t);
                    hidx = hs.partition_point(|p| p.0 <= t);
                }
                let ft = if idx == 0 { None } else { Some(f[idx - 1].0) };
                let ht = if hidx == 0 {
                    None
                } else {
                    Some(hs[hidx - 1].0)
                };
                let use_hist = match (ft, ht) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => b > a,
                };
                let mut val = None;
                let mut hval = None;
                if use_hist {
                    let (pt, h) = &hs[hidx - 1];
                    if *pt > t - lookback {
                        if want_ts {
                            val = Some(report(*pt, hst, hidx - 1));
                        } else {
                            let mut h = h.clone();
                            // A sample repeated at a later step is no new counter
                            // reset (as Prometheus does for subqueries).
                            if last_hist_t == Some(*pt)
                                && h.counter_reset_hint == model::CounterResetHint::CounterReset
                            {
                                h.counter_reset_hint = model::CounterResetHint::NotCounterReset;
                            }
                            last_hist_t = Some(*pt);
                            hval = Some(Box::new(h));
                        }
                    }
                } else if idx > 0 {
                    let (pt, pv) = f[idx - 1];
                    if pt > t - lookback && !is_stale_nan(pv) {
                        val = Some(if want_ts {
                            report(pt, fst, idx - 1)
                        } else {
                            pv
                        });
                    }
                }
                if val.is_some() || hval.is_some() {
                    any = true;
                    per_step[i] += 1;
                    if let Some(h) = &hval {
                        if i < n_acct {
                            hist_extra += samples::hpoint_size(h) - 1;
                        }
                    }
                }
                v.push(val);
                if hval.is_some() && hv.is_empty() {
                    hv = vec![None; ts.len()];
                }
                if !hv.is_empty() {
                    hv[i] = hval;
                }
            }
            if any {
                out.push(VS {
                    labels: s.labels,
                    drop: false,
                    v,
                    h: hv,
                });
            }
        }
        // `evalSeries` holds every sample it produces; `timestamp()` over a
        // selector reads them per step inside its `rangeEval` (one each).
        let read: i64 = per_step[..n_acct].iter().sum();
        if what == SelOut::Value {
            self.samples.total += read + hist_extra;
            self.samples.add(read + hist_extra)?;
        } else {
            self.samples.total += read;
        }
        if self.want_counts {
            self.gather.push(per_step);
        }
        Ok(out)
    }

    pub fn eval_matrix_selector(&mut self, ms: &MatrixSelector, ts: &[i64]) -> Result<MatrixV> {
        let eff = self.eff_times(&ms.vs.at, &ms.vs.offset, ts);
        let range = dur_ms(&ms.range);
        let mut data = self.data.remove(&addr(&ms.vs)).unwrap_or_default();
        if self.stats.contains(&addr(&ms.vs)) {
            detect_hints(&mut data);
        }
        let mut out: Vec<MS> = Vec::with_capacity(data.len());
        let mut prof = RangeProf::default();
        let n_acct = self.nsteps(ts.len());
        for s in data.into_iter() {
            self.check()?;
            let has_fst = s.float_start_timestamps().is_some();
            let has_hst = s.histogram_start_timestamps().is_some();
            let (mut pts, mut sts) = (s.floats, s.float_sts);
            if has_fst {
                retain_fresh(&mut pts, &mut sts);
            } else {
                sts = Vec::new();
                pts.retain(|p| !is_stale_nan(p.1));
            }
            let hpts = s.histograms;
            let hsts = if has_hst { s.histogram_sts } else { Vec::new() };
            if pts.is_empty() && hpts.is_empty() {
                continue;
            }
            let win = windows(&pts, &eff, range);
            let hwin = if hpts.is_empty() {
                Vec::new()
            } else {
                windows(&hpts, &eff, range)
            };
            let any = win.iter().chain(hwin.iter()).any(|w| w.1 > w.0);
            if any {
                prof.add_series(&s.labels, &win, &hpts, &hwin, n_acct);
                out.push(MS {
                    hpts,
                    hwin,
                    labels: s.labels,
                    drop: false,
                    pts,
                    win,
                    sts,
                    hsts,
                });
            }
        }
        self.profiles.push(prof);
        Ok(MatrixV {
            series: out,
            range,
            ends: eff,
        })
    }

    pub fn eval_subquery(&mut self, sq: &SubqueryExpr, ts: &[i64]) -> Result<MatrixV> {
        let eff = self.eff_times(&sq.at, &sq.offset, ts);
        let range = dur_ms(&sq.range);
        let step = match &sq.step {
            Some(s) if !s.is_zero() => dur_ms(s),
            _ => dur_ms(&self.opts.default_subquery_step),
        };
        if step <= 0 {
            return err("zero or negative subquery step");
        }
        let mint = eff.iter().copied().min().unwrap_or(0) - range;
        // Prometheus runs the inner steps up to the end of the enclosing
        // evaluation (not its last step); the steps past the last window change
        // no value, but they are samples held.
        let maxt = match self.at_time(&sq.at) {
            Some(_) => eff.iter().copied().max().unwrap_or(0),
            None => self.tl_end - offset_ms(&sq.offset),
        }
        .max(eff.iter().copied().max().unwrap_or(0));
        // The first step-aligned time after `mint` (as Prometheus).
        let mut start = step * (mint / step);
        if start <= mint {
            start += step;
        }
        let mut inner_ts = Vec::new();
        let mut t = start;
        while t <= maxt {
            inner_ts.push(t);
            t += step;
            if inner_ts.len() > 11_000 * 1000 {
                return Err(Error::TooManySamples);
            }
        }
        // The inner evaluation has its own steps; the samples it reads count
        // only when the subquery is the query itself (Prometheus counts a
        // function's windows instead).
        let saved_total = std::mem::take(&mut self.samples.total);
        let saved_one = std::mem::replace(&mut self.one_step, false);
        let saved_want = std::mem::replace(&mut self.want_counts, false);
        let saved_end = std::mem::replace(&mut self.tl_end, maxt);
        let inner = self.eval(&sq.expr, &inner_ts);
        self.tl_end = saved_end;
        let inner_total = std::mem::replace(&mut self.samples.total, saved_total);
        self.one_step = saved_one;
        self.want_counts = saved_want;
        let inner = inner?;
        let mut prof = RangeProf {
            release: samples::matrix_total(&inner, inner_ts.len()),
            inner_total,
            subquery: true,
            ..Default::default()
        };
        let n_acct = self.nsteps(ts.len());
        let series: Vec<(RawSeries, Vec<(i64, FloatHistogram)>)> = match inner {
            V::Scalar(v) => vec![(
                (
                    Labels::empty(),
                    false,
                    inner_ts.iter().copied().zip(v).collect(),
                ),
                Vec::new(),
            )],
            V::Vector(vs) => vs
                .into_iter()
                .map(|s| {
                    let pts = inner_ts
                        .iter()
                        .zip(s.v.iter())
                        .filter_map(|(t, v)| v.map(|v| (*t, v)))
                        .collect();
                    let hpts = inner_ts
                        .iter()
                        .zip(s.h)
                        .filter_map(|(t, h)| h.map(|h| (*t, *h)))
                        .collect();
                    ((s.labels, s.drop, pts), hpts)
                })
                .collect(),
            _ => return err("subquery is only allowed on instant vector or scalar"),
        };
        let mut out = Vec::new();
        for ((labels, drop, pts), hpts) in series {
            let win = windows(&pts, &eff, range);
            let hwin = if hpts.is_empty() {
                Vec::new()
            } else {
                windows(&hpts, &eff, range)
            };
            let any = win.iter().chain(hwin.iter()).any(|w| w.1 > w.0);
            if any {
                prof.add_series(&labels, &win, &hpts, &hwin, n_acct);
                // Subqueries drop start timestamps (as Prometheus does).
                out.push(MS {
                    hpts,
                    hwin,
                    labels,
                    drop,
                    pts,
                    win,
                    sts: Vec::new(),
                    hsts: Vec::new(),
                });
            }
        }
        self.profiles.push(prof);
        Ok(MatrixV {
            series: out,
            range,
            ends: eff,
        })
    }

    fn eval_binary(&mut self, b: &BinaryExpr, ts: &[i64]) -> Result<V> {
        let op = b.op.to_string();
        let return_bool = b.return_bool();
        let lhs = self.eval(&b.lhs, ts)?;
        let rhs = self.eval(&b.rhs, ts)?;
        let is_cmp = is_comparison(&op);
        match (lhs, rhs) {
            (V::Scalar(l), V::Scalar(r)) => {
                let v = l
                    .iter()
                    .zip(r.iter())
                    .map(|(a, b)| {
                        let (v, keep) = binop(&op, *a, *b);
                        if is_cmp {
                            if keep {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            v
                        }
                    })
                    .collect();
                Ok(V::Scalar(v))
            }
            (V::Vector(l), V::Scalar(r)) => Ok(V::Vector(vector_scalar(
                self,
                &op,
                l,
                &r,
                false,
                return_bool,
            ))),
            (V::Scalar(l), V::Vector(r)) => Ok(V::Vector(vector_scalar(
                self,
                &op,
                r,
                &l,
                true,
                return_bool,
            ))),
            (V::Vector(l), V::Vector(r)) => {
                Ok(V::Vector(self.vector_vector(b, &op, l, r, ts.len())?))
            }
            _ => err("binary expression must contain only scalar and instant vector types"),
        }
    }

    fn vector_vector(
        &mut self,
        b: &BinaryExpr,
        op: &str,
        lhs: Vec<VS>,
        rhs: Vec<VS>,
        n: usize,
    ) -> Result<Vec<VS>> {
        let modifier = b.modifier.clone().unwrap_or_default();
        let (on, names): (bool, Vec<String>) = match &modifier.matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, vec![]),
        };
        let sig = |l: &Labels| signature(l, on, &names);
        let lsig: Vec<Labels> = lhs.iter().map(|s| sig(&s.labels)).collect();
        let rsig: Vec<Labels> = rhs.iter().map(|s| sig(&s.labels)).collect();
        match op {
            "and" | "unless" => {
                let mut rmap: HashMap<&Labels, Vec<usize>> = HashMap::default();
                for (j, s) in rsig.iter().enumerate() {
                    rmap.entry(s).or_default().push(j);
                }
                let want = op == "and";
                let mut out = Vec::new();
                for (i, mut s) in lhs.into_iter().enumerate() {
                    let group = rmap.get(&lsig[i]);
                    let mut any = false;
                    for st in 0..n {
                        if !s.has(st) {
                            continue;
                        }
                        let present = group.is_some_and(|g| g.iter().any(|&j| rhs[j].has(st)));
                        if present != want {
                            s.v[st] = None;
                            if !s.h.is_empty() {
                                s.h[st] = None;
                            }
                        } else {
                            any = true;
                        }
                    }
                    if any {
                        out.push(s);
                    }
                }
                Ok(out)
            }
            "or" => {
                let mut lmap: HashMap<&Labels, Vec<usize>> = HashMap::default();
                for (i, s) in lsig.iter().enumerate() {
                    lmap.entry(s).or_default().push(i);
                }
                let mut extra = Vec::new();
                for (j, s) in rhs.iter().enumerate() {
                    let group = lmap.get(&rsig[j]);
                    let mut v = s.v.clone();
                    let mut h = s.h.clone();
                    let mut any = false;
                    for st in 0..v.len() {
                        if !s.has(st) {
                            continue;
                        }
                        if group.is_some_and(|g| g.iter().any(|&i| lhs[i].has(st))) {
                            v[st] = None;
                            if !h.is_empty() {
                                h[st] = None;
                            }
                        } else {
                            any = true;
                        }
                    }
                    if any {
                        extra.push(VS {
                            h,
                            labels: s.labels.clone(),
                            drop: s.drop,
                            v,
                        });
                    }
                }
                let mut out = lhs;
                out.extend(extra);
                Ok(out)
            }
            _ => {
                let return_bool = modifier.return_bool;
                let is_cmp = is_comparison(op);
                let drop_op = !is_cmp || return_bool;
                let (card, include): (u8, Vec<String>) = match &modifier.card {
                    VectorMatchCardinality::OneToOne => (0, vec![]),
                    VectorMatchCardinality::ManyToOne(l) => (1, l.labels.clone()),
                    VectorMatchCardinality::OneToMany(l) => (2, l.labels.clone()),
                    VectorMatchCardinality::ManyToMany => {
                        return err("many-to-many only allowed for set operators")
                    }
                };
                // "many" side first.
                let (many, one, msig, osig) = if card == 2 {
                    (&rhs, &lhs, &rsig, &lsig)
                } else {
                    (&lhs, &rhs, &lsig, &rsig)
                };
                let mut omap: HashMap<&Labels, Vec<usize>> = HashMap::default();
                for (j, s) in osig.iter().enumerate() {
                    omap.entry(s).or_default().push(j);
                }
                let mut out: Vec<VS> = Vec::new();
                let mut out_idx: HashMap<Labels, usize> = HashMap::default();
                // Per "many" series: its match group on the "one" side, and the
                // output series of its last (many, one) pair.
                let mgroup: Vec<Option<&Vec<usize>>> = msig.iter().map(|s| omap.get(s)).collect();
                let mut last_pair: Vec<Option<(usize, usize)>> = vec![None; many.len()];
                // Only groups with several members can produce duplicates.
                let multi_one: Vec<(&Labels, &Vec<usize>)> = omap
                    .iter()
                    .filter(|(_, g)| g.len() > 1)
                    .map(|(k, g)| (*k, g))
                    .collect();
                let mut mcount: HashMap<&Labels, usize> = HashMap::default();
                for sg in msig.iter() {
                    *mcount.entry(sg).or_default() += 1;
                }
                let many_dups = card == 0 && mcount.values().any(|&c| c > 1);
                let present = |side: &[VS]| {
                    let mut p = vec![false; n];
                    for s in side {
                        for (st, x) in p.iter_mut().enumerate() {
                            *x |= s.has(st);
                        }
                    }
                    p
                };
                let (lpresent, rpresent) = (present(&lhs), present(&rhs));
                // `fill`/`fill_left`/`fill_right`: as Prometheus, the right fill stands
                // in for a missing "one" side and the left fill for a missing "many"
                // side (in the frame where the "many" side is on the left).
                let fill = &modifier.fill_values;
                let any_fill = fill.lhs.is_some() || fill.rhs.is_some();
                for st in 0..n {
                    self.check()?;
                    if !lpresent[st] && !rpresent[st]
                        || (!lpresent[st] || !rpresent[st]) && !any_fill
                    {
                        continue;
                    }
                    // Duplicates on the "one" side.
                    for (sg, group) in multi_one.iter() {
                        let present: Vec<usize> =
                            group.iter().copied().filter(|&j| one[j].has(st)).collect();
                        if present.len() > 1 {
                            let side = if card == 2 { "left" } else { "right" };
                            return err(format!(
                                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                                sg, side, one[present[1]].labels, one[present[0]].labels
                            ));
                        }
                    }
                    let mut matched: HashSet<&Labels> = HashSet::default();
                    // Output series of filled pairs are looked up by labels.
                    const FILLED: usize = usize::MAX;
                    let mut pairs: Vec<PairIn<'_>> = Vec::new();
                    for (i, ms) in many.iter().enumerate() {
                        let Some(mv) = ms.val(st) else { continue };
                        let j = mgroup[i].and_then(|g| g.iter().copied().find(|&j| one[j].has(st)));
                        let ov = match j {
                            Some(j) => match one[j].val(st) {
                                Some(ov) => ov,
                                None => continue,
                            },
                            None => match fill.rhs {
                                Some(f) => Val::F(f),
                                None => continue,
                            },
                        };
                        if !matched.insert(&msig[i]) && many_dups {
                            return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
                        }
                        pairs.push(PairIn {
                            many: Some(i),
                            one: j,
                            mv,
                            ov,
                        });
                    }
                    if let Some(f) = fill.lhs {
                        for (j, os) in one.iter().enumerate() {
                            let Some(ov) = os.val(st) else { continue };
                            if matched.contains(&osig[j]) {
                                continue;
                            }
                            pairs.push(PairIn {
                                many: None,
                                one: Some(j),
                                mv: Val::F(f),
                                ov,
                            });
                        }
                    }
                    for p in pairs {
                        let (mv, ov) = (p.mv, p.ov);
                        let (lv, rv) = if card == 2 { (ov, mv) } else { (mv, ov) };
                        let mut note = None;
                        let res = elem_binop_ann(op, lv, rv, &mut note);
                        if let Some(m) = note {
                            self.info(m);
                        }
                        let (mut value, mut hvalue, mut keep) = match res {
                            Ok(x) => x,
                            Err(msg) => {
                                self.annotate(msg);
                                continue;
                            }
                        };
                        if return_bool {
                            value = if keep { 1.0 } else { 0.0 };
                            hvalue = None;
                            keep = true;
                        }
                        if !keep {
                            continue;
                        }
                        let cached = match (p.many, p.one) {
                            (Some(i), Some(j)) => last_pair[i].filter(|x| x.0 == j).map(|x| x.1),
                            _ => None,
                        };
                        let oi = match cached {
                            Some(k) => k,
                            None => {
                                // A filled side has only the match group's labels.
                                let (ml, ol): (&Labels, &Labels) = match (p.many, p.one) {
                                    (Some(i), Some(j)) => (&many[i].labels, &one[j].labels),
                                    (Some(i), None) => (&many[i].labels, &msig[i]),
                                    (None, Some(j)) => (&osig[j], &one[j].labels),
                                    (None, None) => unreachable!("a pair has a side"),
                                };
                                let labels = result_metric(ml, ol, card, on, &names, &include);
                                let k = match out_idx.get(&labels) {
                                    Some(&k) => k,
                                    None => {
                                        out.push(VS {
                                            h: Vec::new(),
                                            labels: labels.clone(),
                                            drop: false,
                                            v: vec![None; n],
                                        });
                                        out_idx.insert(labels, out.len() - 1);
                                        out.len() - 1
                                    }
                                };
                                if let Some(i) = p.many {
                                    last_pair[i] = Some((p.one.unwrap_or(FILLED), k));
                                }
                                k
                            }
                        };
                        if out[oi].has(st) {
                            if card == 0 {
                                return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
                            }
                            return err("multiple matches for labels: grouping labels must ensure unique matches");
                        }
                        if hvalue.is_some() {
                            out[oi].set_hist(st, hvalue);
                        } else {
                            out[oi].v[st] = Some(value);
                        }
                        let side_drop = match (p.many, p.one) {
                            (Some(i), _) => many[i].drop,
                            (None, Some(j)) => one[j].drop,
                            (None, None) => false,
                        };
                        out[oi].drop |= drop_op || side_drop;
                    }
                }
                Ok(out)
            }
        }
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        _ => e,
    }
}

/// Whether a call takes a range vector (Prometheus's `matrixArg`).
fn has_range_arg(c: &parser::Call) -> bool {
    c.args
        .args
        .iter()
        .any(|a| matches!(unparen(a), Expr::MatrixSelector(_) | Expr::Subquery(_)))
}

/// One (many, one) pair of a vector-matching step; a missing side is filled.
struct PairIn<'a> {
    many: Option<usize>,
    one: Option<usize>,
    mv: Val<'a>,
    ov: Val<'a>,
}

/// Collects the selectors whose nearest enclosing histogram function is
/// `histogram_count`, `histogram_sum` or `histogram_avg` (Prometheus's
/// `detectHistogramStatsDecoding`); binary operators and subqueries start afresh.
fn stats_selectors(e: &Expr, stats: bool, out: &mut HashSet<usize>) {
    match e {
        Expr::VectorSelector(vs) if stats => {
            out.insert(addr(vs));
        }
        Expr::MatrixSelector(ms) if stats => {
            out.insert(addr(&ms.vs));
        }
        Expr::Call(c) => {
            let st = match c.func.name {
                "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                "histogram_quantile" | "histogram_fraction" | "histogram_quantiles" => false,
                _ => stats,
            };
            for a in &c.args.args {
                stats_selectors(a, st, out);
            }
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                stats_selectors(p, false, out);
            }
            stats_selectors(&a.expr, stats, out);
        }
        Expr::Paren(p) => stats_selectors(&p.expr, stats, out),
        Expr::Unary(u) => stats_selectors(&u.expr, stats, out),
        Expr::Binary(b) => {
            stats_selectors(&b.lhs, false, out);
            stats_selectors(&b.rhs, false, out);
        }
        Expr::Subquery(sq) => stats_selectors(&sq.expr, false, out),
        _ => {}
    }
}

/// Sets the unknown counter reset hints of histogram samples from explicit
/// detection against the previous sample (the first stays unknown).
fn detect_hints(data: &mut [Series]) {
    use model::CounterResetHint as H;
    for s in data.iter_mut() {
        for i in 1..s.histograms.len() {
            if s.histograms[i].1.counter_reset_hint != H::Unknown {
                continue;
            }
            let reset = crate::hist::detect_reset(&s.histograms[i].1, &s.histograms[i - 1].1);
            s.histograms[i].1.counter_reset_hint = if reset {
                H::CounterReset
            } else {
                H::NotCounterReset
            };
        }
    }
}

/// Per step, the index range of `pts` in the window `(end - range, end]`.
/// Drops the stale markers of `pts` and the start timestamps parallel to them.
fn retain_fresh(pts: &mut Vec<(i64, f64)>, sts: &mut Vec<i64>) {
    let mut k = 0;
    for i in 0..pts.len() {
        if !is_stale_nan(pts[i].1) {
            pts[k] = pts[i];
            sts[k] = sts[i];
            k += 1;
        }
    }
    pts.truncate(k);
    sts.truncate(k);
}

pub(crate) fn windows<T>(pts: &[(i64, T)], ends: &[i64], range: i64) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(ends.len());
    let sorted = ends.windows(2).all(|w| w[0] <= w[1]);
    let (mut lo, mut hi) = (0usize, 0usize);
    for &e in ends {
        let s = e - range;
        if sorted {
            while lo < pts.len() && pts[lo].0 <= s {
                lo += 1;
            }
            if hi < lo {
                hi = lo;
            }
            while hi < pts.len() && pts[hi].0 <= e {
                hi += 1;
            }
            out.push((lo, hi.max(lo)));
        } else {
            let a = pts.partition_point(|p| p.0 <= s);
            let b = pts.partition_point(|p| p.0 <= e);
            out.push((a, b.max(a)));
        }
    }
    out
}

pub(crate) fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Applies a binary operator; for comparisons, returns the left value and whether
/// the comparison holds.
pub(crate) fn binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    ev: &mut Evaluator,
    op: &str,
    vs: Vec<VS>,
    sc: &[f64],
    swap: bool,
    return_bool: bool,
) -> Vec<VS> {
    let is_cmp = is_comparison(op);
    let mut out = Vec::with_capacity(vs.len());
    for mut s in vs {
        let mut any = false;
        for (st, &scv) in sc.iter().enumerate().take(s.v.len()) {
            let Some(x) = s.val(st) else { continue };
            let (l, r) = if swap {
                (Val::F(scv), x)
            } else {
                (x, Val::F(scv))
            };
            let mut note = None;
            let res = elem_binop_ann(op, l, r, &mut note);
            if let Some(m) = note {
                ev.info(m);
            }
            let incompatible = res.is_err();
            let (mut value, mut hvalue, mut keep) = match res {
                Ok(x) => x,
                Err(msg) => {
                    ev.annotate(msg);
                    (0.0, None, false)
                }
            };
            if is_cmp && swap && !incompatible {
                match r {
                    Val::F(f) => value = f,
                    Val::H(h) => hvalue = Some(h.clone()),
                }
            }
            if return_bool && !incompatible {
                value = if keep { 1.0 } else { 0.0 };
                hvalue = None;
                keep = true;
            }
            s.v[st] = None;
            if !s.h.is_empty() {
                s.h[st] = None;
            }
            if keep {
                if hvalue.is_some() {
                    s.set_hist(st, hvalue);
                } else {
                    s.v[st] = Some(value);
                }
                any = true;
            }
        }
        if !is_cmp || return_bool {
            s.drop = true;
        }
        if any {
            out.push(s);
        }
    }
    out
}

/// One sample value: a float or a histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    F(f64),
    H(&'a FloatHistogram),
}

/// Prometheus's `vectorElemBinop`: the float or histogram result and whether to
/// keep it; `Err` carries the annotation for incompatible operands.
///
/// An info about reconciled custom buckets is put in `note`.
pub(crate) fn elem_binop_ann(
    op: &str,
    l: Val<'_>,
    r: Val<'_>,
    note: &mut Option<String>,
) -> std::result::Result<(f64, Option<FloatHistogram>, bool), String> {
    let incompatible = |a: &str, b: &str| {
        Err(format!(
            "info:incompatible sample types encountered for binary operator {}: {a} {op} {b}",
            model::go_quote(op)
        ))
    };
    match (l, r) {
        (Val::F(a), Val::F(b)) => {
            let (v, k) = binop(op, a, b);
            Ok((v, None, k))
        }
        (Val::F(a), Val::H(h)) => match op {
            "*" => Ok((0.0, Some(crate::hist::scale(h, a)), true)),
            _ => incompatible("float", "histogram"),
        },
        (Val::H(h), Val::F(b)) => match op {
            "*" => Ok((0.0, Some(crate::hist::scale(h, b)), true)),
            "/" => Ok((0.0, Some(crate::hist::div(h, b)), true)),
            _ => incompatible("histogram", "float"),
        },
        (Val::H(a), Val::H(b)) => match op {
            "+" | "-" => {
                let sign = if op == "+" { 1.0 } else { -1.0 };
                match crate::hist::add_reconcile(a, b, sign) {
                    Ok((mut h, rec)) => {
                        if rec {
                            *note = Some(format!(
                                "mismatched custom buckets were reconciled during {}",
                                if op == "+" { "addition" } else { "subtraction" }
                            ));
                        }
                        if op == "-" {
                            h.counter_reset_hint = model::CounterResetHint::Gauge;
                        }
                        Ok((0.0, Some(h), true))
                    }
                    Err(_) => Err("warn:vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\"".into()),
                }
            }
            "==" => Ok((0.0, Some(a.clone()), crate::hist::equals(a, b))),
            "!=" => Ok((0.0, Some(a.clone()), !crate::hist::equals(a, b))),
            _ => incompatible("histogram", "histogram"),
        },
    }
}

/// The labels a vector-matching operation matches on.
pub(crate) fn signature(l: &Labels, on: bool, names: &[String]) -> Labels {
    if on {
        Labels::from_sorted(
            l.iter()
                .filter(|x| names.contains(&x.name))
                .cloned()
                .collect(),
        )
    } else {
        Labels::from_sorted(
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !names.contains(&x.name))
                .cloned()
                .collect(),
        )
    }
}

fn result_metric(
    many: &Labels,
    one: &Labels,
    card: u8,
    on: bool,
    names: &[String],
    include: &[String],
) -> Labels {
    let mut v: Vec<Label> = many.iter().cloned().collect();
    if card == 0 {
        if on {
            v.retain(|l| names.contains(&l.name));
        } else {
            v.retain(|l| !names.contains(&l.name));
        }
    }
    let mut out = Labels::from_sorted(v);
    for ln in include {
        out = out.with(ln, one.get(ln).unwrap_or(""));
    }
    out
}

impl Engine {
    pub fn new(opts: EngineOpts) -> Self {
        Engine { opts }
    }

    pub fn opts(&self) -> &EngineOpts {
        &self.opts
    }

    /// Evaluates `query` at `time` (milliseconds).
    pub async fn instant_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        time: i64,
    ) -> Result<QueryResult> {
        self.run(q, query, time, time, 0, None).await
    }

    /// Evaluates `query` at every `step` from `start` to `end` (milliseconds).
    pub async fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult> {
        if step <= 0 {
            return Err(Error::Eval(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(Error::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        self.run(q, query, start, end, step, None).await
    }

    /// Like [`Engine::range_query`] (`step` 0 for an instant query) with a cancellation token.
    pub async fn query_with_cancel(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        cancel: CancelToken,
    ) -> Result<QueryResult> {
        self.run(q, query, start, end, step, Some(cancel)).await
    }

    async fn run(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        cancel: Option<CancelToken>,
    ) -> Result<QueryResult> {
        let began = Instant::now();
        let expr = crate::parse(query)?;
        check_functions(&expr, self.opts.enable_experimental_functions)?;
        let is_range = step > 0;
        if is_range {
            let t = expr.value_type();
            if t != parser::value::ValueType::Scalar && t != parser::value::ValueType::Vector {
                return Err(Error::Eval(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(t)
                )));
            }
        }
        let mut ts = Vec::new();
        if is_range {
            let mut t = start;
            while t <= end {
                ts.push(t);
                t += step;
            }
            if ts.len() > 11_000 {
                return Err(Error::Eval(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
                ));
            }
        } else {
            ts.push(start);
        }
        let mut planner = Planner {
            start,
            end,
            step,
            lookback: dur_ms(&self.opts.lookback_delta),
            sub_step: dur_ms(&self.opts.default_subquery_step),
            fetches: Vec::new(),
            stats: {
                let mut set = HashSet::default();
                stats_selectors(&expr, false, &mut set);
                set
            },
            subquery_depth: 0,
        };
        let _ = planner.sub_step;
        planner.plan(&expr, start, end, None, None)?;
        let deadline = began + self.opts.timeout;
        let futs = planner
            .fetches
            .iter()
            .map(|f| q.select(&f.matchers, &f.hints));
        let fetched = tokio::select! {
            r = futures::future::try_join_all(futs) => r?,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => return Err(Error::Timeout),
        };
        let prepared = Instant::now();
        let mut data = HashMap::default();
        for (f, series) in planner.fetches.iter().zip(fetched) {
            data.insert(f.key, series);
        }
        let mut ev = Evaluator {
            opts: self.opts.clone(),
            start,
            end,
            lookback: dur_ms(&self.opts.lookback_delta),
            data,
            stats: std::mem::take(&mut planner.stats),
            warnings: Vec::new(),
            infos: Vec::new(),
            deadline,
            cancel,
            ticks: 63,
            samples: Counter::new(self.opts.max_samples),
            invariant: samples::step_invariant_nodes(&expr),
            one_step: false,
            tl_end: end,
            want_counts: false,
            gather: Vec::new(),
            profiles: Vec::new(),
        };
        let v = ev.eval(&expr, &ts)?;
        // A range vector as the query: a matrix selector holds its windows; a
        // subquery's inner samples count.
        if let Some(p) = ev.profiles.pop() {
            if p.subquery {
                ev.samples.total += p.inner_total;
            } else {
                ev.samples.total += p.first;
                ev.samples.add(p.first)?;
            }
        }
        if is_range && is_sort_call(&expr) {
            ev.warn(
                "sort is ineffective for range queries since results are always ordered by labels"
                    .into(),
            );
        }
        let value = finish(v, &ts, is_range)?;
        let mut stats = ev.samples.stats();
        stats.prepare_time = prepared.duration_since(began);
        stats.eval_time = prepared.elapsed();
        Ok(QueryResult {
            value,
            warnings: ev.warnings,
            infos: ev.infos,
            stats,
        })
    }
}

fn type_name(t: parser::value::ValueType) -> &'static str {
    match t {
        parser::value::ValueType::Scalar => "scalar",
        parser::value::ValueType::String => "string",
        parser::value::ValueType::Vector => "instant vector",
        parser::value::ValueType::Matrix => "range vector",
    }
}

fn is_sort_call(e: &Expr) -> bool {
    let mut found = false;
    walk(e, &mut |x| {
        if let Expr::Call(c) = x {
            found |= matches!(
                c.func.name,
                "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
            );
        }
    });
    found
}

fn check_functions(e: &Expr, experimental: bool) -> Result<()> {
    let mut res = Ok(());
    walk(e, &mut |x| {
        if let Expr::Call(c) = x {
            if c.func.experimental && !experimental && res.is_ok() {
                res = Err(Error::Parse(format!(
                    "function \"{}\" is not enabled",
                    c.func.name
                )));
            }
        }
    });
    res
}

pub(crate) fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, f);
            }
        }
        _ => {}
    }
}

fn drop_name(l: &Labels) -> Labels {
    l.without(&[METRIC_NAME, "__type__", "__unit__"])
}

/// Turns the evaluated value into the query result: removes names marked for
/// removal and rejects series that then collide.
fn finish(v: V, ts: &[i64], is_range: bool) -> Result<Value> {
    let dup = || Error::Eval("vector cannot contain metrics with the same labelset".into());
    if !is_range {
        let t = ts[0];
        return Ok(match v {
            V::Scalar(s) => Value::Scalar { t, v: s[0] },
            V::Str(s) => Value::String { t, v: s },
            V::Vector(vs) => {
                let mut out = Vec::with_capacity(vs.len());
                let mut seen = HashSet::default();
                for mut s in vs {
                    let h = s.h.get_mut(0).and_then(|x| x.take()).map(|b| *b);
                    if s.v[0].is_none() && h.is_none() {
                        continue;
                    }
                    let labels = if s.drop {
                        drop_name(&s.labels)
                    } else {
                        s.labels
                    };
                    if !seen.insert(labels.clone()) {
                        return Err(dup());
                    }
                    out.push(Sample {
                        labels,
                        t,
                        v: s.v[0].unwrap_or(0.0),
                        h,
                    });
                }
                Value::Vector(out)
            }
            V::Matrix(m) => {
                let mut out: Vec<RangeSeries> = Vec::new();
                let mut seen = HashSet::default();
                for s in m.series {
                    let (a, b) = s.win[0];
                    let (ha, hb) = s.hwin.first().copied().unwrap_or((0, 0));
                    if b <= a && hb <= ha {
                        continue;
                    }
                    let labels = if s.drop {
                        drop_name(&s.labels)
                    } else {
                        s.labels
                    };
                    if !seen.insert(labels.clone()) {
                        return Err(dup());
                    }
                    out.push(RangeSeries {
                        labels,
                        floats: s.pts[a..b].to_vec(),
                        histograms: if hb > ha {
                            s.hpts[ha..hb].to_vec()
                        } else {
                            Vec::new()
                        },
                    });
                }
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        });
    }
    let mut out: Vec<RangeSeries> = Vec::new();
    match v {
        V::Scalar(s) => out.push(RangeSeries {
            labels: Labels::empty(),
            floats: ts.iter().copied().zip(s).collect(),
            histograms: Vec::new(),
        }),
        V::Vector(vs) => {
            let mut all: Vec<RangeSeries> = Vec::with_capacity(vs.len());
            for s in vs {
                let pts: Vec<(i64, f64)> = ts
                    .iter()
                    .zip(s.v.iter())
                    .filter_map(|(t, v)| v.map(|v| (*t, v)))
                    .collect();
                let hpts: Vec<(i64, FloatHistogram)> = ts
                    .iter()
                    .zip(s.h)
                    .filter_map(|(t, h)| h.map(|h| (*t, *h)))
                    .collect();
                if pts.is_empty() && hpts.is_empty() {
                    continue;
                }
                let labels = if s.drop {
                    drop_name(&s.labels)
                } else {
                    s.labels
                };
                all.push(RangeSeries {
                    labels,
                    floats: pts,
                    histograms: hpts,
                });
            }
            // Series that end up with the same labels merge, unless they collide.
            all.sort_by(|a, b| a.labels.cmp(&b.labels));
            for s in all {
                match out.last_mut() {
                    Some(prev) if prev.labels == s.labels => {
                        for p in s.floats {
                            if prev.histograms.iter().any(|h| h.0 == p.0) {
                                return Err(dup());
                            }
                            let ex = &mut prev.floats;
                            match ex.binary_search_by_key(&p.0, |x| x.0) {
                                Ok(_) => return Err(dup()),
                                Err(k) => ex.insert(k, p),
                            }
                        }
                        for p in s.histograms {
                            if prev.floats.iter().any(|f| f.0 == p.0) {
                                return Err(dup());
                            }
                            let ex = &mut prev.histograms;
                            match ex.binary_search_by_key(&p.0, |x| x.0) {
                                Ok(_) => return Err(dup()),
                                Err(k) => ex.insert(k, p),
                            }
                        }
                    }
                    _ => out.push(s),
                }
            }
        }
        _ => {
            return err("invalid expression type for range query, must be Scalar or instant Vector")
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(out))
}
