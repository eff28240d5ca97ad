//! Tests of the index module: a golden file written by Prometheus, writer → reader
//! round trips checked against brute force, and corruption handling.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::executor::block_on;
use model::{Labels, MatchType, Matcher};
use proptest::prelude::*;

use super::*;
use crate::{BytesRange, FileRange, RangeRead};

/// An index written by `promtool tsdb create-blocks-from openmetrics` (Prometheus
/// 2.42): 48 series, 103 chunks.
const PROM_INDEX: &[u8] = include_bytes!("testdata/prometheus-2.42.index");

type Series = (Labels, Vec<ChunkMeta>);

fn symbols_of(series: &[Series]) -> BTreeSet<String> {
    series
        .iter()
        .flat_map(|(l, _)| l.iter().flat_map(|l| [l.name.clone(), l.value.clone()]))
        .collect()
}

fn write_index(path: &Path, series: &[Series], extra_symbols: &[&str]) -> u64 {
    let mut syms = symbols_of(series);
    syms.extend(extra_symbols.iter().map(|s| s.to_string()));
    let mut w = IndexWriter::create(path, &syms).unwrap();
    let mut last = None;
    for (l, c) in series {
        let r = w.add_series(l, c).unwrap();
        assert!(last.is_none_or(|p| p < r));
        last = Some(r);
    }
    w.finish().unwrap()
}

fn index_bytes(series: &[Series]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("index");
    let size = write_index(&p, series, &[]);
    let b = std::fs::read(&p).unwrap();
    assert_eq!(b.len() as u64, size);
    b
}

fn mem_reader(b: &[u8]) -> Result<IndexReader> {
    block_on(IndexReader::open(Arc::new(BytesRange::new(
        "index",
        b.to_vec(),
    ))))
}

/// Everything an index says, read through the reader: used to check that corrupt
/// input either fails or reads exactly as the original.
#[derive(Debug, PartialEq)]
struct Everything {
    names: Vec<String>,
    values: Vec<Vec<String>>,
    postings: Vec<Vec<u64>>,
    all: Vec<u64>,
    series: Vec<Series>,
}

async fn read_everything(r: &IndexReader) -> Result<Everything> {
    let names = r.label_names();
    let mut values = Vec::new();
    let mut postings = Vec::new();
    for n in &names {
        let vs = r.label_values(n);
        for v in &vs {
            postings.push(r.postings(n, &[v]).await?);
        }
        postings.push(r.postings(n, &vs).await?);
        values.push(vs);
    }
    let all = r.all_postings().await?;
    let series = r.series_many(&all).await?;
    for (i, &s) in all.iter().enumerate().step_by(7) {
        assert_eq!(r.series(s).await?, series[i]);
    }
    Ok(Everything {
        names,
        values,
        postings,
        all,
        series,
    })
}

