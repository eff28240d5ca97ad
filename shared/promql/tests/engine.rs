//! Engine API tests over the in-memory queryable.

use std::time::Duration;

use model::Labels;
use promql::{Engine, EngineOpts, Error, MemQueryable, Value};

fn store() -> MemQueryable {
    let mut m = MemQueryable::new();
    for (job, step) in [("a", 1.0), ("b", 2.0)] {
        let pts: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * step)).collect();
        m.add(
            Labels::from_pairs([("__name__", "up_total"), ("job", job)]),
            &pts,
            &[],
        );
    }
    m
}

#[tokio::test]
async fn instant_and_range() {
    let e = Engine::new(EngineOpts::default());
    let s = store();
    let r = e
        .instant_query(&s, "sum(rate(up_total[5m]))", 600_000)
        .await
        .unwrap();
    match r.value {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1);
            assert!((v[0].v - 0.05).abs() < 1e-9, "{}", v[0].v);
        }
        other => panic!("{other:?}"),
    }
    let r = e
        .range_query(&s, "up_total * 2", 0, 120_000, 60_000)
        .await
        .unwrap();
    match r.value {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 2);
            assert_eq!(m[1].floats, vec![(0, 0.0), (60_000, 4.0), (120_000, 8.0)]);
            assert_eq!(m[0].labels.get("__name__"), None);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn errors_have_prometheus_texts() {
    let s = store();
    let e = Engine::new(EngineOpts {
        max_samples: 1,
        ..EngineOpts::default()
    });
    let err = e.instant_query(&s, "up_total", 0).await.unwrap_err();
    assert_eq!(err, Error::TooManySamples);
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    let e = Engine::new(EngineOpts {
        timeout: Duration::ZERO,
        ..EngineOpts::default()
    });
    let err = e
        .range_query(&s, "count_over_time(up_total[10m:1s])", 0, 600_000, 1000)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "query timed out in expression evaluation");
    let e = Engine::new(EngineOpts::default());
    assert!(matches!(
        e.instant_query(&s, "sum(", 0).await,
        Err(Error::Parse(_))
    ));
}
