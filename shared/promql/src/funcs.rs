//! PromQL functions.

use std::collections::HashMap;

use model::{format_go_float, Labels, MatchType, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::engine::{err, selector_matchers, Evaluator, MatrixV, V, VS};
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
            labels: s.labels,
            drop: true,
            v: s.v.into_iter().map(|x| x.map(&f)).collect(),
        })
        .collect()
}

fn map_values_step(vs: Vec<VS>, f: impl Fn(f64, usize) -> f64) -> Vec<VS> {
    vs.into_iter()
        .map(|s| VS {
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

/// Applies `f` to every series window of a range vector.
fn over_matrix(
    ev: &mut Evaluator,
    m: &MatrixV,
    keep_name: bool,
    mut f: impl FnMut(&mut Evaluator, &[(i64, f64)], usize, &Labels) -> Option<f64>,
) -> Result<Vec<VS>> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        ev.check()?;
        let mut v = Vec::with_capacity(s.win.len());
        let mut any = false;
        for (st, &(a, b)) in s.win.iter().enumerate() {
            let r = if b > a {
                f(ev, &s.pts[a..b], st, &s.labels)
            } else {
                None
            };
            any |= r.is_some();
            v.push(r);
        }
        if any {
            out.push(VS {
                labels: s.labels.clone(),
                drop: if keep_name { s.drop } else { true },
                v,
            });
        }
    }
    Ok(out)
}

fn extrapolated_rate(
    pts: &[(i64, f64)],
    end: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let range_start = end - range;
    let first = pts[0];
    let last = pts[pts.len() - 1];
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for p in &pts[1..] {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    let mut dur_to_start = (first.0 - range_start) as f64 / 1000.0;
    let mut dur_to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_between = sampled / (pts.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    if dur_to_start >= threshold {
        dur_to_start = avg_between / 2.0;
    }
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let dur_to_zero = sampled * (first.1 / result);
        if dur_to_zero < dur_to_start {
            dur_to_start = dur_to_zero;
        }
    }
    if dur_to_end >= threshold {
        dur_to_end = avg_between / 2.0;
    }
    let mut factor = (sampled + dur_to_start + dur_to_end) / sampled;
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
    let mut seen: HashMap<(&Labels, bool), usize> = HashMap::new();
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
                let v = ev.eval_vector_selector(vs, ts, true)?;
                return Ok(V::Vector(map_values(v, |x| x)));
            }
            let v = arg_vector(ev, c, 0, ts)?;
            Ok(V::Vector(map_values_step(v, |_, st| {
                ts[st] as f64 / 1000.0
            })))
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "month" | "year"
        | "days_in_month" => {
            if nargs == 0 {
                let v = ts
                    .iter()
                    .map(|&t| Some(date_part(name, t as f64 / 1000.0)))
                    .collect();
                return Ok(V::Vector(vec![VS {
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
                    if v.iter().any(|s| s.v[st].is_some()) {
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
                    if m.series.iter().any(|s| s.win[st].1 > s.win[st].0) {
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
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, st, _| {
                extrapolated_rate(p, ends[st], range, is_counter, is_rate)
            })?))
        }
        "irate" | "idelta" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            let is_rate = name == "irate";
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, _, _| {
                if p.len() < 2 {
                    return None;
                }
                let (last, prev) = (p[p.len() - 1], p[p.len() - 2]);
                let mut r = if is_rate && last.1 < prev.1 {
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
            })?))
        }
        "deriv" => {
            let m = arg_matrix(ev, c, 0, ts)?;
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, _, _| {
                if p.len() < 2 {
                    return None;
                }
                Some(linear_regression(p, p[0].0).0)
            })?))
        }
        "predict_linear" => {
            let m = arg_matrix(ev, c, 0, ts)?;
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
            Ok(V::Vector(over_matrix(ev, &m, false, |_, p, _, _| {
                let mut count = 0.0;
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
            })?))
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
            Ok(V::Vector(over_matrix(ev, &m, keep, |_, p, _, _| {
                Some(match name {
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
                            return Some(f64::NAN);
                        }
                        let med = quantile(0.5, &mut vals);
                        let mut dev: Vec<f64> = vals.iter().map(|x| (x - med).abs()).collect();
                        quantile(0.5, &mut dev)
                    }
                })
            })?))
        }
        "quantile_over_time" => {
            let q = arg_scalar(ev, c, 0, ts)?;
            let m = arg_matrix(ev, c, 1, ts)?;
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
            let mut groups: Vec<(Labels, Vec<(usize, f64)>)> = Vec::new();
            let mut gidx: HashMap<Labels, usize> = HashMap::new();
            for (i, s) in v.iter().enumerate() {
                let le_s = s.labels.get("le").unwrap_or("");
                let Some(le) = parse_go_float(le_s) else {
                    if s.v.iter().any(|x| x.is_some()) {
                        ev.warn(format!(
                            "bucket label \"le\" is missing or has a malformed value of {} for metric name {}",
                            model::go_quote(le_s),
                            model::go_quote(s.labels.metric_name().unwrap_or(""))
                        ));
                    }
                    continue;
                };
                let key = s.labels.without(&["le"]);
                let g = *gidx.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push((i, le));
            }
            if !groups.is_empty() {
                if let Some(&bad) = q.iter().find(|q| q.is_nan() || !(0.0..=1.0).contains(*q)) {
                    ev.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        format_go_float(bad)
                    ));
                }
            }
            let mut out = Vec::with_capacity(groups.len());
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
                        labels: key,
                        drop: true,
                        v: vals,
                    });
                }
            }
            Ok(V::Vector(out))
        }
        "histogram_fraction" | "histogram_quantiles" => {
            // Classic buckets: only the `le` validation is implemented so far.
            let vi = if name == "histogram_fraction" { 2 } else { 0 };
            for i in 0..nargs {
                if i != vi {
                    ev.eval(&c.args.args[i], ts)?;
                }
            }
            let v = arg_vector(ev, c, vi, ts)?;
            for s in &v {
                let le_s = s.labels.get("le").unwrap_or("");
                if parse_go_float(le_s).is_none() {
                    ev.warn(format!(
                        "bucket label \"le\" is missing or has a malformed value of {} for metric name {}",
                        model::go_quote(le_s),
                        model::go_quote(s.labels.metric_name().unwrap_or(""))
                    ));
                }
            }
            Ok(V::Vector(vec![]))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Native histograms only: float samples are ignored.
            for i in 0..nargs {
                ev.eval(&c.args.args[i], ts)?;
            }
            Ok(V::Vector(vec![]))
        }
        _ => err(format!("function \"{name}\" is not supported")),
    }
}
