//! Start timestamps (per-sample "created" times) in the engine: cases beyond
//! Prometheus's start_timestamps.test.

use async_trait::async_trait;
use model::{FloatHistogram, Labels, Matcher};
use promql::{
    Engine, EngineOpts, MemQueryable, QueryResult, Queryable, SelectHints, Series, Value,
};

const MIN: i64 = 60_000;

fn labels(name: &str, k: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("k", k)])
}

/// A source whose series all carry start timestamps, 0 (unknown) where the inner
/// source has none: the engine must treat them exactly as series without.
struct ZeroSts(MemQueryable);

#[async_trait]
impl Queryable for ZeroSts {
    async fn select(&self, m: &[Matcher], h: &SelectHints) -> promql::Result<Vec<Series>> {
        let mut out = self.0.select(m, h).await?;
        for s in &mut out {
            assert!(s.float_sts.is_empty() && s.histogram_sts.is_empty());
            s.float_sts = vec![0; s.floats.len()];
            s.histogram_sts = vec![0; s.histograms.len()];
        }
        Ok(out)
    }
}

/// Counters with resets, gaps, irregular spacing and a stale marker, and a gauge.
fn plain_store() -> MemQueryable {
    let mut m = MemQueryable::new();
    let vals = [
        1.0, 5.0, 9.0, 2.0, 4.0, 4.0, 10.0, 0.0, 3.0, 7.5, 1.0, 2.0, 8.0,
    ];
    let mut t = 0;
    let mut pts = Vec::new();
    for (i, v) in vals.iter().enumerate() {
        t += 20_000 + (i as i64 % 4) * 17_000;
        pts.push((t, *v));
    }
    pts.insert(6, (pts[5].0 + 1_000, f64::from_bits(model::STALE_NAN_BITS)));
    m.add(labels("c_total", "a"), &pts, &[]);
    let gauge: Vec<(i64, f64)> = (0..40)
        .map(|i| (i * 45_000, (i % 7) as f64 - 3.0))
        .collect();
    m.add(labels("g", "b"), &gauge, &[]);
    let hs: Vec<(i64, FloatHistogram)> = (0..20)
        .map(|i| {
            let c = ((i % 6) * 10) as f64;
            let h = FloatHistogram {
                count: c,
                sum: c * 2.0,
                ..Default::default()
            };
            (i * 50_000, h)
        })
        .collect();
    m.add(labels("h_total", "c"), &[], &hs);
    m
}

