//! Downsampling as Thanos does it (pkg/compact/downsample), byte for byte: raw
//! samples into 5m aggregate chunks, 5m aggregate chunks into 1h ones.
//!
//! An aggregate chunk (encoding 0xFF) holds five XOR sub-chunks in the order
//! count, sum, min, max, counter, each `uvarint(len) | encoding | data`, a lone 0
//! for an absent one. Each window's sample is stamped `t - t % res + res - 1`,
//! clamped to the batch's last sample. The counter sub-chunk starts with the
//! batch's first raw value, then the reset-corrected running counter per window,
//! and ends with the last raw value repeated at the last window's timestamp, so
//! counter resets between chunks stay visible to `rate`.

use std::path::Path;

use bytes::Bytes;
use model::STALE_NAN_BITS;
use tsdb::block::{Block, BlockWriter};
use tsdb::chunkenc::{Encoding, XorChunk, XorIterator, ENCODING_AGGR};
use tsdb::meta::{BlockMeta, ThanosMeta};
use ulid::Ulid;

use crate::merge::{MergeError, OutChunk, SeriesCursor};

pub const AGGR_COUNT: usize = 0;
pub const AGGR_SUM: usize = 1;
pub const AGGR_MIN: usize = 2;
pub const AGGR_MAX: usize = 3;
pub const AGGR_COUNTER: usize = 4;

/// Samples per aggregate chunk Thanos aims at.
const TARGET_SAMPLES: i64 = 140;

fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The five sub-chunks of an aggregate chunk (XOR data, `None` = absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggrChunk(pub [Option<Vec<u8>>; 5]);

fn read_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut x = 0u64;
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        x |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(x);
        }
        shift += 7;
    }
}

impl AggrChunk {
    /// Thanos's `EncodeAggrChunk`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for c in &self.0 {
            match c {
                None => b.push(0),
                Some(d) => {
                    let mut n = d.len() as u64;
                    loop {
                        let byte = (n & 0x7f) as u8;
                        n >>= 7;
                        if n == 0 {
                            b.push(byte);
                            break;
                        }
                        b.push(byte | 0x80);
                    }
                    b.push(Encoding::Xor as u8);
                    b.extend_from_slice(d);
                }
            }
        }
        b
    }

    /// Splits aggregate chunk data; sub-chunks must be XOR.
    pub fn parse(data: &[u8]) -> tsdb::Result<AggrChunk> {
        let bad = |r: &str| tsdb::Error::corrupt("aggregate chunk", r.to_string());
        let mut out = AggrChunk::default();
        let mut pos = 0;
        for slot in out.0.iter_mut() {
            if pos == data.len() {
                break;
            }
            let len = read_uvarint(data, &mut pos).ok_or_else(|| bad("bad length"))? as usize;
            if len == 0 {
                continue;
            }
            let enc = *data.get(pos).ok_or_else(|| bad("truncated"))?;
            pos += 1;
            if enc != Encoding::Xor as u8 {
                return Err(tsdb::Error::Unsupported {
                    what: "aggregate sub-chunk encoding".into(),
                    detail: format!("{enc:#04x}"),
                });
            }
            let end = pos
                .checked_add(len)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| bad("sub-chunk runs past the end"))?;
            *slot = Some(data[pos..end].to_vec());
            pos = end;
        }
        if pos != data.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(out)
    }

    pub fn get(&self, at: usize) -> Option<&Vec<u8>> {
        self.0[at].as_ref()
    }

    /// Samples of one aggregate, decoded.
    pub fn samples(&self, at: usize) -> tsdb::Result<Vec<(i64, f64)>> {
        match &self.0[at] {
            None => Ok(Vec::new()),
            Some(d) => XorIterator::new(d)?.collect(),
        }
    }

    /// `AggrChunk.NumSamples`: samples of the count aggregate.
    pub fn num_samples(&self) -> usize {
        self.0[AGGR_COUNT]
            .as_ref()
            .and_then(|d| XorIterator::new(d).ok())
            .map_or(0, |it| it.num_samples())
    }
}

