//! A runner for Prometheus's PromQL test scripts (`promql/promqltest/testdata/*.test`).
//!
//! Supports `load` (with the expanding value notation, `_`, `stale`, and native
//! histogram literals `{{schema:… sum:… buckets:[…] …}}` with their `{{a}}+{{b}}xN`
//! expansion), `load_with_nhcb` (classic histograms also loaded as native
//! histograms with custom buckets), start timestamp lines (`metric{..}@st <offsets>`
//! before the series' own line, or a bare `@st <offsets>` default for the rest of
//! the `load`), `clear`, `eval instant`, `eval range`, the
//! `expect` lines and the deprecated `eval_fail`/`eval_warn`/`eval_info`/
//! `eval_ordered` forms. Expected histograms compare like promqltest's
//! `compareNativeHistogram`. Which evals to skip, and which files must pass,
//! live in `conformance.yaml` beside this crate's manifest.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use model::{CounterResetHint, FloatHistogram, Labels};
use serde::Deserialize;

use crate::{Engine, EngineOpts, MemQueryable, QueryResult, Value};

/// Prometheus's `almost.Equal`.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if model::is_stale_nan(a) || model::is_stale_nan(b) {
        return model::is_stale_nan(a) && model::is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

const EPSILON: f64 = 0.000001;

/// One value of a series description.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqVal {
    Omitted,
    Float(f64),
    Stale,
    Histogram(Box<FloatHistogram>),
}

#[derive(Debug, Clone)]
struct Expect {
    msg: Option<String>,
    re: Option<regex::Regex>,
}

