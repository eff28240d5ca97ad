//! Merging blocks into one, streaming: each source block is read through a
//! [`SeriesCursor`] (postings, then series entries in batches, then one series'
//! chunks at a time), the sources are merged by label set in order, and the result
//! goes straight into a [`BlockWriter`]. Memory holds one batch of series entries
//! per source and one series' chunks, never a block.
//!
//! Per series, chunks that overlap no other chunk pass through byte for byte
//! (horizontal compaction, downsampled 0xFF chunks included). Byte-identical
//! chunks (the same block uploaded twice, identical replicas) are kept once.
//! Overlapping float chunks (vertical compaction, replicas merged by
//! `--deduplication.replica-label`) are decoded, merged by timestamp (a timestamp
//! present in several sources is kept once, from the earliest source) and
//! re-encoded as XOR chunks of 120 samples. Tombstoned samples are dropped.

use std::collections::VecDeque;
use std::path::Path;

use bytes::Bytes;
use model::Labels;
use tsdb::block::{Block, BlockWriter, SeriesEntry, SAMPLES_PER_CHUNK};
use tsdb::chunkenc::{Encoding, XorChunk, XorIterator, ENCODING_AGGR};
use tsdb::meta::{BlockMeta, ThanosMeta};
use tsdb::tombstones::Interval;
use ulid::Ulid;

use crate::hooks::{Phase, PhaseHook};

/// Series entries fetched per index read.
pub const SERIES_BATCH: usize = 256;

/// Iterates a block's series in label order, fetching entries in batches.
pub struct SeriesCursor<'a> {
    block: &'a Block,
    refs: Vec<u64>,
    next: usize,
    buf: VecDeque<SeriesEntry>,
}

impl<'a> SeriesCursor<'a> {
    pub async fn new(block: &'a Block) -> tsdb::Result<SeriesCursor<'a>> {
        let refs = block.index().all_postings().await?;
        Ok(SeriesCursor {
            block,
            refs,
            next: 0,
            buf: VecDeque::new(),
        })
    }

    async fn fill(&mut self) -> tsdb::Result<()> {
        if self.buf.is_empty() && self.next < self.refs.len() {
            let end = (self.next + SERIES_BATCH).min(self.refs.len());
            let refs = &self.refs[self.next..end];
            let series = self.block.index().series_many(refs).await?;
            for ((labels, chunks), &series_ref) in series.into_iter().zip(refs) {
                self.buf.push_back(SeriesEntry {
                    labels,
                    series_ref,
                    chunks,
                });
            }
            self.next = end;
        }
        Ok(())
    }

    /// Series in the block.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// The next series' labels without consuming it.
    pub async fn peek(&mut self) -> tsdb::Result<Option<&Labels>> {
        self.fill().await?;
        Ok(self.buf.front().map(|s| &s.labels))
    }

    pub async fn next_series(&mut self) -> tsdb::Result<Option<SeriesEntry>> {
        self.fill().await?;
        Ok(self.buf.pop_front())
    }
}

/// How overlapping chunks of different sources are merged (Thanos's
/// `--deduplication.func`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DedupFunc {
    /// `""`: every distinct timestamp is kept (one sample per timestamp).
    #[default]
    Chain,
    /// `penalty`: replicas are deduplicated with Thanos's penalty algorithm.
    Penalty,
}

impl DedupFunc {
    /// Parses the flag value (`""` or `penalty`).
    pub fn parse(s: &str) -> Option<DedupFunc> {
        match s {
            "" => Some(DedupFunc::Chain),
            "penalty" => Some(DedupFunc::Penalty),
            _ => None,
        }
    }
}

/// One stored chunk of a series as input to [`merge_series_chunks`].
#[derive(Debug, Clone)]
pub struct InChunk {
    /// Index of the source block (its priority: lower wins for equal timestamps).
    pub source: usize,
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: u8,
    pub data: Bytes,
    /// Tombstoned intervals of the series in its block.
    pub deleted: Vec<Interval>,
}

/// An output chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct OutChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: u8,
    pub data: Bytes,
    pub samples: usize,
}

/// Samples a stored chunk holds (its header), for the block's stats. An aggregate
/// chunk counts the samples of its count aggregate.
pub fn chunk_num_samples(encoding: u8, data: &[u8]) -> usize {
    if encoding == ENCODING_AGGR {
        return crate::downsample::AggrChunk::parse(data).map_or(0, |a| a.num_samples());
    }
    if data.len() >= 2 {
        usize::from(u16::from_be_bytes([data[0], data[1]]))
    } else {
        0
    }
}

