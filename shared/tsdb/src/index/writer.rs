//! Streaming writer of index files, byte-compatible with Prometheus's `index.Writer`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use model::Labels;

use super::{Symbols, Toc, FORMAT_V2, MAGIC, SERIES_ALIGN};
use crate::encoding::{crc32c, crc32c_append, uvarint_size, Encbuf};
use crate::{ChunkMeta, Error, Result};

const WHAT: &str = "index writer";

/// Writes an index file: symbols up front, then series one at a time in label order,
/// then [`finish`](IndexWriter::finish) writes label indices, postings, the offset
/// tables and the TOC.
///
/// Series entries go straight to the (buffered) file. Memory held is the symbol
/// table plus one `u32` per label of every series (the postings), never samples.
/// The layout matches Prometheus's writer byte for byte (including the label indices
/// and label offset table that Prometheus up to 3.5 writes), so given the same
/// symbols, series and chunk metas both produce the same file.
pub struct IndexWriter {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    toc: Toc,
    symbols: Symbols,
    /// Ordinal of each label name seen, keyed by name (few distinct names).
    name_cache: HashMap<String, NameCache>,
    /// (name ordinal << 32 | value ordinal) -> series refs.
    postings: HashMap<u64, Vec<u32>>,
    all_postings: Vec<u32>,
    /// (name, value) ordinals of the last series added: ordinals sort as their
    /// strings do, so comparing these compares label sets like `labels.Compare`.
    last_series: Vec<(u32, u32)>,
    last_chunk_ref: u64,
    label_indices: bool,
    buf: Encbuf,
}

#[derive(Clone, Copy)]
struct NameCache {
    name: u32,
    /// Ordinal of the last value written for this name: consecutive series in label
    /// order share most values.
    last_value: u32,
}

impl std::fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .field("series", &self.all_postings.len())
            .finish()
    }
}

impl IndexWriter {
    /// Creates (or truncates) the index file at `path` and writes the header and the
    /// symbol table. `symbols` must be sorted and unique and hold every label name and
    /// value of the series to come (Error::InvalidInput otherwise).
    pub fn create(path: &Path, symbols: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self> {
        let mut table = Symbols::default();
        for s in symbols {
            table.push(s.as_ref().as_bytes(), WHAT, true)?;
        }
        table.shrink_to_fit();

        let file =
            File::create(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let mut w = IndexWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            toc: Toc::default(),
            symbols: table,
            name_cache: HashMap::new(),
            postings: HashMap::new(),
            all_postings: Vec::new(),
            last_series: Vec::new(),
            last_chunk_ref: 0,
            label_indices: true,
            buf: Encbuf::new(),
        };
        let mut e = Encbuf::new();
        e.put_be_u32(MAGIC);
        e.put_byte(FORMAT_V2);
        w.write(&e.buf)?;
        w.write_symbols()?;
        w.toc.series = w.pos;
        Ok(w)
    }

    /// Whether [`finish`](IndexWriter::finish) writes the label indices and the label
    /// offset table (default: yes, as Prometheus up to 3.5 does). No reader of format
    /// v2 uses them; Prometheus 3.6 and later leave them out, pointing both
    /// TOC entries at the postings offset table.
    pub fn set_label_indices(&mut self, write: bool) {
        self.label_indices = write;
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .map_err(|e| Error::io(format!("write {}", self.path.display()), e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(align - rem) as usize])?;
        }
        Ok(())
    }

    /// Writes `len(4) | content | CRC32C(content)`.
    fn write_section(&mut self, content: &[u8]) -> Result<()> {
        let len = u32::try_from(content.len()).map_err(|_| {
            Error::invalid(
                WHAT,
                format!("section of {} bytes exceeds 4 GiB", content.len()),
            )
        })?;
        self.write(&len.to_be_bytes())?;
        self.write(content)?;
        self.write(&crc32c(content).to_be_bytes())
    }

    fn write_symbols(&mut self) -> Result<()> {
        self.toc.symbols = self.pos;
        let n = self.symbols.len();
        let len: u64 = 4 + self
            .symbols
            .iter()
            .map(|s| (uvarint_size(s.len() as u64) + s.len()) as u64)
            .sum::<u64>();
        let len = u32::try_from(len).map_err(|_| {
            Error::invalid(WHAT, format!("symbol table of {len} bytes exceeds 4 GiB"))
        })?;
        // `push` caps the count below 2^32.
        let count = (n as u32).to_be_bytes();
        self.write(&len.to_be_bytes())?;
        self.write(&count)?;
        let mut crc = crc32c(&count);
        let mut e = Encbuf::new();
        for i in 0..n {
            let s = self.symbols.get(i as u32).unwrap_or_default();
            e.put_uvarint_str(s);
            if e.len() >= 1 << 16 || i + 1 == n {
                crc = crc32c_append(crc, &e.buf);
                self.out
                    .write_all(&e.buf)
                    .map_err(|err| Error::io(format!("write {}", self.path.display()), err))?;
                self.pos += e.len() as u64;
                e.reset();
            }
        }
        self.write(&crc.to_be_bytes())
    }