/// `currentWindow`: the end timestamp of the window `t` falls into.
pub fn current_window(t: i64, r: i64) -> i64 {
    t - (t % r) + r - 1
}

fn range_fullness(mint: i64, maxt: i64, step: i64, count: usize) -> f64 {
    let f = count as f64 / ((maxt - mint) as f64 / step as f64);
    if f > 1.0 {
        1.0
    } else {
        f
    }
}

/// `targetChunkCount`.
pub fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let max_samples = ((maxt - mint) / out_res) as f64;
    let exp = (max_samples * range_fullness(mint, maxt, in_res, count)) as i64 + 1;
    let mut x = 1;
    while exp / x > TARGET_SAMPLES {
        x += 1;
    }
    x as usize
}

/// Thanos's `aggregator`.
#[derive(Debug, Clone, Default)]
struct Aggregator {
    total: usize,
    count: usize,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            if v < self.last {
                self.counter += v;
            } else {
                self.counter += v - self.last;
            }
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// `downsampleBatch`: calls `add` at the end of each window; returns the last
/// window timestamp.
fn downsample_batch(data: &[(i64, f64)], res: i64, mut add: impl FnMut(i64, &Aggregator)) -> i64 {
    let mut a = Aggregator::default();
    let mut next_t: i64 = -1;
    let last_t = data[data.len() - 1].0;
    for &(t, v) in data {
        if is_stale_nan(v) {
            continue;
        }
        if t > next_t {
            if next_t != -1 {
                add(next_t, &a);
            }
            a.reset();
            next_t = current_window(t, res);
            if next_t > last_t {
                next_t = last_t;
            }
        }
        a.add(v);
    }
    add(next_t, &a);
    next_t
}

/// `expandChunkIterator`: stale markers and samples going back in time skipped.
fn expand(
    samples: impl Iterator<Item = tsdb::Result<(i64, f64)>>,
    out: &mut Vec<(i64, f64)>,
) -> tsdb::Result<()> {
    let mut last_t = 0i64;
    for s in samples {
        let (t, v) = s?;
        if is_stale_nan(v) {
            continue;
        }
        if t >= last_t {
            out.push((t, v));
            last_t = t;
        }
    }
    Ok(())
}

fn out_chunk(mint: i64, maxt: i64, a: &AggrChunk) -> OutChunk {
    let data = a.encode();
    OutChunk {
        min_time: mint,
        max_time: maxt,
        encoding: ENCODING_AGGR,
        samples: a.num_samples(),
        data: Bytes::from(data),
    }
}

/// `DownsampleRaw`: aggregate chunks of raw samples (time-ordered, as expanded
/// from the series' chunks).
pub fn downsample_raw(data: &[(i64, f64)], res: i64) -> Vec<OutChunk> {
    if data.is_empty() {
        return Vec::new();
    }
    let num_chunks = target_chunk_count(data[0].0, data[data.len() - 1].0, 60_000, res, data.len());
    let batch_size = data.len() / num_chunks + 1;
    let mut out = Vec::with_capacity(num_chunks);
    let mut rest = data;
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        let cur_w = current_window(rest[j - 1].0, res);
        while j < rest.len() && rest[j].0 <= cur_w {
            j += 1;
        }
        let batch: Vec<(i64, f64)> = rest[..j]
            .iter()
            .copied()
            .filter(|s| !s.1.is_nan())
            .collect();
        rest = &rest[j..];
        if batch.is_empty() {
            continue;
        }
        let mut apps: [XorChunk; 5] = Default::default();
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        apps[AGGR_COUNTER].append(batch[0].0, batch[0].1);
        let last_t = downsample_batch(&batch, res, |t, a| {
            mint = mint.min(t);
            maxt = maxt.max(t);
            apps[AGGR_SUM].append(t, a.sum);
            apps[AGGR_MIN].append(t, a.min);
            apps[AGGR_MAX].append(t, a.max);
            apps[AGGR_COUNT].append(t, a.count as f64);
            apps[AGGR_COUNTER].append(t, a.counter);
        });
        apps[AGGR_COUNTER].append(last_t, batch[batch.len() - 1].1);
        let a = AggrChunk(apps.map(|c| Some(c.bytes().to_vec())));
        out.push(out_chunk(mint, maxt, &a));
    }
    out
}

