//! A conformance suite for any [`StoreApi`] (feature `testing`).
//!
//! Load [`dataset`] into the store under test (attaching its external labels),
//! then run [`Suite::run`]. The checks are independent of how the store cuts
//! chunks: they decode the chunks and compare samples. What they check:
//!
//! - Info: a `store` section whose time range covers the data; the external
//!   labels among the label sets.
//! - Series selection by each matcher type (`=`, `!=`, `=~`, `!~`), with
//!   Prometheus semantics (anchored, dot-all regexes; missing label = "").
//! - Output order: series sorted by labels, no label set twice.
//! - Time ranges: every chunk overlaps the range, every series with samples in
//!   the range comes back, samples in the range are exact (bit for bit).
//! - `skip_chunks`, `limit`, `response_batch_size` (same series, batched).
//! - Label names and values: sorted, unique, filtered by matchers; a time range
//!   may be answered at block granularity, so values of series outside the range
//!   are tolerated, missing values of series inside it are not.
//! - A regex matcher that does not compile is [`Error::InvalidArgument`].

use std::collections::BTreeSet;
use std::fmt;

use model::{Labels, MatchType, Matcher};

use crate::chunk::iter_wire_chunk;
use crate::convert::{labels_from_pb, matchers_to_pb};
use crate::pb;
use crate::{collect_series, extlabels, Error, StoreApi};
use tsdb::chunkenc::SampleValue;

/// First timestamp of the data set (ms): 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000_000;
/// Interval between samples (ms).
pub const STEP: i64 = 15_000;
/// Samples per full-length series: two hours.
pub const SAMPLES: i64 = 480;
/// Last timestamp of the data set.
pub const T_END: i64 = T0 + (SAMPLES - 1) * STEP;

/// A series of the data set: labels (without external labels) and samples.
pub type DataSeries = (Labels, Vec<(i64, f64)>);

fn samples(from: i64, to: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (from..to).map(|i| (T0 + i * STEP, f(i))).collect()
}

/// The known data: eight float series over two hours at 15 s, some covering only
/// part of it, one ending in a staleness marker, one with a newline in a value.
pub fn dataset() -> Vec<DataSeries> {
    let l = |p: &[(&str, &str)]| Labels::from_pairs(p.iter().copied());
    let mut code500 = samples(0, 120, |i| (i / 10) as f64);
    code500.push((T0 + 120 * STEP, f64::from_bits(model::STALE_NAN_BITS)));
    vec![
        (
            l(&[("__name__", "up"), ("job", "api"), ("instance", "a")]),
            samples(0, SAMPLES, |_| 1.0),
        ),
        (
            l(&[("__name__", "up"), ("job", "api"), ("instance", "b")]),
            samples(0, SAMPLES, |i| (i % 2) as f64),
        ),
        (
            l(&[("__name__", "up"), ("job", "db"), ("instance", "c")]),
            samples(SAMPLES / 2, SAMPLES, |_| 1.0),
        ),
        (
            l(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a"),
                ("code", "200"),
            ]),
            samples(0, SAMPLES, |i| (i * 3) as f64 + 0.25),
        ),
        (
            l(&[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a"),
                ("code", "500"),
            ]),
            code500,
        ),
        (
            l(&[("__name__", "process_start_time_seconds"), ("job", "api")]),
            samples(0, SAMPLES, |_| 1.7e9),
        ),
        (
            l(&[
                ("__name__", "weird"),
                ("job", "multi\nline"),
                ("path", "/a.b"),
            ]),
            samples(0, 10, |i| -(i as f64) * 1e-3),
        ),
        (
            l(&[("__name__", "weird"), ("job", "x"), ("path", "/aXb")]),
            samples(5, 15, |i| f64::MAX / (i as f64)),
        ),
    ]
}