/// XOR chunks of at most [`SAMPLES_PER_CHUNK`] samples from sorted samples.
pub fn encode_xor(samples: &[(i64, f64)]) -> Vec<OutChunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|part| {
            let mut c = XorChunk::new();
            for &(t, v) in part {
                c.append(t, v);
            }
            OutChunk {
                min_time: part[0].0,
                max_time: part[part.len() - 1].0,
                encoding: Encoding::Xor as u8,
                data: Bytes::copy_from_slice(c.bytes()),
                samples: part.len(),
            }
        })
        .collect()
}

fn deleted(iv: &[Interval], t: i64) -> bool {
    iv.iter().any(|i| i.contains(t))
}

/// Merges the chunks of one series from all sources (in source priority order)
/// into non-overlapping output chunks. Errors only for overlapping (or
/// tombstoned) chunks that are not XOR, and for corrupt XOR data.
pub fn merge_series_chunks(chunks: Vec<InChunk>) -> tsdb::Result<Vec<OutChunk>> {
    merge_series_chunks_with(chunks, DedupFunc::Chain)
}

/// [`merge_series_chunks`] with a choice of deduplication for overlaps.
pub fn merge_series_chunks_with(
    mut chunks: Vec<InChunk>,
    dedup: DedupFunc,
) -> tsdb::Result<Vec<OutChunk>> {
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    // Drop byte-identical repeats.
    let mut uniq: Vec<InChunk> = Vec::with_capacity(chunks.len());
    for c in chunks {
        let dup = uniq
            .iter()
            .rev()
            .take_while(|u| u.min_time == c.min_time)
            .any(|u| {
                u.max_time == c.max_time
                    && u.encoding == c.encoding
                    && u.data == c.data
                    && u.deleted.is_empty()
                    && c.deleted.is_empty()
            });
        if !dup {
            uniq.push(c);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < uniq.len() {
        let mut j = i + 1;
        let mut max = uniq[i].max_time;
        while j < uniq.len() && uniq[j].min_time <= max {
            max = max.max(uniq[j].max_time);
            j += 1;
        }
        let cluster = &uniq[i..j];
        i = j;
        if cluster.len() == 1 {
            let c = &cluster[0];
            let touched = c
                .deleted
                .iter()
                .any(|iv| iv.mint <= c.max_time && iv.maxt >= c.min_time);
            if !touched {
                out.push(OutChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding,
                    data: c.data.clone(),
                    samples: chunk_num_samples(c.encoding, &c.data),
                });
                continue;
            }
        }
        // Samples per source, in source order.
        let mut per_source: Vec<(usize, Vec<(i64, f64)>)> = Vec::new();
        for c in cluster {
            if c.encoding != Encoding::Xor as u8 {
                return Err(tsdb::Error::Unsupported {
                    what: "vertical compaction".into(),
                    detail: format!(
                        "overlapping or tombstoned chunks of encoding {:#04x} (only XOR float chunks are merged)",
                        c.encoding
                    ),
                });
            }
            let idx = match per_source.iter().position(|(s, _)| *s == c.source) {
                Some(i) => i,
                None => {
                    per_source.push((c.source, Vec::new()));
                    per_source.len() - 1
                }
            };
            let samples = &mut per_source[idx].1;
            for s in XorIterator::new(&c.data)? {
                let (t, v) = s?;
                if !deleted(&c.deleted, t) {
                    samples.push((t, v));
                }
            }
        }
        per_source.sort_by_key(|(s, _)| *s);
        for (_, v) in per_source.iter_mut() {
            // Stable: within a source, the first of equal timestamps stays.
            v.sort_by_key(|s| s.0);
            v.dedup_by_key(|s| s.0);
        }
        let samples = match dedup {
            DedupFunc::Penalty => {
                let mut it = per_source.into_iter().map(|(_, v)| v);
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, v| penalty_dedup_pair(&acc, &v))
            }
            DedupFunc::Chain => {
                let mut all: Vec<(i64, f64)> =
                    per_source.into_iter().flat_map(|(_, v)| v).collect();
                // Stable: for equal timestamps the earliest source stays first.
                all.sort_by_key(|s| s.0);
                all.dedup_by_key(|s| s.0);
                all
            }
        };
        out.extend(encode_xor(&samples));
    }
    Ok(out)
}

use model::dedup::penalty_dedup_pair;

