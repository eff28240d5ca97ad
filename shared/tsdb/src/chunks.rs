//! Chunk segment files (`chunks/000001`, ...), as Prometheus's `tsdb/chunks` writes
//! and reads them.
//!
//! A segment is an 8-byte header (magic `0x85BD40DD` big-endian, version 1, three
//! zero bytes) followed by chunk records:
//! `uvarint(len(data)) | encoding byte | data | CRC32-Castagnoli(encoding, data)`
//! with the CRC big-endian. A chunk reference is the segment's *index* (0 for the
//! first file, `000001`) in the upper 32 bits and the record's byte offset in the
//! lower 32, exactly as in Prometheus (`NewBlockChunkRef(fileIndex, offset)`; the
//! reader indexes the sorted list of segment files).
//!
//! [`ChunkWriter`] streams records to local files through a bounded buffer.
//! [`ChunkReader`] reads records through [`RangeRead`], so segments may live in a
//! bucket; [`ChunkReader::chunks`] coalesces neighbouring chunks into few range
//! reads. [`decode_chunk_record`] is the pure decoder.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::OnceCell;

use crate::chunkenc::{self, ChunkIter};
use crate::encoding::{crc32c, crc32c_append};
use crate::{Error, FileRange, RangeRead, Result};

/// Magic number at the start of every segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// The only segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Bytes of the segment header (magic, version, padding).
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Prometheus's default maximum segment size: 512 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// Bytes read for a chunk whose length is not known yet (the last of a run): a
/// 120-sample XOR chunk is rarely over 2 KiB, so nearly every chunk fits and a second
/// round trip to object storage is rare; larger ones take a second read. (Thanos
/// assumes 16 KB for the same reason.)
pub const DEFAULT_READ_HINT: u64 = 16 * 1024;
/// Default largest gap between chunks that [`ChunkReader::chunks`] reads over
/// rather than issuing another range read.
pub const DEFAULT_MAX_GAP: u64 = 64 * 1024;

/// The length field is read from at most this many bytes (Go's
/// `MaxChunkLengthFieldSize`, `binary.MaxVarintLen32`).
const MAX_LEN_FIELD: usize = 5;
const CRC_SIZE: usize = 4;
const WHAT: &str = "chunk record";

/// File name of segment `number` (1-based): six digits, zero padded.
pub fn segment_file_name(number: u32) -> String {
    format!("{number:06}")
}

/// Where a record's parts are, relative to its first byte.
#[derive(Debug, Clone, Copy)]
struct RecordLayout {
    /// Bytes of the length field.
    len_field: usize,
    /// Bytes of data.
    data_len: usize,
}

impl RecordLayout {
    fn total(&self) -> usize {
        self.len_field + 1 + self.data_len + CRC_SIZE
    }
    fn data(&self) -> Range<usize> {
        self.len_field + 1..self.len_field + 1 + self.data_len
    }
}

/// Reads the length field at the start of `buf`. `Ok(None)` means `buf` ends
/// inside the field (more bytes may follow in the file).
fn record_layout(buf: &[u8]) -> Result<Option<RecordLayout>> {
    let mut x: u64 = 0;
    for (i, &b) in buf.iter().take(MAX_LEN_FIELD).enumerate() {
        x |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            let data_len = usize::try_from(x)
                .map_err(|_| Error::corrupt(WHAT, format!("length {x} too large")))?;
            return Ok(Some(RecordLayout {
                len_field: i + 1,
                data_len,
            }));
        }
    }
    if buf.len() >= MAX_LEN_FIELD {
        return Err(Error::corrupt(
            WHAT,
            format!("length field longer than {MAX_LEN_FIELD} bytes"),
        ));
    }
    Ok(None)
}

