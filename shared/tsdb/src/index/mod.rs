//! The Prometheus TSDB index file, format version 2, read and written byte-for-byte
//! as Prometheus does (`tsdb/docs/format/index.md`, `tsdb/index/index.go`).
//!
//! ```text
//! magic 0xBAAAD700 (4, BE) | version 2 (1)
//! symbols         len(4) | #symbols(4) | (uvarint len, bytes)… sorted | CRC32C
//! series          each entry 16-byte aligned, ref = offset / 16:
//!                 uvarint len | uvarint #labels | (uvarint name, uvarint value)…
//!                 | uvarint #chunks | varint mint, uvarint maxt-mint, uvarint ref
//!                 | (uvarint mint-prev maxt, uvarint maxt-mint, varint ref-prev ref)…
//!                 | CRC32C (len and CRC cover the bytes between them)
//! label indices   per name, 4-byte aligned: len(4) | 1(4) | #values(4) | value refs(4)… | CRC32C
//! postings        4-byte aligned lists: len(4) | #refs(4) | refs(4)… | CRC32C,
//!                 first the all-postings list (key "", ""), then by name, value
//! label offset table     len(4) | #entries(4) | (uvarint 1, name, uvarint offset)…
//!                        | CRC32C
//! postings offset table  len(4) | #entries(4) | (uvarint 2, name, value, uvarint offset)…
//!                        | CRC32C
//! TOC             6 × u64 BE section offsets | CRC32C of those 48 bytes
//! ```
//!
//! Symbol references are ordinals into the symbol table; every `len(4)` counts the
//! bytes between itself and the CRC, which covers exactly those bytes.
//!
//! * [`IndexWriter`] streams series to a local file and writes the rest on
//!   [`IndexWriter::finish`].
//! * [`IndexHeader`] is what a lookup needs in memory (TOC, symbols, postings offset
//!   table), read with a few range reads or decoded from our own cached encoding.
//! * [`IndexReader`] answers label, postings and series queries over any
//!   [`RangeRead`](crate::RangeRead), reading only the byte ranges it needs.

mod header;
mod postings;
mod reader;
mod symbols;
mod writer;

#[cfg(test)]
mod tests;

pub use header::IndexHeader;
pub use postings::{decode_postings, intersect, subtract, union};
pub use reader::IndexReader;
pub use symbols::Symbols;
pub use writer::IndexWriter;

use model::{Label, Labels};

use crate::encoding::{crc32c, Decbuf, Encbuf};
use crate::{ChunkMeta, Error, Result};

/// First four bytes of an index file.
pub const MAGIC: u32 = 0xBAAA_D700;
/// The format version we write. Version 3 (same layout, announced by Prometheus 2.55
/// for indexes without label indices) is read too.
pub const FORMAT_V2: u8 = 2;
/// Index format version 3: read like version 2.
pub const FORMAT_V3: u8 = 3;
/// Magic plus version byte.
pub const HEADER_LEN: u64 = 5;
/// Series entries start at multiples of this; a series ref is its offset divided by it.
pub const SERIES_ALIGN: u64 = 16;

/// The table of contents at the end of an index: where each section starts. A zero
/// offset means the section is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    /// Six offsets and a CRC32C.
    pub const LEN: u64 = 6 * 8 + 4;

    /// Decodes the last [`Toc::LEN`] bytes of an index.
    pub fn decode(b: &[u8]) -> Result<Toc> {
        const WHAT: &str = "index TOC";
        if b.len() != Self::LEN as usize {
            return Err(Error::corrupt(
                WHAT,
                format!("{} bytes, want {}", b.len(), Self::LEN),
            ));
        }
        let mut d = Decbuf::new(b, WHAT);
        let body = d.bytes(48)?;
        let stored = d.be_u32()?;
        let computed = crc32c(body);
        if stored != computed {
            return Err(Error::Checksum {
                what: WHAT.into(),
                stored,
                computed,
            });
        }
        let mut d = Decbuf::new(body, WHAT);
        Ok(Toc {
            symbols: d.be_u64()?,
            series: d.be_u64()?,
            label_indices: d.be_u64()?,
            label_indices_table: d.be_u64()?,
            postings: d.be_u64()?,
            postings_table: d.be_u64()?,
        })
    }

    /// The 52 bytes Prometheus writes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encbuf::new();
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            e.put_be_u64(v);
        }
        e.put_crc32_of(0);
        e.buf
    }

    /// End of the series section: the next section's start (or the TOC's, if every
    /// later section is absent). The section is empty when it is absent.
    pub(crate) fn series_end(&self, file_size: u64) -> u64 {
        let toc_start = file_size.saturating_sub(Self::LEN);
        if self.series == 0 || self.series >= toc_start {
            return self.series;
        }
        [
            self.label_indices,
            self.postings,
            self.label_indices_table,
            self.postings_table,
        ]
        .into_iter()
        .filter(|&o| o != 0 && o >= self.series && o <= toc_start)
        .min()
        .unwrap_or(toc_start)
    }
}