    fn symbol_ref(&self, s: &str) -> Result<u32> {
        self.symbols.find(s).ok_or_else(|| {
            Error::invalid(
                WHAT,
                format!("label string {s:?} is not in the symbol table"),
            )
        })
    }

    /// Adds a series with its chunk metas and returns its series ref (offset / 16).
    ///
    /// Series must come in strictly increasing label order (`Labels`' `Ord`, which is
    /// Prometheus's `labels.Compare`); the label set must be non-empty with every name
    /// and value in the symbol table. As in Prometheus, chunks must have
    /// `min_time <= max_time`, each chunk must start after the previous one's
    /// `max_time`, and chunk refs must not decrease, within and across series.
    /// A rejected series leaves the writer unchanged.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<u64> {
        let mut last_ref = self.last_chunk_ref;
        let mut last_maxt = 0i64;
        for (i, c) in chunks.iter().enumerate() {
            if c.chunk_ref < last_ref {
                return Err(Error::invalid(
                    WHAT,
                    format!(
                        "unsorted chunk reference {}, previous {last_ref}",
                        c.chunk_ref
                    ),
                ));
            }
            last_ref = c.chunk_ref;
            if i > 0 && c.min_time <= last_maxt {
                return Err(Error::invalid(
                    WHAT,
                    format!(
                        "chunk min time {} is not after previous chunk max time {last_maxt}",
                        c.min_time
                    ),
                ));
            }
            if c.max_time < c.min_time {
                return Err(Error::invalid(
                    WHAT,
                    format!(
                        "chunk max time {} is before min time {}",
                        c.max_time, c.min_time
                    ),
                ));
            }
            last_maxt = c.max_time;
        }

