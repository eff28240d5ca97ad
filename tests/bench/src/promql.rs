//! `bench promql`: range queries through our engine over the block reader, side by
//! side with Prometheus 2.42 serving the same blocks, per query the median latency
//! and the ratio; plus samples/s/core for `sum(rate(x[5m]))`.
//!
//! Data: the demo fleet (45 series per instance, 30 s scrape interval) written as
//! 1-day blocks; Prometheus runs with 2h min/max block duration so that it does not
//! compact them during the run. Scales: `PROMQL_BENCH_SCALES` (default
//! `1k,10k,100k`); query spans: `PROMQL_BENCH_SPANS` (default `1h,1d,7d`; the data
//! covers the longest chosen); runs per query: `PROMQL_BENCH_RUNS` (default 5);
//! `PROMQL_BENCH_QUERIES` picks queries by their names in the table.

use std::time::Instant;

use ::promql::{BlockQueryable, Engine, EngineOpts, Queryable, SelectHints, Value};
use anyhow::{bail, Context, Result};
use model::Matcher;
use tools::demo::{self, DemoSpec};

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

const QUERIES: &[(&str, &str)] = &[
    ("rate", "rate(http_requests_total[5m])"),
    ("sum(rate)", "sum(rate(http_requests_total[5m]))"),
    ("sum by (rate)", "sum by (handler) (rate(http_requests_total[5m]))"),
    (
        "histogram_quantile",
        "histogram_quantile(0.9, sum by (handler, le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "join 1:1",
        "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    ),
    (
        "join group_left",
        "rate(http_requests_total[5m]) / on(instance) group_left sum by (instance) (rate(http_requests_total[5m]))",
    ),
    ("topk", "topk(5, rate(http_requests_total[5m]))"),
    ("avg_over_time", "avg_over_time(node_memory_available_bytes[10m])"),
    ("quantile_over_time", "quantile_over_time(0.9, node_memory_available_bytes[1h])"),
    (
        "subquery",
        "max_over_time(sum by (instance) (rate(http_requests_total[5m]))[30m:1m])",
    ),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

struct Scale {
    name: &'static str,
    instances: usize,
    /// Query spans: (label, span ms, step ms).
    spans: &'static [(&'static str, i64, i64)],
}

const SPANS: &[(&str, i64, i64)] = &[
    ("1h", HOUR, 15 * SECOND),
    ("1d", DAY, 5 * MINUTE),
    ("7d", 7 * DAY, 30 * MINUTE),
];

const SCALES: &[Scale] = &[
    Scale {
        name: "1k",
        instances: 22,
        spans: SPANS,
    },
    Scale {
        name: "10k",
        instances: 222,
        spans: SPANS,
    },
    Scale {
        name: "100k",
        instances: 2222,
        spans: SPANS,
    },
];

/// Our median latency (s) of `runs` runs after one warm-up, and the series count.
fn ours(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    q: &BlockQueryable,
    query: &str,
    (start, end, step): (i64, i64, i64),
    runs: usize,
) -> Result<(f64, usize)> {
    let mut times = Vec::new();
    let mut n = 0;
    for i in 0..=runs {
        let t = Instant::now();
        let r = rt
            .block_on(engine.range_query(q, query, start, end, step))
            .map_err(|e| anyhow::anyhow!("{query}: {e}"))?;
        let el = t.elapsed().as_secs_f64();
        if let Value::Matrix(m) = &r.value {
            n = m.len();
        }
        if i > 0 {
            times.push(el);
        }
    }
    Ok((median(times), n))
}

