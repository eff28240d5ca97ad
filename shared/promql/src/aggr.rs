//! Aggregation operators.

use crate::engine::HashMap;

use model::{format_go_float, FloatHistogram, Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::engine::{err, Evaluator, V, VS};
use crate::funcs::{kahan_inc, quantile};
use crate::Result;

/// Group key of a series under `by`/`without`.
fn group_labels(l: &Labels, by: bool, names: &[String]) -> Labels {
    if by {
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

fn scalar_param(ev: &mut Evaluator, a: &AggregateExpr, ts: &[i64]) -> Result<Vec<f64>> {
    match &a.param {
        Some(p) => match ev.eval(p, ts)? {
            V::Scalar(v) => Ok(v),
            _ => err("expected scalar parameter"),
        },
        None => err("missing parameter"),
    }
}

fn string_param(ev: &mut Evaluator, a: &AggregateExpr, ts: &[i64]) -> Result<String> {
    match &a.param {
        Some(p) => match ev.eval(p, ts)? {
            V::Str(s) => Ok(s),
            _ => err("expected string parameter"),
        },
        None => err("missing parameter"),
    }
}

/// Go `container/heap`-compatible heap over (value, series index), ordered by `less`.
struct GoHeap<F: Fn(f64, f64) -> bool> {
    items: Vec<(f64, usize)>,
    less: F,
}

impl<F: Fn(f64, f64) -> bool> GoHeap<F> {
    fn lt(&self, i: usize, j: usize) -> bool {
        (self.less)(self.items[i].0, self.items[j].0)
    }
    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if i == j || !self.lt(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }
    fn down(&mut self, i0: usize, n: usize) -> bool {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && self.lt(j2, j1) {
                j = j2;
            }
            if !self.lt(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
        i > i0
    }
    fn push(&mut self, x: (f64, usize)) {
        self.items.push(x);
        let n = self.items.len() - 1;
        self.up(n);
    }
    fn fix0(&mut self) {
        let n = self.items.len();
        if !self.down(0, n) {
            self.up(0);
        }
    }
}

fn nan_less(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

fn nan_greater(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

pub(crate) fn eval_aggregate(ev: &mut Evaluator, a: &AggregateExpr, ts: &[i64]) -> Result<V> {
    let op = a.op.to_string();
    let n = ts.len();
    let (by, names): (bool, Vec<String>) = match &a.modifier {
        Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
        None => (true, vec![]),
    };
    // Parameters are evaluated before the input, like Prometheus.
    let mut fparam: Vec<f64> = Vec::new();
    let mut sparam = String::new();
    match op.as_str() {
        "topk" | "bottomk" | "limitk" | "quantile" | "limit_ratio" => {
            fparam = scalar_param(ev, a, ts)?
        }
        "count_values" => sparam = string_param(ev, a, ts)?,
        _ => {}
    }
    match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            for &k in &fparam {
                if k.is_nan() {
                    return err("Parameter value is NaN");
                }
                if !(-9.223372036854776e18..9.223372036854776e18).contains(&k) {
                    return err(format!(
                        "Scalar value {} overflows int64",
                        format_go_float(k)
                    ));
                }
            }
        }
        "limit_ratio" => {
            for r in fparam.iter_mut() {
                if r.is_nan() {
                    return err("Ratio value is NaN");
                }
                if *r < -1.0 || *r > 1.0 {
                    let capped = r.clamp(-1.0, 1.0);
                    ev.warn(format!(
                        "ratio value should be between -1 and 1, got {}, capping to {}",
                        format_go_float(*r),
                        format_go_float(capped)
                    ));
                    *r = capped;
                }
            }
        }
        "quantile" => {
            for &q in &fparam {
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    ev.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        format_go_float(q)
                    ));
                    break;
                }
            }
        }
        "count_values" if (sparam.is_empty() || sparam.contains('\u{fffd}')) => {
            return err(format!("invalid label name {}", model::go_quote(&sparam)));
        }
        _ => {}
    }
    let input = match ev.eval(&a.expr, ts)? {
        V::Vector(v) => v,
        _ => return err("aggregation needs an instant vector"),
    };

    // Groups, in order of first appearance.
    let mut gidx: HashMap<Labels, usize> = HashMap::default();
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    for (i, s) in input.iter().enumerate() {
        let key = group_labels(&s.labels, by, &names);
        let g = match gidx.get(&key) {
            Some(&g) => g,
            None => {
                gidx.insert(key.clone(), groups.len());
                groups.push((key, Vec::new()));
                groups.len() - 1
            }
        };
        groups[g].1.push(i);
    }

    match op.as_str() {
        "topk" | "bottomk" | "limitk" | "limit_ratio" => {
            let mut keep: Vec<Vec<bool>> = vec![vec![false; n]; input.len()];
            let mut order: Vec<usize> = Vec::new();
            for st in 0..n {
                ev.check()?;
                for (_, members) in &groups {
                    let is_limit = op == "limitk" || op == "limit_ratio";
                    if !is_limit && members.iter().any(|&i| input[i].hist(st).is_some()) {
                        ev.info(format!("ignored histogram in {op} aggregation"));
                    }
                    let present: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&i| {
                            input[i].v[st].is_some() || (is_limit && input[i].hist(st).is_some())
                        })
                        .collect();
                    let selected: Vec<usize> = match op.as_str() {
                        "limitk" => {
                            let k = fparam[st];
                            if k < 1.0 {
                                vec![]
                            } else {
                                present
                                    .iter()
                                    .copied()
                                    .take(k.min(present.len() as f64) as usize)
                                    .collect()
                            }
                        }
                        "limit_ratio" => {
                            let r = fparam[st];
                            present
                                .iter()
                                .copied()
                                .filter(|&i| {
                                    let off =
                                        input[i].labels.prometheus_hash() as f64 / u64::MAX as f64;
                                    if r >= 0.0 {
                                        off < r
                                    } else {
                                        off >= 1.0 + r
                                    }
                                })
                                .collect()
                        }
                        _ => {
                            let k = fparam[st];
                            if k < 1.0 {
                                vec![]
                            } else {
                                let k = k.min(present.len() as f64) as usize;
                                let top = op == "topk";
                                let mut h = GoHeap {
                                    items: Vec::new(),
                                    less: if top { nan_less } else { nan_greater },
                                };
                                for &i in &present {
                                    let v = input[i].v[st].unwrap_or_default();
                                    if h.items.len() < k {
                                        h.push((v, i));
                                    } else {
                                        let root = h.items[0].0;
                                        let replace = if top {
                                            root < v || (root.is_nan() && !v.is_nan())
                                        } else {
                                            root > v || (root.is_nan() && !v.is_nan())
                                        };
                                        if replace {
                                            h.items[0] = (v, i);
                                            h.fix0();
                                        }
                                    }
                                }
                                // sort.Sort(sort.Reverse(heap)): insertion sort for small inputs.
                                let mut items = h.items;
                                let less = h.less;
                                let rev = |a: f64, b: f64| less(b, a);
                                if items.len() <= 12 {
                                    for x in 1..items.len() {
                                        let mut y = x;
                                        while y > 0 && rev(items[y].0, items[y - 1].0) {
                                            items.swap(y, y - 1);
                                            y -= 1;
                                        }
                                    }
                                } else {
                                    items.sort_by(|a, b| {
                                        if rev(a.0, b.0) {
                                            std::cmp::Ordering::Less
                                        } else if rev(b.0, a.0) {
                                            std::cmp::Ordering::Greater
                                        } else {
                                            std::cmp::Ordering::Equal
                                        }
                                    });
                                }
                                items.into_iter().map(|x| x.1).collect()
                            }
                        }
                    };
                    for i in selected {
                        keep[i][st] = true;
                        if n == 1 {
                            order.push(i);
                        }
                    }
                }
            }
            let mut out = Vec::new();
            if n == 1 {
                for i in order {
                    out.push(input[i].clone());
                }
            } else {
                for (i, mut s) in input.into_iter().enumerate() {
                    let mut any = false;
                    #[allow(clippy::needless_range_loop)]
                    for st in 0..n {
                        if !keep[i][st] {
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
            }
            Ok(V::Vector(out))
        }
        "count_values" => {
            let mut out: Vec<VS> = Vec::new();
            let mut oidx: HashMap<Labels, usize> = HashMap::default();
            for st in 0..n {
                for (gl, members) in &groups {
                    for &i in members {
                        let text = match input[i].val(st) {
                            Some(crate::engine::Val::F(v)) => format_value_f(v),
                            Some(crate::engine::Val::H(h)) => h.to_string(),
                            None => continue,
                        };
                        let labels = gl.with(&sparam, &text);
                        let k = match oidx.get(&labels) {
                            Some(&k) => k,
                            None => {
                                out.push(VS {
                                    h: Vec::new(),
                                    labels: labels.clone(),
                                    drop: false,
                                    v: vec![None; n],
                                });
                                oidx.insert(labels, out.len() - 1);
                                out.len() - 1
                            }
                        };
                        out[k].v[st] = Some(out[k].v[st].unwrap_or(0.0) + 1.0);
                    }
                }
            }
            Ok(V::Vector(out))
        }
        _ => {
            let mut out = Vec::with_capacity(groups.len());
            for (gl, members) in &groups {
                ev.check()?;
                let drop = members.iter().any(|&i| input[i].drop);
                let mut v = Vec::with_capacity(n);
                let mut hv: Vec<Option<Box<FloatHistogram>>> = Vec::new();
                let mut vals: Vec<f64> = Vec::new();
                let any_hist = members.iter().any(|&i| !input[i].h.is_empty());
                for st in 0..n {
                    vals.clear();
                    vals.extend(members.iter().filter_map(|&i| input[i].v[st]));
                    let hists: Vec<&FloatHistogram> = if any_hist {
                        members.iter().filter_map(|&i| input[i].hist(st)).collect()
                    } else {
                        Vec::new()
                    };
                    if !hists.is_empty() {
                        match op.as_str() {
                            "count" | "group" => {}
                            "sum" | "avg" => {
                                if !vals.is_empty() {
                                    ev.warn(
                                        "encountered a mix of histograms and floats for aggregation"
                                            .into(),
                                    );
                                    v.push(None);
                                    continue;
                                }
                                if crate::hist::conflicting_resets(&hists) {
                                    ev.warn(
                                        "conflicting counter resets during histogram aggregation"
                                            .into(),
                                    );
                                }
                                let total = if op == "avg" {
                                    crate::hist::avg_all(&hists)
                                } else {
                                    crate::hist::sum_all(&hists)
                                };
                                let (acc, ok) = match total {
                                    Ok((x, rec)) => {
                                        if rec {
                                            ev.info("mismatched custom buckets were reconciled during aggregation".into());
                                        }
                                        (x, true)
                                    }
                                    Err(_) => (FloatHistogram::default(), false),
                                };
                                v.push(None);
                                if !ok {
                                    ev.warn("vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\"".into());
                                    continue;
                                }
                                if hv.is_empty() {
                                    hv = vec![None; n];
                                }
                                hv[st] = Some(Box::new(acc));
                                continue;
                            }
                            _ => {
                                ev.info(format!("ignored histogram in {op} aggregation"));
                            }
                        }
                    }
                    if (op == "count" || op == "group") && !hists.is_empty() {
                        vals.extend(std::iter::repeat_n(1.0, hists.len()));
                    }
                    if vals.is_empty() {
                        v.push(None);
                        continue;
                    }
                    v.push(Some(aggregate_values(&op, &vals, fparam.get(st).copied())));
                }
                if v.iter().any(|x| x.is_some()) || hv.iter().any(|x| x.is_some()) {
                    out.push(VS {
                        h: hv,
                        labels: gl.clone(),
                        drop,
                        v,
                    });
                }
            }
            Ok(V::Vector(out))
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
fn format_value_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn aggregate_values(op: &str, vals: &[f64], param: Option<f64>) -> f64 {
    match op {
        "sum" => {
            let (mut s, mut c) = (0.0, 0.0);
            for &x in vals {
                (s, c) = kahan_inc(x, s, c);
            }
            s + c
        }
        "avg" => avg(vals),
        "count" => vals.len() as f64,
        "group" => 1.0,
        "min" => {
            let mut m = vals[0];
            for &x in &vals[1..] {
                if m > x || m.is_nan() {
                    m = x;
                }
            }
            m
        }
        "max" => {
            let mut m = vals[0];
            for &x in &vals[1..] {
                if m < x || m.is_nan() {
                    m = x;
                }
            }
            m
        }
        "stddev" | "stdvar" => {
            let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &x in vals {
                count += 1.0;
                let delta = x - (mean + cmean);
                (mean, cmean) = kahan_inc(delta / count, mean, cmean);
                (aux, caux) = kahan_inc(delta * (x - (mean + cmean)), aux, caux);
            }
            let var = (aux + caux) / count;
            if op == "stddev" {
                var.sqrt()
            } else {
                var
            }
        }
        "quantile" => {
            let mut v = vals.to_vec();
            quantile(param.unwrap_or(f64::NAN), &mut v)
        }
        _ => f64::NAN,
    }
}

/// Mean with Kahan summation, switching to an incremental mean on overflow.
pub(crate) fn avg(vals: &[f64]) -> f64 {
    let (mut sum, mut c, mut mean) = (0.0, 0.0, 0.0);
    let mut incremental = false;
    let mut count = 0.0;
    for &x in vals {
        count += 1.0;
        if count == 1.0 {
            sum = x;
            continue;
        }
        if !incremental {
            let (ns, nc) = kahan_inc(x, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(x / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else if count == 1.0 {
        sum
    } else {
        sum / count + c / count
    }
}