/// Checks a complete record and returns its encoding byte.
fn check_record(buf: &[u8], layout: RecordLayout) -> Result<u8> {
    let total = layout.total();
    if buf.len() < total {
        return Err(Error::corrupt(
            WHAT,
            format!(
                "record of {total} bytes (data {}) truncated to {}",
                layout.data_len,
                buf.len()
            ),
        ));
    }
    let enc_at = layout.len_field;
    let crc_at = total - CRC_SIZE;
    let stored = u32::from_be_bytes([
        buf[crc_at],
        buf[crc_at + 1],
        buf[crc_at + 2],
        buf[crc_at + 3],
    ]);
    let computed = crc32c(&buf[enc_at..crc_at]);
    if stored != computed {
        return Err(Error::Checksum {
            what: "chunk".into(),
            stored,
            computed,
        });
    }
    Ok(buf[enc_at])
}

/// Decodes the chunk record at the start of `buf`: returns its encoding byte, its
/// data, and the record's length in bytes. A bad length field or a truncated record
/// is [`Error::Corrupt`]; a CRC mismatch is [`Error::Checksum`].
pub fn decode_chunk_record(buf: &[u8]) -> Result<(u8, &[u8], usize)> {
    let layout = record_layout(buf)?.ok_or_else(|| {
        Error::corrupt(
            WHAT,
            format!("{} bytes, truncated in the length field", buf.len()),
        )
    })?;
    let encoding = check_record(buf, layout)?;
    Ok((encoding, &buf[layout.data()], layout.total()))
}

/// Appends one record for `data` to `out` (for tests and in-memory segments).
pub fn encode_chunk_record(out: &mut Vec<u8>, encoding: u8, data: &[u8]) {
    let mut len = data.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.push(encoding);
    out.extend_from_slice(data);
    let crc = crc32c_append(crc32c(&[encoding]), data);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn segment_header() -> [u8; SEGMENT_HEADER_SIZE as usize] {
    let m = MAGIC_CHUNKS.to_be_bytes();
    [m[0], m[1], m[2], m[3], CHUNKS_FORMAT_V1, 0, 0, 0]
}

/// Writes chunk segment files into a `chunks` directory, cutting a new segment
/// when the next chunk would not fit (Prometheus's `chunks.Writer`). Memory is one
/// write buffer, whatever the amount of data.
#[derive(Debug)]
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    /// The open segment, its 1-based number and bytes written so far.
    out: Option<(BufWriter<File>, u32, u64)>,
    /// Finished segments: relative path and size.
    done: Vec<(String, u64)>,
}

const WRITE_BUFFER: usize = 1 << 20;

impl ChunkWriter {
    /// A writer into `chunks_dir` (created if missing; it must not contain segment
    /// files yet) with 512 MiB segments.
    pub fn create(chunks_dir: &Path) -> Result<ChunkWriter> {
        ChunkWriter::with_segment_size(chunks_dir, DEFAULT_SEGMENT_SIZE)
    }

    /// A writer with segments of at most `max_bytes` (more than the 8-byte header,
    /// at most 4 GiB so offsets fit 32 bits). A chunk larger than that still gets a
    /// segment of its own, as in Prometheus.
    pub fn with_segment_size(chunks_dir: &Path, max_bytes: u64) -> Result<ChunkWriter> {
        if max_bytes <= SEGMENT_HEADER_SIZE || max_bytes > 1 << 32 {
            return Err(Error::invalid(
                "chunk writer",
                format!("segment size {max_bytes} outside 9..=4GiB"),
            ));
        }
        std::fs::create_dir_all(chunks_dir)
            .map_err(|e| Error::io(format!("create {}", chunks_dir.display()), e))?;
        if !list_segments(chunks_dir)?.is_empty() {
            return Err(Error::invalid(
                "chunk writer",
                format!("{} already holds segment files", chunks_dir.display()),
            ));
        }
        Ok(ChunkWriter {
            dir: chunks_dir.to_path_buf(),
            segment_size: max_bytes,
            out: None,
            done: Vec::new(),
        })
    }

    /// Writes one chunk (encoding byte and data as in [`chunkenc`]) and returns its
    /// chunk reference.
    pub fn write_chunk(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        Ok(self.write_chunks(&[(encoding, data)])?[0])
    }

