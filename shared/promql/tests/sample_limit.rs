//! The sample limit and the sample statistics, against Prometheus's own figures:
//! the data and queries of `TestQueryStatistics` and `TestMaxQuerySamples`
//! (promql/engine_test.go). For each query the peak and total equal
//! Prometheus's, a limit of the peak passes and a limit one below fails.

use model::{FloatHistogram, Labels, Span};
use promql::{Engine, EngineOpts, Error, MemQueryable, QueryResult};

const S: i64 = 1000;

fn lbls(name: &str, extra: &[(&str, &str)]) -> Labels {
    let mut pairs = vec![("__name__", name)];
    pairs.extend_from_slice(extra);
    Labels::from_pairs(pairs)
}

/// `1+1x100` every 10s.
fn series_1_to_101() -> Vec<(i64, f64)> {
    (0..=100).map(|i| (i * 10 * S, (i + 1) as f64)).collect()
}

/// The data of `TestQueryStatistics`.
fn stats_store() -> MemQueryable {
    let mut m = MemQueryable::new();
    m.add(
        lbls("metricWith1SampleEvery10Seconds", &[]),
        &series_1_to_101(),
        &[],
    );
    for (a, b) in [("1", "1"), ("2", "2"), ("3", "2")] {
        m.add(
            lbls("metricWith3SampleEvery10Seconds", &[("a", a), ("b", b)]),
            &series_1_to_101(),
            &[],
        );
    }
    // {{schema:1 count:5 sum:20 buckets:[1 2 1 1]}}+{{schema:1 count:10 sum:5 buckets:[1 2 3 4]}}x100
    let hs: Vec<(i64, FloatHistogram)> = (0..=100)
        .map(|i| {
            let f = i as f64;
            let h = FloatHistogram {
                schema: 1,
                count: 5.0 + 10.0 * f,
                sum: 20.0 + 5.0 * f,
                positive_spans: vec![Span {
                    offset: 0,
                    length: 4,
                }],
                positive_buckets: vec![1.0 + f, 2.0 + 2.0 * f, 1.0 + 3.0 * f, 1.0 + 4.0 * f],
                ..Default::default()
            };
            (i * 10 * S, h)
        })
        .collect();
    m.add(lbls("metricWith1HistogramEvery10Seconds", &[]), &[], &hs);
    m
}

/// The data of `TestMaxQuerySamples`.
fn max_store() -> MemQueryable {
    let mut m = MemQueryable::new();
    m.add(lbls("metric", &[]), &series_1_to_101(), &[]);
    m.add(lbls("bigmetric", &[("a", "1")]), &series_1_to_101(), &[]);
    m.add(lbls("bigmetric", &[("a", "2")]), &series_1_to_101(), &[]);
    m
}

/// A query: expression, start, end and step in seconds (step 0: instant).
struct Case {
    q: &'static str,
    start: i64,
    end: i64,
    step: i64,
    peak: u64,
    /// Expected total, when the Prometheus test states it.
    total: Option<u64>,
}

fn inst(q: &'static str, start: i64, peak: u64, total: Option<u64>) -> Case {
    Case {
        q,
        start,
        end: start,
        step: 0,
        peak,
        total,
    }
}

fn range(
    q: &'static str,
    (start, end, step): (i64, i64, i64),
    peak: u64,
    total: Option<u64>,
) -> Case {
    Case {
        q,
        start,
        end,
        step,
        peak,
        total,
    }
}

async fn run(store: &MemQueryable, c: &Case, max: usize) -> promql::Result<QueryResult> {
    let engine = Engine::new(EngineOpts {
        max_samples: max,
        ..EngineOpts::default()
    });
    if c.step == 0 {
        engine.instant_query(store, c.q, c.start * S).await
    } else {
        engine
            .range_query(store, c.q, c.start * S, c.end * S, c.step * S)
            .await
    }
}

/// Checks every case; returns the failures (all are reported at once).
async fn check(store: &MemQueryable, cases: &[Case]) -> Vec<String> {
    let mut bad = Vec::new();
    for c in cases {
        let limit = usize::try_from(c.peak).unwrap_or(usize::MAX);
        match run(store, c, limit).await {
            Ok(r) => {
                if r.stats.peak_samples != c.peak {
                    bad.push(format!(
                        "{}: peak {} want {}",
                        c.q, r.stats.peak_samples, c.peak
                    ));
                }
                if let Some(t) = c.total {
                    if r.stats.total_samples != t {
                        bad.push(format!("{}: total {} want {t}", c.q, r.stats.total_samples));
                    }
                }
            }
            Err(e) => bad.push(format!("{}: at the limit of its peak: {e}", c.q)),
        }
        if c.peak == 0 {
            continue;
        }
        match run(store, c, limit - 1).await {
            Err(Error::TooManySamples) => {}
            other => bad.push(format!(
                "{}: one below the peak gave {:?}",
                c.q,
                other.map(|r| r.stats)
            )),
        }
    }
    bad
}