impl Expect {
    fn matches(&self, s: &str) -> bool {
        match (&self.msg, &self.re) {
            (Some(m), _) => m == s,
            (_, Some(r)) => r.is_match(s),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct EvalCmd {
    line: usize,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    fail: Option<Expect>,
    warn: Vec<Expect>,
    info: Vec<Expect>,
    legacy_warn: bool,
    legacy_info: bool,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    scalar: Option<f64>,
    metrics: Vec<(Labels, Vec<SeqVal>)>,
    expect_string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
    uses_histograms: bool,
}

#[derive(Debug, Clone)]
enum Cmd {
    Load {
        series: Vec<(Labels, Vec<SeqVal>)>,
        /// Per series (parallel to `series`), the start timestamp offset of each
        /// value (`None` for none); empty when the series has no `@st` line.
        sts: Vec<Vec<Option<i64>>>,
        step: i64,
        nhcb: bool,
    },
    Clear,
    Eval(Box<EvalCmd>),
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `10s`, `0`) or plain seconds into ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    if let Ok(v) = s.parse::<f64>() {
        return Some((v * 1000.0).round() as i64);
    }
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let total = model::parse_duration_ms(s)?;
    Some(if neg { -total } else { total })
}

fn unquote(s: &str) -> Option<(String, usize)> {
    let q = s.chars().next()?;
    if q != '"' && q != '\'' && q != '`' {
        return None;
    }
    let mut out = String::new();
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        if c == q {
            return Some((out, i + 1));
        }
        if c == '\\' && q != '`' {
            let (_, e) = it.next()?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut h = String::new();
                    for _ in 0..n {
                        h.push(it.next()?.1);
                    }
                    let v = u32::from_str_radix(&h, 16).ok()?;
                    if e == 'x' && v >= 0x80 {
                        out.push('\u{fffd}');
                    } else {
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                }
                c => {
                    out.push('\\');
                    out.push(c);
                }
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Parses `name{a="b", ...}`, returning the labels and the rest of the line.
fn parse_metric(s: &str) -> Option<(Labels, &str)> {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if i > 0 {
        pairs.push((model::METRIC_NAME.to_string(), s[..i].to_string()));
    }
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            let name;
            if b[i] == b'"' || b[i] == b'\'' {
                let (n, len) = unquote(&s[i..])?;
                i += len;
                name = n;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                if i < b.len() && (b[i] == b',' || b[i] == b'}') {
                    pairs.push((model::METRIC_NAME.to_string(), name));
                    continue;
                }
            } else {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                name = s[st..i].to_string();
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'=' {
                return None;
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let (v, len) = unquote(&s[i..])?;
            i += len;
            pairs.push((name, v));
        }
    } else if i == 0 {
        return None;
    }
    Some((Labels::from_pairs(pairs), &s[i..]))
}

/// Whether a `load` line gives start timestamps: its first word (the metric, or
/// nothing) ends in `@st`.
fn is_st_line(line: &str) -> bool {
    let l = line.trim();
    match l.find([' ', '\t']) {
        Some(k) => l[..k].ends_with("@st"),
        None => false,
    }
}

/// Parses `metric{..}@st <offsets>` (metric `Some`) or `@st <offsets>` (`None`).
fn parse_st_line(line: &str) -> Result<(Option<Labels>, Vec<Option<i64>>), String> {
    let l = line.trim();
    let k = l
        .find([' ', '\t'])
        .ok_or("invalid @st line: missing value sequence")?;
    let metric = l[..k].strip_suffix("@st").unwrap_or(&l[..k]);
    let offs = parse_st_sequence(&l[k + 1..]).map_err(|e| format!("invalid @st sequence: {e}"))?;
    if metric.is_empty() {
        return Ok((None, offs));
    }
    match parse_metric(metric) {
        Some((m, rest)) if rest.trim().is_empty() => Ok((Some(m), offs)),
        _ => Err(format!("invalid @st line metric {metric:?}")),
    }
}

/// Parses the offsets of an `@st` line, as promqltest does: `_` and `_xN`
/// (omitted), `*` and `*xN` (the last offset again, 1 and N+1 times), `<dur>`,
/// `<dur>xN` (N+1 times), and `<dur>+<dur>xN` / `<dur>-<dur>xN` (N+1 offsets
/// stepping by the second duration). Durations may be signed; milliseconds out.
fn parse_st_sequence(s: &str) -> Result<Vec<Option<i64>>, String> {
    let mut out: Vec<Option<i64>> = Vec::new();
    let count = |n: &str| -> Result<usize, String> {
        n.parse::<usize>()
            .map_err(|_| format!("invalid repeat count {n:?}"))
    };
    for item in s.split_whitespace() {
        let prev = out.iter().rev().find_map(|x| *x).unwrap_or(0);
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            let n = count(n)?;
            if n == 0 {
                return Err(format!("invalid ST item {item:?}: invalid repeat count"));
            }
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        if item == "*" {
            out.push(Some(prev));
            continue;
        }
        if let Some(n) = item.strip_prefix("*x") {
            out.extend(std::iter::repeat_n(Some(prev), count(n)? + 1));
            continue;
        }
        let bad = |e: String| format!("invalid ST item {item:?}: {e}");
        let (base, rest) = parse_duration_prefix(item).map_err(bad)?;
        if rest.is_empty() {
            out.push(Some(base));
            continue;
        }
        if let Some(n) = rest.strip_prefix('x') {
            out.extend(std::iter::repeat_n(Some(base), count(n).map_err(bad)? + 1));
            continue;
        }
        let neg = match rest.as_bytes()[0] {
            b'+' => false,
            b'-' => true,
            c => {
                return Err(bad(format!(
                    "unexpected character {:?} after duration",
                    c as char
                )))
            }
        };
        let (delta, rest) = parse_duration_prefix(&rest[1..])
            .map_err(|e| bad(format!("invalid step duration: {e}")))?;
        let delta = if neg { -delta } else { delta };
        let n = rest
            .strip_prefix('x')
            .ok_or_else(|| bad("expected 'x<count>' after step duration".into()))?;
        let n = count(n).map_err(bad)?;
        let mut o = base;
        for _ in 0..=n {
            out.push(Some(o));
            o += delta;
        }
    }
    Ok(out)
}

/// A signed single-unit Prometheus duration (`-30s`, `+1m`, `59999ms`, `0`) at
/// the start of `s`, in milliseconds, and the rest of `s` (which starts at the
/// first character that is neither digit nor unit letter; `x` is never a unit).
fn parse_duration_prefix(s: &str) -> Result<(i64, &str), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        None => return Err("empty duration".into()),
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let ds = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == ds {
        return Err(format!("expected digits in duration {s:?}"));
    }
    let us = i;
    while i < b.len() && b[i].is_ascii_alphabetic() && b[i] != b'x' {
        i += 1;
    }
    let digits = &s[ds..us];
    let mult: i64 = match &s[us..i] {
        "" if digits == "0" => 0,
        unit => model::duration_unit_ms(unit)
            .ok_or_else(|| format!("invalid duration {:?}", &s[ds..i]))?,
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {:?}", &s[ds..i]))?;
    let ms = n
        .checked_mul(mult)
        .ok_or_else(|| format!("duration {:?} out of range", &s[ds..i]))?;
    Ok((if neg { -ms } else { ms }, &s[i..]))
}

fn parse_number(s: &str) -> Option<f64> {
    let l = s.to_ascii_lowercase();
    if l.contains('x') {
        return None;
    }
    crate::funcs::parse_go_float(s)
}

/// Splits a value list into tokens, keeping `{{...}}` histogram literals whole.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth -= 1;
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses the inside of a `{{...}}` literal.
fn parse_histogram(body: &str) -> Option<FloatHistogram> {
    let mut h = FloatHistogram::default();
    let mut buckets: Vec<f64> = Vec::new();
    let mut n_buckets: Vec<f64> = Vec::new();
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':')?;
        let key = key.trim();
        let after = after.trim_start();
        let (val, next) = if let Some(a) = after.strip_prefix('[') {
            let end = a.find(']')?;
            (&a[..end], &a[end + 1..])
        } else {
            match after.find(char::is_whitespace) {
                Some(e) => (&after[..e], &after[e..]),
                None => (after, ""),
            }
        };
        rest = next.trim_start();
        let list = || -> Option<Vec<f64>> {
            val.split_whitespace()
                .map(crate::funcs::parse_go_float)
                .collect()
        };
        match key {
            "schema" => h.schema = val.parse().ok()?,
            "sum" => h.sum = crate::funcs::parse_go_float(val)?,
            "count" => h.count = crate::funcs::parse_go_float(val)?,
            "z_bucket" => h.zero_count = crate::funcs::parse_go_float(val)?,
            "z_bucket_w" => h.zero_threshold = crate::funcs::parse_go_float(val)?,
            "buckets" => buckets = list()?,
            "n_buckets" => n_buckets = list()?,
            "offset" => offset = val.parse().ok()?,
            "n_offset" => n_offset = val.parse().ok()?,
            "custom_values" => h.custom_values = list()?,
            "counter_reset_hint" => {
                h.counter_reset_hint = match val {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    if !buckets.is_empty() {
        h.positive_spans = vec![model::Span {
            offset,
            length: buckets.len() as u32,
        }];
        h.positive_buckets = buckets;
    }
    if !n_buckets.is_empty() {
        h.negative_spans = vec![model::Span {
            offset: n_offset,
            length: n_buckets.len() as u32,
        }];
        h.negative_buckets = n_buckets;
    }
    Some(h)
}

/// `{{a}}`, `{{a}}xN` or `{{a}}+{{b}}xN` (also `-`).
fn parse_histogram_seq(t: &str) -> Option<Vec<SeqVal>> {
    let e1 = t.find("}}")?;
    let first = parse_histogram(&t[2..e1])?;
    let rest = &t[e1 + 2..];
    if rest.is_empty() {
        return Some(vec![SeqVal::Histogram(Box::new(first))]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().ok()?;
        return Some(vec![SeqVal::Histogram(Box::new(first)); n + 1]);
    }
    let sign = match rest.as_bytes()[0] {
        b'+' => 1.0,
        b'-' => -1.0,
        _ => return None,
    };
    let inc_s = rest[1..].strip_prefix("{{")?;
    let e2 = inc_s.find("}}")?;
    let inc = parse_histogram(&inc_s[..e2])?;
    let n: usize = inc_s[e2 + 2..].strip_prefix('x')?.parse().ok()?;
    let mut out = Vec::with_capacity(n + 1);
    let mut cur = first;
    out.push(SeqVal::Histogram(Box::new(cur.clone())));
    for _ in 0..n {
        let hint = cur.counter_reset_hint;
        cur = crate::hist::add(&cur, &inc, sign).ok()?;
        cur.counter_reset_hint = hint;
        out.push(SeqVal::Histogram(Box::new(cur.clone())));
    }
    Some(out)
}

fn parse_values(s: &str) -> Option<Vec<SeqVal>> {
    let mut out = Vec::new();
    for t in tokens(s) {
        if t.starts_with("{{") {
            out.extend(parse_histogram_seq(&t)?);
            continue;
        }
        if t == "_" {
            out.push(SeqVal::Omitted);
            continue;
        }
        if let Some(n) = t.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(SeqVal::Omitted, n.parse().ok()?));
            continue;
        }
        if t == "stale" {
            out.push(SeqVal::Stale);
            continue;
        }
        if let Some(v) = parse_number(&t) {
            out.push(SeqVal::Float(v));
            continue;
        }
        // a+bxN, a-bxN, axN
        let xp = t.rfind('x')?;
        let times: usize = t[xp + 1..].parse().ok()?;
        let head = &t[..xp];
        let hb = head.as_bytes();
        let mut split = None;
        for k in (1..hb.len()).rev() {
            if (hb[k] == b'+' || hb[k] == b'-') && hb[k - 1] != b'e' && hb[k - 1] != b'E' {
                split = Some(k);
                break;
            }
        }
        let (a, d) = match split {
            Some(k) => {
                let a = parse_number(&head[..k])?;
                let d = parse_number(&head[k + 1..])?;
                (a, if hb[k] == b'-' { -d } else { d })
            }
            None => (parse_number(head)?, 0.0),
        };
        let mut v = a;
        for _ in 0..=times {
            out.push(SeqVal::Float(v));
            v += d;
        }
    }
    Some(out)
}

fn parse_expect(line: &str, cmd: &mut EvalCmd) -> Result<(), String> {
    let rest = line["expect".len()..].trim();
    let (kind, tail) = match rest.split_once(char::is_whitespace) {
        Some((k, t)) => (k, t.trim()),
        None => (rest, ""),
    };
    let exp = if tail.is_empty() {
        Expect {
            msg: None,
            re: None,
        }
    } else if let Some(m) = tail.strip_prefix("msg:") {
        Expect {
            msg: Some(m.trim().to_string()),
            re: None,
        }
    } else if let Some(r) = tail.strip_prefix("regex:") {
        let r = r.trim().trim_matches('"');
        Expect {
            msg: None,
            re: Some(regex::Regex::new(r).map_err(|e| e.to_string())?),
        }
    } else {
        return Err(format!("invalid expect line: {line}"));
    };
    match kind {
        "fail" => {
            let mut e = exp;
            if let Some(m) = &e.msg {
                e.msg = Some(m.trim_matches('"').to_string());
            }
            cmd.fail = Some(e)
        }
        "warn" => cmd.warn.push(exp),
        "info" => cmd.info.push(exp),
        "no_warn" => cmd.no_warn = true,
        "no_info" => cmd.no_info = true,
        "ordered" => cmd.ordered = true,
        _ => return Err(format!("invalid expect line: {line}")),
    }
    Ok(())
}

fn parse_file(src: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<String> = src
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l.split_whitespace().next().unwrap_or("").to_lowercase();
        if word == "clear" {
            cmds.push(Cmd::Clear);
            i += 1;
        } else if word.starts_with("load") {
            let nhcb = word == "load_with_nhcb";
            let step = parse_duration(l.split_whitespace().nth(1).unwrap_or(""))
                .ok_or_else(|| format!("line {}: bad load step", i + 1))?;
            let mut series = Vec::new();
            let mut sts = Vec::new();
            // A pending `metric@st` line (its line number, metric and offsets), and
            // the default offsets of a bare `@st` line.
            let mut pending: Option<(usize, Labels, Vec<Option<i64>>)> = None;
            let mut default_st: Vec<Option<i64>> = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                if is_st_line(&lines[i]) {
                    if let Some((l, _, _)) = &pending {
                        return Err(format!("line {l}: @st line has no following sample line"));
                    }
                    let (m, offs) =
                        parse_st_line(&lines[i]).map_err(|e| format!("line {}: {e}", i + 1))?;
                    match m {
                        None => default_st = offs,
                        Some(m) => pending = Some((i + 1, m, offs)),
                    }
                    i += 1;
                    continue;
                }
                let (m, rest) =
                    parse_metric(&lines[i]).ok_or_else(|| format!("line {}: bad series", i + 1))?;
                let vals =
                    parse_values(rest).ok_or_else(|| format!("line {}: bad values", i + 1))?;
                let offs = match pending.take() {
                    Some((l, pm, offs)) => {
                        if pm != m {
                            return Err(format!(
                                "line {l}: @st metric does not match the following sample line metric"
                            ));
                        }
                        if offs.len() != vals.len() {
                            return Err(format!(
                                "line {l}: @st line has {} values but sample line has {}",
                                offs.len(),
                                vals.len()
                            ));
                        }
                        offs
                    }
                    None if !default_st.is_empty() => (0..vals.len())
                        .map(|k| default_st[k % default_st.len()])
                        .collect(),
                    None => Vec::new(),
                };
                series.push((m, vals));
                sts.push(offs);
                i += 1;
            }
            if let Some((l, _, _)) = pending {
                return Err(format!("line {l}: @st line has no following sample line"));
            }
            cmds.push(Cmd::Load {
                series,
                sts,
                step,
                nhcb,
            });
        } else if word.starts_with("eval") {
            let line_no = i + 1;
            let mut cmd = EvalCmd {
                line: line_no,
                ..Default::default()
            };
            let modifier = word.strip_prefix("eval_").unwrap_or("");
            let rest = l[word.len()..].trim();
            if let Some(r) = rest.strip_prefix("instant") {
                let r = r.trim();
                let r = r
                    .strip_prefix("at")
                    .ok_or_else(|| format!("line {line_no}: bad eval"))?
                    .trim();
                let (t, expr) = r
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| format!("line {line_no}: bad eval"))?;
                cmd.at = parse_duration(t).ok_or_else(|| format!("line {line_no}: bad time"))?;
                cmd.expr = expr.trim().to_string();
            } else if let Some(r) = rest.strip_prefix("range") {
                let toks: Vec<&str> = r.split_whitespace().collect();
                if toks.len() < 7 || toks[0] != "from" || toks[2] != "to" || toks[4] != "step" {
                    return Err(format!("line {line_no}: bad range eval"));
                }
                let bad = || format!("line {line_no}: bad duration");
                let s = parse_duration(toks[1]).ok_or_else(bad)?;
                let e = parse_duration(toks[3]).ok_or_else(bad)?;
                let st = parse_duration(toks[5]).ok_or_else(bad)?;
                cmd.range = Some((s, e, st));
                let sp = r
                    .find(" step ")
                    .ok_or_else(|| format!("line {line_no}: bad range eval"))?
                    + 6;
                let after = r[sp..].trim_start();
                let after_step = after
                    .split_once(char::is_whitespace)
                    .map(|x| x.1)
                    .unwrap_or("");
                cmd.expr = after_step.trim().to_string();
            } else {
                return Err(format!("line {line_no}: bad eval"));
            }
            match modifier {
                "fail" => {
                    cmd.fail = Some(Expect {
                        msg: None,
                        re: None,
                    })
                }
                "warn" => cmd.legacy_warn = true,
                "info" => cmd.legacy_info = true,
                "ordered" => cmd.ordered = true,
                _ => {}
            }
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let dl = lines[i].clone();
                i += 1;
                if let Some(m) = dl.strip_prefix("expected_fail_message") {
                    cmd.fail = Some(Expect {
                        msg: Some(m.trim().to_string()),
                        re: None,
                    });
                    continue;
                }
                if let Some(m) = dl.strip_prefix("expected_fail_regexp") {
                    cmd.fail = Some(Expect {
                        msg: None,
                        re: regex::Regex::new(m.trim()).ok(),
                    });
                    continue;
                }
                if let Some(r) = dl.strip_prefix("expect range vector") {
                    let toks: Vec<&str> = r.split_whitespace().collect();
                    if toks.len() == 6 {
                        let s = parse_duration(toks[1]).unwrap_or(0);
                        let e = parse_duration(toks[3]).unwrap_or(0);
                        let st = parse_duration(toks[5]).unwrap_or(1);
                        cmd.range_vector = Some((s, e, st));
                        cmd.at = e;
                    }
                    continue;
                }
                if let Some(r) = dl.strip_prefix("expect string") {
                    let r = r.trim();
                    cmd.expect_string = unquote(r).map(|x| x.0);
                    continue;
                }
                if dl.split(' ').next() == Some("expect") {
                    parse_expect(&dl, &mut cmd).map_err(|e| format!("line {}: {e}", i))?;
                    continue;
                }
                if let Some(v) = parse_number(&dl) {
                    cmd.scalar = Some(v);
                    continue;
                }
                let (m, rest) =
                    parse_metric(&dl).ok_or_else(|| format!("line {i}: bad expected series"))?;
                let vals =
                    parse_values(rest).ok_or_else(|| format!("line {i}: bad expected values"))?;
                if vals.iter().any(|v| matches!(v, SeqVal::Histogram(_))) {
                    cmd.uses_histograms = true;
                }
                cmd.metrics.push((m, vals));
            }
            cmds.push(Cmd::Eval(Box::new(cmd)));
        } else {
            return Err(format!("line {}: invalid command {l:?}", i + 1));
        }
    }
    Ok(cmds)
}

#[derive(Default)]
struct TempHist {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: Option<f64>,
}

/// promqltest's `load_with_nhcb`: classic histogram series (`_bucket`, `_count`,
/// `_sum`) converted into native histograms with custom buckets.
fn nhcb_series(
    series: &[(Labels, Vec<SeqVal>)],
    step: i64,
) -> Vec<(Labels, Vec<(i64, FloatHistogram)>)> {
    use std::collections::BTreeMap;
    let mut groups: Vec<(Labels, BTreeMap<i64, TempHist>)> = Vec::new();
    for (labels, vals) in series {
        let name = labels.get(model::METRIC_NAME).unwrap_or("");
        let (kind, base) = if let Some(b) = name.strip_suffix("_bucket") {
            (0, b)
        } else if let Some(b) = name.strip_suffix("_count") {
            (1, b)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (2, b)
        } else {
            continue;
        };
        let mut le = 0.0;
        if kind == 0 {
            let Some(l) = labels.get("le") else { continue };
            match crate::funcs::parse_go_float(l.trim()) {
                Some(v) if !v.is_nan() => le = v,
                _ => continue,
            }
        }
        let m2 = labels.without(&["le"]).with(model::METRIC_NAME, base);
        let gi = match groups.iter().position(|g| g.0 == m2) {
            Some(i) => i,
            None => {
                groups.push((m2, BTreeMap::new()));
                groups.len() - 1
            }
        };
        for (i, v) in vals.iter().enumerate() {
            let SeqVal::Float(f) = v else { continue };
            let th = groups[gi].1.entry(i as i64 * step).or_default();
            match kind {
                0 => th.buckets.push((le, *f)),
                1 => th.count = Some(*f),
                _ => th.sum = Some(*f),
            }
        }
    }
    let mut out = Vec::new();
    for (labels, by_t) in groups {
        let mut hs = Vec::new();
        for (t, mut th) in by_t {
            th.buckets
                .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            let count = match (th.count, th.buckets.last()) {
                (Some(c), _) => c,
                (None, Some(b)) => b.1,
                (None, None) => 0.0,
            };
            if th.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                th.buckets.push((f64::INFINITY, count));
            }
            let mut h = FloatHistogram {
                schema: model::Histogram::CUSTOM_BUCKETS_SCHEMA,
                count,
                sum: th.sum.unwrap_or(0.0),
                ..Default::default()
            };
            let mut prev = 0.0;
            let mut list = Vec::new();
            for (i, (le, c)) in th.buckets.iter().enumerate() {
                if *le != f64::INFINITY {
                    h.custom_values.push(*le);
                }
                list.push((i as i32, c - prev));
                prev = *c;
            }
            let (sp, bs) = crate::hist::from_bucket_list(&list);
            h.positive_spans = sp;
            h.positive_buckets = bs;
            hs.push((t, h));
        }
        out.push((labels, hs));
    }
    out
}