/// Why a merge failed: a source block that cannot be read (it should get a
/// no-compact mark), or anything else (retried next pass).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("block {id}: {err}")]
    BadBlock { id: Ulid, err: tsdb::Error },
    #[error("block {id}: {err}")]
    Transient { id: Ulid, err: tsdb::Error },
    #[error("writing the merged block: {0}")]
    Write(tsdb::Error),
}

/// Whether a read error means the block itself is bad (vs. a network or local
/// problem worth retrying).
pub fn is_bad_block_error(e: &tsdb::Error) -> bool {
    match e {
        tsdb::Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => true,
    }
}

fn read_err(id: Ulid) -> impl Fn(tsdb::Error) -> MergeError {
    move |err| {
        if is_bad_block_error(&err) {
            MergeError::BadBlock { id, err }
        } else {
            MergeError::Transient { id, err }
        }
    }
}

/// Options of [`merge_blocks_with`].
#[derive(Clone, Copy, Default)]
pub struct MergeOptions<'a> {
    pub dedup: DedupFunc,
    /// Told [`Phase::Merge`] once the first merged series is written.
    pub hook: Option<&'a dyn PhaseHook>,
    /// Called after each merged series with (source series consumed, total
    /// source series).
    pub on_series: Option<&'a (dyn Fn(u64, u64) + Send + Sync)>,
}

/// Merges `blocks` (in priority order: earlier wins for equal timestamps) into a
/// new block `ulid` under `out_dir`. Returns the written meta (times, stats) with
/// `thanos` set; the caller fills in compaction info.
pub async fn merge_blocks(
    blocks: &[Block],
    out_dir: &Path,
    ulid: Ulid,
    thanos: ThanosMeta,
) -> Result<BlockMeta, MergeError> {
    merge_blocks_with(blocks, out_dir, ulid, thanos, MergeOptions::default()).await
}

/// [`merge_blocks`] with options (deduplication, phase hook, progress).
pub async fn merge_blocks_with(
    blocks: &[Block],
    out_dir: &Path,
    ulid: Ulid,
    thanos: ThanosMeta,
    opts: MergeOptions<'_>,
) -> Result<BlockMeta, MergeError> {
    let mut w = BlockWriter::create_with_ulid(out_dir, ulid).map_err(MergeError::Write)?;
    let r = merge_into(blocks, &mut w, opts).await;
    if let Err(e) = r {
        w.abort();
        return Err(e);
    }
    w.finish(Some(thanos)).map_err(MergeError::Write)
}