#[tokio::test]
async fn query_statistics_match_prometheus() {
    let r5 = (201, 220, 5);
    let cases = [
        inst("\"literal string\"", 21, 0, Some(0)),
        inst("1", 21, 1, Some(0)),
        inst("metricWith1SampleEvery10Seconds", 21, 1, Some(1)),
        inst("metricWith1HistogramEvery10Seconds", 21, 13, Some(13)),
        inst("timestamp(metricWith1SampleEvery10Seconds)", 21, 2, Some(1)),
        inst("timestamp(metricWith1HistogramEvery10Seconds)", 21, 2, Some(1)),
        inst("metricWith1SampleEvery10Seconds", 22, 1, Some(1)),
        inst("metricWith1SampleEvery10Seconds offset 10s", 21, 1, Some(1)),
        inst("metricWith1SampleEvery10Seconds @ 15", 21, 1, Some(1)),
        inst(r#"metricWith3SampleEvery10Seconds{a="1"}"#, 21, 1, Some(1)),
        inst(r#"metricWith3SampleEvery10Seconds{a="1"} @ 19"#, 21, 1, Some(1)),
        inst(r#"metricWith3SampleEvery10Seconds{a="1"}[20s] @ 19"#, 21, 2, Some(2)),
        inst("metricWith3SampleEvery10Seconds", 21, 3, Some(3)),
        inst("metricWith1SampleEvery10Seconds[60s]", 201, 6, Some(6)),
        inst("metricWith1HistogramEvery10Seconds[60s]", 201, 78, Some(78)),
        inst("max_over_time(metricWith1SampleEvery10Seconds[60s])[20s:5s]", 201, 10, Some(24)),
        inst("max_over_time(metricWith1SampleEvery10Seconds[61s])[20s:5s]", 201, 11, Some(26)),
        inst("max_over_time(metricWith1HistogramEvery10Seconds[60s])[20s:5s]", 201, 78, Some(312)),
        inst("metricWith1SampleEvery10Seconds[60s] @ 30", 201, 4, Some(4)),
        inst("metricWith1HistogramEvery10Seconds[60s] @ 30", 201, 52, Some(52)),
        inst("sum(max_over_time(metricWith3SampleEvery10Seconds[60s] @ 30))", 201, 7, Some(12)),
        inst("sum by (b) (max_over_time(metricWith3SampleEvery10Seconds[60s] @ 30))", 201, 7, Some(12)),
        inst("metricWith1SampleEvery10Seconds[60s] offset 10s", 201, 6, Some(6)),
        inst("metricWith3SampleEvery10Seconds[60s]", 201, 18, Some(18)),
        inst("max_over_time(metricWith1SampleEvery10Seconds[60s])", 201, 7, Some(6)),
        inst("absent_over_time(metricWith1SampleEvery10Seconds[60s])", 201, 7, Some(6)),
        inst("max_over_time(metricWith3SampleEvery10Seconds[60s])", 201, 9, Some(18)),
        inst("metricWith1SampleEvery10Seconds[60s:5s]", 201, 12, Some(12)),
        inst("metricWith1SampleEvery10Seconds[60s:5s] offset 10s", 201, 12, Some(12)),
        inst("max_over_time(metricWith3SampleEvery10Seconds[60s:5s])", 201, 51, Some(36)),
        inst(
            "sum(max_over_time(metricWith3SampleEvery10Seconds[60s:5s])) + sum(max_over_time(metricWith3SampleEvery10Seconds[60s:5s]))",
            201,
            52,
            Some(72),
        ),
        range(r#"metricWith3SampleEvery10Seconds{a="1"}"#, r5, 4, Some(4)),
        range(r#"metricWith3SampleEvery10Seconds{a="1"}"#, (204, 223, 5), 4, Some(4)),
        range("metricWith1HistogramEvery10Seconds", (204, 223, 5), 52, Some(52)),
        range("timestamp(metricWith1SampleEvery10Seconds)", r5, 5, Some(4)),
        range("timestamp(metricWith1HistogramEvery10Seconds)", r5, 5, Some(4)),
        range(
            r#"max_over_time(metricWith3SampleEvery10Seconds{a="1"}[10s])"#,
            (991, 1021, 10),
            2,
            Some(2),
        ),
        range(r#"metricWith3SampleEvery10Seconds{a="1"} offset 10s"#, r5, 4, Some(4)),
        range("max_over_time(metricWith3SampleEvery10Seconds[60s] @ 30)", r5, 12, Some(48)),
        range("metricWith3SampleEvery10Seconds", r5, 12, Some(12)),
        range("max_over_time(metricWith3SampleEvery10Seconds[60s])", r5, 18, Some(72)),
        range("max_over_time(metricWith3SampleEvery10Seconds[60s:5s])", r5, 72, Some(144)),
        range("max_over_time(metricWith1SampleEvery10Seconds[60s:5s])", r5, 32, Some(48)),
        range(
            "sum by (b) (max_over_time(metricWith1SampleEvery10Seconds[60s:5s]))",
            r5,
            32,
            Some(48),
        ),
        range(
            "sum(max_over_time(metricWith3SampleEvery10Seconds[60s:5s])) + sum(max_over_time(metricWith3SampleEvery10Seconds[60s:5s]))",
            r5,
            76,
            Some(288),
        ),
        range(
            "sum(max_over_time(metricWith3SampleEvery10Seconds[60s:5s])) + sum(max_over_time(metricWith1SampleEvery10Seconds[60s:5s]))",
            r5,
            72,
            Some(192),
        ),
    ];
    let bad = check(&stats_store(), &cases).await;
    assert!(
        bad.is_empty(),
        "{} of {} cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

#[tokio::test]
async fn max_query_samples_match_prometheus() {
    let cases = [
        inst("1", 1, 1, None),
        inst("metric", 1, 1, None),
        inst("metric[20s]", 10, 2, None),
        inst("rate(metric[20s])", 10, 3, None),
        inst("metric[20s:5s]", 10, 3, None),
        inst("metric[20s] @ 10", 0, 2, None),
        range("1", (0, 2, 1), 3, None),
        range("metric", (0, 2, 1), 3, None),
        range("metric", (0, 10, 5), 3, None),
        range("rate(bigmetric[1s])", (0, 10, 5), 1, None),
        range("metric @ 10", (0, 10, 5), 3, None),
        range("rate(bigmetric[10s:1s] @ 10)", (0, 10, 5), 32, None),
        range(
            "rate(bigmetric[10s:1s] @ 10) + rate(bigmetric[10s:1s] @ 30)",
            (0, 10, 5),
            34,
            None,
        ),
        range(
            "rate(bigmetric[10s:1s]) + rate(bigmetric[10s:1s] @ 30)",
            (10, 20, 5),
            56,
            None,
        ),
        inst(
            "rate(rate(bigmetric[10s:1s] @ 10)[100s:25s] @ 1000)[100s:20s] @ 2000",
            10,
            32,
            None,
        ),
        inst(
            "rate(rate(bigmetric[10s:1s] @ 10)[100s:25s] @ 1000)[17s:1s] @ 2000",
            10,
            34,
            None,
        ),
    ];
    let bad = check(&max_store(), &cases).await;
    assert!(
        bad.is_empty(),
        "{} of {} cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

/// The case of the issue: many series over many steps fail together, where
/// the samples of one step alone are far below the limit.
#[tokio::test]
async fn limit_counts_all_steps_and_selectors() {
    let mut m = MemQueryable::new();
    for i in 0..20 {
        let pts: Vec<(i64, f64)> = (0..=60).map(|k| (k * 10 * S, k as f64)).collect();
        m.add(lbls("x", &[("i", &i.to_string())]), &pts, &[]);
    }
    let c = range("x", (0, 600, 10), 20 * 61, Some(20 * 61));
    let bad = check(&m, &[c]).await;
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // Two selectors of one query add up (and the result is held too).
    let c = range("x + x", (0, 600, 10), 3 * 20 * 61, Some(2 * 20 * 61));
    let r = run(&m, &c, usize::MAX).await.expect("no limit");
    assert_eq!(r.stats.total_samples, 2 * 20 * 61);
    // rangeEval: both inputs held, plus results and the gathered samples of the last step.
    assert_eq!(r.stats.peak_samples, 2 * 20 * 61 + 20 * 61 + 40);
    let limit = usize::try_from(r.stats.peak_samples).unwrap_or(usize::MAX);
    assert!(run(&m, &c, limit).await.is_ok());
    assert_eq!(
        run(&m, &c, limit - 1).await.err(),
        Some(Error::TooManySamples)
    );
    // Per step, this query holds 40 samples: far below a limit of 1000.
    assert_eq!(run(&m, &c, 1000).await.err(), Some(Error::TooManySamples));
}

/// Histograms weigh differently held in a matrix (`HPoint.size()`, 13 here) and
/// as a result vector sample (`Vector.TotalSamples()`, 1 + 208/16 = 14), while
/// `gatherVector` counts one per sample. Figures derived from Prometheus's code
/// (not from its tests): the selector holds 13, the literal 1, the step gathers
/// 2 more and its result weighs 14: 30 at the peak.
#[tokio::test]
async fn histogram_weights_in_binary_operations() {
    let cases = [
        inst("metricWith1HistogramEvery10Seconds * 1", 21, 30, Some(13)),
        range(
            "metricWith1HistogramEvery10Seconds * 1",
            (21, 41, 10),
            // 3 steps held (39) + the literal (3) + the last step's result
            // (14 × 3 accumulated) and gathered samples (2).
            39 + 3 + 3 * 14 + 2,
            Some(39),
        ),
    ];
    let bad = check(&stats_store(), &cases).await;
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