/// The conformance configuration: required files and listed skips.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Files (without `.test`) that must pass entirely (minus skips).
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub skips: Vec<Skip>,
}

/// One skipped eval: by file and eval line, with the reason.
#[derive(Debug, Clone, Deserialize)]
pub struct Skip {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl Config {
    /// The configuration shipped with this crate (`conformance.yaml`).
    pub fn builtin() -> Config {
        serde_yaml_ng::from_str(include_str!("../conformance.yaml")).unwrap_or_default()
    }
}

/// Outcome of one file.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// (eval line, message) of each failure.
    pub failures: Vec<(usize, String)>,
    /// Failing evals whose data or expectation involves native histograms.
    pub histogram_failures: Vec<usize>,
}

/// The default test data directory: `../shared/promqltest/testdata` from the repo root.
pub fn default_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("PROMQLTEST_DIR") {
        return d.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promqltest/testdata")
}

/// Runs every `.test` file in `dir`.
pub fn run_dir(dir: &Path, cfg: &Config) -> std::io::Result<Vec<FileReport>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let src = std::fs::read_to_string(&f)?;
        out.push(run_file(&name, &src, cfg));
    }
    Ok(out)
}

/// Runs one test script.
pub fn run_file(name: &str, src: &str, cfg: &Config) -> FileReport {
    let mut rep = FileReport {
        name: name.to_string(),
        ..Default::default()
    };
    let cmds = match parse_file(src) {
        Ok(c) => c,
        Err(e) => {
            rep.failed = 1;
            rep.failures.push((0, format!("parse error: {e}")));
            return rep;
        }
    };
    let skips: HashMap<usize, &str> = cfg
        .skips
        .iter()
        .filter(|s| s.file == name)
        .map(|s| (s.line, s.reason.as_str()))
        .collect();
    let engine = Engine::new(EngineOpts {
        lookback_delta: Duration::from_secs(300),
        max_samples: 10_000,
        timeout: Duration::from_secs(100),
        enable_experimental_functions: true,
        default_subquery_step: Duration::from_secs(60),
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            rep.failed = 1;
            rep.failures.push((0, e.to_string()));
            return rep;
        }
    };
    let mut store = MemQueryable::new();
    let mut has_hist = false;
    for cmd in cmds {
        match cmd {
            Cmd::Clear => {
                store.clear();
                has_hist = false;
            }
            Cmd::Load {
                series,
                sts,
                step,
                nhcb,
            } => {
                if nhcb {
                    has_hist = true;
                }
                if nhcb {
                    for (labels, hs) in nhcb_series(&series, step) {
                        store.add(labels, &[], &hs);
                    }
                }
                for ((labels, vals), offs) in series.into_iter().zip(sts) {
                    let mut floats = Vec::new();
                    let mut hists = Vec::new();
                    let (mut fsts, mut hsts) = (Vec::new(), Vec::new());
                    for (i, v) in vals.iter().enumerate() {
                        let t = i as i64 * step;
                        // The start timestamp: the sample's time plus its offset.
                        let st = offs.get(i).copied().flatten().map_or(0, |o| t + o);
                        match v {
                            SeqVal::Float(f) => {
                                floats.push((t, *f));
                                fsts.push(st);
                            }
                            SeqVal::Stale => {
                                floats.push((t, f64::from_bits(model::STALE_NAN_BITS)));
                                fsts.push(st);
                            }
                            SeqVal::Histogram(h) => {
                                has_hist = true;
                                hists.push((t, (**h).clone()));
                                hsts.push(st);
                            }
                            SeqVal::Omitted => {}
                        }
                    }
                    if offs.is_empty() {
                        store.add(labels.clone(), &floats, &[]);
                        if !hists.is_empty() {
                            store.add(labels, &[], &hists);
                        }
                    } else {
                        store.add_with_start_timestamps(labels, &floats, &fsts, &hists, &hsts);
                    }
                }
            }
            Cmd::Eval(ev) => {
                if skips.contains_key(&ev.line) {
                    rep.skipped += 1;
                    continue;
                }
                let r = rt.block_on(run_eval(&engine, &store, &ev));
                match r {
                    Ok(()) => rep.passed += 1,
                    Err(e) => {
                        rep.failed += 1;
                        if has_hist || ev.uses_histograms {
                            rep.histogram_failures.push(ev.line);
                        }
                        rep.failures.push((ev.line, format!("{}: {e}", ev.expr)));
                    }
                }
            }
        }
    }
    rep
}