    /// Writes the chunks of one series, keeping them in one segment where
    /// Prometheus would (its `WriteChunks` batching), and returns their references.
    pub fn write_chunks(&mut self, chunks: &[(u8, &[u8])]) -> Result<Vec<u64>> {
        for (_, data) in chunks {
            if data.len() as u64 > u64::from(u32::MAX) {
                return Err(Error::invalid(
                    "chunk writer",
                    format!("chunk of {} bytes", data.len()),
                ));
            }
        }
        // Go's batching: a batch is cut when it would not fit a fresh segment, and
        // the first batch also when it would not fit what is left of the current
        // one.
        let current = self.out.as_ref().map_or(0, |o| o.2);
        let mut batch_starts = Vec::new();
        let mut batch_size = 0u64;
        let mut first_batch = true;
        for (i, (_, data)) in chunks.iter().enumerate() {
            let size = (MAX_LEN_FIELD + 1 + CRC_SIZE) as u64 + data.len() as u64;
            batch_size += size;
            let mut cut = i != 0 && batch_size + SEGMENT_HEADER_SIZE > self.segment_size;
            if first_batch && current > SEGMENT_HEADER_SIZE {
                cut = batch_size + current > self.segment_size;
                if cut {
                    first_batch = false;
                }
            }
            if cut {
                batch_starts.push(i);
                batch_size = size;
            }
        }
        if self.out.is_none() {
            self.cut()?;
        }
        let mut refs = Vec::with_capacity(chunks.len());
        let mut starts = batch_starts.into_iter().peekable();
        for (i, (enc, data)) in chunks.iter().enumerate() {
            if starts.next_if_eq(&i).is_some() {
                self.cut()?;
            }
            refs.push(self.write_record(*enc, data)?);
        }
        Ok(refs)
    }

    fn write_record(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        let Some((w, number, n)) = self.out.as_mut() else {
            return Err(Error::invalid("chunk writer", "no open segment"));
        };
        let offset = u32::try_from(*n).map_err(|_| {
            Error::invalid("chunk writer", format!("offset {n} does not fit 32 bits"))
        })?;
        let chunk_ref = (u64::from(*number - 1) << 32) | u64::from(offset);
        let mut head = Vec::with_capacity(MAX_LEN_FIELD + 1);
        let mut len = data.len() as u64;
        while len >= 0x80 {
            head.push((len as u8) | 0x80);
            len >>= 7;
        }
        head.push(len as u8);
        head.push(encoding);
        let crc = crc32c_append(crc32c(&[encoding]), data);
        let path = self.dir.join(segment_file_name(*number));
        let io = |e| Error::io(format!("write {}", path.display()), e);
        w.write_all(&head).map_err(io)?;
        w.write_all(data).map_err(io)?;
        w.write_all(&crc.to_be_bytes()).map_err(io)?;
        *n += (head.len() + data.len() + CRC_SIZE) as u64;
        Ok(chunk_ref)
    }

    /// Finishes the open segment (flush and fsync) and starts the next one.
    fn cut(&mut self) -> Result<()> {
        let next = self.finalize()? + 1;
        let name = segment_file_name(next);
        let path = self.dir.join(&name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let mut w = BufWriter::with_capacity(WRITE_BUFFER, file);
        w.write_all(&segment_header())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        self.out = Some((w, next, SEGMENT_HEADER_SIZE));
        Ok(())
    }

    /// Flushes, fsyncs and closes the open segment; returns its number (0 if none).
    fn finalize(&mut self) -> Result<u32> {
        let Some((w, number, n)) = self.out.take() else {
            return Ok(self.done.len() as u32);
        };
        let path = self.dir.join(segment_file_name(number));
        let file = w
            .into_inner()
            .map_err(|e| Error::io(format!("flush {}", path.display()), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
        self.done
            .push((format!("chunks/{}", segment_file_name(number)), n));
        Ok(number)
    }

    /// Flushes and fsyncs everything (segments and the directory) and returns the
    /// segments written, as (path relative to the block, e.g. `chunks/000001`,
    /// size in bytes).
    pub fn finish(mut self) -> Result<Vec<(String, u64)>> {
        self.finalize()?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("fsync {}", self.dir.display()), e))?;
        Ok(std::mem::take(&mut self.done))
    }
}

/// One chunk as stored: its encoding byte and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    pub encoding: u8,
    pub data: Bytes,
}