/// Thanos's `ApplyCounterResetsSeriesIterator` over the counter sub-chunks,
/// expanded: (timestamps increasing, reset-corrected values), and the true last
/// raw value.
fn apply_counter_resets(chunks: &[&AggrChunk]) -> tsdb::Result<(Vec<(i64, f64)>, f64)> {
    let mut out = Vec::new();
    let (mut total, mut last_t, mut last_v, mut total_v) = (0usize, 0i64, 0f64, 0f64);
    for c in chunks {
        let Some(d) = c.get(AGGR_COUNTER) else {
            continue;
        };
        for s in XorIterator::new(d)? {
            let (t, v) = s?;
            if v.is_nan() {
                continue;
            }
            if total == 0 {
                total = 1;
                last_t = t;
                last_v = v;
                total_v = v;
                out.push((t, total_v));
                continue;
            }
            if t > last_t {
                if v >= last_v {
                    total_v += v - last_v;
                } else {
                    total_v += v;
                }
                last_t = t;
                last_v = v;
                total += 1;
                out.push((t, total_v));
                continue;
            }
            if t == last_t {
                last_v = v;
            }
        }
    }
    // expandChunkIterator on top (lastT starting at 0).
    let mut expanded = Vec::with_capacity(out.len());
    expand(out.into_iter().map(Ok), &mut expanded)?;
    Ok((expanded, last_v))
}

/// `downsampleAggrBatch`.
fn downsample_aggr_batch(chks: &[&AggrChunk], res: i64) -> tsdb::Result<OutChunk> {
    let mut res_chunks: [Option<Vec<u8>>; 5] = Default::default();
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let mut buf = Vec::new();
    type F = fn(&Aggregator) -> f64;
    let funcs: [(usize, F); 4] = [
        (AGGR_COUNT, |a| a.sum),
        (AGGR_SUM, |a| a.sum),
        (AGGR_MIN, |a| a.min),
        (AGGR_MAX, |a| a.max),
    ];
    for (at, f) in funcs {
        buf.clear();
        for c in chks {
            if let Some(d) = c.get(at) {
                expand(XorIterator::new(d)?, &mut buf)?;
            }
        }
        if buf.is_empty() {
            continue;
        }
        let mut app = XorChunk::new();
        downsample_batch(&buf, res, |t, a| {
            if t < mint {
                mint = t;
            } else if t > maxt {
                maxt = t;
            }
            app.append(t, f(a));
        });
        res_chunks[at] = Some(app.bytes().to_vec());
    }
    let (counter, last_v) = apply_counter_resets(chks)?;
    if !counter.is_empty() {
        let mut app = XorChunk::new();
        app.append(counter[0].0, counter[0].1);
        let last_t = downsample_batch(&counter, res, |t, a| {
            if t < mint {
                mint = t;
            } else if t > maxt {
                maxt = t;
            }
            app.append(t, a.counter);
        });
        app.append(last_t, last_v);
        res_chunks[AGGR_COUNTER] = Some(app.bytes().to_vec());
    }
    Ok(out_chunk(mint, maxt, &AggrChunk(res_chunks)))
}