fn check_annotations(ev: &EvalCmd, res: &QueryResult) -> Result<(), String> {
    if ev.legacy_warn && res.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.legacy_info && res.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    for (kind, exp, got) in [
        ("warn", &ev.warn, &res.warnings),
        ("info", &ev.info, &res.infos),
    ] {
        if exp.is_empty() {
            continue;
        }
        if got.is_empty() {
            return Err(format!("expected {kind} annotations but none were found"));
        }
        for e in exp.iter() {
            if !got.iter().any(|g| e.matches(g)) {
                return Err(format!(
                    "expected {kind} annotation {:?}/{:?} not found in {got:?}",
                    e.msg, e.re
                ));
            }
        }
        for g in got.iter() {
            if !exp.iter().any(|e| e.matches(g)) {
                return Err(format!("unexpected {kind} annotation {g:?}"));
            }
        }
    }
    if ev.no_warn && !res.warnings.is_empty() {
        return Err(format!("unexpected warnings {:?}", res.warnings));
    }
    if ev.no_info && !res.infos.is_empty() {
        return Err(format!("unexpected infos {:?}", res.infos));
    }
    Ok(())
}

fn check_fail(ev: &EvalCmd, e: &crate::Error) -> Result<(), String> {
    let exp = ev
        .fail
        .as_ref()
        .ok_or_else(|| format!("unexpected error: {e}"))?;
    if exp.matches(&e.to_string()) {
        Ok(())
    } else {
        Err(format!(
            "expected error {:?}/{:?}, got {e}",
            exp.msg, exp.re
        ))
    }
}

