//! A [`Queryable`] over TSDB blocks read through `tsdb`'s block reader: the engine
//! evaluating over the very blocks Prometheus (or a store) serves.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use model::{FloatHistogram, Labels, Matcher};
use tsdb::block::{open_dir_blocks, Block};
use tsdb::chunkenc::SampleValue;

use crate::queryable::{Queryable, SelectHints, Series};
use crate::{Error, Result};

/// Series from a set of blocks (overlapping or not): a series present in several
/// blocks is merged, samples in time order, a duplicate timestamp kept once.
#[derive(Debug)]
pub struct BlockQueryable {
    blocks: Vec<Block>,
}

fn storage(e: tsdb::Error) -> Error {
    Error::Storage(e.to_string())
}

impl BlockQueryable {
    /// Over already opened blocks.
    pub fn new(blocks: Vec<Block>) -> Self {
        BlockQueryable { blocks }
    }

    /// Opens the blocks of a local data directory (or one block directory).
    pub async fn open_dir(dir: &Path) -> Result<Self> {
        Ok(Self::new(open_dir_blocks(dir).await.map_err(storage)?))
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }
}

#[async_trait]
impl Queryable for BlockQueryable {
    async fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>> {
        let (mint, maxt) = (hints.start, hints.end);
        let sets = [matchers.to_vec()];
        let mut window = crate::WindowFilter::new(hints);
        let mut merged: BTreeMap<Labels, Series> = BTreeMap::new();
        for b in &self.blocks {
            let m = b.meta();
            // Block times are [min_time, max_time).
            if m.max_time <= mint || m.min_time > maxt {
                continue;
            }
            let entries = b.select(&sets).await.map_err(storage)?;
            for e in entries {
                let metas: Vec<u64> = e
                    .chunks
                    .iter()
                    .filter(|c| c.max_time >= mint && c.min_time <= maxt)
                    .map(|c| c.chunk_ref)
                    .collect();
                if metas.is_empty() {
                    continue;
                }
                let raw = b.chunks().chunks(&metas).await.map_err(storage)?;
                // Labels move into the map's key; the series gets them at the end.
                let s = merged.entry(e.labels).or_default();
                let tomb = b.tombstones();
                for c in raw {
                    if let Some(w) = window.as_mut() {
                        w.reset();
                    }
                    if c.encoding == tsdb::chunkenc::Encoding::Xor as u8 {
                        let it = tsdb::chunkenc::XorIterator::new(&c.data).map_err(storage)?;
                        if window.is_none() {
                            s.floats.reserve(it.num_samples());
                        }
                        for r in it {
                            let (t, v) = r.map_err(storage)?;
                            if t < mint || t > maxt {
                                continue;
                            }
                            if let Some(w) = window.as_mut() {
                                if !w.keep(t) {
                                    continue;
                                }
                            }
                            if !tomb.is_empty() && tomb.is_deleted(e.series_ref, t) {
                                continue;
                            }
                            s.floats.push((t, v));
                        }
                        continue;
                    }
                    for r in c.iter().map_err(storage)? {
                        let (t, v) = r.map_err(storage)?;
                        if t < mint || t > maxt || tomb.is_deleted(e.series_ref, t) {
                            continue;
                        }
                        if let Some(w) = window.as_mut() {
                            if !w.keep(t) {
                                continue;
                            }
                        }
                        let h: FloatHistogram = match v {
                            SampleValue::Float(f) => {
                                s.floats.push((t, f));
                                continue;
                            }
                            SampleValue::Histogram(h) => h.to_float(),
                            SampleValue::FloatHistogram(h) => *h,
                        };
                        s.histograms.push((t, h));
                    }
                }
            }
        }
        let mut out: Vec<Series> = merged
            .into_iter()
            .map(|(labels, s)| Series { labels, ..s })
            .collect();
        for s in &mut out {
            if !s.floats.windows(2).all(|w| w[0].0 < w[1].0) {
                s.floats.sort_by_key(|p| p.0);
                s.floats.dedup_by_key(|p| p.0);
            }
            if !s.histograms.windows(2).all(|w| w[0].0 < w[1].0) {
                s.histograms.sort_by_key(|p| p.0);
                s.histograms.dedup_by_key(|p| p.0);
            }
        }
        out.retain(|s| !s.floats.is_empty() || !s.histograms.is_empty());
        Ok(out)
    }
}