async fn merge_into(
    blocks: &[Block],
    w: &mut BlockWriter,
    opts: MergeOptions<'_>,
) -> Result<(), MergeError> {
    let mut cursors = Vec::with_capacity(blocks.len());
    for b in blocks {
        let id = b.meta().ulid;
        cursors.push(SeriesCursor::new(b).await.map_err(read_err(id))?);
    }
    let total: u64 = cursors.iter().map(|c| c.refs.len() as u64).sum();
    // Output series written, and source series consumed (the progress: it
    // reaches `total` exactly).
    let mut done: u64 = 0;
    let mut consumed: u64 = 0;
    if let Some(f) = opts.on_series {
        f(0, total);
    }
    loop {
        // The smallest label set at the heads.
        let mut min: Option<Labels> = None;
        for (i, c) in cursors.iter_mut().enumerate() {
            let id = blocks[i].meta().ulid;
            if let Some(l) = c.peek().await.map_err(read_err(id))? {
                if min.as_ref().is_none_or(|m| l < m) {
                    min = Some(l.clone());
                }
            }
        }
        let Some(labels) = min else { break };
        let mut input = Vec::new();
        for (i, c) in cursors.iter_mut().enumerate() {
            let id = blocks[i].meta().ulid;
            if c.peek().await.map_err(read_err(id))? != Some(&labels) {
                continue;
            }
            let Some(s) = c.next_series().await.map_err(read_err(id))? else {
                continue;
            };
            consumed += 1;
            let refs: Vec<u64> = s.chunks.iter().map(|m| m.chunk_ref).collect();
            let raw = blocks[i]
                .chunks()
                .chunks(&refs)
                .await
                .map_err(read_err(id))?;
            let del = blocks[i].tombstones().get(s.series_ref).to_vec();
            for (m, rc) in s.chunks.iter().zip(raw) {
                input.push(InChunk {
                    source: i,
                    min_time: m.min_time,
                    max_time: m.max_time,
                    encoding: rc.encoding,
                    data: rc.data,
                    deleted: del.clone(),
                });
            }
        }
        let out = merge_series_chunks_with(input, opts.dedup).map_err(|err| {
            MergeError::BadBlock {
                // Attributed to the first source holding the series; the group is
                // retried without marking when several blocks are involved.
                id: blocks[0].meta().ulid,
                err,
            }
        })?;
        w.add_series_chunks(
            &labels,
            out.iter()
                .map(|c| (c.min_time, c.max_time, c.encoding, &c.data[..], c.samples)),
        )
        .map_err(MergeError::Write)?;
        done += 1;
        if let Some(f) = opts.on_series {
            f(consumed, total);
        }
        if done == 1 {
            if let Some(h) = opts.hook {
                h.reached(Phase::Merge).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xor(samples: &[(i64, f64)]) -> InChunk {
        let c = &encode_xor(samples)[0];
        InChunk {
            source: 0,
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: 1,
            data: c.data.clone(),
            deleted: vec![],
        }
    }

    fn decode(out: &[OutChunk]) -> Vec<(i64, f64)> {
        out.iter()
            .flat_map(|c| XorIterator::new(&c.data).unwrap().map(|s| s.unwrap()))
            .collect()
    }

    #[test]
    fn passes_through_non_overlapping() {
        let a = xor(&[(1, 1.0), (2, 2.0)]);
        let b = xor(&[(3, 3.0), (4, 4.0)]);
        let out = merge_series_chunks(vec![b.clone(), a.clone()]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, a.data);
        assert_eq!(out[1].data, b.data);
        assert_eq!(out[0].samples, 2);
    }

    #[test]
    fn dedups_identical_and_merges_overlaps() {
        let a = xor(&[(1, 1.0), (3, 3.0)]);
        let out = merge_series_chunks(vec![a.clone(), a.clone()]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, a.data);
        let b = xor(&[(2, 2.0), (3, 9.0), (4, 4.0)]);
        let out = merge_series_chunks(vec![a, b]).unwrap();
        assert_eq!(decode(&out), vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
    }

    #[test]
    fn applies_tombstones_and_cuts_chunks() {
        let s: Vec<(i64, f64)> = (0..300).map(|i| (i, i as f64)).collect();
        let mut c = xor(&s[..200]);
        // encode_xor cut at 120; build one chunk of 200 by hand.
        let mut x = XorChunk::new();
        for &(t, v) in &s[..200] {
            x.append(t, v);
        }
        c.data = Bytes::copy_from_slice(x.bytes());
        c.max_time = 199;
        c.deleted = vec![Interval { mint: 10, maxt: 19 }];
        let out = merge_series_chunks(vec![c]).unwrap();
        let got = decode(&out);
        assert_eq!(got.len(), 190);
        assert!(got.iter().all(|(t, _)| !(10..=19).contains(t)));
        assert_eq!(out.len(), 2);
    }

    fn from(source: usize, samples: &[(i64, f64)]) -> Vec<InChunk> {
        encode_xor(samples)
            .into_iter()
            .map(|c| InChunk {
                source,
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: 1,
                data: c.data,
                deleted: vec![],
            })
            .collect()
    }

    #[test]
    fn penalty_dedup_follows_one_replica_and_fills_its_gaps() {
        // Replica a scrapes at 0,15,30,... with a gap from 60s to 120s; replica b
        // scrapes 3s later throughout.
        let a: Vec<(i64, f64)> = (0..20)
            .map(|i| i * 15_000)
            .filter(|t| !(60_000..=120_000).contains(t))
            .map(|t| (t, 1.0))
            .collect();
        let b: Vec<(i64, f64)> = (0..20).map(|i| (i * 15_000 + 3_000, 2.0)).collect();
        let mut input = from(0, &a);
        input.extend(from(1, &b));
        let chain = decode(&merge_series_chunks_with(input.clone(), DedupFunc::Chain).unwrap());
        assert_eq!(chain.len(), a.len() + b.len(), "chain keeps both replicas");
        let got = decode(&merge_series_chunks_with(input, DedupFunc::Penalty).unwrap());
        // Thanos's choice: a while it has samples (b is penalised by twice the
        // scrape interval), then b from the first of its samples past that
        // penalty after a's last one (45s + 30s -> 78s), and b stays chosen.
        let mut want: Vec<(i64, f64)> = a[..4].to_vec();
        want.extend(b.iter().copied().filter(|s| s.0 >= 78_000));
        assert_eq!(got, want);
        let ts: Vec<i64> = got.iter().map(|s| s.0).collect();
        assert!(ts.windows(2).all(|w| w[1] - w[0] >= 15_000), "{ts:?}");
    }
}