/// Failed checks, one message each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures(pub Vec<String>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} conformance check(s) failed:", self.0.len())?;
        for m in &self.0 {
            writeln!(f, "- {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// The suite, for a store holding [`dataset`] with `external_labels` attached.
#[derive(Debug, Clone, Default)]
pub struct Suite {
    /// Labels the store adds to every series.
    pub external_labels: Labels,
}

/// Expected series: full labels (external labels attached) and samples.
type Expected = Vec<(Labels, Vec<(i64, f64)>)>;

impl Suite {
    /// A suite for a store with these external labels.
    pub fn new(external_labels: Labels) -> Self {
        Suite { external_labels }
    }

    fn data(&self) -> Expected {
        let mut d: Expected = dataset()
            .into_iter()
            .map(|(l, s)| (extlabels::attach(&l, &self.external_labels), s))
            .collect();
        d.sort_by(|a, b| a.0.cmp(&b.0));
        d
    }

    /// Series matching `ms` with samples in `[mint, maxt]`, samples trimmed.
    fn expect(&self, ms: &[Matcher], mint: i64, maxt: i64) -> Expected {
        self.data()
            .into_iter()
            .filter(|(l, _)| ms.iter().all(|m| m.matches(l.get(m.name()).unwrap_or(""))))
            .map(|(l, s)| {
                let s: Vec<_> = s
                    .into_iter()
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .collect();
                (l, s)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect()
    }

    /// Runs every check; all failures are reported together.
    pub async fn run(&self, store: &dyn StoreApi) -> Result<(), Failures> {
        let mut failures = Vec::new();
        macro_rules! run {
            ($name:literal, $e:expr) => {
                if let Err(m) = $e.await {
                    failures.push(format!("{}: {}", $name, m));
                }
            };
        }
        run!("info", self.check_info(store));
        run!("matchers", self.check_matchers(store));
        run!("time range", self.check_time_range(store));
        run!("skip_chunks", self.check_skip_chunks(store));
        run!("limit and batching", self.check_limit_and_batches(store));
        run!("label names", self.check_label_names(store));
        run!("label values", self.check_label_values(store));
        run!("bad matchers", self.check_bad_matchers(store));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Failures(failures))
        }
    }

    async fn check_info(&self, store: &dyn StoreApi) -> Check {
        let info = store
            .info()
            .await
            .map_err(|e| format!("Info failed: {e}"))?;
        let s = info.store.as_ref().ok_or("no store section in Info")?;
        ensure!(
            s.min_time <= T0 && s.max_time >= T_END,
            "Info time range [{}, {}] does not cover the data [{T0}, {T_END}]",
            s.min_time,
            s.max_time
        );
        if !self.external_labels.is_empty() {
            let sets: Vec<Labels> = info
                .label_sets
                .iter()
                .map(|z| labels_from_pb(&z.labels))
                .collect();
            ensure!(
                sets.contains(&self.external_labels),
                "external labels {} not among Info label sets {sets:?}",
                self.external_labels
            );
        }
        Ok(())
    }

    /// Series for a request, consecutive frames of one series joined, checked for
    /// order and uniqueness.
    async fn fetch(
        &self,
        store: &dyn StoreApi,
        req: pb::SeriesRequest,
    ) -> Result<Vec<(Labels, Vec<pb::AggrChunk>)>, String> {
        let what = crate::convert::matchers_from_pb(&req.matchers)
            .map(|ms| format!("{ms:?}"))
            .unwrap_or_default();
        let stream = store
            .series(req)
            .await
            .map_err(|e| format!("Series {what} failed: {e}"))?;
        let (series, _) = collect_series(stream)
            .await
            .map_err(|e| format!("Series {what} stream failed: {e}"))?;
        let mut out: Vec<(Labels, Vec<pb::AggrChunk>)> = Vec::new();
        for s in series {
            ensure!(
                s.labels.windows(2).all(|w| w[0].name < w[1].name),
                "series labels not sorted/unique: {:?}",
                s.labels
            );
            let l = labels_from_pb(&s.labels);
            match out.last_mut() {
                Some((last, chunks)) if *last == l => chunks.extend(s.chunks),
                Some((last, _)) if *last > l => {
                    return Err(format!("series out of order: {l} after {last}"))
                }
                _ => out.push((l, s.chunks)),
            }
        }
        Ok(out)
    }

    async fn select(&self, store: &dyn StoreApi, ms: &[Matcher], mint: i64, maxt: i64) -> Check {
        let req = pb::SeriesRequest {
            min_time: mint,
            max_time: maxt,
            matchers: matchers_to_pb(ms),
            ..Default::default()
        };
        let got = self.fetch(store, req).await?;
        let want = self.expect(ms, mint, maxt);
        let ctx = format!("{ms:?} in [{mint}, {maxt}]");
        let want_labels: Vec<&Labels> = want.iter().map(|w| &w.0).collect();
        // Series without samples in range may come back only with chunks that
        // overlap the range; those are checked below like the others.
        let got_in_range: Vec<&Labels> = got
            .iter()
            .map(|g| &g.0)
            .filter(|l| want_labels.contains(l))
            .collect();
        ensure!(
            got_in_range == want_labels,
            "{ctx}: got series {:?}, want {:?}",
            got.iter().map(|g| g.0.to_string()).collect::<Vec<_>>(),
            want_labels
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        );
        let all = self.expect(ms, i64::MIN, i64::MAX);
        for (l, chunks) in &got {
            ensure!(
                all.iter().any(|a| &a.0 == l),
                "{ctx}: unexpected series {l}"
            );
            ensure!(!chunks.is_empty(), "{ctx}: series {l} has no chunks");
            let mut samples = Vec::new();
            let mut last_min = i64::MIN;
            for c in chunks {
                ensure!(
                    c.min_time <= maxt && c.max_time >= mint,
                    "{ctx}: {l}: chunk [{}, {}] outside the range",
                    c.min_time,
                    c.max_time
                );
                ensure!(
                    c.min_time >= last_min,
                    "{ctx}: {l}: chunks not sorted by min_time"
                );
                last_min = c.min_time;
                let raw = c.raw.as_ref().ok_or(format!("{ctx}: {l}: no raw chunk"))?;
                let it = iter_wire_chunk(raw).map_err(|e| format!("{ctx}: {l}: {e}"))?;
                for s in it {
                    let (t, v) = s.map_err(|e| format!("{ctx}: {l}: {e}"))?;
                    let SampleValue::Float(v) = v else {
                        return Err(format!("{ctx}: {l}: unexpected histogram sample"));
                    };
                    ensure!(
                        t >= c.min_time && t <= c.max_time,
                        "{ctx}: {l}: sample at {t} outside its chunk [{}, {}]",
                        c.min_time,
                        c.max_time
                    );
                    if t >= mint && t <= maxt {
                        samples.push((t, v.to_bits()));
                    }
                }
            }
            samples.sort_unstable();
            samples.dedup();
            let want: Vec<(i64, u64)> = want
                .iter()
                .find(|w| &w.0 == l)
                .map(|w| w.1.iter().map(|&(t, v)| (t, v.to_bits())).collect())
                .unwrap_or_default();
            ensure!(
                samples == want,
                "{ctx}: {l}: samples in range differ: got {} samples, want {} (first got {:?}, first want {:?})",
                samples.len(),
                want.len(),
                samples.first(),
                want.first()
            );
        }
        Ok(())
    }

    fn matcher_cases(&self) -> Vec<Vec<Matcher>> {
        let m = |k, n: &str, v: &str| Matcher::new(k, n, v).expect("valid matcher");
        use MatchType::*;
        let mut cases = vec![
            vec![m(Equal, "__name__", "up")],
            vec![m(Equal, "__name__", "up"), m(NotEqual, "job", "api")],
            vec![m(Regex, "__name__", "up|http_.*")],
            vec![m(Regex, "job", "ap")],
            vec![m(Regex, "job", "a.+"), m(Regex, "instance", "a|b")],
            vec![m(Equal, "__name__", "up"), m(NotRegex, "instance", "a|c")],
            vec![m(Regex, "__name__", ".+"), m(Equal, "instance", "")],
            vec![m(Regex, "job", "multi.line")],
            vec![m(Equal, "path", "/a.b")],
            vec![m(Regex, "path", "/a.b")],
            vec![m(Equal, "nonexistent", "x")],
            vec![m(Equal, "__name__", "up"), m(Equal, "nonexistent", "")],
            vec![m(Regex, "__name__", "(?i)UP")],
            vec![
                m(Equal, "__name__", "http_requests_total"),
                m(NotEqual, "code", ""),
            ],
        ];
        if let Some(e) = self.external_labels.iter().next() {
            cases.push(vec![
                m(Equal, &e.name, &e.value),
                m(Equal, "__name__", "up"),
            ]);
            cases.push(vec![m(NotEqual, &e.name, &e.value)]);
            cases.push(vec![m(Regex, "__name__", ".+"), m(Equal, &e.name, "")]);
        }
        cases
    }

    async fn check_matchers(&self, store: &dyn StoreApi) -> Check {
        for ms in self.matcher_cases() {
            self.select(store, &ms, i64::MIN, i64::MAX).await?;
            self.select(store, &ms, T0, T_END).await?;
        }
        Ok(())
    }

    async fn check_time_range(&self, store: &dyn StoreApi) -> Check {
        let all = vec![Matcher::new(MatchType::Regex, "__name__", ".+").expect("valid")];
        let min = |n: i64| T0 + n * 60_000;
        for (mint, maxt) in [
            (min(40), min(70)),
            (min(0), min(29)),
            (min(90), T_END + 3_600_000),
            (T0 - 3_600_000, T0),
            (T_END, T_END),
            (min(31) + 1, min(31) + 2),
        ] {
            self.select(store, &all, mint, maxt).await?;
        }
        let got = self
            .fetch(
                store,
                pb::SeriesRequest {
                    min_time: T_END + 1,
                    max_time: T_END + 3_600_000,
                    matchers: matchers_to_pb(&all),
                    ..Default::default()
                },
            )
            .await?;
        ensure!(got.is_empty(), "series after the data: got {}", got.len());
        Ok(())
    }

    async fn check_skip_chunks(&self, store: &dyn StoreApi) -> Check {
        let ms = vec![Matcher::new(MatchType::Regex, "__name__", "up|weird").expect("valid")];
        let got = self
            .fetch(
                store,
                pb::SeriesRequest {
                    min_time: T0,
                    max_time: T_END,
                    matchers: matchers_to_pb(&ms),
                    skip_chunks: true,
                    ..Default::default()
                },
            )
            .await?;
        let want: Vec<Labels> = self
            .expect(&ms, T0, T_END)
            .into_iter()
            .map(|w| w.0)
            .collect();
        let labels: Vec<Labels> = got.iter().map(|g| g.0.clone()).collect();
        ensure!(labels == want, "skip_chunks: got {labels:?}, want {want:?}");
        ensure!(
            got.iter().all(|g| g.1.is_empty()),
            "skip_chunks: chunks were sent"
        );
        Ok(())
    }

    async fn check_limit_and_batches(&self, store: &dyn StoreApi) -> Check {
        let ms = vec![Matcher::new(MatchType::Regex, "__name__", ".+").expect("valid")];
        let req = pb::SeriesRequest {
            min_time: T0,
            max_time: T_END,
            matchers: matchers_to_pb(&ms),
            ..Default::default()
        };
        let plain = self.fetch(store, req.clone()).await?;
        let batched = self
            .fetch(
                store,
                pb::SeriesRequest {
                    response_batch_size: 3,
                    ..req.clone()
                },
            )
            .await?;
        ensure!(
            plain == batched,
            "response_batch_size=3 changed the answer ({} vs {} series)",
            plain.len(),
            batched.len()
        );
        let limited = self
            .fetch(store, pb::SeriesRequest { limit: 2, ..req })
            .await?;
        ensure!(
            !limited.is_empty() && limited.len() <= 2,
            "limit=2 returned {} series",
            limited.len()
        );
        Ok(())
    }

    async fn check_label_names(&self, store: &dyn StoreApi) -> Check {
        let up = vec![Matcher::equal("__name__", "up")];
        let late = T0 + 90 * 60_000;
        for (ms, start, end) in [
            (vec![], T0, T_END),
            (up.clone(), T0, T_END),
            (vec![Matcher::equal("job", "x")], T0, T_END),
            (vec![Matcher::equal("__name__", "weird")], late, T_END),
            (vec![], T_END + 1, T_END + 1000),
        ] {
            let r = store
                .label_names(pb::LabelNamesRequest {
                    start,
                    end,
                    matchers: matchers_to_pb(&ms),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("LabelNames {ms:?} failed: {e}"))?;
            let names_of = |d: Expected| -> BTreeSet<String> {
                d.iter()
                    .flat_map(|(l, _)| l.iter().map(|l| l.name.clone()))
                    .collect()
            };
            let must = names_of(self.expect(&ms, start, end));
            let may = names_of(self.expect(&ms, i64::MIN, i64::MAX));
            check_set("LabelNames", &ms, &r.names, &must, &may)?;
        }
        Ok(())
    }

    async fn check_label_values(&self, store: &dyn StoreApi) -> Check {
        let up = vec![Matcher::equal("__name__", "up")];
        let after_30m = T0 + 35 * 60_000;
        for (label, ms, start, end) in [
            ("__name__", vec![], T0, T_END),
            ("job", up.clone(), T0, T_END),
            ("instance", vec![], T0, T_END),
            ("code", vec![], after_30m, T_END),
            ("job", up.clone(), T0, T0 + 60_000),
            ("nonexistent", vec![], T0, T_END),
            (
                "instance",
                vec![Matcher::new(MatchType::NotRegex, "instance", "a").expect("valid")],
                T0,
                T_END,
            ),
        ] {
            let r = store
                .label_values(pb::LabelValuesRequest {
                    label: label.to_string(),
                    start,
                    end,
                    matchers: matchers_to_pb(&ms),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("LabelValues {label} {ms:?} failed: {e}"))?;
            let values_of = |d: Expected| -> BTreeSet<String> {
                d.iter()
                    .filter_map(|(l, _)| l.get(label).map(str::to_string))
                    .collect()
            };
            let must = values_of(self.expect(&ms, start, end));
            let may = values_of(self.expect(&ms, i64::MIN, i64::MAX));
            check_set(
                &format!("LabelValues({label})"),
                &ms,
                &r.values,
                &must,
                &may,
            )?;
        }
        Ok(())
    }

    async fn check_bad_matchers(&self, store: &dyn StoreApi) -> Check {
        let bad = vec![pb::LabelMatcher {
            r#type: pb::label_matcher::Type::Re as i32,
            name: "job".into(),
            value: "(unclosed".into(),
        }];
        let res = match store
            .series(pb::SeriesRequest {
                min_time: T0,
                max_time: T_END,
                matchers: bad.clone(),
                ..Default::default()
            })
            .await
        {
            Err(e) => Err(e),
            Ok(stream) => collect_series(stream).await.map(|_| ()),
        };
        expect_invalid("Series", res)?;
        let res = store
            .label_values(pb::LabelValuesRequest {
                label: "job".into(),
                start: T0,
                end: T_END,
                matchers: bad.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ());
        expect_invalid("LabelValues", res)?;
        let res = store
            .label_names(pb::LabelNamesRequest {
                start: T0,
                end: T_END,
                matchers: bad,
                ..Default::default()
            })
            .await
            .map(|_| ());
        expect_invalid("LabelNames", res)
    }
}

fn expect_invalid(what: &str, res: Result<(), Error>) -> Check {
    match res {
        Err(Error::InvalidArgument(m)) => {
            ensure!(
                m.contains("(unclosed"),
                "{what}: InvalidArgument does not name the pattern: {m:?}"
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "{what} with a bad regex: want InvalidArgument, got {e}"
        )),
        Ok(()) => Err(format!("{what} with a bad regex succeeded")),
    }
}

fn check_set(
    what: &str,
    ms: &[Matcher],
    got: &[String],
    must: &BTreeSet<String>,
    may: &BTreeSet<String>,
) -> Check {
    ensure!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{what} {ms:?}: not sorted and unique: {got:?}"
    );
    let set: BTreeSet<String> = got.iter().cloned().collect();
    ensure!(
        set.is_superset(must) && set.is_subset(may),
        "{what} {ms:?}: got {got:?}, want all of {must:?} and nothing outside {may:?}"
    );
    Ok(())
}
