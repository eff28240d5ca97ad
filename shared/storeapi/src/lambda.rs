//! The StoreAPI over function invocations (AWS Lambda `Invoke`): the querier
//! in one function asks a store-read function with a JSON payload carrying the
//! protobuf request, and reads back a JSON payload carrying protobuf frames.
//!
//! - [`handle`]: the function side: one invocation payload in, one out, over
//!   any [`StoreApi`].
//! - [`InvokedStore`]: the caller side: a [`StoreApi`] whose calls are
//!   invocations through an [`Invoker`] (the AWS SDK in production, a local
//!   emulator in tests), so the querier doesn't care.
//! - [`TimeSplitStore`]: fans one Series request out over several invocations
//!   by time (2 h-aligned slices, the blocks' natural boundaries) and merges
//!   the answers; [`SpanRouter`] sends only wide requests that way.
//!
//! Payload (JSON, as Lambda requires): `{"method": "series", "request":
//! "<base64 protobuf>", "after": "<base64 protobuf labels>"?}`; answer:
//! `{"frames": ["<base64 SeriesResponse>", ...], "next": "<base64 labels>"?}`,
//! `{"response": "<base64 protobuf>"}` for the other methods, or `{"error":
//! {"code": <gRPC code>, "message": "..."}}`. A Series answer stops before
//! [`MAX_ANSWER_BYTES`]; `next` names the last series sent, and the caller
//! repeats the request with `after` = `next` until no `next` comes back
//! (series are sorted by labels, so the store skips what was sent).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::StreamExt;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::{pb, Error, Result, SeriesStream, StoreApi};

/// Largest answer payload (bytes of JSON) a Series invocation returns before
/// paginating: under Lambda's 6 MB synchronous response limit with room for
/// the envelope.
pub const MAX_ANSWER_BYTES: usize = 5 << 20;

/// The StoreAPI method an invocation calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `Info` (request: empty).
    Info,
    /// `Series` (request: `SeriesRequest`).
    Series,
    /// `LabelNames` (request: `LabelNamesRequest`).
    LabelNames,
    /// `LabelValues` (request: `LabelValuesRequest`).
    LabelValues,
}

/// An invocation payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The method called.
    pub method: Method,
    /// The request message, protobuf, base64.
    #[serde(default)]
    pub request: String,
    /// For a Series page after the first: the labels (protobuf
    /// `ZLabelSet`, base64) of the last series already received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// An error crossing the invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// gRPC status code (3 = invalid argument, 14 = unavailable, ...).
    pub code: i32,
    /// The message.
    pub message: String,
}

/// An answer payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Series frames (protobuf `SeriesResponse`, base64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<String>,
    /// More series follow: repeat the request with `after` set to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The response of a non-Series method (protobuf, base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        WireError {
            code: e.code() as i32,
            message: e.message().to_string(),
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        Error::from(tonic::Status::new(tonic::Code::from_i32(w.code), w.message))
    }
}

fn decode<M: Message + Default>(b64: &str, what: &str) -> Result<M> {
    let bytes = B64
        .decode(b64.as_bytes())
        .map_err(|e| Error::InvalidArgument(format!("{what}: bad base64: {e}")))?;
    M::decode(bytes.as_slice()).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))
}

fn encode(m: &impl Message) -> String {
    B64.encode(m.encode_to_vec())
}

