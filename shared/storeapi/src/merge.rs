//! Merging series streams from several stores (Thanos's `MergeSeriesSets`).
//!
//! Each input is one store's answer: series sorted by labels, a series possibly
//! split over consecutive frames (or packed in batches). The output has one
//! frame per distinct label set, in label order; the chunks of all frames and
//! inputs for that series are combined in time order (by `min_time`, then
//! `max_time`) and exact duplicates, e.g. the same block served by two store
//! gateways, are kept once. Chunks that merely overlap stay: deduplicating
//! samples of overlapping chunks (replicas) is the querier's job after this.
//!
//! Warnings and hints frames pass through as they are read. The first error of
//! any input is yielded and ends the merged stream.

use std::cmp::Ordering;
use std::collections::VecDeque;

use futures::StreamExt;

use crate::convert::compare_pb_labels;
use crate::pb::{self, series_response::Result as Frame};
use crate::{series_frame, Result, SeriesStream};

/// Merges label-sorted series streams into one label-sorted stream with one
/// frame per series (see the module docs).
pub fn merge_series_streams(streams: Vec<SeriesStream>) -> SeriesStream {
    let state = Merger {
        inputs: streams
            .into_iter()
            .map(|stream| Input {
                stream,
                buf: VecDeque::new(),
                done: false,
            })
            .collect(),
        out: VecDeque::new(),
        failed: false,
    };
    futures::stream::unfold(state, |mut m| async move {
        let item = m.next().await?;
        Some((item, m))
    })
    .boxed()
}

/// Passes at most `limit` series through (batches are cut to fit), then ends;
/// `limit <= 0` means no limit. Warnings and hints before the cut pass through.
/// Apply after [`merge_series_streams`] to honour `SeriesRequest.limit` across
/// stores.
pub fn limit_series(stream: SeriesStream, limit: i64) -> SeriesStream {
    let Ok(limit) = usize::try_from(limit) else {
        return stream;
    };
    if limit == 0 {
        return stream;
    }
    futures::stream::unfold((stream, limit), |(mut s, left)| async move {
        if left == 0 {
            return None;
        }
        let mut item = s.next().await?;
        let mut left = left;
        if let Ok(frame) = &mut item {
            match &mut frame.result {
                Some(Frame::Series(_)) => left -= 1,
                Some(Frame::Batch(b)) => {
                    b.series.truncate(left);
                    left -= b.series.len();
                }
                _ => {}
            }
        }
        Some((item, (s, left)))
    })
    .boxed()
}

/// Orders chunks by `min_time`, then `max_time`, then content (raw, count, sum,
/// min, max, counter; absent first; then encoding and data). The hash field is
/// ignored: equal data is the same chunk whether or not a sender hashed it.
pub fn compare_aggr_chunks(a: &pb::AggrChunk, b: &pb::AggrChunk) -> Ordering {
    a.min_time
        .cmp(&b.min_time)
        .then(a.max_time.cmp(&b.max_time))
        .then_with(|| cmp_chunk(&a.raw, &b.raw))
        .then_with(|| cmp_chunk(&a.count, &b.count))
        .then_with(|| cmp_chunk(&a.sum, &b.sum))
        .then_with(|| cmp_chunk(&a.min, &b.min))
        .then_with(|| cmp_chunk(&a.max, &b.max))
        .then_with(|| cmp_chunk(&a.counter, &b.counter))
}

fn cmp_chunk(a: &Option<pb::Chunk>, b: &Option<pb::Chunk>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.r#type.cmp(&b.r#type).then_with(|| a.data.cmp(&b.data)),
    }
}

/// Sorts chunks into time order ([`compare_aggr_chunks`]) and drops exact
/// duplicates.
pub fn merge_chunks(mut chunks: Vec<pb::AggrChunk>) -> Vec<pb::AggrChunk> {
    chunks.sort_by(compare_aggr_chunks);
    chunks.dedup_by(|b, a| compare_aggr_chunks(a, b) == Ordering::Equal);
    chunks
}

struct Input {
    stream: SeriesStream,
    /// Series read but not yet merged (several when a batch arrived).
    buf: VecDeque<pb::Series>,
    done: bool,
}

struct Merger {
    inputs: Vec<Input>,
    /// Warnings and hints to pass on before the next series.
    out: VecDeque<pb::SeriesResponse>,
    failed: bool,
}

