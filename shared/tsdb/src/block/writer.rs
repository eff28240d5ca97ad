use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use model::Labels;
use ulid::Ulid;

use super::{CHUNKS_DIRNAME, INDEX_FILENAME, TOMBSTONES_FILENAME};
use crate::chunkenc::{Encoding, XorChunk};
use crate::chunks::ChunkWriter;
use crate::encoding::{Decbuf, Encbuf};
use crate::index::IndexWriter;
use crate::meta::{BlockMeta, ThanosMeta};
use crate::tombstones::{self, Tombstones};
use crate::{ChunkMeta, Error, Result};

/// Samples per chunk, as Prometheus's head cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Writes one block, streaming: series arrive in label order with their samples;
/// chunks go straight to the segment files and each series' entry to a spool file, so
/// memory holds the symbol table and postings (proportional to series and label
/// values), never samples. `finish` writes the index, tombstones and `meta.json`,
/// then renames the block into place, so a block directory never appears half
/// written.
pub struct BlockWriter {
    ulid: Ulid,
    tmp_dir: PathBuf,
    final_dir: PathBuf,
    chunks: ChunkWriter,
    spool: BufWriter<std::fs::File>,
    spool_path: PathBuf,
    symbols: BTreeSet<String>,
    last: Option<Labels>,
    min_time: i64,
    max_time: i64,
    num_series: u64,
    num_chunks: u64,
    num_samples: u64,
    rec: Encbuf,
}

impl BlockWriter {
    /// Starts a block with a new ULID under `parent` (written to `<ulid>.tmp`, renamed
    /// to `<ulid>` by [`finish`](Self::finish)).
    pub fn create(parent: &Path) -> Result<Self> {
        Self::create_with_ulid(parent, Ulid::new())
    }

    pub fn create_with_ulid(parent: &Path, ulid: Ulid) -> Result<Self> {
        let final_dir = parent.join(ulid.to_string());
        let tmp_dir = parent.join(format!("{ulid}.tmp"));
        let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
        std::fs::create_dir_all(tmp_dir.join(CHUNKS_DIRNAME))
            .map_err(|e| io("create", &tmp_dir, e))?;
        let chunks = ChunkWriter::create(&tmp_dir.join(CHUNKS_DIRNAME))?;
        let spool_path = tmp_dir.join("series.spool");
        let spool = std::fs::File::create(&spool_path).map_err(|e| io("create", &spool_path, e))?;
        Ok(BlockWriter {
            ulid,
            tmp_dir,
            final_dir,
            chunks,
            spool: BufWriter::with_capacity(1 << 16, spool),
            spool_path,
            symbols: BTreeSet::new(),
            last: None,
            min_time: i64::MAX,
            max_time: i64::MIN,
            num_series: 0,
            num_chunks: 0,
            num_samples: 0,
            rec: Encbuf::new(),
        })
    }

    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    fn check_order(&mut self, labels: &Labels) -> Result<()> {
        if labels.is_empty() {
            return Err(Error::invalid("block writer", "series without labels"));
        }
        if let Some(last) = &self.last {
            if labels <= last {
                return Err(Error::invalid(
                    "block writer",
                    format!("series {labels} added after {last}: series must come in label order, once each"),
                ));
            }
        }
        Ok(())
    }

    /// Adds a series of float samples (strictly increasing timestamps), cut into
    /// chunks of [`SAMPLES_PER_CHUNK`]. A series without samples is skipped.
    pub fn add_series(
        &mut self,
        labels: &Labels,
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) -> Result<()> {
        self.check_order(labels)?;
        let mut metas: Vec<ChunkMeta> = Vec::new();
        let mut chunk = XorChunk::new();
        let mut first_t = 0;
        let mut prev_t = i64::MIN;
        for (t, v) in samples {
            if t <= prev_t && chunk.num_samples() + metas.len() > 0 {
                return Err(Error::invalid(
                    "block writer",
                    format!("series {labels}: sample at {t} not after {prev_t}"),
                ));
            }
            if chunk.num_samples() == 0 {
                first_t = t;
            }
            chunk.append(t, v);
            prev_t = t;
            self.num_samples += 1;
            if chunk.num_samples() >= SAMPLES_PER_CHUNK {
                metas.push(self.flush_chunk(&chunk, first_t, prev_t)?);
                chunk = XorChunk::new();
            }
        }
        if chunk.num_samples() > 0 {
            metas.push(self.flush_chunk(&chunk, first_t, prev_t)?);
        }
        self.spool_series(labels, &metas)
    }

    /// Adds a series from chunks already encoded (compaction, downsampling): each item
    /// is `(min_time, max_time, encoding, data)`, in time order.
    pub fn add_series_chunks<'a>(
        &mut self,
        labels: &Labels,
        chunks: impl IntoIterator<Item = (i64, i64, u8, &'a [u8], usize)>,
    ) -> Result<()> {
        self.check_order(labels)?;
        let mut metas = Vec::new();
        let mut prev_max = i64::MIN;
        for (min_t, max_t, enc, data, n_samples) in chunks {
            if min_t > max_t || (min_t <= prev_max && !metas.is_empty()) {
                return Err(Error::invalid(
                    "block writer",
                    format!("series {labels}: chunk {min_t}..{max_t} out of order"),
                ));
            }
            let r = self.chunks.write_chunk(enc, data)?;
            metas.push(ChunkMeta {
                min_time: min_t,
                max_time: max_t,
                chunk_ref: r,
            });
            prev_max = max_t;
            self.num_samples += n_samples as u64;
            self.note_chunk(min_t, max_t);
        }
        self.spool_series(labels, &metas)
    }