impl RawChunk {
    /// Iterates the chunk's samples (see [`chunkenc::iter_chunk`]).
    pub fn iter(&self) -> Result<ChunkIter<'_>> {
        chunkenc::iter_chunk(self.encoding, &self.data)
    }
}

#[derive(Debug)]
struct Segment {
    number: u32,
    file: Arc<dyn RangeRead>,
    /// Size, known once the header has been checked.
    size: OnceCell<u64>,
    /// Whether to read and check the 8-byte header before first use.
    check_header: bool,
}

impl Segment {
    fn name(&self) -> String {
        format!("chunk segment {}", segment_file_name(self.number))
    }

    /// Checks the header (once) and returns the segment's size.
    async fn size(&self) -> Result<u64> {
        self.size
            .get_or_try_init(|| async {
                let size = self.file.size().await?;
                if size < SEGMENT_HEADER_SIZE {
                    return Err(Error::corrupt(
                        self.name(),
                        format!("{size} bytes, shorter than the header"),
                    ));
                }
                if !self.check_header {
                    return Ok(size);
                }
                let h = self.file.read(0..SEGMENT_HEADER_SIZE).await?;
                if h.len() != SEGMENT_HEADER_SIZE as usize {
                    return Err(Error::corrupt(self.name(), "short header read"));
                }
                let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if magic != MAGIC_CHUNKS {
                    return Err(Error::corrupt(
                        self.name(),
                        format!("bad magic {magic:#010x}"),
                    ));
                }
                if h[4] != CHUNKS_FORMAT_V1 {
                    return Err(Error::Unsupported {
                        what: "chunk segment version".into(),
                        detail: format!("{} in {}", h[4], self.name()),
                    });
                }
                Ok(size)
            })
            .await
            .copied()
    }
}

/// Reads chunks by reference from segment files behind [`RangeRead`]. Each
/// segment's header is checked on first use; offsets are bounds-checked and every
/// record's CRC verified.
#[derive(Debug)]
pub struct ChunkReader {
    /// Sorted by segment number; a reference's upper half indexes this list.
    segments: Vec<Segment>,
    max_gap: u64,
}

impl ChunkReader {
    /// A reader over segments given as (file number, as in `000001` → 1; file).
    /// References address the segments by position in number order, as Prometheus
    /// does. Duplicate numbers are an error.
    pub fn new(segments: Vec<(u32, Arc<dyn RangeRead>)>) -> Result<ChunkReader> {
        let mut segments: Vec<Segment> = segments
            .into_iter()
            .map(|(number, file)| Segment {
                number,
                file,
                size: OnceCell::new(),
                check_header: true,
            })
            .collect();
        segments.sort_by_key(|s| s.number);
        if let Some(w) = segments.windows(2).find(|w| w[0].number == w[1].number) {
            return Err(Error::invalid(
                "chunk reader",
                format!("segment {} given twice", w[0].number),
            ));
        }
        Ok(ChunkReader {
            segments,
            max_gap: DEFAULT_MAX_GAP,
        })
    }

    /// Skips reading and checking each segment's 8-byte header before first use.
    /// For segments in object storage, where that check costs a request per segment:
    /// every record still has its CRC checked, so a wrong file is still caught.
    pub fn without_header_checks(mut self) -> ChunkReader {
        for s in &mut self.segments {
            s.check_header = false;
        }
        self
    }

