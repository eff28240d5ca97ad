//! Blocks made by the real `promtool tsdb create-blocks-from openmetrics`, uploaded
//! to a real S3 server: Series answers equal `promtool tsdb dump` of the same
//! blocks, for several matcher sets and time ranges; label APIs equal the label
//! names and values in the dump.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use model::{format_go_float, MatchType, Matcher};
use store::{BucketStore, StoreConfig};
use storeapi::chunk::iter_wire_chunk;
use storeapi::convert::{labels_from_pb, matchers_to_pb};
use storeapi::{collect_series, pb, StoreApi};
use tools::demo::{self, DemoSpec};
use tsdb::chunkenc::SampleValue;

/// Parses a dump line's label set `{a="b", c="d"}` (demo values carry no escapes).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = BTreeMap::new();
    for part in inner.split("\", ") {
        let (k, v) = part.split_once("=\"").expect("name=\"value\"");
        out.insert(k.to_string(), v.trim_end_matches('"').to_string());
    }
    out
}

/// Splits a dump line into (labels text, labels).
fn line_labels(line: &str) -> (String, BTreeMap<String, String>) {
    let mut it = line.rsplitn(3, ' ');
    let _ts = it.next();
    let _v = it.next();
    let l = it.next().expect("labels").to_string();
    let parsed = parse_labels(&l);
    (l, parsed)
}

fn matches(ms: &[Matcher], l: &BTreeMap<String, String>) -> bool {
    ms.iter()
        .all(|m| m.matches(l.get(m.name()).map(String::as_str).unwrap_or("")))
}

/// The Series answer printed as `promtool tsdb dump` prints samples.
async fn series_as_dump(store: &BucketStore, ms: &[Matcher], mint: i64, maxt: i64) -> String {
    let (series, warnings) = collect_series(
        store
            .series(pb::SeriesRequest {
                min_time: mint,
                max_time: maxt,
                matchers: matchers_to_pb(ms),
                ..Default::default()
            })
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut out = String::new();
    for s in series {
        let l = labels_from_pb(&s.labels).to_string();
        let mut samples = Vec::new();
        for c in &s.chunks {
            for x in iter_wire_chunk(c.raw.as_ref().unwrap()).unwrap() {
                let (t, v) = x.unwrap();
                let SampleValue::Float(v) = v else {
                    panic!("histogram")
                };
                if t >= mint && t <= maxt {
                    samples.push((t, v));
                }
            }
        }
        samples.sort_by_key(|s| s.0);
        samples.dedup_by_key(|s| s.0);
        for (t, v) in samples {
            out.push_str(&format!("{l} {} {t}\n", format_go_float(v)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_and_labels_equal_promtool_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let start = 1_680_307_200_000; // 2023-04-01T00:00:00Z
    let spec = DemoSpec {
        start,
        end: start + 6 * 3_600_000,
        interval: 30_000,
        instances: 3,
    };
    let om = tmp.path().join("in.om");
    demo::write_openmetrics(&spec, std::fs::File::create(&om).unwrap()).unwrap();
    let blocks = tmp.path().join("blocks");
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        blocks.to_str().unwrap(),
    ])
    .unwrap();
    let mut dirs: Vec<_> = std::fs::read_dir(&blocks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "{dirs:?}");

    let b = Bucket::start();
    for d in &dirs {
        bucket::upload_block(&*b.store, d, None).await.unwrap();
    }
    let store = BucketStore::new(b.store.clone(), StoreConfig::default());

    let re = |n: &str, v: &str| Matcher::new(MatchType::Regex, n, v).unwrap();
    let ne = |n: &str, v: &str| Matcher::new(MatchType::NotEqual, n, v).unwrap();
    let nre = |n: &str, v: &str| Matcher::new(MatchType::NotRegex, n, v).unwrap();
    let h = 3_600_000;
    let cases: Vec<(Vec<Matcher>, i64, i64)> = vec![
        (vec![re("__name__", ".+")], start, spec.end),
        (
            vec![Matcher::equal("__name__", "up")],
            start - h,
            spec.end + h,
        ),
        (
            vec![
                re("__name__", "http_.*"),
                Matcher::equal("code", "500"),
                ne("handler", "/healthz"),
            ],
            start + h + 12_345,
            start + 3 * h,
        ),
        (
            vec![re("instance", "api-[02]:8080"), nre("__name__", ".*bucket")],
            start + 2 * h - 1,
            start + 2 * h + 1,
        ),
        (vec![Matcher::equal("job", "nope")], start, spec.end),
        (
            vec![re("__name__", ".+"), Matcher::equal("le", "")],
            start + 5 * h,
            spec.end,
        ),
    ];
    for (ms, mint, maxt) in cases {
        let dump = harness::promtool_dump(
            &blocks,
            &[&format!("--min-time={mint}"), &format!("--max-time={maxt}")],
        )
        .unwrap();
        let want: String = dump
            .lines()
            .filter(|l| matches(&ms, &line_labels(l).1))
            .map(|l| format!("{l}\n"))
            .collect();
        let got = series_as_dump(&store, &ms, mint, maxt).await;
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "{ms:?} [{mint}, {maxt}]"
        );
        assert!(got == want, "{ms:?} [{mint}, {maxt}]: answers differ");
    }

    // Label APIs against the label sets in the full dump.
    let dump = harness::promtool_dump(&blocks, &[]).unwrap();
    let sets: BTreeSet<String> = dump.lines().map(|l| line_labels(l).0).collect();
    let sets: Vec<BTreeMap<String, String>> = sets.iter().map(|s| parse_labels(s)).collect();
    let names: BTreeSet<String> = sets.iter().flat_map(|s| s.keys().cloned()).collect();
    let got = store
        .label_names(pb::LabelNamesRequest {
            start,
            end: spec.end,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.names, names.into_iter().collect::<Vec<_>>());
    for (label, ms) in [
        ("__name__", vec![]),
        ("instance", vec![]),
        (
            "handler",
            vec![Matcher::equal("__name__", "http_requests_total")],
        ),
        ("le", vec![Matcher::equal("handler", "/healthz")]),
        ("mode", vec![re("instance", "api-1.*")]),
    ] {
        let want: BTreeSet<String> = sets
            .iter()
            .filter(|s| matches(&ms, s))
            .filter_map(|s| s.get(label).cloned())
            .collect();
        let got = store
            .label_values(pb::LabelValuesRequest {
                label: label.to_string(),
                start,
                end: spec.end,
                matchers: matchers_to_pb(&ms),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            got.values,
            want.into_iter().collect::<Vec<_>>(),
            "{label} {ms:?}"
        );
        let want_names: BTreeSet<String> = sets
            .iter()
            .filter(|s| matches(&ms, s))
            .flat_map(|s| s.keys().cloned())
            .collect();
        if !ms.is_empty() {
            let got = store
                .label_names(pb::LabelNamesRequest {
                    start,
                    end: spec.end,
                    matchers: matchers_to_pb(&ms),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(
                got.names,
                want_names.into_iter().collect::<Vec<_>>(),
                "{ms:?}"
            );
        }
    }
}
