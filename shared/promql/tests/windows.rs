//! Window pruning (`SelectHints::window`): a range query whose step is longer than a
//! selector's range or lookback reads only the samples inside its windows. The
//! answers must be bit-for-bit those of reading every sample.

use async_trait::async_trait;
use model::Matcher;
use promql::{BlockQueryable, Engine, EngineOpts, Queryable, SelectHints, Series, Value};
use tools::demo::{self, DemoSpec};

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// The block reader with the window hint removed: every sample is read.
struct Full<'a>(&'a BlockQueryable);

#[async_trait]
impl Queryable for Full<'_> {
    async fn select(&self, m: &[Matcher], hints: &SelectHints) -> promql::Result<Vec<Series>> {
        let mut h = hints.clone();
        h.window = 0;
        self.0.select(m, &h).await
    }
}

const QUERIES: &[&str] = &[
    "up",
    "http_requests_total offset 7m",
    "http_requests_total offset -3m",
    "rate(http_requests_total[5m])",
    "sum by (handler) (increase(http_requests_total[2m] offset 1m))",
    "irate(http_requests_total[3m])",
    "count_over_time(node_memory_available_bytes[90s])",
    "last_over_time(node_memory_available_bytes[1m])",
    "resets(http_requests_total[10m])",
    "timestamp(up)",
    "absent_over_time(nonexistent[5m])",
    // Under a subquery or with @ the windows differ: no pruning, same answers.
    "max_over_time(rate(http_requests_total[5m])[20m:1m])",
    "http_requests_total @ end()",
    // Windows as long as the step or longer: no pruning either.
    "avg_over_time(node_memory_available_bytes[30m])",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
];

#[tokio::test]
async fn pruned_windows_answer_like_full_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let base = 1_700_000_000_000 / (2 * HOUR) * (2 * HOUR);
    let spec = DemoSpec {
        start: base + 137,
        end: base + 6 * HOUR,
        interval: 15 * SECOND,
        instances: 2,
    };
    demo::write_blocks(&spec, 2 * HOUR, tmp.path()).unwrap();
    let q = BlockQueryable::open_dir(tmp.path()).await.unwrap();
    let full = Full(&q);
    let engine = Engine::new(EngineOpts::default());
    let mut compared = 0;
    for query in QUERIES {
        for &(start, end, step) in &[
            (base + HOUR + 500, base + 6 * HOUR, 7 * MINUTE),
            (
                base + HOUR,
                base + 5 * HOUR + 3 * SECOND,
                23 * MINUTE + 11 * SECOND,
            ),
            (base + 2 * HOUR + 1, base + 6 * HOUR + 10 * MINUTE, HOUR),
        ] {
            let pruned = engine
                .range_query(&q, query, start, end, step)
                .await
                .unwrap();
            let all = engine
                .range_query(&full, query, start, end, step)
                .await
                .unwrap();
            assert_eq!(pruned.value, all.value, "{query} step {step}");
            assert_eq!(pruned.warnings, all.warnings, "{query} step {step}");
            assert_eq!(pruned.infos, all.infos, "{query} step {step}");
            if let Value::Matrix(m) = &pruned.value {
                compared += m.iter().map(|s| s.floats.len()).sum::<usize>();
            }
        }
    }
    assert!(compared > 5_000, "too few points compared: {compared}");

    // The pruning does happen: a 5m window every 30m reads about a sixth.
    let m = [Matcher::equal("__name__", "http_requests_total")];
    let mut hints = SelectHints {
        start: base + HOUR - 5 * MINUTE + 1,
        end: base + 5 * HOUR,
        step: 30 * MINUTE,
        range: 5 * MINUTE,
        ..Default::default()
    };
    let count = |s: Vec<Series>| s.iter().map(|s| s.floats.len()).sum::<usize>();
    let every = count(q.select(&m, &hints).await.unwrap());
    hints.window = 5 * MINUTE;
    let windowed = count(q.select(&m, &hints).await.unwrap());
    assert!(
        windowed * 5 < every && windowed * 7 > every,
        "{windowed} of {every} samples read"
    );
}
