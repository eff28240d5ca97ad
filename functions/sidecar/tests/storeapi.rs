//! The sidecar's StoreAPI over gRPC against a real Prometheus: Series equals what
//! Prometheus's own query API returns for the same matchers and range.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use model::Labels;
use storeapi::pb;
use storeapi::StoreApi;

fn eq(name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher {
        r#type: pb::label_matcher::Type::Eq as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn re(name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher {
        r#type: pb::label_matcher::Type::Re as i32,
        name: name.into(),
        value: value.into(),
    }
}

/// Samples per series (labels without external labels) from Prometheus's HTTP
/// API: `selector[range]` at `end`, i.e. every raw sample in [start, end].
fn prom_samples(
    prom: &harness::Prometheus,
    selector: &str,
    start_ms: i64,
    end_ms: i64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let q = format!("{selector}[{}ms]", end_ms - start_ms);
    let body = prom
        .get(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(&q),
            sidecar::prom::ms_to_seconds(end_ms)
        ))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let l = Labels::from_pairs(
            r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
        );
        let samples = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                (t, v)
            })
            .collect();
        out.insert(l.to_string(), samples);
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Series through the sidecar, decoded: labels (external labels stripped, as
/// Prometheus's query API shows them) to samples in [start, end].
fn sidecar_samples(
    series: &[pb::Series],
    ext: &[&str],
    start: i64,
    end: i64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    for s in series {
        let l = storeapi::convert::labels_from_pb(&s.labels);
        let mut samples = Vec::new();
        for c in &s.chunks {
            let raw = c.raw.as_ref().unwrap();
            assert_eq!(raw.r#type, 0, "XOR chunks");
            assert!(storeapi::chunk::hash_ok(raw));
            for x in tsdb::chunkenc::XorIterator::new(&raw.data).unwrap() {
                let (t, v) = x.unwrap();
                if t >= start && t <= end {
                    samples.push((t, v));
                }
            }
        }
        out.insert(l.without(ext).to_string(), samples);
    }
    out
}

#[test]
fn series_labels_and_info_match_prometheus() {
    let root = tempfile::tempdir().unwrap();
    let data = tsdb_dir(root.path());
    backfill(&data, 0, 6);
    let prom = start_prometheus(
        &prom_config(&[("cluster", "eu"), ("replica", "1")], None),
        &data,
        &[],
    );
    let side = Sidecar::start(&data, &prom.url(), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_until("sidecar ready", Duration::from_secs(30), || {
        side.get("/-/ready") == "OK\n"
    });
    rt.block_on(async {
        let client = storeapi::grpc::GrpcStore::connect(&side.grpc, Default::default())
            .await
            .unwrap();
        let ext = ["cluster", "replica"];
        let base = BASE_S * 1000;
        // Ranges inside one block, across blocks, and cutting chunks.
        for (start, end, ms) in [
            (
                base,
                base + 6 * 3_600_000,
                vec![eq("__name__", "demo_metric")],
            ),
            (
                base + 1_234_000,
                base + 5_000_000,
                vec![eq("__name__", "demo_metric"), eq("job", "a")],
            ),
            (
                base + 7_000_000,
                base + 15_000_000,
                vec![re("job", "b|c"), eq("cluster", "eu")],
            ),
        ] {
            let req = pb::SeriesRequest {
                min_time: start,
                max_time: end,
                matchers: ms.clone(),
                ..Default::default()
            };
            let (series, warnings) = storeapi::collect_series(client.series(req).await.unwrap())
                .await
                .unwrap();
            assert!(warnings.is_empty());
            for s in &series {
                let l = storeapi::convert::labels_from_pb(&s.labels);
                assert_eq!(l.get("cluster"), Some("eu"), "external labels attached");
                assert_eq!(l.get("replica"), Some("1"));
            }
            let sel_ms: Vec<String> = ms
                .iter()
                .filter(|m| m.name != "cluster")
                .map(|m| storeapi::convert::matcher_from_pb(m).unwrap().to_string())
                .collect();
            let selector = format!("{{{}}}", sel_ms.join(","));
            let want = prom_samples(&prom, &selector, start, end);
            let got = sidecar_samples(&series, &ext, start, end);
            assert!(!want.is_empty());
            assert_eq!(got, want, "{selector} [{start}, {end}]");
        }

        // An external-label matcher that cannot match: nothing (Prometheus not asked).
        let req = pb::SeriesRequest {
            min_time: base,
            max_time: base + 3_600_000,
            matchers: vec![eq("__name__", "demo_metric"), eq("cluster", "us")],
            ..Default::default()
        };
        let (series, _) = storeapi::collect_series(client.series(req).await.unwrap())
            .await
            .unwrap();
        assert!(series.is_empty());

        // skip_chunks: labels only.
        let req = pb::SeriesRequest {
            min_time: base,
            max_time: base + 3_600_000,
            matchers: vec![eq("__name__", "demo_metric")],
            skip_chunks: true,
            ..Default::default()
        };
        let (series, _) = storeapi::collect_series(client.series(req).await.unwrap())
            .await
            .unwrap();
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.chunks.is_empty()));

        // Label names and values, with the external labels.
        let names = client
            .label_names(pb::LabelNamesRequest {
                start: base,
                end: base + 3_600_000,
                matchers: vec![eq("__name__", "demo_metric")],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(names.names, vec!["__name__", "cluster", "job", "replica"]);
        let values = client
            .label_values(pb::LabelValuesRequest {
                label: "job".into(),
                start: base,
                end: base + 3_600_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(values.values, vec!["a", "b"]);
        let values = client
            .label_values(pb::LabelValuesRequest {
                label: "cluster".into(),
                start: base,
                end: base + 3_600_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(values.values, vec!["eu"]);

        // Info: the external label set and the time Prometheus holds.
        let info = client.info().await.unwrap();
        assert_eq!(info.component_type, "sidecar");
        assert_eq!(
            storeapi::convert::labels_from_pb(&info.label_sets[0].labels).to_string(),
            "{cluster=\"eu\", replica=\"1\"}"
        );
        let st = info.store.unwrap();
        assert_eq!(st.min_time, base);
        assert_eq!(st.max_time, i64::MAX);

        // A bad regex is an invalid argument.
        let req = pb::SeriesRequest {
            min_time: base,
            max_time: base + 1,
            matchers: vec![re("job", "(")],
            ..Default::default()
        };
        let err = match client.series(req).await {
            Err(e) => e,
            Ok(s) => storeapi::collect_series(s).await.unwrap_err(),
        };
        assert!(matches!(err, storeapi::Error::InvalidArgument(_)), "{err}");
    });
    side.stop().unwrap();
}
