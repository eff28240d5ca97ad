//! The querier over real downsampled blocks: 48 h of raw data written as one
//! block (thanos section, resolution 0) into a FILESYSTEM bucket, downsampled to
//! 5m by one compactor pass, then queried through [`query::Querier`] and a
//! [`store::BucketStore`] at `max_source_resolution=0s` (raw), `5m` and `auto`.
//!
//! Tolerances (relative, per point):
//! - `rate` / `increase` over `[1h]` at hour-aligned steps: the 5m counter
//!   aggregate holds the reset-corrected counter at each window's end
//!   (`t - t % 5m + 5m - 1`), so the 1 h window sees 12 points spanning 55 m and
//!   extrapolates the rest (gaps < 1.1 × interval); for counters growing at a
//!   constant rate this is the raw answer up to float error. The window holding
//!   the reset loses at most one raw scrape's increment: 1 %.
//! - `avg_over_time`, `min_over_time`, `max_over_time` over `[1h]`: the 5m
//!   windows cover `[t-1h, t)` where the raw range covers `(t-1h, t]`, so the
//!   answers may differ by one scrape's change of the gauge (a 6 h sine of
//!   amplitude 10 around 100 moves < 0.03 per 15 s scrape): 1 %.
//! - `sum(g)` (instant vector): the selector reads the per-window averages
//!   (count + sum aggregates) where raw reads the last scrape, at most half a
//!   window of drift apart (< 0.7 on 100): 1 %.
//! - `count_over_time`: as in Thanos, the count aggregate is read and counted,
//!   so the downsampled answer counts 5m windows (12 per hour) where raw counts
//!   scrapes (240 per hour): exactly raw / 20.
//!
//! Measured (this data): rate / increase ≤ 4.6e-3 (the hour holding the
//! reset), avg / min / max_over_time ≤ 4.4e-4, sum(g) ≤ 4.6e-3.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bucket::ObjstoreConfig;
use compact::{CompactConfig, Compactor, SystemClock};
use futures::StreamExt;
use model::Labels;
use query::params::Params;
use query::{EndpointSet, Querier, QuerierConfig};
use storeapi::{pb, SeriesStream, StoreApi};
use tsdb::block::BlockWriter;
use tsdb::meta::{ThanosMeta, RES_5M};

const H: i64 = 3_600_000;
/// 2023-11-14T22:00:00Z, aligned to 2 h.
const T0: i64 = 1_699_999_200_000;
const T_END: i64 = T0 + 48 * H;
const SCRAPE: i64 = 15_000;
/// Counter `c` resets to 0 at T0 + 20 h.
const RESET: i64 = T0 + 20 * H;

fn counter(i: usize, t: i64) -> f64 {
    let n = if t < RESET {
        (t - T0) / SCRAPE
    } else {
        (t - RESET) / SCRAPE
    };
    n as f64 * (i + 1) as f64
}

fn gauge(i: usize, t: i64) -> f64 {
    let x = (t - T0) as f64 / (6 * H) as f64 * std::f64::consts::TAU;
    100.0 + 10.0 * x.sin() + i as f64
}