/// How many bytes a series entry starting at `b[0]` takes in total (length varint,
/// content, CRC), judged from its first bytes.
pub(crate) fn series_entry_size(b: &[u8]) -> Result<u64> {
    let mut d = Decbuf::new(b, "index series entry");
    let len = d.uvarint()?;
    Ok((d.position() as u64).saturating_add(len).saturating_add(4))
}

/// Decodes the series entry at the start of `b` (which holds at least the whole entry),
/// verifying its CRC and resolving symbols.
pub(crate) fn decode_series(b: &[u8], symbols: &Symbols) -> Result<(Labels, Vec<ChunkMeta>)> {
    const WHAT: &str = "index series entry";
    let mut d = Decbuf::new(b, WHAT);
    let len = d.uvarint_len()?;
    let content = d.bytes(len)?;
    let stored = d.be_u32()?;
    let computed = crc32c(content);
    if stored != computed {
        return Err(Error::Checksum {
            what: WHAT.into(),
            stored,
            computed,
        });
    }

    let mut d = Decbuf::new(content, WHAT);
    let sym = |d: &Decbuf<'_>, o: u32| {
        symbols.get(o).ok_or_else(|| {
            Error::corrupt(
                WHAT,
                format!(
                    "symbol ref {o} beyond the {} symbols (at byte {})",
                    symbols.len(),
                    d.position()
                ),
            )
        })
    };
    // Each label takes at least two bytes.
    let nlabels = d.uvarint_len()?;
    let mut labels = Vec::with_capacity(nlabels / 2);
    let mut last_name: Option<u32> = None;
    for _ in 0..nlabels {
        let n = d.uvarint32()?;
        let v = d.uvarint32()?;
        if last_name.is_some_and(|l| l >= n) {
            return Err(Error::corrupt(WHAT, "label names not sorted and unique"));
        }
        last_name = Some(n);
        labels.push(Label::new(sym(&d, n)?, sym(&d, v)?));
    }

    // Each chunk takes at least three bytes.
    let nchunks = d.uvarint_len()?;
    let mut chunks = Vec::with_capacity(nchunks / 3);
    if nchunks > 0 {
        let mint = d.varint()?;
        let maxt = mint.wrapping_add(d.uvarint()? as i64);
        let mut chunk_ref = d.uvarint()?;
        chunks.push(ChunkMeta {
            min_time: mint,
            max_time: maxt,
            chunk_ref,
        });
        let mut t0 = maxt;
        for _ in 1..nchunks {
            let mint = t0.wrapping_add(d.uvarint()? as i64);
            let maxt = mint.wrapping_add(d.uvarint()? as i64);
            chunk_ref = chunk_ref.wrapping_add(d.varint()? as u64);
            t0 = maxt;
            chunks.push(ChunkMeta {
                min_time: mint,
                max_time: maxt,
                chunk_ref,
            });
        }
    }
    if d.remaining() != 0 {
        return Err(Error::corrupt(
            WHAT,
            format!("{} trailing bytes", d.remaining()),
        ));
    }
    Ok((Labels::from_sorted(labels), chunks))
}