/// Prometheus's median execTotalTime and wall time (HTTP + JSON) in s, and the
/// series count.
fn theirs(
    prom: &harness::Prometheus,
    query: &str,
    (start, end, step): (i64, i64, i64),
    runs: usize,
) -> Result<(f64, f64, usize)> {
    let mut exec = Vec::new();
    let mut wall = Vec::new();
    let mut n = 0;
    for i in 0..=runs {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}&stats=all",
            enc(query),
            secs(start),
            secs(end),
            secs(step)
        );
        let t = Instant::now();
        let body = prom.get(&path)?;
        let el = t.elapsed().as_secs_f64();
        if !body.starts_with("{\"status\":\"success\"") {
            bail!("Prometheus: {query}: {body:.300}");
        }
        n = body.matches("{\"metric\":").count();
        let e =
            json_number(&body, "\"execTotalTime\":").context("no stats.timings.execTotalTime")?;
        if i > 0 {
            exec.push(e);
            wall.push(el);
        }
    }
    Ok((median(exec), median(wall), n))
}

/// When the engines return different series: whether every point of a series only
/// one returned equals (within 1e-9 relative) a point the other returned at the same
/// step, i.e. the difference is which of tied series a `topk` kept. The series are
/// printed on stderr.
fn ties_only(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    q: &BlockQueryable,
    prom: &harness::Prometheus,
    query: &str,
    (start, end, step): (i64, i64, i64),
) -> Result<bool> {
    let label_text = |m: &serde_json::Map<String, serde_json::Value>| {
        let mut v: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        v.sort();
        v.join(",")
    };
    let r = rt
        .block_on(engine.range_query(q, query, start, end, step))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut mine = std::collections::BTreeMap::new();
    if let Value::Matrix(m) = r.value {
        for s in m {
            let mut v: Vec<String> = s
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            v.sort();
            mine.insert(
                v.join(","),
                s.floats.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            );
        }
    }
    let body = prom.get(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}",
        enc(query),
        secs(start),
        secs(end),
        secs(step)
    ))?;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    let mut theirs = std::collections::BTreeMap::new();
    for s in json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let m = s["metric"].as_object().cloned().unwrap_or_default();
        let vals: Vec<(i64, f64)> = s["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64,
                    p[1].as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::NAN),
                )
            })
            .collect();
        theirs.insert(label_text(&m), vals);
    }
    // Whether `other` has a point at `t` equal to `v` (1e-9 relative).
    let tied = |other: &std::collections::BTreeMap<String, Vec<(i64, f64)>>, t: i64, v: f64| {
        other
            .values()
            .flatten()
            .any(|&(ot, ov)| ot == t && (ov - v).abs() <= 1e-9 * v.abs().max(1e-300))
    };
    let mut all_ties = true;
    for (who, a, b) in [("ours", &mine, &theirs), ("Prometheus's", &theirs, &mine)] {
        for (k, pts) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
            let ties = pts.iter().all(|&(t, v)| tied(b, t, v));
            all_ties &= ties;
            eprintln!("only {who}: {k} (tied with a series of the other: {ties}) at {pts:?}");
        }
    }
    Ok(all_ties)
}

/// The number after `key` in a JSON text.
fn json_number(body: &str, key: &str) -> Option<f64> {
    let rest = &body[body.find(key)? + key.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))?;
    rest[..end].parse().ok()
}

/// Raw samples a range query of `metric[range]` reads: those of the matching series in
/// `[start - range, end]`.
fn raw_samples(
    rt: &tokio::runtime::Runtime,
    q: &BlockQueryable,
    metric: &str,
    start: i64,
    end: i64,
    range: i64,
) -> Result<usize> {
    let hints = SelectHints {
        start: start - range + 1,
        end,
        ..Default::default()
    };
    let s = rt
        .block_on(q.select(&[Matcher::equal("__name__", metric)], &hints))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(s.iter().map(|s| s.floats.len()).sum())
}