async fn range(q: &dyn Queryable, expr: &str) -> QueryResult {
    Engine::new(EngineOpts::default())
        .range_query(q, expr, 0, 20 * MIN, 37_000)
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

async fn instant(q: &dyn Queryable, expr: &str, t: i64) -> QueryResult {
    Engine::new(EngineOpts::default())
        .instant_query(q, expr, t)
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// The single float of an instant query's vector.
fn single(r: &QueryResult) -> f64 {
    match &r.value {
        Value::Vector(v) if v.len() == 1 => v[0].v,
        other => panic!("expected one sample, got {other:?}"),
    }
}

#[tokio::test]
async fn all_zero_start_timestamps_give_exactly_the_answers_without() {
    let plain = plain_store();
    let zero = ZeroSts(plain_store());
    for expr in [
        "rate(c_total[2m])",
        "increase(c_total[3m])",
        "rate(c_total[5m])",
        "delta(g[4m])",
        "irate(c_total[3m])",
        "idelta(g[2m])",
        "resets(c_total[10m])",
        "changes(c_total[10m])",
        "rate(h_total[3m])",
        "increase(h_total[5m])",
        "irate(h_total[2m])",
        "resets(h_total[10m])",
        "start_timestamp(c_total)",
        "increase(c_total[4m:30s])",
    ] {
        let a = range(&plain, expr).await;
        let b = range(&zero, expr).await;
        assert_eq!(a.value, b.value, "{expr}");
        assert_eq!(a.warnings, b.warnings, "{expr}");
        assert_eq!(a.infos, b.infos, "{expr}");
        match &a.value {
            Value::Matrix(m) => assert!(!m.is_empty(), "{expr}: empty"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn start_timestamp_in_range_replaces_left_extrapolation() {
    let mut m = MemQueryable::new();
    // One sample at 2m, counting since 1m.
    m.add_with_start_timestamps(labels("x_total", "a"), &[(2 * MIN, 60.0)], &[MIN], &[], &[]);
    // The same without a start timestamp, and with one at the range start.
    m.add(labels("x_total", "none"), &[(2 * MIN, 60.0)], &[]);
    m.add_with_start_timestamps(
        labels("x_total", "at_start"),
        &[(2 * MIN, 60.0)],
        &[-2 * MIN],
        &[],
        &[],
    );
    let r = instant(&m, r#"increase(x_total{k="a"}[5m])"#, 3 * MIN).await;
    assert_eq!(single(&r), 60.0);
    let r = instant(&m, r#"rate(x_total{k="a"}[5m])"#, 3 * MIN).await;
    assert!((single(&r) - 0.2).abs() < 1e-12);
    // A single sample without a usable start timestamp gives nothing.
    for k in ["none", "at_start"] {
        let r = instant(&m, &format!(r#"increase(x_total{{k="{k}"}}[5m])"#), 3 * MIN).await;
        assert_eq!(r.value, Value::Vector(vec![]), "{k}");
    }
    // Window (1m, 3m]: the start timestamp 1m is not inside (the start is
    // exclusive), so the lone sample gives nothing either.
    let r = instant(&m, r#"increase(x_total{k="a"}[2m])"#, 3 * MIN).await;
    assert_eq!(r.value, Value::Vector(vec![]));
}

#[tokio::test]
async fn delta_series_count_every_sample() {
    // An OTel delta counter: each sample counts the 10 events since the previous.
    let mut m = MemQueryable::new();
    let pts: Vec<(i64, f64)> = (1..=15).map(|i| (i * MIN, 10.0)).collect();
    let sts: Vec<i64> = (1..=15).map(|i| (i - 1) * MIN).collect();
    m.add_with_start_timestamps(labels("d_total", "otel"), &pts, &sts, &[], &[]);
    m.add(labels("d_total", "plain"), &pts, &[]);
    let r = instant(&m, r#"increase(d_total{k="otel"}[5m])"#, 10 * MIN).await;
    assert!((single(&r) - 50.0).abs() < 1e-9, "{r:?}");
    let r = instant(&m, r#"increase(d_total{k="plain"}[5m])"#, 10 * MIN).await;
    assert_eq!(single(&r), 0.0);
    let r = instant(&m, r#"irate(d_total{k="otel"}[5m])"#, 10 * MIN).await;
    assert!((single(&r) - 10.0 / 60.0).abs() < 1e-12);
    let r = instant(&m, r#"resets(d_total{k="otel"}[5m])"#, 10 * MIN).await;
    assert_eq!(single(&r), 4.0);
    // Through a subquery the start timestamps are gone.
    let r = instant(&m, r#"increase(d_total{k="otel"}[5m:1m])"#, 10 * MIN).await;
    assert_eq!(single(&r), 0.0);
    // delta() is no counter function: start timestamps do not matter.
    let a = instant(&m, r#"delta(d_total{k="otel"}[5m])"#, 10 * MIN).await;
    assert_eq!(single(&a), 0.0);
}

#[tokio::test]
async fn overlapping_start_timestamp_warns_once() {
    let mut m = MemQueryable::new();
    let pts = [(2 * MIN, 60.0), (3 * MIN, 120.0), (4 * MIN, 180.0)];
    m.add_with_start_timestamps(labels("o_total", "x"), &pts, &[MIN, MIN / 2, 0], &[], &[]);
    m.add_with_start_timestamps(labels("o_total", "y"), &pts, &[MIN, MIN, MIN], &[], &[]);
    let r = instant(&m, "rate(o_total[3m])", 4 * MIN).await;
    assert_eq!(
        r.warnings,
        vec![
            r#"PromQL warning: sample has start time that overlaps with previous sample timestamp for metric "o_total""#
        ]
    );
    let r = instant(&m, r#"rate(o_total{k="y"}[3m])"#, 4 * MIN).await;
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[tokio::test]
async fn start_timestamp_function() {
    let mut m = MemQueryable::new();
    m.add_with_start_timestamps(
        labels("s", "a"),
        &[(MIN, 1.0), (2 * MIN, 2.0)],
        &[30_000, 0],
        &[],
        &[],
    );
    m.add(labels("s", "b"), &[(MIN, 1.0)], &[]);
    let r = instant(&m, r#"start_timestamp(s{k="a"})"#, MIN + 10_000).await;
    assert_eq!(single(&r), 30.0);
    // Unknown start timestamps read as 0, with or without any in the series.
    let r = instant(&m, r#"start_timestamp(s{k="a"})"#, 2 * MIN).await;
    assert_eq!(single(&r), 0.0);
    let r = instant(&m, r#"start_timestamp((s{k="b"}))"#, 2 * MIN).await;
    assert_eq!(single(&r), 0.0);
    // An expression has no start timestamps.
    let r = instant(&m, "start_timestamp(s * 1)", 2 * MIN).await;
    assert_eq!(r.value, Value::Vector(vec![]));
}

#[tokio::test]
async fn mem_queryable_keeps_start_timestamps_aligned() {
    let mut m = MemQueryable::new();
    let l = labels("z", "a");
    m.add_with_start_timestamps(l.clone(), &[(0, 1.0), (60, 2.0)], &[-5, 7], &[], &[]);
    m.add(l.clone(), &[(30, 5.0), (60, 3.0)], &[]);
    let h = FloatHistogram {
        count: 1.0,
        ..Default::default()
    };
    m.add_with_start_timestamps(l.clone(), &[], &[], &[(0, h.clone())], &[9]);
    let hints = SelectHints {
        start: 0,
        end: 100,
        ..Default::default()
    };
    let out = m.select(&[], &hints).await.unwrap();
    assert_eq!(out[0].floats, vec![(30, 5.0), (60, 3.0)]);
    assert_eq!(out[0].float_sts, vec![0, 0]);
    assert_eq!(out[0].histograms, vec![(0, h)]);
    assert_eq!(out[0].histogram_sts, vec![9]);
    // The selected time range trims the start timestamps with the samples.
    let hints = SelectHints {
        start: 31,
        end: 100,
        ..Default::default()
    };
    let out = m.select(&[], &hints).await.unwrap();
    assert_eq!(out[0].float_sts, vec![0]);
    assert!(out[0].histogram_sts.is_empty());
    // A series never given a non-zero start timestamp keeps none.
    m.add_with_start_timestamps(labels("z", "b"), &[(0, 1.0)], &[0], &[], &[]);
    let hints = SelectHints {
        start: 0,
        end: 100,
        ..Default::default()
    };
    let out = m.select(&[], &hints).await.unwrap();
    let b = out.iter().find(|s| s.labels == labels("z", "b")).unwrap();
    assert_eq!(b.floats, vec![(0, 1.0)]);
    assert!(b.float_sts.is_empty());
}
