//! Properties of the series-set merge: sorted unique output, exactly the union
//! of the inputs' (series, chunk) pairs, exact duplicates once, independent of
//! input order and of how a store splits series into frames or batches.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use futures::StreamExt;
use proptest::prelude::*;
use storeapi::merge::{compare_aggr_chunks, merge_series_streams};
use storeapi::pb::{self, series_response::Result as R};
use storeapi::{collect_series, SeriesStream};

/// (labels key, min_time, max_time, data byte)
type Pair = (Vec<(String, String)>, i64, i64, u8);

fn labels(key: &[(String, String)]) -> Vec<pb::Label> {
    key.iter()
        .map(|(n, v)| pb::Label {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

fn chunk(min: i64, max: i64, d: u8) -> pb::AggrChunk {
    storeapi::chunk::raw_aggr_chunk(
        min,
        max,
        pb::Chunk {
            r#type: 0,
            data: vec![d],
            hash: 0,
        },
    )
}

/// One store's answer: its pairs grouped into sorted series; each series split
/// into `split` frames where possible; batched when `batch` > 1.
fn store_stream(pairs: &BTreeSet<Pair>, split: usize, batch: usize) -> SeriesStream {
    let mut series: Vec<pb::Series> = Vec::new();
    let mut keys: Vec<&Vec<(String, String)>> = pairs.iter().map(|p| &p.0).collect();
    keys.sort_by(|a, b| storeapi::convert::compare_pb_labels(&labels(a), &labels(b)));
    keys.dedup();
    for key in keys {
        let mut chunks: Vec<pb::AggrChunk> = pairs
            .iter()
            .filter(|p| &p.0 == key)
            .map(|p| chunk(p.1, p.2, p.3))
            .collect();
        chunks.sort_by(compare_aggr_chunks);
        let per = chunks.len().div_ceil(split.max(1)).max(1);
        for part in chunks.chunks(per) {
            series.push(pb::Series {
                labels: labels(key),
                chunks: part.to_vec(),
            });
        }
    }
    let frames: Vec<storeapi::Result<pb::SeriesResponse>> = if batch > 1 {
        series
            .chunks(batch)
            .map(|b| {
                Ok(pb::SeriesResponse {
                    result: Some(R::Batch(pb::SeriesBatch { series: b.to_vec() })),
                })
            })
            .collect()
    } else {
        series
            .into_iter()
            .map(|s| Ok(storeapi::series_frame(s)))
            .collect()
    };
    futures::stream::iter(frames).boxed()
}

fn key_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    // Small alphabets so that stores share series; names sorted and unique.
    proptest::collection::btree_map(
        prop::sample::select(vec!["__name__", "a", "b", "job"]).prop_map(str::to_string),
        prop::sample::select(vec!["x", "y", "z"]).prop_map(str::to_string),
        0..3,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn pair_strategy() -> impl Strategy<Value = Pair> {
    (key_strategy(), 0i64..6, 0i64..3, 0u8..3).prop_map(|(k, min, len, d)| (k, min, min + len, d))
}

fn stores_strategy() -> impl Strategy<Value = Vec<(BTreeSet<Pair>, usize, usize)>> {
    proptest::collection::vec(
        (
            proptest::collection::btree_set(pair_strategy(), 0..12),
            1usize..4,
            0usize..4,
        ),
        0..5,
    )
}

fn run(stores: &[(BTreeSet<Pair>, usize, usize)]) -> Vec<pb::Series> {
    let streams = stores
        .iter()
        .map(|(p, split, batch)| store_stream(p, *split, *batch))
        .collect();
    let (series, warnings) =
        futures::executor::block_on(collect_series(merge_series_streams(streams))).unwrap();
    assert!(warnings.is_empty());
    series
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn merge_is_sorted_unique_union(stores in stores_strategy()) {
        let out = run(&stores);
        for w in out.windows(2) {
            prop_assert_eq!(
                storeapi::convert::compare_pb_labels(&w[0].labels, &w[1].labels),
                Ordering::Less
            );
        }
        let mut got: BTreeSet<Pair> = BTreeSet::new();
        for s in &out {
            for w in s.chunks.windows(2) {
                prop_assert_eq!(compare_aggr_chunks(&w[0], &w[1]), Ordering::Less);
            }
            let key: Vec<(String, String)> =
                s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            for c in &s.chunks {
                let d = c.raw.as_ref().unwrap().data[0];
                prop_assert!(got.insert((key.clone(), c.min_time, c.max_time, d)));
            }
        }
        let want: BTreeSet<Pair> = stores.iter().flat_map(|s| s.0.iter().cloned()).collect();
        // Series with no chunks never arise here, so pairs cover every series.
        prop_assert_eq!(got, want);
    }

    #[test]
    fn merge_ignores_input_order_and_framing(stores in stores_strategy()) {
        let a = run(&stores);
        let mut rev: Vec<_> = stores.iter().rev().cloned().collect();
        for s in &mut rev {
            s.1 = 1;
            s.2 = 0;
        }
        prop_assert_eq!(&a, &run(&rev));
        let mut doubled = stores.clone();
        doubled.extend(stores.iter().cloned());
        prop_assert_eq!(&a, &run(&doubled));
    }
}

#[test]
fn merging_nothing_is_empty() {
    assert!(run(&[]).is_empty());
}