    /// Sets the largest gap between two wanted chunks that [`Self::chunks`] reads
    /// over instead of starting another range read.
    pub fn with_max_gap(mut self, bytes: u64) -> ChunkReader {
        self.max_gap = bytes;
        self
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// The segment of a reference, its (checked) size, and the offset.
    async fn locate(&self, chunk_ref: u64) -> Result<(&Segment, u64, u64)> {
        let index = chunk_ref >> 32;
        let offset = chunk_ref & 0xffff_ffff;
        let seg = usize::try_from(index)
            .ok()
            .and_then(|i| self.segments.get(i))
            .ok_or_else(|| {
                Error::corrupt(
                    "chunk reference",
                    format!(
                        "{chunk_ref:#x}: segment index {index} but {} segments",
                        self.segments.len()
                    ),
                )
            })?;
        let size = seg.size().await?;
        if offset < SEGMENT_HEADER_SIZE || offset >= size {
            return Err(Error::corrupt(
                "chunk reference",
                format!(
                    "{chunk_ref:#x}: offset {offset} outside {} ({size} bytes)",
                    seg.name()
                ),
            ));
        }
        Ok((seg, size, offset))
    }

    /// The chunk at `chunk_ref`, read with one range read when it fits
    /// [`DEFAULT_READ_HINT`] bytes, otherwise two.
    pub async fn chunk(&self, chunk_ref: u64) -> Result<RawChunk> {
        self.chunk_with_hint(chunk_ref, DEFAULT_READ_HINT).await
    }

    /// The chunk at `chunk_ref`, reading `max_len` bytes first (say, the largest
    /// record size of the block): one range read when the record fits, else a
    /// second for the rest.
    pub async fn chunk_with_hint(&self, chunk_ref: u64, max_len: u64) -> Result<RawChunk> {
        let (seg, size, offset) = self.locate(chunk_ref).await?;
        let want = max_len.max(16).min(size - offset);
        let buf = seg.file.read(offset..offset + want).await?;
        complete_record(seg, size, offset, buf).await
    }

    /// The chunks at `refs`, in the same order. Chunks of a segment that lie close
    /// together (gaps up to the reader's max gap, default [`DEFAULT_MAX_GAP`]) are
    /// read with one range, and each segment's ranges with one `read_many`;
    /// segments are read concurrently.
    pub async fn chunks(&self, refs: &[u64]) -> Result<Vec<RawChunk>> {
        let mut by_segment: BTreeMap<u64, Vec<(u64, usize)>> = BTreeMap::new();
        for (i, r) in refs.iter().enumerate() {
            by_segment
                .entry(r >> 32)
                .or_default()
                .push((r & 0xffff_ffff, i));
        }
        let reads = by_segment
            .into_iter()
            .map(|(index, mut wanted)| async move {
                wanted.sort_unstable();
                let (seg, size, _) = self.locate((index << 32) | wanted[0].0).await?;
                if let Some((off, _)) = wanted.iter().find(|(o, _)| *o >= size) {
                    return Err(Error::corrupt(
                        "chunk reference",
                        format!("offset {off} outside {} ({size} bytes)", seg.name()),
                    ));
                }
                // Ranges over runs of offsets with small gaps; a run's last chunk gets
                // the read hint.
                let mut ranges: Vec<Range<u64>> = Vec::new();
                let mut range_of = Vec::with_capacity(wanted.len());
                for (off, _) in &wanted {
                    match ranges.last_mut() {
                        Some(r) if *off <= r.end.saturating_add(self.max_gap) => {
                            r.end = r.end.max((off + DEFAULT_READ_HINT).min(size));
                        }
                        _ => ranges.push(*off..(off + DEFAULT_READ_HINT).min(size)),
                    }
                    range_of.push(ranges.len() - 1);
                }
                let bufs = seg.file.read_many(&ranges).await?;
                if bufs.len() != ranges.len() {
                    return Err(Error::corrupt(
                        seg.name(),
                        format!("{} ranges read, {} asked", bufs.len(), ranges.len()),
                    ));
                }
                let mut out = Vec::with_capacity(wanted.len());
                for ((off, i), ri) in wanted.iter().zip(range_of) {
                    let r = &ranges[ri];
                    let buf = &bufs[ri];
                    let local = (off - r.start) as usize;
                    if buf.len() as u64 != r.end - r.start || local > buf.len() {
                        return Err(Error::corrupt(seg.name(), "short range read"));
                    }
                    let chunk = complete_record(seg, size, *off, buf.slice(local..)).await?;
                    out.push((*i, chunk));
                }
                Ok(out)
            });
        let mut slots: Vec<Option<RawChunk>> = vec![None; refs.len()];
        for group in futures::future::try_join_all(reads).await? {
            for (i, c) in group {
                slots[i] = Some(c);
            }
        }
        slots
            .into_iter()
            .map(|c| c.ok_or_else(|| Error::corrupt("chunk reader", "chunk not read")))
            .collect()
    }
}

/// Decodes the record at `offset` from `buf` (the bytes from `offset` on, possibly
/// fewer than the record), reading the rest of the record if needed.
async fn complete_record(seg: &Segment, size: u64, offset: u64, buf: Bytes) -> Result<RawChunk> {
    let left = size - offset;
    let layout = match record_layout(&buf)? {
        Some(l) => l,
        None if (buf.len() as u64) < left.min(MAX_LEN_FIELD as u64) => {
            // Only reachable with a tiny read hint; read the whole length field.
            let more = seg
                .file
                .read(offset..offset + left.min(MAX_LEN_FIELD as u64))
                .await?;
            record_layout(&more)?.ok_or_else(|| {
                Error::corrupt(seg.name(), format!("truncated record at {offset}"))
            })?
        }
        None => {
            return Err(Error::corrupt(
                seg.name(),
                format!("truncated record at {offset}"),
            ))
        }
    };
    let total = layout.total() as u64;
    if total > left {
        return Err(Error::corrupt(
            seg.name(),
            format!("record at {offset} of {total} bytes runs past the end ({size} bytes)"),
        ));
    }
    let record = if (buf.len() as u64) >= total {
        buf.slice(..total as usize)
    } else {
        let rest = seg
            .file
            .read(offset + buf.len() as u64..offset + total)
            .await?;
        let mut all = BytesMut::with_capacity(total as usize);
        all.extend_from_slice(&buf);
        all.extend_from_slice(&rest);
        all.freeze()
    };
    let encoding = check_record(&record, layout).map_err(|e| match e {
        Error::Checksum {
            stored, computed, ..
        } => Error::Checksum {
            what: format!("chunk at offset {offset} of {}", seg.name()),
            stored,
            computed,
        },
        e => Error::corrupt(seg.name(), format!("record at {offset}: {e}")),
    })?;
    Ok(RawChunk {
        encoding,
        data: record.slice(layout.data()),
    })
}

/// Segment files in `dir`: names that are all digits and fit 32 bits, with their
/// numbers, sorted.
fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(number) = name.parse::<u32>() else {
            continue;
        };
        out.push((number, e.path()));
    }
    out.sort();
    Ok(out)
}