fn series_labels(s: &pb::Series) -> Vec<(String, String)> {
    s.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Answers one invocation `payload` (JSON bytes) from `store`. Never fails:
/// errors travel in the answer.
pub async fn handle(store: &dyn StoreApi, payload: &[u8]) -> Answer {
    match handle_inner(store, payload).await {
        Ok(a) => a,
        Err(e) => Answer {
            error: Some(WireError::from(&e)),
            ..Answer::default()
        },
    }
}

async fn handle_inner(store: &dyn StoreApi, payload: &[u8]) -> Result<Answer> {
    let inv: Invocation = serde_json::from_slice(payload)
        .map_err(|e| Error::InvalidArgument(format!("invocation payload: {e}")))?;
    match inv.method {
        Method::Info => Ok(Answer {
            response: Some(encode(&store.info().await?)),
            ..Answer::default()
        }),
        Method::LabelNames => {
            let req: pb::LabelNamesRequest = decode(&inv.request, "LabelNamesRequest")?;
            Ok(Answer {
                response: Some(encode(&store.label_names(req).await?)),
                ..Answer::default()
            })
        }
        Method::LabelValues => {
            let req: pb::LabelValuesRequest = decode(&inv.request, "LabelValuesRequest")?;
            Ok(Answer {
                response: Some(encode(&store.label_values(req).await?)),
                ..Answer::default()
            })
        }
        Method::Series => {
            let req: pb::SeriesRequest = decode(&inv.request, "SeriesRequest")?;
            let after = match &inv.after {
                Some(a) => Some(series_labels(&pb::Series {
                    labels: decode::<pb::ZLabelSet>(a, "after")?.labels,
                    chunks: Vec::new(),
                })),
                None => None,
            };
            series_page(store.series(req).await?, after, MAX_ANSWER_BYTES).await
        }
    }
}

/// One page of a Series answer: the frames of series after `after`, until
/// `max_bytes` of encoded frames.
async fn series_page(
    mut stream: SeriesStream,
    after: Option<Vec<(String, String)>>,
    max_bytes: usize,
) -> Result<Answer> {
    use pb::series_response::Result as R;
    let mut answer = Answer::default();
    let mut bytes = 0usize;
    let mut last: Option<pb::Series> = None;
    while let Some(frame) = stream.next().await {
        let frame = frame?;
        let series: Vec<pb::Series> = match frame.result {
            Some(R::Series(s)) => vec![s],
            Some(R::Batch(b)) => b.series,
            Some(other) => {
                // Warnings and hints of a resumed page were sent already.
                if after.is_none() {
                    let f = encode(&pb::SeriesResponse {
                        result: Some(other),
                    });
                    bytes += f.len() + 3;
                    answer.frames.push(f);
                }
                continue;
            }
            None => continue,
        };
        for s in series {
            if let Some(a) = &after {
                if series_labels(&s) <= *a {
                    continue;
                }
            }
            let f = encode(&crate::series_frame(s.clone()));
            if bytes + f.len() > max_bytes && !answer.frames.is_empty() {
                if let Some(l) = &last {
                    answer.next = Some(encode(&pb::ZLabelSet {
                        labels: l.labels.clone(),
                    }));
                }
                return Ok(answer);
            }
            bytes += f.len() + 3;
            answer.frames.push(f);
            last = Some(s);
        }
    }
    Ok(answer)
}

/// Invokes a function with a payload and returns its answer payload.
#[async_trait::async_trait]
pub trait Invoker: Send + Sync {
    /// Calls `function` with `payload` (JSON bytes); the function's answer
    /// (JSON bytes), or [`Error::Unavailable`] when it could not be invoked or
    /// failed.
    async fn invoke(&self, function: &str, payload: Vec<u8>) -> Result<Vec<u8>>;
}

/// A [`StoreApi`] answered by invocations of `function`.
#[derive(Clone)]
pub struct InvokedStore {
    invoker: Arc<dyn Invoker>,
    function: String,
}

impl InvokedStore {
    /// The store that `function`, invoked through `invoker`, serves.
    pub fn new(invoker: Arc<dyn Invoker>, function: impl Into<String>) -> InvokedStore {
        InvokedStore {
            invoker,
            function: function.into(),
        }
    }

    async fn call(&self, inv: &Invocation) -> Result<Answer> {
        let payload = serde_json::to_vec(inv).map_err(|e| Error::Internal(e.to_string()))?;
        let out = self.invoker.invoke(&self.function, payload).await?;
        let answer: Answer = serde_json::from_slice(&out).map_err(|e| {
            Error::Corrupt(format!(
                "answer of function {}: {e}: {}",
                self.function,
                String::from_utf8_lossy(&out[..out.len().min(200)])
            ))
        })?;
        if let Some(e) = answer.error {
            return Err(e.into());
        }
        Ok(answer)
    }

    async fn unary<M: Message + Default>(&self, method: Method, request: String) -> Result<M> {
        let a = self
            .call(&Invocation {
                method,
                request,
                after: None,
            })
            .await?;
        let r = a.response.ok_or_else(|| {
            Error::Corrupt(format!(
                "function {}: answer without response",
                self.function
            ))
        })?;
        decode(&r, "response").map_err(|e| Error::Corrupt(e.message().to_string()))
    }
}

#[async_trait::async_trait]
impl StoreApi for InvokedStore {
    async fn info(&self) -> Result<pb::info::InfoResponse> {
        self.unary(Method::Info, String::new()).await
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        let this = self.clone();
        let request = encode(&req);
        // Pages are fetched as the stream is read.
        let stream = futures::stream::unfold(Some(None), move |state: Option<Option<String>>| {
            let this = this.clone();
            let request = request.clone();
            async move {
                let after = state?;
                let inv = Invocation {
                    method: Method::Series,
                    request,
                    after,
                };
                match this.call(&inv).await {
                    Err(e) => Some((vec![Err(e)], None)),
                    Ok(a) => {
                        let frames: Vec<Result<pb::SeriesResponse>> = a
                            .frames
                            .iter()
                            .map(|f| {
                                decode::<pb::SeriesResponse>(f, "frame")
                                    .map_err(|e| Error::Corrupt(e.message().to_string()))
                            })
                            .collect();
                        Some((frames, a.next.map(Some)))
                    }
                }
            }
        })
        .flat_map(futures::stream::iter);
        Ok(stream.boxed())
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        self.unary(Method::LabelNames, encode(&req)).await
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        self.unary(Method::LabelValues, encode(&req)).await
    }
}

/// Slices of `[mint, maxt]` for `width` parallel requests: at most `width`
/// slices, cut on multiples of 2 h so that a block is read by one slice.
pub fn time_slices(mint: i64, maxt: i64, width: usize) -> Vec<(i64, i64)> {
    const ALIGN: i64 = 2 * 3600 * 1000;
    if width <= 1 || maxt <= mint {
        return vec![(mint, maxt)];
    }
    let span = maxt - mint;
    let per = (span / width as i64).max(1);
    let per = ((per + ALIGN - 1) / ALIGN).max(1) * ALIGN;
    let mut out = Vec::new();
    let mut start = mint;
    while start <= maxt {
        // The next cut: the first 2h boundary at least `per` after `start`.
        let cut = (start + per).div_euclid(ALIGN) * ALIGN;
        let end = if cut <= start || cut > maxt || out.len() + 1 == width {
            maxt
        } else {
            cut - 1
        };
        out.push((start, end));
        if end == maxt {
            break;
        }
        start = end + 1;
    }
    out
}

/// A [`StoreApi`] that splits Series requests by time over `width` concurrent
/// calls of `inner` and merges the answers (chunks overlapping two slices
/// come back twice and are dropped as exact duplicates by the merge).
pub struct TimeSplitStore {
    inner: Arc<dyn StoreApi>,
    width: usize,
}

impl TimeSplitStore {
    /// Splits over at most `width` calls.
    pub fn new(inner: Arc<dyn StoreApi>, width: usize) -> TimeSplitStore {
        TimeSplitStore {
            inner,
            width: width.max(1),
        }
    }
}

#[async_trait::async_trait]
impl StoreApi for TimeSplitStore {
    async fn info(&self) -> Result<pb::info::InfoResponse> {
        self.inner.info().await
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        let slices = time_slices(req.min_time, req.max_time, self.width);
        if slices.len() == 1 {
            return self.inner.series(req).await;
        }
        let calls = slices.into_iter().map(|(mint, maxt)| {
            let mut r = req.clone();
            r.min_time = mint;
            r.max_time = maxt;
            let inner = Arc::clone(&self.inner);
            async move { inner.series(r).await }
        });
        let streams = futures::future::try_join_all(calls).await?;
        Ok(crate::merge::merge_series_streams(streams))
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        self.inner.label_names(req).await
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        self.inner.label_values(req).await
    }
}

/// A [`StoreApi`] that answers narrow requests from `narrow` (e.g. the
/// store-read handler in-process) and requests spanning more than
/// `threshold_ms` from `wide` (e.g. a [`TimeSplitStore`] over invocations).
pub struct SpanRouter {
    narrow: Arc<dyn StoreApi>,
    wide: Arc<dyn StoreApi>,
    threshold_ms: i64,
}

impl SpanRouter {
    /// Routes by the span of each request's time range.
    pub fn new(narrow: Arc<dyn StoreApi>, wide: Arc<dyn StoreApi>, threshold_ms: i64) -> Self {
        SpanRouter {
            narrow,
            wide,
            threshold_ms,
        }
    }

    fn pick(&self, mint: i64, maxt: i64) -> &Arc<dyn StoreApi> {
        if maxt.saturating_sub(mint) > self.threshold_ms {
            &self.wide
        } else {
            &self.narrow
        }
    }
}

#[async_trait::async_trait]
impl StoreApi for SpanRouter {
    async fn info(&self) -> Result<pb::info::InfoResponse> {
        self.narrow.info().await
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        self.pick(req.min_time, req.max_time).series(req).await
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        self.pick(req.start, req.end).label_names(req).await
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        self.pick(req.start, req.end).label_values(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use model::Labels;

    /// Invokes `handle` in-process, with a small page size to force paging.
    struct Local(Arc<dyn StoreApi>);

    #[async_trait::async_trait]
    impl Invoker for Local {
        async fn invoke(&self, _f: &str, payload: Vec<u8>) -> Result<Vec<u8>> {
            Ok(serde_json::to_vec(&handle(&*self.0, &payload).await).unwrap())
        }
    }

    fn data(n: usize) -> Vec<(Labels, Vec<(i64, f64)>)> {
        (0..n)
            .map(|i| {
                (
                    Labels::from_pairs([("__name__", "m"), ("i", &*format!("{i:05}"))]),
                    (0..100i64)
                        .map(|t| (t * 15_000, (i as i64 * t) as f64))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn slices_cover_the_range_on_2h_boundaries() {
        let h = 3_600_000;
        assert_eq!(time_slices(0, 10, 4), vec![(0, 10)]);
        assert_eq!(time_slices(5, 24 * h, 1), vec![(5, 24 * h)]);
        let s = time_slices(5, 24 * h, 4);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].0, 5);
        assert_eq!(s.last().unwrap().1, 24 * h);
        for w in s.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
            assert_eq!(w[1].0 % (2 * h), 0);
        }
        // Never more slices than asked, whatever the range.
        for width in 1..20 {
            for span in [1, h, 7 * h, 3 * 24 * h, 30 * 24 * h] {
                let s = time_slices(-h, -h + span, width);
                assert!(s.len() <= width, "{width} {span}: {s:?}");
                assert_eq!((s[0].0, s.last().unwrap().1), (-h, -h + span));
            }
        }
    }

    #[tokio::test]
    async fn invoked_store_equals_the_store_across_pages() {
        let mem: Arc<dyn StoreApi> = Arc::new(MemStore::with_data(
            Labels::from_pairs([("replica", "a")]),
            &data(300),
        ));
        let req = pb::SeriesRequest {
            min_time: 0,
            max_time: 2_000_000,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "m".into(),
            }],
            ..Default::default()
        };
        let (want, _) = crate::collect_series(mem.series(req.clone()).await.unwrap())
            .await
            .unwrap();
        assert_eq!(want.len(), 300);

        // Small pages: resume after the last series until done.
        let stream = mem.series(req.clone()).await.unwrap();
        let first = series_page(stream, None, 4096).await.unwrap();
        assert!(first.next.is_some() && first.frames.len() < 300);
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let stream = mem.series(req.clone()).await.unwrap();
            let after_labels = after.as_ref().map(|a: &String| {
                series_labels(&pb::Series {
                    labels: decode::<pb::ZLabelSet>(a, "after").unwrap().labels,
                    chunks: vec![],
                })
            });
            let page = series_page(stream, after_labels, 4096).await.unwrap();
            for f in &page.frames {
                let frame: pb::SeriesResponse = decode(f, "frame").unwrap();
                got.extend(
                    crate::collect_series(futures::stream::iter([Ok(frame)]).boxed())
                        .await
                        .unwrap()
                        .0,
                );
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(got, want);

        // Through the Invoker (one page here) and split by time.
        let invoked: Arc<dyn StoreApi> =
            Arc::new(InvokedStore::new(Arc::new(Local(mem.clone())), "f"));
        let (got, _) = crate::collect_series(invoked.series(req.clone()).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, want);
        let split = TimeSplitStore::new(invoked.clone(), 3);
        let mut wide = req.clone();
        wide.min_time = -10 * 3_600_000;
        wide.max_time = 10 * 3_600_000;
        let (got_split, _) = crate::collect_series(split.series(wide.clone()).await.unwrap())
            .await
            .unwrap();
        let (want_wide, _) = crate::collect_series(mem.series(wide).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got_split, want_wide);
        assert_eq!(invoked.info().await.unwrap(), mem.info().await.unwrap());
    }

    /// Counts Series calls.
    struct Counting(Arc<dyn StoreApi>, std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl StoreApi for Counting {
        async fn info(&self) -> Result<pb::info::InfoResponse> {
            self.0.info().await
        }
        async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.series(req).await
        }
        async fn label_names(&self, r: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
            self.0.label_names(r).await
        }
        async fn label_values(&self, r: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
            self.0.label_values(r).await
        }
    }

    #[tokio::test]
    async fn span_router_sends_wide_requests_to_the_wide_store() {
        let mem: Arc<dyn StoreApi> = Arc::new(MemStore::with_data(Labels::default(), &data(3)));
        let narrow = Arc::new(Counting(mem.clone(), Default::default()));
        let wide = Arc::new(Counting(mem, Default::default()));
        let r = SpanRouter::new(narrow.clone(), wide.clone(), 3_600_000);
        let req = |mint, maxt| pb::SeriesRequest {
            min_time: mint,
            max_time: maxt,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "m".into(),
            }],
            ..Default::default()
        };
        let (a, _) = crate::collect_series(r.series(req(0, 300_000)).await.unwrap())
            .await
            .unwrap();
        let (b, _) = crate::collect_series(r.series(req(0, 7_200_000)).await.unwrap())
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(narrow.1.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(wide.1.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn errors_cross_the_invocation_as_the_same_variant() {
        let mem: Arc<dyn StoreApi> = Arc::new(MemStore::with_data(Labels::default(), &data(1)));
        let invoked = InvokedStore::new(Arc::new(Local(mem)), "f");
        let req = pb::SeriesRequest {
            min_time: 0,
            max_time: 1,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Re as i32,
                name: "__name__".into(),
                value: "(".into(),
            }],
            ..Default::default()
        };
        let err = match invoked.series(req).await {
            Ok(s) => crate::collect_series(s).await.unwrap_err(),
            Err(e) => e,
        };
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        // Garbage payloads are answered with an error, not a panic.
        let store = MemStore::with_data(Labels::default(), &data(1));
        for bad in [
            &b"not json"[..],
            br#"{"method":"series","request":"!!"}"#,
            br#"{"method":"nope"}"#,
        ] {
            let a = handle(&store, bad).await;
            assert_eq!(a.error.unwrap().code, tonic::Code::InvalidArgument as i32);
        }
    }
}