/// `downsampleAggr`: aggregate chunks (with their meta times) to a lower resolution.
pub fn downsample_aggr(
    chks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
) -> tsdb::Result<Vec<OutChunk>> {
    let num_samples: usize = chks.iter().map(|c| c.num_samples()).sum();
    let num_chunks = target_chunk_count(mint, maxt, in_res, out_res, num_samples);
    // Thanos divides without a floor; a zero batch would never end.
    let batch = (chks.len() / num_chunks).max(1);
    let refs: Vec<&AggrChunk> = chks.iter().collect();
    refs.chunks(batch)
        .map(|part| downsample_aggr_batch(part, out_res))
        .collect()
}

fn read_err(id: Ulid) -> impl Fn(tsdb::Error) -> MergeError {
    move |err| {
        if crate::merge::is_bad_block_error(&err) {
            MergeError::BadBlock { id, err }
        } else {
            MergeError::Transient { id, err }
        }
    }
}

/// Downsamples `block` to `resolution` into a new block under `out_dir`. The new
/// meta keeps the source's time range, compaction level and sources (as Thanos's
/// does) with `thanos.downsample.resolution` set. Histogram chunks are skipped.
pub async fn downsample_block(
    block: &Block,
    out_dir: &Path,
    ulid: Ulid,
    resolution: i64,
) -> Result<Option<BlockMeta>, MergeError> {
    downsample_block_with(block, out_dir, ulid, resolution, None).await
}