/// A [`ChunkReader`] over the segment files of a local `chunks` directory.
pub fn open_dir(chunks_dir: &Path) -> Result<ChunkReader> {
    let mut segments: Vec<(u32, Arc<dyn RangeRead>)> = Vec::new();
    for (number, path) in list_segments(chunks_dir)? {
        segments.push((number, Arc::new(FileRange::open(&path)?)));
    }
    ChunkReader::new(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::{Encoding, XorChunk};
    use crate::BytesRange;
    use proptest::prelude::*;

    fn xor_chunk(seed: i64, n: i64) -> Vec<u8> {
        let mut c = XorChunk::new();
        for i in 0..n {
            c.append(seed * 1000 + i * 15_000, (seed + i) as f64);
        }
        c.bytes().to_vec()
    }

    #[test]
    fn record_known_bytes() {
        let mut rec = Vec::new();
        encode_chunk_record(&mut rec, 1, &[0, 0]);
        // len 2, encoding 1, data, CRC32-C of [1, 0, 0].
        let crc = crc32c(&[1, 0, 0]).to_be_bytes();
        assert_eq!(rec, vec![2, 1, 0, 0, crc[0], crc[1], crc[2], crc[3]]);
        assert_eq!(decode_chunk_record(&rec).unwrap(), (1, &[0u8, 0][..], 8));
        for cut in 0..rec.len() {
            assert!(decode_chunk_record(&rec[..cut]).is_err());
        }
        let mut bad = rec.clone();
        bad[2] ^= 1;
        assert!(matches!(
            decode_chunk_record(&bad),
            Err(Error::Checksum { .. })
        ));
        // A length field of more than 5 bytes.
        assert!(decode_chunk_record(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1]).is_err());
    }

    proptest! {
        #[test]
        fn decode_record_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((_, d, n)) = decode_chunk_record(&data) {
                prop_assert!(n <= data.len() && d.len() < n);
            }
        }
    }

    #[tokio::test]
    async fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        // Small segments: each holds a few chunks.
        let mut w = ChunkWriter::with_segment_size(&cdir, 300).unwrap();
        let mut written = Vec::new();
        for s in 0..20i64 {
            let data = xor_chunk(s, 1 + s % 30);
            let r = w.write_chunk(Encoding::Xor as u8, &data).unwrap();
            written.push((r, data));
        }
        let files = w.finish().unwrap();
        assert!(files.len() > 2);
        assert_eq!(files[0].0, "chunks/000001");
        for (i, (name, size)) in files.iter().enumerate() {
            assert_eq!(name, &format!("chunks/{:06}", i + 1));
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            assert_eq!(bytes.len() as u64, *size);
            assert_eq!(&bytes[..8], &[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
            assert!(*size <= 300);
        }
        // The first chunk of the first file: index 0, offset 8.
        assert_eq!(written[0].0, 8);
        assert!(written.iter().any(|(r, _)| r >> 32 == 1));

        let reader = open_dir(&cdir).unwrap();
        assert_eq!(reader.num_segments(), files.len());
        for (r, data) in &written {
            let c = reader.chunk(*r).await.unwrap();
            assert_eq!(c.encoding, 1);
            assert_eq!(&c.data[..], &data[..]);
            let c = reader.chunk_with_hint(*r, 1).await.unwrap();
            assert_eq!(&c.data[..], &data[..]);
            assert_eq!(c.iter().unwrap().count(), xor_count(data));
        }
        // Batch read in scrambled order with a duplicate.
        let mut refs: Vec<u64> = written.iter().map(|(r, _)| *r).rev().collect();
        refs.push(written[3].0);
        let got = reader.chunks(&refs).await.unwrap();
        for (r, c) in refs.iter().zip(&got) {
            let want = &written.iter().find(|(x, _)| x == r).unwrap().1;
            assert_eq!(&c.data[..], &want[..]);
        }
        let reader = open_dir(&cdir).unwrap().with_max_gap(0);
        let got = reader.chunks(&refs).await.unwrap();
        assert_eq!(got.len(), refs.len());
        assert!(reader.chunks(&[]).await.unwrap().is_empty());
    }

    fn xor_count(data: &[u8]) -> usize {
        crate::chunkenc::XorIterator::new(data).unwrap().count()
    }

    #[tokio::test]
    async fn big_chunks_and_segment_cutting_like_prometheus() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::with_segment_size(&cdir, 100).unwrap();
        let big = vec![7u8; 1000];
        // A series batch: first chunk fits, the big one gets cut into a new
        // segment of its own, the small one after it is cut again.
        let refs = w
            .write_chunks(&[(1, &[1, 2, 3][..]), (1, &big[..]), (1, &[4, 5][..])])
            .unwrap();
        assert_eq!(refs[0], 8);
        assert_eq!(refs[1], 1 << 32 | 8);
        assert_eq!(refs[2], 2 << 32 | 8);
        // A chunk that fits the current segment stays there.
        let r = w.write_chunk(1, &[9; 10]).unwrap();
        assert_eq!(r, 2 << 32 | (8 + 1 + 1 + 2 + 4));
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[1].1, 8 + 2 + 1 + 1000 + 4);
        let reader = open_dir(&cdir).unwrap();
        let got = reader.chunks(&[refs[1], r, refs[0]]).await.unwrap();
        assert_eq!(&got[0].data[..], &big[..]);
        assert_eq!(&got[1].data[..], &[9; 10]);
        assert_eq!(&got[2].data[..], &[1, 2, 3]);
        // An existing segment file makes a new writer refuse the directory.
        assert!(ChunkWriter::create(&cdir).is_err());
    }

    #[test]
    fn reader_and_its_futures_are_send_and_sync() {
        fn send<T: Send>(_: &T) {}
        fn sync<T: Send + Sync>(_: &T) {}
        let r = ChunkReader::new(Vec::new()).unwrap();
        sync(&r);
        send(&r.chunk(8));
        send(&r.chunks(&[8]));
    }

    fn segment(records: &[(u8, &[u8])]) -> (Vec<u8>, Vec<u64>) {
        let mut buf = segment_header().to_vec();
        let mut offs = Vec::new();
        for (e, d) in records {
            offs.push(buf.len() as u64);
            encode_chunk_record(&mut buf, *e, d);
        }
        (buf, offs)
    }

    #[tokio::test]
    async fn corrupt_segments_and_refs() {
        let (good, offs) = segment(&[(1, &[0, 0]), (2, &[1, 2, 3])]);
        let reader =
            ChunkReader::new(vec![(1, Arc::new(BytesRange::new("s", good.clone())) as _)]).unwrap();
        assert_eq!(reader.chunk(offs[1]).await.unwrap().encoding, 2);
        // Offset inside the header, past the end, in the middle of a record, and a
        // missing segment.
        for r in [0u64, 4, good.len() as u64, offs[1] + 1, 1 << 32 | 8] {
            assert!(reader.chunk(r).await.is_err(), "ref {r:#x}");
            assert!(reader.chunks(&[offs[0], r]).await.is_err(), "ref {r:#x}");
        }
        // Bad magic, bad version, too short.
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        for (seg, unsupported) in [
            (bad_magic, false),
            (bad_version, true),
            (good[..5].to_vec(), false),
        ] {
            let reader =
                ChunkReader::new(vec![(1, Arc::new(BytesRange::new("s", seg)) as _)]).unwrap();
            let e = reader.chunk(offs[0]).await.unwrap_err();
            assert_eq!(matches!(e, Error::Unsupported { .. }), unsupported, "{e}");
        }
        // Flipped data byte: checksum error.
        let mut flipped = good.clone();
        flipped[offs[1] as usize + 3] ^= 0xff;
        let reader =
            ChunkReader::new(vec![(1, Arc::new(BytesRange::new("s", flipped)) as _)]).unwrap();
        assert!(reader.chunk(offs[1]).await.is_err());
        assert!(reader.chunk(offs[0]).await.is_ok());
        // Truncated file: the last record runs past the end.
        let reader = ChunkReader::new(vec![(
            1,
            Arc::new(BytesRange::new("s", good[..good.len() - 1].to_vec())) as _,
        )])
        .unwrap();
        assert!(reader.chunk(offs[1]).await.is_err());
        // Duplicate segment numbers.
        let s: Arc<dyn RangeRead> = Arc::new(BytesRange::new("s", good.clone()));
        assert!(ChunkReader::new(vec![(1, s.clone()), (1, s)]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn reader_never_panics_on_random_segments(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            refs in proptest::collection::vec(any::<u64>(), 0..6),
            offs in proptest::collection::vec(0u64..210, 0..6),
        ) {
            let mut seg = segment_header().to_vec();
            seg.extend_from_slice(&body);
            let reader = ChunkReader::new(vec![(1, Arc::new(BytesRange::new("s", seg)) as _)]).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                for r in refs.iter().chain(&offs) {
                    let _ = reader.chunk(*r).await;
                    let _ = reader.chunk_with_hint(*r, 3).await;
                }
                let _ = reader.chunks(&offs).await;
                let _ = reader.chunks(&refs).await;
            });
        }
    }
}