fn compare_matrix(
    ev: &EvalCmd,
    got: &[crate::RangeSeries],
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    if ev.ordered {
        return Err("expected ordered result, but query returned a matrix".into());
    }
    if ev.scalar.is_some() {
        return Err("expected scalar result, but got matrix".into());
    }
    for w in got.windows(2) {
        if w[0].labels > w[1].labels {
            return Err("matrix results should always be sorted by labels".into());
        }
    }
    let expected: HashMap<&Labels, &Vec<SeqVal>> = ev.metrics.iter().map(|(l, v)| (l, v)).collect();
    for s in got {
        let Some(exp) = expected.get(&s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has {:?}",
                s.labels, s.floats
            ));
        };
        let mut want = Vec::new();
        let mut want_h: Vec<(i64, &FloatHistogram)> = Vec::new();
        for (i, v) in exp.iter().enumerate() {
            let t = start + i as i64 * step;
            if t > end {
                return Err(format!("expected {} points for {}, but query time range cannot return this many points", exp.len(), s.labels));
            }
            match v {
                SeqVal::Float(f) => want.push((t, *f)),
                SeqVal::Stale => want.push((t, f64::from_bits(model::STALE_NAN_BITS))),
                SeqVal::Histogram(h) => want_h.push((t, h)),
                SeqVal::Omitted => {}
            }
        }
        if want.len() != s.floats.len() {
            return Err(format!(
                "expected {} float points for {}, got {:?}",
                want.len(),
                s.labels,
                s.floats
            ));
        }
        for (w, g) in want.iter().zip(s.floats.iter()) {
            if w.0 != g.0 || !almost_equal(w.1, g.1, EPSILON) {
                return Err(format!(
                    "expected {:?} for {}, got {:?}",
                    want, s.labels, s.floats
                ));
            }
        }
        if want_h.len() != s.histograms.len() {
            return Err(format!(
                "expected {} histogram points for {}, got {}",
                want_h.len(),
                s.labels,
                s.histograms.len()
            ));
        }
        for (w, g) in want_h.iter().zip(s.histograms.iter()) {
            if w.0 != g.0 || !crate::hist::almost_equal(w.1, &g.1) {
                return Err(format!(
                    "expected histogram {} at {} for {}, got {} at {}",
                    w.1, w.0, s.labels, g.1, g.0
                ));
            }
        }
    }
    if got.len() != expected.len() {
        for l in expected.keys() {
            if !got.iter().any(|s| &&s.labels == l) {
                return Err(format!("expected metric {l} not found"));
            }
        }
    }
    Ok(())
}