pub fn bench_promql() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let wanted: Vec<String> = std::env::var("PROMQL_BENCH_SCALES")
        .unwrap_or_else(|_| "1k,10k,100k".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let spans: Vec<String> = std::env::var("PROMQL_BENCH_SPANS")
        .unwrap_or_else(|_| "1h,1d,7d".into())
        .split(',')
        .map(str::to_string)
        .collect();
    // Only these queries (their names in the table, comma-separated).
    let only = std::env::var("PROMQL_BENCH_QUERIES").ok();
    let runs: usize = std::env::var("PROMQL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // The same sample limit as the Prometheus below.
    let engine = Engine::new(EngineOpts {
        max_samples: 500_000_000,
        ..EngineOpts::default()
    });
    println!(
        "\nRange queries, median of {runs} runs after a warm-up; Prometheus: execTotalTime from \
         `stats=all` (engine time, excludes HTTP and JSON) and wall time through the HTTP API; \
         ratio = ours / Prometheus execTotalTime (below 1: we are faster).\n"
    );
    println!("| series | span (step) | query | aether (ms) | Prometheus exec (ms) | Prometheus HTTP (ms) | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut rates = Vec::new();
    for sc in SCALES.iter().filter(|s| wanted.iter().any(|w| w == s.name)) {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data)?;
        let sc_spans: Vec<(&str, i64, i64)> = sc
            .spans
            .iter()
            .copied()
            .filter(|s| spans.iter().any(|w| w == s.0))
            .collect();
        let longest = sc_spans.iter().map(|s| s.1).max().unwrap_or(HOUR);
        let base = 1_700_000_000_000 / DAY * DAY;
        // An hour before the first query span for ranges and subqueries; samples at
        // 137 ms past a second.
        let spec = DemoSpec {
            start: base + 137,
            end: base + HOUR + longest + MINUTE,
            interval: 30 * SECOND,
            instances: sc.instances,
        };
        let t = Instant::now();
        demo::write_blocks(&spec, DAY, &data)?;
        let nseries = demo::series(&spec).len();
        eprintln!(
            "{}: {nseries} series, {} h of data written in {:.1}s",
            sc.name,
            (spec.end - spec.start) / HOUR,
            t.elapsed().as_secs_f64()
        );
        let q = rt
            .block_on(BlockQueryable::open_dir(&data))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut prom = harness::Prometheus::start(
            "global:\n  scrape_interval: 1m\n",
            &data,
            &[
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
                "--query.max-samples=500000000",
            ],
        )?;
        for &(span_name, span, step) in &sc_spans {
            let end = base + HOUR + longest;
            let start = end - span;
            let range = (start, end, step);
            for (name, query) in QUERIES
                .iter()
                .filter(|(n, _)| only.as_ref().is_none_or(|o| o.split(',').any(|w| w == *n)))
            {
                let (o, on) = ours(&rt, &engine, &q, query, range, runs)?;
                let (pe, pw, pn) = theirs(&prom, query, range, runs)?;
                let mut mark = "";
                if on != pn {
                    if !ties_only(&rt, &engine, &q, &prom, query, range)? {
                        bail!("{query}: {on} series from us, {pn} from Prometheus");
                    }
                    // topk picks among equal values by input order; values equal to
                    // the last bit in one engine can differ by an ulp in the other.
                    mark = " (ties)";
                }
                println!(
                    "| {nseries} | {span_name} ({}s) | {name}{mark} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    step / 1000,
                    o * 1e3,
                    pe * 1e3,
                    pw * 1e3,
                    o / pe
                );
                if *name == "sum(rate)" {
                    let n = raw_samples(&rt, &q, "http_requests_total", start, end, 5 * MINUTE)?;
                    rates.push((nseries, span_name, n, o, pe));
                }
            }
        }
        prom.proc.stop(std::time::Duration::from_secs(10));
        drop(tmp);
    }
    println!(
        "\n`sum(rate(http_requests_total[5m]))`: raw samples read per second (our engine runs \
         on one core: a current-thread runtime).\n"
    );
    println!("| series | span | raw samples | aether (samples/s/core) | Prometheus exec (samples/s) | speed-up (aether/Prometheus) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (nseries, span, n, o, pe) in rates {
        println!(
            "| {nseries} | {span} | {n} | {:.0} | {:.0} | {:.2} |",
            n as f64 / o,
            n as f64 / pe,
            pe / o
        );
    }
    Ok(())
}
