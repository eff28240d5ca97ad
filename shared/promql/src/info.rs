//! The `info(v, [selector])` function (Prometheus 3, experimental): enriches the
//! series of `v` with the data labels of info metrics (`target_info` by default)
//! joined on the identifying labels `instance` and `job`, as Prometheus's
//! metric-join path (`promql/info.go`) does.

use std::collections::{BTreeMap, HashMap, HashSet};

use model::{is_stale_nan, Label, Labels, MatchType, Matcher, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::engine::{addr, err, selector_matchers, Evaluator, V, VS};
use crate::Result;

const TARGET_INFO: &str = "target_info";

/// The labels an info series is joined on.
const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The matchers of the label selector (second argument), if any.
fn selector(c: &Call) -> Result<Option<Vec<Matcher>>> {
    match c.args.args.get(1).map(|a| &**a) {
        None => Ok(None),
        Some(Expr::VectorSelector(vs)) => Ok(Some(selector_matchers(vs)?)),
        Some(_) => err("expected label selectors as the second argument to \"info\" function"),
    }
}

/// The `__name__` matchers that select info metrics, as Prometheus's
/// `effectiveInfoNameMatchers`: the selector's, plus `__name__="target_info"` when
/// it has none, or `__name__=~".+_info"` when it has only negative ones (lest every
/// non-info series be selected).
fn effective_name_matchers(sel: &Option<Vec<Matcher>>) -> Result<Vec<Matcher>> {
    let mut ms: Vec<Matcher> = sel
        .iter()
        .flatten()
        .filter(|m| m.name() == METRIC_NAME)
        .cloned()
        .collect();
    let positive = ms
        .iter()
        .any(|m| matches!(m.kind(), MatchType::Equal | MatchType::Regex));
    if !positive {
        if ms.is_empty() {
            ms.push(Matcher::equal(METRIC_NAME, TARGET_INFO));
        } else {
            ms.push(
                Matcher::new(MatchType::Regex, METRIC_NAME, ".+_info")
                    .map_err(|e| crate::Error::Eval(e.to_string()))?,
            );
        }
    }
    Ok(ms)
}

/// The matchers that select info series: the effective `__name__` matchers and
/// the selector's data label matchers. (The identifying labels are filtered at
/// evaluation, once the base series are known.)
pub(crate) fn info_fetch_matchers(c: &Call) -> Result<Vec<Matcher>> {
    let sel = selector(c)?;
    let mut ms = effective_name_matchers(&sel)?;
    ms.extend(
        sel.into_iter()
            .flatten()
            .filter(|m| m.name() != METRIC_NAME),
    );
    Ok(ms)
}

/// An info series evaluated over the steps: per step, the timestamp of the sample
/// found by lookback.
struct InfoSeries {
    labels: Labels,
    name: String,
    /// Signature: the name and the identifying labels present.
    sig: Vec<(String, String)>,
    t: Vec<Option<i64>>,
}

fn sig_of(name: &str, l: &Labels) -> Vec<(String, String)> {
    let mut sig = vec![(METRIC_NAME.to_string(), name.to_string())];
    for id in IDENTIFYING {
        if let Some(v) = l.get(id) {
            sig.push((id.to_string(), v.to_string()));
        }
    }
    sig
}

pub(crate) fn eval_info(ev: &mut Evaluator, c: &Call, ts: &[i64]) -> Result<V> {
    let base = match c.args.args.first() {
        Some(a) => match ev.eval(a, ts)? {
            V::Vector(v) => v,
            _ => return err("expected type instant vector in call to function \"info\""),
        },
        None => return err("expected at least 1 argument(s) in call to function \"info\""),
    };
    let sel = selector(c)?;
    let name_matchers = effective_name_matchers(&sel)?;
    // Data label matchers, by label name (`__name__` only selects the info metrics).
    let mut data_matchers: BTreeMap<String, Vec<Matcher>> = BTreeMap::new();
    for m in sel.iter().flatten().filter(|m| m.name() != METRIC_NAME) {
        data_matchers
            .entry(m.name().to_string())
            .or_default()
            .push(m.clone());
    }
    let all_match_empty = data_matchers.values().flatten().all(|m| m.matches(""));

    // Info series themselves are not enriched.
    let ignore: Vec<bool> = base
        .iter()
        .map(|s| {
            let name = s.labels.get(METRIC_NAME).unwrap_or("");
            name_matchers.iter().all(|m| m.matches(name))
        })
        .collect();

    // The identifying label values of the series to enrich.
    let mut id_values: HashMap<&str, HashSet<String>> = HashMap::new();
    for (s, _) in base.iter().zip(&ignore).filter(|(_, &ig)| !ig) {
        for id in IDENTIFYING {
            if let Some(v) = s.labels.get(id) {
                id_values.entry(id).or_default().insert(v.to_string());
            }
        }
    }

    let data = ev.take_data(addr(c));
    let lookback = ev.lookback;
    let mut infos: Vec<InfoSeries> = Vec::new();
    if !id_values.is_empty() {
        for s in data {
            // As the regex matchers Prometheus adds per identifying label.
            let ok = id_values
                .iter()
                .all(|(id, vals)| s.labels.get(id).is_some_and(|v| vals.contains(v)));
            if !ok {
                continue;
            }
            let mut t = Vec::with_capacity(ts.len());
            for &at in ts {
                let fi = s.floats.partition_point(|p| p.0 <= at);
                let hi = s.histograms.partition_point(|p| p.0 <= at);
                let ft = (fi > 0).then(|| s.floats[fi - 1]);
                let ht = (hi > 0).then(|| s.histograms[hi - 1].0);
                match (ft, ht) {
                    (_, Some(h)) if h > at - lookback && ft.is_none_or(|(f, _)| h > f) => {
                        return err("info sample should be float");
                    }
                    (Some((pt, pv)), _) if pt > at - lookback && !is_stale_nan(pv) => {
                        t.push(Some(pt))
                    }
                    _ => t.push(None),
                }
            }
            let name = s.labels.get(METRIC_NAME).unwrap_or("").to_string();
            infos.push(InfoSeries {
                sig: sig_of(&name, &s.labels),
                name,
                labels: s.labels,
                t,
            });
        }
    }
    let info_names: Vec<String> = {
        let set: std::collections::BTreeSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    };
    let base_sigs: Vec<Vec<Vec<(String, String)>>> = base
        .iter()
        .map(|s| info_names.iter().map(|n| sig_of(n, &s.labels)).collect())
        .collect();

    let n = ts.len();
    let mut out: Vec<VS> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for st in 0..n {
        ev.check()?;
        // The newest info sample per signature.
        let mut by_sig: HashMap<&[(String, String)], (usize, i64)> = HashMap::new();
        for (i, is) in infos.iter().enumerate() {
            let Some(t) = is.t[st] else { continue };
            match by_sig.get(is.sig.as_slice()) {
                Some(&(_, et)) if et > t => {}
                Some(&(j, et)) if et == t => {
                    return err(format!(
                        "found duplicate series for info metric: existing {} @ {et}, new {} @ {t}",
                        fmt_labels(&infos[j].labels),
                        fmt_labels(&is.labels)
                    ));
                }
                _ => {
                    by_sig.insert(is.sig.as_slice(), (i, t));
                }
            }
        }
        for (bi, bs) in base.iter().enumerate() {
            let Some(val) = bs.val(st) else { continue };
            let labels = if ignore[bi] {
                bs.labels.clone()
            } else {
                let mut add: BTreeMap<&str, &str> = BTreeMap::new();
                let mut matched = false;
                for sig in &base_sigs[bi] {
                    let Some(&(ii, _)) = by_sig.get(sig.as_slice()) else {
                        continue;
                    };
                    for l in infos[ii].labels.iter() {
                        if l.name == METRIC_NAME
                            || (!data_matchers.is_empty() && !data_matchers.contains_key(&l.name))
                        {
                            continue;
                        }
                        if let Some(v) = add.get(l.name.as_str()) {
                            if *v != l.value {
                                return err(format!("conflicting label: {}", l.name));
                            }
                        }
                        if bs.labels.get(&l.name).is_some() {
                            continue;
                        }
                        add.insert(&l.name, &l.value);
                    }
                    matched = true;
                }
                if !matched && !all_match_empty {
                    continue;
                }
                if add.is_empty() {
                    bs.labels.clone()
                } else {
                    let mut v: Vec<Label> = bs.labels.iter().cloned().collect();
                    v.extend(add.into_iter().map(|(k, v)| Label::new(k, v)));
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    Labels::from_sorted(v)
                }
            };
            let oi = match index.get(&labels) {
                Some(&oi) => {
                    if out[oi].has(st) {
                        return err("vector cannot contain metrics with the same labelset");
                    }
                    oi
                }
                None => {
                    out.push(VS {
                        labels: labels.clone(),
                        drop: bs.drop,
                        v: vec![None; n],
                        h: Vec::new(),
                    });
                    index.insert(labels, out.len() - 1);
                    out.len() - 1
                }
            };
            match val {
                crate::engine::Val::F(f) => out[oi].v[st] = Some(f),
                crate::engine::Val::H(h) => out[oi].set_hist(st, Some(h.clone())),
            }
        }
    }
    Ok(V::Vector(out))
}

fn fmt_labels(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}