fn compare_vector(ev: &EvalCmd, got: &[crate::Sample]) -> Result<(), String> {
    if ev.scalar.is_some() {
        return Err("expected scalar result, but got vector".into());
    }
    let pos: HashMap<&Labels, (usize, &Vec<SeqVal>)> = ev
        .metrics
        .iter()
        .enumerate()
        .map(|(i, (l, v))| (l, (i, v)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in got.iter().enumerate() {
        let Some((p, exp)) = pos.get(&s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has value {}",
                s.labels, s.v
            ));
        };
        if ev.ordered && *p != i {
            return Err(format!(
                "expected metric {} at position {} but was at {}",
                s.labels,
                p + 1,
                i + 1
            ));
        }
        if let Some(h) = &s.h {
            match exp.first() {
                Some(SeqVal::Histogram(w)) if crate::hist::almost_equal(w, h) => {}
                Some(SeqVal::Histogram(w)) => {
                    return Err(format!("expected {w} for {} but got {h}", s.labels))
                }
                _ => {
                    return Err(format!(
                        "expected float value for {} but got histogram {h}",
                        s.labels
                    ))
                }
            }
            seen.insert(&s.labels);
            continue;
        }
        match exp.first() {
            Some(SeqVal::Float(f)) => {
                if !almost_equal(*f, s.v, EPSILON) {
                    return Err(format!("expected {f} for {} but got {}", s.labels, s.v));
                }
            }
            Some(SeqVal::Stale) => {
                if !model::is_stale_nan(s.v) {
                    return Err("expected stale".into());
                }
            }
            _ => {
                return Err(format!(
                    "expected histogram/none for {} but got float {}",
                    s.labels, s.v
                ))
            }
        }
        seen.insert(&s.labels);
    }
    for (l, _) in &ev.metrics {
        if !seen.contains(l) {
            return Err(format!("expected metric {l} not found"));
        }
    }
    Ok(())
}