fn chunk(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
    ChunkMeta {
        min_time,
        max_time,
        chunk_ref,
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

// ---------------------------------------------------------------------------
// Golden: Prometheus's own output.

#[test]
fn reads_prometheus_index() {
    let r = mem_reader(PROM_INDEX).unwrap();
    let h = r.header();
    assert_eq!(h.version(), 2);
    assert_eq!(h.file_size(), PROM_INDEX.len() as u64);
    assert_eq!(
        r.label_names(),
        ["__name__", "code", "cpu", "instance", "job", "method", "mode", "zone"]
    );
    assert_eq!(
        r.label_values("__name__"),
        [
            "a_metric",
            "http_requests_total",
            "node_cpu_seconds_total",
            "up"
        ]
    );
    assert_eq!(r.label_values("job"), ["api", "cache", "db", "web-ü"]);
    assert_eq!(r.label_values("zone"), ["eu\nwest"]);
    assert!(r.label_values("nope").is_empty());
    assert!(r.label_values("").is_empty());

    let e = block_on(read_everything(&r)).unwrap();
    assert_eq!(e.series.len(), 48);
    assert_eq!(e.series.iter().map(|s| s.1.len()).sum::<usize>(), 103);
    assert!(e.series.windows(2).all(|w| w[0].0 < w[1].0));
    for (l, chunks) in &e.series {
        assert!(!chunks.is_empty());
        for c in chunks {
            assert!(c.min_time <= c.max_time);
            // Prometheus puts the 0-based index of the segment file (chunks/000001
            // is 0) in the upper 32 bits.
            assert_eq!(c.segment(), 0);
        }
        assert!(l.metric_name().is_some());
    }
    // Postings agree with the series' labels.
    for n in r.label_names() {
        for v in r.label_values(&n) {
            let want: Vec<u64> = e
                .all
                .iter()
                .zip(&e.series)
                .filter(|(_, s)| s.0.get(&n) == Some(v.as_str()))
                .map(|(&r, _)| r)
                .collect();
            assert_eq!(block_on(r.postings(&n, &[&v])).unwrap(), want, "{n}={v}");
        }
    }
    check_matchers_brute_force(&r, &e.all, &e.series, &sample_matchers(&r));
}

#[test]
fn rewrites_prometheus_index_byte_for_byte() {
    let r = mem_reader(PROM_INDEX).unwrap();
    let all = block_on(r.all_postings()).unwrap();
    let series = block_on(r.series_many(&all)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("index");
    let mut w = IndexWriter::create(&p, r.header().symbols().iter()).unwrap();
    for (&want_ref, (l, c)) in all.iter().zip(&series) {
        assert_eq!(w.add_series(l, c).unwrap(), want_ref);
    }
    assert_eq!(w.finish().unwrap(), PROM_INDEX.len() as u64);
    let ours = std::fs::read(&p).unwrap();
    if let Some(i) = ours.iter().zip(PROM_INDEX).position(|(a, b)| a != b) {
        panic!("first difference at byte {i}");
    }
    assert_eq!(ours, PROM_INDEX);

    // The header we build from our file equals the one from Prometheus's.
    let ours = mem_reader(&ours).unwrap();
    assert_eq!(ours.header(), r.header());
}

/// A few matchers of each kind over the names and values of an index.
fn sample_matchers(r: &IndexReader) -> Vec<Vec<Matcher>> {
    let mut out = Vec::new();
    let names = r.label_names();
    for n in names.iter().chain([&"missing".to_string()]) {
        let vals = r.label_values(n);
        let v0 = vals.first().cloned().unwrap_or_default();
        for (k, v) in [
            (MatchType::Equal, v0.clone()),
            (MatchType::Equal, String::new()),
            (MatchType::NotEqual, v0.clone()),
            (MatchType::NotEqual, String::new()),
            (MatchType::Regex, ".*".into()),
            (MatchType::Regex, ".+".into()),
            (MatchType::Regex, format!("{v0}|nope")),
            (MatchType::Regex, format!("{v0}|")),
            (MatchType::NotRegex, format!("{v0}|nope")),
            (MatchType::NotRegex, ".*".into()),
            (MatchType::NotRegex, "".into()),
            (MatchType::Regex, "h.*".into()),
        ] {
            out.push(vec![Matcher::new(k, n.as_str(), v).unwrap()]);
        }
    }
    let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
    out.push(vec![
        m(MatchType::Equal, "__name__", "http_requests_total"),
        m(MatchType::NotEqual, "code", "200"),
    ]);
    out.push(vec![
        m(MatchType::Regex, "job", "api|db"),
        m(MatchType::Equal, "zone", ""),
        m(MatchType::NotRegex, "instance", "host1.*"),
    ]);
    out.push(vec![
        m(MatchType::Regex, "zone", ".+"),
        m(MatchType::NotEqual, "zone", "x"),
    ]);
    out.push(vec![m(MatchType::Equal, "", "")]);
    out.push(vec![m(MatchType::NotEqual, "", "")]);
    out
}

fn brute_force(all: &[u64], series: &[Series], ms: &[Matcher]) -> Vec<u64> {
    if ms.is_empty() {
        return Vec::new();
    }
    all.iter()
        .zip(series)
        .filter(|(_, (l, _))| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
        .map(|(&r, _)| r)
        .collect()
}

fn check_matchers_brute_force(
    r: &IndexReader,
    all: &[u64],
    series: &[Series],
    cases: &[Vec<Matcher>],
) {
    for ms in cases {
        let got = block_on(r.postings_for_matchers(ms)).unwrap();
        let want = brute_force(all, series, ms);
        let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
        assert_eq!(got, want, "matchers {shown:?}");
    }
}

// ---------------------------------------------------------------------------
// Round trips.

fn name_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["__name__", "a", "b", "job", "zone"])
}

fn value_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "v1",
        "v2",
        "v10",
        "a",
        "b",
        "c",
        "ü",
        "x y",
        "line\nbreak",
        "",
    ])
}