impl Merger {
    /// Reads input `i` until it has a series buffered or ends.
    async fn fill(&mut self, i: usize) -> Result<()> {
        let input = &mut self.inputs[i];
        while input.buf.is_empty() && !input.done {
            match input.stream.next().await {
                None => input.done = true,
                Some(Err(e)) => {
                    input.done = true;
                    return Err(e);
                }
                Some(Ok(frame)) => match frame.result {
                    Some(Frame::Series(s)) => input.buf.push_back(s),
                    Some(Frame::Batch(b)) => input.buf.extend(b.series),
                    Some(Frame::Warning(_)) | Some(Frame::Hints(_)) => self.out.push_back(frame),
                    None => {}
                },
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<pb::SeriesResponse>> {
        if self.failed {
            return None;
        }
        if let Some(f) = self.out.pop_front() {
            return Some(Ok(f));
        }
        for i in 0..self.inputs.len() {
            if let Err(e) = self.fill(i).await {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if let Some(f) = self.out.pop_front() {
            return Some(Ok(f));
        }
        // The input whose head series sorts first.
        let mut min: Option<usize> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            let Some(head) = input.buf.front() else {
                continue;
            };
            let better = match min {
                None => true,
                Some(m) => {
                    let cur = &self.inputs[m].buf[0];
                    compare_pb_labels(&head.labels, &cur.labels) == Ordering::Less
                }
            };
            if better {
                min = Some(i);
            }
        }
        let first = min?;
        let mut merged = self.inputs[first].buf.pop_front()?;
        for i in first..self.inputs.len() {
            loop {
                if let Err(e) = self.fill(i).await {
                    self.failed = true;
                    return Some(Err(e));
                }
                let input = &mut self.inputs[i];
                match input.buf.front() {
                    Some(h) if compare_pb_labels(&h.labels, &merged.labels) == Ordering::Equal => {
                        let s = input.buf.pop_front()?;
                        merged.chunks.extend(s.chunks);
                    }
                    _ => break,
                }
            }
        }
        merged.chunks = merge_chunks(std::mem::take(&mut merged.chunks));
        Some(Ok(series_frame(merged)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{collect_series, warning_frame, Error};

    fn lbl(v: &str) -> Vec<pb::Label> {
        vec![pb::Label {
            name: "s".into(),
            value: v.into(),
        }]
    }

    fn chunk(min: i64, max: i64, data: u8) -> pb::AggrChunk {
        crate::chunk::raw_aggr_chunk(
            min,
            max,
            pb::Chunk {
                r#type: 0,
                data: vec![data],
                hash: 0,
            },
        )
    }

    fn series(v: &str, chunks: Vec<pb::AggrChunk>) -> pb::Series {
        pb::Series {
            labels: lbl(v),
            chunks,
        }
    }

    fn stream(frames: Vec<Result<pb::SeriesResponse>>) -> SeriesStream {
        futures::stream::iter(frames).boxed()
    }

    #[test]
    fn merges_equal_series_and_drops_exact_duplicate_chunks() {
        let a = stream(vec![
            Ok(series_frame(series(
                "a",
                vec![chunk(0, 10, 1), chunk(11, 20, 2)],
            ))),
            Ok(series_frame(series("c", vec![chunk(0, 10, 3)]))),
        ]);
        let b = stream(vec![
            Ok(series_frame(series(
                "a",
                vec![chunk(11, 20, 2), chunk(5, 15, 9)],
            ))),
            Ok(warning_frame("b is partial")),
            Ok(series_frame(series("b", vec![chunk(0, 10, 4)]))),
        ]);
        let (got, warnings) =
            futures::executor::block_on(collect_series(merge_series_streams(vec![a, b]))).unwrap();
        assert_eq!(warnings, vec!["b is partial".to_string()]);
        assert_eq!(
            got,
            vec![
                series(
                    "a",
                    vec![chunk(0, 10, 1), chunk(5, 15, 9), chunk(11, 20, 2)]
                ),
                series("b", vec![chunk(0, 10, 4)]),
                series("c", vec![chunk(0, 10, 3)]),
            ]
        );
    }

    #[test]
    fn split_frames_and_batches_are_joined() {
        let a = stream(vec![
            Ok(series_frame(series("a", vec![chunk(0, 10, 1)]))),
            Ok(pb::SeriesResponse {
                result: Some(Frame::Batch(pb::SeriesBatch {
                    series: vec![series("a", vec![chunk(11, 20, 2)]), series("b", vec![])],
                })),
            }),
        ]);
        let (got, _) =
            futures::executor::block_on(collect_series(merge_series_streams(vec![a]))).unwrap();
        assert_eq!(
            got,
            vec![
                series("a", vec![chunk(0, 10, 1), chunk(11, 20, 2)]),
                series("b", vec![])
            ]
        );
    }

    #[test]
    fn error_ends_the_stream() {
        let a = stream(vec![
            Ok(series_frame(series("a", vec![]))),
            Err(Error::Unavailable("gone".into())),
            Ok(series_frame(series("z", vec![]))),
        ]);
        let b = stream(vec![Ok(series_frame(series("b", vec![])))]);
        let frames: Vec<_> =
            futures::executor::block_on(merge_series_streams(vec![a, b]).collect::<Vec<_>>());
        assert!(frames
            .iter()
            .any(|f| matches!(f, Err(Error::Unavailable(_)))));
        assert!(matches!(frames.last(), Some(Err(_))));
    }

    #[test]
    fn limit_counts_series_in_frames_and_batches() {
        let frames = || {
            stream(vec![
                Ok(warning_frame("w")),
                Ok(series_frame(series("a", vec![]))),
                Ok(pb::SeriesResponse {
                    result: Some(Frame::Batch(pb::SeriesBatch {
                        series: vec![series("b", vec![]), series("c", vec![])],
                    })),
                }),
                Ok(series_frame(series("d", vec![]))),
            ])
        };
        let names = |n: i64| {
            let (s, w) =
                futures::executor::block_on(collect_series(limit_series(frames(), n))).unwrap();
            assert_eq!(w.len(), 1);
            s.into_iter()
                .map(|s| s.labels[0].value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(2), vec!["a", "b"]);
        assert_eq!(names(1), vec!["a"]);
        assert_eq!(names(0), vec!["a", "b", "c", "d"]);
        assert_eq!(names(-1), vec!["a", "b", "c", "d"]);
        assert_eq!(names(3), vec!["a", "b", "c"]);
    }

    #[test]
    fn hash_does_not_defeat_dedup() {
        let mut hashed = chunk(0, 10, 1);
        if let Some(c) = hashed.raw.as_mut() {
            c.hash = crate::chunk::chunk_hash(&c.data);
        }
        assert_eq!(merge_chunks(vec![chunk(0, 10, 1), hashed]).len(), 1);
    }
}