        if labels.is_empty() {
            return Err(Error::invalid(WHAT, "series with no labels"));
        }
        // Resolve symbols before writing anything.
        let mut refs = Vec::with_capacity(labels.len());
        for l in labels {
            let cached = self.name_cache.get(&l.name);
            let name = match cached {
                Some(c) => c.name,
                None => self.symbol_ref(&l.name)?,
            };
            let value = match cached {
                Some(c) if self.symbols.get(c.last_value) == Some(l.value.as_str()) => c.last_value,
                _ => self.symbol_ref(&l.value)?,
            };
            refs.push((name, value));
        }
        if !refs.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(Error::invalid(
                WHAT,
                format!("label names of {labels} not sorted and unique"),
            ));
        }
        if refs <= self.last_series {
            let last: Vec<String> = self
                .last_series
                .iter()
                .map(|&(n, v)| {
                    let s = |o| self.symbols.get(o).unwrap_or_default();
                    format!("{}={:?}", s(n), s(v))
                })
                .collect();
            return Err(Error::invalid(
                WHAT,
                format!(
                    "out-of-order series {labels}, last added {{{}}}",
                    last.join(", ")
                ),
            ));
        }

        let start = self.pos.next_multiple_of(SERIES_ALIGN);
        let series_ref = u32::try_from(start / SERIES_ALIGN).map_err(|_| {
            Error::invalid(
                WHAT,
                "series section exceeds 16 × 2^32 bytes; series refs no longer fit 32 bits",
            )
        })?;

        let b = &mut self.buf;
        b.reset();
        b.put_uvarint(refs.len() as u64);
        for &(n, v) in &refs {
            b.put_uvarint(u64::from(n));
            b.put_uvarint(u64::from(v));
        }
        b.put_uvarint(chunks.len() as u64);
        if let Some(first) = chunks.first() {
            b.put_varint(first.min_time);
            b.put_uvarint(first.max_time.wrapping_sub(first.min_time) as u64);
            b.put_uvarint(first.chunk_ref);
            let mut t0 = first.max_time;
            let mut ref0 = first.chunk_ref;
            for c in &chunks[1..] {
                b.put_uvarint(c.min_time.wrapping_sub(t0) as u64);
                b.put_uvarint(c.max_time.wrapping_sub(c.min_time) as u64);
                b.put_varint(c.chunk_ref.wrapping_sub(ref0) as i64);
                t0 = c.max_time;
                ref0 = c.chunk_ref;
            }
        }
        let mut head = Encbuf::new();
        head.put_uvarint(b.len() as u64);
        let crc = crc32c(&b.buf).to_be_bytes();
        let body = std::mem::take(&mut self.buf);

        self.pad(SERIES_ALIGN)?;
        debug_assert_eq!(self.pos, start);
        let res = self
            .write(&head.buf)
            .and_then(|_| self.write(&body.buf))
            .and_then(|_| self.write(&crc));
        self.buf = body;
        res?;

        for (l, &(n, v)) in labels.iter().zip(&refs) {
            match self.name_cache.get_mut(&l.name) {
                Some(c) => c.last_value = v,
                None => {
                    self.name_cache.insert(
                        l.name.clone(),
                        NameCache {
                            name: n,
                            last_value: v,
                        },
                    );
                }
            }
            self.postings
                .entry(u64::from(n) << 32 | u64::from(v))
                .or_default()
                .push(series_ref);
        }
        self.all_postings.push(series_ref);
        self.last_series = refs;
        self.last_chunk_ref = last_ref;
        Ok(u64::from(series_ref))
    }

    /// Writes label indices, postings, the label and postings offset tables and the
    /// TOC, flushes and fsyncs the file (and its directory). Returns the file size.
    pub fn finish(mut self) -> Result<u64> {
        let mut keys: Vec<u64> = self.postings.keys().copied().collect();
        keys.sort_unstable();
        let name_of = |k: u64| (k >> 32) as u32;
        let value_of = |k: u64| k as u32;

        // Label indices: one per name, its value ordinals in order.
        self.toc.label_indices = self.pos;
        let mut label_index_offsets: Vec<(u32, u64)> = Vec::new();
        let mut e = Encbuf::new();
        let mut i = 0;
        while self.label_indices && i < keys.len() {
            let name = name_of(keys[i]);
            let j = i + keys[i..].partition_point(|&k| name_of(k) == name);
            self.pad(4)?;
            label_index_offsets.push((name, self.pos));
            e.reset();
            e.put_be_u32(1);
            e.put_be_u32(count32(j - i)?);
            for &k in &keys[i..j] {
                e.put_be_u32(value_of(k));
            }
            self.write_section(&e.buf)?;
            i = j;
        }

        // Postings: the all-postings list first, then by name and value.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let mut postings_offsets: Vec<u64> = Vec::with_capacity(keys.len() + 1);
        let all = std::mem::take(&mut self.all_postings);
        postings_offsets.push(self.pos);
        self.write_postings(&mut e, &all)?;
        for &k in &keys {
            let refs = self.postings.remove(&k).unwrap_or_default();
            self.pad(4)?;
            postings_offsets.push(self.pos);
            self.write_postings(&mut e, &refs)?;
        }

        // Label offset table.
        self.toc.label_indices_table = self.pos;
        if self.label_indices {
            e.reset();
            e.put_be_u32(count32(label_index_offsets.len())?);
            for &(name, off) in &label_index_offsets {
                e.put_uvarint(1);
                e.put_uvarint_str(self.symbols.get(name).unwrap_or_default());
                e.put_uvarint(off);
            }
            self.write_section(&e.buf)?;
        }

        // Postings offset table.
        self.toc.postings_table = self.pos;
        e.reset();
        e.put_be_u32(count32(postings_offsets.len())?);
        e.put_uvarint(2);
        e.put_uvarint_str("");
        e.put_uvarint_str("");
        e.put_uvarint(postings_offsets[0]);
        for (&k, &off) in keys.iter().zip(&postings_offsets[1..]) {
            e.put_uvarint(2);
            e.put_uvarint_str(self.symbols.get(name_of(k)).unwrap_or_default());
            e.put_uvarint_str(self.symbols.get(value_of(k)).unwrap_or_default());
            e.put_uvarint(off);
        }
        self.write_section(&e.buf)?;

        let toc = self.toc.encode();
        self.write(&toc)?;

        let path = self.path.clone();
        let size = self.pos;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(format!("flush {}", path.display()), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
        drop(file);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))?;
        }
        Ok(size)
    }

    fn write_postings(&mut self, e: &mut Encbuf, refs: &[u32]) -> Result<()> {
        e.reset();
        e.put_be_u32(count32(refs.len())?);
        for &r in refs {
            e.put_be_u32(r);
        }
        self.write_section(&e.buf)
    }
}

fn count32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::invalid(WHAT, format!("{n} entries exceed 2^32-1")))
}