fn series_strategy() -> impl Strategy<Value = Vec<Series>> {
    let one = (
        proptest::collection::vec((name_strategy(), value_strategy()), 1..5),
        proptest::collection::vec((0i64..1000, 0i64..1000), 0..120),
    );
    proptest::collection::vec(one, 0..40).prop_map(|raw| {
        let mut by_labels: BTreeMap<Labels, Vec<(i64, i64)>> = BTreeMap::new();
        for (pairs, chunks) in raw {
            let l = Labels::from_pairs(pairs);
            if !l.is_empty() {
                by_labels.insert(l, chunks);
            }
        }
        // Chunk refs increase across series, as a block writer produces them.
        let mut next_ref = 8u64;
        by_labels
            .into_iter()
            .map(|(l, raw_chunks)| {
                let mut t = -5000i64;
                let chunks = raw_chunks
                    .into_iter()
                    .map(|(gap, len)| {
                        let c = chunk(t + 1 + gap, t + 1 + gap + len, next_ref | 1 << 32);
                        t = c.max_time;
                        next_ref += 1 + gap as u64 * 3;
                        c
                    })
                    .collect();
                (l, chunks)
            })
            .collect()
    })
}

fn matcher_strategy() -> impl Strategy<Value = Matcher> {
    let value = prop::sample::select(vec![
        "v1",
        "v2",
        "v10",
        "a",
        "",
        ".*",
        ".+",
        "v1|v2",
        "v.*",
        "v1|",
        "a|b|c",
        ".",
        "[ab]",
        "ü",
        "line.break",
        "x y|zz",
        "(?i)V1",
    ]);
    let kind = prop::sample::select(vec![
        MatchType::Equal,
        MatchType::NotEqual,
        MatchType::Regex,
        MatchType::NotRegex,
    ]);
    let name = prop::sample::select(vec!["__name__", "a", "b", "job", "zone", "missing", ""]);
    (kind, name, value).prop_map(|(k, n, v)| Matcher::new(k, n, v).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_and_matchers(
        series in series_strategy(),
        cases in proptest::collection::vec(
            proptest::collection::vec(matcher_strategy(), 0..4),
            1..24,
        ),
    ) {
        let b = index_bytes(&series);
        let r = mem_reader(&b).unwrap();
        let e = block_on(read_everything(&r)).unwrap();
        prop_assert_eq!(e.all.len(), series.len());
        prop_assert_eq!(&e.series, &series);
        let names: BTreeSet<String> =
            series.iter().flat_map(|s| s.0.iter().map(|l| l.name.clone())).collect();
        prop_assert_eq!(&e.names, &names.into_iter().collect::<Vec<_>>());
        for (n, vs) in e.names.iter().zip(&e.values) {
            let want: BTreeSet<&str> = series.iter().filter_map(|s| s.0.get(n)).collect();
            prop_assert_eq!(vs, &want.into_iter().map(str::to_string).collect::<Vec<_>>());
        }
        check_matchers_brute_force(&r, &e.all, &series, &cases);

        // The header survives our encoding, and a reader over the decoded header
        // answers the same.
        let enc = r.header().encode();
        let h = IndexHeader::decode(&enc).unwrap();
        prop_assert_eq!(&h, &**r.header());
        let r2 = IndexReader::new(Arc::new(h), r.file().clone());
        prop_assert_eq!(block_on(read_everything(&r2)).unwrap(), e);
    }

    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = IndexHeader::decode(&bytes);
        let mut with_magic = b"AEIH\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = IndexHeader::decode(&with_magic);
    }

    #[test]
    fn reader_never_panics_on_random_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        prop_assert!(mem_reader(&bytes).is_err());
        let mut with_magic = vec![0xBA, 0xAA, 0xD7, 0x00, 0x02];
        with_magic.extend_from_slice(&bytes);
        if let Ok(r) = mem_reader(&with_magic) {
            let _ = block_on(read_everything(&r));
        }
    }
}