/// [`downsample_block`] calling `on_series(done, total)` after every series.
pub async fn downsample_block_with(
    block: &Block,
    out_dir: &Path,
    ulid: Ulid,
    resolution: i64,
    on_series: Option<&(dyn Fn(u64, u64) + Send + Sync)>,
) -> Result<Option<BlockMeta>, MergeError> {
    let orig = block.meta().clone();
    let in_res = orig.resolution();
    let id = orig.ulid;
    let mut w = BlockWriter::create_with_ulid(out_dir, ulid).map_err(MergeError::Write)?;
    let r: Result<bool, MergeError> = async {
        let mut cur = SeriesCursor::new(block).await.map_err(read_err(id))?;
        let mut any = false;
        let total = cur.len() as u64;
        let mut done = 0u64;
        if let Some(f) = on_series {
            f(0, total);
        }
        while let Some(s) = cur.next_series().await.map_err(read_err(id))? {
            done += 1;
            if let Some(f) = on_series {
                f(done, total);
            }
            let refs: Vec<u64> = s.chunks.iter().map(|m| m.chunk_ref).collect();
            let raw = block.chunks().chunks(&refs).await.map_err(read_err(id))?;
            let out = if in_res == 0 {
                let mut all = Vec::new();
                for c in &raw {
                    if c.encoding == Encoding::Xor as u8 {
                        expand(XorIterator::new(&c.data).map_err(read_err(id))?, &mut all)
                            .map_err(read_err(id))?;
                    }
                }
                downsample_raw(&all, resolution)
            } else {
                let mut aggrs = Vec::new();
                for c in &raw {
                    if c.encoding == ENCODING_AGGR {
                        aggrs.push(AggrChunk::parse(&c.data).map_err(read_err(id))?);
                    } else if c.encoding == Encoding::Xor as u8
                        && c.data.len() >= 2
                        && c.data[..2] != [0, 0]
                    {
                        let mut all = Vec::new();
                        expand(XorIterator::new(&c.data).map_err(read_err(id))?, &mut all)
                            .map_err(read_err(id))?;
                        for oc in downsample_raw(&all, tsdb::meta::RES_5M) {
                            aggrs.push(AggrChunk::parse(&oc.data).map_err(read_err(id))?);
                        }
                    }
                }
                if aggrs.is_empty() || s.chunks.is_empty() {
                    Vec::new()
                } else {
                    downsample_aggr(
                        &aggrs,
                        s.chunks[0].min_time,
                        s.chunks[s.chunks.len() - 1].max_time,
                        in_res,
                        resolution,
                    )
                    .map_err(read_err(id))?
                }
            };
            if out.is_empty() {
                continue;
            }
            any = true;
            w.add_series_chunks(
                &s.labels,
                out.iter()
                    .map(|c| (c.min_time, c.max_time, c.encoding, &c.data[..], c.samples)),
            )
            .map_err(MergeError::Write)?;
        }
        Ok(any)
    }
    .await;
    match r {
        Ok(true) => {}
        Ok(false) => {
            w.abort();
            return Ok(None);
        }
        Err(e) => {
            w.abort();
            return Err(e);
        }
    }
    let mut thanos = orig
        .thanos
        .clone()
        .unwrap_or_else(|| ThanosMeta::new("compactor", Default::default()));
    thanos.downsample.resolution = resolution;
    thanos.source = "compactor".into();
    thanos.files.clear();
    thanos.segment_files.clear();
    thanos.index_stats = None;
    let written = w.finish(Some(thanos.clone())).map_err(MergeError::Write)?;
    let mut meta = orig;
    meta.ulid = ulid;
    meta.stats = written.stats;
    meta.thanos = Some(thanos);
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(current_window(0, 300_000), 299_999);
        assert_eq!(current_window(299_999, 300_000), 299_999);
        assert_eq!(current_window(300_000, 300_000), 599_999);
        assert_eq!(
            target_chunk_count(0, 48 * 3_600_000, 60_000, 300_000, 2880),
            5
        );
    }

    #[test]
    fn encodes_and_parses() {
        let mut x = XorChunk::new();
        x.append(1, 2.0);
        let a = AggrChunk([
            Some(x.bytes().to_vec()),
            None,
            None,
            None,
            Some(x.bytes().to_vec()),
        ]);
        let b = a.encode();
        assert_eq!(b[0] as usize, x.bytes().len());
        assert_eq!(b[1], 1);
        assert_eq!(AggrChunk::parse(&b).unwrap(), a);
        assert_eq!(a.num_samples(), 1);
    }

    #[test]
    fn raw_aggregates_match_samples() {
        // 15s samples for 3h with a counter reset in the middle.
        let mut s = Vec::new();
        let mut v = 0.0;
        for i in 0..720i64 {
            v += 1.0;
            if i == 400 {
                v = 0.0;
            }
            s.push((i * 15_000, v));
        }
        let out = downsample_raw(&s, 300_000);
        let mut count = Vec::new();
        let mut counter = Vec::new();
        for c in &out {
            let a = AggrChunk::parse(&c.data).unwrap();
            count.extend(a.samples(AGGR_COUNT).unwrap());
            counter.extend(a.samples(AGGR_COUNTER).unwrap());
        }
        assert_eq!(count.len(), 36);
        assert!(count.iter().all(|&(_, c)| c == 20.0));
        assert_eq!(count[0].0, 299_999);
        // First raw value, 36 window values, last raw value.
        assert_eq!(counter.len(), 38 * out.len() - 36 * (out.len() - 1));
        assert_eq!(counter[0], (0, 1.0));
        let last = counter[counter.len() - 1];
        assert_eq!(last.1, s[s.len() - 1].1);
        // Window counter before the last: total increase = 400 + (719-400) ... corrected.
        let total = counter[counter.len() - 2].1;
        assert_eq!(total, 400.0 + 319.0);
        // 1h from 5m keeps the count total.
        let aggrs: Vec<AggrChunk> = out
            .iter()
            .map(|c| AggrChunk::parse(&c.data).unwrap())
            .collect();
        let h = downsample_aggr(
            &aggrs,
            out[0].min_time,
            out[out.len() - 1].max_time,
            300_000,
            3_600_000,
        )
        .unwrap();
        let n: f64 = h
            .iter()
            .flat_map(|c| {
                AggrChunk::parse(&c.data)
                    .unwrap()
                    .samples(AGGR_COUNT)
                    .unwrap()
            })
            .map(|s| s.1)
            .sum();
        assert_eq!(n, 720.0);
    }
}