    fn note_chunk(&mut self, min_t: i64, max_t: i64) {
        self.num_chunks += 1;
        self.min_time = self.min_time.min(min_t);
        self.max_time = self.max_time.max(max_t);
    }

    fn flush_chunk(&mut self, chunk: &XorChunk, min_t: i64, max_t: i64) -> Result<ChunkMeta> {
        let r = self
            .chunks
            .write_chunk(Encoding::Xor as u8, chunk.bytes())?;
        self.note_chunk(min_t, max_t);
        Ok(ChunkMeta {
            min_time: min_t,
            max_time: max_t,
            chunk_ref: r,
        })
    }

    fn spool_series(&mut self, labels: &Labels, metas: &[ChunkMeta]) -> Result<()> {
        self.last = Some(labels.clone());
        if metas.is_empty() {
            return Ok(());
        }
        self.num_series += 1;
        let rec = &mut self.rec;
        rec.reset();
        rec.put_uvarint(labels.len() as u64);
        for l in labels {
            rec.put_uvarint_str(&l.name);
            rec.put_uvarint_str(&l.value);
            if !self.symbols.contains(&l.name) {
                self.symbols.insert(l.name.clone());
            }
            if !self.symbols.contains(&l.value) {
                self.symbols.insert(l.value.clone());
            }
        }
        rec.put_uvarint(metas.len() as u64);
        for m in metas {
            rec.put_varint(m.min_time);
            rec.put_varint(m.max_time);
            rec.put_uvarint(m.chunk_ref);
        }
        let len = (rec.len() as u32).to_be_bytes();
        let io = |e| Error::io(format!("write {}", self.spool_path.display()), e);
        self.spool.write_all(&len).map_err(io)?;
        self.spool.write_all(&rec.buf).map_err(io)?;
        Ok(())
    }

    /// Finishes the block: index, tombstones, `meta.json` (with `thanos` when given),
    /// fsync, rename into place. Returns the meta. A block without series is an
    /// error (Prometheus doesn't write empty blocks either).
    pub fn finish(self, thanos: Option<ThanosMeta>) -> Result<BlockMeta> {
        let BlockWriter {
            ulid,
            tmp_dir,
            final_dir,
            chunks,
            spool,
            spool_path,
            symbols,
            min_time,
            max_time,
            num_series,
            num_chunks,
            num_samples,
            ..
        } = self;
        if num_series == 0 {
            let _ = std::fs::remove_dir_all(&tmp_dir);
            return Err(Error::invalid(
                "block writer",
                "no samples: refusing to write an empty block",
            ));
        }
        let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
        chunks.finish()?;
        spool
            .into_inner()
            .map_err(|e| io("flush", &spool_path, e.into_error()))?;

        let index_path = tmp_dir.join(INDEX_FILENAME);
        let mut iw = IndexWriter::create(&index_path, symbols.iter())?;
        drop(symbols);
        let f = std::fs::File::open(&spool_path).map_err(|e| io("open", &spool_path, e))?;
        let mut rd = BufReader::with_capacity(1 << 16, f);
        let mut buf = Vec::new();
        loop {
            if rd
                .fill_buf()
                .map_err(|e| io("read", &spool_path, e))?
                .is_empty()
            {
                break;
            }
            let mut len = [0u8; 4];
            rd.read_exact(&mut len)
                .map_err(|e| io("read", &spool_path, e))?;
            buf.resize(u32::from_be_bytes(len) as usize, 0);
            rd.read_exact(&mut buf)
                .map_err(|e| io("read", &spool_path, e))?;
            let (labels, metas) = decode_spooled(&buf)?;
            iw.add_series(&labels, &metas)?;
        }
        iw.finish()?;
        std::fs::remove_file(&spool_path).map_err(|e| io("remove", &spool_path, e))?;

        let ts_path = tmp_dir.join(TOMBSTONES_FILENAME);
        write_synced(&ts_path, &tombstones::encode(&Tombstones::default()))?;

        let mut meta = BlockMeta::new(ulid, min_time, max_time.saturating_add(1));
        meta.stats.num_samples = num_samples;
        meta.stats.num_series = num_series;
        meta.stats.num_chunks = num_chunks;
        meta.thanos = thanos;
        meta.write_dir(&tmp_dir)?;
        sync_dir(&tmp_dir.join(CHUNKS_DIRNAME))?;
        sync_dir(&tmp_dir)?;
        std::fs::rename(&tmp_dir, &final_dir).map_err(|e| io("rename", &tmp_dir, e))?;
        if let Some(parent) = final_dir.parent() {
            sync_dir(parent)?;
        }
        Ok(meta)
    }

    /// Abandons the block and removes its temporary directory.
    pub fn abort(self) {
        let _ = std::fs::remove_dir_all(&self.tmp_dir);
    }
}

fn decode_spooled(b: &[u8]) -> Result<(Labels, Vec<ChunkMeta>)> {
    let mut d = Decbuf::new(b, "series spool");
    let n = d.uvarint_len()?;
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let name = d.uvarint_str()?.to_string();
        let value = d.uvarint_str()?.to_string();
        labels.push(model::Label { name, value });
    }
    let n = d.uvarint_len()?;
    let mut metas = Vec::with_capacity(n);
    for _ in 0..n {
        metas.push(ChunkMeta {
            min_time: d.varint()?,
            max_time: d.varint()?,
            chunk_ref: d.uvarint()?,
        });
    }
    Ok((Labels::from_sorted(labels), metas))
}

fn write_synced(p: &Path, data: &[u8]) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("{what} {}", p.display()), e);
    let mut f = std::fs::File::create(p).map_err(|e| io("create", e))?;
    f.write_all(data).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))
}

fn sync_dir(p: &Path) -> Result<()> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", p.display()), e))
}