#[test]
fn without_label_indices() {
    let series = vec![
        (
            labels(&[("__name__", "up"), ("job", "a")]),
            vec![chunk(0, 10, 8)],
        ),
        (
            labels(&[("__name__", "up"), ("job", "b")]),
            vec![chunk(0, 10, 9)],
        ),
        (labels(&[("job", "b"), ("x", "1")]), vec![]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("with"), dir.path().join("without"));
    write_index(&p1, &series, &[]);
    let mut w = IndexWriter::create(&p2, symbols_of(&series)).unwrap();
    w.set_label_indices(false);
    for (l, c) in &series {
        w.add_series(l, c).unwrap();
    }
    w.finish().unwrap();
    let (b1, b2) = (std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    // Three label indices (16 + 4 × #values bytes each) and the label offset table
    // (len, count, (1, name, offset)…, CRC) are gone.
    assert_eq!(b1.len() - b2.len(), 20 + 24 + 20 + (8 + 12 + 7 + 5 + 4));
    let (r1, r2) = (mem_reader(&b1).unwrap(), mem_reader(&b2).unwrap());
    let t = r2.header().toc();
    assert_eq!(t.label_indices_table, t.postings_table);
    assert_eq!(t.label_indices, r2.header().series_section().end);
    let (e1, e2) = (
        block_on(read_everything(&r1)).unwrap(),
        block_on(read_everything(&r2)).unwrap(),
    );
    assert_eq!(e1, e2);
    assert_eq!(e2.series, series);
    corruption_suite(&b2);
}

#[test]
fn value_ranges_by_binary_search() {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let r = mem_reader(PROM_INDEX).unwrap();
    let h = r.header();
    let vals = |lo, hi| -> Vec<&str> { h.value_postings("job", lo, hi).map(|(v, _)| v).collect() };
    assert_eq!(vals(Unbounded, Unbounded), ["api", "cache", "db", "web-ü"]);
    assert_eq!(vals(Included("b"), Excluded("db")), ["cache"]);
    assert_eq!(vals(Excluded("cache"), Included("db")), ["db"]);
    assert_eq!(vals(Included("web"), Unbounded), ["web-ü"]);
    assert_eq!(vals(Included("z"), Included("a")), Vec::<&str>::new());
    assert_eq!(h.value_postings("nope", Unbounded, Unbounded).count(), 0);
    for (v, range) in h.value_postings("job", Unbounded, Unbounded) {
        assert_eq!(h.postings_range("job", v), Some(range.clone()));
        let want = block_on(r.postings("job", &[v])).unwrap();
        let got = decode_postings(&PROM_INDEX[range.start as usize..range.end as usize]).unwrap();
        assert_eq!(got, want);
    }
    assert_eq!(h.postings_range("job", "nope"), None);
    let all = h.all_postings_range().unwrap();
    assert_eq!(
        decode_postings(&PROM_INDEX[all.start as usize..all.end as usize])
            .unwrap()
            .len(),
        48
    );
}

#[test]
fn empty_index() {
    let b = index_bytes(&[]);
    let r = mem_reader(&b).unwrap();
    assert!(r.label_names().is_empty());
    assert!(block_on(r.all_postings()).unwrap().is_empty());
    let m = Matcher::new(MatchType::Regex, "a", ".*").unwrap();
    assert!(block_on(r.postings_for_matchers(&[m])).unwrap().is_empty());
    assert!(block_on(r.series(0)).is_err());
    assert!(r.header().series_section().is_empty());
    let h = IndexHeader::decode(&r.header().encode()).unwrap();
    assert_eq!(&h, &**r.header());
}

#[test]
fn file_range_and_extra_symbols() {
    let series = vec![
        (
            labels(&[("__name__", "up"), ("job", "a")]),
            vec![chunk(0, 10, 8)],
        ),
        (labels(&[("__name__", "up"), ("job", "b")]), vec![]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("index");
    write_index(&p, &series, &["", "unused", "zzz"]);
    let r = block_on(IndexReader::open(Arc::new(FileRange::open(&p).unwrap()))).unwrap();
    assert_eq!(r.header().symbols().len(), 8);
    assert_eq!(r.symbol(0).unwrap(), "");
    assert!(r.symbol(8).is_err());
    assert_eq!(r.label_values("job"), ["a", "b"]);
    let e = block_on(read_everything(&r)).unwrap();
    assert_eq!(e.series, series);
    let first = r.header().toc().series.div_ceil(16);
    assert_eq!(
        e.all[0], first,
        "series start after the symbols, 16-byte aligned"
    );
    assert_eq!(e.all.len(), 2);
}

/// Counts the range reads made through it.
#[derive(Debug)]
struct Counting {
    inner: BytesRange,
    reads: AtomicUsize,
    bytes: AtomicUsize,
}

#[async_trait]
impl RangeRead for Counting {
    async fn size(&self) -> Result<u64> {
        self.inner.size().await
    }
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add((range.end - range.start) as usize, Ordering::Relaxed);
        self.inner.read(range).await
    }
}

#[test]
fn reads_are_few_and_bounded() {
    // Series with enough chunks that their entries exceed the first 512-byte read.
    let mut series = Vec::new();
    let mut next_ref = 8;
    for i in 0..300 {
        let n = if i % 50 == 0 { 400 } else { 2 };
        let chunks = (0..n)
            .map(|k| {
                next_ref += 100;
                chunk(k * 1000, k * 1000 + 999, next_ref)
            })
            .collect();
        let l = labels(&[
            ("__name__", "m"),
            ("i", &format!("{i:04}")),
            ("parity", if i % 2 == 0 { "even" } else { "odd" }),
        ]);
        series.push((l, chunks));
    }
    let b = index_bytes(&series);
    let file = Arc::new(Counting {
        inner: BytesRange::new("index", b.clone()),
        reads: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
    });
    let r = block_on(IndexReader::open(file.clone())).unwrap();
    // Header, TOC, symbols + postings table: 4 reads, far less than the file.
    assert_eq!(file.reads.load(Ordering::Relaxed), 4);
    assert!(file.bytes.load(Ordering::Relaxed) < b.len() / 4);

    let reads = |f: &Counting| f.reads.swap(0, Ordering::Relaxed);
    reads(&file);
    let vals: Vec<String> = (0..300).step_by(3).map(|i| format!("{i:04}")).collect();
    let p = block_on(r.postings("i", &vals)).unwrap();
    assert_eq!(p.len(), 100);
    assert_eq!(reads(&file), 1, "nearby postings lists share one read");

    let all = block_on(r.all_postings()).unwrap();
    reads(&file);
    let got = block_on(r.series_many(&all)).unwrap();
    assert_eq!(got, series);
    assert!(
        reads(&file) <= 2,
        "one read for all entries, one for the long ones"
    );
    // Far apart entries, some longer than the first read, some not.
    let picks: Vec<u64> = all.iter().copied().step_by(50).chain([all[1]]).collect();
    let got = block_on(r.series_many(&picks)).unwrap();
    for (p, g) in picks.iter().zip(&got) {
        let i = all.iter().position(|a| a == p).unwrap();
        assert_eq!(g, &series[i]);
    }
    assert!(reads(&file) <= 2 * picks.len());

    let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
    let p = block_on(r.postings_for_matchers(&[
        m(MatchType::Equal, "parity", "even"),
        m(MatchType::Regex, "i", "00.*"),
        m(MatchType::NotEqual, "i", "0002"),
    ]))
    .unwrap();
    assert_eq!(p.len(), 49);
    assert_eq!(
        reads(&file),
        1,
        "all postings for the matchers in one batch"
    );
}

#[test]
fn writer_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("index");
    let invalid = |r: Result<IndexWriter>| matches!(r, Err(Error::InvalidInput { .. }));
    assert!(invalid(IndexWriter::create(&p, ["b", "a"])));
    assert!(invalid(IndexWriter::create(&p, ["a", "a"])));

    let mut w = IndexWriter::create(&p, ["1", "2", "a", "b"]).unwrap();
    let bad = |r: Result<u64>| matches!(r, Err(Error::InvalidInput { .. }));
    assert!(bad(w.add_series(&Labels::empty(), &[])));
    assert!(bad(w.add_series(&labels(&[("a", "zzz")]), &[])));
    assert!(bad(w.add_series(&labels(&[("a", "1")]), &[chunk(5, 4, 0)])));
    assert!(bad(w.add_series(
        &labels(&[("a", "1")]),
        &[chunk(0, 5, 0), chunk(5, 6, 1)]
    )));
    assert!(bad(w.add_series(
        &labels(&[("a", "1")]),
        &[chunk(0, 5, 9), chunk(6, 7, 8)]
    )));
    let r1 = w
        .add_series(&labels(&[("a", "1")]), &[chunk(0, 5, 9)])
        .unwrap();
    assert!(bad(w.add_series(&labels(&[("a", "1")]), &[])), "duplicate");
    assert!(
        bad(w.add_series(&labels(&[("a", "0")]), &[])),
        "unknown value"
    );
    assert!(
        bad(w.add_series(&labels(&[("a", "2")]), &[chunk(0, 1, 8)])),
        "chunk refs decrease"
    );
    let r2 = w
        .add_series(&labels(&[("a", "2"), ("b", "1")]), &[])
        .unwrap();
    assert!(r2 > r1);
    let size = w.finish().unwrap();
    let b = std::fs::read(&p).unwrap();
    assert_eq!(b.len() as u64, size);
    let r = mem_reader(&b).unwrap();
    assert_eq!(block_on(r.all_postings()).unwrap(), vec![r1, r2]);
}

// ---------------------------------------------------------------------------
// Corruption: never a panic, and never a silently different answer.

fn check_corrupted(orig: &Everything, b: &[u8]) {
    let Ok(r) = mem_reader(b) else { return };
    if let Ok(e) = block_on(read_everything(&r)) {
        assert_eq!(&e, orig, "corrupt index read without error");
    }
}

fn corruption_suite(b: &[u8]) {
    let r = mem_reader(b).unwrap();
    let orig = block_on(read_everything(&r)).unwrap();
    for len in 0..b.len() {
        assert!(mem_reader(&b[..len]).is_err(), "truncated to {len}");
    }
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..b.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut c = b.to_vec();
            c[i] ^= flip;
            check_corrupted(&orig, &c);
        }
        // And a random byte somewhere, plus junk appended.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut c = b.to_vec();
        c[(rng as usize) % b.len()] = (rng >> 32) as u8;
        c[i] = (rng >> 40) as u8;
        check_corrupted(&orig, &c);
    }
    let mut longer = b.to_vec();
    longer.extend_from_slice(&[0; 7]);
    assert!(mem_reader(&longer).is_err());
}

