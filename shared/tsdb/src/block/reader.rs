use std::path::Path;
use std::sync::Arc;

use model::{Labels, Matcher};

use super::{CHUNKS_DIRNAME, INDEX_FILENAME, TOMBSTONES_FILENAME};
use crate::chunkenc;
use crate::chunks::{self, ChunkReader};
use crate::index::IndexReader;
use crate::meta::{BlockMeta, META_FILENAME};
use crate::tombstones::{self, Tombstones};
use crate::{ChunkMeta, Error, FileRange, RangeRead, Result};

/// A series selected from a block: its labels, index reference and chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEntry {
    pub labels: Labels,
    pub series_ref: u64,
    pub chunks: Vec<ChunkMeta>,
}

/// An open block: its meta, index and chunk readers and tombstones. The readers work
/// over byte ranges, so the files may be local or in a bucket.
#[derive(Debug)]
pub struct Block {
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
}

impl Block {
    /// A block from readers over its files.
    pub fn new(
        meta: BlockMeta,
        index: IndexReader,
        chunks: ChunkReader,
        tombstones: Tombstones,
    ) -> Self {
        Block {
            meta,
            index,
            chunks,
            tombstones,
        }
    }

    /// Opens a block directory on local disk.
    pub async fn open_local(dir: &Path) -> Result<Block> {
        let meta = BlockMeta::read_dir(dir)?;
        let index_file: Arc<dyn RangeRead> = Arc::new(FileRange::open(dir.join(INDEX_FILENAME))?);
        let index = IndexReader::open(index_file).await?;
        let chunks = chunks::open_dir(&dir.join(CHUNKS_DIRNAME))?;
        let ts_path = dir.join(TOMBSTONES_FILENAME);
        let tombstones = match std::fs::read(&ts_path) {
            Ok(b) => tombstones::read(&b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tombstones::default(),
            Err(e) => return Err(Error::io(format!("read {}", ts_path.display()), e)),
        };
        Ok(Block::new(meta, index, chunks, tombstones))
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Series matching any of the matcher sets (an empty set matches every series),
    /// in label order, with their chunk metas.
    pub async fn select(&self, matcher_sets: &[Vec<Matcher>]) -> Result<Vec<SeriesEntry>> {
        let mut lists = Vec::with_capacity(matcher_sets.len());
        for set in matcher_sets {
            lists.push(if set.is_empty() {
                self.index.all_postings().await?
            } else {
                self.index.postings_for_matchers(set).await?
            });
        }
        let refs = crate::index::union(lists);
        let series = self.index.series_many(&refs).await?;
        Ok(series
            .into_iter()
            .zip(refs)
            .map(|((labels, chunks), series_ref)| SeriesEntry {
                labels,
                series_ref,
                chunks,
            })
            .collect())
    }

    /// Appends the float samples of a selected series with `mint <= t <= maxt`,
    /// minus deleted ones, to `out`. Samples of histogram chunks are skipped.
    pub async fn read_float_samples(
        &self,
        series: &SeriesEntry,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
    ) -> Result<()> {
        let series_ref = series.series_ref;
        let metas: Vec<&ChunkMeta> = series
            .chunks
            .iter()
            .filter(|m| m.max_time >= mint && m.min_time <= maxt)
            .collect();
        if metas.is_empty() {
            return Ok(());
        }
        let refs: Vec<u64> = metas.iter().map(|m| m.chunk_ref).collect();
        let raw = self.chunks.chunks(&refs).await?;
        for c in raw {
            if c.encoding != chunkenc::Encoding::Xor as u8 {
                continue;
            }
            for s in chunkenc::XorIterator::new(&c.data)? {
                let (t, v) = s?;
                if t < mint || t > maxt || self.tombstones.is_deleted(series_ref, t) {
                    continue;
                }
                out.push((t, v));
            }
        }
        Ok(())
    }
}

/// Opens `dir` as a block (it has `meta.json`) or as a data directory of blocks (its
/// subdirectories with `meta.json`; `*.tmp` and other directories are ignored), in
/// time order.
pub async fn open_dir_blocks(dir: &Path) -> Result<Vec<Block>> {
    if dir.join(META_FILENAME).is_file() {
        return Ok(vec![Block::open_local(dir).await?]);
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    let mut dirs = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.join(META_FILENAME).is_file() && ulid::Ulid::from_string(&name).is_ok() {
            dirs.push(p);
        }
    }
    dirs.sort();
    let mut blocks = Vec::with_capacity(dirs.len());
    for d in dirs {
        blocks.push(Block::open_local(&d).await?);
    }
    blocks.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
    Ok(blocks)
}