fn series() -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut out = Vec::new();
    for i in 0..2 {
        let ts = (T0..T_END).step_by(SCRAPE as usize);
        out.push((
            Labels::from_pairs([("__name__", "c"), ("i", &*i.to_string())]),
            ts.clone().map(|t| (t, counter(i, t))).collect(),
        ));
        out.push((
            Labels::from_pairs([("__name__", "g"), ("i", &*i.to_string())]),
            ts.map(|t| (t, gauge(i, t))).collect(),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What the querier asked and what the store answered.
#[derive(Default)]
struct Seen {
    requests: Vec<pb::SeriesRequest>,
    raw_chunks: usize,
    aggr_chunks: usize,
}

/// A store that records the Series requests and the chunk kinds it answers.
struct Recording {
    inner: Arc<dyn StoreApi>,
    seen: Arc<Mutex<Seen>>,
}

#[async_trait::async_trait]
impl StoreApi for Recording {
    async fn info(&self) -> storeapi::Result<pb::info::InfoResponse> {
        self.inner.info().await
    }
    async fn series(&self, req: pb::SeriesRequest) -> storeapi::Result<SeriesStream> {
        self.seen.lock().unwrap().requests.push(req.clone());
        let seen = Arc::clone(&self.seen);
        let stream = self.inner.series(req).await?;
        Ok(Box::pin(stream.map(move |r| {
            use pb::series_response::Result as R;
            if let Ok(pb::SeriesResponse { result: Some(res) }) = &r {
                let series: Vec<&pb::Series> = match res {
                    R::Series(s) => vec![s],
                    R::Batch(b) => b.series.iter().collect(),
                    _ => vec![],
                };
                let mut seen = seen.lock().unwrap();
                for s in series {
                    for c in &s.chunks {
                        if c.raw.is_some() {
                            seen.raw_chunks += 1;
                        } else {
                            seen.aggr_chunks += 1;
                        }
                    }
                }
            }
            r
        })))
    }
    async fn label_names(
        &self,
        req: pb::LabelNamesRequest,
    ) -> storeapi::Result<pb::LabelNamesResponse> {
        self.inner.label_names(req).await
    }
    async fn label_values(
        &self,
        req: pb::LabelValuesRequest,
    ) -> storeapi::Result<pb::LabelValuesResponse> {
        self.inner.label_values(req).await
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    querier: Arc<Querier>,
    seen: Arc<Mutex<Seen>>,
}

async fn fixture() -> Fixture {
    fixture_with(QuerierConfig::default()).await
}

async fn fixture_with(config: QuerierConfig) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let store = ObjstoreConfig::filesystem(&bucket_dir).build().unwrap();

    // One raw block of 48 h.
    let blocks = tmp.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let mut w = BlockWriter::create(&blocks).unwrap();
    for (l, s) in series() {
        w.add_series(&l, s).unwrap();
    }
    let ext: BTreeMap<String, String> = [("cluster".to_string(), "eu".to_string())].into();
    let meta = w.finish(Some(ThanosMeta::new("sidecar", ext))).unwrap();
    assert_eq!(meta.thanos.as_ref().unwrap().downsample.resolution, 0);
    bucket::upload_block(&*store, &blocks.join(meta.ulid.to_string()), Some(&meta))
        .await
        .unwrap();

    // One compactor pass: the 5m block.
    let mut cfg = CompactConfig::new(tmp.path().join("compact"));
    cfg.consistency_delay_ms = 0;
    cfg.delete_delay_ms = 0;
    Compactor::new(Arc::clone(&store), cfg, Arc::new(SystemClock))
        .run_pass()
        .await
        .unwrap();
    let metas = bucket::list_block_metas(&*store).await.unwrap().metas;
    let res: Vec<i64> = metas
        .iter()
        .map(|m| m.thanos.as_ref().unwrap().downsample.resolution)
        .collect();
    assert!(res.contains(&0) && res.contains(&RES_5M), "{res:?}");

    let seen = Arc::new(Mutex::new(Seen::default()));
    let bs: Arc<dyn StoreApi> = Arc::new(store::BucketStore::new(
        store,
        store::StoreConfig::default(),
    ));
    let rec = Recording {
        inner: bs,
        seen: Arc::clone(&seen),
    };
    let set = Arc::new(EndpointSet::from_stores(vec![(
        "store".into(),
        Arc::new(rec) as Arc<dyn StoreApi>,
    )]));
    let querier = Querier::new(set, config);
    Fixture {
        _tmp: tmp,
        querier,
        seen,
    }
}

type Matrix = BTreeMap<String, Vec<(i64, f64)>>;

impl Fixture {
    /// A range query's matrix (series → points) with `max_source_resolution`.
    async fn range(&self, q: &str, res: &str, start: i64, end: i64, step: i64) -> Matrix {
        let mut p = Params::default();
        p.extend_urlencoded(format!("max_source_resolution={res}").as_bytes());
        let (data, warnings, _) = self
            .querier
            .run_query(&p, q, start, end, step)
            .await
            .unwrap_or_else(|e| panic!("{q} at {res}: {e:?}"));
        assert!(warnings.is_empty(), "{q}: {warnings:?}");
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["resultType"], "matrix", "{data}");
        let mut out = Matrix::new();
        for s in v["result"].as_array().unwrap() {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            out.insert(s["metric"].to_string(), points);
        }
        out
    }

    fn take_seen(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// `got` equals `want` point for point within relative `tol`.
fn assert_close(q: &str, want: &Matrix, got: &Matrix, tol: f64, scale: f64) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{q}"
    );
    let mut worst = 0f64;
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(
            w.iter().map(|p| p.0).collect::<Vec<_>>(),
            g.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{q} {k}: timestamps"
        );
        for ((t, a), (_, b)) in w.iter().zip(g) {
            let a = a * scale;
            let rel = (a - b).abs() / a.abs().max(1e-9);
            worst = worst.max(rel);
            assert!(
                rel <= tol,
                "{q} {k} @{t}: raw {a} vs downsampled {b} ({rel})"
            );
        }
    }
    eprintln!("{q}: worst relative difference {worst:.2e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_blocks_answer_like_raw() {
    let f = fixture().await;
    // Hour-aligned steps, away from the block's edges.
    let (start, end) = (T0 + 2 * H, T_END - 2 * H);
    let cases: &[(&str, f64, f64, &str)] = &[
        ("rate(c[1h])", 0.01, 1.0, "counter"),
        ("increase(c[1h])", 0.01, 1.0, "counter"),
        ("sum(rate(c[1h]))", 0.01, 1.0, "counter"),
        ("avg_over_time(g[1h])", 0.01, 1.0, "count+sum"),
        ("min_over_time(g[1h])", 0.01, 1.0, "min"),
        ("max_over_time(g[1h])", 0.01, 1.0, "max"),
        ("sum(g)", 0.01, 1.0, "count+sum"),
        ("count_over_time(g[1h])", 1e-12, 1.0 / 20.0, "count"),
    ];
    for &(q, tol, scale, aggr) in cases {
        let raw = f.range(q, "0s", start, end, H).await;
        let seen = f.take_seen();
        assert!(
            seen.raw_chunks > 0 && seen.aggr_chunks == 0,
            "{q}: raw read"
        );
        assert!(seen.requests.iter().all(|r| r.max_resolution_window == 0));
        assert!(!raw.is_empty(), "{q}");

        for res in ["5m", "auto"] {
            let down = f.range(q, res, start, end, H).await;
            let seen = f.take_seen();
            assert!(
                seen.aggr_chunks > 0 && seen.raw_chunks == 0,
                "{q} at {res}: {} raw, {} aggregate chunks",
                seen.raw_chunks,
                seen.aggr_chunks
            );
            let want_aggrs: Vec<i32> = match aggr {
                "counter" => vec![pb::Aggr::Counter as i32],
                "min" => vec![pb::Aggr::Min as i32],
                "max" => vec![pb::Aggr::Max as i32],
                "count" => vec![pb::Aggr::Count as i32],
                _ => vec![pb::Aggr::Count as i32, pb::Aggr::Sum as i32],
            };
            for r in &seen.requests {
                assert_eq!(r.aggregates, want_aggrs, "{q} at {res}");
                let want_res = if res == "auto" { H / 5 } else { RES_5M };
                assert_eq!(r.max_resolution_window, want_res, "{q} at {res}");
            }
            assert_close(&format!("{q} at {res}"), &raw, &down, tol, scale);
        }
    }
}

/// Counter resets are applied across the downsampled chunks: `increase` over
/// the whole range equals the raw one (a reset between chunks is not a drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_resets_across_downsampled_chunks() {
    let f = fixture().await;
    let t = T_END - H;
    let q = "increase(c[40h])";
    let raw = f.range(q, "0s", t, t, H).await;
    let down = f.range(q, "5m", t, t, H).await;
    assert_close(q, &raw, &down, 0.01, 1.0);
    // The reset is seen raw; the counter aggregate is reset-corrected (as in
    // Thanos), so `resets` over downsampled data finds none.
    let q = "resets(c[40h])";
    let raw = f.range(q, "0s", t, t, H).await;
    assert!(raw.values().all(|v| v == &[(t, 1.0)]), "{raw:?}");
    let down = f.range(q, "5m", t, t, H).await;
    assert!(down.values().all(|v| v == &[(t, 0.0)]), "{down:?}");
}

/// Thanos's dynamic lookback delta: with a 1m lookback, an instant vector
/// over 5m-resolution data (one point per 5 minutes) is empty between points
/// unless the lookback widens to the resolution read.
#[tokio::test]
async fn dynamic_lookback_delta_over_downsampled_data() {
    let start = T0 + 10 * H + 2 * 60_000;
    let end = start + 2 * H;
    let one_minute = |dynamic| QuerierConfig {
        lookback_delta: std::time::Duration::from_secs(60),
        dynamic_lookback_delta: dynamic,
        ..QuerierConfig::default()
    };
    let fixed = fixture_with(one_minute(false)).await;
    // Raw data (15 s scrapes) is found within 1m; 5m data is not.
    let raw = fixed.range("g", "0s", start, end, H).await;
    assert_eq!(raw.len(), 2, "{raw:?}");
    assert!(raw.values().all(|v| v.len() == 3), "{raw:?}");
    let down = fixed.range("g", "5m", start, end, H).await;
    assert!(down.is_empty(), "1m lookback over 5m data: {down:?}");

    let dynamic = fixture_with(one_minute(true)).await;
    let down = dynamic.range("g", "5m", start, end, H).await;
    assert_eq!(down.len(), 2, "{down:?}");
    assert!(down.values().all(|v| v.len() == 3), "{down:?}");
    assert_close("g", &raw, &down, 0.01, 1.0);
    // The raw answer is unchanged by the flag.
    assert_eq!(dynamic.range("g", "0s", start, end, H).await, raw);
}