#[test]
fn corrupt_prometheus_index() {
    corruption_suite(PROM_INDEX);
}

#[test]
fn corrupt_own_index() {
    let series = vec![
        (
            labels(&[("__name__", "up"), ("job", "a\nb")]),
            vec![chunk(-5, 10, 8), chunk(11, 11, 300)],
        ),
        (labels(&[("__name__", "up"), ("job", "b")]), vec![]),
        (
            labels(&[("job", "b"), ("z", "ü")]),
            (0..80)
                .map(|i| chunk(i * 10, i * 10 + 5, 400 + i as u64))
                .collect(),
        ),
    ];
    corruption_suite(&index_bytes(&series));
}

#[test]
fn corrupt_cached_header() {
    let r = mem_reader(PROM_INDEX).unwrap();
    let enc = r.header().encode();
    assert_eq!(&IndexHeader::decode(&enc).unwrap(), &**r.header());
    for len in 0..enc.len() {
        assert!(IndexHeader::decode(&enc[..len]).is_err());
    }
    for i in 0..enc.len() {
        for flip in [0x01u8, 0x10, 0xff] {
            let mut c = enc.clone();
            c[i] ^= flip;
            assert!(IndexHeader::decode(&c).is_err(), "flip at {i}");
        }
    }
    // Well-formed CRC over a broken body is still caught by validation.
    let mut body = enc[..enc.len() - 4].to_vec();
    let n = body.len();
    body[n - 1] ^= 0x7f;
    body.extend_from_slice(&crate::encoding::crc32c(&body).to_be_bytes());
    let _ = IndexHeader::decode(&body);
    // A different encoding version is reported as unsupported.
    let mut v = enc.clone();
    v[4] = 9;
    assert!(matches!(
        IndexHeader::decode(&v),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn cached_header_is_compact() {
    let r = mem_reader(PROM_INDEX).unwrap();
    let enc = r.header().encode();
    assert!(enc.len() < PROM_INDEX.len() / 2, "{} bytes", enc.len());
}