fn compare(ev: &EvalCmd, v: &Value) -> Result<(), String> {
    match v {
        Value::Matrix(m) => {
            let (s, e, st) = match (ev.range, ev.range_vector) {
                (Some(r), _) => r,
                (None, Some(r)) => r,
                _ => return Err(format!("unexpected matrix result {m:?}")),
            };
            compare_matrix(ev, m, s, e, st)
        }
        Value::Vector(vs) => compare_vector(ev, vs),
        Value::Scalar { v, .. } => match ev.scalar {
            Some(want) if almost_equal(want, *v, EPSILON) => Ok(()),
            Some(want) => Err(format!("expected scalar {want} but got {v}")),
            None => Err(format!(
                "expected vector or matrix result, but got scalar {v}"
            )),
        },
        Value::String { v, .. } => match &ev.expect_string {
            Some(s) if s == v => Ok(()),
            _ => Err(format!("unexpected string {v:?}")),
        },
    }
}

async fn run_eval(engine: &Engine, store: &MemQueryable, ev: &EvalCmd) -> Result<(), String> {
    if let Some((s, e, st)) = ev.range {
        let res = engine.range_query(store, &ev.expr, s, e, st).await;
        return match res {
            Err(e) => check_fail(ev, &e),
            Ok(_) if ev.fail.is_some() => Err("expected error but got none".into()),
            Ok(r) => {
                check_annotations(ev, &r)?;
                compare(ev, &r.value)
            }
        };
    }
    let res = engine.instant_query(store, &ev.expr, ev.at).await;
    let r = match res {
        Err(e) => return check_fail(ev, &e),
        Ok(_) if ev.fail.is_some() => return Err("expected error but got none".into()),
        Ok(r) => r,
    };
    check_annotations(ev, &r)?;
    compare(ev, &r.value)?;
    if ev.range_vector.is_some() || ev.expect_string.is_some() || ev.ordered {
        return Ok(());
    }
    let ctx_re = regex::Regex::new(r"(start|end|range|step)\(\)").map_err(|e| e.to_string())?;
    if ctx_re.is_match(&ev.expr) {
        return Ok(());
    }
    // The same query in range mode must give the same result at the middle step.
    let rr = engine
        .range_query(store, &ev.expr, ev.at - 60_000, ev.at + 60_000, 60_000)
        .await
        .map_err(|e| format!("range mode: {e}"))?;
    let Value::Matrix(m) = rr.value else {
        return Err("range mode: not a matrix".into());
    };
    let mut vec = Vec::new();
    for s in &m {
        if let Some(p) = s.floats.iter().find(|p| p.0 == ev.at) {
            vec.push(crate::Sample {
                labels: s.labels.clone(),
                t: p.0,
                v: p.1,
                h: None,
            });
        }
        if let Some(p) = s.histograms.iter().find(|p| p.0 == ev.at) {
            vec.push(crate::Sample {
                labels: s.labels.clone(),
                t: p.0,
                v: 0.0,
                h: Some(p.1.clone()),
            });
        }
    }
    let res = if matches!(r.value, Value::Scalar { .. }) {
        compare(
            ev,
            &Value::Scalar {
                t: ev.at,
                v: vec.first().map(|s| s.v).unwrap_or(f64::NAN),
            },
        )
    } else {
        compare(ev, &Value::Vector(vec))
    };
    res.map_err(|e| format!("range mode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_timestamp_offsets_parse_like_promqltest() {
        let ms = |v: &[i64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        assert_eq!(
            parse_st_sequence("-30s-1mx2 0-1mx1 1ms +1m -0msx1").unwrap(),
            ms(&[-30_000, -90_000, -150_000, 0, -60_000, 1, 60_000, 0, 0])
        );
        assert_eq!(
            parse_st_sequence("_ _x2 -59999msx1 * *x1 5s+2sx2").unwrap(),
            vec![
                None,
                None,
                None,
                Some(-59_999),
                Some(-59_999),
                Some(-59_999),
                Some(-59_999),
                Some(-59_999),
                Some(5_000),
                Some(7_000),
                Some(9_000)
            ]
        );
        for bad in ["5", "1q", "1m*", "1m+1s", "1m+1sy2", "_x0", "-", "x3"] {
            assert!(parse_st_sequence(bad).is_err(), "{bad}");
        }
        assert!(is_st_line(r#"m{a="b"}@st 1 2"#));
        assert!(is_st_line("@st -1m"));
        assert!(!is_st_line("m 1 2"));
        assert!(!is_st_line("m@st"));
        let (m, offs) = parse_st_line(r#"m{a="b"}@st  _ 0"#).unwrap();
        assert_eq!(m, Some(Labels::from_pairs([("__name__", "m"), ("a", "b")])));
        assert_eq!(offs, vec![None, Some(0)]);
        assert_eq!(parse_st_line("@st 1s").unwrap(), (None, vec![Some(1000)]));
        assert!(parse_st_line("m{@st 1s").is_err());
    }

    #[test]
    fn start_timestamp_lines_attach_to_the_next_series() {
        let src = "load 1m\n  @st -1s\n  a 1 2\n  b@st _ -1m\n  b 3 4\n  c 5\n";
        let cmds = parse_file(src).unwrap();
        let Cmd::Load { series, sts, .. } = &cmds[0] else {
            panic!("not a load")
        };
        assert_eq!(series.len(), 3);
        // The bare `@st` line is the default for series without their own.
        assert_eq!(sts[0], vec![Some(-1000), Some(-1000)]);
        assert_eq!(sts[1], vec![None, Some(-60_000)]);
        assert_eq!(sts[2], vec![Some(-1000)]);
        for (bad, msg) in [
            ("load 1m\n  b@st 1s\n  c 1\n", "does not match"),
            (
                "load 1m\n  b@st 1s 2s\n  b 1\n",
                "has 2 values but sample line has 1",
            ),
            ("load 1m\n  b 1\n  b@st 1s\n", "no following sample line"),
            (
                "load 1m\n  b@st 1s\n  c@st 1s\n  c 1\n",
                "no following sample line",
            ),
            ("load 1m\n  b@st 1q\n  b 1\n", "invalid @st sequence"),
        ] {
            let e = parse_file(bad).err().unwrap_or_default();
            assert!(e.contains(msg), "{bad:?}: {e}");
        }
    }

    #[test]
    fn values_expand() {
        let v = parse_values("1+2x3 _ stale _x2 -1-1x1 5x2").unwrap();
        assert_eq!(v.len(), 4 + 1 + 1 + 2 + 2 + 3);
        assert_eq!(v[3], SeqVal::Float(7.0));
        assert_eq!(v[9], SeqVal::Float(-2.0));
        let h = parse_values("{{schema:0 sum:1 count:2}}x2 1").unwrap();
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn histogram_literals_parse_and_expand() {
        let v = parse_values(
            "{{schema:1 sum:-0.3 count:3.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7] offset:-3 n_buckets:[4.1 5] n_offset:-5 counter_reset_hint:gauge}}",
        )
        .unwrap();
        let SeqVal::Histogram(h) = &v[0] else {
            panic!("not a histogram")
        };
        assert_eq!(h.schema, 1);
        assert_eq!(h.zero_threshold, 0.05);
        assert_eq!(h.positive_spans[0].offset, -3);
        assert_eq!(h.negative_buckets, vec![4.1, 5.0]);
        assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
        let v = parse_values("{{sum:1 count:1 buckets:[1]}}+{{sum:2 count:2 buckets:[1 1]}}x2")
            .unwrap();
        assert_eq!(v.len(), 3);
        let SeqVal::Histogram(last) = &v[2] else {
            panic!("not a histogram")
        };
        assert_eq!(last.count, 5.0);
        assert_eq!(last.to_string(), "{count:5, sum:5, (0.5,1]:3, (1,2]:2}");
    }

    #[test]
    fn nhcb_conversion() {
        let src = "load_with_nhcb 1m\n  h_bucket{le=\"1\"} 1 2\n  h_bucket{le=\"+Inf\"} 3 5\n  h_sum 4 8\n";
        let cmds = parse_file(src).unwrap();
        let Cmd::Load {
            series, step, nhcb, ..
        } = &cmds[0]
        else {
            panic!("not a load")
        };
        assert!(nhcb);
        let out = nhcb_series(series, *step);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.to_string(), r#"{__name__="h"}"#);
        assert_eq!(
            out[0].1[1].1.to_string(),
            "{count:5, sum:8, [-Inf,1]:2, (1,+Inf]:3}"
        );
    }

    #[test]
    fn metric_parses() {
        let (l, rest) = parse_metric(r#"foo{a="b", c='d'} 1 2"#).unwrap();
        assert_eq!(l.to_string(), r#"{__name__="foo", a="b", c="d"}"#);
        assert_eq!(rest.trim(), "1 2");
        let (l, _) = parse_metric("{} 3").unwrap();
        assert!(l.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("50m"), Some(3_000_000));
    }
}
